/**
 * Integer arithmetic and logic: the group-1 ALU operations in their E,G / G,E / A,I / E,I forms,
 * TEST, INC, DEC, NEG, NOT (SDM Vol. 2: ADD, ADC, SUB, SBB, AND, OR, XOR, CMP, TEST, INC, DEC,
 * NEG, NOT). The operation is `i.cc` (0 ADD, 1 OR, 2 ADC, 3 SBB, 4 AND, 5 SUB, 6 XOR, 7 CMP).
 */
import type { Cpu } from "../cpu.js";
import type { Insn } from "../decode/insn.js";
import { RFLAGS_AF, RFLAGS_CF, RFLAGS_OF } from "../regs.js";
import { ALU_AND, ALU_CMP, ALU_SUB, addFlags, aluFlags, aluResult, readE, readReg, setZSP, subFlags, writeE, writeReg } from "./operands.js";

/** E op= G (00, 01, 08, 09, ... 38, 39). */
export function aluEG(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = readE(cpu, i, size);
  const aHi = cpu.tmpHi;
  const b = readReg(cpu, i.reg, i.rex, size);
  const bHi = cpu.tmpHi;
  const r = aluResult(cpu, i.cc, size, a, aHi, b, bHi);
  const rHi = cpu.tmpHi;
  if (i.cc !== ALU_CMP) writeE(cpu, i, size, r, rHi, true);
  aluFlags(cpu, i.cc, size, a, aHi, b, bHi, r, rHi);
}

/** G op= E (02, 03, ... 3A, 3B). */
export function aluGE(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const b = readE(cpu, i, size);
  const bHi = cpu.tmpHi;
  const a = readReg(cpu, i.reg, i.rex, size);
  const aHi = cpu.tmpHi;
  const r = aluResult(cpu, i.cc, size, a, aHi, b, bHi);
  const rHi = cpu.tmpHi;
  if (i.cc !== ALU_CMP) writeReg(cpu, i.reg, i.rex, size, r, rHi);
  aluFlags(cpu, i.cc, size, a, aHi, b, bHi, r, rHi);
}

/** AL/AX/EAX/RAX op= imm (04, 05, ... 3C, 3D). */
export function aluAI(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = readReg(cpu, 0, false, size);
  const aHi = cpu.tmpHi;
  const b = immFor(i, size);
  const r = aluResult(cpu, i.cc, size, a, aHi, b, i.immHi);
  const rHi = cpu.tmpHi;
  if (i.cc !== ALU_CMP) writeReg(cpu, 0, false, size, r, rHi);
  aluFlags(cpu, i.cc, size, a, aHi, b, i.immHi, r, rHi);
}

/** Group 1: E op= imm (80, 81, 83). */
export function aluEI(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = readE(cpu, i, size);
  const aHi = cpu.tmpHi;
  const b = immFor(i, size);
  const r = aluResult(cpu, i.cc, size, a, aHi, b, i.immHi);
  const rHi = cpu.tmpHi;
  if (i.cc !== ALU_CMP) writeE(cpu, i, size, r, rHi, true);
  aluFlags(cpu, i.cc, size, a, aHi, b, i.immHi, r, rHi);
}

/** The immediate masked to the operand width (8/16-bit ALU works on unsigned masked values). */
function immFor(i: Insn, size: number): number {
  return size === 1 ? i.imm & 0xff : size === 2 ? i.imm & 0xffff : i.imm;
}

/** TEST E,G (84, 85). */
export function testEG(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = readE(cpu, i, size);
  const aHi = cpu.tmpHi;
  const b = readReg(cpu, i.reg, i.rex, size);
  const r = aluResult(cpu, ALU_AND, size, a, aHi, b, cpu.tmpHi);
  setZSP(cpu, size, r, cpu.tmpHi);
  cpu.fA = 0;
}

/** TEST E,imm (F6 /0, F7 /0) and TEST A,imm (A8, A9; r/m is the accumulator). */
export function testEI(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = readE(cpu, i, size);
  const aHi = cpu.tmpHi;
  const r = aluResult(cpu, ALU_AND, size, a, aHi, immFor(i, size), i.immHi);
  setZSP(cpu, size, r, cpu.tmpHi);
  cpu.fA = 0;
}

/** INC E (FE /0, FF /0, 40+r outside 64-bit mode): CF is preserved. */
export function incE(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = readE(cpu, i, size);
  const aHi = cpu.tmpHi;
  const r = aluResult(cpu, 0, size, a, aHi, 1, 0);
  const rHi = cpu.tmpHi;
  writeE(cpu, i, size, r, rHi, true);
  const cf = cpu.fA & RFLAGS_CF;
  setZSP(cpu, size, r, rHi);
  cpu.fA = (addFlags(size, a, aHi, 1, 0, r, rHi) & (RFLAGS_AF | RFLAGS_OF)) | cf;
}

/** DEC E (FE /1, FF /1, 48+r outside 64-bit mode): CF is preserved. */
export function decE(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = readE(cpu, i, size);
  const aHi = cpu.tmpHi;
  const r = aluResult(cpu, ALU_SUB, size, a, aHi, 1, 0);
  const rHi = cpu.tmpHi;
  writeE(cpu, i, size, r, rHi, true);
  const cf = cpu.fA & RFLAGS_CF;
  setZSP(cpu, size, r, rHi);
  cpu.fA = (subFlags(size, a, aHi, 1, 0, r, rHi) & (RFLAGS_AF | RFLAGS_OF)) | cf;
}

/** NEG E (F6 /3, F7 /3): 0 - E; CF = (E != 0). */
export function negE(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const b = readE(cpu, i, size);
  const bHi = cpu.tmpHi;
  const r = aluResult(cpu, ALU_SUB, size, 0, 0, b, bHi);
  const rHi = cpu.tmpHi;
  writeE(cpu, i, size, r, rHi, true);
  aluFlags(cpu, ALU_SUB, size, 0, 0, b, bHi, r, rHi);
}

/** NOT E (F6 /2, F7 /2): no flags. */
export function notE(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const a = readE(cpu, i, size);
  const aHi = cpu.tmpHi;
  const m = size === 1 ? 0xff : size === 2 ? 0xffff : -1;
  writeE(cpu, i, size, ~a & m, ~aHi, true);
}
