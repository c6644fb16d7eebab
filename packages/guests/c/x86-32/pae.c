/*
 * x86-32/pae: PAE paging without long mode (SDM Vol. 3A 4.4): a PDPT of four PDPTEs (loaded into
 * the PDPTE registers by the MOV CR0 that turns paging on, and by MOV CR3), one page directory of
 * 2 MiB pages over 0-4 MiB, 6-8 MiB and 12-16 MiB, and a page table of 4 KiB pages for 4-6 MiB
 * (0x401000 read-only, 0x402000 supervisor-only, 0x403000 execute-disable with EFER.NXE); 8-12 MiB
 * is not mapped. Then the same exceptions as x86-32/pse, plus #PF on a fetch from the XD page
 * (error 0x11) and #GP(0) for a MOV CR3 whose PDPT has a present PDPTE with a reserved bit.
 */
#include "x86-32.h"

static u64 pdpt[4] __attribute__((aligned(32)));
static u64 bad_pdpt[4] __attribute__((aligned(32)));
static u64 pd[512] __attribute__((aligned(4096)));
static u64 pt[512] __attribute__((aligned(4096)));

#define PTE_XD (1ull << 63)

static int x86_32_finish(void) {
    puts32(traps_seen == 10 ? "x86-32 pae: PASS\n" : "x86-32 pae: FAIL (trap count)\n");
    return traps_seen == 10 ? 0 : 1;
}

static inline void wrmsr(u32 msr, u64 v) { __asm__ volatile("wrmsr" : : "c"(msr), "a"((u32)v), "d"((u32)(v >> 32))); }
static inline u64 rdmsr(u32 msr) {
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((u64)hi << 32) | lo;
}

int kmain32(struct hvm_start_info *si) {
    (void)si;
    setup_cpu_tables();
    puts32("x86-32 pae: PAE paging, 2 MiB pages, NX\n");
    pdpt[0] = (u32)pd | PTE_P;
    pd[0] = 0x000000 | PTE_P | PTE_RW | PTE_US | PTE_PS;
    pd[1] = 0x200000 | PTE_P | PTE_RW | PTE_US | PTE_PS;
    pd[2] = (u32)pt | PTE_P | PTE_RW | PTE_US;
    pd[3] = 0x600000 | PTE_P | PTE_RW | PTE_US | PTE_PS;
    pd[6] = 0xc00000 | PTE_P | PTE_RW | PTE_US | PTE_PS;
    pd[7] = 0xe00000 | PTE_P | PTE_RW | PTE_US | PTE_PS;
    for (u32 k = 0; k < 512; k++) pt[k] = (0x400000 + k * 4096) | PTE_P | PTE_RW | PTE_US;
    pt[1] &= ~(u64)PTE_RW;
    pt[2] &= ~(u64)PTE_US;
    pt[3] |= PTE_XD;
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE);
    write_cr4(read_cr4() | CR4_PAE);
    write_cr3((u32)pdpt);
    write_cr0(read_cr0() | CR0_PG | CR0_WP);
    *(volatile u32 *)0xc00010 = 0x5eed;
    *(volatile u32 *)0x404000 = *(volatile u32 *)0xc00010;
    puts32(*(volatile u32 *)0x404000 == 0x5eed && (pd[6] & 0x60) == 0x60 && (pt[4] & 0x60) == 0x60 ? "paging on: A and D set\n" : "paging on: A/D wrong\n");
    kernel_traps(0x00a00000, 0x401000);
    /* A fetch from the execute-disable page: #PF with I/D (error 0x11). */
    *(volatile u8 *)0x403000 = 0xc3;
    __asm__ volatile("movl $1f, resume_eip\n\tjmp *%0\n1:" : : "r"(0x403000) : "memory");
    /* MOV CR3 with a reserved bit (R/W) in a present PDPTE: #GP(0), CR3 and the PDPTEs unchanged. */
    bad_pdpt[0] = (u32)pd | PTE_P | PTE_RW;
    __asm__ volatile("movl $1f, resume_eip\n\tmov %0, %%cr3\n1:" : : "r"((u32)bad_pdpt) : "memory");
    *(volatile u32 *)0x404000 = 1; /* still on the good tables */
    /* Rewrite a live 8-byte PTE (0x405000 -> the frame of 0x404000) with INVLPG: seen. */
    pt[5] = 0x404000 | PTE_P | PTE_RW | PTE_US;
    __asm__ volatile("invlpg (%0)" : : "r"(0x405000) : "memory");
    puts32(*(volatile u32 *)0x405000 == 1 ? "rewritten PTE: seen\n" : "rewritten PTE: FAIL\n");
    x86_32_run_user();
}
