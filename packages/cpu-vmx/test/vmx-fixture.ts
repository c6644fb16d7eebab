/**
 * Test and benchmark fixture: a guest VMCS describing machine64's 64-bit environment (flat
 * segments, identity paging, a TSS and an IDT whose every gate lands on a HLT).
 */
import { Vmcs, VmcsField as F, setupFlat64Guest } from "@vtlab/cpu-vmx";
import { CODE, GDT, PML4, STACK_TOP, type TestMachine } from "./machine.js";

export const IDT = 0x8000;
export const TSS = 0x7000;
export const HANDLERS = 0x30_0000;
export const IO_A = 0x0a_0000;
export const IO_B = 0x0a_1000;
export const MSRBM = 0x0a_2000;

/** A guest VMCS describing machine64's 64-bit environment, with the given extra controls. */
export function guestVmcs(m: TestMachine, opts: { proc?: number; exceptionBitmap?: number; pfecMask?: number; pfecMatch?: number } = {}): Vmcs {
  const v = new Vmcs();
  const err = setupFlat64Guest(v, {
    proc: opts.proc ?? 0,
    exceptionBitmap: opts.exceptionBitmap ?? 0,
    cr3: PML4,
    rip: CODE,
    rsp: STACK_TOP,
    gdtBase: GDT,
    gdtLimit: 6 * 8 - 1,
    idtBase: IDT,
    idtLimit: 256 * 16 - 1,
    tssBase: TSS,
  });
  if (err !== undefined) throw new Error(err.message);
  v.setField(F.PAGE_FAULT_ERROR_CODE_MASK, opts.pfecMask ?? 0);
  v.setField(F.PAGE_FAULT_ERROR_CODE_MATCH, opts.pfecMatch ?? 0);
  v.setField(F.IO_BITMAP_A, IO_A);
  v.setField(F.IO_BITMAP_B, IO_B);
  v.setField(F.MSR_BITMAP, MSRBM);
  // A guest IDT whose every gate lands on a HLT at HANDLERS + 16v.
  for (let vec = 0; vec < 256; vec++) {
    const target = HANDLERS + vec * 16;
    m.memory.write32(IDT + vec * 16, (0x08 << 16) | (target & 0xffff));
    m.memory.write32(IDT + vec * 16 + 4, (target & 0xffff0000) | 0x8e00);
    m.memory.write32(IDT + vec * 16 + 8, 0);
    m.memory.write8(target, 0xf4);
  }
  return v;
}

