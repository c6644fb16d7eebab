/**
 * The reference guest kernel of @vtlab/guests (UART console, x2APIC timer preemption, demand
 * paging, CPL-3 processes with copy-on-write fork, ATA PIO) on the hypervisor: every workload
 * prints, byte for byte, what it printed under QEMU, and the exits show the mechanisms at work.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { REFERENCE_KERNEL_WORKLOADS, referenceKernelExpectedOutputUrl, referenceKernelUrl, type ReferenceKernelWorkload } from "@vtlab/guests";
import { Hypervisor, MemoryBlockBackend, SECTOR_SIZE } from "@vtlab/hypervisor";

const kernel = new Uint8Array(readFileSync(referenceKernelUrl()));

function boot(workload: ReferenceKernelWorkload) {
  const hv = new Hypervisor({ memoryMiB: 512 });
  const disk = new MemoryBlockBackend(8192);
  const d = hv.createDomain({ name: workload, memoryMiB: 128, kernel, cmdline: `workload=${workload}`, disk });
  const r = hv.run({ maxInstructions: 2_000_000_000 });
  return { hv, d, r, disk };
}

describe("the reference kernel on the hypervisor (EPT)", () => {
  for (const w of REFERENCE_KERNEL_WORKLOADS) {
    it(`${w}: the output QEMU gave, exit code 0`, { timeout: 120_000 }, () => {
      const { d, r, disk } = boot(w);
      expect(r.reason).toBe("idle");
      expect({ state: d.state, code: d.exitCode, crash: d.crashReason }).toEqual({ state: "shutdown", code: 0, crash: undefined });
      expect(d.console).toBe(readFileSync(referenceKernelExpectedOutputUrl(w), "utf8"));
      const s = d.stats();
      const v = d.vcpus[0]!;
      if (w === "disk") {
        // ATA PIO: a command's eight or so register accesses each exit; the data moves by REP INSW/OUTSW (one exit a sector).
        expect(d.disk!.stats.sectorsWritten).toBe(4096);
        expect(d.disk!.stats.sectorsRead).toBe(4096);
        expect(s.ioExits / 8192).toBeGreaterThan(1);
        expect(disk.data.subarray(0, 2 * 1024 * 1024).some((b) => b !== 0)).toBe(true);
        expect(disk.data.length).toBe(8192 * SECTOR_SIZE);
      } else {
        // The APIC timer preempted processes: timer interrupts were injected and EOIs written.
        expect(v.apic!.stats.timerFires).toBeGreaterThan(0);
        expect(v.interruptsInjected).toBeGreaterThan(0);
        expect(v.apic!.stats.eoi).toBeGreaterThan(0);
      }
    });
  }
});
