/**
 * Control transfer: JMP, Jcc, CALL, RET, far JMP/CALL/RET, LOOP/JrCXZ, INT n/INT3/INTO, IRET,
 * SYSCALL, SYSRET, HLT (SDM Vol. 2 and Vol. 3A 6.14 / 5.8.8).
 */
import { Vector } from "@vtlab/arch";
import type { Cpu } from "../cpu.js";
import { toSigned64, wrap64 } from "../cpu/int64.js";
import { markAccessed } from "../cpu/segments.js";
import type { Insn } from "../decode/insn.js";
import {
  EFER_LMA,
  EFER_SCE,
  RFLAGS_FIXED,
  RFLAGS_IF,
  RFLAGS_IOPL,
  RFLAGS_RF,
  RFLAGS_VM,
  RFLAGS_WRITABLE,
  SEG_ATTR_L,
  Seg,
} from "../regs.js";
import { ea, readE } from "./operands.js";
import { CPU_HLT_EXITING } from "../vmx/controls.js";
import { ExitReason } from "../vmx/exit-reasons.js";
import { pop, push } from "./stack.js";

const TWO_47 = 2 ** 47;

/** Set RIP to a branch target, masking to the operand size outside 64-bit mode. */
function branchTo(cpu: Cpu, target: number, opSize: number): void {
  if (cpu.mode64) {
    const t = wrap64(target);
    if (t < -TWO_47 || t >= TWO_47) cpu.gp(0); // a non-canonical target faults on the branch
    cpu.rip = t;
  } else {
    cpu.rip = opSize === 2 ? target & 0xffff : target >>> 0;
  }
}

/** JMP rel8/rel32 (EB, E9). */
export function jmpRel(cpu: Cpu, i: Insn): void {
  branchTo(cpu, cpu.rip + i.imm, i.opSize);
}

/** Jcc rel8/rel32 (70-7F, 0F 80-8F). */
export function jccRel(cpu: Cpu, i: Insn): void {
  if (cpu.cond(i.cc)) branchTo(cpu, cpu.rip + i.imm, i.opSize);
}

/** CALL rel32 (E8). */
export function callRel(cpu: Cpu, i: Insn): void {
  const ret = cpu.rip;
  const target = ret + i.imm;
  pushAddress(cpu, i.opSize, ret);
  branchTo(cpu, target, i.opSize);
}

/** CALL E (FF /2). */
export function callE(cpu: Cpu, i: Insn): void {
  const target = readTarget(cpu, i);
  pushAddress(cpu, i.opSize, cpu.rip);
  branchTo(cpu, target, i.opSize);
}

/** JMP E (FF /4). */
export function jmpE(cpu: Cpu, i: Insn): void {
  branchTo(cpu, readTarget(cpu, i), i.opSize);
}

function readTarget(cpu: Cpu, i: Insn): number {
  const lo = readE(cpu, i, i.opSize);
  if (i.opSize === 8) return toSigned64(lo, cpu.tmpHi);
  return i.opSize === 4 ? lo >>> 0 : lo & 0xffff;
}

function pushAddress(cpu: Cpu, size: number, address: number): void {
  if (size === 8) {
    cpu.push64(address >>> 0, Math.floor(address / 0x1_0000_0000) | 0);
  } else push(cpu, size, address, 0);
}

/** RET and RET imm16 (C3, C2). */
export function ret(cpu: Cpu, i: Insn): void {
  const lo = pop(cpu, i.opSize);
  const target = i.opSize === 8 ? toSigned64(lo, cpu.tmpHi) : i.opSize === 4 ? lo >>> 0 : lo & 0xffff;
  if (i.imm !== 0) releaseStack(cpu, i.imm & 0xffff);
  branchTo(cpu, target, i.opSize);
}

function releaseStack(cpu: Cpu, n: number): void {
  if (cpu.mode64) cpu.setRegFromNumber(4, wrap64(cpu.regAddr(4) + n));
  else cpu.setReg32(4, ((cpu.lo[4]! >>> 0) + n) >>> 0);
}

/** JMP ptr16:32 (EA, outside 64-bit mode): `i.imm` offset, `i.imm2` selector. */
export function jmpFarPtr(cpu: Cpu, i: Insn): void {
  cpu.loadCodeSegment(i.imm2);
  cpu.rip = cpu.mode64 ? i.imm >>> 0 : i.opSize === 2 ? i.imm & 0xffff : i.imm >>> 0;
}

/**
 * CALL ptr16:16 / ptr16:32 (9A, outside 64-bit mode): `i.imm` offset, `i.imm2` selector. Pushes
 * CS and the return (E)IP with the operand size, then loads CS as far JMP does (same privilege
 * only in protected mode; in real mode base = selector << 4). A fault leaves RSP as it was.
 */
export function callFarPtr(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const rspLo = cpu.lo[4]!;
  const rspHi = cpu.hi[4]!;
  const cs = cpu.seg[Seg.CS]!.selector;
  try {
    push(cpu, size, cs, 0);
    push(cpu, size, cpu.rip, 0);
    cpu.loadCodeSegment(i.imm2);
  } catch (e) {
    cpu.lo[4] = rspLo;
    cpu.hi[4] = rspHi;
    throw e;
  }
  cpu.rip = size === 2 ? i.imm & 0xffff : i.imm >>> 0;
}

/** JMP m16:16/32/64 (FF /5) and CALL m16:16/32/64 (FF /3): `i.cc` 1 = call. Same privilege only. */
export function farIndirect(cpu: Cpu, i: Insn): void {
  const lin = ea(cpu, i);
  const size = i.opSize;
  const offLo = size === 8 ? cpu.read64(lin) : size === 4 ? cpu.read32(lin) : cpu.read16(lin);
  const offHi = size === 8 ? cpu.tmpHi : 0;
  const selector = cpu.read16(lin + size);
  const offset = size === 8 ? toSigned64(offLo, offHi) : size === 4 ? offLo >>> 0 : offLo & 0xffff;
  if (i.cc === 1) {
    const cs = (cpu.seg[Seg.CS] as { selector: number }).selector;
    const retRip = cpu.rip;
    push(cpu, size, cs, 0);
    pushAddress(cpu, size, retRip);
  }
  cpu.loadCodeSegment(selector);
  cpu.rip = offset;
}

/**
 * RETF and RETF imm16 (CB, CA) in protected and IA-32e mode (SDM "RET"): the return selector's
 * RPL must be >= CPL (#GP(selector)); RPL = CPL returns at the same level, RPL > CPL returns to
 * an outer level, popping RSP and SS too, and nulls data segments the new CPL may not use. A
 * fault leaves RSP as it was.
 */
export function retFar(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const rspLo = cpu.lo[4]!;
  const rspHi = cpu.hi[4]!;
  try {
    retFarChecked(cpu, i, size);
  } catch (e) {
    cpu.lo[4] = rspLo;
    cpu.hi[4] = rspHi;
    throw e;
  }
}

function retFarChecked(cpu: Cpu, i: Insn, size: number): void {
  const lo = pop(cpu, size);
  const hi = cpu.tmpHi;
  const selector = pop(cpu, size) & 0xffff;
  if (cpu.realMode) {
    // Real-address mode: IP and CS popped, CS base = selector << 4; the new IP must lie within
    // the cached CS limit (#GP(0), SDM "RET" real-address mode exceptions).
    const ip = size === 4 ? lo >>> 0 : lo & 0xffff;
    if (ip > cpu.seg[Seg.CS]!.limit) cpu.gp(0);
    if (i.imm !== 0) releaseStack(cpu, i.imm & 0xffff);
    cpu.loadCodeSegment(selector);
    cpu.rip = ip;
    return;
  }
  const rpl = selector & 3;
  const oldCpl = cpu.cpl;
  if (rpl < oldCpl) cpu.gp(selector & 0xfffc);
  const target = size === 8 ? toSigned64(lo, hi) : size === 4 ? lo >>> 0 : lo & 0xffff;
  if (rpl === oldCpl) {
    cpu.loadCodeSegment(selector);
    if (i.imm !== 0) releaseStack(cpu, i.imm & 0xffff);
    cpu.rip = target;
    return;
  }
  // Return to an outer privilege level.
  const cs = cpu.codeDescriptor(selector, rpl);
  const to64 = (cpu.efer & EFER_LMA) !== 0 && (cs.attr & SEG_ATTR_L) !== 0;
  if (to64 && (target < -TWO_47 || target >= TWO_47)) cpu.gp(0);
  if (i.imm !== 0) releaseStack(cpu, i.imm & 0xffff);
  const newRspLo = pop(cpu, size);
  const newRspHi = cpu.tmpHi;
  const ssSel = pop(cpu, size) & 0xffff;
  let ss: { base: number; limit: number; attr: number } = { base: 0, limit: 0, attr: 0 };
  if ((ssSel & 0xfffc) === 0) {
    if (!to64 || rpl === 3) cpu.gp(0); // a null SS only for a 64-bit return below ring 3
  } else {
    const d = cpu.loadDescriptor(ssSel);
    if ((ssSel & 3) !== rpl || (d.attr & 0x1a) !== 0x12 || ((d.attr >>> 5) & 3) !== rpl) cpu.gp(ssSel & 0xfffc);
    if ((d.attr & 0x80) === 0) cpu.fault(Vector.SS, ssSel & 0xfffc);
    ss = d;
  }
  const csAttr = markAccessed(cpu, selector, cs.attr);
  const ssAttr = (ssSel & 0xfffc) === 0 ? ss.attr : markAccessed(cpu, ssSel, ss.attr);
  // Commit.
  cpu.cpl = rpl;
  const csCache = cpu.seg[Seg.CS]!;
  csCache.selector = selector;
  csCache.base = cs.base;
  csCache.limit = cs.limit;
  csCache.attr = csAttr;
  const ssCache = cpu.seg[Seg.SS]!;
  ssCache.selector = ssSel;
  ssCache.base = ss.base;
  ssCache.limit = ss.limit;
  ssCache.attr = ssAttr;
  if (size === 8) {
    cpu.lo[4] = newRspLo;
    cpu.hi[4] = newRspHi;
  } else cpu.setReg32(4, newRspLo);
  cpu.updateMode();
  if (i.imm !== 0) releaseStack(cpu, i.imm & 0xffff); // the new stack is released too
  nullOuterDataSegments(cpu, rpl);
  cpu.rip = target;
}

/** After a return to outer level `cpl`: ES, DS, FS, GS that the new CPL may not use become null (SDM "RET", "IRET"). */
function nullOuterDataSegments(cpu: Cpu, cpl: number): void {
  for (const s of [Seg.ES, Seg.DS, Seg.FS, Seg.GS]) {
    const c = cpu.seg[s]!;
    const dpl = (c.attr >>> 5) & 3;
    const conformingCode = (c.attr & 0x1c) === 0x1c;
    if ((c.selector & 0xfffc) !== 0 && dpl < cpl && !conformingCode) {
      c.selector = 0;
      c.attr = 0;
    }
  }
}

/** LOOP, LOOPE, LOOPNE, JrCXZ (E2, E1, E0, E3): `i.cc` 0 LOOPNE, 1 LOOPE, 2 LOOP, 3 JrCXZ. */
export function loop(cpu: Cpu, i: Insn): void {
  let count: number;
  if (i.cc === 3) {
    const zero = i.addrSize === 8 ? (cpu.lo[1]! | cpu.hi[1]!) === 0 : i.addrSize === 4 ? cpu.lo[1] === 0 : (cpu.lo[1]! & 0xffff) === 0;
    if (zero) branchTo(cpu, cpu.rip + i.imm, i.opSize);
    return;
  }
  if (i.addrSize === 8) {
    const lo = (cpu.lo[1]! - 1) | 0;
    if (lo === -1) cpu.hi[1] = (cpu.hi[1]! - 1) | 0;
    cpu.lo[1] = lo;
    count = lo | cpu.hi[1]!;
  } else if (i.addrSize === 4) {
    count = (cpu.lo[1]! - 1) | 0;
    cpu.setReg32(1, count);
  } else {
    count = (cpu.lo[1]! - 1) & 0xffff; // CX with 16-bit addressing
    cpu.setReg16(1, count);
  }
  const take = count !== 0 && (i.cc === 2 || (i.cc === 1 ? cpu.fZ === 0 : cpu.fZ !== 0));
  if (take) branchTo(cpu, cpu.rip + i.imm, i.opSize);
}

/** INT3 (CC), INT n (CD), INTO (CE, outside 64-bit mode). */
export function int3(cpu: Cpu): void {
  cpu.softwareInterrupt(Vector.BP, true);
}
/** ICEBP / INT1 (F1): a #DB trap, event type "privileged software exception" (SDM Vol. 3C 24.8.3). */
export function int1(cpu: Cpu): void {
  cpu.privilegedSoftwareException();
}
export function intN(cpu: Cpu, i: Insn): void {
  cpu.softwareInterrupt(i.imm & 0xff, false);
}
/**
 * IRET in real-address mode (SDM "IRET", REAL-ADDRESS-MODE): pop IP, CS and FLAGS (16-bit), or
 * EIP, CS and EFLAGS (32-bit: EFLAGS = (popped AND 257FD5H) OR (EFLAGS AND 1A0000H), so VM, VIF
 * and VIP keep their value); CS base = selector << 4. An EIP beyond the cached CS limit is #GP(0)
 * with SP restored. IRET ends NMI blocking.
 */
function iretReal(cpu: Cpu, size: number): void {
  const rspLo = cpu.lo[4]!;
  const rspHi = cpu.hi[4]!;
  let ip: number;
  let selector: number;
  let flags: number;
  try {
    ip = pop(cpu, size);
    selector = pop(cpu, size) & 0xffff;
    flags = pop(cpu, size) >>> 0;
    ip = size === 4 ? ip >>> 0 : ip & 0xffff;
    if (ip > cpu.seg[Seg.CS]!.limit) cpu.gp(0);
  } catch (e) {
    cpu.lo[4] = rspLo;
    cpu.hi[4] = rspHi;
    throw e;
  }
  cpu.loadCodeSegment(selector);
  cpu.setFlags(flags | RFLAGS_FIXED, size === 4 ? REAL_IRET_EFLAGS : REAL_IRET_EFLAGS & 0xffff);
  cpu.rip = ip;
  cpu.nmiBlocked = false;
}

/** The EFLAGS bits a 32-bit IRET in real-address mode takes from the stack (SDM "IRET": 257FD5H). */
const REAL_IRET_EFLAGS = 0x257fd5;

export function into(cpu: Cpu): void {
  if ((cpu.fA & 0x800) !== 0) cpu.softwareInterrupt(Vector.OF, true);
}

/**
 * IRET/IRETD/IRETQ (CF). In IA-32e mode it always pops RIP, CS, RFLAGS, RSP and SS (SDM "IRET",
 * IA-32e mode); a return to an outer ring nulls data segments the new CPL may not use.
 * Returns to virtual-8086 mode are not modelled (#GP); a task return (NT = 1) is a task-switch VM
 * exit in VMX non-root operation and #GP outside it (`Cpu.taskReturn`).
 */
export function iret(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  if (cpu.realMode) {
    iretReal(cpu, size);
    return;
  }
  const longMode = (cpu.efer & EFER_LMA) !== 0;
  if ((cpu.flagsOther & 0x4000) !== 0 && !longMode) cpu.taskReturn(i.len); // NT = 1: a task return
  // Faults are restartable (SDM 6.5): nothing is committed until every pop, descriptor load and
  // check has passed. The pops move RSP as they go, so a fault on the way (a #GP for the popped
  // CS or SS, a #PF, or a shadow-paging #PF exit, on the descriptor tables' pages) puts RSP back;
  // otherwise the restarted IRET (or the fault's own frame) would see RSP past the IRET frame.
  const savedRspLo = cpu.lo[4]!;
  const savedRspHi = cpu.hi[4]!;
  let ripLo: number;
  let ripHi: number;
  let csSel: number;
  let flags: number;
  let rpl: number;
  let rspLo = 0;
  let rspHi = 0;
  let ssSel = 0;
  let cs: ReturnType<Cpu["loadDescriptor"]>;
  let ssDesc: ReturnType<Cpu["loadDescriptor"]> | undefined;
  let mask: number;
  let target: number;
  let pops = false;
  const oldCpl = cpu.cpl;
  try {
    ripLo = pop(cpu, size);
    ripHi = cpu.tmpHi;
    csSel = pop(cpu, size) & 0xffff;
    flags = pop(cpu, size) >>> 0;
    rpl = csSel & 3;
    if (rpl < oldCpl) cpu.gp(csSel & 0xfffc);
    pops = longMode || rpl > oldCpl;
    if (pops) {
      rspLo = pop(cpu, size);
      rspHi = cpu.tmpHi;
      ssSel = pop(cpu, size) & 0xffff;
    }
    cs = cpu.loadDescriptor(csSel);
    if ((cs.attr & 0x18) !== 0x18) cpu.gp(csSel & 0xfffc);
    if ((cs.attr & 0x80) === 0) cpu.fault(Vector.NP, csSel & 0xfffc);
    // RFLAGS: IOPL only at CPL 0, IF when CPL <= IOPL (SDM "IRET" operation).
    mask = RFLAGS_WRITABLE & ~(RFLAGS_IOPL | RFLAGS_IF);
    const iopl = (cpu.flagsOther & RFLAGS_IOPL) >>> 12;
    if (oldCpl === 0) mask |= RFLAGS_IOPL;
    if (oldCpl <= iopl) mask |= RFLAGS_IF;
    if (size === 2) mask &= 0xffff;
    if ((flags & RFLAGS_VM) !== 0 && oldCpl === 0 && !longMode) cpu.gp(0);
    target = size === 8 ? toSigned64(ripLo, ripHi) : size === 4 ? ripLo >>> 0 : ripLo & 0xffff;
    const newLong = longMode && (cs.attr & SEG_ATTR_L) !== 0;
    if (newLong && (target < -TWO_47 || target >= TWO_47)) cpu.gp(0);
    if (pops) {
      // A null SS only for a return to 64-bit mode at CPL < 3; else the SS descriptor, read at
      // the new CPL's privilege before anything is committed.
      if ((ssSel & 0xfffc) === 0) {
        if (!longMode || rpl === 3) cpu.gp(0);
      } else ssDesc = cpu.loadDescriptor(ssSel);
    }
    cs.attr = markAccessed(cpu, csSel, cs.attr);
    if (ssDesc !== undefined) ssDesc.attr = markAccessed(cpu, ssSel, ssDesc.attr);
  } catch (e) {
    cpu.lo[4] = savedRspLo;
    cpu.hi[4] = savedRspHi;
    throw e;
  }
  // Commit.
  cpu.cpl = rpl;
  const csCache = cpu.seg[Seg.CS]!;
  csCache.selector = csSel;
  csCache.base = cs.base;
  csCache.limit = cs.limit;
  csCache.attr = cs.attr;
  cpu.setFlags(flags | RFLAGS_FIXED, mask);
  if (pops) {
    const ss = cpu.seg[Seg.SS]!;
    ss.selector = ssSel;
    if (ssDesc === undefined) {
      ss.attr = 0;
      ss.base = 0;
    } else {
      ss.base = ssDesc.base;
      ss.limit = ssDesc.limit;
      ss.attr = ssDesc.attr;
    }
    if (size === 8 || longMode) {
      cpu.lo[4] = rspLo;
      cpu.hi[4] = size === 8 ? rspHi : 0;
    } else cpu.setReg32(4, rspLo);
  }
  if (rpl > oldCpl) {
    for (const s of [Seg.ES, Seg.DS, Seg.FS, Seg.GS]) {
      const c = cpu.seg[s]!;
      const dpl = (c.attr >>> 5) & 3;
      const conformingCode = (c.attr & 0x1c) === 0x1c;
      if (c.selector !== 0 && dpl < rpl && !conformingCode) {
        c.selector = 0;
        c.attr = 0;
      }
    }
  }
  cpu.rip = target;
  cpu.nmiBlocked = false; // IRET ends NMI blocking (SDM 6.7.1)
  cpu.updateMode();
}

/** SYSCALL (0F 05): IA-32e mode only, with EFER.SCE (SDM "SYSCALL"). */
export function syscall(cpu: Cpu): void {
  if (!cpu.mode64 || (cpu.efer & EFER_SCE) === 0) cpu.undefinedOpcode("0f 05 (SYSCALL disabled)");
  const next = cpu.rip;
  cpu.setRegFromNumber(1, next);
  const flags = cpu.getFlags();
  cpu.setReg32(11, flags & ~RFLAGS_RF);
  const sel = cpu.star.hi & 0xffff; // STAR[47:32]
  const cs = cpu.seg[Seg.CS]!;
  cs.selector = sel & 0xfffc;
  cs.base = 0;
  cs.limit = 0xffff_ffff;
  cs.attr = 0xa09b; // 64-bit code, DPL 0, present
  const ss = cpu.seg[Seg.SS]!;
  ss.selector = (sel + 8) & 0xfffc;
  ss.base = 0;
  ss.limit = 0xffff_ffff;
  ss.attr = 0xc093;
  cpu.cpl = 0;
  cpu.setFlags(0, (cpu.fmask | RFLAGS_RF) & ~RFLAGS_FIXED);
  cpu.rip = cpu.lstar;
  cpu.updateMode();
}

/** SYSRET (0F 07): back to CPL 3 in 64-bit mode (REX.W) or compatibility mode (SDM "SYSRET"). */
export function sysret(cpu: Cpu, i: Insn): void {
  if (!cpu.mode64 || (cpu.efer & EFER_SCE) === 0) cpu.undefinedOpcode("0f 07 (SYSRET disabled)");
  if (cpu.cpl !== 0) cpu.gp(0);
  const to64 = i.opSize === 8;
  const target = to64 ? cpu.regAddr(1) : cpu.lo[1]! >>> 0;
  if (to64 && (target < -TWO_47 || target >= TWO_47)) cpu.gp(0);
  const base = cpu.star.hi >>> 16; // STAR[63:48]
  const cs = cpu.seg[Seg.CS]!;
  cs.selector = ((to64 ? base + 16 : base) & 0xfffc) | 3;
  cs.base = 0;
  cs.limit = 0xffff_ffff;
  cs.attr = to64 ? 0xa0fb : 0xc0fb; // DPL 3 code: 64-bit, or 32-bit compatibility
  const ss = cpu.seg[Seg.SS]!;
  ss.selector = ((base + 8) & 0xfffc) | 3;
  ss.base = 0;
  ss.limit = 0xffff_ffff;
  ss.attr = 0xc0f3;
  cpu.cpl = 3;
  cpu.setFlags((cpu.lo[11]! & ~(RFLAGS_RF | RFLAGS_VM)) | RFLAGS_FIXED, RFLAGS_WRITABLE);
  cpu.rip = target;
  cpu.updateMode();
}

/** HLT (F4): privileged; the vCPU waits for an interrupt, or exits with HLT exiting. */
export function hlt(cpu: Cpu, i: Insn): void {
  if (cpu.cpl !== 0) cpu.gp(0);
  if (cpu.vmcs !== undefined && (cpu.vmxProc & CPU_HLT_EXITING) !== 0) {
    cpu.deferExit(ExitReason.Hlt, 0, i.len);
    return;
  }
  cpu.halted = true;
}
