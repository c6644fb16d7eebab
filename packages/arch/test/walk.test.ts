import { describe, expect, it } from "vitest";
import {
  Access,
  MachineMemory,
  PFEC_P,
  PFEC_WR,
  PTE_A,
  PTE_D,
  PTE_P,
  PTE_PS,
  PTE_RW,
  PTE_US,
  PhysicalPagingStructures,
  WalkResult,
  WalkStatus,
  checkAccessRights,
  makeEntry,
  pagingMode,
  PageRights,
  walk,
  walkLinear,
  type MemoryError,
  type PagingStructureAccess,
  type U64,
} from "@vtlab/arch";

const RWU = PTE_P | PTE_RW | PTE_US;

function put(mem: MachineMemory, table: number, index: number, address: number, flags: number, flagsHi = 0): void {
  const e = makeEntry(address, flags, flagsHi);
  mem.write64(table + index * 8, e.lo, e.hi);
}

describe("walkLinear over 64-bit linear addresses", () => {
  it("walks 5-level paging with an address above 2^53 split into halves", () => {
    const mem = new MachineMemory(1 << 24);
    // va = 0xff12_3456_789a_b000 (bits 56:48 = 0x12, 47:39, 38:30, 29:21, 20:12)
    const vaHi = 0xff12_3456 >>> 0;
    const vaLo = 0x789a_bcde >>> 0;
    const i5 = (vaHi >>> 16) & 0x1ff;
    const i4 = (vaHi >>> 7) & 0x1ff;
    const i3 = ((vaHi & 0x7f) << 2) | (vaLo >>> 30);
    const i2 = (vaLo >>> 21) & 0x1ff;
    const i1 = (vaLo >>> 12) & 0x1ff;
    put(mem, 0x1000, i5, 0x2000, RWU);
    put(mem, 0x2000, i4, 0x3000, RWU);
    put(mem, 0x3000, i3, 0x4000, RWU);
    put(mem, 0x4000, i2, 0x5000, RWU);
    put(mem, 0x5000, i1, 0x12_3456_7000, RWU);
    const out = new WalkResult<MemoryError>();
    const mode = pagingMode({ la57: true, maxPhyAddr: 52 });
    const status = walkLinear(out, mode, 0x1000, vaHi, vaLo, Access.Write, new PhysicalPagingStructures(mem));
    expect(status).toBe(WalkStatus.Ok);
    expect(out.references).toBe(5);
    expect(out.physicalAddress).toBe(0x12_3456_7cde);
    expect(Array.from(out.stepLevel.subarray(0, out.steps))).toEqual([5, 4, 3, 2, 1]);
    expect(out.dirty).toBe(true);
    expect(out.adWrites).toBe(5);
  });

  it("reports the lower layer's fault untouched and stops the walk", () => {
    const mem = new MachineMemory(1 << 20);
    put(mem, 0x1000, 0, 0x2000, RWU);
    const fault = { kind: "ept-violation-stand-in", gpa: 0x2000 } as const;
    const tables: PagingStructureAccess<typeof fault> = {
      readEntry(address: number, _level, out: U64) {
        if (address >= 0x2000 && address < 0x3000) return fault;
        mem.read64(address, out);
        return undefined;
      },
      setEntryBits() {
        return undefined;
      },
    };
    const r = walk(0x1000, 0x1234, Access.Read, pagingMode(), tables);
    expect(r).toMatchObject({ kind: "access-fault", fault, level: 3, references: 1 });
  });

  it("sets A top-down and D in the large leaf, and a later read leaves D clear", () => {
    const mem = new MachineMemory(1 << 24);
    put(mem, 0x1000, 0, 0x2000, RWU);
    put(mem, 0x2000, 0, 0x3000, RWU);
    put(mem, 0x3000, 1, 0x40_0000, RWU | PTE_PS); // 2 MiB page at va 0x200000
    const tables = new PhysicalPagingStructures(mem);
    const r = walk(0x1000, 0x20_1234, Access.Read | Access.User, pagingMode(), tables);
    expect(r).toMatchObject({ kind: "translation", physicalAddress: 0x40_1234, pageShift: 21, references: 3, dirty: false });
    expect((mem.read32(0x3008) as number) & (PTE_A | PTE_D)).toBe(PTE_A);
    const w = walk(0x1000, 0x20_1234, Access.Write | Access.User, pagingMode(), tables);
    expect(w).toMatchObject({ kind: "translation", dirty: true });
    expect((mem.read32(0x3008) as number) & (PTE_A | PTE_D)).toBe(PTE_A | PTE_D);
    expect((mem.read32(0x2000) as number) & PTE_D).toBe(0);
  });

  it("checkAccessRights is the walker's rule (a TLB hit gives the same answer as a walk)", () => {
    const mode = pagingMode({ wp: true });
    expect(checkAccessRights(PageRights.User, Access.Write | Access.User, mode)).toBe(PFEC_P | PFEC_WR | 4);
    expect(checkAccessRights(PageRights.User | PageRights.Writable, Access.Write | Access.User, mode)).toBe(0);
    expect(checkAccessRights(0, Access.Write, pagingMode({ wp: false }))).toBe(0);
  });
});
