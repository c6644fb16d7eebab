/**
 * The tour worker: `vtlab demo`'s tour (@vtlab/demo/tour's runTour) on the reference kernel, one
 * scenario after another, posting each scenario's claim, figures and computed checks as soon as
 * it has run. It runs in a worker of its own, so the machine worker and the page stay responsive.
 */
import { runTour, type TourScenarioResult } from "@vtlab/demo/tour";
import type { FromTourWorker, TourScenarioView, ToTourWorker } from "./protocol.js";

const scope = self as unknown as {
  postMessage(message: FromTourWorker): void;
  onmessage: ((ev: MessageEvent<ToTourWorker>) => void) | null;
};

/** The scenario as the page shows it: plain data only (its machine reports stay here). */
function view(s: TourScenarioResult): TourScenarioView {
  return {
    name: s.name,
    title: s.title,
    claim: s.claim,
    available: s.available,
    note: s.note,
    figures: s.figures.map((f) => ({ title: f.title, unit: f.unit, digits: f.digits, bars: f.bars.map((b) => ({ label: b.label, value: b.value })) })),
    checks: s.checks.map((c) => ({ statement: c.statement, holds: c.holds, detail: c.detail })),
  };
}

scope.onmessage = async (ev: MessageEvent<ToTourWorker>) => {
  const msg = ev.data;
  let kernel: Uint8Array;
  try {
    const res = await fetch(msg.kernelUrl);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    kernel = new Uint8Array(await res.arrayBuffer());
  } catch (e) {
    scope.postMessage({ type: "error", message: `kernel image ${msg.kernelUrl}: ${e instanceof Error ? e.message : String(e)}` });
    return;
  }
  const result = runTour({
    kernel,
    ...(msg.quick ? { sizes: QUICK_SIZES, shadowEptWorkloads: ["ptemod", "compute"] } : {}),
    onProgress: (line) => scope.postMessage({ type: "progress", line }),
    onScenario: (s, index) => scope.postMessage({ type: "scenario", index, scenario: view(s) }),
  });
  scope.postMessage({ type: "done", ok: result.ok });
};

/**
 * The page's quick tour: the reference kernel's workloads made small (its `key=N` parameters,
 * packages/guests/README.md), so the whole tour takes seconds; the claims' checks are computed
 * from these runs as from the full ones.
 */
const QUICK_SIZES = { ptemodIterations: 100, forkwaitForks: 20, computeIterations: 50_000, diskMiB: 1, netCount: 2 } as const;
