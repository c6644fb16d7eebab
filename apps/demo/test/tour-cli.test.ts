/**
 * `vtlab demo` as the tour on the command line: --scenario, --json, the exit status, and
 * --html (one self-contained file: the figures, inline SVG, no external reference), with the
 * scenarios that run in well under a second (netfront, linux-boot).
 */
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { escapeHtml, figureSvg, main, renderTourHtml, type TourResult } from "@vtlab/demo";

function vtlab(...argv: string[]) {
  let out = "";
  let err = "";
  const status = main(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  return { status, out, err };
}

describe("vtlab demo (the tour) on the command line", () => {
  it("--scenario errors for unknown names; --workloads with --scenario or --html is a usage error", () => {
    expect(vtlab("demo", "--scenario", "netfront,bogus")).toMatchObject({ status: 2, err: expect.stringContaining('--scenario: unknown scenario "bogus" (known: shadow-ept, disk-pv, netfront, iommu, linux-boot)') });
    expect(vtlab("demo", "--scenario")).toMatchObject({ status: 2, err: expect.stringContaining("--scenario needs a value") });
    expect(vtlab("demo", "--workloads", "compute", "--scenario", "netfront")).toMatchObject({ status: 2, err: expect.stringContaining("--scenario, --html and --jobs are the tour's") });
    expect(vtlab("demo", "--workloads", "compute", "--jobs", "2")).toMatchObject({ status: 2, err: expect.stringContaining("--scenario, --html and --jobs are the tour's") });
    expect(vtlab("demo", "--scenario", "linux-boot", "--jobs", "0")).toMatchObject({ status: 2, err: expect.stringContaining('--jobs: "0" is not a positive integer') });
    expect(vtlab("demo", "--scenario", "linux-boot", "--jobs", "two")).toMatchObject({ status: 2, err: expect.stringContaining('--jobs: "two" is not a positive integer') });
    expect(vtlab("demo", "--workloads", "compute", "--html", "x.html")).toMatchObject({ status: 2 });
    expect(vtlab("help").out).toContain("--scenario NAME[,NAME]");
  });

  it("--scenario netfront,linux-boot: each claim, its figures and checks, the tables, the summary; exit 0", { timeout: 60_000 }, () => {
    const r = vtlab("demo", "--scenario", "linux-boot,netfront");
    expect(r.status).toBe(0);
    // Tour order, whatever the order given.
    expect(r.out.indexOf("== 1. Netfront ping")).toBeGreaterThanOrEqual(0);
    expect(r.out).toContain("== 2. Booting Linux (linux-boot) ==");
    expect(r.out).toContain("claim: With PV network drivers");
    expect(r.out).toContain("Event-channel events per frame (sent plus delivered) [events per frame]");
    expect(r.out).toMatch(/each frame costs one grant copy in dom0 \(netback's copy\) and no more: yes \(net-ping 1\.00, net-pong 1\.00\)/);
    expect(r.out).toContain("Not in the tour yet: Debian's unmodified Linux boots to its /init");
    expect(r.out).toMatch(/net-ping\s+ept\s+exit 0/);
    expect(r.out).toMatch(/tour: 4 of 4 checks hold; not yet available: linux-boot\n$/);
    expect(r.err).toContain("[vtlab] tour 1/2: netfront\n");
    expect(r.err).toContain("[vtlab] tour 2/2: linux-boot\n");
  });

  it("--json: every figure and check; a check that fails makes the exit status 1", { timeout: 60_000 }, () => {
    const r = vtlab("demo", "--json", "--scenario", "netfront");
    expect(r.status).toBe(0);
    const result = JSON.parse(r.out) as TourResult;
    expect(result.ok).toBe(true);
    expect(result.scenarios.map((s) => s.name)).toEqual(["netfront"]);
    const s = result.scenarios[0]!;
    expect(s.figures.map((f) => f.unit)).toEqual(["events per frame", "grant ops per frame", "exits per frame"]);
    expect(s.figures[0]!.bars.map((b) => b.label)).toEqual(["net-ping", "net-pong"]);
    expect(s.checks.every((c) => c.holds)).toBe(true);
    const cut = vtlab("demo", "--scenario", "netfront", "--max-instructions", "100000");
    expect(cut.status).toBe(1);
    expect(cut.out).toMatch(/ran to the end and exited 0: NO \(net-ping: running/);
    expect(cut.out).toMatch(/checks hold, \d+ FAILED/);
  });

  it("--html FILE: one self-contained file with the figures as inline SVG, no external reference", { timeout: 60_000 }, () => {
    const dir = mkdtempSync(join(tmpdir(), "vtlab-tour-"));
    const file = join(dir, "report.html");
    const r = vtlab("demo", "--scenario", "netfront,linux-boot", "--html", file);
    expect(r.status).toBe(0);
    expect(r.err).toContain(`wrote the HTML report to ${file}`);
    const html = readFileSync(file, "utf8");
    expect(html.startsWith("<!DOCTYPE html>")).toBe(true);
    expect(html).toContain("Event-channel events per frame (sent plus delivered)");
    expect(html).toContain("<svg");
    expect(html).toContain("net-ping");
    expect(html).toContain("Booting Linux");
    expect(html).toContain("each frame costs one grant copy in dom0 (netback&#39;s copy) and no more: yes");
    expect(html).not.toMatch(/src\s*=\s*["']?http/i);
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/<link/i);
    expect(html).not.toMatch(/https?:/i);
    expect(html).not.toMatch(/url\(/i);
  });

  it("--html into a missing directory is a clear error naming the file, before anything runs", () => {
    const dir = mkdtempSync(join(tmpdir(), "vtlab-tour-"));
    const file = join(dir, "no", "such", "report.html");
    const r = vtlab("demo", "--scenario", "netfront", "--html", file);
    expect(r.status).toBe(2);
    expect(r.err).toContain(`vtlab demo: ${file}: cannot write the HTML report: directory ${join(dir, "no", "such")} does not exist`);
    // Nothing ran: no scenario printed.
    expect(r.out).toBe("");
    expect(existsSync(file)).toBe(false);
  });
});

describe("the HTML report", () => {
  it("escapeHtml: no markup survives, and the text comes back unescaped (property)", () => {
    const unescape = (s: string) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, "&");
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), (s) => {
        const e = escapeHtml(s);
        expect(/[<>"']/.test(e)).toBe(false);
        expect(unescape(e)).toBe(s);
      }),
    );
  });

  it("a figure with hostile labels and missing values: escaped, drawn as '-' without a bar", () => {
    const svg = figureSvg({ title: "t", unit: "u", digits: 1, bars: [{ label: '<script src="http://x">', value: 2 }, { label: "none", value: null }, { label: "nan", value: Number.NaN }] });
    expect(svg).not.toContain("<script");
    expect(svg).toContain("&lt;script src=&quot;http://x&quot;&gt;");
    expect(svg.match(/<rect /g)).toHaveLength(3);
    expect(svg).toContain('width="0.0"');
    expect(svg).toMatch(/>-<\/text>/);
    const html = renderTourHtml({ ok: false, scenarios: [{ name: "netfront", title: "T", claim: "c", available: true, note: null, figures: [], checks: [{ statement: "s", holds: false, detail: "1 vs 2" }], reports: [], isolation: [] }] }, new Date(0));
    expect(html).toContain("0 of 1 checks hold, 1 failed");
    expect(html).toContain('<li class="no">s: NO (1 vs 2)</li>');
    expect(html).toContain("1970-01-01T00:00:00.000Z");
  });
});
