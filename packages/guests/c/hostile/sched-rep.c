/*
 * hostile/sched-rep: a REP string instruction with a huge count over the guest's own memory,
 * again and again: REP MOVSB (default, `op=movs`) copies the lower half of the RAM above the
 * image onto the upper half, REP STOSQ (`op=stos`) fills all of it. Each REP is one instruction
 * with millions of iterations: a scheduler that counts a whole REP as one instruction, or that
 * cannot stop one part-way, lets this guest hold the host CPU. Never prints PASS.
 */
#include "rt.h"

int kmain(struct hvm_start_info *si) {
    uint64_t top = 0;
    if (si->version >= 1 && si->memmap_paddr) {
        const struct hvm_memmap_table_entry *e = (const void *)(uintptr_t)si->memmap_paddr;
        for (uint32_t i = 0; i < si->memmap_entries; i++)
            if (e[i].type == XEN_HVM_MEMMAP_TYPE_RAM && e[i].addr + e[i].size > top) top = e[i].addr + e[i].size;
    }
    if (top == 0) top = 32ull << 20;
    if (top > (1ull << 30)) top = 1ull << 30; /* the runtime maps the first GiB */
    uint64_t start = (((uint64_t)(uintptr_t)__image_end + (1u << 20)) & ~0xfffull);
    int stos = strcmp(cmdline(), "op=stos") == 0;
    uint64_t half = ((top - start) / 2) & ~7ull;
    printf("sched-rep: %s over %#lx..%#lx, forever\n", stos ? "REP STOSQ" : "REP MOVSB", start, top);
    for (;;) {
        if (stos) {
            uint64_t n = (top - start) / 8, dst = start;
            __asm__ volatile("rep stosq" : "+c"(n), "+D"(dst) : "a"(0x5a5a5a5a5a5a5a5aull) : "memory");
        } else {
            uint64_t n = half, src = start, dst = start + half;
            __asm__ volatile("rep movsb" : "+c"(n), "+S"(src), "+D"(dst) : : "memory");
        }
    }
}
