/**
 * The exit decisions instruction handlers consult in VMX non-root operation (SDM Vol. 3C 26.1:
 * instructions that cause VM exits conditionally), and the exit qualifications they report
 * (SDM 28.2.1). Faults with priority over VM exits (privilege, IOPL, #UD) are checked by the
 * handlers before these.
 */
import type { Cpu } from "../cpu.js";
import { CPU_UNCOND_IO_EXITING, CPU_USE_IO_BITMAPS, CPU_USE_MSR_BITMAPS } from "./controls.js";
import { VmcsField } from "./vmcs-fields.js";

/** I/O-instruction exit qualification (SDM Table 28-5). */
export function ioQualification(port: number, size: number, input: boolean, string: boolean, rep: boolean, immediate: boolean): number {
  return (((port & 0xffff) << 16) | (immediate ? 1 << 6 : 0) | (rep ? 1 << 5 : 0) | (string ? 1 << 4 : 0) | (input ? 1 << 3 : 0) | ((size - 1) & 7)) >>> 0;
}

/** Whether an access to ports [port, port + size) exits: unconditional I/O exiting or a set bit in I/O bitmap A/B (SDM 26.1.3). */
export function ioExits(cpu: Cpu, port: number, size: number): boolean {
  const vmcs = cpu.vmcs;
  if (vmcs === undefined) return false;
  if ((cpu.vmxProc & CPU_USE_IO_BITMAPS) === 0) return (cpu.vmxProc & CPU_UNCOND_IO_EXITING) !== 0;
  for (let p = port; p < port + size; p++) {
    if (p > 0xffff) return true; // wrapping past 0xFFFF always exits
    const bitmap = vmcs.readNatural(p < 0x8000 ? VmcsField.IO_BITMAP_A : VmcsField.IO_BITMAP_B);
    const bit = p & 0x7fff;
    const byte = cpu.physRead(bitmap + (bit >>> 3), 1);
    if (((byte >>> (bit & 7)) & 1) !== 0) return true;
  }
  return false;
}

/** Whether RDMSR/WRMSR of `msr` exits: always without MSR bitmaps or outside their ranges, else the bitmap bit (SDM 25.6.9). */
export function msrExits(cpu: Cpu, msr: number, write: boolean): boolean {
  const vmcs = cpu.vmcs;
  if (vmcs === undefined) return false;
  if ((cpu.vmxProc & CPU_USE_MSR_BITMAPS) === 0) return true;
  let offset: number;
  if (msr <= 0x1fff) offset = 0;
  else if (msr >= 0xc000_0000 && msr <= 0xc000_1fff) offset = 1024;
  else return true;
  if (write) offset += 2048;
  const bit = msr & 0x1fff;
  const byte = cpu.physRead(vmcs.readNatural(VmcsField.MSR_BITMAP) + offset + (bit >>> 3), 1);
  return ((byte >>> (bit & 7)) & 1) !== 0;
}

/** Control-register access qualification (SDM Table 28-3): CR number 3:0, access type 5:4, GPR 11:8, LMSW source 31:16. */
export function crQualification(cr: number, type: number, gpr: number, lmswSource = 0): number {
  return (((lmswSource & 0xffff) << 16) | ((gpr & 15) << 8) | ((type & 3) << 4) | (cr & 15)) >>> 0;
}

/** CR access types. */
export const CrAccessType = { MovToCr: 0, MovFromCr: 1, Clts: 2, Lmsw: 3 } as const;

/** The CR3 value is one of the CR3-target values (SDM 25.6.7): loading it does not exit. */
export function cr3TargetMatches(cpu: Cpu, value: number): boolean {
  const vmcs = cpu.vmcs;
  if (vmcs === undefined) return false;
  const count = vmcs.read32(VmcsField.CR3_TARGET_COUNT);
  const targets = [VmcsField.CR3_TARGET_VALUE0, VmcsField.CR3_TARGET_VALUE1, VmcsField.CR3_TARGET_VALUE2, VmcsField.CR3_TARGET_VALUE3] as const;
  for (let k = 0; k < count && k < 4; k++) if (vmcs.readNatural(targets[k]!) === value) return true;
  return false;
}

/**
 * VM-exit instruction-information field for descriptor-table exits (SDM Table 28-10 for
 * LGDT/LIDT/SGDT/SIDT, Table 28-11 for LLDT/LTR/SLDT/STR): scaling 1:0, register operand 6:3
 * (LDTR/TR forms), address size 9:7 (0 16-bit, 1 32-bit, 2 64-bit), register/memory 10,
 * operand size 11, segment 17:15, index 21:18 with "invalid" 22, base 26:23 with "invalid" 27,
 * instruction identity 29:28.
 */
export function descriptorTableInfo(i: { isMem: boolean; rm: number; scale: number; addrSize: number; opSize: number; seg: number; index: number; base: number }, identity: number): number {
  let info = (identity & 3) << 28;
  info |= (i.addrSize === 8 ? 2 : i.addrSize === 4 ? 1 : 0) << 7; // 0 16-bit, 1 32-bit, 2 64-bit
  if (i.opSize === 4 || i.opSize === 8) info |= 1 << 11;
  if (!i.isMem) return (info | (1 << 10) | ((i.rm & 15) << 3)) >>> 0;
  info |= (i.scale === 1 ? 0 : i.scale === 2 ? 1 : i.scale === 4 ? 2 : 3) | ((i.seg & 7) << 15);
  info |= i.index >= 0 ? (i.index & 15) << 18 : 1 << 22;
  info |= i.base >= 0 ? (i.base & 15) << 23 : 1 << 27;
  return info >>> 0;
}
