import { describe, expect, it } from "vitest";
import { bdf, iova } from "@vtlab/arch";
import {
  FECTL_IM,
  FECTL_IP,
  FECTL_REG,
  FRCD_W3_F,
  FSTS_FRI_SHIFT,
  FSTS_PFO,
  FSTS_PPF,
  FSTS_REG,
  FaultReason,
} from "@vtlab/iommu";
import { DRHD_BASE, machine } from "./machine.js";

const ATTACKER = bdf(2, 4, 1);

/** Every DMA from a device with no context entry faults with 1h (its bus has no root entry). */
function blocked(m: ReturnType<typeof machine>, n: number, write = false): void {
  for (let i = 0; i < n; i++) {
    const buf = new Uint8Array(4);
    const f = write ? m.unit.write(ATTACKER, iova(0x1000 * (i + 1) + 0x24), buf) : m.unit.read(ATTACKER, iova(0x1000 * (i + 1) + 0x24), buf);
    expect(f).toMatchObject({ reason: FaultReason.RootEntryNotPresent });
  }
}

describe("fault recording registers", () => {
  it("hold source id, page address, type and reason; PPF and FRI follow", () => {
    const m = machine();
    blocked(m, 1, true);
    blocked(m, 1, false);
    const recs = m.driver.readFaults();
    expect(recs).toEqual([
      { index: 0, sourceId: ATTACKER, pageAddress: 0x1000, read: false, reason: 1, reasonName: "root entry not present" },
      { index: 1, sourceId: ATTACKER, pageAddress: 0x1000, read: true, reason: 1, reasonName: "root entry not present" },
    ]);
    expect(ATTACKER).toBe(0x0221);
    const fsts = m.mmio.read(DRHD_BASE + FSTS_REG, 4);
    expect(fsts & FSTS_PPF).toBe(FSTS_PPF);
    expect(fsts >>> FSTS_FRI_SHIFT).toBe(0);
    // Raw layout: dword 3 = F | T | FR.
    expect(m.mmio.read(DRHD_BASE + 0x200 + 12, 4)).toBe((FRCD_W3_F | 0x1) >>> 0);
    expect(m.mmio.read(DRHD_BASE + 0x210 + 12, 4)).toBe((FRCD_W3_F | (1 << 30) | 0x1) >>> 0);
    expect(m.mmio.read(DRHD_BASE + 0x200 + 8, 4)).toBe(0x0221);
  });

  it("clear F by writing 1 (RW1C); other fields are read-only; PPF falls with the last F", () => {
    const m = machine();
    blocked(m, 2);
    m.mmio.write(DRHD_BASE + 0x200 + 8, 4, 0xffff_ffff); // SID is read-only
    expect(m.mmio.read(DRHD_BASE + 0x200 + 8, 4)).toBe(0x0221);
    m.mmio.write(DRHD_BASE + 0x200 + 12, 4, 0); // writing 0 to F does nothing
    expect(m.driver.readFaults()).toHaveLength(2);
    m.mmio.write(DRHD_BASE + 0x200 + 12, 4, FRCD_W3_F);
    expect(m.driver.readFaults().map((r) => r.index)).toEqual([1]);
    expect(m.mmio.read(DRHD_BASE + FSTS_REG, 4) & FSTS_PPF).toBe(FSTS_PPF);
    m.mmio.write(DRHD_BASE + 0x210 + 12, 4, FRCD_W3_F);
    expect(m.mmio.read(DRHD_BASE + FSTS_REG, 4) & FSTS_PPF).toBe(0);
  });

  it("overflow: with every register holding a fault the next one is dropped and PFO set", () => {
    const m = machine({ faultRecords: 4 });
    blocked(m, 4);
    expect(m.driver.faultOverflow).toBe(false);
    blocked(m, 3);
    expect(m.driver.faultOverflow).toBe(true);
    expect(m.driver.readFaults()).toHaveLength(4);
    expect(m.unit.stats).toMatchObject({ faults: 7, faultsRecorded: 4, faultsDropped: 3 });
    // PFO is RW1C: a fault handler clears records and status, and recording resumes where the ring is.
    m.driver.clearFaults();
    expect(m.mmio.read(DRHD_BASE + FSTS_REG, 4) & (FSTS_PFO | FSTS_PPF)).toBe(0);
    blocked(m, 1);
    expect(m.driver.readFaults().map((r) => r.index)).toEqual([0]);
    expect((m.mmio.read(DRHD_BASE + FSTS_REG, 4) >>> FSTS_FRI_SHIFT) & 0xff).toBe(0);
  });

  it("the internal index moves on: FRI names the first pending record", () => {
    const m = machine({ faultRecords: 4 });
    blocked(m, 2);
    m.driver.clearFaults();
    blocked(m, 1);
    expect(m.driver.readFaults().map((r) => r.index)).toEqual([2]);
    expect((m.mmio.read(DRHD_BASE + FSTS_REG, 4) >>> FSTS_FRI_SHIFT) & 0xff).toBe(2);
  });
});

describe("fault event", () => {
  it("is held pending while masked (the reset state) and sent when unmasked", () => {
    const m = machine();
    m.mmio.write(DRHD_BASE + 0x3c, 4, 0x4041); // FEDATA: vector 0x41
    m.mmio.write(DRHD_BASE + 0x40, 4, 0xfee0_0000); // FEADDR: LAPIC 0
    blocked(m, 1);
    expect(m.events).toHaveLength(0);
    expect(m.mmio.read(DRHD_BASE + FECTL_REG, 4)).toBe((FECTL_IM | FECTL_IP) >>> 0);
    m.driver.maskFaultEvent(false);
    expect(m.events).toEqual([{ address: 0xfee0_0000, data: 0x4041 }]);
    expect(m.mmio.read(DRHD_BASE + FECTL_REG, 4)).toBe(0);
  });

  it("fires once per episode: not again while a fault is pending, again after software clears everything", () => {
    const m = machine();
    m.driver.setFaultEvent({ address: 0xfee0_0000, data: 0x30 });
    blocked(m, 3);
    expect(m.events).toHaveLength(1);
    m.driver.clearFaults();
    blocked(m, 1);
    expect(m.events).toHaveLength(2);
  });

  it("a pending masked event is dropped when software clears the faults before unmasking", () => {
    const m = machine();
    blocked(m, 1);
    m.driver.clearFaults();
    m.driver.maskFaultEvent(false);
    expect(m.events).toHaveLength(0);
  });

  it("an overflow on its own raises the event too", () => {
    const m = machine({ faultRecords: 1 });
    m.driver.setFaultEvent({ address: 0xfee0_0000, data: 0x30 });
    blocked(m, 1);
    // Software clears PPF's record but the next two faults come before it clears the next.
    m.driver.clearFaults();
    blocked(m, 2);
    expect(m.driver.faultOverflow).toBe(true);
    expect(m.events).toHaveLength(2);
  });
});
