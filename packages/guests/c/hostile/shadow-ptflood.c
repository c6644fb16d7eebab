/*
 * hostile/shadow-ptflood: turns RAM into page tables. From 4 MiB up it builds `tables=N` leaf
 * tables (default 8192: 32 MiB of them) and the page directories above them, mapping 2 MiB of
 * virtual space each from 512 GiB (PML4 entry 1) with entry 0 of each pointing at one data page,
 * touches a page through every one, then rewrites every leaf's entry 0 to a second data page,
 * INVLPGs it and reads it back. On shadow paging each table wants a shadow: without a bounded
 * shadow pool the host's memory grows with the guest's page tables (a 1 GiB guest with 768 MiB
 * of them pushed RSS to 4.9 GB). Prints PASS.
 */
#include "rt.h"

#define MiB (1ull << 20)

int kmain(struct hvm_start_info *si) {
    uint64_t tables = cmdline_uint("tables", 8192);
    uint64_t top = 0;
    if (si->version >= 1 && si->memmap_paddr) {
        const struct hvm_memmap_table_entry *e = (const void *)(uintptr_t)si->memmap_paddr;
        for (uint32_t i = 0; i < si->memmap_entries; i++)
            if (e[i].type == XEN_HVM_MEMMAP_TYPE_RAM && e[i].addr + e[i].size > top) top = e[i].addr + e[i].size;
    }
    uint64_t pds = (tables + 511) / 512;
    CHECK(pds <= 512);
    uint64_t base = 4 * MiB;
    uint64_t *pdpt_hi = (uint64_t *)(uintptr_t)base;
    uint64_t *pd = (uint64_t *)(uintptr_t)(base + 4096);
    uint64_t *l1 = (uint64_t *)(uintptr_t)(base + 4096 + pds * 4096);
    volatile uint64_t *data1 = (volatile uint64_t *)(uintptr_t)(base - 8192);
    volatile uint64_t *data2 = (volatile uint64_t *)(uintptr_t)(base - 4096);
    CHECK((uintptr_t)__image_end <= base - 8192);
    CHECK((uint64_t)(uintptr_t)(l1 + tables * 512) <= top && top <= (1ull << 30));
    memset(pdpt_hi, 0, (1 + pds) * 4096);
    *data1 = 0x1111;
    *data2 = 0x2222;
    for (uint64_t p = 0; p < pds; p++) pdpt_hi[p] = (uint64_t)(uintptr_t)(pd + p * 512) | PTE_P | PTE_W;
    for (uint64_t t = 0; t < tables; t++) {
        uint64_t *table = l1 + t * 512;
        for (unsigned i = 1; i < 512; i++) table[i] = 0;
        table[0] = (uint64_t)(uintptr_t)data1 | PTE_P | PTE_W;
        pd[t] = (uint64_t)(uintptr_t)table | PTE_P | PTE_W;
    }
    pml4[1] = (uint64_t)(uintptr_t)pdpt_hi | PTE_P | PTE_W;
    write_cr3(read_cr3());
    const uint64_t va0 = 512ull << 30;
    uint64_t h = FNV64_INIT;
    for (uint64_t t = 0; t < tables; t++) h = fnv64_u64(h, *(volatile uint64_t *)(uintptr_t)(va0 + t * 2 * MiB));
    for (uint64_t t = 0; t < tables; t++) {
        volatile uint64_t *va = (volatile uint64_t *)(uintptr_t)(va0 + t * 2 * MiB);
        l1[t * 512] = (uint64_t)(uintptr_t)data2 | PTE_P | PTE_W;
        invlpg((const void *)va);
        CHECK(*va == 0x2222);
        h = fnv64_u64(h, *va);
    }
    printf("shadow-ptflood: %lu tables (%lu KiB)\n", (unsigned long)tables, (unsigned long)(tables * 4));
    pass("shadow-ptflood", h);
}
