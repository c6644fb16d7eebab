/**
 * PAUSE-loop exiting (SDM Vol. 3C 26.1.3, secondary control bit 10): at CPL 0 a PAUSE within
 * PLE_GAP of the one before continues a loop, and once the loop has lasted longer than PLE_WINDOW
 * the PAUSE exits (reason 40, RIP at the PAUSE); the first PAUSE after VM entry starts a loop.
 * Time is counted in retired instructions (cpu-vmx's simplification, as for the preemption timer).
 * Machine code assembled with gcc (source in the comments).
 */
import { describe, expect, it } from "vitest";
import { CPU_ACTIVATE_SECONDARY, ExitReason, PROC_CAPS, SECONDARY_PAUSE_LOOP_EXITING, VmcsField as F, vmEntry, type RunResult, type Vmcs } from "@vtlab/cpu-vmx";
import { CODE, machine64, type TestMachine } from "./machine.js";
import { guestVmcs } from "./vmx-fixture.js";

/** 1: pause; jmp 1b (a spin-wait: a PAUSE every second instruction). */
const SPIN = "f390ebfc";
/** 1: mov $200,%ecx; 2: loop 2b; pause; jmp 1b (PAUSEs 203 instructions apart). */
const SPACED = "b9c8000000e2fef390ebf5";

function pleGuest(code: string, gap: number, window: number, on = true): { m: TestMachine; v: Vmcs } {
  const m = machine64(code);
  const v = guestVmcs(m);
  v.vmwrite(F.CPU_BASED_VM_EXEC_CONTROL, (PROC_CAPS.mustBe1 | CPU_ACTIVATE_SECONDARY) >>> 0);
  v.vmwrite(F.SECONDARY_VM_EXEC_CONTROL, on ? SECONDARY_PAUSE_LOOP_EXITING : 0);
  v.vmwrite(F.PLE_GAP, gap);
  v.vmwrite(F.PLE_WINDOW, window);
  return { m, v };
}

function enter(m: TestMachine, v: Vmcs, launch: boolean, budget: number): RunResult {
  const e = vmEntry(m.cpu, v, launch);
  if (e !== undefined) throw new Error(`entry failed: ${"message" in e ? e.message : ""}`);
  return m.cpu.run(budget);
}

describe("PAUSE-loop exiting", () => {
  it("a spin-wait exits at the first PAUSE past PLE_WINDOW, with RIP at the PAUSE; off, it spins to the budget", () => {
    const { m, v } = pleGuest(SPIN, 128, 4096);
    const r = enter(m, v, true, 100_000);
    expect(r.kind).toBe("vmexit");
    if (r.kind !== "vmexit") return;
    expect(r.exit).toMatchObject({ reason: ExitReason.Pause, qualification: 0, instructionLength: 2 });
    expect(v.readNatural(F.GUEST_RIP)).toBe(CODE);
    // The loop starts at the first PAUSE (retired 0); the PAUSE at retired 4098 is the first past 4096.
    expect(r.retired).toBe(4098);
    const off = pleGuest(SPIN, 128, 4096, false);
    expect(enter(off.m, off.v, true, 100_000).kind).toBe("budget");
  });

  it("the first PAUSE after VM entry starts a new loop: each resume spins a whole window again", () => {
    const { m, v } = pleGuest(SPIN, 128, 1000);
    const first = enter(m, v, true, 100_000);
    const again = enter(m, v, false, 100_000);
    expect(first).toMatchObject({ kind: "vmexit", retired: 1002 });
    expect(again).toMatchObject({ kind: "vmexit", retired: 1002 });
  });

  it("PAUSEs further apart than PLE_GAP never make a loop; a gap above their distance does", () => {
    const far = pleGuest(SPACED, 128, 1000);
    expect(enter(far.m, far.v, true, 100_000).kind).toBe("budget");
    const near = pleGuest(SPACED, 256, 1000);
    const r = enter(near.m, near.v, true, 100_000);
    expect(r.kind).toBe("vmexit");
    if (r.kind === "vmexit") expect(r.exit.reason).toBe(ExitReason.Pause);
  });
});
