/**
 * Hypervisor benchmarks (JSON lines): guest MIPS of the reference kernel's `compute` workload in
 * a domain on EPT (VMX non-root, exits handled, APIC timer preemption), and the wall time from
 * createDomain to the guest's first console line (build + boot through the PVH entry, long-mode
 * switch, page tables, UART init), on EPT (hap=1) and on shadow paging (hap=0); and MMIO exits
 * per second of wall time: a guest writing and reading the xAPIC TPR 100,000 times each, every
 * access an EPT violation or shadow #PF emulated by mmio.ts against the local APIC; and CPUID
 * exits per second of wall time: a 32-bit guest loop of 200,000 CPUIDs, each exit answered by
 * exits.ts (Xen's leaves) and the guest re-entered (the whole exit/entry path, VPID on).
 */
import { readFileSync } from "node:fs";
import { report } from "@vtlab/bench-harness";
import { referenceKernelUrl } from "@vtlab/guests";
import { Hypervisor } from "@vtlab/hypervisor";
import { MMIO_GUESTS } from "../test/mmio-guests.js";
import { tinyKernel } from "../test/tiny-kernel.js";

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

function mmioLoop(hap: boolean): { perSecond: number; exits: number } {
  const hv = new Hypervisor({ memoryMiB: 64 });
  const d = hv.createDomain({ name: "mmio", memoryMiB: 8, hap, kernel: tinyKernel(MMIO_GUESTS.loop) });
  const t0 = performance.now();
  hv.run();
  const ms = performance.now() - t0;
  if (d.state !== "shutdown") throw new Error(`the MMIO loop on ${hap ? "ept" : "shadow"} did not finish: ${d.crashReason ?? d.state}`);
  const exits = d.stats().mmioExits;
  return { perSecond: exits / (ms / 1000), exits };
}

for (const hap of [true, false]) {
  const mode = hap ? "ept" : "shadow";
  mmioLoop(hap); // warm-up (JIT)
  const r = mmioLoop(hap);
  report({ name: `hypervisor.mmio-exits-per-second.${mode}`, value: Math.round(r.perSecond), unit: "exits/s" });
  report({ name: `hypervisor.mmio-exits.tpr-loop.${mode}`, value: r.exits, unit: "exits" });
}

/** mov esi, 200000; top: xor eax, eax; cpuid; dec esi; jnz top; int3 (no IDT: a triple fault ends the domain). */
const CPUID_LOOP = "be400d0300" + "31c0" + "0fa2" + "4e" + "75f9" + "cc";
const CPUID_EXITS = 200_000;

function cpuidLoop(hap: boolean): number {
  const hv = new Hypervisor({ memoryMiB: 64 });
  const d = hv.createDomain({ name: "cpuid", memoryMiB: 8, hap, kernel: tinyKernel(CPUID_LOOP) });
  const t0 = performance.now();
  hv.run();
  const ms = performance.now() - t0;
  const exits = d.stats().exitsByReason.Cpuid ?? 0;
  if (exits !== CPUID_EXITS) throw new Error(`the CPUID loop on ${hap ? "ept" : "shadow"} made ${exits} CPUID exits, not ${CPUID_EXITS}`);
  return exits / (ms / 1000);
}

for (const hap of [true, false]) {
  const mode = hap ? "ept" : "shadow";
  cpuidLoop(hap); // warm-up (JIT)
  report({ name: `hypervisor.cpuid-exits-per-second.${mode}`, value: Math.round(cpuidLoop(hap)), unit: "exits/s" });
}
