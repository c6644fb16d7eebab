/**
 * Paging-heavy workloads of the reference kernel per MMU (JSON lines): `ptemod` (every iteration
 * maps 64 pages on demand and unmaps them: 128 PTE writes, 64 INVLPGs) and `forkwait` (fork,
 * copy-on-write, exit, wait), each on shadow paging and on EPT: wall and CPU time of the run,
 * the #PF exits (EXIT_REASON_EXCEPTION_NMI, shadow paging's #PF intercept) and paging exits
 * (#PF, CR access, INVLPG, EPT violation and misconfiguration), exits per second of CPU time,
 * and the shadow code's TLB flushes. CPU time (process.cpuUsage) is the figure to compare on
 * a loaded machine; wall time is what a user waits.
 */
import { readFileSync } from "node:fs";
import { report } from "@vtlab/bench-harness";
import { referenceKernelUrl } from "@vtlab/guests";
import { Hypervisor } from "@vtlab/hypervisor";

const kernel = new Uint8Array(readFileSync(referenceKernelUrl()));

const WORKLOADS = [
  { name: "ptemod", cmdline: "workload=ptemod iterations=500 pages=64", warmup: "workload=ptemod iterations=20 pages=64" },
  { name: "forkwait", cmdline: "workload=forkwait forks=500", warmup: "workload=forkwait forks=20" },
] as const;

/** Paging-related basic exit reasons, by exitReasonName's names. */
const PAGING = ["ExceptionOrNmi", "CrAccess", "Invlpg", "EptViolation", "EptMisconfig"] as const;

function runOnce(cmdline: string, hap: boolean) {
  const hv = new Hypervisor({ memoryMiB: 512 });
  const d = hv.createDomain({ name: "paging", memoryMiB: 128, hap, kernel, cmdline });
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  hv.run();
  const wallMs = performance.now() - t0;
  const c = process.cpuUsage(c0);
  if (d.exitCode !== 0) throw new Error(`${cmdline} on ${hap ? "ept" : "shadow"} did not pass (exit ${String(d.exitCode)})`);
  const s = d.stats();
  const byReason = s.exitsByReason as Record<string, number | undefined>;
  const pagingExits = PAGING.reduce((n, r) => n + (byReason[r] ?? 0), 0);
  return { wallMs, cpuMs: (c.user + c.system) / 1000, instructions: s.instructions, pfExits: byReason.ExceptionOrNmi ?? 0, pagingExits, exits: s.vmExits, tlbFlushes: s.shadow?.tlbFlushes };
}

for (const w of WORKLOADS) {
  for (const hap of [false, true]) {
    const mode = hap ? "ept" : "shadow";
    runOnce(w.warmup, hap); // warm-up (JIT)
    const r = runOnce(w.cmdline, hap);
    const key = `hypervisor.paging.${w.name}.${mode}`;
    report({ name: `${key}.wall`, value: Math.round(r.wallMs), unit: "ms" });
    report({ name: `${key}.cpu`, value: Math.round(r.cpuMs), unit: "ms (process CPU time)" });
    report({ name: `${key}.guest-instructions`, value: r.instructions, unit: "instructions" });
    report({ name: `${key}.pf-exits`, value: r.pfExits, unit: "exits (#PF intercept)" });
    report({ name: `${key}.paging-exits`, value: r.pagingExits, unit: "exits (#PF, CR access, INVLPG, EPT)" });
    report({ name: `${key}.exits-per-cpu-second`, value: Math.round(r.exits / (r.cpuMs / 1000)), unit: "exits/s (all reasons)" });
    if (r.tlbFlushes !== undefined) report({ name: `${key}.tlb-flushes`, value: r.tlbFlushes, unit: "flushes (shadow code)" });
  }
}
