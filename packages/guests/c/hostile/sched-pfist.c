/*
 * hostile/sched-pfist: a #PF handler on an IST stack that is itself unmapped. Gate 14 (and with
 * `df=ist`, gate 8 too) uses IST 1, which points at 1 GiB + 1 MiB, outside the runtime's
 * identity map; then the guest touches an unmapped page. Delivering the #PF faults on its own
 * stack, which escalates to a double fault (and, with df=ist, a triple fault). Never prints PASS.
 */
#include "rt.h"

#define TSS_SEL 0x30

struct __attribute__((packed)) tss64 {
    uint32_t reserved0;
    uint64_t rsp0, rsp1, rsp2;
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
};

static struct tss64 tss __attribute__((aligned(16)));

static void gate_ist(uint64_t idt, unsigned vector, unsigned ist) {
    uint32_t *gate = (uint32_t *)(uintptr_t)(idt + vector * 16);
    gate[1] = (gate[1] & ~7u) | ist;
}

int kmain(struct hvm_start_info *si) {
    (void)si;
    tss.ist[0] = (1ull << 30) + (1ull << 20); /* not mapped */
    tss.iomap_base = sizeof tss;
    uint64_t base = (uint64_t)(uintptr_t)&tss, limit = sizeof tss - 1;
    gdt[TSS_SEL / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) | (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    gdt[TSS_SEL / 8 + 1] = base >> 32;
    __asm__ volatile("ltr %w0" : : "r"((uint16_t)TSS_SEL));
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr;
    __asm__ volatile("sidt %0" : "=m"(idtr));
    int df = strcmp(cmdline(), "df=ist") == 0;
    gate_ist(idtr.base, X86_EXC_PF, 1);
    if (df) gate_ist(idtr.base, X86_EXC_DF, 1);
    printf("sched-pfist: #PF%s on an unmapped IST stack\n", df ? " and #DF" : "");
    volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)((1ull << 30) + (8ull << 20));
    for (;;) (void)*p;
}
