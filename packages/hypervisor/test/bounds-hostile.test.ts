/**
 * Hostile guests that try to grow the host's memory (issue 18, "The host process dies"), each
 * beside a well-behaved domain that must finish with its full output:
 * - nopslide (NOPs and zeroes): a new instruction at every step, for the decoded-instruction and
 *   block caches; run for a bounded number of instructions while the host heap and the caches'
 *   sizes (cpu.codeCacheStats) stay under fixed bounds;
 * - bounds-uartloop: COM1 in loopback flooded with REP OUTSB, never reading RBR (the 16-byte
 *   FIFO overruns, nothing accumulates), then a console flood (the capture keeps the last
 *   consoleCapture bytes and counts the rest; serial = "none" keeps nothing).
 * The runs go in chunks that yield, so the vitest worker stays responsive.
 */
import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { COMPILED_MAX_BLOCKS, DECODED_MAX_INSNS, DECODED_MAX_PAGES, TLB_MAX_SETS } from "@vtlab/cpu-vmx";
import { guestExpectedOutputUrl, guestImageUrl, hostileGuestUrl } from "@vtlab/guests";
import { CONSOLE_CAPTURE_DEFAULT, CONSOLE_CHUNK_MAX, Hypervisor, UART_FIFO_SIZE, type Domain } from "@vtlab/hypervisor";

const MiB = 1024 * 1024;

// A full garbage collection before each heap sample, so the samples measure what is live (vitest
// workers run without --expose-gc; the flag set at run time exposes gc to a new context).
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as (() => void) | undefined;
function liveHeap(): number {
  gc?.();
  return process.memoryUsage().heapUsed;
}
const hostile = (name: string) => new Uint8Array(readFileSync(hostileGuestUrl(name)));
const format = new Uint8Array(readFileSync(guestImageUrl("format")));
const formatOutput = readFileSync(guestExpectedOutputUrl("format"), "utf8");

/** Run the host in chunks of `chunk` instructions, yielding between them, until `done` or `max`. */
async function runChunks(hv: Hypervisor, max: number, done: () => boolean, each?: () => void, chunk = 250_000): Promise<number> {
  let total = 0;
  while (total < max && !done()) {
    const r = hv.run({ maxInstructions: Math.min(chunk, max - total) });
    total += r.instructions;
    each?.();
    await new Promise((resolve) => setImmediate(resolve));
    if (r.reason === "idle") break;
  }
  return total;
}

function expectGood(good: Domain): void {
  expect({ state: good.state, code: good.exitCode, crash: good.crashReason }).toEqual({ state: "shutdown", code: 0, crash: undefined });
  expect(good.console).toBe(formatOutput);
}

describe("a NOP slide beside a well-behaved domain: the host heap and the code caches stay bounded", () => {
  for (const [fill, hap] of [["nops", true], ["zero", true], ["nops", false]] as const) {
    it(`nopslide (${fill}, ${hap ? "EPT" : "shadow"}) for 1.5 M slide instructions`, { timeout: 300_000 }, async () => {
      const hv = new Hypervisor({ memoryMiB: 256 });
      const bad = hv.createDomain({ name: "nopslide", memoryMiB: 16, hap, kernel: hostile("nopslide"), cmdline: fill === "zero" ? "fill=zero" : "" });
      const good = hv.createDomain({ name: "good", memoryMiB: 32, hap, kernel: format });
      const cpu = bad.vcpus[0]!.cpu;
      let slideStart = -1;
      let maxInsns = 0;
      let maxPages = 0;
      let maxBlocks = 0;
      let maxTlbSets = 0;
      let heapBefore = 0;
      let heapPeak = 0;
      const slideInstructions = 1_500_000;
      await runChunks(
        hv,
        200_000_000,
        () => good.state !== "running" && slideStart >= 0 && bad.instructions - slideStart >= slideInstructions,
        () => {
          // The slide starts once the guest has printed where it is and its memset is done (each
          // REP STOS iteration retires as an instruction): RIP is on the slide.
          const at = /from (0x[0-9a-f]+) to/.exec(bad.console);
          if (slideStart < 0 && at !== null && cpu.rip >= Number(at[1])) {
            slideStart = bad.instructions;
            heapBefore = liveHeap();
          }
          const s = cpu.codeCacheStats();
          maxInsns = Math.max(maxInsns, s.decodedInstructions);
          maxPages = Math.max(maxPages, s.decodedPages);
          maxBlocks = Math.max(maxBlocks, s.compiledBlocks);
          maxTlbSets = Math.max(maxTlbSets, s.tlbSets);
          if (slideStart >= 0) heapPeak = Math.max(heapPeak, liveHeap() - heapBefore);
        },
      );
      expectGood(good);
      expect(bad.console).toMatch(/^nopslide: (NOPs|zeroes) from 0x[0-9a-f]+ to 0x1000000\n$/);
      expect(bad.instructions - slideStart).toBeGreaterThanOrEqual(slideInstructions);
      // Unbounded, 1.5 M decoded instructions (about 240 bytes each) stay live: far above this.
      expect(typeof gc).toBe("function");
      expect(heapPeak).toBeLessThan(128 * MiB);
      expect(maxInsns).toBeLessThanOrEqual(DECODED_MAX_INSNS);
      expect(maxPages).toBeLessThanOrEqual(DECODED_MAX_PAGES);
      expect(maxBlocks).toBeLessThanOrEqual(COMPILED_MAX_BLOCKS);
      expect(maxTlbSets).toBeLessThanOrEqual(TLB_MAX_SETS);
      expect(cpu.codeCacheStats().capacityFlushes).toBeGreaterThan(0);
    });
  }
});

describe("a UART loopback flood beside a well-behaved domain: the receive side holds 16 bytes", () => {
  for (const hap of [true, false]) {
    it(`bounds-uartloop (${hap ? "EPT" : "shadow"}): 4 x 1 MiB looped back, the FIFO overruns, the guest sees what a 16550 gives`, { timeout: 300_000 }, async () => {
      const hv = new Hypervisor({ memoryMiB: 256 });
      const bad = hv.createDomain({ name: "uartloop", memoryMiB: 32, hap, kernel: hostile("bounds-uartloop"), cmdline: "rounds=4 kib=1024" });
      const good = hv.createDomain({ name: "good", memoryMiB: 32, hap, kernel: format });
      let maxHeld = 0;
      await runChunks(hv, 400_000_000, () => good.state !== "running" && bad.state !== "running", () => {
        maxHeld = Math.max(maxHeld, bad.uart.state().input.length);
      });
      expectGood(good);
      expect({ state: bad.state, code: bad.exitCode }).toEqual({ state: "shutdown", code: 0 });
      expect(bad.console).toBe(`bounds-uartloop: 4 x ${MiB} bytes looped back, FIFO held 16: ok\n`);
      expect(maxHeld).toBeLessThanOrEqual(UART_FIFO_SIZE);
      const s = bad.stats();
      expect(s.uart.overruns).toBe(4 * MiB - UART_FIFO_SIZE + 2); // and two in the 16450-mode check
      expect(s.uart.transmitted).toBe(4 * MiB + 3);
    });
  }
});

describe("a console flood: the domain keeps the last consoleCapture bytes and counts the rest", () => {
  it("default capture (1 MiB): 3 MiB printed, the last 1 MiB kept, 2 MiB counted as dropped; the neighbour keeps its full output", { timeout: 300_000 }, async () => {
    const hv = new Hypervisor({ memoryMiB: 256 });
    const chunks: number[] = [];
    const bad = hv.createDomain({ name: "flood", memoryMiB: 32, kernel: hostile("bounds-uartloop"), cmdline: "rounds=1 kib=1024 console=3", onConsole: (t) => chunks.push(t.length) });
    const good = hv.createDomain({ name: "good", memoryMiB: 32, kernel: format });
    await runChunks(hv, 400_000_000, () => good.state !== "running" && bad.state !== "running");
    expectGood(good);
    expect({ state: bad.state, code: bad.exitCode }).toEqual({ state: "shutdown", code: 0 });
    const c = bad.stats().console;
    const summary = `bounds-uartloop: 1 x ${MiB} bytes looped back, FIFO held 16: ok\n`;
    expect(c.bytes).toBe(3 * MiB + summary.length);
    expect(c.limit).toBe(CONSOLE_CAPTURE_DEFAULT);
    expect(bad.console.length).toBeLessThanOrEqual(CONSOLE_CAPTURE_DEFAULT + CONSOLE_CHUNK_MAX);
    expect(bad.console.length + c.dropped).toBe(c.bytes);
    expect(bad.console.endsWith(summary)).toBe(true); // the last bytes are the ones kept
    // The streaming sink saw every byte, in chunks of at most CONSOLE_CHUNK_MAX.
    expect(chunks.reduce((a, b) => a + b, 0)).toBe(c.bytes);
    expect(Math.max(...chunks)).toBeLessThanOrEqual(CONSOLE_CHUNK_MAX);
  });

  it("consoleCapture 0 (serial = \"none\"): nothing kept, everything counted", { timeout: 300_000 }, async () => {
    const hv = new Hypervisor({ memoryMiB: 256 });
    const bad = hv.createDomain({ name: "flood", memoryMiB: 32, kernel: hostile("bounds-uartloop"), cmdline: "rounds=1 kib=256 console=2", consoleCapture: 0 });
    await runChunks(hv, 400_000_000, () => bad.state !== "running");
    expect({ state: bad.state, code: bad.exitCode }).toEqual({ state: "shutdown", code: 0 });
    const c = bad.stats().console;
    expect(bad.console).toBe("");
    expect(c.dropped).toBe(c.bytes);
    expect(c.bytes).toBeGreaterThan(2 * 256 * 1024);
  });
});
