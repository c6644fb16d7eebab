/**
 * Task switches (Xen's hvm_task_switch in xen/arch/x86/hvm/hvm.c, with vmx_vmexit_handler's
 * EXIT_REASON_TASK_SWITCH case): in VMX non-root operation every task switch is a VM exit (SDM
 * Vol. 3C 26.1.2, exit reason 9) and the hypervisor performs it as the SDM describes (Vol. 3A 7.3
 * "Task Switching", 7.4 "Task Linking", Table 7-1):
 *
 * 1. The new TSS selector and the source come from the exit qualification (SDM Table 28-2: bits
 *    15:0 the selector, bits 31:30 the source: 0 CALL, 1 IRET, 2 JMP, 3 a task gate in the IDT);
 *    for a gate, the event (vector, type, error code) from the IDT-vectoring information.
 * 2. Checks in the old task's context (Table 7-1, the part before "registers are loaded"): the
 *    selector references the GDT within its limit (#GP, #TS for IRET), the descriptor is present
 *    (#NP), it is an available 32-bit TSS (busy for IRET: #TS; a busy one for CALL, JMP or a gate:
 *    #GP), its limit is at least 0x67 (#TS), with the new TSS's selector as the error code (EXT set
 *    for an event external to the program, SDM 6.13). A fault raised while delivering a hardware
 *    exception combines with it as SDM Table 6-5 says (a bad #DF task gate is a triple fault).
 * 3. The old task's state is saved into its 32-bit TSS (EIP after the instruction for CALL, JMP,
 *    IRET, INT n and INT3; EFLAGS with NT cleared for IRET; the general-purpose registers and the
 *    segment selectors); IRET and JMP clear the old descriptor's busy bit; CALL, JMP and gates set
 *    the new one's; CALL and gates write the back link into the new TSS and set NT.
 * 4. The new task is loaded: TR (selector, base, limit and a busy-TSS type in the VMCS), LDTR,
 *    CR3 (on shadow paging through mmu-shadow's CR3 path, `ShadowPaging.updateCr3`; on EPT into
 *    GUEST_CR3 with the PAE PDPTEs loaded as MOV CR3 does, and a TLB flush of the VPID), EFLAGS,
 *    EIP, the general-purpose registers, CR0.TS = 1, then the segment registers with the checks of
 *    Xen's task_switch_load_seg; a failed check is a fault in the new task's context. Last, the
 *    error code of a vectored exception that has one is pushed on the new stack, and a TSS with
 *    its T flag set raises a #DB trap (DR6.BT).
 *
 * Modelled more simply than hardware (said in the README too):
 * - 16-bit TSSes (types 1 and 3) are refused: the domain is crashed with a reason naming the
 *   selector. Virtual-8086 mode (EFLAGS.VM in the new TSS) is refused the same way.
 * - A segment descriptor that fails its check after the commit point leaves every segment register
 *   as the old task had it (the selectors too) and raises the fault at the new task's EIP; hardware
 *   loads the selectors first and marks the bad descriptors unusable.
 * - Segment limits are not checked for the stack push, and the I/O permission bitmap is not read.
 * - The hypervisor's writes to the TSSes and the GDT bypass shadow paging's write protection of
 *   guest page tables (as copyToGuest does): a guest that keeps its TSS in a page table confuses
 *   only its own translation.
 * - A TSS or descriptor whose linear address the guest's tables do not map is a #PF (Xen's
 *   hvm_inject_page_fault); one at a guest-physical address that is not RAM crashes the domain
 *   (Xen's hvm_map_entry does domain_crash).
 */
import { Access, PAGE_SIZE, Vector } from "@vtlab/arch";
import {
  CR0_PG,
  CR0_TS,
  CR4_PAE,
  EFER_LMA,
  IntrType,
  RFLAGS_FIXED,
  RFLAGS_NT,
  RFLAGS_RESERVED_ZERO,
  RFLAGS_VM,
  VmcsField as F,
  type ExitOutcome,
  type VmExit,
  INVVPID_SINGLE_CONTEXT,
} from "@vtlab/cpu-vmx";
import { ShadowPaging } from "@vtlab/mmu-shadow";
import type { ExitContext } from "./exits.js";
import { combineExceptions } from "./hypervisor.js";
import { RESUME } from "./outcomes.js";

/** Task-switch exit qualification bits 31:30 (SDM Table 28-2). */
export const TaskSwitchSource = { Call: 0, Iret: 1, Jmp: 2, IdtGate: 3 } as const;
export type TaskSwitchSource = (typeof TaskSwitchSource)[keyof typeof TaskSwitchSource];

/** The smallest limit of a 32-bit TSS (SDM 7.2.1: 104 bytes, limit 0x67). */
export const TSS32_MIN_LIMIT = 0x67;

/** Offsets in the 32-bit TSS (SDM Figure 7-2; Xen's struct tss32). */
export const Tss32 = {
  BACK_LINK: 0x00,
  CR3: 0x1c,
  EIP: 0x20,
  EFLAGS: 0x24,
  /** EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI, 4 bytes each from here (register numbers 0-7). */
  EAX: 0x28,
  /** ES, CS, SS, DS, FS, GS, 4-byte slots of which the low 16 bits are the selector. */
  ES: 0x48,
  LDT: 0x60,
  /** Bit 0: the debug trap flag T. */
  TRACE: 0x64,
} as const;

/** Descriptor types (SDM Table 3-2, system descriptors). */
const TYPE_LDT = 0x2;
const TYPE_TSS16_AVAILABLE = 0x1;
const TYPE_TSS16_BUSY = 0x3;
const TYPE_TSS32_AVAILABLE = 0x9;
const TYPE_TSS32_BUSY = 0xb;
/** The busy bit of a TSS descriptor's type (bit 41 of the descriptor, bit 1 of byte 5). */
const TSS_BUSY = 0x2;
/** VMCS access-rights "unusable" bit (SDM Table 25-2). */
const AR_UNUSABLE = 0x1_0000;
/** DR6.BT (bit 15): a task switch to a TSS with T = 1 (SDM 18.2.3). */
const DR6_BT = 1 << 15;

/** Segment register order in the 32-bit TSS, and their VMCS fields. */
const SEGMENTS = [
  { name: "ES", sel: F.GUEST_ES_SELECTOR, base: F.GUEST_ES_BASE, limit: F.GUEST_ES_LIMIT, ar: F.GUEST_ES_AR_BYTES },
  { name: "CS", sel: F.GUEST_CS_SELECTOR, base: F.GUEST_CS_BASE, limit: F.GUEST_CS_LIMIT, ar: F.GUEST_CS_AR_BYTES },
  { name: "SS", sel: F.GUEST_SS_SELECTOR, base: F.GUEST_SS_BASE, limit: F.GUEST_SS_LIMIT, ar: F.GUEST_SS_AR_BYTES },
  { name: "DS", sel: F.GUEST_DS_SELECTOR, base: F.GUEST_DS_BASE, limit: F.GUEST_DS_LIMIT, ar: F.GUEST_DS_AR_BYTES },
  { name: "FS", sel: F.GUEST_FS_SELECTOR, base: F.GUEST_FS_BASE, limit: F.GUEST_FS_LIMIT, ar: F.GUEST_FS_AR_BYTES },
  { name: "GS", sel: F.GUEST_GS_SELECTOR, base: F.GUEST_GS_BASE, limit: F.GUEST_GS_LIMIT, ar: F.GUEST_GS_AR_BYTES },
] as const;
const CS = 1;
const SS = 2;

/** A descriptor's fields as the VMCS keeps them. */
interface Descriptor {
  lo: number;
  hi: number;
  base: number;
  limit: number;
  /** VMCS access-rights format: type 3:0, S 4, DPL 6:5, P 7, AVL 12, L 13, D/B 14, G 15. */
  ar: number;
}

function decode(lo: number, hi: number): Descriptor {
  const base = ((lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff00_0000)) >>> 0;
  const raw = (lo & 0xffff) | (hi & 0xf_0000);
  const limit = (hi & (1 << 23)) !== 0 ? (raw * PAGE_SIZE + 0xfff) >>> 0 : raw;
  return { lo, hi, base, limit, ar: (hi >>> 8) & 0xf0ff };
}

/** A fault raised by the switch: delivered through the guest's IDT at the next VM entry. */
interface Fault {
  readonly vector: number;
  readonly errorCode?: number;
  readonly cr2?: number;
}
type Failure = Fault | { readonly crash: string };
const isCrash = (f: Failure): f is { readonly crash: string } => "crash" in f;

/**
 * Guest-linear accesses of the switch (the TSSes, the GDT and LDT, the new stack), page by page
 * through the guest's paging and the p2m, as implicit supervisor accesses unless `user`.
 */
class Linear {
  constructor(private readonly ctx: ExitContext) {}

  /** The machine address of one byte, or the failure (a #PF, or a crash for memory that is not RAM). */
  private hpa(linear: number, write: boolean, user: boolean, what: string): number | Failure {
    const { domain: d, vcpu: v } = this.ctx;
    const at = linear >>> 0;
    const access = (write ? Access.Write : Access.Read) | (user ? Access.User : Access.Implicit);
    const gpa = d.paging.gvaToGpa(v.cpu, at, access);
    if (typeof gpa !== "number") return { vector: Vector.PF, errorCode: gpa.errorCode, cr2: at };
    const hpa = d.ramHpa(gpa, write);
    if (hpa === undefined) return { crash: `task switch: ${what} at linear 0x${at.toString(16)} is at GPA 0x${gpa.toString(16)}, which is not RAM` };
    return hpa;
  }

  /** Whether every byte of [linear, linear + length) can be accessed; the first failure otherwise. */
  probe(linear: number, length: number, write: boolean, what: string, user = false): Failure | undefined {
    for (let n = 0; n < length; ) {
      const at = (linear + n) >>> 0;
      const h = this.hpa(at, write, user, what);
      if (typeof h !== "number") return h;
      n += PAGE_SIZE - (at % PAGE_SIZE);
    }
    return undefined;
  }

  read(linear: number, size: 1 | 2 | 4, what: string): number | Failure {
    let value = 0;
    for (let k = 0; k < size; k++) {
      const h = this.hpa(linear + k, false, false, what);
      if (typeof h !== "number") return h;
      const b = this.ctx.hv.memory.read8(h);
      if (typeof b !== "number") return { crash: `task switch: ${what}: machine memory ${b.reason} at 0x${h.toString(16)}` };
      value += b * 2 ** (8 * k);
    }
    return value;
  }

  write(linear: number, size: 1 | 2 | 4, value: number, what: string, user = false): Failure | undefined {
    for (let k = 0; k < size; k++) {
      const h = this.hpa(linear + k, true, user, what);
      if (typeof h !== "number") return h;
      const err = this.ctx.hv.memory.write8(h, Math.floor(value / 2 ** (8 * k)) & 0xff);
      if (err !== undefined) return { crash: `task switch: ${what}: machine memory ${err.reason} at 0x${h.toString(16)}` };
      // Code decoded from that frame is stale now.
      this.ctx.hv.machineFrameWritten(Math.floor(h / PAGE_SIZE));
    }
    return undefined;
  }
}

/** The outcome for a failure: a crash, or the fault to inject. */
function outcome(f: Failure): ExitOutcome {
  if (isCrash(f)) return { kind: "crash", reason: f.crash };
  return { kind: "inject", vector: f.vector, ...(f.errorCode !== undefined ? { errorCode: f.errorCode } : {}), ...(f.cr2 !== undefined ? { cr2: f.cr2 } : {}) };
}

/**
 * Handle a task-switch exit (EXIT_REASON_TASK_SWITCH). The event a gate was delivering is not
 * delivered again afterwards (the dispatcher skips IDT-vectoring re-injection for this exit, as
 * Xen's vmx_vmexit_handler does): the switch consumes it.
 */
export function taskSwitch(ctx: ExitContext, exit: VmExit, loadPdptes: (cr3: number) => boolean): ExitOutcome {
  const { domain: d, vcpu: v } = ctx;
  const vmcs = v.vmcs;
  const cpu = v.cpu;
  const q = exit.qualification >>> 0;
  const selector = q & 0xffff;
  const source = (q >>> 30) as TaskSwitchSource;
  const iv = exit.idtVectoring;
  if (source === TaskSwitchSource.IdtGate && iv === undefined) return { kind: "crash", reason: `task-switch exit through a task gate (selector 0x${selector.toString(16)}) without IDT-vectoring information` };
  if ((vmcs.read32(F.GUEST_IA32_EFER) & EFER_LMA) !== 0 || (d.paging instanceof ShadowPaging && (v.guestEfer & EFER_LMA) !== 0)) {
    return { kind: "crash", reason: "task-switch exit in IA-32e mode (task switches do not exist there)" };
  }
  const iret = source === TaskSwitchSource.Iret;
  const nesting = source === TaskSwitchSource.Call || source === TaskSwitchSource.IdtGate;
  // The saved EIP is after the instruction for CALL, JMP and IRET, and for software interrupts
  // and exceptions (INT n, INT3, INTO, INT1: types 4-6) through a gate (Xen: IntrType > 3).
  const vectoredType = iv?.type ?? IntrType.HardwareException;
  const insnLen = source !== TaskSwitchSource.IdtGate || vectoredType > IntrType.HardwareException ? exit.instructionLength : 0;
  const errorCode = source === TaskSwitchSource.IdtGate && iv?.errorCode !== undefined ? iv.errorCode : -1;
  // EXT (error-code bit 0): set for an event external to the program, clear for INT n, INT3 and INTO (SDM 6.13).
  const ext = source === TaskSwitchSource.IdtGate && vectoredType !== IntrType.SoftwareInterrupt && vectoredType !== IntrType.SoftwareException ? 1 : 0;
  const mem = new Linear(ctx);

  // A fault before the commit point, in the old task's context; while delivering a hardware
  // exception it combines with it (SDM Table 6-5).
  const before = (f: Failure): ExitOutcome => {
    if (isCrash(f) || source !== TaskSwitchSource.IdtGate || iv === undefined || iv.type !== IntrType.HardwareException) return outcome(f);
    const combined = combineExceptions(iv.vector, f.vector);
    if (combined === "triple-fault") return { kind: "crash", reason: `triple fault (exception ${f.vector} in the task switch of a double fault's task gate, TSS selector 0x${selector.toString(16)})` };
    return combined === Vector.DF ? { kind: "inject", vector: Vector.DF, errorCode: 0 } : outcome(f);
  };
  const selError = (selector & 0xfffc) | ext;
  const badSelector = iret ? Vector.TS : Vector.GP;

  // ---- checks in the old task's context (SDM Table 7-1, in its order) ----
  const gdtBase = vmcs.readNatural(F.GUEST_GDTR_BASE) >>> 0;
  const gdtLimit = vmcs.read32(F.GUEST_GDTR_LIMIT) & 0xffff;
  if ((selector & 4) !== 0 || (selector & 0xfff8) === 0 || (selector & 0xfff8) + 7 > gdtLimit) return before({ vector: badSelector, errorCode: selError });
  const newDescAt = (gdtBase + (selector & 0xfff8)) >>> 0;
  const lo = mem.read(newDescAt, 4, `the TSS descriptor 0x${selector.toString(16)}`);
  if (typeof lo !== "number") return before(lo);
  const hi = mem.read(newDescAt + 4, 4, `the TSS descriptor 0x${selector.toString(16)}`);
  if (typeof hi !== "number") return before(hi);
  const desc = decode(lo, hi);
  const type = desc.ar & 0x1f; // S (bit 4) must be 0: a system descriptor
  if ((desc.ar & 0x80) === 0) return before({ vector: Vector.NP, errorCode: selError });
  if (type === TYPE_TSS16_AVAILABLE || type === TYPE_TSS16_BUSY) return { kind: "crash", reason: `task switch to a 16-bit TSS (selector 0x${selector.toString(16)}): 16-bit TSSes are not modelled` };
  if (iret ? type !== TYPE_TSS32_BUSY : type !== TYPE_TSS32_AVAILABLE) return before({ vector: iret ? Vector.TS : Vector.GP, errorCode: selError });
  if (desc.limit < TSS32_MIN_LIMIT) return before({ vector: Vector.TS, errorCode: selError });

  const oldSel = vmcs.read32(F.GUEST_TR_SELECTOR) & 0xffff;
  const oldBase = vmcs.readNatural(F.GUEST_TR_BASE) >>> 0;
  const oldType = vmcs.read32(F.GUEST_TR_AR_BYTES) & 0xf;
  if (oldType !== TYPE_TSS32_BUSY) return { kind: "crash", reason: `task switch from a ${oldType === TYPE_TSS16_BUSY ? "16-bit TSS" : `TR of type ${oldType}`} (selector 0x${oldSel.toString(16)}): only 32-bit TSSes are modelled` };
  // Every store of the switch must be possible before the first one is made (the switch is all
  // or nothing up to the commit point): the old TSS's state area, the new TSS, its back link, and
  // the busy bits in the GDT.
  const oldDescAt = (oldSel & 0xfff8) + 7 <= gdtLimit ? (gdtBase + (oldSel & 0xfff8)) >>> 0 : undefined;
  for (const [at, len, write, what] of [
    [oldBase + Tss32.EIP, Tss32.LDT - Tss32.EIP, true, `the old TSS (selector 0x${oldSel.toString(16)})`],
    [desc.base, TSS32_MIN_LIMIT + 1, nesting, `the new TSS (selector 0x${selector.toString(16)})`],
    [newDescAt + 5, 1, !iret, `the TSS descriptor 0x${selector.toString(16)}`],
    ...(oldDescAt !== undefined && !nesting ? [[oldDescAt + 5, 1, true, `the TSS descriptor 0x${oldSel.toString(16)}`] as const] : []),
  ] as const) {
    const f = mem.probe(at, len, write, what);
    if (f !== undefined) return before(f);
  }

  // Refused before anything is written: a new task in virtual-8086 mode.
  const vmCheck = mem.read(desc.base + Tss32.EFLAGS, 4, `the new TSS (selector 0x${selector.toString(16)})`);
  if (typeof vmCheck !== "number") return before(vmCheck);
  if ((vmCheck & RFLAGS_VM) !== 0) return { kind: "crash", reason: `task switch to the new TSS (selector 0x${selector.toString(16)}) with EFLAGS.VM = 1: virtual-8086 mode is not modelled` };

  // ---- save the old task (SDM 7.3 steps 4-6) ----
  let eflags = vmcs.read32(F.GUEST_RFLAGS) >>> 0;
  if (iret) eflags &= ~RFLAGS_NT;
  const oldWhat = `the old TSS (selector 0x${oldSel.toString(16)})`;
  const saves: [number, 2 | 4, number][] = [
    [Tss32.EIP, 4, (vmcs.readNatural(F.GUEST_RIP) + insnLen) >>> 0],
    [Tss32.EFLAGS, 4, eflags],
  ];
  for (let r = 0; r < 8; r++) saves.push([Tss32.EAX + 4 * r, 4, r === 4 ? vmcs.read32(F.GUEST_RSP) >>> 0 : cpu.lo[r]! >>> 0]);
  for (let s = 0; s < SEGMENTS.length; s++) saves.push([Tss32.ES + 4 * s, 2, vmcs.read32(SEGMENTS[s]!.sel) & 0xffff]);
  if ((iret || source === TaskSwitchSource.Jmp) && oldDescAt !== undefined) {
    const b = mem.read(oldDescAt + 5, 1, oldWhat);
    if (typeof b !== "number") return before(b);
    const f = mem.write(oldDescAt + 5, 1, b & ~TSS_BUSY, oldWhat);
    if (f !== undefined) return before(f);
  }
  for (const [off, size, value] of saves) {
    const f = mem.write(oldBase + off, size, value, oldWhat);
    if (f !== undefined) return before(f);
  }

  // ---- the new TSS (read after the save: a switch to the same TSS reads what was saved) ----
  const newWhat = `the new TSS (selector 0x${selector.toString(16)})`;
  const tss = new Uint32Array(26);
  for (let k = 0; k < 26; k++) {
    const w = mem.read(desc.base + 4 * k, 4, newWhat);
    if (typeof w !== "number") return before(w);
    tss[k] = w;
  }
  if (!iret) {
    const f = mem.write(newDescAt + 5, 1, ((desc.hi >>> 8) & 0xff) | TSS_BUSY, newWhat);
    if (f !== undefined) return before(f);
  }
  if (nesting) {
    const f = mem.write(desc.base + Tss32.BACK_LINK, 2, oldSel, newWhat);
    if (f !== undefined) return before(f);
  }
  const word = (off: number) => tss[off >>> 2]! >>> 0;
  const newFlags = word(Tss32.EFLAGS);
  if ((newFlags & RFLAGS_VM) !== 0) return { kind: "crash", reason: `task switch to ${newWhat} with EFLAGS.VM = 1: virtual-8086 mode is not modelled` };

  // ---- commit: TR, then the new task's registers (SDM 7.3 steps 8-10) ----
  vmcs.setField(F.GUEST_TR_SELECTOR, selector);
  vmcs.setNatural(F.GUEST_TR_BASE, desc.base);
  vmcs.setField(F.GUEST_TR_LIMIT, desc.limit);
  vmcs.setField(F.GUEST_TR_AR_BYTES, ((desc.ar & ~0xf) | TYPE_TSS32_BUSY) >>> 0);
  vmcs.setNatural(F.GUEST_RIP, word(Tss32.EIP));
  vmcs.setNatural(F.GUEST_RFLAGS, ((newFlags & ~RFLAGS_RESERVED_ZERO) | RFLAGS_FIXED | (nesting ? RFLAGS_NT : 0)) >>> 0);
  for (let r = 0; r < 8; r++) {
    const value = word(Tss32.EAX + 4 * r);
    if (r === 4) vmcs.setNatural(F.GUEST_RSP, value);
    cpu.lo[r] = value | 0;
    cpu.hi[r] = 0;
  }
  vmcs.setNatural(F.GUEST_CR0, (vmcs.readNatural(F.GUEST_CR0) | CR0_TS) >>> 0);
  // The switch completed its instruction: blocking by STI and by MOV SS ends (SDM 26.3.1.5).
  const intr = vmcs.read32(F.GUEST_INTERRUPTIBILITY_INFO);
  if ((intr & 3) !== 0) vmcs.setField(F.GUEST_INTERRUPTIBILITY_INFO, intr & ~3);

  // From here a fault is the new task's (SDM 7.3: after the commit point).
  const cpl = word(Tss32.ES + 4 * CS) & 3;
  const ldtSel = word(Tss32.LDT) & 0xffff;
  let ldt: Descriptor | undefined;
  const ldtFault = (): Fault => ({ vector: Vector.TS, errorCode: (ldtSel & 0xfffc) | ext });
  let fault: Failure | undefined;
  if ((ldtSel & 0xfffc) === 0) {
    vmcs.setField(F.GUEST_LDTR_SELECTOR, ldtSel);
    vmcs.setField(F.GUEST_LDTR_AR_BYTES, AR_UNUSABLE);
  } else if ((ldtSel & 4) !== 0 || (ldtSel & 0xfff8) + 7 > gdtLimit) {
    fault = ldtFault();
  } else {
    const at = (gdtBase + (ldtSel & 0xfff8)) >>> 0;
    const l = mem.read(at, 4, `the LDT descriptor 0x${ldtSel.toString(16)}`);
    const h = typeof l === "number" ? mem.read(at + 4, 4, `the LDT descriptor 0x${ldtSel.toString(16)}`) : l;
    if (typeof l !== "number") fault = l;
    else if (typeof h !== "number") fault = h;
    else {
      const dl = decode(l, h);
      if ((dl.ar & 0x1f) !== TYPE_LDT || (dl.ar & 0x80) === 0) fault = ldtFault();
      else {
        ldt = dl;
        vmcs.setField(F.GUEST_LDTR_SELECTOR, ldtSel);
        vmcs.setNatural(F.GUEST_LDTR_BASE, dl.base);
        vmcs.setField(F.GUEST_LDTR_LIMIT, dl.limit);
        vmcs.setField(F.GUEST_LDTR_AR_BYTES, dl.ar);
      }
    }
  }
  if (fault !== undefined) return outcome(fault);

  // CR3, through the path the MMU sees (Xen's hvm_set_cr3): a bad PAE PDPT is #GP(0).
  const cr3 = word(Tss32.CR3);
  if (d.paging instanceof ShadowPaging) {
    const out = d.paging.updateCr3(cpu, vmcs, cr3);
    if (out.kind !== "resume") return out;
  } else {
    const pagingOn = (vmcs.readNatural(F.GUEST_CR0) & CR0_PG) !== 0;
    if (pagingOn && (vmcs.readNatural(F.GUEST_CR4) & CR4_PAE) !== 0 && !loadPdptes(cr3)) return { kind: "inject", vector: Vector.GP, errorCode: 0 };
    vmcs.setNatural(F.GUEST_CR3, cr3);
    cpu.cr3 = cr3; // the walks below (the new task's descriptors) see the new address space
    // MOV CR3 flushes the TLB (SDM 4.10.4.1); modelled more simply: globals go too.
    cpu.invvpid(INVVPID_SINGLE_CONTEXT, vmcs.read32(F.VIRTUAL_PROCESSOR_ID));
  }

  // The segment registers (Xen's task_switch_load_seg; SDM Table 7-1 from "LDT segment selector").
  const loaded: (Descriptor | undefined)[] = [];
  for (let s = 0; s < SEGMENTS.length && fault === undefined; s++) {
    const sel = word(Tss32.ES + 4 * s) & 0xffff;
    const r = loadSegment(mem, s, sel, cpl, ext, gdtBase, gdtLimit, ldt);
    if ("vector" in r || "crash" in r) fault = r;
    else loaded.push(r.desc);
  }
  if (fault !== undefined) return outcome(fault);
  for (let s = 0; s < SEGMENTS.length; s++) {
    const seg = SEGMENTS[s]!;
    const sd = loaded[s];
    vmcs.setField(seg.sel, word(Tss32.ES + 4 * s) & 0xffff);
    if (sd === undefined) {
      vmcs.setNatural(seg.base, 0);
      vmcs.setField(seg.limit, 0);
      vmcs.setField(seg.ar, AR_UNUSABLE);
    } else {
      vmcs.setNatural(seg.base, sd.base);
      vmcs.setField(seg.limit, sd.limit);
      vmcs.setField(seg.ar, sd.ar);
    }
  }

  // The error code of a vectored exception goes on the new task's stack (SDM 6.11.2 / 7.3).
  if (errorCode >= 0) {
    const cs = loaded[CS]!;
    const ss = loaded[SS]!;
    const opsz = (cs.ar & 0x4000) !== 0 ? 4 : 2;
    const esp = vmcs.read32(F.GUEST_RSP) >>> 0;
    const sp = (ss.ar & 0x4000) !== 0 ? (esp - opsz) >>> 0 : ((esp & 0xffff0000) | ((esp - opsz) & 0xffff)) >>> 0;
    const at = (ss.base + ((ss.ar & 0x4000) !== 0 ? sp : sp & 0xffff)) >>> 0;
    const f = mem.write(at, opsz, errorCode & (opsz === 4 ? 0xffff_ffff : 0xffff), "the new task's stack", cpl === 3);
    if (f !== undefined) return outcome(f);
    vmcs.setNatural(F.GUEST_RSP, sp);
    cpu.lo[4] = sp | 0;
  }
  // The T flag of the new TSS: a debug trap before the new task's first instruction (SDM 18.3.1.5).
  if ((word(Tss32.TRACE) & 1) !== 0) {
    cpu.dr[6] = cpu.dr[6]! | DR6_BT;
    return { kind: "inject", vector: Vector.DB };
  }
  return RESUME;
}

/**
 * One segment register of the new task (Xen's task_switch_load_seg): null data segments load as
 * unusable; CS and SS must not be null. The descriptor comes from the GDT or the new LDT; #TS for
 * a bad selector or type or privilege, #NP when not present (#SS for SS). The accessed bit is set
 * in the descriptor (and in the loaded access rights).
 */
function loadSegment(
  mem: Linear,
  s: number,
  sel: number,
  cpl: number,
  ext: number,
  gdtBase: number,
  gdtLimit: number,
  ldt: Descriptor | undefined,
): { desc: Descriptor | undefined } | Failure {
  const ts: Fault = { vector: Vector.TS, errorCode: (sel & 0xfffc) | ext };
  const name = SEGMENTS[s]!.name;
  if ((sel & 0xfffc) === 0) return s === CS || s === SS ? ts : { desc: undefined };
  const inLdt = (sel & 4) !== 0;
  if (inLdt && ldt === undefined) return ts;
  const tableBase = inLdt ? ldt!.base : gdtBase;
  const tableLimit = inLdt ? ldt!.limit : gdtLimit;
  if ((sel & 0xfff8) + 7 > tableLimit) return ts;
  const at = (tableBase + (sel & 0xfff8)) >>> 0;
  const what = `the new task's ${name} descriptor 0x${sel.toString(16)}`;
  const lo = mem.read(at, 4, what);
  if (typeof lo !== "number") return lo;
  const hi = mem.read(at + 4, 4, what);
  if (typeof hi !== "number") return hi;
  const d = decode(lo, hi);
  const dpl = (d.ar >>> 5) & 3;
  const rpl = sel & 3;
  const code = (d.ar & 0x8) !== 0;
  const conforming = code && (d.ar & 0x4) !== 0;
  const readableOrWritable = (d.ar & 0x2) !== 0; // code: readable; data: writable
  if ((d.ar & 0x10) === 0) return ts; // a system descriptor
  if (s === CS) {
    if (!code) return ts;
    if (conforming ? dpl > rpl : dpl !== rpl) return ts;
  } else if (s === SS) {
    if (code || !readableOrWritable) return ts;
    if (dpl !== cpl || rpl !== cpl) return ts;
  } else {
    if (code && !readableOrWritable) return ts; // execute-only code
    if (!conforming && (dpl < cpl || dpl < rpl)) return ts;
  }
  if ((d.ar & 0x80) === 0) return { vector: s === SS ? Vector.SS : Vector.NP, errorCode: (sel & 0xfffc) | ext };
  if ((d.ar & 1) === 0) {
    // Set the accessed bit (Xen: except where writes are discarded; here, where the page is read-only).
    mem.write(at + 5, 1, ((hi >>> 8) & 0xff) | 1, what);
    d.ar |= 1;
  }
  return { desc: d };
}
