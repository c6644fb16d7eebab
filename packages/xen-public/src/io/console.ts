// xen/io/console.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

/** `struct xencons_interface` */
export const xencons_interface = {
  SIZEOF: 3088,
  in: 0, // char[1024]: backend to frontend
  out: 1024, // char[2048]: frontend to backend
  in_cons: 3072, // XENCONS_RING_IDX
  in_prod: 3076, // XENCONS_RING_IDX
  out_cons: 3080, // XENCONS_RING_IDX
  out_prod: 3084, // XENCONS_RING_IDX
} as const;
