/**
 * Real-address mode on the bare CPU (SDM Vol. 3A ch. 20, Vol. 1 3.3): segment arithmetic
 * (base = selector << 4, cached limits kept: "unreal mode"), 16-bit default operand and address
 * size with 66/67 overrides, far CALL/RET/JMP, interrupts and exceptions through the interrupt
 * vector table, the PE transitions (real -> protected -> long mode as an AP trampoline does), the
 * instructions that are #UD in real mode, and 16-bit decoding compared with iced-x86. Machine
 * code was assembled with `as --32` (`.code16`) and `objcopy -O binary`; each snippet's source is
 * in the comment beside it.
 */
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import type * as IcedTypes from "iced-x86";
import { MachineMemory, PortIoBus, Vector } from "@vtlab/arch";
import { Cpu, Seg, decodeBytes } from "@vtlab/cpu-vmx";
import { debugPorts, hex } from "./machine.js";

const iced = createRequire(import.meta.url)("iced-x86") as typeof IcedTypes;

interface RealMachine {
  cpu: Cpu;
  memory: MachineMemory;
  console: string[];
}

/**
 * A CPU in real-address mode as after INIT (SDM Table 10-1, with CS from a SIPI): CR0 = ET, CS =
 * `csSel` (base csSel << 4), IP 0, the other segments 0 with limit FFFFH, IDTR base 0 limit 3FFH;
 * `code` is loaded at CS.base.
 */
function realMachine(code: string, csSel: number): RealMachine {
  const memory = new MachineMemory(4 * 1024 * 1024);
  const ports = new PortIoBus();
  const cpu = new Cpu({ memory, ports });
  const console: string[] = [];
  debugPorts(ports, () => cpu, console);
  cpu.cr0 = 0x10;
  for (let s = 0; s < 6; s++) {
    const c = cpu.seg[s]!;
    c.selector = s === Seg.CS ? csSel : 0;
    c.base = s === Seg.CS ? csSel * 16 : 0;
    c.limit = 0xffff;
    c.attr = s === Seg.CS ? 0x9b : 0x93;
  }
  cpu.idtrBase = 0;
  cpu.idtrLimit = 0x3ff;
  cpu.gdtrBase = 0;
  cpu.gdtrLimit = 0xffff;
  cpu.rip = 0;
  cpu.updateMode();
  memory.writeBytes(csSel * 16, hex(code));
  return { cpu, memory, console };
}

/** Point IVT entry `vector` at seg:off and put `code` there. */
function vector(m: RealMachine, v: number, seg: number, off: number, code: string): void {
  m.memory.write16(v * 4, off);
  m.memory.write16(v * 4 + 2, seg);
  m.memory.writeBytes(seg * 16 + off, hex(code));
}

describe("real-address mode: segments", () => {
  it("a segment load sets base = selector << 4 and keeps the cached limit and attributes; 16-bit operands by default, 66 gives 32", () => {
    // mov $0x1234,%ax; mov %ax,%ds; movw $0xbeef,0x10; mov $0x2000,%ax; mov %ax,%es; mov %es:0x5,%bx
    // push %ds; pop %fs; mov %fs:0x10,%cx; mov $0x100,%dx; mov %dx,%ss; mov $0x100,%sp; push %cx
    // movl $0x11223344,%eax; pushl %eax; hlt
    const m = realMachine("b834128ed8c7061000efbeb800208ec0268b1e05001e0fa1648b0e1000ba00018ed2bc00015166b8443322116650f4", 0x0800);
    m.memory.write16(0x20005, 0x5a5a);
    expect(m.cpu.realMode).toBe(true);
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(m.memory.read16(0x12350)).toBe(0xbeef);
    expect(m.cpu.lo[3]! & 0xffff).toBe(0x5a5a);
    expect(m.cpu.lo[1]! & 0xffff).toBe(0xbeef); // through FS = DS popped from the stack
    const ds = m.cpu.seg[Seg.DS]!;
    expect({ selector: ds.selector, base: ds.base, limit: ds.limit, attr: ds.attr }).toEqual({ selector: 0x1234, base: 0x12340, limit: 0xffff, attr: 0x93 });
    expect(m.cpu.seg[Seg.SS]!.base).toBe(0x1000);
    // push %cx (2 bytes) then pushl %eax (4 bytes, 66 override) at SS:SP = 0x1000:0x100
    expect(m.cpu.lo[4]! & 0xffff).toBe(0x100 - 6);
    expect(m.memory.read16(0x1000 + 0xfe)).toBe(0xbeef);
    expect(m.memory.read32(0x1000 + 0xfa)).toBe(0x11223344);
    expect(m.cpu.cpl).toBe(0);
  });

  it("unreal mode: a 4 GiB limit loaded in protected mode survives the return to real mode and a real-mode reload; 67 gives 32-bit addressing", () => {
    // lgdtl %cs:gdtr; mov %cr0,%eax; or $1,%eax; mov %eax,%cr0; mov $0x10,%bx; mov %bx,%ds
    // and $0xfffffffe,%eax; mov %eax,%cr0; xor %ax,%ax; mov %ax,%ds; mov $0x200000,%esi
    // movl $0xcafef00d,(%esi); hlt; gdt: null, 0x08 code32, 0x10 data 4 GiB; gdtr: .word 23, .long gdt + 0x8000
    const m = realMachine(
      "2e660f011648000f20c06683c8010f22c0bb10008edb6683e0fe0f22c031c08ed866be000020006766c7060df0fecaf40000000000000000ffff0000009acf00ffff00000092cf00170030800000",
      0x0800,
    );
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(m.cpu.realMode).toBe(true);
    const ds = m.cpu.seg[Seg.DS]!;
    expect({ selector: ds.selector, base: ds.base, limit: ds.limit >>> 0 }).toEqual({ selector: 0, base: 0, limit: 0xffff_ffff });
    expect((m.memory.read32(0x20_0000) as number) >>> 0).toBe(0xcafef00d);
    expect(m.cpu.gdtrBase).toBe(0x8030);
  });
});

describe("real-address mode: interrupts and exceptions through the interrupt vector table", () => {
  it("INT n pushes FLAGS, CS, IP and clears IF; IRET restores them; #DE pushes the faulting IP, INT3 the next one; no error codes", () => {
    // main at 07C0:0000: mov $0x9000,%sp; sti; int $0x21; mov %ax,%si; pushf; pop %di; xor %bp,%bp
    // div %bp; int3; hlt
    const m = realMachine("bc0090fbcd2189c69c5f31edf7f5ccf4", 0x07c0);
    // 0x21 -> 0100:0010: mov %sp,%bp; mov (%bp),%ax; mov 2(%bp),%bx; mov 4(%bp),%cx; pushf; pop %dx; iret
    vector(m, 0x21, 0x0100, 0x0010, "89e58b46008b5e028b4e049c5acf");
    // #DE -> 0200:0000: push %bp; mov %sp,%bp; addw $2,2(%bp) (skip the 2-byte div); pop %bp; iret
    vector(m, Vector.DE, 0x0200, 0x0000, "5589e5834602025dcf");
    // #BP -> 0300:0000: push %bp; mov %sp,%bp; mov 2(%bp),%ax; mov %ax,%cs:0x20; pop %bp; iret
    vector(m, Vector.BP, 0x0300, 0x0000, "5589e58b46022ea320005dcf");
    expect(m.cpu.run(200).kind).toBe("hlt");
    const r = (n: number) => m.cpu.lo[n]! & 0xffff;
    expect(r(6)).toBe(6); // the IP INT 21h pushed: past its 2 bytes
    expect(r(3)).toBe(0x07c0); // the CS it pushed
    expect(r(1) & 0x200).toBe(0x200); // the FLAGS it pushed had IF = 1
    expect(r(2) & 0x300).toBe(0); // inside the handler IF = TF = 0
    expect(r(7) & 0x200).toBe(0x200); // IRET gave IF back
    expect(m.memory.read16(0x3020)).toBe(15); // INT3 pushed the IP after it (the #DE handler had skipped the div at 12)
    expect(r(4)).toBe(0x9000); // every frame was 6 bytes and popped again
    expect(m.cpu.seg[Seg.CS]!.base).toBe(0x7c00);
  });

  it("an external interrupt goes through the IVT when IF = 1; a vector beyond IDTR.limit is #GP, then #DF, then a triple fault", () => {
    // sti; nop; nop; hlt
    const m = realMachine("fb9090f4", 0x1000);
    m.cpu.setReg16(4, 0x8000);
    // 0x40 -> 0000:0600: mov $0x41,%al; out %al,$0xe9; iret
    vector(m, 0x40, 0x0000, 0x0600, "b041e6e9cf");
    m.cpu.raiseInterrupt(0x40);
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(m.console.join("")).toBe("A");
    expect(m.cpu.counters.interrupts).toBe(1);
    // IDTR.limit 3 leaves only vector 0: INT 21h is #GP, whose vector is out of limit too (#DF), and so is #DF's.
    const n = realMachine("cd21f4", 0x1000);
    n.cpu.idtrLimit = 3;
    expect(n.cpu.run(10).kind).toBe("triple-fault");
  });

  it("the instructions real mode does not recognise are #UD: SLDT, STR, LLDT, LTR, LAR, LSL, VERR, VERW, ARPL", () => {
    const forms: [string, string][] = [
      ["sldt %ax", "0f00c0"],
      ["str %ax", "0f00c8"],
      ["lldt %ax", "0f00d0"],
      ["ltr %ax", "0f00d8"],
      ["lar %ax,%bx", "0f02d8"],
      ["lsl %ax,%bx", "0f03d8"],
      ["verr %ax", "0f00e0"],
      ["verw %ax", "0f00e8"],
      ["arpl %ax,%bx", "63c3"],
    ];
    for (const [what, code] of forms) {
      const m = realMachine(`90${code}`, 0x1000);
      m.cpu.setReg16(4, 0x8000);
      vector(m, Vector.UD, 0x0000, 0x0500, "f4"); // hlt
      expect(m.cpu.run(10).kind, what).toBe("hlt");
      expect({ what, rip: m.cpu.rip, cs: m.cpu.seg[Seg.CS]!.selector, pushedIp: m.memory.read16(0x7ffa) }).toEqual({ what, rip: 0x501, cs: 0, pushedIp: 1 });
    }
  });
});

describe("real-address mode: far transfers and descriptor tables", () => {
  it("far CALL (ptr16:16, m16:16, and ptr16:32 with 66) and RETF move CS with base = selector << 4", () => {
    // mov $0x9000,%sp; lcall $0x0900,$0x0010; mov %ax,%si; lcallw *%cs:ptr; data32 lcall $0x0900,$0x0020; hlt
    // ptr: .word 0x0030, 0x0900
    const m = realMachine("bc00909a1000000989c62eff1e1800669a200000000009f430000009", 0x0800);
    m.memory.writeBytes(0x9010, hex("b87700cb")); // mov $0x77,%ax; lret
    m.memory.writeBytes(0x9030, hex("bb8800cb")); // mov $0x88,%bx; lret
    m.memory.writeBytes(0x9020, hex("b9990066cb")); // mov $0x99,%cx; lretl
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect([m.cpu.lo[6]! & 0xffff, m.cpu.lo[3]! & 0xffff, m.cpu.lo[1]! & 0xffff]).toEqual([0x77, 0x88, 0x99]);
    expect(m.cpu.lo[4]! & 0xffff).toBe(0x9000);
    expect(m.cpu.seg[Seg.CS]!.selector).toBe(0x0800);
    expect(m.cpu.rip).toBe(0x18); // stopped past the hlt at 0x17
  });

  it("LDS, LES, LSS, LFS, LGS load a far pointer (offset, then selector) into a segment register and a general register; 66 takes a 32-bit offset", () => {
    // lds 0x100,%si; les 0x104,%di; lss 0x108,%sp; lfs 0x10c,%ax; lgs 0x110,%bx; ldsl 0x120,%ecx; hlt
    const m = realMachine("c5360001c43e04010fb22608010fb4060c010fb51e100166c50e2001f4", 0x1000);
    const ptr = (at: number, off: number, sel: number) => {
      m.memory.write16(at, off);
      m.memory.write16(at + 2, sel);
    };
    ptr(0x100, 0x1111, 0x0050); // DS = 0050h: the later pointers are read at 0x500 + offset
    ptr(0x604, 0x2222, 0x3000);
    ptr(0x608, 0x3333, 0x4000);
    ptr(0x60c, 0x4444, 0x5000);
    ptr(0x610, 0x5555, 0x6000);
    m.memory.write32(0x620, 0x89abcdef);
    m.memory.write16(0x624, 0x0070);
    expect(m.cpu.run(10).kind).toBe("hlt");
    const r = (n: number) => m.cpu.lo[n]! & 0xffff;
    expect([r(6), r(7), r(4), r(0), r(3), m.cpu.lo[1]! >>> 0]).toEqual([0x1111, 0x2222, 0x3333, 0x4444, 0x5555, 0x89abcdef]);
    const base = (s: number) => m.cpu.seg[s]!.base;
    expect([base(Seg.ES), base(Seg.SS), base(Seg.FS), base(Seg.GS), base(Seg.DS)]).toEqual([0x30000, 0x40000, 0x50000, 0x60000, 0x700]);
  });

  it("LIDT/LGDT with a 16-bit operand load a 24-bit base, with 66 a 32-bit one", () => {
    // lidtw 0x100; lgdtl 0x108; hlt
    const m = realMachine("0f011e0001660f01160801f4", 0x0000);
    m.memory.writeBytes(0x100, hex("ff03 44332211"));
    m.memory.writeBytes(0x108, hex("1700 88776655"));
    // (the code is at 0: the IVT area, which nothing uses here)
    expect(m.cpu.run(10).kind).toBe("hlt");
    expect({ idt: m.cpu.idtrBase, idtLimit: m.cpu.idtrLimit, gdt: m.cpu.gdtrBase >>> 0, gdtLimit: m.cpu.gdtrLimit }).toEqual({ idt: 0x223344, idtLimit: 0x3ff, gdt: 0x55667788, gdtLimit: 0x17 });
  });
});

describe("real-address mode: the PE transitions of an AP trampoline", () => {
  it("real mode -> 16-bit code with PE = 1 until the far jump -> 32-bit protected mode -> long mode", () => {
    // Loaded at 0x8000 with CS = 0800 (as a SIPI with vector 08h starts an AP):
    // cli; wbinvd; ljmpw $0x0800,$1f; 1: mov %cs,%ax; mov %ax,%ds/%es/%ss; movl $0x1000,%esp
    // lidtl tr_idt; lgdtl tr_gdt; mov $0x10,%dx; movl $0x11,%eax; movl %eax,%cr0
    // mov $0x1234,%bx (16-bit: CS keeps its real-mode descriptor); ljmpl $0x08,$startup_32
    // .code32 startup_32: mov %edx,%ss; addl $0x8000,%esp; mov %edx,%ds; mov %edx,%es
    // movl $0x20,%eax; movl %eax,%cr4; movl $0x20000,%eax; movl %eax,%cr3; movl $0xc0000080,%ecx
    // rdmsr; orl $0x100,%eax; wrmsr; movl $0x80000011,%eax; movl %eax,%cr0; ljmpl $0x18,$startup_64
    // .code64 startup_64: mov $0x4c,%al; out %al,$0xe9; movq $0x123456789,%rax; hlt
    // tr_gdt: .word 31, .long tr_gdt, .word 0; code32 (0x08), data (0x10), code64 (0x18); tr_idt: 0, 0
    const m = realMachine(
      "fa0f09ea080000088cc88ed88ec08ed066bc00100000660f011ea800660f01168800ba100066b8110000000f22c0bb341266ea3980000008008ed281c4008000008eda8ec2b8200000000f22e0b8000002000f22d8b9800000c00f320d000100000f30b8110000800f22c0ea728000001800b04ce6e948b88967452301000000f48db426000000001f00888000000000ffff0000009acf00ffff00000092cf00ffff0000009aaf00000000000000",
      0x0800,
    );
    // Identity map the first 1 GiB with 2 MiB pages: PML4 0x20000 -> PDPT 0x21000 -> PD 0x22000.
    m.memory.write64(0x20000, 0x21003, 0);
    m.memory.write64(0x21000, 0x22003, 0);
    for (let k = 0; k < 512; k++) m.memory.write64(0x22000 + k * 8, (k * 0x20_0000 + 0x83) >>> 0, 0);
    // Stop right after MOV CR0 (PE = 1) and the 16-bit MOV after it.
    const steps = 14;
    expect(m.cpu.run(steps).kind).toBe("budget");
    expect(m.cpu.realMode).toBe(false);
    expect(m.cpu.seg[Seg.CS]!).toMatchObject({ selector: 0x0800, base: 0x8000, limit: 0xffff, attr: 0x9b });
    expect(m.cpu.lo[3]! & 0xffff).toBe(0x1234);
    expect(m.cpu.lo[0]! >>> 0).toBe(0x11); // movl $0x11 took a 32-bit immediate (66)
    expect(m.cpu.idtrLimit).toBe(0);
    expect(m.cpu.gdtrBase).toBe(0x8088);
    expect(m.cpu.run(100).kind).toBe("hlt");
    expect(m.console.join("")).toBe("L");
    expect(m.cpu.mode64).toBe(true);
    expect(m.cpu.regAddr(0)).toBe(0x1_2345_6789);
    expect(m.cpu.seg[Seg.CS]!.selector).toBe(0x18);
    expect(m.cpu.regAddr(4)).toBe(0x9000);
  });

  it("MOV CR0 with PE = 0 from protected mode returns to real mode; PG = 1 with PE = 0 is #GP", () => {
    const m = realMachine("f4", 0x0000);
    m.cpu.cr0 = 0x11;
    m.cpu.updateMode();
    expect(m.cpu.realMode).toBe(false);
    // mov $0x10,%eax; mov %eax,%cr0; hlt   (32-bit operand in a 16-bit segment: 66)
    const n = realMachine("66b8100000000f22c0f4", 0x1000);
    n.cpu.cr0 = 0x11;
    n.cpu.updateMode();
    expect(n.cpu.run(10).kind).toBe("hlt");
    expect(n.cpu.realMode).toBe(true);
    // mov $0x80000010,%eax; mov %eax,%cr0: #GP (vector 13 through the IVT)
    const g = realMachine("66b8100000800f22c0f4", 0x1000);
    g.cpu.setReg16(4, 0x8000);
    vector(g, Vector.GP, 0x0000, 0x0500, "f4");
    expect(g.cpu.run(10).kind).toBe("hlt");
    expect(g.cpu.rip).toBe(0x501);
    expect(g.memory.read16(0x7ffa)).toBe(6); // IP of the MOV CR0; no error code pushed
    expect(g.cpu.lo[4]! & 0xffff).toBe(0x8000 - 6);
  });
});

describe("16-bit decoding agrees with iced-x86", () => {
  // Instruction sequences from a real-mode trampoline and BIOS-style code (assembled with `as --32`, .code16).
  const sequences: [string, string][] = [
    ["cli; wbinvd; ljmpw $0x0800,$5", "fa0f09ea05000008"],
    ["lidtl 0xa8; lgdtl 0x88; lgdtw 0x88", "660f011ea800660f011688000f01168800"],
    ["movl $0x11,%eax; movl %eax,%cr0; ljmpl $0x08,$0x8039", "66b8110000000f22c066ea3980000008 00".replace(" ", "")],
    ["lcall $0x0900,$0x10; data32 lcall $0x900,$0x20; lret; lretl; iret; iretl", "9a10000009669a200000000009cb66cbcf66cf"],
    ["mov 2(%bx,%si),%ax; mov %es:0x5,%bx; movl $0xcafef00d,(%esi)", "8b40022 68b1e05006766c7060df0fe ca".replace(/ /g, "")],
    ["int $0x21; int3; push %ds; pop %fs; lcallw *%cs:0x18", "cd21cc1e0fa12eff1e1800"],
    ["lds 0x100,%si; les 0x104,%di; lss 0x108,%sp; lfs 0x10c,%ax; lgs 0x110,%bx; ldsl 0x120,%ecx", "c5360001c43e04010fb22608010fb4060c010fb51e100166c50e2001"],
  ];
  for (const [what, code] of sequences) {
    it(what, () => {
      const bytes = hex(code);
      let at = 0;
      while (at < bytes.length) {
        const slice = bytes.subarray(at, Math.min(bytes.length, at + 15));
        const ours = decodeBytes(slice, slice.length, false, false);
        const d = new iced.Decoder(16, slice, iced.DecoderOptions.None);
        const theirs = d.decode();
        expect(theirs.isInvalid, `iced-x86 at ${at}`).toBe(false);
        expect(ours, `vtlab at ${at}`).toBeDefined();
        expect(ours!.len, `length at ${at}`).toBe(theirs.length);
        if (theirs.opCount > 0 && theirs.opKind(0) === iced.OpKind.FarBranch16) {
          expect([ours!.imm & 0xffff, ours!.imm2]).toEqual([theirs.farBranch16, theirs.farBranchSelector]);
        } else if (theirs.opCount > 0 && theirs.opKind(0) === iced.OpKind.FarBranch32) {
          expect([ours!.imm >>> 0, ours!.imm2]).toEqual([theirs.farBranch32, theirs.farBranchSelector]);
        }
        if (ours!.isMem && theirs.memoryBase !== iced.Register.None) {
          expect(ours!.addrSize * 8, `address size at ${at}`).toBe(((iced.Register as unknown as Record<number, string>)[theirs.memoryBase] ?? "").startsWith("E") ? 32 : 16);
        }
        at += ours!.len;
      }
    });
  }
});
