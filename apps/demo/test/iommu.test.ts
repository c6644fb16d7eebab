/**
 * Device assignment in the `vtlab` command: the host's NVMe controllers in `vtlab run` (pci =,
 * --no-iommu, --iommu-flush, the IOMMU table and fault log), the shell's pci-* commands, and
 * `vtlab demo`'s isolation scenario with and without the IOMMU.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { describe, expect, it } from "vitest";
import { referenceKernelExpectedOutputUrl } from "@vtlab/guests";
import { main, type DemoResult } from "@vtlab/demo";
import { vtlabProcess } from "./vtlab-process.js";

const machines = fileURLToPath(new URL("../machines/", import.meta.url));
const diskExpected = readFileSync(referenceKernelExpectedOutputUrl("disk"), "utf8");
const checksumOf = (console: string) => /PASS \S+ ([0-9a-f]{16})/.exec(console)?.[1];

function vtlab(...argv: string[]) {
  let out = "";
  let err = "";
  const status = main(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  if (typeof status !== "number") throw new Error("synchronous command expected");
  return { status, out, err };
}

describe("vtlab run with assigned devices", () => {
  // Runs of whole machines go through a child process (vtlab-process.ts): the worker stays free.
  it("nvme.cfg and dmaattack.cfg beside compute.cfg: the NVMe data checks, every attack is blocked and logged", { timeout: 300_000 }, async () => {
    const r = await vtlabProcess("run", join(machines, "compute.cfg"), join(machines, "dmaattack.cfg"), join(machines, "nvme.cfg"));
    expect(r.status).toBe(0);
    // The nvme workload's checksum is the disk workload's.
    const nvmeLines = r.out.split("\n").filter((l) => l.startsWith("nvme| ")).map((l) => l.slice(6)).join("\n");
    expect(checksumOf(nvmeLines)).toBe(checksumOf(diskExpected));
    expect(r.out).toContain("Device assignment through the host IOMMU (VT-d)");
    expect(r.out).toMatch(/dmaattack: 8 attempts, 8 failed/);
    const faults = r.out.split("\n").filter((l) => l.startsWith("dmaattack: [DMA "));
    expect(faults).toHaveLength(8);
    for (const f of faults) expect(f).toMatch(/Request device \[0000:00:05\.0\] fault addr 0x[0-9a-f]+ \[fault reason 0x0[56]\]/);
    expect(r.out).toContain("fault addr 0x2100000");
  });

  it("--json: the IOMMU statistics in each record; --no-iommu switches remapping off", { timeout: 300_000 }, async () => {
    const on = await vtlabProcess("run", "--json", join(machines, "nvme.cfg"));
    expect(on.status).toBe(0);
    const [a] = JSON.parse(on.out) as { iommu: { remapping: string; dmaRequests: number; iotlbHitRate: number; faults: number; devices: string[] } }[];
    expect(a!.iommu).toMatchObject({ remapping: "on", faults: 0, devices: ["00:04.0"] });
    expect(a!.iommu.dmaRequests).toBeGreaterThan(0);
    expect(a!.iommu.iotlbHitRate).toBeGreaterThan(0.5);
    const off = await vtlabProcess("run", "--json", "--no-iommu", join(machines, "compute.cfg"));
    expect(off.status).toBe(0);
    expect((JSON.parse(off.out) as { iommu: unknown }[])[0]!.iommu).toBeNull();
    const deferred = await vtlabProcess("run", "--json", "--iommu-flush=deferred", join(machines, "nvme.cfg"));
    expect(deferred.status).toBe(0);
  });

  it("bad host options and pci entries are errors that say what is wrong", () => {
    expect(vtlab("run", "--iommu-flush", "lazy", "x.cfg")).toMatchObject({ status: 2, err: expect.stringContaining('--iommu-flush: "lazy" is not strict or deferred') });
    expect(vtlab("run", "--no-iommu", "--iommu-flush", "strict", "x.cfg")).toMatchObject({ status: 2, err: expect.stringContaining("--iommu-flush makes no sense with --no-iommu") });
    const dir = mkdtempSync(join(tmpdir(), "vtlab-pci-"));
    const kernel = fileURLToPath(new URL("../../../packages/guests/images/kernel.elf", import.meta.url));
    const cfg = (name: string, pci: string) => {
      const f = join(dir, `${name}.cfg`);
      writeFileSync(f, `name = "${name}"\nmemory = 32\nkernel = "${kernel}"\ncmdline = "workload=nvme"\npci = [ ${pci} ]\n`);
      return f;
    };
    const unknown = vtlab("run", cfg("u", `"00:09.0"`));
    expect(unknown.status).toBe(2);
    expect(unknown.err).toMatch(/00:09\.0/);
    expect(unknown.err).toMatch(/00:04\.0/); // the assignable ones are listed
    const opts = vtlab("run", cfg("o", `"00:04.0,permissive=1"`));
    expect(opts.status).toBe(2);
    expect(opts.err).toMatch(/not supported/);
    // Two machines asking for one device: the second is refused, naming the owner.
    const twice = vtlab("run", cfg("first", `"00:04.0"`), cfg("second", `"00:04.0"`));
    expect(twice.status).toBe(2);
    expect(twice.err).toMatch(/00:04\.0/);
    expect(twice.err).toMatch(/first/);
  });
});

describe("exit codes", () => {
  it("a machine without its device fails: the table says what the debug-exit code means, the JSON too", { timeout: 60_000 }, () => {
    const dir = mkdtempSync(join(tmpdir(), "vtlab-exit-"));
    const kernel = fileURLToPath(new URL("../../../packages/guests/images/kernel.elf", import.meta.url));
    const f = join(dir, "nodev.cfg");
    writeFileSync(f, `name = "nodev"\nmemory = 32\nkernel = "${kernel}"\ncmdline = "workload=nvme"\n`);
    const r = vtlab("run", f);
    expect(r.status).toBe(1);
    expect(r.out).toContain("exit 1 (isa-debug-exit value 1 = 0x1: the guest's failure code (QEMU's process status 3))");
    const j = vtlab("run", "--json", f);
    expect((JSON.parse(j.out) as { exitCode: number; exitMeaning: string }[])[0]).toMatchObject({ exitCode: 1, exitMeaning: expect.stringContaining("QEMU's process status 3") });
  });
});

describe("vtlab shell pci commands", () => {
  it("pci-assignable-list, pci-list, pci-attach, pci-detach; a device has one owner", { timeout: 60_000 }, () => {
    const dir = mkdtempSync(join(tmpdir(), "vtlab-shell-pci-"));
    const kernel = fileURLToPath(new URL("../../../packages/guests/images/kernel.elf", import.meta.url));
    writeFileSync(join(dir, "a.cfg"), `name = "a"\nmemory = 32\nkernel = "${kernel}"\ncmdline = "workload=compute"\npci = [ "00:04.0" ]\n`);
    writeFileSync(join(dir, "b.cfg"), `name = "b"\nmemory = 32\nkernel = "${kernel}"\ncmdline = "workload=compute"\n`);
    const script = join(dir, "s.vtl");
    writeFileSync(script, ["pci-assignable-list", "create a.cfg", "create b.cfg", "pci-assignable-list", "pci-list a", "pci-attach b 00:04.0", "pci-attach b 00:05.0", "pci-list b", "pci-detach b 00:05.0", "pci-detach b 00:05.0", "destroy a", "pci-assignable-list", "quit"].join("\n"));
    let out = "";
    let err = "";
    const status = main(["shell", script], { out: (t) => (out += t), err: (t) => (err += t) });
    expect(status).toBe(1); // the second attach of 00:04.0 and the second detach fail
    const tables = out.split(/\n(?=BDF)/);
    expect(tables[0]).toMatch(/0000:00:04\.0\s+nvme0\s+free/);
    expect(out).toMatch(/0000:00:04\.0\s+nvme0\s+a\n/);
    expect(out).toContain("assigned 00:05.0 to b");
    expect(out).toContain("detached 00:05.0 from b");
    expect(err).toMatch(/pci-attach.*00:04\.0/);
    expect(err).toMatch(/pci-detach.*b does not own PCI device "00:05\.0"/);
    // After destroy, a's device is free again.
    expect(out.trimEnd().split("\n").slice(-4).join("\n")).toMatch(/0000:00:04\.0\s+nvme0\s+free/);
  });
});

describe("vtlab demo --workloads iommu", () => {
  it("with the IOMMU the victim is byte-identical and every DMA is blocked; with iommu = 0 it is not", { timeout: 300_000 }, async () => {
    const { reports, isolation } = JSON.parse((await vtlabProcess("demo", "--json", "--workloads", "iommu")).out) as DemoResult;
    expect(reports).toEqual([]);
    const [on, off] = isolation;
    expect(on!.iommu).toBe("on");
    expect(on!.attempts).toHaveLength(8);
    expect(on!.blocked).toBe(8);
    expect(on!.victimPagesChanged).toBe(0);
    expect(on!.victimHashAfter).toBe(on!.victimHashBefore);
    expect(on!.attacker.iommu!.faults).toBeGreaterThanOrEqual(8);
    expect(on!.victim).toMatchObject({ state: "shutdown", exitCode: 0 });
    expect(off!.iommu).toBe("off");
    expect(off!.victimPagesChanged).toBeGreaterThan(0);
    expect(off!.victimHashAfter).not.toBe(off!.victimHashBefore);
    const r = await vtlabProcess("demo", "--workloads", "iommu");
    expect(r.status).toBe(0);
    expect(r.out).toContain("IOMMU isolation");
    expect(r.out).toMatch(/victim pages changed by the attack\s+0 of 16,384\s+1 of 16,384/);
    expect(r.out).toContain("IOMMU fault log (attacker-iommu)");
  });

  it("the nvme machine: the disk checksum through the assigned controller on shadow and EPT", { timeout: 300_000 }, async () => {
    const { reports } = JSON.parse((await vtlabProcess("demo", "--json", "--workloads", "nvme")).out) as DemoResult;
    const consoles = new Map(reports.map((m) => [m.name, m.console]));
    expect(reports.map((r) => [r.name, r.exitCode, r.iommu?.remapping])).toEqual([
      ["nvme-shadow", 0, "on"],
      ["nvme-ept", 0, "on"],
    ]);
    expect(checksumOf(consoles.get("nvme-ept")!)).toBe(checksumOf(diskExpected));
    expect(consoles.get("nvme-shadow")).toBe(consoles.get("nvme-ept"));
  });
});
