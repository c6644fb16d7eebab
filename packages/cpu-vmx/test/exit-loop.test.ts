/**
 * The VM-exit fast path (CPUID exits without an exception, Cpu.deferExit): an exit loop's
 * results are the ones the unwinding exit gave — per-run results, RIP, registers, exits by
 * reason and the retired count — through the interpreter, a compiled block (the loop gets hot)
 * and budgets that end before, at and after the exiting instruction.
 */
import { describe, expect, it } from "vitest";
import { CPU_ACTIVATE_SECONDARY, CPU_CR3_LOAD_EXITING, CPU_CR3_STORE_EXITING, CPU_HLT_EXITING, CPU_INVLPG_EXITING, CPU_RDTSC_EXITING, CPU_UNCOND_IO_EXITING, ExitReason, SECONDARY_ENABLE_RDTSCP, VmcsField as F, vmEntry } from "@vtlab/cpu-vmx";
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

describe("exit loop of every deferred exit (I/O, RDTSC, RDTSCP, RDMSR, VMCALL, HLT, CPUID)", () => {
  it("gives the same runs, registers, exits and retired count as the unwinding exit did", () => {
    // top: out 0x80, al; in al, 0x80; rdtsc; rdtscp; rdmsr; vmcall; hlt; cpuid; jmp top
    const m = machine64("e680" + "e480" + "0f31" + "0f01f9" + "0f32" + "0f01c1" + "f4" + "0fa2" + "ebed");
    const v = guestVmcs(m, { proc: CPU_UNCOND_IO_EXITING | CPU_RDTSC_EXITING | CPU_HLT_EXITING | CPU_ACTIVATE_SECONDARY });
    v.setField(F.SECONDARY_VM_EXEC_CONTROL, SECONDARY_ENABLE_RDTSCP);
    expect(vmEntry(m.cpu, v, true)).toBeUndefined();
    m.cpu.lo[0] = 0x1111; // EAX, ECX (an MSR index), EDX: no exiting instruction changes them
    m.cpu.lo[1] = 0x10;
    m.cpu.lo[2] = 0x3333;
    const budgets = [1, 2, 3, 1000, 1, 1, 5, 4];
    let trace = 0;
    const reasons: Record<number, number> = {};
    let runs = 0;
    for (let k = 0; k < 300; k++) {
      const r = m.cpu.run(budgets[k % budgets.length]!);
      runs++;
      trace = (Math.imul(trace, 31) + r.retired * 7 + (m.cpu.rip - CODE) + (r.kind === "vmexit" ? r.exit.reason * 1000 + r.exit.qualification : 0)) | 0;
      if (r.kind === "vmexit") {
        reasons[r.exit.reason] = (reasons[r.exit.reason] ?? 0) + 1;
        v.setNatural(F.GUEST_RIP, v.readNatural(F.GUEST_RIP) + r.exit.instructionLength);
        expect(vmEntry(m.cpu, v, false)).toBeUndefined();
      } else expect(r.kind).toBe("budget");
    }
    // The figures the unwinding exit (vmExit's throw) gave for this loop, before deferExit.
    expect(reasons).toEqual({
      [ExitReason.Cpuid]: 37,
      [ExitReason.Hlt]: 37,
      [ExitReason.Rdtsc]: 38,
      [ExitReason.Vmcall]: 37,
      [ExitReason.IoInstruction]: 76,
      [ExitReason.MsrRead]: 37,
      [ExitReason.Rdtscp]: 37,
    });
    expect(trace).toBe(-1025744702);
    expect(m.cpu.retired).toBe(37);
    expect(m.cpu.counters.vmExits).toBe(299);
    expect([m.cpu.lo[0], m.cpu.lo[1], m.cpu.lo[2]]).toEqual([0x1111, 0x10, 0x3333]);
    expect(m.cpu.halted).toBe(false);
    expect(runs).toBe(300);
  });
});

describe("exit loop of INVLPG and MOV to and from CR3 (deferred exits)", () => {
  it("gives the same runs, registers, exits and retired count as the unwinding exit did", () => {
    // top: inc rsi; invlpg [rax]; mov cr3, rcx; mov rdx, cr3; jmp top
    const m = machine64("48ffc6" + "0f0138" + "0f22d9" + "0f20da" + "ebf2");
    const v = guestVmcs(m, { proc: CPU_INVLPG_EXITING | CPU_CR3_LOAD_EXITING | CPU_CR3_STORE_EXITING });
    expect(vmEntry(m.cpu, v, true)).toBeUndefined();
    m.cpu.lo[0] = CODE; // RAX: INVLPG's operand
    m.cpu.lo[1] = 0x7000; // RCX: a CR3 the load would take (it exits: CR3 stays)
    m.cpu.lo[2] = 0x5555; // RDX: the store exits before writing it
    const cr3 = m.cpu.cr3;
    const budgets = [1, 2, 3, 1000, 1, 1, 5, 4];
    let trace = 0;
    const reasons: Record<number, number> = {};
    for (let k = 0; k < 300; k++) {
      const r = m.cpu.run(budgets[k % budgets.length]!);
      trace = (Math.imul(trace, 31) + r.retired * 7 + (m.cpu.rip - CODE) + (r.kind === "vmexit" ? r.exit.reason * 1000 + r.exit.qualification + r.exit.instructionLength : 0)) | 0;
      if (r.kind === "vmexit") {
        reasons[r.exit.reason] = (reasons[r.exit.reason] ?? 0) + 1;
        v.setNatural(F.GUEST_RIP, v.readNatural(F.GUEST_RIP) + r.exit.instructionLength);
        expect(vmEntry(m.cpu, v, false)).toBeUndefined();
      } else expect(r.kind).toBe("budget");
    }
    // The figures the unwinding exit (vmExit's throw) gave for this loop, before deferExit.
    expect(reasons).toEqual({ [ExitReason.Invlpg]: 75, [ExitReason.CrAccess]: 149 });
    expect(trace).toBe(-317025956);
    expect(m.cpu.retired).toBe(149);
    expect([m.cpu.lo[0], m.cpu.lo[1], m.cpu.lo[2], m.cpu.cr3]).toEqual([CODE, 0x7000, 0x5555, cr3]);
  });
});
