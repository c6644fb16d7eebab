import { type Hpa, type Mfn, type U64, PAGE_MASK, PAGE_SIZE, MAX_PHYS_ADDR_BITS } from "./address.js";

/** An access outside the configured machine memory, or a malformed request. */
export interface MemoryError {
  readonly kind: "memory-error";
  readonly reason: "out-of-range" | "bad-size";
  /** First byte of the access. */
  readonly address: number;
  readonly length: number;
  /** Configured size of the memory the access was made to. */
  readonly limit: number;
}

export function isMemoryError(value: unknown): value is MemoryError {
  return typeof value === "object" && value !== null && (value as MemoryError).kind === "memory-error";
}

/**
 * The one physical-memory access interface. Machine memory implements it; the EPT and the IOMMU
 * translate into it. Reads return the value or a typed error; writes return `undefined` on
 * success. 64-bit values travel as two 32-bit halves (`U64`).
 */
export interface PhysicalMemory {
  readonly size: number;
  read8(address: number): number | MemoryError;
  read16(address: number): number | MemoryError;
  read32(address: number): number | MemoryError;
  /** Reads the 64-bit value into `out` (`lo`, `hi` unsigned). */
  read64(address: number, out: U64): MemoryError | undefined;
  write8(address: number, value: number): MemoryError | undefined;
  write16(address: number, value: number): MemoryError | undefined;
  write32(address: number, value: number): MemoryError | undefined;
  write64(address: number, lo: number, hi: number): MemoryError | undefined;
  /** Copy `into.length` bytes out of memory: all or nothing. */
  readBytes(address: number, into: Uint8Array): MemoryError | undefined;
  /** Copy `from` into memory: all or nothing. */
  writeBytes(address: number, from: Uint8Array): MemoryError | undefined;
}

/** Frames per second-level table of the sparse frame directory (16 MiB of memory each). */
const TABLE_BITS = 12;
const TABLE_FRAMES = 1 << TABLE_BITS;
const TABLE_MASK = TABLE_FRAMES - 1;
const ZERO_FRAME = new Uint8Array(PAGE_SIZE);
/**
 * Frames are backed CHUNK_FRAMES at a time by one ArrayBuffer (64 KiB), each frame a view of its
 * part: allocating a buffer (zeroed memory, a backing store the garbage collector tracks) costs
 * about as much for 64 KiB as for 4 KiB, and a guest touches frames in runs (a kernel threading
 * its free list through every page touched 32,000 frames one by one, 8 µs each). A frame still
 * reads as zeros until written and counts as allocated only once touched; a chunk's buffer is
 * dropped when its last frame is discarded (until then a discarded frame's bytes are zeroed).
 */
const CHUNK_BITS = 4;
const CHUNK_FRAMES = 1 << CHUNK_BITS;

/** The largest machine memory we accept: 2^MAX_PHYS_ADDR_BITS bytes. */
export const MAX_MACHINE_MEMORY = 2 ** MAX_PHYS_ADDR_BITS;

/**
 * Machine (host-physical) memory: sparse 4 KiB frames allocated on first write, so a 64 GiB
 * machine costs only the frames actually touched. Reads of a frame never written return zeros
 * and allocate nothing. Little-endian, as x86 is. Unaligned and frame-crossing accesses work.
 */
export class MachineMemory implements PhysicalMemory {
  readonly size: number;
  /**
   * Frame directory: views[frame >> 12][frame & 0xfff], a frame's DataView (defined exactly when
   * the frame is allocated). Its Uint8Array in `bytes` is made only when a byte-array path
   * (frameView, readBytes, writeBytes, fill) first asks for it: most frames are only ever read
   * and written through the DataView the TLB keeps, so a first touch makes one view, not two.
   */
  private readonly views: (Array<DataView | undefined> | undefined)[];
  private readonly bytes: (Array<Uint8Array | undefined> | undefined)[];
  /** Per directory table: the chunks' buffers and their counts of touched frames (CHUNK_FRAMES). */
  private readonly chunks: (Array<ArrayBuffer | undefined> | undefined)[];
  private readonly chunkLive: (Uint8Array | undefined)[];
  private allocated = 0;

  constructor(size: number) {
    if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE_SIZE !== 0 || size > MAX_MACHINE_MEMORY) {
      throw new RangeError(
        `MachineMemory size must be a positive multiple of ${PAGE_SIZE} bytes up to 2^${MAX_PHYS_ADDR_BITS}; got ${size}`,
      );
    }
    this.size = size;
    const tables = Math.ceil(size / PAGE_SIZE / TABLE_FRAMES);
    this.bytes = new Array(tables);
    this.views = new Array(tables);
    this.chunks = new Array(tables);
    this.chunkLive = new Array(tables);
  }

  /** Number of 4 KiB frames that hold memory (have been written). */
  get allocatedFrames(): number {
    return this.allocated;
  }

  get frameCount(): number {
    return this.size / PAGE_SIZE;
  }

  isAllocated(frame: Mfn): boolean {
    return this.views[frame >>> TABLE_BITS]?.[frame & TABLE_MASK] !== undefined;
  }

  /**
   * The frame's bytes as a live view, for devices: allocates the frame if it was never touched.
   */
  frameView(frame: Mfn): Uint8Array | MemoryError {
    if (!Number.isInteger(frame) || frame < 0 || frame >= this.size / PAGE_SIZE) {
      return this.error("out-of-range", frame * PAGE_SIZE, PAGE_SIZE);
    }
    return this.bytesOf(frame, this.touch(frame));
  }

  /**
   * The frame as a DataView (allocating it if never touched): the CPU's TLB keeps this so a hit
   * reads the frame directly, with no directory lookup.
   */
  frameDataView(frame: Mfn): DataView | MemoryError {
    if (!Number.isInteger(frame) || frame < 0 || frame >= this.size / PAGE_SIZE) {
      return this.error("out-of-range", frame * PAGE_SIZE, PAGE_SIZE);
    }
    return this.touch(frame);
  }

  /** Give a frame's memory back (it reads as zeros again): used when a domain's frames are freed. */
  discardFrame(frame: Mfn): void {
    const ti = frame >>> TABLE_BITS;
    const fi = frame & TABLE_MASK;
    const t = this.views[ti];
    const v = t?.[fi];
    if (v !== undefined) {
      const f = this.bytesOf(frame, v);
      t![fi] = undefined;
      this.bytes[ti]![fi] = undefined;
      this.allocated--;
      const ci = fi >>> CHUNK_BITS;
      const live = this.chunkLive[ti]!;
      if (--live[ci]! === 0) this.chunks[ti]![ci] = undefined;
      else f.fill(0); // the chunk stays: the frame must read as zeros when touched again
    }
  }

  read8(address: number): number | MemoryError {
    if (!(address >= 0 && address < this.size)) return this.error("out-of-range", address, 1);
    const v = this.viewFor(address);
    return v === undefined ? 0 : v.getUint8(address & PAGE_MASK);
  }

  read16(address: number): number | MemoryError {
    if (!(address >= 0 && address + 2 <= this.size)) return this.error("out-of-range", address, 2);
    const off = address & PAGE_MASK;
    if (off > PAGE_SIZE - 2) return this.readSlow(address, 2);
    const v = this.viewFor(address);
    return v === undefined ? 0 : v.getUint16(off, true);
  }

  read32(address: number): number | MemoryError {
    if (!(address >= 0 && address + 4 <= this.size)) return this.error("out-of-range", address, 4);
    const off = address & PAGE_MASK;
    if (off > PAGE_SIZE - 4) return this.readSlow(address, 4);
    const v = this.viewFor(address);
    return v === undefined ? 0 : v.getUint32(off, true);
  }

  read64(address: number, out: U64): MemoryError | undefined {
    if (!(address >= 0 && address + 8 <= this.size)) return this.error("out-of-range", address, 8);
    const off = address & PAGE_MASK;
    if (off > PAGE_SIZE - 8) {
      out.lo = this.readSlow(address, 4);
      out.hi = this.readSlow(address + 4, 4);
      return undefined;
    }
    const v = this.viewFor(address);
    if (v === undefined) {
      out.lo = 0;
      out.hi = 0;
    } else {
      out.lo = v.getUint32(off, true);
      out.hi = v.getUint32(off + 4, true);
    }
    return undefined;
  }

  write8(address: number, value: number): MemoryError | undefined {
    if (!(address >= 0 && address < this.size)) return this.error("out-of-range", address, 1);
    this.touchView(address).setUint8(address & PAGE_MASK, value);
    return undefined;
  }

  write16(address: number, value: number): MemoryError | undefined {
    if (!(address >= 0 && address + 2 <= this.size)) return this.error("out-of-range", address, 2);
    const off = address & PAGE_MASK;
    if (off > PAGE_SIZE - 2) return this.writeSlow(address, 2, value);
    this.touchView(address).setUint16(off, value, true);
    return undefined;
  }

  write32(address: number, value: number): MemoryError | undefined {
    if (!(address >= 0 && address + 4 <= this.size)) return this.error("out-of-range", address, 4);
    const off = address & PAGE_MASK;
    if (off > PAGE_SIZE - 4) return this.writeSlow(address, 4, value);
    this.touchView(address).setUint32(off, value >>> 0, true);
    return undefined;
  }

  write64(address: number, lo: number, hi: number): MemoryError | undefined {
    if (!(address >= 0 && address + 8 <= this.size)) return this.error("out-of-range", address, 8);
    const off = address & PAGE_MASK;
    if (off > PAGE_SIZE - 8) {
      this.writeSlow(address, 4, lo);
      return this.writeSlow(address + 4, 4, hi);
    }
    const v = this.touchView(address);
    v.setUint32(off, lo >>> 0, true);
    v.setUint32(off + 4, hi >>> 0, true);
    return undefined;
  }

  readBytes(address: number, into: Uint8Array): MemoryError | undefined {
    const length = into.length;
    if (!(address >= 0 && address + length <= this.size)) return this.error("out-of-range", address, length);
    let done = 0;
    while (done < length) {
      const a = address + done;
      const off = a & PAGE_MASK;
      const n = Math.min(PAGE_SIZE - off, length - done);
      const frame = (a - off) / PAGE_SIZE;
      const v = this.views[frame >>> TABLE_BITS]?.[frame & TABLE_MASK];
      const f = v === undefined ? ZERO_FRAME : this.bytesOf(frame, v);
      into.set(f.subarray(off, off + n), done);
      done += n;
    }
    return undefined;
  }

  writeBytes(address: number, from: Uint8Array): MemoryError | undefined {
    const length = from.length;
    if (!(address >= 0 && address + length <= this.size)) return this.error("out-of-range", address, length);
    let done = 0;
    while (done < length) {
      const a = address + done;
      const off = a & PAGE_MASK;
      const n = Math.min(PAGE_SIZE - off, length - done);
      const frame = (a - off) / PAGE_SIZE;
      this.bytesOf(frame, this.touch(frame)).set(from.subarray(done, done + n), off);
      done += n;
    }
    return undefined;
  }

  /** Fill `length` bytes with `value` (0 by default): all or nothing. */
  fill(address: Hpa | number, length: number, value = 0): MemoryError | undefined {
    if (!(address >= 0 && length >= 0 && address + length <= this.size)) {
      return this.error("out-of-range", address, length);
    }
    let done = 0;
    while (done < length) {
      const a = address + done;
      const off = a & PAGE_MASK;
      const n = Math.min(PAGE_SIZE - off, length - done);
      const frame = (a - off) / PAGE_SIZE;
      if (value === 0 && off === 0 && this.views[frame >>> TABLE_BITS] === undefined) {
        // A whole directory table never touched already reads as zeros: skip to its end, so
        // zeroing a large, mostly untouched range (a 64 GiB domain's RAM) costs what was touched.
        const tableEnd = ((frame >>> TABLE_BITS) + 1) * TABLE_FRAMES * PAGE_SIZE;
        done = Math.min(length, tableEnd - address);
        continue;
      }
      if (value === 0 && n === PAGE_SIZE) this.discardFrame(frame as Mfn);
      else if (value !== 0 || this.isAllocated(frame as Mfn)) this.bytesOf(frame, this.touch(frame)).fill(value, off, off + n);
      done += n;
    }
    return undefined;
  }

  private error(reason: MemoryError["reason"], address: number, length: number): MemoryError {
    return { kind: "memory-error", reason, address, length, limit: this.size };
  }

  private viewFor(address: number): DataView | undefined {
    const frame = (address - (address & PAGE_MASK)) / PAGE_SIZE;
    return this.views[frame >>> TABLE_BITS]?.[frame & TABLE_MASK];
  }

  private touchView(address: number): DataView {
    const frame = (address - (address & PAGE_MASK)) / PAGE_SIZE;
    return this.views[frame >>> TABLE_BITS]?.[frame & TABLE_MASK] ?? this.touch(frame);
  }

  /** The allocated frame's bytes (`view` its DataView), made on first use. */
  private bytesOf(frame: number, view: DataView): Uint8Array {
    const table = this.bytes[frame >>> TABLE_BITS]!;
    const fi = frame & TABLE_MASK;
    let f = table[fi];
    if (f === undefined) {
      f = new Uint8Array(view.buffer, view.byteOffset, PAGE_SIZE);
      table[fi] = f;
    }
    return f;
  }

  /** The frame's DataView, allocating the frame if it was never touched. */
  private touch(frame: number): DataView {
    const ti = frame >>> TABLE_BITS;
    let table = this.views[ti];
    if (table === undefined) {
      table = new Array<DataView | undefined>(TABLE_FRAMES);
      this.views[ti] = table;
      this.bytes[ti] = new Array<Uint8Array | undefined>(TABLE_FRAMES);
      this.chunks[ti] = new Array<ArrayBuffer | undefined>(TABLE_FRAMES >>> CHUNK_BITS);
      this.chunkLive[ti] = new Uint8Array(TABLE_FRAMES >>> CHUNK_BITS);
    }
    const fi = frame & TABLE_MASK;
    let v = table[fi];
    if (v === undefined) {
      const ci = fi >>> CHUNK_BITS;
      const chunks = this.chunks[ti]!;
      let buffer = chunks[ci];
      if (buffer === undefined) {
        buffer = new ArrayBuffer(CHUNK_FRAMES * PAGE_SIZE);
        chunks[ci] = buffer;
      }
      const at = (fi & (CHUNK_FRAMES - 1)) * PAGE_SIZE;
      v = new DataView(buffer, at, PAGE_SIZE);
      table[fi] = v;
      this.chunkLive[ti]![ci]!++;
      this.allocated++;
    }
    return v;
  }

  /** Little-endian read of 2 or 4 bytes that cross a frame boundary (range already checked). */
  private readSlow(address: number, size: number): number {
    let value = 0;
    for (let i = size - 1; i >= 0; i--) {
      const a = address + i;
      const v = this.viewFor(a);
      value = value * 256 + (v === undefined ? 0 : v.getUint8(a & PAGE_MASK));
    }
    return value;
  }

  private writeSlow(address: number, size: number, value: number): undefined {
    let v = value >>> 0;
    for (let i = 0; i < size; i++) {
      const a = address + i;
      this.touchView(a).setUint8(a & PAGE_MASK, v & 0xff);
      v >>>= 8;
    }
    return undefined;
  }
}
