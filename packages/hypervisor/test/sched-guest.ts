/**
 * Test fixture for the time and scheduling hypercalls (sched-op, xen-timers, pv-clock tests): a
 * tiny assembler for 32-bit PVH guests (flat protected mode, paging off: guest-linear =
 * guest-physical) that make hypercalls with the 32-bit ABI (EAX = number; EBX, ECX, EDX, ESI,
 * EDI), read the TSC, spin, and exit through isa-debug-exit; a direct64 variant for 64-bit code;
 * and a boot helper for EPT and shadow.
 */
import { Hypervisor, type Domain, type HypervisorOptions } from "@vtlab/hypervisor";
import {
  HYPERVISOR_event_channel_op,
  HYPERVISOR_sched_op,
  HYPERVISOR_set_timer_op,
  HYPERVISOR_vcpu_op,
} from "@vtlab/xen-public";
import { pvhElf } from "./tiny-kernel.js";

/** Where the image is loaded (code first). */
export const BASE = 0x10_0000;
/** A page of data in the image for structs (16 KiB after the code). */
export const DATA = BASE + 0x4000;
/** Where guests store results (EAX of each step they save, TSC values). */
export const OUT = BASE + 0x6000;
const MEM_SIZE = 0x8000;

const le32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];

/** 32-bit machine code, built step by step. */
export class Asm {
  readonly code: number[] = [];
  private emit(...bytes: number[]): this {
    this.code.push(...bytes);
    return this;
  }
  /** mov r32, imm32 (r: 0 eax, 1 ecx, 2 edx, 3 ebx, 6 esi, 7 edi). */
  mov(r: number, imm: number): this {
    return this.emit(0xb8 + r, ...le32(imm >>> 0));
  }
  /** A hypercall: EAX = nr, then EBX, ECX, EDX, ESI, EDI; VMCALL. EAX holds the result after. */
  hc(nr: number, ...args: number[]): this {
    this.mov(0, nr);
    [3, 1, 2, 6, 7].slice(0, args.length).forEach((r, i) => this.mov(r, args[i]!));
    return this.emit(0x0f, 0x01, 0xc1);
  }
  vcpuOp(cmd: number, vcpu: number, arg: number): this {
    return this.hc(HYPERVISOR_vcpu_op, cmd, vcpu, arg);
  }
  schedOp(cmd: number, arg: number): this {
    return this.hc(HYPERVISOR_sched_op, cmd, arg);
  }
  evtchnOp(cmd: number, arg: number): this {
    return this.hc(HYPERVISOR_event_channel_op, cmd, arg);
  }
  /** set_timer_op with the compat ABI's two halves. */
  setTimerOp(lo: number, hi: number): this {
    return this.hc(HYPERVISOR_set_timer_op, lo, hi);
  }
  /** mov [addr], eax */
  storeEax(addr: number): this {
    return this.emit(0xa3, ...le32(addr));
  }
  /** mov eax, [addr] */
  loadEax(addr: number): this {
    return this.emit(0xa1, ...le32(addr));
  }
  /** mov eax, [from]; mov [to], eax */
  copy32(from: number, to: number): this {
    return this.loadEax(from).storeEax(to);
  }
  /** rdtsc; mov [addr], eax; mov [addr + 4], edx */
  rdtsc(addr: number): this {
    return this.emit(0x0f, 0x31).storeEax(addr).emit(0x89, 0x15, ...le32(addr + 4));
  }
  /** Spin `n` times round `dec ecx; jnz` (2 instructions each, plus the mov). */
  spin(n: number): this {
    return this.mov(1, n).emit(0x49, 0x75, 0xfd);
  }
  /** inc dword [addr] */
  inc(addr: number): this {
    return this.emit(0xff, 0x05, ...le32(addr));
  }
  sti(): this {
    return this.emit(0xfb);
  }
  cli(): this {
    return this.emit(0xfa);
  }
  hlt(): this {
    return this.emit(0xf4);
  }
  /** jmp back to the byte offset `to` of this code (a label from `here`). */
  jmp(to: number): this {
    const rel = to - (this.code.length + 5);
    return this.emit(0xe9, ...le32(rel));
  }
  get here(): number {
    return this.code.length;
  }
  /** out 0xf4, eax: isa-debug-exit with EAX. */
  exitEax(): this {
    return this.emit(0xe7, 0xf4);
  }
  exit(code: number): this {
    return this.mov(0, code).exitEax();
  }
  /** jmp $ */
  forever(): this {
    return this.emit(0xeb, 0xfe);
  }
}

/** The image: `asm`'s code at BASE, `data` at DATA. */
export function image(asm: Asm, data?: Uint8Array): Uint8Array {
  if (asm.code.length > DATA - BASE) throw new Error("sched-guest: code too long");
  const img = new Uint8Array(MEM_SIZE);
  img.set(asm.code, 0);
  if (data !== undefined) img.set(data, DATA - BASE);
  return pvhElf(img, { offset: 0x200, memSize: MEM_SIZE, flags: 7 });
}

export interface Booted {
  readonly hv: Hypervisor;
  readonly d: Domain;
  /** Read guest-physical memory. */
  read(gpa: number, length: number): DataView;
  u32(gpa: number): number;
  i32(gpa: number): number;
  /** A little-endian u64 (exact below 2^53). */
  u64(gpa: number): number;
}

export function booted(hv: Hypervisor, d: Domain): Booted {
  const read = (gpa: number, length: number) => {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = hv.memory.read8(d.ramHpa(gpa + i)!) as number;
    return new DataView(out.buffer);
  };
  return {
    hv,
    d,
    read,
    u32: (gpa) => read(gpa, 4).getUint32(0, true),
    i32: (gpa) => read(gpa, 4).getInt32(0, true),
    u64: (gpa) => {
      const v = read(gpa, 8);
      return v.getUint32(4, true) * 2 ** 32 + v.getUint32(0, true);
    },
  };
}

/** Boot `asm` (with `data` at DATA) on a fresh host, EPT or shadow, and run it for at most `maxInstructions`. */
export function run(asm: Asm, options: { hap: boolean; data?: Uint8Array; maxInstructions?: number; host?: HypervisorOptions; vcpus?: number }): Booted {
  const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 20_000, ...options.host });
  const d = hv.createDomain({ name: "g", memoryMiB: 8, hap: options.hap, kernel: image(asm, options.data), ...(options.vcpus !== undefined ? { vcpus: options.vcpus } : {}) });
  hv.run({ maxInstructions: options.maxInstructions ?? 2_000_000 });
  return booted(hv, d);
}

/** A struct's bytes from (offset, size, value) fields. */
export function struct(size: number, fields: readonly (readonly [number, 1 | 2 | 4 | 8, number])[]): Uint8Array {
  const b = new Uint8Array(size);
  const dv = new DataView(b.buffer);
  for (const [off, sz, val] of fields) {
    if (sz === 1) dv.setUint8(off, val);
    else if (sz === 2) dv.setUint16(off, val, true);
    else if (sz === 4) dv.setUint32(off, val >>> 0, true);
    else {
      dv.setUint32(off, val >>> 0, true);
      dv.setUint32(off + 4, Math.floor(val / 2 ** 32) >>> 0, true);
    }
  }
  return b;
}

/** Concatenate structs at the given offsets into one data page. */
export function page(parts: readonly (readonly [number, Uint8Array])[]): Uint8Array {
  const b = new Uint8Array(0x2000);
  for (const [off, bytes] of parts) b.set(bytes, off);
  return b;
}

export const HAPS = [true, false] as const;
export const mmu = (hap: boolean) => (hap ? "EPT" : "shadow");
