/**
 * Property tests: a translation through the unit's cached path (context cache, IOTLB) equals a
 * reference: a plain second-level walk (`walkSecondLevel`, itself checked against the domain's
 * software lookup) composed with a simple reference model of the IOTLB (an array of sets, each a
 * list in LRU order, with the unit's documented set index), for random mappings, unmaps with and
 * without invalidation, every invalidation granularity, context-cache invalidations and reads and
 * writes. The statistics (translations, IOTLB and context-cache hits and misses, walk references,
 * faults, evictions) must match the model exactly after every step.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { bdf, gfn, mfn, type Bdf } from "@vtlab/arch";
import {
  ContextCache,
  ContextInvalidation,
  FaultReason,
  IommuDomain,
  IotlbInvalidation,
  MapP2m,
  newSlWalk,
  walkSecondLevel,
  type InvalidationRequest,
} from "@vtlab/iommu";
import { expectOk, machine, type Machine } from "./machine.js";

/** Guest pages the tests touch: two 2 MiB regions (512 pages each). */
const PAGES = 1024;
const FRAME_BASE = 0x10_0000;
const DEVICES: readonly Bdf[] = [bdf(0, 3, 0), bdf(0, 4, 0), bdf(1, 0, 2)];
/** Device i belongs to domain DOMAIN_OF[i]. */
const DOMAIN_OF = [1, 2, 1] as const;
const LEVEL_SIZE = [0, 0x1000, 0x20_0000, 0x4000_0000];
/** CAP_REG.MAMV of the unit: larger masks are performed domain-selectively. */
const MAMV = 18;

/** The IOTLB set index the unit documents (VtdUnit's Iotlb: page number folded with domain and size). */
function setIndex(domainId: number, tag: number, level: number, sets: number): number {
  const t = tag % 2 ** 32;
  return ((t ^ (t >>> 7) ^ Math.imul(domainId, 0x9e37) ^ (level * 0x55)) & (sets - 1)) >>> 0;
}

interface ModelEntry {
  domainId: number;
  level: number;
  tag: number;
  frame: number;
  perm: number;
}

/** The reference IOTLB: per set, a list with the least recently used entry first. */
class ModelIotlb {
  readonly sets: ModelEntry[][];
  hits = 0;
  misses = 0;
  evictions = 0;

  constructor(
    readonly setCount: number,
    readonly ways: number,
  ) {
    this.sets = Array.from({ length: setCount }, () => []);
  }

  get size(): number {
    return this.sets.reduce((n, s) => n + s.length, 0);
  }

  lookup(domainId: number, iova: number): ModelEntry | undefined {
    for (let level = 1; level <= 3; level++) {
      const tag = Math.floor(iova / LEVEL_SIZE[level]!);
      const set = this.sets[setIndex(domainId, tag, level, this.setCount)]!;
      const i = set.findIndex((e) => e.domainId === domainId && e.level === level && e.tag === tag);
      if (i >= 0) {
        const [e] = set.splice(i, 1);
        set.push(e!);
        this.hits++;
        return e;
      }
    }
    this.misses++;
    return undefined;
  }

  remove(e: ModelEntry): void {
    for (const set of this.sets) {
      const i = set.indexOf(e);
      if (i >= 0) set.splice(i, 1);
    }
  }

  insert(domainId: number, iova: number, level: number, frame: number, perm: number): void {
    const tag = Math.floor(iova / LEVEL_SIZE[level]!);
    const set = this.sets[setIndex(domainId, tag, level, this.setCount)]!;
    if (set.length >= this.ways) {
      set.shift();
      this.evictions++;
    }
    set.push({ domainId, level, tag, frame, perm });
  }

  invalidate(keep: (e: ModelEntry) => boolean): void {
    for (const set of this.sets) {
      const kept = set.filter(keep);
      set.length = 0;
      set.push(...kept);
    }
  }
}

type Op =
  | { t: "dma"; dev: number; page: number; offset: number; write: boolean }
  | { t: "map"; dom: number; page: number; frame: number; writable: boolean }
  | { t: "unmap"; dom: number; page: number; invalidate: boolean }
  | { t: "iotlb"; kind: "global" | "domain" | "page"; dom: number; page: number; mask: number; leafOnly: boolean }
  | { t: "context"; kind: "global" | "domain" | "device"; dom: number; dev: number };

/** Pages: mostly a few hot ones in each region (hits, evictions in small sets), sometimes any. */
const page = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 11 }) },
  { weight: 2, arbitrary: fc.integer({ min: 512, max: 523 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: PAGES - 1 }) },
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ t: fc.constant("dma" as const), dev: fc.integer({ min: 0, max: 2 }), page, offset: fc.integer({ min: 0, max: 0xfff }), write: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("map" as const), dom: fc.integer({ min: 1, max: 2 }), page, frame: fc.integer({ min: 0, max: 0xfff }), writable: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("unmap" as const), dom: fc.integer({ min: 1, max: 2 }), page, invalidate: fc.boolean() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("iotlb" as const),
      kind: fc.constantFrom("global" as const, "domain" as const, "page" as const),
      dom: fc.integer({ min: 1, max: 2 }),
      page,
      mask: fc.constantFrom(0, 1, 3, 9, 19),
      leafOnly: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("context" as const),
      kind: fc.constantFrom("global" as const, "domain" as const, "device" as const),
      dom: fc.integer({ min: 1, max: 2 }),
      dev: fc.integer({ min: 0, max: 2 }),
    }),
  },
);

/** Initial p2m of a domain: per 2 MiB region, nothing, a whole contiguous run (a super page) or a sparse set. */
const regionArb = fc.oneof(fc.constant<"empty" | "full">("empty"), fc.constant<"empty" | "full">("full"), fc.uniqueArray(fc.oneof(fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 511 })), { maxLength: 24 }));
const geometryArb = fc.constantFrom<readonly number[]>([2, 2], [4, 2], [1, 4], [16, 4]);

interface World {
  m: Machine;
  domains: Map<number, IommuDomain>;
  model: ModelIotlb;
  contexts: Set<number>;
  stats: { translations: number; contextCacheHits: number; contextCacheMisses: number; walkReferences: number; faults: number; iotlbInvalidations: number };
}

function build(geometry: readonly number[], regions: Record<number, (typeof regionArb extends fc.Arbitrary<infer R> ? R : never)[]>): World {
  const [sets, ways] = geometry as [number, number];
  const m = machine({ iotlbSets: sets, iotlbWays: ways });
  const domains = new Map<number, IommuDomain>();
  for (const did of [1, 2]) {
    const p2m = new MapP2m();
    const base = FRAME_BASE + did * 0x1_0000;
    (regions[did] ?? []).forEach((r, region) => {
      const first = region * 512;
      if (r === "full") for (let i = 0; i < 512; i++) p2m.set(gfn(first + i), mfn(base + first + i), did === 1);
      else if (r !== "empty") for (const i of r) p2m.set(gfn(first + i), mfn(base + first + i), (i & 1) === 0);
    });
    const d = IommuDomain.fromP2m(m.memory, m.frames, { domainId: did, levels: did === 1 ? 4 : 3, p2m, largePages: { "2M": true, "1G": true } });
    if (!(d instanceof IommuDomain)) throw new Error(d.message);
    domains.set(did, d);
  }
  DEVICES.forEach((dev, i) => {
    const actions = domains.get(DOMAIN_OF[i]!)!.attach(m.root, dev);
    if (!Array.isArray(actions)) throw new Error(actions.message);
    expectOk(m.driver.invalidateAll(actions));
  });
  // Start from empty caches and counters that the model mirrors from here.
  const s = m.unit.stats;
  return {
    m,
    domains,
    model: new ModelIotlb(sets, ways),
    contexts: new Set(),
    stats: {
      translations: s.translations,
      contextCacheHits: s.contextCacheHits,
      contextCacheMisses: s.contextCacheMisses,
      walkReferences: s.walkReferences,
      faults: s.faults,
      iotlbInvalidations: s.iotlbInvalidations,
    },
  };
}

const scratch = { lo: 0, hi: 0 };
const walkOut = newSlWalk();

/** The reference walk of a domain's tables; also checked against the domain's own software lookup. */
function referenceWalk(w: World, d: IommuDomain, iova: number, write: boolean): number {
  const reason = walkSecondLevel(w.m.memory, d.root, d.levels, iova, write, w.m.unit.features, walkOut, scratch);
  const soft = d.lookup(gfn(Math.floor(iova / 0x1000)));
  if (reason === 0) {
    expect(soft).toBeDefined();
    const size = LEVEL_SIZE[walkOut.level]!;
    expect(soft!.mfn * 0x1000).toBe(walkOut.frameBase + Math.floor((iova % size) / 0x1000) * 0x1000);
    expect(soft!.writable).toBe((walkOut.perm & 2) !== 0);
  } else {
    expect(soft).toBeUndefined();
  }
  return reason;
}

/** What the unit must answer for a translation, updating the model as the hardware would. */
function modelTranslate(w: World, devIndex: number, iova: number, write: boolean): number {
  const sid = DEVICES[devIndex]! as number;
  const did = DOMAIN_OF[devIndex]!;
  const d = w.domains.get(did)!;
  w.stats.translations++;
  if (w.contexts.has(sid)) w.stats.contextCacheHits++;
  else {
    w.stats.contextCacheMisses++;
    w.stats.walkReferences += 2; // root entry and context entry
    w.contexts.add(sid);
  }
  const need = write ? 2 : 1;
  const e = w.model.lookup(did, iova);
  if (e !== undefined) {
    if ((e.perm & need) !== 0) return e.frame + (iova - e.tag * LEVEL_SIZE[e.level]!);
    w.model.remove(e);
  }
  const reason = referenceWalk(w, d, iova, write);
  w.stats.walkReferences += walkOut.references;
  if (reason !== 0) {
    w.stats.faults++;
    return -reason;
  }
  w.model.insert(did, iova, walkOut.level, walkOut.frameBase, walkOut.perm);
  if ((walkOut.perm & need) === 0) {
    w.stats.faults++;
    return write ? -FaultReason.WriteNotPermitted : -FaultReason.ReadNotPermitted;
  }
  return walkOut.frameBase + (iova % LEVEL_SIZE[walkOut.level]!);
}

function iotlbInvalidate(w: World, r: InvalidationRequest): void {
  if (r.kind !== "iotlb") throw new Error("not an IOTLB request");
  expectOk(w.m.driver.invalidate(r));
  w.stats.iotlbInvalidations++;
  const did = r.domainId;
  if (r.granularity === IotlbInvalidation.Global) w.model.invalidate(() => false);
  else if (r.granularity === IotlbInvalidation.Domain || r.addressMask > MAMV) w.model.invalidate((e) => e.domainId !== did);
  else {
    const size = 2 ** (12 + r.addressMask);
    const start = r.address - (r.address % size);
    w.model.invalidate((e) => {
      const pageStart = e.tag * LEVEL_SIZE[e.level]!;
      return e.domainId !== did || !(pageStart < start + size && start < pageStart + LEVEL_SIZE[e.level]!);
    });
  }
}

function apply(w: World, op: Op, strict: boolean): void {
  switch (op.t) {
    case "dma": {
      const iova = op.page * 0x1000 + op.offset;
      const expected = modelTranslate(w, op.dev, iova, op.write);
      expect(w.m.unit.translate(DEVICES[op.dev]!, iova, op.write)).toBe(expected);
      if (strict) {
        // Software did every invalidation: the cached answer is the tables' answer.
        const d = w.domains.get(DOMAIN_OF[op.dev]!)!;
        const reason = referenceWalk(w, d, iova, op.write);
        const need = op.write ? 2 : 1;
        const fromTables = reason !== 0 ? -reason : (walkOut.perm & need) === 0 ? -(op.write ? FaultReason.WriteNotPermitted : FaultReason.ReadNotPermitted) : walkOut.frameBase + (iova % LEVEL_SIZE[walkOut.level]!);
        expect(expected).toBe(fromTables);
      }
      break;
    }
    case "map": {
      const d = w.domains.get(op.dom)!;
      const wasMapped = d.lookup(gfn(op.page)) !== undefined;
      expectOk(d.map(gfn(op.page), mfn(FRAME_BASE + 0x4_0000 + op.frame), op.writable));
      // Replacing a present translation needs an invalidation (CM = 0: a new one does not).
      if (strict && wasMapped) iotlbInvalidate(w, { kind: "iotlb", granularity: IotlbInvalidation.Page, domainId: op.dom, address: op.page * 0x1000, addressMask: 0, leafOnly: false });
      break;
    }
    case "unmap": {
      const r = w.domains.get(op.dom)!.unmap(gfn(op.page));
      if (r !== undefined && r.kind === "iommu-domain-error") throw new Error(r.message);
      if (r !== undefined && (strict || op.invalidate)) iotlbInvalidate(w, r);
      break;
    }
    case "iotlb":
      iotlbInvalidate(w, {
        kind: "iotlb",
        granularity: op.kind === "global" ? IotlbInvalidation.Global : op.kind === "domain" ? IotlbInvalidation.Domain : IotlbInvalidation.Page,
        domainId: op.dom,
        address: op.page * 0x1000,
        addressMask: op.mask,
        leafOnly: op.leafOnly,
      });
      break;
    case "context": {
      const granularity = op.kind === "global" ? ContextInvalidation.Global : op.kind === "domain" ? ContextInvalidation.Domain : ContextInvalidation.Device;
      expectOk(w.m.driver.invalidate({ kind: "context", granularity, domainId: op.dom, sourceId: DEVICES[op.dev]! as number, functionMask: 0 }));
      DEVICES.forEach((dev, i) => {
        const hit = op.kind === "global" || (op.kind === "domain" && DOMAIN_OF[i] === op.dom) || (op.kind === "device" && i === op.dev);
        if (hit) w.contexts.delete(dev as number);
      });
      break;
    }
  }
  const s = w.m.unit.stats;
  expect({
    translations: s.translations,
    iotlbHits: s.iotlbHits,
    iotlbMisses: s.iotlbMisses,
    contextCacheHits: s.contextCacheHits,
    contextCacheMisses: s.contextCacheMisses,
    walkReferences: s.walkReferences,
    faults: s.faults,
    iotlbInvalidations: s.iotlbInvalidations,
    evictions: w.m.unit.iotlb.evictions,
    iotlbSize: w.m.unit.iotlb.size,
    contextCacheSize: w.m.unit.contextCache.size,
  }).toEqual({
    translations: w.stats.translations,
    iotlbHits: w.model.hits,
    iotlbMisses: w.model.misses,
    contextCacheHits: w.stats.contextCacheHits,
    contextCacheMisses: w.stats.contextCacheMisses,
    walkReferences: w.stats.walkReferences,
    faults: w.stats.faults,
    iotlbInvalidations: w.stats.iotlbInvalidations,
    evictions: w.model.evictions,
    iotlbSize: w.model.size,
    contextCacheSize: w.contexts.size,
  });
}

const worldArb = fc.record({
  geometry: geometryArb,
  regions: fc.record({ 1: fc.tuple(regionArb, regionArb), 2: fc.tuple(regionArb, regionArb) }),
  ops: fc.array(opArb, { minLength: 40, maxLength: 150, size: "max" }),
});

describe("IOTLB fast path against a reference walk and a reference IOTLB model", () => {
  it("with every invalidation done, a translation equals the walk of the tables; statistics match the model", () => {
    fc.assert(
      fc.property(worldArb, ({ geometry, regions, ops }) => {
        const w = build(geometry, regions);
        for (const op of ops) apply(w, op, true);
      }),
      { numRuns: 60, seed: 0x1d7b },
    );
  });

  it("with invalidations skipped, stale entries and statistics follow the reference IOTLB model exactly", () => {
    fc.assert(
      fc.property(worldArb, ({ geometry, regions, ops }) => {
        const w = build(geometry, regions);
        for (const op of ops) apply(w, op, false);
      }),
      { numRuns: 60, seed: 0x5eed },
    );
  });

  it("a hot loop of hits counts one hit per translation and keeps LRU order (the cyclic ring that outgrows a set)", () => {
    const w = build([1, 4], { 1: ["full", "empty"], 2: ["empty", "empty"] });
    // Domain 1 maps region 0 with one 2 MiB page: every page of it hits one entry.
    for (let k = 0; k < 600; k++) apply(w, { t: "dma", dev: 0, page: k % 512, offset: 0x10, write: false }, true);
    expect(w.m.unit.stats.iotlbMisses).toBe(1);
    // Five 4 KiB pages cycling through a 4-way set: LRU evicts on every access.
    const w2 = build([1, 4], { 1: [[0, 1, 2, 3, 4], "empty"], 2: ["empty", "empty"] });
    for (let k = 0; k < 50; k++) apply(w2, { t: "dma", dev: 0, page: k % 5, offset: 0, write: false }, true);
    expect(w2.m.unit.stats.iotlbHits).toBe(0);
    // LRU, not FIFO: touching page 0 again makes page 1 the victim of page 4.
    const w3 = build([1, 4], { 1: [[0, 1, 2, 3, 4], "empty"], 2: ["empty", "empty"] });
    for (const p of [0, 1, 2, 3, 0, 4, 0, 2, 3]) apply(w3, { t: "dma", dev: 0, page: p, offset: 0, write: false }, true);
    expect(w3.m.unit.stats.iotlbHits).toBe(4);
    expect(w3.m.unit.iotlb.evictions).toBe(1);
  });
});

describe("context cache: the dense source-id index", () => {
  const entry = { domainId: 7, translationType: 0, slptptr: 0x1000, levels: 4, addressBits: 48, faultProcessingDisable: false };

  it("a source id outside 16 bits (or not an integer) never aliases a 16-bit one", () => {
    const c = new ContextCache();
    c.insert(0x1_0003, entry);
    expect(c.lookup(0x0003)).toBeUndefined();
    expect(c.lookup(0x1_0003)).toBe(entry);
    expect(c.lookup(3.5)).toBeUndefined();
    expect(c.lookup(-0x1_0000 + 3)).toBeUndefined();
    expect([c.hits, c.misses, c.size]).toEqual([1, 3, 1]);
  });

  it("every invalidation granularity clears the index and the entries together", () => {
    const c = new ContextCache();
    for (const sid of [0x0300, 0x0301, 0x0305, 0x0400]) c.insert(sid, { ...entry, domainId: sid === 0x0400 ? 8 : 7 });
    expect(c.invalidateDevice(0x0301, 2)).toBe(2); // FM = 2 ignores function bits 2:1: 0x301 and 0x305
    expect(c.lookup(0x0301)).toBeUndefined();
    expect(c.lookup(0x0305)).toBeUndefined();
    expect(c.lookup(0x0300)).toBeDefined();
    expect(c.invalidateDomain(7)).toBe(1);
    expect(c.lookup(0x0300)).toBeUndefined();
    expect(c.invalidateAll()).toBe(1);
    expect(c.lookup(0x0400)).toBeUndefined();
    expect(c.size).toBe(0);
  });
});
