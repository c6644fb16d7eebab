/**
 * `vtlab demo --html FILE`: the tour as one self-contained HTML file (inline CSS, inline SVG
 * bar charts drawn here; no script, no font, no image, nothing fetched), so that it opens
 * offline and can be passed around.
 */
import { accessSync, constants, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { formatIsolation, formatReports } from "./run.js";
import { formatCheck, formatValue, type TourFigure, type TourResult, type TourScenarioResult } from "./tour.js";

/** The report file could not be written (the message names it and says why). */
export class HtmlReportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HtmlReportError";
  }
}

/** Text for HTML content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

// Chart geometry, in SVG user units.
const CHART_WIDTH = 720;
const LABEL_WIDTH = 170;
const VALUE_WIDTH = 110;
const BAR_HEIGHT = 20;
const BAR_GAP = 6;
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948"];

/** One figure as a horizontal bar chart (a missing value is drawn as "-" without a bar). */
export function figureSvg(f: TourFigure): string {
  const max = Math.max(0, ...f.bars.map((b) => (b.value !== null && Number.isFinite(b.value) ? b.value : 0)));
  const span = CHART_WIDTH - LABEL_WIDTH - VALUE_WIDTH;
  const height = f.bars.length * (BAR_HEIGHT + BAR_GAP) + BAR_GAP;
  // One colour per series: bars whose labels end in the same word ("shadow", "ept") share one.
  const series: string[] = [];
  const colour = (label: string) => {
    const key = label.split(" ").at(-1) ?? label;
    if (!series.includes(key)) series.push(key);
    return PALETTE[series.indexOf(key) % PALETTE.length]!;
  };
  const rows = f.bars.map((b, i) => {
    const y = BAR_GAP + i * (BAR_HEIGHT + BAR_GAP);
    const v = b.value !== null && Number.isFinite(b.value) && b.value > 0 ? b.value : 0;
    const w = max > 0 ? Math.max(v > 0 ? 1 : 0, (v / max) * span) : 0;
    const text = formatValue(b.value, f.digits);
    return [
      `<text x="${LABEL_WIDTH - 8}" y="${y + BAR_HEIGHT * 0.7}" text-anchor="end">${escapeHtml(b.label)}</text>`,
      `<rect x="${LABEL_WIDTH}" y="${y}" width="${w.toFixed(1)}" height="${BAR_HEIGHT}" fill="${colour(b.label)}"><title>${escapeHtml(`${b.label}: ${text} ${f.unit}`)}</title></rect>`,
      `<text x="${(LABEL_WIDTH + w + 6).toFixed(1)}" y="${y + BAR_HEIGHT * 0.7}">${escapeHtml(text)}</text>`,
    ].join("");
  });
  return `<svg class="chart" viewBox="0 0 ${CHART_WIDTH} ${height}" width="${CHART_WIDTH}" height="${height}" role="img" aria-label="${escapeHtml(`${f.title} (${f.unit})`)}">${rows.join("")}</svg>`;
}

function scenarioHtml(s: TourScenarioResult, index: number): string {
  const parts: string[] = [`<section id="${escapeHtml(s.name)}">`, `<h2>${index + 1}. ${escapeHtml(s.title)} <code>${escapeHtml(s.name)}</code></h2>`, `<p class="claim"><b>Claim.</b> ${escapeHtml(s.claim)}</p>`];
  if (s.note !== null) parts.push(`<p class="note">${escapeHtml(s.note)}</p>`);
  for (const f of s.figures) parts.push(`<figure><figcaption>${escapeHtml(f.title)} <span class="unit">[${escapeHtml(f.unit)}]</span></figcaption>${figureSvg(f)}</figure>`);
  if (s.checks.length > 0) {
    parts.push("<h3>Does the run bear it out?</h3>", "<ul class=\"checks\">");
    for (const c of s.checks) parts.push(`<li class="${c.holds ? "yes" : "no"}">${escapeHtml(formatCheck(c))}</li>`);
    parts.push("</ul>");
  }
  const tables = [s.reports.length > 0 ? formatReports(s.reports) : "", formatIsolation(s.isolation)].filter((t) => t !== "");
  if (tables.length > 0) parts.push(`<details><summary>Statistics tables</summary><pre>${escapeHtml(tables.join("\n\n"))}</pre></details>`);
  parts.push("</section>");
  return parts.join("\n");
}

const CSS = `body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.6rem}h2{font-size:1.25rem;border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2.5rem}
code{font-size:.85em;color:#555}.note{color:#555;font-style:italic}figure{margin:1rem 0}
figcaption{font-weight:600;margin-bottom:.3rem}.unit{font-weight:400;color:#666}
.chart{max-width:100%;height:auto;font-size:12px}.chart text{fill:#222}
.checks li.yes::marker{content:"\\2714  ";color:#2a7d2a}.checks li.no{color:#b00020;font-weight:600}
.checks li.no::marker{content:"\\2718  "}pre{font-size:11px;overflow-x:auto;background:#f6f6f6;padding:.5rem}
.summary{font-weight:600}.summary.no{color:#b00020}`;

/** The tour as one HTML document: title, summary, then each scenario's claim, charts, checks and tables. */
export function renderTourHtml(result: TourResult, generated: Date = new Date()): string {
  const all = result.scenarios.flatMap((s) => s.checks);
  const failed = all.filter((c) => !c.holds).length;
  const summary = `${all.length - failed} of ${all.length} checks hold${failed > 0 ? `, ${failed} failed` : ""}`;
  return [
    "<!DOCTYPE html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    "<title>vtlab demo: the tour of the seeds</title>",
    `<style>${CSS}</style>`,
    "</head>",
    "<body>",
    "<h1>vtlab demo: the tour of the seeds</h1>",
    `<p>Each scenario states a claim of the seeds, shows the figures of a run on vtlab's modelled Xen on Intel VT-x, and checks whether the run bears the claim out. Modelled times come from vtlab's cost model, not from hardware. Generated ${escapeHtml(generated.toISOString())}.</p>`,
    `<p class="summary ${failed > 0 ? "no" : "yes"}">${escapeHtml(summary)}</p>`,
    ...result.scenarios.map(scenarioHtml),
    "</body>",
    "</html>",
    "",
  ].join("\n");
}

/** Fail early, before a long run, when `file` cannot be created: its directory is missing or not writable. */
export function checkHtmlTarget(file: string): void {
  const dir = dirname(resolve(file));
  try {
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw new HtmlReportError(`${file}: cannot write the HTML report: directory ${dir} ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "does not exist" : `is not writable (${(e as Error).message})`}`);
  }
}

/** Write `renderTourHtml(result)` to `file`. */
export function writeTourHtml(file: string, result: TourResult): void {
  try {
    writeFileSync(file, renderTourHtml(result));
  } catch (e) {
    throw new HtmlReportError(`${file}: cannot write the HTML report (${(e as Error).message})`);
  }
}
