/**
 * An AP brought up the native way (as Linux's PVH guests do: arch/x86/xen/smp_hvm.c keeps the
 * native smp_ops.cpu_up): the BSP copies a real-mode trampoline below 1 MiB, sends INIT, INIT
 * de-assert, SIPI, SIPI through its x2APIC or xAPIC ICR, and the AP runs the trampoline from
 * real mode (CS = vector << 8) through 32-bit protected mode into long mode, as Xen's
 * vlapic_init_sipi_action and hvm_vcpu_reset_state start it: on EPT as an unrestricted guest, on
 * shadow paging (no unrestricted guest: it needs EPT) emulated by the hypervisor until it sets
 * CR0.PE, as Xen's vmx_realmode does (src/realmode.ts).
 *
 * Machine code assembled with `as --32` and `objcopy -O binary` from the sources in the comments.
 */
import { describe, expect, it } from "vitest";
import { gfn } from "@vtlab/arch";
import { P2mType } from "@vtlab/p2m";
import { Hypervisor } from "@vtlab/hypervisor";
import { tinyKernel } from "./tiny-kernel.js";

/*
 * The AP trampoline (at 0x8000, entered with CS = 0800, IP = 0):
 *   .code16
 *   cli; wbinvd; ljmpw $0x0800,$1f
 *   1: mov %cs,%ax; mov %ax,%ds; mov %ax,%ss; mov $0x0ff0,%sp
 *   mov $0x52,%al; out %al,$0xe9              # 'R' from real mode (an I/O exit)
 *   xor %eax,%eax; cpuid; mov %ebx,%ds:cpuid_ebx   # a CPUID exit from real mode
 *   pushf; pop %bx; mov %bx,%ds:flags16
 *   lidtl tr_idt; lgdtl tr_gdt
 *   mov %cr0,%eax; mov %eax,%ds:cr0_real; or $1,%eax; mov %eax,%cr0   # PE = 1 (a CR0 exit)
 *   ljmpl $0x08,$(pm32 + 0x8000)
 *   .code32
 *   pm32: mov $0x10,%eax; mov %eax,%ds; mov %eax,%es; mov %eax,%ss; mov $0x8ff0,%esp
 *   mov $0x50,%al; out %al,$0xe9              # 'P'
 *   mov %cr4,%eax; or $0x20,%eax; mov %eax,%cr4; mov $0x2000,%eax; mov %eax,%cr3
 *   mov $0xc0000080,%ecx; rdmsr; or $0x100,%eax; wrmsr
 *   mov %cr0,%eax; or $0x80000000,%eax; mov %eax,%cr0; ljmp $0x18,$(lm64 + 0x8000)
 *   .code64
 *   lm64: mov $0x4c,%al; out %al,$0xe9       # 'L'
 *   mov $0x12345678abc,%rax; shr $12,%rax; movl %eax,0x100800; cli; hlt
 *   tr_gdt: .word 31, .long tr_gdt + 0x8000, .word 0; code32 0x08, data 0x10, code64 0x18
 *   tr_idt: .word 0, .long 0; cpuid_ebx (0xd0): .long 0; flags16 (0xd4): .word 0; cr0_real (0xd8): .long 0
 */
const TRAMPOLINE =
  "fa0f09ea080000088cc88ed88ed0bcf00fb052e6e96631c00fa266891ed0009c5b891ed400660f011ec800660f0116a8000f20c066a3d8006683c8010f22c066ea478000000800b8100000008ed88ec08ed0bcf08f0000b050e6e90f20e083c8200f22e0b8002000000f22d8b9800000c00f320d000100000f300f20c00d000000800f22c0ea8c8000001800b04ce6e948b8bc8a67452301000048c1e80c89042500081000faf4901f00a88000000000ffff0000009acf00ffff00000092cf00ffff0000009aaf000000000000006690000000000000669000000000";
/** Where the BSP copies the trampoline (220 bytes, the `mov $220,%ecx` below). */
const TRAMPOLINE_AT = 0x8000;

/*
 * The BSP (flat 32-bit protected mode at 1 MiB, the PVH entry):
 *   movl $0x3003,0x2000; movl $0x83,0x3000        # PML4 -> PDPT -> one 1 GiB identity page
 *   mov $0x100100,%esi; mov $0x8000,%edi; mov $220,%ecx; cld; rep movsb   # the trampoline
 * x2APIC:  mov $0x1b,%ecx; mov $0xfee00d00,%eax; xor %edx,%edx; wrmsr   # EN | EXTD | BSP
 *          mov $0x830,%ecx; mov $1,%edx; mov $0x4500,%eax; wrmsr          # INIT (level, assert)
 *          mov $0x8500,%eax; wrmsr                                        # INIT de-assert
 *          mov $0x4608,%eax; wrmsr; wrmsr                                 # SIPI vector 08h, twice
 * xAPIC:   movl $0x01000000,0xfee00310; movl $0x4500,0xfee00300; movl $0x8500,0xfee00300
 *          movl $0x4608,0xfee00300; movl $0x4608,0xfee00300
 *   1: mov 0x100800,%eax; test %eax,%eax; jz 1b; out %eax,$0xf4     # exit with the AP's flag
 */
const BSP_X2APIC =
  "c7050020000003300000c7050030000083000000be00011000bf00800000b9dc000000fcf3a4b91b000000b8000de0fe31d20f30b930080000ba01000000b8004500000f30b8008500000f30b8084600000f300f30a10008100085c074f7e7f4";
const BSP_XAPIC =
  "c7050020000003300000c7050030000083000000be00011000bf00800000b9dc000000fcf3a4c7051003e0fe00000001c7050003e0fe00450000c7050003e0fe00850000c7050003e0fe08460000c7050003e0fe08460000a10008100085c074f7e7f4";

/** The image: BSP code at 1 MiB, the trampoline at 1 MiB + 0x100 (copied to 0x8000 by the BSP). */
function kernel(bsp: string): Uint8Array {
  if (bsp.length / 2 > 0x100) throw new Error("BSP code too long");
  return tinyKernel(bsp + "90".repeat(0x100 - bsp.length / 2) + TRAMPOLINE);
}

function boot(bsp: string, hap: boolean) {
  const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 5_000 });
  const d = hv.createDomain({ name: "sipi", memoryMiB: 8, vcpus: 2, hap, kernel: kernel(bsp) });
  const good = hv.createDomain({ name: "good", memoryMiB: 8, kernel: tinyKernel("b855000000e7f4") }); // mov eax, 0x55; out 0xf4, eax
  hv.run({ maxInstructions: 2_000_000 });
  const word = (gpa: number) => hv.memory.read32(d.machineAddress(gpa)!) as number;
  return { hv, d, good, word };
}

describe("an AP started with INIT-SIPI-SIPI runs a real-mode trampoline into long mode (EPT: unrestricted guest; shadow: emulated real mode)", () => {
  for (const [apic, bsp, hap] of [
    ["x2APIC", BSP_X2APIC, true],
    ["xAPIC", BSP_XAPIC, true],
    ["x2APIC", BSP_X2APIC, false],
    ["xAPIC", BSP_XAPIC, false],
  ] as const) {
    it(`through the ${apic} ICR on ${hap ? "EPT" : "shadow"}`, () => {
      const { d, good, word } = boot(bsp, hap);
      expect(d.crashReason).toBeUndefined();
      expect(d.state).toBe("shutdown");
      expect(d.exitCode).toBe(0x1234_5678); // the flag the AP wrote from 64-bit mode
      expect(d.console).toBe("RPL"); // real mode, protected mode, long mode
      const ap = d.vcpus[1]!;
      expect(ap.cpu.mode64).toBe(true);
      expect(ap.cpu.seg[1]!.selector).toBe(0x18); // Seg.CS: the 64-bit code segment
      // What the AP saw in real mode: CPUID leaf 0's EBX ("Genu" or "Auth"...: nonzero), FLAGS
      // bit 1 set and IF clear (CLI), CR0 = ET (PE, PG and the host-owned NE hidden).
      expect(word(TRAMPOLINE_AT + 0xd0)).not.toBe(0);
      expect(word(TRAMPOLINE_AT + 0xd4) & 0xffff & 0x202).toBe(0x002);
      expect(word(TRAMPOLINE_AT + 0xd8)).toBe(0x10);
      expect(d.ipisIgnored).toBe(1); // the second SIPI: the AP was already up
      expect(good.exitCode).toBe(0x55);
      // On shadow the hypervisor emulated the real-mode part (the 21 instructions up to and
      // including the MOV CR0 that sets PE, less the OUT, CPUID and MOV CR0, which exited to their
      // handlers as they do on EPT), and the AP ran in VMX non-root from the far jump on.
      expect(ap.realModeEmulated).toBe(false);
      const exits = d.stats().exitsByReason;
      expect(exits.IoInstruction).toBeGreaterThanOrEqual(3); // R, P, L
      if (hap) expect(d.exitStats.realModeInstructions).toBe(0);
      else expect(d.exitStats.realModeInstructions).toBe(18);
    });
  }

  it("a SIPI without an INIT starts a vCPU never brought up (it waits for one from reset, as in Xen); the BSP, up, ignores a SIPI", () => {
    // x2APIC on; SIPI vector 08h to APIC ID 1; SIPI to self (APIC ID 0, ignored); then wait.
    const bsp =
      BSP_X2APIC.slice(0, BSP_X2APIC.indexOf("b930080000")) + // up to the ICR writes
      "b930080000ba01000000b8084600000f30" + // mov $0x830,%ecx; mov $1,%edx; mov $0x4608,%eax; wrmsr
      "31d20f30" + // xor %edx,%edx; wrmsr (to APIC ID 0: the BSP itself)
      "a10008100085c074f7e7f4";
    const { d } = boot(bsp, true);
    expect(d.crashReason).toBeUndefined();
    expect(d.exitCode).toBe(0x1234_5678);
    expect(d.ipisIgnored).toBe(1);
  });
});

/*
 * An AP that halts with interrupts enabled while still in real mode, and is woken by a fixed IPI
 * (the trampoline at 0x8000, CS = 0800):
 *   .code16
 *   cli; xor %ax,%ax; mov %ax,%ds; mov %ax,%ss; mov $0x7000,%sp
 *   movw $(handler-start),0x100; movw $0x0800,0x102   # IVT[40h] = 0800:handler
 *   movl $1,0x9000; sti; hlt                          # "halting", then HLT with IF = 1
 *   movl $2,0x9004; cli; hlt                          # woken: "done", then down
 *   handler: movl $0x77,0x9008; iret
 * The BSP (32-bit): copies it, INIT-SIPI (vector 08h) to APIC ID 1 through the x2APIC ICR, waits
 * for 0x9000, spins (mov $0x20000,%ecx; loop .) so the AP is blocked in HLT, sends fixed vector 40h
 * to APIC ID 1, waits for 0x9004 and exits with the handler's word at 0x9008 (out %eax,$0xf4).
 */
const HALTING_AP = "fa31c08ed88ed0bc0070c70600014d00c7060201000866b91b0000000f32660d000c00000f3066b90f08000066b8ff0100006631d20f3066c706009001000000fbf466c706049002000000faf466c706089077000000cf";
const WAKING_BSP =
  "be00011000bf00800000b960000000fcf3a4b91b000000b8000de0fe31d20f30b930080000ba01000000b8004500000f30b8008500000f30b8084600000f30a10090000085c074f7b900000200e2feb930080000ba01000000b8400000000f30a10490000085c074f7a108900000e7f4";

describe("an AP halted in real mode with interrupts enabled wakes on an interrupt", () => {
  it.each([
    ["EPT", true],
    ["shadow", false],
  ])("a fixed IPI wakes it and its real-mode handler runs through the IVT (%s)", (_paging, hap) => {
    const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 5_000 });
    const image = tinyKernel(WAKING_BSP + "90".repeat(0x100 - WAKING_BSP.length / 2) + HALTING_AP);
    const d = hv.createDomain({ name: "sipi", memoryMiB: 8, vcpus: 2, hap, kernel: image });
    hv.run({ maxInstructions: 3_000_000 });
    expect(d.crashReason).toBeUndefined();
    expect(d.exitCode).toBe(0x77); // the AP's interrupt handler ran
    const ap = d.vcpus[1]!;
    expect(ap.wakeups).toBeGreaterThanOrEqual(1); // it was blocked in HLT, and woken
    expect(ap.realModeEmulated).toBe(!hap); // still in real mode: emulated on shadow
    expect(d.stats().exitsByReason.Hlt).toBeGreaterThanOrEqual(1);
  });
});

describe("hostile INIT and SIPI", () => {
  it.each([
    ["EPT", true],
    ["shadow", false],
  ])("an INIT to the running BSP is ignored; a SIPI into zeroed memory runs the AP on garbage in real mode without harming the host or another domain (%s)", (_paging, hap) => {
    // x2APIC on; INIT to APIC ID 0 (the BSP itself, up: ignored); SIPI vector A0h to APIC ID 1 (0xA0000: zeros, ADD [BX+SI], AL);
    // then the BSP spins (mov $0x10000,%ecx; loop .) and exits with 0x66.
    const bsp = "b91b000000b8000de0fe31d20f30" + "b93008000031d2b8004500000f30" + "ba01000000b8a04600000f30" + "b900000100e2fe" + "b866000000e7f4";
    const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 5_000 });
    const d = hv.createDomain({ name: "sipi", memoryMiB: 8, vcpus: 2, hap, kernel: tinyKernel(bsp) });
    const good = hv.createDomain({ name: "good", memoryMiB: 8, kernel: tinyKernel("b855000000e7f4") });
    hv.run({ maxInstructions: 3_000_000 });
    expect(d.crashReason).toBeUndefined();
    expect(d.exitCode).toBe(0x66);
    expect(d.ipisIgnored).toBe(1);
    const ap = d.vcpus[1]!;
    expect(ap.cpu.realMode).toBe(true);
    expect(ap.cpu.seg[1]!.base).toBe(0xa0000); // Seg.CS from the SIPI vector
    expect(ap.cpu.counters.instructions).toBeGreaterThan(1000);
    expect(ap.realModeEmulated).toBe(!hap); // on shadow still emulated: it never sets CR0.PE
    expect(good.exitCode).toBe(0x55);
  });
});

describe("real-mode emulation on shadow paging: what it does not model crashes only that domain", () => {
  it("an emulated real-mode access to guest-physical memory that is not RAM", () => {
    // The trampoline's first 8 bytes become mov $0x5000,%ax; mov %ax,%ds; mov 0,%al (b8 00 50 8e
    // d8 a0 00 00): a load from guest-physical 0x50000, which the test takes out of the p2m.
    const bsp = BSP_X2APIC;
    const code = bsp + "90".repeat(0x100 - bsp.length / 2) + "b800508ed8a00000" + TRAMPOLINE.slice(16);
    const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 5_000 });
    const d = hv.createDomain({ name: "sipi", memoryMiB: 8, vcpus: 2, hap: false, kernel: tinyKernel(code) });
    const good = hv.createDomain({ name: "good", memoryMiB: 8, kernel: tinyKernel("b855000000e7f4") });
    d.p2m.setRange(gfn(0x50), 1, P2mType.Absent);
    hv.run({ maxInstructions: 2_000_000 });
    expect(d.state).toBe("crashed");
    expect(d.crashReason).toBe("vCPU 1 in emulated real mode (shadow paging) at 0800:0005 accessed guest-physical 0x50000, which is not RAM: MMIO from emulated real mode is not modelled");
    expect(good.exitCode).toBe(0x55);
  });
});
