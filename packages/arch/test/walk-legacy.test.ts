/**
 * 32-bit paging (SDM Vol. 3A 4.3) and PAE paging (4.4) in the one generic walker, checked against
 * an independent per-level model written from the SDM's tables with BigInt entries (a different
 * representation from the walker's 32-bit halves), over random page tables (fast-check, seeded):
 * the outcome (address, page size, fault and error code) and every accessed/dirty flag written.
 * Also the PDPTE-register load with its #GP rule (4.4.1).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  Access,
  MachineMemory,
  PagingFormat,
  PdpteLoadStatus,
  PhysicalPagingStructures,
  WalkResult,
  WalkStatus,
  loadPaePdptes,
  pagingMode,
  walkLinear,
  type MemoryError,
  type PagingMode,
} from "@vtlab/arch";

const MEM = 1 << 20;

/** What a walk did, as the model reports it. */
type Outcome = { kind: "ok"; pa: number; shift: number } | { kind: "pf"; ec: number };

interface ModelMode {
  wp: boolean;
  pse: boolean;
  pge: boolean;
  smep: boolean;
  smap: boolean;
  ac: boolean;
  nxe: boolean;
  maxPhyAddr: number;
}

const bit = (v: bigint, n: number): boolean => ((v >> BigInt(n)) & 1n) === 1n;
const bits = (v: bigint, hi: number, lo: number): bigint => (v >> BigInt(lo)) & ((1n << BigInt(hi - lo + 1)) - 1n);

/** SDM 4.6 and 4.7 in one place, from the leaf's combined R/W, U/S and XD. */
function rightsFault(m: ModelMode, access: number, rw: boolean, us: boolean, xd: boolean, paeOrLong: boolean): number | undefined {
  const write = (access & Access.Write) !== 0;
  const user = (access & Access.User) !== 0;
  const fetch = (access & Access.Fetch) !== 0;
  let ok: boolean;
  if (user) ok = us && (fetch ? !(xd && m.nxe && paeOrLong) : !write || rw);
  else if (fetch) ok = !(us && m.smep) && !(xd && m.nxe && paeOrLong);
  else ok = !(us && m.smap && !m.ac) && (!write || rw || !m.wp);
  return ok ? undefined : 1 | errorBits(m, access, paeOrLong);
}

function errorBits(m: ModelMode, access: number, paeOrLong: boolean): number {
  let ec = 0;
  if ((access & Access.Write) !== 0) ec |= 2;
  if ((access & Access.User) !== 0) ec |= 4;
  if ((access & Access.Fetch) !== 0 && (m.smep || (paeOrLong && m.nxe))) ec |= 16;
  return ec;
}

/** Memory of the model: 32-bit words, little-endian, as BigInt entries are assembled from them. */
class ModelMemory {
  constructor(readonly words: Map<number, number>) {}
  read32(a: number): bigint {
    return BigInt(this.words.get(a) ?? 0) & 0xffff_ffffn;
  }
  read64(a: number): bigint {
    return this.read32(a) | (this.read32(a + 4) << 32n);
  }
  or32(a: number, v: number): void {
    this.words.set(a, ((this.words.get(a) ?? 0) | v) >>> 0);
  }
}

/** SDM 4.3: 32-bit paging, entries 4 bytes, PSE 4 MiB pages with PSE-36. */
function model32(mem: ModelMemory, m: ModelMode, cr3: number, va: number, access: number): Outcome {
  const pdeAt = (cr3 & 0xffff_f000) + (va >>> 22) * 4;
  const pde = mem.read32(pdeAt);
  if (!bit(pde, 0)) return { kind: "pf", ec: errorBits(m, access, false) };
  if (m.pse && bit(pde, 7)) {
    const m40 = Math.min(m.maxPhyAddr, 40);
    if (bit(pde, 21) || bits(pde, 20, 13) >> BigInt(m40 - 32) !== 0n) return { kind: "pf", ec: 1 | 8 | errorBits(m, access, false) };
    const f = rightsFault(m, access, bit(pde, 1), bit(pde, 2), false, false);
    if (f !== undefined) return { kind: "pf", ec: f };
    mem.or32(pdeAt, (access & Access.Write) !== 0 ? 0x60 : 0x20);
    const pa = (bits(pde, 20, 13) << 32n) | (bits(pde, 31, 22) << 22n) | BigInt(va & 0x3f_ffff);
    return { kind: "ok", pa: Number(pa), shift: 22 };
  }
  const pteAt = Number(bits(pde, 31, 12) << 12n) + ((va >>> 12) & 0x3ff) * 4;
  const pte = mem.read32(pteAt);
  if (!bit(pte, 0)) return { kind: "pf", ec: errorBits(m, access, false) };
  const f = rightsFault(m, access, bit(pde, 1) && bit(pte, 1), bit(pde, 2) && bit(pte, 2), false, false);
  if (f !== undefined) return { kind: "pf", ec: f };
  mem.or32(pdeAt, 0x20);
  mem.or32(pteAt, (access & Access.Write) !== 0 ? 0x60 : 0x20);
  return { kind: "ok", pa: Number((bits(pte, 31, 12) << 12n) | BigInt(va & 0xfff)), shift: 12 };
}

/** SDM 4.4: PAE paging from the PDPTE registers; PDEs and PTEs are 8 bytes. */
function modelPae(mem: ModelMemory, m: ModelMode, pdptes: bigint[], va: number, access: number): Outcome {
  const pdpte = pdptes[va >>> 30]!;
  if (!bit(pdpte, 0)) return { kind: "pf", ec: errorBits(m, access, true) };
  const maxAddr = (1n << BigInt(m.maxPhyAddr)) - 1n;
  const reserved = (e: bigint, large: boolean): boolean =>
    (bits(e, 51, 12) << 12n & ~maxAddr) !== 0n || (!m.nxe && bit(e, 63)) || (large && bits(e, 20, 13) !== 0n);
  const pdeAt = Number(bits(pdpte, 51, 12) << 12n) + ((va >>> 21) & 0x1ff) * 8;
  const pde = mem.read64(pdeAt);
  if (!bit(pde, 0)) return { kind: "pf", ec: errorBits(m, access, true) };
  const large = bit(pde, 7);
  if (reserved(pde, large)) return { kind: "pf", ec: 1 | 8 | errorBits(m, access, true) };
  if (large) {
    const f = rightsFault(m, access, bit(pde, 1), bit(pde, 2), bit(pde, 63), true);
    if (f !== undefined) return { kind: "pf", ec: f };
    mem.or32(pdeAt, (access & Access.Write) !== 0 ? 0x60 : 0x20);
    return { kind: "ok", pa: Number((bits(pde, 51, 21) << 21n) | BigInt(va & 0x1f_ffff)), shift: 21 };
  }
  const pteAt = Number(bits(pde, 51, 12) << 12n) + ((va >>> 12) & 0x1ff) * 8;
  const pte = mem.read64(pteAt);
  if (!bit(pte, 0)) return { kind: "pf", ec: errorBits(m, access, true) };
  if (reserved(pte, false)) return { kind: "pf", ec: 1 | 8 | errorBits(m, access, true) };
  const f = rightsFault(m, access, bit(pde, 1) && bit(pte, 1), bit(pde, 2) && bit(pte, 2), bit(pde, 63) || bit(pte, 63), true);
  if (f !== undefined) return { kind: "pf", ec: f };
  mem.or32(pdeAt, 0x20);
  mem.or32(pteAt, (access & Access.Write) !== 0 ? 0x60 : 0x20);
  return { kind: "ok", pa: Number((bits(pte, 51, 12) << 12n) | BigInt(va & 0xfff)), shift: 12 };
}

/** Run the walker over the same words and report the same shape. */
function runWalker(words: Map<number, number>, mode: PagingMode, cr3: number, va: number, access: number): { outcome: Outcome; memory: MachineMemory } {
  const memory = new MachineMemory(MEM);
  for (const [a, v] of words) memory.write32(a, v);
  const out = new WalkResult<MemoryError>();
  const status = walkLinear(out, mode, cr3, 0, va >>> 0, access, new PhysicalPagingStructures(memory));
  if (status === WalkStatus.AccessFault) throw new Error("the tables are inside memory");
  const outcome: Outcome = status === WalkStatus.Ok ? { kind: "ok", pa: out.physicalAddress, shift: out.pageShift } : { kind: "pf", ec: out.errorCode };
  return { outcome, memory };
}

const modeArb = fc.record({
  wp: fc.boolean(),
  pse: fc.boolean(),
  pge: fc.boolean(),
  smep: fc.boolean(),
  smap: fc.boolean(),
  ac: fc.boolean(),
  nxe: fc.boolean(),
  maxPhyAddr: fc.constantFrom(36, 39, 40, 46, 52),
});
const accessArb = fc.record({ write: fc.boolean(), user: fc.boolean(), fetch: fc.boolean() }).map(
  (a) => (a.fetch ? Access.Fetch : a.write ? Access.Write : Access.Read) | (a.user ? Access.User : 0),
);
/** Entry flags biased towards present entries, with any of bits 12:1 and the PSE-36 bits. */
const flagsArb = fc.tuple(fc.nat(15), fc.nat(0xfff), fc.nat(0x7ff)).map(([p, low, pse36]) => (p === 0 ? 0 : 1) | (low & 0xffe) | (pse36 << 13));

describe("32-bit paging (2-level, CR4.PSE) agrees with the per-level model", () => {
  it("on random tables: outcome, page size, error code and the A/D flags written", () => {
    fc.assert(
      fc.property(modeArb, accessArb, flagsArb, flagsArb, fc.constantFrom(0, 1, 0x300, 0x3ff), fc.constantFrom(0, 1, 0x200, 0x3ff), fc.nat(0xfff), fc.nat(0x3ff), (mm, access, pdeFlags, pteFlags, pdi, pti, off, big) => {
        const cr3 = 0x1000;
        const pt = pdi % 2 === 0 ? 0x2000 : 0x3000;
        const words = new Map<number, number>();
        // A PDE pointing at the PT (or, as a 4 MiB page, at frame `big` << 22) and a PTE.
        words.set(cr3 + pdi * 4, ((pdeFlags & 0x80) !== 0 && mm.pse ? (big << 22) | pdeFlags : pt | (pdeFlags & 0xfff)) >>> 0);
        words.set(pt + pti * 4, (((off * 0x1000 + 0x5000) & 0xffff_f000) | (pteFlags & 0xfff)) >>> 0);
        const va = ((pdi << 22) | (pti << 12) | off) >>> 0;
        const mode = pagingMode({ ...mm, nxe: false, format: PagingFormat.Bits32 });
        const model = new ModelMemory(new Map(words));
        const expected = model32(model, mm, cr3, va, access);
        const { outcome, memory } = runWalker(words, mode, cr3, va, access);
        expect(outcome).toEqual(expected);
        for (const a of words.keys()) expect(memory.read32(a)).toBe(Number(model.read32(a)));
      }),
      { numRuns: 600, seed: 32 },
    );
  });

  it("the last PDE and PTE of their pages are read without touching the next page", () => {
    const words = new Map<number, number>([
      [0x1000 + 1023 * 4, 0x2000 | 0x7],
      [0x2000 + 1023 * 4, 0x7_7000 | 0x7],
    ]);
    const va = 0xffff_f123;
    const m = pagingMode({ format: PagingFormat.Bits32, nxe: false });
    expect(runWalker(words, m, 0x1000, va, Access.Read).outcome).toEqual({ kind: "ok", pa: 0x7_7123, shift: 12 });
  });

  it("a 4 MiB page takes address bits 39:32 from PDE bits 20:13 (PSE-36); with CR4.PSE = 0 PS is ignored", () => {
    const words = new Map<number, number>([[0x1000 + 2 * 4, 0x0080_0000 | (0x12 << 13) | 0x83], [0x0080_0000 + 0x100 * 4, 0]]);
    const va = (2 << 22) | 0x12_3456;
    const pse = runWalker(words, pagingMode({ format: PagingFormat.Bits32, pse: true, maxPhyAddr: 40 }), 0x1000, va, Access.Read);
    expect(pse.outcome).toEqual({ kind: "ok", pa: 0x12_0000_0000 + 0x80_0000 + 0x12_3456, shift: 22 });
    // bits 20:13 hold 0x12, which needs MAXPHYADDR > 36: reserved at 36
    expect(runWalker(words, pagingMode({ format: PagingFormat.Bits32, pse: true, maxPhyAddr: 36 }), 0x1000, va, Access.Read).outcome).toEqual({ kind: "pf", ec: 0x9 });
  });
});

describe("PAE paging (PDPTE registers, 3-level) agrees with the per-level model", () => {
  it("on random tables: outcome, page size, error code and the A/D flags written", () => {
    fc.assert(
      fc.property(
        modeArb,
        accessArb,
        flagsArb,
        flagsArb,
        fc.tuple(fc.boolean(), fc.boolean(), fc.nat(3)),
        fc.constantFrom(0, 1, 0x100, 0x1ff),
        fc.constantFrom(0, 0x1ff, 7),
        fc.nat(0xfff),
        fc.nat(0xf),
        (mm, access, pdeFlags, pteFlags, [pdeXd, pteXd, hiSel], pdi, pti, off, pdptIndex) => {
          const cr3 = 0x1020; // 32-byte aligned, not page aligned
          const pdpt = pdptIndex & 3;
          const pd = 0x2000 + pdpt * 0x1000;
          const pt = 0x8000;
          const hiBits = [0, 0x1, 0x100, 0xf_0000][hiSel]!; // address bits 32, 40, 51:48
          const words = new Map<number, number>();
          const pdptes = [0n, 0n, 0n, 0n];
          pdptes[pdpt] = BigInt(pd | 1 | ((pdptIndex & 4) !== 0 ? 0x18 : 0));
          for (let i = 0; i < 4; i++) {
            words.set(cr3 + i * 8, Number(pdptes[i]! & 0xffff_ffffn));
            words.set(cr3 + i * 8 + 4, 0);
          }
          words.set(pd + pdi * 8, (((pdeFlags & 0x80) !== 0 ? 0x4020_0000 : pt) | (pdeFlags & 0x1fff)) >>> 0);
          words.set(pd + pdi * 8 + 4, ((pdeXd ? 0x8000_0000 : 0) | ((pdeFlags & 0x80) !== 0 ? hiBits : 0)) >>> 0);
          words.set(pt + pti * 8, (0x0012_3000 | (pteFlags & 0xfff)) >>> 0);
          words.set(pt + pti * 8 + 4, ((pteXd ? 0x8000_0000 : 0) | hiBits) >>> 0);
          const regs = new Uint32Array(8);
          expect(loadPaePdptes(new PhysicalPagingStructures(memoryOf(words)), cr3, 52, regs).status).toBe(PdpteLoadStatus.Ok);
          const va = ((pdpt << 30) | (pdi << 21) | (pti << 12) | off) >>> 0;
          const mode = pagingMode({ ...mm, format: PagingFormat.Pae, pdpte: regs });
          const model = new ModelMemory(new Map(words));
          const expected = modelPae(model, mm, pdptes, va, access);
          const { outcome, memory } = runWalker(words, mode, cr3, va, access);
          expect(outcome).toEqual(expected);
          for (const a of words.keys()) expect(memory.read32(a)).toBe(Number(model.read32(a)));
        },
      ),
      { numRuns: 600, seed: 33 },
    );
  });

  it("the walk uses the PDPTE registers, not memory: a PDPT changed after the load is not seen", () => {
    const words = new Map<number, number>([
      [0x1000, 0x2000 | 1],
      [0x2000, 0x3000 | 0x7],
      [0x3000, 0x5000 | 0x7],
    ]);
    const memory = memoryOf(words);
    const regs = new Uint32Array(8);
    loadPaePdptes(new PhysicalPagingStructures(memory), 0x1000, 46, regs);
    memory.write32(0x1000, 0); // the guest clears the PDPTE in memory
    const out = new WalkResult<MemoryError>();
    const mode = pagingMode({ format: PagingFormat.Pae, pdpte: regs });
    expect(walkLinear(out, mode, 0x1000, 0, 0x123, Access.Read, new PhysicalPagingStructures(memory))).toBe(WalkStatus.Ok);
    expect({ pa: out.physicalAddress, references: out.references, first: [out.stepLevel[0], out.stepAddress[0]] }).toEqual({ pa: 0x5123, references: 2, first: [3, 0x1000] });
  });
});

describe("loading the PDPTE registers (SDM 4.4.1)", () => {
  const load = (lo: number, hi: number, maxPhyAddr = 46) => {
    const memory = new MachineMemory(MEM);
    memory.write32(0x1000 + 16, lo);
    memory.write32(0x1000 + 20, hi);
    const regs = new Uint32Array(8).fill(0xdead);
    const r = loadPaePdptes(new PhysicalPagingStructures(memory), 0x1000, maxPhyAddr, regs);
    return { status: r.status, regs: Array.from(regs) };
  };
  it.each([
    ["R/W (bit 1)", 0x2003, 0],
    ["U/S (bit 2)", 0x2005, 0],
    ["bit 5", 0x2021, 0],
    ["bit 8", 0x2101, 0],
    ["bit 63 (no XD in a PDPTE)", 0x2001, 0x8000_0000],
    ["an address bit at MAXPHYADDR", 0x2001, 1 << 14],
  ])("a present PDPTE with %s is refused and nothing is loaded", (_what, lo, hi) => {
    const r = load(lo, hi);
    expect(r.status).toBe(PdpteLoadStatus.Reserved);
    expect(r.regs.every((v) => v === 0xdead)).toBe(true);
  });
  it("a not-present PDPTE may hold anything; PWT and PCD and ignored bits 11:9 are fine", () => {
    expect(load(0xffff_fffe, 0xffff_ffff).status).toBe(PdpteLoadStatus.Ok);
    expect(load(0x2e19, 0)).toMatchObject({ status: PdpteLoadStatus.Ok, regs: [0, 0, 0, 0, 0x2e19, 0, 0, 0] });
  });
});

function memoryOf(words: Map<number, number>): MachineMemory {
  const memory = new MachineMemory(MEM);
  for (const [a, v] of words) memory.write32(a, v);
  return memory;
}
