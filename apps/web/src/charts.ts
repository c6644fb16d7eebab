/**
 * The page's live charts (uPlot): exits per second by reason, guest MIPS and modelled time, each
 * against the wall seconds since boot, and the IOTLB hit rate of a machine with an assigned device. Rates are differences of two successive samples' totals
 * over their wall interval. Every chart element carries `data-points`, the samples it holds.
 */
import uPlot from "uplot";
import type { StatsSample } from "./protocol.js";

/** Samples kept per chart (the oldest go first). */
export const CHART_POINTS = 600;

const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

/** One sample's rates against the previous one: what the charts plot. */
export interface Rates {
  readonly wallSeconds: number;
  readonly exitsPerSecond: Record<string, number>;
  readonly mips: number;
  readonly modelledMs: number;
  /** The memory virtualizer's work per second: shadow faults and emulated PT writes (shadow), EPT references (EPT). */
  readonly mmuPerSecond: Record<string, number>;
  /** Disk I/O per second: I/O-instruction exits (the emulated disk's path), and for the PV machine blkback's ring requests, grant operations and events. */
  readonly ioPerSecond: Record<string, number>;
}

/** The rates between two samples of one machine (null if no wall time passed between them). */
export function rates(prev: StatsSample, next: StatsSample): Rates | null {
  const dt = (next.wallMs - prev.wallMs) / 1000;
  if (!(dt > 0)) return null;
  const exitsPerSecond: Record<string, number> = {};
  for (const [reason, n] of Object.entries(next.exitsByReason)) exitsPerSecond[reason] = (n - (prev.exitsByReason[reason] ?? 0)) / dt;
  const mmuPerSecond: Record<string, number> = {};
  if (next.shadowFaults !== null) mmuPerSecond["shadow #PF"] = (next.shadowFaults - (prev.shadowFaults ?? 0)) / dt;
  if (next.emulatedPtWrites !== null) mmuPerSecond["emulated PT writes"] = (next.emulatedPtWrites - (prev.emulatedPtWrites ?? 0)) / dt;
  mmuPerSecond["EPT references"] = (next.eptReferences - prev.eptReferences) / dt;
  const ioPerSecond: Record<string, number> = { "I/O exits": (next.ioExits - prev.ioExits) / dt };
  const p = next.pv;
  const q = prev.pv;
  if (p !== null && q !== null) {
    ioPerSecond["ring requests"] = (p.ringRequests - q.ringRequests) / dt;
    ioPerSecond["grant ops"] = (p.grantCopies + p.grantMaps + p.grantUnmaps - (q.grantCopies + q.grantMaps + q.grantUnmaps)) / dt;
    ioPerSecond["events sent"] = (p.eventsSent - q.eventsSent) / dt;
    ioPerSecond["events delivered"] = (p.eventsDelivered - q.eventsDelivered) / dt;
  }
  return { wallSeconds: next.wallMs / 1000, ioPerSecond, exitsPerSecond, mips: (next.instructions - prev.instructions) / dt / 1e6, modelledMs: next.modelledMs, mmuPerSecond };
}

class Chart {
  private plot: uPlot | undefined;
  private labels: string[] = [];
  private readonly x: number[] = [];
  private ys: number[][] = [];

  constructor(
    private readonly el: HTMLElement,
    private readonly title: string,
    private readonly unit: string,
  ) {}

  /** Add one point: the value of each named series at `x` (series seen for the first time start at 0). */
  push(x: number, values: Record<string, number>): void {
    const names = Object.keys(values).sort();
    const fresh = names.filter((n) => !this.labels.includes(n));
    if (fresh.length > 0) {
      for (const _ of fresh) this.ys.push(this.x.map(() => 0));
      this.labels.push(...fresh);
      this.plot?.destroy();
      this.plot = undefined;
    }
    this.x.push(x);
    this.labels.forEach((label, i) => this.ys[i]!.push(values[label] ?? 0));
    if (this.x.length > CHART_POINTS) {
      this.x.shift();
      for (const y of this.ys) y.shift();
    }
    const data: uPlot.AlignedData = [this.x, ...this.ys];
    if (this.plot === undefined) {
      this.plot = new uPlot(
        {
          title: this.title,
          width: Math.max(320, this.el.clientWidth || 640),
          height: 200,
          scales: { x: { time: false } },
          axes: [{ label: "wall s" }, { label: this.unit, size: 70 }],
          series: [{ label: "wall s" }, ...this.labels.map((label, i) => ({ label, stroke: COLOURS[i % COLOURS.length]!, width: 1.5 }))],
        },
        data,
        this.el,
      );
    } else this.plot.setData(data);
    this.el.dataset.points = String(this.x.length);
  }

  clear(): void {
    this.plot?.destroy();
    this.plot = undefined;
    this.labels = [];
    this.x.length = 0;
    this.ys = [];
    this.el.dataset.points = "0";
  }
}

/** The three charts of the page. */
export class LiveCharts {
  private readonly exits: Chart;
  private readonly mips: Chart;
  private readonly modelled: Chart;
  private readonly iotlb: Chart;
  private readonly mmu: Chart;
  private readonly io: Chart;
  private prev: StatsSample | undefined;

  constructor(exits: HTMLElement, mips: HTMLElement, modelled: HTMLElement, iotlb: HTMLElement, mmu: HTMLElement, io: HTMLElement) {
    this.io = new Chart(io, "disk I/O per second (wall): I/O exits (emulated), blkif ring requests, grant operations, events (PV)", "per s");
    this.mmu = new Chart(mmu, "memory virtualization per second (wall): shadow faults and emulated PT writes, or EPT references", "per s");
    this.iotlb = new Chart(iotlb, "IOTLB hit rate since boot (the host VT-d unit, this domain's DMA)", "hit %");
    this.exits = new Chart(exits, "VM exits per second (wall) by reason", "exits/s");
    this.mips = new Chart(mips, "guest MIPS (instructions per wall microsecond)", "MIPS");
    this.modelled = new Chart(modelled, "modelled time (the host's simulated clock)", "modelled ms");
  }

  add(sample: StatsSample): void {
    // The hit rate is a ratio of totals: every sample has a point, the first one too.
    const io = sample.iommu;
    if (io !== null && io.iotlbHits + io.iotlbMisses > 0) this.iotlb.push(sample.wallMs / 1000, { "IOTLB hit %": (io.iotlbHits / (io.iotlbHits + io.iotlbMisses)) * 100 });
    const prev = this.prev;
    this.prev = sample;
    if (prev === undefined) return;
    const r = rates(prev, sample);
    if (r === null) return;
    this.exits.push(r.wallSeconds, r.exitsPerSecond);
    this.mips.push(r.wallSeconds, { MIPS: r.mips });
    this.modelled.push(r.wallSeconds, { "modelled ms": r.modelledMs });
    this.mmu.push(r.wallSeconds, r.mmuPerSecond);
    this.io.push(r.wallSeconds, r.ioPerSecond);
  }

  clear(): void {
    this.prev = undefined;
    this.exits.clear();
    this.mips.clear();
    this.modelled.clear();
    this.iotlb.clear();
    this.mmu.clear();
    this.io.clear();
  }
}
