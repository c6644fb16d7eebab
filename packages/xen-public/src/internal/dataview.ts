// Little-endian field access shared by the codecs (x86 is little-endian; every Xen x86 ABI
// structure is too). No BigInt: a 64-bit field is two 32-bit halves.

const TWO32 = 0x1_0000_0000;

/**
 * A uint64_t as a number: exact below 2^53 (Number.MAX_SAFE_INTEGER); above, the nearest double,
 * which is still >= 2^53, so a range check such as `gfn < maxGfn` rejects it correctly. Use
 * the `_lo`/`_hi` halves where all 64 bits matter.
 */
export function readU64(view: DataView, offset: number): number {
  return view.getUint32(offset + 4, true) * TWO32 + view.getUint32(offset, true);
}

/**
 * Writes a non-negative integer below 2^64 as a uint64_t. Every integer double in that range
 * splits exactly into halves. Anything else is a vtlab bug and throws RangeError.
 */
export function writeU64(view: DataView, offset: number, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** 64) {
    throw new RangeError(`uint64_t out of range: ${value}`);
  }
  view.setUint32(offset, value % TWO32, true);
  view.setUint32(offset + 4, Math.floor(value / TWO32), true);
}

/** Reads a NUL-terminated char[size] (Latin-1 bytes; the rest after the first NUL is ignored). */
export function readCString(view: DataView, offset: number, size: number): string {
  let s = "";
  for (let i = 0; i < size; i++) {
    const c = view.getUint8(offset + i);
    if (c === 0) break;
    s += String.fromCharCode(c);
  }
  return s;
}

/**
 * Writes `value` into char[size]: its low bytes (Latin-1), truncated to size - 1 so a NUL always
 * ends it, and the rest zero-filled (no stale bytes reach the other side).
 */
export function writeCString(view: DataView, offset: number, size: number, value: string): void {
  const n = Math.min(value.length, size - 1);
  for (let i = 0; i < n; i++) view.setUint8(offset + i, value.charCodeAt(i) & 0xff);
  for (let i = n; i < size; i++) view.setUint8(offset + i, 0);
}

/** Copies `length` bytes out of the view (a private copy, never a window onto shared memory). */
export function readBytes(view: DataView, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = view.getUint8(offset + i);
  return out;
}

/** Writes `length` bytes of `from` (missing bytes of a shorter source are written as zero). */
export function writeBytes(view: DataView, offset: number, length: number, from: ArrayLike<number>): void {
  for (let i = 0; i < length; i++) view.setUint8(offset + i, (from[i] ?? 0) & 0xff);
}
