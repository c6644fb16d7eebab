/**
 * SSE2 integer instructions on XMM registers (SDM Vol. 2 under each mnemonic; Vol. 1 11.4.3):
 * wrapping and saturating add/subtract, compares, min/max, averages, the logical operations,
 * the multiplies, PMADDWD, PSADBW and the shifts. Lanes are read from the typed views of
 * `FpuState.xmmBuffer` as unsigned values and stored back through them (the store wraps).
 */
import type { Cpu } from "../cpu.js";
import type { Insn } from "../decode/insn.js";
import { SLOT_T, copySlot, sseAvailable, srcW128 } from "./sse.js";
import { satS16, satS8, satU16, satU8 } from "./sse-move.js";

/** Sub-operations of `intLanes` (cc = op * 4 + log2(element bytes)). */
export const IntOp = {
  ADD: 0,
  SUB: 1,
  ADDS: 2,
  ADDUS: 3,
  SUBS: 4,
  SUBUS: 5,
  CMPEQ: 6,
  CMPGT: 7,
  MINU: 8,
  MAXU: 9,
  MINS: 10,
  MAXS: 11,
  AVG: 12,
} as const;

function lane(op: number, a: number, b: number, bits: number): number {
  const sh = 32 - bits;
  switch (op) {
    case IntOp.ADD:
      return a + b;
    case IntOp.SUB:
      return a - b;
    case IntOp.ADDS: {
      const r = ((a << sh) >> sh) + ((b << sh) >> sh);
      return bits === 8 ? satS8(r) : satS16(r);
    }
    case IntOp.ADDUS:
      return bits === 8 ? satU8(a + b) : satU16(a + b);
    case IntOp.SUBS: {
      const r = ((a << sh) >> sh) - ((b << sh) >> sh);
      return bits === 8 ? satS8(r) : satS16(r);
    }
    case IntOp.SUBUS:
      return a > b ? a - b : 0;
    case IntOp.CMPEQ:
      return a === b ? -1 : 0;
    case IntOp.CMPGT:
      return (a << sh) >> sh > (b << sh) >> sh ? -1 : 0;
    case IntOp.MINU:
      return a < b ? a : b;
    case IntOp.MAXU:
      return a > b ? a : b;
    case IntOp.MINS:
      return (a << sh) >> sh < (b << sh) >> sh ? a : b;
    case IntOp.MAXS:
      return (a << sh) >> sh > (b << sh) >> sh ? a : b;
    default:
      return (a + b + 1) >>> 1; // AVG
  }
}

/**
 * The lane-wise operations (PADD*, PSUB*, PADDS*, PADDUS*, PSUBS*, PSUBUS*, PCMPEQ*, PCMPGT*,
 * PMINUB, PMAXUB, PMINSW, PMAXSW, PAVGB, PAVGW) xmm, xmm/m128.
 */
export function intLanes(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const s = srcW128(cpu, i, true);
  const op = i.cc >> 2;
  const lg = i.cc & 3;
  const f = cpu.fpu;
  if (lg === 0) {
    const b = f.xb;
    for (let k = 0; k < 16; k++) b[i.reg * 16 + k] = lane(op, b[i.reg * 16 + k]!, b[s * 16 + k]!, 8);
  } else if (lg === 1) {
    const w = f.xw;
    for (let k = 0; k < 8; k++) w[i.reg * 8 + k] = lane(op, w[i.reg * 8 + k]!, w[s * 8 + k]!, 16);
  } else if (lg === 2) {
    const d = f.xd;
    for (let k = 0; k < 4; k++) {
      const a = d[i.reg * 4 + k]!;
      const b = d[s * 4 + k]!;
      d[i.reg * 4 + k] = op === IntOp.ADD ? a + b : op === IntOp.SUB ? a - b : op === IntOp.CMPEQ ? (a === b ? -1 : 0) : a > b ? -1 : 0;
    }
  } else {
    // PADDQ / PSUBQ: 64-bit lanes from 32-bit halves.
    const d = f.xd;
    for (let k = 0; k < 4; k += 2) {
      const al = d[i.reg * 4 + k]! >>> 0;
      const bl = d[s * 4 + k]! >>> 0;
      const ah = d[i.reg * 4 + k + 1]!;
      const bh = d[s * 4 + k + 1]!;
      if (op === IntOp.ADD) {
        const lo = al + bl;
        d[i.reg * 4 + k] = lo;
        d[i.reg * 4 + k + 1] = ah + bh + (lo > 0xffff_ffff ? 1 : 0);
      } else {
        d[i.reg * 4 + k] = al - bl;
        d[i.reg * 4 + k + 1] = ah - bh - (al < bl ? 1 : 0);
      }
    }
  }
}

/** PAND (cc 0), PANDN (cc 1: NOT destination AND source), POR (cc 2), PXOR (cc 3); also ANDPS/ANDNPS/ORPS/XORPS and the PD forms. */
export function logic(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const s = srcW128(cpu, i, true);
  const d = cpu.fpu.xd;
  for (let k = 0; k < 4; k++) {
    const a = d[i.reg * 4 + k]!;
    const b = d[s * 4 + k]!;
    d[i.reg * 4 + k] = i.cc === 0 ? a & b : i.cc === 1 ? ~a & b : i.cc === 2 ? a | b : a ^ b;
  }
}

/** The high 32 bits of the 64-bit product of two unsigned 32-bit values, exactly. */
function mulHiU32(a: number, b: number): number {
  const p = (a & 0xffff) * b; // < 2^48
  const q = (a >>> 16) * b; // < 2^48
  return (Math.floor(q / 65536) + Math.floor(((q % 65536) * 65536 + p) / 4294967296)) | 0;
}

/** PMULLW (cc 0), PMULHW (1), PMULHUW (2), PMULUDQ (3), PMADDWD (4), PSADBW (5). */
export function pmul(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const s = srcW128(cpu, i, true);
  const f = cpu.fpu;
  const r = i.reg;
  if (i.cc <= 2) {
    const w = f.xw;
    for (let k = 0; k < 8; k++) {
      const a = w[r * 8 + k]!;
      const b = w[s * 8 + k]!;
      w[r * 8 + k] = i.cc === 0 ? Math.imul(a, b) : i.cc === 1 ? (((a << 16) >> 16) * ((b << 16) >> 16)) >> 16 : (a * b) >>> 16;
    }
  } else if (i.cc === 3) {
    const d = f.xd;
    for (let k = 0; k < 4; k += 2) {
      const a = d[r * 4 + k]! >>> 0;
      const b = d[s * 4 + k]! >>> 0;
      d[r * 4 + k] = Math.imul(a, b);
      d[r * 4 + k + 1] = mulHiU32(a, b);
    }
  } else if (i.cc === 4) {
    const w = f.xw;
    const t = SLOT_T * 4;
    const d = f.xd;
    for (let k = 0; k < 4; k++) {
      const p0 = ((w[r * 8 + 2 * k]! << 16) >> 16) * ((w[s * 8 + 2 * k]! << 16) >> 16);
      const p1 = ((w[r * 8 + 2 * k + 1]! << 16) >> 16) * ((w[s * 8 + 2 * k + 1]! << 16) >> 16);
      d[t + k] = (p0 + p1) | 0;
    }
    copySlot(cpu, r, SLOT_T);
  } else {
    const b = f.xb;
    const d = f.xd;
    for (let h = 0; h < 2; h++) {
      let sum = 0;
      for (let k = 0; k < 8; k++) sum += Math.abs(b[r * 16 + 8 * h + k]! - b[s * 16 + 8 * h + k]!);
      d[r * 4 + 2 * h] = sum;
      d[r * 4 + 2 * h + 1] = 0;
    }
  }
}

/** Shift kinds (cc = kind * 4 + log2(element bytes)). */
export const ShiftKind = { SRL: 0, SRA: 1, SLL: 2 } as const;

function shiftLanes(cpu: Cpu, reg: number, kind: number, lg: number, countLo: number, countHi: number): void {
  const f = cpu.fpu;
  const bits = 8 << lg;
  // A count above the element width (any high bit set counts) empties the lane, or fills it with the sign.
  const big = countHi !== 0 || countLo >>> 0 >= bits;
  const n = big ? bits : countLo;
  if (lg === 1) {
    const w = f.xw;
    for (let k = 0; k < 8; k++) {
      const a = w[reg * 8 + k]!;
      w[reg * 8 + k] = kind === ShiftKind.SRA ? ((a << 16) >> 16) >> (n > 15 ? 15 : n) : n > 15 ? 0 : kind === ShiftKind.SRL ? a >>> n : a << n;
    }
  } else if (lg === 2) {
    const d = f.xd;
    for (let k = 0; k < 4; k++) {
      const a = d[reg * 4 + k]!;
      d[reg * 4 + k] = kind === ShiftKind.SRA ? a >> (n > 31 ? 31 : n) : n > 31 ? 0 : kind === ShiftKind.SRL ? a >>> n : a << n;
    }
  } else {
    const d = f.xd;
    for (let k = 0; k < 4; k += 2) {
      const lo = d[reg * 4 + k]!;
      const hi = d[reg * 4 + k + 1]!;
      let rl: number;
      let rh: number;
      if (n > 63) {
        rl = 0;
        rh = 0;
      } else if (n === 0) {
        rl = lo;
        rh = hi;
      } else if (kind === ShiftKind.SRL) {
        if (n >= 32) {
          rl = hi >>> (n - 32);
          rh = 0;
        } else {
          rl = (lo >>> n) | (hi << (32 - n));
          rh = hi >>> n;
        }
      } else if (n >= 32) {
        rh = lo << (n - 32);
        rl = 0;
      } else {
        rh = (hi << n) | (lo >>> (32 - n));
        rl = lo << n;
      }
      d[reg * 4 + k] = rl;
      d[reg * 4 + k + 1] = rh;
    }
  }
}

/** PSRLW/D/Q, PSRAW/D, PSLLW/D/Q xmm, xmm/m128: the count is the source's low quadword. */
export function shiftByXmm(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const s = srcW128(cpu, i, true);
  const d = cpu.fpu.xd;
  shiftLanes(cpu, i.reg, i.cc >> 2, i.cc & 3, d[s * 4]!, d[s * 4 + 1]!);
}

/** PSRLW/D/Q, PSRAW/D, PSLLW/D/Q xmm, imm8 (66 0F 71/72/73 /2 /4 /6). */
export function shiftByImm(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  shiftLanes(cpu, i.rm, i.cc >> 2, i.cc & 3, i.imm & 0xff, 0);
}

/** PSRLDQ (cc 0) and PSLLDQ (cc 1) xmm, imm8 (66 0F 73 /3 /7): a byte shift of the whole register; a count above 15 clears it. */
export function shiftBytes(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const b = cpu.fpu.xb;
  const n = i.imm & 0xff;
  const r = i.rm * 16;
  const t = SLOT_T * 16;
  for (let k = 0; k < 16; k++) {
    const from = i.cc === 0 ? k + n : k - n;
    b[t + k] = from >= 0 && from < 16 ? b[r + from]! : 0;
  }
  copySlot(cpu, i.rm, SLOT_T);
}
