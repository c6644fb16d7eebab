/**
 * String instructions with REP/REPE/REPNE (SDM Vol. 2: MOVS, CMPS, STOS, LODS, SCAS, INS, OUTS).
 * Each iteration updates RSI/RDI/RCX before the next, so a fault part-way leaves the registers
 * at an iteration boundary and the instruction restarts from there, as on hardware. Each
 * iteration counts as one retired instruction, and a REP stops between iterations when the run
 * loop's bound (its budget, or the VMX-preemption timer's end: `Cpu.repStop`) is reached, with
 * RIP still at the instruction and RCX/RSI/RDI updated, so the next run resumes it (SDM Vol. 2B
 * REP: "a repeating string operation can be suspended by an exception or interrupt"; Vol. 3C
 * 25.5.1 for the preemption timer).
 *
 * 64-bit pointers are kept as two 32-bit halves: a pointer register plus an FS/GS base is added
 * in halves (no rounding of a non-canonical register), and RSI/RDI advance in halves, so a
 * register that is non-canonical stays exactly what the guest wrote and gets #GP(0) (#SS(0) for
 * an SS-segment reference) at the access.
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

const TWO_32 = 0x1_0000_0000;

/**
 * The linear address of the element at pointer register `r` in segment `seg` for the address
 * size: in 64-bit mode the register plus the FS/GS base (others have none), added in 32-bit
 * halves so a non-canonical register is not rounded into a canonical address; the result is a
 * signed number, exact when canonical (a non-canonical sum stays outside the canonical range and
 * faults at the access). An SS-segment reference that is not canonical is #SS(0) (SDM Vol. 3A
 * 6.15 #SS); the others get #GP(0) from the access. 16-bit addressing uses SI/DI.
 */
function elementLinear(cpu: Cpu, seg: number, r: number, addrSize: number): number {
  if (addrSize === 4) return cpu.linear(seg, cpu.lo[r]! >>> 0);
  if (addrSize === 2) return cpu.linear(seg, cpu.lo[r]! & 0xffff);
  let lin: number;
  if (seg >= Seg.FS) {
    const base = cpu.seg[seg]!.base;
    const sumLo = (cpu.lo[r]! >>> 0) + (base >>> 0);
    const sumHi = (cpu.hi[r]! + Math.floor(base / TWO_32) + (sumLo >= TWO_32 ? 1 : 0)) | 0;
    lin = sumHi * TWO_32 + (sumLo >>> 0);
  } else lin = cpu.regAddr(r);
  if (seg === Seg.SS && cpu.mode64) {
    const limit = cpu.paging.la57 ? 2 ** 56 : 2 ** 47;
    if (lin < -limit || lin >= limit) cpu.fault(Vector.SS, 0);
  }
  return lin;
}

/** Advance a pointer register by `delta` (+-1, 2, 4, 8) for the address size, exactly (64-bit: in halves). */
function advance(cpu: Cpu, r: number, addrSize: number, delta: number): void {
  if (addrSize === 8) {
    const lo = (cpu.lo[r]! >>> 0) + delta;
    if (lo >= TWO_32) cpu.hi[r] = (cpu.hi[r]! + 1) | 0;
    else if (lo < 0) cpu.hi[r] = (cpu.hi[r]! - 1) | 0;
    cpu.lo[r] = lo | 0;
  } else if (addrSize === 4) cpu.setReg32(r, ((cpu.lo[r]! >>> 0) + delta) >>> 0);
  else cpu.setReg16(r, (cpu.lo[r]! + delta) & 0xffff); // 16-bit addressing: SI/DI wrap in 16 bits
}

/** RCX (ECX, CX) is zero. */
function countZero(cpu: Cpu, addrSize: number): boolean {
  return addrSize === 8 ? (cpu.lo[1]! | cpu.hi[1]!) === 0 : addrSize === 4 ? cpu.lo[1]! === 0 : (cpu.lo[1]! & 0xffff) === 0;
}

function decCount(cpu: Cpu, addrSize: number): void {
  if (addrSize === 8) {
    const lo = (cpu.lo[1]! - 1) | 0;
    if (lo === -1) cpu.hi[1] = (cpu.hi[1]! - 1) | 0;
    cpu.lo[1] = lo;
  } else if (addrSize === 4) cpu.setReg32(1, (cpu.lo[1]! - 1) | 0);
  else cpu.setReg16(1, (cpu.lo[1]! - 1) & 0xffff);
}

/**
 * After an iteration of a REP with RCX already decremented: true if the instruction is done
 * (RCX = 0) or must stop here because the run loop's bound is reached, in which case RIP goes
 * back to the instruction (it resumes on the next run) and the loop's attention is raised (a
 * compiled block holding it stops after it). Otherwise the iteration retires and the REP goes on.
 * The run loop retires the last iteration, so this counts all but that one.
 */
function repDone(cpu: Cpu, addrSize: number): boolean {
  if (countZero(cpu, addrSize)) return true;
  if (cpu.retired + 1 >= cpu.repStop) {
    cpu.rip = cpu.insnStart;
    cpu.attention = 1;
    return true;
  }
  cpu.retired++;
  return false;
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
    if (i.rep !== 0 && countZero(cpu, a)) return;
    const v = load(cpu, elementLinear(cpu, srcSeg, 6, a), size);
    store(cpu, elementLinear(cpu, Seg.ES, 7, a), size, v, cpu.tmpHi);
    advance(cpu, 6, a, d);
    advance(cpu, 7, a, d);
    if (i.rep === 0) return;
    decCount(cpu, a);
    if (repDone(cpu, a)) return;
  }
}

/** Test hook: `pageRuns = false` makes every REP STOS go element by element (the differential test's oracle). */
export const stringHooks = { pageRuns: true };

/**
 * REP STOS forward, the run of elements from RDI to the end of its page when the TLB already
 * allows the write there (cpu.writeView: RAM, not decoded code, the dirty bit set; the checks the
 * store fast path makes), stored straight into the frame as that many iterations would store them
 * one by one. It stops one iteration short of RCX reaching 0 and of the run loop's bound, so the
 * iteration after it, made by the loop as usual, is the one that ends the REP or stops it there
 * (repDone): every register, the retired count and RIP end as they would. Returns the number of
 * iterations made (0: none could be, the loop goes on element by element).
 */
function stosRun(cpu: Cpu, size: number, a: number, v: number, vHi: number): number {
  if (!stringHooks.pageRuns) return 0;
  const lin = a === 8 ? cpu.regAddr(7) : cpu.linear(Seg.ES, cpu.lo[7]! >>> 0);
  const view = cpu.writeView(lin);
  if (view === undefined) return 0;
  const off = lin & 0xfff;
  let m = Math.floor((4096 - off) / size);
  const count = a === 8 && cpu.hi[1] !== 0 ? Infinity : cpu.lo[1]! >>> 0;
  m = Math.min(m, count - 1, cpu.repStop - cpu.retired - 1);
  if (!(m > 0)) return 0;
  const end = off + m * size;
  if (size === 8) {
    for (let o = off; o < end; o += 8) {
      view.setInt32(o, v, true);
      view.setInt32(o + 4, vHi, true);
    }
  } else if (size === 4) for (let o = off; o < end; o += 4) view.setInt32(o, v, true);
  else if (size === 2) for (let o = off; o < end; o += 2) view.setUint16(o, v, true);
  else for (let o = off; o < end; o++) view.setUint8(o, v);
  // RDI and RCX as m iterations leave them (in halves for 64-bit addressing).
  if (a === 8) {
    const di = (cpu.lo[7]! >>> 0) + m * size;
    if (di >= TWO_32) cpu.hi[7] = (cpu.hi[7]! + 1) | 0;
    cpu.lo[7] = di | 0;
    const cx = (cpu.lo[1]! >>> 0) - m;
    if (cx < 0) cpu.hi[1] = (cpu.hi[1]! - 1) | 0;
    cpu.lo[1] = cx | 0;
  } else {
    cpu.setReg32(7, ((cpu.lo[7]! >>> 0) + m * size) >>> 0);
    cpu.setReg32(1, ((cpu.lo[1]! >>> 0) - m) >>> 0);
  }
  cpu.retired += m;
  return m;
}

/** STOS (AA, AB). */
export function stos(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = i.addrSize;
  const d = step(cpu, size);
  const v = readReg(cpu, 0, false, size);
  const vHi = cpu.tmpHi;
  // A forward REP STOS with 64- or 32-bit addressing goes a page run at a time where it can.
  const runs = i.rep !== 0 && d > 0 && a !== 2;
  for (;;) {
    if (i.rep !== 0 && countZero(cpu, a)) return;
    if (runs) stosRun(cpu, size, a, v, vHi);
    store(cpu, elementLinear(cpu, Seg.ES, 7, a), size, v, vHi);
    advance(cpu, 7, a, d);
    if (i.rep === 0) return;
    decCount(cpu, a);
    if (repDone(cpu, a)) return;
  }
}

/** LODS (AC, AD). */
export function lods(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = i.addrSize;
  const d = step(cpu, size);
  const srcSeg = i.segOverride ? i.seg : Seg.DS;
  for (;;) {
    if (i.rep !== 0 && countZero(cpu, a)) return;
    const v = load(cpu, elementLinear(cpu, srcSeg, 6, a), size);
    writeReg(cpu, 0, false, size, v, cpu.tmpHi);
    advance(cpu, 6, a, d);
    if (i.rep === 0) return;
    decCount(cpu, a);
    if (repDone(cpu, a)) return;
  }
}

/** CMPS (A6, A7): compares [RSI] with [RDI]; REPE/REPNE stop on ZF. */
export function cmps(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = i.addrSize;
  const d = step(cpu, size);
  const srcSeg = i.segOverride ? i.seg : Seg.DS;
  for (;;) {
    if (i.rep !== 0 && countZero(cpu, a)) return;
    const x = load(cpu, elementLinear(cpu, srcSeg, 6, a), size);
    const xHi = cpu.tmpHi;
    const y = load(cpu, elementLinear(cpu, Seg.ES, 7, a), size);
    const yHi = cpu.tmpHi;
    const r = aluResult(cpu, ALU_CMP, size, x, xHi, y, yHi);
    aluFlags(cpu, ALU_CMP, size, x, xHi, y, yHi, r, cpu.tmpHi);
    advance(cpu, 6, a, d);
    advance(cpu, 7, a, d);
    if (i.rep === 0) return;
    decCount(cpu, a);
    if (i.rep === 1 ? cpu.fZ !== 0 : cpu.fZ === 0) return;
    if (repDone(cpu, a)) return;
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
    if (i.rep !== 0 && countZero(cpu, a)) return;
    const y = load(cpu, elementLinear(cpu, Seg.ES, 7, a), size);
    const yHi = cpu.tmpHi;
    const m = size === 1 ? 0xff : size === 2 ? 0xffff : -1;
    const r = aluResult(cpu, ALU_CMP, size, acc & m, accHi, y, yHi);
    aluFlags(cpu, ALU_CMP, size, acc & m, accHi, y, yHi, r, cpu.tmpHi);
    advance(cpu, 7, a, d);
    if (i.rep === 0) return;
    decCount(cpu, a);
    if (i.rep === 1 ? cpu.fZ !== 0 : cpu.fZ === 0) return;
    if (repDone(cpu, a)) return;
  }
}

/** The guest-linear address an INS/OUTS exit reports: the first element's (exact when canonical). */
function exitLinear(cpu: Cpu, seg: number, r: number, addrSize: number): number {
  const offset = addrSize === 8 ? cpu.regAddr(r) : addrSize === 4 ? cpu.lo[r]! >>> 0 : cpu.lo[r]! & 0xffff;
  return cpu.linear(seg, offset);
}

/**
 * The VM-exit instruction-information field for INS and OUTS (SDM Vol. 3C Table 28-8): bits 9:7
 * the address size (0 16-bit, 1 32-bit, 2 64-bit), bits 17:15 the segment register (OUTS; INS
 * always uses ES).
 */
function stringIoInfo(addrSize: number, seg: number): number {
  return ((addrSize === 8 ? 2 : addrSize === 4 ? 1 : 0) << 7) | (seg << 15);
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
    cpu.vmExit(ExitReason.IoInstruction, ioQualification(port, size, true, true, i.rep !== 0, false), i.len, { guestLinear: exitLinear(cpu, Seg.ES, 7, a), instructionInfo: stringIoInfo(a, Seg.ES) });
  }
  for (;;) {
    if (i.rep !== 0 && countZero(cpu, a)) return;
    const lin = elementLinear(cpu, Seg.ES, 7, a);
    cpu.translate(lin, 2); // probe the destination before the port is read (a read may have side effects)
    store(cpu, lin, size, cpu.ports.read(port, size), 0);
    advance(cpu, 7, a, d);
    if (i.rep === 0) return;
    decCount(cpu, a);
    if (repDone(cpu, a)) return;
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
    cpu.vmExit(ExitReason.IoInstruction, ioQualification(port, size, false, true, i.rep !== 0, false), i.len, { guestLinear: exitLinear(cpu, srcSeg, 6, a), instructionInfo: stringIoInfo(a, srcSeg) });
  }
  for (;;) {
    if (i.rep !== 0 && countZero(cpu, a)) return;
    const v = load(cpu, elementLinear(cpu, srcSeg, 6, a), size);
    cpu.ports.write(port, size, v);
    advance(cpu, 6, a, d);
    if (i.rep === 0) return;
    decCount(cpu, a);
    if (repDone(cpu, a)) return;
  }
}
