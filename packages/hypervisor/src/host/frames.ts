/**
 * The host's machine-frame allocator: free memory as sorted extents, first fit. Domains get
 * their RAM as few large extents (so a p2m of runs stays small), from anywhere in the host
 * (`allocateExtents`: one piece if one is free, else as many pieces as it takes, as Xen's
 * populate_physmap takes frames from wherever the heap has them), aligned to a superpage where
 * a free extent allows it (so the EPT can map 1 GiB and 2 MiB pages); the hypervisor gets
 * single frames for EPT tables and VMX pages. Every frame handed out is zeroed; frames given
 * back are zeroed again before reuse, so nothing leaks from one domain to the next.
 *
 * The host's machine memory is sparse (@vtlab/arch MachineMemory): a frame costs host memory
 * only once written, so the pool can be far larger than what the process has, and handing out a
 * 64 GiB extent costs nothing until the guest touches it.
 */
import { PAGE_SIZE, type MachineMemory, type Mfn } from "@vtlab/arch";

/** xg_dom_x86.c SUPERPAGE_2MB_NR_PFNS: frames in a 2 MiB page. */
const SUPERPAGE_2MB_NR_PFNS = 512;

export interface Extent {
  readonly first: Mfn;
  readonly count: number;
}

export class HostFrames {
  private starts: number[] = [];
  private counts: number[] = [];
  private free = 0;

  constructor(
    private readonly memory: MachineMemory,
    first: Mfn,
    count: number,
  ) {
    if (!Number.isSafeInteger(count) || count <= 0) throw new RangeError(`host frame pool needs a positive count; got ${count}`);
    if ((first + count) * PAGE_SIZE > memory.size) throw new RangeError(`host frame pool [${first}, ${first + count}) lies beyond machine memory (${memory.size} bytes)`);
    this.starts.push(first);
    this.counts.push(count);
    this.free = count;
  }

  /** Frames not handed out. */
  get freeFrames(): number {
    return this.free;
  }

  /** The largest single extent that could be allocated now. */
  get largestExtent(): number {
    let m = 0;
    for (const c of this.counts) if (c > m) m = c;
    return m;
  }

  /** `count` contiguous zeroed frames, or undefined when no free extent is that large. */
  allocateExtent(count: number): Extent | undefined {
    for (let i = 0; i < this.starts.length; i++) {
      const c = this.counts[i]!;
      if (c < count) continue;
      const first = this.starts[i]!;
      if (c === count) {
        this.starts.splice(i, 1);
        this.counts.splice(i, 1);
      } else {
        this.starts[i] = first + count;
        this.counts[i] = c - count;
      }
      this.free -= count;
      return { first: first as Mfn, count };
    }
    return undefined;
  }

  /**
   * `count` contiguous zeroed frames whose first frame is a multiple of `align` (a power of two),
   * taken from the first free extent that holds such a run; undefined if none does. The frames
   * of the extent before and after the run stay free.
   */
  allocateAligned(count: number, align: number): Extent | undefined {
    for (let i = 0; i < this.starts.length; i++) {
      const s = this.starts[i]!;
      const c = this.counts[i]!;
      const first = Math.ceil(s / align) * align;
      if (first + count > s + c) continue;
      const before = first - s;
      const after = s + c - (first + count);
      const ns: number[] = [];
      const nc: number[] = [];
      if (before > 0) {
        ns.push(s);
        nc.push(before);
      }
      if (after > 0) {
        ns.push(first + count);
        nc.push(after);
      }
      this.starts.splice(i, 1, ...ns);
      this.counts.splice(i, 1, ...nc);
      this.free -= count;
      return { first: first as Mfn, count };
    }
    return undefined;
  }

  /**
   * `count` zeroed frames as one or more extents (all or nothing): one piece aligned to `align`
   * frames if the host has one, else one piece anywhere, else the free extents in address order
   * until `count` is met (the last one split). Undefined when fewer than `count` frames are free.
   */
  allocateExtents(count: number, align = 1): Extent[] | undefined {
    if (!Number.isSafeInteger(count) || count <= 0 || count > this.free) return undefined;
    // The alignment asked for, then 2 MiB (SUPERPAGE_2MB_NR_PFNS), then any piece that fits.
    const whole = (align > 1 ? this.allocateAligned(count, align) : undefined) ?? (align > SUPERPAGE_2MB_NR_PFNS ? this.allocateAligned(count, SUPERPAGE_2MB_NR_PFNS) : undefined) ?? this.allocateExtent(count);
    if (whole !== undefined) return [whole];
    const out: Extent[] = [];
    let left = count;
    while (left > 0) {
      const c = this.counts[0]!;
      const e = this.allocateExtent(Math.min(c, left))!;
      out.push(e);
      left -= e.count;
    }
    return out;
  }

  /** One zeroed frame. */
  allocate(): Mfn | undefined {
    return this.allocateExtent(1)?.first;
  }

  /** Give frames back: they are zeroed now, and merged with their neighbours. */
  freeExtent(first: Mfn, count: number): void {
    this.memory.fill(first * PAGE_SIZE, count * PAGE_SIZE, 0);
    let i = 0;
    while (i < this.starts.length && this.starts[i]! < first) i++;
    const prevEnd = i > 0 ? this.starts[i - 1]! + this.counts[i - 1]! : -1;
    if (prevEnd > first || (i < this.starts.length && first + count > this.starts[i]!)) {
      throw new Error(`vtlab bug: frames [${first}, ${first + count}) freed twice`);
    }
    this.starts.splice(i, 0, first);
    this.counts.splice(i, 0, count);
    this.free += count;
    if (i + 1 < this.starts.length && first + count === this.starts[i + 1]) {
      this.counts[i] = this.counts[i]! + this.counts[i + 1]!;
      this.starts.splice(i + 1, 1);
      this.counts.splice(i + 1, 1);
    }
    if (i > 0 && prevEnd === first) {
      this.counts[i - 1] = this.counts[i - 1]! + this.counts[i]!;
      this.starts.splice(i, 1);
      this.counts.splice(i, 1);
    }
  }

  free1(frame: Mfn): void {
    this.freeExtent(frame, 1);
  }
}
