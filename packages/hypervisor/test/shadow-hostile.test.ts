/**
 * Hostile guests against shadow paging (issue 18), each run on shadow and on EPT beside a
 * well-behaved domain: REP STOS / REP MOVS over a live page table that maps itself, a guest that
 * builds more page tables than its shadow pool holds, guest PTEs pointing just above RAM, and
 * MOV to CR3 with reserved bits. The same guest must behave the same on both MMUs.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { gfn } from "@vtlab/arch";
import { guestExpectedOutputUrl, guestImageUrl, hostileGuestUrl } from "@vtlab/guests";
import { P2mType } from "@vtlab/p2m";
import { DomainError, Hypervisor, IDENT_PT_FRAMES, IDENT_PT_GFN, domainOptions, parseDomainConfig, requiredShadowMemoryKiB, type Domain } from "@vtlab/hypervisor";

const hostile = (name: string) => new Uint8Array(readFileSync(hostileGuestUrl(name)));
const sha256 = () => new Uint8Array(readFileSync(guestImageUrl("sha256")));
const sha256Output = readFileSync(guestExpectedOutputUrl("sha256"), "utf8");

/** Run in slices, yielding between them, so no test holds its worker for long. */
async function runToIdle(hv: Hypervisor, budget = 400_000_000): Promise<void> {
  for (let spent = 0; spent < budget; ) {
    const r = hv.run({ maxInstructions: 2_000_000 });
    spent += 2_000_000;
    if (r.reason === "idle") return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error("the domains did not finish within the budget");
}

interface Pair {
  hv: Hypervisor;
  bad: Domain;
  good: Domain;
}

/** The hostile guest beside sha256 on the same MMU. */
async function besideGood(name: string, hap: boolean, options: { cmdline?: string; memoryMiB?: number; shadowMemoryKiB?: number } = {}): Promise<Pair> {
  const hv = new Hypervisor({ memoryMiB: 512 });
  const bad = hv.createDomain({
    name: "hostile",
    memoryMiB: options.memoryMiB ?? 64,
    hap,
    kernel: hostile(name),
    cmdline: options.cmdline ?? "",
    ...(options.shadowMemoryKiB !== undefined ? { shadowMemoryKiB: options.shadowMemoryKiB } : {}),
  });
  const good = hv.createDomain({ name: "good", memoryMiB: 64, hap, kernel: sha256() });
  await runToIdle(hv);
  expect({ state: good.state, code: good.exitCode, console: good.console }).toEqual({ state: "shutdown", code: 0, console: sha256Output });
  return { hv, bad, good };
}

const passLine = (d: Domain) => /PASS \S+ [0-9a-f]{16}\n$/.exec(d.console)?.[0];

describe("shadow-repstos: memset and memcpy over a live page directory that maps itself", () => {
  it("finishes on both MMUs with the same output; on shadow with a bounded number of #PF exits", async () => {
    const consoles: string[] = [];
    for (const hap of [true, false]) {
      const { bad } = await besideGood("shadow-repstos", hap, { cmdline: "rounds=16" });
      expect({ state: bad.state, code: bad.exitCode, crash: bad.crashReason }).toEqual({ state: "shutdown", code: 0, crash: undefined });
      consoles.push(bad.console);
      if (!hap) {
        const s = bad.stats();
        // 16 rounds of 511-entry memset + memcpy over the directory, 16 of a 512-entry leaf
        // table: one emulated exit per 4 KiB written, not one (or endless ones) per element.
        expect(s.exitsByReason.ExceptionOrNmi).toBeLessThan(16 * 12 + 200);
        expect(s.shadow!.emulatedStringElements).toBeGreaterThanOrEqual(16 * 2 * 511 * 8);
        expect(s.shadow!.crashes).toBe(0);
      }
    }
    expect(consoles[1]).toBe(consoles[0]);
    expect(consoles[0]).toMatch(/^shadow-repstos: 16 rounds\nPASS shadow-repstos [0-9a-f]{16}\n$/);
  });
});

describe("shadow-ptflood: more page tables than the shadow pool holds (xl.cfg shadow_memory)", () => {
  it("recycles shadows; the pool bounds the shadow frames; the output is EPT's", async () => {
    const ept = await besideGood("shadow-ptflood", true, { cmdline: "tables=1024" });
    const pool = 128; // KiB: 32 shadow pages for 1024 guest leaf tables
    const { bad } = await besideGood("shadow-ptflood", false, { cmdline: "tables=1024", shadowMemoryKiB: pool });
    expect({ state: bad.state, code: bad.exitCode, crash: bad.crashReason }).toEqual({ state: "shutdown", code: 0, crash: undefined });
    expect(passLine(bad)).toBe(passLine(ept.bad));
    const s = bad.stats().shadow!;
    expect(s.recycled).toBeGreaterThan(1024);
    expect(s.peakShadowPages).toBeLessThanOrEqual(pool / 4);
    expect(s.blows).toBe(0);
  });

  it("a shadow domain's pool defaults to libxl's size: 1 MiB per vCPU plus 8 KiB per MiB of RAM", () => {
    expect(requiredShadowMemoryKiB(1024, 1)).toBe(1024 + 8192);
    expect(requiredShadowMemoryKiB(64, 2)).toBe(2048 + 512);
    const hv = new Hypervisor({ memoryMiB: 256 });
    const d = hv.createDomain({ name: "s", memoryMiB: 64, vcpus: 2, hap: false, kernel: sha256() });
    expect((d.paging as { poolSize: number }).poolSize).toBe((2048 + 512) / 4);
    const e = hv.createDomain({ name: "t", memoryMiB: 64, hap: false, shadowMemoryKiB: 4096, kernel: sha256() });
    expect((e.paging as { poolSize: number }).poolSize).toBe(1024);
  });

  it("refuses a pool too small to run on, naming shadow_memory", () => {
    const hv = new Hypervisor({ memoryMiB: 256 });
    expect(() => hv.createDomain({ name: "s", memoryMiB: 64, hap: false, shadowMemoryKiB: 32, kernel: sha256() })).toThrow(DomainError);
    expect(() => hv.createDomain({ name: "s", memoryMiB: 64, hap: false, shadowMemoryKiB: 32, kernel: sha256() })).toThrow(/shadow_memory: 32 KiB; give an integer >= 64/);
  });

  it("xl.cfg shadow_memory (MiB) reaches the domain as KiB; bad values name the key", () => {
    const base = 'name = "s"\nmemory = 64\nhap = 0\nkernel = "k.elf"\n';
    const cfg = parseDomainConfig(`${base}shadow_memory = 3\n`, "s.cfg");
    expect(cfg.shadowMemory).toBe(3);
    expect(domainOptions(cfg, { kernel: new Uint8Array() }).shadowMemoryKiB).toBe(3072);
    expect(domainOptions(parseDomainConfig(base, "s.cfg"), { kernel: new Uint8Array() }).shadowMemoryKiB).toBeUndefined();
    expect(() => parseDomainConfig(`${base}shadow_memory = 0\n`, "s.cfg")).toThrow(/s\.cfg:5: key "shadow_memory"/);
    expect(() => parseDomainConfig(`${base}shadow_memory = "lots"\n`, "s.cfg")).toThrow(/s\.cfg:5: key "shadow_memory"/);
  });
});

describe("shadow-aboveram: guest PTEs pointing just above RAM", () => {
  it("read and write what EPT gives there (unassigned space: all ones, writes dropped), not hypervisor frames", async () => {
    const consoles: string[] = [];
    for (const hap of [true, false]) {
      const { bad } = await besideGood("shadow-aboveram", hap);
      expect({ state: bad.state, code: bad.exitCode, crash: bad.crashReason }).toEqual({ state: "shutdown", code: 0, crash: undefined });
      consoles.push(bad.console);
    }
    expect(consoles[1]).toBe(consoles[0]);
    expect(consoles[0]).toContain("GPA 0x4000000: read 0xffffffffffffffff, after writing 0xffffffffffffffff\n");
    expect(consoles[0]).toContain("GPA 0x4005000: read 0xffffffffffffffff, after writing 0xffffffffffffffff\n");
  });

  it("a guest frame with nothing behind it (4 GiB) crashes the hostile domain on both MMUs, and only it", async () => {
    for (const hap of [true, false]) {
      const { bad } = await besideGood("shadow-aboveram", hap, { cmdline: `gpa=${2 ** 32}` });
      expect(bad.state).toBe("crashed");
      expect(bad.crashReason).toMatch(/0x100000000/);
    }
  });

  it("the paging-off identity table is in no p2m: its frames are no guest frame's, its reserved place maps nothing", () => {
    const hv = new Hypervisor({ memoryMiB: 512 });
    const d = hv.createDomain({ name: "s", memoryMiB: 64, hap: false, kernel: sha256() });
    for (let k = 0; k < IDENT_PT_FRAMES; k++) expect(d.p2m.lookup(gfn(IDENT_PT_GFN + k)).type).toBe(P2mType.Mmio);
    const ident = d.identityPageTable!;
    for (const run of d.p2m.runs()) {
      if (run.type !== P2mType.Ram) continue;
      expect(ident < run.mfn * 4096 || ident >= (run.mfn + run.count) * 4096).toBe(true);
    }
  });
});

describe("shadow-cr3rsvd: MOV to CR3 with reserved bits", () => {
  it("#GP(0) with CR3 unchanged on both MMUs (the shadow domain used to crash); ignored low bits load", async () => {
    const consoles: string[] = [];
    for (const hap of [true, false]) {
      const { bad } = await besideGood("shadow-cr3rsvd", hap);
      expect({ state: bad.state, code: bad.exitCode, crash: bad.crashReason }).toEqual({ state: "shutdown", code: 0, crash: undefined });
      consoles.push(bad.console);
    }
    expect(consoles[1]).toBe(consoles[0]);
    expect(consoles[0]).toContain("CR3 0x8000000102000: #GP (error code 0), CR3 now 0x102000\n");
    expect(consoles[0]).toContain("CR3 0x8000000000102000: #GP (error code 0), CR3 now 0x102000\n");
  });
});
