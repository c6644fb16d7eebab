/*
 * hostile/sched-ud: a #UD handler on an IST stack that executes UD2 again, forever. Gate 6 uses
 * IST 1 (a fresh stack at every delivery, so the loop never runs out of stack) and points at a
 * UD2. With `timer=1` an x2APIC periodic timer is armed first (vector 0x40, unmasked, IF = 1),
 * but the handler runs with IF = 0 (an interrupt gate) and never takes it. No instruction ever
 * retires after the first UD2: only the event deliveries count. Never prints PASS.
 */
#include "rt.h"

#define TSS_SEL 0x30
#define MSR_APIC_BASE 0x1b
#define APIC_BASE_EN (1ull << 11)
#define APIC_BASE_EXTD (1ull << 10)
#define X2APIC_SVR 0x80f
#define X2APIC_LVT_TIMER 0x832
#define X2APIC_TIMER_INIT 0x838
#define X2APIC_TIMER_DIV 0x83e
#define LVT_TIMER_PERIODIC (1u << 17)

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
static uint8_t ist_stack[4096] __attribute__((aligned(16)));

void ud_loop(void);
__asm__(".text\n.globl ud_loop\nud_loop: ud2\n");

int kmain(struct hvm_start_info *si) {
    (void)si;
    tss.ist[0] = (uint64_t)(uintptr_t)(ist_stack + sizeof ist_stack);
    tss.iomap_base = sizeof tss;
    uint64_t base = (uint64_t)(uintptr_t)&tss, limit = sizeof tss - 1;
    gdt[TSS_SEL / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) | (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    gdt[TSS_SEL / 8 + 1] = base >> 32;
    __asm__ volatile("ltr %w0" : : "r"((uint16_t)TSS_SEL));
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr;
    __asm__ volatile("sidt %0" : "=m"(idtr));
    uint32_t *gate = (uint32_t *)(uintptr_t)(idtr.base + 6 * 16);
    uint64_t target = (uint64_t)(uintptr_t)ud_loop;
    gate[0] = (0x08u << 16) | (uint32_t)(target & 0xffff);
    gate[1] = (uint32_t)(target & 0xffff0000u) | 0x8e00u | 1u; /* P, DPL 0, interrupt gate, IST 1 */
    gate[2] = (uint32_t)(target >> 32);
    gate[3] = 0;
    int timer = strcmp(cmdline(), "timer=1") == 0;
    if (timer) {
        uint64_t apic = rdmsr(MSR_APIC_BASE) | APIC_BASE_EN;
        wrmsr(MSR_APIC_BASE, apic);
        wrmsr(MSR_APIC_BASE, apic | APIC_BASE_EXTD);
        wrmsr(X2APIC_SVR, 0x1ff);
        wrmsr(X2APIC_TIMER_DIV, 0xb); /* divide by 1 */
        wrmsr(X2APIC_LVT_TIMER, LVT_TIMER_PERIODIC | 0x40);
        wrmsr(X2APIC_TIMER_INIT, 100000);
    }
    printf("sched-ud: UD2 in a #UD handler on IST 1%s, forever\n", timer ? " with the APIC timer armed" : "");
    if (timer) __asm__ volatile("sti");
    __asm__ volatile("ud2");
    return 1;
}
