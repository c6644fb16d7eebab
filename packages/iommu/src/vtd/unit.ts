/**
 * A VT-d DMA-remapping hardware unit (one DRHD), legacy translation mode.
 *
 * Software programs it through its 4 KiB register page (`registers`, a `BusDevice` to map on an
 * MMIO bus); devices DMA through it (it is a `DmaPort`): every request carries the requester's source
 * id (bus:dev.fn) and an I/O virtual address, which the unit translates through the context cache,
 * the IOTLB and, on a miss, the root, context and second-level tables in machine memory. A request
 * it blocks is recorded in the fault-recording registers (unless the context entry's FPD suppresses
 * it) and answered with a fault value; no memory is touched.
 */
import {
  DMA_FAULT_OUT_OF_RANGE,
  deviceError,
  type AccessSize,
  type Bdf,
  type BusDevice,
  type CostModel,
  type DeviceError,
  type DmaFault,
  type DmaPort,
  type DmaResult,
  type Iova,
  type PhysicalMemory,
  type SimClock,
  type U64,
} from "@vtlab/arch";
import {
  FaultReason,
  FaultRecorder,
  faultCondition,
  faultReasonName,
  isQualifiedFault,
  type FaultRecord,
  type RemappingEventMessage,
} from "./fault.js";
import { ContextCache, Iotlb } from "./iotlb.js";
import { InvalidationQueue } from "./qinval.js";
import {
  CAP_HI_MAMV_SHIFT,
  CAP_HI_NFR_SHIFT,
  CAP_HI_PSI,
  CAP_HI_SLLPS_SHIFT,
  CAP_MGAW_SHIFT,
  CAP_SAGAW_SHIFT,
  CAP_FRO_SHIFT,
  CAP_REG,
  CCMD_DID_MASK,
  CCMD_HI_CAIG_SHIFT,
  CCMD_HI_CIRG_SHIFT,
  CCMD_HI_FM_MASK,
  CCMD_HI_ICC,
  CCMD_REG,
  CCMD_SID_SHIFT,
  ContextInvalidation,
  ECAP_C,
  ECAP_IRO_SHIFT,
  ECAP_PT,
  ECAP_QI,
  ECAP_REG,
  ECAP_SC,
  FEADDR_REG,
  FECTL_REG,
  FEDATA_REG,
  FEUADDR_REG,
  FRCD_REG_OFFSET,
  FRCD_REG_SIZE,
  FSTS_IQE,
  FSTS_REG,
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
  IEADDR_REG,
  IECTL_REG,
  IEDATA_REG,
  IEUADDR_REG,
  IOTLB_HI_DID_MASK,
  IOTLB_HI_DR,
  IOTLB_HI_DW,
  IOTLB_HI_IAIG_SHIFT,
  IOTLB_HI_IIRG_SHIFT,
  IOTLB_HI_IVT,
  IOTLB_REG,
  IOTLB_REG_OFFSET,
  IQA_REG,
  IQERCD_REG,
  IQH_REG,
  IQT_REG,
  IVA_AM_MASK,
  IVA_REG,
  IotlbInvalidation,
  RTADDR_REG,
  RTADDR_RTA_LO_MASK,
  SAGAW_39_BIT,
  SAGAW_48_BIT,
  SLLPS_1G,
  SLLPS_2M,
  VER_REG,
  VTD_REG_PAGE_SIZE,
} from "./regs.js";
import { TranslationType } from "./tables.js";
import { fetchContext, newContextFetch, newSlWalk, walkSecondLevel, type RemappingFeatures } from "./walk.js";

/** VT-d specification version this unit reports in VER_REG: 1.0 (legacy translation, no scalable mode). */
const VERSION = 0x10;
/** CAP_REG.ND = 6: 16-bit domain ids. */
const ND_16_BIT = 6;
/** CAP_REG.MGAW: 48-bit maximum guest address width. */
const MGAW_BITS = 48;
/** CAP_REG.MAMV: page-selective invalidation of up to 2^18 pages (a 1 GiB page) at once. */
const MAMV = 18;

export interface VtdUnitOptions {
  /** Machine memory: where the root, context and second-level tables live, and where DMA lands. */
  readonly memory: PhysicalMemory;
  /** Host address width (the DMAR table's HAW), 32 to 52 bits: table addresses at or above it are reserved. Default 46. */
  readonly hostAddressWidth?: number;
  /** Fault-recording registers (CAP_REG.NFR + 1), 1 to 256. Default 8. */
  readonly faultRecords?: number;
  /** IOTLB geometry: sets (a power of two) and ways. Default 16 x 4 = 64 entries (a modelling assumption). */
  readonly iotlbSets?: number;
  readonly iotlbWays?: number;
  /** Second-level large pages (CAP_REG.SLLPS). Default both 2 MiB and 1 GiB. */
  readonly largePages?: { readonly "2M": boolean; readonly "1G": boolean };
  /** Report and support queued invalidation (ECAP_REG.QI). Default true. */
  readonly queuedInvalidation?: boolean;
  /** Called with the fault event's interrupt message (FEADDR/FEDATA) when the unit signals a fault event. */
  readonly onFaultEvent?: (message: RemappingEventMessage) => void;
  /** Called with the invalidation completion event's message (IEADDR/IEDATA). */
  readonly onInvalidationEvent?: (message: RemappingEventMessage) => void;
  /** When given, each IOTLB miss advances this clock by `costModel.iotlbMiss` cycles. */
  readonly clock?: SimClock;
  readonly costModel?: CostModel;
  /** Name for error messages. Default "vt-d". */
  readonly name?: string;
}

/** A DMA the remapping unit blocked: arch's `DmaFault` with the VT-d details. */
export interface VtdDmaFault extends DmaFault {
  /** The specification's condition code: "LRT.2", "LSL.2", ... ("" for a machine-memory error). */
  readonly condition: string;
  /** Whether a fault-recording register took it (false: FPD suppressed it, or the registers overflowed, or translation is off). */
  readonly recorded: boolean;
  /** Why, in words (which entry, which bits). */
  readonly detail: string;
}

/** Counters: exact counts of what the unit did. */
export interface VtdStats {
  readonly translations: number;
  readonly iotlbHits: number;
  readonly iotlbMisses: number;
  readonly contextCacheHits: number;
  readonly contextCacheMisses: number;
  /** Root, context and second-level entries read by table walks. */
  readonly walkReferences: number;
  readonly faults: number;
  readonly faultsRecorded: number;
  readonly faultsDropped: number;
  readonly faultsSuppressed: number;
  readonly contextInvalidations: number;
  readonly iotlbInvalidations: number;
}

const NEED_READ = 1;
const NEED_WRITE = 2;
/** 2^n for n = 0..64: address-width limits without a Math.pow per translation. */
const POW2 = Float64Array.from({ length: 65 }, (_, n) => 2 ** n);
/** Bytes mapped by a second-level leaf at level 1..3 (4 KiB, 2 MiB, 1 GiB). */
const LEVEL_BYTES = Float64Array.of(0, 0x1000, 0x20_0000, 0x4000_0000);

export class VtdUnit implements DmaPort {
  readonly name: string;
  readonly memory: PhysicalMemory;
  readonly iotlb: Iotlb;
  readonly contextCache = new ContextCache();
  readonly faults: FaultRecorder;
  readonly queue: InvalidationQueue;
  readonly features: RemappingFeatures;
  /** The 4 KiB register page, to register on an MMIO bus at the unit's DRHD base address. */
  readonly registers: BusDevice = {
    read: (offset, size) => this.readRegister(offset, size),
    write: (offset, size, value) => this.writeRegister(offset, size, value),
  };
  private readonly capLo: number;
  private readonly capHi: number;
  private readonly ecapLo: number;
  private readonly queuedInvalidation: boolean;
  private readonly clock: SimClock | undefined;
  private readonly missCost: number;

  // Register state.
  private tes = false;
  private rtps = false;
  private qies = false;
  private rtaddrLo = 0;
  private rtaddrHi = 0;
  /** The root table hardware uses: latched from RTADDR_REG by GCMD_REG.SRTP. */
  private rootTable = 0;
  private ccmdLo = 0;
  private ccmdHi = 0;
  private ivaLo = 0;
  private ivaHi = 0;
  private iotlbHi = 0;

  // Scratch for the miss path (no allocation per translation).
  private readonly lo: U64 = { lo: 0, hi: 0 };
  private readonly hi: U64 = { lo: 0, hi: 0 };
  private readonly ctxOut = newContextFetch();
  private readonly walkOut = newSlWalk();
  private pageHpas = new Float64Array(16);

  // The last fault, filled without allocating; `read`/`write` turn it into a value.
  private lastReason = 0;
  private lastAddress = 0;
  private lastRecorded = false;
  private lastDetail = "";

  // Counters.
  private translations = 0;
  private walkReferences = 0;
  private faultCount = 0;
  private suppressed = 0;
  private contextInvalidations = 0;
  private iotlbInvalidations = 0;

  constructor(options: VtdUnitOptions) {
    const haw = options.hostAddressWidth ?? 46;
    if (!Number.isInteger(haw) || haw < 32 || haw > 52) throw new RangeError(`host address width must be 32 to 52 bits; got ${haw}`);
    this.name = options.name ?? "vt-d";
    this.memory = options.memory;
    this.iotlb = new Iotlb(options.iotlbSets ?? 16, options.iotlbWays ?? 4);
    this.faults = new FaultRecorder(options.faultRecords ?? 8, options.onFaultEvent);
    this.queue = new InvalidationQueue(options.onInvalidationEvent);
    this.queuedInvalidation = options.queuedInvalidation ?? true;
    this.clock = options.clock;
    this.missCost = options.costModel?.iotlbMiss ?? 0;
    if (this.clock !== undefined && options.costModel === undefined) {
      throw new RangeError("a clock needs a cost model to know what an IOTLB miss costs");
    }
    const large = options.largePages ?? { "2M": true, "1G": true };
    const sllps = (large["2M"] ? SLLPS_2M : 0) | (large["1G"] ? SLLPS_1G : 0);
    const sagaw = SAGAW_39_BIT | SAGAW_48_BIT;
    const fro = FRCD_REG_OFFSET / 16;
    this.capLo = (ND_16_BIT | (sagaw << CAP_SAGAW_SHIFT) | ((MGAW_BITS - 1) << CAP_MGAW_SHIFT) | ((fro & 0xff) << CAP_FRO_SHIFT)) >>> 0;
    this.capHi =
      ((fro >>> 8) |
        (sllps << CAP_HI_SLLPS_SHIFT) |
        CAP_HI_PSI |
        ((this.faults.count - 1) << CAP_HI_NFR_SHIFT) |
        (MAMV << CAP_HI_MAMV_SHIFT)) >>>
      0;
    const ecap = ECAP_C | ECAP_PT | ECAP_SC | (this.queuedInvalidation ? ECAP_QI : 0);
    this.ecapLo = (ecap | ((IOTLB_REG_OFFSET / 16) << ECAP_IRO_SHIFT)) >>> 0;
    this.features = { haw, mgaw: MGAW_BITS, sagaw, sllps, ecap, snoopControl: true };
  }

  /** Whether DMA remapping is on (GSTS_REG.TES). */
  get translationEnabled(): boolean {
    return this.tes;
  }

  get stats(): VtdStats {
    return {
      translations: this.translations,
      iotlbHits: this.iotlb.hits,
      iotlbMisses: this.iotlb.misses,
      contextCacheHits: this.contextCache.hits,
      contextCacheMisses: this.contextCache.misses,
      walkReferences: this.walkReferences,
      faults: this.faultCount,
      faultsRecorded: this.faults.recorded,
      faultsDropped: this.faults.dropped,
      faultsSuppressed: this.suppressed,
      contextInvalidations: this.contextInvalidations,
      iotlbInvalidations: this.iotlbInvalidations,
    };
  }

  /** The fault records with F set, oldest first (what a driver would read through FRCD_REG). */
  pendingFaults(): FaultRecord[] {
    return this.faults.pending();
  }

  // ---------------------------------------------------------------- DMA (the DmaPort devices call)

  /** Read `into.length` bytes at `iova` for `requester`: all or nothing. */
  read(requester: Bdf, iova: Iova, into: Uint8Array): DmaResult {
    const n = into.length;
    if (n === 0) return undefined;
    const offset = iova % 0x1000;
    if (offset + n <= 0x1000) {
      const hpa = this.translate(requester, iova, false);
      if (hpa < 0) return this.faultValue(requester, false);
      return this.memory.readBytes(hpa, into) === undefined ? undefined : this.outOfRange(requester, iova, false);
    }
    const pages = this.translatePages(requester, iova, n, false);
    if (pages < 0) return this.faultValue(requester, false);
    let done = 0;
    for (let p = 0; p < pages; p++) {
      const chunk = Math.min(0x1000 - ((iova + done) % 0x1000), n - done);
      if (this.memory.readBytes(this.pageHpas[p] as number, into.subarray(done, done + chunk)) !== undefined) {
        return this.outOfRange(requester, iova, false);
      }
      done += chunk;
    }
    return undefined;
  }

  /** Write `from` at `iova` for `requester`: all or nothing. */
  write(requester: Bdf, iova: Iova, from: Uint8Array): DmaResult {
    const n = from.length;
    if (n === 0) return undefined;
    const offset = iova % 0x1000;
    if (offset + n <= 0x1000) {
      const hpa = this.translate(requester, iova, true);
      if (hpa < 0) return this.faultValue(requester, true);
      return this.memory.writeBytes(hpa, from) === undefined ? undefined : this.outOfRange(requester, iova, true);
    }
    const pages = this.translatePages(requester, iova, n, true);
    if (pages < 0) return this.faultValue(requester, true);
    // Check every page is inside memory before writing any (all or nothing).
    let done = 0;
    for (let p = 0; p < pages; p++) {
      const chunk = Math.min(0x1000 - ((iova + done) % 0x1000), n - done);
      const hpa = this.pageHpas[p] as number;
      if (!(hpa >= 0 && hpa + chunk <= this.memory.size)) return this.outOfRange(requester, iova, true);
      done += chunk;
    }
    done = 0;
    for (let p = 0; p < pages; p++) {
      const chunk = Math.min(0x1000 - ((iova + done) % 0x1000), n - done);
      this.memory.writeBytes(this.pageHpas[p] as number, from.subarray(done, done + chunk));
      done += chunk;
    }
    return undefined;
  }

  /**
   * Translate one access: the machine address for `iova`, or -(fault reason) when the request is
   * blocked (the fault has then been recorded or suppressed). With translation disabled the
   * address passes through unchanged. This is the hot path: an IOTLB hit allocates nothing.
   */
  translate(sourceId: number, iova: number, write: boolean): number {
    this.translations++;
    if (!this.tes) return iova;
    if (!(iova >= 0) || !Number.isInteger(iova)) throw new RangeError(`${this.name}: DMA address ${iova} is not an integer >= 0`);
    let ctx = this.contextCache.lookup(sourceId);
    if (ctx === undefined) {
      const reason = fetchContext(this.memory, this.rootTable, sourceId, this.features, this.ctxOut, this.lo, this.hi);
      this.walkReferences += this.ctxOut.references;
      if (reason !== 0) return this.fault(sourceId, iova, write, reason, this.ctxOut.faultProcessingDisable, this.ctxOut.detail);
      ctx = this.ctxOut.entry!;
      this.contextCache.insert(sourceId, ctx);
    }
    if (ctx.translationType === TranslationType.PassThrough) {
      if (iova >= (POW2[this.features.haw] as number)) {
        return this.fault(sourceId, iova, write, FaultReason.AddressBeyondWidth, ctx.faultProcessingDisable, `pass-through address above the host address width (${this.features.haw} bits)`);
      }
      return iova;
    }
    if (iova >= (POW2[ctx.addressBits] ?? 2 ** ctx.addressBits)) {
      return this.fault(sourceId, iova, write, FaultReason.AddressBeyondWidth, ctx.faultProcessingDisable, `address above 2^${ctx.addressBits} - 1`);
    }
    const need = write ? NEED_WRITE : NEED_READ;
    const iotlb = this.iotlb;
    const slot = iotlb.lookup(ctx.domainId, iova);
    if (slot >= 0) {
      // frame + (iova mod page size), precomputed per entry as iova + delta.
      if ((iotlb.permOf(slot) & need) !== 0) return iova + iotlb.deltaOf(slot);
      // A cached translation without the right: drop it and walk, as a CPU TLB does on a fault.
      iotlb.drop(slot);
    }
    if (this.clock !== undefined) this.clock.advance(this.missCost);
    const w = this.walkOut;
    const reason = walkSecondLevel(this.memory, ctx.slptptr, ctx.levels, iova, write, this.features, w, this.lo);
    this.walkReferences += w.references;
    if (reason !== 0) return this.fault(sourceId, iova, write, reason, ctx.faultProcessingDisable, w.detail);
    this.iotlb.insert(ctx.domainId, iova, w.level, w.frameBase, w.perm);
    if ((w.perm & need) === 0) {
      return this.fault(sourceId, iova, write, write ? FaultReason.WriteNotPermitted : FaultReason.ReadNotPermitted, ctx.faultProcessingDisable, write ? "no W on the way to the page" : "no R on the way to the page");
    }
    return w.frameBase + (iova - Math.floor(iova / (LEVEL_BYTES[w.level] as number)) * (LEVEL_BYTES[w.level] as number));
  }

  /** Translate every page of [iova, iova + length) into `pageHpas`; returns the page count or -(reason). */
  private translatePages(sourceId: number, iova: number, length: number, write: boolean): number {
    const first = iova - (iova % 0x1000);
    const pages = Math.ceil((iova + length - first) / 0x1000);
    if (pages > this.pageHpas.length) this.pageHpas = new Float64Array(pages);
    for (let p = 0; p < pages; p++) {
      const a = p === 0 ? iova : first + p * 0x1000;
      const hpa = this.translate(sourceId, a, write);
      if (hpa < 0) return hpa;
      this.pageHpas[p] = hpa;
    }
    return pages;
  }

  private fault(sourceId: number, iova: number, write: boolean, reason: number, fpd: boolean, detail: string): number {
    this.faultCount++;
    this.lastReason = reason;
    this.lastAddress = iova;
    this.lastDetail = detail;
    if (isQualifiedFault(reason) && fpd) {
      this.suppressed++;
      this.lastRecorded = false;
    } else {
      this.lastRecorded = this.faults.record(sourceId, iova, !write, reason);
    }
    return -reason;
  }

  private faultValue(requester: Bdf, write: boolean): VtdDmaFault {
    return {
      kind: "dma-fault",
      requester,
      iova: this.lastAddress as Iova,
      write,
      reason: this.lastReason,
      reasonName: faultReasonName(this.lastReason),
      condition: faultCondition(this.lastReason),
      recorded: this.lastRecorded,
      detail: this.lastDetail,
    };
  }

  private outOfRange(requester: Bdf, iova: number, write: boolean): VtdDmaFault {
    return {
      kind: "dma-fault",
      requester,
      iova: iova as Iova,
      write,
      reason: DMA_FAULT_OUT_OF_RANGE,
      reasonName: "beyond machine memory",
      condition: "",
      recorded: false,
      detail: "the translated address is outside machine memory",
    };
  }

  // ---------------------------------------------------------------- invalidation

  /** Context-cache invalidation at a granularity; returns the granularity performed (CAIG). */
  invalidateContext(granularity: ContextInvalidation, domainId: number, sourceId: number, functionMask: number): ContextInvalidation {
    this.contextInvalidations++;
    if (granularity === ContextInvalidation.Global) this.contextCache.invalidateAll();
    else if (granularity === ContextInvalidation.Domain) this.contextCache.invalidateDomain(domainId & 0xffff);
    else this.contextCache.invalidateDevice(sourceId & 0xffff, functionMask & 0x3);
    return granularity;
  }

  /**
   * IOTLB invalidation at a granularity; returns the granularity performed (IAIG). A page-selective
   * request whose address mask exceeds CAP_REG.MAMV is performed domain-selectively, as the
   * specification lets hardware do (and says so in IAIG).
   */
  invalidateIotlb(granularity: IotlbInvalidation, domainId: number, address: number, addressMask: number): IotlbInvalidation {
    this.iotlbInvalidations++;
    if (granularity === IotlbInvalidation.Global) {
      this.iotlb.invalidateAll();
      return granularity;
    }
    if (granularity === IotlbInvalidation.Page && addressMask <= MAMV) {
      const size = 2 ** (12 + addressMask);
      this.iotlb.invalidatePages(domainId & 0xffff, address - (address % size), addressMask);
      return granularity;
    }
    this.iotlb.invalidateDomain(domainId & 0xffff);
    return IotlbInvalidation.Domain;
  }

  // ---------------------------------------------------------------- registers (the BusDevice)

  /** A register read of 1, 2 or 4 bytes (a quadword arrives as two dwords). Reads never fail. */
  readRegister(offset: number, size: AccessSize): number {
    const aligned = offset & ~3;
    const dword = this.readDword(aligned);
    const shift = (offset & 3) * 8;
    if (size === 4 && shift === 0) return dword;
    const mask = size === 4 ? 0xffff_ffff : size === 2 ? 0xffff : 0xff;
    return ((dword >>> shift) & mask) >>> 0;
  }

  /** A register write: aligned dwords only (a quadword arrives as two dwords, low half first). */
  writeRegister(offset: number, size: AccessSize, value: number): DeviceError | undefined {
    if (size !== 4 || (offset & 3) !== 0) {
      return deviceError(this.name, offset, size, value, "VT-d registers are written as aligned dwords or quadwords");
    }
    return this.writeDword(offset, value >>> 0);
  }

  private readDword(o: number): number {
    if (o >= FRCD_REG_OFFSET && o < FRCD_REG_OFFSET + this.faults.count * FRCD_REG_SIZE) {
      const rel = o - FRCD_REG_OFFSET;
      return this.faults.readRecord(rel >>> 4, (rel >>> 2) & 3);
    }
    switch (o) {
      case VER_REG:
        return VERSION;
      case CAP_REG:
        return this.capLo;
      case CAP_REG + 4:
        return this.capHi;
      case ECAP_REG:
        return this.ecapLo;
      case GCMD_REG:
        return 0; // write-only
      case GSTS_REG:
        return ((this.tes ? GSTS_TES : 0) | (this.rtps ? GSTS_RTPS : 0) | (this.qies ? GSTS_QIES : 0)) >>> 0;
      case RTADDR_REG:
        return this.rtaddrLo;
      case RTADDR_REG + 4:
        return this.rtaddrHi;
      case CCMD_REG:
        return this.ccmdLo;
      case CCMD_REG + 4:
        return this.ccmdHi;
      case FSTS_REG:
        return this.faults.readFsts();
      case FECTL_REG:
        return this.faults.event.read();
      case FEDATA_REG:
        return this.faults.event.data;
      case FEADDR_REG:
        return this.faults.event.address;
      case FEUADDR_REG:
        return this.faults.event.upperAddress;
      case IQH_REG:
        return this.queue.head;
      case IQT_REG:
        return this.queue.tail;
      case IQA_REG:
        return this.queue.iqaLo;
      case IQA_REG + 4:
        return this.queue.iqaHi;
      case ICS_REG:
        return this.queue.waitComplete ? ICS_IWC : 0;
      case IECTL_REG:
        return this.queue.event.read();
      case IEDATA_REG:
        return this.queue.event.data;
      case IEADDR_REG:
        return this.queue.event.address;
      case IEUADDR_REG:
        return this.queue.event.upperAddress;
      case IQERCD_REG:
        return this.queue.errorInfo;
      case IVA_REG:
        return this.ivaLo;
      case IVA_REG + 4:
        return this.ivaHi;
      case IOTLB_REG + 4:
        return this.iotlbHi;
      default:
        return 0;
    }
  }

  private writeDword(o: number, v: number): DeviceError | undefined {
    if (o >= FRCD_REG_OFFSET && o < FRCD_REG_OFFSET + this.faults.count * FRCD_REG_SIZE) {
      const rel = o - FRCD_REG_OFFSET;
      this.faults.writeRecord(rel >>> 4, (rel >>> 2) & 3, v);
      return undefined;
    }
    switch (o) {
      case GCMD_REG:
        return this.globalCommand(v);
      case RTADDR_REG:
        // TTM (bits 11:10) reads as legacy mode: this unit reports no scalable-mode support.
        this.rtaddrLo = (v & RTADDR_RTA_LO_MASK) >>> 0;
        return undefined;
      case RTADDR_REG + 4:
        this.rtaddrHi = v;
        return undefined;
      case CCMD_REG:
        this.ccmdLo = v;
        return undefined;
      case CCMD_REG + 4:
        return this.contextCommand(v);
      case FSTS_REG: {
        const hadIqe = this.faults.hasStatusBit(FSTS_IQE);
        this.faults.writeFsts(v);
        if (hadIqe && !this.faults.hasStatusBit(FSTS_IQE)) this.runQueue();
        return undefined;
      }
      case FECTL_REG:
        this.faults.event.write(v);
        return undefined;
      case FEDATA_REG:
        this.faults.event.data = v & 0xffff;
        return undefined;
      case FEADDR_REG:
        this.faults.event.address = (v & 0xffff_fffc) >>> 0;
        return undefined;
      case FEUADDR_REG:
        this.faults.event.upperAddress = v;
        return undefined;
      case IQT_REG:
        if (!this.queuedInvalidation) return undefined;
        this.queue.writeTail(v);
        this.runQueue();
        return undefined;
      case IQA_REG:
      case IQA_REG + 4:
        if (!this.queuedInvalidation) return undefined;
        if (this.qies) return deviceError(this.name, o, 4, v, "IQA_REG must not change while queued invalidation is enabled");
        if (o === IQA_REG) this.queue.iqaLo = v;
        else this.queue.iqaHi = v;
        return undefined;
      case ICS_REG:
        this.queue.writeIcs(v);
        return undefined;
      case IECTL_REG:
        this.queue.event.write(v);
        return undefined;
      case IEDATA_REG:
        this.queue.event.data = v & 0xffff;
        return undefined;
      case IEADDR_REG:
        this.queue.event.address = (v & 0xffff_fffc) >>> 0;
        return undefined;
      case IEUADDR_REG:
        this.queue.event.upperAddress = v;
        return undefined;
      case IVA_REG:
        this.ivaLo = v;
        return undefined;
      case IVA_REG + 4:
        this.ivaHi = v;
        return undefined;
      case IOTLB_REG + 4:
        return this.iotlbCommand(v);
      default:
        return undefined; // read-only or reserved: writes are ignored
    }
  }

  /** GCMD_REG: TE and QIE are levels (the new value is the new state); SRTP is one-shot. */
  private globalCommand(v: number): DeviceError | undefined {
    if ((v & GCMD_SRTP) !== 0) {
      this.rootTable = this.rtaddrHi * 0x1_0000_0000 + this.rtaddrLo;
      this.rtps = true;
    }
    const te = (v & GCMD_TE) !== 0;
    if (te !== this.tes) {
      this.tes = te;
      if (!te) this.faults.resetIndex();
    }
    const qie = (v & GCMD_QIE) !== 0 && this.queuedInvalidation;
    if (qie !== this.qies) {
      if (qie) {
        this.queue.head = 0;
        this.queue.tail = 0;
        this.qies = true;
      } else if (this.queue.head !== this.queue.tail) {
        return deviceError(this.name, GCMD_REG, 4, v, "queued invalidation cannot be disabled while the queue is not empty (IQH != IQT)");
      } else {
        this.qies = false;
      }
    }
    return undefined;
  }

  private contextCommand(hiValue: number): DeviceError | undefined {
    const cirg = (hiValue >>> CCMD_HI_CIRG_SHIFT) & 0x3;
    let caig = 0;
    let error: DeviceError | undefined;
    if ((hiValue & CCMD_HI_ICC) !== 0) {
      if (this.qies) {
        error = deviceError(this.name, CCMD_REG + 4, 4, hiValue, "register-based invalidation while queued invalidation is enabled");
      } else if (cirg !== 0) {
        caig = this.invalidateContext(cirg as ContextInvalidation, this.ccmdLo & CCMD_DID_MASK, this.ccmdLo >>> CCMD_SID_SHIFT, hiValue & CCMD_HI_FM_MASK);
      }
    }
    // ICC reads back clear: the invalidation completed synchronously.
    this.ccmdHi = ((hiValue & CCMD_HI_FM_MASK) | (cirg << CCMD_HI_CIRG_SHIFT) | (caig << CCMD_HI_CAIG_SHIFT)) >>> 0;
    return error;
  }

  private iotlbCommand(hiValue: number): DeviceError | undefined {
    const iirg = (hiValue >>> IOTLB_HI_IIRG_SHIFT) & 0x3;
    let iaig = 0;
    let error: DeviceError | undefined;
    if ((hiValue & IOTLB_HI_IVT) !== 0) {
      if (this.qies) {
        error = deviceError(this.name, IOTLB_REG + 4, 4, hiValue, "register-based invalidation while queued invalidation is enabled");
      } else if (iirg !== 0) {
        const address = this.ivaHi * 0x1_0000_0000 + ((this.ivaLo & 0xffff_f000) >>> 0);
        iaig = this.invalidateIotlb(iirg as IotlbInvalidation, hiValue & IOTLB_HI_DID_MASK, address, this.ivaLo & IVA_AM_MASK);
      }
    }
    // IVT reads back clear; IAIG says what was done (0 = the request was not performed).
    this.iotlbHi = ((hiValue & (IOTLB_HI_DID_MASK | IOTLB_HI_DW | IOTLB_HI_DR)) | (iirg << IOTLB_HI_IIRG_SHIFT) | (iaig << IOTLB_HI_IAIG_SHIFT)) >>> 0;
    return error;
  }

  private runQueue(): void {
    if (!this.qies || this.faults.hasStatusBit(FSTS_IQE)) return;
    const error = this.queue.process(this.memory, this, this.lo, this.hi);
    if (error !== 0) this.faults.setStatus(FSTS_IQE);
  }

  /** The register page's size, for mapping it on a bus. */
  static readonly REGISTER_PAGE_SIZE = VTD_REG_PAGE_SIZE;
}
