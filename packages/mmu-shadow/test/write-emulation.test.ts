/** The emulated page-table store forms, on instructions as the decoder describes them. */
import { describe, expect, it } from "vitest";
import { Insn } from "@vtlab/cpu-vmx";
import { RFLAGS_CF, RFLAGS_ZF, emulatePteStore } from "../src/index.js";

function insn(fields: Partial<Insn>): Insn {
  const i = new Insn(() => undefined);
  Object.assign(i, { isMem: true, opSize: 8, lock: true, ...fields });
  return i;
}

const regs = () => ({ lo: new Int32Array(16), hi: new Int32Array(16) });

describe("emulatePteStore", () => {
  it("MOV r/m64, r64 and MOV r/m64, imm32 (sign-extended)", () => {
    const r = regs();
    r.lo[3] = 0x1234_5007;
    r.hi[3] = 0x8000_0000 | 0;
    expect(emulatePteStore(insn({ opcode: 0x89, reg: 3 }), 0, 0, r.lo, r.hi, 0)).toMatchObject({ write: true, lo: 0x1234_5007, hi: 0x8000_0000 });
    expect(emulatePteStore(insn({ opcode: 0xc7, reg: 0, imm: -2, immHi: -1 }), 0, 0, r.lo, r.hi, 0)).toMatchObject({ lo: 0xffff_fffe, hi: 0xffff_ffff });
    expect(emulatePteStore(insn({ opcode: 0x89, reg: 3, opSize: 4 }), 0, 7, r.lo, r.hi, 0)).toMatchObject({ lo: 0x1234_5007, hi: 0 });
  });

  it("XCHG returns the old entry in the register", () => {
    const r = regs();
    r.lo[0] = 0x5003;
    expect(emulatePteStore(insn({ opcode: 0x87, reg: 0 }), 0x4003, 1, r.lo, r.hi, 0)).toMatchObject({ lo: 0x5003, hi: 0, reg: 0, regLo: 0x4003, regHi: 1 });
  });

  it("LOCK CMPXCHG: equal stores and sets ZF; different loads RAX and clears ZF", () => {
    const r = regs();
    r.lo[0] = 0x4003;
    r.lo[2] = 0x4001;
    const ok = emulatePteStore(insn({ opcode: 0x1b1, reg: 2 }), 0x4003, 0, r.lo, r.hi, 0);
    expect(ok).toMatchObject({ write: true, lo: 0x4001, reg: -1 });
    expect(typeof ok !== "string" && ok.flags & RFLAGS_ZF).toBe(RFLAGS_ZF);
    const bad = emulatePteStore(insn({ opcode: 0x1b1, reg: 2 }), 0x4063, 0, r.lo, r.hi, 0);
    expect(bad).toMatchObject({ write: false, reg: 0, regLo: 0x4063 });
    expect(typeof bad !== "string" && bad.flags & (RFLAGS_ZF | RFLAGS_CF)).toBe(RFLAGS_CF); // 0x4003 < 0x4063
  });

  it("LOCK OR/AND with a register, imm8 and imm32; BTS/BTR with CF = the old bit", () => {
    const r = regs();
    r.lo[1] = 0x20;
    expect(emulatePteStore(insn({ opcode: 0x09, reg: 1 }), 0x4001, 0, r.lo, r.hi, 0)).toMatchObject({ lo: 0x4021 });
    expect(emulatePteStore(insn({ opcode: 0x83, reg: 4, imm: -3, immHi: -1 }), 0x4003, 0x8000_0000, r.lo, r.hi, 0)).toMatchObject({ lo: 0x4001, hi: 0x8000_0000 });
    expect(emulatePteStore(insn({ opcode: 0x81, reg: 1, imm: 0x40, immHi: 0 }), 0x4003, 0, r.lo, r.hi, 0)).toMatchObject({ lo: 0x4043 });
    const bts = emulatePteStore(insn({ opcode: 0x1ba, reg: 5, imm: 63 }), 0x4003, 0, r.lo, r.hi, 0);
    expect(bts).toMatchObject({ hi: 0x8000_0000, flags: 0, flagsMask: RFLAGS_CF });
    expect(emulatePteStore(insn({ opcode: 0x1ba, reg: 6, imm: 1 }), 0x4003, 0, r.lo, r.hi, 0)).toMatchObject({ lo: 0x4001, flags: RFLAGS_CF });
    r.lo[1] = 5;
    expect(emulatePteStore(insn({ opcode: 0x1ab, reg: 1 }), 0x4003, 0, r.lo, r.hi, 0)).toMatchObject({ lo: 0x4023, flags: 0 });
    expect(emulatePteStore(insn({ opcode: 0x1b3, reg: 1 }), 0x4023, 0, r.lo, r.hi, 0)).toMatchObject({ lo: 0x4003, flags: RFLAGS_CF });
  });

  it("other forms and sizes are named, not emulated", () => {
    const r = regs();
    expect(emulatePteStore(insn({ opcode: 0x01, reg: 0, mnemonic: "add" }), 0, 0, r.lo, r.hi, 0)).toMatch(/add .*not an emulated page-table store form/);
    expect(emulatePteStore(insn({ opcode: 0x89, opSize: 2 }), 0, 0, r.lo, r.hi, 0)).toMatch(/2-byte operand/);
    expect(emulatePteStore(insn({ opcode: 0x89, isMem: false }), 0, 0, r.lo, r.hi, 0)).toMatch(/without a memory operand/);
  });
});

describe("emulatePteStore bit-string offsets", () => {
  it("a register bit offset outside the operand is refused by name", () => {
    const r = regs();
    r.lo[1] = 64;
    expect(emulatePteStore(insn({ opcode: 0x1ab, reg: 1 }), 0, 0, r.lo, r.hi, 0)).toMatch(/bit offset 64 outside/);
  });
});
