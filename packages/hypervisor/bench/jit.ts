/**
 * The block compiler's effect (JSON lines): guest MIPS of the reference `bench` guest (CRC-32, a
 * sieve and a sort, gcc -O2) and of the reference kernel's `compute` workload, each in a domain on
 * EPT (hap=1) and on shadow paging (hap=0), with @vtlab/cpu-vmx's block compiler off
 * (VTLAB_JIT=0: blocks that call the interpreter's handlers) and on, and the ratio on/off.
 * Wall times are measured, never asserted.
 *
 * Which figure this is: the steady one. Every run is a fresh domain in this process, and the host
 * engine (V8) keeps optimising over the first domains: the generated code in the first two or
 * three, then the interpreter's and the hypervisor's rarely run paths one by one (the bench guest
 * on EPT, per CPU second, in one process: 43, 252, 257, 364, 515, 528, 406, 609, 410, 632, 642,
 * 675, ... 780 at the 18th), so each configuration first runs VTLAB_BENCH_WARMUP (default 8)
 * unmeasured runs of the measured size, then VTLAB_BENCH_REPEAT (default 3) measured ones, and
 * the figure is their median. `.first-run` is the first of the warm-up runs: what one short run in
 * a process that ran other configurations before sees (the engine's compilation included).
 * VTLAB_BENCH_ITERATIONS sets the bench guest's iteration count (default 2). Each figure is also
 * given per CPU second of this process (`.cpu`: instructions over `process.cpuUsage()`, user and
 * system, which includes the engine's compiler and GC threads), which moves far less than wall
 * time on a shared machine. (`pnpm bench` runs this through turbo, which passes these variables
 * through: see turbo.json.)
 */
import { readFileSync } from "node:fs";
import { report } from "@vtlab/bench-harness";
import { guestImageUrl, referenceKernelUrl } from "@vtlab/guests";
import { Hypervisor } from "@vtlab/hypervisor";

const benchGuest = new Uint8Array(readFileSync(guestImageUrl("bench")));
const kernel = new Uint8Array(readFileSync(referenceKernelUrl()));
const iterations = Number(process.env.VTLAB_BENCH_ITERATIONS ?? 2);
const repeat = Math.max(1, Number(process.env.VTLAB_BENCH_REPEAT ?? 3));
const warmup = Math.max(1, Number(process.env.VTLAB_BENCH_WARMUP ?? 8));

interface Run {
  mips: number;
  cpuMips: number;
}

/** Boot `image` in a fresh host with the compiler on or off; guest instructions per wall (and CPU) microsecond. */
function mips(image: Uint8Array, cmdline: string, hap: boolean, jit: boolean): Run {
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
    return { mips: d.instructions / ms / 1000, cpuMips: d.instructions / (cpu.user + cpu.system) };
  } finally {
    if (saved === undefined) delete process.env.VTLAB_JIT;
    else process.env.VTLAB_JIT = saved;
  }
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

const workloads = [
  { name: "bench-guest", image: benchGuest, cmdline: `iterations=${iterations}` },
  { name: "compute", image: kernel, cmdline: "workload=compute" },
];
const round = (v: number) => Math.round(v * 10) / 10;
for (const w of workloads) {
  for (const hap of [true, false]) {
    const mode = hap ? "ept" : "shadow";
    const figures: Record<string, number> = {};
    for (const jit of [false, true]) {
      const name = `hypervisor.guest-mips.${w.name}.${mode}.jit-${jit ? "on" : "off"}`;
      let first: Run | undefined;
      for (let k = 0; k < warmup; k++) {
        const r = mips(w.image, w.cmdline, hap, jit); // warm-up (the host engine's JIT)
        first ??= r;
      }
      const runs: Run[] = [];
      for (let k = 0; k < repeat; k++) runs.push(mips(w.image, w.cmdline, hap, jit));
      const steady = median(runs.map((r) => r.mips));
      figures[jit ? "on" : "off"] = steady;
      report({ name, value: round(steady), unit: `MIPS (median of ${repeat} after ${warmup} warm-up runs)` });
      report({ name: `${name}.cpu`, value: round(median(runs.map((r) => r.cpuMips))), unit: "MIPS (per CPU second, median)" });
      report({ name: `${name}.first-run`, value: round((first as Run).mips), unit: "MIPS (the first run of this configuration)" });
    }
    report({ name: `hypervisor.guest-mips.${w.name}.${mode}.jit-ratio`, value: Math.round((figures.on! / figures.off!) * 100) / 100, unit: "x (on / off, steady)" });
  }
}
