/**
 * The block compiler of @vtlab/cpu-vmx (src/jit/) changes nothing a guest or the host can see:
 * each reference-kernel workload and the bench guest, on EPT and on shadow paging, print the same
 * console, retire the same number of instructions and take the same VM exits, by reason, with the
 * compiler on and off (VTLAB_JIT=0: blocks that call the interpreter's handlers). The APIC timer
 * preempts the kernel's processes by retired instructions, so an inexact retired count or a fault
 * at a different point would change the exits.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { REFERENCE_KERNEL_WORKLOADS, guestImageUrl, referenceKernelUrl, type ReferenceKernelWorkload } from "@vtlab/guests";
import { Hypervisor, MemoryBlockBackend } from "@vtlab/hypervisor";
import { runYielding } from "./run-yielding.js";

const kernel = new Uint8Array(readFileSync(referenceKernelUrl()));
const bench = new Uint8Array(readFileSync(guestImageUrl("bench")));
const params: Record<ReferenceKernelWorkload, string> = {
  compute: "iterations=100000",
  ptemod: "iterations=100",
  forkwait: "forks=50",
  disk: "mib=1",
};

async function run(image: Uint8Array, cmdline: string, hap: boolean, jit: boolean) {
  const saved = process.env.VTLAB_JIT;
  process.env.VTLAB_JIT = jit ? "1" : "0"; // read when the vCPU is created
  let hv: Hypervisor;
  let d;
  try {
    hv = new Hypervisor({ memoryMiB: 512 });
    d = hv.createDomain({ name: "jit", memoryMiB: 128, hap, kernel: image, cmdline, disk: new MemoryBlockBackend(8192) });
  } finally {
    if (saved === undefined) delete process.env.VTLAB_JIT;
    else process.env.VTLAB_JIT = saved;
  }
  expect(d.vcpus[0]!.cpu.jit).toBe(jit);
  await runYielding(hv, { maxInstructions: 2_000_000_000 });
  const s = d.stats();
  return { state: d.state, code: d.exitCode, console: d.console, instructions: s.instructions, vmExits: s.vmExits, exitsByReason: s.exitsByReason, compiled: d.vcpus[0]!.cpu.counters.compiledBlocks };
}

const cases = [
  ...REFERENCE_KERNEL_WORKLOADS.map((w) => ({ name: `reference kernel ${w} (${params[w]})`, image: kernel, cmdline: `workload=${w} ${params[w]}` })),
  { name: "bench guest (iterations=1)", image: bench, cmdline: "iterations=1" },
];

describe("guests with the block compiler on and off: the same output, instructions and exits by reason", () => {
  for (const c of cases) {
    for (const hap of [true, false]) {
      it(`${c.name} on ${hap ? "EPT" : "shadow"}`, { timeout: 300_000 }, async () => {
        const { compiled: compiledOn, ...on } = await run(c.image, c.cmdline, hap, true);
        const { compiled: compiledOff, ...off } = await run(c.image, c.cmdline, hap, false);
        expect(on).toEqual(off);
        expect({ state: on.state, code: on.code }).toEqual({ state: "shutdown", code: 0 });
        expect(compiledOn).toBeGreaterThan(0);
        expect(compiledOff).toBeGreaterThan(0);
      });
    }
  }
});
