#!/bin/sh
# Builds the ELF32 loader fixtures (test/elf32/*.elf) with GNU as, ld and objcopy: the sources
# are preprocessed with gcc -E, assembled with `as --32` (elf32-i386) or `as --x32`
# (elf32-x86-64), and linked with ld's elf_i386 / elf32_x86_64 emulations; multiboot-x32 is an
# ELF64 link converted with `objcopy -O elf32-x86-64`. No build id, no .comment: the output depends
# only on the sources and the binutils version recorded in PROVENANCE.md. The test needs no
# toolchain to boot the fixtures; test/elf32.test.ts reruns this script and compares the bytes.
#
#   test/elf32/build.sh [OUTDIR]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
mkdir -p "$out"
out=$(cd "$out" && pwd)
CC=${CC:-gcc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
cd "$here"
LDFLAGS="--build-id=none -z max-page-size=4096 -z noexecstack --no-warn-rwx-segments -nostdlib -static"

pp() { $CC -E -P -x assembler-with-cpp -o "$tmp/$1.s" "$1.S"; }

pp pvh-i386
as --32 -o "$tmp/pvh-i386.o" "$tmp/pvh-i386.s"
# shellcheck disable=SC2086
ld -m elf_i386 $LDFLAGS -T pvh-i386.ld -o "$out/pvh-i386.elf" "$tmp/pvh-i386.o"

pp multiboot-i386
as --32 -o "$tmp/multiboot-i386.o" "$tmp/multiboot-i386.s"
# shellcheck disable=SC2086
ld -m elf_i386 $LDFLAGS -T multiboot-i386.ld -o "$out/multiboot-i386.elf" "$tmp/multiboot-i386.o"

pp pvh-x32
as --x32 -o "$tmp/pvh-x32.o" "$tmp/pvh-x32.s"
# shellcheck disable=SC2086
ld -m elf32_x86_64 $LDFLAGS -T x32.ld -o "$out/pvh-x32.elf" "$tmp/pvh-x32.o"

pp multiboot-x32
as --64 -o "$tmp/multiboot-x32.o" "$tmp/multiboot-x32.s"
# shellcheck disable=SC2086
ld -m elf_x86_64 $LDFLAGS -T elf64.ld -o "$tmp/multiboot-x32.elf64" "$tmp/multiboot-x32.o"
objcopy -O elf32-x86-64 "$tmp/multiboot-x32.elf64" "$out/multiboot-x32.elf"

chmod 644 "$out"/*.elf
for f in pvh-i386 multiboot-i386 pvh-x32 multiboot-x32; do echo "built $f.elf"; done
