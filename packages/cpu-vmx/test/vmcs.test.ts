import { describe, expect, it } from "vitest";
import { ExitReason, Vmcs, VmcsField, VmcsType, VmcsWidth, VmInstructionError, exitReasonName, vmcsType, vmcsWidth } from "@vtlab/cpu-vmx";

describe("VMCS component encodings (SDM Vol. 3C Appendix B)", () => {
  it("every field's name agrees with the type and width its encoding carries", () => {
    for (const [name, encoding] of Object.entries(VmcsField)) {
      const type = vmcsType(encoding);
      if (name.startsWith("HOST_")) expect(type, name).toBe(VmcsType.HostState);
      else if (name.startsWith("GUEST_") && name !== "GUEST_PHYSICAL_ADDRESS" && name !== "GUEST_LINEAR_ADDRESS") expect(type, name).toBe(VmcsType.GuestState);
      if (name.endsWith("_SELECTOR")) expect(vmcsWidth(encoding), name).toBe(VmcsWidth.Bits16);
      if (name.endsWith("_LIMIT") || name.endsWith("_AR_BYTES")) expect(vmcsWidth(encoding), name).toBe(VmcsWidth.Bits32);
      if (name.endsWith("_BASE")) expect(vmcsWidth(encoding), name).toBe(VmcsWidth.Natural);
      expect(encoding & 1, `${name}: full-access encodings are even`).toBe(0);
    }
    // The read-only data fields are the VM-exit information.
    for (const f of [VmcsField.VM_EXIT_REASON, VmcsField.EXIT_QUALIFICATION, VmcsField.GUEST_PHYSICAL_ADDRESS, VmcsField.VM_INSTRUCTION_ERROR, VmcsField.GUEST_LINEAR_ADDRESS]) {
      expect(vmcsType(f)).toBe(VmcsType.ReadOnlyData);
    }
    // A few against the reference list in shared/reference/abi-facts.md section 6.
    expect([VmcsField.EPT_POINTER, VmcsField.VM_EXIT_REASON, VmcsField.GUEST_RIP, VmcsField.CR0_READ_SHADOW, VmcsField.SECONDARY_VM_EXEC_CONTROL]).toEqual([0x201a, 0x4402, 0x681e, 0x6004, 0x401e]);
  });

  it("exit reasons carry the SDM numbers", () => {
    expect([ExitReason.Cpuid, ExitReason.Hlt, ExitReason.Vmcall, ExitReason.CrAccess, ExitReason.IoInstruction, ExitReason.EptViolation, ExitReason.EptMisconfig, ExitReason.PreemptionTimer]).toEqual([10, 12, 18, 28, 30, 48, 49, 52]);
    expect(exitReasonName(0x8000_0021)).toBe("InvalidGuestState (VM-entry failure)");
  });
});

describe("VMREAD / VMWRITE (SDM Vol. 3C 30.3)", () => {
  it("truncates to the field width and keeps 64-bit and natural-width values whole", () => {
    const v = new Vmcs();
    expect(v.vmwrite(VmcsField.GUEST_CS_SELECTOR, 0x12345)).toBeUndefined();
    expect(v.vmread(VmcsField.GUEST_CS_SELECTOR)).toBe(0x2345);
    v.vmwrite(VmcsField.GUEST_CS_LIMIT, 0xffff_ffff, 0x1234);
    expect(v.vmread(VmcsField.GUEST_CS_LIMIT)).toBe(0xffff_ffff);
    v.vmwrite(VmcsField.GUEST_RIP, 0x8000_1000, 0xffff);
    expect(v.readHalves(VmcsField.GUEST_RIP)).toEqual({ lo: 0x8000_1000, hi: 0xffff });
    v.vmwrite(VmcsField.EPT_POINTER, 0x1234_501e, 0x1);
    expect(v.vmread(VmcsField.EPT_POINTER)).toBe(0x1_1234_501e);
  });

  it("the high access type reaches the upper half of 64-bit fields only", () => {
    const v = new Vmcs();
    v.vmwrite(VmcsField.TSC_OFFSET, 0xdead_beef, 0x1111_2222);
    expect(v.vmread(VmcsField.TSC_OFFSET + 1)).toBe(0x1111_2222);
    expect(v.vmwrite(VmcsField.TSC_OFFSET + 1, 0x3333_4444)).toBeUndefined();
    expect(v.readHalves(VmcsField.TSC_OFFSET)).toEqual({ lo: 0xdead_beef, hi: 0x3333_4444 });
    // High access on a 32-bit or natural-width field is an unsupported component.
    expect(v.vmread(VmcsField.EXCEPTION_BITMAP + 1)).toMatchObject({ kind: "vmfail-valid", error: VmInstructionError.UnsupportedComponent });
    expect(v.vmwrite(VmcsField.GUEST_RIP + 1, 0)).toMatchObject({ error: VmInstructionError.UnsupportedComponent });
  });

  it("refuses unsupported components (12) and writes to read-only fields (13), naming them", () => {
    const v = new Vmcs();
    expect(v.vmwrite(0x7ffe, 1)).toMatchObject({ kind: "vmfail-valid", error: 12 });
    expect(v.vmread(0x4c02)).toMatchObject({ error: 12 });
    expect(v.vmread(-1)).toMatchObject({ error: 12 });
    const ro = v.vmwrite(VmcsField.VM_EXIT_REASON, 10);
    expect(ro).toMatchObject({ kind: "vmfail-valid", error: VmInstructionError.WriteReadOnly });
    expect(ro?.message).toMatch(/VM_EXIT_REASON/);
    // The processor itself fills exit information.
    v.setField(VmcsField.VM_EXIT_REASON, ExitReason.Cpuid);
    expect(v.vmread(VmcsField.VM_EXIT_REASON)).toBe(10);
  });

  it("VMCLEAR makes the launch state clear", () => {
    const v = new Vmcs();
    expect(v.launchState).toBe("clear");
    v.launchState = "launched";
    v.clear();
    expect(v.launchState).toBe("clear");
    v.setNatural(VmcsField.GUEST_RSP, -16);
    expect(v.readNatural(VmcsField.GUEST_RSP)).toBe(-16);
    expect(v.snapshot()).toEqual({ GUEST_RSP: "0xfffffffffffffff0" });
  });
});
