/**
 * Hypervisor benchmarks (JSON lines): guest MIPS of the reference kernel's `compute` workload in
 * a domain on EPT (VMX non-root, exits handled, APIC timer preemption), and the wall time from
 * createDomain to the guest's first console line (build + boot through the PVH entry, long-mode
 * switch, page tables, UART init). Shadow-paging domains join when mmu-shadow is wired in.
 */
import { readFileSync } from "node:fs";
import { report } from "@vtlab/bench-harness";
import { referenceKernelUrl } from "@vtlab/guests";
import { Hypervisor } from "@vtlab/hypervisor";

const kernel = new Uint8Array(readFileSync(referenceKernelUrl()));

function boot(cmdline: string): { mips: number; instructions: number; firstLineMs: number; code: number | undefined } {
  const hv = new Hypervisor({ memoryMiB: 512 });
  const t0 = performance.now();
  let first = -1;
  const d = hv.createDomain({ name: "bench", memoryMiB: 128, kernel, cmdline, onConsole: () => {
    if (first < 0) first = performance.now() - t0;
  } });
  const t1 = performance.now();
  hv.run();
  const ms = performance.now() - t1;
  return { mips: d.instructions / ms / 1000, instructions: d.instructions, firstLineMs: first, code: d.exitCode };
}

boot("workload=compute iterations=100000"); // warm-up (JIT)
const r = boot("workload=compute");
if (r.code !== 0) throw new Error(`compute did not pass (exit ${String(r.code)})`);
report({ name: "hypervisor.guest-mips.compute.ept", value: Math.round(r.mips * 10) / 10, unit: "MIPS" });
report({ name: "hypervisor.guest-instructions.compute.ept", value: r.instructions, unit: "instructions" });
report({ name: "hypervisor.boot-to-first-console-line.ept", value: Math.round(r.firstLineMs * 10) / 10, unit: "ms" });
