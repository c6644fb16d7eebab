import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { DirectDma, bdf, gfn, iova, mfn, type Bdf } from "@vtlab/arch";
import { FaultReason, IommuDomain, MapP2m, type VtdDmaFault } from "@vtlab/iommu";
import { GiB, expectOk, machine, pattern, type Machine } from "./machine.js";

const NIC = bdf(3, 0, 0); // assigned to domain A
const A_BASE = 0x10_0000; // domain A: gfns 0..255 -> mfns 0x100000.. (4 GiB)
const B_BASE = 0x18_0000; // domain B: gfns 0..255 -> mfns 0x180000.. (6 GiB)
const FRAMES = 256;

interface World extends Machine {
  a: IommuDomain;
  b: IommuDomain;
}

function world(): World {
  const m = machine();
  const mk = (did: number, base: number): IommuDomain => {
    const p2m = new MapP2m();
    for (let i = 0; i < FRAMES; i++) p2m.set(gfn(i), mfn(base + i));
    const d = IommuDomain.fromP2m(m.memory, m.frames, { domainId: did, levels: 4, p2m, largePages: { "2M": true, "1G": true } });
    if (!(d instanceof IommuDomain)) throw new Error(d.message);
    return d;
  };
  const a = mk(1, A_BASE);
  const b = mk(2, B_BASE);
  const actions = a.attach(m.root, NIC);
  if (!Array.isArray(actions)) throw new Error(actions.message);
  expectOk(m.driver.invalidateAll(actions));
  // Domain B's memory holds a secret in every frame.
  for (let i = 0; i < FRAMES; i++) m.memory.writeBytes((B_BASE + i) * 4096, pattern(4096, 0xb000 + i));
  return { ...m, a, b };
}

/** Byte-wise equality (vitest's deep equality is slow on megabyte arrays). */
function same(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function snapshotB(m: Machine): Uint8Array {
  const out = new Uint8Array(FRAMES * 4096);
  m.memory.readBytes(B_BASE * 4096, out);
  return out;
}

describe("a device assigned to domain A", () => {
  it("DMAs with A's guest-physical addresses into A's frames", () => {
    const w = world();
    const data = pattern(3000, 1);
    expect(w.unit.write(NIC, iova(0x7_0800), data)).toBeUndefined();
    const back = new Uint8Array(3000);
    w.memory.readBytes((A_BASE + 0x70) * 4096 + 0x800, back);
    expect(back).toEqual(data);
  });

  it("cannot write a frame of domain B: the machine address of B's frame is not an address A owns", () => {
    const w = world();
    const before = snapshotB(w);
    const target = (B_BASE + 3) * 4096; // B's frame, by machine address
    const f = w.unit.write(NIC, iova(target), pattern(64, 9)) as VtdDmaFault;
    expect(f).toMatchObject({ kind: "dma-fault", reason: FaultReason.WriteNotPermitted, write: true, recorded: true });
    expect(same(snapshotB(w), before)).toBe(true);
    expect(w.driver.readFaults()).toEqual([
      { index: 0, sourceId: NIC, pageAddress: target, read: false, reason: FaultReason.WriteNotPermitted, reasonName: "write not permitted" },
    ]);
  });

  it("cannot read B's secret, and the buffer it offered stays untouched", () => {
    const w = world();
    const into = new Uint8Array(256).fill(0xee);
    const f = w.unit.read(NIC, iova((B_BASE + 1) * 4096), into);
    expect(f).toMatchObject({ reason: FaultReason.ReadNotPermitted, write: false });
    expect(into.every((x) => x === 0xee)).toBe(true);
  });

  it("unmapped space and addresses beyond the width fault with their own reasons", () => {
    const w = world();
    const before = snapshotB(w);
    expect(w.unit.write(NIC, iova(0x4000_0000), pattern(8, 2))).toMatchObject({ reason: FaultReason.WriteNotPermitted });
    expect(w.unit.write(NIC, iova(2 ** 48 + 0x1000), pattern(8, 2))).toMatchObject({ reason: FaultReason.AddressBeyondWidth });
    expect(same(snapshotB(w), before)).toBe(true);
    expect(w.driver.readFaults().map((r) => r.reason)).toEqual([FaultReason.WriteNotPermitted, FaultReason.AddressBeyondWidth]);
  });

  it("another device, not assigned to anyone, is blocked entirely", () => {
    const w = world();
    const rogue = bdf(3, 0, 1);
    expect(w.unit.write(rogue, iova(0x1000), pattern(8, 3))).toMatchObject({ reason: FaultReason.ContextEntryNotPresent });
    expect(w.unit.write(bdf(9, 0, 0), iova(0x1000), pattern(8, 3))).toMatchObject({ reason: FaultReason.RootEntryNotPresent });
  });

  it("without an IOMMU the same DMA overwrites domain B (why VT-d exists)", () => {
    const w = world();
    const before = snapshotB(w);
    const direct = new DirectDma(w.memory);
    expect(direct.write(NIC, iova((B_BASE + 3) * 4096), pattern(64, 9))).toBeUndefined();
    expect(same(snapshotB(w), before)).toBe(false);
  });

  it("property: whatever address and length A's device uses, only A's frames change", () => {
    const w = world();
    const before = snapshotB(w);
    const tablesBefore = new Uint8Array(0x4000 * 4096 / 64);
    w.memory.readBytes(0x1000 * 4096, tablesBefore);
    const addresses = fc.oneof(
      fc.integer({ min: 0, max: FRAMES * 4096 }), // A's guest-physical space
      fc.integer({ min: 0, max: 16 * GiB }), // anywhere in machine memory
      fc.integer({ min: 0, max: 2 ** 50 }),
    );
    fc.assert(
      fc.property(addresses, fc.integer({ min: 1, max: 9000 }), (address, length) => {
        const data = pattern(length, address + length);
        const f = w.unit.write(NIC, iova(address), data);
        const inA = address + length <= FRAMES * 4096;
        expect(f === undefined).toBe(inA);
      }),
      { numRuns: 300, seed: 0xa },
    );
    expect(same(snapshotB(w), before)).toBe(true);
    const tablesAfter = new Uint8Array(tablesBefore.length);
    w.memory.readBytes(0x1000 * 4096, tablesAfter);
    expect(same(tablesAfter, tablesBefore)).toBe(true);
  });
});

describe("two devices of one domain share its tables", () => {
  it("translate identically, and one unmap + invalidation affects both", () => {
    const w = world();
    const second: Bdf = bdf(3, 0, 1);
    const actions = w.a.attach(w.root, second);
    if (!Array.isArray(actions)) throw new Error(actions.message);
    expectOk(w.driver.invalidateAll(actions));
    expect(w.a.devices).toEqual([NIC, second]);
    expect(w.root.readContext(second)).toMatchObject({ domainId: 1, slptptr: w.a.root });
    expect(w.unit.translate(second, 0x5123, false)).toBe(w.unit.translate(NIC, 0x5123, false));
    const req = w.a.unmap(gfn(5));
    if (req === undefined || "message" in req) throw new Error("unmap failed");
    expectOk(w.driver.invalidate(req));
    expect(w.unit.translate(second, 0x5123, false)).toBe(-FaultReason.ReadNotPermitted);
    expect(w.unit.translate(NIC, 0x5123, false)).toBe(-FaultReason.ReadNotPermitted);
  });
});
