/**
 * The xenbus client (Linux's xenbus_xs.c and xenbus_comms.c) over the xenstore ring page
 * (HVM_PARAM_STORE_PFN, port HVM_PARAM_STORE_EVTCHN): requests are written into `req` and
 * replies read from `rsp` of struct xenstore_domain_interface, each message a xsd_sockmsg header
 * and at most XENSTORE_PAYLOAD_MAX bytes, the producer index moved after the bytes and the other
 * end notified. Replies are matched by req_id; XS_WATCH_EVENT messages go to a bounded queue.
 * One request is outstanding at a time (Linux allows several; modelled more simply).
 *
 * The replies are the other end's bytes: a header with a length over the payload limit or
 * indices further apart than the ring holds stop the connection (`broken`) instead of being
 * trusted; the queue of watch events is bounded (the oldest are dropped and counted).
 */
import {
  XENSTORE_PAYLOAD_MAX,
  XENSTORE_RING_SIZE,
  XS_DIRECTORY,
  XS_ERROR,
  XS_GET_DOMAIN_PATH,
  XS_MKDIR,
  XS_READ,
  XS_RM,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_UNWATCH,
  XS_WATCH,
  XS_WATCH_EVENT,
  XS_WRITE,
  XenbusStateClosed,
  XenbusStateUnknown,
  xenstore_domain_interface as XSI,
  xsd_sockmsg,
} from "@vtlab/xen-public";
import type { EventChannels } from "./evtchn.js";
import type { GuestMemory } from "./mem.js";
import { utf8Decode, utf8Encode } from "@vtlab/xen-public";

export interface XsError {
  readonly kind: "xs-error";
  /** Xen's errno string ("ENOENT", "EAGAIN", ...) from an XS_ERROR reply, or "EIO" for a broken ring. */
  readonly error: string;
}

export function isXsError(x: unknown): x is XsError {
  return typeof x === "object" && x !== null && (x as XsError).kind === "xs-error";
}

export interface WatchEvent {
  readonly path: string;
  readonly token: string;
}

/** Watch events kept before the oldest are dropped. */
export const MAX_QUEUED_WATCH_EVENTS = 256;


function cat(...parts: (string | Uint8Array)[]): Uint8Array {
  const bytes = parts.map((p) => (typeof p === "string" ? utf8Encode(p) : p));
  const out = new Uint8Array(bytes.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of bytes) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

const NUL = new Uint8Array([0]);

/** NUL-terminated strings of a payload (a trailing empty string dropped). */
function splitNul(p: Uint8Array): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i] === 0) {
      out.push(utf8Decode(p.subarray(start, i)));
      start = i + 1;
    }
  }
  if (start < p.length) out.push(utf8Decode(p.subarray(start)));
  return out;
}

export class XenbusClient {
  private reqId = 1;
  private readonly rx: number[] = [];
  private readonly replies: { type: number; reqId: number; payload: Uint8Array }[] = [];
  readonly watchEvents: WatchEvent[] = [];
  watchEventsDropped = 0;
  /** The ring was found corrupt: every call answers EIO. */
  broken: string | undefined = undefined;
  /** Requests sent. */
  requests = 0;

  constructor(
    private readonly mem: GuestMemory,
    private readonly evtchn: EventChannels,
    /** The ring page (HVM_PARAM_STORE_PFN << 12). */
    readonly ring: number,
    readonly port: number,
  ) {}

  // ---- the ring ---------------------------------------------------------------------------

  private *writeBytes(bytes: Uint8Array): Generator<void, boolean, void> {
    const mem = this.mem;
    let done = 0;
    while (done < bytes.length) {
      const cons = mem.read32(this.ring + XSI.req_cons);
      const prod = mem.read32(this.ring + XSI.req_prod);
      const used = (prod - cons) >>> 0;
      if (used > XENSTORE_RING_SIZE) {
        this.broken = `request ring indices 0x${cons.toString(16)}/0x${prod.toString(16)} are corrupt`;
        return false;
      }
      const space = XENSTORE_RING_SIZE - used;
      if (space === 0) {
        this.evtchn.clear(this.port);
        yield* this.evtchn.poll([this.port]);
        continue;
      }
      const n = Math.min(space, bytes.length - done);
      for (let i = 0; i < n; i++) mem.write8(this.ring + XSI.req + ((prod + i) & (XENSTORE_RING_SIZE - 1)), bytes[done + i]!);
      // wmb(): the bytes before the index.
      mem.write32(this.ring + XSI.req_prod, (prod + n) >>> 0);
      done += n;
      this.evtchn.send(this.port);
    }
    return true;
  }

  /** Move what the response ring holds into `rx`, then cut complete messages out of it. */
  private drain(): void {
    const mem = this.mem;
    const cons = mem.read32(this.ring + XSI.rsp_cons);
    const prod = mem.read32(this.ring + XSI.rsp_prod);
    const avail = (prod - cons) >>> 0;
    if (avail > XENSTORE_RING_SIZE) {
      this.broken = `response ring indices 0x${cons.toString(16)}/0x${prod.toString(16)} are corrupt`;
      return;
    }
    if (avail > 0) {
      for (let i = 0; i < avail; i++) this.rx.push(mem.read8(this.ring + XSI.rsp + ((cons + i) & (XENSTORE_RING_SIZE - 1))));
      mem.write32(this.ring + XSI.rsp_cons, (cons + avail) >>> 0);
      this.evtchn.send(this.port);
    }
    for (;;) {
      if (this.rx.length < xsd_sockmsg.SIZEOF) return;
      const h = new DataView(Uint8Array.from(this.rx.slice(0, xsd_sockmsg.SIZEOF)).buffer);
      const type = h.getUint32(xsd_sockmsg.type, true);
      const reqId = h.getUint32(xsd_sockmsg.req_id, true);
      const len = h.getUint32(xsd_sockmsg.len, true);
      if (len > XENSTORE_PAYLOAD_MAX) {
        this.broken = `a reply of ${len} bytes is over XENSTORE_PAYLOAD_MAX`;
        return;
      }
      if (this.rx.length < xsd_sockmsg.SIZEOF + len) return;
      const payload = Uint8Array.from(this.rx.splice(0, xsd_sockmsg.SIZEOF + len).slice(xsd_sockmsg.SIZEOF));
      if (type === XS_WATCH_EVENT) {
        const [path, token] = splitNul(payload);
        if (this.watchEvents.length >= MAX_QUEUED_WATCH_EVENTS) {
          this.watchEvents.shift();
          this.watchEventsDropped++;
        }
        this.watchEvents.push({ path: path ?? "", token: token ?? "" });
      } else if (this.replies.length < 16) {
        this.replies.push({ type, reqId, payload });
      }
    }
  }

  /** Send one request and wait for its reply: the reply payload, or the XS_ERROR string. */
  *request(type: number, payload: Uint8Array, tx = 0): Generator<void, Uint8Array | XsError, void> {
    if (this.broken !== undefined) return { kind: "xs-error", error: "EIO" };
    if (payload.length > XENSTORE_PAYLOAD_MAX) return { kind: "xs-error", error: "E2BIG" };
    const reqId = this.reqId++ >>> 0;
    const header = new Uint8Array(xsd_sockmsg.SIZEOF);
    const h = new DataView(header.buffer);
    h.setUint32(xsd_sockmsg.type, type, true);
    h.setUint32(xsd_sockmsg.req_id, reqId, true);
    h.setUint32(xsd_sockmsg.tx_id, tx, true);
    h.setUint32(xsd_sockmsg.len, payload.length, true);
    this.requests++;
    if (!(yield* this.writeBytes(cat(header, payload)))) return { kind: "xs-error", error: "EIO" };
    for (;;) {
      this.evtchn.clear(this.port);
      this.drain();
      if (this.broken !== undefined) return { kind: "xs-error", error: "EIO" };
      const i = this.replies.findIndex((r) => r.reqId === reqId);
      if (i >= 0) {
        const r = this.replies.splice(i, 1)[0]!;
        if (r.type === XS_ERROR) return { kind: "xs-error", error: splitNul(r.payload)[0] ?? "EINVAL" };
        return r.payload;
      }
      yield* this.evtchn.poll([this.port]);
    }
  }

  // ---- the operations (xenbus_xs.c) ---------------------------------------------------------

  *read(path: string, tx = 0): Generator<void, string | XsError, void> {
    const r = yield* this.request(XS_READ, cat(path, NUL), tx);
    return isXsError(r) ? r : utf8Decode(r);
  }

  *write(path: string, value: string, tx = 0): Generator<void, XsError | undefined, void> {
    const r = yield* this.request(XS_WRITE, cat(path, NUL, value), tx);
    return isXsError(r) ? r : undefined;
  }

  *mkdir(path: string, tx = 0): Generator<void, XsError | undefined, void> {
    const r = yield* this.request(XS_MKDIR, cat(path, NUL), tx);
    return isXsError(r) ? r : undefined;
  }

  *rm(path: string, tx = 0): Generator<void, XsError | undefined, void> {
    const r = yield* this.request(XS_RM, cat(path, NUL), tx);
    return isXsError(r) ? r : undefined;
  }

  *directory(path: string, tx = 0): Generator<void, string[] | XsError, void> {
    const r = yield* this.request(XS_DIRECTORY, cat(path, NUL), tx);
    return isXsError(r) ? r : splitNul(r);
  }

  *getDomainPath(domid: number): Generator<void, string | XsError, void> {
    const r = yield* this.request(XS_GET_DOMAIN_PATH, cat(String(domid), NUL));
    return isXsError(r) ? r : (splitNul(r)[0] ?? "");
  }

  *watch(path: string, token: string): Generator<void, XsError | undefined, void> {
    const r = yield* this.request(XS_WATCH, cat(path, NUL, token, NUL));
    return isXsError(r) ? r : undefined;
  }

  *unwatch(path: string, token: string): Generator<void, XsError | undefined, void> {
    const r = yield* this.request(XS_UNWATCH, cat(path, NUL, token, NUL));
    return isXsError(r) ? r : undefined;
  }

  /** XS_TRANSACTION_START: the transaction id, or an error (EAGAIN / EQUOTA ...). */
  *transactionStart(): Generator<void, number | XsError, void> {
    const r = yield* this.request(XS_TRANSACTION_START, NUL);
    if (isXsError(r)) return r;
    const id = Number.parseInt(splitNul(r)[0] ?? "", 10);
    return Number.isInteger(id) && id > 0 ? id : { kind: "xs-error", error: "EIO" };
  }

  /** XS_TRANSACTION_END: undefined when committed (or aborted with commit = false), EAGAIN on a conflict. */
  *transactionEnd(tx: number, commit: boolean): Generator<void, XsError | undefined, void> {
    const r = yield* this.request(XS_TRANSACTION_END, cat(commit ? "T" : "F", NUL), tx);
    return isXsError(r) ? r : undefined;
  }

  /**
   * Write `dir/key = value` for every pair in one transaction, retried when the commit meets a
   * conflict (EAGAIN), at most `attempts` times, as talk_to_blkback / talk_to_netback do. Returns
   * undefined when committed, else what failed ("transaction: E...", "writing key: E...",
   * "completing transaction: E...").
   */
  *writeAllInTransaction(dir: string, writes: readonly (readonly [string, string])[], attempts = 9): Generator<void, string | undefined, void> {
    for (let attempt = 1; ; attempt++) {
      const tx = yield* this.transactionStart();
      if (isXsError(tx)) return `transaction: ${tx.error}`;
      for (const [k, v] of writes) {
        const e = yield* this.write(`${dir}/${k}`, v, tx);
        if (e !== undefined) {
          yield* this.transactionEnd(tx, false);
          return `writing ${k}: ${e.error}`;
        }
      }
      const end = yield* this.transactionEnd(tx, true);
      if (end === undefined) return undefined;
      if (end.error !== "EAGAIN" || attempt >= attempts) return `completing transaction: ${end.error}`;
    }
  }

  /** The next watch event (waiting for one when the queue is empty). */
  *nextWatchEvent(): Generator<void, WatchEvent | XsError, void> {
    for (;;) {
      const e = this.watchEvents.shift();
      if (e !== undefined) return e;
      this.evtchn.clear(this.port);
      this.drain();
      if (this.broken !== undefined) return { kind: "xs-error", error: "EIO" };
      if (this.watchEvents.length > 0) continue;
      yield* this.evtchn.poll([this.port]);
    }
  }
}

/**
 * The frontend half of the xenbus state machine (xenbus_client.c / xenbus_probe.c) for one
 * device node, e.g. "device/vbd/768": its `backend` and `backend-id`, its own `state`, and
 * waiting on a watch of the backend's `state`.
 */
export class XenbusDevice {
  backend = "";
  backendId = -1;
  private readonly token: string;

  constructor(
    readonly xs: XenbusClient,
    readonly nodename: string,
  ) {
    this.token = `fe:${nodename}`;
  }

  /** Read `backend` and `backend-id`, and watch the backend's state. */
  *probe(): Generator<void, XsError | undefined, void> {
    const be = yield* this.xs.read(`${this.nodename}/backend`);
    if (isXsError(be)) return be;
    const id = yield* this.xs.read(`${this.nodename}/backend-id`);
    if (isXsError(id)) return id;
    const n = Number.parseInt(id, 10);
    if (!Number.isInteger(n) || n < 0 || n > 0x7fef) return { kind: "xs-error", error: "EINVAL" };
    this.backend = be;
    this.backendId = n;
    return yield* this.xs.watch(`${be}/state`, this.token);
  }

  *switchState(state: number): Generator<void, XsError | undefined, void> {
    return yield* this.xs.write(`${this.nodename}/state`, String(state));
  }

  /** The backend's state (XenbusStateUnknown when unreadable, as xenbus_read_driver_state). */
  *backendState(): Generator<void, number, void> {
    const s = yield* this.xs.read(`${this.backend}/state`);
    if (isXsError(s)) return XenbusStateUnknown;
    const n = Number.parseInt(s, 10);
    return Number.isInteger(n) ? n : XenbusStateUnknown;
  }

  /** Wait until the backend reaches one of `states` (or Closed): the state it reached. */
  *waitBackend(states: readonly number[]): Generator<void, number | XsError, void> {
    for (;;) {
      const s = yield* this.backendState();
      if (states.includes(s) || s === XenbusStateClosed) return s;
      const e = yield* this.xs.nextWatchEvent();
      if (isXsError(e)) return e;
    }
  }

  /** A key of the backend's ("" when absent). */
  *readBackend(key: string): Generator<void, string, void> {
    const v = yield* this.xs.read(`${this.backend}/${key}`);
    return isXsError(v) ? "" : v;
  }
}
