/**
 * The caches guest code grows stay bounded (issue 18): a NOP slide decodes a new instruction at
 * every step, a chain of page-to-page jumps a new decoded page at every step, hot blocks compile a
 * function each, and a guest hypervisor can cycle through every VPID. Each cache is flushed whole
 * when its count limit is reached (DECODED_MAX_PAGES, DECODED_MAX_INSNS, COMPILED_MAX_BLOCKS) or
 * drops its least recently used entry (TLB_MAX_SETS); the run goes on exactly as before.
 */
import { describe, expect, it } from "vitest";
import { COMPILED_MAX_BLOCKS, DECODED_MAX_INSNS, DECODED_MAX_PAGES, TLB_MAX_SETS } from "@vtlab/cpu-vmx";
import { CODE, machine64, type TestMachine } from "./machine.js";

const MiB = 1024 * 1024;

/** Run `total` instructions in chunks, yielding between them; return the largest cache sizes seen. */
async function runChunks(m: TestMachine, total: number, chunk = 100_000) {
  let maxInsns = 0;
  let maxPages = 0;
  let maxBlocks = 0;
  for (let done = 0; done < total; done += chunk) {
    const r = m.cpu.run(Math.min(chunk, total - done));
    expect(r.kind).toBe("budget");
    const s = m.cpu.codeCacheStats();
    maxInsns = Math.max(maxInsns, s.decodedInstructions);
    maxPages = Math.max(maxPages, s.decodedPages);
    maxBlocks = Math.max(maxBlocks, s.compiledBlocks);
    await new Promise((resolve) => setImmediate(resolve));
  }
  return { maxInsns, maxPages, maxBlocks, stats: m.cpu.codeCacheStats() };
}

describe("code caches are bounded (decoded instructions, pages, compiled blocks)", () => {
  it("a NOP slide of 2 Mi instructions keeps at most DECODED_MAX_INSNS decoded and the heap within a fixed bound", { timeout: 120_000 }, async () => {
    const slide = 2 * MiB;
    const m = machine64(new Uint8Array(slide).fill(0x90), 16 * MiB);
    m.cpu.compileBlocks = false;
    const heapBefore = process.memoryUsage().heapUsed;
    const r = await runChunks(m, slide - 4096);
    const heapGrowth = process.memoryUsage().heapUsed - heapBefore;
    expect(m.cpu.rip).toBe(CODE + slide - 4096); // every NOP ran, in order
    expect(r.maxInsns).toBeLessThanOrEqual(DECODED_MAX_INSNS);
    expect(r.stats.capacityFlushes).toBeGreaterThanOrEqual(Math.floor((slide - 4096) / DECODED_MAX_INSNS));
    // Unbounded, 2 Mi decoded instructions (about 240 bytes each) are live at the end: far above this.
    expect(heapGrowth).toBeLessThan(192 * MiB);
  });

  it("a chain of jumps through 2048 pages keeps at most DECODED_MAX_PAGES decoded pages", async () => {
    const pages = 2048;
    const code = new Uint8Array(pages * 4096);
    // Each page: JMP rel32 to the start of the next page (E9 FB 0F 00 00: 5 bytes, +4091); the last: HLT.
    for (let p = 0; p < pages - 1; p++) code.set([0xe9, 0xfb, 0x0f, 0x00, 0x00], p * 4096);
    code[(pages - 1) * 4096] = 0xf4;
    const m = machine64(code, 16 * MiB);
    let maxPages = 0;
    for (let k = 0; k < pages; k += 256) {
      m.cpu.run(256);
      maxPages = Math.max(maxPages, m.cpu.codeCacheStats().decodedPages);
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(m.cpu.rip).toBe(CODE + (pages - 1) * 4096 + 1); // past the HLT
    expect(maxPages).toBe(DECODED_MAX_PAGES);
    expect(m.cpu.codeCacheStats().capacityFlushes).toBe(Math.floor((pages - 1) / DECODED_MAX_PAGES));
  });

  it("compiling a block at every step keeps at most COMPILED_MAX_BLOCKS blocks", { timeout: 120_000 }, async () => {
    const slide = 1 * MiB;
    const m = machine64(new Uint8Array(slide).fill(0x90), 8 * MiB);
    m.cpu.blockThreshold = 1; // every block start compiles at once
    const r = await runChunks(m, slide - 4096);
    expect(m.cpu.rip).toBe(CODE + slide - 4096);
    expect(m.cpu.counters.compiledBlocks).toBeGreaterThan(COMPILED_MAX_BLOCKS);
    expect(r.maxBlocks).toBeLessThanOrEqual(COMPILED_MAX_BLOCKS);
  });
});

describe("TLB sets are bounded (one per VPID)", () => {
  it("cycling through 1000 VPIDs keeps at most TLB_MAX_SETS saved sets, and a recent VPID keeps its translations", () => {
    const m = machine64("f4");
    const cpu = m.cpu;
    for (let vpid = 1; vpid <= 1000; vpid++) {
      cpu.selectTlb(vpid);
      cpu.translate(CODE, 1); // fill one entry under this VPID
    }
    cpu.selectTlb(0);
    const s = cpu.codeCacheStats();
    expect(s.tlbSets).toBe(TLB_MAX_SETS);
    expect(s.tlbSetEvictions).toBe(1000 + 1 - TLB_MAX_SETS);
    // VPID 1000 was used last: its entry survived; VPID 1 was dropped (a miss refills it).
    const before = cpu.counters.tlbMisses;
    cpu.selectTlb(1000);
    cpu.translate(CODE, 1);
    expect(cpu.counters.tlbMisses).toBe(before);
    cpu.selectTlb(1);
    cpu.translate(CODE, 1);
    expect(cpu.counters.tlbMisses).toBe(before + 1);
  });

  it("switching between a guest VPID and the root's (every VM exit and entry) keeps both sets; INVEPT and INVVPID all-contexts clear the one left last", () => {
    const m = machine64("f4");
    const cpu = m.cpu;
    cpu.selectTlb(7);
    cpu.translate(CODE, 1);
    cpu.selectTlb(0);
    cpu.translate(CODE, 1);
    const before = cpu.counters.tlbMisses;
    for (let k = 0; k < 10; k++) {
      cpu.selectTlb(7);
      cpu.translate(CODE, 1);
      cpu.selectTlb(0);
      cpu.translate(CODE, 1);
    }
    expect(cpu.counters.tlbMisses).toBe(before);
    expect(cpu.codeCacheStats().tlbSets).toBe(1);
    // A third VPID: the parked set (7) moves to the saved ones and keeps its entry.
    cpu.selectTlb(9);
    cpu.selectTlb(7);
    cpu.translate(CODE, 1);
    expect(cpu.counters.tlbMisses).toBe(before);
    expect(cpu.codeCacheStats().tlbSets).toBe(2);
    // 7 is active, 9 parked, 0 saved: INVEPT drops every set, the parked one too.
    cpu.selectTlb(0);
    cpu.selectTlb(7);
    cpu.invept(2);
    cpu.selectTlb(0);
    cpu.translate(CODE, 1);
    expect(cpu.counters.tlbMisses).toBe(before + 1);
    cpu.selectTlb(7);
    cpu.translate(CODE, 1);
    expect(cpu.counters.tlbMisses).toBe(before + 2);
    // INVVPID type 2 from VPID 0 with 7 parked.
    cpu.selectTlb(0);
    expect(cpu.invvpid(2, 0)).toBeUndefined();
    cpu.selectTlb(7);
    cpu.translate(CODE, 1);
    expect(cpu.counters.tlbMisses).toBe(before + 3);
  });
});
