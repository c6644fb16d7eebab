/**
 * EPT formats (Intel SDM Vol. 3C, 29.3 "The Extended Page Table Mechanism"): paging-structure
 * entries, the extended-page-table pointer (EPTP), the capabilities a processor reports in
 * IA32_VMX_EPT_VPID_CAP (Appendix A.10), the exit qualification of an EPT violation (28.2.1,
 * Table 28-7) and the misconfiguration rules (29.3.3.1).
 *
 * A 64-bit entry travels as two unsigned 32-bit halves: `lo` holds bits 31:0, `hi` bits 63:32.
 */
import type { U64 } from "@vtlab/arch";

// ---- EPT paging-structure entries: bits of the low half (SDM Tables 29-1 to 29-6) ----
/** SDM: Read access (bit 0): reads allowed from the region this entry controls. */
export const EPT_R = 1 << 0;
/** SDM: Write access (bit 1): writes allowed. */
export const EPT_W = 1 << 1;
/** SDM: Execute access (bit 2): instruction fetches allowed (supervisor-mode fetches under mode-based execute control, not modelled). */
export const EPT_X = 1 << 2;
/** Bits 2:0: an entry with none of them set is not present. */
export const EPT_RWX = EPT_R | EPT_W | EPT_X;
/** SDM: EPT memory type, bits 5:3, in an entry that maps a page. */
export const EPT_MT_SHIFT = 3;
export const EPT_MT_MASK = 7 << EPT_MT_SHIFT;
/** SDM: Ignore PAT memory type (bit 6), in an entry that maps a page. */
export const EPT_IPAT = 1 << 6;
/** SDM: bit 7 of an EPT PDPTE or PDE: 1 = the entry maps a 1 GiB / 2 MiB page. Ignored in a PTE, reserved in a PML4E/PML5E. */
export const EPT_PAGE_SIZE = 1 << 7;
/** SDM: Accessed flag (bit 8), when EPTP bit 6 enables accessed and dirty flags. */
export const EPT_A = 1 << 8;
/** SDM: Dirty flag (bit 9), in an entry that maps a page, when EPTP bit 6 is 1. */
export const EPT_D = 1 << 9;
/** SDM: Execute access for user-mode linear addresses (bit 10): ignored here (mode-based execute control is not modelled). */
export const EPT_UX = 1 << 10;
/** Address bits 31:12 of an entry referencing a table or a 4 KiB page. */
export const EPT_LO_ADDR_MASK_4K = 0xffff_f000;
/** Address bits 31:21 of a 2 MiB page. */
export const EPT_LO_ADDR_MASK_2M = 0xffe0_0000;
/** Address bits 31:30 of a 1 GiB page. */
export const EPT_LO_ADDR_MASK_1G = 0xc000_0000;
/** SDM Table 29-1: bits 7:3 of an EPT PML4E (and PML5E) are reserved. */
export const EPT_PML4E_RSVD_LO = 0x0000_00f8;
/** SDM Tables 29-3, 29-5: bits 6:3 of an EPT PDPTE or PDE that references a table are reserved. */
export const EPT_TABLE_RSVD_LO = 0x0000_0078;
/** SDM Table 29-2: bits 29:12 of an EPT PDPTE that maps a 1 GiB page are reserved. */
export const EPT_1G_RSVD_LO = 0x3fff_f000;
/** SDM Table 29-4: bits 20:12 of an EPT PDE that maps a 2 MiB page are reserved. */
export const EPT_2M_RSVD_LO = 0x001f_f000;

// ---- Bits of the high half ----
/** Address bits 51:32: bits 19:0 of the high half. */
export const EPT_HI_ADDR_MASK = 0x000f_ffff;
/** SDM: Suppress #VE (bit 63), in an entry that maps a page: ignored (EPT-violation #VE is not modelled). */
export const EPT_HI_SVE = 1 << 31;

/** EPT memory types (SDM 29.3.7, Table 11-2 encodings); 2, 3 and 7 are reserved. */
export const EptMemoryType = {
  /** Uncacheable (UC). */
  UC: 0,
  /** Write combining (WC). */
  WC: 1,
  /** Write-through (WT). */
  WT: 4,
  /** Write-protected (WP). */
  WP: 5,
  /** Write-back (WB). */
  WB: 6,
} as const;
export type EptMemoryType = (typeof EptMemoryType)[keyof typeof EptMemoryType];

/** Levels of the EPT hierarchy, named as the SDM names the structures. */
export const EptLevel = { PT: 1, PD: 2, PDPT: 3, PML4: 4, PML5: 5 } as const;
export type EptLevel = (typeof EptLevel)[keyof typeof EptLevel];
export const EPT_LEVEL_NAMES = ["", "EPT PTE", "EPT PDE", "EPT PDPTE", "EPT PML4E", "EPT PML5E"] as const;

/** log2 of the page a leaf at `level` maps: 12, 21 or 30. */
export function levelPageShift(level: number): number {
  return 12 + 9 * (level - 1);
}

// ---- EPTP (SDM 25.6.11, Table 25-9) ----
/** SDM: EPT paging-structure memory type, EPTP bits 2:0 (0 = UC, 6 = WB). */
export const EPTP_MT_MASK = 0x7;
/** SDM: EPT page-walk length minus 1, EPTP bits 5:3 (3 = 4 levels, 4 = 5 levels). */
export const EPTP_PWL_SHIFT = 3;
export const EPTP_PWL_MASK = 7 << EPTP_PWL_SHIFT;
/** SDM: enable accessed and dirty flags for EPT, EPTP bit 6. */
export const EPTP_AD = 1 << 6;
/** SDM: enable supervisor shadow-stack access rights, EPTP bit 7 (not supported: reserved here). */
export const EPTP_SSS = 1 << 7;
/** SDM: EPTP bits 11:8 are reserved. */
export const EPTP_RSVD_LO = 0x0000_0f00;

/**
 * What the processor supports, as IA32_VMX_EPT_VPID_CAP reports it (SDM Appendix A.10). The
 * defaults describe a recent Intel core; tests switch features off to see the checks that
 * depend on them.
 */
export interface EptCapabilities {
  /** Bit 0: execute-only translations (XWR = 100b) are allowed. */
  readonly executeOnly: boolean;
  /** Bit 6: page-walk length 4. */
  readonly walkLength4: boolean;
  /** Bit 7: page-walk length 5. */
  readonly walkLength5: boolean;
  /** Bit 8: the EPT paging structures may be uncacheable (EPTP memory type 0). */
  readonly uncacheable: boolean;
  /** Bit 14: the EPT paging structures may be write-back (EPTP memory type 6). */
  readonly writeBack: boolean;
  /** Bit 16: EPT PDEs may map 2 MiB pages. */
  readonly pages2M: boolean;
  /** Bit 17: EPT PDPTEs may map 1 GiB pages. */
  readonly pages1G: boolean;
  /** Bit 21: accessed and dirty flags for EPT. */
  readonly accessedDirty: boolean;
  /** Bit 25: single-context INVEPT. */
  readonly inveptSingleContext: boolean;
  /** Bit 26: all-context INVEPT. */
  readonly inveptAllContext: boolean;
  /** MAXPHYADDR (CPUID.80000008H:EAX[7:0]): entry bits 51:MAXPHYADDR are reserved. */
  readonly maxPhyAddr: number;
}

export const DEFAULT_EPT_CAPABILITIES: EptCapabilities = Object.freeze({
  executeOnly: true,
  walkLength4: true,
  walkLength5: true,
  uncacheable: true,
  writeBack: true,
  pages2M: true,
  pages1G: true,
  accessedDirty: true,
  inveptSingleContext: true,
  inveptAllContext: true,
  maxPhyAddr: 46,
});

/** Capabilities with some features replaced. */
export function eptCapabilities(overrides: Partial<EptCapabilities> = {}): EptCapabilities {
  return Object.freeze({ ...DEFAULT_EPT_CAPABILITIES, ...overrides });
}

/** Bits 31:0 of IA32_VMX_EPT_VPID_CAP for `caps` (bit 20, INVEPT, is set when either INVEPT type is). */
export function eptVpidCapLow(caps: EptCapabilities): number {
  let v = 0;
  if (caps.executeOnly) v |= 1 << 0;
  if (caps.walkLength4) v |= 1 << 6;
  if (caps.walkLength5) v |= 1 << 7;
  if (caps.uncacheable) v |= 1 << 8;
  if (caps.writeBack) v |= 1 << 14;
  if (caps.pages2M) v |= 1 << 16;
  if (caps.pages1G) v |= 1 << 17;
  if (caps.inveptSingleContext || caps.inveptAllContext) v |= 1 << 20;
  if (caps.accessedDirty) v |= 1 << 21;
  if (caps.inveptSingleContext) v |= 1 << 25;
  if (caps.inveptAllContext) v |= 1 << 26;
  return v >>> 0;
}

/** Reserved bits of the high half of an EPT entry or EPTP for MAXPHYADDR (bits 51:N; bits 63:52 are ignored). */
export function eptReservedHighMask(maxPhyAddr: number): number {
  const addrBits = Math.max(0, Math.min(20, maxPhyAddr - 32));
  return (EPT_HI_ADDR_MASK & ~((1 << addrBits) - 1)) >>> 0;
}

/** Physical address (up to 52 bits) held in an EPT entry, given the low-half address mask. */
export function eptEntryAddress(lo: number, hi: number, loMask: number = EPT_LO_ADDR_MASK_4K): number {
  return (hi & EPT_HI_ADDR_MASK) * 0x1_0000_0000 + ((lo & loMask) >>> 0);
}

/** Build an EPT entry's halves from a 4 KiB-aligned host-physical address and low flag bits. */
export function makeEptEntry(address: number, flagsLo: number, flagsHi = 0): U64 {
  const lo = ((address >>> 0) & EPT_LO_ADDR_MASK_4K) | flagsLo;
  const hi = (Math.floor(address / 0x1_0000_0000) & EPT_HI_ADDR_MASK) | flagsHi;
  return { lo: lo >>> 0, hi: hi >>> 0 };
}

/** The fields of a valid EPTP. */
export interface EptpFields {
  readonly kind: "eptp";
  /** Bits 2:0: memory type of the EPT paging structures. */
  readonly memoryType: number;
  /** Bits 5:3 plus 1: 4 or 5. */
  readonly levels: 4 | 5;
  /** Bit 6: accessed and dirty flags for EPT. */
  readonly accessedDirty: boolean;
  /** Bits 51:12: the EP4TA (the EPT PML4 or PML5 table's host-physical address). */
  readonly root: number;
}

/** An EPTP that VM entry would refuse (SDM 27.2.1.1, "VM-Execution Control Fields"). */
export interface EptpError {
  readonly kind: "eptp-invalid";
  readonly check: "memory-type" | "walk-length" | "accessed-dirty" | "reserved-bits";
  readonly message: string;
}

/** Build an EPTP from its fields (no checks: see `decodeEptp`). */
export function makeEptp(root: number, options: { levels?: 4 | 5; accessedDirty?: boolean; memoryType?: number } = {}): U64 {
  const levels = options.levels ?? 4;
  const lo = ((root >>> 0) & 0xffff_f000) | (options.memoryType ?? EptMemoryType.WB) | ((levels - 1) << EPTP_PWL_SHIFT) | (options.accessedDirty === true ? EPTP_AD : 0);
  return { lo: lo >>> 0, hi: Math.floor(root / 0x1_0000_0000) >>> 0 };
}

/**
 * Check an EPTP the way VM entry does (SDM 27.2.1.1): the memory type must be a supported UC or
 * WB, the page-walk length a supported 4 or 5, bit 6 set only when A/D flags are supported, and
 * bits 11:7 and 63:MAXPHYADDR clear.
 */
export function decodeEptp(lo: number, hi: number, caps: EptCapabilities = DEFAULT_EPT_CAPABILITIES): EptpFields | EptpError {
  const mt = lo & EPTP_MT_MASK;
  if (!((mt === EptMemoryType.UC && caps.uncacheable) || (mt === EptMemoryType.WB && caps.writeBack))) {
    return eptpError("memory-type", `EPTP memory type ${mt} is not a supported UC (0) or WB (6)`);
  }
  const pwl = ((lo & EPTP_PWL_MASK) >>> EPTP_PWL_SHIFT) + 1;
  if (!((pwl === 4 && caps.walkLength4) || (pwl === 5 && caps.walkLength5))) {
    return eptpError("walk-length", `EPTP page-walk length ${pwl} is not supported`);
  }
  if ((lo & EPTP_AD) !== 0 && !caps.accessedDirty) {
    return eptpError("accessed-dirty", "EPTP bit 6 set but accessed and dirty flags for EPT are not supported");
  }
  const addrBitsHi = Math.max(0, Math.min(20, caps.maxPhyAddr - 32));
  if ((lo & (EPTP_RSVD_LO | EPTP_SSS)) !== 0 || (hi & ~((1 << addrBitsHi) - 1)) !== 0) {
    return eptpError("reserved-bits", `EPTP 0x${(hi >>> 0).toString(16)}_${(lo >>> 0).toString(16).padStart(8, "0")} sets reserved bits (11:7 or 63:${caps.maxPhyAddr})`);
  }
  return { kind: "eptp", memoryType: mt, levels: pwl as 4 | 5, accessedDirty: (lo & EPTP_AD) !== 0, root: eptEntryAddress(lo, hi) };
}

function eptpError(check: EptpError["check"], message: string): EptpError {
  return { kind: "eptp-invalid", check, message };
}

// ---- Exit qualification for EPT violations (SDM 28.2.1, Table 28-7), under Xen's names ----
/** Bit 0: the access was a data read. */
export const EPT_READ_VIOLATION = 1 << 0;
/** Bit 1: the access was a data write. */
export const EPT_WRITE_VIOLATION = 1 << 1;
/** Bit 2: the access was an instruction fetch. */
export const EPT_EXEC_VIOLATION = 1 << 2;
/** Bit 3: the logical AND of bit 0 (R) of the EPT entries used to translate the GPA. */
export const EPT_EFFECTIVE_READ = 1 << 3;
/** Bit 4: the logical AND of bit 1 (W). */
export const EPT_EFFECTIVE_WRITE = 1 << 4;
/** Bit 5: the logical AND of bit 2 (X). */
export const EPT_EFFECTIVE_EXEC = 1 << 5;
/** Bit 7: the guest linear-address field is valid (all violations except guest PDPTE loads for PAE paging). */
export const EPT_GLA_VALID = 1 << 7;
/** Bit 8 (when bit 7 is set): the access was to the translation of a linear address, not to a guest paging-structure entry. */
export const EPT_GLA_FAULT = 1 << 8;

/** Human-readable qualification: "read; entry r-x; linear valid; final". */
export function describeQualification(q: number): string {
  const access = [q & EPT_READ_VIOLATION ? "read" : "", q & EPT_WRITE_VIOLATION ? "write" : "", q & EPT_EXEC_VIOLATION ? "fetch" : ""]
    .filter((s) => s !== "")
    .join("+");
  const perms = `${q & EPT_EFFECTIVE_READ ? "r" : "-"}${q & EPT_EFFECTIVE_WRITE ? "w" : "-"}${q & EPT_EFFECTIVE_EXEC ? "x" : "-"}`;
  const parts = [access, `entry ${perms}`];
  if (q & EPT_GLA_VALID) parts.push("linear valid", q & EPT_GLA_FAULT ? "final" : "walk");
  return parts.join("; ");
}

// ---- Misconfigurations (SDM 29.3.3.1) ----
export const EptMisconfigReason = {
  /** Bits 2:0 are 010b (write-only) or 110b (write/execute). */
  WriteWithoutRead: 1,
  /** Bits 2:0 are 100b (execute-only) and the processor does not support it. */
  ExecuteOnlyUnsupported: 2,
  /** A reserved bit is set (including bits 51:MAXPHYADDR, and bit 7 where the page size is unsupported). */
  ReservedBit: 3,
  /** The entry maps a page and its memory type (bits 5:3) is 2, 3 or 7. */
  MemoryType: 4,
} as const;
export type EptMisconfigReason = (typeof EptMisconfigReason)[keyof typeof EptMisconfigReason];

export const EPT_MISCONFIG_REASON_NAMES: Readonly<Record<number, string>> = {
  1: "write without read",
  2: "execute-only not supported",
  3: "reserved bit set",
  4: "reserved memory type",
};

/** Memory types 2, 3 and 7 are reserved: a bit set per type. */
const RESERVED_MT = (1 << 2) | (1 << 3) | (1 << 7);

/**
 * Check a present entry (bits 2:0 not 000b) read at `level`: 0 when it is well formed, else the
 * misconfiguration reason. `rsvdHi` is `eptReservedHighMask(caps.maxPhyAddr)`.
 */
export function eptMisconfigReason(lo: number, hi: number, level: number, caps: EptCapabilities, rsvdHi: number): number {
  const xwr = lo & EPT_RWX;
  if ((xwr & (EPT_R | EPT_W)) === EPT_W) return EptMisconfigReason.WriteWithoutRead;
  if (xwr === EPT_X && !caps.executeOnly) return EptMisconfigReason.ExecuteOnlyUnsupported;
  if ((hi & rsvdHi) !== 0) return EptMisconfigReason.ReservedBit;
  if (level >= 4) {
    if ((lo & EPT_PML4E_RSVD_LO) !== 0) return EptMisconfigReason.ReservedBit;
    return 0;
  }
  const leaf = level === 1 || (lo & EPT_PAGE_SIZE) !== 0;
  if (!leaf) {
    if ((lo & EPT_TABLE_RSVD_LO) !== 0) return EptMisconfigReason.ReservedBit;
    return 0;
  }
  if (level === 3 && ((lo & EPT_1G_RSVD_LO) !== 0 || !caps.pages1G)) return EptMisconfigReason.ReservedBit;
  if (level === 2 && ((lo & EPT_2M_RSVD_LO) !== 0 || !caps.pages2M)) return EptMisconfigReason.ReservedBit;
  if (((RESERVED_MT >>> ((lo & EPT_MT_MASK) >>> EPT_MT_SHIFT)) & 1) !== 0) return EptMisconfigReason.MemoryType;
  return 0;
}

/** Render an EPT entry's bits: "R W X WB IPAT PS A D" (`leaf`: the entry maps a page, so bits 6:3 are its memory type and IPAT). */
export function describeEptEntry(lo: number, leaf: boolean): string {
  const names: string[] = [];
  if (lo & EPT_R) names.push("R");
  if (lo & EPT_W) names.push("W");
  if (lo & EPT_X) names.push("X");
  if (names.length === 0) return "not present";
  if (leaf) {
    const mt = (lo & EPT_MT_MASK) >>> EPT_MT_SHIFT;
    names.push(Object.entries(EptMemoryType).find(([, v]) => v === mt)?.[0] ?? `MT${mt}`);
    if (lo & EPT_IPAT) names.push("IPAT");
  }
  if (lo & EPT_PAGE_SIZE) names.push("PS");
  if (lo & EPT_A) names.push("A");
  if (leaf && lo & EPT_D) names.push("D");
  return names.join(" ");
}
