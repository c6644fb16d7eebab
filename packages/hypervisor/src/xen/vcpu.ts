/**
 * HYPERVISOR_vcpu_op (xen/common/domain.c do_vcpu_op, xen/include/public/vcpu.h). PVH vCPU
 * bring-up: VCPUOP_initialise with a `vcpu_hvm_context`, then VCPUOP_up (the other way, INIT-SIPI-
 * SIPI into a real-mode trampoline, is the local APIC's: hypervisor.ts, EPT domains only). Guest
 * structures are read once, by linear
 * address through the guest's own paging (a copy_from_guest), then validated; a bad pointer is
 * -EFAULT.
 */
import { PAGE_SIZE, gfn } from "@vtlab/arch";
import {
  CR0_AM,
  CR0_CD,
  CR0_EM,
  CR0_ET,
  CR0_MP,
  CR0_NE,
  CR0_NW,
  CR0_PE,
  CR0_PG,
  CR0_TS,
  CR0_WP,
  CR4_PAE,
  CR4_SUPPORTED,
  CR4_VMXE,
  EFER_LMA,
  EFER_LME,
  EFER_NXE,
  EFER_SCE,
  ENTRY_IA32E_MODE,
  RFLAGS_FIXED,
  RFLAGS_RESERVED_ZERO,
  RFLAGS_VM,
  SECONDARY_UNRESTRICTED_GUEST,
  SEG_ATTR_CODE,
  SEG_ATTR_DB,
  SEG_ATTR_DPL_SHIFT,
  SEG_ATTR_G,
  SEG_ATTR_L,
  SEG_ATTR_P,
  SEG_ATTR_RW,
  SEG_ATTR_S,
  VmcsField as F,
} from "@vtlab/cpu-vmx";
import { P2mType } from "@vtlab/p2m";
import { ShadowPaging } from "@vtlab/mmu-shadow";
import {
  VCPUOP_down,
  VCPUOP_get_runstate_info,
  VCPUOP_initialise,
  VCPUOP_is_up,
  VCPUOP_register_vcpu_info,
  VCPUOP_register_runstate_memory_area,
  VCPUOP_register_vcpu_time_memory_area,
  VCPUOP_set_periodic_timer,
  VCPUOP_set_singleshot_timer,
  VCPUOP_stop_periodic_timer,
  VCPUOP_stop_singleshot_timer,
  VCPUOP_up,
  VCPU_HVM_MODE_32B,
  VCPU_HVM_MODE_64B,
  XEN_EEXIST,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOENT,
  XEN_ENOMEM,
  XEN_ENOSYS,
  vcpu_register_time_memory_area,
} from "@vtlab/xen-public";
import type { HypercallArgs } from "./table.js";
import { CR0_HOST_OWNED, type ExitContext } from "../exits.js";
import { copyFromGuest } from "../guest-memory.js";
import type { Vcpu } from "../hypervisor.js";
import { registerVcpuInfo } from "./shared_info.js";
import { vcpuTimeOp } from "./sched.js";
import { publishVcpuTime } from "./time.js";

/** sizeof(struct vcpu_hvm_context): mode, pad, then the union of the 32-bit (120) and 64-bit (112) register sets. */
export const VCPU_HVM_CONTEXT_SIZE = 128;

/** Offsets in struct vcpu_hvm_x86_32, from the start of vcpu_hvm_context (cpu_regs at 8); checked with gcc offsetof against the Xen 4.17 public headers. */
const R32 = {
  eax: 8, ecx: 12, edx: 16, ebx: 20, esp: 24, ebp: 28, esi: 32, edi: 36, eip: 40, eflags: 44,
  cr0: 48, cr3: 52, cr4: 56, efer: 64,
  csBase: 72, dsBase: 76, ssBase: 80, esBase: 84, trBase: 88,
  csLimit: 92, dsLimit: 96, ssLimit: 100, esLimit: 104, trLimit: 108,
  csAr: 112, dsAr: 114, ssAr: 116, esAr: 118, trAr: 120,
} as const;
/** Offsets in struct vcpu_hvm_x86_64 (u64 each), from the start of vcpu_hvm_context. */
const R64 = { rax: 8, rcx: 16, rdx: 24, rbx: 32, rsp: 40, rbp: 48, rsi: 56, rdi: 64, rip: 72, rflags: 80, cr0: 88, cr3: 96, cr4: 104, efer: 112 } as const;

/** Per-vCPU PVH bring-up state. */
export interface VcpuBringUp {
  /** VCPUOP_initialise gave it a register state. */
  initialised: boolean;
  /** VCPUOP_up made it runnable (vCPU 0 is up from the start). */
  up: boolean;
}

const contextBytes = new Uint8Array(VCPU_HVM_CONTEXT_SIZE);
const contextView = new DataView(contextBytes.buffer);

/**
 * HYPERVISOR_vcpu_op(int cmd, unsigned int vcpuid, XEN_GUEST_HANDLE_PARAM(void) arg): the first
 * two are 32-bit; the handle is a guest-linear address.
 */
export function do_vcpu_op(ctx: ExitContext, a: HypercallArgs): number {
  return vcpuOp(ctx, a.int(0), a.uint(1), a.ptr(2));
}

function vcpuOp(ctx: ExitContext, cmd: number, vcpuid: number, argPtr: number): number {
  const d = ctx.domain;
  const target = vcpuid < d.vcpus.length ? d.vcpus[vcpuid] : undefined;
  if (target === undefined) return -XEN_ENOENT;
  switch (cmd) {
    case VCPUOP_initialise: {
      if (target.bringUp.initialised) return -XEN_EEXIST;
      // Read the guest's structure once into a private copy, then validate the copy.
      if (copyFromGuest(ctx, argPtr, contextBytes, VCPU_HVM_CONTEXT_SIZE) !== VCPU_HVM_CONTEXT_SIZE) return -XEN_EFAULT;
      const parsed = parseHvmContext(ctx, contextView);
      if (typeof parsed === "number") return parsed;
      const err = applyHvmContext(ctx, target, parsed);
      if (err !== 0) return err;
      target.bringUp.initialised = true;
      return 0;
    }
    case VCPUOP_up:
      if (!target.bringUp.initialised) return -XEN_EINVAL;
      if (!target.isUp) {
        target.bringUp.up = true;
        target.down = false;
        target.blocked = false;
      }
      return 0;
    case VCPUOP_down:
      // Asynchronous for another vCPU, as vcpu.h says: it stops being scheduled.
      target.bringUp.up = false;
      target.blocked = true;
      target.down = true;
      if (d.vcpus.every((x) => !x.isUp)) d.powerOff("every vCPU is down (VCPUOP_down)");
      return 0;
    case VCPUOP_is_up:
      return target.isUp ? 1 : 0;
    case VCPUOP_register_vcpu_info:
      return registerVcpuInfo(ctx, target, argPtr); // shared_info.ts
    case VCPUOP_register_vcpu_time_memory_area:
      return registerTimeMemoryArea(ctx, target, argPtr);
    case VCPUOP_get_runstate_info:
    case VCPUOP_register_runstate_memory_area:
    case VCPUOP_set_periodic_timer:
    case VCPUOP_stop_periodic_timer:
    case VCPUOP_set_singleshot_timer:
    case VCPUOP_stop_singleshot_timer:
      // The runstate and timer sub-ops (sched.ts, Xen's common_vcpu_op).
      return vcpuTimeOp(ctx, cmd, target, argPtr, ctx.vcpu.cpu.mode64);
    default:
      return -XEN_ENOSYS;
  }
}

const timeAreaArg = new Uint8Array(vcpu_register_time_memory_area.SIZEOF);
const timeAreaArgView = new DataView(timeAreaArg.buffer);

/**
 * VCPUOP_register_vcpu_time_memory_area (Xen's arch_do_vcpu_op): struct
 * vcpu_register_time_memory_area, whose handle is a guest-linear address (64 bits for a 64-bit
 * caller, the low 32 for a 32-bit one: the compat handle). Any address is accepted, as Xen's
 * guest_handle_okay accepts any for an HVM vCPU; 0 unregisters. The area is written at once
 * (force_update_vcpu_system_time) and at every later PV-clock update (xen/time.ts).
 */
function registerTimeMemoryArea(ctx: ExitContext, target: Vcpu, argPtr: number): number {
  if (copyFromGuest(ctx, argPtr, timeAreaArg, timeAreaArg.length) !== timeAreaArg.length) return -XEN_EFAULT;
  const off = vcpu_register_time_memory_area["addr.p"];
  const lo = timeAreaArgView.getUint32(off, true);
  const hi = ctx.vcpu.cpu.mode64 ? timeAreaArgView.getInt32(off + 4, true) : 0;
  const addr = hi * 2 ** 32 + lo;
  target.timeArea.addr = addr === 0 ? undefined : addr;
  publishVcpuTime(ctx.hv, target, true);
  return 0;
}

/** CR0 bits a guest may set (SDM 2.5): PE, MP, EM, TS, ET, NE, WP, AM, NW, CD, PG. */
const CR0_VALID = (CR0_PE | CR0_MP | CR0_EM | CR0_TS | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_NW | CR0_CD | CR0_PG) >>> 0;
/** Xen's compressed segment attributes (xen segment_register.attr): type, S, DPL, P in 7:0; AVL, L, D/B, G in 11:8; 15:12 must be 0. */
const XEN_SEG_ATTR_PAD = 0xf000;

/** Xen's compressed segment attributes to the VMCS access-rights format (SDM Table 25-2); 0 (null) becomes "unusable". */
function vmcsAr(ar: number): number {
  return ar === 0 ? SEGMENT_UNUSABLE : (ar & 0xff) | ((ar & 0xf00) << 4);
}
/** Bit 16 of a VMCS access-rights field: segment unusable (SDM Table 25-2). */
const SEGMENT_UNUSABLE = 0x1_0000;

interface Segment {
  readonly base: number;
  readonly limit: number;
  /** VMCS access-rights format. */
  readonly ar: number;
}

/** Xen's check_segment (xen/arch/x86/hvm/domain.c), on VMCS-format rights: null only for DS/ES; TR a busy 32-bit TSS; CS code; SS writable data; DS/ES data or readable code; present. */
function segmentOk(s: Segment, which: "cs" | "ss" | "ds" | "tr"): boolean {
  if (s.ar === SEGMENT_UNUSABLE) return which === "ds";
  const type = s.ar & 0xf;
  if (which === "tr") {
    if ((s.ar & SEG_ATTR_S) !== 0 || type !== TSS_BUSY_32) return false;
  } else if ((s.ar & SEG_ATTR_S) === 0) return false;
  if ((s.ar & SEG_ATTR_P) === 0) return false;
  if (which === "cs") return (type & SEG_ATTR_CODE) !== 0 && !((s.ar & SEG_ATTR_L) !== 0 && (s.ar & SEG_ATTR_DB) !== 0);
  if (which === "ss") return (type & SEG_ATTR_CODE) === 0 && (type & SEG_ATTR_RW) !== 0;
  if (which === "ds") return (type & SEG_ATTR_CODE) === 0 || (type & SEG_ATTR_RW) !== 0;
  return true;
}
/** System-segment type 11: busy 32-bit (64-bit in IA-32e mode) TSS (SDM Table 3-2). */
const TSS_BUSY_32 = 11;

const dpl = (ar: number) => (ar >>> SEG_ATTR_DPL_SHIFT) & 3;

/** A validated vcpu_hvm_context: everything applyHvmContext writes. */
interface HvmContext {
  readonly long: boolean;
  readonly gprs: readonly (readonly [number, number])[]; // [lo, hi] for RAX..RDI
  readonly rip: number;
  readonly rsp: number;
  readonly rflags: number;
  readonly cr0: number;
  readonly cr3: number;
  readonly cr4: number;
  readonly efer: number;
  readonly cs: Segment;
  readonly ss: Segment;
  readonly ds: Segment;
  readonly es: Segment;
  readonly tr: Segment;
}

/** The 64-bit flat segments VCPU_HVM_MODE_64B implies ("the cached parts of the segment registers get set to match that environment"). */
const FLAT64_CS: Segment = { base: 0, limit: 0xffff_ffff, ar: 0xa09b };
const FLAT_DATA: Segment = { base: 0, limit: 0xffff_ffff, ar: 0xc093 };
const FLAT_TR: Segment = { base: 0, limit: 0x67, ar: 0x8b };

/**
 * Decode and check a copied vcpu_hvm_context (Xen's arch_set_info_hvm_guest checks): a Xen
 * errno, or the state to load. Nothing is written to the target before every check passed.
 * Modelled more simply: CR0.PE must be 1 (no real mode), paging needs EFER.LME and CR4.PAE (no
 * legacy paging). CR0.WP may be 0 on shadow too (the vCPU runs with WP = 1 underneath; mmu-shadow
 * emulates the supervisor writes to read-only pages that WP = 0 allows).
 */
function parseHvmContext(ctx: ExitContext, c: DataView): HvmContext | number {
  const EINVAL = -XEN_EINVAL;
  const mode = c.getUint32(0, true);
  if (mode !== VCPU_HVM_MODE_32B && mode !== VCPU_HVM_MODE_64B) return EINVAL;
  const long = mode === VCPU_HVM_MODE_64B;
  const u32 = (off: number) => c.getUint32(off, true);
  const hi32 = (off: number) => c.getUint32(off + 4, true);
  const u64 = (off: number) => u32(off) + hi32(off) * 2 ** 32;
  const signed64 = (off: number) => u32(off) + (hi32(off) | 0) * 2 ** 32;
  const cr0 = u32(long ? R64.cr0 : R32.cr0);
  const cr4 = u32(long ? R64.cr4 : R32.cr4);
  const efer = u32(long ? R64.efer : R32.efer);
  const highBits = long ? hi32(R64.cr0) | hi32(R64.cr4) | hi32(R64.efer) | hi32(R64.rflags) : hi32(R32.efer);
  if (highBits !== 0) return EINVAL;
  if ((cr0 & ~CR0_VALID) !== 0 || (cr4 & ~CR4_SUPPORTED) !== 0 || (cr4 & CR4_VMXE) !== 0) return EINVAL; // reserved bits; no nested VMX
  if ((efer & ~(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE)) !== 0) return EINVAL;
  if ((efer & EFER_LMA) !== 0 && (efer & EFER_LME) === 0) return EINVAL;
  if ((cr0 & CR0_PE) === 0) return EINVAL;
  const paging = (cr0 & CR0_PG) !== 0;
  if (paging && ((efer & EFER_LME) === 0 || (cr4 & CR4_PAE) === 0)) return EINVAL;
  if (long && (!paging || (efer & EFER_LMA) === 0)) return EINVAL;
  const rflags = u32(long ? R64.rflags : R32.eflags);
  if ((rflags & RFLAGS_RESERVED_ZERO) !== 0 || (rflags & RFLAGS_VM) !== 0) return EINVAL; // no virtual-8086 mode
  const cr3 = long ? u64(R64.cr3) : u32(R32.cr3);
  if (paging) {
    // The top-level table must be RAM (Xen: get_page_from_gfn on CR3).
    const t = cr3 < 2 ** 52 ? ctx.domain.p2m.lookup(gfn(Math.floor(cr3 / PAGE_SIZE))) : undefined;
    if (t?.type !== P2mType.Ram) return EINVAL;
  }
  if (long) {
    const rip = signed64(R64.rip);
    if (rip < -(2 ** 47) || rip >= 2 ** 47) return EINVAL; // non-canonical RIP
    const regs = [R64.rax, R64.rcx, R64.rdx, R64.rbx, R64.rsp, R64.rbp, R64.rsi, R64.rdi];
    return {
      long, rip, rsp: signed64(R64.rsp), rflags, cr0, cr3, cr4, efer,
      gprs: regs.map((o) => [u32(o), hi32(o)] as const),
      cs: FLAT64_CS, ss: FLAT_DATA, ds: FLAT_DATA, es: FLAT_DATA, tr: FLAT_TR,
    };
  }
  const seg = (base: number, limit: number, ar: number): Segment | undefined => {
    const a = c.getUint16(ar, true);
    return (a & XEN_SEG_ATTR_PAD) !== 0 ? undefined : { base: u32(base), limit: u32(limit), ar: vmcsAr(a) };
  };
  const cs = seg(R32.csBase, R32.csLimit, R32.csAr);
  const ss = seg(R32.ssBase, R32.ssLimit, R32.ssAr);
  const ds = seg(R32.dsBase, R32.dsLimit, R32.dsAr);
  const es = seg(R32.esBase, R32.esLimit, R32.esAr);
  const tr = seg(R32.trBase, R32.trLimit, R32.trAr);
  if (cs === undefined || ss === undefined || ds === undefined || es === undefined || tr === undefined) return EINVAL;
  if (!segmentOk(cs, "cs") || (cs.ar & SEG_ATTR_L) !== 0 || !segmentOk(ss, "ss") || !segmentOk(ds, "ds") || !segmentOk(es, "ds") || !segmentOk(tr, "tr")) return EINVAL;
  // Xen's basic sanity checks: EIP inside CS, SS.DPL = CS.DPL, DS/ES.DPL <= CS.DPL.
  const eip = u32(R32.eip);
  const csLimit = (cs.ar & SEG_ATTR_G) !== 0 ? ((cs.limit << 12) | 0xfff) >>> 0 : cs.limit;
  if (eip > csLimit) return EINVAL;
  if (dpl(ss.ar) !== dpl(cs.ar)) return EINVAL;
  for (const s of [ds, es]) if (s.ar !== SEGMENT_UNUSABLE && dpl(s.ar) > dpl(cs.ar)) return EINVAL;
  const regs = [R32.eax, R32.ecx, R32.edx, R32.ebx, R32.esp, R32.ebp, R32.esi, R32.edi];
  return { long, rip: eip, rsp: u32(R32.esp), rflags, cr0, cr3, cr4, efer, gprs: regs.map((o) => [u32(o), 0] as const), cs, ss, ds, es, tr };
}

/** Load a checked context into the target vCPU's VMCS and registers. */
function applyHvmContext(ctx: ExitContext, t: Vcpu, h: HvmContext): number {
  const vmcs = t.vmcs;
  const cpu = t.cpu;
  h.gprs.forEach(([lo, hi], r) => {
    cpu.lo[r] = lo | 0;
    cpu.hi[r] = hi | 0;
  });
  const load = (sel: F, base: F, limit: F, ar: F, s: Segment) => {
    vmcs.setField(sel, 0);
    vmcs.setNatural(base, s.base);
    vmcs.setField(limit, s.limit);
    vmcs.setField(ar, s.ar);
  };
  load(F.GUEST_CS_SELECTOR, F.GUEST_CS_BASE, F.GUEST_CS_LIMIT, F.GUEST_CS_AR_BYTES, h.cs);
  load(F.GUEST_SS_SELECTOR, F.GUEST_SS_BASE, F.GUEST_SS_LIMIT, F.GUEST_SS_AR_BYTES, h.ss);
  load(F.GUEST_DS_SELECTOR, F.GUEST_DS_BASE, F.GUEST_DS_LIMIT, F.GUEST_DS_AR_BYTES, h.ds);
  load(F.GUEST_ES_SELECTOR, F.GUEST_ES_BASE, F.GUEST_ES_LIMIT, F.GUEST_ES_AR_BYTES, h.es);
  load(F.GUEST_TR_SELECTOR, F.GUEST_TR_BASE, F.GUEST_TR_LIMIT, F.GUEST_TR_AR_BYTES, h.tr);
  // RSP is VMCS guest state (VM entry loads it from GUEST_RSP); the other GPRs live in the vCPU.
  vmcs.setNatural(F.GUEST_RSP, h.rsp);
  // Descriptor tables as after a reset (SDM 9.1.1: base 0, limit FFFFH): the new vCPU loads its own.
  vmcs.setNatural(F.GUEST_GDTR_BASE, 0);
  vmcs.setField(F.GUEST_GDTR_LIMIT, 0xffff);
  vmcs.setNatural(F.GUEST_IDTR_BASE, 0);
  vmcs.setField(F.GUEST_IDTR_LIMIT, 0xffff);
  vmcs.setNatural(F.GUEST_RIP, h.rip);
  vmcs.setField(F.GUEST_RFLAGS, (h.rflags | RFLAGS_FIXED) >>> 0);
  vmcs.setField(F.GUEST_INTERRUPTIBILITY_INFO, 0);
  const paging = (h.cr0 & CR0_PG) !== 0;
  const lma = paging && (h.efer & EFER_LME) !== 0;
  const guestEfer = (h.efer & ~EFER_LMA) | (lma ? EFER_LMA : 0);
  vmcs.setNatural(F.CR0_READ_SHADOW, (h.cr0 & CR0_HOST_OWNED) >>> 0);
  vmcs.setNatural(F.CR4_READ_SHADOW, h.cr4);
  const d = ctx.domain;
  if (d.paging instanceof ShadowPaging) {
    // No unrestricted guest: the vCPU runs in IA-32e mode with paging on underneath, on the
    // identity table while the guest has paging off (hypervisor.ts, enterUnpagedShadow).
    t.guestEfer = guestEfer;
    vmcs.setNatural(F.GUEST_CR0, (h.cr0 | CR0_NE | CR0_ET | CR0_PG | CR0_WP) >>> 0);
    vmcs.setNatural(F.GUEST_CR4, (h.cr4 | CR4_VMXE | CR4_PAE) >>> 0);
    vmcs.setField(F.GUEST_IA32_EFER, (h.efer & (EFER_SCE | EFER_NXE)) | EFER_LME | EFER_LMA);
    vmcs.setField(F.VM_ENTRY_CONTROLS, (vmcs.read32(F.VM_ENTRY_CONTROLS) | ENTRY_IA32E_MODE) >>> 0);
    // Start on the identity table (its shadow is normally cached), then move to the guest's CR3
    // if paging is on: the shadow code's non-throwing way to load a root.
    d.paging.setupVcpu(cpu, vmcs, d.identityPageTable!);
    // The guest's CR0 as it reads it, WP included (setupVcpu made WP host-owned and set it in
    // the read shadow; the guest's own WP goes back there).
    vmcs.setNatural(F.CR0_READ_SHADOW, (h.cr0 & (CR0_HOST_OWNED | CR0_WP)) >>> 0);
    const err = d.paging.enterUnpaged(cpu, vmcs, d.identityPageTable!, h.cr3) ?? (paging ? d.paging.leaveUnpaged(cpu, vmcs) : undefined);
    return err === undefined ? 0 : -XEN_ENOMEM;
  }
  vmcs.setNatural(F.GUEST_CR0, (h.cr0 | CR0_NE | CR0_ET) >>> 0);
  vmcs.setNatural(F.GUEST_CR4, (h.cr4 | CR4_VMXE) >>> 0);
  vmcs.setField(F.GUEST_IA32_EFER, guestEfer);
  const entry = vmcs.read32(F.VM_ENTRY_CONTROLS);
  vmcs.setField(F.VM_ENTRY_CONTROLS, (lma ? entry | ENTRY_IA32E_MODE : entry & ~ENTRY_IA32E_MODE) >>> 0);
  if (!paging) vmcs.setField(F.SECONDARY_VM_EXEC_CONTROL, (vmcs.read32(F.SECONDARY_VM_EXEC_CONTROL) | SECONDARY_UNRESTRICTED_GUEST) >>> 0);
  vmcs.setNatural(F.GUEST_CR3, h.cr3);
  return 0;
}
