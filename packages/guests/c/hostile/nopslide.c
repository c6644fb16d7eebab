/*
 * hostile/nopslide: jumps into RAM it filled with NOPs (or left zero, `fill=zero`: 00 00 is
 * ADD [RAX], AL, harmless with RAX pointing at RAM) from the end of its image to the top of its
 * memory, and runs down the slide until it falls off the end of RAM. Every instruction is at a
 * new address, so an instruction or block cache without a bound grows with every step: the host
 * must stay within a fixed heap however long the slide is. Never prints PASS.
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
    /* the slide starts 2 MiB above the image (the stack is inside the image) */
    uint64_t start = (((uint64_t)(uintptr_t)__image_end + (2u << 20)) & ~0xfffull);
    int zero = strcmp(cmdline(), "fill=zero") == 0;
    printf("nopslide: %s from %#lx to %#lx\n", zero ? "zeroes" : "NOPs", start, top);
    memset((void *)(uintptr_t)start, zero ? 0x00 : 0x90, top - start);
    __asm__ volatile("mov %0, %%rax\n\tjmp *%0" : : "r"(start) : "rax", "memory");
    __builtin_unreachable();
}
