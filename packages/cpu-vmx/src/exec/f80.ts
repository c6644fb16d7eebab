/**
 * A soft-float of the x87 double extended-precision format (SDM Vol. 1, 4.2.2 and 8.2): sign,
 * 15-bit biased exponent, 64-bit significand with an explicit integer bit, kept as plain numbers
 * (sign/exponent as 16 bits, the significand as two unsigned 32-bit halves). Every operation is
 * exact (IEEE 754 correctly rounded) under the FCW's precision control (PC: 24, 53 or 64 bits,
 * the exponent range stays the extended one, SDM 8.1.5.2) and rounding control (RC), with the
 * x87's exception rules (SDM 4.9, 8.5): invalid operation, denormal operand, divide by zero,
 * overflow and underflow (tininess detected after rounding; with OE or UE unmasked a register
 * result is rebiased by 24576, SDM 8.5.4/8.5.5), precision, and C1 = "rounded up".
 *
 * No BigInt and no allocation: the working significand is a 96-bit value in three module-level
 * words plus a sticky bit (JS is single-threaded and no operation re-enters another).
 * Results go into a caller-owned `F80`; every operation returns its flags as FSW bits
 * (X_IE..X_PE, X_C1).
 */

/** FSW exception flags (SDM Figure 8-4) and C1, as the operations report them. */
export const X_IE = 0x01;
export const X_DE = 0x02;
export const X_ZE = 0x04;
export const X_OE = 0x08;
export const X_UE = 0x10;
export const X_PE = 0x20;
/** Stack fault (FSW.SF): reported by the register stack, not by the soft-float. */
export const X_SF = 0x40;
/** FSW.C1: the significand was rounded up (incremented in magnitude). */
export const X_C1 = 0x200;

/** FCW fields (SDM Figure 8-6). */
export const FCW_IM = 0x01;
export const FCW_DM = 0x02;
export const FCW_ZM = 0x04;
export const FCW_OM = 0x08;
export const FCW_UM = 0x10;
export const FCW_PM = 0x20;
const FCW_PC_SHIFT = 8;
const FCW_RC_SHIFT = 10;

/** Rounding control (FCW.RC, SDM Table 4-8). */
export const RC_NEAREST = 0;
export const RC_DOWN = 1;
export const RC_UP = 2;
export const RC_ZERO = 3;

/** The extended format: bias 16383, all-ones exponent 7FFFH (SDM Table 4-3). */
export const EXT_BIAS = 16383;
export const EXT_EMAX = 16383;
export const EXT_EMIN = -16382;
/** The rebias applied to an unmasked overflow or underflow result (SDM 8.5.4, 8.5.5). */
export const EXT_REBIAS = 24576;

/** Value classes (FXAM's and the tag word's distinctions; SDM 8.2.2 and Table 8-3). */
export const K_ZERO = 0;
export const K_NORMAL = 1;
export const K_DENORMAL = 2; // exponent 0 with a nonzero significand (pseudo-denormals too)
export const K_INF = 3;
export const K_QNAN = 4;
export const K_SNAN = 5;
export const K_UNSUPPORTED = 6; // unnormals, pseudo-infinities, pseudo-NaNs (SDM 8.2.2)

/** One extended-precision value: `se` = sign << 15 | biased exponent; `hi`:`lo` the significand. */
export class F80 {
  se = 0;
  hi = 0;
  lo = 0;

  set(se: number, hi: number, lo: number): this {
    this.se = se & 0xffff;
    this.hi = hi >>> 0;
    this.lo = lo >>> 0;
    return this;
  }

  copy(o: F80): this {
    this.se = o.se;
    this.hi = o.hi;
    this.lo = o.lo;
    return this;
  }
}

/** Classify a value by its fields. */
export function classify(se: number, hi: number, lo: number): number {
  const e = se & 0x7fff;
  const j = (hi & 0x8000_0000) !== 0;
  if (e === 0x7fff) {
    if (!j) return K_UNSUPPORTED;
    if ((hi & 0x7fff_ffff) === 0 && lo === 0) return K_INF;
    return (hi & 0x4000_0000) !== 0 ? K_QNAN : K_SNAN;
  }
  if (e === 0) return hi === 0 && lo === 0 ? K_ZERO : K_DENORMAL;
  return j ? K_NORMAL : K_UNSUPPORTED;
}

/** The QNaN floating-point indefinite (SDM Table 4-3): sign 1, exponent 7FFFH, significand C000...0. */
export const INDEFINITE_SE = 0xffff;
export const INDEFINITE_HI = 0xc000_0000;

function setIndefinite(out: F80): void {
  out.se = INDEFINITE_SE;
  out.hi = INDEFINITE_HI;
  out.lo = 0;
}

// ---- The working value: sign, unbiased exponent of bit 95, a 96-bit significand, sticky ----
let wS = 0;
let wE = 0;
let w0 = 0;
let w1 = 0;
let w2 = 0;
let wX = 0; // sticky: any nonzero bit below w2

// The unpacked operands (finite and nonzero): sign, exponent of bit 63, normalized significand.
let aS = 0;
let aE = 0;
let aH = 0;
let aL = 0;
let bS = 0;
let bE = 0;
let bH = 0;
let bL = 0;

/** Unpack a finite nonzero value (normal, denormal or pseudo-denormal) into a* or b*, normalized. */
function unpackA(x: F80): void {
  aS = x.se >>> 15;
  const e = x.se & 0x7fff;
  let h = x.hi;
  let l = x.lo;
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
  aE = ex;
  aH = h;
  aL = l;
}

function unpackB(x: F80): void {
  const s = aS, e = aE, h = aH, l = aL;
  unpackA(x);
  bS = aS;
  bE = aE;
  bH = aH;
  bL = aL;
  aS = s;
  aE = e;
  aH = h;
  aL = l;
}

/** Shift the working significand right by n (any n >= 0), collecting the lost bits as sticky. */
function shiftRightW(n: number): void {
  if (n <= 0) return;
  if (n >= 96) {
    if ((w0 | w1 | w2) !== 0) wX = 1;
    w0 = w1 = w2 = 0;
    return;
  }
  while (n >= 32) {
    if (w2 !== 0) wX = 1;
    w2 = w1;
    w1 = w0;
    w0 = 0;
    n -= 32;
  }
  if (n > 0) {
    if ((w2 << (32 - n)) !== 0) wX = 1;
    w2 = ((w2 >>> n) | (w1 << (32 - n))) >>> 0;
    w1 = ((w1 >>> n) | (w0 << (32 - n))) >>> 0;
    w0 = w0 >>> n;
  }
}

/** Shift left until bit 95 is set (the value must be nonzero), adjusting wE. */
function normalizeW(): void {
  while (w0 === 0) {
    w0 = w1;
    w1 = w2;
    w2 = 0;
    wE -= 32;
  }
  const n = Math.clz32(w0);
  if (n > 0) {
    w0 = ((w0 << n) | (w1 >>> (32 - n))) >>> 0;
    w1 = ((w1 << n) | (w2 >>> (32 - n))) >>> 0;
    w2 = (w2 << n) >>> 0;
    wE -= n;
  }
}

/**
 * Round the working significand to its top `p` bits (p <= 64) by `rc`; the bits below are cleared.
 * Returns 0 (exact), 1 (inexact, rounded down in magnitude) or 3 (inexact, rounded up); a carry
 * out of bit 95 renormalizes (wE + 1).
 */
function roundW(p: number, rc: number): number {
  let round: number;
  let rest: number;
  let lsb: number;
  if (p <= 32) {
    const sh = 32 - p; // lsb at w0 bit sh
    lsb = sh === 32 ? 0 : (w0 >>> sh) & 1;
    if (sh === 0) {
      round = w1 >>> 31;
      rest = (w1 & 0x7fff_ffff) | w2 | wX;
    } else {
      round = (w0 >>> (sh - 1)) & 1;
      rest = (w0 & ((1 << (sh - 1)) - 1)) | w1 | w2 | wX;
    }
  } else {
    const sh = 64 - p; // lsb at w1 bit sh
    lsb = (w1 >>> sh) & 1;
    if (sh === 0) {
      round = w2 >>> 31;
      rest = (w2 & 0x7fff_ffff) | wX;
    } else {
      round = (w1 >>> (sh - 1)) & 1;
      rest = (w1 & ((1 << (sh - 1)) - 1)) | w2 | wX;
    }
  }
  const inexact = round !== 0 || rest !== 0;
  let up = false;
  if (inexact) {
    if (rc === RC_NEAREST) up = round !== 0 && (rest !== 0 || lsb !== 0);
    else if (rc === RC_DOWN) up = wS !== 0;
    else if (rc === RC_UP) up = wS === 0;
  }
  // clear below the lsb
  if (p <= 32) {
    const sh = 32 - p;
    w0 = sh === 32 ? 0 : ((w0 >>> sh) << sh) >>> 0;
    w1 = 0;
  } else {
    const sh = 64 - p;
    w1 = sh === 0 ? w1 : ((w1 >>> sh) << sh) >>> 0;
  }
  w2 = 0;
  wX = 0;
  if (up) {
    if (p <= 32) {
      const inc = 2 ** (32 - p);
      const s = w0 + inc;
      if (s > 0xffff_ffff) {
        w0 = 0x8000_0000;
        wE += 1;
      } else w0 = s;
    } else {
      const inc = 2 ** (64 - p);
      const s = w1 + inc;
      if (s > 0xffff_ffff) {
        w1 = s - 0x1_0000_0000;
        const t = w0 + 1;
        if (t > 0xffff_ffff) {
          w0 = 0x8000_0000;
          wE += 1;
        } else w0 = t;
      } else w1 = s;
    }
  }
  return inexact ? (up ? 3 : 1) : 0;
}

/** Would rounding the (normalized) working value to p bits carry out of bit 95? */
function roundCarries(p: number, rc: number): boolean {
  const s0 = w0;
  const s1 = w1;
  const s2 = w2;
  const sx = wX;
  const se = wE;
  roundW(p, rc);
  const carried = wE !== se;
  w0 = s0;
  w1 = s1;
  w2 = s2;
  wX = sx;
  wE = se;
  return carried;
}

/** Precision in bits for FCW.PC (SDM Table 8-2; the reserved 01B rounds as 64 bits here). */
export function precisionOf(fcw: number): number {
  const pc = (fcw >>> FCW_PC_SHIFT) & 3;
  return pc === 0 ? 24 : pc === 2 ? 53 : 64;
}

export function roundingOf(fcw: number): number {
  return (fcw >>> FCW_RC_SHIFT) & 3;
}

/**
 * Round the nonzero working value to the extended format at precision p and pack it into `out`:
 * denormalization, overflow and underflow as the masks in `fcw` say. Returns the flags.
 */
function packExt(out: F80, fcw: number, p: number): number {
  const rc = roundingOf(fcw);
  let flags = 0;
  normalizeW();
  let tiny = false;
  if (wE < EXT_EMIN - 1) tiny = true;
  else if (wE === EXT_EMIN - 1) tiny = !roundCarries(p, rc);
  if (tiny) {
    if ((fcw & FCW_UM) === 0) {
      if (wE + EXT_REBIAS < EXT_EMIN) {
        // massive underflow (only FSCALE reaches it): a properly signed 0 (SDM 8.5.5)
        zero(out, wS);
        return X_UE | X_PE;
      }
      wE += EXT_REBIAS; // unmasked: rebias by 24576 (SDM 8.5.5)
      flags |= X_UE;
    } else {
      shiftRightW(EXT_EMIN - wE);
      wE = EXT_EMIN;
      const r = roundW(p, rc);
      if (r !== 0) flags |= X_UE | X_PE | (r === 3 ? X_C1 : 0);
      out.se = (wS << 15) | ((w0 & 0x8000_0000) !== 0 ? 1 : 0);
      out.hi = w0;
      out.lo = w1;
      return flags;
    }
  }
  const r = roundW(p, rc);
  if (r !== 0) flags |= X_PE | (r === 3 ? X_C1 : 0);
  if (wE > EXT_EMAX) {
    if ((fcw & FCW_OM) === 0) {
      if (wE - EXT_REBIAS > EXT_EMAX) {
        // massive overflow (only FSCALE reaches it): a properly signed infinity (SDM 8.5.4),
        // with C1 = 1 as the host reports it
        inf(out, wS);
        return X_OE | X_PE | X_C1;
      }
      wE -= EXT_REBIAS; // unmasked: rebias by 24576 (SDM 8.5.4)
      flags |= X_OE;
    } else {
      flags |= X_OE | X_PE;
      overflowResult(out, rc, p);
      flags = (flags & ~X_C1) | ((out.se & 0x7fff) === 0x7fff ? X_C1 : 0);
      return flags;
    }
  }
  out.se = (wS << 15) | (wE + EXT_BIAS);
  out.hi = w0;
  out.lo = w1;
  return flags;
}

/** The masked overflow response (SDM Table 4-10): infinity or the largest finite value by RC and sign. */
function overflowResult(out: F80, rc: number, p: number): void {
  const toInf = rc === RC_NEAREST || (rc === RC_DOWN && wS !== 0) || (rc === RC_UP && wS === 0);
  if (toInf) {
    out.se = (wS << 15) | 0x7fff;
    out.hi = 0x8000_0000;
    out.lo = 0;
  } else {
    out.se = (wS << 15) | 0x7ffe;
    if (p <= 32) {
      out.hi = (0xffff_ffff << (32 - p)) >>> 0;
      out.lo = 0;
    } else {
      out.hi = 0xffff_ffff;
      out.lo = p === 64 ? 0xffff_ffff : (0xffff_ffff << (64 - p)) >>> 0;
    }
  }
}

/** A signed zero into out. */
function zero(out: F80, sign: number): void {
  out.se = sign << 15;
  out.hi = 0;
  out.lo = 0;
}

function inf(out: F80, sign: number): void {
  out.se = (sign << 15) | 0x7fff;
  out.hi = 0x8000_0000;
  out.lo = 0;
}

/**
 * NaN operands of an arithmetic instruction (SDM Table 4-7, x87 column): an SNaN is IE and
 * quieted; of two NaNs the one with the larger significand wins (a QNaN over an SNaN).
 * `b` may be undefined for one-operand instructions. Returns the flags.
 */
function propagateNaN(a: F80, ka: number, b: F80 | undefined, kb: number, out: F80): number {
  const aNaN = ka === K_QNAN || ka === K_SNAN;
  const bNaN = b !== undefined && (kb === K_QNAN || kb === K_SNAN);
  const flags = ka === K_SNAN || kb === K_SNAN ? X_IE : 0;
  let pick: F80;
  if (aNaN && bNaN && b !== undefined) {
    if (ka === K_QNAN && kb === K_SNAN) pick = a;
    else if (kb === K_QNAN && ka === K_SNAN) pick = b;
    else {
      const ah = a.hi & 0x7fff_ffff;
      const bh = b.hi & 0x7fff_ffff;
      if (ah !== bh) pick = ah > bh ? a : b;
      else if (a.lo !== b.lo) pick = a.lo > b.lo ? a : b;
      else pick = (a.se & 0x8000) === 0 ? a : b; // equal significands: the positive one
    }
  } else pick = aNaN ? a : (b as F80);
  out.se = pick.se;
  out.hi = (pick.hi | 0x4000_0000) >>> 0;
  out.lo = pick.lo;
  return flags;
}

/** Operand checks shared by the two-operand operations: returns -1 to go on with finite arithmetic. */
function specials2(a: F80, ka: number, b: F80, kb: number, out: F80): number {
  if (ka === K_UNSUPPORTED || kb === K_UNSUPPORTED) {
    setIndefinite(out);
    return X_IE;
  }
  if (ka >= K_QNAN || kb >= K_QNAN) return propagateNaN(a, ka, b, kb, out);
  return -1;
}

/** Load the working value from an unpacked operand a*. */
function loadWFromA(): void {
  wS = aS;
  wE = aE; // bit 95 of w holds the significand's bit 63
  w0 = aH;
  w1 = aL;
  w2 = 0;
  wX = 0;
}

// ---- Addition and subtraction ----

/**
 * out = a + b (or a - b with `negB`), rounded by `fcw` (SDM "FADD", "FSUB"; Table 3-18/3-37 of
 * Vol. 2A for the special operands).
 */
/** Scale applied to add's exact sum before its rounding (addScaled); 0 otherwise. */
let addExp = 0;

/**
 * (a + b) * 2^e with one rounding (denormal results, overflow and underflow as packExt gives
 * them): the transcendentals' double-double results into the extended format.
 */
export function addScaled(a: F80, b: F80, e: number, fcw: number, out: F80): number {
  addExp = e;
  const flags = add(a, b, false, fcw, out);
  addExp = 0;
  return flags;
}

export function add(a: F80, b: F80, negB: boolean, fcw: number, out: F80): number {
  const ka = classify(a.se, a.hi, a.lo);
  const kb = classify(b.se, b.hi, b.lo);
  const sp = specials2(a, ka, b, kb, out);
  if (sp >= 0) return sp;
  const flags = (ka === K_DENORMAL || kb === K_DENORMAL) ? X_DE : 0;
  const sa = a.se >>> 15;
  const sb = (b.se >>> 15) ^ (negB ? 1 : 0);
  const rc = roundingOf(fcw);
  if (ka === K_INF || kb === K_INF) {
    if (ka === K_INF && kb === K_INF && sa !== sb) {
      setIndefinite(out);
      return X_IE;
    }
    inf(out, ka === K_INF ? sa : sb);
    return flags;
  }
  if (ka === K_ZERO && kb === K_ZERO) {
    zero(out, sa === sb ? sa : rc === RC_DOWN ? 1 : 0);
    return flags;
  }
  if (kb === K_ZERO || ka === K_ZERO) {
    // x + 0 = x, still rounded to the precision control.
    if (kb === K_ZERO) unpackA(a);
    else {
      unpackA(b);
      aS = sb;
    }
    loadWFromA();
    wE += addExp;
    return flags | packExt(out, fcw, precisionOf(fcw));
  }
  unpackB(b);
  bS = sb;
  unpackA(a);
  // Order by magnitude: a is the larger.
  if (aE < bE || (aE === bE && (aH < bH || (aH === bH && aL < bL)))) {
    const ts = aS, te = aE, th = aH, tl = aL;
    aS = bS; aE = bE; aH = bH; aL = bL;
    bS = ts; bE = te; bH = th; bL = tl;
  }
  // small operand, aligned into w
  wS = bS;
  w0 = bH;
  w1 = bL;
  w2 = 0;
  wX = 0;
  shiftRightW(aE - bE);
  const s0 = w0, s1 = w1, s2 = w2, sx = wX;
  wS = aS;
  wE = aE;
  if (aS === bS) {
    const t2 = s2;
    let t1 = aL + s1;
    let t0 = aH + s0;
    if (t1 > 0xffff_ffff) {
      t1 -= 0x1_0000_0000;
      t0 += 1;
    }
    w2 = t2;
    w1 = t1;
    w0 = t0;
    wX = sx;
    if (t0 > 0xffff_ffff) {
      // carry out: shift right by one and put the carry on top
      w0 = t0 - 0x1_0000_0000;
      shiftRightW(1);
      w0 = (w0 | 0x8000_0000) >>> 0;
      wE += 1;
    }
  } else {
    // a - b (|a| >= |b|); a sticky remainder of b borrows one from the lowest word
    let t2 = 0 - s2 - sx;
    let borrow = 0;
    if (t2 < 0) {
      t2 += 0x1_0000_0000;
      borrow = 1;
    }
    let t1 = aL - s1 - borrow;
    borrow = 0;
    if (t1 < 0) {
      t1 += 0x1_0000_0000;
      borrow = 1;
    }
    const t0 = aH - s0 - borrow;
    w0 = t0 >>> 0;
    w1 = t1;
    w2 = t2;
    wX = sx;
    if ((w0 | w1 | w2) === 0 && wX === 0) {
      zero(out, rc === RC_DOWN ? 1 : 0);
      return flags;
    }
  }
  wE += addExp;
  return flags | packExt(out, fcw, precisionOf(fcw));
}

// ---- Multiplication ----

const mulLimbs = new Float64Array(8);

/** w = aH:aL * bH:bL (128 bits: w0 w1 w2 and the low word into sticky). */
function mul64(): void {
  const a0 = aL & 0xffff, a1 = aL >>> 16, a2 = aH & 0xffff, a3 = aH >>> 16;
  const b0 = bL & 0xffff, b1 = bL >>> 16, b2 = bH & 0xffff, b3 = bH >>> 16;
  const r = mulLimbs;
  r[0] = a0 * b0;
  r[1] = a0 * b1 + a1 * b0;
  r[2] = a0 * b2 + a1 * b1 + a2 * b0;
  r[3] = a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0;
  r[4] = a1 * b3 + a2 * b2 + a3 * b1;
  r[5] = a2 * b3 + a3 * b2;
  r[6] = a3 * b3;
  r[7] = 0;
  // carry-propagate into 16-bit limbs
  let carry = 0;
  for (let k = 0; k < 8; k++) {
    const v = r[k]! + carry;
    const limb = v % 65536;
    carry = (v - limb) / 65536;
    r[k] = limb;
  }
  w0 = (r[7]! * 65536 + r[6]!) >>> 0;
  w1 = (r[5]! * 65536 + r[4]!) >>> 0;
  w2 = (r[3]! * 65536 + r[2]!) >>> 0;
  wX = r[1]! !== 0 || r[0]! !== 0 ? 1 : 0;
}

/** out = a * b (SDM "FMUL"). */
export function mul(a: F80, b: F80, fcw: number, out: F80): number {
  const ka = classify(a.se, a.hi, a.lo);
  const kb = classify(b.se, b.hi, b.lo);
  const sp = specials2(a, ka, b, kb, out);
  if (sp >= 0) return sp;
  const flags = (ka === K_DENORMAL || kb === K_DENORMAL) ? X_DE : 0;
  const s = (a.se ^ b.se) >>> 15;
  if (ka === K_INF || kb === K_INF) {
    if (ka === K_ZERO || kb === K_ZERO) {
      setIndefinite(out);
      return X_IE;
    }
    inf(out, s);
    return flags;
  }
  if (ka === K_ZERO || kb === K_ZERO) {
    zero(out, s);
    return flags;
  }
  unpackA(a);
  unpackB(b);
  mul64();
  wS = s;
  // product of two [1,2) significands: bit 127 has weight 2^(aE+bE+1)
  wE = aE + bE + 1; // bit 95 of w is bit 127 of the product
  return flags | packExt(out, fcw, precisionOf(fcw));
}

// ---- Division ----

/** w = aH:aL / bH:bL to 96 quotient bits (bit 95 = the 2^0 or 2^-1 bit), the remainder as sticky. */
function div64(): number {
  // remainder r (65 bits: rc:rh:rl), divisor d = bH:bL
  let rc = 0;
  let rh = aH;
  let rl = aL;
  let shift = 0;
  if (rh < bH || (rh === bH && rl < bL)) shift = 1; // quotient < 1
  let q0 = 0, q1 = 0, q2 = 0;
  if (shift === 1) {
    rc = rh >>> 31;
    rh = ((rh << 1) | (rl >>> 31)) >>> 0;
    rl = (rl << 1) >>> 0;
  }
  for (let k = 0; k < 96; k++) {
    let bit = 0;
    if (rc !== 0 || rh > bH || (rh === bH && rl >= bL)) {
      bit = 1;
      let l = rl - bL;
      let borrow = 0;
      if (l < 0) {
        l += 0x1_0000_0000;
        borrow = 1;
      }
      let h = rh - bH - borrow;
      if (h < 0) h += 0x1_0000_0000;
      rh = h;
      rl = l;
      rc = 0;
    }
    if (k < 32) q0 = (q0 * 2 + bit) >>> 0;
    else if (k < 64) q1 = (q1 * 2 + bit) >>> 0;
    else q2 = (q2 * 2 + bit) >>> 0;
    rc = rh >>> 31;
    rh = ((rh << 1) | (rl >>> 31)) >>> 0;
    rl = (rl << 1) >>> 0;
  }
  w0 = q0;
  w1 = q1;
  w2 = q2;
  wX = rc !== 0 || rh !== 0 || rl !== 0 ? 1 : 0;
  return shift;
}

/** out = a / b (SDM "FDIV"). */
export function div(a: F80, b: F80, fcw: number, out: F80): number {
  const ka = classify(a.se, a.hi, a.lo);
  const kb = classify(b.se, b.hi, b.lo);
  const sp = specials2(a, ka, b, kb, out);
  if (sp >= 0) return sp;
  const flags = (ka === K_DENORMAL || kb === K_DENORMAL) ? X_DE : 0;
  const s = (a.se ^ b.se) >>> 15;
  if (ka === K_INF) {
    if (kb === K_INF) {
      setIndefinite(out);
      return X_IE;
    }
    inf(out, s);
    return flags;
  }
  if (kb === K_INF) {
    zero(out, s);
    return flags;
  }
  if (kb === K_ZERO) {
    if (ka === K_ZERO) {
      setIndefinite(out);
      return X_IE;
    }
    inf(out, s);
    return X_ZE; // a denormal dividend is not reported with the zero divisor (as the host does)
  }
  if (ka === K_ZERO) {
    zero(out, s);
    return flags;
  }
  unpackA(a);
  unpackB(b);
  const shift = div64();
  wS = s;
  wE = aE - bE - shift;
  return flags | packExt(out, fcw, precisionOf(fcw));
}

// ---- Square root ----

/** Bit k (0 = the top) of the unpacked significand aH:aL; 0 outside it. */
function sigBit(k: number): number {
  if (k < 0 || k >= 64) return 0;
  return k < 32 ? (aH >>> (31 - k)) & 1 : (aL >>> (63 - k)) & 1;
}

/**
 * out = sqrt(a) (SDM "FSQRT"): -0 gives -0; a negative nonzero value, -infinity included, is IE.
 */
export function sqrt(a: F80, fcw: number, out: F80): number {
  const ka = classify(a.se, a.hi, a.lo);
  if (ka === K_UNSUPPORTED) {
    setIndefinite(out);
    return X_IE;
  }
  if (ka >= K_QNAN) return propagateNaN(a, ka, undefined, 0, out);
  if (ka === K_ZERO) {
    out.copy(a);
    return 0;
  }
  if ((a.se & 0x8000) !== 0) {
    setIndefinite(out);
    return X_IE;
  }
  if (ka === K_INF) {
    out.copy(a);
    return 0;
  }
  const flags = ka === K_DENORMAL ? X_DE : 0;
  unpackA(a);
  // value = sig * 2^(aE - 63). The radicand N = sig * 2^(128 + extra), extra making the
  // exponent left over even; its integer root has 96 or 97 bits, computed two radicand bits
  // per root bit (restoring method); the remainder is the sticky bit.
  const extra = (aE - 63 - 128) & 1;
  const totalBits = 64 + 128 + extra;
  const pairs = (totalBits + 1) >> 1;
  const lead = pairs * 2 - totalBits; // leading zero bits of the 2*pairs-bit field
  let rem0 = 0, rem1 = 0, rem2 = 0, rem3 = 0; // remainder, four 32-bit words (rem0 the top)
  let r0 = 0, r1 = 0, r2 = 0, r3 = 0; // root
  for (let p = 0; p < pairs; p++) {
    const two = sigBit(2 * p - lead) * 2 + sigBit(2 * p + 1 - lead);
    rem0 = ((rem0 << 2) | (rem1 >>> 30)) >>> 0;
    rem1 = ((rem1 << 2) | (rem2 >>> 30)) >>> 0;
    rem2 = ((rem2 << 2) | (rem3 >>> 30)) >>> 0;
    rem3 = ((rem3 << 2) | two) >>> 0;
    // trial = root * 4 + 1
    const t0 = ((r0 << 2) | (r1 >>> 30)) >>> 0;
    const t1 = ((r1 << 2) | (r2 >>> 30)) >>> 0;
    const t2 = ((r2 << 2) | (r3 >>> 30)) >>> 0;
    const t3 = ((r3 << 2) | 1) >>> 0;
    r0 = ((r0 << 1) | (r1 >>> 31)) >>> 0;
    r1 = ((r1 << 1) | (r2 >>> 31)) >>> 0;
    r2 = ((r2 << 1) | (r3 >>> 31)) >>> 0;
    r3 = (r3 << 1) >>> 0;
    const ge = rem0 !== t0 ? rem0 > t0 : rem1 !== t1 ? rem1 > t1 : rem2 !== t2 ? rem2 > t2 : rem3 >= t3;
    if (ge) {
      let d3 = rem3 - t3;
      let br = 0;
      if (d3 < 0) {
        d3 += 0x1_0000_0000;
        br = 1;
      }
      let d2 = rem2 - t2 - br;
      br = 0;
      if (d2 < 0) {
        d2 += 0x1_0000_0000;
        br = 1;
      }
      let d1 = rem1 - t1 - br;
      br = 0;
      if (d1 < 0) {
        d1 += 0x1_0000_0000;
        br = 1;
      }
      rem0 = (rem0 - t0 - br) >>> 0;
      rem1 = d1;
      rem2 = d2;
      rem3 = d3;
      r3 = (r3 | 1) >>> 0;
    }
  }
  w0 = r1;
  w1 = r2;
  w2 = r3;
  wX = (rem0 | rem1 | rem2 | rem3) !== 0 ? 1 : 0;
  const wide = r0 !== 0; // 97 bits: the top one in r0
  if (wide) {
    shiftRightW(1);
    w0 = (w0 | 0x8000_0000) >>> 0;
  }
  wS = 0;
  // the root's bit 0 has weight 2^ex, with ex = (aE - 63 - 128 - extra) / 2
  const ex = (aE - 63 - 128 - extra) / 2;
  wE = ex + 95 + (wide ? 1 : 0);
  return flags | packExt(out, fcw, precisionOf(fcw));
}

// ---- Rounding to an integer (FRNDINT, FIST) ----

/**
 * out = a rounded to an integral value by `rc` (SDM "FRNDINT": precision control does not apply).
 */
export function roundToInt(a: F80, fcw: number, out: F80): number {
  const ka = classify(a.se, a.hi, a.lo);
  if (ka === K_UNSUPPORTED) {
    setIndefinite(out);
    return X_IE;
  }
  if (ka >= K_QNAN) return propagateNaN(a, ka, undefined, 0, out);
  if (ka === K_ZERO || ka === K_INF) {
    out.copy(a);
    return 0;
  }
  const flags = ka === K_DENORMAL ? X_DE : 0;
  unpackA(a);
  if (aE >= 63) {
    out.copy(a);
    return flags;
  }
  const r = roundWToInteger(roundingOf(fcw));
  let res = flags;
  if (r !== 0) res |= X_PE | (r === 3 ? X_C1 : 0);
  if (w0 === 0 && w1 === 0) {
    zero(out, wS);
    return res;
  }
  normalizeW();
  out.se = (wS << 15) | (wE + EXT_BIAS);
  out.hi = w0;
  out.lo = w1;
  return res;
}

/** Load a* into w and round it to an integral value (aE < 63); returns roundW's code. */
function roundWToInteger(rc: number): number {
  loadWFromA();
  if (aE >= 0) return roundW(aE + 1, rc);
  shiftRightW(-aE); // bit 95 is now the units bit
  wE = 0;
  return roundW(1, rc);
}

/** The integer FIST/FISTTP produce, as two halves (the 64-bit two's complement value). */
export const intOut = { lo: 0, hi: 0 };

/**
 * Convert to a signed integer of `bytes` (2, 4 or 8) by `rc` (SDM "FIST", "FISTTP" with RC_ZERO).
 * An out-of-range value, a NaN or an infinity is IE with the integer indefinite (the most
 * negative value). The result is in `intOut`.
 */
export function toInt(a: F80, bytes: number, rc: number): number {
  const ka = classify(a.se, a.hi, a.lo);
  if (ka === K_ZERO) {
    intOut.lo = 0;
    intOut.hi = 0;
    return 0;
  }
  if (ka === K_UNSUPPORTED || ka === K_INF || ka >= K_QNAN) return intIndefinite(bytes);
  const flags = 0; // a denormal source is not DE for FIST (as the host does): it rounds to 0 or +-1
  unpackA(a);
  if (aE >= 64) return intIndefinite(bytes) | flags;
  const r = aE >= 63 ? (loadWFromA(), 0) : roundWToInteger(rc);
  if (w0 === 0 && w1 === 0) {
    intOut.lo = 0;
    intOut.hi = 0;
    return r !== 0 ? flags | X_PE | (r === 3 ? X_C1 : 0) : flags;
  }
  if (wE >= 64) return intIndefinite(bytes) | flags;
  // the integer magnitude: w shifted so that bit 32 is the units bit, in w0:w1
  shiftRightW(63 - wE);
  let mh = w0;
  let ml = w1;
  const neg = wS !== 0;
  const bits = bytes * 8;
  // range check: |v| <= 2^(bits-1) - 1, or == 2^(bits-1) when negative
  let over: boolean;
  if (bits === 64) {
    over = mh > 0x8000_0000 || (mh === 0x8000_0000 && (ml !== 0 || !neg));
  } else {
    const lim = 2 ** (bits - 1);
    over = mh !== 0 || ml > lim || (ml === lim && !neg);
  }
  if (over) return intIndefinite(bytes) | flags;
  if (neg) {
    // two's complement of mh:ml
    ml = (~ml + 1) >>> 0;
    mh = (~mh + (ml === 0 ? 1 : 0)) >>> 0;
  }
  intOut.lo = ml | 0;
  intOut.hi = mh | 0;
  let res = flags;
  if (r !== 0) res |= X_PE | (r === 3 ? X_C1 : 0);
  return res;
}

function intIndefinite(bytes: number): number {
  if (bytes === 8) {
    intOut.lo = 0;
    intOut.hi = 0x8000_0000 | 0;
  } else {
    intOut.lo = bytes === 4 ? 0x8000_0000 | 0 : 0x8000;
    intOut.hi = 0;
  }
  return X_IE;
}

/** out = the signed 64-bit integer hi:lo (exact: 64 bits fit the significand; SDM "FILD"). */
export function fromInt64(lo: number, hi: number, out: F80): void {
  let h = hi >>> 0;
  let l = lo >>> 0;
  const neg = (hi & 0x8000_0000) !== 0;
  if (neg) {
    l = (~l + 1) >>> 0;
    h = (~h + (l === 0 ? 1 : 0)) >>> 0;
  }
  if (h === 0 && l === 0) {
    zero(out, 0);
    return;
  }
  aS = neg ? 1 : 0;
  aE = 63;
  const n = h !== 0 ? Math.clz32(h) : 32 + Math.clz32(l);
  if (n >= 32) {
    h = (l << (n - 32)) >>> 0;
    l = 0;
  } else if (n > 0) {
    h = ((h << n) | (l >>> (32 - n))) >>> 0;
    l = (l << n) >>> 0;
  }
  out.se = (aS << 15) | (63 - n + EXT_BIAS);
  out.hi = h;
  out.lo = l;
}

// ---- Conversions from and to the single and double formats ----

/**
 * out = the single-precision value `bits` (exact). Returns IE for an SNaN (quieted) and DE for a
 * denormal (SDM "FLD": #IA, #D for m32/m64).
 */
export function fromF32(bits: number, out: F80): number {
  const s = bits >>> 31;
  const e = (bits >>> 23) & 0xff;
  const f = bits & 0x7f_ffff;
  if (e === 0xff) {
    out.se = (s << 15) | 0x7fff;
    out.hi = (0x8000_0000 | (f << 8)) >>> 0;
    out.lo = 0;
    if (f !== 0 && (f & 0x40_0000) === 0) {
      out.hi = (out.hi | 0x4000_0000) >>> 0;
      return X_IE;
    }
    return 0;
  }
  if (e === 0) {
    if (f === 0) {
      zero(out, s);
      return 0;
    }
    const n = Math.clz32(f) - 8; // shift to put the leading bit at bit 23
    out.se = (s << 15) | (1 - 127 - n + EXT_BIAS);
    out.hi = ((f << n) << 8) >>> 0;
    out.lo = 0;
    return X_DE;
  }
  out.se = (s << 15) | (e - 127 + EXT_BIAS);
  out.hi = (0x8000_0000 | (f << 8)) >>> 0;
  out.lo = 0;
  return 0;
}

/** out = the double-precision value hi:lo (exact); IE for an SNaN, DE for a denormal. */
export function fromF64(lo: number, hi: number, out: F80): number {
  const s = hi >>> 31;
  const e = (hi >>> 20) & 0x7ff;
  const fh = hi & 0xf_ffff;
  const fl = lo >>> 0;
  if (e === 0x7ff) {
    out.se = (s << 15) | 0x7fff;
    out.hi = (0x8000_0000 | (fh << 11) | (fl >>> 21)) >>> 0;
    out.lo = (fl << 11) >>> 0;
    if ((fh | fl) !== 0 && (fh & 0x8_0000) === 0) {
      out.hi = (out.hi | 0x4000_0000) >>> 0;
      return X_IE;
    }
    return 0;
  }
  if (e === 0) {
    if ((fh | fl) === 0) {
      zero(out, s);
      return 0;
    }
    // denormal: fraction * 2^(-1022-52); normalize as a 64-bit integer
    let h = fh;
    let l = fl;
    const n = h !== 0 ? Math.clz32(h) : 32 + Math.clz32(l);
    if (n >= 32) {
      h = (l << (n - 32)) >>> 0;
      l = 0;
    } else {
      h = ((h << n) | (l >>> (32 - n))) >>> 0;
      l = (l << n) >>> 0;
    }
    // leading bit now at bit 63 of h:l; its weight: the fraction's bit (63 - n) has weight 2^(-1074 + 63 - n)
    out.se = (s << 15) | (-1074 + 63 - n + EXT_BIAS);
    out.hi = h;
    out.lo = l;
    return X_DE;
  }
  out.se = (s << 15) | (e - 1023 + EXT_BIAS);
  out.hi = (0x8000_0000 | (fh << 11) | (fl >>> 21)) >>> 0;
  out.lo = (fl << 11) >>> 0;
  return 0;
}

/** The stored bits of FST m32/m64 (`lo`, and `hi` for m64). */
export const fmtOut = { lo: 0, hi: 0 };

/**
 * Round `a` to the single (bytes 4) or double (bytes 8) format by `fcw`'s RC (SDM "FST"):
 * overflow and underflow as the format's range says (masked: infinity/max, denormals; unmasked:
 * the flag, and the caller stores nothing). The bits are in `fmtOut`.
 */
export function toFormat(a: F80, bytes: number, fcw: number): number {
  const single = bytes === 4;
  const p = single ? 24 : 53;
  const emin = single ? -126 : -1022;
  const emax = single ? 127 : 1023;
  const bias = single ? 127 : 1023;
  const rc = roundingOf(fcw);
  const ka = classify(a.se, a.hi, a.lo);
  const s = a.se >>> 15;
  if (ka === K_UNSUPPORTED) {
    packFmt(single, 1, single ? 0xff : 0x7ff, 0xc000_0000, 0);
    return X_IE;
  }
  if (ka === K_QNAN || ka === K_SNAN) {
    packFmt(single, s, single ? 0xff : 0x7ff, (a.hi | 0x4000_0000) >>> 0, a.lo);
    return ka === K_SNAN ? X_IE : 0;
  }
  if (ka === K_INF) {
    packFmt(single, s, single ? 0xff : 0x7ff, 0x8000_0000, 0);
    return 0;
  }
  if (ka === K_ZERO) {
    packFmt(single, s, 0, 0, 0);
    return 0;
  }
  unpackA(a);
  loadWFromA();
  let flags = 0;
  let tiny = false;
  if (wE < emin - 1) tiny = true;
  else if (wE === emin - 1) tiny = !roundCarries(p, rc);
  if (tiny) {
    if ((fcw & FCW_UM) === 0) return X_UE;
    shiftRightW(emin - wE);
    wE = emin;
    const r = roundW(p, rc);
    if (r !== 0) flags |= X_UE | X_PE | (r === 3 ? X_C1 : 0);
    const normal = (w0 & 0x8000_0000) !== 0;
    packFmt(single, s, normal ? 1 : 0, w0, w1);
    return flags;
  }
  const r = roundW(p, rc);
  if (r !== 0) flags |= X_PE | (r === 3 ? X_C1 : 0);
  const e = wE;
  if (e > emax) {
    if ((fcw & FCW_OM) === 0) return X_OE;
    const toInf = rc === RC_NEAREST || (rc === RC_DOWN && s !== 0) || (rc === RC_UP && s === 0);
    if (toInf) packFmt(single, s, single ? 0xff : 0x7ff, 0x8000_0000, 0);
    else packFmt(single, s, single ? 0xfe : 0x7fe, 0xffff_ffff, 0xffff_ffff);
    return X_OE | X_PE | (toInf ? X_C1 : 0);
  }
  packFmt(single, s, e + bias, w0, w1);
  return flags;
}

/** Pack sign, biased exponent and a significand whose integer bit is h bit 31 into fmtOut. */
function packFmt(single: boolean, s: number, e: number, h: number, l: number): void {
  if (single) {
    fmtOut.lo = ((s << 31) | (e << 23) | ((h >>> 8) & 0x7f_ffff)) | 0;
    fmtOut.hi = 0;
  } else {
    fmtOut.hi = ((s << 31) | (e << 20) | ((h >>> 11) & 0xf_ffff)) | 0;
    fmtOut.lo = (((h & 0x7ff) << 21) | (l >>> 11)) | 0;
  }
}

// ---- Comparison ----

/** Comparison results (FCOM's C3/C2/C0 meanings). */
export const CMP_GT = 0;
export const CMP_LT = 1;
export const CMP_EQ = 2;
export const CMP_UNORDERED = 3;

/** The flags of the last compare (IE, DE), set by `compare`. */
export const cmpFlags = { flags: 0 };

/**
 * Compare a with b (SDM "FCOM", "FUCOM"): returns CMP_*; `cmpFlags.flags` gets IE for an SNaN,
 * any NaN when `signalQNaN` (FCOM), or an unsupported operand, and DE for a denormal.
 */
export function compare(a: F80, b: F80, signalQNaN: boolean): number {
  const ka = classify(a.se, a.hi, a.lo);
  const kb = classify(b.se, b.hi, b.lo);
  if (ka === K_UNSUPPORTED || kb === K_UNSUPPORTED || ka === K_SNAN || kb === K_SNAN) {
    cmpFlags.flags = X_IE;
    return CMP_UNORDERED;
  }
  if (ka === K_QNAN || kb === K_QNAN) {
    cmpFlags.flags = signalQNaN ? X_IE : 0;
    return CMP_UNORDERED;
  }
  cmpFlags.flags = ka === K_DENORMAL || kb === K_DENORMAL ? X_DE : 0;
  if (ka === K_ZERO && kb === K_ZERO) return CMP_EQ;
  const sa = a.se >>> 15;
  const sb = b.se >>> 15;
  if (ka === K_ZERO) return sb !== 0 ? CMP_GT : CMP_LT;
  if (kb === K_ZERO) return sa !== 0 ? CMP_LT : CMP_GT;
  if (sa !== sb) return sa !== 0 ? CMP_LT : CMP_GT;
  let c: number; // magnitude comparison: -1, 0, 1
  if (ka === K_INF || kb === K_INF) c = ka === kb ? 0 : ka === K_INF ? 1 : -1;
  else {
    unpackA(a);
    unpackB(b);
    c = aE !== bE ? (aE > bE ? 1 : -1) : aH !== bH ? (aH > bH ? 1 : -1) : aL !== bL ? (aL > bL ? 1 : -1) : 0;
  }
  if (c === 0) return CMP_EQ;
  return (c > 0) !== (sa !== 0) ? CMP_GT : CMP_LT;
}

// ---- Scale, extract, remainder ----

/** out = a * 2^trunc(b) (SDM "FSCALE"), rounded by fcw. */
export function scale(a: F80, b: F80, fcw: number, out: F80): number {
  const ka = classify(a.se, a.hi, a.lo);
  const kb = classify(b.se, b.hi, b.lo);
  const sp = specials2(a, ka, b, kb, out);
  if (sp >= 0) return sp;
  const flags = (ka === K_DENORMAL || kb === K_DENORMAL) ? X_DE : 0;
  const sb = b.se >>> 15;
  if (kb === K_INF) {
    if (sb === 0) {
      if (ka === K_ZERO) {
        setIndefinite(out);
        return X_IE;
      }
      if (ka === K_INF) out.copy(a);
      else inf(out, a.se >>> 15);
    } else {
      if (ka === K_INF) {
        setIndefinite(out);
        return X_IE;
      }
      if (ka === K_ZERO) out.copy(a);
      else zero(out, a.se >>> 15);
    }
    return flags;
  }
  if (ka === K_ZERO || ka === K_INF) {
    out.copy(a);
    return flags;
  }
  // n = trunc(b), clamped (anything beyond +/-2^17 over- or underflows every input)
  let n = 0;
  if (kb !== K_ZERO) {
    unpackB(b);
    if (bE >= 20) n = 1 << 20;
    else if (bE >= 0) n = Math.floor(bH / 2 ** (31 - bE));
    if (bS !== 0) n = -n;
  }
  unpackA(a);
  loadWFromA();
  wE += n;
  // FSCALE is not rounded to the precision control (as the host does): 64 bits
  return flags | packExt(out, fcw, 64);
}

/** FXTRACT's exponent part (the significand part goes to `out`); SDM "FXTRACT". */
export const extractExp = new F80();

/**
 * Split a into its unbiased exponent (`extractExp`, a real) and its significand with exponent
 * 3FFFH (`out`). Zero: ZE, exponent -infinity, significand the zero. Infinity: +infinity and
 * the infinity. NaNs propagate to both.
 */
export function extract(a: F80, out: F80): number {
  const ka = classify(a.se, a.hi, a.lo);
  if (ka === K_UNSUPPORTED) {
    setIndefinite(out);
    setIndefinite(extractExp);
    return X_IE;
  }
  if (ka >= K_QNAN) {
    const f = propagateNaN(a, ka, undefined, 0, out);
    extractExp.copy(out);
    return f;
  }
  if (ka === K_ZERO) {
    inf(extractExp, 1);
    out.copy(a);
    return X_ZE;
  }
  if (ka === K_INF) {
    inf(extractExp, 0);
    out.copy(a);
    return 0;
  }
  const flags = ka === K_DENORMAL ? X_DE : 0;
  unpackA(a);
  out.se = (aS << 15) | EXT_BIAS;
  out.hi = aH;
  out.lo = aL;
  fromInt64(aE, aE < 0 ? -1 : 0, extractExp);
  return flags;
}

/**
 * FPREM/FPREM1's result when it is the dividend itself (|a| below the divisor, or an infinite
 * divisor): the host passes it through the result path, so a pseudo-denormal gets its normal
 * encoding (exponent 1) and a denormal is a tiny result (with UE unmasked: UE, rebiased).
 */
function dividendResult(a: F80, ka: number, fcw: number, flags: number, out: F80): number {
  if (ka === K_ZERO) {
    out.copy(a);
    return flags;
  }
  unpackA(a);
  loadWFromA();
  return flags | packExt(out, (fcw & ~0x0c00) | 0x300, 64);
}

/** FPREM/FPREM1's quotient bits and completion: Q2, Q1, Q0 and C2 (partial). */
export const premOut = { q: 0, partial: false };

/**
 * Partial remainder (SDM "FPREM" with `nearest` false: truncating quotient; "FPREM1" with
 * `nearest` true: IEEE remainder). With an exponent difference of 64 or more the reduction is
 * partial (C2 = 1): the difference goes down to between 32 and 63, as the host CPU does
 * (SDM: "an implementation-dependent number between 32 and 63").
 */
export function remainder(a: F80, b: F80, nearest: boolean, fcw: number, out: F80): number {
  premOut.q = 0;
  premOut.partial = false;
  const ka = classify(a.se, a.hi, a.lo);
  const kb = classify(b.se, b.hi, b.lo);
  const sp = specials2(a, ka, b, kb, out);
  if (sp >= 0) return sp;
  const flags = (ka === K_DENORMAL || kb === K_DENORMAL) ? X_DE : 0;
  if (ka === K_INF || kb === K_ZERO) {
    setIndefinite(out);
    return X_IE;
  }
  if (ka === K_ZERO || kb === K_INF) return dividendResult(a, ka, fcw, flags, out);
  unpackA(a);
  unpackB(b);
  const d = aE - bE;
  const sign = aS;
  if (d < 0) {
    if (!nearest || d < -1) return dividendResult(a, ka, fcw, flags, out);
    // d = -1: |a| >= |b|/2 ?  compare 2|a| with |b| at the same exponent
    const c = aH !== bH ? (aH > bH ? 1 : -1) : aL !== bL ? (aL > bL ? 1 : -1) : 0;
    if (c <= 0) return dividendResult(a, ka, fcw, flags, out);
    // r = a - b (sign of a reversed): |b| - |a| = (2 bSig - aSig) * 2^(aE - 63)
    let l = bL * 2 - aL;
    let h = bH * 2 - aH;
    if (l < 0) {
      l += 0x1_0000_0000;
      h -= 1;
    } else if (l > 0xffff_ffff) {
      l -= 0x1_0000_0000;
      h += 1;
    }
    // h:l < 2^64 here (2b - a < b since a > b)
    w0 = h >>> 0;
    w1 = l >>> 0;
    w2 = 0;
    wX = 0;
    wE = aE;
    wS = sign ^ 1;
    premOut.q = 1;
    return flags | packExt(out, fcw | 0x300, 64);
  }
  let steps = d;
  let eOut = bE;
  if (d >= 64) {
    const k = 32 * Math.floor((d - 32) / 32);
    steps = d - k;
    eOut = bE + k;
    premOut.partial = true;
  }
  // bit-serial: r = aSig; for j = steps..0: if r >= bSig: r -= bSig, q bit 1; if j > 0: r <<= 1
  let rc = 0;
  let rh = aH;
  let rl = aL;
  let q = 0;
  for (let j = steps; j >= 0; j--) {
    let bit = 0;
    if (rc !== 0 || rh > bH || (rh === bH && rl >= bL)) {
      bit = 1;
      let l = rl - bL;
      let br = 0;
      if (l < 0) {
        l += 0x1_0000_0000;
        br = 1;
      }
      let h = rh - bH - br;
      if (h < 0) h += 0x1_0000_0000;
      rh = h;
      rl = l;
      rc = 0;
    }
    q = ((q << 1) | bit) & 7;
    if (j > 0) {
      rc = rh >>> 31;
      rh = ((rh << 1) | (rl >>> 31)) >>> 0;
      rl = (rl << 1) >>> 0;
    }
  }
  let s = sign;
  if (nearest && !premOut.partial) {
    // round the quotient to nearest: r > b/2, or r == b/2 with q odd
    const r2c = rh >>> 31;
    const r2h = ((rh << 1) | (rl >>> 31)) >>> 0;
    const r2l = (rl << 1) >>> 0;
    const c = r2c !== 0 ? 1 : r2h !== bH ? (r2h > bH ? 1 : -1) : r2l !== bL ? (r2l > bL ? 1 : -1) : 0;
    if (c > 0 || (c === 0 && (q & 1) !== 0)) {
      // r = b - r, sign flips, q + 1
      let l = bL - rl;
      let br = 0;
      if (l < 0) {
        l += 0x1_0000_0000;
        br = 1;
      }
      rh = (bH - rh - br) >>> 0;
      rl = l;
      s ^= 1;
      q = (q + 1) & 7;
    }
  }
  premOut.q = premOut.partial ? 0 : q;
  if (rh === 0 && rl === 0) {
    zero(out, sign);
    return flags;
  }
  w0 = rh;
  w1 = rl;
  w2 = 0;
  wX = 0;
  wE = eOut;
  wS = s;
  // exact: a 64-bit-precision pack cannot round
  return flags | packExt(out, (fcw & ~0x0c00) | 0x300, 64);
}

/**
 * Round the magnitude of `a` (finite, nonzero) moved by an infinitesimal, `dir` -1 just below
 * it, +1 just above, the sign kept, to 64 bits by fcw's RC (denormal results and their UE as
 * packExt gives them): the transcendentals' results for tiny arguments (sin x = x - x^3/6, ...)
 * where only the direction of the correction decides the rounding.
 */
export function nudge(a: F80, dir: number, fcw: number, out: F80): number {
  unpackA(a);
  loadWFromA();
  if (dir < 0) {
    // w - 2^-32 of the lowest word's unit, then sticky: strictly between a - ulp/2^32 and a
    w2 = 0xffff_ffff;
    if (w1 === 0) {
      w1 = 0xffff_ffff;
      w0 = (w0 - 1) >>> 0;
    } else w1 = (w1 - 1) >>> 0;
  }
  wX = 1;
  return packExt(out, (fcw & 0x0c3f) | 0x0300, 64);
}

/** Negated and absolute values need no rounding: callers flip or clear the sign bit themselves. */
export function isNaNKind(k: number): boolean {
  return k === K_QNAN || k === K_SNAN;
}
