/**
 * A BackendHost without a hypervisor, for blkback's tests and bench: one frontend domain whose
 * granted pages are plain 4 KiB buffers, dom0's grant map/unmap/copy with the checks Xen's
 * GNTTABOP_* make (unknown ref, read-only, offsets inside the page), and event channels whose
 * events are delivered by `dispatch()` as the hypervisor does between slices. The frontend side
 * writes blkif requests with @vtlab/xen-public's ring functions, as blkfront would.
 */
import {
  BLKIF_OP_INDIRECT,
  FRONT_RING_INIT,
  GNTST_bad_copy_arg,
  GNTST_bad_domain,
  GNTST_bad_gntref,
  GNTST_bad_handle,
  GNTST_okay,
  GNTST_permission_denied,
  RING_GET_REQUEST,
  RING_GET_RESPONSE,
  RING_PUSH_REQUESTS_AND_CHECK_NOTIFY,
  SHARED_RING_INIT,
  blkif_sring_entry,
  read_blkif_response,
  sring_rsp_prod,
  write_blkif_request,
  write_blkif_request_discard,
  write_blkif_request_indirect,
  type blkif_request_segment_t,
  type blkif_response_t,
  type front_ring,
} from "@vtlab/xen-public";
import type { BackendCopyOp, BackendCopySide, BackendGrantMapping, BackendHost } from "../src/host.js";

const PAGE = 4096;

export interface FakeGrant {
  page: Uint8Array;
  readonly: boolean;
  /** The frontend ended foreign access (the entry is gone): new maps and copies fail. */
  revoked: boolean;
}

export class FakeHost implements BackendHost {
  readonly grantsOf = new Map<number, FakeGrant>();
  readonly mappings = new Map<number, { ref: number; readonly: boolean; live: boolean }>();
  private nextHandle = 1;
  maps = 0;
  unmaps = 0;
  copyOps = 0;
  /** Ports dom0 sent on (the frontend's notifications). */
  readonly sent: number[] = [];
  private readonly handlers = new Map<number, (port: number) => void>();
  private readonly pending = new Set<number>();
  private nextPort = 10;
  readonly bound = new Map<number, { domid: number; remote: number }>();
  /** Called before each copy op (a hostile frontend's hook). */
  onCopy: ((op: BackendCopyOp) => void) | undefined;

  constructor(readonly frontDomid = 1) {}

  grant(ref: number, options: { readonly?: boolean; page?: Uint8Array } = {}): Uint8Array {
    const page = options.page ?? new Uint8Array(PAGE);
    this.grantsOf.set(ref, { page, readonly: options.readonly === true, revoked: false });
    return page;
  }

  /** End foreign access: maps and copies fail from now; existing mappings stay (Xen keeps the frame). */
  revoke(ref: number): void {
    const g = this.grantsOf.get(ref);
    if (g !== undefined) g.revoked = true;
  }

  /** Tear down mappings of `ref` (as if the mapping were force-unmapped): their reads/writes fail. */
  killMappings(ref: number): void {
    for (const m of this.mappings.values()) if (m.ref === ref) m.live = false;
  }

  liveMappings(): number {
    let n = 0;
    for (const m of this.mappings.values()) if (m.live) n++;
    return n;
  }

  readonly grants = {
    map: (domid: number, ref: number, options?: { readonly readonly?: boolean }): BackendGrantMapping | number => {
      if (domid !== this.frontDomid) return GNTST_bad_domain;
      const g = this.grantsOf.get(ref);
      if (g === undefined || g.revoked) return GNTST_bad_gntref;
      const ro = options?.readonly === true;
      if (g.readonly && !ro) return GNTST_permission_denied;
      const handle = this.nextHandle++;
      const rec = { ref, readonly: ro, live: true };
      this.mappings.set(handle, rec);
      this.maps++;
      const page = g.page;
      const inPage = (o: number, l: number) => Number.isInteger(o) && Number.isInteger(l) && o >= 0 && l >= 0 && o + l <= PAGE;
      return {
        handle, domid, ref, readonly: ro,
        get mapped() { return rec.live; },
        read(offset: number, length: number) {
          if (!rec.live || !inPage(offset, length)) return undefined;
          const out = new Uint8Array(length); // a copy, as the hypervisor's mapping returns
          out.set(page.subarray(offset, offset + length));
          return out;
        },
        readInto(offset: number, into: Uint8Array) {
          if (!rec.live || !inPage(offset, into.length)) return false;
          into.set(page.subarray(offset, offset + into.length));
          return true;
        },
        write(offset: number, bytes: Uint8Array) {
          if (!rec.live || rec.readonly || !inPage(offset, bytes.length)) return false;
          page.set(bytes, offset);
          return true;
        },
      };
    },
    unmap: (mapping: BackendGrantMapping | number): number => {
      const handle = typeof mapping === "number" ? mapping : mapping.handle;
      const rec = this.mappings.get(handle);
      if (rec === undefined) return GNTST_bad_handle;
      rec.live = false;
      this.mappings.delete(handle);
      this.unmaps++;
      return GNTST_okay;
    },
    copy: (ops: readonly BackendCopyOp[]): number[] => {
      const out: number[] = new Array(ops.length);
      for (let i = 0; i < ops.length; i++) out[i] = this.copyOne(ops[i]!);
      return out;
    },
  };

  private copyOne(op: BackendCopyOp): number {
    this.onCopy?.(op);
    this.copyOps++;
    const src = this.copySide(op.source, op.len, false);
    if (src < 0) return src;
    const srcBytes = this.sideBytes;
    const dst = this.copySide(op.dest, op.len, true);
    if (dst < 0) return dst;
    this.sideBytes.set(srcBytes.subarray(src, src + op.len), dst);
    return GNTST_okay;
  }

  private sideBytes: Uint8Array = new Uint8Array(0);
  /** The offset of one side (its bytes in `sideBytes`), or a GNTST_ error (negative). */
  private copySide(s: BackendCopySide, len: number, write: boolean): number {
    const offset = s.offset ?? 0;
    if ("bytes" in s) {
      this.sideBytes = s.bytes;
      return offset >= 0 && offset + len <= s.bytes.length ? offset : GNTST_bad_copy_arg;
    }
    if (s.domid !== this.frontDomid) return GNTST_bad_domain;
    const g = this.grantsOf.get(s.ref);
    if (g === undefined || g.revoked) return GNTST_bad_gntref;
    if (write && g.readonly) return GNTST_permission_denied;
    if (offset < 0 || offset + len > PAGE) return GNTST_bad_copy_arg;
    this.sideBytes = g.page;
    return offset;
  }

  readonly evtchn = {
    allocUnbound: (): number => this.nextPort++,
    bindInterdomain: (domid: number, remote: number): number => {
      if (domid !== this.frontDomid || remote <= 0) return -22;
      const port = this.nextPort++;
      this.bound.set(port, { domid, remote });
      return port;
    },
    send: (port: number): number => {
      if (!this.bound.has(port)) return -22;
      this.sent.push(port);
      return 0;
    },
    close: (port: number): number => (this.bound.delete(port) ? 0 : -22),
    onEvent: (port: number, handler: ((port: number) => void) | undefined): void => {
      if (handler === undefined) this.handlers.delete(port);
      else this.handlers.set(port, handler);
    },
  };

  /** The frontend notified its end of `port` (dom0's local port): delivered at the next dispatch. */
  notify(localPort: number): void {
    this.pending.add(localPort);
  }

  dispatch(): void {
    const ports = [...this.pending];
    this.pending.clear();
    for (const p of ports) this.handlers.get(p)?.(p);
  }
}

/** The frontend of a blkif ring in the fake host: a ring page (grant `ringRef`) and data pages. */
export class FakeBlkfront {
  readonly ring: Uint8Array;
  readonly view: DataView;
  readonly front: front_ring;
  constructor(
    readonly host: FakeHost,
    readonly ringRef = 100,
    readonly pages = 1,
  ) {
    this.ring = new Uint8Array(PAGE * pages);
    this.view = new DataView(this.ring.buffer);
    SHARED_RING_INIT(this.view, 0);
    this.front = FRONT_RING_INIT(this.view, 0, PAGE * pages, blkif_sring_entry);
    for (let i = 0; i < pages; i++) host.grant(ringRef + i, { page: this.ring.subarray(i * PAGE, (i + 1) * PAGE) });
  }

  get ringRefs(): number[] {
    return Array.from({ length: this.pages }, (_, i) => this.ringRef + i);
  }

  /** The slot's offset (a slot may straddle ring pages; the ring buffer is contiguous here). */
  slot(idx = this.front.req_prod_pvt): number {
    return RING_GET_REQUEST(this.front, idx);
  }

  rw(operation: number, id: number, sector: number, seg: blkif_request_segment_t[], nr_segments = seg.length): number {
    const at = this.slot();
    write_blkif_request(this.view, at, { operation, nr_segments, handle: 0, id_lo: id >>> 0, id_hi: 0, sector_number: sector, seg });
    this.front.req_prod_pvt = (this.front.req_prod_pvt + 1) >>> 0;
    return at;
  }

  indirect(indirect_op: number, id: number, sector: number, nr_segments: number, grefs: number[]): number {
    const at = this.slot();
    write_blkif_request_indirect(this.view, at, { operation: BLKIF_OP_INDIRECT, indirect_op, nr_segments, id_lo: id, id_hi: 0, sector_number: sector, handle: 0, indirect_grefs: grefs });
    this.front.req_prod_pvt = (this.front.req_prod_pvt + 1) >>> 0;
    return at;
  }

  discard(id: number, sector: number, nr_sectors: number): void {
    write_blkif_request_discard(this.view, this.slot(), { operation: 5, flag: 0, handle: 0, id_lo: id, id_hi: 0, sector_number: sector, nr_sectors });
    this.front.req_prod_pvt = (this.front.req_prod_pvt + 1) >>> 0;
  }

  /** Publish; true if the backend asked to be notified. */
  push(): boolean {
    return RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(this.front);
  }

  /** All responses produced since the last call. */
  responses(): blkif_response_t[] {
    const out: blkif_response_t[] = [];
    const rp = sring_rsp_prod(this.front);
    while (this.front.rsp_cons !== rp) {
      out.push(read_blkif_response(this.view, RING_GET_RESPONSE(this.front, this.front.rsp_cons)));
      this.front.rsp_cons = (this.front.rsp_cons + 1) >>> 0;
    }
    this.view.setUint32(12, this.front.rsp_cons + 1, true); // rsp_event: notify me on the next
    return out;
  }
}
