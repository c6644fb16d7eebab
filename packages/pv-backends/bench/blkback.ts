/**
 * blkback benchmark (JSON lines, wall time around the backend alone): blkif requests per second
 * through one 32-slot ring from memory storage. The frontend is a harness (test/blkback-harness.ts:
 * plain buffers for the granted pages, dom0's grant copy and map with Xen's checks): it writes the
 * same 32 requests again before each batch (one copy of the slots, req_prod += 32, responses consumed), so the time
 * measured is the backend's: req_prod read and checked, each slot copied and validated, the data
 * moved by grant copy (or a persistent mapping), the storage read, the response built and the
 * producer pushed with its notify check. The issue's target: >= 1 M requests/s.
 */
import { measureRates, report } from "@vtlab/bench-harness";
import { BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_RSP_OKAY, read_blkif_response, RING_GET_RESPONSE } from "@vtlab/xen-public";
import { Blkback } from "../src/blkback/blkback.js";
import { MemoryBlkStorage } from "../src/blkback/storage.js";
import { FakeBlkfront, FakeHost } from "../test/blkback-harness.js";

const SLOTS = 32;
const BATCHES = 100; // per timed call: 3200 requests

function ring(op: number, sectorsPerRequest: number, persistent: boolean) {
  const host = new FakeHost(1);
  const storage = new MemoryBlkStorage(65536);
  const bb = new Blkback(host, storage);
  const fe = new FakeBlkfront(host);
  if (bb.connect({ frontendDomid: 1, ringRefs: fe.ringRefs, eventChannel: 3, persistent }) !== undefined) throw new Error("connect");
  for (let i = 0; i < SLOTS; i++) {
    host.grant(10 + i);
    fe.rw(op, i, i * 8, [{ gref: 10 + i, first_sect: 0, last_sect: sectorsPerRequest - 1 }]);
  }
  // The 32 requests as written; a response overwrites its slot (the union), so the frontend
  // writes them again before each batch (one 3.5 KiB copy, what blkfront's writes cost at least).
  const template = fe.ring.slice(0, 64 + SLOTS * 112);
  const view = fe.view;
  const run = () => {
    for (let b = 0; b < BATCHES; b++) {
      fe.ring.set(template.subarray(64), 64);
      const prod = (view.getUint32(0, true) + SLOTS) >>> 0;
      view.setUint32(0, prod, true); // req_prod: the same 32 requests again
      bb.process();
      fe.front.rsp_cons = view.getUint32(8, true);
      view.setUint32(12, (fe.front.rsp_cons + 1) >>> 0, true);
    }
  };
  const check = () => {
    const r = read_blkif_response(view, RING_GET_RESPONSE(fe.front, (fe.front.rsp_cons - 1) >>> 0));
    if (r.status !== BLKIF_RSP_OKAY || bb.halted !== undefined) throw new Error(`bench ring: status ${r.status}, ${bb.halted ?? ""}`);
  };
  return { run, check, bb };
}

const cases = [
  { name: "blkback READ 512 B, grant copy", op: BLKIF_OP_READ, sectors: 1, persistent: false },
  { name: "blkback READ 512 B, persistent grants", op: BLKIF_OP_READ, sectors: 1, persistent: true },
  { name: "blkback READ 4 KiB, grant copy", op: BLKIF_OP_READ, sectors: 8, persistent: false },
  { name: "blkback WRITE 4 KiB, persistent grants", op: BLKIF_OP_WRITE, sectors: 8, persistent: true },
];
const rings = cases.map((c) => ({ ...c, r: ring(c.op, c.sectors, c.persistent) }));
await measureRates(rings.map((c) => ({ name: c.name, unit: "requests/s", opsPerCall: SLOTS * BATCHES, run: c.r.run })));
for (const c of rings) c.r.check();
const copies = rings[0]?.r.bb.counters;
if (copies !== undefined) report({ name: "blkback grant copies per request (READ, copy mode)", value: copies.grantCopies / copies.read, unit: "copies/request" });
