/**
 * The PV machines: `vtlab run machines/net-ping.cfg machines/net-pong.cfg` (two domains on the
 * bridge xenbr0, ARP and ICMP echo through netfront and netback), `vtlab run` of
 * machines/pvdisk.cfg (the disk workload through blkfront to blkback, vdev=xvda), and
 * `vtlab demo`'s pvdisk machine beside the emulated disk one: the same checksum, far fewer
 * exits per disk MiB, more disk MiB per second of modelled time.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { referenceKernelExpectedOutputUrl, referenceKernelPvExpectedOutputUrl, referenceKernelUrl } from "@vtlab/guests";
import { formatReports, main, runDemo } from "@vtlab/demo";

const machine = (n: string) => fileURLToPath(new URL(`../machines/${n}.cfg`, import.meta.url));
const prefixed = (name: string, text: string) => text.trimEnd().split("\n").map((l) => `${name}| ${l}\n`);

function vtlab(...args: string[]) {
  let out = "";
  let err = "";
  const status = main(args, { out: (t) => (out += t), err: (t) => (err += t) });
  return { status, out, err };
}

describe("the PV machines", () => {
  it("vtlab run machines/net-ping.cfg machines/net-pong.cfg: both exit 0 with their expected consoles", () => {
    const r = vtlab("run", machine("net-ping"), machine("net-pong"));
    expect(r.status).toBe(0);
    for (const line of prefixed("net-ping", readFileSync(referenceKernelPvExpectedOutputUrl("net-ping"), "utf8"))) expect(r.out).toContain(line);
    for (const line of prefixed("net-pong", readFileSync(referenceKernelPvExpectedOutputUrl("net-pong"), "utf8"))) expect(r.out).toContain(line);
    expect(r.out).toMatch(/net-ping\s+ept\s+exit 0/);
    const json = vtlab("run", "--json", machine("net-ping"), machine("net-pong"));
    const reports = JSON.parse(json.out) as { name: string; ringRequests: number; grantOps: number; events: number }[];
    // ARP and 10 echoes: 11 frames out and 11 in on each vif.
    for (const rep of reports) expect(rep).toMatchObject({ ringRequests: 22, grantOps: 22 });
    for (const rep of reports) expect(rep.events).toBeGreaterThan(0);
  }, 120_000);

  it("vtlab run machines/pvdisk.cfg: the disk checksum through blkfront, ring requests and grant operations counted", () => {
    const dir = mkdtempSync(join(tmpdir(), "vtlab-pvdisk-"));
    writeFileSync(join(dir, "pvdisk.img"), new Uint8Array(8 << 20));
    const text = readFileSync(machine("pvdisk"), "utf8").replace(/^kernel = .*$/m, `kernel = "${fileURLToPath(referenceKernelUrl())}"`);
    writeFileSync(join(dir, "pvdisk.cfg"), text);
    const r = vtlab("run", "--json", join(dir, "pvdisk.cfg"));
    expect(r.status).toBe(0);
    const [rep] = JSON.parse(r.out) as { name: string; exitCode: number; diskMiB: number; ringRequests: number; grantOps: number; exitsPerDiskMiB: number }[];
    // 2 MiB written and read back: 48 + 48 requests of up to 11 pages, and a flush.
    expect(rep).toMatchObject({ name: "pvdisk", exitCode: 0, diskMiB: 4, ringRequests: 97, grantOps: 1024 });
    const shown = vtlab("run", join(dir, "pvdisk.cfg"));
    for (const line of prefixed("pvdisk", readFileSync(referenceKernelPvExpectedOutputUrl("pvdisk"), "utf8"))) expect(shown.out).toContain(line);
  }, 120_000);

  it("vtlab demo: pvdisk beside disk, the same checksum, fewer exits per disk MiB (10x on EPT, boot included) and more MiB/s", () => {
    const consoles = new Map<string, string>();
    const { reports, unavailable } = runDemo({ workloads: ["disk", "pvdisk"], onConsole: (name, t) => consoles.set(name, (consoles.get(name) ?? "") + t) });
    expect(unavailable).toEqual([]);
    expect(reports.map((r) => [r.name, r.exitCode])).toEqual([
      ["disk-shadow", 0],
      ["pvdisk-shadow", 0],
      ["disk-ept", 0],
      ["pvdisk-ept", 0],
    ]);
    const sum = (name: string) => /^PASS \S+ ([0-9a-f]{16})$/m.exec(consoles.get(name) ?? "")?.[1];
    const diskSum = /^PASS disk ([0-9a-f]{16})$/m.exec(readFileSync(referenceKernelExpectedOutputUrl("disk"), "utf8"))?.[1];
    for (const mmu of ["shadow", "ept"]) {
      expect(sum(`disk-${mmu}`)).toBe(diskSum);
      expect(sum(`pvdisk-${mmu}`)).toBe(diskSum);
      const disk = reports.find((r) => r.name === `disk-${mmu}`)!;
      const pv = reports.find((r) => r.name === `pvdisk-${mmu}`)!;
      // Whole runs, boot included: the console lines (a UART exit or two per character) and, on
      // shadow paging, both kernels' boot-time shadow faults (the frame pool touched page by
      // page) weigh on these figures. Measured at 2 MiB: 18x on EPT, 1.3x on shadow. The
      // per-MiB law (at least 50x, boot cancelled out) is test/pv-io.test.ts in @vtlab/hypervisor.
      expect(disk.exitsPerDiskMiB!).toBeGreaterThanOrEqual((mmu === "ept" ? 10 : 1) * pv.exitsPerDiskMiB!);
      expect(pv.diskMiBPerSecond!).toBeGreaterThan(disk.diskMiBPerSecond!);
      expect(pv.ringRequests).toBe(97);
      expect(disk.ringRequests).toBe(0);
    }
    const table = formatReports(reports);
    expect(table).toContain("exits per disk MiB");
    expect(table).toMatch(/pvdisk-ept\s+ept\s+exit 0/);
  }, 180_000);
});
