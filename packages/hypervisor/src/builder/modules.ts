/**
 * PVH boot modules (xen/include/public/arch-x86/hvm/start_info.h): the xl.cfg `ramdisk` handed to
 * the kernel as module 0 of hvm_start_info's modlist, as libxl's PVH build does (Linux's PVH entry,
 * arch/x86/platform/pvh/enlighten.c, takes modlist[0] as its initrd).
 *
 * Placement follows the toolstack's domain builder (tools/libs/guest/xg_dom_core.c,
 * xc_dom_build_image: the kernel's segments first, then each module in a page-aligned segment of
 * its own right after them). The module stays RAM in the memory map; the kernel reserves it
 * itself.
 */
import { PAGE_SIZE, formatHex } from "@vtlab/arch";
import type { ElfImage } from "./elf.js";

/** sizeof(struct hvm_modlist_entry): paddr, size, cmdline_paddr, reserved (u64 each). */
export const HVM_MODLIST_ENTRY_SIZE = 32;
/** hvm_start_info's nr_modules (u32) and modlist_paddr (u64) offsets. */
export const HVM_START_INFO_NR_MODULES = 12;
export const HVM_START_INFO_MODLIST_PADDR = 16;

export interface BootModule {
  /** The module's bytes (the ramdisk file). */
  readonly bytes: Uint8Array;
  /** What it is, for messages ("ramdisk"). */
  readonly name: string;
}

/** Where a module went: its hvm_modlist_entry. */
export interface PlacedModule {
  readonly name: string;
  readonly paddr: number;
  readonly size: number;
}

/**
 * Place `modules` after the kernel's highest loaded byte, each page-aligned, in a guest of
 * `memorySize` bytes (the low RAM below the MMIO hole): the placements, or a message saying what
 * does not fit (the caller names the module: only the ramdisk is one).
 */
export function placeModules(elf: ElfImage, modules: readonly BootModule[], memorySize: number): PlacedModule[] | string {
  let next = 0;
  for (const s of elf.segments) next = Math.max(next, s.paddr + s.memSize);
  const placed: PlacedModule[] = [];
  for (const m of modules) {
    const paddr = Math.ceil(next / PAGE_SIZE) * PAGE_SIZE;
    if (paddr + m.bytes.length > memorySize) {
      return `${m.bytes.length} bytes at ${formatHex(paddr)} (the first page after the kernel${placed.length > 0 ? " and the modules before it" : ""}) do not fit in the guest's low RAM of ${formatHex(memorySize)} bytes`;
    }
    placed.push({ name: m.name, paddr, size: m.bytes.length });
    next = paddr + m.bytes.length;
  }
  return placed;
}

/** The modlist: one hvm_modlist_entry per module (no per-module command line: cmdline_paddr 0). */
export function encodeModlist(placed: readonly PlacedModule[]): Uint8Array {
  const out = new Uint8Array(placed.length * HVM_MODLIST_ENTRY_SIZE);
  const dv = new DataView(out.buffer);
  placed.forEach((m, i) => {
    // Modules are placed in low RAM (below the MMIO hole, builder/layout.ts), so the high halves are 0.
    dv.setUint32(i * HVM_MODLIST_ENTRY_SIZE, m.paddr, true);
    dv.setUint32(i * HVM_MODLIST_ENTRY_SIZE + 8, m.size, true);
  });
  return out;
}
