/**
 * 64-bit values as JavaScript numbers: the pure helpers every part of the CPU shares (a leaf
 * module: it imports nothing, so the interpreter's handlers and the block compiler can import
 * it without importing the `Cpu` class).
 */

export const TWO_32 = 0x1_0000_0000;
export const TWO_47 = 2 ** 47;
export const TWO_56 = 2 ** 56;

/** Reduce a signed number to the signed 64-bit range (exact below 2^53 in magnitude). */
export function wrap64(v: number): number {
  if (v >= -(2 ** 63) && v < 2 ** 63) return v;
  const m = 2 ** 64;
  let r = v % m;
  if (r >= 2 ** 63) r -= m;
  if (r < -(2 ** 63)) r += m;
  return r;
}

/** `lin + n` as a linear address: wrapped to 64 bits in 64-bit mode, else to 32 bits. */
export function wrapAdd(lin: number, n: number, mode64: boolean): number {
  return mode64 ? wrap64(lin + n) : (lin + n) >>> 0;
}

/** A 64-bit value from halves as a signed number (exact for canonical addresses). */
export function toSigned64(lo: number, hi: number): number {
  return (hi | 0) * TWO_32 + (lo >>> 0);
}
