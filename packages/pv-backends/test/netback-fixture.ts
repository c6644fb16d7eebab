/**
 * Test (and bench) fixture for netback: a `BackendHost` over plain pages (each grant ref of a
 * domain is one 4 KiB page; map/copy check refs, offsets and lengths as Xen's grant table does,
 * answering GNTST_bad_gntref / GNTST_bad_copy_arg), event channels that queue dom0's events
 * until `dispatch()` as the hypervisor's ControlDomain does, and a netfront played in
 * TypeScript over xen-public's front-ring functions, able to misbehave on request.
 */
import {
  FRONT_RING_INIT,
  GNTST_bad_copy_arg,
  GNTST_bad_gntref,
  GNTST_okay,
  NETRXF_more_data,
  NETTXF_more_data,
  RING_GET_REQUEST,
  RING_PUSH_REQUESTS_AND_CHECK_NOTIFY,
  SHARED_RING_INIT,
  netif_rx_sring_entry,
  netif_tx_sring_entry,
  read_netif_rx_response,
  read_netif_tx_response,
  sring_rsp_prod,
  write_netif_rx_request,
  write_netif_tx_request,
  type front_ring,
  type netif_tx_request_t,
} from "@vtlab/xen-public";
import type { BackendCopySide, BackendGrantMapping, BackendHost } from "../src/host.js";

const PAGE = 4096;

export class FakeHost implements BackendHost {
  readonly pages = new Map<string, Uint8Array>();
  /** Dom0 port -> the guest end. */
  readonly bound = new Map<number, { domid: number; port: number }>();
  readonly handlers = new Map<number, (port: number) => void>();
  readonly pending = new Set<number>();
  /** Events dom0 sent, per `${domid}:${guestPort}`. */
  readonly sent = new Map<string, number>();
  maps = 0;
  unmaps = 0;
  copies = 0;
  private nextPort = 10;
  nowNs = 0;

  page(domid: number, ref: number): Uint8Array | undefined {
    return this.pages.get(`${domid}:${ref}`);
  }
  grant(domid: number, ref: number): Uint8Array {
    const p = new Uint8Array(PAGE);
    this.pages.set(`${domid}:${ref}`, p);
    return p;
  }
  revoke(domid: number, ref: number): void {
    this.pages.delete(`${domid}:${ref}`);
  }

  readonly grants = {
    map: (domid: number, ref: number): BackendGrantMapping | number => {
      const key = `${domid}:${ref}`;
      if (!this.pages.has(key)) return GNTST_bad_gntref;
      this.maps++;
      const pages = this.pages;
      let mapped = true;
      const inPage = (o: number, n: number) => Number.isInteger(o) && Number.isInteger(n) && o >= 0 && n >= 0 && o + n <= PAGE;
      // A mapping keeps the frame even if the guest revokes the grant (as Xen's maptrack does).
      const frame = pages.get(key) as Uint8Array;
      return {
        handle: this.maps,
        domid,
        ref,
        readonly: false,
        get mapped() {
          return mapped;
        },
        read: (o: number, n: number) => (mapped && inPage(o, n) ? frame.slice(o, o + n) : undefined),
        write: (o: number, b: Uint8Array) => {
          if (!mapped || !inPage(o, b.length)) return false;
          frame.set(b, o);
          return true;
        },
        unmapNow: () => {
          mapped = false;
        },
      } as BackendGrantMapping;
    },
    unmap: (m: BackendGrantMapping | number): number => {
      this.unmaps++;
      if (typeof m !== "number") (m as unknown as { unmapNow(): void }).unmapNow();
      return GNTST_okay;
    },
    copy: (ops: readonly { source: BackendCopySide; dest: BackendCopySide; len: number }[]): number[] =>
      ops.map((op) => {
        const side = (s: BackendCopySide): { buf: Uint8Array; at: number } | number => {
          const at = s.offset ?? 0;
          if ("bytes" in s) return at >= 0 && at + op.len <= s.bytes.length ? { buf: s.bytes, at } : GNTST_bad_copy_arg;
          const p = this.page(s.domid, s.ref);
          if (p === undefined) return GNTST_bad_gntref;
          return at >= 0 && at + op.len <= PAGE ? { buf: p, at } : GNTST_bad_copy_arg;
        };
        const src = side(op.source);
        const dst = side(op.dest);
        if (typeof src === "number") return src;
        if (typeof dst === "number") return dst;
        dst.buf.set(src.buf.subarray(src.at, src.at + op.len), dst.at);
        this.copies++;
        return GNTST_okay;
      }),
  };

  readonly evtchn = {
    allocUnbound: (): number => this.nextPort++,
    bindInterdomain: (domid: number, port: number): number => {
      if (port <= 0) return -22;
      for (const b of this.bound.values()) if (b.domid === domid && b.port === port) return -16; // EBUSY
      const p = this.nextPort++;
      this.bound.set(p, { domid, port });
      return p;
    },
    send: (port: number): number => {
      const b = this.bound.get(port);
      if (b === undefined) return -22;
      const k = `${b.domid}:${b.port}`;
      this.sent.set(k, (this.sent.get(k) ?? 0) + 1);
      return 0;
    },
    close: (port: number): number => {
      this.bound.delete(port);
      this.pending.delete(port);
      return this.handlers.delete(port) ? 0 : 0;
    },
    onEvent: (port: number, handler: ((port: number) => void) | undefined): void => {
      if (handler === undefined) this.handlers.delete(port);
      else this.handlers.set(port, handler);
    },
  };

  /** A guest notifying its port: the dom0 end becomes pending. */
  kick(domid: number, guestPort: number): void {
    for (const [p, b] of this.bound) if (b.domid === domid && b.port === guestPort) this.pending.add(p);
  }

  /** Dom0's dispatch: every pending port's handler, once. */
  dispatch(): number {
    let n = 0;
    while (this.pending.size > 0) {
      const ports = [...this.pending];
      this.pending.clear();
      for (const p of ports) {
        this.handlers.get(p)?.(p);
        n++;
      }
    }
    return n;
  }

  eventsTo(domid: number, guestPort: number): number {
    return this.sent.get(`${domid}:${guestPort}`) ?? 0;
  }
}

/** A netfront in TypeScript: its rings live in pages it granted to dom0. */
export class TestNetfront {
  readonly txRef = 900;
  readonly rxRef = 901;
  readonly port = 7;
  readonly tx: front_ring;
  readonly rx: front_ring;
  readonly txPage: Uint8Array;
  readonly rxPage: Uint8Array;
  private nextRef = 1000;
  private nextRxId = 0;
  /** RX buffers posted: id -> gref. */
  readonly rxBufs = new Map<number, number>();
  private partial: Uint8Array[] = [];
  readonly received: Uint8Array[] = [];
  readonly rxStatuses: number[] = [];
  readonly txStatuses: { id: number; status: number }[] = [];
  private freeTxRefs: number[] = [];
  private readonly freeRxRefs: number[] = [];
  /** TX request id -> the gref it used, until its response. */
  private readonly txInflight = new Map<number, number>();

  constructor(
    readonly host: FakeHost,
    readonly domid: number,
  ) {
    this.txPage = host.grant(domid, this.txRef);
    this.rxPage = host.grant(domid, this.rxRef);
    const tv = new DataView(this.txPage.buffer);
    const rv = new DataView(this.rxPage.buffer);
    SHARED_RING_INIT(tv, 0);
    SHARED_RING_INIT(rv, 0);
    this.tx = FRONT_RING_INIT(tv, 0, PAGE, netif_tx_sring_entry);
    this.rx = FRONT_RING_INIT(rv, 0, PAGE, netif_rx_sring_entry);
  }

  get connection() {
    return { txRingRef: this.txRef, rxRingRef: this.rxRef, txEvtchn: this.port };
  }

  private ref(): number {
    const r = this.freeTxRefs.pop() ?? this.nextRef++;
    if (this.host.page(this.domid, r) === undefined) this.host.grant(this.domid, r);
    return r;
  }

  notify(): void {
    this.host.kick(this.domid, this.port);
  }

  /** Post `n` RX buffers (one page each). */
  postRx(n: number, options: { gref?: number } = {}): void {
    for (let i = 0; i < n; i++) {
      const gref = options.gref ?? this.freeRxRefs.pop() ?? this.ref();
      const id = this.nextRxId++ & 0xffff;
      this.rxBufs.set(id, gref);
      write_netif_rx_request(this.rx.sring, RING_GET_REQUEST(this.rx, this.rx.req_prod_pvt), { id, gref });
      this.rx.req_prod_pvt = (this.rx.req_prod_pvt + 1) >>> 0;
    }
    if (RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(this.rx)) this.notify();
  }

  /** Write one raw TX request in the next slot (not pushed). */
  putTx(req: netif_tx_request_t): number {
    const at = RING_GET_REQUEST(this.tx, this.tx.req_prod_pvt);
    write_netif_tx_request(this.tx.sring, at, req);
    this.tx.req_prod_pvt = (this.tx.req_prod_pvt + 1) >>> 0;
    return at;
  }

  /** Raw bytes in the next TX slot (an extra-info slot). */
  putTxRaw(bytes: Uint8Array): void {
    this.txPage.set(bytes, RING_GET_REQUEST(this.tx, this.tx.req_prod_pvt));
    this.tx.req_prod_pvt = (this.tx.req_prod_pvt + 1) >>> 0;
  }

  pushTx(): void {
    if (RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(this.tx)) this.notify();
  }

  /** Queue a frame as netfront does (one slot per page-sized piece, offset 0), and push. */
  send(frame: Uint8Array, options: { push?: boolean } = {}): void {
    const pieces = Math.max(1, Math.ceil(frame.length / PAGE));
    for (let i = 0; i < pieces; i++) {
      const gref = this.ref();
      const piece = frame.subarray(i * PAGE, (i + 1) * PAGE);
      (this.host.page(this.domid, gref) as Uint8Array).set(piece, 0);
      const id = this.tx.req_prod_pvt & 0xff;
      this.txInflight.set(id, gref);
      this.putTx({ gref, offset: 0, flags: i + 1 < pieces ? NETTXF_more_data : 0, id, size: i === 0 ? frame.length : piece.length });
    }
    if (options.push !== false) this.pushTx();
  }

  /** Consume TX and RX responses. */
  poll(): void {
    const txProd = sring_rsp_prod(this.tx);
    while (this.tx.rsp_cons !== txProd) {
      const rsp = read_netif_tx_response(this.tx.sring, RING_GET_REQUEST(this.tx, this.tx.rsp_cons));
      this.txStatuses.push(rsp);
      const g = this.txInflight.get(rsp.id);
      if (g !== undefined) {
        this.txInflight.delete(rsp.id);
        this.freeTxRefs.push(g);
      }
      this.tx.rsp_cons = (this.tx.rsp_cons + 1) >>> 0;
    }
    this.tx.sring.setUint32(12, this.tx.rsp_cons + 1, true);
    const rxProd = sring_rsp_prod(this.rx);
    while (this.rx.rsp_cons !== rxProd) {
      const r = read_netif_rx_response(this.rx.sring, RING_GET_REQUEST(this.rx, this.rx.rsp_cons));
      this.rx.rsp_cons = (this.rx.rsp_cons + 1) >>> 0;
      this.rxStatuses.push(r.status);
      const gref = this.rxBufs.get(r.id);
      this.rxBufs.delete(r.id);
      if (gref !== undefined && gref >= 1000) this.freeRxRefs.push(gref);
      if (r.status > 0 && gref !== undefined) this.partial.push((this.host.page(this.domid, gref) as Uint8Array).slice(r.offset, r.offset + r.status));
      if (!(r.flags & NETRXF_more_data)) {
        if (this.partial.length > 0) {
          const len = this.partial.reduce((a, b) => a + b.length, 0);
          const f = new Uint8Array(len);
          let at = 0;
          for (const p of this.partial) {
            f.set(p, at);
            at += p.length;
          }
          this.received.push(f);
        }
        this.partial = [];
      }
    }
    this.rx.sring.setUint32(12, this.rx.rsp_cons + 1, true);
  }
}

/** An Ethernet frame dst <- src with `len` bytes in all (payload a counting pattern from `seed`). */
export function ethFrame(dst: readonly number[], src: readonly number[], len = 64, seed = 0): Uint8Array {
  const f = new Uint8Array(len);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = 0x08;
  f[13] = 0x00;
  for (let i = 14; i < len; i++) f[i] = (i + seed) & 0xff;
  return f;
}

export const MAC_A = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x01] as const;
export const MAC_B = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x02] as const;
export const MAC_C = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x03] as const;
export const BROADCAST = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff] as const;
