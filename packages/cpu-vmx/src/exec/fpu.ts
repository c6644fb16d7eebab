/**
 * x87 FPU and SSE state, and the instructions that only manage it (SDM Vol. 1 chapters 8, 10 and
 * 11; Vol. 2 "FNINIT", "FNCLEX", "FLDCW", "FNSTCW", "FNSTSW", "FWAIT", "FXSAVE", "FXRSTOR",
 * "LDMXCSR", "STMXCSR"): what an operating system's FPU initialisation and context switch use.
 *
 * The x87 data instructions are in x87.ts (on the soft-float of f80.ts); they update ST0-7,
 * FIP/FDP/FOP and FSW's flags as the SDM says. Modelled more simply: no SSE arithmetic exists here
 * (XMM0-15 are kept as the bytes FXRSTOR loaded); FWAIT and the waiting forms raise #MF for a
 * pending unmasked exception whatever CR0.NE says (the legacy FERR# route of CR0.NE = 0 is not
 * modelled).
 */
import { Vector } from "@vtlab/arch";
import type { Cpu } from "../cpu.js";
import type { Insn } from "../decode/insn.js";
import { CR0_EM, CR0_MP, CR0_TS, CR4_OSFXSR } from "../regs.js";
import { ea } from "./operands.js";

/** FCW after FNINIT (SDM 8.1.5): all exceptions masked, 64-bit precision, round to nearest. */
export const FCW_INIT = 0x037f;
/** FCW at power-up (SDM Table 9-1). */
export const FCW_RESET = 0x0040;
/** MXCSR at power-up and the default (SDM 10.2.3): all exceptions masked, round to nearest. */
export const MXCSR_DEFAULT = 0x1f80;
/** MXCSR_MASK: the MXCSR bits this CPU supports (bits 15:0, DAZ included; SDM 11.6.6). */
export const MXCSR_MASK = 0xffff;
/**
 * FCW's reserved bits (SDM Figure 8-6: 6, 7 and 15:13): bit 6 reads as 1 and the others as 0
 * whatever FLDCW or FXRSTOR loaded, as the host CPU does (the differential test's FLDCW cases).
 */
const FCW_WRITABLE = 0x1f3f;
const FCW_ONES = 0x0040;
/** FSW: exception flags IE, DE, ZE, OE, UE, PE (bits 5:0) and the stack fault SF (bit 6). */
const FSW_EXCEPTIONS = 0x3f;
const FSW_SF = 1 << 6;
/** FSW.ES (bit 7): error summary; FSW.B (bit 15) mirrors it. */
const FSW_ES = 1 << 7;
const FSW_B = 1 << 15;
/** FXSAVE area size and alignment (SDM Table 10-2). */
export const FXSAVE_SIZE = 512;

/** The x87 and SSE registers of one logical processor. */
export class FpuState {
  /** FPU control word. */
  fcw = FCW_RESET;
  /** FPU status word (TOP in bits 13:11). */
  fsw = 0;
  /** The abridged tag word of FXSAVE: bit i = 1 when physical register i is not empty. */
  ftw = 0xff;
  /** Last x87 opcode (11 bits), instruction pointer and data pointer (with their selectors). */
  fop = 0;
  fipLo = 0;
  fipHi = 0;
  fcs = 0;
  fdpLo = 0;
  fdpHi = 0;
  fds = 0;
  mxcsr = MXCSR_DEFAULT;
  /**
   * The data registers R0-R7 by physical number (ST(i) is R((TOP + i) mod 8)), each an 80-bit
   * value as the soft-float (exec/f80.ts) keeps it: sign and exponent (16 bits), significand
   * high and low halves.
   */
  readonly stSe = new Uint16Array(8);
  readonly stHi = new Uint32Array(8);
  readonly stLo = new Uint32Array(8);
  /**
   * XMM0-15, 16 bytes each (bytes 160-415 of the area), then two scratch slots the SSE handlers
   * use (exec/sse.ts: slot 16 holds a memory operand, slot 17 a result being built), all in one
   * buffer with typed views by lane width (little-endian, as every host Node runs on here).
   */
  readonly xmmBuffer = new ArrayBuffer(18 * 16);
  readonly xmm = new Uint8Array(this.xmmBuffer, 0, 256);
  /** The views of XMM0-15 and the scratch slots: slot s, lane k is at s * (16 / width) + k. */
  readonly xb = new Uint8Array(this.xmmBuffer);
  readonly xw = new Uint16Array(this.xmmBuffer);
  readonly xd = new Int32Array(this.xmmBuffer);
  /** FXRSTOR's staging copy of the area (read whole and checked before anything changes). */
  readonly staging = new Uint8Array(FXSAVE_SIZE);
}

/** #NM for an x87 instruction when CR0.EM or CR0.TS is set (SDM Table 2-1 / 12-8). */
function x87Available(cpu: Cpu): void {
  if ((cpu.cr0 & (CR0_EM | CR0_TS)) !== 0) cpu.fault(Vector.NM);
}

/** A pending unmasked x87 exception (FSW.ES) is taken by a waiting instruction as #MF. */
function x87Wait(cpu: Cpu): void {
  if ((cpu.fpu.fsw & FSW_ES) !== 0) cpu.fault(Vector.MF);
}

/** FSW.ES and B follow the exception flags against the FCW masks (SDM 8.1.3.1). */
function updateSummary(f: FpuState): void {
  const pending = (f.fsw & FSW_EXCEPTIONS & ~f.fcw) !== 0;
  f.fsw = pending ? f.fsw | FSW_ES | FSW_B : f.fsw & ~(FSW_ES | FSW_B);
}

/** FWAIT / WAIT (9B): #NM when CR0.MP and CR0.TS are both set; then any pending #MF. */
export function fwait(cpu: Cpu): void {
  if ((cpu.cr0 & (CR0_MP | CR0_TS)) === (CR0_MP | CR0_TS)) cpu.fault(Vector.NM);
  x87Wait(cpu);
}

/** FNINIT (DB E3): the x87 state to its initial values; MXCSR and the XMM registers stay. */
export function fninit(cpu: Cpu): void {
  x87Available(cpu);
  const f = cpu.fpu;
  f.fcw = FCW_INIT;
  f.fsw = 0;
  f.ftw = 0; // all empty (tag word FFFFH)
  f.fop = 0;
  f.fipLo = 0;
  f.fipHi = 0;
  f.fcs = 0;
  f.fdpLo = 0;
  f.fdpHi = 0;
  f.fds = 0;
}

/** FNCLEX (DB E2): clear the exception flags, SF, ES and B. */
export function fnclex(cpu: Cpu): void {
  x87Available(cpu);
  cpu.fpu.fsw &= ~(FSW_EXCEPTIONS | FSW_SF | FSW_ES | FSW_B);
}

/** FLDCW m16 (D9 /5): load the control word; an exception it unmasks is pending (ES set). */
export function fldcw(cpu: Cpu, i: Insn): void {
  x87Available(cpu);
  const v = cpu.read16(ea(cpu, i)) & 0xffff;
  const f = cpu.fpu;
  f.fcw = (v & FCW_WRITABLE) | FCW_ONES;
  updateSummary(f);
}

/** FNSTCW m16 (D9 /7). */
export function fnstcw(cpu: Cpu, i: Insn): void {
  x87Available(cpu);
  cpu.write16(ea(cpu, i), cpu.fpu.fcw);
}

/** FNSTSW m16 (DD /7) and FNSTSW AX (DF E0: `i.cc` = 1). */
export function fnstsw(cpu: Cpu, i: Insn): void {
  x87Available(cpu);
  const sw = cpu.fpu.fsw;
  if (i.cc === 1) cpu.lo[0] = ((cpu.lo[0]! & ~0xffff) | sw) | 0;
  else cpu.write16(ea(cpu, i), sw);
}

/** FXSAVE and FXRSTOR: #UD with CR0.EM, #NM with CR0.TS, #GP(0) for an area not 16-byte aligned. */
function fxsrChecks(cpu: Cpu, i: Insn): number {
  if ((cpu.cr0 & CR0_EM) !== 0) cpu.undefinedOpcode(`${i.mnemonic} with CR0.EM = 1`);
  if ((cpu.cr0 & CR0_TS) !== 0) cpu.fault(Vector.NM);
  const at = ea(cpu, i);
  if (at % 16 !== 0) cpu.gp(0);
  return at;
}

/**
 * FXSAVE / FXSAVE64 (0F AE /0; REX.W: the 64-bit FIP and FDP format) (SDM Table 10-2, 10-3):
 * bytes 0-415 written; the reserved bytes 416-463 and the software bytes 464-511 are not. With
 * CR4.OSFXSR = 0 MXCSR and the XMM registers are saved too (SDM: implementation dependent).
 */
export function fxsave(cpu: Cpu, i: Insn): void {
  const at = fxsrChecks(cpu, i);
  const f = cpu.fpu;
  const wide = i.opSize === 8;
  const add = (k: number) => at + k; // the area is 16-byte aligned: no wrap inside it
  cpu.write16(add(0), f.fcw);
  cpu.write16(add(2), f.fsw);
  cpu.write16(add(4), f.ftw & 0xff); // abridged tag and a reserved 0 byte
  cpu.write16(add(6), f.fop & 0x7ff);
  if (wide) {
    cpu.write64(add(8), f.fipLo, f.fipHi);
    cpu.write64(add(16), f.fdpLo, f.fdpHi);
  } else {
    cpu.write32(add(8), f.fipLo);
    cpu.write32(add(12), f.fcs & 0xffff);
    cpu.write32(add(16), f.fdpLo);
    cpu.write32(add(20), f.fds & 0xffff);
  }
  cpu.write32(add(24), f.mxcsr);
  cpu.write32(add(28), MXCSR_MASK);
  // ST0-7 in stack order, 10 bytes in each 16-byte slot; the other 6 bytes are written as 0.
  const top = (f.fsw >>> 11) & 7;
  for (let i = 0; i < 8; i++) {
    const r = (top + i) & 7;
    const slot = add(32 + 16 * i);
    cpu.write32(slot, f.stLo[r]! | 0);
    cpu.write32(slot + 4, f.stHi[r]! | 0);
    cpu.write32(slot + 8, f.stSe[r]!);
    cpu.write32(slot + 12, 0);
  }
  for (let k = 0; k < 256; k += 4) {
    const b = f.xmm;
    cpu.write32(add(160 + k), b[k]! | (b[k + 1]! << 8) | (b[k + 2]! << 16) | (b[k + 3]! << 24));
  }
}

/**
 * FXRSTOR / FXRSTOR64 (0F AE /1): the area is read whole first; MXCSR with a bit outside
 * MXCSR_MASK is #GP(0) and nothing changes. The reserved bytes of the ST slots read back as 0.
 */
export function fxrstor(cpu: Cpu, i: Insn): void {
  const at = fxsrChecks(cpu, i);
  const s = cpu.fpu.staging;
  for (let k = 0; k < 416; k += 4) {
    const v = cpu.read32(at + k);
    s[k] = v & 0xff;
    s[k + 1] = (v >>> 8) & 0xff;
    s[k + 2] = (v >>> 16) & 0xff;
    s[k + 3] = (v >>> 24) & 0xff;
  }
  const u16 = (k: number) => s[k]! | (s[k + 1]! << 8);
  const u32 = (k: number) => (u16(k) | (u16(k + 2) << 16)) >>> 0;
  const mxcsr = u32(24);
  if ((mxcsr & ~MXCSR_MASK) !== 0) cpu.gp(0);
  const f = cpu.fpu;
  f.fcw = (u16(0) & FCW_WRITABLE) | FCW_ONES;
  f.fsw = u16(2);
  f.ftw = s[4]!;
  f.fop = u16(6) & 0x7ff;
  f.fipLo = u32(8);
  f.fdpLo = u32(16);
  if (i.opSize === 8) {
    f.fipHi = u32(12);
    f.fdpHi = u32(20);
    f.fcs = 0;
    f.fds = 0;
  } else {
    f.fipHi = 0;
    f.fdpHi = 0;
    f.fcs = u16(12);
    f.fds = u16(20);
  }
  f.mxcsr = mxcsr;
  const top = (f.fsw >>> 11) & 7;
  for (let i = 0; i < 8; i++) {
    const r = (top + i) & 7;
    const slot = 32 + 16 * i;
    f.stLo[r] = u32(slot);
    f.stHi[r] = u32(slot + 4);
    f.stSe[r] = u16(slot + 8);
  }
  f.xmm.set(s.subarray(160, 416));
}

/** LDMXCSR / STMXCSR: #UD with CR0.EM or without CR4.OSFXSR, then #NM with CR0.TS. */
function sseAvailable(cpu: Cpu, i: Insn): void {
  if ((cpu.cr0 & CR0_EM) !== 0 || (cpu.cr4 & CR4_OSFXSR) === 0) cpu.undefinedOpcode(`${i.mnemonic} (CR0.EM = 1 or CR4.OSFXSR = 0)`);
  if ((cpu.cr0 & CR0_TS) !== 0) cpu.fault(Vector.NM);
}

/** LDMXCSR m32 (0F AE /2): a bit outside MXCSR_MASK is #GP(0). */
export function ldmxcsr(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  const v = cpu.read32(ea(cpu, i)) >>> 0;
  if ((v & ~MXCSR_MASK) !== 0) cpu.gp(0);
  cpu.fpu.mxcsr = v;
}

/** STMXCSR m32 (0F AE /3). */
export function stmxcsr(cpu: Cpu, i: Insn): void {
  sseAvailable(cpu, i);
  cpu.write32(ea(cpu, i), cpu.fpu.mxcsr);
}
