/**
 * The p2m as EPT paging structures (Xen's arch/x86/mm/p2m-ept.c): a builder that maps, unmaps and
 * protects guest-physical ranges with 4 KiB, 2 MiB and 1 GiB pages, splits and merges large
 * pages, clears dirty flags for log-dirty, and reads back what a GPA maps to.
 *
 * Tables live in machine frames from a `FrameAllocator`. Entries that reference a table carry
 * R, W and X (rights are restricted at the leaves). Every change says whether cached
 * translations may now be stale, so the caller knows when an INVEPT is due (SDM 29.4.3.4: after
 * clearing a permission bit, changing an address, bit 7, the memory type, or clearing A or D).
 *
 * Off the hot path: this runs when the hypervisor changes a domain's memory, not per access.
 */
import { PAGE_SIZE, type Hpa, type Mfn, type PhysicalMemory, type U64 } from "@vtlab/arch";
import type { FrameAllocator } from "@vtlab/p2m";
import {
  DEFAULT_EPT_CAPABILITIES,
  EPT_A,
  EPT_D,
  EPT_IPAT,
  EPT_LO_ADDR_MASK_1G,
  EPT_LO_ADDR_MASK_2M,
  EPT_LO_ADDR_MASK_4K,
  EPT_MT_MASK,
  EPT_MT_SHIFT,
  EPT_PAGE_SIZE,
  EPT_R,
  EPT_RWX,
  EPT_W,
  EPT_X,
  EptMemoryType,
  eptEntryAddress,
  levelPageShift,
  makeEptEntry,
  makeEptp,
  type EptCapabilities,
} from "./ept.js";

/** Something the builder could not do. The ranges changed before the error stay changed. */
export interface P2mError {
  readonly kind: "p2m-error";
  readonly reason: "out-of-frames" | "misaligned" | "beyond-address-width" | "bad-permissions" | "not-mergeable" | "not-a-large-page" | "unsupported";
  readonly message: string;
}

export function isP2mError(value: unknown): value is P2mError {
  return typeof value === "object" && value !== null && (value as P2mError).kind === "p2m-error";
}

/** What a change did. */
export interface P2mUpdate {
  readonly kind: "p2m-update";
  /** Cached translations may be stale: an INVEPT (single-context) is due. */
  readonly invalidate: boolean;
  /** Entries written. */
  readonly entries: number;
}

/** What a guest-physical address maps to (`lookup`). */
export interface EptMapping {
  /** The host-physical address of the GPA looked up. */
  readonly hpa: number;
  /** Level of the leaf: 1 (4 KiB), 2 (2 MiB) or 3 (1 GiB). */
  readonly level: number;
  readonly pageShift: number;
  /** Bits 2:0 of the leaf. */
  readonly perms: number;
  /** Logical AND of bits 2:0 along the walk. */
  readonly effectivePerms: number;
  readonly memoryType: number;
  readonly ignorePat: boolean;
  readonly accessed: boolean;
  readonly dirty: boolean;
  /** Host-physical address of the leaf entry. */
  readonly entryAddress: number;
}

/** One entry of a walk, for `inspect`. */
export interface EptWalkStep {
  readonly level: number;
  readonly address: number;
  readonly lo: number;
  readonly hi: number;
}

export interface LeafAttributes {
  /** R/W/X bits (default R | W | X). */
  readonly perms?: number;
  /** EPT memory type (default WB). */
  readonly memoryType?: number;
  readonly ignorePat?: boolean;
  /** Largest page the builder may use: 12, 21 or 30 (default 30; limited by the capabilities). */
  readonly maxPageShift?: number;
}

export interface EptP2mOptions {
  readonly memory: PhysicalMemory;
  readonly frames: FrameAllocator;
  /** EPT page-walk length (default 4). */
  readonly levels?: 4 | 5;
  readonly caps?: EptCapabilities;
}

type Op =
  | { readonly kind: "unmap" }
  | { readonly kind: "protect"; readonly perms: number }
  | { readonly kind: "split"; readonly toLevel: number }
  | { readonly kind: "clear-dirty"; readonly onDirty: (gpa: number, size: number) => void };

export class EptP2m {
  readonly memory: PhysicalMemory;
  readonly levels: 4 | 5;
  readonly caps: EptCapabilities;
  /** Host-physical address of the top-level table (the EP4TA). */
  readonly root: Hpa;
  /** Guest-physical addresses at or above this are beyond what the tables translate. */
  readonly limit: number;
  private readonly frames: FrameAllocator;
  private tables = 1;
  private written = 0;
  private invalidate = false;
  private readonly e: U64 = { lo: 0, hi: 0 };

  private constructor(options: EptP2mOptions, root: Mfn) {
    this.memory = options.memory;
    this.frames = options.frames;
    this.levels = options.levels ?? 4;
    this.caps = options.caps ?? DEFAULT_EPT_CAPABILITIES;
    this.root = (root * PAGE_SIZE) as Hpa;
    // 4-level EPT uses GPA bits 47:0 (SDM 29.3.2); 5-level EPT, the 52 bits a GPA can have.
    this.limit = this.levels === 4 ? 2 ** 48 : 2 ** 52;
  }

  /** Empty tables (a root with nothing present). */
  static create(options: EptP2mOptions): EptP2m | P2mError {
    if ((options.levels ?? 4) === 5 && !(options.caps ?? DEFAULT_EPT_CAPABILITIES).walkLength5) {
      return error("unsupported", "5-level EPT is not supported by these capabilities");
    }
    const root = options.frames.allocate();
    if (root === undefined) return error("out-of-frames", "no frame for the EPT root table");
    return new EptP2m(options, root);
  }

  /** Machine frames holding EPT paging structures. */
  get tableFrames(): number {
    return this.tables;
  }

  /** The EPTP for these tables (write-back paging structures). */
  eptp(accessedDirty = false): U64 {
    return makeEptp(this.root, { levels: this.levels, accessedDirty });
  }

  /**
   * Map [gpa, gpa + size) to [hpa, hpa + size), using the largest pages that alignment, the
   * capabilities and `maxPageShift` allow. Replaces whatever was there (freeing tables it covers).
   */
  map(gpa: number, hpa: number, size: number, attrs: LeafAttributes = {}): P2mUpdate | P2mError {
    const bad = this.checkRange(gpa, size) ?? checkAligned("host-physical address", hpa);
    if (bad !== undefined) return bad;
    if (hpa + size > 2 ** this.caps.maxPhyAddr) return error("beyond-address-width", `hpa 0x${hpa.toString(16)} + 0x${size.toString(16)} is beyond MAXPHYADDR ${this.caps.maxPhyAddr}`);
    const perms = attrs.perms ?? EPT_RWX;
    const permError = this.checkPerms(perms);
    if (permError !== undefined) return permError;
    const mt = attrs.memoryType ?? EptMemoryType.WB;
    if (!Object.values(EptMemoryType).includes(mt as EptMemoryType)) return error("bad-permissions", `memory type ${mt} is reserved`);
    const leafBits = perms | (mt << EPT_MT_SHIFT) | (attrs.ignorePat === true ? EPT_IPAT : 0);
    const maxShift = attrs.maxPageShift ?? 30;
    this.begin();
    const r = this.mapIn(this.root, this.levels, 0, gpa, gpa + size, hpa - gpa, leafBits, maxShift);
    return r ?? this.done();
  }

  /** Make [gpa, gpa + size) not present, freeing the tables it covers entirely; large pages partly covered are split. */
  unmap(gpa: number, size: number): P2mUpdate | P2mError {
    return this.update(gpa, size, { kind: "unmap" });
  }

  /** Set bits 2:0 of every present leaf in the range to `perms` (nonzero; use `unmap` for none). */
  protect(gpa: number, size: number, perms: number): P2mUpdate | P2mError {
    if ((perms & EPT_RWX) === 0 || (perms & ~EPT_RWX) !== 0) return error("bad-permissions", `protect needs R/W/X bits, got ${perms}`);
    const permError = this.checkPerms(perms);
    if (permError !== undefined) return permError;
    return this.update(gpa, size, { kind: "protect", perms });
  }

  /** Split every large page in the range down to pages of `toLevel` (1: 4 KiB, 2: 2 MiB). */
  splitRange(gpa: number, size: number, toLevel = 1): P2mUpdate | P2mError {
    return this.update(gpa, size, { kind: "split", toLevel });
  }

  /** Split the large page at `level` (2 or 3) holding `gpa` into 512 pages of the level below. */
  split(gpa: number, level: 2 | 3): P2mUpdate | P2mError {
    const bad = this.checkRange(gpa - (gpa % PAGE_SIZE), PAGE_SIZE);
    if (bad !== undefined) return bad;
    const found = this.entryAt(gpa, level);
    if (found === undefined || !isLeaf(found.lo, level)) {
      return error("not-a-large-page", `no ${level === 3 ? "1 GiB" : "2 MiB"} page maps gpa 0x${gpa.toString(16)}`);
    }
    this.begin();
    const r = this.splitEntry(found.address, level, found.lo, found.hi);
    return r ?? this.done();
  }

  /**
   * Merge the table under the entry at `level` (2 or 3) holding `gpa` into one large page: all
   * 512 entries must map pages of the level below, contiguous and aligned, with the same
   * permissions and memory type. Accessed and dirty flags are ORed.
   */
  merge(gpa: number, level: 2 | 3): P2mUpdate | P2mError {
    const bad = this.checkRange(gpa - (gpa % PAGE_SIZE), PAGE_SIZE);
    if (bad !== undefined) return bad;
    if ((level === 2 && !this.caps.pages2M) || (level === 3 && !this.caps.pages1G)) {
      return error("not-mergeable", `${level === 3 ? "1 GiB" : "2 MiB"} pages are not supported`);
    }
    const found = this.entryAt(gpa, level);
    if (found === undefined || (found.lo & EPT_RWX) === 0 || isLeaf(found.lo, level)) {
      return error("not-mergeable", `no table under the level-${level} entry for gpa 0x${gpa.toString(16)}`);
    }
    const table = eptEntryAddress(found.lo, found.hi);
    const child = level - 1;
    const step = 2 ** levelPageShift(child);
    let first = 0;
    let flags = 0;
    let ad = 0;
    const e = this.e;
    for (let i = 0; i < 512; i++) {
      this.read(table + i * 8, e);
      if ((e.lo & EPT_RWX) === 0 || !isLeaf(e.lo, child)) return error("not-mergeable", `entry ${i} of the level-${child} table does not map a page`);
      const address = eptEntryAddress(e.lo, e.hi, child === 1 ? EPT_LO_ADDR_MASK_4K : EPT_LO_ADDR_MASK_2M);
      const f = e.lo & (EPT_RWX | EPT_MT_MASK | EPT_IPAT);
      if (i === 0) {
        first = address;
        flags = f;
        if (first % (step * 512) !== 0) return error("not-mergeable", `the pages start at 0x${first.toString(16)}, not aligned for a level-${level} page`);
      } else if (address !== first + i * step || f !== flags) {
        return error("not-mergeable", `entry ${i} is not contiguous with entry 0 or has other attributes`);
      }
      ad |= e.lo & (EPT_A | EPT_D);
    }
    this.begin();
    const leaf = makeEptEntry(first, flags | EPT_PAGE_SIZE | ad);
    this.write(found.address, leaf.lo, leaf.hi);
    this.freeTable(table, child);
    this.invalidate = true;
    return this.done();
  }

  /** Merge every eligible region in the range, 2 MiB first, then 1 GiB. Returns how many merges happened. */
  mergeRange(gpa: number, size: number): number {
    let merged = 0;
    for (const level of [2, 3] as const) {
      const span = 2 ** levelPageShift(level);
      for (let a = Math.ceil(gpa / span) * span; a + span <= gpa + size; a += span) {
        if (!isP2mError(this.merge(a, level))) merged++;
      }
    }
    return merged;
  }

  /**
   * Clear the dirty flag of every leaf in the range, calling `onDirty(gpa, size)` for each leaf
   * that had it set (a large page reports its whole extent). Clearing D needs an INVEPT.
   */
  clearDirty(gpa: number, size: number, onDirty: (gpa: number, size: number) => void): P2mUpdate | P2mError {
    return this.update(gpa, size, { kind: "clear-dirty", onDirty });
  }

  /** What `gpa` maps to, or undefined when an entry on the way is not present. */
  lookup(gpa: number): EptMapping | undefined {
    let table: number = this.root;
    let effective = EPT_RWX;
    const e = this.e;
    for (let level: number = this.levels; level >= 1; level--) {
      const address = table + indexOf(gpa, level) * 8;
      this.read(address, e);
      if ((e.lo & EPT_RWX) === 0) return undefined;
      effective &= e.lo;
      if (isLeaf(e.lo, level)) {
        const shift = levelPageShift(level);
        const mask = level === 1 ? EPT_LO_ADDR_MASK_4K : level === 2 ? EPT_LO_ADDR_MASK_2M : EPT_LO_ADDR_MASK_1G;
        return {
          hpa: eptEntryAddress(e.lo, e.hi, mask) + (gpa % 2 ** shift),
          level,
          pageShift: shift,
          perms: e.lo & EPT_RWX,
          effectivePerms: effective & EPT_RWX,
          memoryType: (e.lo & EPT_MT_MASK) >>> EPT_MT_SHIFT,
          ignorePat: (e.lo & EPT_IPAT) !== 0,
          accessed: (e.lo & EPT_A) !== 0,
          dirty: (e.lo & EPT_D) !== 0,
          entryAddress: address,
        };
      }
      table = eptEntryAddress(e.lo, e.hi);
    }
    return undefined;
  }

  /** The raw entries a walk for `gpa` reads, top level first (stops at a not-present entry or a leaf). */
  inspect(gpa: number): EptWalkStep[] {
    const steps: EptWalkStep[] = [];
    let table: number = this.root;
    const e = this.e;
    for (let level: number = this.levels; level >= 1; level--) {
      const address = table + indexOf(gpa, level) * 8;
      this.read(address, e);
      steps.push({ level, address, lo: e.lo, hi: e.hi });
      if ((e.lo & EPT_RWX) === 0 || isLeaf(e.lo, level)) break;
      table = eptEntryAddress(e.lo, e.hi);
    }
    return steps;
  }

  /** Call `fn` for every present leaf that intersects the range, in ascending order. */
  forEachLeaf(gpa: number, size: number, fn: (gpa: number, level: number, lo: number, hi: number) => void): void {
    this.visit(this.root, this.levels, 0, gpa, gpa + size, fn);
  }

  // ---- internals ----

  private visit(table: number, level: number, base: number, start: number, end: number, fn: (gpa: number, level: number, lo: number, hi: number) => void): void {
    const span = 2 ** levelPageShift(level);
    const first = Math.floor((start - base) / span);
    const last = Math.floor((end - 1 - base) / span);
    const e = this.e;
    for (let i = first; i <= last; i++) {
      this.read(table + i * 8, e);
      if ((e.lo & EPT_RWX) === 0) continue;
      const entryBase = base + i * span;
      if (isLeaf(e.lo, level)) fn(entryBase, level, e.lo, e.hi);
      else this.visit(eptEntryAddress(e.lo, e.hi), level - 1, entryBase, Math.max(start, entryBase), Math.min(end, entryBase + span), fn);
    }
  }

  private mapIn(table: number, level: number, base: number, start: number, end: number, delta: number, leafBits: number, maxShift: number): P2mError | undefined {
    const shift = levelPageShift(level);
    const span = 2 ** shift;
    const first = Math.floor((start - base) / span);
    const last = Math.floor((end - 1 - base) / span);
    const e = this.e;
    for (let i = first; i <= last; i++) {
      const entryBase = base + i * span;
      const pieceStart = Math.max(start, entryBase);
      const pieceEnd = Math.min(end, entryBase + span);
      const address = table + i * 8;
      const whole = pieceStart === entryBase && pieceEnd === entryBase + span;
      const canLeaf = level === 1 || (shift <= maxShift && ((level === 2 && this.caps.pages2M) || (level === 3 && this.caps.pages1G)));
      if (whole && canLeaf && (entryBase + delta) % span === 0) {
        this.read(address, e);
        if ((e.lo & EPT_RWX) !== 0) {
          this.invalidate = true;
          if (!isLeaf(e.lo, level)) this.freeTable(eptEntryAddress(e.lo, e.hi), level - 1);
        }
        const leaf = makeEptEntry(entryBase + delta, leafBits | (level > 1 ? EPT_PAGE_SIZE : 0));
        this.write(address, leaf.lo, leaf.hi);
        continue;
      }
      const next = this.tableUnder(address, level);
      if (typeof next !== "number") return next;
      const r = this.mapIn(next, level - 1, entryBase, pieceStart, pieceEnd, delta, leafBits, maxShift);
      if (r !== undefined) return r;
    }
    return undefined;
  }

  private updateIn(table: number, level: number, base: number, start: number, end: number, op: Op): P2mError | undefined {
    const span = 2 ** levelPageShift(level);
    const first = Math.floor((start - base) / span);
    const last = Math.floor((end - 1 - base) / span);
    const e = this.e;
    for (let i = first; i <= last; i++) {
      const entryBase = base + i * span;
      const pieceStart = Math.max(start, entryBase);
      const pieceEnd = Math.min(end, entryBase + span);
      const whole = pieceStart === entryBase && pieceEnd === entryBase + span;
      const address = table + i * 8;
      this.read(address, e);
      const lo = e.lo;
      const hi = e.hi;
      if ((lo & EPT_RWX) === 0) continue;
      if (isLeaf(lo, level)) {
        if (op.kind === "split") {
          if (level <= op.toLevel) continue;
          const r = this.splitEntry(address, level, lo, hi);
          if (r !== undefined) return r;
          this.read(address, e);
          const r2 = this.updateIn(eptEntryAddress(e.lo, e.hi), level - 1, entryBase, pieceStart, pieceEnd, op);
          if (r2 !== undefined) return r2;
          continue;
        }
        if (op.kind === "clear-dirty") {
          // The flag covers the whole page: report and clear it even when the range covers part.
          if ((lo & EPT_D) !== 0) {
            op.onDirty(entryBase, span);
            this.write(address, (lo & ~EPT_D) >>> 0, hi);
            this.invalidate = true;
          }
          continue;
        }
        if (!whole) {
          const r = this.splitEntry(address, level, lo, hi);
          if (r !== undefined) return r;
          this.read(address, e);
          const r2 = this.updateIn(eptEntryAddress(e.lo, e.hi), level - 1, entryBase, pieceStart, pieceEnd, op);
          if (r2 !== undefined) return r2;
          continue;
        }
        if (op.kind === "unmap") {
          this.write(address, 0, 0);
          this.invalidate = true;
        } else {
          const nlo = ((lo & ~EPT_RWX) | op.perms) >>> 0;
          if (nlo !== lo) {
            if ((lo & EPT_RWX & ~op.perms) !== 0) this.invalidate = true;
            this.write(address, nlo, hi);
          }
        }
        continue;
      }
      const child = eptEntryAddress(lo, hi);
      if (op.kind === "unmap" && whole) {
        this.write(address, 0, 0);
        this.freeTable(child, level - 1);
        this.invalidate = true;
        continue;
      }
      const r = this.updateIn(child, level - 1, entryBase, pieceStart, pieceEnd, op);
      if (r !== undefined) return r;
      if (op.kind === "unmap") this.freeIfEmpty(address, child, level - 1);
    }
    return undefined;
  }

  /**
   * After an unmap inside the table at `table` (level `level`, referenced by the entry at
   * `address`): when nothing in it is present any more, clear the entry and free the table, so
   * that a guest that repeatedly gives frames back and takes new ones (balloon churn, each new
   * frame somewhere else in its physical space) cannot grow the host's EPT without bound. Xen's
   * p2m code frees such pages too (p2m_free_entry / the paging pool they return to). The INVEPT
   * the unmap already asks for (`invalidate`) covers the paging-structure caches.
   */
  private freeIfEmpty(address: number, table: number, level: number): void {
    const e = this.e;
    for (let i = 0; i < 512; i++) {
      this.read(table + i * 8, e);
      if ((e.lo & EPT_RWX) !== 0) return;
    }
    this.write(address, 0, 0);
    this.freeTable(table, level);
    this.invalidate = true;
  }

  private update(gpa: number, size: number, op: Op): P2mUpdate | P2mError {
    const bad = this.checkRange(gpa, size);
    if (bad !== undefined) return bad;
    this.begin();
    const r = this.updateIn(this.root, this.levels, 0, gpa, gpa + size, op);
    return r ?? this.done();
  }

  /** The table the entry at `address` references, allocating it (or splitting a large page) as needed. */
  private tableUnder(address: number, level: number): number | P2mError {
    const e = this.e;
    this.read(address, e);
    if ((e.lo & EPT_RWX) === 0) {
      const frame = this.frames.allocate();
      if (frame === undefined) return error("out-of-frames", "no frame for an EPT paging structure");
      this.tables++;
      const t = makeEptEntry(frame * PAGE_SIZE, EPT_RWX);
      this.write(address, t.lo, t.hi);
      return frame * PAGE_SIZE;
    }
    if (isLeaf(e.lo, level)) {
      const r = this.splitEntry(address, level, e.lo, e.hi);
      if (r !== undefined) return r;
      this.read(address, e);
    }
    return eptEntryAddress(e.lo, e.hi);
  }

  /** Replace the large leaf at `address` by a table of 512 leaves one level down, same attributes. */
  private splitEntry(address: number, level: number, lo: number, hi: number): P2mError | undefined {
    const frame = this.frames.allocate();
    if (frame === undefined) return error("out-of-frames", "no frame to split a large page");
    this.tables++;
    const table = frame * PAGE_SIZE;
    const child = level - 1;
    const base = eptEntryAddress(lo, hi, level === 2 ? EPT_LO_ADDR_MASK_2M : EPT_LO_ADDR_MASK_1G);
    const step = 2 ** levelPageShift(child);
    const bits = (lo & (EPT_RWX | EPT_MT_MASK | EPT_IPAT | EPT_A | EPT_D)) | (child > 1 ? EPT_PAGE_SIZE : 0);
    for (let i = 0; i < 512; i++) {
      const leaf = makeEptEntry(base + i * step, bits);
      this.write(table + i * 8, leaf.lo, leaf.hi);
    }
    const t = makeEptEntry(table, EPT_RWX | (lo & EPT_A));
    this.write(address, t.lo, t.hi);
    this.invalidate = true;
    return undefined;
  }

  /** Free the table at `level` (1 = an EPT page table) and every table under it. */
  private freeTable(table: number, level: number): void {
    if (level > 1) {
      const e = this.e;
      for (let i = 0; i < 512; i++) {
        this.read(table + i * 8, e);
        if ((e.lo & EPT_RWX) !== 0 && !isLeaf(e.lo, level)) this.freeTable(eptEntryAddress(e.lo, e.hi), level - 1);
      }
    }
    this.memory.writeBytes(table, ZERO_PAGE);
    this.frames.free((table / PAGE_SIZE) as Mfn);
    this.tables--;
  }

  private entryAt(gpa: number, level: number): { address: number; lo: number; hi: number } | undefined {
    let table: number = this.root;
    const e = this.e;
    for (let l = this.levels; l >= level; l--) {
      const address = table + indexOf(gpa, l) * 8;
      this.read(address, e);
      if (l === level) return { address, lo: e.lo, hi: e.hi };
      if ((e.lo & EPT_RWX) === 0 || isLeaf(e.lo, l)) return undefined;
      table = eptEntryAddress(e.lo, e.hi);
    }
    return undefined;
  }

  private checkRange(gpa: number, size: number): P2mError | undefined {
    const bad = checkAligned("guest-physical address", gpa) ?? checkAligned("size", size);
    if (bad !== undefined) return bad;
    if (size <= 0) return error("misaligned", "size must be positive");
    if (gpa + size > this.limit) return error("beyond-address-width", `gpa 0x${gpa.toString(16)} + 0x${size.toString(16)} is beyond the ${this.levels}-level EPT's reach`);
    return undefined;
  }

  private checkPerms(perms: number): P2mError | undefined {
    if ((perms & (EPT_R | EPT_W)) === EPT_W) return error("bad-permissions", "write without read is an EPT misconfiguration");
    if ((perms & EPT_RWX) === EPT_X && !this.caps.executeOnly) return error("bad-permissions", "execute-only is not supported by these capabilities");
    return undefined;
  }

  private begin(): void {
    this.written = 0;
    this.invalidate = false;
  }

  private done(): P2mUpdate {
    return { kind: "p2m-update", invalidate: this.invalidate, entries: this.written };
  }

  private read(address: number, out: U64): void {
    const r = this.memory.read64(address, out);
    if (r !== undefined) throw new Error(`vtlab bug: EPT table at 0x${address.toString(16)} is outside machine memory`);
  }

  private write(address: number, lo: number, hi: number): void {
    const r = this.memory.write64(address, lo, hi);
    if (r !== undefined) throw new Error(`vtlab bug: EPT table at 0x${address.toString(16)} is outside machine memory`);
    this.written++;
  }
}

const ZERO_PAGE = new Uint8Array(PAGE_SIZE);

/** Index of `gpa` in a table at `level` (bits 12+9(level-1)+8 : 12+9(level-1)). */
function indexOf(gpa: number, level: number): number {
  return Math.floor(gpa / 2 ** levelPageShift(level)) % 512;
}

/** The entry maps a page: any PTE, or an EPT PDE/PDPTE with bit 7 set. */
function isLeaf(lo: number, level: number): boolean {
  return level === 1 || (level <= 3 && (lo & EPT_PAGE_SIZE) !== 0);
}

function checkAligned(what: string, value: number): P2mError | undefined {
  if (!Number.isSafeInteger(value) || value < 0 || value % PAGE_SIZE !== 0) return error("misaligned", `${what} 0x${value.toString(16)} is not a 4 KiB multiple`);
  return undefined;
}

function error(reason: P2mError["reason"], message: string): P2mError {
  return { kind: "p2m-error", reason, message };
}

/** Bits 2:0 named. */
export const EptPerms = { None: 0, R: EPT_R, RW: EPT_R | EPT_W, RX: EPT_R | EPT_X, RWX: EPT_RWX, X: EPT_X } as const;
