/**
 * System instructions: control and debug registers, descriptor tables, TR/LDTR, INVLPG, port
 * I/O, CPUID, RDMSR/WRMSR, RDTSC(P), SWAPGS, CLI/STI, CLAC/STAC, segment-register moves
 * (SDM Vol. 2 and Vol. 3A ch. 2-6). Privileged ones raise #GP(0) above CPL 0.
 */
import { Access, Vector } from "@vtlab/arch";
import type { Cpu } from "../cpu.js";
import { toSigned64 } from "../cpu/int64.js";
import type { Insn } from "../decode/insn.js";
import {
  CR0_PE,
  CR0_PG,
  CR0_TS,
  CR0_WP,
  CR4_LA57,
  CR4_PAE,
  CR4_PGE,
  CR4_PSE,
  CR4_SMEP,
  CR4_SUPPORTED,
  CR4_TSD,
  DEBUGCTL_WRITABLE,
  DR6_INIT,
  DR6_WRITABLE,
  DR7_INIT,
  DR7_WRITABLE,
  EFER_LMA,
  EFER_LME,
  EFER_WRITABLE,
  MSR,
  PAT_POWER_UP,
  RFLAGS_AC,
  RFLAGS_IF,
  RFLAGS_IOPL,
  Seg,
  patValid,
} from "../regs.js";
import { ea, eaUnchecked, readE, readReg, writeE, writeReg } from "./operands.js";
import { checkIo } from "./string.js";
import { ExitReason } from "../vmx/exit-reasons.js";
import { VmcsField } from "../vmx/vmcs-fields.js";
import {
  CPU_CR3_LOAD_EXITING,
  CPU_CR3_STORE_EXITING,
  CPU_CR8_LOAD_EXITING,
  CPU_CR8_STORE_EXITING,
  CPU_INVLPG_EXITING,
  CPU_MOV_DR_EXITING,
  CPU_PAUSE_EXITING,
  SECONDARY_PAUSE_LOOP_EXITING,
  CPU_RDTSC_EXITING,
  CPU_USE_TSC_OFFSETTING,
  SECONDARY_DESC_TABLE_EXITING,
  SECONDARY_ENABLE_RDTSCP,
  SECONDARY_WBINVD_EXITING,
} from "../vmx/controls.js";
import { CrAccessType, cr3TargetMatches, crQualification, descriptorTableInfo, ioExits, ioQualification, msrExits } from "../vmx/exits.js";

const TWO_32 = 0x1_0000_0000;

function privileged(cpu: Cpu): void {
  if (cpu.cpl !== 0) cpu.gp(0);
}

/** MOV r, CRn (0F 20): `i.reg` = CR number, `i.rm` = GPR. */
export function movFromCr(cpu: Cpu, i: Insn): void {
  privileged(cpu);
  let v: number;
  const vmx = cpu.vmcs !== undefined;
  switch (i.reg) {
    case 0:
      // In non-root operation, host-owned bits read from the CR0 read shadow (SDM 25.6.6).
      v = (vmx ? (cpu.cr0 & ~cpu.vmxCr0Mask) | (cpu.vmxCr0Shadow & cpu.vmxCr0Mask) : cpu.cr0) >>> 0;
      break;
    case 2:
      v = cpu.cr2;
      break;
    case 3:
      if (vmx && (cpu.vmxProc & CPU_CR3_STORE_EXITING) !== 0) {
        cpu.deferExit(ExitReason.CrAccess, crQualification(3, CrAccessType.MovFromCr, i.rm), i.len); // before any effect: no throw
        return;
      }
      v = cpu.cr3;
      break;
    case 4:
      v = (vmx ? (cpu.cr4 & ~cpu.vmxCr4Mask) | (cpu.vmxCr4Shadow & cpu.vmxCr4Mask) : cpu.cr4) >>> 0;
      break;
    case 8:
      if (vmx && (cpu.vmxProc & CPU_CR8_STORE_EXITING) !== 0) cpu.vmExit(ExitReason.CrAccess, crQualification(8, CrAccessType.MovFromCr, i.rm), i.len);
      v = cpu.cr8;
      break;
    default:
      cpu.undefinedOpcode(`0f 20 (mov from cr${i.reg})`);
  }
  if (cpu.mode64) cpu.setRegFromNumber(i.rm, v < 0 ? v : v);
  else cpu.setReg32(i.rm, v | 0);
}

/** MOV CRn, r (0F 22), with the SDM's checks for CR0, CR3, CR4 and CR8. */
export function movToCr(cpu: Cpu, i: Insn): void {
  privileged(cpu);
  let lo = cpu.lo[i.rm]! >>> 0;
  const hi = cpu.mode64 ? cpu.hi[i.rm]! >>> 0 : 0;
  if (cpu.vmcs !== undefined) {
    // SDM 26.1.3: MOV to CR0/CR4 exits when a host-owned bit would differ from its read shadow;
    // otherwise host-owned bits keep their value. CR3 and CR8 loads exit by control.
    // The exit is decided before any effect of the instruction: deferExit, no throw.
    let exits = false;
    if (i.reg === 0) {
      exits = ((lo ^ cpu.vmxCr0Shadow) & cpu.vmxCr0Mask) !== 0;
      lo = ((lo & ~cpu.vmxCr0Mask) | (cpu.cr0 & cpu.vmxCr0Mask)) >>> 0;
    } else if (i.reg === 4) {
      exits = ((lo ^ cpu.vmxCr4Shadow) & cpu.vmxCr4Mask) !== 0;
      lo = ((lo & ~cpu.vmxCr4Mask) | (cpu.cr4 & cpu.vmxCr4Mask)) >>> 0;
    } else if (i.reg === 3) exits = (cpu.vmxProc & CPU_CR3_LOAD_EXITING) !== 0 && !cr3TargetMatches(cpu, hi * TWO_32 + lo);
    else if (i.reg === 8) exits = (cpu.vmxProc & CPU_CR8_LOAD_EXITING) !== 0;
    if (exits) {
      cpu.deferExit(ExitReason.CrAccess, crQualification(i.reg, CrAccessType.MovToCr, i.rm), i.len);
      return;
    }
  }
  switch (i.reg) {
    case 0:
      writeCr0(cpu, lo, hi);
      return;
    case 2:
      cpu.cr2 = cpu.mode64 ? toSigned64(lo, hi) : lo;
      return;
    case 3: {
      // Bits 63:MAXPHYADDR are reserved (#GP); PCID (bits 11:0) is kept without CR4.PCIDE meaning.
      const maxBits = cpu.paging.maxPhyAddr;
      if (maxBits < 64 && hi >>> (maxBits - 32) !== 0) cpu.gp(0);
      // PAE paging: the load takes the four PDPTEs with it (#GP and nothing loaded on a reserved bit, SDM 4.4.1).
      if (cpu.paePaging()) cpu.loadPdptes(lo);
      cpu.cr3 = hi * TWO_32 + lo;
      cpu.flushTlb((cpu.cr4 & CR4_PGE) !== 0);
      return;
    }
    case 4:
      writeCr4(cpu, lo, hi);
      return;
    case 8:
      if (hi !== 0 || lo > 15) cpu.gp(0);
      cpu.cr8 = lo;
      return;
    default:
      cpu.undefinedOpcode(`0f 22 (mov to cr${i.reg})`);
  }
}

export function writeCr0(cpu: Cpu, lo: number, hi: number): void {
  if (hi !== 0) cpu.gp(0);
  if ((lo & CR0_PG) !== 0 && (lo & CR0_PE) === 0) cpu.gp(0);
  // PE = 0 enters real-address mode, PE = 1 leaves it; CS and the other segment registers keep
  // their cached descriptors until the next load (the far jump after MOV CR0, SDM 10.9).
  const old = cpu.cr0;
  const next = (lo | 0x10) | 0; // ET is hardwired to 1
  if ((next & CR0_PG) !== 0 && (old & CR0_PG) === 0 && (cpu.efer & EFER_LME) !== 0 && (cpu.cr4 & CR4_PAE) === 0) cpu.gp(0);
  if ((next & CR0_PG) === 0 && (old & CR0_PG) !== 0 && cpu.mode64) cpu.gp(0); // leaving long mode from 64-bit code
  // Turning paging on in PAE mode loads the PDPTEs from CR3 first (SDM 4.4.1).
  if ((old & CR0_PG) === 0 && cpu.paePaging(next)) cpu.loadPdptes(cpu.cr3);
  cpu.cr0 = next;
  if (((old ^ next) & (CR0_PG | CR0_WP | CR0_PE)) !== 0) {
    cpu.updateLongMode();
    cpu.flushTlb(false);
  }
}

export function writeCr4(cpu: Cpu, lo: number, hi: number): void {
  if (hi !== 0 || (lo & ~CR4_SUPPORTED) !== 0) cpu.gp(0);
  const old = cpu.cr4;
  if ((cpu.efer & EFER_LMA) !== 0 && (lo & CR4_PAE) === 0) cpu.gp(0);
  if ((cpu.efer & EFER_LMA) !== 0 && ((old ^ lo) & CR4_LA57) !== 0) cpu.gp(0);
  // With paging on outside IA-32e mode, a change of PAE, PGE, PSE or SMEP that leaves PAE paging
  // on reloads the PDPTEs (SDM 4.4.1).
  if (((old ^ lo) & (CR4_PAE | CR4_PGE | CR4_PSE | CR4_SMEP)) !== 0 && cpu.paePaging(cpu.cr0, lo)) cpu.loadPdptes(cpu.cr3);
  cpu.cr4 = lo;
  cpu.updateMode();
  if (((old ^ lo) & ~0) !== 0) cpu.flushTlb(false);
}

/**
 * MOV r, DRn / MOV DRn, r (0F 21, 0F 23): stored; breakpoints themselves are not modelled.
 * DR4/DR5 alias DR6/DR7 (CR4.DE is not supported). DR6 and DR7 keep their fixed bits; in
 * 64-bit mode a value with bits 63:32 set is #GP(0) for them (SDM "MOV--Move to/from Debug Registers").
 */
export function movDr(cpu: Cpu, i: Insn): void {
  privileged(cpu);
  const n = i.reg === 4 ? 6 : i.reg === 5 ? 7 : i.reg;
  if (n > 7) cpu.undefinedOpcode(`mov dr${i.reg}`);
  if (cpu.vmcs !== undefined && (cpu.vmxProc & CPU_MOV_DR_EXITING) !== 0) {
    // DR number 2:0, direction bit 4 (1 = MOV from DR), GPR 11:8 (SDM Table 28-4).
    cpu.vmExit(ExitReason.DrAccess, (i.reg & 7) | (i.cc === 0 ? 1 << 4 : 0) | (i.rm << 8), i.len);
  }
  if (i.cc === 0) {
    cpu.setRegFromNumber(i.rm, cpu.dr[n]!);
    return;
  }
  const hi = cpu.mode64 ? cpu.hi[i.rm]! : 0;
  const lo = cpu.lo[i.rm]! >>> 0;
  if (n >= 6) {
    if (hi !== 0) cpu.gp(0);
    cpu.dr[n] = n === 6 ? ((lo & DR6_WRITABLE) | DR6_INIT) >>> 0 : ((lo & DR7_WRITABLE) | DR7_INIT) >>> 0;
    return;
  }
  cpu.dr[n] = cpu.mode64 ? toSigned64(lo, hi) : lo;
}

/** LGDT/LIDT (0F 01 /2, /3) and SGDT/SIDT (/0, /1): `i.cc` 0 SGDT, 1 SIDT, 2 LGDT, 3 LIDT. */
export function descriptorTable(cpu: Cpu, i: Insn): void {
  if (cpu.vmcs !== undefined && (cpu.vmxProc2 & SECONDARY_DESC_TABLE_EXITING) !== 0) {
    // Identity: 0 SGDT, 1 SIDT, 2 LGDT, 3 LIDT (i.cc uses the same order). The qualification is the displacement.
    cpu.vmExit(ExitReason.GdtrIdtrAccess, i.disp, i.len, { instructionInfo: descriptorTableInfo(i, i.cc) });
  }
  const lin = ea(cpu, i);
  const gdt = (i.cc & 1) === 0;
  if (i.cc >= 2) {
    privileged(cpu);
    const limit = cpu.read16(lin);
    const baseLo = cpu.read32(lin + 2) >>> 0;
    const base = cpu.mode64 ? toSigned64(baseLo, cpu.read32(lin + 6)) : i.opSize === 2 ? baseLo & 0xffffff : baseLo;
    // 64-bit mode: a non-canonical base is #GP(0) (SDM "LGDT/LIDT", 64-bit mode exceptions).
    if (cpu.mode64 && !cpu.canonical(base)) cpu.gp(0);
    if (gdt) {
      cpu.gdtrLimit = limit;
      cpu.gdtrBase = base;
    } else {
      cpu.idtrLimit = limit;
      cpu.idtrBase = base;
    }
    return;
  }
  const limit = gdt ? cpu.gdtrLimit : cpu.idtrLimit;
  const base = gdt ? cpu.gdtrBase : cpu.idtrBase;
  cpu.write16(lin, limit);
  cpu.write32(lin + 2, base >>> 0);
  if (cpu.mode64) cpu.write32(lin + 6, Math.floor(base / TWO_32) | 0);
}

/** Group 6 (0F 00): SLDT /0, STR /1, LLDT /2, LTR /3. */
export function group6(cpu: Cpu, i: Insn): void {
  // Not recognized in real-address mode (SDM "SLDT", "STR", "LLDT", "LTR": #UD); #UD comes before VM exits (SDM 26.1.1).
  if (cpu.realMode) cpu.undefinedOpcode(`${["sldt", "str", "lldt", "ltr"][i.cc & 3]!} in real mode`);
  if (cpu.vmcs !== undefined && (cpu.vmxProc2 & SECONDARY_DESC_TABLE_EXITING) !== 0) {
    // Identity: 0 SLDT, 1 STR, 2 LLDT, 3 LTR (the group-6 order).
    cpu.vmExit(ExitReason.LdtrTrAccess, i.isMem ? i.disp : 0, i.len, { instructionInfo: descriptorTableInfo(i, i.cc) });
  }
  switch (i.cc) {
    case 0:
      writeE(cpu, i, i.isMem ? 2 : i.opSize, cpu.ldtr.selector, 0, false);
      return;
    case 1:
      writeE(cpu, i, i.isMem ? 2 : i.opSize, cpu.tr.selector, 0, false);
      return;
    case 2:
    case 3: {
      privileged(cpu);
      const selector = readE(cpu, i, 2) & 0xffff;
      const isTr = i.cc === 3;
      if ((selector & 0xfffc) === 0) {
        if (isTr) cpu.gp(0);
        cpu.ldtr.selector = 0;
        cpu.ldtr.limit = 0;
        return;
      }
      if ((selector & 4) !== 0) cpu.gp(selector & 0xfffc);
      const d = cpu.loadDescriptor(selector);
      const type = d.attr & 0x1f;
      // LTR: an available 64-bit TSS (type 9); LLDT: an LDT (type 2). System descriptors are 16 bytes in IA-32e mode.
      if (isTr ? type !== 0x09 : type !== 0x02) cpu.gp(selector & 0xfffc);
      if ((d.attr & 0x80) === 0) cpu.fault(Vector.NP, selector & 0xfffc);
      let base = d.base;
      if ((cpu.efer & EFER_LMA) !== 0) {
        const upper = cpu.readAccess(cpu.gdtrBase + (selector & 0xfff8) + 8, 4, 0x100);
        base = toSigned64(d.base, upper);
      }
      const target = isTr ? cpu.tr : cpu.ldtr;
      target.selector = selector;
      target.base = base;
      target.limit = d.limit;
      target.attr = d.attr;
      if (isTr) {
        // Mark the descriptor busy (type 11).
        const at = cpu.gdtrBase + (selector & 0xfff8) + 5;
        cpu.write8(at, cpu.read8(at) | 0x02);
        target.attr |= 0x02;
      }
    }
  }
}

/**
 * The two descriptor words for `selector` in the GDT or LDT, or undefined for a null selector or
 * one past the table's limit (what LAR, LSL, VERR and VERW answer with ZF = 0, not a fault). The
 * reads are implicit supervisor accesses: a #PF on the table is still a fault.
 */
function descriptorWords(cpu: Cpu, selector: number): { lo: number; hi: number } | undefined {
  const ldt = (selector & 4) !== 0;
  if (!ldt && (selector & 0xfff8) === 0) return undefined;
  if (ldt && (cpu.ldtr.selector & 0xfffc) === 0) return undefined; // no LDT loaded
  const base = ldt ? cpu.ldtr.base : cpu.gdtrBase;
  const limit = ldt ? cpu.ldtr.limit : cpu.gdtrLimit;
  const index = selector & 0xfff8;
  if (index + 7 > limit) return undefined;
  const lo = cpu.readAccess(base + index, 4, Access.Read | Access.Implicit) >>> 0;
  const hi = cpu.readAccess(base + index + 4, 4, Access.Read | Access.Implicit) >>> 0;
  return { lo, hi };
}

/**
 * Whether LAR (`lsl` false) or LSL may report the descriptor `hi` for `selector` (SDM "LAR",
 * "LSL"): code and data segments, and the system types valid in the current mode (IA-32e mode:
 * LDT, 64-bit TSS available/busy, and for LAR the 64-bit call gate; legacy mode: 16/32-bit TSS,
 * LDT, and for LAR call and task gates); all but conforming code segments need DPL >= CPL and
 * DPL >= RPL.
 */
function larLslVisible(cpu: Cpu, selector: number, hi: number, lsl: boolean): boolean {
  const type = (hi >>> 8) & 0xf;
  const system = (hi & 0x1000) === 0;
  if (system) {
    const ia32e = (cpu.efer & EFER_LMA) !== 0;
    const ok = ia32e ? type === 0x2 || type === 0x9 || type === 0xb || (!lsl && type === 0xc) : type === 0x1 || type === 0x2 || type === 0x3 || type === 0x9 || type === 0xb || (!lsl && (type === 0x4 || type === 0x5 || type === 0xc));
    if (!ok) return false;
  }
  const conformingCode = !system && (type & 0xc) === 0xc;
  const dpl = (hi >>> 13) & 3;
  return conformingCode || (dpl >= cpu.cpl && dpl >= (selector & 3));
}

/** LAR r, r/m16 (0F 02) and LSL r, r/m16 (0F 03): `i.cc` 1 = LSL. ZF = 1 and the destination written when the descriptor is visible, else ZF = 0 and the destination unchanged. */
export function larLsl(cpu: Cpu, i: Insn): void {
  if ((cpu.cr0 & CR0_PE) === 0) cpu.undefinedOpcode(i.cc === 1 ? "lsl in real mode" : "lar in real mode");
  const selector = readE(cpu, i, 2) & 0xffff;
  const d = descriptorWords(cpu, selector);
  const lsl = i.cc === 1;
  if (d === undefined || !larLslVisible(cpu, selector, d.hi, lsl)) {
    cpu.fZ = 1;
    return;
  }
  let value: number;
  if (lsl) {
    const raw = (d.lo & 0xffff) | (d.hi & 0xf_0000);
    value = (d.hi & 0x80_0000) !== 0 ? (raw * 4096 + 0xfff) >>> 0 : raw; // G: 4 KiB units
  } else value = i.opSize === 2 ? d.hi & 0xff00 : d.hi & 0x00f0_ff00; // access rights: bits 23:20 and 15:8
  if (i.opSize === 2) cpu.setReg16(i.reg, value);
  else cpu.setReg32(i.reg, value | 0);
  cpu.fZ = 0;
}

/**
 * VERR / VERW r/m16 (0F 00 /4, /5): `i.cc` 1 = VERW. ZF = 1 when the segment is readable
 * (code with R, or data) or writable (data with W) at the current CPL: DPL >= CPL and
 * DPL >= RPL, except that a readable conforming code segment is always readable (SDM "VERR/VERW").
 */
export function verrVerw(cpu: Cpu, i: Insn): void {
  if ((cpu.cr0 & CR0_PE) === 0) cpu.undefinedOpcode(i.cc === 1 ? "verw in real mode" : "verr in real mode");
  const selector = readE(cpu, i, 2) & 0xffff;
  const d = descriptorWords(cpu, selector);
  let ok = false;
  if (d !== undefined && (d.hi & 0x1000) !== 0) {
    const type = (d.hi >>> 8) & 0xf;
    const code = (type & 0x8) !== 0;
    const dpl = (d.hi >>> 13) & 3;
    const privileged = dpl >= cpu.cpl && dpl >= (selector & 3);
    if (i.cc === 1) ok = !code && (type & 0x2) !== 0 && privileged;
    else if (code) ok = (type & 0x2) !== 0 && ((type & 0x4) !== 0 || privileged);
    else ok = privileged;
  }
  cpu.fZ = ok ? 0 : 1;
}

/** SMSW (0F 01 /4), LMSW (/6), CLTS (0F 06). */
export function smsw(cpu: Cpu, i: Insn): void {
  writeE(cpu, i, i.isMem ? 2 : i.opSize, cpu.cr0, 0, false);
}
export function lmsw(cpu: Cpu, i: Insn): void {
  privileged(cpu);
  const v = readE(cpu, i, 2) & 0xf;
  if (cpu.vmcs !== undefined) {
    // SDM 26.1.3: LMSW exits if a host-owned MP/EM/TS bit would differ from the shadow, or if a
    // host-owned PE is 0 in the shadow and the source sets it.
    const m = cpu.vmxCr0Mask & 0xf;
    const sh = cpu.vmxCr0Shadow & 0xf;
    if (((v ^ sh) & m & 0xe) !== 0 || ((m & 1) !== 0 && (sh & 1) === 0 && (v & 1) !== 0)) {
      cpu.vmExit(ExitReason.CrAccess, crQualification(0, CrAccessType.Lmsw, 0, v) | (i.isMem ? 1 << 6 : 0), i.len, i.isMem ? { guestLinear: cpu.lastEa } : {});
    }
  }
  // LMSW cannot clear PE.
  writeCr0(cpu, ((cpu.cr0 & ~0xe) | v | (cpu.cr0 & CR0_PE)) >>> 0, 0);
}
export function clts(cpu: Cpu, i: Insn): void {
  privileged(cpu);
  if (cpu.vmcs !== undefined && (cpu.vmxCr0Mask & CR0_TS) !== 0) {
    // CLTS exits when TS is host-owned and set in the shadow; host-owned and clear, it does nothing.
    if ((cpu.vmxCr0Shadow & CR0_TS) !== 0) cpu.vmExit(ExitReason.CrAccess, crQualification(0, CrAccessType.Clts, 0), i.len);
    return;
  }
  cpu.cr0 &= ~CR0_TS;
}

/** INVLPG m (0F 01 /7). */
export function invlpg(cpu: Cpu, i: Insn): void {
  privileged(cpu);
  const lin = eaUnchecked(cpu, i);
  if (cpu.vmcs !== undefined && (cpu.vmxProc & CPU_INVLPG_EXITING) !== 0) {
    cpu.deferExit(ExitReason.Invlpg, lin, i.len); // before any effect: no throw
    return;
  }
  cpu.invalidatePage(lin);
}

/** IN AL/AX/EAX, imm8 / DX (E4, E5, EC, ED): `i.cc` 1 = port in DX. */
export function inPort(cpu: Cpu, i: Insn): void {
  checkIo(cpu);
  const port = i.cc === 1 ? cpu.lo[2]! & 0xffff : i.imm & 0xff;
  const size = Math.min(i.opSize, 4) as 1 | 2 | 4;
  if (cpu.vmcs !== undefined && ioExits(cpu, port, size)) {
    cpu.deferExit(ExitReason.IoInstruction, ioQualification(port, size, true, false, false, i.cc !== 1), i.len);
    return;
  }
  writeReg(cpu, 0, false, size, cpu.ports.read(port, size), 0);
}

/** OUT imm8 / DX, AL/AX/EAX (E6, E7, EE, EF). */
export function outPort(cpu: Cpu, i: Insn): void {
  checkIo(cpu);
  const port = i.cc === 1 ? cpu.lo[2]! & 0xffff : i.imm & 0xff;
  const size = Math.min(i.opSize, 4) as 1 | 2 | 4;
  if (cpu.vmcs !== undefined && ioExits(cpu, port, size)) {
    cpu.deferExit(ExitReason.IoInstruction, ioQualification(port, size, false, false, false, i.cc !== 1), i.len);
    return;
  }
  cpu.ports.write(port, size, readReg(cpu, 0, false, size));
}

/** CPUID (0F A2): always a VM exit in non-root operation. */
export function cpuid(cpu: Cpu, i: Insn): void {
  if (cpu.vmcs !== undefined) {
    cpu.deferExit(ExitReason.Cpuid, 0, i.len); // no throw: the run loop takes the exit next
    return;
  }
  const out = cpu.cpuidOut;
  const leaf = cpu.lo[0]! >>> 0;
  const sub = cpu.lo[1]! >>> 0;
  out.fill(0);
  if (cpu.hooks.cpuid !== undefined) cpu.hooks.cpuid(leaf, sub, out);
  else defaultCpuid(cpu, leaf, sub, out);
  cpu.setReg32(0, out[0]!);
  cpu.setReg32(3, out[1]!);
  cpu.setReg32(1, out[2]!);
  cpu.setReg32(2, out[3]!);
}

/** CPUID.01H:EDX.FPU (bit 0, SDM Vol. 2A Table 3-11): an x87 FPU on the chip. */
export const CPUID_1_EDX_FPU = 1 << 0;
/** CPUID.1:EDX.CX8 (bit 8): CMPXCHG8B (exec/cache-atomic.ts). */
export const CPUID_1_EDX_CX8 = 1 << 8;
/** CPUID.1:EDX.CLFSH (bit 19): CLFLUSH, with its line size in EBX[15:8]. */
export const CPUID_1_EDX_CLFSH = 1 << 19;
/** CPUID.1:EDX.FXSR (bit 24): FXSAVE/FXRSTOR and CR4.OSFXSR. */
export const CPUID_1_EDX_FXSR = 1 << 24;
/** CPUID.1:EDX.SSE (bit 25) and SSE2 (bit 26): exec/sse*.ts, checked against the host CPU. */
export const CPUID_1_EDX_SSE = 1 << 25;
export const CPUID_1_EDX_SSE2 = 1 << 26;
/** CPUID.1:ECX.CX16 (bit 13): CMPXCHG16B; POPCNT (bit 23). */
export const CPUID_1_ECX_CX16 = 1 << 13;
export const CPUID_1_ECX_POPCNT = 1 << 23;
/** CLFLUSH line size, in 8-byte units (64 bytes). */
export const CPUID_1_CLFLUSH_LINE_QWORDS = 8;

const ascii = (s: string): number => s.charCodeAt(0) | (s.charCodeAt(1) << 8) | (s.charCodeAt(2) << 16) | (s.charCodeAt(3) << 24);

/**
 * The CPU this interpreter is, as CPUID describes it: only what it implements. Vendor
 * "GenuineIntel" (it models an Intel VT-x processor); the x87 FPU (exec/x87.ts), FXSR, SSE, SSE2,
 * CLFSH, CX8, CX16 (no MMX, SSE3 or later, no XSAVE/AVX); LM, NX, SYSCALL, 1 GiB pages, RDTSCP,
 * PGE, PAT, CMOV, POPCNT, LZCNT, SMEP, SMAP, LAHF in 64-bit mode.
 */
export function defaultCpuid(cpu: Cpu, leaf: number, sub: number, out: Int32Array): void {
  void sub;
  switch (leaf) {
    case 0:
      out[0] = 7;
      out[1] = ascii("Genu");
      out[3] = ascii("ineI");
      out[2] = ascii("ntel");
      return;
    case 1:
      out[0] = 0x000506e3; // family 6, model 0x5e (a Skylake-era signature)
      out[1] = 0x00010000 | (CPUID_1_CLFLUSH_LINE_QWORDS << 8); // one logical processor; CLFLUSH line size in 8-byte units
      out[2] = CPUID_1_ECX_CX16 | CPUID_1_ECX_POPCNT;
      // FPU(0) TSC(4) MSR(5) PAE(6) CX8(8) PGE(13) CMOV(15) PAT(16) CLFSH(19) FXSR(24) SSE(25) SSE2(26)
      out[3] = CPUID_1_EDX_FPU | (1 << 4) | (1 << 5) | (1 << 6) | CPUID_1_EDX_CX8 | (1 << 13) | (1 << 15) | (1 << 16) | CPUID_1_EDX_CLFSH | CPUID_1_EDX_FXSR | CPUID_1_EDX_SSE | CPUID_1_EDX_SSE2;
      return;
    case 7:
      if (sub === 0) {
        out[1] = (1 << 7) | (1 << 9) | (1 << 20); // SMEP, ERMS, SMAP
        out[2] = 1 << 16; // LA57
      }
      return;
    case 0x8000_0000:
      out[0] = 0x8000_0008 | 0;
      return;
    case 0x8000_0001:
      out[2] = (1 << 0) | (1 << 5); // LAHF/SAHF in 64-bit mode, LZCNT (ABM)
      out[3] = (1 << 11) | (1 << 20) | (1 << 26) | (1 << 27) | (1 << 29); // SYSCALL, NX, 1 GiB pages, RDTSCP, LM
      return;
    case 0x8000_0008:
      out[0] = cpu.paging.maxPhyAddr | (48 << 8);
      return;
    default:
      return;
  }
}

/** RDTSC (0F 31): the time-stamp counter is the retired-instruction count plus the TSC offset (deterministic). */
export function rdtsc(cpu: Cpu, i: Insn): void {
  if ((cpu.cr4 & CR4_TSD) !== 0 && cpu.cpl !== 0) cpu.gp(0);
  if (cpu.vmcs !== undefined && (cpu.vmxProc & CPU_RDTSC_EXITING) !== 0) {
    cpu.deferExit(i.opcode === 0x131 ? ExitReason.Rdtsc : ExitReason.Rdtscp, 0, i.len);
    return;
  }
  const t = cpu.retired + cpu.tscOffset + tscOffsetting(cpu);
  cpu.setReg32(0, t | 0);
  cpu.setReg32(2, Math.floor(t / TWO_32) | 0);
}

/** RDTSCP (0F 01 F9): RDTSC plus ECX = IA32_TSC_AUX. */
export function rdtscp(cpu: Cpu, i: Insn): void {
  if (cpu.vmcs !== undefined && (cpu.vmxProc2 & SECONDARY_ENABLE_RDTSCP) === 0) cpu.undefinedOpcode("rdtscp (enable RDTSCP is 0)");
  rdtsc(cpu, i);
  if (cpu.pendingExit !== undefined) return; // RDTSC exiting: the exit is taken, ECX untouched
  cpu.setReg32(1, cpu.msrs.get(MSR.TSC_AUX)?.lo ?? 0);
}

/** RDMSR (0F 32) / WRMSR (0F 30): `i.cc` 0 = read, 1 = write. Unknown MSRs raise #GP(0). */
export function msrAccess(cpu: Cpu, i: Insn): void {
  privileged(cpu);
  const index = cpu.lo[1]! >>> 0;
  if (cpu.vmcs !== undefined && msrExits(cpu, index, i.cc === 1)) {
    cpu.deferExit(i.cc === 1 ? ExitReason.MsrWrite : ExitReason.MsrRead, 0, i.len);
    return;
  }
  if (i.cc === 0) {
    const v = readMsr(cpu, index);
    if (v === undefined) cpu.gp(0);
    cpu.setReg32(0, v.lo);
    cpu.setReg32(2, v.hi);
  } else if (!writeMsr(cpu, index, cpu.lo[0]! >>> 0, cpu.lo[2]! >>> 0)) cpu.gp(0);
}

const KNOWN_PLAIN_MSRS: ReadonlySet<number> = new Set([MSR.PAT, MSR.DEBUGCTL, MSR.SYSENTER_CS, MSR.SYSENTER_ESP, MSR.SYSENTER_EIP, MSR.TSC_AUX, MSR.APIC_BASE, MSR.FEATURE_CONTROL]);

function split(v: number): { lo: number; hi: number } {
  return { lo: v | 0, hi: Math.floor(v / TWO_32) | 0 };
}

export function readMsr(cpu: Cpu, index: number): { lo: number; hi: number } | undefined {
  switch (index) {
    case MSR.EFER:
      return { lo: cpu.efer, hi: 0 };
    case MSR.STAR:
      return { lo: cpu.star.lo | 0, hi: cpu.star.hi | 0 };
    case MSR.LSTAR:
      return split(cpu.lstar);
    case MSR.CSTAR:
      return split(cpu.cstar);
    case MSR.FMASK:
      return { lo: cpu.fmask, hi: 0 };
    case MSR.FS_BASE:
      return split(cpu.seg[Seg.FS]!.base);
    case MSR.GS_BASE:
      return split(cpu.seg[Seg.GS]!.base);
    case MSR.KERNEL_GS_BASE:
      return split(cpu.kernelGsBase);
    case MSR.TSC:
      return split(cpu.retired + cpu.tscOffset);
    default: {
      if (!KNOWN_PLAIN_MSRS.has(index)) return undefined;
      const v = cpu.msrs.get(index);
      if (index === MSR.APIC_BASE && v === undefined) return { lo: 0xfee0_0900 | 0, hi: 0 }; // enabled, BSP
      if (index === MSR.PAT && v === undefined) return { lo: PAT_POWER_UP.lo, hi: PAT_POWER_UP.hi };
      return v === undefined ? { lo: 0, hi: 0 } : { lo: v.lo | 0, hi: v.hi | 0 };
    }
  }
}

/** Returns false for a write the processor refuses with #GP(0). */
export function writeMsr(cpu: Cpu, index: number, lo: number, hi: number): boolean {
  const canonical = (h: number) => {
    const s = h | 0;
    return s >> 15 === 0 || s >> 15 === -1;
  };
  switch (index) {
    case MSR.EFER: {
      if (hi !== 0 || (lo & ~(EFER_WRITABLE | EFER_LMA)) !== 0) return false;
      // LME cannot change while paging is on (SDM 10.8.5).
      if ((cpu.cr0 & CR0_PG) !== 0 && ((lo ^ cpu.efer) & EFER_LME) !== 0) return false;
      cpu.efer = (lo & EFER_WRITABLE) | (cpu.efer & EFER_LMA);
      cpu.updateMode();
      cpu.flushTlb(false);
      return true;
    }
    case MSR.STAR:
      cpu.star = { lo, hi };
      return true;
    case MSR.LSTAR:
    case MSR.CSTAR:
      if (!canonical(hi)) return false;
      if (index === MSR.LSTAR) cpu.lstar = toSigned64(lo, hi);
      else cpu.cstar = toSigned64(lo, hi);
      return true;
    case MSR.FMASK:
      cpu.fmask = lo;
      return true;
    case MSR.FS_BASE:
    case MSR.GS_BASE:
    case MSR.KERNEL_GS_BASE: {
      if (!canonical(hi)) return false;
      const v = toSigned64(lo, hi);
      if (index === MSR.FS_BASE) cpu.seg[Seg.FS]!.base = v;
      else if (index === MSR.GS_BASE) cpu.seg[Seg.GS]!.base = v;
      else cpu.kernelGsBase = v;
      return true;
    }
    case MSR.TSC:
      cpu.tscOffset = hi * TWO_32 + lo - cpu.retired;
      return true;
    case MSR.PAT:
      // Reserved memory types (2, 3, 8-255) in any entry are #GP (SDM Vol. 3A 11.12.2).
      if (!patValid(lo, hi)) return false;
      cpu.msrs.set(index, { lo, hi });
      return true;
    case MSR.DEBUGCTL:
      if (hi !== 0 || (lo & ~DEBUGCTL_WRITABLE) !== 0) return false;
      cpu.msrs.set(index, { lo, hi: 0 });
      return true;
    default:
      if (!KNOWN_PLAIN_MSRS.has(index)) return false;
      cpu.msrs.set(index, { lo, hi });
      return true;
  }
}

/** SWAPGS (0F 01 F8): 64-bit mode, CPL 0. */
export function swapgs(cpu: Cpu): void {
  if (!cpu.mode64) cpu.undefinedOpcode("0f 01 f8 (swapgs outside 64-bit mode)");
  privileged(cpu);
  const gs = cpu.seg[Seg.GS]!;
  const t = gs.base;
  gs.base = cpu.kernelGsBase;
  cpu.kernelGsBase = t;
}

/** CLI (FA) / STI (FB): CPL <= IOPL; STI delays interrupts by one instruction. `i.cc` 1 = STI. */
export function cliSti(cpu: Cpu, i: Insn): void {
  if (cpu.cpl > (cpu.flagsOther & RFLAGS_IOPL) >>> 12) cpu.gp(0);
  if (i.cc === 0) cpu.flagsOther &= ~RFLAGS_IF;
  else {
    if ((cpu.flagsOther & RFLAGS_IF) === 0) cpu.interruptShadow = true;
    cpu.flagsOther |= RFLAGS_IF;
  }
}

/** CLAC / STAC (0F 01 CA / CB): CPL 0; change RFLAGS.AC (SMAP). `i.cc` 1 = STAC. */
export function clacStac(cpu: Cpu, i: Insn): void {
  privileged(cpu);
  cpu.setFlags(i.cc === 1 ? RFLAGS_AC : 0, RFLAGS_AC);
}

/** WBINVD, INVD (0F 09, 0F 08): privileged; caches are not modelled. INVD always exits in non-root operation, WBINVD by control. */
export function cacheFlush(cpu: Cpu, i: Insn): void {
  privileged(cpu);
  if (cpu.vmcs === undefined) return;
  if (i.opcode === 0x108) cpu.vmExit(ExitReason.Invd, 0, i.len);
  if ((cpu.vmxProc2 & SECONDARY_WBINVD_EXITING) !== 0) cpu.vmExit(ExitReason.Wbinvd, 0, i.len);
}

/**
 * PAUSE (F3 90): a hint, or a VM exit (SDM 26.1.3): always with PAUSE exiting; with PAUSE-loop
 * exiting at CPL 0, when it ends a loop of PAUSEs (each within PLE_GAP of the one before; the
 * first after VM entry starts one) that has lasted longer than PLE_WINDOW. Modelled more simply:
 * the time is counted in retired instructions (as for the preemption timer), not TSC ticks.
 */
export function pause(cpu: Cpu, i: Insn): void {
  const vmcs = cpu.vmcs;
  if (vmcs === undefined) return;
  if ((cpu.vmxProc & CPU_PAUSE_EXITING) !== 0) cpu.vmExit(ExitReason.Pause, 0, i.len);
  if ((cpu.vmxProc2 & SECONDARY_PAUSE_LOOP_EXITING) === 0 || cpu.cpl !== 0) return;
  const now = cpu.retired;
  if (cpu.plePrevious < cpu.vmxEntryRetired || now - cpu.plePrevious > vmcs.read32(VmcsField.PLE_GAP)) cpu.pleLoopStart = now;
  cpu.plePrevious = now;
  if (now - cpu.pleLoopStart > vmcs.read32(VmcsField.PLE_WINDOW)) {
    cpu.plePrevious = Number.NEGATIVE_INFINITY; // it did not retire: the PAUSE after the next entry starts a loop
    cpu.vmExit(ExitReason.Pause, 0, i.len);
  }
}

/** TSC_OFFSET when "use TSC offsetting" is on in non-root operation (SDM 25.6.5). */
function tscOffsetting(cpu: Cpu): number {
  if (cpu.vmcs === undefined || (cpu.vmxProc & CPU_USE_TSC_OFFSETTING) === 0) return 0;
  return cpu.vmcs.readNatural(VmcsField.TSC_OFFSET);
}

/** UD2 (0F 0B) and every opcode the table does not define. */
export function ud(cpu: Cpu, i: Insn): void {
  cpu.undefinedOpcode(i.mnemonic !== "" ? i.mnemonic : `opcode ${i.opcode.toString(16)}`);
}

/** MOV E, Sreg (8C). */
export function movESreg(cpu: Cpu, i: Insn): void {
  if (i.reg > 5) cpu.undefinedOpcode("8c (bad sreg)");
  writeE(cpu, i, i.isMem ? 2 : i.opSize, cpu.seg[i.reg]!.selector, 0, false);
}

/** MOV Sreg, E (8E): loading CS this way is #UD. */
export function movSregE(cpu: Cpu, i: Insn): void {
  if (i.reg === Seg.CS || i.reg > 5) cpu.undefinedOpcode("8e (mov cs / bad sreg)");
  const sel = readE(cpu, i, 2) & 0xffff;
  cpu.loadDataSegment(i.reg, sel);
  if (i.reg === Seg.SS) cpu.blockByMovSs();
}

/**
 * LDS, LES (C5, C4; outside 64-bit mode), LSS, LFS, LGS (0F B2, B4, B5): `i.cc` is the segment
 * register. The far pointer m16:16/32/64 is read (offset first, the selector after it), the
 * segment register loaded as MOV Sreg loads it (real mode: base = selector << 4; protected mode:
 * the descriptor checks), then the offset written to the register, so a fault leaves both as they
 * were (SDM "LDS/LES/LFS/LGS/LSS"). LSS does not block interrupts as MOV SS does.
 */
export function loadFarPointer(cpu: Cpu, i: Insn): void {
  const lin = ea(cpu, i);
  const size = i.opSize;
  const lo = size === 8 ? cpu.read64(lin) : size === 4 ? cpu.read32(lin) : cpu.read16(lin);
  const hi = size === 8 ? cpu.tmpHi : 0;
  const selector = cpu.read16(cpu.mode64 ? lin + size : (lin + size) >>> 0) & 0xffff;
  cpu.loadDataSegment(i.cc, selector);
  writeReg(cpu, i.reg, i.rex, size, lo, hi);
}

/** The segment register a PUSH/POP Sreg opcode names. */
function pushPopSegment(opcode: number): number {
  switch (opcode) {
    case 0x06:
    case 0x07:
      return Seg.ES;
    case 0x0e:
      return Seg.CS;
    case 0x16:
    case 0x17:
      return Seg.SS;
    case 0x1e:
    case 0x1f:
      return Seg.DS;
    case 0x1a0:
    case 0x1a1:
      return Seg.FS;
    default:
      return Seg.GS;
  }
}

/**
 * PUSH ES/CS/SS/DS (06, 0E, 16, 1E) and POP ES/SS/DS (07, 17, 1F) outside 64-bit mode, PUSH
 * FS/GS (0F A0, A8) and POP FS/GS (0F A1, A9): `i.cc` 1 = pop. POP SS blocks interrupts and
 * debug exceptions for one instruction, as MOV SS does (SDM "POP").
 */
export function pushPopSeg(cpu: Cpu, i: Insn): void {
  const size = i.opSize;
  const s = pushPopSegment(i.opcode);
  if (i.cc === 0) {
    const v = cpu.seg[s]!.selector;
    if (size === 8) cpu.push64(v, 0);
    else if (size === 4) cpu.push32(v);
    else cpu.push16(v);
  } else {
    // Read the selector first; RSP moves only when the load succeeds.
    const rspLo = cpu.lo[4]!;
    const rspHi = cpu.hi[4]!;
    const v = size === 8 ? cpu.pop64() : size === 4 ? cpu.pop32() : cpu.pop16();
    try {
      cpu.loadDataSegment(s, v & 0xffff);
    } catch (e) {
      cpu.lo[4] = rspLo;
      cpu.hi[4] = rspHi;
      throw e;
    }
    if (s === Seg.SS) cpu.blockByMovSs();
  }
}

/** VMCALL (0F 01 C1): a VM exit in non-root operation; #UD outside VMX operation (SDM "VMCALL"). */
export function vmcall(cpu: Cpu, i: Insn): void {
  if (cpu.vmcs !== undefined) {
    cpu.deferExit(ExitReason.Vmcall, 0, i.len);
    return;
  }
  cpu.undefinedOpcode("0f 01 c1 (vmcall outside VMX non-root operation)");
}
