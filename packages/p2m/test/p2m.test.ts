import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { MachineMemory, gfn, mfn, type Gfn, type Mfn } from "@vtlab/arch";
import { P2mType, RangeP2m, SimpleFrameAllocator, p2mHasFrame, type P2mType as P2mTypeT } from "../src/index.js";

const TYPES: P2mTypeT[] = [P2mType.Ram, P2mType.GrantMapRw, P2mType.GrantMapRo, P2mType.Mmio, P2mType.PopulateOnDemand, P2mType.Absent];

describe("RangeP2m", () => {
  it("agrees with a per-frame model after any sequence of setRange (law: lookup = last write wins)", () => {
    const op = fc.record({ gfn: fc.nat(300), count: fc.integer({ min: 1, max: 64 }), type: fc.constantFrom(...TYPES), mfn: fc.nat(10_000) });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const p2m = new RangeP2m();
        const model = new Map<number, { type: P2mTypeT; mfn: number }>();
        for (const o of ops) {
          p2m.setRange(gfn(o.gfn), o.count, o.type, mfn(o.mfn));
          for (let k = 0; k < o.count; k++) model.set(o.gfn + k, { type: o.type, mfn: p2mHasFrame(o.type) ? o.mfn + k : 0 });
        }
        for (let g = 0; g < 400; g++) {
          const want = model.get(g) ?? { type: P2mType.Absent, mfn: 0 };
          const got = p2m.lookup(g as Gfn);
          expect(got.type).toBe(want.type);
          expect(got.mfn).toBe(want.mfn);
        }
        // runs() covers exactly the frames that are not Absent, in ascending order.
        let last = -1;
        let covered = 0;
        for (const r of p2m.runs()) {
          expect(r.gfn).toBeGreaterThan(last);
          last = r.gfn + r.count - 1;
          covered += r.count;
        }
        expect(covered).toBe([...model.values()].filter((e) => e.type !== P2mType.Absent).length);
      }),
      { numRuns: 200, seed: 14 },
    );
  });

  it("tells every change listener once per setRange, with the frame only for types that have one, until removed", () => {
    const p2m = new RangeP2m();
    const seen: [number, number, string, number][] = [];
    const off = p2m.onChange((g, n, t, m) => seen.push([g, n, t, m]));
    p2m.setRange(gfn(16), 4, P2mType.Ram, mfn(100));
    p2m.setRange(gfn(17), 1, P2mType.Mmio, mfn(555) as Mfn);
    p2m.setRange(gfn(18), 1, P2mType.GrantMapRo, mfn(7));
    off();
    p2m.setRange(gfn(0), 1, P2mType.Ram, mfn(1));
    expect(seen).toEqual([
      [16, 4, "ram", 100],
      [17, 1, "mmio", 0],
      [18, 1, "grant_map_ro", 7],
    ]);
  });

  it("refuses a bad range as a vtlab bug (callers validate guest input first)", () => {
    const p2m = new RangeP2m();
    expect(() => p2m.setRange(gfn(0), 0, P2mType.Ram, mfn(1))).toThrow(/vtlab bug/);
    expect(() => p2m.setRange(-1 as Gfn, 1, P2mType.Ram, mfn(1))).toThrow(/vtlab bug/);
  });
});

describe("SimpleFrameAllocator", () => {
  it("hands out a pool of ranges from anywhere, in order, zeroed, reusing freed frames first", () => {
    const memory = new MachineMemory(64 * 1024 * 1024);
    memory.write32(0x2000 * 4096 + 8, 0xdead);
    const frames = new SimpleFrameAllocator(memory, [
      { first: mfn(0x3000), count: 2 },
      { first: mfn(0x10), count: 0 },
      { first: mfn(0x2000), count: 1 },
    ]);
    const got = [frames.allocate(), frames.allocate(), frames.allocate()];
    expect(got).toEqual([0x3000, 0x3001, 0x2000]);
    expect(memory.read32(0x2000 * 4096 + 8)).toBe(0); // zeroed when handed out
    expect(frames.allocate()).toBeUndefined();
    expect(frames.inUse).toBe(3);
    frames.free(mfn(0x3001));
    expect(frames.inUse).toBe(2);
    expect(frames.allocate()).toBe(0x3001);
    // The one-range form is the same pool of one range.
    const one = new SimpleFrameAllocator(memory, mfn(5), 2);
    expect([one.allocate(), one.allocate(), one.allocate()]).toEqual([5, 6, undefined]);
  });
});
