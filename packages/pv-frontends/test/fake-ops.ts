/** A GuestOps over a flat little-endian byte array (no VMX, no exits): for laws that need only memory. */
import type { GuestFault, GuestOps } from "@vtlab/cpu-vmx";

export class FlatOps implements GuestOps {
  readonly bytes: Uint8Array;
  loads = 0;
  stores = 0;
  constructor(size: number) {
    this.bytes = new Uint8Array(size);
  }
  private fault(gva: number): GuestFault {
    return { kind: "guest-fault", vector: 14, errorCode: 0, cr2: gva };
  }
  load(gva: number, size: 1 | 2 | 4 | 8): number | GuestFault {
    if (gva < 0 || gva + size > this.bytes.length) return this.fault(gva);
    this.loads++;
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = v * 256 + this.bytes[gva + i]!;
    return v;
  }
  store(gva: number, size: 1 | 2 | 4 | 8, value: number): GuestFault | undefined {
    if (gva < 0 || gva + size > this.bytes.length) return this.fault(gva);
    this.stores++;
    let v = value;
    for (let i = 0; i < size; i++) {
      this.bytes[gva + i] = v & 0xff;
      v = Math.floor(v / 256);
    }
    return undefined;
  }
  readCr(): number {
    return 0;
  }
  writeCr(): undefined {
    return undefined;
  }
  invlpg(): undefined {
    return undefined;
  }
  portIn(): number {
    return 0xffff_ffff;
  }
  portOut(): undefined {
    return undefined;
  }
  cpuid(): [number, number, number, number] {
    return [0, 0, 0, 0];
  }
  rdmsr(): number {
    return 0;
  }
  wrmsr(): undefined {
    return undefined;
  }
  hlt(): boolean {
    return true;
  }
  vmcall(): number {
    return -38;
  }
}
