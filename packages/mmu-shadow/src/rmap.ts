/**
 * The shadow code's reverse map (Xen keeps the same knowledge as a count of writable mappings and
 * a back pointer per guest frame, with a brute-force search of the L1 shadows beyond it,
 * sh_remove_write_access): for each machine frame, every shadow leaf entry that maps it. Kept in
 * typed arrays, so filling and clearing a shadow entry (`setLeaf`, on every shadow fault) allocates
 * nothing:
 * - every shadow page has a slot (a dense index, reused from a free list); a shadow entry's node
 *   is `slot * 512 + index`, and its machine address `smfn * 4096 + index * 8`;
 * - the nodes of one machine frame form an intrusive doubly linked list (`next`, `prev`, grown by
 *   doubling), whose head is found by a hash of the frame number (`FrameIndex`).
 */

/** Entries per shadow page (a 4 KiB table of 8-byte entries). */
const ENTRIES = 512;
/** `prev` of a node that is in no list. */
const UNLINKED = -2;
/** `prev` of a list's first node. */
const HEAD = -1;

/**
 * A map from non-negative integer keys (frame numbers, below 2^53) to non-negative int32 values in
 * typed arrays: open addressing with linear probing and backward-shift deletion (no tombstones).
 */
export class FrameIndex {
  private keys = new Float64Array(64).fill(-1);
  private vals = new Int32Array(64);
  private mask = 63;
  private used = 0;

  get size(): number {
    return this.used;
  }

  private slotOf(key: number): number {
    // Fibonacci hashing of the low and high 32 bits.
    const lo = key >>> 0;
    const hi = Math.floor(key / 0x1_0000_0000) | 0;
    return (Math.imul(lo ^ Math.imul(hi, 0x85eb_ca6b), 0x9e37_79b1) >>> 0) & this.mask;
  }

  /** The value for `key`, or -1. */
  get(key: number): number {
    const keys = this.keys;
    for (let i = this.slotOf(key); ; i = (i + 1) & this.mask) {
      const k = keys[i]!;
      if (k === key) return this.vals[i]!;
      if (k === -1) return -1;
    }
  }

  set(key: number, value: number): void {
    if ((this.used + 1) * 2 > this.mask + 1) this.grow();
    const keys = this.keys;
    for (let i = this.slotOf(key); ; i = (i + 1) & this.mask) {
      const k = keys[i]!;
      if (k === key) {
        this.vals[i] = value;
        return;
      }
      if (k === -1) {
        keys[i] = key;
        this.vals[i] = value;
        this.used++;
        return;
      }
    }
  }

  delete(key: number): void {
    const keys = this.keys;
    const mask = this.mask;
    let i = this.slotOf(key);
    for (; ; i = (i + 1) & mask) {
      const k = keys[i]!;
      if (k === key) break;
      if (k === -1) return;
    }
    // Backward-shift: move later entries of the probe run into the hole when their home allows.
    let hole = i;
    for (let j = (i + 1) & mask; keys[j] !== -1; j = (j + 1) & mask) {
      const home = this.slotOf(keys[j]!);
      // j's entry may move to the hole if its home is not cyclically in (hole, j].
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        keys[hole] = keys[j]!;
        this.vals[hole] = this.vals[j]!;
        hole = j;
      }
    }
    keys[hole] = -1;
    this.used--;
  }

  /** Calls `fn(key, value)` for every entry (the map must not change meanwhile). */
  forEach(fn: (key: number, value: number) => void): void {
    const keys = this.keys;
    for (let i = 0; i <= this.mask; i++) if (keys[i] !== -1) fn(keys[i]!, this.vals[i]!);
  }

  private grow(): void {
    const oldKeys = this.keys;
    const oldVals = this.vals;
    const size = oldKeys.length * 2;
    this.keys = new Float64Array(size).fill(-1);
    this.vals = new Int32Array(size);
    this.mask = size - 1;
    this.used = 0;
    for (let i = 0; i < oldKeys.length; i++) if (oldKeys[i] !== -1) this.set(oldKeys[i]!, oldVals[i]!);
  }
}

/** Machine frame -> the shadow leaf entries mapping it (see the file comment). */
export class ReverseMap {
  /** Shadow frame -> its slot. */
  private readonly slotOfSmfn = new FrameIndex();
  /** Slot -> its shadow frame (-1: free). */
  private smfnOfSlot = new Float64Array(16).fill(-1);
  private readonly freeSlots: number[] = [];
  private slots = 0;
  private next = new Int32Array(16 * ENTRIES);
  private prev = new Int32Array(16 * ENTRIES).fill(UNLINKED);
  /** Machine frame -> its list's first node. */
  private readonly heads = new FrameIndex();
  private entries = 0;

  /** Shadow entries in the map. */
  get size(): number {
    return this.entries;
  }

  /** Machine frames with at least one shadow entry mapping them. */
  get frames(): number {
    return this.heads.size;
  }

  /** Give shadow frame `smfn` a slot (when its shadow page is created). */
  addPage(smfn: number): void {
    let slot = this.freeSlots.pop();
    if (slot === undefined) {
      slot = this.slots++;
      if (slot >= this.smfnOfSlot.length) this.growSlots();
    }
    this.smfnOfSlot[slot] = smfn;
    this.slotOfSmfn.set(smfn, slot);
  }

  /** Take shadow frame `smfn`'s slot back (its entries must have been removed). */
  removePage(smfn: number): void {
    const slot = this.slotOfSmfn.get(smfn);
    if (slot < 0) return;
    const base = slot * ENTRIES;
    for (let i = 0; i < ENTRIES; i++) {
      if (this.prev[base + i] !== UNLINKED) throw new Error(`vtlab bug: shadow frame 0x${smfn.toString(16)} freed with entry ${i} still in the reverse map`);
    }
    this.slotOfSmfn.delete(smfn);
    this.smfnOfSlot[slot] = -1;
    this.freeSlots.push(slot);
  }

  private growSlots(): void {
    const n = this.smfnOfSlot.length * 2;
    const s = new Float64Array(n).fill(-1);
    s.set(this.smfnOfSlot);
    this.smfnOfSlot = s;
    const next = new Int32Array(n * ENTRIES);
    next.set(this.next);
    this.next = next;
    const prev = new Int32Array(n * ENTRIES).fill(UNLINKED);
    prev.set(this.prev);
    this.prev = prev;
  }

  private node(at: number): number {
    const slot = this.slotOfSmfn.get(Math.floor(at / 4096));
    if (slot < 0) throw new Error(`vtlab bug: shadow entry 0x${at.toString(16)} is not in a shadow page`);
    return slot * ENTRIES + ((at % 4096) >>> 3);
  }

  /** The machine address of a node's shadow entry. */
  private address(node: number): number {
    return this.smfnOfSlot[(node / ENTRIES) | 0]! * 4096 + (node % ENTRIES) * 8;
  }

  /** Record that the shadow entry at machine address `at` maps machine frame `mfn`. */
  add(at: number, mfn: number): void {
    const n = this.node(at);
    if (this.prev[n] !== UNLINKED) throw new Error(`vtlab bug: shadow entry 0x${at.toString(16)} is in the reverse map twice`);
    const head = this.heads.get(mfn);
    this.next[n] = head;
    this.prev[n] = HEAD;
    if (head >= 0) this.prev[head] = n;
    this.heads.set(mfn, n);
    this.entries++;
  }

  /** Forget that the shadow entry at `at` maps `mfn` (nothing if it was not recorded). */
  remove(at: number, mfn: number): void {
    const n = this.node(at);
    const p = this.prev[n]!;
    if (p === UNLINKED) return;
    const nx = this.next[n]!;
    if (p === HEAD) {
      if (nx >= 0) this.heads.set(mfn, nx);
      else this.heads.delete(mfn);
    } else this.next[p] = nx;
    if (nx >= 0) this.prev[nx] = p;
    this.prev[n] = UNLINKED;
    this.entries--;
  }

  /** The machine address of one shadow entry mapping `mfn`, or -1 (the list's first). */
  first(mfn: number): number {
    const head = this.heads.get(mfn);
    return head < 0 ? -1 : this.address(head);
  }

  /** Calls `fn(at)` for every shadow entry mapping `mfn`; `fn` must not add or remove entries. */
  forEach(mfn: number, fn: (at: number) => void): void {
    for (let n = this.heads.get(mfn); n >= 0; n = this.next[n]!) fn(this.address(n));
  }

  /** Calls `fn(at)` for every shadow entry in the map; `fn` must not add or remove entries. */
  forEachEntry(fn: (at: number) => void): void {
    this.heads.forEach((_mfn, head) => {
      for (let n = head; n >= 0; n = this.next[n]!) fn(this.address(n));
    });
  }
}
