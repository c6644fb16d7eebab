/*
 * xentest: a PV-on-HVM self-test, written the way an unmodified OS's Xen drivers bring up the
 * PV interface of an HVM guest (Linux: arch/x86/xen/enlighten_hvm.c, drivers/xen/platform-pci.c,
 * drivers/xen/events/events_base.c and events_2l.c, drivers/xen/grant-table.c are the model of
 * the order and of the ABI use), against Xen's public headers (<xen/...>, Debian libxen-dev):
 *
 *   1. finds the Xen platform PCI device (5853:0001) through configuration mechanism #1
 *      (ports 0xCF8/0xCFC), sizes its BARs and checks the unplug protocol's magic;
 *   2. detects Xen by CPUID (signature leaf and highest leaf, version leaf, leaf 2's hypercall
 *      page count and MSR, the TSC and HVM leaves);
 *   3. installs the hypercall page (WRMSR) and checks every stub Xen wrote;
 *   4. calls xen_version (XENVER_version, extraversion, get_features);
 *   5. maps shared_info over a RAM page of its own (XENMEM_add_to_physmap,
 *      XENMAPSPACE_shared_info), masks every event channel;
 *   6. sets the callback vector (HVM_PARAM_CALLBACK_IRQ, type vector) with an IDT gate whose
 *      handler scans the 2-level bitmaps as Linux's evtchn_2l does;
 *   7. binds VIRQ_TIMER and takes timer upcalls from VCPUOP_set_singleshot_timer, reading the
 *      PV clock (vcpu_time_info: the version protocol, tsc_to_system_mul and tsc_shift);
 *   8. sends itself events through an IPI channel and an interdomain loopback, and checks that a
 *      masked port keeps its event until EVTCHNOP_unmask;
 *   9. grants a page to dom0 (grant table frame 0 through XENMAPSPACE_grant_table in the
 *      platform device's MMIO BAR), prints the handshake line `xen-selftest: grant <ref> evtchn
 *      <port>` for the dom0 peer (vtlab's selftest_peer.ts: the self-test's handshake, not a Xen
 *      ABI), waits on the port with SCHEDOP_poll, checks the pattern dom0 wrote and that
 *      GTF_reading/GTF_writing are clear, and ends foreign access;
 *  10. writes everything with HYPERVISOR_console_io(CONSOLEIO_write) and powers off with
 *      SCHEDOP_shutdown(SHUTDOWN_poweroff).
 *
 * It prints checks and counts, never raw times or addresses, so its output is the same on EPT
 * and on shadow paging. Command line: `timers=N` (default 5) timer upcalls.
 */
#include "rt.h"

#define __XEN_INTERFACE_VERSION__ 0x00040e00
#include <xen/xen.h>
#include <xen/event_channel.h>
#include <xen/grant_table.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/memory.h>
#include <xen/sched.h>
#include <xen/vcpu.h>
#include <xen/version.h>
#include <xen/errno.h>
#include <xen/features.h>
#include <xen/arch-x86/cpuid.h>

/* ---------------------------------------------------------------- constants of the test */

/* Xen platform PCI device (QEMU hw/i386/xen/xen_platform.c; Linux platform-pci.c). */
#define XEN_PLATFORM_VENDOR 0x5853
#define XEN_PLATFORM_DEVICE 0x0001
/* The unplug protocol's fixed ports (Linux include/xen/platform_pci.h). */
#define XEN_IOPORT_MAGIC    0x10   /* 16-bit read */
#define XEN_IOPORT_PROTOVER 0x12   /* 8-bit read */
#define XEN_IOPORT_MAGIC_VAL 0x49d2

/* The callback vector: Linux's HYPERVISOR_CALLBACK_VECTOR. */
#define XEN_CALLBACK_VECTOR 0xf3
/* HVM_PARAM_CALLBACK_IRQ value of type "vector" (params.h: type in bits 63:56). */
#define HVM_CALLBACK_VECTOR(v) (((uint64_t)HVM_PARAM_CALLBACK_TYPE_VECTOR << 56) | (v))

/* The first grant reference a guest may use: GNTTAB_NR_RESERVED_ENTRIES. */
#define TEST_GREF GNTTAB_NR_RESERVED_ENTRIES
/* 2-level ABI: sizeof(xen_ulong_t) * sizeof(xen_ulong_t) * 64 ports. */
#define EVTCHN_2L_NR_CHANNELS (sizeof(xen_ulong_t) * sizeof(xen_ulong_t) * 64)
#define EVTCHN_WORDS (EVTCHN_2L_NR_CHANNELS / (8 * sizeof(xen_ulong_t)))

#define TIMER_PERIOD_NS 1000000ull   /* 1 ms between timer upcalls */
#define PEER_TIMEOUT_NS 2000000000ull /* dom0 has 2 s of system time to answer */

/*
 * The page dom0 writes (selftest_peer.ts writes the same): 32-bit word i, little-endian, is
 * (i * 2654435761) ^ 0x5eed0000 ^ ref. scripts/xentest-expected.py recomputes its FNV-1a.
 */
static uint32_t peer_pattern(uint32_t i, uint32_t ref) { return (i * 2654435761u) ^ 0x5eed0000u ^ ref; }

/* ---------------------------------------------------------------- pages of the image */

extern uint8_t hypercall_page[4096];
extern void xen_upcall_entry(void);

/* shared_info goes over this RAM page (Linux maps it over a page of its own, too). */
static uint8_t shared_info_page[4096] __attribute__((aligned(4096)));
/* The page granted to dom0. */
static uint8_t granted_page[4096] __attribute__((aligned(4096)));
/* A page directory for the platform device's MMIO BAR when it lies above the first 1 GiB. */
static uint64_t pd_bar[512] __attribute__((aligned(4096)));

static volatile struct shared_info *shared;
static volatile grant_entry_v1_t *gnttab;

/* ---------------------------------------------------------------- low level */

static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static const void *memchr(const void *s, int c, size_t n) {
    const uint8_t *p = s;
    for (size_t i = 0; i < n; i++)
        if (p[i] == (uint8_t)c)
            return p + i;
    return NULL;
}
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline uint64_t rdtsc(void) { uint32_t lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((uint64_t)hi << 32) | lo; }
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
/* STI; HLT: the interrupt shadow of STI makes the pair atomic, so no wake-up is lost. */
static inline void safe_halt(void) { __asm__ volatile("sti; hlt; cli" ::: "memory"); }
/* An interrupt window: STI's shadow covers the NOP, so a pending upcall is taken after it. */
static inline void irq_window(void) { __asm__ volatile("sti; nop; cli" ::: "memory"); }

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d) {
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}

/* ---------------------------------------------------------------- hypercalls */

static int hypercalls_ready;

/*
 * A call through the hypercall page: stub `nr` at hypercall_page + nr * 32, arguments in RDI,
 * RSI, RDX, R10, R8 (Xen's 64-bit HVM convention), result in RAX. Xen may clobber the argument
 * registers (debug builds do), so they are all outputs.
 */
#define HYPERCALL5(nr, a1, a2, a3, a4, a5) ({                                                  \
    register unsigned long _a1 __asm__("rdi") = (unsigned long)(a1);                           \
    register unsigned long _a2 __asm__("rsi") = (unsigned long)(a2);                           \
    register unsigned long _a3 __asm__("rdx") = (unsigned long)(a3);                           \
    register unsigned long _a4 __asm__("r10") = (unsigned long)(a4);                           \
    register unsigned long _a5 __asm__("r8") = (unsigned long)(a5);                            \
    long _res;                                                                                 \
    __asm__ volatile("call hypercall_page + %c[off]"                                           \
                     : "=a"(_res), "+r"(_a1), "+r"(_a2), "+r"(_a3), "+r"(_a4), "+r"(_a5)       \
                     : [off] "i"((nr) * 32)                                                    \
                     : "memory", "rcx", "r9", "r11");                                          \
    _res;                                                                                      \
})
#define HYPERCALL2(nr, a1, a2) HYPERCALL5(nr, a1, a2, 0, 0, 0)
#define HYPERCALL3(nr, a1, a2, a3) HYPERCALL5(nr, a1, a2, a3, 0, 0)

static long xen_version(int cmd, void *arg) { return HYPERCALL2(__HYPERVISOR_xen_version, cmd, arg); }
static long memory_op(int cmd, void *arg) { return HYPERCALL2(__HYPERVISOR_memory_op, cmd, arg); }
static long hvm_op(int cmd, void *arg) { return HYPERCALL2(__HYPERVISOR_hvm_op, cmd, arg); }
static long event_channel_op(int cmd, void *arg) { return HYPERCALL2(__HYPERVISOR_event_channel_op, cmd, arg); }
static long grant_table_op(int cmd, void *arg, unsigned count) { return HYPERCALL3(__HYPERVISOR_grant_table_op, cmd, arg, count); }
static long sched_op(int cmd, void *arg) { return HYPERCALL2(__HYPERVISOR_sched_op, cmd, arg); }
static long vcpu_op(int cmd, unsigned vcpu, void *arg) { return HYPERCALL3(__HYPERVISOR_vcpu_op, cmd, vcpu, arg); }
static long console_io(int cmd, unsigned count, const char *buf) { return HYPERCALL3(__HYPERVISOR_console_io, cmd, count, buf); }

/* ---------------------------------------------------------------- console */

/*
 * Console lines are written with HYPERVISOR_console_io(CONSOLEIO_write), one call per line.
 * Until the hypercall page is installed they are kept; if Xen is never found, or console_io
 * fails, they go to the debug port 0xE9 instead so that the failure can be read.
 */
static char conbuf[4096];
static size_t conlen;
static long console_error;

static void con_flush(void) {
    if (conlen == 0)
        return;
    if (hypercalls_ready && console_error == 0) {
        long rc = console_io(CONSOLEIO_write, (unsigned)conlen, conbuf);
        if (rc >= 0) {
            conlen = 0;
            return;
        }
        console_error = rc;
    }
    if (hypercalls_ready || conlen == sizeof conbuf) {
        for (size_t i = 0; i < conlen; i++)
            outb(DEBUGCON_PORT, (uint8_t)conbuf[i]);
        conlen = 0;
    }
}

void putc(char c) {
    if (conlen == sizeof conbuf)
        con_flush();
    conbuf[conlen++] = c;
    if (c == '\n' && hypercalls_ready)
        con_flush();
}

/* Without Xen: print what was kept to the debug port and exit through port 0xF4. */
static void __attribute__((noreturn)) fail_without_xen(const char *why) {
    printf("FAIL %s\n", why);
    hypercalls_ready = 0;
    for (size_t i = 0; i < conlen; i++)
        outb(DEBUGCON_PORT, (uint8_t)conbuf[i]);
    conlen = 0;
    rt_exit(EXIT_FAILURE_CODE);
}

static void __attribute__((noreturn)) shutdown(unsigned reason) {
    con_flush();
    struct sched_shutdown s = { .reason = reason };
    long rc = sched_op(SCHEDOP_shutdown, &s);
    printf("FAIL SCHEDOP_shutdown(%u) returned %ld\n", reason, rc);
    con_flush();
    rt_exit(EXIT_FAILURE_CODE);
}

/* A failed check: the reason on the console, then SCHEDOP_shutdown(SHUTDOWN_crash). */
static void __attribute__((noreturn, format(printf, 1, 2))) xfail(const char *fmt, ...) {
    va_list ap;
    puts("FAIL ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putc('\n');
    shutdown(SHUTDOWN_crash);
}

#define XCHECK(cond, ...) do { if (!(cond)) xfail(__VA_ARGS__); } while (0)
/* A hypercall that must succeed: its name and errno on failure. */
#define XOK(call) do { long _rc = (call); XCHECK(_rc == 0, "%s = %ld", #call, _rc); } while (0)

/* ---------------------------------------------------------------- 1. PCI */

static uint32_t pci_read(unsigned dev, unsigned reg) {
    outl(0xcf8, 0x80000000u | (dev << 11) | (reg & 0xfc));
    return inl(0xcfc);
}

static void pci_write(unsigned dev, unsigned reg, uint32_t v) {
    outl(0xcf8, 0x80000000u | (dev << 11) | (reg & 0xfc));
    outl(0xcfc, v);
}

/* Size a BAR as a PCI bus driver does: write all ones, read the mask back, restore. */
static uint32_t pci_bar_size(unsigned dev, unsigned reg, uint32_t *raw) {
    uint32_t old = pci_read(dev, reg);
    pci_write(dev, reg, 0xffffffffu);
    uint32_t mask = pci_read(dev, reg);
    pci_write(dev, reg, old);
    *raw = old;
    if (mask == 0 || mask == 0xffffffffu)
        return 0;
    if (old & 1)
        return (~(mask & ~3u) & 0xffffu) + 1;
    return ~(mask & ~0xfu) + 1;
}

static uint64_t platform_mmio;   /* BAR1 base */
static uint32_t platform_mmio_size;

static void find_platform_device(void) {
    unsigned dev;
    for (dev = 0; dev < 32; dev++) {
        uint32_t id = pci_read(dev, 0);
        if ((id & 0xffff) == XEN_PLATFORM_VENDOR && (id >> 16) == XEN_PLATFORM_DEVICE)
            break;
    }
    if (dev == 32)
        fail_without_xen("no Xen platform PCI device (5853:0001) on bus 0");
    uint32_t class_rev = pci_read(dev, 8);
    uint32_t intr = pci_read(dev, 0x3c);
    uint32_t sub = pci_read(dev, 0x2c);
    printf("pci: %04x:%04x at 00:%02x.0 class %04x rev %u subsystem %04x:%04x pin INT%c\n",
           XEN_PLATFORM_VENDOR, XEN_PLATFORM_DEVICE, dev, class_rev >> 16, class_rev & 0xff,
           sub & 0xffff, sub >> 16, ((intr >> 8) & 0xff) >= 1 && ((intr >> 8) & 0xff) <= 4 ? (char)('A' + ((intr >> 8) & 0xff) - 1) : '?');
    /* Decoding off while sizing, as Linux's __pci_read_base does. */
    uint32_t cmd = pci_read(dev, 4);
    pci_write(dev, 4, cmd & ~3u);
    uint32_t bar0, bar1;
    uint32_t io_size = pci_bar_size(dev, 0x10, &bar0);
    uint32_t mem_size = pci_bar_size(dev, 0x14, &bar1);
    if ((bar1 & ~0xfu) == 0 && mem_size != 0) {
        /* No firmware assigned it (hvmloader would have): take 0xF0000000, naturally aligned. */
        bar1 = (bar1 & 0xf) | 0xf0000000u;
        pci_write(dev, 0x14, bar1);
    }
    pci_write(dev, 4, cmd | 3u);   /* I/O and memory decoding on (pci_enable_device) */
    printf("pci: BAR0 %s 0x%x bytes, BAR1 %s%s 0x%x bytes\n", (bar0 & 1) ? "io" : "mem", io_size,
           (bar1 & 1) ? "io" : "mem", (bar1 & 8) ? " prefetchable" : "", mem_size);
    XCHECK((bar0 & 1) && io_size >= 0x100, "BAR0 is not an I/O BAR of 256 bytes");
    XCHECK(!(bar1 & 1) && mem_size >= 0x1000, "BAR1 is not a memory BAR");
    platform_mmio = bar1 & ~0xfull;
    platform_mmio_size = mem_size;

    /* The unplug protocol: the magic at port 0x10, then the protocol version at 0x12. */
    uint16_t magic = inw(XEN_IOPORT_MAGIC);
    uint8_t proto = inb(XEN_IOPORT_PROTOVER);
    printf("platform: unplug magic 0x%04x protocol %u\n", magic, proto);
    XCHECK(magic == XEN_IOPORT_MAGIC_VAL, "unplug magic 0x%x is not 0x%x", magic, XEN_IOPORT_MAGIC_VAL);
}

/* Map [platform_mmio, +size) in 2 MiB pages if it is beyond the runtime's first 1 GiB. */
static void map_platform_mmio(void) {
    if (platform_mmio + platform_mmio_size <= (1ull << 30))
        return;
    uint64_t gb = platform_mmio >> 30;
    XCHECK(gb < 512 && ((platform_mmio + platform_mmio_size - 1) >> 30) == gb, "BAR1 straddles a 1 GiB boundary");
    XCHECK(pdpt[gb] == 0, "PDPT entry %llu already in use", (unsigned long long)gb);
    for (unsigned i = 0; i < 512; i++)
        pd_bar[i] = ((gb << 30) + ((uint64_t)i << 21)) | PTE_P | PTE_W | PTE_PS;
    pdpt[gb] = (uint64_t)(uintptr_t)pd_bar | PTE_P | PTE_W;
    write_cr3(read_cr3());
}

/* ---------------------------------------------------------------- 2. CPUID */

static uint32_t xen_base, xen_msr, tsc_khz, my_domid;
static int domid_known;

static void detect_xen(void) {
    uint32_t a, b, c, d;
    /* Linux's hypervisor_cpuid_base: every 0x100 from 0x40000000. */
    for (xen_base = XEN_CPUID_FIRST_LEAF; xen_base < XEN_CPUID_FIRST_LEAF + 0x10000; xen_base += 0x100) {
        cpuid(xen_base, 0, &a, &b, &c, &d);
        if (b == XEN_CPUID_SIGNATURE_EBX && c == XEN_CPUID_SIGNATURE_ECX && d == XEN_CPUID_SIGNATURE_EDX && a - xen_base >= 2)
            break;
    }
    if (xen_base == XEN_CPUID_FIRST_LEAF + 0x10000)
        fail_without_xen("no XenVMMXenVMM signature in CPUID leaves 0x40000000-0x4000ff00");
    printf("cpuid: XenVMMXenVMM at 0x%x, highest leaf 0x%x\n", xen_base, a);
    uint32_t max = a;
    cpuid(xen_base + 1, 0, &a, &b, &c, &d);
    uint32_t version = a;
    cpuid(xen_base + 2, 0, &a, &b, &c, &d);
    xen_msr = b;
    printf("cpuid: Xen %u.%u, %u hypercall page(s) through MSR 0x%x\n", version >> 16, version & 0xffff, a, b);
    if (a < 1)
        fail_without_xen("CPUID leaf 2 offers no hypercall page");
    if (max >= xen_base + 3) {
        cpuid(xen_base + 3, 0, &a, &b, &c, &d);
        tsc_khz = c;
    }
    if (max >= xen_base + 4) {
        cpuid(xen_base + 4, 0, &a, &b, &c, &d);
        /* The boot vCPU's id is 0; the domid depends on what else runs, so only its presence. */
        if (a & XEN_HVM_CPUID_VCPU_ID_PRESENT)
            printf("cpuid: HVM leaf: vcpu id %u, domid %s\n", b, (a & XEN_HVM_CPUID_DOMID_PRESENT) ? "present" : "absent");
        else
            printf("cpuid: HVM leaf: vcpu id absent, domid %s\n", (a & XEN_HVM_CPUID_DOMID_PRESENT) ? "present" : "absent");
        if (a & XEN_HVM_CPUID_DOMID_PRESENT) {
            my_domid = c;
            domid_known = 1;
        }
    }
    (void)version;
}

/* ---------------------------------------------------------------- 3. hypercall page */

static uint64_t page_fnv;

static void install_hypercall_page(void) {
    XCHECK(hypercall_page[0] == 0xf4, "hypercall page not prefilled");
    wrmsr(xen_msr, (uint64_t)(uintptr_t)hypercall_page);
    /* What Xen writes (init_hypercall_page, vmx_init_hypercall_page): the page filled with
       INT3, then for each i `mov $i, %eax; vmcall; ret`, except __HYPERVISOR_iret: ud2. */
    for (unsigned i = 0; i < 128; i++) {
        const uint8_t *p = hypercall_page + i * 32;
        uint8_t want[32];
        memset(want, 0xcc, sizeof want);
        if (i == __HYPERVISOR_iret) {
            want[0] = 0x0f; want[1] = 0x0b;
        } else {
            want[0] = 0xb8;
            want[1] = (uint8_t)i; want[2] = 0; want[3] = 0; want[4] = 0;
            want[5] = 0x0f; want[6] = 0x01; want[7] = 0xc1; want[8] = 0xc3;
        }
        if (memcmp(p, want, 32) != 0)
            fail_without_xen("the hypercall page is not what Xen writes");
    }
    page_fnv = fnv64(FNV64_INIT, hypercall_page, 4096);
    hypercalls_ready = 1;
    printf("hypercall page: 128 stubs as Xen writes them for VMX (fnv64 %016llx)\n", (unsigned long long)page_fnv);
}

/* ---------------------------------------------------------------- 4. xen_version */

static void check_version(void) {
    long v = xen_version(XENVER_version, 0);
    XCHECK(v > 0, "XENVER_version = %ld", v);
    xen_extraversion_t extra;
    memset(extra, 0x7f, sizeof extra);
    XOK(xen_version(XENVER_extraversion, extra));
    XCHECK(memchr(extra, 0, sizeof extra) != NULL, "extraversion is not NUL-terminated");
    printf("xen_version: %ld.%ld%s\n", v >> 16, v & 0xffff, extra);
    xen_feature_info_t fi = { .submap_idx = 0 };
    XOK(xen_version(XENVER_get_features, &fi));
    static const struct { unsigned bit; const char *name; } need[] = {
        { XENFEAT_auto_translated_physmap, "auto_translated_physmap" },
        { XENFEAT_hvm_callback_vector, "hvm_callback_vector" },
        { XENFEAT_hvm_safe_pvclock, "hvm_safe_pvclock" },
    };
    puts("xen_version: features");
    for (unsigned i = 0; i < sizeof need / sizeof need[0]; i++) {
        XCHECK(fi.submap & (1u << need[i].bit), "XENFEAT_%s missing from submap 0x%x", need[i].name, fi.submap);
        printf(" %s", need[i].name);
    }
    fi.submap_idx = 1;
    long rc = xen_version(XENVER_get_features, &fi);
    printf("; submap 1 -> %ld\n", rc);
    XCHECK(rc == -XEN_EINVAL, "XENVER_get_features submap 1 = %ld, not -EINVAL", rc);
}

/* ---------------------------------------------------------------- 5. shared_info */

static void map_shared_info(void) {
    /* Linux's xen_hvm_init_shared_info: XENMAPSPACE_shared_info, idx 0, over a page it owns. */
    struct xen_add_to_physmap xatp = {
        .domid = DOMID_SELF,
        .space = XENMAPSPACE_shared_info,
        .idx = 0,
        .gpfn = (uintptr_t)shared_info_page >> 12,
    };
    XOK(memory_op(XENMEM_add_to_physmap, &xatp));
    shared = (volatile struct shared_info *)shared_info_page;
    /* events_base.c xen_init_IRQ: mask every channel; each is unmasked when it is bound. */
    for (unsigned w = 0; w < EVTCHN_WORDS; w++)
        shared->evtchn_mask[w] = ~(xen_ulong_t)0;
    uint32_t wc = shared->wc_version;
    printf("shared_info: XENMAPSPACE_shared_info over a RAM page; %u ports masked; wallclock version %s\n",
           (unsigned)EVTCHN_2L_NR_CHANNELS, (wc & 1) ? "odd" : "even");
    XCHECK(!(wc & 1), "wc_version is odd outside an update");
}

/* ---------------------------------------------------------------- PV clock */

/* vcpu_time_info, read with the version protocol (even and unchanged across the reads). */
struct pvclock {
    uint32_t version;
    uint64_t tsc_timestamp, system_time;
    uint32_t mul;
    int8_t shift;
};

static void pvclock_read(struct pvclock *t, uint64_t *tsc) {
    volatile struct vcpu_time_info *ti = &shared->vcpu_info[0].time;
    uint32_t v;
    do {
        v = ti->version;
        barrier();
        t->tsc_timestamp = ti->tsc_timestamp;
        t->system_time = ti->system_time;
        t->mul = ti->tsc_to_system_mul;
        t->shift = ti->tsc_shift;
        if (tsc)
            *tsc = rdtsc();
        barrier();
    } while ((v & 1) || v != ti->version);
    t->version = v;
}

/* ((delta << shift) * mul) >> 32, shift negative meaning a right shift (xen.h). */
static uint64_t pvclock_scale(uint64_t delta, uint32_t mul, int8_t shift) {
    if (shift < 0)
        delta >>= -shift;
    else
        delta <<= shift;
    return (uint64_t)(((unsigned __int128)delta * mul) >> 32);
}

static uint64_t pvclock_ns(void) {
    struct pvclock t;
    uint64_t tsc;
    pvclock_read(&t, &tsc);
    return t.system_time + pvclock_scale(tsc - t.tsc_timestamp, t.mul, t.shift);
}

/* ---------------------------------------------------------------- 6. callback and upcalls */

struct idt_gate {
    uint16_t offset_lo, selector;
    uint8_t ist, type_attr;
    uint16_t offset_mid;
    uint32_t offset_hi, reserved;
};
static struct idt_gate idt[256] __attribute__((aligned(16)));
extern const uint64_t trap_stubs[32];

static void idt_set(unsigned v, uint64_t addr) {
    idt[v] = (struct idt_gate){ (uint16_t)addr, 0x08, 0, 0x8e, (uint16_t)(addr >> 16), (uint32_t)(addr >> 32), 0 };
}

/* Ports and what the upcall handler saw on each. */
static evtchn_port_t timer_port, ipi_port, loop_a, loop_b, peer_port;
static volatile unsigned events[EVTCHN_2L_NR_CHANNELS];
static volatile unsigned upcalls, timer_events;
static volatile uint64_t last_timer_ns;

void xen_upcall(void);
/*
 * The callback vector's handler, Linux's 2-level scan (events_2l.c): clear
 * evtchn_upcall_pending, take evtchn_pending_sel with an exchange, and for each selected word
 * handle the ports pending and not masked, clearing each pending bit atomically; repeat while
 * Xen set upcall_pending again. The vector callback is not an APIC interrupt: no EOI.
 */
void xen_upcall(void) {
    volatile struct vcpu_info *vi = &shared->vcpu_info[0];
    upcalls++;
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
                evtchn_port_t port = w * 64 + b;
                events[port]++;
                if (port == timer_port && timer_port != 0) {
                    timer_events++;
                    last_timer_ns = pvclock_ns();
                }
            }
        }
    } while (vi->evtchn_upcall_pending);
}

static void set_callback_vector(void) {
    for (unsigned v = 0; v < 32; v++)
        idt_set(v, trap_stubs[v]);
    idt_set(XEN_CALLBACK_VECTOR, (uint64_t)(uintptr_t)xen_upcall_entry);
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr = { sizeof idt - 1, (uint64_t)(uintptr_t)idt };
    __asm__ volatile("lidt %0" : : "m"(idtr));
    /* Linux's xen_set_callback_via(HVM_CALLBACK_VECTOR(HYPERVISOR_CALLBACK_VECTOR)). */
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = HVM_PARAM_CALLBACK_IRQ, .value = HVM_CALLBACK_VECTOR(XEN_CALLBACK_VECTOR) };
    XOK(hvm_op(HVMOP_set_param, &p));
    struct xen_hvm_param q = { .domid = DOMID_SELF, .index = HVM_PARAM_CALLBACK_IRQ };
    XOK(hvm_op(HVMOP_get_param, &q));
    printf("callback: HVM_PARAM_CALLBACK_IRQ type vector 0x%x, read back %s\n", XEN_CALLBACK_VECTOR, q.value == p.value ? "equal" : "DIFFERENT");
    XCHECK(q.value == p.value, "HVMOP_get_param gave 0x%llx", (unsigned long long)q.value);
}

static void unmask(evtchn_port_t port) {
    struct evtchn_unmask u = { .port = port };
    XOK(event_channel_op(EVTCHNOP_unmask, &u));
}

static uint32_t evtchn_state(evtchn_port_t port, struct evtchn_status *st) {
    *st = (struct evtchn_status){ .dom = DOMID_SELF, .port = port };
    XOK(event_channel_op(EVTCHNOP_status, st));
    return st->status;
}

/*
 * Wait until `count` reaches `target`: with STI; HLT when time has to pass (a timer), else with
 * interrupt windows only (an event already sent must be delivered at the first one), at most
 * `limit` times.
 */
static int wait_for(volatile unsigned *count, unsigned target, unsigned limit, int halt) {
    for (unsigned i = 0; *count < target && i < limit; i++) {
        if (halt)
            safe_halt();
        else
            irq_window();
    }
    return *count >= target;
}

/* ---------------------------------------------------------------- 7. timer and PV clock */

static void timer_test(unsigned n) {
    struct evtchn_bind_virq bv = { .virq = VIRQ_TIMER, .vcpu = 0 };
    XOK(event_channel_op(EVTCHNOP_bind_virq, &bv));
    timer_port = bv.port;
    unmask(timer_port);
    struct evtchn_status st;
    XCHECK(evtchn_state(timer_port, &st) == EVTCHNSTAT_virq && st.u.virq == VIRQ_TIMER && st.vcpu == 0, "EVTCHNOP_status of the VIRQ_TIMER port");
    printf("evtchn: VIRQ_TIMER bound to port %u (EVTCHNOP_status: virq %u, vcpu 0)\n", timer_port, st.u.virq);

    struct pvclock c0, c1;
    pvclock_read(&c0, NULL);
    XCHECK(c0.mul != 0, "vcpu_time_info.tsc_to_system_mul is 0");
    uint64_t start = pvclock_ns();
    unsigned late = 0, monotonic = 1;
    uint64_t prev = start;
    for (unsigned k = 0; k < n; k++) {
        uint64_t deadline = pvclock_ns() + TIMER_PERIOD_NS;
        struct vcpu_set_singleshot_timer t = { .timeout_abs_ns = deadline, .flags = 0 };
        XOK(vcpu_op(VCPUOP_set_singleshot_timer, 0, &t));
        XCHECK(wait_for(&timer_events, k + 1, 100000, 1), "timer upcall %u never came", k + 1);
        if (last_timer_ns < deadline)
            late++;
        uint64_t now = pvclock_ns();
        if (now < prev)
            monotonic = 0;
        prev = now;
    }
    uint64_t elapsed = pvclock_ns() - start;
    printf("timer: %u upcalls from VCPUOP_set_singleshot_timer, %s before its deadline, %s %u ms of system time\n",
           n, late == 0 ? "none" : "SOME", elapsed >= n * TIMER_PERIOD_NS ? "at least" : "LESS THAN", n);
    XCHECK(late == 0, "%u timer upcalls came before their deadlines", late);
    XCHECK(elapsed >= n * TIMER_PERIOD_NS, "%u timers of 1 ms took %llu ns", n, (unsigned long long)elapsed);
    XCHECK(monotonic, "the PV clock went backwards");

    /* Xen fires a deadline already past at once (VCPUOP_set_singleshot_timer). */
    unsigned before = timer_events;
    struct vcpu_set_singleshot_timer past = { .timeout_abs_ns = pvclock_ns() / 2, .flags = 0 };
    XOK(vcpu_op(VCPUOP_set_singleshot_timer, 0, &past));
    XCHECK(wait_for(&timer_events, before + 1, 1, 0), "a past deadline did not fire at once");
    XOK(vcpu_op(VCPUOP_stop_singleshot_timer, 0, NULL));
    puts("timer: a deadline in the past fires at once; VCPUOP_stop_singleshot_timer ok\n");

    /* The clock moves with the simulated clock, and RDTSC through mul/shift agrees with it. */
    pvclock_read(&c1, NULL);
    uint64_t t0 = pvclock_ns();
    uint64_t tsc0 = rdtsc();
    for (volatile unsigned spin = 0; spin < 20000; spin++)
        ;
    uint64_t tsc1 = rdtsc();
    uint64_t t1 = pvclock_ns();
    uint64_t by_tsc = pvclock_scale(tsc1 - tsc0, c1.mul, c1.shift);
    XCHECK(t1 > t0, "the PV clock did not move over 20000 iterations");
    /* t1 - t0 spans the two RDTSCs plus the reads around them: at least the TSC's span. */
    XCHECK(t1 - t0 >= by_tsc && t1 - t0 - by_tsc < 100000, "PV clock %llu ns vs RDTSC %llu ns", (unsigned long long)(t1 - t0), (unsigned long long)by_tsc);
    if (tsc_khz != 0) {
        /* One millisecond of TSC ticks (the TSC leaf's kHz) is 1,000,000 ns by mul/shift. */
        uint64_t ms = pvclock_scale(tsc_khz, c1.mul, c1.shift);
        XCHECK(ms + 1 >= 1000000 && ms <= 1000001, "%u TSC ticks scale to %llu ns, not 1 ms", tsc_khz, (unsigned long long)ms);
    }
    printf("pvclock: version protocol, moves with the simulated clock, agrees with RDTSC through mul/shift%s\n",
           tsc_khz != 0 ? "; 1 ms of the TSC leaf's kHz = 1000000 ns" : "");
}

/* ---------------------------------------------------------------- 8. IPI and loopback */

static void event_tests(void) {
    struct evtchn_bind_ipi bi = { .vcpu = 0 };
    XOK(event_channel_op(EVTCHNOP_bind_ipi, &bi));
    ipi_port = bi.port;
    unmask(ipi_port);
    struct evtchn_send s = { .port = ipi_port };
    XOK(event_channel_op(EVTCHNOP_send, &s));
    XCHECK(wait_for(&events[ipi_port], 1, 1, 0), "no upcall for the IPI port");
    struct evtchn_status st;
    XCHECK(evtchn_state(ipi_port, &st) == EVTCHNSTAT_ipi, "EVTCHNOP_status of the IPI port is %u", st.status);
    printf("evtchn: IPI port %u: EVTCHNOP_bind_ipi + send, %u event\n", ipi_port, events[ipi_port]);

    /* Interdomain loopback: an unbound port for DOMID_SELF, and a port bound to it. */
    struct evtchn_alloc_unbound au = { .dom = DOMID_SELF, .remote_dom = DOMID_SELF };
    XOK(event_channel_op(EVTCHNOP_alloc_unbound, &au));
    loop_a = au.port;
    XCHECK(evtchn_state(loop_a, &st) == EVTCHNSTAT_unbound, "alloc_unbound port is not unbound (%u)", st.status);
    struct evtchn_bind_interdomain bd = { .remote_dom = DOMID_SELF, .remote_port = loop_a };
    XOK(event_channel_op(EVTCHNOP_bind_interdomain, &bd));
    loop_b = bd.local_port;
    /* Xen sets the newly bound port pending (notifications sent to the unbound port may have
       been lost: evtchn_bind_interdomain). It is still masked: take that event by hand. */
    volatile xen_ulong_t *pb = &shared->evtchn_pending[loop_b / 64];
    xen_ulong_t bbit = (xen_ulong_t)1 << (loop_b % 64);
    int bound_pending = (*pb & bbit) != 0;
    __atomic_fetch_and(pb, ~bbit, __ATOMIC_SEQ_CST);
    XCHECK(bound_pending, "EVTCHNOP_bind_interdomain did not set the new port %u pending", loop_b);
    unmask(loop_a);
    unmask(loop_b);
    XCHECK(evtchn_state(loop_b, &st) == EVTCHNSTAT_interdomain && st.u.interdomain.port == loop_a, "loopback port %u is not bound to %u", loop_b, loop_a);
    XCHECK(!domid_known || st.u.interdomain.dom == my_domid, "loopback's remote domain %u is not this domain", st.u.interdomain.dom);
    s.port = loop_b;
    XOK(event_channel_op(EVTCHNOP_send, &s));
    XCHECK(wait_for(&events[loop_a], 1, 1, 0), "a send on %u did not raise %u", loop_b, loop_a);
    s.port = loop_a;
    XOK(event_channel_op(EVTCHNOP_send, &s));
    XCHECK(wait_for(&events[loop_b], 1, 1, 0), "a send on %u did not raise %u", loop_a, loop_b);
    XCHECK(events[loop_a] == 1 && events[loop_b] == 1, "loopback events %u/%u", events[loop_a], events[loop_b]);
    printf("evtchn: loopback ports %u <-> %u (alloc_unbound + bind_interdomain, DOMID_SELF): bound port starts pending; one event each way\n", loop_a, loop_b);

    /* A masked port keeps its event (pending, no upcall) until EVTCHNOP_unmask re-raises it. */
    __atomic_fetch_or(&shared->evtchn_mask[ipi_port / 64], (xen_ulong_t)1 << (ipi_port % 64), __ATOMIC_SEQ_CST);
    unsigned before = events[ipi_port];
    s.port = ipi_port;
    XOK(event_channel_op(EVTCHNOP_send, &s));
    wait_for(&events[ipi_port], before + 1, 3, 0);
    int held = events[ipi_port] == before && (shared->evtchn_pending[ipi_port / 64] >> (ipi_port % 64)) & 1;
    unmask(ipi_port);
    XCHECK(wait_for(&events[ipi_port], before + 1, 1, 0), "EVTCHNOP_unmask did not deliver the pending event");
    printf("evtchn: a masked port holds its event %s; EVTCHNOP_unmask delivers it\n", held ? "pending" : "NOT PENDING");
    XCHECK(held, "an event on a masked port was delivered or lost");

    /* Bad ports: a free one and the first past the 2-level ABI's 4096. */
    s.port = 1000;
    long rc_free = event_channel_op(EVTCHNOP_send, &s);
    s.port = EVTCHN_2L_NR_CHANNELS;
    long rc_past = event_channel_op(EVTCHNOP_send, &s);
    printf("evtchn: send on free port 1000 -> %ld, on port %u -> %ld\n", rc_free, (unsigned)EVTCHN_2L_NR_CHANNELS, rc_past);
    XCHECK(rc_free == -XEN_EINVAL && rc_past == -XEN_EINVAL, "sends on bad ports should be -EINVAL");
}

/* ---------------------------------------------------------------- 9. grant to dom0 */

static uint64_t grant_test(void) {
    struct gnttab_query_size qs = { .dom = DOMID_SELF };
    XOK(grant_table_op(GNTTABOP_query_size, &qs, 1));
    XCHECK(qs.status == GNTST_okay && qs.max_nr_frames >= 1, "GNTTABOP_query_size: status %d, max %u", qs.status, qs.max_nr_frames);
    /* Linux's gnttab_setup_auto_xlat_frames: grant-table frame 0 at the start of BAR1. */
    map_platform_mmio();
    struct xen_add_to_physmap xatp = {
        .domid = DOMID_SELF,
        .space = XENMAPSPACE_grant_table,
        .idx = 0,
        .gpfn = platform_mmio >> 12,
    };
    XOK(memory_op(XENMEM_add_to_physmap, &xatp));
    gnttab = (volatile grant_entry_v1_t *)(uintptr_t)platform_mmio;
    printf("grant: GNTTABOP_query_size ok; table frame 0 through XENMAPSPACE_grant_table at the start of BAR1\n");

    /* The event channel dom0 will notify on. */
    struct evtchn_alloc_unbound au = { .dom = DOMID_SELF, .remote_dom = 0 };
    XOK(event_channel_op(EVTCHNOP_alloc_unbound, &au));
    peer_port = au.port;   /* stays masked: SCHEDOP_poll below waits on it */

    /* gnttab_grant_foreign_access_ref: frame and domid, a write barrier, then the flags. */
    memset(granted_page, 0, sizeof granted_page);
    gnttab[TEST_GREF].frame = (uint32_t)((uintptr_t)granted_page >> 12);
    gnttab[TEST_GREF].domid = 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    gnttab[TEST_GREF].flags = GTF_permit_access;

    /* The handshake for vtlab's dom0 peer (no xenstore yet): one console line. */
    printf("xen-selftest: grant %u evtchn %u\n", TEST_GREF, peer_port);

    /* Wait on the port with SCHEDOP_poll (interrupts off, the port masked), with a timeout. */
    uint64_t deadline = pvclock_ns() + PEER_TIMEOUT_NS;
    evtchn_port_t ports[1] = { peer_port };
    volatile xen_ulong_t *pend = &shared->evtchn_pending[peer_port / 64];
    xen_ulong_t bit = (xen_ulong_t)1 << (peer_port % 64);
    unsigned polls = 0;
    while (!(*pend & bit) && pvclock_ns() < deadline) {
        struct sched_poll sp = { .nr_ports = 1, .timeout = deadline };
        set_xen_guest_handle(sp.ports, ports);
        XOK(sched_op(SCHEDOP_poll, &sp));
        polls++;
    }
    XCHECK(*pend & bit, "dom0 never signalled port %u (no dom0 peer attached?)", peer_port);
    __atomic_fetch_and(pend, ~bit, __ATOMIC_SEQ_CST);

    /* What dom0 wrote, and that it no longer maps the page. */
    uint32_t bad = 0;
    const uint32_t *w = (const uint32_t *)granted_page;
    for (uint32_t i = 0; i < 1024; i++)
        if (w[i] != peer_pattern(i, TEST_GREF))
            bad++;
    uint64_t h = fnv64(FNV64_INIT, granted_page, sizeof granted_page);
    uint16_t flags = gnttab[TEST_GREF].flags;
    printf("grant: dom0 mapped entry %u, wrote the pattern (%u words wrong, fnv64 %016llx), unmapped; GTF_reading|GTF_writing %s\n",
           TEST_GREF, bad, (unsigned long long)h, (flags & (GTF_reading | GTF_writing)) ? "SET" : "clear");
    XCHECK(bad == 0, "%u words of the granted page differ from the pattern", bad);
    XCHECK(!(flags & (GTF_reading | GTF_writing)), "grant flags 0x%x still busy after dom0 unmapped", flags);

    /* gnttab_end_foreign_access_ref: clear the flags with a compare-exchange while not busy. */
    uint16_t old = flags;
    for (;;) {
        XCHECK(!(old & (GTF_reading | GTF_writing)), "grant became busy again");
        uint16_t seen = __sync_val_compare_and_swap(&gnttab[TEST_GREF].flags, old, 0);
        if (seen == old)
            break;
        old = seen;
    }
    puts("grant: foreign access ended\n");
    return h;
}

static void close_all(void) {
    evtchn_port_t ports[] = { timer_port, ipi_port, loop_a, loop_b, peer_port };
    for (unsigned i = 0; i < sizeof ports / sizeof ports[0]; i++) {
        struct evtchn_close c = { .port = ports[i] };
        XOK(event_channel_op(EVTCHNOP_close, &c));
    }
    struct evtchn_status st;
    XCHECK(evtchn_state(ipi_port, &st) == EVTCHNSTAT_closed, "a closed port has status %u", st.status);
    printf("evtchn: %u ports closed (EVTCHNOP_close), status closed\n", (unsigned)(sizeof ports / sizeof ports[0]));
}

/* ---------------------------------------------------------------- main */

int kmain(struct hvm_start_info *si) {
    (void)si;
    unsigned n = (unsigned)cmdline_uint("timers", 5);
    if (n == 0 || n > 1000)
        n = 5;
    puts("xentest: PV-on-HVM self-test\n");
    find_platform_device();
    detect_xen();
    install_hypercall_page();
    check_version();
    map_shared_info();
    set_callback_vector();
    timer_test(n);
    event_tests();
    uint64_t h = grant_test();
    close_all();
    uint64_t sum = fnv64_u64(fnv64_u64(fnv64_u64(FNV64_INIT, page_fnv), h), n);
    XCHECK(console_error == 0, "console_io(CONSOLEIO_write) returned %ld", console_error);
    printf("PASS xentest %016llx\n", (unsigned long long)sum);
    shutdown(SHUTDOWN_poweroff);
}
