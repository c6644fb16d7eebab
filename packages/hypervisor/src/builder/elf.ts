/**
 * ELF64 kernel images for the domain builder (System V ABI, ELF-64 Object File Format 1.5, and
 * the x86-64 psABI): the header and program headers read from the image once, validated field by
 * field, and returned as plain values. The image is untrusted input: every offset and size is
 * checked against the file and the guest's memory before anything is copied, and each problem
 * is an error value that names the field and what is wrong with it.
 */

/** ELF identification and header constants (elf.h names). */
export const ELFMAG = 0x7f454c46; // "\x7fELF", big-endian read of e_ident[0..3]
export const ELFCLASS64 = 2;
export const ELFDATA2LSB = 1;
export const EV_CURRENT = 1;
export const ET_EXEC = 2;
export const ET_DYN = 3;
export const EM_X86_64 = 62;
export const PT_LOAD = 1;
export const PT_NOTE = 4;
export const PF_X = 1;
export const PF_W = 2;
export const PF_R = 4;
/** sizeof(Elf64_Ehdr) and sizeof(Elf64_Phdr). */
export const ELF64_EHDR_SIZE = 64;
export const ELF64_PHDR_SIZE = 56;
/** XEN_ELFNOTE_PHYS32_ENTRY (xen/include/public/elfnote.h): the PVH 32-bit entry point. */
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;

export interface ElfSegment {
  /** Guest-physical load address (p_paddr). */
  readonly paddr: number;
  readonly vaddr: number;
  readonly offset: number;
  readonly fileSize: number;
  readonly memSize: number;
  /** PF_R/PF_W/PF_X. */
  readonly flags: number;
}

export interface ElfImage {
  readonly type: number;
  /** e_entry: the 64-bit entry point (virtual). */
  readonly entry: number;
  /** The PVH entry (XEN_ELFNOTE_PHYS32_ENTRY), if the image carries one. */
  readonly pvhEntry: number | undefined;
  readonly segments: readonly ElfSegment[];
}

export interface ElfError {
  readonly kind: "elf-error";
  /** The field or structure at fault ("e_ident[EI_CLASS]", "program header 2: p_filesz"). */
  readonly field: string;
  /** Byte offset in the image, where one applies. */
  readonly offset?: number;
  readonly message: string;
}

function err(field: string, message: string, offset?: number): ElfError {
  return { kind: "elf-error", field, message: `${field}: ${message}`, ...(offset !== undefined ? { offset } : {}) };
}

/** Read a u64 that must be a safe integer (addresses and sizes here are all below 2^53). */
function u64(dv: DataView, at: number): number {
  const lo = dv.getUint32(at, true);
  const hi = dv.getUint32(at + 4, true);
  return hi >= 0x20_0000 ? Number.NaN : hi * 0x1_0000_0000 + lo;
}

/**
 * Parse and validate an ELF64 x86-64 executable. `memorySize` is the guest's RAM: every PT_LOAD
 * must fit inside it. Returns the image description or the first problem found.
 */
export function parseElf(image: Uint8Array, memorySize: number): ElfImage | ElfError {
  if (image.length < ELF64_EHDR_SIZE) return err("ELF header", `the file is ${image.length} bytes, shorter than an ELF64 header (64)`);
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (dv.getUint32(0, false) !== ELFMAG) return err("e_ident[EI_MAG]", "not an ELF file (bad magic)", 0);
  if (image[4] !== ELFCLASS64) return err("e_ident[EI_CLASS]", `class ${image[4]} is not ELFCLASS64 (a 32-bit image?)`, 4);
  if (image[5] !== ELFDATA2LSB) return err("e_ident[EI_DATA]", `data encoding ${image[5]} is not little-endian`, 5);
  if (image[6] !== EV_CURRENT) return err("e_ident[EI_VERSION]", `version ${image[6]} is not EV_CURRENT`, 6);
  const type = dv.getUint16(16, true);
  if (type !== ET_EXEC && type !== ET_DYN) return err("e_type", `type ${type} is not an executable (ET_EXEC or ET_DYN)`, 16);
  const machine = dv.getUint16(18, true);
  if (machine !== EM_X86_64) return err("e_machine", `machine ${machine} is not EM_X86_64 (62)`, 18);
  const entry = u64(dv, 24);
  const phoff = u64(dv, 32);
  const phentsize = dv.getUint16(54, true);
  const phnum = dv.getUint16(56, true);
  if (phnum === 0) return err("e_phnum", "no program headers: nothing to load", 56);
  if (phentsize !== ELF64_PHDR_SIZE) return err("e_phentsize", `${phentsize} is not sizeof(Elf64_Phdr) (56)`, 54);
  if (!Number.isSafeInteger(phoff) || phoff + phnum * phentsize > image.length) {
    return err("e_phoff", `program headers at ${phoff} (${phnum} x ${phentsize} bytes) run past the end of the ${image.length}-byte file`, 32);
  }
  const segments: ElfSegment[] = [];
  let pvhEntry: number | undefined;
  for (let k = 0; k < phnum; k++) {
    const at = phoff + k * phentsize;
    const ptype = dv.getUint32(at, true);
    const flags = dv.getUint32(at + 4, true);
    const offset = u64(dv, at + 8);
    const vaddr = u64(dv, at + 16);
    const paddr = u64(dv, at + 24);
    const fileSize = u64(dv, at + 32);
    const memSize = u64(dv, at + 40);
    const where = `program header ${k}`;
    if (ptype !== PT_LOAD && ptype !== PT_NOTE) continue;
    if (![offset, fileSize, memSize, paddr, vaddr].every(Number.isSafeInteger)) return err(`${where}`, "an offset, address or size is beyond 2^53", at);
    if (offset + fileSize > image.length) return err(`${where}: p_offset + p_filesz`, `bytes ${offset}..${offset + fileSize} are beyond the ${image.length}-byte file`, at + 8);
    if (ptype === PT_NOTE) {
      const note = findPvhNote(image, dv, offset, fileSize, where);
      if (typeof note === "object") return note;
      if (note !== undefined) pvhEntry = note;
      continue;
    }
    if (memSize < fileSize) return err(`${where}: p_memsz`, `p_memsz (${memSize}) is smaller than p_filesz (${fileSize})`, at + 40);
    if (paddr + memSize > memorySize) {
      return err(`${where}: p_paddr`, `segment 0x${paddr.toString(16)}..0x${(paddr + memSize).toString(16)} does not fit in the guest's ${memorySize / 1048576} MiB`, at + 24);
    }
    for (const s of segments) {
      if (paddr < s.paddr + s.memSize && s.paddr < paddr + memSize) return err(`${where}: p_paddr`, `segment at 0x${paddr.toString(16)} overlaps the one at 0x${s.paddr.toString(16)}`, at + 24);
    }
    segments.push({ paddr, vaddr, offset, fileSize, memSize, flags });
  }
  if (segments.length === 0) return err("program headers", "no PT_LOAD segment: nothing to load");
  if (pvhEntry !== undefined && !segments.some((s) => pvhEntry! >= s.paddr && pvhEntry! < s.paddr + s.memSize)) {
    return err("XEN_ELFNOTE_PHYS32_ENTRY", `the PVH entry 0x${pvhEntry.toString(16)} is outside every loaded segment`);
  }
  if (pvhEntry === undefined && !segments.some((s) => entry >= s.vaddr && entry < s.vaddr + s.memSize)) {
    return err("e_entry", `the entry point 0x${entry.toString(16)} is outside every loaded segment`, 24);
  }
  return { type, entry, pvhEntry, segments };
}

/** Scan a PT_NOTE for "Xen" / XEN_ELFNOTE_PHYS32_ENTRY; every note's sizes are bounds-checked. */
function findPvhNote(image: Uint8Array, dv: DataView, offset: number, size: number, where: string): number | undefined | ElfError {
  let p = offset;
  const end = offset + size;
  while (p + 12 <= end) {
    const namesz = dv.getUint32(p, true);
    const descsz = dv.getUint32(p + 4, true);
    const ntype = dv.getUint32(p + 8, true);
    const name = p + 12;
    const desc = name + ((namesz + 3) & ~3);
    const next = desc + ((descsz + 3) & ~3);
    if (namesz > size || descsz > size || next > end) return err(`${where}: note at ${p - offset}`, `name (${namesz}) or descriptor (${descsz}) size runs past the note segment`, p);
    const isXen = namesz === 4 && image[name] === 0x58 && image[name + 1] === 0x65 && image[name + 2] === 0x6e && image[name + 3] === 0;
    if (isXen && ntype === XEN_ELFNOTE_PHYS32_ENTRY) {
      if (descsz < 4) return err(`${where}: XEN_ELFNOTE_PHYS32_ENTRY`, `descriptor of ${descsz} bytes is too short for an address`, desc);
      return dv.getUint32(desc, true);
    }
    p = next;
  }
  return undefined;
}

/** Copy the PT_LOAD segments into guest memory (zero-filling p_memsz beyond p_filesz). */
export function loadSegments(image: Uint8Array, elf: ElfImage, write: (gpa: number, bytes: Uint8Array) => void, zero: (gpa: number, length: number) => void): void {
  for (const s of elf.segments) {
    if (s.fileSize > 0) write(s.paddr, image.subarray(s.offset, s.offset + s.fileSize));
    if (s.memSize > s.fileSize) zero(s.paddr + s.fileSize, s.memSize - s.fileSize);
  }
}
