// xen/io/xs_wire.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

import { XENSTORE_RING_SIZE } from "../constants.js";
import { byteRingPending, byteRingRead, byteRingWrite, type ByteRing } from "../internal/byte-ring.js";

/** `struct xsd_sockmsg` */
export const xsd_sockmsg = {
  SIZEOF: 16,
  type: 0, // uint32_t: XS_*
  req_id: 4, // uint32_t
  tx_id: 8, // uint32_t
  len: 12, // uint32_t: payload bytes that follow
} as const;

/** `struct xenstore_domain_interface` */
export const xenstore_domain_interface = {
  SIZEOF: 2076,
  req: 0, // char[XENSTORE_RING_SIZE]: requests to xenstored
  rsp: 1024, // char[XENSTORE_RING_SIZE]: replies and watch events
  req_cons: 2048, // XENSTORE_RING_IDX
  req_prod: 2052, // XENSTORE_RING_IDX
  rsp_cons: 2056, // XENSTORE_RING_IDX
  rsp_prod: 2060, // XENSTORE_RING_IDX
  server_features: 2064, // uint32_t: XENSTORE_SERVER_FEATURE_*
  connection: 2068, // uint32_t: XENSTORE_CONNECTED/RECONNECT
  error: 2072, // uint32_t: XENSTORE_ERROR_*
} as const;

// ---------------------------------------------------------------------------------------------
// Codecs (see event_channel.ts for the convention).

/** The 16-byte header before every xenstore message payload (at most XENSTORE_PAYLOAD_MAX bytes). */
export interface xsd_sockmsg_t { type: number; req_id: number; tx_id: number; len: number }
export function read_xsd_sockmsg(v: DataView, o: number): xsd_sockmsg_t {
  const L = xsd_sockmsg;
  return { type: v.getUint32(o + L.type, true), req_id: v.getUint32(o + L.req_id, true), tx_id: v.getUint32(o + L.tx_id, true), len: v.getUint32(o + L.len, true) };
}
export function write_xsd_sockmsg(v: DataView, o: number, s: xsd_sockmsg_t): void {
  const L = xsd_sockmsg;
  v.setUint32(o + L.type, s.type, true);
  v.setUint32(o + L.req_id, s.req_id, true);
  v.setUint32(o + L.tx_id, s.tx_id, true);
  v.setUint32(o + L.len, s.len, true);
}

// ---------------------------------------------------------------------------------------------
// The xenstore ring page (struct xenstore_domain_interface): the guest writes requests into
// `req` and reads replies and watch events from `rsp`; xenstored does the opposite. Indices are
// free-running uint32; corrupt ones (further apart than XENSTORE_RING_SIZE) give -XEN_EIO.

/** `MASK_XENSTORE_IDX(idx)`. */
export function MASK_XENSTORE_IDX(idx: number): number {
  return (idx >>> 0) & (XENSTORE_RING_SIZE - 1);
}

const XSI = xenstore_domain_interface;
const XS_REQ: ByteRing = { data: XSI.req, size: XENSTORE_RING_SIZE, cons: XSI.req_cons, prod: XSI.req_prod };
const XS_RSP: ByteRing = { data: XSI.rsp, size: XENSTORE_RING_SIZE, cons: XSI.rsp_cons, prod: XSI.rsp_prod };

/** Which of the two rings: "req" (guest -> xenstored) or "rsp" (xenstored -> guest). */
export type xenstore_ring = "req" | "rsp";

/** Producer side of `ring`: writes what fits of `bytes`, returns the count or -XEN_EIO. */
export function xenstore_ring_write(v: DataView, o: number, ring: xenstore_ring, bytes: Uint8Array): number {
  return byteRingWrite(v, o, ring === "req" ? XS_REQ : XS_RSP, bytes);
}
/** Consumer side of `ring`: up to `max` bytes (a private copy), or -XEN_EIO. */
export function xenstore_ring_read(v: DataView, o: number, ring: xenstore_ring, max: number): Uint8Array | number {
  return byteRingRead(v, o, ring === "req" ? XS_REQ : XS_RSP, max);
}
/** Bytes waiting in `ring`, or -XEN_EIO. */
export function xenstore_ring_pending(v: DataView, o: number, ring: xenstore_ring): number {
  return byteRingPending(v, o, ring === "req" ? XS_REQ : XS_RSP);
}
