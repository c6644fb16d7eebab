/**
 * Balloon churn (issue 18, "every cache guest code can grow"): a guest that gives a frame back
 * (XENMEM_decrease_reservation) and takes one at a new guest frame (XENMEM_populate_physmap),
 * over and over, each time somewhere new in its physical address space, must not grow what the
 * host holds for it: the EPT tables an unmap leaves empty are freed (mmu-ept), and the p2m's runs
 * are bounded by the domain's max_pages (a populate beyond it fails).
 */
import { describe, expect, it } from "vitest";
import { hypercall, type Domain, type Hypervisor } from "@vtlab/hypervisor";
import { DOMID_SELF, HYPERVISOR_memory_op, XENMEM_decrease_reservation, XENMEM_populate_physmap, xen_memory_reservation as R } from "@vtlab/xen-public";
import { ARG, machine, put, struct } from "./xen-harness.js";

const EXTENTS = ARG + 0x1000;

function reservation(hv: Hypervisor, d: Domain, op: number, gfns: readonly number[]): number {
  put(hv, d, EXTENTS, struct(8 * gfns.length, gfns.map((g, i) => [8 * i, 8, g] as const)));
  put(hv, d, ARG, struct(R.SIZEOF, [[R.extent_start, 8, EXTENTS], [R.nr_extents, 8, gfns.length], [R.extent_order, 4, 0], [R.mem_flags, 4, 0], [R.domid, 2, DOMID_SELF]]));
  const cpu = d.vcpus[0]!.cpu;
  for (;;) {
    [[0, HYPERVISOR_memory_op], [7, op], [6, ARG]].forEach(([r, v]) => {
      cpu.lo[r!] = v! | 0;
      cpu.hi[r!] = 0;
    });
    const rc = hypercall({ hv, domain: d, vcpu: d.vcpus[0]! });
    if (typeof rc === "number") return rc;
  }
}

describe("balloon churn does not grow the host's tables for the domain", () => {
  it("EPT: 400 rounds of decrease + populate at a new 1 GiB region each: framesHeld and the p2m stay bounded", () => {
    const { hv, domains } = machine({ hap: true, memoryMiB: 16 });
    const d = domains[0]!;
    const own = 0x600; // a RAM frame the guest gives back and takes again
    const heldAtStart = d.framesHeld;
    let maxHeld = 0;
    let maxRuns = 0;
    for (let k = 0; k < 400; k++) {
      const far = 0x4_0000 * (k + 1); // guest frame in a new 1 GiB region: new EPT PD and PT (and PDPT past 512 GiB)
      expect(reservation(hv, d, XENMEM_decrease_reservation, [own])).toBe(1);
      expect(reservation(hv, d, XENMEM_populate_physmap, [far])).toBe(1);
      maxHeld = Math.max(maxHeld, d.framesHeld);
      expect(reservation(hv, d, XENMEM_decrease_reservation, [far])).toBe(1);
      expect(reservation(hv, d, XENMEM_populate_physmap, [own])).toBe(1);
      maxRuns = Math.max(maxRuns, [...d.p2m.runs()].length);
    }
    // The far frame's path costs at most three table frames while it is mapped; nothing accumulates.
    expect(maxHeld).toBeLessThanOrEqual(heldAtStart + 4);
    expect(d.framesHeld).toBeLessThanOrEqual(heldAtStart + 1);
    expect(maxRuns).toBeLessThan(16);
    expect(d.ramHpa(own * 4096)).toBeDefined();
    // The domain still runs.
    hv.run({ maxInstructions: 10_000 });
    expect(d.state).toBe("running");
  });
});
