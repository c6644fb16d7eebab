/**
 * `vtlab demo`'s wall time (JSON lines): the tour's scenarios one by one, in this process, as
 * `vtlab demo` runs them (linux-boot only when its cached kernel is there: it is listed, not run,
 * otherwise), and their total. Wall times are measured, never asserted.
 */
import { report } from "@vtlab/bench-harness";
import { runTour, TOUR_SCENARIOS } from "../src/index.js";

let total = 0;
let instructions = 0;
for (const name of TOUR_SCENARIOS) {
  const t0 = performance.now();
  const r = runTour({ scenarios: [name] });
  const s = (performance.now() - t0) / 1000;
  const scenario = r.scenarios[0]!;
  if (!scenario.available) continue;
  if (!r.ok) throw new Error(`vtlab demo --scenario ${name} did not pass`);
  const n = scenario.reports.reduce((sum, m) => sum + m.instructions, 0);
  total += s;
  instructions += n;
  report({ name: `demo.tour.${name}.wall`, value: Math.round(s * 100) / 100, unit: "s" });
  report({ name: `demo.tour.${name}.guest-mips`, value: Math.round(n / s / 1e5) / 10, unit: "MIPS" });
}
report({ name: "demo.tour.total.wall", value: Math.round(total * 100) / 100, unit: "s (every available scenario, one after another)" });
report({ name: "demo.tour.total.guest-instructions", value: instructions, unit: "instructions" });
