import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { Hypervisor, type VmExitGuestState } from "../src/index.js";

const kernel = new Uint8Array(readFileSync(fileURLToPath(new URL("../../guests/images/kernel.elf", import.meta.url))));

describe("HypervisorOptions.onVmExit", () => {
  it("reports each exit with its guest state before handling, and pauses the domain on true", () => {
    const seen: { reason: number; qualification: number; length: number; state: VmExitGuestState; exitsBefore: number }[] = [];
    let stepping = true;
    const hv: Hypervisor = new Hypervisor({
      memoryMiB: 256,
      onVmExit: (domain, _vcpu, exit, state) => {
        seen.push({ reason: exit.reason, qualification: exit.qualification, length: exit.instructionLength, state, exitsBefore: domain.stats(hv.cost).vmExits });
        return stepping;
      },
    });
    const d = hv.createDomain({ name: "step", memoryMiB: 64, hap: true, kernel, cmdline: "workload=compute" });
    for (let i = 0; i < 5; i++) {
      const before = d.stats(hv.cost).vmExits;
      hv.run({ maxInstructions: 50_000_000 });
      // One exit reported, handled, then the domain paused.
      expect(d.state).toBe("paused");
      expect(seen.length).toBe(i + 1);
      expect(d.stats(hv.cost).vmExits).toBe(before + 1);
      // Reported before it was handled (counted).
      expect(seen[i]!.exitsBefore).toBe(before);
      const s = seen[i]!.state;
      expect(s.rip).toBeGreaterThan(0);
      expect((s.cr0 & 1) >>> 0).toBe(1); // CR0.PE: the PVH guest runs protected
      expect((s.rflags & 2) >>> 0).toBe(2); // RFLAGS bit 1 is always 1 (SDM 3.4.3)
      expect(s.reasonName).toMatch(/^[A-Za-z]/);
      d.unpause();
    }
    // Returning false: runs on without pausing.
    stepping = false;
    hv.run({ maxInstructions: 2_000_000 });
    expect(seen.length).toBeGreaterThan(5);
    expect(d.state === "running" || d.state === "shutdown").toBe(true);
  });
});

describe("Hypervisor.onVmExit set after construction", () => {
  it("steps once when set, and reports nothing once cleared", () => {
    const hv = new Hypervisor({ memoryMiB: 256 });
    const d = hv.createDomain({ name: "late", memoryMiB: 64, hap: false, kernel, cmdline: "workload=compute" });
    hv.run({ maxInstructions: 1_000_000 });
    let n = 0;
    hv.onVmExit = () => (n++, true);
    hv.run({ maxInstructions: 50_000_000 });
    expect(n).toBe(1);
    expect(d.state).toBe("paused");
    hv.onVmExit = undefined;
    d.unpause();
    hv.run({ maxInstructions: 1_000_000 });
    expect(n).toBe(1);
  });
});
