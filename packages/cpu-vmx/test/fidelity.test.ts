/**
 * Exceptions and system state as the SDM specifies them, each case found by a guest (issue 18,
 * "Fidelity"): ICEBP, #SS for non-canonical stack references, DR6/DR7 reset values, MOV SS /
 * POP SS holding a single-step trap, IA32_DEBUGCTL, IA32_PAT memory types, LGDT/LIDT bases,
 * far transfers and their privilege checks. Machine code was assembled with GNU as (Intel
 * syntax; the source is in the comment beside each snippet).
 */
import { describe, expect, it } from "vitest";
import { Vector } from "@vtlab/arch";
import { MachineMemory } from "@vtlab/arch";
import {
  CPU_USE_MSR_BITMAPS,
  Cpu,
  DR6_INIT,
  DR7_INIT,
  ENTRY_LOAD_DEBUG_CONTROLS,
  ENTRY_LOAD_IA32_PAT,
  EXIT_SAVE_DEBUG_CONTROLS,
  EXIT_SAVE_IA32_PAT,
  ExitReason,
  Seg,
  VmcsField as F,
  vmEntry,
} from "@vtlab/cpu-vmx";
import { CODE, GDT, STACK_TOP, machine64, type TestMachine } from "./machine.js";
import { guestVmcs } from "./vmx-fixture.js";

const IDT = 0x8000;
const TSS = 0x7000;
const HANDLERS = 0x30_0000;
const RSP0 = 0xa_0000;

/** Every gate (interrupt gate, DPL 0) points at HANDLERS + 16v, where a HLT waits. */
function installIdt(m: TestMachine): void {
  const { memory, cpu } = m;
  for (let v = 0; v < 256; v++) {
    const target = HANDLERS + v * 16;
    memory.write32(IDT + v * 16, (0x08 << 16) | (target & 0xffff));
    memory.write32(IDT + v * 16 + 4, (target & 0xffff0000) | 0x8e00);
    memory.write32(IDT + v * 16 + 8, 0);
    memory.write8(target, 0xf4);
  }
  memory.write64(TSS + 4, RSP0, 0);
  cpu.idtrBase = IDT;
  cpu.idtrLimit = 256 * 16 - 1;
  cpu.tr.base = TSS;
  cpu.tr.limit = 0x67;
}

/** The handler the CPU stopped in and the frame it pushed. */
function landed(m: TestMachine, withErrorCode: boolean) {
  const vector = (m.cpu.rip - 1 - HANDLERS) / 16;
  const sp = m.cpu.regAddr(4);
  const at = (k: number) => m.memory.read32(sp + 8 * k) as number;
  const base = withErrorCode ? 1 : 0;
  return { vector, errorCode: withErrorCode ? at(0) : undefined, rip: at(base), cs: at(base + 1), rflags: at(base + 2), rsp: at(base + 3), ss: at(base + 4) };
}

function run(code: string): TestMachine {
  const m = machine64(code);
  installIdt(m);
  expect(m.cpu.run(1000).kind).toBe("hlt");
  return m;
}

describe("ICEBP (F1): a #DB trap of its own event type", () => {
  it("is decoded as int1 and delivers #DB as a trap: RIP past it, DR6 untouched", () => {
    // mov eax, 1; icebp; mov eax, 2; hlt
    const m = run("b801000000f1b802000000f4");
    expect(landed(m, false)).toMatchObject({ vector: Vector.DB, rip: CODE + 6 });
    expect(m.cpu.dr[6]).toBe(DR6_INIT);
    expect(m.cpu.lo[0]).toBe(1);
  });

  it("intercepted #DB exits with interruption type 5 (privileged software exception) and length 1 (SDM 27.2.4)", () => {
    const m = machine64("b801000000f1b802000000f4");
    const v = guestVmcs(m, { exceptionBitmap: 1 << Vector.DB });
    expect(vmEntry(m.cpu, v, true)).toBeUndefined();
    const r = m.cpu.run(100);
    if (r.kind !== "vmexit") throw new Error(r.kind);
    expect(r.exit).toMatchObject({ reason: ExitReason.ExceptionOrNmi, qualification: 0, instructionLength: 1, interruption: { vector: Vector.DB, type: 5 } });
    expect(v.read32(F.VM_EXIT_INTR_INFO)).toBe((0x8000_0000 | (5 << 8) | 1) >>> 0);
    expect(v.readNatural(F.GUEST_RIP)).toBe(CODE + 5); // at the instruction
  });

  it("re-injected as type 5 it is delivered with RIP past the instruction, and a fault during that delivery reports IDT-vectoring type 5", () => {
    const m = machine64("b801000000f1b802000000f4");
    const v = guestVmcs(m, { exceptionBitmap: 1 << Vector.PF });
    v.setNatural(F.GUEST_RIP, CODE + 5);
    v.setField(F.VM_ENTRY_INTR_INFO_FIELD, (0x8000_0000 | (5 << 8) | 1) >>> 0);
    v.setField(F.VM_ENTRY_INSTRUCTION_LEN, 1);
    // The #DB frame push faults: the stack is not mapped.
    v.setNatural(F.GUEST_RSP, 0x4000_1000);
    expect(vmEntry(m.cpu, v, true)).toBeUndefined();
    const r = m.cpu.run(100);
    if (r.kind !== "vmexit") throw new Error(r.kind);
    expect(r.exit.idtVectoring).toMatchObject({ vector: Vector.DB, type: 5 });
    expect(r.exit.instructionLength).toBe(1);
  });
});

describe("#SS(0) for non-canonical references through SS (SDM 6.15, Vol. 1 3.3.7.1)", () => {
  it.each([
    ["[rsp + rbx]", "48bb0000000000800000488b041cf4"], // mov rbx, 0x800000000000; mov rax, [rsp+rbx]; hlt
    ["[rbp]", "48bd0000000000800000488b4500f4"], // mov rbp, 0x800000000000; mov rax, [rbp]; hlt
    ["ss:[rax]", "48b8000000000080000036488b00f4"], // mov rax, 0x800000000000; mov rax, ss:[rax]; hlt
    ["push ax below a non-canonical RSP", "48bc03000000008000006650f4"], // mov rsp, 0x800000000003; push ax; hlt
  ])("%s is #SS(0)", (_name, code) => {
    const m = machine64(code);
    installIdt(m);
    // The #SS handler runs on IST 1: the push case leaves RSP itself non-canonical.
    m.memory.write64(TSS + 0x24, 0x9_0000, 0);
    const gate = IDT + Vector.SS * 16 + 4;
    m.memory.write32(gate, (m.memory.read32(gate) as number) | 1); // IST 1
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(landed(m, true)).toMatchObject({ vector: Vector.SS, errorCode: 0, rip: CODE + 10 });
  });

  it("the same reference through another base register stays #GP(0)", () => {
    // mov rax, 0x800000000000; mov rbx, [rax]; hlt
    const m = run("48b80000000000800000488b18f4");
    expect(landed(m, true)).toMatchObject({ vector: Vector.GP, errorCode: 0 });
  });

  it("INVLPG of a non-canonical stack-relative address is a no-op, not a fault", () => {
    // mov rax, 0x800000000000; invlpg [rbp+rax]; hlt
    const m = run("48b800000000008000000f017c0500f4");
    expect(m.cpu.rip).toBe(CODE + 16);
  });
});

describe("debug registers and IA32_DEBUGCTL", () => {
  it("DR6 and DR7 reset to FFFF0FF0H and 400H and keep their fixed bits when written (SDM 17.2)", () => {
    expect(new Cpu({ memory: new MachineMemory(1 << 20) }).dr[6]).toBe(0xffff_0ff0);
    expect(DR7_INIT).toBe(0x400);
    // mov rax, dr6; mov rbx, dr7; xor ecx, ecx; mov dr6, rcx; mov rdx, dr6; hlt
    const m = run("0f21f00f21fb31c90f23f10f21f2f4");
    expect(m.cpu.rip).toBe(CODE + 15);
    expect([m.cpu.lo[0]! >>> 0, m.cpu.lo[3], m.cpu.lo[2]! >>> 0]).toEqual([0xffff_0ff0, 0x400, 0xffff_0ff0]);
    expect(m.cpu.hi[0]).toBe(0);
  });

  it("MOV DR7 with bits 63:32 set is #GP(0)", () => {
    // mov rax, 0x100000400; mov dr7, rax; hlt
    const m = run("48b800040000010000000f23f8f4");
    expect(landed(m, true)).toMatchObject({ vector: Vector.GP, errorCode: 0, rip: CODE + 10 });
    expect(m.cpu.dr[7]).toBe(0x400);
  });

  it("IA32_DEBUGCTL (1D9H) reads back LBR and BTF; reserved bits are #GP(0)", () => {
    // mov ecx, 0x1d9; mov eax, 3; xor edx, edx; wrmsr; xor eax, eax; rdmsr; mov esi, eax; mov eax, 4; wrmsr; hlt
    const m = run("b9d9010000b80300000031d20f3031c00f3289c6b8040000000f30f4");
    expect(m.cpu.lo[6]).toBe(3);
    expect(landed(m, true)).toMatchObject({ vector: Vector.GP, errorCode: 0, rip: CODE + 25 });
  });
});

describe("MOV SS and POP SS hold a single-step trap over the next instruction (SDM 6.8.3)", () => {
  it("without MOV SS, a single step traps after the first instruction run with TF = 1", () => {
    // pushfq; or qword ptr [rsp], 0x100; popfq; nop; nop; hlt
    const m = run("9c48810c24000100009d9090f4");
    expect(landed(m, false)).toMatchObject({ vector: Vector.DB, rip: CODE + 11 });
    expect(m.cpu.dr[6]! & 0x4000).toBe(0x4000);
  });

  it("a MOV SS run with TF = 1 traps after the instruction that follows it", () => {
    // mov ax, 0x10; pushfq; or qword ptr [rsp], 0x100; popfq; mov ss, ax; nop; nop; hlt
    const m = run("66b810009c48810c24000100009d8ed09090f4");
    expect(landed(m, false)).toMatchObject({ vector: Vector.DB, rip: CODE + 17 });
  });

  it("the held trap is taken even when the next instruction clears TF", () => {
    // mov ax, 0x10; pushfq; or qword ptr [rsp], 0x100; popfq; mov ss, ax; popfq (pops 0); nop; hlt
    const m = run("66b810009c48810c24000100009d8ed09d90f4");
    expect(landed(m, false)).toMatchObject({ vector: Vector.DB, rip: CODE + 17 });
    expect(landed(m, false).rflags & 0x100).toBe(0);
  });

  it("a VM exit in the MOV SS shadow saves 'blocking by MOV SS' (interruptibility bit 1), and entry restores it", () => {
    // mov ax, 0x10; mov ss, ax; cpuid; hlt   (CPUID always exits)
    const m = machine64("66b810008ed00fa2f4");
    const v = guestVmcs(m);
    expect(vmEntry(m.cpu, v, true)).toBeUndefined();
    const r = m.cpu.run(100);
    if (r.kind !== "vmexit") throw new Error(r.kind);
    expect(r.exit.reason).toBe(ExitReason.Cpuid);
    expect(v.read32(F.GUEST_INTERRUPTIBILITY_INFO) & 3).toBe(2);
    v.setField(F.GUEST_INTERRUPTIBILITY_INFO, 2);
    v.setNatural(F.GUEST_RIP, v.readNatural(F.GUEST_RIP) + 2);
    expect(vmEntry(m.cpu, v, false)).toBeUndefined();
    expect(m.cpu.movSsBlocking).toBe(true);
  });
});

describe("IA32_PAT (277H)", () => {
  it("accepts the memory types 0, 1, 4-7 and refuses reserved ones (2, 3, 8+) with #GP(0) (SDM 11.12.2)", () => {
    // mov ecx, 0x277; mov eax, 0x00070106; mov edx, 0x00070406; wrmsr; rdmsr; mov esi, eax;
    // mov eax, 0x00070206; wrmsr; hlt
    const m = run("b977020000b806010700ba060407000f300f3289c6b8060207000f30f4");
    expect(m.cpu.lo[6]).toBe(0x0007_0106);
    expect(landed(m, true)).toMatchObject({ vector: Vector.GP, errorCode: 0, rip: CODE + 26 });
    expect(m.cpu.msrs.get(0x277)).toEqual({ lo: 0x0007_0106, hi: 0x0007_0406 });
  });
});

describe("IA32_PAT and IA32_DEBUGCTL as VMCS guest state", () => {
  // mov ecx, 0x277; mov eax, 0x00070106; mov edx, 0x00070406; wrmsr; mov ecx, 0x1d9; rdmsr; mov esi, eax; cpuid; hlt
  const code = "b977020000b806010700ba060407000f30b9d90100000f3289c60fa2f4";
  const withControls = (m: TestMachine) => {
    const v = guestVmcs(m, { proc: CPU_USE_MSR_BITMAPS }); // an all-zero MSR bitmap: no MSR exits
    v.setField(F.VM_ENTRY_CONTROLS, (v.read32(F.VM_ENTRY_CONTROLS) | ENTRY_LOAD_IA32_PAT | ENTRY_LOAD_DEBUG_CONTROLS) >>> 0);
    v.setField(F.VM_EXIT_CONTROLS, (v.read32(F.VM_EXIT_CONTROLS) | EXIT_SAVE_IA32_PAT | EXIT_SAVE_DEBUG_CONTROLS) >>> 0);
    return v;
  };

  it("VM entry loads them (load IA32_PAT, load debug controls) and the exit saves them (save IA32_PAT, save debug controls)", () => {
    const m = machine64(code);
    const v = withControls(m);
    v.setField(F.GUEST_IA32_DEBUGCTL, 1);
    v.setField(F.GUEST_DR7, 0x401);
    expect(vmEntry(m.cpu, v, true)).toBeUndefined();
    expect(m.cpu.dr[7]).toBe(0x401);
    const r = m.cpu.run(100);
    if (r.kind !== "vmexit") throw new Error(r.kind);
    expect(r.exit.reason).toBe(ExitReason.Cpuid);
    expect(m.cpu.lo[6]).toBe(1); // RDMSR IA32_DEBUGCTL read the loaded value
    expect(v.readHalves(F.GUEST_IA32_PAT)).toEqual({ lo: 0x0007_0106, hi: 0x0007_0406 });
    expect(v.readHalves(F.GUEST_IA32_DEBUGCTL)).toEqual({ lo: 1, hi: 0 });
    expect(v.readNatural(F.GUEST_DR7)).toBe(0x401);
  });

  it("without the controls the fields are neither loaded nor saved", () => {
    const m = machine64(code);
    const v = guestVmcs(m, { proc: CPU_USE_MSR_BITMAPS });
    v.setField(F.GUEST_IA32_DEBUGCTL, 1);
    expect(vmEntry(m.cpu, v, true)).toBeUndefined();
    m.cpu.run(100);
    expect(m.cpu.lo[6]).toBe(0);
    expect(v.readHalves(F.GUEST_IA32_PAT)).toEqual({ lo: 0x0007_0406, hi: 0x0007_0406 }); // the power-up value setupFlat64Guest wrote
  });

  it("a reserved memory type in GUEST_IA32_PAT, or reserved IA32_DEBUGCTL bits, fail VM entry with invalid guest state (SDM 27.3.1.1)", () => {
    const m = machine64(code);
    const v = withControls(m);
    v.setField(F.GUEST_IA32_PAT, 0x0007_0406, 0x0007_0402);
    expect(vmEntry(m.cpu, v, true)).toMatchObject({ kind: "entry-failure", exit: { reason: (0x8000_0000 | ExitReason.InvalidGuestState) >>> 0 } });
    v.setField(F.GUEST_IA32_PAT, 0x0007_0406, 0x0007_0406);
    v.setField(F.GUEST_IA32_DEBUGCTL, 1 << 5);
    expect(vmEntry(m.cpu, v, true)).toMatchObject({ kind: "entry-failure", message: expect.stringContaining("GUEST_IA32_DEBUGCTL") });
  });
});

describe("LGDT/LIDT and far transfers", () => {
  it("LGDT with a non-canonical base is #GP(0) in 64-bit mode", () => {
    // mov rax, 0x800000000000; mov [0x600002], rax; mov word ptr [0x600000], 0x17; lgdt [0x600000]; hlt
    const m = run("48b80000000000800000488904250200600066c704250000600017000f01142500006000f4");
    expect(landed(m, true)).toMatchObject({ vector: Vector.GP, errorCode: 0 });
    expect(m.cpu.gdtrBase).not.toBe(2 ** 47);
  });

  it("JMP FAR to a selector with RPL 3 from CPL 0 is #GP(selector), not #UD", () => {
    // mov dword ptr [0x600000], 0x100020; mov word ptr [0x600004], 0x2b; jmp fword ptr [0x600000]; hlt
    const m = run("c70425000060002000100066c70425040060002b00ff2c2500006000f4");
    expect(landed(m, true)).toMatchObject({ vector: Vector.GP, errorCode: 0x28 });
    expect(m.cpu.cpl).toBe(0);
  });

  it("RETF to RPL 3 returns to the outer ring: pops RSP and SS, CPL becomes 3", () => {
    // push 0x23; push 0x70000; push 0x2b; push 0x100040; retfq   ... at 0x100040: hlt (#GP at CPL 3)
    const m = machine64("6a2368000007006a2b684000100048cb");
    installIdt(m);
    m.memory.write8(CODE + 0x40, 0xf4);
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(landed(m, true)).toMatchObject({ vector: Vector.GP, errorCode: 0, rip: CODE + 0x40, cs: 0x2b, rsp: 0x70000, ss: 0x23 });
    expect(m.cpu.regAddr(4)).toBeLessThan(RSP0); // the handler runs on RSP0 at CPL 0
  });

  it("RETF with RPL below CPL is #GP(selector) and leaves RSP as it was", () => {
    // user code at CPL 3: push 0x08; push 0x100040; retfq
    const m = machine64("6a08684000100048cb");
    installIdt(m);
    m.cpu.cpl = 3;
    const cs = m.cpu.seg[Seg.CS]!;
    cs.selector = 0x2b;
    cs.attr = 0xa0fb;
    for (const s of [Seg.ES, Seg.SS, Seg.DS]) {
      m.cpu.seg[s]!.selector = 0x23;
      m.cpu.seg[s]!.attr = 0xc0f3;
    }
    m.cpu.updateMode();
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(landed(m, true)).toMatchObject({ vector: Vector.GP, errorCode: 0x08, rsp: STACK_TOP - 16 });
  });
});

describe("LAR, LSL, VERR, VERW (SDM Vol. 2)", () => {
  it("at CPL 0: access rights and limit of a visible descriptor; ZF = 0 and the destination kept past the GDT limit", () => {
    // mov ax, 0x10; mov ebx, 0x55; lar ebx, ax; setz cl; lsl edx, ax; setz ch; mov si, 0x30; mov edi, 0x77;
    // lar edi, si; setz r8b; mov ax, 0x08; verr ax; setz r9b; verw ax; setz r10b; mov ax, 0x10; verw ax;
    // setz r11b; mov ebp, 0xffffffff; lar bp, ax; hlt
    const m = run("66b81000bb550000000f02d80f94c10f03d00f94c566be3000bf770000000f02fe410f94c066b808000f00e0410f94c10f00e8410f94c266b810000f00e8410f94c3bdffffffff660f02e8f4");
    const c = m.cpu;
    expect(c.counters.unsupported.size).toBe(0);
    expect(c.lo[3]! >>> 0).toBe(0x00c0_9200); // flat data: G, D/B, P, DPL 0, S, type 2 (bits 23:20, 15:8)
    expect(c.lo[2]! >>> 0).toBe(0xffff_ffff); // limit FFFFFH in 4 KiB units
    expect(c.lo[1]! & 0xffff).toBe(0x0101); // ZF for LAR and LSL
    expect([c.lo[7], c.lo[8]! & 0xff]).toEqual([0x77, 0]); // selector 0x30 is past the GDT limit
    expect([c.lo[9]! & 0xff, c.lo[10]! & 0xff, c.lo[11]! & 0xff]).toEqual([1, 0, 1]); // code readable, not writable; data writable
    expect(c.lo[5]! >>> 0).toBe(0xffff_9200); // 16-bit LAR: bits 15:8 only, upper bits kept
  });

  it("at CPL 3: a DPL-0 data segment is neither visible to LAR nor readable; the user code segment is", () => {
    // mov ax, 0x10; mov ebx, 0x55; lar ebx, ax; setz cl; verr ax; setz ch; mov ax, 0x2b; verr ax; setz dl; lar esi, ax; hlt (#GP at CPL 3)
    const m = machine64("66b81000bb550000000f02d80f94c10f00e00f94c566b82b000f00e00f94c20f02f0f4");
    installIdt(m);
    m.cpu.cpl = 3;
    const cs = m.cpu.seg[Seg.CS]!;
    cs.selector = 0x2b;
    cs.attr = 0xa0fb;
    m.cpu.updateMode();
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(landed(m, true).vector).toBe(Vector.GP); // the final HLT
    const c = m.cpu;
    expect([c.lo[3], c.lo[1]! & 0xffff, c.lo[2]! & 0xff]).toEqual([0x55, 0x0000, 1]);
    expect(c.lo[6]! >>> 0).toBe(0x00a0_fa00); // 64-bit user code: L, P, DPL 3, S, type A
  });
});

describe("16-bit code segments (CS.D = 0 in protected mode)", () => {
  it("operand and address size 16: 16-bit ModRM forms, moffs16, LOOP on CX, CALL/RET of IP, 66 for 32-bit operands", () => {
    const memory = new MachineMemory(4 << 20);
    const cpu = new Cpu({ memory });
    // GDT: null, 0x08 flat 32-bit code, 0x10 flat data, 0x18 16-bit code (base 0x100000, limit FFFFH).
    const GDT_AT = 0x1000;
    [[0, 0], [0x0000ffff, 0x00cf9a00], [0x0000ffff, 0x00cf9200], [0x0000ffff, 0x00009a10]].forEach(([lo, hi], k) => memory.write64(GDT_AT + 8 * k, lo!, hi!));
    cpu.gdtrBase = GDT_AT;
    cpu.gdtrLimit = 0x1f;
    // 32-bit: ljmp 0x18, 0x10
    memory.writeBytes(0x10_0000, Uint8Array.from([0xea, 0x10, 0, 0, 0, 0x18, 0]));
    // 16-bit at 0x18:0x10: mov ax, 0x1234; mov bx, 0x2000; mov si, 4; mov [bx+si], ax; mov cx, [bx+si];
    // mov bp, 0x10; lea di, [bp+si+5]; mov eax, 0x89abcdef (66); push ax; pop dx; mov cx, 3; xor ax, ax;
    // l: inc ax; loop l; mov [0x2010], ax; call f; hlt; f: mov word ptr [bp+si], 0x4321; ret
    const code16 = "b83412bb0020be040089008b08bd10008d7a0566b8efcdab89505ab9030031c040e2fda31020e80100f4c7022143c3";
    memory.writeBytes(0x10_0010, Uint8Array.from(code16.match(/../g)!.map((h) => parseInt(h, 16))));
    cpu.rip = 0x10_0000;
    cpu.setReg32(4, 0x8000);
    const r = cpu.run(100);
    expect(r.kind).toBe("hlt");
    expect(cpu.counters.unsupported.size).toBe(0);
    expect(cpu.csD).toBe(false);
    expect(cpu.seg[Seg.CS]!.selector).toBe(0x18);
    expect(memory.read16(0x2004)).toBe(0x1234); // [BX+SI]
    expect(memory.read16(0x2010)).toBe(3); // moffs16 after LOOP counted CX down from 3
    expect(memory.read16(0x14)).toBe(0x4321); // [BP+SI] through SS
    expect(cpu.lo[7]! & 0xffff).toBe(0x19); // LEA DI, [BP+SI+5]
    expect(cpu.lo[2]! & 0xffff).toBe(0xcdef); // PUSH AX / POP DX
    expect(cpu.lo[0]! >>> 0).toBe(0x89ab_0003); // 66 B8: a 32-bit move; then 16-bit XOR/INC keep bits 31:16
    expect(cpu.lo[1]! & 0xffff).toBe(0);
    expect(cpu.rip).toBe(0x10 + code16.indexOf("e80100f4") / 2 + 4); // IP (an offset in CS) past the HLT
    expect(cpu.lo[4]! >>> 0).toBe(0x8000); // the CALL/RET pair and PUSH/POP balanced
  });

  it("67 in 32-bit code selects 16-bit addressing", () => {
    const memory = new MachineMemory(4 << 20);
    const cpu = new Cpu({ memory });
    // mov ebx, 0x12000; mov si, 0x34; mov byte ptr [bx+si], 0x5a (67: [BX+SI] is 0x2034); hlt
    memory.writeBytes(0x10_0000, Uint8Array.from([0xbb, 0x00, 0x20, 0x01, 0x00, 0x66, 0xbe, 0x34, 0x00, 0x67, 0xc6, 0x00, 0x5a, 0xf4]));
    cpu.rip = 0x10_0000;
    expect(cpu.run(10).kind).toBe("hlt");
    expect(memory.read8(0x2034)).toBe(0x5a);
  });
});

describe("the accessed bit of segment descriptors (SDM Vol. 3A 3.4.5.1)", () => {
  const typeByte = (m: TestMachine, base: number, selector: number) => m.memory.read8(base + (selector & 0xfff8) + 5) as number;

  it("MOV DS sets it in the descriptor and in DS's attributes; an accessed descriptor is left alone", () => {
    // mov ax, 0x10; mov ds, ax; mov ax, 0x10; mov es, ax; hlt
    const m = machine64("66b810008ed866b810008ec0f4");
    expect(typeByte(m, GDT, 0x10)).toBe(0x92);
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(typeByte(m, GDT, 0x10)).toBe(0x93);
    expect(m.cpu.seg[Seg.DS]!.attr & 1).toBe(1);
    expect(m.cpu.seg[Seg.ES]!.attr & 1).toBe(1);
    expect(typeByte(m, GDT, 0x08)).toBe(0x9a); // CS was never loaded
  });

  it("RETF to ring 3 sets it for the new CS and SS, and the #GP delivery that follows for the handler's CS", () => {
    // push 0x23; push 0x70000; push 0x2b; push 0x100040; retfq   ... at 0x100040: hlt (#GP at CPL 3)
    const m = machine64("6a2368000007006a2b684000100048cb");
    installIdt(m);
    m.memory.write8(CODE + 0x40, 0xf4);
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(typeByte(m, GDT, 0x2b)).toBe(0xfb);
    expect(typeByte(m, GDT, 0x23)).toBe(0xf3);
    expect(typeByte(m, GDT, 0x08)).toBe(0x9b);
    expect(m.cpu.seg[Seg.CS]!.attr & 1).toBe(1);
  });

  it("in a read-only GDT a clear bit makes the load fault (#PF, an implicit supervisor write) and commits nothing; a set bit is never written", () => {
    // mov ax, 0x10; mov ds, ax; hlt
    const m = machine64("66b810008ed8f4");
    installIdt(m);
    const RO_GDT = 0x40_0000; // the third 2 MiB page, mapped read-only
    for (let k = 0; k < 6 * 8; k++) m.memory.write8(RO_GDT + k, m.memory.read8(GDT + k) as number);
    m.memory.write8(RO_GDT + 0x08 + 5, 0x9b); // the handlers' CS: accessed already
    m.memory.write64(0x4000 + 2 * 8, 0x40_0000 | 0x85, 0); // present, user, not writable, 2 MiB
    m.cpu.gdtrBase = RO_GDT;
    m.cpu.flushTlb(false);
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(landed(m, true)).toMatchObject({ vector: Vector.PF, errorCode: 0x3, rip: CODE + 4 }); // P | W, supervisor
    expect(m.cpu.cr2).toBe(RO_GDT + 0x10 + 5);
    expect(typeByte(m, RO_GDT, 0x10)).toBe(0x92);
    expect(m.cpu.seg[Seg.DS]!.attr).toBe(0xc093); // DS as it was

    // The same load with the data descriptor accessed already: no write, no fault.
    const n = machine64("66b810008ed8f4");
    installIdt(n);
    for (let k = 0; k < 6 * 8; k++) n.memory.write8(RO_GDT + k, n.memory.read8(GDT + k) as number);
    n.memory.write8(RO_GDT + 0x10 + 5, 0x93);
    n.memory.write64(0x4000 + 2 * 8, 0x40_0000 | 0x85, 0);
    n.cpu.gdtrBase = RO_GDT;
    n.cpu.flushTlb(false);
    expect(n.cpu.run(100).kind).toBe("hlt");
    expect(n.cpu.rip).toBe(CODE + 7);
    expect(n.cpu.seg[Seg.DS]!.selector).toBe(0x10);
  });
});
