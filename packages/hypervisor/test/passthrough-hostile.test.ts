/**
 * Hostile-input review of device assignment (issue 14): the NVMe controller and the DMA engine
 * assigned through passthrough/ to a domain that controls every register, queue entry, PRP and
 * configuration write. Each case here was a problem found in review (the test failed before
 * its fix) or a check that an attack the review tried is already answered.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { PCI_BASE_ADDRESS_0, PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, bdf } from "@vtlab/arch";
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

/** The guest's NVMe driver: config cycles on its ports, BAR0 on its MMIO bus, queues in its RAM. */
function nvmeDriver(d: Domain) {
  const cfg = (reg: number, value?: number): number => {
    d.ports.write(0xcf8, 4, (0x8000_0000 | (NVME_BDF << 8) | reg) >>> 0);
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
      g.setReg(NvmeReg.Asq, ASQ);
      g.setReg(NvmeReg.AsqHi, 0);
      g.setReg(NvmeReg.Acq, ACQ);
      g.setReg(NvmeReg.AcqHi, 0);
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
      expect(g.run(0, { opc: NvmeAdminOpcode.CreateIoCq, prp1: IOCQ, cdw10: ((ENTRIES - 1) << 16) | 1, cdw11: 3 })).toBe(0);
      expect(g.run(0, { opc: NvmeAdminOpcode.CreateIoSq, prp1: IOSQ, cdw10: ((ENTRIES - 1) << 16) | 1, cdw11: (1 << 16) | 1 })).toBe(0);
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
