/**
 * Cross-package benchmarks: guest MIPS (guest instructions retired per wall-clock second) of the
 * reference `bench` guest (CRC-32, a sieve and a sort, gcc -O2) on the @vtlab/cpu-vmx
 * interpreter, paging on, through the TLB, with decoded-instruction caching. Prints JSON lines.
 * VTLAB_BENCH_ITERATIONS sets the guest's iteration count (default 3).
 */
import { readFileSync } from "node:fs";
import { report } from "@vtlab/bench-harness";
import { guestImageUrl } from "@vtlab/guests";
import { loadPvh, runToExit } from "../test/pvh.js";

const iterations = Number(process.env.VTLAB_BENCH_ITERATIONS ?? 3);
const image = new Uint8Array(readFileSync(guestImageUrl("bench")));

// Warm-up run (JIT the interpreter), then the measured run.
runToExit(loadPvh(image, "iterations=1"), 2_000_000_000);
const m = loadPvh(image, `iterations=${iterations}`);
const t0 = performance.now();
const r = runToExit(m, 20_000_000_000);
const ms = performance.now() - t0;
if (r.kind !== "exit" || r.code !== 0) throw new Error(`bench guest did not pass: ${r.kind} ${r.code ?? ""}\n${r.output}`);
const retired = m.cpu.counters.instructions;
report({ name: "cpu-vmx.guest-mips.bench-O2", value: Math.round((retired / ms / 1000) * 10) / 10, unit: "MIPS" });
report({ name: "cpu-vmx.guest-instructions.bench-O2", value: retired, unit: "instructions" });
