/*
 * sort: 10,000 pseudo-random 64-bit integers (xorshift64, fixed seed) sorted with quicksort
 * (median of three, insertion sort below 16 elements) and with top-down merge sort, both as
 * unsigned and as signed values; every result is checked to be ordered and a permutation of
 * the input, and the two algorithms must agree. Built -Os: compact code with CMOVcc, SETcc,
 * signed and unsigned conditional jumps, and REP MOVSB through memcpy.
 */
#include "rt.h"

#define N 10000

static uint64_t input[N], qs[N], ms[N], tmp[N];
static int64_t sq[N], sm[N];
static int64_t stmp[N];

static uint64_t xorshift64(uint64_t *state) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

/* ---- unsigned quicksort */
static void insertion_u(uint64_t *a, long lo, long hi) {
    for (long i = lo + 1; i <= hi; i++) {
        uint64_t v = a[i];
        long j = i - 1;
        while (j >= lo && a[j] > v) {
            a[j + 1] = a[j];
            j--;
        }
        a[j + 1] = v;
    }
}

static void swap_u(uint64_t *a, long i, long j) {
    uint64_t t = a[i];
    a[i] = a[j];
    a[j] = t;
}

static unsigned long qs_calls, qs_max_depth;

static void quicksort_u(uint64_t *a, long lo, long hi, unsigned long depth) {
    qs_calls++;
    if (depth > qs_max_depth)
        qs_max_depth = depth;
    while (hi - lo >= 16) {
        long mid = lo + (hi - lo) / 2;
        if (a[mid] < a[lo]) swap_u(a, mid, lo);
        if (a[hi] < a[lo]) swap_u(a, hi, lo);
        if (a[hi] < a[mid]) swap_u(a, hi, mid);
        uint64_t pivot = a[mid];
        long i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) {
                swap_u(a, i, j);
                i++;
                j--;
            }
        }
        /* recurse into the smaller part, loop on the larger: depth stays O(log n) */
        if (j - lo < hi - i) {
            quicksort_u(a, lo, j, depth + 1);
            lo = i;
        } else {
            quicksort_u(a, i, hi, depth + 1);
            hi = j;
        }
    }
    insertion_u(a, lo, hi);
}

/* ---- signed quicksort (same algorithm, signed comparisons) */
static void quicksort_s(int64_t *a, long lo, long hi) {
    while (hi - lo >= 16) {
        long mid = lo + (hi - lo) / 2;
        int64_t t;
        if (a[mid] < a[lo]) { t = a[mid]; a[mid] = a[lo]; a[lo] = t; }
        if (a[hi] < a[lo]) { t = a[hi]; a[hi] = a[lo]; a[lo] = t; }
        if (a[hi] < a[mid]) { t = a[hi]; a[hi] = a[mid]; a[mid] = t; }
        int64_t pivot = a[mid];
        long i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) {
                t = a[i]; a[i] = a[j]; a[j] = t;
                i++;
                j--;
            }
        }
        if (j - lo < hi - i) {
            quicksort_s(a, lo, j);
            lo = i;
        } else {
            quicksort_s(a, i, hi);
            hi = j;
        }
    }
    for (long i = lo + 1; i <= hi; i++) {
        int64_t v = a[i];
        long j = i - 1;
        while (j >= lo && a[j] > v) {
            a[j + 1] = a[j];
            j--;
        }
        a[j + 1] = v;
    }
}

/* ---- merge sorts */
static unsigned long merge_comparisons;

static void mergesort_u(uint64_t *a, uint64_t *t, size_t n) {
    if (n < 2)
        return;
    size_t h = n / 2;
    mergesort_u(a, t, h);
    mergesort_u(a + h, t, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        merge_comparisons++;
        /* branch-free select: gcc emits SETcc/CMOVcc */
        int take_right = a[j] < a[i];
        t[k++] = take_right ? a[j] : a[i];
        j += take_right;
        i += !take_right;
    }
    while (i < h) t[k++] = a[i++];
    while (j < n) t[k++] = a[j++];
    memcpy(a, t, n * sizeof *a);
}

static void mergesort_s(int64_t *a, int64_t *t, size_t n) {
    if (n < 2)
        return;
    size_t h = n / 2;
    mergesort_s(a, t, h);
    mergesort_s(a + h, t, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        t[k++] = a[j] < a[i] ? a[j++] : a[i++];
    while (i < h) t[k++] = a[i++];
    while (j < n) t[k++] = a[j++];
    memcpy(a, t, n * sizeof *a);
}

/* Order-independent fingerprint of a multiset: sum, xor and sum of squares (mod 2^64). */
struct multiset { uint64_t sum, xor, sq; };
static struct multiset fingerprint(const uint64_t *a, size_t n) {
    struct multiset m = { 0, 0, 0 };
    for (size_t i = 0; i < n; i++) {
        m.sum += a[i];
        m.xor ^= a[i];
        m.sq += a[i] * a[i];
    }
    return m;
}

static int same_multiset(struct multiset a, struct multiset b) {
    return a.sum == b.sum && a.xor == b.xor && a.sq == b.sq;
}

int kmain(struct hvm_start_info *si) {
    (void)si;
    puts("sort: 10000 xorshift64 values (seed 0x9e3779b97f4a7c15), quicksort and merge sort\n");
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < N; i++)
        input[i] = xorshift64(&state);
    printf("input[0..2] = %016llx %016llx %016llx\n", (unsigned long long)input[0],
           (unsigned long long)input[1], (unsigned long long)input[2]);

    memcpy(qs, input, sizeof qs);
    memcpy(ms, input, sizeof ms);
    quicksort_u(qs, 0, N - 1, 0);
    mergesort_u(ms, tmp, N);
    for (int i = 0; i < N; i++) {
        sq[i] = (int64_t)input[i];
        sm[i] = (int64_t)input[i];
    }
    quicksort_s(sq, 0, N - 1);
    mergesort_s(sm, stmp, N);

    struct multiset in = fingerprint(input, N);
    CHECK(same_multiset(in, fingerprint(qs, N)));
    CHECK(same_multiset(in, fingerprint(ms, N)));
    CHECK(same_multiset(in, fingerprint((uint64_t *)sq, N)));
    CHECK(same_multiset(in, fingerprint((uint64_t *)sm, N)));

    unsigned long equal_neighbours = 0, negatives = 0;
    for (int i = 1; i < N; i++) {
        CHECK(qs[i - 1] <= qs[i]);
        CHECK(sq[i - 1] <= sq[i]);
        equal_neighbours += qs[i - 1] == qs[i];
    }
    for (int i = 0; i < N; i++)
        negatives += sq[i] < 0;
    CHECK(memcmp(qs, ms, sizeof qs) == 0);
    CHECK(memcmp(sq, sm, sizeof sq) == 0);
    /* the signed order is the unsigned order rotated: negatives (top bit set) first */
    for (unsigned long i = 0; i < N; i++)
        CHECK((uint64_t)sq[i] == qs[(i + (N - negatives)) % N]);
    puts("unsigned: quicksort == merge sort, ordered, same multiset\n");
    puts("signed:   quicksort == merge sort, ordered, same multiset\n");

    printf("quicksort calls %lu, max depth %lu; merge comparisons %lu\n", qs_calls, qs_max_depth,
           merge_comparisons);
    printf("equal neighbours %lu, negative as signed %lu\n", equal_neighbours, negatives);
    printf("unsigned min %016llx median %016llx max %016llx\n", (unsigned long long)qs[0],
           (unsigned long long)qs[N / 2], (unsigned long long)qs[N - 1]);
    printf("signed   min %lld max %lld\n", (long long)sq[0], (long long)sq[N - 1]);
    printf("multiset sum %016llx xor %016llx sumsq %016llx\n", (unsigned long long)in.sum,
           (unsigned long long)in.xor, (unsigned long long)in.sq);

    uint64_t h = fnv64(FNV64_INIT, qs, sizeof qs);
    h = fnv64(h, sq, sizeof sq);
    pass("sort", h);
}
