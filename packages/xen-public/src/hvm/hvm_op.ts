// xen/hvm/hvm_op.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

import { readU64, writeU64 } from "../internal/dataview.js";

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

// ---------------------------------------------------------------------------------------------
// Codecs (see event_channel.ts for the convention).

/**
 * `value` matters in all 64 bits (HVM_PARAM_CALLBACK_IRQ keeps its type in bits 63:56), so it
 * is two halves: value_lo = bits 31:0, value_hi = bits 63:32 (both unsigned).
 */
export interface xen_hvm_param_t { domid: number; pad: number; index: number; value_lo: number; value_hi: number }
export function read_xen_hvm_param(v: DataView, o: number): xen_hvm_param_t {
  const L = xen_hvm_param;
  return {
    domid: v.getUint16(o + L.domid, true),
    pad: v.getUint16(o + L.pad, true),
    index: v.getUint32(o + L.index, true),
    value_lo: v.getUint32(o + L.value, true),
    value_hi: v.getUint32(o + L.value + 4, true),
  };
}
export function write_xen_hvm_param(v: DataView, o: number, s: xen_hvm_param_t): void {
  const L = xen_hvm_param;
  v.setUint16(o + L.domid, s.domid, true);
  v.setUint16(o + L.pad, s.pad, true);
  v.setUint32(o + L.index, s.index, true);
  v.setUint32(o + L.value, s.value_lo, true);
  v.setUint32(o + L.value + 4, s.value_hi, true);
}

export interface xen_hvm_evtchn_upcall_vector_t { vcpu: number; vector: number }
export function read_xen_hvm_evtchn_upcall_vector(v: DataView, o: number): xen_hvm_evtchn_upcall_vector_t {
  return { vcpu: v.getUint32(o + xen_hvm_evtchn_upcall_vector.vcpu, true), vector: v.getUint8(o + xen_hvm_evtchn_upcall_vector.vector) };
}
export function write_xen_hvm_evtchn_upcall_vector(v: DataView, o: number, s: xen_hvm_evtchn_upcall_vector_t): void {
  v.setUint32(o + xen_hvm_evtchn_upcall_vector.vcpu, s.vcpu, true);
  v.setUint8(o + xen_hvm_evtchn_upcall_vector.vector, s.vector);
}

/** `now`: ns of system time, a number (exact below 2^53 ns, about 104 days). */
export interface xen_hvm_get_time_t { now: number }
export function read_xen_hvm_get_time(v: DataView, o: number): xen_hvm_get_time_t {
  return { now: readU64(v, o + xen_hvm_get_time.now) };
}
export function write_xen_hvm_get_time(v: DataView, o: number, s: xen_hvm_get_time_t): void {
  writeU64(v, o + xen_hvm_get_time.now, s.now);
}
