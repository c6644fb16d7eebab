/**
 * io/ring.h's front ring over GuestOps (the macros of xen-public's ring.ts work on a DataView;
 * a native kernel's ring page is reached through loads and stores): the shared header (req_prod,
 * req_event, rsp_prod, rsp_event), the private req_prod_pvt and rsp_cons, pushing requests with
 * the event-index notify rule, and consuming responses with the final check. The ring is the
 * backend's to write too: a rsp_prod further from rsp_cons than the ring holds makes it
 * `broken` instead of being followed.
 */
import { CONST_RING_SIZE } from "@vtlab/xen-public";
import type { GuestMemory } from "./mem.js";
import { PAGE_SIZE } from "./mem.js";

const REQ_PROD = 0;
const REQ_EVENT = 4;
const RSP_PROD = 8;
const RSP_EVENT = 12;
const RING_HEADER = 64;

export class FrontRing {
  reqProdPvt = 0;
  rspCons = 0;
  readonly size: number;
  broken: string | undefined = undefined;

  constructor(
    private readonly mem: GuestMemory,
    readonly page: number,
    readonly entrySize: number,
  ) {
    this.size = CONST_RING_SIZE({ ring: RING_HEADER }, { SIZEOF: entrySize }, PAGE_SIZE);
  }

  /** SHARED_RING_INIT and FRONT_RING_INIT: producers 0, events 1, the page's entries zeroed. */
  init(): void {
    this.mem.zero(this.page, PAGE_SIZE);
    this.mem.write32(this.page + REQ_EVENT, 1);
    this.mem.write32(this.page + RSP_EVENT, 1);
    this.reqProdPvt = 0;
    this.rspCons = 0;
  }

  /** The address of request slot `idx`. */
  slot(idx: number): number {
    return this.page + RING_HEADER + (idx & (this.size - 1)) * this.entrySize;
  }

  /** RING_FREE_REQUESTS. */
  get freeRequests(): number {
    return this.size - ((this.reqProdPvt - this.rspCons) >>> 0);
  }

  /** RING_PUSH_REQUESTS_AND_CHECK_NOTIFY: true when the backend must be notified. */
  pushRequests(): boolean {
    const old = this.mem.read32(this.page + REQ_PROD);
    const next = this.reqProdPvt >>> 0;
    // wmb(): the requests before the index.
    this.mem.write32(this.page + REQ_PROD, next);
    // mb(): then the backend's event index.
    const event = this.mem.read32(this.page + REQ_EVENT);
    return ((next - event) >>> 0) < ((next - old) >>> 0);
  }

  /** The responses produced and not consumed: [from, to) indices, or undefined when the ring is corrupt. */
  unconsumed(): [number, number] | undefined {
    const prod = this.mem.read32(this.page + RSP_PROD);
    if (((prod - this.rspCons) >>> 0) > ((this.reqProdPvt - this.rspCons) >>> 0)) {
      this.broken = `rsp_prod 0x${prod.toString(16)} is past the requests made (rsp_cons 0x${this.rspCons.toString(16)}, req_prod 0x${this.reqProdPvt.toString(16)})`;
      return undefined;
    }
    return [this.rspCons, prod];
  }

  /** RING_FINAL_CHECK_FOR_RESPONSES: ask for an event at the next response; true when more arrived meanwhile. */
  finalCheck(): boolean {
    this.mem.write32(this.page + RSP_EVENT, (this.rspCons + 1) >>> 0);
    return this.mem.read32(this.page + RSP_PROD) !== this.rspCons;
  }
}
