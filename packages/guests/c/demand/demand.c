/*
 * demand: demand paging. A 16 MiB virtual region at 2 GiB starts unmapped (its PDPT entry is
 * not present). The #PF handler reads CR2 and the error code, allocates zeroed frames (for the
 * page directory and page tables too) from a pool, maps the page (read-only for a read fault,
 * writable for a write fault; a write to a read-only page makes it writable) and INVLPGs it.
 *
 *   pass 1: read one word of every even page      -> 2048 not-present read faults
 *   pass 2: write 64 words into every page         -> 2048 not-present write faults on odd
 *                                                      pages, 2048 protection faults on even
 *   pass 3: verify every word written, and zeroes  -> no faults
 *   pass 4: unmap 16 pages (PTE cleared + INVLPG),
 *           touch them again                       -> 16 not-present faults, fresh zero pages
 *
 * Each fault's CR2 must equal the address being accessed, and the CPU's Accessed and Dirty
 * bits in the leaf PTEs are counted after each pass. Fault counts are exact. Built -O2.
 */
#include "rt.h"

#define REGION       0x80000000ull
#define REGION_SIZE  (16ull << 20)
#define PAGES        (REGION_SIZE >> 12)
#define PT_COUNT     (REGION_SIZE >> 21)
#define POOL_FRAMES  (PAGES + PT_COUNT + 1 + 16)

#define PTE_A  0x020ull
#define PTE_D  0x040ull
#define PF_P   0x01ull   /* error code: protection violation (else not present) */
#define PF_W   0x02ull   /* write */
#define PF_U   0x04ull   /* user mode */
#define PF_RSVD 0x08ull

static uint8_t frame_pool[POOL_FRAMES][4096] __attribute__((section(".noinit"), aligned(4096)));
static unsigned long frames_used, table_frames;

static volatile uint64_t expected_cr2;
static unsigned long faults, faults_read_np, faults_write_np, faults_write_prot, cr2_mismatch;

static void zero_frame(void *p) {
    uint64_t n = 4096 / 8;
    __asm__ volatile("rep stosq" : "+D"(p), "+c"(n) : "a"(0ull) : "memory");
}

static uint64_t alloc_frame(void) {
    if (frames_used >= POOL_FRAMES)
        panic("frame pool exhausted");
    void *f = frame_pool[frames_used++];
    zero_frame(f);
    return (uint64_t)(uintptr_t)f;   /* identity mapped: physical == virtual */
}

/* Returns the leaf PTE for va, allocating the page directory and page table on the way. */
static uint64_t *pte_for(uint64_t va, int allocate) {
    uint64_t *e = &pdpt[(va >> 30) & 511];   /* pml4[0] covers the first 512 GiB */
    for (int level = 0; level < 2; level++) {
        if (!(*e & PTE_P)) {
            if (!allocate)
                return 0;
            *e = alloc_frame() | PTE_P | PTE_W;
            table_frames++;
        }
        uint64_t *table = (uint64_t *)(uintptr_t)(*e & PTE_ADDR_MASK);
        e = &table[(va >> (level == 0 ? 21 : 12)) & 511];
    }
    return e;
}

static int pf_handler(struct trap_frame *f) {
    uint64_t cr2 = read_cr2();
    uint64_t err = f->error_code;
    if (cr2 < REGION || cr2 >= REGION + REGION_SIZE || (err & (PF_U | PF_RSVD)))
        return 0;   /* not ours: reported as an unexpected exception */
    faults++;
    if (cr2 != expected_cr2)
        cr2_mismatch++;
    uint64_t *pte = pte_for(cr2, 1);
    if (!(err & PF_P)) {
        CHECK(!(*pte & PTE_P));
        *pte = alloc_frame() | PTE_P | (err & PF_W ? PTE_W : 0);
        if (err & PF_W)
            faults_write_np++;
        else
            faults_read_np++;
    } else {
        CHECK((err & PF_W) && (*pte & PTE_P) && !(*pte & PTE_W));
        *pte |= PTE_W;
        faults_write_prot++;
    }
    invlpg((void *)(uintptr_t)(cr2 & ~0xfffull));
    return 1;   /* the faulting instruction is restarted */
}

static inline uint64_t value_at(uint64_t va) { return va * 0x9e3779b97f4a7c15ull ^ (va >> 17); }

static uint64_t load(uint64_t va) {
    expected_cr2 = va;
    return *(volatile uint64_t *)(uintptr_t)va;
}

static void store(uint64_t va, uint64_t v) {
    expected_cr2 = va;
    *(volatile uint64_t *)(uintptr_t)va = v;
}

static uint64_t checksum = FNV64_INIT;

static void report(const char *pass_name) {
    unsigned long present = 0, accessed = 0, dirty = 0, writable = 0;
    for (uint64_t p = 0; p < PAGES; p++) {
        uint64_t *pte = pte_for(REGION + (p << 12), 0);
        if (!pte || !(*pte & PTE_P))
            continue;
        present++;
        accessed += (*pte & PTE_A) != 0;
        dirty += (*pte & PTE_D) != 0;
        writable += (*pte & PTE_W) != 0;
    }
    printf("%-8s faults %5lu (read/not-present %4lu, write/not-present %4lu, write/read-only %4lu); "
           "PTEs present %4lu writable %4lu accessed %4lu dirty %4lu\n",
           pass_name, faults, faults_read_np, faults_write_np, faults_write_prot, present, writable,
           accessed, dirty);
    uint64_t v[8] = { faults, faults_read_np, faults_write_np, faults_write_prot, present, writable, accessed, dirty };
    checksum = fnv64(checksum, v, sizeof v);
}

int kmain(struct hvm_start_info *si) {
    (void)si;
    printf("demand: 16 MiB at 0x%llx mapped on demand by the #PF handler\n", (unsigned long long)REGION);
    trap_set_handler(X86_EXC_PF, pf_handler);
    CHECK(!(pdpt[REGION >> 30] & PTE_P));

    /* pass 1: reads of even pages; a fresh page reads as zero */
    uint64_t nonzero = 0;
    for (uint64_t p = 0; p < PAGES; p += 2)
        nonzero += load(REGION + (p << 12) + ((p * 8) & 0xfff)) != 0;
    CHECK(nonzero == 0);
    report("pass 1:");

    /* pass 2: 64 words per page, one every 64 bytes */
    for (uint64_t p = 0; p < PAGES; p++)
        for (uint64_t off = 0; off < 4096; off += 64) {
            uint64_t va = REGION + (p << 12) + off;
            store(va, value_at(va));
        }
    report("pass 2:");

    /* pass 3: everything written is there; the words in between are still zero */
    unsigned long bad = 0;
    uint64_t sum = 0;
    for (uint64_t p = 0; p < PAGES; p++)
        for (uint64_t off = 0; off < 4096; off += 64) {
            uint64_t va = REGION + (p << 12) + off;
            uint64_t v = load(va);
            bad += v != value_at(va);
            bad += load(va + 8) != 0;
            sum += v;
        }
    report("pass 3:");
    printf("verified %llu words, %lu wrong, sum %016llx\n", (unsigned long long)(PAGES * 64 * 2), bad,
           (unsigned long long)sum);
    checksum = fnv64_u64(checksum, sum);

    /* pass 4: unmap every 256th page; touching it again faults and yields a zeroed frame */
    for (uint64_t p = 0; p < PAGES; p += 256) {
        uint64_t va = REGION + (p << 12);
        *pte_for(va, 0) = 0;
        invlpg((void *)(uintptr_t)va);
    }
    unsigned long refilled_zero = 0;
    for (uint64_t p = 0; p < PAGES; p += 256)
        refilled_zero += load(REGION + (p << 12)) == 0;
    report("pass 4:");
    printf("unmapped 16 pages, %lu read back as zero after the new fault\n", refilled_zero);
    printf("frames allocated: %lu (%lu for page tables), CR2 mismatches %lu\n", frames_used,
           table_frames, cr2_mismatch);
    checksum = fnv64_u64(checksum, frames_used);

    CHECK(bad == 0 && cr2_mismatch == 0 && refilled_zero == 16);
    CHECK(faults == 6160 && faults_read_np == 2048 + 16 && faults_write_np == 2048 && faults_write_prot == 2048);
    CHECK(table_frames == 1 + PT_COUNT && frames_used == PAGES + 16 + table_frames);
    pass("demand", checksum);
}
