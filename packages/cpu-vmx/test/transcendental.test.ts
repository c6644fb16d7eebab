/**
 * The double-double transcendentals (src/exec/transcendental.ts): their constants against an
 * exact BigInt computation, the x87's 66-bit pi in the argument reduction, the tiny-argument
 * rounding and a denormal result rounded once. The host-CPU differential test
 * (differential.test.ts, "x87 transcendentals") compares them with the hardware within 1 ulp.
 */
import { describe, expect, it } from "vitest";
import { F80, X_C1, X_PE, X_UE } from "../src/exec/f80.js";
import { LN2_H, LN2_L, LOG2E_H, LOG2E_L, PI2_H, PI2_L, PI_H, PI_L, atan2, exp2m1, trig, ylog2x } from "../src/exec/transcendental.js";

const BITS = 300n;
const ONE = 1n << BITS;

function atanInv(x: bigint): bigint {
  let sum = 0n;
  let term = ONE / x;
  for (let n = 1n, sign = 1n; term !== 0n; n += 2n, sign = -sign, term /= x * x) sum += (sign * term) / n;
  return sum;
}
function atanhInv(x: bigint): bigint {
  let sum = 0n;
  let term = ONE / x;
  for (let n = 1n; term !== 0n; n += 2n, term /= x * x) sum += term / n;
  return sum;
}
/** A double's exact value scaled by 2^BITS (a BigInt). */
function exact(d: number): bigint {
  if (d === 0) return 0n;
  const e = Math.floor(Math.log2(Math.abs(d))) - 60;
  const m = BigInt(Math.round(d / 2 ** e)); // exact: 53 bits fit
  return e >= 0 ? (m << BigInt(e)) << BITS : (m << BITS) >> BigInt(-e);
}
const PI = 4n * (4n * atanInv(5n) - atanInv(239n));
const LN2 = 2n * atanhInv(3n);

const fmt = (x: F80) => `${x.se.toString(16).padStart(4, "0")}:${x.hi.toString(16).padStart(8, "0")}${x.lo.toString(16).padStart(8, "0")}`;
const RN = 0x037f;
const RD = 0x077f;
const RU = 0x0b7f;
const RZ = 0x0f7f;

describe("transcendental constants and rounding", () => {
  it("pi, pi/2, ln 2 and log2(e) as double-doubles are within 2^-104 of their values", () => {
    const check = (h: number, l: number, v: bigint) => {
      const d = exact(h) + exact(l) - v;
      expect((d < 0n ? -d : d) <= v >> 104n, `${h} + ${l}`).toBe(true);
      expect((exact(h) - v < 0n ? v - exact(h) : exact(h) - v) > v >> 104n).toBe(true); // the low part matters
    };
    check(PI_H, PI_L, PI);
    check(PI2_H, PI2_L, PI / 2n);
    check(LN2_H, LN2_L, LN2);
    check(LOG2E_H, LOG2E_L, (ONE * ONE) / LN2);
  });

  it("FSIN reduces by the x87's 66-bit pi (SDM 8.3.8): sin of the 64-bit pi is -2^-64, not -(pi64 - pi)", () => {
    const pi64 = new F80().set(0x4000, 0xc90f_daa2, 0x2168_c235);
    const o = new F80();
    const c = new F80();
    expect(trig(pi64, 0, RN, o, c) & X_PE).toBe(X_PE);
    expect(fmt(o)).toBe("bfbf:8000000000000000");
    // cos(pi64) = -1 (rounded), and the 1 + 1/2 quadrant mapping for 3 pi/2
    trig(pi64, 1, RN, o, c);
    expect(fmt(c)).toBe("bfff:8000000000000000");
  });

  it("tiny arguments: sin x rounds as just below |x| by RC; cos x as just below 1", () => {
    const x = new F80().set(0x3f00, 0x8000_0000, 0x0000_0001);
    const o = new F80();
    const c = new F80();
    expect(trig(x, 0, RN, o, c)).toBe(X_PE | X_C1);
    expect(fmt(o)).toBe("3f00:8000000000000001");
    expect(trig(x, 0, RZ, o, c)).toBe(X_PE);
    expect(fmt(o)).toBe("3f00:8000000000000000");
    expect(trig(x, 0, RU, o, c)).toBe(X_PE | X_C1);
    expect(fmt(o)).toBe("3f00:8000000000000001");
    trig(x, 1, RD, o, c);
    expect(fmt(c)).toBe("3ffe:ffffffffffffffff");
    trig(x, 1, RN, o, c);
    expect(fmt(c)).toBe("3fff:8000000000000000");
  });

  it("a denormal result is rounded once, with UE (F2XM1 of a denormal, as the host gives it)", () => {
    const x = new F80().set(0x0000, 0x2eb0_a8cc, 0xce87_d618);
    const o = new F80();
    const flags = exp2m1(x, RU, o);
    expect(fmt(o)).toBe("0000:205cf3bfd7e13886");
    expect(flags & (X_UE | X_PE)).toBe(X_UE | X_PE);
  });

  it("FPATAN's exact multiples of pi/4 are rounded from the double-double (pi: ...C235 to nearest, ...C234 toward zero)", () => {
    const o = new F80();
    const zero = new F80().set(0, 0, 0);
    const negOne = new F80().set(0xbfff, 0x8000_0000, 0);
    atan2(zero, 1, negOne, 0, RN, o);
    expect(fmt(o)).toBe("4000:c90fdaa22168c235");
    atan2(zero, 1, negOne, 0, RZ, o);
    expect(fmt(o)).toBe("4000:c90fdaa22168c234");
  });

  it("FYL2X: y log2(x) exact where the logarithm is an integer (8 log2(2^-20) = -160)", () => {
    const o = new F80();
    const y = new F80().set(0x4002, 0x8000_0000, 0);
    const x = new F80().set(0x3fff - 20, 0x8000_0000, 0);
    ylog2x(y, x, RN, o);
    expect(fmt(o)).toBe("c006:a000000000000000");
  });
});
