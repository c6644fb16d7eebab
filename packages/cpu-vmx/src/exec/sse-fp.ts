/**
 * SSE/SSE2 floating point (SDM Vol. 1 chapter 4.8-4.9, 10.2.3, 11.5; Vol. 2 under each
 * mnemonic): ADD/SUB/MUL/DIV/SQRT/MIN/MAX, CMPcc, (U)COMIS, the conversions and RCP/RSQRT, in
 * single and double precision, packed and scalar, with MXCSR exactly: the four rounding modes,
 * FTZ and DAZ, the six exception flags, and an unmasked exception raising #XM (CR4.OSXMMEXCPT = 1)
 * or #UD (= 0) with the destination and EFLAGS unchanged.
 *
 * How results are rounded: every operation first forms its exact result as a pair of doubles
 * H + L scaled by 2^E (H the double nearest the exact value and L the rest, or at least its
 * sign): TwoSum for addition, a Veltkamp/Dekker TwoProduct for multiplication and for the
 * remainders of division (a - q*b) and square root (a - q*q), on significands scaled to [1, 2)
 * so nothing overflows or underflows on the way. `roundPair` then rounds that exact value to
 * binary32 or binary64 in the MXCSR rounding mode by integer arithmetic on H / quantum (exact in
 * doubles), using L's sign to break the cases where H itself lies on a boundary. Tininess is
 * detected after rounding (SDM 4.9.1.5); a masked underflow sets UE only when the result is also
 * inexact, and with FTZ gives a zero with UE and PE.
 *
 * Modelled more simply: RCPPS/RCPSS/RSQRTPS/RSQRTSS return the correctly rounded reciprocal (or
 * reciprocal square root) instead of the processor's table approximation (relative error at most
 * 1.5 * 2^-12, and different on each processor generation): within the architectural bound,
 * with the architectural special cases (denormal inputs as zero, tiny results flushed to zero,
 * no flags), but not bit-identical to any one processor.
 */
import { Vector } from "@vtlab/arch";
import type { Cpu } from "../cpu.js";
import type { Insn } from "../decode/insn.js";
import { CR4_OSXMMEXCPT, RFLAGS_CF, RFLAGS_PF, RFLAGS_ZF } from "../regs.js";
import { ea } from "./operands.js";
import { SLOT_T, sseAvailable, srcW128, srcW32, srcW64 } from "./sse.js";

// ---- MXCSR (SDM Figure 10-3) ----
/** Exception flags (bits 5:0). */
export const MXCSR_IE = 1 << 0;
export const MXCSR_DE = 1 << 1;
export const MXCSR_ZE = 1 << 2;
export const MXCSR_OE = 1 << 3;
export const MXCSR_UE = 1 << 4;
export const MXCSR_PE = 1 << 5;
/** Denormals are zeros: denormal source operands read as signed zeros (no DE). */
export const MXCSR_DAZ = 1 << 6;
/** Exception masks IM..PM (bits 12:7), in flag order. */
export const MXCSR_MASK_SHIFT = 7;
/** Rounding control (bits 14:13): 0 nearest even, 1 down, 2 up, 3 toward zero. */
export const MXCSR_RC_SHIFT = 13;
/** Flush to zero: a masked underflow's result is a signed zero. */
export const MXCSR_FTZ = 1 << 15;

const RC_NEAREST = 0;
const RC_DOWN = 1;
const RC_UP = 2;
const RC_ZERO = 3;

/** Formats. */
const F32 = 0;
const F64 = 1;

// ---- Per-instruction state (module scratch: no allocation per instruction) ----
let rc = 0;
let daz = false;
let ftz = false;
let masks = 0x3f;
/** Flags of the lane being computed: pre-computation (IE, DE, ZE) and post-computation (OE, UE, PE). */
let pre = 0;
let post = 0;
/** The result of a lane: the low and high 32 bits (single precision: `resLo` only). */
let resLo = 0;
let resHi = 0;

function begin(cpu: Cpu): void {
  const m = cpu.fpu.mxcsr;
  rc = (m >>> MXCSR_RC_SHIFT) & 3;
  daz = (m & MXCSR_DAZ) !== 0;
  ftz = (m & MXCSR_FTZ) !== 0;
  masks = (m >>> MXCSR_MASK_SHIFT) & 0x3f;
}

/**
 * Raise the SIMD floating-point exception for unmasked `flags` after setting them in MXCSR:
 * #XM with CR4.OSXMMEXCPT = 1, else #UD (SDM 11.5.1, Table 13-5).
 */
function raiseXm(cpu: Cpu, flags: number, i: Insn): never {
  cpu.fpu.mxcsr |= flags;
  if ((cpu.cr4 & CR4_OSXMMEXCPT) !== 0) cpu.fault(Vector.XM);
  cpu.undefinedOpcode(`${i.mnemonic}: unmasked SIMD floating-point exception with CR4.OSXMMEXCPT = 0`);
}

// ---- Bits and doubles ----
const f64 = new Float64Array(1);
const u64 = new Int32Array(f64.buffer);
const f32 = new Float32Array(1);
const u32 = new Int32Array(f32.buffer);

function bitsToF32(b: number): number {
  u32[0] = b;
  return f32[0]!;
}
function bitsToF64(lo: number, hi: number): number {
  u64[0] = lo;
  u64[1] = hi;
  return f64[0]!;
}
/** Encode a non-NaN double that is representable in the format into resLo/resHi. */
function encode(fmt: number, v: number): void {
  if (fmt === F32) {
    f32[0] = v;
    resLo = u32[0]!;
    resHi = 0;
  } else {
    f64[0] = v;
    resLo = u64[0]!;
    resHi = u64[1]!;
  }
}

function isNaNBits(fmt: number, lo: number, hi: number): boolean {
  return fmt === F32 ? (lo & 0x7fffffff) > 0x7f800000 : (hi & 0x7fffffff) > 0x7ff00000 || ((hi & 0x7fffffff) === 0x7ff00000 && lo !== 0);
}
function isSNaNBits(fmt: number, lo: number, hi: number): boolean {
  return isNaNBits(fmt, lo, hi) && (fmt === F32 ? (lo & 0x00400000) === 0 : (hi & 0x00080000) === 0);
}
function isDenormalBits(fmt: number, lo: number, hi: number): boolean {
  return fmt === F32 ? (lo & 0x7f800000) === 0 && (lo & 0x007fffff) !== 0 : (hi & 0x7ff00000) === 0 && ((hi & 0x000fffff) !== 0 || lo !== 0);
}
/** The NaN quieted, into resLo/resHi. */
function quiet(fmt: number, lo: number, hi: number): void {
  if (fmt === F32) {
    resLo = lo | 0x00400000;
    resHi = 0;
  } else {
    resLo = lo;
    resHi = hi | 0x00080000;
  }
}
/** The default NaN, "QNaN floating-point indefinite" (SDM Table 4-3). */
function indefinite(fmt: number): void {
  if (fmt === F32) {
    resLo = 0xffc00000 | 0;
    resHi = 0;
  } else {
    resLo = 0;
    resHi = 0xfff80000 | 0;
  }
}

/**
 * The operand's value (not a NaN): a denormal reads as a signed zero with DAZ, else sets DE.
 */
function value(fmt: number, lo: number, hi: number): number {
  if (isDenormalBits(fmt, lo, hi)) {
    if (daz) return (fmt === F32 ? lo : hi) < 0 ? -0 : 0;
    pre |= MXCSR_DE;
  }
  return fmt === F32 ? bitsToF32(lo) : bitsToF64(lo, hi);
}

/** x * 2^k exactly (for results and intermediates within the double range). */
function ldexp(x: number, k: number): number {
  while (k > 1000) {
    x *= 2 ** 1000;
    k -= 1000;
  }
  while (k < -1000) {
    x *= 2 ** -1000;
    k += 1000;
  }
  return x * 2 ** k;
}

/** floor(log2 x) for a finite x > 0 (subnormal doubles included). */
function expOf(x: number): number {
  f64[0] = x;
  const e = (u64[1]! >>> 20) & 0x7ff;
  if (e !== 0) return e - 1023;
  f64[0] = x * 2 ** 64;
  return ((u64[1]! >>> 20) & 0x7ff) - 1023 - 64;
}
/** x > 0 is a power of two. */
function isPow2(x: number): boolean {
  const e = expOf(x);
  return ldexp(x, -e) === 1;
}

// ---- Error-free transformations ----
let tsErr = 0;
/** TwoSum (Knuth): returns fl(a + b), the exact error in tsErr. */
function twoSum(a: number, b: number): number {
  const s = a + b;
  const bb = s - a;
  tsErr = a - (s - bb) + (b - bb);
  return s;
}
const SPLIT = 134217729; // 2^27 + 1 (Veltkamp)
let tpErr = 0;
/** TwoProduct (Dekker): returns fl(a * b), the exact error in tpErr (|a|, |b| < 2^995). */
function twoProduct(a: number, b: number): number {
  const p = a * b;
  let t = SPLIT * a;
  const ah = t - (t - a);
  const al = a - ah;
  t = SPLIT * b;
  const bh = t - (t - b);
  const bl = b - bh;
  tpErr = al * bl - (p - ah * bh - al * bh - ah * bl);
  return p;
}

// ---- Rounding ----
let lastInexact = false;

/**
 * round(|H + L| / 2^k) to an integer in the current rounding mode (`neg`: the value's sign),
 * with |L| < ulp(H): H / 2^k is exact; L decides only where H / 2^k is an integer or a half.
 */
function roundInt(h: number, l: number, k: number, neg: boolean): number {
  const t = ldexp(h, -k);
  let n = Math.floor(t);
  const frac = t - n;
  // 0 exact, 1 below half, 2 half, 3 above half
  let cls: number;
  if (t < 2 ** -1000) cls = 1;
  else if (frac === 0) {
    if (l === 0) cls = 0;
    else if (l > 0) cls = 1;
    else {
      n -= 1;
      cls = 3;
    }
  } else if (frac === 0.5) cls = l === 0 ? 2 : l > 0 ? 3 : 1;
  else cls = frac < 0.5 ? 1 : 3;
  lastInexact = cls !== 0;
  let up = false;
  if (cls !== 0) {
    if (rc === RC_NEAREST) up = cls === 3 || (cls === 2 && n % 2 === 1);
    else if (rc === RC_UP) up = !neg;
    else if (rc === RC_DOWN) up = neg;
  }
  return up ? n + 1 : n;
}

const P = [24, 53];
const EMIN = [-126, -1022];
const EMAX = [127, 1023];
const MAX_FINITE = [3.4028234663852886e38, Number.MAX_VALUE];

/**
 * Round the exact nonzero value (H + L) * 2^E to the format in the MXCSR mode into resLo/resHi,
 * adding OE, UE and PE to `post` as the SDM says (4.9.1.4-4.9.1.6): an overflow is OE and PE
 * with the mode's infinity or largest finite number; a tiny result (after rounding with an
 * unbounded exponent) is UE and PE when inexact (or always with FTZ, which gives a zero), and
 * with underflow unmasked UE whether inexact or not. An unmasked OE or UE comes with PE only when
 * the result rounded with an unbounded exponent is inexact (what the host CPU reports at the #XM).
 */
function roundPair(fmt: number, h: number, l: number, e2: number): void {
  let neg = false;
  if (h < 0) {
    h = -h;
    l = -l;
    neg = true;
  }
  const p = P[fmt]!;
  const emin = EMIN[fmt]!;
  let e = expOf(h) + e2;
  if (l < 0 && isPow2(h)) e -= 1;
  const qe = (e < emin ? emin : e) - (p - 1);
  const n = roundInt(h, l, qe - e2, neg);
  const inexact = lastInexact;
  let tiny = false;
  // Inexact at the format's precision with an unbounded exponent (what an unmasked OE/UE reports).
  let inexactUnbounded = inexact;
  if (e < emin) {
    const nu = roundInt(h, l, e - (p - 1) - e2, neg);
    inexactUnbounded = lastInexact;
    tiny = nu < 2 ** (emin - e + p - 1);
  }
  if (!tiny && qe + p - 1 + (n >= 2 ** p ? 1 : 0) > EMAX[fmt]!) {
    // Unmasked, PE comes with OE only when the result rounded with an unbounded exponent is inexact.
    post |= (masks & MXCSR_OE) === 0 ? MXCSR_OE | (inexact ? MXCSR_PE : 0) : MXCSR_OE | MXCSR_PE;
    const toInf = rc === RC_NEAREST || (rc === RC_UP && !neg) || (rc === RC_DOWN && neg);
    encode(fmt, (toInf ? Infinity : MAX_FINITE[fmt]!) * (neg ? -1 : 1));
    return;
  }
  if (tiny) {
    if ((masks & MXCSR_UE) === 0) post |= MXCSR_UE | (inexactUnbounded ? MXCSR_PE : 0); // unmasked: exact or not
    else if (ftz) {
      post |= MXCSR_UE | MXCSR_PE;
      encode(fmt, neg ? -0 : 0);
      return;
    } else if (inexact) post |= MXCSR_UE | MXCSR_PE;
  } else if (inexact) post |= MXCSR_PE;
  const v = ldexp(n, qe);
  encode(fmt, neg ? -v : v);
}

/** A signed zero result of an exact cancellation: -0 only in round-down (IEEE 754 6.3). */
function exactZero(fmt: number, bothNegative: boolean): void {
  encode(fmt, bothNegative || rc === RC_DOWN ? -0 : 0);
}

// ---- The operations on one lane ----
export const FpOp = { ADD: 0, SUB: 1, MUL: 2, DIV: 3, MIN: 4, MAX: 5, SQRT: 6, RCP: 7, RSQRT: 8 } as const;

/** x + y for finite nonzero-or-zero x, y (not both zero handled by the caller). */
function addValues(fmt: number, x: number, y: number): void {
  if (x === 0 && y === 0) {
    // Zeros of one sign keep it; of opposite signs they cancel exactly.
    if (Object.is(x, -0) === Object.is(y, -0)) encode(fmt, x);
    else exactZero(fmt, false);
    return;
  }
  // A zero addend still goes through rounding: a denormal result is tiny (FTZ, UE).
  let e2 = 0;
  if (Math.abs(x) >= 2 ** 1020 || Math.abs(y) >= 2 ** 1020) {
    // Scale down so the sum cannot overflow the double range; a tiny addend keeps its sign.
    const xs = x * 0.25;
    const ys = y * 0.25;
    x = xs === 0 ? Math.sign(x) * Number.MIN_VALUE : xs;
    y = ys === 0 ? Math.sign(y) * Number.MIN_VALUE : ys;
    e2 = 2;
  }
  const s = twoSum(x, y);
  if (s === 0 && tsErr === 0) {
    exactZero(fmt, false);
    return;
  }
  roundPair(fmt, s, tsErr, e2);
}

function lane2(fmt: number, op: number, aLo: number, aHi: number, bLo: number, bHi: number): void {
  const nanA = isNaNBits(fmt, aLo, aHi);
  const nanB = isNaNBits(fmt, bLo, bHi);
  if (op === FpOp.MIN || op === FpOp.MAX) {
    // Any NaN: IE, and the second (source) operand is the result unchanged (SDM MINPS/MAXPS).
    if (nanA || nanB) {
      pre |= MXCSR_IE;
      if (daz && isDenormalBits(fmt, bLo, bHi)) encode(fmt, (fmt === F32 ? bLo : bHi) < 0 ? -0 : 0);
      else {
        resLo = bLo;
        resHi = bHi;
      }
      return;
    }
    const x = value(fmt, aLo, aHi);
    const y = value(fmt, bLo, bHi);
    const firstWins = op === FpOp.MIN ? x < y : x > y;
    if (firstWins) {
      if (daz && x === 0) encode(fmt, x);
      else {
        resLo = aLo;
        resHi = aHi;
      }
    } else if (daz && y === 0) encode(fmt, y);
    else {
      resLo = bLo;
      resHi = bHi;
    }
    return;
  }
  if (nanA || nanB) {
    if (isSNaNBits(fmt, aLo, aHi) || isSNaNBits(fmt, bLo, bHi)) pre |= MXCSR_IE;
    if (nanA) quiet(fmt, aLo, aHi);
    else quiet(fmt, bLo, bHi);
    return;
  }
  const x = value(fmt, aLo, aHi);
  let y = value(fmt, bLo, bHi);
  if (op === FpOp.SUB) {
    y = -y;
    op = FpOp.ADD;
  }
  const xInf = !Number.isFinite(x);
  const yInf = !Number.isFinite(y);
  if (op === FpOp.ADD) {
    if (xInf || yInf) {
      if (xInf && yInf && x !== y) {
        pre |= MXCSR_IE;
        indefinite(fmt);
      } else encode(fmt, xInf ? x : y);
      return;
    }
    addValues(fmt, x, y);
    return;
  }
  const neg = (x < 0 || Object.is(x, -0)) !== (y < 0 || Object.is(y, -0));
  if (op === FpOp.MUL) {
    if ((xInf && y === 0) || (yInf && x === 0)) {
      pre |= MXCSR_IE;
      indefinite(fmt);
      return;
    }
    if (xInf || yInf) encode(fmt, neg ? -Infinity : Infinity);
    else if (x === 0 || y === 0) encode(fmt, neg ? -0 : 0);
    else {
      const ex = expOf(Math.abs(x));
      const ey = expOf(Math.abs(y));
      const h = twoProduct(ldexp(x, -ex), ldexp(y, -ey));
      roundPair(fmt, h, tpErr, ex + ey);
    }
    return;
  }
  // DIV
  if ((xInf && yInf) || (x === 0 && y === 0)) {
    pre |= MXCSR_IE;
    indefinite(fmt);
    return;
  }
  if (xInf) encode(fmt, neg ? -Infinity : Infinity);
  else if (yInf || x === 0) encode(fmt, neg ? -0 : 0);
  else if (y === 0) {
    pre |= MXCSR_ZE;
    encode(fmt, neg ? -Infinity : Infinity);
  } else {
    const ex = expOf(Math.abs(x));
    const ey = expOf(Math.abs(y));
    const mx = ldexp(x, -ex);
    const my = ldexp(y, -ey);
    const q = mx / my;
    const ph = twoProduct(q, my);
    const r = mx - ph - tpErr;
    roundPair(fmt, q, r === 0 ? 0 : r / my, ex - ey);
  }
}

function sqrtLane(fmt: number, bLo: number, bHi: number): void {
  if (isNaNBits(fmt, bLo, bHi)) {
    if (isSNaNBits(fmt, bLo, bHi)) pre |= MXCSR_IE;
    quiet(fmt, bLo, bHi);
    return;
  }
  // A negative operand is invalid before it is a denormal (no DE then).
  const negative = (fmt === F32 ? bLo : bHi) < 0;
  const zeroBits = fmt === F32 ? (bLo & 0x7fffffff) === 0 : (bHi & 0x7fffffff) === 0 && bLo === 0;
  if (negative && !zeroBits && !(daz && isDenormalBits(fmt, bLo, bHi))) {
    pre |= MXCSR_IE;
    indefinite(fmt);
    return;
  }
  const x = value(fmt, bLo, bHi);
  if (x === 0) encode(fmt, x);
  else if (x === Infinity) encode(fmt, x);
  else {
    let e = expOf(x);
    if (e % 2 !== 0) e -= 1;
    const m = ldexp(x, -e); // [1, 4)
    const q = Math.sqrt(m);
    const ph = twoProduct(q, q);
    const r = m - ph - tpErr;
    roundPair(fmt, q, r === 0 ? 0 : r / (2 * q), e / 2);
  }
}

/** RCP and RSQRT (single precision only): see the file comment; no flags. */
function approxLane(op: number, bLo: number): void {
  if (isNaNBits(F32, bLo, 0)) {
    quiet(F32, bLo, 0);
    return;
  }
  let x = bitsToF32(bLo);
  if (isDenormalBits(F32, bLo, 0)) x = bLo < 0 ? -0 : 0;
  if (op === FpOp.RSQRT) {
    if (x === 0) encode(F32, Object.is(x, -0) ? -Infinity : Infinity);
    else if (x < 0) indefinite(F32);
    else encode(F32, Math.fround(1 / Math.sqrt(x)));
    return;
  }
  if (x === 0) encode(F32, Object.is(x, -0) ? -Infinity : Infinity);
  else {
    const r = 1 / x;
    encode(F32, Math.abs(r) < 2 ** -126 ? (r < 0 ? -0 : 0) : Math.fround(r));
  }
}

// ---- Handlers ----
/** cc bits of the arithmetic handler: the operation, double precision, scalar. */
export const FP_DOUBLE = 16;
export const FP_SCALAR = 32;

/** Read the W operand of an FP instruction: m32/m64 for scalar forms, an aligned m128 for packed. */
function srcFp(cpu: Cpu, i: Insn, fmt: number, scalar: boolean): number {
  if (!scalar) return srcW128(cpu, i, true);
  return fmt === F32 ? srcW32(cpu, i) : srcW64(cpu, i);
}

/**
 * Commit a computed result in SLOT_T (lanes `lanes` of `fmt`) to register `reg` after the
 * exception check: pre-computation flags of every lane first (an unmasked one: #XM with only
 * those flags), then post-computation flags.
 */
function commit(cpu: Cpu, i: Insn, reg: number, preAll: number, postAll: number, lanes: number): void {
  const unmaskedPre = preAll & ~masks & 0x3f;
  if (unmaskedPre !== 0) raiseXm(cpu, preAll, i);
  const all = preAll | postAll;
  if ((all & ~masks & 0x3f) !== 0) raiseXm(cpu, all, i);
  cpu.fpu.mxcsr |= all;
  const d = cpu.fpu.xd;
  for (let k = 0; k < lanes; k++) d[reg * 4 + k] = d[SLOT_T * 4 + k]!;
}

/** ADD, SUB, MUL, DIV, MIN, MAX, SQRT, RCP, RSQRT in PS, PD, SS, SD forms (cc: FpOp | FP_DOUBLE | FP_SCALAR). */
export function fpArith(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const fmt = (i.cc & FP_DOUBLE) !== 0 ? F64 : F32;
  const scalar = (i.cc & FP_SCALAR) !== 0;
  const op = i.cc & 15;
  const s = srcFp(cpu, i, fmt, scalar);
  begin(cpu);
  const d = cpu.fpu.xd;
  const r = i.reg;
  let preAll = 0;
  let postAll = 0;
  const lanes = scalar ? 1 : fmt === F32 ? 4 : 2;
  for (let k = 0; k < lanes; k++) {
    pre = 0;
    post = 0;
    if (fmt === F32) {
      const a = d[r * 4 + k]!;
      const b = d[s * 4 + k]!;
      if (op === FpOp.SQRT) sqrtLane(F32, b, 0);
      else if (op >= FpOp.RCP) approxLane(op, b);
      else lane2(F32, op, a, 0, b, 0);
      d[SLOT_T * 4 + k] = resLo;
    } else {
      const aLo = d[r * 4 + 2 * k]!;
      const aHi = d[r * 4 + 2 * k + 1]!;
      const bLo = d[s * 4 + 2 * k]!;
      const bHi = d[s * 4 + 2 * k + 1]!;
      if (op === FpOp.SQRT) sqrtLane(F64, bLo, bHi);
      else lane2(F64, op, aLo, aHi, bLo, bHi);
      d[SLOT_T * 4 + 2 * k] = resLo;
      d[SLOT_T * 4 + 2 * k + 1] = resHi;
    }
    // A higher-priority invalid or divide-by-zero exception leaves no denormal flag (SDM 4.9.2).
    if ((pre & (MXCSR_IE | MXCSR_ZE)) !== 0) pre &= ~MXCSR_DE;
    preAll |= pre;
    postAll |= post;
  }
  commit(cpu, i, r, preAll, postAll, scalar ? (fmt === F32 ? 1 : 2) : 4);
}

/** One comparison: 0 greater, 1 less, 2 equal, 3 unordered; IE per `signaling` (any NaN) or SNaN only. */
function compareLane(fmt: number, aLo: number, aHi: number, bLo: number, bHi: number, signaling: boolean): number {
  const nanA = isNaNBits(fmt, aLo, aHi);
  const nanB = isNaNBits(fmt, bLo, bHi);
  if (nanA || nanB) {
    if (signaling || isSNaNBits(fmt, aLo, aHi) || isSNaNBits(fmt, bLo, bHi)) pre |= MXCSR_IE;
    return 3;
  }
  const x = value(fmt, aLo, aHi);
  const y = value(fmt, bLo, bHi);
  return x > y ? 0 : x < y ? 1 : 2;
}

/** CMPPS/CMPPD/CMPSS/CMPSD xmm, xmm/m, imm8 (0F C2): predicate imm8[2:0] (EQ, LT, LE, UNORD, NEQ, NLT, NLE, ORD). */
export function fpCmp(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const fmt = (i.cc & FP_DOUBLE) !== 0 ? F64 : F32;
  const scalar = (i.cc & FP_SCALAR) !== 0;
  const s = srcFp(cpu, i, fmt, scalar);
  begin(cpu);
  const pred = i.imm & 7;
  // LT, LE, NLT, NLE signal IE on a QNaN too (SDM Table 3-1).
  const signaling = pred === 1 || pred === 2 || pred === 5 || pred === 6;
  const d = cpu.fpu.xd;
  const r = i.reg;
  const lanes = scalar ? 1 : fmt === F32 ? 4 : 2;
  let preAll = 0;
  for (let k = 0; k < lanes; k++) {
    pre = 0;
    const w = fmt === F32 ? 1 : 2;
    const c = compareLane(fmt, d[r * 4 + w * k]!, fmt === F32 ? 0 : d[r * 4 + 2 * k + 1]!, d[s * 4 + w * k]!, fmt === F32 ? 0 : d[s * 4 + 2 * k + 1]!, signaling);
    let t: boolean;
    switch (pred) {
      case 0:
        t = c === 2;
        break;
      case 1:
        t = c === 1;
        break;
      case 2:
        t = c === 1 || c === 2;
        break;
      case 3:
        t = c === 3;
        break;
      case 4:
        t = c !== 2;
        break;
      case 5:
        t = c !== 1;
        break;
      case 6:
        t = c === 0 || c === 3;
        break;
      default:
        t = c !== 3;
    }
    for (let j = 0; j < w; j++) d[SLOT_T * 4 + w * k + j] = t ? -1 : 0;
    preAll |= pre;
  }
  commit(cpu, i, r, preAll, 0, scalar ? (fmt === F32 ? 1 : 2) : 4);
}

/**
 * COMISS/COMISD (cc bit 0: signaling, IE on any NaN) and UCOMISS/UCOMISD (IE on an SNaN only)
 * (0F 2E/2F): ZF, PF, CF = 111 unordered, 000 greater, 001 less, 100 equal; OF, SF, AF cleared.
 */
export function comis(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const fmt = (i.cc & FP_DOUBLE) !== 0 ? F64 : F32;
  const s = srcFp(cpu, i, fmt, true);
  begin(cpu);
  const d = cpu.fpu.xd;
  const r = i.reg;
  pre = 0;
  const c = compareLane(fmt, d[r * 4]!, fmt === F32 ? 0 : d[r * 4 + 1]!, d[s * 4]!, fmt === F32 ? 0 : d[s * 4 + 1]!, (i.cc & 1) !== 0);
  if ((pre & ~masks & 0x3f) !== 0) raiseXm(cpu, pre, i);
  cpu.fpu.mxcsr |= pre;
  cpu.setArithFlags(c === 3 ? RFLAGS_ZF | RFLAGS_PF | RFLAGS_CF : c === 1 ? RFLAGS_CF : c === 2 ? RFLAGS_ZF : 0);
}

// ---- Conversions ----
/** Convert FP bits to a signed integer of `bits` (32 or 64): truncating or in the MXCSR mode; NaN or out of range: IE and the integer indefinite. Result in resLo/resHi. */
function toInt(fmt: number, lo: number, hi: number, bits: number, truncate: boolean): void {
  if (isNaNBits(fmt, lo, hi)) {
    pre |= MXCSR_IE;
    resLo = bits === 32 ? 0x80000000 | 0 : 0;
    resHi = bits === 32 ? 0 : 0x80000000 | 0;
    return;
  }
  // Denormal sources: DAZ reads them as zero; the conversion to an integer reports no DE.
  let x = fmt === F32 ? bitsToF32(lo) : bitsToF64(lo, hi);
  if (daz && isDenormalBits(fmt, lo, hi)) x = 0;
  let n: number;
  const fl = Math.floor(x);
  const frac = x - fl;
  if (frac === 0) n = x;
  else {
    post |= MXCSR_PE;
    const mode = truncate ? RC_ZERO : rc;
    if (mode === RC_DOWN) n = fl;
    else if (mode === RC_UP) n = fl + 1;
    else if (mode === RC_ZERO) n = x < 0 ? fl + 1 : fl;
    else n = frac > 0.5 ? fl + 1 : frac < 0.5 ? fl : fl % 2 === 0 ? fl : fl + 1;
  }
  const limit = bits === 32 ? 2 ** 31 : 2 ** 63;
  if (!(n >= -limit && n < limit)) {
    pre |= MXCSR_IE;
    post = 0;
    resLo = bits === 32 ? 0x80000000 | 0 : 0;
    resHi = bits === 32 ? 0 : 0x80000000 | 0;
    return;
  }
  const h = Math.floor(n / 2 ** 32);
  resLo = (n - h * 2 ** 32) | 0;
  resHi = h | 0;
}

/** An integer (lo, hi: signed 64-bit; or a signed 32-bit lo with hi its sign) to the format, rounded. */
function fromInt(fmt: number, lo: number, hi: number): void {
  const big = hi * 2 ** 32;
  const s = twoSum(big, lo >>> 0);
  if (s === 0) encode(fmt, 0);
  else roundPair(fmt, s, tsErr, 0);
}

/** FP to FP: single to double (exact) or double to single (rounded). */
function convertFp(from: number, lo: number, hi: number): void {
  if (isNaNBits(from, lo, hi)) {
    if (isSNaNBits(from, lo, hi)) pre |= MXCSR_IE;
    if (from === F32) {
      // The sign and payload move to the top of the double's significand, quieted.
      resHi = (lo & 0x80000000) | 0x7ff80000 | ((lo & 0x003fffff) >>> 3);
      resLo = (lo & 7) << 29;
    } else resLo = (hi & 0x80000000) | 0x7fc00000 | ((hi & 0x0007ffff) << 3) | (lo >>> 29);
    resHi = from === F32 ? resHi : 0;
    return;
  }
  const x = value(from, lo, hi);
  if (from === F32 || x === 0 || !Number.isFinite(x)) encode(from === F32 ? F64 : F32, x);
  else roundPair(F32, x, 0, 0);
}

/** Conversion kinds (cc). */
export const Cvt = {
  SI2SS: 0,
  SI2SD: 1,
  SS2SI: 2,
  SD2SI: 3,
  TSS2SI: 4,
  TSD2SI: 5,
  SS2SD: 6,
  SD2SS: 7,
  PS2PD: 8,
  PD2PS: 9,
  DQ2PS: 10,
  PS2DQ: 11,
  TPS2DQ: 12,
  DQ2PD: 13,
  PD2DQ: 14,
  TPD2DQ: 15,
} as const;

/** CVTSI2SS/SD xmm, r/m32/64 (F3/F2 [REX.W] 0F 2A): the low lane; the rest of the destination stays. */
export function cvtsi2s(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  let lo: number;
  let hi: number;
  if (i.isMem) {
    const at = ea(cpu, i);
    lo = i.opSize === 8 ? cpu.read64(at) : cpu.read32(at);
    hi = i.opSize === 8 ? cpu.tmpHi : lo >> 31;
  } else {
    lo = cpu.lo[i.rm]!;
    hi = i.opSize === 8 ? cpu.hi[i.rm]! : lo >> 31;
  }
  begin(cpu);
  pre = 0;
  post = 0;
  const fmt = i.cc === Cvt.SI2SS ? F32 : F64;
  fromInt(fmt, lo, hi);
  const d = cpu.fpu.xd;
  d[SLOT_T * 4] = resLo;
  d[SLOT_T * 4 + 1] = resHi;
  commit(cpu, i, i.reg, pre, post, fmt === F32 ? 1 : 2);
}

/** CVT(T)SS2SI / CVT(T)SD2SI r32/64, xmm/m (F3/F2 [REX.W] 0F 2C/2D). */
export function cvts2si(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const fmt = i.cc === Cvt.SS2SI || i.cc === Cvt.TSS2SI ? F32 : F64;
  const s = fmt === F32 ? srcW32(cpu, i) : srcW64(cpu, i);
  begin(cpu);
  pre = 0;
  post = 0;
  const d = cpu.fpu.xd;
  toInt(fmt, d[s * 4]!, fmt === F32 ? 0 : d[s * 4 + 1]!, i.opSize === 8 ? 64 : 32, i.cc === Cvt.TSS2SI || i.cc === Cvt.TSD2SI);
  const all = pre | post;
  if ((pre & ~masks & 0x3f) !== 0) raiseXm(cpu, pre, i);
  if ((all & ~masks & 0x3f) !== 0) raiseXm(cpu, all, i);
  cpu.fpu.mxcsr |= all;
  cpu.lo[i.reg] = resLo;
  cpu.hi[i.reg] = i.opSize === 8 ? resHi : 0;
}

/** cvtXmm's per-lane flag accumulation (module state, so the instruction allocates nothing). */
let preAll = 0;
let postAll = 0;
function laneStart(): void {
  pre = 0;
  post = 0;
}
function laneEnd(): void {
  preAll |= pre;
  postAll |= post;
}

/**
 * The XMM-to-XMM conversions (0F 5A, 0F 5B, 0F E6): CVTSS2SD, CVTSD2SS, CVTPS2PD, CVTPD2PS,
 * CVTDQ2PS, CVT(T)PS2DQ, CVTDQ2PD, CVT(T)PD2DQ. The forms that produce two lanes from a 128-bit
 * source zero the destination's high quadword; the scalar forms keep the rest of the destination.
 */
export function cvtXmm(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const cc = i.cc;
  let s: number;
  if (cc === Cvt.SS2SD) s = srcW32(cpu, i);
  else if (cc === Cvt.SD2SS || cc === Cvt.PS2PD || cc === Cvt.DQ2PD) s = srcW64(cpu, i);
  else s = srcW128(cpu, i, true);
  begin(cpu);
  const d = cpu.fpu.xd;
  const t = SLOT_T * 4;
  preAll = 0;
  postAll = 0;
  let lanes = 4; // doublewords of SLOT_T committed
  switch (cc) {
    case Cvt.SS2SD:
      laneStart();
      convertFp(F32, d[s * 4]!, 0);
      d[t] = resLo;
      d[t + 1] = resHi;
      laneEnd();
      lanes = 2;
      break;
    case Cvt.SD2SS:
      laneStart();
      convertFp(F64, d[s * 4]!, d[s * 4 + 1]!);
      d[t] = resLo;
      laneEnd();
      lanes = 1;
      break;
    case Cvt.PS2PD: {
      const a = d[s * 4]!;
      const b = d[s * 4 + 1]!;
      for (let k = 0; k < 2; k++) {
        laneStart();
        convertFp(F32, k === 0 ? a : b, 0);
        d[t + 2 * k] = resLo;
        d[t + 2 * k + 1] = resHi;
        laneEnd();
      }
      break;
    }
    case Cvt.PD2PS:
      for (let k = 0; k < 2; k++) {
        laneStart();
        convertFp(F64, d[s * 4 + 2 * k]!, d[s * 4 + 2 * k + 1]!);
        d[t + k] = resLo;
        laneEnd();
      }
      d[t + 2] = 0;
      d[t + 3] = 0;
      break;
    case Cvt.DQ2PS:
      for (let k = 0; k < 4; k++) {
        laneStart();
        const v = d[s * 4 + k]!;
        fromInt(F32, v, v >> 31);
        d[t + k] = resLo;
        laneEnd();
      }
      break;
    case Cvt.PS2DQ:
    case Cvt.TPS2DQ:
      for (let k = 0; k < 4; k++) {
        laneStart();
        toInt(F32, d[s * 4 + k]!, 0, 32, cc === Cvt.TPS2DQ);
        d[t + k] = resLo;
        laneEnd();
      }
      break;
    case Cvt.DQ2PD: {
      const a = d[s * 4]!;
      const b = d[s * 4 + 1]!;
      for (let k = 0; k < 2; k++) {
        const v = k === 0 ? a : b;
        encode(F64, v);
        d[t + 2 * k] = resLo;
        d[t + 2 * k + 1] = resHi;
      }
      break;
    }
    default:
      // PD2DQ, TPD2DQ
      for (let k = 0; k < 2; k++) {
        laneStart();
        toInt(F64, d[s * 4 + 2 * k]!, d[s * 4 + 2 * k + 1]!, 32, cc === Cvt.TPD2DQ);
        d[t + k] = resLo;
        laneEnd();
      }
      d[t + 2] = 0;
      d[t + 3] = 0;
  }
  commit(cpu, i, i.reg, preAll, postAll, lanes);
}
