/**
 * The reference guest programs of @vtlab/guests (gcc-compiled C kernels, booted the PVH way)
 * run on the @vtlab/cpu-vmx interpreter to exactly the console output QEMU printed for them
 * (the `.expected` files), and exit with code 0 through the debug-exit port.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { GUEST_IMAGES, guestExpectedOutputUrl, guestImageUrl, type GuestImageName } from "@vtlab/guests";
import { loadPvh, runToExit } from "./pvh.js";

const image = (name: GuestImageName) => new Uint8Array(readFileSync(guestImageUrl(name)));

describe("reference guests on the interpreter", () => {
  for (const name of GUEST_IMAGES) {
    if (name === "bench") continue;
    it(`${name} runs to the output QEMU gave`, () => {
      const m = loadPvh(image(name));
      const r = runToExit(m, 1_000_000_000);
      const expected = readFileSync(guestExpectedOutputUrl(name), "utf8");
      expect({ kind: r.kind, code: r.code, unsupported: [...m.cpu.counters.unsupported.entries()] }).toEqual({ kind: "exit", code: 0, unsupported: [] });
      expect(r.output).toBe(expected);
      expect(m.cpu.counters.compiledBlocks).toBeGreaterThan(0);
    });
  }

  for (const name of ["sha256", "sort", "usermode", "demand"] as const) {
    it(`${name} gives the same output with block compilation off (the plain interpreter path)`, () => {
      const m = loadPvh(image(name));
      m.cpu.compileBlocks = false;
      const r = runToExit(m, 1_000_000_000);
      expect(r.code).toBe(0);
      expect(r.output).toBe(readFileSync(guestExpectedOutputUrl(name), "utf8"));
      expect(m.cpu.counters.compiledBlocks).toBe(0);
    });
  }

  for (const name of GUEST_IMAGES) {
    it(`${name}: output and instruction count identical with the block compiler (src/jit/) on and off`, () => {
      const cmdline = name === "bench" ? "iterations=1" : "";
      const on = loadPvh(image(name), cmdline);
      on.cpu.jit = true;
      const off = loadPvh(image(name), cmdline);
      off.cpu.jit = false;
      const a = runToExit(on, 2_000_000_000);
      const b = runToExit(off, 2_000_000_000);
      expect({ ...a, instructions: on.cpu.counters.instructions, exceptions: on.cpu.counters.exceptions }).toEqual({
        ...b,
        instructions: off.cpu.counters.instructions,
        exceptions: off.cpu.counters.exceptions,
      });
      expect(a.code).toBe(0);
    });
  }

  it("bench passes with one iteration (its full run is the MIPS benchmark)", () => {
    const m = loadPvh(image("bench"), "iterations=1");
    const r = runToExit(m, 2_000_000_000);
    expect(r.kind).toBe("exit");
    expect(r.code).toBe(0);
    expect(r.output).toMatch(/^PASS bench [0-9a-f]+$/m);
    expect(m.cpu.counters.instructions).toBeGreaterThan(1_000_000);
  });
});
