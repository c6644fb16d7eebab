/**
 * The hypervisor's side of device assignment (what Xen's drivers/passthrough/vtd/iommu.c does):
 * build a domain's second-level tables from its p2m, so that a device's DMA addresses are the
 * guest's pseudo-physical addresses; point a device's context entry at them (attach) or clear it
 * (detach); and say which cache invalidations each change needs. The tables live in machine
 * memory frames the hypervisor owns; the remapping unit reads them from there.
 *
 * A domain's tables are shared by all of its devices (one domain id, one SLPTPTR), and can be
 * shared with tables built elsewhere in VT-d format (`IommuDomain.shareTables`).
 */
import {
  PAGE_SIZE,
  formatBdf,
  type Bdf,
  type Gfn,
  type Hpa,
  type Mfn,
  type PhysicalMemory,
  type U64,
} from "@vtlab/arch";
import { ContextInvalidation, IotlbInvalidation } from "./vtd/regs.js";
import {
  CONTEXT_ENTRY_SIZE,
  CTX_P,
  ROOT_ENTRY_SIZE,
  ROOT_P,
  SL_ENTRY_SIZE,
  SL_HI_ADDR_MASK,
  SL_PS,
  SL_R,
  SL_W,
  TranslationType,
  awForLevels,
  decodeContextEntry,
  entryAddress,
  makeContextEntry,
  makeRootEntry,
  makeSlEntry,
  type ContextEntry,
} from "./vtd/tables.js";

/** One guest frame's backing: what a p2m says about a gfn. */
export interface P2mEntry {
  readonly gfn: Gfn;
  readonly mfn: Mfn;
  readonly writable: boolean;
}

/**
 * A domain's physical-to-machine map, as the IOMMU helpers need it. The hypervisor's p2m
 * implements it; `MapP2m` is a plain one.
 */
export interface P2m {
  /** The machine frame behind `gfn`, or undefined when the guest has nothing there. */
  lookup(gfn: Gfn): P2mEntry | undefined;
  /** Every mapping, in ascending gfn order. */
  entries(): Iterable<P2mEntry>;
}

/** A p2m held in a Map. */
export class MapP2m implements P2m {
  private readonly map = new Map<number, P2mEntry>();

  set(gfn: Gfn, mfn: Mfn, writable = true): void {
    this.map.set(gfn, { gfn, mfn, writable });
  }

  delete(gfn: Gfn): boolean {
    return this.map.delete(gfn);
  }

  lookup(gfn: Gfn): P2mEntry | undefined {
    return this.map.get(gfn);
  }

  entries(): P2mEntry[] {
    return [...this.map.values()].sort((a, b) => a.gfn - b.gfn);
  }

  get size(): number {
    return this.map.size;
  }
}

/** Where table frames come from: zeroed machine frames the hypervisor owns. */
export interface FrameAllocator {
  /** A zeroed 4 KiB frame, or undefined when none is left. */
  allocate(): Mfn | undefined;
  /**
   * Take back a frame `allocate` gave (optional): with it, `IommuDomain.unmap` frees a table it
   * leaves empty; without it, empty tables stay until the domain's frames are given back.
   */
  free?(mfn: Mfn): void;
}

/** Hands out the frames [first, first + count) in order, zeroing each. */
export class BumpFrameAllocator implements FrameAllocator {
  private next: number;
  private readonly end: number;
  private static readonly zero = new Uint8Array(PAGE_SIZE);

  constructor(
    private readonly memory: PhysicalMemory,
    first: Mfn,
    private readonly count: number,
  ) {
    this.next = first;
    this.end = first + count;
  }

  get remaining(): number {
    return this.end - this.next;
  }

  allocate(): Mfn | undefined {
    if (this.next >= this.end) return undefined;
    const mfn = this.next++ as Mfn;
    if (this.memory.writeBytes(mfn * PAGE_SIZE, BumpFrameAllocator.zero) !== undefined) return undefined;
    return mfn;
  }
}

/** Something the IOMMU helpers could not do. */
export interface IommuDomainError {
  readonly kind: "iommu-domain-error";
  readonly reason: "out-of-frames" | "beyond-address-width" | "memory" | "bad-argument";
  readonly message: string;
}

function domainError(reason: IommuDomainError["reason"], message: string): IommuDomainError {
  return { kind: "iommu-domain-error", reason, message };
}

/** An invalidation software must perform (through CCMD/IOTLB registers or the queue) after a table change. */
export type InvalidationRequest =
  | {
      readonly kind: "context";
      readonly granularity: ContextInvalidation;
      readonly domainId: number;
      readonly sourceId: number;
      readonly functionMask: number;
    }
  | {
      readonly kind: "iotlb";
      readonly granularity: IotlbInvalidation;
      readonly domainId: number;
      /** Page-selective: first byte (aligned to 2^(12 + addressMask)). */
      readonly address: number;
      readonly addressMask: number;
      /** IVA_REG.IH: only leaf entries changed. */
      readonly leafOnly: boolean;
    };

/**
 * A remapping unit's root table and the per-bus context tables under it (legacy mode), in
 * machine memory. Context tables are allocated the first time a device on their bus is attached.
 */
export class RootTable {
  private readonly contextTables = new Map<number, number>();

  private constructor(
    private readonly memory: PhysicalMemory,
    private readonly frames: FrameAllocator,
    readonly address: Hpa,
  ) {}

  static create(memory: PhysicalMemory, frames: FrameAllocator): RootTable | IommuDomainError {
    const mfn = frames.allocate();
    if (mfn === undefined) return domainError("out-of-frames", "no frame for the root table");
    return new RootTable(memory, frames, (mfn * PAGE_SIZE) as Hpa);
  }

  /** Write the context entry of `source`, allocating its bus's context table if needed. */
  setContext(source: Bdf, fields: Parameters<typeof makeContextEntry>[0]): IommuDomainError | undefined {
    const bus = source >>> 8;
    let table = this.contextTables.get(bus);
    if (table === undefined) {
      const mfn = this.frames.allocate();
      if (mfn === undefined) return domainError("out-of-frames", `no frame for the context table of bus ${bus}`);
      table = mfn * PAGE_SIZE;
      const [w0, w1, w2, w3] = makeRootEntry(table as Hpa);
      const at = this.address + bus * ROOT_ENTRY_SIZE;
      if (this.memory.write64(at, w0, w1) !== undefined || this.memory.write64(at + 8, w2, w3) !== undefined) {
        return domainError("memory", `root entry at 0x${at.toString(16)} is outside memory`);
      }
      this.contextTables.set(bus, table);
    }
    const [w0, w1, w2, w3] = makeContextEntry(fields);
    const at = table + (source & 0xff) * CONTEXT_ENTRY_SIZE;
    // Clear P first, write the upper half, then the lower half with P: the unit never sees a half-written present entry.
    this.memory.write64(at, 0, 0);
    this.memory.write64(at + 8, w2, w3);
    this.memory.write64(at, w0, w1);
    return undefined;
  }

  /** Clear the context entry of `source` (not present). Returns whether it was present. */
  clearContext(source: Bdf): boolean {
    const table = this.contextTables.get(source >>> 8);
    if (table === undefined) return false;
    const at = table + (source & 0xff) * CONTEXT_ENTRY_SIZE;
    const was = this.memory.read32(at);
    this.memory.write64(at, 0, 0);
    this.memory.write64(at + 8, 0, 0);
    return typeof was === "number" && (was & CTX_P) !== 0;
  }

  /** The context entry of `source` as memory holds it now, or undefined when its bus has no context table. */
  readContext(source: Bdf): ContextEntry | undefined {
    const table = this.contextTables.get(source >>> 8);
    if (table === undefined) return undefined;
    const at = table + (source & 0xff) * CONTEXT_ENTRY_SIZE;
    const a: U64 = { lo: 0, hi: 0 };
    const b: U64 = { lo: 0, hi: 0 };
    if (this.memory.read64(at, a) !== undefined || this.memory.read64(at + 8, b) !== undefined) return undefined;
    return decodeContextEntry(a.lo, a.hi, b.lo);
  }

  /** Whether the root entry of `bus` is present. */
  busPresent(bus: number): boolean {
    const w = this.memory.read32(this.address + bus * ROOT_ENTRY_SIZE);
    return typeof w === "number" && (w & ROOT_P) !== 0;
  }
}

export interface IommuDomainOptions {
  /** The VT-d domain id (context entry DID, 16 bits). Xen uses the domain's domid. */
  readonly domainId: number;
  /** Second-level table levels: 3 (39-bit guest address width) or 4 (48-bit). */
  readonly levels: 3 | 4;
  /** Which super pages the tables may use (the unit's CAP_REG.SLLPS must support them). Default none. */
  readonly largePages?: { readonly "2M": boolean; readonly "1G": boolean };
}

/**
 * A domain's second-level tables: IOVA = guest-physical address, output = machine address.
 */
export class IommuDomain {
  readonly domainId: number;
  readonly levels: 3 | 4;
  readonly root: Hpa;
  /** Frames holding this domain's tables (empty for shared tables built elsewhere). */
  readonly tableFrames: Mfn[] = [];
  private readonly attached = new Set<number>();
  private readonly large2M: boolean;
  private readonly large1G: boolean;
  private readonly scratch: U64 = { lo: 0, hi: 0 };

  private constructor(
    private readonly memory: PhysicalMemory,
    private readonly frames: FrameAllocator,
    options: IommuDomainOptions,
    root: Hpa,
  ) {
    this.domainId = options.domainId;
    this.levels = options.levels;
    this.root = root;
    this.large2M = options.largePages?.["2M"] ?? false;
    this.large1G = options.largePages?.["1G"] ?? false;
  }

  /** An empty domain: a zeroed top-level table. */
  static create(memory: PhysicalMemory, frames: FrameAllocator, options: IommuDomainOptions): IommuDomain | IommuDomainError {
    const bad = checkOptions(options);
    if (bad !== undefined) return bad;
    const mfn = frames.allocate();
    if (mfn === undefined) return domainError("out-of-frames", "no frame for the top-level table");
    const d = new IommuDomain(memory, frames, options, (mfn * PAGE_SIZE) as Hpa);
    d.tableFrames.push(mfn);
    return d;
  }

  /**
   * Build the tables from a p2m: every gfn maps to its mfn, writable where the p2m says so. With
   * large pages allowed, a naturally aligned run of 512 (or 262,144) gfns backed by contiguous,
   * equally aligned mfns of one access becomes one 2 MiB (or 1 GiB) entry.
   */
  static fromP2m(
    memory: PhysicalMemory,
    frames: FrameAllocator,
    options: IommuDomainOptions & { readonly p2m: P2m },
  ): IommuDomain | IommuDomainError {
    const d = IommuDomain.create(memory, frames, options);
    if (!(d instanceof IommuDomain)) return d;
    const list = [...options.p2m.entries()];
    let i = 0;
    outer: while (i < list.length) {
      const e = list[i] as P2mEntry;
      for (const [allowed, level, n] of [
        [d.large1G && d.levels >= 3, 3, 0x4_0000],
        [d.large2M, 2, 0x200],
      ] as const) {
        if (allowed && e.gfn % n === 0 && e.mfn % n === 0 && contiguousRun(list, i, n)) {
          const r = d.setLeaf(e.gfn, e.mfn, level, e.writable);
          if (r !== undefined) return r;
          i += n;
          continue outer;
        }
      }
      const r = d.setLeaf(e.gfn, e.mfn, 1, e.writable);
      if (r !== undefined) return r;
      i++;
    }
    return d;
  }

  /**
   * Share tables that already exist in VT-d second-level format (another domain structure's, or
   * p2m tables built to be compatible, as Xen shares EPT tables with VT-d when their formats agree).
   * Changes through `map`/`unmap` then change the shared tables.
   */
  static shareTables(
    memory: PhysicalMemory,
    frames: FrameAllocator,
    options: IommuDomainOptions & { readonly root: Hpa },
  ): IommuDomain | IommuDomainError {
    const bad = checkOptions(options);
    if (bad !== undefined) return bad;
    if (options.root % PAGE_SIZE !== 0) return domainError("bad-argument", "a shared table root must be 4 KiB aligned");
    return new IommuDomain(memory, frames, options, options.root);
  }

  /** Largest guest frame number + 1 the tables can map. */
  get frameLimit(): number {
    return 2 ** (9 * this.levels);
  }

  /** Devices whose context entries point at this domain. */
  get devices(): Bdf[] {
    return [...this.attached].sort((a, b) => a - b) as Bdf[];
  }

  /** Map one 4 KiB guest frame. Splits a super page that covers it. */
  map(gfn: Gfn, mfn: Mfn, writable = true): IommuDomainError | undefined {
    return this.setLeaf(gfn, mfn, 1, writable);
  }

  /**
   * Unmap one guest frame (splitting a super page around it). Returns the IOTLB invalidation the
   * change needs, undefined when nothing was mapped there, or an error when a split found no frame. Until software performs it the
   * remapping unit may keep using the old translation.
   */
  unmap(gfn: Gfn): InvalidationRequest | IommuDomainError | undefined {
    if (!(gfn >= 0 && gfn < this.frameLimit)) return undefined;
    let table = this.root as number;
    let split = false;
    // The entry addresses on the way down (index: level), for freeing tables left empty.
    const path: number[] = [];
    for (let level: number = this.levels; level >= 1; level--) {
      const at = table + this.indexAt(gfn, level) * SL_ENTRY_SIZE;
      path[level] = at;
      if (this.memory.read64(at, this.scratch) !== undefined) return undefined;
      const { lo, hi } = this.scratch;
      if ((lo & (SL_R | SL_W)) === 0) return undefined;
      if (level === 1) {
        this.memory.write64(at, 0, 0);
        const freed = this.freeEmptyTables(path);
        return {
          kind: "iotlb",
          granularity: IotlbInvalidation.Page,
          domainId: this.domainId,
          address: gfn * PAGE_SIZE,
          addressMask: 0,
          // A freed table changes paging-structure entries: the invalidation must cover them (IH = 0).
          leafOnly: !split && !freed,
        };
      }
      if ((lo & SL_PS) !== 0) {
        const r = this.split(at, lo, hi, level);
        if (r !== undefined) return r;
        split = true;
        if (this.memory.read64(at, this.scratch) !== undefined) return domainError("memory", "table entry vanished");
      }
      table = entryAddress(this.scratch.lo, this.scratch.hi, SL_HI_ADDR_MASK);
    }
    return undefined;
  }

  /** What the tables map `gfn` to now (a software walk), or undefined. */
  lookup(gfn: Gfn): { mfn: Mfn; writable: boolean; level: number } | undefined {
    if (!(gfn >= 0 && gfn < this.frameLimit)) return undefined;
    let table = this.root as number;
    let writable = true;
    for (let level: number = this.levels; level >= 1; level--) {
      if (this.memory.read64(table + this.indexAt(gfn, level) * SL_ENTRY_SIZE, this.scratch) !== undefined) return undefined;
      const { lo, hi } = this.scratch;
      if ((lo & (SL_R | SL_W)) === 0) return undefined;
      writable &&= (lo & SL_W) !== 0;
      const address = entryAddress(lo, hi, SL_HI_ADDR_MASK);
      if (level === 1 || (lo & SL_PS) !== 0) {
        const within = gfn % 2 ** (9 * (level - 1));
        return { mfn: (address / PAGE_SIZE + within) as Mfn, writable, level };
      }
      table = address;
    }
    return undefined;
  }

  /**
   * Point `source`'s context entry at this domain's tables (translation type 00b) and return the
   * invalidations the change needs: the device's context-cache entry (a non-present entry is not
   * cached with CAP_REG.CM = 0, but a previous assignment may be) and this domain's IOTLB entries.
   */
  attach(rootTable: RootTable, source: Bdf, options: { faultProcessingDisable?: boolean } = {}): InvalidationRequest[] | IommuDomainError {
    const previous = rootTable.readContext(source);
    const r = rootTable.setContext(source, {
      domainId: this.domainId,
      translationType: TranslationType.Untranslated,
      slptptr: this.root,
      addressWidth: awForLevels(this.levels),
      faultProcessingDisable: options.faultProcessingDisable ?? false,
    });
    if (r !== undefined) return r;
    this.attached.add(source);
    const requests: InvalidationRequest[] = [contextFlush(source, this.domainId)];
    if (previous?.present === true && previous.domainId !== this.domainId) requests.push(domainFlush(previous.domainId));
    requests.push(domainFlush(this.domainId));
    return requests;
  }

  /** Clear `source`'s context entry; return the invalidations that make the detach take effect. */
  detach(rootTable: RootTable, source: Bdf): InvalidationRequest[] | IommuDomainError {
    if (!this.attached.has(source)) {
      return domainError("bad-argument", `${formatBdf(source)} is not attached to domain ${this.domainId}`);
    }
    rootTable.clearContext(source);
    this.attached.delete(source);
    return [contextFlush(source, this.domainId), domainFlush(this.domainId)];
  }

  private indexAt(gfn: number, level: number): number {
    return Math.floor(gfn / 2 ** (9 * (level - 1))) % 512;
  }

  /** Write a leaf of `level` (1 = 4 KiB) for `gfn`, allocating or splitting tables on the way. */
  private setLeaf(gfn: number, mfn: number, level: number, writable: boolean): IommuDomainError | undefined {
    if (!(Number.isInteger(gfn) && gfn >= 0 && gfn < this.frameLimit)) {
      return domainError("beyond-address-width", `gfn 0x${gfn.toString(16)} is beyond a ${this.levels}-level table's reach`);
    }
    if (!(Number.isInteger(mfn) && mfn >= 0 && mfn < 2 ** 40)) return domainError("bad-argument", `mfn ${mfn} is not a frame number`);
    let table = this.root as number;
    for (let l = this.levels; l > level; l--) {
      const at = table + this.indexAt(gfn, l) * SL_ENTRY_SIZE;
      if (this.memory.read64(at, this.scratch) !== undefined) return domainError("memory", `table entry at 0x${at.toString(16)} is outside memory`);
      let { lo, hi } = this.scratch;
      if ((lo & (SL_R | SL_W)) === 0) {
        const f = this.frames.allocate();
        if (f === undefined) return domainError("out-of-frames", "no frame for a second-level table");
        this.tableFrames.push(f);
        const e = makeSlEntry(f * PAGE_SIZE, SL_R | SL_W);
        this.memory.write64(at, e.lo, e.hi);
        lo = e.lo;
        hi = e.hi;
      } else if ((lo & SL_PS) !== 0) {
        const r = this.split(at, lo, hi, l);
        if (r !== undefined) return r;
        this.memory.read64(at, this.scratch);
        lo = this.scratch.lo;
        hi = this.scratch.hi;
      }
      table = entryAddress(lo, hi, SL_HI_ADDR_MASK);
    }
    const flags = SL_R | (writable ? SL_W : 0) | (level > 1 ? SL_PS : 0);
    const e = makeSlEntry(mfn * PAGE_SIZE, flags);
    this.memory.write64(table + this.indexAt(gfn, level) * SL_ENTRY_SIZE, e.lo, e.hi);
    return undefined;
  }

  /**
   * After a leaf was cleared through the entries in `path` (index: level): free each table, from
   * the last level up (never the root), that has nothing present any more, clearing the entry
   * that referenced it, so that a guest churning its reservation (frames given back, new frames
   * taken elsewhere) cannot grow the host's VT-d tables without bound. Xen frees such pages too
   * (iommu_free_pgtables / the deferred free of emptied page tables). Only frames this domain
   * allocated (`tableFrames`) and only with a `free` in the allocator. Returns whether any was freed.
   */
  private freeEmptyTables(path: readonly number[]): boolean {
    const free = this.frames.free;
    if (free === undefined) return false;
    let freed = false;
    for (let level = 1; level < this.levels; level++) {
      const at = path[level]!;
      const table = at - (at % PAGE_SIZE);
      for (let i = 0; i < 512; i++) {
        if (this.memory.read64(table + i * SL_ENTRY_SIZE, this.scratch) !== undefined) return freed;
        if ((this.scratch.lo & (SL_R | SL_W)) !== 0) return freed;
      }
      const mfn = (table / PAGE_SIZE) as Mfn;
      const k = this.tableFrames.indexOf(mfn);
      if (k < 0) return freed; // a shared table built elsewhere: not ours to free
      this.memory.write64(path[level + 1]!, 0, 0);
      this.tableFrames.splice(k, 1);
      free.call(this.frames, mfn);
      freed = true;
    }
    return freed;
  }

  /** Replace the super page at `at` (of `level`) by a table of 512 pages one level down with the same mapping. */
  private split(at: number, lo: number, hi: number, level: number): IommuDomainError | undefined {
    const f = this.frames.allocate();
    if (f === undefined) return domainError("out-of-frames", "no frame to split a super page");
    this.tableFrames.push(f);
    const base = entryAddress(lo, hi, SL_HI_ADDR_MASK);
    const step = 2 ** (12 + 9 * (level - 2));
    const flags = (lo & (SL_R | SL_W)) | (level - 1 > 1 ? SL_PS : 0);
    for (let i = 0; i < 512; i++) {
      const e = makeSlEntry(base + i * step, flags);
      this.memory.write64(f * PAGE_SIZE + i * SL_ENTRY_SIZE, e.lo, e.hi);
    }
    const t = makeSlEntry(f * PAGE_SIZE, SL_R | SL_W);
    this.memory.write64(at, t.lo, t.hi);
    return undefined;
  }
}

function checkOptions(options: IommuDomainOptions): IommuDomainError | undefined {
  if (!(Number.isInteger(options.domainId) && options.domainId >= 0 && options.domainId <= 0xffff)) {
    return domainError("bad-argument", `domain id ${options.domainId} is not a 16-bit VT-d domain id`);
  }
  if (options.levels !== 3 && options.levels !== 4) return domainError("bad-argument", `levels must be 3 or 4; got ${String(options.levels)}`);
  return undefined;
}

/** Whether list[i .. i+n) are n consecutive gfns backed by consecutive mfns with one access. */
function contiguousRun(list: readonly P2mEntry[], i: number, n: number): boolean {
  const first = list[i];
  const last = list[i + n - 1];
  if (first === undefined || last === undefined || last.gfn - first.gfn !== n - 1) return false;
  for (let k = 1; k < n; k++) {
    const e = list[i + k] as P2mEntry;
    if (e.mfn !== first.mfn + k || e.writable !== first.writable) return false;
  }
  return true;
}

function contextFlush(source: Bdf, domainId: number): InvalidationRequest {
  return { kind: "context", granularity: ContextInvalidation.Device, domainId, sourceId: source, functionMask: 0 };
}

function domainFlush(domainId: number): InvalidationRequest {
  return { kind: "iotlb", granularity: IotlbInvalidation.Domain, domainId, address: 0, addressMask: 0, leafOnly: false };
}
