/**
 * Simulated time. Everything inside the simulation advances this clock by modelled cycles; no
 * wall clock is ever read, so runs are deterministic. Timers fire in deadline order, ties in the
 * order they were scheduled.
 */
export type TimerCallback = (now: number) => void;

interface Timer {
  readonly id: number;
  readonly at: number;
  readonly seq: number;
  readonly callback: TimerCallback;
}

/** A default core clock of 2 GHz: a round figure for a server core of the VT-x era. */
export const DEFAULT_FREQUENCY_HZ = 2_000_000_000;

export class SimClock {
  /** Cycles elapsed since the clock was made. */
  private now = 0;
  private heap: Timer[] = [];
  private seq = 0;
  private cancelled = new Set<number>();

  constructor(readonly frequencyHz: number = DEFAULT_FREQUENCY_HZ) {
    if (!(frequencyHz > 0) || !Number.isFinite(frequencyHz)) {
      throw new RangeError(`SimClock frequency must be a positive number of Hz; got ${frequencyHz}`);
    }
    this.cyclesPerNs = frequencyHz / 1e9;
  }

  get cycles(): number {
    return this.now;
  }

  /**
   * Elapsed simulated time in nanoseconds: cycles divided by cycles per nanosecond, which is
   * exact whenever that ratio is (2 for the default 2 GHz), so a deadline of a whole nanosecond is
   * reached at exactly its cycle. (cycles * 1e9 / Hz rounded once the product passed 2^53, about
   * 4.5 s into a run at 2 GHz: 9914494698 cycles read as 4957247348.999999 ns, and a timer due at
   * 4957247349 ns never came due.)
   */
  get nanoseconds(): number {
    return this.now / this.cyclesPerNs;
  }
  private readonly cyclesPerNs: number;

  cyclesFromNanoseconds(ns: number): number {
    return Math.round((ns * this.frequencyHz) / 1e9);
  }

  /** Advance by `cycles` (>= 0). Timers are not fired here: call `runDue`. */
  advance(cycles: number): void {
    if (!(cycles >= 0)) throw new RangeError(`cannot advance the clock by ${cycles} cycles`);
    this.now += cycles;
  }

  /** Jump to the next timer deadline if it lies ahead; returns the new time. */
  advanceToNextDeadline(): number {
    const next = this.nextDeadline();
    if (next !== undefined && next > this.now) this.now = next;
    return this.now;
  }

  /** Schedule `callback` at absolute cycle `at`; returns an id for `cancel`. */
  schedule(at: number, callback: TimerCallback): number {
    const timer: Timer = { id: ++this.seq, at, seq: this.seq, callback };
    this.heap.push(timer);
    this.siftUp(this.heap.length - 1);
    return timer.id;
  }

  /** Schedule `callback` `delay` cycles from now. */
  after(delay: number, callback: TimerCallback): number {
    return this.schedule(this.now + delay, callback);
  }

  cancel(id: number): void {
    this.cancelled.add(id);
  }

  /** Deadline of the earliest pending timer, if any. */
  nextDeadline(): number | undefined {
    this.dropCancelled();
    return this.heap[0]?.at;
  }

  /** Fire every timer whose deadline has passed; returns how many fired. */
  runDue(): number {
    let fired = 0;
    for (;;) {
      this.dropCancelled();
      const top = this.heap[0];
      if (top === undefined || top.at > this.now) return fired;
      this.pop();
      fired++;
      top.callback(this.now);
    }
  }

  private dropCancelled(): void {
    while (this.heap.length > 0 && this.cancelled.has((this.heap[0] as Timer).id)) {
      this.cancelled.delete((this.heap[0] as Timer).id);
      this.pop();
    }
  }

  private before(a: Timer, b: Timer): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  private pop(): void {
    const last = this.heap.pop() as Timer;
    if (this.heap.length > 0) {
      this.heap[0] = last;
      this.siftDown(0);
    }
  }

  private siftUp(i: number): void {
    const h = this.heap;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(h[i] as Timer, h[p] as Timer)) break;
      [h[i], h[p]] = [h[p] as Timer, h[i] as Timer];
      i = p;
    }
  }

  private siftDown(i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.before(h[l] as Timer, h[m] as Timer)) m = l;
      if (r < h.length && this.before(h[r] as Timer, h[m] as Timer)) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m] as Timer, h[i] as Timer];
      i = m;
    }
  }
}
