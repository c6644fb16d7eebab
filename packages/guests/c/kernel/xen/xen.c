/*
 * Xen PV-on-HVM core of the reference kernel: the platform PCI device, Xen's CPUID leaves, the
 * hypercall page, shared_info, event channels, the v1 grant table and the xenstore client with
 * the xenbus frontend state machine. The order is Linux's (xen_hvm_guest_init, platform-pci
 * probe, gnttab_init, xenbus_probe_initcall); the ABI is Xen's public headers.
 *
 * Events come through the callback vector (HVM_PARAM_CALLBACK_IRQ, type vector, Linux's
 * HYPERVISOR_CALLBACK_VECTOR 0xf3) whose handler scans the 2-level bitmaps as events_2l.c does
 * and marks each port it saw; the drivers' ports are unmasked when bound. The kernel runs its
 * I/O with interrupts off (as the ATA PIO driver does): a driver that waits blocks in
 * SCHEDOP_poll on its port (Xen wakes a poller when the port becomes pending) and then opens an
 * interrupt window (STI; NOP; CLI) in which the upcall is taken. `xenpoll=1` on the command line
 * keeps every port masked and never sets the callback: SCHEDOP_poll and the pending bits only.
 *
 * Simpler than Linux, on purpose:
 *  - one grant-table frame (512 v1 entries) and references handed out once, never recycled
 *    (the drivers grant their rings and buffers at connect time and keep them);
 *  - xenstore requests are synchronous (one outstanding at a time), at most one transaction
 *    open at a time; watch events that arrive meanwhile are only counted (a waiter re-reads
 *    the node).
 */
#include "xen.h"

struct xen_counters xen_count;
domid_t xen_domid;

extern uint8_t hypercall_page[4096];

/* ---------------------------------------------------------------- low level */

static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint64_t rdtsc(void) { uint32_t lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((uint64_t)hi << 32) | lo; }
static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d) {
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

/* Xen's 64-bit HVM convention: stub nr at hypercall_page + 32 * nr, RDI RSI RDX R10 R8. */
#define HYPERCALL3(nr, a1, a2, a3) ({                                                          \
    register unsigned long _a1 __asm__("rdi") = (unsigned long)(a1);                           \
    register unsigned long _a2 __asm__("rsi") = (unsigned long)(a2);                           \
    register unsigned long _a3 __asm__("rdx") = (unsigned long)(a3);                           \
    long _res;                                                                                 \
    xen_count.hypercalls++;                                                                    \
    __asm__ volatile("call hypercall_page + %c[off]"                                           \
                     : "=a"(_res), "+r"(_a1), "+r"(_a2), "+r"(_a3)                             \
                     : [off] "i"((nr) * 32)                                                    \
                     : "memory", "rcx", "r8", "r9", "r10", "r11");                             \
    _res;                                                                                      \
})

static long memory_op(int cmd, void *arg) { return HYPERCALL3(__HYPERVISOR_memory_op, cmd, arg, 0); }
static long hvm_op(int cmd, void *arg) { return HYPERCALL3(__HYPERVISOR_hvm_op, cmd, arg, 0); }
static long event_channel_op(int cmd, void *arg) { return HYPERCALL3(__HYPERVISOR_event_channel_op, cmd, arg, 0); }
static long sched_op(int cmd, void *arg) { return HYPERCALL3(__HYPERVISOR_sched_op, cmd, arg, 0); }

/* ---------------------------------------------------------------- platform PCI device */

#define XEN_PLATFORM_VENDOR 0x5853
#define XEN_PLATFORM_DEVICE 0x0001
#define XEN_IOPORT_MAGIC 0x10      /* 16-bit read */
#define XEN_IOPORT_UNPLUG 0x10     /* 16-bit write */
#define XEN_IOPORT_DRVVER 0x10     /* 32-bit write */
#define XEN_IOPORT_PROTOVER 0x12   /* 8-bit read */
#define XEN_IOPORT_PRODNUM 0x12    /* 16-bit write */
#define XEN_IOPORT_MAGIC_VAL 0x49d2
/* xen/hvm/pvdrivers.h: "experimental" (this kernel is none of the listed products). */
#define XEN_PRODUCT_EXPERIMENTAL 0xffff
#define VTLAB_DRIVERS_BUILD 1
/* hvmloader's default for BAR1 when no firmware assigned it (HVM_BELOW_4G_MMIO_START). */
#define PLATFORM_MMIO_DEFAULT 0xf0000000u

static uint32_t pci_read(unsigned dev, unsigned reg) {
    outl(0xcf8, 0x80000000u | (dev << 11) | (reg & 0xfc));
    return inl(0xcfc);
}

static void pci_write(unsigned dev, unsigned reg, uint32_t v) {
    outl(0xcf8, 0x80000000u | (dev << 11) | (reg & 0xfc));
    outl(0xcfc, v);
}

static int unplug_ok;
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static uint64_t platform_mmio;
static uint32_t platform_mmio_size;

static int find_platform_device(void) {
    unsigned dev;
    for (dev = 0; dev < 32; dev++) {
        uint32_t id = pci_read(dev, 0);
        if ((id & 0xffff) == XEN_PLATFORM_VENDOR && (id >> 16) == XEN_PLATFORM_DEVICE)
            break;
    }
    if (dev == 32) {
        printf("xen: no platform PCI device 5853:0001\n");
        return -1;
    }
    uint32_t cmd = pci_read(dev, 4);
    pci_write(dev, 4, cmd & ~3u);
    uint32_t bar1 = pci_read(dev, 0x14);
    pci_write(dev, 0x14, 0xffffffffu);
    uint32_t mask = pci_read(dev, 0x14);
    pci_write(dev, 0x14, bar1);
    if ((bar1 & 1) || mask == 0 || mask == 0xffffffffu) {
        printf("xen: platform BAR1 is not a memory BAR\n");
        return -1;
    }
    platform_mmio_size = ~(mask & ~0xfu) + 1;
    if ((bar1 & ~0xfu) == 0) {
        bar1 = (bar1 & 0xf) | PLATFORM_MMIO_DEFAULT;
        pci_write(dev, 0x14, bar1);
    }
    pci_write(dev, 4, cmd | 3u);
    platform_mmio = bar1 & ~0xfull;
    /* The unplug protocol (docs/misc/hvm-emulated-unplug, Linux's check_platform_magic): the
       magic, the protocol version; at version 1 the drivers announce their product and build,
       and a magic that reads differently afterwards means the host blacklisted them. */
    if (inw(XEN_IOPORT_MAGIC) != XEN_IOPORT_MAGIC_VAL) {
        printf("xen: platform unplug magic missing\n");
        return -1;
    }
    if (inb(XEN_IOPORT_PROTOVER) == 1) {
        outw(XEN_IOPORT_PRODNUM, XEN_PRODUCT_EXPERIMENTAL);
        outl(XEN_IOPORT_DRVVER, VTLAB_DRIVERS_BUILD);
        if (inw(XEN_IOPORT_MAGIC) != XEN_IOPORT_MAGIC_VAL) {
            printf("xen: the host blacklisted these PV drivers\n");
            return -1;
        }
        unplug_ok = 1;
    }
    return 0;
}

/* Takes the emulated devices in `mask` (UNPLUG_* of hvm-emulated-unplug) off the platform, as
 * Linux's xen_unplug_emulated_devices once its PV drivers are in charge. 0, or -1 without the protocol. */
int xen_unplug(uint16_t mask) {
    if (!unplug_ok)
        return -1;
    outw(XEN_IOPORT_UNPLUG, mask);
    return 0;
}

/* ---------------------------------------------------------------- CPUID, hypercall page */

static int detect_xen(void) {
    uint32_t a, b, c, d, base;
    for (base = XEN_CPUID_FIRST_LEAF; base < XEN_CPUID_FIRST_LEAF + 0x10000; base += 0x100) {
        cpuid(base, &a, &b, &c, &d);
        if (b == XEN_CPUID_SIGNATURE_EBX && c == XEN_CPUID_SIGNATURE_ECX && d == XEN_CPUID_SIGNATURE_EDX && a - base >= 2)
            break;
    }
    if (base == XEN_CPUID_FIRST_LEAF + 0x10000) {
        printf("xen: no XenVMMXenVMM CPUID signature\n");
        return -1;
    }
    uint32_t max = a;
    cpuid(base + 2, &a, &b, &c, &d);
    if (a < 1) {
        printf("xen: no hypercall page offered\n");
        return -1;
    }
    wrmsr(b, (uint64_t)(uintptr_t)hypercall_page);
    /* Xen wrote `mov $nr, %eax` at the start of every stub. */
    if (hypercall_page[0] != 0xb8 || hypercall_page[32 * __HYPERVISOR_sched_op + 1] != __HYPERVISOR_sched_op) {
        printf("xen: the hypercall page was not written\n");
        return -1;
    }
    if (max >= base + 4) {
        cpuid(base + 4, &a, &b, &c, &d);
        if (a & XEN_HVM_CPUID_DOMID_PRESENT)
            xen_domid = (domid_t)c;
    }
    return 0;
}

/* ---------------------------------------------------------------- shared_info, PV clock */

static uint8_t shared_info_page[4096] __attribute__((aligned(4096)));
static volatile struct shared_info *shared;
#define EVTCHN_WORDS (sizeof(xen_ulong_t) * 8)

/* System time from vcpu_time_info (the version protocol; shift < 0 is a right shift). */
uint64_t xen_now_ns(void) {
    volatile struct vcpu_time_info *t = &shared->vcpu_info[0].time;
    uint32_t v;
    uint64_t ts, sys, tsc;
    uint32_t mul;
    int8_t shift;
    do {
        v = t->version;
        barrier();
        ts = t->tsc_timestamp;
        sys = t->system_time;
        mul = t->tsc_to_system_mul;
        shift = t->tsc_shift;
        tsc = rdtsc();
        barrier();
    } while ((v & 1) || v != t->version);
    uint64_t delta = tsc - ts;
    if (shift < 0)
        delta >>= -shift;
    else
        delta <<= shift;
    return sys + (uint64_t)(((unsigned __int128)delta * mul) >> 32);
}

/* The callback vector and what its handler saw. */
#define XEN_CALLBACK_VECTOR 0xf3
#define HVM_CALLBACK_VECTOR(v) (((uint64_t)HVM_PARAM_CALLBACK_TYPE_VECTOR << 56) | (v))
extern void xen_upcall_entry(void);
void xen_upcall(void);
static int use_callback;
static volatile xen_ulong_t fired[EVTCHN_WORDS];

/* Linux's 2-level scan: clear upcall_pending, take pending_sel, handle each pending and
 * unmasked port (clearing its pending bit), again while Xen set upcall_pending meanwhile. */
void xen_upcall(void) {
    volatile struct vcpu_info *vi = &shared->vcpu_info[0];
    xen_count.upcalls++;
    do {
        vi->evtchn_upcall_pending = 0;
        barrier();
        xen_ulong_t sel = __atomic_exchange_n(&vi->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);
        while (sel) {
            unsigned w = (unsigned)__builtin_ctzl(sel);
            sel &= sel - 1;
            xen_ulong_t bits = shared->evtchn_pending[w] & ~shared->evtchn_mask[w];
            while (bits) {
                unsigned b = (unsigned)__builtin_ctzl(bits);
                bits &= bits - 1;
                __atomic_fetch_and(&shared->evtchn_pending[w], ~((xen_ulong_t)1 << b), __ATOMIC_SEQ_CST);
                __atomic_fetch_or(&fired[w], (xen_ulong_t)1 << b, __ATOMIC_SEQ_CST);
            }
        }
    } while (vi->evtchn_upcall_pending);
}

static int set_callback(void (*set_gate)(unsigned vector, void (*entry)(void))) {
    if (!set_gate || cmdline_uint("xenpoll", 0))
        return 0;
    set_gate(XEN_CALLBACK_VECTOR, xen_upcall_entry);
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = HVM_PARAM_CALLBACK_IRQ, .value = HVM_CALLBACK_VECTOR(XEN_CALLBACK_VECTOR) };
    long rc = hvm_op(HVMOP_set_param, &p);
    if (rc) {
        printf("xen: HVM_PARAM_CALLBACK_IRQ: %ld\n", rc);
        return -1;
    }
    use_callback = 1;
    return 0;
}

/* A driver's port: unmasked when upcalls deliver events (EVTCHNOP_unmask re-raises one already pending). */
void xen_bind_port(evtchn_port_t port) {
    if (!use_callback)
        return;
    struct evtchn_unmask u = { .port = port };
    (void)event_channel_op(EVTCHNOP_unmask, &u);
}

static int map_shared_info(void) {
    struct xen_add_to_physmap xatp = {
        .domid = DOMID_SELF, .space = XENMAPSPACE_shared_info, .idx = 0,
        .gpfn = (uintptr_t)shared_info_page >> 12,
    };
    long rc = memory_op(XENMEM_add_to_physmap, &xatp);
    if (rc) {
        printf("xen: XENMAPSPACE_shared_info: %ld\n", rc);
        return -1;
    }
    shared = (volatile struct shared_info *)shared_info_page;
    for (unsigned w = 0; w < EVTCHN_WORDS; w++)
        shared->evtchn_mask[w] = ~(xen_ulong_t)0;
    return 0;
}

/* ---------------------------------------------------------------- event channels */

long xen_alloc_unbound(domid_t remote, evtchn_port_t *port) {
    struct evtchn_alloc_unbound au = { .dom = DOMID_SELF, .remote_dom = remote };
    long rc = event_channel_op(EVTCHNOP_alloc_unbound, &au);
    if (rc == 0) {
        *port = au.port;
        xen_bind_port(au.port);
    }
    return rc;
}

void xen_notify(evtchn_port_t port) {
    struct evtchn_send s = { .port = port };
    xen_count.notifies++;
    (void)event_channel_op(EVTCHNOP_send, &s);
}

int xen_take_event(evtchn_port_t port) {
    xen_ulong_t bit = (xen_ulong_t)1 << (port % 64);
    if (use_callback) {
        /* An interrupt window: a pending upcall is taken after the STI's shadow (the NOP). */
        __asm__ volatile("sti; nop; cli" ::: "memory");
        if (!(fired[port / 64] & bit))
            return 0;
        __atomic_fetch_and(&fired[port / 64], ~bit, __ATOMIC_SEQ_CST);
        return 1;
    }
    volatile xen_ulong_t *w = &shared->evtchn_pending[port / 64];
    if (!(*w & bit))
        return 0;
    __atomic_fetch_and(w, ~bit, __ATOMIC_SEQ_CST);
    return 1;
}

void xen_poll(evtchn_port_t port, uint64_t timeout_ns) {
    volatile xen_ulong_t *w = &shared->evtchn_pending[port / 64];
    if (*w & ((xen_ulong_t)1 << (port % 64)))
        return;
    if (use_callback && (fired[port / 64] & ((xen_ulong_t)1 << (port % 64))))
        return;   /* the upcall already took it */
    evtchn_port_t ports[1] = { port };
    struct sched_poll sp = { .nr_ports = 1, .timeout = xen_now_ns() + timeout_ns };
    set_xen_guest_handle(sp.ports, ports);
    xen_count.polls++;
    (void)sched_op(SCHEDOP_poll, &sp);
}

/* ---------------------------------------------------------------- grant table */

static volatile grant_entry_v1_t *gnttab;
static unsigned gnt_next = GNTTAB_NR_RESERVED_ENTRIES;
#define GNT_ENTRIES (XEN_PAGE / sizeof(grant_entry_v1_t))

static int map_grant_table(void (*map_mmio)(uint64_t, uint64_t)) {
    map_mmio(platform_mmio, platform_mmio_size);
    /* Linux's gnttab_setup_auto_xlat_frames: frame 0 at the start of the platform BAR. */
    struct xen_add_to_physmap xatp = {
        .domid = DOMID_SELF, .space = XENMAPSPACE_grant_table, .idx = 0, .gpfn = platform_mmio >> 12,
    };
    long rc = memory_op(XENMEM_add_to_physmap, &xatp);
    if (rc) {
        printf("xen: XENMAPSPACE_grant_table: %ld\n", rc);
        return -1;
    }
    gnttab = (volatile grant_entry_v1_t *)(uintptr_t)platform_mmio;
    return 0;
}

int gnt_grant(domid_t dom, uint64_t pfn, int readonly) {
    if (gnt_next >= GNT_ENTRIES || pfn > 0xffffffffu)
        return -1;
    unsigned ref = gnt_next++;
    gnttab[ref].frame = (uint32_t)pfn;
    gnttab[ref].domid = dom;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);   /* frame and domid before the flags */
    gnttab[ref].flags = (uint16_t)(GTF_permit_access | (readonly ? GTF_readonly : 0));
    xen_count.grants++;
    return (int)ref;
}

int gnt_end(grant_ref_t ref) {
    if (ref >= GNT_ENTRIES)
        return -1;
    uint16_t old = gnttab[ref].flags;
    for (;;) {
        if (old & (GTF_reading | GTF_writing))
            return -1;
        uint16_t seen = __sync_val_compare_and_swap(&gnttab[ref].flags, old, 0);
        if (seen == old)
            return 0;
        old = seen;
    }
}

/* ---------------------------------------------------------------- xenstore ring */

static volatile struct xenstore_domain_interface *xs_intf;
static evtchn_port_t xs_port;
static uint32_t xs_req_id;
static uint32_t xs_tx;   /* the open transaction, 0 for none */
#define XS_TIMEOUT_NS 2000000000ull   /* 2 s of system time per reply */

static char xs_reply[XENSTORE_PAYLOAD_MAX + 1];
static struct xsd_sockmsg xs_reply_hdr;

static int get_param(uint32_t index, uint64_t *v) {
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = index };
    long rc = hvm_op(HVMOP_get_param, &p);
    *v = p.value;
    return (int)rc;
}

static int xs_init(void) {
    uint64_t pfn, port;
    if (get_param(HVM_PARAM_STORE_PFN, &pfn) || get_param(HVM_PARAM_STORE_EVTCHN, &port) || pfn == 0) {
        printf("xen: no xenstore (HVM_PARAM_STORE_PFN/EVTCHN)\n");
        return -1;
    }
    /* The kernel maps guest-physical memory 1:1; the toolstack's page is at 0xfeffc000. */
    xs_intf = (volatile struct xenstore_domain_interface *)(uintptr_t)(pfn << 12);
    xs_port = (evtchn_port_t)port;
    xen_bind_port(xs_port);
    return 0;
}

/* Waits for `cond` with SCHEDOP_poll on the xenstore port; 0 when it never held. */
#define XS_WAIT(cond) ({                                                                       \
    uint64_t _deadline = xen_now_ns() + XS_TIMEOUT_NS;                                         \
    int _ok;                                                                                   \
    while (!(_ok = (cond)) && xen_now_ns() < _deadline) {                                      \
        xen_poll(xs_port, 10000000ull);                                                        \
        xen_take_event(xs_port);                                                               \
    }                                                                                          \
    _ok;                                                                                       \
})

static int xs_write_bytes(const void *data, size_t len) {
    const uint8_t *p = data;
    while (len) {
        XENSTORE_RING_IDX cons, prod;
        if (xs_intf->req_prod - xs_intf->req_cons >= XENSTORE_RING_SIZE)
            xen_notify(xs_port);   /* full: make sure the daemon knows there is something to read */
        if (!XS_WAIT((prod = xs_intf->req_prod, cons = xs_intf->req_cons, prod - cons < XENSTORE_RING_SIZE)))
            return -XEN_EIO;
        xen_mb();
        if (prod - cons > XENSTORE_RING_SIZE)
            return -XEN_EIO;   /* a corrupt ring */
        size_t space = XENSTORE_RING_SIZE - (prod - cons);
        size_t off = MASK_XENSTORE_IDX(prod);
        size_t n = len < space ? len : space;
        if (n > XENSTORE_RING_SIZE - off)
            n = XENSTORE_RING_SIZE - off;
        memcpy((void *)&xs_intf->req[off], p, n);
        xen_wmb();   /* the bytes before the producer index */
        xs_intf->req_prod = prod + (XENSTORE_RING_IDX)n;
        p += n;
        len -= n;
    }
    return 0;
}

static int xs_read_bytes(void *data, size_t len) {
    uint8_t *p = data;
    while (len) {
        XENSTORE_RING_IDX cons, prod;
        if (p != (uint8_t *)data && xs_intf->rsp_prod == xs_intf->rsp_cons)
            xen_notify(xs_port);   /* a message longer than the ring: hand the space back now */
        if (!XS_WAIT((prod = xs_intf->rsp_prod, cons = xs_intf->rsp_cons, prod != cons)))
            return -XEN_EIO;
        xen_rmb();   /* the producer index before the bytes */
        if (prod - cons > XENSTORE_RING_SIZE)
            return -XEN_EIO;
        size_t avail = prod - cons, off = MASK_XENSTORE_IDX(cons);
        size_t n = len < avail ? len : avail;
        if (n > XENSTORE_RING_SIZE - off)
            n = XENSTORE_RING_SIZE - off;
        memcpy(p, (const void *)&xs_intf->rsp[off], n);
        xen_mb();    /* done with the bytes before handing the space back */
        xs_intf->rsp_cons = cons + (XENSTORE_RING_IDX)n;
        p += n;
        len -= n;
    }
    return 0;
}

/* xsd_errors: the strings xenstored answers with, to Xen's errno values. */
static int xs_errno(const char *s) {
    static const struct { const char *name; int err; } tab[] = {
        { "EINVAL", XEN_EINVAL }, { "EACCES", XEN_EACCES }, { "EEXIST", XEN_EEXIST },
        { "EISDIR", XEN_EISDIR }, { "ENOENT", XEN_ENOENT }, { "ENOMEM", XEN_ENOMEM },
        { "ENOSPC", XEN_ENOSPC }, { "EIO", XEN_EIO }, { "ENOTEMPTY", XEN_ENOTEMPTY },
        { "ENOSYS", XEN_ENOSYS }, { "EROFS", XEN_EROFS }, { "EBUSY", XEN_EBUSY },
        { "EAGAIN", XEN_EAGAIN }, { "EISCONN", XEN_EISCONN }, { "E2BIG", XEN_E2BIG },
        { "EPERM", XEN_EPERM },
    };
    for (unsigned i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(s, tab[i].name) == 0)
            return -tab[i].err;
    return -XEN_EINVAL;
}

/*
 * One request and its reply: the header and up to three payload parts, then replies read
 * until the one with our req_id; XS_WATCH_EVENTs in between are counted and dropped.
 * Returns the reply's payload length (NUL-terminated in xs_reply) or -errno.
 */
static int xs_talk(enum xsd_sockmsg_type type, const void *p1, size_t n1, const void *p2, size_t n2) {
    uint32_t tx = type == XS_WATCH || type == XS_UNWATCH || type == XS_TRANSACTION_START ? 0 : xs_tx;
    struct xsd_sockmsg h = { .type = type, .req_id = ++xs_req_id, .tx_id = tx, .len = (uint32_t)(n1 + n2) };
    if (h.len > XENSTORE_PAYLOAD_MAX)
        return -XEN_E2BIG;
    xen_count.xs_requests++;
    int rc;
    if ((rc = xs_write_bytes(&h, sizeof h)) || (rc = xs_write_bytes(p1, n1)) || (rc = xs_write_bytes(p2, n2)))
        return rc;
    xen_notify(xs_port);   /* one notification per message, as Linux's xb_write */
    for (;;) {
        if ((rc = xs_read_bytes(&xs_reply_hdr, sizeof xs_reply_hdr)))
            return rc;
        if (xs_reply_hdr.len > XENSTORE_PAYLOAD_MAX)
            return -XEN_E2BIG;   /* a broken daemon: the ring can no longer be trusted */
        if ((rc = xs_read_bytes(xs_reply, xs_reply_hdr.len)))
            return rc;
        xen_notify(xs_port);   /* the space of a whole message handed back */
        xs_reply[xs_reply_hdr.len] = 0;
        if (xs_reply_hdr.type == XS_WATCH_EVENT) {
            xen_count.watch_events++;
            continue;
        }
        if (xs_reply_hdr.req_id != h.req_id)
            continue;
        if (xs_reply_hdr.type == XS_ERROR)
            return xs_errno(xs_reply);
        if (xs_reply_hdr.type != type)
            return -XEN_EIO;
        return (int)xs_reply_hdr.len;
    }
}

int xs_read(const char *path, char *buf, size_t size) {
    int n = xs_talk(XS_READ, path, strlen(path) + 1, "", 0);
    if (n < 0)
        return n;
    if ((size_t)n >= size)
        return -XEN_E2BIG;
    memcpy(buf, xs_reply, (size_t)n);
    buf[n] = 0;
    return n;
}

int xs_read_uint(const char *path, uint64_t *v) {
    char buf[32];
    int n = xs_read(path, buf, sizeof buf);
    if (n <= 0)
        return n < 0 ? n : -XEN_EINVAL;
    uint64_t x = 0;
    for (int i = 0; i < n; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return -XEN_EINVAL;
        x = x * 10 + (uint64_t)(buf[i] - '0');
    }
    *v = x;
    return 0;
}

int xs_write(const char *path, const char *value) {
    /* XS_WRITE: the path with its NUL, then the value without one. */
    int n = xs_talk(XS_WRITE, path, strlen(path) + 1, value, strlen(value));
    return n < 0 ? n : 0;
}

int xs_printf(const char *dir, const char *node, const char *fmt, ...) {
    char path[256], value[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    snprintf(path, sizeof path, "%s/%s", dir, node);
    return xs_write(path, value);
}

/* XS_TRANSACTION_START: the id comes back as a decimal string; later requests carry it. */
int xs_transaction_start(void) {
    if (xs_tx)
        return -XEN_EBUSY;
    int n = xs_talk(XS_TRANSACTION_START, "", 1, "", 0);
    if (n < 0)
        return n;
    uint32_t id = 0;
    int digits = 0;
    for (int i = 0; i < n && xs_reply[i]; i++, digits++) {
        if (xs_reply[i] < '0' || xs_reply[i] > '9')
            return -XEN_EIO;
        id = id * 10 + (uint32_t)(xs_reply[i] - '0');
    }
    if (!digits || !id)
        return -XEN_EIO;
    xs_tx = id;
    return 0;
}

/* XS_TRANSACTION_END: "T" commits, "F" aborts; -XEN_EAGAIN when another writer got in first. */
int xs_transaction_end(int commit) {
    if (!xs_tx)
        return -XEN_EINVAL;
    int n = xs_talk(XS_TRANSACTION_END, commit ? "T" : "F", 2, "", 0);
    xs_tx = 0;
    return n < 0 ? n : 0;
}

int xs_watch(const char *path, const char *token) {
    int n = xs_talk(XS_WATCH, path, strlen(path) + 1, token, strlen(token) + 1);
    return n < 0 ? n : 0;
}

int xs_unwatch(const char *path, const char *token) {
    int n = xs_talk(XS_UNWATCH, path, strlen(path) + 1, token, strlen(token) + 1);
    return n < 0 ? n : 0;
}

/* ---------------------------------------------------------------- xenbus states */

const char *xenbus_state_name(int state) {
    static const char *const names[] = { "Unknown", "Initialising", "InitWait", "Initialised",
                                         "Connected", "Closing", "Closed", "Reconfiguring", "Reconfigured" };
    return state >= 0 && state <= XenbusStateReconfigured ? names[state] : "invalid";
}

int xenbus_read_state(const char *dir) {
    char path[256];
    uint64_t v;
    snprintf(path, sizeof path, "%s/state", dir);
    if (xs_read_uint(path, &v) < 0)
        return XenbusStateUnknown;   /* a missing node is "Unknown", as xenbus_read_driver_state */
    return v > XenbusStateReconfigured ? XenbusStateUnknown : (int)v;
}

int xenbus_switch_state(const char *dir, int state) {
    return xs_printf(dir, "state", "%d", state);
}

/*
 * Watches <dir>/state and waits until it is within [min_state, max_state]: the watch fires
 * once at registration and on every change (docs/misc/xenstore.txt); each wake-up re-reads.
 * Returns the state reached, or -1 at the timeout (or when the backend closed instead).
 */
int xenbus_wait_state(const char *dir, int min_state, int max_state, uint64_t timeout_ns) {
    char path[256];
    snprintf(path, sizeof path, "%s/state", dir);
    if (xs_watch(path, "vtlab-state") < 0)
        return -1;
    uint64_t deadline = xen_now_ns() + timeout_ns;
    int st;
    for (;;) {
        st = xenbus_read_state(dir);
        if ((st >= min_state && st <= max_state) || st == XenbusStateClosing || st == XenbusStateClosed)
            break;
        if (xen_now_ns() >= deadline) {
            st = -1;
            break;
        }
        /* Block until the daemon says something (the watch event), then read again. */
        XENSTORE_RING_IDX seen = xs_intf->rsp_prod;
        uint64_t until = xen_now_ns() + 50000000ull;
        while (xs_intf->rsp_prod == seen && xen_now_ns() < until) {
            xen_poll(xs_port, 10000000ull);
            xen_take_event(xs_port);
        }
    }
    (void)xs_unwatch(path, "vtlab-state");
    if (st >= 0 && (st < min_state || st > max_state))
        return -1;
    return st;
}

/* ---------------------------------------------------------------- init */

int xen_init(void (*map_mmio)(uint64_t pa, uint64_t size), void (*set_gate)(unsigned vector, void (*entry)(void))) {
    if (find_platform_device() || detect_xen() || map_shared_info() || set_callback(set_gate) || map_grant_table(map_mmio) || xs_init())
        return -1;
    return 0;
}
