// xen/grant_table.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

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
