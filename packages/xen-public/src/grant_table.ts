// xen/grant_table.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

import { readU64, writeU64 } from "./internal/dataview.js";
import { GNTCOPY_dest_gref, GNTCOPY_source_gref, GTF_permit_access, GTF_sub_page, GTF_transitive, GTF_type_mask } from "./constants.js";

/** `struct grant_entry_v1` */
export const grant_entry_v1 = {
  SIZEOF: 8,
  flags: 0, // uint16_t: GTF_*
  domid: 2, // domid_t
  frame: 4, // uint32_t
} as const;

/** `struct grant_entry_header` */
export const grant_entry_header = {
  SIZEOF: 4,
  flags: 0, // uint16_t: GTF_*
  domid: 2, // domid_t
} as const;

/** `union grant_entry_v2` */
export const grant_entry_v2 = {
  SIZEOF: 16,
  hdr: 0, // grant_entry_header_t
  full_page: 0, // struct
  "full_page.hdr": 0, // grant_entry_header_t
  "full_page.pad0": 4, // uint32_t
  "full_page.frame": 8, // uint64_t
  sub_page: 0, // struct
  "sub_page.hdr": 0, // grant_entry_header_t
  "sub_page.page_off": 4, // uint16_t
  "sub_page.length": 6, // uint16_t
  "sub_page.frame": 8, // uint64_t
  transitive: 0, // struct
  "transitive.hdr": 0, // grant_entry_header_t
  "transitive.trans_domid": 4, // domid_t
  "transitive.pad0": 6, // uint16_t
  "transitive.gref": 8, // grant_ref_t
  __spacer: 0, // uint32_t[4]
} as const;

/** `struct gnttab_map_grant_ref` */
export const gnttab_map_grant_ref = {
  SIZEOF: 32,
  host_addr: 0, // uint64_t: IN
  flags: 8, // uint32_t: IN, GNTMAP_*
  ref: 12, // grant_ref_t: IN
  dom: 16, // domid_t: IN
  status: 18, // int16_t: OUT, GNTST_*
  handle: 20, // grant_handle_t: OUT
  dev_bus_addr: 24, // uint64_t: OUT
} as const;

/** `struct gnttab_unmap_grant_ref` */
export const gnttab_unmap_grant_ref = {
  SIZEOF: 24,
  host_addr: 0, // uint64_t: IN
  dev_bus_addr: 8, // uint64_t: IN
  handle: 16, // grant_handle_t: IN
  status: 20, // int16_t: OUT, GNTST_*
} as const;

/** `struct gnttab_setup_table` */
export const gnttab_setup_table = {
  SIZEOF: 24,
  dom: 0, // domid_t: IN
  nr_frames: 4, // uint32_t: IN
  status: 8, // int16_t: OUT, GNTST_*
  frame_list: 16, // XEN_GUEST_HANDLE(xen_pfn_t): OUT
} as const;

/** `struct gnttab_dump_table` */
export const gnttab_dump_table = {
  SIZEOF: 4,
  dom: 0, // domid_t: IN
  status: 2, // int16_t: OUT, GNTST_*
} as const;

/** `struct gnttab_transfer` */
export const gnttab_transfer = {
  SIZEOF: 24,
  mfn: 0, // xen_pfn_t: IN
  domid: 8, // domid_t: IN
  ref: 12, // grant_ref_t: IN
  status: 16, // int16_t: OUT, GNTST_*
} as const;

/** `struct gnttab_copy_ptr` */
export const gnttab_copy_ptr = {
  SIZEOF: 16,
  u: 0, // union
  "u.ref": 0, // grant_ref_t: with GNTCOPY_*_gref
  "u.gmfn": 0, // xen_pfn_t: without
  domid: 8, // domid_t
  offset: 10, // uint16_t
} as const;

/** `struct gnttab_copy` */
export const gnttab_copy = {
  SIZEOF: 40,
  source: 0, // struct gnttab_copy_ptr: IN
  dest: 16, // struct gnttab_copy_ptr: IN
  len: 32, // uint16_t: IN
  flags: 34, // uint16_t: IN, GNTCOPY_*
  status: 36, // int16_t: OUT, GNTST_*
} as const;

/** `struct gnttab_query_size` */
export const gnttab_query_size = {
  SIZEOF: 16,
  dom: 0, // domid_t: IN
  nr_frames: 4, // uint32_t: OUT
  max_nr_frames: 8, // uint32_t: OUT
  status: 12, // int16_t: OUT, GNTST_*
} as const;

/** `struct gnttab_unmap_and_replace` */
export const gnttab_unmap_and_replace = {
  SIZEOF: 24,
  host_addr: 0, // uint64_t: IN
  new_addr: 8, // uint64_t: IN
  handle: 16, // grant_handle_t: IN
  status: 20, // int16_t: OUT, GNTST_*
} as const;

/** `struct gnttab_set_version` */
export const gnttab_set_version = {
  SIZEOF: 4,
  version: 0, // uint32_t: IN/OUT
} as const;

/** `struct gnttab_get_status_frames` */
export const gnttab_get_status_frames = {
  SIZEOF: 16,
  nr_frames: 0, // uint32_t: IN
  dom: 4, // domid_t: IN
  status: 6, // int16_t: OUT, GNTST_*
  frame_list: 8, // XEN_GUEST_HANDLE(uint64_t): OUT
} as const;

/** `struct gnttab_get_version` */
export const gnttab_get_version = {
  SIZEOF: 8,
  dom: 0, // domid_t: IN
  pad: 2, // uint16_t
  version: 4, // uint32_t: OUT
} as const;

/** `struct gnttab_swap_grant_ref` */
export const gnttab_swap_grant_ref = {
  SIZEOF: 12,
  ref_a: 0, // grant_ref_t: IN
  ref_b: 4, // grant_ref_t: IN
  status: 8, // int16_t: OUT, GNTST_*
} as const;

/** `struct gnttab_cache_flush` */
export const gnttab_cache_flush = {
  SIZEOF: 16,
  a: 0, // union
  "a.dev_bus_addr": 0, // uint64_t
  "a.ref": 0, // grant_ref_t
  offset: 8, // uint16_t
  length: 10, // uint16_t
  op: 12, // uint32_t: GNTTAB_CACHE_*
} as const;

// ---------------------------------------------------------------------------------------------
// Codecs (see event_channel.ts for the convention). Guest addresses and frame numbers
// (host_addr, dev_bus_addr, frame_list handles, gmfn, v2 frame) are numbers: exact below 2^53,
// and any larger value is no valid address anyway.

export interface grant_entry_v1_t { flags: number; domid: number; frame: number }
export function read_grant_entry_v1(v: DataView, o: number): grant_entry_v1_t {
  const L = grant_entry_v1;
  return { flags: v.getUint16(o + L.flags, true), domid: v.getUint16(o + L.domid, true), frame: v.getUint32(o + L.frame, true) };
}
export function write_grant_entry_v1(v: DataView, o: number, s: grant_entry_v1_t): void {
  const L = grant_entry_v1;
  v.setUint16(o + L.flags, s.flags, true);
  v.setUint16(o + L.domid, s.domid, true);
  v.setUint32(o + L.frame, s.frame, true);
}

export interface grant_entry_header_t { flags: number; domid: number }
export function read_grant_entry_header(v: DataView, o: number): grant_entry_header_t {
  return { flags: v.getUint16(o + grant_entry_header.flags, true), domid: v.getUint16(o + grant_entry_header.domid, true) };
}
export function write_grant_entry_header(v: DataView, o: number, s: grant_entry_header_t): void {
  v.setUint16(o + grant_entry_header.flags, s.flags, true);
  v.setUint16(o + grant_entry_header.domid, s.domid, true);
}

/**
 * `union grant_entry_v2`, decoded by the header's type as Xen reads it: GTF_transitive ->
 * transitive; GTF_permit_access with GTF_sub_page -> sub_page; anything else -> full_page.
 */
export type grant_entry_v2_t = { hdr: grant_entry_header_t } & (
  | { full_page: { frame: number } }
  | { sub_page: { page_off: number; length: number; frame: number } }
  | { transitive: { trans_domid: number; gref: number } }
);
export function read_grant_entry_v2(v: DataView, o: number): grant_entry_v2_t {
  const L = grant_entry_v2;
  const hdr = read_grant_entry_header(v, o + L.hdr);
  const type = hdr.flags & GTF_type_mask;
  if (type === GTF_transitive) {
    return { hdr, transitive: { trans_domid: v.getUint16(o + L["transitive.trans_domid"], true), gref: v.getUint32(o + L["transitive.gref"], true) } };
  }
  if (type === GTF_permit_access && (hdr.flags & GTF_sub_page) !== 0) {
    return {
      hdr,
      sub_page: {
        page_off: v.getUint16(o + L["sub_page.page_off"], true),
        length: v.getUint16(o + L["sub_page.length"], true),
        frame: readU64(v, o + L["sub_page.frame"]),
      },
    };
  }
  return { hdr, full_page: { frame: readU64(v, o + L["full_page.frame"]) } };
}
/** Writes all 16 bytes: the member present, the rest of the union zero. */
export function write_grant_entry_v2(v: DataView, o: number, s: grant_entry_v2_t): void {
  const L = grant_entry_v2;
  for (let i = 0; i < L.SIZEOF; i += 4) v.setUint32(o + i, 0, true);
  write_grant_entry_header(v, o + L.hdr, s.hdr);
  if ("transitive" in s) {
    v.setUint16(o + L["transitive.trans_domid"], s.transitive.trans_domid, true);
    v.setUint32(o + L["transitive.gref"], s.transitive.gref, true);
  } else if ("sub_page" in s) {
    v.setUint16(o + L["sub_page.page_off"], s.sub_page.page_off, true);
    v.setUint16(o + L["sub_page.length"], s.sub_page.length, true);
    writeU64(v, o + L["sub_page.frame"], s.sub_page.frame);
  } else {
    writeU64(v, o + L["full_page.frame"], s.full_page.frame);
  }
}

export interface gnttab_map_grant_ref_t {
  host_addr: number; flags: number; ref: number; dom: number; status: number; handle: number; dev_bus_addr: number;
}
export function read_gnttab_map_grant_ref(v: DataView, o: number): gnttab_map_grant_ref_t {
  const L = gnttab_map_grant_ref;
  return {
    host_addr: readU64(v, o + L.host_addr),
    flags: v.getUint32(o + L.flags, true),
    ref: v.getUint32(o + L.ref, true),
    dom: v.getUint16(o + L.dom, true),
    status: v.getInt16(o + L.status, true),
    handle: v.getUint32(o + L.handle, true),
    dev_bus_addr: readU64(v, o + L.dev_bus_addr),
  };
}
export function write_gnttab_map_grant_ref(v: DataView, o: number, s: gnttab_map_grant_ref_t): void {
  const L = gnttab_map_grant_ref;
  writeU64(v, o + L.host_addr, s.host_addr);
  v.setUint32(o + L.flags, s.flags, true);
  v.setUint32(o + L.ref, s.ref, true);
  v.setUint16(o + L.dom, s.dom, true);
  v.setInt16(o + L.status, s.status, true);
  v.setUint32(o + L.handle, s.handle, true);
  writeU64(v, o + L.dev_bus_addr, s.dev_bus_addr);
}

export interface gnttab_unmap_grant_ref_t { host_addr: number; dev_bus_addr: number; handle: number; status: number }
export function read_gnttab_unmap_grant_ref(v: DataView, o: number): gnttab_unmap_grant_ref_t {
  const L = gnttab_unmap_grant_ref;
  return {
    host_addr: readU64(v, o + L.host_addr),
    dev_bus_addr: readU64(v, o + L.dev_bus_addr),
    handle: v.getUint32(o + L.handle, true),
    status: v.getInt16(o + L.status, true),
  };
}
export function write_gnttab_unmap_grant_ref(v: DataView, o: number, s: gnttab_unmap_grant_ref_t): void {
  const L = gnttab_unmap_grant_ref;
  writeU64(v, o + L.host_addr, s.host_addr);
  writeU64(v, o + L.dev_bus_addr, s.dev_bus_addr);
  v.setUint32(o + L.handle, s.handle, true);
  v.setInt16(o + L.status, s.status, true);
}

/** `frame_list`: the guest-virtual address in the XEN_GUEST_HANDLE (its one pointer field). */
export interface gnttab_setup_table_t { dom: number; nr_frames: number; status: number; frame_list: number }
export function read_gnttab_setup_table(v: DataView, o: number): gnttab_setup_table_t {
  const L = gnttab_setup_table;
  return {
    dom: v.getUint16(o + L.dom, true),
    nr_frames: v.getUint32(o + L.nr_frames, true),
    status: v.getInt16(o + L.status, true),
    frame_list: readU64(v, o + L.frame_list),
  };
}
export function write_gnttab_setup_table(v: DataView, o: number, s: gnttab_setup_table_t): void {
  const L = gnttab_setup_table;
  v.setUint16(o + L.dom, s.dom, true);
  v.setUint32(o + L.nr_frames, s.nr_frames, true);
  v.setInt16(o + L.status, s.status, true);
  writeU64(v, o + L.frame_list, s.frame_list);
}

export interface gnttab_dump_table_t { dom: number; status: number }
export function read_gnttab_dump_table(v: DataView, o: number): gnttab_dump_table_t {
  return { dom: v.getUint16(o + gnttab_dump_table.dom, true), status: v.getInt16(o + gnttab_dump_table.status, true) };
}
export function write_gnttab_dump_table(v: DataView, o: number, s: gnttab_dump_table_t): void {
  v.setUint16(o + gnttab_dump_table.dom, s.dom, true);
  v.setInt16(o + gnttab_dump_table.status, s.status, true);
}

export interface gnttab_transfer_t { mfn: number; domid: number; ref: number; status: number }
export function read_gnttab_transfer(v: DataView, o: number): gnttab_transfer_t {
  const L = gnttab_transfer;
  return { mfn: readU64(v, o + L.mfn), domid: v.getUint16(o + L.domid, true), ref: v.getUint32(o + L.ref, true), status: v.getInt16(o + L.status, true) };
}
export function write_gnttab_transfer(v: DataView, o: number, s: gnttab_transfer_t): void {
  const L = gnttab_transfer;
  writeU64(v, o + L.mfn, s.mfn);
  v.setUint16(o + L.domid, s.domid, true);
  v.setUint32(o + L.ref, s.ref, true);
  v.setInt16(o + L.status, s.status, true);
}

/**
 * `struct gnttab_copy_ptr`. Its union `u` holds a grant reference (when the copy's flags have
 * GNTCOPY_source_gref / GNTCOPY_dest_gref for this side: `u.ref`, the low 32 bits) or a frame
 * of the caller's own (`u.gmfn`, all 64 bits). read_gnttab_copy decodes each side by its flag.
 */
export interface gnttab_copy_ptr_t { u: { ref: number } | { gmfn: number }; domid: number; offset: number }
export function read_gnttab_copy_ptr(v: DataView, o: number, isGref: boolean): gnttab_copy_ptr_t {
  const L = gnttab_copy_ptr;
  const u = isGref ? { ref: v.getUint32(o + L["u.ref"], true) } : { gmfn: readU64(v, o + L["u.gmfn"]) };
  return { u, domid: v.getUint16(o + L.domid, true), offset: v.getUint16(o + L.offset, true) };
}
export function write_gnttab_copy_ptr(v: DataView, o: number, s: gnttab_copy_ptr_t): void {
  const L = gnttab_copy_ptr;
  if ("ref" in s.u) {
    writeU64(v, o + L.u, 0);
    v.setUint32(o + L["u.ref"], s.u.ref, true);
  } else writeU64(v, o + L["u.gmfn"], s.u.gmfn);
  v.setUint16(o + L.domid, s.domid, true);
  v.setUint16(o + L.offset, s.offset, true);
}

export interface gnttab_copy_t { source: gnttab_copy_ptr_t; dest: gnttab_copy_ptr_t; len: number; flags: number; status: number }
export function read_gnttab_copy(v: DataView, o: number): gnttab_copy_t {
  const L = gnttab_copy;
  const flags = v.getUint16(o + L.flags, true);
  return {
    source: read_gnttab_copy_ptr(v, o + L.source, (flags & GNTCOPY_source_gref) !== 0),
    dest: read_gnttab_copy_ptr(v, o + L.dest, (flags & GNTCOPY_dest_gref) !== 0),
    len: v.getUint16(o + L.len, true),
    flags,
    status: v.getInt16(o + L.status, true),
  };
}
export function write_gnttab_copy(v: DataView, o: number, s: gnttab_copy_t): void {
  const L = gnttab_copy;
  write_gnttab_copy_ptr(v, o + L.source, s.source);
  write_gnttab_copy_ptr(v, o + L.dest, s.dest);
  v.setUint16(o + L.len, s.len, true);
  v.setUint16(o + L.flags, s.flags, true);
  v.setInt16(o + L.status, s.status, true);
}

export interface gnttab_query_size_t { dom: number; nr_frames: number; max_nr_frames: number; status: number }
export function read_gnttab_query_size(v: DataView, o: number): gnttab_query_size_t {
  const L = gnttab_query_size;
  return {
    dom: v.getUint16(o + L.dom, true),
    nr_frames: v.getUint32(o + L.nr_frames, true),
    max_nr_frames: v.getUint32(o + L.max_nr_frames, true),
    status: v.getInt16(o + L.status, true),
  };
}
export function write_gnttab_query_size(v: DataView, o: number, s: gnttab_query_size_t): void {
  const L = gnttab_query_size;
  v.setUint16(o + L.dom, s.dom, true);
  v.setUint32(o + L.nr_frames, s.nr_frames, true);
  v.setUint32(o + L.max_nr_frames, s.max_nr_frames, true);
  v.setInt16(o + L.status, s.status, true);
}

export interface gnttab_unmap_and_replace_t { host_addr: number; new_addr: number; handle: number; status: number }
export function read_gnttab_unmap_and_replace(v: DataView, o: number): gnttab_unmap_and_replace_t {
  const L = gnttab_unmap_and_replace;
  return {
    host_addr: readU64(v, o + L.host_addr),
    new_addr: readU64(v, o + L.new_addr),
    handle: v.getUint32(o + L.handle, true),
    status: v.getInt16(o + L.status, true),
  };
}
export function write_gnttab_unmap_and_replace(v: DataView, o: number, s: gnttab_unmap_and_replace_t): void {
  const L = gnttab_unmap_and_replace;
  writeU64(v, o + L.host_addr, s.host_addr);
  writeU64(v, o + L.new_addr, s.new_addr);
  v.setUint32(o + L.handle, s.handle, true);
  v.setInt16(o + L.status, s.status, true);
}

export interface gnttab_set_version_t { version: number }
export function read_gnttab_set_version(v: DataView, o: number): gnttab_set_version_t {
  return { version: v.getUint32(o + gnttab_set_version.version, true) };
}
export function write_gnttab_set_version(v: DataView, o: number, s: gnttab_set_version_t): void {
  v.setUint32(o + gnttab_set_version.version, s.version, true);
}

/** `frame_list`: the guest-virtual address in the XEN_GUEST_HANDLE(uint64_t). */
export interface gnttab_get_status_frames_t { nr_frames: number; dom: number; status: number; frame_list: number }
export function read_gnttab_get_status_frames(v: DataView, o: number): gnttab_get_status_frames_t {
  const L = gnttab_get_status_frames;
  return {
    nr_frames: v.getUint32(o + L.nr_frames, true),
    dom: v.getUint16(o + L.dom, true),
    status: v.getInt16(o + L.status, true),
    frame_list: readU64(v, o + L.frame_list),
  };
}
export function write_gnttab_get_status_frames(v: DataView, o: number, s: gnttab_get_status_frames_t): void {
  const L = gnttab_get_status_frames;
  v.setUint32(o + L.nr_frames, s.nr_frames, true);
  v.setUint16(o + L.dom, s.dom, true);
  v.setInt16(o + L.status, s.status, true);
  writeU64(v, o + L.frame_list, s.frame_list);
}

export interface gnttab_get_version_t { dom: number; pad: number; version: number }
export function read_gnttab_get_version(v: DataView, o: number): gnttab_get_version_t {
  const L = gnttab_get_version;
  return { dom: v.getUint16(o + L.dom, true), pad: v.getUint16(o + L.pad, true), version: v.getUint32(o + L.version, true) };
}
export function write_gnttab_get_version(v: DataView, o: number, s: gnttab_get_version_t): void {
  const L = gnttab_get_version;
  v.setUint16(o + L.dom, s.dom, true);
  v.setUint16(o + L.pad, s.pad, true);
  v.setUint32(o + L.version, s.version, true);
}

export interface gnttab_swap_grant_ref_t { ref_a: number; ref_b: number; status: number }
export function read_gnttab_swap_grant_ref(v: DataView, o: number): gnttab_swap_grant_ref_t {
  const L = gnttab_swap_grant_ref;
  return { ref_a: v.getUint32(o + L.ref_a, true), ref_b: v.getUint32(o + L.ref_b, true), status: v.getInt16(o + L.status, true) };
}
export function write_gnttab_swap_grant_ref(v: DataView, o: number, s: gnttab_swap_grant_ref_t): void {
  const L = gnttab_swap_grant_ref;
  v.setUint32(o + L.ref_a, s.ref_a, true);
  v.setUint32(o + L.ref_b, s.ref_b, true);
  v.setInt16(o + L.status, s.status, true);
}
