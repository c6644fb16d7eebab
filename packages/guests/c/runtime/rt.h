/*
 * vtlab guest runtime: a libc-free support layer shared by every guest program.
 * Console on port 0xE9 (Bochs/QEMU debugcon), exit through port 0xF4 (QEMU isa-debug-exit),
 * formatted printing, the string primitives, an IDT with handlers for all 32 exception
 * vectors, and the PVH start info.
 */
#ifndef VTLAB_RT_H
#define VTLAB_RT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* xen/arch-x86/hvm/start_info.h */
#define XEN_HVM_START_MAGIC_VALUE 0x336ec578u

struct hvm_start_info {
    uint32_t magic;
    uint32_t version;
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr;   /* version >= 1 */
    uint32_t memmap_entries; /* version >= 1 */
    uint32_t reserved;
};

struct hvm_memmap_table_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
    uint32_t reserved;
};
#define XEN_HVM_MEMMAP_TYPE_RAM 1

/* Exit codes written to port 0xF4. QEMU exits with status (code << 1) | 1. */
#define EXIT_SUCCESS_CODE   0
#define EXIT_FAILURE_CODE   1
#define EXIT_BAD_BOOT       2
#define EXIT_EXCEPTION      3

#define DEBUGCON_PORT   0xE9
#define DEBUG_EXIT_PORT 0xF4

/* Exception vectors (SDM Vol. 3A, Table 6-1). */
enum {
    X86_EXC_DE = 0, X86_EXC_DB = 1, X86_EXC_NMI = 2, X86_EXC_BP = 3, X86_EXC_OF = 4,
    X86_EXC_BR = 5, X86_EXC_UD = 6, X86_EXC_NM = 7, X86_EXC_DF = 8, X86_EXC_TS = 10,
    X86_EXC_NP = 11, X86_EXC_SS = 12, X86_EXC_GP = 13, X86_EXC_PF = 14, X86_EXC_MF = 16,
    X86_EXC_AC = 17, X86_EXC_MC = 18, X86_EXC_XM = 19, X86_EXC_VE = 20, X86_EXC_CP = 21,
};

/* Saved by traps.S, lowest address first. */
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error_code;
    uint64_t rip, cs, rflags, rsp, ss;   /* pushed by the CPU */
};

/* A handler returns nonzero if it handled the trap (the stub then IRETQs to frame->rip). */
typedef int (*trap_handler_t)(struct trap_frame *frame);

/* Page-table entry bits (SDM Vol. 3A, 4.5). */
#define PTE_P   0x001ull
#define PTE_W   0x002ull
#define PTE_U   0x004ull
#define PTE_PS  0x080ull
#define PTE_ADDR_MASK 0x000ffffffffff000ull

/* Defined by start.S and the linker script. */
extern uint64_t pml4[512], pdpt[512], pd_identity[512];
extern uint64_t gdt[];
extern char __image_start[], __image_end[], __stack_top[], __stack_bottom[];

/* Program entry, called by rt_boot after the IDT is set up; returns the exit code. */
int kmain(struct hvm_start_info *si);

/* Port I/O */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline uint64_t read_cr2(void) { uint64_t v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline uint64_t read_cr3(void) { uint64_t v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline void write_cr3(uint64_t v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
static inline void invlpg(const void *va) { __asm__ volatile("invlpg (%0)" : : "r"(va) : "memory"); }
static inline uint64_t rdmsr(uint32_t msr) {
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v) {
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

/* Console */
void putc(char c);
void puts(const char *s);           /* no newline appended */
void putn(const char *s, size_t n);
int vprintf(const char *fmt, va_list ap);
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Formats into buf (always NUL-terminated, truncated to size); returns the untruncated length. */
int snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);

/* Exit */
void rt_exit(int code) __attribute__((noreturn));
void panic(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* Prints "PASS <name> <checksum as 16 hex digits>" and exits with 0. */
void pass(const char *name, uint64_t checksum) __attribute__((noreturn));
#define CHECK(cond) do { if (!(cond)) panic("CHECK failed: %s (%s:%d)", #cond, __FILE__, __LINE__); } while (0)

/* Strings (string.S) */
void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

/* Traps */
void trap_set_handler(unsigned vector, trap_handler_t handler);
/* Installs the INT 0x80 gate (DPL 3, so user mode may use it) dispatching to handler. */
void trap_set_int80(trap_handler_t handler);
/* Called for an unhandled trap: prints vector, error code, RIP, CR2 and exits with EXIT_EXCEPTION. */
void trap_unhandled(const struct trap_frame *frame) __attribute__((noreturn));
const char *trap_name(unsigned vector);

/* PVH start info */
extern struct hvm_start_info *start_info;
/* The command line ("" when the loader gave none). */
const char *cmdline(void);
/* Value of "key=<decimal>" in the command line, or dflt when absent or malformed. */
uint64_t cmdline_uint(const char *key, uint64_t dflt);

/* Checksums */
#define FNV64_INIT 0xcbf29ce484222325ull
uint64_t fnv64(uint64_t h, const void *data, size_t n);
uint64_t fnv64_u64(uint64_t h, uint64_t v);

#endif
