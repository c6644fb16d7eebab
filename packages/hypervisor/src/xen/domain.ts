/**
 * A domain's Xen state (Xen's struct domain, the PV-interface part): the HVM parameters, the
 * per-domain Xen statistics, and the objects of each hypercall family (event channels, grant
 * table, shared_info) as they are added.
 */
import { HVM_NR_PARAMS } from "@vtlab/xen-public";
import type { Domain } from "../hypervisor.js";

/** Per-domain counters of the Xen interface, in `stats()`, `vtlab run` and `--json`. */
export class XenStats {
  /** Hypercalls by name (xen.h's name without __HYPERVISOR_). */
  readonly hypercalls = new Map<string, number>();
  /** Hypercalls nobody implements (answered -ENOSYS), by number. */
  readonly unknownHypercalls = new Map<number, number>();
  eventsSent = 0;
  eventsDelivered = 0;
  upcallsInjected = 0;
  grantMaps = 0;
  grantUnmaps = 0;
  grantCopies = 0;
  /** Hypercalls that did part of their work and had the guest re-execute the VMCALL (continuations). */
  continuations = 0;

  countHypercall(name: string): void {
    this.hypercalls.set(name, (this.hypercalls.get(name) ?? 0) + 1);
  }

  countUnknown(nr: number): void {
    this.unknownHypercalls.set(nr, (this.unknownHypercalls.get(nr) ?? 0) + 1);
  }

  /** A plain snapshot for reports and JSON. */
  snapshot(): XenStatsSnapshot {
    return {
      hypercalls: Object.fromEntries([...this.hypercalls].sort(([a], [b]) => (a < b ? -1 : 1))),
      unknownHypercalls: Object.fromEntries([...this.unknownHypercalls].sort(([a], [b]) => a - b).map(([k, v]) => [String(k), v])),
      eventsSent: this.eventsSent,
      eventsDelivered: this.eventsDelivered,
      upcallsInjected: this.upcallsInjected,
      grantMaps: this.grantMaps,
      grantUnmaps: this.grantUnmaps,
      grantCopies: this.grantCopies,
      continuations: this.continuations,
    };
  }
}

export interface XenStatsSnapshot {
  readonly hypercalls: Readonly<Record<string, number>>;
  readonly unknownHypercalls: Readonly<Record<string, number>>;
  readonly eventsSent: number;
  readonly eventsDelivered: number;
  readonly upcallsInjected: number;
  readonly grantMaps: number;
  readonly grantUnmaps: number;
  readonly grantCopies: number;
  readonly continuations: number;
}

export class XenDomain {
  readonly stats = new XenStats();
  /** HVM_PARAM_* values (hvm/params.h), as the toolstack and HVMOP_set_param left them; exact below 2^53. */
  readonly hvmParams = new Float64Array(HVM_NR_PARAMS);

  constructor(readonly domain: Domain) {}
}
