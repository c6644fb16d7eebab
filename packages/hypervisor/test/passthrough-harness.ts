/**
 * Test harness for device assignment: a Hypervisor with a DmaEngine at host 00:05.0, domains
 * built from a spinning PVH kernel, and a "guest driver" that drives the assigned engine the way
 * the guest would: configuration cycles through 0xCF8/0xCFC on the domain's ports, BAR0 accesses
 * on the domain's MMIO bus, descriptors and buffers in the domain's guest-physical memory.
 */
import { PCI_BASE_ADDRESS_0, PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, bdf, type DmaPort } from "@vtlab/arch";
import {
  CTRL_ENABLE,
  CTRL_IRQ_ENABLE,
  DESC_FLAG_INTERRUPT,
  DESC_SIZE,
  DmaEngine,
  DmaEngineReg,
  Hypervisor,
  type Domain,
  type HypervisorOptions,
} from "@vtlab/hypervisor";
import { SPIN, tinyKernel } from "./tiny-kernel.js";

export const ENGINE_BDF = bdf(0, 5, 0);
export const ENGINE = "00:05.0";
export const MEMORY_MIB = 8;
/** Guest-physical layout the test driver uses (inside 8 MiB of RAM, above the kernel). */
export const RING_GPA = 0x40_0000;
export const SRC_GPA = 0x50_0000;
export const DST_GPA = 0x60_0000;

const NOWHERE: DmaPort = {
  read: () => { throw new Error("the engine used its construction-time port"); },
  write: () => { throw new Error("the engine used its construction-time port"); },
};

/** One DMA engine descriptor (devices/dma-engine.ts layout: src, dst, length, flags, status, cookie), little-endian. */
export function dmaDescriptor(src: number, dst: number, length: number, flags = DESC_FLAG_INTERRUPT, cookie = 0): Uint8Array {
  const b = new Uint8Array(DESC_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, src % 2 ** 32, true);
  v.setUint32(4, Math.floor(src / 2 ** 32), true);
  v.setUint32(8, dst % 2 ** 32, true);
  v.setUint32(12, Math.floor(dst / 2 ** 32), true);
  v.setUint32(16, length, true);
  v.setUint32(20, flags, true);
  v.setUint32(28, cookie, true);
  return b;
}

export function newEngine(requester = ENGINE_BDF, name = "dma-engine"): DmaEngine {
  return new DmaEngine({ requester, dma: NOWHERE, name });
}

export function host(options: HypervisorOptions & { engines?: DmaEngine[] } = {}) {
  const engines = options.engines ?? [newEngine()];
  const hv = new Hypervisor({ memoryMiB: 128, ...options, pciDevices: engines });
  return { hv, engine: engines[0]!, engines };
}

export function domain(hv: Hypervisor, name: string, pci?: readonly string[]): Domain {
  return hv.createDomain({ name, memoryMiB: MEMORY_MIB, kernel: tinyKernel(SPIN), ...(pci !== undefined ? { pci } : {}) });
}

/** The guest's view of its assigned engine. */
export function driver(d: Domain, id = ENGINE_BDF) {
  const cfg = (reg: number, value?: number): number => {
    d.ports.write(0xcf8, 4, (0x8000_0000 | (id << 8) | reg) >>> 0);
    if (value !== undefined) d.ports.write(0xcfc, 4, value);
    return d.ports.read(0xcfc, 4);
  };
  const bar = () => (cfg(PCI_BASE_ADDRESS_0) & ~0xf) >>> 0;
  const mem = d.host.memory;
  const g = {
    cfg,
    bar,
    reg: (offset: number) => d.mmio.bus.read(bar() + offset, 4),
    setReg: (offset: number, value: number) => d.mmio.bus.write(bar() + offset, 4, value),
    write: (gpa: number, bytes: Uint8Array) => d.writeGuest(gpa, bytes),
    read: (gpa: number, length: number) => {
      const out = new Uint8Array(length);
      const hpa = d.ramHpa(gpa);
      if (hpa === undefined) throw new Error(`GPA 0x${gpa.toString(16)} is not RAM`);
      mem.readBytes(hpa, out);
      return out;
    },
    descriptor: (index: number, src: number, dst: number, length: number, flags = DESC_FLAG_INTERRUPT) => {
      d.writeGuest(RING_GPA + index * DESC_SIZE, dmaDescriptor(src, dst, length, flags));
    },
    status: (index: number) => new DataView(g.read(RING_GPA + index * DESC_SIZE + 24, 4).buffer).getUint32(0, true),
    probe: (ringSize = 16) => {
      cfg(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
      for (const [r, v] of [[DmaEngineReg.RingBaseLo, RING_GPA], [DmaEngineReg.RingBaseHi, 0], [DmaEngineReg.RingSize, ringSize], [DmaEngineReg.Control, CTRL_ENABLE | CTRL_IRQ_ENABLE]] as const) {
        const e = g.setReg(r, v);
        if (e !== undefined) throw new Error(e.message);
      }
    },
    /** One copy through the next descriptor, rung at once; returns the descriptor's status word. */
    copy: (src: number, dst: number, length: number) => {
      const index = g.reg(DmaEngineReg.Doorbell);
      g.descriptor(index, src, dst, length);
      const e = g.setReg(DmaEngineReg.Doorbell, (index + 1) % 16);
      if (e !== undefined) throw new Error(e.message);
      return g.status(index);
    },
  };
  return g;
}

export function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

/** Every byte of a domain's RAM, read through its p2m. */
export function ramOf(d: Domain): Uint8Array {
  const out = new Uint8Array(d.ramFrames * 4096);
  for (let f = 0; f < d.ramFrames; f++) {
    const hpa = d.machineAddress(f * 4096);
    if (hpa !== undefined) d.host.memory.readBytes(hpa, out.subarray(f * 4096, (f + 1) * 4096));
  }
  return out;
}

export function same(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
