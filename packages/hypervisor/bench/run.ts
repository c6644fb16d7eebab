/**
 * Hypervisor benchmarks (JSON lines): guest MIPS of the reference kernel's `compute` workload in
 * a domain on EPT (VMX non-root, exits handled, APIC timer preemption), and the wall time from
 * createDomain to the guest's first console line (build + boot through the PVH entry, long-mode
 * switch, page tables, UART init), on EPT (hap=1) and on shadow paging (hap=0).
 */
import { readFileSync } from "node:fs";
import { report } from "@vtlab/bench-harness";
import { referenceKernelUrl } from "@vtlab/guests";
import { Hypervisor } from "@vtlab/hypervisor";

const kernel = new Uint8Array(readFileSync(referenceKernelUrl()));

function boot(cmdline: string, hap: boolean): { mips: number; instructions: number; firstLineMs: number; code: number | undefined } {
  const hv = new Hypervisor({ memoryMiB: 512 });
  const t0 = performance.now();
  let first = -1;
  const d = hv.createDomain({ name: "bench", memoryMiB: 128, hap, kernel, cmdline, onConsole: () => {
    if (first < 0) first = performance.now() - t0;
  } });
  const t1 = performance.now();
  hv.run();
  const ms = performance.now() - t1;
  return { mips: d.instructions / ms / 1000, instructions: d.instructions, firstLineMs: first, code: d.exitCode };
}

for (const hap of [true, false]) {
  const mode = hap ? "ept" : "shadow";
  boot("workload=compute iterations=100000", hap); // warm-up (JIT)
  const r = boot("workload=compute", hap);
  if (r.code !== 0) throw new Error(`compute on ${mode} did not pass (exit ${String(r.code)})`);
  report({ name: `hypervisor.guest-mips.compute.${mode}`, value: Math.round(r.mips * 10) / 10, unit: "MIPS" });
  report({ name: `hypervisor.guest-instructions.compute.${mode}`, value: r.instructions, unit: "instructions" });
  report({ name: `hypervisor.boot-to-first-console-line.${mode}`, value: Math.round(r.firstLineMs * 10) / 10, unit: "ms" });
}
