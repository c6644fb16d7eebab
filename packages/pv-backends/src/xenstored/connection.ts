// A domain's connection to xenstored over its xenstore ring page (struct
// xenstore_domain_interface): requests are read from `req` a header then a payload at a time
// (handle_input), replies and watch events written into `rsp` as space allows (write_messages),
// the guest notified through dom0's port bound to its store port. Everything in the page is
// hostile: indices are read once per pass and checked (check_indexes), a header announcing more
// than XENSTORE_PAYLOAD_MAX or indices further apart than the ring mark the connection as ignored
// with the reason in the page's `error` field (ignore_connection), and what a guest can make
// xenstored hold is bounded: at most quota_req_outstanding replies are queued before no more
// requests are read, and watch events are dropped past the memory quota or when an identical
// one is still queued (send_event, the XSA-326 fixes).
import {
  XENSTORE_ERROR_PROTO,
  XENSTORE_ERROR_RINGIDX,
  XENSTORE_ERROR_COMM,
  XENSTORE_PAYLOAD_MAX,
  XENSTORE_RING_SIZE,
  XS_WATCH_EVENT,
  XS_ERROR,
  XEN_E2BIG,
  xenstore_domain_interface as XSI,
  xsd_sockmsg,
} from "@vtlab/xen-public";
import type { BackendGrantMapping, BackendHost } from "../host.js";
import type { XenStore, XsConnection, XsReply, XsTransaction, XsWatch } from "./store.js";
import { latin1ToBytes, xsdErrorString } from "./store.js";

interface OutMessage {
  readonly bytes: Uint8Array;
  sent: number;
  readonly event: boolean;
  /** A watch event's path and token (the key identical events are dropped by). */
  readonly key?: string;
}

/** Counters of one connection. */
export interface XsConnectionStats {
  requests: number;
  replies: number;
  errors: number;
  events: number;
  droppedEvents: number;
  notifications: number;
}

/** Passes of read/write per poll: enough to drain a full ring of small requests, bounded. */
const MAX_PASSES = 256;

export class DomainConnection implements XsConnection {
  readonly privileged = false;
  readonly implicitPath: string;
  readonly watches: XsWatch[] = [];
  readonly transactions = new Map<number, XsTransaction>();
  nextTransactionId = 1;
  transactionsStarted = 0;
  memory = 0;
  /** Marked bad (ignore_connection): no more reading, writing or events. */
  ignored = false;
  /** The XENSTORE_ERROR_* reason it was ignored for. */
  error = 0;
  readonly stats: XsConnectionStats = { requests: 0, replies: 0, errors: 0, events: 0, droppedEvents: 0, notifications: 0 };
  private readonly out: OutMessage[] = [];
  /** Replies queued and not yet fully on the ring (domain->nboutstanding). */
  private outstanding = 0;
  private readonly header = new Uint8Array(xsd_sockmsg.SIZEOF);
  private headerUsed = 0;
  private payload: Uint8Array | undefined;
  private payloadUsed = 0;
  private polling = false;
  /** Queued watch events by path and token (send_event drops an identical one still queued). */
  private readonly queuedEvents = new Map<string, number>();

  constructor(
    private readonly store: XenStore,
    readonly id: number,
    private readonly ring: BackendGrantMapping,
    readonly port: number,
    private readonly host: BackendHost,
  ) {
    this.implicitPath = store.getDomainPath(id);
    host.evtchn.onEvent(port, () => this.poll());
  }

  /** Messages queued for the guest and bytes they hold. */
  get queued(): { messages: number; bytes: number; outstanding: number } {
    let bytes = 0;
    for (const m of this.out) bytes += m.bytes.length - m.sent;
    return { messages: this.out.length, bytes, outstanding: this.outstanding };
  }

  queueEvent(path: string, token: string): void {
    if (this.ignored) return;
    const len = path.length + 1 + token.length + 1;
    // Don't try to send over-long events.
    if (len > XENSTORE_PAYLOAD_MAX) return;
    const body = new Uint8Array(len);
    body.set(latin1ToBytes(path), 0);
    body.set(latin1ToBytes(token), path.length + 1);
    // An identical event still queued: drop this one (special "@" events excepted).
    const key = `${path}\0${token}`;
    if (!path.startsWith("@") && this.queuedEvents.has(key)) {
      this.stats.droppedEvents++;
      return;
    }
    const size = len + xsd_sockmsg.SIZEOF;
    if (this.memory + size > this.store.quotas.memoryPerDomain) {
      if (this.stats.droppedEvents++ === 0) this.store.log(`xenstored: domain ${this.id} exceeds its memory quota, dropping watch events`);
      return;
    }
    this.enqueue(XS_WATCH_EVENT, 0, 0, body, key);
    this.queuedEvents.set(key, (this.queuedEvents.get(key) ?? 0) + 1);
    this.stats.events++;
    this.store.markOutput(this);
  }

  /** Writes what is queued and notifies the guest if anything went onto the ring (no requests are read). */
  flushOutput(): void {
    if (this.ignored || this.polling) return;
    if (this.writeOut() && !this.ignored) {
      this.stats.notifications++;
      this.host.evtchn.send(this.port);
    }
  }

  /** Reads and answers what the guest sent, writes what is queued, notifies the guest if anything moved. */
  poll(): void {
    if (this.ignored || this.polling) return;
    this.polling = true;
    let moved = false;
    try {
      for (let pass = 0; pass < MAX_PASSES && !this.ignored; pass++) {
        const w = this.writeOut();
        const r = this.readIn();
        if (w) moved = true;
        if (r) moved = true;
        if (!w && !r) break;
      }
    } finally {
      this.polling = false;
    }
    if (moved && !this.ignored) {
      this.stats.notifications++;
      this.host.evtchn.send(this.port);
    }
  }

  /** Stops serving the ring (release, or destroy): unmaps the page and closes the port it was given. */
  close(): void {
    this.drop();
    this.ignored = true;
    this.host.evtchn.onEvent(this.port, undefined);
    this.host.evtchn.close(this.port);
    if (this.ring.mapped) this.host.grants.unmap(this.ring);
  }

  private drop(): void {
    this.watches.length = 0;
    this.transactions.clear();
    this.transactionsStarted = 0;
    this.out.length = 0;
    this.queuedEvents.clear();
    this.outstanding = 0;
    this.memory = 0;
    this.payload = undefined;
    this.headerUsed = 0;
  }

  /** ignore_connection: the reason in the page's `error` field, watches, transactions and output dropped. */
  private ignore(err: number, why: string): void {
    this.store.log(`xenstored: domain ${this.id}: ${why}, connection ignored`);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, err, true);
    this.ring.write(XSI.error, b);
    this.error = err;
    this.ignored = true;
    this.drop();
  }

  private indexes(consOff: number): { cons: number; prod: number } | undefined {
    const b = this.ring.read(consOff, 8);
    if (!b) return undefined;
    const v = new DataView(b.buffer, b.byteOffset, 8);
    return { cons: v.getUint32(0, true), prod: v.getUint32(4, true) };
  }

  private canRead(): boolean {
    return this.outstanding < this.store.quotas.outstandingRequests && this.memory < this.store.quotas.memoryPerDomain;
  }

  /** handle_input until the ring is empty or a quota stops reading. True if anything was consumed. */
  private readIn(): boolean {
    let consumed = false;
    while (!this.ignored && this.canRead()) {
      const idx = this.indexes(XSI.req_cons);
      if (!idx) {
        this.ignore(XENSTORE_ERROR_COMM, "ring page not readable");
        return consumed;
      }
      const avail = (idx.prod - idx.cons) >>> 0;
      if (avail > XENSTORE_RING_SIZE) {
        this.ignore(XENSTORE_ERROR_RINGIDX, `bogus request indices (cons ${idx.cons}, prod ${idx.prod})`);
        return consumed;
      }
      if (avail === 0) return consumed;
      const inHeader = this.payload === undefined;
      const want = inHeader ? xsd_sockmsg.SIZEOF - this.headerUsed : (this.payload as Uint8Array).length - this.payloadUsed;
      const n = Math.min(avail, want);
      const bytes = this.readRing(XSI.req, idx.cons, n);
      if (!bytes) {
        this.ignore(XENSTORE_ERROR_COMM, "ring page not readable");
        return consumed;
      }
      const c = new Uint8Array(4);
      new DataView(c.buffer).setUint32(0, (idx.cons + n) >>> 0, true);
      this.ring.write(XSI.req_cons, c);
      consumed = true;
      if (inHeader) {
        this.header.set(bytes, this.headerUsed);
        this.headerUsed += n;
        if (this.headerUsed < xsd_sockmsg.SIZEOF) continue;
        const len = new DataView(this.header.buffer).getUint32(xsd_sockmsg.len, true);
        if (len > XENSTORE_PAYLOAD_MAX) {
          this.ignore(XENSTORE_ERROR_PROTO, `client tried to feed us ${len} bytes`);
          return consumed;
        }
        this.payload = new Uint8Array(len);
        this.payloadUsed = 0;
      } else {
        (this.payload as Uint8Array).set(bytes, this.payloadUsed);
        this.payloadUsed += n;
      }
      if (this.payload !== undefined && this.payloadUsed === this.payload.length) this.consider();
    }
    return consumed;
  }

  private consider(): void {
    const h = new DataView(this.header.buffer);
    const type = h.getUint32(xsd_sockmsg.type, true);
    const reqId = h.getUint32(xsd_sockmsg.req_id, true);
    const txId = h.getUint32(xsd_sockmsg.tx_id, true);
    const payload = this.payload ?? new Uint8Array(0);
    this.payload = undefined;
    this.headerUsed = 0;
    this.payloadUsed = 0;
    this.stats.requests++;
    this.store.handleMessage(this, type, txId, payload, (r: XsReply) => {
      let reply = r;
      // send_reply: a payload over the maximum is answered E2BIG.
      if (reply.payload.length > XENSTORE_PAYLOAD_MAX) reply = { type: XS_ERROR, payload: latin1ToBytes(`${xsdErrorString(XEN_E2BIG)}\0`) };
      if (reply.type === XS_ERROR) this.stats.errors++;
      this.stats.replies++;
      this.enqueue(reply.type, reqId, txId, reply.payload, undefined);
    });
  }

  private enqueue(type: number, reqId: number, txId: number, payload: Uint8Array, eventKey: string | undefined): void {
    const event = eventKey !== undefined;
    const bytes = new Uint8Array(xsd_sockmsg.SIZEOF + payload.length);
    const v = new DataView(bytes.buffer);
    v.setUint32(xsd_sockmsg.type, type, true);
    v.setUint32(xsd_sockmsg.req_id, reqId, true);
    v.setUint32(xsd_sockmsg.tx_id, txId, true);
    v.setUint32(xsd_sockmsg.len, payload.length, true);
    bytes.set(payload, xsd_sockmsg.SIZEOF);
    this.out.push(event ? { bytes, sent: 0, event, key: eventKey } : { bytes, sent: 0, event });
    this.memory += bytes.length;
    if (!event) this.outstanding++;
  }

  /** write_messages: as much of the queue as the rsp ring takes. True if anything was written. */
  private writeOut(): boolean {
    let wrote = false;
    while (!this.ignored && this.out.length > 0) {
      const m = this.out[0] as OutMessage;
      const idx = this.indexes(XSI.rsp_cons);
      if (!idx) {
        this.ignore(XENSTORE_ERROR_COMM, "ring page not readable");
        return wrote;
      }
      const used = (idx.prod - idx.cons) >>> 0;
      if (used > XENSTORE_RING_SIZE) {
        this.ignore(XENSTORE_ERROR_RINGIDX, `bogus response indices (cons ${idx.cons}, prod ${idx.prod})`);
        return wrote;
      }
      const space = XENSTORE_RING_SIZE - used;
      if (space === 0) return wrote;
      const n = Math.min(space, m.bytes.length - m.sent);
      if (!this.writeRing(XSI.rsp, idx.prod, m.bytes.subarray(m.sent, m.sent + n))) {
        this.ignore(XENSTORE_ERROR_COMM, "ring page not writable");
        return wrote;
      }
      const p = new Uint8Array(4);
      new DataView(p.buffer).setUint32(0, (idx.prod + n) >>> 0, true);
      this.ring.write(XSI.rsp_prod, p);
      wrote = true;
      m.sent += n;
      if (m.sent === m.bytes.length) {
        this.out.shift();
        this.memory -= m.bytes.length;
        if (!m.event) this.outstanding--;
        else if (m.key !== undefined) {
          const c = (this.queuedEvents.get(m.key) ?? 1) - 1;
          if (c <= 0) this.queuedEvents.delete(m.key);
          else this.queuedEvents.set(m.key, c);
        }
      }
    }
    return wrote;
  }

  /** `n` bytes of a 1024-byte ring at free-running index `idx` (wrapping), a private copy. */
  private readRing(base: number, idx: number, n: number): Uint8Array | undefined {
    const off = idx & (XENSTORE_RING_SIZE - 1);
    const first = Math.min(n, XENSTORE_RING_SIZE - off);
    const a = this.ring.read(base + off, first);
    if (!a) return undefined;
    if (first === n) return a;
    const b = this.ring.read(base, n - first);
    if (!b) return undefined;
    const out = new Uint8Array(n);
    out.set(a, 0);
    out.set(b, first);
    return out;
  }

  private writeRing(base: number, idx: number, bytes: Uint8Array): boolean {
    const off = idx & (XENSTORE_RING_SIZE - 1);
    const first = Math.min(bytes.length, XENSTORE_RING_SIZE - off);
    if (!this.ring.write(base + off, bytes.subarray(0, first))) return false;
    return first === bytes.length || this.ring.write(base, bytes.subarray(first));
  }
}
