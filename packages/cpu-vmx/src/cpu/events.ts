/**
 * Exceptions and interrupts: delivering an event through the 64-bit IDT (SDM Vol. 3A 6.14), the
 * 32-bit IDT outside IA-32e mode (6.10-6.12, interrupt, trap and task gates, privilege changes
 * through the TSS) and the real-mode interrupt vector table (20.1.4); double- and triple-fault
 * rules (Table 6-5); IDT-vectoring information when a VM exit interrupts a delivery; event
 * injection at VM entry. A handler records a fault on the `Cpu` and unwinds with `ABORT`; the
 * run loop (run.ts) delivers it through `deliverPending`. From cpu.ts this module imports only
 * types.
 */
import { Access, Vector, isDoubleFault } from "@vtlab/arch";
import type { Cpu, SegmentCache } from "../cpu.js";
import { EFER_LMA, RFLAGS_AC, RFLAGS_IF, RFLAGS_TF, SEG_ATTR_DB, SEG_ATTR_L, Seg } from "../regs.js";
import { ExitReason } from "../vmx/exit-reasons.js";
import { TWO_32, TWO_47, toSigned64, wrap64 } from "./int64.js";
import { loadDescriptorExt, markAccessed } from "./segments.js";

/** Task-switch exit qualification, bits 31:30 (SDM Table 28-2): the switch came from IRET. */
export const TASK_SWITCH_SOURCE_IRET = 1;
/** Task-switch exit qualification, bits 31:30: the switch came through a task gate in the IDT. */
export const TASK_SWITCH_SOURCE_IDT = 3;

/** The token that unwinds an instruction after a fault was recorded. Never escapes `run`. */
export const ABORT: { readonly abort: true } = Object.freeze({ abort: true });

/** Deliver the recorded exception; returns false on a triple fault. */
export function deliverPending(cpu: Cpu): boolean {
  const vector = cpu.pendingVector;
  const errorCode = cpu.pendingErrorCode;
  const software = cpu.pendingIsSoftware;
  const privileged = cpu.pendingIsPrivileged;
  cpu.pendingVector = -1;
  cpu.pendingIsPrivileged = false;
  if (!cpu.pendingIsTrap) cpu.rip = cpu.insnStart;
  cpu.counters.exceptions++;
  if (vector === Vector.PF) cpu.cr2 = cpu.faultLinear; // CR2 is written only when the #PF is delivered
  cpu.deliveringSoftwareException = cpu.pendingIsTrap && !software && !privileged; // INT3, INTO
  cpu.deliveringPrivileged = privileged; // ICEBP
  const ok = cpu.deliverEvent(vector, errorCode, software, false);
  cpu.deliveringSoftwareException = false;
  cpu.deliveringPrivileged = false;
  return ok;
}

/** Inject an event at VM entry (SDM 27.6): delivered through the guest IDT as if it occurred now. */
export function injectEvent(cpu: Cpu, vector: number, errorCode: number, softwareInterrupt: boolean, external: boolean, softwareException: 0 | 5 | 6 = 0, instructionLength = 0): void {
  // RIP is already past a software event's instruction (VM-entry instruction length); an exit
  // during its delivery reports that length and saves RIP at the instruction (SDM 28.2.4).
  cpu.insnStart = cpu.rip - instructionLength;
  cpu.deliveringPrivileged = softwareException === 5;
  cpu.deliveringSoftwareException = softwareException === 6;
  const ok = cpu.deliverEvent(vector, errorCode, softwareInterrupt, external);
  cpu.deliveringPrivileged = false;
  cpu.deliveringSoftwareException = false;
  if (!ok) cpu.pendingExit = { reason: ExitReason.TripleFault, qualification: 0, instructionLength: 0 };
}

/**
 * Deliver an event through the IDT (SDM Vol. 3A, 6.14 for IA-32e mode). A fault while
 * delivering becomes #DF per SDM Table 6-5; a fault while delivering #DF is a triple fault.
 */
export function deliverEvent(cpu: Cpu, vector: number, errorCode: number, software: boolean, external: boolean): boolean {
  const outer = cpu.delivering;
  if (outer === Vector.DF) return false; // fault while delivering #DF: triple fault
  let v = vector;
  let ec = errorCode;
  if (outer >= 0 && isDoubleFault(outer, vector)) {
    v = Vector.DF;
    ec = 0;
  }
  if (cpu.realMode) ec = -1; // real-address mode pushes no error codes (SDM 20.1.4)
  cpu.delivering = v;
  try {
    deliverThroughIdt(cpu, v, ec, software, external);
    cpu.delivering = -1;
    cpu.halted = false;
    return true;
  } catch (e) {
    if (e !== ABORT) throw e;
    const nested = cpu.pendingVector;
    const nestedEc = cpu.pendingErrorCode;
    cpu.pendingVector = -1;
    // In VMX non-root operation, a VM exit that interrupts this delivery (an EPT violation on
    // the IDT or the stack, or a nested exception in the exception bitmap) reports the event
    // being delivered as IDT-vectoring information, and wins over #DF (SDM 28.2.3, 26.2).
    if (cpu.vmcs !== undefined && (cpu.pendingExit !== undefined || (nested >= 0 && cpu.exceptionExits(nested, nestedEc)))) {
      const type = external ? 0 : software ? 4 : cpu.deliveringPrivileged ? 5 : cpu.deliveringSoftwareException ? 6 : v === Vector.NMI ? 2 : 3;
      const idtVectoring = { vector: v, type, ...(ec >= 0 ? { errorCode: ec } : {}) };
      // For a software interrupt or (privileged) software exception the exit records the instruction's length.
      const instructionLength = type >= 4 ? cpu.rip - cpu.insnStart : 0;
      cpu.pendingExit =
        cpu.pendingExit !== undefined
          ? { ...cpu.pendingExit, idtVectoring, instructionLength }
          : {
              reason: ExitReason.ExceptionOrNmi,
              qualification: nested === Vector.PF ? cpu.faultLinear : 0,
              instructionLength,
              interruption: { vector: nested, type: 3, ...(nestedEc >= 0 && !cpu.realMode ? { errorCode: nestedEc } : {}) },
              idtVectoring,
            };
      cpu.delivering = -1;
      return true;
    }
    if (v === Vector.DF) {
      cpu.delivering = -1;
      return false;
    }
    // A fault while delivering INT n, INT3 or INTO is a fault of that instruction: its frame's
    // return address is the instruction itself, not the next one (SDM Vol. 3A 6.12.1.1 and the
    // INT n pseudo-code; insnStart is RIP for events between instructions, so this changes
    // nothing for them).
    cpu.rip = cpu.insnStart;
    cpu.deliveringSoftwareException = false;
    cpu.deliveringPrivileged = false;
    if (nested === Vector.PF) cpu.cr2 = cpu.faultLinear; // a #PF delivered from here writes CR2 too
    // Contributory-after-contributory or #PF-after-#PF become #DF; benign pairs deliver the second.
    const ok = cpu.deliverEvent(nested, nestedEc, false, false);
    cpu.delivering = -1;
    return ok;
  }
}

function deliverThroughIdt(cpu: Cpu, vector: number, errorCode: number, software: boolean, external: boolean): void {
  if (cpu.realMode) {
    deliverReal(cpu, vector, external);
    return;
  }
  if ((cpu.efer & EFER_LMA) === 0) {
    deliverThroughIdt32(cpu, vector, errorCode, software, external);
    return;
  }
  const extBit = external ? 1 : 0;
  const gateOffset = vector * 16;
  if (gateOffset + 15 > cpu.idtrLimit) cpu.fault(Vector.GP, vector * 8 + 2 + extBit);
  const gate = cpu.idtrBase + gateOffset;
  const w0 = cpu.readAccess(gate, 4, Access.Read | Access.Implicit) >>> 0;
  const w1 = cpu.readAccess(gate + 4, 4, Access.Read | Access.Implicit) >>> 0;
  const w2 = cpu.readAccess(gate + 8, 4, Access.Read | Access.Implicit) >>> 0;
  const type = (w1 >>> 8) & 0x1f;
  const dpl = (w1 >>> 13) & 3;
  const present = (w1 & 0x8000) !== 0;
  // 64-bit interrupt gate 0xE or trap gate 0xF (SDM Table 3-2); anything else is #GP.
  if (type !== 0x0e && type !== 0x0f) cpu.fault(Vector.GP, vector * 8 + 2 + extBit);
  // The gate-DPL check applies to software interrupts and software exceptions alike (INT n,
  // INT3, INTO; not INT1 or hardware events): SDM Vol. 3A 6.12.1.1.
  if ((software || cpu.deliveringSoftwareException) && dpl < cpu.cpl) cpu.fault(Vector.GP, vector * 8 + 2);
  if (!present) cpu.fault(Vector.NP, vector * 8 + 2 + extBit);
  const selector = w0 >>> 16;
  const target = toSigned64((w1 & 0xffff0000) | (w0 & 0xffff), w2); // offset 15:0, 31:16, 63:32
  const ist = w1 & 7;
  const cs = cpu.loadDescriptor(selector, Vector.GP);
  const newCpl = (cs.attr >>> 5) & 3;
  if ((cs.attr & SEG_ATTR_L) === 0 || (cs.attr & 0x18) !== 0x18) cpu.fault(Vector.GP, (selector & 0xfffc) + extBit);
  if ((cs.attr & 0x80) === 0) cpu.fault(Vector.NP, (selector & 0xfffc) + extBit);
  const csAttr = markAccessed(cpu, selector, cs.attr);

  const oldSs = (cpu.seg[Seg.SS] as SegmentCache).selector;
  const oldRsp = cpu.regAddr(4);
  const oldFlags = cpu.getFlags();
  const oldCs = (cpu.seg[Seg.CS] as SegmentCache).selector;
  const oldRip = cpu.rip;
  let rsp: number;
  if (ist !== 0) rsp = readTss64(cpu, 0x24 + (ist - 1) * 8);
  else if (newCpl < cpu.cpl) rsp = readTss64(cpu, 4 + newCpl * 8);
  else rsp = oldRsp;
  rsp = wrap64(rsp - (rsp % 16 + 16) % 16); // align to 16 (SDM 6.14.2)
  const prevCpl = cpu.cpl;
  // Push SS, RSP, RFLAGS, CS, RIP (and the error code) on the new stack; the frame is written
  // with supervisor privilege.
  cpu.cpl = newCpl;
  try {
    const frame = [oldSs, oldRsp, oldFlags, oldCs, oldRip];
    if (errorCode >= 0) frame.push(errorCode);
    let sp = rsp;
    for (const value of frame) {
      sp = wrap64(sp - 8);
      if (sp < -TWO_47 || sp >= TWO_47) cpu.fault(Vector.SS, 0);
      cpu.write64(sp, value >>> 0, Math.floor(value / TWO_32) | 0);
    }
    rsp = sp;
  } catch (e) {
    cpu.cpl = prevCpl;
    throw e;
  }
  if (newCpl < prevCpl) {
    const ss = cpu.seg[Seg.SS] as SegmentCache;
    ss.selector = newCpl; // a null SS with RPL = new CPL (SDM 6.14.3)
    ss.attr = 0;
    ss.base = 0;
  }
  const csCache = cpu.seg[Seg.CS] as SegmentCache;
  csCache.selector = (selector & 0xfffc) | newCpl;
  csCache.base = 0;
  csCache.attr = csAttr;
  csCache.limit = 0xffff_ffff;
  cpu.setRegFromNumber(4, rsp);
  cpu.rip = target;
  // Interrupt gates clear IF; both clear TF, NT, RF (and VM).
  const clear = (type === 0x0e ? 0x200 : 0) | 0x100 | 0x4000 | 0x10000 | 0x20000;
  cpu.flagsOther &= ~clear;
  cpu.interruptShadow = false;
  cpu.updateMode();
  cpu.counters.interrupts += external ? 1 : 0;
}

/**
 * Protected-mode delivery outside IA-32e mode (SDM Vol. 3A 6.10-6.12 and the INT n pseudo-code):
 * 8-byte gates; 16-bit and 32-bit interrupt and trap gates (types 6, 7, 14, 15) and task gates
 * (type 5, `taskGate`). A handler in a more privileged non-conforming code segment runs on the
 * stack the TSS names for its ring (SS0:ESP0 and so on of a 32-bit TSS, SS0:SP0 of a 16-bit one),
 * with SS:ESP of the interrupted code pushed first. The frame's slots are 4 bytes through a
 * 32-bit gate and 2 through a 16-bit one. Modelled more simply: segment limits are not checked
 * (flat segments, as everywhere outside 64-bit mode) and virtual-8086 mode does not exist.
 */
function deliverThroughIdt32(cpu: Cpu, vector: number, errorCode: number, software: boolean, external: boolean): void {
  const ext = external ? 1 : 0;
  const idtError = vector * 8 + 2 + ext; // IDT bit (1) and EXT (0) of the error code (SDM 6.13)
  if (vector * 8 + 7 > cpu.idtrLimit) cpu.fault(Vector.GP, idtError);
  const gate = (cpu.idtrBase + vector * 8) >>> 0;
  const w0 = cpu.readAccess(gate, 4, Access.Read | Access.Implicit) >>> 0;
  const w1 = cpu.readAccess((gate + 4) >>> 0, 4, Access.Read | Access.Implicit) >>> 0;
  const type = (w1 >>> 8) & 0x1f; // S (bit 12) must be 0: a system descriptor
  const dpl = (w1 >>> 13) & 3;
  // SDM Table 3-2: 5 task gate, 6/7 16-bit interrupt/trap gate, 14/15 32-bit interrupt/trap gate.
  if (type !== 0x05 && type !== 0x06 && type !== 0x07 && type !== 0x0e && type !== 0x0f) cpu.fault(Vector.GP, idtError);
  if ((software || cpu.deliveringSoftwareException) && dpl < cpu.cpl) cpu.fault(Vector.GP, vector * 8 + 2);
  if ((w1 & 0x8000) === 0) cpu.fault(Vector.NP, idtError);
  const selector = w0 >>> 16;
  if (type === 0x05) {
    taskGate(cpu, selector, errorCode, ext);
    return;
  }
  const gate32 = (type & 0x08) !== 0;
  const offset = gate32 ? ((w1 & 0xffff0000) | (w0 & 0xffff)) >>> 0 : w0 & 0xffff;
  if ((selector & 0xfffc) === 0) cpu.fault(Vector.GP, ext);
  const cs = loadDescriptorExt(cpu, selector, Vector.GP, ext);
  const csDpl = (cs.attr >>> 5) & 3;
  if ((cs.attr & 0x18) !== 0x18 || csDpl > cpu.cpl) cpu.fault(Vector.GP, (selector & 0xfffc) + ext);
  if ((cs.attr & 0x80) === 0) cpu.fault(Vector.NP, (selector & 0xfffc) + ext);
  const conforming = (cs.attr & 0x04) !== 0;
  const inner = !conforming && csDpl < cpu.cpl;
  const newCpl = inner ? csDpl : cpu.cpl;
  cs.attr = markAccessed(cpu, selector, cs.attr);

  const oldSs = cpu.seg[Seg.SS] as SegmentCache;
  const oldSsSel = oldSs.selector;
  const oldEsp = cpu.lo[4]! >>> 0;
  const oldFlags = cpu.getFlags();
  const oldCs = (cpu.seg[Seg.CS] as SegmentCache).selector;
  const oldEip = cpu.rip >>> 0;
  // The stack the frame goes on: the TSS's for the new ring (checked as the SDM's #TS rules
  // say), or the current one.
  let ssSel = oldSsSel;
  let ssBase = oldSs.base;
  let ssB = cpu.ssB;
  let sp = oldEsp;
  let newSs: SegmentCache | undefined;
  if (inner) {
    const tss32 = (cpu.tr.attr & 0x08) !== 0; // TSS type 9/11 (32-bit) or 1/3 (16-bit)
    const at = tss32 ? 4 + newCpl * 8 : 2 + newCpl * 4;
    if (at + (tss32 ? 5 : 3) > cpu.tr.limit) cpu.fault(Vector.TS, (cpu.tr.selector & 0xfffc) + ext);
    if (tss32) {
      sp = cpu.readAccess((cpu.tr.base + at) >>> 0, 4, Access.Read | Access.Implicit) >>> 0;
      ssSel = cpu.readAccess((cpu.tr.base + at + 4) >>> 0, 2, Access.Read | Access.Implicit) & 0xffff;
    } else {
      sp = cpu.readAccess((cpu.tr.base + at) >>> 0, 2, Access.Read | Access.Implicit) & 0xffff;
      ssSel = cpu.readAccess((cpu.tr.base + at + 2) >>> 0, 2, Access.Read | Access.Implicit) & 0xffff;
    }
    // SS from the TSS: not null, RPL and DPL = the new CPL, a writable data segment, present.
    if ((ssSel & 0xfffc) === 0) cpu.fault(Vector.TS, ext);
    const d = loadDescriptorExt(cpu, ssSel, Vector.TS, ext);
    if ((ssSel & 3) !== newCpl || ((d.attr >>> 5) & 3) !== newCpl || (d.attr & 0x1a) !== 0x12) cpu.fault(Vector.TS, (ssSel & 0xfffc) + ext);
    if ((d.attr & 0x80) === 0) cpu.fault(Vector.SS, (ssSel & 0xfffc) + ext);
    d.attr = markAccessed(cpu, ssSel, d.attr);
    newSs = d;
    ssBase = d.base;
    ssB = (d.attr & SEG_ATTR_DB) !== 0;
  }
  const slot = gate32 ? 4 : 2;
  const prevCpl = cpu.cpl;
  cpu.cpl = newCpl; // the frame is written with the handler's privilege
  try {
    const push = (value: number) => {
      sp = ssB ? (sp - slot) >>> 0 : (sp - slot) & 0xffff;
      const lin = (ssBase + sp) >>> 0;
      if (slot === 4) cpu.write32(lin, value | 0);
      else cpu.write16(lin, value & 0xffff);
    };
    if (inner) {
      push(oldSsSel);
      push(oldEsp);
    }
    push(oldFlags);
    push(oldCs);
    push(oldEip);
    if (errorCode >= 0) push(errorCode);
  } catch (e) {
    cpu.cpl = prevCpl;
    throw e;
  }
  // Commit: CS (RPL = the new CPL), SS:ESP when the ring changed, EIP, and the flags.
  if (newSs !== undefined) {
    const ss = cpu.seg[Seg.SS] as SegmentCache;
    ss.selector = ssSel;
    ss.base = newSs.base;
    ss.limit = newSs.limit;
    ss.attr = newSs.attr;
  }
  if (ssB) cpu.setReg32(4, sp);
  else cpu.setReg16(4, sp);
  const csCache = cpu.seg[Seg.CS] as SegmentCache;
  csCache.selector = (selector & 0xfffc) | newCpl;
  csCache.base = cs.base;
  csCache.limit = cs.limit;
  csCache.attr = cs.attr;
  cpu.rip = offset;
  // Interrupt gates clear IF; both clear TF, NT, RF and VM (SDM 6.12.1.3).
  const clear = ((type & 1) === 0 ? 0x200 : 0) | 0x100 | 0x4000 | 0x10000 | 0x20000;
  cpu.flagsOther &= ~clear;
  cpu.interruptShadow = false;
  cpu.updateMode();
  cpu.counters.interrupts += external ? 1 : 0;
}

/**
 * Real-address-mode delivery (SDM Vol. 3A 20.1.4 and the INT n pseudo-code, REAL-ADDRESS-MODE):
 * the vector's 4-byte entry (IP in bytes 1:0, CS in bytes 3:2) at IDTR.base + 4 * vector must
 * lie within IDTR.limit (else #GP); FLAGS, CS and IP are pushed as 16-bit values on SS:SP (or
 * SS:ESP with a big SS), no error code; IF, TF and AC are cleared; CS = the vector's segment,
 * base = segment << 4, the cached limit and attributes kept. A push that faults commits nothing.
 */
function deliverReal(cpu: Cpu, vector: number, external: boolean): void {
  const at = vector * 4;
  if (at + 3 > cpu.idtrLimit) cpu.fault(Vector.GP, 0);
  const entry = cpu.readAccess((cpu.idtrBase + at) >>> 0, 4, Access.Read | Access.Implicit) >>> 0;
  const ss = cpu.seg[Seg.SS] as SegmentCache;
  const cs = cpu.seg[Seg.CS] as SegmentCache;
  const big = cpu.ssB;
  let sp = cpu.lo[4]! >>> 0;
  const flags = cpu.getFlags() & 0xffff;
  const frame0 = flags;
  const frame1 = cs.selector;
  const frame2 = cpu.rip & 0xffff;
  for (let k = 0; k < 3; k++) {
    sp = big ? (sp - 2) >>> 0 : (sp - 2) & 0xffff;
    cpu.write16((ss.base + sp) >>> 0, k === 0 ? frame0 : k === 1 ? frame1 : frame2);
  }
  if (big) cpu.setReg32(4, sp);
  else cpu.setReg16(4, sp);
  const selector = entry >>> 16;
  cs.selector = selector;
  cs.base = selector * 16;
  cpu.rip = entry & 0xffff;
  cpu.flagsOther &= ~(RFLAGS_IF | RFLAGS_TF | RFLAGS_AC);
  cpu.paging.ac = false;
  cpu.interruptShadow = false;
  cpu.updateMode();
  cpu.counters.interrupts += external ? 1 : 0;
}

/**
 * An event through a task gate (SDM Vol. 3A 6.11.2, 7.3). In VMX non-root operation every task
 * switch is a VM exit (SDM 26.1.2, exit reason 9): the qualification holds the new TSS selector
 * (bits 15:0) and the source, 3 = a task gate in the IDT (bits 31:30, SDM Table 28-2), and the
 * event is reported as IDT-vectoring information; the hypervisor emulates the switch (Xen's
 * hvm_task_switch). Outside VMX the task switch itself is not modelled: the event ends as
 * #GP(selector + EXT), said in the README.
 */
function taskGate(cpu: Cpu, selector: number, _errorCode: number, ext: number): void {
  if (cpu.vmcs !== undefined) cpu.vmExit(ExitReason.TaskSwitch, ((selector & 0xffff) | (TASK_SWITCH_SOURCE_IDT << 30)) >>> 0, 0);
  cpu.fault(Vector.GP, (selector & 0xfffc) + ext);
}

/**
 * IRET with RFLAGS.NT = 1 outside IA-32e mode returns to the task in the current TSS's
 * back-link (SDM "IRET", 7.3): in VMX non-root operation that is a task-switch VM exit with
 * source 1 (IRET); outside VMX it is not modelled and raises #GP(0).
 */
export function taskReturn(cpu: Cpu, instructionLength: number): never {
  if (cpu.vmcs !== undefined) {
    const link = cpu.readAccess(cpu.tr.base >>> 0, 2, Access.Read | Access.Implicit) & 0xffff;
    cpu.vmExit(ExitReason.TaskSwitch, (link | (TASK_SWITCH_SOURCE_IRET << 30)) >>> 0, instructionLength);
  }
  return cpu.gp(0);
}

/** Read a 64-bit field of the 64-bit TSS (RSPn at 4 + 8n, ISTn at 0x24 + 8(n-1)). */
function readTss64(cpu: Cpu, offset: number): number {
  if (offset + 7 > cpu.tr.limit) cpu.fault(Vector.TS, cpu.tr.selector & 0xfffc);
  const lo = cpu.readAccess(cpu.tr.base + offset, 4, Access.Read | Access.Implicit) >>> 0;
  const hi = cpu.readAccess(cpu.tr.base + offset + 4, 4, Access.Read | Access.Implicit) | 0;
  return hi * TWO_32 + lo;
}
