/**
 * The 80-bit soft-float (src/exec/f80.ts) against an exact reference written here with BigInt
 * (test code only): every result of add, sub, mul, div, sqrt, FRNDINT, FIST and FST m32/m64 must
 * be the exact value correctly rounded under every precision control and rounding control, with
 * the flags (PE, UE, OE, C1 = rounded up) the SDM gives for masked exceptions; and laws the
 * soft-float must keep (commutativity, exact results when representable, rounding direction).
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  F80,
  X_C1,
  X_DE,
  X_IE,
  X_OE,
  X_PE,
  X_UE,
  X_ZE,
  add,
  classify,
  compare,
  div,
  fmtOut,
  fromF32,
  fromF64,
  intOut,
  K_DENORMAL,
  K_INF,
  K_NORMAL,
  K_QNAN,
  K_SNAN,
  K_ZERO,
  mul,
  remainder,
  premOut,
  scale,
  roundToInt,
  sqrt,
  toFormat,
  toInt,
} from "../src/exec/f80.js";

// ---- The exact reference ----

interface Exact {
  sign: number;
  m: bigint; // > 0
  e: number; // value = m * 2^e
  sticky: boolean; // a nonzero amount below 2^e was lost
}

function decodeFinite(x: F80): Exact | undefined {
  const k = classify(x.se, x.hi, x.lo);
  if (k !== K_NORMAL && k !== K_DENORMAL) return undefined;
  const exp = x.se & 0x7fff;
  const m = (BigInt(x.hi >>> 0) << 32n) | BigInt(x.lo >>> 0);
  return { sign: x.se >>> 15, m, e: (exp === 0 ? 1 : exp) - 16383 - 63, sticky: false };
}

function bitlen(v: bigint): number {
  return v.toString(2).length;
}

/** Round an exact nonzero value to p bits in a format with [emin, emax], masks all set. */
function refRound(v: Exact, p: number, rc: number, emin: number, emax: number): { sign: number; m: bigint; lead: number; flags: number; kind: "finite" | "inf" | "max" } {
  let m = v.m;
  let e = v.e;
  if (v.sticky) {
    m = (m << 2n) | 1n;
    e -= 2;
  }
  const roundAt = (lsb: number): { q: bigint; up: boolean; inexact: boolean } => {
    const sh = lsb - e;
    if (sh <= 0) return { q: m << BigInt(-sh), up: false, inexact: false };
    const q0 = m >> BigInt(sh);
    const rem = m - (q0 << BigInt(sh));
    const half = 1n << BigInt(sh - 1);
    const inexact = rem !== 0n;
    let up = false;
    if (inexact) {
      if (rc === 0) up = rem > half || (rem === half && (q0 & 1n) === 1n);
      else if (rc === 1) up = v.sign === 1;
      else if (rc === 2) up = v.sign === 0;
    }
    return { q: up ? q0 + 1n : q0, up, inexact };
  };
  const lead = bitlen(m) - 1 + e;
  // unbounded-exponent rounding decides tininess
  const u = roundAt(lead - p + 1);
  const uLead = bitlen(u.q) - 1 + (lead - p + 1);
  let flags = 0;
  if (uLead < emin) {
    const d = roundAt(emin - p + 1);
    if (d.inexact) flags |= X_UE | X_PE | (d.up ? X_C1 : 0);
    const dl = d.q === 0n ? -Infinity : bitlen(d.q) - 1 + (emin - p + 1);
    return { sign: v.sign, m: d.q, lead: dl, flags, kind: "finite" };
  }
  if (u.inexact) flags |= X_PE | (u.up ? X_C1 : 0);
  if (uLead > emax) {
    const toInf = rc === 0 || (rc === 1 && v.sign === 1) || (rc === 2 && v.sign === 0);
    return { sign: v.sign, m: 0n, lead: 0, flags: X_OE | X_PE | (toInf ? X_C1 : 0), kind: toInf ? "inf" : "max" };
  }
  return { sign: v.sign, m: u.q, lead: uLead, flags, kind: "finite" };
}

/** Pack a reference result into F80 fields. */
function packRef(r: ReturnType<typeof refRound>, p: number): F80 {
  const out = new F80();
  if (r.kind === "inf") return out.set((r.sign << 15) | 0x7fff, 0x8000_0000, 0);
  if (r.kind === "max") {
    const sig = ((1n << BigInt(p)) - 1n) << BigInt(64 - p);
    return out.set((r.sign << 15) | 0x7ffe, Number(sig >> 32n), Number(sig & 0xffff_ffffn));
  }
  if (r.m === 0n) return out.set(r.sign << 15, 0, 0);
  // significand with the lead at bit 63, or denormal
  let exp = r.lead + 16383;
  let sig: bigint;
  const lsb = r.lead - bitlen(r.m) + 1; // exponent of r.m's bit 0
  if (exp >= 1) sig = r.m << BigInt(63 - (r.lead - lsb));
  else {
    exp = 0;
    // denormal: bit 0 of the significand has weight 2^(-16382-63)
    sig = r.m << BigInt(lsb - (-16382 - 63));
  }
  return out.set((r.sign << 15) | exp, Number(sig >> 32n), Number(sig & 0xffff_ffffn));
}

function exactAdd(a: Exact, b: Exact, negB: boolean): Exact | 0 {
  const e = Math.min(a.e, b.e);
  const va = (a.sign ? -1n : 1n) * (a.m << BigInt(a.e - e));
  const vb = (b.sign ^ (negB ? 1 : 0) ? -1n : 1n) * (b.m << BigInt(b.e - e));
  const s = va + vb;
  if (s === 0n) return 0;
  return { sign: s < 0n ? 1 : 0, m: s < 0n ? -s : s, e, sticky: false };
}

function exactDiv(a: Exact, b: Exact): Exact {
  const k = 200;
  const n = a.m << BigInt(k);
  const q = n / b.m;
  return { sign: a.sign ^ b.sign, m: q, e: a.e - b.e - k, sticky: q * b.m !== n };
}

function isqrt(n: bigint): bigint {
  if (n < 2n) return n;
  let x = 1n << BigInt(Math.ceil(bitlen(n) / 2));
  for (;;) {
    const y = (x + n / x) >> 1n;
    if (y >= x) return x;
    x = y;
  }
}

function exactSqrt(a: Exact): Exact {
  let m = a.m;
  let e = a.e;
  if (e & 1) {
    m <<= 1n;
    e -= 1;
  }
  const k = 200;
  const n = m << BigInt(2 * k);
  const r = isqrt(n);
  return { sign: 0, m: r, e: e / 2 - k, sticky: r * r !== n };
}

// ---- Generators ----

const special: fc.Arbitrary<number[]> = fc.constantFrom<number[]>(
  [0x0000, 0, 0], [0x8000, 0, 0], // zeros
  [0x7fff, 0x8000_0000, 0], [0xffff, 0x8000_0000, 0], // infinities
  [0x3fff, 0x8000_0000, 0], [0xbfff, 0x8000_0000, 0], // +-1
  [0x7ffe, 0xffff_ffff, 0xffff_ffff], // max
  [0x0001, 0x8000_0000, 0], // min normal
  [0x0000, 0, 1], // min denormal
  [0x0000, 0x8000_0000, 0], // pseudo-denormal
  [0x0000, 0x7fff_ffff, 0xffff_ffff], // max denormal
  [0x7fff, 0xc000_0000, 0], [0x7fff, 0xa000_0000, 5], // QNaN, SNaN
);
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const finiteField = fc.oneof(
  fc.tuple(fc.integer({ min: 0, max: 1 }), fc.integer({ min: 1, max: 0x7ffe }), u32, u32).map(([s, e, h, l]) => [(s << 15) | e, (h | 0x8000_0000) >>> 0, l]),
  fc.tuple(fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0x3f00, max: 0x40ff }), u32, u32).map(([s, e, h, l]) => [(s << 15) | e, (h | 0x8000_0000) >>> 0, l]),
  fc.tuple(fc.integer({ min: 0, max: 1 }), fc.integer({ min: 1, max: 0x60 }), u32, u32).map(([s, e, h, l]) => [(s << 15) | e, (h | 0x8000_0000) >>> 0, l]),
  fc.tuple(fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0x7fa0, max: 0x7ffe }), u32, u32).map(([s, e, h, l]) => [(s << 15) | e, (h | 0x8000_0000) >>> 0, l]),
  fc.tuple(fc.integer({ min: 0, max: 1 }), u32, u32).map(([s, h, l]) => [s << 15, h & 0x7fff_ffff, (h & 0x7fff_ffff) === 0 && l === 0 ? 1 : l]), // denormals
  // short significands (exact cases)
  fc.tuple(fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0x3ff0, max: 0x4010 }), fc.integer({ min: 0, max: 0xff })).map(([s, e, h]) => [(s << 15) | e, (0x8000_0000 | (h << 23)) >>> 0, 0]),
);
const anyValue = fc.oneof({ arbitrary: finiteField, weight: 6 }, { arbitrary: special, weight: 1 }).map((t) => new F80().set(t[0]!, t[1]!, t[2]!));
const finite = finiteField.map((t) => new F80().set(t[0]!, t[1]!, t[2]!));
const pc = fc.constantFrom(0, 2, 3);
const rc = fc.integer({ min: 0, max: 3 });
const fcwOf = (p: number, r: number) => 0x037f & ~0x0f00 | (p << 8) | (r << 10);
const PBITS = [24, 0, 53, 64];

function fmt(x: F80): string {
  return `${x.se.toString(16).padStart(4, "0")}:${(x.hi >>> 0).toString(16).padStart(8, "0")}${(x.lo >>> 0).toString(16).padStart(8, "0")}`;
}

const RUNS = Number(process.env.VTLAB_F80_RUNS ?? 3000);
const MASK_FLAGS = X_PE | X_UE | X_OE | X_C1;

function checkAgainst(exact: Exact | 0, p: number, r: number, got: F80, gotFlags: number, zeroSign: number): void {
  if (exact === 0) {
    expect(fmt(got)).toBe(fmt(new F80().set(zeroSign << 15, 0, 0)));
    expect(gotFlags & MASK_FLAGS).toBe(0);
    return;
  }
  const ref = refRound(exact, p, r, -16382, 16383);
  expect(fmt(got)).toBe(fmt(packRef(ref, p)));
  expect((gotFlags & MASK_FLAGS).toString(16)).toBe(ref.flags.toString(16));
}

describe("f80 soft-float against an exact reference (all exceptions masked)", () => {
  it("add and sub are correctly rounded under every PC and RC", () => {
    fc.assert(
      fc.property(finite, finite, pc, rc, fc.boolean(), (a, b, p, r, sub) => {
        const out = new F80();
        const flags = add(a, b, sub, fcwOf(p, r), out);
        const ea = decodeFinite(a);
        const eb = decodeFinite(b);
        if (ea === undefined || eb === undefined) return;
        checkAgainst(exactAdd(ea, eb, sub), PBITS[p]!, r, out, flags, r === 1 ? 1 : 0);
      }),
      { numRuns: RUNS },
    );
  });

  it("mul is correctly rounded", () => {
    fc.assert(
      fc.property(finite, finite, pc, rc, (a, b, p, r) => {
        const out = new F80();
        const flags = mul(a, b, fcwOf(p, r), out);
        const ea = decodeFinite(a)!;
        const eb = decodeFinite(b)!;
        checkAgainst({ sign: ea.sign ^ eb.sign, m: ea.m * eb.m, e: ea.e + eb.e, sticky: false }, PBITS[p]!, r, out, flags, 0);
      }),
      { numRuns: RUNS },
    );
  });

  it("div is correctly rounded", () => {
    fc.assert(
      fc.property(finite, finite, pc, rc, (a, b, p, r) => {
        const out = new F80();
        const flags = div(a, b, fcwOf(p, r), out);
        checkAgainst(exactDiv(decodeFinite(a)!, decodeFinite(b)!), PBITS[p]!, r, out, flags, 0);
      }),
      { numRuns: RUNS },
    );
  });

  it("sqrt is correctly rounded", () => {
    fc.assert(
      fc.property(finite, pc, rc, (a, p, r) => {
        const x = new F80().set(a.se & 0x7fff, a.hi, a.lo);
        const out = new F80();
        const flags = sqrt(x, fcwOf(p, r), out);
        checkAgainst(exactSqrt(decodeFinite(x)!), PBITS[p]!, r, out, flags, 0);
      }),
      { numRuns: RUNS },
    );
  });

  it("FRNDINT rounds to an integral value by RC (PC does not apply)", () => {
    fc.assert(
      fc.property(finite, pc, rc, (a, p, r) => {
        const out = new F80();
        const flags = roundToInt(a, fcwOf(p, r), out);
        const ea = decodeFinite(a)!;
        // reference: round to the units place
        const lead = bitlen(ea.m) - 1 + ea.e;
        if (ea.e >= 0) {
          expect(fmt(out)).toBe(fmt(a));
          return;
        }
        const sh = BigInt(-ea.e);
        const q0 = ea.m >> sh;
        const rem = ea.m - (q0 << sh);
        const half = 1n << (sh - 1n);
        let up = false;
        if (rem !== 0n) up = r === 0 ? rem > half || (rem === half && (q0 & 1n) === 1n) : r === 1 ? ea.sign === 1 : r === 2 ? ea.sign === 0 : false;
        const q = up ? q0 + 1n : q0;
        void lead;
        if (q === 0n) expect(fmt(out)).toBe(fmt(new F80().set(ea.sign << 15, 0, 0)));
        else checkAgainst({ sign: ea.sign, m: q, e: 0, sticky: false }, 64, 0, out, flags & ~(X_PE | X_C1), 0);
        expect(flags & (X_PE | X_C1)).toBe(rem === 0n ? 0 : X_PE | (up ? X_C1 : 0));
      }),
      { numRuns: RUNS },
    );
  });

  it("FIST to 16, 32 and 64 bits: rounded by RC, out of range is IE with the integer indefinite", () => {
    fc.assert(
      fc.property(finite, fc.constantFrom(2, 4, 8), rc, (a, bytes, r) => {
        const flags = toInt(a, bytes, r);
        const ea = decodeFinite(a)!;
        let q: bigint;
        let up = false;
        let inexact = false;
        if (ea.e >= 0) q = ea.m << BigInt(ea.e);
        else {
          const sh = BigInt(-ea.e);
          const q0 = ea.m >> sh;
          const rem = ea.m - (q0 << sh);
          const half = 1n << (sh - 1n);
          inexact = rem !== 0n;
          if (inexact) up = r === 0 ? rem > half || (rem === half && (q0 & 1n) === 1n) : r === 1 ? ea.sign === 1 : r === 2 ? ea.sign === 0 : false;
          q = up ? q0 + 1n : q0;
        }
        const v = ea.sign ? -q : q;
        const bits = BigInt(bytes * 8);
        const got = BigInt.asIntN(bytes * 8, (BigInt(intOut.hi >>> 0) << 32n) | BigInt(intOut.lo >>> 0));
        if (v < -(1n << (bits - 1n)) || v >= 1n << (bits - 1n)) {
          expect(flags & X_IE).toBe(X_IE);
          expect(got).toBe(-(1n << (bits - 1n)));
        } else {
          expect(got).toBe(v);
          expect(flags & (X_IE | X_PE | X_C1)).toBe(inexact ? X_PE | (up ? X_C1 : 0) : 0);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("FST m32/m64 rounds into the narrower format (denormals, overflow to infinity or max)", () => {
    fc.assert(
      fc.property(finite, fc.constantFrom(4, 8), rc, (a, bytes, r) => {
        const flags = toFormat(a, bytes, fcwOf(3, r));
        const ea = decodeFinite(a)!;
        const single = bytes === 4;
        const p = single ? 24 : 53;
        const ref = refRound(ea, p, r, single ? -126 : -1022, single ? 127 : 1023);
        expect((flags & MASK_FLAGS).toString(16)).toBe(ref.flags.toString(16));
        // decode what was stored
        const back = new F80();
        if (single) fromF32(fmtOut.lo, back);
        else fromF64(fmtOut.lo, fmtOut.hi, back);
        if (ref.kind === "inf") expect(classify(back.se, back.hi, back.lo)).toBe(K_INF);
        else if (ref.kind === "max") expect(single ? fmtOut.lo & 0x7fff_ffff : fmtOut.hi & 0x7fff_ffff).toBe(single ? 0x7f7f_ffff : 0x7fef_ffff);
        else if (ref.m === 0n) expect(classify(back.se, back.hi, back.lo)).toBe(K_ZERO);
        else {
          const e = decodeFinite(back)!;
          // same value: m * 2^e
          const lsbA = ref.lead - bitlen(ref.m) + 1;
          const shift = e.e - lsbA;
          const mA = shift >= 0 ? e.m << BigInt(shift) : e.m >> BigInt(-shift);
          expect(mA).toBe(ref.m);
          expect(e.sign).toBe(ref.sign);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

describe("f80 laws", () => {
  it("add and mul are commutative, bit for bit and flag for flag (NaNs included)", () => {
    fc.assert(
      fc.property(anyValue, anyValue, pc, rc, (a, b, p, r) => {
        const x = new F80();
        const y = new F80();
        const f = fcwOf(p, r);
        const a1 = add(a, b, false, f, x);
        const a2 = add(b, a, false, f, y);
        expect(a1).toBe(a2);
        expect(fmt(x)).toBe(fmt(y));
        const m1 = mul(a, b, f, x);
        const m2 = mul(b, a, f, y);
        expect(m1).toBe(m2);
        expect(fmt(x)).toBe(fmt(y));
      }),
      { numRuns: RUNS },
    );
  });

  it("results that are representable are exact: small integers add, multiply and divide without PE", () => {
    fc.assert(
      fc.property(fc.integer({ min: -100000, max: 100000 }), fc.integer({ min: -100000, max: 100000 }), rc, (i, j, r) => {
        const a = new F80();
        const b = new F80();
        const o = new F80();
        const ai = BigInt(i);
        const bi = BigInt(j);
        const load = (v: bigint, into: F80) => {
          const u = BigInt.asUintN(64, v);
          into.set(0, 0, 0);
          // via the integer loader
          return fromIntChecked(Number(u & 0xffff_ffffn) | 0, Number(u >> 32n) | 0, into);
        };
        load(ai, a);
        load(bi, b);
        const f = fcwOf(3, r);
        expect(add(a, b, false, f, o) & X_PE).toBe(0);
        expect(toInt(o, 8, r) & X_PE).toBe(0);
        expect(BigInt.asIntN(64, (BigInt(intOut.hi >>> 0) << 32n) | BigInt(intOut.lo >>> 0))).toBe(ai + bi);
        expect(mul(a, b, f, o) & X_PE).toBe(0);
        toInt(o, 8, r);
        expect(BigInt.asIntN(64, (BigInt(intOut.hi >>> 0) << 32n) | BigInt(intOut.lo >>> 0))).toBe(ai * bi);
        if (j !== 0) {
          // (i * j) / j == i exactly
          mul(a, b, f, o);
          const q = new F80();
          expect(div(o, b, f, q) & X_PE).toBe(0);
          expect(fmt(q)).toBe(fmt(a));
        }
      }),
      { numRuns: 1000 },
    );
  });

  it("rounding direction: RC down <= RC nearest <= RC up, RC zero has the smaller magnitude", () => {
    fc.assert(
      fc.property(finite, finite, pc, (a, b, p) => {
        const res = [0, 1, 2, 3].map((r) => {
          const o = new F80();
          div(a, b, fcwOf(p, r), o);
          return o;
        });
        const [near, down, up, zero] = res as [F80, F80, F80, F80];
        const le = (x: F80, y: F80) => {
          const c = compare(x, y, false);
          return c === 1 || c === 2;
        };
        expect(le(down, near)).toBe(true);
        expect(le(near, up)).toBe(true);
        const neg = ((a.se ^ b.se) & 0x8000) !== 0;
        expect(fmt(zero)).toBe(fmt(neg ? up : down));
      }),
      { numRuns: RUNS },
    );
  });
});

import { fromInt64 } from "../src/exec/f80.js";
function fromIntChecked(lo: number, hi: number, out: F80): F80 {
  fromInt64(lo, hi, out);
  return out;
}

describe("f80 special operands (SDM Vol. 2A tables for FADD, FMUL, FDIV, FSQRT)", () => {
  const v = (se: number, hi: number, lo: number) => new F80().set(se, hi, lo);
  const one = v(0x3fff, 0x8000_0000, 0);
  const pinf = v(0x7fff, 0x8000_0000, 0);
  const ninf = v(0xffff, 0x8000_0000, 0);
  const pz = v(0, 0, 0);
  const nz = v(0x8000, 0, 0);
  const snan = v(0x7fff, 0xa000_0000, 0);
  const qnan = v(0x7fff, 0xc000_1234, 0);
  const unnormal = v(0x3fff, 0x4000_0000, 0);
  const F = 0x037f;
  const o = new F80();

  it("inf - inf, 0 * inf, 0/0, inf/inf and sqrt(-1) are IE with the QNaN indefinite", () => {
    expect(add(pinf, pinf, true, F, o)).toBe(X_IE);
    expect(fmt(o)).toBe("ffff:c000000000000000");
    expect(mul(pz, ninf, F, o)).toBe(X_IE);
    expect(div(pz, nz, F, o)).toBe(X_IE);
    expect(div(pinf, ninf, F, o)).toBe(X_IE);
    expect(sqrt(v(0xbfff, 0x8000_0000, 0), F, o)).toBe(X_IE);
    expect(fmt(o)).toBe("ffff:c000000000000000");
  });

  it("x/0 is ZE with a signed infinity; sqrt(-0) is -0; +0 + -0 is +0, or -0 rounding down", () => {
    expect(div(one, nz, F, o)).toBe(X_ZE);
    expect(fmt(o)).toBe("ffff:8000000000000000");
    expect(sqrt(nz, F, o)).toBe(0);
    expect(fmt(o)).toBe("8000:0000000000000000");
    add(pz, nz, false, F, o);
    expect(fmt(o)).toBe("0000:0000000000000000");
    add(pz, nz, false, F | 0x400, o);
    expect(fmt(o)).toBe("8000:0000000000000000");
    add(one, one, true, F | 0x400, o);
    expect(fmt(o)).toBe("8000:0000000000000000");
  });

  it("an SNaN is IE and quieted; a QNaN passes through; an unnormal is IE with the indefinite", () => {
    expect(add(snan, one, false, F, o)).toBe(X_IE);
    expect(fmt(o)).toBe("7fff:e000000000000000");
    expect(mul(one, qnan, F, o)).toBe(0);
    expect(fmt(o)).toBe("7fff:c000123400000000");
    expect(add(unnormal, one, false, F, o)).toBe(X_IE);
    expect(fmt(o)).toBe("ffff:c000000000000000");
    expect(classify(snan.se, snan.hi, snan.lo)).toBe(K_SNAN);
    expect(classify(qnan.se, qnan.hi, qnan.lo)).toBe(K_QNAN);
  });

  it("a denormal operand is DE; masked overflow gives infinity with C1, or max rounding toward zero", () => {
    expect(add(v(0, 0, 1), one, false, F, o) & X_DE).toBe(X_DE);
    const max = v(0x7ffe, 0xffff_ffff, 0xffff_ffff);
    expect(mul(max, v(0x4000, 0x8000_0000, 0), F, o)).toBe(X_OE | X_PE | X_C1);
    expect(fmt(o)).toBe("7fff:8000000000000000");
    expect(mul(max, v(0x4000, 0x8000_0000, 0), F | 0xc00, o)).toBe(X_OE | X_PE);
    expect(fmt(o)).toBe("7ffe:ffffffffffffffff");
  });

  it("unmasked overflow and underflow rebias the register result by 24576 (SDM 8.5.4, 8.5.5)", () => {
    const max = v(0x7ffe, 0xffff_ffff, 0xffff_ffff);
    expect(mul(max, max, F & ~0x08, o) & X_OE).toBe(X_OE);
    expect(o.se & 0x7fff).toBe(0x7ffe + 0x7ffe - 0x3fff + 1 - 24576);
    const min = v(0x0001, 0x8000_0000, 0);
    expect(mul(min, min, F & ~0x10, o) & X_UE).toBe(X_UE);
    expect(o.se & 0x7fff).toBe(1 + 1 - 0x3fff + 24576);
  });

  it("FPREM's quotient bits and partial remainder; FPREM1 rounds the quotient to nearest", () => {
    // 7 rem 2 = 1, q = 3; FPREM1: 7 = 4*2 - 1, q = 4
    const seven = v(0x4001, 0xe000_0000, 0);
    const two = v(0x4000, 0x8000_0000, 0);
    remainder(seven, two, false, F, o);
    expect(fmt(o)).toBe(fmt(one));
    expect(premOut.q).toBe(3);
    remainder(seven, two, true, F, o);
    expect(fmt(o)).toBe("bfff:8000000000000000");
    expect(premOut.q).toBe(4);
    remainder(v(0x4100, 0x8000_0001, 0), one, false, F, o);
    expect(premOut.partial).toBe(true);
  });

  it("FPREM/FPREM1 returning the dividend unchanged give a pseudo-denormal dividend its normal encoding (exponent 1), as the host does", () => {
    const pseudo = v(0x0000, 0x84ac_ac86, 0xb6b8_a718); // exponent 0 with the integer bit set
    const big = v(0x4006, 0x8b26_e787, 0x2d1b_e1ec);
    for (const nearest of [false, true]) {
      expect(remainder(pseudo, big, nearest, F, o)).toBe(X_DE);
      expect(fmt(o)).toBe("0001:84acac86b6b8a718");
      expect(premOut.q).toBe(0);
      // x rem +inf = x (SDM "FPREM" table), also normalized
      expect(remainder(v(0x8000, 0x9b8c_8282, 0xf04c_6aec), pinf, nearest, F, o)).toBe(X_DE);
      expect(fmt(o)).toBe("8001:9b8c8282f04c6aec");
    }
    // an ordinary denormal dividend stays as it is; with UE unmasked it is a tiny result: UE, rebiased
    expect(remainder(v(0, 0x0000_1234, 0), big, true, F, o)).toBe(X_DE);
    expect(fmt(o)).toBe("0000:0000123400000000");
    expect(remainder(v(0x8000, 0x4772_fff2, 0x8912_8534), big, false, F & ~0x10, o)).toBe(X_DE | X_UE);
    expect(fmt(o)).toBe("e000:8ee5ffe512250a68"); // as the host gives it
  });

  it("FSCALE's massive overflow and underflow with OE/UE unmasked store a signed infinity or zero (SDM 8.5.4, 8.5.5)", () => {
    const x = v(0xc007, 0xc14d_5000, 0); // -386.6
    const n = v(0x4011, 0xcdee_1572, 0x6742_4892); // 421,...: far beyond the rebias range
    for (const rc of [0x000, 0x400, 0x800, 0xc00]) {
      expect(scale(x, n, 0x0340 | rc, o)).toBe(X_OE | X_PE | X_C1);
      expect(fmt(o)).toBe("ffff:8000000000000000");
      expect(scale(x, v(0xc011, 0xcdee_1572, 0x6742_4892), 0x0340 | rc, o)).toBe(X_UE | X_PE);
      expect(fmt(o)).toBe("8000:0000000000000000");
    }
    // within the rebias range the exponent is rebiased as for the other instructions
    expect(scale(x, v(0x400d, 0x8000_0000, 0), 0x0340, o)).toBe(X_OE); // * 2^16384
    expect(o.se).toBe(0xc007 + 0x4000 - 24576);
  });
});
