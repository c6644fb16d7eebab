/**
 * PV I/O against emulated I/O (JSON lines): the reference kernel's `disk` workload (ATA PIO) and
 * `pvdisk` (the same data through its blkfront to dom0's blkback, built by the toolstack with
 * vdev=xvda) at 2 MiB, on EPT and shadow paging: disk MiB per second of wall time and of
 * modelled time, and VM exits per disk MiB moved (whole runs, boot included).
 */
import { readFileSync } from "node:fs";
import { report } from "@vtlab/bench-harness";
import { referenceKernelUrl } from "@vtlab/guests";
import { Hypervisor, MemoryBlockBackend, Toolstack, parseDomainConfig } from "@vtlab/hypervisor";

const kernel = new Uint8Array(readFileSync(referenceKernelUrl()));
const MIB_MOVED = 4; // 2 MiB written and read back

function run(workload: "disk" | "pvdisk", hap: boolean): { wallMiBs: number; modelledMiBs: number; exitsPerMiB: number } {
  const hv = new Hypervisor({ memoryMiB: 512 });
  const toolstack = new Toolstack(hv, { resources: () => ({ kernel, disk: new MemoryBlockBackend(16384) }) });
  const vdev = workload === "pvdisk" ? "xvda" : "hda";
  const config = parseDomainConfig(`name = "${workload}"\nmemory = 128\nhap = ${hap ? 1 : 0}\nkernel = "kernel.elf"\ncmdline = "workload=${workload}"\ndisk = [ "format=raw, vdev=${vdev}, access=rw, target=x.img" ]\n`, "<bench>");
  const t0 = performance.now();
  const d = toolstack.create(config, "<bench>").domain;
  toolstack.run();
  const seconds = (performance.now() - t0) / 1000;
  if (d.exitCode !== 0) throw new Error(`${workload} on ${hap ? "ept" : "shadow"} did not pass (exit ${String(d.exitCode)})`);
  const s = d.stats(hv.cost);
  const modelled = s.modelledCycles / hv.clock.frequencyHz;
  toolstack.destroyAll();
  return { wallMiBs: MIB_MOVED / seconds, modelledMiBs: MIB_MOVED / modelled, exitsPerMiB: s.vmExits / MIB_MOVED };
}

for (const hap of [true, false]) {
  const mode = hap ? "ept" : "shadow";
  for (const w of ["disk", "pvdisk"] as const) {
    run(w, hap); // warm-up (JIT)
    const r = run(w, hap);
    report({ name: `hypervisor.${w}.wall-mib-per-second.${mode}`, value: Math.round(r.wallMiBs * 100) / 100, unit: "MiB/s" });
    report({ name: `hypervisor.${w}.modelled-mib-per-second.${mode}`, value: Math.round(r.modelledMiBs * 10) / 10, unit: "MiB/s" });
    report({ name: `hypervisor.${w}.exits-per-mib.${mode}`, value: Math.round(r.exitsPerMiB * 10) / 10, unit: "exits/MiB" });
  }
}
