/*
 * Multiboot fixture linked as ELF64 at 3 MiB and converted with `objcopy -O elf32-x86-64`, the
 * way kernels that are 64-bit code in a 32-bit container (for Multiboot loaders that take only
 * ELF32) are made. Entered in 32-bit mode with the Multiboot magic; switches to 64-bit mode.
 */
#include "common.inc"
#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x00000003

        .section .multiboot, "a", @progbits
        .p2align 2
        .long   MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

        .section .text, "ax", @progbits
        .code32
        .globl  _start
_start:
        cmpl    $0x2badb002, %eax
        jne     fail32
        movl    %ebx, %ebp
        enter_long_mode $tables, gdtr, $long64
fail32:
        exit32  $1

        .code64
long64:
        print64 msg(%rip), $(msg_end - msg)
        movl    %ebp, %ebx
        movl    16(%rbx), %esi                  /* multiboot_info.cmdline */
        printz32 %esi
        print64 nl(%rip), $1
        xorl    %eax, %eax
        outl    %eax, $DEBUG_EXIT_PORT
1:      hlt
        jmp     1b

        .section .rodata, "a", @progbits
msg:    .ascii  "elf32-x86-64 Multiboot (objcopy of an ELF64 link): 64-bit mode; cmdline: "
msg_end:
nl:     .ascii  "\n"
        .p2align 3
gdt:    .quad   0, 0x00af9a000000ffff
gdtr:   .word   15
        .long   gdt

        .section .bss, "aw", @nobits
        .p2align 12
tables: .skip   3 * 4096
