/**
 * PCI configuration space of a type-0 (endpoint) function: the 256-byte header and
 * capabilities area of the PCI Local Bus Specification 3.0, chapter 6. Writes go through a
 * per-byte write mask and a write-1-to-clear mask, so BAR sizing (write all-ones, read back the
 * size mask) falls out of the masks as it does in hardware.
 *
 * Modelled more simply than hardware: no expansion ROM BAR (reads 0, so software sees "no
 * ROM"), no PCIe extended configuration space (offsets 0x100-0xfff), BIST not implemented.
 */
import type { BusDevice } from "../bus/device.js";

/** Header offsets (PCI 3.0, Figure 6-1: type 00h configuration space header). */
export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_REVISION_ID = 0x08;
/** Class code: programming interface (0x09), sub-class (0x0a), base class (0x0b). */
export const PCI_CLASS_PROG = 0x09;
export const PCI_CLASS_DEVICE = 0x0a;
export const PCI_CACHE_LINE_SIZE = 0x0c;
export const PCI_LATENCY_TIMER = 0x0d;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_BASE_ADDRESS_0 = 0x10;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_ROM_ADDRESS = 0x30;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_INTERRUPT_PIN = 0x3d;
/** First byte after the standard header: where capabilities go. */
export const PCI_CAP_START = 0x40;
export const PCI_CONFIG_SPACE_SIZE = 0x100;

/** Command register bits. */
/** PCI_COMMAND_IO: respond to I/O space accesses. */
export const PCI_COMMAND_IO = 1 << 0;
/** PCI_COMMAND_MEMORY: respond to memory space accesses. */
export const PCI_COMMAND_MEMORY = 1 << 1;
/** PCI_COMMAND_MASTER: bus master (the function may DMA). */
export const PCI_COMMAND_MASTER = 1 << 2;
/** PCI_COMMAND_PARITY: parity error response. */
export const PCI_COMMAND_PARITY = 1 << 6;
/** PCI_COMMAND_SERR: SERR# enable. */
export const PCI_COMMAND_SERR = 1 << 8;
/** PCI_COMMAND_INTX_DISABLE: INTx emulation disable. */
export const PCI_COMMAND_INTX_DISABLE = 1 << 10;
const PCI_COMMAND_WRITABLE =
  PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE;

/** Status register bits. */
/** PCI_STATUS_INTERRUPT: INTx asserted (read-only). */
export const PCI_STATUS_INTERRUPT = 1 << 3;
/** PCI_STATUS_CAP_LIST: the capabilities pointer at 0x34 is valid. */
export const PCI_STATUS_CAP_LIST = 1 << 4;
/** Error bits, write-1-to-clear: master data parity (8), signalled/received target abort (11,12), received master abort (13), signalled system error (14), detected parity (15). */
const PCI_STATUS_W1C = (1 << 8) | (1 << 11) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 15);

/** BAR low bits. */
/** PCI_BASE_ADDRESS_SPACE_IO: bit 0 = 1 for an I/O BAR. */
export const PCI_BASE_ADDRESS_SPACE_IO = 0x1;
/** PCI_BASE_ADDRESS_MEM_TYPE_64: bits 2:1 = 10b for a 64-bit memory BAR. */
export const PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x4;
/** PCI_BASE_ADDRESS_MEM_PREFETCH: bit 3, prefetchable memory. */
export const PCI_BASE_ADDRESS_MEM_PREFETCH = 0x8;

/** Header type 0 (endpoint); bit 7 = multi-function. */
export const PCI_HEADER_TYPE_NORMAL = 0x00;
export const PCI_HEADER_TYPE_MULTI_FUNCTION = 0x80;

export type BarKind = "io" | "memory32" | "memory64";

export interface BarDefinition {
  readonly kind: BarKind;
  /** Size in bytes: a power of two, at least 4 (I/O) or 16 (memory). */
  readonly size: number;
  readonly prefetchable?: boolean;
  /** The device that answers accesses inside the BAR once it is mapped. */
  readonly device?: BusDevice;
}

export interface Bar extends BarDefinition {
  readonly index: number;
}

export interface PciIds {
  readonly vendorId: number;
  readonly deviceId: number;
  /** 24-bit class code: base class << 16 | sub-class << 8 | programming interface. */
  readonly classCode: number;
  readonly revision?: number;
  readonly subsystemVendorId?: number;
  readonly subsystemId?: number;
  /** 0 = none, 1..4 = INTA#..INTD#. */
  readonly interruptPin?: number;
  readonly multiFunction?: boolean;
}

/** A configuration-space change that matters to whoever maps the function's BARs. */
export type ConfigChange = { readonly what: "bar"; readonly index: number } | { readonly what: "command" };

export class PciConfigSpace {
  private readonly bytes = new Uint8Array(PCI_CONFIG_SPACE_SIZE);
  private readonly writeMask = new Uint8Array(PCI_CONFIG_SPACE_SIZE);
  private readonly w1cMask = new Uint8Array(PCI_CONFIG_SPACE_SIZE);
  private readonly barDefs: (Bar | undefined)[] = new Array(6).fill(undefined);
  private lastCapability = 0;
  private nextCapabilityOffset = PCI_CAP_START;
  /** Called after a write that changed a BAR or the command register. */
  onChange: ((change: ConfigChange) => void) | undefined;

  constructor(ids: PciIds) {
    this.set16(PCI_VENDOR_ID, ids.vendorId);
    this.set16(PCI_DEVICE_ID, ids.deviceId);
    this.bytes[PCI_REVISION_ID] = ids.revision ?? 0;
    this.bytes[PCI_CLASS_PROG] = ids.classCode & 0xff;
    this.bytes[PCI_CLASS_DEVICE] = (ids.classCode >>> 8) & 0xff;
    this.bytes[PCI_CLASS_DEVICE + 1] = (ids.classCode >>> 16) & 0xff;
    this.bytes[PCI_HEADER_TYPE] = PCI_HEADER_TYPE_NORMAL | (ids.multiFunction === true ? PCI_HEADER_TYPE_MULTI_FUNCTION : 0);
    this.set16(PCI_SUBSYSTEM_VENDOR_ID, ids.subsystemVendorId ?? 0);
    this.set16(PCI_SUBSYSTEM_ID, ids.subsystemId ?? 0);
    this.bytes[PCI_INTERRUPT_PIN] = ids.interruptPin ?? 0;
    this.setMask16(PCI_COMMAND, PCI_COMMAND_WRITABLE);
    this.w1cMask[PCI_STATUS] = PCI_STATUS_W1C & 0xff;
    this.w1cMask[PCI_STATUS + 1] = PCI_STATUS_W1C >>> 8;
    this.writeMask[PCI_CACHE_LINE_SIZE] = 0xff;
    this.writeMask[PCI_LATENCY_TIMER] = 0xff;
    this.writeMask[PCI_INTERRUPT_LINE] = 0xff;
  }

  get vendorId(): number {
    return this.get16(PCI_VENDOR_ID);
  }

  get deviceId(): number {
    return this.get16(PCI_DEVICE_ID);
  }

  get command(): number {
    return this.get16(PCI_COMMAND);
  }

  get bars(): readonly Bar[] {
    return this.barDefs.filter((b): b is Bar => b !== undefined);
  }

  /**
   * Declare BAR `index` (0-5). A 64-bit memory BAR also takes `index + 1` for its high half.
   * Throws on a malformed definition: that is a bug in the device model, not guest input.
   */
  defineBar(index: number, def: BarDefinition): Bar {
    const pow2 = def.size > 0 && (def.size & (def.size - 1)) === 0;
    const min = def.kind === "io" ? 4 : 16;
    if (!Number.isInteger(index) || index < 0 || index > 5 || (def.kind === "memory64" && index > 4)) {
      throw new RangeError(`BAR index ${index} is not valid for a ${def.kind} BAR`);
    }
    if (!pow2 || def.size < min || (def.kind !== "memory64" && def.size > 0x8000_0000) || (def.kind === "io" && def.size > 256)) {
      throw new RangeError(`BAR${index} size ${def.size} must be a power of two in range for ${def.kind}`);
    }
    if (this.barDefs[index] !== undefined || (def.kind === "memory64" && this.barDefs[index + 1] !== undefined)) {
      throw new RangeError(`BAR${index} is already defined`);
    }
    const bar: Bar = { ...def, index };
    this.barDefs[index] = bar;
    const off = PCI_BASE_ADDRESS_0 + index * 4;
    if (def.kind === "io") {
      this.set32(off, PCI_BASE_ADDRESS_SPACE_IO);
      this.setMask32(off, ~(def.size - 1) & 0xffff_fffc);
    } else {
      const flags = (def.kind === "memory64" ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) | (def.prefetchable === true ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
      this.set32(off, flags);
      const lowMask = def.size >= 0x1_0000_0000 ? 0 : ~(def.size - 1) & 0xffff_fff0;
      this.setMask32(off, lowMask);
      if (def.kind === "memory64") {
        const highSizeBits = def.size > 0x1_0000_0000 ? def.size / 0x1_0000_0000 - 1 : 0;
        this.setMask32(off + 4, ~highSizeBits >>> 0);
      }
    }
    return bar;
  }

  /**
   * Add a capability with `id` and `length` bytes (including the 2-byte header) to the list.
   * `writable` gives per-byte write masks for the body (offset 2 onward). Returns its offset.
   */
  addCapability(id: number, length: number, writable: readonly number[] = []): number {
    const offset = this.nextCapabilityOffset;
    const aligned = (length + 3) & ~3;
    if (length < 2 || offset + aligned > PCI_CONFIG_SPACE_SIZE) {
      throw new RangeError(`capability ${id} of ${length} bytes does not fit in configuration space`);
    }
    this.bytes[offset] = id;
    this.bytes[offset + 1] = 0;
    writable.forEach((m, i) => {
      this.writeMask[offset + 2 + i] = m;
    });
    if (this.lastCapability === 0) this.bytes[PCI_CAPABILITY_LIST] = offset;
    else this.bytes[this.lastCapability + 1] = offset;
    this.lastCapability = offset;
    this.nextCapabilityOffset = offset + aligned;
    this.set16(PCI_STATUS, this.get16(PCI_STATUS) | PCI_STATUS_CAP_LIST);
    return offset;
  }

  /** Walk the capability list: [offset, id] pairs, as a driver would find them. */
  capabilities(): [offset: number, id: number][] {
    const found: [number, number][] = [];
    let p = (this.get16(PCI_STATUS) & PCI_STATUS_CAP_LIST) !== 0 ? (this.bytes[PCI_CAPABILITY_LIST] as number) & 0xfc : 0;
    for (let guard = 0; p !== 0 && guard < 48; guard++) {
      found.push([p, this.bytes[p] as number]);
      p = (this.bytes[p + 1] as number) & 0xfc;
    }
    return found;
  }

  /** Current base address programmed into BAR `index` (0 when unprogrammed or undefined). */
  barAddress(index: number): number {
    const bar = this.barDefs[index];
    if (bar === undefined) return 0;
    const off = PCI_BASE_ADDRESS_0 + index * 4;
    const low = this.get32(off);
    if (bar.kind === "io") return (low & 0xffff_fffc) >>> 0;
    const base = (low & 0xffff_fff0) >>> 0;
    return bar.kind === "memory64" ? this.get32(off + 4) * 0x1_0000_0000 + base : base;
  }

  /** Read `size` bytes at `offset` (little-endian). Reads never fail; out of range reads 0xff.. */
  read(offset: number, size: 1 | 2 | 4): number {
    let value = 0;
    for (let i = size - 1; i >= 0; i--) {
      const o = offset + i;
      value = value * 256 + (o >= 0 && o < PCI_CONFIG_SPACE_SIZE ? (this.bytes[o] as number) : 0xff);
    }
    return value >>> 0;
  }

  /** Write through the masks: read-only bits keep their value, W1C bits clear where 1 is written. */
  write(offset: number, size: 1 | 2 | 4, value: number): void {
    let barTouched = -1;
    let commandTouched = false;
    for (let i = 0; i < size; i++) {
      const o = offset + i;
      if (o < 0 || o >= PCI_CONFIG_SPACE_SIZE) continue;
      const b = (value >>> (8 * i)) & 0xff;
      const mask = this.writeMask[o] as number;
      const w1c = this.w1cMask[o] as number;
      const old = this.bytes[o] as number;
      const next = ((old & ~mask) | (b & mask)) & ~(b & w1c);
      if (next !== old) {
        this.bytes[o] = next;
        if (o >= PCI_BASE_ADDRESS_0 && o < PCI_BASE_ADDRESS_0 + 24) barTouched = (o - PCI_BASE_ADDRESS_0) >> 2;
        if (o === PCI_COMMAND || o === PCI_COMMAND + 1) commandTouched = true;
      }
    }
    if (barTouched >= 0) {
      const index = this.barDefs[barTouched] === undefined && barTouched > 0 ? barTouched - 1 : barTouched;
      this.onChange?.({ what: "bar", index });
    }
    if (commandTouched) this.onChange?.({ what: "command" });
  }

  private get16(o: number): number {
    return (this.bytes[o] as number) | ((this.bytes[o + 1] as number) << 8);
  }
  private get32(o: number): number {
    return ((this.bytes[o] as number) | ((this.bytes[o + 1] as number) << 8) | ((this.bytes[o + 2] as number) << 16) | ((this.bytes[o + 3] as number) << 24)) >>> 0;
  }
  private set16(o: number, v: number): void {
    this.bytes[o] = v & 0xff;
    this.bytes[o + 1] = (v >>> 8) & 0xff;
  }
  private set32(o: number, v: number): void {
    for (let i = 0; i < 4; i++) this.bytes[o + i] = (v >>> (8 * i)) & 0xff;
  }
  private setMask16(o: number, m: number): void {
    this.writeMask[o] = m & 0xff;
    this.writeMask[o + 1] = (m >>> 8) & 0xff;
  }
  private setMask32(o: number, m: number): void {
    for (let i = 0; i < 4; i++) this.writeMask[o + i] = (m >>> (8 * i)) & 0xff;
  }
}
