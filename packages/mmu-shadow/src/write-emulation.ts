/**
 * Emulation of a guest store into a write-protected guest page table (Xen's
 * sh_x86_emulate_write / x86_emulate for the forms kernels use on PTEs). The faulting instruction
 * is decoded with cpu-vmx's decoder; only the store forms gcc and kernels emit for PTE updates
 * are emulated. Anything else is reported by name, and the domain is crashed by the caller.
 */
import type { Insn } from "@vtlab/cpu-vmx";

/** RFLAGS bits the emulated forms write (SDM Vol. 1, 3.4.3). */
export const RFLAGS_CF = 1 << 0;
export const RFLAGS_PF = 1 << 2;
export const RFLAGS_AF = 1 << 4;
export const RFLAGS_ZF = 1 << 6;
export const RFLAGS_SF = 1 << 7;
export const RFLAGS_OF = 1 << 11;
const ARITH = RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF;

/** What the emulated instruction does, computed from the old memory value and the registers. */
export interface EmulatedStore {
  /** Whether memory is written (CMPXCHG that fails does not write). */
  write: boolean;
  lo: number;
  hi: number;
  /** Register written back (XCHG: the source; CMPXCHG failure: RAX), or -1. */
  reg: number;
  regLo: number;
  regHi: number;
  /** New RFLAGS value bits under `flagsMask`. */
  flags: number;
  flagsMask: number;
}

function parity(b: number): number {
  let x = b & 0xff;
  x ^= x >> 4;
  x ^= x >> 2;
  x ^= x >> 1;
  return (x & 1) === 0 ? RFLAGS_PF : 0;
}

function logicFlags(lo: number, hi: number, size: number): number {
  const zero = size === 8 ? (lo | hi) === 0 : lo === 0;
  const sign = size === 8 ? hi >>> 31 : lo >>> 31;
  return (zero ? RFLAGS_ZF : 0) | (sign ? RFLAGS_SF : 0) | parity(lo);
}

/** Flags of CMP a, b (a - b) at `size` bytes, on 32-bit halves. */
function cmpFlags(aLo: number, aHi: number, bLo: number, bHi: number, size: number): number {
  if (size === 4) {
    aHi = 0;
    bHi = 0;
  }
  const dLo = (aLo - bLo) >>> 0;
  const borrow = aLo >>> 0 < bLo >>> 0 ? 1 : 0;
  const dHi = (aHi - bHi - borrow) >>> 0;
  const top = size === 8 ? [aHi, bHi, dHi] : [aLo, bLo, dLo];
  const [a, b, d] = top as [number, number, number];
  const cf = size === 8 ? aHi >>> 0 < (bHi >>> 0) + borrow : aLo >>> 0 < bLo >>> 0;
  const of = ((a ^ b) & (a ^ d)) >>> 31;
  const zero = size === 8 ? (dLo | dHi) === 0 : dLo === 0;
  return (cf ? RFLAGS_CF : 0) | (of ? RFLAGS_OF : 0) | (zero ? RFLAGS_ZF : 0) | ((d >>> 31) !== 0 ? RFLAGS_SF : 0) | parity(dLo) | (((aLo ^ bLo ^ dLo) & 0x10) !== 0 ? RFLAGS_AF : 0);
}

/**
 * Compute the store of `insn` (a memory-destination instruction) given the old memory value and
 * the register file halves. Returns the store, or a message naming the unsupported form.
 */
export function emulatePteStore(insn: Insn, oldLo: number, oldHi: number, lo: Int32Array, hi: Int32Array, rflags: number): EmulatedStore | string {
  const size = insn.opSize;
  const name = insn.mnemonic !== "" ? insn.mnemonic : `opcode 0x${insn.opcode.toString(16)}`;
  if (!insn.isMem) return `${name} without a memory operand`;
  if (size !== 4 && size !== 8) return `${name} with a ${size}-byte operand (only 4- and 8-byte PTE stores are emulated)`;
  const out: EmulatedStore = { write: true, lo: 0, hi: 0, reg: -1, regLo: 0, regHi: 0, flags: 0, flagsMask: 0 };
  const rLo = (lo[insn.reg] as number) >>> 0;
  const rHi = size === 8 ? (hi[insn.reg] as number) >>> 0 : 0;
  const immLo = insn.imm >>> 0;
  const immHi = size === 8 ? insn.immHi >>> 0 : 0; // the decoder sign-extends imm8/imm32 into immHi
  const op = insn.opcode;
  const logic = (vLo: number, vHi: number, kind: "or" | "and"): void => {
    out.lo = (kind === "or" ? oldLo | vLo : oldLo & vLo) >>> 0;
    out.hi = size === 8 ? (kind === "or" ? oldHi | vHi : oldHi & vHi) >>> 0 : 0;
    out.flags = logicFlags(out.lo, out.hi, size);
    out.flagsMask = ARITH & ~RFLAGS_AF;
  };
  const bit = (n: number, set: boolean): void => {
    n &= size * 8 - 1;
    const inHi = n >= 32;
    const mask = (1 << (n & 31)) >>> 0;
    const was = ((inHi ? oldHi : oldLo) & mask) !== 0;
    out.lo = oldLo >>> 0;
    out.hi = size === 8 ? oldHi >>> 0 : 0;
    if (inHi) out.hi = (set ? out.hi | mask : out.hi & ~mask) >>> 0;
    else out.lo = (set ? out.lo | mask : out.lo & ~mask) >>> 0;
    out.flags = was ? RFLAGS_CF : 0;
    out.flagsMask = RFLAGS_CF;
  };
  switch (op) {
    case 0x89: // MOV r/m, r
      out.lo = rLo;
      out.hi = rHi;
      return out;
    case 0xc7: // MOV r/m, imm32 (sign-extended to 64)
      if (insn.reg !== 0) break;
      out.lo = immLo;
      out.hi = immHi;
      return out;
    case 0x87: // XCHG r/m, r (implicitly locked)
      out.lo = rLo;
      out.hi = rHi;
      out.reg = insn.reg;
      out.regLo = oldLo >>> 0;
      out.regHi = size === 8 ? oldHi >>> 0 : 0;
      return out;
    case 0x1b1: {
      // CMPXCHG r/m, r: compare with RAX; equal: store the source; else RAX := old.
      const aLo = (lo[0] as number) >>> 0;
      const aHi = size === 8 ? (hi[0] as number) >>> 0 : 0;
      out.flags = cmpFlags(aLo, aHi, oldLo >>> 0, size === 8 ? oldHi >>> 0 : 0, size);
      out.flagsMask = ARITH;
      if (aLo === oldLo >>> 0 && aHi === (size === 8 ? oldHi >>> 0 : 0)) {
        out.lo = rLo;
        out.hi = rHi;
      } else {
        out.write = false;
        out.reg = 0;
        out.regLo = oldLo >>> 0;
        out.regHi = size === 8 ? oldHi >>> 0 : 0;
      }
      return out;
    }
    case 0x09: // OR r/m, r
      logic(rLo, rHi, "or");
      return out;
    case 0x21: // AND r/m, r
      logic(rLo, rHi, "and");
      return out;
    case 0x81:
    case 0x83: // group 1 with imm32 / imm8 (sign-extended): /1 OR, /4 AND
      if (insn.reg === 1) logic(immLo, immHi, "or");
      else if (insn.reg === 4) logic(immLo, immHi, "and");
      else break;
      return out;
    case 0x1ab: // BTS r/m, r
    case 0x1b3: // BTR r/m, r
      // A register bit offset may address outside the operand (SDM "BT": bit-string addressing).
      if (rHi !== 0 || rLo >= size * 8) return `${name} with bit offset ${rLo} outside the ${size}-byte operand`;
      bit(rLo, op === 0x1ab);
      return out;
    case 0x1ba: // group 8: /5 BTS imm8, /6 BTR imm8
      if (insn.reg === 5) bit(insn.imm, true);
      else if (insn.reg === 6) bit(insn.imm, false);
      else break;
      return out;
    default:
      break;
  }
  void rflags;
  return `${name} (opcode 0x${op.toString(16)}${insn.reg !== undefined ? ` /${insn.reg}` : ""}) is not an emulated page-table store form`;
}
