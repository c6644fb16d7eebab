// The byte rings of io/xs_wire.h and io/console.h: a power-of-two char array with free-running
// 32-bit producer and consumer indices (MASK_XENSTORE_IDX / MASK_XENCONS_IDX: idx & (size - 1)).
// The other side may be hostile: each index is read once, and indices further apart than the
// ring holds are answered with -XEN_EIO (Linux's xenbus check_indexes) with nothing touched.

import { XEN_EIO } from "../constants.js";

export interface ByteRing {
  /** Offset of the char array in the view. */
  data: number;
  /** Its size, a power of two. */
  size: number;
  /** Offsets of the consumer and producer indices. */
  cons: number;
  prod: number;
}

/** Producer side: writes as many of `bytes` as fit, then moves prod. Returns the count or -XEN_EIO. */
export function byteRingWrite(v: DataView, o: number, r: ByteRing, bytes: Uint8Array): number {
  const cons = v.getUint32(o + r.cons, true);
  const prod = v.getUint32(o + r.prod, true);
  const used = (prod - cons) >>> 0;
  if (used > r.size) return -XEN_EIO;
  const n = Math.min(r.size - used, bytes.length);
  for (let i = 0; i < n; i++) v.setUint8(o + r.data + ((prod + i) & (r.size - 1)), bytes[i] ?? 0);
  v.setUint32(o + r.prod, (prod + n) >>> 0, true);
  return n;
}

/** Consumer side: copies out up to `max` bytes, then moves cons. Returns the copy or -XEN_EIO. */
export function byteRingRead(v: DataView, o: number, r: ByteRing, max: number): Uint8Array | number {
  const cons = v.getUint32(o + r.cons, true);
  const prod = v.getUint32(o + r.prod, true);
  const avail = (prod - cons) >>> 0;
  if (avail > r.size) return -XEN_EIO;
  const n = Math.max(0, Math.min(avail, max));
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = v.getUint8(o + r.data + ((cons + i) & (r.size - 1)));
  v.setUint32(o + r.cons, (cons + n) >>> 0, true);
  return out;
}

/** Bytes waiting (prod - cons), or -XEN_EIO when the indices are corrupt. */
export function byteRingPending(v: DataView, o: number, r: ByteRing): number {
  const used = (v.getUint32(o + r.prod, true) - v.getUint32(o + r.cons, true)) >>> 0;
  return used > r.size ? -XEN_EIO : used;
}
