/* Effective addresses and RSP values beyond 2^53 (exact 64-bit arithmetic), against a recording
   device at 0xFED00000 (RBX): index * scale and base + index that wrap modulo 2^64, RSP loaded
   with a higher-half value (64-bit and 16-bit loads, then stored), RSP as a base register, an
   FS base, and an EIP-relative operand (67 prefix). */
        .include "prologue.S"
main:
        mov     $0xfed00000, %ebx
        mov     $0x11223344, %eax
        mov     $0xfed00044, %edx
        mov     $0x4000000000000000, %rcx
        mov     %eax, (%rdx, %rcx, 4)           /* 0xfed00044 + 2^64 */
        mov     $0x80000000fed00048, %rdx
        mov     $0x8000000000000000, %rcx
        mov     %eax, (%rdx, %rcx, 1)           /* 0xfed00048 + 2^64 */
        mov     $0x800000007ed0004d, %rdx
        mov     %eax, 0x7fffffff(%rdx, %rcx, 1) /* 0x800000007ed0004d + 2^63 + 0x7fffffff = 0xfed0004c + 2^64 */
        mov     %rsp, %r14
        mov     $0xffff800000123458, %rax
        mov     %rax, 0x60(%rbx)
        mov     0x60(%rbx), %rsp                /* 48 8B: RSP = 0xffff800000123458 */
        mov     %rsp, %r8
        movw    $0xbeef, 0x68(%rbx)
        mov     0x68(%rbx), %sp                 /* 66 8B: bits 63:16 of the higher-half RSP kept */
        mov     %rsp, %r9
        mov     %rsp, 0x70(%rbx)                /* 48 89: store the higher-half RSP */
        mov     $0xfed00080, %esp
        mov     %eax, 8(%rsp)                   /* RSP as the base */
        mov     0x68(%rbx), %esp                /* 8B: bits 63:32 of RSP cleared */
        mov     %rsp, %r10
        mov     %r14, %rsp
        mov     $0xc0000100, %ecx               /* IA32_FS_BASE = 0xffffffff80000000 */
        mov     $0x80000000, %eax
        mov     $0xffffffff, %edx
        wrmsr
        mov     $0x17ed00098, %rdx
        mov     $0x55667788, %eax
        mov     %eax, %fs:(%rdx)                /* 0xffffffff80000000 + 0x17ed00098 = 0xfed00098 */
        .byte   0x67, 0x89, 0x05                /* addr32 mov %eax, disp32(%eip) */
        .long   0xfed000a0 - (1f - _start + 0x100000)
1:      jmp     done
