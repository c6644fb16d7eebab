/*
 * blkfront: a virtual block device over a blkif ring (xen/io/blkif.h), negotiated through
 * xenstore as Linux's xen-blkfront does (talk_to_blkback, blkfront_connect):
 *
 *   backend InitWait -> frontend grants the ring page, allocates an event channel to the
 *   backend domain, writes ring-ref, event-channel, protocol, then Initialised -> backend
 *   Connected (sectors, info, sector-size, feature-flush-cache) -> frontend Connected.
 *
 * Data pages are granted once at connect time and reused by every request (the effect of
 * Linux's persistent grants, without feature-persistent: the backend maps or copies them per
 * request as it likes). One request carries up to BLKIF_MAX_SEGMENTS_PER_REQUEST whole pages;
 * a batch of up to BLKFRONT_MAX_BATCH_PAGES pages is pushed with one notification (when the
 * backend's req_event asks for one) and waited for with SCHEDOP_poll. No indirect descriptors.
 */
#include "xen.h"
#include <xen/io/blkif.h>
#include <xen/io/protocols.h>

#define BLK_SECTOR 512u
#define SECTORS_PER_PAGE (XEN_PAGE / BLK_SECTOR)
#define BLK_TIMEOUT_NS 5000000000ull

static blkif_sring_t *sring;
static uint8_t ring_page[4096] __attribute__((aligned(4096)));
static blkif_front_ring_t ring;
static evtchn_port_t port;
static struct blkfront_info *inf;
static char fe_dir[64], be_dir[128];
static blkif_vdev_t vdev;
static grant_ref_t ring_ref;

/* The data pages are those of the caller's buffer: granted the first time they are seen. */
static uint64_t granted_pfn[BLKFRONT_MAX_BATCH_PAGES];
static int granted_ref[BLKFRONT_MAX_BATCH_PAGES];
static unsigned granted;

static int ref_of(uint64_t pfn) {
    for (unsigned i = 0; i < granted; i++)
        if (granted_pfn[i] == pfn)
            return granted_ref[i];
    if (granted == BLKFRONT_MAX_BATCH_PAGES)
        return -1;
    int ref = gnt_grant(inf->backend_id, pfn, 0);
    if (ref < 0)
        return -1;
    granted_pfn[granted] = pfn;
    granted_ref[granted++] = ref;
    return ref;
}

int blkfront_init(const char *vdev_dir, struct blkfront_info *info) {
    char path[192];
    uint64_t v;
    inf = info;
    memset(info, 0, sizeof *info);
    snprintf(fe_dir, sizeof fe_dir, "%s", vdev_dir);
    const char *id = strlen(vdev_dir) > 0 ? vdev_dir + strlen(vdev_dir) : vdev_dir;
    while (id > vdev_dir && id[-1] != '/')
        id--;
    uint64_t num = 0;
    for (const char *p = id; *p >= '0' && *p <= '9'; p++)
        num = num * 10 + (uint64_t)(*p - '0');
    vdev = (blkif_vdev_t)num;
    snprintf(path, sizeof path, "%s/backend", fe_dir);
    if (xs_read(path, be_dir, sizeof be_dir) <= 0) {
        printf("blkfront: %s has no backend\n", fe_dir);
        return -1;
    }
    snprintf(path, sizeof path, "%s/backend-id", fe_dir);
    if (xs_read_uint(path, &v) < 0 || v >= DOMID_FIRST_RESERVED) {
        printf("blkfront: %s has no backend-id\n", fe_dir);
        return -1;
    }
    info->backend_id = (domid_t)v;
    int st = xenbus_wait_state(be_dir, XenbusStateInitWait, XenbusStateConnected, BLK_TIMEOUT_NS);
    if (st < 0) {
        printf("blkfront: backend %s never reached InitWait (state %s)\n", be_dir, xenbus_state_name(xenbus_read_state(be_dir)));
        return -1;
    }

    sring = (blkif_sring_t *)ring_page;
    SHARED_RING_INIT(sring);
    FRONT_RING_INIT(&ring, sring, XEN_PAGE);
    int ref = gnt_grant(info->backend_id, (uintptr_t)ring_page >> 12, 0);
    ring_ref = (grant_ref_t)ref;
    if (ref < 0 || xen_alloc_unbound(info->backend_id, &port) != 0) {
        printf("blkfront: no grant or event channel for the ring\n");
        return -1;
    }
    /* The keys in one transaction, retried when it conflicts (talk_to_blkback). */
    int rc = -XEN_EAGAIN;
    for (int tries = 0; rc == -XEN_EAGAIN && tries < 16; tries++) {
        if ((rc = xs_transaction_start()))
            break;
        if ((rc = xs_printf(fe_dir, "ring-ref", "%d", ref)) || (rc = xs_printf(fe_dir, "event-channel", "%u", port)) ||
            (rc = xs_printf(fe_dir, "protocol", "%s", XEN_IO_PROTO_ABI_NATIVE))) {
            xs_transaction_end(0);
            break;
        }
        rc = xs_transaction_end(1);
    }
    if (rc || xenbus_switch_state(fe_dir, XenbusStateInitialised)) {
        printf("blkfront: writing %s failed (%d)\n", fe_dir, rc);
        return -1;
    }
    st = xenbus_wait_state(be_dir, XenbusStateConnected, XenbusStateConnected, BLK_TIMEOUT_NS);
    if (st != XenbusStateConnected) {
        printf("blkfront: backend %s did not connect (state %s)\n", be_dir, xenbus_state_name(xenbus_read_state(be_dir)));
        return -1;
    }
    snprintf(path, sizeof path, "%s/sectors", be_dir);
    if (xs_read_uint(path, &info->sectors) < 0) {
        printf("blkfront: backend has no sectors\n");
        return -1;
    }
    snprintf(path, sizeof path, "%s/sector-size", be_dir);
    info->sector_size = xs_read_uint(path, &v) == 0 ? (unsigned)v : BLK_SECTOR;
    snprintf(path, sizeof path, "%s/feature-flush-cache", be_dir);
    info->flush = xs_read_uint(path, &v) == 0 && v == 1;
    if (info->sector_size != BLK_SECTOR) {
        printf("blkfront: sector size %u is not 512\n", info->sector_size);
        return -1;
    }
    if (xenbus_switch_state(fe_dir, XenbusStateConnected))
        return -1;
    return 0;
}

/* Pushes what was queued, notifying if the backend asked for it, and waits for `want` responses. */
static int submit_and_wait(unsigned want) {
    int notify;
    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&ring, notify);
    if (notify)
        xen_notify(port);
    inf->batches++;
    unsigned got = 0;
    int bad = 0;
    uint64_t deadline = xen_now_ns() + BLK_TIMEOUT_NS;
    while (got < want) {
        int more;
        RING_FINAL_CHECK_FOR_RESPONSES(&ring, more);
        if (!more) {
            if (xen_now_ns() >= deadline) {
                printf("blkfront: %u of %u responses after the timeout\n", got, want);
                return -1;
            }
            xen_poll(port, 10000000ull);
            xen_take_event(port);
            continue;
        }
        /* Responses are checked, not trusted: no more than the ring holds (Linux's "illegal
           number of responses"), and each id one we issued. */
        if (ring.sring->rsp_prod - ring.rsp_cons > RING_SIZE(&ring)) {
            printf("blkfront: illegal number of responses (rsp_prod %u, rsp_cons %u)\n", ring.sring->rsp_prod, ring.rsp_cons);
            return -1;
        }
        while (RING_HAS_UNCONSUMED_RESPONSES(&ring)) {
            blkif_response_t rsp = *RING_GET_RESPONSE(&ring, ring.rsp_cons);
            ring.rsp_cons++;
            inf->responses++;
            if (rsp.id >= want || rsp.status != BLKIF_RSP_OKAY) {
                if (bad++ < 4)
                    printf("blkfront: response id %llu op %u status %d\n", (unsigned long long)rsp.id, rsp.operation, rsp.status);
            }
            got++;
        }
    }
    xen_take_event(port);
    return bad ? -1 : 0;
}

int blkfront_rw(int write, uint64_t sector, uint32_t count, void *buf) {
    uint32_t pages = count / SECTORS_PER_PAGE;
    if (count % SECTORS_PER_PAGE || pages == 0 || pages > BLKFRONT_MAX_BATCH_PAGES || ((uintptr_t)buf & (XEN_PAGE - 1)) ||
        sector + count > inf->sectors)
        return -1;
    unsigned nreq = 0;
    for (uint32_t pg = 0; pg < pages; nreq++) {
        if (RING_FULL(&ring))
            return -1;   /* a batch always fits: 64 pages are 6 of the ring's 32 slots */
        blkif_request_t *req = RING_GET_REQUEST(&ring, ring.req_prod_pvt);
        unsigned nseg = pages - pg < BLKIF_MAX_SEGMENTS_PER_REQUEST ? pages - pg : BLKIF_MAX_SEGMENTS_PER_REQUEST;
        req->operation = write ? BLKIF_OP_WRITE : BLKIF_OP_READ;
        req->nr_segments = (uint8_t)nseg;
        req->handle = vdev;
        req->id = nreq;
        req->sector_number = sector + (uint64_t)pg * SECTORS_PER_PAGE;
        for (unsigned s = 0; s < nseg; s++) {
            int ref = ref_of(((uintptr_t)buf >> 12) + pg + s);
            if (ref < 0)
                return -1;
            req->seg[s].gref = (grant_ref_t)ref;
            req->seg[s].first_sect = 0;
            req->seg[s].last_sect = SECTORS_PER_PAGE - 1;
        }
        ring.req_prod_pvt++;
        inf->requests++;
        inf->segments += nseg;
        pg += nseg;
    }
    return submit_and_wait(nreq);
}

/*
 * Disconnect as Linux's blkfront_closing / blkback_changed do: Closing, wait for the backend to
 * close (it unmaps the ring and any persistent grants), Closed; then end foreign access to the
 * ring and data pages. Returns the grants ended, or -1 when the backend did not close.
 */
int blkfront_close(void) {
    if (xenbus_switch_state(fe_dir, XenbusStateClosing))
        return -1;
    if (xenbus_wait_state(be_dir, XenbusStateClosing, XenbusStateClosed, BLK_TIMEOUT_NS) < 0)
        return -1;
    if (xenbus_switch_state(fe_dir, XenbusStateClosed))
        return -1;
    if (xenbus_wait_state(be_dir, XenbusStateClosed, XenbusStateClosed, BLK_TIMEOUT_NS) < 0)
        return -1;
    int ended = gnt_end(ring_ref) == 0;
    for (unsigned i = 0; i < granted; i++)
        ended += gnt_end((grant_ref_t)granted_ref[i]) == 0;
    return ended;
}

int blkfront_flush(void) {
    if (!inf->flush)
        return 0;
    blkif_request_t *req = RING_GET_REQUEST(&ring, ring.req_prod_pvt);
    memset(req, 0, sizeof *req);
    req->operation = BLKIF_OP_FLUSH_DISKCACHE;
    req->nr_segments = 0;
    req->handle = vdev;
    req->id = 0;
    ring.req_prod_pvt++;
    inf->requests++;
    return submit_and_wait(1);
}
