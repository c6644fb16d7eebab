/**
 * Test and benchmark fixture: a guest VMCS describing machine64's 64-bit environment (flat
 * segments, identity paging, a TSS and an IDT whose every gate lands on a HLT).
 */
import {
  CR0_ET,
  CR0_NE,
  CR0_PE,
  CR0_PG,
  CR0_WP,
  CR4_PAE,
  CR4_VMXE,
  ENTRY_CAPS,
  ENTRY_IA32E_MODE,
  EXIT_CAPS,
  EXIT_HOST_ADDR_SPACE_SIZE,
  PIN_CAPS,
  PROC_CAPS,
  Vmcs,
  VmcsField as F,
} from "@vtlab/cpu-vmx";
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
  const w = (f: number, lo: number, hi = 0) => {
    const e = v.vmwrite(f, lo, hi);
    if (e !== undefined) throw new Error(e.message);
  };
  w(F.PIN_BASED_VM_EXEC_CONTROL, PIN_CAPS.mustBe1);
  w(F.CPU_BASED_VM_EXEC_CONTROL, (PROC_CAPS.mustBe1 | (opts.proc ?? 0)) >>> 0);
  w(F.VM_EXIT_CONTROLS, EXIT_CAPS.mustBe1 | EXIT_HOST_ADDR_SPACE_SIZE);
  w(F.VM_ENTRY_CONTROLS, ENTRY_CAPS.mustBe1 | ENTRY_IA32E_MODE);
  w(F.EXCEPTION_BITMAP, opts.exceptionBitmap ?? 0);
  w(F.PAGE_FAULT_ERROR_CODE_MASK, opts.pfecMask ?? 0);
  w(F.PAGE_FAULT_ERROR_CODE_MATCH, opts.pfecMatch ?? 0);
  w(F.IO_BITMAP_A, IO_A);
  w(F.IO_BITMAP_B, IO_B);
  w(F.MSR_BITMAP, MSRBM);
  w(F.HOST_CR0, CR0_PE | CR0_NE | CR0_PG);
  w(F.HOST_CR4, CR4_PAE | CR4_VMXE);
  w(F.HOST_CS_SELECTOR, 0x08);
  w(F.HOST_TR_SELECTOR, 0x30);
  w(F.HOST_RIP, 0x1000);
  w(F.GUEST_CR0, CR0_PE | CR0_NE | CR0_PG | CR0_WP | CR0_ET);
  w(F.GUEST_CR3, PML4);
  w(F.GUEST_CR4, CR4_PAE | CR4_VMXE);
  w(F.GUEST_CS_SELECTOR, 0x08);
  w(F.GUEST_CS_AR_BYTES, 0xa09b);
  w(F.GUEST_CS_LIMIT, 0xffff_ffff);
  for (const [sel, ar, lim] of [
    [F.GUEST_SS_SELECTOR, F.GUEST_SS_AR_BYTES, F.GUEST_SS_LIMIT],
    [F.GUEST_DS_SELECTOR, F.GUEST_DS_AR_BYTES, F.GUEST_DS_LIMIT],
    [F.GUEST_ES_SELECTOR, F.GUEST_ES_AR_BYTES, F.GUEST_ES_LIMIT],
    [F.GUEST_FS_SELECTOR, F.GUEST_FS_AR_BYTES, F.GUEST_FS_LIMIT],
    [F.GUEST_GS_SELECTOR, F.GUEST_GS_AR_BYTES, F.GUEST_GS_LIMIT],
  ] as const) {
    w(sel, 0x10);
    w(ar, 0xc093);
    w(lim, 0xffff_ffff);
  }
  w(F.GUEST_TR_SELECTOR, 0x30);
  w(F.GUEST_TR_AR_BYTES, 0x8b);
  w(F.GUEST_TR_BASE, TSS);
  w(F.GUEST_TR_LIMIT, 0x67);
  w(F.GUEST_LDTR_AR_BYTES, 0x1_0000);
  w(F.GUEST_GDTR_BASE, GDT);
  w(F.GUEST_GDTR_LIMIT, 6 * 8 - 1);
  w(F.GUEST_IDTR_BASE, IDT);
  w(F.GUEST_IDTR_LIMIT, 256 * 16 - 1);
  w(F.GUEST_RSP, STACK_TOP);
  w(F.GUEST_RIP, CODE);
  w(F.GUEST_RFLAGS, 0x2);
  w(F.VMCS_LINK_POINTER, 0xffff_ffff, 0xffff_ffff);
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

