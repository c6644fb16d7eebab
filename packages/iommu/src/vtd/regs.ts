/**
 * The DMA-remapping unit's register page (Intel VT-d specification, chapter 10 "Register
 * Descriptions"). Offsets and bits carry the specification's names. 64-bit registers are
 * accessed as two 32-bit halves (the specification allows software to split a quadword access,
 * low half first; arch's MmioBus does exactly that), so bit constants of a 64-bit register are
 * given for the half they live in: `*_HI_*` constants are bit (n - 32) of the upper dword.
 */

/** Size of the register page: one 4 KiB page, as every DRHD's register set. */
export const VTD_REG_PAGE_SIZE = 0x1000;

// --- Register offsets (VT-d 10.4, Table "Address Mapping for Remapping Hardware Registers").
/** VT-d: VER_REG, Version Register (32-bit). */
export const VER_REG = 0x000;
/** VT-d: CAP_REG, Capability Register (64-bit). */
export const CAP_REG = 0x008;
/** VT-d: ECAP_REG, Extended Capability Register (64-bit). */
export const ECAP_REG = 0x010;
/** VT-d: GCMD_REG, Global Command Register (32-bit, write-only). */
export const GCMD_REG = 0x018;
/** VT-d: GSTS_REG, Global Status Register (32-bit, read-only). */
export const GSTS_REG = 0x01c;
/** VT-d: RTADDR_REG, Root Table Address Register (64-bit). */
export const RTADDR_REG = 0x020;
/** VT-d: CCMD_REG, Context Command Register (64-bit). */
export const CCMD_REG = 0x028;
/** VT-d: FSTS_REG, Fault Status Register (32-bit). */
export const FSTS_REG = 0x034;
/** VT-d: FECTL_REG, Fault Event Control Register (32-bit). */
export const FECTL_REG = 0x038;
/** VT-d: FEDATA_REG, Fault Event Data Register (32-bit). */
export const FEDATA_REG = 0x03c;
/** VT-d: FEADDR_REG, Fault Event Address Register (32-bit). */
export const FEADDR_REG = 0x040;
/** VT-d: FEUADDR_REG, Fault Event Upper Address Register (32-bit). */
export const FEUADDR_REG = 0x044;
/** VT-d: IQH_REG, Invalidation Queue Head Register (64-bit, read-only). */
export const IQH_REG = 0x080;
/** VT-d: IQT_REG, Invalidation Queue Tail Register (64-bit). */
export const IQT_REG = 0x088;
/** VT-d: IQA_REG, Invalidation Queue Address Register (64-bit). */
export const IQA_REG = 0x090;
/** VT-d: ICS_REG, Invalidation Completion Status Register (32-bit). */
export const ICS_REG = 0x09c;
/** VT-d: IECTL_REG, Invalidation Event Control Register (32-bit). */
export const IECTL_REG = 0x0a0;
/** VT-d: IEDATA_REG, Invalidation Event Data Register (32-bit). */
export const IEDATA_REG = 0x0a4;
/** VT-d: IEADDR_REG, Invalidation Event Address Register (32-bit). */
export const IEADDR_REG = 0x0a8;
/** VT-d: IEUADDR_REG, Invalidation Event Upper Address Register (32-bit). */
export const IEUADDR_REG = 0x0ac;
/** VT-d: IQERCD_REG, Invalidation Queue Error Record Register (64-bit, read-only). */
export const IQERCD_REG = 0x0b0;

/**
 * Where this model places the IOTLB registers: ECAP_REG.IRO (in 16-byte units) says so to
 * software. VT-d: IVA_REG at IRO*16, IOTLB_REG at IRO*16 + 8.
 */
export const IOTLB_REG_OFFSET = 0x100;
/** VT-d: IVA_REG, Invalidate Address Register (64-bit). */
export const IVA_REG = IOTLB_REG_OFFSET;
/** VT-d: IOTLB_REG, IOTLB Invalidate Register (64-bit). */
export const IOTLB_REG = IOTLB_REG_OFFSET + 0x8;
/**
 * Where this model places the first fault-recording register: CAP_REG.FRO (in 16-byte units)
 * says so to software. VT-d: FRCD_REG[i] at FRO*16 + i*16, 128 bits each.
 */
export const FRCD_REG_OFFSET = 0x200;
/** Size of one fault-recording register. */
export const FRCD_REG_SIZE = 0x10;

// --- VER_REG
/** VT-d: VER_REG.MAX, bits 7:4 (major version). */
export const VER_MAX_SHIFT = 4;
/** VT-d: VER_REG.MIN, bits 3:0 (minor version). */
export const VER_MIN_MASK = 0xf;

// --- CAP_REG, lower dword
/** VT-d: CAP_REG.ND, bits 2:0: number of domain-id bits supported (6 = 16 bits, 64K domains). */
export const CAP_ND_MASK = 0x7;
/** VT-d: CAP_REG.AFL, bit 3: advanced fault logging. */
export const CAP_AFL = 1 << 3;
/** VT-d: CAP_REG.RWBF, bit 4: required write-buffer flushing. */
export const CAP_RWBF = 1 << 4;
/** VT-d: CAP_REG.CM, bit 7: caching mode (not-present and erroneous entries may be cached). */
export const CAP_CM = 1 << 7;
/** VT-d: CAP_REG.SAGAW, bits 12:8: supported adjusted guest address widths. */
export const CAP_SAGAW_SHIFT = 8;
export const CAP_SAGAW_MASK = 0x1f;
/** VT-d: CAP_REG.MGAW, bits 21:16: maximum guest address width minus one. */
export const CAP_MGAW_SHIFT = 16;
export const CAP_MGAW_MASK = 0x3f;
/** VT-d: CAP_REG.ZLR, bit 22: zero-length read. */
export const CAP_ZLR = 1 << 22;
/** VT-d: CAP_REG.FRO, bits 33:24: fault-recording register offset in 16-byte units (low 8 bits here). */
export const CAP_FRO_SHIFT = 24;
// --- CAP_REG, upper dword (bit n of the register is bit n - 32 here)
/** VT-d: CAP_REG.FRO, bits 33:32 of the register: the top two bits of FRO. */
export const CAP_HI_FRO_MASK = 0x3;
/** VT-d: CAP_REG.SLLPS, bits 37:34: second-level large page support (bit 0: 2 MiB, bit 1: 1 GiB). */
export const CAP_HI_SLLPS_SHIFT = 2;
export const CAP_HI_SLLPS_MASK = 0xf;
/** VT-d: CAP_REG.PSI, bit 39: page-selective invalidation. */
export const CAP_HI_PSI = 1 << 7;
/** VT-d: CAP_REG.NFR, bits 47:40: number of fault-recording registers minus one. */
export const CAP_HI_NFR_SHIFT = 8;
export const CAP_HI_NFR_MASK = 0xff;
/** VT-d: CAP_REG.MAMV, bits 53:48: maximum address mask value for page-selective invalidation. */
export const CAP_HI_MAMV_SHIFT = 16;
export const CAP_HI_MAMV_MASK = 0x3f;
/** VT-d: CAP_REG.DWD, bit 54: write draining. */
export const CAP_HI_DWD = 1 << 22;
/** VT-d: CAP_REG.DRD, bit 55: read draining. */
export const CAP_HI_DRD = 1 << 23;

/** VT-d: CAP_REG.SAGAW bit 1: 39-bit AGAW (3-level second-level table). */
export const SAGAW_39_BIT = 1 << 1;
/** VT-d: CAP_REG.SAGAW bit 2: 48-bit AGAW (4-level second-level table). */
export const SAGAW_48_BIT = 1 << 2;
/** VT-d: CAP_REG.SLLPS bit 0: 2 MiB super pages (21-bit offset). */
export const SLLPS_2M = 1 << 0;
/** VT-d: CAP_REG.SLLPS bit 1: 1 GiB super pages (30-bit offset). */
export const SLLPS_1G = 1 << 1;

// --- ECAP_REG, lower dword
/** VT-d: ECAP_REG.C, bit 0: page-walk coherency (hardware snoops the paging structures). */
export const ECAP_C = 1 << 0;
/** VT-d: ECAP_REG.QI, bit 1: queued invalidation support. */
export const ECAP_QI = 1 << 1;
/** VT-d: ECAP_REG.DT, bit 2: device-TLB support. */
export const ECAP_DT = 1 << 2;
/** VT-d: ECAP_REG.IR, bit 3: interrupt remapping support. */
export const ECAP_IR = 1 << 3;
/** VT-d: ECAP_REG.PT, bit 6: pass-through (context-entry TT = 10b) support. */
export const ECAP_PT = 1 << 6;
/** VT-d: ECAP_REG.SC, bit 7: snoop control (SNP bit of leaf second-level entries honoured). */
export const ECAP_SC = 1 << 7;
/** VT-d: ECAP_REG.IRO, bits 17:8: IOTLB register offset in 16-byte units. */
export const ECAP_IRO_SHIFT = 8;
export const ECAP_IRO_MASK = 0x3ff;

// --- GCMD_REG / GSTS_REG
/** VT-d: GCMD_REG.TE, bit 31: translation enable. */
export const GCMD_TE = 0x8000_0000;
/** VT-d: GCMD_REG.SRTP, bit 30: set root table pointer (one-shot). */
export const GCMD_SRTP = 0x4000_0000;
/** VT-d: GCMD_REG.SFL, bit 29: set fault log (one-shot; needs CAP_REG.AFL). */
export const GCMD_SFL = 0x2000_0000;
/** VT-d: GCMD_REG.EAFL, bit 28: enable advanced fault logging. */
export const GCMD_EAFL = 0x1000_0000;
/** VT-d: GCMD_REG.WBF, bit 27: write buffer flush (one-shot; needs CAP_REG.RWBF). */
export const GCMD_WBF = 0x0800_0000;
/** VT-d: GCMD_REG.QIE, bit 26: queued invalidation enable. */
export const GCMD_QIE = 0x0400_0000;
/** VT-d: GCMD_REG.IRE, bit 25: interrupt remapping enable. */
export const GCMD_IRE = 0x0200_0000;
/** VT-d: GCMD_REG.SIRTP, bit 24: set interrupt remap table pointer (one-shot). */
export const GCMD_SIRTP = 0x0100_0000;
/** VT-d: GCMD_REG.CFI, bit 23: compatibility format interrupt. */
export const GCMD_CFI = 0x0080_0000;
/** The one-shot command bits software masks out of GSTS before writing GCMD (VT-d 10.4.4). */
export const GCMD_ONE_SHOT = GCMD_SRTP | GCMD_SFL | GCMD_WBF | GCMD_SIRTP;

/** VT-d: GSTS_REG.TES, bit 31: translation enable status. */
export const GSTS_TES = 0x8000_0000;
/** VT-d: GSTS_REG.RTPS, bit 30: root table pointer status. */
export const GSTS_RTPS = 0x4000_0000;
/** VT-d: GSTS_REG.FLS, bit 29: fault log status. */
export const GSTS_FLS = 0x2000_0000;
/** VT-d: GSTS_REG.AFLS, bit 28: advanced fault logging status. */
export const GSTS_AFLS = 0x1000_0000;
/** VT-d: GSTS_REG.WBFS, bit 27: write buffer flush status. */
export const GSTS_WBFS = 0x0800_0000;
/** VT-d: GSTS_REG.QIES, bit 26: queued invalidation enable status. */
export const GSTS_QIES = 0x0400_0000;
/** VT-d: GSTS_REG.IRES, bit 25: interrupt remapping enable status. */
export const GSTS_IRES = 0x0200_0000;
/** VT-d: GSTS_REG.IRTPS, bit 24: interrupt remapping table pointer status. */
export const GSTS_IRTPS = 0x0100_0000;
/** VT-d: GSTS_REG.CFIS, bit 23: compatibility format interrupt status. */
export const GSTS_CFIS = 0x0080_0000;

// --- RTADDR_REG
/** VT-d: RTADDR_REG.RTA, bits 63:12: root table address (lower dword part). */
export const RTADDR_RTA_LO_MASK = 0xffff_f000;
/** VT-d: RTADDR_REG.TTM, bits 11:10: translation table mode (00b legacy, 01b scalable). */
export const RTADDR_TTM_SHIFT = 10;
export const RTADDR_TTM_MASK = 0x3;

// --- CCMD_REG, lower dword
/** VT-d: CCMD_REG.DID, bits 15:0: domain-id for domain-selective invalidation. */
export const CCMD_DID_MASK = 0xffff;
/** VT-d: CCMD_REG.SID, bits 31:16: source-id for device-selective invalidation. */
export const CCMD_SID_SHIFT = 16;
// --- CCMD_REG, upper dword
/** VT-d: CCMD_REG.FM, bits 33:32: function mask (00b none, 01b mask bit 2 of the function, 10b bits 2:1, 11b bits 2:0). */
export const CCMD_HI_FM_MASK = 0x3;
/** VT-d: CCMD_REG.CAIG, bits 60:59: context actual invalidation granularity (read-only). */
export const CCMD_HI_CAIG_SHIFT = 27;
/** VT-d: CCMD_REG.CIRG, bits 62:61: context invalidation request granularity. */
export const CCMD_HI_CIRG_SHIFT = 29;
/** VT-d: CCMD_REG.ICC, bit 63: invalidate context-cache (set by software, cleared by hardware when done). */
export const CCMD_HI_ICC = 0x8000_0000;
/** Context-cache invalidation granularities (CIRG/CAIG, and the G field of cc_inv_dsc). */
export const ContextInvalidation = {
  /** VT-d: 01b global invalidation request. */
  Global: 0x1,
  /** VT-d: 10b domain-selective invalidation request. */
  Domain: 0x2,
  /** VT-d: 11b device-selective invalidation request. */
  Device: 0x3,
} as const;
export type ContextInvalidation = (typeof ContextInvalidation)[keyof typeof ContextInvalidation];

// --- IOTLB_REG, upper dword (its lower dword is reserved)
/** VT-d: IOTLB_REG.DID, bits 47:32: domain-id for domain- and page-selective invalidation. */
export const IOTLB_HI_DID_MASK = 0xffff;
/** VT-d: IOTLB_REG.DW, bit 48: drain writes. */
export const IOTLB_HI_DW = 1 << 16;
/** VT-d: IOTLB_REG.DR, bit 49: drain reads. */
export const IOTLB_HI_DR = 1 << 17;
/** VT-d: IOTLB_REG.IAIG, bits 58:57: IOTLB actual invalidation granularity (read-only). */
export const IOTLB_HI_IAIG_SHIFT = 25;
/** VT-d: IOTLB_REG.IIRG, bits 61:60: IOTLB invalidation request granularity. */
export const IOTLB_HI_IIRG_SHIFT = 28;
/** VT-d: IOTLB_REG.IVT, bit 63: invalidate IOTLB (set by software, cleared by hardware when done). */
export const IOTLB_HI_IVT = 0x8000_0000;
/** IOTLB invalidation granularities (IIRG/IAIG, and the G field of iotlb_inv_dsc). */
export const IotlbInvalidation = {
  /** VT-d: 01b global invalidation request. */
  Global: 0x1,
  /** VT-d: 10b domain-selective invalidation request. */
  Domain: 0x2,
  /** VT-d: 11b page-selective-within-domain invalidation request. */
  Page: 0x3,
} as const;
export type IotlbInvalidation = (typeof IotlbInvalidation)[keyof typeof IotlbInvalidation];

// --- IVA_REG, lower dword
/** VT-d: IVA_REG.AM, bits 5:0: address mask (invalidate 2^AM pages, naturally aligned). */
export const IVA_AM_MASK = 0x3f;
/** VT-d: IVA_REG.IH, bit 6: invalidation hint (only leaf entries changed). */
export const IVA_IH = 1 << 6;
/** VT-d: IVA_REG.ADDR, bits 63:12 (lower dword part). */
export const IVA_ADDR_LO_MASK = 0xffff_f000;

// --- FSTS_REG
/** VT-d: FSTS_REG.PFO, bit 0: primary fault overflow (RW1C). */
export const FSTS_PFO = 1 << 0;
/** VT-d: FSTS_REG.PPF, bit 1: primary pending fault (read-only: OR of the F fields). */
export const FSTS_PPF = 1 << 1;
/** VT-d: FSTS_REG.AFO, bit 2: advanced fault overflow (RW1C). */
export const FSTS_AFO = 1 << 2;
/** VT-d: FSTS_REG.APF, bit 3: advanced pending fault (RW1C). */
export const FSTS_APF = 1 << 3;
/** VT-d: FSTS_REG.IQE, bit 4: invalidation queue error (RW1C). */
export const FSTS_IQE = 1 << 4;
/** VT-d: FSTS_REG.ICE, bit 5: invalidation completion error (RW1C). */
export const FSTS_ICE = 1 << 5;
/** VT-d: FSTS_REG.ITE, bit 6: invalidation time-out error (RW1C). */
export const FSTS_ITE = 1 << 6;
/** VT-d: FSTS_REG.FRI, bits 15:8: fault record index of the first pending fault. */
export const FSTS_FRI_SHIFT = 8;
/** The RW1C status bits of FSTS_REG. */
export const FSTS_RW1C = FSTS_PFO | FSTS_AFO | FSTS_APF | FSTS_IQE | FSTS_ICE | FSTS_ITE;

// --- FECTL_REG / IECTL_REG
/** VT-d: FECTL_REG.IM, bit 31: interrupt mask (set at reset). */
export const FECTL_IM = 0x8000_0000;
/** VT-d: FECTL_REG.IP, bit 30: interrupt pending (read-only). */
export const FECTL_IP = 0x4000_0000;
/** VT-d: IECTL_REG.IM, bit 31: interrupt mask (set at reset). */
export const IECTL_IM = 0x8000_0000;
/** VT-d: IECTL_REG.IP, bit 30: interrupt pending (read-only). */
export const IECTL_IP = 0x4000_0000;
/** VT-d: ICS_REG.IWC, bit 0: invalidation wait descriptor complete (RW1C). */
export const ICS_IWC = 1 << 0;

// --- Fault recording register FRCD_REG: four dwords at +0, +4, +8, +12.
/** VT-d: FRCD_REG.FI, bits 63:12: fault information (the page address of the faulted request), lower dword part. */
export const FRCD_FI_LO_MASK = 0xffff_f000;
/** VT-d: FRCD_REG.SID, bits 79:64: source identifier (bits 15:0 of the dword at +8). */
export const FRCD_SID_MASK = 0xffff;
/** VT-d: FRCD_REG.FR, bits 103:96: fault reason (bits 7:0 of the dword at +12). */
export const FRCD_W3_FR_MASK = 0xff;
/** VT-d: FRCD_REG.AT, bits 125:124: address type of the faulted request (bits 29:28 of the dword at +12; 00b untranslated). */
export const FRCD_W3_AT_SHIFT = 28;
/** VT-d: FRCD_REG.T, bit 126: type of the faulted request, 1 = read, 0 = write (bit 30 of the dword at +12). */
export const FRCD_W3_T = 1 << 30;
/** VT-d: FRCD_REG.F, bit 127: fault (RW1C; bit 31 of the dword at +12). */
export const FRCD_W3_F = 0x8000_0000;

// --- IQA_REG, lower dword
/** VT-d: IQA_REG.QS, bits 2:0: queue size, 2^QS 4 KiB pages. */
export const IQA_QS_MASK = 0x7;
/** VT-d: IQA_REG.DW, bit 11: descriptor width (0 = 128-bit, 1 = 256-bit). */
export const IQA_DW = 1 << 11;
/** VT-d: IQA_REG.IQA, bits 63:12: invalidation queue base address (lower dword part). */
export const IQA_ADDR_LO_MASK = 0xffff_f000;
/** VT-d: IQH_REG.QH / IQT_REG.QT, bits 18:4: byte offset of the next descriptor (16-byte aligned). */
export const IQ_QH_MASK = 0x7_fff0;

/** VT-d: IQERCD_REG.IQEI, bits 3:0: what went wrong in the invalidation queue. */
export const InvalidationQueueError = {
  /** VT-d: 0: no information. */
  NotAvailable: 0x0,
  /** VT-d: 1: tail pointer written beyond the queue size. */
  InvalidTail: 0x1,
  /** VT-d: 2: error fetching a descriptor (or writing a wait status). */
  FetchError: 0x2,
  /** VT-d: 3: invalid or unsupported descriptor type. */
  InvalidType: 0x3,
  /** VT-d: 4: reserved field set in a descriptor. */
  ReservedField: 0x4,
  /** VT-d: 5: invalid descriptor width (256-bit without scalable mode). */
  InvalidWidth: 0x5,
} as const;
export type InvalidationQueueError = (typeof InvalidationQueueError)[keyof typeof InvalidationQueueError];

/** Invalidation descriptor types (VT-d 6.5.2): the type is bits 3:0 plus bits 11:9 as 6:4. */
export const InvalidationDescriptorType = {
  /** VT-d: cc_inv_dsc, context-cache invalidate descriptor. */
  ContextCache: 0x1,
  /** VT-d: iotlb_inv_dsc, IOTLB invalidate descriptor. */
  Iotlb: 0x2,
  /** VT-d: dev_tlb_inv_dsc, device-TLB invalidate descriptor (needs ECAP_REG.DT). */
  DeviceTlb: 0x3,
  /** VT-d: iec_inv_dsc, interrupt entry cache invalidate descriptor (needs ECAP_REG.IR). */
  InterruptEntryCache: 0x4,
  /** VT-d: inv_wait_dsc, invalidation wait descriptor. */
  Wait: 0x5,
} as const;

/** VT-d: inv_wait_dsc.IF, bit 4: interrupt flag. */
export const INV_WAIT_IF = 1 << 4;
/** VT-d: inv_wait_dsc.SW, bit 5: status write. */
export const INV_WAIT_SW = 1 << 5;
/** VT-d: inv_wait_dsc.FN, bit 6: fence flag. */
export const INV_WAIT_FN = 1 << 6;
/** VT-d: inv_wait_dsc.PD, bit 7: page-request drain. */
export const INV_WAIT_PD = 1 << 7;
