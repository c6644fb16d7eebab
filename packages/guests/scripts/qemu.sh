#!/bin/sh
# Runs one guest image under QEMU (TCG, the reference used for images/*.expected) and prints
# its console (port 0xE9) to stdout. Exits with the guest's exit code (the value it wrote to
# port 0xF4; QEMU itself exits with (code << 1) | 1), or 125 if QEMU ended any other way.
#
#   scripts/qemu.sh IMAGE.elf [CMDLINE]
set -u
image=$1
cmdline=${2:-}
out=$(mktemp)
trap 'rm -f "$out"' EXIT INT TERM
timeout "${QEMU_TIMEOUT:-300}" qemu-system-x86_64 \
    -accel tcg -cpu qemu64 -m 256 -nographic -no-reboot \
    -display none -serial none -monitor none \
    -kernel "$image" -append "$cmdline" \
    -debugcon "file:$out" \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04
status=$?
cat "$out"
if [ $((status & 1)) -eq 1 ] && [ "$status" -lt 256 ]; then
    exit $((status >> 1))
fi
echo "qemu ended with status $status (no isa-debug-exit write)" >&2
exit 125
