/**
 * Bit instructions: BT/BTS/BTR/BTC, BSF/BSR, TZCNT/LZCNT, POPCNT, BSWAP (SDM Vol. 2).
 * BSF/BSR with a zero source set ZF and leave the destination unchanged (what Intel and AMD
 * processors do; the SDM calls the destination undefined). Their other flags are undefined:
 * we clear CF, OF, SF, AF and set PF from the result.
 */
import type { Cpu } from "../cpu.js";
import type { Insn } from "../decode/insn.js";
import { RFLAGS_CF } from "../regs.js";
import { ea, readE, readReg, writeE, writeReg } from "./operands.js";

const BT = 0;
const BTS = 1;
const BTR = 2; // 3 = BTC, the remaining case

/** BT/BTS/BTR/BTC E, G (0F A3, AB, B3, BB): `i.cc` = 0 BT, 1 BTS, 2 BTR, 3 BTC. */
export function btEG(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const off = readReg(cpu, i.reg, i.rex, size);
  const offHi = cpu.tmpHi;
  if (!i.isMem) {
    bitOp(cpu, i, off & (size * 8 - 1));
    return;
  }
  // A register bit offset reaches beyond the operand: signed offset / width selects the unit (SDM "BT").
  const bits = size * 8;
  const signed = size === 8 ? offHi * 0x1_0000_0000 + (off >>> 0) : size === 4 ? off : (off << 16) >> 16;
  const unit = Math.floor(signed / bits);
  const lin = ea(cpu, i) + unit * size;
  memBitOp(cpu, i, lin, signed - unit * bits);
}

/** Group 8 (0F BA /4-/7): BT/BTS/BTR/BTC E, imm8; the immediate is taken modulo the width. */
export function btEI(cpu: Cpu, i: Insn): void {
  const bit = i.imm & (i.opSize * 8 - 1);
  if (!i.isMem) bitOp(cpu, i, bit);
  else memBitOp(cpu, i, ea(cpu, i), bit);
}

function bitOp(cpu: Cpu, i: Insn, bit: number): void {
  const size = i.opSize;
  let lo = readE(cpu, i, size);
  let hi = cpu.tmpHi;
  const inHi = bit >= 32;
  const mask = 1 << (bit & 31);
  const set = ((inHi ? hi : lo) & mask) !== 0;
  cpu.fA = (cpu.fA & ~RFLAGS_CF) | (set ? RFLAGS_CF : 0);
  if (i.cc === BT) return;
  let w = inHi ? hi : lo;
  w = i.cc === BTS ? w | mask : i.cc === BTR ? w & ~mask : w ^ mask;
  if (inHi) hi = w;
  else lo = w;
  writeE(cpu, i, size, lo, hi, true);
}

function memBitOp(cpu: Cpu, i: Insn, lin: number, bit: number): void {
  // Access the byte that holds the bit: the architectural result is identical.
  const byteLin = lin + (bit >> 3);
  const mask = 1 << (bit & 7);
  const v = cpu.read8(byteLin);
  const set = (v & mask) !== 0;
  if (i.cc !== BT) {
    const w = i.cc === BTS ? v | mask : i.cc === BTR ? v & ~mask : v ^ mask;
    cpu.write8(byteLin, w);
  }
  cpu.fA = (cpu.fA & ~RFLAGS_CF) | (set ? RFLAGS_CF : 0);
}

/** BSF G, E (0F BC) and BSR G, E (0F BD): `i.cc` 0 = forward, 1 = reverse. */
export function bsfBsr(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const lo = readE(cpu, i, size);
  const hi = size === 8 ? cpu.tmpHi : 0;
  const v = size === 1 ? lo & 0xff : size === 2 ? lo & 0xffff : lo;
  if ((v | hi) === 0) {
    cpu.fZ = 0;
    cpu.fA = 0;
    cpu.fS = 0;
    cpu.fP = 1;
    return;
  }
  let r: number;
  if (i.cc === 0) r = v !== 0 ? 31 - Math.clz32(v & -v) : 32 + 31 - Math.clz32(hi & -hi);
  else r = hi !== 0 ? 63 - Math.clz32(hi) : 31 - Math.clz32(v);
  writeReg(cpu, i.reg, i.rex, size, r, 0);
  cpu.fZ = 1;
  cpu.fA = 0;
  cpu.fS = 0;
  cpu.fP = r;
}

/** TZCNT (F3 0F BC) and LZCNT (F3 0F BD): `i.cc` 0 = trailing, 1 = leading. CF = (source = 0), ZF = (result = 0). */
export function tzcntLzcnt(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const bits = size * 8;
  const lo = readE(cpu, i, size);
  const hi = size === 8 ? cpu.tmpHi : 0;
  const v = size === 2 ? lo & 0xffff : lo;
  let r: number;
  if ((v | hi) === 0) r = bits;
  else if (i.cc === 0) r = v !== 0 ? 31 - Math.clz32(v & -v) : 32 + 31 - Math.clz32(hi & -hi);
  else if (size === 8) r = hi !== 0 ? Math.clz32(hi) : 32 + Math.clz32(v);
  else r = Math.clz32(v) - (32 - bits);
  writeReg(cpu, i.reg, i.rex, size, r, 0);
  cpu.fZ = r;
  cpu.fA = r === bits ? RFLAGS_CF : 0;
  cpu.fS = 0;
  cpu.fP = 1;
}

/** POPCNT G, E (F3 0F B8): ZF = (source = 0); CF, OF, SF, AF, PF cleared. */
export function popcnt(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const lo = readE(cpu, i, size);
  const hi = size === 8 ? cpu.tmpHi : 0;
  const r = count32(size === 2 ? lo & 0xffff : lo) + count32(hi);
  writeReg(cpu, i.reg, i.rex, size, r, 0);
  cpu.fZ = r;
  cpu.fA = 0;
  cpu.fS = 0;
  cpu.fP = 1; // PF = 0: an odd-parity byte
}

function count32(v: number): number {
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** BSWAP r32/r64 (0F C8+r). With a 16-bit operand the result is undefined; we clear the low word. */
export function bswap(cpu: Cpu, i: Insn): void {
  const r = i.rm;
  if (i.opSize === 8) {
    const lo = cpu.lo[r]!;
    cpu.lo[r] = swap(cpu.hi[r]!);
    cpu.hi[r] = swap(lo);
  } else if (i.opSize === 4) {
    cpu.setReg32(r, swap(cpu.lo[r]!));
  } else {
    cpu.setReg16(r, 0);
  }
}

function swap(v: number): number {
  return ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24);
}
