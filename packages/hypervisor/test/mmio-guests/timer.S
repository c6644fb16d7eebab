/* The APIC timer through xAPIC MMIO; reads of the ID and version registers. */
        .include "prologue.S"
main:
        mov     0x20(%rbx), %eax                /* APIC ID */
        mov     %eax, 0x130010
        mov     0x30(%rbx), %eax                /* version */
        mov     %eax, 0x130014
        movl    $0x1ff, 0xf0(%rbx)              /* SVR: software enable, spurious vector 0xFF */
        movl    $0xb, 0x3e0(%rbx)               /* divide configuration: by 1 */
        movl    $0x40, 0x320(%rbx)              /* LVT timer: vector 0x40, one-shot */
        movl    $100000, 0x380(%rbx)            /* initial count */
        sti
1:      hlt
        cmpl    $0, 0x130000
        je      1b
        mov     0x390(%rbx), %eax               /* current count, after expiry */
        mov     %eax, 0x130018
        jmp     done
