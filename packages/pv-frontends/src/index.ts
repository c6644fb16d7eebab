// @vtlab/pv-frontends: guest-side PV drivers over cpu-vmx's GuestOps (see README.md).
export { GuestMemory, GuestMemoryFault, PageAllocator, PAGE_SIZE } from "./mem.js";
export { Xen, frontendError, isFrontendError } from "./hypercall.js";
export type { FrontendError } from "./hypercall.js";
export { findPlatformMmio } from "./platform.js";
export { GrantTable } from "./grant.js";
export { EventChannels, MAX_POLL_PORTS } from "./evtchn.js";
export { XenbusClient, XenbusDevice, isXsError, MAX_QUEUED_WATCH_EVENTS } from "./xenbus.js";
export type { XsError, WatchEvent } from "./xenbus.js";
export { PvConsole } from "./console.js";
export { bootFrontends } from "./boot.js";
export type { Frontends, BootFrontendsOptions } from "./boot.js";
export { FrontRing } from "./front-ring.js";
export { Blkfront, XVDA_DEVID, isBlkError } from "./blkfront.js";
export type { BlkError } from "./blkfront.js";
export { Netfront, RX_BUFFERS, TX_BUFFERS, MAX_RX_QUEUE } from "./netfront.js";
