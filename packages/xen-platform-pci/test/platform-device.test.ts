import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  PCI_BASE_ADDRESS_0,
  PCI_CLASS_DEVICE,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_IO,
  PCI_COMMAND_MEMORY,
  PCI_HEADER_TYPE,
  PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN,
  PCI_REVISION_ID,
  PCI_STATUS,
  PCI_STATUS_INTERRUPT,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PciBus,
  PortIoBus,
  bdf,
  type AccessSize,
} from "@vtlab/arch";
import {
  PVDRIVERS_PRODUCT,
  UNPLUG_ALL_IDE_DISKS,
  UNPLUG_ALL_NICS,
  UNPLUG_AUX_IDE_DISKS,
  UNPLUG_NVME_DISKS,
  XEN_IOPORT_BASE,
  XEN_IOPORT_DRVVER,
  XEN_IOPORT_MAGIC,
  XEN_IOPORT_MAGIC_BLACKLISTED,
  XEN_IOPORT_MAGIC_VAL,
  XEN_IOPORT_PLATFLAGS,
  XEN_IOPORT_PRODNUM,
  XEN_IOPORT_PROTOVER,
  XEN_IOPORT_SYSLOG,
  XEN_IOPORT_UNPLUG,
  XenPlatformDevice,
  hvmloaderIntxIrq,
  type XenPlatformOptions,
} from "@vtlab/xen-platform-pci";

interface Recorder {
  irq: boolean[];
  disks: boolean[];
  nics: number;
  nvme: number;
  log: string[];
}

function setup(extra: Partial<XenPlatformOptions> = {}) {
  const rec: Recorder = { irq: [], disks: [], nics: 0, nvme: 0, log: [] };
  const dev = new XenPlatformDevice({
    setIrq: (l) => rec.irq.push(l),
    unplug: { ideDisks: (aux) => rec.disks.push(aux), nics: () => rec.nics++, nvmeDisks: () => rec.nvme++ },
    onLog: (line) => rec.log.push(line),
    ...extra,
  });
  const ports = new PortIoBus();
  expect(dev.installFixedPorts(ports)).toBeUndefined();
  return { dev, ports, rec };
}

describe("configuration space", () => {
  it("identifies as QEMU's xen-platform: 5853:0001, subsystem 5853:0001, class ff80, revision 1, INTA", () => {
    const { dev } = setup();
    const c = dev.config;
    expect(c.read(0, 4)).toBe(0x0001_5853);
    expect(c.read(PCI_SUBSYSTEM_VENDOR_ID, 2)).toBe(0x5853);
    expect(c.read(PCI_SUBSYSTEM_ID, 2)).toBe(0x0001);
    expect(c.read(PCI_REVISION_ID, 1)).toBe(1);
    expect(c.read(PCI_CLASS_DEVICE, 2)).toBe(0xff80);
    expect(c.read(PCI_REVISION_ID + 1, 1)).toBe(0); // programming interface
    expect(c.read(PCI_HEADER_TYPE, 1)).toBe(0);
    expect(c.read(PCI_INTERRUPT_PIN, 1)).toBe(1);
    expect(c.read(PCI_INTERRUPT_LINE, 1)).toBe(0xff);
  });

  it("sizes BAR0 as 256 I/O ports and BAR1 as 16 MiB of prefetchable 32-bit memory", () => {
    const { dev } = setup();
    const c = dev.config;
    c.write(PCI_BASE_ADDRESS_0, 4, 0xffff_ffff);
    c.write(PCI_BASE_ADDRESS_0 + 4, 4, 0xffff_ffff);
    c.write(PCI_BASE_ADDRESS_0 + 8, 4, 0xffff_ffff);
    expect(c.read(PCI_BASE_ADDRESS_0, 4)).toBe(0xffff_ff01);
    expect(c.read(PCI_BASE_ADDRESS_0 + 4, 4)).toBe(0xff00_0008);
    expect(c.read(PCI_BASE_ADDRESS_0 + 8, 4)).toBe(0); // no BAR2
    c.write(PCI_BASE_ADDRESS_0 + 4, 4, 0xf000_0000);
    expect(dev.mmioBarAddress).toBe(0xf000_0000);
  });

  it("keeps firmware's interrupt line and lets software rewrite it", () => {
    const { dev } = setup({ interruptLine: 5 });
    expect(dev.interruptLine).toBe(5);
    dev.config.write(PCI_INTERRUPT_LINE, 1, 11);
    expect(dev.interruptLine).toBe(11);
  });

  it("routes 00:03.0 INTA to ISA IRQ 5, as hvmloader's barber's pole over links 5, 10, 11, 5", () => {
    expect(hvmloaderIntxIrq(3, 1)).toBe(5);
    expect(hvmloaderIntxIrq(0, 1)).toBe(5);
    expect(hvmloaderIntxIrq(1, 1)).toBe(10);
    expect(hvmloaderIntxIrq(2, 1)).toBe(11);
    expect(hvmloaderIntxIrq(3, 2)).toBe(5); // INTB of device 3: link 0
  });
});

describe("the fixed ports 0x10-0x1f (hvm-emulated-unplug)", () => {
  it("walks Linux's check_platform_magic: magic, version 1, product, build, magic again", () => {
    const { dev, ports } = setup();
    expect(ports.read(XEN_IOPORT_MAGIC, 2)).toBe(XEN_IOPORT_MAGIC_VAL);
    expect(ports.read(XEN_IOPORT_PROTOVER, 1)).toBe(1);
    ports.write(XEN_IOPORT_PRODNUM, 2, PVDRIVERS_PRODUCT.linux);
    ports.write(XEN_IOPORT_DRVVER, 4, 1);
    expect(ports.read(XEN_IOPORT_MAGIC, 2)).toBe(XEN_IOPORT_MAGIC_VAL);
    expect(dev.product).toBe(3);
    expect(dev.build).toBe(1);
    expect(dev.blacklisted).toBe(false);
  });

  it("turns the magic into 0xd249 for blacklisted drivers", () => {
    const { dev, ports } = setup({ blacklisted: (product, build) => product === 1 && build === 0x1234 });
    ports.write(XEN_IOPORT_PRODNUM, 2, 1);
    ports.write(XEN_IOPORT_DRVVER, 4, 0x1233);
    expect(ports.read(XEN_IOPORT_MAGIC, 2)).toBe(XEN_IOPORT_MAGIC_VAL);
    ports.write(XEN_IOPORT_DRVVER, 4, 0x1234);
    expect(ports.read(XEN_IOPORT_MAGIC, 2)).toBe(XEN_IOPORT_MAGIC_BLACKLISTED);
    expect(dev.blacklisted).toBe(true);
  });

  it("reads all ones where nothing is defined, as QEMU's handlers do", () => {
    const { ports } = setup();
    expect(ports.read(XEN_IOPORT_MAGIC, 4)).toBe(0xffff_ffff);
    expect(ports.read(XEN_IOPORT_BASE + 2, 2)).toBe(0xffff);
    expect(ports.read(XEN_IOPORT_BASE + 1, 1)).toBe(0xff);
    expect(ports.read(XEN_IOPORT_BASE + 15, 1)).toBe(0xff);
  });

  it("keeps only PFFLAG_ROM_LOCK of the platform flags", () => {
    const { ports } = setup();
    ports.write(XEN_IOPORT_PLATFLAGS, 1, 0xff);
    expect(ports.read(XEN_IOPORT_PLATFLAGS, 1)).toBe(1);
    ports.write(XEN_IOPORT_PLATFLAGS, 1, 0xfe);
    expect(ports.read(XEN_IOPORT_PLATFLAGS, 1)).toBe(0);
  });

  it("unplugs as the protocol's bits say: all disks, aux disks only, NVMe, NICs", () => {
    const { dev, ports, rec } = setup();
    ports.write(XEN_IOPORT_UNPLUG, 2, UNPLUG_AUX_IDE_DISKS);
    expect(rec.disks).toEqual([true]);
    ports.write(XEN_IOPORT_UNPLUG, 2, UNPLUG_ALL_IDE_DISKS | UNPLUG_AUX_IDE_DISKS);
    expect(rec.disks).toEqual([true, false]); // bit 0 overrides bit 2
    ports.write(XEN_IOPORT_UNPLUG, 2, UNPLUG_NVME_DISKS);
    expect(rec.disks).toHaveLength(2); // NVMe only: the IDE disks stay
    expect(rec.nvme).toBe(1);
    ports.write(XEN_IOPORT_UNPLUG, 2, UNPLUG_ALL_NICS);
    expect(rec.nics).toBe(1);
    ports.write(XEN_IOPORT_UNPLUG, 2, 0);
    expect(dev.unplugged).toBe(0xf);
    expect(dev.stats.unplugRequests).toBe(5);
    expect(dev.stats).toMatchObject({ diskUnplugs: 2, nicUnplugs: 1, nvmeUnplugs: 1 });
  });

  it("delivers log lines at newline, printable ASCII only, cut at 4095 bytes as QEMU's buffer", () => {
    const { dev, ports, rec } = setup();
    for (const c of "hello\tworld\x1b[31m\n") ports.write(XEN_IOPORT_SYSLOG, 1, c.charCodeAt(0));
    expect(rec.log).toEqual(["hello\tworld?[31m"]);
    for (let i = 0; i < 5000; i++) ports.write(XEN_IOPORT_SYSLOG, 1, 0x41);
    expect(rec.log).toHaveLength(2);
    expect(rec.log[1]).toBe("A".repeat(4095));
    ports.write(XEN_IOPORT_SYSLOG, 1, 0x0a);
    expect(rec.log[2]).toBe("A".repeat(5000 - 4096)); // the byte that found the buffer full was dropped
    expect(dev.stats.logLines).toBe(3);
  });

  it("never throws and answers within the access size, whatever a guest does (fast-check)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ port: fc.integer({ min: 0x10, max: 0x1f }), size: fc.constantFrom<AccessSize>(1, 2, 4), value: fc.integer({ min: 0, max: 0xffff_ffff }), read: fc.boolean() }), { maxLength: 60 }),
        (ops) => {
          const { ports } = setup();
          for (const op of ops) {
            if (op.read) {
              const v = ports.read(op.port, op.size);
              expect(v).toBeGreaterThanOrEqual(0);
              expect(v).toBeLessThanOrEqual(op.size === 4 ? 0xffff_ffff : op.size === 2 ? 0xffff : 0xff);
            } else {
              expect(ports.write(op.port, op.size, op.value)).toBeUndefined();
            }
          }
        },
      ),
    );
  });
});

describe("BAR0 registers", () => {
  function onBus() {
    const s = setup();
    const pci = new PciBus(s.ports);
    expect(pci.attach(bdf(0, 3, 0), s.dev)).toBeUndefined();
    s.dev.config.write(PCI_BASE_ADDRESS_0, 4, 0xc000);
    s.dev.config.write(PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
    return { ...s, pci };
  }

  it("answers at the address software programs: flags at 0, the rest all ones", () => {
    const { dev, ports } = onBus();
    expect(dev.ioBarAddress).toBe(0xc000);
    ports.write(0xc000, 1, 1);
    expect(ports.read(0xc000, 1)).toBe(1);
    expect(ports.read(XEN_IOPORT_PLATFLAGS, 1)).toBe(1); // the same register as the fixed port
    expect(ports.read(0xc000, 2)).toBe(0xff01);
    expect(ports.read(0xc004, 4)).toBe(0xffff_ffff);
  });

  it("takes the old SUSE unplug at 4 and the old VMDP unplug or a log byte at 8", () => {
    const { ports, rec } = onBus();
    ports.write(0xc004, 4, 1);
    expect(rec.disks).toEqual([false]);
    expect(rec.nics).toBe(1);
    ports.write(0xc008, 1, 2);
    expect(rec.nics).toBe(2);
    ports.write(0xc008, 1, 1);
    expect(rec.disks).toEqual([false, false]);
    for (const c of "ok\n") ports.write(0xc008, 1, c.charCodeAt(0));
    expect(rec.log).toEqual(["ok"]);
  });

  it("stops answering when I/O decoding is turned off", () => {
    const { dev, ports } = onBus();
    ports.write(0xc000, 1, 1);
    dev.config.write(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    expect(ports.read(0xc000, 1)).toBe(0xff);
  });
});

describe("INTx", () => {
  it("raises and lowers the line, with PCI_STATUS_INTERRUPT following the request", () => {
    const { dev, rec } = setup();
    dev.setIntx(true);
    dev.setIntx(true);
    expect(rec.irq).toEqual([true]);
    expect(dev.config.read(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT).toBe(PCI_STATUS_INTERRUPT);
    expect((dev.config.read(PCI_COMMAND, 4) >>> 16) & PCI_STATUS_INTERRUPT).toBe(PCI_STATUS_INTERRUPT);
    dev.setIntx(false);
    expect(rec.irq).toEqual([true, false]);
    expect(dev.config.read(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT).toBe(0);
    expect(dev.stats.intxAssertions).toBe(1);
  });

  it("gates the line with PCI_COMMAND_INTX_DISABLE; the status bit still shows the request", () => {
    const { dev, rec } = setup();
    dev.config.write(PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
    dev.setIntx(true);
    expect(rec.irq).toEqual([]);
    expect(dev.intx).toBe(true);
    expect(dev.intxLine).toBe(false);
    expect(dev.config.read(PCI_STATUS, 1) & PCI_STATUS_INTERRUPT).toBe(PCI_STATUS_INTERRUPT);
    dev.config.write(PCI_COMMAND, 2, 0);
    expect(rec.irq).toEqual([true]);
    dev.config.write(PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
    expect(rec.irq).toEqual([true, false]);
  });

  it("does not let software write PCI_STATUS_INTERRUPT", () => {
    const { dev } = setup();
    dev.config.write(PCI_STATUS, 2, 0xffff);
    expect(dev.config.read(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT).toBe(0);
  });
});

describe("state snapshots", () => {
  it("restore to the same state (fast-check over port writes, config writes and INTx)", () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("port" as const), port: fc.integer({ min: 0x10, max: 0x1f }), size: fc.constantFrom<AccessSize>(1, 2, 4), value: fc.integer({ min: 0, max: 0xffff_ffff }) }),
      fc.record({ kind: fc.constant("config" as const), offset: fc.integer({ min: 0, max: 0xff }), value: fc.integer({ min: 0, max: 0xff }) }),
      fc.record({ kind: fc.constant("intx" as const), level: fc.boolean() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const { dev, ports } = setup({ interruptLine: 5 });
        for (const o of ops) {
          if (o.kind === "port") ports.write(o.port, o.size, o.value);
          else if (o.kind === "config") dev.config.write(o.offset, 1, o.value);
          else dev.setIntx(o.level);
        }
        const s = dev.state();
        const irq: boolean[] = [];
        const copy = XenPlatformDevice.fromState(s, { setIrq: (l) => irq.push(l) });
        expect(copy.state()).toEqual(s);
        expect(copy.intxLine).toBe(dev.intxLine);
        expect(irq).toEqual(dev.intxLine ? [true] : []);
        for (let o = 0; o < 256; o += 4) expect(copy.config.read(o, 4)).toBe(dev.config.read(o, 4));
      }),
    );
  });

  it("is plain data (JSON round trip)", () => {
    const { dev, ports } = setup();
    ports.write(XEN_IOPORT_SYSLOG, 1, 0x41);
    dev.setIntx(true);
    const s = dev.state();
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
    expect(s.logPending).toEqual([0x41]);
  });
});
