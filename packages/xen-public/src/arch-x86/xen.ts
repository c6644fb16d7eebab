// xen/arch-x86/xen.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

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
