/**
 * INVLPG and the TLB's large pages (SDM Vol. 3A 4.10.4.1): the TLB caches a large page as 4 KiB
 * pieces; INVLPG of an address drops every cached piece of the page holding it and keeps the
 * entries of other pages (a guest kernel on 2 MiB pages that INVLPGs its 4 KiB user pages keeps
 * its own translations). machine64 maps the first 1 GiB with 2 MiB pages.
 */
import { describe, expect, it } from "vitest";
import { PML4, machine64 } from "./machine.js";

const MiB = 1024 * 1024;

describe("INVLPG with large pages in the TLB", () => {
  it("drops every cached 4 KiB piece of the 2 MiB page holding the address, and nothing else", () => {
    const { cpu } = machine64("f4");
    const a = 4 * MiB; // 2 MiB page 2
    const b = 6 * MiB; // 2 MiB page 3
    for (const lin of [a, a + 0x5000, a + 0x1f_f000, b, b + 0x3000]) cpu.translate(lin, 1);
    const before = cpu.counters.tlbMisses;
    cpu.invalidatePage(a + 0x10_0123); // inside page 2, a piece that was never cached
    for (const lin of [b, b + 0x3000]) cpu.translate(lin, 1);
    expect(cpu.counters.tlbMisses).toBe(before); // page 3's pieces stayed
    for (const lin of [a, a + 0x5000, a + 0x1f_f000]) cpu.translate(lin, 1);
    expect(cpu.counters.tlbMisses).toBe(before + 3); // page 2's pieces all went
  });

  it("a 4 KiB page among large ones: only its own entry goes", () => {
    const { cpu, memory } = machine64("f4");
    // Map 8 MiB .. 10 MiB with a 4 KiB page table (PD entry 4), identity as before.
    const pt = 0x8000;
    for (let k = 0; k < 512; k++) memory.write64(pt + k * 8, (8 * MiB + k * 4096) | 7, 0);
    memory.write64(0x4000 + 4 * 8, pt | 7, 0);
    cpu.flushTlb(false);
    expect(PML4).toBe(0x2000);
    const small = 8 * MiB + 0x3000;
    for (const lin of [2 * MiB, 2 * MiB + 0x1000, small, small + 0x1000]) cpu.translate(lin, 1);
    const before = cpu.counters.tlbMisses;
    cpu.invalidatePage(small);
    for (const lin of [2 * MiB, 2 * MiB + 0x1000, small + 0x1000]) cpu.translate(lin, 1);
    expect(cpu.counters.tlbMisses).toBe(before);
    cpu.translate(small, 1);
    expect(cpu.counters.tlbMisses).toBe(before + 1);
  });

  it("a page in the upper half (negative linear addresses) is found by its own large page", () => {
    const { cpu, memory } = machine64("f4");
    // PML4 entry 511 -> the same PDPT: -512 GiB maps like 0 (2 MiB pages).
    memory.write64(PML4 + 511 * 8, 0x3000 | 7, 0);
    cpu.flushTlb(false);
    const top = -(2 ** 39);
    for (const lin of [top + 2 * MiB, top + 2 * MiB + 0x7000, top + 4 * MiB]) cpu.translate(lin, 1);
    const before = cpu.counters.tlbMisses;
    cpu.invalidatePage(top + 2 * MiB + 0x1234);
    cpu.translate(top + 4 * MiB, 1);
    expect(cpu.counters.tlbMisses).toBe(before);
    cpu.translate(top + 2 * MiB, 1);
    cpu.translate(top + 2 * MiB + 0x7000, 1);
    expect(cpu.counters.tlbMisses).toBe(before + 2);
  });

  it("1 GiB pages: every cached piece of the page goes, 2 MiB pieces elsewhere stay", () => {
    const { cpu, memory } = machine64("f4");
    // PDPT entry 1: a 1 GiB page at 1 GiB (PS, identity).
    memory.write64(0x3000 + 8, 0x4000_0000 | 0x87, 0);
    cpu.flushTlb(false);
    const g = 1024 * MiB;
    for (const lin of [g, g + 0x1234_5000, g + 0x3fff_f000, 2 * MiB]) cpu.translate(lin, 1);
    const before = cpu.counters.tlbMisses;
    cpu.invalidatePage(g + 0x2000_0000);
    cpu.translate(2 * MiB, 1);
    expect(cpu.counters.tlbMisses).toBe(before);
    for (const lin of [g, g + 0x1234_5000, g + 0x3fff_f000]) cpu.translate(lin, 1);
    expect(cpu.counters.tlbMisses).toBe(before + 3);
    // And again after the scan compacted the filled list: a flush still drops everything.
    cpu.flushTlb(false);
    const again = cpu.counters.tlbMisses;
    for (const lin of [g, 2 * MiB]) cpu.translate(lin, 1);
    expect(cpu.counters.tlbMisses).toBe(again + 2);
  });
});
