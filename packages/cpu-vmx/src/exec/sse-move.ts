/**
 * SSE/SSE2 data movement (SDM Vol. 2 under each mnemonic): the full-register moves, the scalar
 * and half-register moves, MOVD/MOVQ, the sign-mask extractions, the non-temporal stores,
 * MASKMOVDQU, the unpacks and shuffles of both domains, PACK*, PINSRW/PEXTRW.
 *
 * Modelled more simply: the non-temporal hints (MOVNT*, MASKMOVDQU) are ordinary stores (there
 * are no caches or write-combining buffers to bypass).
 */
import { Access } from "@vtlab/arch";
import type { Cpu } from "../cpu.js";
import type { Insn } from "../decode/insn.js";
import { CR0_PG } from "../regs.js";
import { ea, readReg, writeReg } from "./operands.js";
import { SLOT_T, copySlot, ea128, linAdd, read128, sseAvailable, srcW128, srcW64, write128 } from "./sse.js";

/**
 * MOVUPS/MOVUPD/MOVDQU (cc 0) and MOVAPS/MOVAPD/MOVDQA (cc 1) xmm, xmm/m128 (0F 10, 0F 28,
 * F3/66 0F 6F): the aligned forms #GP(0) on a memory operand not 16-byte aligned.
 */
export function movVW(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  if (i.isMem) read128(cpu, ea128(cpu, i, i.cc === 1), i.reg);
  else copySlot(cpu, i.reg, i.rm);
}

/**
 * The stores xmm/m128, xmm: MOVUPS/MOVUPD/MOVDQU (cc 0), MOVAPS/MOVAPD/MOVDQA and the
 * non-temporal MOVNTPS/MOVNTPD/MOVNTDQ (cc 1, aligned; the MOVNT forms are memory-only).
 */
export function movWV(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  if (i.isMem) write128(cpu, ea128(cpu, i, i.cc === 1), i.reg);
  else copySlot(cpu, i.rm, i.reg);
}

/** MOVSS xmm, xmm/m32 (F3 0F 10): a register source moves the low doubleword; m32 zeroes bits 127:32. */
export function movssVW(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const d = cpu.fpu.xd;
  const k = i.reg * 4;
  if (i.isMem) {
    d[k] = cpu.read32(ea(cpu, i));
    d[k + 1] = 0;
    d[k + 2] = 0;
    d[k + 3] = 0;
  } else d[k] = d[i.rm * 4]!;
}

/** MOVSD xmm, xmm/m64 (F2 0F 10): a register source moves the low quadword; m64 zeroes bits 127:64. */
export function movsdVW(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const d = cpu.fpu.xd;
  const k = i.reg * 4;
  if (i.isMem) {
    d[k] = cpu.read64(ea(cpu, i));
    d[k + 1] = cpu.tmpHi;
    d[k + 2] = 0;
    d[k + 3] = 0;
  } else {
    d[k] = d[i.rm * 4]!;
    d[k + 1] = d[i.rm * 4 + 1]!;
  }
}

/** MOVSS xmm/m32, xmm (F3 0F 11). */
export function movssWV(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const d = cpu.fpu.xd;
  if (i.isMem) cpu.write32(ea(cpu, i), d[i.reg * 4]!);
  else d[i.rm * 4] = d[i.reg * 4]!;
}

/**
 * The 64-bit stores xmm/m64, xmm: MOVSD (F2 0F 11, cc 0: a register destination keeps its high
 * quadword), MOVQ (66 0F D6, cc 1: a register destination's high quadword is zeroed), MOVLPS/
 * MOVLPD (0F 13, memory only, cc 0) and MOVHPS/MOVHPD (0F 17, memory only, cc 2: the high quadword).
 */
export function movqWV(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const d = cpu.fpu.xd;
  const k = i.reg * 4 + (i.cc === 2 ? 2 : 0);
  if (i.isMem) {
    cpu.write64(ea(cpu, i), d[k]!, d[k + 1]!);
    return;
  }
  const t = i.rm * 4;
  d[t] = d[k]!;
  d[t + 1] = d[k + 1]!;
  if (i.cc === 1) {
    d[t + 2] = 0;
    d[t + 3] = 0;
  }
}

/**
 * The half-register loads: cc 0 low quadword (MOVLPS/MOVLPD m64, or MOVHLPS with a register:
 * the source's high quadword), cc 1 high quadword (MOVHPS/MOVHPD m64, or MOVLHPS: the source's
 * low quadword) (0F 12, 0F 16 and their 66 forms).
 */
export function movHalfV(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const d = cpu.fpu.xd;
  const k = i.reg * 4 + (i.cc === 1 ? 2 : 0);
  if (i.isMem) {
    d[k] = cpu.read64(ea(cpu, i));
    d[k + 1] = cpu.tmpHi;
    return;
  }
  const s = i.rm * 4 + (i.cc === 1 ? 0 : 2);
  d[k] = d[s]!;
  d[k + 1] = d[s + 1]!;
}

/** MOVD/MOVQ xmm, r/m32/64 (66 [REX.W] 0F 6E): the value zero-extended to 128 bits. */
export function movdVE(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const d = cpu.fpu.xd;
  const k = i.reg * 4;
  let lo: number;
  let hi = 0;
  if (i.isMem) {
    const at = ea(cpu, i);
    if (i.opSize === 8) {
      lo = cpu.read64(at);
      hi = cpu.tmpHi;
    } else lo = cpu.read32(at);
  } else {
    lo = cpu.lo[i.rm]!;
    if (i.opSize === 8) hi = cpu.hi[i.rm]!;
  }
  d[k] = lo;
  d[k + 1] = hi;
  d[k + 2] = 0;
  d[k + 3] = 0;
}

/** MOVD/MOVQ r/m32/64, xmm (66 [REX.W] 0F 7E): a 32-bit register destination is zero-extended. */
export function movdEV(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const d = cpu.fpu.xd;
  const k = i.reg * 4;
  if (i.isMem) {
    const at = ea(cpu, i);
    if (i.opSize === 8) cpu.write64(at, d[k]!, d[k + 1]!);
    else cpu.write32(at, d[k]!);
  } else {
    cpu.lo[i.rm] = d[k]!;
    cpu.hi[i.rm] = i.opSize === 8 ? d[k + 1]! : 0;
  }
}

/** MOVQ xmm, xmm/m64 (F3 0F 7E): the low quadword, bits 127:64 zeroed. */
export function movqVW(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const s = srcW64(cpu, i);
  const d = cpu.fpu.xd;
  const k = i.reg * 4;
  d[k] = d[s * 4]!;
  d[k + 1] = d[s * 4 + 1]!;
  d[k + 2] = 0;
  d[k + 3] = 0;
}

/** MOVNTI m32/64, r32/64 (0F C3): an ordinary store here. */
export function movnti(cpu: Cpu, i: Insn): void {
  // MOVNTI is an SSE2 instruction that uses no XMM state: no CR0.TS/OSFXSR checks (SDM: #UD
  // only without CPUID.SSE2, and for a register destination).
  const at = ea(cpu, i);
  const v = readReg(cpu, i.reg, i.rex, i.opSize);
  if (i.opSize === 8) cpu.write64(at, v, cpu.tmpHi);
  else cpu.write32(at, v);
}

/** MOVMSKPS (cc 4: four doubleword signs), MOVMSKPD (cc 2: two quadword signs) r32/64, xmm (0F 50). */
export function movmsk(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const d = cpu.fpu.xd;
  const k = i.rm * 4;
  const m = i.cc === 4 ? (d[k]! >>> 31) | ((d[k + 1]! >>> 31) << 1) | ((d[k + 2]! >>> 31) << 2) | ((d[k + 3]! >>> 31) << 3) : (d[k + 1]! >>> 31) | ((d[k + 3]! >>> 31) << 1);
  cpu.lo[i.reg] = m;
  cpu.hi[i.reg] = 0;
}

/** PMOVMSKB r32/64, xmm (66 0F D7): the sign bit of each byte. */
export function pmovmskb(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const b = cpu.fpu.xb;
  const k = i.rm * 16;
  let m = 0;
  for (let j = 15; j >= 0; j--) m = (m << 1) | (b[k + j]! >>> 7);
  cpu.lo[i.reg] = m;
  cpu.hi[i.reg] = 0;
}

/**
 * MASKMOVDQU xmm1, xmm2 (66 0F F7): the bytes of xmm1 whose mask byte in xmm2 has its top bit
 * set are stored at DS:rDI (a segment override applies). The pages of the first and last
 * selected bytes are translated for writing before any byte is written (all or nothing); an
 * all-zero mask touches no memory and raises nothing (the SDM leaves faults then to the
 * implementation).
 */
export function maskmovdqu(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const b = cpu.fpu.xb;
  const m = i.rm * 16;
  let first = -1;
  let last = -1;
  for (let j = 0; j < 16; j++) {
    if ((b[m + j]! & 0x80) !== 0) {
      if (first < 0) first = j;
      last = j;
    }
  }
  if (first < 0) return;
  const off = i.addrSize === 8 ? cpu.regAddr(7) : i.addrSize === 4 ? cpu.lo[7]! >>> 0 : cpu.lo[7]! & 0xffff;
  const base = cpu.linear(i.seg, off);
  if ((cpu.cr0 & CR0_PG) !== 0) {
    cpu.translate(linAdd(cpu, base, first), Access.Write);
    cpu.translate(linAdd(cpu, base, last), Access.Write);
  }
  const v = i.reg * 16;
  for (let j = first; j <= last; j++) if ((b[m + j]! & 0x80) !== 0) cpu.write8(linAdd(cpu, base, j), b[v + j]!);
}

/**
 * UNPCKLPS (cc 0), UNPCKHPS (cc 1), UNPCKLPD (cc 2), UNPCKHPD (cc 3) and the integer
 * interleaves PUNPCKL/H BW, WD, DQ, QDQ (cc = 4 + 2 * log2(element bytes) + high):
 * elements of the destination's and the source's low (or high) halves, alternating.
 */
export function unpck(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const s = srcW128(cpu, i, true);
  let size: number;
  let high: number;
  if (i.cc < 4) {
    size = i.cc < 2 ? 4 : 8;
    high = i.cc & 1;
  } else {
    size = 1 << ((i.cc - 4) >> 1);
    high = (i.cc - 4) & 1;
  }
  const b = cpu.fpu.xb;
  const dv = i.reg * 16;
  const sv = s * 16;
  const t = SLOT_T * 16;
  const half = high * 8;
  for (let e = 0; e < 8 / size; e++) {
    for (let k = 0; k < size; k++) {
      b[t + 2 * e * size + k] = b[dv + half + e * size + k]!;
      b[t + (2 * e + 1) * size + k] = b[sv + half + e * size + k]!;
    }
  }
  copySlot(cpu, i.reg, SLOT_T);
}

/** SHUFPS (cc 0) and SHUFPD (cc 1) xmm, xmm/m128, imm8: the low half from the destination, the high from the source. */
export function shufp(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const s = srcW128(cpu, i, true);
  const d = cpu.fpu.xd;
  const dv = i.reg * 4;
  const sv = s * 4;
  const t = SLOT_T * 4;
  const imm = i.imm;
  if (i.cc === 0) {
    d[t] = d[dv + (imm & 3)]!;
    d[t + 1] = d[dv + ((imm >> 2) & 3)]!;
    d[t + 2] = d[sv + ((imm >> 4) & 3)]!;
    d[t + 3] = d[sv + ((imm >> 6) & 3)]!;
  } else {
    const a = dv + (imm & 1) * 2;
    const c = sv + ((imm >> 1) & 1) * 2;
    d[t] = d[a]!;
    d[t + 1] = d[a + 1]!;
    d[t + 2] = d[c]!;
    d[t + 3] = d[c + 1]!;
  }
  copySlot(cpu, i.reg, SLOT_T);
}

/** PSHUFD (cc 0), PSHUFLW (cc 1), PSHUFHW (cc 2) xmm, xmm/m128, imm8 (66/F2/F3 0F 70). */
export function pshuf(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const s = srcW128(cpu, i, true);
  const imm = i.imm;
  if (i.cc === 0) {
    const d = cpu.fpu.xd;
    const sv = s * 4;
    const t = SLOT_T * 4;
    for (let k = 0; k < 4; k++) d[t + k] = d[sv + ((imm >> (2 * k)) & 3)]!;
  } else {
    const w = cpu.fpu.xw;
    const sv = s * 8;
    const t = SLOT_T * 8;
    const moved = i.cc === 1 ? 0 : 4;
    const kept = 4 - moved;
    for (let k = 0; k < 4; k++) {
      w[t + moved + k] = w[sv + moved + ((imm >> (2 * k)) & 3)]!;
      w[t + kept + k] = w[sv + kept + k]!;
    }
  }
  copySlot(cpu, i.reg, SLOT_T);
}

/** PACKSSWB (cc 0), PACKUSWB (cc 1), PACKSSDW (cc 2): the destination's then the source's elements, saturated. */
export function pack(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const s = srcW128(cpu, i, true);
  const f = cpu.fpu;
  if (i.cc === 2) {
    const d = f.xd;
    const w = f.xw;
    const t = SLOT_T * 8;
    for (let k = 0; k < 4; k++) {
      w[t + k] = satS16(d[i.reg * 4 + k]!);
      w[t + 4 + k] = satS16(d[s * 4 + k]!);
    }
  } else {
    const w = f.xw;
    const b = f.xb;
    const t = SLOT_T * 16;
    const unsigned = i.cc === 1;
    for (let k = 0; k < 8; k++) {
      const x = (w[i.reg * 8 + k]! << 16) >> 16;
      const y = (w[s * 8 + k]! << 16) >> 16;
      b[t + k] = unsigned ? satU8(x) : satS8(x);
      b[t + 8 + k] = unsigned ? satU8(y) : satS8(y);
    }
  }
  copySlot(cpu, i.reg, SLOT_T);
}

export function satS8(x: number): number {
  return x > 127 ? 127 : x < -128 ? -128 : x;
}
export function satU8(x: number): number {
  return x > 255 ? 255 : x < 0 ? 0 : x;
}
export function satS16(x: number): number {
  return x > 32767 ? 32767 : x < -32768 ? -32768 : x;
}
export function satU16(x: number): number {
  return x > 65535 ? 65535 : x < 0 ? 0 : x;
}

/** PINSRW xmm, r32/m16, imm8 (66 0F C4): word imm8[2:0] from the low word of the source. */
export function pinsrw(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const v = i.isMem ? cpu.read16(ea(cpu, i)) : cpu.lo[i.rm]!;
  cpu.fpu.xw[i.reg * 8 + (i.imm & 7)] = v;
}

/** PEXTRW r32/64, xmm, imm8 (66 0F C5): word imm8[2:0], zero-extended. */
export function pextrw(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  writeReg(cpu, i.reg, i.rex, 8, cpu.fpu.xw[i.rm * 8 + (i.imm & 7)]!, 0);
}
