/**
 * The remapping unit's translation caches (VT-d 6.1 to 6.2): the context cache (requester id ->
 * context entry) and the IOTLB (domain id + page -> machine page and permissions).
 *
 * With CAP_REG.CM = 0 only successful translations are cached: not-present and erroneous entries
 * never are. Nothing here reads memory: an entry stays exactly as it was cached until software
 * invalidates it, so a stale translation after an unmap without invalidation keeps working, as
 * on hardware.
 */

/**
 * A set-associative IOTLB with LRU replacement within a set. Entries are tagged with the domain
 * id and hold 4 KiB, 2 MiB or 1 GiB pages. Storage is typed arrays, so a lookup allocates nothing.
 */
export class Iotlb {
  readonly sets: number;
  readonly ways: number;
  private readonly valid: Uint8Array;
  private readonly domain: Uint16Array;
  /** Page level of the entry: 1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB. */
  private readonly level: Uint8Array;
  /** Page number at the entry's own size: iova / 2^(12 + 9 * (level - 1)). */
  private readonly tag: Float64Array;
  /** Machine address of the start of the page. */
  private readonly frame: Float64Array;
  /** Effective R/W permissions (bit 0 read, bit 1 write). */
  private readonly perm: Uint8Array;
  private readonly stamp: Float64Array;
  private tick = 0;
  /** Valid entries per level (index 1..3), to skip probing sizes nobody uses. */
  private readonly perLevel = new Int32Array(4);
  hits = 0;
  misses = 0;
  evictions = 0;

  constructor(sets = 16, ways = 4) {
    if (!Number.isInteger(sets) || sets < 1 || (sets & (sets - 1)) !== 0 || !Number.isInteger(ways) || ways < 1) {
      throw new RangeError(`IOTLB geometry must be a power-of-two number of sets and at least one way; got ${sets}x${ways}`);
    }
    this.sets = sets;
    this.ways = ways;
    const n = sets * ways;
    this.valid = new Uint8Array(n);
    this.domain = new Uint16Array(n);
    this.level = new Uint8Array(n);
    this.tag = new Float64Array(n);
    this.frame = new Float64Array(n);
    this.perm = new Uint8Array(n);
    this.stamp = new Float64Array(n);
  }

  get capacity(): number {
    return this.sets * this.ways;
  }

  /** Number of valid entries. */
  get size(): number {
    return (this.perLevel[1] as number) + (this.perLevel[2] as number) + (this.perLevel[3] as number);
  }

  /** The slot caching `iova` for `domainId`, or -1. Counts a hit or a miss. */
  lookup(domainId: number, iova: number): number {
    for (let level = 1; level <= 3; level++) {
      if (this.perLevel[level] === 0) continue;
      const tag = Math.floor(iova / LEVEL_SIZE[level]!);
      const base = this.setOf(domainId, tag, level) * this.ways;
      for (let w = 0; w < this.ways; w++) {
        const s = base + w;
        if (this.valid[s] === 1 && this.tag[s] === tag && this.domain[s] === domainId && this.level[s] === level) {
          this.stamp[s] = ++this.tick;
          this.hits++;
          return s;
        }
      }
    }
    this.misses++;
    return -1;
  }

  frameOf(slot: number): number {
    return this.frame[slot] as number;
  }

  permOf(slot: number): number {
    return this.perm[slot] as number;
  }

  levelOf(slot: number): number {
    return this.level[slot] as number;
  }

  /** Cache a translation of the page of `level` containing `iova`. Evicts the set's least recently used entry. */
  insert(domainId: number, iova: number, level: number, frameBase: number, perm: number): void {
    const tag = Math.floor(iova / LEVEL_SIZE[level]!);
    const base = this.setOf(domainId, tag, level) * this.ways;
    let victim = base;
    for (let w = 0; w < this.ways; w++) {
      const s = base + w;
      if (this.valid[s] === 0) {
        victim = s;
        break;
      }
      if (this.tag[s] === tag && this.domain[s] === domainId && this.level[s] === level) {
        victim = s;
        break;
      }
      if ((this.stamp[s] as number) < (this.stamp[victim] as number)) victim = s;
    }
    if (this.valid[victim] === 1) {
      this.perLevel[this.level[victim] as number]!--;
      if (!(this.tag[victim] === tag && this.domain[victim] === domainId && this.level[victim] === level)) this.evictions++;
    }
    this.valid[victim] = 1;
    this.domain[victim] = domainId;
    this.level[victim] = level;
    this.tag[victim] = tag;
    this.frame[victim] = frameBase;
    this.perm[victim] = perm;
    this.stamp[victim] = ++this.tick;
    this.perLevel[level]!++;
  }

  /** Drop one slot (a hit whose permissions did not allow the access: re-walk instead). */
  drop(slot: number): void {
    if (this.valid[slot] === 1) {
      this.valid[slot] = 0;
      this.perLevel[this.level[slot] as number]!--;
    }
  }

  /** Global invalidation. Returns how many entries it dropped. */
  invalidateAll(): number {
    let n = 0;
    for (let s = 0; s < this.valid.length; s++) if (this.valid[s] === 1) n++;
    this.valid.fill(0);
    this.perLevel.fill(0);
    return n;
  }

  /** Domain-selective invalidation. */
  invalidateDomain(domainId: number): number {
    let n = 0;
    for (let s = 0; s < this.valid.length; s++) {
      if (this.valid[s] === 1 && this.domain[s] === domainId) {
        this.drop(s);
        n++;
      }
    }
    return n;
  }

  /**
   * Page-selective invalidation within a domain: every entry of `domainId` whose page overlaps
   * [address, address + 2^(12 + addressMask)) is dropped, super pages included.
   */
  invalidatePages(domainId: number, address: number, addressMask: number): number {
    const start = address;
    const end = address + 2 ** (12 + addressMask);
    let n = 0;
    for (let s = 0; s < this.valid.length; s++) {
      if (this.valid[s] !== 1 || this.domain[s] !== domainId) continue;
      const size = LEVEL_SIZE[this.level[s] as number]!;
      const pageStart = (this.tag[s] as number) * size;
      if (pageStart < end && start < pageStart + size) {
        this.drop(s);
        n++;
      }
    }
    return n;
  }

  private setOf(domainId: number, tag: number, level: number): number {
    // Low bits of the page number, folded with the next bits, the domain and the size.
    const t = tag % 0x1_0000_0000;
    return ((t ^ (t >>> 7) ^ Math.imul(domainId, 0x9e37) ^ (level * 0x55)) & (this.sets - 1)) >>> 0;
  }
}

/** Bytes covered by a page at level 1..3. */
const LEVEL_SIZE = [0, 0x1000, 0x20_0000, 0x4000_0000] as const;

/** A context entry as the context cache holds it (only present, valid entries are cached). */
export interface CachedContext {
  readonly domainId: number;
  readonly translationType: number;
  readonly slptptr: number;
  /** Second-level table levels (3 or 4). */
  readonly levels: number;
  /** min(MGAW, AGAW) in bits. */
  readonly addressBits: number;
  readonly faultProcessingDisable: boolean;
}

/**
 * The context cache, keyed by source id (bus << 8 | devfn). Only valid, present context entries
 * are cached. Capacity is unbounded (at most 65,536 source ids): the model keeps what hardware
 * may keep, and invalidation is what makes a change visible.
 */
export class ContextCache {
  private readonly entries = new Map<number, CachedContext>();
  hits = 0;
  misses = 0;

  get size(): number {
    return this.entries.size;
  }

  lookup(sourceId: number): CachedContext | undefined {
    const e = this.entries.get(sourceId);
    if (e === undefined) this.misses++;
    else this.hits++;
    return e;
  }

  insert(sourceId: number, entry: CachedContext): void {
    this.entries.set(sourceId, entry);
  }

  invalidateAll(): number {
    const n = this.entries.size;
    this.entries.clear();
    return n;
  }

  invalidateDomain(domainId: number): number {
    let n = 0;
    for (const [sid, e] of this.entries) {
      if (e.domainId === domainId) {
        this.entries.delete(sid);
        n++;
      }
    }
    return n;
  }

  /**
   * Device-selective invalidation: source id `sourceId` with the function mask applied
   * (VT-d CCMD_REG.FM: 0 none, 1 ignore function bit 2, 2 bits 2:1, 3 bits 2:0).
   */
  invalidateDevice(sourceId: number, functionMask: number): number {
    const ignore = functionMask === 0 ? 0 : functionMask === 1 ? 0b100 : functionMask === 2 ? 0b110 : 0b111;
    let n = 0;
    for (const sid of [...this.entries.keys()]) {
      if ((sid & ~ignore) === (sourceId & ~ignore & 0xffff)) {
        this.entries.delete(sid);
        n++;
      }
    }
    return n;
  }
}
