/*
 * The hypercall page of the reference kernel and of xentest: one page of the image, prefilled with HLT (0xF4) so a
 * call before Xen wrote its stubs stops the vCPU; xen.c writes its guest-physical address to
 * the MSR CPUID leaf 0x40000002 names and Xen overwrites the page with its stubs.
 */
        .section .text.hypercall_page, "ax", @progbits
        .p2align 12
        .globl  hypercall_page
hypercall_page:
        .fill   4096, 1, 0xf4
        .size   hypercall_page, 4096

/*
 * The callback vector's IDT gate (HVM_PARAM_CALLBACK_IRQ, type vector): saves the registers the
 * C ABI lets a callee clobber, calls xen_upcall() and returns with IRETQ. Upcalls come only in
 * kernel mode (the PV workloads open interrupt windows in kmain), so the CPU's frame (5
 * quadwords, RSP aligned to 16 first) plus these 9 keep RSP 16-byte aligned at the call.
 */
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
