/**
 * A domain's Xen state (Xen's struct domain, the PV-interface part): the HVM parameters, the
 * per-domain Xen statistics, and the objects of each hypercall family (event channels, grant
 * table, shared_info) as they are added.
 */
import type { Mfn } from "@vtlab/arch";
import type { Domain, Hypervisor, Vcpu } from "../hypervisor.js";
import { EventChannels, TwoLevelPorts } from "./event_channel.js";
import { EvtchnUpcall, HvmParams, hvmSetParam } from "./hvm_op.js";
import { SharedInfo } from "./shared_info.js";
import { newGrantTable, type GrantTable } from "./grant_table.js";

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
  /** HVM_PARAM_* values (hvm/params.h) as 64-bit halves, as the toolstack and HVMOP_set_param left them. */
  readonly hvmParams = new HvmParams();
  /** The VM assists HYPERVISOR_vm_assist enabled, by VMASST_TYPE_* bit (vm_assist.ts). */
  vmAssist = 0;
  /** The event-channel upcall: the callback HVM_PARAM_CALLBACK_IRQ chose and the per-vCPU upcall vectors (hvm_op.ts). */
  readonly upcall: EvtchnUpcall;
  private si: SharedInfo | undefined;
  private channels: EventChannels | undefined;

  /** The domain's grant table (grant_table.ts): its grants as a granter, its maptrack as a mapper. */
  readonly grants: GrantTable;

  constructor(readonly domain: Domain) {
    this.upcall = new EvtchnUpcall(domain, () => this.si);
    this.grants = newGrantTable(() => domain.host, () => domain.id, domain);
  }

  /**
   * At domain creation (Domain's constructor): the shared_info frame from the domain's
   * hypervisor frames (zeroed, given back with them at destroy) and the event-channel table.
   * False when the host has no frame left.
   */
  setUp(hv: Hypervisor, allocate: () => Mfn | undefined): boolean {
    const mfn = allocate();
    if (mfn === undefined) return false;
    const si = new SharedInfo(hv.memory, mfn);
    this.si = si;
    const d = this.domain;
    si.onWrite = (frame) => hv.machineFrameWritten(frame);
    const ports = new TwoLevelPorts(si, this.stats, (vcpuId) => this.upcall.markEventsPending(vcpuId));
    this.channels = new EventChannels(
      {
        domid: d.id,
        get vcpuCount() {
          return d.vcpus.length;
        },
        privileged: false,
        get controllerPaused() {
          return d.state === "paused";
        },
        lookup: (domid) => (domid === hv.dom0.id ? hv.dom0.evtchn.table : hv.domain(domid)?.xen.evtchn),
      },
      ports,
      this.stats,
    );
    ports.table = this.channels;
    return true;
  }

  /** The domain's shared_info page and vcpu_info placement (shared_info.ts). */
  get sharedInfo(): SharedInfo {
    if (this.si === undefined) throw new Error("vtlab bug: XenDomain used before setUp");
    return this.si;
  }

  /** The domain's event channels (event_channel.ts): `sendVirq`, `notify`, `isPending`, the EVTCHNOP_* operations. */
  get evtchn(): EventChannels {
    if (this.channels === undefined) throw new Error("vtlab bug: XenDomain used before setUp");
    return this.channels;
  }

  /** vcpu_info.evtchn_upcall_pending of vCPU `vcpuId` is set (any bit, as Xen tests it). */
  upcallPending(vcpuId: number): boolean {
    return this.si?.upcallPending(vcpuId) === true;
  }

  /**
   * The toolstack sets an HVM param (HVM_PARAM_STORE_PFN, STORE_EVTCHN, CONSOLE_PFN,
   * CONSOLE_EVTCHN, ...), with dom0's rights: a number (an integer below 2^53) or a bigint for
   * the full 64 bits (HVM_PARAM_CALLBACK_IRQ's type is in bits 63:56). 0 or -errno.
   */
  setHvmParam(index: number, value: number | bigint): number {
    let lo: number, hi: number;
    if (typeof value === "bigint") {
      if (value < 0n || value >= 1n << 64n) throw new RangeError(`HVM param value ${value} is not a 64-bit unsigned value`);
      lo = Number(value & 0xffff_ffffn);
      hi = Number(value >> 32n);
    } else {
      if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`HVM param value ${value} is not an integer in [0, 2^53); pass a bigint`);
      lo = value >>> 0;
      hi = Math.floor(value / 2 ** 32);
    }
    return hvmSetParam(this.domain, index, lo, hi, false);
  }

  /** An HVM param's value (exact below 2^53; see `hvmParams` for the halves). */
  getHvmParam(index: number): number {
    return (this.hvmParams.hi[index] ?? 0) * 2 ** 32 + (this.hvmParams.lo[index] ?? 0);
  }

  /**
   * Before each VM entry of `v` (the hypervisor's interrupt delivery): re-evaluate the level
   * callback and answer the event-channel callback vector to inject ahead of the local APIC's, or -1.
   */
  /** A vCPU's local APIC was software-enabled: raise its upcall vector if an upcall is pending (Xen's vlapic_reg_write, APIC_SPIV). */
  reassertUpcallVector(vcpuId: number): void {
    this.upcall.reassertUpcallVector(vcpuId);
  }

  intrAssist(v: Vcpu): number {
    return this.upcall.intrAssist(v);
  }

  /** The domain is being destroyed: its event channels close (interdomain peers become unbound). */
  destroy(): void {
    this.channels?.destroy();
  }
}
