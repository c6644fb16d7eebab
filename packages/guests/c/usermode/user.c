/*
 * usermode: the CPL-3 part. Everything in this file (object user_c.o) is linked into the user
 * section at virtual 0x40000000 (usermode/usermode.ld) and mapped with U/S set; it must not
 * call into the kernel's code, so it has its own tiny helpers and makes system calls only.
 *
 * System calls: RAX = number, RDI/RSI/RDX = arguments, result in RAX.
 *   0 write(buf, len)   1 counter()   2 exit(code)   3 check_flags(): kernel saw DF=0, IF=0
 */
#include <stddef.h>
#include <stdint.h>

#define SYS_WRITE 0
#define SYS_COUNTER 1
#define SYS_EXIT 2
#define SYS_KERNEL_FLAGS 3

static inline __attribute__((always_inline)) int64_t sys_syscall(uint64_t nr, uint64_t a, uint64_t b) {
    int64_t ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return ret;
}

static inline __attribute__((always_inline)) int64_t sys_int80(uint64_t nr, uint64_t a, uint64_t b) {
    int64_t ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "D"(a), "S"(b) : "memory");
    return ret;
}

static size_t u_strlen(const char *s) {
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static void u_write(const char *s) { sys_syscall(SYS_WRITE, (uint64_t)s, u_strlen(s)); }

/* Appends the decimal form of v to buf at *pos. */
static void u_append_dec(char *buf, size_t *pos, uint64_t v) {
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        buf[(*pos)++] = tmp[--n];
}

static void u_append(char *buf, size_t *pos, const char *s) {
    while (*s)
        buf[(*pos)++] = *s++;
}

static inline __attribute__((always_inline)) uint64_t read_rflags(void) {
    uint64_t f;
    __asm__ volatile("pushfq; popq %0" : "=r"(f));
    return f;
}

char user_data_page_marker[16] = "user data page";

/* The main user program: returns through the exit system call. */
void user_main(uint64_t arg) {
    char line[96];
    size_t pos = 0;
    uint16_t cs;
    __asm__ volatile("movw %%cs, %0" : "=r"(cs));

    u_append(line, &pos, "user: running at CPL ");
    u_append_dec(line, &pos, cs & 3);
    u_append(line, &pos, ", arg ");
    u_append_dec(line, &pos, arg);
    u_append(line, &pos, ", IF=");
    u_append_dec(line, &pos, (read_rflags() >> 9) & 1);
    u_append(line, &pos, " IOPL=");
    u_append_dec(line, &pos, (read_rflags() >> 12) & 3);
    u_append(line, &pos, "\n");
    sys_syscall(SYS_WRITE, (uint64_t)line, pos);

    u_write("user: hello from user mode through SYSCALL/SYSRET\n");

    /* three counter calls through SYSCALL, one through INT 0x80 */
    uint64_t c1 = (uint64_t)sys_syscall(SYS_COUNTER, 0, 0);
    uint64_t c2 = (uint64_t)sys_syscall(SYS_COUNTER, 0, 0);
    uint64_t c3 = (uint64_t)sys_syscall(SYS_COUNTER, 0, 0);
    uint64_t c4 = (uint64_t)sys_int80(SYS_COUNTER, 0, 0);
    pos = 0;
    u_append(line, &pos, "user: counter via SYSCALL ");
    u_append_dec(line, &pos, c1);
    u_append(line, &pos, " ");
    u_append_dec(line, &pos, c2);
    u_append(line, &pos, " ");
    u_append_dec(line, &pos, c3);
    u_append(line, &pos, ", via INT 0x80 ");
    u_append_dec(line, &pos, c4);
    u_append(line, &pos, "\n");
    sys_int80(SYS_WRITE, (uint64_t)line, pos);

    /* SYSRET restores RFLAGS from R11: DF set here survives the call, while the kernel runs
       with DF cleared by IA32_FMASK. */
    uint64_t before, after;
    int64_t kernel_flags;
    __asm__ volatile("std\n\t"
                     "pushfq\n\t"
                     "popq %0\n\t"
                     "syscall\n\t"
                     "pushfq\n\t"
                     "popq %1\n\t"
                     "cld"
                     : "=&r"(before), "=&r"(after), "=a"(kernel_flags)
                     : "a"((uint64_t)SYS_KERNEL_FLAGS)
                     : "rcx", "r11", "memory");
    pos = 0;
    u_append(line, &pos, "user: DF before SYSCALL ");
    u_append_dec(line, &pos, (before >> 10) & 1);
    u_append(line, &pos, ", after SYSRET ");
    u_append_dec(line, &pos, (after >> 10) & 1);
    u_append(line, &pos, "; kernel saw DF=");
    u_append_dec(line, &pos, ((uint64_t)kernel_flags >> 10) & 1);
    u_append(line, &pos, " IF=");
    u_append_dec(line, &pos, ((uint64_t)kernel_flags >> 9) & 1);
    u_append(line, &pos, "\n");
    sys_syscall(SYS_WRITE, (uint64_t)line, pos);

    /* writable user data, and a bad pointer handed to the kernel (it must refuse it) */
    user_data_page_marker[0] = 'U';
    u_write(user_data_page_marker);
    u_write("\n");
    int64_t r = sys_syscall(SYS_WRITE, 0x100000, 16);   /* kernel memory */
    pos = 0;
    u_append(line, &pos, "user: write(kernel address) returned -");
    u_append_dec(line, &pos, (uint64_t)-r);
    u_append(line, &pos, "\n");
    sys_syscall(SYS_WRITE, (uint64_t)line, pos);

    sys_syscall(SYS_EXIT, c1 + c2 + c3 + c4 + 32, 0);   /* 1+2+3+4+32 = 42 */
    for (;;)
        ;
}

/* Programs that must fault at CPL 3; the kernel's handlers end them. */
void user_read_kernel(uint64_t arg) { (void)*(volatile uint64_t *)0x100000; }
void user_write_code(uint64_t arg) { *(volatile uint8_t *)(uintptr_t)&user_main = 0xc3; }
void user_read_unmapped(uint64_t arg) { (void)*(volatile uint64_t *)0x40400000; }
void user_call_kernel(uint64_t arg) { ((void (*)(void))(uintptr_t)arg)(); }
void user_cli(uint64_t arg) { __asm__ volatile("cli"); }
void user_hlt(uint64_t arg) { __asm__ volatile("hlt"); }
void user_out(uint64_t arg) { __asm__ volatile("outb %%al, $0xe9" : : "a"('!')); }
void user_lgdt(uint64_t arg) {
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } d = { 0, 0 };
    __asm__ volatile("lgdt %0" : : "m"(d));
}
void user_stack_overflow(uint64_t arg) {
    volatile char *p = (volatile char *)__builtin_frame_address(0);
    for (;;) {
        p -= 4096;
        *p = 1;   /* walks down into the unmapped guard page below the user stack */
    }
}
