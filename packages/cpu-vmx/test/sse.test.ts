/**
 * The rules every SSE/SSE2 instruction shares (SDM Vol. 3A Table 2-1 / 13-5, Vol. 1 11.6.4):
 * #UD with CR0.EM or without CR4.OSFXSR, #NM with CR0.TS (before any memory fault), #GP(0) for
 * a misaligned m128 of the aligned forms, an all-or-nothing 16-byte store across pages, LOCK
 * and the MMX forms #UD; CLFLUSH's address faults, PREFETCH never faulting, CMPXCHG16B's
 * alignment #GP. The values themselves are checked against the host (sse-differential.test.ts).
 */
import { describe, expect, it } from "vitest";
import { MachineMemory, PortIoBus, Vector } from "@vtlab/arch";
import {
  CPUID_1_ECX_CX16,
  CPUID_1_EDX_CLFSH,
  CPUID_1_EDX_CX8,
  CPUID_1_EDX_FXSR,
  CPUID_1_EDX_SSE,
  CPUID_1_EDX_SSE2,
  CR0_EM,
  CR0_TS,
  Cpu,
  CR4_OSFXSR,
  CR4_OSXMMEXCPT,
  MXCSR_IE,
  MXCSR_ZE,
  defaultCpuid,
} from "@vtlab/cpu-vmx";
import { hex, machine64, type TestMachine } from "./machine.js";

const IDT = 0x8000;
const HANDLERS = 0x30_0000;
const DATA = 0x40_0000;
/** 2 MiB page 10 (0x1400000-0x15fffff) is made not present. */
const HOLE = 0x140_0000;

function withIdt(m: TestMachine): TestMachine {
  for (let v = 0; v < 32; v++) {
    const target = HANDLERS + v * 16;
    m.memory.write32(IDT + v * 16, (0x08 << 16) | (target & 0xffff));
    m.memory.write32(IDT + v * 16 + 4, (target & 0xffff0000) | 0x8e00);
    m.memory.write32(IDT + v * 16 + 8, 0);
    m.memory.write8(target, 0xf4);
  }
  m.cpu.idtrBase = IDT;
  m.cpu.idtrLimit = 32 * 16 - 1;
  m.memory.write64(0x4000 + 10 * 8, 0, 0);
  m.cpu.flushTlb(false);
  return m;
}

function run(code: string, setup?: (m: TestMachine) => void): { m: TestMachine; vector: number } {
  const m = withIdt(machine64(hex(code)));
  m.cpu.cr4 |= CR4_OSFXSR;
  m.cpu.setRegFromNumber(3, DATA);
  setup?.(m);
  m.cpu.run(10_000);
  const vector = m.cpu.rip >= HANDLERS && m.cpu.rip < HANDLERS + 32 * 16 ? (m.cpu.rip - 1 - HANDLERS) / 16 : -1;
  return { m, vector };
}

const rax = (v: number) => (m: TestMachine) => m.cpu.setRegFromNumber(0, v);

describe("SSE gating and alignment", () => {
  it("CR0.EM -> #UD, CR4.OSFXSR = 0 -> #UD, CR0.TS -> #NM, and #NM comes before a misaligned operand's #GP", () => {
    expect(run("0f28c1 f4").vector).toBe(-1); // movaps xmm0, xmm1
    expect(run("0f28c1 f4", (m) => (m.cpu.cr0 |= CR0_EM)).vector).toBe(Vector.UD);
    expect(run("0f28c1 f4", (m) => (m.cpu.cr4 &= ~CR4_OSFXSR)).vector).toBe(Vector.UD);
    expect(run("0f28c1 f4", (m) => (m.cpu.cr0 |= CR0_TS)).vector).toBe(Vector.NM);
    expect(run("660fefc1 f4", (m) => (m.cpu.cr0 |= CR0_TS)).vector).toBe(Vector.NM); // pxor
    expect(run("0f284308 f4", (m) => (m.cpu.cr0 |= CR0_TS)).vector).toBe(Vector.NM); // movaps xmm0, [rbx+8]
    expect(run("0f284308 f4").vector).toBe(Vector.GP);
  });

  it("the aligned forms #GP(0) on a misaligned m128; MOVUPS/MOVDQU and the m64/m32 forms do not", () => {
    expect(run("0f104308 f4").vector).toBe(-1); // movups xmm0, [rbx+8]
    expect(run("f30f6f4301 f4").vector).toBe(-1); // movdqu xmm0, [rbx+1]
    expect(run("660f6f4308 f4").vector).toBe(Vector.GP); // movdqa
    expect(run("660f7f4308 f4").vector).toBe(Vector.GP); // movdqa store
    expect(run("660ffc4308 f4").vector).toBe(Vector.GP); // paddb xmm0, [rbx+8]
    expect(run("0f144304 f4").vector).toBe(Vector.GP); // unpcklps
    expect(run("f30f7e4301 f4").vector).toBe(-1); // movq xmm0, [rbx+1]
    expect(run("660f6e4303 f4").vector).toBe(-1); // movd xmm0, [rbx+3]
  });

  it("a 16-byte store across into a not-present page is #PF with nothing written", () => {
    const { m, vector } = run("0f1100 f4", (x) => {
      x.cpu.setRegFromNumber(0, HOLE - 8);
      x.cpu.fpu.xmm.fill(0x77, 0, 16);
    });
    expect(vector).toBe(Vector.PF);
    expect(m.cpu.cr2).toBe(HOLE);
    expect(m.memory.read32(HOLE - 8)).toBe(0);
  });

  it("LOCK on an SSE instruction and the MMX forms (no mandatory prefix) are #UD", () => {
    expect(run("f0660fefc1 f4").vector).toBe(Vector.UD);
    expect(run("0ffcc1 f4").vector).toBe(Vector.UD); // paddb mm0, mm1 (MMX: not modelled)
    expect(run("f20f6fc1 f4").vector).toBe(Vector.UD); // no F2 column
  });

  it("MOVD/MOVQ: a 32-bit general destination is zero-extended, REX.W moves 64 bits", () => {
    const { m } = run("66480f6ec0 660f7ec1 66480f7ec2 f4", (x) => {
      x.cpu.lo[0] = 0x89abcdef;
      x.cpu.hi[0] = 0x01234567;
      x.cpu.hi[1] = -1;
    });
    expect(m.cpu.lo[1]! >>> 0).toBe(0x89abcdef);
    expect(m.cpu.hi[1]).toBe(0);
    expect(m.cpu.hi[2]).toBe(0x01234567);
  });
});

describe("CLFLUSH, PREFETCH, CMPXCHG16B, MASKMOVDQU", () => {
  it("CLFLUSH faults as a byte load: #PF on a not-present page, #GP(0) for a non-canonical address", () => {
    expect(run("0fae38 f4", rax(DATA)).vector).toBe(-1);
    const pf = run("0fae38 f4", rax(HOLE + 0x40));
    expect(pf.vector).toBe(Vector.PF);
    expect(pf.m.cpu.cr2).toBe(HOLE + 0x40);
    expect(run("0fae38 f4", rax(2 ** 47)).vector).toBe(Vector.GP);
  });

  it("PREFETCHh and PREFETCHW never fault (a not-present page, a non-canonical address)", () => {
    for (const code of ["0f1800", "0f1808", "0f1810", "0f1818", "0f0d08", "0f0d00"]) {
      expect(run(`${code} f4`, rax(HOLE)).vector).toBe(-1);
      expect(run(`${code} f4`, rax(2 ** 47)).vector).toBe(-1);
    }
  });

  it("CMPXCHG16B: #GP(0) when not 16-byte aligned; the register form is #UD; CMPXCHG8B needs no alignment", () => {
    expect(run("480fc70b f4").vector).toBe(-1);
    expect(run("f0480fc70b f4").vector).toBe(-1);
    expect(run("480fc74b08 f4").vector).toBe(Vector.GP);
    expect(run("480fc7c8 f4").vector).toBe(Vector.UD);
    expect(run("0fc74b01 f4").vector).toBe(-1);
  });

  it("MASKMOVDQU with an all-zero mask touches no memory (no fault at a non-canonical rDI)", () => {
    const { vector } = run("660ff7c1 f4", (m) => m.cpu.setRegFromNumber(7, 2 ** 47));
    expect(vector).toBe(-1);
    const { vector: v2 } = run("660ff7c1 f4", (m) => {
      m.cpu.setRegFromNumber(7, 2 ** 47);
      m.cpu.fpu.xmm[16] = 0x80; // xmm1 byte 0 selects
    });
    expect(v2).toBe(Vector.GP);
  });
});

describe("SSE floating-point exceptions (the host cannot run CR4.OSXMMEXCPT = 0)", () => {
  const xm = (m: TestMachine) => {
    m.cpu.fpu.mxcsr = 0x1f80 & ~(1 << 9); // ZE unmasked
    m.cpu.fpu.xd[0] = 0x3f800000; // xmm0 = 1.0
    m.cpu.fpu.xd[4] = 0; // xmm1 = 0.0
  };
  it("an unmasked exception is #XM with CR4.OSXMMEXCPT = 1 and #UD with 0; the flag is set, the destination unchanged", () => {
    const a = run("f30f5ec1 f4", (m) => {
      xm(m);
      m.cpu.cr4 |= CR4_OSXMMEXCPT;
    }); // divss xmm0, xmm1
    expect(a.vector).toBe(Vector.XM);
    expect(a.m.cpu.fpu.mxcsr & 0x3f).toBe(MXCSR_ZE);
    expect(a.m.cpu.fpu.xd[0]).toBe(0x3f800000);
    const b = run("f30f5ec1 f4", xm);
    expect(b.vector).toBe(Vector.UD);
    expect(b.m.cpu.fpu.xd[0]).toBe(0x3f800000);
  });

  it("masked: 0/0 gives the QNaN indefinite with IE; CVTTSS2SI of a NaN gives the integer indefinite", () => {
    // divss xmm1, xmm1 (0/0); cvttss2si eax, xmm1; cvttss2si rcx, xmm1
    const { m, vector } = run("f30f5ec9 f30f2cc1 f3480f2cc9 f4", (x) => (x.cpu.fpu.xd[4] = 0));
    expect(vector).toBe(-1);
    expect(m.cpu.fpu.xd[4]! >>> 0).toBe(0xffc00000);
    expect(m.cpu.lo[0]! >>> 0).toBe(0x80000000);
    expect([m.cpu.lo[1]! >>> 0, m.cpu.hi[1]! >>> 0]).toEqual([0, 0x80000000]);
    expect(m.cpu.fpu.mxcsr & 0x3f).toBe(MXCSR_IE);
  });

  it("COMISS with an unmasked invalid operand is #XM with EFLAGS unchanged", () => {
    const { m, vector } = run("0f2fc1 f4", (x) => {
      x.cpu.cr4 |= CR4_OSXMMEXCPT;
      x.cpu.fpu.mxcsr = 0x1f80 & ~(1 << 7); // IM clear
      x.cpu.fpu.xd[0] = 0x7fc00000; // QNaN: COMISS signals on it
      x.cpu.setArithFlags(0);
    });
    expect(vector).toBe(Vector.XM);
    expect(m.cpu.getFlags() & 0x45).toBe(0);
  });
});

describe("CPUID reports what is implemented", () => {
  it("leaf 1: FXSR, SSE, SSE2, CLFSH (64-byte lines), CX8, CX16; no MMX, SSE3+, XSAVE or AVX (the FPU bit: fpu.test.ts)", () => {
    const m = machine64(hex("f4"));
    const out = new Int32Array(4);
    defaultCpuid(m.cpu, 1, 0, out);
    const [, ebx, ecx, edx] = [out[0]!, out[1]!, out[2]! >>> 0, out[3]! >>> 0];
    for (const bit of [CPUID_1_EDX_FXSR, CPUID_1_EDX_SSE, CPUID_1_EDX_SSE2, CPUID_1_EDX_CLFSH, CPUID_1_EDX_CX8]) expect(edx & bit).toBe(bit);
    expect(ecx & CPUID_1_ECX_CX16).toBe(CPUID_1_ECX_CX16);
    expect((ebx >>> 8) & 0xff).toBe(8);
    expect(edx & (1 << 23)).toBe(0); // MMX
    for (const bit of [0, 9, 12, 19, 20, 26, 27, 28, 29]) expect((ecx >>> bit) & 1, `ECX bit ${bit}`).toBe(0); // SSE3, SSSE3, FMA, SSE4.1/4.2, XSAVE, OSXSAVE, AVX, F16C
  });
});

describe("SSE in 32-bit protected mode", () => {
  it("66/F3 stay mandatory prefixes (no operand-size change); 40-4F are INC/DEC, not REX; 32-bit addressing", () => {
    const memory = new MachineMemory(4 * 1024 * 1024);
    const cpu = new Cpu({ memory, ports: new PortIoBus() });
    cpu.resetToFlat32();
    cpu.cr4 |= CR4_OSFXSR;
    // mov eax, 0x40000001; movd xmm0, eax; paddd xmm0, xmm0; movd ecx, xmm0; mov ebx, 0x2000;
    // movdqu [ebx], xmm0; inc eax (0x40: INC in 32-bit code); pextrw edx, xmm0, 1; hlt
    memory.writeBytes(0x1000, hex("b801000040 660f6ec0 660ffec0 660f7ec1 bb00200000 f30f7f03 40 660fc5d001 f4"));
    cpu.rip = 0x1000;
    cpu.run(100);
    expect(cpu.lo[1]! >>> 0).toBe(0x80000002);
    expect((memory.read32(0x2000) as number) >>> 0).toBe(0x80000002);
    expect(memory.read32(0x2004)).toBe(0);
    expect(cpu.lo[0]! >>> 0).toBe(0x40000002);
    expect(cpu.lo[2]! >>> 0).toBe(0x8000);
  });
});
