// A guest's side of a xenstore ring, played from the test: the ring page is a plain 4 KiB
// buffer behind a BackendGrantMapping, dom0's event channels a recorder, and the client writes
// requests and reads replies with xen-public's xenstore_ring_write/read, as a frontend would.
import { xenstore_ring_read, xenstore_ring_write, xsd_sockmsg, XS_WATCH_EVENT } from "@vtlab/xen-public";
import type { BackendGrantMapping, BackendHost } from "../src/index.js";
import type { XenStore } from "../src/index.js";

export class FakePage implements BackendGrantMapping {
  readonly handle = 1;
  readonly readonly = false;
  mapped = true;
  readonly bytes = new Uint8Array(4096);
  readonly view = new DataView(this.bytes.buffer);
  constructor(
    readonly domid: number,
    readonly ref: number,
  ) {}
  read(offset: number, length: number): Uint8Array | undefined {
    if (!this.mapped || offset < 0 || length < 0 || offset + length > 4096) return undefined;
    return this.bytes.slice(offset, offset + length);
  }
  write(offset: number, b: Uint8Array): boolean {
    if (!this.mapped || offset < 0 || offset + b.length > 4096) return false;
    this.bytes.set(b, offset);
    return true;
  }
}

export class FakeHost implements BackendHost {
  readonly sent: number[] = [];
  readonly closed: number[] = [];
  readonly handlers = new Map<number, (port: number) => void>();
  private nextPort = 10;
  readonly pages = new Map<string, FakePage>();
  unmaps = 0;
  readonly grants = {
    map: (domid: number, ref: number): BackendGrantMapping | number => {
      const p = this.pages.get(`${domid}:${ref}`);
      return p ?? -3;
    },
    unmap: (m: BackendGrantMapping | number): number => {
      if (typeof m !== "number") (m as FakePage).mapped = false;
      this.unmaps++;
      return 0;
    },
    copy: (): number[] => [],
  };
  readonly evtchn = {
    allocUnbound: (): number => this.nextPort++,
    bindInterdomain: (): number => this.nextPort++,
    send: (port: number): number => {
      this.sent.push(port);
      return 0;
    },
    close: (port: number): number => {
      this.closed.push(port);
      return 0;
    },
    onEvent: (port: number, h: ((port: number) => void) | undefined): void => {
      if (h) this.handlers.set(port, h);
      else this.handlers.delete(port);
    },
  };
  /** The guest notifies dom0's `port`. */
  kick(port: number): void {
    this.handlers.get(port)?.(port);
  }
}

export interface Msg {
  type: number;
  reqId: number;
  txId: number;
  payload: Uint8Array;
}

const enc = new TextEncoder();
const dec = new TextDecoder("latin1");

export function str(p: Uint8Array): string {
  return dec.decode(p);
}
/** "a\0b\0" -> ["a", "b"] */
export function strs(p: Uint8Array): string[] {
  const s = str(p);
  const parts = s.split("\0");
  if (parts[parts.length - 1] === "") parts.pop();
  return parts;
}

/** The guest's xenbus: requests into `req`, replies and events out of `rsp`. */
export class GuestXs {
  readonly page: FakePage;
  readonly port: number;
  private reqId = 1;
  private inbox = new Uint8Array(0);
  readonly events: { path: string; token: string }[] = [];
  constructor(
    readonly host: FakeHost,
    readonly store: XenStore,
    readonly domid: number,
  ) {
    this.page = new FakePage(domid, 1);
    this.port = host.evtchn.bindInterdomain();
    store.introduceDomain(domid, this.page, this.port, host);
  }

  /** Raw bytes into the request ring (what fits), then a notify. */
  sendRaw(bytes: Uint8Array, kick = true): number {
    const n = xenstore_ring_write(this.page.view, 0, "req", bytes);
    if (kick) this.host.kick(this.port);
    return n;
  }

  encode(type: number, payload: Uint8Array | string, txId = 0, reqId = this.reqId++): Uint8Array {
    const p = typeof payload === "string" ? enc.encode(payload) : payload;
    const b = new Uint8Array(16 + p.length);
    const v = new DataView(b.buffer);
    v.setUint32(xsd_sockmsg.type, type, true);
    v.setUint32(xsd_sockmsg.req_id, reqId, true);
    v.setUint32(xsd_sockmsg.tx_id, txId, true);
    v.setUint32(xsd_sockmsg.len, p.length, true);
    b.set(p, 16);
    return b;
  }

  /** All complete messages waiting in the response ring. */
  receive(): Msg[] {
    const got = xenstore_ring_read(this.page.view, 0, "rsp", 4096);
    if (typeof got !== "number" && got.length > 0) {
      const merged = new Uint8Array(this.inbox.length + got.length);
      merged.set(this.inbox, 0);
      merged.set(got, this.inbox.length);
      this.inbox = merged;
      // Tell xenstored there is space again.
      this.host.kick(this.port);
    }
    const out: Msg[] = [];
    for (;;) {
      if (this.inbox.length < 16) break;
      const v = new DataView(this.inbox.buffer, this.inbox.byteOffset);
      const len = v.getUint32(12, true);
      if (this.inbox.length < 16 + len) break;
      out.push({ type: v.getUint32(0, true), reqId: v.getUint32(4, true), txId: v.getUint32(8, true), payload: this.inbox.slice(16, 16 + len) });
      this.inbox = this.inbox.slice(16 + len);
    }
    return out;
  }

  /** A whole message, in pieces as ring space frees up. */
  sendAll(bytes: Uint8Array): void {
    let o = 0;
    for (let tries = 0; o < bytes.length && tries < 64; tries++) {
      const n = this.sendRaw(bytes.subarray(o));
      if (n < 0) return;
      o += n;
    }
  }

  private replies: Msg[] = [];

  /** One request and its reply (watch events that arrive meanwhile go to `events`). */
  request(type: number, payload: Uint8Array | string, txId = 0): Msg {
    const reqId = this.reqId++;
    this.sendAll(this.encode(type, payload, txId, reqId));
    for (let tries = 0; tries < 4096; tries++) {
      for (const m of this.receive()) {
        if (m.type === XS_WATCH_EVENT) {
          const [path = "", token = ""] = strs(m.payload);
          this.events.push({ path, token });
        } else this.replies.push(m);
      }
      const i = this.replies.findIndex((m) => m.reqId === reqId);
      if (i >= 0) return this.replies.splice(i, 1)[0] as Msg;
      this.host.kick(this.port);
    }
    throw new Error(`no reply to request ${reqId}`);
  }

  /** Drain events (and stray replies). */
  pump(): Msg[] {
    const all: Msg[] = [];
    for (let i = 0; i < 64; i++) {
      const ms = this.receive();
      if (ms.length === 0) break;
      for (const m of ms) {
        if (m.type === XS_WATCH_EVENT) {
          const [path = "", token = ""] = strs(m.payload);
          this.events.push({ path, token });
        }
        all.push(m);
      }
    }
    return all;
  }
}
