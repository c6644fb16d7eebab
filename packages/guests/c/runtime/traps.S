/*
 * Exception entry stubs: one for each of the 32 architectural vectors plus vector 0x80
 * (the INT 0x80 system-call gate). Each pushes a zero error code where the CPU does not push
 * one, then the vector number, then all general-purpose registers, and calls
 * trap_dispatch(struct trap_frame *). If that returns, the registers (possibly changed by the
 * handler, e.g. RIP or RAX) are restored and the stub returns with IRETQ.
 */
        .text

.macro TRAP_NOERR vector
        .p2align 4
trap_stub_\vector:
        pushq   $0
        pushq   $\vector
        jmp     trap_common
.endm

.macro TRAP_ERR vector
        .p2align 4
trap_stub_\vector:
        pushq   $\vector
        jmp     trap_common
.endm

/* Vectors with an error code: #DF 8, #TS 10, #NP 11, #SS 12, #GP 13, #PF 14, #AC 17,
   #CP 21, #VC 29, #SX 30. */
TRAP_NOERR 0
TRAP_NOERR 1
TRAP_NOERR 2
TRAP_NOERR 3
TRAP_NOERR 4
TRAP_NOERR 5
TRAP_NOERR 6
TRAP_NOERR 7
TRAP_ERR   8
TRAP_NOERR 9
TRAP_ERR   10
TRAP_ERR   11
TRAP_ERR   12
TRAP_ERR   13
TRAP_ERR   14
TRAP_NOERR 15
TRAP_NOERR 16
TRAP_ERR   17
TRAP_NOERR 18
TRAP_NOERR 19
TRAP_NOERR 20
TRAP_ERR   21
TRAP_NOERR 22
TRAP_NOERR 23
TRAP_NOERR 24
TRAP_NOERR 25
TRAP_NOERR 26
TRAP_NOERR 27
TRAP_NOERR 28
TRAP_ERR   29
TRAP_ERR   30
TRAP_NOERR 31
TRAP_NOERR 128

        .p2align 4
trap_common:
        pushq   %rax
        pushq   %rbx
        pushq   %rcx
        pushq   %rdx
        pushq   %rsi
        pushq   %rdi
        pushq   %rbp
        pushq   %r8
        pushq   %r9
        pushq   %r10
        pushq   %r11
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        cld
        movq    %rsp, %rdi
        call    trap_dispatch
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %r11
        popq    %r10
        popq    %r9
        popq    %r8
        popq    %rbp
        popq    %rdi
        popq    %rsi
        popq    %rdx
        popq    %rcx
        popq    %rbx
        popq    %rax
        addq    $16, %rsp                       /* vector and error code */
        iretq

/* Table of stub addresses, indexed by vector (0..31); trap_stub_128 separately. */
        .section .rodata
        .p2align 3
        .globl  trap_stubs
trap_stubs:
        .irp    v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        .quad   trap_stub_\v
        .endr
        .globl  trap_stub_int80
trap_stub_int80:
        .quad   trap_stub_128
