/**
 * The multiply helpers of exec/muldiv.ts (no BigInt on the hot path) against BigInt arithmetic:
 * 32 x 32 -> 64 high halves, 64 x 64 -> 128 products, the truncated 64-bit product and IMUL's
 * overflow tests, on random operands and on the edge values (0, 1, -1, the sign bits).
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { imul32Overflows, imul64Overflows, mulHiS32, mulHiU32, mulLowHi64, mulS64, mulU64, prod } from "../src/exec/muldiv.js";

const M32 = (1n << 32n) - 1n;
const M64 = (1n << 64n) - 1n;
const M128 = (1n << 128n) - 1n;
const u32 = (x: number) => BigInt(x >>> 0);
const s32 = (x: number) => BigInt(x | 0);
const u64 = (lo: number, hi: number) => (u32(hi) << 32n) | u32(lo);
const s64 = (lo: number, hi: number) => BigInt.asIntN(64, u64(lo, hi));
const prod128 = () => (u64(prod[2]!, prod[3]!) << 64n) | u64(prod[0]!, prod[1]!);

/** Words biased toward the edges (and small values) as well as uniform. */
const word = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  fc.constantFrom(0, 1, -1, 2, -2, 0x7fff_ffff, -0x8000_0000, 0xffff, 0x10000, -0x10000, 0x8000),
  fc.integer({ min: -3, max: 3 }),
);

describe("the multiply helpers agree with BigInt", () => {
  it("32 x 32: high halves (unsigned and signed) and the IMUL overflow test", () => {
    fc.assert(
      fc.property(word, word, (a, b) => {
        const u = u32(a) * u32(b);
        const s = s32(a) * s32(b);
        expect(mulHiU32(a, b)).toBe(Number(BigInt.asIntN(32, u >> 32n)));
        expect(Math.imul(a, b)).toBe(Number(BigInt.asIntN(32, u & M32)));
        expect(mulHiS32(a, b)).toBe(Number(BigInt.asIntN(32, s >> 32n)));
        expect(imul32Overflows(a, b)).toBe(s !== BigInt.asIntN(32, s));
      }),
      { seed: 0x3215, numRuns: 20_000 },
    );
  });

  it("64 x 64 -> 128: unsigned and signed products, the truncated product and the IMUL overflow test", () => {
    fc.assert(
      fc.property(word, word, word, word, (aLo, aHi, bLo, bHi) => {
        mulU64(aLo, aHi, bLo, bHi);
        expect(prod128()).toBe(u64(aLo, aHi) * u64(bLo, bHi));
        const s = s64(aLo, aHi) * s64(bLo, bHi);
        mulS64(aLo, aHi, bLo, bHi);
        expect(prod128()).toBe(s & M128);
        expect(Math.imul(aLo, bLo)).toBe(Number(BigInt.asIntN(32, s & M32)));
        expect(mulLowHi64(aLo, aHi, bLo, bHi)).toBe(Number(BigInt.asIntN(32, (s & M64) >> 32n)));
        expect(imul64Overflows(aLo, aHi, bLo, bHi)).toBe(s !== BigInt.asIntN(64, s));
      }),
      { seed: 0x6415, numRuns: 20_000 },
    );
  });

  it("64 x 64 with operands that fit in 32 bits (IMUL's no-overflow shortcut) still multiplies exactly", () => {
    fc.assert(
      fc.property(word, word, (a, b) => {
        const s = s32(a) * s32(b);
        expect(imul64Overflows(a, a >> 31, b, b >> 31)).toBe(false);
        mulS64(a, a >> 31, b, b >> 31);
        expect(prod128()).toBe(s & M128);
      }),
      { seed: 0x3264, numRuns: 5_000 },
    );
  });
});
