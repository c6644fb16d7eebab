#!/usr/bin/env python3
"""Checks the guests' expected console outputs (images/<name>.expected) against values
computed independently on the host: SHA-256 digests with hashlib, CRC-32 with zlib, division
with Python integers and C's truncating semantics, formatting with Python's % operator, the
sorts with sorted(), and every program's final FNV-1a checksum where it can be recomputed.

    python3 scripts/crosscheck.py [IMAGES_DIR]

Exits 1 and names the line if anything differs."""
import hashlib
import os
import re
import struct
import sys
import zlib

M64 = (1 << 64) - 1
FNV_INIT = 0xCBF29CE484222325
failures = []


def fnv64(h, data):
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & M64
    return h


def fnv64_u64(h, v):
    return fnv64(h, struct.pack("<Q", v & M64))


def check(name, cond, what):
    if not cond:
        failures.append(f"{name}: {what}")


def pass_line(name, lines, checksum):
    want = f"PASS {name} {checksum:016x}"
    check(name, lines[-1] == want, f"last line {lines[-1]!r}, computed {want!r}")


def s64(v):
    v &= M64
    return v - (1 << 64) if v >> 63 else v


def tdiv(a, b):
    """C division: quotient truncated toward zero, remainder has the dividend's sign."""
    q = abs(a) // abs(b)
    if (a < 0) != (b < 0):
        q = -q
    return q, a - q * b


# ------------------------------------------------------------------ sha256
def sha256(lines):
    x = 0x12345678
    pattern = bytearray()
    for _ in range(65536 // 4):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        pattern += struct.pack("<I", x)
    inputs = [
        b"",
        b"abc",
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
        bytes(pattern),
        bytes(pattern),
    ]
    h = FNV_INIT
    for i, data in enumerate(inputs):
        d = hashlib.sha256(data).digest()
        line = lines[1 + i]
        check("sha256", line.split()[-2:] == [d.hex(), "ok"], f"line {line!r} != {d.hex()}")
        h = fnv64(h, d)
    ph = FNV_INIT
    for n in range(131):
        ph = fnv64(ph, hashlib.sha256(bytes(pattern[:n])).digest())
    check("sha256", f"fnv64 {ph:016x}" in lines[7], f"prefix checksum line {lines[7]!r}, computed {ph:016x}")
    pass_line("sha256", lines, fnv64_u64(h, ph))


# ------------------------------------------------------------------ sort
def sort(lines):
    n = 10000
    x = 0x9E3779B97F4A7C15
    a = []
    for _ in range(n):
        x ^= (x << 13) & M64
        x ^= x >> 7
        x ^= (x << 17) & M64
        a.append(x)
    qs_calls = 0
    qs_max_depth = 0

    def quicksort(v, lo, hi, depth):
        nonlocal qs_calls, qs_max_depth
        qs_calls += 1
        qs_max_depth = max(qs_max_depth, depth)
        while hi - lo >= 16:
            mid = lo + (hi - lo) // 2
            if v[mid] < v[lo]:
                v[mid], v[lo] = v[lo], v[mid]
            if v[hi] < v[lo]:
                v[hi], v[lo] = v[lo], v[hi]
            if v[hi] < v[mid]:
                v[hi], v[mid] = v[mid], v[hi]
            pivot = v[mid]
            i, j = lo, hi
            while i <= j:
                while v[i] < pivot:
                    i += 1
                while v[j] > pivot:
                    j -= 1
                if i <= j:
                    v[i], v[j] = v[j], v[i]
                    i += 1
                    j -= 1
            if j - lo < hi - i:
                quicksort(v, lo, j, depth + 1)
                lo = i
            else:
                quicksort(v, i, hi, depth + 1)
                hi = j

    quicksort(list(a), 0, n - 1, 0)
    merges = 0

    def mergesort(v):
        nonlocal merges
        if len(v) < 2:
            return v
        h = len(v) // 2
        left, right = mergesort(v[:h]), mergesort(v[h:])
        out, i, j = [], 0, 0
        while i < len(left) and j < len(right):
            merges += 1
            if right[j] < left[i]:
                out.append(right[j])
                j += 1
            else:
                out.append(left[i])
                i += 1
        return out + left[i:] + right[j:]

    su = sorted(a)
    check("sort", mergesort(a) == su, "merge sort model")
    ss = sorted(s64(v) for v in a)
    neg = sum(1 for v in ss if v < 0)
    eq = sum(1 for i in range(1, n) if su[i - 1] == su[i])
    want = [
        f"input[0..2] = {a[0]:016x} {a[1]:016x} {a[2]:016x}",
        "unsigned: quicksort == merge sort, ordered, same multiset",
        "signed:   quicksort == merge sort, ordered, same multiset",
        f"quicksort calls {qs_calls}, max depth {qs_max_depth}; merge comparisons {merges}",
        f"equal neighbours {eq}, negative as signed {neg}",
        f"unsigned min {su[0]:016x} median {su[n // 2]:016x} max {su[-1]:016x}",
        f"signed   min {ss[0]} max {ss[-1]}",
        f"multiset sum {sum(a) & M64:016x} xor {xor_all(a):016x} sumsq {sum(v * v for v in a) & M64:016x}",
    ]
    check("sort", lines[1:-1] == want, f"lines differ:\n{lines[1:-1]}\n{want}")
    h = fnv64(FNV_INIT, b"".join(struct.pack("<Q", v) for v in su))
    h = fnv64(h, b"".join(struct.pack("<q", v) for v in ss))
    pass_line("sort", lines, h)


def xor_all(a):
    r = 0
    for v in a:
        r ^= v
    return r


# ------------------------------------------------------------------ format
def c_int_format(fmt, v):
    """The few C conversions format.c uses, through Python's % where they agree."""
    m = re.fullmatch(r"%([-+ #0]*)(\d*)(?:\.(\d+))?ll([diuxXo])", fmt)
    flags, width, prec, conv = m.groups()
    if "#" in flags:
        body = {"x": f"{v:x}", "X": f"{v:X}", "o": f"{v:o}"}[conv]
        prefix = "" if v == 0 else {"x": "0x", "X": "0X", "o": "0"}[conv]
        return prefix + body
    if prec == "0" and v == 0:
        return " " * int(width or 0)
    pyconv = "d" if conv in "diu" else conv
    return ("%" + flags + width + ("." + prec if prec else "") + pyconv) % v


def format_(lines):
    groups = [
        (8, [0x00, 0x01, 0x2A, 0x7F, 0x80, 0x81, 0xD6, 0xFF]),
        (16, [0x0000, 0x0001, 0x3039, 0x7FFF, 0x8000, 0xCFC7, 0xFFFF]),
        (32, [0, 1, 0x075BCD15, 0x7FFFFFFF, 0x80000000, 0xDEADBEEF, 0xFFFFFFFE, 0xFFFFFFFF]),
        (64, [0, 1, 0x0123456789ABCDEF, 0x0DE0B6B3A7640000, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000,
              0x8000000000000001, 0x8AC7230489E80000, 0xFEDCBA9876543210, 0xFFFFFFFFFFFFFFFE,
              0xFFFFFFFFFFFFFFFF]),
    ]
    want = []
    h = FNV_INIT
    for width, values in groups:
        for u in values:
            s = u - (1 << width) if u >> (width - 1) else u
            line = "i%-2u %-21s u%-2u %-20s x %-16s X %-16s o %s" % (width, s, width, u, f"{u:x}", f"{u:X}", f"{u:o}")
            want.append(line)
            h = fnv64(h, line.encode())
    want.append("widths, flags and precision:")
    i64min, i64max, u64max = -(1 << 63), (1 << 63) - 1, M64
    for fmt, v in [("%25lld", i64min), ("%-25lld", i64min), ("%025lld", i64min), ("%+lld", i64max),
                   ("% lld", 42), ("%+lld", 0), ("%.5lld", -42), ("%8.3lld", 7), ("%-8.3lld", -7),
                   ("%#llx", u64max), ("%#llo", u64max), ("%#llX", 0xABCDEF), ("%#llx", 0),
                   ("%025llu", u64max), ("%.0llu", 0), ("%20.18llx", 0xBEEF)]:
        out = c_int_format(fmt, v)
        want.append("%-8s [%s]" % (fmt, out))
        h = fnv64(h, out.encode())
    want.append('snprintf into 8 bytes: "-922337", returned 20')
    check("format", lines[1:-1] == want, "lines differ: " + "; ".join(
        f"{g!r} != {w!r}" for g, w in zip(lines[1:-1], want) if g != w))
    pass_line("format", lines, h)


# ------------------------------------------------------------------ recursion
def recursion(lines):
    sys.setrecursionlimit(10000)
    h = FNV_INIT
    out = []

    def ack(m, n, depth, st):
        st[0] += 1
        st[1] = max(st[1], depth)
        if m == 0:
            return n + 1
        if n == 0:
            return ack(m - 1, 1, depth + 1, st)
        return ack(m - 1, ack(m, n - 1, depth + 1, st), depth + 1, st)

    results = []
    for n in (0, 5, 10):
        st = [0, 0]
        results.append((f"ackermann(2, {n})", ack(2, n, 1, st), st[0], st[1]))
    for n in range(1, 6):
        st = [0, 0]
        results.append((f"ackermann(3, {n})", ack(3, n, 1, st), st[0], st[1]))
    results.append(("sum_to(100000)", 100000 * 100001 // 2, 100001, 100001))
    results.append(("is_even(50000)", 1, 50001, 50001))
    results.append(("is_odd(50001)", 1, 50002, 50002))
    big = sum(((31 * n + i) & 255) for n in range(10000) for i in range(0, 256, 16))
    results.append(("big_frames(9999)", big, 10000, 10000))

    fib_calls = [0]

    def fib(k):
        fib_calls[0] += 1
        return k if k < 2 else fib(k - 1) + fib(k - 2)

    results.append(("fib(22)", fib(22), fib_calls[0], 22))
    moves = [0, 0]  # count, hash

    def hanoi(k, a, b, c):
        if k:
            hanoi(k - 1, a, c, b)
            moves[0] += 1
            moves[1] = (moves[1] * 31 + a * 3 + b) & M64
            hanoi(k - 1, c, b, a)

    hanoi(14, 0, 2, 1)
    results.append(("hanoi(14) moves", moves[0], 2 ** 15 - 1, 15))
    for i, (what, value, calls, depth) in enumerate(results):
        line = lines[1 + i]
        m = re.match(r"(.{22}) = (\d+)\s+calls (\d+)\s+max depth (\d+)\s+stack \d+ bytes$", line)
        check("recursion", m is not None and (m.group(1).rstrip(), int(m.group(2)), int(m.group(3)), int(m.group(4)))
              == (what, value, calls, depth), f"{line!r} != {(what, value, calls, depth)}")
        for v in (value, calls, depth):
            h = fnv64_u64(h, v)
    check("recursion", lines[1 + len(results)] == f"hanoi(14) move hash {moves[1]:016x}", "hanoi hash")
    h = fnv64_u64(h, moves[1])
    pass_line("recursion", lines, h)


# ------------------------------------------------------------------ div64
def div64(lines):
    h = FNV_INIT
    counted = 0
    for line in lines[1:-1]:
        h = fnv64(h, line.encode())
        m = re.fullmatch(r"([us])(8|16|32|64) +(-?\d+) / (-?\d+) = (-?\d+) rem (-?\d+)", line)
        if m:
            sign, bits, a, b, q, r = m.group(1), int(m.group(2)), *map(int, m.groups()[2:])
            lo, hi = (0, 1 << bits) if sign == "u" else (-(1 << (bits - 1)), 1 << (bits - 1))
            dividend_bits = bits * 2 if bits <= 16 else bits
            check("div64", (q, r) == tdiv(a, b), f"{line!r}: expected {tdiv(a, b)}")
            check("div64", lo <= q < hi and b != 0, f"{line!r}: quotient out of range")
            check("div64", -(1 << dividend_bits) <= a < (1 << dividend_bits), f"{line!r}: dividend")
            counted += 1
            continue
        m = re.fullmatch(r"u128 0x([0-9a-f]{32}) / 0x([0-9a-f]+) = 0x([0-9a-f]+) rem 0x([0-9a-f]+)", line)
        if m:
            n, d, q, r = (int(g, 16) for g in m.groups())
            check("div64", (q, r) == divmod(n, d), f"{line!r}: expected {divmod(n, d)}")
            counted += 1
            continue
        m = re.fullmatch(r"u128 \(x << 36\) \+ \(x >> 44\) - x = 0x([0-9a-f]{32})", line)
        if m:
            x = (0x0123456789ABCDEF << 64) | 0xFEDCBA9876543210
            M128 = (1 << 128) - 1
            y = (((x << 36) & M128) + (x >> 44) - x) & M128
            check("div64", int(m.group(1), 16) == y, f"{line!r}: expected {y:032x}")
            continue
        check("div64", line.endswith("#DE caught, fault RIP ok, RAX/RDX kept") or line == "#DE count 10"
              or line == "division by constants agrees with DIV/IDIV: 0 mismatches", f"unexpected line {line!r}")
    check("div64", counted == 72 + 109 + 42 + 41 + 6 + 9 + 4, f"{counted} division lines")
    pass_line("div64", lines, h)


# ------------------------------------------------------------------ setjmp
def setjmp(lines):
    acc = 0x1234
    for depth in range(1, 1001):
        acc = (acc * 6364136223846793005 + depth) & M64
    esc = (acc & 0x7FFF) | 1

    def checked_div(a, b):
        if b == 0:
            raise Thrown(100 + a)
        return tdiv(a, b)[0]

    class Thrown(Exception):
        def __init__(self, code):
            self.code = code

    def inner(x, a):
        try:
            return checked_div(a, x)
        except Thrown as t:
            if t.code & 1:
                raise Thrown(t.code + 1000)
            return -t.code

    def outer(x):
        try:
            return inner(x, 1000) + inner(x + 1, 999)
        except Thrown as t:
            return 1000000 + t.code

    loop = 0
    for v in range(101):
        loop = (loop * 31 + v) & M64
    want = [f"escape from depth 1000: setjmp returned {esc}, after 1 jump(s)"]
    want += [f"outer({x}) = {outer(x)}" for x in range(-2, 3)]
    want += ["longjmp(env, 0): setjmp returned 1 on round 2",
             f"100 longjmps back to one setjmp: v=100 acc={loop:016x}",
             "callee-saved registers after a clobbering longjmp: restored"]
    check("setjmp", lines[1:-1] == want, f"lines differ:\n{lines[1:-1]}\n{want}")
    h = FNV_INIT
    for line in want:
        h = fnv64(h, line.encode())
    pass_line("setjmp", lines, h)


# ------------------------------------------------------------------ usermode
def usermode(lines):
    body = "".join(line + "\n" for line in lines[1:-1])
    for needle in ["user: running at CPL 3, arg 7, IF=0 IOPL=0",
                   "user: counter via SYSCALL 1 2 3, via INT 0x80 4",
                   "user: DF before SYSCALL 1, after SYSRET 1; kernel saw DF=0 IF=0",
                   "user: write(kernel address) returned -14",
                   "kernel: user program exited with 42, counter 4"]:
        check("usermode", needle + "\n" in body, f"missing {needle!r}")
    faults = re.findall(r"kernel: user fault (#\w+) error (0x[0-9a-f]+)", body)
    check("usermode", faults == [("#PF", "0x5"), ("#PF", "0x7"), ("#PF", "0x4"), ("#PF", "0x5"), ("#PF", "0x6"),
                                 ("#GP", "0x0"), ("#GP", "0x0"), ("#GP", "0x0"), ("#GP", "0x0")], f"faults {faults}")
    pass_line("usermode", lines, fnv64(FNV_INIT, body.encode()))


# ------------------------------------------------------------------ demand
def demand(lines):
    region, pages = 0x80000000, 4096
    h = FNV_INIT
    reports = [(2048, 2048, 0, 0, 2048, 0, 2048, 0), (6144, 2048, 2048, 2048, 4096, 4096, 4096, 4096),
               (6144, 2048, 2048, 2048, 4096, 4096, 4096, 4096), (6160, 2064, 2048, 2048, 4096, 4080, 4096, 4080)]
    total = 0
    for p in range(pages):
        for off in range(0, 4096, 64):
            va = region + (p << 12) + off
            total += ((va * 0x9E3779B97F4A7C15) & M64) ^ (va >> 17)
    for i, r in enumerate(reports[:3]):
        h = fnv64(h, struct.pack("<8Q", *r))
    h = fnv64_u64(h, total & M64)
    h = fnv64(h, struct.pack("<8Q", *reports[3]))
    h = fnv64_u64(h, 4121)
    text = "\n".join(lines)
    for i, r in enumerate(reports):
        want = ("pass %d:  faults %5d (read/not-present %4d, write/not-present %4d, write/read-only %4d); "
                "PTEs present %4d writable %4d accessed %4d dirty %4d") % (i + 1, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7])
        check("demand", want in lines, f"missing {want!r}")
    check("demand", f"verified 524288 words, 0 wrong, sum {total & M64:016x}" in text, "sum line")
    check("demand", "frames allocated: 4121 (9 for page tables), CR2 mismatches 0" in text, "frames line")
    pass_line("demand", lines, h)


# ------------------------------------------------------------------ bench
def bench(lines):
    m = re.search(r"iterations (\d+)$", lines[0])
    iterations = int(m.group(1))
    h = FNV_INIT
    for it in range(iterations):
        x = ((0x9E3779B97F4A7C15 * (it + 1)) & M64) | 1
        words64 = []
        for _ in range(8192):
            x ^= x >> 12
            x ^= (x << 25) & M64
            x ^= x >> 27
            words64.append((x * 0x2545F4914F6CDD1D) & M64)
        buf = struct.pack("<8192Q", *words64)
        crc = zlib.crc32(buf)
        limit = 1000000 + (it % 16) * 1024
        sieve = bytearray([1]) * limit
        sieve[0:2] = b"\0\0"
        for i in range(2, int(limit ** 0.5) + 1):
            if sieve[i]:
                sieve[i * i::i] = bytes(len(range(i * i, limit, i)))
        primes = sum(sieve)
        w32 = struct.unpack("<16384I", buf)
        keys = sorted(w32[i] ^ (w32[(i * 7) & 16383] >> 3) for i in range(16384))
        srt = 0
        for k in keys[1:]:
            srt = (srt * 31 + k) & M64
        mix = 0
        for v in words64:
            v |= 1
            lz = 64 - v.bit_length()
            t = (v >> 1) | (1 << 63)
            tz = (t & -t).bit_length() - 1
            bs = int.from_bytes(v.to_bytes(8, "little"), "big")
            y = mix ^ bs
            r = (lz + tz) & 63
            mix = ((((y << r) | (y >> ((64 - r) & 63))) & M64) + lz * 3 + tz) & M64
        want = f"iteration {it + 1}: crc32 {crc:08x}, primes below {limit}: {primes}, sorted {srt:016x}, mix {mix:016x}"
        check("bench", lines[1 + it] == want, f"{lines[1 + it]!r} != {want!r}")
        h = fnv64(h, struct.pack("<5Q", crc, primes, srt, mix, it))
    pass_line("bench", lines, h)


CHECKS = {"sha256": sha256, "sort": sort, "format": format_, "recursion": recursion, "div64": div64,
          "setjmp": setjmp, "usermode": usermode, "demand": demand, "bench": bench}


def main():
    images = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "images")
    for name, fn in CHECKS.items():
        with open(os.path.join(images, name + ".expected"), encoding="ascii") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        before = len(failures)
        fn(lines)
        print(f"crosscheck {name}: {'ok' if len(failures) == before else 'FAILED'}")
    for f in failures:
        print("  " + f, file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
