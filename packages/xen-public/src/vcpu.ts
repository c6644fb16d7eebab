// xen/vcpu.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

/** `struct vcpu_runstate_info` */
export const vcpu_runstate_info = {
  SIZEOF: 48,
  state: 0, // int: RUNSTATE_*
  state_entry_time: 8, // uint64_t: ns, XEN_RUNSTATE_UPDATE in bit 63
  time: 16, // uint64_t[4]: ns in each RUNSTATE_*
} as const;

/** `struct vcpu_register_runstate_memory_area` */
export const vcpu_register_runstate_memory_area = {
  SIZEOF: 8,
  addr: 0, // union
  "addr.h": 0, // XEN_GUEST_HANDLE(vcpu_runstate_info_t)
  "addr.v": 0, // struct vcpu_runstate_info *
  "addr.p": 0, // uint64_t
} as const;

/** `struct vcpu_set_periodic_timer` */
export const vcpu_set_periodic_timer = {
  SIZEOF: 8,
  period_ns: 0, // uint64_t
} as const;

/** `struct vcpu_set_singleshot_timer` */
export const vcpu_set_singleshot_timer = {
  SIZEOF: 16,
  timeout_abs_ns: 0, // uint64_t: absolute system time
  flags: 8, // uint32_t: VCPU_SSHOTTMR_*
} as const;

/** `struct vcpu_register_vcpu_info` */
export const vcpu_register_vcpu_info = {
  SIZEOF: 16,
  mfn: 0, // uint64_t: gfn for HVM
  offset: 8, // uint32_t: in the frame
  rsvd: 12, // uint32_t: must be 0
} as const;

/** `struct vcpu_register_time_memory_area` */
export const vcpu_register_time_memory_area = {
  SIZEOF: 8,
  addr: 0, // union
  "addr.h": 0, // XEN_GUEST_HANDLE(vcpu_time_info_t)
  "addr.v": 0, // struct vcpu_time_info *
  "addr.p": 0, // uint64_t
} as const;
