/*
 * vtlab reference guest kernel.
 *
 * A small preemptive kernel for benchmarking virtualization: its own 16550 UART console (COM1),
 * its own page tables and IDT, demand paging from a frame pool, processes in separate address
 * spaces at CPL 3 with copy-on-write fork, a round-robin scheduler driven by the local APIC
 * timer (x2APIC through MSRs; xAPIC MMIO only where the CPU lacks x2APIC), INT 0x80 system
 * calls, and an ATA PIO disk driver. The workload is chosen on the command line:
 *
 *   workload=compute|ptemod|forkwait|disk  plus  iterations=N procs=N pages=N forks=N mib=N ...
 *   workload=pvdisk  (the disk workload's data through blkfront: xen/blkfront.c)
 *   workload=net role=ping|pong count=N  (ARP and ICMP echo through netfront: xen/netfront.c;
 *                                        pong also answers any other stack's echo requests)
 *   workload=nvme mib=N  (the disk workload's data through an NVMe controller: nvme.c)
 *   workload=dmaattack victim=0xADDR  (hostile: NVMe DMA aimed outside the domain's RAM)
 *
 * The PV workloads bring up the Xen platform first (xen/xen.c); the emulated ones never touch it.
 *
 * Uses the shared runtime (PVH entry, exception stubs, string functions, printf, command line);
 * built with -DRT_EXTERNAL_CONSOLE so putc() below (the UART) is the console.
 */
#include "rt.h"
#include "xen/xen.h"
#include "nvme.h"

/* ---------------------------------------------------------------- port I/O */

static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void insw(uint16_t port, void *buf, size_t n) {
    __asm__ volatile("rep insw" : "+D"(buf), "+c"(n) : "d"(port) : "memory");
}
static inline void outsw(uint16_t port, const void *buf, size_t n) {
    __asm__ volatile("rep outsw" : "+S"(buf), "+c"(n) : "d"(port) : "memory");
}

/* ---------------------------------------------------------------- 16550 UART console */

#define COM1 0x3F8
#define UART_THR 0    /* DLAB=0: transmit holding register; DLAB=1: divisor low */
#define UART_IER 1    /* DLAB=0: interrupt enable; DLAB=1: divisor high */
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_LSR_THRE 0x20

static void uart_init(void) {
    outb(COM1 + UART_IER, 0x00);     /* no interrupts */
    outb(COM1 + UART_LCR, 0x80);     /* DLAB */
    outb(COM1 + UART_THR, 0x01);     /* divisor 1: 115200 baud */
    outb(COM1 + UART_IER, 0x00);
    outb(COM1 + UART_LCR, 0x03);     /* 8N1, DLAB off */
    outb(COM1 + UART_FCR, 0x07);     /* FIFOs on and cleared */
    outb(COM1 + UART_MCR, 0x03);     /* DTR, RTS */
}

void putc(char c) {
    while (!(inb(COM1 + UART_LSR) & UART_LSR_THRE))
        ;
    outb(COM1 + UART_THR, (uint8_t)c);
}

/* ---------------------------------------------------------------- command line */

static int verbose;

/* Copies the value of "key=value" into out (NUL-terminated); returns 0 when absent. */
static int cmdline_str(const char *key, char *out, size_t size) {
    const char *p = cmdline();
    size_t klen = strlen(key);
    while (*p) {
        while (*p == ' ')
            p++;
        const char *tok = p;
        while (*p && *p != ' ')
            p++;
        if ((size_t)(p - tok) > klen && memcmp(tok, key, klen) == 0 && tok[klen] == '=') {
            size_t n = (size_t)(p - tok) - klen - 1;
            if (n >= size)
                n = size - 1;
            memcpy(out, tok + klen + 1, n);
            out[n] = 0;
            return 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- GDT, TSS, IDT */

#define KERNEL_CS 0x08
#define USER_DS   0x23   /* 0x20 | RPL 3 */
#define USER_CS   0x2B   /* 0x28 | RPL 3 */
#define TSS_SEL   0x30

struct __attribute__((packed)) tss64 {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
};

static struct tss64 tss __attribute__((aligned(16)));
static uint8_t kernel_stack[16384] __attribute__((aligned(16)));

static void tss_init(void) {
    tss.rsp[0] = (uint64_t)(uintptr_t)(kernel_stack + sizeof kernel_stack);
    tss.iomap_base = sizeof tss;   /* no I/O bitmap: CPL 3 may not use ports */
    uint64_t base = (uint64_t)(uintptr_t)&tss, limit = sizeof tss - 1;
    gdt[6] = (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (0x89ull << 40) |
             (((limit >> 16) & 0xF) << 48) | (((base >> 24) & 0xFF) << 56);
    gdt[7] = base >> 32;
    __asm__ volatile("ltr %w0" : : "r"(TSS_SEL));
}

struct idt_gate {
    uint16_t offset_lo, selector;
    uint8_t ist, type_attr;
    uint16_t offset_mid;
    uint32_t offset_hi, reserved;
};

static struct idt_gate kidt[256] __attribute__((aligned(16)));
extern const uint64_t trap_stubs[32];
extern const uint64_t trap_stub_int80;
extern char irq_stub_timer[], irq_stub_spurious[];

#define VEC_TIMER    0x20
#define VEC_SYSCALL  0x80
#define VEC_SPURIOUS 0xFF

static void kidt_set(unsigned v, uint64_t addr, unsigned dpl) {
    kidt[v] = (struct idt_gate){ (uint16_t)addr, KERNEL_CS, 0, (uint8_t)(0x8E | (dpl << 5)),
                                 (uint16_t)(addr >> 16), (uint32_t)(addr >> 32), 0 };
}

static void kidt_init(void) {
    for (unsigned v = 0; v < 32; v++)
        kidt_set(v, trap_stubs[v], 0);
    kidt_set(VEC_TIMER, (uint64_t)(uintptr_t)irq_stub_timer, 0);
    kidt_set(VEC_SPURIOUS, (uint64_t)(uintptr_t)irq_stub_spurious, 0);
    kidt_set(VEC_SYSCALL, trap_stub_int80, 3);
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr = {
        sizeof kidt - 1, (uint64_t)(uintptr_t)kidt
    };
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

/* ---------------------------------------------------------------- physical frames */

#define PAGE 4096ull
#define PTE_PCD 0x010ull
#define PTE_PWT 0x008ull
#define PTE_COW 0x200ull   /* software bit: read-only because shared copy-on-write */
#define KERNEL_MAP_TOP (1ull << 30)

extern char __user_start[], __user_end[], __user_phys[];
extern void user_entry(void);

static uint64_t pool_start, pool_end, free_list, frames_free;
static uint8_t frame_ref[KERNEL_MAP_TOP / PAGE];   /* sharers of each pool frame (at most NPROC) */

static int is_pool(uint64_t pa) { return pa >= pool_start && pa < pool_end; }

static void pool_init(struct hvm_start_info *si) {
    uint64_t top = 32ull << 20;
    if (si->version >= 1 && si->memmap_paddr) {
        const struct hvm_memmap_table_entry *e = (const void *)(uintptr_t)si->memmap_paddr;
        for (uint32_t i = 0; i < si->memmap_entries; i++)
            if (e[i].type == XEN_HVM_MEMMAP_TYPE_RAM && e[i].addr <= 0x100000 && e[i].addr + e[i].size > 0x100000)
                top = e[i].addr + e[i].size;
    }
    if (top > KERNEL_MAP_TOP)
        top = KERNEL_MAP_TOP;
    pool_start = ((uint64_t)(uintptr_t)__image_end + PAGE - 1) & ~(PAGE - 1);
    pool_end = top & ~(PAGE - 1);
    if (pool_end <= pool_start + (1u << 20))
        panic("not enough memory: top 0x%llx", (unsigned long long)top);
    /* the free list in ascending order, so allocation is deterministic */
    for (uint64_t pa = pool_end - PAGE; pa >= pool_start; pa -= PAGE) {
        *(uint64_t *)(uintptr_t)pa = free_list;
        free_list = pa;
        frames_free++;
    }
}

/* Whole pages are zeroed and copied eight bytes at a time (REP STOSQ / REP MOVSQ). */
static void zero_page(uint64_t pa) {
    void *d = (void *)(uintptr_t)pa;
    size_t n = PAGE / 8;
    __asm__ volatile("rep stosq" : "+D"(d), "+c"(n) : "a"(0ull) : "memory");
}

static void copy_page(uint64_t dst, uint64_t src) {
    void *d = (void *)(uintptr_t)dst;
    const void *s = (const void *)(uintptr_t)src;
    size_t n = PAGE / 8;
    __asm__ volatile("rep movsq" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
}

static uint64_t frame_alloc(void) {
    uint64_t pa = free_list;
    if (!pa)
        panic("out of frames");
    free_list = *(uint64_t *)(uintptr_t)pa;
    frames_free--;
    zero_page(pa);
    frame_ref[pa / PAGE] = 1;
    return pa;
}

static void frame_put(uint64_t pa) {
    if (!is_pool(pa))
        return;
    if (frame_ref[pa / PAGE] == 0)
        panic("frame 0x%llx freed twice", (unsigned long long)pa);
    if (--frame_ref[pa / PAGE])
        return;
    *(uint64_t *)(uintptr_t)pa = free_list;
    free_list = pa;
    frames_free++;
}

/* ---------------------------------------------------------------- page tables */

/* Kernel tables: PML4[0] -> PDPT: [0] the first 1 GiB in 2 MiB pages (supervisor),
   [3] a PD with the local APIC page (xAPIC fallback only). User space: PDPT[1] and [2]
   (0x40000000..0xBFFFFFFF), per process. */
static uint64_t kpml4[512] __attribute__((aligned(4096)));
static uint64_t kpdpt[512] __attribute__((aligned(4096)));
static uint64_t kpd[512] __attribute__((aligned(4096)));
static uint64_t kpd_apic[512] __attribute__((aligned(4096)));

#define USER_BASE      0x40000000ull
#define USER_CODE      USER_BASE
#define USER_HEAP      0x50000000ull
#define USER_STACK_LO  0x7FF00000ull
#define USER_TOP       0x80000000ull

static void paging_init(void) {
    for (uint64_t i = 0; i < 512; i++)
        kpd[i] = (i << 21) | PTE_P | PTE_W | PTE_PS;
    kpdpt[0] = (uint64_t)(uintptr_t)kpd | PTE_P | PTE_W;
    kpd_apic[0xFEE00000ull >> 21 & 511] = 0xFEE00000ull | PTE_P | PTE_W | PTE_PS | PTE_PCD | PTE_PWT;
    kpdpt[3] = (uint64_t)(uintptr_t)kpd_apic | PTE_P | PTE_W;
    kpml4[0] = (uint64_t)(uintptr_t)kpdpt | PTE_P | PTE_W;
    write_cr3((uint64_t)(uintptr_t)kpml4);
}

static uint64_t *table(uint64_t entry) { return (uint64_t *)(uintptr_t)(entry & PTE_ADDR_MASK); }

/* The PTE of va in the address space rooted at pml4 (allocating tables when create), or NULL. */
static uint64_t *pte_of(uint64_t cr3, uint64_t va, int create) {
    uint64_t *pdpt = table(table(cr3)[0]);
    uint64_t *e = &pdpt[(va >> 30) & 511];
    for (int level = 0; level < 2; level++) {
        if (!(*e & PTE_P)) {
            if (!create)
                return 0;
            *e = frame_alloc() | PTE_P | PTE_W | PTE_U;
        }
        e = &table(*e)[(va >> (21 - 9 * level)) & 511];
    }
    return e;
}

/* ---------------------------------------------------------------- processes */

#define NPROC 32
enum { P_FREE, P_RUNNABLE, P_WAITING, P_ZOMBIE };

struct proc {
    int state;
    uint64_t pid, parent;
    uint64_t cr3;
    uint64_t status;
    struct trap_frame tf;
};

static struct proc procs[NPROC];
static struct proc *cur;
static uint64_t next_pid = 1;
static uint64_t report_checksum;
static int report_ok = -1;
static const char *workload_name;

static struct {
    uint64_t ticks, switches, faults, cow_copies, cow_reuse, forks, exits, syscalls, unmapped;
} stats;

static uint64_t as_create(void) {
    uint64_t pml4 = frame_alloc(), pdpt = frame_alloc();
    table(pml4)[0] = pdpt | PTE_P | PTE_W | PTE_U;
    table(pdpt)[0] = kpdpt[0];
    table(pdpt)[3] = kpdpt[3];
    return pml4;
}

/* Maps the user program (code and read-only data) read-only at USER_CODE. */
static void as_map_code(uint64_t cr3) {
    uint64_t n = (uint64_t)(__user_end - __user_start);
    for (uint64_t off = 0; off < n; off += PAGE)
        *pte_of(cr3, USER_CODE + off, 1) = ((uint64_t)(uintptr_t)__user_phys + off) | PTE_P | PTE_U;
}

/* Frees every user page and table of an address space, and the address space itself. */
static void as_destroy(uint64_t cr3) {
    uint64_t *pdpt = table(table(cr3)[0]);
    for (int i = 1; i < 3; i++) {
        if (!(pdpt[i] & PTE_P))
            continue;
        uint64_t *pd = table(pdpt[i]);
        for (int j = 0; j < 512; j++) {
            if (!(pd[j] & PTE_P))
                continue;
            uint64_t *pt = table(pd[j]);
            for (int k = 0; k < 512; k++)
                if (pt[k] & PTE_P)
                    frame_put(pt[k] & PTE_ADDR_MASK);
            frame_put(pd[j] & PTE_ADDR_MASK);
        }
        frame_put(pdpt[i] & PTE_ADDR_MASK);
    }
    frame_put(table(cr3)[0] & PTE_ADDR_MASK);
    frame_put(cr3);
}

/* Copies the user part of an address space; writable pool pages become shared copy-on-write. */
static uint64_t as_fork(uint64_t src) {
    uint64_t dst = as_create();
    uint64_t *spdpt = table(table(src)[0]), *dpdpt = table(table(dst)[0]);
    for (int i = 1; i < 3; i++) {
        if (!(spdpt[i] & PTE_P))
            continue;
        uint64_t dpd_pa = frame_alloc();
        dpdpt[i] = dpd_pa | PTE_P | PTE_W | PTE_U;
        uint64_t *spd = table(spdpt[i]), *dpd = table(dpd_pa);
        for (int j = 0; j < 512; j++) {
            if (!(spd[j] & PTE_P))
                continue;
            uint64_t dpt_pa = frame_alloc();
            dpd[j] = dpt_pa | PTE_P | PTE_W | PTE_U;
            uint64_t *spt = table(spd[j]), *dpt = table(dpt_pa);
            for (int k = 0; k < 512; k++) {
                uint64_t e = spt[k];
                if (!(e & PTE_P))
                    continue;
                uint64_t pa = e & PTE_ADDR_MASK;
                if (is_pool(pa)) {
                    if (e & PTE_W)
                        e = (e & ~PTE_W) | PTE_COW;
                    spt[k] = e;
                    frame_ref[pa / PAGE]++;
                }
                dpt[k] = e;
            }
        }
    }
    write_cr3(src);   /* the parent's writable PTEs became read-only: flush its TLB */
    return dst;
}

static struct proc *proc_alloc(void) {
    for (int i = 0; i < NPROC; i++)
        if (procs[i].state == P_FREE) {
            memset(&procs[i], 0, sizeof procs[i]);
            procs[i].pid = next_pid++;
            return &procs[i];
        }
    return 0;
}

static void finish(void) __attribute__((noreturn));

/* Saves the interrupted context (frame f) of cur and resumes next in f. */
static void switch_to(struct trap_frame *f, struct proc *next) {
    if (next == cur)
        return;
    if (cur && cur->state != P_FREE && cur->state != P_ZOMBIE)
        cur->tf = *f;
    *f = next->tf;
    write_cr3(next->cr3);
    cur = next;
    stats.switches++;
}

/* Round robin: the next runnable process after cur (cur itself last). */
static struct proc *pick_next(void) {
    int start = cur ? (int)(cur - procs) : NPROC - 1;
    for (int n = 1; n <= NPROC; n++) {
        struct proc *p = &procs[(start + n) % NPROC];
        if (p->state == P_RUNNABLE)
            return p;
    }
    return 0;
}

static void schedule(struct trap_frame *f) {
    struct proc *next = pick_next();
    if (!next)
        finish();
    switch_to(f, next);
}

static void reap(struct proc *parent, struct proc *child) {
    parent->tf.rax = child->pid;
    parent->tf.rdx = child->status;
    child->state = P_FREE;
}

static void proc_exit(struct trap_frame *f, uint64_t status) {
    struct proc *p = cur;
    write_cr3((uint64_t)(uintptr_t)kpml4);
    as_destroy(p->cr3);
    p->cr3 = 0;
    p->status = status;
    p->state = P_ZOMBIE;
    stats.exits++;
    for (int i = 0; i < NPROC; i++)   /* orphans are reaped by nobody: free their slots */
        if (procs[i].parent == p->pid) {
            procs[i].parent = 0;
            if (procs[i].state == P_ZOMBIE)
                procs[i].state = P_FREE;
        }
    if (p->pid == 1)
        finish();
    struct proc *parent = 0;
    for (int i = 0; i < NPROC; i++)
        if (procs[i].state != P_FREE && procs[i].pid == p->parent)
            parent = &procs[i];
    if (!parent)
        p->state = P_FREE;
    else if (parent->state == P_WAITING) {
        reap(parent, p);
        parent->state = P_RUNNABLE;
    }
    schedule(f);
}

/* ---------------------------------------------------------------- page faults */

static int user_range(uint64_t va, uint64_t len) {
    return va >= USER_BASE && va < USER_TOP && len <= USER_TOP - va;
}

/* Resolves a fault at va in the current address space; returns 0 if it is a real violation. */
static int resolve_fault(uint64_t va, uint64_t err) {
    if (!cur || !cur->cr3 || va < USER_HEAP || va >= USER_TOP)
        return 0;
    uint64_t *pte = pte_of(cur->cr3, va, 1);
    uint64_t page = va & ~(PAGE - 1);
    if (!(*pte & PTE_P)) {
        *pte = frame_alloc() | PTE_P | PTE_W | PTE_U;   /* demand zero */
        stats.faults++;
        return 1;
    }
    if ((err & 2) && (*pte & PTE_COW)) {
        uint64_t pa = *pte & PTE_ADDR_MASK;
        if (frame_ref[pa / PAGE] == 1) {
            *pte = (*pte & ~PTE_COW) | PTE_W;
            stats.cow_reuse++;
        } else {
            uint64_t copy = frame_alloc();
            copy_page(copy, pa);
            frame_put(pa);
            *pte = copy | PTE_P | PTE_W | PTE_U;
            stats.cow_copies++;
        }
        invlpg((const void *)(uintptr_t)page);
        return 1;
    }
    return 0;
}

static int on_page_fault(struct trap_frame *f) {
    uint64_t va = read_cr2();
    if (resolve_fault(va, f->error_code))
        return 1;
    /* a user access, or the kernel touching a bad user pointer on a process's behalf */
    if ((f->cs & 3) == 3 || (cur && va >= USER_BASE && va < USER_TOP)) {
        printf("FAIL pid %llu: segmentation fault at 0x%llx (error 0x%llx, rip 0x%llx)\n",
               (unsigned long long)cur->pid, (unsigned long long)va,
               (unsigned long long)f->error_code, (unsigned long long)f->rip);
        rt_exit(EXIT_FAILURE_CODE);
    }
    return 0;
}

/* ---------------------------------------------------------------- local APIC timer */

#define MSR_APIC_BASE   0x1B
#define APIC_BASE_EN    (1ull << 11)
#define APIC_BASE_EXTD  (1ull << 10)
#define X2APIC_EOI      0x80B
#define X2APIC_SVR      0x80F
#define X2APIC_LVT_TMR  0x832
#define X2APIC_LVT_LINT0 0x835
#define X2APIC_LVT_LINT1 0x836
#define X2APIC_TMR_INIT 0x838
#define X2APIC_TMR_DIV  0x83E
#define LVT_MASKED      (1u << 16)
#define LVT_PERIODIC    (1u << 17)

/* The legacy 8259 PICs: firmware may leave the PIT's IRQ 0 unmasked, routed through LVT LINT0
   (ExtINT). Masking every IRQ (OCW1 on ports 0x21 and 0xA1) lowers the PIC's INTR output while
   LINT0 still passes it, so no stale ExtINT request survives into user mode. Harmless where
   there is no PIC. */
static void pic_mask_all(void) {
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
}

static int x2apic;
static volatile uint32_t *const xapic = (volatile uint32_t *)(uintptr_t)0xFEE00000u;

/* x2APIC MSR n is the xAPIC register at MMIO offset (n - 0x800) << 4. */
static void apic_write(uint32_t msr, uint32_t v) {
    if (x2apic)
        wrmsr(msr, v);
    else
        xapic[((msr - 0x800) << 4) / 4] = v;
}

/* x2APIC is probed without CPUID: set EXTD and see whether the WRMSR raises #GP (then this
   handler skips it) or leaves the bit clear; either way the xAPIC MMIO page is used instead. */
extern char x2apic_probe_wrmsr[], x2apic_probe_end[];
static volatile int x2apic_probe_faulted;

static int on_general_protection(struct trap_frame *f) {
    if (f->rip != (uint64_t)(uintptr_t)x2apic_probe_wrmsr)
        return 0;
    x2apic_probe_faulted = 1;
    f->rip = (uint64_t)(uintptr_t)x2apic_probe_end;
    return 1;
}

static __attribute__((noinline)) void apic_init(uint32_t count) {
    pic_mask_all();
    uint64_t base = rdmsr(MSR_APIC_BASE) | APIC_BASE_EN;
    wrmsr(MSR_APIC_BASE, base);   /* xAPIC mode first: EXTD may only be set from there */
    trap_set_handler(X86_EXC_GP, on_general_protection);
    uint64_t x2 = base | APIC_BASE_EXTD;
    __asm__ volatile("x2apic_probe_wrmsr: wrmsr\nx2apic_probe_end:"
                     : : "c"(MSR_APIC_BASE), "a"((uint32_t)x2), "d"((uint32_t)(x2 >> 32)) : "memory");
    trap_set_handler(X86_EXC_GP, 0);
    x2apic = !x2apic_probe_faulted && (rdmsr(MSR_APIC_BASE) & APIC_BASE_EXTD);
    apic_write(X2APIC_SVR, 0x100 | VEC_SPURIOUS);
    apic_write(X2APIC_LVT_LINT0, LVT_MASKED);
    apic_write(X2APIC_LVT_LINT1, LVT_MASKED);
    apic_write(X2APIC_TMR_DIV, 0xB);                       /* divide by 1 */
    apic_write(X2APIC_LVT_TMR, LVT_PERIODIC | VEC_TIMER);
    apic_write(X2APIC_TMR_INIT, count);
}

static int on_timer(struct trap_frame *f) {
    stats.ticks++;
    apic_write(X2APIC_EOI, 0);
    if ((f->cs & 3) == 3)
        schedule(f);   /* preempt: round robin */
    return 1;
}

/* ---------------------------------------------------------------- system calls */

enum {
    SYS_WRITE = 0, SYS_EXIT = 1, SYS_FORK = 2, SYS_WAIT = 3, SYS_GETPID = 4, SYS_YIELD = 5,
    SYS_UNMAP = 6, SYS_REPORT = 7,
};

static int on_syscall(struct trap_frame *f) {
    stats.syscalls++;
    switch (f->rax) {
    case SYS_WRITE: {   /* write(buf, len): to the console */
        uint64_t buf = f->rdi, len = f->rsi;
        if (!user_range(buf, len)) {
            f->rax = (uint64_t)-1;
            break;
        }
        for (uint64_t i = 0; i < len; i++)
            putc(((const char *)(uintptr_t)buf)[i]);   /* faults in pages like a user access */
        f->rax = len;
        break;
    }
    case SYS_EXIT:
        proc_exit(f, f->rdi);
        break;
    case SYS_FORK: {
        struct proc *child = proc_alloc();
        if (!child) {
            f->rax = (uint64_t)-1;
            break;
        }
        child->parent = cur->pid;
        child->cr3 = as_fork(cur->cr3);
        child->tf = *f;
        child->tf.rax = 0;
        child->state = P_RUNNABLE;
        stats.forks++;
        f->rax = child->pid;
        break;
    }
    case SYS_WAIT: {    /* wait(): rax = pid of an exited child (or -1), rdx = its status */
        int children = 0;
        for (int i = 0; i < NPROC; i++) {
            struct proc *p = &procs[i];
            if (p->state == P_FREE || p->parent != cur->pid)
                continue;
            children++;
            if (p->state == P_ZOMBIE) {
                reap(cur, p);
                f->rax = cur->tf.rax;
                f->rdx = cur->tf.rdx;
                return 1;
            }
        }
        if (!children) {
            f->rax = (uint64_t)-1;
            break;
        }
        cur->state = P_WAITING;
        cur->tf = *f;
        schedule(f);
        break;
    }
    case SYS_GETPID:
        f->rax = cur->pid;
        break;
    case SYS_YIELD:
        f->rax = 0;
        schedule(f);
        break;
    case SYS_UNMAP: {   /* unmap(addr, len): drop heap pages; they fault in again zeroed */
        uint64_t va = f->rdi & ~(PAGE - 1), end = f->rdi + f->rsi;
        if (!user_range(va, f->rsi) || va < USER_HEAP) {
            f->rax = (uint64_t)-1;
            break;
        }
        for (; va < end; va += PAGE) {
            uint64_t *pte = pte_of(cur->cr3, va, 0);
            if (pte && (*pte & PTE_P)) {
                frame_put(*pte & PTE_ADDR_MASK);
                *pte = 0;
                invlpg((const void *)(uintptr_t)va);
                stats.unmapped++;
            }
        }
        f->rax = 0;
        break;
    }
    case SYS_REPORT:    /* report(checksum, ok): the workload's result, printed at the end */
        report_checksum = f->rdi;
        report_ok = f->rsi != 0;
        f->rax = 0;
        break;
    default:
        f->rax = (uint64_t)-1;
    }
    /* a waiting process resumed by switch_to already has its rax/rdx from reap() */
    return 1;
}

/* ---------------------------------------------------------------- ATA PIO */

#define ATA_DATA    0x1F0
#define ATA_ERROR   0x1F1
#define ATA_COUNT   0x1F2
#define ATA_LBA0    0x1F3
#define ATA_LBA1    0x1F4
#define ATA_LBA2    0x1F5
#define ATA_DRIVE   0x1F6
#define ATA_STATUS  0x1F7   /* read: status; write: command */
#define ATA_CTRL    0x3F6   /* write: device control; read: alternate status */
#define ATA_BSY 0x80
#define ATA_DRDY 0x40
#define ATA_DF  0x20
#define ATA_DRQ 0x08
#define ATA_ERR 0x01
#define ATA_NIEN 0x02

#define ATA_CMD_READ_SECTORS   0x20
#define ATA_CMD_WRITE_SECTORS  0x30
#define ATA_CMD_READ_MULTIPLE  0xC4
#define ATA_CMD_WRITE_MULTIPLE 0xC5
#define ATA_CMD_SET_MULTIPLE   0xC6
#define ATA_CMD_IDENTIFY       0xEC

static uint8_t ata_wait_idle(void) {
    uint8_t s;
    for (uint64_t n = 0;; n++) {
        s = inb(ATA_STATUS);
        if (!(s & ATA_BSY))
            return s;
        if (n > 100000000)
            panic("ata: BSY timeout");
    }
}

static void ata_wait_drq(const char *what) {
    uint8_t s = ata_wait_idle();
    if (s & (ATA_ERR | ATA_DF))
        panic("ata: %s: status 0x%02x error 0x%02x", what, s, inb(ATA_ERROR));
    if (!(s & ATA_DRQ))
        panic("ata: %s: no DRQ (status 0x%02x)", what, s);
}

static void ata_delay(void) {   /* 400 ns: four reads of the alternate status */
    for (int i = 0; i < 4; i++)
        (void)inb(ATA_CTRL);
}

static void ata_command(uint8_t cmd, uint32_t lba, uint32_t count) {
    ata_wait_idle();
    outb(ATA_DRIVE, (uint8_t)(0xE0 | ((lba >> 24) & 0x0F)));   /* master, LBA */
    ata_delay();
    ata_wait_idle();
    outb(ATA_COUNT, (uint8_t)count);   /* 256 is written as 0 */
    outb(ATA_LBA0, (uint8_t)lba);
    outb(ATA_LBA1, (uint8_t)(lba >> 8));
    outb(ATA_LBA2, (uint8_t)(lba >> 16));
    outb(ATA_STATUS, cmd);
    ata_delay();
}

static uint16_t ident[256];

/* Identifies the primary master; returns its LBA28 sector count, 0 when there is no disk. */
static uint32_t ata_identify(void) {
    outb(ATA_CTRL, ATA_NIEN);   /* no disk interrupts: everything is polled */
    outb(ATA_DRIVE, 0xA0);
    ata_delay();
    if (inb(ATA_STATUS) == 0xFF)
        return 0;   /* floating bus */
    ata_command(ATA_CMD_IDENTIFY, 0, 0);
    if (inb(ATA_STATUS) == 0)   /* no device */
        return 0;
    ata_wait_drq("IDENTIFY");
    insw(ATA_DATA, ident, 256);
    if (!(ident[49] & (1u << 9)))
        panic("ata: no LBA support");
    return ident[60] | (uint32_t)ident[61] << 16;
}

static void ata_set_multiple(unsigned count) {
    ata_command(ATA_CMD_SET_MULTIPLE, 0, count);
    uint8_t s = ata_wait_idle();
    if (s & ATA_ERR)
        panic("ata: SET MULTIPLE %u rejected (error 0x%02x)", count, inb(ATA_ERROR));
}

/* pioword=1 on the command line: move data a word per IN/OUT instead of REP INSW/OUTSW, as
 * older drivers do (under a hypervisor, every word is then its own I/O exit). */
static unsigned pio_word;

/* Transfers count (1..256) sectors at lba; block = sectors per DRQ (1, or the multiple count). */
static void ata_rw(int write, uint32_t lba, unsigned count, unsigned block, void *buf) {
    uint8_t cmd = block > 1 ? (write ? ATA_CMD_WRITE_MULTIPLE : ATA_CMD_READ_MULTIPLE)
                            : (write ? ATA_CMD_WRITE_SECTORS : ATA_CMD_READ_SECTORS);
    ata_command(cmd, lba, count & 0xFF);
    uint16_t *p = buf;
    for (unsigned done = 0; done < count;) {
        unsigned n = count - done < block ? count - done : block;
        ata_wait_drq(write ? "write" : "read");
        if (pio_word && write)
            for (unsigned k = 0; k < 256 * n; k++) outw(ATA_DATA, p[k]);
        else if (pio_word)
            for (unsigned k = 0; k < 256 * n; k++) p[k] = inw(ATA_DATA);
        else if (write)
            outsw(ATA_DATA, p, 256 * n);
        else
            insw(ATA_DATA, p, 256 * n);
        p += 256 * n;
        done += n;
    }
    uint8_t s = ata_wait_idle();
    if (s & (ATA_ERR | ATA_DF))
        panic("ata: status 0x%02x error 0x%02x after %s at lba %u", s, inb(ATA_ERROR), write ? "write" : "read", lba);
}

static uint64_t splitmix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

#define DISK_CHUNK 128   /* sectors per command */
static uint64_t disk_buf[DISK_CHUNK * 64];

/* The disk workloads' data: qword k of sector lba is splitmix(lba << 6 | k). */
static void fill_sectors(uint64_t *buf, uint32_t lba, unsigned count) {
    for (unsigned s = 0; s < count; s++)
        for (unsigned k = 0; k < 64; k++)
            buf[s * 64 + k] = splitmix(((uint64_t)(lba + s) << 6) | k);
}

/* Check `count` sectors read back from lba against fill_sectors' data (the first mismatches
 * printed, all counted in *bad) and fold every qword into the FNV-1a checksum `sum`. */
static uint64_t check_sectors(const char *who, const uint64_t *buf, uint32_t lba, unsigned count, uint64_t *bad, uint64_t sum) {
    for (unsigned i = 0; i < count; i++)
        for (unsigned k = 0; k < 64; k++) {
            uint64_t v = buf[i * 64 + k];
            if (v != splitmix(((uint64_t)(lba + i) << 6) | k) && (*bad)++ < 4)
                printf("%s: MISMATCH lba %u qword %u\n", who, lba + i, k);
            sum = (sum ^ v) * 0x100000001b3ull;
        }
    return sum;
}

static void fill(uint32_t lba, unsigned count) {
    fill_sectors(disk_buf, lba, count);
}

static void workload_disk(void) __attribute__((noreturn));
static void workload_disk(void) {
    uint64_t mib = cmdline_uint("mib", 2), lba0 = cmdline_uint("lba", 0), kib = cmdline_uint("kib", 0);
    unsigned mult = (unsigned)cmdline_uint("multiple", 8);
    pio_word = cmdline_uint("pioword", 0) != 0;
    uint32_t sectors = (uint32_t)(mib * 2048);
    if (kib) {   /* kib=N: a size below a MiB (N a multiple of 64: whole commands) */
        if (kib % 64 || kib > 4096 * 1024)
            panic("disk: kib must be a multiple of 64");
        sectors = (uint32_t)(kib * 2);
        mib = (kib + 1023) / 1024;
    }
    if (mib == 0 || mib > 4096 || mult == 0 || mult > 128 || (mult & (mult - 1)))
        panic("disk: bad parameters mib=%llu multiple=%u", (unsigned long long)mib, mult);
    uint32_t capacity = ata_identify();
    if (!capacity)
        panic("disk: no ATA disk on the primary channel");
    unsigned max_mult = ident[47] & 0xFF;
    if (verbose)
        printf("ata: %u sectors, max multiple %u\n", capacity, max_mult);
    if (lba0 + sectors > capacity)
        panic("disk: %u sectors from lba %llu do not fit the disk", sectors, (unsigned long long)lba0);
    if (mult > max_mult)
        mult = max_mult ? max_mult : 1;
    if (mult > 1)
        ata_set_multiple(mult);
    if (kib)
        printf("disk: %llu KiB (%u sectors) from lba %llu, multiple %u\n", (unsigned long long)kib, sectors,
               (unsigned long long)lba0, mult);
    else
        printf("disk: %llu MiB (%u sectors) from lba %llu, multiple %u\n", (unsigned long long)mib, sectors,
               (unsigned long long)lba0, mult);
    /* first half with WRITE SECTORS, second half with WRITE MULTIPLE; read back the other way */
    uint32_t half = sectors / 2;
    for (uint32_t s = 0; s < sectors; s += DISK_CHUNK) {
        unsigned n = sectors - s < DISK_CHUNK ? sectors - s : DISK_CHUNK;
        uint32_t lba = (uint32_t)lba0 + s;
        fill(lba, n);
        ata_rw(1, lba, n, s < half ? 1 : mult, disk_buf);
    }
    printf("disk: wrote %u sectors (WRITE SECTORS then WRITE MULTIPLE)\n", sectors);
    uint64_t sum = FNV64_INIT, bad = 0;
    for (uint32_t s = 0; s < sectors; s += DISK_CHUNK) {
        unsigned n = sectors - s < DISK_CHUNK ? sectors - s : DISK_CHUNK;
        uint32_t lba = (uint32_t)lba0 + s;
        ata_rw(0, lba, n, s < half ? mult : 1, disk_buf);
        sum = check_sectors("disk", disk_buf, lba, n, &bad, sum);
    }
    if (bad) {
        panic("disk: %llu qwords differ", (unsigned long long)bad);
    }
    printf("disk: read back %u sectors (READ MULTIPLE then READ SECTORS), all match\n", sectors);
    report_checksum = sum;
    report_ok = 1;
    finish();
}

/* ---------------------------------------------------------------- Xen PV workloads */

/* The platform BAR (grant-table frame 0) in 2 MiB pages of the kernel's 4th GiB directory. */
static void xen_map_mmio(uint64_t pa, uint64_t size) {
    if (pa < (3ull << 30) || pa + size > (4ull << 30))
        panic("xen: platform BAR at 0x%llx is outside the 4th GiB", (unsigned long long)pa);
    for (uint64_t a = pa & ~((1ull << 21) - 1); a < pa + size; a += 1ull << 21) {
        uint64_t *e = &kpd_apic[(a >> 21) & 511];
        if (*e && (*e & PTE_ADDR_MASK) != a)
            panic("xen: platform BAR overlaps the local APIC page");
        *e = a | PTE_P | PTE_W | PTE_PS | PTE_PCD | PTE_PWT;
    }
    write_cr3(read_cr3());
}

static void xen_set_gate(unsigned vector, void (*entry)(void)) {
    kidt_set(vector, (uint64_t)(uintptr_t)entry, 0);
}

static void xen_bring_up(const char *what) {
    if (xen_init(xen_map_mmio, xen_set_gate) != 0)
        panic("%s: no Xen PV platform", what);
}

static void xen_verbose_counts(void) {
    if (verbose)
        printf("xen: hypercalls %llu notifies %llu polls %llu upcalls %llu grants %llu xenstore-requests %llu watch-events %llu\n",
               (unsigned long long)xen_count.hypercalls, (unsigned long long)xen_count.notifies,
               (unsigned long long)xen_count.polls, (unsigned long long)xen_count.upcalls, (unsigned long long)xen_count.grants,
               (unsigned long long)xen_count.xs_requests, (unsigned long long)xen_count.watch_events);
}

/* pvdisk moves BLKFRONT_MAX_BATCH_PAGES pages (256 KiB) per ring batch. */
#define PV_CHUNK (BLKFRONT_MAX_BATCH_PAGES * 8)
static uint64_t pv_buf[PV_CHUNK * 64] __attribute__((aligned(4096)));

static void pv_fill(uint32_t lba, unsigned count) {
    fill_sectors(pv_buf, lba, count);
}

/*
 * The disk workload's data (splitmix of sector and qword, the same FNV-1a fold in sector
 * order) written and read back through blkfront: the checksum equals `disk`'s for the same
 * mib/kib and lba, by construction. Sizes in whole pages (kib a multiple of 4).
 */
static void workload_pvdisk(void) __attribute__((noreturn));
static void workload_pvdisk(void) {
    uint64_t mib = cmdline_uint("mib", 2), lba0 = cmdline_uint("lba", 0), kib = cmdline_uint("kib", 0);
    uint64_t vbd = cmdline_uint("vbd", 51712);   /* xvda: (202 << 8) | 0 */
    uint32_t sectors = (uint32_t)(mib * 2048);
    if (kib) {
        if (kib % 4 || kib > 4096 * 1024)
            panic("pvdisk: kib must be a multiple of 4");
        sectors = (uint32_t)(kib * 2);
    } else if (mib == 0 || mib > 4096) {
        panic("pvdisk: bad parameters mib=%llu", (unsigned long long)mib);
    }
    if (lba0 % 8)
        panic("pvdisk: lba must be a multiple of 8");
    xen_bring_up("pvdisk");
    /* The vbd takes over from the emulated disk (the same image on Xen HVM): unplug it. */
    if (xen_unplug(XEN_UNPLUG_ALL_IDE_DISKS) != 0)
        panic("pvdisk: the platform device has no unplug protocol");
    char dir[48];
    snprintf(dir, sizeof dir, "device/vbd/%llu", (unsigned long long)vbd);
    static struct blkfront_info bi;
    if (blkfront_init(dir, &bi) != 0)
        panic("pvdisk: blkfront did not connect on %s", dir);
    if (verbose)
        printf("blkfront: %s backend domain %u, %llu sectors, flush %s\n", dir, bi.backend_id,
               (unsigned long long)bi.sectors, bi.flush ? "yes" : "no");
    if (lba0 + sectors > bi.sectors)
        panic("pvdisk: %u sectors from %llu do not fit the vbd", sectors, (unsigned long long)lba0);
    if (kib)
        printf("pvdisk: %llu KiB (%u sectors) from sector %llu through blkfront\n", (unsigned long long)kib, sectors,
               (unsigned long long)lba0);
    else
        printf("pvdisk: %llu MiB (%u sectors) from sector %llu through blkfront\n", (unsigned long long)mib, sectors,
               (unsigned long long)lba0);
    for (uint32_t s = 0; s < sectors; s += PV_CHUNK) {
        unsigned n = sectors - s < PV_CHUNK ? sectors - s : PV_CHUNK;
        uint32_t lba = (uint32_t)lba0 + s;
        pv_fill(lba, n);
        if (blkfront_rw(1, lba, n, pv_buf) != 0)
            panic("pvdisk: write of %u sectors at %u failed", n, lba);
    }
    if (blkfront_flush() != 0)
        panic("pvdisk: flush failed");
    printf("pvdisk: wrote %u sectors\n", sectors);
    uint64_t sum = FNV64_INIT, bad = 0;
    for (uint32_t s = 0; s < sectors; s += PV_CHUNK) {
        unsigned n = sectors - s < PV_CHUNK ? sectors - s : PV_CHUNK;
        uint32_t lba = (uint32_t)lba0 + s;
        memset(pv_buf, 0, (size_t)n * 512);
        if (blkfront_rw(0, lba, n, pv_buf) != 0)
            panic("pvdisk: read of %u sectors at %u failed", n, lba);
        sum = check_sectors("pvdisk", pv_buf, lba, n, &bad, sum);
    }
    if (bad)
        panic("pvdisk: %llu qwords differ", (unsigned long long)bad);
    printf("pvdisk: read back %u sectors, all match\n", sectors);
    int ended = blkfront_close();
    if (ended < 0)
        panic("pvdisk: the backend did not close");
    if (verbose)
        printf("blkfront: closed (Closing, Closed on both ends), foreign access ended on %d grants\n", ended);
    if (verbose)
        printf("blkfront: requests %llu segments %llu responses %llu batches %llu\n", (unsigned long long)bi.requests,
               (unsigned long long)bi.segments, (unsigned long long)bi.responses, (unsigned long long)bi.batches);
    xen_verbose_counts();
    report_checksum = sum;
    report_ok = 1;
    finish();
}

/* ---- net: ARP, then ICMP echo between two domains on one bridge (10.0.0.1 pings 10.0.0.2) */

#define ETH_ARP 0x0806
#define ETH_IP 0x0800
#define ICMP_PAYLOAD 56
#define ICMP_ID 0x7674   /* "vt" */
#define NET_FRAME_MAX 1514

static uint8_t my_mac[6], peer_mac[6];
static uint32_t my_ip, peer_ip;
static uint8_t frame[NET_FRAME_MAX], rxf[NET_FRAME_MAX];

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)); put16(p + 2, (uint16_t)v); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }

/* The Internet checksum (RFC 1071): 0 when a header with its checksum field is intact. */
static uint16_t inet_csum(const uint8_t *p, size_t n) {
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < n; i += 2)
        s += get16(p + i);
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static void eth_header(const uint8_t *dst, uint16_t type) {
    memcpy(frame, dst, 6);
    memcpy(frame + 6, my_mac, 6);
    put16(frame + 12, type);
}

static void net_send(size_t len) {
    if (len < 60) {   /* the Ethernet minimum, zero padded */
        memset(frame + len, 0, 60 - len);
        len = 60;
    }
    if (netfront_send(frame, len) != 0)
        panic("net: netfront_send failed");
}

static void send_arp(uint16_t oper, const uint8_t *dst_mac, const uint8_t *tha, uint32_t tpa) {
    static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    eth_header(dst_mac ? dst_mac : bcast, ETH_ARP);
    uint8_t *a = frame + 14;
    put16(a, 1);
    put16(a + 2, ETH_IP);
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, oper);
    memcpy(a + 8, my_mac, 6);
    put32(a + 14, my_ip);
    if (tha)
        memcpy(a + 18, tha, 6);
    else
        memset(a + 18, 0, 6);
    put32(a + 24, tpa);
    net_send(42);
}

static uint8_t payload_byte(unsigned seq, unsigned k) { return (uint8_t)(seq * 31u + k * 7u + 0x5a); }

static void send_icmp(uint8_t type, uint16_t seq, const uint8_t *payload) {
    eth_header(peer_mac, ETH_IP);
    uint8_t *ip = frame + 14, *ic = ip + 20;
    ip[0] = 0x45;
    ip[1] = 0;
    put16(ip + 2, 20 + 8 + ICMP_PAYLOAD);
    put16(ip + 4, seq);
    put16(ip + 6, 0x4000);   /* DF */
    ip[8] = 64;
    ip[9] = 1;               /* ICMP */
    put16(ip + 10, 0);
    put32(ip + 12, my_ip);
    put32(ip + 16, peer_ip);
    put16(ip + 10, inet_csum(ip, 20));
    ic[0] = type;
    ic[1] = 0;
    put16(ic + 2, 0);
    put16(ic + 4, ICMP_ID);
    put16(ic + 6, seq);
    memcpy(ic + 8, payload, ICMP_PAYLOAD);
    put16(ic + 2, inet_csum(ic, 8 + ICMP_PAYLOAD));
    net_send(14 + 20 + 8 + ICMP_PAYLOAD);
}

/* A received IPv4 ICMP echo of ours (type), checked: both checksums, addresses, id, length. */
static int parse_icmp(const uint8_t *f, int n, uint8_t type, uint16_t *seq, const uint8_t **payload) {
    if (n < 14 + 20 + 8 + ICMP_PAYLOAD || get16(f + 12) != ETH_IP)
        return 0;
    const uint8_t *ip = f + 14, *ic = ip + 20;
    if (ip[0] != 0x45 || ip[9] != 1 || get16(ip + 2) != 20 + 8 + ICMP_PAYLOAD || inet_csum(ip, 20) != 0 ||
        get32(ip + 12) != peer_ip || get32(ip + 16) != my_ip)
        return 0;
    if (ic[0] != type || ic[1] != 0 || get16(ic + 4) != ICMP_ID || inet_csum(ic, 8 + ICMP_PAYLOAD) != 0)
        return 0;
    *seq = get16(ic + 6);
    *payload = ic + 8;
    return 1;
}

/*
 * Any other host's ICMP echo request to us (RFC 792: any identifier, sequence number and data,
 * as Linux's or busybox's ping sends them): answered as an IP stack does, the reply carrying the
 * request's identifier, sequence number and data. Returns the sequence number answered, or -1
 * when the frame is not such a request (checked: IPv4 without options, both checksums, our
 * address, from the peer, a length inside the frame).
 */
static int answer_any_echo(const uint8_t *f, int n) {
    if (n < 14 + 20 + 8 || get16(f + 12) != ETH_IP)
        return -1;
    const uint8_t *ip = f + 14, *ic = ip + 20;
    unsigned total = get16(ip + 2);
    if (ip[0] != 0x45 || ip[9] != 1 || total < 20 + 8 || total > (unsigned)n - 14 || inet_csum(ip, 20) != 0 ||
        get32(ip + 12) != peer_ip || get32(ip + 16) != my_ip)
        return -1;
    unsigned icmp_len = total - 20;
    if (ic[0] != 8 || ic[1] != 0 || inet_csum(ic, icmp_len) != 0)
        return -1;
    memcpy(peer_mac, f + 6, 6);
    eth_header(peer_mac, ETH_IP);
    uint8_t *rip = frame + 14, *ric = rip + 20;
    memcpy(rip, ip, 20);
    put32(rip + 12, my_ip);
    put32(rip + 16, peer_ip);
    rip[8] = 64;
    put16(rip + 10, 0);
    put16(rip + 10, inet_csum(rip, 20));
    memcpy(ric, ic, icmp_len);
    ric[0] = 0;   /* echo reply */
    put16(ric + 2, 0);
    put16(ric + 2, inet_csum(ric, icmp_len));
    net_send(14 + total);
    return get16(ic + 6);
}

/* Answers an ARP request for our address (and learns the asker); 1 for an ARP reply to us. */
static int handle_arp(const uint8_t *f, int n) {
    if (n < 42 || get16(f + 12) != ETH_ARP)
        return 0;
    const uint8_t *a = f + 14;
    if (get16(a) != 1 || get16(a + 2) != ETH_IP || a[4] != 6 || a[5] != 4 || get32(a + 24) != my_ip)
        return 0;
    if (get32(a + 14) != peer_ip)
        return 0;
    memcpy(peer_mac, a + 8, 6);
    if (get16(a + 6) == 1) {
        send_arp(2, peer_mac, peer_mac, peer_ip);
        return 0;
    }
    return get16(a + 6) == 2;
}

/* The next frame into rxf: its length, 0 when none is waiting. */
static int net_recv(void) {
    int n = netfront_recv(rxf, sizeof rxf);
    if (n < 0)
        panic("net: the backend published more responses than its ring holds");
    return n;
}

static void workload_net(void) __attribute__((noreturn));
static void workload_net(void) {
    char role[8];
    if (!cmdline_str("role", role, sizeof role))
        memcpy(role, "ping", 5);
    int ping = strcmp(role, "ping") == 0;
    if (!ping && strcmp(role, "pong") != 0)
        panic("net: role must be ping or pong");
    uint64_t count = cmdline_uint("count", 10);
    uint64_t vif = cmdline_uint("vif", 0);
    if (count == 0 || count > 65535)
        panic("net: count must be 1..65535");
    my_ip = ping ? 0x0a000001u : 0x0a000002u;
    peer_ip = ping ? 0x0a000002u : 0x0a000001u;
    xen_bring_up("net");
    (void)xen_unplug(XEN_UNPLUG_ALL_NICS);
    char dir[32];
    snprintf(dir, sizeof dir, "device/vif/%llu", (unsigned long long)vif);
    static struct netfront_info ni;
    if (netfront_init(dir, &ni) != 0)
        panic("net: netfront did not connect on %s", dir);
    memcpy(my_mac, ni.mac, 6);
    printf("net: %s, 10.0.0.%u, %llu ICMP echo requests\n", role, ping ? 1 : 2, (unsigned long long)count);
    uint64_t sum = FNV64_INIT;
    uint8_t payload[ICMP_PAYLOAD];
    if (ping) {
        /* ARP for the peer: a broadcast request every 10 ms until it answers (it may still be booting). */
        int resolved = 0;
        for (unsigned tries = 0; !resolved && tries < 1000; tries++) {
            send_arp(1, 0, 0, peer_ip);
            uint64_t until = xen_now_ns() + 10000000ull;
            while (!resolved && xen_now_ns() < until) {
                int n = net_recv();
                if (n == 0)
                    netfront_wait(until - xen_now_ns() < 10000000ull ? until - xen_now_ns() + 1 : 10000000ull);
                else
                    resolved = handle_arp(rxf, n);
            }
        }
        if (!resolved)
            panic("net: no ARP reply from 10.0.0.2");
        puts("net: ARP: 10.0.0.2 resolved\n");
        if (verbose)
            printf("net: 10.0.0.2 is at %02x:%02x:%02x:%02x:%02x:%02x\n", peer_mac[0], peer_mac[1], peer_mac[2],
                   peer_mac[3], peer_mac[4], peer_mac[5]);
        uint64_t retries = 0;
        for (unsigned seq = 0; seq < count; seq++) {
            for (unsigned k = 0; k < ICMP_PAYLOAD; k++)
                payload[k] = payload_byte(seq, k);
            int got = 0;
            for (unsigned tries = 0; !got && tries < 50; tries++) {
                if (tries)
                    retries++;
                send_icmp(8, (uint16_t)seq, payload);
                uint64_t until = xen_now_ns() + 100000000ull;
                while (!got && xen_now_ns() < until) {
                    int n = net_recv();
                    uint16_t rseq;
                    const uint8_t *rp;
                    if (n == 0)
                        netfront_wait(10000000ull);
                    else if (parse_icmp(rxf, n, 0, &rseq, &rp) && rseq == seq) {
                        if (memcmp(rp, payload, ICMP_PAYLOAD) != 0)
                            panic("net: echo reply %u has another payload", seq);
                        sum = fnv64_u64(fnv64(sum, rp, ICMP_PAYLOAD), seq);
                        got = 1;
                    } else
                        handle_arp(rxf, n);
                }
            }
            if (!got)
                panic("net: no echo reply for seq %u", seq);
        }
        printf("net: %llu echo replies, payloads and checksums verified\n", (unsigned long long)count);
        if (verbose)
            printf("net: retransmissions %llu\n", (unsigned long long)retries);
    } else {
        /* pong: answer ARP and echo requests until every seq was served, then 50 ms of quiet
           (the pinger may retransmit a request whose reply it missed). */
        static uint8_t served[65536 / 8];
        uint64_t done = 0, quiet_until = 0, deadline = xen_now_ns() + 30000000000ull;
        while (done < count || xen_now_ns() < quiet_until) {
            if (xen_now_ns() > deadline)
                panic("net: served %llu of %llu echo requests", (unsigned long long)done, (unsigned long long)count);
            int n = net_recv();
            uint16_t seq;
            const uint8_t *rp;
            if (n == 0) {
                netfront_wait(10000000ull);
                continue;
            }
            if (parse_icmp(rxf, n, 8, &seq, &rp) && seq < count) {
                memcpy(peer_mac, rxf + 6, 6);
                memcpy(payload, rp, ICMP_PAYLOAD);
                send_icmp(0, seq, payload);
                if (!(served[seq / 8] & (1u << (seq % 8)))) {
                    served[seq / 8] |= (uint8_t)(1u << (seq % 8));
                    for (unsigned k = 0; k < ICMP_PAYLOAD; k++)
                        if (payload[k] != payload_byte(seq, k))
                            panic("net: echo request %u has an unexpected payload", seq);
                    done++;
                }
                if (done == count)
                    quiet_until = xen_now_ns() + 50000000ull;
            } else {
                /* Another stack's ping (Linux's): answered and counted by its sequence number. */
                int other = answer_any_echo(rxf, n);
                if (other >= 0 && (uint64_t)other < count && !(served[other / 8] & (1u << (other % 8)))) {
                    served[other / 8] |= (uint8_t)(1u << (other % 8));
                    done++;
                    if (done == count)
                        quiet_until = xen_now_ns() + 50000000ull;
                } else if (other < 0) {
                    handle_arp(rxf, n);
                }
            }
        }
        /* The checksum folds the payloads in seq order: the pinger's value. */
        for (unsigned seq = 0; seq < count; seq++) {
            for (unsigned k = 0; k < ICMP_PAYLOAD; k++)
                payload[k] = payload_byte(seq, k);
            sum = fnv64_u64(fnv64(sum, payload, ICMP_PAYLOAD), seq);
        }
        printf("net: answered %llu echo requests\n", (unsigned long long)count);
    }
    if (verbose)
        printf("netfront: tx %llu packets %llu bytes, rx %llu packets %llu bytes, %llu errors\n",
               (unsigned long long)ni.tx_packets, (unsigned long long)ni.tx_bytes, (unsigned long long)ni.rx_packets,
               (unsigned long long)ni.rx_bytes, (unsigned long long)ni.rx_errors);
    xen_verbose_counts();
    report_checksum = sum;
    report_ok = 1;
    finish();
}

/* ---------------------------------------------------------------- NVMe workloads (nvme.c) */

/* key=0xHEX or key=DECIMAL (cmdline_uint reads decimal only): an address; 0 when absent or
   malformed (which is said). */
static uint64_t cmdline_addr(const char *key) {
    char vs[24];
    if (!cmdline_str(key, vs, sizeof vs))
        return 0;
    const char *v = vs;
    unsigned base = 10;
    uint64_t a = 0;
    if (v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
        base = 16;
        v += 2;
    }
    for (; *v; v++) {
        unsigned c = (unsigned)(*v | 0x20), d = *v >= '0' && *v <= '9' ? (unsigned)(*v - '0')
                   : c >= 'a' && c <= 'f' ? c - 'a' + 10 : 99;
        if (d >= base || a >> 52) {
            printf("%s=%s is not an address\n", key, vs);
            return 0;
        }
        a = a * base + d;
    }
    return a;
}

/* BAR0 of the NVMe controller in 2 MiB pages of the kernel's 4th GiB directory (where SeaBIOS
   and hvmloader both place small BARs); uncached. */
static void nvme_map_mmio(uint64_t pa, uint64_t size) {
    if (pa < (3ull << 30) || pa + size > (4ull << 30))
        panic("nvme: BAR0 at 0x%llx is outside the 4th GiB", (unsigned long long)pa);
    for (uint64_t a = pa & ~((1ull << 21) - 1); a < pa + size; a += 1ull << 21) {
        uint64_t *e = &kpd_apic[(a >> 21) & 511];
        if (*e && (*e & PTE_ADDR_MASK) != a)
            panic("nvme: BAR0 overlaps the local APIC page");
        *e = a | PTE_P | PTE_W | PTE_PS | PTE_PCD | PTE_PWT;
    }
    write_cr3(read_cr3());
}

static void nvme_bring_up(const char *what) {
    if (nvme_init(nvme_map_mmio) != 0)
        panic("%s: no usable NVMe controller", what);
    if (verbose)
        printf("nvme: 00:%02x.%u BAR0 0x%llx (%llu KiB) version %u.%u.%u MQES %u DSTRD %u MDTS %u KiB NN %u queues %u/%u\n",
               nvme.dev, nvme.fn, (unsigned long long)nvme.bar0, (unsigned long long)(nvme.bar0_size >> 10),
               nvme.vs >> 16, (nvme.vs >> 8) & 0xFF, nvme.vs & 0xFF, nvme.mqes, nvme.dstrd,
               nvme.max_transfer >> 10, nvme.nn, nvme.nsqa, nvme.ncqa);
    printf("nvme: controller ready, namespace 1: %llu LBAs of %u bytes, I/O queue pair 1\n",
           (unsigned long long)nvme.nsze, nvme.lba_size);
}

static void nvme_check(int st, const char *what, uint64_t lba, unsigned n) {
    if (st != 0) {
        char b[96];
        panic("nvme: %s of %u LBAs at %llu failed: %s", what, n, (unsigned long long)lba, nvme_status_str(st, b, sizeof b));
    }
}

/* 64 KiB (128 LBAs, 16 pages: PRP1 and a PRP list) per command. */
#define NV_CHUNK 128
static uint64_t nv_wbuf[NV_CHUNK * 64] __attribute__((aligned(4096)));
static uint64_t nv_rbuf[NV_CHUNK * 64 + 512] __attribute__((aligned(4096)));

/*
 * The disk workload's data (splitmix of sector and qword, the same FNV-1a fold in sector
 * order) written with NVM Write and read back with NVM Read into another buffer: the checksum
 * equals `disk`'s (and `pvdisk`'s) for the same mib/kib and lba. Every other read lands 512
 * bytes into its buffer, so PRP1 carries an offset and the command spans 17 pages.
 */
static void workload_nvme(void) __attribute__((noreturn));
static void workload_nvme(void) {
    uint64_t mib = cmdline_uint("mib", 2), lba0 = cmdline_uint("lba", 0), kib = cmdline_uint("kib", 0);
    uint32_t sectors = (uint32_t)(mib * 2048);
    if (kib) {
        if (kib % 4 || kib > 4096 * 1024)
            panic("nvme: kib must be a multiple of 4");
        sectors = (uint32_t)(kib * 2);
    } else if (mib == 0 || mib > 4096) {
        panic("nvme: bad parameters mib=%llu", (unsigned long long)mib);
    }
    nvme_dma_base = cmdline_addr("dmabase");   /* iommu = 0: the domain's machine base */
    nvme_bring_up("nvme");
    if (lba0 + sectors > nvme.nsze)
        panic("nvme: %u LBAs from %llu do not fit namespace 1", sectors, (unsigned long long)lba0);
    if (kib)
        printf("nvme: %llu KiB (%u LBAs) from lba %llu, %u LBAs per command\n", (unsigned long long)kib, sectors,
               (unsigned long long)lba0, NV_CHUNK);
    else
        printf("nvme: %llu MiB (%u LBAs) from lba %llu, %u LBAs per command\n", (unsigned long long)mib, sectors,
               (unsigned long long)lba0, NV_CHUNK);
    for (uint32_t s = 0; s < sectors; s += NV_CHUNK) {
        unsigned n = sectors - s < NV_CHUNK ? sectors - s : NV_CHUNK;
        uint32_t lba = (uint32_t)lba0 + s;
        fill_sectors(nv_wbuf, lba, n);
        nvme_check(nvme_rw(1, lba, n, (uint64_t)(uintptr_t)nv_wbuf), "write", lba, n);
    }
    nvme_check(nvme_flush(), "flush", 0, 0);
    printf("nvme: wrote %u LBAs, flushed\n", sectors);
    uint64_t sum = FNV64_INIT, bad = 0;
    for (uint32_t s = 0, c = 0; s < sectors; s += NV_CHUNK, c++) {
        unsigned n = sectors - s < NV_CHUNK ? sectors - s : NV_CHUNK;
        uint32_t lba = (uint32_t)lba0 + s;
        uint64_t *buf = nv_rbuf + (c & 1 ? 64 : 0);   /* odd commands: PRP1 at offset 512 */
        memset(nv_rbuf, 0, sizeof nv_rbuf);
        nvme_check(nvme_rw(0, lba, n, (uint64_t)(uintptr_t)buf), "read", lba, n);
        sum = check_sectors("nvme", buf, lba, n, &bad, sum);
    }
    if (bad)
        panic("nvme: %llu qwords differ", (unsigned long long)bad);
    printf("nvme: read back %u LBAs into another buffer, all match\n", sectors);
    if (verbose)
        printf("nvme: commands %llu empty-polls %llu\n", (unsigned long long)nvme.commands,
               (unsigned long long)nvme.polls);
    report_checksum = sum;
    report_ok = 1;
    finish();
}

/*
 * Hostile: the device this domain owns is told to DMA outside the domain's RAM. LBAs 0-7 are
 * first filled with "PWNED!!\n" so a successful device write (NVM Read) is recognizable; each
 * target is tried with an NVM Read of LBAs 0-7 (the device writes 4 KiB at PRP1) and an NVM
 * Write to LBAs 8-15 (the device reads 4 KiB at PRP1). One line per attempt with the status.
 * Order: the victim's guessed machine address, beyond RAM, the MMIO hole last (with no IOMMU a
 * write there may hit device registers; a controller that stops answering ends the run).
 */
static void workload_dmaattack(void) __attribute__((noreturn));
static void workload_dmaattack(void) {
    uint64_t victim = cmdline_addr("victim");
    nvme_dma_base = cmdline_addr("dmabase");
    if (nvme_dma_base)
        printf("dmaattack: DMA addresses are machine addresses from 0x%llx (dmabase)\n", (unsigned long long)nvme_dma_base);
    nvme_bring_up("dmaattack");
    for (unsigned k = 0; k < NV_CHUNK * 64; k++)
        nv_wbuf[k] = 0x0a212144454e5750ull;   /* "PWNED!!\n" little-endian */
    nvme_check(nvme_rw(1, 0, 8, (uint64_t)(uintptr_t)nv_wbuf), "pattern write", 0, 8);
    nvme_check(nvme_flush(), "flush", 0, 0);
    printf("dmaattack: lba 0-7 hold \"PWNED!!\\n\" x 512\n");
    struct { uint64_t addr; const char *what; } t[4];
    unsigned nt = 0;
    if (victim)
        t[nt++] = (typeof(t[0])){ victim & ~0xFFFull, "victim (guessed machine address)" };
    t[nt++] = (typeof(t[0])){ (4ull << 30) + pool_end, "beyond RAM (4 GiB + RAM top)" };
    t[nt++] = (typeof(t[0])){ 0xFEC00000ull, "MMIO hole (IO-APIC page)" };
    t[nt++] = (typeof(t[0])){ 0xF0000000ull, "MMIO hole (0xF0000000)" };
    unsigned done = 0, blocked = 0;
    uint64_t sum = FNV64_INIT;
    for (unsigned i = 0; i < nt; i++)
        for (int write = 0; write <= 1; write++) {
            char b[96];
            int st = nvme_rw_prp(write, write ? 8 : 0, 8, t[i].addr, 0);
            printf("dmaattack: %s at 0x%llx %s: %s\n", write ? "Write (device reads)" : "Read (device writes)",
                   (unsigned long long)t[i].addr, t[i].what, st == 0 ? "completed" : nvme_status_str(st, b, sizeof b));
            done++;
            if (st != 0)
                blocked++;
            sum = fnv64_u64(sum, (uint64_t)(int64_t)st);
            if (st < 0) {
                printf("dmaattack: the controller stopped answering; remaining attempts skipped\n");
                goto out;
            }
        }
out:
    printf("dmaattack: %u attempts, %u failed\n", done, blocked);
    report_checksum = sum;
    report_ok = 1;
    finish();
}

/* ---------------------------------------------------------------- boot and finish */

static void finish(void) {
    if (verbose)
        printf("stats: ticks %llu switches %llu faults %llu cow-copies %llu cow-reuse %llu forks %llu exits %llu "
               "syscalls %llu unmapped %llu frames-free %llu apic %s\n",
               (unsigned long long)stats.ticks, (unsigned long long)stats.switches,
               (unsigned long long)stats.faults, (unsigned long long)stats.cow_copies,
               (unsigned long long)stats.cow_reuse, (unsigned long long)stats.forks,
               (unsigned long long)stats.exits, (unsigned long long)stats.syscalls,
               (unsigned long long)stats.unmapped, (unsigned long long)frames_free, x2apic ? "x2apic" : "xapic");
    if (report_ok != 1)
        panic("%s: no successful result reported", workload_name);
    pass(workload_name, report_checksum);
}

enum { W_COMPUTE = 1, W_PTEMOD = 2, W_FORKWAIT = 3 };

static struct trap_frame init_frame;
void kernel_enter_user(struct trap_frame *f) __attribute__((noreturn));

int kmain(struct hvm_start_info *si) {
    uart_init();
    static char wl[16];
    if (!cmdline_str("workload", wl, sizeof wl))
        memcpy(wl, "compute", 8);
    workload_name = wl;
    printf("vtlab reference kernel: workload=%s\n", wl);
    verbose = cmdline_uint("verbose", 0) != 0;

    kidt_init();
    tss_init();
    paging_init();
    pool_init(si);
    trap_set_handler(X86_EXC_PF, on_page_fault);
    trap_set_handler(VEC_TIMER, on_timer);
    trap_set_handler(VEC_SYSCALL, on_syscall);

    uint64_t which, a, b;
    if (strcmp(wl, "compute") == 0) {
        which = W_COMPUTE;
        a = cmdline_uint("procs", 4);
        b = cmdline_uint("iterations", 1000000);
        if (a < 1 || a > 16)
            panic("compute: procs must be 1..16");
        printf("compute: %llu processes x %llu iterations\n", (unsigned long long)a, (unsigned long long)b);
    } else if (strcmp(wl, "ptemod") == 0) {
        which = W_PTEMOD;
        a = cmdline_uint("iterations", 1000);
        b = cmdline_uint("pages", 64);
        if (b < 1 || b > 65536)
            panic("ptemod: pages must be 1..65536");
        printf("ptemod: %llu iterations x %llu pages\n", (unsigned long long)a, (unsigned long long)b);
    } else if (strcmp(wl, "forkwait") == 0) {
        which = W_FORKWAIT;
        a = cmdline_uint("forks", cmdline_uint("iterations", 1000));
        b = cmdline_uint("pages", 16);
        if (b < 1 || b > 1024)
            panic("forkwait: pages must be 1..1024");
        printf("forkwait: %llu forks, %llu shared heap pages\n", (unsigned long long)a, (unsigned long long)b);
    } else if (strcmp(wl, "disk") == 0) {
        workload_disk();
    } else if (strcmp(wl, "pvdisk") == 0) {
        workload_pvdisk();
    } else if (strcmp(wl, "net") == 0) {
        workload_net();
    } else if (strcmp(wl, "nvme") == 0) {
        workload_nvme();
    } else if (strcmp(wl, "dmaattack") == 0) {
        workload_dmaattack();
    } else {
        panic("unknown workload '%s' (compute, ptemod, forkwait, disk, pvdisk, net, nvme, dmaattack)", wl);
    }

    apic_init((uint32_t)cmdline_uint("timer", 100000));

    struct proc *init = proc_alloc();
    init->cr3 = as_create();
    as_map_code(init->cr3);
    init->state = P_RUNNABLE;
    init->tf.rip = (uint64_t)(uintptr_t)user_entry;
    init->tf.cs = USER_CS;
    init->tf.ss = USER_DS;
    init->tf.rsp = USER_TOP - 8;
    init->tf.rflags = 0x202;   /* IF: the timer preempts user code */
    init->tf.rdi = which;
    init->tf.rsi = a;
    init->tf.rdx = b;
    cur = init;
    write_cr3(init->cr3);
    init_frame = init->tf;
    kernel_enter_user(&init_frame);
}
