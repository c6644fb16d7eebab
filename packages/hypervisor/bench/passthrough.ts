/**
 * Device assignment and the host IOMMU (JSON lines), issue 14's figures.
 *
 * 1. The reference kernel's `workload=nvme mib=GUEST_MIB` (the disk workload's data written with
 *    NVM Write and read back with NVM Read through the kernel's NVMe driver, nvme.c) in a domain
 *    on EPT owning the NvmeController at 00:04.0, with the host IOMMU strict, deferred and off
 *    (iommu = 0: the kernel needs `dmabase=`, its machine base, found with a probe domain as
 *    test/nvme-guest.test.ts does). Device MiB/s of wall time (the whole run, boot included) and
 *    of modelled time: data bytes moved / (the domain's modelled cycles + the IOMMU's modelled
 *    cycles) at the host clock frequency; IOTLB hit rate, walk references per DMA and
 *    invalidations (remapping on only). The console must end with the PASS line.
 *    The kernel keeps its buffers mapped for its whole run (one static write and one read
 *    buffer), so strict and deferred barely differ here: there is nothing to unmap.
 *
 * 2. Amit et al.'s setting (WIOSCA 2010 / USENIX ATC 2011), where they do differ: a driver that
 *    maps each I/O buffer into the IOMMU before the DMA and unmaps it after, as a driver domain
 *    serving PV block requests grant-maps the frontend's pages (or as Linux's DMA API maps per
 *    request). Driven from TypeScript on a driver domain owning the NvmeController: per 64 KiB
 *    request, the frontend's 16 buffer frames are mapped into the driver domain's p2m with
 *    setP2mEntry (a grant: read-only for a Write, the device only reads; writable for a Read),
 *    one NVM Write or Read is submitted through the domain's MMIO (SQ tail doorbell) with the
 *    SQ entry and PRP list in its memory, the completion is polled (phase tag, status, CQ head
 *    doorbell), and the 16 frames are unmapped (setP2mEntry removed). After every FLUSH_EVERY
 *    requests the hypervisor's flush point runs (`hv.passthrough.iommu.flushPoint()`, what the
 *    hypervisor calls after each VM-exit handler and scheduler slice). Strict, deferred and off
 *    get identical request streams; the data read back must equal the data written.
 *
 * Modelled more simply than a driver domain: the mappings go straight through setP2mEntry (the
 * grant table's checks and page references are bypassed: the frontend stays alive throughout),
 * and the mapping window is unpopulated guest frames above the driver domain's RAM (as Linux's
 * xen_alloc_unpopulated_pages gives blkback). A window slot is reused only after a flush point,
 * as Linux's deferred flush queue frees an IOVA only after the IOTLB flush that covers it: with
 * the deferred policy a slot reused before the flush would let the device follow a stale IOTLB
 * entry to the previous request's frame.
 */
import { readFileSync } from "node:fs";
import { PCI_BASE_ADDRESS_0, PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, bdf, gfn as asGfn, mfn as asMfn } from "@vtlab/arch";
import { report } from "@vtlab/bench-harness";
import { referenceKernelUrl } from "@vtlab/guests";
import {
  CC_EN,
  CC_IOCQES_SHIFT,
  CC_IOSQES_SHIFT,
  CSTS_RDY,
  Hypervisor,
  MemoryBlockBackend,
  NvmeAdminOpcode,
  NvmeController,
  NvmeIoOpcode,
  NvmeReg,
  Toolstack,
  cqHeadDoorbell,
  parseDomainConfig,
  setP2mEntry,
  sqTailDoorbell,
  type Domain,
  type IommuOption,
} from "@vtlab/hypervisor";
import { SPIN, tinyKernel } from "../test/tiny-kernel.js";

type Policy = "strict" | "deferred" | "off";
const POLICIES: readonly Policy[] = ["strict", "deferred", "off"];
const MiB = 1 << 20;
const PAGE = 4096;
const NVME = "00:04.0";
const NVME_BDF = bdf(0, 4, 0);
/** The namespace: 8 MiB of 512-byte LBAs (as test/nvme-guest.test.ts's, QEMU's run). */
const NVME_SECTORS = 16384;
const LBA_SIZE = 512;

function iommuOption(policy: Policy): IommuOption {
  return policy === "off" ? false : { flush: policy };
}

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;

// ---------------------------------------------------------------- 1. the reference kernel's workload=nvme

const kernel = new Uint8Array(readFileSync(referenceKernelUrl()));
/** images/kernel-nvme.expected's PASS line (QEMU's run, mib=2): the checksum of the data read back. */
const EXPECTED_PASS = /\nPASS nvme [0-9a-f]{16}\n$/.exec(readFileSync(new URL("kernel-nvme.expected", referenceKernelUrl()), "utf8"))?.[0];
if (EXPECTED_PASS === undefined) throw new Error("bench: kernel-nvme.expected has no PASS line");
/** MiB the guest writes and then reads back (so 2 x GUEST_MIB MiB of data cross the device). */
const GUEST_MIB = 2; // kernel-nvme.expected's size: its PASS line's checksum is checked

function guestRun(policy: Policy) {
  const backend = new MemoryBlockBackend(NVME_SECTORS);
  const nvme = new NvmeController({ requester: NVME_BDF, backend, serial: "vtlab" });
  const hv = new Hypervisor({ memoryMiB: 256, pciDevices: [nvme], iommu: iommuOption(policy) });
  const toolstack = new Toolstack(hv, { resources: () => ({ kernel }) });
  const create = (text: string) => toolstack.create(parseDomainConfig(`kernel = "kernel.elf"\n${text}`, "<bench>"), "<bench>").domain;
  // iommu = 0: bus addresses are machine addresses, so the kernel needs its machine base. A
  // domain's RAM is one machine-contiguous run and the allocator is deterministic: a probe
  // domain built and destroyed first shows where the next domain's RAM will be.
  let dmabase = "";
  if (policy === "off") {
    const probe = create(`name = "probe"\nmemory = 64\ncmdline = "workload=compute"`);
    dmabase = ` dmabase=0x${probe.machineAddress(0)!.toString(16)}`;
    hv.destroyDomain(probe.id);
  }
  const t0 = performance.now();
  const d = create(`name = "nvme"\nmemory = 64\nhap = 1\ncmdline = "workload=nvme mib=${GUEST_MIB}${dmabase}"\npci = [ "${NVME}" ]`);
  hv.run({ maxInstructions: 2_000_000_000 });
  const seconds = (performance.now() - t0) / 1000;
  if (d.state !== "shutdown" || d.exitCode !== 0 || !d.console.endsWith(EXPECTED_PASS!)) {
    throw new Error(`workload=nvme with iommu ${policy} did not pass (state ${d.state}, exit ${String(d.exitCode)}): ${d.console.slice(-300)}`);
  }
  const s = d.stats(hv.cost);
  const io = s.iommu;
  if (io === undefined) throw new Error(`workload=nvme with iommu ${policy}: no IOMMU statistics`);
  if (io.remapping !== (policy === "off" ? "off" : "on")) throw new Error(`workload=nvme with iommu ${policy}: remapping ${io.remapping}`);
  const bytes = nvme.stats.bytesRead + nvme.stats.bytesWritten;
  if (bytes !== 2 * GUEST_MIB * MiB) throw new Error(`workload=nvme moved ${bytes} bytes, expected ${2 * GUEST_MIB * MiB}`);
  const modelledSeconds = (s.modelledCycles + io.modelledCycles) / hv.clock.frequencyHz;
  const inv = io.invalidations;
  return {
    wallMiBs: bytes / MiB / seconds,
    modelledMiBs: bytes / MiB / modelledSeconds,
    io,
    invalidations: inv.context + inv.iotlbPage + inv.iotlbDomain + inv.iotlbGlobal,
  };
}

for (const policy of POLICIES) {
  guestRun(policy); // warm-up (JIT)
  const r = guestRun(policy);
  const name = `hypervisor.passthrough.nvme-guest`;
  report({ name: `${name}.wall-mib-per-second.ept.iommu-${policy}`, value: round(r.wallMiBs, 2), unit: "MiB/s" });
  report({ name: `${name}.modelled-mib-per-second.ept.iommu-${policy}`, value: round(r.modelledMiBs, 1), unit: "MiB/s" });
  if (policy === "off") continue; // no remapping unit: no IOTLB, walks or invalidations to report
  report({ name: `${name}.iotlb-hit-rate.ept.iommu-${policy}`, value: round(r.io.iotlbHitRate, 4), unit: "ratio" });
  report({ name: `${name}.walk-references-per-dma.ept.iommu-${policy}`, value: round(r.io.walkReferencesPerDma, 3), unit: "references/DMA" });
  report({ name: `${name}.invalidations.ept.iommu-${policy}`, value: r.invalidations, unit: "invalidations" });
}

// ---------------------------------------------------------------- 2. map, DMA, unmap per request

/** One request's data: 64 KiB, 16 pages (NV_CHUNK's 128 LBAs, as the reference kernel's). */
const REQUEST_BYTES = 64 * 1024;
const REQUEST_PAGES = REQUEST_BYTES / PAGE;
const REQUEST_LBAS = REQUEST_BYTES / LBA_SIZE;
/** Requests between flush points (hv.passthrough.iommu.flushPoint()). */
const FLUSH_EVERY = 16;
/** The stream: every request of the namespace written, an NVM Flush, then every request read back (8 MiB each way). */
const REQUESTS = (NVME_SECTORS * LBA_SIZE) / REQUEST_BYTES;
/**
 * Modelling assumption: what the device itself spends per request (fetching the SQ entry, the
 * 64 KiB transfer and the CQ post, behind the doorbell and the completion poll) is one
 * CostModel.emulatedDeviceRoundTrip (20,000 cycles, 10 us at 2 GHz: 64 KiB in 10 us is about
 * 6.5 GB/s, an NVMe SSD's sequential rate on PCIe 3.0 x8 / 4.0 x4). It is the same for every
 * policy; the IOMMU's modelled cycles come on top of it.
 */
const DEVICE_REQUEST_COST = "emulatedDeviceRoundTrip" as const;

/** Driver-domain guest-physical layout (16 MiB of RAM; the tiny kernel sits at 1 MiB). */
const DRIVER_MIB = 16;
const ASQ_GPA = 0x40_0000;
const ACQ_GPA = 0x40_1000;
const IOSQ_GPA = 0x40_2000;
const IOCQ_GPA = 0x40_3000;
/** One PRP list page per window slot (PRP2 of the slot's request: entries 1..15). */
const PRP_LIST_GPA = 0x50_0000;
/** The mapping window: unpopulated gfns from 256 MiB, FLUSH_EVERY slots of REQUEST_PAGES frames. */
const WINDOW_GFN = 0x1_0000;
const QUEUE_ENTRIES = 16;
const ADMIN_ENTRIES = 4;
/** Frontend domain layout: the data written at SRC_GPA, read back into DST_GPA (8 MiB each). */
const FRONTEND_MIB = 24;
const SRC_GPA = 0x20_0000;
const DST_GPA = 0xa0_0000;

/** The driver domain's view of the controller and of its own memory. */
class PassthroughDriver {
  private readonly bar: number;
  private readonly sqe = new Uint8Array(64);
  private readonly sqeView = new DataView(this.sqe.buffer);
  private readonly cqe = new Uint8Array(16);
  private readonly cqeView = new DataView(this.cqe.buffer);
  private readonly list = new Uint8Array(8 * (REQUEST_PAGES - 1));
  private readonly listView = new DataView(this.list.buffer);
  private readonly sqTail = [0, 0];
  private readonly cqHead = [0, 0];
  private readonly phase = [1, 1];
  private readonly sqGpa = [ASQ_GPA, IOSQ_GPA];
  private readonly cqGpa = [ACQ_GPA, IOCQ_GPA];
  private readonly size = [ADMIN_ENTRIES, QUEUE_ENTRIES];
  private cid = 0;

  constructor(
    readonly d: Domain,
    /** Bus address of a driver-domain gpa: the gpa itself behind the IOMMU, its machine address with iommu = 0. */
    readonly bus: (gpa: number) => number,
  ) {
    this.cfg(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    this.bar = ((this.cfg(PCI_BASE_ADDRESS_0) & ~0xf) >>> 0) + this.cfg(PCI_BASE_ADDRESS_0 + 4) * 2 ** 32;
    this.setReg(NvmeReg.Aqa, ((ADMIN_ENTRIES - 1) << 16) | (ADMIN_ENTRIES - 1));
    this.setReg64(NvmeReg.Asq, bus(ASQ_GPA));
    this.setReg64(NvmeReg.Acq, bus(ACQ_GPA));
    this.setReg(NvmeReg.Cc, CC_EN | (6 << CC_IOSQES_SHIFT) | (4 << CC_IOCQES_SHIFT)); // 64-byte SQ, 16-byte CQ entries, MPS 0 (4 KiB)
    if ((this.reg(NvmeReg.Csts) & CSTS_RDY) === 0) throw new Error("bench: the controller did not become ready");
    // Create I/O CQ 1 (physically contiguous, interrupts off: the driver polls), then SQ 1 on it.
    this.submit(0, NvmeAdminOpcode.CreateIoCq, 0, bus(IOCQ_GPA), 0, ((QUEUE_ENTRIES - 1) << 16) | 1, 1, 0);
    this.submit(0, NvmeAdminOpcode.CreateIoSq, 0, bus(IOSQ_GPA), 0, ((QUEUE_ENTRIES - 1) << 16) | 1, (1 << 16) | 1, 0);
  }

  cfg(reg: number, value?: number): number {
    this.d.ports.write(0xcf8, 4, (0x8000_0000 | (NVME_BDF << 8) | reg) >>> 0);
    if (value !== undefined) this.d.ports.write(0xcfc, 4, value);
    return this.d.ports.read(0xcfc, 4);
  }

  reg(offset: number): number {
    return this.d.mmio.bus.read(this.bar + offset, 4);
  }

  setReg(offset: number, value: number): void {
    const e = this.d.mmio.bus.write(this.bar + offset, 4, value);
    if (e !== undefined) throw new Error(`bench: BAR0 write at 0x${offset.toString(16)}: ${e.message}`);
  }

  setReg64(offset: number, value: number): void {
    this.setReg(offset, value % 2 ** 32);
    this.setReg(offset + 4, Math.floor(value / 2 ** 32));
  }

  /** The PRP list of window slot `slot`: bus addresses of the request's pages 1..15. */
  writePrpList(slot: number, pageBus: (page: number) => number): number {
    for (let i = 1; i < REQUEST_PAGES; i++) setU64(this.listView, (i - 1) * 8, pageBus(i));
    const gpa = PRP_LIST_GPA + slot * PAGE;
    this.d.writeGuest(gpa, this.list);
    return this.bus(gpa);
  }

  /** Place one command, ring the SQ tail doorbell, poll the completion and ring the CQ head doorbell. */
  submit(qid: number, opc: number, nsid: number, prp1: number, prp2: number, cdw10: number, cdw11: number, cdw12: number): void {
    const cid = (this.cid = (this.cid + 1) & 0xffff);
    const v = this.sqeView;
    this.sqe.fill(0);
    v.setUint32(0, (opc | (cid << 16)) >>> 0, true);
    v.setUint32(4, nsid, true);
    setU64(v, 24, prp1);
    setU64(v, 32, prp2);
    v.setUint32(40, cdw10, true);
    v.setUint32(44, cdw11, true);
    v.setUint32(48, cdw12, true);
    const size = this.size[qid]!;
    this.d.writeGuest(this.sqGpa[qid]! + this.sqTail[qid]! * 64, this.sqe);
    this.sqTail[qid] = (this.sqTail[qid]! + 1) % size;
    this.setReg(sqTailDoorbell(qid), this.sqTail[qid]!);
    const at = this.cqGpa[qid]! + this.cqHead[qid]! * 16;
    this.d.host.memory.readBytes(this.d.ramHpa(at)!, this.cqe);
    const dw3 = this.cqeView.getUint32(12, true);
    if (((dw3 >>> 16) & 1) !== this.phase[qid]) throw new Error(`bench: no completion for opcode 0x${opc.toString(16)} (cid ${cid})`);
    if ((dw3 & 0xffff) !== cid) throw new Error(`bench: completion for cid ${dw3 & 0xffff}, expected ${cid}`);
    const status = (dw3 >>> 17) & 0x7ff;
    if (status !== 0) throw new Error(`bench: opcode 0x${opc.toString(16)} completed with status 0x${status.toString(16)}`);
    this.cqHead[qid] = (this.cqHead[qid]! + 1) % size;
    if (this.cqHead[qid] === 0) this.phase[qid]! ^= 1;
    this.setReg(cqHeadDoorbell(qid), this.cqHead[qid]!);
  }
}

function setU64(v: DataView, at: number, value: number): void {
  v.setUint32(at, value % 2 ** 32, true);
  v.setUint32(at + 4, Math.floor(value / 2 ** 32), true);
}

/** The frontend's data: a deterministic xorshift stream, 8 MiB. */
function streamData(bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let x = 0x9e3779b9;
  for (let i = 0; i < bytes; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
    out[i + 1] = (x >>> 8) & 0xff;
    out[i + 2] = (x >>> 16) & 0xff;
    out[i + 3] = (x >>> 24) & 0xff;
  }
  return out;
}

const DATA = streamData(REQUESTS * REQUEST_BYTES);

function mapUnmapRun(policy: Policy) {
  const backend = new MemoryBlockBackend(NVME_SECTORS);
  const nvme = new NvmeController({ requester: NVME_BDF, backend, serial: "vtlab" });
  const hv = new Hypervisor({ memoryMiB: 256, pciDevices: [nvme], iommu: iommuOption(policy) });
  const frontend = hv.createDomain({ name: "frontend", memoryMiB: FRONTEND_MIB, kernel: tinyKernel(SPIN) });
  const drv = hv.createDomain({ name: "driver", memoryMiB: DRIVER_MIB, kernel: tinyKernel(SPIN), pci: [NVME] });
  frontend.writeGuest(SRC_GPA, DATA);
  frontend.writeGuest(DST_GPA, new Uint8Array(DATA.length));
  const off = policy === "off";
  const own = (gpa: number) => (off ? drv.machineAddress(gpa)! : gpa);
  const driver = new PassthroughDriver(drv, own);
  // The frontend's frames, looked up once (the frontend's p2m does not change during the run).
  const frameOf = (gpa: number) => frontend.machineAddress(gpa)! / PAGE;
  const srcMfn = new Float64Array(REQUESTS * REQUEST_PAGES);
  const dstMfn = new Float64Array(REQUESTS * REQUEST_PAGES);
  for (let p = 0; p < srcMfn.length; p++) {
    srcMfn[p] = frameOf(SRC_GPA + p * PAGE);
    dstMfn[p] = frameOf(DST_GPA + p * PAGE);
  }
  const before = drv.stats(hv.cost).iommu!;
  const iommu = hv.passthrough.iommu;
  let requests = 0;

  const request = (opc: number, r: number, mfns: Float64Array) => {
    const slot = requests % FLUSH_EVERY;
    const window = WINDOW_GFN + slot * REQUEST_PAGES;
    const readonly = opc === NvmeIoOpcode.Write; // the device only reads the frontend's pages for a Write
    for (let i = 0; i < REQUEST_PAGES; i++) {
      const e = setP2mEntry(drv, asGfn(window + i), { kind: "grant", mfn: asMfn(mfns[r * REQUEST_PAGES + i]!), readonly });
      if ("kind" in e && e.kind === "p2m-update-error") throw new Error(`bench: map: ${e.message}`);
    }
    // Behind the IOMMU the device is given the window's gfns; with iommu = 0 the frames' machine addresses.
    const pageBus = (i: number) => (off ? mfns[r * REQUEST_PAGES + i]! * PAGE : (window + i) * PAGE);
    const prp2 = driver.writePrpList(slot, pageBus);
    const slba = r * REQUEST_LBAS;
    driver.submit(1, opc, 1, pageBus(0), prp2, slba % 2 ** 32, Math.floor(slba / 2 ** 32), REQUEST_LBAS - 1);
    for (let i = 0; i < REQUEST_PAGES; i++) {
      const e = setP2mEntry(drv, asGfn(window + i), { kind: "removed" });
      if ("kind" in e && e.kind === "p2m-update-error") throw new Error(`bench: unmap: ${e.message}`);
    }
    requests++;
    if (requests % FLUSH_EVERY === 0) iommu.flushPoint();
  };

  const t0 = performance.now();
  for (let r = 0; r < REQUESTS; r++) request(NvmeIoOpcode.Write, r, srcMfn);
  driver.submit(1, NvmeIoOpcode.Flush, 1, 0, 0, 0, 0, 0);
  for (let r = 0; r < REQUESTS; r++) request(NvmeIoOpcode.Read, r, dstMfn);
  iommu.flushPoint();
  const seconds = (performance.now() - t0) / 1000;

  // The data read back must be the data written, on the namespace and in the frontend's memory.
  const back = new Uint8Array(DATA.length);
  for (let p = 0; p < dstMfn.length; p++) hv.memory.readBytes(dstMfn[p]! * PAGE, back.subarray(p * PAGE, (p + 1) * PAGE));
  if (Buffer.compare(Buffer.from(back), Buffer.from(DATA)) !== 0) throw new Error(`bench: iommu ${policy}: the data read back differs from the data written`);
  if (Buffer.compare(Buffer.from(backend.data.subarray(0, DATA.length)), Buffer.from(DATA)) !== 0) throw new Error(`bench: iommu ${policy}: the namespace does not hold the data written`);
  const io = drv.stats(hv.cost).iommu!;
  if (io.faults !== 0) throw new Error(`bench: iommu ${policy}: ${io.faults} DMA faults`);
  const mib = (2 * DATA.length) / MiB;
  const iommuCycles = io.modelledCycles - before.modelledCycles;
  const deviceCycles = (requests + 1) * hv.cost[DEVICE_REQUEST_COST]; // the Flush is a request too
  return {
    mib,
    seconds,
    invalidations: {
      iotlbPage: io.invalidations.iotlbPage - before.invalidations.iotlbPage,
      iotlbDomain: io.invalidations.iotlbDomain - before.invalidations.iotlbDomain,
      iotlbGlobal: io.invalidations.iotlbGlobal - before.invalidations.iotlbGlobal,
      context: io.invalidations.context - before.invalidations.context,
    },
    iotlbMisses: io.iotlbMisses - before.iotlbMisses,
    iommuCycles,
    modelledMiBs: mib / ((iommuCycles + deviceCycles) / hv.clock.frequencyHz),
  };
}

const modelled = new Map<Policy, number>();
for (const policy of POLICIES) {
  mapUnmapRun(policy); // warm-up (JIT)
  const r = mapUnmapRun(policy);
  modelled.set(policy, r.modelledMiBs);
  const name = `hypervisor.passthrough.map-unmap-per-request`;
  const tag = `flush-every-${FLUSH_EVERY}.iommu-${policy}`;
  report({ name: `${name}.mib-moved.${tag}`, value: r.mib, unit: "MiB" });
  for (const kind of ["iotlbPage", "iotlbDomain", "iotlbGlobal", "context"] as const) {
    report({ name: `${name}.invalidations-per-mib.${kind}.${tag}`, value: round(r.invalidations[kind] / r.mib, 3), unit: "invalidations/MiB" });
  }
  report({ name: `${name}.iotlb-misses-per-mib.${tag}`, value: round(r.iotlbMisses / r.mib, 2), unit: "misses/MiB" });
  report({ name: `${name}.modelled-iommu-cycles-per-mib.${tag}`, value: Math.round(r.iommuCycles / r.mib), unit: "cycles/MiB" });
  report({ name: `${name}.modelled-mib-per-second.${tag}`, value: round(r.modelledMiBs, 1), unit: "MiB/s" });
  report({ name: `${name}.wall-mib-per-second.${tag}`, value: round(r.mib / r.seconds, 2), unit: "MiB/s" });
}

// Amit et al.: strict protection costs the most. The figures are modelled and deterministic.
const [strict, deferred, none] = [modelled.get("strict")!, modelled.get("deferred")!, modelled.get("off")!];
if (!(none > deferred && deferred > strict)) {
  throw new Error(`bench: expected modelled MiB/s off > deferred > strict; got off ${none}, deferred ${deferred}, strict ${strict}`);
}
