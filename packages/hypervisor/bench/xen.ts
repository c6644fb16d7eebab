/**
 * Xen-interface benchmarks (JSON lines, wall time around the simulation): hypercall round trips
 * per second (a guest calling xen_version(XENVER_version) in a loop: VMCALL exit, dispatch,
 * entry) on EPT and on shadow.
 */
import { report } from "@vtlab/bench-harness";
import { Hypervisor } from "@vtlab/hypervisor";
import { HYPERVISOR_xen_version, XENVER_version } from "@vtlab/xen-public";
import { tinyKernel } from "../test/tiny-kernel.js";

const le32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff].map((b) => b.toString(16).padStart(2, "0")).join("");
const CALLS = 200_000;
/** mov esi, CALLS; L: mov eax, xen_version; mov ebx, XENVER_version; xor ecx, ecx; vmcall; dec esi; jnz L; xor eax, eax; out 0xf4, eax. */
const loop = `be${le32(CALLS)}b8${le32(HYPERVISOR_xen_version)}bb${le32(XENVER_version)}31c90f01c14e75ee31c0e7f4`;

function xenVersionLoop(hap: boolean): number {
  const hv = new Hypervisor({ memoryMiB: 64 });
  const d = hv.createDomain({ name: "hc", memoryMiB: 8, hap, kernel: tinyKernel(loop) });
  const t0 = performance.now();
  hv.run();
  const ms = performance.now() - t0;
  const n = d.xen.stats.hypercalls.get("xen_version") ?? 0;
  if (d.exitCode !== 0 || n !== CALLS) throw new Error(`xen_version loop on ${hap ? "ept" : "shadow"}: exit ${String(d.exitCode)}, ${n} calls, ${d.crashReason ?? ""}`);
  return n / (ms / 1000);
}

for (const hap of [true, false]) {
  const mode = hap ? "ept" : "shadow";
  xenVersionLoop(hap); // warm-up (JIT)
  report({ name: `hypervisor.hypercalls-per-second.xen_version.${mode}`, value: Math.round(xenVersionLoop(hap)), unit: "hypercalls/s" });
}
