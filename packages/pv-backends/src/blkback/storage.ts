/**
 * What blkback serves a vbd from: a disk of `sectors` sectors of `sectorSize` bytes. Errors are
 * values (false: the I/O failed, answered BLKIF_RSP_ERROR), never exceptions. The hypervisor
 * adapts its ATA `BlockBackend`s (memory, raw image file) to this; `MemoryBlkStorage` is the
 * package's own, for tests, benchmarks and scratch disks.
 */
export interface BlkStorage {
  /** Size in `sectorSize` units. */
  readonly sectors: number;
  /** Logical sector size in bytes: 512 or a power-of-two multiple of it. */
  readonly sectorSize: number;
  /** A read-only disk (xl `access=ro`): writes, barriers with data and discards are refused. */
  readonly readonly?: boolean;
  /** `count` sectors from `sector` into `into[0 .. count * sectorSize)`. */
  read(sector: number, count: number, into: Uint8Array): boolean;
  /** `from.length / sectorSize` sectors at `sector`. */
  write(sector: number, from: Uint8Array): boolean;
  /** Make written data durable (BLKIF_OP_FLUSH_DISKCACHE, barriers). */
  flush(): boolean;
  /** Forget `count` sectors from `sector` (BLKIF_OP_DISCARD); absent: no feature-discard. */
  discard?(sector: number, count: number): boolean;
}

/** A disk held in an ArrayBuffer; discarded sectors read back as zeroes. */
export class MemoryBlkStorage implements BlkStorage {
  readonly data: Uint8Array;
  readonly sectorSize: number;
  readonly readonly: boolean;
  flushes = 0;
  constructor(
    readonly sectors: number,
    options: { readonly sectorSize?: number; readonly readonly?: boolean; readonly data?: Uint8Array } = {},
  ) {
    this.sectorSize = options.sectorSize ?? 512;
    if (!Number.isInteger(sectors) || sectors < 0 || this.sectorSize < 512 || (this.sectorSize & (this.sectorSize - 1)) !== 0) {
      throw new RangeError(`MemoryBlkStorage: ${sectors} sectors of ${this.sectorSize} bytes`);
    }
    this.readonly = options.readonly === true;
    const bytes = sectors * this.sectorSize;
    if (options.data !== undefined && options.data.length !== bytes) throw new RangeError(`MemoryBlkStorage: data of ${options.data.length} bytes for ${bytes}`);
    this.data = options.data ?? new Uint8Array(bytes);
  }
  private inRange(sector: number, count: number): boolean {
    return Number.isInteger(sector) && Number.isInteger(count) && sector >= 0 && count >= 0 && sector + count <= this.sectors;
  }
  read(sector: number, count: number, into: Uint8Array): boolean {
    const len = count * this.sectorSize;
    if (!this.inRange(sector, count) || into.length < len) return false;
    const at = sector * this.sectorSize;
    into.set(this.data.subarray(at, at + len));
    return true;
  }
  write(sector: number, from: Uint8Array): boolean {
    const count = from.length / this.sectorSize;
    if (this.readonly || !this.inRange(sector, count)) return false;
    this.data.set(from, sector * this.sectorSize);
    return true;
  }
  flush(): boolean {
    this.flushes++;
    return true;
  }
  discard(sector: number, count: number): boolean {
    if (this.readonly || !this.inRange(sector, count)) return false;
    this.data.fill(0, sector * this.sectorSize, (sector + count) * this.sectorSize);
    return true;
  }
}
