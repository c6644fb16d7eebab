/**
 * REP STOS's page runs (exec/string.ts stosRun: the elements up to the end of a page stored
 * straight into a frame the TLB already allows writing) against REP STOS element by element
 * (stringHooks.pageRuns = false): for random sizes, counts, start offsets, directions, address
 * sizes and budgets (the run loop's bound stops a REP between iterations), every run result,
 * RIP, RCX, RDI, the retired count and the memory written are the same; so are faults (a page
 * the guest maps read-only part-way) and self-modifying code (a REP STOS over its own code).
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { stringHooks, type RunResult } from "@vtlab/cpu-vmx";
import { CODE, hex, machine64, type TestMachine } from "./machine.js";

const DST = 0x20_0000;

interface Case {
  size: 1 | 2 | 4 | 8;
  count: number;
  countHi: number;
  offset: number;
  backward: boolean;
  addr32: boolean;
  budgets: number[];
}

/** mov rdi, DST+offset; mov rcx, count (hi:lo); mov rax, pattern; [std]; [67] rep stos; hlt */
function program(c: Case): string {
  const le32 = (v: number) => [0, 8, 16, 24].map((s) => ((v >>> s) & 0xff).toString(16).padStart(2, "0")).join("");
  const op = c.size === 1 ? "aa" : c.size === 2 ? "66ab" : c.size === 4 ? "ab" : "48ab";
  const prefix = c.addr32 ? "67" : "";
  // 66 must precede F3 or follow it; both orders are prefixes: keep 66/67 first, then F3.
  const stos = c.size === 2 ? `66${prefix}f3ab` : `${prefix}f3${op}`;
  return (
    `48bf${le32(DST + c.offset)}00000000` +
    `48b9${le32(c.count)}${le32(c.countHi)}` +
    "48b8efbeaddecefaedfe" +
    (c.backward ? "fd" : "") +
    stos +
    "f4"
  );
}

interface Outcome {
  runs: RunResult[];
  rip: number;
  rcx: [number, number];
  rdi: [number, number];
  retired: number;
  bytes: number[];
}

function run(c: Case, pageRuns: boolean, setup?: (m: TestMachine) => void): Outcome {
  stringHooks.pageRuns = pageRuns;
  try {
    const m = machine64(hex(program(c)));
    setup?.(m);
    const runs: RunResult[] = [];
    for (const b of c.budgets) {
      const r = m.cpu.run(b);
      runs.push(r);
      if (r.kind !== "budget") break;
    }
    const bytes: number[] = [];
    for (let a = DST - 0x3000; a < DST + 0x6000; a += 4) bytes.push(m.memory.read32(a) as number);
    return { runs, rip: m.cpu.rip, rcx: [m.cpu.lo[1]!, m.cpu.hi[1]!], rdi: [m.cpu.lo[7]!, m.cpu.hi[7]!], retired: m.cpu.retired, bytes };
  } finally {
    stringHooks.pageRuns = true;
  }
}

const arbCase: fc.Arbitrary<Case> = fc.record({
  size: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const),
  count: fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 400, max: 9000 })),
  countHi: fc.constantFrom(0, 0, 0, 1),
  offset: fc.oneof(fc.integer({ min: 0, max: 16 }), fc.integer({ min: 4000, max: 4095 }), fc.integer({ min: 0, max: 8191 })),
  backward: fc.boolean(),
  addr32: fc.boolean(),
  budgets: fc.array(fc.oneof(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 100, max: 5000 })), { minLength: 1, maxLength: 6 }),
});

describe("REP STOS page runs against element-by-element stores", () => {
  it("gives the same runs, registers, retired count and memory (fast-check)", () => {
    fc.assert(
      fc.property(arbCase, (c) => {
        // A count with its high half set would fill far past the window: bound the budgets instead.
        if (c.countHi !== 0) c.budgets = c.budgets.map((b) => Math.min(b, 6000));
        expect(run(c, true)).toEqual(run(c, false));
      }),
      { numRuns: 150 },
    );
  });

  it("faults at the same element on a page mapped read-only part-way (the #PF leaves RCX/RDI at that iteration)", () => {
    const c: Case = { size: 8, count: 3000, countHi: 0, offset: 8, backward: false, addr32: false, budgets: [100_000] };
    // 4 KiB pages for DST's 2 MiB region, the third one read-only.
    const split = (m: TestMachine) => {
      const pt = 0x5000;
      for (let k = 0; k < 512; k++) m.memory.write64(pt + k * 8, (DST + k * 4096) | (k === 2 ? 0x5 : 0x7), 0);
      m.memory.write64(0x4000 + (DST / 0x20_0000) * 8, pt | 7, 0);
      m.cpu.flushTlb(false);
    };
    const fast = run(c, true, split);
    // No IDT in this machine: the #PF ends in a triple fault, with RCX at the faulting element
    // (1023 qwords fit before the read-only page).
    expect(fast.runs[0]!.kind).toBe("triple-fault");
    expect(fast.rcx[0]).toBe(3000 - 1023);
    expect(fast).toEqual(run(c, false, split));
  });

  it("invalidates its own code when it stores over it (self-modifying code), as element stores do", () => {
    // The REP STOS writes NOPs (0x90) over the HLT after it and beyond: the run goes on past.
    const prog = (pageRuns: boolean) => {
      stringHooks.pageRuns = pageRuns;
      try {
        // mov rdi, CODE+0x20; mov rcx, 64; mov al, 0x90; rep stosb; (HLT at CODE+0x17, then the NOP slide to CODE+0x60: ud2 there)
        const code = `48bf${(CODE + 0x20).toString(16).padStart(8, "0").match(/../g)!.reverse().join("")}00000000` + "48c7c140000000" + "b090" + "f3aa" + "90".repeat(11) + "cc".repeat(0x40) + "0f0b";
        const m = machine64(hex(code));
        const r = m.cpu.run(10_000);
        return { r, rip: m.cpu.rip, retired: m.cpu.retired };
      } finally {
        stringHooks.pageRuns = true;
      }
    };
    const fast = prog(true);
    // The INT3s became NOPs: the run slides to the UD2 after them (a triple fault: no IDT).
    expect(fast.rip).toBe(CODE + 0x60);
    expect(fast).toEqual(prog(false));
  });
});
