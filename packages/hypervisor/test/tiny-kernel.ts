/**
 * Test fixture: a minimal PVH kernel image (ELF64, one PT_LOAD at 1 MiB, the
 * XEN_ELFNOTE_PHYS32_ENTRY note) around a few bytes of 32-bit machine code. The builder enters
 * it in compatibility mode with no IDT, so any exception escalates to a triple fault.
 */
import { EM_X86_64, ET_EXEC, PT_LOAD, PT_NOTE, XEN_ELFNOTE_PHYS32_ENTRY } from "@vtlab/hypervisor";

export function tinyKernel(codeHex: string): Uint8Array {
  const code = Uint8Array.from(codeHex.replace(/\s+/g, "").match(/../g)!.map((h) => parseInt(h, 16)));
  const b = new Uint8Array(0x200 + code.length);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 0x7f454c46, false);
  b[4] = 2; // ELFCLASS64
  b[5] = 1; // ELFDATA2LSB
  b[6] = 1; // EV_CURRENT
  dv.setUint16(16, ET_EXEC, true);
  dv.setUint16(18, EM_X86_64, true);
  dv.setUint32(20, 1, true);
  dv.setUint32(24, 0x10_0000, true);
  dv.setUint32(32, 64, true);
  dv.setUint16(52, 64, true);
  dv.setUint16(54, 56, true);
  dv.setUint16(56, 2, true);
  dv.setUint32(64, PT_LOAD, true);
  dv.setUint32(64 + 4, 7, true);
  dv.setUint32(64 + 8, 0x200, true);
  dv.setUint32(64 + 16, 0x10_0000, true);
  dv.setUint32(64 + 24, 0x10_0000, true);
  dv.setUint32(64 + 32, code.length, true);
  dv.setUint32(64 + 40, 0x1000, true);
  const ph1 = 64 + 56;
  dv.setUint32(ph1, PT_NOTE, true);
  dv.setUint32(ph1 + 8, 0x180, true);
  dv.setUint32(ph1 + 32, 20, true);
  dv.setUint32(0x180, 4, true);
  dv.setUint32(0x184, 4, true);
  dv.setUint32(0x188, XEN_ELFNOTE_PHYS32_ENTRY, true);
  b.set([0x58, 0x65, 0x6e, 0], 0x18c);
  dv.setUint32(0x190, 0x10_0000, true);
  b.set(code, 0x200);
  return b;
}

/** `jmp $`: spins forever (a compute-bound domain for the scheduler). */
export const SPIN = "ebfe";
/** `int3` with no IDT: #GP, #DF, triple fault. */
export const TRIPLE_FAULT = "cc";
