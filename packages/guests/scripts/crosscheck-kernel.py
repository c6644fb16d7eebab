#!/usr/bin/env python3
"""Checks the reference kernel's expected console outputs (images/kernel-<workload>.expected)
against host-side recomputations: the compute processes' checksums, the ptemod and forkwait
checksums (pids are assigned in fork order: init is 1, its children 2, 3, ...), and the disk
pattern's FNV-1a (one step per qword). Each workload at its default parameters.

The Xen PV workloads cannot run under QEMU (no Xen), so their expected outputs are computed
here and only here: `pvdisk` folds the disk pattern exactly as `disk` does (so its checksum is
the disk checksum by construction), `net` (role=ping and role=pong, count=10) folds each ICMP
echo payload and its sequence number. `--write` writes those three files instead of checking.

    scripts/crosscheck-kernel.py [--write] [IMAGES_DIR [NAME...]]
"""
import os
import struct
import sys

M = (1 << 64) - 1
FNV_INIT = 0xCBF29CE484222325
failures = []


def fnv(h, v):
    for b in struct.pack("<Q", v & M):
        h = ((h ^ b) * 0x100000001B3) & M
    return h


def xorshift(x):
    x ^= (x << 13) & M
    x ^= x >> 7
    x ^= (x << 17) & M
    return x


def compute_one(seed, iterations):
    x = (seed * 0x9E3779B97F4A7C15 + 1) & M
    table = [0] * 1024
    for i in range(1024):
        x = xorshift(x)
        table[i] = x & 0xFFFFFFFF
    h = seed
    for i in range(iterations):
        x = xorshift(x)
        j = x & 1023
        table[j] = (table[j] + (((x >> 32) ^ i) & 0xFFFFFFFF)) & 0xFFFFFFFF
        h = ((h ^ table[j]) * 0x100000001B3) & M
        h = ((((h << 5) | (h >> 59)) & M) + i) & M
    for i in range(1024):
        h = (h * 31 + table[i]) & M
    return h


def splitmix(x):
    x = (x + 0x9E3779B97F4A7C15) & M
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M
    return x ^ (x >> 31)



def compute():
    procs, iterations = 4, 1000000
    lines = [f"compute: {procs} processes x {iterations} iterations"]
    h = FNV_INIT
    for i in range(procs):
        r = compute_one(i + 1, iterations)
        lines.append(f"compute: process {i} (pid {i + 2}) checksum {r:016x}")
        h = fnv(h, r)
    lines.append("compute: parent's recomputation of process 0 agrees")
    return lines, h


def ptemod():
    iterations, pages = 1000, 64
    h = FNV_INIT
    for it in range(iterations):
        for p in range(pages):
            h = fnv(h, (it << 32) ^ ((p * 0x9E3779B97F4A7C15) & M))
    n = iterations * pages
    return [f"ptemod: {iterations} iterations x {pages} pages",
            f"ptemod: {n} pages mapped on demand and unmapped ({2 * n} PTE writes), every page read zero when mapped"], h


def forkwait():
    forks, pages = 1000, 16
    h = FNV_INIT
    for i in range(forks):
        pid = i + 2
        h = fnv(fnv(h, pid), pid * 3 + 1)
    return [f"forkwait: {forks} forks, {pages} shared heap pages",
            f"forkwait: {forks} children forked, exited and reaped; the parent's pages are intact"], h


def disk():
    mib, sectors = 2, 4096
    h = FNV_INIT
    for lba in range(sectors):
        for k in range(64):
            h = ((h ^ splitmix((lba << 6) | k)) * 0x100000001B3) & M   # FNV-1a over whole qwords
    return [f"disk: {mib} MiB ({sectors} sectors) from lba 0, multiple 8",
            f"disk: wrote {sectors} sectors (WRITE SECTORS then WRITE MULTIPLE)",
            f"disk: read back {sectors} sectors (READ MULTIPLE then READ SECTORS), all match"], h


def pvdisk():
    mib, sectors = 2, 4096
    _, h = disk()
    return [f"pvdisk: {mib} MiB ({sectors} sectors) from sector 0 through blkfront",
            f"pvdisk: wrote {sectors} sectors",
            f"pvdisk: read back {sectors} sectors, all match"], h


def net_sum(count):
    h = FNV_INIT
    for seq in range(count):
        for k in range(56):   # payload_byte(seq, k) in kernel.c
            h = ((h ^ ((seq * 31 + k * 7 + 0x5A) & 0xFF)) * 0x100000001B3) & M
        h = fnv(h, seq)
    return h


def net_ping():
    count = 10
    return [f"net: ping, 10.0.0.1, {count} ICMP echo requests",
            "net: ARP: 10.0.0.2 resolved",
            f"net: {count} echo replies, payloads and checksums verified"], net_sum(count)


def net_pong():
    count = 10
    return [f"net: pong, 10.0.0.2, {count} ICMP echo requests",
            f"net: answered {count} echo requests"], net_sum(count)


# expected-file suffix -> (workload name on the console, host computation)
WORKLOADS = {"compute": ("compute", compute), "ptemod": ("ptemod", ptemod), "forkwait": ("forkwait", forkwait),
             "disk": ("disk", disk), "pvdisk": ("pvdisk", pvdisk), "net-ping": ("net", net_ping),
             "net-pong": ("net", net_pong)}
PV_ONLY = ["pvdisk", "net-ping", "net-pong"]


def main():
    args = sys.argv[1:]
    write = bool(args) and args[0] == "--write"
    if write:
        args = args[1:]
    images = args[0] if args else os.path.join(os.path.dirname(__file__), "..", "images")
    only = args[1:] or (PV_ONLY if write else list(WORKLOADS))
    for name in only:
        workload, fn = WORKLOADS[name]
        body, h = fn()
        want = "\n".join([f"vtlab reference kernel: workload={workload}", *body, f"PASS {workload} {h:016x}", ""])
        path = os.path.join(images, f"kernel-{name}.expected")
        if write:
            if name not in PV_ONLY:
                sys.exit(f"{name}: its expected output comes from QEMU (scripts/kernel-expected.sh)")
            with open(path, "w", encoding="ascii") as f:
                f.write(want)
            print(f"wrote kernel-{name}.expected: PASS {workload} {h:016x}")
            continue
        with open(path, encoding="ascii") as f:
            got = f.read()
        ok = got == want
        if not ok:
            failures.append(f"kernel-{name}.expected:\n{got}\n!= host:\n{want}")
        print(f"crosscheck kernel-{name}: {'ok' if ok else 'FAILED'}")
    for f in failures:
        print("  " + f, file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
