/**
 * PV I/O end to end: the reference kernel's C PV drivers (@vtlab/guests c/kernel/xen: platform
 * device, hypercall page, grant table, xenbus over the xenstore ring, blkfront, netfront)
 * against dom0's xenstored, blkback, netback and bridge (@vtlab/pv-backends), composed by the
 * toolstack from xl configs (`disk = [... vdev=xvda ...]`, `vif = [...]`), on EPT and on shadow.
 *
 * - `pvdisk` prints images/kernel-pvdisk.expected: the `disk` checksum, through blkfront.
 * - `net`: two domains on one bridge, ARP then ICMP echo, both consoles as expected.
 * - Relations, never wall time: VM exits per disk MiB through blkfront are at least 50x fewer
 *   than through emulated ATA PIO, and modelled time per MiB is lower. Per MiB is measured as a
 *   difference of two runs (256 KiB and 512 KiB of data), so what both runs share (boot,
 *   xenbus negotiation, IDENTIFY) cancels out and only the per-byte cost is left.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { runYielding } from "./run-yielding.js";
import { referenceKernelPvExpectedOutputUrl, referenceKernelUrl } from "@vtlab/guests";
import { GNTST_okay, GNTST_bad_copy_arg } from "@vtlab/xen-public";
import { Blkfront, bootFrontends, isBlkError, isFrontendError } from "@vtlab/pv-frontends";
import { Hypervisor, MemoryBlockBackend, Toolstack, parseDomainConfig, type Domain, type NativeKernel } from "@vtlab/hypervisor";

const kernel = new Uint8Array(readFileSync(referenceKernelUrl()));
const expected = (w: "pvdisk" | "net-ping" | "net-pong") => readFileSync(referenceKernelPvExpectedOutputUrl(w), "utf8");
const BUDGET = 1_000_000_000;

function ok(d: Domain): void {
  expect({ name: d.name, state: d.state, code: d.exitCode, crash: d.crashReason }).toEqual({ name: d.name, state: "shutdown", code: 0, crash: undefined });
}

const XVDA = 51712; // (202 << 8) | 0

/** A host whose toolstack builds domains from config text, with the reference kernel and an 8192-sector disk each. */
function host() {
  const hv = new Hypervisor({ memoryMiB: 256 });
  const toolstack = new Toolstack(hv, { resources: () => ({ kernel, disk: new MemoryBlockBackend(8192) }) });
  const create = (text: string) => toolstack.create(parseDomainConfig(`kernel = "kernel.elf"\n${text}`, "<pv-io>"), "<pv-io>").domain;
  return { hv, toolstack, create };
}

async function runPvdisk(hap: boolean, args = "") {
  const { hv, toolstack, create } = host();
  const d = create(`name = "pvdisk"\nmemory = 64\nhap = ${hap ? 1 : 0}\ncmdline = "workload=pvdisk ${args}"\ndisk = [ "format=raw, vdev=xvda, access=rw, target=x.img" ]\n`);
  await runYielding(toolstack, { maxInstructions: BUDGET });
  const vbd = toolstack.disks.vbds(d.id).find((v) => v.devid === XVDA)!.vbd;
  return { hv, d, toolstack, vbd: vbd.blkback };
}

async function runDisk(hap: boolean, args: string) {
  const hv = new Hypervisor({ memoryMiB: 256 });
  const d = hv.createDomain({ name: "disk", memoryMiB: 64, hap, kernel, cmdline: `workload=disk ${args}`, disk: new MemoryBlockBackend(8192) });
  await runYielding(hv, { maxInstructions: BUDGET });
  return { hv, d };
}

interface Cost {
  exits: number;
  cycles: number;
}
const cost = (d: Domain): Cost => {
  const s = d.stats();
  return { exits: s.vmExits, cycles: s.modelledCycles };
};
/** Per MiB between a 256 KiB and a 512 KiB run. */
const perMiB = (small: Cost, large: Cost): Cost => ({ exits: (large.exits - small.exits) * 4, cycles: (large.cycles - small.cycles) * 4 });

describe.each([
  ["EPT", true],
  ["shadow", false],
])("PV I/O on %s", (_mode, hap) => {
  it("pvdisk prints images/kernel-pvdisk.expected: the disk checksum through blkfront", { timeout: 120_000 }, async () => {
    const { d, toolstack, vbd } = await runPvdisk(hap);
    ok(d);
    expect(d.console).toBe(expected("pvdisk"));
    expect(toolstack.disks.log).toEqual([]);
    // 2 MiB in 8 batches of 64 pages (6 requests each), then one flush; read back the same way.
    expect(vbd.counters).toMatchObject({ write: 48, read: 48, flush: 1, sectorsWritten: 4096, sectorsRead: 4096, errBadGrant: 0, bogusRings: 0 });
    // The kernel unplugged the emulated disk (the same image) through the platform device.
    expect(d.stats().disksUnplugged).toBe(1);
    // blkfront closed the device at the end (Closing, Closed): blkback let go of the ring.
    expect(vbd.connected).toBe(false);
    const x = d.stats().xen;
    expect(x.hypercalls.grant_table_op ?? 0).toBe(0); // the frontend only writes its grant entries
    expect(x.hypercalls.event_channel_op).toBeGreaterThan(0);
    expect(x.hypercalls.sched_op).toBeGreaterThan(0); // SCHEDOP_poll
    expect(x.upcallsInjected).toBeGreaterThan(0); // events through the callback vector
  });

  it("VM exits per disk MiB through blkfront are at least 50x fewer than through ATA PIO; modelled time per MiB at least 10x lower", { timeout: 300_000 }, async () => {
    const pv = perMiB(cost((await runPvdisk(hap, "kib=256")).d), cost((await runPvdisk(hap, "kib=512")).d));
    const runs = [await runDisk(hap, "kib=256"), await runDisk(hap, "kib=512")];
    for (const r of runs) ok(r.d);
    const ata = perMiB(cost(runs[0]!.d), cost(runs[1]!.d));
    expect(pv.exits).toBeGreaterThan(0);
    expect(ata.exits).toBeGreaterThanOrEqual(50 * pv.exits);
    // Measured: 108x fewer exits (48 vs 5180 per MiB of data) and 17.8x less modelled time per MiB, on EPT and on shadow.
    expect(ata.cycles).toBeGreaterThanOrEqual(10 * pv.cycles);
  });

  it("net: two domains on one bridge exchange ARP and 10 ICMP echo requests and replies", { timeout: 120_000 }, async () => {
    const { toolstack, create } = host();
    const conf = (name: string, role: string, mac: string) =>
      `name = "${name}"\nmemory = 64\nhap = ${hap ? 1 : 0}\ncmdline = "workload=net role=${role}"\nvif = [ "mac=${mac}, bridge=xenbr0" ]\n`;
    const ping = create(conf("ping", "ping", "00:16:3e:00:00:01"));
    const pong = create(conf("pong", "pong", "00:16:3e:00:00:02"));
    await runYielding(toolstack, { maxInstructions: BUDGET });
    const a = toolstack.network.vifs(ping.id)[0]!.vif;
    const b = toolstack.network.vifs(pong.id)[0]!.vif;
    const bridge = toolstack.network.bridge("xenbr0");
    ok(ping);
    ok(pong);
    expect(ping.console).toBe(expected("net-ping"));
    expect(pong.console).toBe(expected("net-pong"));
    expect(toolstack.network.log).toEqual([]);
    // ARP request and reply, then 10 echo requests and 10 replies: 11 frames each way.
    for (const v of [a, b]) expect(v.counters).toMatchObject({ txPackets: 11, rxPackets: 11, txErrors: 0, rxDropped: 0 });
    expect(bridge.counters.flooded).toBeGreaterThanOrEqual(1); // the broadcast ARP request
  });
});

/** The disk workloads' pattern (kernel.c splitmix): qword k of sector `lba`, little-endian. */
function splitmix(x: bigint): bigint {
  const M = (1n << 64n) - 1n;
  x = (x + 0x9e3779b97f4a7c15n) & M;
  x = ((x ^ (x >> 30n)) * 0xbf58476d1ce4e5b9n) & M;
  x = ((x ^ (x >> 27n)) * 0x94d049bb133111ebn) & M;
  return x ^ (x >> 31n);
}

describe.each([
  ["EPT", true],
  ["shadow", false],
])("the C kernel and a TypeScript native kernel on the same blkback (%s)", (_mode, hap) => {
  it("what the C kernel's blkfront wrote, the native blkfront reads back, sector for sector", { timeout: 120_000 }, async () => {
    const hv = new Hypervisor({ memoryMiB: 256, sliceInstructions: 50_000 });
    const image = new MemoryBlockBackend(8192);
    const toolstack = new Toolstack(hv, { resources: () => ({ kernel, disk: image }) });
    const c = toolstack.create(parseDomainConfig(`kernel = "k"\nname = "c"\nmemory = 64\nhap = ${hap ? 1 : 0}\ncmdline = "workload=pvdisk kib=64 lba=64"\ndisk = [ "format=raw, vdev=xvda, access=rw, target=x.img" ]\n`, "<pv-io>"), "<pv-io>").domain;
    await runYielding(toolstack, { maxInstructions: BUDGET });
    ok(c);
    const log: string[] = [];
    let got: Uint8Array | undefined;
    const native: NativeKernel = function* (ops) {
      const f = bootFrontends(ops);
      if (isFrontendError(f)) return void log.push(f.message);
      const b = yield* Blkfront.connect(f);
      if (isFrontendError(b)) return void log.push(b.message);
      const r = yield* b.read(64, 128);
      if (isBlkError(r)) return void log.push(r.message);
      got = r;
    };
    const n = hv.createDomain({ name: "native", memoryMiB: 16, hap, magicPages: true, native });
    const a = toolstack.pv.attach(n);
    if (typeof a === "string") throw new Error(a);
    expect(toolstack.disks.add(n.id, [{ target: "mem", format: "raw", vdev: "xvda", access: "rw" }], image)).toHaveLength(1);
    await runYielding(toolstack, { maxInstructions: 400_000_000 });
    expect(log).toEqual([]);
    expect(got).toBeDefined();
    const v = new DataView(got!.buffer, got!.byteOffset, got!.byteLength);
    let bad = 0;
    for (let i = 0; i < 128; i++) for (let k = 0; k < 64; k++) if (v.getBigUint64(i * 512 + k * 8, true) !== splitmix((BigInt(64 + i) << 6n) | BigInt(k))) bad++;
    expect(bad).toBe(0);
  });
});

describe.each([
  ["EPT", true],
  ["shadow", false],
])("a hostile backend against the C blkfront (%s)", (_mode, hap) => {
  it("a response producer moved past the ring: blkfront refuses it, FAIL, exit 1; the host runs on", { timeout: 120_000 }, async () => {
    const { hv, toolstack, create } = host();
    const d = create(`name = "victim"\nmemory = 64\nhap = ${hap ? 1 : 0}\ncmdline = "workload=pvdisk kib=512"\ndisk = [ "format=raw, vdev=xvda, access=rw, target=x.img" ]\n`);
    const other = create(`name = "other"\nmemory = 64\nhap = ${hap ? 1 : 0}\ncmdline = "workload=pvdisk kib=64"\ndisk = [ "format=raw, vdev=xvda, access=rw, target=y.img" ]\n`);
    let corrupted = false;
    await runYielding(toolstack, {
      maxInstructions: BUDGET,
      onSlice: () => {
        const b = toolstack.disks.vbds(d.id)[0]?.vbd.blkback;
        if (corrupted || b === undefined || b.counters.responses === 0) return;
        // The first grant the kernel made is its ring page (GNTTAB_NR_RESERVED_ENTRIES = 8).
        const ring = hv.dom0.grants.map(d.id, 8);
        if (typeof ring === "number") throw new Error(`ring: GNTST ${ring}`);
        const r = ring.read(8, 4)!;
        const p = new DataView(r.buffer, r.byteOffset, 4).getUint32(0, true); // sring.rsp_prod
        const bogus = new Uint8Array(4);
        new DataView(bogus.buffer).setUint32(0, (p + 1000) >>> 0, true);
        ring.write(8, bogus);
        hv.dom0.grants.unmap(ring);
        corrupted = true;
      },
    });
    expect(corrupted).toBe(true);
    expect({ state: d.state, code: d.exitCode }).toEqual({ state: "shutdown", code: 1 });
    expect(d.console).toMatch(/blkfront: illegal number of responses \(rsp_prod \d+, rsp_cons \d+\)\nFAIL pvdisk: (write|read) of \d+ sectors at \d+ failed/);
    ok(other);
    expect(other.console).toMatch(/^PASS pvdisk [0-9a-f]{16}$/m);
  });
});

describe("the PV workloads without their devices", () => {
  it("pvdisk without a vbd, net without a vif, pvdisk without xenstore: a FAIL line naming what is missing, exit code 1", { timeout: 120_000 }, async () => {
    const { toolstack, create, hv } = host();
    const nodisk = create(`name = "nodisk"\nmemory = 64\ncmdline = "workload=pvdisk"\n`);
    const novif = create(`name = "novif"\nmemory = 64\ncmdline = "workload=net role=ping"\n`);
    const bare = hv.createDomain({ name: "bare", memoryMiB: 64, kernel, cmdline: "workload=pvdisk" }); // no special pages, no xenstore
    await runYielding(toolstack, { maxInstructions: BUDGET });
    for (const d of [nodisk, novif, bare]) expect({ name: d.name, state: d.state, code: d.exitCode }).toEqual({ name: d.name, state: "shutdown", code: 1 });
    expect(nodisk.console).toContain("blkfront: device/vbd/51712 has no backend\nFAIL pvdisk: blkfront did not connect on device/vbd/51712");
    expect(novif.console).toContain("netfront: device/vif/0 has no backend\nFAIL net: netfront did not connect on device/vif/0");
    expect(bare.console).toContain("xen: no xenstore (HVM_PARAM_STORE_PFN/EVTCHN)\nFAIL pvdisk: no Xen PV platform");
  });
});

describe("dom0's grant copy with a backend buffer (what blkback does with a multi-page request)", () => {
  it("takes the buffer side's offset as an offset into its bytes, checked against their length", async () => {
    const { hv, d } = await runPvdisk(true, "kib=4");
    ok(d);
    // After the run (blkfront ended its grants when it closed) dom0 grants itself a page as the
    // kernel did: entry 9 of the grant frame at the start of the platform BAR, a RAM page at 8 MiB.
    const entry = new Uint8Array(8);
    new DataView(entry.buffer).setUint16(0, 1, true); // GTF_permit_access, domid 0
    new DataView(entry.buffer).setUint32(4, 0x800, true);
    d.writeGuest(0xf000_0000 + 9 * 8, entry);
    const buf = new Uint8Array(3 * 4096).fill(0x11);
    buf.fill(0x77, 8192, 12288);
    const g = hv.dom0.grants;
    expect(g.copy([{ source: { bytes: buf, offset: 8192 }, dest: { domid: d.id, ref: 9, offset: 0 }, len: 4096 }])).toEqual([GNTST_okay]);
    const back = new Uint8Array(2 * 4096);
    expect(g.copy([{ source: { domid: d.id, ref: 9, offset: 0 }, dest: { bytes: back, offset: 4096 }, len: 4096 }])).toEqual([GNTST_okay]);
    expect(back.subarray(4096).every((b) => b === 0x77)).toBe(true);
    expect(back.subarray(0, 4096).every((b) => b === 0)).toBe(true);
    // Past the buffer, or a negative offset: GNTST_bad_copy_arg, nothing copied.
    expect(g.copy([{ source: { bytes: buf, offset: 3 * 4096 - 100 }, dest: { domid: d.id, ref: 9, offset: 0 }, len: 4096 }])).toEqual([GNTST_bad_copy_arg]);
    expect(g.copy([{ source: { bytes: buf, offset: -1 }, dest: { domid: d.id, ref: 9, offset: 0 }, len: 16 }])).toEqual([GNTST_bad_copy_arg]);
    expect(g.copy([{ source: { bytes: buf, offset: 4 * 4096 }, dest: { domid: d.id, ref: 9, offset: 0 }, len: 0 }])).toEqual([GNTST_bad_copy_arg]);
  });
});
