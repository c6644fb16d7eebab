/**
 * Specialized handlers for the hottest forms, chosen at decode time (the way Bochs picks a
 * register or memory form of a handler when it decodes): 32- and 64-bit ALU operations between
 * registers or with an immediate, register and memory MOVs, and shifts/rotates of a register by
 * an immediate. Each does exactly what its generic handler does; the differential test and the
 * guest programs run through both.
 */
import type { Cpu } from "../cpu.js";
import type { Handler, Insn } from "../decode/insn.js";
import * as alu from "./alu.js";
import * as move from "./move.js";
import * as shift from "./shift.js";
import { ea } from "./operands.js";
import * as control from "./control.js";

/** A Jcc decoded in 64-bit mode (its operand size is forced to 64). */
function cpu64(i: Insn): boolean {
  return i.opSize === 8;
}

const ADD = 0;
const OR = 1;
const AND = 4;
const SUB = 5;
// 6 = XOR, the default case of op32 / op64
const CMP = 7;

/** CF, AF, OF of a 32-bit add from operands and result (RFLAGS positions). */
function addFlags32(a: number, b: number, r: number): number {
  const carries = (a & b) | ((a | b) & ~r);
  return ((a ^ b ^ r) & 0x10) | (carries >>> 31) | ((((a ^ r) & (b ^ r)) >>> 31) << 11);
}

/** CF, AF, OF of a 32-bit subtract. */
function subFlags32(a: number, b: number, r: number): number {
  const borrows = (~a & b) | (~(a ^ b) & r);
  return ((a ^ b ^ r) & 0x10) | (borrows >>> 31) | ((((a ^ b) & (a ^ r)) >>> 31) << 11);
}

/** One 32-bit ALU operation on values; writes the flags and returns the result (ADC/SBB are not here). */
function op32(cpu: Cpu, op: number, a: number, b: number): number {
  let r: number;
  switch (op) {
    case ADD:
      r = (a + b) | 0;
      cpu.fA = addFlags32(a, b, r);
      break;
    case SUB:
    case CMP:
      r = (a - b) | 0;
      cpu.fA = subFlags32(a, b, r);
      break;
    case AND:
      r = a & b;
      cpu.fA = 0;
      break;
    case OR:
      r = a | b;
      cpu.fA = 0;
      break;
    default:
      r = a ^ b;
      cpu.fA = 0;
  }
  cpu.fZ = r;
  cpu.fS = r;
  cpu.fP = r;
  return r;
}

/** One 64-bit ALU operation on halves; writes the flags, returns the low half (high in tmpHi). */
function op64(cpu: Cpu, op: number, al: number, ah: number, bl: number, bh: number): number {
  let rl: number;
  let rh: number;
  switch (op) {
    case ADD: {
      const s = (al >>> 0) + (bl >>> 0);
      rl = s | 0;
      rh = (ah + bh + (s > 0xffff_ffff ? 1 : 0)) | 0;
      const carries = (ah & bh) | ((ah | bh) & ~rh);
      cpu.fA = ((al ^ bl ^ rl) & 0x10) | (carries >>> 31) | ((((ah ^ rh) & (bh ^ rh)) >>> 31) << 11);
      break;
    }
    case SUB:
    case CMP: {
      const d = (al >>> 0) - (bl >>> 0);
      rl = d | 0;
      rh = (ah - bh - (d < 0 ? 1 : 0)) | 0;
      const borrows = (~ah & bh) | (~(ah ^ bh) & rh);
      cpu.fA = ((al ^ bl ^ rl) & 0x10) | (borrows >>> 31) | ((((ah ^ bh) & (ah ^ rh)) >>> 31) << 11);
      break;
    }
    case AND:
      rl = al & bl;
      rh = ah & bh;
      cpu.fA = 0;
      break;
    case OR:
      rl = al | bl;
      rh = ah | bh;
      cpu.fA = 0;
      break;
    default:
      rl = al ^ bl;
      rh = ah ^ bh;
      cpu.fA = 0;
  }
  cpu.fZ = rl | rh;
  cpu.fS = rh;
  cpu.fP = rl;
  cpu.tmpHi = rh;
  return rl;
}

// ---- ALU, register forms ----
function alu32EG_RR(cpu: Cpu, i: Insn): void {
  const r = op32(cpu, i.cc, cpu.lo[i.rm]!, cpu.lo[i.reg]!);
  if (i.cc !== CMP) {
    cpu.lo[i.rm] = r;
    cpu.hi[i.rm] = 0;
  }
}
function alu64EG_RR(cpu: Cpu, i: Insn): void {
  const r = op64(cpu, i.cc, cpu.lo[i.rm]!, cpu.hi[i.rm]!, cpu.lo[i.reg]!, cpu.hi[i.reg]!);
  if (i.cc !== CMP) {
    cpu.lo[i.rm] = r;
    cpu.hi[i.rm] = cpu.tmpHi;
  }
}
function alu32GE_RR(cpu: Cpu, i: Insn): void {
  const r = op32(cpu, i.cc, cpu.lo[i.reg]!, cpu.lo[i.rm]!);
  if (i.cc !== CMP) {
    cpu.lo[i.reg] = r;
    cpu.hi[i.reg] = 0;
  }
}
function alu64GE_RR(cpu: Cpu, i: Insn): void {
  const r = op64(cpu, i.cc, cpu.lo[i.reg]!, cpu.hi[i.reg]!, cpu.lo[i.rm]!, cpu.hi[i.rm]!);
  if (i.cc !== CMP) {
    cpu.lo[i.reg] = r;
    cpu.hi[i.reg] = cpu.tmpHi;
  }
}
function alu32GE_RM(cpu: Cpu, i: Insn): void {
  const b = cpu.read32(ea(cpu, i));
  const r = op32(cpu, i.cc, cpu.lo[i.reg]!, b);
  if (i.cc !== CMP) {
    cpu.lo[i.reg] = r;
    cpu.hi[i.reg] = 0;
  }
}
function alu64GE_RM(cpu: Cpu, i: Insn): void {
  const bl = cpu.read64(ea(cpu, i));
  const r = op64(cpu, i.cc, cpu.lo[i.reg]!, cpu.hi[i.reg]!, bl, cpu.tmpHi);
  if (i.cc !== CMP) {
    cpu.lo[i.reg] = r;
    cpu.hi[i.reg] = cpu.tmpHi;
  }
}
function alu32EI_R(cpu: Cpu, i: Insn): void {
  const r = op32(cpu, i.cc, cpu.lo[i.rm]!, i.imm);
  if (i.cc !== CMP) {
    cpu.lo[i.rm] = r;
    cpu.hi[i.rm] = 0;
  }
}
function alu64EI_R(cpu: Cpu, i: Insn): void {
  const r = op64(cpu, i.cc, cpu.lo[i.rm]!, cpu.hi[i.rm]!, i.imm, i.immHi);
  if (i.cc !== CMP) {
    cpu.lo[i.rm] = r;
    cpu.hi[i.rm] = cpu.tmpHi;
  }
}
function test32RR(cpu: Cpu, i: Insn): void {
  op32(cpu, AND, cpu.lo[i.rm]!, cpu.lo[i.reg]!);
}
function test64RR(cpu: Cpu, i: Insn): void {
  op64(cpu, AND, cpu.lo[i.rm]!, cpu.hi[i.rm]!, cpu.lo[i.reg]!, cpu.hi[i.reg]!);
}

// ---- MOV ----
function mov64RR(cpu: Cpu, i: Insn): void {
  cpu.lo[i.rm] = cpu.lo[i.reg]!;
  cpu.hi[i.rm] = cpu.hi[i.reg]!;
}
function mov32RR(cpu: Cpu, i: Insn): void {
  cpu.lo[i.rm] = cpu.lo[i.reg]!;
  cpu.hi[i.rm] = 0;
}
function mov64Load(cpu: Cpu, i: Insn): void {
  const lo = cpu.read64(ea(cpu, i));
  cpu.lo[i.reg] = lo;
  cpu.hi[i.reg] = cpu.tmpHi;
}
function mov32Load(cpu: Cpu, i: Insn): void {
  cpu.lo[i.reg] = cpu.read32(ea(cpu, i));
  cpu.hi[i.reg] = 0;
}
function mov64Store(cpu: Cpu, i: Insn): void {
  cpu.write64(ea(cpu, i), cpu.lo[i.reg]!, cpu.hi[i.reg]!);
}
function mov32Store(cpu: Cpu, i: Insn): void {
  cpu.write32(ea(cpu, i), cpu.lo[i.reg]!);
}

// ---- Shifts of a register by an immediate, 1 or CL (SHL, SHR, SAR, ROL, ROR) ----
function shiftCount(cpu: Cpu, i: Insn): number {
  return i.opcode === 0xd1 ? 1 : i.opcode === 0xd3 ? cpu.lo[1]! & 0xff : i.imm & 0xff;
}

function shift32R(cpu: Cpu, i: Insn): void {
  const n = shiftCount(cpu, i) & 0x1f;
  const r = i.rm;
  const v = cpu.lo[r]!;
  if (n === 0) {
    cpu.hi[r] = 0;
    return;
  }
  let res: number;
  let cf: number;
  let of: number;
  switch (i.cc) {
    case 0: // ROL
      res = (v << n) | (v >>> (32 - n));
      cf = res & 1;
      cpu.fA = (cpu.fA & ~0x801) | cf | (((res >>> 31) ^ cf) << 11);
      cpu.lo[r] = res;
      cpu.hi[r] = 0;
      return;
    case 1: // ROR
      res = (v >>> n) | (v << (32 - n));
      cf = res >>> 31;
      cpu.fA = (cpu.fA & ~0x801) | cf | ((((res >>> 31) ^ (res >>> 30)) & 1) << 11);
      cpu.lo[r] = res;
      cpu.hi[r] = 0;
      return;
    case 4:
    case 6: // SHL / SAL
      res = v << n;
      cf = (v >>> (32 - n)) & 1;
      of = (res >>> 31) ^ cf;
      break;
    case 5: // SHR
      res = v >>> n;
      cf = (v >>> (n - 1)) & 1;
      of = v >>> 31;
      break;
    default: // SAR
      res = v >> n;
      cf = (v >> (n - 1)) & 1;
      of = 0;
  }
  res |= 0;
  cpu.lo[r] = res;
  cpu.hi[r] = 0;
  cpu.fZ = res;
  cpu.fS = res;
  cpu.fP = res;
  cpu.fA = cf | (of << 11);
}

/** 64-bit register shifts on halves: results and flags exactly as the generic path computes them. */
function shift64R(cpu: Cpu, i: Insn): void {
  const n = shiftCount(cpu, i) & 0x3f;
  const r = i.rm;
  const lo = cpu.lo[r]!;
  const hi = cpu.hi[r]!;
  if (n === 0) return;
  let rl: number;
  let rh: number;
  let cf: number;
  let of: number;
  switch (i.cc) {
    case 0: // ROL
    case 1: {
      // ROR by n is ROL by 64 - n
      const k = i.cc === 0 ? n : (64 - n) & 63;
      if (k === 0) {
        rl = lo;
        rh = hi;
      } else if (k === 32) {
        rl = hi;
        rh = lo;
      } else if (k < 32) {
        rl = (lo << k) | (hi >>> (32 - k));
        rh = (hi << k) | (lo >>> (32 - k));
      } else {
        const m = k - 32;
        rl = (hi << m) | (lo >>> (32 - m));
        rh = (lo << m) | (hi >>> (32 - m));
      }
      if (i.cc === 0) {
        cf = rl & 1;
        of = (rh >>> 31) ^ cf;
      } else {
        cf = rh >>> 31;
        of = ((rh >>> 31) ^ (rh >>> 30)) & 1;
      }
      cpu.lo[r] = rl;
      cpu.hi[r] = rh;
      cpu.fA = (cpu.fA & ~0x801) | cf | (of << 11);
      return;
    }
    case 4:
    case 6: // SHL
      if (n < 32) {
        cf = (hi >>> (32 - n)) & 1;
        rh = (hi << n) | (lo >>> (32 - n));
        rl = lo << n;
      } else {
        cf = n === 32 ? hi & 1 : (lo >>> (64 - n)) & 1;
        rh = n === 32 ? lo : lo << (n - 32);
        rl = 0;
      }
      of = (rh >>> 31) ^ cf;
      break;
    case 5: // SHR
      if (n < 32) {
        cf = (lo >>> (n - 1)) & 1;
        rl = (lo >>> n) | (hi << (32 - n));
        rh = hi >>> n;
      } else {
        cf = n === 32 ? lo >>> 31 : (hi >>> (n - 33)) & 1;
        rl = n === 32 ? hi : hi >>> (n - 32);
        rh = 0;
      }
      of = hi >>> 31;
      break;
    default: // SAR
      if (n < 32) {
        cf = (lo >>> (n - 1)) & 1;
        rl = (lo >>> n) | (hi << (32 - n));
        rh = hi >> n;
      } else {
        cf = n === 32 ? lo >>> 31 : (hi >> (n - 33)) & 1;
        rl = n === 32 ? hi : hi >> (n - 32);
        rh = hi >> 31;
      }
      of = 0;
  }
  rl |= 0;
  rh |= 0;
  cpu.lo[r] = rl;
  cpu.hi[r] = rh;
  cpu.fZ = rl | rh;
  cpu.fS = rh;
  cpu.fP = rl;
  cpu.fA = cf | (of << 11);
}

/** Jcc rel8/rel32 in 64-bit mode: the condition inline, the target checked for canonical form. */
function jcc64(cpu: Cpu, i: Insn): void {
  if (cpu.cond(i.cc)) {
    const t = cpu.rip + i.imm;
    if (t < -TWO_47 || t >= TWO_47) cpu.gp(0);
    cpu.rip = t;
  }
}
function jz64(cpu: Cpu, i: Insn): void {
  if (cpu.fZ === 0) {
    const t = cpu.rip + i.imm;
    if (t < -TWO_47 || t >= TWO_47) cpu.gp(0);
    cpu.rip = t;
  }
}
function jnz64(cpu: Cpu, i: Insn): void {
  if (cpu.fZ !== 0) {
    const t = cpu.rip + i.imm;
    if (t < -TWO_47 || t >= TWO_47) cpu.gp(0);
    cpu.rip = t;
  }
}
const TWO_47 = 2 ** 47;

const ALU_EG = alu.aluEG;
const ALU_GE = alu.aluGE;
const ALU_EI = alu.aluEI;
const ADC = 2;
const SBB = 3;

/** The specialized handler for a decoded instruction, or its generic one. */
export function specialize(i: Insn): Handler {
  const h = i.exec;
  const size = i.opSize;
  if (size !== 4 && size !== 8) return h;
  const wide = size === 8;
  if (h === ALU_EG && i.cc !== ADC && i.cc !== SBB) {
    if (!i.isMem) return wide ? alu64EG_RR : alu32EG_RR;
    return h;
  }
  if (h === ALU_GE && i.cc !== ADC && i.cc !== SBB) {
    if (!i.isMem) return wide ? alu64GE_RR : alu32GE_RR;
    return wide ? alu64GE_RM : alu32GE_RM;
  }
  if (h === ALU_EI && i.cc !== ADC && i.cc !== SBB && !i.isMem) return wide ? alu64EI_R : alu32EI_R;
  if (h === alu.testEG && !i.isMem) return wide ? test64RR : test32RR;
  if (h === move.movEG) {
    if (!i.isMem) return wide ? mov64RR : mov32RR;
    return wide ? mov64Store : mov32Store;
  }
  if (h === move.movGE && i.isMem) return wide ? mov64Load : mov32Load;
  if (h === move.movGE && !i.isMem) return wide ? mov64GE : mov32GE;
  if (h === control.jccRel && cpu64(i)) return i.cc === 4 ? jz64 : i.cc === 5 ? jnz64 : jcc64;
  if ((h === shift.shiftEI || h === shift.shiftE1 || h === shift.shiftECL) && !i.isMem && i.cc !== 2 && i.cc !== 3) {
    return wide ? shift64R : shift32R;
  }
  return h;
}

function mov64GE(cpu: Cpu, i: Insn): void {
  cpu.lo[i.reg] = cpu.lo[i.rm]!;
  cpu.hi[i.reg] = cpu.hi[i.rm]!;
}
function mov32GE(cpu: Cpu, i: Insn): void {
  cpu.lo[i.reg] = cpu.lo[i.rm]!;
  cpu.hi[i.reg] = 0;
}

/** Every specialized handler (all straight-line: none changes RIP, mode or interrupt state). */
export const FAST_HANDLERS: readonly Handler[] = [
  alu32EG_RR,
  alu64EG_RR,
  alu32GE_RR,
  alu64GE_RR,
  alu32GE_RM,
  alu64GE_RM,
  alu32EI_R,
  alu64EI_R,
  test32RR,
  test64RR,
  mov64RR,
  mov32RR,
  mov64Load,
  mov32Load,
  mov64Store,
  mov32Store,
  mov64GE,
  mov32GE,
  shift32R,
  shift64R,
];
