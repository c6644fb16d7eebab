/**
 * HYPERVISOR_sched_op and HYPERVISOR_set_timer_op (xen/common/sched/core.c: do_sched_op,
 * do_poll, vcpu_block_enable_events, domain_watchdog, do_set_timer_op; xen/common/domain.c:
 * domain_shutdown), the vCPU runstate accounting (vcpu_runstate_change, vcpu_runstate_get,
 * update_runstate_area) and the runstate / timer sub-ops of HYPERVISOR_vcpu_op
 * (common_vcpu_op).
 *
 * Structures come from the guest once (copy_from_guest), are decoded from the private copy and
 * checked; answers are Xen's errnos. A 64-bit caller uses the x86_64 layouts, any other the
 * 32-bit "compat" ones (Xen's hvm_hypercall picks the compat table outside 64-bit mode).
 *
 * Modelled more simply than Xen: a vCPU's runstate area is written with the layout of the mode
 * it was registered from (Xen latches one size for the whole domain, has_32bit_shinfo), and
 * the area is written in one step, so XEN_RUNSTATE_UPDATE (VMASST_TYPE_runstate_update_flag,
 * vm_assist.ts) is never seen set. A polling vCPU's poll ends when it runs again
 * (Xen leaves its poll_mask bit until an event or the timeout clears it). SCHEDOP_shutdown's
 * SHUTDOWN_suspend, _watchdog, _soft_reset and any other reason stop the domain in state
 * "shutdown" with `Domain.shutdownCode` set, for the toolstack to act on (vtlab's toolstack has no
 * save/restore, on_watchdog or soft reset); SHUTDOWN_poweroff is exit code 0.
 */
import {
  RUNSTATE_blocked,
  RUNSTATE_offline,
  RUNSTATE_runnable,
  RUNSTATE_running,
  SCHEDOP_block,
  SCHEDOP_pin_override,
  SCHEDOP_poll,
  SCHEDOP_remote_shutdown,
  SCHEDOP_shutdown,
  SCHEDOP_shutdown_code,
  SCHEDOP_watchdog,
  SCHEDOP_yield,
  SHUTDOWN_crash,
  SHUTDOWN_poweroff,
  SHUTDOWN_reboot,
  SHUTDOWN_soft_reset,
  SHUTDOWN_suspend,
  SHUTDOWN_watchdog,
  VCPUOP_get_runstate_info,
  VCPUOP_register_runstate_memory_area,
  VCPUOP_set_periodic_timer,
  VCPUOP_set_singleshot_timer,
  VCPUOP_stop_periodic_timer,
  VCPUOP_stop_singleshot_timer,
  VCPU_SSHOTTMR_future,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOSPC,
  XEN_ENOSYS,
  XEN_EPERM,
  XEN_ESRCH,
  XEN_ETIME,
  compat_sched_poll,
  compat_vcpu_register_runstate_memory_area,
  compat_vcpu_runstate_info,
  compat_vcpu_set_singleshot_timer,
  sched_poll,
  sched_remote_shutdown,
  sched_shutdown,
  sched_watchdog,
  vcpu_info,
  vcpu_register_runstate_memory_area,
  vcpu_runstate_info,
  vcpu_set_periodic_timer,
  vcpu_set_singleshot_timer,
} from "@vtlab/xen-public";
import type { SimClock } from "@vtlab/arch";
import { RFLAGS_IF, VmcsField as F } from "@vtlab/cpu-vmx";
import type { ExitContext } from "../exits.js";
import { copyFromGuest, copyToGuest } from "../guest-memory.js";
import type { Domain, Hypervisor, Vcpu } from "../hypervisor.js";
import type { HypercallArgs } from "./table.js";
import { Ecs } from "./event_channel.js";
import { systemTimeNs } from "./time.js";
import {
  NR_DOMAIN_WATCHDOG_TIMERS,
  PERIODIC_TIMER_MIN_NS,
  SCHED_POLL_MAX_PORTS,
  SET_TIMER_OP_HUGE_TIMEOUT_NS,
  SET_TIMER_OP_MAX_OFFSET_NS,
  endPoll,
  periodicTimerWork,
  setPeriodic,
  setSingleshot,
  signedDeadline,
  stopSingleshot,
} from "./timer.js";

// ---- runstate ----

/** SHUTDOWN_* (sched.h) by value, as the header names them. */
export const SHUTDOWN_NAMES: Readonly<Record<number, string>> = {
  [SHUTDOWN_poweroff]: "SHUTDOWN_poweroff",
  [SHUTDOWN_reboot]: "SHUTDOWN_reboot",
  [SHUTDOWN_suspend]: "SHUTDOWN_suspend",
  [SHUTDOWN_crash]: "SHUTDOWN_crash",
  [SHUTDOWN_watchdog]: "SHUTDOWN_watchdog",
  [SHUTDOWN_soft_reset]: "SHUTDOWN_soft_reset",
};

/** The four RUNSTATE_* values, for names in reports. */
export const RUNSTATE_NAMES = ["running", "runnable", "blocked", "offline"] as const;

/**
 * One vCPU's struct vcpu_runstate_info as Xen keeps it: the current state, when it was entered
 * (ns of system time) and the time spent in each state. `sync` moves it to the state the vCPU is
 * in now; the Vcpu calls it whenever `blocked` or `down` changes, the scheduler when it switches
 * vCPUs, the domain when its state changes.
 */
export class VcpuRunstate {
  state: number = RUNSTATE_offline;
  /** state_entry_time (ns). */
  entry: number;
  /** time[RUNSTATE_*] (ns). */
  readonly time = new Float64Array(4);
  /** On the host CPU now (between the scheduler's switch in and out). */
  running = false;
  /** VCPUOP_register_runstate_memory_area: the guest-linear address, or undefined; and the layout. */
  area: number | undefined = undefined;
  areaCompat = false;
  /** Runstate areas written at context switches (and how many could not be: the address did not translate). */
  areaWrites = 0;
  areaFaults = 0;

  constructor(private readonly clock: SimClock) {
    this.entry = systemTimeNs(clock);
  }

  /** The state the vCPU is in (Xen's runstate rules: running on the CPU, offline when down or its domain stopped, blocked, else runnable). */
  private derive(v: Vcpu): number {
    if (this.running) return RUNSTATE_running;
    if (!v.isUp) return RUNSTATE_offline;
    if (v.blocked) return RUNSTATE_blocked;
    return v.domain.state === "running" ? RUNSTATE_runnable : RUNSTATE_offline;
  }

  /** Xen's vcpu_runstate_change to the state derived now. */
  sync(v: Vcpu): void {
    const next = this.derive(v);
    if (next === this.state) return;
    const now = systemTimeNs(this.clock);
    const delta = now - this.entry;
    if (delta > 0) {
      this.time[this.state] = this.time[this.state]! + delta;
      this.entry = now;
    }
    this.state = next;
  }

  /** Xen's vcpu_runstate_get: the current state's time includes the time since it was entered. */
  snapshot(out: Float64Array): { state: number; entry: number } {
    out.set(this.time);
    const delta = systemTimeNs(this.clock) - this.entry;
    if (delta > 0) out[this.state] = out[this.state]! + delta;
    return { state: this.state, entry: this.entry };
  }
}

const runstateTime = new Float64Array(4);
const runstateBytes = new Uint8Array(vcpu_runstate_info.SIZEOF);
const runstateView = new DataView(runstateBytes.buffer);

function putU64(dv: DataView, off: number, x: number): void {
  dv.setUint32(off, x >>> 0, true);
  dv.setUint32(off + 4, Math.floor(x / 2 ** 32) >>> 0, true);
}

/** Encode a runstate into `runstateBytes` in the native or compat layout; returns the size. */
function encodeRunstate(state: number, entry: number, time: Float64Array, compat: boolean): number {
  const L = compat ? compat_vcpu_runstate_info : vcpu_runstate_info;
  runstateBytes.fill(0);
  runstateView.setInt32(L.state, state, true);
  putU64(runstateView, L.state_entry_time, entry);
  for (let i = 0; i < 4; i++) putU64(runstateView, L.time + 8 * i, time[i]!);
  return L.SIZEOF;
}

/**
 * Xen's update_runstate_area at a context switch: copy the vCPU's runstate to its registered
 * area through its own paging (copy_to_guest); an address that does not translate is skipped.
 */
export function updateRunstateArea(hv: Hypervisor, v: Vcpu): void {
  const rs = v.runstate;
  if (rs.area === undefined) return;
  const size = encodeRunstate(rs.state, rs.entry, rs.time, rs.areaCompat);
  const n = copyToGuest({ hv, domain: v.domain, vcpu: v }, rs.area, runstateBytes, size);
  if (n === size) rs.areaWrites++;
  else rs.areaFaults++;
}

// ---- sched_op ----

const argBytes = new Uint8Array(32);
const argView = new DataView(argBytes.buffer);
const portBytes = new Uint8Array(SCHED_POLL_MAX_PORTS * 4);
const portView = new DataView(portBytes.buffer);

/** copy_from_guest of `size` bytes into argBytes: true if all of it came. */
function copyArg(ctx: ExitContext, ptr: number, size: number): boolean {
  argBytes.fill(0);
  return copyFromGuest(ctx, ptr, argBytes, size) === size;
}

/**
 * HYPERVISOR_sched_op(int cmd, XEN_GUEST_HANDLE_PARAM(void) arg).
 */
export function do_sched_op(ctx: ExitContext, a: HypercallArgs): number {
  const cmd = a.int(0);
  const arg = a.ptr(1);
  const d = ctx.domain;
  const v = ctx.vcpu;
  switch (cmd) {
    case SCHEDOP_yield:
      v.xenTimers.yieldRequested = true;
      return 0;
    case SCHEDOP_block:
      blockEnableEvents(ctx);
      return 0;
    case SCHEDOP_shutdown: {
      if (!copyArg(ctx, arg, sched_shutdown.SIZEOF)) return -XEN_EFAULT;
      d.shutdownWith(argView.getUint32(sched_shutdown.reason, true) & 0xff, "SCHEDOP_shutdown");
      return 0;
    }
    case SCHEDOP_shutdown_code: {
      if (!copyArg(ctx, arg, sched_shutdown.SIZEOF)) return -XEN_EFAULT;
      if (d.shutdownCode === undefined) d.shutdownCode = argView.getUint32(sched_shutdown.reason, true) & 0xff;
      return 0;
    }
    case SCHEDOP_poll:
      return doPoll(ctx, arg, a.long);
    case SCHEDOP_remote_shutdown: {
      if (!copyArg(ctx, arg, sched_remote_shutdown.SIZEOF)) return -XEN_EFAULT;
      const domid = argView.getUint16(sched_remote_shutdown.domain_id, true);
      // rcu_lock_domain_by_id (DOMID_SELF is not an id there), then XSM_DM_PRIV: only the
      // control domain or the target's device model may shut another domain down.
      const exists = domid === ctx.hv.dom0.id || ctx.hv.domain(domid) !== undefined;
      return exists ? -XEN_EPERM : -XEN_ESRCH;
    }
    case SCHEDOP_watchdog: {
      if (!copyArg(ctx, arg, sched_watchdog.SIZEOF)) return -XEN_EFAULT;
      return domainWatchdog(ctx.hv, d, argView.getUint32(sched_watchdog.id, true), argView.getUint32(sched_watchdog.timeout, true));
    }
    case SCHEDOP_pin_override:
      return -XEN_EPERM; // the hardware domain only
    default:
      return -XEN_ENOSYS;
  }
}

/**
 * HVM's local_events_need_delivery (hvm_local_events_need_delivery): an interrupt is waiting
 * (hvm_vcpu_has_pending_irq: the event-channel callback vector with evtchn_upcall_pending set,
 * or the local APIC's highest pending vector) and the vCPU could take it now
 * (!hvm_interrupt_blocked: RFLAGS.IF set, no STI or MOV SS shadow). An upcall pending without
 * the vector callback does not count, as in Xen.
 */
function eventsNeedDelivery(d: Domain, v: Vcpu): boolean {
  const waiting = d.xen.upcall.callbackVectorPending(v) || (v.apic !== undefined && v.apic.pendingVector() >= 0);
  if (!waiting) return false;
  return (v.vmcs.read32(F.GUEST_RFLAGS) & RFLAGS_IF) !== 0 && (v.vmcs.read32(F.GUEST_INTERRUPTIBILITY_INFO) & INTERRUPTIBILITY_STI_MOV_SS) === 0;
}

/** Interruptibility state bits 0 (blocking by STI) and 1 (blocking by MOV SS), SDM Table 25-3. */
const INTERRUPTIBILITY_STI_MOV_SS = 3;

/**
 * vcpu_block_enable_events: clear evtchn_upcall_mask in the vCPU's vcpu_info, then block unless
 * an event is already waiting (checked after blocking, as Xen does, so none is missed).
 */
function blockEnableEvents(ctx: ExitContext): void {
  const { domain: d, vcpu: v, hv } = ctx;
  const info = d.xen.sharedInfo.vcpuInfoHpa(v.id);
  if (info !== undefined) hv.memory.write8(info + vcpu_info.evtchn_upcall_mask, 0);
  v.blocked = true;
  if (eventsNeedDelivery(d, v)) v.blocked = false;
}

/**
 * do_poll: block until one of `nr_ports` ports (a guest array of evtchn_port_t) is pending or the
 * absolute `timeout` (ns of system time; 0 = none) passes. -EINVAL for more than 128 ports or
 * for a port that is not a usable channel, -EFAULT for a port array that cannot be read; 0
 * (without blocking) when an event is already waiting or one of the ports is pending.
 */
function doPoll(ctx: ExitContext, arg: number, long: boolean): number {
  const { domain: d, vcpu: v } = ctx;
  const L = long ? sched_poll : compat_sched_poll;
  if (!copyArg(ctx, arg, L.SIZEOF)) return -XEN_EFAULT;
  const portsPtr = long ? argView.getUint32(L.ports, true) + (argView.getInt32(L.ports + 4, true) * 2 ** 32) : argView.getUint32(L.ports, true);
  const nrPorts = argView.getUint32(L.nr_ports, true);
  const timeout = signedDeadline(argView.getUint32(L.timeout, true), argView.getUint32(L.timeout + 4, true));
  const timeoutIsZero = argView.getUint32(L.timeout, true) === 0 && argView.getUint32(L.timeout + 4, true) === 0;
  if (nrPorts > SCHED_POLL_MAX_PORTS) return -XEN_EINVAL;
  // guest_handle_okay is always true for an HVM guest (its copies go through its paging).
  if (eventsNeedDelivery(d, v)) return 0;
  // The ports, read once: Xen copies them one at a time and stops at the first it cannot read,
  // so a short copy is -EFAULT at the first missing port, after the ports before it were checked.
  const got = copyFromGuest(ctx, portsPtr, portBytes, nrPorts * 4);
  const evtchn = d.xen.evtchn;
  const t = v.xenTimers;
  for (let i = 0; i < nrPorts; i++) {
    if ((i + 1) * 4 > got) return -XEN_EFAULT;
    const port = portView.getUint32(i * 4, true);
    // evtchn_port_poll: a valid, usable channel (state above ECS_RESERVED), and its pending bit.
    if (!evtchn.portIsValid(port) || !(evtchn.stateOf(port) > Ecs.Reserved)) return -XEN_EINVAL;
    if (evtchn.isPending(port)) return 0;
    t.pollPorts[i] = port;
  }
  t.pollCount = nrPorts;
  t.polling = true;
  t.pollDeadline = timeoutIsZero ? Number.POSITIVE_INFINITY : timeout;
  v.blocked = true;
  return 0;
}

/** domain_watchdog: id 0 allocates a watchdog (returns its id, 1-based); a known id re-arms (timeout s) or, with timeout 0, frees it. */
function domainWatchdog(hv: Hypervisor, d: Domain, id: number, timeout: number): number {
  const w = d.xenTimers;
  if (id > NR_DOMAIN_WATCHDOG_TIMERS) return -XEN_EINVAL;
  const now = systemTimeNs(hv.clock);
  if (id === 0) {
    for (let i = 0; i < NR_DOMAIN_WATCHDOG_TIMERS; i++) {
      if (w.inUse[i] !== 0) continue;
      w.inUse[i] = 1;
      w.watchdog[i] = now + timeout * 1e9;
      return i + 1;
    }
    return -XEN_ENOSPC;
  }
  const i = id - 1;
  if (w.inUse[i] === 0) return -XEN_EINVAL;
  if (timeout === 0) {
    w.watchdog[i] = Number.POSITIVE_INFINITY;
    w.inUse[i] = 0;
  } else {
    w.watchdog[i] = now + timeout * 1e9;
  }
  return 0;
}

// ---- set_timer_op ----

/**
 * HYPERVISOR_set_timer_op(s_time_t timeout): the vCPU's single-shot timer at `timeout` ns of
 * system time; 0 stops it; a negative timeout or one 2^50 ns or more ahead is taken as 100 ms from
 * now (Xen's workaround for old Linux). In 64-bit mode the argument is one register; otherwise
 * the compat ABI passes it as two 32-bit halves (lo, hi).
 */
export function do_set_timer_op(ctx: ExitContext, a: HypercallArgs): number {
  const v = ctx.vcpu;
  const lo = a.uint(0);
  const hi = a.long ? a.high(0) : a.uint(1);
  const now = systemTimeNs(ctx.hv.clock);
  if (lo === 0 && hi === 0) {
    stopSingleshot(v);
    return 0;
  }
  const timeout = signedDeadline(lo, hi);
  if (timeout < 0 || timeout - now >= SET_TIMER_OP_MAX_OFFSET_NS) setSingleshot(v, now + SET_TIMER_OP_HUGE_TIMEOUT_NS);
  else setSingleshot(v, timeout);
  return 0;
}

// ---- vcpu_op: timers and runstate ----

/**
 * The timer and runstate sub-ops of HYPERVISOR_vcpu_op on vCPU `target` (common_vcpu_op); -ENOSYS
 * for another command. `ptr` is the guest handle; `long`: the caller is in 64-bit mode.
 */
export function vcpuTimeOp(ctx: ExitContext, cmd: number, target: Vcpu, ptr: number, long: boolean): number {
  const now = systemTimeNs(ctx.hv.clock);
  switch (cmd) {
    case VCPUOP_get_runstate_info: {
      target.runstate.sync(target);
      const { state, entry } = target.runstate.snapshot(runstateTime);
      const size = encodeRunstate(state, entry, runstateTime, !long);
      return copyToGuest(ctx, ptr, runstateBytes, size) === size ? 0 : -XEN_EFAULT;
    }
    case VCPUOP_register_runstate_memory_area: {
      const L = long ? vcpu_register_runstate_memory_area : compat_vcpu_register_runstate_memory_area;
      if (!copyArg(ctx, ptr, L.SIZEOF)) return -XEN_EFAULT;
      const addr = long ? argView.getUint32(L["addr.h"], true) + argView.getInt32(L["addr.h"] + 4, true) * 2 ** 32 : argView.getUint32(L["addr.h"], true);
      const rs = target.runstate;
      // A null handle unregisters; any other address is taken (guest_handle_okay is always
      // true for HVM) and written now, through the caller's paging, if it translates.
      rs.area = addr === 0 ? undefined : addr;
      rs.areaCompat = !long;
      if (rs.area !== undefined) {
        target.runstate.sync(target);
        const { state, entry } = rs.snapshot(runstateTime);
        const size = encodeRunstate(state, entry, target === ctx.vcpu ? rs.time : runstateTime, !long);
        copyToGuest(ctx, rs.area, runstateBytes, size);
      }
      return 0;
    }
    case VCPUOP_set_periodic_timer: {
      if (!copyArg(ctx, ptr, vcpu_set_periodic_timer.SIZEOF)) return -XEN_EFAULT;
      const lo = argView.getUint32(vcpu_set_periodic_timer.period_ns, true);
      const hi = argView.getUint32(vcpu_set_periodic_timer.period_ns + 4, true);
      const period = hi * 2 ** 32 + lo;
      // period_ns is a uint64_t: a "negative" period is huge. Above STIME_DELTA_MAX (2^62 - 1)
      // is bits 63:62 of it, bits 31:30 of the high half.
      if (period < PERIODIC_TIMER_MIN_NS || hi >= 0x4000_0000) return -XEN_EINVAL;
      setPeriodic(target, period, now);
      return 0;
    }
    case VCPUOP_stop_periodic_timer:
      setPeriodic(target, 0, now);
      return 0;
    case VCPUOP_set_singleshot_timer: {
      if (target !== ctx.vcpu) return -XEN_EINVAL;
      const L = long ? vcpu_set_singleshot_timer : compat_vcpu_set_singleshot_timer;
      if (!copyArg(ctx, ptr, L.SIZEOF)) return -XEN_EFAULT;
      const lo = argView.getUint32(L.timeout_abs_ns, true);
      const hi = argView.getUint32(L.timeout_abs_ns + 4, true);
      const flags = argView.getUint32(L.flags, true);
      // Xen 4.17.0: VCPU_SSHOTTMR_future and a deadline in the past (an unsigned compare) is
      // -ETIME. (Xen 4.17.5 and later ignore the flag and send the timer event at once.)
      if ((flags & VCPU_SSHOTTMR_future) !== 0 && hi * 2 ** 32 + lo < now) return -XEN_ETIME;
      setSingleshot(target, signedDeadline(lo, hi));
      return 0;
    }
    case VCPUOP_stop_singleshot_timer:
      if (target !== ctx.vcpu) return -XEN_EINVAL;
      stopSingleshot(target);
      return 0;
    default:
      return -XEN_ENOSYS;
  }
}

// ---- the scheduler's hooks ----

/**
 * The scheduler switches vCPU `v` in (Xen's schedule / context_switch): its runstate becomes
 * running and its area is written, a finished poll is cleaned up, the periodic timer catches up
 * (vcpu_periodic_timer_work), and the PV clock is published (update_vcpu_system_time, in time.ts
 * via the caller).
 */
export function switchIn(hv: Hypervisor, v: Vcpu): void {
  const rs = v.runstate;
  rs.running = true;
  rs.sync(v);
  updateRunstateArea(hv, v);
  const t = v.xenTimers;
  t.yieldRequested = false;
  if (t.polling) endPoll(v);
  periodicTimerWork(v, systemTimeNs(hv.clock));
}

/** The scheduler switches vCPU `v` out: its runstate leaves running and its area is written. */
export function switchOut(hv: Hypervisor, v: Vcpu): void {
  const rs = v.runstate;
  rs.running = false;
  rs.sync(v);
  updateRunstateArea(hv, v);
}

