import { describe, expect, it } from "vitest";
import { bdf, iova, type Hpa } from "@vtlab/arch";
import {
  CAP_REG,
  ContextInvalidation,
  FECTL_IM,
  FECTL_REG,
  GCMD_REG,
  GCMD_SRTP,
  GCMD_TE,
  GSTS_REG,
  GSTS_RTPS,
  GSTS_TES,
  IQA_REG,
  IotlbInvalidation,
  RTADDR_REG,
  RootTable,
  SAGAW_39_BIT,
  SAGAW_48_BIT,
  TranslationType,
  VER_REG,
  VtdDriver,
} from "@vtlab/iommu";
import { DRHD_BASE, expectOk, machine, pattern } from "./machine.js";

const DEV = bdf(0, 3, 0);

describe("capability registers", () => {
  it("report what the unit implements, decoded as a driver decodes them", () => {
    const m = machine();
    const caps = m.driver.caps;
    expect(m.mmio.read(DRHD_BASE + VER_REG, 4)).toBe(0x10);
    expect(caps.sagaw).toBe(SAGAW_39_BIT | SAGAW_48_BIT);
    expect(caps.mgaw).toBe(48);
    expect(caps.domainIdBits).toBe(16);
    expect(caps.faultRecords).toBe(8);
    expect(caps.faultRecordOffset).toBe(0x200);
    expect(caps.iotlbRegisterOffset).toBe(0x100);
    expect(caps.largePages).toEqual({ "2M": true, "1G": true });
    expect(caps.pageSelectiveInvalidation).toBe(true);
    expect(caps.maxAddressMask).toBe(18);
    expect(caps.queuedInvalidation).toBe(true);
    expect(caps.passThrough).toBe(true);
    // raw CAP_REG low dword: ND=6, SAGAW=0b00110, MGAW=47, FRO low bits = 0x20
    expect(m.mmio.read(DRHD_BASE + CAP_REG, 4)).toBe((0x20 << 24) | (47 << 16) | (0x6 << 8) | 6);
  });

  it("follow the options: fault records, large pages, queued invalidation", () => {
    const m = machine({ faultRecords: 3, largePages: { "2M": true, "1G": false }, queuedInvalidation: false });
    expect(m.driver.caps.faultRecords).toBe(3);
    expect(m.driver.caps.largePages).toEqual({ "2M": true, "1G": false });
    expect(m.driver.caps.queuedInvalidation).toBe(false);
    m.mmio.write(DRHD_BASE + IQA_REG, 4, 0x5000);
    expect(m.mmio.read(DRHD_BASE + IQA_REG, 4)).toBe(0);
  });

  it("reject impossible configurations as bugs", () => {
    expect(() => machine({ faultRecords: 0 })).toThrow(RangeError);
    expect(() => machine({ faultRecords: 257 })).toThrow(RangeError);
    expect(() => machine({ hostAddressWidth: 60 })).toThrow(RangeError);
    expect(() => machine({ iotlbSets: 3 })).toThrow(RangeError);
  });
});

describe("global command and status", () => {
  it("start with translation off, GCMD reading zero and FECTL.IM set", () => {
    const m = machine({ enable: false });
    expect(m.mmio.read(DRHD_BASE + GSTS_REG, 4)).toBe(0);
    expect(m.mmio.read(DRHD_BASE + GCMD_REG, 4)).toBe(0);
    expect(m.mmio.read(DRHD_BASE + FECTL_REG, 4)).toBe(FECTL_IM);
    m.mmio.write(DRHD_BASE + GCMD_REG, 4, GCMD_TE);
    expect(m.mmio.read(DRHD_BASE + GCMD_REG, 4)).toBe(0);
    expect(m.mmio.read(DRHD_BASE + GSTS_REG, 4)).toBe(GSTS_TES);
  });

  it("RTADDR reads back without its reserved low bits; SRTP latches it and sets RTPS", () => {
    const m = machine({ enable: false });
    m.mmio.write64(DRHD_BASE + RTADDR_REG, 0x1234_5fff, 0x12);
    expect(m.mmio.read(DRHD_BASE + RTADDR_REG, 4)).toBe(0x1234_5000);
    expect(m.mmio.read(DRHD_BASE + RTADDR_REG + 4, 4)).toBe(0x12);
    expect(m.mmio.read(DRHD_BASE + GSTS_REG, 4) & GSTS_RTPS).toBe(0);
    m.mmio.write(DRHD_BASE + GCMD_REG, 4, GCMD_SRTP);
    expect(m.mmio.read(DRHD_BASE + GSTS_REG, 4) & GSTS_RTPS).toBe(GSTS_RTPS);
  });

  it("uses the root table latched by SRTP, not whatever RTADDR holds now", () => {
    const m = machine();
    // A second root table with DEV in pass-through mode; programming RTADDR alone changes nothing.
    const other = RootTable.create(m.memory, m.frames) as RootTable;
    expectOk(other.setContext(DEV, { domainId: 9, translationType: TranslationType.PassThrough, slptptr: 0 as Hpa, addressWidth: 2 }));
    m.mmio.write64(DRHD_BASE + RTADDR_REG, other.address, 0);
    const buf = new Uint8Array(8);
    expect(m.unit.read(DEV, iova(0x5000), buf)).toMatchObject({ reason: 0x1 }); // old root table: bus 0 not present
    expectOk(m.driver.setRootTable(other.address));
    expect(m.unit.read(DEV, iova(0x5000), buf)).toBeUndefined();
  });

  it("with translation disabled DMA reaches machine memory untranslated (the unsafe baseline)", () => {
    const m = machine({ enable: false });
    const data = pattern(64, 7);
    expect(m.unit.write(DEV, iova(0x3_0000_1000), data)).toBeUndefined();
    const back = new Uint8Array(64);
    m.memory.readBytes(0x3_0000_1000, back);
    expect(back).toEqual(data);
    expect(m.unit.write(DEV, iova(17 * 1024 ** 3), data)).toMatchObject({ reason: 0x100 });
    expect(m.unit.stats.faultsRecorded).toBe(0);
  });

  it("refuses sub-dword register writes and answers byte reads", () => {
    const m = machine();
    expect(m.mmio.write(DRHD_BASE + GCMD_REG + 3, 1, 0x80)).toMatchObject({ kind: "device-error" });
    expect(m.mmio.write(DRHD_BASE + GCMD_REG, 2, 0)).toMatchObject({ kind: "device-error" });
    expect(m.mmio.read(DRHD_BASE + GSTS_REG + 3, 1)).toBe(0xc0); // TES | RTPS in the top byte
    expect(m.mmio.read(DRHD_BASE + CAP_REG + 2, 2)).toBe(0x202f); // FRO low byte, MGAW
  });

  it("reports actual invalidation granularities in CAIG and IAIG", () => {
    const m = machine();
    expect(m.driver.invalidate({ kind: "context", granularity: ContextInvalidation.Domain, domainId: 3, sourceId: 0, functionMask: 0 })).toBe(2);
    expect(m.driver.invalidate({ kind: "iotlb", granularity: IotlbInvalidation.Page, domainId: 3, address: 0x20_0000, addressMask: 9, leafOnly: true })).toBe(3);
    // An address mask beyond CAP_REG.MAMV is done domain-selectively, and IAIG says so.
    expect(m.driver.invalidate({ kind: "iotlb", granularity: IotlbInvalidation.Page, domainId: 3, address: 0, addressMask: 30, leafOnly: false })).toBe(2);
  });

  it("a driver built on the bus sees the same unit", () => {
    const m = machine();
    const again = new VtdDriver(m.mmio, DRHD_BASE);
    expect((again.status & (GSTS_TES | GSTS_RTPS)) >>> 0).toBe((GSTS_TES | GSTS_RTPS) >>> 0);
    expect(again.disableTranslation()).toBeUndefined();
    expect(m.unit.translationEnabled).toBe(false);
  });
});
