/**
 * A VM exit's save of the guest segment registers is made on the first access to one of their
 * VMCS fields (Vmcs.deferSave), and a VM entry from the same vCPU with it still pending keeps the
 * registers as they are. Observable behaviour is the eager save's: every read after an exit sees
 * the segments as the guest left them; a VMWRITE after an exit is what the next entry loads; a
 * bad access-rights value is refused; another vCPU entering with the VMCS gets the saved state.
 */
import { describe, expect, it } from "vitest";
import { ExitReason, Seg, VmcsField as F, type Vmcs, vmEntry } from "@vtlab/cpu-vmx";
import { machine64, type TestMachine } from "./machine.js";
import { guestVmcs } from "./vmx-fixture.js";
import { vmcsEagerSlot, vmcsSlot } from "../src/vmx/vmcs.js";

// cpuid; xor eax, eax; mov ds, ax; cpuid; mov eax, 0x10; mov ds, ax; cpuid; jmp back to the start
const CODE = "0fa2" + "31c0" + "8ed8" + "0fa2" + "b810000000" + "8ed8" + "0fa2" + "ebed";

function runToCpuid(m: TestMachine, v: Vmcs): void {
  const r = m.cpu.run(1000);
  expect(r.kind === "vmexit" && r.exit.reason === ExitReason.Cpuid).toBe(true);
  v.setNatural(F.GUEST_RIP, v.readNatural(F.GUEST_RIP) + 2);
}

describe("deferred save of the guest segment registers", () => {
  it("reads what the guest left in them at every exit (a null DS, then the flat one again)", () => {
    const m = machine64(CODE);
    const v = guestVmcs(m);
    expect(vmEntry(m.cpu, v, true)).toBeUndefined();
    runToCpuid(m, v);
    expect(v.read32(F.GUEST_DS_SELECTOR)).toBe(0x10);
    const flatAr = v.read32(F.GUEST_DS_AR_BYTES);
    expect(flatAr & 0x1_0000).toBe(0);
    expect(vmEntry(m.cpu, v, false)).toBeUndefined();
    runToCpuid(m, v);
    // MOV DS, a null selector in 64-bit mode: DS is unusable (SDM 28.3.2: the unusable bit, 16).
    expect(v.vmread(F.GUEST_DS_SELECTOR)).toBe(0);
    expect(v.read32(F.GUEST_DS_AR_BYTES)).toBe(0x1_0000);
    expect(v.snapshot().GUEST_CS_SELECTOR).toBe("0x08");
    expect(vmEntry(m.cpu, v, false)).toBeUndefined();
    // No field read between this exit and the entry after it: the registers go through as they are.
    runToCpuid(m, v);
    expect(vmEntry(m.cpu, v, false)).toBeUndefined();
    runToCpuid(m, v); // the first CPUID again, after the JMP
    expect(v.read32(F.GUEST_DS_SELECTOR)).toBe(0x10);
    // The descriptor's access rights, loaded by MOV DS (the accessed bit, 0, as the GDT has it:
    // the model does not set it on a load).
    expect(v.read32(F.GUEST_DS_AR_BYTES) & ~1).toBe(flatAr & ~1);
    expect(vmEntry(m.cpu, v, false)).toBeUndefined();
    runToCpuid(m, v);
    expect(v.read32(F.GUEST_DS_SELECTOR)).toBe(0);
    expect(v.read32(F.GUEST_DS_AR_BYTES)).toBe(0x1_0000);
  });

  it("loads a segment field the hypervisor wrote after the exit", () => {
    const m = machine64(CODE);
    const v = guestVmcs(m);
    expect(vmEntry(m.cpu, v, true)).toBeUndefined();
    runToCpuid(m, v);
    expect(v.vmwrite(F.GUEST_FS_BASE, 0x1234_5000)).toBeUndefined();
    expect(v.vmwrite(F.GUEST_GS_SELECTOR, 0x10)).toBeUndefined();
    expect(vmEntry(m.cpu, v, false)).toBeUndefined();
    expect(m.cpu.seg[Seg.FS]!.base).toBe(0x1234_5000);
    expect(m.cpu.seg[Seg.GS]!.selector).toBe(0x10);
    // The others are the guest's, as saved: CS unchanged.
    expect(m.cpu.seg[Seg.CS]!.selector).toBe(0x08);
  });

  it("refuses a bad CS access-rights value written after the exit, and runs on once it is mended", () => {
    const m = machine64(CODE);
    const v = guestVmcs(m);
    expect(vmEntry(m.cpu, v, true)).toBeUndefined();
    runToCpuid(m, v);
    const ar = v.read32(F.GUEST_CS_AR_BYTES);
    v.setField(F.GUEST_CS_AR_BYTES, ar & ~0x80); // not present
    expect(vmEntry(m.cpu, v, false)).toMatchObject({ kind: "entry-failure" });
    v.setField(F.GUEST_CS_AR_BYTES, ar);
    expect(vmEntry(m.cpu, v, false)).toBeUndefined();
    runToCpuid(m, v);
  });

  it("gives another vCPU entering with the VMCS the state the exit saved", () => {
    const a = machine64(CODE);
    const v = guestVmcs(a);
    expect(vmEntry(a.cpu, v, true)).toBeUndefined();
    runToCpuid(a, v);
    expect(vmEntry(a.cpu, v, false)).toBeUndefined();
    runToCpuid(a, v); // DS is null now, on a; nothing read it yet
    const b = machine64(CODE);
    b.cpu.seg[Seg.DS]!.selector = 0x10;
    expect(vmEntry(b.cpu, v, false)).toBeUndefined();
    expect(b.cpu.seg[Seg.DS]!.selector).toBe(0);
    expect(b.cpu.seg[Seg.DS]!.attr).toBe(0);
    expect(b.cpu.seg[Seg.CS]!.selector).toBe(0x08);
  });

  it("keeps the unchecked (eager) slot accessors off the lazily saved segment fields", () => {
    expect(() => vmcsEagerSlot(F.GUEST_CS_AR_BYTES)).toThrow(/saved lazily/);
    expect(() => vmcsEagerSlot(F.GUEST_LDTR_BASE)).toThrow(/saved lazily/);
    expect(vmcsEagerSlot(F.GUEST_RIP)).toBe(vmcsSlot(F.GUEST_RIP));
  });

  it("leaves a segment's fields as they were across entries whose save is pending (a 4 GiB limit stays 0xFFFFFFFF)", () => {
    const m = machine64(CODE);
    const v = guestVmcs(m);
    expect(vmEntry(m.cpu, v, true)).toBeUndefined();
    for (let k = 0; k < 3; k++) {
      runToCpuid(m, v);
      expect(vmEntry(m.cpu, v, false)).toBeUndefined();
    }
    const cs = m.cpu.seg[Seg.CS]!;
    cs.limit = 0xffff_ffff;
    runToCpuid(m, v);
    expect(vmEntry(m.cpu, v, false)).toBeUndefined();
    expect(cs.limit).toBe(0xffff_ffff);
    expect(v.read32(F.GUEST_CS_LIMIT)).toBe(0xffff_ffff);
    expect(v.read32(F.GUEST_CS_SELECTOR)).toBe(0x08);
  });
});
