/**
 * Software interrupts (INT n, INT3, INTO) in 64-bit mode whose delivery fails (SDM Vol. 3A 6.12.1.1,
 * 6.14, and the INT n pseudo-code): the fault is a fault of the INT instruction (the frame's RIP is
 * the INT's own address, not the next instruction), and the gate-DPL check applies to INT3 and INTO
 * as to INT n, giving #GP(vector * 8 + 2) at CPL 3 through a gate of DPL 0. Machine code was
 * assembled with GNU as; each snippet's source is in the comment beside it.
 */
import { describe, expect, it } from "vitest";
import { Vector } from "@vtlab/arch";
import { Seg } from "@vtlab/cpu-vmx";
import { CODE, hex, machine64, type TestMachine } from "./machine.js";

const IDT = 0x8000;
const TSS = 0x7000;
const HANDLERS = 0x30_0000;
const RSP0 = 0xa_0000;
const IST1 = 0x9_0000;

interface IdtOptions {
  notPresent?: number[];
  dpl3?: number[];
  ist1?: number[];
  limit?: number;
}

/** 64-bit interrupt gates: gate v points at HANDLERS + 16v, where a HLT waits. */
function installIdt(m: TestMachine, opts: IdtOptions = {}): void {
  const { memory, cpu } = m;
  for (let v = 0; v < 256; v++) {
    const target = HANDLERS + v * 16;
    const present = !(opts.notPresent ?? []).includes(v);
    const dpl = (opts.dpl3 ?? []).includes(v) ? 3 : 0;
    const ist = (opts.ist1 ?? []).includes(v) ? 1 : 0;
    memory.write32(IDT + v * 16, (0x08 << 16) | (target & 0xffff));
    memory.write32(IDT + v * 16 + 4, (target & 0xffff0000) | (present ? 0x8000 : 0) | (dpl << 13) | 0x0e00 | ist);
    memory.write32(IDT + v * 16 + 8, 0);
    memory.writeBytes(target, hex("f4"));
  }
  memory.write64(TSS + 4, RSP0, 0);
  memory.write64(TSS + 0x24, IST1, 0);
  cpu.idtrBase = IDT;
  cpu.idtrLimit = opts.limit ?? 256 * 16 - 1;
  cpu.tr.base = TSS;
  cpu.tr.limit = 0x67;
}

/** The handler the CPU stopped in and the frame it pushed (64-bit: 8-byte slots). */
function landed(m: TestMachine) {
  const vector = (m.cpu.rip - 1 - HANDLERS) / 16;
  const sp = m.cpu.regAddr(4);
  const at = (k: number) => m.memory.read32(sp + 8 * k) as number;
  return { vector, errorCode: at(0), rip: at(1), cs: at(2), rsp: at(4), ss: at(5) };
}

/** Drop to CPL 3 in 64-bit user code (GDT 0x2b) with a user stack (0x23). */
function toUser(m: TestMachine): void {
  const cpu = m.cpu;
  cpu.cpl = 3;
  const cs = cpu.seg[Seg.CS]!;
  cs.selector = 0x2b;
  cs.attr = 0xa0fb;
  const ss = cpu.seg[Seg.SS]!;
  ss.selector = 0x23;
  ss.attr = 0xc0f3;
  cpu.updateMode();
}

describe("a fault while delivering INT n / INT3 is a fault of the INT instruction (RIP at it)", () => {
  it("INT 0x80 through a not-present gate: #NP(0x80 * 8 + 2) with the frame's RIP at the INT", () => {
    // nop; int $0x80; hlt
    const m = machine64("90cd80f4");
    installIdt(m, { notPresent: [0x80] });
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(landed(m)).toMatchObject({ vector: Vector.NP, errorCode: 0x80 * 8 + 2, rip: CODE + 1, cs: 0x08 });
  });

  it("INT3 through a not-present gate: #NP(3 * 8 + 2) at the INT3", () => {
    // nop; int3; hlt
    const m = machine64("90ccf4");
    installIdt(m, { notPresent: [Vector.BP] });
    m.cpu.run(100);
    expect(landed(m)).toMatchObject({ vector: Vector.NP, errorCode: Vector.BP * 8 + 2, rip: CODE + 1 });
  });

  it("INT n beyond the IDT limit: #GP(n * 8 + 2) at the INT", () => {
    // nop; int $0x40; hlt
    const m = machine64("90cd40f4");
    installIdt(m, { limit: 0x40 * 16 - 1 });
    m.cpu.run(100);
    expect(landed(m)).toMatchObject({ vector: Vector.GP, errorCode: 0x40 * 8 + 2, rip: CODE + 1 });
  });

  it("INT n with a non-canonical RSP: #SS(0) at the INT (the #SS gate on IST1)", () => {
    // movabs $0x800000000010, %rsp; int $0x80; hlt   (the first 8-byte push is at 2^47 + 8)
    const m = machine64("48bc1000000000800000cd80f4");
    installIdt(m, { ist1: [Vector.SS, Vector.DF] });
    m.cpu.run(100);
    expect(landed(m)).toMatchObject({ vector: Vector.SS, errorCode: 0, rip: CODE + 10 });
  });

  it("INT n whose frame lands on an unmapped stack: #PF at the INT, CR2 the stack address", () => {
    // mov $0x40000010, %esp; int $0x80; hlt    (the second GiB is not mapped)
    const m = machine64("bc10000040cd80f4");
    installIdt(m, { ist1: [Vector.PF, Vector.DF] });
    m.cpu.run(100);
    expect(landed(m)).toMatchObject({ vector: Vector.PF, errorCode: 2, rip: CODE + 5 });
    expect(m.cpu.cr2).toBe(0x4000_0008);
  });

  it("a delivery that succeeds still pushes the next instruction's RIP (INT is a trap)", () => {
    const m = machine64("90cd80f4");
    installIdt(m);
    m.cpu.run(100);
    const sp = m.cpu.regAddr(4);
    expect({ vector: (m.cpu.rip - 1 - HANDLERS) / 16, rip: m.memory.read32(sp) }).toEqual({ vector: 0x80, rip: CODE + 3 });
  });
});

describe("gate DPL check for software interrupts at CPL 3 (SDM 6.12.1.1)", () => {
  it("INT3 at CPL 3 through a DPL-0 gate is #GP(3 * 8 + 2), not #BP; the frame's RIP is the INT3", () => {
    // int3; hlt
    const m = machine64("ccf4");
    installIdt(m);
    toUser(m);
    m.cpu.run(100);
    expect(landed(m)).toMatchObject({ vector: Vector.GP, errorCode: Vector.BP * 8 + 2, rip: CODE, cs: 0x2b, ss: 0x23 });
    expect(m.cpu.cpl).toBe(0);
  });

  it("INT 0x80 at CPL 3 through a DPL-0 gate is #GP(0x80 * 8 + 2) at the INT", () => {
    // int $0x80; hlt
    const m = machine64("cd80f4");
    installIdt(m);
    toUser(m);
    m.cpu.run(100);
    expect(landed(m)).toMatchObject({ vector: Vector.GP, errorCode: 0x80 * 8 + 2, rip: CODE, cs: 0x2b });
  });

  it("INTO at CPL 3 is not modelled in 64-bit mode (#UD), and INT3 through a DPL-3 gate gives #BP", () => {
    // int3; hlt
    const m = machine64("ccf4");
    installIdt(m, { dpl3: [Vector.BP] });
    toUser(m);
    m.cpu.run(100);
    const sp = m.cpu.regAddr(4);
    expect({ vector: (m.cpu.rip - 1 - HANDLERS) / 16, rip: m.memory.read32(sp), cs: m.memory.read32(sp + 8) }).toEqual({ vector: Vector.BP, rip: CODE + 1, cs: 0x2b });
    // into (0xce) is invalid in 64-bit mode
    const u = machine64("cef4");
    installIdt(u);
    u.cpu.run(100);
    expect(landed(u).vector).toBe(Vector.UD);
  });

  it("a hardware exception at CPL 3 ignores the gate's DPL (#UD from UD2 through a DPL-0 gate)", () => {
    // ud2; hlt
    const m = machine64("0f0bf4");
    installIdt(m);
    toUser(m);
    m.cpu.run(100);
    const sp = m.cpu.regAddr(4);
    expect({ vector: (m.cpu.rip - 1 - HANDLERS) / 16, rip: m.memory.read32(sp) }).toEqual({ vector: Vector.UD, rip: CODE });
  });
});
