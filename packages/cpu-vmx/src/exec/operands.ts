/**
 * Operand access shared by the handlers: effective addresses, the r/m and reg operands at each
 * width, and arithmetic flag computation. 64-bit values travel as a low int32 (the return value)
 * and a high int32 in `cpu.tmpHi`.
 */
import type { Cpu } from "../cpu.js";
import { toSigned64, wrap64 } from "../cpu/int64.js";
import type { Insn } from "../decode/insn.js";
import { Vector } from "@vtlab/arch";
import { RFLAGS_AF, RFLAGS_CF, RFLAGS_OF, Seg } from "../regs.js";

const TWO_63 = 2 ** 63;

/**
 * The offset (before the segment base) of the instruction's memory operand (SDM Vol. 1, 3.7.5),
 * as a signed number. Exact: while base and index lie within +/-2^32 the double arithmetic is
 * exact; otherwise the sum is formed from 32-bit halves (a 64-bit register can hold any value,
 * and LEA is plain arithmetic).
 */
export function offsetOf(cpu: Cpu, i: Insn): number {
  if (i.addrSize === 4) {
    let a = i.disp;
    if (i.base >= 0) a += cpu.lo[i.base]! >>> 0;
    if (i.index >= 0) a += (cpu.lo[i.index]! >>> 0) * i.scale;
    if (i.ripRel) a += cpu.rip;
    return a >>> 0;
  }
  if (i.addrSize === 2) {
    // 16-bit addressing: base + index + displacement modulo 2^16 (SDM Vol. 1, 3.7.5).
    let a = i.disp;
    if (i.base >= 0) a += cpu.lo[i.base]! & 0xffff;
    if (i.index >= 0) a += cpu.lo[i.index]! & 0xffff;
    return a & 0xffff;
  }
  const bh = i.base >= 0 ? cpu.hi[i.base]! : 0;
  const ih = i.index >= 0 ? cpu.hi[i.index]! : 0;
  if ((bh === 0 || bh === -1) && (ih === 0 || ih === -1)) {
    let a = i.disp;
    if (i.base >= 0) a += bh * 0x1_0000_0000 + (cpu.lo[i.base]! >>> 0);
    if (i.index >= 0) a += (ih * 0x1_0000_0000 + (cpu.lo[i.index]! >>> 0)) * i.scale;
    if (i.ripRel) a += cpu.rip;
    return a;
  }
  offset64(cpu, i);
  return toSigned64(cpu.offLo, cpu.offHi);
}

/** The 64-bit offset as exact halves into `cpu.offLo` / `cpu.offHi` (modulo 2^64). */
export function offset64(cpu: Cpu, i: Insn): void {
  let lo = i.disp | 0;
  let hi = i.disp < 0 ? -1 : 0;
  if (i.base >= 0) {
    const s = (lo >>> 0) + (cpu.lo[i.base]! >>> 0);
    hi = (hi + cpu.hi[i.base]! + (s > 0xffff_ffff ? 1 : 0)) | 0;
    lo = s | 0;
  }
  if (i.index >= 0) {
    const xl = cpu.lo[i.index]! >>> 0;
    const xh = cpu.hi[i.index]!;
    // index * scale: scale is 1, 2, 4 or 8, a left shift of the 64-bit value
    const sh = i.scale === 1 ? 0 : i.scale === 2 ? 1 : i.scale === 4 ? 2 : 3;
    const il = sh === 0 ? xl : (xl << sh) >>> 0;
    const ihi = sh === 0 ? xh : (xh << sh) | (xl >>> (32 - sh));
    const s = (lo >>> 0) + il;
    hi = (hi + ihi + (s > 0xffff_ffff ? 1 : 0)) | 0;
    lo = s | 0;
  }
  if (i.ripRel) {
    const r = cpu.rip;
    const s = (lo >>> 0) + (r >>> 0);
    hi = (hi + (Math.floor(r / 0x1_0000_0000) | 0) + (s > 0xffff_ffff ? 1 : 0)) | 0;
    lo = s | 0;
  }
  cpu.offLo = lo;
  cpu.offHi = hi;
}

/**
 * Linear address of the instruction's memory operand (SDM Vol. 1 3.7.5; Vol. 3A 3.4.4: in 64-bit
 * mode only FS and GS add a base), from the registers in `cpu.lo`/`cpu.hi`, `cpu.rip` (which must
 * be the next instruction's RIP for a RIP-relative operand, as during execution) and the segment
 * bases in `cpu.seg`. The sum is formed modulo 2^64 (2^32 with a 32-bit address size) whatever
 * the register values; the result is a signed number, exact whenever the address is canonical.
 */
export function ea(cpu: Cpu, i: Insn): number {
  let a = offsetOf(cpu, i);
  if (a >= TWO_63 || a < -TWO_63) a = wrap64(a);
  // A non-canonical reference through SS (RSP or RBP as base, or an SS override) is #SS(0), not
  // #GP(0) (SDM Vol. 3A 6.15 "Interrupt 12"; Vol. 1 3.3.7.1).
  if (i.seg === Seg.SS && cpu.mode64 && !cpu.canonical(a)) cpu.fault(Vector.SS, 0);
  return cpu.linear(i.seg, a);
}

/** The linear address of the operand without a canonical check (INVLPG of a non-canonical address is a no-op). */
export function eaUnchecked(cpu: Cpu, i: Insn): number {
  let a = offsetOf(cpu, i);
  if (a >= TWO_63 || a < -TWO_63) a = wrap64(a);
  return cpu.linear(i.seg, a);
}

/** Read the r/m operand at the instruction's operand size; for memory, remembers the address in `cpu.lastEa`. */
export function readE(cpu: Cpu, i: Insn, size: number): number {
  if (!i.isMem) {
    const r = i.rm;
    switch (size) {
      case 1:
        return cpu.getReg8(r, i.rex);
      case 2:
        return cpu.lo[r]! & 0xffff;
      case 4:
        return cpu.lo[r]!;
      default:
        cpu.tmpHi = cpu.hi[r]!;
        return cpu.lo[r]!;
    }
  }
  const lin = ea(cpu, i);
  cpu.lastEa = lin;
  switch (size) {
    case 1:
      return cpu.read8(lin);
    case 2:
      return cpu.read16(lin);
    case 4:
      return cpu.read32(lin);
    default:
      return cpu.read64(lin);
  }
}

/** Write the r/m operand; for memory uses `cpu.lastEa` when `reuse` (read-modify-write). */
export function writeE(cpu: Cpu, i: Insn, size: number, lo: number, hi: number, reuse: boolean): void {
  if (!i.isMem) {
    writeReg(cpu, i.rm, i.rex, size, lo, hi);
    return;
  }
  const lin = reuse ? cpu.lastEa : ea(cpu, i);
  switch (size) {
    case 1:
      cpu.write8(lin, lo);
      return;
    case 2:
      cpu.write16(lin, lo);
      return;
    case 4:
      cpu.write32(lin, lo);
      return;
    default:
      cpu.write64(lin, lo, hi);
  }
}

export function readReg(cpu: Cpu, r: number, rex: boolean, size: number): number {
  switch (size) {
    case 1:
      return cpu.getReg8(r, rex);
    case 2:
      return cpu.lo[r]! & 0xffff;
    case 4:
      return cpu.lo[r]!;
    default:
      cpu.tmpHi = cpu.hi[r]!;
      return cpu.lo[r]!;
  }
}

/** Register write by width: 8/16 merge, 32 zero-extends, 64 writes both halves. */
export function writeReg(cpu: Cpu, r: number, rex: boolean, size: number, lo: number, hi: number): void {
  switch (size) {
    case 1:
      cpu.setReg8(r, rex, lo);
      return;
    case 2:
      cpu.setReg16(r, lo);
      return;
    case 4:
      cpu.lo[r] = lo;
      cpu.hi[r] = 0;
      return;
    default:
      cpu.lo[r] = lo;
      cpu.hi[r] = hi;
  }
}

/** Mask of a width in bits 31:0 (size 4 and 8 use all 32 bits of the low half). */
export function sizeMask(size: number): number {
  return size === 1 ? 0xff : size === 2 ? 0xffff : -1;
}

/** Set ZF, SF, PF from a result. */
export function setZSP(cpu: Cpu, size: number, lo: number, hi: number): void {
  switch (size) {
    case 1:
      cpu.fZ = lo & 0xff;
      cpu.fS = lo << 24;
      break;
    case 2:
      cpu.fZ = lo & 0xffff;
      cpu.fS = lo << 16;
      break;
    case 4:
      cpu.fZ = lo;
      cpu.fS = lo;
      break;
    default:
      cpu.fZ = lo | hi;
      cpu.fS = hi;
  }
  cpu.fP = lo;
}

export const ALU_ADD = 0;
export const ALU_OR = 1;
export const ALU_ADC = 2;
export const ALU_SBB = 3;
export const ALU_AND = 4;
export const ALU_SUB = 5;
export const ALU_XOR = 6;
export const ALU_CMP = 7;

/**
 * Result of ALU operation `op` (x86 group-1 order) on a and b: returns the low half, the high
 * half (size 8) in `cpu.tmpHi`. Flags are set separately by `aluFlags`, after the write-back,
 * so a faulting store leaves them untouched.
 */
export function aluResult(cpu: Cpu, op: number, size: number, a: number, aHi: number, b: number, bHi: number): number {
  const c = op === ALU_ADC || op === ALU_SBB ? cpu.fA & RFLAGS_CF : 0;
  if (size === 8) {
    switch (op) {
      case ALU_ADD:
      case ALU_ADC: {
        const s = (a >>> 0) + (b >>> 0) + c;
        cpu.tmpHi = (aHi + bHi + (s > 0xffff_ffff ? 1 : 0)) | 0;
        return s | 0;
      }
      case ALU_SUB:
      case ALU_SBB:
      case ALU_CMP: {
        const d = (a >>> 0) - (b >>> 0) - c;
        cpu.tmpHi = (aHi - bHi - (d < 0 ? 1 : 0)) | 0;
        return d | 0;
      }
      case ALU_OR:
        cpu.tmpHi = aHi | bHi;
        return a | b;
      case ALU_AND:
        cpu.tmpHi = aHi & bHi;
        return a & b;
      default:
        cpu.tmpHi = aHi ^ bHi;
        return a ^ b;
    }
  }
  const m = sizeMask(size);
  switch (op) {
    case ALU_ADD:
    case ALU_ADC:
      return (a + b + c) & m;
    case ALU_SUB:
    case ALU_SBB:
    case ALU_CMP:
      return (a - b - c) & m;
    case ALU_OR:
      return (a | b) & m;
    case ALU_AND:
      return a & b & m;
    default:
      return (a ^ b) & m;
  }
}

/** Flags of an ALU operation from its operands and result (SDM Vol. 2, each instruction's "Flags Affected"). */
export function aluFlags(cpu: Cpu, op: number, size: number, a: number, aHi: number, b: number, bHi: number, r: number, rHi: number): void {
  setZSP(cpu, size, r, rHi);
  switch (op) {
    case ALU_ADD:
    case ALU_ADC:
      cpu.fA = addFlags(size, a, aHi, b, bHi, r, rHi);
      return;
    case ALU_SUB:
    case ALU_SBB:
    case ALU_CMP:
      cpu.fA = subFlags(size, a, aHi, b, bHi, r, rHi);
      return;
    default:
      cpu.fA = 0; // logical: CF = OF = 0, AF undefined (0 here)
  }
}

/** CF, AF, OF of a + b (+ carry) = r: carry out of the top bit from the carry vector. */
export function addFlags(size: number, a: number, aHi: number, b: number, bHi: number, r: number, rHi: number): number {
  const x = size === 8 ? aHi : a;
  const y = size === 8 ? bHi : b;
  const z = size === 8 ? rHi : r;
  const carries = (x & y) | ((x | y) & ~z);
  const overflow = (x ^ z) & (y ^ z);
  const bit = size === 1 ? 7 : size === 2 ? 15 : 31;
  let f = (a ^ b ^ r) & RFLAGS_AF;
  if (((carries >>> bit) & 1) !== 0) f |= RFLAGS_CF;
  if (((overflow >>> bit) & 1) !== 0) f |= RFLAGS_OF;
  return f;
}

/** CF, AF, OF of a - b (- borrow) = r: borrow out of the top bit. */
export function subFlags(size: number, a: number, aHi: number, b: number, bHi: number, r: number, rHi: number): number {
  const x = size === 8 ? aHi : a;
  const y = size === 8 ? bHi : b;
  const z = size === 8 ? rHi : r;
  const borrows = (~x & y) | (~(x ^ y) & z);
  const overflow = (x ^ y) & (x ^ z);
  const bit = size === 1 ? 7 : size === 2 ? 15 : 31;
  let f = (a ^ b ^ r) & RFLAGS_AF;
  if (((borrows >>> bit) & 1) !== 0) f |= RFLAGS_CF;
  if (((overflow >>> bit) & 1) !== 0) f |= RFLAGS_OF;
  return f;
}

