// blkback: the vbd backend (ring engine, storage interface, xenbus side).
export { Blkback, BLKIF_PROTOCOL_X86_64, MAX_INDIRECT_SEGMENTS, MAX_PERSISTENT_GRANTS, MAX_REQUESTS_PER_DISPATCH, MAX_RING_PAGE_ORDER, SEGS_PER_INDIRECT_FRAME } from "./blkback.js";
export type { BlkbackConnectError, BlkbackCounters, BlkbackOptions, BlkifRingConfig } from "./blkback.js";
export { MemoryBlkStorage } from "./storage.js";
export type { BlkStorage } from "./storage.js";
export { VbdBackend, vbdDevid, VDISK_CDROM, VDISK_READONLY, VDISK_REMOVABLE } from "./xenbus.js";
export type { VbdConfig, VbdStore } from "./xenbus.js";
