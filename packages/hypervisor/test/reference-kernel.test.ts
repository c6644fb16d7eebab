/**
 * The reference guest kernel of @vtlab/guests (UART console, x2APIC timer preemption, demand
 * paging, CPL-3 processes with copy-on-write fork, ATA PIO) on the hypervisor: every workload
 * prints, byte for byte, what it printed under QEMU, and the exits show the mechanisms at work.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { REFERENCE_KERNEL_WORKLOADS, referenceKernelExpectedOutputUrl, referenceKernelUrl, type ReferenceKernelWorkload } from "@vtlab/guests";
import { Hypervisor, MemoryBlockBackend, SECTOR_SIZE } from "@vtlab/hypervisor";
import { runYielding } from "./run-yielding.js";

const kernel = new Uint8Array(readFileSync(referenceKernelUrl()));

async function boot(workload: ReferenceKernelWorkload) {
  const hv = new Hypervisor({ memoryMiB: 512 });
  const disk = new MemoryBlockBackend(8192);
  const d = hv.createDomain({ name: workload, memoryMiB: 128, kernel, cmdline: `workload=${workload}`, disk });
  const r = await runYielding(hv, { maxInstructions: 2_000_000_000 });
  return { hv, d, r, disk };
}

describe("the reference kernel on the hypervisor (EPT)", () => {
  for (const w of REFERENCE_KERNEL_WORKLOADS) {
    it(`${w}: the output QEMU gave, exit code 0`, { timeout: 300_000 }, async () => {
      const { d, r, disk } = await boot(w);
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

describe("the reference kernel on shadow paging and on EPT: the same output, different mechanisms", () => {
  const params: Record<ReferenceKernelWorkload, string> = {
    compute: "iterations=100000",
    ptemod: "iterations=100",
    forkwait: "forks=100",
    disk: "mib=1",
  };
  const run = async (w: ReferenceKernelWorkload, hap: boolean) => {
    const hv = new Hypervisor({ memoryMiB: 512 });
    const d = hv.createDomain({ name: `${w}-${hap ? "ept" : "shadow"}`, memoryMiB: 128, hap, kernel, cmdline: `workload=${w} ${params[w]}`, disk: new MemoryBlockBackend(8192) });
    await runYielding(hv, { maxInstructions: 2_000_000_000 });
    return d;
  };
  for (const w of REFERENCE_KERNEL_WORKLOADS) {
    it(`${w} (${params[w]})`, { timeout: 300_000 }, async () => {
      const shadow = await run(w, false);
      const ept = await run(w, true);
      for (const d of [shadow, ept]) expect({ name: d.name, state: d.state, code: d.exitCode, crash: d.crashReason }).toEqual({ name: d.name, state: "shutdown", code: 0, crash: undefined });
      expect(shadow.console).toBe(ept.console);
      expect(shadow.console).toMatch(new RegExp(`^PASS ${w} [0-9a-f]{16}$`, "m"));
      const s = shadow.stats();
      const e = ept.stats();
      // Shadow: guest page faults and page-table writes exit; EPT: neither does, but every guest reference goes through EPT.
      expect(s.exitsByReason.ExceptionOrNmi).toBeGreaterThan(0);
      expect(e.exitsByReason.ExceptionOrNmi).toBeUndefined();
      expect(s.shadow!.faults.fill).toBeGreaterThan(0);
      expect(s.eptReferences).toBe(0);
      expect(e.eptReferences).toBeGreaterThan(0);
      if (w !== "disk") {
        expect(s.shadow!.emulatedWrites + s.shadow!.unsyncs).toBeGreaterThan(0); // writes to guest page tables trapped
        expect(s.vmExits).toBeGreaterThan(e.vmExits);
      } else {
        // REP INSW/OUTSW: a few I/O exits per sector (the command registers, one for the data).
        for (const d of [shadow, ept]) expect(d.stats().ioExits / (2 * 2048)).toBeLessThan(8);
      }
    });
  }

  it("disk with pioword=1 (a word per IN/OUT): hundreds of I/O exits per emulated sector", { timeout: 300_000 }, async () => {
    const hv = new Hypervisor({ memoryMiB: 512 });
    const d = hv.createDomain({ name: "pio", memoryMiB: 64, kernel, cmdline: "workload=disk mib=1 pioword=1", disk: new MemoryBlockBackend(4096) });
    await runYielding(hv);
    expect(d.exitCode).toBe(0);
    expect(d.console).toMatch(/^PASS disk [0-9a-f]{16}$/m);
    const perSector = d.stats().ioExits / (2 * 2048);
    expect(perSector).toBeGreaterThan(256);
    expect(perSector).toBeLessThan(300);
  });
});
