/* MMIO with guest paging off (32-bit protected mode, no prologue): the emulator fetches the
   instruction and translates the operand with CR0.PG = 0, on EPT (GVA = GPA) and on shadow
   paging (the vCPU runs on the identity table). Recording device at 0xFED00000. */
        .code32
        .globl _start
_start:
        mov     $0xfed00000, %ebx
        movl    $0x12345678, 0x10(%ebx)         /* C7 */
        mov     0x10(%ebx), %ecx                /* 8B */
        mov     %ecx, 0x130000
        movw    $0xabcd, 0x14(%ebx)             /* 66 C7 */
        movzwl  0x14(%ebx), %edx                /* 0F B7 */
        mov     %edx, 0x130004
        movb    $0x5a, 0xfed00018               /* C6, no base */
        cli
        hlt
