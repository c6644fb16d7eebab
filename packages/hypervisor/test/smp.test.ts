/**
 * Secondary vCPUs brought up the PVH way (hypercalls.ts): HYPERVISOR_vcpu_op VCPUOP_initialise
 * with a vcpu_hvm_context (xen/include/public/hvm/hvm_vcpu.h), then VCPUOP_up; the AP runs
 * beside the BSP on the scheduler. Hostile arguments get Xen's error numbers and never hurt the
 * hypervisor or the other vCPU.
 */
import { describe, expect, it } from "vitest";
import { Hypervisor, LocalApic } from "@vtlab/hypervisor";
import { VCPUOP_initialise, VCPUOP_is_up, VCPUOP_up, XEN_EEXIST, XEN_EFAULT, XEN_EINVAL, XEN_ENOENT, XEN_ENOSYS } from "@vtlab/xen-public";
import { MMIO_GUESTS } from "./mmio-guests.js";
import { tinyKernel } from "./tiny-kernel.js";

const BASE = 0x10_0000;
const AP = BASE + 0x80;
const CTX = BASE + 0x100;
const FLAG = BASE + 0x800;

const imm32 = (n: number) => Array.from({ length: 4 }, (_, k) => ((n >>> (8 * k)) & 0xff).toString(16).padStart(2, "0")).join("");
/** mov eax, 24 (HYPERVISOR_vcpu_op); mov ebx, cmd; mov ecx, vcpu; mov edx, arg; vmcall (the 32-bit hypercall ABI). */
const vcpuOp = (cmd: number, vcpu: number, arg = 0) => `b8${imm32(24)}bb${imm32(cmd)}b9${imm32(vcpu)}ba${imm32(arg)}0f01c1`;
/** out 0xf4, eax: isa-debug-exit with the value. */
const OUT = "e7f4";
/** The BSP waits for the AP's flag, adds ESI and exits with the sum. */
const WAIT_FLAG = `a1${imm32(FLAG)}85c074f701f0${OUT}`;
/** PML4 at 0x2000 -> PDPT at 0x3000 -> one 1 GiB identity page (for a 64-bit AP). */
const TABLES = `c705${imm32(0x2000)}${imm32(0x3003)}c705${imm32(0x3000)}${imm32(0x83)}`;

interface Ctx32 { eip?: number; cr0?: number; cr4?: number; efer?: number; csAr?: number; csLimit?: number; dsAr?: number; ssAr?: number; trAr?: number; mode?: number }
/** struct vcpu_hvm_context, VCPU_HVM_MODE_32B: flat 32-bit segments (Xen's compressed attributes). */
function ctx32(o: Ctx32 = {}): Uint8Array {
  const b = new Uint8Array(128);
  const v = new DataView(b.buffer);
  v.setUint32(0, o.mode ?? 0, true);
  v.setUint32(8 + 16, BASE + 0xc00, true); // esp
  v.setUint32(8 + 32, o.eip ?? AP, true);
  v.setUint32(8 + 36, 2, true); // eflags
  v.setUint32(8 + 40, o.cr0 ?? 0x1_0011, true); // PE | ET | WP
  v.setUint32(8 + 48, o.cr4 ?? 0, true);
  v.setUint32(8 + 56, o.efer ?? 0, true);
  for (let k = 0; k < 4; k++) v.setUint32(8 + 84 + 4 * k, 0xffff_ffff, true); // cs, ds, ss, es limits
  if (o.csLimit !== undefined) v.setUint32(8 + 84, o.csLimit, true);
  v.setUint32(8 + 100, 0x67, true); // tr_limit
  v.setUint16(8 + 104, o.csAr ?? 0xc9b, true);
  for (let k = 1; k < 4; k++) v.setUint16(8 + 104 + 2 * k, o.dsAr ?? 0xc93, true); // ds, ss, es
  if (o.ssAr !== undefined) v.setUint16(8 + 104 + 4, o.ssAr, true);
  v.setUint16(8 + 112, o.trAr ?? 0x8b, true);
  return b;
}
/** VCPU_HVM_MODE_64B: long mode on the tables at 0x2000. */
function ctx64(rip: number, ripHi = 0, cr3 = 0x2000): Uint8Array {
  const b = new Uint8Array(128);
  const v = new DataView(b.buffer);
  v.setUint32(0, 1, true);
  v.setUint32(8 + 32, BASE + 0xc00, true); // rsp
  v.setUint32(8 + 64, rip, true);
  v.setUint32(8 + 68, ripHi, true);
  v.setUint32(8 + 72, 2, true); // rflags
  v.setUint32(8 + 80, 0x8001_0031, true); // PG | WP | NE | ET | PE
  v.setUint32(8 + 88, cr3, true);
  v.setUint32(8 + 96, 0x20, true); // cr4: PAE
  v.setUint32(8 + 104, 0x500, true); // efer: LME | LMA
  return b;
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
/** The image: BSP code at BASE, AP code at AP, a vcpu_hvm_context at CTX. */
function image(bsp: string, ap: string, ctx: Uint8Array): Uint8Array {
  const pad = (h: string, bytes: number) => {
    const s = h.replace(/\s+/g, "");
    if (s.length / 2 > bytes) throw new Error("code too long");
    return s + "90".repeat(bytes - s.length / 2);
  };
  return tinyKernel(pad(bsp, 0x80) + pad(ap, 0x80) + hex(ctx));
}

function boot(kernel: Uint8Array, hap = true, vcpus = 2) {
  const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 5_000 });
  const d = hv.createDomain({ name: "smp", memoryMiB: 8, vcpus, hap, kernel });
  hv.run({ maxInstructions: 2_000_000 });
  return d;
}

describe("PVH vCPU bring-up with HYPERVISOR_vcpu_op", () => {
  for (const hap of [true, false]) {
    it(`the BSP initialises vCPU 1 in 32-bit mode with paging off and brings it up; both run (${hap ? "EPT" : "shadow"})`, () => {
      // AP: mov dword [FLAG], 0x1234; cli; hlt
      const d = boot(image(`${vcpuOp(VCPUOP_initialise, 1, CTX)} 89c6 ${vcpuOp(VCPUOP_up, 1)} ${WAIT_FLAG}`, `c705${imm32(FLAG)}${imm32(0x1234)} faf4`, ctx32()), hap);
      expect(d.state).toBe("shutdown");
      expect(d.exitCode).toBe(0x1234); // the flag plus VCPUOP_initialise's 0
      expect(d.vcpus[1]!.cpu.counters.instructions).toBe(2); // mov and cli (the HLT exits)
      expect(d.vcpus[1]!.down).toBe(true);
      expect(d.stats().exitsByReason.Vmcall).toBe(2);
    });
  }

  for (const hap of [true, false]) {
    it(`PAUSE-loop exiting: a BSP spinning with PAUSE on a flag the AP sets yields its slice (Xen's ple_gap 128, ple_window 4096) instead of spinning it out (${hap ? "EPT" : "shadow"})`, () => {
      // BSP: 1: pause; mov eax, [FLAG]; test eax, eax; jz 1b; add eax, esi; out 0xf4, eax
      const spin = `f390 a1${imm32(FLAG)} 85c0 74f5 01f0 ${OUT}`;
      const hv = new Hypervisor({ memoryMiB: 64 }); // the default 2M-instruction slice
      const d = hv.createDomain({ name: "smp", memoryMiB: 8, vcpus: 2, hap, kernel: image(`${vcpuOp(VCPUOP_initialise, 1, CTX)} 89c6 ${vcpuOp(VCPUOP_up, 1)} ${spin}`, `c705${imm32(FLAG)}${imm32(0x1234)} faf4`, ctx32()) });
      hv.run({ maxInstructions: 4_000_000 });
      expect(d.exitCode).toBe(0x1234);
      expect(d.stats().exitsByReason.Pause).toBe(1); // one PAUSE-loop exit, then the AP ran
      // The BSP spun one PLE window (a PAUSE every 4 instructions: the exit at the first PAUSE past
      // 4096 instructions of the loop), not a 2M-instruction slice.
      const bsp = d.vcpus[0]!.cpu.counters.instructions;
      expect(bsp).toBeGreaterThan(4096);
      expect(bsp).toBeLessThan(4200);
    });
  }

  for (const hap of [true, false]) {
    it(`a vCPU initialised with CR0.WP = 0 runs and reads its CR0 back without WP (${hap ? "EPT" : "shadow"})`, () => {
      // AP: mov eax, cr0; mov [FLAG], eax; cli; hlt
      const d = boot(image(`${vcpuOp(VCPUOP_initialise, 1, CTX)} 89c6 ${vcpuOp(VCPUOP_up, 1)} ${WAIT_FLAG}`, `0f20c0 a3${imm32(FLAG)} faf4`, ctx32({ cr0: 0x11 })), hap);
      expect(d.crashReason).toBeUndefined();
      expect(d.exitCode).toBe(0x11); // PE | ET, plus VCPUOP_initialise's 0
      if (!hap) expect(d.vcpus[1]!.cpu.cr0 & (1 << 16)).toBe(1 << 16); // WP = 1 underneath
    });
  }

  for (const hap of [true, false]) {
    it(`a vCPU started directly in 64-bit mode on the guest's own page tables (${hap ? "EPT" : "shadow"})`, () => {
      // AP: mov dword [FLAG], 0x5678 (absolute, SIB); cli; hlt
      const d = boot(image(`${TABLES} ${vcpuOp(VCPUOP_initialise, 1, CTX)} 89c6 ${vcpuOp(VCPUOP_up, 1)} ${WAIT_FLAG}`, `c70425${imm32(FLAG)}${imm32(0x5678)} faf4`, ctx64(AP)), hap);
      expect(d.exitCode).toBe(0x5678);
    });
  }

  const result = (code: string, ctx = ctx32(), hap = true, vcpus = 2) => boot(image(`${code} ${OUT}`, "faf4", ctx), hap, vcpus).exitCode! | 0;
  it("VCPUOP_is_up answers 0 before VCPUOP_up and 1 after; vCPU 0 is up from the start", () => {
    expect(result(vcpuOp(VCPUOP_is_up, 1))).toBe(0);
    expect(result(`${vcpuOp(VCPUOP_initialise, 1, CTX)} ${vcpuOp(VCPUOP_up, 1)} ${vcpuOp(VCPUOP_is_up, 1)}`)).toBe(1);
    expect(result(vcpuOp(VCPUOP_is_up, 0))).toBe(1);
  });

  it("hostile arguments get Xen's error numbers", () => {
    expect(result(vcpuOp(VCPUOP_initialise, 7, CTX)), "no such vCPU").toBe(-XEN_ENOENT);
    expect(result(vcpuOp(VCPUOP_initialise, 0xffff_ffff, CTX)), "vCPU -1").toBe(-XEN_ENOENT);
    expect(result(vcpuOp(VCPUOP_initialise, 1, 0xffff_f000)), "a context beyond RAM").toBe(-XEN_EFAULT);
    expect(result(vcpuOp(VCPUOP_initialise, 1, 8 * 1024 * 1024 - 64)), "a context running off the end of RAM").toBe(-XEN_EFAULT);
    expect(result(vcpuOp(VCPUOP_up, 1)), "up before initialise").toBe(-XEN_EINVAL);
    expect(result(`${vcpuOp(VCPUOP_initialise, 1, CTX)} ${vcpuOp(VCPUOP_initialise, 1, CTX)}`), "initialised twice").toBe(-XEN_EEXIST);
    expect(result(vcpuOp(VCPUOP_initialise, 0, CTX)), "the running BSP").toBe(-XEN_EEXIST);
    expect(result(vcpuOp(99, 1, CTX)), "unknown command").toBe(-XEN_ENOSYS);
    for (const [what, ctx] of [
      ["mode 5", ctx32({ mode: 5 })],
      ["a data segment in CS", ctx32({ csAr: 0xc93 })],
      ["a not-present DS", ctx32({ dsAr: 0xc13 })],
      ["a 64-bit CS in a 32-bit context", ctx32({ csAr: 0xa9b })],
      ["an available (not busy) TSS", ctx32({ trAr: 0x89 })],
      ["real mode (CR0.PE = 0)", ctx32({ cr0: 0x10 })],
      ["legacy paging (PG without LME)", ctx32({ cr0: 0x8001_0011, cr4: 0x20 })],
      ["SS a readable code segment", ctx32({ ssAr: 0xc9b })],
      ["SS read-only data", ctx32({ ssAr: 0xc91 })],
      ["SS.DPL 0 with CS.DPL 3", ctx32({ csAr: 0xcfb })],
      ["EIP beyond the CS limit", ctx32({ csAr: 0x49b, csLimit: 0xff })],
      ["a reserved CR4 bit (15)", ctx32({ cr4: 1 << 15 })],
      ["CR4.VMXE", ctx32({ cr4: 1 << 13 })],
      ["a reserved CR0 bit (3... 15)", ctx32({ cr0: 0x1_8011 })],
      ["EFER.LMA without LME", ctx32({ efer: 0x400 })],
    ] as const) {
      for (const hap of [true, false]) expect(result(vcpuOp(VCPUOP_initialise, 1, CTX), ctx, hap), `${what} (${hap ? "EPT" : "shadow"})`).toBe(-XEN_EINVAL);
    }
    // A 64-bit context whose CR3 is not RAM (here the local APIC page): -EINVAL on both, and the
    // hypervisor keeps running (it used to throw from the shadow code).
    for (const hap of [true, false]) expect(result(vcpuOp(VCPUOP_initialise, 1, CTX), ctx64(AP, 0, 0xfee0_0000), hap), `CR3 not RAM (${hap ? "EPT" : "shadow"})`).toBe(-XEN_EINVAL);
    // CR0.WP = 0 is accepted on both (as Xen's arch_set_info_hvm_guest does; shadow paging
    // emulates what WP = 0 allows).
    expect(result(vcpuOp(VCPUOP_initialise, 1, CTX), ctx32({ cr0: 0x11 }), false)).toBe(0);
    expect(result(vcpuOp(VCPUOP_initialise, 1, CTX), ctx32({ cr0: 0x11 }), true)).toBe(0);
    // Null DS and ES are allowed (Xen's check_segment); a null SS is not.
    expect(result(vcpuOp(VCPUOP_initialise, 1, CTX), ctx32({ dsAr: 0, ssAr: 0xc93 }))).toBe(0);
    expect(result(vcpuOp(VCPUOP_initialise, 1, CTX), ctx32({ ssAr: 0 }))).toBe(-XEN_EINVAL);
    // A refused context leaves the vCPU uninitialised: a good one is accepted afterwards.
    expect(result(`${vcpuOp(VCPUOP_initialise, 1, CTX + 0x100)} ${vcpuOp(VCPUOP_initialise, 1, CTX)}`)).toBe(0);
    expect(result(vcpuOp(VCPUOP_initialise, 1, CTX), ctx64(AP, 0x8000)), "a non-canonical 64-bit RIP").toBe(-XEN_EINVAL);
  });

  it("a refused bring-up leaves the AP down and the domain powers off when the BSP halts", () => {
    const d = boot(image(`${vcpuOp(VCPUOP_up, 1)} fa f4`, "faf4", ctx32()));
    expect(d.state).toBe("shutdown");
    expect(d.shutdownReason).toMatch(/interrupts disabled/);
    expect(d.vcpus[1]!.launched).toBe(false);
  });

  for (const hap of [true, false]) {
    it(`an IPI from the BSP through the xAPIC ICR reaches the AP it names (${hap ? "EPT" : "shadow"})`, () => {
      // test/mmio-guests/ipi.S: vCPU 1 comes up in 64-bit mode, enables its APIC and waits in HLT;
      // the BSP sends vector 0x40 to APIC ID 1; the AP counts it and EOIs its own APIC.
      const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 20_000 });
      const d = hv.createDomain({ name: "ipi", memoryMiB: 8, vcpus: 2, hap, kernel: tinyKernel(MMIO_GUESTS.ipi) });
      hv.run({ maxInstructions: 5_000_000 });
      const word = (gpa: number) => hv.memory.read32(d.machineAddress(gpa)!);
      expect(d.crashReason).toBeUndefined();
      expect(d.state).toBe("shutdown");
      expect(d.shutdownReason).toMatch(/halted with interrupts disabled/);
      expect(word(0x130020)).toBe(0); // VCPUOP_initialise
      expect(word(0x130024)).toBe(0); // VCPUOP_up
      expect(word(0x130000)).toBe(1); // IPIs taken
      const [bsp, ap] = d.vcpus;
      expect(ap!.interruptsInjected).toBe(1);
      expect(bsp!.interruptsInjected).toBe(0);
      expect(ap!.apic!.stats.eoi).toBe(1);
      expect(bsp!.apic!.stats.eoi).toBe(0);
      expect(ap!.wakeups).toBeGreaterThanOrEqual(1); // the IPI woke it from HLT
    });
  }

  it.each([
    ["EPT", true],
    ["shadow: emulated real mode", false],
  ])("a vCPU brought up with VCPUOP_initialise/VCPUOP_up that went down (cli; hlt) is reset by INIT and restarted in real mode by a SIPI (%s)", (_paging, hap) => {
    // AP (at AP): cli; hlt, then the real-mode code the BSP copies to 0x8000:
    //   mov $0xffff,%ax; mov %ax,%ds; movl $0x4d4d4d4d,0x810 (linear 0x100800 = FLAG); cli; hlt
    const real = "b8ffff8ed866c70610084d4d4d4dfaf4";
    const copy = `be${imm32(AP + 2)}bf${imm32(0x8000)}b9${imm32(real.length / 2)}fcf3a4 31f6`; // rep movsb; xor %esi,%esi (WAIT_FLAG adds ESI)
    const x2apic = `b91b000000b8000de0fe31d20f30`; // IA32_APIC_BASE = 0xFEE00D00 (EN | EXTD | BSP)
    const initSipi = `b930080000ba01000000b8004500000f30b8084600000f30`; // ICR: INIT to APIC ID 1, then SIPI vector 08h
    const bsp = `${vcpuOp(VCPUOP_initialise, 1, CTX)} 89c6 ${vcpuOp(VCPUOP_up, 1)} b900000200e2fe ${copy} ${x2apic} ${initSipi} ${WAIT_FLAG}`;
    const d = boot(image(bsp, `faf4${real}`, ctx32()), hap);
    expect(d.crashReason).toBeUndefined();
    expect(d.exitCode).toBe(0x4d4d_4d4d); // the flag from real mode
    expect(d.ipisIgnored).toBe(0); // the INIT found the AP down (not up), so neither IPI was ignored
    const ap = d.vcpus[1]!;
    expect(ap.cpu.realMode).toBe(true);
    expect(ap.cpu.seg[1]!.base).toBe(0x8000); // Seg.CS = 0800h from the SIPI vector
    expect(ap.down).toBe(true); // its final cli; hlt (an exit from emulated real mode on shadow)
    expect(ap.realModeEmulated).toBe(!hap);
    expect(d.exitStats.realModeInstructions).toBe(hap ? 0 : 4); // mov, mov, movl, cli (the HLT exits)
  });

  it("on shadow paging the INIT resets the AP and the start-up IPI starts it in real mode, emulated by the hypervisor (test/realmode-ap.test.ts runs a trampoline)", () => {
    // x2APIC on (WRMSR IA32_APIC_BASE = 0xFEE00D00: BSP | EN | EXTD); INIT to vCPU 1 (ICR 0x4500);
    // SIPI vector 8 to vCPU 1 (ICR 0x4608); spin (mov $0x10000,%ecx; loop .), then out 0xf4 with
    // 0x77. The AP runs the zeros at 0x8000 meanwhile (ADD [BX+SI], AL).
    const wrmsr = (msr: number, lo: number, hi: number) => `b9${imm32(msr)}b8${imm32(lo)}ba${imm32(hi)}0f30`;
    const code = `${wrmsr(0x1b, 0xfee0_0d00, 0)} ${wrmsr(0x830, 0x4500, 1)} ${wrmsr(0x830, 0x4608, 1)} b900000100e2fe b8${imm32(0x77)} ${OUT}`;
    const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 5_000 });
    const d = hv.createDomain({ name: "sipi", memoryMiB: 8, vcpus: 2, hap: false, kernel: tinyKernel(code) });
    const good = hv.createDomain({ name: "good", memoryMiB: 8, kernel: tinyKernel(`b8${imm32(0x55)} ${OUT}`) });
    hv.run({ maxInstructions: 1_000_000 });
    expect(d.crashReason).toBeUndefined();
    expect(d.exitCode).toBe(0x77);
    expect(d.ipisIgnored).toBe(0);
    const ap = d.vcpus[1]!;
    expect(ap.realModeEmulated).toBe(true);
    expect(ap.cpu.realMode).toBe(true);
    expect(ap.cpu.seg[1]!.base).toBe(0x8000);
    expect(d.exitStats.realModeInstructions).toBeGreaterThan(1000);
    expect(good.exitCode).toBe(0x55);
  });
});

describe("logical-destination IPIs (SDM 11.6.2.2)", () => {
  const XAPIC_LDR = 0xd0, XAPIC_DFR = 0xe0, XAPIC_SVR = 0xf0, XAPIC_ICR_LO = 0x300, XAPIC_ICR_HI = 0x310;
  const ICR_LOGICAL = 1 << 11;
  function threeVcpus() {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "lg", memoryMiB: 8, vcpus: 3, kernel: tinyKernel("ebfe") });
    for (const v of d.vcpus) v.apic!.write(XAPIC_SVR, 4, 0x1ff);
    return d;
  }
  it("xAPIC flat model: the destination bitmap is matched against each LDR[31:24]", () => {
    const d = threeVcpus();
    d.vcpus.forEach((v) => v.apic!.write(XAPIC_LDR, 4, (1 << (24 + v.id)) >>> 0));
    const [a, b, c] = d.vcpus.map((v) => v.apic!);
    a!.write(XAPIC_ICR_HI, 4, 0x02 << 24); // logical 0x02: vCPU 1 only
    a!.write(XAPIC_ICR_LO, 4, ICR_LOGICAL | 0x41);
    expect([a!.pendingVector(), b!.pendingVector(), c!.pendingVector()]).toEqual([-1, 0x41, -1]);
    a!.write(XAPIC_ICR_HI, 4, 0x05 << 24); // logical 0x05: vCPUs 0 and 2
    a!.write(XAPIC_ICR_LO, 4, ICR_LOGICAL | 0x42);
    expect([a!.pendingVector(), c!.pendingVector()]).toEqual([0x42, 0x42]);
    // Physical 0x02 is APIC ID 2, not vCPU 1.
    a!.write(XAPIC_ICR_HI, 4, 0x02 << 24);
    a!.write(XAPIC_ICR_LO, 4, 0x43);
    expect([b!.pendingVector(), c!.pendingVector()]).toEqual([0x41, 0x43]);
  });
  it("xAPIC cluster model and x2APIC clusters", () => {
    const d = threeVcpus();
    const apics = d.vcpus.map((v) => v.apic!);
    for (const [k, x] of apics.entries()) {
      x.write(XAPIC_DFR, 4, 0x0fff_ffff); // cluster model
      x.write(XAPIC_LDR, 4, ((k === 2 ? 0x21 : 0x10 | (1 << k)) << 24) >>> 0); // cluster 1: vCPUs 0, 1; cluster 2: vCPU 2
    }
    apics[0]!.write(XAPIC_ICR_HI, 4, 0x12 << 24); // cluster 1, member bit 1
    apics[0]!.write(XAPIC_ICR_LO, 4, ICR_LOGICAL | 0x44);
    expect(apics.map((x) => x.pendingVector())).toEqual([-1, 0x44, -1]);
    const x2 = new LocalApic({ apicId: 0x13, now: () => 0 }); // x2APIC: cluster 1, bit 3
    expect(x2.matchesLogical(0x0001_0008)).toBe(true);
    expect(x2.matchesLogical(0x0000_0008)).toBe(false);
    expect(x2.matchesLogical(0x0001_0004)).toBe(false);
  });
});
