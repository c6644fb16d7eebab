/**
 * The block compiler (src/jit/) against the interpreter, side by side: random programs (fast-check,
 * seeded) of the instructions the compiler specialises and some it leaves to handlers, with
 * forward branches, loops (self-looping blocks), calls and returns, loads and stores through the
 * TLB, page faults and #GP on bad pointers, and self-modifying stores into the loop's own code.
 * Two CPUs run each program: one with the compiler (blocks compiled at first use), one plain
 * interpreter (two: one run to each block entry, one in slices). The compiled one reports every block entry (jitHooks.onBlockEntry); at each the
 * interpreter is run to the same step and registers, flags and retired count must agree. Both
 * run in the same randomly sized slices (the budget bound cutting blocks anywhere), and after
 * each slice the result, RIP, registers, flags, retired count and memory must agree.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Cpu, Insn, jitCacheBounds, jitHooks, jitStats } from "@vtlab/cpu-vmx";
import { INSN_KEYED_FIELDS, INSN_UNKEYED_FIELDS } from "../src/jit/compile.js";
import { CODE, machine64, type TestMachine } from "./machine.js";

const SCRATCH = 0x20_0000; // rbx points here (a writable 2 MiB page)
const HANDLERS = 0x30_0000;
const IDT = 0x5000;
const TSS = 0x7000;
const IST_STACK = 0x9_0000;

/** Registers the programs compute with (rbx, rsp, r12 and r15 have fixed roles). */
const DATA_REGS = [0, 1, 2, 6, 7, 8, 9, 10, 11];

/** An instruction item: bytes, or a self-modifying store patched after layout. */
type Item = { readonly bytes: readonly number[] } | { readonly smc: true };

function rexW(reg: number, rm: number, w = true): number {
  return (w ? 0x48 : 0x40) | ((reg & 8) >> 1) | ((rm & 8) >> 3);
}
const modrmReg = (reg: number, rm: number) => 0xc0 | ((reg & 7) << 3) | (rm & 7);
/** [rbx + disp8] */
const memRbx = (reg: number, disp: number) => [0x40 | ((reg & 7) << 3) | 3, disp & 0xff];
const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];

const reg = fc.constantFrom(...DATA_REGS);
const disp = fc.integer({ min: 0, max: 15 }).map((k) => k * 8); // inside the scratch area, aligned
const wide = fc.boolean();

const ALU_RR = fc.tuple(fc.integer({ min: 0, max: 7 }), reg, reg, wide).map(([op, a, b, w]) => ({ bytes: [rexW(b, a, w), op * 8 + 1, modrmReg(b, a)] }));
const ALU_RI = fc.tuple(fc.integer({ min: 0, max: 7 }), reg, fc.integer({ min: -128, max: 127 }), wide).map(([op, a, imm, w]) => ({
  bytes: [rexW(0, a, w), 0x83, modrmReg(op, a), imm & 0xff],
}));
const ALU_RI32 = fc.tuple(fc.integer({ min: 0, max: 7 }), reg, fc.integer(), wide).map(([op, a, imm, w]) => ({ bytes: [rexW(0, a, w), 0x81, modrmReg(op, a), ...le32(imm)] }));
const ALU_RM = fc.tuple(fc.integer({ min: 0, max: 7 }), reg, disp, wide, fc.boolean()).map(([op, a, d, w, store]) => ({
  bytes: [rexW(a, 3, w), op * 8 + (store ? 1 : 3), ...memRbx(a, d)],
}));
const ALU_MI = fc.tuple(fc.integer({ min: 0, max: 7 }), disp, fc.integer({ min: -128, max: 127 }), wide).map(([op, d, imm, w]) => ({
  bytes: [rexW(0, 3, w), 0x83, ...memRbx(op, d), imm & 0xff],
}));
const TEST = fc.tuple(reg, reg, wide).map(([a, b, w]) => ({ bytes: [rexW(b, a, w), 0x85, modrmReg(b, a)] }));
const TEST_AI = fc.tuple(fc.integer(), wide).map(([imm, w]) => ({ bytes: [...(w ? [0x48] : []), 0xa9, ...le32(imm)] }));
const MOV = fc.oneof(
  fc.tuple(reg, reg, wide).map(([a, b, w]) => ({ bytes: [rexW(b, a, w), 0x89, modrmReg(b, a)] })),
  fc.tuple(reg, disp, wide).map(([a, d, w]) => ({ bytes: [rexW(a, 3, w), 0x8b, ...memRbx(a, d)] })),
  fc.tuple(reg, disp, wide).map(([a, d, w]) => ({ bytes: [rexW(a, 3, w), 0x89, ...memRbx(a, d)] })),
  fc.tuple(reg, disp).map(([a, d]) => ({ bytes: [rexW(a, 3, false), 0x88, ...memRbx(a, d + 3)] })),
  fc.tuple(reg, fc.integer()).map(([a, imm]) => ({ bytes: [rexW(0, a, false), 0xb8 + (a & 7), ...le32(imm)] })),
  fc.tuple(reg, fc.integer(), fc.integer()).map(([a, lo, hi]) => ({ bytes: [rexW(0, a), 0xb8 + (a & 7), ...le32(lo), ...le32(hi)] })),
  fc.tuple(disp, fc.integer(), wide).map(([d, imm, w]) => ({ bytes: [rexW(0, 3, w), 0xc7, ...memRbx(0, d), ...le32(imm)] })),
);
const LEA = fc
  .tuple(reg, reg, reg, fc.integer({ min: 0, max: 3 }), fc.integer({ min: -200, max: 200 }), wide)
  .map(([dst, base, index, scale, d, w]) => ({
    bytes: [0x40 | (w ? 8 : 0) | ((dst & 8) >> 1) | ((index & 8) >> 2) | ((base & 8) >> 3), 0x8d, 0x84 | ((dst & 7) << 3), (scale << 6) | ((index & 7) << 3) | (base & 7), ...le32(d)],
  }));
const INCDEC = fc.tuple(reg, fc.boolean(), wide, fc.boolean(), disp).map(([a, dec, w, mem, d]) => ({
  bytes: mem ? [rexW(0, 3, w), 0xff, ...memRbx(dec ? 1 : 0, d)] : [rexW(0, a, w), 0xff, modrmReg(dec ? 1 : 0, a)],
}));
const PUSHPOP = fc.tuple(reg, reg, fc.boolean()).map(([a, b, imm]) => ({
  bytes: [...(imm ? [0x6a, 0x85] : [...(a >= 8 ? [0x41] : []), 0x50 + (a & 7)]), ...(b >= 8 ? [0x41] : []), 0x58 + (b & 7)],
}));
const EXTEND = fc.tuple(fc.constantFrom(0xb6, 0xb7, 0xbe, 0xbf, 0x63), reg, reg, wide, fc.boolean(), disp).map(([op, dst, src, w, mem, d]) => {
  const tail = mem ? memRbx(dst, d + 1) : [modrmReg(dst, src)];
  const rex = 0x40 | (w ? 8 : 0) | ((dst & 8) >> 1) | (mem ? 0 : (src & 8) >> 3);
  return { bytes: op === 0x63 ? [rex, 0x63, ...tail] : [rex, 0x0f, op, ...tail] };
});
const SHIFT = fc.tuple(reg, fc.constantFrom(4, 5, 7, 0, 1), fc.integer({ min: 0, max: 70 }), wide, fc.constantFrom("imm", "one", "cl")).map(([a, sub, n, w, form]) => ({
  bytes: form === "one" ? [rexW(0, a, w), 0xd1, modrmReg(sub, a)] : form === "cl" ? [rexW(0, a, w), 0xd3, modrmReg(sub, a)] : [rexW(0, a, w), 0xc1, modrmReg(sub, a), n],
}));
/** NOT of a register or of memory. */
const NOT = fc.tuple(reg, wide, fc.boolean(), disp).map(([a, w, mem, d]) => ({
  bytes: mem ? [rexW(0, 3, w), 0xf7, ...memRbx(2, d)] : [rexW(0, a, w), 0xf7, modrmReg(2, a)],
}));
const SETCC = fc.tuple(fc.integer({ min: 0, max: 15 }), reg, fc.boolean(), disp).map(([cc, a, mem, d]) => ({
  bytes: mem ? [0x0f, 0x90 + cc, ...memRbx(0, d + 2)] : [rexW(0, a, false), 0x0f, 0x90 + cc, modrmReg(0, a)],
}));
const CMOV = fc.tuple(fc.integer({ min: 0, max: 15 }), reg, reg, wide).map(([cc, a, b, w]) => ({ bytes: [rexW(a, b, w), 0x0f, 0x40 + cc, modrmReg(a, b)] }));
/** IMUL G,E (0F AF) and G,E,imm (69, 6B), register or memory source, 32 and 64 bits (compiled, CF/OF lazy). */
const IMUL = fc
  .tuple(reg, reg, wide, fc.constantFrom("rr", "mem", "imm8", "imm32"), disp, fc.integer(), fc.boolean())
  .map(([a, b, w, form, d, imm, mem]) => {
    const e = mem ? memRbx(a, d) : [modrmReg(a, b)];
    const rex = mem ? rexW(a, 3, w) : rexW(a, b, w);
    if (form === "rr" || form === "mem") return { bytes: [form === "mem" ? rexW(a, 3, w) : rexW(a, b, w), 0x0f, 0xaf, ...(form === "mem" ? memRbx(a, d) : [modrmReg(a, b)])] };
    return { bytes: form === "imm8" ? [rex, 0x6b, ...e, imm & 0xff] : [rex, 0x69, ...e, ...le32(imm)] };
  });
/** Byte CMP and TEST (38, 3A, 3C, 80 /7, 84, A8, F6 /0), registers with and without REX (AH..BH), memory, immediates. */
const BYTE_CMP = fc
  .tuple(fc.constantFrom(0x38, 0x3a, 0x84, 0x3c, 0xa8, 0x80, 0xf6), reg, reg, fc.boolean(), fc.boolean(), disp, fc.integer({ min: 0, max: 255 }))
  .map(([op, a, b, rex, mem, d, imm]) => {
    const r8 = (x: number) => (rex ? x : x & 3);
    const pre = rex ? [rexW(a, b, false)] : [];
    if (op === 0x3c || op === 0xa8) return { bytes: [op, imm] };
    const sub = op === 0x80 ? 7 : 0;
    const tail = op === 0x80 || op === 0xf6 ? [imm] : [];
    if (mem) return { bytes: [rexW(op === 0x80 || op === 0xf6 ? sub : a, 3, false), op, ...memRbx(op === 0x80 || op === 0xf6 ? sub : a, d + 1), ...tail] };
    if (op === 0x80 || op === 0xf6) return { bytes: [...pre, op, modrmReg(sub, rex ? b : r8(b) + (a & 4)), ...tail] };
    return { bytes: [...pre, op, modrmReg(rex ? a : r8(a) + (b & 4), rex ? b : r8(b))] };
  });
/** NOPs (90, 0F 1F /0 with a memory operand) and CWDE/CDQE, CDQ/CQO (compiled). */
const NOP_EXTEND = fc.oneof(
  fc.constant({ bytes: [0x90] }),
  disp.map((d) => ({ bytes: [0x0f, 0x1f, ...memRbx(0, d)] })),
  fc.constant({ bytes: [0x0f, 0x1f, 0x84, 0x00, 0, 0, 0, 0] }), // nopw 0x0(%rax,%rax,1)
  fc.tuple(wide, fc.boolean()).map(([w, q]) => ({ bytes: [...(w ? [0x48] : []), q ? 0x99 : 0x98] })),
);
/** One-operand MUL and IMUL (F7 /4, /5) of a register: left to their handlers (RDX:RAX). */
const MUL1 = fc.tuple(reg, wide, fc.boolean()).map(([a, w, signed]) => ({ bytes: [rexW(0, a, w), 0xf7, modrmReg(signed ? 5 : 4, a)] }));
/** Left to handlers: ADC/SBB, NEG, XCHG, BSF, byte ALU. */
const OTHER = fc.oneof(
  fc.tuple(reg).map(([a]) => ({ bytes: [rexW(0, a), 0xf7, modrmReg(3, a)] })),
  fc.tuple(reg, reg).map(([a, b]) => ({ bytes: [rexW(a, b), 0x87, modrmReg(a, b)] })),
  fc.tuple(reg, reg).map(([a, b]) => ({ bytes: [rexW(a, b), 0x0f, 0xbc, modrmReg(a, b)] })),
  fc.tuple(disp, fc.integer({ min: 0, max: 255 })).map(([d, imm]) => ({ bytes: [0x80, ...memRbx(0, d + 5), imm] })),
);
/**
 * x87 instructions (exec/x87.ts; the compiler leaves them to their handlers): loads and stores
 * through rbx, arithmetic on the stack and memory, compares into EFLAGS, FCMOV, FNSTSW AX. The
 * stack over- and underflows and unmasked exceptions (#MF on the next one) are all fine: both
 * sides must agree, and the FPU state is compared with the registers.
 */
const X87 = fc.oneof(
  fc.constant({ bytes: [0xdb, 0xe3] }), // fninit
  disp.map((d) => ({ bytes: [0xdd, ...memRbx(0, d)] })), // fld qword
  disp.map((d) => ({ bytes: [0xdb, ...memRbx(0, d + 4)] })), // fild dword
  fc.tuple(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 7 }), fc.constantFrom(0xd8, 0xdc, 0xde)).map(([op, i, esc]) => ({ bytes: [esc, 0xc0 + 8 * op + i] })),
  fc.tuple(fc.integer({ min: 0, max: 7 }), disp).map(([op, d]) => ({ bytes: [0xdc, ...memRbx(op, d)] })), // arith m64fp
  disp.map((d) => ({ bytes: [0xdd, ...memRbx(3, d)] })), // fstp qword
  disp.map((d) => ({ bytes: [0xdb, ...memRbx(3, d + 4)] })), // fistp dword
  fc.constant({ bytes: [0xdf, 0xe0] }), // fnstsw ax
  fc.integer({ min: 0, max: 7 }).map((i) => ({ bytes: [0xdb, 0xf0 + i] })), // fcomi
  fc.integer({ min: 0, max: 7 }).map((i) => ({ bytes: [0xd9, 0xc8 + i] })), // fxch
  fc.constantFrom(0xe0, 0xe1, 0xfa, 0xfc, 0xe8, 0xeb).map((b) => ({ bytes: [0xd9, b] })), // fchs fabs fsqrt frndint fld1 fldpi
  fc.integer({ min: 0, max: 7 }).map((i) => ({ bytes: [0xda, 0xc0 + i] })), // fcmovb
);
/** CALL to the next instruction then POP (balanced); PUSH an address and RET to the next instruction. */
const CALLRET = fc.tuple(reg, fc.boolean()).map(([a, viaRet]) => ({
  bytes: viaRet ? [rexW(0, 0), 0x8d, 0x05, 2, 0, 0, 0, 0x50, 0xc3] : [0xe8, 0, 0, 0, 0, ...(a >= 8 ? [0x41] : []), 0x58 + (a & 7)],
}));
/** A load through r15 (unmapped or non-canonical, set per program): #PF or #GP. */
const FAULT: fc.Arbitrary<Item> = fc.constant({ bytes: [0x49, 0x8b, 0x07] }); // mov rax, [r15]

const SIMPLE = fc.oneof(
  { arbitrary: ALU_RR, weight: 4 },
  { arbitrary: ALU_RI, weight: 2 },
  { arbitrary: ALU_RI32, weight: 1 },
  { arbitrary: ALU_RM, weight: 3 },
  { arbitrary: ALU_MI, weight: 1 },
  { arbitrary: TEST, weight: 2 },
  { arbitrary: TEST_AI, weight: 1 },
  { arbitrary: MOV, weight: 4 },
  { arbitrary: LEA, weight: 2 },
  { arbitrary: INCDEC, weight: 2 },
  { arbitrary: PUSHPOP, weight: 1 },
  { arbitrary: EXTEND, weight: 2 },
  { arbitrary: SHIFT, weight: 3 },
  { arbitrary: NOT, weight: 1 },
  { arbitrary: SETCC, weight: 2 },
  { arbitrary: CMOV, weight: 2 },
  { arbitrary: OTHER, weight: 2 },
  { arbitrary: IMUL, weight: 3 },
  { arbitrary: MUL1, weight: 1 },
  { arbitrary: NOP_EXTEND, weight: 1 },
  { arbitrary: BYTE_CMP, weight: 2 },
  { arbitrary: CALLRET, weight: 1 },
  { arbitrary: X87, weight: 3 },
);

/**
 * An inner loop (r13 counts it down from 1..6): a body with a Jcc over one instruction in it (so
 * the loop is several blocks: a region with internal forward and back edges), `dec r13d; jnz`
 * back to its start (rel8 or rel32).
 */
const INNER = fc
  .tuple(fc.integer({ min: 1, max: 6 }), SIMPLE, fc.integer({ min: 0, max: 15 }), SIMPLE, fc.array(SIMPLE, { maxLength: 3 }), fc.boolean())
  .map(([count, a, cc, skipped, rest, near]) => {
    const body = [...a.bytes, 0x70 + cc, skipped.bytes.length, ...skipped.bytes, ...rest.flatMap((r) => r.bytes), 0x41, 0xff, 0xcd]; // dec r13d
    const back = near ? [0x75, (-(body.length + 2)) & 0xff] : [0x0f, 0x85, ...le32(-(body.length + 6))];
    return { bytes: [0x41, 0xbd, ...le32(count), ...body, ...back] }; // mov r13d, count
  });
/** A JMP over an instruction that is never run. */
const JMP_OVER = SIMPLE.map((s) => ({ bytes: [0xeb, s.bytes.length, ...s.bytes] }));

/** A body item: an instruction, a Jcc over the next one, an inner loop, a rare fault, or a self-modifying store. */
const BODY = fc.array(
  fc.oneof(
    { arbitrary: SIMPLE.map((s) => [s as Item]), weight: 12 },
    { arbitrary: fc.tuple(fc.integer({ min: 0, max: 15 }), SIMPLE).map(([cc, s]) => [{ bytes: [0x70 + cc, s.bytes.length] }, s] as Item[]), weight: 3 },
    { arbitrary: INNER.map((s) => [s as Item]), weight: 2 },
    { arbitrary: JMP_OVER.map((s) => [s as Item]), weight: 1 },
    { arbitrary: FAULT.map((s) => [s]), weight: 1 },
    { arbitrary: fc.constant<Item[]>([{ smc: true }]), weight: 1 },
  ),
  { minLength: 1, maxLength: 24 },
);

interface Program {
  code: Uint8Array;
  regs: number[];
  loops: number;
  badPointer: number;
  slices: number[];
}

/** Lay out: r12d = loops; L: body; add eax, imm8 (the SMC target); dec r12d; jnz L; hlt. */
function assemble(body: readonly (readonly Item[])[], loops: number): Uint8Array {
  const items = body.flat();
  const tail: number[] = [0x83, 0xc0, 0x01, 0x41, 0xff, 0xcc]; // add eax,1 ; dec r12d
  const head = [0x41, 0xbc, ...le32(loops)]; // mov r12d, loops
  const sizes = items.map((it) => ("bytes" in it ? it.bytes.length : 7));
  const bodyLen = sizes.reduce((a, b) => a + b, 0);
  const loopLen = bodyLen + tail.length + 6; // jnz rel32
  const out: number[] = [...head];
  const targetImm = head.length + bodyLen + 2; // the imm8 of "add eax, 1"
  for (const it of items) {
    if ("bytes" in it) out.push(...it.bytes);
    else {
      const next = out.length + 7;
      out.push(0x80, 0x05, ...le32(targetImm - next), 0x01); // add byte [rip + d], 1
    }
  }
  out.push(...tail);
  out.push(0x0f, 0x85, ...le32(-loopLen));
  out.push(0xf4);
  return Uint8Array.from(out);
}

const PROGRAM: fc.Arbitrary<Program> = fc
  .record({
    body: BODY,
    regs: fc.array(fc.oneof(fc.integer(), fc.integer({ min: -3, max: 3 })), { minLength: 32, maxLength: 32 }),
    loops: fc.integer({ min: 1, max: 40 }),
    badPointer: fc.constantFrom(0x8000_0000, 0x7fff_ffff_f000, 2 ** 47, 0x1000_0000_0000),
    slices: fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 4, maxLength: 12 }),
  })
  .map(({ body, regs, loops, badPointer, slices }) => ({ code: assemble(body, loops), regs, loops, badPointer, slices }));

/** A machine with the program loaded, an IDT whose gates (IST 1) land on HLTs, rbx at the scratch page. */
function load(p: Program, jit: boolean): TestMachine {
  const m = machine64(p.code, 8 * 1024 * 1024);
  const { cpu, memory } = m;
  for (let v = 0; v < 32; v++) {
    const target = HANDLERS + v * 16;
    memory.write32(IDT + v * 16, (0x08 << 16) | (target & 0xffff));
    memory.write32(IDT + v * 16 + 4, (target & 0xffff0000) | 0x8e00 | 1);
    memory.write32(IDT + v * 16 + 8, 0);
    memory.write8(target, 0xf4);
  }
  memory.write64(TSS + 0x24, IST_STACK, 0);
  // Only the first 8 MiB are RAM: unmap the rest of the identity map (2 MiB pages 4..511).
  for (let k = 4; k < 512; k++) memory.write64(0x4000 + k * 8, 0, 0);
  for (let k = 0; k < 128; k++) memory.write32(SCRATCH + 4 * k, (Math.imul(k, 0x9e3779b9) ^ p.regs[k % 32]!) | 0);
  cpu.idtrBase = IDT;
  cpu.idtrLimit = 32 * 16 - 1;
  cpu.tr.base = TSS;
  cpu.tr.limit = 0x67;
  for (const r of DATA_REGS) {
    cpu.lo[r] = p.regs[r]! | 0;
    cpu.hi[r] = p.regs[r + 16]! | 0;
  }
  cpu.setRegFromNumber(3, SCRATCH);
  cpu.setRegFromNumber(15, p.badPointer);
  cpu.setFlags(p.regs[5]! & 0x8d5, 0x8d5);
  cpu.jit = jit;
  cpu.compileBlocks = jit;
  cpu.blockThreshold = 1;
  return m;
}

function state(cpu: Cpu): string {
  const regs = Array.from({ length: 16 }, (_, k) => `${(cpu.hi[k]! >>> 0).toString(16)}:${(cpu.lo[k]! >>> 0).toString(16)}`).join(" ");
  const f = cpu.fpu;
  const st = Array.from({ length: 8 }, (_, k) => `${f.stSe[k]!.toString(16)}:${f.stHi[k]!.toString(16)}:${f.stLo[k]!.toString(16)}`).join(" ");
  const fpu = `fcw=${f.fcw.toString(16)} fsw=${f.fsw.toString(16)} ftw=${f.ftw.toString(16)} fop=${f.fop.toString(16)} fip=${f.fipLo.toString(16)} fdp=${f.fdpLo.toString(16)} ${st}`;
  return `rip=${cpu.rip.toString(16)} retired=${cpu.retired} flags=${cpu.getFlags().toString(16)} cr2=${cpu.cr2.toString(16)} ${regs} ${fpu}`;
}

function memoryOf(m: TestMachine): string {
  const out: number[] = [];
  for (const [base, len] of [[SCRATCH, 512], [CODE, 1024], [0x8_0000 - 512, 512], [IST_STACK - 64, 64]] as const) {
    for (let k = 0; k < len; k += 4) out.push(m.memory.read32(base + k) as number);
  }
  return out.join(",");
}

const steps = (c: Cpu) => c.retired + c.eventsDelivered * c.eventWeight;

/**
 * Run the program both ways; return the first difference, or undefined. `lockstep` false: no
 * comparison at block entries (no entry hook, so the code is generated as in production: flags
 * left pending on region edges into blocks that overwrite them first), only after each slice.
 */
function compare(p: Program, lockstep = true): string | undefined {
  const jit = load(p, true);
  const ref = load(p, false); // run in the same slices
  const step = load(p, false); // run to each block entry
  let diff: string | undefined;
  let entries = 0;
  jitHooks.onBlockEntry = !lockstep ? undefined : (c, rip) => {
    if (diff !== undefined || c !== jit.cpu) return;
    entries++;
    while (steps(step.cpu) < steps(c)) {
      const r = step.cpu.run(steps(c) - steps(step.cpu));
      if (r.kind !== "budget") break;
    }
    const a = state(c).replace(/^rip=\S+/, `rip=${rip.toString(16)}`);
    const b = state(step.cpu);
    if (a !== b) diff = `at block entry ${entries}:\n compiled    ${a}\n interpreter ${b}`;
  };
  try {
    for (let k = 0; k < 40 && diff === undefined; k++) {
      const n = p.slices[k % p.slices.length]!;
      const ra = jit.cpu.run(n);
      const rb = ref.cpu.run(n);
      if (diff !== undefined) break;
      const a = `${ra.kind} ${ra.retired} ${state(jit.cpu)}`;
      const b = `${rb.kind} ${rb.retired} ${state(ref.cpu)}`;
      if (a !== b) diff = `after slice ${k} (${n}):\n compiled    ${a}\n interpreter ${b}`;
      else if (memoryOf(jit) !== memoryOf(ref)) diff = `memory differs after slice ${k}`;
      if (ra.kind !== "budget") break;
    }
  } finally {
    jitHooks.onBlockEntry = undefined;
  }
  return diff;
}

describe("the block compiler agrees with the interpreter, instruction by instruction", () => {
  it("on random programs with branches, loops, calls, faults and self-modifying code (seeded)", { timeout: 120_000 }, async () => {
    for (let round = 0; round < 10; round++) {
      fc.assert(
        fc.property(PROGRAM, (p) => {
          const d = compare(p);
          return d === undefined ? true : (() => { throw new Error(d); })();
        }),
        { seed: 0x5eed + round, numRuns: 100 },
      );
      await new Promise((r) => setImmediate(r));
    }
  });

  it("on random programs compiled as in production (no entry hook), compared after every slice (seeded)", { timeout: 120_000 }, async () => {
    for (let round = 0; round < 6; round++) {
      fc.assert(
        fc.property(PROGRAM, (p) => {
          const d = compare(p, false);
          return d === undefined ? true : (() => { throw new Error(d); })();
        }),
        { seed: 0xdead + round, numRuns: 100 },
      );
      await new Promise((r) => setImmediate(r));
    }
  });

  it("the programs exercise what they are meant to (compiled blocks, self-loops, faults, SMC, x87)", () => {
    let x87 = 0;
    let compiled = 0;
    let smc = 0;
    let faults = 0;
    let regions = 0;
    let regionBlocks = 0;
    jitHooks.onCompile = (blocks) => {
      if (blocks > 1) {
        regions++;
        regionBlocks += blocks;
      }
    };
    fc.assert(
      fc.property(PROGRAM, (p) => {
        const m = load(p, true);
        for (const n of p.slices) if (m.cpu.run(n * 10).kind !== "budget") break;
        compiled += m.cpu.counters.compiledBlocks;
        smc += m.cpu.counters.smcInvalidations;
        faults += m.cpu.counters.exceptions;
        if (m.cpu.fpu.fop !== 0) x87++;
        return true;
      }),
      { seed: 0x5eed, numRuns: 60 },
    );
    jitHooks.onCompile = undefined;
    // Regions: loops whose body is several blocks, entered and left through internal edges.
    expect(regions).toBeGreaterThan(20);
    expect(regionBlocks / regions).toBeGreaterThan(2);
    expect(compiled).toBeGreaterThan(60);
    expect(smc).toBeGreaterThan(0);
    expect(faults).toBeGreaterThan(0);
    expect(x87).toBeGreaterThan(5);
  });
});

describe("the page a compiled block remembers between accesses (tlbHit)", () => {
  it("is forgotten after a slow path: a page re-mapped by a PDE store and evicted from the TLB is walked again", () => {
    // mov rax,[4 MiB] (a TLB miss: filled); mov rsi,[4 MiB] (a hit: remembered); mov [PD entry 2],rcx
    // (4 MiB -> 6 MiB, no INVLPG); mov rbx,[20 MiB] (a miss in the TLB slot of the 4 MiB page: it
    // evicts that entry); mov rdx,[4 MiB] (walked again: the new mapping); hlt
    const code = "488b042500004000" + "488b342500004000" + "48890c2510400000" + "488b1c2500004001" + "488b142500004000" + "f4";
    const results = [true, false].map((jit) => {
      const m = machine64(code);
      m.memory.write64(0x40_0000, 0x1111, 0);
      m.memory.write64(0x60_0000, 0x2222, 0);
      m.cpu.setRegFromNumber(1, 0x60_0000 | 0x87);
      m.cpu.jit = jit;
      m.cpu.compileBlocks = jit;
      m.cpu.blockThreshold = 1;
      expect(m.cpu.run(100).kind).toBe("hlt");
      return [m.cpu.regAddr(0), m.cpu.regAddr(2), m.cpu.counters.compiledBlocks];
    });
    expect(results[0]![2]).toBeGreaterThan(0);
    expect(results[0]!.slice(0, 2)).toEqual(results[1]!.slice(0, 2));
    expect(results[1]!.slice(0, 2)).toEqual([0x1111, 0x2222]);
  });
});

describe("selecting the block compiler", () => {
  it("CpuOptions.jit and VTLAB_JIT=0 choose the handler-calling blocks; the default compiles specialised code", () => {
    const saved = process.env.VTLAB_JIT;
    try {
      delete process.env.VTLAB_JIT;
      const loop = "b9e8030000" + "4801c8" + "ffc9" + "75f9" + "f4"; // mov ecx,1000; 1: add rax,rcx; dec ecx; jnz 1b; hlt
      // Blocks compiled to specialised code report their entries to the hook; handler-calling ones do not.
      let entries = 0;
      jitHooks.onBlockEntry = () => void entries++;
      const kinds = (m: TestMachine) => {
        m.cpu.blockThreshold = 1;
        entries = 0;
        expect(m.cpu.run(10_000).kind).toBe("hlt");
        return { compiled: m.cpu.counters.compiledBlocks > 0, specialised: entries > 0 };
      };
      const byDefault = machine64(loop);
      expect(byDefault.cpu.jit).toBe(true);
      expect(kinds(byDefault)).toEqual({ compiled: true, specialised: true });
      process.env.VTLAB_JIT = "0";
      const off = machine64(loop);
      expect(off.cpu.jit).toBe(false);
      expect(kinds(off)).toEqual({ compiled: true, specialised: false });
      // Same result either way: RAX = 1000 + 999 + ... + 1, RCX = 0, RIP past the HLT.
      for (const m of [byDefault, off]) expect([m.cpu.regAddr(0), m.cpu.regAddr(1), m.cpu.retired]).toEqual([500_500, 0, 1 + 3 * 1000 + 1]);
      expect(new Cpu({ memory: off.memory, jit: true }).jit).toBe(true);
    } finally {
      jitHooks.onBlockEntry = undefined;
      if (saved === undefined) delete process.env.VTLAB_JIT;
      else process.env.VTLAB_JIT = saved;
    }
  });
});

describe("generated functions shared between CPUs (factoryFor)", () => {
  it("the same code compiled on a second CPU reuses the factory, with that CPU's own bound values", () => {
    // mov ecx,1000; 1: add rax,rcx; dec ecx; jnz 1b; hlt: one self-looping block.
    const loop = "b9e8030000" + "4801c8" + "ffc9" + "75f9" + "f4";
    const seen: string[] = [];
    const make = (name: string) => {
      const m = machine64(loop);
      m.cpu.jit = true;
      m.cpu.blockThreshold = 1;
      // A hook bound at compile time: each CPU's blocks must call the one bound when they were compiled.
      return { m, hook: (c: Cpu) => void seen.push(c === m.cpu ? name : `${name}?`) };
    };
    const a = make("a");
    const b = make("b");
    const c = make("c");
    try {
      jitHooks.onBlockEntry = c.hook;
      expect(c.m.cpu.run(500).kind).toBe("budget"); // c's loop compiled, half run
      jitHooks.onBlockEntry = a.hook;
      expect(a.m.cpu.run(10_000).kind).toBe("hlt");
      const before = { ...jitStats };
      jitHooks.onBlockEntry = b.hook;
      expect(b.m.cpu.run(10_000).kind).toBe("hlt");
      expect(jitStats.factoriesCreated).toBe(before.factoriesCreated); // nothing new generated for b
      expect(jitStats.factoriesReused).toBeGreaterThan(before.factoriesReused);
      expect(jitStats.generatedReused).toBeGreaterThan(before.generatedReused); // nor its source
      // c's block still runs with c's own values (its hook, its instructions).
      const mark = seen.length;
      jitHooks.onBlockEntry = () => void seen.push("late"); // bound only into what is compiled from now on
      expect(c.m.cpu.run(10_000).kind).toBe("hlt");
      expect(seen.slice(mark)).toContain("c");
      for (const m of [a.m, b.m, c.m]) expect([m.cpu.regAddr(0), m.cpu.regAddr(1), m.cpu.retired]).toEqual([500_500, 0, 1 + 3 * 1000 + 1]);
      for (const name of ["a", "b", "c"]) expect(seen).toContain(name);
      expect(seen.filter((x) => x.endsWith("?"))).toEqual([]);
    } finally {
      jitHooks.onBlockEntry = undefined;
    }
  });

  it("the key of shared generated source names every field of a decoded instruction", () => {
    // A field the key left out would let code differing only there share one generated source.
    const fields = Object.keys(new Insn(() => undefined)).sort();
    expect([...INSN_KEYED_FIELDS, ...INSN_UNKEYED_FIELDS].sort()).toEqual(fields);
  });

  it("code that differs in any decoded field (here an immediate) is generated for itself", () => {
    // mov ecx,1000; 1: add rax,imm8; dec ecx; jnz 1b; hlt: the same layout, another immediate.
    const before = { ...jitStats };
    const sums = [3, 7, 3].map((imm) => {
      const m = machine64("b9e8030000" + `4883c0${imm.toString(16).padStart(2, "0")}` + "ffc9" + "75f8" + "f4");
      m.cpu.jit = true;
      m.cpu.blockThreshold = 1;
      expect(m.cpu.run(10_000).kind).toBe("hlt");
      expect(m.cpu.counters.compiledBlocks).toBeGreaterThan(0);
      return m.cpu.regAddr(0);
    });
    expect(sums).toEqual([3000, 7000, 3000]);
    expect(jitStats.generatedReused).toBeGreaterThan(before.generatedReused); // the third reuses the first's
  });

  it("are bounded: new code without end flushes the shared caches whole at the entry and size bounds", () => {
    const saved = { ...jitCacheBounds };
    const before = jitStats.cacheFlushes;
    try {
      for (const [maxEntries, maxChars] of [[4, 1e9], [1e9, 6000]] as const) {
        jitCacheBounds.maxEntries = maxEntries;
        jitCacheBounds.maxChars = maxChars;
        const flushes = jitStats.cacheFlushes;
        for (let imm = 1; imm <= 12; imm++) {
          // Each program a different immediate: new source every time.
          const m = machine64("b9e8030000" + `4883c0${imm.toString(16).padStart(2, "0")}` + "ffc9" + "75f8" + "f4");
          m.cpu.jit = true;
          m.cpu.blockThreshold = 1;
          expect(m.cpu.run(10_000).kind).toBe("hlt");
          expect(m.cpu.regAddr(0)).toBe(1000 * imm);
          expect(jitStats.cached.entries).toBeLessThanOrEqual(2 * maxEntries);
          expect(jitStats.cached.chars).toBeLessThanOrEqual(maxChars);
        }
        expect(jitStats.cacheFlushes).toBeGreaterThan(flushes);
      }
    } finally {
      Object.assign(jitCacheBounds, saved);
    }
    expect(jitStats.cacheFlushes).toBeGreaterThan(before);
  });
});
