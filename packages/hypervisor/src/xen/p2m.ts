/**
 * The p2m under a running guest (Xen's arch/x86/mm/p2m.c, p2m_add_page / p2m_remove_page, and
 * the page references of common/page_alloc.c, reduced): one function that changes a domain's
 * guest-physical frame and keeps the memory virtualizer and every vCPU's TLB in step, the
 * domain's page list (which machine frames it owns, against its maximum reservation), and the
 * host's count of foreign references to frames (grant mappings), which keeps a frame out of the
 * allocator while another domain still maps it.
 *
 * A change reaches the hardware-visible state in Xen's order: the p2m entry (`RangeP2m`), then
 * the EPT (`NestedPaging.setGfns`, which INVEPTs its walkers) or, on shadow paging, every shadow
 * entry that mapped the old frame (`ShadowPaging.removeAllMappings`, Xen's
 * sh_remove_all_mappings), then the vCPUs' TLBs: an INVEPT on each vCPU of an EPT domain (the
 * combined GVA-to-HPA mappings its VPID-tagged TLB holds: Xen's ept_sync_domain), a TLB flush on
 * each vCPU of a shadow domain (Xen's flush_tlb_mask of the domain's dirty CPUs), when the frame
 * had a mapping (a new mapping of a frame that had none needs no flush: nothing cached it).
 *
 * Modelled more simply than Xen: page references are counted only for foreign (grant) mappings
 * of a frame; the domain's own p2m entries hold none. A frame its owner gives up (balloon,
 * destroy) while another domain maps it leaves the owner's reservation at once and returns to
 * the host allocator when the last foreign mapping goes (Xen keeps it on the dying domain's
 * page list until then).
 */
import { PAGE_SIZE, gfn as asGfn, type Gfn, type Mfn } from "@vtlab/arch";
import { NestedPaging } from "@vtlab/mmu-ept";
import { P2mType, p2mHasFrame, type P2mEntry } from "@vtlab/p2m";
import type { Extent, HostFrames } from "../host/frames.js";
import type { Domain, Hypervisor } from "../hypervisor.js";

/** INVEPT type 1, single-context (SDM Vol. 3C "INVEPT"). */
const INVEPT_SINGLE_CONTEXT = 1;

/**
 * Guest frames a p2m entry may be given: below 2^(MAXPHYADDR - 12) for the vCPUs' MAXPHYADDR of
 * 46 (cpu-vmx's default), which is also inside the 4-level EPT's 48-bit reach.
 */
export const P2M_GFN_LIMIT = 2 ** (46 - 12);

/** What a guest frame becomes (Xen's p2m types, the ones a running guest's frames change between). */
export type P2mChange =
  | { readonly kind: "ram"; readonly mfn: Mfn }
  /** Another domain's frame, through a grant (p2m_grant_map_rw / p2m_grant_map_ro). */
  | { readonly kind: "grant"; readonly mfn: Mfn; readonly readonly: boolean }
  /**
   * Nothing (p2m_invalid): below 4 GiB the unassigned space of mmio.ts (MMIO with no device:
   * loads read all ones, stores are dropped), above it absent (an access crashes the domain).
   */
  | { readonly kind: "removed" };

/** Guest frames below this (4 GiB) read as unassigned space when nothing is mapped (mmio.ts's markUnassignedBelow4G). */
const UNASSIGNED_LIMIT_GFN = 0x10_0000;

/** Something the p2m update could not do (only the EPT builder can fail: out of table frames). */
export interface P2mUpdateError {
  readonly kind: "p2m-update-error";
  readonly message: string;
}

/**
 * Set guest frame `gfn` of domain `d` to `change`, under its running vCPUs: p2m, then EPT or
 * shadow entries, then the TLBs (see the module comment). What was there before is simply
 * replaced: the caller decides what happens to an old RAM frame (released, kept) and checks that
 * the replacement is allowed. Returns the entry that was replaced, or an error (the p2m is
 * unchanged then).
 */
export function setP2mEntry(d: Domain, gfn: Gfn, change: P2mChange): P2mEntry | P2mUpdateError {
  if (!Number.isSafeInteger(gfn) || gfn < 0 || gfn >= P2M_GFN_LIMIT) throw new Error(`vtlab bug: setP2mEntry gfn ${gfn}`);
  const old = d.p2m.lookup(gfn);
  const type =
    change.kind === "ram" ? P2mType.Ram
    : change.kind === "grant" ? (change.readonly ? P2mType.GrantMapRo : P2mType.GrantMapRw)
    : gfn < UNASSIGNED_LIMIT_GFN ? P2mType.Mmio
    : P2mType.Absent;
  const mfn = change.kind === "removed" ? undefined : change.mfn;
  const paging = d.paging;
  if (paging instanceof NestedPaging) {
    const err = paging.setGfns(gfn, 1, type, mfn);
    if (err !== undefined) {
      // Put the p2m back as it was (setGfns changed it before the EPT refused).
      d.p2m.setRange(gfn, 1, old.type, old.mfn);
      return { kind: "p2m-update-error", message: err.message };
    }
    // Only a frame that was mapped can be cached (the TLB holds no not-present translations, SDM 28.3.1).
    if (p2mHasFrame(old.type)) for (const v of d.vcpus) v.cpu.invept(INVEPT_SINGLE_CONTEXT);
  } else {
    d.p2m.setRange(gfn, 1, type, mfn);
    if (p2mHasFrame(old.type)) {
      paging.removeAllMappings(old.mfn);
      for (const v of d.vcpus) v.cpu.flushTlb(false);
    }
  }
  // Code decoded from a frame the domain no longer has at this gfn must not run again should the
  // frame come back (cpu-vmx keys decoded instructions by machine frame).
  if (old.type === P2mType.Ram && (change.kind === "removed" || change.mfn !== old.mfn)) for (const v of d.vcpus) v.cpu.flushDecoded();
  return old;
}

export function isP2mUpdateError(x: unknown): x is P2mUpdateError {
  return typeof x === "object" && x !== null && (x as P2mUpdateError).kind === "p2m-update-error";
}

/** The p2m entry of a guest-physical address, or undefined outside what a p2m can hold. */
export function p2mEntryAt(d: Domain, gpa: number): P2mEntry | undefined {
  if (!(gpa >= 0) || gpa >= P2M_GFN_LIMIT * PAGE_SIZE) return undefined;
  return d.p2m.lookup(asGfn(Math.floor(gpa / PAGE_SIZE)));
}

/**
 * Foreign references to machine frames, per host (Xen's page reference counts, for the one use
 * vtlab needs: a grant mapping keeps the granted frame alive). A frame freed while referenced
 * is deferred: it returns to the host allocator when the last reference is dropped.
 */
export class FrameRefs {
  private readonly refs = new Map<number, number>();
  private readonly deferred = new Set<number>();

  constructor(private readonly frames: HostFrames) {}

  /** Take a reference (Xen's get_page). */
  get(mfn: Mfn): void {
    this.refs.set(mfn, (this.refs.get(mfn) ?? 0) + 1);
  }

  /** Drop a reference (put_page); the last one frees a frame whose owner already gave it up. */
  put(mfn: Mfn): void {
    const n = this.refs.get(mfn);
    if (n === undefined) throw new Error(`vtlab bug: put of unreferenced frame ${mfn}`);
    if (n > 1) {
      this.refs.set(mfn, n - 1);
      return;
    }
    this.refs.delete(mfn);
    if (this.deferred.delete(mfn)) this.frames.free1(mfn);
  }

  /** References held on `mfn`. */
  count(mfn: Mfn): number {
    return this.refs.get(mfn) ?? 0;
  }

  /** The owner gives the frame up: back to the host now, or when its last reference goes. */
  free(mfn: Mfn): void {
    if (this.refs.has(mfn)) {
      if (this.deferred.has(mfn)) throw new Error(`vtlab bug: frame ${mfn} freed twice`);
      this.deferred.add(mfn);
    } else this.frames.free1(mfn);
  }

  /** Some frame of [first, first + count) has a reference (destroy frees an unreferenced extent in one piece). */
  anyIn(first: number, count: number): boolean {
    for (const f of this.refs.keys()) if (f >= first && f < first + count) return true;
    return false;
  }

  /** Frames given up by their owner and still referenced (not yet back in the allocator). */
  get deferredFrames(): number {
    return this.deferred.size;
  }

  /** Is `mfn` given up by its owner (it belongs to nobody but the references)? */
  isDeferred(mfn: Mfn): boolean {
    return this.deferred.has(mfn);
  }
}

const hostRefs = new WeakMap<Hypervisor, FrameRefs>();

/** The host's frame references (created on first use). */
export function frameRefs(hv: Hypervisor): FrameRefs {
  let r = hostRefs.get(hv);
  if (r === undefined) {
    r = new FrameRefs(hv.frames);
    hostRefs.set(hv, r);
  }
  return r;
}

const holds = new WeakMap<Domain, Mfn[]>();

/**
 * Domain `d` gives one of its own frames to the hypervisor for good (Xen's get_page for
 * map_vcpu_info: VCPUOP_register_vcpu_info): a reference that keeps the frame out of the host
 * allocator even if the guest balloons it out, dropped when the domain is destroyed
 * (`releaseDomainHolds`, from Domain.destroy).
 */
export function holdFrameForDomain(d: Domain, mfn: Mfn): void {
  frameRefs(d.host).get(mfn);
  let list = holds.get(d);
  if (list === undefined) holds.set(d, (list = []));
  list.push(mfn);
}

/** Drop the references `holdFrameForDomain` took for `d` (the frames go back if nothing else holds them). */
export function releaseDomainHolds(d: Domain): void {
  const list = holds.get(d);
  if (list === undefined) return;
  const refs = frameRefs(d.host);
  for (const f of list) refs.put(f);
  holds.delete(d);
}

/**
 * The machine frames a domain owns as its memory (Xen's d->page_list and tot_pages, against
 * max_pages): the RAM extents it was built with (from anywhere in the host, `HostFrames.
 * allocateExtents`), less the frames given back, plus single frames allocated since
 * (XENMEM_populate_physmap, XENMEM_increase_reservation). Hypervisor frames the domain uses (EPT
 * or shadow tables, the grant table, shared_info) are not memory: they are Xen heap pages,
 * outside tot_pages, kept by `Domain.frameAllocator`.
 */
export class DomainPages {
  /** The extents the domain was built with, ascending by first frame. */
  private readonly firsts: number[];
  private readonly counts: number[];
  /** Per extent: a bit per frame given back (allocated on the extent's first release). */
  private readonly released: (Uint32Array | undefined)[];
  /** Frames allocated one by one since. */
  private readonly extra = new Set<number>();
  private tot: number;
  /** Everything was given back (releaseAll): the domain owns nothing any more. */
  private gone = false;
  /** Xen's max_pages: the most memory the domain may own, in frames (its configured memory). */
  maxPages: number;

  constructor(
    private readonly frames: HostFrames,
    extents: readonly Extent[],
  ) {
    const sorted = [...extents].sort((x, y) => x.first - y.first);
    this.firsts = sorted.map((e) => e.first);
    this.counts = sorted.map((e) => e.count);
    this.released = sorted.map(() => undefined);
    let n = 0;
    for (const e of sorted) n += e.count;
    this.tot = n;
    this.maxPages = n;
  }

  /** Frames owned now (Xen's domain_tot_pages). */
  get totPages(): number {
    return this.tot;
  }

  /** Index of the built extent holding `mfn`, or -1. */
  private extentOf(mfn: number): number {
    let lo = 0;
    let hi = this.firsts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const f = this.firsts[mid]!;
      if (mfn < f) hi = mid - 1;
      else if (mfn >= f + this.counts[mid]!) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  private isReleased(k: number, i: number): boolean {
    const r = this.released[k];
    return r !== undefined && (r[i >>> 5]! & (1 << (i & 31))) !== 0;
  }

  private setReleased(k: number, i: number, on: boolean): void {
    let r = this.released[k];
    if (r === undefined) {
      if (!on) return;
      r = this.released[k] = new Uint32Array(Math.ceil(this.counts[k]! / 32));
    }
    if (on) r[i >>> 5] = r[i >>> 5]! | (1 << (i & 31));
    else r[i >>> 5] = r[i >>> 5]! & ~(1 << (i & 31));
  }

  /** The domain owns machine frame `mfn` as memory. */
  owns(mfn: number): boolean {
    if (this.gone) return false;
    const k = this.extentOf(mfn);
    if (k >= 0) return !this.isReleased(k, mfn - this.firsts[k]!);
    return this.extra.has(mfn);
  }

  /** One more zeroed frame within max_pages (Xen's alloc_domheap_pages for the domain), or undefined. */
  allocate(): Mfn | undefined {
    if (this.tot >= this.maxPages) return undefined;
    const f = this.frames.allocate();
    if (f === undefined) return undefined;
    this.take(f);
    this.tot++;
    return f;
  }

  /** `n` contiguous zeroed frames within max_pages (alloc_domheap_pages of order log2(n)): the first, or undefined. */
  allocateExtent(n: number): Mfn | undefined {
    if (!(n >= 1) || this.tot + n > this.maxPages) return undefined;
    const e = this.frames.allocateExtent(n);
    if (e === undefined) return undefined;
    for (let i = 0; i < n; i++) this.take(e.first + i);
    this.tot += n;
    return e.first;
  }

  /** Record a frame just allocated as owned (a frame of a built extent given back earlier and allocated again is owned again). */
  private take(f: number): void {
    const k = this.extentOf(f);
    if (k >= 0) this.setReleased(k, f - this.firsts[k]!, false);
    else this.extra.add(f);
  }

  /**
   * Give frame `mfn` up (it must be owned): it leaves the reservation now and returns to the host
   * through `refs` (at once, or when the last foreign mapping of it goes).
   */
  release(mfn: Mfn, refs: FrameRefs): void {
    if (!this.owns(mfn)) throw new Error(`vtlab bug: release of frame ${mfn}, which the domain does not own`);
    const k = this.extentOf(mfn);
    if (k >= 0) this.setReleased(k, mfn - this.firsts[k]!, true);
    else this.extra.delete(mfn);
    this.tot--;
    refs.free(mfn);
  }

  /**
   * Give every frame back (domain destroy): each built extent in one piece when nothing was given
   * back from it and nothing maps it, else in runs of the frames still owned and unmapped.
   */
  releaseAll(refs: FrameRefs): void {
    for (let k = 0; k < this.firsts.length; k++) {
      const first = this.firsts[k]!;
      const count = this.counts[k]!;
      if (this.released[k] === undefined && !refs.anyIn(first, count)) {
        this.frames.freeExtent(first as Mfn, count);
      } else {
        let runStart = -1;
        const flush = (end: number) => {
          if (runStart >= 0) this.frames.freeExtent((first + runStart) as Mfn, end - runStart);
          runStart = -1;
        };
        for (let i = 0; i < count; i++) {
          const owned = !this.isReleased(k, i);
          const f = (first + i) as Mfn;
          if (owned && refs.count(f) === 0) {
            if (runStart < 0) runStart = i;
            continue;
          }
          flush(i);
          if (owned) refs.free(f);
        }
        flush(count);
      }
      this.released[k] = undefined;
    }
    for (const f of this.extra) refs.free(f as Mfn);
    this.extra.clear();
    this.tot = 0;
    this.gone = true;
  }
}
