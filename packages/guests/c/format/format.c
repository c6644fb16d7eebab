/*
 * format: integer formatting. Every value of a table of 8-, 16-, 32- and 64-bit bit patterns
 * (including INT64_MIN and UINT64_MAX) is printed as signed and unsigned decimal, hex and
 * octal through printf's hh/h/(none)/ll length modifiers, then with field widths, padding,
 * signs and precision. Each conversion is checked against a second, independent converter
 * (powers of ten by repeated subtraction, shifts and masks) and parsed back. Built -O0: frame
 * pointers, LEAVE, every local in memory, DIV/IDIV by variables and MOVSX/MOVZX of each width.
 */
#include "rt.h"

static unsigned failures;
static uint64_t checksum = FNV64_INIT;

/* ---- the independent converters */
static const uint64_t pow10[20] = {
    1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull, 100000000ull,
    1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull, 10000000000000ull,
    100000000000000ull, 1000000000000000ull, 10000000000000000ull, 100000000000000000ull,
    1000000000000000000ull, 10000000000000000000ull,
};

static char *dec_u64(char *out, uint64_t v) {
    int started = 0;
    for (int p = 19; p >= 0; p--) {
        char d = '0';
        while (v >= pow10[p]) {
            v -= pow10[p];
            d++;
        }
        if (d != '0' || started || p == 0) {
            *out++ = d;
            started = 1;
        }
    }
    *out = 0;
    return out;
}

static char *dec_s64(char *out, int64_t v) {
    if (v < 0) {
        *out++ = '-';
        return dec_u64(out, 0 - (uint64_t)v);   /* INT64_MIN: 2^63 as unsigned */
    }
    return dec_u64(out, (uint64_t)v);
}

static char *pow2_u64(char *out, uint64_t v, unsigned bits_per_digit, int upper) {
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    unsigned mask = (1u << bits_per_digit) - 1;
    int shift = 63 - 63 % (int)bits_per_digit;   /* highest digit position */
    int started = 0;
    for (; shift >= 0; shift -= (int)bits_per_digit) {
        unsigned d = (unsigned)(v >> shift) & mask;
        if (d || started || shift == 0) {
            *out++ = digits[d];
            started = 1;
        }
    }
    *out = 0;
    return out;
}

/* ---- parsing back */
static int parse_u64(const char *s, unsigned base, uint64_t *out) {
    uint64_t v = 0;
    if (!*s)
        return 0;
    for (; *s; s++) {
        unsigned d;
        if (*s >= '0' && *s <= '9') d = (unsigned)(*s - '0');
        else if (*s >= 'a' && *s <= 'f') d = (unsigned)(*s - 'a' + 10);
        else if (*s >= 'A' && *s <= 'F') d = (unsigned)(*s - 'A' + 10);
        else return 0;
        if (d >= base)
            return 0;
        if (v > (UINT64_MAX - d) / base)
            return 0;   /* overflow */
        v = v * base + d;
    }
    *out = v;
    return 1;
}

static int parse_s64(const char *s, int64_t *out) {
    int neg = *s == '-';
    uint64_t u;
    if (!parse_u64(s + neg, 10, &u))
        return 0;
    if (neg ? u > (uint64_t)INT64_MAX + 1 : u > (uint64_t)INT64_MAX)
        return 0;
    *out = neg ? (int64_t)(0 - u) : (int64_t)u;
    return 1;
}

static void expect(const char *what, const char *got, const char *want) {
    if (strcmp(got, want) != 0) {
        printf("  MISMATCH %s: printf \"%s\" vs \"%s\"\n", what, got, want);
        failures++;
    }
}

static uint64_t sign_extend(uint64_t bits, unsigned width) {
    unsigned shift = 64 - width;
    return (uint64_t)((int64_t)(bits << shift) >> shift);
}

static uint64_t truncate(uint64_t bits, unsigned width) {
    return width == 64 ? bits : bits & ((1ull << width) - 1);
}

/* Formats one value of the given width with printf, checks it, prints the line. */
static void show(unsigned width, uint64_t raw) {
    char line[200], d[32], u[32], x[32], X[32], o[32];
    uint64_t bits = truncate(raw, width);
    int64_t sv = (int64_t)sign_extend(bits, width);
    switch (width) {
    case 8: {
        int8_t s8 = (int8_t)bits;
        uint8_t u8 = (uint8_t)bits;
        snprintf(d, sizeof d, "%hhd", s8);
        snprintf(u, sizeof u, "%hhu", u8);
        snprintf(x, sizeof x, "%hhx", u8);
        snprintf(X, sizeof X, "%hhX", u8);
        snprintf(o, sizeof o, "%hho", u8);
        break;
    }
    case 16: {
        int16_t s16 = (int16_t)bits;
        uint16_t u16 = (uint16_t)bits;
        snprintf(d, sizeof d, "%hd", s16);
        snprintf(u, sizeof u, "%hu", u16);
        snprintf(x, sizeof x, "%hx", u16);
        snprintf(X, sizeof X, "%hX", u16);
        snprintf(o, sizeof o, "%ho", u16);
        break;
    }
    case 32: {
        int32_t s32 = (int32_t)bits;
        uint32_t u32 = (uint32_t)bits;
        snprintf(d, sizeof d, "%d", s32);
        snprintf(u, sizeof u, "%u", u32);
        snprintf(x, sizeof x, "%x", u32);
        snprintf(X, sizeof X, "%X", u32);
        snprintf(o, sizeof o, "%o", u32);
        break;
    }
    default: {
        snprintf(d, sizeof d, "%lld", (long long)bits);
        snprintf(u, sizeof u, "%llu", (unsigned long long)bits);
        snprintf(x, sizeof x, "%llx", (unsigned long long)bits);
        snprintf(X, sizeof X, "%llX", (unsigned long long)bits);
        snprintf(o, sizeof o, "%llo", (unsigned long long)bits);
        break;
    }
    }
    char want[32];
    dec_s64(want, sv);
    expect("signed decimal", d, want);
    dec_u64(want, bits);
    expect("unsigned decimal", u, want);
    pow2_u64(want, bits, 4, 0);
    expect("hex", x, want);
    pow2_u64(want, bits, 4, 1);
    expect("HEX", X, want);
    pow2_u64(want, bits, 3, 0);
    expect("octal", o, want);

    uint64_t pu, px, po;
    int64_t ps;
    if (!parse_s64(d, &ps) || ps != sv || !parse_u64(u, 10, &pu) || pu != bits ||
        !parse_u64(x, 16, &px) || px != bits || !parse_u64(o, 8, &po) || po != bits) {
        printf("  MISMATCH parsing back the %u-bit value\n", width);
        failures++;
    }

    snprintf(line, sizeof line, "i%-2u %-21s u%-2u %-20s x %-16s X %-16s o %s", width, d, width, u, x, X, o);
    printf("%s\n", line);
    checksum = fnv64(checksum, line, strlen(line));
}

static const uint64_t values8[] = { 0x00, 0x01, 0x2a, 0x7f, 0x80, 0x81, 0xd6, 0xff };
static const uint64_t values16[] = { 0x0000, 0x0001, 0x3039, 0x7fff, 0x8000, 0xcfc7, 0xffff };
static const uint64_t values32[] = { 0x00000000, 0x00000001, 0x075bcd15, 0x7fffffff, 0x80000000,
                                     0xdeadbeef, 0xfffffffe, 0xffffffff };
static const uint64_t values64[] = {
    0x0000000000000000ull, 0x0000000000000001ull, 0x0123456789abcdefull, 0x0de0b6b3a7640000ull,
    0x7fffffffffffffffull, 0x8000000000000000ull, 0x8000000000000001ull, 0x8ac7230489e80000ull,
    0xfedcba9876543210ull, 0xfffffffffffffffeull, 0xffffffffffffffffull,
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void padded(const char *fmt, long long v) {
    char buf[80];
    snprintf(buf, sizeof buf, fmt, v);
    printf("%-8s [%s]\n", fmt, buf);
    checksum = fnv64(checksum, buf, strlen(buf));
}

static void padded_u(const char *fmt, unsigned long long v) {
    char buf[80];
    snprintf(buf, sizeof buf, fmt, v);
    printf("%-8s [%s]\n", fmt, buf);
    checksum = fnv64(checksum, buf, strlen(buf));
}

int kmain(struct hvm_start_info *si) {
    (void)si;
    puts("format: signed/unsigned decimal, hex and octal of 8/16/32/64-bit values\n");
    for (unsigned i = 0; i < COUNT(values8); i++) show(8, values8[i]);
    for (unsigned i = 0; i < COUNT(values16); i++) show(16, values16[i]);
    for (unsigned i = 0; i < COUNT(values32); i++) show(32, values32[i]);
    for (unsigned i = 0; i < COUNT(values64); i++) show(64, values64[i]);

    puts("widths, flags and precision:\n");
    padded("%25lld", INT64_MIN);
    padded("%-25lld", INT64_MIN);
    padded("%025lld", INT64_MIN);
    padded("%+lld", INT64_MAX);
    padded("% lld", 42);
    padded("%+lld", 0);
    padded("%.5lld", -42);
    padded("%8.3lld", 7);
    padded("%-8.3lld", -7);
    padded_u("%#llx", UINT64_MAX);
    padded_u("%#llo", UINT64_MAX);
    padded_u("%#llX", 0xabcdef);
    padded_u("%#llx", 0);
    padded_u("%025llu", UINT64_MAX);
    padded_u("%.0llu", 0);
    padded_u("%20.18llx", 0xbeef);

    /* snprintf truncation: returns the full length, writes at most size-1 characters */
    char small[8];
    int n = snprintf(small, sizeof small, "%lld", (long long)INT64_MIN);
    printf("snprintf into 8 bytes: \"%s\", returned %d\n", small, n);
    if (n != 20 || strcmp(small, "-922337") != 0)
        failures++;

    if (failures)
        panic("%u formatting mismatch(es)", failures);
    pass("format", checksum);
}
