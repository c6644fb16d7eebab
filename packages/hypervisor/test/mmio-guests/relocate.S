/*
 * IA32_APIC_BASE moves the xAPIC page (SDM 11.4.4): to 0xFED00000 (unassigned space, mapped by
 * the prologue), where the APIC then answers, while 0xFEE00000 reads what the p2m has there
 * (nothing: all ones); then back. Results at SCRATCH (0x130000): +0 version at the new base,
 * +4 the old base, +8 TPR written at the new base and read back at the old one once restored.
 */
        .include "prologue.S"
main:
        mov     $0x1b, %ecx                     /* IA32_APIC_BASE */
        mov     $0xfed00900, %eax               /* new base, EN, BSP */
        xor     %edx, %edx
        wrmsr
        mov     0xfed00030, %eax                /* version register at the new base */
        mov     %eax, 0x130000
        mov     0xfee00030, %eax                /* the old base */
        mov     %eax, 0x130004
        mov     $0xfed00000, %ebx
        movl    $0x20, 0x80(%rbx)               /* TPR */
        mov     $0xfee00900, %eax               /* back to the default base */
        wrmsr
        mov     0xfee00080, %eax
        mov     %eax, 0x130008
        jmp     done
