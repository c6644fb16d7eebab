/**
 * blkfront (Linux's xen-blkfront): a vbd's frontend over a one-page blkif ring.
 *
 * Connecting (talk_to_blkback, blkfront_connect): read `backend` and `backend-id`, wait for the
 * backend's InitWait, allocate and grant the ring page, allocate an unbound port for the backend,
 * write ring-ref, event-channel, protocol ("x86_64-abi") and feature-persistent = 1 in a
 * transaction (retried on EAGAIN), go Initialised, wait for Connected, read sectors, sector-size,
 * info, feature-flush-cache and feature-persistent, go Connected.
 *
 * I/O: READ and WRITE requests of up to BLKIF_MAX_SEGMENTS_PER_REQUEST segments, one data page
 * per segment (first_sect..last_sect of its 512-byte sectors), each page granted to the backend
 * (read-only for WRITE); as many requests in flight as the ring holds; FLUSH_DISKCACHE with no
 * segments. With feature-persistent negotiated on both ends, the data pages keep their grants
 * and are reused from a pool (the backend maps them once); otherwise each grant is ended after
 * its response, and a grant the backend still holds is counted as leaked rather than reused.
 *
 * Modelled more simply than Linux: no indirect descriptors and no multi-page rings (the backend
 * offers them; this frontend does not ask), no request merging or queues, one vbd per object.
 * The backend's responses are checked: an id that matches no request in flight is ignored and
 * counted, a corrupt rsp_prod stops the device.
 */
import {
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_OP_FLUSH_DISKCACHE,
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_RSP_OKAY,
  XenbusStateClosed,
  XenbusStateClosing,
  XenbusStateConnected,
  XenbusStateInitialised,
  XenbusStateInitWait,
  blkif_request,
  blkif_request_segment,
  blkif_response,
  blkif_sring_entry,
} from "@vtlab/xen-public";
import type { Frontends } from "./boot.js";
import { FrontRing } from "./front-ring.js";
import { frontendError, type FrontendError } from "./hypercall.js";
import { PAGE_SIZE } from "./mem.js";
import { XenbusDevice, isXsError } from "./xenbus.js";

const SECTOR = 512;
const SECTORS_PER_PAGE = PAGE_SIZE / SECTOR;
/** Linux's devid of xvda (major 202, minor 0): 51712. */
export const XVDA_DEVID = 51712;

export interface BlkError {
  readonly kind: "blk-error";
  readonly message: string;
  /** The BLKIF_RSP_* status, when the backend answered one. */
  readonly status?: number;
}

export function isBlkError(x: unknown): x is BlkError {
  return typeof x === "object" && x !== null && (x as BlkError).kind === "blk-error";
}

interface Seg {
  page: number;
  ref: number;
}

interface InFlight {
  op: number;
  segs: Seg[];
  status: number | undefined;
}

export class Blkfront {
  sectors = 0;
  sectorSize = SECTOR;
  info = 0;
  flushSupported = false;
  persistent = false;
  /** Requests pushed, responses taken, notifications sent, responses with an unknown id, grants the backend kept. */
  readonly stats = { requests: 0, responses: 0, notifies: 0, bogusResponses: 0, grantsMade: 0, grantsEnded: 0, grantsLeaked: 0, reads: 0, writes: 0, flushes: 0 };
  private ring!: FrontRing;
  private ringRef = -1;
  private port = -1;
  closed = false;
  private readonly inFlight = new Map<number, InFlight>();
  private nextId = 1;
  /** Persistent mode: data pages with their grants, free for reuse. */
  private readonly pool: Seg[] = [];

  private constructor(
    private readonly f: Frontends,
    readonly dev: XenbusDevice,
  ) {}

  /** Connect to the vbd `device/vbd/<devid>`: a Blkfront once both ends are Connected. */
  static *connect(f: Frontends, devid = XVDA_DEVID): Generator<void, Blkfront | FrontendError, void> {
    const xs = f.xenbus;
    if (xs === undefined) return frontendError("no xenstore");
    const dev = new XenbusDevice(xs, `device/vbd/${devid}`);
    const probed = yield* dev.probe();
    if (isXsError(probed)) return frontendError(`vbd ${devid}: probe: ${probed.error}`);
    const b = new Blkfront(f, dev);
    const s = yield* dev.waitBackend([XenbusStateInitWait, XenbusStateInitialised, XenbusStateConnected]);
    if (isXsError(s) || s !== XenbusStateInitWait) return frontendError(`vbd ${devid}: backend state ${isXsError(s) ? s.error : s}, not InitWait`);
    // setup_blkring: the shared ring, its grant, the event channel.
    const page = f.pages.alloc();
    if (page === undefined) return frontendError("out of memory for the ring");
    b.ring = new FrontRing(f.mem, page, blkif_sring_entry.SIZEOF);
    b.ring.init();
    const ringRef = f.grants.grantAccess(dev.backendId, page / PAGE_SIZE);
    if (ringRef === undefined) return frontendError("no grant ref for the ring");
    b.ringRef = ringRef;
    const port = f.evtchn.allocUnbound(dev.backendId);
    if (port < 0) return frontendError(`alloc_unbound: ${port}`);
    b.port = port;
    const written = yield* xs.writeAllInTransaction(dev.nodename, [
      ["ring-ref", String(ringRef)],
      ["event-channel", String(port)],
      ["protocol", "x86_64-abi"],
      ["feature-persistent", "1"],
    ]);
    if (written !== undefined) return frontendError(written);
    const st = yield* dev.switchState(XenbusStateInitialised);
    if (st !== undefined) return frontendError(`state: ${st.error}`);
    const c = yield* dev.waitBackend([XenbusStateConnected]);
    if (c !== XenbusStateConnected) return frontendError(`vbd ${devid}: backend went to ${isXsError(c) ? c.error : c}, not Connected`);
    const num = (v: string) => {
      const x = Number.parseInt(v, 10);
      return Number.isSafeInteger(x) && x >= 0 ? x : 0;
    };
    b.sectors = num(yield* dev.readBackend("sectors"));
    b.sectorSize = num(yield* dev.readBackend("sector-size")) || SECTOR;
    b.info = num(yield* dev.readBackend("info"));
    b.flushSupported = (yield* dev.readBackend("feature-flush-cache")) === "1";
    b.persistent = (yield* dev.readBackend("feature-persistent")) === "1";
    if (b.sectorSize !== SECTOR) return frontendError(`sector-size ${b.sectorSize}: only 512 is supported`);
    const ok = yield* dev.switchState(XenbusStateConnected);
    if (ok !== undefined) return frontendError(`state: ${ok.error}`);
    return b;
  }

  private takePage(readonly: boolean): Seg | undefined {
    if (this.persistent) {
      const s = this.pool.pop();
      if (s !== undefined) return s;
    }
    const page = this.persistent ? this.f.pages.alloc() : (this.scratch.pop() ?? this.f.pages.alloc());
    if (page === undefined) return undefined;
    const ref = this.f.grants.grantAccess(this.dev.backendId, page / PAGE_SIZE, readonly && !this.persistent);
    if (ref === undefined) {
      this.scratch.push(page);
      return undefined;
    }
    this.stats.grantsMade++;
    return { page, ref };
  }

  /** Non-persistent mode: data pages whose grants ended, for reuse. */
  private readonly scratch: number[] = [];

  private releaseSeg(s: Seg): void {
    if (this.persistent) {
      this.pool.push(s);
      return;
    }
    if (this.f.grants.endAccess(s.ref)) {
      this.stats.grantsEnded++;
      this.scratch.push(s.page);
    } else {
      this.stats.grantsLeaked++; // the backend still maps it: never reuse the page
    }
  }

  /** Queue one request (the ring has a free slot): its id. */
  private queue(op: number, sector: number, segs: Seg[], sectorsInLast: number): number {
    const mem = this.f.mem;
    const id = this.nextId++;
    const slot = this.ring.slot(this.ring.reqProdPvt);
    mem.zero(slot, blkif_request.SIZEOF);
    mem.write8(slot + blkif_request.operation, op);
    mem.write8(slot + blkif_request.nr_segments, segs.length);
    mem.write16(slot + blkif_request.handle, 0);
    mem.write64(slot + blkif_request.id, id);
    mem.write64(slot + blkif_request.sector_number, sector);
    segs.forEach((s, i) => {
      const e = slot + blkif_request.seg + i * blkif_request_segment.SIZEOF;
      mem.write32(e + blkif_request_segment.gref, s.ref);
      mem.write8(e + blkif_request_segment.first_sect, 0);
      mem.write8(e + blkif_request_segment.last_sect, (i === segs.length - 1 ? sectorsInLast : SECTORS_PER_PAGE) - 1);
    });
    this.ring.reqProdPvt = (this.ring.reqProdPvt + 1) >>> 0;
    this.inFlight.set(id, { op, segs, status: undefined });
    this.stats.requests++;
    return id;
  }

  private kick(): void {
    if (this.ring.pushRequests()) {
      this.f.evtchn.send(this.port);
      this.stats.notifies++;
    }
  }

  /** blkif_interrupt: take the responses there are. */
  private reap(): void {
    const mem = this.f.mem;
    for (;;) {
      const r = this.ring.unconsumed();
      if (r === undefined) return;
      const [from, to] = r;
      for (let i = from; i !== to; i = (i + 1) >>> 0) {
        const slot = this.ring.slot(i);
        const id = mem.read64(slot + blkif_response.id);
        const status = (mem.read16(slot + blkif_response.status) << 16) >> 16;
        const req = this.inFlight.get(id);
        if (req === undefined || req.status !== undefined) this.stats.bogusResponses++;
        else req.status = status;
        this.stats.responses++;
      }
      this.ring.rspCons = to;
      if (!this.ring.finalCheck()) return;
    }
  }

  /** Wait until request `id` has its response: its status. */
  private *wait(id: number): Generator<void, number, void> {
    for (;;) {
      this.f.evtchn.clear(this.port);
      this.reap();
      if (this.ring.broken !== undefined) return -1;
      const req = this.inFlight.get(id);
      if (req?.status !== undefined) return req.status;
      yield* this.f.evtchn.poll([this.port]);
    }
  }

  private *transfer(op: number, sector: number, count: number, data: Uint8Array | undefined): Generator<void, Uint8Array | BlkError | undefined, void> {
    if (this.closed) return { kind: "blk-error", message: "closed" };
    if (this.ring.broken !== undefined) return { kind: "blk-error", message: `ring broken: ${this.ring.broken}` };
    if (!Number.isSafeInteger(sector) || !Number.isSafeInteger(count) || sector < 0 || count < 0 || sector + count > this.sectors) return { kind: "blk-error", message: `sectors ${sector}+${count} outside the disk (${this.sectors})` };
    const out = op === BLKIF_OP_READ ? new Uint8Array(count * SECTOR) : undefined;
    const perReq = BLKIF_MAX_SEGMENTS_PER_REQUEST * SECTORS_PER_PAGE;
    let done = 0;
    let failure: BlkError | undefined;
    const pending: { id: number; at: number; n: number }[] = [];
    const complete = function* (this: Blkfront, p: { id: number; at: number; n: number }): Generator<void, void, void> {
      const status = yield* this.wait(p.id);
      const req = this.inFlight.get(p.id)!;
      this.inFlight.delete(p.id);
      if (status !== BLKIF_RSP_OKAY) failure ??= { kind: "blk-error", message: `${op === BLKIF_OP_READ ? "read" : "write"} at sector ${sector + p.at}: status ${status}`, status };
      else if (out !== undefined) {
        for (let i = 0; i < req.segs.length; i++) {
          const bytes = Math.min(PAGE_SIZE, (p.n - i * SECTORS_PER_PAGE) * SECTOR);
          out.set(this.f.mem.readBytes(req.segs[i]!.page, bytes), (p.at + i * SECTORS_PER_PAGE) * SECTOR);
        }
      }
      for (const s of req.segs) this.releaseSeg(s);
    };
    while (done < count) {
      while (done < count && this.ring.freeRequests > 0) {
        const n = Math.min(perReq, count - done);
        const segs: Seg[] = [];
        for (let i = 0; i * SECTORS_PER_PAGE < n; i++) {
          const s = this.takePage(op === BLKIF_OP_WRITE);
          if (s === undefined) break;
          segs.push(s);
        }
        if (segs.length * SECTORS_PER_PAGE < n) {
          for (const s of segs) this.releaseSeg(s);
          if (pending.length === 0) return { kind: "blk-error", message: "out of pages or grant refs for data" };
          break;
        }
        if (data !== undefined) {
          for (let i = 0; i < segs.length; i++) {
            const from = (done + i * SECTORS_PER_PAGE) * SECTOR;
            this.f.mem.writeBytes(segs[i]!.page, data.subarray(from, Math.min(from + PAGE_SIZE, (done + n) * SECTOR)));
          }
        }
        const lastSectors = n - (segs.length - 1) * SECTORS_PER_PAGE;
        pending.push({ id: this.queue(op, sector + done, segs, lastSectors), at: done, n });
        done += n;
      }
      this.kick();
      const p = pending.shift();
      if (p !== undefined) yield* complete.call(this, p);
    }
    this.kick();
    for (const p of pending) yield* complete.call(this, p);
    if (failure !== undefined) return failure;
    return out;
  }

  /** Read `count` sectors from `sector`. */
  *read(sector: number, count: number): Generator<void, Uint8Array | BlkError, void> {
    this.stats.reads++;
    const r = yield* this.transfer(BLKIF_OP_READ, sector, count, undefined);
    return r ?? new Uint8Array(0);
  }

  /** Write `data` (whole sectors) at `sector`. */
  *write(sector: number, data: Uint8Array): Generator<void, BlkError | undefined, void> {
    this.stats.writes++;
    if (data.length % SECTOR !== 0) return { kind: "blk-error", message: `${data.length} bytes is not whole sectors` };
    const r = yield* this.transfer(BLKIF_OP_WRITE, sector, data.length / SECTOR, data);
    return isBlkError(r) ? r : undefined;
  }

  /**
   * blkfront_closing: go Closing, wait for the backend to disconnect (Closing or Closed: it has
   * unmapped the ring and the persistent grants), go Closed, then end the ring's and the data
   * pages' grants and close the port. False when a grant is still in use (it is left, not reused).
   */
  *close(): Generator<void, boolean, void> {
    if (this.closed) return true;
    this.closed = true;
    yield* this.dev.switchState(XenbusStateClosing);
    yield* this.dev.waitBackend([XenbusStateClosing, XenbusStateClosed]);
    yield* this.dev.switchState(XenbusStateClosed);
    let clean = true;
    for (const s of this.pool.splice(0)) {
      if (this.f.grants.endAccess(s.ref)) this.stats.grantsEnded++;
      else {
        this.stats.grantsLeaked++;
        clean = false;
      }
    }
    if (!this.f.grants.endAccess(this.ringRef)) clean = false;
    this.f.evtchn.close(this.port);
    return clean && this.inFlight.size === 0;
  }

  /** BLKIF_OP_FLUSH_DISKCACHE (no segments), when the backend offers feature-flush-cache. */
  *flush(): Generator<void, BlkError | undefined, void> {
    this.stats.flushes++;
    if (!this.flushSupported) return { kind: "blk-error", message: "the backend offers no feature-flush-cache" };
    if (this.ring.freeRequests === 0) return { kind: "blk-error", message: "ring full" };
    const id = this.queue(BLKIF_OP_FLUSH_DISKCACHE, 0, [], SECTORS_PER_PAGE);
    this.kick();
    const status = yield* this.wait(id);
    this.inFlight.delete(id);
    return status === BLKIF_RSP_OKAY ? undefined : { kind: "blk-error", message: `flush: status ${status}`, status };
  }
}
