/*
 * recursion: deep and wide recursion on a 16 MiB stack (guest_stack_size, read by the
 * linker script).
 * Ackermann A(2, n) and A(3, n) with call counts and maximum depth, a non-tail recursive sum
 * 100,000 calls deep, mutual recursion 50,001 deep, frames with a 256-byte local array 10,000
 * deep, Fibonacci by naive recursion and the towers of Hanoi (14 discs). Built -O0 so every call is a
 * real CALL with a full frame (PUSH RBP / MOV RBP,RSP / LEAVE / RET).
 */
#include "rt.h"

/* The linker script sizes the boot stack from this absolute symbol. */
__asm__(".globl guest_stack_size\n.set guest_stack_size, 0x1000000");

static unsigned long calls, depth, max_depth;
static uintptr_t lowest_rsp;

static void enter(void) {
    calls++;
    depth++;
    if (depth > max_depth)
        max_depth = depth;
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    if (sp < lowest_rsp)
        lowest_rsp = sp;
}

static void leave(void) { depth--; }

static void reset(void) {
    calls = depth = max_depth = 0;
    lowest_rsp = (uintptr_t)__stack_top;
}

static uint64_t ackermann(uint64_t m, uint64_t n) {
    uint64_t r;
    enter();
    if (m == 0)
        r = n + 1;
    else if (n == 0)
        r = ackermann(m - 1, 1);
    else
        r = ackermann(m - 1, ackermann(m, n - 1));
    leave();
    return r;
}

static uint64_t sum_to(uint64_t n) {
    uint64_t r;
    enter();
    r = n == 0 ? 0 : n + sum_to(n - 1);
    leave();
    return r;
}

static int is_odd(uint64_t n);
static int is_even(uint64_t n) {
    enter();
    int r = n == 0 ? 1 : is_odd(n - 1);
    leave();
    return r;
}
static int is_odd(uint64_t n) {
    enter();
    int r = n == 0 ? 0 : is_even(n - 1);
    leave();
    return r;
}

/* Each frame holds a 256-byte array; every 16th byte is set from the depth and summed on the
   way out. */
static uint64_t big_frames(unsigned n) {
    uint8_t local[256];
    enter();
    for (unsigned i = 0; i < sizeof local; i += 16)
        local[i] = (uint8_t)(n * 31 + i);
    uint64_t below = n ? big_frames(n - 1) : 0;
    uint64_t s = 0;
    for (unsigned i = 0; i < sizeof local; i += 16)
        s += local[i];
    leave();
    return below + s;
}

static uint64_t fib(unsigned n) {
    enter();
    uint64_t r = n < 2 ? n : fib(n - 1) + fib(n - 2);
    leave();
    return r;
}

static uint64_t hanoi_moves, hanoi_hash;
static void hanoi(unsigned n, unsigned from, unsigned to, unsigned via) {
    enter();
    if (n) {
        hanoi(n - 1, from, via, to);
        hanoi_moves++;
        hanoi_hash = hanoi_hash * 31 + from * 3 + to;
        hanoi(n - 1, via, to, from);
    }
    leave();
}

static uint64_t checksum = FNV64_INIT;
static unsigned failures;

static void result(const char *what, uint64_t value, uint64_t expected) {
    unsigned long stack = (unsigned long)((uintptr_t)__stack_top - lowest_rsp);
    printf("%-22s = %-12llu calls %-9lu max depth %-7lu stack %lu bytes%s\n", what,
           (unsigned long long)value, calls, max_depth, stack, value == expected ? "" : "  WRONG");
    if (value != expected)
        failures++;
    checksum = fnv64_u64(checksum, value);
    checksum = fnv64_u64(checksum, calls);
    checksum = fnv64_u64(checksum, max_depth);
}

int kmain(struct hvm_start_info *si) {
    char what[32];
    (void)si;
    printf("recursion: stack of %lu KiB\n", (unsigned long)((__stack_top - __stack_bottom) / 1024));

    for (uint64_t n = 0; n <= 10; n += 5) {
        reset();
        uint64_t r = ackermann(2, n);
        snprintf(what, sizeof what, "ackermann(2, %llu)", (unsigned long long)n);
        result(what, r, 2 * n + 3);
    }
    for (uint64_t n = 1; n <= 5; n++) {
        reset();
        uint64_t r = ackermann(3, n);
        snprintf(what, sizeof what, "ackermann(3, %llu)", (unsigned long long)n);
        result(what, r, (1ull << (n + 3)) - 3);
    }

    reset();
    result("sum_to(100000)", sum_to(100000), 5000050000ull);
    reset();
    result("is_even(50000)", (uint64_t)is_even(50000), 1);
    reset();
    result("is_odd(50001)", (uint64_t)is_odd(50001), 1);
    reset();
    /* sum over n = 0..9999, i = 0, 16, .. 240 of (uint8_t)(31n + i), computed on the host */
    result("big_frames(9999)", big_frames(9999), 20400000ull);
    reset();
    result("fib(22)", fib(22), 17711);
    reset();
    hanoi_moves = 0;
    hanoi_hash = 0;
    hanoi(14, 0, 2, 1);
    result("hanoi(14) moves", hanoi_moves, 16383);
    printf("hanoi(14) move hash %016llx\n", (unsigned long long)hanoi_hash);
    checksum = fnv64_u64(checksum, hanoi_hash);

    if (failures)
        panic("%u wrong result(s)", failures);
    pass("recursion", checksum);
}
