/*
 * hostile/shadow-aboveram: maps the guest-physical frames just above its RAM (the top of the
 * start info's memory map) and reads and writes them. Nothing of the guest's is there: on EPT
 * the access is an EPT violation the hypervisor answers from its MMIO path (unassigned space
 * below 4 GiB reads all ones and drops writes) or by crashing the domain. On shadow paging the
 * hypervisor's own frames (the identity page table for paging-off entry) once sat there, and the
 * guest could read and write them. The same guest must see the same on both MMUs: it prints
 * what it read, then PASS. `gpa=N` maps from guest-physical N instead; `pages=N` (default 8).
 */
#include "rt.h"

static uint64_t pd_high[512] __attribute__((aligned(4096)));
static uint64_t l1_high[512] __attribute__((aligned(4096)));

int kmain(struct hvm_start_info *si) {
    uint64_t top = 0;
    if (si->version >= 1 && si->memmap_paddr) {
        const struct hvm_memmap_table_entry *e = (const void *)(uintptr_t)si->memmap_paddr;
        for (uint32_t i = 0; i < si->memmap_entries; i++)
            if (e[i].type == XEN_HVM_MEMMAP_TYPE_RAM && e[i].addr + e[i].size > top) top = e[i].addr + e[i].size;
    }
    top = cmdline_uint("gpa", top); /* `gpa=N` (decimal): map from there instead */
    CHECK(top != 0 && (top & 0xfff) == 0);
    uint64_t pages = cmdline_uint("pages", 8);
    CHECK(pages <= 512);
    /* VA 1 GiB + i * 4 KiB -> GPA top + i * 4 KiB */
    for (uint64_t i = 0; i < pages; i++) l1_high[i] = (top + i * 4096) | PTE_P | PTE_W;
    pd_high[0] = (uint64_t)(uintptr_t)l1_high | PTE_P | PTE_W;
    pdpt[1] = (uint64_t)(uintptr_t)pd_high | PTE_P | PTE_W;
    write_cr3(read_cr3());
    uint64_t h = FNV64_INIT;
    for (uint64_t i = 0; i < pages; i++) {
        volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)((1ull << 30) + i * 4096);
        uint64_t before = p[0];
        p[0] = 0x5eed0000 + i;
        p[1] = 0;
        uint64_t after = p[0];
        printf("GPA %#lx: read %#lx, after writing %#lx\n", (unsigned long)(top + i * 4096), (unsigned long)before, (unsigned long)after);
        h = fnv64_u64(fnv64_u64(h, before), after);
    }
    pass("shadow-aboveram", h);
}
