// The 2D walk view's trace (src/walk.ts): a cold walk is 24 references in Bhargava's order, its
// count agrees with mmu-ept's coldWalkReferences(), its translation with the walk machine's own
// walker, and hostile addresses are refused with a message or answered with a fault.
import { Access } from "@vtlab/arch";
import { coldWalkReferences } from "@vtlab/mmu-ept";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { WALK_WORKING_SET, parseGva, traceColdWalk, walkMachine } from "../src/walk.js";

describe("traceColdWalk", () => {
  it("draws the 24 references of a cold 4-level over 4-level walk, in order", () => {
    const base = walkMachine().base;
    const t = traceColdWalk(base + 0x234);
    expect(t.kind).toBe("translation");
    expect(t.references).toHaveLength(24);
    expect(t.references).toHaveLength(coldWalkReferences());
    const pattern = t.references.map((r) => (r.dimension === "guest" ? "G" : "E")).join("");
    expect(pattern).toBe("EEEEG".repeat(4) + "EEEE");
    expect(t.references.map((r) => r.n)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    expect(t.references.filter((r) => r.dimension === "guest").map((r) => r.guestLevel)).toEqual([4, 3, 2, 1]);
  });

  it("translates as the walk machine's walker does, for any address of the working set", () => {
    const m = walkMachine();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: WALK_WORKING_SET - 1 }), (off) => {
        const t = traceColdWalk(m.base + off);
        const w = m.walker.walk(m.base + off, Access.Read);
        expect(t.kind).toBe("translation");
        expect(w.kind).toBe("translation");
        if (t.kind === "translation" && w.kind === "translation") {
          expect(t.hpa).toBe(w.hpa);
          expect(t.gpa).toBe(w.gpa);
        }
        expect(t.references).toHaveLength(24);
      }),
      { numRuns: 50 },
    );
  });

  it("answers an unmapped address with a guest page fault, part-way", () => {
    const t = traceColdWalk(0x1000);
    expect(t.kind).toBe("fault");
    expect(t.references.length).toBeLessThan(24);
  });
});

describe("parseGva", () => {
  it("takes hex with or without 0x and underscores", () => {
    expect(parseGva("0x7f80_0000_0234")).toBe(0x7f80_0000_0234);
    expect(parseGva(" 1000 ")).toBe(0x1000);
  });
  it("refuses what is not a lower-half canonical address", () => {
    for (const bad of ["", "0x", "zz", "-1", "0x1_0000_0000_0000", "0x800000000000", "0x1g", "0x12345678901234567890", "<script>"]) expect(typeof parseGva(bad)).toBe("string");
  });
  it("never throws and gives a number in range or a message (any string)", () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        const r = parseGva(s);
        if (typeof r === "number") expect(r >= 0 && r < 2 ** 47).toBe(true);
      }),
    );
  });
});
