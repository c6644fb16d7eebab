/**
 * What sits on a bus. Reads cannot fail (a device answers something for every register, as
 * hardware does); writes may, and say why.
 */
export type AccessSize = 1 | 2 | 4;

/** A device refused a write (read-only register, bad value, device in the wrong state). */
export interface DeviceError {
  readonly kind: "device-error";
  readonly device: string;
  readonly offset: number;
  readonly size: AccessSize;
  readonly value: number;
  readonly message: string;
}

export interface BusDevice {
  /** Read `size` bytes at `offset` within the device's region (little-endian). */
  read(offset: number, size: AccessSize): number;
  /** Write `size` bytes; `value` holds the low `size` bytes. */
  write(offset: number, size: AccessSize, value: number): DeviceError | undefined;
}

export function deviceError(device: string, offset: number, size: AccessSize, value: number, message: string): DeviceError {
  return { kind: "device-error", device, offset, size, value, message };
}

/** A registration refused: bad range, or overlapping a region already on the bus. */
export interface BusRegistrationError {
  readonly kind: "bus-registration-error";
  readonly bus: "port-io" | "mmio";
  readonly name: string;
  readonly base: number;
  readonly length: number;
  readonly reason: "bad-range" | "overlap";
  /** The region it overlaps (reason "overlap"). */
  readonly conflictsWith?: { readonly name: string; readonly base: number; readonly length: number };
  readonly message: string;
}

/** All-ones of an access size: what a read of nothing returns (PCI master abort, floating ISA bus). */
export function allOnes(size: AccessSize): number {
  return size === 4 ? 0xffff_ffff : size === 2 ? 0xffff : 0xff;
}

export function isAccessSize(size: number): size is AccessSize {
  return size === 1 || size === 2 || size === 4;
}

export const hex = (n: number, width = 0): string => `0x${n.toString(16).padStart(width, "0")}`;
