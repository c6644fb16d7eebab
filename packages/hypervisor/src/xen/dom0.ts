/**
 * Dom0, the control domain, as the hypervisor's backends see it. vtlab has no dom0 guest: the
 * device model, the toolstack and (next issue) xenstored and the PV backends run in the host
 * process, as TypeScript. They still talk to guests the way dom0 does on Xen: with domid 0
 * (DOMID_SELF-free, a real domain id in every grant and event-channel check), through the same
 * event-channel and grant-table code the guests' hypercalls use, never by reaching into a
 * guest's memory directly. This class is that typed API; the event-channel and grant-table
 * families add their parts to it.
 */
import type { Hypervisor } from "../hypervisor.js";
import { Dom0EventChannels } from "./event_channel.js";

/** Xen's domid of the control domain. */
export const DOM0_ID = 0;

export class ControlDomain {
  readonly id = DOM0_ID;
  readonly name = "Domain-0";
  /**
   * Dom0's event channels (event_channel.ts): allocUnbound, bindInterdomain, send, close,
   * status; events are received with onEvent + dispatch() between scheduler slices, or takePending().
   */
  readonly evtchn: Dom0EventChannels;
  constructor(readonly hv: Hypervisor) {
    this.evtchn = new Dom0EventChannels(hv);
  }
}
