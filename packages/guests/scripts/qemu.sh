#!/bin/sh
# Runs one guest image under QEMU (TCG, the reference used for images/*.expected) and prints
# its console to stdout. Exits with the guest's exit code (the value it wrote to port 0xF4;
# QEMU itself exits with (code << 1) | 1), or 125 if QEMU ended any other way.
#
#   scripts/qemu.sh IMAGE.elf [CMDLINE]
#
# Environment (all optional; the defaults are what the nine test programs use):
#   QEMU_CONSOLE  debugcon (default: bytes written to port 0xE9) or serial (COM1, a 16550 UART;
#                 the reference kernel's console)
#   QEMU_DISK     a raw disk image attached as the primary IDE master (-drive if=ide,index=0)
#   QEMU_NVME     a raw disk image behind an NVMe controller at 00:04.0 (-device nvme, serial
#                 vtlab: the slot vtlab's `pci = ["00:04.0"]` gives the assigned controller)
#   QEMU_CPU      the -cpu model (default qemu64)
#   QEMU_MEM      the -m size (default 256)
#   QEMU_TIMEOUT  seconds before giving up (default 300)
set -u
image=$1
cmdline=${2:-}
out=$(mktemp)
trap 'rm -f "$out"' EXIT INT TERM
case "${QEMU_CONSOLE:-debugcon}" in
    debugcon) console="-serial none -debugcon file:$out" ;;
    # sercon-port 0: SeaBIOS does not mirror its own (and iPXE's) messages to COM1
    serial) console="-serial file:$out -fw_cfg name=etc/sercon-port,string=0" ;;
    *) echo "QEMU_CONSOLE must be debugcon or serial" >&2; exit 2 ;;
esac
disk=""
[ -n "${QEMU_DISK:-}" ] && disk="-drive file=${QEMU_DISK},format=raw,if=ide,index=0"
[ -n "${QEMU_NVME:-}" ] && disk="$disk -drive file=${QEMU_NVME},if=none,id=nv0,format=raw -device nvme,drive=nv0,serial=vtlab,addr=04.0"
# shellcheck disable=SC2086
timeout "${QEMU_TIMEOUT:-300}" qemu-system-x86_64 \
    -accel tcg -cpu "${QEMU_CPU:-qemu64}" -m "${QEMU_MEM:-256}" -nographic -no-reboot \
    -display none -monitor none $console $disk \
    -kernel "$image" -append "$cmdline" \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04
status=$?
cat "$out"
if [ $((status & 1)) -eq 1 ] && [ "$status" -lt 256 ]; then
    exit $((status >> 1))
fi
echo "qemu ended with status $status (no isa-debug-exit write)" >&2
exit 125
