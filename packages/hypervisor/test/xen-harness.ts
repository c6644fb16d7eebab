/**
 * Test fixture for the Xen interface tests (event channels, shared_info, hvm_op): domains whose
 * vCPU 0 spins in 64-bit mode on the builder's identity map of the first 4 GiB (direct 64-bit
 * boot; guest-linear = guest-physical) or in the PVH 32-bit entry state with paging off, and a
 * way to make a hypercall on a vCPU as its VMCALL exit would (`hypercall(ctx)` with the argument
 * registers set), so that thousands of hostile calls need no guest code per call. Guest memory
 * is written with `put` (as the guest's own stores would) and read back with `get`.
 */
import { Hypervisor, hypercall, type Domain, type Vcpu } from "@vtlab/hypervisor";
import { SPIN, direct64Kernel, tinyKernel } from "./tiny-kernel.js";

/** A page of guest RAM the tests put hypercall structs in. */
export const ARG = 0x20_0000;
/** The local APIC page: MMIO, not RAM. */
export const MMIO = 0xfee0_0000;

export interface Machine {
  readonly hv: Hypervisor;
  readonly domains: Domain[];
}

/** A host with `count` spinning domains (64-bit unless `long` is false), each run until its vCPU state is loaded. */
export function machine(options: { hap: boolean; count?: number; vcpus?: number; long?: boolean; memoryMiB?: number }): Machine {
  const hv = new Hypervisor({ memoryMiB: 96, sliceInstructions: 2_000 });
  const domains: Domain[] = [];
  for (let i = 0; i < (options.count ?? 1); i++) {
    const kernel = options.long === false ? tinyKernel(SPIN) : direct64Kernel(SPIN);
    domains.push(hv.createDomain({ name: `d${i + 1}`, memoryMiB: options.memoryMiB ?? 4, hap: options.hap, vcpus: options.vcpus ?? 1, kernel }));
  }
  hv.run({ maxInstructions: 5_000 * domains.length });
  return { hv, domains };
}

const setReg = (v: Vcpu, r: number, value: number) => {
  v.cpu.lo[r] = Number(BigInt.asIntN(32, BigInt(value))) | 0;
  v.cpu.hi[r] = Number(BigInt.asIntN(32, BigInt(value) >> 32n)) | 0;
};

/**
 * Make hypercall `nr` on vCPU `vcpu` (default 0) of `d` with up to five arguments (64-bit values
 * as numbers or bigints in 64-bit mode, the low 32 bits otherwise); returns RAX as the guest
 * would see it (a signed number).
 */
export function call(hv: Hypervisor, d: Domain, nr: number, args: readonly (number | bigint)[], vcpu = 0): number {
  const v = d.vcpus[vcpu]!;
  const regs = v.cpu.mode64 ? [7, 6, 2, 10, 8] : [3, 1, 2, 6, 7];
  setReg(v, 0, nr);
  args.forEach((a, i) => setReg(v, regs[i]!, typeof a === "bigint" ? Number(BigInt.asIntN(64, a)) : a));
  const rc = hypercall({ hv, domain: d, vcpu: v });
  if (typeof rc !== "number") throw new Error("hypercall preempted");
  return rc;
}

/** Write `bytes` into `d`'s RAM at `gpa`, as the guest's stores would. */
export function put(hv: Hypervisor, d: Domain, gpa: number, bytes: Uint8Array): void {
  for (let i = 0; i < bytes.length; i++) hv.memory.write8(d.ramHpa(gpa + i)!, bytes[i]!);
}

export function get(hv: Hypervisor, d: Domain, gpa: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = hv.memory.read8(d.ramHpa(gpa + i)!) as number;
  return out;
}

/** A struct's bytes from (offset, size, value) fields; size 8 takes a number or bigint. */
export function struct(size: number, fields: readonly (readonly [number, 1 | 2 | 4 | 8, number | bigint])[]): Uint8Array {
  const b = new Uint8Array(size);
  const dv = new DataView(b.buffer);
  for (const [off, sz, val] of fields) {
    if (sz === 1) dv.setUint8(off, Number(val));
    else if (sz === 2) dv.setUint16(off, Number(val), true);
    else if (sz === 4) dv.setUint32(off, Number(BigInt.asUintN(32, BigInt(val))), true);
    else dv.setBigUint64(off, BigInt.asUintN(64, BigInt(val)), true);
  }
  return b;
}

export const u32 = (b: Uint8Array, off: number) => new DataView(b.buffer, b.byteOffset).getUint32(off, true);

/** Every byte of a domain's RAM (for "the other domain's memory is byte-identical"). */
export function ramOf(hv: Hypervisor, d: Domain): Uint8Array {
  const out = new Uint8Array(d.ramFrames * 4096);
  for (let f = 0; f < d.ramFrames; f++) hv.memory.readBytes(d.ramHpa(f * 4096)!, out.subarray(f * 4096, (f + 1) * 4096));
  return out;
}

/** The bytes of a machine page. */
export function page(hv: Hypervisor, hpa: number): Uint8Array {
  const out = new Uint8Array(4096);
  hv.memory.readBytes(hpa, out);
  return out;
}

/** Byte-for-byte equality (vitest's deep equality is slow on megabytes). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
