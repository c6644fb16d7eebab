/**
 * The frontends treat the backend's bytes as hostile too: a fake dom0 xenstored that answers
 * with an oversized reply or floods watch events, ring responses past the requests made, a
 * console ring with corrupt indices, grant refs exhausted or reserved. The kernel gets an error
 * value, its memory stays bounded, and the domain runs on to a clean shutdown (EPT and shadow).
 */
import { describe, expect, it } from "vitest";
import { FrontRing, MAX_QUEUED_WATCH_EVENTS, PvConsole, bootFrontends, isFrontendError, isXsError, type Frontends } from "@vtlab/pv-frontends";
import { XS_WATCH_EVENT, xencons_interface, xenstore_domain_interface as XSI } from "@vtlab/xen-public";
import { Hypervisor, type Domain } from "../src/index.js";

function run(hap: boolean, body: (f: Frontends, log: string[]) => Generator<void, void, void>, dom0?: (d: Domain, hv: Hypervisor) => void) {
  const hv = new Hypervisor({ memoryMiB: 128, sliceInstructions: 50_000 });
  const log: string[] = [];
  const d = hv.createDomain({
    name: "h",
    memoryMiB: 16,
    hap,
    magicPages: true,
    native: function* (ops) {
      const f = bootFrontends(ops);
      if (isFrontendError(f)) return void log.push(f.message);
      yield* body(f, log);
    },
  });
  hv.run({ maxInstructions: 20_000_000, onSlice: () => dom0?.(d, hv), until: () => d.state !== "running" });
  return { d, log };
}

/** A fake xenstored: map the store page (grant ref 1), bind the store port, answer with `reply` once a request arrived. */
function fakeXenstored(reply: (page: { write(off: number, b: Uint8Array): boolean }) => number) {
  let state: { map: ReturnType<Hypervisor["dom0"]["grants"]["map"]>; port: number; done: boolean } | undefined;
  return (d: Domain, hv: Hypervisor) => {
    if (state === undefined) {
      state = { map: hv.dom0.grants.map(d.id, 1), port: hv.dom0.evtchn.bindInterdomain(d.id, d.magicPages!.storeEvtchn), done: false };
    }
    const m = state.map;
    if (typeof m !== "object" || state.done) return;
    const prod = new DataView(m.read(XSI.req_prod, 4)!.buffer).getUint32(0, true);
    if (prod === 0) return;
    const rspProd = reply(m);
    const v = new Uint8Array(4);
    new DataView(v.buffer).setUint32(0, rspProd, true);
    m.write(XSI.rsp_prod, v);
    hv.dom0.evtchn.send(state.port);
    state.done = true;
  };
}

function header(type: number, reqId: number, len: number): Uint8Array {
  const h = new Uint8Array(16);
  const v = new DataView(h.buffer);
  v.setUint32(0, type, true);
  v.setUint32(4, reqId, true);
  v.setUint32(12, len, true);
  return h;
}

for (const hap of [true, false]) {
  describe(`frontends against a hostile backend (${hap ? "EPT" : "shadow"})`, () => {
    it("a xenstore reply longer than XENSTORE_PAYLOAD_MAX stops the connection: EIO, not a 5000-byte buffer", () => {
      const { d, log } = run(
        hap,
        function* (f, log) {
          const r = yield* f.xenbus!.read("name");
          log.push(isXsError(r) ? r.error : r);
          log.push(`broken ${f.xenbus!.broken !== undefined}`);
          const again = yield* f.xenbus!.read("name");
          log.push(isXsError(again) ? again.error : again);
        },
        fakeXenstored((m) => {
          m.write(XSI.rsp, header(2, 1, 5000));
          return 16;
        }),
      );
      expect(log).toEqual(["EIO", "broken true", "EIO"]);
      expect(d.state).toBe("shutdown");
    });

    it("a response producer index past what the ring holds is refused", () => {
      const { d, log } = run(
        hap,
        function* (f, log) {
          const r = yield* f.xenbus!.read("name");
          log.push(isXsError(r) ? r.error : r);
        },
        fakeXenstored(() => 0x10_0000),
      );
      expect(log).toEqual(["EIO"]);
      expect(d.state).toBe("shutdown");
    });

    it("a flood of watch events keeps MAX_QUEUED_WATCH_EVENTS and counts the rest as dropped", () => {
      const events = 400;
      let queued = -1;
      let dropped = -1;
      const { d } = run(
        hap,
        function* (f) {
          const xs = f.xenbus!;
          // Read events without ever taking them: the queue must stay bounded.
          yield* xs.request(2, Uint8Array.from([110, 0]));
          queued = xs.watchEvents.length;
          dropped = xs.watchEventsDropped;
        },
        (() => {
          // Stream the events through the 1 KiB ring a chunk at a time, then the reply.
          let map: ReturnType<Hypervisor["dom0"]["grants"]["map"]> | undefined;
          let port = -1;
          let sent = 0;
          let prod = 0;
          let replied = false;
          return (dm: Domain, hv: Hypervisor) => {
            if (map === undefined) {
              map = hv.dom0.grants.map(dm.id, 1);
              port = hv.dom0.evtchn.bindInterdomain(dm.id, dm.magicPages!.storeEvtchn);
            }
            const m = map;
            if (typeof m !== "object" || replied) return;
            const rd = (o: number) => new DataView(m.read(o, 4)!.buffer).getUint32(0, true);
            if (rd(XSI.req_prod) === 0) return;
            const cons = rd(XSI.rsp_cons);
            const put = (bytes: Uint8Array) => {
              for (let i = 0; i < bytes.length; i++) m.write(XSI.rsp + ((prod + i) & 1023), bytes.subarray(i, i + 1));
              prod += bytes.length;
            };
            const ev = Uint8Array.from([...header(XS_WATCH_EVENT, 0, 4), 97, 0, 116, 0]);
            while (sent < events && prod - cons + ev.length <= 1024) {
              put(ev);
              sent++;
            }
            if (sent === events && prod - cons + 19 <= 1024) {
              put(Uint8Array.from([...header(2, 1, 3), 111, 107, 0]));
              replied = true;
            }
            const v = new Uint8Array(4);
            new DataView(v.buffer).setUint32(0, prod, true);
            m.write(XSI.rsp_prod, v);
            hv.dom0.evtchn.send(port);
          };
        })(),
      );
      expect(queued).toBe(MAX_QUEUED_WATCH_EVENTS);
      expect(dropped).toBe(events - MAX_QUEUED_WATCH_EVENTS);
      expect(d.state).toBe("shutdown");
    });

    it("a front ring whose rsp_prod runs past the requests made is broken, not followed", () => {
      // eslint-disable-next-line require-yield -- nothing to wait for
      const { log } = run(hap, function* (f, log) {
        const page = f.pages.alloc()!;
        const ring = new FrontRing(f.mem, page, 112);
        ring.init();
        ring.reqProdPvt = 1;
        ring.pushRequests();
        f.mem.write32(page + 8, 40); // the "backend" claims 40 responses to 1 request
        log.push(`size ${ring.size} unconsumed ${String(ring.unconsumed())} broken ${ring.broken !== undefined}`);
      });
      expect(log).toEqual(["size 32 unconsumed undefined broken true"]);
    });

    it("a console ring with corrupt indices stops the console", () => {
      const { log } = run(hap, function* (f, log) {
        const c = f.console!;
        f.mem.write32(c.ring + xencons_interface.out_cons, 0x8000_0000); // the backend's index
        log.push(`write ${yield* c.write("x")} broken ${c.broken}`);
        const fresh = new PvConsole(f.mem, f.evtchn, c.ring, c.port);
        f.mem.write32(c.ring + xencons_interface.in_prod, 5000);
        log.push(`read ${fresh.read().length} broken ${fresh.broken}`);
      });
      expect(log).toEqual(["write false broken true", "read 0 broken true"]);
    });

    it("grant refs are bounded: exhausted refs answer undefined, reserved and foreign refs are never freed", () => {
      // eslint-disable-next-line require-yield -- nothing to wait for
      const { log } = run(hap, function* (f, log) {
        const g = f.grants;
        const n = g.freeCount;
        const refs: number[] = [];
        for (let r = g.grantAccess(0, 0x300); r !== undefined; r = g.grantAccess(0, 0x300)) refs.push(r);
        log.push(`granted ${refs.length} of ${n}, then ${String(g.grantAccess(0, 0x300))}`);
        log.push(`end reserved ${g.endAccess(1)} end unknown ${g.endAccess(100_000)}`);
        for (const r of refs) g.endAccess(r);
        log.push(`free again ${g.freeCount}`);
      });
      expect(log).toEqual(["granted 504 of 504, then undefined", "end reserved false end unknown false", "free again 504"]);
    });
  });
}
