/**
 * Legacy-mode translation structures (VT-d 9.1 root entry, 9.3 context entry, 9.8 second-level
 * paging entries). A 128-bit entry is four little-endian dwords w0..w3; a 64-bit paging entry is
 * two (lo, hi). Addresses are JS numbers (exact below 2^53); the host address width (HAW) decides
 * which address bits are reserved.
 *
 * Everything here is pure: the remapping unit reads an entry once into locals and hands the
 * dwords to these checks, so a hostile table cannot change between check and use.
 */
import type { Hpa } from "@vtlab/arch";

/** Bytes per root or context entry (128 bits). */
export const ROOT_ENTRY_SIZE = 16;
export const CONTEXT_ENTRY_SIZE = 16;
/** Bytes per second-level paging entry (64 bits). */
export const SL_ENTRY_SIZE = 8;
/** Entries per 4 KiB table: 256 root entries (by bus), 256 context entries (by devfn), 512 paging entries. */
export const ROOT_ENTRIES = 256;
export const CONTEXT_ENTRIES = 256;
export const SL_ENTRIES = 512;

// --- Root entry (VT-d 9.1)
/** VT-d: root entry P, bit 0: present. */
export const ROOT_P = 1 << 0;
/** VT-d: root entry bits 11:1 are reserved. */
export const ROOT_W0_RSVD = 0x0000_0ffe;
/** VT-d: root entry CTP, bits 63:12: context-table pointer (lower dword part). */
export const ROOT_CTP_LO_MASK = 0xffff_f000;
// Bits 127:64 of a legacy root entry are reserved (the upper context-table pointer exists only in scalable mode).

// --- Context entry (VT-d 9.3, legacy mode)
/** VT-d: context entry P, bit 0: present. */
export const CTX_P = 1 << 0;
/** VT-d: context entry FPD, bit 1: fault processing disable (suppresses qualified faults). */
export const CTX_FPD = 1 << 1;
/** VT-d: context entry TT, bits 3:2: translation type. */
export const CTX_TT_SHIFT = 2;
export const CTX_TT_MASK = 0x3;
/** VT-d: context entry bits 11:4 are reserved. */
export const CTX_W0_RSVD = 0x0000_0ff0;
/** VT-d: context entry SLPTPTR, bits 63:12: second-level page-translation pointer (lower dword part). */
export const CTX_SLPTPTR_LO_MASK = 0xffff_f000;
/** VT-d: context entry AW, bits 66:64: address width (bits 2:0 of w2). */
export const CTX_W2_AW_MASK = 0x7;
/** VT-d: context entry bit 71 is reserved (bit 7 of w2); bits 70:67 are ignored. */
export const CTX_W2_RSVD_7 = 1 << 7;
/** VT-d: context entry DID, bits 87:72: domain identifier (bits 23:8 of w2). */
export const CTX_W2_DID_SHIFT = 8;
export const CTX_W2_DID_MASK = 0xffff;
/** VT-d: context entry bits 127:88 are reserved (bits 31:24 of w2, all of w3). */
export const CTX_W2_RSVD_HIGH = 0xff00_0000;

/** VT-d: context entry TT values. */
export const TranslationType = {
  /** VT-d: 00b: untranslated requests are translated through the second-level tables. */
  Untranslated: 0x0,
  /** VT-d: 01b: as 00b, and translated/translation requests are allowed (needs ECAP_REG.DT). */
  DeviceTlb: 0x1,
  /** VT-d: 10b: untranslated requests pass through: output address = input address (needs ECAP_REG.PT). */
  PassThrough: 0x2,
  /** VT-d: 11b: reserved. */
  Reserved: 0x3,
} as const;
export type TranslationType = (typeof TranslationType)[keyof typeof TranslationType];

/** VT-d: context entry AW values: 1 = 39-bit AGAW (3 levels), 2 = 48-bit AGAW (4 levels). */
export const AddressWidth = {
  /** VT-d: 001b: 39-bit AGAW, 3-level second-level table. */
  Agaw39: 0x1,
  /** VT-d: 010b: 48-bit AGAW, 4-level second-level table. */
  Agaw48: 0x2,
} as const;
export type AddressWidth = (typeof AddressWidth)[keyof typeof AddressWidth];

/** Adjusted guest address width for an AW value: 30 + 9 * AW. */
export const agawBits = (aw: number): number => 30 + 9 * aw;
/** Second-level table levels for an AW value: AW + 2. */
export const agawLevels = (aw: number): number => aw + 2;
/** AW value for a level count (3 or 4). */
export const awForLevels = (levels: 3 | 4): AddressWidth => (levels === 3 ? AddressWidth.Agaw39 : AddressWidth.Agaw48);

// --- Second-level paging entries (VT-d 9.8)
/** VT-d: SL entry R, bit 0: read permission. */
export const SL_R = 1 << 0;
/** VT-d: SL entry W, bit 1: write permission. */
export const SL_W = 1 << 1;
/** VT-d: SL entry X, bit 2: execute permission (ignored in legacy mode). */
export const SL_X = 1 << 2;
/** VT-d: SL entry EMT (5:3) and IPAT (6) in leaf entries: ignored by this model (ECAP_REG.MTS = 0). */
export const SL_EMT_IPAT = 0x78;
/** VT-d: SL-PDPE/SL-PDE PS, bit 7: page size (1 = this entry maps a 1 GiB / 2 MiB page). Reserved in an SL-PML4E, ignored in an SL-PTE. */
export const SL_PS = 1 << 7;
/** VT-d: SL entry A, bit 8: accessed (ignored in legacy mode). */
export const SL_A = 1 << 8;
/** VT-d: SL entry D, bit 9: dirty (leaf; ignored in legacy mode). */
export const SL_D = 1 << 9;
/** VT-d: SL leaf SNP, bit 11: snoop behaviour (needs ECAP_REG.SC); reserved in non-leaf entries. */
export const SL_SNP = 1 << 11;
/** VT-d: SL entry ADDR, bits (HAW-1):12 (lower dword part). */
export const SL_ADDR_LO_MASK = 0xffff_f000;
/** VT-d: bits 51:32 of an SL entry: the upper address bits (bits above HAW among them are reserved). */
export const SL_HI_ADDR_MASK = 0x000f_ffff;
/** VT-d: SL leaf TM, bit 62: transient mapping (needs ECAP_REG.DT, reserved otherwise; bit 30 of hi). */
export const SL_HI_TM = 1 << 30;
/** VT-d: SL entry bits 61:52 and 63 are ignored (bits 29:20 and 31 of hi). */
export const SL_HI_IGNORED = 0xbff0_0000;
/** VT-d: bits 20:12 of a 2 MiB SL-PDE are reserved. */
export const SL_PDE_2M_RSVD_LO = 0x001f_f000;
/** VT-d: bits 29:12 of a 1 GiB SL-PDPE are reserved. */
export const SL_PDPE_1G_RSVD_LO = 0x3fff_f000;

/** Page shift of a leaf at a given level: 1 = 4 KiB PTE, 2 = 2 MiB PDE, 3 = 1 GiB PDPE. */
export const levelShift = (level: number): number => 12 + 9 * (level - 1);

/**
 * Mask of the reserved address bits in the upper dword for a field that ends at bit 51
 * (SL entries): bits 51:HAW. For HAW <= 32 every upper address bit is reserved.
 */
export function slHiReservedMask(haw: number): number {
  if (haw >= 52) return 0;
  if (haw <= 32) return SL_HI_ADDR_MASK;
  return (SL_HI_ADDR_MASK & ~((1 << (haw - 32)) - 1)) >>> 0;
}

/** Mask of the reserved bits in the upper dword for a pointer field that ends at bit 63 (root CTP, context SLPTPTR, RTADDR): bits 63:HAW. */
export function ptrHiReservedMask(haw: number): number {
  if (haw <= 32) return 0xffff_ffff;
  if (haw >= 64) return 0;
  return ~((1 << (haw - 32)) - 1) >>> 0;
}

/** Join an address from its dwords (lower dword's low 12 bits dropped). */
export function entryAddress(lo: number, hi: number, hiMask: number): number {
  return (hi & hiMask) * 0x1_0000_0000 + ((lo & 0xffff_f000) >>> 0);
}

/** What makes a root entry malformed (present, reserved bits set), or undefined when it is fine. */
export function rootEntryReserved(w0: number, w1: number, w2: number, w3: number, haw: number): string | undefined {
  if ((w0 & ROOT_W0_RSVD) !== 0) return "bits 11:1 set";
  if ((w1 & ptrHiReservedMask(haw)) !== 0) return `context-table pointer above the host address width (${haw} bits)`;
  if (w2 !== 0 || w3 !== 0) return "bits 127:64 set";
  return undefined;
}

/** What makes a present context entry's reserved fields non-zero, or undefined when they are clear. */
export function contextEntryReserved(w0: number, w1: number, w2: number, w3: number, haw: number): string | undefined {
  if ((w0 & CTX_W0_RSVD) !== 0) return "bits 11:4 set";
  if ((w1 & ptrHiReservedMask(haw)) !== 0) return `second-level pointer above the host address width (${haw} bits)`;
  if ((w2 & CTX_W2_RSVD_7) !== 0) return "bit 71 set";
  if ((w2 & CTX_W2_RSVD_HIGH) !== 0 || w3 !== 0) return "bits 127:88 set";
  return undefined;
}

// --- Encoders: what a driver (the hypervisor) writes. They produce the dwords; callers store them.

/** Dwords of a present root entry pointing at a context table. */
export function makeRootEntry(contextTable: Hpa): [number, number, number, number] {
  return [((contextTable % 0x1_0000_0000) & ROOT_CTP_LO_MASK | ROOT_P) >>> 0, Math.floor(contextTable / 0x1_0000_0000) >>> 0, 0, 0];
}

export interface ContextEntryFields {
  readonly domainId: number;
  readonly translationType: TranslationType;
  /** Second-level table root (ignored by hardware for pass-through). */
  readonly slptptr: Hpa;
  readonly addressWidth: number;
  readonly faultProcessingDisable?: boolean;
  readonly present?: boolean;
}

/** Dwords of a legacy context entry. */
export function makeContextEntry(f: ContextEntryFields): [number, number, number, number] {
  const w0 =
    ((f.slptptr % 0x1_0000_0000) & CTX_SLPTPTR_LO_MASK) |
    ((f.translationType & CTX_TT_MASK) << CTX_TT_SHIFT) |
    (f.faultProcessingDisable === true ? CTX_FPD : 0) |
    (f.present === false ? 0 : CTX_P);
  const w2 = (f.addressWidth & CTX_W2_AW_MASK) | ((f.domainId & CTX_W2_DID_MASK) << CTX_W2_DID_SHIFT);
  return [w0 >>> 0, Math.floor(f.slptptr / 0x1_0000_0000) >>> 0, w2 >>> 0, 0];
}

/** The (lo, hi) dwords of a second-level entry: `address` must be 4 KiB aligned. */
export function makeSlEntry(address: number, flags: number): { lo: number; hi: number } {
  return { lo: ((address % 0x1_0000_0000) & SL_ADDR_LO_MASK | flags) >>> 0, hi: Math.floor(address / 0x1_0000_0000) >>> 0 };
}

/** A decoded context entry, for inspection and for the context cache. */
export interface ContextEntry {
  readonly present: boolean;
  readonly faultProcessingDisable: boolean;
  readonly translationType: number;
  readonly slptptr: number;
  readonly addressWidth: number;
  readonly domainId: number;
}

export function decodeContextEntry(w0: number, w1: number, w2: number): ContextEntry {
  return {
    present: (w0 & CTX_P) !== 0,
    faultProcessingDisable: (w0 & CTX_FPD) !== 0,
    translationType: (w0 >>> CTX_TT_SHIFT) & CTX_TT_MASK,
    slptptr: entryAddress(w0, w1, 0xffff_ffff),
    addressWidth: w2 & CTX_W2_AW_MASK,
    domainId: (w2 >>> CTX_W2_DID_SHIFT) & CTX_W2_DID_MASK,
  };
}
