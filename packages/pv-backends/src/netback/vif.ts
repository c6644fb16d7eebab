/**
 * One netback vif: the backend half of a netif device (xen/io/netif.h), modelled on Linux's
 * drivers/net/xen-netback (netback.c's TX path, rx.c's RX path, interface.c's queue bound).
 *
 * Naming follows the rings, i.e. the guest's point of view: the TX ring carries frames the guest
 * transmits (netback copies them out of the guest's granted pages and hands them to `onFrame`,
 * the bridge port), the RX ring carries frames to the guest (netback copies each into buffers
 * the guest posted as netif_rx_requests). Counters are named the same way.
 *
 * Everything in the rings is hostile. Each request slot is copied once (RING_COPY_REQUEST) before
 * it is decoded; req_prod is checked with RING_REQUEST_PROD_OVERFLOW; lengths, offsets, slot
 * counts and extra-info types are checked as xenvif_count_requests / xenvif_get_extras /
 * xenvif_tx_build_gops do. Errors a packet can carry are answered NETIF_RSP_ERROR and the packet
 * is dropped; the errors Linux calls fatal (xenvif_fatal_tx_err: a req_prod past the ring, a
 * packet needing more slots than were published or more than FATAL_SKB_SLOTS, a slot crossing
 * its page, a missing or bad extra) mark the vif broken: its rings are never read again, nothing
 * more is queued for it, and the reason is logged and kept in `broken`.
 *
 * The RX queue is bounded (CVE-2021-28714/28715): at most RX_QUEUE_MAX_BYTES and
 * RX_QUEUE_MAX_PACKETS wait for RX buffers; more are dropped and counted. A frame that waited
 * RX_DRAIN_TIMEOUT_NS of modelled time is dropped; when the frontend has posted too few buffers
 * for the head frame for RX_STALL_TIMEOUT_NS the vif's carrier goes off (the queue is dropped and
 * every new frame too) until it posts enough for a frame again, as rx.c's stall detection does.
 *
 * Simpler than Linux: one queue (no multi-queue), no GSO, no hash or multicast control (their
 * extras are accepted and skipped), no persistent mappings of TX pages (every slot is a grant
 * copy), no rate limit (`rate` / credit), and the RX side fills each posted buffer from offset 0
 * with up to a page of the frame (rx-copy only; rx-flip is not offered). RX responses carry no
 * checksum flags.
 */
import { PAGE_SIZE } from "@vtlab/arch";
import {
  BACK_RING_INIT,
  GNTST_okay,
  NETIF_RSP_ERROR,
  NETIF_RSP_NULL,
  NETIF_RSP_OKAY,
  NETRXF_more_data,
  NETTXF_extra_info,
  NETTXF_more_data,
  RING_FINAL_CHECK_FOR_REQUESTS,
  RING_GET_REQUEST,
  RING_PUSH_RESPONSES_AND_CHECK_NOTIFY,
  RING_REQUEST_PROD_OVERFLOW,
  XEN_NETIF_EXTRA_FLAG_MORE,
  XEN_NETIF_EXTRA_TYPE_MAX,
  XEN_NETIF_EXTRA_TYPE_NONE,
  XEN_NETIF_NR_SLOTS_MIN,
  netif_extra_info,
  netif_rx_request,
  netif_rx_response,
  netif_rx_sring_entry,
  netif_tx_request,
  netif_tx_response,
  netif_tx_sring_entry,
  read_netif_rx_request,
  read_netif_tx_request,
  set_sring_req_event,
  sring_req_prod,
  write_netif_rx_response,
  write_netif_tx_response,
  type back_ring,
  type netif_tx_request_t,
} from "@vtlab/xen-public";
import type { BackendGrantMapping, BackendHost } from "../host.js";
import { RingPageView } from "./ring-page.js";

/** Linux XEN_NETBK_LEGACY_SLOTS_MAX: more slots in one packet are dropped (-E2BIG), not fatal. */
export const XEN_NETBK_LEGACY_SLOTS_MAX = XEN_NETIF_NR_SLOTS_MIN;
/** Linux FATAL_SKB_SLOTS_DEFAULT: a packet of this many slots or more disables the vif. */
export const FATAL_SKB_SLOTS = 20;
/** ETH_HLEN: a TX packet shorter than an Ethernet header is an error ("Bad packet size"). */
export const ETH_HLEN = 14;
/** The largest frame: a netif_tx_request's u16 size (XEN_NETIF_MAX_TX_SIZE). */
export const NETBACK_MAX_FRAME = 0xffff;
/** Linux XENVIF_RX_QUEUE_BYTES: half the RX ring's worth of pages. */
export const RX_QUEUE_MAX_BYTES = (256 / 2) * PAGE_SIZE;
/** vtlab's own bound on queued frames (Linux bounds bytes only; this bounds the objects too). */
export const RX_QUEUE_MAX_PACKETS = 1024;
/** Linux rx_drain_timeout_msecs (10 s): a frame queued longer is dropped. */
export const RX_DRAIN_TIMEOUT_NS = 10_000_000_000;
/** Linux rx_stall_timeout_msecs (60 s): a frontend posting no buffers this long loses its carrier. */
export const RX_STALL_TIMEOUT_NS = 60_000_000_000;
/** Requests taken from the TX ring per event before yielding (Linux's NAPI budget, 64). */
export const TX_BUDGET = 64;

/** What the frontend wrote to xenstore, as netback's connect() reads it. */
export interface NetifConnection {
  readonly txRingRef: number;
  readonly rxRingRef: number;
  /** The frontend's port for TX events (or the single `event-channel`). */
  readonly txEvtchn: number;
  /** The frontend's port for RX events; undefined: one channel for both. */
  readonly rxEvtchn?: number;
}

export interface VifCounters {
  /** Frames taken from the TX ring and handed on. */
  txPackets: number;
  txBytes: number;
  /** TX packets answered NETIF_RSP_ERROR (bad size, too many slots, failed copies, no carrier out). */
  txErrors: number;
  /** Frames put on the RX ring. */
  rxPackets: number;
  rxBytes: number;
  /** Frames for the guest dropped: queue full, drained, carrier off, not connected, bad length. */
  rxDropped: number;
  /** RX slots answered NETIF_RSP_ERROR (a bad grant in a posted buffer). */
  rxErrors: number;
  /** Events sent to the frontend. */
  notifies: number;
}

export interface VifOptions {
  readonly host: BackendHost;
  /** The frontend's domain. */
  readonly domid: number;
  /** The vif's handle (devid). */
  readonly handle: number;
  /** Modelled time, in ns (drain and stall timeouts). */
  readonly now: () => number;
  /** A frame the guest transmitted (the bridge port's input). */
  readonly onFrame?: (frame: Uint8Array) => void;
  /** Log lines (fatal errors, as netdev_err would print them). */
  readonly log?: (line: string) => void;
}

export type ConnectError = { readonly kind: "map"; readonly ring: "tx" | "rx"; readonly status: number } | { readonly kind: "evtchn"; readonly port: number; readonly error: number } | { readonly kind: "state"; readonly detail: string };

interface QueuedFrame {
  readonly bytes: Uint8Array;
  readonly expires: number;
}

interface Ring {
  readonly mapping: BackendGrantMapping;
  readonly page: RingPageView;
  readonly ring: back_ring;
}

export class NetbackVif {
  readonly domid: number;
  readonly handle: number;
  readonly name: string;
  readonly counters: VifCounters = { txPackets: 0, txBytes: 0, txErrors: 0, rxPackets: 0, rxBytes: 0, rxDropped: 0, rxErrors: 0, notifies: 0 };
  /** Why the vif was disabled (a fatal ring error), or undefined. */
  broken: string | undefined;
  /** False while the RX path is stalled (CVE-2021-28715's carrier off). */
  carrier = true;
  onFrame: ((frame: Uint8Array) => void) | undefined;

  private readonly host: BackendHost;
  private readonly now: () => number;
  private readonly log: (line: string) => void;
  private tx: Ring | undefined;
  private rx: Ring | undefined;
  private txPort = -1;
  private rxPort = -1;
  private readonly queue: QueuedFrame[] = [];
  private queueHead = 0;
  private queuedBytes = 0;
  private stalledSince: number | undefined;
  private inTx = false;
  /** Requests were left on the TX ring when the budget ran out. */
  private txMore = false;

  constructor(options: VifOptions) {
    this.host = options.host;
    this.domid = options.domid;
    this.handle = options.handle;
    this.name = `vif${options.domid}.${options.handle}`;
    this.now = options.now;
    this.onFrame = options.onFrame;
    this.log = options.log ?? (() => undefined);
  }

  get connected(): boolean {
    return this.tx !== undefined && this.rx !== undefined;
  }

  /** Frames and bytes waiting for RX buffers. */
  get rxQueue(): { readonly packets: number; readonly bytes: number } {
    return { packets: this.queue.length - this.queueHead, bytes: this.queuedBytes };
  }

  /** Map both rings and bind the event channel(s) (netback's connect_data_rings). */
  connect(c: NetifConnection): ConnectError | undefined {
    if (this.tx !== undefined) return { kind: "state", detail: "already connected" };
    const tx = this.mapRing(c.txRingRef, netif_tx_sring_entry);
    if (typeof tx === "number") return { kind: "map", ring: "tx", status: tx };
    const rx = this.mapRing(c.rxRingRef, netif_rx_sring_entry);
    if (typeof rx === "number") {
      this.host.grants.unmap(tx.mapping);
      return { kind: "map", ring: "rx", status: rx };
    }
    const txPort = this.host.evtchn.bindInterdomain(this.domid, c.txEvtchn);
    if (txPort < 0) {
      this.host.grants.unmap(tx.mapping);
      this.host.grants.unmap(rx.mapping);
      return { kind: "evtchn", port: c.txEvtchn, error: txPort };
    }
    let rxPort = txPort;
    if (c.rxEvtchn !== undefined) {
      rxPort = this.host.evtchn.bindInterdomain(this.domid, c.rxEvtchn);
      if (rxPort < 0) {
        this.host.evtchn.close(txPort);
        this.host.grants.unmap(tx.mapping);
        this.host.grants.unmap(rx.mapping);
        return { kind: "evtchn", port: c.rxEvtchn, error: rxPort };
      }
    }
    this.tx = tx;
    this.rx = rx;
    this.txPort = txPort;
    this.rxPort = rxPort;
    if (rxPort === txPort) this.host.evtchn.onEvent(txPort, () => this.interrupt());
    else {
      this.host.evtchn.onEvent(txPort, () => this.processTx());
      this.host.evtchn.onEvent(rxPort, () => this.flushRx());
    }
    this.carrier = true;
    this.stalledSince = undefined;
    return undefined;
  }

  /** Unbind, unmap and drop the queue (netback's disconnect); the vif may connect again. */
  disconnect(): void {
    if (this.txPort >= 0) {
      this.host.evtchn.onEvent(this.txPort, undefined);
      this.host.evtchn.close(this.txPort);
    }
    if (this.rxPort >= 0 && this.rxPort !== this.txPort) {
      this.host.evtchn.onEvent(this.rxPort, undefined);
      this.host.evtchn.close(this.rxPort);
    }
    this.txPort = this.rxPort = -1;
    if (this.tx !== undefined) this.host.grants.unmap(this.tx.mapping);
    if (this.rx !== undefined) this.host.grants.unmap(this.rx.mapping);
    this.tx = this.rx = undefined;
    this.dropQueue();
  }

  /** Both directions' work (one event channel for both). */
  interrupt(): void {
    this.processTx();
    this.flushRx();
  }

  /** Timeouts on modelled time: call between scheduler slices (drain and stall checks, RX retry). */
  poll(): void {
    if (this.txMore) this.processTx();
    this.flushRx();
  }

  // -------------------------------------------------------------------------------------------
  // RX: frames to the guest

  /** A frame for the guest (from the bridge): queued, then copied into posted buffers. False: dropped. */
  receive(frame: Uint8Array): boolean {
    if (!this.connected || this.broken !== undefined || !this.carrier || frame.length < ETH_HLEN || frame.length > NETBACK_MAX_FRAME) {
      this.counters.rxDropped++;
      return false;
    }
    if (this.queue.length - this.queueHead >= RX_QUEUE_MAX_PACKETS || this.queuedBytes + frame.length > RX_QUEUE_MAX_BYTES) {
      this.counters.rxDropped++;
      return false;
    }
    this.queue.push({ bytes: frame, expires: this.now() + RX_DRAIN_TIMEOUT_NS });
    this.queuedBytes += frame.length;
    this.flushRx();
    return true;
  }

  private dropQueue(): void {
    this.counters.rxDropped += this.queue.length - this.queueHead;
    this.queue.length = 0;
    this.queueHead = 0;
    this.queuedBytes = 0;
  }

  private shift(): void {
    const f = this.queue[this.queueHead];
    if (f === undefined) return;
    this.queuedBytes -= f.bytes.length;
    this.queueHead++;
    if (this.queueHead > 64 && this.queueHead * 2 > this.queue.length) {
      this.queue.splice(0, this.queueHead);
      this.queueHead = 0;
    }
    if (this.queueHead === this.queue.length) {
      this.queue.length = 0;
      this.queueHead = 0;
    }
  }

  /** xenvif_rx_action: as many queued frames as the posted buffers take, then one notify. */
  flushRx(): void {
    const rx = this.rx;
    if (rx === undefined || this.broken !== undefined) return;
    const now = this.now();
    // Drain: frames that waited too long go (rx.c's xenvif_rx_queue_drop_expired).
    for (let f = this.queue[this.queueHead]; f !== undefined && f.expires <= now; f = this.queue[this.queueHead]) {
      this.shift();
      this.counters.rxDropped++;
    }
    const r = rx.ring;
    let produced = false;
    for (let f = this.queue[this.queueHead]; f !== undefined; f = this.queue[this.queueHead]) {
      const need = Math.max(1, Math.ceil(f.bytes.length / PAGE_SIZE));
      const prod = sring_req_prod(r);
      if (RING_REQUEST_PROD_OVERFLOW(r, prod)) {
        this.fatal(`rx: impossible number of requests (bogus requests): req_prod ${prod}, req_cons ${r.req_cons}, size ${r.nr_ents}`);
        return;
      }
      let avail = (prod - r.req_cons) >>> 0;
      if (avail < need) {
        // Ask for an event when enough are posted (xenvif_rx_ring_slots_available), re-check.
        set_sring_req_event(r, r.req_cons + need);
        avail = (sring_req_prod(r) - r.req_cons) >>> 0;
        if (avail < need || RING_REQUEST_PROD_OVERFLOW(r, sring_req_prod(r))) break;
      }
      this.putFrame(rx, f.bytes, need);
      this.shift();
      produced = true;
    }
    if (produced && RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(r)) this.notify(this.rxPort);
    this.checkStall(now);
  }

  private putFrame(rx: Ring, bytes: Uint8Array, slots: number): void {
    const r = rx.ring;
    let errors = 0;
    const rsp = new Uint8Array(netif_rx_response.SIZEOF);
    const rspView = new DataView(rsp.buffer);
    for (let i = 0; i < slots; i++) {
      const req = read_netif_rx_request(rx.page.copySlot(RING_GET_REQUEST(r, r.req_cons), netif_rx_request.SIZEOF), 0);
      r.req_cons = (r.req_cons + 1) >>> 0;
      const start = i * PAGE_SIZE;
      const len = Math.min(PAGE_SIZE, bytes.length - start);
      const [status] = this.host.grants.copy([{ source: { bytes: bytes.subarray(start, start + len) }, dest: { domid: this.domid, ref: req.gref, offset: 0 }, len }]);
      const ok = status === GNTST_okay;
      if (!ok) errors++;
      write_netif_rx_response(rspView, 0, { id: req.id, offset: 0, flags: i + 1 < slots ? NETRXF_more_data : 0, status: ok ? len : NETIF_RSP_ERROR });
      rx.page.put(RING_GET_REQUEST(r, r.rsp_prod_pvt), rsp);
      r.rsp_prod_pvt = (r.rsp_prod_pvt + 1) >>> 0;
    }
    if (errors > 0) this.counters.rxErrors += errors;
    else {
      this.counters.rxPackets++;
      this.counters.rxBytes += bytes.length;
    }
  }

  private checkStall(now: number): void {
    const waiting = this.queue.length - this.queueHead;
    if (waiting === 0) {
      this.stalledSince = undefined;
      if (!this.carrier) this.carrierOn();
      return;
    }
    if (this.stalledSince === undefined) this.stalledSince = now;
    else if (this.carrier && now - this.stalledSince >= RX_STALL_TIMEOUT_NS) {
      this.carrier = false;
      this.log(`${this.name}: rx stalled: no buffers posted for ${RX_STALL_TIMEOUT_NS / 1e9} s; carrier off`);
      this.dropQueue();
      this.stalledSince = undefined;
    }
  }

  /** While the carrier is off, an event with buffers for a whole page-sized frame turns it back on. */
  private carrierOn(): void {
    const rx = this.rx;
    if (rx === undefined) return;
    const prod = sring_req_prod(rx.ring);
    if (!RING_REQUEST_PROD_OVERFLOW(rx.ring, prod) && ((prod - rx.ring.req_cons) >>> 0) >= 1) {
      this.carrier = true;
      this.log(`${this.name}: rx buffers posted again; carrier on`);
    } else set_sring_req_event(rx.ring, rx.ring.req_cons + 1);
  }

  // -------------------------------------------------------------------------------------------
  // TX: frames from the guest

  /** Take up to TX_BUDGET packets' worth of requests off the TX ring (xenvif_tx_action). */
  processTx(): void {
    const tx = this.tx;
    if (tx === undefined || this.broken !== undefined || this.inTx) return;
    this.inTx = true;
    try {
      const r = tx.ring;
      let pushed = false;
      for (let n = 0; n < TX_BUDGET && this.broken === undefined; n++) {
        const prod = sring_req_prod(r);
        if (RING_REQUEST_PROD_OVERFLOW(r, prod)) {
          this.fatal(`tx: impossible number of requests (bogus requests): req_prod ${prod}, req_cons ${r.req_cons}, size ${r.nr_ents}`);
          break;
        }
        if (prod === r.req_cons && RING_FINAL_CHECK_FOR_REQUESTS(r) === 0) break;
        const frame = this.takePacket(tx, sring_req_prod(r));
        pushed = true;
        if (frame !== undefined) this.onFrame?.(frame);
      }
      if (pushed && this.broken === undefined && RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(r)) this.notify(this.txPort);
      // Out of budget: ask for the next event (req_event) and remember whether work is left,
      // which poll() takes next (Linux reschedules its NAPI poll instead).
      this.txMore = this.broken === undefined && RING_FINAL_CHECK_FOR_REQUESTS(r) > 0;
    } finally {
      this.inTx = false;
    }
  }

  private slot(tx: Ring, idx: number): netif_tx_request_t {
    return read_netif_tx_request(tx.page.copySlot(RING_GET_REQUEST(tx.ring, idx), netif_tx_request.SIZEOF), 0);
  }

  /** One packet: its first slot, extras, fragments; checked, copied, answered. */
  private takePacket(tx: Ring, prod: number): Uint8Array | undefined {
    const r = tx.ring;
    if (RING_REQUEST_PROD_OVERFLOW(r, prod)) {
      this.fatal(`tx: impossible number of requests (bogus requests): req_prod ${prod}, req_cons ${r.req_cons}, size ${r.nr_ents}`);
      return undefined;
    }
    let idx = r.req_cons;
    const first = this.slot(tx, idx);
    idx = (idx + 1) >>> 0;
    // Extras (xenvif_get_extras): each takes a slot and is answered NETIF_RSP_NULL.
    const extraIds: number[] = []; // ring indices of the extra slots
    if (first.flags & NETTXF_extra_info) {
      for (;;) {
        if (idx === prod) return this.fatalUndefined("tx: missing extra info");
        const v = tx.page.copySlot(RING_GET_REQUEST(r, idx), netif_extra_info.SIZEOF);
        const type = v.getUint8(netif_extra_info.type);
        const flags = v.getUint8(netif_extra_info.flags);
        idx = (idx + 1) >>> 0;
        if (type === XEN_NETIF_EXTRA_TYPE_NONE || type >= XEN_NETIF_EXTRA_TYPE_MAX) return this.fatalUndefined(`tx: invalid extra type: ${type}`);
        extraIds.push(idx - 1);
        if (!(flags & XEN_NETIF_EXTRA_FLAG_MORE)) break;
      }
    }
    // Fragments (xenvif_count_requests).
    const frags: netif_tx_request_t[] = [];
    let firstSize = first.size;
    let dropErr: string | undefined;
    if (first.flags & NETTXF_more_data) {
      let more = true;
      while (more) {
        if (idx === prod) return this.fatalUndefined(`tx: need more slots (${frags.length + 1} read, none published)`);
        if (frags.length >= FATAL_SKB_SLOTS) return this.fatalUndefined(`tx: asked for ${frags.length + 1} slots, over the limit of ${FATAL_SKB_SLOTS}`);
        if (frags.length >= XEN_NETBK_LEGACY_SLOTS_MAX && dropErr === undefined) dropErr = `too many slots (${frags.length + 1} > ${XEN_NETBK_LEGACY_SLOTS_MAX})`;
        const txp = this.slot(tx, idx);
        idx = (idx + 1) >>> 0;
        if (dropErr === undefined && txp.size > firstSize) dropErr = `fragment of ${txp.size} bytes bigger than the frame's remaining ${firstSize}`;
        firstSize = Math.max(0, firstSize - txp.size);
        if (txp.offset + txp.size > PAGE_SIZE) return this.fatalUndefined(`tx: cross page boundary, offset ${txp.offset}, size ${txp.size}`);
        frags.push(txp);
        more = (txp.flags & NETTXF_more_data) !== 0;
      }
    }
    r.req_cons = idx;
    const answer = (status: number) => {
      this.respond(tx, first.id, status);
      // An extra slot's response: only its status is written (NETIF_RSP_NULL), as make_tx_response does.
      for (let i = 0; i < extraIds.length; i++) this.respondNull(tx);
      for (const f of frags) this.respond(tx, f.id, status);
    };
    if (dropErr !== undefined) {
      this.log(`${this.name}: tx: ${dropErr}; packet dropped`);
      this.counters.txErrors++;
      answer(NETIF_RSP_ERROR);
      return undefined;
    }
    if (first.size < ETH_HLEN) {
      this.log(`${this.name}: tx: bad packet size: ${first.size}`);
      this.counters.txErrors++;
      answer(NETIF_RSP_ERROR);
      return undefined;
    }
    if (first.offset + firstSize > PAGE_SIZE) return this.fatalUndefined(`tx: cross page boundary, offset ${first.offset}, size ${firstSize}`);
    // The data, by grant copy from the guest's pages into a frame of ours.
    const frame = new Uint8Array(first.size);
    const ops = [{ source: { domid: this.domid, ref: first.gref, offset: first.offset }, dest: { bytes: frame, offset: 0 }, len: firstSize }];
    let at = firstSize;
    for (const f of frags) {
      ops.push({ source: { domid: this.domid, ref: f.gref, offset: f.offset }, dest: { bytes: frame, offset: at }, len: f.size });
      at += f.size;
    }
    const statuses = this.host.grants.copy(ops);
    if (statuses.some((s) => s !== GNTST_okay)) {
      this.counters.txErrors++;
      answer(NETIF_RSP_ERROR);
      return undefined;
    }
    answer(NETIF_RSP_OKAY);
    this.counters.txPackets++;
    this.counters.txBytes += frame.length;
    return frame;
  }

  private respond(tx: Ring, id: number, status: number): void {
    const r = tx.ring;
    const rsp = new Uint8Array(netif_tx_response.SIZEOF);
    write_netif_tx_response(new DataView(rsp.buffer), 0, { id, status });
    tx.page.put(RING_GET_REQUEST(r, r.rsp_prod_pvt), rsp);
    r.rsp_prod_pvt = (r.rsp_prod_pvt + 1) >>> 0;
  }

  private respondNull(tx: Ring): void {
    const r = tx.ring;
    const st = new Uint8Array(2);
    new DataView(st.buffer).setInt16(0, NETIF_RSP_NULL, true);
    tx.page.put(RING_GET_REQUEST(r, r.rsp_prod_pvt) + netif_tx_response.status, st);
    r.rsp_prod_pvt = (r.rsp_prod_pvt + 1) >>> 0;
  }

  // -------------------------------------------------------------------------------------------

  private mapRing(ref: number, entry: { readonly SIZEOF: number }): Ring | number {
    const mapping = this.host.grants.map(this.domid, ref);
    if (typeof mapping === "number") return mapping;
    const page = new RingPageView(mapping);
    // The frontend initialised the sring; the back ring starts at 0 as BACK_RING_INIT does.
    return { mapping, page, ring: BACK_RING_INIT(page.asDataView(), 0, PAGE_SIZE, entry) };
  }

  private notify(port: number): void {
    if (port < 0) return;
    this.host.evtchn.send(port);
    this.counters.notifies++;
  }

  /** xenvif_fatal_tx_err: the vif is disabled; its rings are not touched again. */
  private fatal(reason: string): void {
    if (this.broken !== undefined) return;
    this.broken = reason;
    this.carrier = false;
    this.log(`${this.name}: ${reason}; vif disabled`);
    this.dropQueue();
  }

  private fatalUndefined(reason: string): undefined {
    this.fatal(reason);
    return undefined;
  }
}
