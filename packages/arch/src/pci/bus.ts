/**
 * A PCI bus segment with a type-1 configuration mechanism host bridge (PCI 3.0, 3.2.2.3.2:
 * CONFIG_ADDRESS at port 0xCF8, CONFIG_DATA at 0xCFC-0xCFF). Functions are attached by
 * bus:device.function; their BARs are mapped onto the port-I/O and MMIO buses when software
 * programs them and enables decoding in the command register, and unmapped when it disables it.
 */
import type { AccessSize, BusDevice, BusRegistrationError, DeviceError } from "../bus/device.js";
import { allOnes } from "../bus/device.js";
import type { MmioBus } from "../bus/mmio.js";
import type { PortIoBus } from "../bus/port-io.js";
import {
  type Bar,
  PCI_COMMAND_IO,
  PCI_COMMAND_MEMORY,
  PciConfigSpace,
} from "./config-space.js";

declare const bdfBrand: unique symbol;
/** A requester / routing id: bus << 8 | device << 3 | function (VT-d calls it the source id). */
export type Bdf = number & { readonly [bdfBrand]: "bdf" };

export function bdf(bus: number, device: number, fn: number): Bdf {
  if (!(bus >= 0 && bus < 256 && device >= 0 && device < 32 && fn >= 0 && fn < 8)) {
    throw new RangeError(`bad PCI address ${bus}:${device}.${fn}`);
  }
  return ((bus << 8) | (device << 3) | fn) as Bdf;
}

/** "bb:dd.f", as lspci prints it. */
export function formatBdf(id: Bdf): string {
  const h = (n: number, w: number): string => n.toString(16).padStart(w, "0");
  return `${h(id >>> 8, 2)}:${h((id >>> 3) & 0x1f, 2)}.${id & 7}`;
}

/** A PCI function: its configuration space, whose BARs carry the devices that answer in them. */
export interface PciFunction {
  readonly name: string;
  readonly config: PciConfigSpace;
}

/** PCI 3.0 3.2.2.3.2: CONFIG_ADDRESS (0xCF8). */
export const PCI_CONFIG_ADDRESS_PORT = 0xcf8;
/** PCI 3.0 3.2.2.3.2: CONFIG_DATA (0xCFC-0xCFF). */
export const PCI_CONFIG_DATA_PORT = 0xcfc;
/** CONFIG_ADDRESS bit 31: enable configuration space mapping. */
export const PCI_CONFIG_ENABLE = 0x8000_0000;

export interface PciAttachError {
  readonly kind: "pci-attach-error";
  readonly bdf: Bdf;
  readonly message: string;
}

export class PciBus {
  private readonly functions = new Map<number, PciFunction>();
  /** Where each BAR is currently mapped: key bdf * 8 + bar index. */
  private readonly mapped = new Map<number, { space: "io" | "memory"; base: number }>();
  /** BAR mappings that failed (an overlap on the bus): the BAR stays unmapped, as on a bus conflict. */
  readonly mappingErrors: BusRegistrationError[] = [];

  constructor(
    private readonly ports?: PortIoBus,
    private readonly mmio?: MmioBus,
  ) {}

  attach(id: Bdf, fn: PciFunction): PciAttachError | undefined {
    if (this.functions.has(id)) {
      return { kind: "pci-attach-error", bdf: id, message: `${formatBdf(id)} is already taken by ${this.functions.get(id)?.name}` };
    }
    this.functions.set(id, fn);
    fn.config.onChange = () => this.remap(id, fn);
    return undefined;
  }

  detach(id: Bdf): boolean {
    const fn = this.functions.get(id);
    if (fn === undefined) return false;
    for (const bar of fn.config.bars) this.unmapBar(id, bar);
    fn.config.onChange = undefined;
    this.functions.delete(id);
    return true;
  }

  get(id: Bdf): PciFunction | undefined {
    return this.functions.get(id);
  }

  list(): { bdf: Bdf; name: string; vendorId: number; deviceId: number }[] {
    return [...this.functions.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([id, fn]) => ({ bdf: id as Bdf, name: fn.name, vendorId: fn.config.vendorId, deviceId: fn.config.deviceId }));
  }

  /** Configuration read; an absent function reads all-ones (master abort). */
  configRead(id: Bdf, offset: number, size: AccessSize): number {
    const fn = this.functions.get(id);
    return fn === undefined ? allOnes(size) : fn.config.read(offset, size);
  }

  /** Configuration write; writes to an absent function are dropped. */
  configWrite(id: Bdf, offset: number, size: AccessSize, value: number): void {
    this.functions.get(id)?.config.write(offset, size, value);
  }

  private remap(id: Bdf, fn: PciFunction): void {
    const command = fn.config.command;
    for (const bar of fn.config.bars) {
      const io = bar.kind === "io";
      const enabled = (command & (io ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY)) !== 0;
      const base = fn.config.barAddress(bar.index);
      const key = id * 8 + bar.index;
      const current = this.mapped.get(key);
      const want = enabled && base !== 0 && bar.device !== undefined;
      if (current !== undefined && (!want || current.base !== base)) this.unmapBar(id, bar);
      if (want && this.mapped.get(key) === undefined) this.mapBar(id, fn, bar, base);
    }
  }

  private mapBar(id: Bdf, fn: PciFunction, bar: Bar, base: number): void {
    const device = bar.device as BusDevice;
    const name = `${fn.name} BAR${bar.index} (${formatBdf(id)})`;
    const error =
      bar.kind === "io"
        ? this.ports?.register(base, bar.size, device, name)
        : this.mmio?.register(base, bar.size, device, name);
    if (error !== undefined) this.mappingErrors.push(error);
    else this.mapped.set(id * 8 + bar.index, { space: bar.kind === "io" ? "io" : "memory", base });
  }

  private unmapBar(id: Bdf, bar: Bar): void {
    const key = id * 8 + bar.index;
    const current = this.mapped.get(key);
    if (current === undefined) return;
    if (current.space === "io") this.ports?.unregister(current.base);
    else this.mmio?.unregister(current.base);
    this.mapped.delete(key);
  }
}

/**
 * The type-1 configuration mechanism: a `BusDevice` for ports 0xCF8-0xCFF. Only a 32-bit access
 * to 0xCF8 reaches CONFIG_ADDRESS (other widths there are ignored and read all-ones; on real
 * chipsets byte port 0xCF9 is the reset control register, not modelled). CONFIG_DATA accepts
 * 1, 2 and 4-byte accesses at 0xCFC + n, reaching register (CONFIG_ADDRESS[7:2] << 2) + n.
 */
export class PciHostBridge implements BusDevice {
  /** CONFIG_ADDRESS as last written (bits 30:24 and 1:0 are reserved and read as 0). */
  private address = 0;

  constructor(private readonly bus: PciBus) {}

  /** Register the host bridge on a port bus at 0xCF8-0xCFF. */
  static install(ports: PortIoBus, bus: PciBus): PciHostBridge | BusRegistrationError {
    const bridge = new PciHostBridge(bus);
    return ports.register(PCI_CONFIG_ADDRESS_PORT, 8, bridge, "PCI host bridge (type 1)") ?? bridge;
  }

  read(offset: number, size: AccessSize): number {
    if (offset === 0) return size === 4 ? this.address >>> 0 : allOnes(size);
    if (offset < 4 || (this.address & PCI_CONFIG_ENABLE) === 0) return allOnes(size);
    return this.bus.configRead(this.target(), (this.address & 0xfc) + (offset - 4), size);
  }

  write(offset: number, size: AccessSize, value: number): DeviceError | undefined {
    if (offset === 0) {
      if (size === 4) this.address = (value & 0x80ff_fffc) >>> 0;
      return undefined;
    }
    if (offset >= 4 && (this.address & PCI_CONFIG_ENABLE) !== 0) {
      this.bus.configWrite(this.target(), (this.address & 0xfc) + (offset - 4), size, value);
    }
    return undefined;
  }

  private target(): Bdf {
    return ((this.address >>> 8) & 0xffff) as Bdf;
  }
}

/** The host bridge's own PCI function, 00:00.0 (Intel 440FX ids, as Xen's device model uses). */
export function hostBridgeFunction(): PciFunction {
  return {
    name: "host bridge",
    config: new PciConfigSpace({ vendorId: 0x8086, deviceId: 0x1237, classCode: 0x06_00_00, revision: 2 }),
  };
}
