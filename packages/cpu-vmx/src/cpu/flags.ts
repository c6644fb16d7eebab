/**
 * RFLAGS, kept lazily: the six arithmetic flags live in four cheap `Cpu` fields that a handler
 * writes with the result it already has, and are derived only when read.
 * - `fZ`: ZF = (fZ === 0) (the result itself, or any value with the same zero-ness);
 * - `fS`: SF = (fS < 0) (the result as a signed int32, its top bit in bit 31);
 * - `fP`: PF = PARITY_EVEN[fP & 0xff] (the result's low byte);
 * - `fA`: CF, AF and OF in their RFLAGS positions;
 * - `flagsOther`: every other RFLAGS bit (bit 1 always set).
 * This module reads and writes that representation; it imports only the `Cpu` type.
 */
import type { Cpu } from "../cpu.js";
import { RFLAGS_AC, RFLAGS_AF, RFLAGS_CF, RFLAGS_FIXED, RFLAGS_OF, RFLAGS_PF, RFLAGS_SF, RFLAGS_TF, RFLAGS_ZF } from "../regs.js";

/** 8-bit parity: PF = 1 when the low byte of the result has an even number of set bits. */
export const PARITY_EVEN = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let b = i;
  b ^= b >> 4;
  b ^= b >> 2;
  b ^= b >> 1;
  PARITY_EVEN[i] = (b & 1) === 0 ? 1 : 0;
}

/** RFLAGS as the guest sees it (low 32 bits; the upper half is reserved zero). */
export function getFlags(cpu: Cpu): number {
  let f = cpu.flagsOther | (cpu.fA & (RFLAGS_CF | RFLAGS_AF | RFLAGS_OF));
  if (cpu.fZ === 0) f |= RFLAGS_ZF;
  if (cpu.fS < 0) f |= RFLAGS_SF;
  if (PARITY_EVEN[cpu.fP & 0xff] === 1) f |= RFLAGS_PF;
  return f >>> 0;
}

/** Set the six arithmetic flags from RFLAGS-positioned bits. */
export function setArithFlags(cpu: Cpu, bits: number): void {
  cpu.fA = bits & (RFLAGS_CF | RFLAGS_AF | RFLAGS_OF);
  cpu.fZ = (bits & RFLAGS_ZF) !== 0 ? 0 : 1;
  cpu.fS = (bits & RFLAGS_SF) !== 0 ? -1 : 0;
  cpu.fP = (bits & RFLAGS_PF) !== 0 ? 0 : 1;
}

/** Write RFLAGS: the bits in `mask` come from `value`. */
export function setFlags(cpu: Cpu, value: number, mask: number): void {
  const cur = cpu.getFlags();
  const next = ((cur & ~mask) | (value & mask) | RFLAGS_FIXED) >>> 0;
  cpu.setArithFlags(next);
  cpu.flagsOther = next & ~(RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF);
  const ac = (next & RFLAGS_AC) !== 0;
  cpu.paging.ac = ac;
  if ((next & RFLAGS_TF) !== 0) cpu.attention = 1;
}

/** Evaluate condition code `cc` (SDM Vol. 1, Appendix B: tttn encoding). */
export function cond(cpu: Cpu, cc: number): boolean {
  let r: boolean;
  switch (cc >> 1) {
    case 0:
      r = (cpu.fA & RFLAGS_OF) !== 0;
      break; // O
    case 1:
      r = (cpu.fA & RFLAGS_CF) !== 0;
      break; // B
    case 2:
      r = cpu.fZ === 0;
      break; // Z
    case 3:
      r = (cpu.fA & RFLAGS_CF) !== 0 || cpu.fZ === 0;
      break; // BE
    case 4:
      r = cpu.fS < 0;
      break; // S
    case 5:
      r = PARITY_EVEN[cpu.fP & 0xff] === 1;
      break; // P
    case 6:
      r = cpu.fS < 0 !== ((cpu.fA & RFLAGS_OF) !== 0);
      break; // L
    default:
      r = cpu.fZ === 0 || cpu.fS < 0 !== ((cpu.fA & RFLAGS_OF) !== 0); // LE
  }
  return (cc & 1) !== 0 ? !r : r;
}
