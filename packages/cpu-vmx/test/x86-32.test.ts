/**
 * 32-bit protected mode on the bare CPU: 32-bit paging with CR4.PSE and PAE paging (PDPTE
 * registers, SDM Vol. 3A 4.3, 4.4), exceptions through the 32-bit IDT (16- and 32-bit interrupt
 * and trap gates, a privilege change through the TSS's SS0:ESP0, error codes; SDM 6.10-6.12) and
 * IRET back to CPL 3. Machine code was assembled with `as --32`; each snippet's source is in the
 * comment beside it.
 */
import { describe, expect, it } from "vitest";
import { MachineMemory, PortIoBus, Vector } from "@vtlab/arch";
import { CR4_PAE, CR4_PSE, Cpu, Seg } from "@vtlab/cpu-vmx";
import { debugPorts, hex } from "./machine.js";

const GDT = 0x500;
const IDT = 0x800;
const TSS = 0x1800;
const PD32 = 0x2000;
const PDPT = 0x3020; // 32-byte aligned, not page aligned: CR3 bits 11:5 count in PAE paging
const PAE_PD = 0x4000;
const PT = 0x5000;
const CODE = 0x10_0000;
const HANDLERS = 0x30_0000;
const STACK = 0x8_0000;
const ESP0 = 0xa_0000;
const USER_STACK = 0x9_0000;

// mov %cr4,%eax; or %ecx,%eax; mov %eax,%cr4; mov %ebx,%cr3; mov %cr0,%eax;
// or $0x80000000,%eax; mov %eax,%cr0; mov 0xc00000,%eax; hlt
const PAGING_ON_THEN_READ_12M = "0f20e009c80f22e00f22db0f20c00d000000800f22c0a10000c000f4";
const FAULTING_READ = CODE + 0x16;

interface Machine32 {
  cpu: Cpu;
  memory: MachineMemory;
}

type Gate = { type?: number; dpl?: number; present?: boolean; handler?: string; selector?: number };

/**
 * Flat 32-bit protected mode, paging off: GDT 0x08 code, 0x10 data, 0x1b user code, 0x23 user
 * data, 0x28 a 32-bit TSS with ESP0/SS0; IDT gates at HANDLERS + 16v (a HLT unless `handler`).
 */
function machine32(code: string, gates: Record<number, Gate> = {}, defaultGate: Gate = {}): Machine32 {
  const memory = new MachineMemory(32 * 1024 * 1024);
  const ports = new PortIoBus();
  const cpu = new Cpu({ memory, ports });
  debugPorts(ports, () => cpu, []);
  const gdt: [number, number][] = [
    [0, 0],
    [0x0000ffff, 0x00cf9a00],
    [0x0000ffff, 0x00cf9200],
    [0x0000ffff, 0x00cffa00],
    [0x0000ffff, 0x00cff200],
    [((TSS & 0xffff) << 16) | 0x67, (TSS & 0xff000000) | 0x8900 | ((TSS >>> 16) & 0xff)],
  ];
  gdt.forEach(([lo, hi], k) => memory.write64(GDT + k * 8, lo >>> 0, hi >>> 0));
  cpu.gdtrBase = GDT;
  cpu.gdtrLimit = gdt.length * 8 - 1;
  for (let v = 0; v < 256; v++) {
    const g = { ...defaultGate, ...gates[v] };
    const target = HANDLERS + v * 16;
    const type = g.type ?? 0x0e;
    memory.write32(IDT + v * 8, ((g.selector ?? 0x08) << 16) | (target & 0xffff));
    memory.write32(IDT + v * 8 + 4, ((target & 0xffff0000) | (g.present === false ? 0 : 0x8000) | ((g.dpl ?? 0) << 13) | (type << 8)) >>> 0);
    memory.writeBytes(target, hex(g.handler ?? "f4"));
  }
  cpu.idtrBase = IDT;
  cpu.idtrLimit = 256 * 8 - 1;
  memory.write32(TSS + 4, ESP0); // ESP0
  memory.write32(TSS + 8, 0x10); // SS0
  cpu.tr.selector = 0x28;
  cpu.tr.base = TSS;
  cpu.tr.limit = 0x67;
  cpu.tr.attr = 0x8b; // busy 32-bit TSS
  memory.writeBytes(CODE, hex(code));
  cpu.rip = CODE;
  cpu.setReg32(4, STACK);
  cpu.updateMode();
  return { cpu, memory };
}

/** 32-bit paging: PDEs 0 and 2 map 4 MiB pages, PDE 1 a page table of 4 KiB pages; 12 MiB and up unmapped. */
function tables32(m: Machine32): void {
  m.memory.write32(PD32, 0x0000_0000 | 0x87);
  m.memory.write32(PD32 + 4, PT | 0x07);
  for (let k = 0; k < 1024; k++) m.memory.write32(PT + k * 4, (0x40_0000 + k * 0x1000) | 0x07);
  m.memory.write32(PD32 + 8, 0x0080_0000 | 0x87);
}

/** PAE paging: PDPTE 0 -> a PD of 2 MiB pages over 0-12 MiB; 12 MiB and up unmapped. */
function tablesPae(m: Machine32): void {
  m.memory.write32(PDPT, PAE_PD | 1);
  for (let k = 0; k < 6; k++) m.memory.write32(PAE_PD + k * 8, (k * 0x20_0000) | 0x87);
}

/** The vector the CPU stopped in and the 32-bit frame it pushed (slot = 4 bytes). */
function frame32(m: Machine32, withError: boolean, slot: 2 | 4 = 4) {
  const vector = (m.cpu.rip - 1 - HANDLERS) / 16;
  const sp = m.cpu.lo[4]! >>> 0;
  const at = (k: number) => (slot === 4 ? (m.memory.read32(sp + 4 * k) as number) >>> 0 : (m.memory.read16(sp + 2 * k) as number));
  const b = withError ? 1 : 0;
  return { vector, errorCode: withError ? at(0) : undefined, eip: at(b), cs: at(b + 1), eflags: at(b + 2), esp: at(b + 3), ss: at(b + 4), sp };
}

describe("32-bit paging with CR4.PSE", () => {
  it("turns on with MOV CR0, walks 4 MiB and 4 KiB pages, and a #PF comes through a 32-bit interrupt gate", () => {
    const m = machine32(PAGING_ON_THEN_READ_12M);
    tables32(m);
    m.cpu.lo[1] = CR4_PSE;
    m.cpu.lo[3] = PD32;
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(frame32(m, true)).toMatchObject({ vector: Vector.PF, errorCode: 0, eip: FAULTING_READ, cs: 0x08, sp: STACK - 16 });
    expect(m.cpu.cr2).toBe(0xc0_0000);
    expect(m.cpu.getFlags() & 0x200).toBe(0); // an interrupt gate clears IF
    expect((m.memory.read32(PD32) as number) & 0x20).toBe(0x20); // the 4 MiB PDE the code ran through is accessed
    // A 4 KiB page through PDE 1 and the PSE-36 address of a 4 MiB page.
    m.memory.write32(0x40_5000, 0x1234_5678);
    expect(m.cpu.read32(0x40_5000)).toBe(0x1234_5678);
    expect((m.memory.read32(PT + 5 * 4) as number) & 0x20).toBe(0x20);
  });

  it("without CR4.PSE the PS bit is ignored: PDE 0 is a page table, so the code fetch faults", () => {
    const m = machine32(PAGING_ON_THEN_READ_12M);
    tables32(m);
    m.cpu.lo[1] = 0;
    m.cpu.lo[3] = PD32;
    m.cpu.run(100);
    // PDE 0 then points at frame 0 as a page table: the fetch after MOV CR0 reads garbage PTEs.
    expect(m.cpu.cr2).not.toBe(0xc0_0000);
  });
});

describe("PAE paging (PDPTE registers)", () => {
  it("MOV CR0 loads the PDPTEs from CR3 (bits 31:5), 2 MiB pages walk, and #PF is delivered", () => {
    const m = machine32(PAGING_ON_THEN_READ_12M);
    tablesPae(m);
    m.cpu.lo[1] = CR4_PAE;
    m.cpu.lo[3] = PDPT;
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(frame32(m, true)).toMatchObject({ vector: Vector.PF, errorCode: 0, eip: FAULTING_READ, cs: 0x08 });
    expect(m.cpu.cr2).toBe(0xc0_0000);
    expect(Array.from(m.cpu.pdpte.subarray(0, 2))).toEqual([PAE_PD | 1, 0]);
  });

  it("MOV CR3 with a present PDPTE that sets a reserved bit is #GP(0) and loads nothing", () => {
    // mov %ebx,%cr3; hlt
    const m = machine32("0f22dbf4");
    tablesPae(m);
    m.cpu.cr4 = CR4_PAE;
    m.cpu.cr3 = PDPT;
    m.cpu.loadPdptes(PDPT);
    m.cpu.cr0 |= 0x8000_0000;
    m.cpu.updateMode();
    m.memory.write32(0x6000 + 8, 0x7000 | 0x3); // PDPTE 1 with R/W: reserved in a PDPTE
    m.cpu.lo[3] = 0x6000;
    m.cpu.run(100);
    expect(frame32(m, true)).toMatchObject({ vector: Vector.GP, errorCode: 0, eip: CODE });
    expect(m.cpu.cr3).toBe(PDPT);
    expect(m.cpu.pdpte[0]).toBe(PAE_PD | 1);
  });
});

describe("the 32-bit IDT", () => {
  it("#UD at CPL 3 switches to SS0:ESP0 from the TSS and pushes SS, ESP, EFLAGS, CS, EIP; IRET returns to CPL 3", () => {
    // ud2; int $0x80; hlt       (#UD handler: addl $2,(%esp); iret)
    const m = machine32("0f0bcd80f4", { [Vector.UD]: { handler: "83042402cf" } });
    const cpu = m.cpu;
    cpu.cpl = 3;
    Object.assign(cpu.seg[Seg.CS]!, { selector: 0x1b, attr: 0xc0fb });
    Object.assign(cpu.seg[Seg.SS]!, { selector: 0x23, attr: 0xc0f3 });
    cpu.setReg32(4, USER_STACK);
    cpu.updateMode();
    expect(cpu.run(100).kind).toBe("hlt");
    // Back at CPL 3, INT 0x80 through a DPL-0 gate is #GP(0x80 * 8 + 2), again on ESP0's stack.
    expect(frame32(m, true)).toMatchObject({ vector: Vector.GP, errorCode: 0x80 * 8 + 2, eip: CODE + 2, cs: 0x1b, esp: USER_STACK, ss: 0x23, sp: ESP0 - 24 });
    expect(cpu.cpl).toBe(0);
    expect(cpu.seg[Seg.SS]!.selector).toBe(0x10);
  });

  it("a 16-bit trap gate pushes 2-byte slots and keeps IF", () => {
    // sti; ud2
    const m = machine32("fb0f0b", { [Vector.UD]: { type: 0x07 } });
    const ip16 = (HANDLERS + Vector.UD * 16) & 0xffff; // a 16-bit gate holds offset bits 15:0 only
    m.memory.writeBytes(ip16, hex("f4"));
    m.cpu.run(100);
    expect(m.cpu.rip).toBe(ip16 + 1);
    const f = frame32(m, false, 2);
    expect(f).toMatchObject({ eip: (CODE + 1) & 0xffff, cs: 0x08, sp: STACK - 6 });
    expect(m.cpu.getFlags() & 0x200).toBe(0x200);
  });

  it("a gate past the IDT limit is #GP(vector * 8 + 2); a not-present gate #NP; a gate to a null selector #GP(0)", () => {
    const past = machine32("0f0b", {}, {});
    past.cpu.idtrLimit = 6 * 8 - 1; // vectors 0-5 only: #UD (6) is past it, #GP (13) too: #DF... not present either
    expect(past.cpu.run(100).kind).toBe("triple-fault");

    const np = machine32("0f0b", { [Vector.UD]: { present: false } });
    np.cpu.run(100);
    expect(frame32(np, true)).toMatchObject({ vector: Vector.NP, errorCode: Vector.UD * 8 + 2, eip: CODE });

    const nul = machine32("0f0b", { [Vector.UD]: { selector: 0 } });
    nul.cpu.run(100);
    expect(frame32(nul, true)).toMatchObject({ vector: Vector.GP, errorCode: 0, eip: CODE });
  });

  it("an external interrupt through a 32-bit gate sets EXT in a delivery fault's error code", () => {
    // sti; nop; hlt
    const m = machine32("fb90f4", { 0x40: { present: false } });
    m.cpu.raiseInterrupt(0x40);
    m.cpu.run(100);
    expect(frame32(m, true)).toMatchObject({ vector: Vector.NP, errorCode: 0x40 * 8 + 2 + 1 });
  });
});
