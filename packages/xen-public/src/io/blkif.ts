// xen/io/blkif.h: struct layouts (x86_64). Each object is named like the C type: SIZEOF, then the byte
// offset of each field under its C name (a nested struct: its offset; its fields are in its own
// object; members of an anonymous or inline struct/union: "outer.inner", offset from the start).
// Checked against the real header with gcc by test/layout.test.ts.

import { BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST } from "../constants.js";
import { readU64, writeU64 } from "../internal/dataview.js";

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

// ---------------------------------------------------------------------------------------------
// Codecs (see event_channel.ts for the convention).
// `id` is the frontend's opaque 64-bit cookie that the backend must echo exactly: two halves,
// id_lo (bits 31:0) and id_hi (bits 63:32). Sector numbers are numbers (exact below 2^53 sectors,
// 4 EiB). Which request layout a ring slot holds depends on its first byte, `operation`:
// BLKIF_OP_DISCARD -> blkif_request_discard, BLKIF_OP_INDIRECT -> blkif_request_indirect,
// anything else -> blkif_request.

export interface blkif_request_segment_t { gref: number; first_sect: number; last_sect: number }
export function read_blkif_request_segment(v: DataView, o: number): blkif_request_segment_t {
  const L = blkif_request_segment;
  return { gref: v.getUint32(o + L.gref, true), first_sect: v.getUint8(o + L.first_sect), last_sect: v.getUint8(o + L.last_sect) };
}
export function write_blkif_request_segment(v: DataView, o: number, s: blkif_request_segment_t): void {
  const L = blkif_request_segment;
  v.setUint32(o + L.gref, s.gref, true);
  v.setUint8(o + L.first_sect, s.first_sect);
  v.setUint8(o + L.last_sect, s.last_sect);
  v.setUint16(o + L.last_sect + 1, 0, true); // tail padding
}

/**
 * `seg` holds min(nr_segments, BLKIF_MAX_SEGMENTS_PER_REQUEST) segments: a hostile nr_segments is
 * kept as read (for the backend to reject) but never reads past the request.
 */
export interface blkif_request_t {
  operation: number; nr_segments: number; handle: number; id_lo: number; id_hi: number;
  sector_number: number; seg: blkif_request_segment_t[];
}
export function read_blkif_request(v: DataView, o: number): blkif_request_t {
  const L = blkif_request;
  const nr_segments = v.getUint8(o + L.nr_segments);
  const n = Math.min(nr_segments, BLKIF_MAX_SEGMENTS_PER_REQUEST);
  const seg: blkif_request_segment_t[] = new Array(n);
  for (let i = 0; i < n; i++) seg[i] = read_blkif_request_segment(v, o + L.seg + i * blkif_request_segment.SIZEOF);
  return {
    operation: v.getUint8(o + L.operation),
    nr_segments,
    handle: v.getUint16(o + L.handle, true),
    id_lo: v.getUint32(o + L.id, true),
    id_hi: v.getUint32(o + L.id + 4, true),
    sector_number: readU64(v, o + L.sector_number),
    seg,
  };
}
/** Writes `seg` (at most BLKIF_MAX_SEGMENTS_PER_REQUEST; more is a vtlab bug) and zeroes the unused slots. */
export function write_blkif_request(v: DataView, o: number, s: blkif_request_t): void {
  const L = blkif_request;
  if (s.seg.length > BLKIF_MAX_SEGMENTS_PER_REQUEST) throw new RangeError(`blkif_request: ${s.seg.length} segments`);
  v.setUint8(o + L.operation, s.operation);
  v.setUint8(o + L.nr_segments, s.nr_segments);
  v.setUint16(o + L.handle, s.handle, true);
  v.setUint32(o + L.handle + 2, 0, true); // padding before id
  v.setUint32(o + L.id, s.id_lo, true);
  v.setUint32(o + L.id + 4, s.id_hi, true);
  writeU64(v, o + L.sector_number, s.sector_number);
  for (let i = 0; i < BLKIF_MAX_SEGMENTS_PER_REQUEST; i++) {
    const at = o + L.seg + i * blkif_request_segment.SIZEOF;
    const sg = s.seg[i];
    if (sg) write_blkif_request_segment(v, at, sg);
    else { v.setUint32(at, 0, true); v.setUint32(at + 4, 0, true); }
  }
}

export interface blkif_request_discard_t {
  operation: number; flag: number; handle: number; id_lo: number; id_hi: number; sector_number: number; nr_sectors: number;
}
export function read_blkif_request_discard(v: DataView, o: number): blkif_request_discard_t {
  const L = blkif_request_discard;
  return {
    operation: v.getUint8(o + L.operation),
    flag: v.getUint8(o + L.flag),
    handle: v.getUint16(o + L.handle, true),
    id_lo: v.getUint32(o + L.id, true),
    id_hi: v.getUint32(o + L.id + 4, true),
    sector_number: readU64(v, o + L.sector_number),
    nr_sectors: readU64(v, o + L.nr_sectors),
  };
}
export function write_blkif_request_discard(v: DataView, o: number, s: blkif_request_discard_t): void {
  const L = blkif_request_discard;
  v.setUint8(o + L.operation, s.operation);
  v.setUint8(o + L.flag, s.flag);
  v.setUint16(o + L.handle, s.handle, true);
  v.setUint32(o + L.id, s.id_lo, true);
  v.setUint32(o + L.id + 4, s.id_hi, true);
  writeU64(v, o + L.sector_number, s.sector_number);
  writeU64(v, o + L.nr_sectors, s.nr_sectors);
}

export interface blkif_request_indirect_t {
  operation: number; indirect_op: number; nr_segments: number; id_lo: number; id_hi: number;
  sector_number: number; handle: number; indirect_grefs: number[];
}
export function read_blkif_request_indirect(v: DataView, o: number): blkif_request_indirect_t {
  const L = blkif_request_indirect;
  const indirect_grefs: number[] = new Array(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST);
  for (let i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++) indirect_grefs[i] = v.getUint32(o + L.indirect_grefs + 4 * i, true);
  return {
    operation: v.getUint8(o + L.operation),
    indirect_op: v.getUint8(o + L.indirect_op),
    nr_segments: v.getUint16(o + L.nr_segments, true),
    id_lo: v.getUint32(o + L.id, true),
    id_hi: v.getUint32(o + L.id + 4, true),
    sector_number: readU64(v, o + L.sector_number),
    handle: v.getUint16(o + L.handle, true),
    indirect_grefs,
  };
}
export function write_blkif_request_indirect(v: DataView, o: number, s: blkif_request_indirect_t): void {
  const L = blkif_request_indirect;
  v.setUint8(o + L.operation, s.operation);
  v.setUint8(o + L.indirect_op, s.indirect_op);
  v.setUint16(o + L.nr_segments, s.nr_segments, true);
  v.setUint32(o + L.id, s.id_lo, true);
  v.setUint32(o + L.id + 4, s.id_hi, true);
  writeU64(v, o + L.sector_number, s.sector_number);
  v.setUint16(o + L.handle, s.handle, true);
  for (let i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++) v.setUint32(o + L.indirect_grefs + 4 * i, s.indirect_grefs[i] ?? 0, true);
}

export interface blkif_response_t { id_lo: number; id_hi: number; operation: number; status: number }
export function read_blkif_response(v: DataView, o: number): blkif_response_t {
  const L = blkif_response;
  return {
    id_lo: v.getUint32(o + L.id, true),
    id_hi: v.getUint32(o + L.id + 4, true),
    operation: v.getUint8(o + L.operation),
    status: v.getInt16(o + L.status, true),
  };
}
export function write_blkif_response(v: DataView, o: number, s: blkif_response_t): void {
  const L = blkif_response;
  v.setUint32(o + L.id, s.id_lo, true);
  v.setUint32(o + L.id + 4, s.id_hi, true);
  v.setUint8(o + L.operation, s.operation);
  v.setUint8(o + L.operation + 1, 0); // padding before status
  v.setInt16(o + L.status, s.status, true);
}
