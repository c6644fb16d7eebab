import { describe, expect, it } from "vitest";
import {
  DEFAULT_EPT_CAPABILITIES,
  EPT_1G_RSVD_LO,
  EPT_A,
  EPT_D,
  EPT_EFFECTIVE_READ,
  EPT_EFFECTIVE_WRITE,
  EPT_GLA_FAULT,
  EPT_GLA_VALID,
  EPT_IPAT,
  EPT_PAGE_SIZE,
  EPT_R,
  EPT_READ_VIOLATION,
  EPT_W,
  EPT_X,
  EptMemoryType,
  EptMisconfigReason,
  decodeEptp,
  describeEptEntry,
  describeQualification,
  eptCapabilities,
  eptEntryAddress,
  eptMisconfigReason,
  eptReservedHighMask,
  eptVpidCapLow,
  makeEptEntry,
  makeEptp,
} from "@vtlab/mmu-ept";

const caps = DEFAULT_EPT_CAPABILITIES;
const rsvdHi = eptReservedHighMask(46);
const WB = EptMemoryType.WB << 3;

describe("EPTP (SDM 25.6.11, checked as VM entry does)", () => {
  it("encodes memory type, walk length - 1, A/D and the EP4TA", () => {
    const p = makeEptp(0x12_3456_7000, { levels: 4, accessedDirty: true });
    expect(p.lo & 7).toBe(6);
    expect((p.lo >>> 3) & 7).toBe(3);
    expect(p.lo & 0x40).toBe(0x40);
    expect(decodeEptp(p.lo, p.hi)).toEqual({ kind: "eptp", memoryType: 6, levels: 4, accessedDirty: true, root: 0x12_3456_7000 });
    const p5 = makeEptp(0x5000, { levels: 5 });
    expect(decodeEptp(p5.lo, p5.hi)).toMatchObject({ levels: 5, accessedDirty: false });
  });

  it("refuses unsupported memory types, walk lengths, A/D and reserved bits, naming the check", () => {
    const base = makeEptp(0x5000);
    expect(decodeEptp((base.lo & ~7) | 1, 0)).toMatchObject({ kind: "eptp-invalid", check: "memory-type" });
    expect(decodeEptp(base.lo & ~7, 0)).toMatchObject({ kind: "eptp" }); // UC is supported by default
    expect(decodeEptp(base.lo & ~7, 0, eptCapabilities({ uncacheable: false }))).toMatchObject({ check: "memory-type" });
    expect(decodeEptp((base.lo & ~0x38) | (1 << 3), 0)).toMatchObject({ check: "walk-length" });
    const five = makeEptp(0x5000, { levels: 5 });
    expect(decodeEptp(five.lo, five.hi, eptCapabilities({ walkLength5: false }))).toMatchObject({ check: "walk-length" });
    const ad = makeEptp(0x5000, { accessedDirty: true });
    expect(decodeEptp(ad.lo, ad.hi, eptCapabilities({ accessedDirty: false }))).toMatchObject({ check: "accessed-dirty" });
    expect(decodeEptp(base.lo | 0x100, 0)).toMatchObject({ check: "reserved-bits" });
    expect(decodeEptp(base.lo | 0x80, 0)).toMatchObject({ check: "reserved-bits" });
    expect(decodeEptp(base.lo, 1 << 14)).toMatchObject({ check: "reserved-bits" }); // bit 46 with MAXPHYADDR 46
    expect(decodeEptp(base.lo, 1 << 13)).toMatchObject({ kind: "eptp" }); // bit 45 is an address bit
  });

  it("reports capabilities as IA32_VMX_EPT_VPID_CAP bits", () => {
    const v = eptVpidCapLow(caps);
    for (const bit of [0, 6, 7, 8, 14, 16, 17, 20, 21, 25, 26]) expect((v >>> bit) & 1).toBe(1);
    expect(eptVpidCapLow(eptCapabilities({ executeOnly: false, pages1G: false })) & ((1 << 0) | (1 << 17))).toBe(0);
  });
});

describe("EPT entries", () => {
  it("builds and reads back addresses up to 52 bits", () => {
    const e = makeEptEntry(0xf_ffff_ffff_f000, EPT_R | EPT_W);
    expect(eptEntryAddress(e.lo, e.hi)).toBe(0xf_ffff_ffff_f000);
    expect(e.lo & 7).toBe(3);
  });

  it("names bits the SDM way", () => {
    expect(describeEptEntry(EPT_R | EPT_X | WB | EPT_IPAT | EPT_A | EPT_D, true)).toBe("R X WB IPAT A D");
    expect(describeEptEntry(EPT_R | EPT_W | EPT_X | EPT_A, false)).toBe("R W X A");
    expect(describeEptEntry(0, true)).toBe("not present");
  });
});

describe("misconfigurations (SDM 29.3.3.1)", () => {
  const leaf = (lo: number, level = 1, hi = 0, c = caps) => eptMisconfigReason(lo, hi, level, c, eptReservedHighMask(c.maxPhyAddr));
  it("write without read: XWR 010b and 110b at any level", () => {
    for (const level of [1, 2, 3, 4]) {
      expect(leaf(EPT_W | WB, level)).toBe(EptMisconfigReason.WriteWithoutRead);
      expect(leaf(EPT_W | EPT_X | WB, level)).toBe(EptMisconfigReason.WriteWithoutRead);
    }
  });
  it("execute-only only where supported", () => {
    expect(leaf(EPT_X | WB)).toBe(0);
    expect(leaf(EPT_X | WB, 1, 0, eptCapabilities({ executeOnly: false }))).toBe(EptMisconfigReason.ExecuteOnlyUnsupported);
  });
  it("reserved memory types 2, 3, 7 in an entry that maps a page; any other type is fine", () => {
    for (const mt of [0, 1, 2, 3, 4, 5, 6, 7]) {
      const expected = mt === 2 || mt === 3 || mt === 7 ? EptMisconfigReason.MemoryType : 0;
      expect(leaf(EPT_R | (mt << 3), 1)).toBe(expected);
      expect(leaf(EPT_R | (mt << 3) | EPT_PAGE_SIZE, 2)).toBe(expected);
      expect(leaf(EPT_R | (mt << 3) | EPT_PAGE_SIZE, 3)).toBe(expected);
    }
  });
  it("reserved bits per level", () => {
    expect(leaf(EPT_R | 0x08, 4)).toBe(EptMisconfigReason.ReservedBit); // PML4E bits 7:3
    expect(leaf(EPT_R | EPT_PAGE_SIZE, 4)).toBe(EptMisconfigReason.ReservedBit); // bit 7 of a PML4E
    expect(leaf(EPT_R | EPT_PAGE_SIZE, 5)).toBe(EptMisconfigReason.ReservedBit); // PML5E
    expect(leaf(EPT_R | 0x40, 3)).toBe(EptMisconfigReason.ReservedBit); // PDPTE -> PD: bits 6:3
    expect(leaf(EPT_R | 0x08, 2)).toBe(EptMisconfigReason.ReservedBit); // PDE -> PT
    expect(leaf(EPT_R | WB | EPT_PAGE_SIZE | 0x1000, 2)).toBe(EptMisconfigReason.ReservedBit); // 2 MiB: 20:12
    expect(leaf(EPT_R | WB | EPT_PAGE_SIZE | 0x20_0000, 2)).toBe(0); // bit 21 is an address bit
    expect(leaf(EPT_R | WB | EPT_PAGE_SIZE | (EPT_1G_RSVD_LO & 0x1000_0000), 3)).toBe(EptMisconfigReason.ReservedBit); // 1 GiB: 29:12
    expect(leaf(EPT_R | WB | EPT_PAGE_SIZE, 3, 0, eptCapabilities({ pages1G: false }))).toBe(EptMisconfigReason.ReservedBit);
    expect(leaf(EPT_R | WB | EPT_PAGE_SIZE, 2, 0, eptCapabilities({ pages2M: false }))).toBe(EptMisconfigReason.ReservedBit);
    expect(leaf(EPT_R | WB | EPT_PAGE_SIZE, 1)).toBe(0); // bit 7 of a PTE is ignored
    expect(leaf(EPT_R | WB, 1, 1 << 14)).toBe(EptMisconfigReason.ReservedBit); // bit 46 >= MAXPHYADDR
    expect(leaf(EPT_R | WB, 1, 1 << 31)).toBe(0); // bit 63 (suppress #VE) is ignored here
    expect(leaf(EPT_R | WB, 1, 1 << 20)).toBe(0); // bits 62:52 are ignored
    expect(leaf(EPT_R | WB | (1 << 11) | (1 << 10), 1)).toBe(0); // 11 ignored, 10 (user execute) ignored
    expect(rsvdHi).toBe(0x000f_c000);
  });
});

describe("exit qualification (SDM Table 28-7)", () => {
  it("describes access, permissions, linear validity and walk/final", () => {
    expect(describeQualification(EPT_READ_VIOLATION | EPT_EFFECTIVE_READ | EPT_EFFECTIVE_WRITE | EPT_GLA_VALID | EPT_GLA_FAULT)).toBe("read; entry rw-; linear valid; final");
    expect(describeQualification(3 | EPT_GLA_VALID)).toBe("read+write; entry ---; linear valid; walk");
  });
});
