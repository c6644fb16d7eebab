/**
 * Test fixture: a minimal PVH kernel image (ELF64, one PT_LOAD at 1 MiB, the
 * XEN_ELFNOTE_PHYS32_ENTRY note) around a few bytes of 32-bit machine code. The builder enters
 * it in compatibility mode with no IDT, so any exception escalates to a triple fault.
 */
import { EM_X86_64, ET_EXEC, PT_LOAD, PT_NOTE, XEN_ELFNOTE_PHYS32_ENTRY } from "@vtlab/hypervisor";

export interface PvhElfLayout {
  /** File offset of the one PT_LOAD segment (loaded at 1 MiB). */
  readonly offset: number;
  readonly memSize: number;
  /** p_flags of the segment. */
  readonly flags: number;
}

/** An ELF64 PVH image: one PT_LOAD at 1 MiB holding `code`, a PT_NOTE (at 0x180) with the entry 1 MiB. */
export function pvhElf(code: Uint8Array, layout: PvhElfLayout): Uint8Array {
  const b = new Uint8Array(Math.max(0x200, layout.offset + code.length));
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 0x7f454c46, false);
  b[4] = 2; // ELFCLASS64
  b[5] = 1; // ELFDATA2LSB
  b[6] = 1; // EV_CURRENT
  dv.setUint16(16, ET_EXEC, true);
  dv.setUint16(18, EM_X86_64, true);
  dv.setUint32(20, 1, true);
  dv.setUint32(24, 0x10_0000, true); // e_entry
  dv.setUint32(32, 64, true); // e_phoff
  dv.setUint16(52, 64, true); // e_ehsize
  dv.setUint16(54, 56, true); // e_phentsize
  dv.setUint16(56, 2, true); // e_phnum
  dv.setUint32(64, PT_LOAD, true);
  dv.setUint32(64 + 4, layout.flags, true);
  dv.setUint32(64 + 8, layout.offset, true);
  dv.setUint32(64 + 16, 0x10_0000, true);
  dv.setUint32(64 + 24, 0x10_0000, true);
  dv.setUint32(64 + 32, code.length, true);
  dv.setUint32(64 + 40, layout.memSize, true);
  // PT_NOTE at 0x180: namesz 4 "Xen\0", descsz 4, type 18, desc = 0x100000
  const ph1 = 64 + 56;
  dv.setUint32(ph1, PT_NOTE, true);
  dv.setUint32(ph1 + 8, 0x180, true);
  dv.setUint32(ph1 + 32, 20, true);
  dv.setUint32(0x180, 4, true);
  dv.setUint32(0x184, 4, true);
  dv.setUint32(0x188, XEN_ELFNOTE_PHYS32_ENTRY, true);
  b.set([0x58, 0x65, 0x6e, 0], 0x18c);
  dv.setUint32(0x190, 0x10_0000, true);
  b.set(code, layout.offset);
  return b;
}

/** A PVH kernel around a few bytes of 32-bit machine code (hex), loaded RWX at 1 MiB. */
export function tinyKernel(codeHex: string): Uint8Array {
  const code = Uint8Array.from(codeHex.replace(/\s+/g, "").match(/../g)!.map((h) => parseInt(h, 16)));
  return pvhElf(code, { offset: 0x200, memSize: 0x1000, flags: 7 });
}

/**
 * A Multiboot (v1) kernel: the same ELF without the PVH note, with a Multiboot header (magic
 * 0x1BADB002, flags 3, checksum) placed after the code, inside the first 8 KiB of the file.
 */
export function multibootKernel(codeHex: string, checksum = 0xe4524ffb): Uint8Array {
  const pad = "90".repeat((4 - ((codeHex.replace(/\s+/g, "").length / 2) % 4)) % 4);
  const header = new Uint8Array(12);
  const dv = new DataView(header.buffer);
  dv.setUint32(0, 0x1badb002, true);
  dv.setUint32(4, 3, true);
  dv.setUint32(8, checksum, true);
  const hex = Array.from(header, (b) => b.toString(16).padStart(2, "0")).join("");
  const image = tinyKernel(`${codeHex}${pad}${hex}`);
  image.fill(0, 0x180, 0x194); // no XEN_ELFNOTE_PHYS32_ENTRY note
  return image;
}

/**
 * A kernel for direct 64-bit boot: the same ELF with neither the PVH note nor a Multiboot header,
 * its code 64-bit; `vaddr` sets p_vaddr (and e_entry) of the segment loaded at 1 MiB.
 */
export function direct64Kernel(codeHex: string, vaddr = 0x10_0000): Uint8Array {
  const image = tinyKernel(codeHex);
  image.fill(0, 0x180, 0x194); // no XEN_ELFNOTE_PHYS32_ENTRY note
  const dv = new DataView(image.buffer);
  dv.setUint32(24, vaddr, true); // e_entry
  dv.setUint32(64 + 16, vaddr, true); // p_vaddr
  return image;
}

/** `jmp $`: spins forever (a compute-bound domain for the scheduler). */
export const SPIN = "ebfe";
/** `int3` with no IDT: #GP, #DF, triple fault. */
export const TRIPLE_FAULT = "cc";
