import type { VmExitGuestState } from "@vtlab/hypervisor";

/**
 * The messages between the page and the machine worker (worker.ts). Plain objects only, so
 * they cross postMessage by structured clone.
 */

/** The reference kernel's workloads the page offers (packages/guests/images/kernel.elf, `workload=`). */
export const WEB_WORKLOADS = ["compute", "ptemod", "forkwait", "disk", "pvdisk", "nvme", "dmaattack"] as const;
export type WebWorkload = (typeof WEB_WORKLOADS)[number];

export interface MachineChoice {
  readonly workload: WebWorkload;
  /** true: EPT (xl.cfg hap = 1); false: shadow paging (hap = 0). */
  readonly hap: boolean;
}

/** A machine's name as the page and `vtlab demo` write it: `compute-ept`, `nvme-shadow`. */
export function machineName(m: MachineChoice): string {
  return `${m.workload}-${m.hap ? "ept" : "shadow"}`;
}

export type ToWorker =
  | { readonly type: "boot"; readonly machine: MachineChoice; readonly kernelUrl: string }
  | { readonly type: "pause" }
  | { readonly type: "unpause" }
  | { readonly type: "destroy" }
  | { readonly type: "restart" }
  /** Step mode: the paused machine runs to its next VM exit and pauses again. */
  | { readonly type: "step" }
  /** Keyboard bytes for the guest's COM1 16550 receive queue. */
  | { readonly type: "input"; readonly bytes: readonly number[] };

/** One statistics sample of the running domain (counters are totals since boot). */
export interface StatsSample {
  /** Wall milliseconds since boot (performance.now in the worker: only the page's clock, never the model's). */
  readonly wallMs: number;
  /** Modelled time (the host's simulated clock), milliseconds. */
  readonly modelledMs: number;
  readonly instructions: number;
  readonly vmExits: number;
  readonly exitsByReason: Record<string, number>;
  readonly shadowFaults: number | null;
  readonly emulatedPtWrites: number | null;
  readonly eptReferences: number;
  readonly walkReferences: number;
  /** The host IOMMU's view of the domain (null when it has had no assigned device). */
  readonly iommu: IommuSample | null;
  /** I/O-instruction exits (the emulated disk's port I/O, the UART's). */
  readonly ioExits: number;
  /** The PV machine's blkback and event-channel counters (null for the others). */
  readonly pv: PvSample | null;
}

/** pvdisk's PV I/O: blkback's ring and grant counters (pv-backends) and the domain's event-channel counters (XenStats). */
export interface PvSample {
  /** blkif requests blkback took off the ring (read, write, flush, barrier, discard, unknown). */
  readonly ringRequests: number;
  readonly responses: number;
  readonly sectors: number;
  /** Grant operations blkback issued: GNTTABOP_copy, persistent maps, unmaps. */
  readonly grantCopies: number;
  readonly grantMaps: number;
  readonly grantUnmaps: number;
  /** blkback's notifications of the frontend (events it sent). */
  readonly backendNotifications: number;
  /** The guest's EVTCHNOP_send calls, events delivered to it, and upcalls injected (XenStats). */
  readonly eventsSent: number;
  readonly eventsDelivered: number;
  readonly upcallsInjected: number;
}

/**
 * The xenstore view's bounds: nodes listed (breadth first), depth, and characters of a value shown.
 * The guest writes its own device directories: what it wrote is shown as text, cut to these.
 */
export const XS_MAX_NODES = 400;
export const XS_MAX_DEPTH = 10;
export const XS_MAX_VALUE = 120;

/** One xenstore node as the view shows it (value null when empty). */
export interface XsNode {
  readonly name: string;
  readonly path: string;
  readonly value: string | null;
  readonly children: readonly XsNode[];
}

/** The host VT-d unit's counters for the domain, and its fault log as Xen's iommu_page_fault prints it. */
export interface IommuSample {
  readonly remapping: "on" | "off";
  readonly devices: readonly string[];
  readonly dmaRequests: number;
  readonly iotlbHits: number;
  readonly iotlbMisses: number;
  readonly faults: number;
  /** One line per fault kept (the oldest first), and a line for the older ones not kept. */
  readonly faultLog: readonly string[];
}

export type FromWorker =
  | { readonly type: "console"; readonly text: string }
  | { readonly type: "stats"; readonly sample: StatsSample }
  | { readonly type: "state"; readonly state: string; readonly detail: string }
  /** Step mode's answer: the exit it stopped at, or null when none came (the domain stopped, went idle or ran the step's budget out). */
  | { readonly type: "step"; readonly exit: StepSample | null; readonly note: string }
  /** The PV machine's xenstore tree, refreshed while it runs. */
  | { readonly type: "xenstore"; readonly root: XsNode; readonly nodes: number; readonly truncated: boolean }
  /** Booting failed (a DomainError: the machine's configuration was refused). */
  | { readonly type: "error"; readonly message: string };

/** One VM exit as step mode shows it: reported by the hypervisor's onVmExit before it was handled. */
export interface StepSample extends Omit<VmExitGuestState, "reasonName"> {
  /** The domain's VM exits before this one (so this is exit number `exitsBefore + 1`). */
  readonly exitsBefore: number;
  readonly vcpu: number;
  /** Basic exit reason (SDM Appendix C) and its name as vtlab writes it (exitsByReason's keys). */
  readonly reason: number;
  readonly reasonName: string;
  readonly qualification: number;
  /** The qualification in words where step.ts decodes its format, else "". */
  readonly decoded: string;
  readonly instructionLength: number;
  readonly guestLinear: number | null;
  readonly guestPhysical: number | null;
}

/** To the tour worker (tour-worker.ts): run the tour once, quick (small workloads) or full (about 40 s). */
export interface ToTourWorker {
  readonly kernelUrl: string;
  readonly quick: boolean;
}

/** One tour scenario as the page shows it (@vtlab/demo/tour's TourScenarioResult without its machine reports). */
export interface TourScenarioView {
  readonly name: string;
  readonly title: string;
  readonly claim: string;
  readonly available: boolean;
  readonly note: string | null;
  readonly figures: readonly { readonly title: string; readonly unit: string; readonly digits: number; readonly bars: readonly { readonly label: string; readonly value: number | null }[] }[];
  readonly checks: readonly { readonly statement: string; readonly holds: boolean; readonly detail: string }[];
}

export type FromTourWorker =
  | { readonly type: "progress"; readonly line: string }
  | { readonly type: "scenario"; readonly index: number; readonly scenario: TourScenarioView }
  | { readonly type: "done"; readonly ok: boolean }
  | { readonly type: "error"; readonly message: string };
