// xen/xen.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

/** `struct vcpu_time_info` */
export const vcpu_time_info = {
  SIZEOF: 32,
  version: 0, // uint32_t
  pad0: 4, // uint32_t
  tsc_timestamp: 8, // uint64_t
  system_time: 16, // uint64_t: ns since boot
  tsc_to_system_mul: 24, // uint32_t
  tsc_shift: 28, // int8_t
  flags: 29, // uint8_t: XEN_PVCLOCK_*
  pad1: 30, // uint8_t[2]
} as const;

/** `struct vcpu_info` */
export const vcpu_info = {
  SIZEOF: 64,
  evtchn_upcall_pending: 0, // uint8_t
  evtchn_upcall_mask: 1, // uint8_t
  evtchn_pending_sel: 8, // xen_ulong_t
  arch: 16, // struct arch_vcpu_info
  time: 32, // struct vcpu_time_info
} as const;

/** `struct shared_info` */
export const shared_info = {
  SIZEOF: 3136,
  vcpu_info: 0, // struct vcpu_info[XEN_LEGACY_MAX_VCPUS]
  evtchn_pending: 2048, // xen_ulong_t[64]
  evtchn_mask: 2560, // xen_ulong_t[64]
  wc_version: 3072, // uint32_t
  wc_sec: 3076, // uint32_t
  wc_nsec: 3080, // uint32_t
  wc_sec_hi: 3084, // uint32_t
  arch: 3088, // struct arch_shared_info
} as const;

/** `struct mmu_update` */
export const mmu_update = {
  SIZEOF: 16,
  ptr: 0, // uint64_t
  val: 8, // uint64_t
} as const;

/** `struct multicall_entry` */
export const multicall_entry = {
  SIZEOF: 64,
  op: 0, // xen_ulong_t
  result: 8, // xen_ulong_t
  args: 16, // xen_ulong_t[6]
} as const;
