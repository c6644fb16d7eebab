/* Every emulated MOV form, against a recording device at 0xFED00000 (RBX). */
        .include "prologue.S"
main:
        mov     $0xfed00000, %ebx
        mov     $0x1122334455667788, %rax
        mov     $0x5a, %esi
        mov     %al, 0x10(%rbx)                 /* 88 */
        mov     %ah, 0x11(%rbx)                 /* 88, AH */
        mov     %ax, 0x12(%rbx)                 /* 66 89 */
        mov     %eax, 0x14(%rbx)                /* 89 */
        mov     %rax, 0x18(%rbx)                /* 48 89 */
        mov     %sil, 0x20(%rbx)                /* 40 88 */
        movb    $0xa5, 0x21(%rbx)               /* C6 */
        movw    $0x1234, 0x22(%rbx)             /* 66 C7 */
        movl    $0x89abcdef, 0x24(%rbx)         /* C7 */
        movq    $-2, 0x28(%rbx)                 /* 48 C7, imm32 sign-extended */
        mov     $2, %ecx
        mov     %eax, 0x40(%rbx, %rcx, 4)       /* 89, SIB */
        mov     %rsp, 0x30(%rbx)                /* 48 89, RSP */
        movabs  %al, 0xfed00050                 /* A2 */
        movabs  %rax, 0xfed00058                /* 48 A3 */
        mov     0x18(%rbx), %r9                 /* 4C 8B */
        mov     $-1, %rcx
        mov     0x14(%rbx), %ecx                /* 8B: bits 63:32 cleared */
        mov     $-1, %rdx
        mov     0x12(%rbx), %dx                 /* 66 8B: bits 63:16 kept */
        mov     0x21(%rbx), %ch                 /* 8A, CH */
        mov     $-1, %r10
        mov     0x20(%rbx), %r10b               /* 44 8A */
        movzbl  0x24(%rbx), %esi                /* 0F B6 */
        movzwl  0x24(%rbx), %edi                /* 0F B7 */
        movsbq  0x24(%rbx), %r11                /* 4C 0F BE */
        movswl  0x26(%rbx), %r12d               /* 44 0F BF */
        movslq  0x24(%rbx), %r13                /* 4C 63 */
        mov     %rsp, %r14
        mov     0x30(%rbx), %rsp                /* 48 8B, RSP */
        mov     %rsp, %r15
        mov     %r14, %rsp
        movabs  0xfed00024, %al                 /* A0 */
        mov     %eax, %ebp
        movabs  0xfed00058, %rax                /* 48 A1 */
        mov     %rax, 0x130020
        movabs  0xfed00024, %eax                /* A1 */
        jmp     done
