/*
 * elf32-i386 Multiboot (v1) fixture: no PVH note, a Multiboot header at the start of .text,
 * linked at virtual 0xC0200000 and loaded at physical 2 MiB; entered at e_entry translated to
 * its physical address (as GRUB does), EAX = 0x2BADB002, EBX = multiboot_info. Prints the
 * command line from multiboot_info.cmdline and exits 0.
 */
#include "common.inc"
#define KERNEL_OFFSET 0xc0000000
#define PA(sym) ((sym) - KERNEL_OFFSET)
#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x00000003                     /* page-align modules, memory information */

        .section .text, "ax", @progbits
        .p2align 2
        .long   MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
        .code32
        .globl  _start
_start:
        cmpl    $0x2badb002, %eax
        jne     fail
        testl   $4, (%ebx)                      /* MULTIBOOT_INFO_CMDLINE */
        jz      fail
        print32 $PA(msg), $(msg_end - msg)
        movl    16(%ebx), %esi                  /* multiboot_info.cmdline */
        printz32 %esi
        print32 $PA(nl), $1
        exit32  $0
fail:
        exit32  $1

        .section .rodata, "a", @progbits
msg:    .ascii  "elf32-i386 Multiboot: EAX magic, e_entry at its p_paddr; cmdline: "
msg_end:
nl:     .ascii  "\n"
