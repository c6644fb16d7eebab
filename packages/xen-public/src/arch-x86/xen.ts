// xen/arch-x86/xen.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

import { readU64, writeU64 } from "../internal/dataview.js";

/** `struct arch_vcpu_info` */
export const arch_vcpu_info = {
  SIZEOF: 16,
  cr2: 0, // unsigned long
  pad: 8, // unsigned long
} as const;

/** `struct arch_shared_info` */
export const arch_shared_info = {
  SIZEOF: 48,
  max_pfn: 0, // unsigned long
  pfn_to_mfn_frame_list_list: 8, // xen_pfn_t
  nmi_reason: 16, // unsigned long
  p2m_cr3: 24, // unsigned long
  p2m_vaddr: 32, // unsigned long
  p2m_generation: 40, // unsigned long
} as const;

// ---------------------------------------------------------------------------------------------
// Codecs (see event_channel.ts for the convention).

/** `cr2` is a guest-linear address, all 64 bits: two halves (cr2_lo bits 31:0, cr2_hi 63:32). */
export interface arch_vcpu_info_t { cr2_lo: number; cr2_hi: number; pad: number }
export function read_arch_vcpu_info(v: DataView, o: number): arch_vcpu_info_t {
  const L = arch_vcpu_info;
  return { cr2_lo: v.getUint32(o + L.cr2, true), cr2_hi: v.getUint32(o + L.cr2 + 4, true), pad: readU64(v, o + L.pad) };
}
export function write_arch_vcpu_info(v: DataView, o: number, s: arch_vcpu_info_t): void {
  const L = arch_vcpu_info;
  v.setUint32(o + L.cr2, s.cr2_lo, true);
  v.setUint32(o + L.cr2 + 4, s.cr2_hi, true);
  writeU64(v, o + L.pad, s.pad);
}

/**
 * Frame numbers, counts and the generation are numbers (exact below 2^53); `p2m_vaddr` is a
 * guest-virtual address, all 64 bits: two halves.
 */
export interface arch_shared_info_t {
  max_pfn: number; pfn_to_mfn_frame_list_list: number; nmi_reason: number; p2m_cr3: number;
  p2m_vaddr_lo: number; p2m_vaddr_hi: number; p2m_generation: number;
}
export function read_arch_shared_info(v: DataView, o: number): arch_shared_info_t {
  const L = arch_shared_info;
  return {
    max_pfn: readU64(v, o + L.max_pfn),
    pfn_to_mfn_frame_list_list: readU64(v, o + L.pfn_to_mfn_frame_list_list),
    nmi_reason: readU64(v, o + L.nmi_reason),
    p2m_cr3: readU64(v, o + L.p2m_cr3),
    p2m_vaddr_lo: v.getUint32(o + L.p2m_vaddr, true),
    p2m_vaddr_hi: v.getUint32(o + L.p2m_vaddr + 4, true),
    p2m_generation: readU64(v, o + L.p2m_generation),
  };
}
export function write_arch_shared_info(v: DataView, o: number, s: arch_shared_info_t): void {
  const L = arch_shared_info;
  writeU64(v, o + L.max_pfn, s.max_pfn);
  writeU64(v, o + L.pfn_to_mfn_frame_list_list, s.pfn_to_mfn_frame_list_list);
  writeU64(v, o + L.nmi_reason, s.nmi_reason);
  writeU64(v, o + L.p2m_cr3, s.p2m_cr3);
  v.setUint32(o + L.p2m_vaddr, s.p2m_vaddr_lo, true);
  v.setUint32(o + L.p2m_vaddr + 4, s.p2m_vaddr_hi, true);
  writeU64(v, o + L.p2m_generation, s.p2m_generation);
}
