/**
 * Shifts and rotates (SDM Vol. 2: SAL/SAR/SHL/SHR, RCL/RCR/ROL/ROR, SHLD, SHRD). The count is
 * masked to 5 bits (6 with a 64-bit operand); a masked count of 0 changes no flags. OF is
 * defined only for a count of 1; for larger counts we compute it with the count-1 formula, a
 * value the SDM leaves undefined. AF after a shift is undefined; we clear it.
 */
import type { Cpu } from "../cpu.js";
import type { Insn } from "../decode/insn.js";
import { RFLAGS_CF, RFLAGS_OF } from "../regs.js";
import { readE, readReg, setZSP, writeE } from "./operands.js";

const SUB_ROL = 0;
const SUB_ROR = 1;
const SUB_RCL = 2;
const SUB_RCR = 3;
const SUB_SHL = 4;
const SUB_SHR = 5;
const SUB_SAL = 6;

/** Shift amount source, decided at decode time: 1, CL or imm8. */
export function shiftE1(cpu: Cpu, i: Insn): void {
  shiftE(cpu, i, 1);
}
export function shiftECL(cpu: Cpu, i: Insn): void {
  shiftE(cpu, i, cpu.lo[1]! & 0xff);
}
export function shiftEI(cpu: Cpu, i: Insn): void {
  shiftE(cpu, i, i.imm & 0xff);
}

function shiftE(cpu: Cpu, i: Insn, rawCount: number): void {
  const size = i.opSize;
  const bits = size * 8;
  const count = rawCount & (size === 8 ? 0x3f : 0x1f);
  let lo = readE(cpu, i, size);
  let hi = size === 8 ? cpu.tmpHi : 0;
  if (count === 0) {
    // No flags change; a 32-bit register destination is still written (upper half cleared).
    writeE(cpu, i, size, lo, hi, true);
    return;
  }
  const op = i.cc === SUB_SAL ? SUB_SHL : i.cc;
  let cf = 0;
  let of = 0;
  if (size === 8) {
    const r = shift64(op, lo, hi, count, cpu.fA & RFLAGS_CF);
    lo = r.lo;
    hi = r.hi;
    cf = r.cf;
    of = overflowOf(op, hi >>> 31, (hi >>> 30) & 1, cf, r.origMsb);
  } else {
    const mask = size === 4 ? -1 : (1 << bits) - 1;
    const v = size === 4 ? lo >>> 0 : lo & mask;
    let r: number;
    switch (op) {
      case SUB_ROL: {
        const n = count % bits;
        r = n === 0 ? v : ((v << n) | (v >>> (bits - n))) & mask;
        cf = r & 1;
        break;
      }
      case SUB_ROR: {
        const n = count % bits;
        r = n === 0 ? v : ((v >>> n) | (v << (bits - n))) & mask;
        cf = (r >>> (bits - 1)) & 1;
        break;
      }
      case SUB_RCL: {
        const n = count % (bits + 1);
        let x = v;
        let c = cpu.fA & RFLAGS_CF;
        for (let k = 0; k < n; k++) {
          const out = (x >>> (bits - 1)) & 1;
          x = ((x << 1) | c) & mask;
          c = out;
        }
        r = x;
        cf = c;
        break;
      }
      case SUB_RCR: {
        const n = count % (bits + 1);
        let x = v;
        let c = cpu.fA & RFLAGS_CF;
        for (let k = 0; k < n; k++) {
          const out = x & 1;
          x = ((x >>> 1) | (c << (bits - 1))) & mask;
          c = out;
        }
        r = x;
        cf = c;
        break;
      }
      case SUB_SHL:
        cf = count <= bits ? (v >>> (bits - count)) & 1 : 0;
        r = count >= bits ? 0 : (v << count) & mask;
        break;
      case SUB_SHR:
        cf = count <= bits ? (v >>> (count - 1)) & 1 : 0;
        r = count >= bits ? 0 : v >>> count;
        break;
      default: {
        // SAR: sign-fill
        const s = size === 4 ? v | 0 : (v << (32 - bits)) >> (32 - bits);
        const n = Math.min(count, 31);
        cf = count >= bits ? (s >>> 31) & 1 : (s >> (count - 1)) & 1;
        r = (s >> n) & mask;
        break;
      }
    }
    lo = r | 0;
    of = overflowOf(op, (r >>> (bits - 1)) & 1, (r >>> (bits - 2)) & 1, cf, (v >>> (bits - 1)) & 1);
  }
  writeE(cpu, i, size, lo, hi, true);
  const flags = (cf !== 0 ? RFLAGS_CF : 0) | (of !== 0 ? RFLAGS_OF : 0);
  if (op <= SUB_RCR) {
    // Rotates change only CF and OF.
    cpu.fA = (cpu.fA & ~(RFLAGS_CF | RFLAGS_OF)) | flags;
  } else {
    setZSP(cpu, size, lo, hi);
    cpu.fA = flags;
  }
}

/** OF rule per operation for a count of 1 (SDM): from the result's top bits, CF and the original top bit. */
function overflowOf(op: number, msb: number, msb1: number, cf: number, origMsb: number): number {
  switch (op) {
    case SUB_ROL:
    case SUB_RCL:
    case SUB_SHL:
      return msb ^ cf;
    case SUB_ROR:
    case SUB_RCR:
      return msb ^ msb1;
    case SUB_SHR:
      return origMsb;
    default:
      return 0; // SAR
  }
}

const out64 = { lo: 0, hi: 0, cf: 0, origMsb: 0 };

function shift64(op: number, lo: number, hi: number, count: number, cfIn: number): typeof out64 {
  out64.origMsb = hi >>> 31;
  let rlo: number;
  let rhi: number;
  let cf: number;
  switch (op) {
    case SUB_ROL: {
      rotl64(lo, hi, count);
      rlo = rot.lo;
      rhi = rot.hi;
      cf = rlo & 1;
      break;
    }
    case SUB_ROR: {
      rotl64(lo, hi, (64 - count) % 64);
      rlo = rot.lo;
      rhi = rot.hi;
      cf = rhi >>> 31;
      break;
    }
    case SUB_RCL: {
      let l = lo;
      let h = hi;
      let c = cfIn;
      for (let k = 0; k < count; k++) {
        const o = h >>> 31;
        h = (h << 1) | (l >>> 31);
        l = (l << 1) | c;
        c = o;
      }
      rlo = l;
      rhi = h;
      cf = c;
      break;
    }
    case SUB_RCR: {
      let l = lo;
      let h = hi;
      let c = cfIn;
      for (let k = 0; k < count; k++) {
        const o = l & 1;
        l = (l >>> 1) | (h << 31);
        h = (h >>> 1) | (c << 31);
        c = o;
      }
      rlo = l;
      rhi = h;
      cf = c;
      break;
    }
    case SUB_SHL:
      if (count < 32) {
        cf = (hi >>> (32 - count)) & 1;
        rhi = (hi << count) | (lo >>> (32 - count));
        rlo = lo << count;
      } else {
        cf = count === 32 ? hi & 1 : (lo >>> (64 - count)) & 1; // bit 64 - count
        rhi = count === 32 ? lo : lo << (count - 32);
        rlo = 0;
      }
      break;
    case SUB_SHR:
      if (count < 32) {
        cf = (lo >>> (count - 1)) & 1;
        rlo = (lo >>> count) | (hi << (32 - count));
        rhi = hi >>> count;
      } else {
        cf = count === 32 ? lo >>> 31 : (hi >>> (count - 33)) & 1; // bit count - 1
        rlo = count === 32 ? hi : hi >>> (count - 32);
        rhi = 0;
      }
      break;
    default:
      if (count < 32) {
        cf = (lo >>> (count - 1)) & 1;
        rlo = (lo >>> count) | (hi << (32 - count));
        rhi = hi >> count;
      } else {
        cf = count === 32 ? lo >>> 31 : (hi >> (count - 33)) & 1;
        rlo = count === 32 ? hi : hi >> (count - 32);
        rhi = hi >> 31;
      }
  }
  out64.lo = rlo | 0;
  out64.hi = rhi | 0;
  out64.cf = cf & 1;
  return out64;
}

const rot = { lo: 0, hi: 0 };

/** 64-bit rotate left into `rot` (no allocation). */
function rotl64(lo: number, hi: number, n: number): void {
  if (n === 0) {
    rot.lo = lo;
    rot.hi = hi;
  } else if (n === 32) {
    rot.lo = hi;
    rot.hi = lo;
  } else if (n < 32) {
    rot.lo = (lo << n) | (hi >>> (32 - n));
    rot.hi = (hi << n) | (lo >>> (32 - n));
  } else {
    const m = n - 32;
    rot.lo = (hi << m) | (lo >>> (32 - m));
    rot.hi = (lo << m) | (hi >>> (32 - m));
  }
}

/** SHLD/SHRD E,G,imm8 / CL (0F A4, A5, AC, AD): `i.cc` 0 = left, 1 = right. */
export function shldImm(cpu: Cpu, i: Insn): void {
  doubleShift(cpu, i, i.imm & 0xff);
}
export function shldCL(cpu: Cpu, i: Insn): void {
  doubleShift(cpu, i, cpu.lo[1]! & 0xff);
}

function doubleShift(cpu: Cpu, i: Insn, raw: number): void {
  const size = i.opSize;
  const bits = size * 8;
  const count = raw & (size === 8 ? 0x3f : 0x1f);
  const dLo = readE(cpu, i, size);
  const dHi = cpu.tmpHi;
  if (count === 0) {
    writeE(cpu, i, size, dLo, dHi, true);
    return;
  }
  const sLo = readReg(cpu, i.reg, i.rex, size);
  const sHi = cpu.tmpHi;
  const left = i.cc === 0;
  // Work on a 128-bit (or 64-bit) concatenation with exact integer arithmetic on 16-bit limbs.
  const dst = toBits(dLo, dHi, size);
  const src = toBits(sLo, sHi, size);
  let result: number[];
  let cf: number;
  if (count > bits) {
    // Undefined for 16-bit operands with count > 16 (SDM); we shift the concatenation modulo its length.
    result = dst;
    cf = 0;
  } else if (left) {
    const cat = dst.concat(src); // msb first
    result = cat.slice(count, count + bits);
    cf = cat[count - 1] ?? 0;
  } else {
    const cat = src.concat(dst);
    result = cat.slice(bits - count, 2 * bits - count);
    cf = dst[bits - count] ?? 0;
  }
  const [rLo, rHi] = fromBits(result, size);
  writeE(cpu, i, size, rLo, rHi, true);
  setZSP(cpu, size, rLo, rHi);
  const msb = result[0] ?? 0;
  const of = msb !== (dst[0] ?? 0) ? 1 : 0;
  cpu.fA = (cf !== 0 ? RFLAGS_CF : 0) | (of !== 0 ? RFLAGS_OF : 0);
}

/** Bits of a value, most significant first. SHLD/SHRD are rare enough for this clarity. */
function toBits(lo: number, hi: number, size: number): number[] {
  const bits = size * 8;
  const out: number[] = [];
  for (let b = bits - 1; b >= 0; b--) out.push(b >= 32 ? (hi >>> (b - 32)) & 1 : (lo >>> b) & 1);
  return out;
}

function fromBits(bits: number[], size: number): [number, number] {
  let lo = 0;
  let hi = 0;
  const n = size * 8;
  for (let k = 0; k < n; k++) {
    const b = n - 1 - k;
    if (bits[k] === 1) {
      if (b >= 32) hi |= 1 << (b - 32);
      else lo |= 1 << b;
    }
  }
  return [lo | 0, hi | 0];
}
