/* vtlab guest runtime: boot, console, printf, traps, start info. See rt.h. */
#include "rt.h"

struct hvm_start_info *start_info;

/* ---------------------------------------------------------------- console and exit */

/* A program built with -DRT_EXTERNAL_CONSOLE (the reference kernel) supplies its own putc. */
#ifndef RT_EXTERNAL_CONSOLE
void putc(char c) { outb(DEBUGCON_PORT, (uint8_t)c); }
#endif

void putn(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        putc(s[i]);
}

void puts(const char *s) { putn(s, strlen(s)); }

void rt_exit(int code) {
    outl(DEBUG_EXIT_PORT, (uint32_t)code);
    for (;;)
        __asm__ volatile("cli; hlt");
}

void panic(const char *fmt, ...) {
    va_list ap;
    puts("FAIL ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putc('\n');
    rt_exit(EXIT_FAILURE_CODE);
}

void pass(const char *name, uint64_t checksum) {
    printf("PASS %s %016llx\n", name, (unsigned long long)checksum);
    rt_exit(EXIT_SUCCESS_CODE);
}

int strcmp(const char *a, const char *b) {
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return (unsigned char)*a - (unsigned char)*b;
}

/* ---------------------------------------------------------------- printf */

struct sink {
    char *buf;      /* NULL: write to the console */
    size_t size;
    size_t len;
};

static void sink_put(struct sink *s, char c) {
    if (!s->buf)
        putc(c);
    else if (s->len + 1 < s->size)
        s->buf[s->len] = c;
    s->len++;
}

static void sink_pad(struct sink *s, char c, int n) {
    while (n-- > 0)
        sink_put(s, c);
}

/* Converts v to digits in base (8, 10, 16), least significant last; returns the count. */
static int utoa_rev(char *out, unsigned long long v, unsigned base, int upper) {
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = digits[v % base];
        v /= base;
    } while (v);
    for (int i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static int do_printf(struct sink *s, const char *fmt, va_list ap) {
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            sink_put(s, *fmt);
            continue;
        }
        fmt++;
        int left = 0, zero = 0, plus = 0, space = 0, alt = 0;
        for (;; fmt++) {
            if (*fmt == '-') left = 1;
            else if (*fmt == '0') zero = 1;
            else if (*fmt == '+') plus = 1;
            else if (*fmt == ' ') space = 1;
            else if (*fmt == '#') alt = 1;
            else break;
        }
        int width = 0;
        if (*fmt == '*') {
            width = va_arg(ap, int);
            if (width < 0) {
                left = 1;
                width = -width;
            }
            fmt++;
        } else {
            while (*fmt >= '0' && *fmt <= '9')
                width = width * 10 + (*fmt++ - '0');
        }
        int prec = -1;
        if (*fmt == '.') {
            fmt++;
            prec = 0;
            while (*fmt >= '0' && *fmt <= '9')
                prec = prec * 10 + (*fmt++ - '0');
        }
        /* length: 0 int, 1 char (hh), 2 short (h), 3 long / long long / size_t */
        int len = 0;
        if (*fmt == 'h') {
            fmt++;
            len = 2;
            if (*fmt == 'h') {
                fmt++;
                len = 1;
            }
        } else if (*fmt == 'l') {
            fmt++;
            len = 3;
            if (*fmt == 'l')
                fmt++;
        } else if (*fmt == 'z' || *fmt == 'j' || *fmt == 't') {
            fmt++;
            len = 3;
        }
        char conv = *fmt;
        if (!conv)
            break;
        if (conv == '%') {
            sink_put(s, '%');
            continue;
        }
        if (conv == 'c') {
            if (!left) sink_pad(s, ' ', width - 1);
            sink_put(s, (char)va_arg(ap, int));
            if (left) sink_pad(s, ' ', width - 1);
            continue;
        }
        if (conv == 's') {
            const char *str = va_arg(ap, const char *);
            if (!str) str = "(null)";
            int n = (int)strlen(str);
            if (prec >= 0 && n > prec) n = prec;
            if (!left) sink_pad(s, ' ', width - n);
            for (int i = 0; i < n; i++) sink_put(s, str[i]);
            if (left) sink_pad(s, ' ', width - n);
            continue;
        }
        unsigned long long u;
        int negative = 0;
        unsigned base = 10;
        int upper = 0;
        const char *prefix = "";
        if (conv == 'd' || conv == 'i') {
            long long v;
            if (len == 3) v = va_arg(ap, long long);
            else if (len == 2) v = (short)va_arg(ap, int);
            else if (len == 1) v = (signed char)va_arg(ap, int);
            else v = va_arg(ap, int);
            negative = v < 0;
            u = negative ? 0ull - (unsigned long long)v : (unsigned long long)v;
            if (negative) prefix = "-";
            else if (plus) prefix = "+";
            else if (space) prefix = " ";
        } else if (conv == 'u' || conv == 'x' || conv == 'X' || conv == 'o' || conv == 'p') {
            if (conv == 'p') {
                u = (unsigned long long)(uintptr_t)va_arg(ap, void *);
                len = 3;
                alt = 1;
            } else if (len == 3) u = va_arg(ap, unsigned long long);
            else if (len == 2) u = (unsigned short)va_arg(ap, unsigned);
            else if (len == 1) u = (unsigned char)va_arg(ap, unsigned);
            else u = va_arg(ap, unsigned);
            if (conv == 'o') {
                base = 8;
                if (alt && u) prefix = "0";
            } else if (conv != 'u') {
                base = 16;
                upper = conv == 'X';
                if (alt && (u || conv == 'p')) prefix = upper ? "0X" : "0x";
            }
        } else {
            /* unknown conversion: print it verbatim */
            sink_put(s, '%');
            sink_put(s, conv);
            continue;
        }
        char digits[24];
        int nd = (prec == 0 && u == 0) ? 0 : utoa_rev(digits, u, base, upper);
        int zeros = prec > nd ? prec - nd : 0;
        int np = (int)strlen(prefix);
        int total = np + zeros + nd;
        if (zero && !left && prec < 0 && width > total) {
            zeros += width - total;
            total = width;
        }
        if (!left) sink_pad(s, ' ', width - total);
        for (int i = 0; i < np; i++) sink_put(s, prefix[i]);
        sink_pad(s, '0', zeros);
        for (int i = 0; i < nd; i++) sink_put(s, digits[i]);
        if (left) sink_pad(s, ' ', width - total);
    }
    return (int)s->len;
}

int vprintf(const char *fmt, va_list ap) {
    struct sink s = { 0, 0, 0 };
    return do_printf(&s, fmt, ap);
}

int printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap) {
    struct sink s = { buf, size, 0 };
    int n = do_printf(&s, fmt, ap);
    if (size)
        buf[s.len < size ? s.len : size - 1] = 0;
    return n;
}

int snprintf(char *buf, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

/* ---------------------------------------------------------------- checksums */

uint64_t fnv64(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t fnv64_u64(uint64_t h, uint64_t v) { return fnv64(h, &v, sizeof v); }

/* ---------------------------------------------------------------- traps */

struct idt_gate {
    uint16_t offset_lo;
    uint16_t selector;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t offset_mid;
    uint32_t offset_hi;
    uint32_t reserved;
};

#define IDT_INTERRUPT_GATE 0x8E   /* P=1, DPL=0, type 0xE (64-bit interrupt gate) */
#define IDT_DPL3           0x60
#define KERNEL_CS          0x08

static struct idt_gate idt[256] __attribute__((aligned(16)));
static trap_handler_t handlers[256];
extern const uint64_t trap_stubs[32];
extern const uint64_t trap_stub_int80;

static void idt_set(unsigned vector, uint64_t addr, uint8_t type_attr) {
    idt[vector] = (struct idt_gate){
        .offset_lo = (uint16_t)addr,
        .selector = KERNEL_CS,
        .ist = 0,
        .type_attr = type_attr,
        .offset_mid = (uint16_t)(addr >> 16),
        .offset_hi = (uint32_t)(addr >> 32),
        .reserved = 0,
    };
}

static void idt_init(void) {
    for (unsigned v = 0; v < 32; v++)
        idt_set(v, trap_stubs[v], IDT_INTERRUPT_GATE);
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr = {
        sizeof idt - 1, (uint64_t)(uintptr_t)idt
    };
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

void trap_set_handler(unsigned vector, trap_handler_t handler) { handlers[vector & 255] = handler; }

void trap_set_int80(trap_handler_t handler) {
    handlers[0x80] = handler;
    idt_set(0x80, trap_stub_int80, IDT_INTERRUPT_GATE | IDT_DPL3);
}

static const char *const trap_names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP",
    "#SS", "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "#22", "#23",
    "#24", "#25", "#26", "#27", "#HV", "#VC", "#SX", "#31",
};

const char *trap_name(unsigned vector) { return vector < 32 ? trap_names[vector] : "INT"; }

void trap_unhandled(const struct trap_frame *f) {
    printf("\nEXCEPTION %s vector=%llu error=0x%llx rip=0x%llx cr2=0x%llx cs=0x%llx rsp=0x%llx rflags=0x%llx\n",
           trap_name((unsigned)f->vector), (unsigned long long)f->vector,
           (unsigned long long)f->error_code, (unsigned long long)f->rip,
           (unsigned long long)read_cr2(), (unsigned long long)f->cs,
           (unsigned long long)f->rsp, (unsigned long long)f->rflags);
    rt_exit(EXIT_EXCEPTION);
}

void trap_dispatch(struct trap_frame *f);
void trap_dispatch(struct trap_frame *f) {
    trap_handler_t h = handlers[f->vector & 255];
    if (h && h(f))
        return;
    trap_unhandled(f);
}

/* ---------------------------------------------------------------- start info */

const char *cmdline(void) {
    if (!start_info || !start_info->cmdline_paddr)
        return "";
    return (const char *)(uintptr_t)start_info->cmdline_paddr;
}

uint64_t cmdline_uint(const char *key, uint64_t dflt) {
    const char *p = cmdline();
    size_t klen = strlen(key);
    while (*p) {
        while (*p == ' ')
            p++;
        const char *tok = p;
        while (*p && *p != ' ')
            p++;
        if ((size_t)(p - tok) > klen && memcmp(tok, key, klen) == 0 && tok[klen] == '=') {
            const char *v = tok + klen + 1;
            uint64_t n = 0;
            if (v == p)
                return dflt;
            for (; v < p; v++) {
                if (*v < '0' || *v > '9')
                    return dflt;
                n = n * 10 + (uint64_t)(*v - '0');
            }
            return n;
        }
    }
    return dflt;
}

/* ---------------------------------------------------------------- boot */

int rt_boot(struct hvm_start_info *si);
int rt_boot(struct hvm_start_info *si) {
    if (!si || si->magic != XEN_HVM_START_MAGIC_VALUE) {
        puts("FAIL bad hvm_start_info magic\n");
        return EXIT_BAD_BOOT;
    }
    start_info = si;
    idt_init();
    return kmain(si);
}
