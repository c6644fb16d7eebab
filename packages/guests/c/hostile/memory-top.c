/*
 * hostile/memory-top: a probe of the memory the builder gave it. Reads the memory map from
 * hvm_start_info and checks it (ascending, no overlaps, no RAM in the MMIO hole from 0xF0000000
 * to 4 GiB, the RAM above 4 GiB starting at 4 GiB), reads the local APIC's version register at
 * 0xFEE00000 (it must be the APIC, not RAM or unassigned space), then writes and reads back the
 * first and the last 8 bytes of the first and the last page of every RAM range: the top page of
 * a 64 GiB guest included. Addresses above the runtime's 1 GiB identity map are mapped here with
 * 2 MiB pages (identity: virtual = physical).
 *
 * Prints one line per range and "PASS memory-top <checksum>" (the checksum covers the map and
 * the values read back, so the same memory gives the same line); any mismatch panics.
 */
#include "rt.h"

#define MMIO_HOLE_START 0xF0000000ull  /* HVM_BELOW_4G_RAM_END, xen/include/public/hvm/e820.h */
#define FOUR_GIB        0x100000000ull
#define APIC_BASE       0xFEE00000ull
#define APIC_LVR        0x30           /* local APIC version register (SDM Vol. 3A 11.4.8) */
#define PTE_PWT         0x008ull
#define PTE_PCD         0x010ull

static uint64_t pdpt_pool[4][512] __attribute__((aligned(4096)));
static uint64_t pd_pool[16][512] __attribute__((aligned(4096)));
static unsigned pdpts_used, pds_used;

/* Map the 2 MiB page holding pa at the same virtual address. */
static void map_2m(uint64_t pa, uint64_t flags) {
    unsigned l4 = (pa >> 39) & 511, l3 = (pa >> 30) & 511, l2 = (pa >> 21) & 511;
    if (!(pml4[l4] & PTE_P)) {
        CHECK(pdpts_used < 4);
        pml4[l4] = (uint64_t)(uintptr_t)pdpt_pool[pdpts_used++] | PTE_P | PTE_W;
    }
    uint64_t *l3t = (uint64_t *)(uintptr_t)(pml4[l4] & PTE_ADDR_MASK);
    if (!(l3t[l3] & PTE_P)) {
        CHECK(pds_used < 16);
        l3t[l3] = (uint64_t)(uintptr_t)pd_pool[pds_used++] | PTE_P | PTE_W;
    }
    CHECK(!(l3t[l3] & PTE_PS));
    uint64_t *l2t = (uint64_t *)(uintptr_t)(l3t[l3] & PTE_ADDR_MASK);
    l2t[l2] = (pa & ~0x1fffffull) | PTE_P | PTE_W | PTE_PS | flags;
    write_cr3(read_cr3());
}

static uint64_t touch(uint64_t h, uint64_t pa) {
    map_2m(pa, 0);
    volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)pa;
    uint64_t pattern = pa ^ 0x5a5aa5a5c3c33c3cull;
    *p = pattern;
    uint64_t got = *p;
    if (got != pattern) panic("memory-top: wrote %#lx at %#lx, read %#lx", pattern, pa, got);
    return fnv64_u64(h, got);
}

int kmain(struct hvm_start_info *si) {
    CHECK(si->version >= 1 && si->memmap_paddr != 0 && si->memmap_entries > 0);
    const struct hvm_memmap_table_entry *e = (const void *)(uintptr_t)si->memmap_paddr;
    uint32_t n = si->memmap_entries;
    uint64_t h = FNV64_INIT, ram = 0, top = 0, prev_end = 0;
    int high = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t a = e[i].addr, end = e[i].addr + e[i].size;
        printf("memmap %u: %#lx-%#lx type %u\n", i, a, end - 1, e[i].type);
        CHECK(e[i].size > 0 && a >= prev_end);
        prev_end = end;
        h = fnv64_u64(fnv64_u64(fnv64_u64(h, a), e[i].size), e[i].type);
        if (e[i].type != XEN_HVM_MEMMAP_TYPE_RAM) continue;
        if (a < FOUR_GIB && end > MMIO_HOLE_START) panic("memory-top: RAM %#lx-%#lx reaches into the MMIO hole", a, end - 1);
        if (end > FOUR_GIB) {
            CHECK(a == FOUR_GIB);
            high = 1;
        }
        ram += e[i].size;
        if (end > top) top = end;
    }
    printf("memory-top: %lu MiB of RAM, top %#lx%s\n", ram >> 20, top, high ? " (RAM above 4 GiB)" : "");

    map_2m(APIC_BASE, PTE_PCD | PTE_PWT);
    uint32_t lvr = *(volatile uint32_t *)(uintptr_t)(APIC_BASE + APIC_LVR);
    if ((lvr & 0xff) == 0 || lvr == 0xffffffffu) panic("memory-top: APIC version register reads %#x: not a local APIC", lvr);
    printf("memory-top: local APIC version %#x\n", lvr & 0xff);
    h = fnv64_u64(h, lvr);

    for (uint32_t i = 0; i < n; i++) {
        if (e[i].type != XEN_HVM_MEMMAP_TYPE_RAM) continue;
        uint64_t first = (e[i].addr + 0xfff) & ~0xfffull;
        uint64_t last = ((e[i].addr + e[i].size) & ~0xfffull) - 0x1000;
        /* the first 2 MiB of RAM holds this image: touch above it there */
        if (first < 0x400000 && last >= 0x400000) first = 0x400000;
        else if (first < 0x400000) continue;
        h = touch(h, first);
        h = touch(h, first + 0xff8);
        h = touch(h, last);
        h = touch(h, last + 0xff8);
        printf("memory-top: RAM %#lx-%#lx: first and last page ok\n", e[i].addr, e[i].addr + e[i].size - 1);
    }
    pass("memory-top", h);
}
