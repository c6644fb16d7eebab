/**
 * The block compiler (@vtlab/cpu-vmx src/jit/) against the plain interpreter on the guest images,
 * instruction by instruction at block granularity: one CPU runs the guest with blocks compiled to
 * specialised code and reports every block entry (jitHooks.onBlockEntry); a second CPU, the plain
 * interpreter, is run to the same step there, and RIP, all sixteen registers, RFLAGS, CR2 and the
 * retired count must agree at every entry; at the end the console and exit code too.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { guestImageUrl, type GuestImageName } from "@vtlab/guests";
import { jitHooks, type Cpu } from "@vtlab/cpu-vmx";
import { loadPvh, runToExit } from "./pvh.js";

const steps = (c: Cpu) => c.retired + c.eventsDelivered * c.eventWeight;

function differs(a: Cpu, rip: number, b: Cpu): string | undefined {
  if (rip !== b.rip || a.retired !== b.retired || a.getFlags() !== b.getFlags() || a.cr2 !== b.cr2) {
    return `rip ${rip.toString(16)}/${b.rip.toString(16)} retired ${a.retired}/${b.retired} flags ${a.getFlags().toString(16)}/${b.getFlags().toString(16)} cr2 ${a.cr2}/${b.cr2}`;
  }
  for (let r = 0; r < 16; r++) {
    if (a.lo[r] !== b.lo[r] || a.hi[r] !== b.hi[r]) return `register ${r}: ${a.hi[r]}:${a.lo[r]} / ${b.hi[r]}:${b.lo[r]} at rip ${rip.toString(16)}, retired ${a.retired}`;
  }
  return undefined;
}

describe("guest images: the block compiler and the interpreter agree at every block entry", () => {
  for (const name of ["sha256", "demand", "usermode", "div64", "setjmp", "format"] as GuestImageName[]) {
    it(name, { timeout: 120_000 }, () => {
      const image = new Uint8Array(readFileSync(guestImageUrl(name)));
      const jit = loadPvh(image);
      jit.cpu.jit = true;
      const ref = loadPvh(image);
      ref.cpu.compileBlocks = false;
      let entries = 0;
      let first: string | undefined;
      jitHooks.onBlockEntry = (c, rip) => {
        if (first !== undefined || c !== jit.cpu) return;
        entries++;
        while (steps(ref.cpu) < steps(c)) if (ref.cpu.run(steps(c) - steps(ref.cpu)).kind !== "budget") break;
        first = differs(c, rip, ref.cpu);
      };
      try {
        const a = runToExit(jit, 1_000_000_000);
        jitHooks.onBlockEntry = undefined;
        const b = runToExit(ref, 1_000_000_000);
        expect(first).toBeUndefined();
        expect(a).toEqual(b);
        expect(a.code).toBe(0);
        expect(entries).toBeGreaterThan(1000);
      } finally {
        jitHooks.onBlockEntry = undefined;
      }
    });
  }
});
