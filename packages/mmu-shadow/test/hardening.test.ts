/**
 * Hostile uses of shadow paging (issue 18): REP STOS into a live table that maps itself, a
 * guest that builds more page tables than the shadow pool holds, CR3 loads with reserved bits.
 */
import { describe, expect, it } from "vitest";
import { PTE_P, PTE_PS, PTE_RW, Vector } from "@vtlab/arch";
import { ExitReason, VmcsField as F, vmEntry } from "@vtlab/cpu-vmx";
import { KCODE, OpsGuest, type OpResult } from "../src/index.js";
import { applyOutcome, bytes, domain, guest, IDT, setGate, writeGdt, type Domain, type Guest } from "./fixture.js";
import { nestedPagingFactory } from "./ept-factory.js";

const PML4 = 0x10_0000;
const PDPT = 0x10_1000;
const PD = 0x10_2000;
const CODE = 0x4000;
const STACK = 0x8000;
const PF_HANDLER = 0x5000;

/**
 * PML4 -> PDPT -> PD with 2 MiB pages identity-mapping the 16 MiB of RAM. The PD lies in the
 * first 2 MiB, so it maps itself through PD[0]: writing it walks through it.
 */
function selfMappedPd(d: Domain): void {
  writeGdt(d);
  d.write64(PML4, PDPT | PTE_P | PTE_RW);
  d.write64(PDPT, PD | PTE_P | PTE_RW);
  for (let i = 0; i < 8; i++) d.write64(PD + i * 8, i * 0x20_0000 + (PTE_P | PTE_RW | PTE_PS));
  d.memory.write8(d.m(PF_HANDLER), 0xf4); // hlt
  setGate(d, Vector.PF, PF_HANDLER);
}

/** Run to HLT, counting exits; stops at `maxExits` instead of throwing (a livelock is a finding). */
function run(g: Guest, maxExits: number): { exits: number; halted: boolean; crash?: string } {
  return runFrom(g, maxExits, true, 0);
}

function runFrom(g: Guest, maxExits: number, launch: boolean, from: number): { exits: number; halted: boolean; crash?: string } {
  for (let n = from; n < maxExits; n++) {
    const e = vmEntry(g.cpu, g.vmcs, launch);
    if (e !== undefined) throw new Error(`VM entry failed: ${JSON.stringify(e)}`);
    launch = false;
    const r = g.cpu.run(1_000_000);
    if (r.kind !== "vmexit") throw new Error(`expected a VM exit, got ${r.kind}`);
    if (r.exit.reason === ExitReason.Hlt) return { exits: n, halted: true };
    const o = g.sp.handleExit(g.cpu, g.vmcs, r.exit);
    if (o.kind === "crash") return { exits: n, halted: false, crash: o.reason };
    if (o.kind === "mmio") throw new Error("unexpected MMIO");
    applyOutcome(g, o, r.exit);
  }
  return { exits: maxExits, halted: false };
}

/** `run` in chunks of 2,000 exits, yielding to the event loop between them. */
async function runYielding(g: Guest, maxExits: number): Promise<{ exits: number; halted: boolean; crash?: string }> {
  let r = runFrom(g, Math.min(2000, maxExits), true, 0);
  while (!r.halted && r.crash === undefined && r.exits < maxExits) {
    await new Promise((resolve) => setImmediate(resolve));
    r = runFrom(g, Math.min(r.exits + 2000, maxExits), false, r.exits);
  }
  return r;
}

describe("REP STOS into a live page table that maps itself (not the root)", () => {
  for (const outOfSync of [false, true]) {
    it(`zeroes PD[1..7] with a bounded number of exits, and the shadow follows (out-of-sync ${outOfSync ? "on" : "off"})`, () => {
      const d = domain();
      selfMappedPd(d);
      d.write64(0x20_0000, 0x5a);
      d.memory.writeBytes(
        d.m(CODE),
        bytes(
          "48c7c300002000" + // mov rbx, 0x200000
            "488b03" + // mov rax, [rbx]      (fills the shadow of PD[1])
            "48c7c708201000" + // mov rdi, PD + 8
            "48c7c107000000" + // mov rcx, 7
            "31c0" + // xor eax, eax
            "f348ab" + // rep stosq          (PD[1..7] = 0: the PD is shadowed and maps itself)
            "488b03" + // mov rax, [rbx]      (#PF now: PD[1] is not present)
            "f4", // hlt
        ),
      );
      const g = guest(d, PML4, CODE, STACK, { outOfSync });
      const r = run(g, 200);
      expect(r).toMatchObject({ halted: true });
      expect(r.exits).toBeLessThan(16); // was: unshadow, re-shadow by the retry's own fill, forever
      expect(g.vmcs.readNatural(F.GUEST_RIP)).toBe(PF_HANDLER); // the guest's #PF handler ran
      expect(g.cpu.cr2).toBe(0x20_0000);
      for (let i = 1; i < 8; i++) expect(d.read64(PD + i * 8)).toBe(0);
      expect(d.read64(PD) & ~0x60).toBe(PTE_P | PTE_RW | PTE_PS); // PD[0] kept (A and D as the walks set them)
      expect(g.cpu.regAddr(7)).toBe(PD + 64);
      expect(g.cpu.regAddr(1)).toBe(0);
      expect(g.sp.stats.emulatedStringElements).toBe(7);
    });
  }

  it("REP STOSQ running off the end of the table into plain RAM, then STD; REP STOSB downward over the table", () => {
    const d = domain();
    selfMappedPd(d);
    d.write64(0x20_0000, 0x5a);
    d.memory.writeBytes(
      d.m(CODE),
      bytes(
        "48c7c300002000" + // mov rbx, 0x200000
          "488b03" + // mov rax, [rbx]
          "48c7c7f02f1000" + // mov rdi, PD + 0xff0
          "48c7c104000000" + // mov rcx, 4
          "48c7c034120000" + // mov rax, 0x1234    (not present: bit 0 clear)
          "f348ab" + // rep stosq          (PD[510], PD[511], then two qwords of RAM at 0x103000)
          "48c7c73f201000" + // mov rdi, PD + 0x3f
          "48c7c138000000" + // mov rcx, 56
          "fd" + // std
          "31c0" + // xor eax, eax
          "f3aa" + // rep stosb          (bytes PD+0x3f down to PD+8: PD[1..7] = 0)
          "fc" + // cld
          "488b03" + // mov rax, [rbx]      (#PF)
          "f4",
      ),
    );
    const g = guest(d, PML4, CODE, STACK);
    const r = run(g, 200);
    expect(r).toMatchObject({ halted: true });
    expect(r.exits).toBeLessThan(16);
    expect(g.vmcs.readNatural(F.GUEST_RIP)).toBe(PF_HANDLER);
    expect([d.read64(PD + 510 * 8), d.read64(PD + 511 * 8), d.read64(0x10_3000), d.read64(0x10_3008)]).toEqual([0x1234, 0x1234, 0x1234, 0x1234]);
    for (let i = 1; i < 8; i++) expect(d.read64(PD + i * 8)).toBe(0);
    expect(g.cpu.regAddr(7)).toBe(PD + 7);
    expect(g.cpu.regAddr(1)).toBe(0);
    expect(g.sp.stats.emulatedStringElements).toBe(2 + 56);
  });

  it("REP MOVSB copying saved entries back into the table restores the mappings (memcpy into a live table)", () => {
    const d = domain();
    selfMappedPd(d);
    d.write64(0x20_0000, 0x5a);
    for (let i = 1; i < 8; i++) d.write64(0x6000 + i * 8, d.read64(PD + i * 8)); // the saved PD[1..7]
    d.memory.writeBytes(
      d.m(CODE),
      bytes(
        "48c7c300002000" + // mov rbx, 0x200000
          "488b03" + // mov rax, [rbx]
          "48c7c708201000" + // mov rdi, PD + 8
          "48c7c107000000" + // mov rcx, 7
          "31c0" + // xor eax, eax
          "f348ab" + // rep stosq          (PD[1..7] = 0)
          "48c7c708201000" + // mov rdi, PD + 8
          "48c7c608600000" + // mov rsi, 0x6008
          "48c7c138000000" + // mov rcx, 56
          "f3a4" + // rep movsb          (PD[1..7] restored byte by byte)
          "488b03" + // mov rax, [rbx]      (maps again: no #PF)
          "f4",
      ),
    );
    const g = guest(d, PML4, CODE, STACK);
    const r = run(g, 200);
    expect(r).toMatchObject({ halted: true });
    expect(r.exits).toBeLessThan(16);
    expect(g.vmcs.readNatural(F.GUEST_RIP)).toBe(CODE + 0x37);
    expect(g.cpu.regAddr(0)).toBe(0x5a);
    expect([g.cpu.regAddr(7), g.cpu.regAddr(6), g.cpu.regAddr(1)]).toEqual([PD + 64, 0x6040, 0]);
    expect(g.sp.stats.emulatedStringElements).toBe(7 + 56);
  });
});

describe("a page-table write the emulator does not take, on a table that maps itself", () => {
  it("ADD to a PDE: unshadow and retry once, then crash the domain instead of livelocking", () => {
    const d = domain();
    selfMappedPd(d);
    d.memory.writeBytes(
      d.m(CODE),
      bytes(
        "48c7c300002000" + // mov rbx, 0x200000
          "488b03" + // mov rax, [rbx]
          "48c7c708201000" + // mov rdi, PD + 8
          "31c0" + // xor eax, eax
          "480107" + // add [rdi], rax     (not an emulated PTE store form)
          "f4",
      ),
    );
    const g = guest(d, PML4, CODE, STACK);
    const r = run(g, 200);
    expect(r.halted).toBe(false);
    expect(r.exits).toBeLessThan(16);
    expect(r.crash).toMatch(/unsupported write to a guest page table .*RIP 0x4013: add.*unshadowing it did not help: the retry shadowed it again/);
    expect(g.sp.stats.unshadows).toBe(1);
  });
});

describe("CR3 with reserved bits: #GP(0), the same on shadow and on EPT", () => {
  for (const mode of ["shadow", "ept"] as const) {
    it(`${mode}: MOV to CR3 with a bit at or above MAXPHYADDR (46) faults; ignored low bits load`, () => {
      const g = new OpsGuest(mode === "ept" ? { mode, ept: nestedPagingFactory } : { mode });
      // #GP goes to the harness's HLT handler too; the operation reports the error code it pushed.
      const handler = KCODE + 0x100;
      g.d.memory.write32(g.d.m(0x2000 + Vector.GP * 16), (0x08 << 16) | (handler & 0xffff));
      g.d.memory.write32(g.d.m(0x2000 + Vector.GP * 16 + 4), ((handler & 0xffff0000) | 0x8e00) >>> 0);
      expect(IDT).toBe(0x2000);
      const kpml4 = 0x10_0000;
      for (const bad of [2 ** 46 + kpml4, 2 ** 51 + kpml4, 2 ** 63]) {
        const r: OpResult = g.loadCr3(bad);
        expect(r, `CR3 0x${bad.toString(16)}`).toEqual({ kind: "pf", errorCode: 0, cr2: 0 });
      }
      // Bits 2:0 and 11:5 are ignored with CR4.PCIDE = 0 (SDM Table 4-12): the load succeeds.
      expect(g.loadCr3(kpml4 | 0xfe7)).toMatchObject({ kind: "ok" });
      expect(g.load(0x20_0000)).toMatchObject({ kind: "ok" });
    });
  }
});

describe("a bounded shadow pool (Xen's shadow_memory): a guest with more page tables than the pool holds", () => {
  const L1S = 2048;
  const L1_BASE = 0x40_0000; // 2048 L1 tables at 4..12 MiB
  const DATA1 = 0x30_0000;
  const DATA2 = 0x30_1000;
  const PDPT_HI = 0x10_3000; // PML4[1]: VA 2^39 and up
  const PD_HI = 0x10_4000; // four PDs, 512 L1s each

  function build(): Domain {
    const d = domain();
    selfMappedPd(d);
    d.write64(PML4 + 8, PDPT_HI | PTE_P | PTE_RW);
    for (let k = 0; k < 4; k++) d.write64(PDPT_HI + k * 8, PD_HI + k * 0x1000 + (PTE_P | PTE_RW));
    for (let i = 0; i < L1S; i++) {
      d.write64(PD_HI + i * 8, L1_BASE + i * 0x1000 + (PTE_P | PTE_RW));
      d.write64(L1_BASE + i * 0x1000, DATA1 | PTE_P | PTE_RW);
    }
    d.write64(DATA1, 0x55);
    d.write64(DATA2, 0x77);
    d.memory.writeBytes(
      d.m(CODE),
      bytes(
        "48bb0000000080000000" + // mov rbx, 2^39
          "48c7c100080000" + // mov rcx, 2048
          "488b03" + // 1: mov rax, [rbx]   (one page through each L1)
          "4881c300002000" + // add rbx, 2 MiB
          "48ffc9" + // dec rcx
          "75f1" + // jnz 1b
          "48bb0000000080000000" + // mov rbx, 2^39
          "48c7c200004000" + // mov rdx, L1_BASE
          "48c7c100080000" + // mov rcx, 2048
          "48c7c603103000" + // mov rsi, DATA2 | P | RW
          "488932" + // 2: mov [rdx], rsi   (rewrite L1[0]: emulated if still shadowed, native if recycled)
          "0f013b" + // invlpg [rbx]
          "488b03" + // mov rax, [rbx]
          "4883f877" + // cmp rax, 0x77
          "7514" + // jne fail
          "4881c300002000" + // add rbx, 2 MiB
          "4881c200100000" + // add rdx, 4 KiB
          "48ffc9" + // dec rcx
          "75de" + // jnz 2b
          "f4" + // hlt
          "4989d8" + // fail: mov r8, rbx
          "f4",
      ),
    );
    return d;
  }

  it("recycles shadows when the pool is full; the shadow frames stay within the pool and translation stays exact", async () => {
    const pool = 256;
    const d = build();
    const before = d.frames.inUse;
    const g = guest(d, PML4, CODE, STACK, { poolPages: pool, outOfSync: true });
    const r = await runYielding(g, 40_000);
    expect(r).toMatchObject({ halted: true });
    expect(g.vmcs.readNatural(F.GUEST_RIP)).toBe(CODE + 0x61); // the success HLT, not the mismatch one
    expect(g.cpu.regAddr(1)).toBe(0);
    const s = g.sp.stats;
    expect(s.recycled).toBeGreaterThan(L1S);
    expect(s.peakShadowPages).toBeLessThanOrEqual(pool);
    expect(g.sp.shadowPagesInUse).toBeLessThanOrEqual(pool);
    expect(d.frames.inUse - before).toBeLessThanOrEqual(pool);
    expect(s.blows).toBe(0);
  });

  it("without a bound the same guest holds a shadow for every table", async () => {
    const d = build();
    const g = guest(d, PML4, CODE, STACK, { outOfSync: true });
    expect(await runYielding(g, 40_000)).toMatchObject({ halted: true });
    expect(g.sp.stats.recycled).toBe(0);
    expect(g.sp.shadowPagesInUse).toBeGreaterThan(L1S);
  });

  it("refuses a pool below the minimum", () => {
    const d = build();
    expect(() => guest(d, PML4, CODE, STACK, { poolPages: 4 })).toThrow(/poolPages 4 is below the minimum of 16/);
  });
});
