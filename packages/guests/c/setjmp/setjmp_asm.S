/*
 * setjmp/longjmp for the x86-64 System V ABI: a jmp_buf holds the callee-saved registers
 * RBX, RBP, R12-R15, the stack pointer as it will be after setjmp returns, and the return
 * address.
 *
 *   int  vt_setjmp(vt_jmp_buf env);             returns 0 directly, or the longjmp value
 *   void vt_longjmp(vt_jmp_buf env, int value); value 0 is delivered as 1
 */
        .text
        .globl  vt_setjmp
        .type   vt_setjmp, @function
vt_setjmp:
        movq    %rbx, 0(%rdi)
        movq    %rbp, 8(%rdi)
        movq    %r12, 16(%rdi)
        movq    %r13, 24(%rdi)
        movq    %r14, 32(%rdi)
        movq    %r15, 40(%rdi)
        leaq    8(%rsp), %rdx           /* RSP after our RET */
        movq    %rdx, 48(%rdi)
        movq    (%rsp), %rdx            /* return address */
        movq    %rdx, 56(%rdi)
        xorl    %eax, %eax
        ret
        .size   vt_setjmp, . - vt_setjmp

        .globl  vt_longjmp
        .type   vt_longjmp, @function
vt_longjmp:
        movl    %esi, %eax
        testl   %eax, %eax
        movl    $1, %edx
        cmovzl  %edx, %eax              /* longjmp(env, 0) makes setjmp return 1 */
        movq    0(%rdi), %rbx
        movq    8(%rdi), %rbp
        movq    16(%rdi), %r12
        movq    24(%rdi), %r13
        movq    32(%rdi), %r14
        movq    40(%rdi), %r15
        movq    48(%rdi), %rsp
        jmpq    *56(%rdi)
        .size   vt_longjmp, . - vt_longjmp

/*
 * uint64_t clobber_callee_saved_then_longjmp(vt_jmp_buf env, int value):
 * fills every callee-saved register with garbage before jumping, so a longjmp that failed to
 * restore one would be visible to the caller of vt_setjmp.
 */
        .globl  clobber_and_longjmp
        .type   clobber_and_longjmp, @function
clobber_and_longjmp:
        movabsq $0xdeaddeaddeaddead, %rax
        movq    %rax, %rbx
        movq    %rax, %rbp
        movq    %rax, %r12
        movq    %rax, %r13
        movq    %rax, %r14
        movq    %rax, %r15
        jmp     vt_longjmp
        .size   clobber_and_longjmp, . - clobber_and_longjmp
