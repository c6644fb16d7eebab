/**
 * VMX non-root operation: VM exits caused by real machine code, with the SDM's reason,
 * qualification and instruction length, the guest resumed after each; control on/off cases;
 * VM-entry failures. Machine code was assembled with gcc (source in the comments).
 */
import { describe, expect, it } from "vitest";
import { Vector } from "@vtlab/arch";
import type {
  Vmcs} from "@vtlab/cpu-vmx";
import {
  CPU_CR3_LOAD_EXITING,
  CPU_HLT_EXITING,
  CPU_INVLPG_EXITING,
  CPU_NMI_WINDOW_EXITING,
  PIN_NMI_EXITING,
  CPU_CR3_STORE_EXITING,
  CPU_CR8_LOAD_EXITING,
  CPU_CR8_STORE_EXITING,
  CPU_MOV_DR_EXITING,
  CPU_PAUSE_EXITING,
  SECONDARY_WBINVD_EXITING,
  CPU_ACTIVATE_SECONDARY,
  SECONDARY_ENABLE_EPT,
  SECONDARY_UNRESTRICTED_GUEST,
  ENTRY_CAPS,
  ENTRY_IA32E_MODE,
  ENTRY_LOAD_IA32_EFER,
  EXIT_SAVE_IA32_EFER,
  CR0_PG,
  CR4_VMXE,
  SECONDARY_DESC_TABLE_EXITING,
  SECONDARY_ENABLE_VPID,
  EptAccess,
  EPT_QUAL_FINAL,
  EPT_QUAL_LINEAR_VALID,
  type SecondLevelTranslator,
  CPU_INTR_WINDOW_EXITING,
  CPU_MONITOR_TRAP_FLAG,
  PIN_PREEMPTION_TIMER,
  PIN_EXTINT_EXITING,
  EXIT_SAVE_PREEMPTION_TIMER,
  EXIT_ACK_INTR_ON_EXIT,
  CPU_RDTSC_EXITING,
  CPU_UNCOND_IO_EXITING,
  CPU_USE_IO_BITMAPS,
  CPU_USE_MSR_BITMAPS,
  CR0_NE,
  CR0_PE,
  CR0_WP,
  CR4_PAE,
  EXIT_CAPS,
  EXIT_HOST_ADDR_SPACE_SIZE,
  ExitReason,
  EXIT_REASON_FAILED_VMENTRY,
  PIN_CAPS,
  PROC_CAPS,
  INTR_INFO_VALID,
  VmcsField as F,
  VmInstructionError,
  ioQualification,
  crQualification,
  CrAccessType,
  vmEntry,
  type RunResult,
  type VmExit,
  TASK_SWITCH_SOURCE_IDT,
  TASK_SWITCH_SOURCE_IRET,
  Seg,
} from "@vtlab/cpu-vmx";
import { CODE, PML4, hex, machine64, type TestMachine } from "./machine.js";
import { HANDLERS, IO_A, MSRBM, guestVmcs } from "./vmx-fixture.js";

/** Enter (launch or resume), run, and return the result. */
function enter(m: TestMachine, v: Vmcs, launch: boolean, budget = 1000): RunResult {
  const e = vmEntry(m.cpu, v, launch);
  if (e !== undefined) throw new Error(`entry failed: ${"message" in e ? e.message : ""}`);
  return m.cpu.run(budget);
}

function exitOf(r: RunResult): VmExit {
  if (r.kind !== "vmexit") throw new Error(`expected a VM exit, got ${r.kind}`);
  return r.exit;
}

/** The hypervisor's "skip the instruction and resume". */
function skip(v: Vmcs, exit: VmExit): void {
  v.setNatural(F.GUEST_RIP, v.readNatural(F.GUEST_RIP) + exit.instructionLength);
}

describe("instruction VM exits with reason, qualification and length", () => {
  it("CPUID always exits (reason 10); the hypervisor emulates it and the guest goes on to a HLT exit", () => {
    // cpuid; mov ebx, eax; hlt
    const m = machine64("0fa289c3f4");
    const v = guestVmcs(m, { proc: CPU_HLT_EXITING });
    m.cpu.lo[0] = 0x4000_0000;
    const e1 = exitOf(enter(m, v, true));
    expect(e1).toMatchObject({ reason: ExitReason.Cpuid, qualification: 0, instructionLength: 2 });
    expect(v.vmread(F.VM_EXIT_REASON)).toBe(ExitReason.Cpuid);
    expect(v.readNatural(F.GUEST_RIP)).toBe(CODE);
    expect(v.launchState).toBe("launched");
    m.cpu.setReg32(0, 0x1234); // the hypervisor's CPUID answer
    skip(v, e1);
    const e2 = exitOf(enter(m, v, false));
    expect(e2).toMatchObject({ reason: ExitReason.Hlt, instructionLength: 1 });
    expect(m.cpu.lo[3]).toBe(0x1234);
    expect(v.readNatural(F.GUEST_RIP)).toBe(CODE + 4);
  });

  it("without HLT exiting, HLT halts the guest (no exit)", () => {
    const m = machine64("f4");
    expect(enter(m, guestVmcs(m), true).kind).toBe("hlt");
  });

  it("VMCALL exits (reason 18, length 3)", () => {
    const m = machine64("0f01c1f4");
    expect(exitOf(enter(m, guestVmcs(m), true))).toMatchObject({ reason: ExitReason.Vmcall, instructionLength: 3 });
  });

  it("OUT with unconditional I/O exiting: reason 30 with size, direction, immediate and port", () => {
    // mov al, 0x41; out 0x80, al
    const m = machine64("b041e680f4");
    const e = exitOf(enter(m, guestVmcs(m, { proc: CPU_UNCOND_IO_EXITING }), true));
    expect(e).toMatchObject({ reason: ExitReason.IoInstruction, instructionLength: 2, qualification: ioQualification(0x80, 1, false, false, false, true) });
    expect(e.qualification).toBe((0x80 << 16) | (1 << 6));
  });

  it("I/O bitmaps: a set bit exits, a clear bit lets the access through", () => {
    // mov dx, 0x81; mov al, 7; out dx, al; out 0x80, al; hlt
    const m = machine64("66ba8100b007eee680f4");
    m.memory.write8(IO_A + (0x80 >>> 3), 1 << (0x80 & 7)); // port 0x80 exits, 0x81 does not
    let seen = -1;
    m.ports.register(0x81, 1, { read: () => 0, write: (_o: number, _s: 1 | 2 | 4, val: number) => void (seen = val) }, "port 81");
    const e = exitOf(enter(m, guestVmcs(m, { proc: CPU_USE_IO_BITMAPS }), true));
    expect(seen).toBe(7);
    expect(e).toMatchObject({ reason: ExitReason.IoInstruction, qualification: (0x80 << 16) | (1 << 6) });
  });

  it("MSR bitmaps: a clear read bit runs RDMSR, a set write bit exits WRMSR; without bitmaps RDMSR exits", () => {
    // mov ecx, 0xc0000080; rdmsr; wrmsr; hlt
    const code = "b9800000c00f320f30f4";
    const m = machine64(code);
    m.memory.write8(MSRBM + 3072 + (0x80 >>> 3), 1 << (0x80 & 7)); // write-high bitmap, EFER
    const e = exitOf(enter(m, guestVmcs(m, { proc: CPU_USE_MSR_BITMAPS }), true));
    expect(e).toMatchObject({ reason: ExitReason.MsrWrite, instructionLength: 2 });
    expect(m.cpu.lo[0]! & 0x500).toBe(0x500); // RDMSR ran: EFER has LME and LMA

    const n = machine64(code);
    expect(exitOf(enter(n, guestVmcs(n), true))).toMatchObject({ reason: ExitReason.MsrRead });
  });

  it("MOV to CR3 exits with CR3-load exiting (reason 28) unless the value is a CR3-target value", () => {
    // mov rax, cr3; mov cr3, rax; hlt
    const code = "0f20d80f22d8f4";
    const m = machine64(code);
    const e = exitOf(enter(m, guestVmcs(m, { proc: CPU_CR3_LOAD_EXITING }), true));
    expect(e).toMatchObject({ reason: ExitReason.CrAccess, instructionLength: 3, qualification: crQualification(3, CrAccessType.MovToCr, 0) });

    const t = machine64(code);
    const v = guestVmcs(t, { proc: CPU_CR3_LOAD_EXITING | CPU_HLT_EXITING });
    v.vmwrite(F.CR3_TARGET_COUNT, 1);
    v.vmwrite(F.CR3_TARGET_VALUE0, PML4);
    expect(exitOf(enter(t, v, true))).toMatchObject({ reason: ExitReason.Hlt });
  });

  it("CR0 guest/host mask and read shadow: reads see the shadow, a write changing an owned bit exits", () => {
    // mov rax, cr0; mov rbx, rax; and eax, ~0x10000 (clear WP); mov cr0, rax; hlt
    const m = machine64("0f20c04889c325fffffeff0f22c0f4");
    const v = guestVmcs(m, { proc: CPU_HLT_EXITING });
    v.vmwrite(F.CR0_GUEST_HOST_MASK, CR0_WP);
    v.vmwrite(F.CR0_READ_SHADOW, CR0_WP);
    const e = exitOf(enter(m, v, true));
    expect(e).toMatchObject({ reason: ExitReason.CrAccess, qualification: crQualification(0, CrAccessType.MovToCr, 0) });
    expect(m.cpu.regAddr(3) & CR0_WP).toBe(CR0_WP);
  });

  it("INVLPG exiting reports the linear address; RDTSC exiting reports reason 16", () => {
    // mov eax, 0x12345000; invlpg [rax]; hlt
    const m = machine64("b8005034120f0138f4");
    expect(exitOf(enter(m, guestVmcs(m, { proc: CPU_INVLPG_EXITING }), true))).toMatchObject({ reason: ExitReason.Invlpg, qualification: 0x1234_5000, instructionLength: 3 });
    const r = machine64("0f31f4");
    expect(exitOf(enter(r, guestVmcs(r, { proc: CPU_RDTSC_EXITING }), true))).toMatchObject({ reason: ExitReason.Rdtsc, instructionLength: 2 });
  });
});

describe("exceptions, events and the triple fault", () => {
  // mov rax, 0x40000000; mov qword [rax], 5; hlt   (the second GiB is not mapped: #PF, write)
  const pfCode = "48c7c00000004048c70005000000f4";

  it("a #PF in the exception bitmap exits (reason 0) with the address as qualification, CR2 untouched", () => {
    const m = machine64(pfCode);
    m.cpu.cr2 = 0x777;
    const v = guestVmcs(m, { exceptionBitmap: 1 << Vector.PF });
    v.vmwrite(F.GUEST_CR3, PML4);
    const e = exitOf(enter(m, v, true));
    expect(e).toMatchObject({ reason: ExitReason.ExceptionOrNmi, qualification: 0x4000_0000, interruption: { vector: Vector.PF, type: 3, errorCode: 2 } });
    expect(v.vmread(F.VM_EXIT_INTR_INFO)).toBe((INTR_INFO_VALID | (1 << 11) | (3 << 8) | 14) >>> 0);
    expect(m.cpu.cr2).toBe(0x777);
    expect(v.readNatural(F.GUEST_RIP)).toBe(CODE + 7);
  });

  it("PFEC mask/match selects which page faults exit: write faults only, so a read fault reaches the guest", () => {
    // mov rax, 0x40000000; mov rbx, [rax]; hlt
    const m = machine64("48c7c000000040488b18f4");
    const v = guestVmcs(m, { exceptionBitmap: 1 << Vector.PF, pfecMask: 0x2, pfecMatch: 0x2 });
    const r = enter(m, v, true);
    expect(r.kind).toBe("hlt"); // delivered through the guest IDT to the #PF handler's HLT
    expect(m.cpu.rip).toBe(HANDLERS + Vector.PF * 16 + 1);
    expect(m.cpu.cr2).toBe(0x4000_0000);
  });

  it("an exit during event delivery reports the event as IDT-vectoring information (and wins over #DF)", () => {
    // mov rsp, 0x40001000 (unmapped); int3; hlt -- pushing the #BP frame page-faults
    const m = machine64("48c7c400100040ccf4");
    const v = guestVmcs(m, { exceptionBitmap: 1 << Vector.PF });
    const e = exitOf(enter(m, v, true));
    expect(e).toMatchObject({
      reason: ExitReason.ExceptionOrNmi,
      interruption: { vector: Vector.PF, type: 3, errorCode: 2 },
      idtVectoring: { vector: Vector.BP, type: 6 },
      instructionLength: 1,
    });
    expect(v.vmread(F.IDT_VECTORING_INFO_FIELD)).toBe((INTR_INFO_VALID | (6 << 8) | Vector.BP) >>> 0);
    expect(v.readNatural(F.GUEST_RIP)).toBe(CODE + 7); // the INT3, to be re-executed or re-injected
    expect(v.readNatural(F.GUEST_RSP)).toBe(0x4000_1000);
  });

  it("injection of each type: a hardware exception with its error code, a software interrupt past its instruction, an NMI, into a HLT-state guest", () => {
    // #GP(0x18) injected: the frame carries the error code, RIP is the guest RIP.
    const a = machine64("f4");
    const va = guestVmcs(a);
    va.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, (INTR_INFO_VALID | (1 << 11) | (3 << 8) | Vector.GP) >>> 0);
    va.vmwrite(F.VM_ENTRY_EXCEPTION_ERROR_CODE, 0x18);
    expect(enter(a, va, true).kind).toBe("hlt");
    expect(a.cpu.rip).toBe(HANDLERS + Vector.GP * 16 + 1);
    const sp = a.cpu.regAddr(4);
    expect([a.memory.read32(sp), a.memory.read32(sp + 8)]).toEqual([0x18, CODE]);

    // INT 0x80 injected as a software interrupt of length 2: the return RIP is past it.
    const b = machine64("cd80f4");
    const vb = guestVmcs(b);
    vb.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, (INTR_INFO_VALID | (4 << 8) | 0x80) >>> 0);
    vb.vmwrite(F.VM_ENTRY_INSTRUCTION_LEN, 2);
    expect(enter(b, vb, true).kind).toBe("hlt");
    expect(b.cpu.rip).toBe(HANDLERS + 0x80 * 16 + 1);
    expect(b.memory.read32(b.cpu.regAddr(4))).toBe(CODE + 2);

    // An NMI injected into a guest entering in the HLT activity state wakes it and blocks NMIs.
    const c = machine64("f4");
    const vc = guestVmcs(c);
    vc.vmwrite(F.GUEST_ACTIVITY_STATE, 1);
    vc.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, (INTR_INFO_VALID | (2 << 8) | Vector.NMI) >>> 0);
    expect(enter(c, vc, true).kind).toBe("hlt");
    expect(c.cpu.rip).toBe(HANDLERS + Vector.NMI * 16 + 1);
    expect(c.cpu.nmiBlocked).toBe(true);

    // A HLT-state guest with nothing injected stays halted.
    const d = machine64("90f4");
    const vd = guestVmcs(d);
    vd.vmwrite(F.GUEST_ACTIVITY_STATE, 1);
    expect(enter(d, vd, true).kind).toBe("hlt");
    expect(d.cpu.rip).toBe(CODE);
  });

  it("a triple fault in the guest is a VM exit (reason 2), not a shutdown", () => {
    const m = machine64(pfCode);
    const v = guestVmcs(m);
    v.vmwrite(F.GUEST_IDTR_LIMIT, 0); // no usable gate: #PF -> #GP -> #DF -> triple fault
    expect(exitOf(enter(m, v, true))).toMatchObject({ reason: ExitReason.TripleFault });
  });

  it("an event injected at VM entry is delivered through the guest IDT", () => {
    const m = machine64("f4");
    const v = guestVmcs(m);
    v.vmwrite(F.GUEST_RFLAGS, 0x202);
    v.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, (INTR_INFO_VALID | 0x30) >>> 0); // external interrupt, vector 0x30
    expect(enter(m, v, true).kind).toBe("hlt");
    expect(m.cpu.rip).toBe(HANDLERS + 0x30 * 16 + 1);
    expect(v.read32(F.VM_ENTRY_INTR_INFO_FIELD) & INTR_INFO_VALID).toBe(0);
  });
});

describe("VPID-tagged TLB (SDM 29.1), INVVPID and INVEPT", () => {
  // mov rax, [0x40000000]; vmcall; mov rbx, [0x40000000]; hlt
  const code = "488b0425000000400f01c1488b1c2500000040f4";

  /** VA 0x40000000 -> phys 0x200000 (0x1111) through a guest PD at 0x5000; the hypervisor then retargets it to 0x400000 (0x2222). */
  function run(vpid: number, between: (m: TestMachine) => void): number {
    const m = machine64(code);
    m.memory.write64(0x3008, 0x5000 | 3, 0);
    m.memory.write64(0x5000, 0x20_0000 | 0x83, 0);
    m.memory.write32(0x20_0000, 0x1111);
    m.memory.write32(0x40_0000, 0x2222);
    const v = guestVmcs(m, { proc: CPU_HLT_EXITING | (vpid !== 0 ? CPU_ACTIVATE_SECONDARY : 0) });
    if (vpid !== 0) {
      v.vmwrite(F.SECONDARY_VM_EXEC_CONTROL, SECONDARY_ENABLE_VPID);
      v.vmwrite(F.VIRTUAL_PROCESSOR_ID, vpid);
    }
    const e = exitOf(enter(m, v, true));
    expect(e.reason).toBe(ExitReason.Vmcall);
    expect(m.cpu.lo[0]).toBe(0x1111);
    m.memory.write64(0x5000, 0x40_0000 | 0x83, 0); // the guest PTE changes behind the TLB's back
    between(m);
    skip(v, e);
    expect(exitOf(enter(m, v, false)).reason).toBe(ExitReason.Hlt);
    return m.cpu.lo[3]!;
  }

  it("without VPIDs, VM entry and exit flush: the guest sees the new mapping", () => {
    expect(run(0, () => {})).toBe(0x2222);
  });

  it("with a VPID the guest's translation survives the exit (stale until invalidated)", () => {
    expect(run(1, () => {})).toBe(0x1111);
  });

  it("INVVPID single-context, individual-address and all-context, and INVEPT, drop it", () => {
    expect(run(1, (m) => expect(m.cpu.invvpid(1, 1)).toBeUndefined())).toBe(0x2222);
    expect(run(1, (m) => expect(m.cpu.invvpid(0, 1, 0x4000_0000)).toBeUndefined())).toBe(0x2222);
    expect(run(1, (m) => expect(m.cpu.invvpid(2, 0)).toBeUndefined())).toBe(0x2222);
    expect(run(1, (m) => expect(m.cpu.invept(2)).toBeUndefined())).toBe(0x2222);
    // INVVPID for another VPID leaves this one's translation alone.
    expect(run(1, (m) => expect(m.cpu.invvpid(1, 2)).toBeUndefined())).toBe(0x1111);
  });

  it("invalid INVVPID/INVEPT operands fail with VM-instruction error 28", () => {
    const m = machine64("f4");
    expect(m.cpu.invvpid(1, 0)).toMatchObject({ kind: "vmfail-valid", error: 28 });
    expect(m.cpu.invvpid(4, 1)).toMatchObject({ error: 28 });
    expect(m.cpu.invvpid(0, 1, 2 ** 48)).toMatchObject({ error: 28 });
    expect(m.cpu.invept(3)).toMatchObject({ error: 28 });
  });

  it("VPID 0 with enable VPID is an invalid control (VMfailValid 7)", () => {
    const m = machine64("f4");
    const v = guestVmcs(m, { proc: CPU_ACTIVATE_SECONDARY });
    v.vmwrite(F.SECONDARY_VM_EXEC_CONTROL, SECONDARY_ENABLE_VPID);
    expect(vmEntry(m.cpu, v, true)).toMatchObject({ kind: "vmfail-valid", error: VmInstructionError.EntryInvalidControls });
  });
});

describe("descriptor-table exiting (reasons 46, 47) with instruction information", () => {
  it("SGDT [rbx+rsi*4+0x10] and STR ax exit with the SDM's instruction-information layout", () => {
    // sgdt [rbx+rsi*4+0x10]; str ax; hlt
    const m = machine64("0f0144b310660f00c8f4");
    const v = guestVmcs(m);
    v.vmwrite(F.CPU_BASED_VM_EXEC_CONTROL, (PROC_CAPS.mustBe1 | CPU_ACTIVATE_SECONDARY) >>> 0);
    v.vmwrite(F.SECONDARY_VM_EXEC_CONTROL, SECONDARY_DESC_TABLE_EXITING);
    const e1 = exitOf(enter(m, v, true));
    // identity 0 (SGDT) 29:28, base RBX 26:23, index RSI 21:18, segment DS 17:15, operand size 32 (11), 64-bit address (9:7 = 2), scale x4 (1:0 = 2)
    expect(e1).toMatchObject({ reason: ExitReason.GdtrIdtrAccess, qualification: 0x10, instructionLength: 5 });
    expect(e1.instructionInfo).toBe(((0 << 28) | (3 << 23) | (6 << 18) | (3 << 15) | (1 << 11) | (2 << 7) | 2) >>> 0);
    expect(v.vmread(F.VMX_INSTRUCTION_INFO)).toBe(e1.instructionInfo);
    skip(v, e1);
    const e2 = exitOf(enter(m, v, false));
    // identity 1 (STR), register operand (10) AX in 6:3, 16-bit operand
    expect(e2).toMatchObject({ reason: ExitReason.LdtrTrAccess, instructionLength: 4 });
    expect(e2.instructionInfo).toBe(((1 << 28) | (1 << 10) | (2 << 7)) >>> 0);
  });
});

describe("NMIs", () => {
  it("NMI exiting turns an NMI into an exit (reason 0, type 2); without it the NMI is delivered through the guest IDT even with IF = 0", () => {
    const m = machine64("9090f4");
    const v = guestVmcs(m);
    v.vmwrite(F.PIN_BASED_VM_EXEC_CONTROL, PIN_CAPS.mustBe1 | PIN_NMI_EXITING);
    m.cpu.raiseNmi();
    expect(exitOf(enter(m, v, true))).toMatchObject({ reason: ExitReason.ExceptionOrNmi, interruption: { vector: Vector.NMI, type: 2 } });

    const n = machine64("9090f4");
    n.cpu.raiseNmi();
    expect(enter(n, guestVmcs(n), true).kind).toBe("hlt");
    expect(n.cpu.rip).toBe(HANDLERS + Vector.NMI * 16 + 1);
    expect(n.cpu.nmiBlocked).toBe(true);
  });

  it("NMI-window exiting exits as soon as NMIs are unblocked (reason 8), not while blocking by NMI is on", () => {
    const m = machine64("900f01c1");
    expect(exitOf(enter(m, guestVmcs(m, { proc: CPU_NMI_WINDOW_EXITING }), true)).reason).toBe(ExitReason.NmiWindow);
    const n = machine64("900f01c1");
    const w = guestVmcs(n, { proc: CPU_NMI_WINDOW_EXITING });
    w.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, 8); // blocking by NMI
    expect(exitOf(enter(n, w, true)).reason).toBe(ExitReason.Vmcall);
    expect(w.vmread(F.GUEST_INTERRUPTIBILITY_INFO)).toBe(8);
  });
});

describe("exits between instructions", () => {
  it("interrupt-window exiting waits for RFLAGS.IF = 1 and the end of the STI shadow (reason 7)", () => {
    // sti; nop; hlt
    const m = machine64("fb90f4");
    const e = exitOf(enter(m, guestVmcs(m, { proc: CPU_INTR_WINDOW_EXITING }), true));
    expect(e).toMatchObject({ reason: ExitReason.InterruptWindow, instructionLength: 0 });
    expect(m.cpu.rip).toBe(CODE + 2); // STI, then NOP in the shadow, then the window opens
  });

  it("the monitor trap flag exits after one instruction (reason 37)", () => {
    // mov eax, 1; mov ebx, 2; hlt
    const m = machine64("b801000000bb02000000f4");
    const v = guestVmcs(m, { proc: CPU_MONITOR_TRAP_FLAG });
    expect(exitOf(enter(m, v, true))).toMatchObject({ reason: ExitReason.MonitorTrapFlag });
    expect(v.readNatural(F.GUEST_RIP)).toBe(CODE + 5);
    expect(exitOf(enter(m, v, false))).toMatchObject({ reason: ExitReason.MonitorTrapFlag });
    expect(v.readNatural(F.GUEST_RIP)).toBe(CODE + 10);
    expect([m.cpu.lo[0], m.cpu.lo[3]]).toEqual([1, 2]);
  });

  it("the VMX-preemption timer exits when it reaches zero (reason 52) and saves 0", () => {
    // four NOPs and a HLT
    const m = machine64("90909090f4");
    const v = guestVmcs(m);
    v.vmwrite(F.PIN_BASED_VM_EXEC_CONTROL, PIN_CAPS.mustBe1 | PIN_PREEMPTION_TIMER);
    v.vmwrite(F.VM_EXIT_CONTROLS, EXIT_CAPS.mustBe1 | EXIT_HOST_ADDR_SPACE_SIZE | EXIT_SAVE_PREEMPTION_TIMER);
    v.vmwrite(F.VMX_PREEMPTION_TIMER_VALUE, 3);
    expect(exitOf(enter(m, v, true))).toMatchObject({ reason: ExitReason.PreemptionTimer });
    expect(v.readNatural(F.GUEST_RIP)).toBe(CODE + 3);
    expect(v.vmread(F.VMX_PREEMPTION_TIMER_VALUE)).toBe(0);
  });

  it("the preemption timer stops a hot loop (compiled blocks included) at exactly its count; 0 exits before the first instruction; another exit saves what is left", () => {
    // mov ecx, 1000000; l: dec ecx; jnz l; hlt
    const timed = (value: number, code = "b940420f00ffc975fcf4") => {
      const m = machine64(code);
      const v = guestVmcs(m, { proc: CPU_HLT_EXITING });
      v.vmwrite(F.PIN_BASED_VM_EXEC_CONTROL, PIN_CAPS.mustBe1 | PIN_PREEMPTION_TIMER);
      v.vmwrite(F.VM_EXIT_CONTROLS, EXIT_CAPS.mustBe1 | EXIT_HOST_ADDR_SPACE_SIZE | EXIT_SAVE_PREEMPTION_TIMER);
      v.vmwrite(F.VMX_PREEMPTION_TIMER_VALUE, value);
      const e = vmEntry(m.cpu, v, true);
      if (e !== undefined) throw new Error("entry failed");
      return { m, v, r: m.cpu.run(10_000_000) };
    };
    for (const n of [1, 2, 100_001, 1_234_567]) {
      const { v, r } = timed(n);
      expect(r.kind).toBe("vmexit");
      expect(exitOf(r).reason, `timer ${n}`).toBe(ExitReason.PreemptionTimer);
      expect(r.retired, `timer ${n}`).toBe(n);
      expect(v.vmread(F.VMX_PREEMPTION_TIMER_VALUE)).toBe(0);
    }
    const zero = timed(0);
    expect(exitOf(zero.r).reason).toBe(ExitReason.PreemptionTimer);
    expect(zero.r.retired).toBe(0);
    expect(zero.v.readNatural(F.GUEST_RIP)).toBe(CODE);
    // nop; nop; hlt with 10 on the timer: the HLT exit comes first and saves 8.
    const early = timed(10, "9090f4");
    expect(exitOf(early.r).reason).toBe(ExitReason.Hlt);
    expect(early.v.vmread(F.VMX_PREEMPTION_TIMER_VALUE)).toBe(8);
  });

  it("external-interrupt exiting: with acknowledge-on-exit the vector is reported and taken; without, it stays pending", () => {
    const m = machine64("90f4");
    const v = guestVmcs(m);
    v.vmwrite(F.PIN_BASED_VM_EXEC_CONTROL, PIN_CAPS.mustBe1 | PIN_EXTINT_EXITING);
    v.vmwrite(F.VM_EXIT_CONTROLS, EXIT_CAPS.mustBe1 | EXIT_HOST_ADDR_SPACE_SIZE | EXIT_ACK_INTR_ON_EXIT);
    m.cpu.raiseInterrupt(0x40);
    expect(exitOf(enter(m, v, true))).toMatchObject({ reason: ExitReason.ExternalInterrupt, interruption: { vector: 0x40, type: 0 } });
    expect(v.vmread(F.VM_EXIT_INTR_INFO)).toBe((INTR_INFO_VALID | 0x40) >>> 0);
    expect(m.cpu.interruptPending).toBe(false);

    const n = machine64("90f4");
    const w = guestVmcs(n);
    w.vmwrite(F.PIN_BASED_VM_EXEC_CONTROL, PIN_CAPS.mustBe1 | PIN_EXTINT_EXITING);
    n.cpu.raiseInterrupt(0x41);
    const e = exitOf(enter(n, w, true));
    expect(e.reason).toBe(ExitReason.ExternalInterrupt);
    expect(e.interruption).toBeUndefined();
    expect(n.cpu.interruptPending).toBe(true);
  });
});

describe("EPT: guest-physical references through a SecondLevelTranslator", () => {
  /**
   * A test double for the seam (the real EPT is @vtlab/mmu-ept): guest-physical = host-physical,
   * each translation "reads" 4 EPT entries, GPA page 0x400000 is read-only and `blocked` pages
   * are not present.
   */
  function translator(blocked: number[] = []): SecondLevelTranslator {
    return {
      lastReferences: 4,
      translate(gpa: number, access: number) {
        const page = gpa - (gpa % 4096);
        if (blocked.includes(page)) return { kind: "ept-violation", gpa, qualification: access };
        if (page === 0x40_0000 && (access & EptAccess.Write) !== 0) return { kind: "ept-violation", gpa, qualification: access | 0b101 << 3 };
        return gpa;
      },
    };
  }

  function eptGuest(code: string, blocked: number[] = []): { m: TestMachine; v: Vmcs } {
    const m = machine64(code);
    m.cpu.secondLevel = translator(blocked);
    const v = guestVmcs(m);
    v.vmwrite(F.CPU_BASED_VM_EXEC_CONTROL, (PROC_CAPS.mustBe1 | CPU_ACTIVATE_SECONDARY | CPU_HLT_EXITING) >>> 0);
    v.vmwrite(F.SECONDARY_VM_EXEC_CONTROL, SECONDARY_ENABLE_EPT);
    v.vmwrite(F.EPT_POINTER, 0x5000 | (3 << 3) | 6); // WB, 4-level
    return { m, v };
  }

  it("a write to a read-only GPA is an EPT violation (reason 48): qualification, GPA and linear address", () => {
    // mov eax, 0x400008; mov rbx, [rax]; mov qword [rax], 1; hlt
    const { m, v } = eptGuest("b808004000488b1848c70001000000f4");
    const e = exitOf(enter(m, v, true));
    expect(e.reason).toBe(ExitReason.EptViolation);
    // write (bit 1), readable + executable (bits 3, 5), linear valid (7), final access (8)
    expect(e.qualification).toBe(0x2 | 0x8 | 0x20 | EPT_QUAL_LINEAR_VALID | EPT_QUAL_FINAL);
    expect(v.readNatural(F.GUEST_PHYSICAL_ADDRESS)).toBe(0x40_0008);
    expect(v.readNatural(F.GUEST_LINEAR_ADDRESS)).toBe(0x40_0008);
    expect(v.readNatural(F.GUEST_RIP)).toBe(CODE + 8); // the read went through, the store exits
  });

  it("a violation on a guest paging-structure entry has bit 8 clear and names the entry's GPA", () => {
    // mov eax, 0x400008; mov rbx, [rax]; hlt -- with the guest's PD page (GPA 0x4000) unmapped in EPT
    const { m, v } = eptGuest("b808004000488b18f4", [0x4000]);
    const e = exitOf(enter(m, v, true));
    expect(e.reason).toBe(ExitReason.EptViolation);
    expect(e.qualification & EPT_QUAL_FINAL).toBe(0);
    expect(e.qualification & EPT_QUAL_LINEAR_VALID).toBe(EPT_QUAL_LINEAR_VALID);
    expect(v.readNatural(F.GUEST_PHYSICAL_ADDRESS)).toBe(0x4000); // PD entry 0
  });

  it("counts the second-level references of each walk, accessed-flag updates included", () => {
    const { m, v } = eptGuest("b808004000488b18f4");
    expect(exitOf(enter(m, v, true)).reason).toBe(ExitReason.Hlt);
    // Two cold walks with 2 MiB guest pages (code page, data page), 4 EPT references per
    // translation. First walk: 3 entry reads + the final GPA + 3 accessed-flag writes (guest
    // paging-structure updates go through EPT as writes, SDM 29.3.3.2). Second walk: 3 reads +
    // the final GPA + 1 write (only its PDE lacked A). 12 translations.
    expect(m.cpu.counters.eptReferences).toBe(12 * 4);
    expect(m.cpu.lo[3]).toBe(0);
  });
});

describe("unrestricted guest (SDM 25.6.2): flat 32-bit protected mode with paging off, on EPT", () => {
  /** The PVH entry state: CR0 = PE | NE, CR4 = VMXE, EFER = 0, a 32-bit CS, TR a busy 32-bit TSS. */
  function pagingOffGuest(code: string, blocked: number[] = []): { m: TestMachine; v: Vmcs } {
    const m = machine64(code);
    m.cpu.secondLevel = {
      lastReferences: 4,
      translate(gpa: number, access: number) {
        return blocked.includes(gpa - (gpa % 4096)) ? { kind: "ept-violation", gpa, qualification: access } : gpa;
      },
    };
    const v = guestVmcs(m);
    v.vmwrite(F.CPU_BASED_VM_EXEC_CONTROL, (PROC_CAPS.mustBe1 | CPU_ACTIVATE_SECONDARY | CPU_HLT_EXITING | CPU_USE_MSR_BITMAPS) >>> 0);
    v.vmwrite(F.SECONDARY_VM_EXEC_CONTROL, SECONDARY_ENABLE_EPT | SECONDARY_UNRESTRICTED_GUEST);
    v.vmwrite(F.EPT_POINTER, 0x5000 | (3 << 3) | 6);
    v.vmwrite(F.VM_ENTRY_CONTROLS, ENTRY_CAPS.mustBe1 | ENTRY_LOAD_IA32_EFER);
    v.vmwrite(F.VM_EXIT_CONTROLS, EXIT_CAPS.mustBe1 | EXIT_HOST_ADDR_SPACE_SIZE | EXIT_SAVE_IA32_EFER);
    v.vmwrite(F.GUEST_CR0, CR0_PE | CR0_NE);
    v.vmwrite(F.GUEST_CR4, CR4_VMXE);
    v.vmwrite(F.GUEST_IA32_EFER, 0);
    v.vmwrite(F.GUEST_CS_AR_BYTES, 0xc09b); // 32-bit code, D = 1
    v.vmwrite(F.GUEST_TR_AR_BYTES, 0x8b); // busy 32-bit TSS
    return { m, v };
  }

  it("runs 32-bit code with guest-physical = linear; every reference goes through EPT; a blocked page exits with linear-valid and final bits", () => {
    // mov eax, [0x400008]; mov dword [0x500000], 1; hlt
    const { m, v } = pagingOffGuest("a108004000 c70500005000 01000000 f4".replace(/ /g, ""), [0x50_0000]);
    m.memory.write32(0x40_0008, 0x1234_5678);
    const e = exitOf(enter(m, v, true));
    expect(e.reason).toBe(ExitReason.EptViolation);
    expect(e.qualification & (EPT_QUAL_LINEAR_VALID | EPT_QUAL_FINAL)).toBe(EPT_QUAL_LINEAR_VALID | EPT_QUAL_FINAL);
    expect(v.readNatural(F.GUEST_PHYSICAL_ADDRESS)).toBe(0x50_0000);
    expect(v.readNatural(F.GUEST_LINEAR_ADDRESS)).toBe(0x50_0000);
    expect(m.cpu.lo[0]! >>> 0).toBe(0x1234_5678);
    expect(m.cpu.counters.pageWalks).toBe(0); // no guest page walk: paging is off
    expect(m.cpu.counters.eptReferences).toBeGreaterThan(0);
    expect(v.read32(F.VM_ENTRY_CONTROLS) & ENTRY_IA32E_MODE).toBe(0);
  });

  it("a guest that turns IA-32e mode on itself leaves the IA-32e mode guest entry control set on exit, and resumes in it", () => {
    // mov eax, cr4; or eax, 0x20; mov cr4, eax; mov ecx, 0xc0000080; rdmsr; or eax, 0x100; wrmsr;
    // mov eax, 0x2000; mov cr3, eax; mov eax, cr0; or eax, 0x80000000; mov cr0, eax; hlt; hlt
    const { m, v } = pagingOffGuest("0f20e083c8200f22e0b9800000c00f320d000100000f30b8002000000f22d80f20c00d000000800f22c0f4f4");
    v.setNatural(F.CR0_GUEST_HOST_MASK, 0); // the guest owns CR0: MOV CR0 does not exit
    const e = exitOf(enter(m, v, true));
    expect(e.reason).toBe(ExitReason.Hlt);
    expect(v.read32(F.VM_ENTRY_CONTROLS) & ENTRY_IA32E_MODE).toBe(ENTRY_IA32E_MODE);
    expect(v.read32(F.GUEST_IA32_EFER) & 0x500).toBe(0x500); // LME | LMA
    skip(v, e);
    expect(exitOf(enter(m, v, false)).reason).toBe(ExitReason.Hlt); // VMRESUME passes the IA-32e checks
    expect(m.cpu.counters.pageWalks).toBeGreaterThan(0);
  });

  it("enters real-address mode (GUEST_CR0.PE = 0, PG = 0) under unrestricted guest: selector << 4 segments, an exit saves PE = 0 and the real-mode CS", () => {
    // At 0800:0000 (linear 0x8000): mov $0x1234,%ax; mov %ax,%ds; movw $0x55aa,0x10; movl $0x11,%eax; mov %eax,%cr0; hlt
    const { m, v } = pagingOffGuest("f4");
    m.memory.writeBytes(0x8000, hex("b834128ed8c7061000aa5566b8110000000f22c0f4"));
    v.vmwrite(F.GUEST_CR0, CR0_NE | 0x10);
    v.vmwrite(F.CR0_GUEST_HOST_MASK, CR0_PE);
    v.vmwrite(F.CR0_READ_SHADOW, 0);
    for (const [sel, base, limit, ar] of [
      [F.GUEST_CS_SELECTOR, F.GUEST_CS_BASE, F.GUEST_CS_LIMIT, F.GUEST_CS_AR_BYTES],
      [F.GUEST_DS_SELECTOR, F.GUEST_DS_BASE, F.GUEST_DS_LIMIT, F.GUEST_DS_AR_BYTES],
      [F.GUEST_SS_SELECTOR, F.GUEST_SS_BASE, F.GUEST_SS_LIMIT, F.GUEST_SS_AR_BYTES],
      [F.GUEST_ES_SELECTOR, F.GUEST_ES_BASE, F.GUEST_ES_LIMIT, F.GUEST_ES_AR_BYTES],
    ] as const) {
      const cs = sel === F.GUEST_CS_SELECTOR;
      v.vmwrite(sel, cs ? 0x0800 : 0);
      v.vmwrite(base, cs ? 0x8000 : 0);
      v.vmwrite(limit, 0xffff);
      v.vmwrite(ar, cs ? 0x9b : 0x93);
    }
    v.vmwrite(F.GUEST_RIP, 0);
    v.vmwrite(F.GUEST_RSP, 0x7000);
    const e = exitOf(enter(m, v, true));
    // MOV CR0 setting the host-owned PE exits (SDM 26.1.3), in real mode, after the 16-bit code ran.
    expect(e.reason).toBe(ExitReason.CrAccess);
    expect(m.memory.read16(0x12350)).toBe(0x55aa);
    expect(v.readNatural(F.GUEST_CR0) & CR0_PE).toBe(0);
    expect([v.read32(F.GUEST_CS_SELECTOR), v.readNatural(F.GUEST_CS_BASE), v.read32(F.GUEST_DS_SELECTOR), v.readNatural(F.GUEST_DS_BASE)]).toEqual([0x0800, 0x8000, 0x1234, 0x12340]);
    expect(v.readNatural(F.GUEST_RIP)).toBe(0x11);
    // The hypervisor's part of MOV CR0: PE = 1, RIP past it; the next entry is protected mode with the real-mode CS cached.
    v.vmwrite(F.GUEST_CR0, CR0_NE | CR0_PE | 0x10);
    v.vmwrite(F.CR0_READ_SHADOW, CR0_PE);
    v.vmwrite(F.GUEST_RIP, 0x11 + v.read32(F.VM_EXIT_INSTRUCTION_LEN));
    expect(exitOf(enter(m, v, false)).reason).toBe(ExitReason.Hlt);
    expect(m.cpu.realMode).toBe(false);
    expect(m.cpu.seg[Seg.CS]!.base).toBe(0x8000);
  });

  const refused: [string, (v: Vmcs) => void, "controls" | "guest"][] = [
    ["unrestricted guest without enable EPT", (v) => v.vmwrite(F.SECONDARY_VM_EXEC_CONTROL, SECONDARY_UNRESTRICTED_GUEST), "controls"],
    [
      "CR0.PE = 0 without unrestricted guest (SDM 27.3.1.1, IA32_VMX_CR0_FIXED0)",
      (v) => {
        v.vmwrite(F.GUEST_CR0, CR0_NE);
        v.vmwrite(F.SECONDARY_VM_EXEC_CONTROL, SECONDARY_ENABLE_EPT);
      },
      "guest",
    ],
    [
      "CR0.PE = 0 with an SS whose DPL is not 0 (SDM 27.3.1.2)",
      (v) => {
        v.vmwrite(F.GUEST_CR0, CR0_NE);
        v.vmwrite(F.GUEST_SS_AR_BYTES, 0xf3);
      },
      "guest",
    ],
    ["a type-3 (data) CS with DPL 3 (SDM 27.3.1.2)", (v) => v.vmwrite(F.GUEST_CS_AR_BYTES, 0xf3), "guest"],
    ["the wait-for-SIPI activity state (not modelled)", (v) => v.vmwrite(F.GUEST_ACTIVITY_STATE, 3), "guest"],
    ["CR0.PG = 1 with PE = 0", (v) => v.vmwrite(F.GUEST_CR0, (CR0_PG | CR0_NE) >>> 0), "guest"],
    [
      "PAE paging whose GUEST_PDPTE0 is present with a reserved bit (R/W; SDM 27.3.1.6, under EPT)",
      (v) => {
        v.vmwrite(F.GUEST_CR0, (CR0_PG | CR0_PE | CR0_NE) >>> 0);
        v.vmwrite(F.GUEST_CR4, CR4_VMXE | CR4_PAE);
        v.vmwrite(F.GUEST_PDPTE0, 0x3003);
      },
      "guest",
    ],
    ["CR0.NE = 0", (v) => v.vmwrite(F.GUEST_CR0, CR0_PE), "guest"],
    ["IA-32e mode guest with paging off", (v) => { v.vmwrite(F.VM_ENTRY_CONTROLS, ENTRY_CAPS.mustBe1 | ENTRY_IA32E_MODE); }, "guest"],
    ["GUEST_RIP above 4 GiB outside 64-bit mode", (v) => v.vmwrite(F.GUEST_RIP, 0, 1), "guest"],
  ];
  it("enters 32-bit paging and PAE paging outside IA-32e mode; under EPT the PDPTEs come from GUEST_PDPTE0-3", () => {
    const { m, v } = pagingOffGuest("f4");
    v.vmwrite(F.GUEST_CR0, (CR0_PG | CR0_PE | CR0_NE) >>> 0);
    expect(vmEntry(m.cpu, v, true)).toBeUndefined();
    expect(m.cpu.paePaging()).toBe(false);
    const { m: n, v: w } = pagingOffGuest("f4");
    w.vmwrite(F.GUEST_CR0, (CR0_PG | CR0_PE | CR0_NE) >>> 0);
    w.vmwrite(F.GUEST_CR4, CR4_VMXE | CR4_PAE);
    w.vmwrite(F.GUEST_PDPTE2, 0x7001, 0x1);
    expect(vmEntry(n.cpu, w, true)).toBeUndefined();
    expect(Array.from(n.cpu.pdpte)).toEqual([0, 0, 0, 0, 0x7001, 1, 0, 0]);
  });

  it("a task gate in the 32-bit IDT and an IRET with NT = 1 are task-switch VM exits (reason 9; SDM 26.1.2, Table 28-2)", () => {
    // int $0x40; hlt   (gate 0x40: a task gate for TSS selector 0x30)
    const { m, v } = pagingOffGuest("cd40f4");
    const idt32 = 0x9000;
    m.memory.write32(idt32 + 0x40 * 8, 0x30 << 16);
    m.memory.write32(idt32 + 0x40 * 8 + 4, 0x8500); // P, DPL 0, type 5 (task gate)
    v.vmwrite(F.GUEST_IDTR_BASE, idt32);
    v.vmwrite(F.GUEST_IDTR_LIMIT, 256 * 8 - 1);
    const e = exitOf(enter(m, v, true));
    expect({ reason: e.reason, qualification: e.qualification >>> 0, length: v.read32(F.VM_EXIT_INSTRUCTION_LEN), rip: v.readNatural(F.GUEST_RIP) }).toEqual({
      reason: ExitReason.TaskSwitch,
      qualification: (0x30 | (TASK_SWITCH_SOURCE_IDT << 30)) >>> 0,
      length: 2,
      rip: CODE,
    });
    expect(v.read32(F.IDT_VECTORING_INFO_FIELD) >>> 0).toBe((0x8000_0000 | (4 << 8) | 0x40) >>> 0); // valid, software interrupt, vector 0x40

    // pushf; orl $0x4000, (%esp); popf; iret    (the TSS's back-link is 0x38)
    const r = pagingOffGuest("9c810c24004000009dcf");
    r.m.memory.write16(0x7000, 0x38);
    const x = exitOf(enter(r.m, r.v, true));
    expect({ reason: x.reason, qualification: x.qualification >>> 0, length: r.v.read32(F.VM_EXIT_INSTRUCTION_LEN) }).toEqual({
      reason: ExitReason.TaskSwitch,
      qualification: (0x38 | (TASK_SWITCH_SOURCE_IRET << 30)) >>> 0,
      length: 1,
    });
  });

  for (const [what, spoil, kind] of refused) {
    it(`refuses ${what}`, () => {
      const { m, v } = pagingOffGuest("f4");
      expect(vmEntry(m.cpu, v, true)).toBeUndefined(); // the unspoilt state enters
      const { m: n, v: w } = pagingOffGuest("f4");
      spoil(w);
      const r = vmEntry(n.cpu, w, true);
      if (kind === "controls") expect(r).toMatchObject({ kind: "vmfail-valid", error: VmInstructionError.EntryInvalidControls });
      else expect(r).toMatchObject({ kind: "entry-failure", exit: { reason: (ExitReason.InvalidGuestState | EXIT_REASON_FAILED_VMENTRY) >>> 0 } });
    });
  }
});

describe("control matrix: each exiting control off and on, same code", () => {
  // [name, control field, bit, code (before a VMCALL that always exits), reason when on]
  const rows: [string, "proc" | "proc2" | "exceptionBitmap", number, string, number][] = [
    ["INVLPG exiting", "proc", CPU_INVLPG_EXITING, "0f0138", ExitReason.Invlpg],
    ["RDTSC exiting", "proc", CPU_RDTSC_EXITING, "0f31", ExitReason.Rdtsc],
    ["CR3-load exiting", "proc", CPU_CR3_LOAD_EXITING, "0f20d80f22d8", ExitReason.CrAccess],
    ["CR3-store exiting", "proc", CPU_CR3_STORE_EXITING, "0f20d8", ExitReason.CrAccess],
    ["CR8-load exiting", "proc", CPU_CR8_LOAD_EXITING, "31c0440f22c0", ExitReason.CrAccess],
    ["CR8-store exiting", "proc", CPU_CR8_STORE_EXITING, "440f20c0", ExitReason.CrAccess],
    ["MOV-DR exiting", "proc", CPU_MOV_DR_EXITING, "0f21c0", ExitReason.DrAccess],
    ["unconditional I/O exiting", "proc", CPU_UNCOND_IO_EXITING, "e680", ExitReason.IoInstruction],
    ["PAUSE exiting", "proc", CPU_PAUSE_EXITING, "f390", ExitReason.Pause],
    ["monitor trap flag", "proc", CPU_MONITOR_TRAP_FLAG, "90", ExitReason.MonitorTrapFlag],
    ["interrupt-window exiting", "proc", CPU_INTR_WINDOW_EXITING, "fb90", ExitReason.InterruptWindow],
    ["WBINVD exiting", "proc2", SECONDARY_WBINVD_EXITING, "0f09", ExitReason.Wbinvd],
    ["descriptor-table exiting", "proc2", SECONDARY_DESC_TABLE_EXITING, "0f010424", ExitReason.GdtrIdtrAccess],
    ["exception bitmap, #UD", "exceptionBitmap", 1 << Vector.UD, "0f0b", ExitReason.ExceptionOrNmi],
  ];
  for (const [name, field, bit, code, reason] of rows) {
    it(`${name}: off, the instruction runs; on, exit ${reason}`, () => {
      const run = (on: boolean) => {
        const m = machine64(`${code}0f01c1`);
        const v = guestVmcs(m, { exceptionBitmap: field === "exceptionBitmap" && on ? bit : 0 });
        const proc = (PROC_CAPS.mustBe1 | (field === "proc" && on ? bit : 0) | (field === "proc2" ? CPU_ACTIVATE_SECONDARY : 0)) >>> 0;
        v.vmwrite(F.CPU_BASED_VM_EXEC_CONTROL, proc);
        if (field === "proc2") v.vmwrite(F.SECONDARY_VM_EXEC_CONTROL, on ? bit : 0);
        return enter(m, v, true);
      };
      const off = run(false);
      if (field === "exceptionBitmap") expect(off.kind).toBe("hlt"); // delivered through the guest IDT to its HLT
      else expect(exitOf(off).reason).toBe(ExitReason.Vmcall);
      expect(exitOf(run(true)).reason).toBe(reason);
    });
  }
});

describe("VM-entry failures (SDM Vol. 3C ch. 27)", () => {
  const cases: [string, (v: Vmcs) => void, number][] = [
    ["a required pin-based control bit clear", (v) => v.vmwrite(F.PIN_BASED_VM_EXEC_CONTROL, 0), VmInstructionError.EntryInvalidControls],
    ["an unsupported primary control bit (bit 0)", (v) => v.vmwrite(F.CPU_BASED_VM_EXEC_CONTROL, PROC_CAPS.mustBe1 | 1), VmInstructionError.EntryInvalidControls],
    ["CR3-target count 5", (v) => v.vmwrite(F.CR3_TARGET_COUNT, 5), VmInstructionError.EntryInvalidControls],
    ["an unaligned I/O bitmap with I/O bitmaps on", (v) => { v.vmwrite(F.CPU_BASED_VM_EXEC_CONTROL, PROC_CAPS.mustBe1 | CPU_USE_IO_BITMAPS); v.vmwrite(F.IO_BITMAP_A, 0x1234); }, VmInstructionError.EntryInvalidControls],
    ["a VM-entry MSR-load count above 512", (v) => v.vmwrite(F.VM_ENTRY_MSR_LOAD_COUNT, 513), VmInstructionError.EntryInvalidControls],
    ["an injected NMI with vector 3", (v) => v.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, (INTR_INFO_VALID | (2 << 8) | 3) >>> 0), VmInstructionError.EntryInvalidControls],
    ["HOST_CR0 without PG", (v) => v.vmwrite(F.HOST_CR0, CR0_PE | CR0_NE), VmInstructionError.EntryInvalidHostState],
    ["a null HOST_TR_SELECTOR", (v) => v.vmwrite(F.HOST_TR_SELECTOR, 0), VmInstructionError.EntryInvalidHostState],
    ["a non-canonical HOST_RIP", (v) => v.vmwrite(F.HOST_RIP, 0, 0x8000), VmInstructionError.EntryInvalidHostState],
    ["a 32-bit host (host address-space size 0)", (v) => v.vmwrite(F.VM_EXIT_CONTROLS, EXIT_CAPS.mustBe1), VmInstructionError.EntryInvalidHostState],
  ];
  for (const [what, spoil, error] of cases) {
    it(`VMfailValid(${error}) for ${what}`, () => {
      const m = machine64("f4");
      const v = guestVmcs(m);
      spoil(v);
      expect(vmEntry(m.cpu, v, true)).toMatchObject({ kind: "vmfail-valid", error });
      expect(v.launchState).toBe("clear");
    });
  }

  const guestCases: [string, (v: Vmcs) => void][] = [
    ["GUEST_CR0 without PG", (v) => v.vmwrite(F.GUEST_CR0, CR0_PE | CR0_NE)],
    ["GUEST_CR4 without VMXE", (v) => v.vmwrite(F.GUEST_CR4, CR4_PAE)],
    ["GUEST_RFLAGS bit 1 clear", (v) => v.vmwrite(F.GUEST_RFLAGS, 0)],
    ["a VMCS link pointer that is not all-ones", (v) => v.vmwrite(F.VMCS_LINK_POINTER, 0)],
    ["TR that is not a busy 64-bit TSS", (v) => v.vmwrite(F.GUEST_TR_AR_BYTES, 0x89)],
    ["an unsupported activity state (shutdown)", (v) => v.vmwrite(F.GUEST_ACTIVITY_STATE, 2)],
    ["blocking by STI and by MOV SS together", (v) => v.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, 3)],
    ["a non-canonical GUEST_RIP in a 64-bit CS", (v) => v.vmwrite(F.GUEST_RIP, 0, 0x8000)],
  ];
  for (const [what, spoil] of guestCases) {
    it(`an exit with reason 33 | bit 31 for ${what}`, () => {
      const m = machine64("f4");
      const v = guestVmcs(m);
      spoil(v);
      const r = vmEntry(m.cpu, v, true);
      expect(r).toMatchObject({ kind: "entry-failure", exit: { reason: (ExitReason.InvalidGuestState | EXIT_REASON_FAILED_VMENTRY) >>> 0 } });
    });
  }

  it("the VM-entry MSR-load area loads guest MSRs; a bad entry is exit 34 with its 1-based number", () => {
    const area = 0xa_3000;
    const entry = (m: TestMachine, k: number, index: number, lo: number, hi: number, reserved = 0) => {
      m.memory.write32(area + k * 16, index);
      m.memory.write32(area + k * 16 + 4, reserved);
      m.memory.write64(area + k * 16 + 8, lo, hi);
    };
    const m = machine64("f4");
    const v = guestVmcs(m);
    entry(m, 0, 0xc000_0082, 0x8000_1000, 0xffff_ffff); // IA32_LSTAR
    entry(m, 1, 0xc000_0100, 0x1234_0000, 0); // IA32_FS_BASE
    v.vmwrite(F.VM_ENTRY_MSR_LOAD_ADDR, area);
    v.vmwrite(F.VM_ENTRY_MSR_LOAD_COUNT, 2);
    expect(vmEntry(m.cpu, v, true)).toBeUndefined();
    expect(m.cpu.lstar).toBe(-0x7fff_f000);
    expect(m.cpu.seg[4]!.base).toBe(0x1234_0000);

    for (const [what, spoil] of [
      ["an unknown MSR", (n: TestMachine) => entry(n, 1, 0x1234, 0, 0)],
      ["a reserved field set", (n: TestMachine) => entry(n, 1, 0xc000_0100, 0, 0, 1)],
      ["an x2APIC MSR", (n: TestMachine) => entry(n, 1, 0x808, 0, 0)],
      ["a non-canonical FS base", (n: TestMachine) => entry(n, 1, 0xc000_0100, 0, 0x8000)],
    ] as const) {
      const n = machine64("f4");
      const w = guestVmcs(n);
      entry(n, 0, 0xc000_0082, 0x1000, 0);
      spoil(n);
      w.vmwrite(F.VM_ENTRY_MSR_LOAD_ADDR, area);
      w.vmwrite(F.VM_ENTRY_MSR_LOAD_COUNT, 2);
      expect(vmEntry(n.cpu, w, true), what).toMatchObject({ kind: "entry-failure", exit: { reason: (ExitReason.MsrLoading | EXIT_REASON_FAILED_VMENTRY) >>> 0, qualification: 2 } });
    }
  });

  it("VMLAUNCH needs a clear VMCS (error 4) and VMRESUME a launched one (error 5)", () => {
    const m = machine64("0f01c1");
    const v = guestVmcs(m);
    expect(vmEntry(m.cpu, v, false)).toMatchObject({ error: VmInstructionError.VmresumeNonLaunched });
    expect(exitOf(enter(m, v, true)).reason).toBe(ExitReason.Vmcall);
    expect(vmEntry(m.cpu, v, true)).toMatchObject({ error: VmInstructionError.VmlaunchNonClear });
  });
});

void hex;
