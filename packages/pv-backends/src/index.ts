// @vtlab/pv-backends: public entry (see README.md).
export type { BackendHost, BackendGrants, BackendGrantMapping, BackendCopyOp, BackendCopySide, BackendEventChannels } from "./host.js";
export { XenStore, XENSTORED_DEFAULT_QUOTAS, DomainConnection, isValidNodename } from "./xenstored/index.js";
export type { XenStoreOptions, XsReply, XsWatch, XsPerm, XenStoreQuotas, XsConnectionStats } from "./xenstored/index.js";
export { ConsoleBackend } from "./console/index.js";
export type { ConsoleBackendOptions, ConsoleBackendStats } from "./console/index.js";
export { NetbackVif, NetbackDevice, XEN_NETBK_LEGACY_SLOTS_MAX, FATAL_SKB_SLOTS, RX_QUEUE_MAX_BYTES, RX_QUEUE_MAX_PACKETS, RX_DRAIN_TIMEOUT_NS, RX_STALL_TIMEOUT_NS } from "./netback/index.js";
export type { NetifConnection, VifCounters, VifOptions, ConnectError, NetbackDeviceOptions, NetbackStore } from "./netback/index.js";
export { Bridge, BridgePort, BRIDGE_AGEING_NS, BRIDGE_MAX_ENTRIES } from "./bridge/bridge.js";
export type { BridgeCounters, BridgeOptions, PortCounters, PortSink } from "./bridge/bridge.js";
export { Blkback, MemoryBlkStorage, VbdBackend, vbdDevid, BLKIF_PROTOCOL_X86_64, MAX_INDIRECT_SEGMENTS, MAX_PERSISTENT_GRANTS, MAX_REQUESTS_PER_DISPATCH, MAX_RING_PAGE_ORDER, SEGS_PER_INDIRECT_FRAME, VDISK_CDROM, VDISK_READONLY, VDISK_REMOVABLE } from "./blkback/index.js";
export type { BlkStorage, BlkbackConnectError, BlkbackCounters, BlkbackOptions, BlkifRingConfig, VbdConfig, VbdStore } from "./blkback/index.js";
