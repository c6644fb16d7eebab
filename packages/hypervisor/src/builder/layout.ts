/**
 * Where a domain's RAM and the builder's special frames sit in guest-physical space, laid out as
 * Xen's HVM builder does (tools/libs/light/libxl_dom.c libxl__build_hvm and libxl_x86.c
 * libxl__arch_domain_construct_memmap, tools/libs/guest/xg_dom_x86.c meminit_hvm):
 *
 * - Low RAM from GPA 0 up to the MMIO hole. The hole starts at HVM_BELOW_4G_RAM_END
 *   (0xF0000000, xen/include/public/hvm/e820.h: xl's default `mmio_hole`, 256 MiB below 4 GiB)
 *   and runs to 4 GiB; RAM never reaches into it.
 * - The rest of the RAM from 4 GiB up ("highmem": libxl's highmem_end = 4 GiB + memory - lowmem).
 * - In the hole: the PCI BARs from HVM_BELOW_4G_MMIO_START (hvmloader's pci_setup), the IO-APIC
 *   at 0xFEC00000, the local APIC at 0xFEE00000, the toolstack's special pages just below
 *   X86_HVM_END_SPECIAL_REGION (0xFF000000, builder/special-pages.ts), and the place kept for
 *   an identity page table (IDENT_PT_GFN below; the shadow code's own is in no p2m).
 *
 * The memory map the guest gets (hvm_start_info's memmap, the Multiboot mmap, XENMEM_memory_map)
 * says the same: RAM below the 640 KiB legacy hole, RAM from 1 MiB to the hole, the special
 * region reserved, RAM from 4 GiB (`guestMemoryMap`).
 *
 * Modelled more simply than xl: the hole has one fixed size (xl.cfg's `mmio_hole` is not
 * offered), no RDM ranges are reserved, and there is no vNUMA.
 */
import { PAGE_SIZE } from "@vtlab/arch";

/** HVM_BELOW_4G_RAM_END (hvm/e820.h): low RAM ends here at the latest; the MMIO hole follows. */
export const HVM_BELOW_4G_RAM_END = 0xf000_0000;
/** HVM_BELOW_4G_MMIO_START (hvm/e820.h): the bottom of the MMIO hole. */
export const HVM_BELOW_4G_MMIO_START = HVM_BELOW_4G_RAM_END;
/** HVM_BELOW_4G_MMIO_LENGTH (hvm/e820.h): 4 GiB - HVM_BELOW_4G_MMIO_START (256 MiB). */
export const HVM_BELOW_4G_MMIO_LENGTH = 2 ** 32 - HVM_BELOW_4G_MMIO_START;
/** The first guest frame above 4 GiB, where high RAM starts (libxl: GB(4)). */
export const HIGH_MEMORY_START_GFN = 0x10_0000;
/** The last frame of low RAM is below this one (HVM_BELOW_4G_RAM_END >> PAGE_SHIFT). */
export const LOW_MEMORY_END_GFN = HVM_BELOW_4G_RAM_END / PAGE_SIZE;

/** E820 / hvm_memmap_table_entry types (hvm/start_info.h XEN_HVM_MEMMAP_TYPE_RAM, _RESERVED). */
const MEMMAP_TYPE_RAM = 1;
const MEMMAP_TYPE_RESERVED = 2;

/** tools/include/xenguest.h: the special pages end here (a guest frame number, 0xff000 << 12 = 0xff000000). */
export const X86_HVM_END_SPECIAL_REGION = 0xff000;
/** tools/include/xenguest.h: how many special pages there are. */
export const X86_HVM_NR_SPECIAL_PAGES = 8;
/** xg_dom_x86.c NR_IOREQ_SERVER_PAGES: the ioreq-server pages Xen keeps just below the special pages (not modelled; kept free). */
const NR_IOREQ_SERVER_PAGES = 8;

/** Frames of a shadow domain's identity page table: a PML4, a PDPT and four page directories of 2 MiB pages (the first 4 GiB one to one). */
export const IDENT_PT_FRAMES = 6;
/**
 * The start of the region the memory map reserves below Xen's ioreq-server pages (which sit just
 * below the special pages): room for an identity page table of IDENT_PT_FRAMES frames, never on
 * RAM, the APIC, the IO-APIC or a BAR, whatever the domain's memory. Xen keeps the table a
 * paging-off guest runs on out of the guest's RAM: HVM_PARAM_IDENT_PT is a special page
 * (SPECIALPAGE_IDENT_PT), and the shadow code's unpaged_pagetable comes from the shadow pool and
 * is in no p2m. vtlab's shadow domains do the latter (Domain.identityPageTable is a machine
 * address, mmu-shadow's unpaged.ts), so nothing is mapped here: a guest reading it gets what
 * unassigned space gives, on shadow as on EPT.
 */
export const IDENT_PT_GFN = X86_HVM_END_SPECIAL_REGION - X86_HVM_NR_SPECIAL_PAGES - NR_IOREQ_SERVER_PAGES - IDENT_PT_FRAMES;
/** The first guest frame of the region the memory map reserves for the builder (identity table, ioreq-server and special pages). */
export const RESERVED_REGION_GFN = IDENT_PT_GFN;
/** The guest frame the reserved region ends at (X86_HVM_END_SPECIAL_REGION). */
export const RESERVED_REGION_END_GFN = X86_HVM_END_SPECIAL_REGION;

/**
 * The smallest and largest `memory` (MiB) a domain may have: the xl.cfg parser and
 * Hypervisor.createDomain both check against these. The top is what the model supports: RAM
 * above 4 GiB, inside the guest-physical space a p2m holds (MAXPHYADDR 46) and a host's sparse
 * machine memory.
 */
export const GUEST_MEMORY_MIN_MIB = 2;
export const GUEST_MEMORY_MAX_MIB = 1024 * 1024;

/** One range of guest RAM: `count` frames from guest frame `gfn`. */
export interface GuestRamRange {
  readonly gfn: number;
  readonly count: number;
}

/** A domain's RAM in guest-physical space: low RAM from 0, high RAM from 4 GiB. */
export interface GuestLayout {
  /** Frames of RAM in all (the configured memory). */
  readonly ramFrames: number;
  /** Frames from GPA 0 (at most LOW_MEMORY_END_GFN). */
  readonly lowFrames: number;
  /** Frames from 4 GiB (0 when everything fits below the hole). */
  readonly highFrames: number;
  /** The RAM ranges, ascending: low, then high if any. */
  readonly ranges: readonly GuestRamRange[];
}

/** The layout of `ramFrames` frames of RAM (libxl__build_hvm: lowmem_end = min(memory, mmio_start); the rest from 4 GiB). */
export function guestLayout(ramFrames: number): GuestLayout {
  const lowFrames = Math.min(ramFrames, LOW_MEMORY_END_GFN);
  const highFrames = ramFrames - lowFrames;
  const ranges: GuestRamRange[] = [{ gfn: 0, count: lowFrames }];
  if (highFrames > 0) ranges.push({ gfn: HIGH_MEMORY_START_GFN, count: highFrames });
  return { ramFrames, lowFrames, highFrames, ranges };
}

/** One entry of the guest's memory map (an E820 range: hvm_memmap_table_entry, multiboot mmap, XENMEM_memory_map). */
export interface MemoryMapEntry {
  readonly addr: number;
  readonly size: number;
  /** XEN_HVM_MEMMAP_TYPE_RAM (= E820 type 1) or _RESERVED (2). */
  readonly type: number;
}

/**
 * The memory map the builder gives a guest with `memorySize` bytes of RAM (hvm_start_info's
 * memmap, the Multiboot mmap, and XENMEM_memory_map's answer), ascending: RAM below the 640 KiB
 * legacy hole, RAM from 1 MiB to the end of low RAM, a PVH domain's ACPI tables (`acpi`, typed
 * ACPI NVS as libxl types them), the builder's reserved region in the MMIO
 * hole (libxl reserves the special pages for PVH guests; vtlab's region also holds the shadow
 * identity table), and the RAM above 4 GiB.
 */
export function guestMemoryMap(memorySize: number, acpi?: MemoryMapEntry): readonly MemoryMapEntry[] {
  const layout = guestLayout(Math.floor(memorySize / PAGE_SIZE));
  const map: MemoryMapEntry[] = [
    { addr: 0, size: 0xa0000, type: MEMMAP_TYPE_RAM },
    { addr: 0x10_0000, size: layout.lowFrames * PAGE_SIZE - 0x10_0000, type: MEMMAP_TYPE_RAM },
    // A PVH domain's ACPI tables (builder/acpi.ts: ACPI NVS, in the MMIO hole below the reserved region).
    ...(acpi !== undefined ? [acpi] : []),
    { addr: RESERVED_REGION_GFN * PAGE_SIZE, size: (RESERVED_REGION_END_GFN - RESERVED_REGION_GFN) * PAGE_SIZE, type: MEMMAP_TYPE_RESERVED },
  ];
  if (layout.highFrames > 0) map.push({ addr: HIGH_MEMORY_START_GFN * PAGE_SIZE, size: layout.highFrames * PAGE_SIZE, type: MEMMAP_TYPE_RAM });
  return map;
}
