// xen/event_channel.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

/** `struct evtchn_alloc_unbound` */
export const evtchn_alloc_unbound = {
  SIZEOF: 8,
  dom: 0, // domid_t: IN
  remote_dom: 2, // domid_t: IN
  port: 4, // evtchn_port_t: OUT
} as const;

/** `struct evtchn_bind_interdomain` */
export const evtchn_bind_interdomain = {
  SIZEOF: 12,
  remote_dom: 0, // domid_t: IN
  remote_port: 4, // evtchn_port_t: IN
  local_port: 8, // evtchn_port_t: OUT
} as const;

/** `struct evtchn_bind_virq` */
export const evtchn_bind_virq = {
  SIZEOF: 12,
  virq: 0, // uint32_t: IN
  vcpu: 4, // uint32_t: IN
  port: 8, // evtchn_port_t: OUT
} as const;

/** `struct evtchn_bind_pirq` */
export const evtchn_bind_pirq = {
  SIZEOF: 12,
  pirq: 0, // uint32_t: IN
  flags: 4, // uint32_t: IN, BIND_PIRQ__WILL_SHARE
  port: 8, // evtchn_port_t: OUT
} as const;

/** `struct evtchn_bind_ipi` */
export const evtchn_bind_ipi = {
  SIZEOF: 8,
  vcpu: 0, // uint32_t: IN
  port: 4, // evtchn_port_t: OUT
} as const;

/** `struct evtchn_close` */
export const evtchn_close = {
  SIZEOF: 4,
  port: 0, // evtchn_port_t: IN
} as const;

/** `struct evtchn_send` */
export const evtchn_send = {
  SIZEOF: 4,
  port: 0, // evtchn_port_t: IN
} as const;

/** `struct evtchn_status` */
export const evtchn_status = {
  SIZEOF: 24,
  dom: 0, // domid_t: IN
  port: 4, // evtchn_port_t: IN
  status: 8, // uint32_t: OUT, EVTCHNSTAT_*
  vcpu: 12, // uint32_t: OUT
  u: 16, // union
  "u.unbound.dom": 16, // domid_t: EVTCHNSTAT_unbound
  "u.interdomain.dom": 16, // domid_t: EVTCHNSTAT_interdomain
  "u.interdomain.port": 20, // evtchn_port_t: EVTCHNSTAT_interdomain
  "u.pirq": 16, // uint32_t: EVTCHNSTAT_pirq
  "u.virq": 16, // uint32_t: EVTCHNSTAT_virq
} as const;

/** `struct evtchn_bind_vcpu` */
export const evtchn_bind_vcpu = {
  SIZEOF: 8,
  port: 0, // evtchn_port_t: IN
  vcpu: 4, // uint32_t: IN
} as const;

/** `struct evtchn_unmask` */
export const evtchn_unmask = {
  SIZEOF: 4,
  port: 0, // evtchn_port_t: IN
} as const;

/** `struct evtchn_reset` */
export const evtchn_reset = {
  SIZEOF: 2,
  dom: 0, // domid_t: IN
} as const;

/** `struct evtchn_init_control` */
export const evtchn_init_control = {
  SIZEOF: 24,
  control_gfn: 0, // uint64_t: IN
  offset: 8, // uint32_t: IN
  vcpu: 12, // uint32_t: IN
  link_bits: 16, // uint8_t: OUT
  _pad: 17, // uint8_t[7]
} as const;

/** `struct evtchn_expand_array` */
export const evtchn_expand_array = {
  SIZEOF: 8,
  array_gfn: 0, // uint64_t: IN
} as const;

/** `struct evtchn_set_priority` */
export const evtchn_set_priority = {
  SIZEOF: 8,
  port: 0, // evtchn_port_t: IN
  priority: 4, // uint32_t: IN
} as const;

/** `struct evtchn_op` */
export const evtchn_op = {
  SIZEOF: 28,
  cmd: 0, // uint32_t: EVTCHNOP_*
  u: 4, // union of the op structs
} as const;

/** `struct evtchn_fifo_control_block` */
export const evtchn_fifo_control_block = {
  SIZEOF: 72,
  ready: 0, // uint32_t
  _rsvd: 4, // uint32_t
  head: 8, // uint32_t[EVTCHN_FIFO_MAX_QUEUES]
} as const;
