/*
 * sha256: SHA-256 (FIPS 180-4) of the FIPS/NIST test vectors and of a 64 KiB buffer filled
 * by xorshift32, hashed in one go and incrementally in odd-sized pieces. Each digest is
 * compared with a known value (the 64 KiB one computed on the host with sha256sum, see
 * scripts/crosscheck.py) and printed. Built -O2: ROR, BSWAP, long dependency chains of
 * ADD/XOR/AND/NOT on 32-bit registers.
 */
#include "rt.h"

struct sha256 {
    uint32_t h[8];
    uint64_t length;      /* bytes hashed so far */
    uint8_t block[64];
    unsigned used;        /* bytes in block */
};

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror32(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static inline uint32_t load_be32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return __builtin_bswap32(v);
}

static inline void store_be32(uint8_t *p, uint32_t v) {
    v = __builtin_bswap32(v);
    memcpy(p, &v, 4);
}

static void sha256_compress(uint32_t h[8], const uint8_t *block) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = load_be32(block + 4 * i);
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = hh + S1 + ch + K[i] + w[i];
        uint32_t S0 = ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
    h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

static void sha256_init(struct sha256 *s) {
    static const uint32_t H0[8] = {
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    };
    memcpy(s->h, H0, sizeof H0);
    s->length = 0;
    s->used = 0;
}

static void sha256_update(struct sha256 *s, const void *data, size_t n) {
    const uint8_t *p = data;
    s->length += n;
    if (s->used) {
        size_t take = 64 - s->used;
        if (take > n)
            take = n;
        memcpy(s->block + s->used, p, take);
        s->used += (unsigned)take;
        p += take;
        n -= take;
        if (s->used < 64)
            return;
        sha256_compress(s->h, s->block);
        s->used = 0;
    }
    for (; n >= 64; n -= 64, p += 64)
        sha256_compress(s->h, p);
    memcpy(s->block, p, n);
    s->used = (unsigned)n;
}

static void sha256_final(struct sha256 *s, uint8_t out[32]) {
    uint64_t bits = s->length * 8;
    s->block[s->used++] = 0x80;
    if (s->used > 56) {
        memset(s->block + s->used, 0, 64 - s->used);
        sha256_compress(s->h, s->block);
        s->used = 0;
    }
    memset(s->block + s->used, 0, 56 - s->used);
    uint64_t be = __builtin_bswap64(bits);
    memcpy(s->block + 56, &be, 8);
    sha256_compress(s->h, s->block);
    for (int i = 0; i < 8; i++)
        store_be32(out + 4 * i, s->h[i]);
}

static void sha256(const void *data, size_t n, uint8_t out[32]) {
    struct sha256 s;
    sha256_init(&s);
    sha256_update(&s, data, n);
    sha256_final(&s, out);
}

static void to_hex(const uint8_t *d, size_t n, char *out) {
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * n] = 0;
}

static uint64_t checksum = FNV64_INIT;
static unsigned failures;

static void report(const char *label, const uint8_t digest[32], const char *expected) {
    char hex[65];
    to_hex(digest, 32, hex);
    int ok = strcmp(hex, expected) == 0;
    printf("%-28s %s %s\n", label, hex, ok ? "ok" : "MISMATCH");
    if (!ok) {
        printf("%-28s %s expected\n", "", expected);
        failures++;
    }
    checksum = fnv64(checksum, digest, 32);
}

#define PATTERN_SIZE 65536
static uint8_t pattern[PATTERN_SIZE];

int kmain(struct hvm_start_info *si) {
    uint8_t d[32];
    puts("sha256: SHA-256 (FIPS 180-4)\n");

    sha256("", 0, d);
    report("\"\"", d, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha256("abc", 3, d);
    report("\"abc\"", d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *v448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256(v448, strlen(v448), d);
    report("448-bit NIST vector", d, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *v896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    sha256(v896, strlen(v896), d);
    report("896-bit NIST vector", d, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");

    struct sha256 s;

    /* 64 KiB of xorshift32 output (x ^= x<<13; x ^= x>>17; x ^= x<<5; seed 0x12345678),
       stored little-endian. */
    uint32_t x = 0x12345678;
    for (int i = 0; i < PATTERN_SIZE; i += 4) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        memcpy(pattern + i, &x, 4);
    }
    static const char pattern_digest[] = "581af5e88e8f299e0594f44676fe057522758ec121c418e740ad1391e412af25";
    sha256(pattern, PATTERN_SIZE, d);
    report("64 KiB xorshift32 pattern", d, pattern_digest);

    /* The same buffer fed in pieces of 1, 2, 3, ... bytes (crossing block boundaries). */
    sha256_init(&s);
    size_t off = 0;
    for (size_t piece = 1; off < PATTERN_SIZE; piece = piece % 150 + 1) {
        size_t n = PATTERN_SIZE - off < piece ? PATTERN_SIZE - off : piece;
        sha256_update(&s, pattern + off, n);
        off += n;
    }
    sha256_final(&s, d);
    report("same, in 1..150-byte pieces", d, pattern_digest);

    /* Every prefix length 0..130 of the pattern against a second, one-shot computation. */
    uint64_t prefix_sum = FNV64_INIT;
    for (size_t n = 0; n <= 130; n++) {
        uint8_t d2[32];
        sha256(pattern, n, d);
        sha256_init(&s);
        for (size_t i = 0; i < n; i++)
            sha256_update(&s, pattern + i, 1);
        sha256_final(&s, d2);
        if (memcmp(d, d2, 32) != 0) {
            printf("prefix %u: byte-wise digest differs\n", (unsigned)n);
            failures++;
        }
        prefix_sum = fnv64(prefix_sum, d, 32);
    }
    printf("prefixes 0..130: byte-wise == one-shot, fnv64 %016llx\n", (unsigned long long)prefix_sum);
    checksum = fnv64_u64(checksum, prefix_sum);
    (void)si;

    if (failures)
        panic("%u digest(s) wrong", failures);
    pass("sha256", checksum);
}
