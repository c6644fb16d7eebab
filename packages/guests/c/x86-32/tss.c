/*
 * x86-32/tss: hardware task switches (SDM Vol. 3A 7.3 "Task Switching", 7.4 "Task Linking"),
 * which the hypervisor emulates (every task switch is a VM exit in VMX non-root operation).
 * 32-bit paging with 4 MiB pages (0-4 MiB and 12-16 MiB mapped, 4-12 MiB not), then:
 * - a double fault through a task gate onto a clean stack: the kernel's ESP points into the hole,
 *   a PUSH faults (#PF), delivering the #PF faults again, and the #DF task (its own TSS, stack and
 *   page directory) checks its error code, back link, NT, CR0.TS, CR3 and what was saved in the
 *   old TSS, then repairs the old task's EIP and ESP and returns to it with IRET (NT = 1);
 * - INT 0x40 through a task gate, twice: the handler task checks its back link, NT, that no error
 *   code was pushed, and the saved EIP and EAX of the caller, changes the caller's saved EAX and
 *   returns with IRET; the caller sees the new EAX, its other registers, NT = 0 and the busy bits;
 * - task gates to a TSS that is not present (#NP), one whose limit is below 0x67 (#TS), a busy
 *   TSS (#GP), a selector past the GDT limit (#GP), and an IRET whose back link is a TSS that is
 *   not busy (#TS), each caught by an interrupt gate in the old task;
 * - a task whose CS is a data segment: #TS(0x10) after the commit point, in the new task (its
 *   EIP, TR and stack), and a task with the T flag: a #DB trap (DR6.BT) before its first
 *   instruction; each returns to the caller with IRET.
 * With the command line `outside` the guest instead switches (paging on) to a TSS mapped above
 * its RAM, and with `tss16` to a 16-bit TSS: each must end this domain only, with a named reason.
 */
#pragma GCC diagnostic ignored "-Wunused-function"
#include "x86-32.h"

#define BAD_ESP 0x00800100u /* in the unmapped 4-12 MiB hole */
#define RFLAGS_NT 0x4000u
#define CR0_TS 0x8u

static u64 gdt2[14] __attribute__((aligned(8)));
static u32 pd[1024] __attribute__((aligned(4096)));
static u32 pd2[1024] __attribute__((aligned(4096)));
static u32 df_tss[26] __attribute__((aligned(16)));
static u32 t40_tss[26] __attribute__((aligned(16)));
static u32 spare_tss[26] __attribute__((aligned(16)));
static u32 badcs_tss[26] __attribute__((aligned(16)));
static u32 trace_tss[26] __attribute__((aligned(16)));
static u8 badcs_stack[1024] __attribute__((aligned(16)));
static u8 trace_stack[1024] __attribute__((aligned(16)));
static u8 df_stack[4096] __attribute__((aligned(16)));
static u8 t40_stack[4096] __attribute__((aligned(16)));

volatile u32 saved_esp;
volatile u32 t40_entry_esp;
volatile u32 nested_tr, nested_flags, nested_dr6, nested_esp;
static volatile u32 t40_calls;
static int failures;

extern char df_entry[], df_fault_insn[], df_resume[], t40_entry[], t40_return[], trace_resume[];
void df_main(u32 error, u32 esp);
void t40_main(void);

/* The two task bodies: each enters at its TSS's EIP and, after its IRET, resumes after it. */
__asm__(".text\n"
        ".globl df_entry\n"
        "df_entry:\n\t"
        "movl %esp, %ecx\n\t"
        "pushl %ecx\n\t"   /* df_main(error code, ESP at entry) */
        "pushl (%ecx)\n\t"
        "call df_main\n\t"
        "addl $8, %esp\n\t"
        "iret\n\t"
        "jmp df_entry\n"
        ".globl t40_entry\n"
        "t40_entry:\n\t"
        "movl %esp, t40_entry_esp\n\t"
        "call t40_main\n\t"
        "iret\n\t"
        "jmp t40_entry\n");

static u32 read_cr3(void) { u32 v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static u32 read_eflags(void) { u32 v; __asm__ volatile("pushfl; popl %0" : "=r"(v)); return v; }
static void clts(void) { __asm__ volatile("clts"); }
static u32 gdt_type(u32 sel) { return (u32)(gdt2[sel >> 3] >> 40) & 0xf; }

static void check(const char *what, int ok) {
    puts32(what);
    puts32(ok ? ": ok\n" : ": FAIL\n");
    if (!ok) failures++;
}

static void set_task_gate(int v, u32 sel) { idt[v] = ((u64)sel << 16) | ((u64)0x85 << 40); }

static void init_task(u32 *t, void *eip, void *stack_top, u32 cr3) {
    for (int k = 0; k < 26; k++) t[k] = 0;
    t[7] = cr3;              /* CR3 */
    t[8] = (u32)eip;         /* EIP */
    t[9] = 0x2;              /* EFLAGS */
    t[14] = (u32)stack_top;  /* ESP */
    t[18] = 0x10;            /* ES */
    t[19] = 0x08;            /* CS */
    t[20] = 0x10;            /* SS */
    t[21] = 0x10;            /* DS */
    t[22] = 0x10;            /* FS */
    t[23] = 0x10;            /* GS */
    t[24] = 0;               /* LDT */
    t[25] = 104u << 16;      /* no I/O bitmap */
}

void df_main(u32 error, u32 esp) {
    puts32("#DF task: error code ");
    puthex(error);
    puts32(" back link ");
    puthex(df_tss[0] & 0xffff);
    puts32(" cr2 ");
    puthex(read_cr2());
    puts32(" old esp ");
    puthex(tss[14]);
    puts32("\n");
    check("#DF task: on its own clean stack, error code pushed", error == 0 && esp == (u32)(df_stack + sizeof df_stack) - 4);
    check("#DF task: NT = 1, CR0.TS = 1, CR3 = its own page directory", (read_eflags() & RFLAGS_NT) && (read_cr0() & CR0_TS) && read_cr3() == (u32)pd2);
    check("#DF task: old TSS holds EIP of the faulting PUSH, EBX 0xb0b0, EFLAGS without NT", tss[8] == (u32)df_fault_insn && tss[13] == 0xb0b0 && !(tss[9] & RFLAGS_NT));
    check("#DF task: both TSS descriptors busy", gdt_type(0x28) == 0xb && gdt_type(0x30) == 0xb);
    /* Repair the old task and return to it. */
    tss[8] = (u32)df_resume;
    tss[14] = saved_esp;
    clts();
}

void t40_main(void) {
    t40_calls++;
    check("task 0x38 by INT 0x40: back link 0x28, NT = 1, no error code pushed",
          (t40_tss[0] & 0xffff) == 0x28 && (read_eflags() & RFLAGS_NT) && t40_entry_esp == (u32)(t40_stack + sizeof t40_stack));
    check("task 0x38: the caller's saved EIP is after its INT, EAX 0x1111", tss[8] == (u32)t40_return && tss[10] == 0x1111);
    tss[10] = 0x4040 + t40_calls; /* the caller's EAX when it resumes */
    clts();
}

static int x86_32_finish(void) {
    int ok = failures == 0 && traps_seen == 7 && t40_calls == 2;
    puts32(ok ? "x86-32 tss: PASS\n" : "x86-32 tss: FAIL\n");
    return ok ? 0 : 1;
}

static int streq(const char *a, const char *b) {
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

int kmain32(struct hvm_start_info *si) {
    setup_cpu_tables();
    const char *cmdline = (const char *)(u32)((u32 *)si)[6]; /* cmdline_paddr (start_info.h) */
    /* A larger GDT: the header's five segments and busy TSS 0x28, then the tasks of this test. */
    for (int k = 0; k < 6; k++) gdt2[k] = gdt[k];
    gdt2[5] |= 2ull << 40;                                        /* 0x28 busy (LTR set it) */
    gdt2[6] = segment((u32)df_tss, sizeof df_tss - 1, 0x89, 0);    /* 0x30 #DF task */
    gdt2[7] = segment((u32)t40_tss, sizeof t40_tss - 1, 0x89, 0);  /* 0x38 INT 0x40 task */
    gdt2[8] = segment((u32)spare_tss, sizeof spare_tss - 1, 0x09, 0); /* 0x40 not present */
    gdt2[9] = segment((u32)spare_tss, 0x40, 0x89, 0);              /* 0x48 limit 0x40 < 0x67 */
    gdt2[10] = segment((u32)spare_tss, 0x2b, 0x81, 0);             /* 0x50 a 16-bit TSS */
    gdt2[11] = segment(0x0f000000, 0x67, 0x89, 0);                 /* 0x58 above RAM */
    gdt2[12] = segment((u32)badcs_tss, sizeof badcs_tss - 1, 0x89, 0); /* 0x60 CS = a data segment */
    gdt2[13] = segment((u32)trace_tss, sizeof trace_tss - 1, 0x89, 0); /* 0x68 T = 1 */
    struct { u16 limit; u32 base; } __attribute__((packed)) gdtr = { sizeof gdt2 - 1, (u32)gdt2 };
    __asm__ volatile("lgdt %0" : : "m"(gdtr));
    set_task_gate(8, 0x30);
    set_task_gate(0x40, 0x38);
    set_task_gate(0x41, 0x40);
    set_task_gate(0x42, 0x48);
    set_task_gate(0x43, 0x28);
    set_task_gate(0x44, 0x1000);
    set_task_gate(0x45, 0x50);
    set_task_gate(0x46, 0x58);
    set_task_gate(0x47, 0x60);
    set_task_gate(0x48, 0x68);

    puts32("x86-32 tss: task switches, 32-bit paging\n");
    pd[0] = 0x000000 | PTE_P | PTE_RW | PTE_PS;
    pd[3] = 0xc00000 | PTE_P | PTE_RW | PTE_PS;
    pd[0x3c] = 0x0f000000 | PTE_P | PTE_RW | PTE_PS; /* linear 0xf000000 -> GPA 0xf000000, above RAM */
    for (int k = 0; k < 1024; k++) pd2[k] = pd[k];
    tss[7] = (u32)pd; /* the main task's CR3, loaded when a task returns to it */
    init_task(df_tss, df_entry, df_stack + sizeof df_stack, (u32)pd2);
    init_task(t40_tss, t40_entry, t40_stack + sizeof t40_stack, (u32)pd);
    init_task(badcs_tss, (void *)0xc00000, badcs_stack + sizeof badcs_stack, (u32)pd);
    badcs_tss[19] = 0x10; /* CS: the data segment */
    init_task(trace_tss, trace_resume, trace_stack + sizeof trace_stack, (u32)pd);
    trace_tss[25] |= 1;   /* T: a debug trap on switching to this task */
    write_cr4(read_cr4() | CR4_PSE);
    write_cr3((u32)pd);
    write_cr0(read_cr0() | CR0_PG | CR0_WP);

    if (cmdline && streq(cmdline, "outside")) {
        puts32("x86-32 tss: INT 0x46 to a TSS above RAM\n");
        __asm__ volatile("int $0x46");
        puts32("x86-32 tss: still running: FAIL\n");
        return 1;
    }
    if (cmdline && streq(cmdline, "tss16")) {
        puts32("x86-32 tss: INT 0x45 to a 16-bit TSS\n");
        __asm__ volatile("int $0x45");
        puts32("x86-32 tss: still running: FAIL\n");
        return 1;
    }

    /* The double fault: PUSH onto an unmapped stack, #PF, #PF again while delivering it, #DF. */
    __asm__ volatile("movl %%esp, saved_esp\n\t"
                     "movl $0xb0b0, %%ebx\n\t"
                     "movl %0, %%esp\n"
                     ".globl df_fault_insn\n"
                     "df_fault_insn:\n\t"
                     "pushl $0\n"
                     ".globl df_resume\n"
                     "df_resume:\n\t"
                     : : "i"(BAD_ESP) : "ebx", "memory");
    check("back from the #DF task: CR0.TS = 1, NT = 0, #DF task's TSS available again",
          (read_cr0() & CR0_TS) && !(read_eflags() & RFLAGS_NT) && gdt_type(0x30) == 0x9 && gdt_type(0x28) == 0xb);
    clts();

    for (int round = 1; round <= 2; round++) {
        u32 eax = 0x1111, ebx = 0x2222, esi = 0x3333;
        __asm__ volatile("int $0x40\n"
                         ".globl t40_return\n"
                         "t40_return:"
                         : "+a"(eax), "+b"(ebx), "+S"(esi) : : "memory");
        puts32("back from task 0x38: eax ");
        puthex(eax);
        puts32("\n");
        check("back from task 0x38: EBX and ESI kept, NT = 0, CR0.TS = 1, 0x38 available, 0x28 busy",
              ebx == 0x2222 && esi == 0x3333 && !(read_eflags() & RFLAGS_NT) && (read_cr0() & CR0_TS) && gdt_type(0x38) == 0x9 && gdt_type(0x28) == 0xb);
        clts();
    }

    TRY("int $0x41"); /* #NP(0x40): the TSS is not present */
    TRY("int $0x42"); /* #TS(0x48): its limit is below 0x67 */
    TRY("int $0x43"); /* #GP(0x28): the TSS is busy (the running task's own) */
    TRY("int $0x44"); /* #GP(0x1000): past the GDT limit */
    tss[0] = 0x38;    /* a back link to a TSS that is not busy */
    TRY("pushfl; orl $0x4000, (%%esp); popfl; iret"); /* #TS(0x38) */
    __asm__ volatile("pushfl; andl $~0x4000, (%%esp); popfl" ::: "memory", "cc");
    check("the faults left the running task in place: 0x28 busy, TR 0x28", gdt_type(0x28) == 0xb && ({ u16 tr; __asm__ volatile("str %0" : "=r"(tr)); tr; }) == 0x28);

    /* Faults after the commit point belong to the new task: its EIP, its stack, TR = its TSS, NT
       set; the handler resumes at 1:, where IRET returns to this task after its INT. */
    __asm__ volatile("movl $1f, resume_eip\n\t"
                     "int $0x47\n\t" /* #TS(0x10) at the new task's EIP 0xc00000 */
                     "jmp 2f\n"
                     "1:\n\t"
                     "movl %%esp, nested_esp\n\t"
                     "str %%ax\n\t"
                     "movzwl %%ax, %%eax\n\t"
                     "movl %%eax, nested_tr\n\t"
                     "pushfl\n\t"
                     "popl nested_flags\n\t"
                     "iret\n"
                     "2:"
                     ::: "eax", "memory", "cc");
    check("#TS after the commit point: in task 0x60, NT = 1, on its stack", nested_tr == 0x60 && (nested_flags & RFLAGS_NT) && nested_esp == (u32)(badcs_stack + sizeof badcs_stack));
    clts();
    __asm__ volatile("movl $trace_resume, resume_eip\n\t"
                     "int $0x48\n\t" /* #DB trap before task 0x68's first instruction */
                     "jmp 2f\n"
                     ".globl trace_resume\n"
                     "trace_resume:\n\t"
                     "str %%ax\n\t"
                     "movzwl %%ax, %%eax\n\t"
                     "movl %%eax, nested_tr\n\t"
                     "movl %%dr6, %%eax\n\t"
                     "movl %%eax, nested_dr6\n\t"
                     "iret\n"
                     "2:"
                     ::: "eax", "memory", "cc");
    check("#DB trap for T = 1: in task 0x68, DR6.BT set", nested_tr == 0x68 && (nested_dr6 & 0x8000));
    clts();
    return x86_32_finish();
}
