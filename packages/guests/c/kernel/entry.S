/*
 * Reference kernel entry stubs beyond the runtime's (traps.S covers vectors 0..31 and 0x80):
 * the APIC timer (vector 0x20) and the APIC spurious vector (0xFF), plus kernel_enter_user,
 * which starts the first user process from a struct trap_frame. The frame layout is the
 * runtime's (struct trap_frame in rt.h), and both stubs call the runtime's trap_dispatch.
 */
        .text
        .p2align 4
        .globl  irq_stub_timer
irq_stub_timer:
        pushq   $0
        pushq   $0x20
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
        movq    %rsp, %rdi
        jmp     kernel_enter_user

/* Spurious interrupt: no EOI, nothing to do. */
        .p2align 4
        .globl  irq_stub_spurious
irq_stub_spurious:
        iretq

/* void kernel_enter_user(struct trap_frame *f): load every register from f and IRETQ. */
        .p2align 4
        .globl  kernel_enter_user
kernel_enter_user:
        movq    %rdi, %rsp
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
        addq    $16, %rsp
        iretq
