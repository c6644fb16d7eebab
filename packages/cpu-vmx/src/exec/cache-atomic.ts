/**
 * CLFLUSH and CMPXCHG8B/CMPXCHG16B (SDM Vol. 2A "CLFLUSH", "CMPXCHG8B/CMPXCHG16B").
 *
 * Modelled more simply: there are no caches, so CLFLUSH only performs the permission checks of
 * a byte load at its address (#GP/#SS for a non-canonical address, #PF, an EPT violation) and
 * flushes nothing. CMPXCHG8B/16B are atomic by construction (one instruction runs at a time).
 */
import { Access } from "@vtlab/arch";
import type { Cpu } from "../cpu.js";
import type { Insn } from "../decode/insn.js";
import { RFLAGS_ZF } from "../regs.js";
import { ea } from "./operands.js";
import { linAdd } from "./sse.js";

/** CLFLUSH m8 (0F AE /7): "subject to all permission checking and faults associated with a byte load". */
export function clflush(cpu: Cpu, i: Insn): void {
  cpu.translate(ea(cpu, i), Access.Read);
}

function setZf(cpu: Cpu, equal: boolean): void {
  cpu.setArithFlags((cpu.getFlags() & ~RFLAGS_ZF) | (equal ? RFLAGS_ZF : 0));
}

/**
 * CMPXCHG8B m64 / CMPXCHG16B m128 (REX.W) (0F C7 /1): compare EDX:EAX (RDX:RAX) with the
 * operand; equal: ZF = 1 and ECX:EBX (RCX:RBX) is stored; else ZF = 0, the operand is loaded
 * into EDX:EAX (RDX:RAX) and written back unchanged (the processor always writes the
 * destination). CMPXCHG16B's operand must be 16-byte aligned (#GP(0)).
 */
export function cmpxchg8b16b(cpu: Cpu, i: Insn): void {
  const at = ea(cpu, i);
  const lo = cpu.lo;
  const hi = cpu.hi;
  if (i.opSize === 8) {
    if ((at & 15) !== 0) cpu.gp(0);
    const at8 = linAdd(cpu, at, 8);
    const m0 = cpu.read64(at);
    const m1 = cpu.tmpHi;
    const m2 = cpu.read64(at8);
    const m3 = cpu.tmpHi;
    const equal = m0 === lo[0] && m1 === hi[0] && m2 === lo[2] && m3 === hi[2];
    // Both halves are checked for writing before either is written (write64 checks each half).
    cpu.translate(at, Access.Write);
    cpu.translate(at8, Access.Write);
    if (equal) {
      cpu.write64(at, lo[3]!, hi[3]!);
      cpu.write64(at8, lo[1]!, hi[1]!);
    } else {
      cpu.write64(at, m0, m1);
      cpu.write64(at8, m2, m3);
      lo[0] = m0;
      hi[0] = m1;
      lo[2] = m2;
      hi[2] = m3;
    }
    setZf(cpu, equal);
    return;
  }
  const m0 = cpu.read64(at);
  const m1 = cpu.tmpHi;
  const equal = m0 === lo[0] && m1 === lo[2];
  if (equal) cpu.write64(at, lo[3]!, lo[1]!);
  else {
    cpu.write64(at, m0, m1);
    cpu.setReg32(0, m0);
    cpu.setReg32(2, m1);
  }
  setZf(cpu, equal);
}
