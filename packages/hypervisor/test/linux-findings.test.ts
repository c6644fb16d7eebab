/**
 * What booting Debian's Linux found, one finding at a time (issue 16; linux-debian.test.ts has
 * the kernel itself): each a tiny machine-code guest that fails without the fix.
 *
 * - verify_cpu (arch/x86/kernel/verify_cpu.S) reads IA32_MISC_ENABLE on Intel to clear XD_DISABLE,
 *   and early_init_intel writes 0 to IA32_UCODE_REV and reads the microcode revision back: both
 *   are answered as Xen's guest MSR policy answers them (xen/arch/x86/msr.c).
 * - pvh_start_xen loads CR0 = PG | PE, without WP, until startup_64 sets WP: under shadow paging
 *   the vCPU keeps WP = 1 and a supervisor write the guest's WP = 0 allows onto a page it maps
 *   read-only is emulated (Xen's sh_page_fault), where this model used to crash the domain.
 */
import { describe, expect, it } from "vitest";
import type { ShadowPaging } from "@vtlab/mmu-shadow";
import { BootLayout, GUEST_MISC_ENABLE_LO, HOST_UCODE_REVISION, Hypervisor } from "@vtlab/hypervisor";
import { direct64Kernel, tinyKernel } from "./tiny-kernel.js";

const runTiny = (code: string, hap: boolean) => {
  const hv = new Hypervisor({ memoryMiB: 64 });
  const d = hv.createDomain({ name: "t", memoryMiB: 8, hap, kernel: tinyKernel(code) });
  hv.run({ maxInstructions: 1_000_000 });
  return d;
};

// mov ecx, MSR; rdmsr; (out 0xf4, eax: the exit code)
const MISC = "b9a0010000";
const UCODE = "b98b000000";
const OUT_EAX = "e7f4";
const OUT_EDX = "89d0 e7f4"; // mov eax, edx; out 0xf4, eax

for (const hap of [true, false]) {
  const paging = hap ? "EPT" : "shadow";
  describe(`Xen's guest MSR policy for what Linux's early boot reads (${paging})`, () => {
    it("IA32_MISC_ENABLE reads as Xen's guest_misc_enable: fast strings, BTS/PEBS unavailable, xTPR disabled, no PMU, no MWAIT, XD not disabled", () => {
      expect(GUEST_MISC_ENABLE_LO).toBe(0x0080_1801);
      expect(runTiny(`${MISC} 0f32 ${OUT_EAX}`, hap).exitCode).toBe(GUEST_MISC_ENABLE_LO);
      expect(runTiny(`${MISC} 0f32 ${OUT_EDX}`, hap).exitCode).toBe(0); // bit 34, XD_DISABLE, clear
    });

    it("IA32_MISC_ENABLE: a write of the value read is accepted and ignored; a write that changes it is #GP", () => {
      // rdmsr; wrmsr; rdmsr; out
      const d = runTiny(`${MISC} 0f32 0f30 0f32 ${OUT_EAX}`, hap);
      expect(d.exitCode).toBe(GUEST_MISC_ENABLE_LO);
      expect(d.stats().exitsByReason).toMatchObject({ MsrRead: 2, MsrWrite: 1 });
      // rdmsr; xor eax, 1 (fast strings off); wrmsr: #GP, with no IDT a triple fault
      expect(runTiny(`${MISC} 0f32 83f001 0f30 ${OUT_EAX}`, hap).crashReason).toBe("triple fault");
      // XD_DISABLE set (bit 34: EDX bit 2)
      expect(runTiny(`${MISC} 0f32 83ca04 0f30 ${OUT_EAX}`, hap).crashReason).toBe("triple fault");
    });

    it("IA32_UCODE_REV: writing 0 is accepted (Intel's write-0-then-CPUID-1 sequence), the revision is in EDX; other writes are #GP", () => {
      // xor eax, eax; xor edx, edx; wrmsr; mov eax, 1; cpuid; mov ecx, 0x8b; rdmsr; mov eax, edx; out
      expect(runTiny(`${UCODE} 31c0 31d2 0f30 b801000000 0fa2 ${UCODE} 0f32 ${OUT_EDX}`, hap).exitCode).toBe(HOST_UCODE_REVISION);
      expect(runTiny(`${UCODE} 0f32 ${OUT_EAX}`, hap).exitCode).toBe(0);
      // mov eax, 1; xor edx, edx; wrmsr
      expect(runTiny(`${UCODE} b801000000 31d2 0f30 ${OUT_EAX}`, hap).crashReason).toBe("triple fault");
    });
  });
}

describe("RDTSCP (Linux's rdtsc_ordered, patched to RDTSCP when CPUID reports it)", () => {
  for (const hap of [true, false]) {
    it(`CPUID 0x80000001 reports no RDTSCP while the vCPU's "enable RDTSCP" control is off, and RDTSCP is #UD (${hap ? "EPT" : "shadow"})`, () => {
      // mov eax, 0x80000001; cpuid; mov eax, edx; out 0xf4, eax
      const edx = runTiny("b801000080 0fa2 89d0 e7f4", hap).exitCode!;
      expect(edx & (1 << 27)).toBe(0);
      expect(edx & (1 << 29)).toBe(1 << 29); // long mode still reported
      // rdtscp; out 0xf4, eax
      const d = runTiny("0f01f9 e7f4", hap);
      expect(d.crashReason).toBe("triple fault");
    });
  }
});

describe("CR0.WP = 0 with paging on (pvh_start_xen's CR0 = PG | PE)", () => {
  // PML4 at 0x2000 -> PDPT at 0x3000 -> one 1 GiB page with R/W = 0 (P | PS: read-only for
  // everyone), CR3 = 0x2000; CR4.PAE; EFER.LME; then CR0 = PG | ET | PE (WP clear) or with WP.
  const TABLES_RO = "c705 00200000 03300000 c705 00300000 81000000 b800200000 0f22d8";
  const PAE = "0f20e0 83c820 0f22e0";
  const LME = "b9800000c0 0f32 0d00010000 0f30";
  const PG_NO_WP = "b811000080 0f22c0"; // mov eax, 0x80000011; mov cr0, eax
  const PG_WP = "b811000180 0f22c0"; // mov eax, 0x80010011; mov cr0, eax
  // mov dword [0x5000], 0x12345678; mov eax, [0x5000]; out 0xf4, eax
  const STORE = "c705 00500000 78563412 a100500000 e7f4";

  for (const hap of [true, false]) {
    const paging = hap ? "EPT" : "shadow";
    it(`${paging}: a supervisor write to a read-only page succeeds with WP = 0 and faults with WP = 1 (SDM 4.6.1); CR0 reads back WP as the guest wrote it`, () => {
      const d = runTiny(`${TABLES_RO} ${PAE} ${LME} ${PG_NO_WP} ${STORE}`, hap);
      expect(d.crashReason).toBeUndefined();
      expect(d.exitCode).toBe(0x1234_5678);
      // mov eax, cr0; out 0xf4, eax
      expect((runTiny(`${TABLES_RO} ${PAE} ${LME} ${PG_NO_WP} 0f20c0 e7f4`, hap).exitCode ?? 0) >>> 0).toBe(0x8000_0011);
      expect(runTiny(`${TABLES_RO} ${PAE} ${LME} ${PG_WP} ${STORE}`, hap).crashReason).toBe("triple fault");
      if (!hap) {
        // The vCPU itself kept WP = 1 (write-protected guest tables fault for supervisor writes);
        // the store was emulated once, and the read that follows runs natively.
        expect((d.vcpus[0]!.cpu.cr0 & (1 << 16)) >>> 0).toBe(1 << 16);
        expect((d.paging as ShadowPaging).stats.faults.wpClear).toBe(1);
      }
    });
  }

  it("shadow: with WP = 0, a write to the guest's own (read-only mapped) page table is emulated and the shadow follows it", () => {
    // mov dword [0x3000], 0x83 (the PDPTE, written through its own read-only mapping: the 1 GiB
    // page becomes R/W); invlpg [0x5000] (SDM 4.10.4.1); CR0 with WP; the store then needs R/W.
    const d = runTiny(`${TABLES_RO} ${PAE} ${LME} ${PG_NO_WP} c705 00300000 83000000 0f013d00500000 ${PG_WP} ${STORE}`, false);
    expect(d.crashReason).toBeUndefined();
    expect(d.exitCode).toBe(0x1234_5678);
  });
});

// Linux's PTI syscall entry (entry_SYSCALL_64, SWITCH_TO_KERNEL_CR3) uses RSP as the scratch
// register for CR3: mov rsp, cr3; and rsp, ~0x1800; mov cr3, rsp. Under shadow paging both are
// VM exits, and a VM exit's RSP lives in the VMCS (GUEST_RSP, reloaded at the next entry): the
// MOV from CR3 into RSP must land there, else the next entry restores the old stack pointer and
// the MOV to CR3 loads a stack address (Linux took a double fault at its first syscall).
for (const hap of [true, false]) {
  const paging = hap ? "EPT" : "shadow";
  describe(`MOV between CR3 and RSP (${paging})`, () => {
    const runDirect = (code: string) => {
      const hv = new Hypervisor({ memoryMiB: 64 });
      const d = hv.createDomain({ name: "t", memoryMiB: 8, hap, kernel: direct64Kernel(code) });
      hv.run({ maxInstructions: 1_000_000 });
      return d;
    };
    // mov rbx, rsp; mov rsp, cr3; mov rax, rsp; mov rsp, rbx; out 0xf4, eax
    const READ = "4889e3 0f20dc 4889e0 4889dc e7f4";
    // mov rbx, rsp; mov rsp, cr3; mov cr3, rsp; mov rsp, rbx; mov rax, cr3; out 0xf4, eax
    const WRITE = "4889e3 0f20dc 0f22dc 4889dc 0f20d8 e7f4";
    it("mov rsp, cr3 puts the guest's CR3 in RSP; mov cr3, rsp loads it back", () => {
      const a = runDirect(READ);
      expect(a.crashReason).toBeUndefined();
      expect(a.exitCode).toBe(BootLayout.pml4);
      const b = runDirect(WRITE);
      expect(b.crashReason).toBeUndefined();
      expect(b.exitCode).toBe(BootLayout.pml4);
    });
  });
}
