/**
 * An ATA disk on the primary channel in PIO mode (ATA/ATAPI-6, T13/1410D): the task-file
 * registers at 0x1F0-0x1F7, the device-control/alternate-status register at 0x3F6, IRQ 14.
 * Commands: IDENTIFY DEVICE, READ/WRITE SECTORS (LBA28), READ/WRITE MULTIPLE, SET MULTIPLE MODE,
 * FLUSH CACHE, SET FEATURES (accepted), INITIALIZE DEVICE PARAMETERS (accepted). Anything else is
 * aborted (ERR with ABRT), as a drive does.
 *
 * Every command and data word crosses a port, so under virtualization each is an I/O exit: the
 * disk counts them, which is what makes an emulated disk slow and PV block devices worth having.
 *
 * Modelled more simply than a drive: commands complete at once (BSY is never seen set), only
 * LBA addressing (CHS commands are refused), one device (master; selecting the slave reads
 * status 0 as "no device"), no DMA.
 */
import type { AccessSize, BusDevice, DeviceError } from "@vtlab/arch";

export const SECTOR_SIZE = 512;

/** Task-file register offsets from 0x1F0 (ATA-6 7.1). */
export const ATA_DATA = 0;
export const ATA_ERROR_FEATURES = 1;
export const ATA_SECTOR_COUNT = 2;
export const ATA_LBA_LOW = 3;
export const ATA_LBA_MID = 4;
export const ATA_LBA_HIGH = 5;
export const ATA_DEVICE = 6;
export const ATA_STATUS_COMMAND = 7;
export const ATA_PRIMARY_PORT = 0x1f0;
export const ATA_PRIMARY_CONTROL_PORT = 0x3f6;
export const ATA_PRIMARY_IRQ = 14;

/** Status register bits. */
export const ATA_SR_BSY = 0x80;
export const ATA_SR_DRDY = 0x40;
export const ATA_SR_DF = 0x20;
export const ATA_SR_DRQ = 0x08;
export const ATA_SR_ERR = 0x01;
/** Error register bits. */
export const ATA_ER_ABRT = 0x04;
export const ATA_ER_IDNF = 0x10;
/** Device register: LBA mode (bit 6), device select (bit 4). */
export const ATA_DEV_LBA = 0x40;
export const ATA_DEV_SLAVE = 0x10;
/** Device control: nIEN (bit 1), SRST (bit 2). */
export const ATA_CTL_NIEN = 0x02;
export const ATA_CTL_SRST = 0x04;

/** Commands (ATA-6 Table 38). */
export const AtaCommand = {
  ReadSectors: 0x20,
  ReadSectorsNoRetry: 0x21,
  WriteSectors: 0x30,
  WriteSectorsNoRetry: 0x31,
  InitializeDeviceParameters: 0x91,
  ReadMultiple: 0xc4,
  WriteMultiple: 0xc5,
  SetMultipleMode: 0xc6,
  FlushCache: 0xe7,
  IdentifyDevice: 0xec,
  SetFeatures: 0xef,
} as const;

/** Where the disk's sectors live: memory, or a raw image file behind the toolstack. */
export interface BlockBackend {
  readonly sectors: number;
  read(sector: number, into: Uint8Array): void;
  write(sector: number, from: Uint8Array): void;
  flush?(): void;
}

/** A disk held in memory (tests, scratch disks). */
export class MemoryBlockBackend implements BlockBackend {
  readonly data: Uint8Array;
  constructor(readonly sectors: number) {
    this.data = new Uint8Array(sectors * SECTOR_SIZE);
  }
  read(sector: number, into: Uint8Array): void {
    into.set(this.data.subarray(sector * SECTOR_SIZE, sector * SECTOR_SIZE + into.length));
  }
  write(sector: number, from: Uint8Array): void {
    this.data.set(from, sector * SECTOR_SIZE);
  }
}

export interface AtaDiskOptions {
  readonly backend: BlockBackend;
  /** IRQ 14: called with the new level. */
  readonly irq?: (level: boolean) => void;
  readonly model?: string;
  readonly serial?: string;
}

/** Largest READ/WRITE MULTIPLE block this drive accepts (IDENTIFY word 47). */
const MAX_MULTIPLE = 16;

export class AtaDisk {
  private features = 0;
  private count = 0;
  private lbaLow = 0;
  private lbaMid = 0;
  private lbaHigh = 0;
  private device = 0xa0;
  private status = ATA_SR_DRDY;
  private error = 0;
  private control = 0;
  private multiple = 0;
  private irqLevel = false;
  /** The PIO data phase: a buffer of up to `MAX_MULTIPLE` sectors and where the transfer stands. */
  private readonly buffer = new Uint8Array(SECTOR_SIZE * MAX_MULTIPLE);
  private bufferLength = 0;
  private bufferPos = 0;
  private transfer: "none" | "read" | "write" | "identify" = "none";
  private lba = 0;
  private remaining = 0;
  private blockSectors = 1;
  /** Counters: every register access is a port access (an I/O exit under VMX). */
  readonly stats = { commands: 0, sectorsRead: 0, sectorsWritten: 0, portAccesses: 0, aborted: 0 };
  /** The task-file registers (0x1F0-0x1F7). */
  readonly taskFile: BusDevice;
  /** Device control / alternate status (0x3F6). */
  readonly controlBlock: BusDevice;

  constructor(private readonly options: AtaDiskOptions) {
    this.taskFile = { read: (o, s) => this.readTaskFile(o, s), write: (o, s, v) => this.writeTaskFile(o, s, v) };
    this.controlBlock = {
      read: () => {
        this.stats.portAccesses++;
        return this.deviceSelected() ? this.status : 0; // alternate status: no interrupt acknowledge
      },
      write: (_o: number, _s: AccessSize, v: number) => {
        this.stats.portAccesses++;
        if ((v & ATA_CTL_SRST) !== 0 && (this.control & ATA_CTL_SRST) === 0) this.reset();
        this.control = v & 0xff;
        this.updateIrq();
        return undefined;
      },
    };
  }

  private deviceSelected(): boolean {
    return (this.device & ATA_DEV_SLAVE) === 0;
  }

  private readTaskFile(offset: number, size: AccessSize): number {
    this.stats.portAccesses++;
    if (offset === ATA_DATA) return this.readData(size);
    if (!this.deviceSelected()) return 0; // no slave: status 0
    switch (offset) {
      case ATA_ERROR_FEATURES:
        return this.error;
      case ATA_SECTOR_COUNT:
        return this.count;
      case ATA_LBA_LOW:
        return this.lbaLow;
      case ATA_LBA_MID:
        return this.lbaMid;
      case ATA_LBA_HIGH:
        return this.lbaHigh;
      case ATA_DEVICE:
        return this.device;
      default:
        // Reading the status register acknowledges the interrupt (ATA-6 5.2.13).
        if (this.irqLevel) this.setIrq(false);
        return this.status;
    }
  }

  private writeTaskFile(offset: number, size: AccessSize, value: number): DeviceError | undefined {
    this.stats.portAccesses++;
    if (offset === ATA_DATA) {
      this.writeData(size, value);
      return undefined;
    }
    const v = value & 0xff;
    switch (offset) {
      case ATA_ERROR_FEATURES:
        this.features = v;
        break;
      case ATA_SECTOR_COUNT:
        this.count = v;
        break;
      case ATA_LBA_LOW:
        this.lbaLow = v;
        break;
      case ATA_LBA_MID:
        this.lbaMid = v;
        break;
      case ATA_LBA_HIGH:
        this.lbaHigh = v;
        break;
      case ATA_DEVICE:
        this.device = v | 0xa0;
        break;
      default:
        if (this.deviceSelected()) this.command(v);
    }
    return undefined;
  }

  private command(cmd: number): void {
    // ATA8-ACS: writing the Command register clears a pending interrupt.
    this.setIrq(false);
    this.stats.commands++;
    this.error = 0;
    this.transfer = "none";
    const sectors = this.count === 0 ? 256 : this.count;
    const lba = ((this.device & 0x0f) << 24) | (this.lbaHigh << 16) | (this.lbaMid << 8) | this.lbaLow;
    switch (cmd) {
      case AtaCommand.IdentifyDevice:
        this.identify();
        this.startTransfer("identify", 0, 1, 1);
        this.raiseIrq();
        return;
      case AtaCommand.ReadSectors:
      case AtaCommand.ReadSectorsNoRetry:
      case AtaCommand.ReadMultiple: {
        const multiple = cmd === AtaCommand.ReadMultiple;
        if (!this.checkRange(lba, sectors, multiple)) return;
        this.startTransfer("read", lba, sectors, multiple ? this.multiple : 1);
        this.fillReadBlock();
        this.raiseIrq();
        return;
      }
      case AtaCommand.WriteSectors:
      case AtaCommand.WriteSectorsNoRetry:
      case AtaCommand.WriteMultiple: {
        const multiple = cmd === AtaCommand.WriteMultiple;
        if (!this.checkRange(lba, sectors, multiple)) return;
        this.startTransfer("write", lba, sectors, multiple ? this.multiple : 1);
        this.bufferLength = Math.min(this.blockSectors, this.remaining) * SECTOR_SIZE;
        this.status = ATA_SR_DRDY | ATA_SR_DRQ; // ready for the first block, no interrupt yet
        return;
      }
      case AtaCommand.SetMultipleMode: {
        const n = this.count;
        // The count must be a power of two no larger than IDENTIFY word 47 (0 disables).
        if (n > MAX_MULTIPLE || (n & (n - 1)) !== 0) return this.abort();
        this.multiple = n;
        this.status = ATA_SR_DRDY;
        this.raiseIrq();
        return;
      }
      case AtaCommand.FlushCache:
        this.options.backend.flush?.();
        this.status = ATA_SR_DRDY;
        this.raiseIrq();
        return;
      case AtaCommand.SetFeatures:
      case AtaCommand.InitializeDeviceParameters:
        this.status = ATA_SR_DRDY;
        this.raiseIrq();
        return;
      default:
        this.abort();
    }
  }

  private checkRange(lba: number, sectors: number, multiple: boolean): boolean {
    if ((this.device & ATA_DEV_LBA) === 0) {
      this.abort(); // CHS addressing is not modelled
      return false;
    }
    if (multiple && this.multiple === 0) {
      this.abort(); // READ/WRITE MULTIPLE before SET MULTIPLE MODE
      return false;
    }
    if (lba + sectors > this.options.backend.sectors) {
      this.error = ATA_ER_IDNF; // sector not found
      this.status = ATA_SR_DRDY | ATA_SR_ERR;
      this.stats.aborted++;
      this.raiseIrq();
      return false;
    }
    return true;
  }

  private abort(): void {
    this.error = ATA_ER_ABRT;
    this.status = ATA_SR_DRDY | ATA_SR_ERR;
    this.stats.aborted++;
    this.raiseIrq();
  }

  private startTransfer(kind: "read" | "write" | "identify", lba: number, sectors: number, block: number): void {
    this.transfer = kind;
    this.lba = lba;
    this.remaining = sectors;
    this.blockSectors = Math.max(1, block);
    this.bufferPos = 0;
    this.status = ATA_SR_DRDY | ATA_SR_DRQ;
  }

  private fillReadBlock(): void {
    const n = Math.min(this.blockSectors, this.remaining);
    const view = this.buffer.subarray(0, n * SECTOR_SIZE);
    this.options.backend.read(this.lba, view);
    this.bufferLength = n * SECTOR_SIZE;
    this.bufferPos = 0;
  }

  private readData(size: AccessSize): number {
    if (this.transfer !== "read" && this.transfer !== "identify") return 0xffff;
    const width = size === 4 ? 4 : 2; // PIO data is 16 bits; a 32-bit access moves two words
    let v = 0;
    for (let b = 0; b < width; b++) v |= (this.buffer[this.bufferPos + b] ?? 0) << (8 * b);
    this.bufferPos += width;
    if (this.bufferPos >= this.bufferLength) this.endReadBlock();
    return v >>> 0;
  }

  private endReadBlock(): void {
    if (this.transfer === "identify") {
      this.transfer = "none";
      this.status = ATA_SR_DRDY;
      return;
    }
    const n = this.bufferLength / SECTOR_SIZE;
    this.stats.sectorsRead += n;
    this.lba += n;
    this.remaining -= n;
    if (this.remaining === 0) {
      this.transfer = "none";
      this.status = ATA_SR_DRDY;
      return;
    }
    this.fillReadBlock();
    this.raiseIrq(); // the next block is ready
  }

  private writeData(size: AccessSize, value: number): void {
    if (this.transfer !== "write") return;
    const width = size === 4 ? 4 : 2;
    for (let b = 0; b < width && this.bufferPos < this.bufferLength; b++) this.buffer[this.bufferPos++] = (value >>> (8 * b)) & 0xff;
    if (this.bufferPos < this.bufferLength) return;
    const n = this.bufferLength / SECTOR_SIZE;
    this.options.backend.write(this.lba, this.buffer.subarray(0, this.bufferLength));
    this.stats.sectorsWritten += n;
    this.lba += n;
    this.remaining -= n;
    this.bufferPos = 0;
    if (this.remaining === 0) {
      this.transfer = "none";
      this.status = ATA_SR_DRDY;
    } else {
      this.bufferLength = Math.min(this.blockSectors, this.remaining) * SECTOR_SIZE;
      this.status = ATA_SR_DRDY | ATA_SR_DRQ;
    }
    this.raiseIrq(); // block written (the last one: command complete)
  }

  /** IDENTIFY DEVICE data (ATA-6 8.15.8, Table 31). */
  private identify(): void {
    const w = new Uint16Array(256);
    const total = this.options.backend.sectors;
    const ascii = (start: number, words: number, text: string) => {
      const s = text.padEnd(words * 2, " ");
      for (let k = 0; k < words; k++) w[start + k] = (s.charCodeAt(2 * k) << 8) | s.charCodeAt(2 * k + 1);
    };
    w[0] = 0x0040; // fixed disk
    const cylinders = Math.min(16383, Math.floor(total / (16 * 63)));
    w[1] = cylinders;
    w[3] = 16; // heads
    w[6] = 63; // sectors per track
    ascii(10, 10, this.options.serial ?? "VTLAB0001");
    ascii(23, 4, "1.0");
    ascii(27, 20, this.options.model ?? "vtlab ATA disk");
    w[47] = 0x8000 | MAX_MULTIPLE;
    w[49] = 1 << 9; // LBA supported
    w[53] = 0x0001; // words 54-58 valid
    w[59] = this.multiple !== 0 ? 0x0100 | this.multiple : 0;
    const lba28 = Math.min(total, 0x0fff_ffff);
    w[60] = lba28 & 0xffff;
    w[61] = lba28 >>> 16;
    w[80] = 1 << 6; // ATA/ATAPI-6
    w[83] = 0x4000; // bit 14 must be 1 (word valid)
    for (let k = 0; k < 256; k++) {
      this.buffer[2 * k] = w[k]! & 0xff;
      this.buffer[2 * k + 1] = w[k]! >>> 8;
    }
    this.bufferLength = SECTOR_SIZE;
  }

  private reset(): void {
    this.status = ATA_SR_DRDY;
    this.error = 0x01; // diagnostic: device 0 passed
    this.count = 1;
    this.lbaLow = 1;
    this.lbaMid = 0;
    this.lbaHigh = 0;
    this.device = 0xa0;
    this.transfer = "none";
    this.setIrq(false);
  }

  private raiseIrq(): void {
    this.setIrq(true);
  }

  private updateIrq(): void {
    if ((this.control & ATA_CTL_NIEN) !== 0) this.setIrq(false);
  }

  private setIrq(level: boolean): void {
    const effective = level && (this.control & ATA_CTL_NIEN) === 0;
    if (effective !== this.irqLevel) {
      this.irqLevel = effective;
      this.options.irq?.(effective);
    }
  }
}
