/**
 * A native kernel's blkfront against the host's blkback (the toolstack's HostDisks vbd over
 * xenstored), on EPT and shadow: connect through the xenbus state machine, write and read back
 * blocks, flush, and the grants and exits that took.
 */
import { describe, expect, it } from "vitest";
import { Blkfront, bootFrontends, isBlkError, isFrontendError } from "@vtlab/pv-frontends";
import { MemoryBlkStorage, VbdBackend } from "@vtlab/pv-backends";
import { HostDisks, Hypervisor, MemoryBlockBackend, PvServices, type NativeKernel } from "../src/index.js";

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

function machine(hap: boolean, kernel: NativeKernel, sectors = 4096) {
  const hv = new Hypervisor({ memoryMiB: 128, sliceInstructions: 50_000 });
  const pv = new PvServices(hv);
  const disks = new HostDisks(hv, pv.store);
  hv.addDom0Service(() => disks.poll());
  const d = hv.createDomain({ name: "blk", memoryMiB: 16, hap, magicPages: true, native: kernel });
  const a = pv.attach(d);
  if (typeof a === "string") throw new Error(a);
  const image = new MemoryBlockBackend(sectors);
  image.data.set(pattern(512, 7), 0); // sector 0 as the host wrote it
  const vbds = disks.add(d.id, [{ target: "mem", format: "raw", vdev: "xvda", access: "rw" }], image);
  expect(vbds.length).toBe(1);
  return { hv, d, image, disks };
}

for (const hap of [true, false]) {
  describe(`native blkfront against blkback (${hap ? "EPT" : "shadow"})`, () => {
    it("connects, reads the host's sector 0, writes 100 KiB across requests and reads it back, flushes", () => {
      const log: string[] = [];
      let front: Blkfront | undefined;
      const data = pattern(200 * 512, 99);
      const { hv, d, image } = machine(hap, function* (ops) {
        const f = bootFrontends(ops);
        if (isFrontendError(f)) return void log.push(f.message);
        const b = yield* Blkfront.connect(f);
        if (isFrontendError(b)) return void log.push(b.message);
        front = b;
        log.push(`sectors ${b.sectors} persistent ${b.persistent} flush ${b.flushSupported}`);
        const s0 = yield* b.read(0, 1);
        log.push(isBlkError(s0) ? s0.message : `s0 ${Array.from(s0.subarray(0, 4)).join(",")}`);
        const w = yield* b.write(100, data);
        log.push(w === undefined ? "written" : w.message);
        const r = yield* b.read(100, 200);
        log.push(isBlkError(r) ? r.message : `read back ${r.every((x, i) => x === data[i])}`);
        const fl = yield* b.flush();
        log.push(fl === undefined ? "flushed" : fl.message);
        const past = yield* b.read(4095, 2);
        log.push(isBlkError(past) ? "past the end refused" : "past the end read");
      });
      hv.run({ maxInstructions: 400_000_000 });
      const s0 = pattern(512, 7);
      expect(log).toEqual([`sectors 4096 persistent true flush true`, `s0 ${Array.from(s0.subarray(0, 4)).join(",")}`, "written", "read back true", "flushed", "past the end refused"]);
      expect(Array.from(image.data.subarray(100 * 512, 300 * 512)).every((x, i) => x === data[i])).toBe(true);
      expect(d.state).toBe("shutdown");
      // 200 sectors = 25 pages: 3 requests of up to 11 segments each way.
      expect(front!.stats.requests).toBe(1 + 3 + 3 + 1);
      expect(front!.stats.bogusResponses).toBe(0);
      // Persistent grants: data pages granted once and reused.
      expect(front!.stats.grantsMade).toBeLessThanOrEqual(33);
    });
  });
}

describe("native blkfront against a blkback without feature-persistent", () => {
  for (const hap of [true, false]) {
    it(`grants each data page per request and ends every grant after its response (${hap ? "EPT" : "shadow"})`, () => {
      const hv = new Hypervisor({ memoryMiB: 128, sliceInstructions: 50_000 });
      const pv = new PvServices(hv);
      let front: Blkfront | undefined;
      const log: string[] = [];
      const data = pattern(64 * 512, 5);
      const d = hv.createDomain({
        name: "np",
        memoryMiB: 16,
        hap,
        magicPages: true,
        native: function* (ops) {
          const f = bootFrontends(ops);
          if (isFrontendError(f)) return void log.push(f.message);
          const b = yield* Blkfront.connect(f);
          if (isFrontendError(b)) return void log.push(b.message);
          front = b;
          const w = yield* b.write(8, data);
          const r = yield* b.read(8, 64);
          log.push(`persistent ${b.persistent} write ${w === undefined} read ${!isBlkError(r) && r.every((x, i) => x === data[i])}`);
        },
      });
      pv.attach(d);
      const storage = new MemoryBlkStorage(1024);
      const vbd = new VbdBackend(pv.store, hv.dom0, { frontendDomid: d.id, vdev: "xvda", params: "mem", storage }, { persistent: false });
      hv.addDom0Service(() => {
        if (vbd.blkback.hasWork) vbd.blkback.process();
      });
      hv.run({ maxInstructions: 100_000_000, until: () => d.state !== "running" });
      expect(log).toEqual(["persistent false write true read true"]);
      expect(Array.from(storage.data.subarray(8 * 512, 72 * 512)).every((x, i) => x === data[i])).toBe(true);
      // 64 sectors = 8 pages, one request each way: 16 data grants made and 16 ended, none leaked.
      expect(front!.stats).toMatchObject({ grantsMade: 16, grantsEnded: 16, grantsLeaked: 0, requests: 2 });
    });
  }
});

describe("native blkfront closes through the xenbus state machine", () => {
  for (const hap of [true, false]) {
    it(`Closing, the backend disconnects, Closed; every grant (ring and persistent pages) then ends (${hap ? "EPT" : "shadow"})`, () => {
      const log: string[] = [];
      let front: Blkfront | undefined;
      const { hv, d, disks } = machine(hap, function* (ops) {
        const f = bootFrontends(ops);
        if (isFrontendError(f)) return void log.push(f.message);
        const b = yield* Blkfront.connect(f);
        if (isFrontendError(b)) return void log.push(b.message);
        front = b;
        yield* b.write(0, pattern(16 * 512, 3));
        log.push(`close clean ${yield* b.close()}`);
        const after = yield* b.read(0, 1);
        log.push(`after close ${isBlkError(after) ? after.message : "read"}`);
        log.push(`grants in use ${504 - f.grants.freeCount}`);
      });
      hv.run({ maxInstructions: 100_000_000, until: () => d.state !== "running" });
      expect(log).toEqual(["close clean true", "after close closed", "grants in use 0"]);
      expect(front!.stats.grantsLeaked).toBe(0);
      const vbd = disks.vbds(d.id)[0]!.vbd;
      expect(vbd.store.read(`${vbd.backendPath}/state`)).toBe("6");
    });
  }
});
