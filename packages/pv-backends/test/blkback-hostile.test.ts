// Hostile frontends against blkback: each XSA class of issue 13 that concerns a blkif ring.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_OP_WRITE_BARRIER,
  BLKIF_RSP_ERROR,
  BLKIF_RSP_OKAY,
  blkif_request,
  blkif_response,
} from "@vtlab/xen-public";
import { Blkback } from "../src/blkback/blkback.js";
import { MemoryBlkStorage } from "../src/blkback/storage.js";
import { FakeBlkfront, FakeHost } from "./blkback-harness.js";

const DOMID = 1;

function setup(opts: { persistent?: boolean; readonly?: boolean; maxIndirect?: number } = {}) {
  const host = new FakeHost(DOMID);
  const storage = new MemoryBlkStorage(1024, { readonly: opts.readonly === true });
  const log: string[] = [];
  const bb = new Blkback(host, storage, { log: (l) => log.push(l), ...(opts.maxIndirect !== undefined ? { maxIndirectSegments: opts.maxIndirect } : {}) });
  const fe = new FakeBlkfront(host);
  expect(bb.connect({ frontendDomid: DOMID, ringRefs: fe.ringRefs, eventChannel: 3, persistent: opts.persistent === true })).toBeUndefined();
  const kick = () => {
    fe.push();
    host.notify(bb.localPort!);
    host.dispatch();
    return fe.responses();
  };
  return { host, storage, bb, fe, log, kick };
}

describe("blkback against hostile frontends", () => {
  it("req_prod past the ring (RING_REQUEST_PROD_OVERFLOW) stops the ring with a logged bogus-requests error", () => {
    const { bb, fe, log, host, kick } = setup();
    host.grant(8);
    fe.rw(BLKIF_OP_READ, 1, 0, [{ gref: 8, first_sect: 0, last_sect: 0 }]);
    expect(kick().length).toBe(1);
    fe.view.setUint32(0, 1 + 33, true); // req_prod 33 ahead of the responses: more than 32 slots
    host.notify(bb.localPort!);
    host.dispatch();
    expect(bb.halted).toMatch(/bogus requests/);
    expect(log.some((l) => l.includes("bogus requests"))).toBe(true);
    expect(bb.counters.bogusRings).toBe(1);
    expect(fe.responses()).toEqual([]);
    // Halted for good: later kicks do nothing, nothing throws, disconnect cleans up.
    fe.view.setUint32(0, 2, true);
    expect(bb.process()).toBe(0);
    expect(bb.hasWork).toBe(false);
    bb.disconnect();
    expect(host.liveMappings()).toBe(0);
  });

  it("property: no req_prod value makes the backend answer more than the ring holds or throw", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), (rp) => {
        const { bb, fe, host } = setup();
        host.grant(8);
        fe.view.setUint32(0, rp, true);
        host.notify(bb.localPort!);
        host.dispatch();
        while (bb.hasWork) bb.process();
        const n = fe.responses().length;
        return rp <= 32 ? n === rp && bb.halted === undefined : n === 0 && bb.halted !== undefined;
      }),
      { numRuns: 200 },
    );
  });

  it("a request rewritten after the backend copied it (double fetch, XSA-155): only the copy is used", () => {
    const { host, storage, fe, kick } = setup();
    host.grant(8).fill(0x5a);
    const at = fe.rw(BLKIF_OP_WRITE, 0x42, 10, [{ gref: 8, first_sect: 0, last_sect: 7 }]);
    // While the backend copies the data, the frontend rewrites the slot: sector, count, id, op.
    host.onCopy = () => {
      fe.view.setUint8(at + blkif_request.operation, BLKIF_OP_READ);
      fe.view.setUint8(at + blkif_request.nr_segments, 200);
      fe.view.setUint32(at + blkif_request.sector_number, 1000, true);
      fe.view.setUint32(at + blkif_request.id, 0xdead, true);
      fe.view.setUint8(at + blkif_request.seg + 5, 255);
    };
    const r = kick();
    expect(r).toEqual([{ id_lo: 0x42, id_hi: 0, operation: BLKIF_OP_WRITE, status: BLKIF_RSP_OKAY }]);
    expect(storage.data.subarray(10 * 512, 18 * 512).every((x) => x === 0x5a)).toBe(true);
    expect(storage.data.subarray(1000 * 512, 1001 * 512).every((x) => x === 0)).toBe(true);
  });

  it("an indirect page rewritten after it was copied changes nothing", () => {
    const { host, storage, fe, kick } = setup();
    const ind = host.grant(50);
    const iv = new DataView(ind.buffer);
    host.grant(60).fill(0x11);
    iv.setUint32(0, 60, true);
    iv.setUint8(5, 7);
    fe.indirect(BLKIF_OP_WRITE, 5, 0, 1, [50]);
    let copies = 0;
    host.onCopy = () => {
      if (++copies === 2) iv.setUint8(5, 200); // after the descriptor copy, before the data copy
    };
    expect(kick()[0]?.status).toBe(BLKIF_RSP_OKAY);
    expect(storage.data.subarray(0, 4096).every((x) => x === 0x11)).toBe(true);
  });

  it("more segments than BLKIF_MAX_SEGMENTS_PER_REQUEST, or none, or indirect beyond the advertised max: BLKIF_RSP_ERROR", () => {
    const { host, fe, kick, bb, storage } = setup({ maxIndirect: 32 });
    host.grant(8);
    host.grant(50);
    const seg = Array.from({ length: 11 }, () => ({ gref: 8, first_sect: 0, last_sect: 0 }));
    fe.rw(BLKIF_OP_WRITE, 1, 0, seg, 12);
    fe.rw(BLKIF_OP_WRITE, 2, 0, seg, 255);
    fe.rw(BLKIF_OP_READ, 3, 0, [], 0);
    fe.indirect(BLKIF_OP_READ, 4, 0, 33, [50]);
    fe.indirect(BLKIF_OP_READ, 5, 0, 0, [50]);
    fe.indirect(BLKIF_OP_WRITE_BARRIER, 6, 0, 1, [50]); // indirect_op must be READ or WRITE
    fe.indirect(BLKIF_OP_READ, 7, 0, 65535, [50]);
    const r = kick();
    expect(r.map((x) => [x.id_lo, x.status])).toEqual([1, 2, 3, 4, 5, 6, 7].map((id) => [id, BLKIF_RSP_ERROR]));
    expect(bb.counters.errBadSegments).toBe(7);
    expect(storage.data.every((x) => x === 0)).toBe(true);
  });

  it("sector ranges past the disk, and sector numbers at 2^53 and above: BLKIF_RSP_ERROR", () => {
    const { host, fe, kick, bb } = setup();
    host.grant(8);
    fe.rw(BLKIF_OP_READ, 1, 1024, [{ gref: 8, first_sect: 0, last_sect: 0 }]);
    fe.rw(BLKIF_OP_READ, 2, 1020, [{ gref: 8, first_sect: 0, last_sect: 7 }]);
    fe.rw(BLKIF_OP_READ, 3, 2 ** 53, [{ gref: 8, first_sect: 0, last_sect: 0 }]);
    fe.discard(4, 1000, 100);
    fe.rw(BLKIF_OP_READ, 5, 1023, [{ gref: 8, first_sect: 7, last_sect: 7 }]); // the last sector: fine
    const r = kick();
    expect(r.map((x) => x.status)).toEqual([BLKIF_RSP_ERROR, BLKIF_RSP_ERROR, BLKIF_RSP_ERROR, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY]);
    expect(bb.counters.errBadRange).toBe(4);
  });

  it("first_sect/last_sect reversed or outside the page: BLKIF_RSP_ERROR, nothing moved", () => {
    const { host, fe, kick, storage } = setup();
    host.grant(8).fill(0x77);
    fe.rw(BLKIF_OP_WRITE, 1, 0, [{ gref: 8, first_sect: 5, last_sect: 4 }]);
    fe.rw(BLKIF_OP_WRITE, 2, 0, [{ gref: 8, first_sect: 0, last_sect: 8 }]);
    fe.rw(BLKIF_OP_WRITE, 3, 0, [{ gref: 8, first_sect: 0, last_sect: 7 }, { gref: 8, first_sect: 9, last_sect: 255 }]);
    expect(kick().map((x) => x.status)).toEqual([BLKIF_RSP_ERROR, BLKIF_RSP_ERROR, BLKIF_RSP_ERROR]);
    expect(storage.data.every((x) => x === 0)).toBe(true);
  });

  it("bad grant refs (unknown, read-only for a read, other domains'): BLKIF_RSP_ERROR", () => {
    const { host, fe, kick, bb } = setup();
    host.grant(9, { readonly: true });
    fe.rw(BLKIF_OP_READ, 1, 0, [{ gref: 12345, first_sect: 0, last_sect: 0 }]);
    fe.rw(BLKIF_OP_READ, 2, 0, [{ gref: 9, first_sect: 0, last_sect: 0 }]); // disk -> guest needs a writable grant
    fe.rw(BLKIF_OP_WRITE, 3, 0, [{ gref: 9, first_sect: 0, last_sect: 0 }]); // guest -> disk: read-only is enough
    fe.indirect(BLKIF_OP_READ, 4, 0, 1, [4444]);
    const r = kick();
    expect(r.map((x) => x.status)).toEqual([BLKIF_RSP_ERROR, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, BLKIF_RSP_ERROR]);
    expect(bb.counters.errBadGrant).toBe(3);
  });

  it("writes to a read-only vbd: BLKIF_RSP_ERROR; reads still served", () => {
    const { host, fe, kick, bb } = setup({ readonly: true });
    host.grant(8);
    fe.rw(BLKIF_OP_WRITE, 1, 0, [{ gref: 8, first_sect: 0, last_sect: 0 }]);
    fe.rw(BLKIF_OP_WRITE_BARRIER, 2, 0, [{ gref: 8, first_sect: 0, last_sect: 0 }]);
    fe.discard(3, 0, 8);
    fe.rw(BLKIF_OP_READ, 4, 0, [{ gref: 8, first_sect: 0, last_sect: 0 }]);
    expect(kick().map((x) => x.status)).toEqual([BLKIF_RSP_ERROR, BLKIF_RSP_ERROR, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY]);
    expect(bb.counters.errReadonly).toBe(3);
  });

  it("a grant revoked while persistently mapped: the mapping keeps the frame; once it is gone the request fails and the grant is dropped", () => {
    const { host, fe, kick, bb, storage } = setup({ persistent: true });
    host.grant(8).fill(0x33);
    fe.rw(BLKIF_OP_WRITE, 1, 0, [{ gref: 8, first_sect: 0, last_sect: 7 }]);
    expect(kick()[0]?.status).toBe(BLKIF_RSP_OKAY);
    expect(bb.persistentGrantCount).toBe(1);
    // The frontend ends foreign access: as in Xen, the mapped frame stays valid for the mapper.
    host.revoke(8);
    fe.rw(BLKIF_OP_WRITE, 2, 8, [{ gref: 8, first_sect: 0, last_sect: 7 }]);
    expect(kick()[0]?.status).toBe(BLKIF_RSP_OKAY);
    // The mapping is torn down under the backend: the next use fails cleanly, the grant is dropped,
    // and remapping a revoked grant fails too.
    host.killMappings(8);
    fe.rw(BLKIF_OP_WRITE, 3, 16, [{ gref: 8, first_sect: 0, last_sect: 7 }]);
    expect(kick()[0]?.status).toBe(BLKIF_RSP_ERROR);
    expect(bb.persistentGrantCount).toBe(0);
    expect(storage.data.subarray(16 * 512, 24 * 512).every((x) => x === 0)).toBe(true);
    expect(bb.counters.errBadGrant).toBe(1);
  });

  it("responses are never padded with backend memory; the rest of the slot is left as the frontend wrote it", () => {
    const { host, fe, kick } = setup();
    host.grant(8);
    // Fill the slot with 0xee first, so any stale padding would show.
    const at = fe.slot();
    fe.ring.fill(0xee, at, at + 112);
    fe.rw(BLKIF_OP_READ, 7, 0, [{ gref: 8, first_sect: 0, last_sect: 0 }]);
    fe.ring.fill(0xee, at + 24 + 8, at + 112); // unused segment slots
    const before = fe.ring.slice(at + blkif_response.SIZEOF, at + 112);
    kick();
    const rsp = fe.ring.subarray(at, at + blkif_response.SIZEOF);
    expect(rsp[9]).toBe(0);
    expect([...rsp.subarray(12, 16)]).toEqual([0, 0, 0, 0]);
    expect(fe.ring.subarray(at + blkif_response.SIZEOF, at + 112)).toEqual(before);
  });

  it("a ring page unmapped under the backend halts the ring, never throws", () => {
    const { host, fe, bb } = setup();
    host.grant(8);
    host.killMappings(100);
    fe.rw(BLKIF_OP_READ, 1, 0, [{ gref: 8, first_sect: 0, last_sect: 0 }]);
    fe.push();
    host.notify(bb.localPort!);
    expect(() => host.dispatch()).not.toThrow();
    expect(bb.halted).toMatch(/no longer mapped/);
  });

  it("a bad connect (unknown ring ref, bad port, foreign protocol, odd page counts) leaves nothing mapped or bound", () => {
    const host = new FakeHost(DOMID);
    const bb = new Blkback(host, new MemoryBlkStorage(8));
    host.grant(100);
    host.grant(101);
    host.grant(102);
    expect(bb.connect({ frontendDomid: DOMID, ringRefs: [100, 999], eventChannel: 3 })).toMatchObject({ kind: "map-ring", ref: 999 });
    expect(bb.connect({ frontendDomid: DOMID, ringRefs: [100], eventChannel: 0 })).toMatchObject({ kind: "bind-evtchn" });
    expect(bb.connect({ frontendDomid: DOMID, ringRefs: [100], eventChannel: 3, protocol: "x86_32-abi" })).toMatchObject({ kind: "bad-config" });
    expect(bb.connect({ frontendDomid: DOMID, ringRefs: [100, 101, 102], eventChannel: 3 })).toMatchObject({ kind: "bad-config" });
    expect(bb.connect({ frontendDomid: DOMID, ringRefs: [], eventChannel: 3 })).toMatchObject({ kind: "bad-config" });
    expect(host.liveMappings()).toBe(0);
    expect(host.bound.size).toBe(0);
    expect(bb.connected).toBe(false);
  });

  it("property: random bytes in every slot never throw, every request gets exactly one response", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 112, maxLength: 112 }), { minLength: 1, maxLength: 32 }), (slots) => {
        const { host, fe, bb, storage } = setup({ persistent: true });
        for (let g = 0; g < 16; g++) host.grant(g);
        for (const s of slots) {
          const at = fe.slot();
          // keep some requests plausible: small grefs and sectors
          s[16] = s[16]! & 0x3;
          for (let i = 17; i < 24; i++) s[i] = 0;
          for (let k = 0; k < 11; k++) s[24 + k * 8] = s[24 + k * 8]! & 0x1f;
          fe.ring.set(s, at);
          fe.front.req_prod_pvt = (fe.front.req_prod_pvt + 1) >>> 0;
        }
        fe.push();
        host.notify(bb.localPort!);
        host.dispatch();
        while (bb.hasWork) bb.process();
        const r = fe.responses();
        bb.disconnect();
        return r.length === slots.length && host.liveMappings() === 0 && storage.data.length === 1024 * 512;
      }),
      { numRuns: 100 },
    );
  });
});
