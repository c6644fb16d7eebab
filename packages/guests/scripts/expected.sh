#!/bin/sh
# Regenerates images/<name>.expected: each image's console output under QEMU (scripts/qemu.sh,
# default command line), after checking that the guest exited with code 0. Then checks the
# outputs against host-side computations (scripts/crosscheck.py). The reference kernel's come from
# scripts/kernel-expected.sh; xentest's (a Xen guest, which QEMU cannot run) are computed on the
# host by scripts/xentest-expected.py.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
for image in "$here"/images/*.elf; do
    name=$(basename "$image" .elf)
    [ "$name" = kernel ] && continue   # the reference kernel: scripts/kernel-expected.sh below
    [ "$name" = xentest ] && continue  # needs Xen, not QEMU: scripts/xentest-expected.py below
    if ! "$here/scripts/qemu.sh" "$image" > "$here/images/$name.expected.tmp"; then
        echo "$name: guest did not exit with 0" >&2
        cat "$here/images/$name.expected.tmp" >&2
        rm -f "$here/images/$name.expected.tmp"
        exit 1
    fi
    mv "$here/images/$name.expected.tmp" "$here/images/$name.expected"
    echo "$name: $(tail -n 1 "$here/images/$name.expected")"
done
python3 "$here/scripts/crosscheck.py" "$here/images"
sh "$here/scripts/kernel-expected.sh"
python3 "$here/scripts/xentest-expected.py" "$here/images"
