/**
 * The law of EPT (DESIGN.md): for random guest page tables and a random p2m, the two-dimensional
 * translation of any linear address equals the guest's own walk composed with the p2m, and the
 * faults agree: a guest #PF where the guest's walk faults, an EPT violation (with the right GPA
 * and qualification) where the p2m refuses a guest table read or the final access.
 *
 * The reference side knows nothing of EPT tables or caches: it runs the @vtlab/arch walker over
 * guest-physical memory read through the model p2m, then applies the model's permissions.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  Access,
  MachineMemory,
  PTE_A,
  PTE_D,
  PTE_HI_XD,
  PTE_P,
  PTE_RW,
  PTE_US,
  pagingMode,
  walk,
  type PagingLevel,
  type PagingMode,
  type PagingStructureAccess,
  type U64,
  type Mfn,
} from "@vtlab/arch";
import { EPT_GLA_FAULT, EPT_GLA_VALID, EPT_R, EPT_RWX, EPT_W, EPT_X, EptGuestMemory, EptP2m, GuestPageTables, NestedWalker, eptAccessOf, isP2mError, type CacheSwitches } from "@vtlab/mmu-ept";
import { SimpleFrameAllocator } from "@vtlab/p2m";
import { GiB, TABLE_FRAMES_AT } from "./fixture.js";

const GP_SIZE = 8 * 1024 * 1024; // guest-physical space: 2048 frames, four 2 MiB regions
const HOST_BASE = 4 * GiB; // host-physical = HOST_BASE + guest-physical
const PERMS = [0, EPT_R, EPT_R | EPT_W, EPT_R | EPT_X, EPT_RWX, EPT_X] as const;

function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

interface Scenario {
  readonly seed: number;
  readonly eptLevels: 4 | 5;
  readonly guestLevels: 4 | 5;
  readonly accessedDirty: boolean;
  readonly largeRegions: readonly boolean[];
  readonly switches: CacheSwitches;
  readonly mode: { nxe: boolean; wp: boolean; smep: boolean; smap: boolean; ac: boolean };
}

const scenario: fc.Arbitrary<Scenario> = fc.record({
  seed: fc.integer({ min: 1, max: 0x7fff_ffff }),
  eptLevels: fc.constantFrom(4 as const, 5 as const),
  guestLevels: fc.constantFrom(4 as const, 5 as const),
  accessedDirty: fc.boolean(),
  largeRegions: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
  switches: fc.record({ tlb: fc.boolean(), nestedTlb: fc.boolean(), guestPsc: fc.boolean(), eptPsc: fc.boolean() }),
  mode: fc.record({ nxe: fc.boolean(), wp: fc.boolean(), smep: fc.boolean(), smap: fc.boolean(), ac: fc.boolean() }),
});

interface World {
  walker: NestedWalker;
  /** Model p2m permissions per guest frame (0 beyond the space). */
  perm: (gfn: number) => number;
  reference: PagingStructureAccess<never>;
  root: number;
  mode: PagingMode;
  queries: { gva: number; access: number }[];
  accessedDirty: boolean;
}

function build(s: Scenario): World {
  const rand = xorshift(s.seed);
  const memory = new MachineMemory(64 * GiB);
  const frames = new SimpleFrameAllocator(memory, TABLE_FRAMES_AT as Mfn, 4096);
  const ept = EptP2m.create({ memory, frames, levels: s.eptLevels }) as EptP2m;

  // The model p2m: per 2 MiB region either one large page or 4 KiB pages, each with permissions.
  const perms = new Uint8Array(GP_SIZE / 4096);
  for (let region = 0; region < 4; region++) {
    const base = region * 0x20_0000;
    if (s.largeRegions[region]) {
      const p = rand() % 2 === 0 ? EPT_RWX : (PERMS[rand() % PERMS.length] as number);
      perms.fill(p, base / 4096, base / 4096 + 512);
    } else {
      for (let i = 0; i < 512; i++) perms[base / 4096 + i] = PERMS[rand() % PERMS.length] as number;
    }
  }
  // Guest tables are written through a fully mapped EPT, then the model's permissions applied.
  const all = ept.map(0, HOST_BASE, GP_SIZE, { maxPageShift: 21 });
  if (isP2mError(all)) throw new Error(all.message);
  const guest = new EptGuestMemory(memory, ept);
  const used = new Set<number>();
  const tableFrames: number[] = [];
  const frame = (): number => {
    for (;;) {
      const f = rand() % (GP_SIZE / 4096);
      if (!used.has(f)) {
        used.add(f);
        return f;
      }
    }
  };
  const tables = new GuestPageTables(
    guest,
    () => {
      const f = frame();
      tableFrames.push(f);
      return f * 4096;
    },
    s.guestLevels,
  );

  // Guest mappings: 4 KiB pages and a few 2 MiB pages in a small cluster of the linear space.
  const gvas: number[] = [];
  const top = s.guestLevels === 5 ? 2 ** 48 : 0; // exercise the PML5 index too (stays below 2^53)
  for (let i = 0; i < 24; i++) {
    const gva = top * (rand() % 2) + (rand() % 4) * 2 ** 39 + (rand() % 2) * 2 ** 30 + (rand() % 3) * 2 ** 21 + (rand() % 8) * 4096;
    const flags = (rand() % 10 !== 0 ? PTE_P : 0) | (rand() % 2 ? PTE_RW : 0) | (rand() % 2 ? PTE_US : 0) | PTE_A | PTE_D;
    const hi = (rand() % 3 === 0 ? PTE_HI_XD : 0) | (rand() % 20 === 0 ? 1 << 19 : 0); // XD; bit 51 (reserved)
    const gpa = rand() % 8 === 0 ? GP_SIZE + (rand() % 16) * 4096 : (rand() % (GP_SIZE / 4096)) * 4096; // some beyond the space
    tables.map(gva, gpa, 12, flags, hi);
    gvas.push(gva);
  }
  for (let i = 0; i < 3; i++) {
    const gva = (4 + i) * 2 ** 39 + 2 * 2 ** 30 + (rand() % 512) * 2 ** 21;
    tables.map(gva, (rand() % 4) * 0x20_0000, 21, PTE_P | PTE_RW | (rand() % 2 ? PTE_US : 0) | PTE_A | PTE_D);
    gvas.push(gva + (rand() % 512) * 4096);
  }
  // Upper-level rights vary too; every present entry gets A (and D) so no walk writes.
  const e: U64 = { lo: 0, hi: 0 };
  for (const f of tableFrames) {
    for (let i = 0; i < 512; i++) {
      const at = f * 4096 + i * 8;
      guest.read64(at, e);
      if ((e.lo & PTE_P) === 0) continue;
      let lo = e.lo | PTE_A | PTE_D;
      if (rand() % 8 === 0) lo &= ~PTE_RW;
      if (rand() % 8 === 0) lo &= ~PTE_US;
      guest.write64(at, lo >>> 0, e.hi);
    }
  }
  // Guest table frames are mostly fully accessible, so that walks get far enough to be interesting.
  for (const f of tableFrames) {
    if (!s.largeRegions[Math.floor(f / 512)] && rand() % 8 !== 0) perms[f] = EPT_RWX;
  }
  // Now give EPT the model's permissions (4 KiB leaves where the region is small).
  for (let region = 0; region < 4; region++) {
    const base = region * 0x20_0000;
    if (!s.largeRegions[region]) ept.splitRange(base, 0x20_0000, 1);
    const step = s.largeRegions[region] ? 0x20_0000 : 4096;
    for (let a = base; a < base + 0x20_0000; a += step) {
      const p = perms[a / 4096] as number;
      if (p === 0) ept.unmap(a, step);
      else ept.protect(a, step, p);
    }
  }

  const walker = new NestedWalker(memory, { switches: s.switches });
  const eptp = ept.eptp(s.accessedDirty);
  const bad = walker.setEptp(eptp.lo, eptp.hi);
  if (bad !== undefined) throw new Error(bad.message);
  const mode = pagingMode({ la57: s.guestLevels === 5, ...s.mode });
  walker.setGuestContext(tables.root, mode);

  const reference: PagingStructureAccess<never> = {
    readEntry(address: number, _level: PagingLevel, out: U64) {
      if (address < GP_SIZE) memory.read64(HOST_BASE + address, out);
      else out.lo = out.hi = 0;
      return undefined;
    },
    setEntryBits() {
      throw new Error("the reference walk must not write: every entry has A and D");
    },
  };

  const queries: { gva: number; access: number }[] = [];
  const kinds = [Access.Read, Access.Write, Access.Fetch];
  for (const gva of gvas) {
    for (let i = 0; i < 3; i++) {
      const access = (kinds[rand() % 3] as number) | (rand() % 2 ? Access.User : 0);
      queries.push({ gva: gva + (rand() % 4096), access });
    }
    queries.push({ gva: gva + 4096 * (1 + (rand() % 4)), access: Access.Read }); // neighbours, often unmapped
  }
  return { walker, perm: (g) => (g < perms.length ? (perms[g] as number) : 0), reference, root: tables.root, mode, queries, accessedDirty: s.accessedDirty };
}

type Expected =
  | { kind: "translation"; gpa: number; hpa: number }
  | { kind: "page-fault"; errorCode: number }
  | { kind: "ept-violation"; gpa: number; qualification: number };

function expectedOutcome(w: World, gva: number, access: number): Expected {
  const ideal = walk(w.root, gva, access, w.mode, w.reference);
  const need = w.accessedDirty ? EPT_R | EPT_W : EPT_R;
  for (const step of ideal.steps) {
    const p = w.perm(Math.floor(step.address / 4096));
    if ((p & need) !== need) return { kind: "ept-violation", gpa: step.address, qualification: need | (p << 3) | EPT_GLA_VALID };
  }
  if (ideal.kind === "page-fault") return { kind: "page-fault", errorCode: ideal.errorCode };
  if (ideal.kind !== "translation") throw new Error("unreachable");
  const gpa = ideal.physicalAddress;
  const p = w.perm(Math.floor(gpa / 4096));
  const eacc = eptAccessOf(access);
  if ((eacc & ~p) !== 0) return { kind: "ept-violation", gpa, qualification: eacc | (p << 3) | EPT_GLA_VALID | EPT_GLA_FAULT };
  return { kind: "translation", gpa, hpa: HOST_BASE + gpa };
}

function actualOutcome(w: World, gva: number, access: number): Expected | { kind: "ept-misconfig" } {
  const out = w.walker.walk(gva, access);
  if (out.kind === "translation") return { kind: "translation", gpa: out.gpa, hpa: out.hpa };
  if (out.kind === "page-fault") return { kind: "page-fault", errorCode: out.errorCode };
  if (out.fault.kind === "ept-misconfig") return { kind: "ept-misconfig" };
  return { kind: "ept-violation", gpa: out.fault.gpa, qualification: out.fault.qualification };
}

describe("EPT translation = guest walk composed with the p2m (fast-check)", () => {
  it("for random guest tables, p2m, modes and caches, translations and faults agree, twice over", () => {
    let translations = 0;
    let pageFaults = 0;
    let violations = 0;
    fc.assert(
      fc.property(scenario, (s) => {
        const w = build(s);
        for (const q of w.queries) {
          const expected = expectedOutcome(w, q.gva, q.access);
          for (let round = 0; round < 2; round++) {
            const actual = actualOutcome(w, q.gva, q.access);
            expect(actual, `gva 0x${q.gva.toString(16)} access ${q.access} round ${round}`).toEqual(expected);
          }
          if (expected.kind === "translation") translations++;
          else if (expected.kind === "page-fault") pageFaults++;
          else violations++;
        }
      }),
      { numRuns: 120 },
    );
    // The generator reaches every outcome often.
    expect(translations).toBeGreaterThan(500);
    expect(pageFaults).toBeGreaterThan(500);
    expect(violations).toBeGreaterThan(500);
  });
});
