/*
 * hostile/sched-highhalf: string I/O and a hypercall buffer at the top of the 64-bit address
 * space, where every higher-half kernel keeps its data. Two pages are mapped at
 * 0xFFFFFFFFFFFFE000 and 0xFFFFFFFFFFFFF000; the guest checks, printing one line each:
 * REP OUTSB from there prints its bytes and advances RSI exactly; REP INSB fills there and
 * advances RDI exactly; an INSD and an OUTSD split across the two pages; a non-canonical RSI and
 * RDI get #GP(0) with the registers untouched, an SS-segment one #SS(0); HYPERVISOR_console_io
 * with a higher-half buffer prints it, with a non-canonical one answers -EFAULT. Then it ends
 * with a REP OUTSD of four zero dwords to the debug-exit port: the first ends the domain with
 * code 0, and the rest must not turn that clean exit into a crash.
 */
#include "rt.h"

#define HI_A 0xffffffffffffe000ull
#define HI_B 0xfffffffffffff000ull
#define NONCANONICAL 0x8000000000000001ull

static uint64_t pdpt_hi[512] __attribute__((aligned(4096)));
static uint64_t pd_hi[512] __attribute__((aligned(4096)));
static uint64_t pt_hi[512] __attribute__((aligned(4096)));
static uint8_t page_a[4096] __attribute__((aligned(4096)));
static uint8_t page_b[4096] __attribute__((aligned(4096)));
static uint32_t exit_codes[4];

static volatile unsigned fault_vector = 0xff;
static volatile uint64_t fault_error, fault_rsi, fault_rdi, fault_rcx;
static volatile unsigned fault_skip;

static int on_fault(struct trap_frame *f) {
    fault_vector = (unsigned)f->vector;
    fault_error = f->error_code;
    fault_rsi = f->rsi;
    fault_rdi = f->rdi;
    fault_rcx = f->rcx;
    f->rip += fault_skip;
    return 1;
}

static unsigned failures;

static void check(int ok, const char *what) {
    printf("%s %s\n", ok ? "ok" : "FAIL", what);
    if (!ok) failures++;
}

static long console_write(uint64_t buf, uint64_t n) {
    long r;
    /* HYPERVISOR_console_io (18), CONSOLEIO_write (0): VMCALL with RAX, RDI, RSI, RDX */
    __asm__ volatile("vmcall" : "=a"(r) : "a"(18ull), "D"(0ull), "S"(n), "d"(buf) : "memory");
    return r;
}

int kmain(struct hvm_start_info *si) {
    (void)si;
    pml4[511] = (uint64_t)(uintptr_t)pdpt_hi | PTE_P | PTE_W;
    pdpt_hi[511] = (uint64_t)(uintptr_t)pd_hi | PTE_P | PTE_W;
    pd_hi[511] = (uint64_t)(uintptr_t)pt_hi | PTE_P | PTE_W;
    pt_hi[510] = (uint64_t)(uintptr_t)page_a | PTE_P | PTE_W;
    pt_hi[511] = (uint64_t)(uintptr_t)page_b | PTE_P | PTE_W;
    write_cr3(read_cr3());
    trap_set_handler(X86_EXC_GP, on_fault);
    trap_set_handler(X86_EXC_SS, on_fault);

    /* REP OUTSB from the top page */
    memcpy(page_b + 0x100, "HIGH-HALF-OK!\n", 14);
    uint64_t rsi = HI_B + 0x100, rcx = 14;
    __asm__ volatile("rep outsb" : "+S"(rsi), "+c"(rcx) : "d"(0xe9) : "memory");
    check(rsi == HI_B + 0x100 + 14 && rcx == 0, "rep outsb from 0xfffffffffffff100: RSI advanced 14");

    /* REP INSB into the top page (the debug console reads 0xE9) */
    uint64_t rdi = HI_B + 0x200;
    rcx = 8;
    __asm__ volatile("rep insb" : "+D"(rdi), "+c"(rcx) : "d"(0xe9) : "memory");
    int filled = 1;
    for (int i = 0; i < 8; i++) filled &= page_b[0x200 + i] == 0xe9;
    check(filled && page_b[0x208] == 0 && page_b[0x1ff] == 0 && rdi == HI_B + 0x208, "rep insb into 0xfffffffffffff200: 8 bytes, RDI advanced 8");

    /* INSD split across the two pages: 0xE9 0 0 0 over 0x...EFFE..0x...F001 */
    page_a[0xffd] = 0x55;
    page_a[0xffe] = page_a[0xfff] = page_b[0] = page_b[1] = 0x55;
    page_b[2] = 0x55;
    rdi = HI_A + 0xffe;
    rcx = 1;
    __asm__ volatile("rep insl" : "+D"(rdi), "+c"(rcx) : "d"(0xe9) : "memory");
    check(page_a[0xffd] == 0x55 && page_a[0xffe] == 0xe9 && page_a[0xfff] == 0 && page_b[0] == 0 && page_b[1] == 0 && page_b[2] == 0x55 && rdi == HI_A + 0x1002,
          "insd split across 0xffffffffffffeffe: E9 00 | 00 00, RDI advanced 4");

    /* OUTSD split across the two pages: the debug console prints the low byte of each dword */
    puts("outsd split: ");
    page_a[0xffe] = 'S';
    page_a[0xfff] = 'x';
    page_b[0] = 'y';
    page_b[1] = 'z';
    page_b[2] = '\n';
    page_b[3] = page_b[4] = page_b[5] = 0;
    rsi = HI_A + 0xffe;
    rcx = 2;
    __asm__ volatile("rep outsl" : "+S"(rsi), "+c"(rcx) : "d"(0xe9) : "memory");
    check(rsi == HI_A + 0x1006 && rcx == 0, "outsd split across 0xffffffffffffeffe: RSI advanced 8");

    /* A non-canonical RSI: #GP(0), RSI and RCX as they were */
    fault_skip = 2; /* f3 6e */
    rsi = NONCANONICAL;
    rcx = 4;
    __asm__ volatile("rep outsb" : "+S"(rsi), "+c"(rcx) : "d"(0xe9) : "memory");
    check(fault_vector == X86_EXC_GP && fault_error == 0 && fault_rsi == NONCANONICAL && fault_rcx == 4, "rep outsb with RSI 0x8000000000000001: #GP(0), RSI untouched");

    fault_vector = 0xff;
    rdi = 0x0000800000000000ull;
    rcx = 4;
    __asm__ volatile("rep insb" : "+D"(rdi), "+c"(rcx) : "d"(0xe9) : "memory");
    check(fault_vector == X86_EXC_GP && fault_error == 0 && fault_rdi == 0x0000800000000000ull && fault_rcx == 4, "rep insb with RDI 0x0000800000000000: #GP(0), RDI untouched");

    fault_vector = 0xff;
    fault_skip = 3; /* f3 36 6e: rep outsb %ss:(%rsi) */
    rsi = NONCANONICAL;
    rcx = 4;
    __asm__ volatile(".byte 0xf3, 0x36, 0x6e" : "+S"(rsi), "+c"(rcx) : "d"(0xe9) : "memory");
    check(fault_vector == X86_EXC_SS && fault_error == 0 && fault_rsi == NONCANONICAL, "rep outsb through SS with RSI 0x8000000000000001: #SS(0)");

    /* Hypercall buffers */
    memcpy(page_b + 0x300, "console_io from the top page\n", 29);
    long r = console_write(HI_B + 0x300, 29);
    check(r == 0, "console_io with a buffer at 0xfffffffffffff300: printed");
    r = console_write(0x8000000000000300ull, 29);
    check(r == -14, "console_io with a buffer at 0x8000000000000300: -EFAULT");

    if (failures != 0) {
        printf("%u checks failed\n", failures);
        rt_exit(EXIT_FAILURE_CODE);
    }
    puts("PASS sched-highhalf\n");
    /* REP OUTSD of four zero dwords to isa-debug-exit: the first ends the domain with code 0. */
    uint64_t n = 4;
    const uint32_t *p = exit_codes;
    __asm__ volatile("rep outsl" : "+S"(p), "+c"(n) : "d"(DEBUG_EXIT_PORT) : "memory");
    for (;;) __asm__ volatile("hlt");
}
