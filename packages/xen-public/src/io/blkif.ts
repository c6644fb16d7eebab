// xen/io/blkif.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

/** `struct blkif_request_segment` */
export const blkif_request_segment = {
  SIZEOF: 8,
  gref: 0, // grant_ref_t
  first_sect: 4, // uint8_t
  last_sect: 5, // uint8_t
} as const;

/** `struct blkif_request` */
export const blkif_request = {
  SIZEOF: 112,
  operation: 0, // uint8_t: BLKIF_OP_*
  nr_segments: 1, // uint8_t
  handle: 2, // blkif_vdev_t
  id: 8, // uint64_t
  sector_number: 16, // blkif_sector_t
  seg: 24, // struct blkif_request_segment[BLKIF_MAX_SEGMENTS_PER_REQUEST]
} as const;

/** `struct blkif_request_discard` */
export const blkif_request_discard = {
  SIZEOF: 32,
  operation: 0, // uint8_t: BLKIF_OP_DISCARD
  flag: 1, // uint8_t: BLKIF_DISCARD_SECURE
  handle: 2, // blkif_vdev_t
  id: 8, // uint64_t
  sector_number: 16, // blkif_sector_t
  nr_sectors: 24, // uint64_t
} as const;

/** `struct blkif_request_indirect` */
export const blkif_request_indirect = {
  SIZEOF: 64,
  operation: 0, // uint8_t: BLKIF_OP_INDIRECT
  indirect_op: 1, // uint8_t
  nr_segments: 2, // uint16_t
  id: 8, // uint64_t
  sector_number: 16, // blkif_sector_t
  handle: 24, // blkif_vdev_t
  indirect_grefs: 28, // grant_ref_t[BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST]
} as const;

/** `struct blkif_response` */
export const blkif_response = {
  SIZEOF: 16,
  id: 0, // uint64_t
  operation: 8, // uint8_t
  status: 10, // int16_t: BLKIF_RSP_*
} as const;

/** `union blkif_sring_entry` */
export const blkif_sring_entry = {
  SIZEOF: 112,
  req: 0, // struct blkif_request
  rsp: 0, // struct blkif_response
} as const;

/** `struct blkif_sring` */
export const blkif_sring = {
  SIZEOF: 176,
  req_prod: 0, // RING_IDX
  req_event: 4, // RING_IDX
  rsp_prod: 8, // RING_IDX
  rsp_event: 12, // RING_IDX
  pvt: 16, // union
  __pad: 20, // uint8_t[44]
  ring: 64, // union blkif_sring_entry[]
} as const;
