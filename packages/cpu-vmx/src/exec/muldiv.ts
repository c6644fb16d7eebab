/**
 * MUL, IMUL (one-, two- and three-operand forms), DIV and IDIV at every width (SDM Vol. 2).
 * 32 x 32 -> 64-bit products are Math.imul for the low half and four 16-bit partial products for
 * the high half; 64 x 64 -> 128 sums four of those by columns. 128 / 64-bit division uses a float fast path
 * when the operands fit in 52 bits and exact shift-subtract otherwise. No BigInt.
 * After MUL/IMUL only CF and OF are defined; SF, ZF, AF, PF are set from the low half of the
 * result here (the SDM leaves them undefined). After DIV/IDIV all six are undefined and are left
 * unchanged here.
 */
import type { Cpu } from "../cpu.js";
import { Vector } from "@vtlab/arch";
import type { Insn } from "../decode/insn.js";
import { RFLAGS_CF, RFLAGS_OF } from "../regs.js";
import { readE, readReg, setZSP, writeReg } from "./operands.js";

const TWO_32 = 0x1_0000_0000;
/** 2^-32: multiplying by it is exact, and (x * TWO_M32) | 0 is the carry out of a sum below 2^53. */
const TWO_M32 = 2 ** -32;
/** The 128-bit product of mulU64 / mulS64 as four 32-bit words, least significant first (reused: no allocation). */
export const prod = new Int32Array(4);

/**
 * High 32 bits of the unsigned 64-bit product of two 32-bit values (either signedness in, the
 * bits count as unsigned). Exact: four 16 x 16-bit partial products, each below 2^32, and the
 * carry out of the middle column; the low 32 bits are Math.imul(a, b).
 */
export function mulHiU32(a: number, b: number): number {
  const a0 = a & 0xffff;
  const a1 = a >>> 16;
  const b0 = b & 0xffff;
  const b1 = b >>> 16;
  const p1 = a1 * b0;
  const p2 = a0 * b1;
  const carry = (((a0 * b0) >>> 16) + (p1 & 0xffff) + (p2 & 0xffff)) >>> 16;
  return (a1 * b1 + (p1 >>> 16) + (p2 >>> 16) + carry) | 0;
}

/** High 32 bits of the signed 64-bit product of two signed 32-bit values: the unsigned one corrected. */
export function mulHiS32(a: number, b: number): number {
  const x = a | 0;
  const y = b | 0;
  return (mulHiU32(x, y) - (x < 0 ? y : 0) - (y < 0 ? x : 0)) | 0;
}

/**
 * The signed product of two 32-bit values does not fit in 32 bits (IMUL's CF = OF). Exact: with
 * `a` and `b` signed, a product inside the int32 range is exact as a double and equals the
 * truncated one; one outside it stays outside after rounding (the bounds are doubles), so it
 * cannot equal Math.imul's result.
 */
export function imul32Overflows(a: number, b: number): boolean {
  return (a | 0) * (b | 0) !== Math.imul(a, b);
}

/** Unsigned 64 x 64 -> 128 multiply into `prod`: four 32 x 32 products summed by 32-bit columns. */
export function mulU64(aLo: number, aHi: number, bLo: number, bHi: number): void {
  const w1 = (mulHiU32(aLo, bLo) >>> 0) + (Math.imul(aLo, bHi) >>> 0) + (Math.imul(aHi, bLo) >>> 0); // < 3 * 2^32
  const w2 = (mulHiU32(aLo, bHi) >>> 0) + (mulHiU32(aHi, bLo) >>> 0) + (Math.imul(aHi, bHi) >>> 0) + ((w1 * TWO_M32) | 0);
  prod[0] = Math.imul(aLo, bLo);
  prod[1] = w1 | 0;
  prod[2] = w2 | 0;
  prod[3] = (mulHiU32(aHi, bHi) + ((w2 * TWO_M32) | 0)) | 0;
}

/** Signed 64 x 64 -> 128 multiply into `prod`: the unsigned product with the high half corrected. */
export function mulS64(aLo: number, aHi: number, bLo: number, bHi: number): void {
  mulU64(aLo, aHi, bLo, bHi);
  let h0 = prod[2]! >>> 0;
  let h1 = prod[3]! >>> 0;
  if (aHi < 0) {
    // high -= b
    const d = h0 - (bLo >>> 0);
    h0 = d >>> 0;
    h1 = (h1 - (bHi >>> 0) - (d < 0 ? 1 : 0)) >>> 0;
  }
  if (bHi < 0) {
    const d = h0 - (aLo >>> 0);
    h0 = d >>> 0;
    h1 = (h1 - (aHi >>> 0) - (d < 0 ? 1 : 0)) >>> 0;
  }
  prod[2] = h0 | 0;
  prod[3] = h1 | 0;
}

/**
 * The signed 64 x 64-bit product does not fit in 64 bits (IMUL's CF = OF). Operands that both fit
 * in 32 bits (sign-extended) give a product below 2^62 in magnitude: never; otherwise the full product.
 */
export function imul64Overflows(aLo: number, aHi: number, bLo: number, bHi: number): boolean {
  if (aHi === aLo >> 31 && bHi === bLo >> 31) return false;
  mulS64(aLo, aHi, bLo, bHi);
  const sign = prod[1]! >> 31;
  return prod[2] !== sign || prod[3] !== sign;
}

/** High 32 bits of the truncated 64-bit product (its low 32 bits are Math.imul(aLo, bLo)). */
export function mulLowHi64(aLo: number, aHi: number, bLo: number, bHi: number): number {
  return (mulHiU32(aLo, bLo) + Math.imul(aLo, bHi) + Math.imul(aHi, bLo)) | 0;
}

/** MUL E (F6 /4, F7 /4): unsigned, into AX / DX:AX / EDX:EAX / RDX:RAX. */
export function mulE(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const b = readE(cpu, i, size);
  const bHi = cpu.tmpHi;
  let high: boolean;
  switch (size) {
    case 1: {
      const r = (cpu.lo[0]! & 0xff) * b;
      cpu.setReg16(0, r);
      high = r > 0xff;
      setZSP(cpu, 1, r, 0);
      break;
    }
    case 2: {
      const r = (cpu.lo[0]! & 0xffff) * b;
      cpu.setReg16(0, r);
      cpu.setReg16(2, r >>> 16);
      high = r > 0xffff;
      setZSP(cpu, 2, r, 0);
      break;
    }
    case 4: {
      const a = cpu.lo[0]!;
      const lo = Math.imul(a, b);
      const hi = mulHiU32(a, b);
      cpu.setReg32(0, lo);
      cpu.setReg32(2, hi);
      high = hi !== 0;
      setZSP(cpu, 4, lo, 0);
      break;
    }
    default: {
      mulU64(cpu.lo[0]!, cpu.hi[0]!, b, bHi);
      cpu.lo[0] = prod[0]!;
      cpu.hi[0] = prod[1]!;
      cpu.lo[2] = prod[2]!;
      cpu.hi[2] = prod[3]!;
      high = (prod[2]! | prod[3]!) !== 0;
      setZSP(cpu, 8, prod[0]!, prod[1]!);
    }
  }
  cpu.fA = high ? RFLAGS_CF | RFLAGS_OF : 0;
}

/** IMUL E (F6 /5, F7 /5): signed, one operand. */
export function imul1E(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const b = readE(cpu, i, size);
  const bHi = cpu.tmpHi;
  let overflow: boolean;
  switch (size) {
    case 1: {
      const r = ((cpu.lo[0]! << 24) >> 24) * ((b << 24) >> 24);
      cpu.setReg16(0, r);
      overflow = r !== (r << 24) >> 24;
      setZSP(cpu, 1, r, 0);
      break;
    }
    case 2: {
      const r = ((cpu.lo[0]! << 16) >> 16) * ((b << 16) >> 16);
      cpu.setReg16(0, r);
      cpu.setReg16(2, r >> 16);
      overflow = r !== (r << 16) >> 16;
      setZSP(cpu, 2, r, 0);
      break;
    }
    case 4: {
      const a = cpu.lo[0]!;
      const lo = Math.imul(a, b);
      const hi = mulHiS32(a, b);
      cpu.setReg32(0, lo);
      cpu.setReg32(2, hi);
      overflow = hi !== lo >> 31;
      setZSP(cpu, 4, lo, 0);
      break;
    }
    default: {
      mulS64(cpu.lo[0]!, cpu.hi[0]!, b, bHi);
      cpu.lo[0] = prod[0]!;
      cpu.hi[0] = prod[1]!;
      cpu.lo[2] = prod[2]!;
      cpu.hi[2] = prod[3]!;
      const sign = prod[1]! >> 31;
      overflow = prod[2] !== sign || prod[3] !== sign;
      setZSP(cpu, 8, prod[0]!, prod[1]!);
    }
  }
  cpu.fA = overflow ? RFLAGS_CF | RFLAGS_OF : 0;
}

/** IMUL G, E (0F AF) and IMUL G, E, imm (69, 6B): truncated signed product into G. */
export function imulGE(cpu: Cpu, i: Insn): void {
  imul2(cpu, i, readReg(cpu, i.reg, i.rex, i.opSize), cpu.tmpHi);
}
export function imulGEI(cpu: Cpu, i: Insn): void {
  imul2(cpu, i, i.imm, i.immHi);
}

function imul2(cpu: Cpu, i: Insn, b: number, bHi: number): void {
  const size = i.opSize;
  const a = readE(cpu, i, size);
  const aHi = cpu.tmpHi;
  let lo: number;
  let hi = 0;
  let overflow: boolean;
  if (size === 2) {
    const r = ((a << 16) >> 16) * ((b << 16) >> 16);
    lo = r & 0xffff;
    overflow = r !== (r << 16) >> 16;
  } else if (size === 4) {
    lo = Math.imul(a, b);
    overflow = imul32Overflows(a, b);
  } else {
    lo = Math.imul(a, b);
    hi = mulLowHi64(a, aHi, b, bHi);
    overflow = imul64Overflows(a, aHi, b, bHi);
  }
  writeReg(cpu, i.reg, i.rex, size, lo, hi);
  setZSP(cpu, size, lo, hi);
  cpu.fA = overflow ? RFLAGS_CF | RFLAGS_OF : 0;
}

const qr = { qLo: 0, qHi: 0, rLo: 0, rHi: 0 };

/**
 * Unsigned (nHi:nLo, 64 bits each as halves n3 n2 n1 n0) / (dHi:dLo). The caller guarantees
 * d != 0 and high(n) < d so the quotient fits in 64 bits.
 */
function udiv128(n3: number, n2: number, n1: number, n0: number, dHi: number, dLo: number): void {
  const n = (n1 >>> 0) * TWO_32 + (n0 >>> 0);
  const d = (dHi >>> 0) * TWO_32 + (dLo >>> 0);
  if ((n3 | n2) === 0 && n < 2 ** 52 && d < 2 ** 52) {
    let q = Math.floor(n / d);
    let r = n - q * d;
    if (r < 0) {
      q--;
      r += d;
    } else if (r >= d) {
      q++;
      r -= d;
    }
    qr.qLo = q >>> 0;
    qr.qHi = Math.floor(q / TWO_32) >>> 0;
    qr.rLo = r >>> 0;
    qr.rHi = Math.floor(r / TWO_32) >>> 0;
    return;
  }
  // Shift-subtract over 64 quotient bits; the remainder (r: 65 bits at most) as hi/lo.
  let rHi = n3 >>> 0;
  let rLo = n2 >>> 0;
  let qHi = 0;
  let qLo = 0;
  const dh = dHi >>> 0;
  const dl = dLo >>> 0;
  for (let bit = 63; bit >= 0; bit--) {
    const nb = bit >= 32 ? (n1 >>> (bit - 32)) & 1 : (n0 >>> bit) & 1;
    const top = rHi >>> 31;
    rHi = ((rHi << 1) | (rLo >>> 31)) >>> 0;
    rLo = ((rLo << 1) | nb) >>> 0;
    if (top === 1 || rHi > dh || (rHi === dh && rLo >= dl)) {
      const t = rLo - dl;
      rLo = t >>> 0;
      rHi = (rHi - dh - (t < 0 ? 1 : 0)) >>> 0;
      if (bit >= 32) qHi |= 1 << (bit - 32);
      else qLo |= 1 << bit;
    }
  }
  qr.qLo = qLo >>> 0;
  qr.qHi = qHi >>> 0;
  qr.rLo = rLo;
  qr.rHi = rHi;
}

/** DIV E (F6 /6, F7 /6): #DE on divide by zero or a quotient too wide. */
export function divE(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const d = readE(cpu, i, size);
  const dHi = cpu.tmpHi;
  switch (size) {
    case 1: {
      if (d === 0) cpu.fault(Vector.DE);
      const n = cpu.lo[0]! & 0xffff;
      const q = Math.floor(n / d);
      if (q > 0xff) cpu.fault(Vector.DE);
      cpu.setReg16(0, ((n % d) << 8) | q);
      return;
    }
    case 2: {
      if (d === 0) cpu.fault(Vector.DE);
      const n = (cpu.lo[2]! & 0xffff) * 65536 + (cpu.lo[0]! & 0xffff);
      const q = Math.floor(n / d);
      if (q > 0xffff) cpu.fault(Vector.DE);
      cpu.setReg16(0, q);
      cpu.setReg16(2, n % d);
      return;
    }
    case 4: {
      const dv = d >>> 0;
      if (dv === 0 || cpu.lo[2]! >>> 0 >= dv) cpu.fault(Vector.DE);
      udiv128(0, 0, cpu.lo[2]!, cpu.lo[0]!, 0, dv);
      cpu.setReg32(0, qr.qLo | 0);
      cpu.setReg32(2, qr.rLo | 0);
      return;
    }
    default: {
      if ((d | dHi) === 0) cpu.fault(Vector.DE);
      const xh = cpu.hi[2]! >>> 0;
      const xl = cpu.lo[2]! >>> 0;
      if (xh > dHi >>> 0 || (xh === dHi >>> 0 && xl >= d >>> 0)) cpu.fault(Vector.DE);
      udiv128(cpu.hi[2]!, cpu.lo[2]!, cpu.hi[0]!, cpu.lo[0]!, dHi, d);
      cpu.lo[0] = qr.qLo | 0;
      cpu.hi[0] = qr.qHi | 0;
      cpu.lo[2] = qr.rLo | 0;
      cpu.hi[2] = qr.rHi | 0;
    }
  }
}

/** IDIV E (F6 /7, F7 /7): signed; the quotient truncates toward zero, the remainder takes the dividend's sign. */
export function idivE(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const d = readE(cpu, i, size);
  const dHi = cpu.tmpHi;
  switch (size) {
    case 1: {
      const dv = (d << 24) >> 24;
      if (dv === 0) cpu.fault(Vector.DE);
      const n = ((cpu.lo[0]! & 0xffff) << 16) >> 16;
      const q = Math.trunc(n / dv);
      if (q > 127 || q < -128) cpu.fault(Vector.DE);
      cpu.setReg16(0, ((n % dv & 0xff) << 8) | (q & 0xff));
      return;
    }
    case 2: {
      const dv = (d << 16) >> 16;
      if (dv === 0) cpu.fault(Vector.DE);
      const n = ((cpu.lo[2]! << 16) | (cpu.lo[0]! & 0xffff)) | 0;
      const q = Math.trunc(n / dv);
      if (q > 32767 || q < -32768) cpu.fault(Vector.DE);
      cpu.setReg16(0, q);
      cpu.setReg16(2, n % dv);
      return;
    }
    case 4:
      idivWide(cpu, cpu.lo[2]! >> 31, cpu.lo[2]!, cpu.lo[2]!, cpu.lo[0]!, d >> 31, d, 4);
      return;
    default:
      idivWide(cpu, cpu.hi[2]!, cpu.lo[2]!, cpu.hi[0]!, cpu.lo[0]!, dHi, d, 8);
  }
}

/** Signed 128/64 (or 64/32 sign-extended) division via magnitudes and udiv128. */
function idivWide(cpu: Cpu, n3: number, n2: number, n1: number, n0: number, dHi: number, dLo: number, size: 4 | 8): void {
  if (size === 4) {
    // dividend EDX:EAX as a 64-bit signed value in n1:n0 (n1 = EDX).
    n1 = n2;
    n2 = n3;
  }
  if ((dHi | dLo) === 0) cpu.fault(Vector.DE);
  const negN = n3 < 0;
  const negD = dHi < 0;
  // magnitudes
  let a3 = n3;
  let a2 = n2;
  let a1 = n1;
  let a0 = n0;
  if (negN) {
    neg128(a3, a2, a1, a0);
    a3 = w128[3]!;
    a2 = w128[2]!;
    a1 = w128[1]!;
    a0 = w128[0]!;
  }
  let bh = dHi;
  let bl = dLo;
  if (negD) {
    neg128(-1, -1, dHi, dLo);
    bh = w128[1]!;
    bl = w128[0]!;
  }
  // overflow check: high 64 bits of |n| must be < |d| for the quotient to fit in 64 bits unsigned
  if ((a3 >>> 0) > (bh >>> 0) || (a3 === bh && (a2 >>> 0) >= (bl >>> 0))) cpu.fault(Vector.DE);
  udiv128(a3, a2, a1, a0, bh, bl);
  let qLo = qr.qLo | 0;
  let qHi = qr.qHi | 0;
  let rLo = qr.rLo | 0;
  let rHi = qr.rHi | 0;
  const negQ = negN !== negD;
  if (size === 4) {
    // quotient must fit in a signed 32-bit value
    if (qHi !== 0 || (negQ ? qLo >>> 0 > 0x8000_0000 : qLo >>> 0 > 0x7fff_ffff)) cpu.fault(Vector.DE);
    if (negQ) qLo = -qLo | 0;
    if (negN) rLo = -rLo | 0;
    cpu.setReg32(0, qLo);
    cpu.setReg32(2, rLo);
    return;
  }
  const limitHi = qHi >>> 0;
  if (negQ ? limitHi > 0x8000_0000 || (limitHi === 0x8000_0000 && qLo !== 0) : limitHi > 0x7fff_ffff) cpu.fault(Vector.DE);
  if (negQ) {
    neg128(0, 0, qHi, qLo);
    qHi = w128[1]!;
    qLo = w128[0]!;
  }
  if (negN) {
    neg128(0, 0, rHi, rLo);
    rHi = w128[1]!;
    rLo = w128[0]!;
  }
  cpu.lo[0] = qLo;
  cpu.hi[0] = qHi;
  cpu.lo[2] = rLo;
  cpu.hi[2] = rHi;
}

/** Result words of neg128, least significant first (reused: no allocation). */
const w128 = new Int32Array(4);

/** Two's-complement negation of a 128-bit value given as four 32-bit words, most significant first. */
function neg128(w3: number, w2: number, w1: number, w0: number): void {
  let c = 1;
  let v = (~w0 >>> 0) + c;
  w128[0] = v | 0;
  c = v > 0xffff_ffff ? 1 : 0;
  v = (~w1 >>> 0) + c;
  w128[1] = v | 0;
  c = v > 0xffff_ffff ? 1 : 0;
  v = (~w2 >>> 0) + c;
  w128[2] = v | 0;
  c = v > 0xffff_ffff ? 1 : 0;
  w128[3] = ((~w3 >>> 0) + c) | 0;
}
