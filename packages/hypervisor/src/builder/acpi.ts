/**
 * The ACPI tables of a PVH domain, as libxl builds them (tools/libs/light/libxl_x86_acpi.c
 * libxl__dom_load_acpi, tools/libacpi/build.c acpi_build_tables, static_tables.c): an RSDP handed
 * over in hvm_start_info.rsdp_paddr, an RSDT and an XSDT, a FADT (revision 5) with its FACS and
 * DSDT, and a MADT with one local APIC per vCPU. A PVH domain has no IO-APIC, PIC, PIT, HPET, PM
 * timer, VGA or CMOS RTC in Xen, so the tables name none: Linux then runs its local APIC in virtual
 * wire mode (no MP configuration), takes the Xen clock source and the Xen timer (VIRQ_TIMER),
 * and counts the vCPUs from the MADT.
 *
 * The layout is libxl's: the tables from ACPI_INFO_PHYSICAL_ADDRESS + one page, the RSDP in the
 * page after them (where libxl puts it for a kernel that declares XENFEAT_linux_rsdp_unrestricted,
 * as Linux does), the whole range populated with the domain's own memory and typed as ACPI NVS in
 * the memory map.
 *
 * Modelled more simply than libxl:
 * - No acpi_info page at ACPI_INFO_PHYSICAL_ADDRESS itself: only hvmloader's and libxl's DSDT AML
 *   reads it, and this DSDT has none that does.
 * - The DSDT declares the processor objects (\_SB.PRxx, as mk_dsdt names them) without their
 *   _HID/_UID names and _MAT/_STA/_EJ0 methods (no vCPU hot-plug).
 * - The local APIC IDs are the vCPU ids (vtlab's local APICs; Xen's vLAPIC uses 2 x vCPU id).
 * - Without XENFEAT_linux_rsdp_unrestricted in a Linux kernel's notes libxl would put the RSDP at
 *   1 MiB - 36 instead; vtlab always puts it after the tables.
 */
import { PAGE_SIZE } from "@vtlab/arch";

/** tools/libs/light/libxl_arch.h ACPI_INFO_PHYSICAL_ADDRESS: the base of the ACPI region. */
export const ACPI_INFO_PHYSICAL_ADDRESS = 0xfc00_0000;
/** The first byte of the tables (libxl: guest_start = ACPI_INFO_PHYSICAL_ADDRESS + page_size). */
export const ACPI_TABLES_ADDRESS = ACPI_INFO_PHYSICAL_ADDRESS + PAGE_SIZE;
/** E820_NVS (the memory map type libxl gives the populated ACPI ranges). */
export const E820_NVS = 4;

/** acpi2_0.h: the OEM and creator fields of every table. */
const ACPI_OEM_ID = "Xen";
const ACPI_OEM_TABLE_ID = "HVM";
const ACPI_OEM_REVISION = 0;
const ACPI_CREATOR_ID = "HVML";
const ACPI_CREATOR_REVISION = 0;
/** acpi2_0.h table revisions (the FADT's is the ACPI revision libxl asks for: 5). */
const ACPI_2_0_RSDP_REVISION = 2;
const ACPI_2_0_RSDT_REVISION = 1;
const ACPI_2_0_XSDT_REVISION = 1;
const ACPI_2_0_MADT_REVISION = 2;
const ACPI_FADT_REVISION = 5;
const ACPI_2_0_FACS_VERSION = 1;
/** DSDT revision 2: 64-bit integers in AML. */
const DSDT_REVISION = 2;
/** RSDP_LEN: struct acpi_20_rsdp. */
const RSDP_LEN = 36;
const HEADER_LEN = 36;
/** struct acpi_fadt for ACPI 5 (through sleep_status), and struct acpi_20_facs. */
const FADT_LEN = 268;
const FACS_LEN = 64;
/** The local APIC's physical base (LAPIC_BASE_ADDRESS). */
const LAPIC_BASE_ADDRESS = 0xfee0_0000;

/** FADT flags (acpi2_0.h) libxl sets: WBINVD, C1, FIX_RTC, TMR_VAL_EXT, USE_PLATFORM_CLOCK, and PWR/SLP_BUTTON with no buttons (ACPI_HAS_BUTTONS unset). */
const ACPI_WBINVD = 1 << 0;
const ACPI_PROC_C1 = 1 << 2;
const ACPI_PWR_BUTTON = 1 << 4;
const ACPI_SLP_BUTTON = 1 << 5;
const ACPI_FIX_RTC = 1 << 6;
const ACPI_TMR_VAL_EXT = 1 << 8;
const ACPI_USE_PLATFORM_CLOCK = 1 << 15;
/** FADT IA-PC boot architecture flags: no VGA, no CMOS RTC (a PVH domain has neither). */
const ACPI_FADT_NO_VGA = 1 << 2;
const ACPI_FADT_NO_CMOS_RTC = 1 << 5;
/** MADT flags and entries (acpi2_0.h). */
const ACPI_PCAT_COMPAT = 1 << 0;
const ACPI_PROCESSOR_LOCAL_APIC = 0;
const ACPI_LOCAL_APIC_ENABLED = 1 << 0;
const MADT_LAPIC_LEN = 8;
/** Generic address structure: the system I/O space (ACPI_SYSTEM_IO). */
const ACPI_SYSTEM_IO = 1;
/** hvm/ioreq.h ACPI_*_ADDRESS_V1 (the PM1a blocks and GPE0 the static FADT names; Xen emulates none of them for PVH). */
const ACPI_PM1A_EVT_BLK_ADDRESS_V1 = 0xb000;
const ACPI_PM1A_CNT_BLK_ADDRESS_V1 = ACPI_PM1A_EVT_BLK_ADDRESS_V1 + 0x04;
const ACPI_GPE0_BLK_ADDRESS_V1 = 0xafe0;
const ACPI_GPE0_BLK_LEN_V1 = 0x04;
/** acpi2_0.h bit widths of the PM1a event and control blocks. */
const ACPI_PM1A_EVT_BLK_BIT_WIDTH = 0x20;
const ACPI_PM1A_CNT_BLK_BIT_WIDTH = 0x10;
/** The reset register (port 0xCF9, value 6) the static FADT names. */
const RESET_PORT = 0xcf9;
const RESET_VALUE = 6;
/** The SCI interrupt the static FADT names. */
const SCI_INT = 9;
/** AML opcodes (ACPI 6.5 section 20). */
const AML_SCOPE_OP = 0x10;
const AML_EXT_OP_PREFIX = 0x5b;
const AML_PROCESSOR_OP = 0x83;
const AML_ROOT_CHAR = 0x5c;

/** What the builder puts in guest memory: `bytes` at `gpa`, the RSDP at `rsdp`. */
export interface AcpiTables {
  readonly gpa: number;
  readonly bytes: Uint8Array;
  readonly rsdp: number;
  /** Each table's signature and guest-physical address, in the order they were laid out. */
  readonly tables: readonly { readonly signature: string; readonly gpa: number; readonly length: number }[];
}

class Region {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  at = 0;
  constructor(size: number, readonly gpa: number) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
  }
  alloc(size: number, align: number): number {
    this.at = Math.ceil(this.at / align) * align;
    const off = this.at;
    this.at += size;
    return off;
  }
  u8(off: number, v: number): void {
    this.view.setUint8(off, v);
  }
  u16(off: number, v: number): void {
    this.view.setUint16(off, v, true);
  }
  u32(off: number, v: number): void {
    this.view.setUint32(off, v >>> 0, true);
  }
  u64(off: number, v: number): void {
    this.view.setUint32(off, v >>> 0, true);
    this.view.setUint32(off + 4, Math.floor(v / 2 ** 32) >>> 0, true);
  }
  /** The byte that makes bytes [off, off + length) sum to zero, written at `checksumAt`. */
  checksum(off: number, length: number, checksumAt: number): void {
    this.bytes[checksumAt] = 0;
    let sum = 0;
    for (let i = 0; i < length; i++) sum += this.bytes[off + i]!;
    this.bytes[checksumAt] = (0x100 - (sum & 0xff)) & 0xff;
  }
  /** An ACPI table header (signature, length, revision; the checksum is set by `finish`). */
  header(off: number, signature: string, length: number, revision: number): void {
    for (let i = 0; i < 4; i++) this.bytes[off + i] = signature.charCodeAt(i);
    this.u32(off + 4, length);
    this.u8(off + 8, revision);
    fixedString(this.bytes, off + 10, ACPI_OEM_ID, 6);
    fixedString(this.bytes, off + 16, ACPI_OEM_TABLE_ID, 8);
    this.u32(off + 24, ACPI_OEM_REVISION);
    for (let i = 0; i < 4; i++) this.bytes[off + 28 + i] = ACPI_CREATOR_ID.charCodeAt(i);
    this.u32(off + 32, ACPI_CREATOR_REVISION);
  }
  finish(off: number): void {
    this.checksum(off, this.view.getUint32(off + 4, true), off + 9);
  }
}

/** libacpi's fixed_strcpy: the string, NUL-padded to the field's width (no terminator when it fills it). */
function fixedString(out: Uint8Array, off: number, s: string, width: number): void {
  for (let i = 0; i < width; i++) out[off + i] = i < s.length ? s.charCodeAt(i) : 0;
}

/** A generic address structure (12 bytes) in system I/O space. */
function gas(r: Region, off: number, bitWidth: number, address: number): void {
  r.u8(off, ACPI_SYSTEM_IO);
  r.u8(off + 1, bitWidth);
  r.u8(off + 2, 0);
  r.u8(off + 3, 0);
  r.u64(off + 4, address);
}

/** An AML PkgLength (ACPI 6.5 20.2.4) for a package whose contents after the PkgLength are `n` bytes. */
function pkgLength(n: number): number[] {
  if (n + 1 <= 0x3f) return [n + 1];
  const total = n + 2;
  if (total > 0xfff) throw new Error(`vtlab bug: AML package of ${n} bytes`);
  return [0x40 | (total & 0x0f), total >>> 4];
}

/** The DSDT's AML: Scope (\_SB) { Processor (PRxx, xx, 0, 0) {} for each vCPU }. */
function dsdtAml(cpus: number): number[] {
  const body: number[] = [AML_ROOT_CHAR, ..."_SB_".split("").map((c) => c.charCodeAt(0))];
  for (let i = 0; i < cpus; i++) {
    const name = `PR${i.toString(16).toUpperCase().padStart(2, "0")}`;
    const proc = [...name.split("").map((c) => c.charCodeAt(0)), i & 0xff, 0, 0, 0, 0, 0];
    body.push(AML_EXT_OP_PREFIX, AML_PROCESSOR_OP, ...pkgLength(proc.length), ...proc);
  }
  return [AML_SCOPE_OP, ...pkgLength(body.length), ...body];
}

/** How many pages the tables and the RSDP need for `cpus` vCPUs (the populated range). */
export function acpiPages(cpus: number): number {
  return buildAcpiTables(Array.from({ length: cpus }, (_, i) => i)).bytes.length / PAGE_SIZE;
}

/**
 * Lay out the tables for a domain whose vCPUs have the local APIC IDs `apicIds` (vCPU i has
 * `apicIds[i]`), from ACPI_TABLES_ADDRESS, and the RSDP in the page after them.
 */
export function buildAcpiTables(apicIds: readonly number[]): AcpiTables {
  const cpus = apicIds.length;
  if (cpus < 1 || cpus > 255) throw new Error(`vtlab bug: ${cpus} vCPUs for the MADT`);
  const aml = dsdtAml(cpus);
  const madtLen = 44 + MADT_LAPIC_LEN * cpus;
  // The tables first (in acpi_build_tables' order), then the RSDP on the next page. 16 pages
  // hold the largest set (255 vCPUs: a 2 KiB MADT and a 3.3 KiB DSDT).
  const r = new Region(16 * PAGE_SIZE, ACPI_TABLES_ADDRESS);
  const tables: { signature: string; gpa: number; length: number }[] = [];
  const placed = (signature: string, off: number, length: number) => tables.push({ signature, gpa: r.gpa + off, length });

  // FACS (64-byte aligned; no checksum).
  const facs = r.alloc(FACS_LEN, 64);
  for (let i = 0; i < 4; i++) r.bytes[facs + i] = "FACS".charCodeAt(i);
  r.u32(facs + 4, FACS_LEN);
  r.u8(facs + 32, ACPI_2_0_FACS_VERSION);
  placed("FACS", facs, FACS_LEN);

  // DSDT.
  const dsdtLen = HEADER_LEN + aml.length;
  const dsdt = r.alloc(dsdtLen, 16);
  r.header(dsdt, "DSDT", dsdtLen, DSDT_REVISION);
  r.bytes.set(aml, dsdt + HEADER_LEN);
  r.finish(dsdt);
  placed("DSDT", dsdt, dsdtLen);

  // FADT, revision 5 (the static Fadt with the PVH table flags: no PM timer, no buttons, no VGA, no CMOS RTC).
  const fadt = r.alloc(FADT_LEN, 16);
  r.header(fadt, "FACP", FADT_LEN, ACPI_FADT_REVISION);
  r.u32(fadt + 36, r.gpa + facs); // FIRMWARE_CTRL
  r.u32(fadt + 40, r.gpa + dsdt); // DSDT
  r.u16(fadt + 46, SCI_INT);
  r.u32(fadt + 56, ACPI_PM1A_EVT_BLK_ADDRESS_V1);
  r.u32(fadt + 64, ACPI_PM1A_CNT_BLK_ADDRESS_V1);
  r.u32(fadt + 76, 0); // PM_TMR_BLK: no PM timer (ACPI_HAS_PMTIMER unset)
  r.u32(fadt + 80, ACPI_GPE0_BLK_ADDRESS_V1);
  r.u8(fadt + 88, ACPI_PM1A_EVT_BLK_BIT_WIDTH / 8);
  r.u8(fadt + 89, ACPI_PM1A_CNT_BLK_BIT_WIDTH / 8);
  r.u8(fadt + 91, 0); // PM_TMR_LEN
  r.u8(fadt + 92, ACPI_GPE0_BLK_LEN_V1);
  r.u16(fadt + 96, 0x0fff); // P_LVL2_LAT > 100: no C2
  r.u16(fadt + 98, 0x0fff); // P_LVL3_LAT > 1000: no C3
  r.u16(fadt + 109, ACPI_FADT_NO_VGA | ACPI_FADT_NO_CMOS_RTC);
  r.u32(fadt + 112, ACPI_PROC_C1 | ACPI_WBINVD | ACPI_FIX_RTC | ACPI_TMR_VAL_EXT | ACPI_USE_PLATFORM_CLOCK | ACPI_PWR_BUTTON | ACPI_SLP_BUTTON);
  gas(r, fadt + 116, 8, RESET_PORT);
  r.u8(fadt + 128, RESET_VALUE);
  r.u64(fadt + 132, r.gpa + facs); // X_FIRMWARE_CTRL
  r.u64(fadt + 140, r.gpa + dsdt); // X_DSDT
  gas(r, fadt + 148, ACPI_PM1A_EVT_BLK_BIT_WIDTH, ACPI_PM1A_EVT_BLK_ADDRESS_V1);
  gas(r, fadt + 172, ACPI_PM1A_CNT_BLK_BIT_WIDTH, ACPI_PM1A_CNT_BLK_ADDRESS_V1);
  // X_PM_TMR_BLK stays zero (no PM timer).
  r.finish(fadt);
  placed("FACP", fadt, FADT_LEN);

  // MADT: the local APIC address, PC-AT compatible (there are no 8259s to mask, but the static table says so), one local APIC per vCPU.
  const madt = r.alloc(madtLen, 16);
  r.header(madt, "APIC", madtLen, ACPI_2_0_MADT_REVISION);
  r.u32(madt + 36, LAPIC_BASE_ADDRESS);
  r.u32(madt + 40, ACPI_PCAT_COMPAT);
  for (let i = 0; i < cpus; i++) {
    const e = madt + 44 + MADT_LAPIC_LEN * i;
    r.u8(e, ACPI_PROCESSOR_LOCAL_APIC);
    r.u8(e + 1, MADT_LAPIC_LEN);
    r.u8(e + 2, i); // ACPI processor id: matches the DSDT's PRxx
    r.u8(e + 3, apicIds[i]!);
    r.u32(e + 4, ACPI_LOCAL_APIC_ENABLED);
  }
  r.finish(madt);
  placed("APIC", madt, madtLen);

  // XSDT: the FADT, then the MADT.
  const xsdtLen = HEADER_LEN + 16;
  const xsdt = r.alloc(xsdtLen, 16);
  r.header(xsdt, "XSDT", xsdtLen, ACPI_2_0_XSDT_REVISION);
  r.u64(xsdt + HEADER_LEN, r.gpa + fadt);
  r.u64(xsdt + HEADER_LEN + 8, r.gpa + madt);
  r.finish(xsdt);
  placed("XSDT", xsdt, xsdtLen);

  // RSDT: the same two, 32-bit.
  const rsdtLen = HEADER_LEN + 8;
  const rsdt = r.alloc(rsdtLen, 16);
  r.header(rsdt, "RSDT", rsdtLen, ACPI_2_0_RSDT_REVISION);
  r.u32(rsdt + HEADER_LEN, r.gpa + fadt);
  r.u32(rsdt + HEADER_LEN + 4, r.gpa + madt);
  r.finish(rsdt);
  placed("RSDT", rsdt, rsdtLen);
  const tablePages = Math.ceil(r.at / PAGE_SIZE);

  // RSDP, on the page after the tables.
  const rsdp = tablePages * PAGE_SIZE;
  for (let i = 0; i < 8; i++) r.bytes[rsdp + i] = "RSD PTR ".charCodeAt(i);
  fixedString(r.bytes, rsdp + 9, ACPI_OEM_ID, 6);
  r.u8(rsdp + 15, ACPI_2_0_RSDP_REVISION);
  r.u32(rsdp + 16, r.gpa + rsdt);
  r.u32(rsdp + 20, RSDP_LEN);
  r.u64(rsdp + 24, r.gpa + xsdt);
  r.checksum(rsdp, 20, rsdp + 8); // the ACPI 1.0 checksum: the first 20 bytes
  r.checksum(rsdp, RSDP_LEN, rsdp + 32); // the extended checksum: all 36
  placed("RSDP", rsdp, RSDP_LEN);
  return { gpa: r.gpa, bytes: r.bytes.slice(0, (tablePages + 1) * PAGE_SIZE), rsdp: r.gpa + rsdp, tables };
}
