/*
 * hostile/fidelity-cpu: checks that the CPU raises exceptions and keeps system state as the
 * Intel SDM says, each case one line "fidelity: NAME ok" or "fidelity: NAME FAIL ...". It must
 * print the same lines on EPT and on shadow paging. Cases (issue 18, "Fidelity"):
 *   pat       WRMSR IA32_PAT with valid memory types is kept; a reserved type (2) is #GP(0)
 *   debugctl  IA32_DEBUGCTL (1D9H) reads back LBR; a reserved bit is #GP(0)
 *   dr        DR6 = FFFF0FF0H and DR7 = 400H at reset
 *   icebp     ICEBP (F1) is a #DB trap: RIP past the instruction
 *   ss        a non-canonical reference through RSP or RBP is #SS(0), through RAX #GP(0)
 *   lgdt      LGDT with a non-canonical base is #GP(0)
 *   esr       a self IPI with an illegal vector sets ESR send and receive illegal vector (60H)
 *   ts        an interrupt through an IST gate whose IST slot is past the TSS limit is #TS(TR)
 *   pgoff     paging off from compatibility mode leaves long mode (EFER.LMA = 0), and back on
 * Ends with "PASS fidelity-cpu" when every case passed, exit code 1 otherwise.
 */
#include "rt.h"

static volatile uint64_t got_vector, got_error, got_rip;
static volatile uint64_t recover_rip;
static int failures;

/* A trap handler that records the trap and resumes at recover_rip (0: right after it, for traps). */
static int record(struct trap_frame *f) {
    got_vector = f->vector;
    got_error = f->error_code;
    got_rip = f->rip;
    if (recover_rip != 0)
        f->rip = recover_rip;
    recover_rip = 0;
    return 1;
}

static void expect_trap(const char *name, uint64_t vector, uint64_t error) {
    if (got_vector != vector || got_error != error) {
        printf("fidelity: %s FAIL vector %llu error %#llx (want %llu, %#llx)\n", name, (unsigned long long)got_vector,
               (unsigned long long)got_error, (unsigned long long)vector, (unsigned long long)error);
        failures++;
    }
}

static void reset_trap(void) {
    got_vector = ~0ull;
    got_error = ~0ull;
    got_rip = 0;
}

/* WRMSR / RDMSR that may fault: the handler resumes after the instruction. */
static void wrmsr_safe(uint32_t msr, uint64_t v) {
    reset_trap();
    __asm__ volatile("lea 1f(%%rip), %%r8\n\tmov %%r8, %0\n\twrmsr\n1:"
                     : "=m"(recover_rip)
                     : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32))
                     : "r8", "memory");
}

static void ok(const char *name, int good) {
    if (good)
        printf("fidelity: %s ok\n", name);
    else {
        printf("fidelity: %s FAIL\n", name);
        failures++;
    }
}

static void check_pat(void) {
    wrmsr_safe(0x277, 0x0007040600070106ull);
    int good = got_vector == ~0ull && rdmsr(0x277) == 0x0007040600070106ull;
    wrmsr_safe(0x277, 0x0007040600070206ull);
    expect_trap("pat", X86_EXC_GP, 0);
    ok("pat", good && got_vector == X86_EXC_GP && rdmsr(0x277) == 0x0007040600070106ull);
}

static void check_debugctl(void) {
    wrmsr_safe(0x1d9, 1);
    int good = got_vector == ~0ull && rdmsr(0x1d9) == 1;
    wrmsr_safe(0x1d9, 1ull << 5);
    expect_trap("debugctl", X86_EXC_GP, 0);
    wrmsr_safe(0x1d9, 0);
    ok("debugctl", good && got_vector == ~0ull && rdmsr(0x1d9) == 0);
}

static void check_dr(void) {
    uint64_t dr6, dr7;
    __asm__ volatile("mov %%dr6, %0" : "=r"(dr6));
    __asm__ volatile("mov %%dr7, %0" : "=r"(dr7));
    if (dr6 != 0xffff0ff0 || dr7 != 0x400)
        printf("fidelity: dr DR6=%#llx DR7=%#llx\n", (unsigned long long)dr6, (unsigned long long)dr7);
    ok("dr", dr6 == 0xffff0ff0 && dr7 == 0x400);
}

static void check_icebp(void) {
    uint64_t after;
    reset_trap();
    recover_rip = 0;
    __asm__ volatile(".byte 0xf1\n1:\n\tlea 1b(%%rip), %0" : "=r"(after) : : "memory");
    expect_trap("icebp", X86_EXC_DB, 0);
    ok("icebp", got_vector == X86_EXC_DB && got_rip == after);
}

static void check_ss(void) {
    uint64_t bad = 0x0000800000000000ull;
    reset_trap();
    __asm__ volatile("lea 1f(%%rip), %%r8\n\tmov %%r8, %0\n\tmov (%%rsp,%1), %%r9\n1:" : "=m"(recover_rip) : "r"(bad) : "r8", "r9", "memory");
    expect_trap("ss rsp", X86_EXC_SS, 0);
    int good = got_vector == X86_EXC_SS;
    reset_trap();
    __asm__ volatile("push %%rbp\n\tmov %1, %%rbp\n\tlea 1f(%%rip), %%r8\n\tmov %%r8, %0\n\tmov 8(%%rbp), %%r9\n1:\tpop %%rbp"
                     : "=m"(recover_rip) : "r"(bad) : "r8", "r9", "memory");
    expect_trap("ss rbp", X86_EXC_SS, 0);
    good = good && got_vector == X86_EXC_SS;
    reset_trap();
    __asm__ volatile("lea 1f(%%rip), %%r8\n\tmov %%r8, %0\n\tmov (%1), %%r9\n1:" : "=m"(recover_rip) : "r"(bad) : "r8", "r9", "memory");
    expect_trap("ss rax", X86_EXC_GP, 0);
    ok("ss", good && got_vector == X86_EXC_GP);
}

static void check_lgdt(void) {
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } bad = { 0x37, 0x0000800000000000ull }, cur;
    __asm__ volatile("sgdt %0" : "=m"(cur));
    reset_trap();
    __asm__ volatile("lea 1f(%%rip), %%r8\n\tmov %%r8, %0\n\tlgdt %1\n1:" : "=m"(recover_rip) : "m"(bad) : "r8", "memory");
    expect_trap("lgdt", X86_EXC_GP, 0);
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } now;
    __asm__ volatile("sgdt %0" : "=m"(now));
    ok("lgdt", got_vector == X86_EXC_GP && now.base == cur.base);
}

#define MSR_APIC_BASE 0x1b
#define MSR_X2APIC_SIVR 0x80f
#define MSR_X2APIC_ESR 0x828
#define MSR_X2APIC_SELF_IPI 0x83f

static void check_esr(void) {
    uint64_t base = rdmsr(MSR_APIC_BASE);
    wrmsr(MSR_APIC_BASE, base | (1ull << 11) | (1ull << 10)); /* EN, EXTD: x2APIC mode */
    wrmsr(MSR_X2APIC_SIVR, 0x1ff);                           /* software-enabled, spurious vector FF */
    wrmsr(MSR_X2APIC_ESR, 0);
    wrmsr(MSR_X2APIC_SELF_IPI, 3);                           /* an illegal vector (0-15) */
    wrmsr(MSR_X2APIC_ESR, 0);                                /* latch */
    uint64_t esr = rdmsr(MSR_X2APIC_ESR);
    if (esr != 0x60)
        printf("fidelity: esr ESR=%#llx\n", (unsigned long long)esr);
    ok("esr", esr == 0x60);
}

/* A GDT copy with room for a 64-bit TSS descriptor at 0x30 and a 32-bit DPL-0 code segment at 0x40. */
static uint64_t gdt2[10] __attribute__((aligned(16)));
static uint8_t tss[0x68] __attribute__((aligned(16)));
static uint8_t ist_stack[4096] __attribute__((aligned(16)));

static void load_gdt2(uint32_t tss_limit) {
    for (int i = 0; i < 6; i++)
        gdt2[i] = gdt[i];
    uint64_t b = (uint64_t)(uintptr_t)tss;
    gdt2[6] = (tss_limit & 0xffff) | ((b & 0xffffff) << 16) | (0x89ull << 40) | ((uint64_t)(tss_limit & 0xf0000) << 32) | ((b >> 24 & 0xff) << 56);
    gdt2[7] = b >> 32;
    gdt2[8] = 0x00cf9a000000ffffull; /* 0x40: 32-bit code, DPL 0 */
    gdt2[9] = 0;
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } d = { sizeof gdt2 - 1, (uint64_t)(uintptr_t)gdt2 };
    __asm__ volatile("lgdt %0" : : "m"(d));
    __asm__ volatile("ltr %w0" : : "r"((uint16_t)0x30));
}

/* The IDT gate for `vector`, read back with SIDT. */
static uint8_t *idt_gate(unsigned vector) {
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } d;
    __asm__ volatile("sidt %0" : "=m"(d));
    return (uint8_t *)(uintptr_t)(d.base + 16 * vector);
}

static void check_ts(void) {
    /* IST1 at TSS offset 24H..2BH: a limit of 23H leaves it outside the TSS. */
    *(uint64_t *)(tss + 0x24) = (uint64_t)(uintptr_t)(ist_stack + sizeof ist_stack);
    load_gdt2(0x23);
    uint8_t *gate = idt_gate(X86_EXC_BP);
    gate[4] = 1; /* #BP through IST 1 */
    reset_trap();
    __asm__ volatile("lea 1f(%%rip), %%r8\n\tmov %%r8, %0\n\tint3\n1:" : "=m"(recover_rip) : : "r8", "memory");
    expect_trap("ts", X86_EXC_TS, 0x30);
    int good = got_vector == X86_EXC_TS;
    /* A limit that covers IST1: #BP is delivered on the IST stack. */
    gdt2[6] = (gdt2[6] & ~0xffffull) | 0x67;
    gdt2[6] &= ~(2ull << 40); /* not busy, so LTR takes it again */
    __asm__ volatile("ltr %w0" : : "r"((uint16_t)0x30));
    reset_trap();
    __asm__ volatile("int3" : : : "memory");
    expect_trap("ts int3", X86_EXC_BP, 0);
    gate[4] = 0;
    ok("ts", good && got_vector == X86_EXC_BP);
}

/*
 * Paging off from compatibility mode (SDM 9.8.5.4): far return to the 32-bit code segment 0x40,
 * clear CR0.PG (EFER.LMA clears), read EFER, set CR0.PG again (LMA sets, in compatibility mode),
 * far jump back to 64-bit code. Returns EFER's low half as seen with paging off. Interrupts are
 * off throughout. The code and stack are identity-mapped below 4 GiB.
 */
uint32_t pgoff_roundtrip(void);
__asm__(
    ".text\n"
    ".globl pgoff_roundtrip\n"
    "pgoff_roundtrip:\n"
    "  push %rbx\n"
    "  pushfq\n"
    "  cli\n"
    "  lea 1f(%rip), %rax\n"
    "  pushq $0x40\n"
    "  push %rax\n"
    "  lretq\n"
    ".code32\n"
    "1:\n"
    "  mov %cr0, %eax\n"
    "  and $0x7fffffff, %eax\n"
    "  mov %eax, %cr0\n"
    "  mov $0xc0000080, %ecx\n"
    "  rdmsr\n"
    "  mov %eax, %ebx\n"
    "  mov %cr0, %eax\n"
    "  or $0x80000000, %eax\n"
    "  mov %eax, %cr0\n"
    "  ljmp $0x08, $2f\n"
    ".code64\n"
    "2:\n"
    "  mov %ebx, %eax\n"
    "  popfq\n"
    "  pop %rbx\n"
    "  ret\n");

static void check_pgoff(void) {
    uint32_t efer_off = pgoff_roundtrip();
    uint64_t efer_on = rdmsr(0xc0000080);
    if ((efer_off & (1u << 10)) != 0 || (efer_on & (1u << 10)) == 0)
        printf("fidelity: pgoff EFER off %#x on %#llx\n", efer_off, (unsigned long long)efer_on);
    ok("pgoff", (efer_off & (1u << 10)) == 0 && (efer_off & (1u << 8)) != 0 && (efer_on & (1u << 10)) != 0);
}

int kmain(struct hvm_start_info *si) {
    (void)si;
    for (unsigned v = 0; v < 32; v++)
        if (v != X86_EXC_PF && v != X86_EXC_DF)
            trap_set_handler(v, record);
    check_pat();
    check_debugctl();
    check_dr();
    check_icebp();
    check_ss();
    check_lgdt();
    check_esr();
    check_ts();
    check_pgoff();
    if (failures != 0) {
        printf("fidelity: %d failures\n", failures);
        rt_exit(EXIT_FAILURE_CODE);
    }
    pass("fidelity-cpu", 0);
}
