import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { bdf, gfn, iova, mfn, type Hpa, type MachineMemory } from "@vtlab/arch";
import {
  AddressWidth,
  FaultReason,
  IommuDomain,
  MapP2m,
  SL_PS,
  SL_R,
  SL_SNP,
  SL_W,
  TranslationType,
  makeContextEntry,
  makeRootEntry,
  makeSlEntry,
  type VtdDmaFault,
} from "@vtlab/iommu";
import { GiB, expectOk, machine, pattern, read64, write128, write64, type Machine } from "./machine.js";

const DEV = bdf(0, 3, 0); // devfn 0x18

// Hand-built tables at fixed machine addresses (below the fixture's table frames at 16 MiB).
const RT = 0x10_0000;
const CT = 0x11_0000;
const PML4 = 0x12_0000;
const PDPT = 0x12_1000;
const PD = 0x12_2000;
const PT = 0x12_3000;
const DATA = 0x1_0000_0000; // 4 GiB
const RW = SL_R | SL_W;

/** A correct 4-level mapping of iova 0x5000 -> DATA + 0x5000 for DEV in domain 7; `mutate` may corrupt it. */
function raw(mutate: (mem: MachineMemory) => void = () => undefined, unitOptions = {}): Machine {
  const m = machine(unitOptions);
  const mem = m.memory;
  write128(mem, RT + 0 * 16, makeRootEntry(CT as Hpa));
  write128(mem, CT + 0x18 * 16, makeContextEntry({ domainId: 7, translationType: TranslationType.Untranslated, slptptr: PML4 as Hpa, addressWidth: AddressWidth.Agaw48 }));
  write64(mem, PML4, makeSlEntry(PDPT, RW));
  write64(mem, PDPT, makeSlEntry(PD, RW));
  write64(mem, PD, makeSlEntry(PT, RW));
  write64(mem, PT + 5 * 8, makeSlEntry(DATA + 0x5000, RW));
  mutate(mem);
  expectOk(m.driver.setRootTable(RT as Hpa));
  return m;
}

function dmaRead(m: Machine, address: number, length = 8): VtdDmaFault | undefined {
  return m.unit.read(DEV, iova(address), new Uint8Array(length)) as VtdDmaFault | undefined;
}

function dmaWrite(m: Machine, address: number, length = 8): VtdDmaFault | undefined {
  return m.unit.write(DEV, iova(address), pattern(length, address)) as VtdDmaFault | undefined;
}

function orLo(mem: MachineMemory, at: number, bits: number): void {
  const e = read64(mem, at);
  mem.write64(at, (e.lo | bits) >>> 0, e.hi);
}

function orHi(mem: MachineMemory, at: number, bits: number): void {
  const e = read64(mem, at);
  mem.write64(at, e.lo, (e.hi | bits) >>> 0);
}

describe("translation through hand-built tables", () => {
  it("reads and writes through a correct 4-level mapping", () => {
    const m = raw();
    const data = pattern(16, 3);
    expect(m.unit.write(DEV, iova(0x5ff0), data)).toBeUndefined();
    const back = new Uint8Array(16);
    m.memory.readBytes(DATA + 0x5ff0, back);
    expect(back).toEqual(data);
    const via = new Uint8Array(16);
    expect(m.unit.read(DEV, iova(0x5ff0), via)).toBeUndefined();
    expect(via).toEqual(data);
    expect(m.unit.translate(DEV, 0x5abc, false)).toBe(DATA + 0x5abc);
  });

  it("counts one context fetch (2 references) and one 4-level walk, then hits", () => {
    const m = raw();
    m.unit.translate(DEV, 0x5000, false);
    m.unit.translate(DEV, 0x5008, false);
    const s = m.unit.stats;
    expect(s.walkReferences).toBe(2 + 4);
    expect(s.iotlbMisses).toBe(1);
    expect(s.iotlbHits).toBe(1);
    expect(s.contextCacheMisses).toBe(1);
    expect(s.contextCacheHits).toBe(1);
  });

  it("walks 3-level tables for AW = 1 (39-bit)", () => {
    const m = raw((mem) => {
      write128(mem, CT + 0x18 * 16, makeContextEntry({ domainId: 7, translationType: 0, slptptr: PDPT as Hpa, addressWidth: AddressWidth.Agaw39 }));
    });
    expect(m.unit.translate(DEV, 0x5123, true)).toBe(DATA + 0x5123);
    expect(dmaRead(m, 2 ** 39)).toMatchObject({ reason: FaultReason.AddressBeyondWidth, condition: "LGN.1" });
  });

  it("maps 2 MiB and 1 GiB super pages", () => {
    const m = raw((mem) => {
      write64(mem, PD + 1 * 8, makeSlEntry(DATA + 0x20_0000 * 3, RW | SL_PS)); // iova 2M..4M -> DATA + 6M
      write64(mem, PDPT + 2 * 8, makeSlEntry(2 * GiB, SL_R | SL_PS)); // iova 2G..3G -> 2G, read-only
    });
    expect(m.unit.translate(DEV, 0x20_0000 + 0x1_2345, false)).toBe(DATA + 0x60_0000 + 0x1_2345);
    expect(m.unit.translate(DEV, 2 * GiB + 0x3456_789a, false)).toBe(2 * GiB + 0x3456_789a);
    expect(dmaWrite(m, 2 * GiB + 0x1000)).toMatchObject({ reason: FaultReason.WriteNotPermitted });
  });

  it("passes through for TT = 10b, up to the host address width", () => {
    const m = raw((mem) => {
      write128(mem, CT + 0x18 * 16, makeContextEntry({ domainId: 7, translationType: TranslationType.PassThrough, slptptr: 0 as Hpa, addressWidth: 2 }));
    });
    expect(m.unit.translate(DEV, 0x3_1234_5678, true)).toBe(0x3_1234_5678);
    expect(dmaWrite(m, 2 ** 46)).toMatchObject({ reason: FaultReason.AddressBeyondWidth });
  });

  it("is all or nothing across pages", () => {
    const m = raw((mem) => write64(mem, PT + 6 * 8, makeSlEntry(DATA + 0x6000, SL_R))); // page 6 read-only
    const before = new Uint8Array(0x20);
    m.memory.readBytes(DATA + 0x5ff0, before);
    expect(dmaWrite(m, 0x5ff0, 0x20)).toMatchObject({ reason: FaultReason.WriteNotPermitted, iova: 0x6000 });
    const after = new Uint8Array(0x20);
    m.memory.readBytes(DATA + 0x5ff0, after);
    expect(after).toEqual(before);
    expect(dmaRead(m, 0x5ff0, 0x20)).toBeUndefined();
  });
});

describe("VT-d fault reasons for malformed tables", () => {
  type Case = [name: string, mutate: (mem: MachineMemory) => void, reason: number, write?: boolean, address?: number];
  const cases: Case[] = [
    ["root entry not present", (mem) => write128(mem, RT, [0, 0, 0, 0]), FaultReason.RootEntryNotPresent],
    ["root entry bits 11:1", (mem) => orLo(mem, RT, 1 << 3), FaultReason.RootEntryReserved],
    ["root entry CTP above HAW", (mem) => orHi(mem, RT, 1 << 14), FaultReason.RootEntryReserved],
    ["root entry bits 127:64", (mem) => mem.write32(RT + 12, 1), FaultReason.RootEntryReserved],
    ["context table outside memory", (mem) => write128(mem, RT, makeRootEntry((20 * GiB) as Hpa)), FaultReason.ContextEntryAccessError],
    ["context entry not present", (mem) => write128(mem, CT + 0x18 * 16, [0, 0, 0, 0]), FaultReason.ContextEntryNotPresent],
    ["context entry bits 11:4", (mem) => orLo(mem, CT + 0x18 * 16, 1 << 6), FaultReason.ContextEntryReserved],
    ["context entry SLPTPTR above HAW", (mem) => orHi(mem, CT + 0x18 * 16, 1 << 20), FaultReason.ContextEntryReserved],
    ["context entry bit 71", (mem) => orLo(mem, CT + 0x18 * 16 + 8, 1 << 7), FaultReason.ContextEntryReserved],
    ["context entry bits 127:88", (mem) => orHi(mem, CT + 0x18 * 16 + 8, 1 << 2), FaultReason.ContextEntryReserved],
    ["context entry TT = 11b", (mem) => orLo(mem, CT + 0x18 * 16, 0b1100), FaultReason.ContextEntryInvalid],
    ["context entry TT = 01b without device-TLB", (mem) => orLo(mem, CT + 0x18 * 16, 0b0100), FaultReason.ContextEntryInvalid],
    ["context entry AW = 3 (57-bit, not in SAGAW)", (mem) => orLo(mem, CT + 0x18 * 16 + 8, 1), FaultReason.ContextEntryInvalid],
    ["context entry AW = 0", (mem) => mem.write32(CT + 0x18 * 16 + 8, 7 << 8), FaultReason.ContextEntryInvalid],
    ["address at 2^48", () => undefined, FaultReason.AddressBeyondWidth, false, 2 ** 48],
    ["SL-PML4E with PS", (mem) => orLo(mem, PML4, SL_PS), FaultReason.SecondLevelEntryReserved],
    ["SL-PML4E with SNP (non-leaf)", (mem) => orLo(mem, PML4, SL_SNP), FaultReason.SecondLevelEntryReserved],
    ["SL-PTE address above HAW", (mem) => orHi(mem, PT + 5 * 8, 1 << 15), FaultReason.SecondLevelEntryReserved],
    ["SL-PTE with TM (bit 62) without device-TLB", (mem) => orHi(mem, PT + 5 * 8, 1 << 30), FaultReason.SecondLevelEntryReserved],
    ["2 MiB SL-PDE with bits 20:12 set", (mem) => write64(mem, PD, makeSlEntry(DATA + 0x1000, RW | SL_PS)), FaultReason.SecondLevelEntryReserved],
    ["1 GiB SL-PDPE with bits 29:12 set", (mem) => write64(mem, PDPT, makeSlEntry(DATA + 0x20_0000, RW | SL_PS)), FaultReason.SecondLevelEntryReserved],
    ["SL table outside memory", (mem) => write64(mem, PD, makeSlEntry(30 * GiB, RW)), FaultReason.SecondLevelEntryAccessError],
    ["SL-PTE not present, read", (mem) => write64(mem, PT + 5 * 8, { lo: 0, hi: 0 }), FaultReason.ReadNotPermitted],
    ["SL-PTE not present, write", (mem) => write64(mem, PT + 5 * 8, { lo: 0, hi: 0 }), FaultReason.WriteNotPermitted, true],
    ["reserved bits in an entry without R or W are not looked at", (mem) => write64(mem, PD, { lo: SL_PS | SL_SNP | 0x1000, hi: 0xffff }), FaultReason.ReadNotPermitted],
    ["SL-PDE write-only, read", (mem) => write64(mem, PD, makeSlEntry(PT, SL_W)), FaultReason.ReadNotPermitted],
    ["SL-PDPE read-only, write", (mem) => write64(mem, PDPT, makeSlEntry(PD, SL_R)), FaultReason.WriteNotPermitted, true],
  ];

  for (const [name, mutate, reason, write = false, address = 0x5000] of cases) {
    it(`${name} -> ${reason.toString(16)}h, recorded with the requester and page`, () => {
      const m = raw(mutate);
      const f = write ? dmaWrite(m, address) : dmaRead(m, address);
      expect(f).toMatchObject({ kind: "dma-fault", reason, write, recorded: true });
      const records = m.driver.readFaults();
      expect(records).toHaveLength(1);
      expect(records[0]).toMatchObject({ sourceId: DEV, pageAddress: address - (address % 4096), read: !write, reason });
    });
  }

  it("a root table outside memory gives 8h", () => {
    const m = machine();
    expectOk(m.driver.setRootTable((20 * GiB) as Hpa));
    expect(dmaRead(m, 0)).toMatchObject({ reason: FaultReason.RootEntryAccessError, condition: "LRT.1" });
    expectOk(m.driver.setRootTable((2 ** 47) as Hpa)); // above the 46-bit host address width
    expect(dmaRead(m, 0)).toMatchObject({ reason: FaultReason.RootEntryAccessError });
  });

  it("without 1 GiB page support a PS bit in an SL-PDPE is reserved", () => {
    const m = raw((mem) => write64(mem, PDPT + 8, makeSlEntry(GiB, RW | SL_PS)), { largePages: { "2M": true, "1G": false } });
    expect(dmaRead(m, GiB + 0x10)).toMatchObject({ reason: FaultReason.SecondLevelEntryReserved });
  });

  it("FPD suppresses the recording of qualified faults only", () => {
    const fpd = (mem: MachineMemory) => orLo(mem, CT + 0x18 * 16, 1 << 1);
    const m = raw(fpd);
    expect(dmaRead(m, 0x9000)).toMatchObject({ reason: FaultReason.ReadNotPermitted, recorded: false });
    expect(dmaRead(m, 2 ** 48)).toMatchObject({ reason: FaultReason.AddressBeyondWidth, recorded: false });
    expect(m.driver.readFaults()).toHaveLength(0);
    expect(m.unit.stats.faultsSuppressed).toBe(2);
    // "context entry not present" is qualified: FPD is read even from a non-present entry.
    const np = raw((mem) => write128(mem, CT + 0x18 * 16, [1 << 1, 0, 0, 0]));
    expect(dmaRead(np, 0x5000)).toMatchObject({ reason: FaultReason.ContextEntryNotPresent, recorded: false });
    // Reserved bits in the context entry (LCT.3) are not qualified: recorded even with FPD.
    const bad = raw((mem) => orLo(mem, CT + 0x18 * 16, (1 << 1) | (1 << 8)));
    expect(dmaRead(bad, 0x5000)).toMatchObject({ reason: FaultReason.ContextEntryReserved, recorded: true });
  });

  it("survives arbitrary garbage in every table: only VT-d fault reasons, never an exception", () => {
    const legal = new Set([0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x9, 0xa, 0xb, 0xc, 0x100]);
    const word = fc.integer({ min: 0, max: 0xffff_ffff });
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(RT, CT + 0x18 * 16, PML4, PDPT, PD, PT + 5 * 8), word, word), { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 0, max: 2 ** 49 }),
        fc.boolean(),
        (writes, address, write) => {
          const m = raw((mem) => {
            for (const [at, lo, hi] of writes) mem.write64(at, lo, hi);
          });
          const before = new Uint8Array(4096);
          m.memory.readBytes(RT, before);
          const f = write ? dmaWrite(m, address) : dmaRead(m, address);
          if (f !== undefined) expect(legal.has(f.reason)).toBe(true);
          // A blocked DMA never writes; the tables themselves are never written by the unit.
          const after = new Uint8Array(4096);
          m.memory.readBytes(RT, after);
          expect(after).toEqual(before);
        },
      ),
      { numRuns: 150, seed: 0x7d },
    );
  });
});

describe("translation equals the p2m (property)", () => {
  const settings = fc.record({
    levels: fc.constantFrom(3 as const, 4 as const),
    large: fc.boolean(),
    // p2m: a few 4 KiB pages and maybe one 2 MiB-aligned contiguous run
    pages: fc.uniqueArray(fc.tuple(fc.integer({ min: 0, max: 0x3ffff }), fc.integer({ min: 0, max: 0xfffff }), fc.boolean()), {
      minLength: 1,
      maxLength: 40,
      selector: (t) => t[0],
    }),
    run: fc.option(fc.tuple(fc.integer({ min: 0, max: 0x1ff }), fc.integer({ min: 0x200, max: 0x7ff }), fc.boolean())),
    probes: fc.array(fc.tuple(fc.integer({ min: 0, max: 0x4_0000 + 0x20_0000 }), fc.integer({ min: 0, max: 4095 }), fc.boolean()), { minLength: 1, maxLength: 30 }),
  });

  it("mapped pages translate to mfn * 4096 + offset; everything else faults with 5h/6h", () => {
    fc.assert(
      fc.property(settings, ({ levels, large, pages, run, probes }) => {
        const m = machine();
        const p2m = new MapP2m();
        if (run !== null) {
          const [slot, mslot, writable] = run;
          for (let i = 0; i < 512; i++) p2m.set(gfn(0x4_0000 + slot * 512 + i), mfn(0x10_0000 + mslot * 512 + i), writable);
        }
        for (const [g, f, writable] of pages) p2m.set(gfn(g), mfn(0x20_0000 + f), writable);
        const d = IommuDomain.fromP2m(m.memory, m.frames, { domainId: 5, levels, p2m, largePages: { "2M": large, "1G": large } });
        if (!(d instanceof IommuDomain)) throw new Error(d.message);
        const actions = d.attach(m.root, DEV);
        if (!Array.isArray(actions)) throw new Error(actions.message);
        expectOk(m.driver.invalidateAll(actions));
        const allGfns = [...p2m.entries()].map((e) => e.gfn as number);
        for (const [pick, offset, write] of probes) {
          // Half the probes hit mapped gfns, half land anywhere.
          const g = pick % 2 === 0 ? (allGfns[pick % allGfns.length] as number) : pick;
          const e = p2m.lookup(gfn(g));
          const result = m.unit.translate(DEV, g * 4096 + offset, write);
          if (e !== undefined && (!write || e.writable)) {
            expect(result).toBe(e.mfn * 4096 + offset);
            expect(d.lookup(gfn(g))).toMatchObject({ mfn: e.mfn, writable: e.writable });
          } else {
            expect(result).toBe(-(write ? FaultReason.WriteNotPermitted : FaultReason.ReadNotPermitted));
          }
        }
      }),
      { numRuns: 60, seed: 0x1d },
    );
  });
});
