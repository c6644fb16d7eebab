/**
 * Hostile-input review of device assignment (issue 14): the NVMe controller and the DMA engine
 * assigned through passthrough/ to a domain that controls every register, queue entry, PRP and
 * configuration write. Each case here was a problem found in review (the test failed before
 * its fix) or a check that an attack the review tried is already answered.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { PCI_BASE_ADDRESS_0, PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, bdf, gfn } from "@vtlab/arch";
import { hvmloaderIntxIrq } from "@vtlab/xen-platform-pci";
import {
  CC_EN,
  CC_IOCQES_SHIFT,
  CC_IOSQES_SHIFT,
  CSTS_CFS,
  CSTS_RDY,
  Hypervisor,
  MemoryBlockBackend,
  NvmeAdminOpcode,
  NvmeController,
  NvmeIoOpcode,
  NvmeReg,
  NvmeStatus,
  cqHeadDoorbell,
  setP2mEntry,
  sqTailDoorbell,
  type Domain,
  type HypervisorOptions,
} from "@vtlab/hypervisor";
import { SPIN, tinyKernel } from "./tiny-kernel.js";

const NVME_BDF = bdf(0, 4, 0);
const NVME = "00:04.0";
const PAGE = 4096;
const ASQ = 0x10_000;
const ACQ = 0x11_000;
const IOSQ = 0x12_000;
const IOCQ = 0x13_000;
const BUF = 0x100_000;
const LIST = 0x80_000;
const ENTRIES = 8;

function nvmeHost(options: HypervisorOptions = {}) {
  const backend = new MemoryBlockBackend(2048);
  const nvme = new NvmeController({ requester: NVME_BDF, backend });
  const hv = new Hypervisor({ memoryMiB: 128, ...options, pciDevices: [nvme] });
  return { hv, nvme, backend };
}

function guest(hv: Hypervisor, name: string, pci?: readonly string[]): Domain {
  return hv.createDomain({ name, memoryMiB: 8, kernel: tinyKernel(SPIN), ...(pci !== undefined ? { pci } : {}) });
}

function setU64(v: DataView, at: number, value: number | bigint): void {
  const b = BigInt(value);
  v.setUint32(at, Number(b & 0xffff_ffffn), true);
  v.setUint32(at + 4, Number((b >> 32n) & 0xffff_ffffn), true);
}

/**
 * The guest's NVMe driver: config cycles on its ports, BAR0 on its MMIO bus, queues in its RAM.
 * `bus` turns a guest-physical address into the bus address the device is given (identity with
 * VT-d; the machine address with iommu = 0, where a domain's RAM is one contiguous block).
 */
function nvmeDriver(d: Domain, bus: (gpa: number) => number = (gpa) => gpa, id = NVME_BDF) {
  const cfg = (reg: number, value?: number): number => {
    d.ports.write(0xcf8, 4, (0x8000_0000 | (id << 8) | reg) >>> 0);
    if (value !== undefined) d.ports.write(0xcfc, 4, value);
    return d.ports.read(0xcfc, 4);
  };
  const bar = (cfg(PCI_BASE_ADDRESS_0) & ~0xf) >>> 0;
  const sqTail = [0, 0];
  const cqHead = [0, 0];
  const phase = [1, 1];
  const sqBase = [ASQ, IOSQ];
  const cqBase = [ACQ, IOCQ];
  let cid = 0;
  const g = {
    cfg,
    bar,
    reg: (o: number) => d.mmio.bus.read(bar + o, 4),
    setReg: (o: number, v: number) => d.mmio.bus.write(bar + o, 4, v),
    read: (gpa: number, n: number) => {
      const out = new Uint8Array(n);
      d.host.memory.readBytes(d.ramHpa(gpa)!, out);
      return out;
    },
    enable: () => {
      cfg(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
      g.setReg(NvmeReg.Aqa, ((ENTRIES - 1) << 16) | (ENTRIES - 1));
      g.setReg(NvmeReg.Asq, bus(ASQ) % 2 ** 32);
      g.setReg(NvmeReg.AsqHi, Math.floor(bus(ASQ) / 2 ** 32));
      g.setReg(NvmeReg.Acq, bus(ACQ) % 2 ** 32);
      g.setReg(NvmeReg.AcqHi, Math.floor(bus(ACQ) / 2 ** 32));
      g.setReg(NvmeReg.Cc, CC_EN | (6 << CC_IOSQES_SHIFT) | (4 << CC_IOCQES_SHIFT));
      expect(g.reg(NvmeReg.Csts)).toBe(CSTS_RDY);
    },
    /** Submit one command on queue pair `q` (0 admin, 1 I/O) and return its status (undefined: no completion). */
    run: (q: number, c: { opc: number; nsid?: number; prp1?: number | bigint; prp2?: number | bigint; cdw10?: number; cdw11?: number; cdw12?: number }) => {
      const e = new Uint8Array(64);
      const v = new DataView(e.buffer);
      cid = (cid + 1) & 0xffff;
      v.setUint32(0, (c.opc | (cid << 16)) >>> 0, true);
      v.setUint32(4, c.nsid ?? 0, true);
      setU64(v, 24, c.prp1 ?? 0);
      setU64(v, 32, c.prp2 ?? 0);
      v.setUint32(40, c.cdw10 ?? 0, true);
      v.setUint32(44, c.cdw11 ?? 0, true);
      v.setUint32(48, c.cdw12 ?? 0, true);
      d.writeGuest(sqBase[q]! + sqTail[q]! * 64, e);
      sqTail[q] = (sqTail[q]! + 1) % ENTRIES;
      g.setReg(sqTailDoorbell(q), sqTail[q]!);
      const cqe = new DataView(g.read(cqBase[q]! + cqHead[q]! * 16, 16).buffer);
      const dw3 = cqe.getUint32(12, true);
      if (((dw3 >>> 16) & 1) !== phase[q]) return undefined;
      cqHead[q] = (cqHead[q]! + 1) % ENTRIES;
      if (cqHead[q] === 0) phase[q] = phase[q]! ^ 1;
      g.setReg(cqHeadDoorbell(q), cqHead[q]!);
      expect(dw3 & 0xffff).toBe(cid);
      return (dw3 >>> 17) & 0x7ff;
    },
    createQueues: () => {
      expect(g.run(0, { opc: NvmeAdminOpcode.CreateIoCq, prp1: bus(IOCQ), cdw10: ((ENTRIES - 1) << 16) | 1, cdw11: 3 })).toBe(0);
      expect(g.run(0, { opc: NvmeAdminOpcode.CreateIoSq, prp1: bus(IOSQ), cdw10: ((ENTRIES - 1) << 16) | 1, cdw11: (1 << 16) | 1 })).toBe(0);
    },
  };
  return g;
}

describe("configuration space across assignments", () => {
  it("a previous owner's BAR0 upper half does not survive into the next owner's 64-bit BAR", () => {
    const { hv, nvme } = nvmeHost();
    const a = guest(hv, "a", [NVME]);
    const ga = nvmeDriver(a);
    // A moves its 64-bit BAR0 above 4 GiB (the upper dword is BAR1's register), then goes away.
    ga.cfg(PCI_BASE_ADDRESS_0 + 4, 0x0000_00ff);
    expect(nvme.config.barAddress(0)).toBeGreaterThan(2 ** 32);
    hv.destroyDomain("a");
    const b = guest(hv, "b", [NVME]);
    const gb = nvmeDriver(b);
    // B's firmware and driver read the 64-bit BAR: it must be where the hypervisor put the registers.
    expect(gb.cfg(PCI_BASE_ADDRESS_0 + 4)).toBe(0);
    const bar = nvme.config.barAddress(0);
    expect(b.mmio.bus.ownerOf(bar)).toContain("nvme");
    expect(gb.reg(NvmeReg.Vs)).toBe(0x0001_0400);
  });
});

describe("64-bit addresses from queue entries are not rounded through a float", () => {
  // 2^53 + 1: as a JS number this rounds to 2^53, which looks dword aligned.
  const ABOVE_2_53_ODD = (1n << 53n) | 1n;

  it("a PRP1 above 2^53 with its low bits set answers PRP Offset Invalid, not a DMA at a rounded address", () => {
    const { hv, nvme } = nvmeHost();
    const a = guest(hv, "a", [NVME]);
    const g = nvmeDriver(a);
    g.enable();
    g.createQueues();
    const faults = nvme.stats.dmaFaults;
    expect(g.run(1, { opc: NvmeIoOpcode.Read, nsid: 1, prp1: ABOVE_2_53_ODD, cdw12: 0 })).toBe(NvmeStatus.PrpOffsetInvalid);
    expect(g.run(0, { opc: NvmeAdminOpcode.Identify, prp1: ABOVE_2_53_ODD | 2n, cdw10: 1 })).toBe(NvmeStatus.PrpOffsetInvalid);
    expect(nvme.stats.dmaFaults).toBe(faults); // nothing was attempted
  });

  it("PRP2 and PRP list entries above 2^53 with an offset answer PRP Offset Invalid", () => {
    const { hv, nvme } = nvmeHost();
    const a = guest(hv, "a", [NVME]);
    const g = nvmeDriver(a);
    g.enable();
    g.createQueues();
    // Two pages: PRP2 is the second page and must be page aligned.
    expect(g.run(1, { opc: NvmeIoOpcode.Read, nsid: 1, prp1: BUF, prp2: (1n << 60n) | 0x800n, cdw12: 15 })).toBe(NvmeStatus.PrpOffsetInvalid);
    expect(g.run(1, { opc: NvmeIoOpcode.Read, nsid: 1, prp1: BUF, prp2: ABOVE_2_53_ODD << 11n, cdw12: 15 })).toBe(NvmeStatus.PrpOffsetInvalid);
    // Three pages: PRP2 is a list pointer (qword aligned); its entries are page aligned.
    expect(g.run(1, { opc: NvmeIoOpcode.Read, nsid: 1, prp1: BUF, prp2: ABOVE_2_53_ODD << 2n, cdw12: 23 })).toBe(NvmeStatus.PrpOffsetInvalid);
    const list = new Uint8Array(16);
    setU64(new DataView(list.buffer), 0, BUF + PAGE);
    setU64(new DataView(list.buffer), 8, ABOVE_2_53_ODD << 11n);
    a.writeGuest(LIST, list);
    expect(g.run(1, { opc: NvmeIoOpcode.Read, nsid: 1, prp1: BUF, prp2: LIST, cdw12: 23 })).toBe(NvmeStatus.PrpOffsetInvalid);
    expect(nvme.stats.bytesRead).toBe(0);
  });

  it("a queue base above 2^53 that is not page aligned is refused with Invalid Field", () => {
    const { hv } = nvmeHost();
    const a = guest(hv, "a", [NVME]);
    const g = nvmeDriver(a);
    g.enable();
    expect(g.run(0, { opc: NvmeAdminOpcode.CreateIoCq, prp1: (1n << 63n) | 1n, cdw10: ((ENTRIES - 1) << 16) | 1, cdw11: 3 })).toBe(NvmeStatus.InvalidFieldInCommand);
    expect(g.run(0, { opc: NvmeAdminOpcode.CreateIoCq, prp1: IOCQ, cdw10: ((ENTRIES - 1) << 16) | 1, cdw11: 3 })).toBe(0);
    expect(g.run(0, { opc: NvmeAdminOpcode.CreateIoSq, prp1: (1n << 63n) | 0x40n, cdw10: ((ENTRIES - 1) << 16) | 1, cdw11: (1 << 16) | 1 })).toBe(NvmeStatus.InvalidFieldInCommand);
  });

  it("admin queues at the top of the 64-bit space: the fetch faults, CSTS.CFS is set, the fault is logged, nothing throws", () => {
    for (const iommu of [true, false]) {
      const { hv, nvme } = nvmeHost(iommu ? {} : { iommu: false });
      const a = guest(hv, "a", [NVME]);
      const g = nvmeDriver(a);
      g.cfg(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
      g.setReg(NvmeReg.Aqa, 0x0fff_0fff); // 4096 entries: the last SQ entry is past 2^64
      g.setReg(NvmeReg.Asq, 0xffff_f000);
      g.setReg(NvmeReg.AsqHi, 0xffff_ffff);
      g.setReg(NvmeReg.Acq, 0xffff_f000);
      g.setReg(NvmeReg.AcqHi, 0xffff_ffff);
      g.setReg(NvmeReg.Cc, CC_EN | (6 << CC_IOSQES_SHIFT) | (4 << CC_IOCQES_SHIFT));
      expect(g.reg(NvmeReg.Csts)).toBe(CSTS_RDY);
      g.setReg(sqTailDoorbell(0), 4095);
      expect(g.reg(NvmeReg.Csts) & CSTS_CFS).toBe(CSTS_CFS);
      expect(nvme.stats.recentFaults).toMatchObject([{ site: "sq-entry", write: false }]);
      if (iommu) expect(a.stats().iommu!.faultLog).toMatchObject([{ bdf: NVME, access: "read" }]);
      expect(a.state).toBe("running");
    }
  });

  for (const iommu of [true, false]) {
    it(`fast-check (${iommu ? "VT-d" : "iommu = 0"}): PRPs, list entries and queue bases anywhere in 64 bits never throw; the other domain is untouched`, () => {
      const { hv, nvme } = nvmeHost(iommu ? {} : { iommu: false });
      const a = guest(hv, "a", [NVME]);
      const b = guest(hv, "b");
      b.writeGuest(BUF, new Uint8Array(PAGE).fill(0xbb));
      const ram = a.ramHpa(0)!;
      expect(a.ramHpa(0x7f_f000)).toBe(ram + 0x7f_f000);
      const bus = iommu ? (gpa: number) => gpa : (gpa: number) => ram + gpa;
      const g = nvmeDriver(a, bus);
      g.enable();
      g.createQueues();
      const addr = fc.oneof(
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        fc.bigInt({ min: (1n << 53n) - 0x2000n, max: (1n << 53n) + 0x2000n }),
        fc.bigInt({ min: (1n << 64n) - 0x4000n, max: (1n << 64n) - 1n }),
        fc.bigInt({ min: 0n, max: 0x80_0000n }),
      );
      const bHpa = BigInt(b.machineAddress(BUF)!);
      fc.assert(
        fc.property(addr, addr, fc.array(addr, { maxLength: 8 }), fc.integer({ min: 0, max: 255 }), fc.boolean(), (prp1, prp2, entries, nlb, read) => {
          const list = new Uint8Array(entries.length * 8);
          entries.forEach((e, i) => setU64(new DataView(list.buffer), i * 8, e));
          a.writeGuest(LIST, list);
          // iommu = 0 aims at B's machine address: the one target that must stay blocked with VT-d.
          const target = iommu ? prp1 : prp1 === 0n ? bHpa + 1n : prp1;
          g.run(1, { opc: read ? NvmeIoOpcode.Read : NvmeIoOpcode.Write, nsid: 1, prp1: target, prp2: entries.length > 0 ? bus(LIST) : prp2, cdw12: nlb });
          if (iommu) {
            const page = new Uint8Array(PAGE);
            hv.memory.readBytes(b.machineAddress(BUF)!, page);
            expect(page.every((x) => x === 0xbb)).toBe(true);
          }
          expect(nvme.state().csts & CSTS_CFS).toBe(0);
        }),
        { numRuns: 150 },
      );
    });
  }
});

describe("checked in review and found answered", () => {
  it("deferred flush: a stale IOTLB entry of a destroyed domain is gone before its frames go back", () => {
    const { hv } = nvmeHost({ iommu: { flush: "deferred" } });
    const a = guest(hv, "a", [NVME]);
    const g = nvmeDriver(a);
    g.enable();
    g.createQueues();
    expect(g.run(1, { opc: NvmeIoOpcode.Read, nsid: 1, prp1: BUF, cdw12: 7 })).toBe(0); // the IOTLB caches BUF
    const unit = hv.passthrough.iommu.unit!;
    setP2mEntry(a, gfn(BUF / PAGE), { kind: "removed" }); // outside a VM exit: the flush waits
    expect(a.stats().iommu!.pendingInvalidations).toBe(1);
    expect(unit.iotlb.lookup(a.id, BUF)).toBeGreaterThanOrEqual(0); // the deferred window is open
    hv.destroyDomain("a");
    expect(unit.iotlb.lookup(a.id, BUF)).toBeLessThan(0); // deassign_device's domain flush closed it
    expect(hv.passthrough.iommu.stateOf(a)?.pending ?? 0).toBe(0);
  });

  it("work queued while bus mastering was off dies with the domain: the next owner sees a reset controller", () => {
    const { hv, nvme, backend } = nvmeHost();
    const a = guest(hv, "a", [NVME]);
    const g = nvmeDriver(a);
    g.enable();
    g.createQueues();
    g.cfg(PCI_COMMAND, PCI_COMMAND_MEMORY); // bus mastering off: the doorbell below stalls
    const sqe = new Uint8Array(64);
    const v = new DataView(sqe.buffer);
    v.setUint32(0, NvmeIoOpcode.Write | (0x77 << 16), true);
    v.setUint32(4, 1, true);
    v.setUint32(24, BUF, true);
    v.setUint32(48, 7, true);
    for (let i = 0; i < 4; i++) a.writeGuest(IOSQ + i * 64, sqe);
    g.setReg(sqTailDoorbell(1), 4);
    expect(nvme.stats.masterDisabledStalls).toBe(1);
    const dmaBefore = a.stats().iommu!.dmaRequests;
    hv.destroyDomain("a");
    const b = guest(hv, "b", [NVME]);
    const gb = nvmeDriver(b);
    expect(nvme.state()).toMatchObject({ cc: 0, csts: 0, submissionQueues: [], completionQueues: [] });
    gb.cfg(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER); // would serve A's stalled doorbell
    expect(nvme.stats.ioCommands[NvmeIoOpcode.Write]).toBe(0);
    expect(backend.data.every((x) => x === 0)).toBe(true);
    expect(b.stats().iommu!.dmaRequests).toBe(0);
    expect(hv.passthrough.iommu.stateOf(a)!.dmaRequests).toBe(dmaBefore);
  });

  it("another domain cannot reach the device: no function on its bus, nothing at the BAR; after pci-detach neither can the old owner", () => {
    const { hv, nvme } = nvmeHost();
    const a = guest(hv, "a", [NVME]);
    const b = guest(hv, "b");
    const g = nvmeDriver(a);
    g.enable();
    const bar = g.bar;
    b.ports.write(0xcf8, 4, (0x8000_0000 | (NVME_BDF << 8)) >>> 0);
    expect(b.ports.read(0xcfc, 4)).toBe(0xffff_ffff);
    expect(b.mmio.bus.ownerOf(bar)).toBeUndefined();
    expect(hv.deassignPci("a", NVME)).toBe(true);
    expect(a.mmio.bus.ownerOf(bar)).toBeUndefined();
    expect(g.cfg(0)).toBe(0xffff_ffff);
    expect(nvme.state().csts).toBe(0);
    expect(a.state).toBe("running");
  });

  it("INTx follows the owner: after reassignment the old owner's IO-APIC line is never driven", () => {
    const { hv } = nvmeHost();
    const gsi = hvmloaderIntxIrq(4, 1);
    const a = guest(hv, "a", [NVME]);
    const ga = nvmeDriver(a);
    ga.enable();
    // A completion left unconsumed: the line is up.
    const e = new Uint8Array(64);
    new DataView(e.buffer).setUint32(40, 1, true);
    e[0] = NvmeAdminOpcode.Identify;
    new DataView(e.buffer).setUint32(24, BUF, true);
    a.writeGuest(ASQ, e);
    ga.setReg(sqTailDoorbell(0), 1);
    expect(a.ioapic.lineAsserted(gsi)).toBe(true);
    expect(hv.deassignPci("a", NVME)).toBe(true);
    expect(a.ioapic.lineAsserted(gsi)).toBe(false);
    const b = guest(hv, "b", [NVME]);
    const gb = nvmeDriver(b);
    gb.enable();
    b.writeGuest(ASQ, e);
    gb.setReg(sqTailDoorbell(0), 1);
    expect(b.ioapic.lineAsserted(gsi)).toBe(true);
    expect(a.ioapic.lineAsserted(gsi)).toBe(false);
  });

  it("queue sizes 0 and 65,536, and doorbells past the last queue, are refused without touching memory", () => {
    const { hv, nvme } = nvmeHost();
    const a = guest(hv, "a", [NVME]);
    const g = nvmeDriver(a);
    g.enable();
    expect(g.run(0, { opc: NvmeAdminOpcode.CreateIoCq, prp1: IOCQ, cdw10: 1, cdw11: 3 })).toBe(NvmeStatus.InvalidQueueSize); // QSIZE 0: one entry
    expect(g.run(0, { opc: NvmeAdminOpcode.CreateIoCq, prp1: IOCQ, cdw10: (0xffff << 16) | 1, cdw11: 3 })).toBe(NvmeStatus.InvalidQueueSize); // 65,536 entries
    expect(g.run(0, { opc: NvmeAdminOpcode.CreateIoCq, prp1: IOCQ, cdw10: (1 << 16) | 0xffff, cdw11: 3 })).toBe(NvmeStatus.InvalidQueueIdentifier);
    const requests = a.stats().iommu!.dmaRequests;
    for (const q of [1, 64, 65, 1535]) {
      expect(nvme.registers.write(sqTailDoorbell(q), 4, 1)).toMatchObject({ kind: "device-error" });
      expect(nvme.registers.write(cqHeadDoorbell(q), 4, 1)).toMatchObject({ kind: "device-error" });
    }
    expect(a.stats().iommu!.dmaRequests).toBe(requests);
    expect(nvme.state().csts).toBe(CSTS_RDY);
  });
});

describe("INTx of several assigned functions on one GSI", () => {
  it("two functions of one slot share INTA#'s line as a wired OR: one deasserting leaves the other's interrupt up", () => {
    const nvme0 = new NvmeController({ requester: bdf(0, 4, 0), backend: new MemoryBlockBackend(8), name: "nvme0" });
    const nvme1 = new NvmeController({ requester: bdf(0, 4, 1), backend: new MemoryBlockBackend(8), name: "nvme1" });
    const hv = new Hypervisor({ memoryMiB: 128, pciDevices: [nvme0, nvme1] });
    const a = guest(hv, "a", ["00:04.0", "00:04.1"]);
    const gsi = hvmloaderIntxIrq(4, 1);
    // Separate admin queues per function (the second function's 64 KiB above the first's).
    const g0 = nvmeDriver(a);
    const g1 = nvmeDriver(a, (gpa) => gpa + 0x1_0000, bdf(0, 4, 1));
    const identify = (at: number) => {
      const e = new Uint8Array(64);
      e[0] = NvmeAdminOpcode.Identify;
      new DataView(e.buffer).setUint32(24, BUF, true);
      new DataView(e.buffer).setUint32(40, 1, true);
      a.writeGuest(at, e);
    };
    g0.enable();
    identify(ASQ);
    g0.setReg(sqTailDoorbell(0), 1); // function 0's completion stays unconsumed: its INTx is asserted
    expect(a.ioapic.lineAsserted(gsi)).toBe(true);
    g1.cfg(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    g1.setReg(NvmeReg.Aqa, ((ENTRIES - 1) << 16) | (ENTRIES - 1));
    g1.setReg(NvmeReg.Asq, ASQ + 0x1_0000);
    g1.setReg(NvmeReg.Acq, ACQ + 0x1_0000);
    g1.setReg(NvmeReg.Cc, CC_EN | (6 << CC_IOSQES_SHIFT) | (4 << CC_IOCQES_SHIFT));
    identify(ASQ + 0x1_0000);
    g1.setReg(sqTailDoorbell(0), 1);
    g1.setReg(cqHeadDoorbell(0), 1); // function 1 consumed its completion: its INTx deasserts
    expect(nvme1.state().intx).toBe(false);
    expect(nvme0.state().intx).toBe(true);
    expect(a.ioapic.lineAsserted(gsi)).toBe(true); // function 0 still holds the line
    g0.setReg(cqHeadDoorbell(0), 1);
    expect(a.ioapic.lineAsserted(gsi)).toBe(false);
    // Detaching one function frees its source; the other keeps working.
    expect(hv.deassignPci("a", "00:04.1")).toBe(true);
    identify(ASQ + 64);
    g0.setReg(sqTailDoorbell(0), 2);
    expect(a.ioapic.lineAsserted(gsi)).toBe(true);
  });
});
