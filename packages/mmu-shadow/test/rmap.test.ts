/**
 * The reverse map's typed-array structures (src/rmap.ts) against a plain model (Map of Sets):
 * random sequences of page creation and destruction and of entry additions and removals give
 * the same entries per frame, the same counts, and `first`/`forEach`/`forEachEntry` agree.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { FrameIndex, ReverseMap } from "../src/rmap.js";

type Op =
  | { kind: "addPage"; page: number }
  | { kind: "removePage"; page: number }
  | { kind: "set"; page: number; index: number; mfn: number }
  | { kind: "clear"; page: number; index: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("addPage" as const), page: fc.integer({ min: 0, max: 40 }) }),
  fc.record({ kind: fc.constant("removePage" as const), page: fc.integer({ min: 0, max: 40 }) }),
  // Frames from a small set (long lists) and from far above 2^32 (the hash's high half).
  fc.record({ kind: fc.constant("set" as const), page: fc.integer({ min: 0, max: 40 }), index: fc.integer({ min: 0, max: 511 }), mfn: fc.oneof(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 2 ** 33, max: 2 ** 33 + 5 })) }),
  fc.record({ kind: fc.constant("clear" as const), page: fc.integer({ min: 0, max: 40 }), index: fc.integer({ min: 0, max: 511 }) }),
);

/** A shadow page's machine frame for page number p (sparse, so slots and frames differ). */
const smfn = (p: number) => 0x10_0000 + p * 37;

describe("ReverseMap (fast-check against a Map of Sets)", () => {
  it("keeps the entries of every frame as the model does", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 400 }), (ops) => {
        const r = new ReverseMap();
        const pages = new Set<number>();
        const entry = new Map<number, number>(); // shadow entry address -> mfn
        const model = new Map<number, Set<number>>();
        const drop = (at: number) => {
          const m = entry.get(at);
          if (m === undefined) return;
          r.remove(at, m);
          entry.delete(at);
          const s = model.get(m)!;
          s.delete(at);
          if (s.size === 0) model.delete(m);
        };
        for (const o of ops) {
          if (o.kind === "addPage") {
            if (pages.has(o.page)) continue;
            pages.add(o.page);
            r.addPage(smfn(o.page));
          } else if (o.kind === "removePage") {
            if (!pages.has(o.page)) continue;
            for (let i = 0; i < 512; i++) drop(smfn(o.page) * 4096 + i * 8);
            r.removePage(smfn(o.page));
            pages.delete(o.page);
          } else {
            if (!pages.has(o.page)) continue;
            const at = smfn(o.page) * 4096 + o.index * 8;
            drop(at);
            if (o.kind === "set") {
              r.add(at, o.mfn);
              entry.set(at, o.mfn);
              let s = model.get(o.mfn);
              if (s === undefined) model.set(o.mfn, (s = new Set()));
              s.add(at);
            }
          }
        }
        expect(r.size).toBe(entry.size);
        expect(r.frames).toBe(model.size);
        for (const [m, s] of model) {
          const got: number[] = [];
          r.forEach(m, (a) => got.push(a));
          expect(new Set(got)).toEqual(s);
          expect(got.length).toBe(s.size);
          expect(s.has(r.first(m))).toBe(true);
        }
        expect(r.first(123_456)).toBe(-1);
        const all: number[] = [];
        r.forEachEntry((a) => all.push(a));
        expect(new Set(all)).toEqual(new Set(entry.keys()));
      }),
      { numRuns: 200 },
    );
  });

  it("refuses a page freed with entries in it and an entry added twice (vtlab bugs, not guest errors)", () => {
    const r = new ReverseMap();
    r.addPage(5);
    r.add(5 * 4096 + 8, 9);
    expect(() => r.add(5 * 4096 + 8, 9)).toThrow(/twice/);
    expect(() => r.removePage(5)).toThrow(/still in the reverse map/);
    r.remove(5 * 4096 + 8, 9);
    r.removePage(5);
    expect(() => r.add(5 * 4096, 1)).toThrow(/not in a shadow page/);
  });
});

describe("FrameIndex (fast-check against a Map)", () => {
  it("gets, sets and deletes as a Map does, through growth and backward-shift deletion", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 2 ** 52 })), fc.integer({ min: 0, max: 2 ** 31 - 1 })), { maxLength: 600 }), (ops) => {
        const f = new FrameIndex();
        const m = new Map<number, number>();
        for (const [del, k, v] of ops) {
          if (del) {
            f.delete(k);
            m.delete(k);
          } else {
            f.set(k, v);
            m.set(k, v);
          }
        }
        expect(f.size).toBe(m.size);
        for (const [k, v] of m) expect(f.get(k)).toBe(v);
        for (const [, k] of ops) if (!m.has(k)) expect(f.get(k)).toBe(-1);
        const seen = new Map<number, number>();
        f.forEach((k, v) => seen.set(k, v));
        expect(seen).toEqual(m);
      }),
      { numRuns: 200 },
    );
  });
});
