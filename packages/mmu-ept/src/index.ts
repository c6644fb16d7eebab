// @vtlab/mmu-ept: extended page tables and the two-dimensional walk. EPT formats, the p2m as EPT
// tables, the nested walker (a SecondLevelTranslator) with its caches, and
// NestedPaging implements MemoryVirtualizer. Depends on @vtlab/arch and @vtlab/cpu-vmx.
export {
  EPT_R,
  EPT_W,
  EPT_X,
  EPT_RWX,
  EPT_MT_SHIFT,
  EPT_MT_MASK,
  EPT_IPAT,
  EPT_PAGE_SIZE,
  EPT_A,
  EPT_D,
  EPT_UX,
  EPT_LO_ADDR_MASK_4K,
  EPT_LO_ADDR_MASK_2M,
  EPT_LO_ADDR_MASK_1G,
  EPT_PML4E_RSVD_LO,
  EPT_TABLE_RSVD_LO,
  EPT_1G_RSVD_LO,
  EPT_2M_RSVD_LO,
  EPT_HI_ADDR_MASK,
  EPT_HI_SVE,
  EptMemoryType,
  EptLevel,
  EPT_LEVEL_NAMES,
  levelPageShift,
  EPTP_MT_MASK,
  EPTP_PWL_SHIFT,
  EPTP_PWL_MASK,
  EPTP_AD,
  EPTP_SSS,
  EPTP_RSVD_LO,
  DEFAULT_EPT_CAPABILITIES,
  eptCapabilities,
  eptVpidCapLow,
  eptReservedHighMask,
  eptEntryAddress,
  makeEptEntry,
  makeEptp,
  decodeEptp,
  EPT_READ_VIOLATION,
  EPT_WRITE_VIOLATION,
  EPT_EXEC_VIOLATION,
  EPT_EFFECTIVE_READ,
  EPT_EFFECTIVE_WRITE,
  EPT_EFFECTIVE_EXEC,
  EPT_GLA_VALID,
  EPT_GLA_FAULT,
  describeQualification,
  EptMisconfigReason,
  EPT_MISCONFIG_REASON_NAMES,
  eptMisconfigReason,
  describeEptEntry,
} from "./ept.js";
export type { EptCapabilities, EptpFields, EptpError } from "./ept.js";


export { EptP2m, EptPerms, isP2mError } from "./p2m.js";
export type { P2mError, P2mUpdate, EptMapping, EptWalkStep, LeafAttributes, EptP2mOptions } from "./p2m.js";

export {
  TranslationCache,
  NestedCaches,
  DEFAULT_CACHE_SIZES,
  ALL_CACHES,
  NO_CACHES,
  TLB_EPT_SHIFT,
  TLB_GLOBAL,
  TLB_GUEST_DIRTY,
  TLB_EPT_DIRTY,
  NTLB_DIRTY,
} from "./caches.js";
export type { NestedCacheSizes, CacheSwitches, CacheCounts, NestedCacheStats } from "./caches.js";

export { EptTranslator, EptStatus, InveptType } from "./translator.js";
export type { EptViolationDetail, EptMisconfigDetail, EptFault, EptTranslatorOptions } from "./translator.js";

export { NestedWalker, NestedStatus, eptAccessOf } from "./walker.js";
export type { NestedTranslation, NestedPageFault, NestedEptFault, NestedWalkOutcome, NestedWalkerOptions } from "./walker.js";

export { EptGuestMemory, GuestPageTables } from "./guest-tables.js";
export type { GuestPhysicalMemory } from "./guest-tables.js";

export {
  NestedPaging,
  CPU_BASED_INVLPG_EXITING,
  CPU_BASED_CR3_LOAD_EXITING,
  CPU_BASED_CR3_STORE_EXITING,
  CPU_BASED_ACTIVATE_SECONDARY_CONTROLS,
  SECONDARY_EXEC_ENABLE_EPT,
  SECONDARY_EXEC_ENABLE_VPID,
} from "./nested-paging.js";
export type { NestedPagingOptions, NestedPagingStats, EptReport, LogDirtyMethod } from "./nested-paging.js";

export { WALK_COST_CONFIGS, buildWalkCostMachine, runWalkCost, formatWalkCostTable, coldWalkReferences } from "./workload.js";
export type { WalkCostConfig, WalkCostOptions, WalkCost, WalkCostRow, WalkCostMachine, ColdWalkSpec } from "./workload.js";
