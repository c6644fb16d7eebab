// xen/io/console.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

import { byteRingPending, byteRingRead, byteRingWrite, type ByteRing } from "../internal/byte-ring.js";

/** `struct xencons_interface` */
export const xencons_interface = {
  SIZEOF: 3088,
  in: 0, // char[1024]: backend to frontend
  out: 1024, // char[2048]: frontend to backend
  in_cons: 3072, // XENCONS_RING_IDX
  in_prod: 3076, // XENCONS_RING_IDX
  out_cons: 3080, // XENCONS_RING_IDX
  out_prod: 3084, // XENCONS_RING_IDX
} as const;

// ---------------------------------------------------------------------------------------------
// The console ring page (struct xencons_interface): the guest writes to `out` (2048 bytes) and
// reads `in` (1024 bytes); the console backend does the opposite. Indices are free-running
// uint32; corrupt ones (further apart than the ring holds) give -XEN_EIO.

const XCI = xencons_interface;
/** sizeof(intf->in) and sizeof(intf->out), the ring sizes MASK_XENCONS_IDX masks with. */
export const XENCONS_IN_SIZE = XCI.out - XCI.in;
export const XENCONS_OUT_SIZE = XCI.in_cons - XCI.out;

/** `MASK_XENCONS_IDX(idx, ring)`, with the ring's size in bytes. */
export function MASK_XENCONS_IDX(idx: number, ringSize: number): number {
  return (idx >>> 0) & (ringSize - 1);
}

const CONS_IN: ByteRing = { data: XCI.in, size: XENCONS_IN_SIZE, cons: XCI.in_cons, prod: XCI.in_prod };
const CONS_OUT: ByteRing = { data: XCI.out, size: XENCONS_OUT_SIZE, cons: XCI.out_cons, prod: XCI.out_prod };

/** Which ring: "out" (guest -> backend) or "in" (backend -> guest). */
export type xencons_ring = "in" | "out";

/** Producer side of `ring`: writes what fits of `bytes`, returns the count or -XEN_EIO. */
export function xencons_ring_write(v: DataView, o: number, ring: xencons_ring, bytes: Uint8Array): number {
  return byteRingWrite(v, o, ring === "in" ? CONS_IN : CONS_OUT, bytes);
}
/** Consumer side of `ring`: up to `max` bytes (a private copy), or -XEN_EIO. */
export function xencons_ring_read(v: DataView, o: number, ring: xencons_ring, max: number): Uint8Array | number {
  return byteRingRead(v, o, ring === "in" ? CONS_IN : CONS_OUT, max);
}
/** Bytes waiting in `ring`, or -XEN_EIO. */
export function xencons_ring_pending(v: DataView, o: number, ring: xencons_ring): number {
  return byteRingPending(v, o, ring === "in" ? CONS_IN : CONS_OUT);
}
