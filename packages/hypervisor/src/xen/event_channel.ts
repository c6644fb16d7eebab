/**
 * Event channels, the 2-level ABI (Xen's common/event_channel.c and common/event_2l.c;
 * xen/include/public/event_channel.h): HYPERVISOR_event_channel_op for guests, the same code for
 * dom0's backends (dom0.ts), and the hooks the rest of the hypervisor sends through
 * (`sendVirq` for timers, `notify`).
 *
 * Per domain a table of EVTCHN_2L_NR_CHANNELS (4096) ports in typed arrays: state (Xen's ECS_*),
 * the vCPU to notify, and one word whose meaning depends on the state (the remote domid of an
 * unbound port, the remote port of an interdomain one, the VIRQ number); interdomain peers are
 * held by reference, as Xen's remote_dom pointer. Port 0 is reserved. Ports are "valid"
 * (Xen's port_is_valid) below `validPorts`, which grows in buckets of EVTCHNS_PER_BUCKET as
 * ports are allocated and never shrinks, so a port in an allocated bucket reports
 * EVTCHNSTAT_closed while one past it is -EINVAL, exactly as on Xen; nothing a guest does can
 * make the table larger than its max_evtchn_port allows (4095 by default, the 2-level ABI's
 * limit, under either ABI).
 *
 * Delivery goes through a domain's port operations (Xen's evtchn_port_ops): for a guest the
 * pending and mask bitmaps in its shared_info and evtchn_pending_sel / evtchn_upcall_pending in
 * the target vCPU's vcpu_info (`TwoLevelPorts`, evtchn_2l_set_pending / evtchn_2l_unmask), for
 * dom0 a private bitmap and a queue (dom0.ts).
 *
 * EVTCHNOP_init_control switches a domain to the FIFO ABI (event_fifo.ts: the same table, other
 * port operations); EVTCHNOP_reset switches it back, as Xen.
 *
 * Modelled more simply than Xen: no PIRQs (an HVM domain with nr_pirqs = 0: bind_pirq is
 * -EINVAL), no Xen-attached (consumer_is_xen) channels, EVTCHNOP_reset is never preempted (so
 * reset_cont finds no reset in progress: -EBUSY, as Xen answers then), a domain's
 * max_evtchn_port defaults to the ABI's 4095 (xl's default max_event_channels is 1023; set
 * `maxPort` to model it), and alloc_unbound for another domain is refused (-EPERM) before a port
 * is taken in that domain (Xen takes the port first: the answer differs only when that domain has
 * no free port).
 */
import {
  DOMID_SELF,
  EVTCHN_2L_NR_CHANNELS,
  EVTCHN_FIFO_LINK_BITS,
  EVTCHNOP_alloc_unbound,
  EVTCHNOP_bind_interdomain,
  EVTCHNOP_bind_ipi,
  EVTCHNOP_bind_pirq,
  EVTCHNOP_bind_vcpu,
  EVTCHNOP_bind_virq,
  EVTCHNOP_close,
  EVTCHNOP_expand_array,
  EVTCHNOP_init_control,
  EVTCHNOP_reset,
  EVTCHNOP_reset_cont,
  EVTCHNOP_send,
  EVTCHNOP_set_priority,
  EVTCHNOP_status,
  EVTCHNOP_unmask,
  EVTCHNSTAT_closed,
  EVTCHNSTAT_interdomain,
  EVTCHNSTAT_ipi,
  EVTCHNSTAT_pirq,
  EVTCHNSTAT_unbound,
  EVTCHNSTAT_virq,
  NR_VIRQS,
  VIRQ_DEBUG,
  VIRQ_TIMER,
  VIRQ_XENOPROF,
  VIRQ_XENPMU,
  XEN_EACCES,
  XEN_EBUSY,
  XEN_EEXIST,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOENT,
  XEN_ENOSPC,
  XEN_ENOSYS,
  XEN_EPERM,
  XEN_ESRCH,
  evtchn_alloc_unbound,
  evtchn_bind_interdomain,
  evtchn_bind_ipi,
  evtchn_bind_pirq,
  evtchn_bind_vcpu,
  evtchn_bind_virq,
  evtchn_close,
  evtchn_expand_array,
  evtchn_init_control,
  evtchn_reset,
  evtchn_send,
  evtchn_set_priority,
  evtchn_status,
  evtchn_unmask,
} from "@vtlab/xen-public";
import type { ExitContext } from "../exits.js";
import { copyFromGuest, copyToGuest } from "../guest-memory.js";
import { evtchnFifoExpandArray, evtchnFifoInitControl, fifoHostOf } from "./event_fifo.js";
import type { SharedInfo } from "./shared_info.js";
import type { HypercallArgs } from "./table.js";

/**
 * Ports per allocation bucket: Xen's EVTCHNS_PER_BUCKET = PAGE_SIZE / next_power_of_2(sizeof(struct
 * evtchn)); struct evtchn is 40 to 48 bytes on x86_64 (release and debug builds, with or without
 * XSM), so 64.
 */
export const EVTCHNS_PER_BUCKET = 64;

/** Xen's channel states (xen/sched.h ECS_*): hypervisor-internal, not ABI. */
export const Ecs = {
  Free: 0,
  Reserved: 1,
  Unbound: 2,
  Interdomain: 3,
  Pirq: 4,
  Virq: 5,
  Ipi: 6,
} as const;
export type Ecs = (typeof Ecs)[keyof typeof Ecs];

/** Bits per evtchn_pending_sel bit: a 64-bit xen_ulong_t word of the pending bitmap (BITS_PER_EVTCHN_WORD). */
const BITS_PER_EVTCHN_WORD = 64;

/**
 * Xen's virq_is_global: per-vCPU VIRQs are TIMER, DEBUG, XENOPROF and XENPMU; every other one
 * (VIRQ_ARCH_0..7 included, as arch_virq_is_global answers on x86) is global and is bound on
 * vCPU 0. Xen 4.17 lets an HVM guest bind any of the NR_VIRQS.
 */
export function virqIsGlobal(virq: number): boolean {
  return !(virq === VIRQ_TIMER || virq === VIRQ_DEBUG || virq === VIRQ_XENOPROF || virq === VIRQ_XENPMU);
}

/** A domain's delivery of events (Xen's evtchn_port_ops, 2-level ABI). */
export interface EvtchnPortOps {
  /** evtchn_port_set_pending: mark `port` pending and notify vCPU `vcpuId` as the ABI says. */
  setPending(vcpuId: number, port: number): void;
  clearPending(port: number): void;
  /** evtchn_port_unmask: clear the mask bit; re-deliver to `vcpuId` if the port is pending. */
  unmask(vcpuId: number, port: number): void;
  isPending(port: number): boolean;
  isMasked(port: number): boolean;
  /** vcpu_info.evtchn_upcall_pending of vCPU `vcpuId` is set (a domain without vcpu_info: false). */
  upcallPending(vcpuId: number): boolean;
  /** evtchn_port_init: a port was just bound (FIFO: default priority). */
  initPort?(port: number): void;
  /** evtchn_is_busy: a free port still linked on a FIFO queue may not be reused yet. */
  isBusy?(port: number): boolean;
  /** evtchn_port_set_priority: 0 or -errno (no such op: -ENOSYS, as under the 2-level ABI). */
  setPriority?(port: number, priority: number): number;
}

/** What an EventChannels table needs from the domain that owns it. */
export interface EvtchnOwner {
  readonly domid: number;
  /** The domain's vCPUs (domain_vcpu's bound). */
  readonly vcpuCount: number;
  /** The control domain (XSM's default policy lets it act on every domain). */
  readonly privileged: boolean;
  /** Paused by the toolstack (Xen's controller_pause_count): another domain may then reset its channels. */
  readonly controllerPaused: boolean;
  /** rcu_lock_domain_by_id: the event channels of domain `domid` (0 is dom0), or undefined. */
  lookup(domid: number): EventChannels | undefined;
}

/** EVTCHNOP_status's answer. */
export interface EvtchnStatus {
  readonly status: number;
  readonly vcpu: number;
  /** EVTCHNSTAT_unbound / interdomain: the remote domain. */
  readonly dom?: number;
  /** EVTCHNSTAT_interdomain: the remote port. */
  readonly port?: number;
  /** EVTCHNSTAT_virq. */
  readonly virq?: number;
}

/** Per-table counters (a guest's are also in its XenStats). */
export interface EvtchnCounters {
  /** Sends (EVTCHNOP_send, notify) that reached a port. */
  eventsSent: number;
  /** Events that set a pending bit that was clear. */
  eventsDelivered: number;
}

/** One domain's event channels (Xen's d->evtchn and friends). */
export class EventChannels {
  /**
   * d->max_evtchn_port: the highest port the domain may allocate (the toolstack's
   * max_event_channels - 1). The 2-level ABI's 4095 by default; a FIFO guest gets more only if
   * the toolstack raises it (up to EVTCHN_FIFO_NR_CHANNELS - 1).
   */
  maxPort = EVTCHN_2L_NR_CHANNELS - 1;
  /** d->valid_evtchns: ports below this are in an allocated bucket. */
  private valid = EVTCHNS_PER_BUCKET;
  /** max_evtchns(d): the ABI's limit (2-level 4096, FIFO 131072). */
  private limit = EVTCHN_2L_NR_CHANNELS;
  private portOps: EvtchnPortOps;
  /** The 2-level ops the domain started with (EVTCHNOP_reset returns to them). */
  private readonly twoLevelOps: EvtchnPortOps;
  // Per port, grown with the buckets (never past the ABI's limit).
  private state = new Uint8Array(EVTCHNS_PER_BUCKET);
  private notifyVcpu = new Uint16Array(EVTCHNS_PER_BUCKET);
  /** Unbound: the remote domid; interdomain: the remote port; VIRQ: the VIRQ. */
  private word = new Int32Array(EVTCHNS_PER_BUCKET);
  /** Interdomain: the remote domain's table, by local port. */
  private readonly peers = new Map<number, EventChannels>();
  /** v->virq_to_evtchn[] for every vCPU: vcpu * NR_VIRQS + virq. */
  private virqToEvtchn: Int32Array | undefined;
  /** d->active_evtchns. */
  private active = 0;
  private dying = false;
  /**
   * Xen's evtchn_check_pollers: called with a port that has just become pending (sched.ts's
   * SCHEDOP_poll wakes its pollers from here).
   */
  checkPollers: ((port: number) => void) | undefined = undefined;

  constructor(
    readonly owner: EvtchnOwner,
    ops: EvtchnPortOps,
    readonly counters: EvtchnCounters,
  ) {
    this.portOps = ops;
    this.twoLevelOps = ops;
    this.state[0] = Ecs.Reserved;
  }

  /** The port operations of the ABI in use (Xen's d->evtchn_port_ops). */
  get ops(): EvtchnPortOps {
    return this.portOps;
  }

  /** max_evtchns(d). */
  get maxPorts(): number {
    return this.limit;
  }

  /** The FIFO ABI is in use (EVTCHNOP_init_control succeeded and no reset since). */
  get fifo(): boolean {
    return this.portOps !== this.twoLevelOps;
  }

  /** EVTCHNOP_init_control's switch to the FIFO ABI (event_fifo.ts). */
  switchToFifo(ops: EvtchnPortOps, maxPorts: number): void {
    this.portOps = ops;
    this.limit = maxPorts;
  }

  private grow(ports: number): void {
    let n = this.state.length;
    if (ports <= n) return;
    while (n < ports) n *= 2;
    const state = new Uint8Array(n);
    state.set(this.state);
    const notify = new Uint16Array(n);
    notify.set(this.notifyVcpu);
    const word = new Int32Array(n);
    word.set(this.word);
    this.state = state;
    this.notifyVcpu = notify;
    this.word = word;
  }

  get domid(): number {
    return this.owner.domid;
  }

  /** port_is_valid. */
  portIsValid(port: number): boolean {
    return Number.isInteger(port) && port >= 0 && port < this.valid;
  }

  /** Ports in allocated buckets (d->valid_evtchns). */
  get validPorts(): number {
    return this.valid;
  }

  /** Ports in use (d->active_evtchns). */
  get activePorts(): number {
    return this.active;
  }

  /** The state of `port` (Ecs.Free past the allocated buckets). */
  stateOf(port: number): Ecs {
    return (this.portIsValid(port) ? this.state[port]! : Ecs.Free) as Ecs;
  }

  /**
   * evtchn_usable: a bound port (Xen: state above ECS_RESERVED and no Xen consumer). The port
   * operations act only on these (evtchn_port_set_pending, _unmask, evtchn_is_pending...).
   */
  usable(port: number): boolean {
    return this.portIsValid(port) && this.state[port]! > Ecs.Reserved;
  }

  /** evtchn_is_pending: a bound port whose event is pending (false for any other number). */
  isPending(port: number): boolean {
    return this.usable(port) && this.portOps.isPending(port);
  }

  /** evtchn_is_masked: true for a port that is not bound. */
  isMasked(port: number): boolean {
    return !this.usable(port) || this.portOps.isMasked(port);
  }

  /** vcpu_info.evtchn_upcall_pending of vCPU `vcpuId` is set (any bit, as Xen's readers test it). */
  upcallPending(vcpuId: number): boolean {
    return this.portOps.upcallPending(vcpuId);
  }

  /** The vCPU a port notifies (notify_vcpu_id). */
  notifyVcpuOf(port: number): number {
    return this.portIsValid(port) ? this.notifyVcpu[port]! : 0;
  }

  // ---- allocation (evtchn_allocate_port, get_free_port, evtchn_free) ----

  private allocatePort(port: number): number {
    if (port > this.maxPort || port >= this.maxPorts) return -XEN_ENOSPC;
    if (port < this.valid) {
      if (this.state[port] !== Ecs.Free || this.portOps.isBusy?.(port) === true) return -XEN_EBUSY;
    } else {
      while (port >= this.valid) this.valid += EVTCHNS_PER_BUCKET;
      this.grow(this.valid);
    }
    this.active++;
    return 0;
  }

  /** get_free_port: the lowest free port, allocated (its state still Free: the caller sets it). */
  private getFreePort(): number {
    if (this.dying) return -XEN_EINVAL;
    for (let port = 0; port <= this.maxPort; port++) {
      const rc = this.allocatePort(port);
      if (rc === 0) return port;
      if (rc !== -XEN_EBUSY) return rc;
    }
    return -XEN_ENOSPC;
  }

  /** check_free_port: an allocated port that was not bound after all goes back. */
  private checkFreePort(port: number): void {
    if (this.portIsValid(port) && this.state[port] === Ecs.Free) this.active--;
  }

  private free(port: number): void {
    this.portOps.clearPending(port); // "Clear pending event to avoid unexpected behavior on re-bind."
    this.active--;
    this.state[port] = Ecs.Free;
    this.notifyVcpu[port] = 0;
    this.word[port] = 0;
    this.peers.delete(port);
  }

  private virqTable(): Int32Array {
    if (this.virqToEvtchn === undefined) this.virqToEvtchn = new Int32Array(Math.max(1, this.owner.vcpuCount) * NR_VIRQS);
    return this.virqToEvtchn;
  }

  private vcpuValid(vcpu: number): boolean {
    return Number.isInteger(vcpu) && vcpu >= 0 && vcpu < this.owner.vcpuCount;
  }

  /** rcu_lock_domain_by_any_id. */
  private domainByAnyId(domid: number): EventChannels | undefined {
    return domid === DOMID_SELF || domid === this.domid ? this : this.owner.lookup(domid);
  }

  /** XSM's default XSM_TARGET rule: oneself, or the control domain acting on anyone. */
  private mayTarget(d: EventChannels): boolean {
    return d === this || this.owner.privileged;
  }

  // ---- the operations, as current->domain == this ----

  /** EVTCHNOP_alloc_unbound: a port in domain `dom` that domain `remoteDom` may bind. Port or -errno. */
  allocUnbound(dom: number, remoteDom: number): number {
    const d = this.domainByAnyId(dom);
    if (d === undefined) return -XEN_ESRCH;
    if (!this.mayTarget(d)) return -XEN_EPERM;
    const port = d.getFreePort();
    if (port < 0) return port;
    d.state[port] = Ecs.Unbound;
    d.word[port] = remoteDom === DOMID_SELF ? this.domid : remoteDom;
    d.portOps.initPort?.(port);
    return port;
  }

  /**
   * EVTCHNOP_bind_interdomain: connect a new local port to `remotePort` of `remoteDom`, which
   * must be unbound and offered to this domain. The local port starts pending (Xen: "We may have
   * lost notifications on the remote unbound port"). Port or -errno.
   */
  bindInterdomain(remoteDom: number, remotePort: number): number {
    const rd = this.domainByAnyId(remoteDom);
    if (rd === undefined) return -XEN_ESRCH;
    const lport = this.getFreePort();
    if (lport < 0) return lport;
    if (!rd.portIsValid(remotePort) || rd.state[remotePort] !== Ecs.Unbound || rd.word[remotePort] !== this.domid) {
      this.checkFreePort(lport);
      return -XEN_EINVAL;
    }
    this.state[lport] = Ecs.Interdomain;
    this.word[lport] = remotePort;
    this.peers.set(lport, rd);
    this.portOps.initPort?.(lport);
    rd.state[remotePort] = Ecs.Interdomain;
    rd.word[remotePort] = lport;
    rd.peers.set(remotePort, this);
    this.portOps.setPending(this.notifyVcpu[lport]!, lport);
    return lport;
  }

  /** EVTCHNOP_bind_virq. Port or -errno. */
  bindVirq(virq: number, vcpu: number): number {
    if (!(virq >= 0 && virq < NR_VIRQS)) return -XEN_EINVAL;
    if (virqIsGlobal(virq) && vcpu !== 0) return -XEN_EINVAL;
    if (!this.vcpuValid(vcpu)) return -XEN_ENOENT;
    const table = this.virqTable();
    if (table[vcpu * NR_VIRQS + virq] !== 0) return -XEN_EEXIST;
    const port = this.getFreePort();
    if (port < 0) return port;
    this.state[port] = Ecs.Virq;
    this.notifyVcpu[port] = vcpu;
    this.word[port] = virq;
    this.portOps.initPort?.(port);
    table[vcpu * NR_VIRQS + virq] = port;
    return port;
  }

  /** EVTCHNOP_bind_ipi. Port or -errno. */
  bindIpi(vcpu: number): number {
    if (!this.vcpuValid(vcpu)) return -XEN_ENOENT;
    const port = this.getFreePort();
    if (port < 0) return port;
    this.state[port] = Ecs.Ipi;
    this.notifyVcpu[port] = vcpu;
    this.portOps.initPort?.(port);
    return port;
  }

  /** evtchn_close: free the port; an interdomain peer becomes unbound (offered to this domain again). 0 or -errno. */
  close(port: number): number {
    if (!this.portIsValid(port)) return -XEN_EINVAL;
    switch (this.state[port]) {
      case Ecs.Free:
      case Ecs.Reserved:
        return -XEN_EINVAL;
      case Ecs.Virq: {
        const virq = this.word[port]!;
        const v = virqIsGlobal(virq) ? 0 : this.notifyVcpu[port]!;
        const table = this.virqTable();
        if (table[v * NR_VIRQS + virq] === port) table[v * NR_VIRQS + virq] = 0;
        break;
      }
      case Ecs.Interdomain: {
        const rd = this.peers.get(port);
        const rport = this.word[port]!;
        this.free(port);
        if (rd !== undefined && rd.state[rport] === Ecs.Interdomain) {
          rd.state[rport] = Ecs.Unbound;
          rd.word[rport] = this.domid;
          rd.peers.delete(rport);
        }
        return 0;
      }
      default:
        break;
    }
    this.free(port);
    return 0;
  }

  /** evtchn_send: an interdomain port sets the peer's port pending, an IPI port its own; unbound drops it. 0 or -errno. */
  send(port: number): number {
    if (!this.portIsValid(port)) return -XEN_EINVAL;
    switch (this.state[port]) {
      case Ecs.Interdomain: {
        const rd = this.peers.get(port);
        if (rd === undefined) throw new Error(`vtlab bug: interdomain port ${port} of domain ${this.domid} has no peer`);
        const rport = this.word[port]!;
        this.counters.eventsSent++;
        rd.portOps.setPending(rd.notifyVcpu[rport]!, rport);
        return 0;
      }
      case Ecs.Ipi:
        this.counters.eventsSent++;
        this.portOps.setPending(this.notifyVcpu[port]!, port);
        return 0;
      case Ecs.Unbound:
        return 0; // "silently drop the notification"
      default:
        return -XEN_EINVAL;
    }
  }

  /** EVTCHNOP_status of port `port` in domain `dom`. The status or -errno. */
  status(dom: number, port: number): EvtchnStatus | number {
    const d = this.domainByAnyId(dom);
    if (d === undefined) return -XEN_ESRCH;
    if (!d.portIsValid(port)) return -XEN_EINVAL;
    if (!this.mayTarget(d)) return -XEN_EPERM;
    const vcpu = d.notifyVcpu[port]!;
    switch (d.state[port]) {
      case Ecs.Unbound:
        return { status: EVTCHNSTAT_unbound, vcpu, dom: d.word[port]! };
      case Ecs.Interdomain:
        return { status: EVTCHNSTAT_interdomain, vcpu, dom: d.peers.get(port)!.domid, port: d.word[port]! };
      case Ecs.Pirq:
        return { status: EVTCHNSTAT_pirq, vcpu };
      case Ecs.Virq:
        return { status: EVTCHNSTAT_virq, vcpu, virq: d.word[port]! };
      case Ecs.Ipi:
        return { status: EVTCHNSTAT_ipi, vcpu };
      default:
        return { status: EVTCHNSTAT_closed, vcpu };
    }
  }

  /** EVTCHNOP_bind_vcpu: which vCPU a port notifies (global VIRQs, unbound and interdomain ports). 0 or -errno. */
  bindVcpu(port: number, vcpu: number): number {
    if (!this.vcpuValid(vcpu)) return -XEN_ENOENT;
    if (!this.portIsValid(port)) return -XEN_EINVAL;
    switch (this.state[port]) {
      case Ecs.Virq:
        if (!virqIsGlobal(this.word[port]!)) return -XEN_EINVAL;
        this.notifyVcpu[port] = vcpu;
        return 0;
      case Ecs.Unbound:
      case Ecs.Interdomain:
        this.notifyVcpu[port] = vcpu;
        return 0;
      default:
        return -XEN_EINVAL;
    }
  }

  /** EVTCHNOP_unmask: -EINVAL past the valid ports; a port that is not bound is left alone (evtchn_port_unmask). 0 or -errno. */
  unmask(port: number): number {
    if (!this.portIsValid(port)) return -XEN_EINVAL;
    if (this.usable(port)) this.portOps.unmask(this.notifyVcpu[port]!, port);
    return 0;
  }

  /**
   * EVTCHNOP_reset / reset_cont for domain `dom`: close every port. Never preempted here, so a
   * reset_cont finds no reset in progress (-EBUSY, as Xen answers without one). 0 or -errno.
   */
  reset(dom: number, resuming: boolean): number {
    const d = this.domainByAnyId(dom);
    if (d === undefined) return -XEN_ESRCH;
    if (!this.mayTarget(d)) return -XEN_EPERM;
    if (d !== this && !d.owner.controllerPaused) return -XEN_EINVAL;
    if (resuming) return -XEN_EBUSY;
    for (let port = 1; port < d.valid && d.active > 0; port++) d.close(port);
    // Back to the 2-level ABI (evtchn_fifo_destroy, evtchn_2l_init).
    d.portOps = d.twoLevelOps;
    d.limit = EVTCHN_2L_NR_CHANNELS;
    return 0;
  }

  /**
   * EVTCHNOP_set_priority (evtchn_port_set_priority): a port past the valid ones -EINVAL; under
   * the 2-level ABI -ENOSYS; a port that is not bound -EACCES. 0 or -errno.
   */
  setPriority(port: number, priority: number): number {
    if (!this.portIsValid(port)) return -XEN_EINVAL;
    const set = this.portOps.setPriority;
    if (set === undefined) return -XEN_ENOSYS;
    if (!this.usable(port)) return -XEN_EACCES;
    return set.call(this.portOps, port, priority);
  }

  // ---- what the hypervisor sends ----

  /**
   * send_guest_vcpu_virq / send_guest_global_virq: raise `virq` (per-vCPU VIRQs on `vcpuId`,
   * global ones through vCPU 0's binding to the port's vCPU). A no-op if nothing is bound.
   */
  sendVirq(vcpuId: number, virq: number): void {
    if (!(virq >= 0 && virq < NR_VIRQS) || this.virqToEvtchn === undefined) return;
    const global = virqIsGlobal(virq);
    const v = global ? 0 : vcpuId;
    if (!this.vcpuValid(v)) return;
    const port = this.virqToEvtchn[v * NR_VIRQS + virq]!;
    if (port === 0) return;
    this.portOps.setPending(global ? this.notifyVcpu[port]! : v, port);
  }

  /** The send path (evtchn_send) for hypervisor-side callers: 0 or -errno. */
  notify(port: number): number {
    return this.send(port);
  }

  /** The port VIRQ `virq` is bound to on vCPU `vcpuId` (global VIRQs: on vCPU 0), or 0. */
  virqPort(vcpuId: number, virq: number): number {
    if (!(virq >= 0 && virq < NR_VIRQS) || this.virqToEvtchn === undefined) return 0;
    const v = virqIsGlobal(virq) ? 0 : vcpuId;
    return this.vcpuValid(v) ? this.virqToEvtchn[v * NR_VIRQS + virq]! : 0;
  }

  /** evtchn_destroy: the domain is going away; close every port (interdomain peers become unbound). */
  destroy(): void {
    this.dying = true;
    for (let port = this.valid - 1; port > 0; port--) if (this.state[port] !== Ecs.Free) this.close(port);
  }
}

/**
 * The 2-level delivery of a guest domain (event_2l.c) on its shared_info / vcpu_info:
 * set_pending sets the pending bit; if it was clear and the port is not masked and the
 * pending_sel bit was clear, the vCPU's upcall is marked pending (`markEventsPending`, Xen's
 * vcpu_mark_events_pending). Unmask clears the mask bit and, if the port is pending, does the
 * same selector/upcall step for the port's vCPU.
 */
export class TwoLevelPorts implements EvtchnPortOps {
  /** Set after construction (the table and its ports refer to each other). */
  table: EventChannels | undefined = undefined;

  constructor(
    private readonly si: SharedInfo,
    private readonly counters: EvtchnCounters,
    private readonly markEventsPending: (vcpuId: number) => void,
  ) {}

  setPending(vcpuId: number, port: number): void {
    // Ports from 4096 up are valid only after a FIFO ABI was reset back to 2-level: nothing to set.
    if (port >= EVTCHN_2L_NR_CHANNELS || this.si.testAndSetPending(port)) return;
    this.counters.eventsDelivered++;
    if (!this.si.testMask(port) && !this.si.testAndSetPendingSel(vcpuId, Math.floor(port / BITS_PER_EVTCHN_WORD))) this.markEventsPending(vcpuId);
    this.table?.checkPollers?.(port);
  }

  clearPending(port: number): void {
    if (port < EVTCHN_2L_NR_CHANNELS) this.si.clearPending(port);
  }

  unmask(vcpuId: number, port: number): void {
    if (port < EVTCHN_2L_NR_CHANNELS && this.si.testAndClearMask(port) && this.si.testPending(port) && !this.si.testAndSetPendingSel(vcpuId, Math.floor(port / BITS_PER_EVTCHN_WORD))) this.markEventsPending(vcpuId);
  }

  isPending(port: number): boolean {
    return port >= 0 && port < EVTCHN_2L_NR_CHANNELS && this.si.testPending(port);
  }

  isMasked(port: number): boolean {
    return !(port >= 0 && port < EVTCHN_2L_NR_CHANNELS) || this.si.testMask(port);
  }

  upcallPending(vcpuId: number): boolean {
    return this.si.upcallPending(vcpuId);
  }
}

/**
 * Dom0's delivery: a private pending bitmap (dom0 has no shared_info in vtlab) and a queue of
 * ports whose event arrived, in order; a port is queued once until it is taken. Dom0's ports
 * are never masked.
 */
class Dom0Ports implements EvtchnPortOps {
  table: EventChannels | undefined = undefined;
  private readonly pending = new Uint8Array(EVTCHN_2L_NR_CHANNELS / 8);
  readonly queue: number[] = [];

  constructor(private readonly counters: EvtchnCounters) {}

  setPending(_vcpuId: number, port: number): void {
    const m = 1 << (port & 7);
    const i = port >>> 3;
    if ((this.pending[i]! & m) !== 0) return;
    this.pending[i] = this.pending[i]! | m;
    this.counters.eventsDelivered++;
    this.queue.push(port);
    this.table?.checkPollers?.(port);
  }

  clearPending(port: number): void {
    const i = port >>> 3;
    this.pending[i] = this.pending[i]! & ~(1 << (port & 7));
  }

  unmask(): void {
    // never masked
  }

  isPending(port: number): boolean {
    return port >= 0 && port < EVTCHN_2L_NR_CHANNELS && (this.pending[port >>> 3]! & (1 << (port & 7))) !== 0;
  }

  isMasked(): boolean {
    return false;
  }

  upcallPending(): boolean {
    return false;
  }
}

/** A dom0 backend's event handler: runs from `Dom0EventChannels.dispatch`, never inside a guest's hypercall. */
export type Dom0EventHandler = (port: number) => void;

/** What dom0's table needs from the host: the guest domains' event channels by domid. */
export interface Dom0Host {
  domain(domid: number): { readonly xen: { readonly evtchn: EventChannels } } | undefined;
}

/**
 * Dom0's event channels for the backends in the host (xenstored, console, blkback, netback):
 * the same table code as a guest's, with domid 0 and dom0's rights, delivering into a queue
 * instead of a shared_info page.
 *
 * Receiving is explicit: a send from a guest (inside its hypercall) only marks dom0's port
 * pending and queues it. The host then calls `dispatch()` between scheduler slices (for example
 * from `hv.run({ onSlice: (hv) => hv.dom0.evtchn.dispatch() })`), which runs the `onEvent`
 * handler of each queued port, or drains the queue itself with `takePending()`. A handler may
 * send and bind; events it causes are queued for the next dispatch.
 */
export class Dom0EventChannels {
  readonly table: EventChannels;
  /** Dom0's sends that reached a port, and events that set one of dom0's pending bits. */
  readonly counters: EvtchnCounters = { eventsSent: 0, eventsDelivered: 0 };
  private readonly ports: Dom0Ports;
  private readonly handlers = new Map<number, Dom0EventHandler>();

  constructor(host: Dom0Host) {
    this.ports = new Dom0Ports(this.counters);
    this.table = new EventChannels(
      {
        domid: 0,
        vcpuCount: 1,
        privileged: true,
        controllerPaused: false,
        lookup: (domid) => host.domain(domid)?.xen.evtchn,
      },
      this.ports,
      this.counters,
    );
    this.ports.table = this.table;
  }

  /** EVTCHNOP_alloc_unbound in dom0 for domain `remoteDomid` to bind: the port, or -errno. */
  allocUnbound(remoteDomid: number): number {
    return this.table.allocUnbound(DOMID_SELF, remoteDomid);
  }

  /**
   * The toolstack's xc_evtchn_alloc_unbound(domid, remote): EVTCHNOP_alloc_unbound with dom0's
   * rights on another domain, a port in domain `domid` that `remoteDomid` may bind. Port or -errno.
   */
  allocUnboundFor(domid: number, remoteDomid: number): number {
    return this.table.allocUnbound(domid, remoteDomid);
  }

  /**
   * EVTCHNOP_bind_interdomain to `remotePort` of `remoteDomid` (unbound and offered to dom0): the
   * local port, or -errno. As on Xen the new port starts pending (queued for the next dispatch).
   */
  bindInterdomain(remoteDomid: number, remotePort: number): number {
    return this.table.bindInterdomain(remoteDomid, remotePort);
  }

  /** EVTCHNOP_send: 0 or -errno. */
  send(port: number): number {
    return this.table.send(port);
  }

  /** EVTCHNOP_close (the port's handler goes too): 0 or -errno. */
  close(port: number): number {
    const rc = this.table.close(port);
    if (rc === 0) this.handlers.delete(port);
    return rc;
  }

  /** EVTCHNOP_status of one of dom0's ports, or -errno. */
  status(port: number): EvtchnStatus | number {
    return this.table.status(DOMID_SELF, port);
  }

  /** Run `handler` for each event on `port` at `dispatch()` (undefined: stop). */
  onEvent(port: number, handler: Dom0EventHandler | undefined): void {
    if (handler === undefined) this.handlers.delete(port);
    else this.handlers.set(port, handler);
  }

  isPending(port: number): boolean {
    return this.table.isPending(port);
  }

  /** The ports whose events arrived since the last take, in order; their pending bits are cleared. */
  takePending(): number[] {
    const q = this.ports.queue.splice(0);
    for (const port of q) this.ports.clearPending(port);
    return q;
  }

  /**
   * Run the handlers of the queued ports, in arrival order (each port's pending bit is cleared
   * before its handler runs); ports without a handler stay queued for `takePending`. Returns the
   * number of handlers run. Call it between scheduler slices, never from inside a hypercall.
   */
  dispatch(): number {
    const q = this.ports.queue.splice(0);
    let ran = 0;
    for (const port of q) {
      const h = this.handlers.get(port);
      if (h === undefined) {
        this.ports.queue.push(port);
        continue;
      }
      this.ports.clearPending(port);
      h(port);
      ran++;
    }
    return ran;
  }
}

// ---- HYPERVISOR_event_channel_op ----

/** The op struct, copied in once (the largest, evtchn_status, is 24 bytes). */
const opBytes = new Uint8Array(32);
const op = new DataView(opBytes.buffer);

/** Copy `size` bytes of the op struct in; false = -EFAULT. */
function copyIn(ctx: ExitContext, arg: number, size: number): boolean {
  opBytes.fill(0, 0, size);
  return copyFromGuest(ctx, arg, opBytes, size) === size;
}

/** __copy_to_guest of the whole struct (Xen copies the updated struct back); false = -EFAULT. */
function copyOut(ctx: ExitContext, arg: number, size: number): boolean {
  return copyToGuest(ctx, arg, opBytes, size) === size;
}

/** A port-or-errno result with an OUT port field at `at`: write it and copy the struct back. */
function portResult(ctx: ExitContext, arg: number, size: number, at: number, rc: number): number {
  if (rc < 0) return rc;
  op.setUint32(at, rc, true);
  return copyOut(ctx, arg, size) ? 0 : -XEN_EFAULT;
}

/**
 * HYPERVISOR_event_channel_op(int cmd, XEN_GUEST_HANDLE_PARAM(void) arg): do_event_channel_op.
 * Each op struct is copied in once and decoded from the copy; OUT fields are written to the copy
 * and the whole struct is copied back, as Xen's __copy_to_guest does (a failure there after the
 * operation succeeded is -EFAULT with the operation done: "Cleaning up here would be a mess!").
 */
export function do_event_channel_op(ctx: ExitContext, a: HypercallArgs): number {
  const cmd = a.int(0);
  const arg = a.ptr(1);
  const ec = ctx.domain.xen.evtchn;
  switch (cmd) {
    case EVTCHNOP_alloc_unbound: {
      const s = evtchn_alloc_unbound;
      if (!copyIn(ctx, arg, s.SIZEOF)) return -XEN_EFAULT;
      return portResult(ctx, arg, s.SIZEOF, s.port, ec.allocUnbound(op.getUint16(s.dom, true), op.getUint16(s.remote_dom, true)));
    }
    case EVTCHNOP_bind_interdomain: {
      const s = evtchn_bind_interdomain;
      if (!copyIn(ctx, arg, s.SIZEOF)) return -XEN_EFAULT;
      return portResult(ctx, arg, s.SIZEOF, s.local_port, ec.bindInterdomain(op.getUint16(s.remote_dom, true), op.getUint32(s.remote_port, true)));
    }
    case EVTCHNOP_bind_virq: {
      const s = evtchn_bind_virq;
      if (!copyIn(ctx, arg, s.SIZEOF)) return -XEN_EFAULT;
      // virq and vcpu are uint32_t in the header, int in Xen's evtchn_bind_virq: a "negative" virq is -EINVAL.
      return portResult(ctx, arg, s.SIZEOF, s.port, ec.bindVirq(op.getInt32(s.virq, true), op.getInt32(s.vcpu, true)));
    }
    case EVTCHNOP_bind_ipi: {
      const s = evtchn_bind_ipi;
      if (!copyIn(ctx, arg, s.SIZEOF)) return -XEN_EFAULT;
      return portResult(ctx, arg, s.SIZEOF, s.port, ec.bindIpi(op.getUint32(s.vcpu, true)));
    }
    case EVTCHNOP_bind_pirq:
      // No PIRQs in vtlab (nr_pirqs = 0): Xen's "pirq >= d->nr_pirqs".
      if (!copyIn(ctx, arg, evtchn_bind_pirq.SIZEOF)) return -XEN_EFAULT;
      return -XEN_EINVAL;
    case EVTCHNOP_close:
      if (!copyIn(ctx, arg, evtchn_close.SIZEOF)) return -XEN_EFAULT;
      return ec.close(op.getUint32(evtchn_close.port, true));
    case EVTCHNOP_send:
      if (!copyIn(ctx, arg, evtchn_send.SIZEOF)) return -XEN_EFAULT;
      return ec.send(op.getUint32(evtchn_send.port, true));
    case EVTCHNOP_status: {
      const s = evtchn_status;
      if (!copyIn(ctx, arg, s.SIZEOF)) return -XEN_EFAULT;
      const st = ec.status(op.getUint16(s.dom, true), op.getUint32(s.port, true));
      if (typeof st === "number") return st;
      op.setUint32(s.status, st.status, true);
      if (st.dom !== undefined) op.setUint16(s["u.unbound.dom"], st.dom, true);
      if (st.port !== undefined) op.setUint32(s["u.interdomain.port"], st.port, true);
      if (st.virq !== undefined) op.setUint32(s["u.virq"], st.virq, true);
      op.setUint32(s.vcpu, st.vcpu, true);
      return copyOut(ctx, arg, s.SIZEOF) ? 0 : -XEN_EFAULT;
    }
    case EVTCHNOP_bind_vcpu: {
      const s = evtchn_bind_vcpu;
      if (!copyIn(ctx, arg, s.SIZEOF)) return -XEN_EFAULT;
      return ec.bindVcpu(op.getUint32(s.port, true), op.getUint32(s.vcpu, true));
    }
    case EVTCHNOP_unmask:
      if (!copyIn(ctx, arg, evtchn_unmask.SIZEOF)) return -XEN_EFAULT;
      return ec.unmask(op.getUint32(evtchn_unmask.port, true));
    case EVTCHNOP_reset:
    case EVTCHNOP_reset_cont:
      if (!copyIn(ctx, arg, evtchn_reset.SIZEOF)) return -XEN_EFAULT;
      return ec.reset(op.getUint16(evtchn_reset.dom, true), cmd === EVTCHNOP_reset_cont);
    case EVTCHNOP_init_control: {
      // The FIFO ABI (event_fifo.ts); link_bits is an OUT field, copied back on success.
      const s = evtchn_init_control;
      if (!copyIn(ctx, arg, s.SIZEOF)) return -XEN_EFAULT;
      op.setUint8(s.link_bits, EVTCHN_FIFO_LINK_BITS);
      const d = ctx.domain;
      const rc = evtchnFifoInitControl(ec, fifoHostOf(d), d.xen.sharedInfo, op.getUint32(s.vcpu, true), op.getUint32(s.control_gfn, true), op.getUint32(s.control_gfn + 4, true), op.getUint32(s.offset, true));
      if (rc !== 0) return rc;
      return copyOut(ctx, arg, s.SIZEOF) ? 0 : -XEN_EFAULT;
    }
    case EVTCHNOP_expand_array: {
      const s = evtchn_expand_array;
      if (!copyIn(ctx, arg, s.SIZEOF)) return -XEN_EFAULT;
      return evtchnFifoExpandArray(ec, op.getUint32(s.array_gfn, true), op.getUint32(s.array_gfn + 4, true));
    }
    case EVTCHNOP_set_priority: {
      const s = evtchn_set_priority;
      if (!copyIn(ctx, arg, s.SIZEOF)) return -XEN_EFAULT;
      return ec.setPriority(op.getUint32(s.port, true), op.getUint32(s.priority, true));
    }
    default:
      return -XEN_ENOSYS;
  }
}

