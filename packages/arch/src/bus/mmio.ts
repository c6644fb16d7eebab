import type { U64 } from "../address.js";
import { type AccessSize, type BusDevice, type BusRegistrationError, type DeviceError, allOnes, hex } from "./device.js";
import { MAX_PHYS_ADDR_BITS } from "../address.js";

interface MmioRegion {
  readonly base: number;
  readonly end: number; // exclusive
  readonly name: string;
  readonly device: BusDevice;
}

/**
 * Memory-mapped I/O regions over a physical address space (up to 2^52). Regions are kept
 * sorted; lookup is a binary search with a one-entry cache of the last region hit. An 8-byte
 * access is delivered as two 4-byte accesses, low half first (the VT-d specification lets
 * hardware split a quadword register access this way; devices here all accept it). Unclaimed
 * addresses read all-ones and ignore writes.
 */
export class MmioBus {
  private regions: MmioRegion[] = [];
  private last: MmioRegion | undefined;
  unclaimedAccesses = 0;

  register(base: number, length: number, device: BusDevice, name: string): BusRegistrationError | undefined {
    const limit = 2 ** MAX_PHYS_ADDR_BITS;
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(length) || base < 0 || length <= 0 || base + length > limit) {
      return {
        kind: "bus-registration-error",
        bus: "mmio",
        name,
        base,
        length,
        reason: "bad-range",
        message: `${name}: MMIO ${hex(base)}+${hex(length)} is not inside the 52-bit physical address space`,
      };
    }
    const end = base + length;
    const other = this.regions.find((r) => base < r.end && r.base < end);
    if (other !== undefined) {
      return {
        kind: "bus-registration-error",
        bus: "mmio",
        name,
        base,
        length,
        reason: "overlap",
        conflictsWith: { name: other.name, base: other.base, length: other.end - other.base },
        message: `${name}: MMIO ${hex(base)}-${hex(end - 1)} overlaps ${other.name} at ${hex(other.base)}-${hex(other.end - 1)}`,
      };
    }
    this.regions = [...this.regions, { base, end, name, device }].sort((a, b) => a.base - b.base);
    return undefined;
  }

  unregister(base: number): boolean {
    const before = this.regions.length;
    this.regions = this.regions.filter((r) => r.base !== base);
    this.last = undefined;
    return this.regions.length !== before;
  }

  /** Whether some device claims `address` (the hypervisor asks before emulating). */
  claims(address: number): boolean {
    return this.find(address) !== undefined;
  }

  ownerOf(address: number): string | undefined {
    return this.find(address)?.name;
  }

  read(address: number, size: AccessSize): number {
    const r = this.find(address);
    if (r === undefined) {
      this.unclaimedAccesses++;
      return allOnes(size);
    }
    return r.device.read(address - r.base, size);
  }

  write(address: number, size: AccessSize, value: number): DeviceError | undefined {
    const r = this.find(address);
    if (r === undefined) {
      this.unclaimedAccesses++;
      return undefined;
    }
    return r.device.write(address - r.base, size, value);
  }

  /** An 8-byte read as two 4-byte reads, low half first. */
  read64(address: number, out: U64): void {
    out.lo = this.read(address, 4) >>> 0;
    out.hi = this.read(address + 4, 4) >>> 0;
  }

  /** An 8-byte write as two 4-byte writes, low half first. */
  write64(address: number, lo: number, hi: number): DeviceError | undefined {
    return this.write(address, 4, lo) ?? this.write(address + 4, 4, hi);
  }

  list(): { base: number; length: number; name: string }[] {
    return this.regions.map((r) => ({ base: r.base, length: r.end - r.base, name: r.name }));
  }

  private find(address: number): MmioRegion | undefined {
    const last = this.last;
    if (last !== undefined && address >= last.base && address < last.end) return last;
    let lo = 0;
    let hi = this.regions.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const r = this.regions[mid] as MmioRegion;
      if (address < r.base) hi = mid - 1;
      else if (address >= r.end) lo = mid + 1;
      else {
        this.last = r;
        return r;
      }
    }
    return undefined;
  }
}
