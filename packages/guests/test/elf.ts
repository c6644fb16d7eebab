/**
 * A small ELF64 reader for the image tests: the header, program headers and notes, enough to
 * check the PVH boot contract. Every offset and size is bounds-checked; problems are returned
 * as strings, never thrown.
 */

export const PT_LOAD = 1;
export const PT_NOTE = 4;
export const PF_X = 1;
export const PF_W = 2;
export const PF_R = 4;
export const EM_X86_64 = 62;
export const ET_EXEC = 2;

export interface ProgramHeader {
  type: number;
  flags: number;
  offset: number;
  vaddr: number;
  paddr: number;
  filesz: number;
  memsz: number;
  align: number;
}

export interface ElfNote {
  name: string;
  type: number;
  desc: Uint8Array;
}

export interface Elf64 {
  type: number;
  machine: number;
  entry: number;
  phdrs: ProgramHeader[];
  notes: ElfNote[];
}

/** Reads a 64-bit little-endian field that must fit a JS number exactly (< 2^53). */
function u64(dv: DataView, at: number): number {
  const lo = dv.getUint32(at, true);
  const hi = dv.getUint32(at + 4, true);
  if (hi >= 0x20_0000) throw new RangeError(`64-bit field at ${at} does not fit a number`);
  return hi * 2 ** 32 + lo;
}

export function parseElf64(image: Uint8Array): Elf64 | string {
  if (image.length < 64) return "shorter than an ELF64 header";
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (dv.getUint32(0, false) !== 0x7f454c46) return "no ELF magic";
  if (image[4] !== 2) return "not ELFCLASS64";
  if (image[5] !== 1) return "not little-endian (ELFDATA2LSB)";
  try {
    const type = dv.getUint16(16, true);
    const machine = dv.getUint16(18, true);
    const entry = u64(dv, 24);
    const phoff = u64(dv, 32);
    const phentsize = dv.getUint16(54, true);
    const phnum = dv.getUint16(56, true);
    if (phentsize !== 56) return `e_phentsize ${phentsize}, expected 56`;
    if (phoff + phnum * phentsize > image.length) return "program headers beyond the end of the file";
    const phdrs: ProgramHeader[] = [];
    for (let i = 0; i < phnum; i++) {
      const p = phoff + i * phentsize;
      phdrs.push({
        type: dv.getUint32(p, true),
        flags: dv.getUint32(p + 4, true),
        offset: u64(dv, p + 8),
        vaddr: u64(dv, p + 16),
        paddr: u64(dv, p + 24),
        filesz: u64(dv, p + 32),
        memsz: u64(dv, p + 40),
        align: u64(dv, p + 48),
      });
    }
    const notes: ElfNote[] = [];
    for (const ph of phdrs) {
      if (ph.offset + ph.filesz > image.length) return `segment at file offset ${ph.offset} runs past the end of the file`;
      if (ph.type !== PT_NOTE) continue;
      let p = ph.offset;
      const end = ph.offset + ph.filesz;
      while (p + 12 <= end) {
        const namesz = dv.getUint32(p, true);
        const descsz = dv.getUint32(p + 4, true);
        const ntype = dv.getUint32(p + 8, true);
        const nameAt = p + 12;
        const descAt = nameAt + ((namesz + 3) & ~3);
        const next = descAt + ((descsz + 3) & ~3);
        if (next > end) return "note runs past the end of its segment";
        const nameBytes = image.subarray(nameAt, nameAt + Math.max(0, namesz - 1));
        notes.push({ name: String.fromCharCode(...nameBytes), type: ntype, desc: image.slice(descAt, descAt + descsz) });
        p = next;
      }
    }
    return { type, machine, entry, phdrs, notes };
  } catch (e) {
    return e instanceof RangeError ? e.message : String(e);
  }
}
