// xen/hvm/hvm_op.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

/** `struct xen_hvm_param` */
export const xen_hvm_param = {
  SIZEOF: 16,
  domid: 0, // domid_t: IN
  pad: 2, // uint16_t
  index: 4, // uint32_t: IN, HVM_PARAM_*
  value: 8, // uint64_t: IN/OUT
} as const;

/** `struct xen_hvm_evtchn_upcall_vector` */
export const xen_hvm_evtchn_upcall_vector = {
  SIZEOF: 8,
  vcpu: 0, // uint32_t
  vector: 4, // uint8_t
} as const;

/** `struct xen_hvm_get_time` */
export const xen_hvm_get_time = {
  SIZEOF: 8,
  now: 0, // uint64_t: OUT
} as const;

/** `struct xen_hvm_pagetable_dying` */
export const xen_hvm_pagetable_dying = {
  SIZEOF: 16,
  domid: 0, // domid_t
  pad: 2, // uint16_t[3]
  gpa: 8, // uint64_t
} as const;
