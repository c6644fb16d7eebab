/**
 * The blkif shared ring as dom0 sees it: one page (`ring-ref`) or 2^order pages (`ring-ref0` ..
 * `ring-ref<N-1>`, `ring-page-order`) granted by the frontend and mapped by the backend, read as
 * one virtually contiguous area the way Linux's xenbus_map_ring_valloc presents it. A slot may
 * straddle two pages; reads and writes are split at page boundaries.
 *
 * Every read through the mapping is a copy (BackendGrantMapping.read), so a slot read once is the
 * backend's private copy (RING_COPY_REQUEST): what the frontend writes afterwards is not seen.
 */
import type { BackendGrantMapping } from "../host.js";

const PAGE = 4096;

export class RingArea {
  /** False once a page read or write failed (a mapping gone): the ring is dead. */
  ok = true;
  constructor(readonly pages: readonly BackendGrantMapping[]) {}

  get bytes(): number {
    return this.pages.length * PAGE;
  }

  /** `len` bytes at `offset` into `into` at `at`; false (and `ok` cleared) if a page is gone. */
  read(offset: number, len: number, into: Uint8Array, at = 0): boolean {
    let done = 0;
    while (done < len) {
      const o = offset + done;
      const page = this.pages[(o / PAGE) | 0];
      const inPage = o % PAGE;
      const n = Math.min(len - done, PAGE - inPage);
      if (page?.readInto !== undefined) {
        if (!page.readInto(inPage, into.subarray(at + done, at + done + n))) {
          this.ok = false;
          return false;
        }
        done += n;
        continue;
      }
      const bytes = page?.read(inPage, n);
      if (bytes === undefined) {
        this.ok = false;
        return false;
      }
      into.set(bytes, at + done);
      done += n;
    }
    return true;
  }

  /** `from` at `offset`; false (and `ok` cleared) if a page is gone. */
  write(offset: number, from: Uint8Array): boolean {
    let done = 0;
    while (done < from.length) {
      const o = offset + done;
      const page = this.pages[(o / PAGE) | 0];
      const inPage = o % PAGE;
      const n = Math.min(from.length - done, PAGE - inPage);
      if (page === undefined || !page.write(inPage, done === 0 && n === from.length ? from : from.subarray(done, done + n))) {
        this.ok = false;
        return false;
      }
      done += n;
    }
    return true;
  }

  /**
   * The four header words (req_prod, req_event, rsp_prod, rsp_event) as the DataView subset that
   * @vtlab/xen-public's ring functions use on `back_ring.sring` (getUint32/setUint32 at offsets
   * 0..15). Each access is one read or write through the mapping: a producer index is fetched
   * when a ring function asks for it, never cached.
   */
  headerView(): DataView {
    const page0 = this.pages[0];
    const lost = () => {
      this.ok = false;
    };
    const word = new Uint8Array(4);
    const view = {
      getUint32(offset: number): number {
        const b = page0?.read(offset, 4);
        if (b === undefined) {
          lost();
          return 0;
        }
        return ((b[0] ?? 0) | ((b[1] ?? 0) << 8) | ((b[2] ?? 0) << 16) | ((b[3] ?? 0) << 24)) >>> 0;
      },
      setUint32(offset: number, value: number): void {
        word[0] = value & 0xff;
        word[1] = (value >>> 8) & 0xff;
        word[2] = (value >>> 16) & 0xff;
        word[3] = (value >>> 24) & 0xff;
        if (page0?.write(offset, word) !== true) lost();
      },
    };
    // Only the two methods above are called on a back_ring's sring (ring.ts: sring_* helpers);
    // the backend copies slots itself through `read`.
    return view as unknown as DataView;
  }
}
