/**
 * The task-switch emulation (src/task-switch.ts) called with exits the CPU does not make: CALL
 * and JMP to a TSS (sources 0 and 2 of SDM Table 28-2; vtlab's CPU raises #GP for a far CALL or
 * JMP to a system descriptor, so only IDT gates and IRET reach the hypervisor from a guest), and
 * hostile TSS contents, on the state of a real 32-bit guest (x86-32/tss) stopped at its first
 * INT 0x40 task switch, inside task 0x38.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { guestImageUrl, x86_32GuestUrl } from "@vtlab/guests";
import { Vector } from "@vtlab/arch";
import { ExitReason, RFLAGS_NT, VmcsField as F, type VmExit } from "@vtlab/cpu-vmx";
import { Hypervisor } from "@vtlab/hypervisor";
import { TaskSwitchSource, Tss32, taskSwitch } from "../src/task-switch.js";

/** The tss guest, paused right after its first INT 0x40 switched to task 0x38. */
function inTask38(hap: boolean) {
  let seen = false;
  const hv = new Hypervisor({
    memoryMiB: 64,
    onVmExit: (_d, _v, exit) => {
      if (seen || (exit.reason & 0xffff) !== ExitReason.TaskSwitch || (exit.qualification & 0xffff) !== 0x38) return false;
      seen = true;
      return true;
    },
  });
  const d = hv.createDomain({ name: "tss", memoryMiB: 16, hap, kernel: new Uint8Array(readFileSync(x86_32GuestUrl("tss"))) });
  const good = hv.createDomain({ name: "good", memoryMiB: 16, hap, kernel: new Uint8Array(readFileSync(guestImageUrl("setjmp"))) });
  hv.run({ maxInstructions: 50_000_000 });
  const v = d.vcpus[0]!;
  const ctx = { hv, domain: d, vcpu: v };
  const vmcs = v.vmcs;
  const gdt = vmcs.readNatural(F.GUEST_GDTR_BASE);
  // The guest's kernel memory is identity-mapped (0-4 MiB): guest-linear = guest-physical.
  const read = (linear: number, size: 1 | 2 | 4) => {
    let value = 0;
    for (let k = 0; k < size; k++) value += (hv.memory.read8(d.ramHpa(linear + k)!) as number) * 2 ** (8 * k);
    return value;
  };
  const write = (linear: number, size: 1 | 2 | 4, value: number) => {
    for (let k = 0; k < size; k++) hv.memory.write8(d.ramHpa(linear + k)!, Math.floor(value / 2 ** (8 * k)) & 0xff);
  };
  const descType = (sel: number) => read(gdt + sel + 5, 1) & 0xf;
  const tssBase = (sel: number) => ((read(gdt + sel + 2, 2) | (read(gdt + sel + 4, 1) << 16) | (read(gdt + sel + 7, 1) << 24)) >>> 0);
  const exit = (source: TaskSwitchSource, selector: number, instructionLength: number, idtVectoring?: VmExit["idtVectoring"]): VmExit => ({
    reason: ExitReason.TaskSwitch,
    qualification: ((selector & 0xffff) | (source << 30)) >>> 0,
    instructionLength,
    ...(idtVectoring !== undefined ? { idtVectoring } : {}),
  });
  return { hv, d, v, ctx, vmcs, read, write, descType, tssBase, exit, good, paused: seen };
}

describe.each([
  ["EPT", true],
  ["shadow paging", false],
])("task switches the CPU does not make, on %s", (_mmu, hap) => {
  it("JMP to a TSS: the old busy bit cleared, the new one set, no back link, NT not set, EIP after the JMP saved", () => {
    const t = inTask38(hap);
    expect(t.paused).toBe(true);
    expect(t.vmcs.read32(F.GUEST_TR_SELECTOR)).toBe(0x38);
    const rip = t.vmcs.readNatural(F.GUEST_RIP);
    const old = t.tssBase(0x38);
    const target = t.tssBase(0x30);
    t.write(target + Tss32.BACK_LINK, 2, 0x1234);
    expect(taskSwitch(t.ctx, t.exit(TaskSwitchSource.Jmp, 0x30, 7), () => true)).toEqual({ kind: "resume" });
    expect(t.vmcs.read32(F.GUEST_TR_SELECTOR)).toBe(0x30);
    expect(t.vmcs.read32(F.GUEST_TR_AR_BYTES) & 0xf).toBe(0xb);
    expect([t.descType(0x38), t.descType(0x30)]).toEqual([0x9, 0xb]);
    expect(t.read(target + Tss32.BACK_LINK, 2)).toBe(0x1234);
    expect(t.vmcs.readNatural(F.GUEST_RFLAGS) & RFLAGS_NT).toBe(0);
    expect(t.read(old + Tss32.EIP, 4)).toBe(rip + 7);
    expect(t.vmcs.readNatural(F.GUEST_RIP)).toBe(t.read(target + Tss32.EIP, 4));
  });

  it("CALL to a TSS: nests like a gate (back link, NT, both busy); a CALL to a busy TSS is #GP(selector)", () => {
    const t = inTask38(hap);
    const target = t.tssBase(0x30);
    expect(taskSwitch(t.ctx, t.exit(TaskSwitchSource.Call, 0x30, 7), () => true)).toEqual({ kind: "resume" });
    expect(t.read(target + Tss32.BACK_LINK, 2)).toBe(0x38);
    expect(t.vmcs.readNatural(F.GUEST_RFLAGS) & RFLAGS_NT).toBe(RFLAGS_NT);
    expect([t.descType(0x38), t.descType(0x30)]).toEqual([0xb, 0xb]);
    expect(t.vmcs.readNatural(F.GUEST_CR0) & 0x8).toBe(0x8); // CR0.TS
    // Back in 0x30 now: a CALL to 0x38, which is busy (nested), is #GP(0x38), nothing changed.
    const rip = t.vmcs.readNatural(F.GUEST_RIP);
    expect(taskSwitch(t.ctx, t.exit(TaskSwitchSource.Call, 0x38, 7), () => true)).toEqual({ kind: "inject", vector: Vector.GP, errorCode: 0x38 });
    expect(t.vmcs.read32(F.GUEST_TR_SELECTOR)).toBe(0x30);
    expect(t.vmcs.readNatural(F.GUEST_RIP)).toBe(rip);
  });

  it("a #DF through a gate to a TSS that is not present is a triple fault; a hardware exception's error code goes on the new stack with EXT in fault error codes", () => {
    const t = inTask38(hap);
    const df = { vector: Vector.DF, type: 3, errorCode: 0 };
    expect(taskSwitch(t.ctx, t.exit(TaskSwitchSource.IdtGate, 0x40, 0, df), () => true)).toMatchObject({ kind: "crash", reason: expect.stringContaining("triple fault") });
    // A #GP through a gate to a TSS whose limit is too small: #TS becomes #DF (contributory twice).
    expect(taskSwitch(t.ctx, t.exit(TaskSwitchSource.IdtGate, 0x48, 0, { vector: Vector.GP, type: 3, errorCode: 0 }), () => true)).toEqual({ kind: "inject", vector: Vector.DF, errorCode: 0 });
    // An external interrupt through a gate to a TSS that is not present: #NP(0x40 | EXT).
    expect(taskSwitch(t.ctx, t.exit(TaskSwitchSource.IdtGate, 0x40, 0, { vector: 0x50, type: 0 }), () => true)).toEqual({ kind: "inject", vector: Vector.NP, errorCode: 0x41 });
    // A #GP(0x1234) through the gate to 0x30: the error code is pushed on task 0x30's stack.
    const target = t.tssBase(0x30);
    const esp = t.read(target + 0x38, 4);
    expect(taskSwitch(t.ctx, t.exit(TaskSwitchSource.IdtGate, 0x30, 0, { vector: Vector.GP, type: 3, errorCode: 0x1234 }), () => true)).toEqual({ kind: "resume" });
    expect(t.vmcs.readNatural(F.GUEST_RSP)).toBe(esp - 4);
    expect(t.read(esp - 4, 4)).toBe(0x1234);
  });

  it("hostile TSS contents: EFLAGS.VM and a 16-bit TR crash the domain with a reason; the neighbour still finishes", () => {
    const t = inTask38(hap);
    const target = t.tssBase(0x30);
    t.write(target + Tss32.EFLAGS, 4, 0x20002);
    expect(taskSwitch(t.ctx, t.exit(TaskSwitchSource.Jmp, 0x30, 7), () => true)).toEqual({ kind: "crash", reason: "task switch to the new TSS (selector 0x30) with EFLAGS.VM = 1: virtual-8086 mode is not modelled" });
    t.vmcs.setField(F.GUEST_TR_AR_BYTES, 0x83);
    expect(taskSwitch(t.ctx, t.exit(TaskSwitchSource.Jmp, 0x30, 7), () => true)).toEqual({ kind: "crash", reason: "task switch from a 16-bit TSS (selector 0x38): only 32-bit TSSes are modelled" });
    t.d.crash("test over");
    t.hv.run({ maxInstructions: 50_000_000 });
    expect({ state: t.good.state, code: t.good.exitCode }).toEqual({ state: "shutdown", code: 0 });
  });
});
