/**
 * The shadow cache per CR3, the unshadow heuristic, out-of-sync leaf tables, log-dirty mode,
 * global pages, the fork-like workload and ptemod, each through real instructions in VMX
 * non-root mode (src/workload.ts).
 */
import { nestedPagingFactory } from "./ept-factory.js";
import { describe, expect, it } from "vitest";
import { PTE_G, PTE_P, PTE_RW } from "@vtlab/arch";
import { ExitReason, exitReasonName } from "@vtlab/cpu-vmx";
import { KPML4, OpsGuest, RAM_BASE, ShadowType, forkWorkload, ptemod } from "../src/index.js";

const F = PTE_P | PTE_RW;
const USER = 2 ** 39;

/** Two address spaces sharing the kernel half; each maps USER to its own data frame. */
function twoSpaces(g: OpsGuest, extra = 0) {
  const roots = [KPML4, g.table()];
  g.d.write64(roots[1]!, g.d.read64(KPML4));
  const l1s: number[] = [];
  roots.forEach((root, r) => {
    const pdpt = g.table();
    const pd = g.table();
    const l1 = g.table();
    g.d.write64(root + 8, pdpt | F);
    g.d.write64(pdpt, pd | F);
    g.d.write64(pd, l1 | F);
    g.d.write64(l1, (0x40_0000 + r * 0x1000) | F | extra);
    g.d.write64(0x40_0000 + r * 0x1000, 100 + r);
    l1s.push(l1);
  });
  return { roots, l1s };
}

describe("shadow cache, unshadowing, out-of-sync, log-dirty", () => {
  it("CR3 switches reuse cached shadows: no rebuild, no new shadow pages, no faults", () => {
    const g = new OpsGuest();
    const sp = g.sp!;
    const { roots } = twoSpaces(g);
    for (const r of [0, 1]) {
      expect(g.loadCr3(roots[r]!)).toMatchObject({ kind: "ok" });
      expect(g.load(USER)).toEqual({ kind: "ok", value: 100 + r });
    }
    const pages = sp.shadowPagesInUse;
    const faults = sp.stats.faults.fill;
    for (let k = 0; k < 10; k++) {
      for (const r of [0, 1]) {
        g.loadCr3(roots[r]!);
        expect(g.load(USER)).toEqual({ kind: "ok", value: 100 + r });
      }
    }
    expect(sp.shadowPagesInUse).toBe(pages);
    expect(sp.stats.faults.fill).toBe(faults);
    expect(sp.stats.cr3CacheHits).toBeGreaterThanOrEqual(21);
    expect(sp.guestCr3(g.cpu)).toBe(roots[1]);
    expect(sp.shadowRoot(g.cpu)).toBeGreaterThanOrEqual(6 * 1024 ** 3);
  });

  it("a guest page table freed and reused as data is unshadowed after repeated writes without use", () => {
    const g = new OpsGuest({ shadow: { unshadowAfterWrites: 8 } });
    const sp = g.sp!;
    const { l1s } = twoSpaces(g);
    expect(g.load(USER)).toMatchObject({ kind: "ok" });
    const l1Mfn = (RAM_BASE + l1s[0]!) / 4096;
    expect(sp.shadowsOf(l1Mfn)).toEqual([ShadowType.L1]);
    for (let k = 0; k < 7; k++) g.store(l1s[0]! + 8 + k * 8, 0x1234_0000 + k); // the guest reuses the frame
    expect(sp.stats.emulatedWrites).toBe(7);
    expect(sp.shadowsOf(l1Mfn)).toEqual([ShadowType.L1]);
    g.store(l1s[0]! + 64, 0);
    expect(sp.stats.unshadows).toBe(1);
    expect(sp.shadowsOf(l1Mfn)).toEqual([]);
    const before = g.exits;
    for (let k = 0; k < 20; k++) g.store(l1s[0]! + 8 * (k + 20), k); // plain data now: one refill, then no exits
    expect(g.exits - before).toBe(1);
    // The mapping through it still works (reshadowed on the next walk).
    expect(g.load(USER)).toEqual({ kind: "ok", value: 100 });
    expect(sp.shadowsOf(l1Mfn)).toEqual([ShadowType.L1]);
  });

  it("out-of-sync: a leaf table goes writable on the first write and is resynced on CR3 load and INVLPG", () => {
    const g = new OpsGuest({ shadow: { outOfSync: true } });
    const sp = g.sp!;
    const { l1s } = twoSpaces(g);
    g.d.write64(0x40_2000, 7);
    expect(g.load(USER)).toEqual({ kind: "ok", value: 100 });
    const e0 = g.exits;
    g.store(l1s[0]!, 0x40_2000 | F); // unsync (one exit)
    g.store(l1s[0]! + 8, 0x40_3000 | F); // direct
    expect(g.exits - e0).toBe(1);
    expect(sp.outOfSyncPages).toBe(1);
    expect(g.load(USER)).toEqual({ kind: "ok", value: 100 }); // stale until the flush, as a TLB may be
    g.invlpg(USER);
    expect(sp.stats.resyncs).toBe(1);
    expect(sp.outOfSyncPages).toBe(0);
    expect(g.load(USER)).toEqual({ kind: "ok", value: 7 });
    g.store(l1s[0]!, 0x40_0000 | F);
    g.loadCr3(KPML4);
    expect(sp.stats.resyncs).toBe(2);
    expect(g.load(USER)).toEqual({ kind: "ok", value: 100 });
    expect(sp.stats.unsyncs).toBe(2);
  });

  it("log-dirty: writes are recorded per guest frame; cleaning write-protects again", () => {
    const g = new OpsGuest();
    const sp = g.sp!;
    twoSpaces(g);
    expect(g.store(USER, 5)).toMatchObject({ kind: "ok" });
    sp.enableLogDirty();
    expect(g.load(USER)).toEqual({ kind: "ok", value: 5 });
    expect(sp.dirtyFrames()).toEqual([]);
    const f0 = sp.stats.faults.logDirty;
    g.store(USER, 6);
    g.store(USER + 8, 6);
    expect(sp.stats.faults.logDirty - f0).toBe(1);
    expect(sp.dirtyFrames(true)).toContain(0x400);
    expect(sp.dirtyFrames()).toEqual([]);
    g.store(USER, 7);
    expect(sp.dirtyFrames()).toContain(0x400);
    expect(sp.stats.faults.logDirty - f0).toBe(2);
    sp.disableLogDirty();
    expect(sp.logDirty).toBe(false);
  });

  it("global pages: the guest's G bit reaches the shadow leaf", () => {
    const g = new OpsGuest();
    twoSpaces(g, PTE_G);
    expect(g.load(USER)).toMatchObject({ kind: "ok" });
    const root = g.sp!.shadowRoot(g.cpu)!;
    const o = { lo: 0, hi: 0 };
    let table = root;
    for (const idx of [1, 0, 0]) {
      g.d.memory.read64(table + idx * 8, o);
      table = (o.lo - (o.lo & 0xfff)) + o.hi * 2 ** 32;
    }
    g.d.memory.read64(table, o);
    expect(o.lo & PTE_G).toBe(PTE_G);
    expect((o.lo - (o.lo & 0xfff)) + o.hi * 2 ** 32).toBe(RAM_BASE + 0x40_0000);
    expect(g.sp!.stats.exits[exitReasonName(ExitReason.ExceptionOrNmi)]).toBeGreaterThan(0);
  });
});

describe("workloads", () => {
  it("fork: out-of-sync leaf tables cut the exits of building and COW-marking an address space", () => {
    const off = forkWorkload(false, 512);
    const on = forkWorkload(true, 512);
    const per = (r: typeof off, p: string) => r.phases.find((x) => x.phase === p)!.exitsPerOp;
    // Building: each PTE write is an emulated store (off) or direct (on), plus one fill per touch.
    expect(per(off, "build")).toBeGreaterThan(2);
    expect(per(on, "build")).toBeLessThan(1.1);
    expect(per(on, "cow-mark")).toBeLessThan(per(off, "cow-mark"));
    expect(off.emulatedWrites).toBeGreaterThan(500);
    expect(on.emulatedWrites).toBe(0);
    expect(on.unsyncs).toBeGreaterThan(0);
    expect(on.resyncs).toBeGreaterThan(0);
    // Without out-of-sync the COW burst and the teardown unshadow the written tables (Xen's heuristic).
    expect(off.unshadows).toBeGreaterThan(0);
    expect(per(off, "child-run")).toBeCloseTo(1, 1);
  });

  it("ptemod: three exits per guest PTE modification under shadow paging, none under EPT", () => {
    const s = ptemod("shadow", 50);
    const e = ptemod("ept", 50, {}, nestedPagingFactory);
    expect(s.exitsPerModification).toBe(3); // emulated store, INVLPG, refill
    expect(e.exitsPerModification).toBe(0);
    expect(s.cyclesPerModification).toBeGreaterThan(3000);
    expect(e.cyclesPerModification).toBeLessThan(200);
  });
});
