// netback: the vif's rings (vif.ts) and its xenbus side (xenbus.ts).
export { NetbackVif, XEN_NETBK_LEGACY_SLOTS_MAX, FATAL_SKB_SLOTS, ETH_HLEN, NETBACK_MAX_FRAME, RX_QUEUE_MAX_BYTES, RX_QUEUE_MAX_PACKETS, RX_DRAIN_TIMEOUT_NS, RX_STALL_TIMEOUT_NS, TX_BUDGET } from "./vif.js";
export type { NetifConnection, VifCounters, VifOptions, ConnectError } from "./vif.js";
export { NetbackDevice } from "./xenbus.js";
export type { NetbackDeviceOptions, NetbackStore } from "./xenbus.js";
