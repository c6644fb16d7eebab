// xen/memory.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

import { readU64, writeU64 } from "./internal/dataview.js";

/** `struct xen_memory_reservation` */
export const xen_memory_reservation = {
  SIZEOF: 32,
  extent_start: 0, // XEN_GUEST_HANDLE(xen_pfn_t)
  nr_extents: 8, // xen_ulong_t
  extent_order: 16, // unsigned int
  mem_flags: 20, // unsigned int: XENMEMF_*
  domid: 24, // domid_t
} as const;

/** `struct xen_memory_exchange` */
export const xen_memory_exchange = {
  SIZEOF: 72,
  in: 0, // struct xen_memory_reservation
  out: 32, // struct xen_memory_reservation
  nr_exchanged: 64, // xen_ulong_t
} as const;

/** `struct xen_add_to_physmap` */
export const xen_add_to_physmap = {
  SIZEOF: 24,
  domid: 0, // domid_t
  size: 2, // uint16_t: XENMAPSPACE_gmfn_range only
  space: 4, // unsigned int: XENMAPSPACE_*
  idx: 8, // xen_ulong_t
  gpfn: 16, // xen_pfn_t
} as const;

/** `struct xen_add_to_physmap_batch` */
export const xen_add_to_physmap_batch = {
  SIZEOF: 32,
  domid: 0, // domid_t
  space: 2, // uint16_t
  size: 4, // uint16_t
  u: 6, // union xen_add_to_physmap_batch_extra
  "u.foreign_domid": 6, // domid_t
  "u.res0": 6, // uint16_t
  idxs: 8, // XEN_GUEST_HANDLE(xen_ulong_t)
  gpfns: 16, // XEN_GUEST_HANDLE(xen_pfn_t)
  errs: 24, // XEN_GUEST_HANDLE(int)
} as const;

/** `struct xen_remove_from_physmap` */
export const xen_remove_from_physmap = {
  SIZEOF: 16,
  domid: 0, // domid_t
  gpfn: 8, // xen_pfn_t
} as const;

/** `struct xen_memory_map` */
export const xen_memory_map = {
  SIZEOF: 16,
  nr_entries: 0, // unsigned int: IN/OUT
  buffer: 8, // XEN_GUEST_HANDLE(void): e820 entries
} as const;

/** `struct xen_foreign_memory_map` */
export const xen_foreign_memory_map = {
  SIZEOF: 24,
  domid: 0, // domid_t
  map: 8, // struct xen_memory_map
} as const;

/** `struct xen_memory_domain` (XENMEM_current_reservation, _maximum_reservation, _maximum_gpfn; the same layout for 32-bit guests) */
export const xen_memory_domain = {
  SIZEOF: 2,
  domid: 0, // domid_t: IN, may be DOMID_SELF
} as const;

// ---------------------------------------------------------------------------------------------
// Codecs (see event_channel.ts for the convention).
// Guest handles, frame numbers and counts of xen_ulong_t are numbers: exact below 2^53, and any
// larger value is no valid address or count anyway.

/** `extent_start`: the guest-virtual address in the XEN_GUEST_HANDLE(xen_pfn_t). */
export interface xen_memory_reservation_t {
  extent_start: number; nr_extents: number; extent_order: number; mem_flags: number; domid: number;
}
export function read_xen_memory_reservation(v: DataView, o: number): xen_memory_reservation_t {
  const L = xen_memory_reservation;
  return {
    extent_start: readU64(v, o + L.extent_start),
    nr_extents: readU64(v, o + L.nr_extents),
    extent_order: v.getUint32(o + L.extent_order, true),
    mem_flags: v.getUint32(o + L.mem_flags, true),
    domid: v.getUint16(o + L.domid, true),
  };
}
export function write_xen_memory_reservation(v: DataView, o: number, s: xen_memory_reservation_t): void {
  const L = xen_memory_reservation;
  writeU64(v, o + L.extent_start, s.extent_start);
  writeU64(v, o + L.nr_extents, s.nr_extents);
  v.setUint32(o + L.extent_order, s.extent_order, true);
  v.setUint32(o + L.mem_flags, s.mem_flags, true);
  v.setUint16(o + L.domid, s.domid, true);
}

/** `idx` keeps XENMAPIDX_grant_table_status (bit 31) exactly: it is below 2^53. */
export interface xen_add_to_physmap_t { domid: number; size: number; space: number; idx: number; gpfn: number }
export function read_xen_add_to_physmap(v: DataView, o: number): xen_add_to_physmap_t {
  const L = xen_add_to_physmap;
  return {
    domid: v.getUint16(o + L.domid, true),
    size: v.getUint16(o + L.size, true),
    space: v.getUint32(o + L.space, true),
    idx: readU64(v, o + L.idx),
    gpfn: readU64(v, o + L.gpfn),
  };
}
export function write_xen_add_to_physmap(v: DataView, o: number, s: xen_add_to_physmap_t): void {
  const L = xen_add_to_physmap;
  v.setUint16(o + L.domid, s.domid, true);
  v.setUint16(o + L.size, s.size, true);
  v.setUint32(o + L.space, s.space, true);
  writeU64(v, o + L.idx, s.idx);
  writeU64(v, o + L.gpfn, s.gpfn);
}

/** `u` is the union's foreign_domid (XENMAPSPACE_gmfn_foreign) / res0; idxs, gpfns, errs are handles. */
export interface xen_add_to_physmap_batch_t {
  domid: number; space: number; size: number; u: number; idxs: number; gpfns: number; errs: number;
}
export function read_xen_add_to_physmap_batch(v: DataView, o: number): xen_add_to_physmap_batch_t {
  const L = xen_add_to_physmap_batch;
  return {
    domid: v.getUint16(o + L.domid, true),
    space: v.getUint16(o + L.space, true),
    size: v.getUint16(o + L.size, true),
    u: v.getUint16(o + L.u, true),
    idxs: readU64(v, o + L.idxs),
    gpfns: readU64(v, o + L.gpfns),
    errs: readU64(v, o + L.errs),
  };
}
export function write_xen_add_to_physmap_batch(v: DataView, o: number, s: xen_add_to_physmap_batch_t): void {
  const L = xen_add_to_physmap_batch;
  v.setUint16(o + L.domid, s.domid, true);
  v.setUint16(o + L.space, s.space, true);
  v.setUint16(o + L.size, s.size, true);
  v.setUint16(o + L.u, s.u, true);
  writeU64(v, o + L.idxs, s.idxs);
  writeU64(v, o + L.gpfns, s.gpfns);
  writeU64(v, o + L.errs, s.errs);
}

export interface xen_remove_from_physmap_t { domid: number; gpfn: number }
export function read_xen_remove_from_physmap(v: DataView, o: number): xen_remove_from_physmap_t {
  return { domid: v.getUint16(o + xen_remove_from_physmap.domid, true), gpfn: readU64(v, o + xen_remove_from_physmap.gpfn) };
}
export function write_xen_remove_from_physmap(v: DataView, o: number, s: xen_remove_from_physmap_t): void {
  v.setUint16(o + xen_remove_from_physmap.domid, s.domid, true);
  writeU64(v, o + xen_remove_from_physmap.gpfn, s.gpfn);
}

/** `buffer`: the guest-virtual address of the e820-style entries (XEN_GUEST_HANDLE(void)). */
export interface xen_memory_map_t { nr_entries: number; buffer: number }
export function read_xen_memory_map(v: DataView, o: number): xen_memory_map_t {
  return { nr_entries: v.getUint32(o + xen_memory_map.nr_entries, true), buffer: readU64(v, o + xen_memory_map.buffer) };
}
export function write_xen_memory_map(v: DataView, o: number, s: xen_memory_map_t): void {
  v.setUint32(o + xen_memory_map.nr_entries, s.nr_entries, true);
  writeU64(v, o + xen_memory_map.buffer, s.buffer);
}
