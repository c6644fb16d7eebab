/**
 * The host's machine-frame allocator: free memory as sorted extents, first fit. Domains get
 * their RAM as few large extents (so a p2m of runs stays small) and the hypervisor gets single
 * frames for EPT tables and VMX pages. Every frame handed out is zeroed; frames given back are
 * zeroed again before reuse, so nothing leaks from one domain to the next.
 */
import { PAGE_SIZE, type MachineMemory, type Mfn } from "@vtlab/arch";

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
