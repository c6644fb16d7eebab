/**
 * netfront (Linux's xen-netfront): a vif's frontend over netif TX and RX rings, rx-copy mode.
 *
 * Connecting (talk_to_netback): read `backend`, `backend-id` and the frontend's `mac`, wait for
 * the backend's InitWait, grant a TX and an RX ring page, allocate one event channel for both,
 * write tx-ring-ref, rx-ring-ref, event-channel, request-rx-copy = 1 and feature-rx-notify = 1
 * in a transaction (retried on EAGAIN), post the RX buffers, go Connected and wait for the
 * backend's Connected.
 *
 * RX: `RX_BUFFERS` pages, each granted to the backend and posted as {id, gref}; the backend
 * copies a frame into one and answers {id, offset, flags, status = length}; frames of several
 * slots (NETRXF_more_data) are joined; each buffer is posted again after its response.
 * TX: a frame is copied into a page granted read-only, sent as one request {gref, offset 0,
 * flags 0, id, size}; the page and grant are reused after its TX response.
 *
 * Modelled more simply than Linux: frames up to one page (no scatter-gather TX, no GSO, no
 * checksum offload: the backend says feature-no-csum-offload), one queue. Responses are the
 * backend's bytes: ids outside the posted ones, offsets or lengths past the page are counted and
 * dropped, a corrupt rsp_prod stops the device.
 */
import {
  NETIF_RSP_OKAY,
  NETRXF_more_data,
  XenbusStateClosed,
  XenbusStateClosing,
  XenbusStateConnected,
  XenbusStateInitialised,
  XenbusStateInitWait,
  netif_rx_request,
  netif_rx_response,
  netif_tx_request,
  netif_tx_response,
  netif_rx_sring_entry,
  netif_tx_sring_entry,
} from "@vtlab/xen-public";
import type { Frontends } from "./boot.js";
import { FrontRing } from "./front-ring.js";
import { frontendError, type FrontendError } from "./hypercall.js";
import { PAGE_SIZE } from "./mem.js";
import { XenbusDevice, isXsError } from "./xenbus.js";

/** RX buffers kept posted. */
export const RX_BUFFERS = 64;
/** TX pages (frames in flight at most). */
export const TX_BUFFERS = 64;
/** Received frames kept before the oldest are dropped. */
export const MAX_RX_QUEUE = 256;


export class Netfront {
  mac = "";
  readonly stats = { txFrames: 0, txErrors: 0, rxFrames: 0, rxErrors: 0, rxDropped: 0, bogusResponses: 0, notifies: 0 };
  private tx!: FrontRing;
  private rx!: FrontRing;
  private port = -1;
  private ringRefs: number[] = [];
  closed = false;
  private readonly rxBufs: { page: number; ref: number; posted: boolean }[] = [];
  private readonly txFree: number[] = [];
  private readonly txBufs: { page: number; ref: number; busy: boolean }[] = [];
  private readonly rxQueue: Uint8Array[] = [];
  private partial: Uint8Array[] = [];

  private constructor(
    private readonly f: Frontends,
    readonly dev: XenbusDevice,
  ) {}

  static *connect(f: Frontends, devid = 0): Generator<void, Netfront | FrontendError, void> {
    const xs = f.xenbus;
    if (xs === undefined) return frontendError("no xenstore");
    const dev = new XenbusDevice(xs, `device/vif/${devid}`);
    const probed = yield* dev.probe();
    if (isXsError(probed)) return frontendError(`vif ${devid}: probe: ${probed.error}`);
    const n = new Netfront(f, dev);
    const mac = yield* xs.read(`${dev.nodename}/mac`);
    n.mac = isXsError(mac) ? "" : mac;
    const s = yield* dev.waitBackend([XenbusStateInitWait, XenbusStateInitialised, XenbusStateConnected]);
    if (s !== XenbusStateInitWait) return frontendError(`vif ${devid}: backend state ${isXsError(s) ? s.error : s}, not InitWait`);
    const txPage = f.pages.alloc();
    const rxPage = f.pages.alloc();
    if (txPage === undefined || rxPage === undefined) return frontendError("out of memory for the rings");
    n.tx = new FrontRing(f.mem, txPage, netif_tx_sring_entry.SIZEOF);
    n.rx = new FrontRing(f.mem, rxPage, netif_rx_sring_entry.SIZEOF);
    n.tx.init();
    n.rx.init();
    const txRef = f.grants.grantAccess(dev.backendId, txPage / PAGE_SIZE);
    const rxRef = f.grants.grantAccess(dev.backendId, rxPage / PAGE_SIZE);
    if (txRef === undefined || rxRef === undefined) return frontendError("no grant refs for the rings");
    n.ringRefs = [txRef, rxRef];
    const port = f.evtchn.allocUnbound(dev.backendId);
    if (port < 0) return frontendError(`alloc_unbound: ${port}`);
    n.port = port;
    for (let i = 0; i < RX_BUFFERS; i++) {
      const page = f.pages.alloc();
      const ref = page === undefined ? undefined : f.grants.grantAccess(dev.backendId, page / PAGE_SIZE);
      if (page === undefined || ref === undefined) return frontendError("out of memory or grant refs for RX buffers");
      n.rxBufs.push({ page, ref, posted: false });
    }
    for (let i = 0; i < TX_BUFFERS; i++) {
      const page = f.pages.alloc();
      const ref = page === undefined ? undefined : f.grants.grantAccess(dev.backendId, page / PAGE_SIZE, true);
      if (page === undefined || ref === undefined) return frontendError("out of memory or grant refs for TX buffers");
      n.txBufs.push({ page, ref, busy: false });
      n.txFree.push(TX_BUFFERS - 1 - i);
    }
    const written = yield* xs.writeAllInTransaction(dev.nodename, [
      ["tx-ring-ref", String(txRef)],
      ["rx-ring-ref", String(rxRef)],
      ["event-channel", String(port)],
      ["request-rx-copy", "1"],
      ["feature-rx-notify", "1"],
    ]);
    if (written !== undefined) return frontendError(written);
    n.postRx();
    const st = yield* dev.switchState(XenbusStateConnected);
    if (st !== undefined) return frontendError(`state: ${st.error}`);
    const c = yield* dev.waitBackend([XenbusStateConnected]);
    if (c !== XenbusStateConnected) return frontendError(`vif ${devid}: backend went to ${isXsError(c) ? c.error : c}, not Connected`);
    return n;
  }

  /** xennet_alloc_rx_buffers: post every buffer not posted, notify if the backend asked. */
  private postRx(): void {
    const mem = this.f.mem;
    let posted = 0;
    this.rxBufs.forEach((b, id) => {
      if (b.posted || this.rx.freeRequests === 0) return;
      const slot = this.rx.slot(this.rx.reqProdPvt);
      mem.write16(slot + netif_rx_request.id, id);
      mem.write16(slot + netif_rx_request.pad, 0);
      mem.write32(slot + netif_rx_request.gref, b.ref);
      this.rx.reqProdPvt = (this.rx.reqProdPvt + 1) >>> 0;
      b.posted = true;
      posted++;
    });
    if (posted > 0 && this.rx.pushRequests()) this.notify();
  }

  private notify(): void {
    this.f.evtchn.send(this.port);
    this.stats.notifies++;
  }

  /** Take TX and RX responses (the event handler's work). */
  private poll(): void {
    const mem = this.f.mem;
    // TX completions.
    for (;;) {
      const r = this.tx.unconsumed();
      if (r === undefined) break;
      for (let i = r[0]; i !== r[1]; i = (i + 1) >>> 0) {
        const slot = this.tx.slot(i);
        const id = mem.read16(slot + netif_tx_response.id);
        const status = (mem.read16(slot + netif_tx_response.status) << 16) >> 16;
        const b = this.txBufs[id];
        if (b === undefined || !b.busy) {
          this.stats.bogusResponses++;
          continue;
        }
        b.busy = false;
        this.txFree.push(id);
        if (status !== NETIF_RSP_OKAY) this.stats.txErrors++;
      }
      this.tx.rspCons = r[1];
      if (!this.tx.finalCheck()) break;
    }
    // RX frames.
    for (;;) {
      const r = this.rx.unconsumed();
      if (r === undefined) break;
      for (let i = r[0]; i !== r[1]; i = (i + 1) >>> 0) {
        const slot = this.rx.slot(i);
        const id = mem.read16(slot + netif_rx_response.id);
        const offset = mem.read16(slot + netif_rx_response.offset);
        const flags = mem.read16(slot + netif_rx_response.flags);
        const status = (mem.read16(slot + netif_rx_response.status) << 16) >> 16;
        const b = this.rxBufs[id];
        if (b === undefined || !b.posted) {
          this.stats.bogusResponses++;
          continue;
        }
        b.posted = false;
        if (status <= 0 || offset + status > PAGE_SIZE) {
          this.stats.rxErrors++;
          this.partial = [];
          continue;
        }
        this.partial.push(mem.readBytes(b.page + offset, status));
        if ((flags & NETRXF_more_data) !== 0 && this.partial.length < 18) continue;
        const total = this.partial.reduce((a, p) => a + p.length, 0);
        const frame = new Uint8Array(total);
        let at = 0;
        for (const p of this.partial) {
          frame.set(p, at);
          at += p.length;
        }
        this.partial = [];
        if (this.rxQueue.length >= MAX_RX_QUEUE) {
          this.rxQueue.shift();
          this.stats.rxDropped++;
        }
        this.rxQueue.push(frame);
        this.stats.rxFrames++;
      }
      this.rx.rspCons = r[1];
      if (!this.rx.finalCheck()) break;
    }
    this.postRx();
  }

  private get broken(): string | undefined {
    return this.tx.broken ?? this.rx.broken;
  }

  /** Send one Ethernet frame (14..4096 bytes), waiting for a free TX buffer: false if it cannot be sent. */
  *send(frame: Uint8Array): Generator<void, boolean, void> {
    if (this.closed || frame.length < 14 || frame.length > PAGE_SIZE) return false;
    for (;;) {
      if (this.broken !== undefined) return false;
      this.f.evtchn.clear(this.port);
      this.poll();
      if (this.txFree.length > 0 && this.tx.freeRequests > 0) break;
      yield* this.f.evtchn.poll([this.port]);
    }
    const id = this.txFree.pop()!;
    const b = this.txBufs[id]!;
    b.busy = true;
    const mem = this.f.mem;
    mem.writeBytes(b.page, frame);
    const slot = this.tx.slot(this.tx.reqProdPvt);
    mem.write32(slot + netif_tx_request.gref, b.ref);
    mem.write16(slot + netif_tx_request.offset, 0);
    mem.write16(slot + netif_tx_request.flags, 0);
    mem.write16(slot + netif_tx_request.id, id);
    mem.write16(slot + netif_tx_request.size, frame.length);
    this.tx.reqProdPvt = (this.tx.reqProdPvt + 1) >>> 0;
    this.stats.txFrames++;
    if (this.tx.pushRequests()) this.notify();
    return true;
  }

  /**
   * xennet_disconnect_backend: go Closing, wait for the backend's disconnect (Closing or Closed),
   * go Closed, end the rings' and buffers' grants, close the port. False when a grant is still in
   * use (left, never reused).
   */
  *close(): Generator<void, boolean, void> {
    if (this.closed) return true;
    this.closed = true;
    yield* this.dev.switchState(XenbusStateClosing);
    yield* this.dev.waitBackend([XenbusStateClosing, XenbusStateClosed]);
    yield* this.dev.switchState(XenbusStateClosed);
    let clean = true;
    for (const ref of [...this.ringRefs, ...this.rxBufs.map((b) => b.ref), ...this.txBufs.map((b) => b.ref)]) if (!this.f.grants.endAccess(ref)) clean = false;
    this.f.evtchn.close(this.port);
    return clean;
  }

  /** The frames received so far (taking them). */
  receive(): Uint8Array[] {
    if (this.closed) return [];
    this.f.evtchn.clear(this.port);
    if (this.broken === undefined) this.poll();
    return this.rxQueue.splice(0);
  }

  /** Wait until at least one frame arrived (or the device broke): the frames. */
  *waitReceive(): Generator<void, Uint8Array[], void> {
    for (;;) {
      const got = this.receive();
      if (got.length > 0 || this.broken !== undefined || this.closed) return got;
      yield* this.f.evtchn.poll([this.port]);
    }
  }

  /** The MAC as six bytes (zeros when unreadable). */
  macBytes(): Uint8Array {
    const parts = this.mac.split(":").map((h) => Number.parseInt(h, 16));
    return Uint8Array.from(parts.length === 6 && parts.every((x) => x >= 0 && x <= 255) ? parts : [0, 0, 0, 0, 0, 0]);
  }
}
