/**
 * A domain's shared_info page and its vCPUs' vcpu_info (xen/include/public/xen.h; Xen's
 * arch/x86/domain.c allocates the page, common/domain.c vcpu_info_reset / map_vcpu_info place
 * vcpu_info). The page is one hypervisor frame, zeroed at domain creation and given back with the
 * domain's other frames at destroy; XENMEM_add_to_physmap(XENMAPSPACE_shared_info) puts it into
 * the guest's p2m (memory.ts sets `gfn`).
 *
 * Everything here is guest-writable memory: the guest may write any byte of shared_info and of
 * its vcpu_info at any time, so every field read here is hostile (evtchn_pending_sel can be
 * anything, evtchn_upcall_pending can be 2). The hypervisor only ever tests and sets single
 * bits, the way Xen's guest_test_and_set_bit does, and reads each byte once per decision.
 *
 * Layouts are the x86_64 ones (@vtlab/xen-public `shared_info`, `vcpu_info`). Modelled more
 * simply than Xen: the 32-bit ("compat") shared_info layout, which Xen latches when a guest sets
 * HVM_PARAM_CALLBACK_IRQ from 32-bit mode (hvm_latch_shinfo_size), is not modelled; and a vCPU
 * with id >= XEN_LEGACY_MAX_VCPUS that has not registered a vcpu_info gets a private zeroed
 * 64-byte stand-in (Xen points all of them at one global dummy_vcpu_info).
 */
import { PAGE_SIZE, type MachineMemory, type Mfn } from "@vtlab/arch";
import { XEN_EFAULT, XEN_EINVAL, XEN_ENXIO, XEN_LEGACY_MAX_VCPUS, shared_info, vcpu_info, vcpu_register_vcpu_info } from "@vtlab/xen-public";
import type { ExitContext } from "../exits.js";
import { copyFromGuest } from "../guest-memory.js";
import type { Domain, Vcpu } from "../hypervisor.js";
import { holdFrameForDomain } from "./p2m.js";

/** alignof(struct vcpu_info) on x86_64 (its evtchn_pending_sel is an 8-byte xen_ulong_t). */
const VCPU_INFO_ALIGN = 8;

/** What `registerVcpuInfo` needs to know about the vCPU (Xen's v != current and VPF_down). */
export interface VcpuInfoTarget {
  readonly vcpuId: number;
  /** The calling vCPU itself. */
  readonly isCurrent: boolean;
  /** Up (not VPF_down): another vCPU may only move the vcpu_info of a vCPU that is down. */
  readonly isUp: boolean;
}

export class SharedInfo {
  /** The machine frame of the page. */
  readonly mfn: Mfn;
  /** The guest frame XENMEM_add_to_physmap(XENMAPSPACE_shared_info) mapped it at, if any (memory.ts sets it). */
  gfn: number | undefined = undefined;
  /**
   * Called after VCPUOP_register_vcpu_info moved a vCPU's vcpu_info (Xen then calls
   * force_update_vcpu_system_time): the PV clock (time.ts) republishes vcpu_time_info there.
   */
  onVcpuInfoMoved: ((vcpuId: number) => void) | undefined = undefined;
  /**
   * Called with the machine frame after the hypervisor wrote into shared_info or a vcpu_info (the
   * domain's vCPUs drop instructions they decoded from it: cpu-vmx's codeWritten).
   */
  onWrite: ((frame: number) => void) | undefined = undefined;
  private readonly base: number;
  /** vcpu_info moved by VCPUOP_register_vcpu_info: vCPU id to machine address. */
  private readonly registered = new Map<number, number>();
  /** Stand-ins for vCPUs >= XEN_LEGACY_MAX_VCPUS without a registered vcpu_info. */
  private readonly dummies = new Map<number, Uint8Array>();

  constructor(
    readonly memory: MachineMemory,
    mfn: Mfn,
  ) {
    this.mfn = mfn;
    this.base = mfn * PAGE_SIZE;
  }

  /** Machine address of shared_info. */
  get hpa(): number {
    return this.base;
  }

  /**
   * Machine address of vCPU `vcpuId`'s vcpu_info: where VCPUOP_register_vcpu_info moved it, or
   * shared_info.vcpu_info[vcpuId] for vcpuId < XEN_LEGACY_MAX_VCPUS; undefined otherwise (the
   * vCPU has no guest-visible vcpu_info yet).
   */
  vcpuInfoHpa(vcpuId: number): number | undefined {
    const moved = this.registered.get(vcpuId);
    if (moved !== undefined) return moved;
    if (Number.isInteger(vcpuId) && vcpuId >= 0 && vcpuId < XEN_LEGACY_MAX_VCPUS) return this.base + shared_info.vcpu_info + vcpuId * vcpu_info.SIZEOF;
    return undefined;
  }

  /** VCPUOP_register_vcpu_info has moved this vCPU's vcpu_info (Xen: vcpu_info_mfn != INVALID_MFN). */
  isRegistered(vcpuId: number): boolean {
    return this.registered.has(vcpuId);
  }

  // ---- bytes of shared_info and vcpu_info (machine memory the guest can write) ----

  /** One byte of vCPU `vcpuId`'s vcpu_info at `offset`. */
  vcpuInfoByte(vcpuId: number, offset: number): number {
    const hpa = this.vcpuInfoHpa(vcpuId);
    if (hpa === undefined) return this.dummy(vcpuId)[offset] ?? 0;
    const b = this.memory.read8(hpa + offset);
    return typeof b === "number" ? b : 0;
  }

  private setVcpuInfoByte(vcpuId: number, offset: number, value: number): void {
    const hpa = this.vcpuInfoHpa(vcpuId);
    if (hpa === undefined) {
      this.dummy(vcpuId)[offset] = value;
      return;
    }
    this.memory.write8(hpa + offset, value);
    this.onWrite?.(Math.floor((hpa + offset) / PAGE_SIZE));
  }

  private dummy(vcpuId: number): Uint8Array {
    let d = this.dummies.get(vcpuId);
    if (d === undefined) {
      d = new Uint8Array(vcpu_info.SIZEOF);
      this.dummies.set(vcpuId, d);
    }
    return d;
  }

  private sharedByte(offset: number): number {
    const b = this.memory.read8(this.base + offset);
    return typeof b === "number" ? b : 0;
  }

  /** guest_test_and_set_bit on a bitmap at `offset` in shared_info; returns the old bit. */
  private testAndSetShared(offset: number, bit: number): boolean {
    const at = offset + (bit >>> 3);
    const m = 1 << (bit & 7);
    const old = this.sharedByte(at);
    if ((old & m) !== 0) return true;
    this.memory.write8(this.base + at, old | m);
    this.onWrite?.(this.mfn);
    return false;
  }

  /** guest_test_and_clear_bit on a bitmap at `offset` in shared_info; returns the old bit. */
  private testAndClearShared(offset: number, bit: number): boolean {
    const at = offset + (bit >>> 3);
    const m = 1 << (bit & 7);
    const old = this.sharedByte(at);
    if ((old & m) === 0) return false;
    this.memory.write8(this.base + at, old & ~m);
    this.onWrite?.(this.mfn);
    return true;
  }

  /** evtchn_pending bit `port` (port < 4096). */
  testPending(port: number): boolean {
    return (this.sharedByte(shared_info.evtchn_pending + (port >>> 3)) & (1 << (port & 7))) !== 0;
  }

  testAndSetPending(port: number): boolean {
    return this.testAndSetShared(shared_info.evtchn_pending, port);
  }

  clearPending(port: number): void {
    this.testAndClearShared(shared_info.evtchn_pending, port);
  }

  /** evtchn_mask bit `port`. */
  testMask(port: number): boolean {
    return (this.sharedByte(shared_info.evtchn_mask + (port >>> 3)) & (1 << (port & 7))) !== 0;
  }

  testAndClearMask(port: number): boolean {
    return this.testAndClearShared(shared_info.evtchn_mask, port);
  }

  /** guest_test_and_set_bit(sel, &vcpu_info->evtchn_pending_sel) (sel < 64); returns the old bit. */
  testAndSetPendingSel(vcpuId: number, sel: number): boolean {
    const at = vcpu_info.evtchn_pending_sel + (sel >>> 3);
    const m = 1 << (sel & 7);
    const old = this.vcpuInfoByte(vcpuId, at);
    if ((old & m) !== 0) return true;
    this.setVcpuInfoByte(vcpuId, at, old | m);
    return false;
  }

  /**
   * vcpu_mark_events_pending's test_and_set_bit(0, &evtchn_upcall_pending): sets bit 0 and
   * returns whether it was already set (other bits the guest wrote are left alone, as in Xen).
   */
  testAndSetUpcallPending(vcpuId: number): boolean {
    const old = this.vcpuInfoByte(vcpuId, vcpu_info.evtchn_upcall_pending);
    if ((old & 1) !== 0) return true;
    this.setVcpuInfoByte(vcpuId, vcpu_info.evtchn_upcall_pending, old | 1);
    return false;
  }

  /** `!!vcpu_info(v, evtchn_upcall_pending)`: the whole byte, as Xen's readers test it. */
  upcallPending(vcpuId: number): boolean {
    return this.vcpuInfoByte(vcpuId, vcpu_info.evtchn_upcall_pending) !== 0;
  }

  /**
   * Xen's map_vcpu_info (common/domain.c) after the caller found the frame: `hpaOfFrame` is the
   * machine address of the guest frame if it is the domain's own writable RAM (else undefined).
   * Checks in Xen's order: offset past the page or misaligned -ENXIO; already moved -EINVAL;
   * another vCPU that is up -EINVAL; a frame that is not the domain's RAM -EINVAL. Then the
   * current contents are copied (from the private stand-in: zeroes with evtchn_upcall_mask = 1),
   * evtchn_pending_sel is set to all ones so that nothing pending is lost, and the caller marks
   * events pending (`markPending`, Xen's vcpu_mark_events_pending). Returns 0 or -errno.
   */
  registerVcpuInfo(t: VcpuInfoTarget, offset: number, hpaOfFrame: () => number | undefined, markPending: () => void): number {
    if (!(offset >= 0) || offset > PAGE_SIZE - vcpu_info.SIZEOF || offset % VCPU_INFO_ALIGN !== 0) return -XEN_ENXIO;
    if (this.registered.has(t.vcpuId)) return -XEN_EINVAL;
    if (!t.isCurrent && t.isUp) return -XEN_EINVAL;
    const frame = hpaOfFrame();
    if (frame === undefined) return -XEN_EINVAL;
    const to = frame + offset;
    const copy = new Uint8Array(vcpu_info.SIZEOF);
    const from = this.vcpuInfoHpa(t.vcpuId);
    if (from === undefined) {
      copy[vcpu_info.evtchn_upcall_mask] = 1; // XEN_HAVE_PV_UPCALL_MASK: a fresh vcpu_info starts masked
    } else {
      this.memory.readBytes(from, copy);
    }
    for (let k = 0; k < 8; k++) copy[vcpu_info.evtchn_pending_sel + k] = 0xff;
    this.memory.writeBytes(to, copy);
    this.onWrite?.(Math.floor(to / PAGE_SIZE));
    this.registered.set(t.vcpuId, to);
    this.dummies.delete(t.vcpuId);
    markPending();
    this.onVcpuInfoMoved?.(t.vcpuId);
    return 0;
  }
}

const registerBytes = new Uint8Array(vcpu_register_vcpu_info.SIZEOF);
const registerView = new DataView(registerBytes.buffer);

/**
 * VCPUOP_register_vcpu_info (common/domain.c): copy the struct vcpu_register_vcpu_info in once
 * (-EFAULT), then map_vcpu_info on the guest frame `mfn` (a gfn for HVM) at `offset`; the frame
 * must be the domain's own RAM (`domainRamFrame`). Xen 4.17 does not check `rsvd`.
 */
export function registerVcpuInfo(ctx: ExitContext, target: Vcpu, argPtr: number): number {
  if (copyFromGuest(ctx, argPtr, registerBytes, registerBytes.length) !== registerBytes.length) return -XEN_EFAULT;
  const d = ctx.domain;
  const gfnLo = registerView.getUint32(vcpu_register_vcpu_info.mfn, true);
  const gfnHi = registerView.getUint32(vcpu_register_vcpu_info.mfn + 4, true);
  const offset = registerView.getUint32(vcpu_register_vcpu_info.offset, true);
  const t = { vcpuId: target.id, isCurrent: target === ctx.vcpu, isUp: target.isUp };
  let frame: number | undefined;
  const rc = d.xen.sharedInfo.registerVcpuInfo(t, offset, () => (frame = domainRamFrame(d, gfnLo, gfnHi)), () => d.xen.upcall.markEventsPending(target.id));
  // map_vcpu_info's page reference: the frame stays out of the allocator until the domain is destroyed (p2m.ts).
  if (rc === 0 && frame !== undefined) holdFrameForDomain(d, (frame / PAGE_SIZE) as Mfn);
  return rc;
}

/**
 * The machine address of guest frame `gfnHi:gfnLo` (a 64-bit gfn in halves) if the domain may
 * give it to Xen as a page of its own (get_page_from_gfn + a writable page type): RAM in its p2m,
 * not MMIO, not a grant mapping of another domain's frame (a shadow domain's identity page table
 * is in no p2m, so no gfn reaches it). Else undefined.
 */
export function domainRamFrame(d: Domain, gfnLo: number, gfnHi: number): number | undefined {
  if (gfnHi >= 1 << 20) return undefined;
  const gpa = (gfnHi * 2 ** 32 + (gfnLo >>> 0)) * PAGE_SIZE;
  return d.machineAddress(gpa);
}
