/**
 * Bridge benchmark (JSON lines, wall time): Ethernet frames per second from one netback vif to
 * another through the software bridge, the harness playing both netfronts (test/netback-fixture.ts:
 * rings and buffers in granted pages of a FakeHost, grant copy on both sides). Each call sends a
 * batch of 64 frames from A (one push, one event), dispatches dom0's events, and B collects them
 * and reposts its RX buffers. Frame sizes: 64 bytes (minimum Ethernet) and 1514 (a full MTU frame).
 */
import { measureRates } from "@vtlab/bench-harness";
import { Bridge } from "../src/bridge/bridge.js";
import { NetbackVif } from "../src/netback/index.js";
import { FakeHost, MAC_A, MAC_B, TestNetfront, ethFrame } from "../test/netback-fixture.js";

const BATCH = 64;

function pair(size: number): () => void {
  const host = new FakeHost();
  const br = new Bridge("xenbr0", { now: () => host.nowNs });
  const fa = new TestNetfront(host, 1);
  const fb = new TestNetfront(host, 2);
  for (const fe of [fa, fb]) {
    const vif = new NetbackVif({ host, domid: fe.domid, handle: 0, now: () => host.nowNs });
    const err = vif.connect(fe.connection);
    if (err !== undefined) throw new Error(`connect: ${JSON.stringify(err)}`);
    const port = br.attach(vif.name, (f) => vif.receive(f));
    vif.onFrame = (f) => port.input(f);
  }
  // B's address learned, so A's frames are forwarded (not flooded).
  fb.postRx(BATCH);
  fb.send(ethFrame(MAC_A, MAC_B, 64));
  host.dispatch();
  fa.poll();
  const frame = ethFrame(MAC_B, MAC_A, size);
  return () => {
    for (let i = 0; i < BATCH; i++) fa.send(frame, { push: false });
    fa.pushTx();
    host.dispatch();
    fa.poll();
    fb.poll();
    if (fb.received.length !== BATCH) throw new Error(`received ${fb.received.length} of ${BATCH}`);
    fb.received.length = 0;
    fb.rxStatuses.length = 0;
    fa.txStatuses.length = 0;
    fb.postRx(BATCH);
    host.dispatch();
  };
}

await measureRates(
  [64, 1514].map((size) => ({ name: `pv-backends.bridge-frames-per-second.${size}B`, unit: "frames/s", opsPerCall: BATCH, run: pair(size) })),
);
