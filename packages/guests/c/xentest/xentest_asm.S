/*
 * xentest: the hypercall page and the event-channel upcall entry.
 *
 * The hypercall page is one page of the image, prefilled with HLT (0xF4) so that a call before
 * Xen has written its stubs stops the vCPU instead of running garbage; the guest writes its
 * guest-physical address to the MSR that CPUID leaf 0x40000002 names and Xen overwrites it.
 *
 * The upcall entry is the IDT gate of the callback vector (HVM_PARAM_CALLBACK_IRQ, type
 * vector): it saves the registers the C ABI lets a callee clobber, calls xen_upcall() and
 * returns with IRETQ. Interrupts arrive only in kernel mode on the one kernel stack, so the
 * CPU's frame (5 quadwords after aligning RSP to 16) plus the 9 saved registers keep RSP
 * 16-byte aligned at the call.
 */
        .section .text.hypercall_page, "ax", @progbits
        .p2align 12
        .globl  hypercall_page
hypercall_page:
        .fill   4096, 1, 0xf4
        .size   hypercall_page, 4096

        .text
        .p2align 4
        .globl  xen_upcall_entry
        .type   xen_upcall_entry, @function
xen_upcall_entry:
        pushq   %rax
        pushq   %rcx
        pushq   %rdx
        pushq   %rsi
        pushq   %rdi
        pushq   %r8
        pushq   %r9
        pushq   %r10
        pushq   %r11
        cld
        call    xen_upcall
        popq    %r11
        popq    %r10
        popq    %r9
        popq    %r8
        popq    %rdi
        popq    %rsi
        popq    %rdx
        popq    %rcx
        popq    %rax
        iretq
        .size   xen_upcall_entry, . - xen_upcall_entry
