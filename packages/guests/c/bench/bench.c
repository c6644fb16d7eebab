/*
 * bench: a CPU-bound integer mix for measuring instructions per second. Each iteration
 * fills 64 KiB with xorshift64* output, computes its CRC-32 (IEEE, table-driven, reflected),
 * sieves the primes below ~1,000,000 in a bit array (BT/BTS-style bit tests), sorts 16,384
 * 32-bit keys with an iterative quicksort, and folds bit-twiddling (BSR/BSF, ROL, BSWAP) into
 * the result. The iteration count comes from the command line ("iterations=N" in
 * hvm_start_info's cmdline); see DEFAULT_ITERATIONS. Built -O2.
 */
#include "rt.h"

/* One iteration retires about 17.7 million instructions (counted under QEMU, see
   images/PROVENANCE.md), so the default is about 355 million: 3.5 s at 100 MIPS. */
#define DEFAULT_ITERATIONS 20
#define BUF_BYTES   65536
#define SIEVE_BASE  1000000
#define SORT_KEYS   16384

static uint64_t buf64[BUF_BYTES / 8];
static uint32_t crc_table[256];
static uint64_t sieve_bits[(SIEVE_BASE + 1024 * 16 + 63) / 64];
static uint32_t keys[SORT_KEYS];

static void crc32_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

static void fill(uint64_t seed) {
    uint64_t x = seed | 1;
    for (size_t i = 0; i < BUF_BYTES / 8; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        buf64[i] = x * 0x2545f4914f6cdd1dull;
    }
}

/* Counts primes below limit; sieve_bits has a 1 for each composite odd number. */
static unsigned long sieve(unsigned long limit) {
    memset(sieve_bits, 0, (limit / 2 + 63) / 64 * 8);
    for (unsigned long i = 3; i * i < limit; i += 2) {
        if (sieve_bits[(i / 2) >> 6] & (1ull << ((i / 2) & 63)))
            continue;
        for (unsigned long j = i * i; j < limit; j += 2 * i)
            sieve_bits[(j / 2) >> 6] |= 1ull << ((j / 2) & 63);
    }
    unsigned long count = limit > 2;   /* the prime 2 */
    for (unsigned long i = 3; i < limit; i += 2)
        count += !(sieve_bits[(i / 2) >> 6] & (1ull << ((i / 2) & 63)));
    return count;
}

/* Iterative quicksort with an explicit stack, insertion sort for short ranges. */
static void sort_keys(uint32_t *a, long n) {
    long stack[128];
    int sp = 0;
    stack[sp++] = 0;
    stack[sp++] = n - 1;
    while (sp) {
        long hi = stack[--sp], lo = stack[--sp];
        while (hi - lo > 12) {
            long mid = lo + ((hi - lo) >> 1);
            uint32_t x = a[lo], y = a[mid], z = a[hi];
            uint32_t pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
            long i = lo, j = hi;
            while (i <= j) {
                while (a[i] < pivot) i++;
                while (a[j] > pivot) j--;
                if (i <= j) {
                    uint32_t t = a[i];
                    a[i++] = a[j];
                    a[j--] = t;
                }
            }
            if (j - lo < hi - i) {
                stack[sp++] = i;
                stack[sp++] = hi;
                hi = j;
            } else {
                stack[sp++] = lo;
                stack[sp++] = j;
                lo = i;
            }
        }
        for (long i = lo + 1; i <= hi; i++) {
            uint32_t v = a[i];
            long j = i - 1;
            while (j >= lo && a[j] > v) {
                a[j + 1] = a[j];
                j--;
            }
            a[j + 1] = v;
        }
    }
}

static inline uint64_t rol64(uint64_t x, unsigned r) { return (x << r) | (x >> ((64 - r) & 63)); }

/* Bit-twiddling over the buffer: BSR/BSF (clz/ctz), ROL, BSWAP. */
static uint64_t bits_mix(void) {
    uint64_t h = 0;
    for (size_t i = 0; i < BUF_BYTES / 8; i++) {
        uint64_t v = buf64[i] | 1;
        unsigned lz = (unsigned)__builtin_clzll(v), tz = (unsigned)__builtin_ctzll(v >> 1 | (1ull << 63));
        h = rol64(h ^ __builtin_bswap64(v), (lz + tz) & 63) + lz * 3 + tz;
    }
    return h;
}

int kmain(struct hvm_start_info *si) {
    (void)si;
    uint64_t iterations = cmdline_uint("iterations", DEFAULT_ITERATIONS);
    printf("bench: CRC-32, sieve, sort and bit mixing; iterations %llu\n", (unsigned long long)iterations);
    crc32_init();
    CHECK(crc32((const uint8_t *)"123456789", 9) == 0xcbf43926u);   /* the CRC-32 check value */
    uint64_t checksum = FNV64_INIT;
    for (uint64_t it = 0; it < iterations; it++) {
        fill(0x9e3779b97f4a7c15ull * (it + 1));
        uint32_t crc = crc32((const uint8_t *)buf64, BUF_BYTES);
        unsigned long limit = SIEVE_BASE + (it % 16) * 1024;
        unsigned long primes = sieve(limit);
        const uint32_t *words = (const uint32_t *)buf64;
        for (int i = 0; i < SORT_KEYS; i++)
            keys[i] = words[i] ^ (words[(i * 7) & (SORT_KEYS - 1)] >> 3);
        sort_keys(keys, SORT_KEYS);
        uint64_t sorted = 0;
        for (int i = 1; i < SORT_KEYS; i++) {
            if (keys[i - 1] > keys[i])
                panic("keys out of order at %d", i);
            sorted = sorted * 31 + keys[i];
        }
        uint64_t mix = bits_mix();
        printf("iteration %llu: crc32 %08x, primes below %lu: %lu, sorted %016llx, mix %016llx\n",
               (unsigned long long)(it + 1), crc, limit, primes, (unsigned long long)sorted,
               (unsigned long long)mix);
        uint64_t v[5] = { crc, primes, sorted, mix, it };
        checksum = fnv64(checksum, v, sizeof v);
    }
    pass("bench", checksum);
}
