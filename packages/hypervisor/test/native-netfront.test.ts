/**
 * Two native kernels' netfronts on one host bridge (the toolstack's HostNetwork: netback vifs
 * over xenstored), on EPT and shadow: frames go from one domain to the other and back.
 */
import { describe, expect, it } from "vitest";
import { Netfront, bootFrontends, isFrontendError } from "@vtlab/pv-frontends";
import { HostNetwork, Hypervisor, PvServices, type NativeKernel } from "../src/index.js";

function frame(dst: Uint8Array, src: Uint8Array, payload: string): Uint8Array {
  const p = Uint8Array.from(payload, (c) => c.charCodeAt(0));
  const f = new Uint8Array(14 + Math.max(46, p.length));
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = 0x88;
  f[13] = 0xb5; // IEEE 802 local experimental ethertype
  f.set(p, 14);
  return f;
}

function text(f: Uint8Array): string {
  let s = "";
  for (let i = 14; i < f.length && f[i] !== 0; i++) s += String.fromCharCode(f[i]!);
  return s;
}

for (const hap of [true, false]) {
  describe(`native netfronts on a bridge (${hap ? "EPT" : "shadow"})`, () => {
    it("ping exchanges N frames between two domains through netback and the bridge", () => {
      const hv = new Hypervisor({ memoryMiB: 256, sliceInstructions: 50_000 });
      const pv = new PvServices(hv);
      const net = new HostNetwork(hv, pv.store);
      hv.addDom0Service(() => net.poll());
      const macs: { ping: Uint8Array; pong: Uint8Array; pongUp: boolean } = { ping: new Uint8Array(6), pong: new Uint8Array(6), pongUp: false };
      const log: string[] = [];
      const closed: string[] = [];
      const N = 5;
      const ping: NativeKernel = function* (ops) {
        const f = bootFrontends(ops);
        if (isFrontendError(f)) return void log.push(f.message);
        const n = yield* Netfront.connect(f);
        if (isFrontendError(n)) return void log.push(`ping: ${n.message}`);
        macs.ping = n.macBytes();
        while (!macs.pongUp) yield;
        for (let i = 0; i < N; i++) {
          if (!(yield* n.send(frame(macs.pong, macs.ping, `ping ${i}`)))) log.push("send failed");
          let got: Uint8Array[] = [];
          while (got.length === 0) got = yield* n.waitReceive();
          for (const g of got) log.push(`ping got ${text(g)}`);
        }
        closed.push(`ping ${yield* n.close()}`);
      };
      const pong: NativeKernel = function* (ops) {
        const f = bootFrontends(ops);
        if (isFrontendError(f)) return void log.push(f.message);
        const n = yield* Netfront.connect(f);
        if (isFrontendError(n)) return void log.push(`pong: ${n.message}`);
        macs.pong = n.macBytes();
        macs.pongUp = true;
        for (let i = 0; i < N; ) {
          const got = yield* n.waitReceive();
          for (const g of got) {
            i++;
            yield* n.send(frame(g.subarray(6, 12), macs.pong, `pong for ${text(g)}`));
          }
        }
        closed.push(`pong ${yield* n.close()}`);
      };
      const a = hv.createDomain({ name: "ping", memoryMiB: 16, hap, magicPages: true, native: ping });
      const b = hv.createDomain({ name: "pong", memoryMiB: 16, hap, magicPages: true, native: pong });
      for (const d of [a, b]) {
        const r = pv.attach(d);
        if (typeof r === "string") throw new Error(r);
        net.add(d.id, [{ bridge: "xenbr0" }]);
      }
      hv.run({ maxInstructions: 20_000_000, until: () => a.state !== "running" && b.state !== "running" });
      expect(log).toEqual(Array.from({ length: N }, (_, i) => `ping got pong for ping ${i}`));
      expect(a.state).toBe("shutdown");
      expect(b.state).toBe("shutdown");
      expect(net.log).toEqual([]);
      // Both closed cleanly through the state machine: every grant ended, the backends Closed.
      expect(closed.sort()).toEqual(["ping true", "pong true"]);
      for (const d of [a, b]) expect(pv.store.read(`/local/domain/0/backend/vif/${d.id}/0/state`)).toBe("6");
      // netback's counters: each vif sent and received N frames, none dropped or in error.
      for (const d of [a, b]) expect(net.vifs(d.id)[0]!.vif.counters).toMatchObject({ txPackets: N, rxPackets: N, txErrors: 0, rxErrors: 0, rxDropped: 0 });
    });
  });
}
