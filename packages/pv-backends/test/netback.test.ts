import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  NETIF_RSP_ERROR,
  NETIF_RSP_NULL,
  NETIF_RSP_OKAY,
  NETTXF_extra_info,
  NETTXF_more_data,
  RING_GET_REQUEST,
  XEN_NETIF_EXTRA_TYPE_GSO,
  netif_tx_request,
} from "@vtlab/xen-public";
import { FATAL_SKB_SLOTS, NetbackVif, TX_BUDGET, RX_DRAIN_TIMEOUT_NS, RX_QUEUE_MAX_BYTES, RX_QUEUE_MAX_PACKETS, RX_STALL_TIMEOUT_NS, XEN_NETBK_LEGACY_SLOTS_MAX } from "../src/netback/index.js";
import { FakeHost, MAC_A, MAC_B, TestNetfront, ethFrame } from "./netback-fixture.js";

function setup(domid = 3) {
  const host = new FakeHost();
  const fe = new TestNetfront(host, domid);
  const out: Uint8Array[] = [];
  const log: string[] = [];
  const vif = new NetbackVif({ host, domid, handle: 0, now: () => host.nowNs, onFrame: (f) => out.push(f), log: (l) => log.push(l) });
  expect(vif.connect(fe.connection)).toBeUndefined();
  return { host, fe, vif, out, log };
}

describe("netback TX (guest to backend)", () => {
  it("copies a one-slot frame out with grant copy and answers OKAY", () => {
    const { host, fe, vif, out } = setup();
    const f = ethFrame(MAC_B, MAC_A, 100);
    fe.send(f);
    host.dispatch();
    fe.poll();
    expect(out).toEqual([f]);
    expect(fe.txStatuses.map((s) => s.status)).toEqual([NETIF_RSP_OKAY]);
    expect(vif.counters).toMatchObject({ txPackets: 1, txBytes: 100, txErrors: 0 });
    expect(host.eventsTo(3, fe.port)).toBe(1);
  });

  it("reassembles NETTXF_more_data fragments (a 9000-byte frame in three slots)", () => {
    const { host, fe, vif, out } = setup();
    const f = ethFrame(MAC_B, MAC_A, 9000, 5);
    fe.send(f);
    host.dispatch();
    fe.poll();
    expect(out).toHaveLength(1);
    expect(out[0]).toEqual(f);
    expect(fe.txStatuses.map((s) => s.status)).toEqual([0, 0, 0]);
    expect(vif.counters.txBytes).toBe(9000);
  });

  it("more requests than TX_BUDGET in one push: the rest is taken at poll() and at the next event", () => {
    const { host, fe, vif, out } = setup();
    for (let i = 0; i < 100; i++) fe.send(ethFrame(MAC_B, MAC_A, 64, i), { push: false });
    fe.pushTx();
    host.dispatch();
    expect(out).toHaveLength(TX_BUDGET);
    vif.poll();
    expect(out).toHaveLength(100);
    fe.poll();
    // Exactly a budget's worth, then another push: the backend asked for the event (req_event).
    for (let i = 0; i < TX_BUDGET; i++) fe.send(ethFrame(MAC_B, MAC_A, 64, i), { push: false });
    fe.pushTx();
    host.dispatch();
    fe.poll();
    fe.send(ethFrame(MAC_B, MAC_A, 64));
    host.dispatch();
    expect(out).toHaveLength(100 + TX_BUDGET + 1);
  });

  it("answers extra-info slots with NETIF_RSP_NULL and still delivers the frame", () => {
    const { host, fe, out } = setup();
    const f = ethFrame(MAC_B, MAC_A, 60);
    const gref = 5000;
    host.grant(3, gref).set(f, 0);
    fe.putTx({ gref, offset: 0, flags: NETTXF_extra_info, id: 9, size: 60 });
    fe.putTxRaw(Uint8Array.of(XEN_NETIF_EXTRA_TYPE_GSO, 0, 0, 0, 0, 0, 0, 0));
    fe.pushTx();
    host.dispatch();
    fe.poll();
    expect(out).toEqual([f]);
    expect(fe.txStatuses.map((s) => s.status)).toEqual([NETIF_RSP_OKAY, NETIF_RSP_NULL]);
    expect(fe.txStatuses[0]?.id).toBe(9);
  });

  it("a frame of size 0 or shorter than an Ethernet header is answered ERROR, and the vif runs on", () => {
    const { host, fe, vif, out } = setup();
    host.grant(3, 5000);
    fe.putTx({ gref: 5000, offset: 0, flags: 0, id: 1, size: 0 });
    fe.putTx({ gref: 5000, offset: 0, flags: 0, id: 2, size: 13 });
    fe.pushTx();
    host.dispatch();
    fe.send(ethFrame(MAC_B, MAC_A, 64));
    host.dispatch();
    fe.poll();
    expect(fe.txStatuses.map((s) => s.status)).toEqual([NETIF_RSP_ERROR, NETIF_RSP_ERROR, NETIF_RSP_OKAY]);
    expect(out).toHaveLength(1);
    expect(vif.counters.txErrors).toBe(2);
    expect(vif.broken).toBeUndefined();
  });

  it("a first slot whose size does not cover its fragments is answered ERROR on every slot", () => {
    const { host, fe, vif, out } = setup();
    host.grant(3, 5000);
    host.grant(3, 5001);
    fe.putTx({ gref: 5000, offset: 0, flags: NETTXF_more_data, id: 1, size: 100 });
    fe.putTx({ gref: 5001, offset: 0, flags: 0, id: 2, size: 200 });
    fe.pushTx();
    host.dispatch();
    fe.poll();
    expect(fe.txStatuses).toEqual([
      { id: 1, status: NETIF_RSP_ERROR },
      { id: 2, status: NETIF_RSP_ERROR },
    ]);
    expect(out).toHaveLength(0);
    expect(vif.broken).toBeUndefined();
  });

  it("a bad grant ref is answered ERROR (the copy fails; nothing of the backend's is exposed)", () => {
    const { host, fe, vif, out } = setup();
    fe.putTx({ gref: 77777, offset: 0, flags: 0, id: 4, size: 64 });
    fe.pushTx();
    host.dispatch();
    fe.poll();
    expect(fe.txStatuses).toEqual([{ id: 4, status: NETIF_RSP_ERROR }]);
    expect(out).toHaveLength(0);
    expect(vif.counters.txErrors).toBe(1);
  });

  it(`more than XEN_NETBK_LEGACY_SLOTS_MAX (${XEN_NETBK_LEGACY_SLOTS_MAX}) fragments: dropped with ERROR, not fatal`, () => {
    const { host, fe, vif, out } = setup();
    const frags = XEN_NETBK_LEGACY_SLOTS_MAX + 1; // slots after the first
    for (let i = 0; i <= frags; i++) host.grant(3, 6000 + i);
    fe.putTx({ gref: 6000, offset: 0, flags: NETTXF_more_data, id: 0, size: 14 + frags * 10 });
    for (let i = 1; i <= frags; i++) fe.putTx({ gref: 6000 + i, offset: 0, flags: i < frags ? NETTXF_more_data : 0, id: i, size: 10 });
    fe.pushTx();
    host.dispatch();
    fe.poll();
    expect(fe.txStatuses).toHaveLength(frags + 1);
    expect(fe.txStatuses.every((s) => s.status === NETIF_RSP_ERROR)).toBe(true);
    expect(out).toHaveLength(0);
    expect(vif.broken).toBeUndefined();
  });

  it(`XSA-423/432: FATAL_SKB_SLOTS (${FATAL_SKB_SLOTS}) or more slots disables the vif; its ring is not read again`, () => {
    const { host, fe, vif, out, log } = setup();
    host.grant(3, 6000);
    for (let i = 0; i < 40; i++) fe.putTx({ gref: 6000, offset: 0, flags: NETTXF_more_data, id: i, size: 1 });
    fe.pushTx();
    host.dispatch();
    expect(vif.broken).toMatch(/slots/);
    expect(log.some((l) => /vif disabled/.test(l))).toBe(true);
    expect(out).toHaveLength(0);
    // Later requests are ignored; no response is ever written past what was read.
    fe.send(ethFrame(MAC_B, MAC_A));
    host.dispatch();
    fe.poll();
    expect(out).toHaveLength(0);
    expect(fe.txStatuses).toHaveLength(0);
  });

  it("XSA-423: fragments running past the published requests (need more slots) are fatal, nothing past req_prod is read", () => {
    const { host, fe, vif, out } = setup();
    host.grant(3, 6000);
    fe.putTx({ gref: 6000, offset: 0, flags: NETTXF_more_data, id: 0, size: 200 });
    fe.putTx({ gref: 6000, offset: 0, flags: NETTXF_more_data, id: 1, size: 50 });
    // A well-formed request beyond req_prod that must not be consumed as a fragment.
    const at = RING_GET_REQUEST(fe.tx, fe.tx.req_prod_pvt);
    fe.pushTx();
    new DataView(fe.txPage.buffer).setUint16(at + netif_tx_request.size, 50, true);
    host.dispatch();
    expect(vif.broken).toMatch(/need more slots/);
    expect(out).toHaveLength(0);
  });

  it("a slot crossing its page (offset + size > 4096) is fatal", () => {
    const { host, fe, vif } = setup();
    host.grant(3, 6000);
    fe.putTx({ gref: 6000, offset: 4000, flags: 0, id: 0, size: 200 });
    fe.pushTx();
    host.dispatch();
    expect(vif.broken).toMatch(/cross page/);
  });

  it("a missing or invalid extra is fatal", () => {
    const a = setup();
    a.host.grant(3, 6000);
    a.fe.putTx({ gref: 6000, offset: 0, flags: NETTXF_extra_info, id: 0, size: 60 });
    a.fe.pushTx();
    a.host.dispatch();
    expect(a.vif.broken).toMatch(/missing extra/);
    const b = setup();
    b.host.grant(3, 6000);
    b.fe.putTx({ gref: 6000, offset: 0, flags: NETTXF_extra_info, id: 0, size: 60 });
    b.fe.putTxRaw(Uint8Array.of(77, 0, 0, 0, 0, 0, 0, 0));
    b.fe.pushTx();
    b.host.dispatch();
    expect(b.vif.broken).toMatch(/invalid extra type: 77/);
  });

  it("req_prod past the ring stops the vif with a logged bogus-requests error", () => {
    const { host, fe, vif, log, out } = setup();
    new DataView(fe.txPage.buffer).setUint32(0, 100_000, true);
    fe.notify();
    host.dispatch();
    expect(vif.broken).toMatch(/bogus requests/);
    expect(log.some((l) => /bogus requests.*req_prod 100000/.test(l))).toBe(true);
    expect(out).toHaveLength(0);
    // The RX side is stopped too: frames for it are dropped and counted.
    expect(vif.receive(ethFrame(MAC_A, MAC_B))).toBe(false);
    expect(vif.counters.rxDropped).toBe(1);
  });

  it("responses write only their own fields: the rest of a TX slot is the guest's own request bytes", () => {
    const { host, fe } = setup();
    host.grant(3, 6000).set(ethFrame(MAC_B, MAC_A, 64), 0);
    const at = fe.putTx({ gref: 6000, offset: 0, flags: 0, id: 0x1234, size: 64 });
    const before = fe.txPage.slice(at, at + netif_tx_request.SIZEOF);
    fe.pushTx();
    host.dispatch();
    const after = fe.txPage.slice(at, at + netif_tx_request.SIZEOF);
    expect([...after.subarray(0, 2)]).toEqual([0x34, 0x12]); // id
    expect([...after.subarray(2, 4)]).toEqual([0, 0]); // NETIF_RSP_OKAY
    expect([...after.subarray(4)]).toEqual([...before.subarray(4)]);
  });

  it("RING_COPY_REQUEST: a request changed after the backend read it does not change what is used", () => {
    const { host, fe, out } = setup();
    const f = ethFrame(MAC_B, MAC_A, 64);
    host.grant(3, 6000).set(f, 0);
    const at = fe.putTx({ gref: 6000, offset: 0, flags: 0, id: 1, size: 64 });
    fe.pushTx();
    // The frontend rewrites the slot's size whenever the backend reads the grant: the copy is
    // made from the validated private request, so the frame is exactly 64 bytes.
    const copy = host.grants.copy;
    (host.grants as { copy: typeof copy }).copy = (ops) => {
      new DataView(fe.txPage.buffer).setUint16(at + netif_tx_request.size, 4096, true);
      new DataView(fe.txPage.buffer).setUint16(at + netif_tx_request.offset, 4000, true);
      return copy(ops);
    };
    host.dispatch();
    expect(out).toEqual([f]);
  });

  it("fast-check: any TX ring contents never throw, never deliver more than was published, and the host runs on", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ gref: fc.constantFrom(6000, 6001, 99999), offset: fc.nat(4200), flags: fc.nat(15), id: fc.nat(0xffff), size: fc.nat(0xffff) }), { minLength: 1, maxLength: 40 }),
        fc.option(fc.nat(), { nil: undefined }),
        (reqs, prodOverride) => {
          const { host, fe, vif, out } = setup();
          host.grant(3, 6000);
          host.grant(3, 6001);
          for (const r of reqs) fe.putTx(r);
          fe.pushTx();
          if (prodOverride !== undefined) new DataView(fe.txPage.buffer).setUint32(0, prodOverride >>> 0, true);
          host.dispatch();
          fe.poll();
          for (const f of out) expect(f.length).toBeGreaterThanOrEqual(14);
          expect(out.length).toBeLessThanOrEqual(reqs.length);
          expect(fe.txStatuses.length).toBeLessThanOrEqual(Math.max(reqs.length, 256));
          expect(vif.counters.txPackets).toBe(out.length);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("netback RX (backend to guest)", () => {
  it("copies a frame into a posted buffer and answers with its length", () => {
    const { host, fe, vif } = setup();
    fe.postRx(4);
    host.dispatch();
    const f = ethFrame(MAC_A, MAC_B, 300);
    expect(vif.receive(f)).toBe(true);
    fe.poll();
    expect(fe.received).toEqual([f]);
    expect(fe.rxStatuses).toEqual([300]);
    expect(vif.counters).toMatchObject({ rxPackets: 1, rxBytes: 300 });
    expect(host.eventsTo(3, fe.port)).toBeGreaterThanOrEqual(1);
  });

  it("a frame larger than a page spans buffers with NETRXF_more_data", () => {
    const { fe, vif } = setup();
    fe.postRx(4);
    const f = ethFrame(MAC_A, MAC_B, 9000, 3);
    vif.receive(f);
    fe.poll();
    expect(fe.received).toHaveLength(1);
    expect(fe.received[0]).toEqual(f);
    expect(fe.rxStatuses).toEqual([4096, 4096, 808]);
  });

  it("frames wait for buffers and go out when the frontend posts them (the event)", () => {
    const { host, fe, vif } = setup();
    vif.receive(ethFrame(MAC_A, MAC_B, 100, 1));
    vif.receive(ethFrame(MAC_A, MAC_B, 100, 2));
    expect(vif.rxQueue.packets).toBe(2);
    fe.postRx(2);
    host.dispatch();
    fe.poll();
    expect(fe.received).toHaveLength(2);
    expect(vif.rxQueue).toEqual({ packets: 0, bytes: 0 });
  });

  it("a bad gref in a posted buffer: that slot is answered ERROR, counted, and later frames still arrive", () => {
    const { fe, vif } = setup();
    fe.postRx(1, { gref: 424242 });
    fe.postRx(1);
    vif.receive(ethFrame(MAC_A, MAC_B, 100));
    vif.receive(ethFrame(MAC_A, MAC_B, 100));
    fe.poll();
    expect(fe.rxStatuses).toEqual([NETIF_RSP_ERROR, 100]);
    expect(vif.counters.rxErrors).toBe(1);
    expect(vif.counters.rxPackets).toBe(1);
  });

  it("frames with bad lengths (0, < 14, > 65535) are dropped and counted", () => {
    const { fe, vif } = setup();
    fe.postRx(4);
    expect(vif.receive(new Uint8Array(0))).toBe(false);
    expect(vif.receive(new Uint8Array(13))).toBe(false);
    expect(vif.receive(new Uint8Array(65536))).toBe(false);
    expect(vif.counters.rxDropped).toBe(3);
  });

  it("CVE-2021-28714/28715: a netfront that posts no RX buffers keeps the backend's queue bounded; drops are counted", () => {
    const { host, vif, log } = setup();
    let accepted = 0;
    const N = 5000;
    for (let i = 0; i < N; i++) if (vif.receive(ethFrame(MAC_A, MAC_B, 1500, i))) accepted++;
    expect(vif.rxQueue.packets).toBeLessThanOrEqual(RX_QUEUE_MAX_PACKETS);
    expect(vif.rxQueue.bytes).toBeLessThanOrEqual(RX_QUEUE_MAX_BYTES);
    expect(vif.counters.rxDropped).toBe(N - accepted);
    // Drain timeout: queued frames are dropped after 10 modelled seconds.
    host.nowNs += RX_DRAIN_TIMEOUT_NS;
    vif.poll();
    expect(vif.rxQueue.packets).toBe(0);
    expect(vif.counters.rxDropped).toBe(N);
    // Stall: frames keep arriving, no buffers for 60 s: carrier off, everything dropped.
    for (let t = 0; t <= RX_STALL_TIMEOUT_NS / 5e9 + 1; t++) {
      vif.receive(ethFrame(MAC_A, MAC_B, 100));
      host.nowNs += 5e9;
      vif.poll();
    }
    expect(vif.carrier).toBe(false);
    expect(log.some((l) => /carrier off/.test(l))).toBe(true);
    const dropped = vif.counters.rxDropped;
    expect(vif.receive(ethFrame(MAC_A, MAC_B, 100))).toBe(false);
    expect(vif.counters.rxDropped).toBe(dropped + 1);
    expect(vif.rxQueue.packets).toBe(0);
  });

  it("after a stall the carrier comes back when the frontend posts buffers", () => {
    const { host, fe, vif } = setup();
    for (let t = 0; t < 14; t++) {
      vif.receive(ethFrame(MAC_A, MAC_B, 100));
      host.nowNs += 5e9;
      vif.poll();
    }
    expect(vif.carrier).toBe(false);
    fe.postRx(8);
    host.dispatch();
    expect(vif.carrier).toBe(true);
    expect(vif.receive(ethFrame(MAC_A, MAC_B, 100))).toBe(true);
    fe.poll();
    expect(fe.received).toHaveLength(1);
  });

  it("fast-check: any RX ring contents and frames never throw; responses never outrun posted requests; the queue stays bounded", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ id: fc.nat(0xffff), gref: fc.constantFrom(1000, 1001, 5555, 0xffffffff) }), { maxLength: 40 }),
        fc.array(fc.nat(70_000), { maxLength: 60 }),
        fc.option(fc.nat(), { nil: undefined }),
        (reqs, sizes, prodOverride) => {
          const { host, fe, vif } = setup();
          host.grant(3, 1000);
          host.grant(3, 1001);
          for (const r of reqs) fe.postRx(1, { gref: r.gref });
          if (prodOverride !== undefined) new DataView(fe.rxPage.buffer).setUint32(0, prodOverride >>> 0, true);
          fe.notify();
          host.dispatch();
          for (const n of sizes) vif.receive(new Uint8Array(n));
          host.nowNs += 1e9;
          vif.poll();
          const rspProd = new DataView(fe.rxPage.buffer).getUint32(8, true);
          // Never more responses than requests published (req_prod), nor than the ring holds.
          expect(rspProd).toBeLessThanOrEqual(Math.min(256, prodOverride === undefined ? reqs.length : prodOverride >>> 0));
          expect(vif.rxQueue.bytes).toBeLessThanOrEqual(RX_QUEUE_MAX_BYTES);
          expect(vif.rxQueue.packets).toBeLessThanOrEqual(RX_QUEUE_MAX_PACKETS);
          const c = vif.counters;
          expect(c.rxPackets + c.rxDropped + vif.rxQueue.packets).toBeLessThanOrEqual(sizes.length + c.rxErrors);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("a ring page the frontend revokes while dom0 has it mapped keeps working (the mapping holds the frame)", () => {
    const { host, fe, vif, out } = setup();
    host.revoke(3, fe.txRef);
    fe.send(ethFrame(MAC_B, MAC_A, 64));
    host.dispatch();
    expect(out).toHaveLength(1);
    expect(vif.broken).toBeUndefined();
  });

  it("RX req_prod past the ring disables the vif", () => {
    const { host, fe, vif } = setup();
    new DataView(fe.rxPage.buffer).setUint32(0, 0x8000_0000, true);
    fe.notify();
    host.dispatch();
    vif.receive(ethFrame(MAC_A, MAC_B, 100));
    expect(vif.broken).toMatch(/rx: .*bogus requests/);
  });

  it("disconnect unmaps both rings, closes the channel and drops the queue", () => {
    const { host, vif } = setup();
    vif.receive(ethFrame(MAC_A, MAC_B, 100));
    vif.disconnect();
    expect(host.unmaps).toBe(2);
    expect(host.bound.size).toBe(0);
    expect(vif.connected).toBe(false);
    expect(vif.counters.rxDropped).toBe(1);
  });

  it("split event channels: TX and RX each have their own port", () => {
    const host = new FakeHost();
    const fe = new TestNetfront(host, 4);
    const out: Uint8Array[] = [];
    const vif = new NetbackVif({ host, domid: 4, handle: 0, now: () => 0, onFrame: (f) => out.push(f) });
    expect(vif.connect({ ...fe.connection, rxEvtchn: 8 })).toBeUndefined();
    expect(host.bound.size).toBe(2);
    fe.postRx(1);
    vif.receive(ethFrame(MAC_A, MAC_B, 64));
    expect(host.eventsTo(4, 8)).toBe(1);
    fe.send(ethFrame(MAC_B, MAC_A, 64));
    host.dispatch();
    expect(out).toHaveLength(1);
    expect(host.eventsTo(4, 7)).toBe(1);
  });

  it("connect fails cleanly on a bad ring ref or port", () => {
    const host = new FakeHost();
    const fe = new TestNetfront(host, 4);
    const vif = new NetbackVif({ host, domid: 4, handle: 0, now: () => 0 });
    expect(vif.connect({ ...fe.connection, rxRingRef: 31337 })).toEqual({ kind: "map", ring: "rx", status: -3 });
    expect(vif.connect({ ...fe.connection, txEvtchn: -1 })).toMatchObject({ kind: "evtchn" });
    expect(vif.connected).toBe(false);
    expect(host.unmaps).toBe(host.maps);
  });
});
