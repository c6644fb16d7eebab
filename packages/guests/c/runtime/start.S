/*
 * PVH entry for vtlab guests.
 *
 * Xen/QEMU PVH boot (xen/arch-x86/hvm/start_info.h): the loader enters the 32-bit physical
 * entry point named by the XEN_ELFNOTE_PHYS32_ENTRY note in flat 32-bit protected mode with
 * paging off and interrupts off; EBX holds the physical address of struct hvm_start_info.
 *
 * This file switches to IA-32e (64-bit) mode: loads its own GDT, points CR3 at static
 * identity page tables (first 1 GiB in 2 MiB pages), sets CR4.PAE, EFER.LME, CR0.PG|WP, and
 * far-jumps to 64-bit code. There it zeroes .bss, sets up the stack and calls
 * rt_boot(struct hvm_start_info *), which calls the program's kmain(). Only general-purpose
 * registers are used: no SSE, no x87.
 */

#define XEN_ELFNOTE_PHYS32_ENTRY 18   /* xen/elfnote.h */

#define X86_CR0_PE   (1 << 0)
#define X86_CR0_WP   (1 << 16)
#define X86_CR0_PG   (1 << 31)
#define X86_CR4_PAE  (1 << 5)
#define MSR_EFER     0xC0000080
#define EFER_LME     (1 << 8)

#define KERNEL_CS    0x08
#define KERNEL_DS    0x10

/* The ELF note: name "Xen", type 18, a 4-byte descriptor holding the 32-bit entry. */
        .section .note.Xen, "a", @note
        .p2align 2
        .long   2f - 1f                 /* n_namesz */
        .long   4f - 3f                 /* n_descsz */
        .long   XEN_ELFNOTE_PHYS32_ENTRY
1:      .asciz  "Xen"
2:      .p2align 2
3:      .long   _start
4:      .p2align 2

        .section .text.boot, "ax", @progbits
        .code32
        .globl  _start
        .type   _start, @function
_start:
        cld
        movl    %ebx, %esi                      /* keep hvm_start_info in ESI */

        movl    $pml4, %eax
        movl    %eax, %cr3

        movl    %cr4, %eax
        orl     $X86_CR4_PAE, %eax
        movl    %eax, %cr4

        movl    $MSR_EFER, %ecx
        rdmsr
        orl     $EFER_LME, %eax
        wrmsr

        lgdt    gdt_descriptor

        movl    %cr0, %eax
        orl     $(X86_CR0_PG | X86_CR0_WP | X86_CR0_PE), %eax
        movl    %eax, %cr0

        ljmp    $KERNEL_CS, $long_mode_entry
        .size   _start, . - _start

        .code64
long_mode_entry:
        movl    $KERNEL_DS, %eax
        movl    %eax, %ds
        movl    %eax, %es
        movl    %eax, %ss
        xorl    %eax, %eax
        movl    %eax, %fs
        movl    %eax, %gs

        /* zero .bss (the loader zeroes p_memsz beyond p_filesz too; do not rely on it) */
        movl    $__bss_start, %edi
        movl    $__bss_end, %ecx
        subl    %edi, %ecx
        shrl    $3, %ecx
        xorl    %eax, %eax
        rep stosq

        movl    $__stack_top, %esp              /* zero-extends: the image is below 4 GiB */
        xorl    %ebp, %ebp
        movl    %esi, %edi                      /* rt_boot(struct hvm_start_info *) */
        call    rt_boot
        movl    %eax, %edi
        call    rt_exit
1:      cli
        hlt
        jmp     1b

/* GDT: the layout SYSCALL/SYSRET need (STAR[47:32] = 0x08, STAR[63:48] = 0x18). */
        .section .data, "aw", @progbits
        .p2align 4
        .globl  gdt
gdt:
        .quad   0                               /* 0x00 null */
        .quad   0x00af9a000000ffff              /* 0x08 kernel code, 64-bit (L=1), DPL 0 */
        .quad   0x00cf92000000ffff              /* 0x10 kernel data, DPL 0 */
        .quad   0x00cffa000000ffff              /* 0x18 user code, 32-bit (unused), DPL 3 */
        .quad   0x00cff2000000ffff              /* 0x20 user data, DPL 3 */
        .quad   0x00affa000000ffff              /* 0x28 user code, 64-bit (L=1), DPL 3 */
        .quad   0, 0                            /* 0x30 TSS (16-byte system descriptor), set by C */
gdt_end:
        .p2align 3
        .globl  gdt_descriptor
gdt_descriptor:
        .word   gdt_end - gdt - 1
        .quad   gdt                             /* lgdt in 32-bit mode reads the low 4 bytes */

/* Identity page tables for the first 1 GiB: PML4[0] -> PDPT[0] -> PD of 512 2 MiB pages. */
#define PTE_P   0x001
#define PTE_W   0x002
#define PTE_PS  0x080
        .section .data.pagetables, "aw", @progbits
        .p2align 12
        .globl  pml4, pdpt, pd_identity
pml4:
        .quad   pdpt + (PTE_P | PTE_W)
        .fill   511, 8, 0
pdpt:
        .quad   pd_identity + (PTE_P | PTE_W)
        .fill   511, 8, 0
pd_identity:
        .set    i, 0
        .rept   512
        .quad   (i << 21) | (PTE_P | PTE_W | PTE_PS)
        .set    i, i + 1
        .endr
