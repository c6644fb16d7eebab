import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { HYPERCALL_STUBS, HYPERCALL_STUB_SIZE, decodeHypercallPageMsr, writeHypercallPage } from "@vtlab/xen-platform-pci";
import { HYPERVISOR_iret, HYPERVISOR_xen_version } from "@vtlab/xen-public";

describe("writeHypercallPage (vmx_init_hypercall_page)", () => {
  const page = new Uint8Array(4096).fill(0x5a);
  writeHypercallPage(page);

  it("writes 128 stubs of mov $i,%eax; vmcall; ret, each padded with int3", () => {
    expect(HYPERCALL_STUBS).toBe(128);
    for (let i = 0; i < 128; i++) {
      if (i === HYPERVISOR_iret) continue;
      const stub = Array.from(page.subarray(i * 32, i * 32 + 32));
      expect(stub.slice(0, 9)).toEqual([0xb8, i, 0, 0, 0, 0x0f, 0x01, 0xc1, 0xc3]);
      expect(stub.slice(9)).toEqual(new Array(23).fill(0xcc));
    }
    expect(Array.from(page.subarray(HYPERVISOR_xen_version * 32, HYPERVISOR_xen_version * 32 + 9))).toEqual([0xb8, 17, 0, 0, 0, 0x0f, 0x01, 0xc1, 0xc3]);
  });

  it("makes __HYPERVISOR_iret's stub ud2", () => {
    const at = HYPERVISOR_iret * HYPERCALL_STUB_SIZE;
    expect(Array.from(page.subarray(at, at + 32))).toEqual([0x0f, 0x0b, ...new Array(30).fill(0xcc)]);
  });

  it("writes the first 4096 bytes of a larger buffer and refuses a smaller one", () => {
    const big = new Uint8Array(5000).fill(7);
    writeHypercallPage(big);
    expect(Array.from(big.subarray(0, 4096))).toEqual(Array.from(page));
    expect(big[4096]).toBe(7);
    expect(() => writeHypercallPage(new Uint8Array(4095))).toThrow(RangeError);
  });
});

describe("decodeHypercallPageMsr (guest_wrmsr_xen)", () => {
  it("takes the guest frame from bits 63:12", () => {
    expect(decodeHypercallPageMsr(0x0012_3000, 0)).toEqual({ kind: "page", gfn: 0x123 });
    expect(decodeHypercallPageMsr(0xffff_f000, 0x000f_ffff)).toEqual({ kind: "page", gfn: 2 ** 40 - 1 });
    expect(decodeHypercallPageMsr(0, 0xffff_ffff)).toEqual({ kind: "page", gfn: 0xffff_ffff * 2 ** 20 });
  });

  it("refuses any page index other than 0 (fast-check)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), fc.integer({ min: 0, max: 0xffff_ffff }), (lo, hi) => {
        const r = decodeHypercallPageMsr(lo, hi);
        if ((lo & 0xfff) !== 0) expect(r).toEqual({ kind: "bad-index", index: lo & 0xfff });
        else expect(r).toEqual({ kind: "page", gfn: hi * 2 ** 20 + (lo >>> 12) });
      }),
    );
  });
});
