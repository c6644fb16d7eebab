/* The guest unmaps its own code page (PT0[0x100] = 0, no INVLPG: the TLB, or the out-of-sync
   shadow, still maps it), then touches MMIO: the hypervisor cannot fetch the instruction. */
        .include "prologue.S"
main:
        movq    $0, 0x114000 + 0x100 * 8
        movl    $0x10, 0x80(%rbx)
        jmp     done
