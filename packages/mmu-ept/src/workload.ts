/**
 * What a two-dimensional walk costs, and how much the caches save: the measurement of Bhargava
 * et al., "Accelerating Two-Dimensional Page Walks for Virtualized Systems" (ASPLOS 2008), made
 * on this model. A guest maps a working set (64 MiB by default) with its own 4-level tables,
 * scattered over 4 GiB of guest-physical memory that EPT maps; random and sequential reads are
 * translated with different caches switched on, and the memory references per access and per
 * walk (per TLB miss) are counted. Counts are exact and deterministic (seeded xorshift).
 */
import { Access, MachineMemory, PAGE_SIZE, pagingMode, type Mfn } from "@vtlab/arch";
import { ALL_CACHES, NO_CACHES, type CacheSwitches, type NestedCacheSizes } from "./caches.js";
import { SimpleFrameAllocator } from "@vtlab/p2m";
import { EptGuestMemory, GuestPageTables } from "./guest-tables.js";
import { EptP2m, isP2mError } from "./p2m.js";
import { NestedStatus, NestedWalker } from "./walker.js";

export interface WalkCostConfig {
  readonly name: string;
  readonly switches: CacheSwitches;
}

/** The rows of the table: no caches, the TLB alone, the TLB with each other cache, everything. */
export const WALK_COST_CONFIGS: readonly WalkCostConfig[] = Object.freeze([
  { name: "none", switches: NO_CACHES },
  { name: "TLB", switches: { ...NO_CACHES, tlb: true } },
  { name: "TLB + guest PSC", switches: { ...NO_CACHES, tlb: true, guestPsc: true } },
  { name: "TLB + EPT PSC", switches: { ...NO_CACHES, tlb: true, eptPsc: true } },
  { name: "TLB + nested TLB", switches: { ...NO_CACHES, tlb: true, nestedTlb: true } },
  { name: "TLB + both PSCs", switches: { ...NO_CACHES, tlb: true, guestPsc: true, eptPsc: true } },
  { name: "all", switches: ALL_CACHES },
]);

export interface WalkCostOptions {
  /** Bytes of guest-virtual memory the accesses cover (default 64 MiB). */
  readonly workingSet?: number;
  /** Random accesses measured (after as many for warm-up; default 131072). */
  readonly randomAccesses?: number;
  /** Stride of the sequential sweep in bytes (default 64: one cache line). */
  readonly sequentialStride?: number;
  /** Guest-physical memory the guest's pages and tables are scattered over (default 4 GiB). */
  readonly guestPhysicalSize?: number;
  readonly guestLevels?: 4 | 5;
  readonly eptLevels?: 4 | 5;
  /** Largest EPT page (default 12: 4 KiB pages only). */
  readonly eptPageShift?: 12 | 21 | 30;
  /** Guest page size (default 12). */
  readonly guestPageShift?: 12 | 21;
  readonly sizes?: Partial<NestedCacheSizes>;
  readonly configs?: readonly WalkCostConfig[];
  readonly seed?: number;
  /** EPTP bit 6 (default true). */
  readonly accessedDirty?: boolean;
}

export interface WalkCost {
  readonly accesses: number;
  /** TLB misses: two-dimensional walks. */
  readonly walks: number;
  /** Memory references (guest and EPT paging-structure entries read). */
  readonly references: number;
  readonly referencesPerAccess: number;
  readonly referencesPerWalk: number;
}

export interface WalkCostRow {
  readonly config: string;
  readonly random: WalkCost;
  readonly sequential: WalkCost;
}

export interface WalkCostMachine {
  readonly memory: MachineMemory;
  readonly ept: EptP2m;
  readonly tables: GuestPageTables;
  readonly walker: NestedWalker;
  /** First guest-virtual address of the working set. */
  readonly base: number;
  readonly workingSet: number;
}

const GiB = 1024 ** 3;
/** Host-physical = guest-physical + this. */
const HOST_OFFSET = 8 * GiB;
/** The linear address of the working set (512 GiB aligned). */
const WORKING_SET_BASE = 0x7f80_0000_0000;

/** xorshift32: deterministic, no Math.random inside the simulation. */
function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 0x9e37_79b9;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

/** Build the guest (its tables and working set scattered over guest-physical memory), EPT over it, and a walker. */
export function buildWalkCostMachine(options: WalkCostOptions = {}): WalkCostMachine {
  const workingSet = options.workingSet ?? 64 * 1024 ** 2;
  const gpSize = options.guestPhysicalSize ?? 4 * GiB;
  const guestPageShift = options.guestPageShift ?? 12;
  const memory = new MachineMemory(64 * GiB);
  const frames = new SimpleFrameAllocator(memory, ((32 * GiB) / PAGE_SIZE) as Mfn, 1 << 20);
  const ept = EptP2m.create({ memory, frames, levels: options.eptLevels ?? 4 });
  if (isP2mError(ept)) throw new Error(`vtlab bug: ${ept.message}`);
  const mapped = ept.map(0, HOST_OFFSET, gpSize, { maxPageShift: options.eptPageShift ?? 12 });
  if (isP2mError(mapped)) throw new Error(`vtlab bug: ${mapped.message}`);
  const guestMemory = new EptGuestMemory(memory, ept);

  // Guest-physical pages at random: 4 KiB ones from the lower half, 2 MiB ones from the upper.
  const rand = xorshift(options.seed ?? 0x5eed_1234);
  const used = new Set<number>();
  const small = (): number => {
    const frames4k = gpSize / 2 / PAGE_SIZE;
    for (;;) {
      const f = 256 + (rand() % (frames4k - 256));
      if (!used.has(f)) {
        used.add(f);
        return f * PAGE_SIZE;
      }
    }
  };
  const large = (): number => {
    const slots = gpSize / 2 / 2 ** 21;
    for (;;) {
      const slot = rand() % slots;
      if (!used.has(-1 - slot)) {
        used.add(-1 - slot);
        return gpSize / 2 + slot * 2 ** 21;
      }
    }
  };
  const tables = new GuestPageTables(guestMemory, small, options.guestLevels ?? 4);
  const page = 2 ** guestPageShift;
  for (let off = 0; off < workingSet; off += page) {
    const r = tables.map(WORKING_SET_BASE + off, guestPageShift === 12 ? small() : large(), guestPageShift);
    if (r !== undefined) throw new Error(`vtlab bug: building the walk-cost guest: ${r.reason}`);
  }
  const walker = new NestedWalker(memory, { sizes: options.sizes });
  const eptp = ept.eptp(options.accessedDirty ?? true);
  const bad = walker.setEptp(eptp.lo, eptp.hi);
  if (bad !== undefined) throw new Error(`vtlab bug: ${bad.message}`);
  walker.setGuestContext(tables.root, pagingMode({ la57: options.guestLevels === 5 }));
  return { memory, ept, tables, walker, base: WORKING_SET_BASE, workingSet };
}

function measure(m: WalkCostMachine, offsets: Uint32Array | Float64Array): WalkCost {
  const w = m.walker;
  const refs0 = w.totalReferences;
  const walks0 = w.walks;
  const hiBase = Math.floor(m.base / 0x1_0000_0000);
  const loBase = m.base % 0x1_0000_0000;
  for (let i = 0; i < offsets.length; i++) {
    const lo = loBase + (offsets[i] as number);
    const status = w.translateLinear(hiBase + Math.floor(lo / 0x1_0000_0000), lo >>> 0, Access.Read);
    if (status !== NestedStatus.Ok) throw new Error(`vtlab bug: walk-cost access faulted (status ${status})`);
  }
  const references = w.totalReferences - refs0;
  const walks = w.walks - walks0;
  return {
    accesses: offsets.length,
    walks,
    references,
    referencesPerAccess: references / offsets.length,
    referencesPerWalk: walks === 0 ? 0 : references / walks,
  };
}

/** Run the workload under each cache configuration: one row per configuration. */
export function runWalkCost(options: WalkCostOptions = {}): WalkCostRow[] {
  const m = buildWalkCostMachine(options);
  const n = options.randomAccesses ?? 1 << 17;
  const words = m.workingSet / 8;
  const rand = xorshift((options.seed ?? 0x5eed_1234) ^ 0xa5a5_a5a5);
  const warmRandom = new Uint32Array(n);
  const random = new Uint32Array(n);
  for (let i = 0; i < n; i++) warmRandom[i] = (rand() % words) * 8;
  for (let i = 0; i < n; i++) random[i] = (rand() % words) * 8;
  const stride = options.sequentialStride ?? 64;
  const sequential = new Float64Array(Math.floor(m.workingSet / stride));
  for (let i = 0; i < sequential.length; i++) sequential[i] = i * stride;
  const rows: WalkCostRow[] = [];
  for (const config of options.configs ?? WALK_COST_CONFIGS) {
    const w = m.walker;
    w.caches.set(config.switches);
    w.caches.flushAll();
    measure(m, warmRandom);
    const r = measure(m, random);
    w.caches.flushAll();
    measure(m, sequential);
    const s = measure(m, sequential);
    rows.push({ config: config.name, random: r, sequential: s });
  }
  return rows;
}

/** The rows as a Markdown table. */
export function formatWalkCostTable(rows: readonly WalkCostRow[]): string {
  const f = (x: number): string => x.toFixed(2);
  const lines = [
    "| caches on | random: walks/access | random: refs/access | random: refs/walk | sequential: walks/access | sequential: refs/access | sequential: refs/walk |",
    "|---|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.config} | ${f(r.random.walks / r.random.accesses)} | ${f(r.random.referencesPerAccess)} | ${f(r.random.referencesPerWalk)} | ${f(r.sequential.walks / r.sequential.accesses)} | ${f(r.sequential.referencesPerAccess)} | ${f(r.sequential.referencesPerWalk)} |`,
    );
  }
  return lines.join("\n");
}

export interface ColdWalkSpec {
  readonly guestLevels?: 4 | 5;
  readonly eptLevels?: 4 | 5;
  readonly guestPageShift?: 12 | 21 | 30;
  readonly eptPageShift?: 12 | 21 | 30;
}

/** Memory references of one cold two-dimensional walk (no caches) for the given levels and page sizes. */
export function coldWalkReferences(spec: ColdWalkSpec = {}): number {
  const memory = new MachineMemory(64 * GiB);
  const frames = new SimpleFrameAllocator(memory, ((32 * GiB) / PAGE_SIZE) as Mfn, 4096);
  const ept = EptP2m.create({ memory, frames, levels: spec.eptLevels ?? 4 });
  if (isP2mError(ept)) throw new Error(`vtlab bug: ${ept.message}`);
  const mapped = ept.map(0, HOST_OFFSET, 4 * GiB, { maxPageShift: spec.eptPageShift ?? 12 });
  if (isP2mError(mapped)) throw new Error(`vtlab bug: ${mapped.message}`);
  let next = 0x10_0000;
  const tables = new GuestPageTables(new EptGuestMemory(memory, ept), () => (next += PAGE_SIZE) - PAGE_SIZE, spec.guestLevels ?? 4);
  const shift = spec.guestPageShift ?? 12;
  const r = tables.map(WORKING_SET_BASE, 2 * GiB, shift);
  if (r !== undefined) throw new Error(`vtlab bug: ${r.reason}`);
  const walker = new NestedWalker(memory, { switches: NO_CACHES });
  const eptp = ept.eptp(true);
  walker.setEptp(eptp.lo, eptp.hi);
  walker.setGuestContext(tables.root, pagingMode({ la57: spec.guestLevels === 5 }));
  const out = walker.walk(WORKING_SET_BASE + 0x234, Access.Read);
  if (out.kind !== "translation") throw new Error(`vtlab bug: cold walk faulted: ${out.kind}`);
  return out.references;
}
