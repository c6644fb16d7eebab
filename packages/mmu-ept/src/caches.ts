/**
 * The translation caches a processor keeps while EPT is on (SDM Vol. 3C 29.4.1, "Information
 * That May Be Cached"), each switchable, each counting hits and misses:
 *
 * - the TLB of combined translations: linear page -> host-physical page, with the guest's rights
 *   and the EPT permissions (combined mappings, tagged with the EP4TA);
 * - the nested TLB: guest-physical page -> host-physical page with EPT permissions
 *   (guest-physical mappings; Bhargava et al. call it the NTLB);
 * - paging-structure caches for the guest dimension: linear-address prefix -> host-physical
 *   address of the guest paging structure it leads to, with the rights so far (combined
 *   paging-structure-cache entries), one per guest level above the PT;
 * - paging-structure caches for the EPT dimension: guest-physical prefix -> host-physical address
 *   of the EPT paging structure it leads to, with the permissions so far (guest-physical
 *   paging-structure-cache entries), one per EPT level above the PT.
 *
 * Modelled more simply than hardware: entries are 4 KiB in the TLBs whatever the page sizes;
 * one TLB level; LRU replacement; sizes are modelling assumptions (see `DEFAULT_CACHE_SIZES`).
 * Everything lives in typed arrays: a lookup or a fill allocates nothing.
 */

/** A set-associative cache with LRU replacement: per slot a key, a context tag and three payload words. */
export class TranslationCache {
  readonly sets: number;
  readonly ways: number;
  /** Key per slot; NaN = invalid. */
  readonly key: Float64Array;
  /** Context tag per slot (the EP4TA). */
  readonly ctx: Float64Array;
  /** Payload: a host-physical address. */
  readonly value: Float64Array;
  /** Payload: a guest-physical address. */
  readonly value2: Float64Array;
  /** Payload: rights and flag bits. */
  readonly bits: Int32Array;
  private readonly stamp: Float64Array;
  private clock = 0;
  enabled = true;
  hits = 0;
  misses = 0;
  fills = 0;

  constructor(
    readonly name: string,
    readonly entries: number,
    ways: number,
  ) {
    if (!Number.isInteger(entries) || entries <= 0 || !Number.isInteger(ways) || ways <= 0 || entries % ways !== 0) {
      throw new RangeError(`cache ${name}: ${entries} entries in ${ways} ways`);
    }
    const sets = entries / ways;
    if ((sets & (sets - 1)) !== 0) throw new RangeError(`cache ${name}: the number of sets (${sets}) must be a power of two`);
    this.sets = sets;
    this.ways = ways;
    this.key = new Float64Array(entries).fill(Number.NaN);
    this.ctx = new Float64Array(entries);
    this.value = new Float64Array(entries);
    this.value2 = new Float64Array(entries);
    this.bits = new Int32Array(entries);
    this.stamp = new Float64Array(entries);
  }

  /** The slot holding `key` in context `ctx`, or -1; counts a hit or a miss (nothing when disabled). */
  lookup(key: number, ctx: number): number {
    if (!this.enabled) return -1;
    const base = ((key >>> 0) & (this.sets - 1)) * this.ways;
    for (let s = base; s < base + this.ways; s++) {
      if (this.key[s] === key && this.ctx[s] === ctx) {
        this.hits++;
        this.stamp[s] = ++this.clock;
        return s;
      }
    }
    this.misses++;
    return -1;
  }

  /** Look without counting or touching LRU (for tests and inspection). */
  peek(key: number, ctx: number): number {
    const base = ((key >>> 0) & (this.sets - 1)) * this.ways;
    for (let s = base; s < base + this.ways; s++) if (this.key[s] === key && this.ctx[s] === ctx) return s;
    return -1;
  }

  /** A slot for `key` (its own if present, else the least recently used of its set), or -1 when disabled. */
  fill(key: number, ctx: number): number {
    if (!this.enabled) return -1;
    const base = ((key >>> 0) & (this.sets - 1)) * this.ways;
    let victim = base;
    let oldest = Number.POSITIVE_INFINITY;
    for (let s = base; s < base + this.ways; s++) {
      if (this.key[s] === key && this.ctx[s] === ctx) {
        victim = s;
        break;
      }
      const st = Number.isNaN(this.key[s] as number) ? -1 : (this.stamp[s] as number);
      if (st < oldest) {
        oldest = st;
        victim = s;
      }
    }
    this.key[victim] = key;
    this.ctx[victim] = ctx;
    this.stamp[victim] = ++this.clock;
    this.fills++;
    return victim;
  }

  invalidate(key: number, ctx: number): void {
    const s = this.peek(key, ctx);
    if (s >= 0) this.key[s] = Number.NaN;
  }

  /** Drop `key` in every context. */
  invalidateKey(key: number): void {
    const base = ((key >>> 0) & (this.sets - 1)) * this.ways;
    for (let s = base; s < base + this.ways; s++) if (this.key[s] === key) this.key[s] = Number.NaN;
  }

  /** Drop every entry of context `ctx`; with `keepBits`, keep those whose bits include it (global pages). */
  invalidateContext(ctx: number, keepBits = 0): void {
    for (let s = 0; s < this.entries; s++) {
      if (this.ctx[s] === ctx && (keepBits === 0 || (this.bits[s]! & keepBits) === 0)) this.key[s] = Number.NaN;
    }
  }

  /** Drop everything (with `keepBits`, keep entries whose bits include it). */
  flush(keepBits = 0): void {
    if (keepBits === 0) {
      this.key.fill(Number.NaN);
      return;
    }
    for (let s = 0; s < this.entries; s++) if ((this.bits[s]! & keepBits) === 0) this.key[s] = Number.NaN;
  }

  /** Valid entries. */
  get occupancy(): number {
    let n = 0;
    for (let s = 0; s < this.entries; s++) if (!Number.isNaN(this.key[s] as number)) n++;
    return n;
  }

  resetStats(): void {
    this.hits = 0;
    this.misses = 0;
    this.fills = 0;
  }
}

/** Sizes: entries and ways per structure. Paging-structure caches are sized per level (index = level). */
export interface NestedCacheSizes {
  readonly tlbEntries: number;
  readonly tlbWays: number;
  readonly nestedTlbEntries: number;
  readonly nestedTlbWays: number;
  /** Fully associative paging-structure cache entries for levels 2 (PDE), 3 (PDPTE), 4 (PML4E), 5 (PML5E). */
  readonly pscEntries: readonly [pde: number, pdpte: number, pml4e: number, pml5e: number];
}

/**
 * Modelling assumptions: a 64-entry 4-way TLB (the size of a first-level data TLB for 4 KiB pages
 * on recent Intel cores), a 32-entry 4-way nested TLB, and small fully associative
 * paging-structure caches per level (32 PDE, 4 PDPTE, 2 PML4E, 2 PML5E entries), for each
 * dimension. Real sizes are not architectural; change them with `NestedCaches` options.
 */
export const DEFAULT_CACHE_SIZES: NestedCacheSizes = Object.freeze({
  tlbEntries: 64,
  tlbWays: 4,
  nestedTlbEntries: 32,
  nestedTlbWays: 4,
  pscEntries: [32, 4, 2, 2] as const,
});

/** Which caches are on. */
export interface CacheSwitches {
  /** TLB of combined GVA -> HPA translations. */
  readonly tlb: boolean;
  /** Nested TLB of GPA -> HPA translations. */
  readonly nestedTlb: boolean;
  /** Paging-structure caches of the guest dimension. */
  readonly guestPsc: boolean;
  /** Paging-structure caches of the EPT dimension. */
  readonly eptPsc: boolean;
}

export const ALL_CACHES: CacheSwitches = Object.freeze({ tlb: true, nestedTlb: true, guestPsc: true, eptPsc: true });
export const NO_CACHES: CacheSwitches = Object.freeze({ tlb: false, nestedTlb: false, guestPsc: false, eptPsc: false });

export interface CacheCounts {
  readonly hits: number;
  readonly misses: number;
}

export interface NestedCacheStats {
  readonly tlb: CacheCounts;
  readonly nestedTlb: CacheCounts;
  /** Summed over the guest paging-structure caches (one lookup per level probed). */
  readonly guestPsc: CacheCounts;
  readonly eptPsc: CacheCounts;
}

/** TLB bits: the guest's combined rights (`PageRights`) sit in bits 3:0 next to these. */
export const TLB_EPT_SHIFT = 4; // EPT R/W/X in bits 6:4
export const TLB_GLOBAL = 1 << 8;
/** The guest leaf's dirty flag is set: a write needs no walk. */
export const TLB_GUEST_DIRTY = 1 << 9;
/** The EPT leaf's dirty flag is set (or EPT A/D is off): a write needs no walk. */
export const TLB_EPT_DIRTY = 1 << 10;
/** Nested-TLB bits: EPT R/W/X in bits 2:0, plus this. */
export const NTLB_DIRTY = 1 << 3;

/** The four kinds of cache of one logical processor. */
export class NestedCaches {
  readonly sizes: NestedCacheSizes;
  readonly tlb: TranslationCache;
  readonly nestedTlb: TranslationCache;
  /** Index = guest paging level (2..5); 0 and 1 unused. */
  readonly guestPsc: readonly TranslationCache[];
  /** Index = EPT level (2..5); 0 and 1 unused. */
  readonly eptPsc: readonly TranslationCache[];

  constructor(sizes: Partial<NestedCacheSizes> = {}, switches: CacheSwitches = ALL_CACHES) {
    this.sizes = { ...DEFAULT_CACHE_SIZES, ...sizes };
    const s = this.sizes;
    this.tlb = new TranslationCache("tlb", s.tlbEntries, s.tlbWays);
    this.nestedTlb = new TranslationCache("nested-tlb", s.nestedTlbEntries, s.nestedTlbWays);
    const psc = (prefix: string): TranslationCache[] => {
      const list: TranslationCache[] = [];
      for (let level = 0; level <= 5; level++) {
        const n = level >= 2 ? (s.pscEntries[level - 2] as number) : 1;
        list.push(new TranslationCache(`${prefix}-l${level}`, n, n));
      }
      return list;
    };
    this.guestPsc = psc("guest-psc");
    this.eptPsc = psc("ept-psc");
    this.set(switches);
  }

  /** Switch caches on or off; a cache switched off is emptied. */
  set(switches: Partial<CacheSwitches>): void {
    const apply = (c: TranslationCache, on: boolean | undefined): void => {
      if (on === undefined) return;
      c.enabled = on;
      if (!on) c.flush();
    };
    apply(this.tlb, switches.tlb);
    apply(this.nestedTlb, switches.nestedTlb);
    for (let l = 2; l <= 5; l++) {
      apply(this.guestPsc[l] as TranslationCache, switches.guestPsc);
      apply(this.eptPsc[l] as TranslationCache, switches.eptPsc);
    }
  }

  get switches(): CacheSwitches {
    return { tlb: this.tlb.enabled, nestedTlb: this.nestedTlb.enabled, guestPsc: this.guestPsc[2]!.enabled, eptPsc: this.eptPsc[2]!.enabled };
  }

  stats(): NestedCacheStats {
    const sum = (list: readonly TranslationCache[]): CacheCounts => {
      let hits = 0;
      let misses = 0;
      for (let l = 2; l <= 5; l++) {
        hits += list[l]!.hits;
        misses += list[l]!.misses;
      }
      return { hits, misses };
    };
    return {
      tlb: { hits: this.tlb.hits, misses: this.tlb.misses },
      nestedTlb: { hits: this.nestedTlb.hits, misses: this.nestedTlb.misses },
      guestPsc: sum(this.guestPsc),
      eptPsc: sum(this.eptPsc),
    };
  }

  resetStats(): void {
    for (const c of this.all()) c.resetStats();
  }

  /**
   * Combined mappings (TLB and guest paging-structure caches) for every EP4TA, as a CR3 load or
   * INVVPID does (SDM 29.4.3.1); `keepGlobal` keeps global TLB entries.
   */
  flushGuest(keepGlobal: boolean): void {
    this.tlb.flush(keepGlobal ? TLB_GLOBAL : 0);
    for (let l = 2; l <= 5; l++) this.guestPsc[l]!.flush();
  }

  /** Everything tagged with `ctx` (INVEPT single-context). */
  flushContext(ctx: number): void {
    for (const c of this.all()) c.invalidateContext(ctx);
  }

  /** Everything (INVEPT all-context). */
  flushAll(): void {
    for (const c of this.all()) c.flush();
  }

  private all(): TranslationCache[] {
    return [this.tlb, this.nestedTlb, ...this.guestPsc.slice(2), ...this.eptPsc.slice(2)];
  }
}
