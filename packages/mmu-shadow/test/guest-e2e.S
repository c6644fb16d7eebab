.intel_syntax noprefix
.code64
start:
  mov qword ptr [0x500000], 0x11
  mov rax, 0x700003
  mov [0x107000], rax
  mov rbx, 0x40000000
  mov qword ptr [rbx], 0x22
  mov rcx, 0x80000000
  mov qword ptr [rcx+0x1008], 0x33
  mov rax, cr3
  mov [0x500008], rax
  mov cr3, rax
  lock or qword ptr [0x107000], 0x4
  invlpg [rbx]
  mov rdx, [rbx]
  mov [0x500010], rdx
  mov rsi, 0x40001000
  mov rdx, [rsi]
  mov [0x500018], rdx
  mov rax, 0x700003
  mov rdx, 0x700007
  lock cmpxchg [0x107000], rdx
  setz byte ptr [0x500030]
  hlt
.org 0x100
handler:
  pop r8
  mov [0x500020], r8
  mov r9, cr2
  mov [0x500028], r9
  mov rax, 0x701003
  xchg [0x107008], rax
  iretq
