import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  BLKIF_OP_DISCARD,
  BLKIF_OP_FLUSH_DISKCACHE,
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_OP_WRITE_BARRIER,
  BLKIF_RSP_EOPNOTSUPP,
  BLKIF_RSP_ERROR,
  BLKIF_RSP_OKAY,
} from "@vtlab/xen-public";
import { Blkback, MAX_INDIRECT_SEGMENTS } from "../src/blkback/blkback.js";
import { MemoryBlkStorage } from "../src/blkback/storage.js";
import { FakeBlkfront, FakeHost } from "./blkback-harness.js";

const DOMID = 1;
const PORT = 5;

function setup(opts: { sectors?: number; persistent?: boolean; pages?: number; readonly?: boolean; sectorSize?: number; perDispatch?: number } = {}) {
  const host = new FakeHost(DOMID);
  const storage = new MemoryBlkStorage(opts.sectors ?? 2048, { readonly: opts.readonly === true, ...(opts.sectorSize !== undefined ? { sectorSize: opts.sectorSize } : {}) });
  const log: string[] = [];
  const bb = new Blkback(host, storage, { log: (l) => log.push(l), ...(opts.perDispatch !== undefined ? { maxRequestsPerDispatch: opts.perDispatch } : {}) });
  const fe = new FakeBlkfront(host, 100, opts.pages ?? 1);
  const err = bb.connect({ frontendDomid: DOMID, ringRefs: fe.ringRefs, eventChannel: PORT, protocol: "x86_64-abi", persistent: opts.persistent === true });
  expect(err).toBeUndefined();
  const kick = () => {
    if (fe.push()) host.notify(bb.localPort!);
    host.dispatch();
    return fe.responses();
  };
  return { host, storage, bb, fe, log, kick };
}

function pattern(seed: number, n = 4096): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (seed * 31 + i * 7) & 0xff;
  return b;
}

describe("blkback: the ring path", () => {
  it("writes then reads back through grant copies, echoing 64-bit ids", () => {
    const { host, storage, fe, kick, bb } = setup();
    host.grant(8).set(pattern(1));
    fe.rw(BLKIF_OP_WRITE, 0x1234, 16, [{ gref: 8, first_sect: 0, last_sect: 7 }]);
    let r = kick();
    expect(r).toEqual([{ id_lo: 0x1234, id_hi: 0, operation: BLKIF_OP_WRITE, status: BLKIF_RSP_OKAY }]);
    expect(storage.data.subarray(16 * 512, 24 * 512)).toEqual(pattern(1));
    const dst = host.grant(9);
    fe.rw(BLKIF_OP_READ, 0x99, 16, [{ gref: 9, first_sect: 0, last_sect: 7 }]);
    r = kick();
    expect(r[0]?.status).toBe(BLKIF_RSP_OKAY);
    expect(dst).toEqual(pattern(1));
    expect(bb.counters).toMatchObject({ read: 1, write: 1, sectorsRead: 8, sectorsWritten: 8, grantCopies: 2, responses: 2 });
    expect(host.sent.length).toBe(2);
  });

  it("lays segments out contiguously on the disk, partial pages by first_sect/last_sect", () => {
    const { host, storage, fe, kick } = setup();
    const a = host.grant(8);
    const b = host.grant(9);
    a.set(pattern(2));
    b.set(pattern(3));
    fe.rw(BLKIF_OP_WRITE, 1, 100, [{ gref: 8, first_sect: 6, last_sect: 7 }, { gref: 9, first_sect: 0, last_sect: 0 }]);
    expect(kick()[0]?.status).toBe(BLKIF_RSP_OKAY);
    expect(storage.data.subarray(100 * 512, 102 * 512)).toEqual(a.subarray(3072, 4096));
    expect(storage.data.subarray(102 * 512, 103 * 512)).toEqual(b.subarray(0, 512));
  });

  it("flush and barrier flush the storage; a barrier carries its data", () => {
    const { host, storage, fe, kick, bb } = setup();
    fe.rw(BLKIF_OP_FLUSH_DISKCACHE, 1, 0, []);
    host.grant(8).set(pattern(4));
    fe.rw(BLKIF_OP_WRITE_BARRIER, 2, 8, [{ gref: 8, first_sect: 0, last_sect: 7 }]);
    const r = kick();
    expect(r.map((x) => x.status)).toEqual([BLKIF_RSP_OKAY, BLKIF_RSP_OKAY]);
    expect(storage.flushes).toBe(2);
    expect(storage.data.subarray(8 * 512, 16 * 512)).toEqual(pattern(4));
    expect(bb.counters).toMatchObject({ flush: 1, barrier: 1 });
  });

  it("discards zero the range; unknown operations get EOPNOTSUPP", () => {
    const { storage, fe, kick } = setup();
    storage.data.fill(0xaa);
    fe.discard(7, 10, 4);
    fe.rw(4, 8, 0, []); // BLKIF_OP_RESERVED_1
    fe.rw(200, 9, 0, []);
    const r = kick();
    expect(r.map((x) => [x.id_lo, x.operation, x.status])).toEqual([[7, BLKIF_OP_DISCARD, BLKIF_RSP_OKAY], [8, 4, BLKIF_RSP_EOPNOTSUPP], [9, 200, BLKIF_RSP_EOPNOTSUPP]]);
    expect(storage.data.subarray(10 * 512, 14 * 512).every((x) => x === 0)).toBe(true);
    expect(storage.data[14 * 512]).toBe(0xaa);
  });

  it("indirect requests: up to the advertised maximum of segments, answered as their indirect_op", () => {
    const { host, storage, fe, kick, bb } = setup({ sectors: 4096 });
    const ind = host.grant(50);
    const iv = new DataView(ind.buffer);
    const n = 40;
    for (let i = 0; i < n; i++) {
      host.grant(200 + i).set(pattern(i));
      iv.setUint32(i * 8, 200 + i, true);
      iv.setUint8(i * 8 + 4, 0);
      iv.setUint8(i * 8 + 5, 7);
    }
    fe.indirect(BLKIF_OP_WRITE, 77, 0, n, [50]);
    const r = kick();
    expect(r).toEqual([{ id_lo: 77, id_hi: 0, operation: BLKIF_OP_WRITE, status: BLKIF_RSP_OKAY }]);
    for (let i = 0; i < n; i++) expect(storage.data.subarray(i * 4096, (i + 1) * 4096)).toEqual(pattern(i));
    expect(bb.counters).toMatchObject({ indirect: 1, write: 1, sectorsWritten: n * 8 });
    expect(bb.maxIndirectSegments).toBe(MAX_INDIRECT_SEGMENTS);
  });

  it("persistent grants: data pages mapped once and reused, never more than the bound", () => {
    const host = new FakeHost(DOMID);
    const storage = new MemoryBlkStorage(2048);
    const bb = new Blkback(host, storage, { maxPersistentGrants: 4 });
    const fe = new FakeBlkfront(host);
    expect(bb.connect({ frontendDomid: DOMID, ringRefs: fe.ringRefs, eventChannel: PORT, persistent: true })).toBeUndefined();
    for (let g = 0; g < 8; g++) host.grant(10 + g).set(pattern(g));
    for (let round = 0; round < 3; round++) {
      for (let g = 0; g < 8; g++) fe.rw(BLKIF_OP_WRITE, g, g * 8, [{ gref: 10 + g, first_sect: 0, last_sect: 7 }]);
      if (fe.push()) host.notify(bb.localPort!);
      host.dispatch();
      expect(fe.responses().every((x) => x.status === BLKIF_RSP_OKAY)).toBe(true);
    }
    expect(bb.persistentGrantCount).toBe(4);
    expect(bb.counters.grantMaps).toBe(4);
    expect(bb.counters.persistentHits).toBe(12);
    expect(bb.counters.grantCopies).toBe(12); // the four grants past the bound, three rounds
    for (let g = 0; g < 8; g++) expect(storage.data.subarray(g * 4096, (g + 1) * 4096)).toEqual(pattern(g));
    bb.disconnect();
    expect(host.liveMappings()).toBe(0);
    expect(host.bound.size).toBe(0);
  });

  it("serves a multi-page ring (ring-page-order 2: 128 slots, slots straddling pages)", () => {
    const { host, storage, fe, kick, bb } = setup({ pages: 4, sectors: 8192 });
    expect(fe.front.nr_ents).toBe(128);
    host.grant(8).set(pattern(9));
    for (let i = 0; i < 100; i++) fe.rw(BLKIF_OP_WRITE, i, i * 8, [{ gref: 8, first_sect: 0, last_sect: 7 }]);
    // 64 per dispatch: the rest is still there, served at the next process().
    expect(kick().length).toBe(64);
    expect(bb.process()).toBe(36);
    expect(fe.responses().map((r) => r.id_lo)).toEqual(Array.from({ length: 36 }, (_, i) => 64 + i));
    expect(storage.data.subarray(99 * 4096, 100 * 4096)).toEqual(pattern(9));
  });

  it("bounds the requests served per dispatch and reports the rest as work", () => {
    const { host, fe, bb, kick } = setup({ perDispatch: 4 });
    host.grant(8);
    for (let i = 0; i < 10; i++) fe.rw(BLKIF_OP_READ, i, 0, [{ gref: 8, first_sect: 0, last_sect: 0 }]);
    expect(kick().length).toBe(4);
    expect(bb.hasWork).toBe(true);
    while (bb.hasWork) bb.process();
    expect(fe.responses().map((r) => r.id_lo)).toEqual([4, 5, 6, 7, 8, 9]);
    expect(bb.hasWork).toBe(false);
  });

  it("two rings on one host: a flooding frontend gets one bounded batch per dispatch, like the quiet one", () => {
    const host = new FakeHost(DOMID);
    const mk = (ref: number) => {
      const bb = new Blkback(host, new MemoryBlkStorage(64), { maxRequestsPerDispatch: 4 });
      const fe = new FakeBlkfront(host, ref);
      expect(bb.connect({ frontendDomid: DOMID, ringRefs: fe.ringRefs, eventChannel: PORT })).toBeUndefined();
      return { bb, fe };
    };
    const busy = mk(100);
    const quiet = mk(200);
    host.grant(8);
    for (let i = 0; i < 32; i++) busy.fe.rw(BLKIF_OP_READ, i, 0, [{ gref: 8, first_sect: 0, last_sect: 0 }]);
    quiet.fe.rw(BLKIF_OP_READ, 99, 0, [{ gref: 8, first_sect: 0, last_sect: 0 }]);
    busy.fe.push();
    quiet.fe.push();
    host.notify(busy.bb.localPort!);
    host.notify(quiet.bb.localPort!);
    host.dispatch();
    expect(busy.fe.responses().length).toBe(4);
    expect(quiet.fe.responses().map((r) => r.id_lo)).toEqual([99]);
    let rounds = 0;
    while (busy.bb.hasWork) {
      busy.bb.process();
      rounds++;
    }
    expect(rounds).toBe(7);
    expect(busy.fe.responses().length).toBe(28);
  });

  it("4 KiB logical sectors: aligned requests served, unaligned ones refused", () => {
    const { host, fe, kick, bb } = setup({ sectors: 64, sectorSize: 4096 });
    expect(bb.sectors).toBe(512);
    host.grant(8);
    fe.rw(BLKIF_OP_READ, 1, 8, [{ gref: 8, first_sect: 0, last_sect: 7 }]);
    fe.rw(BLKIF_OP_READ, 2, 4, [{ gref: 8, first_sect: 0, last_sect: 7 }]);
    expect(kick().map((r) => r.status)).toEqual([BLKIF_RSP_OKAY, BLKIF_RSP_ERROR]);
  });

  it("property: any sequence of in-range writes leaves the disk as a model array says", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ sector: fc.integer({ min: 0, max: 200 }), first: fc.integer({ min: 0, max: 7 }), len: fc.integer({ min: 1, max: 8 }), seed: fc.integer({ min: 0, max: 255 }) }), { maxLength: 40 }),
        (writes) => {
          const { host, storage, fe, kick } = setup({ sectors: 256 });
          const model = new Uint8Array(256 * 512);
          let ref = 10;
          for (const w of writes) {
            const last = Math.min(7, w.first + w.len - 1);
            const page = host.grant(ref);
            page.set(pattern(w.seed));
            fe.rw(BLKIF_OP_WRITE, ref, w.sector, [{ gref: ref, first_sect: w.first, last_sect: last }]);
            model.set(page.subarray(w.first * 512, (last + 1) * 512), w.sector * 512);
            ref++;
            const r = kick();
            if (r.length !== 1 || r[0]?.status !== BLKIF_RSP_OKAY) return false;
          }
          return storage.data.every((x, i) => x === model[i]);
        },
      ),
      { numRuns: 60 },
    );
  });
});
