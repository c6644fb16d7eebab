// xen/sched.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

/** `struct sched_shutdown` */
export const sched_shutdown = {
  SIZEOF: 4,
  reason: 0, // unsigned int: SHUTDOWN_*
} as const;

/** `struct sched_poll` */
export const sched_poll = {
  SIZEOF: 24,
  ports: 0, // XEN_GUEST_HANDLE(evtchn_port_t)
  nr_ports: 8, // unsigned int
  timeout: 16, // uint64_t: absolute system time, ns; 0 = none
} as const;

/** `struct sched_remote_shutdown` */
export const sched_remote_shutdown = {
  SIZEOF: 8,
  domain_id: 0, // domid_t
  reason: 4, // unsigned int: SHUTDOWN_*
} as const;

/** `struct sched_watchdog` */
export const sched_watchdog = {
  SIZEOF: 8,
  id: 0, // uint32_t
  timeout: 4, // uint32_t
} as const;
