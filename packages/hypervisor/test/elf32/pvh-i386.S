/*
 * elf32-i386 PVH fixture: linked at virtual 0xC0100000 and loaded at physical 1 MiB (p_vaddr !=
 * p_paddr, as a higher-half i386 kernel is), entered at the XEN_ELFNOTE_PHYS32_ENTRY address in
 * flat 32-bit protected mode with paging off, EBX = struct hvm_start_info. Checks the start-info
 * magic, the data segment and that .bss was zeroed, prints a line and the command line, exits 0.
 */
#include "common.inc"
#define KERNEL_OFFSET 0xc0000000
#define PA(sym) ((sym) - KERNEL_OFFSET)

        .section .note.Xen, "a", @note
        .p2align 2
        .long   4, 4, 18                        /* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz  "Xen"
        .long   PA(_start)

        .section .text, "ax", @progbits
        .code32
        .globl  _start
_start:
        cmpl    $0x336ec578, (%ebx)             /* XEN_HVM_START_MAGIC_VALUE */
        jne     fail
        cmpl    $0x5eed1386, PA(data_word)
        jne     fail
        movl    $PA(bss_start), %edi            /* every .bss byte must be zero */
1:      cmpb    $0, (%edi)
        jne     fail
        incl    %edi
        cmpl    $PA(bss_end), %edi
        jne     1b
        print32 $PA(msg), $(msg_end - msg)
        movl    24(%ebx), %esi                  /* hvm_start_info.cmdline_paddr (low half) */
        printz32 %esi
        print32 $PA(nl), $1
        exit32  $0
fail:
        exit32  $1

        .section .rodata, "a", @progbits
msg:    .ascii  "elf32-i386 PVH: loaded at p_paddr, entered at the note, .bss zero; cmdline: "
msg_end:
nl:     .ascii  "\n"

        .section .data, "aw", @progbits
data_word:
        .long   0x5eed1386

        .section .bss, "aw", @nobits
bss_start:
        .skip   0x2000
bss_end:
