/* SMP: the BSP brings vCPU 1 up with HYPERVISOR_vcpu_op (VCPUOP_initialise with a 64-bit
   vcpu_hvm_context on the same page tables, then VCPUOP_up), waits until the AP has enabled its
   local APIC and interrupts, and sends it IPI vector 0x40 through the xAPIC ICR (MMIO). The AP
   takes the IPI in timer_isr (the shared IDT), which counts it and EOIs through *its own* APIC
   page at the same address. Results at 0x130000 (IPIs taken), 0x130020 (VCPUOP_initialise),
   0x130024 (VCPUOP_up). */
        .include "prologue.S"
        .set    CTX, 0x131000
main:
        movl    $0x1ff, 0xf0(%rbx)              /* SVR: software enable */
        mov     $CTX, %rdi                      /* struct vcpu_hvm_context, VCPU_HVM_MODE_64B */
        xor     %eax, %eax
        mov     $16, %ecx
        rep stosq
        movl    $1, CTX                         /* mode = VCPU_HVM_MODE_64B */
        lea     ap_entry(%rip), %rax
        mov     %rax, CTX + 8 + 64              /* rip */
        movq    $0x170000, CTX + 8 + 32         /* rsp */
        movq    $2, CTX + 8 + 72                /* rflags */
        mov     $0x80010031, %eax               /* cr0: PG | WP | NE | ET | PE */
        mov     %rax, CTX + 8 + 80
        movq    $0x110000, CTX + 8 + 88         /* cr3: the BSP's tables */
        movq    $0x20, CTX + 8 + 96             /* cr4: PAE */
        movq    $0x500, CTX + 8 + 104           /* efer: LME | LMA */
        mov     $24, %eax                       /* __HYPERVISOR_vcpu_op */
        xor     %edi, %edi                      /* VCPUOP_initialise */
        mov     $1, %esi                        /* vCPU 1 */
        mov     $CTX, %edx
        vmcall
        mov     %eax, 0x130020
        mov     $24, %eax
        mov     $1, %edi                        /* VCPUOP_up */
        mov     $1, %esi
        vmcall
        mov     %eax, 0x130024
1:      pause
        cmpl    $1, 0x130030                    /* the AP is ready */
        jne     1b
        movl    $0x01000000, 0x310(%rbx)        /* ICR high: destination APIC ID 1 */
        movl    $0x00000040, 0x300(%rbx)        /* ICR low: fixed, vector 0x40 (sends) */
2:      pause
        cmpl    $0, 0x130000
        je      2b
        jmp     done
ap_entry:
        lgdt    gdtr(%rip)                      /* the builder's GDT (the vCPU starts with GDTR reset) */
        pushq   $0x18                           /* reload CS from it (the context left selector 0) */
        lea     1f(%rip), %rax
        push    %rax
        lretq
1:      lidt    idtr(%rip)
        mov     $0xfee00000, %ebx
        movl    $0x1ff, 0xf0(%rbx)              /* this AP's own APIC: software enable */
        movl    $1, 0x130030
        sti
3:      hlt
        cmpl    $0, 0x130000
        je      3b
        cli
        hlt                                     /* down: with the BSP down too, the domain powers off */
        .balign 4
gdtr:   .word   0x2f
        .quad   0x7000
