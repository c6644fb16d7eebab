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
 *
 * Layout (a modelling choice, not hardware's): one Int32 `key` per slot packs the domain id and
 * the page level, `(domainId << 2) | level`, with 0 meaning invalid (level is never 0), so a probe
 * compares two numbers; `delta` is machine page start minus IOVA page start, so a hit's machine
 * address is `iova + delta` with no division or modulo.
 */
export class Iotlb {
  readonly sets: number;
  readonly ways: number;
  private readonly setMask: number;
  /** (domainId << 2) | level, 0 when the slot is invalid. Level: 1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB. */
  private readonly key: Int32Array;
  /** Page number at the entry's own size: iova / 2^(12 + 9 * (level - 1)). */
  private readonly tag: Float64Array;
  /** Machine address of the start of the page. */
  private readonly frame: Float64Array;
  /** frame - tag * pageSize: the machine address of a hit is iova + delta. */
  private readonly delta: Float64Array;
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
    this.setMask = sets - 1;
    const n = sets * ways;
    this.key = new Int32Array(n);
    this.tag = new Float64Array(n);
    this.frame = new Float64Array(n);
    this.delta = new Float64Array(n);
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

  /** The slot caching `iova` for `domainId`, or -1. Counts a hit or a miss. Sizes are probed 4 KiB first. */
  lookup(domainId: number, iova: number): number {
    const perLevel = this.perLevel;
    const domainHash = Math.imul(domainId, 0x9e37);
    if (perLevel[1] !== 0) {
      const s = this.probe((domainId << 2) | 1, Math.floor(iova / 0x1000), domainHash ^ 0x55);
      if (s >= 0) return s;
    }
    if (perLevel[2] !== 0) {
      const s = this.probe((domainId << 2) | 2, Math.floor(iova / 0x20_0000), domainHash ^ 0xaa);
      if (s >= 0) return s;
    }
    if (perLevel[3] !== 0) {
      const s = this.probe((domainId << 2) | 3, Math.floor(iova / 0x4000_0000), domainHash ^ 0xff);
      if (s >= 0) return s;
    }
    this.misses++;
    return -1;
  }

  /** One set's probe: on a match, update LRU, count the hit and return the slot. */
  private probe(key: number, tag: number, salt: number): number {
    const t = tag >>> 0; // tag mod 2^32 (tag is a non-negative integer)
    const ways = this.ways;
    const base = (((t ^ (t >>> 7) ^ salt) & this.setMask) >>> 0) * ways;
    const keys = this.key;
    const tags = this.tag;
    for (let s = base, end = base + ways; s < end; s++) {
      if (keys[s] === key && tags[s] === tag) {
        this.stamp[s] = ++this.tick;
        this.hits++;
        return s;
      }
    }
    return -1;
  }

  frameOf(slot: number): number {
    return this.frame[slot] as number;
  }

  /** Machine address minus IOVA for the slot's page: a hit translates `iova` to `iova + deltaOf(slot)`. */
  deltaOf(slot: number): number {
    return this.delta[slot] as number;
  }

  permOf(slot: number): number {
    return this.perm[slot] as number;
  }

  levelOf(slot: number): number {
    return (this.key[slot] as number) & 3;
  }

  /** Cache a translation of the page of `level` containing `iova`. Evicts the set's least recently used entry. */
  insert(domainId: number, iova: number, level: number, frameBase: number, perm: number): void {
    const size = LEVEL_SIZE[level]!;
    const tag = Math.floor(iova / size);
    const key = ((domainId & 0xffff) << 2) | level;
    const base = this.setOf(domainId, tag, level) * this.ways;
    let victim = base;
    for (let w = 0; w < this.ways; w++) {
      const s = base + w;
      if (this.key[s] === 0) {
        victim = s;
        break;
      }
      if (this.tag[s] === tag && this.key[s] === key) {
        victim = s;
        break;
      }
      if ((this.stamp[s] as number) < (this.stamp[victim] as number)) victim = s;
    }
    const old = this.key[victim] as number;
    if (old !== 0) {
      this.perLevel[old & 3]!--;
      if (!(this.tag[victim] === tag && old === key)) this.evictions++;
    }
    this.key[victim] = key;
    this.tag[victim] = tag;
    this.frame[victim] = frameBase;
    this.delta[victim] = frameBase - tag * size;
    this.perm[victim] = perm;
    this.stamp[victim] = ++this.tick;
    this.perLevel[level]!++;
  }

  /** Drop one slot (a hit whose permissions did not allow the access: re-walk instead). */
  drop(slot: number): void {
    const old = this.key[slot] as number;
    if (old !== 0) {
      this.key[slot] = 0;
      this.perLevel[old & 3]!--;
    }
  }

  /** Global invalidation. Returns how many entries it dropped. */
  invalidateAll(): number {
    const n = this.size;
    this.key.fill(0);
    this.perLevel.fill(0);
    return n;
  }

  /** Domain-selective invalidation. */
  invalidateDomain(domainId: number): number {
    let n = 0;
    for (let s = 0; s < this.key.length; s++) {
      const k = this.key[s] as number;
      if (k !== 0 && k >>> 2 === domainId) {
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
    for (let s = 0; s < this.key.length; s++) {
      const k = this.key[s] as number;
      if (k === 0 || k >>> 2 !== domainId) continue;
      const size = LEVEL_SIZE[k & 3]!;
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
    const t = tag >>> 0; // tag mod 2^32
    return ((t ^ (t >>> 7) ^ Math.imul(domainId, 0x9e37) ^ (level * 0x55)) & this.setMask) >>> 0;
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
  /**
   * The same entries indexed by source id 0..0xffff, so a lookup is one array load (the Map keeps
   * insertion order for the invalidation scans and holds any id outside 16 bits).
   */
  private readonly bySourceId: (CachedContext | undefined)[] = Array.from({ length: 0x1_0000 }, () => undefined);
  hits = 0;
  misses = 0;

  get size(): number {
    return this.entries.size;
  }

  lookup(sourceId: number): CachedContext | undefined {
    const e = (sourceId & 0xffff) === sourceId ? this.bySourceId[sourceId] : this.entries.get(sourceId);
    if (e === undefined) this.misses++;
    else this.hits++;
    return e;
  }

  insert(sourceId: number, entry: CachedContext): void {
    this.entries.set(sourceId, entry);
    if ((sourceId & 0xffff) === sourceId) this.bySourceId[sourceId] = entry;
  }

  private remove(sourceId: number): void {
    this.entries.delete(sourceId);
    if ((sourceId & 0xffff) === sourceId) this.bySourceId[sourceId] = undefined;
  }

  invalidateAll(): number {
    const n = this.entries.size;
    for (const sid of this.entries.keys()) if ((sid & 0xffff) === sid) this.bySourceId[sid] = undefined;
    this.entries.clear();
    return n;
  }

  invalidateDomain(domainId: number): number {
    let n = 0;
    for (const [sid, e] of [...this.entries]) {
      if (e.domainId === domainId) {
        this.remove(sid);
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
        this.remove(sid);
        n++;
      }
    }
    return n;
  }
}
