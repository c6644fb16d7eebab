import { describe, expect, it } from "vitest";
import { WALK_COST_CONFIGS, formatWalkCostTable, runWalkCost, type WalkCostRow } from "@vtlab/mmu-ept";

/** A smaller run than the README's (same shape): 16k random accesses, a 256-byte sequential stride. */
const rows = runWalkCost({ randomAccesses: 1 << 14, sequentialStride: 256 });
const row = (name: string): WalkCostRow => {
  const r = rows.find((x) => x.config === name);
  if (r === undefined) throw new Error(name);
  return r;
};

describe("walk cost with and without the caches (the shape of Bhargava et al., ASPLOS 2008)", () => {
  it("one row per configuration, deterministic", () => {
    expect(rows.map((r) => r.config)).toEqual(WALK_COST_CONFIGS.map((c) => c.name));
    expect(runWalkCost({ randomAccesses: 1 << 14, sequentialStride: 256, configs: [WALK_COST_CONFIGS[6]!] })).toEqual([row("all")]);
  });

  it("no caches: every access is a 24-reference walk", () => {
    for (const w of [row("none").random, row("none").sequential]) {
      expect(w.walks).toBe(w.accesses);
      expect(w.references).toBe(24 * w.accesses);
    }
  });

  it("the TLB removes walks (sequential: one per 4 KiB page) but not their cost", () => {
    const t = row("TLB");
    expect(t.random.referencesPerWalk).toBe(24);
    expect(t.sequential.walks).toBe(t.sequential.accesses / 16); // 16 accesses per page at a 256-byte stride
    expect(t.sequential.referencesPerWalk).toBe(24);
  });

  it("each cache lowers the references per walk; the guest PSC most, both PSCs together to about 3", () => {
    const perWalk = (name: string) => row(name).random.referencesPerWalk;
    expect(perWalk("TLB + guest PSC")).toBeCloseTo(5, 1); // 1 guest PTE + a 4-reference final EPT walk
    expect(perWalk("TLB + EPT PSC")).toBeLessThan(12);
    expect(perWalk("TLB + nested TLB")).toBeLessThan(12);
    expect(perWalk("TLB + both PSCs")).toBeLessThan(perWalk("TLB + guest PSC"));
    expect(perWalk("TLB + both PSCs")).toBeCloseTo(3, 0);
    expect(perWalk("all")).toBeLessThanOrEqual(perWalk("TLB + both PSCs"));
    for (const name of ["TLB + guest PSC", "TLB + EPT PSC", "TLB + nested TLB", "TLB + both PSCs", "all"]) {
      expect(row(name).sequential.referencesPerWalk).toBeLessThan(24);
    }
  });

  it("formats as a Markdown table", () => {
    const t = formatWalkCostTable(rows).split("\n");
    expect(t).toHaveLength(2 + rows.length);
    expect(t[2]).toMatch(/^\| none \| 1\.00 \| 24\.00 \| 24\.00 \| 1\.00 \| 24\.00 \| 24\.00 \|$/);
  });
});
