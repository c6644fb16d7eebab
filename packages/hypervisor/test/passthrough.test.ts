import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, bdf, gfn, mfn } from "@vtlab/arch";
import { FaultReason } from "@vtlab/iommu";
import { hvmloaderIntxIrq } from "@vtlab/xen-platform-pci";
import { DescStatus, DmaEngineReg, DRHD_BASE, FAULT_LOG_KEEP, STATUS_IRQ, parsePciBdf, setP2mEntry } from "@vtlab/hypervisor";
import { DOMID_SELF, HYPERVISOR_memory_op, XENMEM_decrease_reservation, xen_memory_reservation } from "@vtlab/xen-public";
import { SPIN, direct64Kernel, tinyKernel } from "./tiny-kernel.js";
import { ARG, call, put, struct } from "./xen-harness.js";
import { DST_GPA, ENGINE, ENGINE_BDF, MEMORY_MIB, SRC_GPA, domain, driver, host, newEngine, pattern, ramOf, same } from "./passthrough-harness.js";

describe("device assignment through a real Hypervisor", () => {
  it("places the device on the domain's bus, BAR0 after the platform BAR, INTx on the hvmloader GSI, and lists the owner", () => {
    const { hv, engine } = host();
    expect(hv.pciAssignableList()).toEqual([{ bdf: "00:05.0", name: "dma-engine", owner: "free" }]);
    const a = domain(hv, "a", [ENGINE]);
    expect(hv.pciAssignableList()).toEqual([{ bdf: "00:05.0", name: "dma-engine", owner: "a" }]);
    const g = driver(a);
    expect(g.cfg(0) & 0xffff).toBe(0x1234);
    expect(g.bar()).toBe(0xf100_0000); // platform BAR1 (16 MiB) at 0xF0000000, then ours
    expect(g.cfg(PCI_COMMAND) & PCI_COMMAND_MEMORY).toBe(PCI_COMMAND_MEMORY);
    expect(g.reg(DmaEngineReg.Id)).toBe(0x4d44_5456);
    // The register page of the host's VT-d unit is in no guest's p2m.
    expect(a.p2m.lookup(gfn(DRHD_BASE / 4096)).type).not.toBe("ram");
    expect(a.mmio.bus.ownerOf(DRHD_BASE)).toBeUndefined();
    expect(hv.passthrough.iommu.registerBus.ownerOf(DRHD_BASE)).toContain("dmar0");
    g.probe();
    g.write(SRC_GPA, pattern(64, 3));
    const gsi = hvmloaderIntxIrq(5, 1);
    expect(a.ioapic.lineAsserted(gsi)).toBe(false);
    expect(g.copy(SRC_GPA, DST_GPA, 64)).toBe(DescStatus.Done);
    expect(a.ioapic.lineAsserted(gsi)).toBe(true);
    g.setReg(DmaEngineReg.Status, STATUS_IRQ);
    expect(a.ioapic.lineAsserted(gsi)).toBe(false);
    expect(engine.config.read(0x3c, 1)).toBe(gsi);
  });

  it("DMAs into its own domain's guest-physical addresses, counted in Domain.stats().iommu", () => {
    const { hv } = host();
    const a = domain(hv, "a", [ENGINE]);
    const g = driver(a);
    g.probe();
    const data = pattern(10_000, 7);
    g.write(SRC_GPA, data);
    expect(g.copy(SRC_GPA, DST_GPA, data.length)).toBe(DescStatus.Done);
    expect(g.read(DST_GPA, data.length)).toEqual(data);
    expect(g.copy(SRC_GPA, DST_GPA + 0x1_0000, 100)).toBe(DescStatus.Done);
    const s = a.stats().iommu!;
    expect(s.remapping).toBe("on");
    expect(s.devices).toEqual(["00:05.0"]);
    expect(s.dmaRequests).toBeGreaterThan(4);
    expect(s.dmaBytes).toBe(10_000 * 2 + 100 * 2 + 2 * 32 + 2 * 4);
    expect(s.iotlbMisses).toBeGreaterThan(0);
    expect(s.iotlbHits).toBeGreaterThan(0);
    expect(s.iotlbHitRate).toBeCloseTo(s.iotlbHits / (s.iotlbHits + s.iotlbMisses));
    expect(s.pageWalks).toBe(s.iotlbMisses);
    expect(s.walkReferences).toBeGreaterThanOrEqual(4 * s.iotlbMisses);
    expect(s.walkReferencesPerDma).toBeCloseTo(s.walkReferences / s.dmaRequests);
    expect(s.contextCacheMisses).toBe(1);
    expect(s.invalidations.context).toBe(1);
    expect(s.faults).toBe(0);
    expect(s.modelledCycles).toBe(s.iotlbMisses * hv.cost.iotlbMiss + (s.invalidations.context + s.invalidations.iotlbPage + s.invalidations.iotlbDomain + s.invalidations.iotlbGlobal) * hv.cost.iotlbInvalidation);
    // A domain without devices has no iommu record.
    expect(domain(hv, "b").stats().iommu).toBeUndefined();
  });

  it("blocks DMA outside RAM, into the MMIO hole and to another domain's machine address; faults logged; the other domain byte-identical", () => {
    const { hv } = host();
    const a = domain(hv, "a", [ENGINE]);
    const b = domain(hv, "b");
    b.writeGuest(SRC_GPA, pattern(4096, 99));
    const before = ramOf(b);
    const g = driver(a);
    g.probe();
    g.write(SRC_GPA, pattern(4096, 1));
    const bHpa = b.machineAddress(SRC_GPA)!;
    const targets = [MEMORY_MIB * 1024 * 1024 + 0x1000, 0xf000_0000, 0xfec0_0000, bHpa];
    for (const t of targets) expect(g.copy(SRC_GPA, t, 4096)).toBe(DescStatus.WriteFault);
    expect(g.copy(bHpa, DST_GPA, 64)).toBe(DescStatus.ReadFault); // reading the other domain too
    expect(same(ramOf(b), before)).toBe(true);
    const s = a.stats().iommu!;
    expect(s.faults).toBe(5);
    expect(s.faultLog.map((f) => [f.bdf, f.iova, f.access])).toEqual([...targets.map((t) => ["00:05.0", t, "write"]), ["00:05.0", bHpa, "read"]]);
    for (const f of s.faultLog) {
      expect([FaultReason.WriteNotPermitted, FaultReason.ReadNotPermitted]).toContain(f.reason);
      expect(f.reasonName.length).toBeGreaterThan(0);
    }
    // The records were cleared: none pending, no overflow.
    expect(hv.passthrough.iommu.driver!.readFaults()).toEqual([]);
    expect(hv.passthrough.iommu.driver!.faultOverflow).toBe(false);
    expect(b.stats().iommu).toBeUndefined();
  });

  it("with iommu = 0 the same DMA to a machine address corrupts the other domain, and the assignment warns", () => {
    const { hv } = host({ iommu: false });
    const a = domain(hv, "a", [ENGINE]);
    const b = domain(hv, "b");
    b.writeGuest(SRC_GPA, pattern(4096, 99));
    expect(a.messages.join("\n")).toMatch(/WARNING: iommu=0: 00:05\.0 .*without DMA remapping/);
    const g = driver(a);
    // Bus addresses are machine addresses now: the driver's ring must be at its machine address.
    const ringHpa = a.machineAddress(0x40_0000)!;
    g.cfg(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    g.setReg(DmaEngineReg.RingBaseLo, ringHpa % 2 ** 32);
    g.setReg(DmaEngineReg.RingBaseHi, Math.floor(ringHpa / 2 ** 32));
    g.setReg(DmaEngineReg.RingSize, 16);
    g.setReg(DmaEngineReg.Control, 1);
    const evil = pattern(4096, 0x5a);
    g.write(SRC_GPA, evil);
    expect(g.copy(a.machineAddress(SRC_GPA)!, b.machineAddress(SRC_GPA)!, 4096)).toBe(DescStatus.Done);
    expect(driver(b).read(SRC_GPA, 4096)).toEqual(evil); // b's memory now holds a's bytes
    const s = a.stats().iommu!;
    expect(s.remapping).toBe("off");
    expect(s.faults).toBe(0);
    expect(s.iotlbMisses).toBe(0);
  });
});

describe("the IOMMU tables follow the p2m", () => {
  it("strict: a ballooned-out page faults on the very next DMA", () => {
    const { hv } = host();
    const a = domain(hv, "a", [ENGINE]);
    const g = driver(a);
    g.probe();
    g.write(SRC_GPA, pattern(64, 2));
    expect(g.copy(SRC_GPA, DST_GPA, 64)).toBe(DescStatus.Done); // the IOTLB now caches DST
    const old = setP2mEntry(a, gfn(DST_GPA / 4096), { kind: "removed" });
    expect("type" in old && old.type).toBe("ram");
    expect(a.stats().iommu!.invalidations.iotlbPage).toBe(1);
    expect(g.copy(SRC_GPA, DST_GPA, 64)).toBe(DescStatus.WriteFault);
    expect(a.stats().iommu!.faultLog.at(-1)!.iova).toBe(DST_GPA);
  });

  it("deferred: the stale IOTLB entry still reaches the old frame until the flush point, then faults", () => {
    const { hv } = host({ iommu: { flush: "deferred" } });
    const a = domain(hv, "a", [ENGINE]);
    const g = driver(a);
    g.probe();
    g.write(SRC_GPA, pattern(64, 2));
    const oldHpa = a.machineAddress(DST_GPA)!;
    expect(g.copy(SRC_GPA, DST_GPA, 64)).toBe(DescStatus.Done);
    setP2mEntry(a, gfn(DST_GPA / 4096), { kind: "removed" });
    expect(a.stats().iommu!.pendingInvalidations).toBe(1);
    expect(a.stats().iommu!.invalidations.iotlbPage).toBe(0);
    // The deferred window: the device hits the stale translation and writes the frame the domain gave up.
    g.write(SRC_GPA, pattern(64, 77));
    expect(g.copy(SRC_GPA, DST_GPA, 64)).toBe(DescStatus.Done);
    const leaked = new Uint8Array(64);
    hv.memory.readBytes(oldHpa, leaked);
    expect(leaked).toEqual(pattern(64, 77));
    // The flush point: the end of a scheduler slice (a preemption-timer exit is handled, then the slice ends).
    hv.run({ maxInstructions: 5000 });
    const s = a.stats().iommu!;
    expect(s.pendingInvalidations).toBe(0);
    expect(s.invalidations.iotlbDomain).toBeGreaterThanOrEqual(2); // attach's, and the flush's
    expect(g.copy(SRC_GPA, DST_GPA, 64)).toBe(DescStatus.WriteFault);
  });

  it("XENMEM_decrease_reservation from the guest (the real hypercall path) unmaps the page from the IOMMU tables", () => {
    const { hv } = host();
    const a = hv.createDomain({ name: "a", memoryMiB: MEMORY_MIB, kernel: direct64Kernel(SPIN), pci: [ENGINE] });
    hv.run({ maxInstructions: 5000 }); // the vCPU's 64-bit state is loaded
    const g = driver(a);
    g.probe();
    g.write(SRC_GPA, pattern(64, 2));
    expect(g.copy(SRC_GPA, DST_GPA, 64)).toBe(DescStatus.Done);
    const EXTENTS = 0x30_0000;
    const R = xen_memory_reservation;
    put(hv, a, EXTENTS, struct(8, [[0, 8, DST_GPA / 4096]]));
    put(hv, a, ARG, struct(R.SIZEOF, [[R.extent_start, 8, EXTENTS], [R.nr_extents, 8, 1], [R.extent_order, 4, 0], [R.mem_flags, 4, 0], [R.domid, 2, DOMID_SELF]]));
    expect(call(hv, a, HYPERVISOR_memory_op, [XENMEM_decrease_reservation, ARG])).toBe(1);
    expect(a.machineAddress(DST_GPA)).toBeUndefined();
    expect(g.copy(SRC_GPA, DST_GPA, 64)).toBe(DescStatus.WriteFault);
    expect(a.stats().iommu!.faultLog.at(-1)).toMatchObject({ bdf: "00:05.0", iova: DST_GPA, access: "write" });
  });

  it("a batch of unmaps: strict invalidates each page, deferred once per domain at the flush point (less modelled time)", () => {
    const counts = (flush: "strict" | "deferred") => {
      const { hv } = host({ iommu: { flush } });
      const a = domain(hv, "a", [ENGINE]);
      const before = a.stats().iommu!.invalidations;
      for (let i = 0; i < 16; i++) setP2mEntry(a, gfn(DST_GPA / 4096 + i), { kind: "removed" });
      hv.passthrough.iommu.flushPoint();
      const s = a.stats().iommu!;
      return { page: s.invalidations.iotlbPage - before.iotlbPage, domain: s.invalidations.iotlbDomain - before.iotlbDomain, cycles: s.modelledCycles };
    };
    const strict = counts("strict");
    const deferred = counts("deferred");
    expect([strict.page, strict.domain]).toEqual([16, 0]);
    expect([deferred.page, deferred.domain]).toEqual([0, 1]);
    expect(deferred.cycles).toBeLessThan(strict.cycles);
  });

  it("shadow paging (hap = 0): the IOMMU tables follow the same p2m changes", () => {
    const { hv } = host();
    const a = hv.createDomain({ name: "a", memoryMiB: MEMORY_MIB, kernel: tinyKernel(SPIN), hap: false, pci: [ENGINE] });
    const g = driver(a);
    g.probe();
    g.write(SRC_GPA, pattern(64, 6));
    expect(g.copy(SRC_GPA, DST_GPA, 64)).toBe(DescStatus.Done);
    expect(g.read(DST_GPA, 64)).toEqual(pattern(64, 6));
    setP2mEntry(a, gfn(DST_GPA / 4096), { kind: "removed" });
    expect(g.copy(SRC_GPA, DST_GPA, 64)).toBe(DescStatus.WriteFault);
  });

  it("a grant mapping: DMA to the mapped gfn reaches the granter's frame; a read-only grant blocks writes", () => {
    const { hv } = host();
    const a = domain(hv, "a", [ENGINE]);
    const b = domain(hv, "b");
    const g = driver(a);
    g.probe();
    const GRANT_GPA = 0x70_0000;
    const bFrame = b.machineAddress(SRC_GPA)! / 4096;
    expect(setP2mEntry(a, gfn(GRANT_GPA / 4096), { kind: "grant", mfn: mfn(bFrame), readonly: false })).toMatchObject({ type: "ram" });
    g.write(SRC_GPA, pattern(128, 9));
    expect(g.copy(SRC_GPA, GRANT_GPA, 128)).toBe(DescStatus.Done);
    expect(driver(b).read(SRC_GPA, 128)).toEqual(pattern(128, 9));
    // Now read-only: the permission reduction is invalidated at once (strict), writes fault, reads work.
    setP2mEntry(a, gfn(GRANT_GPA / 4096), { kind: "grant", mfn: mfn(bFrame), readonly: true });
    expect(g.copy(SRC_GPA, GRANT_GPA, 128)).toBe(DescStatus.WriteFault);
    expect(a.stats().iommu!.faultLog.at(-1)!.reason).toBe(FaultReason.WriteNotPermitted);
    expect(g.copy(GRANT_GPA, DST_GPA, 128)).toBe(DescStatus.Done);
    expect(g.read(DST_GPA, 128)).toEqual(pattern(128, 9));
    // Unmapped (the p2m entry removed): gone from the IOMMU tables too.
    setP2mEntry(a, gfn(GRANT_GPA / 4096), { kind: "removed" });
    expect(g.copy(GRANT_GPA, DST_GPA, 128)).toBe(DescStatus.ReadFault);
  });

  it("law: every RAM gpa of the domain is reachable at its p2m frame; every gpa outside RAM faults", () => {
    const { hv } = host();
    const a = domain(hv, "a", [ENGINE]);
    const g = driver(a);
    g.probe();
    g.write(SRC_GPA, pattern(16, 5));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), (page) => {
        const gpa = (page % 2 ** 20) * 4096 + 0x800;
        if (gpa >= 0x40_0000 && gpa < 0x41_0000) return; // the ring
        const hpa = a.machineAddress(gpa);
        const status = g.copy(SRC_GPA, gpa, 16);
        if (hpa === undefined) {
          expect(status).toBe(DescStatus.WriteFault);
        } else {
          expect(status).toBe(DescStatus.Done);
          const out = new Uint8Array(16);
          hv.memory.readBytes(hpa, out);
          expect(out).toEqual(pattern(16, 5));
        }
      }),
      { numRuns: 200, seed: 14 },
    );
  });
});

describe("assignment rules and quiescing", () => {
  it("refuses a second assignment naming the owner, an unknown BDF listing the assignable ones, and bad entries", () => {
    const { hv } = host({ engines: [newEngine(), newEngine(bdf(0, 6, 0), "dma-engine-2")] });
    domain(hv, "a", [ENGINE]);
    expect(() => domain(hv, "b", ["0000:00:05.0"])).toThrow(/00:05\.0 \(dma-engine\) is already assigned to domain a/);
    expect(() => domain(hv, "b", ["00:07.0"])).toThrow(/no assignable device at 00:07\.0; assignable: 00:05\.0 \(dma-engine\), 00:06\.0 \(dma-engine-2\)/);
    expect(() => domain(hv, "b", ["00:06.0,permissive=1"])).toThrow(/options .* not supported/);
    expect(() => domain(hv, "b", ["00:06.0@3"])).toThrow(/virtual slots/);
    expect(() => domain(hv, "b", ["banana"])).toThrow(/"banana" is not a PCI address/);
    expect(() => domain(hv, "b", ["0001:00:06.0"])).toThrow(/segment 0001/);
    expect(() => domain(hv, "b", ["00:06.0", "00:06.0"])).toThrow(/listed twice/);
    // Nothing was half-built by the refusals.
    expect(hv.domains.map((d) => d.name)).toEqual(["a"]);
    expect(hv.pciAssignableList().map((l) => l.owner)).toEqual(["a", "free"]);
    expect(parsePciBdf("00:1f.7")).toBe((0x1f << 3) | 7);
  });

  it("destroy quiesces: device reset, context cleared, free again, a further doorbell does no DMA; it can be assigned again", () => {
    const { hv, engine } = host();
    const a = domain(hv, "a", [ENGINE]);
    const g = driver(a);
    g.probe();
    g.write(SRC_GPA, pattern(64, 4));
    expect(g.copy(SRC_GPA, DST_GPA, 64)).toBe(DescStatus.Done);
    const iommu = hv.passthrough.iommu;
    const held = hv.frames.freeFrames;
    expect(iommu.rootTable!.readContext(ENGINE_BDF)?.present).toBe(true);
    expect(engine.resets).toBe(1); // reset before assignment, as libxl does
    hv.destroyDomain("a");
    expect(engine.resets).toBe(2);
    expect(engine.state().control).toBe(0);
    expect(iommu.rootTable!.readContext(ENGINE_BDF)?.present ?? false).toBe(false);
    expect(hv.pciAssignableList()).toEqual([{ bdf: "00:05.0", name: "dma-engine", owner: "free" }]);
    expect(hv.frames.freeFrames).toBeGreaterThan(held); // RAM and IOMMU tables back
    // A hostile late doorbell straight at the device (re-enabling it too): no DMA reaches memory.
    const translations = iommu.unit!.stats.translations;
    engine.config.write(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    engine.registers.write(DmaEngineReg.RingSize, 4, 16);
    engine.registers.write(DmaEngineReg.Control, 4, 1);
    engine.registers.write(DmaEngineReg.Doorbell, 4, 1);
    expect(iommu.unit!.stats.translations).toBe(translations);
    expect(engine.state().completed).toBe(0);
    // Assignable again, to a new domain, and working there.
    const c = domain(hv, "c", [ENGINE]);
    const gc = driver(c);
    gc.probe();
    gc.write(SRC_GPA, pattern(64, 8));
    expect(gc.copy(SRC_GPA, DST_GPA, 64)).toBe(DescStatus.Done);
    expect(gc.read(DST_GPA, 64)).toEqual(pattern(64, 8));
    // Explicit deassign works the same way.
    expect(hv.deassignPci("c", "00:05.0")).toBe(true);
    expect(engine.resets).toBe(4);
    expect(c.mmio.bus.ownerOf(gc.bar())).toBeUndefined();
    expect(hv.deassignPci("c", "00:05.0")).toBe(false);
  });

  it("log-dirty is refused (-EINVAL) for a domain with an assigned device, and a log-dirty domain cannot take one (-EXDEV)", () => {
    const { hv } = host();
    domain(hv, "a", [ENGINE]);
    expect(hv.enableLogDirty("a")).toBe(-22);
    const b = domain(hv, "b");
    expect(hv.enableLogDirty("b")).toBe(0);
    hv.destroyDomain("a");
    expect(() => hv.assignPci(b.name, ENGINE)).toThrow(/log-dirty mode/);
    expect(hv.pciAssignableList()[0]!.owner).toBe("free");
  });

  it("hostile: a flood of faulting DMAs is all counted, the log keeps the last 64, the records never overflow", () => {
    const { hv } = host();
    const a = domain(hv, "a", [ENGINE]);
    const b = domain(hv, "b");
    const before = ramOf(b);
    const g = driver(a);
    g.probe();
    for (let i = 0; i < 100; i++) expect(g.copy(SRC_GPA, 0x1000_0000 + i * 4096, 8)).toBe(DescStatus.WriteFault);
    const s = a.stats().iommu!;
    expect(s.faults).toBe(100);
    expect(s.faultLog.length).toBe(FAULT_LOG_KEEP);
    expect(s.faultLog[0]!.iova).toBe(0x1000_0000 + 36 * 4096);
    expect(hv.passthrough.iommu.driver!.faultOverflow).toBe(false);
    expect(hv.passthrough.iommu.unit!.stats.faultsDropped).toBe(0);
    // A ring outside RAM halts the engine; a giant descriptor is refused: the host and b are fine.
    g.setReg(DmaEngineReg.Control, 0);
    g.setReg(DmaEngineReg.RingBaseLo, 0xfff0_0000);
    g.setReg(DmaEngineReg.Control, 1);
    g.setReg(DmaEngineReg.Doorbell, 1);
    expect(g.reg(DmaEngineReg.Status) & 4).toBe(4); // STATUS_HALTED
    expect(same(ramOf(b), before)).toBe(true);
    expect(a.state).toBe("running");
  });
});
