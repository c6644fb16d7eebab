// xen/io/ring.h as functions over a DataView of the shared page.
//
// A shared ring ("sring") is a 64-byte header (req_prod, req_event, rsp_prod, rsp_event, a
// private union, padding) followed by a power-of-two number of slots, each a union of one
// request and one response. The frontend keeps a front_ring (its private req_prod_pvt and
// rsp_cons), the backend a back_ring (rsp_prod_pvt and req_cons). Indices are free-running
// 32-bit counters: they wrap at 2^32 and a slot is `index & (size - 1)`; every difference below
// is taken modulo 2^32 (`>>> 0`), as C's unsigned RING_IDX arithmetic does.
//
// The shared header is written by the other side, which may be hostile: read a producer index
// once, check it with RING_REQUEST_PROD_OVERFLOW / RING_RESPONSE_PROD_OVERFLOW, never consume
// past RING_REQUEST_CONS_OVERFLOW, and copy each slot with RING_COPY_REQUEST before decoding it.
//
// Simpler than C: JavaScript on one thread needs no xen_wmb()/xen_mb(); the functions still
// store in the order the macros do (slots, then the producer index, then the event check).

import { blkif_sring } from "./blkif.js";

/** A ring's slot type: its sring layout (for the offset of `ring`) and its entry union's size. */
export interface ring_layout {
  /** The offset of the first slot in the shared page (64 for every DEFINE_RING_TYPES ring). */
  readonly ring: number;
}
export interface ring_entry_layout {
  readonly SIZEOF: number;
}

/** The generic sring header: every DEFINE_RING_TYPES ring has blkif_sring's (the test checks). */
const H = blkif_sring;

/** `__RD32(x)`: x rounded down to a power of two (0 stays 0). */
export function RD32(x: number): number {
  if (!(x >= 1)) return 0;
  const v = x >= 0xffff_ffff ? 0xffff_ffff : x >>> 0;
  return 2 ** (31 - Math.clz32(v));
}

/**
 * `__CONST_RING_SIZE(name, size)` (and `__RING_SIZE`, its run-time twin): the number of slots of
 * a ring whose shared area is `size` bytes, rounded down to a power of two, e.g.
 * CONST_RING_SIZE(blkif_sring, blkif_sring_entry, 4096) = 32.
 */
export function CONST_RING_SIZE(sring: ring_layout, entry: ring_entry_layout, size: number): number {
  return RD32(Math.floor((size - sring.ring) / entry.SIZEOF));
}

/** `struct <name>_front_ring`, plus where its sring lives and how large a slot is. */
export interface front_ring {
  req_prod_pvt: number;
  rsp_cons: number;
  nr_ents: number;
  /** The shared page (or any view holding the sring). */
  sring: DataView;
  /** The byte offset of the sring in `sring`. */
  sring_offset: number;
  /** sizeof(union <name>_sring_entry). */
  entry_size: number;
}

/** `struct <name>_back_ring`, plus where its sring lives and how large a slot is. */
export interface back_ring {
  rsp_prod_pvt: number;
  req_cons: number;
  nr_ents: number;
  sring: DataView;
  sring_offset: number;
  entry_size: number;
}

type ring = front_ring | back_ring;

// The shared header, read or written once per call.
export function sring_req_prod(r: ring): number {
  return r.sring.getUint32(r.sring_offset + H.req_prod, true);
}
export function sring_req_event(r: ring): number {
  return r.sring.getUint32(r.sring_offset + H.req_event, true);
}
export function sring_rsp_prod(r: ring): number {
  return r.sring.getUint32(r.sring_offset + H.rsp_prod, true);
}
export function sring_rsp_event(r: ring): number {
  return r.sring.getUint32(r.sring_offset + H.rsp_event, true);
}
export function set_sring_req_event(r: ring, value: number): void {
  r.sring.setUint32(r.sring_offset + H.req_event, value >>> 0, true);
}
export function set_sring_rsp_event(r: ring, value: number): void {
  r.sring.setUint32(r.sring_offset + H.rsp_event, value >>> 0, true);
}

/** `SHARED_RING_INIT(s)`: producers 0, events 1, the private union and padding zero. */
export function SHARED_RING_INIT(view: DataView, offset = 0): void {
  view.setUint32(offset + H.req_prod, 0, true);
  view.setUint32(offset + H.rsp_prod, 0, true);
  view.setUint32(offset + H.req_event, 1, true);
  view.setUint32(offset + H.rsp_event, 1, true);
  for (let i = H.pvt; i < H.ring; i++) view.setUint8(offset + i, 0);
}

/** `FRONT_RING_ATTACH(r, s, i, size)`: a front ring over an sring whose indices are at `i`. */
export function FRONT_RING_ATTACH(view: DataView, offset: number, i: number, size: number, entry: ring_entry_layout): front_ring {
  return {
    req_prod_pvt: i >>> 0,
    rsp_cons: i >>> 0,
    nr_ents: CONST_RING_SIZE(H, entry, size),
    sring: view,
    sring_offset: offset,
    entry_size: entry.SIZEOF,
  };
}
/** `FRONT_RING_INIT(r, s, size)`. */
export function FRONT_RING_INIT(view: DataView, offset: number, size: number, entry: ring_entry_layout): front_ring {
  return FRONT_RING_ATTACH(view, offset, 0, size, entry);
}
/** `XEN_FRONT_RING_INIT(r, s, size)`: SHARED_RING_INIT then FRONT_RING_INIT. */
export function XEN_FRONT_RING_INIT(view: DataView, offset: number, size: number, entry: ring_entry_layout): front_ring {
  SHARED_RING_INIT(view, offset);
  return FRONT_RING_INIT(view, offset, size, entry);
}
/** `BACK_RING_ATTACH(r, s, i, size)`. */
export function BACK_RING_ATTACH(view: DataView, offset: number, i: number, size: number, entry: ring_entry_layout): back_ring {
  return {
    rsp_prod_pvt: i >>> 0,
    req_cons: i >>> 0,
    nr_ents: CONST_RING_SIZE(H, entry, size),
    sring: view,
    sring_offset: offset,
    entry_size: entry.SIZEOF,
  };
}
/** `BACK_RING_INIT(r, s, size)`. */
export function BACK_RING_INIT(view: DataView, offset: number, size: number, entry: ring_entry_layout): back_ring {
  return BACK_RING_ATTACH(view, offset, 0, size, entry);
}

/** `RING_SIZE(r)`: the number of slots. */
export function RING_SIZE(r: ring): number {
  return r.nr_ents;
}
/** `RING_FREE_REQUESTS(r)`: slots the frontend may still fill. */
export function RING_FREE_REQUESTS(r: front_ring): number {
  return (r.nr_ents - ((r.req_prod_pvt - r.rsp_cons) >>> 0)) >>> 0;
}
/** `RING_FULL(r)`. */
export function RING_FULL(r: front_ring): boolean {
  return RING_FREE_REQUESTS(r) === 0;
}
/** `XEN_RING_NR_UNCONSUMED_RESPONSES(r)`. */
export function XEN_RING_NR_UNCONSUMED_RESPONSES(r: front_ring): number {
  return (sring_rsp_prod(r) - r.rsp_cons) >>> 0;
}
/**
 * `XEN_RING_NR_UNCONSUMED_REQUESTS(r)`: the requests the frontend published, but never more than
 * the slots that have no response outstanding (so a hostile req_prod cannot inflate it).
 */
export function XEN_RING_NR_UNCONSUMED_REQUESTS(r: back_ring): number {
  const req = (sring_req_prod(r) - r.req_cons) >>> 0;
  const rsp = (r.nr_ents - ((r.req_cons - r.rsp_prod_pvt) >>> 0)) >>> 0;
  return req < rsp ? req : rsp;
}
/** `RING_HAS_UNCONSUMED_RESPONSES(r)`: the count (C's default, not XEN_RING_HAS_UNCONSUMED_IS_BOOL). */
export function RING_HAS_UNCONSUMED_RESPONSES(r: front_ring): number {
  return XEN_RING_NR_UNCONSUMED_RESPONSES(r);
}
/** `RING_HAS_UNCONSUMED_REQUESTS(r)`: the count. */
export function RING_HAS_UNCONSUMED_REQUESTS(r: back_ring): number {
  return XEN_RING_NR_UNCONSUMED_REQUESTS(r);
}

/** `RING_GET_REQUEST(r, idx)` / `RING_GET_RESPONSE`: the byte offset of the slot in r.sring. */
export function RING_GET_REQUEST(r: ring, idx: number): number {
  return r.sring_offset + H.ring + ((idx >>> 0) & (r.nr_ents - 1)) * r.entry_size;
}
export function RING_GET_RESPONSE(r: ring, idx: number): number {
  return RING_GET_REQUEST(r, idx);
}

/**
 * `RING_COPY_REQUEST(r, idx, req)`: copies the slot into a private buffer (`into`, or a new one
 * of entry_size bytes) and returns a view of the copy at offset 0, so the other side changing
 * the slot afterwards cannot change what is validated and used.
 */
export function RING_COPY_REQUEST(r: ring, idx: number, into?: Uint8Array): DataView {
  const at = RING_GET_REQUEST(r, idx);
  const copy = into ?? new Uint8Array(r.entry_size);
  if (copy.length < r.entry_size) throw new RangeError(`RING_COPY: buffer of ${copy.length} bytes`);
  const src = r.sring;
  for (let i = 0; i < r.entry_size; i++) copy[i] = src.getUint8(at + i);
  return new DataView(copy.buffer, copy.byteOffset, r.entry_size);
}
/** `RING_COPY_RESPONSE(r, idx, rsp)`. */
export function RING_COPY_RESPONSE(r: ring, idx: number, into?: Uint8Array): DataView {
  return RING_COPY_REQUEST(r, idx, into);
}

/** `RING_REQUEST_CONS_OVERFLOW(r, cons)`: consuming `cons` would overrun the responses not yet produced. */
export function RING_REQUEST_CONS_OVERFLOW(r: back_ring, cons: number): boolean {
  return ((cons - r.rsp_prod_pvt) >>> 0) >= r.nr_ents;
}
/** `RING_REQUEST_PROD_OVERFLOW(r, prod)`: a req_prod further ahead than the ring holds (hostile). */
export function RING_REQUEST_PROD_OVERFLOW(r: back_ring, prod: number): boolean {
  return ((prod - r.rsp_prod_pvt) >>> 0) > r.nr_ents;
}
/** `RING_RESPONSE_PROD_OVERFLOW(r, prod)`: a rsp_prod further ahead than the requests sent (hostile). */
export function RING_RESPONSE_PROD_OVERFLOW(r: front_ring, prod: number): boolean {
  return ((prod - r.rsp_cons) >>> 0) > r.nr_ents;
}

/** `RING_PUSH_REQUESTS(r)`: publishes req_prod_pvt. */
export function RING_PUSH_REQUESTS(r: front_ring): void {
  r.sring.setUint32(r.sring_offset + H.req_prod, r.req_prod_pvt >>> 0, true);
}
/** `RING_PUSH_RESPONSES(r)`: publishes rsp_prod_pvt. */
export function RING_PUSH_RESPONSES(r: back_ring): void {
  r.sring.setUint32(r.sring_offset + H.rsp_prod, r.rsp_prod_pvt >>> 0, true);
}

/** True when `event` lies in (old, new] modulo 2^32: the rule both CHECK_NOTIFY macros use. */
export function ring_event_crossed(oldIdx: number, newIdx: number, event: number): boolean {
  return ((newIdx - event) >>> 0) < ((newIdx - oldIdx) >>> 0);
}

/**
 * `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(r, notify)`: publishes req_prod_pvt and returns whether
 * the backend asked to be notified (its req_event lies in the pushed range).
 */
export function RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(r: front_ring): boolean {
  const oldIdx = sring_req_prod(r);
  const newIdx = r.req_prod_pvt >>> 0;
  r.sring.setUint32(r.sring_offset + H.req_prod, newIdx, true);
  return ring_event_crossed(oldIdx, newIdx, sring_req_event(r));
}
/** `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(r, notify)`. */
export function RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(r: back_ring): boolean {
  const oldIdx = sring_rsp_prod(r);
  const newIdx = r.rsp_prod_pvt >>> 0;
  r.sring.setUint32(r.sring_offset + H.rsp_prod, newIdx, true);
  return ring_event_crossed(oldIdx, newIdx, sring_rsp_event(r));
}

/**
 * `RING_FINAL_CHECK_FOR_REQUESTS(r, work_to_do)`: before the backend sleeps. If nothing is
 * pending it sets req_event = req_cons + 1 (notify me on the next request) and checks again,
 * closing the race with a request pushed in between. Returns the unconsumed count.
 */
export function RING_FINAL_CHECK_FOR_REQUESTS(r: back_ring): number {
  const work = RING_HAS_UNCONSUMED_REQUESTS(r);
  if (work) return work;
  set_sring_req_event(r, r.req_cons + 1);
  return RING_HAS_UNCONSUMED_REQUESTS(r);
}
/** `RING_FINAL_CHECK_FOR_RESPONSES(r, work_to_do)`: the frontend's twin (rsp_event = rsp_cons + 1). */
export function RING_FINAL_CHECK_FOR_RESPONSES(r: front_ring): number {
  const work = RING_HAS_UNCONSUMED_RESPONSES(r);
  if (work) return work;
  set_sring_rsp_event(r, r.rsp_cons + 1);
  return RING_HAS_UNCONSUMED_RESPONSES(r);
}
