import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  DirectDma,
  MachineMemory,
  MmioBus,
  PCI_BASE_ADDRESS_0,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_STATUS,
  PCI_STATUS_INTERRUPT,
  PciBus,
  PciHostBridge,
  PortIoBus,
  bdf,
  type Bdf,
  type DmaPort,
  type Iova,
} from "@vtlab/arch";
import {
  FaultReason,
} from "@vtlab/iommu";
import { twoDomainVtd } from "./vtd-fixture.js";
import {
  CC_EN,
  CC_IOCQES_SHIFT,
  CC_IOSQES_SHIFT,
  CC_MPS_SHIFT,
  CC_SHN_SHIFT,
  CSTS_CFS,
  CSTS_RDY,
  CSTS_SHST_COMPLETE,
  CSTS_SHST_MASK,
  MemoryBlockBackend,
  NVME_BAR_SIZE,
  NVME_CLASS,
  NVME_DEVICE_ID,
  NVME_FAULTS_KEPT,
  NVME_MAX_TRANSFER,
  NVME_MDTS,
  NVME_MQES,
  NVME_VENDOR_ID,
  NVME_VS,
  NvmeAdminOpcode,
  NvmeController,
  NvmeIoOpcode,
  NvmeReg,
  NvmeStatus,
  cqHeadDoorbell,
  sqTailDoorbell,
  type AssignableDevice,
} from "@vtlab/hypervisor";

const PAGE = 4096;
const NVME_BDF = bdf(0, 4, 0);
const ASQ = 0x10_000;
const ACQ = 0x11_000;
const IOSQ = 0x12_000;
const IOCQ = 0x13_000;
const BUF = 0x100_000; // data buffers from here
const LIST = 0x80_000; // PRP list pages from here
const ADMIN_ENTRIES = 8;
const IO_ENTRIES = 16;
const DISK_SECTORS = 2048; // 1 MiB

/** Counts every DMA and passes it on. */
class CountingDma implements DmaPort {
  reads = 0;
  writes = 0;
  constructor(private readonly inner: DmaPort) {}
  read(requester: Bdf, at: Iova, into: Uint8Array) {
    this.reads++;
    return this.inner.read(requester, at, into);
  }
  write(requester: Bdf, at: Iova, from: Uint8Array) {
    this.writes++;
    return this.inner.write(requester, at, from);
  }
  get total(): number {
    return this.reads + this.writes;
  }
}

interface Command {
  opc: number;
  cid?: number;
  nsid?: number;
  prp1?: number;
  prp2?: number;
  cdw0hi?: number; // FUSE/PSDT bits 15:8
  cdw10?: number;
  cdw11?: number;
  cdw12?: number;
}

interface Completion {
  dw0: number;
  sqhd: number;
  sqid: number;
  cid: number;
  phase: number;
  status: number;
  dnr: boolean;
}

/**
 * A host driver the way Linux's nvme driver talks to the controller: registers through BAR0,
 * queues and buffers in memory reached by bus address (here the same as the memory's address).
 */
class Driver {
  readonly sqTail = new Uint32Array(65);
  readonly cqHead = new Uint32Array(65);
  readonly phase = new Uint8Array(65).fill(1);
  readonly sqBase = new Float64Array(65);
  readonly cqBase = new Float64Array(65);
  readonly sqSize = new Uint32Array(65);
  readonly cqSize = new Uint32Array(65);
  cid = 0;

  constructor(
    readonly nvme: NvmeController,
    readonly mem: { read(at: number, n: number): Uint8Array; write(at: number, b: Uint8Array): void },
  ) {}

  reg(o: number): number {
    return this.nvme.registers.read(o, 4);
  }
  setReg(o: number, v: number) {
    return this.nvme.registers.write(o, 4, v);
  }
  command(bits: number): void {
    this.nvme.config.write(PCI_COMMAND, 2, bits);
  }

  enable(options: { admin?: number; master?: boolean } = {}): void {
    const n = options.admin ?? ADMIN_ENTRIES;
    this.command(PCI_COMMAND_MEMORY | (options.master === false ? 0 : PCI_COMMAND_MASTER));
    this.setReg(NvmeReg.Aqa, ((n - 1) << 16) | (n - 1));
    this.setReg(NvmeReg.Asq, ASQ);
    this.setReg(NvmeReg.AsqHi, 0);
    this.setReg(NvmeReg.Acq, ACQ);
    this.setReg(NvmeReg.AcqHi, 0);
    this.setReg(NvmeReg.Cc, CC_EN | (6 << CC_IOSQES_SHIFT) | (4 << CC_IOCQES_SHIFT));
    this.sqBase[0] = ASQ;
    this.cqBase[0] = ACQ;
    this.sqSize[0] = n;
    this.cqSize[0] = n;
    this.sqTail[0] = 0;
    this.cqHead[0] = 0;
    this.phase[0] = 1;
  }

  /** Place a command in SQ `qid` without ringing. */
  place(qid: number, c: Command): number {
    const e = new Uint8Array(64);
    const v = new DataView(e.buffer);
    const cid = c.cid ?? (this.cid = (this.cid + 1) & 0xffff);
    v.setUint32(0, (c.opc | ((c.cdw0hi ?? 0) << 8) | (cid << 16)) >>> 0, true);
    v.setUint32(4, c.nsid ?? 0, true);
    setU64(v, 24, c.prp1 ?? 0);
    setU64(v, 32, c.prp2 ?? 0);
    v.setUint32(40, c.cdw10 ?? 0, true);
    v.setUint32(44, c.cdw11 ?? 0, true);
    v.setUint32(48, c.cdw12 ?? 0, true);
    this.mem.write((this.sqBase[qid] as number) + (this.sqTail[qid] as number) * 64, e);
    this.sqTail[qid] = ((this.sqTail[qid] as number) + 1) % (this.sqSize[qid] as number);
    return cid;
  }

  ring(qid: number) {
    return this.setReg(sqTailDoorbell(qid), this.sqTail[qid] as number);
  }

  /** The next completion of CQ `qid`, if its phase tag says it is new; advances (but does not ring) the head. */
  peek(qid: number): Completion | undefined {
    const at = (this.cqBase[qid] as number) + (this.cqHead[qid] as number) * 16;
    const v = new DataView(this.mem.read(at, 16).buffer);
    const dw3 = v.getUint32(12, true);
    if (((dw3 >>> 16) & 1) !== this.phase[qid]) return undefined;
    const dw2 = v.getUint32(8, true);
    this.cqHead[qid] = ((this.cqHead[qid] as number) + 1) % (this.cqSize[qid] as number);
    if (this.cqHead[qid] === 0) this.phase[qid] = (this.phase[qid] as number) ^ 1;
    return { dw0: v.getUint32(0, true), sqhd: dw2 & 0xffff, sqid: dw2 >>> 16, cid: dw3 & 0xffff, phase: (dw3 >>> 16) & 1, status: (dw3 >>> 17) & 0x7ff, dnr: dw3 >>> 31 === 1 };
  }

  reap(qid: number): Completion | undefined {
    const c = this.peek(qid);
    if (c !== undefined) this.setReg(cqHeadDoorbell(qid), this.cqHead[qid] as number);
    return c;
  }

  /** Submit one command on `qid` and return its completion (on the queue's CQ). */
  run(qid: number, cqid: number, c: Command): Completion {
    const cid = this.place(qid, c);
    this.ring(qid);
    const done = this.reap(cqid);
    if (done === undefined) throw new Error(`no completion for cid ${cid}`);
    expect(done.cid).toBe(cid);
    return done;
  }

  admin(c: Command): Completion {
    return this.run(0, 0, c);
  }

  io(c: Command): Completion {
    return this.run(1, 1, c);
  }

  createQueues(entries = IO_ENTRIES, ien = true): void {
    expect(this.admin({ opc: NvmeAdminOpcode.CreateIoCq, prp1: IOCQ, cdw10: ((entries - 1) << 16) | 1, cdw11: (ien ? 2 : 0) | 1 }).status).toBe(0);
    expect(this.admin({ opc: NvmeAdminOpcode.CreateIoSq, prp1: IOSQ, cdw10: ((entries - 1) << 16) | 1, cdw11: (1 << 16) | 1 }).status).toBe(0);
    this.sqBase[1] = IOSQ;
    this.cqBase[1] = IOCQ;
    this.sqSize[1] = entries;
    this.cqSize[1] = entries;
    this.sqTail[1] = 0;
    this.cqHead[1] = 0;
    this.phase[1] = 1;
  }

  rw(opc: number, slba: number, blocks: number, prp1: number, prp2 = 0, nsid = 1): Completion {
    return this.io({ opc, nsid, prp1, prp2, cdw10: slba % 2 ** 32, cdw11: Math.floor(slba / 2 ** 32), cdw12: blocks - 1 });
  }
}

function setU64(v: DataView, at: number, value: number): void {
  v.setUint32(at, value % 2 ** 32, true);
  v.setUint32(at + 4, Math.floor(value / 2 ** 32), true);
}

/** A PRP list page of 64-bit entries at `at`. */
function writeList(d: Driver, at: number, entries: readonly number[]): void {
  const b = new Uint8Array(entries.length * 8);
  const v = new DataView(b.buffer);
  entries.forEach((e, i) => setU64(v, i * 8, e));
  d.mem.write(at, b);
}

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

function checksum(b: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < b.length; i++) s = (Math.imul(s, 31) + (b[i] as number)) >>> 0;
  return s;
}

/** A controller behind DirectDma over a small machine memory (bus address = machine address). */
function direct(options: { sectors?: number; memory?: number } = {}) {
  const memory = new MachineMemory(options.memory ?? 16 * 1024 * 1024);
  const backend = new MemoryBlockBackend(options.sectors ?? DISK_SECTORS);
  const dma = new CountingDma(new DirectDma(memory));
  const nvme = new NvmeController({ requester: NVME_BDF, backend, dma });
  const levels: boolean[] = [];
  nvme.connectIntx((l) => levels.push(l));
  const mem = {
    read: (at: number, n: number) => {
      const out = new Uint8Array(n);
      memory.readBytes(at, out);
      return out;
    },
    write: (at: number, b: Uint8Array) => {
      memory.writeBytes(at, b);
    },
  };
  const d = new Driver(nvme, mem);
  return { memory, backend, dma, nvme, d, levels };
}

function ready() {
  const h = direct();
  h.d.enable();
  expect(h.d.reg(NvmeReg.Csts) & CSTS_RDY).toBe(CSTS_RDY);
  h.d.createQueues();
  return h;
}

describe("NVMe controller: the PCI function", () => {
  it("is an AssignableDevice found by configuration cycles, with a 64-bit 16 KiB BAR0 and INTA#", () => {
    const ports = new PortIoBus();
    const mmio = new MmioBus();
    const pci = new PciBus(ports, mmio);
    expect(PciHostBridge.install(ports, pci)).toBeInstanceOf(PciHostBridge);
    const memory = new MachineMemory(16 * 1024 * 1024);
    const nvme: AssignableDevice = new NvmeController({ requester: NVME_BDF, backend: new MemoryBlockBackend(8), dma: new DirectDma(memory) });
    expect(pci.attach(NVME_BDF, nvme)).toBeUndefined();
    const cfg = (reg: number, value?: number): number => {
      ports.write(0xcf8, 4, (0x8000_0000 | (NVME_BDF << 8) | reg) >>> 0);
      if (value !== undefined) ports.write(0xcfc, 4, value);
      return ports.read(0xcfc, 4);
    };
    expect(cfg(0)).toBe(((NVME_DEVICE_ID << 16) | NVME_VENDOR_ID) >>> 0);
    expect(cfg(0x08) >>> 8).toBe(NVME_CLASS);
    expect((cfg(0x3c) >>> 8) & 0xff).toBe(1); // INTA#
    expect(cfg(PCI_BASE_ADDRESS_0) & 0xf).toBe(0x4); // 64-bit memory
    cfg(PCI_BASE_ADDRESS_0, 0xffff_ffff);
    cfg(PCI_BASE_ADDRESS_0 + 4, 0xffff_ffff);
    expect(cfg(PCI_BASE_ADDRESS_0)).toBe((~(NVME_BAR_SIZE - 1) & 0xffff_fff0 | 0x4) >>> 0);
    expect(cfg(PCI_BASE_ADDRESS_0 + 4)).toBe(0xffff_ffff);
    cfg(PCI_BASE_ADDRESS_0, 0xfebf_0000);
    cfg(PCI_BASE_ADDRESS_0 + 4, 0);
    cfg(PCI_COMMAND, PCI_COMMAND_MEMORY);
    expect(mmio.ownerOf(0xfebf_0000)).toContain("nvme");
    expect(mmio.read(0xfebf_0000 + NvmeReg.Vs, 4)).toBe(NVME_VS);
    expect(nvme.registerSize).toBe(NVME_BAR_SIZE);
  });

  it("CAP says MQES, CQR, DSTRD 0, the NVM command set and 4 KiB pages; VS is 1.4.0", () => {
    const { d } = direct();
    const lo = d.reg(NvmeReg.Cap);
    const hi = d.reg(NvmeReg.CapHi);
    expect(lo & 0xffff).toBe(NVME_MQES);
    expect((lo >>> 16) & 1).toBe(1); // CQR
    expect((lo >>> 17) & 3).toBe(0); // AMS: round robin only
    expect(lo >>> 24).toBeGreaterThan(0); // TO
    expect(hi & 0xf).toBe(0); // DSTRD
    expect((hi >>> 5) & 0xff).toBe(1); // CSS: NVM command set
    expect((hi >>> 16) & 0xff).toBe(0); // MPSMIN = MPSMAX = 0
    expect(d.reg(NvmeReg.Vs)).toBe(0x0001_0400);
    // Byte and word reads of a dword return its bytes.
    expect(d.nvme.registers.read(NvmeReg.Vs + 2, 2)).toBe(1);
    expect(d.nvme.registers.read(NvmeReg.Vs + 1, 1)).toBe(4);
  });
});

describe("NVMe controller: enable, reset, shutdown (7.6)", () => {
  it("CC.EN with valid admin queues sets RDY; EN 1 -> 0 clears it and deletes the queues", () => {
    const { d, nvme } = direct();
    expect(d.reg(NvmeReg.Csts)).toBe(0);
    d.enable();
    expect(d.reg(NvmeReg.Csts)).toBe(CSTS_RDY);
    d.createQueues();
    expect(nvme.state().submissionQueues.map((q) => q.qid)).toEqual([0, 1]);
    d.setReg(NvmeReg.Cc, 0);
    expect(d.reg(NvmeReg.Csts)).toBe(0);
    expect(nvme.state().submissionQueues).toEqual([]);
    expect(nvme.state().completionQueues).toEqual([]);
    // Admin queue registers survive a controller reset; enabling again works.
    d.enable();
    expect(d.reg(NvmeReg.Csts)).toBe(CSTS_RDY);
    expect(d.admin({ opc: NvmeAdminOpcode.Identify, prp1: BUF, cdw10: 1 }).status).toBe(NvmeStatus.Success);
  });

  it("CSS, MPS and AMS cannot change while enabled; IOSQES/IOCQES can", () => {
    const { d } = direct();
    d.enable();
    const cc = d.reg(NvmeReg.Cc);
    d.setReg(NvmeReg.Cc, cc | (1 << CC_MPS_SHIFT) | 0x70 | (1 << 11));
    expect(d.reg(NvmeReg.Cc)).toBe(cc);
    d.setReg(NvmeReg.Cc, CC_EN);
    expect(d.reg(NvmeReg.Cc)).toBe(CC_EN);
    expect(d.reg(NvmeReg.Csts)).toBe(CSTS_RDY);
    // Without IOSQES/IOCQES set, I/O queues are refused (simplified check).
    expect(d.admin({ opc: NvmeAdminOpcode.CreateIoCq, prp1: IOCQ, cdw10: (15 << 16) | 1, cdw11: 3 }).status).toBe(NvmeStatus.InvalidFieldInCommand);
  });

  it("Identify namespace with the broadcast NSID gives the common format without a size; Get Features SEL 011b says changeable", () => {
    const { d } = ready();
    expect(d.admin({ opc: NvmeAdminOpcode.Identify, nsid: 0xffff_ffff, prp1: BUF, cdw10: 0 }).status).toBe(0);
    const v = new DataView(d.mem.read(BUF, 4096).buffer);
    expect(v.getUint32(0, true)).toBe(0);
    expect((v.getUint32(128, true) >>> 16) & 0xff).toBe(9);
    expect(d.admin({ opc: NvmeAdminOpcode.GetFeatures, cdw10: 0x307 })).toMatchObject({ status: 0, dw0: 4 });
  });

  it("an invalid CC or admin queue leaves RDY clear", () => {
    for (const bad of ["aqa", "asq", "mps", "css"] as const) {
      const { d, nvme } = direct();
      d.command(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
      d.setReg(NvmeReg.Aqa, bad === "aqa" ? 0 : 0x0007_0007);
      d.setReg(NvmeReg.Asq, bad === "asq" ? 0 : ASQ);
      d.setReg(NvmeReg.Acq, ACQ);
      d.setReg(NvmeReg.Cc, CC_EN | (bad === "mps" ? 1 << CC_MPS_SHIFT : 0) | (bad === "css" ? 0x70 : 0));
      expect(d.reg(NvmeReg.Csts) & CSTS_RDY).toBe(0);
      expect(nvme.stats.enableFailures).toBe(1);
    }
  });

  it("a shutdown notification completes (SHST 10b) and stops command processing until reset", () => {
    const { d, nvme } = ready();
    d.setReg(NvmeReg.Cc, d.reg(NvmeReg.Cc) | (1 << CC_SHN_SHIFT));
    expect(d.reg(NvmeReg.Csts) & CSTS_SHST_MASK).toBe(CSTS_SHST_COMPLETE);
    d.place(1, { opc: NvmeIoOpcode.Flush, nsid: 1 });
    d.ring(1);
    expect(d.peek(1)).toBeUndefined();
    expect(nvme.stats.ioCommands[NvmeIoOpcode.Flush]).toBe(0);
    d.setReg(NvmeReg.Cc, 0);
    expect(d.reg(NvmeReg.Csts)).toBe(0);
  });

  it("register writes of the wrong size or alignment, and to read-only registers, are ignored, never thrown", () => {
    const { d, nvme } = direct();
    expect(nvme.registers.write(NvmeReg.Cc, 1, CC_EN)).toMatchObject({ kind: "device-error" });
    expect(nvme.registers.write(NvmeReg.Cc + 2, 2, 1)).toMatchObject({ kind: "device-error" });
    expect(nvme.registers.write(NvmeReg.Cap, 4, 0)).toMatchObject({ kind: "device-error" });
    expect(nvme.registers.write(NvmeReg.Csts, 4, 0xffff_ffff)).toMatchObject({ kind: "device-error" });
    expect(d.reg(NvmeReg.Cc)).toBe(0);
    expect(d.reg(NvmeReg.Csts)).toBe(0);
    expect(d.reg(NvmeReg.Cap) & 0xffff).toBe(NVME_MQES);
    expect(nvme.stats.ignoredWrites).toBe(4);
    // ASQ/ACQ low 12 bits are reserved.
    d.setReg(NvmeReg.Asq, ASQ | 0x123);
    expect(d.reg(NvmeReg.Asq)).toBe(ASQ);
  });
});

describe("NVMe controller: admin commands (5)", () => {
  it("Identify controller, namespace and the active namespace list", () => {
    const { d } = ready();
    expect(d.admin({ opc: NvmeAdminOpcode.Identify, prp1: BUF, cdw10: 1 }).status).toBe(0);
    const c = new DataView(d.mem.read(BUF, 4096).buffer);
    expect(c.getUint16(0, true)).toBe(NVME_VENDOR_ID);
    expect(c.getUint8(77)).toBe(NVME_MDTS);
    expect(c.getUint32(80, true)).toBe(NVME_VS);
    expect(c.getUint8(512)).toBe(0x66);
    expect(c.getUint8(513)).toBe(0x44);
    expect(c.getUint32(516, true)).toBe(1); // NN
    // Identify namespace into a buffer with a PRP1 offset: the rest goes to PRP2.
    const prp1 = BUF + 0x1000 + 0x200;
    expect(d.admin({ opc: NvmeAdminOpcode.Identify, nsid: 1, prp1, prp2: BUF + 0x3000, cdw10: 0 }).status).toBe(0);
    const first = d.mem.read(prp1, 4096 - 0x200);
    const rest = d.mem.read(BUF + 0x3000, 0x200);
    const ns = new Uint8Array(4096);
    ns.set(first);
    ns.set(rest, 4096 - 0x200);
    const nv = new DataView(ns.buffer);
    expect(nv.getUint32(0, true)).toBe(DISK_SECTORS); // NSZE
    expect(nv.getUint32(4, true)).toBe(0);
    expect((nv.getUint32(128, true) >>> 16) & 0xff).toBe(9); // LBADS: 512 bytes
    expect(d.admin({ opc: NvmeAdminOpcode.Identify, nsid: 0, prp1: BUF, cdw10: 2 }).status).toBe(0);
    const list = new DataView(d.mem.read(BUF, 8).buffer);
    expect([list.getUint32(0, true), list.getUint32(4, true)]).toEqual([1, 0]);
    expect(d.admin({ opc: NvmeAdminOpcode.Identify, nsid: 1, prp1: BUF, cdw10: 2 }).status).toBe(0);
    expect(new DataView(d.mem.read(BUF, 4).buffer).getUint32(0, true)).toBe(0);
    // Hostile: a namespace that does not exist, an unknown CNS.
    expect(d.admin({ opc: NvmeAdminOpcode.Identify, nsid: 2, prp1: BUF, cdw10: 0 })).toMatchObject({ status: NvmeStatus.InvalidNamespaceOrFormat, dnr: true });
    expect(d.admin({ opc: NvmeAdminOpcode.Identify, nsid: 1, prp1: BUF, cdw10: 0x55 }).status).toBe(NvmeStatus.InvalidFieldInCommand);
  });

  it("Create I/O CQ/SQ validate the queue id, size, contiguity, vector and CQ; deletes check use", () => {
    const { d, nvme } = direct();
    d.enable();
    const cq = (qid: number, entries: number, cdw11 = 3, prp1 = IOCQ) => d.admin({ opc: NvmeAdminOpcode.CreateIoCq, prp1, cdw10: (((entries - 1) & 0xffff) << 16) | qid, cdw11 }).status;
    const sq = (qid: number, entries: number, cqid: number, pc = 1, prp1 = IOSQ) => d.admin({ opc: NvmeAdminOpcode.CreateIoSq, prp1, cdw10: (((entries - 1) & 0xffff) << 16) | qid, cdw11: ((cqid << 16) | pc) >>> 0 }).status;
    expect(cq(0, 16)).toBe(NvmeStatus.InvalidQueueIdentifier);
    expect(cq(65, 16)).toBe(NvmeStatus.InvalidQueueIdentifier);
    expect(cq(1, 1)).toBe(NvmeStatus.InvalidQueueSize); // QSIZE 0
    expect(cq(1, NVME_MQES + 2)).toBe(NvmeStatus.InvalidQueueSize);
    expect(cq(1, 0x10000)).toBe(NvmeStatus.InvalidQueueSize); // QSIZE FFFFh
    expect(cq(1, 16, 2)).toBe(NvmeStatus.InvalidFieldInCommand); // PC = 0
    expect(cq(1, 16, (1 << 16) | 3)).toBe(NvmeStatus.InvalidInterruptVector);
    expect(cq(1, 16, 3, IOCQ + 8)).toBe(NvmeStatus.InvalidFieldInCommand); // not page aligned
    expect(cq(1, NVME_MQES + 1)).toBe(NvmeStatus.Success);
    expect(cq(1, 16)).toBe(NvmeStatus.InvalidQueueIdentifier); // exists
    expect(sq(1, 16, 2)).toBe(NvmeStatus.CompletionQueueInvalid);
    expect(sq(1, 16, 0)).toBe(NvmeStatus.CompletionQueueInvalid);
    expect(sq(1, 16, 1, 0)).toBe(NvmeStatus.InvalidFieldInCommand);
    expect(sq(1, NVME_MQES + 2, 1)).toBe(NvmeStatus.InvalidQueueSize);
    expect(sq(0, 16, 1)).toBe(NvmeStatus.InvalidQueueIdentifier);
    expect(sq(1, 16, 1)).toBe(NvmeStatus.Success);
    expect(sq(1, 16, 1)).toBe(NvmeStatus.InvalidQueueIdentifier);
    const del = (opc: number, qid: number) => d.admin({ opc, cdw10: qid }).status;
    expect(del(NvmeAdminOpcode.DeleteIoCq, 1)).toBe(NvmeStatus.InvalidQueueDeletion);
    expect(del(NvmeAdminOpcode.DeleteIoSq, 0)).toBe(NvmeStatus.InvalidQueueIdentifier);
    expect(del(NvmeAdminOpcode.DeleteIoSq, 2)).toBe(NvmeStatus.InvalidQueueIdentifier);
    expect(del(NvmeAdminOpcode.DeleteIoSq, 0xffff)).toBe(NvmeStatus.InvalidQueueIdentifier);
    expect(del(NvmeAdminOpcode.DeleteIoSq, 1)).toBe(NvmeStatus.Success);
    expect(del(NvmeAdminOpcode.DeleteIoCq, 1)).toBe(NvmeStatus.Success);
    expect(del(NvmeAdminOpcode.DeleteIoCq, 1)).toBe(NvmeStatus.InvalidQueueIdentifier);
    expect(nvme.state().completionQueues.map((q) => q.qid)).toEqual([0]);
    expect(nvme.errorCounts()[NvmeStatus.InvalidQueueSize]).toBe(4);
  });

  it("Set/Get Features Number of Queues bounds the queue ids and only works before I/O queues exist", () => {
    const { d } = direct();
    d.enable();
    const set = (cdw11: number, cdw10 = 7) => d.admin({ opc: NvmeAdminOpcode.SetFeatures, cdw10, cdw11 });
    expect(set(0xffff_ffff).status).toBe(NvmeStatus.InvalidFieldInCommand);
    expect(set(0x0001_0001, 0x8000_0007).status).toBe(NvmeStatus.FeatureIdentifierNotSaveable);
    expect(set(0, 0x42).status).toBe(NvmeStatus.InvalidFieldInCommand);
    expect(set(0x0001_0001)).toMatchObject({ status: 0, dw0: 0x0001_0001 }); // 2 SQs, 2 CQs
    expect(set(0x1000_1000)).toMatchObject({ status: 0, dw0: 0x003f_003f }); // capped at 64
    expect(set(0x0001_0001).dw0).toBe(0x0001_0001);
    expect(d.admin({ opc: NvmeAdminOpcode.GetFeatures, cdw10: 7 })).toMatchObject({ status: 0, dw0: 0x0001_0001 });
    expect(d.admin({ opc: NvmeAdminOpcode.GetFeatures, cdw10: 0x107 }).dw0).toBe(0x003f_003f); // default
    expect(d.admin({ opc: NvmeAdminOpcode.GetFeatures, cdw10: 0x707 }).status).toBe(NvmeStatus.InvalidFieldInCommand);
    expect(d.admin({ opc: NvmeAdminOpcode.CreateIoCq, prp1: IOCQ, cdw10: (15 << 16) | 3, cdw11: 3 }).status).toBe(NvmeStatus.InvalidQueueIdentifier);
    expect(d.admin({ opc: NvmeAdminOpcode.CreateIoCq, prp1: IOCQ, cdw10: (15 << 16) | 2, cdw11: 3 }).status).toBe(0);
    expect(set(0x0003_0003).status).toBe(NvmeStatus.CommandSequenceError);
  });

  it("unknown, unmodelled and malformed opcodes answer Invalid Command Opcode / Invalid Field", () => {
    const { d, nvme } = ready();
    expect(d.admin({ opc: 0x7f })).toMatchObject({ status: NvmeStatus.InvalidCommandOpcode, dnr: true, sqid: 0 });
    expect(d.admin({ opc: NvmeAdminOpcode.AsyncEventRequest }).status).toBe(NvmeStatus.InvalidCommandOpcode);
    expect(d.admin({ opc: NvmeAdminOpcode.GetLogPage }).status).toBe(NvmeStatus.InvalidCommandOpcode);
    expect(d.io({ opc: 0x55, nsid: 1 })).toMatchObject({ status: NvmeStatus.InvalidCommandOpcode, sqid: 1 });
    expect(d.io({ opc: NvmeAdminOpcode.Identify, nsid: 1 }).status).toBe(NvmeStatus.InvalidCommandOpcode); // admin opcode on an I/O queue
    expect(d.io({ opc: NvmeIoOpcode.Read, nsid: 1, prp1: BUF, cdw0hi: 0x40 }).status).toBe(NvmeStatus.InvalidFieldInCommand); // PSDT: SGL
    expect(d.io({ opc: NvmeIoOpcode.Write, nsid: 1, prp1: BUF, cdw0hi: 0x01 }).status).toBe(NvmeStatus.InvalidFieldInCommand); // FUSE
    expect(d.admin({ opc: NvmeAdminOpcode.Identify, prp1: BUF, cdw10: 1, cdw0hi: 0x80 }).status).toBe(NvmeStatus.InvalidFieldInCommand);
    expect(nvme.stats.adminCommands[0x7f]).toBe(1);
    expect(nvme.stats.ioCommands[0x55]).toBe(1);
  });
});

describe("NVMe controller: NVM commands and PRPs (6, 4.3)", () => {
  it("writes then reads back a 96 KiB buffer through a PRP list with an offset PRP1 (checksums equal)", () => {
    const { d, nvme, backend } = ready();
    const bytes = 96 * 1024;
    const blocks = bytes / 512;
    const data = pattern(bytes, 1);
    // Scattered pages: PRP1 at an offset, then 24 more pages listed in reverse order.
    const off = 0x600;
    const prp1 = BUF + off;
    const pages = Array.from({ length: 24 }, (_, i) => BUF + 0x40_000 - i * 2 * PAGE);
    d.mem.write(prp1, data.subarray(0, PAGE - off));
    pages.forEach((p, i) => d.mem.write(p, data.subarray(PAGE - off + i * PAGE, Math.min(bytes, PAGE - off + (i + 1) * PAGE))));
    writeList(d, LIST, pages);
    expect(d.rw(NvmeIoOpcode.Write, 100, blocks, prp1, LIST)).toMatchObject({ status: 0, sqid: 1 });
    expect(checksum(backend.data.subarray(100 * 512, 100 * 512 + bytes))).toBe(checksum(data));
    // Read it back into one contiguous region through a chained list: PRP2 at the end of a page.
    const dst = 0x200_000;
    const dstPages = Array.from({ length: 24 }, (_, i) => dst + (i + 1) * PAGE);
    const chainAt = LIST + 0x2000 - 16; // two entries: a data page and the chain pointer
    writeList(d, chainAt, [dstPages[0] as number, LIST + 0x3000]);
    writeList(d, LIST + 0x3000, dstPages.slice(1));
    expect(d.rw(NvmeIoOpcode.Read, 100, blocks, dst + off, chainAt).status).toBe(0);
    expect(checksum(d.mem.read(dst + off, bytes))).toBe(checksum(data));
    expect(nvme.stats.bytesRead).toBe(bytes);
    expect(nvme.stats.bytesWritten).toBe(bytes);
    expect(d.io({ opc: NvmeIoOpcode.Flush, nsid: 1 }).status).toBe(0);
    expect(d.io({ opc: NvmeIoOpcode.Flush, nsid: 0xffff_ffff }).status).toBe(0);
    expect(nvme.stats.dmaFaults).toBe(0);
  });

  it("LBA Out of Range, Invalid Namespace, transfers beyond MDTS", () => {
    const { d, backend, dma } = ready();
    const before = checksum(backend.data);
    expect(d.rw(NvmeIoOpcode.Write, DISK_SECTORS - 1, 2, BUF, BUF + PAGE)).toMatchObject({ status: NvmeStatus.LbaOutOfRange, dnr: true });
    expect(d.rw(NvmeIoOpcode.Read, DISK_SECTORS, 1, BUF).status).toBe(NvmeStatus.LbaOutOfRange);
    expect(d.rw(NvmeIoOpcode.Read, 2 ** 32, 1, BUF).status).toBe(NvmeStatus.LbaOutOfRange);
    expect(d.rw(NvmeIoOpcode.Read, 0, 1, BUF, 0, 2).status).toBe(NvmeStatus.InvalidNamespaceOrFormat);
    expect(d.rw(NvmeIoOpcode.Read, 0, 1, BUF, 0, 0xffff_ffff).status).toBe(NvmeStatus.InvalidNamespaceOrFormat);
    expect(d.io({ opc: NvmeIoOpcode.Flush, nsid: 0 }).status).toBe(NvmeStatus.InvalidNamespaceOrFormat);
    const dmaBefore = dma.total;
    expect(d.rw(NvmeIoOpcode.Read, 0, NVME_MAX_TRANSFER / 512 + 1, BUF, LIST).status).toBe(NvmeStatus.InvalidFieldInCommand);
    expect(d.rw(NvmeIoOpcode.Read, 0, 0x10000, BUF, LIST).status).toBe(NvmeStatus.InvalidFieldInCommand); // NLB FFFFh
    expect(dma.total - dmaBefore).toBe(4); // two SQE fetches, two CQE posts: no data, no list
    expect(d.rw(NvmeIoOpcode.Read, DISK_SECTORS - 1, 1, BUF).status).toBe(0);
    expect(checksum(backend.data)).toBe(before);
  });

  it("misaligned PRP entries answer PRP Offset Invalid and move no data", () => {
    const { d, backend } = ready();
    backend.data.fill(0x5a, 0, 8 * PAGE);
    d.mem.write(BUF, new Uint8Array(4 * PAGE));
    expect(d.rw(NvmeIoOpcode.Read, 0, 1, BUF + 2).status).toBe(NvmeStatus.PrpOffsetInvalid); // PRP1 not dword aligned
    expect(d.rw(NvmeIoOpcode.Read, 0, 16, BUF, BUF + PAGE + 0x10).status).toBe(NvmeStatus.PrpOffsetInvalid); // second page with an offset
    expect(d.rw(NvmeIoOpcode.Read, 0, 24, BUF, LIST + 4).status).toBe(NvmeStatus.PrpOffsetInvalid); // list pointer not qword aligned
    writeList(d, LIST, [BUF + PAGE, BUF + 2 * PAGE + 8]);
    expect(d.rw(NvmeIoOpcode.Read, 0, 24, BUF, LIST).status).toBe(NvmeStatus.PrpOffsetInvalid); // list entry with an offset
    writeList(d, LIST + PAGE - 8, [BUF + 0x10]); // chain pointer with an offset
    expect(d.rw(NvmeIoOpcode.Read, 0, 24, BUF, LIST + PAGE - 8).status).toBe(NvmeStatus.PrpOffsetInvalid);
    expect(d.mem.read(BUF, 4 * PAGE).every((b) => b === 0)).toBe(true);
  });

  it("a PRP list that chains to itself ends by the transfer length", () => {
    const { d, dma } = ready();
    // Every entry of the list page points at the list page itself; PRP2 is its last entry, the chain pointer.
    writeList(d, LIST, Array.from({ length: 512 }, () => LIST));
    const before = dma.total;
    const c = d.rw(NvmeIoOpcode.Read, 0, NVME_MAX_TRANSFER / 512, BUF, LIST + PAGE - 8);
    expect(c.status).toBe(0); // a strange but valid list: every data page is the list page
    // SQE, two list reads, one merged-or-not data write per page (at most 32), CQE.
    expect(dma.total - before).toBeLessThanOrEqual(2 + 2 + (1 << NVME_MDTS));
  });

  it("commands pass through a queue several times around: phase tags flip, SQ head is reported", () => {
    const { d, nvme } = ready();
    for (let i = 0; i < 3 * IO_ENTRIES + 5; i++) {
      const c = d.rw(NvmeIoOpcode.Write, i, 1, BUF);
      expect(c.status).toBe(0);
      expect(c.sqhd).toBe(d.sqTail[1]);
      expect(c.phase).toBe(Math.floor(i / IO_ENTRIES) % 2 === 0 ? 1 : 0);
    }
    expect(nvme.state().completionQueues[1]).toMatchObject({ head: 5, tail: 5, phase: 0 });
  });

  it("a full CQ holds commands in the SQ until the host frees a slot", () => {
    const { d, nvme } = direct();
    d.enable();
    d.createQueues(2); // a 2-entry CQ holds one completion
    d.place(1, { opc: NvmeIoOpcode.Flush, nsid: 1 });
    d.ring(1);
    expect(nvme.stats.ioCommands[NvmeIoOpcode.Flush]).toBe(1);
    d.place(1, { opc: NvmeIoOpcode.Flush, nsid: 1 });
    d.ring(1);
    expect(nvme.stats.ioCommands[NvmeIoOpcode.Flush]).toBe(1); // CQ full: waits
    expect(d.reap(1)?.status).toBe(0); // frees a slot: the waiting command runs
    expect(nvme.stats.ioCommands[NvmeIoOpcode.Flush]).toBe(2);
    expect(d.reap(1)?.status).toBe(0);
  });
});

describe("NVMe controller: hostile doorbells", () => {
  it("values beyond the queue, CQ heads past the posted entries and missing queues are ignored and counted", () => {
    const { d, nvme } = ready();
    const count = () => nvme.stats.ioCommands.reduce((a, b) => a + b, 0);
    expect(d.setReg(sqTailDoorbell(1), IO_ENTRIES)).toMatchObject({ kind: "device-error" });
    expect(d.setReg(sqTailDoorbell(1), 0xffff_ffff)).toMatchObject({ kind: "device-error" });
    expect(count()).toBe(0);
    expect(nvme.stats.invalidDoorbellValues).toBe(2);
    expect(d.setReg(cqHeadDoorbell(1), 3)).toMatchObject({ kind: "device-error" }); // nothing posted
    expect(d.setReg(cqHeadDoorbell(1), IO_ENTRIES)).toMatchObject({ kind: "device-error" });
    expect(nvme.stats.invalidDoorbellValues).toBe(4);
    expect(d.setReg(sqTailDoorbell(7), 1)).toMatchObject({ kind: "device-error" });
    expect(d.setReg(cqHeadDoorbell(64), 0)).toMatchObject({ kind: "device-error" });
    expect(d.setReg(NVME_BAR_SIZE - 4, 1)).toMatchObject({ kind: "device-error" });
    expect(nvme.registers.write(sqTailDoorbell(1), 2, 1)).toMatchObject({ kind: "device-error" });
    expect(nvme.stats.invalidDoorbellRegisters).toBe(3);
    expect(d.reg(sqTailDoorbell(1))).toBe(0); // doorbells read 0
    // The queues still work.
    expect(d.rw(NvmeIoOpcode.Write, 0, 1, BUF).status).toBe(0);
  });

  it("a tail doorbell naming a whole queue of garbage processes at most the queue's size", () => {
    const { d, nvme } = ready();
    d.mem.write(IOSQ, pattern(IO_ENTRIES * 64, 9));
    d.setReg(sqTailDoorbell(1), IO_ENTRIES - 1);
    const processed = nvme.stats.ioCommands.reduce((a, b) => a + b, 0);
    expect(processed).toBeLessThanOrEqual(IO_ENTRIES - 1);
    expect(processed).toBeGreaterThan(0);
    expect(d.reg(NvmeReg.Csts) & CSTS_CFS).toBe(0);
  });

  it("fast-check: random register and doorbell writes never throw and never break the controller's invariants", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: NVME_BAR_SIZE - 1 }), fc.constantFrom(1, 2, 4), fc.integer({ min: 0, max: 0xffff_ffff })), { maxLength: 60 }), (writes) => {
        const { d, nvme } = ready();
        d.mem.write(IOSQ, pattern(IO_ENTRIES * 64, writes.length));
        for (const [o, size, v] of writes) {
          if (o === NvmeReg.Cc) continue; // keep the controller enabled most of the time
          nvme.registers.write(o & ~(size - 1), size as 1 | 2 | 4, v & (size === 4 ? 0xffff_ffff : size === 2 ? 0xffff : 0xff));
        }
        for (const q of [...nvme.state().submissionQueues, ...nvme.state().completionQueues]) {
          expect(q.head).toBeLessThan(q.size);
          expect(q.tail).toBeLessThan(q.size);
        }
      }),
      { numRuns: 60 },
    );
  });
});

describe("NVMe controller: bus mastering, CC.EN toggling, FLR", () => {
  it("with bus mastering off no DMA happens; turning it on serves the doorbell", () => {
    const { d, nvme, dma } = ready();
    d.command(PCI_COMMAND_MEMORY);
    const before = dma.total;
    d.place(1, { opc: NvmeIoOpcode.Write, nsid: 1, prp1: BUF, cdw10: 0 });
    d.ring(1);
    expect(dma.total).toBe(before);
    expect(nvme.stats.masterDisabledStalls).toBe(1);
    expect(d.peek(1)).toBeUndefined();
    d.command(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    expect(d.reap(1)?.status).toBe(0);
  });

  it("CC.EN 1 -> 0 with commands queued drops them: no DMA afterwards", () => {
    const { d, nvme, dma } = ready();
    d.command(PCI_COMMAND_MEMORY);
    for (let i = 0; i < 4; i++) d.place(1, { opc: NvmeIoOpcode.Write, nsid: 1, prp1: BUF, cdw10: i });
    d.ring(1);
    d.setReg(NvmeReg.Cc, 0);
    const before = dma.total;
    d.command(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    d.ring(1);
    expect(dma.total).toBe(before);
    expect(nvme.stats.ioCommands[NvmeIoOpcode.Write]).toBe(0);
    expect(nvme.stats.invalidDoorbellRegisters).toBe(1);
    // Enabling again starts from clean admin queues.
    d.enable();
    expect(d.admin({ opc: NvmeAdminOpcode.Identify, prp1: BUF, cdw10: 1 }).status).toBe(0);
  });

  it("reset() (FLR) quiesces: no queues, registers and command register cleared, INTx deasserted, no DMA", () => {
    const { d, nvme, dma, levels } = ready();
    levels.length = 0;
    d.place(1, { opc: NvmeIoOpcode.Flush, nsid: 1 });
    d.ring(1); // a completion the host has not consumed: INTx asserted
    expect(levels).toEqual([true]);
    d.command(PCI_COMMAND_MEMORY);
    d.place(1, { opc: NvmeIoOpcode.Flush, nsid: 1 });
    d.ring(1); // queued behind bus mastering
    nvme.reset();
    expect(levels).toEqual([true, false]);
    expect(nvme.config.command).toBe(0);
    expect(nvme.state()).toMatchObject({ cc: 0, csts: 0, aqa: 0, asq: 0, acq: 0, intms: 0, intx: false, submissionQueues: [], completionQueues: [] });
    const before = dma.total;
    d.command(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    d.setReg(sqTailDoorbell(1), 1);
    expect(dma.total).toBe(before);
    expect(nvme.config.read(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT).toBe(0);
  });
});

describe("NVMe controller: pin-based interrupts (7.5.1.1)", () => {
  it("INTx is asserted while a completion is unconsumed and follows INTMS/INTMC and INTX_DISABLE, calling the line on changes only", () => {
    const { d, nvme, levels } = direct();
    d.enable();
    d.place(0, { opc: NvmeAdminOpcode.Identify, prp1: BUF, cdw10: 1 });
    d.ring(0);
    expect(levels).toEqual([true]);
    expect(nvme.config.read(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT).toBe(PCI_STATUS_INTERRUPT);
    expect((nvme.config.read(PCI_COMMAND, 4) >>> 16) & PCI_STATUS_INTERRUPT).toBe(PCI_STATUS_INTERRUPT);
    d.setReg(NvmeReg.Intms, 1);
    expect(levels).toEqual([true, false]);
    expect(d.reg(NvmeReg.Intms)).toBe(1);
    expect(d.reg(NvmeReg.Intmc)).toBe(1);
    d.setReg(NvmeReg.Intms, 1); // no change, no call
    d.setReg(NvmeReg.Intmc, 1);
    expect(levels).toEqual([true, false, true]);
    d.command(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
    expect(levels).toEqual([true, false, true, false]);
    // The device still has the interrupt pending: PCI_STATUS_INTERRUPT stays set.
    expect(nvme.config.read(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT).toBe(PCI_STATUS_INTERRUPT);
    d.command(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    expect(levels).toEqual([true, false, true, false, true]);
    d.reap(0); // the head doorbell consumes it
    expect(levels).toEqual([true, false, true, false, true, false]);
    expect(nvme.config.read(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT).toBe(0);
    expect(nvme.stats.interrupts).toBe(3);
  });

  it("an I/O CQ created without IEN does not interrupt; one with IEN does until its head catches up", () => {
    const { d, levels } = direct();
    d.enable();
    d.createQueues(IO_ENTRIES, false);
    expect(levels).toEqual([true, false, true, false]); // the two admin completions, each consumed
    d.place(1, { opc: NvmeIoOpcode.Flush, nsid: 1 });
    d.place(1, { opc: NvmeIoOpcode.Flush, nsid: 1 });
    d.ring(1);
    expect(levels.length).toBe(4);
    expect(d.reap(1)?.status).toBe(0);
    expect(d.reap(1)?.status).toBe(0);
    const h = ready();
    h.levels.length = 0;
    h.d.place(1, { opc: NvmeIoOpcode.Flush, nsid: 1 });
    h.d.place(1, { opc: NvmeIoOpcode.Flush, nsid: 1 });
    h.d.ring(1);
    expect(h.levels).toEqual([true]);
    h.d.peek(1);
    h.d.setReg(cqHeadDoorbell(1), 1); // one of two consumed: still asserted
    expect(h.levels).toEqual([true]);
    h.d.peek(1);
    h.d.setReg(cqHeadDoorbell(1), 2);
    expect(h.levels).toEqual([true, false]);
  });
});

describe("NVMe controller: DMA faults", () => {
  it("a completion queue outside memory sets CSTS.CFS and stops processing", () => {
    const { d, nvme } = direct({ memory: 4 * 1024 * 1024 });
    d.enable();
    const far = 64 * 1024 * 1024;
    expect(d.admin({ opc: NvmeAdminOpcode.CreateIoCq, prp1: far, cdw10: (15 << 16) | 1, cdw11: 3 }).status).toBe(0);
    expect(d.admin({ opc: NvmeAdminOpcode.CreateIoSq, prp1: IOSQ, cdw10: (15 << 16) | 1, cdw11: (1 << 16) | 1 }).status).toBe(0);
    d.sqBase[1] = IOSQ;
    d.sqSize[1] = 16;
    d.place(1, { opc: NvmeIoOpcode.Flush, nsid: 1 });
    d.place(1, { opc: NvmeIoOpcode.Flush, nsid: 1 });
    d.ring(1);
    expect(d.reg(NvmeReg.Csts) & CSTS_CFS).toBe(CSTS_CFS);
    expect(nvme.stats.ioCommands[NvmeIoOpcode.Flush]).toBe(1);
    expect(nvme.stats.recentFaults).toMatchObject([{ site: "cq-entry", write: true, iova: far }]);
    // Fatal until a controller reset.
    d.place(0, { opc: NvmeAdminOpcode.Identify, prp1: BUF, cdw10: 1 });
    d.ring(0);
    expect(nvme.stats.adminCommands[NvmeAdminOpcode.Identify]).toBe(0);
    d.setReg(NvmeReg.Cc, 0);
    expect(d.reg(NvmeReg.Csts)).toBe(0);
    d.enable();
    expect(d.reg(NvmeReg.Csts)).toBe(CSTS_RDY);
  });
});

const GiB = 1024 ** 3;
const FRAMES = 1024; // 4 MiB per domain
const A_BASE = 0x10_0000; // domain A's frames from mfn 0x100000 (4 GiB)
const B_BASE = 0x18_0000; // domain B's

/** The controller assigned to domain A behind a VT-d unit; bus addresses are A's guest-physical addresses. */
function behindIommu() {
  const memory = new MachineMemory(16 * GiB);
  const mmio = new MmioBus();
  const { unit, driver } = twoDomainVtd({ memory, mmio, source: NVME_BDF, frames: FRAMES, aBase: A_BASE, bBase: B_BASE });
  const backend = new MemoryBlockBackend(DISK_SECTORS);
  const nvme = new NvmeController({ requester: NVME_BDF, backend });
  nvme.connectDma(unit);
  const toHpa = (gpa: number) => A_BASE * PAGE + gpa; // A's p2m is linear
  const d = new Driver(nvme, {
    read: (gpa, n) => {
      const out = new Uint8Array(n);
      memory.readBytes(toHpa(gpa), out);
      return out;
    },
    write: (gpa, b) => {
      memory.writeBytes(toHpa(gpa), b);
    },
  });
  const bFrame = (B_BASE + 5) * PAGE;
  memory.writeBytes(bFrame, new Uint8Array(PAGE).fill(0xbb));
  return { memory, unit, driver, nvme, backend, d, bFrame };
}

describe("NVMe controller assigned behind VT-d", () => {
  it("reads and writes its guest's memory by guest-physical address", () => {
    const { d, backend, unit } = behindIommu();
    d.enable();
    d.createQueues();
    const data = pattern(3 * PAGE, 4);
    d.mem.write(BUF, data);
    writeList(d, LIST, [BUF + PAGE, BUF + 2 * PAGE]);
    expect(d.rw(NvmeIoOpcode.Write, 8, 24, BUF, LIST).status).toBe(0);
    expect(backend.data.subarray(8 * 512, 8 * 512 + 3 * PAGE)).toEqual(data);
    expect(unit.stats.faults).toBe(0);
  });

  it("data aimed at another domain's frame is blocked: Data Transfer Error, the fault kept, B unchanged", () => {
    const { d, nvme, memory, bFrame, driver } = behindIommu();
    d.enable();
    d.createQueues();
    expect(d.rw(NvmeIoOpcode.Read, 0, 8, bFrame)).toMatchObject({ status: NvmeStatus.DataTransferError, dnr: true });
    const b = new Uint8Array(PAGE);
    memory.readBytes(bFrame, b);
    expect(b.every((x) => x === 0xbb)).toBe(true);
    expect(nvme.stats.dmaFaults).toBe(1);
    expect(nvme.stats.recentFaults).toMatchObject([{ site: "data", iova: bFrame, write: true, reason: FaultReason.WriteNotPermitted }]);
    expect(driver.readFaults()).toMatchObject([{ sourceId: NVME_BDF, pageAddress: bFrame, read: false }]);
    // A PRP list outside the guest, and a Write whose data is outside: Data Transfer Error, namespace untouched.
    expect(d.rw(NvmeIoOpcode.Read, 0, 24, BUF, bFrame).status).toBe(NvmeStatus.DataTransferError);
    expect(nvme.stats.recentFaults.at(-1)).toMatchObject({ site: "prp-list", write: false });
    expect(d.rw(NvmeIoOpcode.Write, 0, 8, bFrame).status).toBe(NvmeStatus.DataTransferError);
    expect(nvme.errorCounts()).toEqual({ [NvmeStatus.DataTransferError]: 3 });
    // The controller is still healthy.
    expect(d.reg(NvmeReg.Csts)).toBe(CSTS_RDY);
    expect(d.rw(NvmeIoOpcode.Read, 0, 8, BUF).status).toBe(0);
  });

  it("a flood of blocked DMAs keeps only the last NVME_FAULTS_KEPT faults and every command completes", () => {
    const { d, nvme, bFrame } = behindIommu();
    d.enable();
    d.createQueues();
    for (let i = 0; i < 20; i++) expect(d.rw(NvmeIoOpcode.Write, i, 1, bFrame + i * 512).status).toBe(NvmeStatus.DataTransferError);
    expect(nvme.stats.dmaFaults).toBe(20);
    expect(nvme.stats.recentFaults.length).toBe(NVME_FAULTS_KEPT);
    expect(nvme.stats.recentFaults.at(-1)).toMatchObject({ site: "data", write: false, iova: bFrame + 19 * 512 });
    expect(nvme.stats.bytesWritten).toBe(0);
  });

  it("an admin queue outside the guest: the SQ entry fetch faults and CSTS.CFS is set", () => {
    const { d, nvme, unit } = behindIommu();
    d.command(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    d.setReg(NvmeReg.Aqa, 0x0007_0007);
    d.setReg(NvmeReg.Asq, 0x4000_0000); // unmapped in A
    d.setReg(NvmeReg.Acq, ACQ);
    d.setReg(NvmeReg.Cc, CC_EN);
    d.setReg(sqTailDoorbell(0), 1);
    expect(d.reg(NvmeReg.Csts) & CSTS_CFS).toBe(CSTS_CFS);
    expect(nvme.stats.recentFaults).toMatchObject([{ site: "sq-entry", iova: 0x4000_0000, write: false }]);
    expect(unit.stats.faults).toBe(1);
  });
});

describe("NVMe controller: law", () => {
  it("fast-check: random reads and writes of random LBA ranges agree with a model disk", () => {
    const SECTORS = 512;
    const op = fc.record({
      write: fc.boolean(),
      slba: fc.integer({ min: 0, max: SECTORS + 8 }),
      blocks: fc.integer({ min: 1, max: 40 }),
      offset: fc.integer({ min: 0, max: 1023 }).map((x) => x * 4),
      seed: fc.integer({ min: 0, max: 1 << 20 }),
    });
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 25 }), (ops) => {
        const h = direct({ sectors: SECTORS });
        h.d.enable();
        h.d.createQueues();
        const model = new Uint8Array(SECTORS * 512);
        for (const o of ops) {
          const bytes = o.blocks * 512;
          const first = PAGE - o.offset;
          const pages = Math.ceil(Math.max(0, bytes - first) / PAGE);
          const buf = BUF + o.offset;
          // Data pages after the first are BUF + PAGE * (1 + i), contiguous, so the buffer is one run.
          const prp2 = pages === 0 ? 0 : pages === 1 ? BUF + PAGE : LIST;
          if (pages > 1) writeList(h.d, LIST, Array.from({ length: pages }, (_, i) => BUF + PAGE * (1 + i)));
          const inRange = o.slba + o.blocks <= SECTORS;
          if (o.write) {
            const data = pattern(bytes, o.seed);
            h.d.mem.write(buf, data);
            const c = h.d.rw(NvmeIoOpcode.Write, o.slba, o.blocks, buf, prp2);
            expect(c.status).toBe(inRange ? 0 : NvmeStatus.LbaOutOfRange);
            if (inRange) model.set(data, o.slba * 512);
          } else {
            h.d.mem.write(buf, new Uint8Array(bytes));
            const c = h.d.rw(NvmeIoOpcode.Read, o.slba, o.blocks, buf, prp2);
            expect(c.status).toBe(inRange ? 0 : NvmeStatus.LbaOutOfRange);
            if (inRange) expect(checksum(h.d.mem.read(buf, bytes))).toBe(checksum(model.subarray(o.slba * 512, o.slba * 512 + bytes)));
          }
        }
        expect(checksum(h.backend.data)).toBe(checksum(model));
      }),
      { numRuns: 40 },
    );
  });
});
