import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { BRIDGE_AGEING_NS, Bridge } from "../src/bridge/bridge.js";
import { NetbackVif } from "../src/netback/index.js";
import { BROADCAST, FakeHost, MAC_A, MAC_B, MAC_C, TestNetfront, ethFrame } from "./netback-fixture.js";

function bridgeWith(n: number, options: { maxEntries?: number } = {}) {
  let now = 0;
  const br = new Bridge("xenbr0", { now: () => now, ...options });
  const got: Uint8Array[][] = [];
  const ports = Array.from({ length: n }, (_, i) => {
    got.push([]);
    return br.attach(`p${i}`, (f) => {
      got[i]?.push(f);
      return true;
    });
  });
  return { br, ports, got, advance: (ns: number) => (now += ns) };
}

describe("bridge", () => {
  it("floods unknown unicast and broadcast, then forwards to the learned port only", () => {
    const { ports, got, br } = bridgeWith(3);
    const [p0, p1, p2] = ports;
    p0?.input(ethFrame(MAC_B, MAC_A)); // B unknown: flood to p1, p2; learn A on p0
    expect(got.map((g) => g.length)).toEqual([0, 1, 1]);
    p1?.input(ethFrame(MAC_A, MAC_B)); // A known on p0
    expect(got.map((g) => g.length)).toEqual([1, 1, 1]);
    p0?.input(ethFrame(MAC_B, MAC_A)); // B learned on p1
    expect(got.map((g) => g.length)).toEqual([1, 2, 1]);
    p2?.input(ethFrame(BROADCAST, MAC_C));
    expect(got.map((g) => g.length)).toEqual([2, 3, 1]);
    expect(br.counters).toMatchObject({ forwarded: 2, flooded: 2 });
    expect(p0?.counters).toMatchObject({ inFrames: 2, outFrames: 2 });
    expect(br.lookup(Uint8Array.from(MAC_C))).toBe(p2);
  });

  it("drops short frames, multicast or zero source MACs, and hairpin frames; counts them per port", () => {
    const { ports, got, br } = bridgeWith(2);
    const [p0, p1] = ports;
    p0?.input(new Uint8Array(13));
    p0?.input(ethFrame(MAC_B, [0x01, 0, 0, 0, 0, 1]));
    p0?.input(ethFrame(MAC_B, [0, 0, 0, 0, 0, 0]));
    p0?.input(ethFrame(MAC_B, MAC_A)); // flood
    p1?.input(ethFrame(MAC_C, MAC_B)); // flood, learn B on p1
    p1?.input(ethFrame(MAC_B, MAC_C)); // to B's own port: hairpin, dropped
    expect(p0?.counters.inDropped).toBe(3);
    expect(p1?.counters.inDropped).toBe(1);
    expect(br.counters.dropped).toBe(4);
    expect(got.map((g) => g.length)).toEqual([1, 1]);
  });

  it("ages entries out on modelled time", () => {
    const { ports, got, advance, br } = bridgeWith(3);
    ports[0]?.input(ethFrame(MAC_B, MAC_A));
    advance(BRIDGE_AGEING_NS);
    ports[1]?.input(ethFrame(MAC_A, MAC_B)); // A aged: flooded to p0 and p2
    expect(got.map((g) => g.length)).toEqual([1, 1, 2]);
    br.age();
    expect(br.lookup(Uint8Array.from(MAC_A))).toBeUndefined();
  });

  it("a port whose sink refuses counts outDropped; a detached port gets nothing and its MACs are forgotten", () => {
    const br = new Bridge("b", { now: () => 0 });
    const p0 = br.attach("p0", () => true);
    const p1 = br.attach("p1", () => false);
    p0.input(ethFrame(MAC_B, MAC_A));
    expect(p1.counters.outDropped).toBe(1);
    p1.input(ethFrame(MAC_A, MAC_B));
    p1.detach();
    expect(br.lookup(Uint8Array.from(MAC_B))).toBeUndefined();
    expect(br.ports).toEqual([p0]);
    p1.input(ethFrame(MAC_A, MAC_B));
    expect(p0.counters.outFrames).toBe(1);
  });

  it("fast-check: the table never exceeds its bound whatever sources a guest sends from", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 6, maxLength: 6 }), { maxLength: 300 }), (macs) => {
        const { ports, br } = bridgeWith(2, { maxEntries: 32 });
        for (const m of macs) ports[0]?.input(ethFrame(MAC_B, [...m]));
        expect(br.entries).toBeLessThanOrEqual(32);
        const valid = new Set(macs.filter((m) => !((m[0] ?? 0) & 1) && m.some((b) => b !== 0)).map((m) => m.join(":")));
        expect(br.entries).toBe(Math.min(32, valid.size));
      }),
    );
  });

  it("two netback vifs on one bridge: a frame from A's frontend reaches B's frontend byte for byte", () => {
    const host = new FakeHost();
    const br = new Bridge("xenbr0", { now: () => host.nowNs });
    const feA = new TestNetfront(host, 1);
    const feB = new TestNetfront(host, 2);
    const vifA = new NetbackVif({ host, domid: 1, handle: 0, now: () => host.nowNs });
    const vifB = new NetbackVif({ host, domid: 2, handle: 0, now: () => host.nowNs });
    for (const [vif, fe] of [
      [vifA, feA],
      [vifB, feB],
    ] as const) {
      expect(vif.connect(fe.connection)).toBeUndefined();
      const port = br.attach(vif.name, (f) => vif.receive(f));
      vif.onFrame = (f) => port.input(f);
    }
    feA.postRx(8);
    feB.postRx(8);
    host.dispatch();
    const ping = ethFrame(BROADCAST, MAC_A, 42, 1);
    feA.send(ping);
    host.dispatch();
    feB.poll();
    expect(feB.received).toEqual([ping]);
    const pong = ethFrame(MAC_A, MAC_B, 1514, 2);
    feB.send(pong);
    host.dispatch();
    feA.poll();
    expect(feA.received).toEqual([pong]);
    expect(vifA.counters).toMatchObject({ txPackets: 1, rxPackets: 1 });
    expect(vifB.counters).toMatchObject({ txPackets: 1, rxPackets: 1 });
    expect(br.counters).toMatchObject({ flooded: 1, forwarded: 1 });
  });

  it("a stalled frontend on the bridge does not hold up the others (CVE-2021-28715)", () => {
    const host = new FakeHost();
    const br = new Bridge("xenbr0", { now: () => host.nowNs });
    const fes = [1, 2, 3].map((d) => new TestNetfront(host, d));
    const vifs = fes.map((fe) => {
      const vif = new NetbackVif({ host, domid: fe.domid, handle: 0, now: () => host.nowNs });
      vif.connect(fe.connection);
      const port = br.attach(vif.name, (f) => vif.receive(f));
      vif.onFrame = (f) => port.input(f);
      return vif;
    });
    // Domain 3 never posts RX buffers; domain 2 does, and keeps reading.
    for (let i = 0; i < 2000; i++) {
      if (i % 100 === 0) fes[1]?.postRx(100);
      fes[0]?.send(ethFrame(BROADCAST, MAC_A, 1000, i));
      host.dispatch();
      fes[1]?.poll();
      fes[0]?.poll();
    }
    expect(fes[1]?.received).toHaveLength(2000);
    expect(vifs[2]?.rxQueue.bytes).toBeLessThanOrEqual(512 * 1024);
    expect((vifs[2]?.counters.rxDropped ?? 0) + (vifs[2]?.rxQueue.packets ?? 0)).toBe(2000);
  });
});
