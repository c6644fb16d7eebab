/**
 * String instructions with REP/REPE/REPNE (SDM Vol. 2: MOVS, CMPS, STOS, LODS, SCAS, INS, OUTS).
 * Each iteration updates RSI/RDI/RCX before the next, so a fault part-way leaves the registers
 * at an iteration boundary and the instruction restarts from there, as on hardware. A whole
 * REP run counts as one retired instruction.
 */
import { Vector } from "@vtlab/arch";
import type { Cpu } from "../cpu.js";
import type { Insn } from "../decode/insn.js";
import { RFLAGS_DF, RFLAGS_IOPL, Seg } from "../regs.js";
import { ALU_CMP, aluFlags, aluResult, readReg, writeReg } from "./operands.js";
import { ExitReason } from "../vmx/exit-reasons.js";
import { ioExits, ioQualification } from "../vmx/exits.js";

function step(cpu: Cpu, size: number): number {
  return (cpu.flagsOther & RFLAGS_DF) !== 0 ? -size : size;
}

/** Pointer register value as an offset for the address size. */
function ptr(cpu: Cpu, r: number, addrSize: number): number {
  return addrSize === 8 ? cpu.regAddr(r) : addrSize === 4 ? cpu.lo[r]! >>> 0 : cpu.lo[r]! & 0xffff;
}

function advance(cpu: Cpu, r: number, addrSize: number, delta: number): void {
  if (addrSize === 8) cpu.setRegFromNumber(r, cpu.regAddr(r) + delta);
  else if (addrSize === 4) cpu.setReg32(r, ((cpu.lo[r]! >>> 0) + delta) >>> 0);
  else cpu.setReg16(r, (cpu.lo[r]! + delta) & 0xffff); // 16-bit addressing: SI/DI wrap in 16 bits
}

function count(cpu: Cpu, addrSize: number): number {
  return addrSize === 8 ? cpu.regAddr(1) : addrSize === 4 ? cpu.lo[1]! >>> 0 : cpu.lo[1]! & 0xffff;
}

function decCount(cpu: Cpu, addrSize: number): void {
  if (addrSize === 8) {
    const lo = (cpu.lo[1]! - 1) | 0;
    if (lo === -1) cpu.hi[1] = (cpu.hi[1]! - 1) | 0;
    cpu.lo[1] = lo;
  } else if (addrSize === 4) cpu.setReg32(1, (cpu.lo[1]! - 1) | 0);
  else cpu.setReg16(1, (cpu.lo[1]! - 1) & 0xffff);
}

function load(cpu: Cpu, lin: number, size: number): number {
  return size === 1 ? cpu.read8(lin) : size === 2 ? cpu.read16(lin) : size === 4 ? cpu.read32(lin) : cpu.read64(lin);
}

function store(cpu: Cpu, lin: number, size: number, lo: number, hi: number): void {
  if (size === 1) cpu.write8(lin, lo);
  else if (size === 2) cpu.write16(lin, lo);
  else if (size === 4) cpu.write32(lin, lo);
  else cpu.write64(lin, lo, hi);
}

/** MOVS (A4, A5). */
export function movs(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = i.addrSize;
  const d = step(cpu, size);
  const srcSeg = i.segOverride ? i.seg : Seg.DS;
  for (;;) {
    if (i.rep !== 0 && count(cpu, a) === 0) return;
    const v = load(cpu, cpu.linear(srcSeg, ptr(cpu, 6, a)), size);
    store(cpu, cpu.linear(Seg.ES, ptr(cpu, 7, a)), size, v, cpu.tmpHi);
    advance(cpu, 6, a, d);
    advance(cpu, 7, a, d);
    if (i.rep === 0) return;
    decCount(cpu, a);
  }
}

/** STOS (AA, AB). */
export function stos(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = i.addrSize;
  const d = step(cpu, size);
  const v = readReg(cpu, 0, false, size);
  const vHi = cpu.tmpHi;
  for (;;) {
    if (i.rep !== 0 && count(cpu, a) === 0) return;
    store(cpu, cpu.linear(Seg.ES, ptr(cpu, 7, a)), size, v, vHi);
    advance(cpu, 7, a, d);
    if (i.rep === 0) return;
    decCount(cpu, a);
  }
}

/** LODS (AC, AD). */
export function lods(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = i.addrSize;
  const d = step(cpu, size);
  const srcSeg = i.segOverride ? i.seg : Seg.DS;
  for (;;) {
    if (i.rep !== 0 && count(cpu, a) === 0) return;
    const v = load(cpu, cpu.linear(srcSeg, ptr(cpu, 6, a)), size);
    writeReg(cpu, 0, false, size, v, cpu.tmpHi);
    advance(cpu, 6, a, d);
    if (i.rep === 0) return;
    decCount(cpu, a);
  }
}

/** CMPS (A6, A7): compares [RSI] with [RDI]; REPE/REPNE stop on ZF. */
export function cmps(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = i.addrSize;
  const d = step(cpu, size);
  const srcSeg = i.segOverride ? i.seg : Seg.DS;
  for (;;) {
    if (i.rep !== 0 && count(cpu, a) === 0) return;
    const x = load(cpu, cpu.linear(srcSeg, ptr(cpu, 6, a)), size);
    const xHi = cpu.tmpHi;
    const y = load(cpu, cpu.linear(Seg.ES, ptr(cpu, 7, a)), size);
    const yHi = cpu.tmpHi;
    const r = aluResult(cpu, ALU_CMP, size, x, xHi, y, yHi);
    aluFlags(cpu, ALU_CMP, size, x, xHi, y, yHi, r, cpu.tmpHi);
    advance(cpu, 6, a, d);
    advance(cpu, 7, a, d);
    if (i.rep === 0) return;
    decCount(cpu, a);
    if (i.rep === 1 ? cpu.fZ !== 0 : cpu.fZ === 0) return;
  }
}

/** SCAS (AE, AF): compares the accumulator with [RDI]. */
export function scas(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = i.addrSize;
  const d = step(cpu, size);
  const acc = readReg(cpu, 0, false, size);
  const accHi = cpu.tmpHi;
  for (;;) {
    if (i.rep !== 0 && count(cpu, a) === 0) return;
    const y = load(cpu, cpu.linear(Seg.ES, ptr(cpu, 7, a)), size);
    const yHi = cpu.tmpHi;
    const m = size === 1 ? 0xff : size === 2 ? 0xffff : -1;
    const r = aluResult(cpu, ALU_CMP, size, acc & m, accHi, y, yHi);
    aluFlags(cpu, ALU_CMP, size, acc & m, accHi, y, yHi, r, cpu.tmpHi);
    advance(cpu, 7, a, d);
    if (i.rep === 0) return;
    decCount(cpu, a);
    if (i.rep === 1 ? cpu.fZ !== 0 : cpu.fZ === 0) return;
  }
}

/** I/O privilege: CPL <= IOPL, or #GP(0) (the TSS I/O permission bitmap is not modelled). */
export function checkIo(cpu: Cpu): void {
  if (cpu.cpl > (cpu.flagsOther & RFLAGS_IOPL) >>> 12) cpu.fault(Vector.GP, 0);
}

/** INS (6C, 6D): port DX into [RDI]. */
export function ins(cpu: Cpu, i: Insn): void {
  checkIo(cpu);
  const size = Math.min(i.opSize, 4) as 1 | 2 | 4;
  const a = i.addrSize;
  const d = step(cpu, size);
  const port = cpu.lo[2]! & 0xffff;
  if (cpu.vmcs !== undefined && ioExits(cpu, port, size)) {
    cpu.vmExit(ExitReason.IoInstruction, ioQualification(port, size, true, true, i.rep !== 0, false), i.len, { guestLinear: cpu.linear(Seg.ES, ptr(cpu, 7, a)) });
  }
  for (;;) {
    if (i.rep !== 0 && count(cpu, a) === 0) return;
    const lin = cpu.linear(Seg.ES, ptr(cpu, 7, a));
    cpu.translate(lin, 2); // probe the destination before the port is read (a read may have side effects)
    store(cpu, lin, size, cpu.ports.read(port, size), 0);
    advance(cpu, 7, a, d);
    if (i.rep === 0) return;
    decCount(cpu, a);
  }
}

/** OUTS (6E, 6F): [RSI] out to port DX. */
export function outs(cpu: Cpu, i: Insn): void {
  checkIo(cpu);
  const size = Math.min(i.opSize, 4) as 1 | 2 | 4;
  const a = i.addrSize;
  const d = step(cpu, size);
  const port = cpu.lo[2]! & 0xffff;
  const srcSeg = i.segOverride ? i.seg : Seg.DS;
  if (cpu.vmcs !== undefined && ioExits(cpu, port, size)) {
    cpu.vmExit(ExitReason.IoInstruction, ioQualification(port, size, false, true, i.rep !== 0, false), i.len, { guestLinear: cpu.linear(srcSeg, ptr(cpu, 6, a)) });
  }
  for (;;) {
    if (i.rep !== 0 && count(cpu, a) === 0) return;
    const v = load(cpu, cpu.linear(srcSeg, ptr(cpu, 6, a)), size);
    cpu.ports.write(port, size, v);
    advance(cpu, 6, a, d);
    if (i.rep === 0) return;
    decCount(cpu, a);
  }
}
