/*
 * The C library's memory and string primitives, written with the x86 string instructions
 * (REP STOSB, REP MOVSB, STD + REP MOVSB for backward copies, REPE CMPSB, REPNE SCASB) so
 * every guest exercises them. gcc may also emit calls to memset/memcpy/memmove/memcmp itself.
 */
        .text

/* void *memset(void *dst, int c, size_t n) */
        .globl  memset
        .type   memset, @function
memset:
        movq    %rdi, %r9
        movl    %esi, %eax
        movq    %rdx, %rcx
        rep stosb
        movq    %r9, %rax
        ret
        .size   memset, . - memset

/* void *memcpy(void *dst, const void *src, size_t n) */
        .globl  memcpy
        .type   memcpy, @function
memcpy:
        movq    %rdi, %rax
        movq    %rdx, %rcx
        rep movsb
        ret
        .size   memcpy, . - memcpy

/* void *memmove(void *dst, const void *src, size_t n): copies backward (DF=1) when dst
   overlaps the tail of src. */
        .globl  memmove
        .type   memmove, @function
memmove:
        movq    %rdi, %rax
        movq    %rdx, %rcx
        cmpq    %rsi, %rdi
        jbe     1f                              /* dst <= src: forward is safe */
        leaq    (%rsi,%rdx), %r8
        cmpq    %r8, %rdi
        jae     1f                              /* no overlap */
        leaq    -1(%rdi,%rdx), %rdi
        leaq    -1(%rsi,%rdx), %rsi
        std
        rep movsb
        cld
        ret
1:      rep movsb
        ret
        .size   memmove, . - memmove

/* int memcmp(const void *a, const void *b, size_t n) */
        .globl  memcmp
        .type   memcmp, @function
memcmp:
        xorl    %eax, %eax
        movq    %rdx, %rcx
        testq   %rcx, %rcx
        jz      1f
        repe cmpsb
        je      1f
        movzbl  -1(%rdi), %eax
        movzbl  -1(%rsi), %edx
        subl    %edx, %eax
1:      ret
        .size   memcmp, . - memcmp

/* size_t strlen(const char *s) */
        .globl  strlen
        .type   strlen, @function
strlen:
        movq    %rdi, %rdx
        xorl    %eax, %eax
        movq    $-1, %rcx
        repne scasb
        subq    %rdx, %rdi
        leaq    -1(%rdi), %rax
        ret
        .size   strlen, . - strlen
