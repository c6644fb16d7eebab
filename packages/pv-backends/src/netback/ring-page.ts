/**
 * A shared ring page that dom0 mapped with a grant, seen through the part of `DataView` that
 * xen-public's ring.h functions use on the shared header (getUint32/setUint32 and the narrower
 * widths), so netback keeps the macros' index arithmetic and notify rules. Every access goes
 * through the mapping's bounded `read`/`write`: a mapping that is gone (unmapped, or the guest
 * destroyed) reads as zeros and drops writes, as reads from a device do not fail.
 *
 * Requests are not read through this view: `copySlot` takes a private copy of one slot with a
 * single `read` (RING_COPY_REQUEST), so what netback validates is what it uses.
 */
import type { BackendGrantMapping } from "../host.js";

export class RingPageView {
  constructor(private readonly mapping: BackendGrantMapping) {}

  private bytes(offset: number, length: number): Uint8Array {
    return this.mapping.read(offset, length) ?? new Uint8Array(length);
  }
  getUint8(offset: number): number {
    return this.bytes(offset, 1)[0] ?? 0;
  }
  getUint16(offset: number, littleEndian?: boolean): number {
    const b = this.bytes(offset, 2);
    return new DataView(b.buffer, b.byteOffset, 2).getUint16(0, littleEndian);
  }
  getUint32(offset: number, littleEndian?: boolean): number {
    const b = this.bytes(offset, 4);
    const [b0 = 0, b1 = 0, b2 = 0, b3 = 0] = b;
    return (littleEndian === true ? b0 | (b1 << 8) | (b2 << 16) | (b3 << 24) : (b0 << 24) | (b1 << 16) | (b2 << 8) | b3) >>> 0;
  }
  setUint8(offset: number, value: number): void {
    this.mapping.write(offset, Uint8Array.of(value & 0xff));
  }
  setUint16(offset: number, value: number, littleEndian?: boolean): void {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, value, littleEndian);
    this.mapping.write(offset, b);
  }
  setUint32(offset: number, value: number, littleEndian?: boolean): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, value, littleEndian);
    this.mapping.write(offset, b);
  }

  /** This view as the `DataView` ring.ts takes (it calls only the methods above). */
  asDataView(): DataView {
    return this as unknown as DataView;
  }

  /** A private copy of `length` bytes at `offset` (RING_COPY_REQUEST), zeros if unmapped. */
  copySlot(offset: number, length: number): DataView {
    const b = this.bytes(offset, length);
    return new DataView(b.buffer, b.byteOffset, length);
  }

  /** Write a response's bytes at `offset` (only the response's own fields, never padding of ours). */
  put(offset: number, bytes: Uint8Array): void {
    this.mapping.write(offset, bytes);
  }
}
