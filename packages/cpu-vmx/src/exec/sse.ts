/**
 * What every SSE/SSE2 instruction shares (SDM Vol. 1 chapters 10 and 11; Vol. 3A 13.1 and
 * Table 2-1 / 13-5): the gating rules, the XMM operand slots and the 128-, 64- and 32-bit memory
 * operands with the legacy-SSE alignment rule.
 *
 * The XMM registers live in `FpuState.xmmBuffer` with typed views (`xb`, `xw`, `xd`); a "slot"
 * is a register number 0-15, or SLOT_M (a memory operand read into scratch) or SLOT_T (a
 * result built before it is written, so that a source that is also the destination reads its
 * old value). Nothing here allocates.
 */
import { Access, Vector } from "@vtlab/arch";
import type { Cpu } from "../cpu.js";
import { wrap64 } from "../cpu/int64.js";
import type { Insn } from "../decode/insn.js";
import { CR0_EM, CR0_PG, CR0_TS, CR4_OSFXSR } from "../regs.js";
import { ea } from "./operands.js";

/** The scratch slot a memory operand is read into. */
export const SLOT_M = 16;
/** The scratch slot a result is built in. */
export const SLOT_T = 17;

/**
 * The SSE/SSE2 availability checks, in the SDM's order (Vol. 3A Table 13-5 / 2-1): #UD when
 * CR0.EM = 1 or CR4.OSFXSR = 0, then #NM when CR0.TS = 1. They come before any memory operand
 * is formed, so they win over #GP, #SS and #PF.
 */
export function sseAvailable(cpu: Cpu, i: Insn): void {
  if ((cpu.cr0 & CR0_EM) !== 0 || (cpu.cr4 & CR4_OSFXSR) === 0) cpu.undefinedOpcode(`${i.mnemonic} (CR0.EM = 1 or CR4.OSFXSR = 0)`);
  if ((cpu.cr0 & CR0_TS) !== 0) cpu.fault(Vector.NM);
}

/** lin + k in the current address space (wrapping at 2^64, or 2^32 outside 64-bit mode). */
export function linAdd(cpu: Cpu, lin: number, k: number): number {
  return cpu.mode64 ? wrap64(lin + k) : (lin + k) >>> 0;
}

/**
 * The linear address of a 128-bit memory operand; `aligned`: #GP(0) unless it is 16-byte
 * aligned (every legacy-SSE m128 operand except MOVUPS/MOVUPD/MOVDQU's, SDM Vol. 1 11.6.4).
 */
export function ea128(cpu: Cpu, i: Insn, aligned: boolean): number {
  const lin = ea(cpu, i);
  if (aligned && (lin & 15) !== 0) cpu.gp(0);
  return lin;
}

/** Read 16 bytes at `lin` into `slot`. */
export function read128(cpu: Cpu, lin: number, slot: number): void {
  const d = cpu.fpu.xd;
  const k = slot * 4;
  const a = cpu.read64(lin);
  const aHi = cpu.tmpHi;
  const b = cpu.read64(linAdd(cpu, lin, 8));
  d[k] = a;
  d[k + 1] = aHi;
  d[k + 2] = b;
  d[k + 3] = cpu.tmpHi;
}

/**
 * Write `slot`'s 16 bytes at `lin`. A store that crosses a page has both pages translated for
 * writing first, so a #PF on the second leaves memory unchanged (the store is all or nothing).
 */
export function write128(cpu: Cpu, lin: number, slot: number): void {
  const d = cpu.fpu.xd;
  const k = slot * 4;
  const off = lin & 0xfff;
  if (off > 0xff0 && (cpu.cr0 & CR0_PG) !== 0) {
    cpu.translate(lin, Access.Write);
    cpu.translate(linAdd(cpu, lin, 4096 - off), Access.Write);
  }
  cpu.write64(lin, d[k]!, d[k + 1]!);
  cpu.write64(linAdd(cpu, lin, 8), d[k + 2]!, d[k + 3]!);
}

/** The slot of the 128-bit W operand (xmm/m128): the register, or the memory operand read into SLOT_M. */
export function srcW128(cpu: Cpu, i: Insn, aligned: boolean): number {
  if (!i.isMem) return i.rm;
  read128(cpu, ea128(cpu, i, aligned), SLOT_M);
  return SLOT_M;
}

/** The slot of a 64-bit W operand (xmm/m64): the register, or m64 read into SLOT_M's low quadword. */
export function srcW64(cpu: Cpu, i: Insn): number {
  if (!i.isMem) return i.rm;
  const d = cpu.fpu.xd;
  d[SLOT_M * 4] = cpu.read64(ea(cpu, i));
  d[SLOT_M * 4 + 1] = cpu.tmpHi;
  return SLOT_M;
}

/** The slot of a 32-bit W operand (xmm/m32): the register, or m32 read into SLOT_M's low doubleword. */
export function srcW32(cpu: Cpu, i: Insn): number {
  if (!i.isMem) return i.rm;
  cpu.fpu.xd[SLOT_M * 4] = cpu.read32(ea(cpu, i));
  return SLOT_M;
}

/** Copy all 16 bytes of slot `from` to slot `to`. */
export function copySlot(cpu: Cpu, to: number, from: number): void {
  const d = cpu.fpu.xd;
  d[to * 4] = d[from * 4]!;
  d[to * 4 + 1] = d[from * 4 + 1]!;
  d[to * 4 + 2] = d[from * 4 + 2]!;
  d[to * 4 + 3] = d[from * 4 + 3]!;
}
