import { describe, expect, it } from "vitest";
import { bdf, gfn, iova, mfn, type Bdf, type Hpa } from "@vtlab/arch";
import {
  ContextInvalidation,
  FSTS_IQE,
  FaultReason,
  ICS_IWC,
  IECTL_REG,
  IQERCD_REG,
  IQH_REG,
  IQT_REG,
  IommuDomain,
  InvalidationQueueError,
  IotlbInvalidation,
  MapP2m,
  TranslationType,
  type InvalidationRequest,
} from "@vtlab/iommu";
import { DRHD_BASE, expectOk, machine, type Machine } from "./machine.js";

const DEV_A = bdf(0, 3, 0);
const DEV_B = bdf(0, 4, 0);

/** Domain `did` with gfns [0, n) -> mfns [base, base + n), attached for `dev`. */
function domain(m: Machine, did: number, dev: Bdf, base: number, n = 16, largePages = false): IommuDomain {
  const p2m = new MapP2m();
  for (let i = 0; i < n; i++) p2m.set(gfn(i), mfn(base + i));
  const d = IommuDomain.fromP2m(m.memory, m.frames, { domainId: did, levels: 4, p2m, largePages: { "2M": largePages, "1G": false } });
  if (!(d instanceof IommuDomain)) throw new Error(d.message);
  const actions = d.attach(m.root, dev);
  if (!Array.isArray(actions)) throw new Error(actions.message);
  expectOk(m.driver.invalidateAll(actions));
  return d;
}

const read = (m: Machine, dev: Bdf, address: number) => m.unit.translate(dev, address, false);
const psi = (did: number, address: number, addressMask = 0): InvalidationRequest => ({
  kind: "iotlb",
  granularity: IotlbInvalidation.Page,
  domainId: did,
  address,
  addressMask,
  leafOnly: true,
});
const dsi = (did: number): InvalidationRequest => ({ kind: "iotlb", granularity: IotlbInvalidation.Domain, domainId: did, address: 0, addressMask: 0, leafOnly: false });
const global: InvalidationRequest = { kind: "iotlb", granularity: IotlbInvalidation.Global, domainId: 0, address: 0, addressMask: 0, leafOnly: false };

describe("IOTLB: a stale entry stays visible until invalidated", () => {
  it("page-selective", () => {
    const m = machine();
    const d = domain(m, 1, DEV_A, 0x10_0000);
    expect(read(m, DEV_A, 0x3008)).toBe(0x10_0003 * 4096 + 8); // cached now
    const req = d.unmap(gfn(3));
    expect(req).toEqual(psi(1, 0x3000));
    expect(read(m, DEV_A, 0x3008)).toBe(0x10_0003 * 4096 + 8); // stale, as on hardware
    expectOk(m.driver.invalidate(req as InvalidationRequest));
    expect(read(m, DEV_A, 0x3008)).toBe(-FaultReason.ReadNotPermitted);
    expect(read(m, DEV_A, 0x4008)).toBe(0x10_0004 * 4096 + 8);
  });

  it("page-selective with an address mask covers 2^AM pages and nothing else", () => {
    const m = machine();
    const d = domain(m, 1, DEV_A, 0x10_0000);
    for (let g = 0; g < 16; g++) read(m, DEV_A, g * 4096);
    for (let g = 4; g < 12; g++) d.unmap(gfn(g));
    expectOk(m.driver.invalidate(psi(1, 0x4000, 2))); // pages 4..7
    for (let g = 4; g < 8; g++) expect(read(m, DEV_A, g * 4096)).toBe(-FaultReason.ReadNotPermitted);
    for (let g = 8; g < 12; g++) expect(read(m, DEV_A, g * 4096)).toBe((0x10_0000 + g) * 4096); // still stale
  });

  it("domain-selective drops one domain's entries only", () => {
    const m = machine();
    const a = domain(m, 1, DEV_A, 0x10_0000);
    const b = domain(m, 2, DEV_B, 0x20_0000);
    read(m, DEV_A, 0x1000);
    read(m, DEV_B, 0x1000);
    a.unmap(gfn(1));
    b.unmap(gfn(1));
    expectOk(m.driver.invalidate(dsi(1)));
    expect(read(m, DEV_A, 0x1000)).toBe(-FaultReason.ReadNotPermitted);
    expect(read(m, DEV_B, 0x1000)).toBe(0x20_0001 * 4096);
  });

  it("global drops everything", () => {
    const m = machine();
    const a = domain(m, 1, DEV_A, 0x10_0000);
    const b = domain(m, 2, DEV_B, 0x20_0000);
    read(m, DEV_A, 0x1000);
    read(m, DEV_B, 0x1000);
    a.unmap(gfn(1));
    b.unmap(gfn(1));
    expect(m.unit.iotlb.size).toBeGreaterThan(0);
    expectOk(m.driver.invalidate(global));
    expect(m.unit.iotlb.size).toBe(0);
    expect(read(m, DEV_A, 0x1000)).toBe(-FaultReason.ReadNotPermitted);
    expect(read(m, DEV_B, 0x1000)).toBe(-FaultReason.ReadNotPermitted);
  });

  it("a cached 2 MiB entry keeps the whole page until a page-selective invalidation inside it", () => {
    const m = machine();
    const d = domain(m, 1, DEV_A, 0x10_0000, 512, true);
    expect(d.lookup(gfn(7))).toMatchObject({ level: 2 });
    expect(read(m, DEV_A, 0x7000)).toBe(0x10_0007 * 4096);
    const req = d.unmap(gfn(0x42)); // splits the 2 MiB page in memory
    expect(req).toMatchObject({ address: 0x42000, leafOnly: false });
    expect(read(m, DEV_A, 0x42000)).toBe(0x10_0042 * 4096); // stale super page
    expectOk(m.driver.invalidate(req as InvalidationRequest));
    expect(read(m, DEV_A, 0x42000)).toBe(-FaultReason.ReadNotPermitted);
    expect(read(m, DEV_A, 0x43000)).toBe(0x10_0043 * 4096);
  });

  it("a hit without the needed permission re-walks instead of faulting from the cache", () => {
    const m = machine();
    const d = domain(m, 1, DEV_A, 0x10_0000);
    d.map(gfn(2), mfn(0x10_0002), false);
    expectOk(m.driver.invalidate(psi(1, 0x2000)));
    expect(m.unit.translate(DEV_A, 0x2000, true)).toBe(-FaultReason.WriteNotPermitted);
    d.map(gfn(2), mfn(0x10_0002), true); // grant W: no invalidation needed for an upgrade
    expect(m.unit.translate(DEV_A, 0x2000, true)).toBe(0x10_0002 * 4096);
  });
});

describe("context cache: a changed context entry is used only after invalidation", () => {
  it("device-selective, domain-selective and global", () => {
    const m = machine();
    domain(m, 1, DEV_A, 0x10_0000);
    domain(m, 2, DEV_B, 0x20_0000);
    expect(read(m, DEV_A, 0x1000)).toBe(0x10_0001 * 4096);
    expect(read(m, DEV_B, 0x1000)).toBe(0x20_0001 * 4096);
    // Flip both devices to pass-through in memory only.
    for (const dev of [DEV_A, DEV_B]) {
      expectOk(m.root.setContext(dev, { domainId: 9, translationType: TranslationType.PassThrough, slptptr: 0 as Hpa, addressWidth: 2 }));
    }
    expect(read(m, DEV_A, 0x1000)).toBe(0x10_0001 * 4096);
    const ctx = (granularity: ContextInvalidation, domainId: number, sourceId: number, functionMask = 0): InvalidationRequest => ({
      kind: "context",
      granularity,
      domainId,
      sourceId,
      functionMask,
    });
    expectOk(m.driver.invalidate(ctx(ContextInvalidation.Device, 0, DEV_A)));
    expect(read(m, DEV_A, 0x1000)).toBe(0x1000);
    expect(read(m, DEV_B, 0x1000)).toBe(0x20_0001 * 4096);
    expectOk(m.driver.invalidate(ctx(ContextInvalidation.Domain, 2, 0)));
    expect(read(m, DEV_B, 0x1000)).toBe(0x1000);
    // Back to translated for A, global invalidation.
    domain(m, 1, DEV_A, 0x10_0000);
    expect(read(m, DEV_A, 0x1000)).toBe(0x10_0001 * 4096);
    expect(m.unit.contextCache.size).toBe(2);
    expectOk(m.driver.invalidate(ctx(ContextInvalidation.Global, 0, 0)));
    expect(m.unit.contextCache.size).toBe(0);
  });

  it("device-selective with a function mask covers the masked functions", () => {
    const m = machine();
    const fns = [bdf(0, 5, 0), bdf(0, 5, 1), bdf(0, 5, 5), bdf(0, 6, 0)];
    for (const f of fns) domain(m, 3, f, 0x30_0000);
    for (const f of fns) read(m, f, 0);
    expect(m.unit.contextCache.size).toBe(4);
    expectOk(m.driver.invalidate({ kind: "context", granularity: ContextInvalidation.Device, domainId: 0, sourceId: bdf(0, 5, 0), functionMask: 3 }));
    expect(m.unit.contextCache.size).toBe(1);
  });

  it("detach: stale until invalidated, then context entry not present (2h)", () => {
    const m = machine();
    const d = domain(m, 1, DEV_A, 0x10_0000);
    read(m, DEV_A, 0x1000);
    const actions = d.detach(m.root, DEV_A);
    if (!Array.isArray(actions)) throw new Error(actions.message);
    expect(read(m, DEV_A, 0x1000)).toBe(0x10_0001 * 4096);
    expectOk(m.driver.invalidateAll(actions));
    expect(read(m, DEV_A, 0x1000)).toBe(-FaultReason.ContextEntryNotPresent);
    expect(d.devices).toEqual([]);
  });

  it("a new root table takes effect only after global invalidations (ESRTPS = 0)", () => {
    const m = machine();
    domain(m, 1, DEV_A, 0x10_0000);
    read(m, DEV_A, 0x1000);
    const empty = m.frames.allocate() as number;
    expectOk(m.driver.setRootTable((empty * 4096) as Hpa));
    expect(read(m, DEV_A, 0x1000)).toBe(0x10_0001 * 4096); // cached context and IOTLB
    expectOk(m.driver.invalidate({ kind: "context", granularity: ContextInvalidation.Global, domainId: 0, sourceId: 0, functionMask: 0 }));
    expectOk(m.driver.invalidate(global));
    expect(read(m, DEV_A, 0x1000)).toBe(-FaultReason.RootEntryNotPresent);
  });
});

describe("queued invalidation", () => {
  const QUEUE = 0x8000_0000 as Hpa; // 2 GiB
  const STATUS = 0x8001_0000 as Hpa;

  it("performs descriptors and completes wait descriptors with a status write", () => {
    const m = machine();
    const d = domain(m, 1, DEV_A, 0x10_0000);
    expectOk(m.driver.enableQueuedInvalidation(m.memory, QUEUE, STATUS));
    read(m, DEV_A, 0x5000);
    d.unmap(gfn(5));
    expect(read(m, DEV_A, 0x5000)).toBe(0x10_0005 * 4096);
    expectOk(m.driver.invalidate(psi(1, 0x5000)));
    expect(read(m, DEV_A, 0x5000)).toBe(-FaultReason.ReadNotPermitted);
    expect(m.mmio.read(DRHD_BASE + IQH_REG, 4)).toBe(m.mmio.read(DRHD_BASE + IQT_REG, 4));
    expect(m.unit.queue.executed).toBe(2); // iotlb_inv_dsc + inv_wait_dsc
    // Register-based invalidation is refused while the queue is on.
    expect(m.mmio.write64(DRHD_BASE + 0x28, 0, 0xa000_0000)).toMatchObject({ kind: "device-error" });
  });

  it("wraps around the ring", () => {
    const m = machine();
    domain(m, 1, DEV_A, 0x10_0000);
    expectOk(m.driver.enableQueuedInvalidation(m.memory, QUEUE, STATUS));
    for (let i = 0; i < 300; i++) expectOk(m.driver.invalidate(psi(1, 0x1000 * (i % 16))));
    expect(m.unit.queue.executed).toBe(600);
  });

  it("an invalid descriptor stops the queue with IQE, IQERCD and the fault event; clearing IQE resumes", () => {
    const m = machine();
    m.driver.setFaultEvent({ address: 0xfee0_0000, data: 0x31 });
    expectOk(m.driver.enableQueuedInvalidation(m.memory, QUEUE, STATUS));
    // A device-TLB descriptor (type 3): this unit has no ECAP_REG.DT.
    m.memory.write64(QUEUE, 0x3, 0);
    m.memory.write64(QUEUE + 8, 0, 0);
    m.mmio.write(DRHD_BASE + IQT_REG, 4, 0x10);
    expect(m.driver.faultStatus & FSTS_IQE).toBe(FSTS_IQE);
    expect(m.mmio.read(DRHD_BASE + IQERCD_REG, 4)).toBe(InvalidationQueueError.InvalidType);
    expect(m.mmio.read(DRHD_BASE + IQH_REG, 4)).toBe(0);
    expect(m.events).toHaveLength(1);
    // Software replaces it with a wait descriptor (IF) and clears IQE: the queue resumes.
    m.memory.write64(QUEUE, 0x5 | (1 << 4), 0);
    m.mmio.write(DRHD_BASE + 0x34, 4, FSTS_IQE);
    expect(m.mmio.read(DRHD_BASE + IQH_REG, 4)).toBe(0x10);
    expect(m.driver.invalidationWaitComplete).toBe(true);
    expect(m.mmio.read(DRHD_BASE + IECTL_REG, 4) >>> 30).toBe(0b11); // masked, pending
    m.mmio.write(DRHD_BASE + IECTL_REG, 4, 0);
    expect(m.invalidationEvents).toHaveLength(1);
    m.mmio.write(DRHD_BASE + 0x9c, 4, ICS_IWC);
    expect(m.driver.invalidationWaitComplete).toBe(false);
  });

  it("reserved fields and a tail beyond the queue are queue errors", () => {
    const m = machine();
    expectOk(m.driver.enableQueuedInvalidation(m.memory, QUEUE, STATUS));
    m.memory.write64(QUEUE, 0x2 | (3 << 4) | (1 << 8), 0); // iotlb_inv_dsc with bit 8 set
    m.memory.write64(QUEUE + 8, 0, 0);
    m.mmio.write(DRHD_BASE + IQT_REG, 4, 0x10);
    expect(m.mmio.read(DRHD_BASE + IQERCD_REG, 4)).toBe(InvalidationQueueError.ReservedField);
    const n = machine();
    expectOk(n.driver.enableQueuedInvalidation(n.memory, QUEUE, STATUS));
    n.mmio.write(DRHD_BASE + IQT_REG, 4, 0x2000); // queue is one page
    expect(n.mmio.read(DRHD_BASE + IQERCD_REG, 4)).toBe(InvalidationQueueError.InvalidTail);
  });
});

describe("IOTLB capacity", () => {
  it("evicts the least recently used entry of a set", () => {
    const m = machine({ iotlbSets: 1, iotlbWays: 4 });
    domain(m, 1, DEV_A, 0x10_0000);
    for (let g = 0; g < 4; g++) read(m, DEV_A, g * 4096);
    read(m, DEV_A, 0); // page 0 is now the most recent
    const misses = m.unit.stats.iotlbMisses;
    read(m, DEV_A, 4 * 4096); // evicts page 1
    read(m, DEV_A, 0);
    expect(m.unit.stats.iotlbMisses).toBe(misses + 1);
    read(m, DEV_A, 1 * 4096);
    expect(m.unit.stats.iotlbMisses).toBe(misses + 2);
    expect(m.unit.iotlb.evictions).toBe(2);
  });
});

describe("cost model", () => {
  it("advances the clock by iotlbMiss per miss when given one", async () => {
    const { SimClock, costModel } = await import("@vtlab/arch");
    const clock = new SimClock();
    const m = machine({ clock, costModel: costModel({ iotlbMiss: 600 }) });
    domain(m, 1, DEV_A, 0x10_0000);
    const buf = new Uint8Array(8);
    for (let i = 0; i < 10; i++) m.unit.read(DEV_A, iova((i % 4) * 4096), buf);
    expect(m.unit.stats.iotlbMisses).toBe(4);
    expect(clock.cycles).toBe(2400);
  });
});
