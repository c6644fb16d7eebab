import { MachineMemory, PAGE_SIZE, pagingMode, type Mfn, type PagingMode } from "@vtlab/arch";
import { EptGuestMemory, EptP2m, GuestPageTables, NestedWalker, eptCapabilities, isP2mError, type CacheSwitches, type EptCapabilities, type NestedCacheSizes } from "@vtlab/mmu-ept";
import { SimpleFrameAllocator } from "@vtlab/p2m";

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;
/** EPT table frames come from here (machine frames 32 GiB and up). */
export const TABLE_FRAMES_AT = (32 * GiB) / PAGE_SIZE;
/** Guest RAM in the fixtures: host-physical = guest-physical + this. */
export const HOST_OFFSET = 8 * GiB;

export interface Machine {
  memory: MachineMemory;
  frames: SimpleFrameAllocator;
  ept: EptP2m;
  guest: EptGuestMemory;
  tables: GuestPageTables;
  walker: NestedWalker;
  mode: PagingMode;
  /** Next free guest-physical page for tables (from 1 MiB up). */
  nextTable: () => number;
}

export interface MachineOptions {
  eptLevels?: 4 | 5;
  guestLevels?: 4 | 5;
  caps?: Partial<EptCapabilities>;
  accessedDirty?: boolean;
  switches?: CacheSwitches;
  sizes?: Partial<NestedCacheSizes>;
  /**
   * Map guest-physical [0, ramSize) at HOST_OFFSET with pages up to `eptPageShift` (default 12).
   * Without it, only [0, 16 MiB) (the guest's tables) and [512 MiB, 528 MiB) (its data) are mapped.
   */
  ramSize?: number;
  eptPageShift?: number;
}

/** Machine memory, EPT mapping guest RAM, guest page tables rooted at 1 MiB, and a walker with EPTP loaded. */
export function machine(options: MachineOptions = {}): Machine {
  const memory = new MachineMemory(64 * GiB);
  const frames = new SimpleFrameAllocator(memory, TABLE_FRAMES_AT as Mfn, 1 << 16);
  const caps = eptCapabilities(options.caps);
  const ept = EptP2m.create({ memory, frames, levels: options.eptLevels ?? 4, caps });
  if (isP2mError(ept)) throw new Error(ept.message);
  const ranges = options.ramSize !== undefined || options.eptPageShift !== undefined ? [[0, options.ramSize ?? GiB]] : [[0, 16 * MiB], [512 * MiB, 16 * MiB]];
  for (const [gpa, size] of ranges as [number, number][]) {
    const mapped = ept.map(gpa, HOST_OFFSET + gpa, size, { maxPageShift: options.eptPageShift ?? 12 });
    if (isP2mError(mapped)) throw new Error(mapped.message);
  }
  const guest = new EptGuestMemory(memory, ept);
  let next = 0x10_0000;
  const nextTable = (): number => {
    const a = next;
    next += PAGE_SIZE;
    return a;
  };
  const tables = new GuestPageTables(guest, nextTable, options.guestLevels ?? 4);
  const walker = new NestedWalker(memory, { caps, switches: options.switches, sizes: options.sizes });
  const eptp = ept.eptp(options.accessedDirty ?? false);
  const bad = walker.setEptp(eptp.lo, eptp.hi);
  if (bad !== undefined) throw new Error(bad.message);
  const mode = pagingMode({ la57: options.guestLevels === 5 });
  walker.setGuestContext(tables.root, mode);
  return { memory, frames, ept, guest, tables, walker, mode, nextTable };
}

export function expectDefined<T>(value: T | undefined): T {
  if (value === undefined) throw new Error("expected a value");
  return value;
}

/** Read a 64-bit value of machine memory. */
export function read64(memory: MachineMemory, address: number): { lo: number; hi: number } {
  const out = { lo: 0, hi: 0 };
  memory.read64(address, out);
  return out;
}
