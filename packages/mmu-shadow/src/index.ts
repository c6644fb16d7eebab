// @vtlab/mmu-shadow: shadow page tables. ShadowPaging implements MemoryVirtualizer (cpu-vmx's
// seam), over the domain p2m and frame allocator of @vtlab/p2m.
export { ShadowPaging, ShadowType, EXCEPTION_BITMAP_PF, MIN_SHADOW_POOL_PAGES } from "./shadow-paging.js";
export type { ShadowPage, ShadowStats, ShadowFaultCounts, ShadowPagingOptions } from "./shadow-paging.js";
export { emulatePteStore, RFLAGS_CF, RFLAGS_PF, RFLAGS_AF, RFLAGS_ZF, RFLAGS_SF, RFLAGS_OF } from "./write-emulation.js";
export type { EmulatedStore } from "./write-emulation.js";
export { P2mPagingStructures, guestPagingMode, ramMfn } from "./guest-walk.js";
export type { GuestTableFault } from "./guest-walk.js";
export { OpsGuest, workloadDomain, forkWorkload, ptemod, KPML4, KCODE, KSTACK, RAM_BASE } from "./workload.js";
export type { EptFactory, WorkloadDomain, OpResult, OpsGuestOptions, ForkPhase, ForkReport, PtemodResult } from "./workload.js";
