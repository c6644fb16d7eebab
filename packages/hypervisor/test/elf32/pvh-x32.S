/*
 * elf32-x86-64 ("x32" container) PVH fixture, the container Xen's own test kernels use: a 32-bit
 * PVH entry that switches to 64-bit mode on its own identity map and prints from 64-bit code.
 * Identity linked at 1 MiB.
 */
#include "common.inc"

        .section .note.Xen, "a", @note
        .p2align 2
        .long   4, 8, 18                        /* an 8-byte descriptor, as Linux's .quad note */
        .asciz  "Xen"
        .quad   _start

        .section .text, "ax", @progbits
        .code32
        .globl  _start
_start:
        cmpl    $0x336ec578, (%ebx)
        jne     fail32
        movl    %ebx, %ebp
        enter_long_mode $tables, gdtr, $long64
fail32:
        exit32  $1

        .code64
long64:
        print64 msg(%rip), $(msg_end - msg)
        movl    %ebp, %ebx
        movl    24(%rbx), %esi                  /* hvm_start_info.cmdline_paddr */
        printz32 %esi
        print64 nl(%rip), $1
        xorl    %eax, %eax
        outl    %eax, $DEBUG_EXIT_PORT
1:      hlt
        jmp     1b

        .section .rodata, "a", @progbits
msg:    .ascii  "elf32-x86-64 PVH: 32-bit entry at the note, now in 64-bit mode; cmdline: "
msg_end:
nl:     .ascii  "\n"
        .p2align 3
gdt:    .quad   0, 0x00af9a000000ffff           /* null, 64-bit code 0x08 */
gdtr:   .word   15
        .long   gdt

        .section .bss, "aw", @nobits
        .p2align 12
tables: .skip   3 * 4096
