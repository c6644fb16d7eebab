/**
 * The hypercall-page MSR 0x40000000 (guest_wrmsr_xen): a guest on EPT and on shadow writes it,
 * the page it had filled with its own code becomes Xen's stubs, and calling a stub makes the
 * hypercall. Hostile MSR values through the exit handler: #GP for a page index other than 0, a
 * frame that is not the domain's RAM, the other Xen MSRs; nothing else in memory changes.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { PAGE_SIZE } from "@vtlab/arch";
import { ExitReason, VmcsField as F } from "@vtlab/cpu-vmx";
import { Hypervisor, handleExit, hypercallPageRecord, type Domain } from "@vtlab/hypervisor";
import { writeHypercallPage } from "@vtlab/xen-platform-pci";
import { HYPERVISOR_iret, HYPERVISOR_xen_version, XEN_ENOSYS } from "@vtlab/xen-public";
import { pvhElf, SPIN, tinyKernel } from "./tiny-kernel.js";

const le32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
const BASE = 0x10_0000;
const PAGE = BASE + 0x5000; // the hypercall page's frame
const RESULTS = BASE + 0x3000;
const STACK = BASE + 0x8000;
const UNKNOWN_HYPERCALL = 60;

const stubs = new Uint8Array(4096);
writeHypercallPage(stubs);

/**
 * A PVH guest (32-bit, paging off): its page at PAGE holds, at xen_version's stub, its own code
 * `mov eax, 0x1234; ret`. It calls that, installs the hypercall page over it, calls xen_version
 * (XENVER_version) and an unknown hypercall through their stubs, reads the MSR back, stores the
 * results and exits 0.
 */
function pageGuest(): Uint8Array {
  const callStub = (nr: number) => [0xbf, ...le32(PAGE + nr * 32), 0xff, 0xd7]; // mov edi, stub; call edi
  const store = (i: number) => [0xa3, ...le32(RESULTS + 4 * i)]; // mov [results + 4i], eax
  const code = [
    0xbc, ...le32(STACK), // mov esp, STACK
    0x31, 0xdb, 0x31, 0xc9, // xor ebx, ebx; xor ecx, ecx (XENVER_version, NULL)
    ...callStub(HYPERVISOR_xen_version), ...store(0), // the guest's own code: 0x1234
    0xb9, ...le32(0x4000_0000), // mov ecx, 0x40000000
    0xb8, ...le32(PAGE), 0x31, 0xd2, 0x0f, 0x30, // mov eax, PAGE; xor edx, edx; wrmsr
    0x31, 0xdb, 0x31, 0xc9,
    ...callStub(HYPERVISOR_xen_version), ...store(1), // now a hypercall: 4.17
    ...callStub(UNKNOWN_HYPERCALL), ...store(2), // -ENOSYS
    0xb9, ...le32(0x4000_0000), 0x0f, 0x32, ...store(3), 0x89, 0xd0, ...store(4), // rdmsr; eax, edx
    0x31, 0xc0, 0xe7, 0xf4, 0xf4, 0xeb, 0xfd, // exit 0
  ];
  const img = new Uint8Array(0x9000);
  img.set(code, 0);
  img.fill(0x90, PAGE - BASE, PAGE - BASE + 4096); // the guest's own bytes on the page
  img.set([0xb8, 0x34, 0x12, 0, 0, 0xc3], PAGE - BASE + HYPERVISOR_xen_version * 32);
  return pvhElf(img, { offset: 0x200, memSize: img.length, flags: 7 });
}

function bytes(hv: Hypervisor, d: Domain, gpa: number, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(hv.memory.read8(d.ramHpa(gpa + i)!) as number);
  return out;
}

describe.each([true, false])("the hypercall page from a guest (hap=%s)", (hap) => {
  it("replaces the guest's page with Xen's stubs, and a stub makes the hypercall", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "hcp", memoryMiB: 8, hap, kernel: pageGuest() });
    hv.run({ maxInstructions: 1_000_000 });
    expect(d.crashReason).toBeUndefined();
    expect(d.exitCode).toBe(0);
    const r = bytes(hv, d, RESULTS, 20);
    const u32 = (i: number) => (r[4 * i]! | (r[4 * i + 1]! << 8) | (r[4 * i + 2]! << 16) | (r[4 * i + 3]! << 24)) >>> 0;
    expect(u32(0)).toBe(0x1234);
    expect(u32(1)).toBe((4 << 16) | 17);
    expect(u32(2) | 0).toBe(-XEN_ENOSYS);
    expect([u32(3), u32(4)]).toEqual([0, 0]); // the MSR reads as zero
    expect(bytes(hv, d, PAGE, 4096)).toEqual(Array.from(stubs));
    expect(hypercallPageRecord(d)).toEqual({ installs: 1, gfn: PAGE / PAGE_SIZE, refused: 0 });
    expect(d.stats().xen.hypercalls).toMatchObject({ xen_version: 1 });
    expect(d.stats().xen.unknownHypercalls).toEqual({ [String(UNKNOWN_HYPERCALL)]: 1 });
  });

  it("the iret stub is ud2", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const code = [0xbc, ...le32(STACK), 0xb9, ...le32(0x4000_0000), 0xb8, ...le32(PAGE), 0x31, 0xd2, 0x0f, 0x30, 0xbf, ...le32(PAGE + HYPERVISOR_iret * 32), 0xff, 0xd7, 0x31, 0xc0, 0xe7, 0xf4];
    const img = new Uint8Array(0x9000);
    img.set(code, 0);
    const d = hv.createDomain({ name: "iret", memoryMiB: 8, hap, kernel: pvhElf(img, { offset: 0x200, memSize: img.length, flags: 7 }) });
    hv.run({ maxInstructions: 1_000_000 });
    expect(d.exitCode).toBeUndefined();
    expect(d.crashReason).toMatch(/triple fault/); // #UD with no IDT
    expect(d.vcpus[0]!.vmcs.readNatural(F.GUEST_RIP)).toBe(PAGE + HYPERVISOR_iret * 32);
  });
});

/** WRMSR/RDMSR through the exit handler on vCPU 0 of `d` (ECX = msr, EDX:EAX = value). */
function msrExit(hv: Hypervisor, d: Domain, write: boolean, msr: number, lo = 0, hi = 0) {
  const v = d.vcpus[0]!;
  v.cpu.setReg32(1, msr);
  v.cpu.setReg32(0, lo);
  v.cpu.setReg32(2, hi);
  const rip = v.vmcs.readNatural(F.GUEST_RIP);
  const out = handleExit({ hv, domain: d, vcpu: v }, { reason: write ? ExitReason.MsrWrite : ExitReason.MsrRead, qualification: 0, instructionLength: 2 });
  return { out, advanced: v.vmcs.readNatural(F.GUEST_RIP) === rip + 2, eax: v.cpu.lo[0]! >>> 0, edx: v.cpu.lo[2]! >>> 0 };
}

const GP = { kind: "inject", vector: 13, errorCode: 0 };

describe.each([true, false])("hostile hypercall-page MSR values (hap=%s)", (hap) => {
  function machine() {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "target", memoryMiB: 8, hap, kernel: tinyKernel(SPIN) });
    const other = hv.createDomain({ name: "other", memoryMiB: 8, hap, kernel: tinyKernel(SPIN) });
    return { hv, d, other };
  }

  it("#GP for a page index other than 0, and the page is not written", () => {
    const { hv, d } = machine();
    for (const index of [1, 0x800, 0xfff]) {
      const r = msrExit(hv, d, true, 0x4000_0000, 0x20_0000 | index);
      expect(r.out).toEqual(GP);
      expect(r.advanced).toBe(false);
    }
    expect(bytes(hv, d, 0x20_0000, 16)).toEqual(new Array(16).fill(0));
    expect(hypercallPageRecord(d).refused).toBe(3);
  });

  it("#GP for a frame that is not the domain's RAM: beyond it, the APIC and IO-APIC pages, unassigned space, beyond 52 bits", () => {
    const { hv, d } = machine();
    const frames = [0x80_0000, 0xfee0_0000, 0xfec0_0000, 0xe000_0000, 0xf000_0000];
    for (const gpa of frames) expect(msrExit(hv, d, true, 0x4000_0000, gpa >>> 0, 0).out).toEqual(GP);
    expect(msrExit(hv, d, true, 0x4000_0000, 0, 1).out).toEqual(GP); // 4 GiB
    expect(msrExit(hv, d, true, 0x4000_0000, 0, 0x0010_0000).out).toEqual(GP); // bit 52
    expect(msrExit(hv, d, true, 0x4000_0000, 0xffff_f000, 0xffff_ffff).out).toEqual(GP);
    expect(hypercallPageRecord(d).installs).toBe(0);
  });

  it("#GP for the other MSRs of Xen's range; the hypercall-page MSR reads zero", () => {
    const { hv, d } = machine();
    for (const msr of [0x4000_0001, 0x4000_0100, 0x4000_0200, 0x4000_02ff]) {
      expect(msrExit(hv, d, false, msr).out).toEqual(GP);
      expect(msrExit(hv, d, true, msr, 0x20_0000).out).toEqual(GP);
    }
    const r = msrExit(hv, d, false, 0x4000_0000);
    expect(r.out.kind).toBe("resume");
    expect([r.eax, r.edx, r.advanced]).toEqual([0, 0, true]);
  });

  it("fills exactly the page named, or nothing, for any value (fast-check); the other domain is untouched", () => {
    const { hv, d, other } = machine();
    const sentinel = (dom: Domain) => [0, 0x1000, 0x20_0000, 0x7f_f000].map((g) => bytes(hv, dom, g, 64).join(","));
    const before = sentinel(other);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), fc.integer({ min: 0, max: 0xffff_ffff }), fc.boolean(), (lo, hi, small) => {
        const value = small ? { lo: ((lo % 0x800) * PAGE_SIZE) | (lo & 1), hi: 0 } : { lo, hi };
        const gfn = value.hi * 2 ** 20 + (value.lo >>> 12);
        const ok = (value.lo & 0xfff) === 0 && gfn < d.ramFrames;
        const r = msrExit(hv, d, true, 0x4000_0000, value.lo, value.hi);
        if (ok) {
          expect(r.out.kind).toBe("resume");
          expect(bytes(hv, d, gfn * PAGE_SIZE, 48)).toEqual(Array.from(stubs.subarray(0, 48)));
        } else {
          expect(r.out).toEqual(GP);
        }
      }),
      { numRuns: 200 },
    );
    expect(sentinel(other)).toEqual(before);
  });
});
