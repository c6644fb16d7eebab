/**
 * The page: pick a machine, boot it in the worker (worker.ts), show its console in an xterm.js
 * terminal whose keys go to the guest's COM1, chart its exits, MIPS and modelled time, and drive
 * it with xl's pause, unpause, destroy and restart.
 */
import { Terminal } from "@xterm/xterm";
import "@xterm/xterm/css/xterm.css";
import "uplot/dist/uPlot.min.css";
import "./style.css";
import kernelUrl from "vtlab-kernel.elf?url";
import { LiveCharts } from "./charts.js";
import { setupWalkView } from "./walk-view.js";
import { WEB_WORKLOADS, XS_MAX_DEPTH, XS_MAX_NODES, machineName, type FromWorker, type MachineChoice, type StatsSample, type FromTourWorker, type StepSample, type ToTourWorker, type ToWorker, type TourScenarioView, type XsNode } from "./protocol.js";
import { hex } from "./step.js";

function byId<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`vtlab bug: the page has no #${id}`);
  return el as T;
}

const MACHINES: readonly MachineChoice[] = WEB_WORKLOADS.flatMap((workload) => [true, false].map((hap) => ({ workload, hap })));

const SUMMARIES: Record<string, string> = {
  compute: "four processes computing checksums: few exits, the MMU modes agree",
  ptemod: "page-table-heavy: shadow paging traps and emulates the guest's PTE writes, EPT does not",
  forkwait: "fork and wait: address spaces created and torn down",
  disk: "2 MiB through the emulated ATA disk: port-I/O exits for every sector",
  pvdisk: "the same 2 MiB through blkfront and blkback: a shared ring, grants and event channels, set up through xenstore by the toolstack",
  dmaattack: 'a hostile guest with the NVMe controller at 00:05.0 DMAs beyond its RAM at machine address 0x2100000: the IOMMU blocks and logs every attempt',
  nvme: 'the same 2 MiB through an NVMe controller assigned with pci = [ "00:04.0" ], DMA remapped by the VT-d IOMMU',
};

const term = new Terminal({ cols: 100, rows: 24, convertEol: true, fontSize: 13, scrollback: 5000 });
term.open(byId("terminal"));
const charts = new LiveCharts(byId("chart-exits"), byId("chart-mips"), byId("chart-modelled"), byId("chart-iotlb"), byId("chart-mmu"), byId("chart-io"));
const status = byId<HTMLParagraphElement>("status");
const counters = byId<HTMLTableElement>("counters");
const iommuSummary = byId("iommu-summary");
const iommuLog = byId("iommu-log");
const buttons = {
  boot: byId<HTMLButtonElement>("boot"),
  pause: byId<HTMLButtonElement>("pause"),
  unpause: byId<HTMLButtonElement>("unpause"),
  destroy: byId<HTMLButtonElement>("destroy"),
  restart: byId<HTMLButtonElement>("restart"),
  step: byId<HTMLButtonElement>("step"),
};
const stepNote = byId("step-note");
const stepView = byId<HTMLTableElement>("step-view");
let steps = 0;
const pvTable = byId<HTMLTableElement>("pv-table");
const xsSummary = byId("xenstore-summary");
const xsTree = byId("xenstore-tree");
/** The latest sample of each disk machine booted on this page (disk-ept, pvdisk-shadow, ...), for the side-by-side table. */
const diskMachines = new Map<string, StatsSample>();
/** xenstore paths the user opened or closed (the tree is redrawn as it changes). */
const xsOpen = new Map<string, boolean>();
let xsLast = "";

let selected: MachineChoice = MACHINES[0]!;
/** The machine the worker was last told to boot (the status line names it, whatever is selected since). */
let booted: MachineChoice = selected;
const list = byId("machine-list");
for (const m of MACHINES) {
  const label = document.createElement("label");
  const input = document.createElement("input");
  input.type = "radio";
  input.name = "machine";
  input.value = machineName(m);
  input.checked = m === selected;
  input.addEventListener("change", () => (selected = m));
  label.append(input, ` ${machineName(m)}`);
  label.title = SUMMARIES[m.workload] ?? "";
  list.append(label);
}

let worker: Worker | undefined;

function send(m: ToWorker): void {
  worker?.postMessage(m);
}

function setState(state: string, detail: string): void {
  status.textContent = `${machineName(booted)}: ${detail}`;
  status.dataset.state = state;
  const alive = state === "running" || state === "paused";
  buttons.pause.disabled = state !== "running";
  buttons.unpause.disabled = state !== "paused";
  buttons.destroy.disabled = !alive;
  buttons.restart.disabled = worker === undefined;
  buttons.step.disabled = state !== "paused";
}

/** Rows of header and value cells (textContent only: nothing from the worker is parsed as HTML). */
function fillTable(table: HTMLTableElement, rows: readonly (readonly [string, string])[]): void {
  table.tBodies[0]!.replaceChildren(
    ...rows.map(([k, v]) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.textContent = k;
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(th, td);
      return tr;
    }),
  );
}

function showStep(e: StepSample | null, note: string): void {
  if (e === null) {
    stepNote.textContent = note;
    return;
  }
  steps++;
  stepView.dataset.steps = String(steps);
  stepView.dataset.reason = e.reasonName;
  stepNote.textContent = `step ${steps}: VM exit ${(e.exitsBefore + 1).toLocaleString("en")} of the domain, vCPU ${e.vcpu}`;
  fillTable(stepView, [
    ["exit reason", `${e.reason} ${e.reasonName}`],
    ["qualification", e.decoded === "" ? hex(e.qualification) : `${hex(e.qualification)}: ${e.decoded}`],
    ["instruction length", String(e.instructionLength)],
    ["guest-linear address", e.guestLinear === null ? "-" : hex(e.guestLinear)],
    ["guest-physical address", e.guestPhysical === null ? "-" : hex(e.guestPhysical)],
    ["RIP", hex(e.rip)],
    ["RSP", hex(e.rsp)],
    ["RFLAGS", hex(e.rflags)],
    ["CR0", hex(e.cr0)],
    ["CR3", hex(e.cr3)],
    ["CR4", hex(e.cr4)],
  ]);
}

function showCounters(s: StatsSample): void {
  const rows: [string, string][] = [
    ["instructions", s.instructions.toLocaleString("en")],
    ["VM exits", s.vmExits.toLocaleString("en")],
    ["shadow page faults", s.shadowFaults === null ? "- (EPT)" : s.shadowFaults.toLocaleString("en")],
    ["emulated PT writes", s.emulatedPtWrites === null ? "- (EPT)" : s.emulatedPtWrites.toLocaleString("en")],
    ["guest walk references", s.walkReferences.toLocaleString("en")],
    ["EPT references", s.eptReferences.toLocaleString("en")],
    ["modelled ms", s.modelledMs.toFixed(2)],
  ];
  fillTable(counters, rows);
}

function showIommu(s: StatsSample): void {
  const io = s.iommu;
  if (io === null) return;
  const lookups = io.iotlbHits + io.iotlbMisses;
  const hit = lookups === 0 ? "-" : `${((io.iotlbHits / lookups) * 100).toFixed(1)} %`;
  iommuSummary.textContent = `remapping ${io.remapping}; devices ${io.devices.join(" ") || "-"}; ${io.dmaRequests.toLocaleString("en")} DMA requests; IOTLB hit rate ${hit} (${io.iotlbMisses.toLocaleString("en")} misses, each a second-level walk); ${io.faults.toLocaleString("en")} faults`;
  iommuLog.textContent = io.faultLog.join("\n");
  iommuLog.dataset.faults = String(io.faults);
}

function showPv(s: StatsSample): void {
  if (booted.workload !== "disk" && booted.workload !== "pvdisk") return;
  diskMachines.set(machineName(booted), s);
  const names = [...diskMachines.keys()].sort();
  const n = (v: number | undefined): string => (v === undefined ? "-" : v.toLocaleString("en"));
  const pv = (f: (p: NonNullable<StatsSample["pv"]>) => number) => (name: string) => {
    const p = diskMachines.get(name)!.pv;
    return p === null ? "-" : n(f(p));
  };
  const rows: [string, (name: string) => string][] = [
    ["I/O-instruction exits", (name) => n(diskMachines.get(name)!.ioExits)],
    ["VM exits, all reasons", (name) => n(diskMachines.get(name)!.vmExits)],
    ["blkif ring requests (blkback)", pv((p) => p.ringRequests)],
    ["blkif responses", pv((p) => p.responses)],
    ["sectors through the ring", pv((p) => p.sectors)],
    ["grant copies (GNTTABOP_copy)", pv((p) => p.grantCopies)],
    ["grant maps / unmaps", (name) => {
      const p = diskMachines.get(name)!.pv;
      return p === null ? "-" : `${n(p.grantMaps)} / ${n(p.grantUnmaps)}`;
    }],
    ["events sent by the guest (EVTCHNOP_send)", pv((p) => p.eventsSent)],
    ["events delivered to the guest", pv((p) => p.eventsDelivered)],
    ["upcalls injected", pv((p) => p.upcallsInjected)],
    ["blkback notifications", pv((p) => p.backendNotifications)],
  ];
  const head = document.createElement("tr");
  head.append(document.createElement("th"), ...names.map((name) => Object.assign(document.createElement("th"), { textContent: name, scope: "col" })));
  pvTable.tHead!.replaceChildren(head);
  pvTable.tBodies[0]!.replaceChildren(
    ...rows.map(([label, cell]) => {
      const tr = document.createElement("tr");
      tr.append(Object.assign(document.createElement("th"), { textContent: label, scope: "row" }), ...names.map((name) => Object.assign(document.createElement("td"), { textContent: cell(name) })));
      return tr;
    }),
  );
  pvTable.dataset.machines = String(names.length);
}

/** One xenstore node: a collapsible <details> with its children, or a leaf line. Text only (values are the guest's). */
function xsElement(node: XsNode, depth: number): HTMLElement {
  const label = node.value === null ? node.name : `${node.name} = `;
  if (node.children.length === 0) {
    const leaf = document.createElement("div");
    leaf.className = "leaf";
    leaf.dataset.path = node.path;
    leaf.append(label);
    if (node.value !== null) leaf.append(Object.assign(document.createElement("span"), { className: "value", textContent: JSON.stringify(node.value) }));
    return leaf;
  }
  const d = document.createElement("details");
  d.dataset.path = node.path;
  d.open = xsOpen.get(node.path) ?? depth < 5;
  const summary = document.createElement("summary");
  summary.append(label);
  if (node.value !== null) summary.append(Object.assign(document.createElement("span"), { className: "value", textContent: JSON.stringify(node.value) }));
  d.append(summary, ...node.children.map((c) => xsElement(c, depth + 1)));
  d.addEventListener("toggle", () => xsOpen.set(node.path, d.open));
  return d;
}

function showXenstore(root: XsNode, nodes: number, truncated: boolean): void {
  xsSummary.textContent = `${nodes.toLocaleString("en")} nodes, as dom0 reads them${truncated ? ` (cut: the view lists at most ${XS_MAX_NODES} nodes, ${XS_MAX_DEPTH} levels)` : ""}; refreshed while the machine runs`;
  const text = JSON.stringify(root);
  if (text === xsLast) return;
  xsLast = text;
  xsTree.replaceChildren(...root.children.map((c) => xsElement(c, 0)));
  xsTree.dataset.nodes = String(nodes);
}

function onMessage(ev: MessageEvent<FromWorker>): void {
  const m = ev.data;
  switch (m.type) {
    case "console":
      term.write(m.text);
      break;
    case "stats":
      charts.add(m.sample);
      showCounters(m.sample);
      showIommu(m.sample);
      showPv(m.sample);
      break;
    case "xenstore":
      showXenstore(m.root, m.nodes, m.truncated);
      break;
    case "state":
      setState(m.state, m.detail);
      break;
    case "step":
      showStep(m.exit, m.note);
      break;
    case "error":
      term.write(`\r\n[vtlab] ${m.message}\r\n`);
      setState("error", m.message);
      break;
  }
}

function fresh(): void {
  term.reset();
  iommuSummary.textContent = "no assigned device (boot nvme or dmaattack)";
  iommuLog.textContent = "";
  iommuLog.dataset.faults = "0";
  steps = 0;
  stepView.dataset.steps = "0";
  stepView.tBodies[0]!.replaceChildren();
  stepNote.textContent = "no step yet";
  xsSummary.textContent = "no toolstack (boot pvdisk)";
  xsTree.replaceChildren();
  xsTree.dataset.nodes = "0";
  xsLast = "";
  charts.clear();
}

buttons.boot.addEventListener("click", () => {
  worker?.terminate();
  fresh();
  worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
  worker.onmessage = onMessage;
  worker.onerror = (e) => {
    console.error(`vtlab worker: ${e.message}`);
    term.write(`\r\n[vtlab] worker error: ${e.message}\r\n`);
    setState("error", `worker error: ${e.message}`);
  };
  booted = selected;
  setState("booting", "booting");
  send({ type: "boot", machine: selected, kernelUrl: new URL(kernelUrl, document.baseURI).href });
});
buttons.pause.addEventListener("click", () => send({ type: "pause" }));
buttons.unpause.addEventListener("click", () => send({ type: "unpause" }));
buttons.destroy.addEventListener("click", () => send({ type: "destroy" }));
buttons.step.addEventListener("click", () => send({ type: "step" }));
buttons.restart.addEventListener("click", () => {
  fresh();
  send({ type: "restart" });
});
// The tour (tour-worker.ts): its scenarios as they come.
const tourList = byId("tour-list");
const tourStatus = byId("tour-status");
const tourRun = byId<HTMLButtonElement>("tour-run");
let tourWorker: Worker | undefined;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, className?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (className !== undefined) e.className = className;
  return e;
}

function showScenario(s: TourScenarioView, index: number): void {
  const holds = s.checks.every((c) => c.holds);
  const box = el("div", undefined, `scenario ${!s.available ? "unavailable" : holds ? "holds" : "fails"}`);
  box.dataset.name = s.name;
  box.dataset.available = String(s.available);
  box.append(el("h3", `${index + 1}. ${s.title}`), el("p", s.claim));
  if (s.note !== null) box.append(el("p", s.note, "note"));
  for (const f of s.figures) {
    const t = el("table");
    t.append(el("caption", `${f.title} (${f.unit})`));
    for (const b of f.bars) {
      const tr = el("tr");
      tr.append(el("th", b.label), el("td", b.value === null ? "-" : b.value.toFixed(f.digits)));
      t.append(tr);
    }
    box.append(t);
  }
  if (s.checks.length > 0) {
    const ul = el("ul");
    for (const c of s.checks) ul.append(el("li", `${c.statement}: ${c.holds ? "holds" : "does not hold"} (${c.detail})`, c.holds ? "holds" : "fails"));
    box.append(ul);
  }
  tourList.append(box);
  tourList.dataset.scenarios = String(tourList.children.length);
}

tourRun.addEventListener("click", () => {
  tourWorker?.terminate();
  tourList.replaceChildren();
  tourList.dataset.scenarios = "0";
  tourList.dataset.done = "false";
  delete tourList.dataset.ok;
  tourStatus.textContent = "running";
  tourWorker = new Worker(new URL("./tour-worker.ts", import.meta.url), { type: "module" });
  tourWorker.onmessage = (ev: MessageEvent<FromTourWorker>) => {
    const m = ev.data;
    switch (m.type) {
      case "progress":
        tourStatus.textContent = m.line.replace(/^\[vtlab\] /, "");
        break;
      case "scenario":
        showScenario(m.scenario, m.index);
        break;
      case "done":
        tourStatus.textContent = m.ok ? "done: every check holds" : "done: some checks do not hold";
        tourList.dataset.done = "true";
        tourList.dataset.ok = String(m.ok);
        break;
      case "error":
        tourStatus.textContent = m.message;
        break;
    }
  };
  tourWorker.onerror = (e) => {
    console.error(`vtlab tour worker: ${e.message}`);
    tourStatus.textContent = `tour worker error: ${e.message}`;
  };
  const msg: ToTourWorker = { kernelUrl: new URL(kernelUrl, document.baseURI).href, quick: byId<HTMLInputElement>("tour-quick").checked };
  tourWorker.postMessage(msg);
});

setupWalkView(byId<HTMLInputElement>("walk-gva"), byId<HTMLButtonElement>("walk-go"), byId<HTMLTableElement>("walk-grid"), byId("walk-result"));
// Keys typed at the terminal go to the guest's COM1 receive queue (CR as the terminal sends it).
term.onData((data) => send({ type: "input", bytes: [...new TextEncoder().encode(data)] }));

/** What the browser test reads: the terminal's buffer as text, line by line. */
declare global {
  interface Window {
    vtlab: { consoleText(): string };
  }
}
window.vtlab = {
  consoleText(): string {
    const b = term.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < b.length; i++) lines.push(b.getLine(i)?.translateToString(true) ?? "");
    return lines.join("\n");
  },
};
