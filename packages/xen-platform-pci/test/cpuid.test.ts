import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { TscMode, XEN_HYPERCALL_PAGE_MSR, xenCpuidLeaf, xenTimeScale, type XenCpuidInfo } from "@vtlab/xen-platform-pci";
import {
  XEN_HVM_CPUID_DOMID_PRESENT,
  XEN_HVM_CPUID_UPCALL_VECTOR,
  XEN_HVM_CPUID_VCPU_ID_PRESENT,
} from "@vtlab/xen-public";

const info: XenCpuidInfo = { vcpuId: 2, domid: 7, tscHz: 2_000_000_000 };

function leaf(l: number, sub = 0, i: XenCpuidInfo = info): number[] {
  const out = new Int32Array(4).fill(0x5a5a5a5a);
  expect(xenCpuidLeaf(l, sub, i, out)).toBe(true);
  return Array.from(out, (x) => x >>> 0);
}

/** The signature bytes of EBX, ECX, EDX, as the guest reads them. */
function text(regs: number[]): string {
  return regs.map((r) => String.fromCharCode(r & 0xff, (r >>> 8) & 0xff, (r >>> 16) & 0xff, r >>> 24)).join("");
}

/** Xen's set_time_scale, in exact integer arithmetic (the reference the Number version must match). */
function referenceScale(hz: bigint): { mulFrac: number; shift: number } {
  let tps64 = hz;
  let shift = 0;
  while (tps64 > 2_000_000_000n) {
    tps64 >>= 1n;
    shift--;
  }
  let tps32 = tps64;
  while (tps32 <= 1_000_000_000n) {
    tps32 <<= 1n;
    shift++;
  }
  return { mulFrac: Number((1_000_000_000n << 32n) / tps32), shift };
}

describe("the Xen CPUID leaves (cpuid_hypervisor_leaves, Xen 4.17, HVM)", () => {
  it("leaf 0x40000000: the largest leaf 0x40000005 and \"XenVMMXenVMM\"", () => {
    const r = leaf(0x4000_0000);
    expect(r[0]).toBe(0x4000_0005);
    expect(text(r.slice(1))).toBe("XenVMMXenVMM");
  });

  it("leaf 0x40000001: version 4.17", () => {
    expect(leaf(0x4000_0001)).toEqual([0x0004_0011, 0, 0, 0]);
    expect(leaf(0x4000_0001, 0, { ...info, major: 4, minor: 19 })[0]).toBe(0x0004_0013);
  });

  it("leaf 0x40000002: one hypercall page, MSR 0x40000000, no PV features", () => {
    expect(leaf(0x4000_0002)).toEqual([1, XEN_HYPERCALL_PAGE_MSR, 0, 0]);
  });

  it("leaf 0x40000003: the TSC leaf's three sub-leaves", () => {
    expect(leaf(0x4000_0003, 0)).toEqual([0b010, TscMode.Default, 2_000_000, 0]);
    expect(leaf(0x4000_0003, 0, { ...info, emulatedTsc: true, rdtscp: true, hostTscReliable: false, tscMode: TscMode.AlwaysEmulate, incarnation: 3 })).toEqual([0b101, 1, 2_000_000, 3]);
    expect(leaf(0x4000_0003, 1)).toEqual([0, 0, 0x8000_0000, 0]);
    expect(leaf(0x4000_0003, 1, { ...info, tscOffset: -5 })).toEqual([0xffff_fffb, 0xffff_ffff, 0x8000_0000, 0]);
    expect(leaf(0x4000_0003, 1, { ...info, tscOffset: 2 ** 33 + 7, emulatedTsc: true })).toEqual([0, 0, 0x8000_0000, 0]); // emulated: offset already applied
    expect(leaf(0x4000_0003, 1, { ...info, tscOffset: 2 ** 33 + 7 })).toEqual([7, 2, 0x8000_0000, 0]);
    expect(leaf(0x4000_0003, 1, { ...info, tscHz: 4_000_000_000 })[3]).toBe(0xffff_ffff); // shift -1, sign-extended
    expect(leaf(0x4000_0003, 2, { ...info, hostTscHz: 3_000_000_000 })).toEqual([3_000_000, 0, 0, 0]);
    expect(leaf(0x4000_0003, 3)).toEqual([0, 0, 0, 0]);
  });

  it("leaf 0x40000004: vCPU id in EBX, domid in ECX, and only the features asked for", () => {
    expect(leaf(0x4000_0004)).toEqual([XEN_HVM_CPUID_VCPU_ID_PRESENT | XEN_HVM_CPUID_DOMID_PRESENT, 2, 7, 0]);
    expect(leaf(0x4000_0004, 0, { ...info, hvmFeatures: XEN_HVM_CPUID_UPCALL_VECTOR })[0]).toBe(XEN_HVM_CPUID_VCPU_ID_PRESENT | XEN_HVM_CPUID_DOMID_PRESENT | XEN_HVM_CPUID_UPCALL_VECTOR);
    expect(leaf(0x4000_0004, 1)).toEqual([0, 0, 0, 0]);
  });

  it("leaf 0x40000005 and every other leaf up to 0x400001ff read zero", () => {
    for (const l of [0x4000_0005, 0x4000_0006, 0x4000_00ff, 0x4000_0100, 0x4000_0105, 0x4000_01ff]) expect(leaf(l, 0)).toEqual([0, 0, 0, 0]);
  });

  it("leaves outside 0x40000000-0x400001ff are not Xen's (out untouched)", () => {
    for (const l of [0, 1, 0x3fff_ffff, 0x4000_0200, 0x8000_0000, 0xffff_ffff, -1]) {
      const out = new Int32Array([1, 2, 3, 4]);
      expect(xenCpuidLeaf(l, 0, info, out)).toBe(false);
      expect(Array.from(out)).toEqual([1, 2, 3, 4]);
    }
  });
});

describe("xenTimeScale (set_time_scale)", () => {
  it("is mul 2^31, shift 0 for the 2 GHz simulated clock; the identity for 1 GHz is mul 2^31, shift 1", () => {
    expect(xenTimeScale(2_000_000_000)).toEqual({ mulFrac: 0x8000_0000, shift: 0 });
    expect(xenTimeScale(1_000_000_000)).toEqual({ mulFrac: 0x8000_0000, shift: 1 });
  });

  it("matches Xen's integer algorithm exactly, and turns one second of ticks into one second (fast-check)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 40 }), (hz) => {
        const s = xenTimeScale(hz);
        expect(s).toEqual(referenceScale(BigInt(hz)));
        expect(s.mulFrac).toBeGreaterThanOrEqual(0x8000_0000 - 1);
        expect(s.mulFrac).toBeLessThanOrEqual(0xffff_ffff);
        // ns for hz ticks (one second): ((hz << shift) * mul) >> 32, exactly in bigint.
        const t = BigInt(hz);
        const shifted = s.shift >= 0 ? t << BigInt(s.shift) : t >> BigInt(-s.shift);
        const ns = Number((shifted * BigInt(s.mulFrac)) >> 32n);
        expect(Math.abs(ns - 1e9)).toBeLessThanOrEqual(1e9 / 2 ** 30 + 2 ** Math.max(0, -s.shift) * 1e9 / hz + 1);
      }),
    );
  });

  it("refuses a clock that is not a positive number of Hz", () => {
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, 0.5]) expect(() => xenTimeScale(bad)).toThrow(RangeError);
  });
});
