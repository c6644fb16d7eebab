/* A write to an MMIO hole no device claims (the test marks 0xFEC00000 MMIO in the p2m). */
        .include "prologue.S"
main:
        mov     $0xfec00000, %ecx
        movl    $1, (%rcx)
        jmp     done
