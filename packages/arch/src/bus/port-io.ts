import { type AccessSize, type BusDevice, type BusRegistrationError, type DeviceError, allOnes, hex } from "./device.js";

/** Number of x86 I/O ports (a 16-bit port space). */
export const PORT_COUNT = 0x1_0000;

interface PortRegion {
  readonly base: number;
  readonly length: number;
  readonly name: string;
  readonly device: BusDevice;
}

/**
 * The x86 port-I/O space: 65,536 byte-wide ports, devices registered over ranges. Lookup is one
 * typed-array index. An access is delivered whole to the device that owns its first port (real
 * ISA buses split accesses that straddle two devices; we do not). Unclaimed ports read all-ones
 * and ignore writes.
 */
export class PortIoBus {
  private readonly owner = new Int32Array(PORT_COUNT).fill(-1);
  private readonly regions: (PortRegion | undefined)[] = [];
  /** Accesses that found no device (reads and writes). */
  unclaimedAccesses = 0;

  register(base: number, length: number, device: BusDevice, name: string): BusRegistrationError | undefined {
    if (!Number.isInteger(base) || !Number.isInteger(length) || length <= 0 || base < 0 || base + length > PORT_COUNT) {
      return {
        kind: "bus-registration-error",
        bus: "port-io",
        name,
        base,
        length,
        reason: "bad-range",
        message: `${name}: ports ${hex(base)}+${length} are outside 0x0..0xffff`,
      };
    }
    for (let p = base; p < base + length; p++) {
      const o = this.owner[p] as number;
      if (o >= 0) {
        const other = this.regions[o] as PortRegion;
        return {
          kind: "bus-registration-error",
          bus: "port-io",
          name,
          base,
          length,
          reason: "overlap",
          conflictsWith: { name: other.name, base: other.base, length: other.length },
          message: `${name}: ports ${hex(base, 4)}-${hex(base + length - 1, 4)} overlap ${other.name} at ${hex(other.base, 4)}-${hex(other.base + other.length - 1, 4)}`,
        };
      }
    }
    const index = this.regions.length;
    this.regions.push({ base, length, name, device });
    this.owner.fill(index, base, base + length);
    return undefined;
  }

  /** Remove the region that starts at `base`; returns whether one was there. */
  unregister(base: number): boolean {
    const o = this.owner[base] ?? -1;
    const region = this.regions[o];
    if (region === undefined || region.base !== base) return false;
    this.owner.fill(-1, region.base, region.base + region.length);
    this.regions[o] = undefined;
    return true;
  }

  /** The name of the device owning `port`, if any. */
  ownerOf(port: number): string | undefined {
    return this.regions[this.owner[port & 0xffff] ?? -1]?.name;
  }

  read(port: number, size: AccessSize): number {
    const region = this.regions[this.owner[port & 0xffff] ?? -1];
    if (region === undefined) {
      this.unclaimedAccesses++;
      return allOnes(size);
    }
    return region.device.read((port & 0xffff) - region.base, size);
  }

  write(port: number, size: AccessSize, value: number): DeviceError | undefined {
    const region = this.regions[this.owner[port & 0xffff] ?? -1];
    if (region === undefined) {
      this.unclaimedAccesses++;
      return undefined;
    }
    return region.device.write((port & 0xffff) - region.base, size, value);
  }

  /** The registered regions, sorted by port: for listing a machine's devices. */
  list(): { base: number; length: number; name: string }[] {
    return this.regions
      .filter((r): r is PortRegion => r !== undefined)
      .map(({ base, length, name }) => ({ base, length, name }))
      .sort((a, b) => a.base - b.base);
  }
}
