/*
 * x86-32 guests: PVH entry in 32-bit protected mode, and the exception stubs of their IDT.
 *
 * The loader enters at the XEN_ELFNOTE_PHYS32_ENTRY address in flat 32-bit protected mode with
 * paging off and interrupts off, EBX = struct hvm_start_info (xen/arch-x86/hvm/start_info.h).
 * This file sets up the stack, zeroes .bss and calls kmain32(start_info); the program stays in
 * 32-bit protected mode (no long mode) and builds its own GDT, TSS, IDT and page tables in C.
 *
 * Each stub x86_32_isr<N> pushes a zero in place of the error code for vectors without one,
 * then the vector, saves the general-purpose registers (in PUSHA's layout) and calls x86_32_trap(frame);
 * the handler may change the frame (EIP) before the IRET.
 */
#define XEN_ELFNOTE_PHYS32_ENTRY 18   /* xen/elfnote.h */

        .section .note.Xen, "a", @note
        .p2align 2
        .long   2f - 1f
        .long   4f - 3f
        .long   XEN_ELFNOTE_PHYS32_ENTRY
1:      .asciz  "Xen"
2:      .p2align 2
3:      .long   _start
4:      .p2align 2

        .section .text.boot, "ax", @progbits
        .code32
        .globl  _start
_start:
        cld
        movl    $stack_top, %esp
        movl    %ebx, %esi
        movl    $__bss_start, %edi
        movl    $__bss_end, %ecx
        subl    %edi, %ecx
        xorl    %eax, %eax
        rep stosb
        pushl   %esi
        call    kmain32
        /* kmain32 returns the exit code */
        movw    $0xf4, %dx
        outl    %eax, %dx
1:      hlt
        jmp     1b

        .text
/* Vectors whose exceptions push an error code (SDM Table 6-1): 8, 10-14, 17, 21. */
#define ISR_NOERR(n) .globl x86_32_isr##n; x86_32_isr##n: pushl $0; pushl $n; jmp isr_common
#define ISR_ERR(n)   .globl x86_32_isr##n; x86_32_isr##n: pushl $n; jmp isr_common
ISR_NOERR(0)
ISR_NOERR(1)
ISR_NOERR(2)
ISR_NOERR(3)
ISR_NOERR(4)
ISR_NOERR(5)
ISR_NOERR(6)
ISR_NOERR(7)
ISR_ERR(8)
ISR_NOERR(9)
ISR_ERR(10)
ISR_ERR(11)
ISR_ERR(12)
ISR_ERR(13)
ISR_ERR(14)
ISR_NOERR(16)
ISR_ERR(17)
ISR_NOERR(48)
ISR_NOERR(128)

isr_common:
        /* The PUSHA layout, pushed one register at a time (EAX, ECX, EDX, EBX, a slot for ESP, EBP, ESI, EDI). */
        pushl   %eax
        pushl   %ecx
        pushl   %edx
        pushl   %ebx
        pushl   $0
        pushl   %ebp
        pushl   %esi
        pushl   %edi
        pushl   %esp
        call    x86_32_trap
        addl    $4, %esp
        popl    %edi
        popl    %esi
        popl    %ebp
        addl    $4, %esp
        popl    %ebx
        popl    %edx
        popl    %ecx
        popl    %eax
        addl    $8, %esp                /* vector and error code */
        iret

/* Run `fn` at CPL 3 on `stack`: IRET to user code segment 0x1b, stack segment 0x23. */
        .globl  x86_32_enter_user
x86_32_enter_user:
        movl    4(%esp), %eax           /* fn */
        movl    8(%esp), %ecx           /* user stack top */
        movw    $0x23, %dx
        movw    %dx, %ds
        movw    %dx, %es
        pushl   $0x23
        pushl   %ecx
        pushfl
        pushl   $0x1b
        pushl   %eax
        iret

        .section .bss, "aw", @nobits
        .p2align 12
        .skip   0x4000
stack_top:
