/* A read-modify-write ALU instruction on MMIO (not emulated). */
        .include "prologue.S"
main:
        addl    $1, 0x80(%rbx)
        jmp     done
