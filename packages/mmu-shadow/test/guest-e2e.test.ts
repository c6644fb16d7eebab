/**
 * A machine-code guest on shadow paging (cpu-vmx in VMX non-root operation + ShadowPaging): the
 * guest writes its own PTEs (emulated: MOV, LOCK OR, XCHG, LOCK CMPXCHG), uses a 2 MiB page
 * (splintered), reads and reloads CR3 (virtualized), INVLPGs, and takes a true #PF that its own
 * handler fixes. Guest RAM is at machine 4 GiB, so every access proves the shadow translation.
 * Code assembled with gcc (GNU as, Intel syntax); source in test/guest-e2e.S.
 */
import { describe, expect, it } from "vitest";
import { PTE_A, PTE_D, PTE_PS, PTE_US, Vector } from "@vtlab/arch";
import { ExitReason, exitReasonName } from "@vtlab/cpu-vmx";
import { FLAGS, GDT, bytes, domain, guest, runToHlt, setGate, writeGdt, type Domain } from "./fixture.js";

const CODE = 0x40_0000;
const PML4 = 0x10_0000;
const PT_NEW = 0x10_7000;
const CODE_HEX =
  "48c70425000050001100000048c7c003007000488904250070100048c7c30000004048c7032200000048b9000000800000000048c78108100000330000000f20d848890425080050000f22d8f048830c2500701000040f013b488b13488914251000500048c7c600100040488b16488914251800500048c7c00300700048c7c207007000f0480fb11425007010000f94042530005000f4";
const HANDLER_HEX = "41584c89042520005000410f20d14c890c252800500048c7c003107000488704250870100048cf";

/** Identity 0..6 MiB with 4 KiB pages; an empty L1 for GVA 1 GiB; a 2 MiB page at GVA 2 GiB -> GPA 8 MiB. */
function buildTables(d: Domain): void {
  d.write64(PML4, 0x10_1000 | FLAGS);
  d.write64(0x10_1000, 0x10_2000 | FLAGS);
  d.write64(0x10_1000 + 8, 0x10_6000 | FLAGS);
  d.write64(0x10_1000 + 16, 0x10_8000 | FLAGS);
  for (let t = 0; t < 3; t++) {
    d.write64(0x10_2000 + t * 8, (0x10_3000 + t * 0x1000) | FLAGS);
    for (let i = 0; i < 512; i++) d.write64(0x10_3000 + t * 0x1000 + i * 8, (t * 0x20_0000 + i * 0x1000) | FLAGS);
  }
  d.write64(0x10_6000, PT_NEW | FLAGS);
  d.write64(0x10_8000, 0x80_0000 | FLAGS | PTE_PS);
}

function setup(outOfSync = false) {
  const d = domain();
  writeGdt(d);
  buildTables(d);
  d.memory.writeBytes(d.m(CODE), bytes(CODE_HEX));
  d.memory.writeBytes(d.m(CODE + 0x100), bytes(HANDLER_HEX));
  setGate(d, Vector.PF, CODE + 0x100);
  d.write64(0x70_1000, 0x44);
  const g = guest(d, PML4, CODE, 0x51_0000, { outOfSync });
  return { d, g };
}

describe("a machine-code guest on shadow paging", () => {
  for (const oos of [false, true]) {
    it(`runs on shadows filled lazily, with emulated PTE writes and a true #PF reflected (out-of-sync ${oos ? "on" : "off"})`, () => {
      const { d, g } = setup(oos);
      expect(g.sp.shadowRoot(g.cpu)).not.toBe(PML4 + 4 * 1024 ** 3);
      const r = runToHlt(g);
      expect(r.crash).toBeUndefined();
      // Data landed in the machine frames the guest walk composed with the p2m gives.
      expect(d.read64(0x50_0000)).toBe(0x11);
      expect(d.read64(0x70_0000)).toBe(0x22);
      expect(d.read64(0x80_1008)).toBe(0x33);
      expect(d.memory.read32(0x70_0000)).toBe(0); // not at the machine address equal to the GPA
      // CR3 store returned the guest's CR3, not the shadow root.
      expect(d.read64(0x50_0008)).toBe(PML4);
      expect(d.read64(0x50_0010)).toBe(0x22);
      // The true fault: the guest handler saw error code 0 (read, not present) and CR2.
      expect(d.read64(0x50_0020)).toBe(0);
      expect(d.read64(0x50_0028)).toBe(0x4000_1000);
      expect(d.read64(0x50_0018)).toBe(0x44);
      expect(g.sp.stats.faults.guest).toBe(1);
      // (Other injections re-deliver the #PF after a fill its delivery needed: IDT, stack, GDT.)
      expect(g.outcomes.filter((o) => o.kind === "inject" && o.cr2 !== undefined)).toEqual([{ kind: "inject", vector: Vector.PF, errorCode: 0, cr2: 0x4000_1000 }]);
      // LOCK CMPXCHG failed (the PTE had gained US and A/D): ZF = 0 stored by SETZ.
      expect(d.memory.read8(d.m(0x50_0030))).toBe(0);
      // Guest A/D exact: PT_NEW[0] written (A|D), PT_NEW[1] only read (A, no D), the large page written (D).
      expect(d.read64(PT_NEW)).toBe(0x70_0000 | FLAGS | PTE_US | PTE_A | PTE_D);
      expect(d.read64(PT_NEW + 8)).toBe(0x70_1000 | FLAGS | PTE_A);
      expect(d.read64(0x10_8000)).toBe(0x80_0000 | FLAGS | PTE_PS | PTE_A | PTE_D);
      // Untouched identity pages were never accessed.
      expect(d.read64(0x10_3000 + 0x1ff * 8)).toBe(0x1f_f000 | FLAGS);
      expect(d.read64(GDT)).toBe(0);
      const s = g.sp.stats;
      // The first MOV ran before PT_NEW was a shadowed table (nothing had walked through it): no exit.
      if (!oos) expect(s.emulatedWrites).toBe(3); // LOCK OR, XCHG, LOCK CMPXCHG
      else expect(s.unsyncs).toBeGreaterThan(0);
      expect(s.cr3Loads).toBe(1);
      expect(s.cr3CacheHits).toBe(1);
      expect(s.exits[exitReasonName(ExitReason.Invlpg)]).toBe(1);
      expect(g.sp.shadowPagesInUse).toBeGreaterThan(4);
    });
  }

  it("an unsupported store form into a page table crashes the domain with a clear message", () => {
    const d = domain();
    writeGdt(d);
    buildTables(d);
    // mov word ptr [0x100800], 0x1234 (a 2-byte store into the shadowed PML4); hlt
    d.memory.writeBytes(d.m(CODE), bytes("66c70425000810003412f4"));
    const g = guest(d, PML4, CODE, 0x51_0000);
    const r = runToHlt(g);
    expect(r.crash).toMatch(/unsupported write to a guest page table .*2-byte operand/);
  });
});
