/**
 * Xen's per-vCPU timers (xen/common/sched/core.c, xen/common/domain.c): the single-shot timer
 * (VCPUOP_set_singleshot_timer, HYPERVISOR_set_timer_op), the periodic timer
 * (VCPUOP_set_periodic_timer), the SCHEDOP_poll timeout and the domain's watchdogs
 * (SCHEDOP_watchdog). A single-shot or periodic expiry sends VIRQ_TIMER to its vCPU (Xen's
 * send_timer_event); a poll timeout wakes the polling vCPU; a watchdog shuts the domain down with
 * SHUTDOWN_watchdog.
 *
 * Deadlines are nanoseconds of system time (the host clock, time.ts). They are plain numbers on
 * the vCPU, not entries in a timer queue: re-arming costs a store, so a guest that re-arms in a
 * loop pays only for its own hypercall exits. The scheduler bounds each run of guest code by the
 * earliest deadline (`nextDeadlineNs`, as it does for the APIC timer), so an expiry is seen at the
 * instruction it falls on, and jumps the clock to it when every vCPU is idle; `fireTimers` fires
 * whatever is due.
 *
 * Modelled more simply than Xen: deadlines more than 2^53 cycles after host boot (52 days at
 * 2 GHz) never fire (the simulated clock would lose its exactness); and a periodic timer whose
 * last expiry left its vCPU blocked does not, by itself, move an idle host's clock again (its
 * next expiry could change nothing: the same event is already pending), until some vCPU runs or
 * the vCPU is scheduled, when Xen's vcpu_periodic_timer_work catches up with one event.
 */
import { SHUTDOWN_watchdog, VIRQ_TIMER } from "@vtlab/xen-public";
import type { Domain, Hypervisor, Vcpu } from "../hypervisor.js";
import { systemTimeNs } from "./time.js";

/** Xen's MILLISECS(1): the shortest period VCPUOP_set_periodic_timer accepts. */
export const PERIODIC_TIMER_MIN_NS = 1_000_000;
/** Xen's STIME_DELTA_MAX ((uint64_t)~0 >> 2): the longest period accepted. */
export const STIME_DELTA_MAX = 2 ** 62 - 1;
/** set_timer_op: a deadline this far (2^50 ns, about 13 days) or more ahead is taken as 100 ms (Xen's Linux workaround). */
export const SET_TIMER_OP_MAX_OFFSET_NS = 2 ** 50;
/** Xen's MILLISECS(100): the deadline set_timer_op substitutes for a huge or negative one. */
export const SET_TIMER_OP_HUGE_TIMEOUT_NS = 100_000_000;
/** Xen's NR_DOMAIN_WATCHDOG_TIMERS. */
export const NR_DOMAIN_WATCHDOG_TIMERS = 2;
/** SCHEDOP_poll's limit on nr_ports ("fairly arbitrary", do_poll). */
export const SCHED_POLL_MAX_PORTS = 128;

const NEVER = Number.POSITIVE_INFINITY;

/** One vCPU's timers and poll state. */
export class VcpuTimers {
  /** The single-shot timer's deadline (ns), or +Infinity when stopped. */
  singleshot = NEVER;
  /** The periodic timer's period (ns), 0 when stopped (an HVM vCPU starts with none, as in Xen). */
  periodicPeriod = 0;
  /** Xen's periodic_last_event: when the periodic timer last sent an event (ns). */
  periodicLast = 0;
  /** The periodic timer's next expiry (ns), or +Infinity. */
  periodicNext = NEVER;
  /** `Hypervisor.slicesRun` when the periodic timer last fired and left the vCPU blocked (see the module comment). */
  periodicInertAt = -1;
  /** Blocked in SCHEDOP_poll. */
  polling = false;
  /** The polled ports (a private copy) and how many; Xen's poll_evtchn is `pollPorts[0]` when `pollCount` is 1. */
  readonly pollPorts = new Uint32Array(SCHED_POLL_MAX_PORTS);
  pollCount = 0;
  /** The poll's timeout (ns), or +Infinity for none. */
  pollDeadline = NEVER;
  /** SCHEDOP_yield: end the slice after this exit. */
  yieldRequested = false;
  /** VIRQ_TIMER events sent for this vCPU (single-shot and periodic expiries). */
  timerEvents = 0;
}

/** A domain's watchdogs (SCHEDOP_watchdog). */
export class DomainTimers {
  /** Deadline of each watchdog (ns), +Infinity when not armed; `inUse` says which ids are allocated. */
  readonly watchdog = new Float64Array(NR_DOMAIN_WATCHDOG_TIMERS).fill(NEVER);
  readonly inUse = new Uint8Array(NR_DOMAIN_WATCHDOG_TIMERS);
}

/**
 * A guest's 64-bit deadline (`hi`:`lo`, as s_time_t) in ns: a set bit 63 is a negative time, in
 * the past (Xen's set_timer takes s_time_t, so such a timer fires at once).
 */
export function signedDeadline(lo: number, hi: number): number {
  return (hi | 0) < 0 ? -1 : (hi >>> 0) * 2 ** 32 + (lo >>> 0);
}

/** Xen's send_timer_event: VIRQ_TIMER to the vCPU. */
export function sendTimerEvent(v: Vcpu): void {
  v.xenTimers.timerEvents++;
  v.domain.xen.evtchn.sendVirq(v.id, VIRQ_TIMER);
}

/** Arm (or re-arm) the single-shot timer at `deadline` ns (already due: it fires at the next check). */
export function setSingleshot(v: Vcpu, deadline: number): void {
  v.xenTimers.singleshot = deadline;
}

export function stopSingleshot(v: Vcpu): void {
  v.xenTimers.singleshot = NEVER;
}

/** Xen's vcpu_periodic_timer_work: if a period has passed since the last event, send one now; arm the next. */
export function periodicTimerWork(v: Vcpu, now: number): void {
  const t = v.xenTimers;
  if (t.periodicPeriod === 0) return;
  let next = t.periodicLast + t.periodicPeriod;
  if (now >= next) {
    sendTimerEvent(v);
    t.periodicLast = now;
    next = now + t.periodicPeriod;
  }
  t.periodicNext = next;
}

/** Xen's vcpu_set_periodic_timer: `period` ns (validated by the caller), 0 stops it. */
export function setPeriodic(v: Vcpu, period: number, now: number): void {
  const t = v.xenTimers;
  t.periodicNext = NEVER;
  t.periodicPeriod = period;
  if (period !== 0) periodicTimerWork(v, now);
}

/** End a poll: the timeout is stopped and the vCPU no longer polls (it may still be blocked for another reason). */
export function endPoll(v: Vcpu): void {
  const t = v.xenTimers;
  t.polling = false;
  t.pollCount = 0;
  t.pollDeadline = NEVER;
}

/** Wake a blocked vCPU (Xen's vcpu_unblock). */
export function unblock(v: Vcpu): void {
  if (!v.blocked || v.down) return;
  v.blocked = false;
  v.wakeups++;
}

/**
 * Deadlines past this many cycles after boot never fire (see the module comment): the host clock
 * is a double of cycles, exact below 2^53.
 */
function reachable(hv: Hypervisor, ns: number): number {
  return hv.clock.cyclesFromNanoseconds(ns) < Number.MAX_SAFE_INTEGER ? ns : NEVER;
}

/**
 * The earliest Xen timer deadline (ns) of domain `d`, or +Infinity. `idle`: the host is idle
 * (every vCPU blocked); a periodic timer that last fired into a still-blocked vCPU since the
 * last slice is left out then.
 */
export function nextTimerDeadlineNs(hv: Hypervisor, d: Domain, idle: boolean): number {
  let next = NEVER;
  for (const v of d.vcpus) {
    const t = v.xenTimers;
    if (t.singleshot < next) next = t.singleshot;
    if (t.periodicNext < next && !(idle && t.periodicInertAt === hv.slicesRun)) next = t.periodicNext;
    if (t.polling && t.pollDeadline < next) next = t.pollDeadline;
  }
  const w = d.xenTimers.watchdog;
  for (let i = 0; i < w.length; i++) if (w[i]! < next) next = w[i]!;
  return next === NEVER ? NEVER : reachable(hv, next);
}

/**
 * Fire the Xen timers of domain `d` that are due at the host clock's now: single-shot and
 * periodic expiries send VIRQ_TIMER, poll timeouts wake their vCPU, and a watchdog shuts the
 * domain down (Xen's domain_watchdog_timeout). Polling vCPUs whose polled ports became pending
 * are woken too (Xen's evtchn_check_pollers, for event channels set pending without it).
 */
export function fireTimers(hv: Hypervisor, d: Domain): void {
  const now = systemTimeNs(hv.clock);
  for (const v of d.vcpus) {
    const t = v.xenTimers;
    if (t.singleshot <= now) {
      t.singleshot = NEVER;
      sendTimerEvent(v);
    }
    if (t.periodicNext <= now) {
      periodicTimerWork(v, now);
      if (v.blocked) t.periodicInertAt = hv.slicesRun;
    }
    if (t.polling) {
      if (!v.blocked) endPoll(v); // woken by something else (an upcall, an interrupt)
      else if (t.pollDeadline <= now || pollSatisfied(d, t)) {
        endPoll(v);
        unblock(v);
      }
    }
  }
  const w = d.xenTimers.watchdog;
  for (let i = 0; i < w.length; i++) {
    if (w[i]! <= now) {
      w[i] = NEVER;
      if (d.state === "running") d.shutdownWith(SHUTDOWN_watchdog, "SCHEDOP_watchdog");
    }
  }
}

/** One of the polled ports is pending. */
function pollSatisfied(d: Domain, t: VcpuTimers): boolean {
  const evtchn = d.xen.evtchn;
  for (let i = 0; i < t.pollCount; i++) if (evtchn.isPending(t.pollPorts[i]!)) return true;
  return false;
}

/**
 * Xen's evtchn_check_pollers: event channel `port` of domain `d` was just set pending; wake the
 * vCPUs polling on it (a vCPU polling several ports, or none, wakes on any port, as in Xen). The
 * event-channel code calls this; `fireTimers` also checks the polled ports themselves.
 */
export function evtchnCheckPollers(d: Domain, port: number): void {
  for (const v of d.vcpus) {
    const t = v.xenTimers;
    if (!t.polling) continue;
    if (t.pollCount === 1 && t.pollPorts[0] !== port) continue;
    endPoll(v);
    unblock(v);
  }
}
