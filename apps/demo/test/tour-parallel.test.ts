/**
 * The tour on worker threads (`runTourParallel`, what `vtlab demo` runs by default): the same
 * result as `runTour` one job after another (wall times and MIPS aside, which are measured),
 * scenarios handed over in tour order, progress named by machine, and a job that fails named
 * in the error that ends the tour.
 */
import { describe, expect, it } from "vitest";
import type { TourResult } from "@vtlab/demo";
import { tourProcess } from "./vtlab-process.js";

/** `x` without the measured fields (wall time, MIPS, time to the first console line). */
function unmeasured(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(unmeasured);
  if (x === null || typeof x !== "object") return x;
  return Object.fromEntries(Object.entries(x).filter(([k]) => k !== "wallSeconds" && k !== "mips" && k !== "firstLineMs").map(([k, v]) => [k, unmeasured(v)]));
}

const small = { sizes: { ptemodIterations: 20, forkwaitForks: 20, computeIterations: 100_000, diskMiB: 1, netCount: 2 } };

describe("vtlab demo on worker threads", () => {
  it("gives runTour's result, scenario by scenario in tour order, with progress named by machine", { timeout: 600_000 }, async () => {
    const [sequential, parallel] = await Promise.all([
      tourProcess<TourResult>(small),
      tourProcess<TourResult & { order: number[]; progress: string[] }>({ ...small, workers: 2 }),
    ]);
    expect(parallel.scenarios.map((s) => s.name)).toEqual(["shadow-ept", "disk-pv", "netfront", "iommu", "linux-boot"]);
    expect(parallel.order).toEqual([0, 1, 2, 3, 4]);
    expect(unmeasured(parallel.scenarios)).toEqual(unmeasured(sequential.scenarios));
    expect(parallel.ok).toBe(true);
    expect(sequential.ok).toBe(true);
    // Every scenario announced once, in order.
    expect(parallel.progress.filter((l) => l.includes(" tour "))).toEqual(["shadow-ept", "disk-pv", "netfront", "iommu", "linux-boot"].map((n, k) => `[vtlab] tour ${k + 1}/5: ${n}`));
    for (const l of parallel.progress.filter((x) => !x.includes(" tour "))) expect(l).toMatch(/^\[vtlab\] [a-z-]+: \d+\.\d s: /);
  });

  it("ends with an error naming the machines of the job that failed", { timeout: 300_000 }, async () => {
    const r = await tourProcess<{ error: { name: string; message: string } }>({ scenarios: ["netfront", "iommu"], workers: 2, brokenKernel: true });
    expect(r.error.name).toBe("TourJobError");
    // Every job of both scenarios has the broken kernel; which fails first depends on the workers' timing.
    expect(r.error.message).toMatch(/^(netfront|iommu): [^:]+ failed: .*not an ELF file/);
  });
});
