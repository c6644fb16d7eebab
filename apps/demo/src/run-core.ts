/**
 * The node-free half of run.ts (no file access, no Node built-ins, so that `@vtlab/demo/tour`
 * runs in a browser): machine reports, the progress line, the demo's runs of the reference
 * kernel given as bytes, and the tables. run.ts re-exports all of it and adds what reads files.
 */
import { REFERENCE_KERNEL_WORKLOADS } from "@vtlab/guests";
import { DomainError, Hypervisor, MemoryBlockBackend, Toolstack, parseDomainConfig, type CrashOutcome, type CrashRecord, type Domain, type DomainIommuStats, type ManagedDomain, type XenStatsSnapshot } from "@vtlab/hypervisor";
import { runIsolation, type IsolationReport } from "./isolation.js";
import { hostPciDevices } from "./host.js";
import { fmt, formatTable } from "./table.js";

export interface MachineReport {
  readonly name: string;
  readonly mmu: "ept" | "shadow";
  readonly state: string;
  readonly exitCode: number | null;
  /**
   * What the exit code means where the convention is known: the value a guest wrote to
   * isa-debug-exit (port 0xF4), which QEMU turns into the process status (value << 1) | 1; or the
   * SCHEDOP_shutdown reason. Null while the machine has not shut down.
   */
  readonly exitMeaning: string | null;
  readonly crashReason: string | null;
  readonly instructions: number;
  readonly vmExits: number;
  readonly exitsByReason: Record<string, number>;
  readonly ioExits: number;
  /** I/O exits per MiB moved to or from the disk (null without disk traffic). */
  readonly ioExitsPerDiskMiB: number | null;
  /** Shadow paging: page faults the shadow code handled (fill, guest, dirty-bit, PT write...), and emulated page-table writes. */
  readonly shadowFaults: number | null;
  readonly emulatedPtWrites: number | null;
  readonly pageWalks: number;
  readonly walkReferences: number;
  readonly eptReferences: number;
  readonly tlbHitRate: number;
  readonly modelledMs: number;
  readonly wallSeconds: number;
  readonly mips: number;
  readonly firstLineMs: number | null;
  /** The Xen interface: hypercalls by name, events sent and delivered, upcalls, grant maps, unmaps and copies. */
  readonly xen: XenStatsSnapshot;
  /** MiB moved to or from the disk: the emulated ATA disk's sectors, or blkback's for a PV vbd. */
  readonly diskMiB: number;
  /** All VM exits per disk MiB (null without disk traffic). */
  readonly exitsPerDiskMiB: number | null;
  /** Disk MiB per second of modelled time (null without disk traffic). */
  readonly diskMiBPerSecond: number | null;
  /** PV I/O: ring requests the backends served (blkif requests; netif TX and RX slots). */
  readonly ringRequests: number;
  /** PV I/O: dom0's grant operations for this domain (blkback's copies, maps and unmaps; netback's one copy per frame each way). */
  readonly grantOps: number;
  /** Event-channel events the domain sent plus those delivered to it. */
  readonly events: number;
  /** Device assignment: the host IOMMU's counters for this domain (null when it has no device and no fault). */
  readonly iommu: DomainIommuStats | null;
  /** What the machine printed on its console (UART, debug console, console_io, PV console): the last 1 MiB, nothing for serial = "none". */
  readonly console: string;
  /** Console bytes the machine printed, and those not kept in `console` (the capture bound; all of them for serial = "none"). */
  readonly consoleBytes: number;
  readonly consoleDropped: number;
}

/** What the host's PV backends did for one domain (from the toolstack's vbds and vifs). */
export interface PvIo {
  readonly diskMiB: number;
  readonly ringRequests: number;
  readonly grantOps: number;
}

/** The backend counters of domain `domid` in `toolstack`: its vbds' blkbacks and its vifs. */
export function pvIo(toolstack: Toolstack, domid: number): PvIo {
  let sectors = 0, ringRequests = 0, grantOps = 0;
  for (const v of toolstack.disks.vbds(domid)) {
    const c = v.vbd.blkback.counters;
    sectors += c.sectorsRead + c.sectorsWritten;
    ringRequests += c.read + c.write + c.flush + c.barrier + c.discard + c.unknown;
    grantOps += c.grantCopies + c.grantMaps + c.grantUnmaps;
  }
  for (const v of toolstack.network.vifs(domid)) {
    const c = v.vif.counters;
    // One slot a frame both ways (a frame up to a page), and one grant copy per slot.
    ringRequests += c.txPackets + c.txErrors + c.rxPackets;
    grantOps += c.txPackets + c.txErrors + c.rxPackets;
  }
  return { diskMiB: (sectors * 512) / (1024 * 1024), ringRequests, grantOps };
}

export function report(hv: Hypervisor, d: Domain, wallSeconds: number, firstLineMs: number | null = null, pv?: PvIo): MachineReport {
  const s = d.stats(hv.cost);
  const mib = diskMiB(d) + (pv?.diskMiB ?? 0);
  const modelledSeconds = s.modelledCycles / hv.clock.frequencyHz;
  return {
    name: d.name,
    mmu: d.hap ? "ept" : "shadow",
    state: d.state,
    exitCode: d.exitCode ?? null,
    crashReason: d.crashReason ?? null,
    exitMeaning: exitMeaning(d),
    instructions: s.instructions,
    vmExits: s.vmExits,
    exitsByReason: s.exitsByReason,
    ioExits: s.ioExits,
    ioExitsPerDiskMiB: diskMiB(d) > 0 ? s.ioExits / diskMiB(d) : null,
    shadowFaults: s.shadow === undefined ? null : Object.values(s.shadow.faults).reduce((a, b) => a + b, 0),
    emulatedPtWrites: s.shadow?.emulatedWrites ?? null,
    pageWalks: s.pageWalks,
    walkReferences: s.walkReferences,
    eptReferences: s.eptReferences,
    tlbHitRate: s.tlbHits + s.tlbMisses === 0 ? 0 : s.tlbHits / (s.tlbHits + s.tlbMisses),
    modelledMs: (s.modelledCycles / hv.clock.frequencyHz) * 1000,
    wallSeconds,
    mips: wallSeconds > 0 ? s.instructions / wallSeconds / 1e6 : 0,
    firstLineMs,
    xen: s.xen,
    diskMiB: mib,
    exitsPerDiskMiB: mib > 0 ? s.vmExits / mib : null,
    diskMiBPerSecond: mib > 0 && modelledSeconds > 0 ? mib / modelledSeconds : null,
    ringRequests: pv?.ringRequests ?? 0,
    grantOps: pv?.grantOps ?? 0,
    events: s.xen.eventsSent + s.xen.eventsDelivered,
    iommu: s.iommu ?? null,
    console: d.console,
    consoleBytes: s.console.bytes,
    consoleDropped: s.console.dropped,
  };
}

/**
 * A machine of `vtlab run`: the statistics of its last incarnation (a restarted machine's earlier
 * incarnations are in `crashes` only), and what the toolstack did about its crashes.
 */
export interface RunReport extends MachineReport {
  /** The domain id of the last incarnation. */
  readonly domid: number;
  /** Restarts after crashes (on_crash = "restart"). */
  readonly restarts: number;
  /** What the toolstack did about the last crash (`on_crash` applied); null when the machine never crashed. */
  readonly onCrash: CrashOutcome | null;
  /** Every crash, oldest first, with the action and outcome. */
  readonly crashes: readonly CrashRecord[];
}

/**
 * The report of a machine the toolstack managed. Its `state` is "crashed" when the last
 * incarnation crashed, whatever `on_crash` did with it afterwards ("destroyed" is in `onCrash`).
 */
export function runReport(hv: Hypervisor, m: ManagedDomain, wallSeconds: number, firstLineMs: number | null = null, pv?: PvIo): RunReport {
  const r = report(hv, m.domain, wallSeconds, firstLineMs, pv);
  const last = m.crashes.at(-1);
  const crashedLast = last !== undefined && last.domid === m.domain.id;
  return {
    ...r,
    state: crashedLast ? "crashed" : r.state,
    crashReason: crashedLast ? last.reason : r.crashReason,
    domid: m.domain.id,
    restarts: m.restarts,
    onCrash: last?.outcome ?? null,
    crashes: [...m.crashes],
  };
}

/** `MachineReport.exitMeaning` of a domain. */
export function exitMeaning(d: Domain): string | null {
  if (d.state !== "shutdown") return null;
  if (d.shutdownReason !== undefined) return d.shutdownReason;
  const code = d.exitCode;
  if (code === undefined) return null;
  // QEMU's isa-debug-exit: the process exits with (value << 1) | 1, so 0 would look like a failure there too.
  const qemu = code <= 0x7f ? ` (QEMU's process status ${(code << 1) | 1})` : "";
  return code === 0 ? "isa-debug-exit 0: success" : `isa-debug-exit value ${code} = 0x${code.toString(16)}: the guest's failure code${qemu}`;
}

function diskMiB(d: Domain): number {
  const st = d.disk?.stats;
  return st === undefined ? 0 : ((st.sectorsRead + st.sectorsWritten) * 512) / (1024 * 1024);
}

export function formatReports(reports: readonly MachineReport[]): string {
  const crashes = reports.filter((r) => r.crashReason !== null).map((r) => `${r.name}: crashed: ${r.crashReason}`);
  return reportTables(reports, [], crashes);
}

/** The table of `vtlab run`: `formatReports`' with the restarts and the on_crash outcome, and every crash below. */
export function formatRunReports(reports: readonly RunReport[]): string {
  const columns: ExtraColumn<RunReport>[] = [
    { header: "restarts", cell: (r) => fmt(r.restarts) },
    { header: "on_crash", cell: (r) => r.onCrash ?? "-" },
  ];
  return reportTables(reports, columns, reports.flatMap((r) => r.crashes.map(describeCrash)));
}

interface ExtraColumn<R> {
  readonly header: string;
  readonly cell: (r: R) => string;
}

/** The statistics table (with `extra` columns at the end), the exits by reason, then the `notes` lines. */
function reportTables<R extends MachineReport>(reports: readonly R[], extra: readonly ExtraColumn<R>[], notes: readonly string[]): string {
  const header = ["machine", "mmu", "result", "instructions", "VM exits", "shadow #PF", "PT writes", "I/O exits", "I/O per disk MiB", "exits per disk MiB", "disk MiB/s", "ring reqs", "grant ops", "events", "DMA reqs", "IOTLB hit %", "DMA faults", "walks", "walk refs", "EPT refs", "TLB hit %", "modelled ms", "wall s", "MIPS", ...extra.map((c) => c.header)];
  const rows = reports.map((r) => [
    r.name,
    r.mmu,
    r.state === "shutdown" ? (r.exitCode === 0 || r.exitMeaning === null ? `exit ${r.exitCode ?? "-"}` : `exit ${r.exitCode ?? "-"} (${r.exitMeaning})`) : r.state === "crashed" ? "CRASHED" : r.state,
    fmt(r.instructions),
    fmt(r.vmExits),
    r.shadowFaults === null ? "-" : fmt(r.shadowFaults),
    r.emulatedPtWrites === null ? "-" : fmt(r.emulatedPtWrites),
    fmt(r.ioExits),
    r.ioExitsPerDiskMiB === null ? "-" : fmt(r.ioExitsPerDiskMiB),
    r.exitsPerDiskMiB === null ? "-" : fmt(r.exitsPerDiskMiB),
    r.diskMiBPerSecond === null ? "-" : fmt(r.diskMiBPerSecond, 1),
    fmt(r.ringRequests),
    fmt(r.grantOps),
    fmt(r.events),
    r.iommu === null ? "-" : fmt(r.iommu.dmaRequests),
    r.iommu === null ? "-" : r.iommu.remapping === "off" ? "off" : fmt(r.iommu.iotlbHitRate * 100, 1),
    r.iommu === null ? "-" : fmt(r.iommu.faults),
    fmt(r.pageWalks),
    fmt(r.walkReferences),
    fmt(r.eptReferences),
    fmt(r.tlbHitRate * 100, 1),
    fmt(r.modelledMs, 2),
    fmt(r.wallSeconds, 2),
    fmt(r.mips, 1),
    ...extra.map((c) => c.cell(r)),
  ]);
  const reasons = [...new Set(reports.flatMap((r) => Object.keys(r.exitsByReason)))].sort();
  const exitRows = reasons.map((reason) => [reason, ...reports.map((r) => fmt(r.exitsByReason[reason] ?? 0))]);
  const machines = ["reason", ...reports.map((r) => `${r.name} (${r.mmu})`)];
  const xen = xenRows(reports);
  const iommu = iommuRows(reports);
  const faults = reports.flatMap(faultLines);
  return [
    formatTable(header, rows),
    "",
    "VM exits by reason",
    formatTable(machines, exitRows),
    ...(xen.length > 0 ? ["", "Xen interface (hypercalls by name, events, grants)", formatTable(["", ...machines.slice(1)], xen)] : []),
    ...(iommu.length > 0 ? ["", "Device assignment through the host IOMMU (VT-d)", formatTable(["", ...machines.slice(1)], iommu)] : []),
    ...(faults.length > 0 ? ["", "IOMMU fault log (DMA remapping faults, as Xen's iommu_page_fault reports them)", ...faults] : []),
    ...(notes.length > 0 ? ["", ...notes] : []),
  ].join("\n");
}

/** Rows of the Xen table: each hypercall by name, unknown ones by number, then the event and grant counters; none when no machine made a hypercall. */
function xenRows(reports: readonly MachineReport[]): string[][] {
  if (reports.every((r) => Object.keys(r.xen.hypercalls).length === 0 && Object.keys(r.xen.unknownHypercalls).length === 0)) return [];
  const names = [...new Set(reports.flatMap((r) => Object.keys(r.xen.hypercalls)))].sort();
  const unknown = [...new Set(reports.flatMap((r) => Object.keys(r.xen.unknownHypercalls)))].sort((a, b) => Number(a) - Number(b));
  const counters = [
    ["events sent", (x: XenStatsSnapshot) => x.eventsSent],
    ["events delivered", (x: XenStatsSnapshot) => x.eventsDelivered],
    ["upcalls injected", (x: XenStatsSnapshot) => x.upcallsInjected],
    ["grant maps", (x: XenStatsSnapshot) => x.grantMaps],
    ["grant unmaps", (x: XenStatsSnapshot) => x.grantUnmaps],
    ["grant copies", (x: XenStatsSnapshot) => x.grantCopies],
    ["continuations", (x: XenStatsSnapshot) => x.continuations],
  ] as const;
  return [
    ...names.map((n) => [n, ...reports.map((r) => fmt(r.xen.hypercalls[n] ?? 0))]),
    ...unknown.map((n) => [`unknown #${n} (-ENOSYS)`, ...reports.map((r) => fmt(r.xen.unknownHypercalls[n] ?? 0))]),
    ...counters.map(([label, get]) => [label, ...reports.map((r) => fmt(get(r.xen)))]),
  ];
}

/** Rows of the IOMMU table: none when no machine has an assigned device. */
function iommuRows(reports: readonly MachineReport[]): string[][] {
  if (reports.every((r) => r.iommu === null)) return [];
  const cell = (get: (s: DomainIommuStats) => string) => reports.map((r) => (r.iommu === null ? "-" : get(r.iommu)));
  return [
    ["remapping", ...cell((s) => s.remapping)],
    ["devices", ...cell((s) => s.devices.join(" ") || "-")],
    ["DMA requests", ...cell((s) => fmt(s.dmaRequests))],
    ["DMA MiB", ...cell((s) => fmt(s.dmaBytes / (1024 * 1024), 2))],
    ["IOTLB hits", ...cell((s) => fmt(s.iotlbHits))],
    ["IOTLB misses (page walks)", ...cell((s) => fmt(s.iotlbMisses))],
    ["IOTLB hit %", ...cell((s) => fmt(s.iotlbHitRate * 100, 1))],
    ["context-cache hits", ...cell((s) => fmt(s.contextCacheHits))],
    ["context-cache misses", ...cell((s) => fmt(s.contextCacheMisses))],
    ["walk refs per DMA", ...cell((s) => fmt(s.walkReferencesPerDma, 2))],
    ["faults", ...cell((s) => fmt(s.faults))],
    ["invalidations: context", ...cell((s) => fmt(s.invalidations.context))],
    ["invalidations: IOTLB page", ...cell((s) => fmt(s.invalidations.iotlbPage))],
    ["invalidations: IOTLB domain", ...cell((s) => fmt(s.invalidations.iotlbDomain))],
    ["invalidations: IOTLB global", ...cell((s) => fmt(s.invalidations.iotlbGlobal))],
    ["IOMMU modelled cycles", ...cell((s) => fmt(s.modelledCycles))],
  ];
}

/** The fault log of one machine, one line per fault kept (the count of older ones first). */
export function faultLines(r: MachineReport): string[] {
  if (r.iommu === null || r.iommu.faults === 0) return [];
  const kept = r.iommu.faultLog;
  const older = r.iommu.faults - kept.length;
  return [
    ...(older > 0 ? [`${r.name}: ${fmt(older)} older faults not kept`] : []),
    ...kept.map((f) => `${r.name}: [DMA ${f.access === "write" ? "Write" : "Read"}] Request device [0000:${f.bdf}] fault addr 0x${f.iova.toString(16)} [fault reason 0x${f.reason.toString(16).padStart(2, "0")}] ${f.reasonName}`),
  ];
}

/** One line on a crash and what `on_crash` did (as `vtlab run` and `vtlab shell` print it). */
export function describeCrash(r: CrashRecord): string {
  const head = `${r.name} (id ${r.domid}) crashed: ${r.reason}; on_crash "${r.action}": `;
  switch (r.outcome) {
    case "destroyed":
      return `${head}destroyed`;
    case "preserved":
      return `${head}preserved (listed as crashed, holding its memory)`;
    case "restarted":
      return `${head}restarted as id ${r.newDomid ?? "?"} (restart ${r.restarts})`;
    case "restart-refused":
      return `${head}not restarted (${r.detail ?? ""}); destroyed`;
    case "restart-failed":
      return `${head}restart failed (${r.detail ?? ""}); destroyed`;
  }
}

export interface RunOptions {
  readonly maxInstructions?: number;
  /** Console text of each machine. */
  readonly onConsole?: (name: string, text: string) => void;
  /** Progress, about once a second of wall time. */
  readonly onProgress?: (line: string) => void;
}

export function progress(hv: Hypervisor, t0: number, out: ((line: string) => void) | undefined): () => void {
  let last = performance.now();
  return () => {
    if (out === undefined) return;
    const now = performance.now();
    if (now - last < 1000) return;
    last = now;
    const n = hv.domains.reduce((a, d) => a + d.instructions, 0);
    const running = hv.domains.filter((d) => d.state === "running").length;
    out(`[vtlab] ${((now - t0) / 1000).toFixed(1)} s: ${fmt(n)} instructions, ${running} machine(s) running, modelled ${(hv.clock.nanoseconds / 1e6).toFixed(1)} ms`);
  };
}

/**
 * `vtlab demo`'s machines: the reference kernel's emulated workloads, `pvdisk` (the disk
 * workload through blkfront) and `nvme` (the disk workload through the kernel's NVMe driver, on
 * a controller assigned with `pci = ["00:04.0"]`, its DMA remapped by the host IOMMU).
 */
export const DEMO_WORKLOADS = [...REFERENCE_KERNEL_WORKLOADS, "pvdisk", "nvme"] as const;
export type DemoWorkload = (typeof DEMO_WORKLOADS)[number];
/** What `--workloads` can name: the workloads, and `iommu`, the isolation scenario (isolation.ts). */
export const DEMO_SCENARIOS = [...DEMO_WORKLOADS, "iommu"] as const;
export type DemoScenario = (typeof DEMO_SCENARIOS)[number];

export interface DemoOptions extends RunOptions {
  /** Workloads and scenarios to run (default all). */
  readonly workloads?: readonly DemoScenario[];
  /**
   * Extra kernel command-line parameters per workload, after `workload=<name>` (the reference
   * kernel's `key=N` parameters, e.g. `{ disk: "mib=1" }`); none by default.
   */
  readonly cmdline?: Partial<Record<DemoWorkload, string>>;
}

export interface DemoResult {
  readonly reports: MachineReport[];
  /** The IOMMU isolation scenario, with the IOMMU and with iommu = 0 (empty when not selected). */
  readonly isolation: IsolationReport[];
  /** Modes the hypervisor refused, with the reason (shadow paging until it is wired). */
  readonly unavailable: { readonly mmu: "ept" | "shadow"; readonly reason: string }[];
}

/** One machine of `runDemoOn`: a workload on shadow paging (hap = false) or EPT, in its own host. */
export interface DemoMachineJob {
  readonly workload: DemoWorkload;
  readonly hap: boolean;
  /** The kernel command line (`workload=<name>` and the extra parameters). */
  readonly cmdline: string;
  /** The machine's name (`<workload>-<shadow|ept>`), as its report has it. */
  readonly name: string;
}

/** What one machine of `runDemoOn` gave: its report, or the reason its paging mode could not be run. */
export type DemoMachineResult =
  | { readonly report: MachineReport; readonly unavailable: null }
  | { readonly report: null; readonly unavailable: { readonly mmu: "ept" | "shadow"; readonly reason: string } };

/** The machines `runDemoOn(options)` runs, in its order: every workload on shadow paging, then on EPT (`iommu` is not a machine). */
export function demoMachineJobs(options: DemoOptions = {}): DemoMachineJob[] {
  const jobs: DemoMachineJob[] = [];
  const selected = options.workloads ?? DEMO_SCENARIOS;
  for (const hap of [false, true]) {
    for (const w of selected) {
      if (w === "iommu") continue;
      const extra = options.cmdline?.[w];
      jobs.push({ workload: w, hap, cmdline: extra === undefined || extra === "" ? `workload=${w}` : `workload=${w} ${extra}`, name: `${w}-${hap ? "ept" : "shadow"}` });
    }
  }
  return jobs;
}

/** Run one machine of `runDemoOn` (`kernel`: the reference kernel image's bytes) in a host of its own. */
export function runDemoMachine(kernel: Uint8Array, job: DemoMachineJob, options: RunOptions = {}): DemoMachineResult {
  const { workload: w, hap, cmdline, name } = job;
  const hv = new Hypervisor({ memoryMiB: 512, pciDevices: hostPciDevices() });
  const t0 = performance.now();
  let first: number | null = null;
  const onConsole = (t: string) => {
    first ??= performance.now() - t0;
    options.onConsole?.(name, t);
  };
  const mmu = hap ? "ept" : "shadow";
  if (w === "pvdisk" || w === "nvme") {
    // The PV machine goes through the toolstack, which composes xenstored and blkback: the
    // same image as a vbd (vdev=xvda, devid 51712) as well as the emulated primary master.
    // The NVMe machine: the host's controller at 00:04.0 assigned to it (strict IOMMU).
    const toolstack = new Toolstack(hv, { resources: () => ({ kernel, disk: new MemoryBlockBackend(16384), onConsole }) });
    const device = w === "pvdisk" ? `disk = [ "format=raw, vdev=xvda, access=rw, target=pvdisk.img" ]` : `pci = [ "00:04.0" ]`;
    const config = parseDomainConfig(`name = "${name}"\nmemory = 128\nhap = ${hap ? 1 : 0}\nkernel = "kernel.elf"\ncmdline = "${cmdline}"\n${device}\n`, "<vtlab demo>");
    let m: ManagedDomain;
    try {
      m = toolstack.create(config, "<vtlab demo>");
    } catch (e) {
      if (!(e instanceof DomainError)) throw e;
      return { report: null, unavailable: { mmu, reason: e.message } };
    }
    toolstack.run({ ...(options.maxInstructions !== undefined ? { maxInstructions: options.maxInstructions } : {}), onSlice: progress(hv, t0, options.onProgress) });
    const r = report(hv, m.domain, (performance.now() - t0) / 1000, first, pvIo(toolstack, m.domain.id));
    toolstack.destroyAll();
    return { report: r, unavailable: null };
  }
  let d: Domain;
  try {
    d = hv.createDomain({ name, memoryMiB: 128, hap, kernel, cmdline, disk: new MemoryBlockBackend(16384), onConsole });
  } catch (e) {
    if (!(e instanceof DomainError)) throw e;
    return { report: null, unavailable: { mmu, reason: e.message } };
  }
  hv.run({ ...(options.maxInstructions !== undefined ? { maxInstructions: options.maxInstructions } : {}), onSlice: progress(hv, t0, options.onProgress) });
  return { report: report(hv, d, (performance.now() - t0) / 1000, first), unavailable: null };
}

/**
 * `runDemoOn`'s result from its machines' (`jobs`, in demoMachineJobs' order; `undefined` for one
 * not run) and its isolation runs: once a paging mode is refused, its later machines do not count
 * (runDemoOn does not run them).
 */
export function demoResultOf(jobs: readonly DemoMachineJob[], results: readonly (DemoMachineResult | undefined)[], isolation: IsolationReport[] = []): DemoResult {
  const reports: MachineReport[] = [];
  const unavailable: DemoResult["unavailable"] = [];
  const refused = new Set<boolean>();
  jobs.forEach((job, k) => {
    const r = results[k];
    if (r === undefined || refused.has(job.hap)) return;
    if (r.unavailable !== null) {
      unavailable.push(r.unavailable);
      refused.add(job.hap);
    } else reports.push(r.report);
  });
  return { reports, isolation, unavailable };
}

/**
 * The reference kernel's workloads on a shadow-paging machine and an EPT machine, each in its own
 * host so that wall times do not mix. `kernel` is the reference kernel image's bytes (the Node
 * side reads the file, `runDemo` in run.ts; a web page fetches it).
 */
export function runDemoOn(kernel: Uint8Array, options: DemoOptions = {}): DemoResult {
  const jobs = demoMachineJobs(options);
  const refused = new Set<boolean>();
  const results = jobs.map((job) => {
    if (refused.has(job.hap)) return undefined; // a refused mode's later machines are not run
    const r = runDemoMachine(kernel, job, options);
    if (r.unavailable !== null) refused.add(job.hap);
    return r;
  });
  const selected = options.workloads ?? DEMO_SCENARIOS;
  const isolation = selected.includes("iommu") ? [true, false].map((on) => runIsolation(on, kernel, options.onConsole)) : [];
  return demoResultOf(jobs, results, isolation);
}

/** The isolation scenario's table: the attack with the IOMMU and with iommu = 0, then the fault log of the run with the IOMMU. */
export function formatIsolation(runs: readonly IsolationReport[]): string {
  if (runs.length === 0) return "";
  const rows: string[][] = [
    ["victim page the attacker aims at (machine address)", ...runs.map((r) => `0x${r.victimAddress.toString(16)}`)],
    ["DMA attempts (NVM Read and Write)", ...runs.map((r) => fmt(r.attempts.length))],
    ["attempts that failed (Data Transfer Error)", ...runs.map((r) => fmt(r.blocked))],
    ["IOMMU faults recorded", ...runs.map((r) => (r.attacker.iommu?.remapping === "on" ? fmt(r.attacker.iommu.faults) : "- (no remapping)"))],
    ["victim pages changed by the attack", ...runs.map((r) => `${fmt(r.victimPagesChanged)} of ${fmt(r.victimPages)}`)],
    ["victim RAM SHA-256 after = before", ...runs.map((r) => (r.victimHashAfter === r.victimHashBefore ? "yes" : "NO"))],
    ["victim, unpaused, then", ...runs.map((r) => (r.victim.state === "shutdown" ? `exit ${r.victim.exitCode ?? "-"}` : r.victim.state === "crashed" ? `CRASHED (${r.victim.crashReason ?? ""})` : r.victim.state))],
    ["attacker", ...runs.map((r) => (r.attacker.state === "shutdown" ? `exit ${r.attacker.exitCode ?? "-"}` : r.attacker.state))],
  ];
  return [
    "IOMMU isolation: a guest with an assigned NVMe controller DMAs at another domain's memory, beyond its RAM and into the MMIO hole",
    formatTable(["", ...runs.map((r) => (r.iommu === "on" ? "with the IOMMU" : "iommu = 0"))], rows),
    ...runs.flatMap((r) => {
      const f = faultLines(r.attacker);
      return f.length > 0 ? ["", `IOMMU fault log (${r.attacker.name})`, ...f] : [];
    }),
  ].join("\n");
}
