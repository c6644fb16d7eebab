/*
 * netfront: a virtual NIC over netif TX and RX rings (xen/io/netif.h), negotiated through
 * xenstore as Linux's xen-netfront does (talk_to_netback, xennet_connect): when the backend is
 * in InitWait the frontend grants both ring pages, allocates one event channel for both rings
 * (no feature-split-event-channels), writes tx-ring-ref, rx-ring-ref, event-channel,
 * request-rx-copy (the backend copies into our RX pages: the only mode Linux supports),
 * feature-rx-notify, then Connected; it fills the RX ring with granted, writable pages.
 *
 * Simpler than Linux: one slot per frame (no feature-sg, no GSO, frames up to one page), TX
 * pages granted once and reused, RX buffers reposted with the same id and grant after their
 * frame is copied out, checksums never offloaded (feature-no-csum-offload).
 */
#include "xen.h"
#include <xen/io/netif.h>

#define NET_TIMEOUT_NS 5000000000ull
#define NET_TX_SLOTS 16
#define NET_RX_SLOTS 64

static netif_tx_sring_t *txs;
static netif_rx_sring_t *rxs;
static uint8_t tx_ring_page[4096] __attribute__((aligned(4096)));
static uint8_t rx_ring_page[4096] __attribute__((aligned(4096)));
static netif_tx_front_ring_t tx;
static netif_rx_front_ring_t rx;
static uint8_t tx_pages[NET_TX_SLOTS][4096] __attribute__((aligned(4096)));
static uint8_t rx_pages[NET_RX_SLOTS][4096] __attribute__((aligned(4096)));
static int tx_ref[NET_TX_SLOTS], rx_ref[NET_RX_SLOTS];
static uint8_t tx_busy[NET_TX_SLOTS];
static evtchn_port_t port;
static struct netfront_info *inf;
static char fe_dir[64], be_dir[128];

static void rx_post(uint16_t id) {
    netif_rx_request_t *req = RING_GET_REQUEST(&rx, rx.req_prod_pvt);
    req->id = id;
    req->gref = (grant_ref_t)rx_ref[id];
    rx.req_prod_pvt++;
}

static void rx_push(void) {
    int notify;
    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&rx, notify);
    if (notify)
        xen_notify(port);
}

static int parse_mac(const char *s, uint8_t mac[6]) {
    for (int i = 0; i < 6; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = *s++;
            unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                       : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16u;
            if (d == 16)
                return -1;
            v = v * 16 + d;
        }
        mac[i] = (uint8_t)v;
        if (i < 5 && *s++ != ':')
            return -1;
    }
    return *s == 0 ? 0 : -1;
}

int netfront_init(const char *vif_dir, struct netfront_info *info) {
    char path[192], mac[32];
    uint64_t v;
    inf = info;
    memset(info, 0, sizeof *info);
    snprintf(fe_dir, sizeof fe_dir, "%s", vif_dir);
    snprintf(path, sizeof path, "%s/backend", fe_dir);
    if (xs_read(path, be_dir, sizeof be_dir) <= 0) {
        printf("netfront: %s has no backend\n", fe_dir);
        return -1;
    }
    snprintf(path, sizeof path, "%s/backend-id", fe_dir);
    if (xs_read_uint(path, &v) < 0 || v >= DOMID_FIRST_RESERVED) {
        printf("netfront: %s has no backend-id\n", fe_dir);
        return -1;
    }
    info->backend_id = (domid_t)v;
    snprintf(path, sizeof path, "%s/mac", fe_dir);
    if (xs_read(path, mac, sizeof mac) <= 0 || parse_mac(mac, info->mac)) {
        printf("netfront: %s has no valid mac\n", fe_dir);
        return -1;
    }
    int st = xenbus_wait_state(be_dir, XenbusStateInitWait, XenbusStateConnected, NET_TIMEOUT_NS);
    if (st < 0) {
        printf("netfront: backend %s never reached InitWait (state %s)\n", be_dir, xenbus_state_name(xenbus_read_state(be_dir)));
        return -1;
    }
    txs = (netif_tx_sring_t *)tx_ring_page;
    rxs = (netif_rx_sring_t *)rx_ring_page;
    SHARED_RING_INIT(txs);
    SHARED_RING_INIT(rxs);
    FRONT_RING_INIT(&tx, txs, XEN_PAGE);
    FRONT_RING_INIT(&rx, rxs, XEN_PAGE);
    domid_t be = info->backend_id;
    int txr = gnt_grant(be, (uintptr_t)tx_ring_page >> 12, 0);
    int rxr = gnt_grant(be, (uintptr_t)rx_ring_page >> 12, 0);
    for (unsigned i = 0; i < NET_TX_SLOTS; i++)
        tx_ref[i] = gnt_grant(be, (uintptr_t)tx_pages[i] >> 12, 1);
    for (unsigned i = 0; i < NET_RX_SLOTS; i++)
        rx_ref[i] = gnt_grant(be, (uintptr_t)rx_pages[i] >> 12, 0);
    if (txr < 0 || rxr < 0 || tx_ref[NET_TX_SLOTS - 1] < 0 || rx_ref[NET_RX_SLOTS - 1] < 0 || xen_alloc_unbound(be, &port) != 0) {
        printf("netfront: out of grants or event channels\n");
        return -1;
    }
    /* The keys in one transaction, retried when it conflicts (talk_to_netback). */
    int rc = -XEN_EAGAIN;
    for (int tries = 0; rc == -XEN_EAGAIN && tries < 16; tries++) {
        if ((rc = xs_transaction_start()))
            break;
        if ((rc = xs_printf(fe_dir, "tx-ring-ref", "%d", txr)) || (rc = xs_printf(fe_dir, "rx-ring-ref", "%d", rxr)) ||
            (rc = xs_printf(fe_dir, "event-channel", "%u", port)) || (rc = xs_printf(fe_dir, "request-rx-copy", "1")) ||
            (rc = xs_printf(fe_dir, "feature-rx-notify", "1")) || (rc = xs_printf(fe_dir, "feature-sg", "0")) ||
            (rc = xs_printf(fe_dir, "feature-no-csum-offload", "1"))) {
            xs_transaction_end(0);
            break;
        }
        rc = xs_transaction_end(1);
    }
    if (rc || xenbus_switch_state(fe_dir, XenbusStateConnected)) {
        printf("netfront: writing %s failed (%d)\n", fe_dir, rc);
        return -1;
    }
    for (uint16_t i = 0; i < NET_RX_SLOTS; i++)
        rx_post(i);
    rx_push();
    st = xenbus_wait_state(be_dir, XenbusStateConnected, XenbusStateConnected, NET_TIMEOUT_NS);
    if (st != XenbusStateConnected) {
        printf("netfront: backend %s did not connect (state %s)\n", be_dir, xenbus_state_name(xenbus_read_state(be_dir)));
        return -1;
    }
    return 0;
}

/* Takes TX responses: their slots are free again. */
static int broken;   /* the backend published more responses than the ring holds */

static void tx_reap(void) {
    int more;
    if (broken || tx.sring->rsp_prod - tx.rsp_cons > RING_SIZE(&tx)) {
        broken = 1;
        return;
    }
    do {
        while (RING_HAS_UNCONSUMED_RESPONSES(&tx)) {
            netif_tx_response_t rsp = *RING_GET_RESPONSE(&tx, tx.rsp_cons);
            tx.rsp_cons++;
            if (rsp.status == NETIF_RSP_NULL)
                continue;   /* a slot of an extra-info request: not ours */
            if (rsp.id < NET_TX_SLOTS)
                tx_busy[rsp.id] = 0;
            if (rsp.status != NETIF_RSP_OKAY)
                inf->rx_errors++;
        }
        RING_FINAL_CHECK_FOR_RESPONSES(&tx, more);
    } while (more);
}

int netfront_send(const void *frame, size_t len) {
    if (len < 14 || len > XEN_PAGE || broken)
        return -1;
    uint64_t deadline = xen_now_ns() + NET_TIMEOUT_NS;
    for (;;) {
        tx_reap();
        for (uint16_t id = 0; id < NET_TX_SLOTS; id++) {
            if (tx_busy[id] || RING_FULL(&tx))
                continue;
            memcpy(tx_pages[id], frame, len);
            netif_tx_request_t *req = RING_GET_REQUEST(&tx, tx.req_prod_pvt);
            req->gref = (grant_ref_t)tx_ref[id];
            req->offset = 0;
            req->flags = 0;   /* NETTXF_*: no csum_blank, no more_data, no extra_info */
            req->id = id;
            req->size = (uint16_t)len;
            tx.req_prod_pvt++;
            tx_busy[id] = 1;
            int notify;
            RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&tx, notify);
            if (notify)
                xen_notify(port);
            inf->tx_packets++;
            inf->tx_bytes += len;
            return 0;
        }
        if (xen_now_ns() >= deadline)
            return -1;
        xen_poll(port, 10000000ull);
        xen_take_event(port);
    }
}

int netfront_recv(void *buf, size_t size) {
    tx_reap();
    for (;;) {
        int more;
        RING_FINAL_CHECK_FOR_RESPONSES(&rx, more);
        if (!more)
            return 0;
        /* Linux's xennet_poll: a producer past the ring is a backend bug; stop using it. */
        if (broken || rx.sring->rsp_prod - rx.rsp_cons > RING_SIZE(&rx)) {
            broken = 1;
            return -1;
        }
        netif_rx_response_t rsp = *RING_GET_RESPONSE(&rx, rx.rsp_cons);
        rx.rsp_cons++;
        /* The response is checked before it is used: id, offset and length within a page. */
        if (rsp.id >= NET_RX_SLOTS) {
            inf->rx_errors++;
            continue;
        }
        int n = rsp.status;
        int ok = n > 0 && rsp.offset < XEN_PAGE && (size_t)n <= XEN_PAGE - rsp.offset && (size_t)n <= size &&
                 !(rsp.flags & (NETRXF_more_data | NETRXF_extra_info));
        if (ok)
            memcpy(buf, rx_pages[rsp.id] + rsp.offset, (size_t)n);
        rx_post(rsp.id);
        rx_push();
        if (!ok) {
            inf->rx_errors++;
            continue;
        }
        inf->rx_packets++;
        inf->rx_bytes += (uint64_t)n;
        return n;
    }
}

void netfront_wait(uint64_t timeout_ns) {
    if (RING_HAS_UNCONSUMED_RESPONSES(&rx))
        return;
    xen_poll(port, timeout_ns);
    xen_take_event(port);
}
