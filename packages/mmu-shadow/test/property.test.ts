/**
 * The law of shadow paging: under random sequences of guest PTE writes (4 KiB leaves, links,
 * 2 MiB pages, reserved bits, aliases of page-table frames as data), CR3 switches, INVLPGs,
 * loads and stores, every access the guest makes succeeds or faults exactly as on bare hardware
 * with the same tables (a #PF with the same error code and CR2), what it reads and writes lands
 * in the frame the guest walk composed with the p2m gives, and the guest's accessed and dirty
 * flags come out bit-for-bit the same. "Bare hardware" is arch's walker over a mirror memory
 * where guest-physical = physical, with no TLB; with out-of-sync tables the guest flushes
 * (reloads CR3) after each PTE write, as the architecture requires of it. Stored values stay
 * inside the data region, so a data frame aliased as a table points only at RAM.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Access, MachineMemory, PTE_A, PTE_D, PTE_G, PTE_P, PTE_PCD, PTE_PS, PTE_PWT, PTE_RW, PTE_US, PhysicalPagingStructures, pagingMode, walk } from "@vtlab/arch";
import { guestPagingMode } from "../src/index.js";
import { KPML4, OpsGuest, type OpResult } from "./ops-guest.js";

const REGION = 2 ** 39; // PML4 index 1
const DATA = 0x40_0000; // gfn 0x400: a 2 MiB-aligned data region
const RSVD_51 = 2 ** 51;

type Op =
  | { k: "pte"; root: number; pd: number; index: number; target: number; flags: number; rsvd: boolean }
  | { k: "pde"; root: number; index: number; kind: number; flags: number }
  | { k: "cr3"; root: number }
  | { k: "invlpg"; slot: number }
  | { k: "load"; slot: number; off: number }
  | { k: "store"; slot: number; off: number; value: number };

const flagsArb = fc.record({ p: fc.boolean(), rw: fc.boolean(), us: fc.boolean(), a: fc.boolean(), d: fc.boolean(), g: fc.boolean(), c: fc.boolean() }).map(
  (f) => (f.p ? PTE_P : 0) | (f.rw ? PTE_RW : 0) | (f.us ? PTE_US : 0) | (f.a ? PTE_A : 0) | (f.d ? PTE_D : 0) | (f.g ? PTE_G : 0) | (f.c ? PTE_PWT | PTE_PCD : 0),
);
const presentBiased = flagsArb.map((f) => f | (f & PTE_US ? PTE_P : 0));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant("pte" as const), root: fc.nat(1), pd: fc.nat(1), index: fc.nat(3), target: fc.nat(11), flags: presentBiased, rsvd: fc.nat(4).map((n) => n === 0) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("pde" as const), root: fc.nat(1), index: fc.nat(1), kind: fc.nat(5), flags: presentBiased }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("cr3" as const), root: fc.nat(1) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("invlpg" as const), slot: fc.nat(15).map((n) => n & 11) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant("load" as const), slot: fc.nat(15).map((n) => n & 11), off: fc.nat(3) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("store" as const), slot: fc.nat(15).map((n) => n & 11), off: fc.nat(3), value: fc.nat(0x1f_ffff).map((v) => DATA + v) }) },
);

interface World {
  og: OpsGuest;
  bare: MachineMemory;
  roots: number[];
  /** Per root: PDPT, PD, L1 for PD entry 0, L1 for PD entry 1. */
  tables: number[][];
  current: number;
}

function world(outOfSync: boolean): World {
  const og = new OpsGuest({ shadow: { outOfSync } });
  const d = og.d;
  const f = PTE_P | PTE_RW;
  const roots = [KPML4, og.table()];
  d.write64(roots[1]!, d.read64(KPML4));
  const tables: number[][] = [];
  for (let r = 0; r < 2; r++) {
    const t = [og.table(), og.table(), og.table(), og.table()];
    d.write64(roots[r]! + 8, t[0]! | f);
    d.write64(t[0]!, t[1]! | f);
    d.write64(t[1]!, t[2]! | f);
    d.write64(t[1]! + 8, t[3]! | f);
    for (let i = 0; i < 8; i++) {
      d.write64(t[2]! + i * 8, (DATA + i * 0x1000) | f | PTE_US);
      d.write64(t[3]! + i * 8, (DATA + ((i + 3) & 7) * 0x1000) | f);
    }
    tables.push(t);
  }
  for (let p = 0; p < 8; p++) for (let q = 0; q < 4; q++) d.write64(DATA + p * 0x1000 + q * 8, p * 0x100 + q + 1);
  // The mirror: guest-physical = physical.
  const bare = new MachineMemory(16 * 1024 * 1024);
  const buf = new Uint8Array(0x20_0000);
  for (const base of [0x10_0000, DATA]) {
    d.memory.readBytes(d.m(base), buf);
    bare.writeBytes(base, buf);
  }
  return { og, bare, roots, tables, current: 0 };
}

const slotGva = (slot: number, off: number) => REGION + (slot >> 3) * 0x20_0000 + (slot & 7) * 0x1000 + off * 8;

function expectSame(w: World, got: OpResult, access: number, gva: number, value?: number): void {
  const mode = guestPagingMode(w.og.cpu, pagingMode());
  const t = walk(w.roots[w.current]!, gva, access, mode, new PhysicalPagingStructures(w.bare));
  if (got.kind === "crash") throw new Error(`domain crashed: ${got.reason}`);
  if (t.kind === "page-fault") {
    expect(got).toEqual({ kind: "pf", errorCode: t.errorCode, cr2: gva });
    return;
  }
  if (t.kind !== "translation") throw new Error("bare walk left memory");
  if (access === Access.Write) {
    expect(got.kind).toBe("ok");
    w.bare.write64(t.physicalAddress, value!, 0);
    // The store landed in the machine frame the guest walk composed with the p2m gives.
    expect(w.og.d.read64(t.physicalAddress)).toBe(value);
  } else {
    const o = { lo: 0, hi: 0 };
    w.bare.read64(t.physicalAddress, o);
    expect(got).toEqual({ kind: "ok", value: o.hi * 2 ** 32 + (o.lo >>> 0) });
  }
}

function apply(w: World, op: Op, oos: boolean): void {
  const og = w.og;
  const writeTable = (gpa: number, value: number) => {
    const r = og.store(gpa, value);
    if (r.kind !== "ok") throw new Error(`PTE store failed: ${JSON.stringify(r)}`);
    w.bare.write64(gpa, value % 2 ** 32 >>> 0, Math.floor(value / 2 ** 32));
    if (oos) og.loadCr3(w.roots[w.current]!);
  };
  switch (op.k) {
    case "pte": {
      const t = w.tables[op.root]!;
      // Targets: eight data frames, or (aliases) the page-table frames of root 0.
      const frame = op.target < 8 ? DATA + op.target * 0x1000 : w.tables[0]![op.target - 8]!;
      writeTable(t[2 + op.pd]! + op.index * 8, frame + op.flags + (op.rsvd ? RSVD_51 : 0));
      break;
    }
    case "pde": {
      const t = w.tables[op.root]!;
      const targets = [w.tables[0]![2]!, w.tables[1]![2]!, w.tables[0]![3]!, DATA | PTE_PS, (DATA + 0x2000) | PTE_PS, 0];
      writeTable(t[1]! + op.index * 8, targets[op.kind]! + op.flags);
      break;
    }
    case "cr3":
      w.current = op.root;
      expect(og.loadCr3(w.roots[op.root]!).kind).toBe("ok");
      break;
    case "invlpg":
      expect(og.invlpg(slotGva(op.slot, 0)).kind).toBe("ok");
      break;
    case "load": {
      const gva = slotGva(op.slot, op.off);
      expectSame(w, og.load(gva), Access.Read, gva);
      break;
    }
    case "store": {
      const gva = slotGva(op.slot, op.off);
      expectSame(w, og.store(gva, op.value), Access.Write, gva, op.value);
      if (oos) og.loadCr3(w.roots[w.current]!);
      break;
    }
  }
}

function compareTables(w: World): void {
  for (const t of w.tables) {
    for (const table of t) {
      for (let i = 0; i < 512; i++) {
        const o = { lo: 0, hi: 0 };
        w.bare.read64(table + i * 8, o);
        expect(w.og.d.read64(table + i * 8), `entry ${i} of table 0x${table.toString(16)}`).toBe(o.hi * 2 ** 32 + (o.lo >>> 0));
      }
    }
  }
}

describe("shadow translation == guest walk composed with the p2m (fast-check)", () => {
  for (const oos of [false, true]) {
    it(`accesses fault or land exactly as on bare hardware; A/D bits exact (out-of-sync ${oos ? "on" : "off"})`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 10, maxLength: 60 }), (ops) => {
          const w = world(oos);
          for (const op of ops) apply(w, op, oos);
          compareTables(w);
          expect(w.og.sp!.stats.crashes).toBe(0);
        }),
        { numRuns: 100, seed: oos ? 7 : 6 },
      );
    });
  }
});
