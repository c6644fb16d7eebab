/* The MMIO bench: 100,000 rounds of a TPR write and a TPR read (two MMIO exits each). */
        .include "prologue.S"
main:
        mov     $100000, %ecx
1:      movl    $0x10, 0x80(%rbx)
        mov     0x80(%rbx), %eax
        dec     %ecx
        jnz     1b
        jmp     done
