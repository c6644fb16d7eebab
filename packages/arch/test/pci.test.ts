import { describe, expect, it } from "vitest";
import {
  MmioBus,
  PCI_BASE_ADDRESS_0,
  PCI_COMMAND,
  PCI_COMMAND_IO,
  PCI_COMMAND_MEMORY,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PciBus,
  PciConfigSpace,
  PciHostBridge,
  PortIoBus,
  bdf,
  formatBdf,
  hostBridgeFunction,
  type AccessSize,
  type BusDevice,
} from "@vtlab/arch";

const regs: BusDevice = {
  read: (offset: number, _size: AccessSize) => 0xab00 + offset,
  write: () => undefined,
};

/** A machine with ports, MMIO, a PCI bus and the type-1 host bridge, driven through 0xCF8/0xCFC as a guest would. */
function machine() {
  const ports = new PortIoBus();
  const mmio = new MmioBus();
  const pci = new PciBus(ports, mmio);
  const bridge = PciHostBridge.install(ports, pci);
  if (!(bridge instanceof PciHostBridge)) throw new Error(bridge.message);
  pci.attach(bdf(0, 0, 0), hostBridgeFunction());
  const cfgAddr = (b: number, d: number, f: number, reg: number) => (0x8000_0000 | (b << 16) | (d << 11) | (f << 8) | (reg & 0xfc)) >>> 0;
  const cfgRead = (b: number, d: number, f: number, reg: number, size: AccessSize = 4) => {
    ports.write(0xcf8, 4, cfgAddr(b, d, f, reg));
    return ports.read(0xcfc + (reg & 3), size);
  };
  const cfgWrite = (b: number, d: number, f: number, reg: number, value: number, size: AccessSize = 4) => {
    ports.write(0xcf8, 4, cfgAddr(b, d, f, reg));
    ports.write(0xcfc + (reg & 3), size, value);
  };
  return { ports, mmio, pci, cfgRead, cfgWrite };
}

describe("PCI configuration through the type-1 host bridge", () => {
  it("reads ids of present functions and all-ones for absent ones", () => {
    const m = machine();
    expect(m.cfgRead(0, 0, 0, 0)).toBe(0x1237_8086);
    expect(m.cfgRead(0, 0, 0, 0x08) >>> 8).toBe(0x060000);
    expect(m.cfgRead(0, 5, 0, 0)).toBe(0xffffffff);
    expect(m.cfgRead(0, 0, 0, 2, 2)).toBe(0x1237);
    // CONFIG_ADDRESS reads back what was written, reserved bits cleared
    m.ports.write(0xcf8, 4, 0xffff_ffff);
    expect(m.ports.read(0xcf8, 4)).toBe(0x80ff_fffc);
    // with the enable bit clear, CONFIG_DATA reads all-ones
    m.ports.write(0xcf8, 4, 0);
    expect(m.ports.read(0xcfc, 4)).toBe(0xffffffff);
  });

  it("sizes BARs by writing all-ones, maps them on enable and unmaps them on disable", () => {
    const m = machine();
    const config = new PciConfigSpace({ vendorId: 0x5853, deviceId: 0x0001, classCode: 0xff8000, revision: 1, interruptPin: 1 });
    config.defineBar(0, { kind: "io", size: 0x100, device: regs });
    config.defineBar(1, { kind: "memory32", size: 0x100_0000, prefetchable: true, device: regs });
    config.defineBar(2, { kind: "memory64", size: 0x4000, device: regs });
    expect(m.pci.attach(bdf(0, 2, 0), { name: "xen-platform", config })).toBeUndefined();
    expect(m.pci.attach(bdf(0, 2, 0), { name: "again", config })).toMatchObject({ kind: "pci-attach-error" });

    const size = (reg: number) => {
      const old = m.cfgRead(0, 2, 0, reg);
      m.cfgWrite(0, 2, 0, reg, 0xffffffff);
      const v = m.cfgRead(0, 2, 0, reg);
      m.cfgWrite(0, 2, 0, reg, old);
      return v;
    };
    expect(size(PCI_BASE_ADDRESS_0)).toBe(0xffffff01); // I/O, 256 bytes
    expect(size(PCI_BASE_ADDRESS_0 + 4)).toBe(0xff000008); // 16 MiB prefetchable memory
    expect(size(PCI_BASE_ADDRESS_0 + 8)).toBe(0xffffc004); // 64-bit, 16 KiB
    expect(size(PCI_BASE_ADDRESS_0 + 12)).toBe(0xffffffff); // its high half is all address

    m.cfgWrite(0, 2, 0, PCI_BASE_ADDRESS_0, 0xc000);
    m.cfgWrite(0, 2, 0, PCI_BASE_ADDRESS_0 + 4, 0xf000_0000);
    m.cfgWrite(0, 2, 0, PCI_BASE_ADDRESS_0 + 8, 0xe000_0000);
    m.cfgWrite(0, 2, 0, PCI_BASE_ADDRESS_0 + 12, 0x1);
    expect(config.barAddress(2)).toBe(0x1_e000_0000);
    expect(m.ports.ownerOf(0xc010)).toBeUndefined(); // decode not yet enabled
    m.cfgWrite(0, 2, 0, PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY, 2);
    expect(m.ports.ownerOf(0xc010)).toBe("xen-platform BAR0 (00:02.0)");
    expect(m.ports.read(0xc008, 1)).toBe(0xab08);
    expect(m.mmio.read(0xf000_0010, 4)).toBe(0xab10);
    expect(m.mmio.claims(0x1_e000_3fff)).toBe(true);
    // moving a BAR moves its mapping
    m.cfgWrite(0, 2, 0, PCI_BASE_ADDRESS_0 + 4, 0xe800_0000);
    expect(m.mmio.claims(0xf000_0010)).toBe(false);
    expect(m.mmio.claims(0xe800_0010)).toBe(true);
    m.cfgWrite(0, 2, 0, PCI_COMMAND, 0, 2);
    expect(m.ports.ownerOf(0xc010)).toBeUndefined();
    expect(m.mmio.claims(0xe800_0010)).toBe(false);
    expect(formatBdf(bdf(0, 2, 0))).toBe("00:02.0");
  });

  it("links capabilities, keeps read-only fields read-only and clears W1C status bits", () => {
    const config = new PciConfigSpace({ vendorId: 0x8086, deviceId: 0x1234, classCode: 0x010601 });
    const msi = config.addCapability(0x05, 14, [0x01, 0x00]);
    const vendor = config.addCapability(0x09, 8);
    expect([msi, vendor]).toEqual([0x40, 0x50]);
    expect(config.read(PCI_STATUS, 2) & PCI_STATUS_CAP_LIST).toBe(PCI_STATUS_CAP_LIST);
    expect(config.read(0x34, 1)).toBe(0x40);
    expect(config.capabilities()).toEqual([
      [0x40, 0x05],
      [0x50, 0x09],
    ]);
    config.write(0x42, 2, 0xffff);
    expect(config.read(0x42, 2)).toBe(0x0001);
    config.write(0, 4, 0);
    expect(config.read(0, 4)).toBe(0x1234_8086);
    expect(config.read(0x300, 1)).toBe(0xff);
    expect(() => config.defineBar(0, { kind: "memory32", size: 3000 })).toThrow(/power of two/);
  });
});
