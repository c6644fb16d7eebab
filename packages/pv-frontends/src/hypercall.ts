/**
 * Hypercalls from a native kernel, as an HVM guest makes them: find Xen's CPUID leaves (the
 * "XenVMMXenVMM" signature at 0x40000000 + 0x100*i), write the guest-physical address of a page
 * to the MSR that leaf base+2 names (the hypervisor fills it with 32-byte stubs), and call stub
 * `nr`. A native kernel cannot jump into the page, so a call reads the stub's `mov eax, imm32`
 * through GuestOps (the bytes the hypervisor wrote), loads RAX with the immediate and the
 * arguments into RDI, RSI, RDX, R10, R8 as the x86-64 ABI says, and executes the stub's VMCALL.
 * The result is RAX: a negative Xen errno on failure.
 */
import type { NativeGuestOps } from "@vtlab/cpu-vmx";
import {
  DOMID_SELF,
  HVMOP_get_param,
  HVMOP_set_param,
  HYPERVISOR_hvm_op,
  HYPERVISOR_memory_op,
  XENMEM_add_to_physmap,
  xen_add_to_physmap,
  xen_hvm_param,
} from "@vtlab/xen-public";
import { GuestMemory, PAGE_SIZE } from "./mem.js";

/** Xen's CPUID signature "XenVMMXenVMM" in EBX, ECX, EDX. */
const XEN_CPUID_SIGNATURE = [0x566e6558, 0x65584d4d, 0x4d4d566e] as const;
/** Each hypercall page stub is 32 bytes (hypercall_page[nr * 32]). */
const STUB_SIZE = 32;
/** `mov eax, imm32`: the first byte of every stub. */
const MOV_EAX_IMM32 = 0xb8;
const RAX = 0;
const ARG_REGS = [7, 6, 2, 10, 8] as const; // RDI, RSI, RDX, R10, R8

export interface FrontendError {
  readonly kind: "frontend-error";
  readonly message: string;
}

export function frontendError(message: string): FrontendError {
  return { kind: "frontend-error", message };
}

export function isFrontendError(x: unknown): x is FrontendError {
  return typeof x === "object" && x !== null && (x as FrontendError).kind === "frontend-error";
}

/** The hypercall interface of one native kernel: its hypercall page and an argument page. */
export class Xen {
  /** Hypercalls made, by number. */
  readonly calls = new Map<number, number>();

  private constructor(
    readonly ops: NativeGuestOps,
    readonly mem: GuestMemory,
    readonly cpuidBase: number,
    readonly hypercallPage: number,
    /** A page for hypercall argument structures (one call at a time). */
    readonly args: number,
  ) {}

  /**
   * Find Xen's CPUID leaves and install the hypercall page at `hypercallPage` (a free RAM page);
   * `argPage` holds argument structs.
   */
  static setup(ops: NativeGuestOps, hypercallPage: number, argPage: number): Xen | FrontendError {
    const mem = new GuestMemory(ops);
    let base = -1;
    for (let leaf = 0x4000_0000; leaf < 0x4001_0000; leaf += 0x100) {
      const r = ops.cpuid(leaf, 0);
      if (!Array.isArray(r)) return frontendError(`cpuid 0x${leaf.toString(16)} faulted`);
      if (r[1] === XEN_CPUID_SIGNATURE[0] && r[2] === XEN_CPUID_SIGNATURE[1] && r[3] === XEN_CPUID_SIGNATURE[2] && r[0] - leaf >= 2) {
        base = leaf;
        break;
      }
    }
    if (base < 0) return frontendError("no Xen CPUID leaves (not running on Xen)");
    const l2 = ops.cpuid(base + 2, 0);
    if (!Array.isArray(l2)) return frontendError("cpuid base+2 faulted");
    const [pages, msr] = l2;
    if (pages < 1) return frontendError("Xen reports no hypercall pages");
    if ((hypercallPage & (PAGE_SIZE - 1)) !== 0) return frontendError("the hypercall page must be page-aligned");
    const f = ops.wrmsr(msr, hypercallPage);
    if (f !== undefined) return frontendError(`wrmsr 0x${msr.toString(16)} faulted (vector ${f.vector})`);
    if (mem.read8(hypercallPage) !== MOV_EAX_IMM32) return frontendError("the hypercall page was not filled");
    return new Xen(ops, mem, base, hypercallPage, argPage);
  }

  /** HYPERVISOR_<nr>(a1..a5) through stub `nr`: RAX after the VMCALL (negative errno on failure). */
  call(nr: number, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0): number {
    this.calls.set(nr, (this.calls.get(nr) ?? 0) + 1);
    const stub = this.hypercallPage + nr * STUB_SIZE;
    if (nr < 0 || nr >= PAGE_SIZE / STUB_SIZE || this.mem.read8(stub) !== MOV_EAX_IMM32) return -38; // ENOSYS: no such stub
    const eax = this.mem.read32(stub + 1);
    const cpu = this.ops.cpu;
    cpu.setRegFromNumber(RAX, eax);
    const args = [a1, a2, a3, a4, a5];
    for (let i = 0; i < 5; i++) cpu.setRegFromNumber(ARG_REGS[i]!, args[i]!);
    const r = this.ops.vmcall();
    if (typeof r !== "number") throw new Error(`native kernel: vmcall faulted (vector ${r.vector})`);
    return r;
  }

  /** HVMOP_get_param for this domain: the value, or a negative errno. */
  getParam(index: number): number {
    const a = this.args;
    this.mem.zero(a, xen_hvm_param.SIZEOF);
    this.mem.write16(a + xen_hvm_param.domid, DOMID_SELF);
    this.mem.write32(a + xen_hvm_param.index, index);
    const r = this.call(HYPERVISOR_hvm_op, HVMOP_get_param, a);
    return r < 0 ? r : this.mem.read64(a + xen_hvm_param.value);
  }

  /** HVMOP_set_param for this domain: 0 or a negative errno. */
  setParam(index: number, value: number): number {
    const a = this.args;
    this.mem.zero(a, xen_hvm_param.SIZEOF);
    this.mem.write16(a + xen_hvm_param.domid, DOMID_SELF);
    this.mem.write32(a + xen_hvm_param.index, index);
    this.mem.write64(a + xen_hvm_param.value, value);
    return this.call(HYPERVISOR_hvm_op, HVMOP_set_param, a);
  }

  /** XENMEM_add_to_physmap(DOMID_SELF, space, idx, gpfn): 0 or a negative errno. */
  addToPhysmap(space: number, idx: number, gpfn: number): number {
    const a = this.args;
    this.mem.zero(a, xen_add_to_physmap.SIZEOF);
    this.mem.write16(a + xen_add_to_physmap.domid, DOMID_SELF);
    this.mem.write32(a + xen_add_to_physmap.space, space);
    this.mem.write64(a + xen_add_to_physmap.idx, idx);
    this.mem.write64(a + xen_add_to_physmap.gpfn, gpfn);
    return this.call(HYPERVISOR_memory_op, XENMEM_add_to_physmap, a);
  }
}
