/**
 * An I/O APIC (Intel 82093AA I/O Advanced Programmable Interrupt Controller datasheet, and Xen's
 * virtual IO-APIC, xen/arch/x86/hvm/vioapic.c): 24 interrupt input pins (GSIs 0-23), each with a
 * 64-bit redirection table entry that says where and how its interrupt is delivered to the local
 * APICs.
 *
 * Registers: two in memory at the base (0xFEC00000, Xen's VIOAPIC_DEFAULT_BASE_ADDRESS), IOREGSEL
 * (offset 0x00, the index of the register IOWIN shows) and IOWIN (offset 0x10, the 32-bit window);
 * behind them the indirect registers IOAPICID (0x00, ID in bits 27:24), IOAPICVER (0x01, version
 * 0x11 in bits 7:0, the maximum redirection entry, 23, in bits 23:16; read-only), IOAPICARB (0x02,
 * the arbitration ID in bits 27:24; read-only) and the redirection table (0x10 + 2n: bits 31:0 of
 * entry n; 0x11 + 2n: bits 63:32).
 *
 * Redirection entry (82093AA 3.2.4): 7:0 vector, 10:8 delivery mode (000 fixed, 001 lowest
 * priority, 010 SMI, 100 NMI, 101 INIT, 111 ExtINT), 11 destination mode (0 physical, 1 logical),
 * 12 delivery status (read-only), 13 polarity (0 high, 1 low), 14 remote IRR (read-only), 15
 * trigger mode (0 edge, 1 level), 16 mask, 63:56 destination. After reset every entry is masked.
 *
 * Pins: `setLevel(gsi, asserted, source)` drives an input line; several sources may share a line,
 * which is asserted while any of them asserts it (wire-OR, as Xen's gsi_assert_count). An
 * edge-triggered pin delivers on the line's rising edge; a level-triggered pin delivers on the
 * rising edge, sets remote IRR, and delivers again only after the local APIC's EOI of its vector
 * (`eoi`, called from the LAPIC's EOI of a vector accepted as level-triggered) finds the line
 * still asserted. A masked pin delivers nothing: an edge while masked is lost; a level that is
 * still asserted when the entry is written unmasked is delivered then (Xen's
 * vioapic_write_redirent).
 *
 * Modelled more simply than the 82093AA, as Xen's vIOAPIC does: the polarity bit is stored but
 * not applied (`asserted` is the logical interrupt request); delivery is immediate, so delivery
 * status always reads 0; there is no APIC bus (the arbitration ID is the ID). Beyond Xen: only
 * fixed and lowest-priority delivery reach a vCPU (lowest priority: the first vCPU addressed);
 * SMI, NMI, INIT, ExtINT and the reserved modes are counted in `stats.ignoredDeliveries`. Bits
 * 55:32 of an entry are reserved: they read 0 and writes to them are dropped. An index IOREGSEL
 * names that is no register reads 0 and ignores writes (counted), as Xen's vIOAPIC; the 8-bit
 * IOREGSEL keeps bits 7:0 of what is written; a 1- or 2-byte write of IOWIN writes the register
 * with its upper bytes zero, a 1- or 2-byte read gives its low bytes (as Xen's vioapic). Offsets 0x20-0xFF of the window read 0; the rest of
 * the page (the IO-APIC decodes 0x100 bytes, VIOAPIC_MEM_LENGTH) reads all-ones.
 */
import { allOnes, type AccessSize, type BusDevice, type DeviceError } from "@vtlab/arch";

/** VIOAPIC_DEFAULT_BASE_ADDRESS: where the IO-APIC's registers sit in every domain. */
export const IOAPIC_BASE_DEFAULT = 0xfec0_0000;
/** VIOAPIC_MEM_LENGTH: the bytes the IO-APIC decodes (it is registered as the whole page). */
export const IOAPIC_MEM_LENGTH = 0x100;
/** The page registered on the domain's MMIO bus. */
export const IOAPIC_MMIO_SIZE = 0x1000;
/** VIOAPIC_REG_SELECT: IOREGSEL, the register index (offset 0x00). */
export const IOAPIC_REG_SELECT = 0x00;
/** VIOAPIC_REG_WINDOW: IOWIN, the register window (offset 0x10). */
export const IOAPIC_REG_WINDOW = 0x10;
/** VIOAPIC_REG_APIC_ID: IOAPICID, indirect register 0x00. */
export const IOAPIC_REG_APIC_ID = 0x00;
/** VIOAPIC_REG_VERSION: IOAPICVER, indirect register 0x01 (read-only). */
export const IOAPIC_REG_VERSION = 0x01;
/** VIOAPIC_REG_ARB_ID: IOAPICARB, indirect register 0x02 (read-only). */
export const IOAPIC_REG_ARB_ID = 0x02;
/** VIOAPIC_REG_RTE0: the first redirection-table register (entry n at 0x10 + 2n, 0x11 + 2n). */
export const IOAPIC_REG_RTE0 = 0x10;
/** VIOAPIC_VERSION_ID: the 82093AA's version, 0x11. */
export const IOAPIC_VERSION_ID = 0x11;
/** Interrupt input pins (the 82093AA's 24; maximum redirection entry 23). */
export const IOAPIC_NUM_PINS = 24;

/** Redirection entry, bits 31:0. */
export const IOAPIC_RTE_VECTOR = 0xff; // 7:0 interrupt vector
export const IOAPIC_RTE_DELIVERY_MODE_SHIFT = 8; // 10:8 delivery mode
export const IOAPIC_RTE_DELIVERY_MODE = 0x7 << IOAPIC_RTE_DELIVERY_MODE_SHIFT;
export const IOAPIC_RTE_DEST_LOGICAL = 1 << 11; // destination mode: 1 logical, 0 physical
export const IOAPIC_RTE_DELIVERY_STATUS = 1 << 12; // delivery status (read-only; 0 idle)
export const IOAPIC_RTE_POLARITY_LOW = 1 << 13; // interrupt input pin polarity: 1 active low
export const IOAPIC_RTE_REMOTE_IRR = 1 << 14; // remote IRR (read-only; level: accepted, EOI pending)
export const IOAPIC_RTE_TRIGGER_LEVEL = 1 << 15; // trigger mode: 1 level, 0 edge
export const IOAPIC_RTE_MASKED = 1 << 16; // interrupt mask
/** Bits of the low dword software may write (vector, delivery mode, destination mode, polarity, trigger mode, mask). */
const RTE_LO_WRITABLE = IOAPIC_RTE_VECTOR | IOAPIC_RTE_DELIVERY_MODE | IOAPIC_RTE_DEST_LOGICAL | IOAPIC_RTE_POLARITY_LOW | IOAPIC_RTE_TRIGGER_LEVEL | IOAPIC_RTE_MASKED;
/** Redirection entry, bits 63:32: the destination in 63:56 (bits 31:24 of the high dword). */
export const IOAPIC_RTE_DEST_SHIFT = 24;
const RTE_HI_WRITABLE = 0xff00_0000;
/** IOAPICID / IOAPICARB: the 4-bit ID in bits 27:24. */
const IOAPIC_ID_SHIFT = 24;
const IOAPIC_ID_MASK = 0xf;

/** Delivery modes of a redirection entry (82093AA 3.2.4, bits 10:8). */
export const IoApicDeliveryMode = { Fixed: 0, LowestPriority: 1, Smi: 2, Nmi: 4, Init: 5, ExtInt: 7 } as const;

/** Who drives an input line: bit n of a pin's source mask (any number 0-31; 0 is the default). */
export const IoApicSource = {
  /** A caller that does not say (event-channel callbacks via HVM_PARAM_CALLBACK_TYPE_GSI). */
  Default: 0,
  /** The 16550 UART (ISA IRQ 4). */
  Uart: 1,
  /** The ATA disk (ISA IRQ 14). */
  Ata: 2,
  /** The Xen platform device's INTx. */
  PlatformIntx: 3,
} as const;

/**
 * Where an interrupt goes: the hypervisor delivers it to the local APICs the destination names
 * (`level`: the pin is level-triggered, so the LAPIC sets TMR and reports the EOI).
 */
export type IoApicDeliver = (dest: number, logical: boolean, vector: number, deliveryMode: number, level: boolean) => void;

export interface IoApicOptions {
  readonly deliver: IoApicDeliver;
  /** Input pins (default 24). */
  readonly pins?: number;
  /** IOAPICID after reset (default 0, as Xen's domU vIOAPIC). */
  readonly id?: number;
}

export interface IoApicStats {
  /** Interrupts sent to the local APICs (fixed and lowest priority). */
  delivered: number;
  /** Deliveries with a mode the model does not deliver (SMI, NMI, INIT, ExtINT, reserved). */
  ignoredDeliveries: number;
  /** Rising edges on a masked edge-triggered pin (lost, as on the 82093AA). */
  maskedEdges: number;
  /** EOIs that cleared a remote IRR. */
  eois: number;
  /** IOWIN accesses while IOREGSEL names no register. */
  badRegisterAccesses: number;
  /** setLevel calls for a GSI the IO-APIC does not have. */
  badGsi: number;
}

/** A snapshot: plain data. */
export interface IoApicState {
  readonly ioregsel: number;
  readonly id: number;
  /** Redirection entries as [low, high] dwords. */
  readonly redirection: readonly (readonly [number, number])[];
  /** Each pin's source mask (the line is asserted when non-zero). */
  readonly sources: readonly number[];
}

export class IoApic implements BusDevice {
  readonly pins: number;
  readonly stats: IoApicStats = { delivered: 0, ignoredDeliveries: 0, maskedEdges: 0, eois: 0, badRegisterAccesses: 0, badGsi: 0 };
  private readonly deliverFn: IoApicDeliver;
  private ioregsel = 0;
  private id: number;
  private readonly rteLo: Uint32Array;
  private readonly rteHi: Uint32Array;
  private readonly sources: Uint32Array;

  constructor(options: IoApicOptions) {
    const pins = options.pins ?? IOAPIC_NUM_PINS;
    if (!Number.isInteger(pins) || pins < 1 || pins > 120) throw new RangeError(`IoApic: ${pins} pins (the redirection table holds 1..120 entries)`);
    this.pins = pins;
    this.deliverFn = options.deliver;
    this.id = (options.id ?? 0) & IOAPIC_ID_MASK;
    this.rteLo = new Uint32Array(pins).fill(IOAPIC_RTE_MASKED);
    this.rteHi = new Uint32Array(pins);
    this.sources = new Uint32Array(pins);
  }

  // ---- the MMIO registers ----

  read(offset: number, size: AccessSize): number {
    if (!(offset >= 0 && offset < IOAPIC_MEM_LENGTH)) return allOnes(size);
    let value: number;
    if (offset === IOAPIC_REG_SELECT) value = this.ioregsel;
    else if (offset === IOAPIC_REG_WINDOW) value = this.readIndirect();
    else value = 0;
    return size === 4 ? value >>> 0 : value & (size === 2 ? 0xffff : 0xff);
  }

  write(offset: number, size: AccessSize, value: number): DeviceError | undefined {
    if (!(offset >= 0 && offset < IOAPIC_MEM_LENGTH)) return undefined;
    const v = size === 4 ? value >>> 0 : value & (size === 2 ? 0xffff : 0xff);
    if (offset === IOAPIC_REG_SELECT) this.ioregsel = v & 0xff;
    else if (offset === IOAPIC_REG_WINDOW) this.writeIndirect(v);
    return undefined;
  }

  // ---- the pins ----

  /**
   * Drive GSI `gsi`'s input line: `asserted` for `source` (IoApicSource; default 0). The line is
   * the OR of its sources. A GSI outside 0..pins-1 is counted and ignored.
   */
  setLevel(gsi: number, asserted: boolean, source: number = IoApicSource.Default): void {
    if (!Number.isInteger(gsi) || gsi < 0 || gsi >= this.pins || !Number.isInteger(source) || source < 0 || source > 31) {
      this.stats.badGsi++;
      return;
    }
    const before = this.sources[gsi]!;
    const bit = (1 << source) >>> 0;
    const after = (asserted ? before | bit : before & ~bit) >>> 0;
    this.sources[gsi] = after;
    if (before === 0 && after !== 0) this.risingEdge(gsi);
  }

  /** Whether GSI `gsi`'s line is asserted by any source. */
  lineAsserted(gsi: number): boolean {
    return gsi >= 0 && gsi < this.pins && this.sources[gsi]! !== 0;
  }

  /**
   * The local APIC's EOI of a level-triggered `vector` (Xen's vioapic_update_EOI): every entry with
   * that vector has its remote IRR cleared, and a level-triggered, unmasked pin whose line is
   * still asserted delivers again.
   */
  eoi(vector: number): void {
    for (let pin = 0; pin < this.pins; pin++) {
      const lo = this.rteLo[pin]!;
      if ((lo & IOAPIC_RTE_VECTOR) !== (vector & 0xff)) continue;
      if ((lo & IOAPIC_RTE_REMOTE_IRR) !== 0) this.stats.eois++;
      this.rteLo[pin] = lo & ~IOAPIC_RTE_REMOTE_IRR;
      if ((lo & IOAPIC_RTE_TRIGGER_LEVEL) !== 0 && (lo & IOAPIC_RTE_MASKED) === 0 && this.sources[pin]! !== 0) {
        this.rteLo[pin] = (lo | IOAPIC_RTE_REMOTE_IRR) >>> 0;
        this.deliver(pin);
      }
    }
  }

  /** Redirection entry `pin` as [bits 31:0, bits 63:32]. */
  redirectionEntry(pin: number): [number, number] {
    return [this.rteLo[pin] ?? 0, this.rteHi[pin] ?? 0];
  }

  state(): IoApicState {
    return {
      ioregsel: this.ioregsel,
      id: this.id,
      redirection: Array.from({ length: this.pins }, (_, i) => [this.rteLo[i]!, this.rteHi[i]!] as const),
      sources: Array.from(this.sources),
    };
  }

  /** An IO-APIC restored from `state()` (nothing is delivered while restoring). */
  static fromState(state: IoApicState, options: IoApicOptions): IoApic {
    const a = new IoApic({ ...options, pins: options.pins ?? state.redirection.length, id: state.id });
    a.ioregsel = state.ioregsel & 0xff;
    for (let i = 0; i < a.pins; i++) {
      const e = state.redirection[i];
      if (e === undefined) continue;
      a.rteLo[i] = (e[0] & (RTE_LO_WRITABLE | IOAPIC_RTE_REMOTE_IRR)) >>> 0;
      a.rteHi[i] = (e[1] & RTE_HI_WRITABLE) >>> 0;
      a.sources[i] = (state.sources[i] ?? 0) >>> 0;
    }
    return a;
  }

  // ---- internals ----

  private readIndirect(): number {
    const sel = this.ioregsel;
    if (sel === IOAPIC_REG_APIC_ID || sel === IOAPIC_REG_ARB_ID) return (this.id << IOAPIC_ID_SHIFT) >>> 0;
    if (sel === IOAPIC_REG_VERSION) return (((this.pins - 1) << 16) | IOAPIC_VERSION_ID) >>> 0;
    const pin = (sel - IOAPIC_REG_RTE0) >> 1;
    if (sel < IOAPIC_REG_RTE0 || pin >= this.pins) {
      this.stats.badRegisterAccesses++;
      return 0;
    }
    return (sel & 1) !== 0 ? this.rteHi[pin]! : this.rteLo[pin]!;
  }

  private writeIndirect(value: number): void {
    const sel = this.ioregsel;
    if (sel === IOAPIC_REG_APIC_ID) {
      this.id = (value >>> IOAPIC_ID_SHIFT) & IOAPIC_ID_MASK;
      return;
    }
    if (sel === IOAPIC_REG_VERSION || sel === IOAPIC_REG_ARB_ID) return; // read-only
    const pin = (sel - IOAPIC_REG_RTE0) >> 1;
    if (sel < IOAPIC_REG_RTE0 || pin >= this.pins) {
      this.stats.badRegisterAccesses++;
      return;
    }
    if ((sel & 1) !== 0) {
      this.rteHi[pin] = (value & RTE_HI_WRITABLE) >>> 0;
      return;
    }
    // Delivery status and remote IRR are read-only; switching to edge trigger clears remote IRR.
    const old = this.rteLo[pin]!;
    let lo = ((value & RTE_LO_WRITABLE) | (old & IOAPIC_RTE_REMOTE_IRR)) >>> 0;
    if ((lo & IOAPIC_RTE_TRIGGER_LEVEL) === 0) lo &= ~IOAPIC_RTE_REMOTE_IRR;
    this.rteLo[pin] = lo >>> 0;
    // A level-triggered pin that is unmasked with its line asserted and no EOI pending delivers now.
    if ((lo & IOAPIC_RTE_TRIGGER_LEVEL) !== 0 && (lo & (IOAPIC_RTE_MASKED | IOAPIC_RTE_REMOTE_IRR)) === 0 && this.sources[pin]! !== 0) {
      this.rteLo[pin] = (lo | IOAPIC_RTE_REMOTE_IRR) >>> 0;
      this.deliver(pin);
    }
  }

  private risingEdge(pin: number): void {
    const lo = this.rteLo[pin]!;
    if ((lo & IOAPIC_RTE_MASKED) !== 0) {
      if ((lo & IOAPIC_RTE_TRIGGER_LEVEL) === 0) this.stats.maskedEdges++;
      return;
    }
    if ((lo & IOAPIC_RTE_TRIGGER_LEVEL) === 0) {
      this.deliver(pin);
    } else if ((lo & IOAPIC_RTE_REMOTE_IRR) === 0) {
      this.rteLo[pin] = (lo | IOAPIC_RTE_REMOTE_IRR) >>> 0;
      this.deliver(pin);
    }
  }

  private deliver(pin: number): void {
    const lo = this.rteLo[pin]!;
    const mode = (lo & IOAPIC_RTE_DELIVERY_MODE) >>> IOAPIC_RTE_DELIVERY_MODE_SHIFT;
    if (mode !== IoApicDeliveryMode.Fixed && mode !== IoApicDeliveryMode.LowestPriority) {
      this.stats.ignoredDeliveries++;
      return;
    }
    this.stats.delivered++;
    const dest = this.rteHi[pin]! >>> IOAPIC_RTE_DEST_SHIFT;
    this.deliverFn(dest, (lo & IOAPIC_RTE_DEST_LOGICAL) !== 0, lo & IOAPIC_RTE_VECTOR, mode, (lo & IOAPIC_RTE_TRIGGER_LEVEL) !== 0);
  }
}
