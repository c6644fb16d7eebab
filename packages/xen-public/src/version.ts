// xen/version.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

/** `xen_extraversion_t` */
export const xen_extraversion = {
  SIZEOF: 16,
} as const;

/** `struct xen_compile_info` */
export const xen_compile_info = {
  SIZEOF: 144,
  compiler: 0, // char[64]
  compile_by: 64, // char[16]
  compile_domain: 80, // char[32]
  compile_date: 112, // char[32]
} as const;

/** `xen_capabilities_info_t` */
export const xen_capabilities_info = {
  SIZEOF: 1024,
} as const;

/** `xen_changeset_info_t` */
export const xen_changeset_info = {
  SIZEOF: 64,
} as const;

/** `struct xen_platform_parameters` */
export const xen_platform_parameters = {
  SIZEOF: 8,
  virt_start: 0, // xen_ulong_t
} as const;

/** `struct xen_feature_info` */
export const xen_feature_info = {
  SIZEOF: 8,
  submap_idx: 0, // unsigned int: IN
  submap: 4, // uint32_t: OUT
} as const;

/** `xen_commandline_t` */
export const xen_commandline = {
  SIZEOF: 1024,
} as const;

/** `struct xen_build_id` */
export const xen_build_id = {
  SIZEOF: 4,
  len: 0, // uint32_t: IN/OUT
  buf: 4, // unsigned char[]
} as const;
