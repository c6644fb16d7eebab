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
 * - Protection keys (CR4.PKE) and shadow-stack accesses are not modelled.
 *
 * Besides long mode, the walker does 32-bit paging (SDM 4.3: two levels of 4-byte entries, 4 MiB
 * pages with CR4.PSE, their address bits 39:32 in PDE bits 20:13 as PSE-36 has it) and PAE paging
 * (SDM 4.4: the four PDPTE registers, then two levels of 8-byte entries with 2 MiB pages), chosen
 * by `PagingMode.format`. A PAE walk starts from `PagingMode.pdpte`, the PDPTE registers the CPU
 * loaded with `loadPaePdptes` on MOV CR3 (SDM 4.4.1): it makes no memory reference for them, and
 * records the PDPTE it used as the first step (level 3, at CR3 + 8i) for inspection. A 4-byte
 * entry is read as the aligned 8-byte word holding it (its half taken), so a walk never reads
 * past the table's page.
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
  PAGE_SHIFT_4M,
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

/** Which paging-structure format the walk reads (SDM Vol. 3A 4.1.1, Table 4-1). */
export const PagingFormat = {
  /** 4-level or 5-level paging (IA-32e mode: CR0.PG = 1, CR4.PAE = 1, IA32_EFER.LME = 1). */
  Long: 0,
  /** 32-bit paging (CR0.PG = 1, CR4.PAE = 0): two levels of 4-byte entries. */
  Bits32: 1,
  /** PAE paging (CR0.PG = 1, CR4.PAE = 1, IA32_EFER.LME = 0): PDPTE registers, then two levels. */
  Pae: 2,
} as const;
export type PagingFormat = (typeof PagingFormat)[keyof typeof PagingFormat];

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
  /** The paging format (absent: long mode). */
  format?: PagingFormat;
  /** CR4.PSE: 32-bit paging maps 4 MiB pages through PDEs with PS = 1. */
  pse?: boolean;
  /**
   * PAE paging: the four PDPTE registers as (bits 31:0, bits 63:32) pairs, PDPTE i at [2i, 2i+1]
   * (SDM 4.4.1). Present entries were checked for reserved bits when they were loaded.
   */
  pdpte?: Uint32Array;
}

/** A plausible default: 4-level paging, WP and NXE on, MAXPHYADDR 46 (a common Xeon value). */
export function pagingMode(overrides: Partial<PagingMode> = {}): PagingMode {
  return { la57: false, wp: true, nxe: true, smep: false, smap: false, pge: true, ac: false, maxPhyAddr: 46, format: PagingFormat.Long, pse: false, pdpte: new Uint32Array(8), ...overrides };
}

/** SDM Table 4-8: bits 2:1 and 8:5 of a present PAE PDPTE are reserved (must be 0). */
export const PAE_PDPTE_RSVD_LO = 0x0000_01e6;
/** SDM 4.3, Table 4-4: bit 21 of a PDE that maps a 4 MiB page is reserved (must be 0). */
export const PDE_4M_RSVD_LO = 1 << 21;
/** SDM Table 4-4: PSE-36 holds address bits 39:32 of a 4 MiB page in PDE bits 20:13. */
const PDE_4M_HIGH_ADDR_SHIFT = 13;

/**
 * Reserved bits of the low half of a 32-bit-paging PDE that maps a 4 MiB page: bit 21, and of
 * bits 20:13 (address bits 39:32) those at or above MAXPHYADDR (SDM Table 4-4: bits 20:(M-19)
 * are reserved; M is at most 40 here).
 */
export function pde4MReservedLow(maxPhyAddr: number): number {
  const highBits = Math.max(0, Math.min(8, maxPhyAddr - 32)); // address bits 39:32 the PDE can hold
  return (PDE_4M_RSVD_LO | ((0xff << PDE_4M_HIGH_ADDR_SHIFT) & ~(((1 << highBits) - 1) << PDE_4M_HIGH_ADDR_SHIFT))) >>> 0;
}

/** The outcome of loading the PDPTE registers (SDM 4.4.1). */
export const PdpteLoadStatus = {
  Ok: 0,
  /** A present PDPTE has a reserved bit set: the MOV to CR0, CR3 or CR4 is #GP(0) and loads nothing. */
  Reserved: 1,
  /** Reading the PDPT failed in the layer below (`PdpteLoad.accessFault`). */
  AccessFault: 2,
} as const;
export type PdpteLoadStatus = (typeof PdpteLoadStatus)[keyof typeof PdpteLoadStatus];

/**
 * Load the four PAE PDPTEs from the 32-byte-aligned table at CR3 bits 31:5 (SDM 4.4.1: on MOV to
 * CR3 in PAE paging, and on the MOV to CR0 or CR4 that enters it). A present entry with a reserved
 * bit (bits 2:1, 8:5, 63:MAXPHYADDR) makes the load fail; `out` is then unchanged. The reads go
 * through `tables` (under EPT, each is a guest-physical reference that EPT translates).
 */
export function loadPaePdptes<F>(
  tables: PagingStructureAccess<F>,
  cr3: number,
  maxPhyAddr: number,
  out: Uint32Array,
  scratch: U64 = { lo: 0, hi: 0 },
): { status: PdpteLoadStatus; accessFault?: F } {
  const base = ((cr3 >>> 0) & 0xffff_ffe0) >>> 0;
  const rsvdHi = reservedHighMask(maxPhyAddr, false); // bit 63 is reserved in a PDPTE (no XD)
  const rsvdLo = PAE_PDPTE_RSVD_LO | reservedLowAddressMask(maxPhyAddr);
  const next = [0, 0, 0, 0, 0, 0, 0, 0];
  for (let i = 0; i < 4; i++) {
    const fault = tables.readEntry(base + i * 8, 3, scratch);
    if (fault !== undefined) return { status: PdpteLoadStatus.AccessFault, accessFault: fault };
    if ((scratch.lo & PTE_P) !== 0 && ((scratch.lo & rsvdLo) !== 0 || (scratch.hi & rsvdHi) !== 0)) return { status: PdpteLoadStatus.Reserved };
    next[2 * i] = scratch.lo >>> 0;
    next[2 * i + 1] = scratch.hi >>> 0;
  }
  for (let k = 0; k < 8; k++) out[k] = next[k] as number;
  return { status: PdpteLoadStatus.Ok };
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
  /** log2 of the page size: 12, 21 or 30 (22 for a 4 MiB page of 32-bit paging). */
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
  if (mode.format === PagingFormat.Bits32) return walk32(out, mode, root, vaLo, access, tables);
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

  if (mode.format === PagingFormat.Pae) {
    // The PDPTE register for bits 31:30 (no memory reference; it carries no access rights).
    const i = vaLo >>> 30;
    const pdpte = mode.pdpte as Uint32Array;
    const lo = pdpte[2 * i] as number;
    const hi = pdpte[2 * i + 1] as number;
    out.steps = 1;
    out.stepLevel[0] = 3;
    out.stepAddress[0] = ((root >>> 0) & 0xffff_ffe0) + i * 8;
    out.stepLo[0] = lo;
    out.stepHi[0] = hi;
    if ((lo & PTE_P) === 0) return pageFault(out, accessErrorCode(access, mode), 3);
    table = entryAddress(lo, hi, PTE_LO_ADDR_MASK_4K);
    level = 2;
    vaHi = 0;
  }

  for (;;) {
    const address = table + tableIndex(level, vaHi, vaLo) * 8;
    const fault = tables.readEntry(address, level as PagingLevel, e);
    if (fault !== undefined) return accessFault(out, fault, level);
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
      // PAE's PDPTEs (step 0) have no accessed flag: they are loaded into the PDPTE registers.
      if (setAccessedDirty(out, mode.format === PagingFormat.Pae ? 1 : 0, write, tables)) return WalkStatus.AccessFault;
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

/**
 * 32-bit paging (SDM 4.3): a PDE for bits 31:22 in the page directory at CR3 bits 31:12, then a
 * PTE for bits 21:12, both 4 bytes; with CR4.PSE a PDE with PS = 1 maps a 4 MiB page (bit 21
 * reserved, address bits 39:32 from bits 20:13). No execute-disable and no other reserved bits.
 */
function walk32<F>(out: WalkResult<F>, mode: PagingMode, root: number, vaLo: number, access: number, tables: PagingStructureAccess<F>): WalkStatus {
  const e = out.entry;
  let table = ((root >>> 0) & PTE_LO_ADDR_MASK_4K) >>> 0;
  let rights = PageRights.Writable | PageRights.User;
  out.references = 0;
  out.adWrites = 0;
  out.steps = 0;
  out.accessFault = undefined;
  out.faultLevel = 0;
  for (let level = 2; ; level--) {
    const index = level === 2 ? vaLo >>> 22 : (vaLo >>> 12) & 0x3ff;
    const address = table + index * 4;
    // The aligned 8-byte word holding the entry: a read never crosses the table's page.
    const fault = tables.readEntry(address - (address & 4), level as PagingLevel, e);
    if (fault !== undefined) return accessFault(out, fault, level);
    const lo = ((address & 4) !== 0 ? e.hi : e.lo) >>> 0;
    const s = out.steps++;
    out.references++;
    out.stepLevel[s] = level;
    out.stepAddress[s] = address;
    out.stepLo[s] = lo;
    out.stepHi[s] = 0;
    if ((lo & PTE_P) === 0) return pageFault(out, accessErrorCode(access, mode), level);
    const large = level === 2 && mode.pse === true && (lo & PTE_PS) !== 0;
    if (large && (lo & pde4MReservedLow(mode.maxPhyAddr)) !== 0) {
      return pageFault(out, PFEC_P | PFEC_RSVD | accessErrorCode(access, mode), level);
    }
    rights &= lo;
    if (level === 1 || large) {
      const rightsFault = checkAccessRights(rights, access, mode);
      if (rightsFault !== 0) return pageFault(out, rightsFault, 0);
      const write = (access & Access.Write) !== 0;
      if (setAccessedDirty(out, 0, write, tables)) return WalkStatus.AccessFault;
      out.status = WalkStatus.Ok;
      if (large) {
        const high = (lo >>> PDE_4M_HIGH_ADDR_SHIFT) & 0xff; // address bits 39:32 (PSE-36)
        out.physicalAddress = high * 0x1_0000_0000 + ((lo & 0xffc0_0000) >>> 0) + (vaLo & 0x3f_ffff);
        out.pageShift = PAGE_SHIFT_4M;
      } else {
        out.physicalAddress = ((lo & PTE_LO_ADDR_MASK_4K) >>> 0) + (vaLo & 0xfff);
        out.pageShift = PAGE_SHIFT_4K;
      }
      out.rights = rights;
      out.global = mode.pge && (lo & PTE_G) !== 0;
      out.dirty = write || (lo & PTE_D) !== 0;
      return WalkStatus.Ok;
    }
    table = (lo & PTE_LO_ADDR_MASK_4K) >>> 0;
  }
}

/**
 * Set the accessed flags of the walk's steps from `from` top-down, and the leaf's dirty flag for
 * a write (SDM 4.8). True when the lower layer refused a write (out holds the access fault).
 */
function setAccessedDirty<F>(out: WalkResult<F>, from: number, write: boolean, tables: PagingStructureAccess<F>): boolean {
  for (let i = from; i < out.steps; i++) {
    const entryLo = out.stepLo[i] as number;
    const want = i === out.steps - 1 && write ? PTE_A | PTE_D : PTE_A;
    if ((entryLo & want) !== want) {
      const f = tables.setEntryBits(out.stepAddress[i] as number, out.stepLevel[i] as PagingLevel, want);
      out.adWrites++;
      if (f !== undefined) {
        accessFault(out, f, out.stepLevel[i] as number);
        return true;
      }
      out.stepLo[i] = (entryLo | want) >>> 0;
    }
  }
  return false;
}

/** The lower layer refused a read or write of a paging-structure entry at `level`. */
function accessFault<F>(out: WalkResult<F>, fault: F, level: number): WalkStatus {
  out.status = WalkStatus.AccessFault;
  out.accessFault = fault;
  out.faultLevel = level;
  return WalkStatus.AccessFault;
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
