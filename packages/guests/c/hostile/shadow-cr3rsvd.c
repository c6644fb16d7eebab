/*
 * hostile/shadow-cr3rsvd: MOV to CR3 with reserved bits set: bit 51, bit 63, and the first bit
 * at MAXPHYADDR (CPUID 0x80000008 EAX[7:0]). Each must raise #GP(0) (SDM Vol. 3A 4.5, Table
 * 4-12; MOV CR), with CR3 unchanged, on EPT (the CPU checks) and on shadow paging (the load
 * exits first and the hypervisor checks). Bits 2:0 and 11:5 are ignored with CR4.PCIDE = 0 and
 * load. It prints what it saw, then PASS; on shadow paging the domain used to crash.
 */
#include "rt.h"

static volatile unsigned gp_count;
static volatile uint64_t gp_error;

static int on_gp(struct trap_frame *f) {
    gp_count++;
    gp_error = f->error_code;
    f->rip += 3; /* mov %rax, %cr3 is 0f 22 d8 */
    return 1;
}

static void load_cr3(uint64_t v) { __asm__ volatile("mov %0, %%cr3" : : "a"(v) : "memory"); }

int kmain(struct hvm_start_info *si) {
    (void)si;
    uint32_t eax, ebx, ecx, edx;
    __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(0x80000008u), "c"(0));
    unsigned maxphy = eax & 0xff;
    trap_set_handler(X86_EXC_GP, on_gp);
    uint64_t cr3 = read_cr3();
    const uint64_t bad[] = { cr3 | (1ull << 51), cr3 | (1ull << 63), cr3 | (1ull << maxphy) };
    uint64_t h = FNV64_INIT;
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned before = gp_count;
        load_cr3(bad[i]);
        printf("CR3 %#lx: %s (error code %lu), CR3 now %#lx\n", (unsigned long)bad[i], gp_count == before + 1 ? "#GP" : "loaded",
               (unsigned long)gp_error, (unsigned long)read_cr3());
        CHECK(gp_count == before + 1 && gp_error == 0 && read_cr3() == cr3);
        h = fnv64_u64(h, gp_count);
    }
    load_cr3(cr3 | 0xfe7); /* ignored bits */
    CHECK(gp_count == 3);
    printf("CR3 %#lx: loaded, CR3 now %#lx\n", (unsigned long)(cr3 | 0xfe7), (unsigned long)read_cr3());
    load_cr3(cr3);
    pass("shadow-cr3rsvd", h);
}
