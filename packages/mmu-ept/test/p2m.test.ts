import { describe, expect, it } from "vitest";
import { MachineMemory, gfn, mfn, type Mfn } from "@vtlab/arch";
import { EPT_A, EPT_D, EPT_R, EPT_RWX, EPT_W, EPT_X, EptMemoryType, EptP2m, eptCapabilities, isP2mError, type P2mUpdate } from "@vtlab/mmu-ept";
import { P2mType, RangeP2m, SimpleFrameAllocator } from "@vtlab/p2m";
import { GiB, MiB, TABLE_FRAMES_AT, expectDefined, read64 } from "./fixture.js";

function tables(options: { levels?: 4 | 5; caps?: Parameters<typeof eptCapabilities>[0]; frames?: number } = {}) {
  const memory = new MachineMemory(64 * GiB);
  const frames = new SimpleFrameAllocator(memory, TABLE_FRAMES_AT as Mfn, options.frames ?? 4096);
  const ept = EptP2m.create({ memory, frames, levels: options.levels, caps: eptCapabilities(options.caps) });
  if (isP2mError(ept)) throw new Error(ept.message);
  return { memory, frames, ept };
}

function ok(r: P2mUpdate | { kind: "p2m-error"; message: string }): P2mUpdate {
  if (r.kind === "p2m-error") throw new Error(r.message);
  return r;
}

describe("EptP2m: map and lookup", () => {
  it("uses the largest page alignment allows: 1 GiB, 2 MiB, 4 KiB", () => {
    const { ept } = tables();
    ok(ept.map(0, 4 * GiB, 2 * GiB));
    expect(ept.lookup(0x1234_5678)).toMatchObject({ hpa: 4 * GiB + 0x1234_5678, level: 3, pageShift: 30, perms: EPT_RWX, memoryType: EptMemoryType.WB });
    ok(ept.map(2 * GiB, 8 * GiB + 2 * MiB, 4 * MiB)); // 2 MiB aligned on both sides, not 1 GiB
    expect(ept.lookup(2 * GiB + 0x30_0000)).toMatchObject({ hpa: 8 * GiB + 2 * MiB + 0x30_0000, level: 2 });
    ok(ept.map(3 * GiB, 9 * GiB + 0x1000, 2 * MiB)); // host side only 4 KiB aligned
    expect(ept.lookup(3 * GiB + 0x1f_f123)).toMatchObject({ hpa: 9 * GiB + 0x1000 + 0x1f_f123, level: 1 });
    expect(ept.lookup(5 * GiB)).toBeUndefined();
  });

  it("honours maxPageShift and the capabilities", () => {
    const { ept } = tables({ caps: { pages1G: false } });
    ok(ept.map(0, 4 * GiB, GiB));
    expect(ept.lookup(0)?.level).toBe(2);
    ok(ept.map(GiB, 5 * GiB, 2 * MiB, { maxPageShift: 12 }));
    expect(ept.lookup(GiB + 0x1000)?.level).toBe(1);
  });

  it("5-level tables reach above 2^48", () => {
    const { ept } = tables({ levels: 5 });
    ok(ept.map(2 ** 50, 0x1000, 0x1000));
    expect(ept.lookup(2 ** 50 + 8)?.hpa).toBe(0x1008);
    expect(ept.inspect(2 ** 50).map((s) => s.level)).toEqual([5, 4, 3, 2, 1]);
    const four = tables();
    expect(four.ept.map(2 ** 48, 0x1000, 0x1000)).toMatchObject({ kind: "p2m-error", reason: "beyond-address-width" });
  });

  it("refuses misaligned ranges, W without R, unsupported execute-only and reserved memory types", () => {
    const { ept } = tables();
    expect(ept.map(0x800, 0, 0x1000)).toMatchObject({ reason: "misaligned" });
    expect(ept.map(0, 0x800, 0x1000)).toMatchObject({ reason: "misaligned" });
    expect(ept.map(0, 0, 0x1000, { perms: EPT_W })).toMatchObject({ reason: "bad-permissions" });
    expect(ept.map(0, 0, 0x1000, { memoryType: 2 })).toMatchObject({ reason: "bad-permissions" });
    expect(ept.map(0, 2 ** 46, 0x1000)).toMatchObject({ reason: "beyond-address-width" });
    expect(ept.map(0, 0, 0x1000, { perms: EPT_X })).toMatchObject({ kind: "p2m-update" });
    const strict = tables({ caps: { executeOnly: false } });
    expect(strict.ept.map(0, 0, 0x1000, { perms: EPT_X })).toMatchObject({ reason: "bad-permissions" });
  });

  it("reports running out of frames as a value", () => {
    const { ept } = tables({ frames: 3 }); // root + 2
    expect(ept.map(0, 0, 0x1000)).toMatchObject({ kind: "p2m-error", reason: "out-of-frames" });
  });

  it("says when remapping needs an INVEPT", () => {
    const { ept } = tables();
    expect(ok(ept.map(0, 0x10_0000, 0x1000)).invalidate).toBe(false); // not present -> present
    expect(ok(ept.map(0, 0x20_0000, 0x1000)).invalidate).toBe(true); // address changed
  });
});

describe("EptP2m: unmap, protect, split, merge", () => {
  it("unmap of part of a large page splits it; unmapping everything frees the tables", () => {
    const { ept, frames } = tables();
    ok(ept.map(0, 4 * GiB, GiB));
    const before = ept.tableFrames;
    const r = ok(ept.unmap(0x20_1000, 0x1000));
    expect(r.invalidate).toBe(true);
    expect(ept.lookup(0x20_1000)).toBeUndefined();
    expect(ept.lookup(0x20_0000)).toMatchObject({ level: 1, hpa: 4 * GiB + 0x20_0000 });
    expect(ept.lookup(0x20_2000)).toMatchObject({ level: 1 });
    expect(ept.lookup(0x40_0000)).toMatchObject({ level: 2 });
    expect(ept.tableFrames).toBe(before + 2); // 1 GiB -> PD, 2 MiB -> PT
    ok(ept.unmap(0, GiB));
    expect(ept.lookup(0x40_0000)).toBeUndefined();
    expect(ept.tableFrames).toBe(before - 1); // the PD and PT are freed, and the PDPT left empty: the root remains
    expect(frames.inUse).toBe(ept.tableFrames);
  });

  it("balloon churn (give a frame back, take one somewhere new) does not grow the tables: empty tables are freed", () => {
    const { ept, frames } = tables();
    ok(ept.map(0, 4 * GiB, 64 * MiB)); // the guest's RAM, 2 MiB pages
    const base = ept.tableFrames;
    for (let k = 0; k < 2000; k++) {
      const gpa = 64 * MiB + k * 0x20_1000; // each frame in a new 2 MiB region, then a new 1 GiB one
      ok(ept.unmap((k % 16) * 0x1000, 0x1000)); // decrease_reservation inside RAM
      ok(ept.map(gpa, 8 * GiB + k * 0x1000, 0x1000)); // populate_physmap at a new GPA
      expect(ept.tableFrames).toBeLessThanOrEqual(base + 1 + 3 + 2); // RAM's split PT, one new PDPT/PD/PT path, at most two more in passing
      ok(ept.unmap(gpa, 0x1000)); // decrease it again
      ok(ept.map((k % 16) * 0x1000, 4 * GiB + (k % 16) * 0x1000, 0x1000)); // and take the RAM frame back
    }
    expect(ept.tableFrames).toBe(base + 1); // only the split 2 MiB page of RAM keeps a table
    expect(frames.inUse).toBe(ept.tableFrames);
    expect(ept.lookup(0x1000)).toMatchObject({ level: 1, hpa: 4 * GiB + 0x1000 });
  });

  it("protect changes bits 2:0 of the leaves, splitting what it partly covers", () => {
    const { ept } = tables();
    ok(ept.map(0, 4 * GiB, 4 * MiB));
    expect(ok(ept.protect(0, 2 * MiB, EPT_R | EPT_X)).invalidate).toBe(true);
    expect(ept.lookup(0x1000)).toMatchObject({ level: 2, perms: EPT_R | EPT_X });
    ok(ept.protect(2 * MiB + 0x5000, 0x1000, EPT_R));
    expect(ept.lookup(2 * MiB + 0x5000)).toMatchObject({ level: 1, perms: EPT_R });
    expect(ept.lookup(2 * MiB + 0x6000)).toMatchObject({ level: 1, perms: EPT_RWX });
    expect(ok(ept.protect(2 * MiB + 0x6000, 0x1000, EPT_RWX)).invalidate).toBe(false); // nothing changed
    expect(ok(ept.protect(2 * MiB + 0x5000, 0x1000, EPT_RWX)).invalidate).toBe(false); // 0 -> 1 needs none
    expect(ept.protect(0, 0x1000, 0)).toMatchObject({ reason: "bad-permissions" });
  });

  it("split and merge round-trip a 2 MiB page, keeping attributes and ORing A/D", () => {
    const { ept, memory } = tables();
    ok(ept.map(0, 4 * GiB, 2 * MiB, { perms: EPT_R | EPT_W, memoryType: EptMemoryType.WT }));
    ok(ept.split(0x1000, 2));
    const small = expectDefined(ept.lookup(0x1f_f000));
    expect(small).toMatchObject({ level: 1, perms: EPT_R | EPT_W, memoryType: EptMemoryType.WT, hpa: 4 * GiB + 0x1f_f000 });
    const e = read64(memory, small.entryAddress);
    memory.write64(small.entryAddress, e.lo | EPT_A | EPT_D, e.hi); // the processor wrote this page
    const tablesBefore = ept.tableFrames;
    ok(ept.merge(0x1000, 2));
    expect(ept.lookup(0x1f_f000)).toMatchObject({ level: 2, perms: EPT_R | EPT_W, memoryType: EptMemoryType.WT, accessed: true, dirty: true });
    expect(ept.tableFrames).toBe(tablesBefore - 1);
  });

  it("merge refuses non-contiguous or mixed tables; mergeRange merges bottom-up", () => {
    const { ept } = tables();
    ok(ept.map(0, 4 * GiB, GiB, { maxPageShift: 12 }));
    ok(ept.protect(0x3000, 0x1000, EPT_R));
    expect(ept.merge(0, 2)).toMatchObject({ reason: "not-mergeable" });
    expect(ept.merge(GiB, 2)).toMatchObject({ reason: "not-mergeable" }); // nothing there
    ok(ept.protect(0x3000, 0x1000, EPT_RWX));
    expect(ept.mergeRange(0, GiB)).toBe(512 + 1);
    expect(ept.lookup(0x1234)).toMatchObject({ level: 3, hpa: 4 * GiB + 0x1234 });
    expect(ept.tableFrames).toBe(2); // root and PDPT
    expect(ept.split(0x1234, 2)).toMatchObject({ reason: "not-a-large-page" });
    ok(ept.splitRange(0, GiB, 1));
    expect(ept.lookup(0x1234)).toMatchObject({ level: 1 });
  });

  it("clearDirty reports the dirty leaves and clears them", () => {
    const { ept, memory } = tables();
    ok(ept.map(0, 4 * GiB, 4 * MiB));
    ok(ept.splitRange(2 * MiB, 2 * MiB));
    for (const gpa of [0x1000, 2 * MiB + 0x3000]) {
      const m = expectDefined(ept.lookup(gpa));
      const e = read64(memory, m.entryAddress);
      memory.write64(m.entryAddress, e.lo | EPT_D, e.hi);
    }
    const seen: [number, number][] = [];
    expect(ok(ept.clearDirty(0, 4 * MiB, (g, size) => seen.push([g, size]))).invalidate).toBe(true);
    expect(seen).toEqual([
      [0, 2 * MiB],
      [2 * MiB + 0x3000, 0x1000],
    ]);
    expect(ept.lookup(0x1000)?.dirty).toBe(false);
    const again: number[] = [];
    ept.clearDirty(0, 4 * MiB, (g) => again.push(g));
    expect(again).toEqual([]);
  });
});

describe("RangeP2m", () => {
  it("keeps runs, splits and merges them", () => {
    const p2m = new RangeP2m();
    p2m.setRange(gfn(0), 1024, P2mType.Ram, mfn(0x1000));
    p2m.setRange(gfn(0x100), 16, P2mType.Mmio);
    p2m.setRange(gfn(0x400), 64, P2mType.PopulateOnDemand);
    expect(p2m.lookup(gfn(5))).toEqual({ type: "ram", mfn: 0x1005 });
    expect(p2m.lookup(gfn(0x105))).toEqual({ type: "mmio", mfn: 0 });
    expect(p2m.lookup(gfn(0x120))).toEqual({ type: "ram", mfn: 0x1120 });
    expect(p2m.lookup(gfn(0x410))).toEqual({ type: "pod", mfn: 0 });
    expect(p2m.lookup(gfn(0x500))).toEqual({ type: "absent", mfn: 0 });
    expect([...p2m.runs()].map((r) => [r.gfn, r.count, r.type])).toEqual([
      [0, 0x100, "ram"],
      [0x100, 16, "mmio"],
      [0x110, 1024 - 0x110, "ram"],
      [0x400, 64, "pod"],
    ]);
    p2m.setRange(gfn(0x100), 16, P2mType.Ram, mfn(0x1100)); // contiguous again: one run
    p2m.setRange(gfn(0x410), 1, P2mType.Ram, mfn(0x9999));
    expect([...p2m.runs()].map((r) => [r.gfn, r.count, r.type, r.mfn])).toEqual([
      [0, 1024, "ram", 0x1000],
      [0x400, 16, "pod", 0],
      [0x410, 1, "ram", 0x9999],
      [0x411, 47, "pod", 0],
    ]);
    p2m.setRange(gfn(0), 2048, P2mType.Absent);
    expect([...p2m.runs()]).toEqual([]);
  });
});
