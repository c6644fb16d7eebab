/**
 * A VT-d driver: programs a remapping unit only through its registers over MMIO, the way Xen's
 * drivers/passthrough/vtd/iommu.c and qinval.c do: read CAP/ECAP, set the root table pointer,
 * enable translation, invalidate the context cache and IOTLB (through CCMD_REG/IOTLB_REG, or
 * through the invalidation queue once it is enabled), and read and clear fault records.
 */
import type { AccessSize, DeviceError, Hpa, PhysicalMemory } from "@vtlab/arch";
import type { InvalidationRequest } from "./domain.js";
import { faultReasonName, type FaultRecord } from "./vtd/fault.js";
import {
  CAP_FRO_SHIFT,
  CAP_HI_FRO_MASK,
  CAP_HI_MAMV_MASK,
  CAP_HI_MAMV_SHIFT,
  CAP_HI_NFR_MASK,
  CAP_HI_NFR_SHIFT,
  CAP_HI_PSI,
  CAP_HI_SLLPS_MASK,
  CAP_HI_SLLPS_SHIFT,
  CAP_MGAW_MASK,
  CAP_MGAW_SHIFT,
  CAP_ND_MASK,
  CAP_REG,
  CAP_SAGAW_MASK,
  CAP_SAGAW_SHIFT,
  CCMD_HI_CAIG_SHIFT,
  CCMD_HI_CIRG_SHIFT,
  CCMD_HI_ICC,
  CCMD_REG,
  CCMD_SID_SHIFT,
  ECAP_IRO_MASK,
  ECAP_IRO_SHIFT,
  ECAP_PT,
  ECAP_QI,
  ECAP_REG,
  FEADDR_REG,
  FECTL_IM,
  FECTL_REG,
  FEDATA_REG,
  FEUADDR_REG,
  FRCD_SID_MASK,
  FRCD_W3_F,
  FRCD_W3_FR_MASK,
  FRCD_W3_T,
  FSTS_PFO,
  FSTS_REG,
  FSTS_RW1C,
  GCMD_ONE_SHOT,
  GCMD_QIE,
  GCMD_REG,
  GCMD_SRTP,
  GCMD_TE,
  GSTS_QIES,
  GSTS_REG,
  GSTS_RTPS,
  GSTS_TES,
  ICS_IWC,
  ICS_REG,
  INV_WAIT_SW,
  IOTLB_HI_DR,
  IOTLB_HI_DW,
  IOTLB_HI_IAIG_SHIFT,
  IOTLB_HI_IIRG_SHIFT,
  IOTLB_HI_IVT,
  IQA_REG,
  IQH_REG,
  IQT_REG,
  IVA_IH,
  InvalidationDescriptorType,
  RTADDR_REG,
} from "./vtd/regs.js";

/** How the driver reaches the registers: arch's MmioBus has this shape. */
export interface RegisterBus {
  read(address: number, size: AccessSize): number;
  write(address: number, size: AccessSize, value: number): DeviceError | undefined;
}

/** CAP_REG and ECAP_REG decoded. */
export interface VtdCapabilities {
  readonly domainIdBits: number;
  readonly sagaw: number;
  readonly mgaw: number;
  readonly faultRecordOffset: number;
  readonly faultRecords: number;
  readonly largePages: { readonly "2M": boolean; readonly "1G": boolean };
  readonly pageSelectiveInvalidation: boolean;
  readonly maxAddressMask: number;
  readonly iotlbRegisterOffset: number;
  readonly queuedInvalidation: boolean;
  readonly passThrough: boolean;
}

/** Something the unit did not do as the driver asked. */
export interface VtdDriverError {
  readonly kind: "vtd-driver-error";
  readonly message: string;
  readonly deviceError?: DeviceError;
}

function driverError(message: string, device?: DeviceError): VtdDriverError {
  return device === undefined ? { kind: "vtd-driver-error", message } : { kind: "vtd-driver-error", message, deviceError: device };
}

export class VtdDriver {
  readonly caps: VtdCapabilities;
  private queue: { base: number; sizeBytes: number; memory: PhysicalMemory; status: number } | undefined;
  private waitToken = 1;

  constructor(
    private readonly bus: RegisterBus,
    /** Machine address of the unit's register page. */
    readonly base: number,
  ) {
    this.caps = this.readCapabilities();
  }

  private read32(offset: number): number {
    return this.bus.read(this.base + offset, 4) >>> 0;
  }

  private write32(offset: number, value: number): DeviceError | undefined {
    return this.bus.write(this.base + offset, 4, value >>> 0);
  }

  /** A 64-bit register write: low dword first, as the unit expects a split quadword access. */
  private write64(offset: number, lo: number, hi: number): DeviceError | undefined {
    return this.write32(offset, lo) ?? this.write32(offset + 4, hi);
  }

  private readCapabilities(): VtdCapabilities {
    const capLo = this.read32(CAP_REG);
    const capHi = this.read32(CAP_REG + 4);
    const ecapLo = this.read32(ECAP_REG);
    const nd = capLo & CAP_ND_MASK;
    const sllps = (capHi >>> CAP_HI_SLLPS_SHIFT) & CAP_HI_SLLPS_MASK;
    return {
      domainIdBits: 4 + 2 * nd,
      sagaw: (capLo >>> CAP_SAGAW_SHIFT) & CAP_SAGAW_MASK,
      mgaw: ((capLo >>> CAP_MGAW_SHIFT) & CAP_MGAW_MASK) + 1,
      faultRecordOffset: (((capHi & CAP_HI_FRO_MASK) << 8) | (capLo >>> CAP_FRO_SHIFT)) * 16,
      faultRecords: ((capHi >>> CAP_HI_NFR_SHIFT) & CAP_HI_NFR_MASK) + 1,
      largePages: { "2M": (sllps & 1) !== 0, "1G": (sllps & 2) !== 0 },
      pageSelectiveInvalidation: (capHi & CAP_HI_PSI) !== 0,
      maxAddressMask: (capHi >>> CAP_HI_MAMV_SHIFT) & CAP_HI_MAMV_MASK,
      iotlbRegisterOffset: ((ecapLo >>> ECAP_IRO_SHIFT) & ECAP_IRO_MASK) * 16,
      queuedInvalidation: (ecapLo & ECAP_QI) !== 0,
      passThrough: (ecapLo & ECAP_PT) !== 0,
    };
  }

  get status(): number {
    return this.read32(GSTS_REG);
  }

  /** Issue a GCMD_REG command: the persistent GSTS bits with `bit` set or cleared (VT-d 10.4.4). */
  private command(bit: number, on: boolean): DeviceError | undefined {
    const persistent = this.status & ~GCMD_ONE_SHOT;
    return this.write32(GCMD_REG, on ? persistent | bit : persistent & ~bit);
  }

  /** Program RTADDR_REG and latch it with SRTP; waits (reads GSTS) for RTPS. */
  setRootTable(rootTable: Hpa): VtdDriverError | undefined {
    const e = this.write64(RTADDR_REG, rootTable % 0x1_0000_0000, Math.floor(rootTable / 0x1_0000_0000)) ?? this.command(GCMD_SRTP, true);
    if (e !== undefined) return driverError("setting the root table pointer failed", e);
    if ((this.status & GSTS_RTPS) === 0) return driverError("GSTS_REG.RTPS did not set after SRTP");
    return undefined;
  }

  enableTranslation(): VtdDriverError | undefined {
    const e = this.command(GCMD_TE, true);
    if (e !== undefined || (this.status & GSTS_TES) === 0) return driverError("GSTS_REG.TES did not set", e);
    return undefined;
  }

  disableTranslation(): VtdDriverError | undefined {
    const e = this.command(GCMD_TE, false);
    if (e !== undefined || (this.status & GSTS_TES) !== 0) return driverError("GSTS_REG.TES did not clear", e);
    return undefined;
  }

  /** Set the fault event's interrupt message and mask. */
  setFaultEvent(message: { address: number; data: number }, masked = false): void {
    this.write32(FEDATA_REG, message.data);
    this.write32(FEADDR_REG, message.address % 0x1_0000_0000);
    this.write32(FEUADDR_REG, Math.floor(message.address / 0x1_0000_0000));
    this.write32(FECTL_REG, masked ? FECTL_IM : 0);
  }

  maskFaultEvent(masked: boolean): void {
    this.write32(FECTL_REG, masked ? FECTL_IM : 0);
  }

  /**
   * Switch to queued invalidation: the queue is 2^`sizeLog2` pages at `base` in machine memory,
   * which the driver writes descriptors into; the last 4 bytes of the first page after the
   * descriptors are not used, so the status word for wait descriptors lives at `statusAddress`.
   */
  enableQueuedInvalidation(memory: PhysicalMemory, base: Hpa, statusAddress: Hpa, sizeLog2 = 0): VtdDriverError | undefined {
    if (!this.caps.queuedInvalidation) return driverError("the unit does not report ECAP_REG.QI");
    if (!(sizeLog2 >= 0 && sizeLog2 <= 7)) return driverError(`queue size 2^${sizeLog2} pages is not 1 to 128 pages`);
    const e = this.write64(IQA_REG, (base % 0x1_0000_0000) | sizeLog2, Math.floor(base / 0x1_0000_0000)) ?? this.command(GCMD_QIE, true);
    if (e !== undefined || (this.status & GSTS_QIES) === 0) return driverError("GSTS_REG.QIES did not set", e);
    this.queue = { base, sizeBytes: 0x1000 << sizeLog2, memory, status: statusAddress };
    return undefined;
  }

  disableQueuedInvalidation(): VtdDriverError | undefined {
    const e = this.command(GCMD_QIE, false);
    if (e !== undefined || (this.status & GSTS_QIES) !== 0) return driverError("GSTS_REG.QIES did not clear", e);
    this.queue = undefined;
    return undefined;
  }

  /**
   * Perform one invalidation and return the granularity the unit reports it performed (CAIG or
   * IAIG for register-based invalidation; the requested one for queued invalidation, whose wait
   * descriptor only says it completed).
   */
  invalidate(request: InvalidationRequest): number | VtdDriverError {
    return this.queue !== undefined ? this.invalidateQueued([request]) : this.invalidateRegister(request);
  }

  /** Perform invalidations in order (as one batch through the queue when it is enabled). */
  invalidateAll(requests: readonly InvalidationRequest[]): VtdDriverError | undefined {
    if (this.queue !== undefined) {
      const r = this.invalidateQueued(requests);
      return typeof r === "number" ? undefined : r;
    }
    for (const request of requests) {
      const r = this.invalidateRegister(request);
      if (typeof r !== "number") return r;
    }
    return undefined;
  }

  private invalidateRegister(request: InvalidationRequest): number | VtdDriverError {
    if (request.kind === "context") {
      const lo = (request.domainId & 0xffff) | ((request.sourceId & 0xffff) << CCMD_SID_SHIFT);
      const hi = CCMD_HI_ICC | (request.granularity << CCMD_HI_CIRG_SHIFT) | (request.functionMask & 0x3);
      const e = this.write64(CCMD_REG, lo, hi);
      if (e !== undefined) return driverError("context-cache invalidation refused", e);
      const back = this.read32(CCMD_REG + 4);
      if ((back & CCMD_HI_ICC) !== 0) return driverError("CCMD_REG.ICC did not clear");
      return (back >>> CCMD_HI_CAIG_SHIFT) & 0x3;
    }
    const iro = this.caps.iotlbRegisterOffset;
    if (request.granularity === 0x3) {
      const ivaLo = (request.address % 0x1_0000_0000) - (request.address % 0x1000) + (request.addressMask & 0x3f) + (request.leafOnly ? IVA_IH : 0);
      const e = this.write64(iro, ivaLo, Math.floor(request.address / 0x1_0000_0000));
      if (e !== undefined) return driverError("IVA_REG write refused", e);
    }
    const hi = IOTLB_HI_IVT | (request.granularity << IOTLB_HI_IIRG_SHIFT) | IOTLB_HI_DR | IOTLB_HI_DW | (request.domainId & 0xffff);
    const e = this.write64(iro + 8, 0, hi);
    if (e !== undefined) return driverError("IOTLB invalidation refused", e);
    const back = this.read32(iro + 8 + 4);
    if ((back & IOTLB_HI_IVT) !== 0) return driverError("IOTLB_REG.IVT did not clear");
    return (back >>> IOTLB_HI_IAIG_SHIFT) & 0x3;
  }

  /** Write descriptors and a wait descriptor with status write, move IQT, and check the status word. */
  private invalidateQueued(requests: readonly InvalidationRequest[]): number | VtdDriverError {
    const q = this.queue;
    if (q === undefined) return driverError("queued invalidation is not enabled");
    let tail = this.read32(IQT_REG);
    const put = (d0: number, d1: number, d2: number, d3: number): VtdDriverError | undefined => {
      const next = (tail + 16) % q.sizeBytes;
      if (next === this.read32(IQH_REG)) return driverError("invalidation queue full");
      q.memory.write64(q.base + tail, d0 >>> 0, d1 >>> 0);
      q.memory.write64(q.base + tail + 8, d2 >>> 0, d3 >>> 0);
      tail = next;
      return undefined;
    };
    for (const r of requests) {
      const e =
        r.kind === "context"
          ? put(InvalidationDescriptorType.ContextCache | (r.granularity << 4) | ((r.domainId & 0xffff) << 16), (r.sourceId & 0xffff) | ((r.functionMask & 3) << 16), 0, 0)
          : put(
              InvalidationDescriptorType.Iotlb | (r.granularity << 4) | (1 << 6) | (1 << 7) | ((r.domainId & 0xffff) << 16),
              0,
              r.granularity === 0x3 ? (r.address % 0x1_0000_0000) - (r.address % 0x1000) + (r.addressMask & 0x3f) + (r.leafOnly ? IVA_IH : 0) : 0,
              r.granularity === 0x3 ? Math.floor(r.address / 0x1_0000_0000) : 0,
            );
      if (e !== undefined) return e;
    }
    const token = this.waitToken++ >>> 0;
    q.memory.write32(q.status, 0);
    const e = put(InvalidationDescriptorType.Wait | INV_WAIT_SW, token, q.status % 0x1_0000_0000, Math.floor(q.status / 0x1_0000_0000));
    if (e !== undefined) return e;
    const d = this.write32(IQT_REG, tail);
    if (d !== undefined) return driverError("IQT_REG write refused", d);
    if (q.memory.read32(q.status) !== token) {
      return driverError(`invalidation wait did not complete (FSTS_REG 0x${this.read32(FSTS_REG).toString(16)})`);
    }
    const last = requests[requests.length - 1];
    return last?.granularity ?? 0;
  }

  /** Fault records with F set, read through FRCD_REG. */
  readFaults(): FaultRecord[] {
    const out: FaultRecord[] = [];
    for (let i = 0; i < this.caps.faultRecords; i++) {
      const at = this.caps.faultRecordOffset + i * 16;
      const w3 = this.read32(at + 12);
      if ((w3 & FRCD_W3_F) === 0) continue;
      const reason = w3 & FRCD_W3_FR_MASK;
      out.push({
        index: i,
        sourceId: this.read32(at + 8) & FRCD_SID_MASK,
        pageAddress: this.read32(at + 4) * 0x1_0000_0000 + ((this.read32(at) & 0xffff_f000) >>> 0),
        read: (w3 & FRCD_W3_T) !== 0,
        reason,
        reasonName: faultReasonName(reason),
      });
    }
    return out;
  }

  /** FSTS_REG.PFO: faults were dropped because every recording register was full. */
  get faultOverflow(): boolean {
    return (this.read32(FSTS_REG) & FSTS_PFO) !== 0;
  }

  get faultStatus(): number {
    return this.read32(FSTS_REG);
  }

  /** Clear every pending fault record (F is RW1C) and the RW1C status bits, as a fault handler does. */
  clearFaults(): void {
    for (let i = 0; i < this.caps.faultRecords; i++) {
      const at = this.caps.faultRecordOffset + i * 16 + 12;
      if ((this.read32(at) & FRCD_W3_F) !== 0) this.write32(at, FRCD_W3_F);
    }
    this.write32(FSTS_REG, FSTS_RW1C);
  }

  /** ICS_REG.IWC: an invalidation wait descriptor with IF completed. */
  get invalidationWaitComplete(): boolean {
    return (this.read32(ICS_REG) & ICS_IWC) !== 0;
  }
}
