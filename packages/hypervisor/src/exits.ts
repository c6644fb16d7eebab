/**
 * VM-exit dispatch (Xen's vmx_vmexit_handler, reduced): each basic exit reason (SDM Appendix C)
 * to its handler, which emulates the instruction against the domain's state and devices, and
 * answers resume, inject an exception, or crash the domain. Everything read from the guest
 * (registers, the exit qualification, guest memory for string I/O) is validated here; nothing a
 * guest does can make a handler throw into the scheduler.
 */
import { Access, type AccessSize, PAGE_SIZE, PagingFormat, PdpteLoadStatus, Vector, loadPaePdptes, type PagingLevel, type U64 } from "@vtlab/arch";
import {
  CR0_CD,
  CR0_NE,
  CR0_NW,
  CR0_PE,
  CR0_PG,
  CR0_WP,
  CR4_LA57,
  CR4_PAE,
  CR4_SUPPORTED,
  CR4_VMXE,
  DEBUGCTL_WRITABLE,
  ENTRY_IA32E_MODE,
  EFER_LMA,
  EFER_LME,
  EFER_NXE,
  EFER_SCE,
  ExitReason,
  MSR,
  RFLAGS_DF,
  RFLAGS_IF,
  SECONDARY_ENABLE_RDTSCP,
  SECONDARY_UNRESTRICTED_GUEST,
  SEG_ATTR_L,
  VmcsField as F,
  defaultCpuid,
  exitReasonName,
  patValid,
  readMsr,
  writeMsr,
  type ExitOutcome,
  type VmExit,
  INVVPID_SINGLE_CONTEXT,
} from "@vtlab/cpu-vmx";
import { ShadowPaging } from "@vtlab/mmu-shadow";
import type { Domain, Hypervisor, Vcpu } from "./hypervisor.js";
import { HYPERCALL_PREEMPTED, hypercall } from "./xen/hypercall.js";
import { RESUME } from "./outcomes.js";
import { handleMmio } from "./mmio.js";
import { xenCpuid } from "./xen/cpuid.js";
import { isXenMsr, rdmsrXen, wrmsrXen } from "./xen/hypercall_page.js";
import { isPolicyMsr, rdmsrPolicy, wrmsrPolicy } from "./xen/msr.js";
import { taskSwitch } from "./task-switch.js";
import { leaveRealMode, realModeNotRam } from "./realmode.js";

export interface ExitContext {
  readonly hv: Hypervisor;
  readonly domain: Domain;
  readonly vcpu: Vcpu;
}

/** Exit counts by basic reason. */
export class ExitStats {
  readonly byReason = new Float64Array(80);
  total = 0;
  /** I/O instruction exits (each a device-model round trip). */
  io = 0;
  /** Events delivered again because an exit interrupted their delivery (IDT-vectoring information). */
  reinjected = 0;
  /** Port accesses done by string I/O exits (one exit, many accesses). */
  ioAccesses = 0;
  /** MMIO exits: EPT violations or shadow #PFs emulated as a device access (mmio.ts). */
  mmio = 0;
  /** Device accesses those exits made on the MMIO bus (a 64-bit access counts two 32-bit ones). */
  mmioAccesses = 0;
  /** Instructions the hypervisor emulated in real mode on shadow paging (realmode.ts, Xen's vmx_realmode). */
  realModeInstructions = 0;
  byReasonNames(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let r = 0; r < this.byReason.length; r++) if (this.byReason[r]! > 0) out[exitReasonName(r)] = this.byReason[r]!;
    return out;
  }
}

/**
 * CR0 bits the hypervisor owns (CR0 guest/host mask): PE and PG (leaving IA-32e mode is not
 * modelled), NE (fixed to 1 in VMX operation), CD and NW.
 */
export const CR0_HOST_OWNED = (CR0_PE | CR0_NE | CR0_NW | CR0_CD | CR0_PG) >>> 0;

/** Elements one REP INS/OUTS exit moves before the instruction is re-executed for the rest. */
export const MAX_STRING_IO_PER_EXIT = 4096;
const gp0 = (): ExitOutcome => ({ kind: "inject", vector: Vector.GP, errorCode: 0 });

function skip(v: Vcpu, exit: VmExit): void {
  const vmcs = v.vmcs;
  vmcs.setNatural(F.GUEST_RIP, vmcs.readNatural(F.GUEST_RIP) + exit.instructionLength);
  // Completing the instruction ends blocking by STI and by MOV SS (SDM 26.3.1.5; Xen's update_guest_eip).
  const intr = vmcs.read32(F.GUEST_INTERRUPTIBILITY_INFO);
  if ((intr & 3) !== 0) vmcs.setField(F.GUEST_INTERRUPTIBILITY_INFO, intr & ~3);
}

const cpuidOut = new Int32Array(4);

export function handleExit(ctx: ExitContext, exit: VmExit): ExitOutcome {
  const d = ctx.domain;
  const v = ctx.vcpu;
  const basic = exit.reason & 0xffff;
  d.exitStats.total++;
  if (basic < d.exitStats.byReason.length) d.exitStats.byReason[basic]!++;
  if ((exit.reason & 0x8000_0000) !== 0) return { kind: "crash", reason: `VM entry failed (exit reason ${basic}: ${exitReasonName(basic)})` };
  const cpu = v.cpu;
  switch (basic) {
    case ExitReason.Cpuid: {
      const leaf = cpu.lo[0]! >>> 0;
      const sub = cpu.lo[1]! >>> 0;
      cpuidOut[0] = 0;
      cpuidOut[1] = 0;
      cpuidOut[2] = 0;
      cpuidOut[3] = 0;
      // The hypervisor range 0x40000000-0x4FFFFFFF: Xen's leaves (xen/cpuid.ts).
      if (!xenCpuid(ctx, leaf, sub, cpuidOut)) {
        defaultCpuid(cpu, leaf, sub, cpuidOut);
        if (leaf === 1) {
          cpuidOut[1] = (cpuidOut[1]! & 0x00ff_ffff) | (v.id << 24); // initial APIC id
          cpuidOut[2] = (cpuidOut[2]! & ~(1 << 5)) | (1 << 31); // no VMX for the guest; the hypervisor-present bit
          if (v.apic !== undefined) {
            cpuidOut[2] = cpuidOut[2]! | (1 << 21); // ECX.x2APIC
            cpuidOut[3] = cpuidOut[3]! | (1 << 9); // EDX.APIC: an on-chip local APIC
          }
        } else if (leaf === 0x8000_0001 && (v.vmcs.read32(F.SECONDARY_VM_EXEC_CONTROL) & SECONDARY_ENABLE_RDTSCP) === 0) {
          // RDTSCP is #UD in non-root operation without the "enable RDTSCP" control (SDM 25.3):
          // not advertised then (EDX bit 27), as Xen clears it from a guest's policy, and as the
          // Xen TSC leaf already says (xen/cpuid.ts).
          cpuidOut[3] = cpuidOut[3]! & ~CPUID_80000001_EDX_RDTSCP;
        }
      }
      cpu.setReg32(0, cpuidOut[0]!);
      cpu.setReg32(3, cpuidOut[1]!);
      cpu.setReg32(1, cpuidOut[2]!);
      cpu.setReg32(2, cpuidOut[3]!);
      skip(v, exit);
      return RESUME;
    }
    case ExitReason.Hlt: {
      skip(v, exit);
      const rflags = v.vmcs.read32(F.GUEST_RFLAGS);
      if ((rflags & RFLAGS_IF) === 0) {
        // Xen's hvm_hlt: halting with interrupts off is a request to power off; only an NMI
        // could wake the vCPU. The vCPU goes down, and the domain shuts down with the last one.
        v.down = true;
        v.blocked = true;
        // (vCPUs never brought up with VCPUOP_up count as down.)
        if (d.vcpus.every((x) => !x.isUp)) d.powerOff("all vCPUs halted with interrupts disabled");
        return RESUME;
      }
      // Blocked until its APIC has an interrupt to take (the scheduler's pollApics wakes it).
      // An event-channel callback vector still pending keeps it running too (Xen's hvm_hlt blocks
      // only without local_events_need_delivery).
      if ((v.apic === undefined || v.apic.pendingVector() < 0) && !d.xen.upcall.callbackVectorPending(v)) v.blocked = true;
      return RESUME;
    }
    case ExitReason.Vmcall: {
      // xen/hypercall.ts: Xen's hvm_hypercall table.
      const result = hypercall(ctx);
      // A continuation leaves RIP on the VMCALL and RAX = the number: the guest calls again.
      if (result === HYPERCALL_PREEMPTED) return RESUME;
      cpu.lo[0] = result | 0;
      cpu.hi[0] = result < 0 ? -1 : 0;
      skip(v, exit);
      return RESUME;
    }
    case ExitReason.IoInstruction:
      return ioExit(ctx, exit);
    case ExitReason.MsrRead:
      return msrRead(ctx, exit);
    case ExitReason.MsrWrite:
      return msrWrite(ctx, exit);
    case ExitReason.CrAccess:
      // CR3 (loads and stores exit under shadow paging) belongs to the memory virtualizer.
      if ((exit.qualification & 0xf) === 3) return d.paging.handleExit(cpu, v.vmcs, exit);
      return crAccess(ctx, exit);
    case ExitReason.ExceptionOrNmi:
    case ExitReason.Invlpg: {
      // Shadow paging: #PF (the exception bitmap has it) and INVLPG. EPT sets neither.
      const out = d.paging.handleExit(cpu, v.vmcs, exit);
      if (out.kind === "mmio") return handleMmio(ctx, exit, out.gpa, out.write);
      return out;
    }
    case ExitReason.TripleFault:
      return { kind: "crash", reason: "triple fault" };
    case ExitReason.TaskSwitch:
      // Emulated as Xen's hvm_task_switch does (task-switch.ts).
      return taskSwitch(ctx, exit, (cr3) => loadGuestPdptes(ctx, cr3));
    case ExitReason.EptViolation:
    case ExitReason.EptMisconfig: {
      // Emulated real mode on shadow reaches guest-physical memory through the p2m (realmode.ts).
      if (v.realModeEmulated) return { kind: "crash", reason: realModeNotRam(v, exit.guestPhysical) };
      const out = d.paging.handleExit(cpu, v.vmcs, exit);
      if (out.kind === "mmio") return handleMmio(ctx, exit, out.gpa, out.write);
      return out;
    }
    case ExitReason.Pause:
      // PAUSE-loop exiting (a spin-wait): Xen's handler yields (do_sched_op(SCHEDOP_yield)) and
      // leaves RIP at the PAUSE, which runs again at the next entry.
      v.xenTimers.yieldRequested = true;
      return RESUME;
    case ExitReason.PreemptionTimer: // the slice is over: the scheduler picks the next vCPU
    case ExitReason.InterruptWindow:
    case ExitReason.ExternalInterrupt:
      return RESUME; // a host kick or an open window: the injection logic runs before the next entry
    case ExitReason.Invd:
    case ExitReason.Wbinvd:
      skip(v, exit);
      return RESUME;
    case ExitReason.Vmcall + 1: // VMCLEAR
    case ExitReason.Vmcall + 2: // VMLAUNCH
    case ExitReason.Vmcall + 3: // VMPTRLD
    case ExitReason.Vmcall + 4: // VMPTRST
    case ExitReason.Vmcall + 5: // VMREAD
    case ExitReason.Vmcall + 6: // VMRESUME
    case ExitReason.Vmcall + 7: // VMWRITE
    case ExitReason.Vmcall + 8: // VMXOFF
    case ExitReason.Vmcall + 9: // VMXON
    case ExitReason.Invept:
    case ExitReason.Invvpid:
      return { kind: "inject", vector: Vector.UD }; // no nested VMX: CPUID hides it, the instructions are #UD
    default:
      return { kind: "crash", reason: `unhandled VM exit ${basic} (${exitReasonName(basic)}) at RIP 0x${v.vmcs.readNatural(F.GUEST_RIP).toString(16)}` };
  }
}

/** CPUID.80000001H:EDX bit 27: RDTSCP and IA32_TSC_AUX. */
const CPUID_80000001_EDX_RDTSCP = 1 << 27;

/** I/O instruction exits (qualification: SDM Table 28-5). */
function ioExit(ctx: ExitContext, exit: VmExit): ExitOutcome {
  const { domain: d, vcpu: v } = ctx;
  const cpu = v.cpu;
  const q = exit.qualification;
  const size = ((q & 7) + 1) as AccessSize;
  const input = (q & (1 << 3)) !== 0;
  const string = (q & (1 << 4)) !== 0;
  const rep = (q & (1 << 5)) !== 0;
  const port = q >>> 16;
  d.exitStats.io++;
  if (size !== 1 && size !== 2 && size !== 4) return { kind: "crash", reason: `I/O exit with a bad size in qualification 0x${q.toString(16)}` };
  if (!string) {
    d.exitStats.ioAccesses++;
    if (input) {
      const value = d.ports.read(port, size);
      if (size === 4) cpu.setReg32(0, value);
      else if (size === 2) cpu.lo[0] = (cpu.lo[0]! & ~0xffff) | (value & 0xffff);
      else cpu.lo[0] = (cpu.lo[0]! & ~0xff) | (value & 0xff);
    } else {
      const mask = size === 4 ? 0xffff_ffff : size === 2 ? 0xffff : 0xff;
      d.ports.write(port, size, (cpu.lo[0]! & mask) >>> 0);
    }
    skip(v, exit);
    return RESUME;
  }
  return stringIo(ctx, exit, size, input, rep, port);
}

const TWO_32 = 0x1_0000_0000;

/**
 * INS/OUTS (SDM Vol. 2B INS/OUTS, REP): ES:RDI or seg:RSI, RCX times with REP. The address size
 * (bits 9:7) and, for OUTS, the segment register (bits 17:15) come from the VM-exit
 * instruction-information field (SDM Table 28-8). Every 64-bit quantity (the pointer register,
 * its sum with an FS/GS base, RCX) is kept as two 32-bit halves, so nothing the guest writes is
 * rounded: a non-canonical element address is #GP(0) (#SS(0) for an SS reference, SDM Vol. 3A
 * 6.15), a higher-half buffer reads and writes its own bytes, RSI/RDI and RCX move exactly. An
 * element split across two pages is translated page by page and moved byte by byte. At most
 * MAX_STRING_IO_PER_EXIT elements per exit; the loop also stops as soon as the domain is no
 * longer running (a write to the debug-exit port shut it down), so the rest of the string is not
 * sent to a domain that has ended. Modelled more simply than hardware outside 64-bit mode:
 * segment limits are not checked.
 */
function stringIo(ctx: ExitContext, exit: VmExit, size: 1 | 2 | 4, input: boolean, rep: boolean, port: number): ExitOutcome {
  const { domain: d, vcpu: v } = ctx;
  const cpu = v.cpu;
  const vmcs = v.vmcs;
  const info = exit.instructionInfo ?? 2 << 7;
  const asz = (info >>> 7) & 7;
  const segReg = input ? 0 : (info >>> 15) & 7; // INS always writes ES
  if (asz > 2 || segReg > 5) return { kind: "crash", reason: `string I/O exit with a bad instruction information 0x${info.toString(16)}` };
  const long = (vmcs.read32(F.GUEST_CS_AR_BYTES) & SEG_ATTR_L) !== 0;
  const la57 = (vmcs.read32(F.GUEST_CR4) & CR4_LA57) !== 0;
  // Bits 63:47 (63:56 with LA57) of a canonical address are all equal: the top bits of the high half.
  const canonicalShift = la57 ? 24 : 15;
  // In 64-bit mode only FS and GS have a base; elsewhere every segment's (its limit is not checked).
  const base = !long || segReg >= 4 ? vmcs.readNatural((F.GUEST_ES_BASE + 2 * segReg) as typeof F.GUEST_ES_BASE) : 0;
  const baseLo = base >>> 0;
  const baseHi = Math.floor(base / TWO_32) >>> 0;
  const ptrReg = input ? 7 : 6;
  const addrMask = asz === 0 ? 0xffff : 0xffff_ffff;
  let pLo = (cpu.lo[ptrReg]! & addrMask) >>> 0;
  let pHi = asz === 2 ? cpu.hi[ptrReg]! >>> 0 : 0;
  let cLo = rep ? (cpu.lo[1]! & addrMask) >>> 0 : 1;
  let cHi = rep && asz === 2 ? cpu.hi[1]! >>> 0 : 0;
  const step = (vmcs.read32(F.GUEST_RFLAGS) & RFLAGS_DF) !== 0 ? -size : size;
  const access = (input ? Access.Write : Access.Read) | (cpu.cpl === 3 ? Access.User : 0);
  const mem = ctx.hv.memory;
  let outcome: ExitOutcome = RESUME;
  // One translation per page the string touches (the guest's tables cannot change in the middle
  // of one instruction), not one per element.
  let pageLin = Number.NaN;
  let pageGpa = 0;
  // A guest-chosen RCX may be 2^64 - 1: handle at most a batch per exit and leave RIP on the
  // instruction, so the guest re-executes it for the rest (Xen's emulator works in batches too)
  // and the scheduler can run others in between (each element is charged: CostModel.deviceModelAccess).
  // What is left of the slice bounds the batch too (Vcpu.stringIoLimit, at least 1 element).
  const most = Math.min(MAX_STRING_IO_PER_EXIT, v.stringIoLimit);
  let left = cHi !== 0 ? most : Math.min(cLo, most);
  /** A #PF for an element whose page does not translate (CR2: the first byte that faults). */
  const pageFault = (errorCode: number, cr2: number): ExitOutcome => ({ kind: "inject", vector: Vector.PF, errorCode, cr2 });
  while (left > 0) {
    // The element's linear address, exactly: the pointer plus the segment base in halves.
    let lin: number;
    let off: number;
    if (long) {
      const sLo = pLo + baseLo;
      const sHi = (pHi + baseHi + (sLo >= TWO_32 ? 1 : 0)) | 0;
      if (sHi >> canonicalShift !== 0 && sHi >> canonicalShift !== -1) {
        outcome = { kind: "inject", vector: segReg === 2 ? Vector.SS : Vector.GP, errorCode: 0 };
        break;
      }
      lin = sHi * TWO_32 + (sLo >>> 0);
      off = sLo & (PAGE_SIZE - 1);
    } else {
      lin = (pLo + baseLo) >>> 0;
      off = lin & (PAGE_SIZE - 1);
    }
    const page = lin - off;
    if (page !== pageLin) {
      const g = d.paging.gvaToGpa(cpu, page, access);
      if (typeof g !== "number") {
        outcome = pageFault(g.errorCode, lin);
        break;
      }
      pageLin = page;
      pageGpa = g;
    }
    const gpa = pageGpa + off;
    if (off + size <= PAGE_SIZE) {
      const hpa = d.ramHpa(gpa, input);
      if (hpa === undefined) {
        outcome = { kind: "crash", reason: `string I/O at port 0x${port.toString(16)} touches GPA 0x${gpa.toString(16)}: not RAM` };
        break;
      }
      d.exitStats.ioAccesses++;
      if (input) {
        const value = d.ports.read(port, size);
        if (size === 1) mem.write8(hpa, value);
        else if (size === 2) mem.write16(hpa, value);
        else mem.write32(hpa, value);
      } else {
        const value = size === 1 ? mem.read8(hpa) : size === 2 ? mem.read16(hpa) : mem.read32(hpa);
        d.ports.write(port, size, typeof value === "number" ? value : 0); // hpa is inside the domain's RAM: always a number
      }
    } else {
      // The element is split across two pages: the next page's address (canonical, or #GP/#SS;
      // past the top of the address space it wraps to 0),
      // both translated before the port is touched (an IN may have side effects), then byte by byte.
      const next = long ? page + PAGE_SIZE : (page + PAGE_SIZE) >>> 0;
      const limit = la57 ? 2 ** 56 : 2 ** 47;
      if (long && next === limit) {
        outcome = { kind: "inject", vector: segReg === 2 ? Vector.SS : Vector.GP, errorCode: 0 };
        break;
      }
      const g2 = d.paging.gvaToGpa(cpu, next, access);
      if (typeof g2 !== "number") {
        outcome = pageFault(g2.errorCode, next);
        break;
      }
      const first = PAGE_SIZE - off;
      const hpa1 = d.ramHpa(gpa, input);
      const hpa2 = d.ramHpa(g2, input);
      if (hpa1 === undefined || hpa2 === undefined) {
        outcome = { kind: "crash", reason: `string I/O at port 0x${port.toString(16)} touches GPA 0x${(hpa1 === undefined ? gpa : g2).toString(16)}: not RAM (an element split across pages)` };
        break;
      }
      d.exitStats.ioAccesses++;
      if (input) {
        const value = d.ports.read(port, size);
        for (let k = 0; k < size; k++) mem.write8(k < first ? hpa1 + k : hpa2 + (k - first), (value >>> (8 * k)) & 0xff);
      } else {
        let value = 0;
        for (let k = 0; k < size; k++) {
          const b = mem.read8(k < first ? hpa1 + k : hpa2 + (k - first));
          value |= (typeof b === "number" ? b : 0) << (8 * k);
        }
        d.ports.write(port, size, value >>> 0);
      }
    }
    // The element is done: RSI/RDI and RCX move, exactly, in halves.
    if (asz === 2) {
      pLo += step;
      if (pLo >= TWO_32) {
        pLo -= TWO_32;
        pHi = (pHi + 1) >>> 0;
      } else if (pLo < 0) {
        pLo += TWO_32;
        pHi = (pHi - 1) >>> 0;
      }
    } else pLo = ((pLo + step) & addrMask) >>> 0;
    if (cLo === 0) {
      cLo = 0xffff_ffff;
      cHi = (cHi - 1) >>> 0;
    } else cLo--;
    left--;
    // A write to the debug-exit port (or a crash) ended the domain: nothing more is sent.
    if (d.state !== "running") break;
  }
  setPtr(v, ptrReg, pLo, pHi, asz);
  if (rep) setPtr(v, 1, cLo, cHi, asz);
  if (outcome.kind === "resume" && cLo === 0 && cHi === 0) skip(v, exit);
  return outcome;
}

function setPtr(v: Vcpu, r: number, lo: number, hi: number, asz: number): void {
  const cpu = v.cpu;
  if (asz === 0) cpu.lo[r] = (cpu.lo[r]! & ~0xffff) | (lo & 0xffff);
  else if (asz === 1) cpu.setReg32(r, lo >>> 0);
  else {
    cpu.lo[r] = lo | 0;
    cpu.hi[r] = hi | 0;
  }
}

/**
 * MOV to CR4 that touched a host-owned bit: VMXE on every domain (setting it is #GP: no nested
 * VMX), and PAE on shadow domains, whose vCPUs keep PAE on underneath (paging-off guests run in
 * compatibility mode on the identity table). Checks as MOV CR4 does (SDM "MOV--Move to/from
 * Control Registers"): reserved bits, and PAE cleared in IA-32e mode, are #GP.
 */
function cr4Write(ctx: ExitContext, exit: VmExit, gpr: number): ExitOutcome {
  const { vcpu: v, domain: d } = ctx;
  const vmcs = v.vmcs;
  const lo = gpr === 4 ? vmcs.read32(F.GUEST_RSP) : v.cpu.lo[gpr]! >>> 0;
  const hi = gpr === 4 ? 0 : v.cpu.hi[gpr]! >>> 0;
  if (hi !== 0 || (lo & ~CR4_SUPPORTED) !== 0 || (lo & CR4_VMXE) !== 0) return gp0();
  const lma = ((d.hap ? vmcs.read32(F.GUEST_IA32_EFER) : v.guestEfer) & EFER_LMA) !== 0;
  if (lma && (lo & CR4_PAE) === 0) return gp0();
  const oldCr4 = vmcs.read32(F.GUEST_CR4);
  if (lma && ((oldCr4 ^ lo) & CR4_LA57) !== 0) return gp0();
  const cr4 = (lo | CR4_VMXE | (d.hap ? 0 : CR4_PAE)) >>> 0;
  vmcs.setNatural(F.CR4_READ_SHADOW, lo);
  vmcs.setNatural(F.GUEST_CR4, cr4);
  // A MOV to CR4 that changes it flushes the TLB (the CPU does so for the bits the guest owns,
  // SDM 4.10.4.1); the exit kept it from this one. With VPIDs the translations would otherwise
  // outlive the change (on shadow paging the vCPU has a VPID too).
  if (cr4 !== oldCr4 >>> 0) v.cpu.invvpid(INVVPID_SINGLE_CONTEXT, vmcs.read32(F.VIRTUAL_PROCESSOR_ID));
  skip(v, exit);
  return RESUME;
}

function msrRead(ctx: ExitContext, exit: VmExit): ExitOutcome {
  const { vcpu: v, hv } = ctx;
  const cpu = v.cpu;
  const msr = cpu.lo[1]! >>> 0;
  let lo: number;
  let hi = 0;
  if (msr === MSR.EFER) lo = ctx.domain.hap ? v.vmcs.read32(F.GUEST_IA32_EFER) : v.guestEfer;
  else if (msr === MSR.TSC) {
    const c = hv.clock.cycles;
    lo = c >>> 0;
    hi = Math.floor(c / 2 ** 32) >>> 0;
  } else if (msr === MSR.APIC_BASE || (msr >= 0x800 && msr <= 0x8ff)) {
    const r = v.apic?.readMsr(msr);
    if (r === undefined || !r.ok) return gp0();
    lo = r.lo;
    hi = r.hi;
  } else if (msr === MSR.PAT || msr === MSR.DEBUGCTL) {
    // VMCS guest state (loaded and saved by the PAT and debug-control entry/exit controls).
    const r = v.vmcs.readHalves(msr === MSR.PAT ? F.GUEST_IA32_PAT : F.GUEST_IA32_DEBUGCTL);
    lo = r.lo;
    hi = r.hi;
  } else if (isXenMsr(msr)) {
    // Xen's MSRs (the hypercall page; xen/hypercall_page.ts). Outside both MSR-bitmap ranges, so they always exit.
    const r = rdmsrXen(ctx, msr);
    if (r === undefined) return gp0();
    lo = r[0];
    hi = r[1];
  } else if (isPolicyMsr(msr)) {
    // Model-specific MSRs answered by Xen's guest MSR policy (xen/msr.ts).
    const r = rdmsrPolicy(msr);
    if (r === undefined) return gp0();
    lo = r[0];
    hi = r[1];
  } else {
    const r = readMsr(cpu, msr);
    if (r === undefined) return gp0();
    lo = r.lo;
    hi = r.hi;
  }
  cpu.setReg32(0, lo);
  cpu.setReg32(2, hi);
  skip(v, exit);
  return RESUME;
}

function msrWrite(ctx: ExitContext, exit: VmExit): ExitOutcome {
  const { vcpu: v } = ctx;
  const cpu = v.cpu;
  const msr = cpu.lo[1]! >>> 0;
  const lo = cpu.lo[0]! >>> 0;
  const hi = cpu.lo[2]! >>> 0;
  if (msr === MSR.EFER) {
    const hap = ctx.domain.hap;
    const cur = hap ? v.vmcs.read32(F.GUEST_IA32_EFER) : v.guestEfer;
    const paging = (v.vmcs.read32(F.CR0_READ_SHADOW) & CR0_PG) !== 0; // as the guest sees CR0
    // Reserved bits, or LME changing while paging is on (SDM 10.8.5): #GP. LMA is read-only.
    if (hi !== 0 || (lo & ~(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE)) !== 0 || (paging && ((lo ^ cur) & EFER_LME) !== 0)) return gp0();
    const next = (lo & (EFER_SCE | EFER_NXE | (paging ? 0 : EFER_LME))) | (cur & (EFER_LMA | (paging ? EFER_LME : 0)));
    if (hap) v.vmcs.setField(F.GUEST_IA32_EFER, next);
    else {
      // Shadow: the vCPU runs in IA-32e mode (LME | LMA) underneath, or in PAE paging while the
      // guest has 32-bit or PAE paging on; SCE and NXE are the guest's.
      v.guestEfer = next;
      shadowUnderneath(v, v.vmcs, paging && (next & EFER_LMA) === 0);
    }
  } else if (msr === MSR.TSC) {
    // Modelled more simply: the TSC is the host clock for every domain (writes are ignored).
  } else if (msr === MSR.APIC_BASE || (msr >= 0x800 && msr <= 0x8ff)) {
    if (v.apic === undefined || !v.apic.writeMsr(msr, lo, hi)) return gp0();
  } else if (isXenMsr(msr)) {
    if (!wrmsrXen(ctx, msr, lo, hi)) return gp0();
  } else if (isPolicyMsr(msr)) {
    if (!wrmsrPolicy(msr, lo, hi)) return gp0();
  } else if (msr === MSR.PAT) {
    // Guest state in GUEST_IA32_PAT (Xen's vmx_set_guest_pat); a reserved memory type is #GP (SDM 11.12.2).
    // PAT passes through the MSR bitmap, so this runs only if a bitmap intercepts it.
    if (!patValid(lo, hi)) return gp0();
    v.vmcs.setField(F.GUEST_IA32_PAT, lo, hi);
  } else if (msr === MSR.DEBUGCTL) {
    // Guest state in GUEST_IA32_DEBUGCTL, as Xen's vmx_msr_write_intercept keeps it: LBR and BTF
    // are accepted (and not acted on), other bits are #GP.
    if (hi !== 0 || (lo & ~DEBUGCTL_WRITABLE) !== 0) return gp0();
    v.vmcs.setField(F.GUEST_IA32_DEBUGCTL, lo, 0);
  } else if (msr === MSR.FS_BASE || msr === MSR.GS_BASE) {
    return { kind: "crash", reason: `WRMSR 0x${msr.toString(16)} trapped but it is VMCS guest state the hypervisor does not emulate` };
  } else if (!writeMsr(cpu, msr, lo, hi)) {
    return gp0();
  }
  skip(v, exit);
  return RESUME;
}

/**
 * The mode a shadow vCPU runs in underneath (the guest sees its own CR0, CR4 and EFER through
 * the read shadows and `guestEfer`): IA-32e mode, on long-mode shadows or on the identity table
 * while the guest's paging is off (compatibility mode); or, while the guest has 32-bit or PAE
 * paging on (`legacy`), PAE paging on PAE shadows: EFER.LME and LMA clear and no "IA-32e mode
 * guest" entry control. CR0.PG and CR4.PAE are set underneath either way.
 */
function shadowUnderneath(v: Vcpu, vmcs: Vcpu["vmcs"], legacy: boolean): void {
  vmcs.setField(F.GUEST_IA32_EFER, (v.guestEfer & (EFER_SCE | EFER_NXE)) | (legacy ? 0 : EFER_LME | EFER_LMA));
  const entry = vmcs.read32(F.VM_ENTRY_CONTROLS);
  vmcs.setField(F.VM_ENTRY_CONTROLS, (legacy ? entry & ~ENTRY_IA32E_MODE : entry | ENTRY_IA32E_MODE) >>> 0);
}

/** GUEST_PDPTE0-3 in order. */
const GUEST_PDPTES = [F.GUEST_PDPTE0, F.GUEST_PDPTE1, F.GUEST_PDPTE2, F.GUEST_PDPTE3] as const;

/**
 * Read the guest's four PAE PDPTEs at guest-physical `cr3` (bits 31:5) through the p2m into
 * GUEST_PDPTE0-3 (Xen's vmx_load_pdptrs), with the checks MOV CR0 makes (SDM 4.4.1): false,
 * and nothing written, when a present entry sets a reserved bit or the PDPT is not RAM.
 */
function loadGuestPdptes(ctx: ExitContext, cr3: number): boolean {
  const { domain: d, hv, vcpu: v } = ctx;
  const tables = {
    readEntry: (gpa: number, _level: PagingLevel, out: U64) => {
      const hpa = d.ramHpa(gpa);
      return hpa === undefined ? "not RAM" : hv.memory.read64(hpa, out);
    },
    setEntryBits: () => undefined,
  };
  const regs = new Uint32Array(8);
  if (loadPaePdptes(tables, cr3, v.cpu.paging.maxPhyAddr, regs).status !== PdpteLoadStatus.Ok) return false;
  for (let i = 0; i < 4; i++) v.vmcs.setField(GUEST_PDPTES[i]!, regs[2 * i]!, regs[2 * i + 1]!);
  // The vCPU's own PDPTE registers too (VM entry loads them from the fields again): a walk by the
  // hypervisor before the next entry (the task switch's descriptor reads) sees the new ones.
  v.cpu.pdpte.set(regs);
  return true;
}

/** Control-register accesses (qualification: SDM Table 28-3). */
function crAccess(ctx: ExitContext, exit: VmExit): ExitOutcome {
  const { vcpu: v } = ctx;
  const q = exit.qualification;
  const cr = q & 0xf;
  const type = (q >>> 4) & 3;
  const gpr = (q >>> 8) & 0xf;
  const vmcs = v.vmcs;
  if (type === 0 && cr === 0) {
    const lo = gpr === 4 ? vmcs.read32(F.GUEST_RSP) : v.cpu.lo[gpr]! >>> 0;
    const hi = gpr === 4 ? 0 : v.cpu.hi[gpr]! >>> 0;
    if (hi !== 0) return gp0(); // CR0[63:32] are reserved (SDM 2.5)
    if ((lo & CR0_PG) !== 0 && (lo & CR0_PE) === 0) return gp0(); // PG without PE (SDM MOV CR0)
    if ((lo & CR0_NW) !== 0 && (lo & CR0_CD) === 0) return gp0(); // NW without CD
    const d = ctx.domain;
    const shadowPaging = !d.hap;
    // Real mode (PE = 0, with PG = 0 checked above): on EPT the vCPU runs it as an unrestricted
    // guest (a paging-off guest always has the control on, below and in startRealModeAp); a
    // shadow domain has no unrestricted guest: a vCPU started by a SIPI is emulated until it sets
    // PE (realmode.ts), and a guest turning protection off again is not modelled.
    if ((lo & CR0_PE) === 0 && shadowPaging && !v.realModeEmulated) return { kind: "crash", reason: "the guest turned protection off (CR0.PE = 0): real mode on a shadow-paging domain is modelled only from a start-up IPI to the first MOV CR0 that sets PE (it needs unrestricted guest, which needs EPT)" };
    if (v.realModeEmulated && (lo & CR0_PE) !== 0) {
      const reason = leaveRealMode(d, v, lo);
      if (reason !== undefined) return { kind: "crash", reason };
      // Protected mode with paging off, in IA-32e mode on the identity table's shadow underneath
      // (GUEST_CR0 gets PG and WP below).
      shadowUnderneath(v, vmcs, false);
    }
    const oldPg = vmcs.read32(F.CR0_READ_SHADOW) & CR0_PG; // as the guest sees it
    if (((oldPg ^ lo) & CR0_PG) !== 0) {
      // Paging on or off (Xen's hvm_set_cr0), with the guest's view of EFER and CR4.
      const efer = shadowPaging ? v.guestEfer : vmcs.read32(F.GUEST_IA32_EFER);
      const cr4 = shadowPaging ? vmcs.read32(F.CR4_READ_SHADOW) : vmcs.read32(F.GUEST_CR4);
      if ((lo & CR0_PG) !== 0) {
        if ((efer & EFER_LME) === 0) {
          // 32-bit or PAE paging (SDM 4.1.1). On EPT the vCPU runs it as is; PAE paging takes
          // its PDPTEs from GUEST_PDPTE0-3 at VM entry, which the CR0 write that turns it on
          // must fill from the guest's PDPT first (Xen's vmx_load_pdptrs), #GP on a reserved bit.
          // On shadow, mmu-shadow reads the PDPTEs itself (below).
          if (!shadowPaging && (cr4 & CR4_PAE) !== 0 && !loadGuestPdptes(ctx, vmcs.readNatural(F.GUEST_CR3))) return gp0();
        } else if ((cr4 & CR4_PAE) === 0) return gp0(); // IA-32e mode needs CR4.PAE (SDM 10.8.5)
      } else if ((vmcs.read32(F.GUEST_CS_AR_BYTES) & SEG_ATTR_L) !== 0) {
        return gp0(); // leaving long mode from 64-bit code is #GP
      }
      const on = (lo & CR0_PG) !== 0;
      const ia32e = on && (efer & EFER_LME) !== 0;
      if (d.paging instanceof ShadowPaging) {
        // The vCPU stays in IA-32e mode underneath; the shadow moves between the identity table
        // (paging off) and the guest's own CR3 (paging on).
        // A guest in 32-bit or PAE paging is shadowed with PAE tables, and the vCPU runs in PAE
        // paging underneath (Xen's shadow modes for 2- and 3-level guests).
        const format = !on || ia32e ? PagingFormat.Long : (cr4 & CR4_PAE) !== 0 ? PagingFormat.Pae : PagingFormat.Bits32;
        const err = on ? d.paging.leaveUnpaged(v.cpu, vmcs, format) : d.paging.enterUnpaged(v.cpu, vmcs, d.identityPageTable!);
        if (err === "#GP") return gp0(); // a PDPTE with a reserved bit (SDM 4.4.1)
        if (err !== undefined) return { kind: "crash", reason: `turning paging ${on ? "on" : "off"}: ${err}` };
        v.guestEfer = ia32e ? efer | EFER_LMA : efer & ~EFER_LMA;
        shadowUnderneath(v, vmcs, on && !ia32e);
      } else {
        // Activating or leaving IA-32e mode: EFER.LMA and the "IA-32e mode guest" entry control follow (SDM 10.8.5, 25.8.1).
        // A guest with paging off runs as an unrestricted guest (EPT translates its physical
        // addresses, SDM 27.3.1.1), whichever way it booted; Xen keeps the control on for HAP guests.
        if (!on) vmcs.setField(F.SECONDARY_VM_EXEC_CONTROL, (vmcs.read32(F.SECONDARY_VM_EXEC_CONTROL) | SECONDARY_UNRESTRICTED_GUEST) >>> 0);
        const entry = vmcs.read32(F.VM_ENTRY_CONTROLS);
        vmcs.setField(F.GUEST_IA32_EFER, ia32e ? efer | EFER_LMA : efer & ~EFER_LMA);
        vmcs.setField(F.VM_ENTRY_CONTROLS, (ia32e ? entry | ENTRY_IA32E_MODE : entry & ~ENTRY_IA32E_MODE) >>> 0);
        // A paging-mode change flushes the guest's TLB, as MOV CR0 does (SDM 4.10.4.1).
        v.cpu.invvpid(INVVPID_SINGLE_CONTEXT, vmcs.read32(F.VIRTUAL_PROCESSOR_ID));
      }
    }
    vmcs.setNatural(F.CR0_READ_SHADOW, (lo & (CR0_HOST_OWNED | (shadowPaging ? CR0_WP : 0))) >>> 0);
    // On shadow the vCPU always runs with paging on (on the identity table while the guest has it
    // off), and with WP on: write-protected guest page tables must fault for supervisor writes
    // too. The guest's own WP is the read shadow's; with it clear, mmu-shadow emulates the
    // supervisor writes to read-only pages that fault only because of that (Xen's hvm_update_guest_cr
    // and sh_page_fault).
    // (While real mode is emulated the vCPU does not page at all.)
    vmcs.setNatural(F.GUEST_CR0, (lo | CR0_NE | (shadowPaging && !v.realModeEmulated ? CR0_PG | CR0_WP : 0)) >>> 0);
    skip(v, exit);
    return RESUME;
  }
  if (type === 0 && cr === 4) return cr4Write(ctx, exit, gpr);
  return { kind: "crash", reason: `control-register access (CR${cr}, type ${type}) the hypervisor does not emulate` };
}
