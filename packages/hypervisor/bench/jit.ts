/**
 * The block compiler's effect (JSON lines): guest MIPS of the reference `bench` guest (CRC-32, a
 * sieve and a sort, gcc -O2) and of the reference kernel's `compute` workload, each in a domain on
 * EPT (hap=1) and on shadow paging (hap=0), with @vtlab/cpu-vmx's block compiler off
 * (VTLAB_JIT=0: blocks that call the interpreter's handlers) and on, and the ratio on/off.
 * Wall times are measured, never asserted. VTLAB_BENCH_ITERATIONS sets the bench guest's
 * iteration count (default 2).
 */
import { readFileSync } from "node:fs";
import { report } from "@vtlab/bench-harness";
import { guestImageUrl, referenceKernelUrl } from "@vtlab/guests";
import { Hypervisor } from "@vtlab/hypervisor";

const benchGuest = new Uint8Array(readFileSync(guestImageUrl("bench")));
const kernel = new Uint8Array(readFileSync(referenceKernelUrl()));
const iterations = Number(process.env.VTLAB_BENCH_ITERATIONS ?? 2);

/** Boot `image` in a fresh host with the compiler on or off; guest instructions per wall microsecond. */
function mips(image: Uint8Array, cmdline: string, hap: boolean, jit: boolean): { mips: number; instructions: number } {
  const saved = process.env.VTLAB_JIT;
  process.env.VTLAB_JIT = jit ? "1" : "0"; // read when the vCPU is created
  try {
    const hv = new Hypervisor({ memoryMiB: 512 });
    const d = hv.createDomain({ name: "jit-bench", memoryMiB: 128, hap, kernel: image, cmdline });
    const t0 = performance.now();
    hv.run();
    const ms = performance.now() - t0;
    if (d.exitCode !== 0) throw new Error(`${cmdline} on ${hap ? "ept" : "shadow"} (jit ${jit ? "on" : "off"}) did not pass: exit ${String(d.exitCode)}, ${d.state}`);
    return { mips: d.instructions / ms / 1000, instructions: d.instructions };
  } finally {
    if (saved === undefined) delete process.env.VTLAB_JIT;
    else process.env.VTLAB_JIT = saved;
  }
}

const workloads = [
  { name: "bench-guest", image: benchGuest, cmdline: `iterations=${iterations}`, warm: "iterations=1" },
  { name: "compute", image: kernel, cmdline: "workload=compute", warm: "workload=compute iterations=100000" },
];
const round = (v: number) => Math.round(v * 10) / 10;
for (const w of workloads) {
  for (const hap of [true, false]) {
    const mode = hap ? "ept" : "shadow";
    const figures: Record<string, number> = {};
    for (const jit of [false, true]) {
      mips(w.image, w.warm, hap, jit); // warm-up (the host's JIT)
      const r = mips(w.image, w.cmdline, hap, jit);
      figures[jit ? "on" : "off"] = r.mips;
      report({ name: `hypervisor.guest-mips.${w.name}.${mode}.jit-${jit ? "on" : "off"}`, value: round(r.mips), unit: "MIPS" });
    }
    report({ name: `hypervisor.guest-mips.${w.name}.${mode}.jit-ratio`, value: Math.round((figures.on! / figures.off!) * 100) / 100, unit: "x (on / off)" });
  }
}
