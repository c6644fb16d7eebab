/**
 * An independent model of IA-32e (4-level and 5-level) paging, written from the Intel SDM Vol. 3A:
 *
 * - 4.5   4-level / 5-level paging: how the walk proceeds, entry formats, reserved bits;
 * - 4.6   access rights (supervisor / user, R/W, U/S, XD, CR0.WP, CR4.SMEP, CR4.SMAP, RFLAGS.AC);
 * - 4.7   the page-fault error code;
 * - 4.8   accessed and dirty flags.
 *
 * It deliberately imports nothing from `@vtlab/arch`: it is the oracle the walker is tested
 * against, so it has its own bit names, its own reserved-bit table and its own access-rights
 * rules. Entries are raw 64-bit values carried as two unsigned 32-bit halves (lo = bits 31:0,
 * hi = bits 63:32).
 *
 * Modelling choices that the SDM leaves open, taken from the package's documented behaviour:
 * - accessed/dirty flags are written only when the whole translation succeeds (walk first, then
 *   update); a walk ending in #PF writes nothing;
 * - an "implicit" access is an implicit supervisor-mode access whatever the CPL (SDM 4.6.1), so an
 *   implicit instruction fetch is treated as a supervisor-mode fetch.
 */

// ---------------------------------------------------------------------------------------------
// Paging-structure entry bits (SDM 4.5, Tables 4-15 .. 4-20), as masks on the low half.
// ---------------------------------------------------------------------------------------------

/** Bit 0, Present. */
export const SDM_P = 1 << 0;
/** Bit 1, Read/write: 0 = writes may be disallowed. */
export const SDM_RW = 1 << 1;
/** Bit 2, User/supervisor: 0 = user-mode accesses are not allowed. */
export const SDM_US = 1 << 2;
/** Bit 3, Page-level write-through. */
export const SDM_PWT = 1 << 3;
/** Bit 4, Page-level cache disable. */
export const SDM_PCD = 1 << 4;
/** Bit 5, Accessed. */
export const SDM_A = 1 << 5;
/** Bit 6, Dirty (only in an entry that maps a page; ignored elsewhere). */
export const SDM_D = 1 << 6;
/** Bit 7, Page size in a PDPTE/PDE; PAT in a PTE; reserved (must be 0) in a PML4E/PML5E. */
export const SDM_PS = 1 << 7;
/** Bit 8, Global (only in an entry that maps a page). */
export const SDM_G = 1 << 8;
/** Bit 12, PAT in an entry that maps a 2 MiB or 1 GiB page. */
export const SDM_PAT_LARGE = 1 << 12;
/** Bit 63, Execute-disable, as a mask on the HIGH half (bit 31 of bits 63:32). */
export const SDM_XD_HI = 0x8000_0000;

// ---------------------------------------------------------------------------------------------
// Page-fault error code (SDM 4.7, Figure 4-12).
// ---------------------------------------------------------------------------------------------

/** 0 = not-present page; 1 = protection violation or reserved bit. */
export const PFEC_P_BIT = 1 << 0;
/** 1 = the access was a write. */
export const PFEC_WR_BIT = 1 << 1;
/** 1 = a user-mode access (CPL = 3 and not an implicit supervisor-mode access). */
export const PFEC_US_BIT = 1 << 2;
/** 1 = a reserved bit was set in some paging-structure entry. */
export const PFEC_RSVD_BIT = 1 << 3;
/** 1 = an instruction fetch, reported only if CR4.SMEP = 1 or (PAE/4-level and EFER.NXE = 1). */
export const PFEC_ID_BIT = 1 << 4;

// ---------------------------------------------------------------------------------------------
// Inputs and outputs.
// ---------------------------------------------------------------------------------------------

/** SDM level numbers: the table an entry lives in. */
export const LEVEL_PTE = 1;
export const LEVEL_PDE = 2;
export const LEVEL_PDPTE = 3;
export const LEVEL_PML4E = 4;
export const LEVEL_PML5E = 5;
export const LEVEL_NAME: Readonly<Record<number, string>> = {
  1: "PTE",
  2: "PDE",
  3: "PDPTE",
  4: "PML4E",
  5: "PML5E",
};

export interface RawEntry {
  lo: number;
  hi: number;
}

export interface OracleMode {
  /** CR4.LA57: 5-level paging. */
  la57: boolean;
  /** CR0.WP. */
  wp: boolean;
  /** IA32_EFER.NXE. */
  nxe: boolean;
  /** CR4.SMEP. */
  smep: boolean;
  /** CR4.SMAP. */
  smap: boolean;
  /** RFLAGS.AC. */
  ac: boolean;
  /** MAXPHYADDR (CPUID.80000008H:EAX[7:0]), 36..52. */
  maxPhyAddr: number;
}

export type Operation = "read" | "write" | "fetch";

/**
 * Who makes the access (SDM 4.6.1):
 * - `user`: CPL = 3, an ordinary (explicit) access: a user-mode access;
 * - `supervisor`: CPL < 3, an explicit supervisor-mode access;
 * - `implicit`: an implicit supervisor-mode access made at CPL < 3 (e.g. a GDT read);
 * - `implicit-cpl3`: an implicit supervisor-mode access made while CPL = 3.
 */
export type Privilege = "user" | "supervisor" | "implicit" | "implicit-cpl3";

export interface OracleAccess {
  op: Operation;
  privilege: Privilege;
}

export type FaultReason = "none" | "not-present" | "reserved" | "rights";

export interface OracleOutcome {
  fault: boolean;
  reason: FaultReason;
  /** #PF error code; 0 when there is no fault. */
  errorCode: number;
  /** SDM level of the entry where a not-present / reserved-bit fault was found; 0 otherwise. */
  faultLevel: number;
  /** How many paging-structure entries the walk read. */
  entriesRead: number;
  /** Physical address of each entry read, in walk order. */
  entryAddresses: number[];
  /** SDM level of each entry read, in walk order. */
  entryLevels: number[];
  /** 12, 21 or 30 on success; 0 on a fault. */
  pageShift: number;
  /** Translated physical address on success; -1 on a fault. */
  physicalAddress: number;
  /**
   * The entries as memory must hold them after the access: same length as the input `entries`;
   * entries the walk never read are unchanged.
   */
  after: RawEntry[];
}

export interface OracleInput {
  /** Physical address of the top table (CR3 bits 51:12). */
  root: number;
  /** Linear address, below 2^53 so that it is exact in a double. */
  va: number;
  /**
   * The entries on the walk path, top table first (PML5E or PML4E). Entries after the one that
   * ends the walk (not present, reserved bit, or a page mapping) are ignored.
   */
  entries: readonly RawEntry[];
  mode: OracleMode;
  access: OracleAccess;
}

// ---------------------------------------------------------------------------------------------
// Small 64-bit helpers on (lo, hi) halves.
// ---------------------------------------------------------------------------------------------

const TWO32 = 0x1_0000_0000;

/** Bits hiBit..loBit (inclusive, 0..63) as a {lo, hi} mask. Empty when hiBit < loBit. */
export function bitRange(hiBit: number, loBit: number): RawEntry {
  let lo = 0;
  let hi = 0;
  for (let b = loBit; b <= hiBit; b++) {
    if (b < 32) lo |= 1 << b;
    else hi |= 1 << (b - 32);
  }
  return { lo: lo >>> 0, hi: hi >>> 0 };
}

/** A single bit (0..63) as a {lo, hi} mask. */
export function bitAt(b: number): RawEntry {
  return bitRange(b, b);
}

/** Bits 51:12 of an entry as a physical address (a 4 KiB-aligned frame base). */
function frameBase(e: RawEntry): number {
  return (e.hi & 0x000f_ffff) * TWO32 + ((e.lo & 0xffff_f000) >>> 0);
}

/** The 9-bit index the linear address selects in a table of the given level (SDM 4.5). */
export function tableIndex(va: number, level: number): number {
  return Math.floor(va / 2 ** (12 + 9 * (level - 1))) % 512;
}

/**
 * Address of the entry used at `level`: bits 51:12 from the table base, bits 11:3 the linear
 * address index, bits 2:0 zero.
 */
export function entryAddressIn(tableBase: number, va: number, level: number): number {
  return tableBase + tableIndex(va, level) * 8;
}

/** Base of the table an entry references (bits 51:12 of the entry). */
export function nextTableBase(e: RawEntry): number {
  return frameBase(e);
}

// ---------------------------------------------------------------------------------------------
// Reserved bits (SDM 4.5.4, Tables 4-15 .. 4-20; "no valid translation" rules).
//
//   entry                     | reserved always          | + if NXE = 0 | + if PS = 1
//   --------------------------+--------------------------+--------------+------------------------
//   PML5E                     | 51:MAXPHYADDR, 7 (PS)    | 63 (XD)      | (PS is itself reserved)
//   PML4E                     | 51:MAXPHYADDR, 7 (PS)    | 63 (XD)      | (PS is itself reserved)
//   PDPTE                     | 51:MAXPHYADDR            | 63 (XD)      | 29:13 (1 GiB page)
//   PDE                       | 51:MAXPHYADDR            | 63 (XD)      | 20:13 (2 MiB page)
//   PTE                       | 51:MAXPHYADDR            | 63 (XD)      | (bit 7 is PAT)
//
// Reserved bits are checked only in present entries (P = 1).
// ---------------------------------------------------------------------------------------------

const reservedCache = new Map<number, RawEntry>();

export function reservedMask(level: number, maxPhyAddr: number, nxe: boolean, ps: boolean): RawEntry {
  const key = level * 1000 + maxPhyAddr * 4 + (nxe ? 2 : 0) + (ps ? 1 : 0);
  const cached = reservedCache.get(key);
  if (cached !== undefined) return cached;
  let lo = 0;
  let hi = 0;
  const add = (m: RawEntry): void => {
    lo |= m.lo;
    hi |= m.hi;
  };
  add(bitRange(51, maxPhyAddr));
  if (!nxe) add(bitAt(63));
  if (level === LEVEL_PML5E || level === LEVEL_PML4E) add(bitAt(7));
  if (level === LEVEL_PDPTE && ps) add(bitRange(29, 13));
  if (level === LEVEL_PDE && ps) add(bitRange(20, 13));
  const mask = { lo: lo >>> 0, hi: hi >>> 0 };
  reservedCache.set(key, mask);
  return mask;
}

// ---------------------------------------------------------------------------------------------
// Access rights (SDM 4.6.1), in the SDM's own structure.
//
// A linear address is a user-mode address if U/S = 1 in EVERY entry of the walk, otherwise a
// supervisor-mode address. "writable" = R/W = 1 in every entry; "executable" = XD = 0 in every
// entry.
//
// User-mode access (CPL 3, not implicit):
//   read   : only user-mode addresses
//   write  : only user-mode addresses that are writable (CR0.WP does not matter)
//   fetch  : only user-mode addresses; with NXE = 1 they must also be executable
// Supervisor-mode access (explicit at CPL < 3, or implicit at any CPL):
//   read   : supervisor-mode address: always
//            user-mode address: SMAP = 0 -> allowed; SMAP = 1 -> allowed only if AC = 1 and explicit
//   write  : the WP rule: WP = 0 -> allowed; WP = 1 -> only if writable;
//            supervisor-mode address: the WP rule
//            user-mode address: SMAP = 0 -> the WP rule;
//                               SMAP = 1 -> the WP rule only if AC = 1 and explicit, else refused
//   fetch  : the XD rule: NXE = 0 -> allowed; NXE = 1 -> only if executable;
//            supervisor-mode address: the XD rule
//            user-mode address: SMEP = 1 -> refused; SMEP = 0 -> the XD rule
// ---------------------------------------------------------------------------------------------

interface AddressRights {
  userMode: boolean;
  writable: boolean;
  executable: boolean;
}

export function isSupervisorAccess(p: Privilege): boolean {
  return p !== "user";
}

export function isImplicitAccess(p: Privilege): boolean {
  return p === "implicit" || p === "implicit-cpl3";
}

export function accessPermitted(access: OracleAccess, mode: OracleMode, rights: AddressRights): boolean {
  const { op, privilege } = access;
  if (!isSupervisorAccess(privilege)) {
    if (!rights.userMode) return false;
    if (op === "read") return true;
    if (op === "write") return rights.writable;
    return !mode.nxe || rights.executable;
  }
  const explicitWithAc = mode.ac && !isImplicitAccess(privilege);
  if (op === "read") {
    if (!rights.userMode) return true;
    if (!mode.smap) return true;
    return explicitWithAc;
  }
  if (op === "write") {
    const wpRule = !mode.wp || rights.writable;
    if (!rights.userMode) return wpRule;
    if (!mode.smap) return wpRule;
    return explicitWithAc && wpRule;
  }
  const xdRule = !mode.nxe || rights.executable;
  if (!rights.userMode) return xdRule;
  if (mode.smep) return false;
  return xdRule;
}

// ---------------------------------------------------------------------------------------------
// Page-fault error code (SDM 4.7).
// ---------------------------------------------------------------------------------------------

export function expectedErrorCode(reason: FaultReason, access: OracleAccess, mode: OracleMode): number {
  let code = 0;
  if (reason !== "not-present") code |= PFEC_P_BIT;
  if (access.op === "write") code |= PFEC_WR_BIT;
  if (access.privilege === "user") code |= PFEC_US_BIT;
  if (reason === "reserved") code |= PFEC_RSVD_BIT;
  // 4-level and 5-level paging always have CR4.PAE = 1, so I/D depends on SMEP or NXE.
  if (access.op === "fetch" && (mode.smep || mode.nxe)) code |= PFEC_ID_BIT;
  return code;
}

// ---------------------------------------------------------------------------------------------
// The walk (SDM 4.5.4), access-rights check (4.6), error code (4.7) and A/D update (4.8).
// ---------------------------------------------------------------------------------------------

export function sdmWalk(input: OracleInput): OracleOutcome {
  const { va, entries, mode, access } = input;
  const top = mode.la57 ? LEVEL_PML5E : LEVEL_PML4E;
  const after = entries.map((e) => ({ lo: e.lo >>> 0, hi: e.hi >>> 0 }));
  const entryAddresses: number[] = [];
  const entryLevels: number[] = [];
  let tableBase = input.root;
  let userMode = true;
  let writable = true;
  let executable = true;

  const fail = (reason: FaultReason, faultLevel: number): OracleOutcome => ({
    fault: true,
    reason,
    errorCode: expectedErrorCode(reason, access, mode),
    faultLevel,
    entriesRead: entryAddresses.length,
    entryAddresses,
    entryLevels,
    pageShift: 0,
    physicalAddress: -1,
    after,
  });

  for (let i = 0, level = top; level >= LEVEL_PTE; i++, level--) {
    const e = entries[i];
    if (e === undefined) throw new Error(`oracle: no entry given for ${LEVEL_NAME[level]}`);
    entryAddresses.push(entryAddressIn(tableBase, va, level));
    entryLevels.push(level);

    // Not present: the walk stops; nothing else in the entry is looked at.
    if ((e.lo & SDM_P) === 0) return fail("not-present", level);

    // PS only means "maps a page" in a PDPTE (1 GiB) or a PDE (2 MiB).
    const ps = (level === LEVEL_PDPTE || level === LEVEL_PDE) && (e.lo & SDM_PS) !== 0;
    const rsvd = reservedMask(level, mode.maxPhyAddr, mode.nxe, ps);
    if ((e.lo & rsvd.lo) !== 0 || (e.hi & rsvd.hi) !== 0) return fail("reserved", level);

    if ((e.lo & SDM_US) === 0) userMode = false;
    if ((e.lo & SDM_RW) === 0) writable = false;
    if ((e.hi & SDM_XD_HI) !== 0) executable = false;

    const isLeaf = level === LEVEL_PTE || ps;
    if (!isLeaf) {
      tableBase = nextTableBase(e);
      continue;
    }

    // The translation is complete: now (and only now) the access rights are checked.
    if (!accessPermitted(access, mode, { userMode, writable, executable })) return fail("rights", 0);

    const pageShift = level === LEVEL_PTE ? 12 : level === LEVEL_PDE ? 21 : 30;
    const baseLo =
      level === LEVEL_PTE ? e.lo & 0xffff_f000 : level === LEVEL_PDE ? e.lo & 0xffe0_0000 : e.lo & 0xc000_0000;
    const base = (e.hi & 0x000f_ffff) * TWO32 + (baseLo >>> 0);
    const physicalAddress = base + (va % 2 ** pageShift);

    // SDM 4.8: A in every entry used; D in the entry that maps the page, on a write.
    for (let j = 0; j <= i; j++) {
      const a = after[j] as RawEntry;
      a.lo = (a.lo | SDM_A) >>> 0;
    }
    if (access.op === "write") {
      const leaf = after[i] as RawEntry;
      leaf.lo = (leaf.lo | SDM_D) >>> 0;
    }
    return {
      fault: false,
      reason: "none",
      errorCode: 0,
      faultLevel: 0,
      entriesRead: entryAddresses.length,
      entryAddresses,
      entryLevels,
      pageShift,
      physicalAddress,
      after,
    };
  }
  throw new Error("oracle: walk fell off the bottom level");
}
