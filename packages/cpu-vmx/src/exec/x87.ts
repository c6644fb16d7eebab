/**
 * The x87 FPU's data instructions (SDM Vol. 1 chapter 8; Vol. 2 "FLD" ... "FYL2XP1"): the register
 * stack (TOP, tags, stack overflow and underflow), loads and stores of every memory format,
 * arithmetic, compares, FCMOVcc, the environment and state images (FNSTENV/FLDENV, FNSAVE/FRSTOR),
 * and the transcendentals. Values are computed by the exact soft-float in f80.ts; this file is the
 * architectural layer around it: operand fetch, the exception response (masked: the default
 * result; unmasked IE/DE/ZE: nothing stored; every unmasked flag sets FSW.ES and B, and the next
 * waiting x87 instruction takes #MF), C0-C3, FIP/FCS/FOP and FDP/FDS.
 *
 * Modelled more simply (see the package README):
 * - FSIN, FCOS, FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X and FYL2XP1 are computed in double-double
 *   arithmetic (transcendental.ts) with the x87's 66-bit pi for the argument reduction: within 1
 *   ulp of the host's results (about 99% bit for bit, FPTAN about 90%), not bit for bit the
 *   hardware's algorithms; C1 reports this rounding's direction. Outside their domains F2XM1
 *   (|x| > 1) and FYL2XP1 (x <= -1) give what the host (AMD) gives: x back with PE.
 * - Only the protected-mode (and 64-bit mode) layouts of FNSTENV/FLDENV/FNSAVE/FRSTOR exist, in
 *   32-bit and 16-bit (66 prefix) form; the real-mode layouts are not modelled.
 * - The undocumented aliases (D9 D8+i FSTP1, DC D0+i FCOM2, DD C8+i FXCH4, DF C0+i FFREEP, ...) and
 *   the 8087/287 no-ops FENI/FDISI/FSETPM are #UD.
 * - #MF is taken whatever CR0.NE says (the FERR# route of CR0.NE = 0 is not modelled).
 */
import { Access, Vector } from "@vtlab/arch";
import type { Cpu } from "../cpu.js";
import type { Insn } from "../decode/insn.js";
import { CR0_EM, CR0_TS, RFLAGS_AF, RFLAGS_CF, RFLAGS_OF, RFLAGS_PF, RFLAGS_SF, RFLAGS_ZF, Seg } from "../regs.js";
import { ea, offsetOf } from "./operands.js";
import type { FpuState } from "./fpu.js";
import {
  CMP_EQ,
  CMP_GT,
  CMP_LT,
  CMP_UNORDERED,
  F80,
  INDEFINITE_HI,
  INDEFINITE_SE,
  K_DENORMAL,
  K_INF,
  K_NORMAL,
  K_QNAN,
  K_SNAN,
  K_UNSUPPORTED,
  K_ZERO,
  RC_NEAREST,
  RC_UP,
  RC_ZERO,
  X_C1,
  X_DE,
  X_IE,
  X_PE,
  X_SF,
  X_ZE,
  add,
  classify,
  cmpFlags,
  compare,
  div,
  extract,
  extractExp,
  fmtOut,
  fromF32,
  fromF64,
  fromInt64,
  intOut,
  mul,
  premOut,
  remainder,
  roundToInt,
  roundingOf,
  scale,
  sqrt,
  toFormat,
  toInt,
} from "./f80.js";
import { atan2, exp2m1, trig, ylog2x, ylog2xp1 } from "./transcendental.js";

// ---- FSW bits (SDM Figure 8-4) ----
const FSW_EXC = 0x3f;
const FSW_SF = 0x40;
const FSW_ES = 0x80;
const FSW_C0 = 0x100;
const FSW_C1 = 0x200;
const FSW_C2 = 0x400;
const FSW_TOP = 0x3800;
const FSW_C3 = 0x4000;
const FSW_B = 0x8000;
const FSW_CC = FSW_C0 | FSW_C1 | FSW_C2 | FSW_C3;

/** The operands and results of one instruction (preallocated: no allocation per instruction). */
const A = new F80();
const B = new F80();
const R = new F80();
const T = new F80();

// ---- Availability, #MF and the last-instruction pointers ----

/** #NM with CR0.EM or CR0.TS (SDM Table 2-1 / 12-8); then a pending unmasked exception is #MF. */
function begin(cpu: Cpu, i: Insn): FpuState {
  if ((cpu.cr0 & (CR0_EM | CR0_TS)) !== 0) cpu.fault(Vector.NM);
  const f = cpu.fpu;
  if ((f.fsw & FSW_ES) !== 0) cpu.fault(Vector.MF);
  // FIP, FCS and FOP name this instruction (SDM 8.1.8, 8.1.9); FDP/FDS its memory operand.
  const ip = cpu.insnStart;
  f.fipLo = ip >>> 0;
  f.fipHi = Math.floor(ip / 0x1_0000_0000) | 0;
  f.fcs = cpu.seg[Seg.CS]!.selector & 0xffff;
  f.fop = ((i.opcode & 7) << 8) | (i.modrm & 0xff);
  if (i.isMem) {
    const off = offsetOf(cpu, i);
    f.fdpLo = off >>> 0;
    f.fdpHi = cpu.mode64 ? Math.floor(off / 0x1_0000_0000) | 0 : 0;
    f.fds = cpu.seg[i.seg]!.selector & 0xffff;
  }
  return f;
}

// ---- The register stack ----

function topOf(f: FpuState): number {
  return (f.fsw >>> 11) & 7;
}

function setTop(f: FpuState, t: number): void {
  f.fsw = (f.fsw & ~FSW_TOP) | ((t & 7) << 11);
}

function isEmpty(f: FpuState, st: number): boolean {
  return (f.ftw & (1 << ((topOf(f) + st) & 7))) === 0;
}

function getSt(f: FpuState, st: number, into: F80): F80 {
  const r = (topOf(f) + st) & 7;
  into.se = f.stSe[r]!;
  into.hi = f.stHi[r]!;
  into.lo = f.stLo[r]!;
  return into;
}

function setSt(f: FpuState, st: number, v: F80): void {
  const r = (topOf(f) + st) & 7;
  f.stSe[r] = v.se;
  f.stHi[r] = v.hi;
  f.stLo[r] = v.lo;
  f.ftw |= 1 << r;
}

function setStIndefinite(f: FpuState, st: number): void {
  const r = (topOf(f) + st) & 7;
  f.stSe[r] = INDEFINITE_SE;
  f.stHi[r] = INDEFINITE_HI;
  f.stLo[r] = 0;
  f.ftw |= 1 << r;
}

function pop(f: FpuState): void {
  f.ftw &= ~(1 << topOf(f));
  setTop(f, topOf(f) + 1);
}

/**
 * Record flags (IE..PE, C1) from an operation: sets the exception flags, C1 (cleared unless
 * given), and ES/B for an unmasked one. Returns true when the result is to be stored: not after
 * an unmasked IE, DE or ZE (SDM 8.5: the operands stay as they were).
 */
function report(f: FpuState, flags: number): boolean {
  let exc = flags & (FSW_EXC | FSW_SF);
  let unmasked = exc & FSW_EXC & ~f.fcw;
  const store = (unmasked & (X_IE | X_DE | X_ZE)) === 0;
  if (!store) {
    // the operation is not performed: only the exceptions found before it count, C1 = 0
    exc &= X_IE | X_DE | X_ZE | X_SF;
    unmasked &= X_IE | X_DE | X_ZE;
    flags &= ~X_C1 | ((flags & X_SF) !== 0 ? X_C1 : 0);
  }
  f.fsw = (f.fsw & ~FSW_C1) | exc | (flags & X_C1);
  if (unmasked !== 0) f.fsw |= FSW_ES | FSW_B;
  return store;
}

/** Stack underflow (IE with SF, C1 = 0; SDM 8.5.1.1): true when masked (the caller goes on with the indefinite). */
function underflow(f: FpuState): boolean {
  return report(f, X_IE | X_SF);
}

/** Stack overflow (IE with SF, C1 = 1): true when masked. */
function overflow(f: FpuState): boolean {
  return report(f, X_IE | X_SF | X_C1);
}

/** Push `v` (a masked overflow pushes the indefinite instead; an unmasked one changes nothing). */
function push(f: FpuState, v: F80): void {
  if (!isEmpty(f, 7)) {
    if (!overflow(f)) return;
    setTop(f, topOf(f) - 1);
    setStIndefinite(f, 0);
    return;
  }
  setTop(f, topOf(f) - 1);
  setSt(f, 0, v);
}

/** Read ST(st) into `into`; an empty register is a stack underflow: false when unmasked (nothing done). */
function readSt(f: FpuState, st: number, into: F80): boolean {
  if (isEmpty(f, st)) {
    if (!underflow(f)) return false;
    into.se = INDEFINITE_SE;
    into.hi = INDEFINITE_HI;
    into.lo = 0;
    underflowed = true;
    return true;
  }
  getSt(f, st, into);
  return true;
}
/** Set by readSt when a masked underflow replaced an operand (the result is then the indefinite). */
let underflowed = false;

// ---- Memory operands ----

/** A store of `n` bytes at `lin` faults on either page before anything is written. */
function probeWrite(cpu: Cpu, lin: number, n: number): void {
  if ((lin & 0xfff) + n > 0x1000) {
    cpu.translate(lin, Access.Write);
    cpu.translate(lin + n - 1, Access.Write);
  }
}

function readM80(cpu: Cpu, lin: number, into: F80): void {
  into.lo = cpu.read32(lin) >>> 0;
  into.hi = cpu.read32(lin + 4) >>> 0;
  into.se = cpu.read16(lin + 8) & 0xffff;
}

function writeM80(cpu: Cpu, lin: number, v: F80): void {
  probeWrite(cpu, lin, 10);
  cpu.write32(lin, v.lo | 0);
  cpu.write32(lin + 4, v.hi | 0);
  cpu.write16(lin + 8, v.se);
}

/**
 * Load the memory operand of an arithmetic form into `into`: m32fp (D8), m64fp (DC), m32int
 * (DA), m16int (DE). Returns the conversion's flags (DE for a denormal; an SNaN stays signalling
 * so the operation reports it).
 */
function loadArithOperand(cpu: Cpu, i: Insn, into: F80): number {
  const lin = ea(cpu, i);
  switch (i.opcode) {
    case 0xd8: {
      const fl = fromF32(cpu.read32(lin), into);
      if ((fl & X_IE) !== 0) into.hi = (into.hi & ~0x4000_0000) >>> 0;
      return fl & X_DE;
    }
    case 0xdc: {
      const lo = cpu.read64(lin);
      const fl = fromF64(lo, cpu.tmpHi, into);
      if ((fl & X_IE) !== 0) into.hi = (into.hi & ~0x4000_0000) >>> 0;
      return fl & X_DE;
    }
    case 0xda: {
      const v = cpu.read32(lin);
      fromInt64(v, v >> 31, into);
      return 0;
    }
    default: {
      const v = (cpu.read16(lin) << 16) >> 16;
      fromInt64(v, v >> 31, into);
      return 0;
    }
  }
}

// ---- Arithmetic ----

/** The FCOM result into C3, C2, C0 (SDM Table "FCOM/FCOMP/FCOMPP Results"). */
function setCompareCc(f: FpuState, c: number): void {
  let cc = 0;
  if (c === CMP_LT) cc = FSW_C0;
  else if (c === CMP_EQ) cc = FSW_C3;
  else if (c === CMP_UNORDERED) cc = FSW_C0 | FSW_C2 | FSW_C3;
  f.fsw = (f.fsw & ~(FSW_C0 | FSW_C2 | FSW_C3)) | cc;
}

/**
 * One arithmetic operation: dst = x op y, for op 0 add, 1 mul, 4 sub (x - y), 5 subr (y - x),
 * 6 div (x / y), 7 divr (y / x); 2 and 3 compare x with y.
 */
function operate(f: FpuState, op: number, x: F80, y: F80, extra: number): number {
  const r = operate2(f.fcw, op, x, y, extra);
  // a zero divisor is reported alone: a denormal dividend is not DE then (as the host does)
  return (r & X_ZE) !== 0 ? r & ~X_DE : r;
}

function operate2(fcw: number, op: number, x: F80, y: F80, extra: number): number {
  switch (op) {
    case 0:
      return add(x, y, false, fcw, R) | extra;
    case 1:
      return mul(x, y, fcw, R) | extra;
    case 4:
      return add(x, y, true, fcw, R) | extra;
    case 5:
      return add(y, x, true, fcw, R) | extra;
    case 6:
      return div(x, y, fcw, R) | extra;
    default:
      return div(y, x, fcw, R) | extra;
  }
}

/** Drop a conversion's DE when the other operand is a NaN or unsupported (those take priority). */
function keepDe(x: F80, extra: number): number {
  const k = classify(x.se, x.hi, x.lo);
  return k === K_QNAN || k === K_SNAN || k === K_UNSUPPORTED ? 0 : extra;
}

/** D8/DC/DA/DE with a memory operand: ST0 = ST0 op m (FADD ... FIDIVR; /2, /3 FCOM(P), FICOM(P)). */
export function arithMem(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  const op = i.cc;
  underflowed = false;
  let extra = loadArithOperand(cpu, i, B);
  if (op === 2 || op === 3) {
    if (isEmpty(f, 0)) {
      const ok = underflow(f);
      setCompareCc(f, CMP_UNORDERED);
      if (ok && op === 3) pop(f);
      return;
    }
    getSt(f, 0, A);
    extra = keepDe(A, extra);
    if (compareInto(f, A, B, true, extra) && op === 3) pop(f);
    return;
  }
  if (!readSt(f, 0, A)) return;
  extra = keepDe(A, extra);
  const flags = underflowed ? 0 : operate(f, op, A, B, extra);
  if (underflowed) {
    setStIndefinite(f, 0);
    return;
  }
  if (report(f, flags)) setSt(f, 0, R);
}

/** Compare x with y into C3/C2/C0 (an underflowed operand compares unordered). */
function compareInto(f: FpuState, x: F80, y: F80, signal: boolean, extra: number): boolean {
  if (underflowed) {
    setCompareCc(f, CMP_UNORDERED);
    return true;
  }
  const c = compare(x, y, signal);
  const flags = cmpFlags.flags | (c === CMP_UNORDERED ? 0 : extra);
  const ok = report(f, flags);
  setCompareCc(f, c); // set even when an unmasked exception stops the pop (as the host does)
  return ok;
}

/** Read ST(a) and ST(b) for a compare: an unmasked underflow still sets "unordered". */
function readCompareOperands(f: FpuState, a: number, b: number): boolean {
  if (isEmpty(f, a) || isEmpty(f, b)) {
    underflowed = true;
    const ok = underflow(f);
    setCompareCc(f, CMP_UNORDERED);
    return ok;
  }
  getSt(f, a, A);
  getSt(f, b, B);
  return true;
}

/**
 * D8/DC/DE register forms: D8: ST0 = ST0 op ST(i); DC: ST(i) = ST(i) op ST0; DE: the same and
 * pop. In DC and DE the sub/subr and div/divr encodings are swapped (SDM: DC E0+i is FSUBR
 * ST(i), ST0). D8 D0+i/D8+i are FCOM/FCOMP ST(i); DE D9 is FCOMPP (`cc` 8).
 */
export function arithReg(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  const st = i.rm & 7;
  underflowed = false;
  if (i.cc === 8 || i.cc === 9) {
    // FCOMPP (cc 8) / FUCOMPP (cc 9): compare ST0 with ST1, pop twice
    if (!readCompareOperands(f, 0, 1)) return;
    if (compareInto(f, A, B, i.cc === 8, 0)) {
      pop(f);
      pop(f);
    }
    return;
  }
  let op = i.cc;
  if (op === 2 || op === 3) {
    if (!readCompareOperands(f, 0, st)) return;
    if (compareInto(f, A, B, true, 0) && op === 3) pop(f);
    return;
  }
  const toSti = i.opcode !== 0xd8;
  if (toSti && op >= 4) op ^= 1;
  // x = destination operand, y = source
  const dst = toSti ? st : 0;
  const srcIdx = toSti ? 0 : st;
  if (!readSt(f, dst, A) || !readSt(f, srcIdx, B)) return;
  if (underflowed) {
    setStIndefinite(f, dst);
    if (i.opcode === 0xde) pop(f);
    return;
  }
  const flags = operate(f, op, A, B, 0);
  if (!report(f, flags)) return;
  setSt(f, dst, R);
  if (i.opcode === 0xde) pop(f);
}

// ---- Loads ----

/** FLD m32fp (D9 /0), m64fp (DD /0), m80fp (DB /5). */
export function fldMem(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  const lin = ea(cpu, i);
  let flags = 0;
  if (i.opcode === 0xd9) flags = fromF32(cpu.read32(lin), A);
  else if (i.opcode === 0xdd) {
    const lo = cpu.read64(lin);
    flags = fromF64(lo, cpu.tmpHi, A);
  } else readM80(cpu, lin, A);
  if (!isEmpty(f, 7)) {
    if (overflow(f)) {
      setTop(f, topOf(f) - 1);
      setStIndefinite(f, 0);
    }
    return;
  }
  // an unmasked DE still loads the value (as the host does); an unmasked IE does not
  if (!report(f, flags) && (flags & X_IE) !== 0) return;
  push(f, A);
}

/** FILD m16int (DF /0), m32int (DB /0), m64int (DF /5): exact. */
export function fildMem(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  const lin = ea(cpu, i);
  if (i.cc === 2) {
    const v = (cpu.read16(lin) << 16) >> 16;
    fromInt64(v, v >> 31, A);
  } else if (i.cc === 4) {
    const v = cpu.read32(lin);
    fromInt64(v, v >> 31, A);
  } else {
    const lo = cpu.read64(lin);
    fromInt64(lo, cpu.tmpHi, A);
  }
  report(f, 0);
  push(f, A);
}

/** FLD ST(i) (D9 C0+i). */
export function fldReg(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  const st = i.rm & 7;
  if (isEmpty(f, st)) {
    if (!underflow(f)) return;
    // the underflow's indefinite is pushed even over a full ST(7): no overflow is reported then
    // (as the host does)
    setTop(f, topOf(f) - 1);
    setStIndefinite(f, 0);
    return;
  }
  getSt(f, st, A);
  report(f, 0);
  push(f, A);
}

/**
 * The constants FLD1, FLDL2T, FLDL2E, FLDPI, FLDLG2, FLDLN2, FLDZ (D9 E8-EE), `cc` 0-6: the
 * value's 64 significand bits and the bits below them (SDM 8.3.8: rounded by RC; exact for 1
 * and 0). Sign/exponent, significand high, low, and 1 when the discarded bits exceed half an ulp,
 * 0 when below (the irrational constants are never exactly halfway).
 */
const CONSTANTS = [
  [0x3fff, 0x8000_0000, 0x0000_0000, -1], // 1
  [0x4000, 0xd49a_784b, 0xcd1b_8afe, 0], // log2(10): ...8AFE|492B...
  [0x3fff, 0xb8aa_3b29, 0x5c17_f0bb, 1], // log2(e): ...F0BB|BE87...
  [0x4000, 0xc90f_daa2, 0x2168_c234, 1], // pi: ...C234|C4C6...
  [0x3ffd, 0x9a20_9a84, 0xfbcf_f798, 1], // log10(2): ...F798|8F89...
  [0x3ffe, 0xb172_17f7, 0xd1cf_79ab, 1], // ln(2): ...79AB|C9E3...
  [0x0000, 0x0000_0000, 0x0000_0000, -1], // +0
] as const;

export function fldConst(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  const c = CONSTANTS[i.cc]!;
  A.se = c[0];
  A.hi = c[1];
  A.lo = c[2];
  if (c[3] >= 0) {
    const rc = roundingOf(f.fcw);
    const up = rc === RC_UP || (rc === RC_NEAREST && c[3] === 1);
    if (up) {
      const l = A.lo + 1;
      A.lo = l >>> 0;
      if (l > 0xffff_ffff) A.hi = (A.hi + 1) >>> 0; // no constant carries out of the significand
    }
  }
  report(f, 0);
  push(f, A);
}

// ---- Stores ----

/** FST/FSTP m32fp (D9 /2, /3), m64fp (DD /2, /3), FSTP m80fp (DB /7); `cc` bit 0 = pop. */
export function fstMem(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  const lin = ea(cpu, i);
  const popIt = (i.cc & 1) !== 0;
  underflowed = false;
  if (!readSt(f, 0, A)) return;
  if (i.opcode === 0xdb) {
    writeM80(cpu, lin, A);
    if (!underflowed) report(f, 0);
    if (popIt) pop(f);
    return;
  }
  const bytes = i.opcode === 0xd9 ? 4 : 8;
  const flags = toFormat(A, bytes, f.fcw);
  // An unmasked IE, OE or UE stores nothing (SDM 8.5.4, 8.5.5: the destination is a memory location).
  const unmasked = flags & FSW_EXC & ~f.fcw;
  if ((unmasked & (X_IE | 0x08 | 0x10)) !== 0) {
    report(f, underflowed ? 0 : flags);
    return;
  }
  if (bytes === 4) cpu.write32(lin, fmtOut.lo);
  else cpu.write64(lin, fmtOut.lo, fmtOut.hi);
  if (!underflowed) report(f, flags);
  if (popIt) pop(f);
}

/**
 * FIST/FISTP m16/m32 (DF /2,/3; DB /2,/3), FISTP m64 (DF /7), FISTTP m16/m32/m64 (DF /1, DB /1,
 * DD /1): `cc` = bytes << 4 | trunc << 1 | pop.
 */
export function fistMem(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  const lin = ea(cpu, i);
  const bytes = i.cc >>> 4;
  const popIt = (i.cc & 1) !== 0;
  underflowed = false;
  if (!readSt(f, 0, A)) return;
  let flags: number;
  if (underflowed) {
    toInt(A, bytes, RC_ZERO); // the integer indefinite for the NaN
    flags = 0;
  } else {
    flags = toInt(A, bytes, (i.cc & 2) !== 0 ? RC_ZERO : roundingOf(f.fcw));
    if (!report(f, flags)) return;
  }
  if (bytes === 2) cpu.write16(lin, intOut.lo & 0xffff);
  else if (bytes === 4) cpu.write32(lin, intOut.lo);
  else cpu.write64(lin, intOut.lo, intOut.hi);
  if (popIt) pop(f);
}

/** FST ST(i) (DD D0+i), FSTP ST(i) (DD D8+i; `cc` 1). */
export function fstReg(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  underflowed = false;
  if (!readSt(f, 0, A)) return;
  if (!underflowed) report(f, 0);
  setSt(f, i.rm & 7, A);
  if (i.cc === 1) pop(f);
}

/** FXCH ST(i) (D9 C8+i): an empty register is an underflow, the indefinite when masked. */
export function fxch(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  const st = i.rm & 7;
  const e0 = isEmpty(f, 0);
  const ei = isEmpty(f, st);
  if (e0 || ei) {
    if (!underflow(f)) return;
    if (e0) setStIndefinite(f, 0);
    if (ei) setStIndefinite(f, st);
  } else report(f, 0);
  getSt(f, 0, A);
  getSt(f, st, B);
  setSt(f, 0, B);
  setSt(f, st, A);
}

/** FFREE ST(i) (DD C0+i): tag empty; TOP unchanged. */
export function ffree(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  f.ftw &= ~(1 << ((topOf(f) + (i.rm & 7)) & 7));
}

/** FNOP (D9 D0). */
export function fnop(cpu: Cpu, i: Insn): void {
  begin(cpu, i);
}

/** FINCSTP (D9 F7, `cc` 1) and FDECSTP (D9 F6, `cc` -1): TOP +/- 1, C1 = 0, tags unchanged. */
export function fincdecstp(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  setTop(f, topOf(f) + (i.cc === 1 ? 1 : -1));
  f.fsw &= ~FSW_C1;
}

// ---- One-operand instructions on ST0 (D9 E0-FF) ----

/** FCHS, FABS (D9 E0, E1; `cc` 0, 1): the sign bit only, NaNs included. */
export function fsign(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  underflowed = false;
  if (!readSt(f, 0, A)) return;
  if (!underflowed) {
    report(f, 0);
    A.se = i.cc === 0 ? A.se ^ 0x8000 : A.se & 0x7fff;
  }
  setSt(f, 0, A);
}

/** FTST (D9 E4): compare ST0 with +0.0. */
export function ftst(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  underflowed = false;
  if (!readCompareOperands(f, 0, 0)) return;
  B.se = 0;
  B.hi = 0;
  B.lo = 0;
  compareInto(f, A, B, true, 0);
}

/** FXAM (D9 E5): the class of ST0 in C3, C2, C0, its sign in C1 (SDM Table "FXAM Results"). */
export function fxam(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  getSt(f, 0, A);
  let cc: number;
  if (isEmpty(f, 0)) cc = FSW_C3 | FSW_C0;
  else {
    const k = classify(A.se, A.hi, A.lo);
    cc =
      k === K_UNSUPPORTED ? 0
      : k === K_QNAN || k === K_SNAN ? FSW_C0
      : k === K_NORMAL ? FSW_C2
      : k === K_INF ? FSW_C2 | FSW_C0
      : k === K_ZERO ? FSW_C3
      : FSW_C3 | FSW_C2; // denormal
  }
  if ((A.se & 0x8000) !== 0) cc |= FSW_C1;
  f.fsw = (f.fsw & ~FSW_CC) | cc;
}

/** FSQRT (D9 FA, `cc` 0) and FRNDINT (D9 FC, `cc` 1). */
export function funary(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  underflowed = false;
  if (!readSt(f, 0, A)) return;
  if (underflowed) {
    setStIndefinite(f, 0);
    return;
  }
  const flags = i.cc === 0 ? sqrt(A, f.fcw, R) : roundToInt(A, f.fcw, R);
  if (report(f, flags)) setSt(f, 0, R);
}

/** FSCALE (D9 FD): ST0 = ST0 * 2^trunc(ST1). */
export function fscale(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  underflowed = false;
  if (!readSt(f, 0, A) || !readSt(f, 1, B)) return;
  if (underflowed) {
    setStIndefinite(f, 0);
    return;
  }
  if (report(f, scale(A, B, f.fcw, R))) setSt(f, 0, R);
}

/** FXTRACT (D9 F4): ST0 = exponent, then push the significand. */
export function fxtract(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  underflowed = false;
  if (!readSt(f, 0, A)) return;
  if (underflowed) {
    setStIndefinite(f, 0);
    if (!isEmpty(f, 7)) {
      overflow(f);
      return;
    }
    setTop(f, topOf(f) - 1);
    setStIndefinite(f, 0);
    return;
  }
  if (!isEmpty(f, 7)) {
    if (overflow(f)) {
      setStIndefinite(f, 0);
      setTop(f, topOf(f) - 1);
      setStIndefinite(f, 0);
    }
    return;
  }
  const flags = extract(A, R);
  if (!report(f, flags)) return;
  setSt(f, 0, extractExp);
  setTop(f, topOf(f) - 1);
  setSt(f, 0, R);
}

/** FPREM (D9 F8, `cc` 0) and FPREM1 (D9 F5, `cc` 1): C0 = Q2, C3 = Q1, C1 = Q0, C2 = incomplete. */
export function fprem(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  underflowed = false;
  if (!readSt(f, 0, A) || !readSt(f, 1, B)) return;
  if (underflowed) {
    setStIndefinite(f, 0);
    return;
  }
  const flags = remainder(A, B, i.cc === 1, f.fcw, R);
  if (!report(f, flags & ~X_C1)) return;
  setSt(f, 0, R);
  const q = premOut.q;
  let cc = 0;
  if (premOut.partial) cc = FSW_C2;
  else if ((flags & X_IE) === 0) cc = ((q & 4) !== 0 ? FSW_C0 : 0) | ((q & 2) !== 0 ? FSW_C3 : 0) | ((q & 1) !== 0 ? FSW_C1 : 0);
  f.fsw = (f.fsw & ~FSW_CC) | cc;
}

// ---- Compares into EFLAGS, conditional moves ----

/**
 * FCOMI/FUCOMI ST0, ST(i) (DB F0+i / E8+i) and FCOMIP/FUCOMIP (DF F0+i / E8+i): ZF, PF, CF
 * (unordered: all three), OF, SF and AF cleared (SDM "FCOMI"). `cc` bit 0 = pop, bit 1 = FUCOMI.
 */
export function fcomi(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  underflowed = false;
  let c = CMP_UNORDERED;
  let ok: boolean;
  if (isEmpty(f, 0) || isEmpty(f, i.rm & 7)) ok = underflow(f);
  else {
    c = compare(getSt(f, 0, A), getSt(f, i.rm & 7, B), (i.cc & 2) === 0);
    ok = report(f, cmpFlags.flags);
  }
  // EFLAGS are written even when an unmasked exception stops the pop (as the host does)
  const bits = c === CMP_GT ? 0 : c === CMP_LT ? RFLAGS_CF : c === CMP_EQ ? RFLAGS_ZF : RFLAGS_ZF | RFLAGS_PF | RFLAGS_CF;
  cpu.setFlags(bits, RFLAGS_ZF | RFLAGS_PF | RFLAGS_CF | RFLAGS_OF | RFLAGS_SF | RFLAGS_AF);
  if (ok && (i.cc & 1) !== 0) pop(f);
}

/** FUCOM ST(i) (DD E0+i, `cc` 0) and FUCOMP (DD E8+i, `cc` 1): a QNaN is not IE. */
export function fucom(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  underflowed = false;
  if (!readCompareOperands(f, 0, i.rm & 7)) return;
  if (compareInto(f, A, B, false, 0) && i.cc === 1) pop(f);
}

/** FCMOVcc ST0, ST(i) (DA/DB C0-DF): `cc` is the condition (B, E, BE, U and their negations). */
export function fcmov(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  underflowed = false;
  if (!readSt(f, 0, A) || !readSt(f, i.rm & 7, B)) return;
  if (underflowed) {
    setStIndefinite(f, 0);
    return;
  }
  report(f, 0);
  if (cpu.cond(i.cc)) setSt(f, 0, B);
}

// ---- BCD ----

/** FBLD m80bcd (DF /4): 18 packed BCD digits and a sign byte, exact (invalid digits are undefined: as decimal). */
export function fbld(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  const lin = ea(cpu, i);
  let hiPart = 0; // top 9 digits
  let loPart = 0; // low 9 digits
  for (let k = 8; k >= 0; k--) {
    const b = cpu.read8(lin + k);
    const d = ((b >>> 4) & 0xf) * 10 + (b & 0xf);
    if (k >= 5) hiPart = hiPart * 100 + d;
    else loPart = loPart * 100 + d;
  }
  // hiPart holds digits 17..10, loPart digits 9..0: value = hiPart * 10^10 + loPart < 2^60,
  // formed exactly in halves (hiPart * 5^10 < 2^50 is exact; * 2^10 splits at bit 22).
  const sign = cpu.read8(lin + 9) & 0x80;
  const p = hiPart * 9_765_625;
  const pLo = p % 0x40_0000;
  const loSum = pLo * 1024 + (loPart % 0x1_0000_0000);
  let lo = loSum % 0x1_0000_0000;
  let hi = (p - pLo) / 0x40_0000 + Math.floor(loPart / 0x1_0000_0000) + Math.floor(loSum / 0x1_0000_0000);
  if (sign !== 0) {
    lo = (~lo + 1) >>> 0;
    hi = (~hi + (lo === 0 ? 1 : 0)) >>> 0;
  }
  fromInt64(lo | 0, hi | 0, A);
  if (sign !== 0 && (A.hi | A.lo) === 0) A.se = 0x8000; // -0 stays negative
  report(f, 0);
  push(f, A);
}

/** FBSTP m80bcd (DF /6): ST0 rounded by RC to an integer of at most 18 digits, then pop; out of range is IE with the BCD indefinite. */
export function fbstp(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  const lin = ea(cpu, i);
  underflowed = false;
  if (!readSt(f, 0, A)) return;
  probeWrite(cpu, lin, 10);
  let flags = 0;
  let bad = underflowed;
  const neg = (A.se & 0x8000) !== 0;
  let mh = 0;
  let ml = 0;
  if (!bad) {
    flags = toInt(A, 8, roundingOf(f.fcw));
    if ((flags & X_IE) !== 0) bad = true;
    else {
      ml = intOut.lo >>> 0;
      mh = intOut.hi >>> 0;
      if ((mh & 0x8000_0000) !== 0) {
        ml = (~ml + 1) >>> 0;
        mh = (~mh + (ml === 0 ? 1 : 0)) >>> 0;
      }
      // 10^18 = 0x0DE0B6B3_A7640000
      if (mh > 0x0de0_b6b3 || (mh === 0x0de0_b6b3 && ml >= 0xa764_0000)) {
        bad = true;
        flags = X_IE;
      }
    }
  }
  if (bad) {
    if (!underflowed && !report(f, flags)) return;
    // the packed BCD indefinite: FFFF C000 0000 0000 0000 (bytes 9..0)
    for (let k = 0; k < 7; k++) cpu.write8(lin + k, 0);
    cpu.write8(lin + 7, 0xc0);
    cpu.write8(lin + 8, 0xff);
    cpu.write8(lin + 9, 0xff);
    pop(f);
    return;
  }
  if (!report(f, flags)) return;
  // exact decimal digits: divide the 64-bit halves by 10 repeatedly (16-bit limbs)
  let l3 = mh >>> 16, l2 = mh & 0xffff, l1 = ml >>> 16, l0 = ml & 0xffff;
  for (let k = 0; k < 9; k++) {
    let byte = 0;
    for (let d = 0; d < 2; d++) {
      let r = l3 % 10;
      l3 = Math.floor(l3 / 10);
      let t = r * 65536 + l2;
      l2 = Math.floor(t / 10);
      r = t % 10;
      t = r * 65536 + l1;
      l1 = Math.floor(t / 10);
      r = t % 10;
      t = r * 65536 + l0;
      l0 = Math.floor(t / 10);
      r = t % 10;
      byte |= r << (4 * d);
    }
    cpu.write8(lin + k, byte);
  }
  cpu.write8(lin + 9, neg ? 0x80 : 0);
  pop(f);
}

// ---- Transcendentals (values from transcendental.ts: see the file comment) ----

/** Operand checks for a transcendental: NaNs propagate (SNaN: IE), unsupported: IE; returns true to go on. */
function transcendentalOperand(f: FpuState, x: F80, st: number): boolean {
  const k = classify(x.se, x.hi, x.lo);
  if (k === K_UNSUPPORTED) {
    if (report(f, X_IE)) setStIndefinite(f, st);
    return false;
  }
  if (k === K_QNAN || k === K_SNAN) {
    if (report(f, k === K_SNAN ? X_IE : 0)) {
      x.hi = (x.hi | 0x4000_0000) >>> 0;
      setSt(f, st, x);
    }
    return false;
  }
  return true;
}

/** FSIN (D9 FE, `cc` 0), FCOS (D9 FF, `cc` 1), FSINCOS (D9 FB, `cc` 2), FPTAN (D9 F2, `cc` 3). */
export function ftrig(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  underflowed = false;
  if (!readSt(f, 0, A)) return;
  const pushes = i.cc >= 2;
  if (underflowed) {
    setStIndefinite(f, 0);
    if (pushes) push(f, getSt(f, 0, T));
    return;
  }
  if (pushes && !isEmpty(f, 7)) {
    if (overflow(f)) {
      setStIndefinite(f, 0);
      setTop(f, topOf(f) - 1);
      setStIndefinite(f, 0);
    }
    return;
  }
  if (!transcendentalOperand(f, A, 0)) {
    if (pushes) {
      getSt(f, 0, T);
      setTop(f, topOf(f) - 1);
      setSt(f, 0, T);
    }
    return;
  }
  const k = classify(A.se, A.hi, A.lo);
  if (k === K_INF) {
    if (report(f, X_IE)) {
      setStIndefinite(f, 0);
      if (pushes) {
        setTop(f, topOf(f) - 1);
        setStIndefinite(f, 0);
      }
    }
    f.fsw &= ~FSW_C2;
    return;
  }
  // |x| >= 2^63: out of range, C2 = 1 and ST0 unchanged (SDM "FSIN")
  if ((A.se & 0x7fff) >= 0x3fff + 63) {
    f.fsw = (f.fsw & ~FSW_C1) | FSW_C2;
    return;
  }
  f.fsw &= ~FSW_C2;
  let flags = 0;
  if (k === K_ZERO) {
    // sin, tan: the zero itself; cos: 1 (exact)
    R.copy(A);
    T.se = 0x3fff;
    T.hi = 0x8000_0000;
    T.lo = 0;
    if (i.cc === 1) R.copy(T);
  } else {
    flags = (k === K_DENORMAL ? X_DE : 0) | trig(A, i.cc === 3 ? 3 : i.cc, f.fcw, R, T);
    if (i.cc === 1) R.copy(T);
  }
  if (!report(f, flags)) return;
  setSt(f, 0, R);
  if (i.cc === 2) {
    // FSINCOS: ST0 = sine, then push the cosine
    setTop(f, topOf(f) - 1);
    setSt(f, 0, T);
  } else if (i.cc === 3) {
    // FPTAN: push 1.0
    T.se = 0x3fff;
    T.hi = 0x8000_0000;
    T.lo = 0;
    setTop(f, topOf(f) - 1);
    setSt(f, 0, T);
  }
}

/** F2XM1 (D9 F0): 2^x - 1 for -1 <= x <= 1 (outside: undefined, computed the same way). */
export function f2xm1(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  underflowed = false;
  if (!readSt(f, 0, A)) return;
  if (underflowed) {
    setStIndefinite(f, 0);
    return;
  }
  if (!transcendentalOperand(f, A, 0)) return;
  const k = classify(A.se, A.hi, A.lo);
  if (k === K_ZERO) {
    report(f, 0);
    return;
  }
  if (k === K_INF) {
    report(f, 0);
    if ((A.se & 0x8000) !== 0) {
      R.se = 0xbfff;
      R.hi = 0x8000_0000;
      R.lo = 0;
      setSt(f, 0, R);
    }
    return;
  }
  const de = k === K_DENORMAL ? X_DE : 0;
  let flags: number;
  if ((A.se & 0x7fff) < 0x3fff || ((A.se & 0x7fff) === 0x3fff && A.hi === 0x8000_0000 && A.lo === 0)) {
    flags = de | exp2m1(A, f.fcw, R);
  } else {
    // outside -1..+1 the result is undefined (SDM "F2XM1"): the host (AMD) gives the operand
    // back with PE set, and so does this
    R.copy(A);
    flags = de | X_PE;
  }
  if (!report(f, flags)) return;
  setSt(f, 0, R);
}

/**
 * FPATAN (D9 F3, `cc` 0): ST1 = atan(ST1 / ST0) with the quadrant of both signs, pop.
 * FYL2X (D9 F1, `cc` 1): ST1 = ST1 * log2(ST0), pop. FYL2XP1 (D9 F9, `cc` 2): ST1 * log2(ST0 + 1), pop.
 */
export function fbinaryTrans(cpu: Cpu, i: Insn): void {
  const f = begin(cpu, i);
  underflowed = false;
  if (!readSt(f, 0, A) || !readSt(f, 1, B)) return;
  if (underflowed) {
    setStIndefinite(f, 1);
    pop(f);
    return;
  }
  const ka = classify(A.se, A.hi, A.lo);
  const kb = classify(B.se, B.hi, B.lo);
  if (ka === K_UNSUPPORTED || kb === K_UNSUPPORTED) {
    if (report(f, X_IE)) {
      setStIndefinite(f, 1);
      pop(f);
    }
    return;
  }
  if (ka === K_QNAN || ka === K_SNAN || kb === K_QNAN || kb === K_SNAN) {
    // the NaN rule of the arithmetic instructions: let the adder pick
    const flags = add(B, A, false, f.fcw, R);
    if (report(f, flags)) {
      setSt(f, 1, R);
      pop(f);
    }
    return;
  }
  let flags = ka === K_DENORMAL || kb === K_DENORMAL ? X_DE : 0;
  const finite = (k: number) => k === K_NORMAL || k === K_DENORMAL;
  const kindOf = (k: number) => (k === K_ZERO ? 1 : k === K_INF ? 2 : 0);
  const xNeg = (A.se & 0x8000) !== 0;
  if (i.cc === 0) flags |= atan2(B, kindOf(kb), A, kindOf(ka), f.fcw, R);
  else if (i.cc === 1 && finite(ka) && finite(kb) && !xNeg && !(A.se === 0x3fff && A.hi === 0x8000_0000 && A.lo === 0)) {
    flags |= ylog2x(B, A, f.fcw, R);
  } else if (i.cc === 2 && finite(ka) && finite(kb) && !(xNeg && (A.se & 0x7fff) >= 0x3fff)) {
    flags |= ylog2xp1(B, A, f.fcw, R);
  } else {
    // zeros, infinities, x = 1 and the domain errors: exact results (SDM "FYL2X", "FYL2XP1" tables)
    if (i.cc === 1 && ((xNeg && ka !== K_ZERO) || (ka === K_ZERO && kb === K_ZERO) || (ka === K_INF && kb === K_ZERO))) {
      if (report(f, X_IE)) {
        setStIndefinite(f, 1);
        pop(f);
      }
      return;
    }
    if (i.cc === 1 && ka === K_ZERO) {
      // log2(0) = -inf: the result infinite with ST1's sign flipped; ZE for a finite ST1 (not
      // with DE, as the host reports it), nothing for an infinite one
      if (report(f, kb === K_INF ? 0 : X_ZE)) {
        R.se = ((B.se & 0x8000) ^ 0x8000) | 0x7fff;
        R.hi = 0x8000_0000;
        R.lo = 0;
        setSt(f, 1, R);
        pop(f);
      }
      return;
    }
    if (i.cc === 2 && xNeg && (A.se & 0x7fff) >= 0x3fff && finite(ka)) {
      // x <= -1, outside the domain (undefined, SDM "FYL2XP1"): as the host (AMD) does, a zero
      // or infinite ST1 gives itself with the sign flipped, a finite one gives x back with PE
      if (kb === K_ZERO || kb === K_INF) {
        R.copy(B);
        R.se ^= 0x8000;
      } else {
        R.copy(A);
        flags |= X_PE;
      }
      if (!report(f, flags)) return;
      setSt(f, 1, R);
      pop(f);
      return;
    }
    // the sign and class of log2(x) (FYL2X) or log2(1 + x) (FYL2XP1)
    let lSign: number; // 0 +, 1 -
    let lKind: number; // 0 zero, 1 finite nonzero, 2 infinite, 3 invalid
    if (i.cc === 1) {
      lKind = ka === K_INF ? 2 : A.se === 0x3fff && A.hi === 0x8000_0000 && A.lo === 0 ? 0 : 1;
      lSign = lKind === 0 || ka === K_INF || (A.se & 0x7fff) >= 0x3fff ? 0 : 1;
    } else {
      const minusOne = A.se === 0xbfff && A.hi === 0x8000_0000 && A.lo === 0;
      lKind = ka === K_ZERO ? 0 : minusOne ? 2 : xNeg && (A.se & 0x7fff) >= 0x3fff ? 3 : ka === K_INF ? 2 : 1;
      lSign = xNeg ? 1 : 0;
    }
    const yKind = kb === K_ZERO ? 0 : kb === K_INF ? 2 : 1;
    if (lKind === 3 || (lKind === 0 && yKind === 2) || (lKind === 2 && yKind === 0)) {
      if (report(f, X_IE)) {
        setStIndefinite(f, 1);
        pop(f);
      }
      return;
    }
    const sign = ((B.se >>> 15) ^ lSign) << 15;
    if (lKind === 0 || yKind === 0) {
      R.se = sign;
      R.hi = 0;
      R.lo = 0;
    } else if (lKind === 2 || yKind === 2) {
      R.se = sign | 0x7fff;
      R.hi = 0x8000_0000;
      R.lo = 0;
    } else {
      // y finite nonzero with a finite nonzero log: x was 1 + tiny... (not reached) or FYL2XP1's
      // x > -1 (handled above); kept for completeness: through the computed log
      flags |= i.cc === 1 ? ylog2x(B, A, f.fcw, R) : ylog2xp1(B, A, f.fcw, R);
    }
  }
  if (!report(f, flags)) return;
  setSt(f, 1, R);
  pop(f);
}

// ---- Environment and state images ----

/** The full tag word (SDM Figure 8-7): 00 valid, 01 zero, 10 special, 11 empty, by physical register. */
export function fullTagWord(f: FpuState): number {
  let tw = 0;
  for (let r = 0; r < 8; r++) {
    let t: number;
    if ((f.ftw & (1 << r)) === 0) t = 3;
    else {
      const k = classify(f.stSe[r]!, f.stHi[r]!, f.stLo[r]!);
      t = k === K_ZERO ? 1 : k === K_NORMAL ? 0 : 2;
    }
    tw |= t << (2 * r);
  }
  return tw;
}

/** Store the environment at `lin` (14 bytes with a 16-bit operand size, else 28). */
function storeEnv(cpu: Cpu, f: FpuState, lin: number, small: boolean): number {
  const tw = fullTagWord(f);
  if (small) {
    cpu.write16(lin, f.fcw);
    cpu.write16(lin + 2, f.fsw);
    cpu.write16(lin + 4, tw);
    cpu.write16(lin + 6, f.fipLo & 0xffff);
    cpu.write16(lin + 8, f.fcs);
    cpu.write16(lin + 10, f.fdpLo & 0xffff);
    cpu.write16(lin + 12, f.fds);
    return 14;
  }
  // the reserved upper halves are written as FFFFH, as the host CPU writes them
  cpu.write32(lin, f.fcw | 0xffff_0000);
  cpu.write32(lin + 4, f.fsw | 0xffff_0000);
  cpu.write32(lin + 8, tw | 0xffff_0000);
  cpu.write32(lin + 12, f.fipLo);
  cpu.write32(lin + 16, (f.fcs & 0xffff) | ((f.fop & 0x7ff) << 16));
  cpu.write32(lin + 20, f.fdpLo);
  cpu.write32(lin + 24, (f.fds & 0xffff) | 0xffff_0000);
  return 28;
}

/** Load the environment from `lin`; returns its size. */
function loadEnv(cpu: Cpu, f: FpuState, lin: number, small: boolean): number {
  let fcw: number, fsw: number, tw: number;
  if (small) {
    fcw = cpu.read16(lin);
    fsw = cpu.read16(lin + 2);
    tw = cpu.read16(lin + 4);
    f.fipLo = cpu.read16(lin + 6) & 0xffff;
    f.fcs = cpu.read16(lin + 8) & 0xffff;
    f.fdpLo = cpu.read16(lin + 10) & 0xffff;
    f.fds = cpu.read16(lin + 12) & 0xffff;
    f.fop = 0;
  } else {
    fcw = cpu.read16(lin);
    fsw = cpu.read16(lin + 4);
    tw = cpu.read16(lin + 8);
    f.fipLo = cpu.read32(lin + 12) >>> 0;
    const csop = cpu.read32(lin + 16);
    f.fcs = csop & 0xffff;
    f.fop = (csop >>> 16) & 0x7ff;
    f.fdpLo = cpu.read32(lin + 20) >>> 0;
    f.fds = cpu.read16(lin + 24) & 0xffff;
  }
  f.fipHi = 0;
  f.fdpHi = 0;
  f.fcw = (fcw & 0x1f3f) | 0x0040;
  f.fsw = fsw & 0xffff;
  // ES and B follow the loaded flags against the loaded masks (a pending unmasked one: #MF next)
  f.fsw = (f.fsw & FSW_EXC & ~f.fcw) !== 0 ? f.fsw | FSW_ES | FSW_B : f.fsw & ~(FSW_ES | FSW_B);
  let abridged = 0;
  for (let r = 0; r < 8; r++) if (((tw >>> (2 * r)) & 3) !== 3) abridged |= 1 << r;
  f.ftw = abridged;
  return small ? 14 : 28;
}

/** FNSTENV m14/28byte (D9 /6): store the environment, then mask every exception (SDM "FSTENV"). */
export function fnstenv(cpu: Cpu, i: Insn): void {
  if ((cpu.cr0 & (CR0_EM | CR0_TS)) !== 0) cpu.fault(Vector.NM);
  const f = cpu.fpu;
  const lin = ea(cpu, i);
  const small = i.opSize === 2;
  probeWrite(cpu, lin, small ? 14 : 28);
  storeEnv(cpu, f, lin, small);
  f.fcw |= 0x3f;
}

/** FLDENV m14/28byte (D9 /4). */
export function fldenv(cpu: Cpu, i: Insn): void {
  if ((cpu.cr0 & (CR0_EM | CR0_TS)) !== 0) cpu.fault(Vector.NM);
  const lin = ea(cpu, i);
  loadEnv(cpu, cpu.fpu, lin, i.opSize === 2);
}

/** FNSAVE m94/108byte (DD /6): the environment and ST0-7 in stack order, then FNINIT. */
export function fnsave(cpu: Cpu, i: Insn): void {
  if ((cpu.cr0 & (CR0_EM | CR0_TS)) !== 0) cpu.fault(Vector.NM);
  const f = cpu.fpu;
  const lin = ea(cpu, i);
  const small = i.opSize === 2;
  probeWrite(cpu, lin, small ? 94 : 108);
  let at = lin + storeEnv(cpu, f, lin, small);
  for (let st = 0; st < 8; st++, at += 10) writeM80(cpu, at, getSt(f, st, A));
  f.fcw = 0x037f;
  f.fsw = 0;
  f.ftw = 0;
  f.fop = 0;
  f.fipLo = f.fipHi = f.fcs = 0;
  f.fdpLo = f.fdpHi = f.fds = 0;
}

/** FRSTOR m94/108byte (DD /4). */
export function frstor(cpu: Cpu, i: Insn): void {
  if ((cpu.cr0 & (CR0_EM | CR0_TS)) !== 0) cpu.fault(Vector.NM);
  const f = cpu.fpu;
  const lin = ea(cpu, i);
  const small = i.opSize === 2;
  // read the registers first so that a fault changes nothing
  const regs = small ? 14 : 28;
  const se = f.staging;
  for (let k = 0; k < 80; k++) se[k] = cpu.read8(lin + regs + k);
  loadEnv(cpu, f, lin, small);
  for (let st = 0; st < 8; st++) {
    const b = 10 * st;
    A.lo = (se[b]! | (se[b + 1]! << 8) | (se[b + 2]! << 16) | (se[b + 3]! << 24)) >>> 0;
    A.hi = (se[b + 4]! | (se[b + 5]! << 8) | (se[b + 6]! << 16) | (se[b + 7]! << 24)) >>> 0;
    A.se = se[b + 8]! | (se[b + 9]! << 8);
    const r = (topOf(f) + st) & 7;
    f.stSe[r] = A.se;
    f.stHi[r] = A.hi;
    f.stLo[r] = A.lo;
  }
}
