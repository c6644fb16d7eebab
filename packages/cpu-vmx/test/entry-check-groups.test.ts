/**
 * VM entry re-makes a group of checks (controls, host state, guest state) only when a field of
 * the group changed value since the last entry that passed them (Vmcs.changed): every bad value
 * written between an exit and the next entry is still caught, with the failure the full checks
 * give, whichever group it is in, and whether it is written by VMWRITE or by the processor's
 * own field write; a VMCS whose checks passed on one vCPU is checked in full on another.
 */
import { describe, expect, it } from "vitest";
import { ExitReason, VmcsField as F, type Vmcs, vmEntry } from "@vtlab/cpu-vmx";
import { machine64, type TestMachine } from "./machine.js";
import { guestVmcs } from "./vmx-fixture.js";

/** A guest in a CPUID loop, entered and run to its first exit. */
function atExit(): { m: TestMachine; v: Vmcs } {
  const m = machine64("0fa2ebfc"); // top: cpuid; jmp top
  const v = guestVmcs(m);
  expect(vmEntry(m.cpu, v, true)).toBeUndefined();
  const r = m.cpu.run(100);
  expect(r.kind).toBe("vmexit");
  v.setNatural(F.GUEST_RIP, v.readNatural(F.GUEST_RIP) + 2);
  return { m, v };
}

/** Resume, run to the next exit, skip the CPUID: the loop goes on. */
function resumeOnce(m: TestMachine, v: Vmcs): void {
  expect(vmEntry(m.cpu, v, false)).toBeUndefined();
  const r = m.cpu.run(100);
  expect(r.kind === "vmexit" && r.exit.reason === ExitReason.Cpuid).toBe(true);
  v.setNatural(F.GUEST_RIP, v.readNatural(F.GUEST_RIP) + 2);
}

describe("VM entry checks by changed group", () => {
  const cases: { name: string; field: F; bad: (old: number) => number; expect: (r: ReturnType<typeof vmEntry>) => void }[] = [
    {
      name: "a control field (pin-based controls without their required bits)",
      field: F.PIN_BASED_VM_EXEC_CONTROL,
      bad: () => 0,
      expect: (r) => expect(r).toMatchObject({ kind: "vmfail-valid", error: 7 }),
    },
    {
      name: "a host-state field (HOST_CR4 without VMXE)",
      field: F.HOST_CR4,
      bad: (old) => old & ~(1 << 13),
      expect: (r) => expect(r).toMatchObject({ kind: "vmfail-valid", error: 8 }),
    },
    {
      name: "a guest-state field (GUEST_CR4 without VMXE)",
      field: F.GUEST_CR4,
      bad: (old) => old & ~(1 << 13),
      expect: (r) => expect(r).toMatchObject({ kind: "entry-failure", exit: { reason: (ExitReason.InvalidGuestState | 0x8000_0000) >>> 0 } }),
    },
    {
      name: "a guest segment (CS not present)",
      field: F.GUEST_CS_AR_BYTES,
      bad: (old) => old & ~0x80,
      expect: (r) => expect(r).toMatchObject({ kind: "entry-failure" }),
    },
    {
      name: "the VMCS link pointer",
      field: F.VMCS_LINK_POINTER,
      bad: () => 0,
      expect: (r) => expect(r).toMatchObject({ kind: "entry-failure" }),
    },
  ];
  for (const c of cases) {
    it(`catches a bad value in ${c.name} written after entries that passed`, () => {
      const { m, v } = atExit();
      resumeOnce(m, v);
      resumeOnce(m, v);
      const old = v.read32(c.field);
      // VMWRITE (the hypervisor's write) of the bad value: caught.
      expect(v.vmwrite(c.field, c.bad(old) >>> 0)).toBeUndefined();
      c.expect(vmEntry(m.cpu, v, false));
      // Caught again on the next try (a failed entry does not count as checked).
      c.expect(vmEntry(m.cpu, v, false));
      // The good value back: the entry passes and the loop runs on.
      if (c.field === F.VMCS_LINK_POINTER) v.setField(F.VMCS_LINK_POINTER, 0xffff_ffff, 0xffff_ffff);
      else v.setField(c.field, old);
      resumeOnce(m, v);
      // The processor's own field write (setField) of the bad value: caught too.
      v.setField(c.field, c.bad(old) >>> 0);
      c.expect(vmEntry(m.cpu, v, false));
    });
  }

  it("catches a bad high half written through the high-access encoding", () => {
    const { m, v } = atExit();
    resumeOnce(m, v);
    // GUEST_IA32_EFER's high half (encoding | 1) is not checked, but the link pointer's is.
    v.setField(F.VMCS_LINK_POINTER, 0xffff_ffff, 0xffff_ffff);
    resumeOnce(m, v);
    expect(v.vmwrite(F.VMCS_LINK_POINTER | 1, 0)).toBeUndefined();
    expect(vmEntry(m.cpu, v, false)).toMatchObject({ kind: "entry-failure" });
  });

  it("checks in full on a vCPU other than the one the checks last passed on", () => {
    const { m, v } = atExit();
    resumeOnce(m, v);
    const other = machine64("0fa2ebfc");
    // A control that this CPU's capabilities refuse is checked on the other vCPU even though the
    // VMCS says nothing changed since its last entry on the first.
    const fresh = guestVmcs(other);
    expect(vmEntry(other.cpu, fresh, true)).toBeUndefined();
    expect(v.changed).toBe(0);
    v.vmwrite(F.HOST_CR4, v.read32(F.HOST_CR4) & ~(1 << 13));
    v.changed = 0; // as if the change had come before the checks passed on m
    expect(vmEntry(other.cpu, v, false)).toMatchObject({ kind: "vmfail-valid", error: 8 });
  });

  it("VMCLEAR makes the next entry check every group", () => {
    const { m, v } = atExit();
    resumeOnce(m, v);
    expect(v.changed).toBe(0);
    v.clear();
    expect(v.changed).toBe(7);
  });
});
