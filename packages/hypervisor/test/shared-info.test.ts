/**
 * shared_info and vcpu_info (xen/shared_info.ts): the per-domain frame, where each vCPU's
 * vcpu_info is, VCPUOP_register_vcpu_info with Xen's map_vcpu_info rules, on EPT and on shadow;
 * guest-written garbage in the shared fields.
 */
import { describe, expect, it, vi } from "vitest";
import fc from "fast-check";
import { Hypervisor } from "@vtlab/hypervisor";
import {
  DOMID_SELF,
  HYPERVISOR_vcpu_op,
  VCPUOP_register_vcpu_info,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOENT,
  XEN_ENXIO,
  XEN_LEGACY_MAX_VCPUS,
  shared_info,
  vcpu_info,
  vcpu_register_vcpu_info,
} from "@vtlab/xen-public";
import { SPIN, direct64Kernel } from "./tiny-kernel.js";
import { ARG, MMIO, call, get, machine, page, put, struct } from "./xen-harness.js";

const modes = [true, false] as const;
const R = vcpu_register_vcpu_info;
const reg = (gfn: number | bigint, offset: number) => struct(R.SIZEOF, [[R.mfn, 8, gfn], [R.offset, 4, offset]]);

describe("the shared_info frame", () => {
  it("one zeroed hypervisor frame per domain, counted in framesHeld and given back at destroy", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const a = hv.createDomain({ name: "a", memoryMiB: 4, kernel: direct64Kernel(SPIN) });
    const b = hv.createDomain({ name: "b", memoryMiB: 4, kernel: direct64Kernel(SPIN) });
    const free0 = hv.frames.freeFrames + a.framesHeld + b.framesHeld; // what destroying both gives back
    expect(a.xen.sharedInfo.mfn).not.toBe(b.xen.sharedInfo.mfn);
    expect(page(hv, a.xen.sharedInfo.hpa).every((x) => x === 0)).toBe(true);
    expect(a.xen.sharedInfo.gfn).toBeUndefined(); // until XENMEM_add_to_physmap maps it
    // It is not guest RAM: no guest frame maps it.
    for (let f = 0; f < a.ramFrames; f++) expect(a.ramHpa(f * 4096)).not.toBe(a.xen.sharedInfo.hpa);
    hv.destroyDomain("a");
    hv.destroyDomain("b");
    expect(hv.frames.freeFrames).toBe(free0);
  });

  it("vcpu_info: in shared_info below XEN_LEGACY_MAX_VCPUS, a private stand-in above until registered", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "many", memoryMiB: 4, vcpus: 34, kernel: direct64Kernel(SPIN) });
    const si = d.xen.sharedInfo;
    expect(si.vcpuInfoHpa(0)).toBe(si.hpa + shared_info.vcpu_info);
    expect(si.vcpuInfoHpa(31)).toBe(si.hpa + shared_info.vcpu_info + 31 * vcpu_info.SIZEOF);
    expect(si.vcpuInfoHpa(XEN_LEGACY_MAX_VCPUS)).toBeUndefined();
    // An event for vCPU 33: the pending bit in shared_info, the upcall in the stand-in; vCPU 31's vcpu_info untouched.
    const p = d.xen.evtchn.bindIpi(33);
    const before = page(hv, si.hpa);
    d.xen.evtchn.send(p);
    const after = page(hv, si.hpa);
    expect(d.xen.upcallPending(33)).toBe(true);
    const changed = [...after.keys()].filter((i) => after[i] !== before[i]);
    expect(changed).toEqual([shared_info.evtchn_pending + (p >> 3)]);
  });
});

describe.each(modes)("VCPUOP_register_vcpu_info (hap=%s)", (hap) => {
  const GFN = 0x300; // a page of guest RAM at 3 MiB
  it("moves vcpu_info into a guest page: contents copied, every selector bit set, an upcall marked", () => {
    const { hv, domains: [d] } = machine({ hap });
    const si = d!.xen.sharedInfo;
    const old = si.vcpuInfoHpa(0)!;
    hv.memory.write8(old + vcpu_info.evtchn_upcall_mask, 1);
    hv.memory.write32(old + vcpu_info.time, 0x1234_5678); // whatever was there travels
    put(hv, d!, ARG, reg(GFN, 0x40));
    let moved = -1;
    si.onVcpuInfoMoved = (id) => (moved = id);
    expect(call(hv, d!, HYPERVISOR_vcpu_op, [VCPUOP_register_vcpu_info, 0, ARG])).toBe(0);
    expect(moved).toBe(0);
    expect(si.vcpuInfoHpa(0)).toBe(d!.ramHpa(GFN * 4096 + 0x40));
    expect(si.isRegistered(0)).toBe(true);
    const info = get(hv, d!, GFN * 4096 + 0x40, vcpu_info.SIZEOF);
    expect(info[vcpu_info.evtchn_upcall_pending]).toBe(1);
    expect(info[vcpu_info.evtchn_upcall_mask]).toBe(1);
    expect([...info.subarray(vcpu_info.evtchn_pending_sel, vcpu_info.evtchn_pending_sel + 8)]).toEqual(Array(8).fill(0xff));
    expect(new DataView(info.buffer).getUint32(vcpu_info.time, true)).toBe(0x1234_5678);
    // Events now land in the new place; the old slot in shared_info is left alone.
    const oldBytes = page(hv, si.hpa).subarray(0, vcpu_info.SIZEOF).slice();
    const p = d!.xen.evtchn.bindIpi(0);
    hv.memory.write8(si.vcpuInfoHpa(0)! + vcpu_info.evtchn_upcall_pending, 0);
    hv.memory.fill(si.vcpuInfoHpa(0)! + vcpu_info.evtchn_pending_sel, 8, 0);
    d!.xen.evtchn.send(p);
    expect(d!.xen.upcallPending(0)).toBe(true);
    expect(get(hv, d!, GFN * 4096 + 0x40 + vcpu_info.evtchn_pending_sel, 1)[0]).toBe(1);
    expect(page(hv, si.hpa).subarray(0, vcpu_info.SIZEOF)).toEqual(oldBytes);
    // Each write tells the vCPUs to drop code decoded from that frame (a guest may run code there).
    const codeWritten = vi.spyOn(d!.vcpus[0]!.cpu, "codeWritten");
    hv.memory.write8(si.vcpuInfoHpa(0)! + vcpu_info.evtchn_upcall_pending, 0);
    hv.memory.fill(si.vcpuInfoHpa(0)! + vcpu_info.evtchn_pending_sel, 8, 0);
    hv.memory.write8(si.hpa + shared_info.evtchn_pending, 0);
    d!.xen.evtchn.send(p);
    expect(codeWritten.mock.calls.map((c) => c[0])).toEqual([si.mfn, Math.floor(si.vcpuInfoHpa(0)! / 4096), Math.floor(si.vcpuInfoHpa(0)! / 4096)]); // pending, selector, upcall
    // A second registration is refused.
    put(hv, d!, ARG, reg(GFN, 0x80));
    expect(call(hv, d!, HYPERVISOR_vcpu_op, [VCPUOP_register_vcpu_info, 0, ARG])).toBe(-XEN_EINVAL);
  });

  it("Xen's map_vcpu_info errnos: offset past the page or misaligned -ENXIO, a frame that is not RAM -EINVAL, bad pointer -EFAULT", () => {
    const { hv, domains: [d] } = machine({ hap, vcpus: 2 });
    const rc = (gfn: number | bigint, offset: number, vcpu = 0) => {
      put(hv, d!, ARG, reg(gfn, offset));
      return call(hv, d!, HYPERVISOR_vcpu_op, [VCPUOP_register_vcpu_info, vcpu, ARG]);
    };
    expect(rc(GFN, 4096 - 63)).toBe(-XEN_ENXIO);
    expect(rc(GFN, 4096 - 56)).toBe(-XEN_ENXIO);
    expect(rc(GFN, 0xffff_ffff)).toBe(-XEN_ENXIO);
    expect(rc(GFN, 4)).toBe(-XEN_ENXIO); // alignof(vcpu_info) = 8
    expect(rc(MMIO / 4096, 0)).toBe(-XEN_EINVAL); // the local APIC page
    expect(rc(d!.ramFrames + 6, 0)).toBe(-XEN_EINVAL); // past RAM
    expect(rc(d!.ramFrames, 0)).toBe(-XEN_EINVAL); // past RAM (on shadow: the hypervisor's identity page table)
    expect(rc(0xffff_ffff_ffff_ffffn, 0)).toBe(-XEN_EINVAL);
    expect(rc(1n << 40n, 0)).toBe(-XEN_EINVAL);
    expect(rc(GFN, 0, 2)).toBe(-XEN_ENOENT);
    expect(call(hv, d!, HYPERVISOR_vcpu_op, [VCPUOP_register_vcpu_info, 0, MMIO])).toBe(-XEN_EFAULT);
    expect(d!.xen.sharedInfo.isRegistered(0)).toBe(false);
    // Another vCPU's vcpu_info may be moved only while that vCPU is down.
    d!.vcpus[1]!.bringUp.up = true; // as if VCPUOP_up had run
    expect(rc(GFN, 4096 - 64, 1)).toBe(-XEN_EINVAL);
    d!.vcpus[1]!.bringUp.up = false;
    expect(rc(GFN, 4096 - 64, 1)).toBe(0);
    expect(d!.xen.sharedInfo.vcpuInfoHpa(1)).toBe(d!.ramHpa(GFN * 4096 + 4096 - 64));
    // The caller itself is up: allowed.
    expect(rc(GFN + 1, 0)).toBe(0);
  });

  it("a vCPU past XEN_LEGACY_MAX_VCPUS gets its vcpu_info registered fresh: zeroes, upcall mask set, then all pending", () => {
    const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 2_000 });
    const d = hv.createDomain({ name: "big", memoryMiB: 4, vcpus: 33, hap, kernel: direct64Kernel(SPIN) });
    hv.run({ maxInstructions: 5_000 });
    put(hv, d, GFN * 4096, new Uint8Array(64).fill(0xee));
    put(hv, d, ARG, reg(GFN, 0));
    expect(call(hv, d, HYPERVISOR_vcpu_op, [VCPUOP_register_vcpu_info, 32, ARG])).toBe(0);
    const info = get(hv, d, GFN * 4096, 64);
    expect(info[vcpu_info.evtchn_upcall_pending]).toBe(1);
    expect(info[vcpu_info.evtchn_upcall_mask]).toBe(1);
    expect(info.subarray(vcpu_info.evtchn_upcall_mask + 1, vcpu_info.evtchn_pending_sel).every((x) => x === 0)).toBe(true);
    expect(info.subarray(vcpu_info.arch, vcpu_info.time).every((x) => x === 0)).toBe(true); // not the page's old 0xee
    expect(d.xen.sharedInfo.vcpuInfoHpa(32)).toBe(d.ramHpa(GFN * 4096));
  });
});

describe("hostile writes to the shared fields", () => {
  for (const hap of modes) {
    it(`whatever the guest wrote in shared_info and vcpu_info, sends and unmasks never throw and touch only those bits (${hap ? "EPT" : "shadow"})`, () => {
      const { hv, domains: [d] } = machine({ hap, vcpus: 2 });
      const si = d!.xen.sharedInfo;
      const ec = d!.xen.evtchn;
      const ports = [ec.bindIpi(0), ec.bindIpi(1), ec.allocUnbound(DOMID_SELF, DOMID_SELF)];
      ports.push(ec.bindInterdomain(DOMID_SELF, ports[2]!));
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 4096, maxLength: 4096 }), fc.array(fc.tuple(fc.nat(3), fc.boolean())), (garbage, actions) => {
          hv.memory.writeBytes(si.hpa, garbage);
          for (const [i, unmask] of actions) {
            const p = ports[i]!;
            const before = page(hv, si.hpa);
            if (unmask) expect(ec.unmask(p)).toBe(0);
            else expect(ec.send(p)).toBe(0);
            const after = page(hv, si.hpa);
            // Only bits get set or cleared, in the pending or mask bitmaps or a vcpu_info's first 16 bytes.
            for (let k = 0; k < 4096; k++) {
              if (after[k] === before[k]) continue;
              const inBitmaps = k >= shared_info.evtchn_pending && k < shared_info.evtchn_mask + 512;
              const inVcpuInfo = k < 2 * vcpu_info.SIZEOF && k % vcpu_info.SIZEOF < 16;
              expect(inBitmaps || inVcpuInfo, `byte ${k}`).toBe(true);
            }
          }
        }),
        { numRuns: 40, seed: 3 },
      );
    });
  }
});
