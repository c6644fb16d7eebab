/**
 * Data movement: MOV in its forms, MOVZX/MOVSX/MOVSXD, LEA, XCHG, CMPXCHG, XADD, CMOVcc, SETcc,
 * CBW/CWDE/CDQE, CWD/CDQ/CQO, LAHF/SAHF and the flag-bit instructions (SDM Vol. 2).
 */
import type { Cpu } from "../cpu.js";
import type { Insn } from "../decode/insn.js";
import { RFLAGS_AF, RFLAGS_CF, RFLAGS_DF, RFLAGS_PF, RFLAGS_SF, RFLAGS_ZF } from "../regs.js";
import { ALU_CMP, aluFlags, aluResult, ea, offset64, offsetOf, readE, readReg, writeE, writeReg } from "./operands.js";

/** MOV E, G (88, 89). */
export function movEG(cpu: Cpu, i: Insn): void {
  const v = readReg(cpu, i.reg, i.rex, i.opSize);
  writeE(cpu, i, i.opSize, v, cpu.tmpHi, false);
}

/** MOV G, E (8A, 8B). */
export function movGE(cpu: Cpu, i: Insn): void {
  const v = readE(cpu, i, i.opSize);
  writeReg(cpu, i.reg, i.rex, i.opSize, v, cpu.tmpHi);
}

/** MOV E, imm (C6 /0, C7 /0; the 32-bit immediate is sign-extended for 64-bit operands). */
export function movEI(cpu: Cpu, i: Insn): void {
  writeE(cpu, i, i.opSize, i.imm, i.immHi, false);
}

/** MOV r, imm (B0+r, B8+r; with REX.W a full 64-bit immediate). */
export function movRI(cpu: Cpu, i: Insn): void {
  writeReg(cpu, i.rm, i.rex, i.opSize, i.imm, i.immHi);
}

/** MOV AL/AX/EAX/RAX, moffs (A0, A1) and MOV moffs, A (A2, A3): `i.cc` 1 = store. */
export function movMoffs(cpu: Cpu, i: Insn): void {
  if (i.cc === 0) movGE(cpu, i);
  else movEG(cpu, i);
}

/** LEA G, M (8D): the offset, truncated to the operand size; no segment base. */
export function lea(cpu: Cpu, i: Insn): void {
  if (i.addrSize === 2) {
    writeReg(cpu, i.reg, i.rex, i.opSize, offsetOf(cpu, i), 0); // a 16-bit address, zero-extended
    return;
  }
  if (i.opSize !== 8) {
    // Only the low 32 (or 16) bits matter: sum the low halves, exact modulo 2^32.
    let a = i.disp;
    if (i.base >= 0) a += cpu.lo[i.base]!;
    if (i.index >= 0) a += cpu.lo[i.index]! * i.scale;
    if (i.ripRel) a += cpu.rip % 0x1_0000_0000;
    writeReg(cpu, i.reg, i.rex, i.opSize, a | 0, 0);
    return;
  }
  if (i.addrSize === 4) {
    writeReg(cpu, i.reg, i.rex, 8, offsetOf(cpu, i) | 0, 0);
    return;
  }
  offset64(cpu, i);
  writeReg(cpu, i.reg, i.rex, 8, cpu.offLo, cpu.offHi);
}

/** MOVZX G, Eb/Ew (0F B6, B7): `i.cc` = source size. */
export function movzx(cpu: Cpu, i: Insn): void {
  const v = readE(cpu, i, i.cc);
  writeReg(cpu, i.reg, i.rex, i.opSize, i.cc === 1 ? v & 0xff : v & 0xffff, 0);
}

/** MOVSX G, Eb/Ew (0F BE, BF) and MOVSXD G, Ed (63 in 64-bit mode): `i.cc` = source size. */
export function movsx(cpu: Cpu, i: Insn): void {
  const v = readE(cpu, i, i.cc);
  const s = i.cc === 1 ? (v << 24) >> 24 : i.cc === 2 ? (v << 16) >> 16 : v | 0;
  writeReg(cpu, i.reg, i.rex, i.opSize, i.opSize === 2 ? s & 0xffff : s, s >> 31);
}

/** XCHG E, G (86, 87; with memory it is locked, which changes nothing here). */
export function xchgEG(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = readE(cpu, i, size);
  const aHi = cpu.tmpHi;
  const b = readReg(cpu, i.reg, i.rex, size);
  const bHi = cpu.tmpHi;
  writeE(cpu, i, size, b, bHi, true);
  writeReg(cpu, i.reg, i.rex, size, a, aHi);
}

/** XCHG rAX, r (91-97; 90 with REX.B is XCHG r8, rAX). */
export function xchgAR(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = readReg(cpu, 0, false, size);
  const aHi = cpu.tmpHi;
  const b = readReg(cpu, i.rm, i.rex, size);
  const bHi = cpu.tmpHi;
  writeReg(cpu, 0, false, size, b, bHi);
  writeReg(cpu, i.rm, i.rex, size, a, aHi);
}

/** CMPXCHG E, G (0F B0, B1): compare the accumulator with E; equal: E = G, else accumulator = E. */
export function cmpxchg(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const dst = readE(cpu, i, size);
  const dstHi = cpu.tmpHi;
  const acc = readReg(cpu, 0, false, size);
  const accHi = cpu.tmpHi;
  const r = aluResult(cpu, ALU_CMP, size, acc, accHi, dst, dstHi);
  const rHi = cpu.tmpHi;
  const equal = size === 8 ? acc === dst && accHi === dstHi : acc === dst;
  if (equal) {
    const src = readReg(cpu, i.reg, i.rex, size);
    writeE(cpu, i, size, src, cpu.tmpHi, true);
  } else {
    // A memory destination is written back unchanged (the processor always writes it); a
    // register destination is left as it was, upper half included (as Intel processors do).
    if (i.isMem) writeE(cpu, i, size, dst, dstHi, true);
    writeReg(cpu, 0, false, size, dst, dstHi);
  }
  aluFlags(cpu, ALU_CMP, size, acc, accHi, dst, dstHi, r, rHi);
}

/** XADD E, G (0F C0, C1): G = E; E = E + G. */
export function xadd(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = readE(cpu, i, size);
  const aHi = cpu.tmpHi;
  const b = readReg(cpu, i.reg, i.rex, size);
  const bHi = cpu.tmpHi;
  const r = aluResult(cpu, 0, size, a, aHi, b, bHi);
  const rHi = cpu.tmpHi;
  // SRC = DEST, then DEST = TEMP: with one register as both, the sum wins. A memory
  // destination is written first so a faulting store leaves the register untouched.
  if (i.isMem) {
    writeE(cpu, i, size, r, rHi, true);
    writeReg(cpu, i.reg, i.rex, size, a, aHi);
  } else {
    writeReg(cpu, i.reg, i.rex, size, a, aHi);
    writeE(cpu, i, size, r, rHi, true);
  }
  aluFlags(cpu, 0, size, a, aHi, b, bHi, r, rHi);
}

/** CMOVcc G, E (0F 40-4F): the source is read (and may fault) whatever the condition; a false 32-bit CMOV still zero-extends. */
export function cmov(cpu: Cpu, i: Insn): void {
  const v = readE(cpu, i, i.opSize);
  const vHi = cpu.tmpHi;
  if (cpu.cond(i.cc)) writeReg(cpu, i.reg, i.rex, i.opSize, v, vHi);
  else if (i.opSize === 4) cpu.hi[i.reg] = 0;
}

/** SETcc Eb (0F 90-9F). */
export function setcc(cpu: Cpu, i: Insn): void {
  writeE(cpu, i, 1, cpu.cond(i.cc) ? 1 : 0, 0, false);
}

/** CBW / CWDE / CDQE (98): sign-extend the accumulator's lower half into itself. */
export function cbw(cpu: Cpu, i: Insn): void {
  const lo = cpu.lo[0]!;
  if (i.opSize === 2) cpu.setReg16(0, (lo << 24) >> 24);
  else if (i.opSize === 4) cpu.setReg32(0, (lo << 16) >> 16);
  else cpu.hi[0] = lo >> 31;
}

/** CWD / CDQ / CQO (99): sign of the accumulator into DX / EDX / RDX. */
export function cwd(cpu: Cpu, i: Insn): void {
  if (i.opSize === 2) cpu.setReg16(2, (cpu.lo[0]! << 16) >> 31);
  else if (i.opSize === 4) cpu.setReg32(2, cpu.lo[0]! >> 31);
  else {
    const s = cpu.hi[0]! >> 31;
    cpu.lo[2] = s;
    cpu.hi[2] = s;
  }
}

/** LAHF (9F): AH = SF:ZF:0:AF:0:PF:1:CF. */
export function lahf(cpu: Cpu): void {
  cpu.setReg8(4, false, cpu.getFlags() & 0xd7 | 2);
}

/** SAHF (9E): SF, ZF, AF, PF, CF from AH. */
export function sahf(cpu: Cpu): void {
  const ah = cpu.getReg8(4, false);
  cpu.setFlags(ah, RFLAGS_SF | RFLAGS_ZF | RFLAGS_AF | RFLAGS_PF | RFLAGS_CF);
}

/** CLC, STC, CMC, CLD, STD (F8, F9, F5, FC, FD): `i.cc` selects. */
export function flagOp(cpu: Cpu, i: Insn): void {
  switch (i.cc) {
    case 0:
      cpu.fA &= ~RFLAGS_CF;
      break;
    case 1:
      cpu.fA |= RFLAGS_CF;
      break;
    case 2:
      cpu.fA ^= RFLAGS_CF;
      break;
    case 3:
      cpu.flagsOther &= ~RFLAGS_DF;
      break;
    default:
      cpu.flagsOther |= RFLAGS_DF;
  }
}

/** NOP, PAUSE, multi-byte NOP (0F 1F /0), and hint-space opcodes (0F 18-1F). */
export function nop(): void {}

/** Address of a memory operand for handlers that need it raw (LGDT and friends). */
export { ea };
