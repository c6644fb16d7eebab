#!/bin/sh
# Builds every vtlab guest image from packages/guests/c into an output directory
# (default: packages/guests/images). Deterministic: no debug info, no build id, no .comment,
# sources named by fixed relative paths; the same gcc and binutils give byte-identical images.
#
#   scripts/build.sh [OUTDIR] [NAME...]
#
# Besides the programs below, every c/hostile/NAME.c (the hostile guests the hypervisor's
# isolation tests run beside a well-behaved domain) is built with the runtime, -O2, into
# OUTDIR/hostile/NAME.elf; the name `hostile` selects all of them.
#
# Environment: CC (default gcc). Objects go to a temporary directory that is removed.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/images}
[ $# -gt 0 ] && shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
CC=${CC:-gcc}

CFLAGS="-ffreestanding -fno-pic -no-pie -mno-red-zone -mgeneral-regs-only \
-fno-stack-protector -fno-asynchronous-unwind-tables -fno-unwind-tables -fcf-protection=none \
-fno-ident -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -I runtime"
LDFLAGS="-nostdlib -static -no-pie -Wl,--build-id=none -Wl,-z,max-page-size=4096 \
-Wl,-z,noexecstack -Wl,--no-warn-rwx-segments"

RUNTIME="runtime/start.S runtime/traps.S runtime/string.S runtime/rt.c"

# name      optimisation  sources (relative to c/, comma-separated) besides the runtime
PROGRAMS='
sha256      -O2  sha256/sha256.c
sort        -Os  sort/sort.c
format      -O0  format/format.c
recursion   -O0  recursion/recursion.c
div64       -Os  div64/div64.c
setjmp      -O2  setjmp/setjmp.c,setjmp/setjmp_asm.S
usermode    -O2  usermode/usermode.c,usermode/usermode_asm.S,usermode/user.c
demand      -O2  demand/demand.c
bench       -O2  bench/bench.c
kernel      -O2  kernel/kernel.c,kernel/entry.S,kernel/user.c,kernel/xen/xen.c,kernel/xen/blkfront.c,kernel/xen/netfront.c,kernel/nvme.c,kernel/xen/hypercall.S
xentest     -O2  xentest/xentest.c,kernel/xen/hypercall.S
'

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

cd "$here/c"
echo "$PROGRAMS" | while read -r name opt srcs; do
    [ -n "$name" ] || continue
    if [ $# -gt 0 ]; then
        case " $* " in *" $name "*) ;; *) continue ;; esac
    fi
    mkdir -p "$tmp/$name"
    # the reference kernel has its own console (a 16550 UART) instead of the runtime's debugcon;
    # xentest writes its console with HYPERVISOR_console_io (and includes the Xen public headers
    # of Debian's libxen-dev, /usr/include/xen)
    extra=""
    [ "$name" = kernel ] && extra="-DRT_EXTERNAL_CONSOLE"
    [ "$name" = xentest ] && extra="-DRT_EXTERNAL_CONSOLE"
    objs=""
    for src in $RUNTIME $(echo "$srcs" | tr ',' ' '); do
        obj="$tmp/$name/$(basename "$src" | tr '.' '_').o"
        # shellcheck disable=SC2086
        $CC $opt $CFLAGS $extra -c -o "$obj" "$src"
        objs="$objs $obj"
    done
    ld_script=linker.ld
    [ -f "$name/$name.ld" ] && ld_script="$name/$name.ld"
    # shellcheck disable=SC2086
    $CC $LDFLAGS -Wl,-T,"$ld_script" -o "$out/$name.elf" $objs
    chmod 644 "$out/$name.elf"
    echo "built $name.elf ($opt)"
done

# The hostile guests: one C file each, with the runtime, -O2, the default linker script.
if [ $# -eq 0 ] || case " $* " in *" hostile "*) true ;; *) false ;; esac; then
    mkdir -p "$out/hostile"
    for src in hostile/*.c; do
        [ -f "$src" ] || continue
        name=$(basename "$src" .c)
        mkdir -p "$tmp/hostile-$name"
        objs=""
        for s in $RUNTIME "$src"; do
            obj="$tmp/hostile-$name/$(basename "$s" | tr '.' '_').o"
            # shellcheck disable=SC2086
            $CC -O2 $CFLAGS -c -o "$obj" "$s"
            objs="$objs $obj"
        done
        # shellcheck disable=SC2086
        $CC $LDFLAGS -Wl,-T,linker.ld -o "$out/hostile/$name.elf" $objs
        chmod 644 "$out/hostile/$name.elf"
        echo "built hostile/$name.elf (-O2)"
    done
fi

# The x86-32 guests: 32-bit protected-mode kernels (gcc -m32, elf32-i386) that stay out of long
# mode, one C file each with c/x86-32/entry.S and x86-32.h, into OUTDIR/x86-32/NAME.elf; the
# name `x86-32` selects all of them.
if [ $# -eq 0 ] || case " $* " in *" x86-32 "*) true ;; *) false ;; esac; then
    mkdir -p "$out/x86-32" "$tmp/x86-32"
    CFLAGS32="-m32 -O2 -ffreestanding -fno-pic -no-pie -mgeneral-regs-only -fno-stack-protector \
-fno-asynchronous-unwind-tables -fno-unwind-tables -fcf-protection=none -fno-ident -std=gnu11 \
-Wall -Wextra -Werror"
    $CC -m32 -c -o "$tmp/x86-32/entry.o" x86-32/entry.S
    for src in x86-32/*.c; do
        [ -f "$src" ] || continue
        name=$(basename "$src" .c)
        # shellcheck disable=SC2086
        $CC $CFLAGS32 -c -o "$tmp/x86-32/$name.o" "$src"
        # shellcheck disable=SC2086
        $CC -m32 $LDFLAGS -Wl,-T,x86-32/linker.ld -o "$out/x86-32/$name.elf" "$tmp/x86-32/entry.o" "$tmp/x86-32/$name.o"
        chmod 644 "$out/x86-32/$name.elf"
        echo "built x86-32/$name.elf (-m32 -O2)"
    done
fi
