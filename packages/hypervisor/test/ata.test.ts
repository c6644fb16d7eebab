import { describe, expect, it } from "vitest";
import { PortIoBus } from "@vtlab/arch";
import {
  ATA_CTL_NIEN,
  ATA_DEV_LBA,
  ATA_ER_ABRT,
  ATA_ER_IDNF,
  ATA_PRIMARY_CONTROL_PORT,
  ATA_PRIMARY_PORT,
  ATA_SR_DRQ,
  ATA_SR_ERR,
  AtaCommand,
  AtaDisk,
  MemoryBlockBackend,
  SECTOR_SIZE,
} from "@vtlab/hypervisor";

function rig(sectors = 2048) {
  const backend = new MemoryBlockBackend(sectors);
  for (let i = 0; i < backend.data.length; i++) backend.data[i] = (i * 7 + (i >> 9)) & 0xff;
  const irqs: boolean[] = [];
  const disk = new AtaDisk({ backend, irq: (l) => irqs.push(l), model: "vtlab test disk" });
  const ports = new PortIoBus();
  ports.register(ATA_PRIMARY_PORT, 8, disk.taskFile, "ATA primary");
  ports.register(ATA_PRIMARY_CONTROL_PORT, 1, disk.controlBlock, "ATA primary control");
  const out = (reg: number, v: number) => ports.write(ATA_PRIMARY_PORT + reg, 1, v);
  const inb = (reg: number) => ports.read(ATA_PRIMARY_PORT + reg, 1);
  /** A driver's LBA28 command setup. */
  const issue = (cmd: number, lba: number, count: number) => {
    out(6, ATA_DEV_LBA | 0xa0 | ((lba >>> 24) & 0xf));
    out(2, count & 0xff);
    out(3, lba & 0xff);
    out(4, (lba >>> 8) & 0xff);
    out(5, (lba >>> 16) & 0xff);
    out(7, cmd);
  };
  const readWords = (n: number) => Array.from({ length: n }, () => ports.read(ATA_PRIMARY_PORT, 2));
  return { backend, disk, ports, irqs, out, inb, issue, readWords };
}

describe("ATA disk (PIO)", () => {
  it("IDENTIFY DEVICE gives the model string, LBA support and the sector count", () => {
    const r = rig(4096);
    r.issue(AtaCommand.IdentifyDevice, 0, 0);
    expect(r.inb(7) & ATA_SR_DRQ).toBe(ATA_SR_DRQ);
    const w = r.readWords(256);
    const model = w.slice(27, 47).map((x) => String.fromCharCode(x >> 8, x & 0xff)).join("").trim();
    expect(model).toBe("vtlab test disk");
    expect(w[49]! & (1 << 9)).not.toBe(0);
    expect(w[60]! | (w[61]! << 16)).toBe(4096);
    expect(r.inb(7) & ATA_SR_DRQ).toBe(0);
  });

  it("READ SECTORS returns the backend's bytes, a sector per DRQ block with an interrupt each", () => {
    const r = rig();
    r.issue(AtaCommand.ReadSectors, 10, 3);
    const bytes: number[] = [];
    for (let s = 0; s < 3; s++) {
      expect(r.inb(7) & ATA_SR_DRQ).toBe(ATA_SR_DRQ);
      for (const w of r.readWords(256)) bytes.push(w & 0xff, w >> 8);
    }
    expect(Uint8Array.from(bytes)).toEqual(r.backend.data.subarray(10 * SECTOR_SIZE, 13 * SECTOR_SIZE));
    expect(r.irqs.filter((l) => l).length).toBe(3);
    expect(r.disk.stats.sectorsRead).toBe(3);
  });

  it("WRITE SECTORS and WRITE MULTIPLE land in the backend; READ MULTIPLE moves a block per interrupt", () => {
    const r = rig();
    r.issue(AtaCommand.WriteSectors, 5, 1);
    for (let k = 0; k < 256; k++) r.ports.write(ATA_PRIMARY_PORT, 2, 0xab00 | k);
    expect(r.backend.data[5 * SECTOR_SIZE]).toBe(0);
    expect(r.backend.data[5 * SECTOR_SIZE + 1]).toBe(0xab);
    r.out(2, 4);
    r.out(7, AtaCommand.SetMultipleMode);
    expect(r.inb(7) & ATA_SR_ERR).toBe(0);
    r.issue(AtaCommand.WriteMultiple, 100, 8);
    for (let k = 0; k < 8 * 128; k++) r.ports.write(ATA_PRIMARY_PORT, 4, 0x1111_1111 * ((k >> 7) + 1));
    expect(r.backend.data[100 * SECTOR_SIZE]).toBe(0x11);
    expect(r.backend.data[107 * SECTOR_SIZE]).toBe(0x88);
    const before = r.irqs.filter((l) => l).length;
    r.issue(AtaCommand.ReadMultiple, 100, 8);
    const words: number[] = [];
    for (let block = 0; block < 2; block++) {
      expect(r.inb(7) & ATA_SR_DRQ).toBe(ATA_SR_DRQ); // the driver's interrupt handler acknowledges by reading status
      words.push(...r.readWords(4 * 256));
    }
    expect(r.inb(7) & ATA_SR_DRQ).toBe(0);
    expect(words[0]).toBe(0x1111);
    expect(words[7 * 256]).toBe(0x8888);
    expect(r.irqs.filter((l) => l).length - before).toBe(2); // two blocks of four sectors
  });

  it("errors: an unknown command aborts, a range past the end is IDNF, MULTIPLE before SET MULTIPLE aborts, nIEN masks the interrupt", () => {
    const r = rig(64);
    r.out(7, 0x42);
    expect([r.inb(7) & ATA_SR_ERR, r.inb(1)]).toEqual([ATA_SR_ERR, ATA_ER_ABRT]);
    r.issue(AtaCommand.ReadSectors, 60, 8);
    expect(r.inb(1)).toBe(ATA_ER_IDNF);
    r.issue(AtaCommand.ReadMultiple, 0, 1);
    expect(r.inb(1)).toBe(ATA_ER_ABRT);
    r.out(2, 3);
    r.out(7, AtaCommand.SetMultipleMode); // not a power of two
    expect(r.inb(1)).toBe(ATA_ER_ABRT);
    r.ports.write(ATA_PRIMARY_CONTROL_PORT, 1, ATA_CTL_NIEN);
    const count = r.irqs.length;
    r.issue(AtaCommand.IdentifyDevice, 0, 0);
    expect(r.irqs.length).toBe(count);
  });

  it("counts port accesses: a 1-sector PIO read costs 256 data reads plus the command setup", () => {
    const r = rig();
    const before = r.disk.stats.portAccesses;
    r.issue(AtaCommand.ReadSectors, 0, 1);
    r.inb(7);
    r.readWords(256);
    expect(r.disk.stats.portAccesses - before).toBe(6 + 1 + 256);
  });
});
