// xen/sched.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

import { readU64, writeU64 } from "./internal/dataview.js";

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

// ---------------------------------------------------------------------------------------------
// Codecs (see event_channel.ts for the convention).

export interface sched_shutdown_t { reason: number }
export function read_sched_shutdown(v: DataView, o: number): sched_shutdown_t {
  return { reason: v.getUint32(o + sched_shutdown.reason, true) };
}
export function write_sched_shutdown(v: DataView, o: number, s: sched_shutdown_t): void {
  v.setUint32(o + sched_shutdown.reason, s.reason, true);
}

/**
 * `ports`: the guest-virtual address in the XEN_GUEST_HANDLE(evtchn_port_t). `timeout`: absolute
 * system time in ns, a number (exact below 2^53; a larger one is only further in the future).
 */
export interface sched_poll_t { ports: number; nr_ports: number; timeout: number }
export function read_sched_poll(v: DataView, o: number): sched_poll_t {
  const L = sched_poll;
  return { ports: readU64(v, o + L.ports), nr_ports: v.getUint32(o + L.nr_ports, true), timeout: readU64(v, o + L.timeout) };
}
export function write_sched_poll(v: DataView, o: number, s: sched_poll_t): void {
  const L = sched_poll;
  writeU64(v, o + L.ports, s.ports);
  v.setUint32(o + L.nr_ports, s.nr_ports, true);
  writeU64(v, o + L.timeout, s.timeout);
}

export interface sched_remote_shutdown_t { domain_id: number; reason: number }
export function read_sched_remote_shutdown(v: DataView, o: number): sched_remote_shutdown_t {
  return { domain_id: v.getUint16(o + sched_remote_shutdown.domain_id, true), reason: v.getUint32(o + sched_remote_shutdown.reason, true) };
}
export function write_sched_remote_shutdown(v: DataView, o: number, s: sched_remote_shutdown_t): void {
  v.setUint16(o + sched_remote_shutdown.domain_id, s.domain_id, true);
  v.setUint32(o + sched_remote_shutdown.reason, s.reason, true);
}
