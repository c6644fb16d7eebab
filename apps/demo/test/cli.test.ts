import { mkdtempSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { referenceKernelExpectedOutputUrl } from "@vtlab/guests";
import { formatReports, main, type DemoResult, type RunReport } from "@vtlab/demo";
import { vtlabProcess } from "./vtlab-process.js";

const machines = fileURLToPath(new URL("../machines/", import.meta.url));
const kernel = fileURLToPath(new URL("../../../packages/guests/images/kernel.elf", import.meta.url));

function vtlab(...argv: string[]) {
  let out = "";
  let err = "";
  const status = main(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  return { status, out, err };
}

describe("vtlab", () => {
  it("help, and usage errors that say what is wrong", () => {
    expect(vtlab("help")).toMatchObject({ status: 0, out: expect.stringContaining("usage: vtlab") });
    expect(vtlab()).toMatchObject({ status: 2, err: expect.stringContaining("usage: vtlab") });
    expect(vtlab("boot")).toMatchObject({ status: 2, err: expect.stringContaining('unknown command "boot"') });
    expect(vtlab("run", "--fast", "x.cfg")).toMatchObject({ status: 2, err: expect.stringContaining("unknown option --fast") });
    expect(vtlab("run")).toMatchObject({ status: 2, err: expect.stringContaining("give at least one config file") });
    expect(vtlab("run", "--max-instructions", "lots", "x.cfg")).toMatchObject({ status: 2, err: expect.stringContaining('"lots" is not a positive integer') });
    expect(vtlab("demo", "--workloads", "compute,bogus")).toMatchObject({ status: 2, err: expect.stringContaining('unknown workload "bogus"') });
  });

  it("config problems name the file, the line and the key; a missing file or kernel is named too", () => {
    const dir = mkdtempSync(join(tmpdir(), "vtlab-cli-"));
    const bad = join(dir, "bad.cfg");
    writeFileSync(bad, `name = "x"\nmemory = "lots"\nkernel = "k.elf"\n`);
    const r = vtlab("run", bad);
    expect(r.status).toBe(2);
    expect(r.err).toContain(`${bad}:2`);
    expect(r.err).toContain('"memory"');
    expect(vtlab("run", join(dir, "none.cfg")).err).toContain("cannot read the config file");
    const nokernel = join(dir, "nokernel.cfg");
    writeFileSync(nokernel, `name = "x"\nmemory = 16\nkernel = "missing.elf"\n`);
    expect(vtlab("run", nokernel).err).toContain('kernel "missing.elf": cannot read');
    const notelf = join(dir, "notelf.cfg");
    writeFileSync(join(dir, "text.elf"), "not an elf file at all, just text long enough to be looked at......................");
    writeFileSync(notelf, `name = "x"\nmemory = 16\nkernel = "text.elf"\n`);
    expect(vtlab("run", notelf).err).toMatch(/notelf\.cfg: domain x: kernel "text\.elf": e_ident\[EI_MAG\]/);
    const nodisk = join(dir, "nodisk.cfg");
    writeFileSync(nodisk, `name = "x"\nmemory = 16\nkernel = "${kernel}"\ndisk = ["format=raw, vdev=hda, access=rw, target=nope.img"]\n`);
    expect(vtlab("run", nodisk).err).toContain("truncate -s 8M");
  });

  // The commands that run machines for seconds run in a child process (vtlab-process.ts), so
  // that this worker's event loop stays free while they run.
  it("run: a sample machine boots, streams its console and ends with the statistics table", async () => {
    const r = await vtlabProcess("run", join(machines, "ptemod.cfg"));
    expect(r.status).toBe(0);
    expect(r.out).toContain("ptemod| vtlab reference kernel: workload=ptemod\n");
    const expected = readFileSync(referenceKernelExpectedOutputUrl("ptemod"), "utf8").trimEnd().split("\n");
    expect(expected.at(-1)).toMatch(/^PASS ptemod [0-9a-f]{16}$/);
    for (const line of expected) expect(r.out).toContain(`ptemod| ${line}\n`);
    expect(r.out).toMatch(/machine\s+mmu\s+result\s+instructions/);
    expect(r.out).toMatch(/ptemod\s+ept\s+exit 0/);
    expect(r.out).toContain("VM exits by reason");
  }, 300_000);

  it("run --json, with a file-backed disk that keeps what the guest wrote", async () => {
    const dir = mkdtempSync(join(tmpdir(), "vtlab-disk-"));
    const img = join(dir, "disk.img");
    writeFileSync(img, "");
    truncateSync(img, 8 * 1024 * 1024);
    const cfg = join(dir, "disk.cfg");
    writeFileSync(cfg, `name = "disk"\nmemory = 64\nkernel = "${kernel}"\ncmdline = "workload=disk"\ndisk = ["format=raw, vdev=hda, access=rw, target=disk.img"]\nserial = "file:console.txt"\n`);
    const r = await vtlabProcess("run", "--json", cfg);
    expect(r.status).toBe(0);
    const [rep] = JSON.parse(r.out) as { name: string; exitCode: number; ioExits: number; console: string }[];
    expect(rep).toMatchObject({ name: "disk", exitCode: 0 });
    // The console is in the JSON record, whatever the serial sink was.
    expect(rep!.console).toBe(readFileSync(referenceKernelExpectedOutputUrl("disk"), "utf8"));
    expect(rep!.ioExits).toBeGreaterThan(8192);
    expect(readFileSync(join(dir, "console.txt"), "utf8")).toBe(readFileSync(referenceKernelExpectedOutputUrl("disk"), "utf8"));
    expect(readFileSync(img).subarray(0, 2 * 1024 * 1024).some((b) => b !== 0)).toBe(true);
  }, 300_000);

  it("run --json streams the consoles to stderr and keeps stdout one JSON document with each console", async () => {
    const r = await vtlabProcess("run", "--json", join(machines, "ptemod.cfg"));
    expect(r.status).toBe(0);
    const [rep] = JSON.parse(r.out) as { name: string; console: string }[];
    const expected = readFileSync(referenceKernelExpectedOutputUrl("ptemod"), "utf8");
    expect(rep!.console).toBe(expected);
    for (const line of expected.trimEnd().split("\n")) expect(r.err).toContain(`ptemod| ${line}\n`);
  }, 300_000);

  it("two machines in one host: both finish", async () => {
    const r = await vtlabProcess("run", "--json", join(machines, "ptemod.cfg"), join(machines, "forkwait.cfg"));
    const reports = JSON.parse(r.out) as RunReport[];
    expect(reports.map((m) => [m.name, m.state, m.exitCode])).toEqual([
      ["ptemod", "shutdown", 0],
      ["forkwait", "shutdown", 0],
    ]);
    expect(r.status).toBe(0);
  }, 300_000);

  it("demo: the same workload on a shadow machine and an EPT machine, compared", async () => {
    const r = await vtlabProcess("demo", "--json", "--workloads", "disk");
    const { reports, unavailable } = JSON.parse(r.out) as DemoResult;
    const consoles = new Map(reports.map((m) => [m.name, m.console]));
    expect(unavailable).toEqual([]);
    expect(reports.map((r) => [r.name, r.mmu, r.exitCode])).toEqual([
      ["disk-shadow", "shadow", 0],
      ["disk-ept", "ept", 0],
    ]);
    expect(consoles.get("disk-shadow")).toBe(consoles.get("disk-ept"));
    const [shadow, ept] = reports as [(typeof reports)[0], (typeof reports)[0]];
    expect(shadow.shadowFaults).toBeGreaterThan(0);
    expect(ept.shadowFaults).toBeNull();
    expect(shadow.eptReferences).toBe(0);
    expect(ept.eptReferences).toBeGreaterThan(0);
    // The same disk work: a REP INS/OUTS exit moves what is left of its slice (at most 4096
    // elements), and the slices fall differently on the two MMUs, so the counts agree within 1 %.
    expect(Math.abs(shadow.ioExitsPerDiskMiB! - ept.ioExitsPerDiskMiB!)).toBeLessThan(ept.ioExitsPerDiskMiB! / 100);
    const table = formatReports(reports);
    expect(table).toMatch(/disk-shadow\s+shadow\s+exit 0/);
    expect(table).toMatch(/disk-ept\s+ept\s+exit 0/);
  }, 300_000);
});
