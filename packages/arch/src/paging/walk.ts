/**
 * The one generic x86 page walker: 4-level and 5-level long-mode paging with 4 KiB, 2 MiB and
 * 1 GiB pages (Intel SDM Vol. 3A, 4.5), access rights (4.6), page-fault error codes (4.7) and
 * accessed/dirty flags (4.8).
 *
 * It reads every paging-structure entry through a caller-given `PagingStructureAccess`, so the
 * same walker serves a one-dimensional walk over machine memory (native or shadow paging) and
 * the guest dimension of a two-dimensional walk (EPT translates each reference and may answer
 * with a fault of its own, which the walker hands back untouched).
 *
 * Modelled more simply than hardware, on purpose and said here:
 * - Accessed and dirty flags are written only when the whole translation succeeds, top level
 *   first. The SDM leaves the order unspecified; Intel processors walk first and then update the
 *   flags atomically, and a walk that ends in #PF leaves every flag as it was.
 * - 32-bit and PAE paging are not modelled (long mode only); protection keys (CR4.PKE) and
 *   shadow-stack accesses are not modelled.
 * - The canonical-address check belongs to the CPU (#GP), not to the walker: in 4-level mode
 *   bits 63:48 of the linear address are ignored here, in 5-level mode bits 63:57.
 */
import type { U64 } from "../address.js";
import { type MemoryError, type PhysicalMemory } from "../memory.js";
import {
  PFEC_ID,
  PFEC_P,
  PFEC_RSVD,
  PFEC_US,
  PFEC_WR,
  PTE_A,
  PTE_D,
  PTE_G,
  PTE_HI_XD,
  PTE_LO_ADDR_MASK_1G,
  PTE_LO_ADDR_MASK_2M,
  PTE_LO_ADDR_MASK_4K,
  PTE_P,
  PTE_PS,
  PTE_RW,
  PTE_US,
  PDE_2M_RSVD_LO,
  PDPTE_1G_RSVD_LO,
  PAGE_SHIFT_1G,
  PAGE_SHIFT_2M,
  PAGE_SHIFT_4K,
  type PagingLevel,
  entryAddress,
  reservedHighMask,
  reservedLowAddressMask,
} from "./entry.js";

/**
 * What kind of access is being translated: a bit set that reuses the page-fault error-code
 * positions (W/R bit 1, U/S bit 2, I/D bit 4), plus `Implicit` for implicit supervisor-mode
 * accesses (descriptor tables, the TSS, the IDT stack switch), which are supervisor accesses
 * whatever the CPL and ignore RFLAGS.AC under SMAP.
 */
export const Access = {
  Read: 0,
  /** A data write. */
  Write: PFEC_WR,
  /** A user-mode access (CPL = 3). */
  User: PFEC_US,
  /** An instruction fetch. */
  Fetch: PFEC_ID,
  /** An implicit supervisor-mode access (SDM 4.6: "implicit supervisor-mode access"). */
  Implicit: 1 << 8,
} as const;

/** Combined access rights of a translation (SDM 4.6): what the TLB keeps beside the address. */
export const PageRights = {
  /** R/W = 1 in every entry of the walk. */
  Writable: PTE_RW,
  /** U/S = 1 in every entry of the walk: a user-mode address. */
  User: PTE_US,
  /** XD = 1 in some entry of the walk (only with IA32_EFER.NXE = 1). */
  NoExecute: 1 << 3,
} as const;

/**
 * The control-register and flag state the walk depends on. The CPU keeps one of these current
 * (it changes only on writes to CR0, CR4, EFER, and RFLAGS.AC), so a walk reads plain fields.
 */
export interface PagingMode {
  /** CR4.LA57: 5-level paging. */
  la57: boolean;
  /** CR0.WP: supervisor writes honour R/W. */
  wp: boolean;
  /** IA32_EFER.NXE: XD bits are honoured (and not reserved). */
  nxe: boolean;
  /** CR4.SMEP: supervisor fetches from user pages fault. */
  smep: boolean;
  /** CR4.SMAP: supervisor data accesses to user pages fault unless RFLAGS.AC and explicit. */
  smap: boolean;
  /** CR4.PGE: G bits make translations global. */
  pge: boolean;
  /** RFLAGS.AC (only consulted under SMAP). */
  ac: boolean;
  /** MAXPHYADDR (CPUID.80000008H:EAX[7:0]): bits at and above it are reserved in entries. */
  maxPhyAddr: number;
}

/** A plausible default: 4-level paging, WP and NXE on, MAXPHYADDR 46 (a common Xeon value). */
export function pagingMode(overrides: Partial<PagingMode> = {}): PagingMode {
  return { la57: false, wp: true, nxe: true, smep: false, smap: false, pge: true, ac: false, maxPhyAddr: 46, ...overrides };
}

/**
 * How the walker reaches paging-structure entries. `address` is in the space the walk runs in
 * (machine-physical for a one-dimensional walk, guest-physical under EPT). Either call may answer
 * with a fault of the caller's own type (a machine-memory error, an EPT violation); the walk
 * then stops and reports it as an access fault.
 */
export interface PagingStructureAccess<F> {
  /** Read the 64-bit entry at `address` into `out`. */
  readEntry(address: number, level: PagingLevel, out: U64): F | undefined;
  /** Atomically OR `lowBits` (PTE_A, PTE_D) into bits 31:0 of the entry at `address`. */
  setEntryBits(address: number, level: PagingLevel, lowBits: number): F | undefined;
}

export const WalkStatus = {
  /** The translation succeeded. */
  Ok: 0,
  /** A page fault: `errorCode` holds the SDM error code. */
  PageFault: 1,
  /** Reading or updating an entry failed in the layer below (`accessFault`). */
  AccessFault: 2,
} as const;
export type WalkStatus = (typeof WalkStatus)[keyof typeof WalkStatus];

const MAX_LEVELS = 5;

/**
 * The outcome of one walk, written in place so a hot path allocates nothing. Fields that do not
 * apply to the status are left as they were. The entries the walk read are kept (top level
 * first) for inspection.
 */
export class WalkResult<F = unknown> {
  status: WalkStatus = WalkStatus.Ok;
  /** Final physical address (translation succeeded). */
  physicalAddress = 0;
  /** log2 of the page size: 12, 21 or 30. */
  pageShift = PAGE_SHIFT_4K;
  /** Combined rights (`PageRights` bits). */
  rights = 0;
  /** The leaf maps a global page and CR4.PGE = 1. */
  global = false;
  /** The leaf's dirty flag after the walk. */
  dirty = false;
  /** Page-fault error code (status PageFault). */
  errorCode = 0;
  /** Level of the entry that caused a not-present, reserved-bit or access fault; 0 for a rights fault. */
  faultLevel = 0;
  /** The lower layer's fault (status AccessFault). */
  accessFault: F | undefined = undefined;
  /** Paging-structure entries read by this walk (each is one memory reference). */
  references = 0;
  /** Entries written to set accessed/dirty flags. */
  adWrites = 0;
  /** Number of entries recorded below. */
  steps = 0;
  readonly stepLevel = new Uint8Array(MAX_LEVELS);
  readonly stepAddress = new Float64Array(MAX_LEVELS);
  readonly stepLo = new Uint32Array(MAX_LEVELS);
  readonly stepHi = new Uint32Array(MAX_LEVELS);
  /** Scratch for entry reads. */
  readonly entry: U64 = { lo: 0, hi: 0 };
}

/**
 * The error-code bits that describe the access itself (SDM 4.7): W/R, U/S, and I/D when
 * CR4.SMEP = 1 or IA32_EFER.NXE = 1.
 */
export function accessErrorCode(access: number, mode: PagingMode): number {
  let code = access & PFEC_WR;
  if ((access & Access.User) !== 0 && (access & Access.Implicit) === 0) code |= PFEC_US;
  if ((access & Access.Fetch) !== 0 && (mode.smep || mode.nxe)) code |= PFEC_ID;
  return code;
}

/**
 * Access-rights check of SDM 4.6 for a translation with combined `rights`. Returns 0 when the
 * access is allowed, else the page-fault error code (P = 1). The TLB calls this on a hit, the
 * walker at the end of a walk: one rule, one place.
 */
export function checkAccessRights(rights: number, access: number, mode: PagingMode): number {
  const userPage = (rights & PageRights.User) !== 0;
  const writable = (rights & PageRights.Writable) !== 0;
  const noExecute = mode.nxe && (rights & PageRights.NoExecute) !== 0;
  const write = (access & Access.Write) !== 0;
  const implicit = (access & Access.Implicit) !== 0;
  let allowed: boolean;
  if ((access & Access.User) !== 0 && !implicit) {
    // User-mode access: only user-mode addresses; writes need R/W; fetches need XD = 0.
    if ((access & Access.Fetch) !== 0) allowed = userPage && !noExecute;
    else allowed = userPage && (!write || writable);
  } else if ((access & Access.Fetch) !== 0) {
    // Supervisor fetch: never from a user page under SMEP; XD honoured under NXE.
    allowed = !(userPage && mode.smep) && !noExecute;
  } else {
    // Supervisor data access: SMAP blocks user pages unless explicit with RFLAGS.AC = 1;
    // writes honour R/W when CR0.WP = 1.
    allowed = !(userPage && mode.smap && (implicit || !mode.ac)) && (!write || writable || !mode.wp);
  }
  return allowed ? 0 : PFEC_P | accessErrorCode(access, mode);
}

function tableIndex(level: number, vaHi: number, vaLo: number): number {
  switch (level) {
    case 5:
      return (vaHi >>> 16) & 0x1ff; // bits 56:48
    case 4:
      return (vaHi >>> 7) & 0x1ff; // bits 47:39
    case 3:
      return ((vaHi & 0x7f) << 2) | (vaLo >>> 30); // bits 38:30
    case 2:
      return (vaLo >>> 21) & 0x1ff; // bits 29:21
    default:
      return (vaLo >>> 12) & 0x1ff; // bits 20:12
  }
}

/**
 * Translate the linear address `vaHi:vaLo` (bits 63:32 and 31:0) for `access` (`Access` bits),
 * starting from the top-level table at `root` (CR3 bits 51:12, already masked). The result is
 * written into `out`; the status is also returned.
 */
export function walkLinear<F>(
  out: WalkResult<F>,
  mode: PagingMode,
  root: number,
  vaHi: number,
  vaLo: number,
  access: number,
  tables: PagingStructureAccess<F>,
): WalkStatus {
  const rsvdHi = reservedHighMask(mode.maxPhyAddr, mode.nxe);
  const rsvdLo = reservedLowAddressMask(mode.maxPhyAddr);
  const e = out.entry;
  let level = mode.la57 ? 5 : 4;
  let table = root;
  let rights = PageRights.Writable | PageRights.User;
  out.references = 0;
  out.adWrites = 0;
  out.steps = 0;
  out.accessFault = undefined;
  out.faultLevel = 0;

  for (;;) {
    const address = table + tableIndex(level, vaHi, vaLo) * 8;
    const fault = tables.readEntry(address, level as PagingLevel, e);
    if (fault !== undefined) {
      out.status = WalkStatus.AccessFault;
      out.accessFault = fault;
      out.faultLevel = level;
      return WalkStatus.AccessFault;
    }
    const lo = e.lo;
    const hi = e.hi;
    const s = out.steps++;
    out.references++;
    out.stepLevel[s] = level;
    out.stepAddress[s] = address;
    out.stepLo[s] = lo;
    out.stepHi[s] = hi;

    if ((lo & PTE_P) === 0) {
      return pageFault(out, accessErrorCode(access, mode), level);
    }
    const large = level > 1 && (lo & PTE_PS) !== 0; // bit 7 of a PTE is PAT, not PS
    let reserved = (hi & rsvdHi) !== 0 || (lo & rsvdLo) !== 0;
    if (large) {
      if (level >= 4) reserved = true; // PS is reserved in a PML4E and a PML5E
      else if (level === 3) reserved ||= (lo & PDPTE_1G_RSVD_LO) !== 0;
      else if (level === 2) reserved ||= (lo & PDE_2M_RSVD_LO) !== 0;
    }
    if (reserved) {
      return pageFault(out, PFEC_P | PFEC_RSVD | accessErrorCode(access, mode), level);
    }
    rights &= lo | PageRights.NoExecute;
    if ((hi & PTE_HI_XD) !== 0 && mode.nxe) rights |= PageRights.NoExecute;

    if (level === 1 || large) {
      // The leaf: compute the page, then check the combined rights.
      const pageShift = level === 1 ? PAGE_SHIFT_4K : level === 2 ? PAGE_SHIFT_2M : PAGE_SHIFT_1G;
      const loMask = level === 1 ? PTE_LO_ADDR_MASK_4K : level === 2 ? PTE_LO_ADDR_MASK_2M : PTE_LO_ADDR_MASK_1G;
      const offsetMask = level === 1 ? 0xfff : level === 2 ? 0x1f_ffff : 0x3fff_ffff;
      const rightsFault = checkAccessRights(rights, access, mode);
      if (rightsFault !== 0) {
        out.faultLevel = 0;
        return pageFault(out, rightsFault, 0);
      }
      const write = (access & Access.Write) !== 0;
      // Accessed flags top-down, then the leaf's accessed and (for a write) dirty flags.
      for (let i = 0; i < out.steps; i++) {
        const entryLo = out.stepLo[i] as number;
        const leaf = i === out.steps - 1;
        const want = leaf && write ? PTE_A | PTE_D : PTE_A;
        if ((entryLo & want) !== want) {
          const f = tables.setEntryBits(out.stepAddress[i] as number, out.stepLevel[i] as PagingLevel, want);
          out.adWrites++;
          if (f !== undefined) {
            out.status = WalkStatus.AccessFault;
            out.accessFault = f;
            out.faultLevel = out.stepLevel[i] as number;
            return WalkStatus.AccessFault;
          }
          out.stepLo[i] = (entryLo | want) >>> 0;
        }
      }
      out.status = WalkStatus.Ok;
      out.physicalAddress = entryAddress(lo, hi, loMask) + ((vaLo & offsetMask) >>> 0);
      out.pageShift = pageShift;
      out.rights = rights;
      out.global = mode.pge && (lo & PTE_G) !== 0;
      out.dirty = write || (lo & PTE_D) !== 0;
      return WalkStatus.Ok;
    }
    table = entryAddress(lo, hi, PTE_LO_ADDR_MASK_4K);
    level--;
  }
}

function pageFault<F>(out: WalkResult<F>, errorCode: number, level: number): WalkStatus {
  out.status = WalkStatus.PageFault;
  out.errorCode = errorCode;
  out.faultLevel = level;
  return WalkStatus.PageFault;
}

/** Paging structures that live directly in physical memory (a one-dimensional walk). */
export class PhysicalPagingStructures implements PagingStructureAccess<MemoryError> {
  constructor(private readonly memory: PhysicalMemory) {}

  readEntry(address: number, _level: PagingLevel, out: U64): MemoryError | undefined {
    return this.memory.read64(address, out);
  }

  setEntryBits(address: number, _level: PagingLevel, lowBits: number): MemoryError | undefined {
    const lo = this.memory.read32(address);
    if (typeof lo !== "number") return lo;
    return this.memory.write32(address, (lo | lowBits) >>> 0);
  }
}

// ---- A value-returning form for callers off the hot path (tests, tools, the demo) ----

/** One entry the walk read: for printing a walk the way a textbook figure shows it. */
export interface WalkStep {
  readonly level: PagingLevel;
  readonly address: number;
  readonly lo: number;
  readonly hi: number;
}

export interface Translation {
  readonly kind: "translation";
  readonly physicalAddress: number;
  readonly pageShift: number;
  readonly rights: number;
  readonly global: boolean;
  readonly dirty: boolean;
  readonly references: number;
  readonly steps: readonly WalkStep[];
}

export interface PageFault {
  readonly kind: "page-fault";
  /** SDM page-fault error code. */
  readonly errorCode: number;
  /** The faulting linear address (CR2), bits 63:32 and 31:0. */
  readonly addressHi: number;
  readonly addressLo: number;
  /** Level of the entry at fault, 0 when the access rights of a complete translation refused it. */
  readonly level: number;
  readonly references: number;
  readonly steps: readonly WalkStep[];
}

export interface WalkAccessFault<F> {
  readonly kind: "access-fault";
  readonly fault: F;
  readonly level: number;
  readonly references: number;
  readonly steps: readonly WalkStep[];
}

/**
 * Walk and return a value: `Translation`, `PageFault`, or the lower layer's fault. `va` is a
 * linear address below 2^53 (use `walkLinear` for full 64-bit addresses).
 */
export function walk<F>(
  root: number,
  va: number,
  access: number,
  mode: PagingMode,
  tables: PagingStructureAccess<F>,
): Translation | PageFault | WalkAccessFault<F> {
  const out = new WalkResult<F>();
  const vaLo = va >>> 0;
  const vaHi = Math.floor(va / 0x1_0000_0000) >>> 0;
  const status = walkLinear(out, mode, root, vaHi, vaLo, access, tables);
  const steps: WalkStep[] = [];
  for (let i = 0; i < out.steps; i++) {
    steps.push({
      level: out.stepLevel[i] as PagingLevel,
      address: out.stepAddress[i] as number,
      lo: out.stepLo[i] as number,
      hi: out.stepHi[i] as number,
    });
  }
  if (status === WalkStatus.Ok) {
    return {
      kind: "translation",
      physicalAddress: out.physicalAddress,
      pageShift: out.pageShift,
      rights: out.rights,
      global: out.global,
      dirty: out.dirty,
      references: out.references,
      steps,
    };
  }
  if (status === WalkStatus.PageFault) {
    return { kind: "page-fault", errorCode: out.errorCode, addressHi: vaHi, addressLo: vaLo, level: out.faultLevel, references: out.references, steps };
  }
  return { kind: "access-fault", fault: out.accessFault as F, level: out.faultLevel, references: out.references, steps };
}
