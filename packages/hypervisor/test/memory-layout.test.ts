// Guest RAM laid out as Xen's HVM builder does (builder/layout.ts): low RAM below the MMIO hole
// at 0xF0000000, the rest from 4 GiB; host frames from anywhere (extents), and a host sized by
// what is touched. The probe guest (c/hostile/memory-top.c) reads its memory map, checks the
// hole and the local APIC, and writes and reads the first and last page of every RAM range.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { PAGE_SIZE, type Mfn } from "@vtlab/arch";
import { hostileGuestUrl } from "@vtlab/guests";
import { P2mType } from "@vtlab/p2m";
import {
  CONFIG_MEMORY_MAX_MIB,
  CONFIG_MEMORY_MIN_MIB,
  DomainError,
  GUEST_MEMORY_MAX_MIB,
  GUEST_MEMORY_MIN_MIB,
  HostFrames,
  Hypervisor,
  IDENT_PT_FRAMES,
  IDENT_PT_GFN,
  XEN_HVM_MEMMAP_TYPE_RAM,
  XEN_HVM_MEMMAP_TYPE_RESERVED,
  guestLayout,
  guestMemoryMap,
  parseDomainConfig,
  type Domain,
} from "@vtlab/hypervisor";

const probe = new Uint8Array(readFileSync(hostileGuestUrl("memory-top")));
const GiB = 2 ** 30;
/** A host far larger than any process's memory: machine memory is sparse, frames cost only once touched. */
const BIG_HOST_MIB = 4 * 1024 * 1024;
const APIC_GFN = 0xfee00;
const tick = () => new Promise<void>((r) => setImmediate(r));

/** Run until every domain is done, yielding between chunks so the worker stays responsive. */
async function runAll(hv: Hypervisor, chunk = 2_000_000, limit = 400_000_000): Promise<void> {
  for (let done = 0; done < limit; done += chunk) {
    const r = hv.run({ maxInstructions: chunk });
    if (r.reason === "idle") return;
    await tick();
  }
  throw new Error("domains did not finish");
}

function passed(d: Domain): void {
  expect(d.crashReason, d.console).toBeUndefined();
  expect(d.state, d.console).toBe("shutdown");
  expect(d.exitCode, d.console).toBe(0);
  expect(d.console).toMatch(/^PASS memory-top [0-9a-f]{16}$/m);
}

describe("guest memory layout (builder/layout.ts)", () => {
  it("keeps RAM below the MMIO hole and puts the rest from 4 GiB, in the memory map", () => {
    const MiB = 2 ** 20;
    expect(guestLayout((1024 * MiB) / PAGE_SIZE)).toMatchObject({ lowFrames: 0x40000, highFrames: 0 });
    expect(guestLayout((4078 * MiB) / PAGE_SIZE)).toMatchObject({ lowFrames: 0xf0000, highFrames: (4078 - 3840) * 256 });
    const reserved = { addr: IDENT_PT_GFN * PAGE_SIZE, size: 0xff00_0000 - IDENT_PT_GFN * PAGE_SIZE, type: XEN_HVM_MEMMAP_TYPE_RESERVED };
    expect(guestMemoryMap(4078 * MiB)).toEqual([
      { addr: 0, size: 0xa0000, type: XEN_HVM_MEMMAP_TYPE_RAM },
      { addr: 0x10_0000, size: 0xf000_0000 - 0x10_0000, type: XEN_HVM_MEMMAP_TYPE_RAM },
      reserved,
      { addr: 4 * GiB, size: (4078 - 3840) * MiB, type: XEN_HVM_MEMMAP_TYPE_RAM },
    ]);
    expect(guestMemoryMap(64 * GiB).at(-1)).toEqual({ addr: 4 * GiB, size: 64 * GiB - 0xf000_0000, type: XEN_HVM_MEMMAP_TYPE_RAM });
    expect(guestMemoryMap(32 * MiB)).toEqual([
      { addr: 0, size: 0xa0000, type: XEN_HVM_MEMMAP_TYPE_RAM },
      { addr: 0x10_0000, size: 31 * MiB, type: XEN_HVM_MEMMAP_TYPE_RAM },
      reserved,
    ]);
    // The reserved region (shadow identity table, Xen's ioreq-server and special pages) is in the hole, clear of the APIC.
    expect(IDENT_PT_GFN * PAGE_SIZE).toBeGreaterThan(0xfee0_1000);
    expect((IDENT_PT_GFN + IDENT_PT_FRAMES) * PAGE_SIZE).toBeLessThanOrEqual(0xfeff_8000 - 8 * PAGE_SIZE);
  });

  it("has one memory limit for the xl.cfg parser and the domain builder, and names it", () => {
    expect([CONFIG_MEMORY_MIN_MIB, CONFIG_MEMORY_MAX_MIB]).toEqual([GUEST_MEMORY_MIN_MIB, GUEST_MEMORY_MAX_MIB]);
    expect(GUEST_MEMORY_MAX_MIB).toBeGreaterThanOrEqual(65536);
    const cfg = (m: string) => parseDomainConfig(`name = "a"\nmemory = ${m}\nkernel = "k.elf"\n`, "a.cfg");
    expect(cfg("65536").memory).toBe(65536);
    expect(() => cfg(String(GUEST_MEMORY_MAX_MIB + 1))).toThrow(`a.cfg:2: key "memory": ${GUEST_MEMORY_MAX_MIB + 1} is out of range ${GUEST_MEMORY_MIN_MIB}..${GUEST_MEMORY_MAX_MIB}`);
    expect(() => cfg("1")).toThrow(`key "memory": 1 is out of range ${GUEST_MEMORY_MIN_MIB}..`);
    const hv = new Hypervisor({ memoryMiB: 64 });
    for (const m of [1, GUEST_MEMORY_MAX_MIB + 1, 2.5]) {
      expect(() => hv.createDomain({ name: "m", memoryMiB: m, kernel: probe })).toThrow(new DomainError("m", `memory: ${m} MiB is out of range; give an integer number of MiB, ${GUEST_MEMORY_MIN_MIB}..${GUEST_MEMORY_MAX_MIB}`));
    }
  });

  it("refuses a domain larger than the host's free frames, naming what is free", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const free = hv.frames.freeFrames;
    expect(() => hv.createDomain({ name: "big", memoryMiB: 128, kernel: probe })).toThrow(/^domain big: memory: 128 MiB is more than the host has free \(6\d MiB\)$/);
    expect(hv.frames.freeFrames).toBe(free); // nothing kept from the refused build
    // Low RAM fits and the RAM above 4 GiB does not: the low range's frames go back too.
    const hv2 = new Hypervisor({ memoryMiB: 3850 });
    const free2 = hv2.frames.freeFrames;
    expect(() => hv2.createDomain({ name: "edge", memoryMiB: 3849, kernel: probe })).toThrow(/^domain edge: memory: 3849 MiB is more than the host has free \(384\d MiB\)$/);
    expect(hv2.frames.freeFrames).toBe(free2);
    expect(hv2.frames.largestExtent).toBe(free2);
  });
});

describe("host frames from anywhere (host/frames.ts)", () => {
  it("hands out one aligned extent when it can, else the free pieces in address order", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const f = new HostFrames(hv.memory, 256 as Mfn, 64 * 256 - 256);
    expect(f.allocateExtents(1024, 512)).toEqual([{ first: 512, count: 1024 }]);
    // Fragment: take 16 single frames apart by 100-frame holes.
    const holes = f.allocateExtents(100)!;
    expect(holes).toEqual([{ first: 256, count: 100 }]);
    f.freeExtent(256 as Mfn, 100);
    const singles: number[] = [];
    for (let i = 0; i < 8; i++) singles.push(f.allocateExtent(1)!.first, f.allocateExtent(99)!.first);
    for (let i = 1; i < singles.length; i += 2) f.freeExtent(singles[i]! as Mfn, 99);
    const largest = f.largestExtent;
    const got = f.allocateExtents(largest + 50)!;
    expect(got.length).toBeGreaterThan(1);
    expect(got.reduce((n, e) => n + e.count, 0)).toBe(largest + 50);
    expect(f.allocateExtents(f.freeFrames + 1)).toBeUndefined();
  });

  it.each([true, false])("builds a domain from several host pieces when no one piece is large enough (hap %s)", async (hap) => {
    const hv = new Hypervisor({ memoryMiB: 128 });
    // Leave the host in 4 MiB free pieces with used 4 MiB pieces and 1-frame walls between them.
    const pieces: { first: Mfn; count: number }[] = [];
    for (let p = hv.frames.allocateExtent(1024); p !== undefined; p = hv.frames.allocateExtent(1024)) {
      pieces.push(p);
      hv.frames.allocateExtent(1);
    }
    for (const p of pieces.filter((_, i) => i % 2 === 0)) hv.frames.freeExtent(p.first, p.count);
    expect(hv.frames.largestExtent).toBeLessThan(16 * 256);
    const d = hv.createDomain({ name: "frag", memoryMiB: 16, kernel: probe, hap });
    const runs = [...d.p2m.runs()].filter((r) => r.type === P2mType.Ram && r.gfn < 0xf0000);
    expect(runs.length).toBeGreaterThan(1); // RAM from several host extents
    await runAll(hv);
    passed(d);
    const before = hv.frames.freeFrames;
    hv.destroyDomain("frag");
    expect(hv.frames.freeFrames).toBeGreaterThan(before + 16 * 256 - 1);
  });
});

// (The map's RAM adds up to 384 KiB less than `memory`: the legacy VGA/BIOS hole at 0xA0000-0xFFFFF is not in it.)
describe("memory as large as users configure it", () => {
  it.each([true, false])("memory = 4078: the memory map has the hole, RAM above 4 GiB works, the APIC is the APIC (hap %s)", async (hap) => {
    const hv = new Hypervisor({ memoryMiB: BIG_HOST_MIB });
    const d = hv.createDomain({ name: "m4078", memoryMiB: 4078, kernel: probe, hap, magicPages: true });
    // Nothing the builder places lands on the APIC page or on RAM.
    expect(d.p2m.lookup(APIC_GFN as never).type).toBe(P2mType.Mmio);
    // The shadow identity table is in no p2m (a machine address): its reserved place maps nothing.
    for (let k = 0; k < IDENT_PT_FRAMES; k++) expect(d.p2m.lookup((IDENT_PT_GFN + k) as never).type).toBe(P2mType.Mmio);
    // The reserved region (identity table, special pages) overlaps no MMIO region (APIC, IO-APIC, BARs), and no RAM range.
    const reservedStart = IDENT_PT_GFN * PAGE_SIZE;
    const reservedEnd = 0xff00_0000;
    for (const r of d.mmio.bus.list()) expect(r.base + r.length <= reservedStart || r.base >= reservedEnd, r.name).toBe(true);
    for (const range of d.layout.ranges) expect((range.gfn + range.count) * PAGE_SIZE <= reservedStart || range.gfn * PAGE_SIZE >= reservedEnd).toBe(true);
    for (let g = 0xfeff8; g < 0xff000; g++) expect(d.p2m.lookup(g as never).type).toBe(P2mType.Ram); // the special pages, populated
    await runAll(hv);
    passed(d);
    expect(d.console).toContain("memmap 2: 0xfc001000-0xfc002fff type 4"); // the ACPI tables (builder/acpi.ts)
    expect(d.console).toContain("memmap 3: 0xfefea000-0xfeffffff type 2");
    expect(d.console).toContain("memory-top: 4077 MiB of RAM, top 0x10ee00000 (RAM above 4 GiB)");
    expect(d.console).toMatch(/local APIC version 0x[1-9a-f]/);
  });

  it.each([true, false])("a 64 GiB guest touches its top page; the host holds only what was touched (hap %s)", async (hap) => {
    const hv = new Hypervisor({ memoryMiB: BIG_HOST_MIB });
    const d = hv.createDomain({ name: "big", memoryMiB: 65536, kernel: probe, hap });
    expect(d.pages.totPages).toBe(64 * 256 * 1024 + d.boot!.acpi!.bytes.length / PAGE_SIZE); // the RAM and the ACPI tables' pages
    await runAll(hv);
    passed(d);
    const top = 4 * GiB + 64 * GiB - 0xf000_0000;
    expect(d.console).toContain(`RAM 0x100000000-0x${(top - 1).toString(16)}: first and last page ok`);
    // The guest's top page is RAM of its own, written through the p2m.
    const hpa = d.machineAddress(top - PAGE_SIZE)!;
    expect(hv.memory.read32(hpa)).toBe((((top - PAGE_SIZE) ^ 0xc3c33c3c) >>> 0));
    // Sparse: the machine memory holds the image, the page tables and the pages touched, not 64 GiB.
    expect(hv.memory.allocatedFrames).toBeLessThan(4096);
    hv.destroyDomain("big");
    expect(hv.memory.frameCount - 256 - hv.frames.freeFrames).toBeLessThan(8); // all back but the host's own frames (the MSR bitmap)
  });
});

describe("many large domains in one host", () => {
  it("eight domains of memory = 4078 boot and finish (EPT and shadow)", async () => {
    const hv = new Hypervisor({ memoryMiB: BIG_HOST_MIB });
    const ds = Array.from({ length: 8 }, (_, i) => hv.createDomain({ name: `d${i}`, memoryMiB: 4078, kernel: probe, hap: i % 2 === 0 }));
    await runAll(hv);
    for (const d of ds) passed(d);
    expect(hv.memory.allocatedFrames).toBeLessThan(8 * 1024);
  });

  it("a 64 GiB domain and sixteen domains of 4 GiB boot and finish in one host", async () => {
    const hv = new Hypervisor({ memoryMiB: BIG_HOST_MIB });
    const big = hv.createDomain({ name: "big", memoryMiB: 65536, kernel: probe });
    const ds = Array.from({ length: 16 }, (_, i) => hv.createDomain({ name: `g${i}`, memoryMiB: 4096, kernel: probe, hap: i % 4 !== 3 }));
    await runAll(hv);
    passed(big);
    for (const d of ds) {
      passed(d);
      expect(d.console).toContain("memory-top: 4095 MiB of RAM, top 0x110000000 (RAM above 4 GiB)");
    }
    expect(hv.memory.allocatedFrames).toBeLessThan(17 * 1024);
  });

  it.each([true, false])("the largest domain the model takes (GUEST_MEMORY_MAX_MIB) boots and touches its top page (hap %s)", async (hap) => {
    const hv = new Hypervisor({ memoryMiB: BIG_HOST_MIB });
    const d = hv.createDomain({ name: "max", memoryMiB: GUEST_MEMORY_MAX_MIB, kernel: probe, hap });
    await runAll(hv);
    passed(d);
    const top = 4 * GiB + GUEST_MEMORY_MAX_MIB * 2 ** 20 - 0xf000_0000;
    expect(d.console).toContain(`RAM 0x100000000-0x${(top - 1).toString(16)}: first and last page ok`);
    hv.destroyDomain("max");
    expect(hv.memory.allocatedFrames).toBeLessThan(16); // its frames zeroed and given back: nothing of it is kept
  });
});
