/**
 * GuestOps: a native guest's operations cause exactly the exits the corresponding instructions
 * cause (reason, qualification, instruction length), are resumed after the hypervisor handles
 * them, and see faults as values or through the native kernel's handler.
 */
import { describe, expect, it } from "vitest";
import { Vector } from "@vtlab/arch";
import {
  CPU_CR3_LOAD_EXITING,
  CPU_CR3_STORE_EXITING,
  CPU_INVLPG_EXITING,
  CPU_HLT_EXITING,
  CPU_UNCOND_IO_EXITING,
  CPU_USE_MSR_BITMAPS,
  CrAccessType,
  ExitReason,
  NativeGuestOps,
  VmcsField as F,
  crQualification,
  ioQualification,
  vmEntry,
  type VmExit,
  type Vmcs,
} from "@vtlab/cpu-vmx";
import { machine64, type TestMachine } from "./machine.js";
import { MSRBM, guestVmcs } from "./vmx-fixture.js";

const NATIVE_RIP = 0x1000; // where the native guest's "instructions" notionally sit

function native(opts: { proc?: number; exceptionBitmap?: number; emulate?: (exit: VmExit, m: TestMachine, v: Vmcs) => boolean } = {}) {
  const m = machine64("f4");
  const v = guestVmcs(m, opts);
  v.vmwrite(F.GUEST_RIP, NATIVE_RIP);
  const exits: VmExit[] = [];
  const e = vmEntry(m.cpu, v, true);
  if (e !== undefined) throw new Error("entry failed");
  const ops = new NativeGuestOps(m.cpu, {
    onExit(exit) {
      exits.push(exit);
      // A minimal hypervisor: emulate and step past the operation, as for an instruction.
      if (opts.emulate?.(exit, m, v) ?? true) v.setNatural(F.GUEST_RIP, v.readNatural(F.GUEST_RIP) + exit.instructionLength);
    },
  });
  return { m, v, ops, exits };
}

describe("GuestOps cause the same exits as the instructions", () => {
  it("cpuid: reason 10, length 2; the hypervisor's answer comes back", () => {
    const { ops, exits } = native({
      emulate: (_exit, m) => {
        m.cpu.setReg32(0, 0x4000_0001);
        m.cpu.setReg32(3, 0x566e_6558);
        return true;
      },
    });
    expect(ops.cpuid(0x4000_0000, 0)).toEqual([0x4000_0001, 0x566e_6558, 0, m0(ops)]);
    expect(exits).toEqual([{ reason: ExitReason.Cpuid, qualification: 0, instructionLength: 2 }]);
  });

  it("portOut: reason 30 with the qualification of OUT DX (no immediate), length 1", () => {
    const { ops, exits } = native({ proc: CPU_UNCOND_IO_EXITING });
    expect(ops.portOut(0x3f8, 1, 0x41)).toBeUndefined();
    expect(exits[0]).toMatchObject({ reason: ExitReason.IoInstruction, instructionLength: 1, qualification: ioQualification(0x3f8, 1, false, false, false, false) });
  });

  it("rdmsr with MSR bitmaps: reason 31 when the bit is set; the emulated value comes back", () => {
    const { m, ops, exits } = native({
      proc: CPU_USE_MSR_BITMAPS,
      emulate: (_exit, mm) => {
        mm.cpu.setReg32(0, 0xfee0_0900 | 0);
        mm.cpu.setReg32(2, 0);
        return true;
      },
    });
    m.memory.write8(MSRBM + (0x1b >>> 3), 1 << (0x1b & 7)); // IA32_APIC_BASE read exits
    expect(ops.rdmsr(0x1b)).toBe(0xfee0_0900);
    expect(exits[0]).toMatchObject({ reason: ExitReason.MsrRead, instructionLength: 2 });
  });

  it("writeCr(3) with CR3-load exiting: reason 28, CR 3, MOV to CR, GPR 0 (RAX), length 3", () => {
    const { ops, exits } = native({ proc: CPU_CR3_LOAD_EXITING });
    expect(ops.writeCr(3, 0x2000)).toBeUndefined();
    expect(exits[0]).toMatchObject({ reason: ExitReason.CrAccess, instructionLength: 3, qualification: crQualification(3, CrAccessType.MovToCr, 0) });
  });

  it("vmcall returns RAX as the hypervisor set it; hlt with HLT exiting exits, without it halts", () => {
    const { ops, exits } = native({
      proc: CPU_HLT_EXITING,
      emulate: (exit, m) => {
        if (exit.reason === ExitReason.Vmcall) m.cpu.setReg32(0, 42);
        return true;
      },
    });
    expect(ops.vmcall()).toBe(42);
    expect(ops.hlt()).toBe(false);
    expect(exits.map((e) => [e.reason, e.instructionLength])).toEqual([
      [ExitReason.Vmcall, 3],
      [ExitReason.Hlt, 1],
    ]);
    const plain = native();
    expect(plain.ops.hlt()).toBe(true);
  });

  it("loads and stores go through the guest's paging: a store reads back, and the TLB is the CPU's", () => {
    const { ops, m } = native();
    expect(ops.store(0x5_0000, 8, 0x1234_5678_9abc)).toBeUndefined();
    expect(ops.load(0x5_0000, 8)).toBe(0x1234_5678_9abc);
    expect(ops.load(0x5_0000, 2)).toBe(0x9abc);
    expect(m.memory.read32(0x5_0004)).toBe(0x1234);
    expect(m.cpu.counters.pageWalks).toBeGreaterThan(0);
  });
});

describe("more GuestOps exits, and guest state after resume", () => {
  it("invlpg, readCr(3) with CR3-store exiting, wrmsr and portIn exit like INVLPG, MOV from CR3, WRMSR and IN DX", () => {
    const { ops, exits } = native({
      proc: CPU_INVLPG_EXITING | CPU_CR3_STORE_EXITING | CPU_UNCOND_IO_EXITING,
      emulate: (exit, m) => {
        if (exit.reason === ExitReason.CrAccess) m.cpu.setRegFromNumber(0, 0x9000); // the CR3 the hypervisor shows
        if (exit.reason === ExitReason.IoInstruction) m.cpu.setReg32(0, 0x5a);
        return true;
      },
    });
    expect(ops.invlpg(0x7000)).toBeUndefined();
    expect(ops.readCr(3)).toBe(0x9000);
    expect(ops.wrmsr(0xc000_0082, 0x1000)).toBeUndefined();
    expect(ops.portIn(0x64, 1)).toBe(0x5a);
    expect(exits.map((e) => [e.reason, e.qualification, e.instructionLength])).toEqual([
      [ExitReason.Invlpg, 0x7000, 3],
      [ExitReason.CrAccess, crQualification(3, CrAccessType.MovFromCr, 0), 3],
      [ExitReason.MsrWrite, 0, 2],
      [ExitReason.IoInstruction, ioQualification(0x64, 1, true, false, false, false), 1],
    ]);
  });

  it("after the hypervisor emulates a CR3 load, the resumed guest runs on the new CR3 (state loaded from the VMCS)", () => {
    const { ops, v, m } = native({
      proc: CPU_CR3_LOAD_EXITING,
      emulate: (exit, mm, vv) => {
        expect(exit.reason).toBe(ExitReason.CrAccess);
        vv.setNatural(F.GUEST_CR3, mm.cpu.regAddr(0)); // emulate MOV to CR3 from RAX
        return true;
      },
    });
    // A second set of tables at 0x6000 mapping VA 0 -> phys 0x20_0000 (2 MiB pages).
    m.memory.write64(0x6000, 0x7000 | 3, 0);
    m.memory.write64(0x7000, 0x8000 | 3, 0);
    m.memory.write64(0x8000, 0x20_0000 | 0x83, 0);
    m.memory.write32(0x20_0010, 0x5eed);
    expect(ops.writeCr(3, 0x6000)).toBeUndefined();
    expect(v.readNatural(F.GUEST_CR3)).toBe(0x6000);
    expect(m.cpu.cr3).toBe(0x6000);
    expect(ops.load(0x10, 4)).toBe(0x5eed);
  });
});

describe("faults in native guests", () => {
  it("a #PF that does not exit is a GuestFault value (CR2 set), unless the native kernel fixes it and retries", () => {
    const { ops, m } = native();
    expect(ops.load(0x4000_0000, 4)).toEqual({ kind: "guest-fault", vector: Vector.PF, errorCode: 0, cr2: 0x4000_0000 });

    const fixed = new NativeGuestOps(m.cpu, {
      onExit: () => undefined,
      onException(vector, _ec, cr2) {
        if (vector !== Vector.PF) return "fail";
        // Map the second GiB (a PD of 2 MiB pages at 0x5000) and retry.
        m.memory.write64(0x3008, 0x5000 | 3, 0);
        m.memory.write64(0x5000, 0x20_0000 | 0x83, 0);
        void cr2;
        return "retry";
      },
    });
    m.memory.write32(0x20_0000, 0xcafe);
    expect(fixed.load(0x4000_0000, 4)).toBe(0xcafe);
  });

  it("with #PF in the exception bitmap the fault is a VM exit; the hypervisor fixes the mapping and the load is retried", () => {
    const { ops, exits } = native({
      exceptionBitmap: 1 << Vector.PF,
      emulate: (exit, m) => {
        m.memory.write64(0x3008, 0x5000 | 3, 0);
        m.memory.write64(0x5000, 0x20_0000 | 0x83, 0);
        m.memory.write32(0x20_0000, 0xbeef);
        return exit.reason !== ExitReason.ExceptionOrNmi; // not emulated: resume and retry
      },
    });
    expect(ops.load(0x4000_0000, 4)).toBe(0xbeef);
    expect(exits[0]).toMatchObject({ reason: ExitReason.ExceptionOrNmi, qualification: 0x4000_0000, interruption: { vector: Vector.PF, errorCode: 0 } });
  });
});

/** EDX after the emulated CPUID (left as the guest had it: 0). */
function m0(ops: NativeGuestOps): number {
  return ops.cpu.lo[2]! >>> 0;
}
