/* A 4-byte store across the end of the APIC page. */
        .include "prologue.S"
main:
        mov     %eax, 0xffe(%rbx)
        jmp     done
