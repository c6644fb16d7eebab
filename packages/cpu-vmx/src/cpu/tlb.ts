/**
 * The TLB's layout: direct-mapped, 4 KiB entries, one set of typed arrays per VPID (the active
 * set's arrays are fields of `Cpu`, the others are kept as `TlbSet` records), and the
 * permission bits precomputed per entry for the fast paths. A leaf module: memory.ts fills and
 * flushes the TLB, code-cache.ts revokes write permission from frames holding decoded code.
 */

export const TLB_BITS = 12;
export const TLB_SIZE = 1 << TLB_BITS;

export const TLB_MASK = TLB_SIZE - 1;
/** tlbFlags bit 3: the index is in the filled list. */
export const TLB_LISTED = 1 << 3;
/** tlbFlags bit 2: the entry is a 4 KiB piece of a larger page. */
export const TLB_LARGE = 1 << 2;
/** tlbFlags bits 13:8: the page's size as a shift (12, 21, 22 or 30), for INVLPG of a large page. */
export const TLB_SHIFT_POS = 8;

/** TLB permission bits, one per access kind, precomputed when an entry is filled. */
export const OK_SUP_READ = 1;
export const OK_SUP_WRITE = 2;
export const OK_USER_READ = 4;
export const OK_USER_WRITE = 8;
export const OK_SUP_FETCH = 16;
export const OK_USER_FETCH = 32;

/**
 * TLB sets kept for VPIDs other than the active one (a guest hypervisor can use every one of the
 * 65535 VPIDs; each set is about 40 KiB). Eviction: the least recently selected set is dropped,
 * which is a flush of that VPID's translations, something the SDM lets a processor do at any
 * time (Vol. 3A 4.10.4.4 "Delayed Invalidation" and 28.3.3.1: software must not rely on a
 * translation staying cached).
 */
export const TLB_MAX_SETS = 64;

export interface TlbSet {
  tag: Float64Array;
  phys: Float64Array;
  ok: Int32Array;
  rights: Int32Array;
  flags: Int32Array;
  view: (DataView | undefined)[];
  largeShifts: number;
  filled: Int32Array;
  filledCount: number;
}

export function clearTlbSet(set: TlbSet): void {
  set.tag.fill(Number.NaN);
  set.flags.fill(0);
  set.filledCount = 0;
  set.largeShifts = 0;
}

export function newTlbSet(): TlbSet {
  return {
    tag: new Float64Array(TLB_SIZE).fill(Number.NaN),
    phys: new Float64Array(TLB_SIZE),
    ok: new Int32Array(TLB_SIZE),
    rights: new Int32Array(TLB_SIZE),
    flags: new Int32Array(TLB_SIZE),
    view: new Array<DataView | undefined>(TLB_SIZE).fill(undefined),
    largeShifts: 0,
    filled: new Int32Array(TLB_SIZE),
    filledCount: 0,
  };
}
