/*
 * usermode: a kernel that runs code at CPL 3.
 *
 * It installs a 64-bit TSS (RSP0) in the GDT slot 0x30 and loads TR, enables SYSCALL
 * (EFER.SCE) with IA32_STAR/LSTAR/FMASK, installs an INT 0x80 gate with DPL 3, and maps the
 * user section (usermode/user.c, linked at virtual 0x40000000) with 4 KiB pages that have U/S
 * set: code and read-only data read-only, data writable, plus a two-page user stack with an
 * unmapped guard page below it. It enters user mode with IRETQ; the user program calls the
 * kernel with SYSCALL (returning with SYSRETQ) and with INT 0x80 (returning with IRETQ), and
 * leaves through an exit system call. Then a series of user programs that must fault (#PF on
 * a supervisor page, on a read-only page, on an unmapped page, on the guard page, on fetching
 * kernel code; #GP on CLI, HLT, OUT and LGDT at CPL 3) are each run and ended by the kernel's
 * fault handler, which prints the vector, error code and CR2.
 */
#include "rt.h"

#define MSR_EFER   0xC0000080u   /* IA32_EFER */
#define MSR_STAR   0xC0000081u   /* IA32_STAR */
#define MSR_LSTAR  0xC0000082u   /* IA32_LSTAR */
#define MSR_FMASK  0xC0000084u   /* IA32_FMASK */
#define EFER_SCE   (1ull << 0)

#define RFLAGS_TF   (1ull << 8)
#define RFLAGS_IF   (1ull << 9)
#define RFLAGS_DF   (1ull << 10)
#define RFLAGS_IOPL (3ull << 12)
#define RFLAGS_NT   (1ull << 14)
#define RFLAGS_AC   (1ull << 18)

#define KERNEL_CS   0x08
#define USER_CS32   0x18   /* STAR[63:48]: SYSRET loads CS = this + 16, SS = this + 8 */
#define TSS_SEL     0x30

#define USER_VIRT       0x40000000ull
#define USER_STACK_TOP  0x40200000ull   /* last two pages of the user page table */
#define USER_STACK_PAGES 2

#define SYS_WRITE 0
#define SYS_COUNTER 1
#define SYS_EXIT 2
#define SYS_KERNEL_FLAGS 3
#define EFAULT 14

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
static uint8_t kernel_stack[16384] __attribute__((aligned(16)));
uint64_t kernel_stack_top;   /* used by syscall_entry */

static uint64_t pd_user[512] __attribute__((aligned(4096)));
static uint64_t pt_user[512] __attribute__((aligned(4096)));
static uint8_t user_stack_frames[USER_STACK_PAGES][4096] __attribute__((aligned(4096)));

extern char __user_start[], __user_rodata[], __user_data[], __user_end[], __user_phys[];

int64_t enter_user(uint64_t rip, uint64_t rsp, uint64_t arg);
void return_to_kernel(int64_t value) __attribute__((noreturn));
void syscall_entry(void);

void user_main(uint64_t);
void user_read_kernel(uint64_t);
void user_write_code(uint64_t);
void user_read_unmapped(uint64_t);
void user_call_kernel(uint64_t);
void user_cli(uint64_t);
void user_hlt(uint64_t);
void user_out(uint64_t);
void user_lgdt(uint64_t);
void user_stack_overflow(uint64_t);

static uint64_t checksum = FNV64_INIT;
static unsigned failures;

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...) {
    char buf[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    puts(buf);
    checksum = fnv64(checksum, buf, strlen(buf));
}

/* ---- descriptors and MSRs */

static void install_tss(void) {
    kernel_stack_top = (uint64_t)(uintptr_t)(kernel_stack + sizeof kernel_stack);
    tss.rsp0 = kernel_stack_top;
    tss.iomap_base = sizeof tss;   /* no I/O permission bitmap: every port faults at CPL 3 */
    uint64_t base = (uint64_t)(uintptr_t)&tss;
    uint64_t limit = sizeof tss - 1;
    /* 64-bit TSS descriptor (SDM Vol. 3A, 8.2.3): type 9 (available), P=1, DPL 0 */
    gdt[TSS_SEL / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
                       (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    gdt[TSS_SEL / 8 + 1] = base >> 32;
    __asm__ volatile("ltr %w0" : : "r"((uint16_t)TSS_SEL));
}

static void enable_syscall(void) {
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
    wrmsr(MSR_STAR, ((uint64_t)USER_CS32 << 48) | ((uint64_t)KERNEL_CS << 32));
    wrmsr(MSR_LSTAR, (uint64_t)(uintptr_t)syscall_entry);
    wrmsr(MSR_FMASK, RFLAGS_TF | RFLAGS_IF | RFLAGS_DF | RFLAGS_IOPL | RFLAGS_NT | RFLAGS_AC);
}

/* ---- page tables: 0x40000000.. = user section (4 KiB pages, U/S=1) */

static void map_user(void) {
    uint64_t phys = (uint64_t)(uintptr_t)__user_phys;
    uint64_t start = (uint64_t)(uintptr_t)__user_start;
    uint64_t rodata = (uint64_t)(uintptr_t)__user_rodata;
    uint64_t data = (uint64_t)(uintptr_t)__user_data;
    uint64_t end = (uint64_t)(uintptr_t)__user_end;
    CHECK(start == USER_VIRT && end - start <= 0x100000);
    for (uint64_t va = start; va < end; va += 4096) {
        uint64_t flags = PTE_P | PTE_U | (va >= data ? PTE_W : 0);
        pt_user[(va - USER_VIRT) >> 12] = (phys + (va - start)) | flags;
    }
    for (unsigned i = 0; i < USER_STACK_PAGES; i++) {
        uint64_t va = USER_STACK_TOP - (USER_STACK_PAGES - i) * 4096ull;
        pt_user[(va - USER_VIRT) >> 12] = (uint64_t)(uintptr_t)user_stack_frames[i] | PTE_P | PTE_W | PTE_U;
    }
    pd_user[0] = (uint64_t)(uintptr_t)pt_user | PTE_P | PTE_W | PTE_U;
    pdpt[1] = (uint64_t)(uintptr_t)pd_user | PTE_P | PTE_W | PTE_U;
    pml4[0] |= PTE_U;   /* the identity PD (pdpt[0]) and its 2 MiB pages stay supervisor-only */
    write_cr3(read_cr3());
    note("user pages: code %llu, read-only data %llu, data %llu, stack %u (virtual 0x%llx-0x%llx)\n",
         (unsigned long long)((rodata - start) >> 12), (unsigned long long)((data - rodata) >> 12),
         (unsigned long long)((end - data) >> 12), USER_STACK_PAGES, (unsigned long long)start,
         (unsigned long long)USER_STACK_TOP);
}

/* ---- system calls */

static uint64_t counter;
static int first_syscall_seen;
static volatile int console_lock;

static int user_range_ok(uint64_t p, uint64_t n) {
    uint64_t lo = (uint64_t)(uintptr_t)__user_start, hi = (uint64_t)(uintptr_t)__user_end;
    uint64_t slo = USER_STACK_TOP - USER_STACK_PAGES * 4096ull, shi = USER_STACK_TOP;
    if (n > 4096 || p + n < p)
        return 0;
    return (p >= lo && p + n <= hi) || (p >= slo && p + n <= shi);
}

int64_t syscall_dispatch(uint64_t a, uint64_t b, uint64_t c, uint64_t nr);
int64_t syscall_dispatch(uint64_t a, uint64_t b, uint64_t c, uint64_t nr) {
    int expected = 0;
    if (__atomic_compare_exchange_n(&first_syscall_seen, &expected, 1, 0, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST))   /* LOCK CMPXCHG */
        note("kernel: first system call, number %llu\n", (unsigned long long)nr);
    if (nr == SYS_WRITE) {
        char copy[256];
        if (!user_range_ok(a, b) || b > sizeof copy)
            return -EFAULT;
        memcpy(copy, (const void *)(uintptr_t)a, b);   /* read once, then use the copy */
        while (__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE))   /* XCHG */
            ;
        putn(copy, b);
        checksum = fnv64(checksum, copy, b);
        __atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE);
        return (int64_t)b;
    }
    if (nr == SYS_COUNTER)
        return (int64_t)__atomic_add_fetch(&counter, 1, __ATOMIC_SEQ_CST);   /* LOCK XADD */
    if (nr == SYS_EXIT)
        return_to_kernel((int64_t)a);
    if (nr == SYS_KERNEL_FLAGS) {
        uint64_t f;
        __asm__ volatile("pushfq; popq %0" : "=r"(f));
        return (int64_t)f;
    }
    return -38;   /* ENOSYS */
}

static int int80_handler(struct trap_frame *f) {
    CHECK((f->cs & 3) == 3);
    f->rax = (uint64_t)syscall_dispatch(f->rdi, f->rsi, f->rdx, f->rax);
    return 1;
}

/* A fault at CPL 3 ends the user program; at CPL 0 it is a kernel bug. */
static int user_fault_handler(struct trap_frame *f) {
    if ((f->cs & 3) != 3)
        return 0;
    if (f->vector == X86_EXC_PF)
        note("kernel: user fault %s error 0x%llx cr2 0x%llx\n", trap_name((unsigned)f->vector),
             (unsigned long long)f->error_code, (unsigned long long)read_cr2());
    else
        note("kernel: user fault %s error 0x%llx\n", trap_name((unsigned)f->vector),
             (unsigned long long)f->error_code);
    return_to_kernel(-(int64_t)f->vector);
}

struct fault_case {
    const char *name;
    void (*fn)(uint64_t);
    uint64_t arg;
    int64_t vector;
    uint64_t error;
};

int kmain(struct hvm_start_info *si) {
    (void)si;
    puts("usermode: TSS, SYSCALL/SYSRET, INT 0x80, CPL 3 with U/S pages\n");
    install_tss();
    enable_syscall();
    trap_set_int80(int80_handler);
    trap_set_handler(X86_EXC_PF, user_fault_handler);
    trap_set_handler(X86_EXC_GP, user_fault_handler);
    map_user();

    int64_t r = enter_user((uint64_t)(uintptr_t)user_main, USER_STACK_TOP, 7);
    note("kernel: user program exited with %lld, counter %llu\n", (long long)r, (unsigned long long)counter);
    if (r != 42 || counter != 4)
        failures++;

    uint64_t kernel_fn = (uint64_t)(uintptr_t)&kmain;
    const struct fault_case cases[] = {
        { "read a supervisor page", user_read_kernel, 0, X86_EXC_PF, PTE_P | PTE_U },
        { "write its read-only code", user_write_code, 0, X86_EXC_PF, PTE_P | PTE_W | PTE_U },
        { "read an unmapped page", user_read_unmapped, 0, X86_EXC_PF, PTE_U },
        { "call kernel code", user_call_kernel, kernel_fn, X86_EXC_PF, PTE_P | PTE_U },
        { "overflow its stack", user_stack_overflow, 0, X86_EXC_PF, PTE_W | PTE_U },
        { "execute CLI", user_cli, 0, X86_EXC_GP, 0 },
        { "execute HLT", user_hlt, 0, X86_EXC_GP, 0 },
        { "execute OUT", user_out, 0, X86_EXC_GP, 0 },
        { "execute LGDT", user_lgdt, 0, X86_EXC_GP, 0 },
    };
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t cr2_before = read_cr2();
        (void)cr2_before;
        note("kernel: user program %u will %s\n", i + 1, cases[i].name);
        r = enter_user((uint64_t)(uintptr_t)cases[i].fn, USER_STACK_TOP, cases[i].arg);
        if (r != -cases[i].vector) {
            note("  WRONG: expected %s\n", trap_name((unsigned)cases[i].vector));
            failures++;
        }
    }
    if (failures)
        panic("%u user-mode check(s) failed", failures);
    pass("usermode", checksum);
}
