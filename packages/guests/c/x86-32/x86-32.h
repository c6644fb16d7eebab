/*
 * x86-32 guests: a tiny 32-bit protected-mode kernel runtime shared by pse.c and pae.c.
 *
 * The program builds a flat GDT (kernel code 0x08, data 0x10, user code 0x1b, user data 0x23,
 * a 32-bit TSS 0x28 with SS0:ESP0), a 32-bit IDT of interrupt gates (vector 0x80 a DPL-3 trap
 * gate, the rest DPL 0), turns paging on in its own format, then takes exceptions on purpose:
 * each TRY(insn) names where to resume, and x86_32_trap prints the frame the CPU pushed
 * (vector, error code, EIP, CS, CR2 for #PF, SS:ESP when the CPU came from CPL 3) and resumes
 * there. The output is the same on every correct CPU and MMU. Console: port 0xE9; exit: 0xF4.
 */
#ifndef X86_32_H
#define X86_32_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define CR0_PG (1u << 31)
#define CR0_WP (1u << 16)
#define CR4_PSE (1u << 4)
#define CR4_PAE (1u << 5)
#define MSR_EFER 0xc0000080u
#define EFER_NXE (1u << 11)

#define PTE_P 0x001u
#define PTE_RW 0x002u
#define PTE_US 0x004u
#define PTE_PS 0x080u

struct hvm_start_info;

/* What the stubs in entry.S leave on the stack: PUSHA, vector, error code, then the CPU's frame. */
struct trap_frame {
    u32 edi, esi, ebp, esp_dummy, ebx, edx, ecx, eax;
    u32 vector, error;
    u32 eip, cs, eflags;
    u32 user_esp, user_ss; /* pushed only on a change from CPL 3 */
};

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }

static void puts32(const char *s) {
    while (*s) outb(0xe9, (u8)*s++);
}

static void puthex(u32 v) {
    char buf[11];
    int n = 0;
    buf[n++] = '0';
    buf[n++] = 'x';
    int started = 0;
    for (int shift = 28; shift >= 0; shift -= 4) {
        u32 d = (v >> shift) & 0xf;
        if (d != 0 || started || shift == 0) {
            buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
            started = 1;
        }
    }
    buf[n] = 0;
    puts32(buf);
}

static inline u32 read_cr0(void) { u32 v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline u32 read_cr2(void) { u32 v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline u32 read_cr4(void) { u32 v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void write_cr0(u32 v) { __asm__ volatile("mov %0, %%cr0" : : "r"(v) : "memory"); }
static inline void write_cr3(u32 v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
static inline void write_cr4(u32 v) { __asm__ volatile("mov %0, %%cr4" : : "r"(v) : "memory"); }

/* Where x86_32_trap resumes after an expected exception (0: none expected, the guest fails). */
volatile u32 resume_eip;
static volatile u32 traps_seen;

/* Run `insn` expecting an exception; the handler resumes after it. */
#define TRY(insn) __asm__ volatile("movl $1f, resume_eip\n\t" insn "\n1:" ::: "memory")

static u64 gdt[6] __attribute__((aligned(8)));
static u32 tss[26] __attribute__((aligned(16)));
static u64 idt[256] __attribute__((aligned(8)));
static u8 kernel_stack[8192] __attribute__((aligned(16)));
static u8 user_stack[4096] __attribute__((aligned(16)));

extern char x86_32_isr0[], x86_32_isr1[], x86_32_isr2[], x86_32_isr3[], x86_32_isr4[], x86_32_isr5[], x86_32_isr6[], x86_32_isr7[];
extern char x86_32_isr8[], x86_32_isr9[], x86_32_isr10[], x86_32_isr11[], x86_32_isr12[], x86_32_isr13[], x86_32_isr14[];
extern char x86_32_isr16[], x86_32_isr17[], x86_32_isr48[], x86_32_isr128[];
void x86_32_enter_user(void (*fn)(void), void *stack_top) __attribute__((noreturn));

static u64 segment(u32 base, u32 limit, u32 access, u32 flags) {
    u64 d = (limit & 0xffff) | ((u64)(base & 0xffffff) << 16) | ((u64)access << 40) | ((u64)((limit >> 16) & 0xf) << 48) |
            ((u64)flags << 52) | ((u64)(base >> 24) << 56);
    return d;
}

/* A 32-bit interrupt (type 14) or trap (type 15) gate to code segment 0x08. */
static void set_gate(int v, void *handler, u32 type, u32 dpl) {
    u32 off = (u32)handler;
    idt[v] = (off & 0xffff) | (0x08ull << 16) | ((u64)(0x80 | (dpl << 5) | type) << 40) | ((u64)(off >> 16) << 48);
}

static void setup_cpu_tables(void) {
    gdt[0] = 0;
    gdt[1] = segment(0, 0xfffff, 0x9a, 0xc); /* 0x08 kernel code, 32-bit */
    gdt[2] = segment(0, 0xfffff, 0x92, 0xc); /* 0x10 kernel data */
    gdt[3] = segment(0, 0xfffff, 0xfa, 0xc); /* 0x18 user code (selector 0x1b) */
    gdt[4] = segment(0, 0xfffff, 0xf2, 0xc); /* 0x20 user data (selector 0x23) */
    gdt[5] = segment((u32)tss, sizeof tss - 1, 0x89, 0x0); /* 0x28 available 32-bit TSS */
    tss[1] = (u32)(kernel_stack + sizeof kernel_stack); /* ESP0 */
    tss[2] = 0x10;                                        /* SS0 */
    struct { u16 limit; u32 base; } __attribute__((packed)) gdtr = { sizeof gdt - 1, (u32)gdt }, idtr = { sizeof idt - 1, (u32)idt };
    __asm__ volatile("lgdt %0\n\t"
                     "ljmp $0x08, $1f\n"
                     "1:\tmovw $0x10, %%ax\n\tmovw %%ax, %%ds\n\tmovw %%ax, %%es\n\tmovw %%ax, %%ss\n\tmovw %%ax, %%fs\n\tmovw %%ax, %%gs\n\t"
                     "movw $0x28, %%ax\n\tltr %%ax"
                     : : "m"(gdtr) : "eax", "memory");
    void *isr[32] = {
        x86_32_isr0, x86_32_isr1, x86_32_isr2, x86_32_isr3, x86_32_isr4, x86_32_isr5, x86_32_isr6, x86_32_isr7,
        x86_32_isr8, x86_32_isr9, x86_32_isr10, x86_32_isr11, x86_32_isr12, x86_32_isr13, x86_32_isr14, 0,
        x86_32_isr16, x86_32_isr17,
    };
    for (int v = 0; v < 32; v++)
        if (isr[v]) set_gate(v, isr[v], 14, 0);
    set_gate(0x30, x86_32_isr48, 14, 0);  /* DPL 0: INT 0x30 from CPL 3 is #GP(0x30 * 8 + 2) */
    set_gate(0x80, x86_32_isr128, 15, 3); /* DPL 3: the guest's system call, which ends the run */
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

static const char *const names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "?", "#TS", "#NP", "#SS", "#GP", "#PF", "?",
    "#MF", "#AC",
};

static int x86_32_finish(void);

void x86_32_trap(struct trap_frame *f) {
    traps_seen++;
    if (f->vector == 0x80) {
        puts32("int 0x80 from CPL ");
        puthex(f->cs & 3);
        puts32(": done\n");
        outl(0xf4, (u32)x86_32_finish());
        for (;;) __asm__ volatile("hlt");
    }
    puts32(f->vector < 32 && names[f->vector] ? names[f->vector] : "vector");
    puts32(" vector ");
    puthex(f->vector);
    puts32(" error ");
    puthex(f->error);
    puts32(" eip ");
    puthex(f->eip);
    puts32(" cs ");
    puthex(f->cs);
    if (f->vector == 14) {
        puts32(" cr2 ");
        puthex(read_cr2());
    }
    if ((f->cs & 3) == 3) {
        puts32(" from CPL 3: ss ");
        puthex(f->user_ss);
        puts32(" esp ");
        puthex(f->user_esp);
    }
    puts32("\n");
    if (resume_eip == 0) {
        puts32("unexpected exception: FAIL\n");
        outl(0xf4, 1);
        for (;;) __asm__ volatile("hlt");
    }
    f->eip = resume_eip;
    resume_eip = 0;
}

static void user_main(void) {
    TRY("ud2");                                     /* #UD at CPL 3: a ring change to SS0:ESP0 */
    TRY("movl 0x402000, %%eax");                    /* #PF: a supervisor page from CPL 3 (error 5) */
    TRY("int $0x30");                               /* #GP(0x182): INT n through a DPL-0 gate */
    __asm__ volatile("int $0x80");                  /* through the DPL-3 gate: ends the run */
    for (;;) ;
}

/* The exceptions every x86-32 guest takes once its paging is on. */
static void kernel_traps(u32 unmapped, u32 readonly) {
    __asm__ volatile("movl $1f, resume_eip\n\tmovl (%0), %%eax\n1:" : : "r"(unmapped) : "eax", "memory"); /* #PF, not present (error 0) */
    __asm__ volatile("movl $1f, resume_eip\n\tmovl $7, (%0)\n1:" : : "r"(readonly) : "memory");         /* #PF, write to read-only (3) */
    __asm__ volatile("movl $1f, resume_eip\n\tmovw $0x1234, %%ax\n\tmovw %%ax, %%ds\n1:" ::: "eax", "memory"); /* #GP(0x1234): TI = 1, an LDT of limit 0 */
    TRY("ud2"); /* #UD */
}

static void x86_32_run_user(void) __attribute__((noreturn));
static void x86_32_run_user(void) {
    x86_32_enter_user(user_main, user_stack + sizeof user_stack);
}

#endif
