/**
 * The Xen CPUID leaves 0x40000000-0x40000005 as a guest reads them (Xen 4.17's
 * cpuid_hypervisor_leaves for an HVM guest), on EPT and on shadow, and through the exit handler
 * for another vCPU and hostile leaf numbers.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { ExitReason } from "@vtlab/cpu-vmx";
import { Hypervisor, handleExit, type Domain } from "@vtlab/hypervisor";
import { xenTimeScale } from "@vtlab/xen-platform-pci";
import {
  XEN_HVM_CPUID_DOMID_PRESENT,
  XEN_HVM_CPUID_UPCALL_VECTOR,
  XEN_HVM_CPUID_VCPU_ID_PRESENT,
} from "@vtlab/xen-public";
import { pvhElf, SPIN, tinyKernel } from "./tiny-kernel.js";

const le32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
const RESULTS = 0x10_3000;

const QUERIES: readonly [leaf: number, sub: number][] = [
  [0x4000_0000, 0],
  [0x4000_0001, 0],
  [0x4000_0002, 0],
  [0x4000_0003, 0],
  [0x4000_0003, 1],
  [0x4000_0003, 2],
  [0x4000_0004, 0],
  [0x4000_0004, 1],
  [0x4000_0005, 0],
  [0x4000_0006, 0],
  [0x4000_0100, 0],
  [0x4fff_ffff, 0],
  [1, 0],
];

/** A PVH guest that runs CPUID for each query and stores EAX, EBX, ECX, EDX (16 bytes each). */
function cpuidGuest(): Uint8Array {
  const code: number[] = [];
  QUERIES.forEach(([leaf, sub], i) => {
    const at = RESULTS + 16 * i;
    code.push(0xb8, ...le32(leaf), 0xb9, ...le32(sub), 0x0f, 0xa2); // mov eax; mov ecx; cpuid
    code.push(0xa3, ...le32(at)); // mov [at], eax
    code.push(0x89, 0x1d, ...le32(at + 4), 0x89, 0x0d, ...le32(at + 8), 0x89, 0x15, ...le32(at + 12)); // ebx, ecx, edx
  });
  code.push(0x31, 0xc0, 0xe7, 0xf4, 0xf4, 0xeb, 0xfd);
  const img = new Uint8Array(0x4000);
  img.set(code, 0);
  return pvhElf(img, { offset: 0x200, memSize: img.length, flags: 7 });
}

function results(hv: Hypervisor, d: Domain): number[][] {
  return QUERIES.map((_, i) => [0, 1, 2, 3].map((r) => hv.memory.read32(d.ramHpa(RESULTS + 16 * i + 4 * r)!) as number));
}

const text = (regs: number[]) => regs.map((r) => String.fromCharCode(r & 0xff, (r >>> 8) & 0xff, (r >>> 16) & 0xff, r >>> 24)).join("");

describe.each([true, false])("Xen CPUID leaves from a guest (hap=%s)", (hap) => {
  it("are Xen 4.17's for an HVM domU: signature, version, hypercall page, TSC, HVM leaf, zeros beyond", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    hv.createDomain({ name: "first", memoryMiB: 4, hap, kernel: tinyKernel(SPIN) }).pause(); // domid 1, not running
    const d = hv.createDomain({ name: "cpuid", memoryMiB: 8, hap, kernel: cpuidGuest() }); // domid 2
    hv.run({ maxInstructions: 2_000_000 });
    expect(d.exitCode).toBe(0);
    const r = results(hv, d);
    expect(r[0]![0]).toBe(0x4000_0005);
    expect(text(r[0]!.slice(1))).toBe("XenVMMXenVMM");
    expect(r[1]).toEqual([0x0004_0011, 0, 0, 0]);
    expect(r[2]).toEqual([1, 0x4000_0000, 0, 0]);
    const khz = hv.clock.frequencyHz / 1000;
    expect(r[3]).toEqual([0b010, 0, khz, 0]); // not emulated, reliable, no RDTSCP; tsc_mode 0; kHz; incarnation 0
    const scale = xenTimeScale(hv.clock.frequencyHz);
    expect(r[4]).toEqual([0, 0, scale.mulFrac, scale.shift >>> 0]);
    expect(r[5]).toEqual([khz, 0, 0, 0]);
    expect(r[6]).toEqual([XEN_HVM_CPUID_VCPU_ID_PRESENT | XEN_HVM_CPUID_DOMID_PRESENT | XEN_HVM_CPUID_UPCALL_VECTOR, 0, 2, 0]);
    expect(r[7]).toEqual([0, 0, 0, 0]);
    for (const k of [8, 9, 10, 11]) expect(r[k]).toEqual([0, 0, 0, 0]);
    expect((r[12]![2]! >>> 31) & 1).toBe(1); // leaf 1 ECX.hypervisor still says a hypervisor is there
  });
});

function cpuidExit(hv: Hypervisor, d: Domain, vcpu: number, leaf: number, sub: number): number[] {
  const v = d.vcpus[vcpu]!;
  v.cpu.setReg32(0, leaf);
  v.cpu.setReg32(1, sub);
  const out = handleExit({ hv, domain: d, vcpu: v }, { reason: ExitReason.Cpuid, qualification: 0, instructionLength: 2 });
  expect(out.kind).toBe("resume");
  return [0, 3, 1, 2].map((r) => v.cpu.lo[r]! >>> 0);
}

describe("Xen CPUID leaves through the exit handler", () => {
  it("give each vCPU its own id in leaf 0x40000004 EBX", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "smp", memoryMiB: 8, vcpus: 3, kernel: tinyKernel(SPIN) });
    for (const i of [0, 1, 2]) expect(cpuidExit(hv, d, i, 0x4000_0004, 0).slice(1, 3)).toEqual([i, d.id]);
  });

  it("answer every leaf of the hypervisor range without throwing: Xen's below 0x40000006, zero above (fast-check)", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "fuzz", memoryMiB: 8, kernel: tinyKernel(SPIN) });
    fc.assert(
      fc.property(fc.integer({ min: 0x4000_0000, max: 0x4fff_ffff }), fc.integer({ min: 0, max: 0xffff_ffff }), (leaf, sub) => {
        const r = cpuidExit(hv, d, 0, leaf, sub);
        if (leaf > 0x4000_0004) expect(r).toEqual([0, 0, 0, 0]);
      }),
      { numRuns: 300 },
    );
  });
});
