/* Common start of the MMIO test guests (loaded at 1 MiB, entered in 32-bit code: protected
   mode with paging off on EPT, compatibility mode on the builder's identity map on shadow).
   Builds its own 4-level tables (0-2 MiB in 4 KiB pages, 0xFEC00000-0xFEFFFFFF in two 2 MiB
   pages with PCD|PWT), enters 64-bit mode, loads an IDT, and jumps to `main` with RBX = the
   local APIC base 0xFEE00000. Scratch data at 0x130000. */
        .code32
        .globl _start
_start:
        mov     $0x110000, %edi
        xor     %eax, %eax
        mov     $(6 * 1024), %ecx
        rep stosl                               /* zero PML4, PDPT, PD0, PD3, PT0, IDT */
        movl    $0x111003, 0x110000             /* PML4[0] -> PDPT */
        movl    $0x112003, 0x111000             /* PDPT[0] -> PD0 */
        movl    $0x113003, 0x111018             /* PDPT[3] -> PD3 */
        movl    $0x114003, 0x112000             /* PD0[0] -> PT0 */
        movl    $0xfec0009b, 0x113000 + 0x1f6 * 8 /* 2 MiB at 0xFEC00000, PCD|PWT */
        movl    $0xfee0009b, 0x113000 + 0x1f7 * 8 /* 2 MiB at 0xFEE00000, PCD|PWT */
        mov     $0x114000, %edi
        mov     $0x003, %eax
1:      mov     %eax, (%edi)                    /* PT0: identity, 512 x 4 KiB */
        add     $0x1000, %eax
        add     $8, %edi
        cmp     $0x115000, %edi
        jne     1b
        mov     $0x110000, %eax
        mov     %eax, %cr3
        mov     %cr4, %eax
        or      $0x20, %eax                     /* CR4.PAE */
        mov     %eax, %cr4
        mov     $0xc0000080, %ecx               /* IA32_EFER */
        rdmsr
        or      $0x100, %eax                    /* LME */
        wrmsr
        mov     %cr0, %eax
        or      $0x80000000, %eax               /* CR0.PG */
        mov     %eax, %cr0
        ljmp    $0x18, $long_start
        .code64
long_start:
        mov     $0x180000, %rsp
        push    %rax                            /* touch the stack before any interrupt uses it */
        pop     %rax
        lea     timer_isr(%rip), %rax           /* IDT[0x40]: 64-bit interrupt gate */
        mov     $0x115000 + 0x40 * 16, %rdi
        mov     %ax, (%rdi)
        movw    $0x18, 2(%rdi)
        movw    $0x8e00, 4(%rdi)
        shr     $16, %rax
        mov     %ax, 6(%rdi)
        lidt    idtr(%rip)
        mov     $0xfee00000, %ebx
        jmp     main
timer_isr:
        incl    0x130000                        /* ticks */
        movl    $0, 0xb0(%rbx)                  /* EOI (xAPIC MMIO) */
        iretq
        .balign 4
idtr:   .word   0xfff
        .quad   0x115000
done:   cli
        hlt                                     /* halt with IF = 0: the domain powers off */
