/**
 * SSE/SSE2 cases for the host-CPU differential test, generated from the SSE decode table
 * (src/decode/sse-table.ts): every form of every row, with register and memory operands, random
 * REX bits, immediates, MXCSR values and operands (integers of every shape; for the
 * floating-point forms NaNs, infinities, zeros, denormals, values near the limits).
 *
 * The harness compares GPRs, RFLAGS and the 256-byte scratch buffer, so a case loads its XMM
 * operands from the buffer, runs the instruction, and stores the XMM registers it names and
 * MXCSR back into it:
 *
 *   [0, 16)   the V (ModRM.reg) register's input     [96, 112)  the V register after
 *   [16, 32)  the r/m XMM register's input           [112, 128) the r/m XMM register after
 *   [64, 80)  the memory operand (16-byte aligned)   [128, 132) MXCSR after
 *   [80, 84)  MXCSR for the case; [84, 88) 0x1F80 (restored at the end)
 */
import { F_IMM8, F_MEM, F_REGONLY, SSE_OPCODES, isSseGroup, type OpSpec } from "@vtlab/cpu-vmx";
import { SCRATCH_BASE, SCRATCH_SIZE, makeCase, type GprName, type TestCase } from "./generate";

export interface SseForm {
  opcode: number;
  /** Mandatory prefix byte (0 = none). */
  prefix: number;
  /** ModRM.reg for a group row. */
  groupReg: number | undefined;
  spec: OpSpec;
}

const PREFIX = { none: 0, p66: 0x66, f3: 0xf3, f2: 0xf2 } as const;

/** Every form the SSE table defines. */
export function sseForms(): SseForm[] {
  const out: SseForm[] = [];
  for (const [opcode, row] of SSE_OPCODES) {
    for (const col of ["none", "p66", "f3", "f2"] as const) {
      const f = row[col];
      if (f === undefined) continue;
      if (isSseGroup(f)) f.forEach((spec, reg) => spec && out.push({ opcode, prefix: PREFIX[col], groupReg: reg, spec }));
      else out.push({ opcode, prefix: PREFIX[col], groupReg: undefined, spec: f });
    }
  }
  return out;
}

const le = (v: number, n: number) => Array.from({ length: n }, (_, k) => (v >>> (8 * k)) & 0xff);

/** xorshift32. */
export function rng(seed: number): () => number {
  let x = seed | 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

/** The operands of a form, from its SDM notation. */
interface Shape {
  /** ModRM.reg is a general register (G) rather than an XMM register (V). */
  regGpr: boolean;
  /** The r/m operand, when a register, is a general register (E, R). */
  rmGpr: boolean;
  mem: "never" | "only" | "either";
  /** Size of the memory operand in bytes. */
  memSize: number;
  /** Floating-point lanes of the V operand and of the r/m operand: 4 (single) or 8 (double), 0 for integer data. */
  fpReg: number;
  fpRm: number;
}

function sizeOf(t: string): number {
  const s = t.replace(/^[VWUMEGR]/, "");
  if (s === "ps" || s === "pd" || s === "dq" || s === "") return 16;
  if (s === "q" || s === "sd") return 8;
  if (s === "ss" || s === "d" || s === "y") return 4;
  if (s === "w") return 2;
  return 16;
}

export function shapeOf(f: SseForm): Shape {
  const ops = f.spec.operands.split("|")[0]!.split(",");
  const rmOp = ops.find((o) => /^[WUMER]/.test(o)) ?? ops[1] ?? "";
  const regOp = ops.find((o) => /^[VG]/.test(o)) ?? "";
  const flags = f.spec.flags;
  const mem = (flags & F_MEM) !== 0 ? "only" : (flags & F_REGONLY) !== 0 ? "never" : "either";
  let memSize = sizeOf(rmOp.split("/").pop()!);
  if (rmOp.startsWith("Ry/Mw")) memSize = 2;
  const fpOf = (t: string) => (/ss|ps/.test(t) ? 4 : /sd|pd/.test(t) ? 8 : 0);
  return { regGpr: regOp.startsWith("G"), rmGpr: /^[ER]/.test(rmOp), mem, memSize, fpReg: fpOf(regOp), fpRm: fpOf(rmOp) };
}

/** General registers a case may name: not RBX (the buffer's base) or RSP (the host's stack). */
const GPRS = [0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const GPR_NAME: GprName[] = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"] as GprName[];

const F32_SPECIAL = [0x00000000, 0x80000000, 0x3f800000, 0xbf800000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0x7fa00000, 0x00000001, 0x807fffff, 0x00800000, 0x7f7fffff, 0xff7fffff, 0x4f000000, 0xcf000000, 0x5f000000, 0x3effffff, 0x3f000000, 0x40490fdb, 0x34000000, 0x4b000000];
const F64_SPECIAL: [number, number][] = [
  [0, 0],
  [0, 0x80000000],
  [0, 0x3ff00000],
  [0, 0xbff00000],
  [0, 0x7ff00000],
  [0, 0xfff00000],
  [0, 0x7ff80000],
  [0, 0xfff80000],
  [1, 0x7ff00000],
  [0, 0x7ff40000],
  [1, 0],
  [0xffffffff, 0x800fffff],
  [0, 0x00100000],
  [0xffffffff, 0x7fefffff],
  [0, 0x41e00000],
  [0, 0xc1e00000],
  [0, 0x43e00000],
  [0xffc00000, 0x41dfffff],
  [0, 0x3fe00000],
  [0x54442d18, 0x400921fb],
  [0, 0x36a00000],
  [0xe0000000, 0x47efffff],
  [0x20000000, 0x3810000],
];

/** 16 bytes of operand data: integer shapes, or FP lanes of the given width. */
function operandBytes(next: () => number, fp: number): number[] {
  const out: number[] = [];
  const kind = next() % 4;
  if (fp === 4) {
    for (let k = 0; k < 4; k++) {
      const r = next() % 8;
      // Specials; exponents near 1 (cancellation, exact results); near the limits (overflow, underflow); any bits.
      const v = r < 3 ? F32_SPECIAL[next() % F32_SPECIAL.length]! : r < 5 ? (next() & 0x807fffff) | (((next() % 40) + 107) << 23) : r === 5 ? (next() & 0x807fffff) | ([next() % 24, 230 + (next() % 25)][next() % 2]! << 23) : next();
      out.push(...le(v, 4));
    }
    return out;
  }
  if (fp === 8) {
    for (let k = 0; k < 2; k++) {
      const r = next() % 8;
      let lo: number;
      let hi: number;
      if (r < 3) [lo, hi] = F64_SPECIAL[next() % F64_SPECIAL.length]!;
      else if (r < 5) {
        lo = next();
        hi = (next() & 0x800fffff) | (((next() % 80) + 983) << 20);
      } else if (r === 5) {
        lo = next();
        hi = (next() & 0x800fffff) | ([next() % 60, 1990 + (next() % 57), 863 + (next() % 40), 1140 + (next() % 40)][next() % 4]! << 20);
      } else {
        lo = next();
        hi = next();
      }
      out.push(...le(lo >>> 0, 4), ...le(hi >>> 0, 4));
    }
    return out;
  }
  for (let k = 0; k < 16; k++) {
    const b = next() & 0xff;
    out.push(kind === 0 ? [0x00, 0xff, 0x80, 0x7f, 0x01, 0xfe][b % 6]! : kind === 1 ? (b < 128 ? 0 : b) : b);
  }
  return out;
}

const IMM_SPECIAL = [0, 1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 0x80, 0xff, 0x1b, 0xe4, 0x4e];

/** A random MXCSR: any rounding mode, FTZ/DAZ, flags; with `unmasked`, some exceptions unmasked. */
function randomMxcsr(next: () => number, unmasked: boolean): number {
  const rc = (next() & 3) << 13;
  const ftz = next() % 4 === 0 ? 0x8000 : 0;
  const daz = next() % 4 === 0 ? 0x40 : 0;
  const flags = next() % 2 === 0 ? next() & 0x3f : 0;
  const masks = unmasked && next() % 3 === 0 ? (0x1f80 & ~((1 << (7 + (next() % 6))) | (next() % 2 ? 1 << (7 + (next() % 6)) : 0))) : 0x1f80;
  return rc | ftz | daz | flags | masks;
}

export interface SseCaseOptions {
  /** Allow unmasked exceptions in MXCSR (the FP forms then may raise #XM: SIGFPE on the host). */
  unmasked?: boolean;
}

const MOD_DISP32 = 0x80;

function modrmMem(reg: number, disp: number): number[] {
  return [MOD_DISP32 | ((reg & 7) << 3) | 3, ...le(disp, 4)]; // [rbx + disp32]
}

function rexByte(w: boolean, reg: number, index: number, rm: number, force: boolean): number[] {
  const v = 0x40 | (w ? 8 : 0) | ((reg >> 3) << 2) | ((index >> 3) << 1) | (rm >> 3);
  return v !== 0x40 || force ? [v] : [];
}

/** movdqu xmm, [rbx+disp] / movdqu [rbx+disp], xmm. */
function movdqu(store: boolean, xmm: number, disp: number): [string, number[]] {
  return [`movdqu ${store ? `[rbx+${disp}], xmm${xmm}` : `xmm${xmm}, [rbx+${disp}]`}`, [0xf3, ...rexByte(false, xmm, 0, 0, false), 0x0f, store ? 0x7f : 0x6f, ...modrmMem(xmm, disp)]];
}

/** One case for form `f`: `variant` picks register/memory and alignment deterministically with the rng. */
export function sseCase(f: SseForm, seed: number, options: SseCaseOptions = {}): TestCase {
  const next = rng(seed * 7919 + f.opcode * 31 + f.prefix + (f.groupReg ?? 0) * 1009);
  const shape = shapeOf(f);
  const useMem = shape.mem === "only" || (shape.mem === "either" && next() % 2 === 0);
  const misaligned = useMem && shape.memSize === 16 && next() % 16 === 0;
  const memDisp = 64 + (misaligned ? 1 + (next() % 15) : 0);
  const rexW = next() % 2 === 0;
  const forceRex = next() % 4 === 0;
  const pick = (list: readonly number[]) => list[next() % list.length]!;
  const reg = f.groupReg !== undefined ? f.groupReg : shape.regGpr ? pick(GPRS) : next() % 16;
  const rm = shape.rmGpr ? pick(GPRS) : next() % 16;
  const regXmm = f.groupReg === undefined && !shape.regGpr;
  const rmXmm = !useMem && !shape.rmGpr;

  const memory = new Uint8Array(SCRATCH_SIZE);
  for (let k = 0; k < SCRATCH_SIZE; k++) memory[k] = next() & 0xff;
  memory.set(operandBytes(next, shape.fpReg), 0);
  memory.set(operandBytes(next, shape.fpRm), 16);
  // Often make the two operands share lanes (equal compares, x - x, min of equals).
  if (next() % 4 === 0) memory.set(memory.subarray(0, 8), 16 + (next() % 2) * 8);
  if (next() % 6 === 0) for (let k = 0; k < 16; k += 4) memory.set(memory.subarray(k ^ 4, (k ^ 4) + 4), 16 + k); // x - x in every lane
  memory.set(operandBytes(next, shape.fpRm), 64);
  if (next() % 4 === 0) memory.set(memory.subarray(0, 16), 64);
  const mxcsr = randomMxcsr(next, options.unmasked ?? false);
  memory.set(le(mxcsr, 4), 80);
  memory.set(le(0x1f80, 4), 84);

  const code: [string, number[]][] = [];
  code.push(["ldmxcsr [rbx+80]", [0x0f, 0xae, 0x50 | 3, 80]]);
  if (regXmm) code.push(movdqu(false, reg, 0));
  if (rmXmm && !(regXmm && rm === reg)) code.push(movdqu(false, rm, 16));

  // The instruction under test.
  const bytes: number[] = [];
  if (f.prefix !== 0) bytes.push(f.prefix);
  const regField = reg;
  bytes.push(...rexByte(rexW, regField, 0, useMem ? 3 : rm, forceRex));
  bytes.push(0x0f, f.opcode & 0xff);
  if (useMem) bytes.push(...modrmMem(regField, memDisp));
  else bytes.push(0xc0 | ((regField & 7) << 3) | (rm & 7));
  const hasImm = (f.spec.flags & F_IMM8) !== 0;
  const imm = next() % 2 === 0 ? IMM_SPECIAL[next() % IMM_SPECIAL.length]! : next() & 0xff;
  if (hasImm) bytes.push(imm);
  const text = `${f.prefix ? f.prefix.toString(16) + " " : ""}${f.spec.mnemonic} ${f.spec.operands} reg=${reg} ${useMem ? `[rbx+${memDisp}]` : `rm=${rm}`}${rexW ? " REX.W" : ""}${hasImm ? ` imm=${imm}` : ""}`;
  code.push([text, bytes]);

  if (regXmm) code.push(movdqu(true, reg, 96));
  if (rmXmm) code.push(movdqu(true, rm, 112));
  code.push(["stmxcsr [rbx+128]", [0x0f, 0xae, 0x98 | 3, ...le(128, 4)]]);
  code.push(["ldmxcsr [rbx+84]", [0x0f, 0xae, 0x50 | 3, 84]]);

  const gprs: Partial<Record<GprName, bigint>> = {};
  for (const r of GPRS) {
    const v = BigInt(next()) | (BigInt(next() % 3 === 0 ? 0 : next()) << 32n);
    gprs[GPR_NAME[r]!] = next() % 5 === 0 ? [0n, 1n, 0x7fffffffn, 0x80000000n, 0xffffffffn, -1n, 0x7fffffffffffffffn][next() % 7]! : v;
  }
  // MASKMOVDQU stores through rDI: point it at the memory operand.
  if (f.spec.mnemonic === "maskmovdqu") gprs.rdi = SCRATCH_BASE + 64n;
  return makeCase({ instructions: code, gprs: Object.fromEntries(Object.entries(gprs).map(([k, v]) => [k, BigInt.asUintN(64, v!)])), rflags: next() & 0x8d5, memory });
}
