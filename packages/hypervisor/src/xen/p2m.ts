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
import type { HostFrames } from "../host/frames.js";
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
 * max_pages): the RAM extent it was built with, less the frames given back, plus single frames
 * allocated since (XENMEM_populate_physmap, XENMEM_increase_reservation). Hypervisor frames the
 * domain uses (EPT or shadow tables, the grant table, shared_info) are not memory: they are Xen
 * heap pages, outside tot_pages, kept by `Domain.frameAllocator`.
 */
export class DomainPages {
  /** The extent the domain was built with. */
  private readonly first: number;
  private readonly count: number;
  /** Frames of the extent given back (allocated on the first release). */
  private released: Uint8Array | undefined;
  /** Frames allocated one by one since. */
  private readonly extra = new Set<number>();
  private tot: number;
  /** Xen's max_pages: the most memory the domain may own, in frames (its configured memory). */
  maxPages: number;

  constructor(
    private readonly frames: HostFrames,
    first: Mfn,
    count: number,
  ) {
    this.first = first;
    this.count = count;
    this.tot = count;
    this.maxPages = count;
  }

  /** Frames owned now (Xen's domain_tot_pages). */
  get totPages(): number {
    return this.tot;
  }

  /** The domain owns machine frame `mfn` as memory. */
  owns(mfn: number): boolean {
    if (mfn >= this.first && mfn < this.first + this.count) return this.released === undefined || this.released[mfn - this.first] === 0;
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

  /** Record a frame just allocated as owned (a frame of the original extent given back earlier and allocated again is owned again). */
  private take(f: number): void {
    if (f >= this.first && f < this.first + this.count && this.released !== undefined) this.released[f - this.first] = 0;
    else this.extra.add(f);
  }

  /**
   * Give frame `mfn` up (it must be owned): it leaves the reservation now and returns to the host
   * through `refs` (at once, or when the last foreign mapping of it goes).
   */
  release(mfn: Mfn, refs: FrameRefs): void {
    if (!this.owns(mfn)) throw new Error(`vtlab bug: release of frame ${mfn}, which the domain does not own`);
    if (mfn >= this.first && mfn < this.first + this.count) {
      this.released ??= new Uint8Array(this.count);
      this.released[mfn - this.first] = 1;
    } else this.extra.delete(mfn);
    this.tot--;
    refs.free(mfn);
  }

  /** Give every frame back (domain destroy): runs of the extent in one piece where nothing maps them. */
  releaseAll(refs: FrameRefs): void {
    let runStart = -1;
    const flush = (end: number) => {
      if (runStart >= 0) this.frames.freeExtent((this.first + runStart) as Mfn, end - runStart);
      runStart = -1;
    };
    for (let i = 0; i < this.count; i++) {
      const owned = this.released === undefined || this.released[i] === 0;
      const f = (this.first + i) as Mfn;
      if (owned && refs.count(f) === 0) {
        if (runStart < 0) runStart = i;
        continue;
      }
      flush(i);
      if (owned) refs.free(f);
    }
    flush(this.count);
    for (const f of this.extra) refs.free(f as Mfn);
    this.extra.clear();
    this.released = new Uint8Array(this.count).fill(1);
    this.tot = 0;
  }
}
