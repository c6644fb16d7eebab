/*
 * usermode: the kernel's side of the privilege switches.
 *
 *   int64_t enter_user(uint64_t rip, uint64_t rsp, uint64_t arg)
 *       saves the kernel's callee-saved registers and stack pointer, then IRETQs to CPL 3 at
 *       rip with RSP = rsp, RDI = arg, RFLAGS = 0x2 (IF=0) and every other register zeroed.
 *       It "returns" when the kernel calls return_to_kernel(value).
 *   void return_to_kernel(int64_t value)
 *       restores that context (abandoning whatever kernel stack it runs on) and makes
 *       enter_user return value.
 *   syscall_entry
 *       IA32_LSTAR target. SYSCALL left the user RIP in RCX and RFLAGS in R11 and masked RFLAGS
 *       with IA32_FMASK; the stub switches to the kernel stack, calls
 *       syscall_dispatch(rdi, rsi, rdx, rax) and returns with SYSRETQ. RAX is the result;
 *       RCX and R11 are clobbered, all other registers are preserved.
 */
#define USER_CS   (0x28 | 3)
#define USER_DS   (0x20 | 3)

        .text
        .globl  enter_user
        .type   enter_user, @function
enter_user:
        pushq   %rbx
        pushq   %rbp
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, kernel_context_rsp(%rip)
        pushq   $USER_DS                        /* SS */
        pushq   %rsi                            /* RSP */
        pushq   $0x2                            /* RFLAGS: IF=0, IOPL=0 */
        pushq   $USER_CS                        /* CS */
        pushq   %rdi                            /* RIP */
        movq    %rdx, %rdi
        xorl    %eax, %eax
        xorl    %ebx, %ebx
        xorl    %ecx, %ecx
        xorl    %edx, %edx
        xorl    %esi, %esi
        xorl    %ebp, %ebp
        xorl    %r8d, %r8d
        xorl    %r9d, %r9d
        xorl    %r10d, %r10d
        xorl    %r11d, %r11d
        xorl    %r12d, %r12d
        xorl    %r13d, %r13d
        xorl    %r14d, %r14d
        xorl    %r15d, %r15d
        movl    $USER_DS, %r8d
        movl    %r8d, %ds
        movl    %r8d, %es
        xorl    %r8d, %r8d
        iretq
        .size   enter_user, . - enter_user

        .globl  return_to_kernel
        .type   return_to_kernel, @function
return_to_kernel:
        movl    $0x10, %eax
        movl    %eax, %ds
        movl    %eax, %es
        movq    %rdi, %rax
        movq    kernel_context_rsp(%rip), %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbp
        popq    %rbx
        ret
        .size   return_to_kernel, . - return_to_kernel

        .globl  syscall_entry
        .type   syscall_entry, @function
syscall_entry:
        movq    %rsp, user_rsp(%rip)
        movq    kernel_stack_top(%rip), %rsp
        pushq   user_rsp(%rip)
        pushq   %r11                            /* user RFLAGS */
        pushq   %rcx                            /* user RIP */
        pushq   %rdi
        pushq   %rsi
        pushq   %rdx
        pushq   %r8
        pushq   %r9
        pushq   %r10
        subq    $8, %rsp                        /* 16-byte alignment at the call */
        movq    %rax, %rcx
        call    syscall_dispatch
        addq    $8, %rsp
        popq    %r10
        popq    %r9
        popq    %r8
        popq    %rdx
        popq    %rsi
        popq    %rdi
        popq    %rcx
        popq    %r11
        popq    %rsp
        sysretq
        .size   syscall_entry, . - syscall_entry

        .bss
        .p2align 3
kernel_context_rsp:
        .quad   0
user_rsp:
        .quad   0
