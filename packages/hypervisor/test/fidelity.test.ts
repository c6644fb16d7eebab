/**
 * The CPU's exceptions and system state as the SDM specifies them, seen by guests on the
 * hypervisor (issue 18, "Fidelity"): the same guest must print the same lines on EPT and on
 * shadow paging. hostile/fidelity-cpu checks IA32_PAT, IA32_DEBUGCTL, DR6/DR7, ICEBP, #SS, LGDT,
 * the APIC error status register, a long-mode #TS and paging off from compatibility mode; the
 * tiny direct-boot kernel turns paging off on a guest that booted in 64-bit mode.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { hostileGuestUrl } from "@vtlab/guests";
import { Hypervisor } from "@vtlab/hypervisor";
import { VmcsField as F } from "@vtlab/cpu-vmx";
import { direct64Kernel } from "./tiny-kernel.js";

const fidelityCpu = () => new Uint8Array(readFileSync(hostileGuestUrl("fidelity-cpu")));

const CASES = ["pat", "debugctl", "dr", "icebp", "ss", "lgdt", "esr", "ts", "pgoff"];

describe.each([
  { mmu: "EPT", hap: true },
  { mmu: "shadow", hap: false },
])("hostile/fidelity-cpu on $mmu", ({ hap }) => {
  it("every case passes and the domain exits 0", () => {
    const hv = new Hypervisor({ memoryMiB: 128 });
    const d = hv.createDomain({ name: "fidelity", memoryMiB: 32, hap, kernel: fidelityCpu() });
    const r = hv.run({ maxInstructions: 5_000_000 });
    expect(r.reason).toBe("idle");
    expect({ state: d.state, code: d.exitCode, crash: d.crashReason }).toEqual({ state: "shutdown", code: 0, crash: undefined });
    expect(d.console).toBe(`${CASES.map((c) => `fidelity: ${c} ok\n`).join("")}PASS fidelity-cpu 0000000000000000\n`);
  });
});

describe("WRMSR IA32_PAT is guest state, not a crash", () => {
  it("the VMCS loads and saves GUEST_IA32_PAT, and the MSR bitmap lets PAT through (EPT and shadow)", () => {
    for (const hap of [true, false]) {
      const hv = new Hypervisor({ memoryMiB: 128 });
      const d = hv.createDomain({ name: "pat", memoryMiB: 32, hap, kernel: fidelityCpu() });
      hv.run({ maxInstructions: 5_000_000 });
      expect(d.state).toBe("shutdown");
      // The guest's last WRMSR IA32_PAT (the reserved type 2 was refused with #GP).
      expect(d.vcpus[0]!.vmcs.readHalves(F.GUEST_IA32_PAT)).toEqual({ lo: 0x0007_0106, hi: 0x0007_0406 });
      expect(d.stats().exitsByReason.MsrWrite ?? 0).toBeGreaterThan(0); // IA32_DEBUGCTL and the x2APIC MSRs still exit
    }
  });
});

describe("a guest booted in 64-bit mode turns paging off from compatibility mode (SDM 9.8.5.4)", () => {
  // mov esp, 0x90000; lea rax, [rip+compat]; push 0x08 (32-bit code); push rax; retfq
  // compat (32-bit): mov eax, cr0; and eax, 0x7fffffff; mov cr0, eax; mov ecx, 0xc0000080; rdmsr;
  //   bt eax, 10; setc al; add al, '0'; out 0xe9, al      (EFER.LMA)
  //   mov eax, cr0; shr eax, 31; add al, '0'; out 0xe9, al (CR0.PG)
  //   xor eax, eax; out 0xf4, eax; hlt
  const code = "bc00000900488d05050000006a085048cb0f20c025ffffff7f0f22c0b9800000c00f320fbae00a0f92c00430e6e90f20c0c1e81f0430e6e931c0e7f4f4";
  it.each([
    { mmu: "EPT (unrestricted guest)", hap: true },
    { mmu: "shadow", hap: false },
  ])("on $mmu: EFER.LMA and CR0.PG read 0 and the domain exits cleanly", ({ hap }) => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "pgoff", memoryMiB: 8, hap, kernel: direct64Kernel(code) });
    hv.run({ maxInstructions: 100_000 });
    expect({ state: d.state, code: d.exitCode, crash: d.crashReason }).toEqual({ state: "shutdown", code: 0, crash: undefined });
    expect(d.console).toBe("00");
  });
});
