/**
 * The ACPI tables of a PVH domain (builder/acpi.ts), as libxl builds them: every checksum, the
 * pointer chain RSDP -> XSDT/RSDT -> FADT/MADT -> DSDT/FACS, the MADT's local APICs, the RSDP in
 * hvm_start_info, and the populated ACPI NVS range in the memory map. The tables are read back
 * from guest memory by an independent parser written here from the ACPI 6.5 layouts.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  ACPI_INFO_PHYSICAL_ADDRESS,
  ACPI_TABLES_ADDRESS,
  BootLayout,
  buildAcpiTables,
  acpiPages,
  E820_NVS,
  guestMemoryMap,
  Hypervisor,
  type Domain,
} from "@vtlab/hypervisor";
import { linuxLikeElf } from "./linux-images.js";

const MiB = 1024 * 1024;
/** hlt: the kernel never runs in these tests. */
const HLT = Uint8Array.of(0xf4);

/** A reader of guest-physical bytes: the tables as the builder returned them, or the domain's memory. */
type Reader = (gpa: number, n: number) => Uint8Array;

function fromTables(t: ReturnType<typeof buildAcpiTables>): Reader {
  return (gpa, n) => {
    const off = gpa - t.gpa;
    if (off < 0 || off + n > t.bytes.length) throw new Error(`GPA 0x${gpa.toString(16)} + ${n} is outside the tables`);
    return t.bytes.slice(off, off + n);
  };
}

function fromDomain(hv: Hypervisor, d: Domain): Reader {
  return (gpa, n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const b = hv.memory.read8(d.machineAddress(gpa + i)!);
      if (typeof b !== "number") throw new Error(`GPA 0x${(gpa + i).toString(16)}: not readable`);
      out[i] = b;
    }
    return out;
  };
}

const sum8 = (b: Uint8Array) => b.reduce((a, x) => (a + x) & 0xff, 0);
const ascii = (b: Uint8Array) => String.fromCharCode(...b);
const u32 = (b: Uint8Array, off: number) => new DataView(b.buffer, b.byteOffset).getUint32(off, true);
const u64 = (b: Uint8Array, off: number) => Number(new DataView(b.buffer, b.byteOffset).getBigUint64(off, true));

interface Parsed {
  rsdp: Uint8Array;
  rsdtEntries: number[];
  xsdtEntries: number[];
  tables: Map<string, { gpa: number; bytes: Uint8Array }>;
}

/** Walk from the RSDP as an OS does, checking every checksum on the way. */
function walk(read: Reader, rsdpGpa: number): Parsed {
  const rsdp = read(rsdpGpa, 36);
  expect(ascii(rsdp.subarray(0, 8))).toBe("RSD PTR ");
  expect(sum8(rsdp.subarray(0, 20)), "RSDP checksum (first 20 bytes)").toBe(0);
  expect(rsdp[15], "RSDP revision").toBe(2);
  expect(u32(rsdp, 20), "RSDP length").toBe(36);
  expect(sum8(rsdp), "RSDP extended checksum").toBe(0);
  const tables = new Map<string, { gpa: number; bytes: Uint8Array }>();
  const table = (gpa: number, signature: string) => {
    const head = read(gpa, 36);
    expect(ascii(head.subarray(0, 4))).toBe(signature);
    const bytes = read(gpa, u32(head, 4));
    if (signature !== "FACS") {
      expect(sum8(bytes), `${signature} checksum`).toBe(0);
      expect(ascii(bytes.subarray(10, 16))).toBe("Xen\0\0\0");
      expect(ascii(bytes.subarray(16, 24))).toBe("HVM\0\0\0\0\0");
    }
    tables.set(signature, { gpa, bytes });
    return bytes;
  };
  const rsdt = table(u32(rsdp, 16), "RSDT");
  const xsdt = table(u64(rsdp, 24), "XSDT");
  const rsdtEntries = Array.from({ length: (rsdt.length - 36) / 4 }, (_, i) => u32(rsdt, 36 + 4 * i));
  const xsdtEntries = Array.from({ length: (xsdt.length - 36) / 8 }, (_, i) => u64(xsdt, 36 + 8 * i));
  const facp = table(xsdtEntries[0]!, "FACP");
  table(xsdtEntries[1]!, "APIC");
  // FADT: FIRMWARE_CTRL/DSDT (32-bit) and X_FIRMWARE_CTRL/X_DSDT (64-bit) agree.
  expect(u64(facp, 132)).toBe(u32(facp, 36));
  expect(u64(facp, 140)).toBe(u32(facp, 40));
  table(u32(facp, 36), "FACS");
  table(u32(facp, 40), "DSDT");
  return { rsdp, rsdtEntries, xsdtEntries, tables };
}

/** The MADT's local APIC entries: [ACPI processor id, APIC id, flags]. */
function madtLapics(madt: Uint8Array): [number, number, number][] {
  const out: [number, number, number][] = [];
  for (let off = 44; off < madt.length; off += madt[off + 1]!) {
    expect(madt[off + 1], "MADT entry length").toBeGreaterThan(0);
    if (madt[off] === 0) out.push([madt[off + 2]!, madt[off + 3]!, u32(madt, off + 4)]);
  }
  return out;
}

describe("ACPI tables for a PVH domain (builder/acpi.ts)", () => {
  it("two vCPUs: the chain from the RSDP, every checksum, the FADT revision 5 and its flags, a local APIC per vCPU", () => {
    const t = buildAcpiTables([0, 1]);
    expect(t.gpa).toBe(ACPI_TABLES_ADDRESS);
    expect(ACPI_TABLES_ADDRESS).toBe(ACPI_INFO_PHYSICAL_ADDRESS + 0x1000);
    expect(t.bytes.length % 0x1000).toBe(0);
    expect(t.rsdp % 0x1000).toBe(0); // the page after the tables
    expect(t.rsdp).toBe(t.gpa + t.bytes.length - 0x1000);
    const p = walk(fromTables(t), t.rsdp);
    const facp = p.tables.get("FACP")!;
    const madt = p.tables.get("APIC")!;
    expect(p.xsdtEntries).toEqual([facp.gpa, madt.gpa]);
    expect(p.rsdtEntries).toEqual([facp.gpa, madt.gpa]);
    expect(facp.bytes[8], "FADT revision").toBe(5);
    expect(facp.bytes.length).toBe(268);
    expect(u32(facp.bytes, 76), "PM_TMR_BLK: no PM timer").toBe(0);
    const iapc = facp.bytes[109]! | (facp.bytes[110]! << 8);
    expect(iapc & (1 << 2), "no VGA").not.toBe(0);
    expect(iapc & (1 << 5), "no CMOS RTC").not.toBe(0);
    expect(u32(madt.bytes, 36), "local APIC address").toBe(0xfee0_0000);
    expect(madtLapics(madt.bytes)).toEqual([
      [0, 0, 1],
      [1, 1, 1],
    ]);
    const facs = p.tables.get("FACS")!;
    expect(facs.gpa % 64, "FACS alignment").toBe(0);
    expect(facs.bytes.length).toBe(64);
    // The DSDT declares \_SB.PR00 and \_SB.PR01 (AML Processor objects 0x5B 0x83).
    const aml = ascii(p.tables.get("DSDT")!.bytes.subarray(36));
    expect(aml).toContain("\\_SB_");
    expect(aml).toContain("\x5b\x83");
    expect(aml).toContain("PR00\x00");
    expect(aml).toContain("PR01\x01");
    // What the builder says it laid out is what the walk found.
    expect(Object.fromEntries(t.tables.map((e) => [e.signature, e.gpa]))).toEqual({ ...Object.fromEntries([...p.tables].map(([s, e]) => [s, e.gpa])), RSDP: t.rsdp });
  });

  it("any vCPU count from 1 to 255: checksums hold, one enabled local APIC per APIC id, the AML's package lengths parse", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 254 }), { minLength: 1, maxLength: 255 }), (ids) => {
        const t = buildAcpiTables(ids);
        expect(t.bytes.length).toBe(acpiPages(ids.length) * 0x1000);
        const p = walk(fromTables(t), t.rsdp);
        expect(madtLapics(p.tables.get("APIC")!.bytes)).toEqual(ids.map((id, i) => [i, id, 1]));
        // DefScope := ScopeOp PkgLength NameString TermList: the PkgLength covers the rest of the DSDT.
        const aml = p.tables.get("DSDT")!.bytes.subarray(36);
        expect(aml[0]).toBe(0x10);
        const lead = aml[1]!;
        const follow = lead >> 6;
        let len = follow === 0 ? lead & 0x3f : lead & 0x0f;
        for (let i = 0; i < follow; i++) len |= aml[2 + i]! << (4 + 8 * i);
        expect(len).toBe(aml.length - 1);
      }),
      { numRuns: 60, seed: 0x5d7 },
    );
    expect(() => buildAcpiTables([])).toThrow(/0 vCPUs/);
  });

  it("acpiPages is the size of the populated range for that many vCPUs", () => {
    for (const n of [1, 2, 8, 64, 255]) expect(acpiPages(n) * 0x1000).toBe(buildAcpiTables(Array.from({ length: n }, (_, i) => i)).bytes.length);
  });

  for (const hap of [true, false]) {
    it(`a PVH domain with vcpus = 2 gets them in its memory, the RSDP in hvm_start_info, the range as ACPI NVS in its map (${hap ? "EPT" : "shadow"})`, () => {
      const hv = new Hypervisor({ memoryMiB: 96 });
      const d = hv.createDomain({ name: "lx", memoryMiB: 64, hap, vcpus: 2, kernel: linuxLikeElf(HLT) });
      const read = fromDomain(hv, d);
      const si = read(BootLayout.startInfo, 56);
      const rsdpPaddr = u64(si, 32);
      expect(rsdpPaddr).toBe(d.boot!.acpi!.rsdp);
      const p = walk(read, rsdpPaddr);
      expect(madtLapics(p.tables.get("APIC")!.bytes)).toEqual([
        [0, 0, 1],
        [1, 1, 1],
      ]);
      const nvs = d.boot!.memoryMap.filter((e) => e.type === E820_NVS);
      expect(nvs).toEqual([{ addr: ACPI_TABLES_ADDRESS, size: acpiPages(2) * 0x1000, type: E820_NVS }]);
      for (const [sig, e] of p.tables) expect(e.gpa >= nvs[0]!.addr && e.gpa + e.bytes.length <= nvs[0]!.addr + nvs[0]!.size, sig).toBe(true);
    });
  }

  it("acpi = false: no tables, rsdp_paddr 0, no ACPI NVS entry, nothing populated there", () => {
    const hv = new Hypervisor({ memoryMiB: 96 });
    const d = hv.createDomain({ name: "noacpi", memoryMiB: 64, acpi: false, kernel: linuxLikeElf(HLT) });
    expect(d.boot!.acpi).toBeUndefined();
    expect(u64(fromDomain(hv, d)(BootLayout.startInfo, 56), 32)).toBe(0);
    expect(d.boot!.memoryMap).toEqual(guestMemoryMap(64 * MiB));
    expect(d.machineAddress(ACPI_TABLES_ADDRESS)).toBeUndefined();
  });
});
