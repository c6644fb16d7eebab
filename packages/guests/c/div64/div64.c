/*
 * div64: integer division and remainder of every width and signedness, checked against
 * q * b + r == a, |r| < |b| and C's truncating semantics, and cross-checked by
 * scripts/crosscheck.py on the host. Covers DIV/IDIV with 8-bit (AL/AH results), 16-bit,
 * 32-bit (CDQ), 64-bit (CQO) and full 128-by-64-bit (RDX:RAX) dividends, division by
 * constants (multiply-high), and #DE: division by zero in each form and unsigned quotient
 * overflow raise #DE, which a handler records and skips. INT64_MIN / -1 (and its narrower
 * forms) is never executed. Built -Os.
 */
#include "rt.h"

static unsigned failures;
static uint64_t checksum = FNV64_INIT;

#define NOINLINE __attribute__((noinline))

struct u64qr { uint64_t q, r; };
struct s64qr { int64_t q, r; };
struct u32qr { uint32_t q, r; };
struct s32qr { int32_t q, r; };

static NOINLINE struct u64qr udiv64(uint64_t a, uint64_t b) { return (struct u64qr){ a / b, a % b }; }
static NOINLINE struct s64qr sdiv64(int64_t a, int64_t b) { return (struct s64qr){ a / b, a % b }; }
static NOINLINE struct u32qr udiv32(uint32_t a, uint32_t b) { return (struct u32qr){ a / b, a % b }; }
static NOINLINE struct s32qr sdiv32(int32_t a, int32_t b) { return (struct s32qr){ a / b, a % b }; }

static void line(const char *text) {
    printf("%s\n", text);
    checksum = fnv64(checksum, text, strlen(text));
}

static void fail(const char *what) {
    printf("  WRONG: %s\n", what);
    failures++;
}

static const uint64_t ua[] = { 0, 1, 7, 1000000007, 0x123456789abcdef0ull, 0x8000000000000000ull,
                               0xfffffffffffffffeull, 0xffffffffffffffffull };
static const uint64_t ub[] = { 1, 2, 3, 7, 10, 0xffffffffull, 0x100000000ull,
                               0xfffffffffffffffeull, 0xffffffffffffffffull };
static const int64_t sa[] = { 0, 1, -1, 7, -7, 1000000007, -1000000007, INT64_MAX, INT64_MIN,
                              -0x123456789abcdef0ll };
static const int64_t sb[] = { 1, -1, 2, -2, 3, -3, 10, -10, 0x100000000ll, INT64_MAX, INT64_MIN };
static const uint32_t wa[] = { 0, 1, 0xffffffffu, 0x7fffffffu, 0x80000000u, 123456789u, 0xf8a432ebu };
static const uint32_t wb[] = { 1, 0xffffffffu, 7, 0xfffffff9u, 0x10000u, 0x7fffffffu };

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void unsigned64(void) {
    char buf[128];
    for (unsigned i = 0; i < COUNT(ua); i++)
        for (unsigned j = 0; j < COUNT(ub); j++) {
            uint64_t a = ua[i], b = ub[j];
            struct u64qr d = udiv64(a, b);
            /* q * b + r == a exactly, in 128 bits (MUL r64), and r < b */
            unsigned __int128 back = (unsigned __int128)d.q * b + d.r;
            if (back != a || d.r >= b)
                fail("u64 identity");
            snprintf(buf, sizeof buf, "u64 %llu / %llu = %llu rem %llu", (unsigned long long)a,
                     (unsigned long long)b, (unsigned long long)d.q, (unsigned long long)d.r);
            line(buf);
        }
}

static void signed64(void) {
    char buf[128];
    for (unsigned i = 0; i < COUNT(sa); i++)
        for (unsigned j = 0; j < COUNT(sb); j++) {
            int64_t a = sa[i], b = sb[j];
            if (a == INT64_MIN && b == -1)
                continue;   /* would raise #DE (quotient overflow); C leaves it undefined */
            struct s64qr d = sdiv64(a, b);
            __int128 back = (__int128)d.q * b + d.r;   /* IMUL r64 (one-operand) */
            if (back != a)
                fail("s64 identity");
            if (d.r != 0 && (d.r < 0) != (a < 0))
                fail("s64 remainder sign");
            if ((d.r < 0 ? -(__int128)d.r : d.r) >= (b < 0 ? -(__int128)b : b))
                fail("s64 remainder size");
            snprintf(buf, sizeof buf, "s64 %lld / %lld = %lld rem %lld", (long long)a, (long long)b,
                     (long long)d.q, (long long)d.r);
            line(buf);
        }
}

static void width32(void) {
    char buf[128];
    for (unsigned i = 0; i < COUNT(wa); i++)
        for (unsigned j = 0; j < COUNT(wb); j++) {
            uint32_t a = wa[i], b = wb[j];
            struct u32qr u = udiv32(a, b);
            if ((uint64_t)u.q * b + u.r != a || u.r >= b)
                fail("u32 identity");
            snprintf(buf, sizeof buf, "u32 %u / %u = %u rem %u", a, b, u.q, u.r);
            line(buf);
            int32_t x = (int32_t)a, y = (int32_t)b;
            if (x == INT32_MIN && y == -1)
                continue;
            struct s32qr s = sdiv32(x, y);
            if ((int64_t)s.q * y + s.r != x)
                fail("s32 identity");
            snprintf(buf, sizeof buf, "s32 %d / %d = %d rem %d", x, y, s.q, s.r);
            line(buf);
        }
}

/* 8-bit forms: AX / r8 -> AL quotient, AH remainder. */
static void width8(void) {
    static const struct { uint16_t ax; uint8_t d; } ucase[] = { { 200, 7 }, { 255, 16 }, { 0x3fff, 0x40 }, { 0x1234, 0x56 } };
    static const struct { int16_t ax; int8_t d; } scase[] = { { -128, 7 }, { 100, -7 }, { -100, -7 }, { 1000, 8 }, { -1000, -9 } };
    char buf[128];
    for (unsigned i = 0; i < COUNT(ucase); i++) {
        uint16_t ax = ucase[i].ax;
        __asm__("divb %1" : "+a"(ax) : "q"(ucase[i].d) : "cc");
        snprintf(buf, sizeof buf, "u8  %u / %u = %u rem %u", ucase[i].ax, ucase[i].d, ax & 0xff, ax >> 8);
        line(buf);
    }
    for (unsigned i = 0; i < COUNT(scase); i++) {
        uint16_t ax = (uint16_t)scase[i].ax;
        __asm__("idivb %1" : "+a"(ax) : "q"(scase[i].d) : "cc");
        snprintf(buf, sizeof buf, "s8  %d / %d = %d rem %d", scase[i].ax, scase[i].d, (int8_t)(ax & 0xff), (int8_t)(ax >> 8));
        line(buf);
    }
}

/* 16-bit forms: DX:AX / r16. */
static void width16(void) {
    static const struct { uint32_t n; uint16_t d; } ucase[] = { { 0x0001ffff, 3 }, { 1000000, 1000 }, { 0xfffe0001, 0xffff } };
    static const struct { int32_t n; int16_t d; } scase[] = { { -1000000, 1000 }, { 1000000, -77 }, { -32768, 1 } };
    char buf[128];
    for (unsigned i = 0; i < COUNT(ucase); i++) {
        uint16_t ax = (uint16_t)ucase[i].n, dx = (uint16_t)(ucase[i].n >> 16);
        __asm__("divw %2" : "+a"(ax), "+d"(dx) : "r"(ucase[i].d) : "cc");
        snprintf(buf, sizeof buf, "u16 %u / %u = %u rem %u", ucase[i].n, ucase[i].d, ax, dx);
        line(buf);
    }
    for (unsigned i = 0; i < COUNT(scase); i++) {
        uint16_t ax = (uint16_t)scase[i].n, dx = (uint16_t)((uint32_t)scase[i].n >> 16);
        __asm__("idivw %2" : "+a"(ax), "+d"(dx) : "r"(scase[i].d) : "cc");
        snprintf(buf, sizeof buf, "s16 %d / %d = %d rem %d", scase[i].n, scase[i].d, (int16_t)ax, (int16_t)dx);
        line(buf);
    }
}

/* 128-by-64: RDX:RAX / r64 with RDX < divisor (no overflow). */
static void width128(void) {
    static const struct { uint64_t hi, lo, d; } c[] = {
        { 5, 7, 9 },
        { 0x123456789abcdef0ull, 0x0fedcba987654321ull, 0xfedcba9876543210ull },
        { 0xfffffffffffffffeull, 0xffffffffffffffffull, 0xffffffffffffffffull },
        { 0, 0xffffffffffffffffull, 0x100000000ull },
    };
    char buf[160];
    for (unsigned i = 0; i < COUNT(c); i++) {
        uint64_t q = c[i].lo, r = c[i].hi;
        __asm__("divq %2" : "+a"(q), "+d"(r) : "r"(c[i].d) : "cc");
        unsigned __int128 n = ((unsigned __int128)c[i].hi << 64) | c[i].lo;
        if ((unsigned __int128)q * c[i].d + r != n || r >= c[i].d)
            fail("u128 identity");
        snprintf(buf, sizeof buf, "u128 0x%016llx%016llx / 0x%llx = 0x%llx rem 0x%llx",
                 (unsigned long long)c[i].hi, (unsigned long long)c[i].lo,
                 (unsigned long long)c[i].d, (unsigned long long)q, (unsigned long long)r);
        line(buf);
    }
    /* 128-bit shifts (SHLD/SHRD) and add-with-carry, checked by halves */
    unsigned __int128 x = ((unsigned __int128)0x0123456789abcdefull << 64) | 0xfedcba9876543210ull;
    volatile unsigned s = 36;
    unsigned __int128 y = (x << s) + (x >> (s + 8)) - x;
    snprintf(buf, sizeof buf, "u128 (x << 36) + (x >> 44) - x = 0x%016llx%016llx",
             (unsigned long long)(y >> 64), (unsigned long long)y);
    line(buf);
}

/* Division by constants. At -Os gcc keeps DIV/IDIV for these, so they are compiled as at -O2:
   multiply-high (MUL/IMUL r64) and shifts, which must agree with the variable-divisor path. */
#define AS_O2 __attribute__((noinline, optimize("O2")))
static AS_O2 uint64_t udiv10(uint64_t a) { return a / 10; }
static AS_O2 uint64_t umod10(uint64_t a) { return a % 10; }
static AS_O2 int64_t sdiv7(int64_t a) { return a / 7; }
static AS_O2 int64_t smod7(int64_t a) { return a % 7; }
static AS_O2 int64_t sdiv_pow2(int64_t a) { return a / 16; }   /* SAR with a bias for negatives */
static AS_O2 uint32_t udiv3_32(uint32_t a) { return a / 3; }

static void constants(void) {
    unsigned mism = 0;
    for (unsigned i = 0; i < COUNT(ua); i++) {
        struct u64qr d = udiv64(ua[i], 10);
        mism += udiv10(ua[i]) != d.q || umod10(ua[i]) != d.r;
        mism += udiv3_32((uint32_t)ua[i]) != udiv32((uint32_t)ua[i], 3).q;
    }
    for (unsigned i = 0; i < COUNT(sa); i++) {
        struct s64qr d = sdiv64(sa[i], 7);
        mism += sdiv7(sa[i]) != d.q || smod7(sa[i]) != d.r;
        mism += sdiv_pow2(sa[i]) != sdiv64(sa[i], 16).q;
    }
    char buf[80];
    snprintf(buf, sizeof buf, "division by constants agrees with DIV/IDIV: %u mismatches", mism);
    line(buf);
    if (mism)
        failures++;
}

/* ---- #DE: the handler checks the faulting RIP and resumes after the instruction */
static uint64_t de_fault_rip, de_resume_rip;
static unsigned de_count, de_rip_ok;

static int de_handler(struct trap_frame *f) {
    de_count++;
    de_rip_ok = f->rip == de_fault_rip;
    f->rip = de_resume_rip;
    return 1;
}

/* Runs one divide instruction INSN (operand %2 = divisor) with RAX=a, RDX=d; returns 1 if #DE
   was raised and RAX/RDX were left unchanged (a fault leaves no partial result). */
#define DE_CASE(INSN, CONSTRAINT, divisor, a_in, d_in, result)                                     \
    do {                                                                                           \
        uint64_t a_ = (a_in), d_ = (d_in);                                                         \
        unsigned before_ = de_count;                                                               \
        __asm__ volatile("leaq 1f(%%rip), %%r8\n\t"                                                \
                         "movq %%r8, %[fault]\n\t"                                                 \
                         "leaq 2f(%%rip), %%r8\n\t"                                                \
                         "movq %%r8, %[resume]\n\t"                                                \
                         "1: " INSN "\n"                                                           \
                         "2:"                                                                      \
                         : "+a"(a_), "+d"(d_), [fault] "=m"(de_fault_rip),                         \
                           [resume] "=m"(de_resume_rip)                                            \
                         : [div] CONSTRAINT(divisor)                                               \
                         : "r8", "cc", "memory");                                                  \
        result = de_count == before_ + 1 && de_rip_ok && a_ == (a_in) && d_ == (d_in);             \
    } while (0)

static void divide_errors(void) {
    trap_set_handler(X86_EXC_DE, de_handler);
    static volatile uint64_t zero_in_memory = 0;
    uint64_t zero64 = 0;
    uint32_t zero32 = 0;
    uint16_t zero16 = 0;
    uint8_t zero8 = 0;
    uint64_t one = 1;
    int ok;
    char buf[96];
    const uint64_t A = 0x1122334455667788ull, D = 0x0000000000000003ull;
#define REPORT(text)                                                                               \
    do {                                                                                           \
        snprintf(buf, sizeof buf, "%-40s -> %s", text, ok ? "#DE caught, fault RIP ok, RAX/RDX kept" : "NOT CAUGHT"); \
        line(buf);                                                                                 \
        if (!ok) failures++;                                                                       \
    } while (0)
    DE_CASE("divq %[div]", "r", zero64, A, D, ok);
    REPORT("divq r64 by zero");
    DE_CASE("idivq %[div]", "r", zero64, A, D, ok);
    REPORT("idivq r64 by zero");
    DE_CASE("divq %[div]", "m", zero_in_memory, A, D, ok);
    REPORT("divq m64 by zero");
    DE_CASE("divl %[div]", "r", zero32, A, D, ok);
    REPORT("divl r32 by zero");
    DE_CASE("idivl %[div]", "r", zero32, A, D, ok);
    REPORT("idivl r32 by zero");
    DE_CASE("divw %[div]", "r", zero16, A, D, ok);
    REPORT("divw r16 by zero");
    DE_CASE("divb %[div]", "q", zero8, A, D, ok);
    REPORT("divb r8 by zero");
    DE_CASE("idivb %[div]", "q", zero8, A, D, ok);
    REPORT("idivb r8 by zero");
    DE_CASE("divq %[div]", "r", one, 0, 1, ok);
    REPORT("divq 2^64 / 1 (quotient overflow)");
    DE_CASE("divq %[div]", "r", D, 0, D, ok);
    REPORT("divq RDX == divisor (quotient overflow)");
    trap_set_handler(X86_EXC_DE, 0);
    snprintf(buf, sizeof buf, "#DE count %u", de_count);
    line(buf);
    if (de_count != 10)
        failures++;
}

int kmain(struct hvm_start_info *si) {
    (void)si;
    puts("div64: DIV and IDIV of every width, division by constants, #DE\n");
    unsigned64();
    signed64();
    width32();
    width16();
    width8();
    width128();
    constants();
    divide_errors();
    if (failures)
        panic("%u division check(s) failed", failures);
    pass("div64", checksum);
}
