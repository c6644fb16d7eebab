/**
 * xenstored benchmark (JSON lines, wall time around the store alone): xenstore requests per
 * second through one domain's 1 KiB request ring (the guest side is test/xenstored-harness.ts
 * over a plain page: it fills the ring with XS_READ or XS_WRITE requests, notifies, and consumes
 * the replies), and dom0's in-process writes per second with one watch firing on each.
 */
import { measureRates } from "@vtlab/bench-harness";
import { XS_READ, XS_WRITE } from "@vtlab/xen-public";
import { XenStore } from "../src/xenstored/store.js";
import { FakeHost, GuestXs } from "../test/xenstored-harness.js";

function ringCase(type: number, payload: string) {
  const xs = new XenStore();
  xs.mkdir("/local/domain/1");
  xs.setPerms("/local/domain/1", [{ domid: 1, perm: "n" }]);
  xs.write("/local/domain/1/name", "guest");
  const g = new GuestXs(new FakeHost(), xs, 1);
  const one = g.encode(type, payload);
  const perFill = Math.floor(1024 / one.length);
  const batch = new Uint8Array(one.length * perFill);
  for (let i = 0; i < perFill; i++) batch.set(one, i * one.length);
  let replies = 0;
  const run = () => {
    g.sendRaw(batch);
    replies += g.receive().length;
  };
  return { run, perFill, check: () => replies > 0 && xs.connection(1)?.ignored === false };
}

const read = ringCase(XS_READ, "name\0");
const write = ringCase(XS_WRITE, "data/x\0value");
const dom0 = new XenStore();
let fired = 0;
dom0.watch("/local/domain/1", "t", () => fired++);
let n = 0;
await measureRates([
  { name: "xenstored XS_READ through the ring", unit: "requests/s", opsPerCall: read.perFill, run: read.run },
  { name: "xenstored XS_WRITE through the ring", unit: "requests/s", opsPerCall: write.perFill, run: write.run },
  { name: "xenstored dom0 write with a watch firing", unit: "writes/s", opsPerCall: 100, run: () => {
    for (let i = 0; i < 100; i++) dom0.write(`/local/domain/1/k${n++ % 1000}`, "v");
  } },
]);
if (!read.check() || !write.check() || fired === 0) throw new Error("xenstored bench: no replies");
