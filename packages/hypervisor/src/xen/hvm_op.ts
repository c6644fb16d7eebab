/**
 * HYPERVISOR_hvm_op (Xen's arch/x86/hvm/hvm.c do_hvm_op) and the delivery of event-channel
 * upcalls to an HVM guest (arch/x86/hvm/irq.c: hvm_assert_evtchn_irq, hvm_set_callback_via,
 * hvm_set_callback_irq_level, hvm_maybe_deassert_evtchn_irq; the callback-vector source of
 * hvm_vcpu_has_pending_irq that vmx_intr_assist injects).
 *
 * When a vCPU's vcpu_info.evtchn_upcall_pending goes from 0 to 1 (vcpu_mark_events_pending), the
 * guest's chosen callback is raised:
 * - a per-vCPU vector set with HVMOP_set_evtchn_upcall_vector: a fixed, edge interrupt accepted
 *   by that vCPU's local APIC (Xen's vlapic_set_irq), which the guest EOIs;
 * - HVM_PARAM_CALLBACK_IRQ type HVM_PARAM_CALLBACK_TYPE_VECTOR: the vector is injected straight
 *   into the vCPU, ahead of the local APIC and without its IRR/ISR, before every VM entry while
 *   the vCPU's evtchn_upcall_pending is set and the guest can take an interrupt (Xen's
 *   hvm_intack_vector: no EOI; the guest clears evtchn_upcall_pending in its handler);
 * - type HVM_PARAM_CALLBACK_TYPE_GSI or HVM_PARAM_CALLBACK_TYPE_PCI_INTX: a level-triggered line
 *   asserted while vCPU 0's evtchn_upcall_pending is set (only vCPU 0's events raise it, as in
 *   Xen), re-evaluated after every exit before the next entry: the IO-APIC's GSI input
 *   (`Domain.ioapic.setLevel`) or the Xen platform device's INTx (`Domain.platform.setIntx`);
 * - nothing: the events stay pending for a guest that polls.
 * A vCPU blocked in HLT or SCHEDOP_block is woken when an upcall becomes pending for it. Modelled
 * more simply than Xen: Xen 4.17 wakes it only through the callback (with no callback set, or
 * with the GSI/INTx callback and a vCPU other than 0, Xen leaves it blocked); vtlab wakes it in
 * every case, so that SCHEDOP_block returns on an event. The GSI callback drives the IO-APIC only
 * (vtlab has no 8259 PIC), and HVM_PARAM_CALLBACK_TYPE_PCI_INTX reaches the platform device's
 * INTx when the device/pin it names is that device's (00:03.0 INTA); no other PCI device has an
 * INTx line to drive.
 */
import {
  DOMID_SELF,
  HVMOP_get_param,
  HVMOP_get_time,
  HVMOP_set_evtchn_upcall_vector,
  HVMOP_set_param,
  HVM_NR_PARAMS,
  HVM_PARAM_ACPI_IOPORTS_LOCATION,
  HVM_PARAM_ALTP2M,
  HVM_PARAM_BUFIOREQ_EVTCHN,
  HVM_PARAM_BUFIOREQ_PFN,
  HVM_PARAM_CALLBACK_IRQ,
  HVM_PARAM_CALLBACK_TYPE_GSI,
  HVM_PARAM_CALLBACK_TYPE_PCI_INTX,
  HVM_PARAM_CALLBACK_TYPE_VECTOR,
  HVM_PARAM_CONSOLE_EVTCHN,
  HVM_PARAM_CONSOLE_PFN,
  HVM_PARAM_DM_DOMAIN,
  HVM_PARAM_IOREQ_PFN,
  HVM_PARAM_IOREQ_SERVER_PFN,
  HVM_PARAM_MCA_CAP,
  HVM_PARAM_MEMORY_EVENT_CR0,
  HVM_PARAM_MEMORY_EVENT_CR3,
  HVM_PARAM_MEMORY_EVENT_CR4,
  HVM_PARAM_MEMORY_EVENT_INT3,
  HVM_PARAM_MEMORY_EVENT_MSR,
  HVM_PARAM_MEMORY_EVENT_SINGLE_STEP,
  HVM_PARAM_NESTEDHVM,
  HVM_PARAM_NR_IOREQ_SERVER_PAGES,
  HVM_PARAM_PAE_ENABLED,
  HVM_PARAM_STORE_EVTCHN,
  HVM_PARAM_STORE_PFN,
  HVM_PARAM_VIRIDIAN,
  HVM_PARAM_VM86_TSS,
  HVM_PARAM_VM86_TSS_SIZED,
  HVM_PARAM_VM_GENERATION_ID_ADDR,
  HVM_PARAM_X87_FIP_WIDTH,
  XEN_EEXIST,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENODEV,
  XEN_ENOENT,
  XEN_ENOSYS,
  XEN_EPERM,
  XEN_ESRCH,
  xen_hvm_evtchn_upcall_vector,
  xen_hvm_get_time,
  xen_hvm_param,
} from "@vtlab/xen-public";
import { XEN_PLATFORM_INTERRUPT_PIN, XEN_PLATFORM_PCI_DEVICE } from "@vtlab/xen-platform-pci";
import { IOAPIC_NUM_PINS, IoApicSource } from "../devices/ioapic.js";
import type { ExitContext } from "../exits.js";
import { copyFromGuest, copyToGuest } from "../guest-memory.js";
import { HOST_KICK_VECTOR, type Domain, type Vcpu } from "../hypervisor.js";
import type { SharedInfo } from "./shared_info.js";
import type { HypercallArgs } from "./table.js";

/** Xen's HVMIRQ_callback_* (arch/x86/include/asm/hvm/irq.h): the via type is the param's type + 1. */
export const CallbackVia = {
  None: 0,
  Gsi: HVM_PARAM_CALLBACK_TYPE_GSI + 1,
  PciIntx: HVM_PARAM_CALLBACK_TYPE_PCI_INTX + 1,
  Vector: HVM_PARAM_CALLBACK_TYPE_VECTOR + 1,
} as const;
export type CallbackVia = (typeof CallbackVia)[keyof typeof CallbackVia];

/** GSIs an HVM_PARAM_CALLBACK_TYPE_GSI callback may name: the IO-APIC's inputs (Xen: hvm_irq->nr_gsis). */
export const CALLBACK_NR_GSIS = IOAPIC_NUM_PINS;
/** The Xen platform device's PCI slot and pin (00:03.0, INTA = 0 in the callback's intx field). */
export const XEN_PLATFORM_PCI_SLOT = XEN_PLATFORM_PCI_DEVICE;
const XEN_PLATFORM_PCI_INTX = XEN_PLATFORM_INTERRUPT_PIN - 1;

/**
 * A domain's upcall state: the callback via (hvm_irq->callback_via*), whether the level callback
 * is asserted, and each vCPU's evtchn_upcall_vector.
 */
export class EvtchnUpcall {
  via: CallbackVia = CallbackVia.None;
  /** HVM_PARAM_CALLBACK_TYPE_GSI: the GSI. */
  gsi = 0;
  /** HVM_PARAM_CALLBACK_TYPE_PCI_INTX: the device (bits 15:11 of the param) and pin (1:0). */
  pciDev = 0;
  pciIntx = 0;
  /** HVM_PARAM_CALLBACK_TYPE_VECTOR: the vector. */
  vector = 0;
  /** callback_via_asserted: the level callback (GSI / INTx) is asserted. */
  asserted = false;
  /** v->arch.hvm.evtchn_upcall_vector by vCPU id (0 = none). */
  private readonly upcallVectors = new Uint8Array(256);

  constructor(
    private readonly domain: Domain,
    private readonly si: () => SharedInfo | undefined,
  ) {}

  /** HVMOP_set_evtchn_upcall_vector's vector of vCPU `vcpuId` (0 = none). */
  upcallVector(vcpuId: number): number {
    return this.upcallVectors[vcpuId] ?? 0;
  }

  setUpcallVector(vcpuId: number, vector: number): void {
    this.upcallVectors[vcpuId] = vector;
    this.assertEvtchnIrq(vcpuId);
  }

  /**
   * vcpu_mark_events_pending: set evtchn_upcall_pending of vCPU `vcpuId`; if it was clear, raise
   * the callback (hvm_assert_evtchn_irq) and wake the vCPU if it is blocked.
   */
  markEventsPending(vcpuId: number): void {
    const si = this.si();
    if (si === undefined || si.testAndSetUpcallPending(vcpuId)) return;
    this.assertEvtchnIrq(vcpuId);
    const v = this.domain.vcpus[vcpuId];
    if (v !== undefined) wake(v);
  }

  /**
   * The local APIC of vCPU `vcpuId` became software-enabled: with a per-vCPU upcall vector and an
   * upcall pending, the vector is raised again (Xen's vlapic_reg_write for APIC_SPIV), since one
   * raised while the APIC was disabled was dropped.
   */
  reassertUpcallVector(vcpuId: number): void {
    const vector = this.upcallVector(vcpuId);
    const v = this.domain.vcpus[vcpuId];
    if (vector === 0 || v?.apic === undefined || this.si()?.upcallPending(vcpuId) !== true) return;
    v.apic.acceptInterrupt(vector);
    this.domain.xen.stats.upcallsInjected++;
  }

  /** hvm_assert_evtchn_irq. */
  assertEvtchnIrq(vcpuId: number): void {
    const v = this.domain.vcpus[vcpuId];
    if (v === undefined) return;
    const vector = this.upcallVector(vcpuId);
    if (vector !== 0) {
      const apic = v.apic;
      if (apic?.softwareEnabled === true) {
        apic.acceptInterrupt(vector);
        this.domain.xen.stats.upcallsInjected++;
      }
      kick(v);
    } else if (this.via === CallbackVia.Vector) {
      kick(v);
    } else if (vcpuId === 0) {
      this.setCallbackIrqLevel();
    }
  }

  /** hvm_set_callback_irq_level: drive the level callback from vCPU 0's evtchn_upcall_pending. */
  private setCallbackIrqLevel(): void {
    const asserted = this.si()?.upcallPending(0) === true; // evtchn_upcall_mask is not used in HVM mode
    if (asserted === this.asserted) return;
    this.asserted = asserted;
    this.driveLine(asserted);
  }

  /** Drive the level callback's line (a rising edge counts as an upcall injected). */
  private driveLine(asserted: boolean): void {
    const d = this.domain;
    let driven = false;
    if (this.via === CallbackVia.Gsi) {
      d.ioapic.setLevel(this.gsi, asserted, IoApicSource.Default);
      driven = true;
    } else if (this.via === CallbackVia.PciIntx && this.pciDev === XEN_PLATFORM_PCI_SLOT && this.pciIntx === XEN_PLATFORM_PCI_INTX && d.platform !== undefined) {
      d.platform.setIntx(asserted);
      driven = true;
    }
    if (driven && asserted) d.xen.stats.upcallsInjected++;
  }

  /**
   * hvm_set_callback_via from HVM_PARAM_CALLBACK_IRQ's value (`lo`, `hi` halves): the type in
   * bits 63:56 (HVM_PARAM_CALLBACK_IRQ_TYPE_MASK), GSI 0 or an unknown type meaning none. An
   * asserted line moves to the new via; then every online vCPU's callback is asserted again.
   */
  setCallbackVia(lo: number, hi: number): void {
    let via = ((hi >>> 24) + 1) as number;
    if ((via === CallbackVia.Gsi && lo === 0 && hi === 0) || via > CallbackVia.Vector) via = CallbackVia.None;
    if (this.asserted) this.driveLine(false);
    this.via = via as CallbackVia;
    switch (via) {
      case CallbackVia.Gsi:
        this.gsi = lo & 0xff;
        if (this.gsi === 0 || this.gsi >= CALLBACK_NR_GSIS) this.via = CallbackVia.None;
        else if (this.asserted) this.driveLine(true);
        break;
      case CallbackVia.PciIntx:
        this.pciDev = (lo >>> 11) & 31;
        this.pciIntx = lo & 3;
        if (this.asserted) this.driveLine(true);
        break;
      case CallbackVia.Vector:
        this.vector = lo & 0xff;
        break;
      default:
        break;
    }
    for (const v of this.domain.vcpus) if (v.isUp) this.assertEvtchnIrq(v.id);
  }

  /**
   * Before VM entry on `v` (vmx_intr_assist with hvm_maybe_deassert_evtchn_irq): drop the level
   * callback once vCPU 0's upcall is no longer pending, and answer the callback vector to inject
   * ahead of the local APIC's (the vector callback while `v`'s evtchn_upcall_pending is set), or -1.
   */
  intrAssist(v: Vcpu): number {
    const si = this.si();
    if (si === undefined) return -1;
    if (this.asserted && !si.upcallPending(0)) this.setCallbackIrqLevel();
    return this.via === CallbackVia.Vector && si.upcallPending(v.id) ? this.vector : -1;
  }

  /** The callback vector is pending for `v` (a HLT must not block it: Xen's local_events_need_delivery). */
  callbackVectorPending(v: Vcpu): boolean {
    return this.via === CallbackVia.Vector && this.si()?.upcallPending(v.id) === true;
  }
}

/** A blocked vCPU that is up runs again (vcpu_unblock). */
function wake(v: Vcpu): void {
  if (v.blocked && v.isUp) {
    v.blocked = false;
    v.wakeups++;
  }
}

/** vcpu_kick: wake it, or force a running vCPU out of the guest so that the next entry injects. */
function kick(v: Vcpu): void {
  if (v.blocked) wake(v);
  else if (v.inGuest) v.cpu.raiseInterrupt(HOST_KICK_VECTOR);
}

// ---- HVM params (hvm_allow_set_param, hvm_set_param, hvm_allow_get_param) ----

/** Deprecated params: -EINVAL to everyone. */
const DEPRECATED = new Set<number>([
  HVM_PARAM_PAE_ENABLED,
  HVM_PARAM_DM_DOMAIN,
  HVM_PARAM_MEMORY_EVENT_CR0,
  HVM_PARAM_MEMORY_EVENT_CR3,
  HVM_PARAM_MEMORY_EVENT_CR4,
  HVM_PARAM_MEMORY_EVENT_INT3,
  HVM_PARAM_NESTEDHVM,
  HVM_PARAM_MEMORY_EVENT_SINGLE_STEP,
  HVM_PARAM_BUFIOREQ_EVTCHN,
  HVM_PARAM_MEMORY_EVENT_MSR,
]);
/** Params a guest may set on itself. */
const GUEST_SETTABLE = new Set<number>([
  HVM_PARAM_CALLBACK_IRQ,
  HVM_PARAM_VM86_TSS,
  HVM_PARAM_VM86_TSS_SIZED,
  HVM_PARAM_ACPI_IOPORTS_LOCATION,
  HVM_PARAM_VM_GENERATION_ID_ADDR,
  HVM_PARAM_STORE_EVTCHN,
  HVM_PARAM_CONSOLE_EVTCHN,
  HVM_PARAM_X87_FIP_WIDTH,
]);
/** Params a guest may read on itself. */
const GUEST_READABLE = new Set<number>([
  HVM_PARAM_CALLBACK_IRQ,
  HVM_PARAM_VM86_TSS,
  HVM_PARAM_VM86_TSS_SIZED,
  HVM_PARAM_ACPI_IOPORTS_LOCATION,
  HVM_PARAM_VM_GENERATION_ID_ADDR,
  HVM_PARAM_STORE_PFN,
  HVM_PARAM_STORE_EVTCHN,
  HVM_PARAM_CONSOLE_PFN,
  HVM_PARAM_CONSOLE_EVTCHN,
  HVM_PARAM_ALTP2M,
  HVM_PARAM_X87_FIP_WIDTH,
]);
/** Params that may be set once only (a second, different value is -EEXIST). */
const SET_ONCE = new Set<number>([
  HVM_PARAM_VIRIDIAN,
  HVM_PARAM_IOREQ_PFN,
  HVM_PARAM_BUFIOREQ_PFN,
  HVM_PARAM_IOREQ_SERVER_PFN,
  HVM_PARAM_NR_IOREQ_SERVER_PAGES,
  HVM_PARAM_ALTP2M,
  HVM_PARAM_MCA_CAP,
]);

/** A domain's HVM params as 64-bit halves (the callback param needs bits 63:56). */
export class HvmParams {
  readonly lo = new Uint32Array(HVM_NR_PARAMS);
  readonly hi = new Uint32Array(HVM_NR_PARAMS);
}

/** Bit 63 of HVM_PARAM_VM86_TSS_SIZED (Xen's VM86_TSS_UPDATED), as the high half's bit 31. */
const VM86_TSS_UPDATED_HI = 0x8000_0000;
/** sizeof(struct tss32), and the largest useful VM86 TSS (base structure, interrupt redirection and I/O bitmaps, one padding byte). */
const TSS32_SIZE = 104;
const VM86_TSS_MAX = TSS32_SIZE + 0x100 / 8 + 0x10000 / 8 + 1;

/**
 * hvm_set_param for domain `target` by the guest itself (`byGuest`) or the toolstack: the
 * permission rules of hvm_allow_set_param, the value checks of hvm_set_param for the params a
 * guest may set, then the store. A VM86 TSS value Xen's hardware would truncate is -EINVAL and,
 * set by the guest itself, crashes it (Xen's domain_crash). The toolstack's other params are
 * stored as given. 0 or -errno.
 */
export function hvmSetParam(target: Domain, index: number, lo: number, hi: number, byGuest: boolean): number {
  if (!(index >= 0 && index < HVM_NR_PARAMS)) return -XEN_EINVAL;
  if (DEPRECATED.has(index)) return -XEN_EINVAL;
  if (byGuest && !GUEST_SETTABLE.has(index)) return -XEN_EPERM;
  lo >>>= 0;
  hi >>>= 0;
  const p = target.xen.hvmParams;
  if (SET_ONCE.has(index) && (p.lo[index] !== 0 || p.hi[index] !== 0) && (p.lo[index] !== lo || p.hi[index] !== hi)) return -XEN_EEXIST;
  const crash = (why: string) => {
    if (byGuest) target.crash(`HVMOP_set_param: ${why} (Xen's domain_crash)`);
    return -XEN_EINVAL;
  };
  switch (index) {
    case HVM_PARAM_CALLBACK_IRQ:
      target.xen.upcall.setCallbackVia(lo, hi);
      break;
    case HVM_PARAM_ACPI_IOPORTS_LOCATION:
      return -XEN_ENODEV; // pmtimer_change_ioport: vtlab has no ACPI PM timer
    case HVM_PARAM_X87_FIP_WIDTH:
      if (hi !== 0 || (lo !== 0 && lo !== 4 && lo !== 8)) return -XEN_EINVAL;
      break;
    case HVM_PARAM_VM86_TSS:
      // Old hvmloaders set only the address: Xen stores it as a 128-byte HVM_PARAM_VM86_TSS_SIZED.
      if (hi !== 0) return crash("HVM_PARAM_VM86_TSS with bits above 31");
      index = HVM_PARAM_VM86_TSS_SIZED;
      if (lo !== 0) hi = (128 | VM86_TSS_UPDATED_HI) >>> 0;
      break;
    case HVM_PARAM_VM86_TSS_SIZED:
      if (hi < TSS32_SIZE) return crash("HVM_PARAM_VM86_TSS_SIZED smaller than a 32-bit TSS");
      hi = (Math.min(hi, VM86_TSS_MAX) | VM86_TSS_UPDATED_HI) >>> 0;
      break;
    default:
      break;
  }
  p.lo[index] = lo;
  p.hi[index] = hi;
  return 0;
}

/** hvm_get_param: the value's halves, or -errno (a guest reads only what hvm_allow_get_param lets it). */
export function hvmGetParam(target: Domain, index: number, byGuest: boolean): readonly [number, number] | number {
  if (!(index >= 0 && index < HVM_NR_PARAMS)) return -XEN_EINVAL;
  if (DEPRECATED.has(index)) return -XEN_EINVAL;
  if (byGuest && !GUEST_READABLE.has(index)) return -XEN_EPERM;
  const p = target.xen.hvmParams;
  if (index === HVM_PARAM_VM86_TSS) return [p.lo[HVM_PARAM_VM86_TSS_SIZED]!, 0];
  if (index === HVM_PARAM_VM86_TSS_SIZED) return [p.lo[index]!, (p.hi[index]! & ~VM86_TSS_UPDATED_HI) >>> 0];
  return [p.lo[index]!, p.hi[index]!];
}

// ---- HYPERVISOR_hvm_op ----

const opBytes = new Uint8Array(16);
const op = new DataView(opBytes.buffer);

/**
 * rcu_lock_domain_by_any_id, is_hvm_domain and XSM_TARGET for a guest: DOMID_SELF or its own id
 * is itself; another guest -EPERM; dom0 (not HVM) -EINVAL; no such domain -ESRCH.
 */
function targetDomain(ctx: ExitContext, domid: number): Domain | number {
  const d = ctx.domain;
  if (domid === DOMID_SELF || domid === d.id) return d;
  if (domid === 0) return -XEN_EINVAL; // dom0 is not an HVM domain (hvmop_set_param's is_hvm_domain check comes first)
  if (ctx.hv.domain(domid) !== undefined) return -XEN_EPERM;
  return -XEN_ESRCH;
}

/** HYPERVISOR_hvm_op(unsigned long op, XEN_GUEST_HANDLE_PARAM(void) arg). */
export function do_hvm_op(ctx: ExitContext, a: HypercallArgs): number {
  if (a.high(0) !== 0) return -XEN_ENOSYS;
  const arg = a.ptr(1);
  switch (a.uint(0)) {
    case HVMOP_set_evtchn_upcall_vector: {
      const s = xen_hvm_evtchn_upcall_vector;
      if (copyFromGuest(ctx, arg, opBytes, s.SIZEOF) !== s.SIZEOF) return -XEN_EFAULT;
      const vector = op.getUint8(s.vector);
      const vcpu = op.getUint32(s.vcpu, true);
      if (vector < 0x10) return -XEN_EINVAL;
      if (vcpu >= ctx.domain.vcpus.length) return -XEN_ENOENT;
      ctx.domain.xen.upcall.setUpcallVector(vcpu, vector);
      return 0;
    }
    case HVMOP_set_param:
    case HVMOP_get_param: {
      const s = xen_hvm_param;
      if (copyFromGuest(ctx, arg, opBytes, s.SIZEOF) !== s.SIZEOF) return -XEN_EFAULT;
      const index = op.getUint32(s.index, true);
      if (index >= HVM_NR_PARAMS) return -XEN_EINVAL;
      const d = targetDomain(ctx, op.getUint16(s.domid, true));
      if (typeof d === "number") return d;
      if (a.uint(0) === HVMOP_set_param) return hvmSetParam(d, index, op.getUint32(s.value, true), op.getUint32(s.value + 4, true), true);
      const value = hvmGetParam(d, index, true);
      if (typeof value === "number") return value;
      op.setUint32(s.value, value[0], true);
      op.setUint32(s.value + 4, value[1], true);
      return copyToGuest(ctx, arg, opBytes, s.SIZEOF) === s.SIZEOF ? 0 : -XEN_EFAULT;
    }
    case HVMOP_get_time: {
      // NOW(): Xen's system time in ns, the host's simulated clock.
      const now = ctx.hv.clock.nanoseconds;
      op.setUint32(xen_hvm_get_time.now, now >>> 0, true);
      op.setUint32(xen_hvm_get_time.now + 4, Math.floor(now / 2 ** 32), true);
      return copyToGuest(ctx, arg, opBytes, xen_hvm_get_time.SIZEOF) === xen_hvm_get_time.SIZEOF ? 0 : -XEN_EFAULT;
    }
    default:
      return -XEN_ENOSYS;
  }
}

