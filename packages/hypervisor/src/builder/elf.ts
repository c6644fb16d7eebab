/**
 * ELF kernel images for the domain builder (System V ABI, ELF-64 Object File Format 1.5, the
 * x86-64 and i386 psABIs): the header and program headers read from the image once, validated
 * field by field, and returned as plain values. The image is untrusted input: every offset and
 * size is checked against the file and the guest's memory before anything is copied, and each
 * problem is an error value that names the field and what is wrong with it.
 *
 * Three containers load, as Xen's libelf and the xl toolstack load them for an HVM (PVH)
 * container (xen/common/libelf, tools/libs/guest/xg_dom_elfloader.c): ELFCLASS64 with EM_X86_64;
 * ELFCLASS32 with EM_X86_64 (elf32-x86-64, the "x32" container that Xen's own test kernels and
 * many Multiboot kernels use for 64-bit code); ELFCLASS32 with EM_386 (elf32-i386). Segments go
 * to p_paddr, never p_vaddr; a PT_LOAD whose p_flags has none of R, W, X is not loaded (libelf's
 * elf_phdr_is_loadable). A 32-bit container only says how the file is laid out: which mode the
 * kernel is entered in is the boot protocol's business (builder/pvh.ts), and an ELF32 kernel
 * needs a PVH note or a Multiboot header, because it cannot be booted directly in 64-bit mode.
 *
 * Addresses and sizes must be below 2^53 (a JS number holds them exactly); a field beyond that
 * is refused by name, its value printed exactly from its two halves. Modelled more simply than
 * libelf: higher-half virtual addresses (a Linux vmlinux's p_vaddr) are refused for that reason.
 */
import { formatHex, formatHex64 } from "@vtlab/arch";

/** ELF identification and header constants (elf.h names). */
export const ELFMAG = 0x7f454c46; // "\x7fELF", big-endian read of e_ident[0..3]
export const ELFCLASS32 = 1;
export const ELFCLASS64 = 2;
export const ELFDATA2LSB = 1;
export const EV_CURRENT = 1;
export const ET_EXEC = 2;
export const ET_DYN = 3;
export const EM_386 = 3;
export const EM_X86_64 = 62;
export const PT_LOAD = 1;
export const PT_NOTE = 4;
export const PF_X = 1;
export const PF_W = 2;
export const PF_R = 4;
/** sizeof(Elf64_Ehdr) and sizeof(Elf64_Phdr). */
export const ELF64_EHDR_SIZE = 64;
export const ELF64_PHDR_SIZE = 56;
/** sizeof(Elf32_Ehdr) and sizeof(Elf32_Phdr). */
export const ELF32_EHDR_SIZE = 52;
export const ELF32_PHDR_SIZE = 32;
/** XEN_ELFNOTE_PHYS32_ENTRY (xen/include/public/elfnote.h): the PVH 32-bit entry point. */
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;
/** XEN_ELFNOTE_ENTRY (elfnote.h): a PV kernel's virtual entry point. */
export const XEN_ELFNOTE_ENTRY = 1;
/** XEN_ELFNOTE_HYPERCALL_PAGE (elfnote.h): where a PV kernel wants its hypercall page. */
export const XEN_ELFNOTE_HYPERCALL_PAGE = 2;
/**
 * The names of the Xen ELF notes (elfnote.h, XEN_ELFNOTE_INFO 0 .. XEN_ELFNOTE_PHYS32_ENTRY 18),
 * for messages about a PV kernel.
 */
export const XEN_ELFNOTE_NAMES: readonly string[] = [
  "XEN_ELFNOTE_INFO", "XEN_ELFNOTE_ENTRY", "XEN_ELFNOTE_HYPERCALL_PAGE", "XEN_ELFNOTE_VIRT_BASE",
  "XEN_ELFNOTE_PADDR_OFFSET", "XEN_ELFNOTE_XEN_VERSION", "XEN_ELFNOTE_GUEST_OS", "XEN_ELFNOTE_GUEST_VERSION",
  "XEN_ELFNOTE_LOADER", "XEN_ELFNOTE_PAE_MODE", "XEN_ELFNOTE_FEATURES", "XEN_ELFNOTE_BSD_SYMTAB",
  "XEN_ELFNOTE_HV_START_LOW", "XEN_ELFNOTE_L1_MFN_VALID", "XEN_ELFNOTE_SUSPEND_CANCEL", "XEN_ELFNOTE_INIT_P2M",
  "XEN_ELFNOTE_MOD_START_PFN", "XEN_ELFNOTE_SUPPORTED_FEATURES", "XEN_ELFNOTE_PHYS32_ENTRY",
];

export interface ElfSegment {
  /** Guest-physical load address (p_paddr). */
  readonly paddr: number;
  /**
   * p_vaddr, exact: a higher-half kernel (Linux: 0xffffffff81000000 and up) has virtual addresses
   * beyond 2^53, so this is a bigint; loading never uses it (segments go to p_paddr).
   */
  readonly vaddr: bigint;
  readonly offset: number;
  readonly fileSize: number;
  readonly memSize: number;
  /** PF_R/PF_W/PF_X. */
  readonly flags: number;
}

export interface ElfImage {
  /** e_ident[EI_CLASS]: ELFCLASS32 or ELFCLASS64 (the container, not the code's mode). */
  readonly elfClass: typeof ELFCLASS32 | typeof ELFCLASS64;
  /** e_machine: EM_X86_64, or EM_386 in an ELFCLASS32 image. */
  readonly machine: typeof EM_X86_64 | typeof EM_386;
  readonly type: number;
  /** e_entry: the entry point (virtual, exact: a bigint for the same reason as ElfSegment.vaddr). */
  readonly entry: bigint;
  /** The PVH entry (XEN_ELFNOTE_PHYS32_ENTRY), if the image carries one. */
  readonly pvhEntry: number | undefined;
  /**
   * The types of the "Xen" ELF notes the image carries (elfnote.h), in file order: a Xen PV
   * kernel has XEN_ELFNOTE_ENTRY, XEN_ELFNOTE_HYPERCALL_PAGE and friends, a PVH one
   * XEN_ELFNOTE_PHYS32_ENTRY.
   */
  readonly xenNotes: readonly number[];
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

/**
 * Read a u64 as a number (exact below 2^53, which every address and size a vtlab domain can use
 * is; above, the nearest double: `exact` says which, and messages print the halves).
 */
function u64(dv: DataView, at: number): number {
  return dv.getUint32(at + 4, true) * 0x1_0000_0000 + dv.getUint32(at, true);
}

function u32(dv: DataView, at: number): number {
  return dv.getUint32(at, true);
}

/** A virtual address, exact (p_vaddr, e_entry): any u64, read at load time only. */
function vaddr64(dv: DataView, at: number): bigint {
  return dv.getBigUint64(at, true);
}

function vaddr32(dv: DataView, at: number): bigint {
  return BigInt(dv.getUint32(at, true));
}

/**
 * Where each field lives in the two classes (Elf32_Ehdr/Elf64_Ehdr, Elf32_Phdr/Elf64_Phdr): the
 * 32-bit program header has p_flags after p_memsz, the 64-bit one right after p_type.
 */
interface ClassLayout {
  readonly ehdrSize: number;
  readonly phdrSize: number;
  readonly word: (dv: DataView, at: number) => number;
  /** The word at `at` in hex, exactly (ELF64 words may be beyond 2^53). */
  readonly hex: (dv: DataView, at: number) => string;
  /** Whether the word at `at` is a safe integer as `word` reads it. */
  readonly exact: (dv: DataView, at: number) => boolean;
  /** The exact reader for virtual addresses (p_vaddr, e_entry). */
  readonly vword: (dv: DataView, at: number) => bigint;
  readonly e_entry: number;
  readonly e_phoff: number;
  readonly e_phentsize: number;
  readonly e_phnum: number;
  readonly p_flags: number;
  readonly p_offset: number;
  readonly p_vaddr: number;
  readonly p_paddr: number;
  readonly p_filesz: number;
  readonly p_memsz: number;
}

const ELF64_LAYOUT: ClassLayout = { ehdrSize: ELF64_EHDR_SIZE, phdrSize: ELF64_PHDR_SIZE, word: u64, hex: (dv, at) => formatHex64(dv.getUint32(at + 4, true), dv.getUint32(at, true)), exact: (dv, at) => dv.getUint32(at + 4, true) < 0x20_0000, vword: vaddr64, e_entry: 24, e_phoff: 32, e_phentsize: 54, e_phnum: 56, p_flags: 4, p_offset: 8, p_vaddr: 16, p_paddr: 24, p_filesz: 32, p_memsz: 40 };
const ELF32_LAYOUT: ClassLayout = { ehdrSize: ELF32_EHDR_SIZE, phdrSize: ELF32_PHDR_SIZE, word: u32, hex: (dv, at) => formatHex(u32(dv, at)), exact: () => true, vword: vaddr32, e_entry: 24, e_phoff: 28, e_phentsize: 42, e_phnum: 44, p_flags: 24, p_offset: 4, p_vaddr: 8, p_paddr: 12, p_filesz: 16, p_memsz: 20 };

/**
 * Parse and validate an x86 executable: ELFCLASS64 with EM_X86_64, or ELFCLASS32 with EM_X86_64
 * or EM_386. `memorySize` is the guest's RAM: every PT_LOAD must fit inside it. Returns the image
 * description or the first problem found.
 */
export function parseElf(image: Uint8Array, memorySize: number): ElfImage | ElfError {
  if (image.length < 16) return err("ELF header", `the file is ${image.length} bytes, shorter than e_ident (16)`);
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (dv.getUint32(0, false) !== ELFMAG) return err("e_ident[EI_MAG]", "not an ELF file (bad magic)", 0);
  const elfClass = image[4];
  if (elfClass !== ELFCLASS32 && elfClass !== ELFCLASS64) return err("e_ident[EI_CLASS]", `class ${elfClass} is neither ELFCLASS32 (1) nor ELFCLASS64 (2)`, 4);
  const L = elfClass === ELFCLASS64 ? ELF64_LAYOUT : ELF32_LAYOUT;
  const className = elfClass === ELFCLASS64 ? "ELF64" : "ELF32";
  if (image.length < L.ehdrSize) return err("ELF header", `the file is ${image.length} bytes, shorter than an ${className} header (${L.ehdrSize})`);
  if (image[5] !== ELFDATA2LSB) return err("e_ident[EI_DATA]", `data encoding ${image[5]} is not little-endian`, 5);
  if (image[6] !== EV_CURRENT) return err("e_ident[EI_VERSION]", `version ${image[6]} is not EV_CURRENT`, 6);
  const type = dv.getUint16(16, true);
  if (type !== ET_EXEC && type !== ET_DYN) return err("e_type", `type ${type} is not an executable (ET_EXEC or ET_DYN)`, 16);
  const machine = dv.getUint16(18, true);
  if (machine !== EM_X86_64 && (elfClass === ELFCLASS64 || machine !== EM_386)) {
    return err("e_machine", elfClass === ELFCLASS64 ? `machine ${machine} is not EM_X86_64 (62)` : `machine ${machine} is neither EM_386 (3) nor EM_X86_64 (62) in an ELFCLASS32 image`, 18);
  }
  const entry = L.vword(dv, L.e_entry);
  const phoff = L.word(dv, L.e_phoff);
  const phentsize = dv.getUint16(L.e_phentsize, true);
  const phnum = dv.getUint16(L.e_phnum, true);
  if (phnum === 0) return err("e_phnum", "no program headers: nothing to load", L.e_phnum);
  if (phentsize !== L.phdrSize) return err("e_phentsize", `${phentsize} is not sizeof(${className === "ELF64" ? "Elf64_Phdr" : "Elf32_Phdr"}) (${L.phdrSize})`, L.e_phentsize);
  if (!L.exact(dv, L.e_phoff) || phoff + phnum * phentsize > image.length) {
    return err("e_phoff", `program headers at offset ${L.hex(dv, L.e_phoff)} (${phnum} x ${phentsize} bytes) run past the end of the ${image.length}-byte file`, L.e_phoff);
  }
  const segments: ElfSegment[] = [];
  const xenNotes: number[] = [];
  let pvhEntry: number | undefined;
  for (let k = 0; k < phnum; k++) {
    const at = phoff + k * phentsize;
    const ptype = dv.getUint32(at, true);
    const flags = dv.getUint32(at + L.p_flags, true);
    const where = `program header ${k}`;
    if (ptype !== PT_LOAD && ptype !== PT_NOTE) continue;
    // libelf's elf_phdr_is_loadable: a PT_LOAD with no access flags is not loaded.
    if (ptype === PT_LOAD && (flags & (PF_R | PF_W | PF_X)) === 0) continue;
    for (const [name, off] of [["p_offset", L.p_offset], ["p_filesz", L.p_filesz], ["p_memsz", L.p_memsz], ["p_paddr", L.p_paddr]] as const) {
      // p_vaddr is read exactly (a bigint): a higher-half kernel is loaded by p_paddr.
      if (!L.exact(dv, at + off)) return err(`${where}: ${name}`, `${L.hex(dv, at + off)} is beyond 2^53 (vtlab loads kernels whose offsets, sizes and physical addresses are below it)`, at + off);
    }
    const offset = L.word(dv, at + L.p_offset);
    const vaddr = L.vword(dv, at + L.p_vaddr);
    const paddr = L.word(dv, at + L.p_paddr);
    const fileSize = L.word(dv, at + L.p_filesz);
    const memSize = L.word(dv, at + L.p_memsz);
    if (offset + fileSize > image.length) return err(`${where}: p_offset + p_filesz`, `bytes ${formatHex(offset)}..${formatHex(offset + fileSize)} are beyond the ${image.length}-byte file`, at + L.p_offset);
    if (ptype === PT_NOTE) {
      const note = scanXenNotes(image, dv, offset, fileSize, where, xenNotes);
      if (typeof note === "object") return note;
      if (note !== undefined) pvhEntry = note;
      continue;
    }
    if (memSize < fileSize) return err(`${where}: p_memsz`, `p_memsz (${memSize}) is smaller than p_filesz (${fileSize})`, at + L.p_memsz);
    if (paddr + memSize > memorySize) {
      return err(`${where}: p_paddr`, `segment ${formatHex(paddr)}..${formatHex(paddr + memSize)} does not fit in the guest's ${formatMiB(memorySize)} of RAM`, at + L.p_paddr);
    }
    for (const s of segments) {
      if (paddr < s.paddr + s.memSize && s.paddr < paddr + memSize) return err(`${where}: p_paddr`, `segment ${formatHex(paddr)}..${formatHex(paddr + memSize)} overlaps the one at ${formatHex(s.paddr)}..${formatHex(s.paddr + s.memSize)}`, at + L.p_paddr);
    }
    segments.push({ paddr, vaddr, offset, fileSize, memSize, flags });
  }
  if (segments.length === 0) return err("program headers", "no PT_LOAD segment: nothing to load");
  if (pvhEntry !== undefined && !segments.some((s) => pvhEntry! >= s.paddr && pvhEntry! < s.paddr + s.memSize)) {
    return err("XEN_ELFNOTE_PHYS32_ENTRY", `the PVH entry ${formatHex(pvhEntry)} is outside every loaded segment`);
  }
  const isPv = pvhEntry === undefined && xenNotes.length > 0;
  if (pvhEntry === undefined && !isPv && !segments.some((s) => entry >= s.vaddr && entry < s.vaddr + BigInt(s.memSize))) {
    return err("e_entry", `the entry point ${L.hex(dv, L.e_entry)} is outside every loaded segment`, L.e_entry);
  }
  return { elfClass, machine, type, entry, pvhEntry, xenNotes, segments };
}

/** `bytes` as MiB for messages ("32 MiB", or "0.5 MiB" when not whole). */
function formatMiB(bytes: number): string {
  return `${Number.isInteger(bytes / 1048576) ? bytes / 1048576 : (bytes / 1048576).toFixed(3)} MiB`;
}

/**
 * Scan a PT_NOTE for "Xen" notes: each one's type is added to `xenNotes`, and the value of
 * XEN_ELFNOTE_PHYS32_ENTRY returned when there is one. Every note's sizes are bounds-checked.
 */
function scanXenNotes(image: Uint8Array, dv: DataView, offset: number, size: number, where: string, xenNotes: number[]): number | undefined | ElfError {
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
    if (isXen) xenNotes.push(ntype);
    if (isXen && ntype === XEN_ELFNOTE_PHYS32_ENTRY) {
      // libelf reads the value as a number of the descriptor's size (elf_note_numeric); the
      // entry is a 32-bit physical address, so only 4 bytes, or 8 with a zero high half, will do
      // (Linux's note is a .quad on x86-64, the vtlab guests' a .long).
      if (descsz !== 4 && descsz !== 8) return err(`${where}: XEN_ELFNOTE_PHYS32_ENTRY`, `descriptor of ${descsz} bytes is not a 4- or 8-byte address`, desc);
      if (descsz === 8 && dv.getUint32(desc + 4, true) !== 0) return err(`${where}: XEN_ELFNOTE_PHYS32_ENTRY`, `the 8-byte entry ${formatHex64(dv.getUint32(desc + 4, true), dv.getUint32(desc, true))} is beyond 4 GiB`, desc);
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
