import { describe, expect, it } from "vitest";
import { machine64 } from "./machine.js";

describe("interpreter smoke test", () => {
  it("runs a loop, multiplies, stores, loads, LEA, BSR and OUT in 64-bit mode", () => {
    // mov rax,0x123456789; mov rcx,10; xor edx,edx; 1: add rdx,rax; dec rcx; jnz 1b; mov rbx,rdx;
    // shl rbx,3; imul rsi,rbx,7; mov rdi,0x1000; mov [rdi],rsi; mov r8,[rdi]; lea r9,[r8+r8*2+5];
    // bsr r10,r9; mov al,'X'; out 0xe9,al; hlt
    const m = machine64(
      "48b8896745230100000048c7c10a00000031d24801c248ffc975f84889d348c1e303486bf30748c7c7001000004889374c8b074f8d4c40054d0fbdd1b058e6e9f4",
    );
    const r = m.cpu.run(1000);
    expect(r.kind).toBe("hlt");
    const x = 0x123456789 * 10 * 8 * 7;
    expect(m.cpu.regAddr(6)).toBe(x);
    expect(m.cpu.regAddr(9)).toBe(x * 3 + 5);
    expect(m.cpu.regAddr(10)).toBe(Math.floor(Math.log2(x * 3 + 5)));
    expect(m.console.join("")).toBe("X");
    expect(m.cpu.counters.instructions).toBe(3 + 30 + 11);
  });
});
