/*
 * x86-32/pse: 32-bit paging with CR4.PSE (SDM Vol. 3A 4.3). The page directory maps 0-4 MiB and
 * 12-16 MiB with 4 MiB pages and 4-8 MiB through a page table of 4 KiB pages (0x401000 read-only,
 * 0x402000 supervisor-only); 8-12 MiB is not mapped. Then #PF, #GP and #UD through 32-bit
 * interrupt gates at CPL 0, and #UD, #PF and #GP(0x182) from CPL 3 with the ring change through
 * the TSS; INT 0x80 through a DPL-3 trap gate ends the run.
 */
#include "x86-32.h"

static u32 pd[1024] __attribute__((aligned(4096)));
static u32 pt[1024] __attribute__((aligned(4096)));

static int x86_32_finish(void) {
    puts32(traps_seen == 8 ? "x86-32 pse: PASS\n" : "x86-32 pse: FAIL (trap count)\n");
    return traps_seen == 8 ? 0 : 1;
}

int kmain32(struct hvm_start_info *si) {
    (void)si;
    setup_cpu_tables();
    puts32("x86-32 pse: 32-bit paging, 4 MiB pages\n");
    pd[0] = 0x000000 | PTE_P | PTE_RW | PTE_US | PTE_PS;
    pd[1] = (u32)pt | PTE_P | PTE_RW | PTE_US;
    pd[3] = 0xc00000 | PTE_P | PTE_RW | PTE_US | PTE_PS;
    for (u32 k = 0; k < 1024; k++) pt[k] = (0x400000 + k * 4096) | PTE_P | PTE_RW | PTE_US;
    pt[1] &= ~PTE_RW; /* 0x401000: read-only (CR0.WP makes it so for CPL 0 too) */
    pt[2] &= ~PTE_US; /* 0x402000: supervisor only */
    write_cr4(read_cr4() | CR4_PSE);
    write_cr3((u32)pd);
    write_cr0(read_cr0() | CR0_PG | CR0_WP);
    *(volatile u32 *)0xc00010 = 0x5eed; /* a 4 MiB page above the hole */
    *(volatile u32 *)0x403000 = *(volatile u32 *)0xc00010; /* a 4 KiB page */
    puts32(*(volatile u32 *)0x403000 == 0x5eed && (pd[3] & 0x60) == 0x60 && (pt[3] & 0x60) == 0x60 ? "paging on: A and D set\n" : "paging on: A/D wrong\n");
    kernel_traps(0x00a00000, 0x401000);
    /* Rewrite live tables: a PTE (0x405000 -> the frame of 0x403000) and a PDE (8-12 MiB -> a
       4 MiB page at 12 MiB), each followed by INVLPG: the new mappings must be seen. */
    pt[5] = (0x403000) | PTE_P | PTE_RW | PTE_US;
    __asm__ volatile("invlpg (%0)" : : "r"(0x405000) : "memory");
    pd[2] = 0xc00000 | PTE_P | PTE_RW | PTE_US | PTE_PS;
    __asm__ volatile("invlpg (%0)" : : "r"(0x800010) : "memory");
    puts32(*(volatile u32 *)0x405000 == 0x5eed && *(volatile u32 *)0x800010 == 0x5eed ? "rewritten PTE and PDE: seen\n" : "rewritten PTE and PDE: FAIL\n");
    x86_32_run_user();
}
