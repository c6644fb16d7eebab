/**
 * The decoder: prefixes, REX, opcode maps, ModRM/SIB, displacements and immediates (SDM Vol. 2A
 * ch. 2), driven by the decode table. It reads code bytes through the CPU (so a fetch from a
 * non-present page is a #PF at the right byte) and returns an `Insn` whose handler was chosen
 * here. Over-long instructions (> 15 bytes) are #GP(0). 16-bit addressing (a 16-bit code segment,
 * or 67 in 32-bit code) uses the 16-bit ModRM forms of SDM Vol. 2A Table 2-1.
 */
import { Vector } from "@vtlab/arch";
import type { Cpu } from "../cpu.js";
import { wrap64 } from "../cpu/int64.js";
import { Seg } from "../regs.js";
import { ud } from "../exec/system.js";
import { specialize } from "../exec/fast.js";
import { Insn } from "./insn.js";
import {
  F3_VARIANTS,
  F_BYTE,
  F_D64,
  F_ENTER,
  F_F64,
  F_FARPTR,
  F_IMM16,
  F_LOCKABLE,
  F_IMM8,
  F_IMM8S,
  F_IMMV,
  F_IMMZ,
  F_MEM,
  F_MODRM,
  F_MOFFS,
  F_NATIVE,
  F_NO64,
  F_ONLY64,
  F_OPREG,
  F_REL8,
  F_RELZ,
  F_RMREG,
  F_STRING,
  OPCODES,
  type OpSpec,
  isGroup,
} from "./table.js";
import { F_REGONLY, F_SSE, SSE_OPCODES, isSseGroup } from "./sse-table.js";

/** The architectural limit on an instruction's length: a longer one is #GP(0) (SDM Vol. 2A 2.3.11). */
export const MAX_INSTRUCTION_LENGTH = 15;
/** Control registers MOV CR can name (SDM "MOV--Move to/from Control Registers"). */
const VALID_CR: ReadonlySet<number> = new Set([0, 2, 3, 4, 8]);

/** What the decoder needs of a CPU: the code-size mode, a byte fetch, and a way to fault. */
export type DecodeSource = Pick<Cpu, "mode64" | "csD" | "fetchByte" | "fault">;

/** Reads instruction bytes; counts them so length limits and Insn.len come out right. */
class ByteSource {
  cpu!: DecodeSource;
  start = 0;
  len = 0;
  bytes: number[] = [];

  reset(cpu: DecodeSource, start: number): void {
    this.cpu = cpu;
    this.start = start;
    this.len = 0;
    this.bytes.length = 0;
  }

  next(): number {
    if (this.len >= MAX_INSTRUCTION_LENGTH) this.cpu.fault(Vector.GP, 0);
    const at = this.cpu.mode64 ? wrap64(this.start + this.len) : (this.start + this.len) >>> 0;
    const b = this.cpu.fetchByte(at);
    this.len++;
    this.bytes.push(b);
    return b;
  }

  s8(): number {
    return (this.next() << 24) >> 24;
  }

  u16(): number {
    const lo = this.next();
    return lo | (this.next() << 8);
  }

  s32(): number {
    const a = this.next();
    const b = this.next();
    const c = this.next();
    return a | (b << 8) | (c << 16) | (this.next() << 24);
  }

  hex(): string {
    return this.bytes.map((b) => b.toString(16).padStart(2, "0")).join(" ");
  }
}

const src = new ByteSource();

/** Decode the instruction at `rip` (an offset in CS). */
export function decode(cpu: DecodeSource, rip: number): Insn {
  src.reset(cpu, rip);
  const mode64 = cpu.mode64;
  let opsize = false;
  let addrsize = false;
  let rep = 0;
  let lock = false;
  let seg = -1;
  let rex = 0;
  let b: number;
  for (;;) {
    b = src.next();
    if (mode64 && (b & 0xf0) === 0x40) {
      rex = b; // REX must come last; a legacy prefix after it cancels it (below)
      continue;
    }
    let prefix = true;
    switch (b) {
      case 0x66:
        opsize = true;
        break;
      case 0x67:
        addrsize = true;
        break;
      case 0xf2:
        rep = 2;
        break;
      case 0xf3:
        rep = 1;
        break;
      case 0xf0:
        lock = true;
        break;
      case 0x26:
        seg = Seg.ES;
        break;
      case 0x2e:
        seg = Seg.CS;
        break;
      case 0x36:
        seg = Seg.SS;
        break;
      case 0x3e:
        seg = Seg.DS;
        break;
      case 0x64:
        seg = Seg.FS;
        break;
      case 0x65:
        seg = Seg.GS;
        break;
      default:
        prefix = false;
    }
    if (!prefix) break;
    rex = 0;
  }
  let opcode = b;
  if (b === 0x0f) {
    const b2 = src.next();
    if (b2 === 0x38 || b2 === 0x3a) {
      src.next();
      return undefinedInsn(src, "three-byte opcode map (0F 38 / 0F 3A)");
    }
    opcode = 0x100 | b2;
  }

  const entry = OPCODES.get(opcode);
  let spec: OpSpec | undefined;
  let modrm = -1;
  const sse = opcode >= 0x100 ? SSE_OPCODES.get(opcode) : undefined;
  if (sse !== undefined) {
    // A mandatory prefix picks the column (F2/F3, the last given, over 66) and is consumed.
    const form = rep === 1 ? sse.f3 : rep === 2 ? sse.f2 : opsize ? sse.p66 : sse.none;
    modrm = src.next();
    if (form === undefined) return undefinedInsn(src, undefined);
    spec = isSseGroup(form) ? form[(modrm >> 3) & 7] : form;
    if (spec === undefined) return undefinedInsn(src, undefined);
    rep = 0;
  }
  if (rep === 1) {
    const v = F3_VARIANTS.get(opcode);
    if (v !== undefined) {
      spec = v;
      rep = 0;
    }
  }
  if (spec === undefined && entry !== undefined) {
    if (isGroup(entry)) {
      modrm = src.next();
      const reg = (modrm >> 3) & 7;
      if (entry.regForms !== undefined && modrm >= 0xc0) {
        // Register forms of 0F 01 and 0F AE (VMCALL, SWAPGS, fences) take no 66/F2/F3 prefix;
        // the x87 escapes (D8-DF) ignore them.
        const x87 = opcode >= 0xd8 && opcode <= 0xdf;
        spec = (opsize || rep !== 0) && !x87 ? undefined : entry.regForms.get(modrm);
      }
      else spec = entry.group[reg];
      if (spec !== undefined && opcode === 0x1ae && (opsize || rep !== 0)) spec = undefined; // 66/F3 0F AE are other instructions
      if (spec !== undefined) spec = { ...spec, flags: spec.flags | entry.flags };
    } else spec = entry;
  }
  if (spec === undefined) {
    if (modrm < 0 && entry === undefined && opcodeTakesModrm(opcode)) src.next();
    return undefinedInsn(src, undefined);
  }
  const flags = spec.flags;
  if ((flags & F_NO64) !== 0 && mode64) return undefinedInsn(src, `${spec.mnemonic} (invalid in 64-bit mode)`);
  if ((flags & F_ONLY64) !== 0 && !mode64 && opcode !== 0x63) return undefinedInsn(src, `${spec.mnemonic} (64-bit mode only)`);
  if (opcode === 0x63 && !mode64) return undefinedInsn(src, "arpl (not modelled)");

  const i = new Insn(spec.exec);
  i.opcode = opcode;
  i.mnemonic = spec.mnemonic;
  i.cc = spec.cc;
  i.rep = (flags & F_STRING) !== 0 ? rep : 0;
  i.lock = lock;
  i.rex = rex !== 0;
  const rexW = (rex & 8) !== 0;

  // Operand and address size (SDM Vol. 1, 3.6 and Vol. 2A 2.2.1.2).
  if ((flags & F_BYTE) !== 0) i.opSize = 1;
  else if ((flags & F_NATIVE) !== 0) i.opSize = mode64 ? 8 : 4;
  else if (mode64) i.opSize = rexW || (flags & F_F64) !== 0 ? 8 : opsize ? 2 : (flags & F_D64) !== 0 ? 8 : 4;
  else i.opSize = cpu.csD !== opsize ? 4 : 2;
  if (mode64) i.addrSize = addrsize ? 4 : 8;
  else i.addrSize = cpu.csD !== addrsize ? 4 : 2;

  // SSE rows: the operand size of a general-register operand is 32, or 64 with REX.W.
  if ((flags & F_SSE) !== 0) i.opSize = mode64 && rexW ? 8 : 4;
  if ((flags & F_OPREG) !== 0) i.rm = (opcode & 7) | ((rex & 1) << 3);
  if (opcode === 0x90 && (rex & 1) !== 0) {
    // 90 with REX.B is XCHG r8, rAX, not NOP.
    i.rm = 8;
    i.exec = OPCODES_XCHG;
    i.mnemonic = "xchg";
  }

  if ((flags & F_MODRM) !== 0) {
    if (modrm < 0) modrm = src.next();
    i.modrm = modrm;
    if (i.addrSize === 2) decodeModrm16(i, modrm, (flags & F_RMREG) !== 0);
    else decodeModrm(i, modrm, rex, mode64, (flags & F_RMREG) !== 0);
    if ((flags & F_MEM) !== 0 && !i.isMem) return undefinedInsn(src, `${spec.mnemonic} with a register operand`);
    if ((flags & F_REGONLY) !== 0 && i.isMem) return undefinedInsn(src, `${spec.mnemonic} with a memory operand`);
    if (i.isMem) i.seg = seg >= 0 ? seg : i.base === 4 || i.base === 5 ? Seg.SS : Seg.DS;
    else if (seg >= 0 && (flags & F_SSE) !== 0) i.seg = seg; // MASKMOVDQU's implicit DS:rDI takes an override
  } else if (seg >= 0) {
    i.seg = seg;
  }
  i.segOverride = seg >= 0;
  if (lock && ((flags & F_LOCKABLE) === 0 || !i.isMem)) return undefinedInsn(src, "LOCK prefix on an instruction that cannot be locked");
  if ((opcode === 0x8c || opcode === 0x8e) && (i.reg & 7) > 5) return undefinedInsn(src, "mov with a reserved segment register");
  if (opcode === 0x8e && (i.reg & 7) === 1) return undefinedInsn(src, "mov to CS");
  if ((opcode === 0x120 || opcode === 0x122) && !VALID_CR.has(i.reg)) return undefinedInsn(src, `mov with reserved control register cr${i.reg}`);
  if ((opcode === 0x121 || opcode === 0x123) && i.reg > 7) return undefinedInsn(src, `mov with reserved debug register dr${i.reg}`);
  if ((flags & F_STRING) !== 0 && seg < 0) i.seg = Seg.DS;

  // Immediates.
  if ((flags & F_IMM8) !== 0) i.imm = src.next();
  else if ((flags & F_IMM8S) !== 0) {
    i.imm = src.s8();
    i.immHi = i.imm >> 31;
  } else if ((flags & F_IMM16) !== 0) i.imm = src.u16();
  else if ((flags & F_IMMZ) !== 0) {
    i.imm = i.opSize === 2 ? src.u16() : src.s32();
    i.immHi = i.opSize === 8 ? i.imm >> 31 : 0;
  } else if ((flags & F_IMMV) !== 0) {
    if (i.opSize === 2) i.imm = src.u16();
    else if (i.opSize === 4) i.imm = src.s32();
    else {
      i.imm = src.s32();
      i.immHi = src.s32();
    }
  } else if ((flags & F_REL8) !== 0) i.imm = src.s8();
  else if ((flags & F_RELZ) !== 0) i.imm = i.opSize === 2 && !mode64 ? (src.u16() << 16) >> 16 : src.s32();
  else if ((flags & F_ENTER) !== 0) {
    i.imm = src.u16();
    i.imm2 = src.next();
  } else if ((flags & F_FARPTR) !== 0) {
    i.imm = i.opSize === 2 ? src.u16() : src.s32() >>> 0;
    i.imm2 = src.u16();
  } else if ((flags & F_MOFFS) !== 0) {
    i.isMem = true;
    i.seg = seg >= 0 ? seg : Seg.DS;
    if (i.addrSize === 8) {
      const lo = src.s32() >>> 0;
      const hi = src.s32();
      i.disp = hi * 0x1_0000_0000 + lo;
    } else i.disp = i.addrSize === 2 ? src.u16() : src.s32() >>> 0;
    i.reg = 0;
  }
  i.len = src.len;
  i.exec = specialize(i);
  return i;
}

function decodeModrm(i: Insn, modrm: number, rex: number, mode64: boolean, rmAlwaysReg: boolean): void {
  const mod = modrm >> 6;
  const rmf = modrm & 7;
  i.reg = ((modrm >> 3) & 7) | ((rex & 4) << 1);
  if (mod === 3 || rmAlwaysReg) {
    i.isMem = false;
    i.rm = rmf | ((rex & 1) << 3);
    return;
  }
  i.isMem = true;
  if (rmf === 4) {
    const sib = src.next();
    const idx = ((sib >> 3) & 7) | ((rex & 2) << 2);
    i.index = idx === 4 ? -1 : idx;
    i.scale = 1 << (sib >> 6);
    const base = sib & 7;
    if (base === 5 && mod === 0) {
      i.base = -1;
      i.disp = src.s32();
    } else i.base = base | ((rex & 1) << 3);
  } else if (rmf === 5 && mod === 0) {
    i.base = -1;
    i.disp = src.s32();
    i.ripRel = mode64;
  } else i.base = rmf | ((rex & 1) << 3);
  if (mod === 1) i.disp += src.s8();
  else if (mod === 2) i.disp += src.s32();
}

/** 16-bit ModRM memory forms (SDM Vol. 2A Table 2-1): r/m 0-7 = BX+SI, BX+DI, BP+SI, BP+DI, SI, DI, BP (disp16 alone with mod 0), BX. */
const BASE16 = [3, 3, 5, 5, 6, 7, 5, 3] as const;
const INDEX16 = [6, 7, 6, 7, -1, -1, -1, -1] as const;

function decodeModrm16(i: Insn, modrm: number, rmAlwaysReg: boolean): void {
  const mod = modrm >> 6;
  const rmf = modrm & 7;
  i.reg = (modrm >> 3) & 7;
  if (mod === 3 || rmAlwaysReg) {
    i.isMem = false;
    i.rm = rmf;
    return;
  }
  i.isMem = true;
  i.scale = 1;
  if (mod === 0 && rmf === 6) {
    i.base = -1;
    i.index = -1;
    i.disp = src.u16();
    return;
  }
  i.base = BASE16[rmf]!;
  i.index = INDEX16[rmf]!;
  if (mod === 1) i.disp = src.s8();
  else if (mod === 2) i.disp = src.u16();
}

/** One-byte and 0F opcodes whose undefined forms still carry a ModRM byte (so #UD counts name the form). */
function opcodeTakesModrm(opcode: number): boolean {
  return (opcode >= 0xd8 && opcode <= 0xdf) || (opcode >= 0x110 && opcode <= 0x17f) || (opcode >= 0x1c2 && opcode <= 0x1c7) || (opcode >= 0x1d0);
}

function undefinedInsn(source: ByteSource, why: string | undefined): Insn {
  const i = new Insn(ud);
  i.len = source.len;
  i.mnemonic = why === undefined ? source.hex() : `${source.hex()} (${why})`;
  return i;
}

import { xchgAR } from "../exec/move.js";
const OPCODES_XCHG = xchgAR;

/** Thrown by `BufferSource` when the decoder wants a byte past the copy or faults. */
const OUT_OF_BYTES = Symbol("decodeBytes: out of bytes");

const NO_BYTES = new Uint8Array(0);

/** Instruction bytes an emulator already copied out of guest memory (see `decodeBytes`). */
class BufferSource implements DecodeSource {
  mode64 = false;
  csD = true;
  bytes: Uint8Array = NO_BYTES;
  length = 0;
  fetchByte(lin: number): number {
    if (lin < 0 || lin >= this.length) throw OUT_OF_BYTES;
    return this.bytes[lin] ?? 0;
  }
  fault(): never {
    throw OUT_OF_BYTES;
  }
}

const buffer = new BufferSource();

/**
 * Decode one instruction from bytes a hypervisor's emulator copied out of guest memory (Xen's
 * x86_emulate fetches into a buffer the same way), in 64-bit mode or in 32-bit code (`csD`).
 * Returns undefined when the instruction needs more than `length` bytes (or more than 15).
 * An undefined opcode decodes to an Insn whose handler is #UD; the caller checks the opcode.
 */
export function decodeBytes(bytes: Uint8Array, length: number, mode64: boolean, csD: boolean): Insn | undefined {
  buffer.mode64 = mode64;
  buffer.csD = csD;
  buffer.bytes = bytes;
  buffer.length = Math.min(length, bytes.length, MAX_INSTRUCTION_LENGTH);
  try {
    return decode(buffer, 0);
  } catch (e) {
    if (e === OUT_OF_BYTES) return undefined;
    throw e;
  } finally {
    buffer.bytes = NO_BYTES;
  }
}
