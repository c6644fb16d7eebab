/**
 * The x87 and SSE state-management instructions (exec/fpu.ts) against the SDM: FNINIT's values,
 * FLDCW/FNSTCW/FNSTSW/FNCLEX, FWAIT's #NM and #MF, LDMXCSR/STMXCSR with their #UD/#NM/#GP rules,
 * the FXSAVE layout (Vol. 1 Table 10-2) and FXRSTOR's all-or-nothing load. The host-CPU
 * differential test (differential.test.ts) runs the same instructions natively.
 */
import { describe, expect, it } from "vitest";
import { Vector } from "@vtlab/arch";
import { CPUID_1_EDX_FPU, CR0_EM, CR0_MP, CR0_TS, CR4_OSFXSR, FCW_INIT, MXCSR_DEFAULT, MXCSR_MASK } from "@vtlab/cpu-vmx";
import { hex, machine64, type TestMachine } from "./machine.js";

const IDT = 0x8000;
const HANDLERS = 0x30_0000;
const DATA = 0x40_0000;

/** Every gate lands on a HLT at HANDLERS + 16v. */
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
  return m;
}

/** Run code (hex) ending in HLT; the vector it faulted with, or -1 if it reached its own HLT. */
function run(code: string, setup?: (m: TestMachine) => void): { m: TestMachine; vector: number } {
  const m = withIdt(machine64(hex(code)));
  m.cpu.cr4 |= CR4_OSFXSR;
  setup?.(m);
  m.cpu.run(10_000);
  const vector = m.cpu.rip >= HANDLERS && m.cpu.rip < HANDLERS + 32 * 16 ? (m.cpu.rip - 1 - HANDLERS) / 16 : -1;
  return { m, vector };
}

// mov ebx, DATA (bb imm32) for [rbx] operands
const RBX = `bb${[0, 8, 16, 24].map((k) => ((DATA >>> k) & 0xff).toString(16).padStart(2, "0")).join("")}`;

describe("x87 control instructions", () => {
  it("power-up FCW is 0x0040; FNINIT sets FCW 0x037F, FSW 0, all tags empty (SDM 8.1.5, Table 9-1)", () => {
    // fnstcw [rbx]; fninit; fnstcw [rbx+2]; fnstsw ax; hlt
    const { m, vector } = run(`${RBX} d93b dbe3 d97b02 dfe0 f4`);
    expect(vector).toBe(-1);
    expect(m.memory.read16(DATA)).toBe(0x0040);
    expect(m.memory.read16(DATA + 2)).toBe(FCW_INIT);
    expect(m.cpu.lo[0]! & 0xffff).toBe(0);
    expect(m.cpu.fpu.ftw).toBe(0);
  });

  it("FCW's reserved bits read as the host's do: bit 6 as 1, bits 7 and 15:13 as 0", () => {
    // mov word [rbx], 0xffff; fldcw [rbx]; fnstcw [rbx+2]; mov word [rbx], 0; fldcw [rbx]; fnstcw [rbx+4]; hlt
    const { m } = run(`${RBX} 66c703ffff d92b d97b02 66c7030000 d92b d97b04 f4`);
    expect(m.memory.read16(DATA + 2)).toBe(0x1f7f);
    expect(m.memory.read16(DATA + 4)).toBe(0x0040);
  });

  it("FLDCW loads the control word; FNSTSW m16 stores the status word; FNSTSW AX keeps EAX[31:16]", () => {
    // mov word [rbx], 0x027f; fldcw [rbx]; fnstcw [rbx+2]; mov eax, 0x12345678; fnstsw ax; fnstsw [rbx+4]; hlt
    const { m } = run(`${RBX} 66c7037f02 d92b d97b02 b878563412 dfe0 dd7b04 f4`);
    expect(m.memory.read16(DATA + 2)).toBe(0x027f);
    expect(m.cpu.lo[0]! >>> 0).toBe(0x1234_0000);
    expect(m.memory.read16(DATA + 4)).toBe(0);
  });

  it("an x87 instruction with CR0.EM or CR0.TS is #NM; FWAIT is #NM only with MP and TS both set", () => {
    expect(run("dbe3 f4", (m) => (m.cpu.cr0 |= CR0_TS)).vector).toBe(Vector.NM);
    expect(run("dbe3 f4", (m) => (m.cpu.cr0 |= CR0_EM)).vector).toBe(Vector.NM);
    expect(run("9b f4", (m) => (m.cpu.cr0 |= CR0_TS)).vector).toBe(-1);
    expect(run("9b f4", (m) => (m.cpu.cr0 |= CR0_TS | CR0_MP)).vector).toBe(Vector.NM);
    expect(run("9b f4", (m) => (m.cpu.cr0 |= CR0_EM)).vector).toBe(-1);
  });

  it("FLDCW that unmasks a pending exception sets FSW.ES and B; the next FWAIT is #MF; FNCLEX clears them", () => {
    const pending = (m: TestMachine) => {
      m.cpu.fpu.fcw = FCW_INIT;
      m.cpu.fpu.fsw = 0x0001; // IE, masked
      m.memory.write16(DATA, 0x037e); // IE unmasked
    };
    // fldcw [rbx]; fnstsw ax; fwait; hlt
    const a = run(`${RBX} d92b dfe0 9b f4`, pending);
    expect(a.vector).toBe(Vector.MF);
    expect(a.m.cpu.lo[0]! & 0xffff).toBe(0x8081);
    // fldcw [rbx]; fnclex; fwait; fnstsw ax; hlt
    const b = run(`${RBX} d92b dbe2 9b dfe0 f4`, pending);
    expect(b.vector).toBe(-1);
    expect(b.m.cpu.lo[0]! & 0xffff).toBe(0);
  });

  it("the arithmetic x87 forms execute (exec/x87.ts); with CR0.EM or CR0.TS they are #NM, before their memory operand is read", () => {
    // fninit; fld1; fld qword [rbx]; faddp; fstp qword [rbx+8]; hlt  (1 + 2.5)
    const setup = (m: TestMachine) => m.memory.write64(DATA, 0, 0x4004_0000);
    const ok = run(`${RBX} dbe3 d9e8 dd03 dec1 dd5b08 f4`, setup);
    expect(ok.vector).toBe(-1);
    expect(((ok.m.memory.read32(DATA + 12) as number) >>> 0).toString(16)).toBe("400c0000"); // 3.5
    expect(ok.m.memory.read32(DATA + 8)).toBe(0);
    expect(ok.m.cpu.fpu.ftw).toBe(0);
    for (const bit of [CR0_EM, CR0_TS]) {
      expect(run("d9e8 f4", (m) => (m.cpu.cr0 |= bit)).vector).toBe(Vector.NM); // fld1
      // fld qword [rbx] with RBX unmapped: #NM comes first
      expect(run("48bb0000000000800000 dd03 f4", (m) => (m.cpu.cr0 |= bit)).vector).toBe(Vector.NM);
    }
  });

  it("CPUID.1:EDX reports the FPU (bit 0) now that the x87 runs", () => {
    // mov eax, 1; cpuid; hlt
    const { m } = run("b801000000 0fa2 f4");
    expect(m.cpu.lo[2]! & CPUID_1_EDX_FPU).toBe(1);
  });

  it("an unmasked x87 exception is taken as #MF by the next waiting x87 instruction, not by the faulting one", () => {
    // fninit; fldcw [rbx] (ZE unmasked); fld1; fldz; fdivp (1/0: ZE, ES); fnstsw ax; fld1; hlt
    const r = run(`${RBX} dbe3 d92b d9e8 d9ee def9 dfe0 d9e8 f4`, (m) => m.memory.write16(DATA, 0x037b));
    expect(r.vector).toBe(Vector.MF);
    expect(r.m.cpu.lo[0]! & 0x80ff).toBe(0x8084); // B, ES, ZE
  });
});

describe("MXCSR", () => {
  it("LDMXCSR/STMXCSR round-trip; a bit outside MXCSR_MASK is #GP(0) and MXCSR is unchanged", () => {
    // mov dword [rbx], 0x9fc0; ldmxcsr [rbx]; stmxcsr [rbx+4]; hlt
    const { m } = run(`${RBX} c703c09f0000 0fae13 0fae5b04 f4`);
    expect(m.memory.read32(DATA + 4)).toBe(0x9fc0);
    expect(MXCSR_MASK).toBe(0xffff);
    // mov dword [rbx], 0x11f80; ldmxcsr [rbx]
    const bad = run(`${RBX} c703801f0100 0fae13 f4`);
    expect(bad.vector).toBe(Vector.GP);
    expect(bad.m.cpu.fpu.mxcsr).toBe(MXCSR_DEFAULT);
  });

  it("LDMXCSR is #UD without CR4.OSFXSR or with CR0.EM, #NM with CR0.TS", () => {
    expect(run(`${RBX} 0fae13 f4`, (m) => (m.cpu.cr4 &= ~CR4_OSFXSR)).vector).toBe(Vector.UD);
    expect(run(`${RBX} 0fae13 f4`, (m) => (m.cpu.cr0 |= CR0_EM)).vector).toBe(Vector.UD);
    expect(run(`${RBX} 0fae1b f4`, (m) => (m.cpu.cr0 |= CR0_TS)).vector).toBe(Vector.NM);
  });
});

describe("FXSAVE and FXRSTOR", () => {
  it("FXSAVE writes the SDM Table 10-2 layout (bytes 0-415) and leaves bytes 416-511 alone", () => {
    // fninit; fxsave [rbx]; hlt
    const { m } = run(`${RBX} dbe3 0fae03 f4`, (x) => {
      for (let k = 0; k < 512; k++) x.memory.write8(DATA + k, 0xcc);
      x.cpu.fpu.xmm.fill(0x5a, 16 * 3, 16 * 4);
      x.cpu.fpu.stLo[0] = 0x11111111; // R0 is ST0 after FNINIT (TOP = 0)
      x.cpu.fpu.stHi[0] = 0x11111111;
      x.cpu.fpu.stSe[0] = 0x1111;
    });
    expect(m.memory.read16(DATA)).toBe(FCW_INIT);
    expect(m.memory.read16(DATA + 2)).toBe(0);
    expect(m.memory.read8(DATA + 4)).toBe(0); // abridged tag: all empty
    expect(m.memory.read32(DATA + 24)).toBe(MXCSR_DEFAULT);
    expect(m.memory.read32(DATA + 28)).toBe(MXCSR_MASK);
    expect(m.memory.read8(DATA + 32)).toBe(0x11);
    expect(m.memory.read8(DATA + 42)).toBe(0); // the reserved bytes of an ST slot
    expect(m.memory.read32(DATA + 160 + 48)).toBe(0x5a5a5a5a); // XMM3
    expect(m.memory.read8(DATA + 416)).toBe(0xcc);
    expect(m.memory.read8(DATA + 511)).toBe(0xcc);
  });

  it("FXRSTOR then FXSAVE gives the area back (FXSAVE64: 64-bit FIP and FDP; FXSAVE: FIP, FCS, FDP, FDS)", () => {
    const image = (m: TestMachine) => {
      for (let k = 0; k < 416; k++) m.memory.write8(DATA + k, (k * 7 + 3) & 0xff);
      m.memory.write32(DATA + 24, 0x1f80); // a valid MXCSR
      for (let r = 0; r < 8; r++) for (let k = 10; k < 16; k++) m.memory.write8(DATA + 32 + 16 * r + k, 0);
      m.memory.write8(DATA + 5, 0);
      m.memory.write16(DATA + 6, (m.memory.read16(DATA + 6) as number) & 0x7ff);
      m.memory.write32(DATA + 28, MXCSR_MASK);
      m.memory.write16(DATA, 0x0f7f); // an FCW with its reserved bits as they read (6 set; 7, 15:13 clear)
    };
    // fxrstor64 [rbx]; fxsave64 [rbx+0x200]; hlt
    const w = run(`${RBX} 480fae0b 480fae8300020000 f4`, image);
    expect(w.vector).toBe(-1);
    for (let k = 0; k < 416; k++) expect(w.m.memory.read8(DATA + 0x200 + k), `byte ${k}`).toBe(w.m.memory.read8(DATA + k));
    // 32-bit format: FCS and FDS are 16 bits, the bytes above them are written as 0.
    const n = run(`${RBX} 0fae0b 0fae8300020000 f4`, image);
    expect(n.m.memory.read16(DATA + 0x200 + 12)).toBe(n.m.memory.read16(DATA + 12));
    expect(n.m.memory.read16(DATA + 0x200 + 14)).toBe(0);
    expect(n.m.memory.read16(DATA + 0x200 + 22)).toBe(0);
  });

  it("FXRSTOR with a reserved MXCSR bit is #GP(0) and changes nothing; a misaligned area is #GP(0); CR0.TS is #NM, CR0.EM #UD", () => {
    const bad = run(`${RBX} 0fae0b f4`, (m) => {
      m.memory.write16(DATA, 0x0000); // FCW
      m.memory.write32(DATA + 24, 0x40000); // reserved
    });
    expect(bad.vector).toBe(Vector.GP);
    expect(bad.m.cpu.fpu.fcw).toBe(0x0040);
    expect(run(`${RBX} 0fae4b08 f4`).vector).toBe(Vector.GP); // fxrstor [rbx+8]
    expect(run(`${RBX} 0fae4308 f4`).vector).toBe(Vector.GP); // fxsave [rbx+8]
    expect(run(`${RBX} 0fae03 f4`, (m) => (m.cpu.cr0 |= CR0_TS)).vector).toBe(Vector.NM);
    expect(run(`${RBX} 0fae03 f4`, (m) => (m.cpu.cr0 |= CR0_EM)).vector).toBe(Vector.UD);
  });
});


