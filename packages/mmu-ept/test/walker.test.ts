import { describe, expect, it } from "vitest";
import { Access, PFEC_P, PFEC_WR, PTE_A, PTE_D, PTE_G, PTE_P, PTE_RW, PTE_US, pagingMode } from "@vtlab/arch";
import { EptAccess, GuestReference, VmInstructionError } from "@vtlab/cpu-vmx";
import {
  ALL_CACHES,
  EPT_A,
  EPT_EFFECTIVE_EXEC,
  EPT_EFFECTIVE_READ,
  EPT_EXEC_VIOLATION,
  EPT_GLA_FAULT,
  EPT_GLA_VALID,
  EPT_R,
  EPT_READ_VIOLATION,
  EPT_RWX,
  EPT_W,
  EPT_WRITE_VIOLATION,
  EPT_X,
  EptMisconfigReason,
  InveptType,
  NO_CACHES,
  coldWalkReferences,
  makeEptEntry,
  type EptFault,
  type NestedWalkOutcome,
} from "@vtlab/mmu-ept";
import { GiB, HOST_OFFSET, expectDefined, machine, read64 } from "./fixture.js";

const GVA = 0x7f12_3456_7000;
const DATA_GPA = 0x2000_0000; // 512 MiB
const FLAGS = PTE_P | PTE_RW | PTE_US;

function translation(out: NestedWalkOutcome) {
  if (out.kind !== "translation") throw new Error(`expected a translation, got ${JSON.stringify(out)}`);
  return out;
}

function eptFault(out: NestedWalkOutcome): EptFault {
  if (out.kind !== "ept-fault") throw new Error(`expected an EPT fault, got ${JSON.stringify(out)}`);
  return out.fault;
}

describe("the two-dimensional walk: memory references", () => {
  it("a cold 4-level guest walk over 4-level EPT makes 24 references: 4 guest + 5 x 4 EPT", () => {
    const m = machine({ switches: NO_CACHES });
    m.tables.map(GVA, DATA_GPA);
    const t = translation(m.walker.walk(GVA + 0x123, Access.Read));
    expect(t).toMatchObject({ gpa: DATA_GPA + 0x123, hpa: HOST_OFFSET + DATA_GPA + 0x123, references: 24, guestReferences: 4, eptReferences: 20 });
  });

  it("(n+1)(m+1)-1: 29 for 5-level over 4-level and 4 over 5, 35 for 5 over 5; large pages shorten both dimensions", () => {
    expect(coldWalkReferences({ guestLevels: 4, eptLevels: 4 })).toBe(24);
    expect(coldWalkReferences({ guestLevels: 5, eptLevels: 4 })).toBe(29);
    expect(coldWalkReferences({ guestLevels: 4, eptLevels: 5 })).toBe(29);
    expect(coldWalkReferences({ guestLevels: 5, eptLevels: 5 })).toBe(35);
    expect(coldWalkReferences({ guestPageShift: 21 })).toBe(19); // 3 guest entries: 3 x 5 + 4
    expect(coldWalkReferences({ eptPageShift: 21 })).toBe(19); // 4 x (3 + 1) + 3
    expect(coldWalkReferences({ guestPageShift: 21, eptPageShift: 21 })).toBe(15);
    expect(coldWalkReferences({ guestPageShift: 30, eptPageShift: 30 })).toBe(8);
  });

  it("a TLB hit makes none; the guest PSC leaves 1 guest read + the final EPT walk; the EPT PSC leaves 1 EPT read per GPA", () => {
    const m = machine({ switches: NO_CACHES });
    for (let i = 0; i < 4; i++) m.tables.map(GVA + i * 0x1000, DATA_GPA + i * 0x1000);
    const w = m.walker;
    w.caches.set({ tlb: true });
    expect(translation(w.walk(GVA, Access.Read)).references).toBe(24);
    expect(translation(w.walk(GVA + 8, Access.Read))).toMatchObject({ references: 0, tlbHit: true });
    w.caches.set({ tlb: false, guestPsc: true });
    w.walk(GVA, Access.Read);
    expect(translation(w.walk(GVA + 0x1000, Access.Read))).toMatchObject({ references: 5, guestReferences: 1, eptReferences: 4 });
    w.caches.set({ guestPsc: false, eptPsc: true });
    w.walk(GVA, Access.Read);
    // Guest tables (from 1 MiB) and data (at 512 MiB) each sit in a 2 MiB region whose EPT PDE is
    // now cached: every GPA translation reads only its EPT PTE.
    expect(translation(w.walk(GVA + 0x2000, Access.Read))).toMatchObject({ references: 4 + 5, guestReferences: 4, eptReferences: 5 });
    w.caches.set({ eptPsc: false, nestedTlb: true });
    w.walk(GVA, Access.Read);
    // Guest table frames hit the nested TLB; only the new data frame walks EPT.
    expect(translation(w.walk(GVA + 0x3000, Access.Read))).toMatchObject({ references: 4 + 4, eptReferences: 4 });
    const s = w.caches.stats();
    expect(s.tlb.hits).toBeGreaterThan(0);
    expect(s.guestPsc.hits).toBeGreaterThan(0);
    expect(s.eptPsc.hits).toBeGreaterThan(0);
    expect(s.nestedTlb.hits).toBe(4);
  });

  it("counts add up across translations", () => {
    const m = machine({ switches: NO_CACHES });
    m.tables.map(GVA, DATA_GPA);
    for (let i = 0; i < 3; i++) m.walker.walk(GVA, Access.Read);
    expect(m.walker.totalReferences).toBe(72);
    expect(m.walker.totalGuestReferences + m.walker.totalEptReferences).toBe(72);
    expect(m.walker.walks).toBe(3);
    expect(m.walker.ept.walks).toBe(15);
  });
});

describe("EPT violations and their qualification", () => {
  it("a final access the leaf refuses: access bits, the entry's R/W/X, linear valid, final, GPA", () => {
    const m = machine({ switches: NO_CACHES });
    m.tables.map(GVA, DATA_GPA);
    m.ept.protect(DATA_GPA, 0x1000, EPT_R | EPT_X);
    translation(m.walker.walk(GVA, Access.Read));
    const f = eptFault(m.walker.walk(GVA + 0x10, Access.Write));
    expect(f).toMatchObject({ kind: "ept-violation", gpa: DATA_GPA + 0x10, level: 1, reference: GuestReference.Final });
    expect(f.kind === "ept-violation" && f.qualification).toBe(EPT_WRITE_VIOLATION | EPT_EFFECTIVE_READ | EPT_EFFECTIVE_EXEC | EPT_GLA_VALID | EPT_GLA_FAULT);
    translation(m.walker.walk(GVA, Access.Fetch)); // R and X allow a fetch
    m.ept.protect(DATA_GPA, 0x1000, EPT_R);
    m.walker.invept(InveptType.AllContext);
    expect(eptFault(m.walker.walk(GVA, Access.Fetch))).toMatchObject({ qualification: EPT_EXEC_VIOLATION | EPT_EFFECTIVE_READ | EPT_GLA_VALID | EPT_GLA_FAULT });
  });

  it("a not-present entry: bits 5:3 are 0, and the level says which entry", () => {
    const m = machine({ switches: NO_CACHES });
    m.tables.map(GVA, 3 * GiB); // beyond the 1 GiB EPT maps: the EPT PDPTE for 3 GiB is not present
    const f = eptFault(m.walker.walk(GVA, Access.Read));
    expect(f).toMatchObject({ gpa: 3 * GiB, level: 3, qualification: EPT_READ_VIOLATION | EPT_GLA_VALID | EPT_GLA_FAULT });
    expect(m.walker.walk(GVA, Access.Read).references).toBe(4 * 5 + 2);
  });

  it("a guest paging-structure read refused: bit 8 clear, the GPA is the entry's", () => {
    const m = machine({ switches: NO_CACHES });
    m.tables.map(GVA, DATA_GPA);
    const pdGpa = expectDefined(m.tables.entryFor(GVA, 2)) as number; // the guest PDE's address
    m.ept.unmap(pdGpa - (pdGpa % 0x1000), 0x1000);
    const f = eptFault(m.walker.walk(GVA, Access.Write));
    expect(f).toMatchObject({ gpa: pdGpa, reference: GuestReference.PagingStructure, qualification: EPT_READ_VIOLATION | EPT_GLA_VALID });
    expect(m.walker.faultLevel).toBe(2);
  });

  it("with EPT A/D on, guest paging-structure reads are writes: a read-only guest table faults with bits 0 and 1 (SDM Table 28-7 note)", () => {
    const noAd = machine({ switches: NO_CACHES, accessedDirty: false });
    const ad = machine({ switches: NO_CACHES, accessedDirty: true });
    for (const m of [noAd, ad]) {
      m.tables.map(GVA, DATA_GPA, 12, FLAGS | PTE_A | PTE_D);
      m.ept.protect(m.tables.root, 0x1000, EPT_R | EPT_X); // the guest PML4 page is read-only in EPT
      // Pre-set A on the upper guest entries so the walk writes nothing.
      for (let l = 4; l >= 2; l--) {
        const at = m.tables.entryFor(GVA, l) as number;
        const e = { lo: 0, hi: 0 };
        m.guest.read64(at, e);
        m.guest.write64(at, e.lo | PTE_A, e.hi);
      }
    }
    expect(translation(noAd.walker.walk(GVA, Access.Read)).references).toBe(24);
    const f = eptFault(ad.walker.walk(GVA, Access.Read));
    expect(f).toMatchObject({ gpa: ad.tables.entryFor(GVA, 4), qualification: EPT_READ_VIOLATION | EPT_WRITE_VIOLATION | EPT_EFFECTIVE_READ | EPT_EFFECTIVE_EXEC | EPT_GLA_VALID });
  });

  it("without EPT A/D, the guest's own A/D update is a write: a read-only guest table faults on it, bit 1 only, bit 8 clear", () => {
    const m = machine({ switches: NO_CACHES, accessedDirty: false });
    m.tables.map(GVA, DATA_GPA); // no A bits yet
    const pteGpa = m.tables.entryFor(GVA, 1) as number;
    m.ept.protect(pteGpa - (pteGpa % 0x1000), 0x1000, EPT_R);
    const f = eptFault(m.walker.walk(GVA, Access.Read));
    expect(f).toMatchObject({ gpa: pteGpa, reference: GuestReference.PagingStructure, qualification: EPT_WRITE_VIOLATION | EPT_EFFECTIVE_READ | EPT_GLA_VALID });
  });

  it("a violation invalidates the cached mappings of its address (SDM 29.4.3.1)", () => {
    const m = machine({ switches: { ...NO_CACHES, nestedTlb: true, eptPsc: true } });
    m.ept.protect(DATA_GPA, 0x1000, EPT_R);
    m.walker.invept(InveptType.AllContext);
    expect(m.walker.translate(DATA_GPA, EptAccess.Read, GuestReference.Final)).toBe(HOST_OFFSET + DATA_GPA);
    const gfn = DATA_GPA / 0x1000;
    const caches = m.walker.caches;
    expect(caches.nestedTlb.peek(gfn, m.ept.root)).toBeGreaterThanOrEqual(0);
    expect(caches.eptPsc[2]!.peek(gfn / 512, m.ept.root)).toBeGreaterThanOrEqual(0);
    // The cached mapping does not allow a write: the processor walks, and the walk faults.
    expect(m.walker.translate(DATA_GPA, EptAccess.Write, GuestReference.Final)).toMatchObject({ kind: "ept-violation", qualification: EPT_WRITE_VIOLATION | EPT_EFFECTIVE_READ | EPT_GLA_VALID | EPT_GLA_FAULT });
    expect(caches.nestedTlb.peek(gfn, m.ept.root)).toBe(-1);
    expect(caches.eptPsc[2]!.peek(gfn / 512, m.ept.root)).toBe(-1);
  });

  it("changes without INVEPT leave stale translations in use (why p2m changes flush)", () => {
    const m = machine({ switches: ALL_CACHES });
    m.tables.map(GVA, DATA_GPA, 12, FLAGS | PTE_A | PTE_D);
    translation(m.walker.walk(GVA, Access.Read));
    m.ept.protect(DATA_GPA, 0x1000, EPT_R);
    expect(translation(m.walker.walk(GVA, Access.Write)).tlbHit).toBe(true); // stale: W still cached
    const p = m.ept.eptp();
    m.walker.invept(InveptType.SingleContext, p.lo, p.hi);
    expect(eptFault(m.walker.walk(GVA, Access.Write))).toMatchObject({ kind: "ept-violation" });
  });
});

describe("EPT misconfigurations through the walk", () => {
  it("W without R, a reserved memory type, reserved bits: exit 49's GPA with the entry at fault", () => {
    const m = machine({ switches: NO_CACHES });
    m.tables.map(GVA, DATA_GPA);
    const leaf = expectDefined(m.ept.lookup(DATA_GPA));
    const orig = read64(m.memory, leaf.entryAddress);
    const cases: [number, number, number][] = [
      [(orig.lo & ~EPT_RWX) | EPT_W, orig.hi, EptMisconfigReason.WriteWithoutRead],
      [(orig.lo & ~0x38) | (7 << 3), orig.hi, EptMisconfigReason.MemoryType],
      [orig.lo, orig.hi | (1 << 15), EptMisconfigReason.ReservedBit],
    ];
    for (const [lo, hi, reason] of cases) {
      m.memory.write64(leaf.entryAddress, lo >>> 0, hi >>> 0);
      const f = eptFault(m.walker.walk(GVA + 4, Access.Read));
      expect(f).toMatchObject({ kind: "ept-misconfig", gpa: DATA_GPA + 4, level: 1, reason });
    }
    // A misconfiguration wins over the permission check: the walk reads the entry before using it.
    m.memory.write64(leaf.entryAddress, (orig.lo & ~EPT_RWX) | EPT_W | EPT_X, orig.hi);
    expect(eptFault(m.walker.walk(GVA, Access.Fetch)).kind).toBe("ept-misconfig");
  });

  it("a table pointer beyond machine memory reads as all ones: a misconfiguration", () => {
    const m = machine({ switches: NO_CACHES });
    const pml4e = m.ept.inspect(0)[0]!;
    const bad = makeEptEntry(63 * GiB + 0xfff000 + 2 * GiB, EPT_RWX); // 65 GiB: beyond the 64 GiB machine
    m.memory.write64(pml4e.address, bad.lo, bad.hi);
    expect(m.walker.translate(0x1000, EptAccess.Read, GuestReference.Final)).toMatchObject({ kind: "ept-misconfig", level: 3 });
  });
});

describe("EPT accessed and dirty flags (SDM 29.3.5)", () => {
  it("A on every EPT entry used, D on the leaf of a written page and of every guest table page (reads count as writes)", () => {
    const m = machine({ switches: NO_CACHES, accessedDirty: true });
    m.tables.map(GVA, DATA_GPA);
    translation(m.walker.walk(GVA, Access.Read));
    const data = expectDefined(m.ept.lookup(DATA_GPA));
    expect(data).toMatchObject({ accessed: true, dirty: false });
    for (const s of m.ept.inspect(DATA_GPA)) expect(s.lo & EPT_A).toBe(EPT_A);
    for (let l = 4; l >= 1; l--) {
      const at = m.tables.entryFor(GVA, l) as number;
      expect(m.ept.lookup(at)).toMatchObject({ accessed: true, dirty: true });
    }
    translation(m.walker.walk(GVA, Access.Write));
    expect(m.ept.lookup(DATA_GPA)).toMatchObject({ dirty: true });
  });

  it("without EPTP bit 6 nothing is written", () => {
    const m = machine({ switches: NO_CACHES, accessedDirty: false });
    m.tables.map(GVA, DATA_GPA);
    translation(m.walker.walk(GVA, Access.Write));
    expect(m.ept.lookup(DATA_GPA)).toMatchObject({ accessed: false, dirty: false });
    expect(m.walker.ept.adWrites).toBe(0);
  });

  it("a cached translation without D walks again on a write to set it; after the D flag is cleared, only INVEPT makes the next write set it again", () => {
    const m = machine({ switches: ALL_CACHES, accessedDirty: true });
    m.tables.map(GVA, DATA_GPA, 12, FLAGS | PTE_A | PTE_D);
    translation(m.walker.walk(GVA, Access.Read));
    expect(translation(m.walker.walk(GVA, Access.Write)).tlbHit).toBe(false);
    expect(m.ept.lookup(DATA_GPA)?.dirty).toBe(true);
    expect(translation(m.walker.walk(GVA, Access.Write)).tlbHit).toBe(true);
    m.ept.clearDirty(DATA_GPA, 0x1000, () => undefined);
    translation(m.walker.walk(GVA, Access.Write)); // stale TLB entry: the write goes unseen
    expect(m.ept.lookup(DATA_GPA)?.dirty).toBe(false);
    const eptp = m.ept.eptp(true);
    expect(m.walker.invept(InveptType.SingleContext, eptp.lo, eptp.hi)).toBeUndefined();
    translation(m.walker.walk(GVA, Access.Write));
    expect(m.ept.lookup(DATA_GPA)?.dirty).toBe(true);
  });
});

describe("INVEPT and the guest-side invalidations", () => {
  it("single-context drops only that EP4TA's mappings; all-context drops everything", () => {
    const m = machine({ switches: ALL_CACHES });
    m.tables.map(GVA, DATA_GPA);
    const a = m.ept.eptp();
    translation(m.walker.walk(GVA, Access.Read));
    const gfn = DATA_GPA / 0x1000;
    const root = m.ept.root;
    m.walker.caches.nestedTlb.fill(gfn, 0xdead_0000); // a mapping tagged with another EP4TA
    expect(m.walker.invept(InveptType.SingleContext, a.lo, a.hi)).toBeUndefined();
    expect(m.walker.caches.nestedTlb.peek(gfn, root)).toBe(-1);
    expect(m.walker.caches.tlb.occupancy).toBe(0);
    expect(m.walker.caches.nestedTlb.peek(gfn, 0xdead_0000)).toBeGreaterThanOrEqual(0);
    expect(m.walker.invept(InveptType.AllContext)).toBeUndefined();
    expect(m.walker.caches.nestedTlb.occupancy).toBe(0);
  });

  it("an unsupported type or an invalid EPTP fails with VM-instruction error 28", () => {
    const m = machine();
    expect(m.walker.invept(3)).toMatchObject({ kind: "vmfail-valid", error: VmInstructionError.InvalidInveptInvvpidOperand });
    expect(m.walker.invept(InveptType.SingleContext, 0x1001, 0)).toMatchObject({ error: 28 });
    const strict = machine({ caps: { inveptSingleContext: false } });
    const p = strict.ept.eptp();
    expect(strict.walker.invept(InveptType.SingleContext, p.lo, p.hi)).toMatchObject({ error: 28 });
  });

  it("INVLPG drops the page's combined translation; a new CR3 drops all but global ones", () => {
    const m = machine({ switches: ALL_CACHES });
    m.tables.map(GVA, DATA_GPA);
    m.tables.map(GVA + 0x1000, DATA_GPA + 0x1000, 12, FLAGS | PTE_G);
    const mode = pagingMode({ pge: true });
    m.walker.setGuestContext(m.tables.root, mode);
    translation(m.walker.walk(GVA, Access.Read));
    translation(m.walker.walk(GVA + 0x1000, Access.Read));
    m.walker.invalidateLinear(GVA);
    expect(translation(m.walker.walk(GVA, Access.Read)).tlbHit).toBe(false);
    m.walker.setGuestContext(m.tables.root + 0x10_0000, mode); // another address space
    expect(translation(m.walker.walk(GVA + 0x1000, Access.Read)).tlbHit).toBe(true);
    m.walker.setGuestContext(m.tables.root, mode);
    expect(translation(m.walker.walk(GVA, Access.Read)).tlbHit).toBe(false);
  });

  it("guest page faults come back with the guest's error code and are not cached", () => {
    const m = machine({ switches: ALL_CACHES });
    m.tables.map(GVA, DATA_GPA, 12, PTE_P | PTE_US); // read-only
    expect(m.walker.walk(GVA, Access.Write)).toMatchObject({ kind: "page-fault", errorCode: PFEC_P | PFEC_WR, level: 0 });
    expect(m.walker.walk(GVA + 0x1000, Access.Read)).toMatchObject({ kind: "page-fault", errorCode: 0, level: 1 });
    translation(m.walker.walk(GVA, Access.Read));
    expect(m.walker.walk(GVA, Access.Write)).toMatchObject({ kind: "page-fault" }); // the TLB entry does not allow it
    expect(m.walker.pageFaults).toBe(3);
  });

  it("paging off: the linear address is the guest-physical address, only EPT is walked", () => {
    const m = machine({ switches: NO_CACHES });
    m.walker.setGuestContext(0, m.mode, false);
    expect(translation(m.walker.walk(DATA_GPA + 5, Access.Read))).toMatchObject({ gpa: DATA_GPA + 5, hpa: HOST_OFFSET + DATA_GPA + 5, references: 4 });
  });

  it("SecondLevelTranslator: translate() reports lastReferences", () => {
    const m = machine({ switches: NO_CACHES });
    expect(m.walker.translate(DATA_GPA + 8, EptAccess.Write, GuestReference.Final)).toBe(HOST_OFFSET + DATA_GPA + 8);
    expect(m.walker.lastReferences).toBe(4);
    expect(m.walker.translate(5 * GiB, EptAccess.Read, GuestReference.PagingStructure)).toMatchObject({ kind: "ept-violation", gpa: 5 * GiB, qualification: EPT_READ_VIOLATION | EPT_GLA_VALID });
    const big = machine({ switches: NO_CACHES, eptPageShift: 30 });
    expect(big.walker.translate(0x1234_5678, EptAccess.Read, GuestReference.Final)).toBe(HOST_OFFSET + 0x1234_5678);
    expect(big.walker.lastReferences).toBe(2);
  });
});
