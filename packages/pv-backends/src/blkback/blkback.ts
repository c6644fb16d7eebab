/**
 * blkback's ring engine: one vbd's blkif ring (io/blkif.h), served from a `BlkStorage`, the way
 * Linux's drivers/block/xen-blkback behaves (blkback.c: __do_block_io_op, dispatch_rw_block_io,
 * dispatch_discard_io, dispatch_other_io, make_response; the persistent-grant tree).
 *
 * Everything in the ring and in granted pages is hostile:
 * - req_prod is read once per pass and checked with RING_REQUEST_PROD_OVERFLOW; a producer past
 *   the ring stops the ring for good with a logged "bogus requests" error (Linux halts the ring
 *   thread the same way), the rest of the host runs on;
 * - each slot is copied once (RING_COPY_REQUEST, through the mapping's read) before it is
 *   decoded, and only the copy is used: a frontend that rewrites the slot afterwards (the double
 *   fetch of XSA-155) changes nothing;
 * - segment counts (BLKIF_MAX_SEGMENTS_PER_REQUEST, the advertised max indirect segments),
 *   first_sect/last_sect, sector ranges, the read-only mode and every grant are checked; the
 *   answer is BLKIF_RSP_ERROR (BLKIF_RSP_EOPNOTSUPP for an unknown operation);
 * - a response is 16 bytes built from zero (id, operation, status, zero padding): no backend
 *   memory in the padding.
 *
 * Data moves by grant copy (GNTTABOP_copy, one op per segment, batched per request), or, with
 * feature-persistent, through persistent mappings of the frontend's data pages (kept across
 * requests, at most `maxPersistentGrants`, as Linux's max_persistent_grants; past the bound the
 * request falls back to copies).
 *
 * Simpler than Linux: requests complete synchronously inside `process()` (no bios in flight, so
 * a barrier's drain is trivial and responses go out in request order); indirect descriptor pages
 * are always grant-copied (Linux maps them, persistently when it can); persistent grants are
 * never purged (Linux's LRU purge of unused ones is left out: the bound holds regardless); only
 * the native x86_64 protocol ("x86_64-abi") is served, not the 32-bit layout.
 */
import {
  BACK_RING_INIT,
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_OP_DISCARD,
  BLKIF_OP_FLUSH_DISKCACHE,
  BLKIF_OP_INDIRECT,
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_OP_WRITE_BARRIER,
  BLKIF_RSP_EOPNOTSUPP,
  BLKIF_RSP_ERROR,
  BLKIF_RSP_OKAY,
  GNTST_okay,
  RING_FINAL_CHECK_FOR_REQUESTS,
  RING_GET_REQUEST,
  RING_GET_RESPONSE,
  RING_PUSH_RESPONSES_AND_CHECK_NOTIFY,
  RING_REQUEST_CONS_OVERFLOW,
  RING_REQUEST_PROD_OVERFLOW,
  blkif_request,
  blkif_request_discard,
  blkif_request_indirect,
  blkif_response,
  blkif_sring_entry,
  type back_ring,
} from "@vtlab/xen-public";
import type { BackendCopyOp, BackendGrantMapping, BackendHost } from "../host.js";
import { RingArea } from "./ring-area.js";
import type { BlkStorage } from "./storage.js";

const PAGE = 4096;
/** blkif sectors are always 512 bytes, whatever the disk's logical sector size. */
const SECTOR = 512;
/** Sectors per page: last_sect must be below this. */
const SECTORS_PER_PAGE = PAGE / SECTOR;
/** Segments one indirect page holds (Linux: XEN_PAGES_PER_INDIRECT_FRAME = PAGE_SIZE / sizeof(struct blkif_request_segment)). */
export const SEGS_PER_INDIRECT_FRAME = PAGE / 8;
/** Linux blkback's MAX_INDIRECT_SEGMENTS (advertised as feature-max-indirect-segments). */
export const MAX_INDIRECT_SEGMENTS = 256;
/** Linux blkback's default max_persistent_grants. */
export const MAX_PERSISTENT_GRANTS = 1056;
/** Linux blkback's default max_ring_page_order (XENBUS_MAX_RING_GRANT_ORDER). */
export const MAX_RING_PAGE_ORDER = 4;
/** Requests served per `process()` call before yielding (vtlab's own bound, so one ring cannot starve others). */
export const MAX_REQUESTS_PER_DISPATCH = 64;
/** The protocol string of the native x86_64 layout (io/protocols.h XEN_IO_PROTO_ABI_X86_64). */
export const BLKIF_PROTOCOL_X86_64 = "x86_64-abi";

/** How the frontend connected (read from its xenstore directory, or given directly). */
export interface BlkifRingConfig {
  readonly frontendDomid: number;
  /** `ring-ref` (one page) or `ring-ref0..N-1` (N = 2^ring-page-order). */
  readonly ringRefs: readonly number[];
  /** The frontend's `event-channel` port. */
  readonly eventChannel: number;
  /** The frontend's `protocol` (absent: native). */
  readonly protocol?: string;
  /** The frontend's `feature-persistent`. */
  readonly persistent?: boolean;
}

export interface BlkbackOptions {
  /** Advertised feature-max-indirect-segments (default MAX_INDIRECT_SEGMENTS; 0: no indirect). */
  readonly maxIndirectSegments?: number;
  readonly maxPersistentGrants?: number;
  /** Offer feature-persistent (default true). */
  readonly persistent?: boolean;
  readonly maxRequestsPerDispatch?: number;
  readonly maxRingPageOrder?: number;
  /** Log lines (errors a real blkback prints with pr_warn). */
  readonly log?: (line: string) => void;
}

/** Why a connect failed. */
export type BlkbackConnectError =
  | { readonly kind: "bad-config"; readonly detail: string }
  | { readonly kind: "map-ring"; readonly ref: number; readonly status: number }
  | { readonly kind: "bind-evtchn"; readonly port: number; readonly errno: number };

export interface BlkbackCounters {
  /** Requests by operation (indirect ones counted under `indirect` and under their indirect_op). */
  read: number;
  write: number;
  barrier: number;
  flush: number;
  discard: number;
  indirect: number;
  unknown: number;
  sectorsRead: number;
  sectorsWritten: number;
  sectorsDiscarded: number;
  /** GNTTABOP_copy ops issued (data segments and indirect pages). */
  grantCopies: number;
  /** Data pages mapped persistently / unmapped again. */
  grantMaps: number;
  grantUnmaps: number;
  /** Segments served through an existing persistent mapping. */
  persistentHits: number;
  responses: number;
  notifications: number;
  /** BLKIF_RSP_ERROR answers, by cause. */
  errBadSegments: number;
  errBadRange: number;
  errBadGrant: number;
  errReadonly: number;
  errIo: number;
  /** BLKIF_RSP_EOPNOTSUPP answers. */
  errUnsupported: number;
  /** Rings stopped for a producer past the ring. */
  bogusRings: number;
}

function newCounters(): BlkbackCounters {
  return {
    read: 0, write: 0, barrier: 0, flush: 0, discard: 0, indirect: 0, unknown: 0,
    sectorsRead: 0, sectorsWritten: 0, sectorsDiscarded: 0,
    grantCopies: 0, grantMaps: 0, grantUnmaps: 0, persistentHits: 0,
    responses: 0, notifications: 0,
    errBadSegments: 0, errBadRange: 0, errBadGrant: 0, errReadonly: 0, errIo: 0, errUnsupported: 0,
    bogusRings: 0,
  };
}

interface Connection {
  readonly domid: number;
  readonly area: RingArea;
  readonly ring: back_ring;
  readonly localPort: number;
  readonly persistent: boolean;
}

/** One vbd's blkif backend: connect to a frontend's ring, serve it, disconnect. */
export class Blkback {
  readonly counters: BlkbackCounters = newCounters();
  readonly maxIndirectSegments: number;
  readonly maxPersistentGrants: number;
  readonly offerPersistent: boolean;
  readonly maxRequestsPerDispatch: number;
  readonly maxRingPageOrder: number;
  /** Why the ring was stopped (a bogus producer, a ring page gone), or undefined. */
  halted: string | undefined;
  private conn: Connection | undefined;
  private readonly persistentGrants = new Map<number, BackendGrantMapping>();
  private readonly log: (line: string) => void;
  /** The private copies of the slots being served (RING_COPY_REQUEST), a batch at a time. */
  private readonly slots: Uint8Array;
  private readonly slotView: DataView;
  /** The offset in `slots` of the request being served. */
  private at = 0;
  private readonly rsp = new Uint8Array(blkif_response.SIZEOF);
  private readonly rspView = new DataView(this.rsp.buffer);
  /** The request's segments, validated copies (direct or from indirect pages). */
  private readonly segGref: Uint32Array;
  private readonly segFirst: Uint8Array;
  private readonly segLast: Uint8Array;
  /** The indirect descriptor pages, copied once. */
  private readonly indirect: Uint8Array;
  private readonly indirectView: DataView;
  /** The request's data, contiguous on the disk. */
  private readonly data: Uint8Array;
  /** 512-byte sectors per storage sector. */
  private readonly factor: number;

  constructor(
    readonly host: BackendHost,
    readonly storage: BlkStorage,
    options: BlkbackOptions = {},
  ) {
    this.maxIndirectSegments = Math.max(0, Math.min(options.maxIndirectSegments ?? MAX_INDIRECT_SEGMENTS, SEGS_PER_INDIRECT_FRAME * 8));
    this.maxPersistentGrants = Math.max(0, options.maxPersistentGrants ?? MAX_PERSISTENT_GRANTS);
    this.offerPersistent = options.persistent ?? true;
    this.maxRequestsPerDispatch = Math.max(1, options.maxRequestsPerDispatch ?? MAX_REQUESTS_PER_DISPATCH);
    this.maxRingPageOrder = Math.max(0, Math.min(options.maxRingPageOrder ?? MAX_RING_PAGE_ORDER, 8));
    this.log = options.log ?? (() => {});
    if (storage.sectorSize < SECTOR || storage.sectorSize % SECTOR !== 0) throw new RangeError(`blkback: sector size ${storage.sectorSize}`);
    this.factor = storage.sectorSize / SECTOR;
    const maxSegs = Math.max(BLKIF_MAX_SEGMENTS_PER_REQUEST, this.maxIndirectSegments);
    this.segGref = new Uint32Array(maxSegs);
    this.segFirst = new Uint8Array(maxSegs);
    this.segLast = new Uint8Array(maxSegs);
    this.indirect = new Uint8Array(Math.ceil(this.maxIndirectSegments / SEGS_PER_INDIRECT_FRAME) * PAGE);
    this.indirectView = new DataView(this.indirect.buffer);
    this.data = new Uint8Array(maxSegs * PAGE);
    this.slots = new Uint8Array(this.maxRequestsPerDispatch * blkif_sring_entry.SIZEOF);
    this.slotView = new DataView(this.slots.buffer);
  }

  /** The disk size in 512-byte sectors (xenstore `sectors`). */
  get sectors(): number {
    return this.storage.sectors * this.factor;
  }

  get connected(): boolean {
    return this.conn !== undefined;
  }

  /** dom0's port bound to the frontend's event channel, while connected. */
  get localPort(): number | undefined {
    return this.conn?.localPort;
  }

  /** The number of persistent grants held. */
  get persistentGrantCount(): number {
    return this.persistentGrants.size;
  }

  /** Whether the frontend has published requests not yet served (the host should call `process()`). */
  get hasWork(): boolean {
    const c = this.conn;
    if (c === undefined || this.halted !== undefined) return false;
    const rp = c.ring.sring.getUint32(0, true);
    return rp !== c.ring.req_cons;
  }

  /**
   * Map the frontend's ring pages, bind its event channel (dom0's bindInterdomain) and start
   * serving. Errors are values; a failed connect leaves nothing mapped or bound.
   */
  connect(cfg: BlkifRingConfig): BlkbackConnectError | undefined {
    if (this.conn !== undefined) return { kind: "bad-config", detail: "already connected" };
    const n = cfg.ringRefs.length;
    if (n < 1 || n > 2 ** this.maxRingPageOrder || (n & (n - 1)) !== 0) return { kind: "bad-config", detail: `${n} ring pages (1 .. ${2 ** this.maxRingPageOrder}, a power of two)` };
    if (cfg.protocol !== undefined && cfg.protocol !== BLKIF_PROTOCOL_X86_64) return { kind: "bad-config", detail: `unsupported protocol "${cfg.protocol}"` };
    const pages: BackendGrantMapping[] = [];
    for (const ref of cfg.ringRefs) {
      const m = Number.isInteger(ref) && ref >= 0 && ref <= 0xffff_ffff ? this.host.grants.map(cfg.frontendDomid, ref) : -3;
      if (typeof m === "number") {
        for (const p of pages) this.host.grants.unmap(p);
        return { kind: "map-ring", ref, status: m };
      }
      pages.push(m);
    }
    const port = this.host.evtchn.bindInterdomain(cfg.frontendDomid, cfg.eventChannel);
    if (port < 0) {
      for (const p of pages) this.host.grants.unmap(p);
      return { kind: "bind-evtchn", port: cfg.eventChannel, errno: port };
    }
    const area = new RingArea(pages);
    const ring = BACK_RING_INIT(area.headerView(), 0, n * PAGE, blkif_sring_entry);
    this.conn = { domid: cfg.frontendDomid, area, ring, localPort: port, persistent: this.offerPersistent && cfg.persistent === true };
    this.halted = undefined;
    this.host.evtchn.onEvent(port, () => {
      this.process();
    });
    // Requests may already be waiting (blkfront pushes before it is told we are Connected).
    this.process();
    return undefined;
  }

  /** Stop serving: unbind the event channel, unmap the ring and every persistent grant. */
  disconnect(): void {
    const c = this.conn;
    if (c === undefined) return;
    this.conn = undefined;
    this.host.evtchn.onEvent(c.localPort, undefined);
    this.host.evtchn.close(c.localPort);
    for (const p of c.area.pages) this.host.grants.unmap(p);
    for (const m of this.persistentGrants.values()) {
      this.host.grants.unmap(m);
      this.counters.grantUnmaps++;
    }
    this.persistentGrants.clear();
  }

  private halt(reason: string): void {
    this.halted = reason;
    this.log(`blkback: ${reason}; halting ring processing`);
  }

  /**
   * Serve up to `maxRequestsPerDispatch` requests (the event handler calls this; the host calls
   * it again while `hasWork`). Returns the requests served.
   */
  process(): number {
    const c = this.conn;
    if (c === undefined || this.halted !== undefined) return 0;
    const ring = c.ring;
    const area = c.area;
    const budget = this.maxRequestsPerDispatch;
    let done = 0;
    for (;;) {
      const rp = ring.sring.getUint32(0, true); // req_prod, once per pass
      if (!area.ok) {
        this.halt("ring page no longer mapped");
        break;
      }
      if (RING_REQUEST_PROD_OVERFLOW(ring, rp)) {
        this.counters.bogusRings++;
        this.halt(`frontend of domain ${c.domid} provided bogus requests (${rp} - ${ring.req_cons} = ${(rp - ring.req_cons) >>> 0}, ring of ${ring.nr_ents})`);
        break;
      }
      while (ring.req_cons !== rp && done < budget) {
        if (RING_REQUEST_CONS_OVERFLOW(ring, ring.req_cons)) break;
        // RING_COPY_REQUEST, a run of slots at once: up to the producer, the budget or the wrap.
        const slot = ring.req_cons & (ring.nr_ents - 1);
        const n = Math.min((rp - ring.req_cons) >>> 0, budget - done, ring.nr_ents - slot);
        if (!area.read(RING_GET_REQUEST(ring, ring.req_cons), n * blkif_sring_entry.SIZEOF, this.slots)) break;
        for (let i = 0; i < n; i++) {
          ring.req_cons = (ring.req_cons + 1) >>> 0;
          this.at = i * blkif_sring_entry.SIZEOF;
          this.serve(c);
        }
        done += n;
      }
      if (!area.ok) {
        this.halt("ring page no longer mapped");
        break;
      }
      if (done >= budget) break;
      if (RING_FINAL_CHECK_FOR_REQUESTS(ring) === 0) break;
    }
    if (done > 0 && area.ok) {
      if (RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(ring) && area.ok) {
        this.counters.notifications++;
        this.host.evtchn.send(c.localPort);
      }
    }
    return done;
  }

  /** One request from its private copy (`slots` at `at`). */
  private serve(c: Connection): void {
    const v = this.slotView;
    const o = this.at;
    const op = v.getUint8(o + blkif_request.operation);
    const idLo = v.getUint32(o + blkif_request.id, true);
    const idHi = v.getUint32(o + blkif_request.id + 4, true);
    const K = this.counters;
    switch (op) {
      case BLKIF_OP_READ:
      case BLKIF_OP_WRITE:
      case BLKIF_OP_WRITE_BARRIER:
      case BLKIF_OP_FLUSH_DISKCACHE: {
        if (op === BLKIF_OP_READ) K.read++;
        else if (op === BLKIF_OP_WRITE) K.write++;
        else if (op === BLKIF_OP_WRITE_BARRIER) K.barrier++;
        else K.flush++;
        const nseg = v.getUint8(o + blkif_request.nr_segments);
        let status: number;
        if (nseg > BLKIF_MAX_SEGMENTS_PER_REQUEST) {
          K.errBadSegments++;
          status = BLKIF_RSP_ERROR;
        } else {
          for (let i = 0; i < nseg; i++) {
            const at = o + blkif_request.seg + i * 8;
            this.segGref[i] = v.getUint32(at, true);
            this.segFirst[i] = v.getUint8(at + 4);
            this.segLast[i] = v.getUint8(at + 5);
          }
          status = this.rw(c, op, nseg, readSector(v, o + blkif_request.sector_number));
        }
        this.respond(c, idLo, idHi, op, status);
        return;
      }
      case BLKIF_OP_INDIRECT: {
        K.indirect++;
        const iop = v.getUint8(o + blkif_request_indirect.indirect_op);
        const nseg = v.getUint16(o + blkif_request_indirect.nr_segments, true);
        let status: number;
        if (iop !== BLKIF_OP_READ && iop !== BLKIF_OP_WRITE) {
          K.errBadSegments++;
          status = BLKIF_RSP_ERROR;
        } else {
          if (iop === BLKIF_OP_READ) K.read++;
          else K.write++;
          status = this.indirectRw(c, iop, nseg);
        }
        this.respond(c, idLo, idHi, iop, status);
        return;
      }
      case BLKIF_OP_DISCARD: {
        K.discard++;
        this.respond(c, idLo, idHi, op, this.discard());
        return;
      }
      default:
        K.unknown++;
        K.errUnsupported++;
        this.respond(c, idLo, idHi, op, BLKIF_RSP_EOPNOTSUPP);
    }
  }

  private indirectRw(c: Connection, iop: number, nseg: number): number {
    const K = this.counters;
    if (nseg === 0 || nseg > this.maxIndirectSegments) {
      K.errBadSegments++;
      return BLKIF_RSP_ERROR;
    }
    // The descriptor pages, copied once; only the bytes the segments occupy.
    const pages = Math.ceil(nseg / SEGS_PER_INDIRECT_FRAME);
    const ops: BackendCopyOp[] = [];
    for (let p = 0; p < pages; p++) {
      const gref = this.slotView.getUint32(this.at + blkif_request_indirect.indirect_grefs + 4 * p, true);
      const len = Math.min(nseg - p * SEGS_PER_INDIRECT_FRAME, SEGS_PER_INDIRECT_FRAME) * 8;
      ops.push({ source: { domid: c.domid, ref: gref, offset: 0 }, dest: { bytes: this.indirect, offset: p * PAGE }, len });
    }
    K.grantCopies += ops.length;
    const st = this.host.grants.copy(ops);
    for (const s of st) {
      if (s !== GNTST_okay) {
        K.errBadGrant++;
        return BLKIF_RSP_ERROR;
      }
    }
    const iv = this.indirectView;
    for (let i = 0; i < nseg; i++) {
      const at = ((i / SEGS_PER_INDIRECT_FRAME) | 0) * PAGE + (i % SEGS_PER_INDIRECT_FRAME) * 8;
      this.segGref[i] = iv.getUint32(at, true);
      this.segFirst[i] = iv.getUint8(at + 4);
      this.segLast[i] = iv.getUint8(at + 5);
    }
    return this.rw(c, iop, nseg, readSector(this.slotView, this.at + blkif_request_indirect.sector_number));
  }

  /** READ, WRITE, WRITE_BARRIER, FLUSH_DISKCACHE with `nseg` validated-count segments in seg*. */
  private rw(c: Connection, op: number, nseg: number, sector: number): number {
    const K = this.counters;
    const isFlush = op === BLKIF_OP_FLUSH_DISKCACHE || op === BLKIF_OP_WRITE_BARRIER;
    if (nseg === 0 && !isFlush) {
      K.errBadSegments++;
      return BLKIF_RSP_ERROR;
    }
    let total = 0;
    for (let i = 0; i < nseg; i++) {
      const f = this.segFirst[i] ?? 0;
      const l = this.segLast[i] ?? 0;
      if (f > l || l >= SECTORS_PER_PAGE) {
        K.errBadSegments++;
        return BLKIF_RSP_ERROR;
      }
      total += l - f + 1;
    }
    const isRead = op === BLKIF_OP_READ;
    if (nseg > 0) {
      if (!(sector >= 0) || sector + total > this.sectors || sector % this.factor !== 0 || total % this.factor !== 0) {
        K.errBadRange++;
        return BLKIF_RSP_ERROR;
      }
      if (!isRead && this.storage.readonly === true) {
        K.errReadonly++;
        return BLKIF_RSP_ERROR;
      }
    }
    if (isFlush && !this.storage.flush()) {
      K.errIo++;
      return BLKIF_RSP_ERROR;
    }
    if (nseg === 0) return BLKIF_RSP_OKAY;
    const bytes = total * SECTOR;
    const buf = this.data.subarray(0, bytes);
    if (isRead) {
      if (!this.storage.read(sector / this.factor, total / this.factor, buf)) {
        K.errIo++;
        return BLKIF_RSP_ERROR;
      }
      if (!this.moveData(c, nseg, true)) return BLKIF_RSP_ERROR;
      K.sectorsRead += total;
    } else {
      if (!this.moveData(c, nseg, false)) return BLKIF_RSP_ERROR;
      if (!this.storage.write(sector / this.factor, buf)) {
        K.errIo++;
        return BLKIF_RSP_ERROR;
      }
      K.sectorsWritten += total;
    }
    return BLKIF_RSP_OKAY;
  }

  /**
   * Segments' data between `data` and the frontend's pages: `toGuest` for a read. Persistent
   * mappings where the frontend negotiated them (and the bound allows), grant copies otherwise.
   */
  private moveData(c: Connection, nseg: number, toGuest: boolean): boolean {
    const K = this.counters;
    let ops: BackendCopyOp[] | undefined;
    let at = 0;
    for (let i = 0; i < nseg; i++) {
      const gref = this.segGref[i] ?? 0;
      const off = (this.segFirst[i] ?? 0) * SECTOR;
      const len = ((this.segLast[i] ?? 0) - (this.segFirst[i] ?? 0) + 1) * SECTOR;
      const m = c.persistent ? this.persistentGrant(c, gref) : undefined;
      if (typeof m === "number") {
        K.errBadGrant++;
        return false;
      }
      if (m !== undefined) {
        K.persistentHits++;
        const ok = toGuest ? m.write(off, this.data.subarray(at, at + len)) : this.readMapping(m, off, len, at);
        if (!ok) {
          // The mapping went away under us (or a read-only grant): drop it, fail the request.
          this.persistentGrants.delete(gref);
          this.host.grants.unmap(m);
          K.grantUnmaps++;
          K.errBadGrant++;
          return false;
        }
      } else {
        ops ??= [];
        ops.push(
          toGuest
            ? { source: { bytes: this.data, offset: at }, dest: { domid: c.domid, ref: gref, offset: off }, len }
            : { source: { domid: c.domid, ref: gref, offset: off }, dest: { bytes: this.data, offset: at }, len },
        );
      }
      at += len;
    }
    if (ops !== undefined) {
      K.grantCopies += ops.length;
      const st = this.host.grants.copy(ops);
      for (let i = 0; i < ops.length; i++) {
        if (st[i] !== GNTST_okay) {
          K.errBadGrant++;
          return false;
        }
      }
    }
    return true;
  }

  private readMapping(m: BackendGrantMapping, off: number, len: number, at: number): boolean {
    if (m.readInto !== undefined) return m.readInto(off, this.data.subarray(at, at + len));
    const b = m.read(off, len);
    if (b === undefined) return false;
    this.data.set(b, at);
    return true;
  }

  /** The persistent mapping of `gref` (made now if there is room), undefined (use a copy), or a GNTST_ error. */
  private persistentGrant(c: Connection, gref: number): BackendGrantMapping | number | undefined {
    const have = this.persistentGrants.get(gref);
    if (have !== undefined) {
      if (have.mapped) return have;
      this.persistentGrants.delete(gref);
      this.host.grants.unmap(have);
      this.counters.grantUnmaps++;
    }
    if (this.persistentGrants.size >= this.maxPersistentGrants) return undefined;
    const m = this.host.grants.map(c.domid, gref);
    if (typeof m === "number") return m;
    this.counters.grantMaps++;
    this.persistentGrants.set(gref, m);
    return m;
  }

  private discard(): number {
    const K = this.counters;
    const v = this.slotView;
    const discard = this.storage.discard?.bind(this.storage);
    if (discard === undefined) {
      K.errUnsupported++;
      return BLKIF_RSP_EOPNOTSUPP;
    }
    const sector = readSector(v, this.at + blkif_request_discard.sector_number);
    const count = readSector(v, this.at + blkif_request_discard.nr_sectors);
    if (!(sector >= 0) || !(count >= 0) || sector + count > this.sectors || sector % this.factor !== 0 || count % this.factor !== 0) {
      K.errBadRange++;
      return BLKIF_RSP_ERROR;
    }
    if (this.storage.readonly === true) {
      K.errReadonly++;
      return BLKIF_RSP_ERROR;
    }
    if (!discard(sector / this.factor, count / this.factor)) {
      K.errIo++;
      return BLKIF_RSP_ERROR;
    }
    K.sectorsDiscarded += count;
    return BLKIF_RSP_OKAY;
  }

  /** make_response: a 16-byte response built from zero in the next response slot. */
  private respond(c: Connection, idLo: number, idHi: number, op: number, status: number): void {
    const r = this.rsp;
    r.fill(0);
    const v = this.rspView;
    v.setUint32(blkif_response.id, idLo, true);
    v.setUint32(blkif_response.id + 4, idHi, true);
    v.setUint8(blkif_response.operation, op);
    v.setInt16(blkif_response.status, status, true);
    c.area.write(RING_GET_RESPONSE(c.ring, c.ring.rsp_prod_pvt), r);
    c.ring.rsp_prod_pvt = (c.ring.rsp_prod_pvt + 1) >>> 0;
    this.counters.responses++;
  }
}

/** A u64 sector number; anything at or above 2^53 becomes Infinity (always out of range). */
function readSector(v: DataView, o: number): number {
  const lo = v.getUint32(o, true);
  const hi = v.getUint32(o + 4, true);
  return hi >= 0x20_0000 ? Infinity : hi * 0x1_0000_0000 + lo;
}
