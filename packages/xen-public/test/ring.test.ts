// io/ring.h laws, checked with fast-check: a producer is never more than RING_SIZE ahead of the
// responses it has collected, a notification is due exactly when the pushed range crosses the
// other side's event index, all of it across the 2^32 wrap of the free-running indices, and
// hostile indices are caught by the overflow checks. Plus the xenstore and console byte rings.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  BACK_RING_ATTACH,
  CONST_RING_SIZE,
  FRONT_RING_ATTACH,
  RD32,
  RING_COPY_REQUEST,
  RING_FINAL_CHECK_FOR_REQUESTS,
  RING_FINAL_CHECK_FOR_RESPONSES,
  RING_FREE_REQUESTS,
  RING_FULL,
  RING_GET_REQUEST,
  RING_GET_RESPONSE,
  RING_HAS_UNCONSUMED_REQUESTS,
  RING_PUSH_REQUESTS,
  RING_PUSH_REQUESTS_AND_CHECK_NOTIFY,
  RING_PUSH_RESPONSES_AND_CHECK_NOTIFY,
  RING_REQUEST_CONS_OVERFLOW,
  RING_REQUEST_PROD_OVERFLOW,
  RING_RESPONSE_PROD_OVERFLOW,
  RING_SIZE,
  SHARED_RING_INIT,
  XENSTORE_RING_SIZE,
  XENCONS_IN_SIZE,
  XENCONS_OUT_SIZE,
  XEN_EIO,
  BLKIF_OP_READ,
  MASK_XENCONS_IDX,
  MASK_XENSTORE_IDX,
  XEN_FRONT_RING_INIT,
  BACK_RING_INIT,
  blkif_sring,
  blkif_sring_entry,
  netif_tx_sring_entry,
  read_blkif_request,
  read_blkif_response,
  ring_event_crossed,
  sring_req_event,
  sring_rsp_event,
  write_blkif_request,
  write_blkif_response,
  xencons_interface,
  xencons_ring_pending,
  xencons_ring_read,
  xencons_ring_write,
  xenstore_domain_interface,
  xenstore_ring_pending,
  xenstore_ring_read,
  xenstore_ring_write,
  type ring_entry_layout,
} from "@vtlab/xen-public";

const PAGE = 4096;
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
/** Indices that start within a few hundred steps of the 2^32 wrap, or anywhere. */
const startIndex = fc.oneof(fc.integer({ min: 0xffff_ffff - 600, max: 0xffff_ffff }), u32, fc.constant(0));

/** Both ends attached to one page at index `start` (as after a reconnect at that index). */
function pair(start: number, entry: ring_entry_layout = blkif_sring_entry) {
  const page = new Uint8Array(PAGE);
  const view = new DataView(page.buffer);
  SHARED_RING_INIT(view, 0);
  view.setUint32(blkif_sring.req_prod, start >>> 0, true);
  view.setUint32(blkif_sring.rsp_prod, start >>> 0, true);
  view.setUint32(blkif_sring.req_event, (start + 1) >>> 0, true);
  view.setUint32(blkif_sring.rsp_event, (start + 1) >>> 0, true);
  const front = FRONT_RING_ATTACH(view, 0, start, PAGE, entry);
  const back = BACK_RING_ATTACH(view, 0, start, PAGE, entry);
  return { page, view, front, back };
}

/** The brute-force notify rule: some k in 1..(new - old) has old + k == event (mod 2^32). */
function crossesByWalking(oldIdx: number, newIdx: number, event: number): boolean {
  const n = (newIdx - oldIdx) >>> 0;
  for (let k = 1; k <= n; k++) if (((oldIdx + k) >>> 0) === event >>> 0) return true;
  return false;
}

describe("ring sizes", () => {
  it("one page holds 32 blkif and 256 netif slots", () => {
    expect(pair(0).front.nr_ents).toBe(32);
    expect(pair(0, netif_tx_sring_entry).back.nr_ents).toBe(256);
  });
  it("RD32 rounds down to a power of two", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 0xffff_ffff }), (x) => {
        const r = RD32(x);
        expect(Number.isInteger(Math.log2(r))).toBe(true);
        expect(r).toBeLessThanOrEqual(x);
        expect(r * 2).toBeGreaterThan(x);
      }),
    );
    expect(RD32(0)).toBe(0);
    expect(RD32(-5)).toBe(0);
  });
  it("CONST_RING_SIZE is the largest power of two of slots that fit after the header", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 512 }), fc.integer({ min: 128, max: 1 << 20 }), (entrySize, size) => {
        const n = CONST_RING_SIZE(blkif_sring, { SIZEOF: entrySize }, size);
        const fit = Math.floor((size - blkif_sring.ring) / entrySize);
        if (fit === 0) expect(n).toBe(0);
        else {
          expect(n).toBeLessThanOrEqual(fit);
          expect(n * 2).toBeGreaterThan(fit);
          expect(n & (n - 1)).toBe(0);
        }
      }),
    );
  });
});

describe("SHARED_RING_INIT / XEN_FRONT_RING_INIT / BACK_RING_INIT", () => {
  it("producers 0, events 1, private area zero, both ends at 0", () => {
    const page = new Uint8Array(PAGE).fill(0xaa);
    const view = new DataView(page.buffer);
    const front = XEN_FRONT_RING_INIT(view, 0, PAGE, blkif_sring_entry);
    const back = BACK_RING_INIT(view, 0, PAGE, blkif_sring_entry);
    expect(view.getUint32(blkif_sring.req_prod, true)).toBe(0);
    expect(view.getUint32(blkif_sring.rsp_prod, true)).toBe(0);
    expect(sring_req_event(front)).toBe(1);
    expect(sring_rsp_event(back)).toBe(1);
    expect([...page.subarray(blkif_sring.pvt, blkif_sring.ring)].every((b) => b === 0)).toBe(true);
    expect(page[blkif_sring.ring]).toBe(0xaa); // slots untouched
    expect([front.req_prod_pvt, front.rsp_cons, back.rsp_prod_pvt, back.req_cons]).toEqual([0, 0, 0, 0]);
    expect(RING_SIZE(front)).toBe(32);
    expect(RING_FREE_REQUESTS(front)).toBe(32);
  });
  it("RING_GET_REQUEST wraps the index to a slot", () => {
    const { front } = pair(0);
    expect(RING_GET_REQUEST(front, 0)).toBe(blkif_sring.ring);
    expect(RING_GET_REQUEST(front, 33)).toBe(blkif_sring.ring + blkif_sring_entry.SIZEOF);
    expect(RING_GET_RESPONSE(front, 0xffff_ffff)).toBe(blkif_sring.ring + 31 * blkif_sring_entry.SIZEOF);
  });
});

type Op = { op: "produce" | "consume" | "respond" | "collect" | "sleep-back" | "sleep-front"; n: number };
const opArb: fc.Arbitrary<Op> = fc.record({
  op: fc.constantFrom("produce", "consume", "respond", "collect", "sleep-back", "sleep-front"),
  n: fc.integer({ min: 0, max: 40 }),
});

describe("an honest frontend and backend", () => {
  it("never overrun, see every request and response once and in order, and notify exactly at the event index (across 2^32)", () => {
    fc.assert(
      fc.property(startIndex, fc.array(opArb, { maxLength: 80 }), (start, ops) => {
        const { view, front, back } = pair(start);
        const N = RING_SIZE(front);
        let nextId = 0; // next request id the frontend sends
        let seenReq = 0; // next id the backend expects
        let seenRsp = 0; // next id the frontend expects back
        const pending: number[] = []; // consumed by the backend, not yet answered
        let backAsleep = false;
        let frontAsleep = false;
        for (const { op, n } of ops) {
          // the other side acting on its own is awake again
          if (op === "produce" || op === "collect") frontAsleep = false;
          if (op === "consume" || op === "respond") backAsleep = false;
          if (op === "produce") {
            const k = Math.min(n, RING_FREE_REQUESTS(front));
            for (let i = 0; i < k; i++) {
              write_blkif_request(view, RING_GET_REQUEST(front, front.req_prod_pvt), {
                operation: BLKIF_OP_READ, nr_segments: 0, handle: 0, id_lo: nextId++, id_hi: 0xfeed, sector_number: 0, seg: [],
              });
              front.req_prod_pvt = (front.req_prod_pvt + 1) >>> 0;
            }
            const oldIdx = view.getUint32(blkif_sring.req_prod, true);
            const event = sring_req_event(front);
            const notify = RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(front);
            expect(notify).toBe(crossesByWalking(oldIdx, front.req_prod_pvt, event));
            if (backAsleep && k > 0) {
              expect(notify).toBe(true); // a sleeping backend is always woken
              backAsleep = false;
            }
          } else if (op === "consume") {
            const rp = view.getUint32(blkif_sring.req_prod, true);
            expect(RING_REQUEST_PROD_OVERFLOW(back, rp)).toBe(false);
            let k = 0;
            while (back.req_cons !== rp && k < n) {
              expect(RING_REQUEST_CONS_OVERFLOW(back, back.req_cons)).toBe(false);
              const req = read_blkif_request(RING_COPY_REQUEST(back, back.req_cons), 0);
              expect(req.id_lo).toBe(seenReq++);
              expect(req.id_hi).toBe(0xfeed);
              pending.push(req.id_lo);
              back.req_cons = (back.req_cons + 1) >>> 0;
              k++;
            }
          } else if (op === "respond") {
            const k = Math.min(n, pending.length);
            for (let i = 0; i < k; i++) {
              const id = pending.shift() ?? -1;
              write_blkif_response(view, RING_GET_RESPONSE(back, back.rsp_prod_pvt), { id_lo: id, id_hi: 0xfeed, operation: BLKIF_OP_READ, status: 0 });
              back.rsp_prod_pvt = (back.rsp_prod_pvt + 1) >>> 0;
            }
            const oldIdx = view.getUint32(blkif_sring.rsp_prod, true);
            const event = sring_rsp_event(back);
            const notify = RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(back);
            expect(notify).toBe(crossesByWalking(oldIdx, back.rsp_prod_pvt, event));
            if (frontAsleep && k > 0) {
              expect(notify).toBe(true);
              frontAsleep = false;
            }
          } else if (op === "collect") {
            const rp = view.getUint32(blkif_sring.rsp_prod, true);
            expect(RING_RESPONSE_PROD_OVERFLOW(front, rp)).toBe(false);
            let k = 0;
            while (front.rsp_cons !== rp && k < n) {
              const rsp = read_blkif_response(RING_COPY_REQUEST(front, front.rsp_cons), 0);
              expect(rsp.id_lo).toBe(seenRsp++);
              front.rsp_cons = (front.rsp_cons + 1) >>> 0;
              k++;
            }
          } else if (op === "sleep-back") {
            if (RING_FINAL_CHECK_FOR_REQUESTS(back) === 0) {
              expect(sring_req_event(back)).toBe((back.req_cons + 1) >>> 0);
              backAsleep = true;
            }
          } else if (RING_FINAL_CHECK_FOR_RESPONSES(front) === 0) {
            expect(sring_rsp_event(front)).toBe((front.rsp_cons + 1) >>> 0);
            frontAsleep = true;
          }
          // never more than RING_SIZE requests without a collected response
          expect((front.req_prod_pvt - front.rsp_cons) >>> 0).toBeLessThanOrEqual(N);
          expect((back.req_cons - back.rsp_prod_pvt) >>> 0).toBeLessThanOrEqual(N);
          expect(RING_FULL(front)).toBe(((front.req_prod_pvt - front.rsp_cons) >>> 0) === N);
        }
        expect(seenRsp).toBeLessThanOrEqual(seenReq);
        expect(seenReq).toBeLessThanOrEqual(nextId);
      }),
      { numRuns: 300 },
    );
  });

  it("fills a full ring exactly across the wrap", () => {
    const { view, front, back } = pair(0xffff_fff0);
    for (let i = 0; i < 32; i++) front.req_prod_pvt = (front.req_prod_pvt + 1) >>> 0;
    expect(RING_FULL(front)).toBe(true);
    expect(front.req_prod_pvt).toBe(0x10);
    expect(RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(front)).toBe(true); // event 0xfffffff1 was crossed
    expect(RING_HAS_UNCONSUMED_REQUESTS(back)).toBe(32);
    expect(RING_REQUEST_PROD_OVERFLOW(back, view.getUint32(blkif_sring.req_prod, true))).toBe(false);
  });
});

describe("the notify rule", () => {
  it("notify exactly when the event index lies in (old, new] modulo 2^32", () => {
    fc.assert(
      fc.property(u32, fc.integer({ min: 0, max: 256 }), fc.oneof(u32, fc.integer({ min: -3, max: 260 })), (oldIdx, delta, ev) => {
        const newIdx = (oldIdx + delta) >>> 0;
        const event = ev < 0 || ev <= 260 ? (oldIdx + ev) >>> 0 : ev >>> 0;
        const { view, front, back } = pair(0, netif_tx_sring_entry);
        view.setUint32(blkif_sring.req_prod, oldIdx, true);
        view.setUint32(blkif_sring.req_event, event, true);
        front.req_prod_pvt = newIdx;
        const want = crossesByWalking(oldIdx, newIdx, event);
        expect(ring_event_crossed(oldIdx, newIdx, event)).toBe(want);
        expect(RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(front)).toBe(want);
        expect(view.getUint32(blkif_sring.req_prod, true)).toBe(newIdx);
        view.setUint32(blkif_sring.rsp_prod, oldIdx, true);
        view.setUint32(blkif_sring.rsp_event, event, true);
        back.rsp_prod_pvt = newIdx;
        expect(RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(back)).toBe(want);
      }),
      { numRuns: 2000 },
    );
  });
  it("after a final check that found nothing, the next push notifies and the one after does not", () => {
    fc.assert(
      fc.property(startIndex, fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 16 }), (start, a, b) => {
        const { front, back } = pair(start);
        expect(RING_FINAL_CHECK_FOR_REQUESTS(back)).toBe(0);
        front.req_prod_pvt = (front.req_prod_pvt + a) >>> 0;
        expect(RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(front)).toBe(true);
        front.req_prod_pvt = (front.req_prod_pvt + b) >>> 0;
        expect(RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(front)).toBe(false);
        expect(RING_FINAL_CHECK_FOR_REQUESTS(back)).toBe(a + b); // work found, event not moved
      }),
    );
  });
  it("RING_PUSH_REQUESTS publishes without a check", () => {
    const { view, front } = pair(7);
    front.req_prod_pvt = 9;
    RING_PUSH_REQUESTS(front);
    expect(view.getUint32(blkif_sring.req_prod, true)).toBe(9);
  });
});

describe("a hostile frontend (any req_prod) against the backend's checks", () => {
  it("RING_REQUEST_PROD_OVERFLOW flags exactly a req_prod more than RING_SIZE past rsp_prod_pvt; consumption never overruns", () => {
    fc.assert(
      fc.property(startIndex, fc.integer({ min: 0, max: 32 }), fc.integer({ min: 0, max: 32 }), u32, (start, produced, answered, hostileProd) => {
        const { view, back } = pair(start);
        const answeredN = Math.min(answered, produced);
        // the backend has consumed `produced` requests and answered `answeredN` of them
        back.req_cons = (start + produced) >>> 0;
        back.rsp_prod_pvt = (start + answeredN) >>> 0;
        view.setUint32(blkif_sring.req_prod, hostileProd, true);
        const rp = view.getUint32(blkif_sring.req_prod, true);
        const overflow = RING_REQUEST_PROD_OVERFLOW(back, rp);
        expect(overflow).toBe(((rp - back.rsp_prod_pvt) >>> 0) > 32);
        // unconsumed requests are capped by the free slots whatever req_prod says
        const outstanding = (back.req_cons - back.rsp_prod_pvt) >>> 0;
        expect(RING_HAS_UNCONSUMED_REQUESTS(back)).toBeLessThanOrEqual(32 - outstanding);
        if (overflow) return; // a backend stops here (Linux: the frontend is broken)
        let consumed = 0;
        while (back.req_cons !== rp) {
          if (RING_REQUEST_CONS_OVERFLOW(back, back.req_cons)) break;
          RING_COPY_REQUEST(back, back.req_cons);
          back.req_cons = (back.req_cons + 1) >>> 0;
          consumed++;
          expect(consumed).toBeLessThanOrEqual(32);
        }
        expect((back.req_cons - back.rsp_prod_pvt) >>> 0).toBeLessThanOrEqual(32);
      }),
      { numRuns: 1000 },
    );
  });
  it("RING_RESPONSE_PROD_OVERFLOW flags a rsp_prod further ahead than the ring holds", () => {
    fc.assert(
      fc.property(startIndex, u32, (start, rp) => {
        const { front } = pair(start);
        expect(RING_RESPONSE_PROD_OVERFLOW(front, rp)).toBe(((rp - start) >>> 0) > 32);
      }),
    );
  });
  it("RING_COPY_REQUEST is a private copy: changing the slot afterwards changes nothing", () => {
    fc.assert(
      fc.property(u32, fc.integer({ min: 0, max: 255 }), fc.uint8Array({ minLength: 112, maxLength: 112 }), (idx, nseg, garbage) => {
        const { page, view, back } = pair(0);
        const at = RING_GET_REQUEST(back, idx);
        page.set(garbage, at);
        view.setUint8(at + 1, nseg);
        const copy = RING_COPY_REQUEST(back, idx);
        const before = read_blkif_request(copy, 0);
        page.fill(0x5a, at, at + blkif_sring_entry.SIZEOF); // the frontend rewrites the slot
        expect(read_blkif_request(copy, 0)).toEqual(before);
        expect(before.seg.length).toBe(Math.min(nseg, 11));
        expect(copy.byteLength).toBe(blkif_sring_entry.SIZEOF);
      }),
    );
  });
  it("RING_COPY_REQUEST into a caller's buffer", () => {
    const { back } = pair(0);
    const buf = new Uint8Array(200);
    const copy = RING_COPY_REQUEST(back, 3, buf);
    expect(copy.buffer).toBe(buf.buffer);
    expect(() => RING_COPY_REQUEST(back, 3, new Uint8Array(8))).toThrow(RangeError);
  });
});

/** A model of a byte ring: what was written and not yet read. */
function byteRingLaw(
  size: number,
  write: (v: DataView, b: Uint8Array) => number,
  read: (v: DataView, max: number) => Uint8Array | number,
  pending: (v: DataView) => number,
  setIndices: (v: DataView, cons: number, prod: number) => void,
  dataAt: number,
) {
  const step = fc.oneof(
    fc.record({ w: fc.uint8Array({ maxLength: size + 64 }) }),
    fc.record({ r: fc.integer({ min: 0, max: size + 64 }) }),
  );
  fc.assert(
    fc.property(startIndex, fc.array(step, { maxLength: 40 }), (start, steps) => {
      const page = new Uint8Array(PAGE);
      const v = new DataView(page.buffer);
      setIndices(v, start, start);
      const model: number[] = [];
      for (const s of steps) {
        if ("w" in s) {
          const n = write(v, s.w);
          expect(n).toBe(Math.min(s.w.length, size - model.length));
          model.push(...s.w.subarray(0, n));
        } else {
          const got = read(v, s.r);
          if (typeof got === "number") throw new Error(`read failed ${got}`);
          expect([...got]).toEqual(model.splice(0, Math.min(s.r, got.length)));
          expect(got.length).toBe(Math.min(s.r, got.length));
        }
        expect(pending(v)).toBe(model.length);
        expect(model.length).toBeLessThanOrEqual(size);
      }
    }),
    { numRuns: 200 },
  );
  // hostile indices: further apart than the ring: -XEN_EIO, nothing written or moved
  fc.assert(
    fc.property(u32, fc.integer({ min: size + 1, max: 0xffff_ffff }), (cons, gap) => {
      const page = new Uint8Array(PAGE);
      const v = new DataView(page.buffer);
      setIndices(v, cons, (cons + gap) >>> 0);
      const before = page.slice();
      expect(write(v, new Uint8Array([1, 2, 3]))).toBe(-XEN_EIO);
      expect(read(v, 10)).toBe(-XEN_EIO);
      expect(pending(v)).toBe(-XEN_EIO);
      expect(page).toEqual(before);
    }),
  );
  expect(dataAt).toBeGreaterThanOrEqual(0);
}

describe("the xenstore ring (io/xs_wire.h)", () => {
  const L = xenstore_domain_interface;
  it("MASK_XENSTORE_IDX", () => {
    expect(MASK_XENSTORE_IDX(1024)).toBe(0);
    expect(MASK_XENSTORE_IDX(0xffff_ffff)).toBe(1023);
    expect(XENSTORE_RING_SIZE).toBe(1024);
  });
  for (const ring of ["req", "rsp"] as const) {
    it(`${ring}: a FIFO byte stream that never holds more than XENSTORE_RING_SIZE, across 2^32; corrupt indices give -EIO`, () => {
      const [c, p] = ring === "req" ? [L.req_cons, L.req_prod] : [L.rsp_cons, L.rsp_prod];
      byteRingLaw(
        XENSTORE_RING_SIZE,
        (v, b) => xenstore_ring_write(v, 0, ring, b),
        (v, m) => xenstore_ring_read(v, 0, ring, m),
        (v) => xenstore_ring_pending(v, 0, ring),
        (v, cons, prod) => { v.setUint32(c, cons, true); v.setUint32(p, prod, true); },
        ring === "req" ? L.req : L.rsp,
      );
    });
  }
  it("bytes land at MASK_XENSTORE_IDX(prod) in the right array", () => {
    const page = new Uint8Array(PAGE);
    const v = new DataView(page.buffer);
    v.setUint32(L.rsp_cons, 0xffff_fffe, true);
    v.setUint32(L.rsp_prod, 0xffff_fffe, true);
    expect(xenstore_ring_write(v, 0, "rsp", new Uint8Array([7, 8, 9]))).toBe(3);
    expect([page[L.rsp + 1022], page[L.rsp + 1023], page[L.rsp]]).toEqual([7, 8, 9]);
    expect(v.getUint32(L.rsp_prod, true)).toBe(1);
    expect(page[L.req]).toBe(0);
  });
});

describe("the console ring (io/console.h)", () => {
  const L = xencons_interface;
  it("sizes and MASK_XENCONS_IDX", () => {
    expect(XENCONS_IN_SIZE).toBe(1024);
    expect(XENCONS_OUT_SIZE).toBe(2048);
    expect(MASK_XENCONS_IDX(2049, XENCONS_OUT_SIZE)).toBe(1);
  });
  for (const ring of ["in", "out"] as const) {
    it(`${ring}: a FIFO byte stream within its size, across 2^32; corrupt indices give -EIO`, () => {
      const [c, p, size] = ring === "in" ? [L.in_cons, L.in_prod, XENCONS_IN_SIZE] : [L.out_cons, L.out_prod, XENCONS_OUT_SIZE];
      byteRingLaw(
        size,
        (v, b) => xencons_ring_write(v, 0, ring, b),
        (v, m) => xencons_ring_read(v, 0, ring, m),
        (v) => xencons_ring_pending(v, 0, ring),
        (v, cons, prod) => { v.setUint32(c, cons, true); v.setUint32(p, prod, true); },
        ring === "in" ? L.in : L.out,
      );
    });
  }
});
