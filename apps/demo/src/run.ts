/**
 * What the `vtlab` command does: boot machines from config files (`run`, through the toolstack,
 * so that each config's `on_crash` is applied) and the side-by-side demonstration (`demo`), with
 * a progress line on long runs and a statistics table at the end. The parts without file access
 * are in run-core.ts (re-exported here); this module adds those that read files.
 */
import { readFileSync } from "node:fs";
import { referenceKernelUrl } from "@vtlab/guests";
import { Hypervisor, SPARSE_HOST_MEMORY_MIB, Toolstack, type CrashRecord, type IommuOption, type RunResult } from "@vtlab/hypervisor";
import { hostPciDevices, machineResources, readMachineConfig, truncateSerialFile } from "./machines.js";
import { progress, pvIo, runDemoOn, runReport, type DemoOptions, type DemoResult, type RunOptions, type RunReport } from "./run-core.js";

export * from "./run-core.js";

/** The reference kernel image's bytes (@vtlab/guests' `referenceKernelUrl`, read from the file). */
export function readReferenceKernel(): Uint8Array {
  return new Uint8Array(readFileSync(referenceKernelUrl()));
}

/** `runDemoOn` with the reference kernel read from its file. */
export function runDemo(options: DemoOptions = {}): DemoResult {
  return runDemoOn(readReferenceKernel(), options);
}

export interface RunMachinesOptions extends RunOptions {
  /** The host IOMMU (default strict remapping; false: `iommu = 0`, no remapping). */
  readonly iommu?: IommuOption;
  /** Each crash, once the toolstack has applied the machine's `on_crash`. */
  readonly onCrash?: (record: CrashRecord) => void;
  /** How the run ended, with the names of the domains left blocked for good (`RunResult.blockedDomains`). */
  readonly onEnd?: (result: RunResult, blocked: readonly string[]) => void;
  /** Host-side problems that do not stop the run: a serial file whose writes fail (its text is dropped and counted). */
  readonly onWarning?: (message: string) => void;
}

/**
 * Boot every config file in one host, through a `Toolstack` (so each config's `on_crash` is
 * applied between scheduler slices, as in `vtlab shell`), and run until nothing can run or the
 * budget is spent. One report per config file, in order, destroyed machines included; every
 * domain left is destroyed (its disks closed) before this returns.
 */
export function runMachines(files: readonly string[], options: RunMachinesOptions = {}): RunReport[] {
  // A sparse host (SPARSE_HOST_MEMORY_MIB): machine memory costs only what the machines touch.
  const hv = new Hypervisor({ memoryMiB: SPARSE_HOST_MEMORY_MIB, pciDevices: hostPciDevices(), ...(options.iommu !== undefined ? { iommu: options.iommu } : {}) });
  const firstLine = new Map<string, number>();
  const t0 = performance.now();
  const onConsole = (name: string, text: string) => {
    if (!firstLine.has(name)) firstLine.set(name, performance.now() - t0);
    options.onConsole?.(name, text);
  };
  const onCrash = options.onCrash;
  const toolstack = new Toolstack(hv, {
    resources: (config, file) => machineResources(file, config, onConsole, options.onWarning),
    ...(onCrash !== undefined ? { onCrash } : {}),
  });
  try {
    for (const f of files) {
      const config = readMachineConfig(f);
      truncateSerialFile(f, config);
      toolstack.create(config, f);
    }
    const result = toolstack.run({ ...(options.maxInstructions !== undefined ? { maxInstructions: options.maxInstructions } : {}), onSlice: progress(hv, t0, options.onProgress) });
    options.onEnd?.(result, blockedNames(toolstack, result));
    const wall = (performance.now() - t0) / 1000;
    return toolstack.history.map((m) => runReport(hv, m, wall, firstLine.get(m.config.name) ?? null, pvIo(toolstack, m.domain.id)));
  } finally {
    toolstack.destroyAll();
  }
}

/** The names of the domains a run left blocked for good (RunResult.blockedDomains), in domid order. */
export function blockedNames(toolstack: Toolstack, result: RunResult): string[] {
  const ids = new Set(result.blockedDomains ?? []);
  return toolstack.domains.filter((m) => ids.has(m.domain.id)).map((m) => m.domain.name);
}

/** One line saying why a run ended: the budget, or every domain finished or blocked for good. */
export function runEndLine(result: RunResult, blocked: readonly string[]): string {
  if (result.reason === "budget") return "instruction budget spent";
  if (result.reason === "stopped") return "stopped";
  return blocked.length > 0 ? `every domain left is blocked with no deliverable event (${blocked.join(", ")})` : "no domain can run";
}
