/**
 * VMX non-root glue (see vmx/nonroot.ts for the VM-entry checks and the guest-state transfer):
 * entering non-root operation with a VMCS's controls, recording a VM exit (unwinding, or
 * deferred for an exit checked before any effect), the exception bitmap, the exits taken
 * between instructions in the SDM's priority order (monitor trap flag, VMX-preemption timer,
 * external interrupt, NMI and interrupt windows), and finishing an exit (guest state saved, the
 * TLB set switched back). From cpu.ts this module imports only types.
 */
import { Vector } from "@vtlab/arch";
import type { Cpu, RunResult } from "../cpu.js";
import { CPU_INTR_WINDOW_EXITING, CPU_MONITOR_TRAP_FLAG, CPU_NMI_WINDOW_EXITING, EXIT_ACK_INTR_ON_EXIT, EXIT_SAVE_PREEMPTION_TIMER, PIN_EXTINT_EXITING, PIN_PREEMPTION_TIMER, SECONDARY_ENABLE_EPT, SECONDARY_ENABLE_VPID } from "../vmx/controls.js";
import { ExitReason } from "../vmx/exit-reasons.js";
import type { VmExit } from "../vmx/interfaces.js";
import { saveOnExit } from "../vmx/nonroot.js";
import { VmcsField } from "../vmx/vmcs-fields.js";
import { vmcsEagerSlot, type Vmcs } from "../vmx/vmcs.js";
import { ABORT } from "./events.js";

// The slots (vmcsSlot) of the fields entering non-root operation reads, looked up once.
const S_CR0_GUEST_HOST_MASK = vmcsEagerSlot(VmcsField.CR0_GUEST_HOST_MASK);
const S_CR0_READ_SHADOW = vmcsEagerSlot(VmcsField.CR0_READ_SHADOW);
const S_CR4_GUEST_HOST_MASK = vmcsEagerSlot(VmcsField.CR4_GUEST_HOST_MASK);
const S_CR4_READ_SHADOW = vmcsEagerSlot(VmcsField.CR4_READ_SHADOW);
const S_EXCEPTION_BITMAP = vmcsEagerSlot(VmcsField.EXCEPTION_BITMAP);
const S_PAGE_FAULT_ERROR_CODE_MASK = vmcsEagerSlot(VmcsField.PAGE_FAULT_ERROR_CODE_MASK);
const S_PAGE_FAULT_ERROR_CODE_MATCH = vmcsEagerSlot(VmcsField.PAGE_FAULT_ERROR_CODE_MATCH);
const S_VIRTUAL_PROCESSOR_ID = vmcsEagerSlot(VmcsField.VIRTUAL_PROCESSOR_ID);
const S_VMX_PREEMPTION_TIMER_VALUE = vmcsEagerSlot(VmcsField.VMX_PREEMPTION_TIMER_VALUE);
const S_VM_EXIT_CONTROLS = vmcsEagerSlot(VmcsField.VM_EXIT_CONTROLS);

/** Enter VMX non-root operation with `vmcs` current (called by vmEntry after its checks). */
export function enterNonRoot(cpu: Cpu, vmcs: Vmcs, pin: number, proc: number, proc2: number): void {
  cpu.vmcs = vmcs;
  cpu.vmxPin = pin;
  cpu.vmxProc = proc;
  cpu.vmxProc2 = proc2;
  cpu.vmxExceptionBitmap = vmcs.eagerLow(S_EXCEPTION_BITMAP);
  cpu.vmxPfecMask = vmcs.eagerLow(S_PAGE_FAULT_ERROR_CODE_MASK);
  cpu.vmxPfecMatch = vmcs.eagerLow(S_PAGE_FAULT_ERROR_CODE_MATCH);
  cpu.vmxCr0Mask = vmcs.eagerLow(S_CR0_GUEST_HOST_MASK);
  cpu.vmxCr0Shadow = vmcs.eagerLow(S_CR0_READ_SHADOW);
  cpu.vmxCr4Mask = vmcs.eagerLow(S_CR4_GUEST_HOST_MASK);
  cpu.vmxCr4Shadow = vmcs.eagerLow(S_CR4_READ_SHADOW);
  cpu.vmxExit = vmcs.eagerLow(S_VM_EXIT_CONTROLS);
  cpu.eptActive = (proc2 & SECONDARY_ENABLE_EPT) !== 0;
  // With VPIDs on, the guest's translations live in their own tagged set and survive exits;
  // without them, VM entry and exit flush (SDM 29.4.3.1).
  if ((proc2 & SECONDARY_ENABLE_VPID) !== 0) cpu.selectTlb(vmcs.eagerLow(S_VIRTUAL_PROCESSOR_ID));
  else cpu.flushTlb(false);
  if (cpu.eptActive && cpu.secondLevel === undefined) {
    throw new Error("vtlab bug: VM entry with enable EPT but no SecondLevelTranslator attached to the vCPU");
  }
  cpu.vmxEntryRetired = cpu.retired;
  cpu.vmxTimer = vmcs.eagerLow(S_VMX_PREEMPTION_TIMER_VALUE);
  // The preemption timer counts retired instructions from here; the run loop stops at its end
  // like at the end of a budget (no per-instruction check), and exits there.
  cpu.vmxTimerEnd = (pin & PIN_PREEMPTION_TIMER) !== 0 ? cpu.retired + cpu.vmxTimer : Number.POSITIVE_INFINITY;
  // Boundary events the run loop must look at before every instruction (SDM 26.2, 26.5).
  // External-interrupt exiting is not among them: it only matters while an interrupt is
  // pending, and raising one already makes the loop attentive (see the check in run()).
  cpu.vmxWatch = (proc & (CPU_INTR_WINDOW_EXITING | CPU_NMI_WINDOW_EXITING | CPU_MONITOR_TRAP_FLAG)) !== 0;
  if (cpu.vmxWatch || cpu.pendingIrqs.length > 0) cpu.attention = 1;
  // Compiled blocks stay on: they hold only straight-line handlers, which no exiting control
  // affects, and exceptions leave a block through the same path that applies the bitmap.
}

/**
 * An instruction causes a VM exit: record it and unwind. RIP stays at the instruction (the
 * run loop restores it), and the exit carries the instruction's length.
 */
export function vmExit(cpu: Cpu, reason: number, qualification: number, instructionLength: number, extra?: Partial<VmExit>): never {
  // Without extra fields, a literal of fixed shape (the spread of `undefined` is a slow path).
  cpu.pendingExit = extra === undefined ? { reason, qualification, instructionLength } : { reason, qualification, instructionLength, ...extra };
  throw ABORT;
}

/**
 * An instruction causes a VM exit, without unwinding (the exit path's fast form of `vmExit`,
 * for a handler whose exit check comes before any effect of the instruction, as CPUID's does):
 * the exit is recorded, the handler returns at once, and the retirement its caller counts after
 * it (the run loop, a compiled block's last instruction, executeOp) is undone here. The run
 * loop takes the exit at the next boundary, before anything else (it raises `attention`), so
 * the exit, RIP, the registers and the retired count are those `vmExit` gives, without a throw.
 */
export function deferExit(cpu: Cpu, reason: number, qualification: number, instructionLength: number): void {
  cpu.pendingExit = { reason, qualification, instructionLength };
  cpu.retired--;
  cpu.deferredAttention = cpu.attention;
  cpu.attention = 1;
}

/**
 * Whether exception `vector` (error code `errorCode`) causes a VM exit in non-root operation:
 * the exception bitmap, and for #PF the error-code mask/match rule (SDM 25.2).
 */
export function exceptionExits(cpu: Cpu, vector: number, errorCode: number): boolean {
  const bit = (cpu.vmxExceptionBitmap >>> vector) & 1;
  if (vector !== Vector.PF) return bit !== 0;
  // Bit 14 set: exit when PFEC & MASK == MATCH; clear: exit when they differ.
  const matches = ((errorCode & cpu.vmxPfecMask) >>> 0) === cpu.vmxPfecMatch >>> 0;
  return bit !== 0 ? matches : !matches;
}

/** Finish a VM exit: RIP back at the exiting instruction, guest state saved, exit returned. */
export function takeExit(cpu: Cpu, start: number): RunResult {
  const exit = cpu.pendingExit as VmExit;
  cpu.pendingExit = undefined;
  cpu.pendingVector = -1;
  cpu.rip = cpu.insnStart;
  cpu.counters.vmExits++;
  // The processor saves guest state and the exit information into the VMCS and leaves
  // non-root operation (SDM 28.3); general-purpose registers stay here, as on hardware.
  if (cpu.vmcs !== undefined) {
    cpu.vmcsForResume = cpu.vmcs;
    saveOnExit(cpu, cpu.vmcs, exit);
    cpu.shadowInsn = 0; // reported; the next entry's interruptibility state decides afresh
    if ((cpu.vmxExit & EXIT_SAVE_PREEMPTION_TIMER) !== 0) {
      const left = cpu.vmxTimerExpired ? 0 : Math.max(0, Math.floor(Math.min(cpu.vmxTimer, cpu.vmxTimerEnd - cpu.retired)));
      cpu.vmcs.eagerPut(S_VMX_PREEMPTION_TIMER_VALUE, left, 0);
    }
    cpu.vmxTimerExpired = false;
  }
  cpu.vmxWatch = false;
  cpu.vmxTimerEnd = Number.POSITIVE_INFINITY;
  cpu.eptActive = false;
  if (cpu.vpid !== 0) cpu.selectTlb(0);
  else cpu.flushTlb(false); // without VPID, VM exits flush linear and combined mappings (SDM 29.4.3.1)
  cpu.vmcs = undefined;
  return { kind: "vmexit", retired: cpu.retired - start, exit };
}

/**
 * VM exits that happen between instructions, in the SDM's priority order (6.9, 26.2, 26.5):
 * the monitor trap flag after an instruction, the VMX-preemption timer, an external interrupt
 * (with external-interrupt exiting), the interrupt window. Records the exit and returns true.
 */
export function boundaryExit(cpu: Cpu, shadow: boolean): boolean {
  const pin = cpu.vmxPin;
  const proc = cpu.vmxProc;
  const executed = cpu.retired - cpu.vmxEntryRetired;
  if ((proc & CPU_MONITOR_TRAP_FLAG) !== 0 && executed > 0) {
    cpu.pendingExit = { reason: ExitReason.MonitorTrapFlag, qualification: 0, instructionLength: 0 };
    return true;
  }
  if ((pin & PIN_PREEMPTION_TIMER) !== 0 && cpu.retired >= cpu.vmxTimerEnd) return timerExit(cpu);
  if ((pin & PIN_EXTINT_EXITING) !== 0 && cpu.pendingIrqs.length > 0) {
    // With "acknowledge interrupt on exit" the vector is taken from the controller and
    // reported; without it, the interrupt stays pending (SDM 28.2.2).
    const ack = (cpu.vmxExit & EXIT_ACK_INTR_ON_EXIT) !== 0;
    const vector = ack ? (cpu.pendingIrqs.shift() as number) : -1;
    cpu.pendingExit = { reason: ExitReason.ExternalInterrupt, qualification: 0, instructionLength: 0, ...(ack ? { interruption: { vector, type: 0 } } : {}) };
    cpu.haltedState = false;
    return true;
  }
  if ((proc & CPU_NMI_WINDOW_EXITING) !== 0 && !cpu.nmiBlocked) {
    cpu.pendingExit = { reason: ExitReason.NmiWindow, qualification: 0, instructionLength: 0 };
    return true;
  }
  if ((proc & CPU_INTR_WINDOW_EXITING) !== 0 && (cpu.flagsOther & 0x200) !== 0 && !shadow) {
    cpu.pendingExit = { reason: ExitReason.InterruptWindow, qualification: 0, instructionLength: 0 };
    return true;
  }
  return false;
}

/**
 * One event delivered by the run loop: it counts as a step for the host (eventsDelivered) and
 * as one tick of the VMX-preemption timer. Modelled more simply than hardware, where the timer
 * counts TSC time whatever the processor spends it on (SDM Vol. 3C 26.5.1): here it counts
 * retired instructions (one tick each) and event deliveries (eventWeight ticks each).
 */
export function eventStep(cpu: Cpu): void {
  cpu.eventsDelivered++;
  if (cpu.vmxTimerEnd !== Number.POSITIVE_INFINITY) cpu.vmxTimerEnd -= cpu.eventWeight;
}

/**
 * The VMX-preemption timer expired (reason 52, SDM 26.5.1): an exit between instructions,
 * below the monitor trap flag in priority and above external interrupts and the interrupt
 * window. Returns false if a monitor-trap-flag exit comes first (boundaryExit takes it).
 */
export function timerExit(cpu: Cpu): boolean {
  cpu.insnStart = cpu.rip;
  if ((cpu.vmxProc & CPU_MONITOR_TRAP_FLAG) !== 0 && cpu.retired > cpu.vmxEntryRetired) return boundaryExit(cpu, cpu.shadowState);
  cpu.pendingExit = { reason: ExitReason.PreemptionTimer, qualification: 0, instructionLength: 0 };
  cpu.vmxTimerExpired = true;
  return true;
}

/** An exception that the exception bitmap turns into a VM exit (reason 0, SDM 28.2.2). */
export function exceptionExit(cpu: Cpu, start: number): RunResult {
  const vector = cpu.pendingVector;
  const errorCode = cpu.pendingErrorCode;
  const trap = cpu.pendingIsTrap;
  const privileged = cpu.pendingIsPrivileged;
  cpu.pendingIsPrivileged = false;
  // In real-address mode no exception pushes an error code, so none is reported (SDM 28.2.2).
  const hasError = errorCode >= 0 && !cpu.realMode;
  // A software exception (INT3, INTO) or ICEBP exits with RIP at the instruction and its length.
  const length = trap ? cpu.rip - cpu.insnStart : 0;
  // A #DB exit's qualification holds the DR6 conditions (B3-B0, BD, BS: SDM Table 28-1); ICEBP has none.
  const dbQualification = privileged ? 0 : cpu.dr[6]! & 0x600f;
  cpu.pendingExit = {
    reason: ExitReason.ExceptionOrNmi,
    qualification: vector === Vector.PF ? cpu.faultLinear : vector === Vector.DB ? dbQualification : 0,
    instructionLength: length,
    interruption: { vector, type: trap ? (privileged ? 5 : 6) : 3, ...(hasError ? { errorCode } : {}) },
  };
  return takeExit(cpu, start);
}

export function tripleFault(cpu: Cpu, vector: number, start: number): RunResult {
  if (cpu.vmcs !== undefined) {
    // In VMX non-root operation a triple fault is a VM exit (reason 2), not a shutdown.
    cpu.pendingExit = { reason: ExitReason.TripleFault, qualification: 0, instructionLength: 0 };
    return takeExit(cpu, start);
  }
  cpu.halted = true;
  return { kind: "triple-fault", retired: cpu.retired - start, vector, rip: cpu.rip };
}
