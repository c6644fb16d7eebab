// xen/version.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

import { readCString, writeCString } from "./internal/dataview.js";

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

// ---------------------------------------------------------------------------------------------
// Codecs (see event_channel.ts for the convention).
// The char[] types are strings (Latin-1, up to the first NUL); writing truncates to SIZEOF - 1
// and zero-fills, so the C string is always terminated.

export function read_xen_extraversion(v: DataView, o: number): string {
  return readCString(v, o, xen_extraversion.SIZEOF);
}
export function write_xen_extraversion(v: DataView, o: number, s: string): void {
  writeCString(v, o, xen_extraversion.SIZEOF, s);
}
export function read_xen_capabilities_info(v: DataView, o: number): string {
  return readCString(v, o, xen_capabilities_info.SIZEOF);
}
export function write_xen_capabilities_info(v: DataView, o: number, s: string): void {
  writeCString(v, o, xen_capabilities_info.SIZEOF, s);
}
export function read_xen_changeset_info(v: DataView, o: number): string {
  return readCString(v, o, xen_changeset_info.SIZEOF);
}
export function write_xen_changeset_info(v: DataView, o: number, s: string): void {
  writeCString(v, o, xen_changeset_info.SIZEOF, s);
}
export function read_xen_commandline(v: DataView, o: number): string {
  return readCString(v, o, xen_commandline.SIZEOF);
}
export function write_xen_commandline(v: DataView, o: number, s: string): void {
  writeCString(v, o, xen_commandline.SIZEOF, s);
}

export interface xen_compile_info_t { compiler: string; compile_by: string; compile_domain: string; compile_date: string }
const COMPILE_INFO_FIELDS = [
  ["compiler", xen_compile_info.compiler, xen_compile_info.compile_by - xen_compile_info.compiler],
  ["compile_by", xen_compile_info.compile_by, xen_compile_info.compile_domain - xen_compile_info.compile_by],
  ["compile_domain", xen_compile_info.compile_domain, xen_compile_info.compile_date - xen_compile_info.compile_domain],
  ["compile_date", xen_compile_info.compile_date, xen_compile_info.SIZEOF - xen_compile_info.compile_date],
] as const;
export function read_xen_compile_info(v: DataView, o: number): xen_compile_info_t {
  const [a, b, c, d] = COMPILE_INFO_FIELDS;
  return {
    compiler: readCString(v, o + a[1], a[2]),
    compile_by: readCString(v, o + b[1], b[2]),
    compile_domain: readCString(v, o + c[1], c[2]),
    compile_date: readCString(v, o + d[1], d[2]),
  };
}
export function write_xen_compile_info(v: DataView, o: number, s: xen_compile_info_t): void {
  for (const [name, offset, size] of COMPILE_INFO_FIELDS) writeCString(v, o + offset, size, s[name]);
}

/**
 * `virt_start` matters in all 64 bits (HYPERVISOR_VIRT_START is 0xffff800000000000 on x86_64), so
 * it is two halves: virt_start_lo (bits 31:0), virt_start_hi (bits 63:32).
 */
export interface xen_platform_parameters_t { virt_start_lo: number; virt_start_hi: number }
export function read_xen_platform_parameters(v: DataView, o: number): xen_platform_parameters_t {
  const L = xen_platform_parameters;
  return { virt_start_lo: v.getUint32(o + L.virt_start, true), virt_start_hi: v.getUint32(o + L.virt_start + 4, true) };
}
export function write_xen_platform_parameters(v: DataView, o: number, s: xen_platform_parameters_t): void {
  const L = xen_platform_parameters;
  v.setUint32(o + L.virt_start, s.virt_start_lo, true);
  v.setUint32(o + L.virt_start + 4, s.virt_start_hi, true);
}

export interface xen_feature_info_t { submap_idx: number; submap: number }
export function read_xen_feature_info(v: DataView, o: number): xen_feature_info_t {
  return { submap_idx: v.getUint32(o + xen_feature_info.submap_idx, true), submap: v.getUint32(o + xen_feature_info.submap, true) };
}
export function write_xen_feature_info(v: DataView, o: number, s: xen_feature_info_t): void {
  v.setUint32(o + xen_feature_info.submap_idx, s.submap_idx, true);
  v.setUint32(o + xen_feature_info.submap, s.submap >>> 0, true);
}
