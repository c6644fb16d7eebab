/**
 * The tour (`runTour`, `vtlab demo`): each scenario's checks computed from short runs (the
 * reference kernel's size parameters made small), the Linux boot listed as not available.
 * The command line and the HTML report are in test/tour-cli.test.ts.
 */
import { describe, expect, it } from "vitest";
import { runTour, type TourResult, type TourScenarioResult } from "@vtlab/demo";
import { tourProcess } from "./vtlab-process.js";

const bar = (s: TourScenarioResult, figure: string, label: string) => {
  const f = s.figures.find((x) => x.title.startsWith(figure));
  expect(f, figure).toBeDefined();
  const b = f!.bars.find((x) => x.label === label);
  expect(b, `${figure}: ${label}`).toBeDefined();
  return b!.value;
};

const expectAllHold = (s: TourScenarioResult) => {
  expect(s.available).toBe(true);
  expect(s.checks.length).toBeGreaterThan(0);
  for (const c of s.checks) expect({ statement: c.statement, detail: c.detail, holds: c.holds }).toEqual({ statement: c.statement, detail: c.detail, holds: true });
};

// The tours that boot machines run in a child process (vtlab-process.ts), so that this worker
// stays free while they run on a loaded machine.
describe("vtlab demo: the tour of the seeds", () => {
  it("shadow-ept, ptemod: EPT has fewer paging exits per PT write (none) and takes less modelled time", { timeout: 300_000 }, async () => {
    const { scenarios, ok } = await tourProcess<TourResult>({ scenarios: ["shadow-ept"], shadowEptWorkloads: ["ptemod"], sizes: { ptemodIterations: 20 } });
    expect(scenarios.map((s) => s.name)).toEqual(["shadow-ept"]);
    const [s] = scenarios as [TourScenarioResult];
    expectAllHold(s);
    expect(ok).toBe(true);
    expect(s.checks.map((c) => c.statement)).toEqual([
      "every machine (full and half runs) ran to the end and exited 0",
      "ptemod: EPT has fewer paging exits per guest PT write than shadow",
      "ptemod: EPT takes less modelled time than shadow",
      "ptemod: the same console output on shadow and EPT",
    ]);
    const shadow = bar(s, "ptemod: paging VM exits per guest page-table write", "ptemod shadow")!;
    const ept = bar(s, "ptemod: paging VM exits per guest page-table write", "ptemod ept")!;
    // Shadow paging emulates the guest's PTE writes (at least one exit each); EPT takes none.
    expect(shadow).toBeGreaterThanOrEqual(1);
    expect(ept).toBeLessThan(0.1);
    expect(s.checks[1]!.detail).toMatch(/^[\d.,]+ vs [\d.,]+$/);
    // The figures come from the runs: the full-size machines are the reports.
    expect(s.reports.map((r) => r.name)).toEqual(["ptemod-shadow", "ptemod-ept"]);
    expect(bar(s, "Modelled time of the whole run", "ptemod ept")).toBe(s.reports[1]!.modelledMs);
  });

  it("shadow-ept, forkwait and compute: more paging exits per fork on shadow; compute near-equal once boot cancels out", { timeout: 300_000 }, async () => {
    const { scenarios } = await tourProcess<TourResult>({ scenarios: ["shadow-ept"], shadowEptWorkloads: ["compute", "forkwait"], sizes: { forkwaitForks: 20, computeIterations: 100_000 } });
    const [s] = scenarios as [TourScenarioResult];
    expectAllHold(s);
    expect(s.reports.map((r) => r.name)).toEqual(["forkwait-shadow", "forkwait-ept", "compute-shadow", "compute-ept"]);
    expect(bar(s, "forkwait: paging VM exits per fork", "forkwait shadow")!).toBeGreaterThan(10 * Math.max(bar(s, "forkwait: paging VM exits per fork", "forkwait ept")!, 0.01));
    const ce = bar(s, "compute: modelled time of the workload alone", "compute ept")!;
    const cs = bar(s, "compute: modelled time of the workload alone", "compute shadow")!;
    expect(Math.abs(ce - cs) / Math.max(ce, cs)).toBeLessThanOrEqual(0.1);
    // Whole runs, boot included, are not near-equal: shadow paging's boot-time faults.
    expect(bar(s, "Modelled time of the whole run", "compute shadow")!).toBeGreaterThan(bar(s, "Modelled time of the whole run", "compute ept")!);
  });

  it("disk-pv at mib=1: fewer exits per disk MiB through blkfront on both paging modes, the same checksum", { timeout: 300_000 }, async () => {
    const { scenarios, ok } = await tourProcess<TourResult>({ scenarios: ["disk-pv"], sizes: { diskMiB: 1 } });
    const [s] = scenarios as [TourScenarioResult];
    expectAllHold(s);
    expect(ok).toBe(true);
    for (const mmu of ["shadow", "ept"]) expect(bar(s, "VM exits per disk MiB", `pvdisk ${mmu}`)!).toBeLessThan(bar(s, "VM exits per disk MiB", `disk ${mmu}`)!);
    expect(s.reports.every((r) => r.diskMiB >= 2)).toBe(true);
  });

  it("netfront at count=2: events, grant ops and exits per frame from the net-ping/net-pong pair; no emulated NIC, said so", { timeout: 300_000 }, async () => {
    const { scenarios } = await tourProcess<TourResult>({ scenarios: ["netfront"], sizes: { netCount: 2 } });
    const [s] = scenarios as [TourScenarioResult];
    expectAllHold(s);
    expect(s.note).toContain("no emulated NIC");
    // ARP and 2 echoes: 3 frames out and 3 in on each vif.
    expect(s.reports.map((r) => [r.name, r.ringRequests, r.grantOps])).toEqual([
      ["net-ping", 6, 6],
      ["net-pong", 6, 6],
    ]);
    expect(bar(s, "Event-channel events per frame", "net-ping")).toBeCloseTo(s.reports[0]!.events / 6, 10);
  });

  it("iommu at mib=1: the nvme machines fault-free; the attack blocked with the IOMMU and reaching the victim without", { timeout: 300_000 }, async () => {
    const { scenarios } = await tourProcess<TourResult>({ scenarios: ["iommu"], sizes: { diskMiB: 1 } });
    const [s] = scenarios as [TourScenarioResult];
    expectAllHold(s);
    expect(s.isolation.map((r) => r.iommu)).toEqual(["on", "off"]);
    expect(bar(s, "Victim pages changed by the attack", "with the IOMMU")).toBe(0);
    expect(bar(s, "Victim pages changed by the attack", "iommu = 0")!).toBeGreaterThan(0);
  });

  it("linux-boot is listed as not yet available, without figures or checks; scenarios run in tour order; bad sizes are errors", () => {
    const r = runTour({ scenarios: ["linux-boot"] });
    expect(r.ok).toBe(true);
    expect(r.scenarios).toMatchObject([{ name: "linux-boot", available: false, figures: [], checks: [], reports: [] }]);
    expect(r.scenarios[0]!.note).toContain("machines/linux.cfg");
    expect(() => runTour({ scenarios: ["linux-boot"], sizes: { diskMiB: 9 } })).toThrow(/sizes\.diskMiB: 9 is not an integer from 1 to 8/);
    expect(() => runTour({ scenarios: ["linux-boot"], sizes: { ptemodIterations: 1.5 } })).toThrow(/sizes\.ptemodIterations/);
  });

  it("a run that does not bear the claim out fails its checks (machines stopped by the budget)", { timeout: 300_000 }, async () => {
    const r = await tourProcess<TourResult>({ scenarios: ["netfront"], maxInstructions: 100_000 });
    expect(r.ok).toBe(false);
    const exit0 = r.scenarios[0]!.checks[0]!;
    expect(exit0.holds).toBe(false);
    expect(exit0.detail).toMatch(/net-ping: running/);
  });
});
