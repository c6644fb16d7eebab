#!/bin/sh
# Regenerates images/kernel-<workload>.expected: the reference kernel's console (COM1) under QEMU
# (scripts/qemu.sh with QEMU_CONSOLE=serial, -cpu max, a scratch 8 MiB raw disk as the primary
# IDE master) for each workload at its default parameters, refusing any run whose exit code is
# not 0. workload=nvme also gets a scratch 8 MiB raw disk behind QEMU's NVMe controller at
# 00:04.0 (QEMU_NVME), the slot vtlab assigns its NVMe controller to with pci = ["00:04.0"]. Then checks them against host-side computations (scripts/crosscheck-kernel.py).
#
#   scripts/kernel-expected.sh [check]     (check: compare instead of overwriting)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-write}
disk=$(mktemp)
trap 'rm -f "$disk" "$disk.out" "$disk.nvme"' EXIT INT TERM
status=0
for w in compute ptemod forkwait disk nvme; do
    truncate -s 0 "$disk"
    truncate -s 8M "$disk"
    nvme=""
    if [ "$w" = nvme ]; then
        nvme="$disk.nvme"
        truncate -s 0 "$nvme"
        truncate -s 8M "$nvme"
    fi
    if ! QEMU_CONSOLE=serial QEMU_CPU=max QEMU_DISK="$disk" QEMU_NVME="$nvme" \
        sh "$here/scripts/qemu.sh" "$here/images/kernel.elf" "workload=$w" > "$disk.out" 2>/dev/null; then
        echo "FAIL kernel-$w: guest did not exit with 0" >&2
        cat "$disk.out" >&2
        status=1
        continue
    fi
    if [ "$mode" = check ]; then
        if cmp -s "$disk.out" "$here/images/kernel-$w.expected"; then echo "ok   kernel-$w"; else echo "FAIL kernel-$w (output differs)"; status=1; fi
    else
        cp "$disk.out" "$here/images/kernel-$w.expected"
        echo "kernel-$w: $(tail -n 1 "$here/images/kernel-$w.expected")"
    fi
done
[ "$mode" = check ] || python3 "$here/scripts/crosscheck-kernel.py" "$here/images"
exit $status
