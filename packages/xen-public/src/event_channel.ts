// xen/event_channel.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

import { readU64, writeU64 } from "./internal/dataview.js";
import { EVTCHNSTAT_interdomain, EVTCHNSTAT_pirq, EVTCHNSTAT_unbound, EVTCHNSTAT_virq } from "./constants.js";

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
// ---------------------------------------------------------------------------------------------
// Codecs: read_<struct>(view, offset) returns a plain object with the C field names;
// write_<struct>(view, offset, value) stores one. The view must hold SIZEOF bytes from offset
// (a shorter one throws RangeError: a vtlab bug, since callers copy guest memory first).

export interface evtchn_alloc_unbound_t { dom: number; remote_dom: number; port: number }
export function read_evtchn_alloc_unbound(v: DataView, o: number): evtchn_alloc_unbound_t {
  const L = evtchn_alloc_unbound;
  return { dom: v.getUint16(o + L.dom, true), remote_dom: v.getUint16(o + L.remote_dom, true), port: v.getUint32(o + L.port, true) };
}
export function write_evtchn_alloc_unbound(v: DataView, o: number, s: evtchn_alloc_unbound_t): void {
  const L = evtchn_alloc_unbound;
  v.setUint16(o + L.dom, s.dom, true);
  v.setUint16(o + L.remote_dom, s.remote_dom, true);
  v.setUint32(o + L.port, s.port, true);
}

export interface evtchn_bind_interdomain_t { remote_dom: number; remote_port: number; local_port: number }
export function read_evtchn_bind_interdomain(v: DataView, o: number): evtchn_bind_interdomain_t {
  const L = evtchn_bind_interdomain;
  return {
    remote_dom: v.getUint16(o + L.remote_dom, true),
    remote_port: v.getUint32(o + L.remote_port, true),
    local_port: v.getUint32(o + L.local_port, true),
  };
}
export function write_evtchn_bind_interdomain(v: DataView, o: number, s: evtchn_bind_interdomain_t): void {
  const L = evtchn_bind_interdomain;
  v.setUint16(o + L.remote_dom, s.remote_dom, true);
  v.setUint32(o + L.remote_port, s.remote_port, true);
  v.setUint32(o + L.local_port, s.local_port, true);
}

export interface evtchn_bind_virq_t { virq: number; vcpu: number; port: number }
export function read_evtchn_bind_virq(v: DataView, o: number): evtchn_bind_virq_t {
  const L = evtchn_bind_virq;
  return { virq: v.getUint32(o + L.virq, true), vcpu: v.getUint32(o + L.vcpu, true), port: v.getUint32(o + L.port, true) };
}
export function write_evtchn_bind_virq(v: DataView, o: number, s: evtchn_bind_virq_t): void {
  const L = evtchn_bind_virq;
  v.setUint32(o + L.virq, s.virq, true);
  v.setUint32(o + L.vcpu, s.vcpu, true);
  v.setUint32(o + L.port, s.port, true);
}

export interface evtchn_bind_pirq_t { pirq: number; flags: number; port: number }
export function read_evtchn_bind_pirq(v: DataView, o: number): evtchn_bind_pirq_t {
  const L = evtchn_bind_pirq;
  return { pirq: v.getUint32(o + L.pirq, true), flags: v.getUint32(o + L.flags, true), port: v.getUint32(o + L.port, true) };
}
export function write_evtchn_bind_pirq(v: DataView, o: number, s: evtchn_bind_pirq_t): void {
  const L = evtchn_bind_pirq;
  v.setUint32(o + L.pirq, s.pirq, true);
  v.setUint32(o + L.flags, s.flags, true);
  v.setUint32(o + L.port, s.port, true);
}

export interface evtchn_bind_ipi_t { vcpu: number; port: number }
export function read_evtchn_bind_ipi(v: DataView, o: number): evtchn_bind_ipi_t {
  return { vcpu: v.getUint32(o + evtchn_bind_ipi.vcpu, true), port: v.getUint32(o + evtchn_bind_ipi.port, true) };
}
export function write_evtchn_bind_ipi(v: DataView, o: number, s: evtchn_bind_ipi_t): void {
  v.setUint32(o + evtchn_bind_ipi.vcpu, s.vcpu, true);
  v.setUint32(o + evtchn_bind_ipi.port, s.port, true);
}

/** The one-port ops: evtchn_close, evtchn_send, evtchn_unmask (all `{ evtchn_port_t port; }`). */
export interface evtchn_port_op_t { port: number }
export type evtchn_close_t = evtchn_port_op_t;
export type evtchn_send_t = evtchn_port_op_t;
export type evtchn_unmask_t = evtchn_port_op_t;
export function read_evtchn_close(v: DataView, o: number): evtchn_close_t {
  return { port: v.getUint32(o + evtchn_close.port, true) };
}
export function write_evtchn_close(v: DataView, o: number, s: evtchn_close_t): void {
  v.setUint32(o + evtchn_close.port, s.port, true);
}
export function read_evtchn_send(v: DataView, o: number): evtchn_send_t {
  return { port: v.getUint32(o + evtchn_send.port, true) };
}
export function write_evtchn_send(v: DataView, o: number, s: evtchn_send_t): void {
  v.setUint32(o + evtchn_send.port, s.port, true);
}
export function read_evtchn_unmask(v: DataView, o: number): evtchn_unmask_t {
  return { port: v.getUint32(o + evtchn_unmask.port, true) };
}
export function write_evtchn_unmask(v: DataView, o: number, s: evtchn_unmask_t): void {
  v.setUint32(o + evtchn_unmask.port, s.port, true);
}

/**
 * `evtchn_status.u`, decoded by `status` as Xen fills it: EVTCHNSTAT_unbound -> unbound,
 * EVTCHNSTAT_interdomain -> interdomain, EVTCHNSTAT_pirq -> pirq, EVTCHNSTAT_virq -> virq;
 * closed and ipi carry nothing.
 */
export type evtchn_status_u =
  | { unbound: { dom: number } }
  | { interdomain: { dom: number; port: number } }
  | { pirq: number }
  | { virq: number }
  | Record<string, never>;
export interface evtchn_status_t { dom: number; port: number; status: number; vcpu: number; u: evtchn_status_u }
export function read_evtchn_status(v: DataView, o: number): evtchn_status_t {
  const L = evtchn_status;
  const status = v.getUint32(o + L.status, true);
  let u: evtchn_status_u = {};
  if (status === EVTCHNSTAT_unbound) u = { unbound: { dom: v.getUint16(o + L["u.unbound.dom"], true) } };
  else if (status === EVTCHNSTAT_interdomain) {
    u = { interdomain: { dom: v.getUint16(o + L["u.interdomain.dom"], true), port: v.getUint32(o + L["u.interdomain.port"], true) } };
  } else if (status === EVTCHNSTAT_pirq) u = { pirq: v.getUint32(o + L["u.pirq"], true) };
  else if (status === EVTCHNSTAT_virq) u = { virq: v.getUint32(o + L["u.virq"], true) };
  return { dom: v.getUint16(o + L.dom, true), port: v.getUint32(o + L.port, true), status, vcpu: v.getUint32(o + L.vcpu, true), u };
}
/** Writes every byte of the struct: the union is zeroed before its member is stored. */
export function write_evtchn_status(v: DataView, o: number, s: evtchn_status_t): void {
  const L = evtchn_status;
  v.setUint32(o + L.dom, 0, true); // dom and its padding
  v.setUint16(o + L.dom, s.dom, true);
  v.setUint32(o + L.port, s.port, true);
  v.setUint32(o + L.status, s.status, true);
  v.setUint32(o + L.vcpu, s.vcpu, true);
  for (let i = L.u; i < L.SIZEOF; i += 4) v.setUint32(o + i, 0, true);
  const u = s.u;
  if ("unbound" in u) v.setUint16(o + L["u.unbound.dom"], u.unbound.dom, true);
  else if ("interdomain" in u) {
    v.setUint16(o + L["u.interdomain.dom"], u.interdomain.dom, true);
    v.setUint32(o + L["u.interdomain.port"], u.interdomain.port, true);
  } else if ("pirq" in u) v.setUint32(o + L["u.pirq"], u.pirq, true);
  else if ("virq" in u) v.setUint32(o + L["u.virq"], u.virq, true);
}

export interface evtchn_bind_vcpu_t { port: number; vcpu: number }
export function read_evtchn_bind_vcpu(v: DataView, o: number): evtchn_bind_vcpu_t {
  return { port: v.getUint32(o + evtchn_bind_vcpu.port, true), vcpu: v.getUint32(o + evtchn_bind_vcpu.vcpu, true) };
}
export function write_evtchn_bind_vcpu(v: DataView, o: number, s: evtchn_bind_vcpu_t): void {
  v.setUint32(o + evtchn_bind_vcpu.port, s.port, true);
  v.setUint32(o + evtchn_bind_vcpu.vcpu, s.vcpu, true);
}

export interface evtchn_reset_t { dom: number }
export function read_evtchn_reset(v: DataView, o: number): evtchn_reset_t {
  return { dom: v.getUint16(o + evtchn_reset.dom, true) };
}
export function write_evtchn_reset(v: DataView, o: number, s: evtchn_reset_t): void {
  v.setUint16(o + evtchn_reset.dom, s.dom, true);
}

/** `control_gfn` as a number (exact below 2^53; any larger value is no valid gfn anyway). */
export interface evtchn_init_control_t { control_gfn: number; offset: number; vcpu: number; link_bits: number }
export function read_evtchn_init_control(v: DataView, o: number): evtchn_init_control_t {
  const L = evtchn_init_control;
  return {
    control_gfn: readU64(v, o + L.control_gfn),
    offset: v.getUint32(o + L.offset, true),
    vcpu: v.getUint32(o + L.vcpu, true),
    link_bits: v.getUint8(o + L.link_bits),
  };
}
export function write_evtchn_init_control(v: DataView, o: number, s: evtchn_init_control_t): void {
  const L = evtchn_init_control;
  writeU64(v, o + L.control_gfn, s.control_gfn);
  v.setUint32(o + L.offset, s.offset, true);
  v.setUint32(o + L.vcpu, s.vcpu, true);
  v.setUint8(o + L.link_bits, s.link_bits);
  for (let i = L._pad; i < L.SIZEOF; i++) v.setUint8(o + i, 0);
}

/** `array_gfn` as a number (exact below 2^53). */
export interface evtchn_expand_array_t { array_gfn: number }
export function read_evtchn_expand_array(v: DataView, o: number): evtchn_expand_array_t {
  return { array_gfn: readU64(v, o + evtchn_expand_array.array_gfn) };
}
export function write_evtchn_expand_array(v: DataView, o: number, s: evtchn_expand_array_t): void {
  writeU64(v, o + evtchn_expand_array.array_gfn, s.array_gfn);
}

export interface evtchn_set_priority_t { port: number; priority: number }
export function read_evtchn_set_priority(v: DataView, o: number): evtchn_set_priority_t {
  return { port: v.getUint32(o + evtchn_set_priority.port, true), priority: v.getUint32(o + evtchn_set_priority.priority, true) };
}
export function write_evtchn_set_priority(v: DataView, o: number, s: evtchn_set_priority_t): void {
  v.setUint32(o + evtchn_set_priority.port, s.port, true);
  v.setUint32(o + evtchn_set_priority.priority, s.priority, true);
}
