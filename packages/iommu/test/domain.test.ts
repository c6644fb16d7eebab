import { describe, expect, it } from "vitest";
import { MachineMemory, bdf, gfn, mfn, type Hpa, type Mfn } from "@vtlab/arch";
import {
  BumpFrameAllocator,
  ContextInvalidation,
  IommuDomain,
  IotlbInvalidation,
  MapP2m,
  RootTable,
  runMappingWorkload,
  type IommuDomainError,
} from "@vtlab/iommu";
import { GiB, expectOk, machine } from "./machine.js";

const DEV = bdf(0, 3, 0);

function build(p2m: MapP2m, levels: 3 | 4 = 4, large = true) {
  const m = machine();
  const d = IommuDomain.fromP2m(m.memory, m.frames, { domainId: 4, levels, p2m, largePages: { "2M": large, "1G": large } });
  if (!(d instanceof IommuDomain)) throw new Error(d.message);
  return { m, d };
}

describe("second-level tables from a p2m", () => {
  it("use 2 MiB and 1 GiB entries for aligned contiguous runs and 4 KiB pages elsewhere", () => {
    const p2m = new MapP2m();
    for (let i = 0; i < 0x4_0000; i++) p2m.set(gfn(0x4_0000 + i), mfn(0x8_0000 + i)); // 1 GiB run at gpa 1 GiB
    for (let i = 0; i < 512; i++) p2m.set(gfn(0x200 + i), mfn(0x1_0400 + i)); // 2 MiB run at gpa 2 MiB
    for (let i = 0; i < 511; i++) p2m.set(gfn(0x400 + i), mfn(0x1_0800 + i)); // one short of a run
    p2m.set(gfn(0x600), mfn(0x2_0001), false);
    const { d } = build(p2m);
    expect(d.lookup(gfn(0x4_1234))).toEqual({ mfn: 0x8_1234, writable: true, level: 3 });
    expect(d.lookup(gfn(0x234))).toEqual({ mfn: 0x1_0434, writable: true, level: 2 });
    expect(d.lookup(gfn(0x410))).toEqual({ mfn: 0x1_0810, writable: true, level: 1 });
    expect(d.lookup(gfn(0x600))).toEqual({ mfn: 0x2_0001, writable: false, level: 1 });
    expect(d.lookup(gfn(0x5ff))).toBeUndefined();
    // 1 PML4 + 1 PDPT + 1 PD (for the 2 MiB page and the 4 KiB tables) + 2 PTs.
    expect(d.tableFrames).toHaveLength(5);
  });

  it("without large pages everything is 4 KiB", () => {
    const p2m = new MapP2m();
    for (let i = 0; i < 512; i++) p2m.set(gfn(0x200 + i), mfn(0x1_0400 + i));
    const { d } = build(p2m, 4, false);
    expect(d.lookup(gfn(0x234))).toMatchObject({ level: 1 });
  });

  it("map() and unmap() split a super page and keep its other mappings", () => {
    const p2m = new MapP2m();
    for (let i = 0; i < 0x4_0000; i++) p2m.set(gfn(i), mfn(0x8_0000 + i));
    const { d } = build(p2m);
    expect(d.lookup(gfn(5))).toMatchObject({ level: 3 });
    expectOk(d.map(gfn(5), mfn(0x1234), false));
    expect(d.lookup(gfn(5))).toEqual({ mfn: 0x1234, writable: false, level: 1 });
    expect(d.lookup(gfn(6))).toEqual({ mfn: 0x8_0006, writable: true, level: 1 });
    expect(d.lookup(gfn(0x3_ffff))).toEqual({ mfn: 0xb_ffff, writable: true, level: 2 });
    expect(d.unmap(gfn(0x3_fff0))).toEqual({
      kind: "iotlb",
      granularity: IotlbInvalidation.Page,
      domainId: 4,
      address: 0x3_fff0 * 4096,
      addressMask: 0,
      leafOnly: false,
    });
    expect(d.lookup(gfn(0x3_fff0))).toBeUndefined();
    expect(d.lookup(gfn(0x3_fff1))).toMatchObject({ mfn: 0xb_fff1, level: 1 });
    expect(d.unmap(gfn(0x3_fff0))).toBeUndefined();
  });

  it("balloon churn (unmap a frame, map one somewhere new) frees the tables it leaves empty when the allocator can free", () => {
    const memory = new MachineMemory(GiB);
    const inner = new BumpFrameAllocator(memory, 0x100 as Mfn, 64);
    const freeList: Mfn[] = [];
    const frames = {
      allocate: (): Mfn | undefined => {
        const f = freeList.pop();
        if (f === undefined) return inner.allocate();
        memory.writeBytes(f * 4096, new Uint8Array(4096));
        return f;
      },
      free: (f: Mfn) => void freeList.push(f),
    };
    const d = IommuDomain.create(memory, frames, { domainId: 2, levels: 4 });
    if (!(d instanceof IommuDomain)) throw new Error(d.message);
    for (let g = 0; g < 16; g++) expectOk(d.map(gfn(g), mfn(0x1000 + g)));
    const base = d.tableFrames.length; // PML4, PDPT, PD, PT
    for (let k = 0; k < 500; k++) {
      const far = 0x4_0000 * (k + 1) + 0x200 * k; // each in a new 1 GiB region (below 512 GiB): a new PD and PT
      expectOk(d.map(gfn(far), mfn(0x2000 + (k % 100))));
      expect(d.tableFrames.length).toBe(base + 2);
      const inv = d.unmap(gfn(far));
      expect(inv).toMatchObject({ kind: "iotlb", leafOnly: false }); // tables freed: not a leaf-only invalidation
      expect(d.tableFrames.length).toBe(base);
      expect(d.lookup(gfn(far))).toBeUndefined();
    }
    // A leaf cleared in a table that keeps others present frees nothing.
    expect(d.unmap(gfn(3))).toMatchObject({ leafOnly: true });
    expect(d.lookup(gfn(4))).toMatchObject({ mfn: 0x1004 });
    expect(d.tableFrames.length).toBe(base);
    expect(freeList.length + d.tableFrames.length).toBeLessThanOrEqual(base + 2); // the frames went round
  });

  it("refuses gfns beyond the table's reach, bad ids, and reports running out of frames", () => {
    const memory = new MachineMemory(GiB);
    const frames = new BumpFrameAllocator(memory, 0x100 as Mfn, 3);
    const d = IommuDomain.create(memory, frames, { domainId: 1, levels: 3 });
    if (!(d instanceof IommuDomain)) throw new Error(d.message);
    expect(d.map(gfn(2 ** 27), mfn(1))).toMatchObject({ reason: "beyond-address-width" });
    expect(d.map(gfn(0), mfn(1))).toBeUndefined(); // uses the last two frames
    expect(d.map(gfn(0x4_0000), mfn(1))).toMatchObject({ kind: "iommu-domain-error", reason: "out-of-frames" });
    expect(IommuDomain.create(memory, frames, { domainId: 0x1_0000, levels: 4 })).toMatchObject({ reason: "bad-argument" });
    expect(IommuDomain.create(memory, frames, { domainId: 1, levels: 5 as 4 })).toMatchObject({ reason: "bad-argument" });
    expect((IommuDomain.create(memory, frames, { domainId: 1, levels: 4 }) as IommuDomainError).reason).toBe("out-of-frames");
  });

  it("shareTables uses another structure's tables: changes through either are seen by both", () => {
    const p2m = new MapP2m();
    p2m.set(gfn(1), mfn(0x5000));
    const { m, d } = build(p2m);
    const shared = IommuDomain.shareTables(m.memory, m.frames, { domainId: 4, levels: 4, root: d.root });
    if (!(shared instanceof IommuDomain)) throw new Error(shared.message);
    expect(shared.lookup(gfn(1))).toMatchObject({ mfn: 0x5000 });
    expectOk(shared.map(gfn(2), mfn(0x6000)));
    expect(d.lookup(gfn(2))).toMatchObject({ mfn: 0x6000 });
    expect(IommuDomain.shareTables(m.memory, m.frames, { domainId: 4, levels: 4, root: (d.root + 8) as Hpa })).toMatchObject({ reason: "bad-argument" });
  });
});

describe("attach and detach", () => {
  it("write the context entry and say which invalidations are needed", () => {
    const p2m = new MapP2m();
    p2m.set(gfn(1), mfn(0x5000));
    const { m, d } = build(p2m);
    const actions = d.attach(m.root, DEV, { faultProcessingDisable: true });
    expect(actions).toEqual([
      { kind: "context", granularity: ContextInvalidation.Device, domainId: 4, sourceId: DEV, functionMask: 0 },
      { kind: "iotlb", granularity: IotlbInvalidation.Domain, domainId: 4, address: 0, addressMask: 0, leafOnly: false },
    ]);
    expect(m.root.readContext(DEV)).toEqual({ present: true, faultProcessingDisable: true, translationType: 0, slptptr: d.root, addressWidth: 2, domainId: 4 });
    expect(m.root.busPresent(0)).toBe(true);
    expect(m.root.busPresent(1)).toBe(false);
    // Moving the device to another domain flushes the old domain's IOTLB entries too.
    const other = IommuDomain.create(m.memory, m.frames, { domainId: 9, levels: 3 }) as IommuDomain;
    const move = other.attach(m.root, DEV);
    expect(Array.isArray(move) && move.map((r) => r.domainId)).toEqual([9, 4, 9]);
    expect(d.detach(m.root, bdf(0, 7, 0))).toMatchObject({ kind: "iommu-domain-error", reason: "bad-argument" });
  });

  it("a root table without frames is an error value", () => {
    const memory = new MachineMemory(GiB);
    expect(RootTable.create(memory, new BumpFrameAllocator(memory, 0x10 as Mfn, 0))).toMatchObject({ reason: "out-of-frames" });
  });
});

describe("mapping strategies (Ben-Yehuda et al. 2007, Amit et al. 2010)", () => {
  function setup() {
    const m = machine({ iotlbSets: 16, iotlbWays: 4 });
    const d = IommuDomain.create(m.memory, m.frames, { domainId: 3, levels: 4 });
    if (!(d instanceof IommuDomain)) throw new Error(d.message);
    const actions = d.attach(m.root, DEV);
    if (!Array.isArray(actions)) throw new Error(actions.message);
    expectOk(m.driver.invalidateAll(actions));
    return { unit: m.unit, driver: m.driver, domain: d, device: DEV };
  }

  it("strict: every DMA misses, one page-selective invalidation per DMA", () => {
    const r = runMappingWorkload(setup(), { strategy: "strict", buffers: 16, dmas: 1000, bufferFrame: 0x10_0000 });
    expect(r).toMatchObject({ translations: 1000, iotlbMisses: 1000, missRate: 1, invalidations: 1000, maps: 1000, unmaps: 1000 });
  });

  it("deferred: fresh IOVAs still miss every time; one global flush per 250 unmaps", () => {
    const r = runMappingWorkload(setup(), { strategy: "deferred", buffers: 16, dmas: 1000, bufferFrame: 0x10_0000 });
    expect(r).toMatchObject({ iotlbMisses: 1000, invalidations: 4 });
  });

  it("persistent: only compulsory misses while the ring fits the IOTLB", () => {
    const r = runMappingWorkload(setup(), { strategy: "persistent", buffers: 16, dmas: 1000, bufferFrame: 0x10_0000 });
    expect(r).toMatchObject({ iotlbMisses: 16, invalidations: 0, maps: 16, unmaps: 0 });
  });

  it("persistent: a ring far larger than the IOTLB misses on every DMA under LRU", () => {
    const r = runMappingWorkload(setup(), { strategy: "persistent", buffers: 512, dmas: 2048, bufferFrame: 0x10_0000 });
    expect(r.missRate).toBe(1);
  });
});
