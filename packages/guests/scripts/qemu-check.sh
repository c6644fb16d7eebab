#!/bin/sh
# Reruns every guest image under QEMU (the independent reference that produced images/*.expected)
# and compares the console output byte for byte. Needs qemu-system-x86_64
# (Debian: apt-get install qemu-system-x86). Exit status 0 when every image matches.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 not found (apt-get install qemu-system-x86)" >&2; exit 2; }
status=0
for elf in "$here"/images/*.elf; do
  name=$(basename "$elf" .elf)
  [ "$name" = kernel ] && continue   # the reference kernel: checked below, one run per workload
  [ "$name" = xentest ] && continue  # a Xen guest: QEMU is no Xen (its expected output is computed on the host)
  out=$(mktemp)
  if sh "$here/scripts/qemu.sh" "$elf" > "$out" && cmp -s "$out" "$here/images/$name.expected"; then
    echo "ok   $name"
  else
    echo "FAIL $name (output or exit status differs from images/$name.expected)"
    status=1
  fi
  rm -f "$out"
done
sh "$here/scripts/kernel-expected.sh" check || status=1
exit $status
