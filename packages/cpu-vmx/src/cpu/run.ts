/**
 * The run loop: instructions from the decoded-code cache (or a compiled block and the blocks it
 * chains to) until the budget, the VMX-preemption timer's end, a VM exit, HLT, a stop request
 * or a triple fault; events between instructions in priority order (a deferred exit, a stop,
 * boundary VM exits, NMI, external interrupts, the single-step trap); a fault recorded by a
 * handler is delivered (or exits) here. `executeOp` is the same for one native-guest operation.
 * From cpu.ts this module imports only types.
 */
import { Vector } from "@vtlab/arch";
import type { Cpu, OpResult, RunResult } from "../cpu.js";
import type { Insn } from "../decode/insn.js";
import { RFLAGS_TF } from "../regs.js";
import { PIN_EXTINT_EXITING, PIN_NMI_EXITING } from "../vmx/controls.js";
import { ExitReason } from "../vmx/exit-reasons.js";
import { buildBlock } from "./code-cache.js";
import { ABORT } from "./events.js";
import { boundaryExit, eventStep, exceptionExit, takeExit, timerExit, tripleFault } from "./vmexit.js";

/** DR6.BS (bit 14): the #DB was a single step. */
export const DR6_BS = 1 << 14;

/**
 * Execute up to `budget` steps: a retired instruction or a delivered event is one step each,
 * so a guest stuck in an exception loop (a handler that faults on its first fetch) still
 * returns.
 */
export function run(cpu: Cpu, budget: number): RunResult {
  const start = cpu.retired;
  if (cpu.pendingExit !== undefined) return takeExit(cpu, start); // an exit during VM entry (event injection)
  let events = 0;
  for (;;) {
    try {
      // One bound for the loop: the budget (less the events delivered, which count against it)
      // or the VMX-preemption timer's end, whichever comes first; recomputed when events change.
      let stop = Math.min(start + budget - events, cpu.vmxTimerEnd);
      cpu.repStop = stop;
      while (cpu.retired < stop) {
        let stepping = false;
        if (cpu.attention !== 0) {
          // The rare cases, in priority order: an exit the last instruction deferred (deferExit),
          // a stop request, an interrupt, HLT, a shadow.
          if (cpu.pendingExit !== undefined) {
            cpu.attention = cpu.deferredAttention;
            return takeExit(cpu, start);
          }
          cpu.shadowInsn = 0;
          if (cpu.stopRequest !== undefined) {
            const s = cpu.stopRequest;
            cpu.stopRequest = undefined;
            cpu.attention = 1;
            return { kind: "stop", retired: cpu.retired - start, reason: s.reason, code: s.code };
          }
          const shadow = cpu.shadowState;
          if ((cpu.vmxWatch || (cpu.pendingIrqs.length > 0 && (cpu.vmxPin & PIN_EXTINT_EXITING) !== 0)) && cpu.vmcs !== undefined && boundaryExit(cpu, shadow)) {
            cpu.insnStart = cpu.rip;
            return takeExit(cpu, start);
          }
          if (cpu.nmiPending && !cpu.nmiBlocked) {
            cpu.nmiPending = false;
            cpu.haltedState = false;
            cpu.insnStart = cpu.rip;
            events += cpu.eventWeight;
            eventStep(cpu);
            stop = Math.min(start + budget - events, cpu.vmxTimerEnd);
            cpu.repStop = stop;
            if (cpu.vmcs !== undefined && (cpu.vmxPin & PIN_NMI_EXITING) !== 0) {
              // NMI exiting: the NMI becomes an exit (reason 0, type 2) and is not delivered (SDM 26.2).
              cpu.pendingExit = { reason: ExitReason.ExceptionOrNmi, qualification: 0, instructionLength: 0, interruption: { vector: Vector.NMI, type: 2 } };
              return takeExit(cpu, start);
            }
            cpu.nmiBlocked = true;
            if (!cpu.deliverEvent(Vector.NMI, -1, false, false)) return tripleFault(cpu, Vector.NMI, start);
            if (cpu.pendingExit !== undefined) return takeExit(cpu, start);
            continue;
          }
          if (cpu.pendingIrqs.length > 0 && (cpu.flagsOther & 0x200) !== 0 && !shadow) {
            const v = cpu.pendingIrqs.shift() as number;
            cpu.haltedState = false;
            cpu.insnStart = cpu.rip;
            events += cpu.eventWeight;
            eventStep(cpu);
            stop = Math.min(start + budget - events, cpu.vmxTimerEnd);
            cpu.repStop = stop;
            if (!cpu.deliverEvent(v, -1, false, true)) return tripleFault(cpu, v, start);
            if (cpu.pendingExit !== undefined) return takeExit(cpu, start);
            continue;
          }
          if (cpu.haltedState) return { kind: "hlt", retired: cpu.retired - start };
          // Blocking by MOV SS holds the single-step trap of the MOV SS / POP SS over the next
          // instruction (SDM Vol. 3A 6.8.3): it is taken after that one, whatever its TF.
          const heldStep = cpu.stepPending && cpu.movSsBlocking && shadow;
          if (cpu.stepPending && !heldStep) {
            // Single-step trap after an instruction that began with RFLAGS.TF = 1 (SDM Vol. 3B
            // 17.3.1.4): #DB with DR6.BS, RIP already at the next instruction.
            cpu.stepPending = false;
            cpu.dr[6] = cpu.dr[6]! | DR6_BS;
            cpu.insnStart = cpu.rip;
            events += cpu.eventWeight;
            eventStep(cpu);
            stop = Math.min(start + budget - events, cpu.vmxTimerEnd);
            cpu.repStop = stop;
            if (!cpu.deliverEvent(Vector.DB, -1, false, false)) return tripleFault(cpu, Vector.DB, start);
            if (cpu.pendingExit !== undefined) return takeExit(cpu, start);
            continue;
          }
          cpu.shadowInsn = shadow ? (cpu.movSsBlocking ? 2 : 1) : 0;
          cpu.shadowState = false;
          cpu.movSsBlocking = false;
          stepping = (cpu.flagsOther & RFLAGS_TF) !== 0 || heldStep;
          cpu.stepPending = stepping;
          // Stay attentive for one more instruction after a shadow (the interrupt it held off)
          // or a single step.
          cpu.attention = shadow || stepping || cpu.vmxWatch || cpu.nmiPending || cpu.pendingIrqs.length > 0 ? 1 : 0;
        }
        const rip = cpu.rip;
        cpu.insnStart = rip; // a fault while fetching restarts here
        const off = rip & 0xfff;
        let insn: Insn | undefined;
        if (rip - off === cpu.fetchBase && cpu.fetchGen === cpu.tlbGeneration && cpu.cpl === cpu.fetchCpl) {
          insn = cpu.fetchPage![off];
        }
        if (insn === undefined) insn = cpu.fetchDecoded();
        let block = insn.block;
        if (block === undefined && ++insn.hits === cpu.blockThreshold && cpu.mode64 && cpu.compileBlocks) {
          buildBlock(cpu, insn, rip);
          block = insn.block;
        }
        if (block !== undefined && !stepping && !cpu.vmxWatch && stop - cpu.retired >= insn.blockLen) {
          // A compiled block may hand over to its successor (src/jit/: same page, nothing pending).
          let next = block(cpu, rip);
          while (next !== undefined) next = next(cpu, cpu.rip);
          continue;
        }
        cpu.rip = cpu.mode64 ? rip + insn.len : (rip + insn.len) >>> 0;
        insn.exec(cpu, insn);
        cpu.retired++;
      }
      // The bound reached: the preemption timer's (an exit, SDM 26.5.1) or the budget's.
      if (cpu.retired >= cpu.vmxTimerEnd && cpu.vmcs !== undefined && timerExit(cpu)) return takeExit(cpu, start);
      return { kind: "budget", retired: cpu.retired - start };
    } catch (e) {
      if (e !== ABORT) throw e;
      if (cpu.pendingExit !== undefined) return takeExit(cpu, start);
      const vector = cpu.pendingVector;
      if (!cpu.pendingIsTrap) cpu.stepPending = false; // a faulting instruction does not single-step
      if (cpu.vmcs !== undefined && vector >= 0 && vector < 32 && cpu.exceptionExits(vector, cpu.pendingErrorCode)) {
        return exceptionExit(cpu, start);
      }
      if (cpu.pendingIsTrap) cpu.retired++; // INT n / INT3 retire
      else {
        events += cpu.eventWeight;
        eventStep(cpu);
      }
      if (!cpu.deliverPending()) return tripleFault(cpu, vector, start);
      if (cpu.pendingExit !== undefined) return takeExit(cpu, start);
    }
  }
}

/**
 * Direct execution for native guests (see guest-ops.ts): run `op` as one instruction of
 * `length` bytes at RIP, with the same fault and VM-exit handling as the run loop. A fault
 * that does not exit is returned as a value (native guests have no IDT); RIP stays at the
 * "instruction" unless an exit handler moved it.
 */
export function executeOp<T>(cpu: Cpu, length: number, op: () => T): OpResult<T> {
  const rip = cpu.rip;
  cpu.insnStart = rip;
  cpu.rip = rip + length;
  try {
    const value = op();
    cpu.retired++;
    cpu.rip = rip;
    if (cpu.pendingExit !== undefined) {
      // The op's instruction exited through deferExit (its retirement already undone).
      cpu.attention = cpu.deferredAttention;
      return takeExit(cpu, cpu.retired) as OpResult<T>;
    }
    return { kind: "done", value };
  } catch (e) {
    if (e !== ABORT) throw e;
    const start = cpu.retired;
    if (cpu.pendingExit !== undefined) return takeExit(cpu, start) as OpResult<T>;
    const vector = cpu.pendingVector;
    const errorCode = cpu.pendingErrorCode;
    if (cpu.vmcs !== undefined && vector >= 0 && vector < 32 && cpu.exceptionExits(vector, errorCode)) {
      return exceptionExit(cpu, start) as OpResult<T>;
    }
    cpu.pendingVector = -1;
    cpu.rip = rip;
    cpu.counters.exceptions++;
    if (vector === Vector.PF) cpu.cr2 = cpu.faultLinear;
    return { kind: "exception", vector, errorCode, cr2: cpu.cr2 };
  }
}
