// xen/xen.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

import { read_arch_vcpu_info, write_arch_vcpu_info, type arch_vcpu_info_t } from "./arch-x86/xen.js";
import { readU64, writeU64 } from "./internal/dataview.js";

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

// ---------------------------------------------------------------------------------------------
// Codecs (see event_channel.ts for the convention).

/**
 * `tsc_timestamp` and `system_time` are numbers (exact below 2^53: 104 days of ns, or 2^53 TSC
 * ticks). Xen's update protocol (version odd while writing) is the caller's: write `version` odd,
 * the fields, then `version` even.
 */
export interface vcpu_time_info_t {
  version: number; pad0: number; tsc_timestamp: number; system_time: number;
  tsc_to_system_mul: number; tsc_shift: number; flags: number;
}
export function read_vcpu_time_info(v: DataView, o: number): vcpu_time_info_t {
  const L = vcpu_time_info;
  return {
    version: v.getUint32(o + L.version, true),
    pad0: v.getUint32(o + L.pad0, true),
    tsc_timestamp: readU64(v, o + L.tsc_timestamp),
    system_time: readU64(v, o + L.system_time),
    tsc_to_system_mul: v.getUint32(o + L.tsc_to_system_mul, true),
    tsc_shift: v.getInt8(o + L.tsc_shift),
    flags: v.getUint8(o + L.flags),
  };
}
export function write_vcpu_time_info(v: DataView, o: number, s: vcpu_time_info_t): void {
  const L = vcpu_time_info;
  v.setUint32(o + L.version, s.version, true);
  v.setUint32(o + L.pad0, s.pad0, true);
  writeU64(v, o + L.tsc_timestamp, s.tsc_timestamp);
  writeU64(v, o + L.system_time, s.system_time);
  v.setUint32(o + L.tsc_to_system_mul, s.tsc_to_system_mul, true);
  v.setInt8(o + L.tsc_shift, s.tsc_shift);
  v.setUint8(o + L.flags, s.flags);
  v.setUint16(o + L.pad1, 0, true);
}

/**
 * `evtchn_pending_sel` is a 64-bit selector (bit i: word i of shared_info.evtchn_pending has
 * pending ports), so it is two halves: _lo (words 0-31), _hi (words 32-63).
 */
export interface vcpu_info_t {
  evtchn_upcall_pending: number; evtchn_upcall_mask: number;
  evtchn_pending_sel_lo: number; evtchn_pending_sel_hi: number;
  arch: arch_vcpu_info_t; time: vcpu_time_info_t;
}
export function read_vcpu_info(v: DataView, o: number): vcpu_info_t {
  const L = vcpu_info;
  return {
    evtchn_upcall_pending: v.getUint8(o + L.evtchn_upcall_pending),
    evtchn_upcall_mask: v.getUint8(o + L.evtchn_upcall_mask),
    evtchn_pending_sel_lo: v.getUint32(o + L.evtchn_pending_sel, true),
    evtchn_pending_sel_hi: v.getUint32(o + L.evtchn_pending_sel + 4, true),
    arch: read_arch_vcpu_info(v, o + L.arch),
    time: read_vcpu_time_info(v, o + L.time),
  };
}
export function write_vcpu_info(v: DataView, o: number, s: vcpu_info_t): void {
  const L = vcpu_info;
  for (let i = 0; i < L.evtchn_pending_sel; i++) v.setUint8(o + i, 0); // pending, mask, padding
  v.setUint8(o + L.evtchn_upcall_pending, s.evtchn_upcall_pending);
  v.setUint8(o + L.evtchn_upcall_mask, s.evtchn_upcall_mask);
  v.setUint32(o + L.evtchn_pending_sel, s.evtchn_pending_sel_lo, true);
  v.setUint32(o + L.evtchn_pending_sel + 4, s.evtchn_pending_sel_hi, true);
  write_arch_vcpu_info(v, o + L.arch, s.arch);
  write_vcpu_time_info(v, o + L.time, s.time);
}

/** The byte offset of vcpu_info[i] in shared_info (i < XEN_LEGACY_MAX_VCPUS). */
export function shared_info_vcpu_info(i: number): number {
  return shared_info.vcpu_info + i * vcpu_info.SIZEOF;
}
/** The byte offset of bit `port` in shared_info.evtchn_pending, and its mask bit. 2-level ABI. */
export function shared_info_evtchn_pending_byte(port: number): number {
  return shared_info.evtchn_pending + (port >>> 3);
}
export function shared_info_evtchn_mask_byte(port: number): number {
  return shared_info.evtchn_mask + (port >>> 3);
}
