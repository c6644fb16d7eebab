/**
 * x86 long-mode paging-structure entry formats (Intel SDM Vol. 3A, 4.5 "4-Level Paging and
 * 5-Level Paging", Tables 4-14 to 4-20). A 64-bit entry travels as two unsigned 32-bit halves:
 * `lo` holds bits 31:0 and `hi` bits 63:32.
 */

// ---- Bits of the low half (bits 31:0), common to every level ----
/** SDM: P (present), bit 0. */
export const PTE_P = 1 << 0;
/** SDM: R/W (read/write), bit 1: 0 = writes not allowed through this entry. */
export const PTE_RW = 1 << 1;
/** SDM: U/S (user/supervisor), bit 2: 0 = user-mode accesses not allowed. */
export const PTE_US = 1 << 2;
/** SDM: PWT (page-level write-through), bit 3. */
export const PTE_PWT = 1 << 3;
/** SDM: PCD (page-level cache disable), bit 4. */
export const PTE_PCD = 1 << 4;
/** SDM: A (accessed), bit 5. */
export const PTE_A = 1 << 5;
/** SDM: D (dirty), bit 6: only in an entry that maps a page. */
export const PTE_D = 1 << 6;
/** SDM: PS (page size), bit 7 in a PDPTE (1 GiB page) or PDE (2 MiB page); reserved in PML4E/PML5E. */
export const PTE_PS = 1 << 7;
/** SDM: PAT, bit 7 in a PTE (4 KiB page). */
export const PTE_PAT_4K = 1 << 7;
/** SDM: G (global), bit 8, in an entry that maps a page; honoured when CR4.PGE = 1. */
export const PTE_G = 1 << 8;
/** SDM: PAT, bit 12 in a PDPTE or PDE that maps a page. */
export const PTE_PAT_LARGE = 1 << 12;

// ---- Bits of the high half (bits 63:32) ----
/** SDM: XD (execute-disable), bit 63 = bit 31 of the high half; reserved when IA32_EFER.NXE = 0. */
export const PTE_HI_XD = 1 << 31;
/** Bits 51:32 of a physical address: bits 19:0 of the high half. */
export const PTE_HI_ADDR_MASK = 0x000f_ffff;

/** Address bits 31:12 in the low half of an entry that references a table or a 4 KiB page. */
export const PTE_LO_ADDR_MASK_4K = 0xffff_f000;
/** Address bits 31:21 of a 2 MiB page (bits 20:13 reserved, 12 = PAT). */
export const PTE_LO_ADDR_MASK_2M = 0xffe0_0000;
/** Address bits 31:30 of a 1 GiB page (bits 29:13 reserved, 12 = PAT). */
export const PTE_LO_ADDR_MASK_1G = 0xc000_0000;
/** SDM Table 4-17: bits 20:13 of a PDE that maps a 2 MiB page are reserved (must be 0). */
export const PDE_2M_RSVD_LO = 0x001f_e000;
/** SDM Table 4-15: bits 29:13 of a PDPTE that maps a 1 GiB page are reserved (must be 0). */
export const PDPTE_1G_RSVD_LO = 0x3fff_e000;

/** Page-fault error code bits (SDM Vol. 3A, 4.7, Figure 4-12). */
/** SDM: P, bit 0: 0 = not-present page, 1 = protection violation (or reserved bit). */
export const PFEC_P = 1 << 0;
/** SDM: W/R, bit 1: the access was a write. */
export const PFEC_WR = 1 << 1;
/** SDM: U/S, bit 2: the access was a user-mode access (CPL = 3). */
export const PFEC_US = 1 << 2;
/** SDM: RSVD, bit 3: a reserved bit was set in a paging-structure entry. */
export const PFEC_RSVD = 1 << 3;
/** SDM: I/D, bit 4: instruction fetch (only when CR4.SMEP = 1 or IA32_EFER.NXE = 1). */
export const PFEC_ID = 1 << 4;
/** SDM: PK, bit 5: protection-key violation (not modelled: protection keys are not supported). */
export const PFEC_PK = 1 << 5;

/** Levels of the paging hierarchy, named as the SDM names the structures. */
export const PagingLevel = {
  PT: 1,
  PD: 2,
  PDPT: 3,
  PML4: 4,
  PML5: 5,
} as const;
export type PagingLevel = (typeof PagingLevel)[keyof typeof PagingLevel];

export const PAGING_LEVEL_NAMES = ["", "PTE", "PDE", "PDPTE", "PML4E", "PML5E"] as const;

/** Page sizes as log2 of the byte size. */
export const PAGE_SHIFT_4K = 12;
export const PAGE_SHIFT_2M = 21;
export const PAGE_SHIFT_1G = 30;
/** A 4 MiB page of 32-bit paging with CR4.PSE = 1 (SDM 4.3). */
export const PAGE_SHIFT_4M = 22;

/**
 * Reserved bits of the high half (bits 63:32) of a present entry for a given MAXPHYADDR and
 * IA32_EFER.NXE (SDM 4.5: bits 51:MAXPHYADDR are reserved; XD is reserved when NXE = 0).
 * Bits 62:52 are ignored (protection keys, bits 62:59, are not modelled).
 */
export function reservedHighMask(maxPhyAddr: number, nxe: boolean): number {
  const addrBits = Math.max(0, Math.min(20, maxPhyAddr - 32));
  const rsvd = PTE_HI_ADDR_MASK & ~((1 << addrBits) - 1);
  return (nxe ? rsvd : rsvd | PTE_HI_XD) >>> 0;
}

/** Reserved bits of the low half (bits 31:0) for MAXPHYADDR below 32 (rare, but legal). */
export function reservedLowAddressMask(maxPhyAddr: number): number {
  if (maxPhyAddr >= 32) return 0;
  return (PTE_LO_ADDR_MASK_4K & ~((2 ** maxPhyAddr - 1) >>> 0)) >>> 0;
}

/** Physical address (up to 52 bits) held in an entry, given the low-half address mask. */
export function entryAddress(lo: number, hi: number, loMask: number = PTE_LO_ADDR_MASK_4K): number {
  return (hi & PTE_HI_ADDR_MASK) * 0x1_0000_0000 + ((lo & loMask) >>> 0);
}

/**
 * Build an entry's halves from a 4 KiB-aligned physical address and flag bits (for page-table
 * builders). `flagsLo` may include PTE_PAT_LARGE for a large page (its address is aligned).
 */
export function makeEntry(address: number, flagsLo: number, flagsHi = 0): { lo: number; hi: number } {
  const lo = ((address >>> 0) & PTE_LO_ADDR_MASK_4K) | flagsLo;
  const hi = (Math.floor(address / 0x1_0000_0000) & PTE_HI_ADDR_MASK) | flagsHi;
  return { lo: lo >>> 0, hi: hi >>> 0 };
}

/** Render an entry's flags the way a textbook figure would: "P RW US A D PS G XD". */
export function describeEntryFlags(lo: number, hi: number): string {
  const names: string[] = [];
  if (lo & PTE_P) names.push("P");
  if (lo & PTE_RW) names.push("RW");
  if (lo & PTE_US) names.push("US");
  if (lo & PTE_PWT) names.push("PWT");
  if (lo & PTE_PCD) names.push("PCD");
  if (lo & PTE_A) names.push("A");
  if (lo & PTE_D) names.push("D");
  if (lo & PTE_PS) names.push("PS");
  if (lo & PTE_G) names.push("G");
  if (hi & PTE_HI_XD) names.push("XD");
  return names.join(" ");
}
