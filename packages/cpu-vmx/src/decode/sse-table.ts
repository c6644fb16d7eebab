/**
 * The SSE/SSE2 rows of the two-byte map (SDM Vol. 2D Appendix A, Table A-3): opcodes whose
 * meaning is chosen by a mandatory prefix. Each row names the instruction with no prefix, with
 * 66, with F3 and with F2 (as the SDM's table does); the decoder picks the column (F2/F3, the
 * last one given, win over 66) and the prefix is then consumed: it changes neither the operand
 * size nor the REP state. A missing column is #UD. The MMX forms (no prefix on the integer rows)
 * are not modelled: MMX is not implemented (CPUID does not report it), so they are #UD.
 *
 * Operand notation (SDM A.2): V = ModRM.reg XMM, W = XMM or memory, U = XMM from ModRM.rm (a
 * register form only), M = memory only, E = general register or memory, G = general register,
 * R = general register from ModRM.rm; ps/pd/ss/sd/dq/q/d/y as in the SDM.
 */
import type { Handler } from "./insn.js";
import { F_IMM8, F_MEM, F_MODRM, type OpSpec } from "./table.js";
import * as mv from "../exec/sse-move.js";
import * as int from "../exec/sse-int.js";
import { IntOp, ShiftKind } from "../exec/sse-int.js";
import * as fp from "../exec/sse-fp.js";
import { Cvt, FP_DOUBLE, FP_SCALAR, FpOp } from "../exec/sse-fp.js";

/**
 * The r/m operand must be a register (a memory form is #UD). A high bit, apart from the main
 * table's flags, so the two tables can grow independently.
 */
export const F_REGONLY = 1 << 28;
/** The row's operand size is 32, or 64 with REX.W in 64-bit mode (the 66 prefix is mandatory, not a size). */
export const F_SSE = 1 << 29;

/** One prefix column: an instruction, or a group of eight selected by ModRM.reg. */
export type SseForm = OpSpec | readonly (OpSpec | undefined)[];

export interface SseRow {
  readonly none?: SseForm;
  readonly p66?: SseForm;
  readonly f3?: SseForm;
  readonly f2?: SseForm;
}

/** 0F opcode (0x100 + second byte) -> its prefix columns. */
export const SSE_OPCODES = new Map<number, SseRow>();

function op(mnemonic: string, operands: string, exec: Handler, flags = 0, cc = 0): OpSpec {
  return { mnemonic, operands, exec, flags: flags | F_MODRM | F_SSE, cc };
}

function row(second: number, r: SseRow): void {
  const opcode = 0x100 | second;
  if (SSE_OPCODES.has(opcode)) throw new Error(`SSE decode table: 0F ${second.toString(16)} defined twice`);
  SSE_OPCODES.set(opcode, r);
}

export function isSseGroup(f: SseForm): f is readonly (OpSpec | undefined)[] {
  return Array.isArray(f);
}

// ---- Data movement ----
row(0x10, {
  none: op("movups", "Vps,Wps", mv.movVW, 0, 0),
  p66: op("movupd", "Vpd,Wpd", mv.movVW, 0, 0),
  f3: op("movss", "Vss,Wss", mv.movssVW),
  f2: op("movsd", "Vsd,Wsd", mv.movsdVW),
});
row(0x11, {
  none: op("movups", "Wps,Vps", mv.movWV, 0, 0),
  p66: op("movupd", "Wpd,Vpd", mv.movWV, 0, 0),
  f3: op("movss", "Wss,Vss", mv.movssWV),
  f2: op("movsd", "Wsd,Vsd", mv.movqWV, 0, 0),
});
row(0x12, { none: op("movlps", "Vq,Mq|movhlps Vq,Uq", mv.movHalfV, 0, 0), p66: op("movlpd", "Vq,Mq", mv.movHalfV, F_MEM, 0) });
row(0x13, { none: op("movlps", "Mq,Vq", mv.movqWV, F_MEM, 0), p66: op("movlpd", "Mq,Vq", mv.movqWV, F_MEM, 0) });
row(0x14, { none: op("unpcklps", "Vps,Wps", mv.unpck, 0, 0), p66: op("unpcklpd", "Vpd,Wpd", mv.unpck, 0, 2) });
row(0x15, { none: op("unpckhps", "Vps,Wps", mv.unpck, 0, 1), p66: op("unpckhpd", "Vpd,Wpd", mv.unpck, 0, 3) });
row(0x16, { none: op("movhps", "Vq,Mq|movlhps Vq,Uq", mv.movHalfV, 0, 1), p66: op("movhpd", "Vq,Mq", mv.movHalfV, F_MEM, 1) });
row(0x17, { none: op("movhps", "Mq,Vq", mv.movqWV, F_MEM, 2), p66: op("movhpd", "Mq,Vq", mv.movqWV, F_MEM, 2) });
row(0x28, { none: op("movaps", "Vps,Wps", mv.movVW, 0, 1), p66: op("movapd", "Vpd,Wpd", mv.movVW, 0, 1) });
row(0x29, { none: op("movaps", "Wps,Vps", mv.movWV, 0, 1), p66: op("movapd", "Wpd,Vpd", mv.movWV, 0, 1) });
row(0x2b, { none: op("movntps", "Mps,Vps", mv.movWV, F_MEM, 1), p66: op("movntpd", "Mpd,Vpd", mv.movWV, F_MEM, 1) });
row(0x50, { none: op("movmskps", "Gd,Ups", mv.movmsk, F_REGONLY, 4), p66: op("movmskpd", "Gd,Upd", mv.movmsk, F_REGONLY, 2) });
row(0x6e, { p66: op("movd", "Vy,Ey|movq Vq,Eq", mv.movdVE) });
row(0x6f, { p66: op("movdqa", "Vdq,Wdq", mv.movVW, 0, 1), f3: op("movdqu", "Vdq,Wdq", mv.movVW, 0, 0) });
row(0x70, { p66: op("pshufd", "Vdq,Wdq,Ib", mv.pshuf, F_IMM8, 0), f2: op("pshuflw", "Vdq,Wdq,Ib", mv.pshuf, F_IMM8, 1), f3: op("pshufhw", "Vdq,Wdq,Ib", mv.pshuf, F_IMM8, 2) });
row(0x7e, { p66: op("movd", "Ey,Vy|movq Eq,Vq", mv.movdEV), f3: op("movq", "Vq,Wq", mv.movqVW) });
row(0x7f, { p66: op("movdqa", "Wdq,Vdq", mv.movWV, 0, 1), f3: op("movdqu", "Wdq,Vdq", mv.movWV, 0, 0) });
row(0xc3, { none: op("movnti", "My,Gy", mv.movnti, F_MEM) });
row(0xc4, { p66: op("pinsrw", "Vdq,Ry/Mw,Ib", mv.pinsrw, F_IMM8) });
row(0xc5, { p66: op("pextrw", "Gd,Udq,Ib", mv.pextrw, F_IMM8 | F_REGONLY) });
row(0xc6, { none: op("shufps", "Vps,Wps,Ib", mv.shufp, F_IMM8, 0), p66: op("shufpd", "Vpd,Wpd,Ib", mv.shufp, F_IMM8, 1) });
row(0xd6, { p66: op("movq", "Wq,Vq", mv.movqWV, 0, 1) });
row(0xd7, { p66: op("pmovmskb", "Gd,Udq", mv.pmovmskb, F_REGONLY) });
row(0xe7, { p66: op("movntdq", "Mdq,Vdq", mv.movWV, F_MEM, 1) });
row(0xf7, { p66: op("maskmovdqu", "Vdq,Udq", mv.maskmovdqu, F_REGONLY) });

// PUNPCKL/H BW, WD, DQ (66 0F 60-62, 68-6A), PUNPCKLQDQ/HQDQ (66 0F 6C/6D); PACK* (63, 67, 6B).
const UNPCK: readonly [number, string, number][] = [
  [0x60, "punpcklbw", 4],
  [0x61, "punpcklwd", 6],
  [0x62, "punpckldq", 8],
  [0x68, "punpckhbw", 5],
  [0x69, "punpckhwd", 7],
  [0x6a, "punpckhdq", 9],
  [0x6c, "punpcklqdq", 10],
  [0x6d, "punpckhqdq", 11],
];
for (const [b, m, cc] of UNPCK) row(b, { p66: op(m, "Vdq,Wdq", mv.unpck, 0, cc) });
row(0x63, { p66: op("packsswb", "Vdq,Wdq", mv.pack, 0, 0) });
row(0x67, { p66: op("packuswb", "Vdq,Wdq", mv.pack, 0, 1) });
row(0x6b, { p66: op("packssdw", "Vdq,Wdq", mv.pack, 0, 2) });

// ---- SSE2 integer ----
const LANES: readonly [number, string, number, number][] = [
  [0x64, "pcmpgtb", IntOp.CMPGT, 0],
  [0x65, "pcmpgtw", IntOp.CMPGT, 1],
  [0x66, "pcmpgtd", IntOp.CMPGT, 2],
  [0x74, "pcmpeqb", IntOp.CMPEQ, 0],
  [0x75, "pcmpeqw", IntOp.CMPEQ, 1],
  [0x76, "pcmpeqd", IntOp.CMPEQ, 2],
  [0xd4, "paddq", IntOp.ADD, 3],
  [0xd8, "psubusb", IntOp.SUBUS, 0],
  [0xd9, "psubusw", IntOp.SUBUS, 1],
  [0xda, "pminub", IntOp.MINU, 0],
  [0xdc, "paddusb", IntOp.ADDUS, 0],
  [0xdd, "paddusw", IntOp.ADDUS, 1],
  [0xde, "pmaxub", IntOp.MAXU, 0],
  [0xe0, "pavgb", IntOp.AVG, 0],
  [0xe3, "pavgw", IntOp.AVG, 1],
  [0xe8, "psubsb", IntOp.SUBS, 0],
  [0xe9, "psubsw", IntOp.SUBS, 1],
  [0xea, "pminsw", IntOp.MINS, 1],
  [0xec, "paddsb", IntOp.ADDS, 0],
  [0xed, "paddsw", IntOp.ADDS, 1],
  [0xee, "pmaxsw", IntOp.MAXS, 1],
  [0xf8, "psubb", IntOp.SUB, 0],
  [0xf9, "psubw", IntOp.SUB, 1],
  [0xfa, "psubd", IntOp.SUB, 2],
  [0xfb, "psubq", IntOp.SUB, 3],
  [0xfc, "paddb", IntOp.ADD, 0],
  [0xfd, "paddw", IntOp.ADD, 1],
  [0xfe, "paddd", IntOp.ADD, 2],
];
for (const [b, m, o, lg] of LANES) row(b, { p66: op(m, "Vdq,Wdq", int.intLanes, 0, o * 4 + lg) });
// ANDPS/ANDPD, ANDNPS/ANDNPD, ORPS/ORPD, XORPS/XORPD: bitwise, no floating-point exceptions.
row(0x54, { none: op("andps", "Vps,Wps", int.logic, 0, 0), p66: op("andpd", "Vpd,Wpd", int.logic, 0, 0) });
row(0x55, { none: op("andnps", "Vps,Wps", int.logic, 0, 1), p66: op("andnpd", "Vpd,Wpd", int.logic, 0, 1) });
row(0x56, { none: op("orps", "Vps,Wps", int.logic, 0, 2), p66: op("orpd", "Vpd,Wpd", int.logic, 0, 2) });
row(0x57, { none: op("xorps", "Vps,Wps", int.logic, 0, 3), p66: op("xorpd", "Vpd,Wpd", int.logic, 0, 3) });
row(0xdb, { p66: op("pand", "Vdq,Wdq", int.logic, 0, 0) });
row(0xdf, { p66: op("pandn", "Vdq,Wdq", int.logic, 0, 1) });
row(0xeb, { p66: op("por", "Vdq,Wdq", int.logic, 0, 2) });
row(0xef, { p66: op("pxor", "Vdq,Wdq", int.logic, 0, 3) });
row(0xd5, { p66: op("pmullw", "Vdq,Wdq", int.pmul, 0, 0) });
row(0xe5, { p66: op("pmulhw", "Vdq,Wdq", int.pmul, 0, 1) });
row(0xe4, { p66: op("pmulhuw", "Vdq,Wdq", int.pmul, 0, 2) });
row(0xf4, { p66: op("pmuludq", "Vdq,Wdq", int.pmul, 0, 3) });
row(0xf5, { p66: op("pmaddwd", "Vdq,Wdq", int.pmul, 0, 4) });
row(0xf6, { p66: op("psadbw", "Vdq,Wdq", int.pmul, 0, 5) });
const SHIFTS: readonly [number, string, number, number][] = [
  [0xd1, "psrlw", ShiftKind.SRL, 1],
  [0xd2, "psrld", ShiftKind.SRL, 2],
  [0xd3, "psrlq", ShiftKind.SRL, 3],
  [0xe1, "psraw", ShiftKind.SRA, 1],
  [0xe2, "psrad", ShiftKind.SRA, 2],
  [0xf1, "psllw", ShiftKind.SLL, 1],
  [0xf2, "pslld", ShiftKind.SLL, 2],
  [0xf3, "psllq", ShiftKind.SLL, 3],
];
for (const [b, m, k, lg] of SHIFTS) row(b, { p66: op(m, "Vdq,Wdq", int.shiftByXmm, 0, k * 4 + lg) });
const shImm = (m: string, k: number, lg: number) => op(m, "Udq,Ib", int.shiftByImm, F_IMM8 | F_REGONLY, k * 4 + lg);
row(0x71, { p66: [undefined, undefined, shImm("psrlw", ShiftKind.SRL, 1), undefined, shImm("psraw", ShiftKind.SRA, 1), undefined, shImm("psllw", ShiftKind.SLL, 1), undefined] });
row(0x72, { p66: [undefined, undefined, shImm("psrld", ShiftKind.SRL, 2), undefined, shImm("psrad", ShiftKind.SRA, 2), undefined, shImm("pslld", ShiftKind.SLL, 2), undefined] });
row(0x73, {
  p66: [
    undefined,
    undefined,
    shImm("psrlq", ShiftKind.SRL, 3),
    op("psrldq", "Udq,Ib", int.shiftBytes, F_IMM8 | F_REGONLY, 0),
    undefined,
    undefined,
    shImm("psllq", ShiftKind.SLL, 3),
    op("pslldq", "Udq,Ib", int.shiftBytes, F_IMM8 | F_REGONLY, 1),
  ],
});

// ---- Floating point ----
const ARITH: readonly [number, string, number][] = [
  [0x51, "sqrt", FpOp.SQRT],
  [0x58, "add", FpOp.ADD],
  [0x59, "mul", FpOp.MUL],
  [0x5c, "sub", FpOp.SUB],
  [0x5d, "min", FpOp.MIN],
  [0x5e, "div", FpOp.DIV],
  [0x5f, "max", FpOp.MAX],
];
for (const [b, m, o] of ARITH) {
  row(b, {
    none: op(`${m}ps`, "Vps,Wps", fp.fpArith, 0, o),
    p66: op(`${m}pd`, "Vpd,Wpd", fp.fpArith, 0, o | FP_DOUBLE),
    f3: op(`${m}ss`, "Vss,Wss", fp.fpArith, 0, o | FP_SCALAR),
    f2: op(`${m}sd`, "Vsd,Wsd", fp.fpArith, 0, o | FP_DOUBLE | FP_SCALAR),
  });
}
row(0x52, { none: op("rsqrtps", "Vps,Wps", fp.fpArith, 0, FpOp.RSQRT), f3: op("rsqrtss", "Vss,Wss", fp.fpArith, 0, FpOp.RSQRT | FP_SCALAR) });
row(0x53, { none: op("rcpps", "Vps,Wps", fp.fpArith, 0, FpOp.RCP), f3: op("rcpss", "Vss,Wss", fp.fpArith, 0, FpOp.RCP | FP_SCALAR) });
row(0xc2, {
  none: op("cmpps", "Vps,Wps,Ib", fp.fpCmp, F_IMM8, 0),
  p66: op("cmppd", "Vpd,Wpd,Ib", fp.fpCmp, F_IMM8, FP_DOUBLE),
  f3: op("cmpss", "Vss,Wss,Ib", fp.fpCmp, F_IMM8, FP_SCALAR),
  f2: op("cmpsd", "Vsd,Wsd,Ib", fp.fpCmp, F_IMM8, FP_DOUBLE | FP_SCALAR),
});
row(0x2e, { none: op("ucomiss", "Vss,Wss", fp.comis, 0, 0), p66: op("ucomisd", "Vsd,Wsd", fp.comis, 0, FP_DOUBLE) });
row(0x2f, { none: op("comiss", "Vss,Wss", fp.comis, 0, 1), p66: op("comisd", "Vsd,Wsd", fp.comis, 0, FP_DOUBLE | 1) });
row(0x2a, { f3: op("cvtsi2ss", "Vss,Ey", fp.cvtsi2s, 0, Cvt.SI2SS), f2: op("cvtsi2sd", "Vsd,Ey", fp.cvtsi2s, 0, Cvt.SI2SD) });
row(0x2c, { f3: op("cvttss2si", "Gy,Wss", fp.cvts2si, 0, Cvt.TSS2SI), f2: op("cvttsd2si", "Gy,Wsd", fp.cvts2si, 0, Cvt.TSD2SI) });
row(0x2d, { f3: op("cvtss2si", "Gy,Wss", fp.cvts2si, 0, Cvt.SS2SI), f2: op("cvtsd2si", "Gy,Wsd", fp.cvts2si, 0, Cvt.SD2SI) });
row(0x5a, {
  none: op("cvtps2pd", "Vpd,Wps", fp.cvtXmm, 0, Cvt.PS2PD),
  p66: op("cvtpd2ps", "Vps,Wpd", fp.cvtXmm, 0, Cvt.PD2PS),
  f3: op("cvtss2sd", "Vsd,Wss", fp.cvtXmm, 0, Cvt.SS2SD),
  f2: op("cvtsd2ss", "Vss,Wsd", fp.cvtXmm, 0, Cvt.SD2SS),
});
row(0x5b, {
  none: op("cvtdq2ps", "Vps,Wdq", fp.cvtXmm, 0, Cvt.DQ2PS),
  p66: op("cvtps2dq", "Vdq,Wps", fp.cvtXmm, 0, Cvt.PS2DQ),
  f3: op("cvttps2dq", "Vdq,Wps", fp.cvtXmm, 0, Cvt.TPS2DQ),
});
row(0xe6, {
  p66: op("cvttpd2dq", "Vdq,Wpd", fp.cvtXmm, 0, Cvt.TPD2DQ),
  f3: op("cvtdq2pd", "Vpd,Wq", fp.cvtXmm, 0, Cvt.DQ2PD),
  f2: op("cvtpd2dq", "Vdq,Wpd", fp.cvtXmm, 0, Cvt.PD2DQ),
});
