/**
 * The domain's physical-to-machine map (Xen's arch/x86/mm/p2m.c, generic part): the p2m types
 * (reduced to the six vtlab acts on), lookup, the runs a table builder walks, the change hook
 * every reader of the p2m that keeps its own copy needs (EPT tables, shadow entries, the IOMMU's
 * second-level tables: Xen's p2m->set_entry calling iommu_legacy_map / iommu_legacy_unmap), and
 * the frame allocator hypervisor tables come from. The EPT-format tables stay in @vtlab/mmu-ept.
 */
import { PAGE_SIZE, type Gfn, type MachineMemory, type Mfn } from "@vtlab/arch";

/** What a guest frame is (Xen: p2m_ram_rw, p2m_grant_map_rw, p2m_grant_map_ro, p2m_mmio_dm, p2m_populate_on_demand, p2m_invalid). */
export const P2mType = {
  /** Guest RAM backed by a machine frame. */
  Ram: "ram",
  /** Another domain's frame mapped writable through a grant (Xen's p2m_grant_map_rw: EPT R/W, no X). */
  GrantMapRw: "grant_map_rw",
  /** Another domain's frame mapped read-only through a grant (Xen's p2m_grant_map_ro: EPT R only; writes fault). */
  GrantMapRo: "grant_map_ro",
  /** Emulated MMIO: accesses go to the device model (Xen's p2m_mmio_dm). */
  Mmio: "mmio",
  /** Populate on demand: a zeroed frame is allocated on first access. */
  PopulateOnDemand: "pod",
  /** Nothing: an access is a real violation. */
  Absent: "absent",
} as const;
export type P2mType = (typeof P2mType)[keyof typeof P2mType];

export interface P2mEntry {
  readonly type: P2mType;
  /** The machine frame (types with a frame, `p2mHasFrame`: Ram and the grant mappings; 0 otherwise). */
  readonly mfn: Mfn;
}

/** The type is backed by a machine frame (Ram, GrantMapRw, GrantMapRo): its entries carry an mfn. */
export function p2mHasFrame(type: P2mType): boolean {
  return type === P2mType.Ram || type === P2mType.GrantMapRw || type === P2mType.GrantMapRo;
}

/** Xen's p2m_is_grant: a grant mapping of another domain's frame. */
export function p2mIsGrant(type: P2mType): boolean {
  return type === P2mType.GrantMapRw || type === P2mType.GrantMapRo;
}

/** `count` consecutive guest frames of one type; for types with a frame, backed by consecutive machine frames from `mfn`. */
export interface P2mRun {
  readonly gfn: Gfn;
  readonly count: number;
  readonly type: P2mType;
  readonly mfn: Mfn;
}

/**
 * Told after [gfn, gfn + count) became `type` (backed by mfn, mfn + 1, ... for a type with a
 * frame; mfn 0 otherwise). Called synchronously inside `setRange`, once per call.
 */
export type P2mChangeListener = (gfn: Gfn, count: number, type: P2mType, mfn: Mfn) => void;

/** The domain p2m: gfn -> (type, mfn). */
export interface DomainP2m {
  lookup(gfn: Gfn): P2mEntry;
  /** Every run that is not Absent, in ascending gfn order. */
  runs(): Iterable<P2mRun>;
  /** Make [gfn, gfn + count) one type (a type with a frame: backed by mfn, mfn + 1, ...). */
  setRange(gfn: Gfn, count: number, type: P2mType, mfn?: Mfn): void;
  /** Call `listener` after every change (Xen: the IOMMU map/unmap under p2m->set_entry); returns its removal. */
  onChange(listener: P2mChangeListener): () => void;
}

const ABSENT: P2mEntry = Object.freeze({ type: P2mType.Absent, mfn: 0 as Mfn });

/** A p2m kept as sorted runs (a domain has few: RAM banks, MMIO holes, POD ranges). */
export class RangeP2m implements DomainP2m {
  private starts: number[] = [];
  private counts: number[] = [];
  private types: P2mType[] = [];
  private mfns: number[] = [];
  private readonly listeners = new Set<P2mChangeListener>();

  onChange(listener: P2mChangeListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  lookup(gfn: Gfn): P2mEntry {
    const i = this.find(gfn);
    if (i < 0) return ABSENT;
    const type = this.types[i] as P2mType;
    const mfn = p2mHasFrame(type) ? (this.mfns[i] as number) + (gfn - (this.starts[i] as number)) : 0;
    return { type, mfn: mfn as Mfn };
  }

  *runs(): Iterable<P2mRun> {
    for (let i = 0; i < this.starts.length; i++) {
      yield { gfn: this.starts[i] as Gfn, count: this.counts[i] as number, type: this.types[i] as P2mType, mfn: this.mfns[i] as Mfn };
    }
  }

  setRange(gfn: Gfn, count: number, type: P2mType, mfn: Mfn = 0 as Mfn): void {
    if (!Number.isSafeInteger(gfn) || gfn < 0 || !Number.isSafeInteger(count) || count <= 0) {
      throw new RangeError(`vtlab bug: p2m range gfn ${gfn} count ${count}`);
    }
    const end = gfn + count;
    const s: number[] = [];
    const c: number[] = [];
    const t: P2mType[] = [];
    const m: number[] = [];
    const push = (start: number, n: number, ty: P2mType, first: number): void => {
      if (n <= 0 || ty === P2mType.Absent) return;
      const k = s.length - 1;
      // Merge with the previous run when contiguous and compatible.
      if (k >= 0 && t[k] === ty && (s[k] as number) + (c[k] as number) === start && (!p2mHasFrame(ty) || (m[k] as number) + (c[k] as number) === first)) {
        c[k] = (c[k] as number) + n;
        return;
      }
      s.push(start);
      c.push(n);
      t.push(ty);
      m.push(p2mHasFrame(ty) ? first : 0);
    };
    let inserted = false;
    for (let i = 0; i < this.starts.length; i++) {
      const rs = this.starts[i] as number;
      const rc = this.counts[i] as number;
      const rt = this.types[i] as P2mType;
      const rm = this.mfns[i] as number;
      const re = rs + rc;
      if (!inserted && rs >= gfn) {
        push(gfn, count, type, mfn);
        inserted = true;
      }
      if (re <= gfn || rs >= end) {
        if (!inserted && rs >= end) {
          push(gfn, count, type, mfn);
          inserted = true;
        }
        push(rs, rc, rt, rm);
        continue;
      }
      // Overlap: keep the parts outside [gfn, end).
      if (rs < gfn) push(rs, gfn - rs, rt, rm);
      if (!inserted) {
        push(gfn, count, type, mfn);
        inserted = true;
      }
      if (re > end) push(end, re - end, rt, p2mHasFrame(rt) ? rm + (end - rs) : 0);
    }
    if (!inserted) push(gfn, count, type, mfn);
    this.starts = s;
    this.counts = c;
    this.types = t;
    this.mfns = m;
    if (this.listeners.size > 0) {
      const frame = (p2mHasFrame(type) ? mfn : 0) as Mfn;
      for (const l of this.listeners) l(gfn, count, type, frame);
    }
  }

  /** Index of the run holding `gfn`, or -1. */
  private find(gfn: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = this.starts[mid] as number;
      if (gfn < s) hi = mid - 1;
      else if (gfn >= s + (this.counts[mid] as number)) lo = mid + 1;
      else return mid;
    }
    return -1;
  }
}

/** Where EPT paging structures (and anything else the hypervisor needs) get machine frames. */
export interface FrameAllocator {
  /** A zeroed 4 KiB frame, or undefined when none is left. */
  allocate(): Mfn | undefined;
  /** Give a frame back. */
  free(frame: Mfn): void;
}

/** `count` consecutive machine frames from `first`: one piece of the pool a SimpleFrameAllocator hands out. */
export interface FrameRange {
  readonly first: Mfn;
  readonly count: number;
}

/**
 * Hands out the frames of its pool, reusing freed ones first; every frame comes zeroed. The pool
 * is [first, first + count), or any number of ranges from anywhere in machine memory (handed
 * out in the order given): nothing here needs the frames to be one contiguous block.
 */
export class SimpleFrameAllocator implements FrameAllocator {
  private readonly ranges: readonly FrameRange[];
  /** The range handed out from now, and the next frame of it. */
  private range = 0;
  private next: number;
  private handedOut = 0;
  private readonly freed: number[] = [];

  constructor(memory: MachineMemory, first: Mfn, count: number);
  constructor(memory: MachineMemory, ranges: readonly FrameRange[]);
  constructor(
    private readonly memory: MachineMemory,
    firstOrRanges: Mfn | readonly FrameRange[],
    count = 0,
  ) {
    this.ranges = typeof firstOrRanges === "number" ? [{ first: firstOrRanges, count }] : firstOrRanges.map((r) => ({ ...r }));
    for (const r of this.ranges) {
      if (!Number.isSafeInteger(r.first) || r.first < 0 || !Number.isSafeInteger(r.count) || r.count < 0) throw new RangeError(`frame range [${r.first}, +${r.count}) is not a range of frames`);
    }
    this.next = this.ranges[0]?.first ?? 0;
  }

  /** Frames handed out and not given back. */
  get inUse(): number {
    return this.handedOut - this.freed.length;
  }

  allocate(): Mfn | undefined {
    let frame = this.freed.pop();
    if (frame === undefined) {
      while (this.range < this.ranges.length && this.next >= this.ranges[this.range]!.first + this.ranges[this.range]!.count) {
        this.range++;
        this.next = this.ranges[this.range]?.first ?? 0;
      }
      if (this.range >= this.ranges.length) return undefined;
      frame = this.next++;
      this.handedOut++;
    }
    this.memory.fill(frame * PAGE_SIZE, PAGE_SIZE, 0);
    return frame as Mfn;
  }

  free(frame: Mfn): void {
    this.freed.push(frame);
  }
}
