/**
 * Shadow paging with VPIDs (Xen gives every HVM guest one, shadow or HAP): the vCPU's
 * translations survive VM exits and entries, and the shadow code flushes them wherever it
 * removes or restricts a shadow entry or moves the vCPU to another root, so every access still
 * faults or lands exactly as without VPIDs (where every exit and entry flushes the TLB).
 */
import { describe, expect, it } from "vitest";
import { PTE_P, PTE_RW } from "@vtlab/arch";
import { KPML4, OpsGuest } from "../src/index.js";

const F = PTE_P | PTE_RW;
const USER = 2 ** 39;

/** USER mapped to GPA 0x400000 (holding 42) through a fresh PDPT, PD and L1; returns the L1. */
function mapUser(g: OpsGuest): number {
  const [pdpt, pd, l1] = [g.table(), g.table(), g.table()];
  g.store(KPML4 + 8, pdpt | F); // the PML4 is shadowed (it is CR3): an emulated store
  g.store(pdpt, pd | F);
  g.store(pd, l1 | F);
  g.d.write64(0x40_0000, 42);
  g.d.write64(0x40_1000, 43);
  g.store(l1, 0x40_0000 | F);
  return l1;
}

describe("shadow paging with VPIDs", () => {
  it("translations survive VM exits: a repeated load walks nothing (without VPIDs every entry flushes)", () => {
    for (const vpid of [true, false]) {
      const g = new OpsGuest({ shadow: { vpid } });
      mapUser(g);
      expect(g.load(USER)).toEqual({ kind: "ok", value: 42 });
      const misses = g.cpu.counters.tlbMisses;
      expect(g.load(USER)).toEqual({ kind: "ok", value: 42 }); // one op: entry, code, stack, USER, HLT exit
      if (vpid) expect(g.cpu.counters.tlbMisses).toBe(misses);
      else expect(g.cpu.counters.tlbMisses).toBeGreaterThan(misses);
    }
  });

  it("a shadow leaf dropped by an emulated PTE write is flushed from the TLB: the next access faults", () => {
    const g = new OpsGuest({ shadow: { outOfSync: false } });
    const l1 = mapUser(g);
    expect(g.load(USER)).toEqual({ kind: "ok", value: 42 });
    const flushes = g.sp!.stats.tlbFlushes;
    g.store(l1, 0); // write-protected table: emulated, the shadow leaf goes
    expect(g.sp!.stats.tlbFlushes).toBeGreaterThan(flushes);
    expect(g.load(USER)).toMatchObject({ kind: "pf", cr2: USER });
  });

  it("a PTE repointed (and write access taken away) takes effect at once, as without VPIDs", () => {
    const g = new OpsGuest({ shadow: { outOfSync: false } });
    const l1 = mapUser(g);
    expect(g.store(USER, 7)).toMatchObject({ kind: "ok" });
    expect(g.d.read64(0x40_0000)).toBe(7);
    g.store(l1, 0x40_1000 | PTE_P); // another frame, read-only
    expect(g.load(USER)).toEqual({ kind: "ok", value: 43 });
    expect(g.store(USER, 8)).toMatchObject({ kind: "pf", cr2: USER });
  });

  it("out of sync: a direct PTE write keeps the old translation until INVLPG (as the shadow does), then faults", () => {
    for (const vpid of [true, false]) {
      const g = new OpsGuest({ shadow: { outOfSync: true, vpid } });
      const l1 = mapUser(g);
      expect(g.load(USER)).toEqual({ kind: "ok", value: 42 });
      g.store(l1 + 8, 0x40_1000 | F); // the first write unsyncs the table
      g.store(l1, 0); // a direct write: no exit
      expect(g.load(USER)).toEqual({ kind: "ok", value: 42 }); // the shadow (and TLB) still map it
      g.invlpg(USER); // resync: the leaf goes, every TLB entry with it
      expect(g.load(USER)).toMatchObject({ kind: "pf", cr2: USER });
      expect(g.load(USER + 0x1000)).toEqual({ kind: "ok", value: 43 });
    }
  });

  it("a CR3 load moves the vCPU to the other root's translations", () => {
    const g = new OpsGuest({ shadow: { outOfSync: false } });
    mapUser(g);
    expect(g.load(USER)).toEqual({ kind: "ok", value: 42 });
    // A second address space: the kernel half shared, USER mapped to 0x401000.
    const root = g.table();
    g.d.write64(root, g.d.read64(KPML4));
    const [pdpt, pd, l1] = [g.table(), g.table(), g.table()];
    g.d.write64(root + 8, pdpt | F);
    g.d.write64(pdpt, pd | F);
    g.d.write64(pd, l1 | F);
    g.d.write64(l1, 0x40_1000 | F);
    g.loadCr3(root);
    expect(g.load(USER)).toEqual({ kind: "ok", value: 43 });
    g.loadCr3(KPML4);
    expect(g.load(USER)).toEqual({ kind: "ok", value: 42 });
  });
});
