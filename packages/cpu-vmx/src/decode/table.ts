/**
 * The decode table: every opcode the interpreter implements, as data. The decoder, the
 * handlers' dispatch and the decoder tests are all driven from this one table (STYLE 10).
 *
 * Operand notation follows the SDM's opcode-map abbreviations (Vol. 2D, Appendix A.2): E = r/m,
 * G = ModRM.reg, I = immediate, J = relative offset, M = memory only, O = moffs, Z = register in
 * the opcode's low bits; size letters b = byte, w = word, d = doubleword, q = quadword,
 * v = operand size, z = word or doubleword (sign-extended to 64 bits), y = d or q.
 * Mnemonics are lower case, as iced-x86 and the SDM's index spell them.
 */
import type { Handler } from "./insn.js";
import * as alu from "../exec/alu.js";
import * as bits from "../exec/bits.js";
import * as cache from "../exec/cache-atomic.js";
import * as control from "../exec/control.js";
import * as fpu from "../exec/fpu.js";
import * as x87 from "../exec/x87.js";
import * as move from "../exec/move.js";
import * as muldiv from "../exec/muldiv.js";
import * as shift from "../exec/shift.js";
import * as stack from "../exec/stack.js";
import * as str from "../exec/string.js";
import * as sys from "../exec/system.js";
import { Seg } from "../regs.js";

// ---- Decode flags ----
/** A ModRM byte follows the opcode. */
export const F_MODRM = 1 << 0;
/** Byte operand size. */
export const F_BYTE = 1 << 1;
/** imm8 (zero-extended). */
export const F_IMM8 = 1 << 2;
/** imm8 sign-extended to the operand size. */
export const F_IMM8S = 1 << 3;
/** imm16. */
export const F_IMM16 = 1 << 4;
/** imm16 or imm32 by operand size; a 32-bit immediate is sign-extended for 64-bit operands. */
export const F_IMMZ = 1 << 5;
/** imm16/32/64 by operand size (MOV r, imm). */
export const F_IMMV = 1 << 6;
/** rel8. */
export const F_REL8 = 1 << 7;
/** rel16/rel32 (rel32 in 64-bit mode). */
export const F_RELZ = 1 << 8;
/** Default operand size 64 in 64-bit mode (0x66 gives 16). */
export const F_D64 = 1 << 9;
/** Operand size forced to 64 in 64-bit mode (near branches; 0x66 ignored, as Intel does). */
export const F_F64 = 1 << 10;
/** The r/m operand must be memory (a register form is #UD). */
export const F_MEM = 1 << 11;
/** Register encoded in the opcode's low three bits (+ REX.B). */
export const F_OPREG = 1 << 12;
/** Invalid in 64-bit mode. */
export const F_NO64 = 1 << 13;
/** Valid only in 64-bit mode. */
export const F_ONLY64 = 1 << 14;
/** moffs: an address-size immediate offset. */
export const F_MOFFS = 1 << 15;
/** ptr16:16/32 far pointer. */
export const F_FARPTR = 1 << 16;
/** imm16 then imm8 (ENTER). */
export const F_ENTER = 1 << 17;
/** ModRM.rm is a register whatever mod says (MOV to/from CR and DR). */
export const F_RMREG = 1 << 18;
/** Operand size is 64 in 64-bit mode and 32 otherwise, prefixes ignored (MOV CR/DR). */
export const F_NATIVE = 1 << 19;
/** String instruction: REP prefixes are meaningful. */
export const F_STRING = 1 << 20;
/** LOCK is allowed (with a memory destination); elsewhere LOCK is #UD (SDM Vol. 2A, "LOCK"). */
export const F_LOCKABLE = 1 << 21;

export interface OpSpec {
  readonly mnemonic: string;
  readonly operands: string;
  readonly exec: Handler;
  readonly flags: number;
  /** Sub-operation passed to the handler in `Insn.cc`. */
  readonly cc: number;
}

/** An opcode whose meaning depends on ModRM.reg (and, for some, on a register-form ModRM byte). */
export interface GroupSpec {
  readonly group: readonly (OpSpec | undefined)[];
  readonly flags: number;
  /** Register forms (mod = 3) selected by the whole ModRM byte (0F 01 C1 VMCALL and friends). */
  readonly regForms?: ReadonlyMap<number, OpSpec>;
}

export type Entry = OpSpec | GroupSpec;

/** Opcode -> entry, and the F3-prefixed variants (POPCNT, TZCNT, LZCNT, PAUSE). */
export const OPCODES = new Map<number, Entry>();
export const F3_VARIANTS = new Map<number, OpSpec>();

function op(mnemonic: string, operands: string, exec: Handler, flags = 0, cc = 0): OpSpec {
  return { mnemonic, operands, exec, flags, cc };
}

function def(opcode: number, entry: Entry): void {
  if (OPCODES.has(opcode)) throw new Error(`decode table: opcode ${opcode.toString(16)} defined twice`);
  OPCODES.set(opcode, entry);
}

const ALU_NAMES = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"] as const;
const CC_NAMES = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"] as const;
const SHIFT_NAMES = ["rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"] as const;

// ---- One-byte map ----
for (let k = 0; k < 8; k++) {
  const base = k * 8;
  const m = ALU_NAMES[k]!;
  const lockable = k === 7 ? 0 : F_LOCKABLE;
  def(base + 0, op(m, "Eb,Gb", alu.aluEG, F_MODRM | F_BYTE | lockable, k));
  def(base + 1, op(m, "Ev,Gv", alu.aluEG, F_MODRM | lockable, k));
  def(base + 2, op(m, "Gb,Eb", alu.aluGE, F_MODRM | F_BYTE, k));
  def(base + 3, op(m, "Gv,Ev", alu.aluGE, F_MODRM, k));
  def(base + 4, op(m, "AL,Ib", alu.aluAI, F_BYTE | F_IMM8, k));
  def(base + 5, op(m, "rAX,Iz", alu.aluAI, F_IMMZ, k));
}
// PUSH/POP ES, CS, SS, DS: invalid in 64-bit mode (there is no POP CS; 0F is the escape).
def(0x06, op("push", "ES", sys.pushPopSeg, F_NO64, 0));
def(0x07, op("pop", "ES", sys.pushPopSeg, F_NO64, 1));
def(0x0e, op("push", "CS", sys.pushPopSeg, F_NO64, 0));
def(0x16, op("push", "SS", sys.pushPopSeg, F_NO64, 0));
def(0x17, op("pop", "SS", sys.pushPopSeg, F_NO64, 1));
def(0x1e, op("push", "DS", sys.pushPopSeg, F_NO64, 0));
def(0x1f, op("pop", "DS", sys.pushPopSeg, F_NO64, 1));
for (let r = 0; r < 8; r++) {
  def(0x40 + r, op("inc", "Zv", alu.incE, F_OPREG | F_NO64));
  def(0x48 + r, op("dec", "Zv", alu.decE, F_OPREG | F_NO64));
  def(0x50 + r, op("push", "Zv", stack.pushR, F_OPREG | F_D64));
  def(0x58 + r, op("pop", "Zv", stack.popR, F_OPREG | F_D64));
}
def(0x63, op("movsxd", "Gv,Ed", move.movsx, F_MODRM | F_ONLY64, 4));
def(0x68, op("push", "Iz", stack.pushI, F_IMMZ | F_D64));
def(0x69, op("imul", "Gv,Ev,Iz", muldiv.imulGEI, F_MODRM | F_IMMZ));
def(0x6a, op("push", "Ib", stack.pushI, F_IMM8S | F_D64));
def(0x6b, op("imul", "Gv,Ev,Ib", muldiv.imulGEI, F_MODRM | F_IMM8S));
def(0x6c, op("insb", "Yb,DX", str.ins, F_BYTE | F_STRING));
def(0x6d, op("insd", "Yz,DX", str.ins, F_STRING));
def(0x6e, op("outsb", "DX,Xb", str.outs, F_BYTE | F_STRING));
def(0x6f, op("outsd", "DX,Xz", str.outs, F_STRING));
for (let c = 0; c < 16; c++) def(0x70 + c, op(`j${CC_NAMES[c]}`, "Jb", control.jccRel, F_REL8 | F_F64, c));
const group1 = (flags: number, operands: string) => ({
  group: ALU_NAMES.map((m, k) => op(m, operands, alu.aluEI, flags | (k === 7 ? 0 : F_LOCKABLE), k)),
  flags: F_MODRM,
});
def(0x80, group1(F_BYTE | F_IMM8, "Eb,Ib"));
def(0x81, group1(F_IMMZ, "Ev,Iz"));
def(0x82, { ...group1(F_BYTE | F_IMM8 | F_NO64, "Eb,Ib") });
def(0x83, group1(F_IMM8S, "Ev,Ib"));
def(0x84, op("test", "Eb,Gb", alu.testEG, F_MODRM | F_BYTE));
def(0x85, op("test", "Ev,Gv", alu.testEG, F_MODRM));
def(0x86, op("xchg", "Eb,Gb", move.xchgEG, F_MODRM | F_BYTE | F_LOCKABLE));
def(0x87, op("xchg", "Ev,Gv", move.xchgEG, F_MODRM | F_LOCKABLE));
def(0x88, op("mov", "Eb,Gb", move.movEG, F_MODRM | F_BYTE));
def(0x89, op("mov", "Ev,Gv", move.movEG, F_MODRM));
def(0x8a, op("mov", "Gb,Eb", move.movGE, F_MODRM | F_BYTE));
def(0x8b, op("mov", "Gv,Ev", move.movGE, F_MODRM));
def(0x8c, op("mov", "Ev,Sw", sys.movESreg, F_MODRM));
def(0x8d, op("lea", "Gv,M", move.lea, F_MODRM | F_MEM));
def(0x8e, op("mov", "Sw,Ew", sys.movSregE, F_MODRM));
def(0x8f, { group: [op("pop", "Ev", stack.popE, F_D64)], flags: F_MODRM });
def(0x90, op("nop", "", move.nop, 0));
for (let r = 1; r < 8; r++) def(0x90 + r, op("xchg", "Zv,rAX", move.xchgAR, F_OPREG));
def(0x98, op("cwde", "", move.cbw, 0));
def(0x99, op("cdq", "", move.cwd, 0));
def(0x9a, op("call", "Ap", control.callFarPtr, F_FARPTR | F_NO64));
def(0x9b, op("wait", "", fpu.fwait, 0));
def(0x9c, op("pushf", "", stack.pushf, F_D64));
def(0x9d, op("popf", "", stack.popf, F_D64));
def(0x9e, op("sahf", "", move.sahf, 0));
def(0x9f, op("lahf", "", move.lahf, 0));
def(0xa0, op("mov", "AL,Ob", move.movMoffs, F_MOFFS | F_BYTE, 0));
def(0xa1, op("mov", "rAX,Ov", move.movMoffs, F_MOFFS, 0));
def(0xa2, op("mov", "Ob,AL", move.movMoffs, F_MOFFS | F_BYTE, 1));
def(0xa3, op("mov", "Ov,rAX", move.movMoffs, F_MOFFS, 1));
def(0xa4, op("movsb", "Yb,Xb", str.movs, F_BYTE | F_STRING));
def(0xa5, op("movsd", "Yv,Xv", str.movs, F_STRING));
def(0xa6, op("cmpsb", "Xb,Yb", str.cmps, F_BYTE | F_STRING));
def(0xa7, op("cmpsd", "Xv,Yv", str.cmps, F_STRING));
def(0xa8, op("test", "AL,Ib", alu.testEI, F_BYTE | F_IMM8));
def(0xa9, op("test", "rAX,Iz", alu.testEI, F_IMMZ));
def(0xaa, op("stosb", "Yb,AL", str.stos, F_BYTE | F_STRING));
def(0xab, op("stosd", "Yv,rAX", str.stos, F_STRING));
def(0xac, op("lodsb", "AL,Xb", str.lods, F_BYTE | F_STRING));
def(0xad, op("lodsd", "rAX,Xv", str.lods, F_STRING));
def(0xae, op("scasb", "AL,Yb", str.scas, F_BYTE | F_STRING));
def(0xaf, op("scasd", "rAX,Yv", str.scas, F_STRING));
for (let r = 0; r < 8; r++) {
  def(0xb0 + r, op("mov", "Zb,Ib", move.movRI, F_OPREG | F_BYTE | F_IMM8));
  def(0xb8 + r, op("mov", "Zv,Iv", move.movRI, F_OPREG | F_IMMV));
}
const group2 = (flags: number, exec: Handler, operands: string) => ({
  group: SHIFT_NAMES.map((m, k) => op(m, operands, exec, flags, k)),
  flags: F_MODRM,
});
def(0xc0, group2(F_BYTE | F_IMM8, shift.shiftEI, "Eb,Ib"));
def(0xc1, group2(F_IMM8, shift.shiftEI, "Ev,Ib"));
def(0xc2, op("ret", "Iw", control.ret, F_IMM16 | F_F64));
def(0xc3, op("ret", "", control.ret, F_F64));
// C4/C5 are LES/LDS outside 64-bit mode (their register forms are VEX prefixes, which this CPU does not implement: #UD).
def(0xc4, op("les", "Gz,Mp", sys.loadFarPointer, F_MODRM | F_MEM | F_NO64, Seg.ES));
def(0xc5, op("lds", "Gz,Mp", sys.loadFarPointer, F_MODRM | F_MEM | F_NO64, Seg.DS));
def(0xc6, { group: [op("mov", "Eb,Ib", move.movEI, F_BYTE | F_IMM8)], flags: F_MODRM });
def(0xc7, { group: [op("mov", "Ev,Iz", move.movEI, F_IMMZ)], flags: F_MODRM });
def(0xc8, op("enter", "Iw,Ib", stack.enter, F_ENTER | F_D64));
def(0xc9, op("leave", "", stack.leave, F_D64));
def(0xca, op("retf", "Iw", control.retFar, F_IMM16));
def(0xcb, op("retf", "", control.retFar, 0));
def(0xcc, op("int3", "", control.int3, 0));
def(0xcd, op("int", "Ib", control.intN, F_IMM8));
def(0xce, op("into", "", control.into, F_NO64));
def(0xcf, op("iretd", "", control.iret, 0));
def(0xd0, group2(F_BYTE, shift.shiftE1, "Eb,1"));
def(0xd1, group2(0, shift.shiftE1, "Ev,1"));
def(0xd2, group2(F_BYTE, shift.shiftECL, "Eb,CL"));
def(0xd3, group2(0, shift.shiftECL, "Ev,CL"));
// x87 escapes (SDM Vol. 2D, A.4 "Escape Opcode Instructions"): memory forms by ModRM.reg,
// register forms by the whole ModRM byte. Arithmetic in exec/x87.ts, control in exec/fpu.ts.
const X87_ARITH = ["fadd", "fmul", "fcom", "fcomp", "fsub", "fsubr", "fdiv", "fdivr"] as const;
function x87Reg(forms: [number, OpSpec][]): Map<number, OpSpec> {
  return new Map(forms);
}
function x87Rows(base: number, make: (k: number) => OpSpec): [number, OpSpec][] {
  return Array.from({ length: 8 }, (_, k) => [base + k, make(k)] as [number, OpSpec]);
}
/** D8 (m32fp / ST0,ST(i)), DC (m64fp / ST(i),ST0), DA (m32int), DE (m16int / ST(i),ST0 and pop). */
const x87ArithMem = (size: string, int: boolean) => X87_ARITH.map((m, k) => op(int ? m.replace("f", "fi") : m, size, x87.arithMem, F_MEM, k));
const x87ArithReg = (opcode: number): [number, OpSpec][] => {
  const rows: [number, OpSpec][] = [];
  for (let k = 0; k < 8; k++) {
    if (opcode !== 0xd8 && (k === 2 || k === 3)) continue; // DC D0-DF, DE D0-D8/DA-DF: undocumented aliases
    // DC and DE swap the sub/subr and div/divr names (SDM: DC E0+i is FSUBR ST(i), ST0)
    const name = opcode === 0xd8 || k < 4 ? X87_ARITH[k]! : X87_ARITH[k ^ 1]!;
    const m = opcode === 0xde ? `${name}p` : name;
    rows.push(...x87Rows(0xc0 + 8 * k, () => op(m, opcode === 0xd8 ? "ST,STi" : "STi,ST", x87.arithReg, 0, k)));
  }
  return rows;
};
def(0xd8, { group: x87ArithMem("Md", false), flags: F_MODRM, regForms: x87Reg(x87ArithReg(0xd8)) });
def(0xd9, {
  group: [
    op("fld", "Md", x87.fldMem, F_MEM),
    undefined,
    op("fst", "Md", x87.fstMem, F_MEM, 0),
    op("fstp", "Md", x87.fstMem, F_MEM, 1),
    op("fldenv", "M", x87.fldenv, F_MEM),
    op("fldcw", "Mw", fpu.fldcw, F_MEM),
    op("fnstenv", "M", x87.fnstenv, F_MEM),
    op("fnstcw", "Mw", fpu.fnstcw, F_MEM),
  ],
  flags: F_MODRM,
  regForms: x87Reg([
    ...x87Rows(0xc0, () => op("fld", "STi", x87.fldReg, 0)),
    ...x87Rows(0xc8, () => op("fxch", "STi", x87.fxch, 0)),
    [0xd0, op("fnop", "", x87.fnop, 0)],
    [0xe0, op("fchs", "", x87.fsign, 0, 0)],
    [0xe1, op("fabs", "", x87.fsign, 0, 1)],
    [0xe4, op("ftst", "", x87.ftst, 0)],
    [0xe5, op("fxam", "", x87.fxam, 0)],
    ...(["fld1", "fldl2t", "fldl2e", "fldpi", "fldlg2", "fldln2", "fldz"] as const).map((m, k) => [0xe8 + k, op(m, "", x87.fldConst, 0, k)] as [number, OpSpec]),
    [0xf0, op("f2xm1", "", x87.f2xm1, 0)],
    [0xf1, op("fyl2x", "", x87.fbinaryTrans, 0, 1)],
    [0xf2, op("fptan", "", x87.ftrig, 0, 3)],
    [0xf3, op("fpatan", "", x87.fbinaryTrans, 0, 0)],
    [0xf4, op("fxtract", "", x87.fxtract, 0)],
    [0xf5, op("fprem1", "", x87.fprem, 0, 1)],
    [0xf6, op("fdecstp", "", x87.fincdecstp, 0, -1)],
    [0xf7, op("fincstp", "", x87.fincdecstp, 0, 1)],
    [0xf8, op("fprem", "", x87.fprem, 0, 0)],
    [0xf9, op("fyl2xp1", "", x87.fbinaryTrans, 0, 2)],
    [0xfa, op("fsqrt", "", x87.funary, 0, 0)],
    [0xfb, op("fsincos", "", x87.ftrig, 0, 2)],
    [0xfc, op("frndint", "", x87.funary, 0, 1)],
    [0xfd, op("fscale", "", x87.fscale, 0)],
    [0xfe, op("fsin", "", x87.ftrig, 0, 0)],
    [0xff, op("fcos", "", x87.ftrig, 0, 1)],
  ]),
});
// FCMOVcc: the condition codes of Jcc (B 2, E 4, BE 6, P 10; DB: their negations)
const FCMOV_CC = [2, 4, 6, 10] as const;
const FCMOV_NAMES = ["b", "e", "be", "u"] as const;
def(0xda, {
  group: x87ArithMem("Md", true),
  flags: F_MODRM,
  regForms: x87Reg([
    ...FCMOV_CC.flatMap((cc, k) => x87Rows(0xc0 + 8 * k, () => op(`fcmov${FCMOV_NAMES[k]}`, "ST,STi", x87.fcmov, 0, cc))),
    [0xe9, op("fucompp", "", x87.arithReg, 0, 9)],
  ]),
});
def(0xdb, {
  group: [
    op("fild", "Md", x87.fildMem, F_MEM, 4),
    op("fisttp", "Md", x87.fistMem, F_MEM, (4 << 4) | 3),
    op("fist", "Md", x87.fistMem, F_MEM, 4 << 4),
    op("fistp", "Md", x87.fistMem, F_MEM, (4 << 4) | 1),
    undefined,
    op("fld", "Mt", x87.fldMem, F_MEM),
    undefined,
    op("fstp", "Mt", x87.fstMem, F_MEM, 1),
  ],
  flags: F_MODRM,
  regForms: x87Reg([
    ...FCMOV_CC.flatMap((cc, k) => x87Rows(0xc0 + 8 * k, () => op(`fcmovn${FCMOV_NAMES[k]}`, "ST,STi", x87.fcmov, 0, cc + 1))),
    [0xe2, op("fnclex", "", fpu.fnclex, 0)],
    [0xe3, op("fninit", "", fpu.fninit, 0)],
    ...x87Rows(0xe8, () => op("fucomi", "ST,STi", x87.fcomi, 0, 2)),
    ...x87Rows(0xf0, () => op("fcomi", "ST,STi", x87.fcomi, 0, 0)),
  ]),
});
def(0xdc, { group: x87ArithMem("Mq", false), flags: F_MODRM, regForms: x87Reg(x87ArithReg(0xdc)) });
def(0xdd, {
  group: [
    op("fld", "Mq", x87.fldMem, F_MEM),
    op("fisttp", "Mq", x87.fistMem, F_MEM, (8 << 4) | 3),
    op("fst", "Mq", x87.fstMem, F_MEM, 0),
    op("fstp", "Mq", x87.fstMem, F_MEM, 1),
    op("frstor", "M", x87.frstor, F_MEM),
    undefined,
    op("fnsave", "M", x87.fnsave, F_MEM),
    op("fnstsw", "Mw", fpu.fnstsw, F_MEM, 0),
  ],
  flags: F_MODRM,
  regForms: x87Reg([
    ...x87Rows(0xc0, () => op("ffree", "STi", x87.ffree, 0)),
    ...x87Rows(0xd0, () => op("fst", "STi", x87.fstReg, 0, 0)),
    ...x87Rows(0xd8, () => op("fstp", "STi", x87.fstReg, 0, 1)),
    ...x87Rows(0xe0, () => op("fucom", "STi", x87.fucom, 0, 0)),
    ...x87Rows(0xe8, () => op("fucomp", "STi", x87.fucom, 0, 1)),
  ]),
});
def(0xde, {
  group: x87ArithMem("Mw", true),
  flags: F_MODRM,
  regForms: x87Reg([...x87ArithReg(0xde), [0xd9, op("fcompp", "", x87.arithReg, 0, 8)]]),
});
def(0xdf, {
  group: [
    op("fild", "Mw", x87.fildMem, F_MEM, 2),
    op("fisttp", "Mw", x87.fistMem, F_MEM, (2 << 4) | 3),
    op("fist", "Mw", x87.fistMem, F_MEM, 2 << 4),
    op("fistp", "Mw", x87.fistMem, F_MEM, (2 << 4) | 1),
    op("fbld", "Mt", x87.fbld, F_MEM),
    op("fild", "Mq", x87.fildMem, F_MEM, 8),
    op("fbstp", "Mt", x87.fbstp, F_MEM),
    op("fistp", "Mq", x87.fistMem, F_MEM, (8 << 4) | 1),
  ],
  flags: F_MODRM,
  regForms: x87Reg([
    [0xe0, op("fnstsw", "AX", fpu.fnstsw, 0, 1)],
    ...x87Rows(0xe8, () => op("fucomip", "ST,STi", x87.fcomi, 0, 3)),
    ...x87Rows(0xf0, () => op("fcomip", "ST,STi", x87.fcomi, 0, 1)),
  ]),
});
def(0xe0, op("loopne", "Jb", control.loop, F_REL8 | F_F64, 0));
def(0xe1, op("loope", "Jb", control.loop, F_REL8 | F_F64, 1));
def(0xe2, op("loop", "Jb", control.loop, F_REL8 | F_F64, 2));
def(0xe3, op("jecxz", "Jb", control.loop, F_REL8 | F_F64, 3));
def(0xe4, op("in", "AL,Ib", sys.inPort, F_BYTE | F_IMM8, 0));
def(0xe5, op("in", "eAX,Ib", sys.inPort, F_IMM8, 0));
def(0xe6, op("out", "Ib,AL", sys.outPort, F_BYTE | F_IMM8, 0));
def(0xe7, op("out", "Ib,eAX", sys.outPort, F_IMM8, 0));
def(0xe8, op("call", "Jz", control.callRel, F_RELZ | F_F64));
def(0xe9, op("jmp", "Jz", control.jmpRel, F_RELZ | F_F64));
def(0xea, op("jmp", "Ap", control.jmpFarPtr, F_FARPTR | F_NO64));
def(0xeb, op("jmp", "Jb", control.jmpRel, F_REL8 | F_F64));
def(0xec, op("in", "AL,DX", sys.inPort, F_BYTE, 1));
def(0xed, op("in", "eAX,DX", sys.inPort, 0, 1));
def(0xee, op("out", "DX,AL", sys.outPort, F_BYTE, 1));
def(0xef, op("out", "DX,eAX", sys.outPort, 0, 1));
def(0xf1, op("int1", "", control.int1, 0)); // ICEBP
def(0xf4, op("hlt", "", control.hlt, 0));
def(0xf5, op("cmc", "", move.flagOp, 0, 2));
const group3 = (byte: number, imm: number, vs: string) => ({
  group: [
    op("test", `E${vs},I${vs === "b" ? "b" : "z"}`, alu.testEI, byte | imm),
    op("test", `E${vs},I${vs === "b" ? "b" : "z"}`, alu.testEI, byte | imm),
    op("not", `E${vs}`, alu.notE, byte | F_LOCKABLE),
    op("neg", `E${vs}`, alu.negE, byte | F_LOCKABLE),
    op("mul", `E${vs}`, muldiv.mulE, byte),
    op("imul", `E${vs}`, muldiv.imul1E, byte),
    op("div", `E${vs}`, muldiv.divE, byte),
    op("idiv", `E${vs}`, muldiv.idivE, byte),
  ],
  flags: F_MODRM,
});
def(0xf6, group3(F_BYTE, F_IMM8, "b"));
def(0xf7, group3(0, F_IMMZ, "v"));
def(0xf8, op("clc", "", move.flagOp, 0, 0));
def(0xf9, op("stc", "", move.flagOp, 0, 1));
def(0xfa, op("cli", "", sys.cliSti, 0, 0));
def(0xfb, op("sti", "", sys.cliSti, 0, 1));
def(0xfc, op("cld", "", move.flagOp, 0, 3));
def(0xfd, op("std", "", move.flagOp, 0, 4));
def(0xfe, { group: [op("inc", "Eb", alu.incE, F_BYTE | F_LOCKABLE), op("dec", "Eb", alu.decE, F_BYTE | F_LOCKABLE)], flags: F_MODRM });
def(0xff, {
  group: [
    op("inc", "Ev", alu.incE, F_LOCKABLE),
    op("dec", "Ev", alu.decE, F_LOCKABLE),
    op("call", "Ev", control.callE, F_F64),
    op("call", "Mp", control.farIndirect, F_MEM, 1),
    op("jmp", "Ev", control.jmpE, F_F64),
    op("jmp", "Mp", control.farIndirect, F_MEM, 0),
    op("push", "Ev", stack.pushE, F_D64),
  ],
  flags: F_MODRM,
});

// ---- Two-byte map (0F xx = 0x100 + xx) ----
const T = 0x100;
def(T + 0x00, {
  group: [
    op("sldt", "Ew", sys.group6, 0, 0),
    op("str", "Ew", sys.group6, 0, 1),
    op("lldt", "Ew", sys.group6, 0, 2),
    op("ltr", "Ew", sys.group6, 0, 3),
    op("verr", "Ew", sys.verrVerw, 0, 0),
    op("verw", "Ew", sys.verrVerw, 0, 1),
  ],
  flags: F_MODRM,
});
def(T + 0x01, {
  group: [
    op("sgdt", "Ms", sys.descriptorTable, F_MEM, 0),
    op("sidt", "Ms", sys.descriptorTable, F_MEM, 1),
    op("lgdt", "Ms", sys.descriptorTable, F_MEM, 2),
    op("lidt", "Ms", sys.descriptorTable, F_MEM, 3),
    op("smsw", "Ew", sys.smsw, 0),
    undefined,
    op("lmsw", "Ew", sys.lmsw, 0),
    op("invlpg", "Mb", sys.invlpg, F_MEM),
  ],
  flags: F_MODRM,
  regForms: new Map<number, OpSpec>([
    [0xc1, op("vmcall", "", sys.vmcall, 0)],
    [0xca, op("clac", "", sys.clacStac, 0, 0)],
    [0xcb, op("stac", "", sys.clacStac, 0, 1)],
    [0xf8, op("swapgs", "", sys.swapgs, 0)],
    [0xf9, op("rdtscp", "", sys.rdtscp, 0)],
    ...Array.from({ length: 8 }, (_, r) => [0xe0 + r, op("smsw", "Rv", sys.smsw, 0)] as [number, OpSpec]),
    ...Array.from({ length: 8 }, (_, r) => [0xf0 + r, op("lmsw", "Rw", sys.lmsw, 0)] as [number, OpSpec]),
  ]),
});
def(T + 0x02, op("lar", "Gv,Ew", sys.larLsl, F_MODRM, 0));
def(T + 0x03, op("lsl", "Gv,Ew", sys.larLsl, F_MODRM, 1));
def(T + 0x05, op("syscall", "", control.syscall, F_ONLY64));
def(T + 0x06, op("clts", "", sys.clts, 0));
def(T + 0x07, op("sysret", "", control.sysret, F_ONLY64));
def(T + 0x08, op("invd", "", sys.cacheFlush, 0));
def(T + 0x09, op("wbinvd", "", sys.cacheFlush, 0));
def(T + 0x0b, op("ud2", "", sys.ud, 0));
def(T + 0x0d, op("nop", "Ev", move.nop, F_MODRM)); // PREFETCHW hint space
for (let k = 0x18; k <= 0x1f; k++) def(T + k, op("nop", "Ev", move.nop, F_MODRM)); // hint NOPs, 0F 1F /0 multi-byte NOP
def(T + 0x20, op("mov", "Rd,Cd", sys.movFromCr, F_MODRM | F_RMREG | F_NATIVE));
def(T + 0x21, op("mov", "Rd,Dd", sys.movDr, F_MODRM | F_RMREG | F_NATIVE, 0));
def(T + 0x22, op("mov", "Cd,Rd", sys.movToCr, F_MODRM | F_RMREG | F_NATIVE));
def(T + 0x23, op("mov", "Dd,Rd", sys.movDr, F_MODRM | F_RMREG | F_NATIVE, 1));
def(T + 0x30, op("wrmsr", "", sys.msrAccess, 0, 1));
def(T + 0x31, op("rdtsc", "", sys.rdtsc, 0));
def(T + 0x32, op("rdmsr", "", sys.msrAccess, 0, 0));
for (let c = 0; c < 16; c++) {
  def(T + 0x40 + c, op(`cmov${CC_NAMES[c]}`, "Gv,Ev", move.cmov, F_MODRM, c));
  def(T + 0x80 + c, op(`j${CC_NAMES[c]}`, "Jz", control.jccRel, F_RELZ | F_F64, c));
  def(T + 0x90 + c, op(`set${CC_NAMES[c]}`, "Eb", move.setcc, F_MODRM | F_BYTE, c));
}
def(T + 0xa0, op("push", "FS", sys.pushPopSeg, F_D64, 0));
def(T + 0xa1, op("pop", "FS", sys.pushPopSeg, F_D64, 1));
def(T + 0xa2, op("cpuid", "", sys.cpuid, 0));
def(T + 0xa3, op("bt", "Ev,Gv", bits.btEG, F_MODRM, 0));
def(T + 0xa4, op("shld", "Ev,Gv,Ib", shift.shldImm, F_MODRM | F_IMM8, 0));
def(T + 0xa5, op("shld", "Ev,Gv,CL", shift.shldCL, F_MODRM, 0));
def(T + 0xa8, op("push", "GS", sys.pushPopSeg, F_D64, 0));
def(T + 0xa9, op("pop", "GS", sys.pushPopSeg, F_D64, 1));
def(T + 0xab, op("bts", "Ev,Gv", bits.btEG, F_MODRM | F_LOCKABLE, 1));
def(T + 0xac, op("shrd", "Ev,Gv,Ib", shift.shldImm, F_MODRM | F_IMM8, 1));
def(T + 0xad, op("shrd", "Ev,Gv,CL", shift.shldCL, F_MODRM, 1));
def(T + 0xae, {
  // Group 15: the fences (register forms) are no-ops for an in-order interpreter with no
  // caches, CLFLUSH only checks its address (exec/cache-atomic.ts); FXSAVE/FXRSTOR and LDMXCSR/STMXCSR manage the x87/SSE state (exec/fpu.ts);
  // XSAVE and friends are #UD (no XSAVE).
  group: [
    op("fxsave", "M", fpu.fxsave, F_MEM),
    op("fxrstor", "M", fpu.fxrstor, F_MEM),
    op("ldmxcsr", "Md", fpu.ldmxcsr, F_MEM),
    op("stmxcsr", "Md", fpu.stmxcsr, F_MEM),
    undefined,
    undefined,
    undefined,
    op("clflush", "Mb", cache.clflush, F_MEM),
  ],
  flags: F_MODRM,
  regForms: new Map<number, OpSpec>([
    ...Array.from({ length: 8 }, (_, r) => [0xe8 + r, op("lfence", "", move.nop, 0)] as [number, OpSpec]),
    ...Array.from({ length: 8 }, (_, r) => [0xf0 + r, op("mfence", "", move.nop, 0)] as [number, OpSpec]),
    ...Array.from({ length: 8 }, (_, r) => [0xf8 + r, op("sfence", "", move.nop, 0)] as [number, OpSpec]),
  ]),
});
def(T + 0xaf, op("imul", "Gv,Ev", muldiv.imulGE, F_MODRM));
def(T + 0xb0, op("cmpxchg", "Eb,Gb", move.cmpxchg, F_MODRM | F_BYTE | F_LOCKABLE));
def(T + 0xb1, op("cmpxchg", "Ev,Gv", move.cmpxchg, F_MODRM | F_LOCKABLE));
def(T + 0xb2, op("lss", "Gv,Mp", sys.loadFarPointer, F_MODRM | F_MEM, Seg.SS));
def(T + 0xb3, op("btr", "Ev,Gv", bits.btEG, F_MODRM | F_LOCKABLE, 2));
def(T + 0xb4, op("lfs", "Gv,Mp", sys.loadFarPointer, F_MODRM | F_MEM, Seg.FS));
def(T + 0xb5, op("lgs", "Gv,Mp", sys.loadFarPointer, F_MODRM | F_MEM, Seg.GS));
def(T + 0xb6, op("movzx", "Gv,Eb", move.movzx, F_MODRM, 1));
def(T + 0xb7, op("movzx", "Gv,Ew", move.movzx, F_MODRM, 2));
def(T + 0xba, {
  group: [undefined, undefined, undefined, undefined, op("bt", "Ev,Ib", bits.btEI, F_IMM8, 0), op("bts", "Ev,Ib", bits.btEI, F_IMM8 | F_LOCKABLE, 1), op("btr", "Ev,Ib", bits.btEI, F_IMM8 | F_LOCKABLE, 2), op("btc", "Ev,Ib", bits.btEI, F_IMM8 | F_LOCKABLE, 3)],
  flags: F_MODRM,
});
def(T + 0xbb, op("btc", "Ev,Gv", bits.btEG, F_MODRM | F_LOCKABLE, 3));
def(T + 0xbc, op("bsf", "Gv,Ev", bits.bsfBsr, F_MODRM, 0));
def(T + 0xbd, op("bsr", "Gv,Ev", bits.bsfBsr, F_MODRM, 1));
def(T + 0xbe, op("movsx", "Gv,Eb", move.movsx, F_MODRM, 1));
def(T + 0xbf, op("movsx", "Gv,Ew", move.movsx, F_MODRM, 2));
def(T + 0xc0, op("xadd", "Eb,Gb", move.xadd, F_MODRM | F_BYTE | F_LOCKABLE));
def(T + 0xc1, op("xadd", "Ev,Gv", move.xadd, F_MODRM | F_LOCKABLE));
def(T + 0xc7, { group: [undefined, op("cmpxchg8b", "Mq|cmpxchg16b Mdq", cache.cmpxchg8b16b, F_MEM | F_LOCKABLE)], flags: F_MODRM });
for (let r = 0; r < 8; r++) def(T + 0xc8 + r, op("bswap", "Zy", bits.bswap, F_OPREG));

F3_VARIANTS.set(0x90, op("pause", "", sys.pause, 0));
F3_VARIANTS.set(T + 0xb8, op("popcnt", "Gv,Ev", bits.popcnt, F_MODRM));
F3_VARIANTS.set(T + 0xbc, op("tzcnt", "Gv,Ev", bits.tzcntLzcnt, F_MODRM, 0));
F3_VARIANTS.set(T + 0xbd, op("lzcnt", "Gv,Ev", bits.tzcntLzcnt, F_MODRM, 1));

export function isGroup(e: Entry): e is GroupSpec {
  return (e as GroupSpec).group !== undefined;
}
