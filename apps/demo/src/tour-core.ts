/**
 * `vtlab demo` as the tour of the seeds (issue 17): one scenario after another, each with the
 * claim it shows, the figures that show it (computed from the runs, never written in), and a
 * computed check of whether the run bears the claim out. The command line, `--json`, `--html`
 * and any web page all use `runTour` and its `TourResult`.
 *
 * This module is `@vtlab/demo/tour`, which the web page imports: nothing in its import graph is
 * a Node built-in (a test bundles it for the browser and fails on any). The reference kernel
 * comes in as bytes (`options.kernel`); tour.ts is the Node side, which reads the kernel file.
 */
import { Hypervisor, Toolstack, parseDomainConfig } from "@vtlab/hypervisor";
import type { IsolationReport } from "./isolation.js";
import { hostPciDevices } from "./host.js";
import { demoMachineJobs, demoResultOf, progress, pvIo, report, runDemoMachine, type DemoMachineJob, type DemoMachineResult, type DemoOptions, type DemoResult, type MachineReport, type RunOptions } from "./run-core.js";
import { runIsolation } from "./isolation.js";

export { hostPciDevices, HOST_PCI_DEVICES, HOST_NVME_SECTORS } from "./host.js";
export type { MachineReport } from "./run-core.js";
export type { IsolationReport } from "./isolation.js";
import { fmt } from "./table.js";

/** The tour's scenarios, in the order `vtlab demo` runs them. */
export const TOUR_SCENARIOS = ["shadow-ept", "disk-pv", "netfront", "iommu", "linux-boot"] as const;
export type TourScenarioName = (typeof TOUR_SCENARIOS)[number];

export interface TourOptions extends RunOptions {
  /** The reference kernel image's bytes (@vtlab/guests' kernel.elf): read from its file by `vtlab demo`, fetched by a web page. */
  readonly kernel: Uint8Array;
  /** Scenarios to run, in tour order whatever the order given (default all). */
  readonly scenarios?: readonly TourScenarioName[];
  /** Workload sizes (the reference kernel's parameters), for short runs; the kernel's defaults otherwise. */
  readonly sizes?: TourSizes;
  /** shadow-ept's workloads (default all three), to split a long run. */
  readonly shadowEptWorkloads?: readonly ShadowEptWorkload[];
  /** Each scenario's result as soon as it has run (`vtlab demo` prints it then). */
  readonly onScenario?: (result: TourScenarioResult, index: number) => void;
}

/** The reference kernel's `key=N` parameters the tour passes (packages/guests/README.md, "Workloads"). */
export interface TourSizes {
  /** ptemod `iterations` (default 1000); its `pages` stay 64. */
  readonly ptemodIterations?: number;
  /** forkwait `forks` (default 1000). */
  readonly forkwaitForks?: number;
  /** compute `iterations` (default 1000000). */
  readonly computeIterations?: number;
  /** disk, pvdisk and nvme `mib` (default 2). */
  readonly diskMiB?: number;
  /** net `count`: ICMP echo requests (default 10). */
  readonly netCount?: number;
}

/** The reference kernel's defaults (packages/guests/README.md, "Workloads"). */
export const PTEMOD_DEFAULT_ITERATIONS = 1000;
/** ptemod `pages` (the kernel's default, passed explicitly: the PT-write count depends on it). */
export const PTEMOD_PAGES = 64;
export const FORKWAIT_DEFAULT_FORKS = 1000;
export const COMPUTE_DEFAULT_ITERATIONS = 1_000_000;
export const DISK_DEFAULT_MIB = 2;
export const NET_DEFAULT_COUNT = 10;

/** The workloads of the shadow-ept scenario. */
export const SHADOW_EPT_WORKLOADS = ["ptemod", "forkwait", "compute"] as const;
export type ShadowEptWorkload = (typeof SHADOW_EPT_WORKLOADS)[number];

/** One bar of a figure. `value` is null where the quantity does not exist (no disk traffic, say). */
export interface TourBar {
  readonly label: string;
  readonly value: number | null;
}

/** A figure: one quantity over several machines or runs (a bar chart in the HTML report). */
export interface TourFigure {
  readonly title: string;
  readonly unit: string;
  /** Digits after the decimal point when printed. */
  readonly digits: number;
  readonly bars: readonly TourBar[];
}

/** Whether the run bears a statement out, with the numbers that decided it. */
export interface TourCheck {
  readonly statement: string;
  readonly holds: boolean;
  /** The compared figures, e.g. "0 vs 3.0". */
  readonly detail: string;
}

export interface TourScenarioResult {
  readonly name: TourScenarioName;
  readonly title: string;
  /** The seed's claim the scenario shows. */
  readonly claim: string;
  /** False for a scenario vtlab cannot run yet (the Linux boot): no figures, no checks. */
  readonly available: boolean;
  /** What the reader should know beside the figures (a simplification, why nothing ran). */
  readonly note: string | null;
  readonly figures: readonly TourFigure[];
  readonly checks: readonly TourCheck[];
  /** The machines the scenario ran (their full statistics, the demo table's rows). */
  readonly reports: readonly MachineReport[];
  /** The IOMMU isolation runs (iommu scenario only). */
  readonly isolation: readonly IsolationReport[];
}

export interface TourResult {
  readonly scenarios: readonly TourScenarioResult[];
  /** Every check of every scenario run holds. */
  readonly ok: boolean;
}

/**
 * Paging-related basic exit reasons (Intel SDM Vol. 3C, Appendix C, Table C-1, by the names
 * `exitReasonName` gives them): EXIT_REASON_EXCEPTION_NMI (the #PF intercept of shadow paging),
 * EXIT_REASON_CR_ACCESS (CR3 loads), EXIT_REASON_INVLPG, EXIT_REASON_EPT_VIOLATION and
 * EXIT_REASON_EPT_MISCONFIG.
 */
export const PAGING_EXIT_REASONS = ["ExceptionOrNmi", "CrAccess", "Invlpg", "EptViolation", "EptMisconfig"] as const;

/** "Near-equal" modelled times of the compute workload: within this fraction of the larger. */
export const COMPUTE_NEAR_EQUAL = 0.1;

/** The VM exits of `r` whose reason is in PAGING_EXIT_REASONS. */
export function pagingExits(r: MachineReport): number {
  let n = 0;
  for (const reason of PAGING_EXIT_REASONS) n += r.exitsByReason[reason] ?? 0;
  return n;
}

/** `a / b`, null when b is 0 or either is missing. */
function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  return a === null || a === undefined || b === null || b === undefined || b === 0 ? null : a / b;
}

/** A figure's value as printed: `fmt` with the figure's digits, "-" for null. */
export function formatValue(value: number | null, digits: number): string {
  return value === null ? "-" : fmt(value, digits);
}

function check(statement: string, holds: boolean, detail: string): TourCheck {
  return { statement, holds, detail };
}

/** The machines exited 0: one check, naming those that did not. */
function allExitZero(reports: readonly MachineReport[], what: string): TourCheck {
  const bad = reports.filter((r) => !(r.state === "shutdown" && r.exitCode === 0));
  return check(
    `${what} ran to the end and exited 0`,
    reports.length > 0 && bad.length === 0,
    reports.length === 0 ? "no machine ran" : bad.length === 0 ? `${reports.length} of ${reports.length}` : bad.map((r) => `${r.name}: ${r.state === "shutdown" ? `exit ${r.exitCode ?? "-"}` : r.state}${r.crashReason !== null ? ` (${r.crashReason})` : ""}`).join(", "),
  );
}

/** The PASS line's checksum of a console (`PASS <workload> <16 hex digits>`). */
function passChecksum(console: string): string | null {
  return /^PASS \S+ ([0-9a-f]{16})$/m.exec(console)?.[1] ?? null;
}

function find(reports: readonly MachineReport[], name: string): MachineReport | undefined {
  return reports.find((r) => r.name === name);
}

function unavailableNote(u: readonly { mmu: string; reason: string }[]): string | null {
  return u.length === 0 ? null : u.map((x) => `${x.mmu} machines not run: ${x.reason}`).join("; ");
}

/** The full-size run and the half-size run of one workload on both paging modes. */
interface Differenced {
  readonly full: readonly MachineReport[];
  readonly half: readonly MachineReport[];
  readonly unavailable: readonly { mmu: "ept" | "shadow"; reason: string }[];
}

/**
 * The runs of `w` with `param=n` and `param=n/2` on shadow and EPT: the difference of the two is
 * the cost of n/2 units of the workload alone, the boot and the console cancelled out (on shadow
 * paging the boot's frame pool is ~32,000 shadow faults, more than a short workload's own).
 */
function differencedJobs(w: ShadowEptWorkload, param: string, n: number, extra: string): { full: DemoMachineJob[]; half: DemoMachineJob[] } {
  const jobs = (k: number) => demoMachineJobs({ workloads: [w], cmdline: { [w]: `${param}=${k}${extra}` } });
  return { full: jobs(n), half: jobs(halfOf(n)) };
}

function halfOf(n: number): number {
  return Math.max(1, Math.floor(n / 2));
}

function positiveInteger(name: string, v: number | undefined, dflt: number, min = 2, max = Number.MAX_SAFE_INTEGER): number {
  const n = v ?? dflt;
  // A caller's mistake, not guest data.
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new RangeError(`vtlab tour: sizes.${name}: ${String(v)} is not an integer from ${min} to ${max}`);
  return n;
}

/** The disks are 8 MiB (16,384 sectors; the host NVMe namespaces too), so a workload moves at most that. */
const DISK_MAX_MIB = 8;

function diskMiB(options: TourOptions): number {
  return positiveInteger("diskMiB", options.sizes?.diskMiB, DISK_DEFAULT_MIB, 1, DISK_MAX_MIB);
}

function netCount(options: TourOptions): number {
  return positiveInteger("netCount", options.sizes?.netCount, NET_DEFAULT_COUNT, 1, 1000);
}

/** shadow-ept's workload sizes and kernel parameters. */
function shadowEptSizes(options: TourOptions) {
  const sizes = options.sizes ?? {};
  const n = {
    ptemod: positiveInteger("ptemodIterations", sizes.ptemodIterations, PTEMOD_DEFAULT_ITERATIONS),
    forkwait: positiveInteger("forkwaitForks", sizes.forkwaitForks, FORKWAIT_DEFAULT_FORKS),
    compute: positiveInteger("computeIterations", sizes.computeIterations, COMPUTE_DEFAULT_ITERATIONS),
  };
  const param = { ptemod: ["iterations", ` pages=${PTEMOD_PAGES}`], forkwait: ["forks", ""], compute: ["iterations", ""] } as const;
  const selected = SHADOW_EPT_WORKLOADS.filter((w) => (options.shadowEptWorkloads ?? SHADOW_EPT_WORKLOADS).includes(w));
  return { n, param, selected };
}

/** shadow-ept's machines: each selected workload's full run (shadow, EPT), then its half run. */
function shadowEptPlan(options: TourOptions): TourPlan {
  const { n, param, selected } = shadowEptSizes(options);
  const groups = selected.map((w) => differencedJobs(w, param[w][0], n[w], param[w][1]));
  const jobs = groups.flatMap((g) => [...g.full, ...g.half]);
  return {
    name: "shadow-ept",
    jobs: jobs.map((job) => ({ kind: "machine", job })),
    assemble: (results) => {
      let at = 0;
      const take = (js: readonly DemoMachineJob[]): DemoResult => {
        const r = demoResultOf(js, results.slice(at, at + js.length).map(machineResult));
        at += js.length;
        return r;
      };
      const runs = new Map<ShadowEptWorkload, Differenced>();
      selected.forEach((w, k) => {
        const full = take(groups[k]!.full);
        const half = take(groups[k]!.half);
        runs.set(w, { full: full.reports, half: half.reports, unavailable: [...full.unavailable, ...half.unavailable] });
      });
      return shadowVsEpt(options, runs);
    },
  };
}

function shadowVsEpt(options: TourOptions, runs: ReadonlyMap<ShadowEptWorkload, Differenced>): TourScenarioResult {
  const { n, selected } = shadowEptSizes(options);
  const units = {
    // ptemod: each iteration writes and then unmaps each of its pages: 2 x pages PTE writes.
    ptemod: (n.ptemod - halfOf(n.ptemod)) * 2 * PTEMOD_PAGES,
    forkwait: n.forkwait - halfOf(n.forkwait),
    compute: n.compute - halfOf(n.compute),
  };
  const all = [...runs.values()];
  const reports = all.flatMap((d) => d.full);
  const unavailable = all.flatMap((d) => d.unavailable);
  const full = (w: ShadowEptWorkload, mmu: string) => runs.get(w)?.full.find((x) => x.mmu === mmu);
  /** The workload's own share of `get`: the full run's minus the half run's. */
  const delta = (w: ShadowEptWorkload, mmu: string, get: (x: MachineReport) => number): number | null => {
    const a = full(w, mmu);
    const b = runs.get(w)?.half.find((x) => x.mmu === mmu);
    return a === undefined || b === undefined ? null : get(a) - get(b);
  };
  const perUnit = (w: ShadowEptWorkload, mmu: string, get: (x: MachineReport) => number) => ratio(delta(w, mmu, get), units[w]);
  const checks: TourCheck[] = [allExitZero([...reports, ...all.flatMap((d) => d.half)], "every machine (full and half runs)")];
  if (unavailable.length > 0) checks.push(check("both paging modes could be run", false, unavailableNote(unavailable) ?? ""));
  const unitName = { ptemod: "guest PT write", forkwait: "fork" } as const;
  for (const w of (["ptemod", "forkwait"] as const).filter((x) => runs.has(x))) {
    const shadow = perUnit(w, "shadow", pagingExits);
    const ept = perUnit(w, "ept", pagingExits);
    checks.push(check(`${w}: EPT has fewer paging exits per ${unitName[w]} than shadow`, shadow !== null && ept !== null && ept < shadow, `${formatValue(ept, 2)} vs ${formatValue(shadow, 2)}`));
    const es = full(w, "ept")?.modelledMs ?? null;
    const ss = full(w, "shadow")?.modelledMs ?? null;
    checks.push(check(`${w}: EPT takes less modelled time than shadow`, es !== null && ss !== null && es < ss, `${formatValue(es, 2)} vs ${formatValue(ss, 2)} ms`));
  }
  if (runs.has("compute")) {
    const ce = delta("compute", "ept", (x) => x.modelledMs);
    const cs = delta("compute", "shadow", (x) => x.modelledMs);
    const diff = ce === null || cs === null ? null : Math.abs(ce - cs) / Math.max(Math.abs(ce), Math.abs(cs), Number.MIN_VALUE);
    checks.push(check(`compute: shadow and EPT take near-equal modelled time for the workload, boot cancelled out (within ${COMPUTE_NEAR_EQUAL * 100}%)`, diff !== null && diff <= COMPUTE_NEAR_EQUAL, `${formatValue(ce, 2)} vs ${formatValue(cs, 2)} ms, ${formatValue(diff === null ? null : diff * 100, 1)}% apart`));
  }
  for (const w of selected) {
    const a = full(w, "shadow")?.console;
    const b = full(w, "ept")?.console;
    checks.push(check(`${w}: the same console output on shadow and EPT`, a !== undefined && a === b && passChecksum(a) !== null, passChecksum(a ?? "") ?? "no PASS line"));
  }
  const both = (w: ShadowEptWorkload, get: (mmu: string) => number | null) => ["shadow", "ept"].map((mmu) => ({ label: `${w} ${mmu}`, value: get(mmu) }));
  const whole = (get: (x: MachineReport) => number) =>
    selected.flatMap((w) =>
      both(w, (mmu) => {
        const x = full(w, mmu);
        return x === undefined ? null : get(x);
      }),
    );
  const halves: Record<ShadowEptWorkload, string> = {
    ptemod: `ptemod iterations=${n.ptemod} and ${halfOf(n.ptemod)}, pages=${PTEMOD_PAGES}`,
    forkwait: `forkwait forks=${n.forkwait} and ${halfOf(n.forkwait)}`,
    compute: `compute iterations=${n.compute} and ${halfOf(n.compute)}`,
  };
  const figures: TourFigure[] = [];
  if (runs.has("ptemod")) figures.push({ title: `ptemod: paging VM exits per guest page-table write (reasons ${PAGING_EXIT_REASONS.join(", ")}; 2 x pages PTE writes per iteration)`, unit: "exits per PT write", digits: 2, bars: both("ptemod", (mmu) => perUnit("ptemod", mmu, pagingExits)) });
  if (runs.has("forkwait")) figures.push({ title: "forkwait: paging VM exits per fork (fork, copy-on-write, exit, wait)", unit: "exits per fork", digits: 2, bars: both("forkwait", (mmu) => perUnit("forkwait", mmu, pagingExits)) });
  if (runs.has("compute")) figures.push({ title: "compute: modelled time of the workload alone (boot cancelled out)", unit: "ms", digits: 2, bars: both("compute", (mmu) => delta("compute", mmu, (x) => x.modelledMs)) });
  figures.push({ title: "Modelled time of the whole run (cost model, boot included)", unit: "ms", digits: 2, bars: whole((x) => x.modelledMs) });
  figures.push({ title: "VM exits of the whole run (all reasons, boot included)", unit: "exits", digits: 0, bars: whole((x) => x.vmExits) });
  return {
    name: "shadow-ept",
    title: "Shadow page tables vs EPT",
    claim:
      "Shadow paging traps the guest's page-table writes, CR3 loads and INVLPGs and emulates them, so page-table-heavy workloads (ptemod, forkwait) exit far more often and run slower than on EPT, where the hardware walks guest and extended tables (a 2D walk) without exits; a compute workload that rarely touches its page tables runs at near-equal speed on both.",
    available: true,
    note: [
      `Per-unit figures are the difference of two runs (${selected.map((w) => halves[w]).join("; ")}), so the boot and the console cancel out (on shadow paging the boot alone is ~32,000 shadow faults); modelled times and exits of the whole (larger) run are shown too.`,
      unavailableNote(unavailable),
    ]
      .filter((x) => x !== null)
      .join(" "),
    figures,
    checks,
    reports,
    isolation: [],
  };
}

/** A scenario of `runDemoOn`'s machines (and isolation runs): `build` makes it from their DemoResult. */
function demoPlan(name: TourScenarioName, options: DemoOptions, build: (demo: DemoResult) => TourScenarioResult): TourPlan {
  const machines = demoMachineJobs(options);
  const isolation = (options.workloads ?? []).includes("iommu") ? [true, false] : [];
  return {
    name,
    jobs: [...machines.map((job): TourJob => ({ kind: "machine", job })), ...isolation.map((iommu): TourJob => ({ kind: "isolation", iommu }))],
    assemble: (results) => {
      const reports = results.slice(machines.length).map((r) => {
        if (r.kind !== "isolation") throw new Error("vtlab bug: a tour job's result out of order");
        return r.report;
      });
      return build(demoResultOf(machines, results.slice(0, machines.length).map(machineResult), reports));
    },
  };
}

function machineResult(r: TourJobResult): DemoMachineResult {
  if (r.kind !== "machine") throw new Error("vtlab bug: a tour job's result out of order");
  return r.result;
}

function diskVsPv(demo: DemoResult): TourScenarioResult {
  const r = (w: string, mmu: string) => find(demo.reports, `${w}-${mmu}`);
  const checks: TourCheck[] = [allExitZero(demo.reports, "every machine")];
  if (demo.unavailable.length > 0) checks.push(check("both paging modes could be run", false, unavailableNote(demo.unavailable) ?? ""));
  for (const mmu of ["shadow", "ept"]) {
    const disk = r("disk", mmu)?.exitsPerDiskMiB ?? null;
    const pv = r("pvdisk", mmu)?.exitsPerDiskMiB ?? null;
    const times = ratio(disk, pv);
    checks.push(check(`${mmu}: the PV disk has fewer VM exits per disk MiB than the emulated disk`, disk !== null && pv !== null && pv < disk, `${formatValue(pv, 0)} vs ${formatValue(disk, 0)}${times === null ? "" : `, ${fmt(times, 1)}x fewer`}`));
    const a = passChecksum(r("disk", mmu)?.console ?? "");
    const b = passChecksum(r("pvdisk", mmu)?.console ?? "");
    checks.push(check(`${mmu}: the same data checksum through ATA PIO and through blkfront`, a !== null && a === b, `${a ?? "no PASS line"} vs ${b ?? "no PASS line"}`));
  }
  const bars = (get: (rep: MachineReport | undefined) => number | null) => ["disk", "pvdisk"].flatMap((w) => ["shadow", "ept"].map((mmu) => ({ label: `${w} ${mmu}`, value: get(r(w, mmu)) })));
  return {
    name: "disk-pv",
    title: "Emulated disk vs PV disk",
    claim:
      "An emulated disk traps every port access of the guest's ATA driver (PIO data, status, command registers) and emulates it; the PV disk (blkfront on the Xen platform device, blkback in dom0) moves whole pages through a shared ring and grants, with an event per batch, so it takes far fewer VM exits per MiB and moves more MiB per modelled second.",
    available: true,
    note: "Whole runs, boot and console included (a UART exit or two per console character, and on shadow paging the boot-time shadow faults, weigh on exits per MiB).",
    figures: [
      { title: "VM exits per disk MiB (all reasons, whole run)", unit: "exits per MiB", digits: 0, bars: bars((x) => x?.exitsPerDiskMiB ?? null) },
      { title: "Disk MiB per second of modelled time", unit: "MiB/s", digits: 1, bars: bars((x) => x?.diskMiBPerSecond ?? null) },
    ],
    checks,
    reports: demo.reports,
    isolation: [],
  };
}

/** The machines/net-ping.cfg and net-pong.cfg pair, with `extra` kernel parameters (`count=N`) appended to each command line. */
function netConfigs(extra: string): { name: string; text: string }[] {
  const tail = ` ${extra}`;
  return [
    { name: "net-ping", text: `name = "net-ping"\nmemory = 64\nkernel = "kernel.elf"\ncmdline = "workload=net role=ping${tail}"\nvif = [ "mac=00:16:3e:00:00:01, bridge=xenbr0" ]\n` },
    { name: "net-pong", text: `name = "net-pong"\nmemory = 64\nkernel = "kernel.elf"\ncmdline = "workload=net role=pong${tail}"\nvif = [ "mac=00:16:3e:00:00:02, bridge=xenbr0" ]\n` },
  ];
}

/** The netfront pair's run (one host, one bridge): the two machines' reports. */
function runNetfront(kernel: Uint8Array, count: number, options: RunOptions): MachineReport[] {
  const hv = new Hypervisor({ memoryMiB: 1024, pciDevices: hostPciDevices() });
  const toolstack = new Toolstack(hv, { resources: (config) => ({ kernel, onConsole: (t) => options.onConsole?.(config.name, t) }) });
  const t0 = performance.now();
  let reports: MachineReport[];
  try {
    const domains = netConfigs(`count=${count}`).map((c) => toolstack.create(parseDomainConfig(c.text, `<vtlab demo: ${c.name}>`), `<vtlab demo: ${c.name}>`));
    toolstack.run({ ...(options.maxInstructions !== undefined ? { maxInstructions: options.maxInstructions } : {}), onSlice: progress(hv, t0, options.onProgress) });
    const wall = (performance.now() - t0) / 1000;
    reports = domains.map((m) => report(hv, m.domain, wall, null, pvIo(toolstack, m.domain.id)));
  } finally {
    toolstack.destroyAll();
  }
  return reports;
}

function netfront(reports: readonly MachineReport[]): TourScenarioResult {
  // Frames: netback's ring slots for the vif (one slot per frame, each way).
  const per = (get: (x: MachineReport) => number) => reports.map((x) => ({ label: x.name, value: ratio(get(x), x.ringRequests) }));
  const events = per((x) => x.events);
  const grants = per((x) => x.grantOps);
  const exits = per((x) => x.vmExits);
  const checks: TourCheck[] = [allExitZero(reports, "ping and pong (every echo answered, its checksum and payload checked)")];
  const ping = reports[0];
  const pong = reports[1];
  const sumPing = passChecksum(ping?.console ?? "");
  const sumPong = passChecksum(pong?.console ?? "");
  checks.push(check("both ends folded the same payloads into their checksum", sumPing !== null && sumPing === sumPong, `${sumPing ?? "no PASS line"} vs ${sumPong ?? "no PASS line"}`));
  checks.push(check("frames crossed the bridge both ways on each vif", reports.length === 2 && reports.every((x) => x.ringRequests > 0), reports.map((x) => `${x.name} ${fmt(x.ringRequests)}`).join(", ")));
  checks.push(
    check(
      "each frame costs one grant copy in dom0 (netback's copy) and no more",
      grants.length === 2 && grants.every((g) => g.value !== null && g.value <= 1),
      grants.map((g) => `${g.label} ${formatValue(g.value, 2)}`).join(", "),
    ),
  );
  return {
    name: "netfront",
    title: "Netfront ping (PV network)",
    claim:
      "With PV network drivers a guest's frames cross a shared ring with a grant each and an event-channel notification per batch, not an emulated NIC's register accesses: two domains on one bridge exchange an ARP and ICMP echoes through netfront and netback.",
    available: true,
    note: "vtlab has no emulated NIC (no e1000 or rtl8139 model), so there is no emulated side to compare: these are the PV ping's figures alone, on EPT machines, whole runs (boot and console included in exits and events).",
    figures: [
      { title: "Event-channel events per frame (sent plus delivered)", unit: "events per frame", digits: 2, bars: events },
      { title: "Grant operations in dom0 per frame", unit: "grant ops per frame", digits: 2, bars: grants },
      { title: "VM exits per frame (all reasons, whole run)", unit: "exits per frame", digits: 1, bars: exits },
    ],
    checks,
    reports,
    isolation: [],
  };
}

function iommu(demo: DemoResult): TourScenarioResult {
  const on = demo.isolation.find((x) => x.iommu === "on");
  const off = demo.isolation.find((x) => x.iommu === "off");
  const checks: TourCheck[] = [allExitZero(demo.reports, "the NVMe machines (disk's checksum through the assigned controller)")];
  if (demo.unavailable.length > 0) checks.push(check("both paging modes could be run", false, unavailableNote(demo.unavailable) ?? ""));
  checks.push(check("the assigned controller's own DMA is remapped without a fault", demo.reports.length > 0 && demo.reports.every((x) => x.iommu?.remapping === "on" && x.iommu.faults === 0 && x.iommu.dmaRequests > 0), demo.reports.map((x) => `${x.name}: ${fmt(x.iommu?.dmaRequests ?? 0)} DMA requests, ${formatValue(x.iommu?.faults ?? null, 0)} faults`).join("; ")));
  checks.push(check("with the IOMMU every attack DMA is blocked", on !== undefined && on.attempts.length > 0 && on.blocked === on.attempts.length, on === undefined ? "not run" : `${fmt(on.blocked)} of ${fmt(on.attempts.length)}`));
  checks.push(check("with the IOMMU the victim's RAM is byte-identical", on !== undefined && on.victimPagesChanged === 0 && on.victimHashAfter === on.victimHashBefore, on === undefined ? "not run" : `${fmt(on.victimPagesChanged)} of ${fmt(on.victimPages)} pages changed`));
  checks.push(check("without the IOMMU (iommu = 0) the attack reaches the victim", off !== undefined && off.victimPagesChanged > 0, off === undefined ? "not run" : `${fmt(off.victimPagesChanged)} of ${fmt(off.victimPages)} pages changed`));
  const runs = [...(on !== undefined ? [on] : []), ...(off !== undefined ? [off] : [])];
  const label = (x: IsolationReport) => (x.iommu === "on" ? "with the IOMMU" : "iommu = 0");
  return {
    name: "iommu",
    title: "Device assignment with and without the IOMMU",
    claim:
      "A device assigned to a guest DMAs with guest-physical addresses; the IOMMU (VT-d DMA remapping) translates them through tables built from the guest's p2m and blocks anything outside the guest, so a hostile guest cannot aim its device at another domain. Without it (Xen's iommu=0) bus addresses are machine addresses and the device reaches every domain.",
    available: true,
    note: unavailableNote(demo.unavailable),
    figures: [
      { title: "NVMe workload: IOTLB hit rate of the assigned controller's DMA", unit: "%", digits: 1, bars: demo.reports.map((x) => ({ label: x.name, value: x.iommu === null ? null : x.iommu.iotlbHitRate * 100 })) },
      { title: "Attack DMAs that reached memory (of those attempted)", unit: "DMAs", digits: 0, bars: runs.map((x) => ({ label: label(x), value: x.attempts.length - x.blocked })) },
      { title: "Victim pages changed by the attack", unit: "pages", digits: 0, bars: runs.map((x) => ({ label: label(x), value: x.victimPagesChanged })) },
    ],
    checks,
    reports: demo.reports,
    isolation: demo.isolation,
  };
}

function linuxBoot(): TourScenarioResult {
  return {
    name: "linux-boot",
    title: "Booting Linux",
    claim: "An unmodified Linux kernel boots as an HVM guest, on shadow paging and on EPT.",
    available: false,
    note: "Not in the tour yet: Debian's unmodified Linux boots to its /init (vtlab run apps/demo/machines/linux.cfg apps/demo/machines/linux-pong.cfg), but it takes about 1.5 G guest instructions, minutes at today's speed (issue 15), so this scenario runs nothing and shows no figures.",
    figures: [],
    checks: [],
    reports: [],
    isolation: [],
  };
}

/**
 * One independent run of the tour, in a host of its own: a machine of `runDemoOn`, the netfront
 * pair (two machines on one bridge), or an IOMMU isolation run. Plain data: a job can be sent to
 * a worker thread and run there (`runTourJob`), its result sent back.
 */
export type TourJob =
  | { readonly kind: "machine"; readonly job: DemoMachineJob }
  | { readonly kind: "netfront"; readonly count: number }
  | { readonly kind: "isolation"; readonly iommu: boolean };

/** What a TourJob gave (plain data). */
export type TourJobResult =
  | { readonly kind: "machine"; readonly result: DemoMachineResult }
  | { readonly kind: "netfront"; readonly reports: readonly MachineReport[] }
  | { readonly kind: "isolation"; readonly report: IsolationReport };

/** A scenario as the runs it needs and the function that makes its result from theirs (in the jobs' order). */
export interface TourPlan {
  readonly name: TourScenarioName;
  readonly jobs: readonly TourJob[];
  assemble(results: readonly TourJobResult[]): TourScenarioResult;
}

/** The machines a job runs, by name: for progress lines and for naming a job that failed. */
export function tourJobLabel(job: TourJob): string {
  switch (job.kind) {
    case "machine":
      return `${job.job.name} (${job.job.cmdline})`;
    case "netfront":
      return `net-ping and net-pong (count=${job.count})`;
    case "isolation":
      return `victim and attacker (${job.iommu ? "with the IOMMU" : "iommu = 0"})`;
  }
}

/** Run one job of the tour (`kernel`: the reference kernel image's bytes). */
export function runTourJob(kernel: Uint8Array, job: TourJob, options: RunOptions = {}): TourJobResult {
  switch (job.kind) {
    case "machine":
      return { kind: "machine", result: runDemoMachine(kernel, job.job, options) };
    case "netfront":
      return { kind: "netfront", reports: runNetfront(kernel, job.count, options) };
    case "isolation":
      return { kind: "isolation", report: runIsolation(job.iommu, kernel, options.onConsole) };
  }
}

/**
 * The selected scenarios (default all) in tour order, each as its jobs and how to assemble it.
 * Checks the sizes (a RangeError for a bad one) and the kernel before anything runs.
 */
export function planTour(options: TourOptions): TourPlan[] {
  // Bad sizes are the caller's mistake: say so before anything runs.
  const sz = options.sizes ?? {};
  positiveInteger("ptemodIterations", sz.ptemodIterations, PTEMOD_DEFAULT_ITERATIONS);
  positiveInteger("forkwaitForks", sz.forkwaitForks, FORKWAIT_DEFAULT_FORKS);
  positiveInteger("computeIterations", sz.computeIterations, COMPUTE_DEFAULT_ITERATIONS);
  diskMiB(options);
  netCount(options);
  const selected = options.scenarios ?? TOUR_SCENARIOS;
  // A caller's mistake, not guest data.
  if (!(options.kernel instanceof Uint8Array)) throw new TypeError("vtlab tour: options.kernel must be the reference kernel image's bytes (a Uint8Array)");
  const plan = (name: TourScenarioName): TourPlan => {
    switch (name) {
      case "shadow-ept":
        return shadowEptPlan(options);
      case "disk-pv":
        return demoPlan(name, { workloads: ["disk", "pvdisk"], cmdline: { disk: `mib=${diskMiB(options)}`, pvdisk: `mib=${diskMiB(options)}` } }, diskVsPv);
      case "netfront":
        return {
          name,
          jobs: [{ kind: "netfront", count: netCount(options) }],
          assemble: (results) => {
            const r = results[0];
            if (r?.kind !== "netfront") throw new Error("vtlab bug: a tour job's result out of order");
            return netfront(r.reports);
          },
        };
      case "iommu":
        return demoPlan(name, { workloads: ["nvme", "iommu"], cmdline: { nvme: `mib=${diskMiB(options)}` } }, iommu);
      case "linux-boot":
        return { name, jobs: [], assemble: () => linuxBoot() };
    }
  };
  return TOUR_SCENARIOS.filter((name) => selected.includes(name)).map(plan);
}

/** Run the tour's scenarios (default all), in tour order, one job after another in this thread. */
export function runTour(options: TourOptions): TourResult {
  const plans = planTour(options);
  const scenarios: TourScenarioResult[] = [];
  for (const p of plans) {
    options.onProgress?.(`[vtlab] tour ${scenarios.length + 1}/${plans.length}: ${p.name}`);
    const s = p.assemble(p.jobs.map((job) => runTourJob(options.kernel, job, options)));
    scenarios.push(s);
    options.onScenario?.(s, scenarios.length - 1);
  }
  return tourResult(scenarios);
}

/** The tour's result from its scenarios' (ok: every check holds). */
export function tourResult(scenarios: readonly TourScenarioResult[]): TourResult {
  return { scenarios, ok: scenarios.every((s) => s.checks.every((c) => c.holds)) };
}

/** Parse `--scenario NAME[,NAME]`: the names, or an error naming the unknown one. */
export function parseScenarios(text: string): TourScenarioName[] | string {
  const names: TourScenarioName[] = [];
  for (const n of text.split(",")) {
    if (!(TOUR_SCENARIOS as readonly string[]).includes(n)) return `unknown scenario "${n}" (known: ${TOUR_SCENARIOS.join(", ")})`;
    names.push(n as TourScenarioName);
  }
  return names;
}

/** One check as `vtlab demo` prints it: "statement: yes (detail)". */
export function formatCheck(c: TourCheck): string {
  return `${c.statement}: ${c.holds ? "yes" : "NO"} (${c.detail})`;
}

/** One scenario as text: its number, title, claim, note, figures and checks. */
export function formatScenario(s: TourScenarioResult, index: number): string {
  const out: string[] = [`== ${index + 1}. ${s.title} (${s.name}) ==`, `claim: ${s.claim}`];
  if (s.note !== null) out.push(`note: ${s.note}`);
  for (const f of s.figures) {
    out.push("", `${f.title} [${f.unit}]`);
    const width = Math.max(0, ...f.bars.map((b) => b.label.length));
    for (const b of f.bars) out.push(`  ${b.label.padEnd(width)}  ${formatValue(b.value, f.digits)}`);
  }
  if (s.checks.length > 0) out.push("", "does the run bear it out?", ...s.checks.map((c) => `  ${formatCheck(c)}`));
  return out.join("\n");
}

/** The tour's last line: how many checks hold, which failed, which scenarios are not available. */
export function formatTourSummary(result: TourResult): string {
  const all = result.scenarios.flatMap((s) => s.checks);
  const failed = all.filter((c) => !c.holds);
  const skipped = result.scenarios.filter((s) => !s.available).map((s) => s.name);
  return `tour: ${all.length - failed.length} of ${all.length} checks hold${failed.length > 0 ? `, ${failed.length} FAILED (${failed.map((c) => c.statement).join("; ")})` : ""}${skipped.length > 0 ? `; not yet available: ${skipped.join(", ")}` : ""}`;
}

/** The tour as text: each scenario (`formatScenario`), then the summary line. */
export function formatTour(result: TourResult): string {
  return [...result.scenarios.map(formatScenario), formatTourSummary(result)].join("\n\n");
}
