/*
 * setjmp: setjmp/longjmp written in assembly (setjmp_asm.S) used for non-local exits: out of
 * deep recursion, through a small try/catch built on them with nested handlers and rethrow,
 * with longjmp(env, 0) delivered as 1, and with every callee-saved register clobbered before
 * the jump (values the compiler keeps in RBX/RBP/R12-R15 across setjmp must come back).
 * Built -O2: indirect JMP through memory, CMOVcc, the callee-saved register discipline.
 */
#include "rt.h"

typedef uint64_t vt_jmp_buf[8];
int vt_setjmp(vt_jmp_buf env) __attribute__((returns_twice));
void vt_longjmp(vt_jmp_buf env, int value) __attribute__((noreturn));
void clobber_and_longjmp(vt_jmp_buf env, int value) __attribute__((noreturn));

static uint64_t checksum = FNV64_INIT;
static unsigned failures;

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...) {
    char buf[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("%s\n", buf);
    checksum = fnv64(checksum, buf, strlen(buf));
}

static void expect(int cond, const char *what) {
    if (!cond) {
        printf("  WRONG: %s\n", what);
        failures++;
    }
}

/* ---- 1: escape from deep recursion */
static vt_jmp_buf escape;
static unsigned long deepest;

static __attribute__((noinline)) uint64_t descend(unsigned long depth, uint64_t acc) {
    deepest = depth;
    acc = acc * 6364136223846793005ull + depth;
    if (depth == 1000)
        vt_longjmp(escape, (int)(acc & 0x7fff) | 1);
    if (depth > 1000)
        return 0;   /* unreachable */
    return descend(depth + 1, acc) + 1;   /* not a tail call */
}

/* ---- 2: try/catch with a handler stack */
struct handler {
    vt_jmp_buf env;
    struct handler *outer;
};
static struct handler *current_handler;
static int thrown;

static void __attribute__((noreturn)) throw_(int code) {
    struct handler *h = current_handler;
    thrown = code;
    current_handler = h->outer;
    vt_longjmp(h->env, code);
}

#define TRY(h) ((h)->outer = current_handler, current_handler = (h), vt_setjmp((h)->env))
#define END_TRY(h) (current_handler = (h)->outer)

static __attribute__((noinline)) int checked_div(int a, int b) {
    if (b == 0)
        throw_(100 + a);
    return a / b;
}

static __attribute__((noinline)) int inner(int x, int a) {
    struct handler h;
    int code = TRY(&h);
    if (code == 0) {
        int r = checked_div(a, x);
        END_TRY(&h);
        return r;
    }
    /* caught: rethrow odd codes to the outer handler, absorb even ones */
    if (code & 1)
        throw_(code + 1000);
    return -code;
}

static int outer(int x) {
    struct handler h;
    int code = TRY(&h);
    if (code == 0) {
        int r = inner(x, 1000) + inner(x + 1, 999);
        END_TRY(&h);
        return r;
    }
    return 1000000 + code;
}

int kmain(struct hvm_start_info *si) {
    (void)si;
    puts("setjmp: setjmp/longjmp in assembly, non-local exits\n");

    /* 1 */
    volatile int jumps = 0;
    int v = vt_setjmp(escape);
    if (v == 0) {
        jumps++;
        descend(1, 0x1234);
        expect(0, "descend returned");
    }
    note("escape from depth %lu: setjmp returned %d, after %d jump(s)", deepest, v, jumps);
    expect(jumps == 1 && deepest == 1000, "escape");

    /* 2 */
    for (int x = -2; x <= 2; x++)
        note("outer(%d) = %d", x, outer(x));
    expect(current_handler == 0, "handler stack empty");

    /* 3: longjmp(env, 0) delivers 1 */
    static vt_jmp_buf env;
    volatile int rounds = 0;
    v = vt_setjmp(env);
    rounds++;
    if (rounds == 1)
        vt_longjmp(env, 0);
    note("longjmp(env, 0): setjmp returned %d on round %d", v, rounds);
    expect(v == 1 && rounds == 2, "longjmp 0 -> 1");

    /* 4: a counted loop made of longjmps */
    static vt_jmp_buf loop;
    static uint64_t acc;
    acc = 0;
    v = vt_setjmp(loop);
    acc = acc * 31 + (uint64_t)v;
    if (v < 100)
        vt_longjmp(loop, v + 1);
    note("100 longjmps back to one setjmp: v=%d acc=%016llx", v, (unsigned long long)acc);

    /* 5: values held in callee-saved registers across setjmp survive a clobbering longjmp.
       The compiler may keep a..f in RBX/RBP/R12-R15; they are not modified after setjmp, so
       C guarantees their values. */
    static vt_jmp_buf cenv;
    uint64_t a = acc ^ 0x1111, b = acc + 0x2222, c = acc * 3, d = acc >> 7, e = ~acc, f = acc << 9;
    __asm__ volatile("" : "+r"(a), "+r"(b), "+r"(c), "+r"(d), "+r"(e), "+r"(f));
    if (vt_setjmp(cenv) == 0)
        clobber_and_longjmp(cenv, 7);
    __asm__ volatile("" : "+r"(a), "+r"(b), "+r"(c), "+r"(d), "+r"(e), "+r"(f));
    int regs_ok = a == (acc ^ 0x1111) && b == acc + 0x2222 && c == acc * 3 && d == acc >> 7 &&
                  e == ~acc && f == acc << 9;
    note("callee-saved registers after a clobbering longjmp: %s", regs_ok ? "restored" : "LOST");
    expect(regs_ok, "callee-saved registers");

    if (failures)
        panic("%u setjmp check(s) failed", failures);
    pass("setjmp", checksum);
}
