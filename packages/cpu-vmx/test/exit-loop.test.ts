/**
 * The VM-exit fast path (CPUID exits without an exception, Cpu.deferExit): an exit loop's
 * results are the ones the unwinding exit gave — per-run results, RIP, registers, exits by
 * reason and the retired count — through the interpreter, a compiled block (the loop gets hot)
 * and budgets that end before, at and after the exiting instruction.
 */
import { describe, expect, it } from "vitest";
import { ExitReason, VmcsField as F, vmEntry } from "@vtlab/cpu-vmx";
import { CODE, machine64 } from "./machine.js";
import { guestVmcs } from "./vmx-fixture.js";

describe("CPUID exit loop", () => {
  it("gives the same runs, registers, exits and retired count as the unwinding exit did", () => {
    // top: inc rsi; cpuid; jmp top
    const m = machine64("48ffc6" + "0fa2" + "ebf9");
    const v = guestVmcs(m);
    expect(vmEntry(m.cpu, v, true)).toBeUndefined();
    m.cpu.lo[0] = 0x1234; // EAX: the exiting CPUID must leave it and the others alone
    const budgets = [1, 2, 3, 1000, 1, 1, 5];
    let trace = 0;
    const kinds: Record<string, number> = {};
    const reasons: Record<number, number> = {};
    let retiredSum = 0;
    for (let k = 0; k < 400; k++) {
      const r = m.cpu.run(budgets[k % budgets.length]!);
      kinds[r.kind] = (kinds[r.kind] ?? 0) + 1;
      retiredSum += r.retired;
      trace = (Math.imul(trace, 31) + r.retired * 7 + (m.cpu.rip - CODE)) | 0;
      if (r.kind === "vmexit") {
        reasons[r.exit.reason] = (reasons[r.exit.reason] ?? 0) + 1;
        expect(r.exit).toEqual({ reason: ExitReason.Cpuid, qualification: 0, instructionLength: 2 });
        expect(v.readNatural(F.GUEST_RIP)).toBe(CODE + 3);
        expect(v.read32(F.VM_EXIT_REASON)).toBe(ExitReason.Cpuid);
        v.setNatural(F.GUEST_RIP, v.readNatural(F.GUEST_RIP) + r.exit.instructionLength);
        expect(vmEntry(m.cpu, v, false)).toBeUndefined();
      }
    }
    // The figures the unwinding exit (vmExit's throw) gave for this loop, before deferExit.
    expect(kinds).toEqual({ budget: 172, vmexit: 228 });
    expect(reasons).toEqual({ [ExitReason.Cpuid]: 228 });
    expect(retiredSum).toBe(456);
    expect(trace).toBe(1783089568);
    expect(m.cpu.retired).toBe(456);
    expect(m.cpu.counters.vmExits).toBe(228);
    expect(m.cpu.lo[0]).toBe(0x1234);
    expect(m.cpu.lo[6]).toBe(228);
    expect(m.cpu.counters.compiledBlocks).toBeGreaterThan(0);
  });
});
