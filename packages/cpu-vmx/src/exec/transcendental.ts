/**
 * The x87 transcendentals (SDM Vol. 2A "FSIN", "FCOS", "FSINCOS", "FPTAN", "FPATAN", "F2XM1",
 * "FYL2X", "FYL2XP1"; Vol. 1 8.3.8 and 8.3.10) on finite nonzero operands: computed in
 * double-double arithmetic (a value as the unevaluated sum of two doubles, about 106 bits) and
 * rounded once into the 80-bit format by RC (the precision control does not apply to them).
 * The instruction layer (x87.ts) handles the stack, NaNs, zeros, infinities and domain checks.
 *
 * - FSIN/FCOS/FSINCOS/FPTAN reduce their argument as the x87 does (SDM 8.3.8): modulo the
 *   66-bit approximation of pi/2 the FPU keeps (Pi = 0.C90FDAA2 2168C234 C x 2^2), exactly (long
 *   division of the 64-bit significand by the 66-bit constant), so results near multiples of pi
 *   carry the same reduction error as the hardware's; then Taylor series in double-double.
 * - FPATAN: one Newton step from the double atan in double-double; the quadrant by the signs.
 * - F2XM1: expm1(x ln 2) by its series; FYL2X/FYL2XP1: log2 through 2 atanh(s) series.
 *
 * Modelled more simply: the hardware's results are implementation-specific, within 1 ulp (SDM
 * 8.3.10); these are within 1 ulp of the exact value of the same reduced argument, not bit for
 * bit the host's, and C1 reports the direction of this rounding. Out-of-domain F2XM1 (|x| > 1)
 * stays on the double formula in x87.ts. No allocation: module-level doubles and preallocated
 * F80s; results into caller-owned F80s; every function returns FSW flags (X_PE always).
 */
import { F80, X_C1, X_PE, EXT_BIAS, addScaled, div, fromF64, nudge } from "./f80.js";

// ---- Double-double arithmetic: results in (zh, zl) ----

const SPLIT = 134_217_729; // 2^27 + 1 (Veltkamp split)
let zh = 0;
let zl = 0;

function ddAdd(ah: number, al: number, bh: number, bl: number): void {
  const s = ah + bh;
  const bb = s - ah;
  let e = ah - (s - bb) + (bh - bb);
  const t = al + bl;
  const tt = t - al;
  const f = al - (t - tt) + (bl - tt);
  e += t;
  const h = s + e;
  e -= h - s;
  e += f;
  zh = h + e;
  zl = e - (zh - h);
}

function ddMul(ah: number, al: number, bh: number, bl: number): void {
  const p = ah * bh;
  let t = SPLIT * ah;
  const a1 = t - (t - ah);
  const a2 = ah - a1;
  t = SPLIT * bh;
  const b1 = t - (t - bh);
  const b2 = bh - b1;
  let e = a1 * b1 - p + a1 * b2 + a2 * b1 + a2 * b2;
  e += ah * bl + al * bh;
  zh = p + e;
  zl = e - (zh - p);
}

function ddDiv(ah: number, al: number, bh: number, bl: number): void {
  const q1 = ah / bh;
  ddMul(q1, 0, bh, bl);
  ddAdd(ah, al, -zh, -zl);
  const rh = zh;
  const rl = zl;
  const q2 = rh / bh;
  ddMul(q2, 0, bh, bl);
  ddAdd(rh, rl, -zh, -zl);
  const q3 = zh / bh;
  ddAdd(q1, 0, q2, 0);
  ddAdd(zh, zl, q3, 0);
}

// Constants (checked against an exact BigInt computation in test/transcendental.test.ts).
export const PI_H = 3.141592653589793;
export const PI_L = 1.2246467991473532e-16;
export const PI2_H = 1.5707963267948966;
export const PI2_L = 6.123233995736766e-17;
export const LN2_H = 0.6931471805599453;
export const LN2_L = 2.3190468138462996e-17;
export const LOG2E_H = 1.4426950408889634;
export const LOG2E_L = 2.0355273740931033e-17;
const SQRT2 = 1.4142135623730951;

/** Series coefficients as double-doubles: 1/((2k)(2k+1)), 1/((2k-1)(2k)), 1/(2k+1), 1/n. */
const TERMS = 32;
const SIN_H = new Float64Array(TERMS);
const SIN_L = new Float64Array(TERMS);
const COS_H = new Float64Array(TERMS);
const COS_L = new Float64Array(TERMS);
const ODD_H = new Float64Array(TERMS);
const ODD_L = new Float64Array(TERMS);
const INV_H = new Float64Array(TERMS);
const INV_L = new Float64Array(TERMS);
for (let k = 1; k < TERMS; k++) {
  ddDiv(1, 0, 2 * k * (2 * k + 1), 0);
  SIN_H[k] = zh;
  SIN_L[k] = zl;
  ddDiv(1, 0, (2 * k - 1) * (2 * k), 0);
  COS_H[k] = zh;
  COS_L[k] = zl;
  ddDiv(1, 0, k, 0);
  INV_H[k] = zh;
  INV_L[k] = zl;
}
for (let k = 0; k < TERMS; k++) {
  ddDiv(1, 0, 2 * k + 1, 0);
  ODD_H[k] = zh;
  ODD_L[k] = zl;
}

// ---- Conversions ----

/** An operand unpacked: |x| = (uh + ul) * 2^ue with uh + ul in [1, 2); us its sign (0 or 1). */
let uh = 0;
let ul = 0;
let ue = 0;
let us = 0;
/** The normalized 64-bit significand of the last unpack, as 32-bit halves. */
let uHi = 0;
let uLo = 0;

const TWO_M63 = 2 ** -63;

/** Unpack a finite nonzero value (normal, denormal or pseudo-denormal). */
function unpack(x: F80): void {
  us = x.se >>> 15;
  const e = x.se & 0x7fff;
  let h = x.hi >>> 0;
  let l = x.lo >>> 0;
  let ex = (e === 0 ? 1 : e) - EXT_BIAS;
  if ((h & 0x8000_0000) === 0) {
    const n = h !== 0 ? Math.clz32(h) : 32 + Math.clz32(l);
    if (n >= 32) {
      h = (l << (n - 32)) >>> 0;
      l = 0;
    } else {
      h = ((h << n) | (l >>> (32 - n))) >>> 0;
      l = (l << n) >>> 0;
    }
    ex -= n;
  }
  uHi = h;
  uLo = l;
  uh = (h * 4_294_967_296 + ((l & 0xffff_f800) >>> 0)) * TWO_M63;
  ul = (l & 0x7ff) * TWO_M63;
  ue = ex;
}

const F64 = new Float64Array(1);
const W = new Int32Array(F64.buffer);
const T1 = new F80();
const T2 = new F80();

/**
 * Round (h + l) * 2^e2 (a normalized double-double, h != 0, |h| within the double range) into
 * `out` by fcw's RC at 64 bits; the flags of the rounding (C1 = rounded up), PE always, and
 * OE/UE by fcw's masks when 2^e2 takes it out of range.
 */
function pack(h: number, l: number, e2: number, fcw: number, out: F80): number {
  F64[0] = h;
  fromF64(W[0]!, W[1]!, T1);
  F64[0] = l;
  fromF64(W[0]!, W[1]!, T2);
  const flags = addScaled(T1, T2, e2, (fcw & 0x0c3f) | 0x0300, out);
  return flags | X_PE;
}

// ---- FSIN, FCOS, FSINCOS, FPTAN ----

/** pi/2 as the x87 keeps it (SDM 8.3.8): 0x3_243F6A88_85A308D3 * 2^-65 (66 bits). */
const P2 = 0x3;
const P1 = 0x243f_6a88;
const P0 = 0x85a3_08d3;

/** The reduced argument (rh + rl) and its quadrant (0-3). */
let rh = 0;
let rl = 0;
let quadrant = 0;

/**
 * Reduce x (unpacked in u*) modulo the x87's pi/2 to |r| <= pi/4 (the nearest multiple), exactly:
 * X = significand << (ue + 2) as an integer in units of 2^-65, long division by P bit by bit.
 */
function reduce(): void {
  if (ue < -1) {
    rh = uh * 2 ** ue;
    rl = ul * 2 ** ue;
    quadrant = 0;
  } else {
    const hi = uHi;
    const lo = uLo;
    let r2 = 0;
    let r1 = 0;
    let r0 = 0;
    let q = 0;
    const bits = 64 + ue + 2;
    for (let b = 0; b < bits; b++) {
      const bit = b < 64 ? (b < 32 ? (hi >>> (31 - b)) & 1 : (lo >>> (63 - b)) & 1) : 0;
      // R = 2R + bit
      r2 = r2 * 2 + (r1 >>> 31);
      r1 = ((r1 << 1) | (r0 >>> 31)) >>> 0;
      r0 = ((r0 << 1) | bit) >>> 0;
      q = (q << 1) & 3;
      if (r2 > P2 || (r2 === P2 && (r1 > P1 || (r1 === P1 && r0 >= P0)))) {
        let d0 = r0 - P0;
        let br = 0;
        if (d0 < 0) {
          d0 += 4_294_967_296;
          br = 1;
        }
        let d1 = r1 - P1 - br;
        br = 0;
        if (d1 < 0) {
          d1 += 4_294_967_296;
          br = 1;
        }
        r2 = r2 - P2 - br;
        r1 = d1;
        r0 = d0;
        q |= 1;
      }
    }
    // nearest multiple: 2R > P (never equal: P is odd) means R - P
    const t2 = r2 * 2 + (r1 >>> 31);
    const t1 = ((r1 << 1) | (r0 >>> 31)) >>> 0;
    const t0 = (r0 << 1) >>> 0;
    let neg = false;
    if (t2 > P2 || (t2 === P2 && (t1 > P1 || (t1 === P1 && t0 > P0)))) {
      let d0 = P0 - r0;
      let br = 0;
      if (d0 < 0) {
        d0 += 4_294_967_296;
        br = 1;
      }
      let d1 = P1 - r1 - br;
      br = 0;
      if (d1 < 0) {
        d1 += 4_294_967_296;
        br = 1;
      }
      r2 = P2 - r2 - br;
      r1 = d1;
      r0 = d0;
      neg = true;
      q = (q + 1) & 3;
    }
    ddAdd(r2 * 4_294_967_296 * 4_294_967_296 + r1 * 4_294_967_296, 0, r0, 0);
    rh = zh * 2 ** -65;
    rl = zl * 2 ** -65;
    if (neg) {
      rh = -rh;
      rl = -rl;
    }
    quadrant = q;
  }
  if (us !== 0) {
    rh = -rh;
    rl = -rl;
    quadrant = (4 - quadrant) & 3;
  }
}

let sh = 0;
let sl = 0;
let ch = 0;
let cl = 0;

/** sin and cos of r (|r| <= pi/4 + a little) into (sh, sl), (ch, cl). */
function sinCosReduced(xh: number, xl: number): void {
  ddMul(xh, xl, xh, xl);
  const x2h = zh;
  const x2l = zl;
  let th = 1;
  let tl = 0;
  for (let k = 15; k >= 1; k--) {
    ddMul(th, tl, x2h, x2l);
    ddMul(zh, zl, SIN_H[k]!, SIN_L[k]!);
    ddAdd(1, 0, -zh, -zl);
    th = zh;
    tl = zl;
  }
  ddMul(xh, xl, th, tl);
  sh = zh;
  sl = zl;
  th = 1;
  tl = 0;
  for (let k = 15; k >= 1; k--) {
    ddMul(th, tl, x2h, x2l);
    ddMul(zh, zl, COS_H[k]!, COS_L[k]!);
    ddAdd(1, 0, -zh, -zl);
    th = zh;
    tl = zl;
  }
  ch = th;
  cl = tl;
}

/**
 * `which` 0: sin into outS; 1: cos into outC; 2: both; 3: tan into outS. x finite, nonzero,
 * |x| < 2^63. Returns the flags (of both results for 2).
 */
export function trig(x: F80, which: number, fcw: number, outS: F80, outC: F80): number {
  unpack(x);
  if (ue < -40) {
    // |x| < 2^-40: sin x = x - x^3/6, tan x = x + x^3/3, cos x = 1 - x^2/2; the correction
    // only decides the rounding (a stand-in far below the last bit where it underflows)
    // (relative size below 2^-80: only its direction counts)
    const q = ue > -450 ? uh * uh * 2 ** (2 * ue) : 2 ** -900;
    let flags = 0;
    // (FPTAN too rounds as if just below |x|, as the host does, though tan x > x)
    if (which !== 1) flags |= nudge(x, -1, fcw, outS) | X_PE;
    if (which === 1 || which === 2) flags |= pack(1, -q / 2, 0, fcw, outC);
    return flags;
  }
  reduce();
  sinCosReduced(rh, rl);
  // sin(r + k pi/2), cos(r + k pi/2) by the quadrant k
  let sinH = sh;
  let sinL = sl;
  let cosH = ch;
  let cosL = cl;
  switch (quadrant) {
    case 1:
      sinH = ch;
      sinL = cl;
      cosH = -sh;
      cosL = -sl;
      break;
    case 2:
      sinH = -sh;
      sinL = -sl;
      cosH = -ch;
      cosL = -cl;
      break;
    case 3:
      sinH = -ch;
      sinL = -cl;
      cosH = sh;
      cosL = sl;
      break;
    default:
  }
  if (which === 3) {
    ddDiv(sinH, sinL, cosH, cosL);
    return pack(zh, zl, 0, fcw, outS);
  }
  let flags = 0;
  if (which !== 0) flags |= pack(cosH, cosL, 0, fcw, outC);
  // FSINCOS: C1 is the sine's rounding (as the host reports it)
  if (which !== 1) flags = (which === 2 ? flags & ~X_C1 : flags) | pack(sinH, sinL, 0, fcw, outS);
  return flags;
}

// ---- FPATAN ----

/** atan(t) for 0 < t <= 1 (t as a double-double) into (zh, zl): Newton from the double atan. */
function atanUnit(th: number, tl: number): void {
  const a0 = Math.atan(th);
  sinCosReduced(a0, 0);
  ddDiv(sh, sl, ch, cl); // tan(a0)
  const tanH = zh;
  const tanL = zl;
  ddAdd(th, tl, -tanH, -tanL);
  const nh = zh;
  const nl = zl;
  ddMul(th, tl, tanH, tanL);
  ddAdd(1, 0, zh, zl);
  ddDiv(nh, nl, zh, zl); // u = (t - tan a0) / (1 + t tan a0); atan(u) = u to 2^-150
  ddAdd(a0, 0, zh, zl);
}

/**
 * FPATAN: atan(y / x) with the quadrant of both signs (SDM "FPATAN" table), y = ST1, x = ST0,
 * neither a NaN (zeros and infinities give the table's exact multiples of pi/4, rounded).
 * `kx`/`ky`: 0 finite nonzero, 1 zero, 2 infinity.
 */
export function atan2(y: F80, ky: number, x: F80, kx: number, fcw: number, out: F80): number {
  const ys = y.se >>> 15;
  const xs = x.se >>> 15;
  // the result's magnitude as a multiple of pi/4 (special operands) or computed
  let m4 = -1;
  if (ky === 1) m4 = xs === 0 ? 0 : 4; // +-0 or +-pi (x = -0 too)
  else if (kx === 1) m4 = 2;
  else if (ky === 2) m4 = kx === 2 ? (xs === 0 ? 1 : 3) : 2;
  else if (kx === 2) m4 = xs === 0 ? 0 : 4;
  if (m4 >= 0) {
    if (m4 === 0) {
      out.se = ys << 15;
      out.hi = 0;
      out.lo = 0;
      return 0;
    }
    // m4 * pi/4 (3 pi/4 as pi - pi/4)
    let h = PI_H;
    let l = PI_L;
    if (m4 === 1) {
      h = PI_H / 4;
      l = PI_L / 4;
    } else if (m4 === 2) {
      h = PI2_H;
      l = PI2_L;
    } else if (m4 === 3) {
      ddAdd(PI_H, PI_L, -PI_H / 4, -PI_L / 4);
      h = zh;
      l = zl;
    }
    return pack(ys !== 0 ? -h : h, ys !== 0 ? -l : l, 0, fcw, out);
  }
  unpack(x);
  const xh = uh;
  const xl = ul;
  const ex = ue;
  unpack(y);
  const d = ue - ex;
  let ah: number;
  let al: number;
  if (d < -70) {
    if (xs === 0) {
      // atan(t) = t (1 - t^2/3): the correction is below 2^-140; the quotient, correctly
      // rounded (an exact one moved just toward zero)
      const flags = div(y, x, (fcw & 0x0c3f) | 0x0300, out);
      if ((flags & X_PE) === 0 && (out.se & 0x7fff) !== 0x7fff && (out.hi | out.lo) !== 0) {
        T1.copy(out);
        return (flags & ~X_C1) | nudge(T1, -1, fcw, out) | X_PE;
      }
      return flags | X_PE;
    }
    const t = d > -1000 ? (uh / xh) * 2 ** d : 2 ** -1000;
    ddAdd(PI_H, PI_L, -t, 0);
    ah = zh;
    al = zl;
  } else if (d > 70) {
    // pi/2 -+ x/y
    const t = d < 1000 ? (xh / uh) * 2 ** -d : 2 ** -1000;
    ddAdd(PI2_H, PI2_L, xs === 0 ? -t : t, 0);
    ah = zh;
    al = zl;
  } else {
    ddDiv(uh, ul, xh, xl);
    const s = 2 ** d;
    let th = zh * s;
    let tl = zl * s;
    let big = false;
    if (th > 1) {
      ddDiv(1, 0, th, tl);
      th = zh;
      tl = zl;
      big = true;
    }
    atanUnit(th, tl);
    if (big) ddAdd(PI2_H, PI2_L, -zh, -zl);
    if (xs !== 0) ddAdd(PI_H, PI_L, -zh, -zl);
    ah = zh;
    al = zl;
  }
  return pack(ys !== 0 ? -ah : ah, ys !== 0 ? -al : al, 0, fcw, out);
}

// ---- F2XM1 ----

/** 2^x - 1 for a finite nonzero x with |x| <= 1. */
export function exp2m1(x: F80, fcw: number, out: F80): number {
  unpack(x);
  const sign = us !== 0 ? -1 : 1;
  if (ue < -60) {
    // x ln2 (1 + x ln2 / 2)
    ddMul(uh, ul, LN2_H, LN2_L);
    const mh = zh;
    const ml = zl;
    const c = ue > -1000 ? (sign * mh * 2 ** ue) / 2 : sign * 2 ** -1000;
    ddAdd(mh, ml, mh * c, 0);
    return pack(sign * zh, sign * zl, ue, fcw, out);
  }
  const s = sign * 2 ** ue;
  ddMul(uh * s, ul * s, LN2_H, LN2_L);
  const th = zh;
  const tl = zl;
  // expm1(t) = t (1 + t/2 (1 + t/3 (1 + ...)))
  let ph = 1;
  let pl = 0;
  for (let n = 28; n >= 2; n--) {
    ddMul(ph, pl, th, tl);
    ddMul(zh, zl, INV_H[n]!, INV_L[n]!);
    ddAdd(1, 0, zh, zl);
    ph = zh;
    pl = zl;
  }
  ddMul(th, tl, ph, pl);
  return pack(zh, zl, 0, fcw, out);
}

// ---- FYL2X, FYL2XP1 ----

/** ln(v) for v = (vh + vl) in [sqrt(1/2), sqrt(2)] into (zh, zl): 2 atanh((v - 1)/(v + 1)). */
function lnNearOne(vh: number, vl: number): void {
  ddAdd(vh, vl, -1, 0);
  const nh = zh;
  const nl = zl;
  ddAdd(vh, vl, 1, 0);
  ddDiv(nh, nl, zh, zl);
  lnFromS(zh, zl);
}

/** 2 atanh(s) = 2 s (1 + s^2/3 + s^4/5 + ...) into (zh, zl), |s| <= 0.18. */
function lnFromS(s0: number, s1: number): void {
  ddMul(s0, s1, s0, s1);
  const s2h = zh;
  const s2l = zl;
  let th = ODD_H[24]!;
  let tl = ODD_L[24]!;
  for (let k = 23; k >= 0; k--) {
    ddMul(th, tl, s2h, s2l);
    ddAdd(ODD_H[k]!, ODD_L[k]!, zh, zl);
    th = zh;
    tl = zl;
  }
  ddMul(s0 * 2, s1 * 2, th, tl);
}

/** log2 of a positive double-double v (not near the double range's ends) into (zh, zl). */
function log2dd(vh: number, vl: number, extra: number): void {
  let e = Math.floor(Math.log2(vh));
  let mh = vh * 2 ** -e;
  let ml = vl * 2 ** -e;
  if (mh >= 2) {
    mh /= 2;
    ml /= 2;
    e += 1;
  } else if (mh < 1) {
    mh *= 2;
    ml *= 2;
    e -= 1;
  }
  if (mh > SQRT2) {
    mh /= 2;
    ml /= 2;
    e += 1;
  }
  lnNearOne(mh, ml);
  ddMul(zh, zl, LOG2E_H, LOG2E_L);
  ddAdd(e + extra, 0, zh, zl);
}

/** Multiply the double-double log (lh, ll) by y (unpacked now in u*) and round; 0 for an exact zero. */
function timesY(y: F80, lh: number, ll: number, e2: number, fcw: number, out: F80): number {
  unpack(y);
  const sign = us !== 0 ? -1 : 1;
  ddMul(uh * sign, ul * sign, lh, ll);
  return pack(zh, zl, ue + e2, fcw, out);
}

/** FYL2X: y * log2(x) for finite nonzero y and x > 0 (x != 1: the caller gives the exact zero). */
export function ylog2x(y: F80, x: F80, fcw: number, out: F80): number {
  unpack(x);
  log2dd(uh, ul, ue);
  return timesY(y, zh, zl, 0, fcw, out);
}

/** FYL2XP1: y * log2(1 + x) for finite nonzero y and x, x > -1. */
export function ylog2xp1(y: F80, x: F80, fcw: number, out: F80): number {
  unpack(x);
  const sign = us !== 0 ? -1 : 1;
  if (ue < -60) {
    // log2(1 + x) = x log2(e) (1 - x/2 + ...), kept scaled by 2^ue
    ddMul(uh * sign, ul * sign, LOG2E_H, LOG2E_L);
    const mh = zh;
    const ml = zl;
    const c = ue > -1000 ? -(sign * uh * 2 ** ue) / 2 : -sign * 2 ** -1000;
    ddAdd(mh, ml, mh * c, 0);
    const e2 = ue;
    return timesY(y, zh, zl, e2, fcw, out);
  }
  if (ue > 60) {
    // 1 + x = x to 2^-61 relative, and log2(1 + 1/x) < 2^-60 against a log above 60
    log2dd(uh, ul, ue);
    return timesY(y, zh, zl, 0, fcw, out);
  }
  const s = sign * 2 ** ue;
  const xh = uh * s;
  const xl = ul * s;
  if (xh > -0.29 && xh < 0.42) {
    // s = x / (2 + x), |s| <= 0.18: ln(1 + x) = 2 atanh(s)
    ddAdd(2, 0, xh, xl);
    ddDiv(xh, xl, zh, zl);
    lnFromS(zh, zl);
    ddMul(zh, zl, LOG2E_H, LOG2E_L);
  } else {
    ddAdd(1, 0, xh, xl);
    log2dd(zh, zl, 0);
  }
  return timesY(y, zh, zl, 0, fcw, out);
}
