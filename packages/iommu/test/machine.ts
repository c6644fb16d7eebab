/**
 * Test fixture: machine memory, an MMIO bus with one remapping unit at a DRHD base address, the
 * register-level driver, a frame allocator for hypervisor-owned table frames, and a root table
 * the unit has latched with translation enabled.
 */
import { MachineMemory, MmioBus, type Mfn, type U64 } from "@vtlab/arch";
import {
  BumpFrameAllocator,
  ContextInvalidation,
  IotlbInvalidation,
  RootTable,
  VTD_REG_PAGE_SIZE,
  VtdDriver,
  VtdUnit,
  type RemappingEventMessage,
  type VtdUnitOptions,
} from "@vtlab/iommu";

/** Where the unit's registers sit (a typical DRHD base on Intel chipsets). */
export const DRHD_BASE = 0xfed9_0000;
export const GiB = 1024 ** 3;
/** Hypervisor-owned frames for tables start at 16 MiB. */
export const TABLE_FRAMES_FIRST = 0x1000;

export interface Machine {
  memory: MachineMemory;
  mmio: MmioBus;
  unit: VtdUnit;
  driver: VtdDriver;
  frames: BumpFrameAllocator;
  root: RootTable;
  events: RemappingEventMessage[];
  invalidationEvents: RemappingEventMessage[];
}

export function machine(options: Partial<VtdUnitOptions> & { enable?: boolean; memoryBytes?: number } = {}): Machine {
  const memory = new MachineMemory(options.memoryBytes ?? 16 * GiB);
  const mmio = new MmioBus();
  const events: RemappingEventMessage[] = [];
  const invalidationEvents: RemappingEventMessage[] = [];
  const unit = new VtdUnit({
    ...options,
    memory,
    onFaultEvent: (m) => events.push(m),
    onInvalidationEvent: (m) => invalidationEvents.push(m),
  });
  const err = mmio.register(DRHD_BASE, VTD_REG_PAGE_SIZE, unit.registers, "dmar0");
  if (err !== undefined) throw new Error(err.message);
  const driver = new VtdDriver(mmio, DRHD_BASE);
  const frames = new BumpFrameAllocator(memory, TABLE_FRAMES_FIRST as Mfn, 0x4000);
  const root = RootTable.create(memory, frames);
  if (!(root instanceof RootTable)) throw new Error(root.message);
  if (options.enable !== false) {
    expectOk(driver.setRootTable(root.address));
    expectOk(driver.invalidate({ kind: "context", granularity: ContextInvalidation.Global, domainId: 0, sourceId: 0, functionMask: 0 }));
    expectOk(driver.invalidate({ kind: "iotlb", granularity: IotlbInvalidation.Global, domainId: 0, address: 0, addressMask: 0, leafOnly: false }));
    expectOk(driver.enableTranslation());
  }
  return { memory, mmio, unit, driver, frames, root, events, invalidationEvents };
}

/** Fail loudly on an error value (tests only). */
export function expectOk(value: unknown): void {
  if (typeof value === "object" && value !== null && "kind" in value && "message" in value) {
    throw new Error(`unexpected error: ${String((value as { message: string }).message)}`);
  }
}

/** Write a 128-bit entry as four dwords. */
export function write128(memory: MachineMemory, at: number, w: readonly [number, number, number, number]): void {
  memory.write64(at, w[0], w[1]);
  memory.write64(at + 8, w[2], w[3]);
}

/** Write a 64-bit entry. */
export function write64(memory: MachineMemory, at: number, e: { lo: number; hi: number }): void {
  memory.write64(at, e.lo, e.hi);
}

export function read64(memory: MachineMemory, at: number): U64 {
  const out = { lo: 0, hi: 0 };
  memory.read64(at, out);
  return out;
}

/** Deterministic bytes for a frame (xorshift from a seed). */
export function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
