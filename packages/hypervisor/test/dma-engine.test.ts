import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  DirectDma,
  MachineMemory,
  MmioBus,
  PCI_BASE_ADDRESS_0,
  PCI_COMMAND,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PciBus,
  PciHostBridge,
  PortIoBus,
  bdf,
  gfn,
  type AccessSize,
  type DmaPort,
  type Gpa,
} from "@vtlab/arch";
import {
  FaultReason,
  type RemappingEventMessage,
} from "@vtlab/iommu";
import { twoDomainVtd } from "./vtd-fixture.js";
import { dmaDescriptor } from "./passthrough-harness.js";
import {
  CTRL_ENABLE,
  CTRL_IRQ_ENABLE,
  CTRL_RESET,
  DESC_FLAG_INTERRUPT,
  DESC_SIZE,
  DMA_ENGINE_DEVICE_ID,
  DMA_ENGINE_ID,
  DMA_ENGINE_VENDOR_ID,
  DescStatus,
  DmaEngine,
  DmaEngineError,
  DmaEngineReg,
  STATUS_ERROR,
  STATUS_HALTED,
  STATUS_IRQ,
} from "@vtlab/hypervisor";

const GiB = 1024 ** 3;
const BAR0 = 0xfebf_0000;
const ENGINE = bdf(0, 5, 0);
const FRAMES = 512; // 2 MiB per domain
const A_BASE = 0x10_0000; // domain A's frames: mfn 0x100000.. (4 GiB)
const B_BASE = 0x18_0000; // domain B's frames: mfn 0x180000.. (6 GiB)
const RING_GPA = 0x1000; // descriptor ring in A's memory
const SRC_GPA = 0x10_000;
const DST_GPA = 0x40_000;
const RING_MAX_TEST = 64;

/** A host: memory, buses, PCI through 0xCF8/0xCFC, a VT-d unit, domains A and B, the engine assigned to A. */
function host(options: { iommu?: boolean } = {}) {
  const memory = new MachineMemory(16 * GiB);
  const ports = new PortIoBus();
  const mmio = new MmioBus();
  const pci = new PciBus(ports, mmio);
  if (!(PciHostBridge.install(ports, pci) instanceof PciHostBridge)) throw new Error("host bridge");
  const faultEvents: RemappingEventMessage[] = [];
  const { unit, driver, p2ms } = twoDomainVtd({ memory, mmio, source: ENGINE, frames: FRAMES, aBase: A_BASE, bBase: B_BASE, faultEvent: { address: 0xfee0_0000, data: 0x40 }, onFaultEvent: (m) => faultEvents.push(m) });

  const dma: DmaPort = options.iommu === false ? new DirectDma(memory) : unit;
  let irqs = 0;
  const engine = new DmaEngine({ requester: ENGINE, dma, raiseInterrupt: () => irqs++ });
  pci.attach(ENGINE, engine);

  // Guest A's side: configuration cycles, MMIO to the BAR, and its own memory by guest-physical address.
  const cfg = (reg: number, value?: number): number => {
    ports.write(0xcf8, 4, (0x8000_0000 | (ENGINE << 8) | reg) >>> 0);
    if (value !== undefined) ports.write(0xcfc, 4, value);
    return ports.read(0xcfc, 4);
  };
  const gpaToHpa = (gpa: number) => (p2ms[0].lookup(gfn(Math.floor(gpa / 4096)))!.mfn * 4096 + (gpa % 4096));
  const guest = {
    cfg,
    reg: (offset: number) => mmio.read(BAR0 + offset, 4),
    setReg: (offset: number, value: number, size: AccessSize = 4) => mmio.write(BAR0 + offset, size, value),
    write: (gpa: Gpa | number, bytes: Uint8Array) => memory.writeBytes(gpaToHpa(gpa), bytes),
    read: (gpa: Gpa | number, length: number) => {
      const out = new Uint8Array(length);
      memory.readBytes(gpaToHpa(gpa), out);
      return out;
    },
    /** Put descriptor `index` in the ring. */
    descriptor: (index: number, src: number, dst: number, length: number, flags = DESC_FLAG_INTERRUPT) => {
      memory.writeBytes(gpaToHpa(RING_GPA + index * DESC_SIZE), dmaDescriptor(src, dst, length, flags, 0xc00c1e00 + index));
    },
    status: (index: number) => new DataView(guest.read(RING_GPA + index * DESC_SIZE + 24, 4).buffer).getUint32(0, true),
    /** What a driver's probe does: find the device, place BAR0, enable memory decoding and bus mastering, set up the ring. */
    probe: (ringSize = 16) => {
      cfg(PCI_BASE_ADDRESS_0, BAR0);
      cfg(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
      expect(guest.setReg(DmaEngineReg.RingBaseLo, RING_GPA)).toBeUndefined();
      expect(guest.setReg(DmaEngineReg.RingBaseHi, 0)).toBeUndefined();
      expect(guest.setReg(DmaEngineReg.RingSize, ringSize)).toBeUndefined();
      expect(guest.setReg(DmaEngineReg.Control, CTRL_ENABLE | CTRL_IRQ_ENABLE)).toBeUndefined();
    },
  };

  const snapshotB = () => {
    const out = new Uint8Array(FRAMES * 4096);
    memory.readBytes(B_BASE * 4096, out);
    return out;
  };
  for (let i = 0; i < FRAMES; i++) memory.writeBytes((B_BASE + i) * 4096, new Uint8Array(4096).fill(0xb0 + (i & 0xf)));
  return { memory, mmio, pci, unit, driver, engine, guest, faultEvents, irqs: () => irqs, snapshotB };
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function bytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

describe("the DMA engine as a PCI function", () => {
  it("is found by configuration cycles and its BAR sizes to 4 KiB", () => {
    const h = host();
    expect(h.guest.cfg(0)).toBe(((DMA_ENGINE_DEVICE_ID << 16) | DMA_ENGINE_VENDOR_ID) >>> 0);
    h.guest.cfg(PCI_BASE_ADDRESS_0, 0xffff_ffff);
    expect(h.guest.cfg(PCI_BASE_ADDRESS_0)).toBe(0xffff_f000);
    h.guest.probe();
    expect(h.guest.reg(DmaEngineReg.Id)).toBe(DMA_ENGINE_ID);
    expect(h.mmio.ownerOf(BAR0)).toContain("dma-engine");
  });
});

describe("a guest driver programs the engine through the IOMMU", () => {
  it("copies between its own buffers, writes status and raises the completion interrupt", () => {
    const h = host();
    h.guest.probe();
    const data = bytes(10_000, 7); // spans three pages
    h.guest.write(SRC_GPA, data);
    h.guest.descriptor(0, SRC_GPA, DST_GPA, data.length);
    h.guest.descriptor(1, SRC_GPA, DST_GPA + 0x8000, 100, 0); // no interrupt for this one
    expect(h.guest.setReg(DmaEngineReg.Doorbell, 2)).toBeUndefined();
    expect(h.guest.read(DST_GPA, data.length)).toEqual(data);
    expect(h.guest.read(DST_GPA + 0x8000, 100)).toEqual(data.subarray(0, 100));
    expect([h.guest.status(0), h.guest.status(1)]).toEqual([DescStatus.Done, DescStatus.Done]);
    expect(h.guest.reg(DmaEngineReg.RingHead)).toBe(2);
    expect(h.guest.reg(DmaEngineReg.Completed)).toBe(2);
    expect(h.irqs()).toBe(1);
    expect(h.guest.reg(DmaEngineReg.Status)).toBe(STATUS_IRQ);
    h.guest.setReg(DmaEngineReg.Status, STATUS_IRQ);
    expect(h.guest.reg(DmaEngineReg.Status)).toBe(0);
    expect(h.unit.stats.faults).toBe(0);
  });

  it("wraps around its ring", () => {
    const h = host();
    h.guest.probe(4);
    h.guest.write(SRC_GPA, bytes(64, 1));
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 3; i++) h.guest.descriptor((round * 3 + i) % 4, SRC_GPA, DST_GPA + (round * 3 + i) * 64, 64);
      h.guest.setReg(DmaEngineReg.Doorbell, ((round + 1) * 3) % 4);
    }
    expect(h.guest.reg(DmaEngineReg.Completed)).toBe(9);
    expect(h.guest.read(DST_GPA + 8 * 64, 64)).toEqual(bytes(64, 1));
  });
});

describe("isolation: the engine assigned to A is told to DMA outside A", () => {
  it("into a frame of domain B: blocked, B unchanged, the IOMMU records 5h and signals its fault event", () => {
    const h = host();
    h.guest.probe();
    const before = h.snapshotB();
    h.guest.write(SRC_GPA, bytes(4096, 3));
    const bFrame = (B_BASE + 7) * 4096; // B's frame by machine address
    h.guest.descriptor(0, SRC_GPA, bFrame, 4096);
    h.guest.setReg(DmaEngineReg.Doorbell, 1);
    expect(same(h.snapshotB(), before)).toBe(true);
    expect(h.guest.status(0)).toBe(DescStatus.WriteFault);
    expect(h.guest.reg(DmaEngineReg.Status)).toBe(STATUS_IRQ | STATUS_ERROR);
    expect(h.guest.reg(DmaEngineReg.LastError)).toBe(DmaEngineError.WriteFault);
    expect(h.guest.reg(DmaEngineReg.LastFaultReason)).toBe(FaultReason.WriteNotPermitted);
    expect(h.guest.reg(DmaEngineReg.LastFaultLo) + h.guest.reg(DmaEngineReg.LastFaultHi) * 2 ** 32).toBe(bFrame);
    expect(h.driver.readFaults()).toMatchObject([{ sourceId: ENGINE, pageAddress: bFrame, read: false, reason: FaultReason.WriteNotPermitted }]);
    expect(h.faultEvents).toEqual([{ address: 0xfee0_0000, data: 0x40 }]);
    expect(h.irqs()).toBe(1);
  });

  it("reading B's memory or unmapped space, or beyond the address width, faults with the right reason", () => {
    const h = host();
    h.guest.probe();
    const before = h.snapshotB();
    h.guest.descriptor(0, (B_BASE + 1) * 4096, DST_GPA, 64); // read B
    h.guest.descriptor(1, SRC_GPA, 0x4000_0000, 64); // write unmapped
    h.guest.descriptor(2, 2 ** 49, DST_GPA, 64); // read beyond 48 bits
    h.guest.setReg(DmaEngineReg.Doorbell, 3);
    expect([0, 1, 2].map(h.guest.status)).toEqual([DescStatus.ReadFault, DescStatus.WriteFault, DescStatus.ReadFault]);
    expect(h.driver.readFaults().map((r) => r.reason)).toEqual([FaultReason.ReadNotPermitted, FaultReason.WriteNotPermitted, FaultReason.AddressBeyondWidth]);
    expect(h.guest.read(DST_GPA, 64).every((x) => x === 0)).toBe(true);
    expect(same(h.snapshotB(), before)).toBe(true);
    expect(h.guest.reg(DmaEngineReg.Errors)).toBe(3);
  });

  it("without an IOMMU the same descriptor overwrites domain B", () => {
    const h = host({ iommu: false });
    h.guest.probe();
    const before = h.snapshotB();
    // Without an IOMMU bus addresses are machine addresses: the ring and buffers too.
    const ringHpa = (A_BASE + 1) * 4096;
    h.guest.setReg(DmaEngineReg.Control, 0);
    h.guest.setReg(DmaEngineReg.RingBaseLo, ringHpa % 2 ** 32);
    h.guest.setReg(DmaEngineReg.RingBaseHi, Math.floor(ringHpa / 2 ** 32));
    h.guest.setReg(DmaEngineReg.Control, CTRL_ENABLE);
    h.guest.descriptor(0, (A_BASE + 0x10) * 4096, (B_BASE + 7) * 4096, 4096);
    h.guest.write(SRC_GPA, bytes(4096, 3));
    h.guest.setReg(DmaEngineReg.Doorbell, 1);
    expect(h.guest.status(0)).toBe(DescStatus.Done);
    expect(same(h.snapshotB(), before)).toBe(false);
  });

  it("property: no descriptor, however hostile, changes B's memory", () => {
    const h = host();
    h.guest.probe(RING_MAX_TEST);
    const before = h.snapshotB();
    const address = fc.oneof(
      fc.integer({ min: 0, max: FRAMES * 4096 }),
      fc.integer({ min: B_BASE * 4096, max: (B_BASE + FRAMES) * 4096 }),
      fc.integer({ min: 0, max: 2 ** 53 - 1 }),
    );
    let tail = 0;
    fc.assert(
      fc.property(address, address, fc.integer({ min: 0, max: 0x2_0000 }), fc.integer({ min: 0, max: 0xffff_ffff }), (src, dst, length, flags) => {
        // Keep the ring and its descriptors out of the destination's way inside A.
        const d = dst < FRAMES * 4096 && dst < 0x8000 ? dst + 0x8000 : dst;
        h.guest.descriptor(tail, src, d, length, flags & 3);
        tail = (tail + 1) % RING_MAX_TEST;
        expect(h.guest.setReg(DmaEngineReg.Doorbell, tail)).toBeUndefined();
        expect(h.guest.reg(DmaEngineReg.RingHead)).toBe(tail);
      }),
      { numRuns: 200, seed: 0xe },
    );
    expect(same(h.snapshotB(), before)).toBe(true);
  });
});


describe("hostile programming", () => {
  it("malformed descriptors are answered with BadDescriptor and the engine carries on", () => {
    const h = host();
    h.guest.probe();
    h.guest.descriptor(0, SRC_GPA, DST_GPA, 0);
    h.guest.descriptor(1, SRC_GPA, DST_GPA, 0x10_0001);
    h.guest.descriptor(2, SRC_GPA, DST_GPA, 16, 0x8000_0001);
    h.guest.descriptor(3, SRC_GPA, DST_GPA, 16);
    h.guest.setReg(DmaEngineReg.Doorbell, 4);
    expect([0, 1, 2, 3].map(h.guest.status)).toEqual([DescStatus.BadDescriptor, DescStatus.BadDescriptor, DescStatus.BadDescriptor, DescStatus.Done]);
  });

  it("a ring outside the guest halts the engine with RingFault, recorded by the IOMMU", () => {
    const h = host();
    h.guest.probe();
    h.guest.setReg(DmaEngineReg.Control, 0);
    h.guest.setReg(DmaEngineReg.RingBaseLo, 0x4000_0000);
    h.guest.setReg(DmaEngineReg.Control, CTRL_ENABLE | CTRL_IRQ_ENABLE);
    h.guest.setReg(DmaEngineReg.Doorbell, 1);
    expect(h.guest.reg(DmaEngineReg.Status)).toBe(STATUS_IRQ | STATUS_ERROR | STATUS_HALTED);
    expect(h.guest.reg(DmaEngineReg.LastError)).toBe(DmaEngineError.RingFault);
    expect(h.driver.readFaults()).toMatchObject([{ reason: FaultReason.ReadNotPermitted, pageAddress: 0x4000_0000 }]);
    // Halted: further doorbells do nothing until a reset.
    h.guest.setReg(DmaEngineReg.Doorbell, 2);
    expect(h.unit.stats.faults).toBe(1);
    h.guest.setReg(DmaEngineReg.Control, CTRL_RESET);
    expect(h.guest.reg(DmaEngineReg.Status)).toBe(0);
  });

  it("refuses bad register values and does nothing without bus mastering", () => {
    const h = host();
    h.guest.probe();
    expect(h.guest.setReg(DmaEngineReg.Doorbell, 16)).toMatchObject({ kind: "device-error" });
    expect(h.guest.setReg(DmaEngineReg.RingSize, 3)).toMatchObject({ kind: "device-error" });
    expect(h.guest.setReg(DmaEngineReg.RingBaseLo, 0x1010)).toMatchObject({ kind: "device-error" });
    expect(h.guest.setReg(DmaEngineReg.Control, 1, 2)).toMatchObject({ kind: "device-error" });
    h.guest.cfg(PCI_COMMAND, PCI_COMMAND_MEMORY); // bus mastering off
    h.guest.descriptor(0, SRC_GPA, DST_GPA, 16);
    h.guest.setReg(DmaEngineReg.Doorbell, 1);
    expect(h.guest.reg(DmaEngineReg.LastError)).toBe(DmaEngineError.MasterDisabled);
    expect(h.guest.reg(DmaEngineReg.RingHead)).toBe(0);
    expect(h.unit.stats.translations).toBe(0);
  });

  it("state() and fromState() carry the registers", () => {
    const h = host();
    h.guest.probe();
    h.guest.write(SRC_GPA, bytes(32, 9));
    h.guest.descriptor(0, SRC_GPA, DST_GPA, 32);
    h.guest.setReg(DmaEngineReg.Doorbell, 1);
    const snap = h.engine.state();
    const other = new DmaEngine({ requester: ENGINE, dma: h.unit, raiseInterrupt: () => undefined });
    other.fromState(snap);
    expect(other.state()).toEqual(snap);
    expect(snap).toMatchObject({ head: 1, tail: 1, completed: 1, ringSize: 16, ringBaseLo: RING_GPA });
  });
});
