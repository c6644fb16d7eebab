/**
 * The domain builder's boot path for PVH-style ELF kernels (xen/include/public/arch-x86/hvm/
 * start_info.h): PT_LOAD segments at p_paddr, a `struct hvm_start_info` with the command line and
 * an E820-style memory map, and the entry from the XEN_ELFNOTE_PHYS32_ENTRY note. The kernel may be
 * ELF64 or ELF32 (elf32-x86-64 or elf32-i386, builder/elf.ts); the container does not change the
 * boot: PVH and Multiboot both enter 32-bit code.
 *
 * A kernel with neither a PVH note nor a Multiboot header boots directly in 64-bit mode: long
 * mode at its e_entry, CS the 64-bit code segment 0x18, paging on the builder's identity map of
 * the first 4 GiB, RDI = RBX = the hvm_start_info address (the same start-info page as PVH), no
 * stack (RSP = 0, as PVH gives none). It must be linked at its load address.
 *
 * The 32-bit (PVH and Multiboot) entries are entered as their specifications say, in flat
 * protected mode with paging off: with "unrestricted guest" on EPT domains, and on shadow domains
 * on the hypervisor's identity page table with paging virtualized (`Domain.identityPageTable`,
 * hypervisor.ts). An entry that loads its own CR3, sets CR4.PAE, EFER.LME and CR0.PG and
 * far-jumps to 64-bit code (as the vtlab guests do) runs the same on both.
 */
import { PAGE_SIZE, formatHex } from "@vtlab/arch";
import { extractBzImage, isBzImage, type BzImageError, type BzImageInfo } from "./bzimage.js";
import { EM_386, ELFCLASS32, XEN_ELFNOTE_NAMES, loadSegments, parseElf, type ElfError, type ElfImage } from "./elf.js";
import { encodeModlist, HVM_START_INFO_MODLIST_PADDR, HVM_START_INFO_NR_MODULES, placeModules, type PlacedModule } from "./modules.js";
import { guestLayout, guestMemoryMap, type MemoryMapEntry } from "./layout.js";
import { buildAcpiTables, E820_NVS, type AcpiTables } from "./acpi.js";

export { guestMemoryMap, type MemoryMapEntry } from "./layout.js";

/** XEN_HVM_START_MAGIC_VALUE (hvm/start_info.h). */
export const XEN_HVM_START_MAGIC_VALUE = 0x336ec578;
/** XEN_HVM_MEMMAP_TYPE_RAM / _RESERVED (hvm/start_info.h). */
export const XEN_HVM_MEMMAP_TYPE_RAM = 1;
export const XEN_HVM_MEMMAP_TYPE_RESERVED = 2;

/** Where the builder puts its boot structures (guest-physical, all below the 1 MiB load floor). */
export const BootLayout = {
  /** struct hvm_start_info (version 1: 56 bytes), or the multiboot_info (52 bytes) for Multiboot. */
  startInfo: 0x6000,
  /** struct hvm_modlist_entry[] (32 bytes each: up to 6 modules before the memory map). */
  modlist: 0x6040,
  /** struct hvm_memmap_table_entry[] (24 bytes each). */
  memmap: 0x6100,
  /** The NUL-terminated command line, up to 0x0e00 bytes with the NUL. */
  cmdline: 0x6200,
  /** GDT: null, 32-bit code 0x08, data 0x10, 64-bit code 0x18, 64-bit TSS 0x20. */
  gdt: 0x7000,
  tss: 0x7100,
  /** Identity map: PML4, one PDPT, four PDs of 2 MiB pages (the first 4 GiB). */
  pml4: 0x8000,
  pdpt: 0x9000,
  pd: 0xa000,
  /** First byte a kernel segment may use. */
  end: 0xe000,
} as const;

export const BOOT_CS32 = 0x08;
export const BOOT_DS = 0x10;
export const BOOT_CS64 = 0x18;
export const BOOT_TSS = 0x20;
export const BOOT_GDT_LIMIT = 0x2f;
export const MAX_CMDLINE = 0x0e00 - 1;

export interface GuestPhysicalWriter {
  write(gpa: number, bytes: Uint8Array): void;
  zero(gpa: number, length: number): void;
}

/** Multiboot (version 1) constants (the Multiboot Specification 0.6.96, section 3). */
export const MULTIBOOT_HEADER_MAGIC = 0x1badb002;
export const MULTIBOOT_BOOTLOADER_MAGIC = 0x2badb002;
/** The header must lie in the first 8192 bytes of the image, 32-bit aligned. */
export const MULTIBOOT_SEARCH = 8192;
/** Header flag 16: the a.out-kludge address fields are valid (not supported here: ELF only). */
export const MULTIBOOT_AOUT_KLUDGE = 1 << 16;
/** multiboot_info flags: mem_lower/mem_upper (bit 0), cmdline (bit 2), mmap (bit 6). */
export const MULTIBOOT_INFO_MEMORY = 1 << 0;
export const MULTIBOOT_INFO_CMDLINE = 1 << 2;
export const MULTIBOOT_INFO_MEM_MAP = 1 << 6;
/** multiboot_memory_map type for available RAM. */
export const MULTIBOOT_MEMORY_AVAILABLE = 1;

export interface BootState {
  /**
   * How the kernel is entered: PVH (32-bit entry, EBX = hvm_start_info), Multiboot (32-bit entry,
   * EAX = 0x2BADB002, EBX = multiboot_info), or direct 64-bit boot for an ELF64 with neither (long
   * mode at e_entry on the builder's identity map, RDI = RBX = hvm_start_info).
   */
  readonly protocol: "pvh" | "multiboot" | "direct64";
  /** Initial EAX (Multiboot's magic; 0 for PVH). */
  readonly eax: number;
  readonly entry: number;
  readonly cr3: number;
  readonly startInfo: number;
  readonly gdtBase: number;
  readonly gdtLimit: number;
  readonly tssBase: number;
  readonly elf: ElfImage;
  /** The PVH modules (the ramdisk) as handed over in hvm_start_info's modlist. */
  readonly modules: readonly PlacedModule[];
  /** Set when the kernel was a bzImage: its header and the decompressed payload (`elf` describes that). */
  readonly bzImage?: Omit<BzImageInfo, "vmlinux">;
  /** The memory map handed over (hvm_start_info's memmap, the Multiboot mmap; XENMEM_memory_map answers the same). */
  readonly memoryMap: readonly MemoryMapEntry[];
  /**
   * A PVH domain's ACPI tables (builder/acpi.ts), when asked for: the caller populates their
   * pages (outside RAM, in the MMIO hole) and writes `bytes` there; rsdp_paddr already names them.
   */
  readonly acpi?: AcpiTables;
}

/** What buildPvh loads besides the kernel. */
export interface BuildOptions {
  /** xl.cfg `ramdisk`: handed to a PVH kernel as module 0 (builder/modules.ts). */
  readonly ramdisk?: Uint8Array;
  /** xl.cfg `acpi` (libxl's default for PVH): build ACPI tables for a PVH kernel, one local APIC per entry (the vCPUs' APIC IDs). */
  readonly acpi?: { readonly apicIds: readonly number[] };
}

export interface BootError {
  readonly kind: "boot-error";
  /** The domain option at fault: the kernel image, the memory size, the command line or the ramdisk. */
  readonly field: "kernel" | "memory" | "cmdline" | "ramdisk";
  /** What is wrong, without the field's name (the caller prefixes it once). */
  readonly message: string;
}

function bootError(field: BootError["field"], message: string): BootError {
  return { kind: "boot-error", field, message };
}

function le64(out: Uint8Array, off: number, value: number): void {
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  v.setUint32(off, value >>> 0, true);
  v.setUint32(off + 4, Math.floor(value / 2 ** 32) >>> 0, true);
}

/**
 * Parse, check and load a PVH kernel into a domain of `memorySize` bytes; write the boot
 * structures. The kernel is an ELF, or a Linux bzImage whose payload is one (builder/bzimage.ts).
 */
export function buildPvh(kernel: Uint8Array, cmdline: string, memorySize: number, mem: GuestPhysicalWriter, options: BuildOptions = {}): BootState | BootError | ElfError | BzImageError {
  if (memorySize < 2 * 1024 * 1024) return bootError("memory", `${memorySize} bytes is too small (at least 2 MiB)`);
  let image = kernel;
  let bzImage: Omit<BzImageInfo, "vmlinux"> | undefined;
  if (isBzImage(kernel)) {
    const bz = extractBzImage(kernel);
    if ("kind" in bz) return bz;
    const { vmlinux, ...info } = bz;
    image = vmlinux;
    bzImage = info;
  }
  // Kernel segments go in low RAM (below the MMIO hole, builder/layout.ts).
  const lowRam = guestLayout(Math.floor(memorySize / PAGE_SIZE)).lowFrames * PAGE_SIZE;
  const elf = parseElf(image, lowRam);
  if ("kind" in elf) return elf;
  if (elf.pvhEntry === undefined && elf.xenNotes.length > 0) {
    // A Xen PV kernel: Xen ELF notes (XEN_ELFNOTE_ENTRY, _HYPERCALL_PAGE, ...) and no PVH entry.
    // libxc's HVM loaders refuse it too (an HVM container needs XEN_ELFNOTE_PHYS32_ENTRY,
    // "image not capable of booting inside a HVM container"); booted as a plain 64-bit kernel it
    // would run PV code that expects a start_info and the PV MMU, and triple-fault.
    const names = [...new Set(elf.xenNotes)].map((t) => XEN_ELFNOTE_NAMES[t] ?? `Xen note type ${t}`);
    return bootError("kernel", `a Xen PV kernel (ELF notes ${names.join(", ")}; no XEN_ELFNOTE_PHYS32_ENTRY): PV guests are not supported by an HVM builder; vtlab builds HVM domains, so give the kernel a PVH entry (XEN_ELFNOTE_PHYS32_ENTRY)`);
  }
  let protocol: BootState["protocol"] = "pvh";
  if (elf.pvhEntry === undefined) {
    const mb = findMultibootHeader(image);
    if (typeof mb === "string") return bootError("kernel", mb);
    protocol = mb === undefined ? "direct64" : "multiboot";
  }
  if (protocol === "direct64" && elf.elfClass === ELFCLASS32) {
    // xl refuses such an image in an HVM container ("image not capable of booting inside a HVM
    // container", xg_dom_elfloader.c): a 32-bit container has no 64-bit entry to boot directly.
    return bootError("kernel", `an ELF32 image (${elf.machine === EM_386 ? "elf32-i386" : "elf32-x86-64"}) needs a XEN_ELFNOTE_PHYS32_ENTRY note or a Multiboot header; it has neither, and only an ELF64 kernel boots directly in 64-bit mode`);
  }
  const multiboot = protocol === "multiboot";
  // Multiboot enters at e_entry; like GRUB's ELF loader, an e_entry inside a segment's p_vaddr
  // range is taken to the same place in its p_paddr range (they are equal when linked at the load
  // address, as the vtlab guests are).
  const entry = elf.pvhEntry ?? (multiboot ? physicalEntry(elf) : Number(elf.entry));
  if (protocol === "direct64") {
    // The builder's page tables map the first 4 GiB one to one, so the kernel must be linked
    // where it is loaded (a higher-half kernel boots through its PVH entry instead).
    for (const s of elf.segments) {
      if (s.memSize > 0 && s.vaddr !== BigInt(s.paddr)) {
        return bootError("kernel", `no PVH note or Multiboot header, so it boots directly in 64-bit mode on an identity map; but a PT_LOAD segment has p_vaddr 0x${s.vaddr.toString(16)} != p_paddr ${formatHex(s.paddr)} (link it at its load address, or give it a XEN_ELFNOTE_PHYS32_ENTRY note)`);
      }
    }
  }
  for (const s of elf.segments) {
    if (s.memSize > 0 && s.paddr < BootLayout.end) {
      return bootError("kernel", `PT_LOAD at p_paddr ${formatHex(s.paddr)} overlaps the boot structures below ${formatHex(BootLayout.end)}`);
    }
  }
  if (entry >= lowRam || entry >= 2 ** 32) return bootError("kernel", `${protocol === "pvh" ? "PVH entry" : "e_entry"} ${formatHex(entry)} lies beyond guest memory or 4 GiB`);
  if (cmdline.length > MAX_CMDLINE) return bootError("cmdline", `${cmdline.length} bytes is longer than the ${MAX_CMDLINE}-byte limit`);
  const modules = options.ramdisk === undefined ? [] : placeModules(elf, [{ name: "ramdisk", bytes: options.ramdisk }], lowRam);
  if (typeof modules === "string") return bootError("ramdisk", modules);
  if (modules.length > 0 && protocol !== "pvh") return bootError("ramdisk", `the kernel boots ${protocol === "multiboot" ? "by Multiboot" : "directly in 64-bit mode"}; a ramdisk is handed over only to a PVH kernel (XEN_ELFNOTE_PHYS32_ENTRY), as a module in hvm_start_info`);
  const cmd = new Uint8Array(cmdline.length);
  for (let i = 0; i < cmdline.length; i++) {
    const c = cmdline.charCodeAt(i);
    // Printable ASCII only: the guest parses bytes, and a NUL would end the string early.
    if (c < 0x20 || c > 0x7e) return bootError("cmdline", `character ${i} (code ${c}) is not printable ASCII`);
    cmd[i] = c;
  }

  mem.zero(0, BootLayout.end);
  loadSegments(image, elf, (gpa, bytes) => mem.write(gpa, bytes), (gpa, length) => mem.zero(gpa, length));

  // ACPI for PVH kernels only, as libxl__dom_load_acpi builds it (the direct 64-bit and Multiboot boots are vtlab's own).
  const acpi = protocol === "pvh" && options.acpi !== undefined ? buildAcpiTables(options.acpi.apicIds) : undefined;
  const memoryMap = guestMemoryMap(memorySize, acpi !== undefined ? { addr: acpi.gpa, size: acpi.bytes.length, type: E820_NVS } : undefined);
  if (multiboot) writeMultibootInfo(memorySize, mem);
  else writeStartInfo(memoryMap, acpi?.rsdp ?? 0, mem);
  if (modules.length > 0) {
    mem.write(modules[0]!.paddr, options.ramdisk!);
    mem.write(BootLayout.modlist, encodeModlist(modules));
    const nr = new Uint8Array(4);
    new DataView(nr.buffer).setUint32(0, modules.length, true);
    mem.write(BootLayout.startInfo + HVM_START_INFO_NR_MODULES, nr);
    const modlist = new Uint8Array(8);
    le64(modlist, 0, BootLayout.modlist);
    mem.write(BootLayout.startInfo + HVM_START_INFO_MODLIST_PADDR, modlist);
  }
  const cmdz = new Uint8Array(cmd.length + 1);
  cmdz.set(cmd);
  mem.write(BootLayout.cmdline, cmdz);
  writeGdt(mem);
  if (protocol === "direct64") writeIdentityMap(mem);
  return { protocol, eax: multiboot ? MULTIBOOT_BOOTLOADER_MAGIC : 0, entry, cr3: BootLayout.pml4, startInfo: BootLayout.startInfo, gdtBase: BootLayout.gdt, gdtLimit: BOOT_GDT_LIMIT, tssBase: BootLayout.tss, elf, modules, ...(bzImage !== undefined ? { bzImage } : {}), memoryMap, ...(acpi !== undefined ? { acpi } : {}) };
}

/** e_entry translated from the segment whose p_vaddr range holds it to that segment's p_paddr. */
function physicalEntry(elf: ElfImage): number {
  const s = elf.segments.find((seg) => elf.entry >= seg.vaddr && elf.entry < seg.vaddr + BigInt(seg.memSize));
  // Inside a segment the result is below paddr + memSize (a safe number); outside, e_entry as it
  // is, beyond 2^53 only for an address buildPvh then refuses as beyond 4 GiB.
  return s === undefined ? Number(elf.entry) : Number(elf.entry - s.vaddr) + s.paddr;
}

/** The Multiboot header, if the image has one: undefined when absent, a message when it is bad. */
function findMultibootHeader(image: Uint8Array): { flags: number } | string | undefined {
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const end = Math.min(MULTIBOOT_SEARCH, image.length) - 12;
  for (let at = 0; at <= end; at += 4) {
    if (dv.getUint32(at, true) !== MULTIBOOT_HEADER_MAGIC) continue;
    const flags = dv.getUint32(at + 4, true);
    const checksum = dv.getUint32(at + 8, true);
    if (((MULTIBOOT_HEADER_MAGIC + flags + checksum) >>> 0) !== 0) return `Multiboot header at offset ${formatHex(at)}: checksum ${formatHex(checksum)} does not make magic + flags + checksum zero`;
    if ((flags & MULTIBOOT_AOUT_KLUDGE) !== 0) return `Multiboot header at offset ${formatHex(at)}: flag 16 (a.out kludge addresses) is not supported; load from the ELF program headers`;
    if ((flags & 0xfffc) !== 0) return `Multiboot header at offset ${formatHex(at)}: required flags ${formatHex(flags & 0xffff)} include ones this loader does not provide (only bits 0 and 1)`;
    return { flags };
  }
  return undefined;
}

/** multiboot_info: memory sizes, the command line and a memory map (Multiboot 0.6.96, 3.3). */
function writeMultibootInfo(memorySize: number, mem: GuestPhysicalWriter): void {
  const mi = new Uint8Array(52);
  const v = new DataView(mi.buffer);
  v.setUint32(0, MULTIBOOT_INFO_MEMORY | MULTIBOOT_INFO_CMDLINE | MULTIBOOT_INFO_MEM_MAP, true);
  v.setUint32(4, 640, true); // mem_lower, KiB
  // mem_upper: KiB of RAM from 1 MiB up to the first hole (the MMIO hole when RAM reaches it).
  v.setUint32(8, (guestLayout(Math.floor(memorySize / PAGE_SIZE)).lowFrames * PAGE_SIZE - 0x10_0000) / 1024, true);
  v.setUint32(16, BootLayout.cmdline, true);
  const map = guestMemoryMap(memorySize);
  v.setUint32(44, 24 * map.length, true); // mmap_length: entries of 24 bytes (size field + 20)
  v.setUint32(48, BootLayout.memmap, true);
  mem.write(BootLayout.startInfo, mi);
  const mm = new Uint8Array(24 * map.length);
  const m = new DataView(mm.buffer);
  const entry = (at: number, base: number, length: number, type: number) => {
    m.setUint32(at, 20, true);
    le64(mm, at + 4, base);
    le64(mm, at + 12, length);
    m.setUint32(at + 20, type, true);
  };
  // multiboot_memory_map types: MULTIBOOT_MEMORY_AVAILABLE (1) for RAM, MULTIBOOT_MEMORY_RESERVED (2): the E820 values.
  map.forEach((e, i) => entry(24 * i, e.addr, e.size, e.type === XEN_HVM_MEMMAP_TYPE_RAM ? MULTIBOOT_MEMORY_AVAILABLE : e.type));
  mem.write(BootLayout.memmap, mm);
}

function writeStartInfo(map: readonly MemoryMapEntry[], rsdp: number, mem: GuestPhysicalWriter): void {
  // struct hvm_start_info v1: magic, version, flags, nr_modules, modlist_paddr, cmdline_paddr,
  // rsdp_paddr, memmap_paddr, memmap_entries, reserved.
  const si = new Uint8Array(56);
  const sv = new DataView(si.buffer);
  sv.setUint32(0, XEN_HVM_START_MAGIC_VALUE, true);
  sv.setUint32(4, 1, true);
  le64(si, 24, BootLayout.cmdline);
  le64(si, 32, rsdp); // rsdp_paddr: 0 when there are no ACPI tables
  le64(si, 40, BootLayout.memmap);
  sv.setUint32(48, map.length, true);
  mem.write(BootLayout.startInfo, si);
  // struct hvm_memmap_table_entry { u64 addr, size; u32 type, reserved; }: guestMemoryMap's entries.
  const mm = new Uint8Array(24 * map.length);
  const mv = new DataView(mm.buffer);
  map.forEach((e, i) => {
    le64(mm, 24 * i, e.addr);
    le64(mm, 24 * i + 8, e.size);
    mv.setUint32(24 * i + 16, e.type, true);
  });
  mem.write(BootLayout.memmap, mm);
}

function writeGdt(mem: GuestPhysicalWriter): void {
  // GDT (SDM 3.4.5): 32-bit code (compatibility mode entry), flat data, 64-bit code, 64-bit TSS.
  const gdt = new Uint8Array(48);
  // (Descriptors as two 32-bit halves: as one number they would exceed 2^53 and lose bits.)
  const gv = new DataView(gdt.buffer);
  const desc = (at: number, lo: number, hi: number) => {
    gv.setUint32(at, lo >>> 0, true);
    gv.setUint32(at + 4, hi >>> 0, true);
  };
  desc(8, 0x0000_ffff, 0x00cf_9b00);
  desc(16, 0x0000_ffff, 0x00cf_9300);
  desc(24, 0x0000_ffff, 0x00af_9b00);
  // 64-bit TSS descriptor (type 0xB busy, present), base BootLayout.tss, limit 0x67.
  const tssLow = ((BootLayout.tss & 0xffff) << 16) | 0x67;
  const tssHigh = (BootLayout.tss & 0xff00_0000) | 0x8b00 | ((BootLayout.tss >>> 16) & 0xff);
  desc(32, tssLow, tssHigh);
  mem.write(BootLayout.gdt, gdt);
}

function writeIdentityMap(mem: GuestPhysicalWriter): void {
  // Identity map of the first 4 GiB (SDM 4.5): PML4[0] -> PDPT, PDPT[0..3] -> PDs, 2 MiB pages.
  const P = 0x1, RW = 0x2, PS = 0x80;
  const pml4 = new Uint8Array(PAGE_SIZE);
  le64(pml4, 0, BootLayout.pdpt | P | RW);
  mem.write(BootLayout.pml4, pml4);
  const pdpt = new Uint8Array(PAGE_SIZE);
  for (let i = 0; i < 4; i++) le64(pdpt, i * 8, (BootLayout.pd + i * PAGE_SIZE) | P | RW);
  mem.write(BootLayout.pdpt, pdpt);
  const pd = new Uint8Array(PAGE_SIZE);
  for (let t = 0; t < 4; t++) {
    for (let i = 0; i < 512; i++) le64(pd, i * 8, (t * 512 + i) * 0x20_0000 + (P | RW | PS));
    mem.write(BootLayout.pd + t * PAGE_SIZE, pd);
  }
}
