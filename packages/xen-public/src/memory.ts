// xen/memory.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

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
