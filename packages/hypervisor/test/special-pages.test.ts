/**
 * The toolstack's special pages (builder/special-pages.ts, Xen's alloc_magic_pages_hvm): the
 * guest finds its xenstore and console rings and ports with HVMOP_get_param, on EPT and shadow.
 */
import { describe, expect, it } from "vitest";
import {
  DOMID_SELF,
  EVTCHNOP_status,
  EVTCHNSTAT_unbound,
  HVMOP_get_param,
  HVM_PARAM_CONSOLE_EVTCHN,
  HVM_PARAM_CONSOLE_PFN,
  HVM_PARAM_STORE_EVTCHN,
  HVM_PARAM_STORE_PFN,
  HYPERVISOR_event_channel_op,
  HYPERVISOR_hvm_op,
  evtchn_status,
  xen_hvm_param,
} from "@vtlab/xen-public";
import { Hypervisor, SPECIALPAGE_CONSOLE, SPECIALPAGE_XENSTORE, X86_HVM_NR_SPECIAL_PAGES, specialPfn } from "@vtlab/hypervisor";
import { HC_DATA, runHypercalls } from "./hypercall-guest.js";
import { tinyKernel } from "./tiny-kernel.js";

const PARAMS = [HVM_PARAM_STORE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_CONSOLE_EVTCHN];

function data(): Uint8Array {
  const b = new Uint8Array(0x400);
  const v = new DataView(b.buffer);
  PARAMS.forEach((index, i) => {
    v.setUint16(0x40 * i + xen_hvm_param.domid, DOMID_SELF, true);
    v.setUint32(0x40 * i + xen_hvm_param.index, index, true);
  });
  // evtchn_status for ports 1 and 2 at 0x200 and 0x240
  for (const [i, port] of [[0, 1], [1, 2]] as const) {
    v.setUint16(0x200 + 0x40 * i + evtchn_status.dom, DOMID_SELF, true);
    v.setUint32(0x200 + 0x40 * i + evtchn_status.port, port, true);
  }
  return b;
}

describe.each([true, false])("the toolstack's special pages (hap=%s)", (hap) => {
  it("names the xenstore and console rings and their unbound ports (offered to dom0) through HVM params", () => {
    const r = runHypercalls(
      [
        ...PARAMS.map((_, i) => ({ nr: HYPERVISOR_hvm_op, args: [HVMOP_get_param, HC_DATA + 0x40 * i] })),
        { nr: HYPERVISOR_event_channel_op, args: [EVTCHNOP_status, HC_DATA + 0x200] },
        { nr: HYPERVISOR_event_channel_op, args: [EVTCHNOP_status, HC_DATA + 0x240] },
      ],
      { hap, data: data(), magicPages: true },
    );
    expect(r.results).toEqual([0, 0, 0, 0, 0, 0]);
    const out = new DataView(r.read(HC_DATA, 0x300).buffer);
    const value = (i: number) => out.getUint32(0x40 * i + xen_hvm_param.value, true);
    expect([value(0), value(1), value(2), value(3)]).toEqual([specialPfn(SPECIALPAGE_XENSTORE), 1, specialPfn(SPECIALPAGE_CONSOLE), 2]);
    expect(specialPfn(SPECIALPAGE_XENSTORE)).toBe(0xfeffc);
    expect(specialPfn(SPECIALPAGE_CONSOLE)).toBe(0xfefff);
    for (const i of [0, 1]) {
      expect(out.getUint32(0x200 + 0x40 * i + evtchn_status.status, true)).toBe(EVTCHNSTAT_unbound);
      expect(out.getUint16(0x200 + 0x40 * i + evtchn_status.u, true)).toBe(0); // u.unbound.dom: dom0
    }
    expect(r.domain.magicPages).toEqual({ storePfn: 0xfeffc, storeEvtchn: 1, consolePfn: 0xfefff, consoleEvtchn: 2 });
    // The pages are the domain's own zeroed RAM, counted in its reservation.
    for (let i = 0; i < X86_HVM_NR_SPECIAL_PAGES; i++) {
      const hpa = r.domain.ramHpa(specialPfn(i) * 4096);
      expect(hpa).toBeDefined();
      expect(r.read(specialPfn(i) * 4096, 16).every((b) => b === 0)).toBe(true);
    }
  });

  it("dom0 can bind the ports and reach the guest through them", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "g", memoryMiB: 8, hap, kernel: tinyKernel("f4"), magicPages: true });
    const local = hv.dom0.evtchn.bindInterdomain(d.id, d.magicPages!.consoleEvtchn);
    expect(local).toBeGreaterThan(0);
    expect(hv.dom0.evtchn.send(local)).toBe(0);
    expect(d.xen.evtchn.isPending(d.magicPages!.consoleEvtchn)).toBe(true);
  });

  it("grants the console and xenstore pages to dom0 at GNTTAB_RESERVED_CONSOLE and _XENSTORE, so dom0 maps them by grant", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "g", memoryMiB: 8, hap, kernel: tinyKernel("f4"), magicPages: true });
    for (const [ref, pfn] of [[0, specialPfn(SPECIALPAGE_CONSOLE)], [1, specialPfn(SPECIALPAGE_XENSTORE)]] as const) {
      const m = hv.dom0.grants.map(d.id, ref);
      if (typeof m === "number") throw new Error(`map of ref ${ref}: ${m}`);
      expect(m.write(0, Uint8Array.of(0x5a))).toBe(true);
      expect(hv.memory.read8(d.ramHpa(pfn * 4096)!)).toBe(0x5a);
      expect(hv.dom0.grants.unmap(m)).toBe(0);
    }
    // Ref 2 was not granted.
    expect(typeof hv.dom0.grants.map(d.id, 2)).toBe("number");
  });

  it("a bare createDomain has none (Xen's domctl and builder alone), so ports start at 1", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "g", memoryMiB: 8, hap, kernel: tinyKernel("f4") });
    expect(d.magicPages).toBeUndefined();
    expect(d.xen.getHvmParam(HVM_PARAM_STORE_PFN)).toBe(0);
    expect(d.ramHpa(specialPfn(0) * 4096)).toBeUndefined();
  });
});
