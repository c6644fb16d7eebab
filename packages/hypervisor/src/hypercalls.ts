/**
 * Hypercalls (VMCALL exits), the part of Xen's hvm_hypercall this issue needs: the table is
 * otherwise -ENOSYS (the Xen PV issue fills it), and `HYPERVISOR_vcpu_op` brings secondary vCPUs
 * up the PVH way (xen/include/public/vcpu.h: VCPUOP_initialise with a `vcpu_hvm_context`, then
 * VCPUOP_up), since the interpreter has no real mode for an INIT-SIPI-SIPI trampoline.
 *
 * Calling convention (Xen's hvm_hypercall): in 64-bit mode RAX = number, arguments in RDI, RSI,
 * RDX, R10, R8; otherwise EAX = number, arguments in EBX, ECX, EDX, ESI, EDI. The result goes to
 * RAX. A hypercall from CPL > 0 gets -EPERM. Guest structures are read once, by linear address
 * through the guest's own paging (a copy_from_guest), then validated; a bad pointer is -EFAULT.
 */
import { Access, PAGE_SIZE } from "@vtlab/arch";
import {
  CR0_ET,
  CR0_NE,
  CR0_PE,
  CR0_PG,
  CR0_WP,
  CR4_PAE,
  CR4_VMXE,
  EFER_LMA,
  EFER_LME,
  EFER_NXE,
  EFER_SCE,
  ENTRY_IA32E_MODE,
  RFLAGS_FIXED,
  SECONDARY_UNRESTRICTED_GUEST,
  VmcsField as F,
} from "@vtlab/cpu-vmx";
import { ShadowPaging } from "@vtlab/mmu-shadow";
import { CR0_HOST_OWNED, type ExitContext } from "./exits.js";
import type { Vcpu } from "./hypervisor.js";

/** Hypercall numbers (xen/include/public/xen.h). */
export const HYPERVISOR_vcpu_op = 24;
/** VCPUOP_* commands (xen/include/public/vcpu.h). */
export const VCPUOP_initialise = 0;
export const VCPUOP_up = 1;
export const VCPUOP_down = 2;
export const VCPUOP_is_up = 3;
/** vcpu_hvm_context.mode (xen/include/public/hvm/hvm_vcpu.h). */
export const VCPU_HVM_MODE_32B = 0;
export const VCPU_HVM_MODE_64B = 1;
/** sizeof(struct vcpu_hvm_context): mode, pad, then the union of the 32-bit (120) and 64-bit (112) register sets. */
export const VCPU_HVM_CONTEXT_SIZE = 128;

/** Xen error numbers (xen/include/public/errno.h). */
export const XenErrno = { EPERM: 1, ENOENT: 2, EFAULT: 14, EEXIST: 17, EINVAL: 22, ENOSYS: 38 } as const;

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

/** Run the hypercall in RAX; returns the value for RAX (a negative Xen errno on failure). */
export function hypercall(ctx: ExitContext): number {
  const v = ctx.vcpu;
  const cpu = v.cpu;
  ctx.domain.hypercalls++;
  if (cpu.cpl !== 0) return -XenErrno.EPERM;
  const long = cpu.mode64;
  const nr = cpu.lo[0]! >>> 0;
  if (long && cpu.hi[0]! !== 0) return -XenErrno.ENOSYS;
  // Argument registers: RDI, RSI, RDX (64-bit) or EBX, ECX, EDX (32-bit).
  const arg = (i: number): number => {
    const r = long ? [7, 6, 2][i]! : [3, 1, 2][i]!;
    return long ? (cpu.hi[r]! >>> 0) * 2 ** 32 + (cpu.lo[r]! >>> 0) : cpu.lo[r]! >>> 0;
  };
  switch (nr) {
    case HYPERVISOR_vcpu_op:
      return vcpuOp(ctx, arg(0), arg(1), arg(2));
    default:
      return -XenErrno.ENOSYS;
  }
}

function vcpuOp(ctx: ExitContext, cmd: number, vcpuid: number, argPtr: number): number {
  const d = ctx.domain;
  if (cmd > 0xffff_ffff) return -XenErrno.ENOSYS;
  const target = vcpuid < d.vcpus.length ? d.vcpus[vcpuid] : undefined;
  if (target === undefined) return -XenErrno.ENOENT;
  switch (cmd) {
    case VCPUOP_initialise: {
      if (target.bringUp.initialised) return -XenErrno.EEXIST;
      const bytes = copyFromGuest(ctx, argPtr, VCPU_HVM_CONTEXT_SIZE);
      if (bytes === undefined) return -XenErrno.EFAULT;
      const err = setHvmContext(ctx, target, new DataView(bytes.buffer));
      if (err !== 0) return err;
      target.bringUp.initialised = true;
      return 0;
    }
    case VCPUOP_up:
      if (!target.bringUp.initialised) return -XenErrno.EINVAL;
      if (!target.bringUp.up) {
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
      if (d.vcpus.every((x) => x.down || !x.bringUp.up)) d.powerOff("every vCPU is down (VCPUOP_down)");
      return 0;
    case VCPUOP_is_up:
      return target.bringUp.up ? 1 : 0;
    default:
      return -XenErrno.ENOSYS;
  }
}

/** copy_from_guest: `length` bytes at a guest linear address, through the guest's paging; undefined if any byte is not RAM. */
function copyFromGuest(ctx: ExitContext, linear: number, length: number): Uint8Array | undefined {
  const { domain: d, vcpu: v, hv } = ctx;
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const lin = linear + done;
    if (!Number.isSafeInteger(lin)) return undefined;
    const inPage = Math.min(length - done, PAGE_SIZE - (lin % PAGE_SIZE));
    const gpa = (v.cpu.cr0 & CR0_PG) === 0 ? lin : d.paging.gvaToGpa(v.cpu, lin, Access.Read);
    if (typeof gpa !== "number") return undefined;
    const hpa = d.machineAddress(gpa);
    if (hpa === undefined || d.machineAddress(gpa + inPage - 1) === undefined) return undefined;
    if (hv.memory.readBytes(hpa, out.subarray(done, done + inPage)) !== undefined) return undefined;
    done += inPage;
  }
  return out;
}

/** Xen's compressed segment attributes (type, S, DPL, P in 7:0; AVL, L, D/B, G in 11:8) to the VMCS format. */
function vmcsAr(ar: number): number {
  return (ar & 0xff) | ((ar & 0xf00) << 4);
}

/** A segment Xen's check_segment would accept: present, S = 1, code for CS, data or readable code otherwise, not L with D/B, G with a page-granular limit. */
function segmentOk(ar: number, limit: number, code: boolean): boolean {
  const present = (ar & 0x80) !== 0;
  const s = (ar & 0x10) !== 0;
  const type = ar & 0xf;
  if (!present || !s) return false;
  if (code !== ((type & 0x8) !== 0) && !(!code && (type & 0xa) === 0xa)) return false;
  if ((ar & 0x200) !== 0 && (ar & 0x400) !== 0) return false;
  if ((ar & 0x800) !== 0 && (limit & 0xfff) !== 0xfff) return false;
  return true;
}

/**
 * Load a vcpu_hvm_context into the target's VMCS and registers (Xen's arch_set_info_hvm_guest).
 * Modelled more simply: CR0.PE must be 1 (no real mode) and paging needs EFER.LME and CR4.PAE (no
 * legacy paging). Anything else is -EINVAL.
 */
function setHvmContext(ctx: ExitContext, t: Vcpu, c: DataView): number {
  const EINVAL = -XenErrno.EINVAL;
  const mode = c.getUint32(0, true);
  if (mode !== VCPU_HVM_MODE_32B && mode !== VCPU_HVM_MODE_64B) return EINVAL;
  const long = mode === VCPU_HVM_MODE_64B;
  const u64 = (off: number) => c.getUint32(off, true) + c.getUint32(off + 4, true) * 2 ** 32;
  const cr0 = c.getUint32(long ? R64.cr0 : R32.cr0, true);
  const cr4 = c.getUint32(long ? R64.cr4 : R32.cr4, true);
  const efer = c.getUint32(long ? R64.efer : R32.efer, true);
  const highBits = long ? c.getUint32(R64.cr0 + 4, true) | c.getUint32(R64.cr4 + 4, true) | c.getUint32(R64.efer + 4, true) : c.getUint32(R32.efer + 4, true);
  if (highBits !== 0) return EINVAL;
  if ((efer & ~(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE)) !== 0) return EINVAL;
  if ((cr4 & CR4_VMXE) !== 0) return EINVAL; // no nested VMX
  if ((cr0 & CR0_PE) === 0) return EINVAL;
  const paging = (cr0 & CR0_PG) !== 0;
  if (paging && ((efer & EFER_LME) === 0 || (cr4 & CR4_PAE) === 0)) return EINVAL;
  if (long && (!paging || (efer & EFER_LMA) === 0)) return EINVAL;
  const lma = paging && (efer & EFER_LME) !== 0;

  const vmcs = t.vmcs;
  const cpu = t.cpu;
  const flat = (sel: F, base: F, limit: F, ar: F, b: number, l: number, a: number) => {
    vmcs.setField(sel, 0);
    vmcs.setNatural(base, b);
    vmcs.setField(limit, l);
    vmcs.setField(ar, a);
  };
  let rip: number;
  let rflags: number;
  let cr3: number;
  if (long) {
    const regs = [R64.rax, R64.rcx, R64.rdx, R64.rbx, R64.rsp, R64.rbp, R64.rsi, R64.rdi];
    for (let r = 0; r < 8; r++) {
      cpu.lo[r] = c.getInt32(regs[r]!, true);
      cpu.hi[r] = c.getInt32(regs[r]! + 4, true);
    }
    rip = u64(R64.rip);
    rflags = c.getUint32(R64.rflags, true);
    cr3 = u64(R64.cr3);
    if (rip >= 2 ** 47 && rip < 2 ** 64 - 2 ** 47) return EINVAL; // non-canonical RIP
    if (rip >= 2 ** 47) rip -= 2 ** 64;
    // "The cached parts of the segment registers get set to match that environment": flat 64-bit.
    flat(F.GUEST_CS_SELECTOR, F.GUEST_CS_BASE, F.GUEST_CS_LIMIT, F.GUEST_CS_AR_BYTES, 0, 0xffff_ffff, 0xa09b);
    for (const [sel, base, limit, ar] of [
      [F.GUEST_DS_SELECTOR, F.GUEST_DS_BASE, F.GUEST_DS_LIMIT, F.GUEST_DS_AR_BYTES],
      [F.GUEST_SS_SELECTOR, F.GUEST_SS_BASE, F.GUEST_SS_LIMIT, F.GUEST_SS_AR_BYTES],
      [F.GUEST_ES_SELECTOR, F.GUEST_ES_BASE, F.GUEST_ES_LIMIT, F.GUEST_ES_AR_BYTES],
    ] as const) flat(sel, base, limit, ar, 0, 0xffff_ffff, 0xc093);
    flat(F.GUEST_TR_SELECTOR, F.GUEST_TR_BASE, F.GUEST_TR_LIMIT, F.GUEST_TR_AR_BYTES, 0, 0x67, 0x8b);
  } else {
    const regs = [R32.eax, R32.ecx, R32.edx, R32.ebx, R32.esp, R32.ebp, R32.esi, R32.edi];
    for (let r = 0; r < 8; r++) cpu.setReg32(r, c.getUint32(regs[r]!, true));
    rip = c.getUint32(R32.eip, true);
    rflags = c.getUint32(R32.eflags, true);
    cr3 = c.getUint32(R32.cr3, true);
    const seg = (baseOff: number, limitOff: number, arOff: number) => ({ base: c.getUint32(baseOff, true), limit: c.getUint32(limitOff, true), ar: c.getUint16(arOff, true) });
    const cs = seg(R32.csBase, R32.csLimit, R32.csAr);
    const data = [seg(R32.dsBase, R32.dsLimit, R32.dsAr), seg(R32.ssBase, R32.ssLimit, R32.ssAr), seg(R32.esBase, R32.esLimit, R32.esAr)];
    const tr = seg(R32.trBase, R32.trLimit, R32.trAr);
    if ((cs.ar & 0xf000) !== 0 || !segmentOk(cs.ar, cs.limit, true) || (cs.ar & 0x200) !== 0) return EINVAL; // compatibility or 32-bit code, not 64-bit
    if (data.some((s) => (s.ar & 0xf000) !== 0 || !segmentOk(s.ar, s.limit, false))) return EINVAL;
    if ((tr.ar & 0x8f) !== 0x8b) return EINVAL; // a present, busy 32-bit TSS
    flat(F.GUEST_CS_SELECTOR, F.GUEST_CS_BASE, F.GUEST_CS_LIMIT, F.GUEST_CS_AR_BYTES, cs.base, cs.limit, vmcsAr(cs.ar));
    const dataFields = [
      [F.GUEST_DS_SELECTOR, F.GUEST_DS_BASE, F.GUEST_DS_LIMIT, F.GUEST_DS_AR_BYTES],
      [F.GUEST_SS_SELECTOR, F.GUEST_SS_BASE, F.GUEST_SS_LIMIT, F.GUEST_SS_AR_BYTES],
      [F.GUEST_ES_SELECTOR, F.GUEST_ES_BASE, F.GUEST_ES_LIMIT, F.GUEST_ES_AR_BYTES],
    ] as const;
    dataFields.forEach(([sel, base, limit, ar], k) => flat(sel, base, limit, ar, data[k]!.base, data[k]!.limit, vmcsAr(data[k]!.ar)));
    flat(F.GUEST_TR_SELECTOR, F.GUEST_TR_BASE, F.GUEST_TR_LIMIT, F.GUEST_TR_AR_BYTES, tr.base, tr.limit, vmcsAr(tr.ar));
  }
  const rflagsHigh = long ? c.getUint32(R64.rflags + 4, true) : 0;
  if (rflagsHigh !== 0 || (rflags & 0xffc0_8028) !== 0) return EINVAL; // reserved RFLAGS bits
  if ((rflags & (1 << 17)) !== 0) return EINVAL; // RFLAGS.VM: no virtual-8086 mode
  if (cr3 >= 2 ** 52) return EINVAL;
  // RSP is VMCS guest state (VM entry loads it from GUEST_RSP), the other GPRs live in the vCPU.
  const rsp = long ? u64(R64.rsp) : c.getUint32(R32.esp, true);
  vmcs.setNatural(F.GUEST_RSP, rsp >= 2 ** 63 ? rsp - 2 ** 64 : rsp);
  // Descriptor tables as after a reset (SDM 9.1.1: base 0, limit FFFFH): the new vCPU loads its own.
  vmcs.setNatural(F.GUEST_GDTR_BASE, 0);
  vmcs.setField(F.GUEST_GDTR_LIMIT, 0xffff);
  vmcs.setNatural(F.GUEST_IDTR_BASE, 0);
  vmcs.setField(F.GUEST_IDTR_LIMIT, 0xffff);
  vmcs.setNatural(F.GUEST_RIP, rip);
  vmcs.setField(F.GUEST_RFLAGS, (rflags | RFLAGS_FIXED) >>> 0);
  vmcs.setField(F.GUEST_INTERRUPTIBILITY_INFO, 0);
  const guestEfer = (efer & ~EFER_LMA) | (lma ? EFER_LMA : 0);
  vmcs.setNatural(F.CR0_READ_SHADOW, (cr0 & CR0_HOST_OWNED) >>> 0);
  vmcs.setNatural(F.CR4_READ_SHADOW, cr4);
  const d = ctx.domain;
  if (d.paging instanceof ShadowPaging) {
    // No unrestricted guest: the vCPU runs in IA-32e mode with paging on underneath, on the
    // identity table while the guest has paging off (hypervisor.ts, enterUnpagedShadow). The
    // shadow code keeps CR0.WP = 1 (its rule), which the guest then sees.
    t.guestEfer = guestEfer;
    vmcs.setNatural(F.GUEST_CR0, (cr0 | CR0_NE | CR0_ET | CR0_PG | CR0_WP) >>> 0);
    vmcs.setNatural(F.GUEST_CR4, (cr4 | CR4_VMXE | CR4_PAE) >>> 0);
    vmcs.setField(F.GUEST_IA32_EFER, (efer & (EFER_SCE | EFER_NXE)) | EFER_LME | EFER_LMA);
    vmcs.setField(F.VM_ENTRY_CONTROLS, (vmcs.read32(F.VM_ENTRY_CONTROLS) | ENTRY_IA32E_MODE) >>> 0);
    vmcs.setNatural(F.GUEST_CR3, paging ? cr3 : d.identityPageTable!);
    d.paging.setupVcpu(cpu, vmcs); // the shadow code takes the vCPU's CR3 from GUEST_CR3
    if (!paging) {
      const err = d.paging.enterUnpaged(cpu, vmcs, d.identityPageTable!, cr3);
      if (err !== undefined) return EINVAL;
    }
    return 0;
  }
  vmcs.setNatural(F.GUEST_CR0, (cr0 | CR0_NE | CR0_ET) >>> 0);
  vmcs.setNatural(F.GUEST_CR4, (cr4 | CR4_VMXE) >>> 0);
  vmcs.setField(F.GUEST_IA32_EFER, guestEfer);
  const entry = vmcs.read32(F.VM_ENTRY_CONTROLS);
  vmcs.setField(F.VM_ENTRY_CONTROLS, (lma ? entry | ENTRY_IA32E_MODE : entry & ~ENTRY_IA32E_MODE) >>> 0);
  if (!paging) vmcs.setField(F.SECONDARY_VM_EXEC_CONTROL, (vmcs.read32(F.SECONDARY_VM_EXEC_CONTROL) | SECONDARY_UNRESTRICTED_GUEST) >>> 0);
  vmcs.setNatural(F.GUEST_CR3, cr3);
  return 0;
}
