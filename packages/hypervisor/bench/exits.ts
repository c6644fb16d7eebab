/**
 * CPUID exits per CPU second and per wall second (best of VTLAB_BENCH_REPEAT runs, default 5),
 * EPT and shadow: the CPUID loop of bench/run.ts, for measuring steps on the exit path.
 */
import { Hypervisor } from "@vtlab/hypervisor";
import { tinyKernel } from "../test/tiny-kernel.js";

const CPUID_LOOP = "be400d0300" + "31c0" + "0fa2" + "4e" + "75f9" + "cc";
const CPUID_EXITS = 200_000;
const repeat = Number(process.env.VTLAB_BENCH_REPEAT ?? 5);
const modes = (process.env.VTLAB_BENCH_MODES ?? "ept,shadow").split(",");

function once(hap: boolean): { wall: number; cpu: number } {
  const hv = new Hypervisor({ memoryMiB: 64 });
  const d = hv.createDomain({ name: "cpuid", memoryMiB: 8, hap, kernel: tinyKernel(CPUID_LOOP) });
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  hv.run();
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  const exits = d.stats().exitsByReason.Cpuid ?? 0;
  if (exits !== CPUID_EXITS) throw new Error(`${exits} CPUID exits`);
  return { wall: exits / wall, cpu: exits / ((c.user + c.system) / 1e6) };
}

for (const mode of modes) {
  const hap = mode === "ept";
  once(hap);
  let bw = 0;
  let bc = 0;
  const all: string[] = [];
  for (let i = 0; i < repeat; i++) {
    const r = once(hap);
    bw = Math.max(bw, r.wall);
    bc = Math.max(bc, r.cpu);
    all.push(`${Math.round(r.cpu / 1000)}`);
  }
  console.log(JSON.stringify({ name: `hypervisor.cpuid-exits.${mode}`, perWallSecond: Math.round(bw), perCpuSecond: Math.round(bc), cpuRunsK: all.join(",") }));
}
