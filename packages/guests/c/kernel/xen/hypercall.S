/*
 * The reference kernel's hypercall page: one page of the image, prefilled with HLT (0xF4) so a
 * call before Xen wrote its stubs stops the vCPU; xen.c writes its guest-physical address to
 * the MSR CPUID leaf 0x40000002 names and Xen overwrites the page with its stubs.
 */
        .section .text.hypercall_page, "ax", @progbits
        .p2align 12
        .globl  hypercall_page
hypercall_page:
        .fill   4096, 1, 0xf4
        .size   hypercall_page, 4096
