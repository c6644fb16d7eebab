/**
 * The event-channel client, 2-level ABI, by polling: shared_info mapped with
 * XENMEM_add_to_physmap(XENMAPSPACE_shared_info), ports from EVTCHNOP_alloc_unbound /
 * bind_interdomain, EVTCHNOP_send to notify, and waiting as a guest without a callback vector
 * does: test the evtchn_pending bits, and when none is set, SCHEDOP_poll on the ports (the vCPU
 * blocks until one is pending) and yield to the scheduler. A native kernel has no IDT, so no
 * upcall vector (HVM_PARAM_CALLBACK_IRQ) is used: modelled more simply than Linux's upcall
 * handler, with the same pending and mask bits in shared_info.
 */
import {
  DOMID_SELF,
  EVTCHNOP_alloc_unbound,
  EVTCHNOP_bind_interdomain,
  EVTCHNOP_close,
  EVTCHNOP_send,
  HYPERVISOR_event_channel_op,
  HYPERVISOR_sched_op,
  SCHEDOP_poll,
  XENMAPSPACE_shared_info,
  evtchn_alloc_unbound,
  evtchn_bind_interdomain,
  sched_poll,
  shared_info,
} from "@vtlab/xen-public";
import { frontendError, type FrontendError, type Xen } from "./hypercall.js";
import { PAGE_SIZE } from "./mem.js";

/** Ports one SCHEDOP_poll may name (Xen: at most 128). */
export const MAX_POLL_PORTS = 128;
/** Offset in the argument page of the poll's port array. */
const POLL_PORTS = 512;

export class EventChannels {
  /** Notifications sent, polls that blocked. */
  sent = 0;
  polls = 0;

  private constructor(
    private readonly xen: Xen,
    /** shared_info's guest-physical address. */
    readonly sharedInfo: number,
  ) {}

  /** Map shared_info at guest frame `gpfn`. */
  static setup(xen: Xen, gpfn: number): EventChannels | FrontendError {
    const r = xen.addToPhysmap(XENMAPSPACE_shared_info, 0, gpfn);
    if (r < 0) return frontendError(`XENMEM_add_to_physmap(shared_info) = ${r}`);
    return new EventChannels(xen, gpfn * PAGE_SIZE);
  }

  /** EVTCHNOP_alloc_unbound: a port `remoteDomid` may bind, or a negative errno. */
  allocUnbound(remoteDomid: number): number {
    const a = this.xen.args;
    const mem = this.xen.mem;
    mem.zero(a, evtchn_alloc_unbound.SIZEOF);
    mem.write16(a + evtchn_alloc_unbound.dom, DOMID_SELF);
    mem.write16(a + evtchn_alloc_unbound.remote_dom, remoteDomid);
    const r = this.xen.call(HYPERVISOR_event_channel_op, EVTCHNOP_alloc_unbound, a);
    return r < 0 ? r : mem.read32(a + evtchn_alloc_unbound.port);
  }

  /** EVTCHNOP_bind_interdomain: the local port, or a negative errno. */
  bindInterdomain(remoteDomid: number, remotePort: number): number {
    const a = this.xen.args;
    const mem = this.xen.mem;
    mem.zero(a, evtchn_bind_interdomain.SIZEOF);
    mem.write16(a + evtchn_bind_interdomain.remote_dom, remoteDomid);
    mem.write32(a + evtchn_bind_interdomain.remote_port, remotePort);
    const r = this.xen.call(HYPERVISOR_event_channel_op, EVTCHNOP_bind_interdomain, a);
    return r < 0 ? r : mem.read32(a + evtchn_bind_interdomain.local_port);
  }

  /** EVTCHNOP_send: 0 or a negative errno. */
  send(port: number): number {
    const a = this.xen.args;
    this.xen.mem.write32(a, port);
    this.sent++;
    return this.xen.call(HYPERVISOR_event_channel_op, EVTCHNOP_send, a);
  }

  /** EVTCHNOP_close: 0 or a negative errno. */
  close(port: number): number {
    const a = this.xen.args;
    this.xen.mem.write32(a, port);
    return this.xen.call(HYPERVISOR_event_channel_op, EVTCHNOP_close, a);
  }

  private word(port: number): number {
    return this.sharedInfo + shared_info.evtchn_pending + Math.floor(port / 32) * 4;
  }

  /** The port's pending bit in shared_info. */
  pending(port: number): boolean {
    if (port < 0 || port >= 4096) return false;
    return ((this.xen.mem.read32(this.word(port)) >>> (port & 31)) & 1) !== 0;
  }

  /** Clear the port's pending bit (Linux's clear_evtchn). */
  clear(port: number): void {
    if (port < 0 || port >= 4096) return;
    const w = this.word(port);
    const v = this.xen.mem.read32(w);
    this.xen.mem.write32(w, v & ~(1 << (port & 31)));
  }

  /** Consume a pending event on `port`: true when it was pending (and is now cleared). */
  take(port: number): boolean {
    if (!this.pending(port)) return false;
    this.clear(port);
    return true;
  }

  /**
   * Block the vCPU in SCHEDOP_poll until one of `ports` is pending (returns at once when one
   * already is), then yield to the scheduler so the vCPU is descheduled while blocked. The
   * caller then checks its rings and clears the bits it handled.
   */
  *poll(ports: readonly number[]): Generator<void, void, void> {
    const n = Math.min(ports.length, MAX_POLL_PORTS);
    if (n === 0) {
      yield;
      return;
    }
    for (let i = 0; i < n; i++) if (this.pending(ports[i]!)) return;
    const a = this.xen.args;
    const mem = this.xen.mem;
    for (let i = 0; i < n; i++) mem.write32(a + POLL_PORTS + i * 4, ports[i]!);
    mem.zero(a, sched_poll.SIZEOF);
    mem.write64(a + sched_poll.ports, a + POLL_PORTS);
    mem.write32(a + sched_poll.nr_ports, n);
    this.polls++;
    this.xen.call(HYPERVISOR_sched_op, SCHEDOP_poll, a);
    yield;
  }
}
