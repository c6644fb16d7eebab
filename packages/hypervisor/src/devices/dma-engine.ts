/**
 * A DMA-capable, assignable PCI device: a memory-to-memory copy engine a guest driver programs.
 *
 * The driver puts a ring of 32-byte descriptors in its memory, writes the ring's bus address and
 * size into registers in BAR0, and rings the doorbell with the new producer index. The engine
 * then fetches each descriptor by DMA, copies `length` bytes from `src` to `dst` by DMA, writes a
 * status word back into the descriptor, and raises its completion interrupt. Every memory access
 * goes through the `DmaPort` it was given, with its own bus:dev.fn as the requester id: with an
 * IOMMU in front, bus addresses are the guest's pseudo-physical addresses and anything outside
 * the guest is blocked; without one (`DirectDma`) they are machine addresses.
 *
 * Everything the device reads from guest memory (descriptors) is hostile: read once into a
 * private buffer, decoded from that copy, validated, and answered with a documented status.
 *
 * Modelled more simply than a real engine: processing happens synchronously inside the doorbell
 * write (no simulated transfer time); a copy goes in 4 KiB chunks in ascending order, so a fault
 * part-way leaves the chunks before it written, and overlapping source and destination are not
 * handled as memmove; the interrupt is one callback per event (MSI-like), with STATUS.IRQ as the
 * pending flag the driver clears.
 */
import {
  PCI_COMMAND,
  PCI_COMMAND_MASTER,
  PciConfigSpace,
  deviceError,
  iova,
  type AccessSize,
  type Bdf,
  type BusDevice,
  type DeviceError,
  type DmaFault,
  type DmaPort,
} from "@vtlab/arch";
import type { AssignableDevice } from "../passthrough/device.js";

/** PCI ids. 0x1234 is the unofficial vendor id emulators use for their own devices; vtlab has no PCI-SIG id. */
export const DMA_ENGINE_VENDOR_ID = 0x1234;
export const DMA_ENGINE_DEVICE_ID = 0x7d1a;
/** Class code: base class 08h (generic system peripheral), sub-class 80h (other). */
export const DMA_ENGINE_CLASS = 0x08_80_00;
/** BAR0: 4 KiB of 32-bit memory-mapped registers. */
export const DMA_ENGINE_BAR_SIZE = 0x1000;

/** Register offsets in BAR0 (32-bit registers). */
export const DmaEngineReg = {
  /** RO: identification, "VTDM" little-endian. */
  Id: 0x00,
  /** RW: CTRL_ENABLE, CTRL_IRQ_ENABLE; CTRL_RESET is self-clearing. */
  Control: 0x04,
  /** STATUS_IRQ and STATUS_ERROR are write-1-to-clear; STATUS_HALTED is read-only. */
  Status: 0x08,
  /** RW: bus address of the descriptor ring (32-byte aligned), low and high dwords. */
  RingBaseLo: 0x10,
  RingBaseHi: 0x14,
  /** RW: descriptors in the ring, a power of two from 1 to RING_MAX. */
  RingSize: 0x18,
  /** RO: index of the next descriptor the engine will process (consumer index). */
  RingHead: 0x1c,
  /** Write: new producer index (the doorbell); read: the last one written. */
  Doorbell: 0x20,
  /** RO: descriptors completed without error / with an error. */
  Completed: 0x24,
  Errors: 0x28,
  /** RO: DmaEngineError code of the last error. */
  LastError: 0x2c,
  /** RO: bus address and remapping fault reason of the last DMA the platform refused. */
  LastFaultLo: 0x30,
  LastFaultHi: 0x34,
  LastFaultReason: 0x38,
} as const;

export const DMA_ENGINE_ID = 0x4d44_5456; // "VTDM"
/** CONTROL bit 0: process descriptors. */
export const CTRL_ENABLE = 1 << 0;
/** CONTROL bit 1: raise the interrupt on completions and errors. */
export const CTRL_IRQ_ENABLE = 1 << 1;
/** CONTROL bit 31: reset the ring state (head, tail, counters, status); reads as 0. */
export const CTRL_RESET = 0x8000_0000;
/** STATUS bit 0: interrupt pending (W1C). */
export const STATUS_IRQ = 1 << 0;
/** STATUS bit 1: an error happened since the driver last cleared it (W1C). */
export const STATUS_ERROR = 1 << 1;
/** STATUS bit 2: the engine stopped because it could not fetch or complete a descriptor (cleared by reset). */
export const STATUS_HALTED = 1 << 2;

/** Largest ring, in descriptors. */
export const RING_MAX = 4096;
/** Largest transfer one descriptor may ask for. */
export const MAX_TRANSFER = 0x10_0000;

/** Descriptor layout (32 bytes). */
export const DESC_SIZE = 32;
export const DESC_SRC = 0x00; // u64 source bus address
export const DESC_DST = 0x08; // u64 destination bus address
export const DESC_LENGTH = 0x10; // u32 bytes, 1..MAX_TRANSFER
export const DESC_FLAGS = 0x14; // u32 DESC_FLAG_*
export const DESC_STATUS = 0x18; // u32 written by the engine
export const DESC_COOKIE = 0x1c; // u32 the driver's, never read
/** Descriptor flag bit 0: raise the completion interrupt when this descriptor is done. */
export const DESC_FLAG_INTERRUPT = 1 << 0;
const DESC_FLAGS_DEFINED = DESC_FLAG_INTERRUPT;

/** Status word the engine writes into a descriptor. */
export const DescStatus = {
  /** The copy completed. */
  Done: 0x1,
  /** Malformed descriptor: length 0 or above MAX_TRANSFER, or undefined flag bits set. */
  BadDescriptor: 0x81,
  /** A DMA read of the source was refused by the platform (IOMMU fault). */
  ReadFault: 0x82,
  /** A DMA write of the destination was refused by the platform (IOMMU fault). */
  WriteFault: 0x83,
} as const;

/** LAST_ERROR codes. */
export const DmaEngineError = {
  None: 0x0,
  BadDescriptor: 0x1,
  ReadFault: 0x2,
  WriteFault: 0x3,
  /** The descriptor itself could not be fetched or its status written back: the engine halts. */
  RingFault: 0x4,
  /** Doorbell rung while bus mastering is disabled in the PCI command register. */
  MasterDisabled: 0x5,
} as const;

export interface DmaEngineOptions {
  /** Where the function sits on the PCI bus: its requester id on every DMA. */
  readonly requester: Bdf;
  /** The platform's DMA path: the IOMMU, or DirectDma with no IOMMU (device assignment replaces it: connectDma). */
  readonly dma: DmaPort;
  /** An MSI-like edge per interrupt event (optional; INTx, connectIntx, is the level-triggered line). */
  readonly raiseInterrupt?: () => void;
  readonly name?: string;
}

/** The engine's registers as plain data (snapshots). */
export interface DmaEngineState {
  readonly control: number;
  readonly status: number;
  readonly ringBaseLo: number;
  readonly ringBaseHi: number;
  readonly ringSize: number;
  readonly head: number;
  readonly tail: number;
  readonly completed: number;
  readonly errors: number;
  readonly lastError: number;
  readonly lastFaultLo: number;
  readonly lastFaultHi: number;
  readonly lastFaultReason: number;
}

export class DmaEngine implements AssignableDevice {
  readonly name: string;
  readonly config: PciConfigSpace;
  readonly requester: Bdf;
  /** The BAR0 register block. */
  readonly registers: BusDevice;
  readonly registerSize = DMA_ENGINE_BAR_SIZE;
  private dma: DmaPort;
  private readonly raiseInterrupt: (() => void) | undefined;
  /** INTx#: asserted while STATUS.IRQ is pending (set by device assignment). */
  private intx: ((asserted: boolean) => void) | undefined;
  /** Function-level resets done (device assignment's quiesce). */
  resets = 0;
  private s: { -readonly [K in keyof DmaEngineState]: DmaEngineState[K] } = blankState();
  private readonly desc = new Uint8Array(DESC_SIZE);
  private readonly descView = new DataView(this.desc.buffer);
  private readonly bounce = new Uint8Array(0x1000);
  private readonly statusWord = new Uint8Array(4);
  /** Interrupts raised (for tests and statistics). */
  interrupts = 0;

  constructor(options: DmaEngineOptions) {
    this.name = options.name ?? "dma-engine";
    this.requester = options.requester;
    this.dma = options.dma;
    this.raiseInterrupt = options.raiseInterrupt;
    this.registers = {
      read: (offset, size) => this.readRegister(offset, size),
      write: (offset, size, value) => this.writeRegister(offset, size, value),
    };
    this.config = new PciConfigSpace({
      vendorId: DMA_ENGINE_VENDOR_ID,
      deviceId: DMA_ENGINE_DEVICE_ID,
      classCode: DMA_ENGINE_CLASS,
      revision: 1,
      subsystemVendorId: DMA_ENGINE_VENDOR_ID,
      subsystemId: DMA_ENGINE_DEVICE_ID,
      interruptPin: 1,
    });
    this.config.defineBar(0, { kind: "memory32", size: DMA_ENGINE_BAR_SIZE, device: this.registers });
  }

  /** Where DMA goes from now on (AssignableDevice). */
  connectDma(port: DmaPort): void {
    this.dma = port;
  }

  /** The INTx# line (AssignableDevice): driven with STATUS.IRQ. */
  connectIntx(line: ((asserted: boolean) => void) | undefined): void {
    this.intx = line;
    line?.((this.s.status & STATUS_IRQ) !== 0);
  }

  /**
   * Function-level reset (AssignableDevice): every register back to its reset value, the ring
   * forgotten, bus mastering and decoding off in the command register, INTx deasserted. The engine
   * issues no DMA until a driver programs it again.
   */
  reset(): void {
    this.s = blankState();
    this.config.write(PCI_COMMAND, 2, 0);
    this.resets++;
    this.intx?.(false);
  }

  state(): DmaEngineState {
    return { ...this.s };
  }

  /** Restore registers from a snapshot (the ring contents live in guest memory). */
  fromState(state: DmaEngineState): void {
    this.s = { ...state };
  }

  private readRegister(offset: number, size: AccessSize): number {
    const dword = this.readDword(offset & ~3);
    const shift = (offset & 3) * 8;
    const mask = size === 4 ? 0xffff_ffff : size === 2 ? 0xffff : 0xff;
    return ((dword >>> shift) & mask) >>> 0;
  }

  private readDword(o: number): number {
    const s = this.s;
    switch (o) {
      case DmaEngineReg.Id:
        return DMA_ENGINE_ID;
      case DmaEngineReg.Control:
        return s.control;
      case DmaEngineReg.Status:
        return s.status;
      case DmaEngineReg.RingBaseLo:
        return s.ringBaseLo;
      case DmaEngineReg.RingBaseHi:
        return s.ringBaseHi;
      case DmaEngineReg.RingSize:
        return s.ringSize;
      case DmaEngineReg.RingHead:
        return s.head;
      case DmaEngineReg.Doorbell:
        return s.tail;
      case DmaEngineReg.Completed:
        return s.completed;
      case DmaEngineReg.Errors:
        return s.errors;
      case DmaEngineReg.LastError:
        return s.lastError;
      case DmaEngineReg.LastFaultLo:
        return s.lastFaultLo;
      case DmaEngineReg.LastFaultHi:
        return s.lastFaultHi;
      case DmaEngineReg.LastFaultReason:
        return s.lastFaultReason;
      default:
        return 0;
    }
  }

  private writeRegister(offset: number, size: AccessSize, value: number): DeviceError | undefined {
    if (size !== 4 || (offset & 3) !== 0) return deviceError(this.name, offset, size, value, "registers are 32-bit");
    const v = value >>> 0;
    const s = this.s;
    switch (offset) {
      case DmaEngineReg.Control:
        if ((v & CTRL_RESET) !== 0) {
          this.s = { ...blankState(), ringBaseLo: s.ringBaseLo, ringBaseHi: s.ringBaseHi, ringSize: s.ringSize };
          this.intx?.(false);
          return undefined;
        }
        s.control = v & (CTRL_ENABLE | CTRL_IRQ_ENABLE);
        this.run();
        return undefined;
      case DmaEngineReg.Status:
        s.status &= ~(v & (STATUS_IRQ | STATUS_ERROR));
        if ((v & STATUS_IRQ) !== 0) this.intx?.(false);
        return undefined;
      case DmaEngineReg.RingBaseLo:
        if ((v & (DESC_SIZE - 1)) !== 0) return deviceError(this.name, offset, size, v, "the ring must be 32-byte aligned");
        if ((s.control & CTRL_ENABLE) !== 0) return deviceError(this.name, offset, size, v, "the ring cannot move while the engine is enabled");
        s.ringBaseLo = v;
        return undefined;
      case DmaEngineReg.RingBaseHi:
        if ((s.control & CTRL_ENABLE) !== 0) return deviceError(this.name, offset, size, v, "the ring cannot move while the engine is enabled");
        s.ringBaseHi = v;
        return undefined;
      case DmaEngineReg.RingSize:
        if (!(v >= 1 && v <= RING_MAX && (v & (v - 1)) === 0)) {
          return deviceError(this.name, offset, size, v, `ring size must be a power of two from 1 to ${RING_MAX}`);
        }
        if ((s.control & CTRL_ENABLE) !== 0) return deviceError(this.name, offset, size, v, "the ring cannot resize while the engine is enabled");
        s.ringSize = v;
        s.head = 0;
        s.tail = 0;
        return undefined;
      case DmaEngineReg.Doorbell:
        if (s.ringSize === 0 || v >= s.ringSize) return deviceError(this.name, offset, size, v, "doorbell index beyond the ring");
        s.tail = v;
        this.run();
        return undefined;
      default:
        return undefined; // read-only
    }
  }

  /** Process descriptors from head to tail, if enabled, mastering and not halted. */
  private run(): void {
    const s = this.s;
    if ((s.control & CTRL_ENABLE) === 0 || (s.status & STATUS_HALTED) !== 0 || s.head === s.tail) return;
    if ((this.config.command & PCI_COMMAND_MASTER) === 0) {
      this.error(DmaEngineError.MasterDisabled);
      return;
    }
    const ringBase = s.ringBaseHi * 0x1_0000_0000 + s.ringBaseLo;
    // The head chases the tail at most ringSize - 1 steps.
    while (s.head !== s.tail) {
      const at = ringBase + s.head * DESC_SIZE;
      const fetch = this.dma.read(this.requester, iova(at), this.desc);
      if (fetch !== undefined) {
        this.noteFault(fetch);
        s.status |= STATUS_HALTED;
        this.error(DmaEngineError.RingFault);
        return;
      }
      // Decode the private copy once.
      const d = this.descView;
      const src = d.getUint32(DESC_SRC + 4, true) * 0x1_0000_0000 + d.getUint32(DESC_SRC, true);
      const dst = d.getUint32(DESC_DST + 4, true) * 0x1_0000_0000 + d.getUint32(DESC_DST, true);
      const length = d.getUint32(DESC_LENGTH, true);
      const flags = d.getUint32(DESC_FLAGS, true);
      const status = this.execute(src, dst, length, flags);
      this.statusWord[0] = status;
      const back = this.dma.write(this.requester, iova(at + DESC_STATUS), this.statusWord);
      if (back !== undefined) {
        this.noteFault(back);
        s.status |= STATUS_HALTED;
        this.error(DmaEngineError.RingFault);
        return;
      }
      s.head = (s.head + 1) % s.ringSize;
      if (status === DescStatus.Done) {
        s.completed = (s.completed + 1) >>> 0;
        if ((flags & DESC_FLAG_INTERRUPT) !== 0) this.interrupt();
      } else {
        s.errors = (s.errors + 1) >>> 0;
        this.error(status === DescStatus.BadDescriptor ? DmaEngineError.BadDescriptor : status === DescStatus.ReadFault ? DmaEngineError.ReadFault : DmaEngineError.WriteFault);
      }
    }
  }

  private execute(src: number, dst: number, length: number, flags: number): number {
    if (length === 0 || length > MAX_TRANSFER || (flags & ~DESC_FLAGS_DEFINED) !== 0) return DescStatus.BadDescriptor;
    for (let done = 0; done < length; ) {
      const n = Math.min(this.bounce.length, length - done);
      const chunk = n === this.bounce.length ? this.bounce : this.bounce.subarray(0, n);
      const r = this.dma.read(this.requester, iova(src + done), chunk);
      if (r !== undefined) {
        this.noteFault(r);
        return DescStatus.ReadFault;
      }
      const w = this.dma.write(this.requester, iova(dst + done), chunk);
      if (w !== undefined) {
        this.noteFault(w);
        return DescStatus.WriteFault;
      }
      done += n;
    }
    return DescStatus.Done;
  }

  private noteFault(f: DmaFault): void {
    this.s.lastFaultLo = f.iova % 0x1_0000_0000 >>> 0;
    this.s.lastFaultHi = Math.floor(f.iova / 0x1_0000_0000) >>> 0;
    this.s.lastFaultReason = f.reason >>> 0;
  }

  private error(code: number): void {
    this.s.lastError = code;
    this.s.status |= STATUS_ERROR;
    this.interrupt();
  }

  private interrupt(): void {
    if ((this.s.control & CTRL_IRQ_ENABLE) === 0) return;
    this.s.status |= STATUS_IRQ;
    this.interrupts++;
    this.raiseInterrupt?.();
    this.intx?.(true);
  }
}

function blankState(): { -readonly [K in keyof DmaEngineState]: DmaEngineState[K] } {
  return {
    control: 0,
    status: 0,
    ringBaseLo: 0,
    ringBaseHi: 0,
    ringSize: 0,
    head: 0,
    tail: 0,
    completed: 0,
    errors: 0,
    lastError: 0,
    lastFaultLo: 0,
    lastFaultHi: 0,
    lastFaultReason: 0,
  };
}
