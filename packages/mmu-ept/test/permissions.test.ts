/**
 * The permission matrix: bits 2:0 = 000b..111b in the EPT entry of every level (PML4E, PDPTE,
 * PDE, PTE, and the 2 MiB and 1 GiB leaves), for reads, writes and fetches, with execute-only
 * supported and not, against the SDM oracle; then pairs of entries (the AND), then the guest
 * paging-structure reads of a two-dimensional walk with EPT A/D off and on.
 */
import { describe, expect, it } from "vitest";
import { Access, MachineMemory, PTE_A, PTE_D, PTE_P, PTE_RW, PTE_US, pagingMode, type Mfn } from "@vtlab/arch";
import { EptAccess, GuestReference } from "@vtlab/cpu-vmx";
import { EPT_GLA_FAULT, EPT_GLA_VALID, EptP2m, EptGuestMemory, GuestPageTables, NO_CACHES, NestedWalker, eptCapabilities, isP2mError } from "@vtlab/mmu-ept";
import { SimpleFrameAllocator } from "@vtlab/p2m";
import { GiB, TABLE_FRAMES_AT, read64 } from "./fixture.js";
import { sdmEptOutcome } from "./sdm-ept-oracle.js";

const GPA = 0x40_4020_3000; // distinct indices at every level
const HPA = 0x2_0000_0000;
const ACCESSES = [
  ["read", EptAccess.Read],
  ["write", EptAccess.Write],
  ["fetch", EptAccess.Fetch],
] as const;

interface Rig {
  memory: MachineMemory;
  walker: NestedWalker;
  /** Entry addresses of the walk for GPA, top level first, and their levels. */
  entries: { address: number; level: number }[];
}

function rig(leafShift: 12 | 21 | 30, executeOnly: boolean): Rig {
  const memory = new MachineMemory(64 * GiB);
  const frames = new SimpleFrameAllocator(memory, TABLE_FRAMES_AT as Mfn, 64);
  const caps = eptCapabilities({ executeOnly });
  const ept = EptP2m.create({ memory, frames, caps }) as EptP2m;
  const size = 2 ** leafShift;
  const base = GPA - (GPA % size);
  const r = ept.map(base, HPA, size, { maxPageShift: leafShift });
  if (isP2mError(r)) throw new Error(r.message);
  const walker = new NestedWalker(memory, { caps, switches: NO_CACHES });
  const p = ept.eptp();
  walker.setEptp(p.lo, p.hi);
  const entries = ept.inspect(GPA).map((s) => ({ address: s.address, level: s.level }));
  return { memory, walker, entries };
}

function setXwr(memory: MachineMemory, address: number, xwr: number): void {
  const e = read64(memory, address);
  memory.write64(address, ((e.lo & ~7) | xwr) >>> 0, e.hi);
}

function check(r: Rig, xwrs: number[], access: number, executeOnly: boolean): void {
  r.entries.forEach((e, i) => setXwr(r.memory, e.address, xwrs[i] as number));
  const expected = sdmEptOutcome(xwrs, r.entries.map((e) => e.level), access, executeOnly);
  const got = r.walker.translate(GPA + 0x10, access, GuestReference.Final);
  const where = `xwr ${xwrs.map((x) => x.toString(2).padStart(3, "0")).join("/")} access ${access} execute-only ${executeOnly}`;
  if (expected.kind === "ok") {
    expect(got, where).toBe(HPA + (GPA % 2 ** (12 + 9 * ((r.entries.at(-1)?.level ?? 1) - 1))) + 0x10);
  } else if (expected.kind === "violation") {
    expect(got, where).toEqual({
      kind: "ept-violation",
      gpa: GPA + 0x10,
      qualification: access | (expected.permitted << 3) | EPT_GLA_VALID | EPT_GLA_FAULT,
      level: expected.level,
      reference: GuestReference.Final,
    });
  } else {
    expect(got, where).toMatchObject({ kind: "ept-misconfig", gpa: GPA + 0x10, level: expected.level });
  }
}

describe("EPT permission matrix against the SDM", () => {
  for (const executeOnly of [true, false]) {
    for (const [leafName, leafShift] of [
      ["4 KiB", 12],
      ["2 MiB", 21],
      ["1 GiB", 30],
    ] as const) {
      it(`one entry at a time, ${leafName} leaf, execute-only ${executeOnly ? "supported" : "not supported"}`, () => {
        const r = rig(leafShift, executeOnly);
        let cases = 0;
        for (let target = 0; target < r.entries.length; target++) {
          for (let xwr = 0; xwr < 8; xwr++) {
            for (const [, access] of ACCESSES) {
              const xwrs = r.entries.map((_, i) => (i === target ? xwr : 7));
              check(r, xwrs, access, executeOnly);
              cases++;
            }
          }
        }
        expect(cases).toBe(r.entries.length * 8 * 3);
      });
    }
  }

  it("pairs of entries: the access needs the bit in every entry, bits 5:3 are their AND", () => {
    const r = rig(12, true);
    for (const [a, b] of [
      [0, 3],
      [1, 2],
    ] as const) {
      for (let x = 0; x < 8; x++) {
        for (let y = 0; y < 8; y++) {
          for (const [, access] of ACCESSES) {
            const xwrs = [7, 7, 7, 7];
            xwrs[a] = x;
            xwrs[b] = y;
            check(r, xwrs, access, true);
          }
        }
      }
    }
  });
});

describe("guest paging-structure reads in the 2D walk", () => {
  for (const ad of [false, true]) {
    it(`need R${ad ? " and W (EPT A/D on: they count as writes)" : ""} in the EPT leaf of the guest table's page`, () => {
      const memory = new MachineMemory(64 * GiB);
      const frames = new SimpleFrameAllocator(memory, TABLE_FRAMES_AT as Mfn, 256);
      const ept = EptP2m.create({ memory, frames }) as EptP2m;
      ept.map(0, 0x1_0000_0000, 64 * 1024 * 1024, { maxPageShift: 12 });
      let next = 0x10_0000;
      const gm = new EptGuestMemory(memory, ept);
      const tables = new GuestPageTables(gm, () => (next += 0x1000) - 0x1000);
      const gva = 0x1234_5000;
      tables.map(gva, 0x20_0000, 12, PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D);
      for (let l = 4; l >= 2; l--) {
        const at = tables.entryFor(gva, l) as number;
        const e = { lo: 0, hi: 0 };
        gm.read64(at, e);
        gm.write64(at, e.lo | PTE_A, e.hi);
      }
      const pteGpa = tables.entryFor(gva, 1) as number;
      const leaf = ept.lookup(pteGpa)!.entryAddress;
      const walker = new NestedWalker(memory, { switches: NO_CACHES });
      const p = ept.eptp(ad);
      walker.setEptp(p.lo, p.hi);
      walker.setGuestContext(tables.root, pagingMode());
      const need = ad ? EptAccess.Read | EptAccess.Write : EptAccess.Read;
      for (let xwr = 0; xwr < 8; xwr++) {
        setXwr(memory, leaf, xwr);
        const expected = sdmEptOutcome([7, 7, 7, xwr], [4, 3, 2, 1], need, true);
        const out = walker.walk(gva, Access.Read);
        if (expected.kind === "ok") expect(out.kind, `xwr ${xwr}`).toBe("translation");
        else if (expected.kind === "misconfig") expect(out, `xwr ${xwr}`).toMatchObject({ kind: "ept-fault", fault: { kind: "ept-misconfig", gpa: pteGpa } });
        else {
          expect(out, `xwr ${xwr}`).toMatchObject({
            kind: "ept-fault",
            fault: { kind: "ept-violation", gpa: pteGpa, qualification: need | (expected.permitted << 3) | EPT_GLA_VALID, reference: GuestReference.PagingStructure },
          });
        }
      }
    });
  }
});
