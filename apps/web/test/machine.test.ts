// The page's machine (src/machine.ts) under Node: the same class the worker runs boots the
// reference kernel's compute workload on EPT and on shadow paging, prints PASS, and its samples
// count what the report of `vtlab demo` counts.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { WebMachine } from "../src/machine.js";
import type { MachineChoice } from "../src/protocol.js";

const kernel = new Uint8Array(readFileSync(fileURLToPath(new URL("../../../packages/guests/images/kernel.elf", import.meta.url))));

/** Run the machine to its end in 20 ms slices, yielding to the event loop between them (no long block of the worker). */
async function runToEnd(m: WebMachine, each?: () => void): Promise<void> {
  for (let i = 0; i < 10_000 && m.alive; i++) {
    m.runFor(20);
    each?.();
    await new Promise((r) => setTimeout(r, 0));
  }
}

function boot(choice: MachineChoice): { m: WebMachine; out: () => string } {
  let text = "";
  const m = new WebMachine(choice, kernel, (t) => (text += t), () => performance.now());
  return { m, out: () => text };
}

describe("WebMachine", () => {
  for (const hap of [true, false]) {
    it(`boots compute on ${hap ? "EPT" : "shadow"} and runs it to PASS`, async () => {
      const { m, out } = boot({ workload: "compute", hap });
      const samples: ReturnType<WebMachine["sample"]>[] = [];
      await runToEnd(m, () => samples.push(m.sample()));
      expect(m.domain.state).toBe("shutdown");
      expect(out()).toMatch(/^PASS compute [0-9a-f]{16}$/m);
      const last = samples.at(-1)!;
      expect(last.instructions).toBeGreaterThan(1_000_000);
      expect(last.vmExits).toBe(Object.values(last.exitsByReason).reduce((a, b) => a + b, 0));
      expect(last.modelledMs).toBeGreaterThan(0);
      // Counters never go back between samples.
      for (let i = 1; i < samples.length; i++) expect(samples[i]!.instructions).toBeGreaterThanOrEqual(samples[i - 1]!.instructions);
      if (hap) expect(last.shadowFaults).toBeNull();
      else expect(last.shadowFaults).toBeGreaterThan(0);
    });
  }

  it("pauses, unpauses and destroys as xl does", () => {
    const { m } = boot({ workload: "compute", hap: true });
    m.runFor(5);
    m.pause();
    const n = m.sample().instructions;
    expect(m.runFor(5)).toBe(false);
    expect(m.sample().instructions).toBe(n);
    m.unpause();
    m.runFor(5);
    expect(m.sample().instructions).toBeGreaterThan(n);
    m.destroy();
    expect(m.domain.state).toBe("destroyed");
    expect(m.alive).toBe(false);
  });

  it("boots nvme with the host controller assigned", async () => {
    const { m, out } = boot({ workload: "nvme", hap: true });
    await runToEnd(m);
    expect(out()).toMatch(/^PASS nvme/m);
  });

  it("runs dmaattack: the IOMMU blocks and logs its DMA beyond its RAM", async () => {
    const { m } = boot({ workload: "dmaattack", hap: true });
    await runToEnd(m);
    const io = m.sample().iommu;
    expect(io).not.toBeNull();
    expect(io!.remapping).toBe("on");
    expect(io!.devices).toEqual(["00:05.0"]);
    expect(io!.faults).toBeGreaterThan(0);
    expect(io!.faultLog.length).toBeGreaterThan(0);
    for (const line of io!.faultLog) expect(line).toMatch(/^(\d+ older faults not kept|\[DMA (Read|Write)\] Request device \[0000:00:05\.0\] fault addr 0x[0-9a-f]+ \[fault reason 0x[0-9a-f]{2}\] .+)$/);
  });

  it("has no IOMMU sample for a machine without an assigned device", () => {
    const { m } = boot({ workload: "compute", hap: true });
    expect(m.sample().iommu).toBeNull();
    m.destroy();
  });

  it("takes keyboard bytes into COM1's receive queue", () => {
    const { m } = boot({ workload: "compute", hap: true });
    m.input([0x68, 0x69, 0x0d]);
    expect(m.domain.uart.state().input).toEqual([0x68, 0x69, 0x0d]);
    m.destroy();
  });
});
