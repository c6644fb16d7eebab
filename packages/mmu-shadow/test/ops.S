.intel_syntax noprefix
.code64
ld: mov rax, [rdi]
  hlt
st: mov [rdi], rsi
  hlt
c3: mov cr3, rdi
  hlt
iv: invlpg [rdi]
  hlt
