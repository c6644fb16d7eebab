// xen/vcpu.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

import { readU64, writeU64 } from "./internal/dataview.js";

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

// ---------------------------------------------------------------------------------------------
// Codecs (see event_channel.ts for the convention).
// Times are ns numbers (exact below 2^53 ns, about 104 days of system time).

/**
 * `state_entry_time` matters in all 64 bits (Xen sets XEN_RUNSTATE_UPDATE, bit 63, while it
 * updates the area), so it is two halves: state_entry_time_lo (bits 31:0), _hi (bits 63:32).
 * `time`: the four RUNSTATE_* totals as numbers.
 */
export interface vcpu_runstate_info_t {
  state: number; state_entry_time_lo: number; state_entry_time_hi: number; time: [number, number, number, number];
}
export function read_vcpu_runstate_info(v: DataView, o: number): vcpu_runstate_info_t {
  const L = vcpu_runstate_info;
  return {
    state: v.getInt32(o + L.state, true),
    state_entry_time_lo: v.getUint32(o + L.state_entry_time, true),
    state_entry_time_hi: v.getUint32(o + L.state_entry_time + 4, true),
    time: [readU64(v, o + L.time), readU64(v, o + L.time + 8), readU64(v, o + L.time + 16), readU64(v, o + L.time + 24)],
  };
}
export function write_vcpu_runstate_info(v: DataView, o: number, s: vcpu_runstate_info_t): void {
  const L = vcpu_runstate_info;
  v.setInt32(o + L.state, s.state, true);
  v.setUint32(o + L.state + 4, 0, true); // padding before the uint64_t
  v.setUint32(o + L.state_entry_time, s.state_entry_time_lo, true);
  v.setUint32(o + L.state_entry_time + 4, s.state_entry_time_hi, true);
  for (let i = 0; i < 4; i++) writeU64(v, o + L.time + 8 * i, s.time[i] ?? 0);
}

/** `addr`: the union's uint64_t `p` (the guest-virtual address of the vcpu_runstate_info). */
export interface vcpu_register_runstate_memory_area_t { addr: number }
export function read_vcpu_register_runstate_memory_area(v: DataView, o: number): vcpu_register_runstate_memory_area_t {
  return { addr: readU64(v, o + vcpu_register_runstate_memory_area["addr.p"]) };
}
export function write_vcpu_register_runstate_memory_area(v: DataView, o: number, s: vcpu_register_runstate_memory_area_t): void {
  writeU64(v, o + vcpu_register_runstate_memory_area["addr.p"], s.addr);
}

/** `addr`: the union's uint64_t `p` (the guest-virtual address of the vcpu_time_info). */
export interface vcpu_register_time_memory_area_t { addr: number }
export function read_vcpu_register_time_memory_area(v: DataView, o: number): vcpu_register_time_memory_area_t {
  return { addr: readU64(v, o + vcpu_register_time_memory_area["addr.p"]) };
}
export function write_vcpu_register_time_memory_area(v: DataView, o: number, s: vcpu_register_time_memory_area_t): void {
  writeU64(v, o + vcpu_register_time_memory_area["addr.p"], s.addr);
}

export interface vcpu_set_periodic_timer_t { period_ns: number }
export function read_vcpu_set_periodic_timer(v: DataView, o: number): vcpu_set_periodic_timer_t {
  return { period_ns: readU64(v, o + vcpu_set_periodic_timer.period_ns) };
}
export function write_vcpu_set_periodic_timer(v: DataView, o: number, s: vcpu_set_periodic_timer_t): void {
  writeU64(v, o + vcpu_set_periodic_timer.period_ns, s.period_ns);
}

export interface vcpu_set_singleshot_timer_t { timeout_abs_ns: number; flags: number }
export function read_vcpu_set_singleshot_timer(v: DataView, o: number): vcpu_set_singleshot_timer_t {
  const L = vcpu_set_singleshot_timer;
  return { timeout_abs_ns: readU64(v, o + L.timeout_abs_ns), flags: v.getUint32(o + L.flags, true) };
}
export function write_vcpu_set_singleshot_timer(v: DataView, o: number, s: vcpu_set_singleshot_timer_t): void {
  const L = vcpu_set_singleshot_timer;
  writeU64(v, o + L.timeout_abs_ns, s.timeout_abs_ns);
  v.setUint32(o + L.flags, s.flags, true);
}

/** `mfn`: for an HVM guest, the gfn of the frame that is to hold the vcpu_info. */
export interface vcpu_register_vcpu_info_t { mfn: number; offset: number; rsvd: number }
export function read_vcpu_register_vcpu_info(v: DataView, o: number): vcpu_register_vcpu_info_t {
  const L = vcpu_register_vcpu_info;
  return { mfn: readU64(v, o + L.mfn), offset: v.getUint32(o + L.offset, true), rsvd: v.getUint32(o + L.rsvd, true) };
}
export function write_vcpu_register_vcpu_info(v: DataView, o: number, s: vcpu_register_vcpu_info_t): void {
  const L = vcpu_register_vcpu_info;
  writeU64(v, o + L.mfn, s.mfn);
  v.setUint32(o + L.offset, s.offset, true);
  v.setUint32(o + L.rsvd, s.rsvd, true);
}
