import { describe, expect, it } from "vitest";
import { MmioBus, PortIoBus, deviceError, type AccessSize, type BusDevice } from "@vtlab/arch";

class Scratch implements BusDevice {
  readonly log: string[] = [];
  constructor(private readonly tag: string) {}
  read(offset: number, size: AccessSize): number {
    this.log.push(`r${size}@${offset}`);
    return (0x1000 + offset) & (size === 1 ? 0xff : 0xffff);
  }
  write(offset: number, size: AccessSize, value: number) {
    this.log.push(`w${size}@${offset}=${value.toString(16)}`);
    return offset === 7 ? deviceError(this.tag, offset, size, value, "register 7 is read-only") : undefined;
  }
}

describe("PortIoBus", () => {
  it("dispatches by port with the offset inside the region", () => {
    const bus = new PortIoBus();
    const uart = new Scratch("uart");
    expect(bus.register(0x3f8, 8, uart, "16550 UART")).toBeUndefined();
    expect(bus.read(0x3fa, 1)).toBe(0x02);
    expect(bus.write(0x3f8, 1, 0x41)).toBeUndefined();
    expect(bus.write(0x3ff, 1, 0)).toMatchObject({ kind: "device-error", device: "uart", offset: 7 });
    expect(uart.log).toEqual(["r1@2", "w1@0=41", "w1@7=0"]);
    expect(bus.ownerOf(0x3fc)).toBe("16550 UART");
  });

  it("refuses overlaps and bad ranges, naming both regions", () => {
    const bus = new PortIoBus();
    bus.register(0x3f8, 8, new Scratch("a"), "COM1");
    const e = bus.register(0x3fc, 8, new Scratch("b"), "other");
    expect(e).toMatchObject({ kind: "bus-registration-error", reason: "overlap", conflictsWith: { name: "COM1", base: 0x3f8, length: 8 } });
    expect(e?.message).toMatch(/other: ports 0x03fc-0x0403 overlap COM1 at 0x03f8-0x03ff/);
    expect(bus.register(0xfffe, 4, new Scratch("c"), "late")).toMatchObject({ reason: "bad-range" });
    expect(bus.register(0x10, 0, new Scratch("c"), "empty")).toMatchObject({ reason: "bad-range" });
  });

  it("reads all-ones from unclaimed ports and counts them; unregister frees the range", () => {
    const bus = new PortIoBus();
    expect(bus.read(0x80, 1)).toBe(0xff);
    expect(bus.read(0x80, 2)).toBe(0xffff);
    expect(bus.read(0x80, 4)).toBe(0xffffffff);
    expect(bus.unclaimedAccesses).toBe(3);
    bus.register(0x80, 1, new Scratch("p"), "POST");
    expect(bus.unregister(0x80)).toBe(true);
    expect(bus.unregister(0x80)).toBe(false);
    expect(bus.register(0x80, 1, new Scratch("p"), "POST again")).toBeUndefined();
    expect(bus.list()).toEqual([{ base: 0x80, length: 1, name: "POST again" }]);
  });
});

describe("MmioBus", () => {
  it("finds regions anywhere in the 52-bit space, refuses overlaps and splits 8-byte accesses", () => {
    const bus = new MmioBus();
    const a = new Scratch("a");
    const hi = new Scratch("hi");
    expect(bus.register(0xfed9_0000, 0x1000, a, "VT-d")).toBeUndefined();
    expect(bus.register(0xf_0000_0000_0000, 0x1000, hi, "high BAR")).toBeUndefined();
    expect(bus.register(0xfed9_0800, 0x1000, a, "clash")).toMatchObject({ reason: "overlap", conflictsWith: { name: "VT-d" } });
    expect(bus.register(2 ** 52 - 0x800, 0x1000, a, "too high")).toMatchObject({ reason: "bad-range" });
    expect(bus.claims(0xfed9_0fff)).toBe(true);
    expect(bus.claims(0xfed9_1000)).toBe(false);
    expect(bus.read(0xf_0000_0000_0010, 2)).toBe(0x1010);
    const out = { lo: 0, hi: 0 };
    bus.read64(0xfed9_0008, out);
    expect(a.log).toEqual(["r4@8", "r4@12"]);
    bus.write64(0xfed9_0020, 0x1, 0x8000_0000);
    expect(a.log.slice(2)).toEqual(["w4@32=1", "w4@36=80000000"]);
    expect(bus.read(0x1000, 4)).toBe(0xffffffff);
    expect(bus.unregister(0xfed9_0000)).toBe(true);
    expect(bus.claims(0xfed9_0000)).toBe(false);
  });
});
