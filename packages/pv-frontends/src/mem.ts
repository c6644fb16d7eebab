/**
 * The native kernel's view of its own memory, through `GuestOps` only: every byte a frontend
 * reads or writes in a ring, a granted page or a hypercall argument is a load or store on the
 * vCPU (its TLB, the guest's page tables, EPT or the shadow tables). The kernel runs on the
 * builder's identity map, so the addresses here are guest-virtual = guest-physical.
 *
 * A fault on the kernel's own memory is a kernel bug (a Linux oops): it is thrown as
 * `GuestMemoryFault`, and the hypervisor's native runner crashes the domain with it.
 */
import type { GuestFault, GuestOps } from "@vtlab/cpu-vmx";

export const PAGE_SIZE = 4096;

export class GuestMemoryFault extends Error {
  constructor(
    readonly gva: number,
    readonly fault: GuestFault,
  ) {
    super(`guest fault ${fault.vector} (error code ${fault.errorCode}) at 0x${gva.toString(16)}`);
  }
}

function isFault(x: unknown): x is GuestFault {
  return typeof x === "object" && x !== null && (x as GuestFault).kind === "guest-fault";
}

export class GuestMemory {
  constructor(readonly ops: GuestOps) {}

  read8(gva: number): number {
    return this.load(gva, 1);
  }
  read16(gva: number): number {
    return this.load(gva, 2);
  }
  read32(gva: number): number {
    return this.load(gva, 4);
  }
  write8(gva: number, v: number): void {
    this.store(gva, 1, v & 0xff);
  }
  write16(gva: number, v: number): void {
    this.store(gva, 2, v & 0xffff);
  }
  write32(gva: number, v: number): void {
    this.store(gva, 4, v >>> 0);
  }
  /** A 64-bit field from a number below 2^53 (two 32-bit stores: no precision is lost). */
  write64(gva: number, v: number): void {
    this.store(gva, 4, v >>> 0);
    this.store(gva + 4, 4, Math.floor(v / 0x1_0000_0000) >>> 0);
  }
  /** A 64-bit field as a number (exact below 2^53). */
  read64(gva: number): number {
    return this.load(gva, 4) + this.load(gva + 4, 4) * 0x1_0000_0000;
  }

  /** `length` bytes from `gva`, in 4-byte loads where aligned. */
  readBytes(gva: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let i = 0;
    for (; i < length && ((gva + i) & 3) !== 0; i++) out[i] = this.load(gva + i, 1);
    for (; i + 4 <= length; i += 4) {
      const w = this.load(gva + i, 4);
      out[i] = w & 0xff;
      out[i + 1] = (w >>> 8) & 0xff;
      out[i + 2] = (w >>> 16) & 0xff;
      out[i + 3] = w >>> 24;
    }
    for (; i < length; i++) out[i] = this.load(gva + i, 1);
    return out;
  }

  writeBytes(gva: number, bytes: Uint8Array): void {
    const length = bytes.length;
    let i = 0;
    for (; i < length && ((gva + i) & 3) !== 0; i++) this.store(gva + i, 1, bytes[i]!);
    for (; i + 4 <= length; i += 4) this.store(gva + i, 4, (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24)) >>> 0);
    for (; i < length; i++) this.store(gva + i, 1, bytes[i]!);
  }

  zero(gva: number, length: number): void {
    let i = 0;
    for (; i < length && ((gva + i) & 3) !== 0; i++) this.store(gva + i, 1, 0);
    for (; i + 4 <= length; i += 4) this.store(gva + i, 4, 0);
    for (; i < length; i++) this.store(gva + i, 1, 0);
  }

  private load(gva: number, size: 1 | 2 | 4): number {
    const v = this.ops.load(gva, size);
    if (isFault(v)) throw new GuestMemoryFault(gva, v);
    return v;
  }

  private store(gva: number, size: 1 | 2 | 4, value: number): void {
    const f = this.ops.store(gva, size, value);
    if (f !== undefined) throw new GuestMemoryFault(gva, f);
  }
}

/**
 * The kernel's page allocator: whole pages from a range of its RAM, never returned (a native
 * kernel's drivers allocate their rings and buffers once; modelled more simply than a buddy
 * allocator). Bounded by the range: undefined when it is used up.
 */
export class PageAllocator {
  private next: number;
  constructor(
    start: number,
    private readonly end: number,
  ) {
    this.next = Math.ceil(start / PAGE_SIZE) * PAGE_SIZE;
  }
  alloc(): number | undefined {
    if (this.next + PAGE_SIZE > this.end) return undefined;
    const gpa = this.next;
    this.next += PAGE_SIZE;
    return gpa;
  }
  get free(): number {
    return Math.max(0, Math.floor((this.end - this.next) / PAGE_SIZE));
  }
}
