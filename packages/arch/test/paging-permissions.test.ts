/**
 * The x86 page walker against an independent oracle written from the Intel SDM Vol. 3A
 * (4.5 paging structures and reserved bits, 4.6 access rights, 4.7 #PF error code, 4.8 A/D
 * flags): see ./sdm-oracle.ts. Every case builds real paging structures in MachineMemory, walks
 * them, and compares fault / error code / physical address / reference count / entry addresses,
 * and the A/D state left in EVERY entry of the path (read back from memory).
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Access, MachineMemory, PhysicalPagingStructures, mfn, pagingMode, walk } from "@vtlab/arch";
import type { PagingMode } from "@vtlab/arch";
import {
  LEVEL_NAME,
  LEVEL_PDE,
  LEVEL_PDPTE,
  LEVEL_PML4E,
  LEVEL_PML5E,
  LEVEL_PTE,
  PFEC_ID_BIT,
  PFEC_P_BIT,
  PFEC_RSVD_BIT,
  PFEC_US_BIT,
  PFEC_WR_BIT,
  SDM_A,
  SDM_D,
  SDM_G,
  SDM_P,
  SDM_PAT_LARGE,
  SDM_PCD,
  SDM_PS,
  SDM_PWT,
  SDM_RW,
  SDM_US,
  SDM_XD_HI,
  bitAt,
  entryAddressIn,
  nextTableBase,
  sdmWalk,
} from "./sdm-oracle.js";
import type { OracleAccess, OracleMode, Operation, Privilege, RawEntry } from "./sdm-oracle.js";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/** The whole 52-bit physical space (sparse), so tables can sit at any address an entry names. */
const MEM_SIZE = 2 ** 52;

interface Case {
  root: number;
  va: number;
  /** Walk path, top table first. */
  entries: RawEntry[];
  mode: OracleMode;
  access: OracleAccess;
}

const PRIVILEGES: readonly Privilege[] = ["user", "supervisor", "implicit", "implicit-cpl3"];
const OPERATIONS: readonly Operation[] = ["read", "write", "fetch"];
const ACCESSES: readonly OracleAccess[] = PRIVILEGES.flatMap((privilege) =>
  OPERATIONS.map((op) => ({ op, privilege })),
);

function accessBits(a: OracleAccess): number {
  let bits = a.op === "write" ? Access.Write : a.op === "fetch" ? Access.Fetch : Access.Read;
  if (a.privilege === "user" || a.privilege === "implicit-cpl3") bits |= Access.User;
  if (a.privilege === "implicit" || a.privilege === "implicit-cpl3") bits |= Access.Implicit;
  return bits;
}

function mode(overrides: Partial<OracleMode> = {}): OracleMode {
  return { la57: false, wp: true, nxe: true, smep: false, smap: false, ac: false, maxPhyAddr: 46, ...overrides };
}

/** Every combination of CR0.WP, EFER.NXE, CR4.SMEP, CR4.SMAP, RFLAGS.AC. */
function allModes(base: Partial<OracleMode> = {}): OracleMode[] {
  const out: OracleMode[] = [];
  for (let m = 0; m < 32; m++) {
    out.push(
      mode({ ...base, wp: (m & 1) !== 0, nxe: (m & 2) !== 0, smep: (m & 4) !== 0, smap: (m & 8) !== 0, ac: (m & 16) !== 0 }),
    );
  }
  return out;
}

const walkerModes = new Map<string, PagingMode>();
function walkerMode(m: OracleMode): PagingMode {
  const key = `${+m.la57}${+m.wp}${+m.nxe}${+m.smep}${+m.smap}${+m.ac}:${m.maxPhyAddr}`;
  let w = walkerModes.get(key);
  if (w === undefined) {
    w = pagingMode({
      la57: m.la57,
      wp: m.wp,
      nxe: m.nxe,
      smep: m.smep,
      smap: m.smap,
      ac: m.ac,
      pge: false,
      maxPhyAddr: m.maxPhyAddr,
    });
    walkerModes.set(key, w);
  }
  return w;
}

const hex = (n: number): string => `0x${n.toString(16)}`;
const hex64 = (e: RawEntry): string => `0x${(e.hi >>> 0).toString(16).padStart(8, "0")}_${(e.lo >>> 0).toString(16).padStart(8, "0")}`;

function describeCase(c: Case): string {
  const m = c.mode;
  const top = m.la57 ? 5 : 4;
  return (
    `mode{la57=${+m.la57} wp=${+m.wp} nxe=${+m.nxe} smep=${+m.smep} smap=${+m.smap} ac=${+m.ac} maxphy=${m.maxPhyAddr}} ` +
    `access{${c.access.privilege} ${c.access.op}} va=${hex(c.va)} root=${hex(c.root)} ` +
    c.entries.map((e, i) => `${LEVEL_NAME[top - i]}=${hex64(e)}`).join(" ")
  );
}

class Rig {
  readonly mem = new MachineMemory(MEM_SIZE);
  readonly tables = new PhysicalPagingStructures(this.mem);
  private readonly scratch: RawEntry = { lo: 0, hi: 0 };
  private touched: number[] = [];
  cases = 0;

  /** Write the path entries where the walk will look for them; null if two collide. */
  place(c: Case): number[] | null {
    const top = c.mode.la57 ? LEVEL_PML5E : LEVEL_PML4E;
    const addresses: number[] = [];
    let base = c.root;
    for (let i = 0; i < c.entries.length; i++) {
      const e = c.entries[i] as RawEntry;
      const address = entryAddressIn(base, c.va, top - i);
      if (addresses.includes(address)) return null;
      addresses.push(address);
      base = nextTableBase(e);
    }
    for (let i = 0; i < addresses.length; i++) {
      const e = c.entries[i] as RawEntry;
      const address = addresses[i] as number;
      this.mem.write64(address, e.lo, e.hi);
      this.touched.push(address);
    }
    return addresses;
  }

  /** Give back every frame written so far (keeps long fuzz runs small). */
  release(): void {
    for (const a of this.touched) this.mem.discardFrame(mfn(Math.floor(a / 4096)));
    this.touched = [];
  }

  /** Run one case; returns a list of disagreements (empty when the walker matches the oracle). */
  check(c: Case): string[] {
    this.cases++;
    const addresses = this.place(c);
    if (addresses === null) throw new Error(`test bug: colliding entries in ${describeCase(c)}`);
    const exp = sdmWalk(c);
    const r = walk(c.root as never, c.va as never, accessBits(c.access) as never, walkerMode(c.mode), this.tables);
    const bad: string[] = [];
    const field = (name: string, got: unknown, want: unknown): void => {
      if (got !== want) bad.push(`${name}: got ${String(got)}, expected ${String(want)}`);
    };
    if (exp.fault) {
      if (r.kind !== "page-fault") {
        bad.push(`expected #PF (${exp.reason}, error code ${hex(exp.errorCode)}), got ${r.kind}`);
      } else {
        field("errorCode", hex(r.errorCode), hex(exp.errorCode));
        field("references", r.references, exp.entriesRead);
        field("CR2 hi", r.addressHi >>> 0, Math.floor(c.va / 2 ** 32) >>> 0);
        field("CR2 lo", r.addressLo >>> 0, c.va >>> 0);
        if (exp.reason !== "rights") field("fault level", r.level, exp.faultLevel);
      }
    } else if (r.kind !== "translation") {
      bad.push(`expected a translation to ${hex(exp.physicalAddress)}, got ${r.kind}${"errorCode" in r ? ` error code ${hex(r.errorCode)}` : ""}`);
    } else {
      field("physicalAddress", hex(r.physicalAddress), hex(exp.physicalAddress));
      field("pageShift", r.pageShift, exp.pageShift);
      field("references", r.references, exp.entriesRead);
    }
    if (r.kind !== "access-fault") {
      field("steps", r.steps.length, exp.entriesRead);
      for (let i = 0; i < Math.min(r.steps.length, exp.entriesRead); i++) {
        const s = r.steps[i];
        field(`step ${i} address`, hex(s?.address ?? -1), hex(exp.entryAddresses[i] as number));
        field(`step ${i} level`, s?.level, exp.entryLevels[i]);
      }
    }
    // The A/D state (indeed the whole entry) left in memory, for every entry of the path.
    const top = c.mode.la57 ? 5 : 4;
    for (let i = 0; i < addresses.length; i++) {
      const want = exp.after[i] as RawEntry;
      this.mem.read64(addresses[i] as number, this.scratch);
      if (this.scratch.lo >>> 0 !== want.lo || this.scratch.hi >>> 0 !== want.hi) {
        bad.push(`${LEVEL_NAME[top - i]} in memory: got ${hex64(this.scratch)}, expected ${hex64(want)}`);
      }
    }
    return bad.length === 0 ? bad : [`${describeCase(c)}\n    ${bad.join("\n    ")}`];
  }
}

/** Collects disagreements and fails once at the end (per-case expect() would be far too slow). */
class Report {
  readonly failures: string[] = [];
  count = 0;
  add(lines: string[]): void {
    if (lines.length > 0) {
      this.count++;
      if (this.failures.length < 15) this.failures.push(...lines);
    }
  }
  assertClean(): void {
    expect(this.failures, `${this.count} disagreeing case(s); first ones:\n${this.failures.join("\n")}`).toEqual([]);
  }
}

/** Deterministic noise (xorshift32) for preset A/D flags. */
function noise(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

/** Preset A (bit 5) and D (bit 6) with probability 1/4 each, to show they are kept. */
function presetAD(next: () => number): number {
  const r = next();
  return ((r & 3) === 0 ? SDM_A : 0) | ((r & 0xc) === 0 ? SDM_D : 0);
}

// ---------------------------------------------------------------------------------------------
// Layouts (a user-space linear address whose index at every level is non-zero)
// ---------------------------------------------------------------------------------------------

/** PML4 index 254, PDPT index 72, PD index 418, PT index 359, page offset 0xabc. */
const VA = 0x0000_7f12_3456_7abc;
const PML5_BASE = 0x10_000;
const PML4_BASE = 0x1000;
const PDPT_BASE = 0x2000;
const PD_BASE = 0x3000;
const PT_BASE = 0x4000;
/** Page frames mapped by the leaves (bits 41:32 = 0x3ab, within MAXPHYADDR 46). */
const PAGE_HI = 0x3ab;
const PAGE_4K_LO = 0x1234_5000;
const PAGE_2M_LO = 0x4020_0000;
const PAGE_1G_LO = 0xc000_0000;

type PageSize = "4K" | "2M" | "1G";

/** Flags of one entry in the permission matrix. */
interface Perm {
  rw: boolean;
  us: boolean;
  xd: boolean;
}

const PERMISSIVE: Perm = { rw: true, us: true, xd: false };

function permEntry(lo: number, hi: number, p: Perm, extra = 0): RawEntry {
  return {
    lo: (lo | SDM_P | (p.rw ? SDM_RW : 0) | (p.us ? SDM_US : 0) | extra) >>> 0,
    hi: (hi | (p.xd ? SDM_XD_HI : 0)) >>> 0,
  };
}

/** The path for a page of the given size, with per-level permissions (top first, PML4E first). */
function pathFor(size: PageSize, perms: readonly Perm[], extras: readonly number[] = []): RawEntry[] {
  const x = (i: number): number => extras[i] ?? 0;
  const p = (i: number): Perm => perms[i] ?? PERMISSIVE;
  const pml4e = permEntry(PDPT_BASE, 0, p(0), x(0));
  if (size === "1G") return [pml4e, permEntry(PAGE_1G_LO, PAGE_HI, p(1), SDM_PS | x(1))];
  const pdpte = permEntry(PD_BASE, 0, p(1), x(1));
  if (size === "2M") return [pml4e, pdpte, permEntry(PAGE_2M_LO, PAGE_HI, p(2), SDM_PS | x(2))];
  return [pml4e, pdpte, permEntry(PT_BASE, 0, p(2), x(2)), permEntry(PAGE_4K_LO, PAGE_HI, p(3), x(3))];
}

const LEVELS_OF: Record<PageSize, number> = { "4K": 4, "2M": 3, "1G": 2 };

/** Run the full permission matrix (every RW/US/XD combination at every level) for one page size. */
function permissionMatrix(rig: Rig, size: PageSize, report: Report): number {
  const levels = LEVELS_OF[size];
  const combos = 1 << (3 * levels);
  const modes = allModes();
  const next = noise(0x5eed + levels);
  let n = 0;
  for (let combo = 0; combo < combos; combo++) {
    const perms: Perm[] = [];
    for (let l = 0; l < levels; l++) {
      const b = combo >> (3 * l);
      perms.push({ rw: (b & 1) !== 0, us: (b & 2) !== 0, xd: (b & 4) !== 0 });
    }
    for (const m of modes) {
      for (const access of ACCESSES) {
        const extras = perms.map(() => presetAD(next));
        // The PAT bit (12) of a large page is not an address bit: set it in some cases.
        if (size !== "4K" && (combo & 1) === 1) extras[levels - 1] = (extras[levels - 1] ?? 0) | SDM_PAT_LARGE;
        report.add(rig.check({ root: PML4_BASE, va: VA, entries: pathFor(size, perms, extras), mode: m, access }));
        n++;
      }
    }
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Oracle sanity: literal SDM facts, so the oracle itself is pinned down independently.
// ---------------------------------------------------------------------------------------------

describe("SDM oracle sanity (no walker involved)", () => {
  const run = (entries: RawEntry[], m: OracleMode, access: OracleAccess) =>
    sdmWalk({ root: PML4_BASE, va: VA, entries, mode: m, access });

  it("a fully permissive 4 KiB walk translates with 4 references and sets A everywhere, D on the PTE for a write", () => {
    const out = run(pathFor("4K", []), mode(), { op: "write", privilege: "user" });
    expect(out.fault).toBe(false);
    expect(out.entriesRead).toBe(4);
    expect(out.physicalAddress).toBe(0x3ab_1234_5abc);
    expect(out.after.map((e) => e.lo & (SDM_A | SDM_D))).toEqual([SDM_A, SDM_A, SDM_A, SDM_A | SDM_D]);
  });

  it("user write to a read-only page: P|W|U = 7; supervisor write with WP=0: allowed", () => {
    const ro = pathFor("4K", [PERMISSIVE, PERMISSIVE, PERMISSIVE, { rw: false, us: true, xd: false }]);
    expect(run(ro, mode({ wp: false }), { op: "write", privilege: "user" }).errorCode).toBe(7);
    expect(run(ro, mode({ wp: false }), { op: "write", privilege: "supervisor" }).fault).toBe(false);
    expect(run(ro, mode({ wp: true }), { op: "write", privilege: "supervisor" }).errorCode).toBe(3);
  });

  it("SMAP: explicit supervisor read of a user page needs AC=1; implicit ignores AC", () => {
    const user = pathFor("4K", []);
    expect(run(user, mode({ smap: true, ac: true }), { op: "read", privilege: "supervisor" }).fault).toBe(false);
    expect(run(user, mode({ smap: true, ac: false }), { op: "read", privilege: "supervisor" }).errorCode).toBe(1);
    expect(run(user, mode({ smap: true, ac: true }), { op: "read", privilege: "implicit-cpl3" }).errorCode).toBe(1);
  });

  it("SMEP fetch of a user page: P|I/D = 0x11; fetch of an XD page with NXE=1 from user: 0x15", () => {
    expect(run(pathFor("4K", []), mode({ smep: true, nxe: false }), { op: "fetch", privilege: "supervisor" }).errorCode).toBe(0x11);
    const xd = pathFor("4K", [PERMISSIVE, PERMISSIVE, PERMISSIVE, { rw: true, us: true, xd: true }]);
    expect(run(xd, mode({ nxe: true }), { op: "fetch", privilege: "user" }).errorCode).toBe(0x15);
  });

  it("XD with NXE=0 is reserved: P|RSVD (+W/R, U/S); I/D only with SMEP", () => {
    const xd = pathFor("4K", [{ rw: true, us: true, xd: true }]);
    const o = run(xd, mode({ nxe: false }), { op: "write", privilege: "user" });
    expect([o.reason, o.errorCode, o.faultLevel, o.entriesRead]).toEqual(["reserved", 0b1111, 4, 1]);
    expect(run(xd, mode({ nxe: false, smep: false }), { op: "fetch", privilege: "user" }).errorCode).toBe(0b01101);
    expect(run(xd, mode({ nxe: false, smep: true }), { op: "fetch", privilege: "user" }).errorCode).toBe(0b11101);
  });

  it("2 MiB and 1 GiB pages: 3 and 2 references, page offset from the linear address", () => {
    const two = run(pathFor("2M", [], [0, 0, SDM_PAT_LARGE]), mode(), { op: "read", privilege: "user" });
    expect([two.entriesRead, two.pageShift, two.physicalAddress]).toEqual([3, 21, 0x3ab_4020_0000 + 0x16_7abc]);
    const one = run(pathFor("1G", []), mode(), { op: "read", privilege: "user" });
    expect([one.entriesRead, one.pageShift, one.physicalAddress]).toEqual([2, 30, 0x3ab_c000_0000 + 0x3456_7abc]);
  });
});

// ---------------------------------------------------------------------------------------------
// The walker against the oracle
// ---------------------------------------------------------------------------------------------

describe("page walker vs SDM oracle", () => {
  it("exhaustive permission matrix, 4-level paging, 4 KiB pages (2^12 entry combos x 2^5 modes x 4 privileges x 3 operations)", () => {
    const rig = new Rig();
    const report = new Report();
    const n = permissionMatrix(rig, "4K", report);
    expect(n).toBe(4096 * 32 * 12);
    report.assertClean();
  });

  it("exhaustive permission matrix, 2 MiB pages (PDE PS=1)", () => {
    const rig = new Rig();
    const report = new Report();
    expect(permissionMatrix(rig, "2M", report)).toBe(512 * 32 * 12);
    report.assertClean();
  });

  it("exhaustive permission matrix, 1 GiB pages (PDPTE PS=1)", () => {
    const rig = new Rig();
    const report = new Report();
    expect(permissionMatrix(rig, "1G", report)).toBe(64 * 32 * 12);
    report.assertClean();
  });

  it("not present at each level: P=0, RSVD=0 whatever else the entry holds; memory untouched", () => {
    const rig = new Rig();
    const report = new Report();
    const garbage: RawEntry[] = [
      { lo: 0, hi: 0 },
      { lo: 0xffff_fffe, hi: 0xffff_ffff }, // every bit but P: reserved bits, XD, PS, address above MAXPHYADDR
      { lo: (PT_BASE | SDM_RW | SDM_US | SDM_A | SDM_D | SDM_PS) >>> 0, hi: SDM_XD_HI },
    ];
    for (const la57 of [false, true]) {
      const top = la57 ? 5 : 4;
      for (let k = 0; k < top; k++) {
        for (const g of garbage) {
          for (const m of [mode({ la57 }), mode({ la57, nxe: false, smep: true, maxPhyAddr: 36 }), mode({ la57, nxe: false })]) {
            for (const access of ACCESSES) {
              const base = pathFor("4K", []);
              const entries = la57 ? [permEntry(PML4_BASE, 0, PERMISSIVE), ...base] : base;
              entries[k] = { ...g };
              const c: Case = { root: la57 ? PML5_BASE : PML4_BASE, va: VA, entries, mode: m, access };
              report.add(rig.check(c));
              // Literal expectations on top of the oracle's.
              const r = walk(c.root as never, c.va as never, accessBits(access) as never, walkerMode(m), rig.tables);
              if (r.kind !== "page-fault" || (r.errorCode & (PFEC_P_BIT | PFEC_RSVD_BIT)) !== 0 || r.references !== k + 1) {
                report.add([`${describeCase(c)}\n    literal: expected #PF with P=0, RSVD=0 after ${k + 1} reference(s)`]);
              }
            }
          }
        }
      }
    }
    report.assertClean();
  });

  it("reference counts: 4 / 3 / 2 for 4 KiB / 2 MiB / 1 GiB; k for a fault found in the k-th entry", () => {
    const rig = new Rig();
    const tr = (size: PageSize) => {
      const entries = pathFor(size, []);
      rig.place({ root: PML4_BASE, va: VA, entries, mode: mode(), access: { op: "read", privilege: "user" } });
      return walk(PML4_BASE as never, VA as never, Access.Read | Access.User, walkerMode(mode()), rig.tables);
    };
    expect(tr("4K")).toMatchObject({ kind: "translation", references: 4, pageShift: 12, physicalAddress: 0x3ab_1234_5abc });
    expect(tr("2M")).toMatchObject({ kind: "translation", references: 3, pageShift: 21, physicalAddress: 0x3ab_4036_7abc });
    expect(tr("1G")).toMatchObject({ kind: "translation", references: 2, pageShift: 30, physicalAddress: 0x3ab_f456_7abc });
    for (let k = 0; k < 4; k++) {
      const entries = pathFor("4K", []);
      entries[k] = { lo: (entries[k] as RawEntry).lo & ~SDM_P, hi: 0 };
      rig.place({ root: PML4_BASE, va: VA, entries, mode: mode(), access: { op: "read", privilege: "user" } });
      const r = walk(PML4_BASE as never, VA as never, Access.Read | Access.User, walkerMode(mode()), rig.tables);
      expect(r).toMatchObject({ kind: "page-fault", references: k + 1, errorCode: PFEC_US_BIT });
    }
    // An access-rights fault is found only after the whole walk.
    const entries = pathFor("4K", [{ rw: true, us: false, xd: false }]);
    rig.place({ root: PML4_BASE, va: VA, entries, mode: mode(), access: { op: "read", privilege: "user" } });
    const r = walk(PML4_BASE as never, VA as never, Access.Read | Access.User, walkerMode(mode()), rig.tables);
    expect(r).toMatchObject({ kind: "page-fault", references: 4, errorCode: PFEC_P_BIT | PFEC_US_BIT });
  });
});

describe("reserved bits (SDM 4.5.4), one at a time", () => {
  /** Entry positions to poison: [page size, index in the path]. */
  const positions: [PageSize, number][] = [
    ["4K", 0],
    ["4K", 1],
    ["4K", 2],
    ["4K", 3],
    ["2M", 2],
    ["1G", 1],
  ];
  const idModes = (base: Partial<OracleMode>): OracleMode[] =>
    [false, true].flatMap((nxe) => [false, true].map((smep) => mode({ ...base, nxe, smep })));

  it("each bit of 51:MAXPHYADDR is reserved in every entry (MAXPHYADDR 36, 39, 46, 52), harmless once MAXPHYADDR > bit", () => {
    const rig = new Rig();
    const report = new Report();
    let reservedCases = 0;
    for (const maxPhyAddr of [36, 39, 46, 52]) {
      for (const [size, idx] of positions) {
        for (let b = 32; b <= 51; b++) {
          for (const m of idModes({ maxPhyAddr })) {
            for (const access of ACCESSES) {
              const entries = pathFor(size, []);
              const e = entries[idx] as RawEntry;
              const bit = bitAt(b);
              e.lo = (e.lo | bit.lo) >>> 0;
              e.hi = (e.hi | bit.hi) >>> 0;
              const c: Case = { root: PML4_BASE, va: VA, entries, mode: m, access };
              report.add(rig.check(c));
              if (b >= maxPhyAddr) {
                reservedCases++;
                // Literal: P=1, RSVD=1, W/R, U/S, I/D as SDM 4.7 defines them.
                const want =
                  PFEC_P_BIT |
                  PFEC_RSVD_BIT |
                  (access.op === "write" ? PFEC_WR_BIT : 0) |
                  (access.privilege === "user" ? PFEC_US_BIT : 0) |
                  (access.op === "fetch" && (m.smep || m.nxe) ? PFEC_ID_BIT : 0);
                const r = walk(PML4_BASE as never, VA as never, accessBits(access) as never, walkerMode(m), rig.tables);
                if (r.kind !== "page-fault" || r.errorCode !== want || r.references !== idx + 1) {
                  report.add([`${describeCase(c)}\n    literal: expected RSVD #PF ${hex(want)} after ${idx + 1} reference(s)`]);
                }
              }
              // Same bit with MAXPHYADDR just above it: an ordinary address bit.
              if (b >= maxPhyAddr && b + 1 <= 52) report.add(rig.check({ ...c, mode: { ...m, maxPhyAddr: b + 1 } }));
              rig.release();
            }
          }
        }
      }
    }
    expect(reservedCases).toBe((16 + 13 + 6 + 0) * positions.length * 4 * ACCESSES.length);
    report.assertClean();
  });

  it("XD (bit 63) is reserved when EFER.NXE=0 at every level; with NXE=1 it only forbids fetches", () => {
    const rig = new Rig();
    const report = new Report();
    for (const [size, idx] of [...positions, ["2M", 0] as [PageSize, number], ["2M", 1] as [PageSize, number], ["1G", 0] as [PageSize, number]]) {
      for (const nxe of [false, true]) {
        for (const m of allModes({})) {
          for (const access of ACCESSES) {
            const perms = pathFor(size, []).map(() => PERMISSIVE);
            perms[idx] = { rw: true, us: true, xd: true };
            report.add(rig.check({ root: PML4_BASE, va: VA, entries: pathFor(size, perms), mode: { ...m, nxe }, access }));
          }
        }
      }
    }
    report.assertClean();
  });

  it("PS (bit 7) is reserved in a PML4E (and in a PML5E and PML4E under 5-level paging)", () => {
    const rig = new Rig();
    const report = new Report();
    for (const m of allModes()) {
      for (const access of ACCESSES) {
        report.add(rig.check({ root: PML4_BASE, va: VA, entries: pathFor("4K", [], [SDM_PS]), mode: m, access }));
        const five = [permEntry(PML4_BASE, 0, PERMISSIVE, SDM_PS), ...pathFor("4K", [])];
        report.add(rig.check({ root: PML5_BASE, va: VA, entries: five, mode: { ...m, la57: true }, access }));
        const five4 = [permEntry(PML4_BASE, 0, PERMISSIVE), ...pathFor("4K", [], [SDM_PS])];
        report.add(rig.check({ root: PML5_BASE, va: VA, entries: five4, mode: { ...m, la57: true }, access }));
      }
    }
    // Literal: the PS fault is found in the first entry.
    const rig2 = new Rig();
    rig2.place({ root: PML4_BASE, va: VA, entries: pathFor("4K", [], [SDM_PS]), mode: mode(), access: ACCESSES[0] as OracleAccess });
    expect(walk(PML4_BASE as never, VA as never, Access.Read, walkerMode(mode()), rig2.tables)).toMatchObject({
      kind: "page-fault",
      errorCode: PFEC_P_BIT | PFEC_RSVD_BIT,
      references: 1,
    });
    report.assertClean();
  });

  it("bits 20:13 of a 2 MiB PDE and 29:13 of a 1 GiB PDPTE are reserved; harmless without PS; PAT (bit 12) harmless", () => {
    const rig = new Rig();
    const report = new Report();
    const cases: [PageSize, number, number[]][] = [
      ["2M", 2, [12, 13, 14, 15, 16, 17, 18, 19, 20, 21]],
      ["1G", 1, [12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30]],
    ];
    for (const [size, idx, bits] of cases) {
      for (const b of bits) {
        for (const m of idModes({})) {
          for (const access of ACCESSES) {
            // Large page with the bit set.
            const large = pathFor(size, []);
            (large[idx] as RawEntry).lo = ((large[idx] as RawEntry).lo | (1 << b)) >>> 0;
            report.add(rig.check({ root: PML4_BASE, va: VA, entries: large, mode: m, access }));
            // The same entry without PS references a table: the bit is then an address bit.
            const table = pathFor("4K", []);
            (table[idx] as RawEntry).lo = ((table[idx] as RawEntry).lo | (1 << b)) >>> 0;
            report.add(rig.check({ root: PML4_BASE, va: VA, entries: table, mode: m, access }));
            rig.release();
          }
        }
        // Literal for the large page, supervisor write.
        const large = pathFor(size, []);
        (large[idx] as RawEntry).lo = ((large[idx] as RawEntry).lo | (1 << b)) >>> 0;
        rig.place({ root: PML4_BASE, va: VA, entries: large, mode: mode(), access: ACCESSES[0] as OracleAccess });
        const r = walk(PML4_BASE as never, VA as never, Access.Write, walkerMode(mode()), rig.tables);
        const maxRsvd = size === "2M" ? 20 : 29;
        if (b >= 13 && b <= maxRsvd) {
          expect(r, `${size} bit ${b}`).toMatchObject({ kind: "page-fault", errorCode: PFEC_P_BIT | PFEC_WR_BIT | PFEC_RSVD_BIT });
        } else {
          expect(r, `${size} bit ${b}`).toMatchObject({ kind: "translation" });
        }
        rig.release();
      }
    }
    report.assertClean();
  });
});

describe("walk order", () => {
  it("the highest-level problem wins; rights are checked only after a complete walk", () => {
    const rig = new Rig();
    const report = new Report();
    const rsvd = bitAt(50); // reserved with MAXPHYADDR 46
    const poison = (e: RawEntry): RawEntry => ({ lo: e.lo | rsvd.lo, hi: e.hi | rsvd.hi });
    for (let hiIdx = 0; hiIdx < 4; hiIdx++) {
      for (let loIdx = hiIdx + 1; loIdx < 4; loIdx++) {
        for (const access of ACCESSES) {
          for (const m of [mode(), mode({ nxe: false, smep: true, smap: true })]) {
            // not-present above, reserved below -> P=0 at hiIdx
            let e = pathFor("4K", []);
            e[hiIdx] = { lo: 0, hi: 0 };
            e[loIdx] = poison(e[loIdx] as RawEntry);
            report.add(rig.check({ root: PML4_BASE, va: VA, entries: e, mode: m, access }));
            // reserved above, not-present below -> RSVD at hiIdx
            e = pathFor("4K", []);
            e[hiIdx] = poison(e[hiIdx] as RawEntry);
            e[loIdx] = { lo: 0, hi: 0 };
            report.add(rig.check({ root: PML4_BASE, va: VA, entries: e, mode: m, access }));
            // rights violation (supervisor-only, read-only, XD) above, reserved / not-present below
            const strict: Perm = { rw: false, us: false, xd: true };
            e = pathFor("4K", [0, 1, 2, 3].map((i) => (i === hiIdx ? strict : PERMISSIVE)));
            e[loIdx] = poison(e[loIdx] as RawEntry);
            report.add(rig.check({ root: PML4_BASE, va: VA, entries: e, mode: m, access }));
            e = pathFor("4K", [0, 1, 2, 3].map((i) => (i === hiIdx ? strict : PERMISSIVE)));
            e[loIdx] = { lo: 0, hi: 0 };
            report.add(rig.check({ root: PML4_BASE, va: VA, entries: e, mode: m, access }));
          }
        }
      }
    }
    report.assertClean();
  });
});

describe("5-level paging (CR4.LA57)", () => {
  const five = (perms: readonly Perm[] = [], pteLo = PAGE_4K_LO): RawEntry[] => [
    permEntry(PML4_BASE, 0, perms[0] ?? PERMISSIVE),
    ...pathFor("4K", perms.slice(1)).map((e, i) => (i === 3 ? { ...e, lo: (e.lo & 0xfff) | pteLo } : e)),
  ];

  it("translates with 5 references and sets A in all five entries", () => {
    const rig = new Rig();
    const m = mode({ la57: true });
    const entries = five();
    const c: Case = { root: PML5_BASE, va: VA, entries, mode: m, access: { op: "write", privilege: "user" } };
    expect(rig.check(c)).toEqual([]);
    // Literal check of the outcome and memory.
    const rig2 = new Rig();
    const addrs = rig2.place(c) as number[];
    const r = walk(PML5_BASE as never, VA as never, Access.Write | Access.User, walkerMode(m), rig2.tables);
    expect(r).toMatchObject({ kind: "translation", references: 5, pageShift: 12, physicalAddress: 0x3ab_1234_5abc });
    const got = addrs.map((a) => {
      const o = { lo: 0, hi: 0 };
      rig2.mem.read64(a, o);
      return o.lo & (SDM_A | SDM_D);
    });
    expect(got).toEqual([SDM_A, SDM_A, SDM_A, SDM_A, SDM_A | SDM_D]);
  });

  it("faults (not present, rights) with the expected references, leaving memory untouched", () => {
    const rig = new Rig();
    const report = new Report();
    const m = mode({ la57: true });
    for (const access of ACCESSES) {
      const np = five();
      np[4] = { lo: 0, hi: 0 };
      report.add(rig.check({ root: PML5_BASE, va: VA, entries: np, mode: m, access }));
      report.add(rig.check({ root: PML5_BASE, va: VA, entries: five([{ rw: false, us: false, xd: true }]), mode: m, access }));
    }
    report.assertClean();
    const np = five();
    np[4] = { lo: 0, hi: 0 };
    rig.place({ root: PML5_BASE, va: VA, entries: np, mode: m, access: { op: "read", privilege: "user" } });
    expect(walk(PML5_BASE as never, VA as never, Access.Read | Access.User, walkerMode(m), rig.tables)).toMatchObject({
      kind: "page-fault",
      references: 5,
      errorCode: PFEC_US_BIT,
      level: 1,
    });
  });

  it("full permission matrix over a systematic subset under 5-level paging", () => {
    const rig = new Rig();
    const report = new Report();
    const next = noise(55);
    for (let combo = 0; combo < 1 << 15; combo += 7) {
      const perms: Perm[] = [];
      for (let l = 0; l < 5; l++) {
        const b = combo >> (3 * l);
        perms.push({ rw: (b & 1) !== 0, us: (b & 2) !== 0, xd: (b & 4) !== 0 });
      }
      const m = allModes({ la57: true })[next() % 32] as OracleMode;
      const access = ACCESSES[next() % ACCESSES.length] as OracleAccess;
      report.add(rig.check({ root: PML5_BASE, va: VA, entries: five(perms), mode: m, access }));
    }
    report.assertClean();
  });
});

// ---------------------------------------------------------------------------------------------
// Random structures: everything at once (fixed seed)
// ---------------------------------------------------------------------------------------------

describe("random paging structures (fast-check, fixed seed)", () => {
  const rig = new Rig();

  const entryArb = (level: number) =>
    fc
      .record({
        present: fc.integer({ min: 0, max: 39 }),
        rw: fc.boolean(),
        us: fc.boolean(),
        xd: fc.integer({ min: 0, max: 5 }),
        ps: fc.integer({ min: 0, max: 9 }),
        a: fc.boolean(),
        d: fc.boolean(),
        g: fc.boolean(),
        cache: fc.integer({ min: 0, max: 3 }),
        ignoredLo: fc.integer({ min: 0, max: 7 }),
        ignoredHi: fc.integer({ min: 0, max: 0x7ff }),
        wide: fc.integer({ min: 0, max: 11 }),
        frameLo: fc.integer({ min: 1, max: 0xfffff }),
        frameHi: fc.integer({ min: 0, max: 0xfffff }),
        extraBit: fc.integer({ min: 0, max: 80 }),
      })
      .map((f): RawEntry => {
        let lo = f.frameLo * 4096;
        // Mostly small physical addresses, sometimes anywhere in 51:32.
        let hi = f.wide === 0 ? f.frameHi : f.frameHi & 0xf;
        if (f.present !== 0) lo |= SDM_P;
        if (f.rw) lo |= SDM_RW;
        if (f.us) lo |= SDM_US;
        if (f.a) lo |= SDM_A;
        if (f.d) lo |= SDM_D;
        if (f.g) lo |= SDM_G;
        lo |= (f.cache & 1 ? SDM_PWT : 0) | (f.cache & 2 ? SDM_PCD : 0);
        lo |= f.ignoredLo << 9; // bits 11:9 ignored
        hi |= (f.ignoredHi & 0x7ff) << 20; // bits 62:52 ignored (CR4.PKE = 0)
        if (f.xd === 0) hi |= SDM_XD_HI;
        const largeCapable = level === LEVEL_PDPTE || level === LEVEL_PDE;
        if ((largeCapable && f.ps < 4) || (!largeCapable && f.ps === 0)) lo |= SDM_PS;
        if (largeCapable && (lo & SDM_PS) !== 0) {
          // A page mapping: keep its base aligned (bits 29:13 / 20:13 clear), PAT (bit 12) random.
          lo &= level === LEVEL_PDPTE ? ~0x3fff_f000 : ~0x001f_f000;
          if (f.g) lo |= SDM_PAT_LARGE;
        }
        // Occasionally a bit inside 29:13 (reserved in a large page, address bits otherwise).
        if (f.extraBit >= 13 && f.extraBit <= 29) lo |= 1 << f.extraBit;
        return { lo: lo >>> 0, hi: hi >>> 0 };
      });

  const caseArb = fc
    .record({
      la57: fc.integer({ min: 0, max: 4 }),
      wp: fc.boolean(),
      nxe: fc.boolean(),
      smep: fc.boolean(),
      smap: fc.boolean(),
      ac: fc.boolean(),
      maxPhyAddr: fc.oneof(fc.constantFrom(36, 39, 46, 52), fc.integer({ min: 36, max: 52 })),
      op: fc.constantFrom<Operation>("read", "write", "fetch"),
      privilege: fc.constantFrom<Privilege>(...PRIVILEGES),
      vaHi: fc.integer({ min: 0, max: 0xffff }),
      vaLo: fc.integer({ min: 0, max: 0xffff_ffff }),
      rootFrame: fc.integer({ min: 1, max: 0xfffff }),
      entries: fc.tuple(entryArb(LEVEL_PML5E), entryArb(LEVEL_PML4E), entryArb(LEVEL_PDPTE), entryArb(LEVEL_PDE), entryArb(LEVEL_PTE)),
    })
    .map((r): Case => {
      const la57 = r.la57 === 0;
      return {
        root: r.rootFrame * 4096,
        va: r.vaHi * 2 ** 32 + r.vaLo,
        entries: la57 ? [...r.entries] : r.entries.slice(1),
        mode: { la57, wp: r.wp, nxe: r.nxe, smep: r.smep, smap: r.smap, ac: r.ac, maxPhyAddr: r.maxPhyAddr },
        access: { op: r.op, privilege: r.privilege },
      };
    });

  it("walker agrees with the oracle on 40,000 random walks", () => {
    let ran = 0;
    const reasons = new Map<string, number>();
    fc.assert(
      fc.property(caseArb, (c) => {
        // Entries that would collide in memory are not a meaningful structure: skip them.
        fc.pre(rig.place(c) !== null);
        rig.release();
        const bad = rig.check(c);
        rig.release();
        ran++;
        const why = sdmWalk(c).reason;
        reasons.set(why, (reasons.get(why) ?? 0) + 1);
        if (bad.length > 0) throw new Error(bad.join("\n"));
      }),
      { seed: 0x5d3_0a11, numRuns: 40_000 },
    );
    expect(ran).toBeGreaterThanOrEqual(39_000);
    // The generator must reach every outcome, not only the easy ones.
    for (const why of ["none", "not-present", "reserved", "rights"]) {
      expect(reasons.get(why) ?? 0, why).toBeGreaterThan(2_000);
    }
  });
});

