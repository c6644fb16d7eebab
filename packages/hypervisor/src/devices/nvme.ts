/**
 * An NVMe I/O controller as an assignable PCI function (NVM Express Base Specification 1.4,
 * "NVMe 1.4" below): the controller registers and doorbells in BAR0 (3.1), the admin and I/O
 * submission/completion queues in host memory (4.1, 4.2, 4.6), PRP data pointers (4.3), the
 * admin commands a driver needs to bring up I/O queues (5), and Read, Write and Flush on one
 * namespace (6) stored in a `BlockBackend` of 512-byte sectors.
 *
 * Every memory access the controller makes (SQ entry fetch, PRP list fetch, data, CQ entry post)
 * goes through the connected `DmaPort` with the function's BDF as requester id, and only while
 * PCI_COMMAND_MASTER is set. Everything read from host memory is hostile: a submission queue entry
 * is copied once into a private 64-byte buffer and decoded from that copy; PRP list entries are
 * copied into a private page buffer; every count (NLB, QSIZE, PRP list length) is bounded before
 * it is used.
 *
 * Modelled more simply than a controller (each also stated where it is implemented):
 * - Commands run synchronously inside the SQ tail doorbell write (like dma-engine.ts), at most the
 *   queue's size per SQ per doorbell. A command whose CQ is full is left in the SQ until the host
 *   frees a CQ slot (CQ head doorbell), which resumes processing.
 * - Pin-based interrupts only (no MSI/MSI-X capability, no PCIe capability): every CQ uses
 *   interrupt vector 0, INTMS/INTMC bit 0 masks it (3.1.3, 3.1.4, 7.5.1.1).
 * - No Asynchronous Event Request, Get Log Page, Abort, firmware or namespace management (their
 *   opcodes answer Invalid Command Opcode); invalid doorbell writes, which a controller reports
 *   through an asynchronous event (5.2, "Invalid Doorbell Write Value" / "Invalid Doorbell
 *   Register"), are ignored and counted in `stats`.
 * - No SGLs (PSDT must be 00b), no fused operations, no metadata, no end-to-end protection, one
 *   LBA format (512 bytes), one namespace (NSID 1), one arbitration mechanism (round robin),
 *   memory page size 4 KiB only (CAP.MPSMIN = CAP.MPSMAX = 0).
 * - A transfer of a Read writes host memory page by page, so a DMA fault part-way leaves the
 *   pages before it written; a Write reads all its data before the backend is touched, so a
 *   fault leaves the namespace unchanged.
 * - Shutdown (CC.SHN) completes at once (CSTS.SHST = 10b); after it no command is processed until
 *   a controller reset.
 * - Enabling with an invalid CC (CSS, MPS, AMS) or admin queue attributes (AQA, ASQ, ACQ) leaves
 *   CSTS.RDY clear (the host times out after CAP.TO), as QEMU's model does; it is counted in
 *   `stats.enableFailures`.
 */
import {
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_MASTER,
  PCI_STATUS,
  PCI_STATUS_INTERRUPT,
  PciConfigSpace,
  deviceError,
  iova,
  type AccessSize,
  type Bdf,
  type BusDevice,
  type DeviceError,
  type DmaFault,
  type DmaPort,
  type PciIds,
} from "@vtlab/arch";
import type { AssignableDevice } from "../passthrough/device.js";
import { SECTOR_SIZE, type BlockBackend } from "./ata.js";

// ---------------------------------------------------------------------------------------------
// PCI identity

/** 0x1234: the unofficial vendor id emulators use for their own devices (as the DMA engine); QEMU's NVMe is 1b36:0010. */
export const NVME_VENDOR_ID = 0x1234;
/** vtlab's own device id for its NVMe controller (not a PCI-SIG assignment). */
export const NVME_DEVICE_ID = 0x7d4e;
/** Class code 01:08:02: mass storage controller, Non-Volatile Memory controller, NVM Express I/O controller (NVMe 1.4 2.1.5). */
export const NVME_CLASS = 0x01_08_02;
/** BAR0 (MLBAR/MUBAR, NVMe 1.4 2.1.10-11): a 64-bit memory BAR of 16 KiB, registers and doorbells. */
export const NVME_BAR_SIZE = 0x4000;
/** Interrupt pin: INTA# (PCI INTP = 01h). */
export const NVME_INTERRUPT_PIN = 1;

// ---------------------------------------------------------------------------------------------
// Controller registers (NVMe 1.4 3.1, Figure 78)

export const NvmeReg = {
  /** CAP: Controller Capabilities, 64-bit (3.1.1). */
  Cap: 0x00,
  CapHi: 0x04,
  /** VS: Version (3.1.2). */
  Vs: 0x08,
  /** INTMS: Interrupt Mask Set (3.1.3), write 1 to mask. */
  Intms: 0x0c,
  /** INTMC: Interrupt Mask Clear (3.1.4), write 1 to unmask. */
  Intmc: 0x10,
  /** CC: Controller Configuration (3.1.5). */
  Cc: 0x14,
  /** CSTS: Controller Status (3.1.6). */
  Csts: 0x1c,
  /** NSSR: NVM Subsystem Reset (3.1.7): not supported (CAP.NSSRS = 0), reads 0. */
  Nssr: 0x20,
  /** AQA: Admin Queue Attributes (3.1.8). */
  Aqa: 0x24,
  /** ASQ: Admin Submission Queue Base Address, 64-bit (3.1.9). */
  Asq: 0x28,
  AsqHi: 0x2c,
  /** ACQ: Admin Completion Queue Base Address, 64-bit (3.1.10). */
  Acq: 0x30,
  AcqHi: 0x34,
  /** SQ0TDBL: first doorbell (3.1.24); SQyTDBL at 1000h + (2y * (4 << CAP.DSTRD)), CQyHDBL at 1000h + ((2y + 1) * (4 << CAP.DSTRD)). */
  Doorbells: 0x1000,
} as const;

/** Offset of SQyTDBL (Submission Queue y Tail Doorbell) with CAP.DSTRD = 0. */
export const sqTailDoorbell = (y: number): number => NvmeReg.Doorbells + 2 * y * 4;
/** Offset of CQyHDBL (Completion Queue y Head Doorbell) with CAP.DSTRD = 0. */
export const cqHeadDoorbell = (y: number): number => NvmeReg.Doorbells + (2 * y + 1) * 4;

/** CAP.MQES: Maximum Queue Entries Supported, 0's based (1024 entries). */
export const NVME_MQES = 0x3ff;
/** CAP.TO: Timeout, in 500 ms units. */
export const NVME_CAP_TO = 0x0f;
/** CAP bit 16: CQR, Contiguous Queues Required. */
export const CAP_CQR = 1 << 16;
/** CAP bits 44:37: CSS, bit 37 = NVM command set; in the high dword, bit 5. */
export const CAP_HI_CSS_NVM = 1 << 5;
/** CAP.DSTRD (35:32) = 0, CAP.MPSMIN (51:48) = CAP.MPSMAX (55:52) = 0: 4 KiB pages only. */
export const NVME_CAP_LO = (NVME_MQES | CAP_CQR | (NVME_CAP_TO << 24)) >>> 0;
export const NVME_CAP_HI = CAP_HI_CSS_NVM;
/** VS: MJR 31:16, MNR 15:8, TER 7:0: version 1.4.0. */
export const NVME_VS = 0x0001_0400;

/** CC bit 0: EN, Enable. */
export const CC_EN = 1 << 0;
/** CC bits 6:4: CSS, I/O Command Set Selected (000b NVM). */
export const CC_CSS_SHIFT = 4;
export const CC_CSS_MASK = 0x7 << CC_CSS_SHIFT;
/** CC bits 10:7: MPS, Memory Page Size (2 ^ (12 + MPS)). */
export const CC_MPS_SHIFT = 7;
export const CC_MPS_MASK = 0xf << CC_MPS_SHIFT;
/** CC bits 13:11: AMS, Arbitration Mechanism Selected (000b round robin). */
export const CC_AMS_SHIFT = 11;
export const CC_AMS_MASK = 0x7 << CC_AMS_SHIFT;
/** CC bits 15:14: SHN, Shutdown Notification (01b normal, 10b abrupt). */
export const CC_SHN_SHIFT = 14;
export const CC_SHN_MASK = 0x3 << CC_SHN_SHIFT;
/** CC bits 19:16: IOSQES, I/O Submission Queue Entry Size (2^n bytes; 6 = 64). */
export const CC_IOSQES_SHIFT = 16;
export const CC_IOSQES_MASK = 0xf << CC_IOSQES_SHIFT;
/** CC bits 23:20: IOCQES, I/O Completion Queue Entry Size (2^n bytes; 4 = 16). */
export const CC_IOCQES_SHIFT = 20;
export const CC_IOCQES_MASK = 0xf << CC_IOCQES_SHIFT;
const CC_WRITABLE = CC_EN | CC_CSS_MASK | CC_MPS_MASK | CC_AMS_MASK | CC_SHN_MASK | CC_IOSQES_MASK | CC_IOCQES_MASK;
/** CC fields that shall only change while CC.EN is 0 (3.1.5): writes to them while enabled are ignored. */
const CC_FIXED_WHILE_ENABLED = CC_CSS_MASK | CC_MPS_MASK | CC_AMS_MASK;

/** CSTS bit 0: RDY, Ready. */
export const CSTS_RDY = 1 << 0;
/** CSTS bit 1: CFS, Controller Fatal Status. */
export const CSTS_CFS = 1 << 1;
/** CSTS bits 3:2: SHST, Shutdown Status (00b normal, 01b occurring, 10b complete). */
export const CSTS_SHST_SHIFT = 2;
export const CSTS_SHST_MASK = 0x3 << CSTS_SHST_SHIFT;
export const CSTS_SHST_COMPLETE = 0x2 << CSTS_SHST_SHIFT;

/** AQA bits 11:0: ASQS; bits 27:16: ACQS (0's based sizes, 2..4096 entries). */
export const AQA_ASQS_MASK = 0xfff;
export const AQA_ACQS_SHIFT = 16;
const AQA_WRITABLE = 0x0fff_0fff;
/** ASQ/ACQ bits 11:0 are reserved (the queue is memory page aligned). */
const QUEUE_BASE_LO_MASK = 0xffff_f000;

/** Memory page size with CC.MPS = 0 (CAP.MPSMIN = CAP.MPSMAX = 0). */
export const NVME_PAGE_SIZE = 0x1000;
/** Submission queue entry: 64 bytes (4.2); completion queue entry: 16 bytes (4.6). */
export const SQE_SIZE = 64;
export const CQE_SIZE = 16;
/** The only entry sizes supported: Identify SQES/CQES min = max = 6 / 4. */
export const NVME_IOSQES = 6;
export const NVME_IOCQES = 4;
/** I/O queue pairs this controller offers (Number of Queues feature, NSQA/NCQA + 1). */
export const NVME_MAX_IO_QUEUES = 64;
/** MDTS (Identify Controller byte 77): 2^5 minimum pages = 128 KiB per command. */
export const NVME_MDTS = 5;
export const NVME_MAX_TRANSFER = NVME_PAGE_SIZE << NVME_MDTS;
/** The one namespace's id and its LBA data size (LBADS = 9: 512 bytes). */
export const NVME_NSID = 1;
export const NVME_LBA_SIZE = SECTOR_SIZE;
/** NSID FFFFFFFFh: the broadcast value, every namespace (NVMe 1.4 6.1). */
export const NSID_BROADCAST = 0xffff_ffff;

// ---------------------------------------------------------------------------------------------
// Command set (NVMe 1.4 5 and 6)

/** Admin command opcodes (Figure 139). */
export const NvmeAdminOpcode = {
  DeleteIoSq: 0x00,
  CreateIoSq: 0x01,
  GetLogPage: 0x02,
  DeleteIoCq: 0x04,
  CreateIoCq: 0x05,
  Identify: 0x06,
  Abort: 0x08,
  SetFeatures: 0x09,
  GetFeatures: 0x0a,
  AsyncEventRequest: 0x0c,
} as const;

/** NVM command set opcodes (Figure 346). */
export const NvmeIoOpcode = {
  Flush: 0x00,
  Write: 0x01,
  Read: 0x02,
} as const;

/** Identify CNS values (Figure 244). */
export const IdentifyCns = {
  Namespace: 0x00,
  Controller: 0x01,
  ActiveNamespaceList: 0x02,
} as const;

/** Feature identifiers (Figure 271). */
export const NvmeFeature = {
  NumberOfQueues: 0x07,
} as const;

/** Status Code Type (Figure 125). */
export const NvmeSct = {
  Generic: 0x0,
  CommandSpecific: 0x1,
} as const;

/**
 * Status values as (SCT << 8) | SC, the 11 low bits of the Status Field (4.6.1). Generic
 * command status Figure 126/128, command specific Figure 129; the names are the spec's.
 */
export const NvmeStatus = {
  Success: 0x000,
  InvalidCommandOpcode: 0x001,
  InvalidFieldInCommand: 0x002,
  DataTransferError: 0x004,
  InternalError: 0x006,
  InvalidNamespaceOrFormat: 0x00b,
  CommandSequenceError: 0x00c,
  PrpOffsetInvalid: 0x013,
  LbaOutOfRange: 0x080,
  /** Command specific 00h: Completion Queue Invalid (Create I/O SQ naming a missing CQ). */
  CompletionQueueInvalid: 0x100,
  /** Command specific 01h: Invalid Queue Identifier. */
  InvalidQueueIdentifier: 0x101,
  /** Command specific 02h: Invalid Queue Size. */
  InvalidQueueSize: 0x102,
  /** Command specific 08h: Invalid Interrupt Vector. */
  InvalidInterruptVector: 0x108,
  /** Command specific 0Ch: Invalid Queue Deletion (a CQ with SQs still attached). */
  InvalidQueueDeletion: 0x10c,
  /** Command specific 0Dh: Feature Identifier Not Saveable. */
  FeatureIdentifierNotSaveable: 0x10d,
} as const;
export type NvmeStatusValue = (typeof NvmeStatus)[keyof typeof NvmeStatus];

/** Status Field bit 14 (CQE DW3 bit 31): DNR, Do Not Retry. Set on every error: vtlab is deterministic, a retry gives the same answer. */
export const STATUS_DNR = 1 << 14;

/** SQE byte offsets (Figure 105/106). */
const SQE_CDW0 = 0; // OPC 7:0, FUSE 9:8, PSDT 15:14, CID 31:16
const SQE_NSID = 4;
const SQE_PRP1 = 24;
const SQE_PRP2 = 32;
const SQE_CDW10 = 40;
const SQE_CDW11 = 44;
const SQE_CDW12 = 48;
/** CQE dword offsets (Figure 124). */
const CQE_DW0 = 0;
const CQE_DW2 = 8; // SQHD 15:0, SQID 31:16
const CQE_DW3 = 12; // CID 15:0, P bit 16, Status Field 31:17

/** Queue table size: the admin queue pair plus NVME_MAX_IO_QUEUES I/O pairs. */
const QUEUE_SLOTS = NVME_MAX_IO_QUEUES + 1;
/** Data segments one command may have: MDTS pages, plus one when PRP1 has an offset. */
const MAX_SEGMENTS = (1 << NVME_MDTS) + 1;
/** Faults kept in `stats.recentFaults`. */
export const NVME_FAULTS_KEPT = 8;
/** The identify data structure size (5.15). */
const IDENTIFY_SIZE = 4096;
const TWO32 = 0x1_0000_0000;

// ---------------------------------------------------------------------------------------------

export interface NvmeOptions {
  /** Where the function sits on the PCI bus: its requester id on every DMA. */
  readonly requester: Bdf;
  /** Namespace 1's storage (512-byte sectors = LBAs). */
  readonly backend: BlockBackend;
  readonly name?: string;
  /** The platform's DMA path (IOMMU or DirectDma); may be connected later with connectDma. */
  readonly dma?: DmaPort;
  /** Serial number for Identify Controller (ASCII, up to 20 characters). */
  readonly serial?: string;
}

/** What the DMA fault was doing. */
export type NvmeFaultSite = "sq-entry" | "prp-list" | "data" | "cq-entry";

export interface NvmeFaultRecord {
  readonly site: NvmeFaultSite;
  readonly iova: number;
  readonly write: boolean;
  readonly reason: number;
  readonly reasonName: string;
}

/** Counters for the cost model and for tests. Arrays are indexed by opcode / by (SCT << 8 | SC). */
export interface NvmeStats {
  readonly adminCommands: Uint32Array;
  readonly ioCommands: Uint32Array;
  /** Completions posted, and those with a non-success status by (SCT << 8) | SC. */
  completions: number;
  readonly errorsByStatus: Uint32Array;
  /** Bytes moved by Read (namespace to host memory) and Write (host memory to namespace). */
  bytesRead: number;
  bytesWritten: number;
  dmaFaults: number;
  readonly recentFaults: NvmeFaultRecord[];
  /** Rising edges of the INTx line. */
  interrupts: number;
  doorbellWrites: number;
  /** "Invalid Doorbell Write Value": beyond the queue, or a CQ head past the entries posted. */
  invalidDoorbellValues: number;
  /** "Invalid Doorbell Register": a doorbell of a queue that does not exist, or while not ready. */
  invalidDoorbellRegisters: number;
  /** Register writes ignored (bad size or alignment, read-only register). */
  ignoredWrites: number;
  /** CC.EN 0 -> 1 refused for invalid CC or admin queue attributes (RDY stays 0). */
  enableFailures: number;
  /** Doorbells rung while the controller could not DMA (bus mastering off, no DMA port). */
  masterDisabledStalls: number;
  /** Times CSTS.CFS was set. */
  fatalErrors: number;
}

export interface NvmeQueueState {
  readonly qid: number;
  readonly base: number;
  readonly size: number;
  readonly head: number;
  readonly tail: number;
}

export interface NvmeState {
  readonly cc: number;
  readonly csts: number;
  readonly aqa: number;
  readonly asq: number;
  readonly acq: number;
  readonly intms: number;
  readonly intx: boolean;
  readonly submissionQueues: readonly (NvmeQueueState & { readonly cqid: number })[];
  readonly completionQueues: readonly (NvmeQueueState & { readonly phase: number; readonly interruptsEnabled: boolean })[];
  readonly ioQueuesAllocated: number;
}

/** PCI configuration space that reflects the controller's INTx state in PCI_STATUS_INTERRUPT and tells it of command register changes. */
class NvmeConfigSpace extends PciConfigSpace {
  constructor(
    ids: PciIds,
    private readonly intxPending: () => boolean,
    private readonly commandChanged: () => void,
  ) {
    super(ids);
  }

  override read(offset: number, size: 1 | 2 | 4): number {
    const v = super.read(offset, size);
    if (offset <= PCI_STATUS && offset + size > PCI_STATUS && this.intxPending()) {
      return (v | (PCI_STATUS_INTERRUPT << ((PCI_STATUS - offset) * 8))) >>> 0;
    }
    return v;
  }

  override write(offset: number, size: 1 | 2 | 4, value: number): void {
    const before = this.command;
    super.write(offset, size, value);
    if (this.command !== before) this.commandChanged();
  }
}

export class NvmeController implements AssignableDevice {
  readonly name: string;
  readonly requester: Bdf;
  readonly config: PciConfigSpace;
  readonly registers: BusDevice;
  readonly registerSize = NVME_BAR_SIZE;
  readonly stats: NvmeStats = newStats();

  private readonly backend: BlockBackend;
  private readonly nsze: number;
  private dma: DmaPort | undefined;
  private intx: ((asserted: boolean) => void) | undefined;
  /** The level last given to the connected line. */
  private lineLevel = false;
  /** Interrupt pending inside the device (before PCI_COMMAND_INTX_DISABLE): PCI_STATUS_INTERRUPT. */
  private pending = false;

  // Registers.
  private cc = 0;
  private csts = 0;
  private aqa = 0;
  private asqLo = 0;
  private asqHi = 0;
  private acqLo = 0;
  private acqHi = 0;
  private intms = 0;
  /** Number of Queues feature: I/O SQs and CQs allocated (1's based here). */
  private ioQueuesAllocated = NVME_MAX_IO_QUEUES;

  // Queues, indexed by queue id (0 = admin). Plain typed arrays: no allocation per command.
  private readonly sqValid = new Uint8Array(QUEUE_SLOTS);
  private readonly sqBase = new Float64Array(QUEUE_SLOTS);
  private readonly sqSize = new Uint32Array(QUEUE_SLOTS);
  private readonly sqHead = new Uint32Array(QUEUE_SLOTS);
  private readonly sqTail = new Uint32Array(QUEUE_SLOTS);
  private readonly sqCqid = new Uint32Array(QUEUE_SLOTS);
  private readonly cqValid = new Uint8Array(QUEUE_SLOTS);
  private readonly cqBase = new Float64Array(QUEUE_SLOTS);
  private readonly cqSize = new Uint32Array(QUEUE_SLOTS);
  private readonly cqHead = new Uint32Array(QUEUE_SLOTS);
  private readonly cqTail = new Uint32Array(QUEUE_SLOTS);
  private readonly cqPhase = new Uint8Array(QUEUE_SLOTS);
  private readonly cqIen = new Uint8Array(QUEUE_SLOTS);
  /** SQs attached to each CQ. */
  private readonly cqUsers = new Uint32Array(QUEUE_SLOTS);

  // Private copies of hostile data and preallocated buffers.
  private readonly sqe = new Uint8Array(SQE_SIZE);
  private readonly sqeView = new DataView(this.sqe.buffer);
  private readonly cqe = new Uint8Array(CQE_SIZE);
  private readonly cqeView = new DataView(this.cqe.buffer);
  private readonly prpList = new Uint8Array(NVME_PAGE_SIZE);
  private readonly prpListView = new DataView(this.prpList.buffer);
  private readonly segAddr = new Float64Array(MAX_SEGMENTS);
  private readonly segLen = new Uint32Array(MAX_SEGMENTS);
  private segCount = 0;
  private readonly bounce = new Uint8Array(NVME_MAX_TRANSFER);
  private readonly identifyController = new Uint8Array(IDENTIFY_SIZE);
  private readonly identifyNamespace = new Uint8Array(IDENTIFY_SIZE);
  /** Command-specific DW0 of the completion being built. */
  private dw0 = 0;
  /** Set while commands run: a nested doorbell (from an interrupt callback) only records its value. */
  private running = false;

  constructor(options: NvmeOptions) {
    this.name = options.name ?? "nvme";
    this.requester = options.requester;
    this.backend = options.backend;
    this.nsze = Math.max(0, Math.floor(options.backend.sectors));
    this.dma = options.dma;
    this.registers = {
      read: (offset, size) => this.readRegister(offset, size),
      write: (offset, size, value) => this.writeRegister(offset, size, value),
    };
    this.config = new NvmeConfigSpace(
      {
        vendorId: NVME_VENDOR_ID,
        deviceId: NVME_DEVICE_ID,
        classCode: NVME_CLASS,
        revision: 1,
        subsystemVendorId: NVME_VENDOR_ID,
        subsystemId: NVME_DEVICE_ID,
        interruptPin: NVME_INTERRUPT_PIN,
      },
      () => this.pending,
      () => this.commandChanged(),
    );
    this.config.defineBar(0, { kind: "memory64", size: NVME_BAR_SIZE, device: this.registers });
    this.buildIdentify(options.serial ?? "VTLAB0001");
  }

  connectDma(port: DmaPort): void {
    this.dma = port;
  }

  connectIntx(line: ((asserted: boolean) => void) | undefined): void {
    this.intx = line;
    this.lineLevel = false;
    this.updateInterrupt();
  }

  /** Function-level reset: queues and registers to reset values, bus mastering off, INTx deasserted. Statistics are kept. */
  reset(): void {
    this.controllerReset();
    this.cc = 0;
    this.aqa = 0;
    this.asqLo = this.asqHi = this.acqLo = this.acqHi = 0;
    // The command register returns to 0 (no memory decoding, no bus mastering, INTx enabled);
    // BAR addresses are kept, as a driver's save/restore around an FLR puts them back anyway.
    this.config.write(PCI_COMMAND, 2, 0);
    this.updateInterrupt();
  }

  /** A plain snapshot of the registers and queues, for inspection. */
  state(): NvmeState {
    const sqs: (NvmeQueueState & { cqid: number })[] = [];
    const cqs: (NvmeQueueState & { phase: number; interruptsEnabled: boolean })[] = [];
    for (let q = 0; q < QUEUE_SLOTS; q++) {
      if (this.sqValid[q] === 1) {
        sqs.push({ qid: q, base: this.sqBase[q] as number, size: this.sqSize[q] as number, head: this.sqHead[q] as number, tail: this.sqTail[q] as number, cqid: this.sqCqid[q] as number });
      }
      if (this.cqValid[q] === 1) {
        cqs.push({ qid: q, base: this.cqBase[q] as number, size: this.cqSize[q] as number, head: this.cqHead[q] as number, tail: this.cqTail[q] as number, phase: this.cqPhase[q] as number, interruptsEnabled: this.cqIen[q] === 1 });
      }
    }
    return {
      cc: this.cc,
      csts: this.csts,
      aqa: this.aqa,
      asq: this.asqHi * TWO32 + this.asqLo,
      acq: this.acqHi * TWO32 + this.acqLo,
      intms: this.intms,
      intx: this.lineLevel,
      submissionQueues: sqs,
      completionQueues: cqs,
      ioQueuesAllocated: this.ioQueuesAllocated,
    };
  }

  /** Non-zero entries of `stats.errorsByStatus`, keyed by status value. */
  errorCounts(): Record<number, number> {
    const out: Record<number, number> = {};
    this.stats.errorsByStatus.forEach((n, status) => {
      if (n !== 0) out[status] = n;
    });
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Registers

  /**
   * Reads of any size return the bytes of the naturally aligned dword they fall in (3.1: 64-bit
   * registers may be read as two dwords); unimplemented offsets and doorbells read 0.
   */
  private readRegister(offset: number, size: AccessSize): number {
    const dword = this.readDword(offset & ~3);
    const shift = (offset & 3) * 8;
    const mask = size === 4 ? 0xffff_ffff : size === 2 ? 0xffff : 0xff;
    return ((dword >>> shift) & mask) >>> 0;
  }

  private readDword(o: number): number {
    switch (o) {
      case NvmeReg.Cap:
        return NVME_CAP_LO;
      case NvmeReg.CapHi:
        return NVME_CAP_HI;
      case NvmeReg.Vs:
        return NVME_VS;
      case NvmeReg.Intms:
      case NvmeReg.Intmc:
        return this.intms;
      case NvmeReg.Cc:
        return this.cc;
      case NvmeReg.Csts:
        return this.csts;
      case NvmeReg.Aqa:
        return this.aqa;
      case NvmeReg.Asq:
        return this.asqLo;
      case NvmeReg.AsqHi:
        return this.asqHi;
      case NvmeReg.Acq:
        return this.acqLo;
      case NvmeReg.AcqHi:
        return this.acqHi;
      default:
        return 0;
    }
  }

  /** Writes must be dword-sized and aligned (3.1); anything else is ignored and reported. */
  private writeRegister(offset: number, size: AccessSize, value: number): DeviceError | undefined {
    if (size !== 4 || (offset & 3) !== 0) {
      this.stats.ignoredWrites++;
      return deviceError(this.name, offset, size, value, "NVMe registers are written as aligned dwords");
    }
    const v = value >>> 0;
    if (offset >= NvmeReg.Doorbells) return this.doorbell(offset, v);
    switch (offset) {
      case NvmeReg.Intms:
        this.intms = (this.intms | v) >>> 0;
        this.updateInterrupt();
        return undefined;
      case NvmeReg.Intmc:
        this.intms = (this.intms & ~v) >>> 0;
        this.updateInterrupt();
        return undefined;
      case NvmeReg.Cc:
        this.writeCc(v);
        return undefined;
      case NvmeReg.Aqa:
        this.aqa = (v & AQA_WRITABLE) >>> 0;
        return undefined;
      case NvmeReg.Asq:
        this.asqLo = (v & QUEUE_BASE_LO_MASK) >>> 0;
        return undefined;
      case NvmeReg.AsqHi:
        this.asqHi = v;
        return undefined;
      case NvmeReg.Acq:
        this.acqLo = (v & QUEUE_BASE_LO_MASK) >>> 0;
        return undefined;
      case NvmeReg.AcqHi:
        this.acqHi = v;
        return undefined;
      default:
        this.stats.ignoredWrites++;
        return deviceError(this.name, offset, size, v, "read-only or reserved register");
    }
  }

  private writeCc(value: number): void {
    const old = this.cc;
    let v = (value & CC_WRITABLE) >>> 0;
    const wasEnabled = (old & CC_EN) !== 0;
    if (wasEnabled && (v & CC_EN) !== 0) v = ((v & ~CC_FIXED_WHILE_ENABLED) | (old & CC_FIXED_WHILE_ENABLED)) >>> 0;
    this.cc = v;
    if (wasEnabled && (v & CC_EN) === 0) {
      // 7.6.2: CC.EN 1 -> 0 is a Controller Reset: I/O queues deleted, admin queue emptied, RDY cleared.
      this.controllerReset();
      this.cc = v;
    } else if (!wasEnabled && (v & CC_EN) !== 0) {
      this.enable();
    }
    const shn = (v & CC_SHN_MASK) >>> CC_SHN_SHIFT;
    if (shn !== 0 && (old & CC_SHN_MASK) >>> CC_SHN_SHIFT !== shn) {
      // 7.6.2 shutdown: modelled as completing at once; processing stops until a reset.
      this.csts = (this.csts & ~CSTS_SHST_MASK) | CSTS_SHST_COMPLETE;
    }
  }

  /** CC.EN 0 -> 1 (7.6.1): check CC and the admin queue attributes, set up queue 0, set RDY. */
  private enable(): void {
    const css = (this.cc & CC_CSS_MASK) >>> CC_CSS_SHIFT;
    const mps = (this.cc & CC_MPS_MASK) >>> CC_MPS_SHIFT;
    const ams = (this.cc & CC_AMS_MASK) >>> CC_AMS_SHIFT;
    const asqs = (this.aqa & AQA_ASQS_MASK) + 1;
    const acqs = ((this.aqa >>> AQA_ACQS_SHIFT) & AQA_ASQS_MASK) + 1;
    const asq = this.asqHi * TWO32 + this.asqLo;
    const acq = this.acqHi * TWO32 + this.acqLo;
    if (css !== 0 || mps !== 0 || ams !== 0 || asqs < 2 || acqs < 2 || asq === 0 || acq === 0 || (this.csts & CSTS_CFS) !== 0) {
      this.stats.enableFailures++;
      return;
    }
    this.sqValid[0] = 1;
    this.sqBase[0] = asq;
    this.sqSize[0] = asqs;
    this.sqHead[0] = 0;
    this.sqTail[0] = 0;
    this.sqCqid[0] = 0;
    this.cqValid[0] = 1;
    this.cqBase[0] = acq;
    this.cqSize[0] = acqs;
    this.cqHead[0] = 0;
    this.cqTail[0] = 0;
    this.cqPhase[0] = 1;
    this.cqIen[0] = 1; // the admin CQ always interrupts (vector 0)
    this.cqUsers[0] = 1;
    this.csts = (this.csts & ~CSTS_SHST_MASK) | CSTS_RDY;
  }

  /** Controller reset (7.6.2): every queue deleted, RDY/CFS/SHST cleared, INTMS cleared, features to defaults. */
  private controllerReset(): void {
    this.sqValid.fill(0);
    this.cqValid.fill(0);
    this.cqUsers.fill(0);
    this.sqHead.fill(0);
    this.sqTail.fill(0);
    this.cqHead.fill(0);
    this.cqTail.fill(0);
    this.csts = 0;
    this.intms = 0;
    this.ioQueuesAllocated = NVME_MAX_IO_QUEUES;
    this.updateInterrupt();
  }

  private ready(): boolean {
    return (this.csts & (CSTS_RDY | CSTS_CFS | CSTS_SHST_MASK)) === CSTS_RDY;
  }

  private canMaster(): boolean {
    return this.dma !== undefined && (this.config.command & PCI_COMMAND_MASTER) !== 0;
  }

  /** SQyTDBL / CQyHDBL writes (3.1.24, 3.1.25). */
  private doorbell(offset: number, v: number): DeviceError | undefined {
    this.stats.doorbellWrites++;
    const index = (offset - NvmeReg.Doorbells) >>> 2;
    const qid = index >>> 1;
    const isCq = (index & 1) === 1;
    if (qid >= QUEUE_SLOTS || (isCq ? this.cqValid[qid] !== 1 : this.sqValid[qid] !== 1) || !this.ready()) {
      this.stats.invalidDoorbellRegisters++;
      return deviceError(this.name, offset, 4, v, "doorbell of a queue that does not exist (Invalid Doorbell Register)");
    }
    const value = v & 0xffff; // bits 31:16 reserved
    if (isCq) {
      const size = this.cqSize[qid] as number;
      const head = this.cqHead[qid] as number;
      const posted = ((this.cqTail[qid] as number) - head + size) % size;
      const consumed = (value - head + size) % size;
      if (value >= size || consumed > posted) {
        this.stats.invalidDoorbellValues++;
        return deviceError(this.name, offset, 4, v, "CQ head beyond the queue or past the entries posted (Invalid Doorbell Write Value)");
      }
      this.cqHead[qid] = value;
      this.updateInterrupt();
      // A freed slot lets commands waiting for room in this CQ go on.
      if (consumed > 0) for (let sq = 0; sq < QUEUE_SLOTS; sq++) if (this.sqValid[sq] === 1 && this.sqCqid[sq] === qid) this.runSq(sq);
      return undefined;
    }
    if (value >= (this.sqSize[qid] as number)) {
      this.stats.invalidDoorbellValues++;
      return deviceError(this.name, offset, 4, v, "SQ tail beyond the queue (Invalid Doorbell Write Value)");
    }
    this.sqTail[qid] = value;
    this.runSq(qid);
    return undefined;
  }

  private commandChanged(): void {
    this.updateInterrupt();
    // Mastering turned on: doorbells rung while it was off are served now.
    if (this.canMaster()) for (let sq = 0; sq < QUEUE_SLOTS; sq++) if (this.sqValid[sq] === 1) this.runSq(sq);
  }

  // -------------------------------------------------------------------------------------------
  // Queue processing

  /** Process SQ `qid` from head to tail, at most its size commands, while its CQ has room. */
  private runSq(qid: number): void {
    if (this.running || !this.ready() || this.sqValid[qid] !== 1 || this.sqHead[qid] === this.sqTail[qid]) return;
    if (!this.canMaster()) {
      this.stats.masterDisabledStalls++;
      return;
    }
    this.running = true;
    const size = this.sqSize[qid] as number;
    const cqid = this.sqCqid[qid] as number;
    for (let budget = size; budget > 0 && this.ready() && this.sqValid[qid] === 1 && this.sqHead[qid] !== this.sqTail[qid]; budget--) {
      if (this.cqFull(cqid)) break;
      const head = this.sqHead[qid] as number;
      const fault = this.dmaRead((this.sqBase[qid] as number) + head * SQE_SIZE, this.sqe);
      if (fault !== undefined) {
        // The entry cannot be read, so there is no command id to complete: fatal (CSTS.CFS).
        this.noteFault("sq-entry", fault);
        this.fatal();
        break;
      }
      this.sqHead[qid] = (head + 1) % size;
      const cdw0 = this.sqeView.getUint32(SQE_CDW0, true);
      const cid = cdw0 >>> 16;
      this.dw0 = 0;
      const status = qid === 0 ? this.admin(cdw0) : this.io(cdw0);
      // A Delete I/O SQ of this very queue: its completion still goes to the admin CQ (qid 0 here).
      if (!this.post(cqid, qid, cid, status)) break;
    }
    this.running = false;
    this.updateInterrupt();
  }

  private cqFull(cqid: number): boolean {
    const size = this.cqSize[cqid] as number;
    return ((this.cqTail[cqid] as number) + 1) % size === this.cqHead[cqid];
  }

  /** Post a completion (4.6): DW0, SQ head and id, CID, phase tag and status. False if it could not be written (CFS set). */
  private post(cqid: number, sqid: number, cid: number, status: number): boolean {
    const v = this.cqeView;
    const tail = this.cqTail[cqid] as number;
    const phase = this.cqPhase[cqid] as number;
    const sf = status === NvmeStatus.Success ? 0 : status | STATUS_DNR;
    v.setUint32(CQE_DW0, this.dw0 >>> 0, true);
    v.setUint32(4, 0, true);
    v.setUint32(CQE_DW2, ((this.sqHead[sqid] as number) | (sqid << 16)) >>> 0, true);
    v.setUint32(CQE_DW3, (cid | (phase << 16) | (sf << 17)) >>> 0, true);
    const fault = this.dmaWrite((this.cqBase[cqid] as number) + tail * CQE_SIZE, this.cqe);
    if (fault !== undefined) {
      this.noteFault("cq-entry", fault);
      this.fatal();
      return false;
    }
    const next = tail + 1;
    if (next === this.cqSize[cqid]) {
      this.cqTail[cqid] = 0;
      this.cqPhase[cqid] = phase ^ 1;
    } else {
      this.cqTail[cqid] = next;
    }
    this.stats.completions++;
    if (status !== NvmeStatus.Success) {
      const s = this.stats.errorsByStatus;
      s[status & 0x7ff] = (s[status & 0x7ff] as number) + 1;
    }
    return true;
  }

  /** A fault that cannot be reported in a completion: CSTS.CFS, and nothing more is processed until reset. */
  private fatal(): void {
    this.csts |= CSTS_CFS;
    this.stats.fatalErrors++;
  }

  // -------------------------------------------------------------------------------------------
  // Admin commands (5)

  private admin(cdw0: number): number {
    const opc = cdw0 & 0xff;
    const s = this.stats.adminCommands;
    s[opc] = (s[opc] as number) + 1;
    if ((cdw0 & 0xff00) !== 0) return NvmeStatus.InvalidFieldInCommand; // FUSE or PSDT set: no fused commands, no SGLs
    switch (opc) {
      case NvmeAdminOpcode.Identify:
        return this.identify();
      case NvmeAdminOpcode.CreateIoCq:
        return this.createIoCq();
      case NvmeAdminOpcode.CreateIoSq:
        return this.createIoSq();
      case NvmeAdminOpcode.DeleteIoSq:
        return this.deleteIoSq();
      case NvmeAdminOpcode.DeleteIoCq:
        return this.deleteIoCq();
      case NvmeAdminOpcode.SetFeatures:
        return this.setFeatures();
      case NvmeAdminOpcode.GetFeatures:
        return this.getFeatures();
      default:
        return NvmeStatus.InvalidCommandOpcode;
    }
  }

  /** Identify (5.15): CNS 00h namespace, 01h controller, 02h active namespace list; 4 KiB to PRP1/PRP2. */
  private identify(): number {
    const cns = this.sqeView.getUint32(SQE_CDW10, true) & 0xff;
    const nsid = this.sqeView.getUint32(SQE_NSID, true);
    const data = this.bounce.subarray(0, IDENTIFY_SIZE);
    switch (cns) {
      case IdentifyCns.Namespace:
        if (nsid !== NVME_NSID && nsid !== NSID_BROADCAST) return NvmeStatus.InvalidNamespaceOrFormat;
        data.set(this.identifyNamespace);
        if (nsid === NSID_BROADCAST) data.fill(0, 0, 24); // capabilities common to all namespaces: no size
        break;
      case IdentifyCns.Controller:
        data.set(this.identifyController);
        break;
      case IdentifyCns.ActiveNamespaceList:
        if (nsid >= 0xffff_fffe) return NvmeStatus.InvalidNamespaceOrFormat;
        data.fill(0);
        if (nsid < NVME_NSID) new DataView(data.buffer, data.byteOffset).setUint32(0, NVME_NSID, true);
        break;
      default:
        return NvmeStatus.InvalidFieldInCommand;
    }
    return this.transfer(IDENTIFY_SIZE, true);
  }

  /** Create I/O Completion Queue (5.3): CDW10 QSIZE/QID, CDW11 IV/IEN/PC, PRP1 the base. */
  private createIoCq(): number {
    const v = this.sqeView;
    const cdw10 = v.getUint32(SQE_CDW10, true);
    const cdw11 = v.getUint32(SQE_CDW11, true);
    const qid = cdw10 & 0xffff;
    const qsize = cdw10 >>> 16; // 0's based
    const pc = cdw11 & 1;
    const ien = (cdw11 >>> 1) & 1;
    const iv = cdw11 >>> 16;
    const base = readU64(v, SQE_PRP1);
    if (qid === 0 || qid > this.ioQueuesAllocated || this.cqValid[qid] === 1) return NvmeStatus.InvalidQueueIdentifier;
    if (qsize === 0 || qsize > NVME_MQES) return NvmeStatus.InvalidQueueSize;
    if (pc === 0) return NvmeStatus.InvalidFieldInCommand; // CAP.CQR = 1: physically contiguous queues only
    if (iv !== 0) return NvmeStatus.InvalidInterruptVector; // pin-based: vector 0 only
    if (pageOffset(v, SQE_PRP1) !== 0) return NvmeStatus.InvalidFieldInCommand; // PC = 1 queues are memory page aligned
    if (((this.cc & CC_IOCQES_MASK) >>> CC_IOCQES_SHIFT) !== NVME_IOCQES) return NvmeStatus.InvalidFieldInCommand; // CC.IOCQES not set up (simplified check)
    this.cqValid[qid] = 1;
    this.cqBase[qid] = base;
    this.cqSize[qid] = qsize + 1;
    this.cqHead[qid] = 0;
    this.cqTail[qid] = 0;
    this.cqPhase[qid] = 1;
    this.cqIen[qid] = ien;
    this.cqUsers[qid] = 0;
    return NvmeStatus.Success;
  }

  /** Create I/O Submission Queue (5.4): CDW10 QSIZE/QID, CDW11 CQID/QPRIO/PC, PRP1 the base. */
  private createIoSq(): number {
    const v = this.sqeView;
    const cdw10 = v.getUint32(SQE_CDW10, true);
    const cdw11 = v.getUint32(SQE_CDW11, true);
    const qid = cdw10 & 0xffff;
    const qsize = cdw10 >>> 16;
    const pc = cdw11 & 1;
    const cqid = cdw11 >>> 16;
    const base = readU64(v, SQE_PRP1);
    if (cqid === 0 || cqid >= QUEUE_SLOTS || this.cqValid[cqid] !== 1) return NvmeStatus.CompletionQueueInvalid;
    if (qid === 0 || qid > this.ioQueuesAllocated || this.sqValid[qid] === 1) return NvmeStatus.InvalidQueueIdentifier;
    if (qsize === 0 || qsize > NVME_MQES) return NvmeStatus.InvalidQueueSize;
    if (pc === 0) return NvmeStatus.InvalidFieldInCommand;
    if (pageOffset(v, SQE_PRP1) !== 0) return NvmeStatus.InvalidFieldInCommand;
    if (((this.cc & CC_IOSQES_MASK) >>> CC_IOSQES_SHIFT) !== NVME_IOSQES) return NvmeStatus.InvalidFieldInCommand;
    this.sqValid[qid] = 1;
    this.sqBase[qid] = base;
    this.sqSize[qid] = qsize + 1;
    this.sqHead[qid] = 0;
    this.sqTail[qid] = 0;
    this.sqCqid[qid] = cqid;
    this.cqUsers[cqid] = (this.cqUsers[cqid] as number) + 1;
    return NvmeStatus.Success;
  }

  /** Delete I/O Submission Queue (5.6). Commands are processed synchronously, so none is outstanding to abort. */
  private deleteIoSq(): number {
    const qid = this.sqeView.getUint32(SQE_CDW10, true) & 0xffff;
    if (qid === 0 || qid >= QUEUE_SLOTS || this.sqValid[qid] !== 1) return NvmeStatus.InvalidQueueIdentifier;
    this.sqValid[qid] = 0;
    const cqid = this.sqCqid[qid] as number;
    this.cqUsers[cqid] = (this.cqUsers[cqid] as number) - 1;
    return NvmeStatus.Success;
  }

  /** Delete I/O Completion Queue (5.5): refused with Invalid Queue Deletion while an SQ still uses it. */
  private deleteIoCq(): number {
    const qid = this.sqeView.getUint32(SQE_CDW10, true) & 0xffff;
    if (qid === 0 || qid >= QUEUE_SLOTS || this.cqValid[qid] !== 1) return NvmeStatus.InvalidQueueIdentifier;
    if (this.cqUsers[qid] !== 0) return NvmeStatus.InvalidQueueDeletion;
    this.cqValid[qid] = 0; // the line is re-evaluated when the admin queue's run ends
    return NvmeStatus.Success;
  }

  private anyIoQueue(): boolean {
    for (let q = 1; q < QUEUE_SLOTS; q++) if (this.sqValid[q] === 1 || this.cqValid[q] === 1) return true;
    return false;
  }

  /** Set Features (5.21): Number of Queues (07h) only; DW0 of the completion says what was allocated. */
  private setFeatures(): number {
    const cdw10 = this.sqeView.getUint32(SQE_CDW10, true);
    const cdw11 = this.sqeView.getUint32(SQE_CDW11, true);
    const fid = cdw10 & 0xff;
    if (fid !== NvmeFeature.NumberOfQueues) return NvmeStatus.InvalidFieldInCommand;
    if ((cdw10 & 0x8000_0000) !== 0) return NvmeStatus.FeatureIdentifierNotSaveable;
    const nsqr = cdw11 & 0xffff;
    const ncqr = cdw11 >>> 16;
    if (nsqr === 0xffff || ncqr === 0xffff) return NvmeStatus.InvalidFieldInCommand; // 65,536 queues is not a valid request
    // 5.21.1.7: only before any I/O queue exists.
    if (this.anyIoQueue()) return NvmeStatus.CommandSequenceError;
    // The same number of SQs and CQs is allocated (simplified): the larger request, capped.
    this.ioQueuesAllocated = Math.min(NVME_MAX_IO_QUEUES, Math.max(nsqr, ncqr) + 1);
    this.dw0 = this.numberOfQueuesDw0();
    return NvmeStatus.Success;
  }

  /** Get Features (5.13): SEL 000b current, 001b default, 010b saved (= default: not saveable), 011b capabilities (changeable). */
  private getFeatures(): number {
    const cdw10 = this.sqeView.getUint32(SQE_CDW10, true);
    const fid = cdw10 & 0xff;
    const sel = (cdw10 >>> 8) & 0x7;
    if (fid !== NvmeFeature.NumberOfQueues || sel > 3) return NvmeStatus.InvalidFieldInCommand;
    if (sel === 3) this.dw0 = 1 << 2; // changeable, not saveable, not namespace specific
    else if (sel === 0) this.dw0 = this.numberOfQueuesDw0();
    else this.dw0 = ((NVME_MAX_IO_QUEUES - 1) | ((NVME_MAX_IO_QUEUES - 1) << 16)) >>> 0;
    return NvmeStatus.Success;
  }

  private numberOfQueuesDw0(): number {
    const n = this.ioQueuesAllocated - 1;
    return (n | (n << 16)) >>> 0; // NCQA 31:16, NSQA 15:0, 0's based
  }

  // -------------------------------------------------------------------------------------------
  // NVM commands (6)

  private io(cdw0: number): number {
    const opc = cdw0 & 0xff;
    const s = this.stats.ioCommands;
    s[opc] = (s[opc] as number) + 1;
    if ((cdw0 & 0xff00) !== 0) return NvmeStatus.InvalidFieldInCommand;
    const v = this.sqeView;
    const nsid = v.getUint32(SQE_NSID, true);
    switch (opc) {
      case NvmeIoOpcode.Flush:
        // 6.8; NSID FFFFFFFFh flushes every namespace (Identify VWC bits 2:1 = 11b).
        if (nsid !== NVME_NSID && nsid !== NSID_BROADCAST) return NvmeStatus.InvalidNamespaceOrFormat;
        this.backend.flush?.();
        return NvmeStatus.Success;
      case NvmeIoOpcode.Read:
      case NvmeIoOpcode.Write: {
        if (nsid !== NVME_NSID) return NvmeStatus.InvalidNamespaceOrFormat;
        const slbaLo = v.getUint32(SQE_CDW10, true);
        const slbaHi = v.getUint32(SQE_CDW11, true);
        const blocks = (v.getUint32(SQE_CDW12, true) & 0xffff) + 1; // NLB, 0's based
        const bytes = blocks * NVME_LBA_SIZE;
        if (bytes > NVME_MAX_TRANSFER) return NvmeStatus.InvalidFieldInCommand; // beyond MDTS
        if (slbaHi !== 0 || slbaLo + blocks > this.nsze) return NvmeStatus.LbaOutOfRange;
        const read = opc === NvmeIoOpcode.Read;
        const buffer = this.bounce.subarray(0, bytes);
        if (read) {
          this.backend.read(slbaLo, buffer);
          const status = this.transfer(bytes, true);
          if (status === NvmeStatus.Success) this.stats.bytesRead += bytes;
          return status;
        }
        const status = this.transfer(bytes, false);
        if (status !== NvmeStatus.Success) return status;
        this.backend.write(slbaLo, buffer);
        this.stats.bytesWritten += bytes;
        return NvmeStatus.Success;
      }
      default:
        return NvmeStatus.InvalidCommandOpcode;
    }
  }

  // -------------------------------------------------------------------------------------------
  // PRPs and data (4.3)

  /**
   * Move `length` bytes (<= MDTS) between the bounce buffer and the PRP1/PRP2 of the current
   * command: `toHost` for controller-to-host (Read, Identify).
   */
  private transfer(length: number, toHost: boolean): number {
    const status = this.mapPrps(length);
    if (status !== NvmeStatus.Success) return status;
    let at = 0;
    for (let i = 0; i < this.segCount; i++) {
      const n = this.segLen[i] as number;
      const chunk = this.bounce.subarray(at, at + n);
      const address = this.segAddr[i] as number;
      const fault = toHost ? this.dmaWrite(address, chunk) : this.dmaRead(address, chunk);
      if (fault !== undefined) {
        this.noteFault("data", fault);
        return NvmeStatus.DataTransferError;
      }
      at += n;
    }
    return NvmeStatus.Success;
  }

  /**
   * Fill segAddr/segLen from PRP1 and PRP2 (4.3, Figure 108-110). PRP1 may carry an offset
   * (dword aligned); every other data entry is page aligned. PRP2 is the second page when the
   * data ends within it, else a PRP list pointer (qword aligned); the last entry of a list page
   * chains to the next list page (page aligned) when more entries are needed. Only as many
   * entries as `length` needs are read, so a list that chains to itself still ends.
   */
  private mapPrps(length: number): number {
    const v = this.sqeView;
    const prp1 = readU64(v, SQE_PRP1);
    const prp2 = readU64(v, SQE_PRP2);
    // Offsets and alignment come from the entries' low dwords: above 2^53 the numbers lose low bits.
    const offset1 = pageOffset(v, SQE_PRP1);
    if (offset1 % 4 !== 0) return NvmeStatus.PrpOffsetInvalid;
    const first = Math.min(length, NVME_PAGE_SIZE - offset1);
    this.segAddr[0] = prp1;
    this.segLen[0] = first;
    this.segCount = 1;
    let remaining = length - first;
    if (remaining === 0) return NvmeStatus.Success;
    if (remaining <= NVME_PAGE_SIZE) {
      if (pageOffset(v, SQE_PRP2) !== 0) return NvmeStatus.PrpOffsetInvalid;
      this.addSegment(prp2, remaining);
      return NvmeStatus.Success;
    }
    let listOffset = pageOffset(v, SQE_PRP2);
    if (listOffset % 8 !== 0) return NvmeStatus.PrpOffsetInvalid;
    let list = prp2;
    // Entries still needed; bounded by MDTS, so at most MAX_SEGMENTS - 1 data entries and one
    // degenerate list page (a list starting at its page's last entry) before a page-aligned one.
    let needed = Math.ceil(remaining / NVME_PAGE_SIZE);
    for (let pages = 0; needed > 0; pages++) {
      if (pages > needed + 1) return NvmeStatus.DataTransferError; // cannot happen with aligned chains; a guard, not a path
      const inPage = (NVME_PAGE_SIZE - listOffset) / 8;
      const take = Math.min(needed, inPage);
      const into = this.prpList.subarray(0, take * 8);
      const fault = this.dmaRead(list, into);
      if (fault !== undefined) {
        this.noteFault("prp-list", fault);
        return NvmeStatus.DataTransferError;
      }
      const chains = needed > inPage; // the last entry of this page points at the next list page
      const data = chains ? take - 1 : take;
      for (let i = 0; i < data; i++) {
        const entry = readU64(this.prpListView, i * 8);
        if (pageOffset(this.prpListView, i * 8) !== 0) return NvmeStatus.PrpOffsetInvalid;
        const n = Math.min(remaining, NVME_PAGE_SIZE);
        this.addSegment(entry, n);
        remaining -= n;
      }
      needed -= data;
      if (chains) {
        list = readU64(this.prpListView, (take - 1) * 8);
        listOffset = pageOffset(this.prpListView, (take - 1) * 8);
        if (listOffset !== 0) return NvmeStatus.PrpOffsetInvalid;
      }
    }
    return NvmeStatus.Success;
  }

  private addSegment(address: number, length: number): void {
    // Adjacent pages merge into one DMA (fewer port calls; the IOMMU still checks every page).
    const last = this.segCount - 1;
    if ((this.segAddr[last] as number) + (this.segLen[last] as number) === address) {
      this.segLen[last] = (this.segLen[last] as number) + length;
      return;
    }
    this.segAddr[this.segCount] = address;
    this.segLen[this.segCount] = length;
    this.segCount++;
  }

  private dmaRead(address: number, into: Uint8Array): DmaFault | undefined {
    // canMaster() was checked before processing started; DMA port and bus mastering cannot change inside it.
    return (this.dma as DmaPort).read(this.requester, iova(address), into);
  }

  private dmaWrite(address: number, from: Uint8Array): DmaFault | undefined {
    return (this.dma as DmaPort).write(this.requester, iova(address), from);
  }

  private noteFault(site: NvmeFaultSite, f: DmaFault): void {
    this.stats.dmaFaults++;
    const kept = this.stats.recentFaults;
    if (kept.length === NVME_FAULTS_KEPT) kept.shift();
    kept.push({ site, iova: f.iova, write: f.write, reason: f.reason, reasonName: f.reasonName });
  }

  // -------------------------------------------------------------------------------------------
  // Interrupts (7.5.1.1: pin-based, level)

  private updateInterrupt(): void {
    let want = false;
    if ((this.intms & 1) === 0) {
      for (let q = 0; q < QUEUE_SLOTS; q++) {
        if (this.cqValid[q] === 1 && this.cqIen[q] === 1 && this.cqHead[q] !== this.cqTail[q]) {
          want = true;
          break;
        }
      }
    }
    this.pending = want;
    const level = want && (this.config.command & PCI_COMMAND_INTX_DISABLE) === 0;
    if (this.intx === undefined || level === this.lineLevel) return;
    this.lineLevel = level;
    if (level) this.stats.interrupts++;
    this.intx(level);
  }

  // -------------------------------------------------------------------------------------------
  // Identify data (5.15.2, Figures 245 and 247)

  private buildIdentify(serial: string): void {
    const c = this.identifyController;
    const cv = new DataView(c.buffer);
    cv.setUint16(0, NVME_VENDOR_ID, true); // VID
    cv.setUint16(2, NVME_VENDOR_ID, true); // SSVID
    ascii(c, 4, 20, serial); // SN
    ascii(c, 24, 40, "vtlab NVMe controller"); // MN
    ascii(c, 64, 8, "1.0"); // FR
    c[72] = 0; // RAB: no arbitration burst limit beyond one command
    c[77] = NVME_MDTS; // MDTS
    cv.setUint16(78, 0, true); // CNTLID
    cv.setUint32(80, NVME_VS, true); // VER
    c[111] = 1; // CNTRLTYPE: I/O controller
    cv.setUint16(256, 0, true); // OACS: no optional admin commands
    c[258] = 0; // ACL: Abort not supported (0's based limit, modelled as absent)
    c[259] = 0; // AERL
    c[260] = 1 << 1; // FRMW: one firmware slot, slot 1 read-only
    c[263] = 0; // NPSS: one power state
    c[512] = (NVME_IOSQES << 4) | NVME_IOSQES; // SQES: max 6, required 6
    c[513] = (NVME_IOCQES << 4) | NVME_IOCQES; // CQES: max 4, required 4
    cv.setUint32(516, 1, true); // NN: one namespace
    cv.setUint16(520, 0, true); // ONCS: no optional NVM commands
    c[525] = 0x07; // VWC: volatile write cache present, Flush with NSID FFFFFFFFh supported
    cv.setUint32(536, 0, true); // SGLS: SGLs not supported
    ascii(c, 768, 256, "nqn.2024-01.io.vtlab:nvme:" + serial, 0); // SUBNQN (vtlab's own naming authority, not registered)
    cv.setUint16(2048, 2500, true); // PSD0.MP: 25.00 W

    const n = this.identifyNamespace;
    const nv = new DataView(n.buffer);
    for (const at of [0, 8, 16]) {
      // NSZE, NCAP, NUSE: the whole backend, as 64-bit LBA counts
      nv.setUint32(at, this.nsze % TWO32, true);
      nv.setUint32(at + 4, Math.floor(this.nsze / TWO32), true);
    }
    n[24] = 0; // NSFEAT
    n[25] = 0; // NLBAF: one LBA format (0's based)
    n[26] = 0; // FLBAS: format 0, no metadata
    nv.setUint32(128, 9 << 16, true); // LBAF0: MS 0, LBADS 9 (512 bytes), RP 00b best
  }
}

function readU64(v: DataView, at: number): number {
  // Values above 2^53 lose their low bits (page-aligned values stay exact below 2^64); such
  // addresses are beyond any DMA port anyway. Alignment checks use pageOffset, never this value.
  return v.getUint32(at + 4, true) * TWO32 + v.getUint32(at, true);
}

/** Bits 11:0 of the little-endian 64-bit address at `at` (the offset in a 4 KiB memory page), exact at any magnitude. */
function pageOffset(v: DataView, at: number): number {
  return v.getUint32(at, true) & (NVME_PAGE_SIZE - 1);
}

/** Identify strings: ASCII, left justified, padded with spaces (SN, MN, FR) or NULs (SUBNQN, a NUL-terminated string). */
function ascii(into: Uint8Array, at: number, width: number, text: string, pad = 0x20): void {
  for (let i = 0; i < width; i++) {
    const ch = i < text.length ? text.charCodeAt(i) : pad;
    if (i >= text.length) {
      into[at + i] = pad;
      continue;
    }
    into[at + i] = ch >= 0x20 && ch < 0x7f ? ch : 0x20;
  }
}

function newStats(): NvmeStats {
  return {
    adminCommands: new Uint32Array(256),
    ioCommands: new Uint32Array(256),
    completions: 0,
    errorsByStatus: new Uint32Array(0x800),
    bytesRead: 0,
    bytesWritten: 0,
    dmaFaults: 0,
    recentFaults: [],
    interrupts: 0,
    doorbellWrites: 0,
    invalidDoorbellValues: 0,
    invalidDoorbellRegisters: 0,
    ignoredWrites: 0,
    enableFailures: 0,
    masterDisabledStalls: 0,
    fatalErrors: 0,
  };
}
