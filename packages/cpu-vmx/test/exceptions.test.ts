/**
 * Exception and interrupt delivery through the 64-bit IDT (SDM Vol. 3A 6.14-6.15), the TLB's
 * flush rules (CR3 load, INVLPG, global pages) and self-modifying code. Machine code was
 * assembled with gcc; each snippet's source is in the comment beside it.
 */
import { describe, expect, it } from "vitest";
import { Vector } from "@vtlab/arch";
import { CR4_PAE, CR4_PGE } from "@vtlab/cpu-vmx";
import { CODE, STACK_TOP, hex, machine64, type TestMachine } from "./machine.js";

const IDT = 0x8000;
const TSS = 0x7000;
const HANDLERS = 0x30_0000;
const IST1 = 0x9_0000;
const RSP0 = 0xa_0000;

/** An IDT whose gate v (interrupt gate, DPL 0 unless `dpl`) points at HANDLERS + 16v, where a HLT waits. */
function installIdt(m: TestMachine, opts: { notPresent?: number[]; ist?: Record<number, number>; iret?: number[]; dpl3?: number[] } = {}): void {
  const { memory, cpu } = m;
  for (let v = 0; v < 256; v++) {
    const target = HANDLERS + v * 16;
    const present = !(opts.notPresent ?? []).includes(v);
    const dpl = (opts.dpl3 ?? []).includes(v) ? 3 : 0;
    const ist = opts.ist?.[v] ?? 0;
    memory.write32(IDT + v * 16, (0x08 << 16) | (target & 0xffff));
    memory.write32(IDT + v * 16 + 4, (target & 0xffff0000) | (present ? 0x8000 : 0) | (dpl << 13) | 0x0e00 | ist);
    memory.write32(IDT + v * 16 + 8, 0);
    memory.writeBytes(target, (opts.iret ?? []).includes(v) ? hex("48cf") : hex("f4"));
  }
  memory.write64(TSS + 4, RSP0, 0);
  memory.write64(TSS + 0x24, IST1, 0);
  cpu.idtrBase = IDT;
  cpu.idtrLimit = 256 * 16 - 1;
  cpu.tr.base = TSS;
  cpu.tr.limit = 0x67;
}

/** A 32-bit immediate as little-endian hex. */
const hex32 = (v: number) => [0, 8, 16, 24].map((k) => ((v >>> k) & 0xff).toString(16).padStart(2, "0")).join("");

/** Which handler the CPU stopped in, and the frame it pushed. */
function landed(m: TestMachine, withErrorCode: boolean) {
  const vector = (m.cpu.rip - 1 - HANDLERS) / 16;
  const sp = m.cpu.regAddr(4);
  const at = (k: number) => m.memory.read32(sp + 8 * k) as number;
  const base = withErrorCode ? 1 : 0;
  return {
    vector,
    errorCode: withErrorCode ? at(0) : undefined,
    rip: at(base),
    cs: at(base + 1),
    rflags: at(base + 2),
    rsp: at(base + 3),
    sp,
  };
}

describe("exceptions through the 64-bit IDT", () => {
  it("a non-canonical access is #GP(0) with RIP at the faulting instruction", () => {
    // mov rax, 0x0000800000000000; mov rbx, [rax]; hlt
    const m = machine64("48b80000000000800000488b18f4");
    installIdt(m);
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(landed(m, true)).toMatchObject({ vector: Vector.GP, errorCode: 0, rip: CODE + 10, cs: 0x08 });
  });

  it("#PF pushes the SDM error code and sets CR2", () => {
    // mov rax, 0x40000000; mov qword [rax], 5; hlt   (the second GiB is not mapped)
    const m = machine64("48c7c00000004048c70005000000f4");
    installIdt(m);
    m.cpu.run(100);
    expect(landed(m, true)).toMatchObject({ vector: Vector.PF, errorCode: 0x2, rip: CODE + 7 });
    expect(m.cpu.cr2).toBe(0x4000_0000);
  });

  it("an IRETQ that faults after its pops leaves RSP at the IRET frame (faults are restartable: Linux's sync_core under shadow paging)", () => {
    // push 0x10 (SS); push rsp; pushfq; push 0x30 (CS: beyond the GDT's limit); push CODE + 0x14; iretq; hlt
    const m = machine64(hex(`6a10 54 9c 6a30 68${hex32(CODE + 0x14)} 48cf f4`));
    installIdt(m);
    expect(m.cpu.run(100).kind).toBe("hlt");
    // #GP(0x30) for the CS selector, found after RIP, CS, RFLAGS, RSP and SS were popped: the
    // frame's RSP is where the IRET frame starts, not past it.
    expect(landed(m, true)).toMatchObject({ vector: Vector.GP, errorCode: 0x30, rip: CODE + 11, rsp: STACK_TOP - 40 });
    // The same with a valid CS and an SS beyond the limit: #GP(0x38), CS not loaded, RSP kept.
    const n = machine64(hex(`6a38 54 9c 6a08 68${hex32(CODE + 0x14)} 48cf f4`));
    installIdt(n);
    n.cpu.run(100);
    expect(landed(n, true)).toMatchObject({ vector: Vector.GP, errorCode: 0x38, rip: CODE + 11, cs: 0x08, rsp: STACK_TOP - 40 });
  });

  it("INT3 is a trap: the frame's RIP is past it, and IRETQ resumes there", () => {
    // mov eax, 1; int3; mov eax, 2; hlt
    const m = machine64("b801000000ccb802000000f4");
    installIdt(m, { iret: [Vector.BP] });
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(m.cpu.lo[0]).toBe(2);
    expect(m.cpu.rip).toBe(CODE + 12);
  });

  it("RFLAGS.TF single-steps: #DB (DR6.BS) after the first instruction that starts with TF = 1", () => {
    // pushfq; or qword [rsp], 0x100; popfq; mov eax, 1; mov ebx, 2; hlt
    const m = machine64("9c48810c24000100009db801000000bb02000000f4");
    installIdt(m);
    expect(m.cpu.run(100).kind).toBe("hlt");
    const f = landed(m, false);
    expect(f.vector).toBe(Vector.DB);
    expect(f.rip).toBe(CODE + 15); // past MOV EAX: POPF itself began with TF = 0
    expect(f.rflags & 0x100).toBe(0x100); // the pushed RFLAGS still has TF
    expect([m.cpu.lo[0], m.cpu.lo[3]]).toEqual([1, 0]);
    expect(m.cpu.dr[6]! & 0x4000).toBe(0x4000);
    expect(m.cpu.getFlags() & 0x100).toBe(0); // delivery cleared TF
  });

  it("code at a high-half kernel address walks, traps and pushes its exact RIP", () => {
    // mov eax, 1; int3; mov eax, 2; hlt  -- run through the alias 0xffffffff80100000 of CODE
    const m = machine64("b801000000ccb802000000f4");
    m.memory.write64(0x2000 + 511 * 8, 0x3000 | 3, 0); // PML4[511] -> the PDPT
    m.memory.write64(0x3000 + 510 * 8, 0x4000 | 3, 0); // PDPT[510] -> the identity PD
    installIdt(m);
    const high = -0x7ff0_0000; // 0xffffffff80100000 as a signed number
    m.cpu.rip = high;
    expect(m.cpu.run(100).kind).toBe("hlt");
    const f = landed(m, false);
    expect(f.vector).toBe(Vector.BP);
    const sp = m.cpu.regAddr(4);
    expect([m.memory.read32(sp), m.memory.read32(sp + 4)]).toEqual([0x8010_0006, 0xffff_ffff]);
    expect(m.cpu.lo[0]).toBe(1);
  });

  it("an IST gate switches to the IST stack (16-byte aligned) whatever RSP was", () => {
    const m = machine64("48c7c00000004048c70005000000f4");
    installIdt(m, { ist: { [Vector.PF]: 1 } });
    m.cpu.run(100);
    const f = landed(m, true);
    expect(f.vector).toBe(Vector.PF);
    expect(f.sp).toBe(IST1 - 6 * 8);
    expect(f.rsp).toBe(0x8_0000); // the interrupted RSP
  });

  it("a #NP while delivering #PF becomes #DF (SDM Table 6-5); with no #DF gate either, a triple fault", () => {
    const code = "48c7c00000004048c70005000000f4";
    const m = machine64(code);
    installIdt(m, { notPresent: [Vector.PF] });
    m.cpu.run(100);
    expect(landed(m, true)).toMatchObject({ vector: Vector.DF, errorCode: 0 });

    const t = machine64(code);
    installIdt(t, { notPresent: [Vector.PF, Vector.DF] });
    expect(t.cpu.run(100)).toMatchObject({ kind: "triple-fault" });
  });

  it("an external interrupt waits for IF = 1, then for the STI shadow, then is delivered; HLT wakes on it", () => {
    // sti; nop; hlt; hlt
    const m = machine64("fb90f4f4");
    installIdt(m, { iret: [0x20] });
    m.cpu.raiseInterrupt(0x20);
    const r = m.cpu.run(100);
    // STI, then NOP runs in the shadow, then the interrupt (iretq) returns to the first HLT.
    expect(r.kind).toBe("hlt");
    expect(m.cpu.rip).toBe(CODE + 3);
    expect(m.cpu.counters.interrupts).toBe(1);
    // Halted: another interrupt wakes it, the handler returns, and it halts on the second HLT.
    expect(m.cpu.run(100).kind).toBe("hlt");
    m.cpu.raiseInterrupt(0x20);
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(m.cpu.rip).toBe(CODE + 4);
  });

  it("an NMI is delivered with IF = 0, and a second one waits for IRET (NMI blocking)", () => {
    const m = machine64("9090f4f4"); // nop; nop; hlt; hlt
    installIdt(m, { iret: [Vector.NMI] });
    m.cpu.raiseNmi();
    m.cpu.raiseNmi(); // merged with the first: one pending NMI at a time
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(m.cpu.rip).toBe(CODE + 3); // the handler returned, the NOPs ran, the first HLT halted
    expect(m.cpu.nmiBlocked).toBe(false); // the handler's IRET ended the blocking
    m.cpu.raiseNmi();
    expect(m.cpu.run(100).kind).toBe("hlt"); // delivered (wakes the HLT), handler IRETs to the second HLT
    expect(m.cpu.rip).toBe(CODE + 4);
  });

  it("an interrupt stays pending while RFLAGS.IF = 0", () => {
    const m = machine64("90f4"); // nop; hlt
    installIdt(m);
    m.cpu.raiseInterrupt(0x21);
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(m.cpu.rip).toBe(CODE + 2);
    expect(m.cpu.interruptPending).toBe(true);
  });
});

describe("TLB flush rules", () => {
  /** Map VA 0x40000000 with a 2 MiB page through a PD at 0x5000, to phys 0x200000 (0x1111) or 0x400000 (0x2222). */
  function withSecondGiB(code: string, global: boolean): TestMachine {
    const m = machine64(code);
    m.memory.write64(0x3008, 0x5000 | 3, 0);
    m.memory.write64(0x5000, 0x20_0000 | 0x83 | (global ? 0x100 : 0), 0);
    m.memory.write32(0x20_0000, 0x1111);
    m.memory.write32(0x40_0000, 0x2222);
    if (global) {
      m.cpu.cr4 = CR4_PAE | CR4_PGE;
      m.cpu.updateMode();
    }
    return m;
  }

  it("a changed PTE is not seen until INVLPG; a CR3 load flushes non-global entries", () => {
    // mov rax,[0x40000000]; mov qword [0x5000],0x400083; mov rbx,[0x40000000]; invlpg [0x40000000];
    // mov rcx,[0x40000000]; mov qword [0x5000],0x200083; mov rdx,cr3; mov cr3,rdx; mov rsi,[0x40000000]; hlt
    const m = withSecondGiB(
      "488b04250000004048c704250050000083004000488b1c25000000400f013c2500000040488b0c250000004048c7042500500000830020000f20da0f22da488b342500000040f4",
      false,
    );
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect([m.cpu.lo[0], m.cpu.lo[3], m.cpu.lo[1], m.cpu.lo[6]]).toEqual([0x1111, 0x1111, 0x2222, 0x1111]);
  });

  it("a global translation survives a CR3 load (CR4.PGE = 1)", () => {
    // mov rax,[0x40000000]; mov qword [0x5000],0x400183; mov rdx,cr3; mov cr3,rdx; mov rbx,[0x40000000]; hlt
    const m = withSecondGiB("488b04250000004048c7042500500000830140000f20da0f22da488b1c2500000040f4", true);
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect([m.cpu.lo[0], m.cpu.lo[3]]).toEqual([0x1111, 0x1111]);
  });
});

describe("self-modifying code", () => {
  it("a store into an already-decoded page is seen by the next fetch", () => {
    // lea rdi,[rip+patch]; mov byte [rdi],0xb8; mov dword [rdi+1],0x2a; patch: mov eax,7; hlt
    const m = machine64("488d3d0a000000c607b8c747012a000000b807000000f4");
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(m.cpu.lo[0]).toBe(0x2a);
    expect(m.cpu.counters.smcInvalidations).toBeGreaterThan(0);
  });
});
