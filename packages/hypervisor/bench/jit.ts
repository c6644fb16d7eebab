/**
 * The block compiler's effect (JSON lines): guest MIPS of the reference `bench` guest (CRC-32, a
 * sieve and a sort, gcc -O2) and of the reference kernel's `compute` workload, each in a domain on
 * EPT (hap=1) and on shadow paging (hap=0), with @vtlab/cpu-vmx's block compiler off
 * (VTLAB_JIT=0: blocks that call the interpreter's handlers) and on, and the ratio on/off.
 * Wall times are measured, never asserted. VTLAB_BENCH_ITERATIONS sets the bench guest's
 * iteration count (default 2); VTLAB_BENCH_REPEAT runs each measured configuration that many
 * times and reports the best (default 1). Each figure is also given per CPU second of this
 * process (`.cpu`: instructions over `process.cpuUsage()`, user and system, which includes the
 * engine's compiler and GC threads), which moves far less than wall time on a shared machine.
 */
import { readFileSync } from "node:fs";
import { report } from "@vtlab/bench-harness";
import { guestImageUrl, referenceKernelUrl } from "@vtlab/guests";
import { Hypervisor } from "@vtlab/hypervisor";

const benchGuest = new Uint8Array(readFileSync(guestImageUrl("bench")));
const kernel = new Uint8Array(readFileSync(referenceKernelUrl()));
const iterations = Number(process.env.VTLAB_BENCH_ITERATIONS ?? 2);
const repeat = Math.max(1, Number(process.env.VTLAB_BENCH_REPEAT ?? 1));

/** Boot `image` in a fresh host with the compiler on or off; guest instructions per wall (and CPU) microsecond. */
function mips(image: Uint8Array, cmdline: string, hap: boolean, jit: boolean): { mips: number; cpuMips: number; instructions: number } {
  const saved = process.env.VTLAB_JIT;
  process.env.VTLAB_JIT = jit ? "1" : "0"; // read when the vCPU is created
  try {
    const hv = new Hypervisor({ memoryMiB: 512 });
    const d = hv.createDomain({ name: "jit-bench", memoryMiB: 128, hap, kernel: image, cmdline });
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    hv.run();
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(c0);
    if (d.exitCode !== 0) throw new Error(`${cmdline} on ${hap ? "ept" : "shadow"} (jit ${jit ? "on" : "off"}) did not pass: exit ${String(d.exitCode)}, ${d.state}`);
    return { mips: d.instructions / ms / 1000, cpuMips: d.instructions / (cpu.user + cpu.system), instructions: d.instructions };
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
      let best = { mips: 0, cpuMips: 0 };
      for (let k = 0; k < repeat; k++) {
        const r = mips(w.image, w.cmdline, hap, jit);
        best = { mips: Math.max(best.mips, r.mips), cpuMips: Math.max(best.cpuMips, r.cpuMips) };
      }
      figures[jit ? "on" : "off"] = best.mips;
      report({ name: `hypervisor.guest-mips.${w.name}.${mode}.jit-${jit ? "on" : "off"}`, value: round(best.mips), unit: "MIPS" });
      report({ name: `hypervisor.guest-mips.${w.name}.${mode}.jit-${jit ? "on" : "off"}.cpu`, value: round(best.cpuMips), unit: "MIPS (per CPU second)" });
    }
    report({ name: `hypervisor.guest-mips.${w.name}.${mode}.jit-ratio`, value: Math.round((figures.on! / figures.off!) * 100) / 100, unit: "x (on / off)" });
  }
}
