/**
 * The Xen platform PCI device in a domain: found by a guest at 00:03.0 through PCI configuration
 * space with firmware's BARs and interrupt line, the unplug protocol removing the emulated ATA
 * disk, the drivers' log, `xen_platform_pci = 0`; and the floating bus: reads of unassigned
 * guest-physical space below 4 GiB return all ones, writes are dropped and counted, on EPT and on
 * shadow, while instruction fetches from there still crash the domain.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { P2mType } from "@vtlab/p2m";
import { gfn } from "@vtlab/arch";
import {
  ATA_PRIMARY_PORT,
  ConfigError,
  Hypervisor,
  MemoryBlockBackend,
  domainOptions,
  formatDomainConfig,
  parseDomainConfig,
  type Domain,
} from "@vtlab/hypervisor";
import { PVDRIVERS_PRODUCT, UNPLUG_ALL_IDE_DISKS, UNPLUG_ALL_NICS, UNPLUG_AUX_IDE_DISKS, XEN_IOPORT_MAGIC_VAL } from "@vtlab/xen-platform-pci";
import { direct64Kernel, pvhElf, SPIN, tinyKernel } from "./tiny-kernel.js";

const le32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
const RESULTS = 0x10_3000;
const store = (i: number) => [0xa3, ...le32(RESULTS + 4 * i)]; // mov [results + 4i], eax
/** Read configuration register `reg` of 00:03.0 into EAX (type-1 mechanism). */
const cfgRead = (reg: number) => [0xb8, ...le32(0x8000_0000 | (3 << 11) | reg), 0x66, 0xba, 0xf8, 0x0c, 0xef, 0x66, 0xba, 0xfc, 0x0c, 0xed];
const EXIT = [0x31, 0xc0, 0xe7, 0xf4, 0xf4, 0xeb, 0xfd];

function guest(code: number[]): Uint8Array {
  const img = new Uint8Array(0x4000);
  img.set(code, 0);
  return pvhElf(img, { offset: 0x200, memSize: img.length, flags: 7 });
}

function u32s(hv: Hypervisor, d: Domain, n: number): number[] {
  return Array.from({ length: n }, (_, i) => hv.memory.read32(d.ramHpa(RESULTS + 4 * i)!) as number);
}

describe.each([true, false])("the platform device from a guest (hap=%s)", (hap) => {
  it("sits at 00:03.0 with QEMU's ids, hvmloader's BARs and interrupt line 5", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const code = [0x08, 0x10, 0x14, 0x2c, 0x3c, 0x04].flatMap((reg, i) => [...cfgRead(reg), ...store(i)]);
    const d = hv.createDomain({ name: "pci", memoryMiB: 8, hap, kernel: guest([...cfgRead(0), ...store(6), ...code, ...EXIT]) });
    hv.run({ maxInstructions: 1_000_000 });
    expect(d.exitCode).toBe(0);
    const [klass, bar0, bar1, subsys, line, command, ids] = u32s(hv, d, 7);
    expect(ids).toBe(0x0001_5853);
    expect(klass).toBe(0xff80_0001); // class ff80, prog-if 0, revision 1
    expect(bar0).toBe(0xc001);
    expect(bar1).toBe(0xf000_0008);
    expect(subsys).toBe(0x0001_5853);
    expect(line! & 0xffff).toBe(0x0105); // INTA, line 5
    expect(command! & 3).toBe(3); // I/O and memory decoding on
    expect(d.pci.list().map((f) => f.name)).toContain("Xen platform device");
  });

  it("runs the unplug protocol: magic, version, product, build, log, unplug of the ATA disk", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const log: string[] = [];
    const code = [
      0x31, 0xc0, 0x66, 0xe5, 0x10, ...store(0), // xor eax, eax; in ax, 0x10
      0x31, 0xc0, 0xe4, 0x12, ...store(1), // in al, 0x12
      0x66, 0xb8, PVDRIVERS_PRODUCT.linux, 0, 0x66, 0xe7, 0x12, // out 0x12, ax (product)
      0xb8, ...le32(1), 0xe7, 0x10, // out 0x10, eax (build)
      ...[..."vtlab pv\n"].flatMap((c) => [0xb0, c.charCodeAt(0), 0xe6, 0x12]), // out 0x12, al
      0x66, 0xb8, UNPLUG_ALL_IDE_DISKS | UNPLUG_ALL_NICS, 0, 0x66, 0xe7, 0x10, // out 0x10, ax (unplug)
      0x66, 0xba, 0xf7, 0x01, 0x31, 0xc0, 0xec, ...store(2), // in al, 0x1f7 (ATA status): nothing there now
      ...EXIT,
    ];
    const d = hv.createDomain({ name: "unplug", memoryMiB: 8, hap, disk: new MemoryBlockBackend(64), kernel: guest(code), onPlatformLog: (l) => log.push(l) });
    expect(d.ports.ownerOf(ATA_PRIMARY_PORT)).toBe("ATA primary");
    hv.run({ maxInstructions: 1_000_000 });
    expect(d.exitCode).toBe(0);
    const [magic, version, status] = u32s(hv, d, 3);
    expect(magic).toBe(XEN_IOPORT_MAGIC_VAL);
    expect(version).toBe(1);
    expect(status).toBe(0xff);
    expect(log).toEqual(["vtlab pv"]);
    expect(d.platformWiring.log).toEqual(["vtlab pv"]);
    expect(d.platform!.product).toBe(PVDRIVERS_PRODUCT.linux);
    expect(d.ports.ownerOf(ATA_PRIMARY_PORT)).toBeUndefined();
    expect(d.disk).toBeDefined(); // the disk stays, for PV
    expect(d.stats().disksUnplugged).toBe(1);
    expect(d.platform!.stats.nicUnplugs).toBe(1);
  });
});

describe("unplug in the device model", () => {
  function machine(disk = true) {
    const hv = new Hypervisor({ memoryMiB: 64 });
    return hv.createDomain({ name: "m", memoryMiB: 8, kernel: tinyKernel(SPIN), ...(disk ? { disk: new MemoryBlockBackend(8) } : {}) });
  }

  it("keeps the primary master for UNPLUG_AUX_IDE_DISKS, removes it once for UNPLUG_ALL_IDE_DISKS", () => {
    const d = machine();
    d.ports.write(0x10, 2, UNPLUG_AUX_IDE_DISKS);
    expect(d.ports.ownerOf(ATA_PRIMARY_PORT)).toBe("ATA primary");
    d.ports.write(0x10, 2, UNPLUG_ALL_IDE_DISKS);
    d.ports.write(0x10, 2, UNPLUG_ALL_IDE_DISKS);
    expect(d.ports.ownerOf(ATA_PRIMARY_PORT)).toBeUndefined();
    expect(d.platformWiring.disksUnplugged).toBe(1);
    expect(d.ports.read(ATA_PRIMARY_PORT + 7, 1)).toBe(0xff);
  });

  it("has nothing to unplug without a disk, and never throws on any unplug mask (fast-check)", () => {
    const d = machine(false);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), (mask) => {
        d.ports.write(0x10, 2, mask);
      }),
    );
    expect(d.platformWiring.disksUnplugged).toBe(0);
  });

  it("keeps a bounded log, counting every line", () => {
    const d = machine();
    for (let i = 0; i < 300; i++) for (const c of `${i}\n`) d.ports.write(0x12, 1, c.charCodeAt(0));
    expect(d.platformWiring.logLines).toBe(300);
    expect(d.platformWiring.log).toHaveLength(256);
    expect(d.platformWiring.log[255]).toBe("299");
  });
});

describe("xen_platform_pci = 0", () => {
  it("leaves the device out: no function at 00:03.0, no fixed ports", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "noplat", memoryMiB: 8, kernel: tinyKernel(SPIN), xenPlatformPci: false });
    expect(d.platform).toBeUndefined();
    expect(d.pci.list().map((f) => f.name)).not.toContain("Xen platform device");
    expect(d.ports.read(0x10, 2)).toBe(0xffff);
    d.ports.write(0x10, 2, UNPLUG_ALL_IDE_DISKS);
  });

  it("is read from xl.cfg (0 or 1, the parser's error style otherwise) and reaches the domain options", () => {
    const base = `name = "a"\nmemory = 8\nkernel = "k.elf"\n`;
    const off = parseDomainConfig(`${base}xen_platform_pci = 0\n`, "a.cfg");
    expect(off.xenPlatformPci).toBe(false);
    expect(parseDomainConfig(`${base}xen_platform_pci = 1\n`, "a.cfg").xenPlatformPci).toBe(true);
    expect(parseDomainConfig(base, "a.cfg").xenPlatformPci).toBeUndefined();
    expect(domainOptions(off, { kernel: new Uint8Array(0) }).xenPlatformPci).toBe(false);
    expect(parseDomainConfig(formatDomainConfig(off), "a.cfg")).toEqual(off);
    for (const [bad, detail] of [["2", /2 is out of range 0\.\.1/], ['"no"', /expected 0 or 1/]] as const) {
      let err: unknown;
      try {
        parseDomainConfig(`${base}xen_platform_pci = ${bad}\n`, "a.cfg");
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).key).toBe("xen_platform_pci");
      expect((err as ConfigError).line).toBe(4);
      expect((err as ConfigError).detail).toMatch(detail);
    }
  });
});

describe.each([true, false])("unassigned guest-physical space (hap=%s)", (hap) => {
  it("reads all ones below 4 GiB and drops writes, counting both", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const code = [
      0xa1, ...le32(0xe000_0000), ...store(0), // mov eax, [0xe0000000]
      0x0f, 0xb6, 0x05, ...le32(0xe000_0011), ...store(1), // movzx eax, byte [0xe0000011]
      0x0f, 0xbf, 0x05, ...le32(0xe000_0022), ...store(2), // movsx eax, word [0xe0000022]
      0xc7, 0x05, ...le32(0xe000_0000), ...le32(0x1234_5678), // mov dword [0xe0000000], 0x12345678 (dropped)
      0xa1, ...le32(0xe000_0000), ...store(3),
      0xa1, ...le32(0xf000_0000), ...store(4), // the platform device's BAR1: nothing placed there yet
      0xa1, ...le32(0x0100_0000), ...store(5), // just above RAM (16 MiB; the domain has 8)
      0xa1, ...le32(0xfec0_0100), ...store(6), // the IO-APIC page past its registers: the device answers all ones
      0x31, 0xc0, 0xb0, 0x5a, 0x66, 0xa3, ...le32(0xe000_0100), // mov [0xe0000100], ax (dropped)
      ...EXIT,
    ];
    const d = hv.createDomain({ name: "float", memoryMiB: 8, hap, kernel: guest(code) });
    hv.run({ maxInstructions: 1_000_000 });
    expect(d.crashReason).toBeUndefined();
    expect(d.exitCode).toBe(0);
    expect(u32s(hv, d, 7)).toEqual([0xffff_ffff, 0xff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff]);
    const s = d.stats();
    expect(s.unassignedReads).toBe(6);
    expect(s.unassignedWrites).toBe(2);
  });

  it("still crashes the domain for an instruction fetch from there", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "fetch", memoryMiB: 8, hap, kernel: guest([0xb8, ...le32(0xe000_0000), 0xff, 0xe0]) }); // mov eax, 0xe0000000; jmp eax
    hv.run({ maxInstructions: 1_000_000 });
    expect(d.state).toBe("crashed");
    expect(d.crashReason).toMatch(/cannot be fetched/);
    expect(d.stats().unassignedReads).toBe(0);
  });
});

describe.each([true, false])("nothing mapped above 4 GiB (hap=%s)", (hap) => {
  it("still crashes the domain, naming the address", () => {
    // 64-bit: map 4-5 GiB with a 1 GiB page in the builder's PDPT (PML4[0] -> PDPT[4]), reload CR3, write there.
    const code = [
      "0f20d8 4825 00f0ffff 488b00 4825 00f0ffff", // rax = CR3 & ~0xfff; rax = PML4[0] & ~0xfff (the PDPT)
      "48bb 8300000001000000 48895820", // PDPT[4] = 0x100000000 | PS | RW | P
      "0f20d8 0f22d8", // mov cr3, cr3: flush
      "48b8 0000000001000000 c70001000000", // mov dword [0x100000000], 1
      "31c0 e7f4",
    ].join("");
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "high", memoryMiB: 8, hap, kernel: direct64Kernel(code.replace(/ /g, "")) });
    hv.run({ maxInstructions: 1_000_000 });
    expect(d.state).toBe("crashed");
    expect(d.crashReason).toMatch(/0x100000000/);
    expect(d.stats().unassignedWrites).toBe(0);
  });
});

describe("what counts as unassigned", () => {
  it("is everything below 4 GiB that is neither RAM nor a device, and nothing above", () => {
    for (const hap of [true, false]) {
      const hv = new Hypervisor({ memoryMiB: 64 });
      const d = hv.createDomain({ name: "map", memoryMiB: 8, hap, kernel: tinyKernel(SPIN) });
      expect(d.mmio.isUnassigned(0x10_0000)).toBe(false); // RAM
      expect(d.mmio.isUnassigned(0xfee0_0000)).toBe(false); // the local APIC
      expect(d.mmio.isUnassigned(0xfec0_0000)).toBe(false); // the IO-APIC
      expect(d.mmio.isUnassigned(0xfed0_0000)).toBe(true);
      expect(d.mmio.isUnassigned(0xffff_ffff)).toBe(true);
      expect(d.mmio.isUnassigned(2 ** 32)).toBe(false);
      expect(d.p2m.lookup(gfn(2 ** 20)).type).toBe(P2mType.Absent);
      // The first frame above RAM, on both MMUs (the shadow identity table is in no p2m).
      expect(d.mmio.isUnassigned(8 * 2 ** 20)).toBe(true);
    }
  });
});
