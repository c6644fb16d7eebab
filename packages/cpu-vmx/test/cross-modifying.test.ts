/**
 * Cross-modifying code (SDM Vol. 3A 9.1.3): two CPUs over one machine memory; a store by one into
 * a page the other has decoded (and compiled) code from is seen by the other's next fetch, with
 * the compiler on and off, whether or not the storing CPU's TLB already mapped the page
 * writable, and whichever VPID's TLB set held that mapping. Before CodeSharing, the other CPU ran
 * its stale decoded instructions for as long as they stayed cached (seen as a 2-vCPU Linux on
 * shadow paging spinning for a billion instructions and more during boot, while its kernel
 * patched its own text).
 */
import { describe, expect, it } from "vitest";
import { CODE, machine64, type TestMachine } from "./machine.js";

// At CODE: mov eax, 7; hlt. At PATCHER, the next 4 KiB page: the patcher, run by the other CPU.
const TARGET = "b807000000f4";
const PATCHER = CODE + 0x1000;
/** Each patcher step below is 9 bytes: mov byte [disp32], imm8 (8); hlt (1). */
const STEP = 9;
/** mov byte [disp32], imm8 (C6 04 25 disp32 imm8). */
const movByte = (addr: number, v: number) => `c60425${[0, 8, 16, 24].map((k) => ((addr >>> k) & 0xff).toString(16).padStart(2, "0")).join("")}${v.toString(16).padStart(2, "0")}`;

function pair(jit: boolean, patcher: string): { a: TestMachine; b: TestMachine } {
  const code = TARGET + "90".repeat(0x1000 - TARGET.length / 2) + patcher;
  const a = machine64(code);
  const b = machine64(new Uint8Array(0), 0, a.memory);
  for (const m of [a, b]) {
    m.cpu.jit = jit;
    m.cpu.blockThreshold = 1;
  }
  return { a, b };
}

/** Run `m` from `rip` to its HLT. */
function runAt(m: TestMachine, rip: number): void {
  m.cpu.rip = rip;
  m.cpu.halted = false;
  expect(m.cpu.run(1000).kind).toBe("hlt");
}

describe("cross-modifying code: a store by one CPU into code another CPU decoded", () => {
  for (const jit of [false, true]) {
    const mode = jit ? "compiled" : "interpreted";
    it(`is seen by the other CPU's next fetch (${mode})`, () => {
      const { a, b } = pair(jit, movByte(CODE + 1, 0x2a) + "f4");
      for (let k = 0; k < 5; k++) runAt(a, CODE); // hot: decoded (and compiled) on CPU a
      expect(a.cpu.lo[0]).toBe(7);
      runAt(b, PATCHER); // CPU b: mov byte [CODE + 1], 0x2a
      expect(a.memory.read8(CODE + 1)).toBe(0x2a);
      runAt(a, CODE);
      expect(a.cpu.lo[0]).toBe(0x2a);
      expect(a.cpu.counters.smcInvalidations).toBeGreaterThan(0);
    });

    it(`is seen when the storing CPU mapped the page writable before the other decoded it (${mode})`, () => {
      // CPU b stores into the page first (its TLB maps it writable), then CPU a decodes from it,
      // then b patches: b's writable mapping must have been revoked when a began holding code there.
      const { a, b } = pair(jit, movByte(CODE + 0x800, 1) + "f4" + movByte(CODE + 1, 0x2b) + "f4");
      runAt(b, PATCHER);
      expect(a.memory.read8(CODE + 0x800)).toBe(1);
      for (let k = 0; k < 5; k++) runAt(a, CODE);
      expect(a.cpu.lo[0]).toBe(7);
      runAt(b, PATCHER + STEP);
      runAt(a, CODE);
      expect(a.cpu.lo[0]).toBe(0x2b);
    });

    it(`is seen when the writable mapping sits in a TLB set of another VPID (${mode})`, () => {
      const { a, b } = pair(jit, movByte(CODE + 0x800, 1) + "f4" + movByte(CODE + 1, 0x2c) + "f4");
      b.cpu.selectTlb(5);
      runAt(b, PATCHER); // VPID 5's set maps the page writable
      b.cpu.selectTlb(6);
      for (let k = 0; k < 5; k++) runAt(a, CODE);
      b.cpu.selectTlb(5); // back to the set filled before a held code in the page
      runAt(b, PATCHER + STEP);
      runAt(a, CODE);
      expect(a.cpu.lo[0]).toBe(0x2c);
    });
  }

  it("a detached CPU leaves the record: its frames are writable through the others' TLBs again", () => {
    const { a, b } = pair(true, movByte(CODE + 1, 0x2a) + "f4");
    runAt(a, CODE);
    runAt(b, PATCHER);
    expect(a.cpu.codeSharing).toBe(b.cpu.codeSharing);
    expect(a.cpu.codeSharing.cpus.has(a.cpu)).toBe(true);
    a.cpu.detach();
    b.cpu.detach();
    expect(a.cpu.codeSharing.cpus.size).toBe(0);
    expect(a.cpu.codeSharing.holders.size).toBe(0);
    expect(a.cpu.codeCacheStats().decodedPages).toBe(0);
  });
});
