/**
 * What the remapping unit does on a cache miss (VT-d 3.4, 3.6, 3.7): fetch the root and context
 * entries for a requester, then walk the second-level tables for an address. Every entry is read
 * from memory exactly once into locals, checked, and used from the locals: tables are guest- or
 * hypervisor-programmed memory and may be hostile or torn.
 *
 * Both functions return 0 on success or a VT-d fault reason, and fill a caller-owned output
 * object, so the miss path allocates nothing either (except the `detail` string of a fault).
 */
import type { PhysicalMemory, U64 } from "@vtlab/arch";
import { FaultReason } from "./fault.js";
import { ECAP_DT, ECAP_PT, SAGAW_39_BIT, SAGAW_48_BIT, SLLPS_1G, SLLPS_2M } from "./regs.js";
import {
  CONTEXT_ENTRY_SIZE,
  CTX_FPD,
  CTX_P,
  CTX_TT_MASK,
  CTX_TT_SHIFT,
  CTX_W2_AW_MASK,
  CTX_W2_DID_MASK,
  CTX_W2_DID_SHIFT,
  ROOT_ENTRY_SIZE,
  ROOT_P,
  SL_ENTRY_SIZE,
  SL_HI_ADDR_MASK,
  SL_HI_TM,
  SL_PDE_2M_RSVD_LO,
  SL_PDPE_1G_RSVD_LO,
  SL_PS,
  SL_R,
  SL_SNP,
  SL_W,
  TranslationType,
  agawBits,
  agawLevels,
  contextEntryReserved,
  entryAddress,
  levelShift,
  rootEntryReserved,
  slHiReservedMask,
} from "./tables.js";
import type { CachedContext } from "./iotlb.js";

/** What the hardware supports, as CAP_REG/ECAP_REG report it: the walk checks entries against it. */
export interface RemappingFeatures {
  /** Host address width in bits: table addresses at or above 2^haw are reserved. */
  readonly haw: number;
  /** CAP_REG.MGAW + 1. */
  readonly mgaw: number;
  /** CAP_REG.SAGAW bits. */
  readonly sagaw: number;
  /** CAP_REG.SLLPS bits. */
  readonly sllps: number;
  /** ECAP_REG bits (PT, SC, DT matter here). */
  readonly ecap: number;
  /** ECAP_REG.SC: the SNP bit of leaf entries is defined (not reserved). */
  readonly snoopControl: boolean;
}

export interface ContextFetch {
  /** The context entry, valid when the fetch returned 0. */
  entry: CachedContext | undefined;
  /** FPD of the context entry read (also for a non-present one): decides whether qualified faults are recorded. */
  faultProcessingDisable: boolean;
  /** Memory references made (root entry, context entry: one 128-bit read each). */
  references: number;
  /** Why the fetch failed, for people reading a fault. */
  detail: string;
}

export function newContextFetch(): ContextFetch {
  return { entry: undefined, faultProcessingDisable: false, references: 0, detail: "" };
}

/**
 * Fetch and validate the root and context entries for `sourceId` (bus << 8 | devfn) from the
 * root table at `rootTable` (VT-d 3.4.2: the bus indexes the root table, devfn the context table).
 */
export function fetchContext(
  memory: PhysicalMemory,
  rootTable: number,
  sourceId: number,
  f: RemappingFeatures,
  out: ContextFetch,
  lo: U64,
  hi: U64,
): number {
  out.entry = undefined;
  out.faultProcessingDisable = false;
  out.references = 0;
  const bus = (sourceId >>> 8) & 0xff;
  const devfn = sourceId & 0xff;

  // Root entry.
  const rootAddress = rootTable + bus * ROOT_ENTRY_SIZE;
  if (rootTable >= 2 ** f.haw) {
    out.detail = `root table 0x${rootTable.toString(16)} is above the host address width`;
    return FaultReason.RootEntryAccessError;
  }
  out.references++;
  if (memory.read64(rootAddress, lo) !== undefined || memory.read64(rootAddress + 8, hi) !== undefined) {
    out.detail = `root entry at 0x${rootAddress.toString(16)} is outside memory`;
    return FaultReason.RootEntryAccessError;
  }
  const r0 = lo.lo;
  const r1 = lo.hi;
  const r2 = hi.lo;
  const r3 = hi.hi;
  if ((r0 & ROOT_P) === 0) {
    out.detail = `root entry for bus ${bus} is not present`;
    return FaultReason.RootEntryNotPresent;
  }
  const rootProblem = rootEntryReserved(r0, r1, r2, r3, f.haw);
  if (rootProblem !== undefined) {
    out.detail = `root entry for bus ${bus}: ${rootProblem}`;
    return FaultReason.RootEntryReserved;
  }

  // Context entry.
  const contextTable = entryAddress(r0, r1, 0xffff_ffff);
  const contextAddress = contextTable + devfn * CONTEXT_ENTRY_SIZE;
  out.references++;
  if (memory.read64(contextAddress, lo) !== undefined || memory.read64(contextAddress + 8, hi) !== undefined) {
    out.detail = `context entry at 0x${contextAddress.toString(16)} is outside memory`;
    return FaultReason.ContextEntryAccessError;
  }
  const c0 = lo.lo;
  const c1 = lo.hi;
  const c2 = hi.lo;
  const c3 = hi.hi;
  const present = (c0 & CTX_P) !== 0;
  out.faultProcessingDisable = (c0 & CTX_FPD) !== 0;
  if (!present) {
    out.detail = `context entry for devfn 0x${devfn.toString(16)} on bus ${bus} is not present`;
    return FaultReason.ContextEntryNotPresent;
  }
  const ctxProblem = contextEntryReserved(c0, c1, c2, c3, f.haw);
  if (ctxProblem !== undefined) {
    // The entry is malformed: its FPD cannot be trusted, and LCT.3 is not a qualified fault anyway.
    out.detail = `context entry for ${bus}:${devfn >>> 3}.${devfn & 7}: ${ctxProblem}`;
    return FaultReason.ContextEntryReserved;
  }
  const tt = (c0 >>> CTX_TT_SHIFT) & CTX_TT_MASK;
  const aw = c2 & CTX_W2_AW_MASK;
  if (tt === TranslationType.Reserved) {
    out.detail = "context entry TT is the reserved value 11b";
    return FaultReason.ContextEntryInvalid;
  }
  if (tt === TranslationType.DeviceTlb && (f.ecap & ECAP_DT) === 0) {
    out.detail = "context entry TT = 01b (device-TLB) but ECAP_REG.DT is 0";
    return FaultReason.ContextEntryInvalid;
  }
  if (tt === TranslationType.PassThrough && (f.ecap & ECAP_PT) === 0) {
    out.detail = "context entry TT = 10b (pass-through) but ECAP_REG.PT is 0";
    return FaultReason.ContextEntryInvalid;
  }
  const supportedAw = (aw === 1 && (f.sagaw & SAGAW_39_BIT) !== 0) || (aw === 2 && (f.sagaw & SAGAW_48_BIT) !== 0);
  if (tt !== TranslationType.PassThrough && !supportedAw) {
    out.detail = `context entry AW = ${aw} is not a width CAP_REG.SAGAW supports`;
    return FaultReason.ContextEntryInvalid;
  }
  out.entry = {
    domainId: (c2 >>> CTX_W2_DID_SHIFT) & CTX_W2_DID_MASK,
    translationType: tt,
    slptptr: entryAddress(c0, c1, 0xffff_ffff),
    levels: agawLevels(aw),
    addressBits: Math.min(f.mgaw, agawBits(aw)),
    faultProcessingDisable: out.faultProcessingDisable,
  };
  out.detail = "";
  return 0;
}

/** 2^levelShift(level) for level 1..5: the bytes one entry at that level spans (index 0 unused). */
const LEVEL_SPAN = Float64Array.of(0, 2 ** 12, 2 ** 21, 2 ** 30, 2 ** 39, 2 ** 48);

/** slHiReservedMask(haw) | SL_HI_TM for the last host address width asked (one per unit in practice). */
let cachedHaw = -1;
let cachedHiRsvd = 0;
function hiReservedFor(haw: number): number {
  if (haw !== cachedHaw) {
    cachedHiRsvd = (slHiReservedMask(haw) | SL_HI_TM) >>> 0;
    cachedHaw = haw;
  }
  return cachedHiRsvd;
}

export interface SlWalk {
  /** Machine address of the start of the page mapped. */
  frameBase: number;
  /** Page level of the leaf: 1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB. */
  level: number;
  /** Effective permissions: R and W ANDed over every level. */
  perm: number;
  /** Paging entries read. */
  references: number;
  detail: string;
}

export function newSlWalk(): SlWalk {
  return { frameBase: 0, level: 0, perm: 0, references: 0, detail: "" };
}

/**
 * Walk `levels` (3 or 4) levels of second-level tables from `root` for `iova` (VT-d 3.6).
 * Returns 0 with the leaf in `out` (the caller checks `out.perm` against the access), or a fault
 * reason: 7 when a table pointer leads outside memory, 0xC for reserved bits in an entry with R or
 * W set, and 5/6 (by `write`) when an entry on the way has neither R nor W (not present).
 */
export function walkSecondLevel(
  memory: PhysicalMemory,
  root: number,
  levels: number,
  iova: number,
  write: boolean,
  f: RemappingFeatures,
  out: SlWalk,
  scratch: U64,
): number {
  out.references = 0;
  out.perm = SL_R | SL_W;
  const hiRsvd = hiReservedFor(f.haw);
  let table = root;
  for (let level = levels; level >= 1; level--) {
    // Bits (shift + 8):shift of the address, shift = 12 + 9 * (level - 1); `& 511` is mod 512
    // of the non-negative integer quotient (ToInt32 keeps its low 32 bits).
    const index = Math.floor(iova / (LEVEL_SPAN[level] ?? 2 ** levelShift(level))) & 511;
    const at = table + index * SL_ENTRY_SIZE;
    out.references++;
    if (memory.read64(at, scratch) !== undefined) {
      out.detail = `level-${level} table entry at 0x${at.toString(16)} is outside memory`;
      return FaultReason.SecondLevelEntryAccessError;
    }
    const lo = scratch.lo;
    const hi = scratch.hi;
    const rw = lo & (SL_R | SL_W);
    if (rw === 0) {
      out.detail = `level-${level} entry at 0x${at.toString(16)} has neither R nor W (not present)`;
      return write ? FaultReason.WriteNotPermitted : FaultReason.ReadNotPermitted;
    }
    // A PS bit makes a PDPE (level 3) or PDE (level 2) a leaf when the size is supported.
    const ps = (lo & SL_PS) !== 0 && (level === 2 || level === 3);
    const leaf = level === 1 || ps;
    let problem = "";
    if ((hi & hiRsvd) !== 0) problem = "address bits above the host address width, or TM, set";
    else if (level === 4 && (lo & SL_PS) !== 0) problem = "PS set in an SL-PML4E";
    else if (ps && level === 2 && (f.sllps & SLLPS_2M) === 0) problem = "PS set in an SL-PDE but 2 MiB pages are not supported";
    else if (ps && level === 3 && (f.sllps & SLLPS_1G) === 0) problem = "PS set in an SL-PDPE but 1 GiB pages are not supported";
    else if (ps && level === 2 && (lo & SL_PDE_2M_RSVD_LO) !== 0) problem = "bits 20:12 of a 2 MiB SL-PDE set";
    else if (ps && level === 3 && (lo & SL_PDPE_1G_RSVD_LO) !== 0) problem = "bits 29:12 of a 1 GiB SL-PDPE set";
    else if ((lo & SL_SNP) !== 0 && !(leaf && f.snoopControl)) problem = "bit 11 (SNP) set where it is reserved";
    if (problem !== "") {
      out.detail = `level-${level} entry at 0x${at.toString(16)}: ${problem}`;
      return FaultReason.SecondLevelEntryReserved;
    }
    out.perm &= rw;
    const address = entryAddress(lo, hi, SL_HI_ADDR_MASK);
    if (leaf) {
      out.frameBase = address;
      out.level = level;
      out.detail = "";
      return 0;
    }
    table = address;
  }
  // Unreachable: level 1 is always a leaf.
  throw new Error("second-level walk ran past level 1");
}
