/*
 * hostile/shadow-repstos: memset and memcpy (the runtime's REP STOSB and REP MOVSB) over a live
 * page table that is not the root. pd_identity maps the first GiB, its own frame included
 * (through entry 0), so on shadow paging every store into it faults on a write-protected table
 * whose shadow the retried store rebuilds on its way in: answered by unshadowing the table,
 * this livelocked (2 M #PF exits for 3,437 instructions). Each round saves the page directory,
 * zeroes entries 1..511 with memset (unmapping 2 MiB..1 GiB), reloads CR3, copies them back with
 * memcpy, reloads CR3 and checks a word at 4 MiB reads back. Then the same for a fresh leaf
 * table mapping 1 GiB. `rounds=N` on the command line (default 64). Prints PASS.
 */
#include "rt.h"

static uint64_t saved[512];
static uint64_t pd_high[512] __attribute__((aligned(4096)));
static uint64_t l1_high[512] __attribute__((aligned(4096)));

int kmain(struct hvm_start_info *si) {
    (void)si;
    uint64_t rounds = cmdline_uint("rounds", 64);
    CHECK((uintptr_t)__image_end <= (2u << 20)); /* code, data and stack under pd_identity[0] */
    volatile uint64_t *probe = (volatile uint64_t *)(uintptr_t)(4u << 20);
    uint64_t h = FNV64_INIT;
    *probe = 0;
    for (uint64_t r = 0; r < rounds; r++) {
        memcpy(saved, pd_identity, sizeof saved);
        CHECK(*probe == r);
        memset(&pd_identity[1], 0, 511 * sizeof(uint64_t));
        write_cr3(read_cr3());
        CHECK(pd_identity[1] == 0 && pd_identity[511] == 0);
        memcpy(&pd_identity[1], &saved[1], 511 * sizeof(uint64_t));
        write_cr3(read_cr3());
        CHECK(*probe == r);
        *probe = r + 1;
        h = fnv64_u64(h, pd_identity[2]);
    }
    /* A leaf table mapping 1 GiB .. 1 GiB + 2 MiB onto 4 MiB .. 6 MiB, built, used, wiped, rebuilt. */
    pdpt[1] = (uint64_t)(uintptr_t)pd_high | PTE_P | PTE_W;
    pd_high[0] = (uint64_t)(uintptr_t)l1_high | PTE_P | PTE_W;
    write_cr3(read_cr3());
    volatile uint64_t *hi = (volatile uint64_t *)(uintptr_t)(1ull << 30);
    for (uint64_t r = 0; r < rounds; r++) {
        for (unsigned i = 0; i < 512; i++) l1_high[i] = ((4ull << 20) + i * 4096ull) | PTE_P | PTE_W;
        write_cr3(read_cr3());
        CHECK(hi[0] == rounds);
        hi[512 * 7] = r; /* 1 GiB + 28 KiB -> 4 MiB + 28 KiB */
        memset(l1_high, 0, sizeof l1_high);
        write_cr3(read_cr3());
        h = fnv64_u64(h, probe[512 * 7]);
    }
    printf("shadow-repstos: %lu rounds\n", (unsigned long)rounds);
    pass("shadow-repstos", h);
}
