/*
 * hostile/sched-hlt: `sti; hlt` while the only interrupt source is a periodic x2APIC timer that
 * can never be taken: its LVT entry masked (default, `mode=masked`), or vector 0x40 held off by
 * TPR = 0xF0 (`mode=tpr`). The vCPU is blocked for good; the host must neither hang nor spin on
 * the timer's deadlines. Never prints PASS.
 */
#include "rt.h"

#define MSR_APIC_BASE 0x1b
#define APIC_BASE_EN (1ull << 11)
#define APIC_BASE_EXTD (1ull << 10)
#define X2APIC_TPR 0x808
#define X2APIC_SVR 0x80f
#define X2APIC_LVT_TIMER 0x832
#define X2APIC_TIMER_INIT 0x838
#define X2APIC_TIMER_DIV 0x83e
#define LVT_MASKED (1u << 16)
#define LVT_TIMER_PERIODIC (1u << 17)

int kmain(struct hvm_start_info *si) {
    (void)si;
    int tpr = strcmp(cmdline(), "mode=tpr") == 0;
    uint64_t apic = rdmsr(MSR_APIC_BASE) | APIC_BASE_EN;
    wrmsr(MSR_APIC_BASE, apic);
    wrmsr(MSR_APIC_BASE, apic | APIC_BASE_EXTD);
    wrmsr(X2APIC_SVR, 0x1ff);
    if (tpr) wrmsr(X2APIC_TPR, 0xf0);
    wrmsr(X2APIC_TIMER_DIV, 0xb); /* divide by 1 */
    wrmsr(X2APIC_LVT_TIMER, LVT_TIMER_PERIODIC | 0x40 | (tpr ? 0 : LVT_MASKED));
    wrmsr(X2APIC_TIMER_INIT, 100000);
    printf("sched-hlt: sti; hlt with the APIC timer %s\n", tpr ? "held off by TPR 0xF0" : "masked");
    for (;;) __asm__ volatile("sti; hlt" ::: "memory");
}
