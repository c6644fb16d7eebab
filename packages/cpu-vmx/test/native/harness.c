/*
 * Host-CPU oracle for the vtlab x86-64 interpreter's differential test.
 *
 *   harness <cases.bin> <results.bin>
 *
 * Runs each case's instruction bytes natively on this CPU and records the outcome, the 16
 * GPRs, RFLAGS and the 256-byte scratch buffer. Linux x86-64 only; built with gcc at test time
 * by run-native.ts.
 *
 * Input (little-endian):
 *   header:  u32 magic 'VTNC' (0x434e5456), u32 version (1), u32 count, u32 reserved,
 *            u64 scratch_base (buffer address; buffer + 256 must end on a page boundary)
 *   record:  u32 code_len, u32 reserved, u64 rflags, u64 gpr[16], u8 memory[256], code[code_len]
 * Output, one 664-byte record per case:
 *            u32 outcome (0 ok, 1 #DE, 2 #UD, 3 fault), u32 fault_offset (code offset of the
 *            faulting instruction, 0xffffffff if none), u64 rflags, u64 gpr[16], u8 memory[256],
 *            u32 mxcsr, u32 reserved, u8 xmm[256]: MXCSR and XMM0-15 at the fault, from the
 *            signal frame (zero when the case ran to its end)
 *
 * Each case: the code is copied into an RWX page and followed by `jmp [rip+0]; dq vt_exit`.
 * vt_enter saves the host's callee-saved registers and RSP, loads RFLAGS and the GPRs (all but
 * RSP, which stays the host stack: the code never uses it) from g_state and jumps to the code;
 * vt_exit stores them back, clears DF and returns. SIGFPE (#DE), SIGILL (#UD) and
 * SIGSEGV/SIGBUS (any other fault) raised by the code are caught on an alternate stack; the
 * handler records the registers at the fault (faults are precise, so this is the state before
 * the faulting instruction, or mid-way through a REP string instruction) and siglongjmps back.
 * The reported RSP is the case's RSP plus whatever the code did to the real one (nothing).
 * Bytes of the scratch pages outside the 256-byte buffer hold a canary; a case that changes one
 * is reported as a fault.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define MAGIC 0x434e5456u
#define VERSION 1u
#define SCRATCH_SIZE 256
#define PAGE 4096
#define CODE_PAGES 2
#define CODE_MAX (CODE_PAGES * PAGE - 16)
#define CANARY 0xa5

enum { OUT_OK = 0, OUT_DE = 1, OUT_UD = 2, OUT_FAULT = 3 };

struct vt_state {
  uint64_t gpr[16];
  uint64_t rflags;
};

/* Shared with the trampoline below (referenced RIP-relative, so they are not static). */
__attribute__((visibility("hidden"))) struct vt_state g_state;
__attribute__((visibility("hidden"))) uint64_t g_host_rsp;
__attribute__((visibility("hidden"))) uint64_t g_entry_rsp;
__attribute__((visibility("hidden"))) uint64_t g_exit_rsp;
__attribute__((visibility("hidden"))) void *g_code_entry;

void vt_enter(void);
void vt_exit(void);

/* gpr i lives at g_state + 8*i, rflags at g_state + 128. */
__asm__(
    ".text\n"
    ".globl vt_enter\n"
    ".type vt_enter, @function\n"
    "vt_enter:\n"
    "  push %rbx\n"
    "  push %rbp\n"
    "  push %r12\n"
    "  push %r13\n"
    "  push %r14\n"
    "  push %r15\n"
    "  mov %rsp, g_host_rsp(%rip)\n"
    "  mov %rsp, g_entry_rsp(%rip)\n"
    "  pushq g_state+128(%rip)\n"
    "  popfq\n"
    "  mov g_state+0(%rip), %rax\n"
    "  mov g_state+8(%rip), %rcx\n"
    "  mov g_state+16(%rip), %rdx\n"
    "  mov g_state+24(%rip), %rbx\n"
    "  mov g_state+40(%rip), %rbp\n"
    "  mov g_state+48(%rip), %rsi\n"
    "  mov g_state+56(%rip), %rdi\n"
    "  mov g_state+64(%rip), %r8\n"
    "  mov g_state+72(%rip), %r9\n"
    "  mov g_state+80(%rip), %r10\n"
    "  mov g_state+88(%rip), %r11\n"
    "  mov g_state+96(%rip), %r12\n"
    "  mov g_state+104(%rip), %r13\n"
    "  mov g_state+112(%rip), %r14\n"
    "  mov g_state+120(%rip), %r15\n"
    "  jmp *g_code_entry(%rip)\n"
    ".size vt_enter, .-vt_enter\n"
    ".globl vt_exit\n"
    ".type vt_exit, @function\n"
    "vt_exit:\n"
    "  mov %rax, g_state+0(%rip)\n"
    "  mov %rcx, g_state+8(%rip)\n"
    "  mov %rdx, g_state+16(%rip)\n"
    "  mov %rbx, g_state+24(%rip)\n"
    "  mov %rbp, g_state+40(%rip)\n"
    "  mov %rsi, g_state+48(%rip)\n"
    "  mov %rdi, g_state+56(%rip)\n"
    "  mov %r8, g_state+64(%rip)\n"
    "  mov %r9, g_state+72(%rip)\n"
    "  mov %r10, g_state+80(%rip)\n"
    "  mov %r11, g_state+88(%rip)\n"
    "  mov %r12, g_state+96(%rip)\n"
    "  mov %r13, g_state+104(%rip)\n"
    "  mov %r14, g_state+112(%rip)\n"
    "  mov %r15, g_state+120(%rip)\n"
    "  mov %rsp, g_exit_rsp(%rip)\n"
    "  pushfq\n"
    "  popq g_state+128(%rip)\n"
    "  cld\n"
    "  mov g_host_rsp(%rip), %rsp\n"
    "  pop %r15\n"
    "  pop %r14\n"
    "  pop %r13\n"
    "  pop %r12\n"
    "  pop %rbp\n"
    "  pop %rbx\n"
    "  ret\n"
    ".size vt_exit, .-vt_exit\n");

static sigjmp_buf g_jmp;
static volatile sig_atomic_t g_in_guest;
static volatile int g_fault_sig;
static uint8_t *g_code;
static volatile uint64_t g_fault_rip;
/* MXCSR and XMM0-15 at the fault, from the signal frame's FPU state. */
static uint32_t g_fault_mxcsr;
static uint8_t g_fault_xmm[256];

static void die(const char *what) {
  fprintf(stderr, "harness: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void on_signal(int sig, siginfo_t *info, void *ucv) {
  (void)info;
  ucontext_t *uc = (ucontext_t *)ucv;
  greg_t *g = uc->uc_mcontext.gregs;
  uint64_t rip = (uint64_t)g[REG_RIP];
  if (!g_in_guest || rip < (uint64_t)g_code || rip >= (uint64_t)g_code + CODE_PAGES * PAGE) {
    /* A fault in the harness itself: not a case outcome. Die loudly. */
    static const char msg[] = "harness: fatal signal outside the code under test\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(3);
  }
  static const int order[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
                                REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15};
  for (int i = 0; i < 16; i++) g_state.gpr[i] = (uint64_t)g[order[i]];
  g_state.rflags = (uint64_t)g[REG_EFL];
  g_exit_rsp = (uint64_t)g[REG_RSP];
  g_fault_rip = rip;
  g_fault_sig = sig;
  if (uc->uc_mcontext.fpregs) {
    g_fault_mxcsr = uc->uc_mcontext.fpregs->mxcsr;
    memcpy(g_fault_xmm, uc->uc_mcontext.fpregs->_xmm, sizeof g_fault_xmm);
  }
  g_in_guest = 0;
  siglongjmp(g_jmp, 1);
}

static uint8_t *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) die(path);
  if (fseek(f, 0, SEEK_END) != 0) die(path);
  long n = ftell(f);
  if (n < 0) die(path);
  rewind(f);
  uint8_t *buf = malloc((size_t)n + 1);
  if (!buf) die("malloc");
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) die(path);
  fclose(f);
  *size = (size_t)n;
  return buf;
}

static uint32_t rd32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

static uint64_t rd64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: harness <cases.bin> <results.bin>\n");
    return 2;
  }
  size_t size;
  uint8_t *in = read_file(argv[1], &size);
  if (size < 24 || rd32(in) != MAGIC || rd32(in + 4) != VERSION) {
    fprintf(stderr, "harness: bad input header\n");
    return 2;
  }
  uint32_t count = rd32(in + 8);
  uint64_t base = rd64(in + 16);
  if (((base + SCRATCH_SIZE) & (PAGE - 1)) != 0 || base < PAGE) {
    fprintf(stderr, "harness: scratch base 0x%llx + 256 must end on a page boundary\n", (unsigned long long)base);
    return 2;
  }

  /* Scratch: the page(s) holding the buffer, then a PROT_NONE guard page. */
  uint64_t lo = base & ~(uint64_t)(PAGE - 1);
  uint64_t hi = base + SCRATCH_SIZE;
  size_t span = (size_t)(hi - lo);
  uint8_t *scratch_pages = mmap((void *)lo, span + PAGE, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (scratch_pages == MAP_FAILED) die("mmap scratch");
  if ((uint64_t)scratch_pages != lo) {
    fprintf(stderr, "harness: scratch address 0x%llx is not available\n", (unsigned long long)lo);
    return 2;
  }
  if (mprotect(scratch_pages + span, PAGE, PROT_NONE) != 0) die("mprotect guard");
  uint8_t *scratch = (uint8_t *)base;
  size_t below = (size_t)(base - lo);
  memset(scratch_pages, CANARY, below);
  static uint8_t canary[PAGE];
  memset(canary, CANARY, sizeof canary);

  g_code = mmap(NULL, CODE_PAGES * PAGE, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (g_code == MAP_FAILED) die("mmap code");

  /* Signals arrive on an alternate stack; SA_NODEFER so that a plain siglongjmp (no mask save
   * and restore, hence no syscall per case) leaves them unblocked. */
  static uint8_t altstack[64 * 1024];
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
  if (sigaltstack(&ss, NULL) != 0) die("sigaltstack");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  int sigs[] = {SIGFPE, SIGILL, SIGSEGV, SIGBUS, SIGTRAP};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    if (sigaction(sigs[i], &sa, NULL) != 0) die("sigaction");

  FILE *out = fopen(argv[2], "wb");
  if (!out) die(argv[2]);
  static uint8_t outbuf[1 << 20];
  setvbuf(out, (char *)outbuf, _IOFBF, sizeof outbuf);

  size_t pos = 24;
  for (uint32_t n = 0; n < count; n++) {
    if (pos + 8 + 8 + 128 + SCRATCH_SIZE > size) {
      fprintf(stderr, "harness: truncated input at case %u\n", n);
      return 2;
    }
    const uint8_t *rec = in + pos;
    uint32_t code_len = rd32(rec);
    uint64_t rflags_in = rd64(rec + 8);
    uint64_t gpr_in[16];
    for (int i = 0; i < 16; i++) gpr_in[i] = rd64(rec + 16 + 8 * i);
    const uint8_t *mem_in = rec + 16 + 128;
    const uint8_t *code = mem_in + SCRATCH_SIZE;
    if (code_len > CODE_MAX || (size_t)(code - in) + code_len > size) {
      fprintf(stderr, "harness: bad code length %u at case %u\n", code_len, n);
      return 2;
    }
    pos = (size_t)(code - in) + code_len;

    memcpy(g_code, code, code_len);
    uint8_t *tail = g_code + code_len; /* jmp qword [rip+0]; dq vt_exit */
    tail[0] = 0xff;
    tail[1] = 0x25;
    memset(tail + 2, 0, 4);
    uint64_t exit_addr = (uint64_t)(uintptr_t)&vt_exit;
    memcpy(tail + 6, &exit_addr, 8);
    memcpy(scratch, mem_in, SCRATCH_SIZE);

    for (int i = 0; i < 16; i++) g_state.gpr[i] = gpr_in[i];
    /* CF PF AF ZF SF DF OF from the case; bit 1 (reserved, 1) and IF (POPF keeps it anyway). */
    g_state.rflags = (rflags_in & 0xcd5u) | 0x202u;
    g_code_entry = g_code;
    g_fault_sig = 0;
    g_fault_mxcsr = 0;
    memset(g_fault_xmm, 0, sizeof g_fault_xmm);

    uint32_t outcome;
    uint32_t fault_offset = 0xffffffffu;
    if (sigsetjmp(g_jmp, 0) == 0) {
      g_in_guest = 1;
      vt_enter();
      g_in_guest = 0;
      outcome = OUT_OK;
    } else {
      int sig = g_fault_sig;
      outcome = sig == SIGFPE ? OUT_DE : sig == SIGILL ? OUT_UD : OUT_FAULT;
      fault_offset = (uint32_t)(g_fault_rip - (uint64_t)(uintptr_t)g_code);
    }
    g_state.gpr[4] = gpr_in[4] + (g_exit_rsp - g_entry_rsp);

    if (below && memcmp(scratch_pages, canary, below) != 0) {
      memset(scratch_pages, CANARY, below);
      outcome = OUT_FAULT;
    }

    uint8_t rec_out[8 + 8 + 128 + SCRATCH_SIZE + 8 + 256];
    memcpy(rec_out, &outcome, 4);
    memcpy(rec_out + 4, &fault_offset, 4);
    memcpy(rec_out + 8, &g_state.rflags, 8);
    memcpy(rec_out + 16, g_state.gpr, 128);
    memcpy(rec_out + 144, scratch, SCRATCH_SIZE);
    uint32_t reserved = 0;
    memcpy(rec_out + 144 + SCRATCH_SIZE, &g_fault_mxcsr, 4);
    memcpy(rec_out + 148 + SCRATCH_SIZE, &reserved, 4);
    memcpy(rec_out + 152 + SCRATCH_SIZE, g_fault_xmm, 256);
    if (fwrite(rec_out, 1, sizeof rec_out, out) != sizeof rec_out) die("write");
  }
  if (fclose(out) != 0) die("close");
  free(in);
  return 0;
}
