/**
 * Stack instructions: PUSH, POP, PUSHF, POPF, ENTER, LEAVE (SDM Vol. 2). In 64-bit mode the
 * default stack operand size is 64 bits (a 0x66 prefix gives 16); elsewhere 32 (or 16).
 */
import type { Cpu } from "../cpu.js";
import type { Insn } from "../decode/insn.js";
import { RFLAGS_AC, RFLAGS_ARITH, RFLAGS_DF, RFLAGS_ID, RFLAGS_IF, RFLAGS_IOPL, RFLAGS_NT, RFLAGS_RF, RFLAGS_TF, RFLAGS_VM } from "../regs.js";
import { readE, readReg, writeE, writeReg } from "./operands.js";

export function push(cpu: Cpu, size: number, lo: number, hi: number): void {
  if (size === 8) cpu.push64(lo, hi);
  else if (size === 4) cpu.push32(lo);
  else cpu.push16(lo);
}

/** Pop `size` bytes: returns the low half, the high half in `cpu.tmpHi`. */
export function pop(cpu: Cpu, size: number): number {
  if (size === 8) return cpu.pop64();
  cpu.tmpHi = 0;
  return size === 4 ? cpu.pop32() : cpu.pop16();
}

/** PUSH r (50+r). */
export function pushR(cpu: Cpu, i: Insn): void {
  const v = readReg(cpu, i.rm, true, i.opSize);
  push(cpu, i.opSize, v, cpu.tmpHi);
}

/** POP r (58+r). */
export function popR(cpu: Cpu, i: Insn): void {
  const v = pop(cpu, i.opSize);
  writeReg(cpu, i.rm, true, i.opSize, v, cpu.tmpHi);
}

/** PUSH imm (68, 6A): sign-extended to the stack width. */
export function pushI(cpu: Cpu, i: Insn): void {
  push(cpu, i.opSize, i.imm, i.immHi);
}

/** PUSH E (FF /6). */
export function pushE(cpu: Cpu, i: Insn): void {
  const v = readE(cpu, i, i.opSize);
  push(cpu, i.opSize, v, cpu.tmpHi);
}

/** POP E (8F /0): RSP is incremented before the destination address is computed. */
export function popE(cpu: Cpu, i: Insn): void {
  const rspLo = cpu.lo[4]!;
  const rspHi = cpu.hi[4]!;
  const v = pop(cpu, i.opSize);
  const vHi = cpu.tmpHi;
  try {
    writeE(cpu, i, i.opSize, v, vHi, false);
  } catch (e) {
    cpu.lo[4] = rspLo; // a faulting destination leaves RSP as it was
    cpu.hi[4] = rspHi;
    throw e;
  }
}

/** PUSHF/PUSHFQ (9C): VM and RF are cleared in the image. */
export function pushf(cpu: Cpu, i: Insn): void {
  const f = cpu.getFlags() & ~(RFLAGS_VM | RFLAGS_RF);
  push(cpu, i.opSize, f, 0);
}

/** POPF/POPFQ (9D): which bits change depends on CPL and IOPL (SDM "POPF"). */
export function popf(cpu: Cpu, i: Insn): void {
  const v = pop(cpu, i.opSize);
  let mask = RFLAGS_ARITH | RFLAGS_TF | RFLAGS_DF | RFLAGS_NT | RFLAGS_AC | RFLAGS_ID;
  const iopl = (cpu.flagsOther & RFLAGS_IOPL) >>> 12;
  if (cpu.cpl === 0) mask |= RFLAGS_IOPL | RFLAGS_IF;
  else if (cpu.cpl <= iopl) mask |= RFLAGS_IF;
  if (i.opSize === 2) mask &= 0xffff;
  cpu.setFlags(v & ~RFLAGS_RF, mask);
}

/** ENTER imm16, imm8 (C8): make a stack frame with `level` nesting (SDM "ENTER"). */
export function enter(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const level = i.imm2 & 31;
  const rbp = readReg(cpu, 5, true, size);
  push(cpu, size, rbp, cpu.tmpHi);
  const frameLo = cpu.lo[4]!;
  const frameHi = cpu.hi[4]!;
  if (level > 0) {
    let bp = size === 8 ? cpu.regAddr(5) : cpu.lo[5]! >>> 0;
    for (let k = 1; k < level; k++) {
      bp -= size;
      const lin = size === 8 ? bp : cpu.linear(2, bp >>> 0);
      const v = size === 8 ? cpu.read64(lin) : size === 4 ? cpu.read32(lin) : cpu.read16(lin);
      push(cpu, size, v, size === 8 ? cpu.tmpHi : 0);
    }
    push(cpu, size, frameLo, frameHi);
  }
  writeReg(cpu, 5, true, size, frameLo, frameHi);
  // RSP -= imm16
  if (cpu.mode64) cpu.setRegFromNumber(4, cpu.regAddr(4) - (i.imm & 0xffff));
  else cpu.setReg32(4, ((cpu.lo[4]! >>> 0) - (i.imm & 0xffff)) >>> 0);
}

/** LEAVE (C9): RSP = RBP; POP RBP. */
export function leave(cpu: Cpu, i: Insn): void {
  if (cpu.mode64) {
    cpu.lo[4] = cpu.lo[5]!;
    cpu.hi[4] = cpu.hi[5]!;
  } else {
    cpu.setReg32(4, cpu.lo[5]!);
  }
  const v = pop(cpu, i.opSize);
  writeReg(cpu, 5, true, i.opSize, v, cpu.tmpHi);
}

