// A blkfront and a blkback sharing one page: run with `npx tsx examples/blkif-ring.ts`.
import {
  BACK_RING_INIT,
  BLKIF_OP_READ,
  BLKIF_RSP_OKAY,
  RING_COPY_REQUEST,
  RING_FINAL_CHECK_FOR_REQUESTS,
  RING_GET_REQUEST,
  RING_GET_RESPONSE,
  RING_PUSH_REQUESTS_AND_CHECK_NOTIFY,
  RING_PUSH_RESPONSES_AND_CHECK_NOTIFY,
  RING_REQUEST_CONS_OVERFLOW,
  RING_REQUEST_PROD_OVERFLOW,
  XEN_FRONT_RING_INIT,
  blkif_sring_entry,
  read_blkif_request,
  read_blkif_response,
  sring_req_prod,
  sring_rsp_prod,
  write_blkif_request,
  write_blkif_response,
} from "@vtlab/xen-public";

const page = new DataView(new ArrayBuffer(4096)); // the granted page
const front = XEN_FRONT_RING_INIT(page, 0, 4096, blkif_sring_entry);
const back = BACK_RING_INIT(page, 0, 4096, blkif_sring_entry);
console.log("slots:", front.nr_ents); // 32

// The backend has nothing to do and arms req_event before it sleeps.
console.log("backend work before sleeping:", RING_FINAL_CHECK_FOR_REQUESTS(back)); // 0

// blkfront: one read of sector 2048 into the page granted as reference 8.
write_blkif_request(page, RING_GET_REQUEST(front, front.req_prod_pvt), {
  operation: BLKIF_OP_READ, nr_segments: 1, handle: 0, id_lo: 42, id_hi: 0, sector_number: 2048,
  seg: [{ gref: 8, first_sect: 0, last_sect: 7 }],
});
front.req_prod_pvt++;
console.log("notify the backend:", RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(front)); // true

// blkback: read req_prod once, check it, copy each slot before decoding it.
const rp = sring_req_prod(back);
if (RING_REQUEST_PROD_OVERFLOW(back, rp)) throw new Error("hostile frontend");
while (back.req_cons !== rp && !RING_REQUEST_CONS_OVERFLOW(back, back.req_cons)) {
  const req = read_blkif_request(RING_COPY_REQUEST(back, back.req_cons), 0);
  back.req_cons = (back.req_cons + 1) >>> 0;
  console.log("request:", req.operation, "sector", req.sector_number, "gref", req.seg[0]?.gref);
  write_blkif_response(page, RING_GET_RESPONSE(back, back.rsp_prod_pvt), {
    id_lo: req.id_lo, id_hi: req.id_hi, operation: req.operation, status: BLKIF_RSP_OKAY,
  });
  back.rsp_prod_pvt = (back.rsp_prod_pvt + 1) >>> 0;
}
console.log("notify the frontend:", RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(back)); // true (rsp_event was 1)

const rsp = read_blkif_response(page, RING_GET_RESPONSE(front, front.rsp_cons));
console.log("response:", rsp.id_lo, rsp.status, "pending:", sring_rsp_prod(front) - front.rsp_cons); // 42 0 pending: 1
