/*
 * The reference kernel's user programs (CPL 3, linked at virtual 0x40000000, see kernel.ld).
 *
 * Only code and read-only data: every variable lives on the demand-paged stack or heap. Nothing
 * here may call kernel code (the kernel's pages are supervisor-only), so loops that gcc could
 * turn into memset/memcpy calls are compiled without that transformation.
 *
 * System calls: INT 0x80, number in RAX, arguments in RDI, RSI; result in RAX (and RDX for wait).
 */
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#include <stddef.h>
#include <stdint.h>

enum {
    SYS_WRITE = 0, SYS_EXIT = 1, SYS_FORK = 2, SYS_WAIT = 3, SYS_GETPID = 4, SYS_YIELD = 5,
    SYS_UNMAP = 6, SYS_REPORT = 7,
};
enum { W_COMPUTE = 1, W_PTEMOD = 2, W_FORKWAIT = 3 };

#define HEAP ((volatile uint64_t *)0x50000000ull)
#define FNV_INIT 0xcbf29ce484222325ull

static inline uint64_t syscall2(uint64_t n, uint64_t a, uint64_t b, uint64_t *rdx) {
    uint64_t d = 0;
    __asm__ volatile("int $0x80" : "+a"(n), "+d"(d) : "D"(a), "S"(b) : "memory");
    if (rdx)
        *rdx = d;
    return n;
}

static void sys_exit(uint64_t status) __attribute__((noreturn));
static void sys_exit(uint64_t status) {
    syscall2(SYS_EXIT, status, 0, 0);
    for (;;)
        ;
}

static size_t u_strlen(const char *s) {
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static void u_puts(const char *s) { syscall2(SYS_WRITE, (uint64_t)(uintptr_t)s, u_strlen(s), 0); }

static void u_putdec(uint64_t v) {
    char buf[24];
    int i = 23;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    u_puts(buf + i);
}

static void u_puthex(uint64_t v) {
    char buf[17];
    for (int i = 15; i >= 0; i--, v >>= 4)
        buf[i] = "0123456789abcdef"[v & 15];
    buf[16] = 0;
    u_puts(buf);
}

static uint64_t fnv(uint64_t h, uint64_t v) {
    for (int i = 0; i < 8; i++, v >>= 8)
        h = (h ^ (v & 0xFF)) * 0x100000001b3ull;
    return h;
}

static void done(uint64_t checksum, int ok) __attribute__((noreturn));
static void done(uint64_t checksum, int ok) {
    syscall2(SYS_REPORT, checksum, (uint64_t)ok, 0);
    sys_exit(ok ? 0 : 1);
}

/* ---------------------------------------------------------------- compute */

static uint64_t compute(uint64_t seed, uint64_t iterations) {
    uint32_t table[1024];   /* 4 KiB of stack, faulted in on demand */
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (int i = 0; i < 1024; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        table[i] = (uint32_t)x;
    }
    uint64_t h = seed;
    for (uint64_t i = 0; i < iterations; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint32_t j = (uint32_t)x & 1023;
        table[j] += (uint32_t)(x >> 32) ^ (uint32_t)i;
        h = (h ^ table[j]) * 0x100000001b3ull;
        h = ((h << 5) | (h >> 59)) + i;
    }
    for (int i = 0; i < 1024; i++)
        h = h * 31 + table[i];
    return h;
}

static void workload_compute(uint64_t procs, uint64_t iterations) {
    uint64_t pids[16], results[16];
    for (uint64_t i = 0; i < procs; i++) {
        uint64_t pid = syscall2(SYS_FORK, 0, 0, 0);
        if (pid == 0)
            sys_exit(compute(i + 1, iterations));
        if (pid == (uint64_t)-1) {
            u_puts("FAIL compute: fork failed\n");
            done(0, 0);
        }
        pids[i] = pid;
    }
    for (uint64_t n = 0; n < procs; n++) {
        uint64_t status;
        uint64_t pid = syscall2(SYS_WAIT, 0, 0, &status);
        int found = 0;
        for (uint64_t i = 0; i < procs; i++)
            if (pids[i] == pid) {
                results[i] = status;
                found = 1;
            }
        if (!found) {
            u_puts("FAIL compute: wait returned an unknown pid\n");
            done(0, 0);
        }
    }
    if (syscall2(SYS_WAIT, 0, 0, 0) != (uint64_t)-1) {
        u_puts("FAIL compute: wait without children did not return -1\n");
        done(0, 0);
    }
    uint64_t sum = FNV_INIT;
    for (uint64_t i = 0; i < procs; i++) {
        u_puts("compute: process ");
        u_putdec(i);
        u_puts(" (pid ");
        u_putdec(pids[i]);
        u_puts(") checksum ");
        u_puthex(results[i]);
        u_puts("\n");
        sum = fnv(sum, results[i]);
    }
    /* the parent recomputes the first child's work: preemption must not have changed it */
    uint64_t again = compute(1, iterations);
    if (again != results[0]) {
        u_puts("FAIL compute: process 0 result differs from the parent's recomputation\n");
        done(sum, 0);
    }
    u_puts("compute: parent's recomputation of process 0 agrees\n");
    done(sum, 1);
}

/* ---------------------------------------------------------------- ptemod */

static void workload_ptemod(uint64_t iterations, uint64_t pages) {
    uint64_t sum = FNV_INIT, nonzero = 0, touched = 0;
    for (uint64_t it = 0; it < iterations; it++) {
        uint64_t slot = it & 511;
        for (uint64_t p = 0; p < pages; p++) {
            volatile uint64_t *q = &HEAP[p * 512 + slot];
            if (*q != 0)          /* demand fault: a fresh zeroed page */
                nonzero++;
            *q = (it << 32) ^ (p * 0x9e3779b97f4a7c15ull);
            touched++;
        }
        for (uint64_t p = 0; p < pages; p++)
            sum = fnv(sum, HEAP[p * 512 + slot]);
        syscall2(SYS_UNMAP, (uint64_t)(uintptr_t)HEAP, pages * 4096, 0);   /* clear every PTE */
    }
    if (nonzero) {
        u_puts("FAIL ptemod: a freshly mapped page was not zero\n");
        done(sum, 0);
    }
    u_puts("ptemod: ");
    u_putdec(touched);
    u_puts(" pages mapped on demand and unmapped (");
    u_putdec(2 * touched);
    u_puts(" PTE writes), every page read zero when mapped\n");
    done(sum, 1);
}

/* ---------------------------------------------------------------- forkwait */

static void workload_forkwait(uint64_t forks, uint64_t pages) {
    for (uint64_t p = 0; p < pages; p++)
        HEAP[p * 512] = p * 7 + 1;
    uint64_t sum = FNV_INIT;
    for (uint64_t i = 0; i < forks; i++) {
        uint64_t pid = syscall2(SYS_FORK, 0, 0, 0);
        if (pid == 0) {
            uint64_t p = i % pages;
            if (HEAP[p * 512] != p * 7 + 1)
                sys_exit(0xBAD);
            HEAP[p * 512] = 0xDEAD;   /* copy-on-write: the parent must not see it */
            sys_exit(syscall2(SYS_GETPID, 0, 0, 0) * 3 + 1);
        }
        if (pid == (uint64_t)-1) {
            u_puts("FAIL forkwait: fork failed\n");
            done(sum, 0);
        }
        uint64_t status;
        uint64_t w = syscall2(SYS_WAIT, 0, 0, &status);
        if (w != pid || status != pid * 3 + 1) {
            u_puts("FAIL forkwait: child ");
            u_putdec(pid);
            u_puts(" exited with ");
            u_puthex(status);
            u_puts("\n");
            done(sum, 0);
        }
        sum = fnv(fnv(sum, pid), status);
    }
    for (uint64_t p = 0; p < pages; p++)
        if (HEAP[p * 512] != p * 7 + 1) {
            u_puts("FAIL forkwait: a child's write reached the parent\n");
            done(sum, 0);
        }
    u_puts("forkwait: ");
    u_putdec(forks);
    u_puts(" children forked, exited and reaped; the parent's pages are intact\n");
    done(sum, 1);
}

void user_entry(uint64_t which, uint64_t a, uint64_t b);
void user_entry(uint64_t which, uint64_t a, uint64_t b) {
    if (which == W_COMPUTE)
        workload_compute(a, b);
    else if (which == W_PTEMOD)
        workload_ptemod(a, b);
    else if (which == W_FORKWAIT)
        workload_forkwait(a, b);
    done(0, 0);
}
