/**
 * The hypervisor end to end: real gcc-built guest kernels booted by the domain builder in VMX
 * non-root operation on EPT, their port I/O, MSR and CPUID exits handled, several domains
 * scheduled in one host, and hostile or broken guests crashing only themselves.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { guestExpectedOutputUrl, guestImageUrl, type GuestImageName } from "@vtlab/guests";
import { BootLayout, DomainError, Hypervisor, MAX_STRING_IO_PER_EXIT, XEN_HVM_START_MAGIC_VALUE } from "@vtlab/hypervisor";
import { CPUID_1_EDX_FPU, ENTRY_IA32E_MODE, SECONDARY_UNRESTRICTED_GUEST, VmcsField as F } from "@vtlab/cpu-vmx";
import { SPIN, TRIPLE_FAULT, direct64Kernel, multibootKernel, tinyKernel } from "./tiny-kernel.js";
import { runYielding } from "./run-yielding.js";

const image = (name: GuestImageName) => new Uint8Array(readFileSync(guestImageUrl(name)));
const expected = (name: GuestImageName) => readFileSync(guestExpectedOutputUrl(name), "utf8");

describe("guest kernels on the hypervisor (EPT)", () => {
  for (const name of ["sha256", "sort", "format", "div64", "setjmp", "usermode", "demand"] as const) {
    it(`${name}: boots, prints what it printed under QEMU, exits 0 through the debug port`, async () => {
      const hv = new Hypervisor({ memoryMiB: 256 });
      const d = hv.createDomain({ name, memoryMiB: 64, kernel: image(name) });
      const r = await runYielding(hv, { maxInstructions: 1_000_000_000 });
      expect(r.reason).toBe("idle");
      expect({ state: d.state, code: d.exitCode, crash: d.crashReason }).toEqual({ state: "shutdown", code: 0, crash: undefined });
      expect(d.console).toBe(expected(name));
      const s = d.stats();
      expect(s.exitsByReason.IoInstruction).toBe(s.ioExits);
      expect(s.ioExits).toBeGreaterThanOrEqual(d.console.length); // one OUT to 0xE9 per console byte
      expect(s.eptReferences).toBeGreaterThan(0);
    });
  }

  it("the start-info page, memory map and command line are where the guest was told", () => {
    const hv = new Hypervisor({ memoryMiB: 128 });
    const d = hv.createDomain({ name: "k", memoryMiB: 32, kernel: tinyKernel(SPIN), cmdline: "iterations=7 workload=compute" });
    const at = (gpa: number) => d.machineAddress(gpa)!;
    expect(hv.memory.read32(at(BootLayout.startInfo))).toBe(XEN_HVM_START_MAGIC_VALUE);
    const bytes = new Uint8Array(29);
    hv.memory.readBytes(at(BootLayout.cmdline), bytes);
    expect(new TextDecoder().decode(bytes)).toBe("iterations=7 workload=compute");
    expect(hv.memory.read32(at(BootLayout.memmap + 32))).toBe(32 * 1024 * 1024 - 0x10_0000);
    expect(d.vcpus[0]!.cpu.lo[3]).toBe(BootLayout.startInfo); // EBX
  });
});

describe("guest kernels on shadow paging (hap=0)", () => {
  for (const name of ["sha256", "usermode", "demand"] as const) {
    it(`${name}: the same output as on EPT; page faults and CR3 loads exit to the shadow code`, async () => {
      const hv = new Hypervisor({ memoryMiB: 256 });
      const d = hv.createDomain({ name, memoryMiB: 64, hap: false, kernel: image(name) });
      await runYielding(hv, { maxInstructions: 1_000_000_000 });
      expect({ state: d.state, code: d.exitCode, crash: d.crashReason }).toEqual({ state: "shutdown", code: 0, crash: undefined });
      expect(d.console).toBe(expected(name));
      const s = d.stats();
      expect(s.eptReferences).toBe(0);
      expect(s.ept).toBeUndefined();
      expect(s.shadow!.faults.fill).toBeGreaterThan(0);
      expect(s.exitsByReason.ExceptionOrNmi).toBeGreaterThan(0);
      expect(s.shadow!.cr3Loads).toBeGreaterThan(0);
      if (name === "demand") expect(s.shadow!.faults.guest).toBeGreaterThanOrEqual(6160); // the guest's own demand faults, reflected with CR2
    });
  }
});

describe("direct 64-bit boot (an ELF64 with neither a PVH note nor a Multiboot header)", () => {
  for (const hap of [true, false]) {
    it(`enters e_entry in 64-bit mode on the identity map with RDI = RBX = hvm_start_info (${hap ? "EPT" : "shadow"})`, () => {
      const hv = new Hypervisor({ memoryMiB: 64 });
      // cmp rdi, rbx; jne spin; mov eax, [rdi] (the hvm_start_info magic); out 0xf4, eax; hlt; spin: jmp $
      const d = hv.createDomain({ name: "d64", memoryMiB: 8, hap, kernel: direct64Kernel("4839df 7505 8b07 e7f4 f4 ebfe") });
      hv.run({ maxInstructions: 100_000 });
      expect(d.exitCode).toBe(XEN_HVM_START_MAGIC_VALUE);
      const v = d.vcpus[0]!;
      expect(v.cpu.mode64).toBe(true);
      expect(v.vmcs.read32(F.SECONDARY_VM_EXEC_CONTROL) & SECONDARY_UNRESTRICTED_GUEST).toBe(0);
    });
  }
});

describe("Multiboot kernels (no PVH note, a Multiboot header)", () => {
  const run = (kernel: Uint8Array, cmdline = "") => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "mb", memoryMiB: 8, kernel, cmdline });
    hv.run({ maxInstructions: 100_000 });
    return d;
  };
  it("enter at e_entry with EAX = 0x2BADB002 and EBX = multiboot_info (memory sizes, command line)", () => {
    expect(run(multibootKernel("e7f4")).exitCode).toBe(0x2badb002); // out 0xf4, eax
    expect(run(multibootKernel("8b4308 e7f4")).exitCode).toBe(7 * 1024); // mem_upper: 8 MiB - 1 MiB, in KiB
    expect(run(multibootKernel("8b4310 0fb600 e7f4"), "Zebra").exitCode).toBe("Z".charCodeAt(0)); // *cmdline
    expect(run(multibootKernel("8b03 e7f4")).exitCode).toBe(1 | 4 | 64); // flags: memory, cmdline, mmap
  });
  it("a header with a wrong checksum is refused, naming it", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    expect(() => hv.createDomain({ name: "mb", memoryMiB: 8, kernel: multibootKernel("e7f4", 0x1234) })).toThrow(/Multiboot header at offset 0x[0-9a-f]+: checksum 0x1234/);
  });
});

describe("exits a guest causes", () => {
  const runTiny = (code: string, hap = true) => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "t", memoryMiB: 8, hap, kernel: tinyKernel(code) });
    hv.run({ maxInstructions: 1_000_000 });
    return d;
  };

  it("CPUID 0x40000000 gives the Xen signature; leaf 1 has the hypervisor bit, the FPU and no VMX", () => {
    // mov eax, 0x40000000; cpuid; mov eax, ebx; out 0xf4, eax
    expect(runTiny("b800000040 0fa2 89d8 e7f4").exitCode).toBe(0x566e6558); // "XenV"
    // mov eax, 1; cpuid; mov eax, ecx; out 0xf4, eax
    // mov eax, 1; cpuid; mov eax, edx; out 0xf4, eax: EDX.APIC (bit 9), EDX.FPU (bit 0: the x87 runs)
    const edx = runTiny("b801000000 0fa2 89d0 e7f4").exitCode!;
    expect((edx >>> 9) & 1).toBe(1);
    expect(edx & CPUID_1_EDX_FPU).toBe(1);
    const ecx = runTiny("b801000000 0fa2 89c8 e7f4").exitCode!;
    expect(ecx >>> 31).toBe(1);
    expect(ecx & (1 << 5)).toBe(0);
  });

  it("VMCALL answers -ENOSYS (no hypercall table yet)", () => {
    // vmcall; out 0xf4, eax
    const d = runTiny("0f01c1 e7f4");
    expect(d.exitCode).toBe(-38 >>> 0);
    expect(d.hypercalls).toBe(1);
  });

  it("WRMSR to an MSR that does not exist injects #GP (here, with no IDT, the domain triple-faults)", () => {
    // mov ecx, 0x12345678; xor eax, eax; xor edx, edx; wrmsr
    const d = runTiny("b978563412 31c0 31d2 0f30");
    expect(d.state).toBe("crashed");
    expect(d.crashReason).toBe("triple fault");
    expect(d.stats().exitsByReason).toMatchObject({ MsrWrite: 1, TripleFault: 1 });
  });

  it("RDMSR of EFER reads the guest's EFER (0 at the PVH entry, on EPT and on shadow); setting a reserved EFER bit is #GP", () => {
    // mov ecx, 0xc0000080; rdmsr; out 0xf4, eax
    expect(runTiny("b9800000c0 0f32 e7f4").exitCode).toBe(0);
    expect(runTiny("b9800000c0 0f32 e7f4", false).exitCode).toBe(0);
    // mov ecx, 0xc0000080; mov eax, 0x501 | 0x10000; xor edx, edx; wrmsr
    expect(runTiny("b9800000c0 b801050100 31d2 0f30").crashReason).toBe("triple fault");
  });

  it("HLT with interrupts off powers the domain off (Xen's hvm_hlt), also with APs that never started", () => {
    const d = runTiny("fa f4"); // cli; hlt
    expect(d.state).toBe("shutdown");
    expect(d.shutdownReason).toMatch(/interrupts disabled/);
    expect(d.exitCode).toBe(0); // SHUTDOWN_poweroff, as SCHEDOP_shutdown(SHUTDOWN_poweroff) gives
    expect(d.shutdownCode).toBe(0);
    const hv = new Hypervisor({ memoryMiB: 64 });
    const smp = hv.createDomain({ name: "smp", memoryMiB: 8, vcpus: 4, kernel: tinyKernel("fa f4") });
    expect(hv.run({ maxInstructions: 1_000_000 }).reason).toBe("idle");
    expect(smp.vcpus).toHaveLength(4);
    expect(smp.state).toBe("shutdown");
  });

  it("an access to guest-physical memory with nothing behind it below 4 GiB reads all ones; the write is dropped and counted", () => {
    // mov dword [0xe0000000], 1; mov eax, [0xe0000000]; out 0xf4, eax (beyond the domain's 8 MiB: a PC's floating bus)
    const d = runTiny("c705000000e0 01000000 a1000000e0 e7f4");
    expect(d.exitCode).toBe(0xffff_ffff);
    expect(d.stats().unassignedWrites).toBe(1);
  });

  // The guest's own switch to IA-32e mode: PML4 at 0x2000 -> PDPT at 0x3000 -> one 1 GiB page,
  // CR3, CR4.PAE, EFER.LME, then CR0.PG (which exits: PG is host-owned).
  const TABLES = "c705 00200000 03300000 c705 00300000 83000000 b800200000 0f22d8";
  const PAE = "0f20e0 83c820 0f22e0";
  const LME = "b9800000c0 0f32 0d00010000 0f30";
  const PG_ON = "0f20c0 0d00000080 0f22c0";
  const PG_OFF = "0f20c0 25ffffff7f 0f22c0";
  const EFER_OUT = "b9800000c0 0f32 e7f4";

  it("the PVH entry is flat 32-bit protected mode with paging off: CR0 reads PE | ET (EPT: unrestricted guest; shadow: the identity table, WP kept)", () => {
    // mov eax, cr0; out 0xf4, eax
    const d = runTiny("0f20c0 e7f4");
    expect(d.exitCode).toBe(0x11);
    expect(d.vcpus[0]!.vmcs.read32(F.SECONDARY_VM_EXEC_CONTROL) & SECONDARY_UNRESTRICTED_GUEST).not.toBe(0);
    // Shadow paging has no unrestricted guest: the vCPU runs on the identity table, paging
    // virtualized; the guest sees PG = 0 (and WP = 1, which mmu-shadow needs). CR3 and CR4 read 0.
    const s = runTiny("0f20c0 e7f4", false);
    expect(s.exitCode).toBe(0x1_0011);
    expect(s.vcpus[0]!.vmcs.read32(F.SECONDARY_VM_EXEC_CONTROL) & SECONDARY_UNRESTRICTED_GUEST).toBe(0);
    expect((s.vcpus[0]!.vmcs.read32(F.GUEST_CR0) & 0x8000_0000) >>> 0).toBe(0x8000_0000); // paging on underneath
    // mov eax, cr3; out 0xf4, eax / mov eax, cr4; out 0xf4, eax
    expect(runTiny("0f20d8 e7f4", false).exitCode).toBe(0);
    expect(runTiny("0f20e0 e7f4", false).exitCode).toBe(0);
  });

  it("an EPT guest turns IA-32e mode on and, from compatibility mode, off again (EFER.LMA follows CR0.PG)", () => {
    expect(runTiny(`${TABLES} ${PAE} ${LME} ${PG_ON} ${EFER_OUT}`).exitCode).toBe(0x500);
    const d = runTiny(`${TABLES} ${PAE} ${LME} ${PG_ON} ${PG_OFF} ${EFER_OUT}`);
    expect(d.exitCode).toBe(0x100); // LME stays, LMA goes
    expect(d.vcpus[0]!.vmcs.read32(F.VM_ENTRY_CONTROLS) & ENTRY_IA32E_MODE).toBe(0);
    expect(d.stats().exitsByReason).toMatchObject({ CrAccess: 2 });
  });

  it("paging on with LME but without CR4.PAE is #GP; without LME an EPT guest runs 32-bit or PAE paging (SDM 4.3, 4.4)", () => {
    expect(runTiny(`${TABLES} ${LME} ${PG_ON} ${EFER_OUT}`).crashReason).toBe("triple fault");
    // PAE paging on TABLES: its first entry, read as a PDPTE, has R/W set, a reserved bit: the CR0 write is #GP.
    expect(runTiny(`${TABLES} ${PAE} ${PG_ON} ${EFER_OUT}`).crashReason).toBe("triple fault");
    // mov dword [0x2000], 0x3001 (a PDPTE); mov dword [0x3000], 0x83 (a 2 MiB page); CR3 = 0x2000
    const pae = "c705 00200000 01300000 c705 00300000 83000000 b800200000 0f22d8";
    const d = runTiny(`${pae} ${PAE} ${PG_ON} 0f20c0 e7f4`);
    expect((d.exitCode ?? 0) >>> 0).toBe(0x8000_0011); // CR0: PG, ET, PE; no long mode
    expect(Array.from(d.vcpus[0]!.cpu.pdpte.subarray(0, 2))).toEqual([0x3001, 0]);
    // 32-bit paging: mov dword [0x2000], 0x83 (a 4 MiB page, CR4.PSE); CR3 = 0x2000
    const pse = "c705 00200000 83000000 b800200000 0f22d8 0f20e0 83c810 0f22e0";
    expect(runTiny(`${pse} ${PG_ON} ${EFER_OUT}`).exitCode).toBe(0);
  });

  it("on shadow the same switch runs, paging virtualized: the shadow moves from the identity table to the guest's CR3 and back", () => {
    expect(runTiny(`${TABLES} ${PAE} ${LME} ${PG_ON} ${EFER_OUT}`, false).exitCode).toBe(0x500);
    const d = runTiny(`${TABLES} ${PAE} ${LME} ${PG_ON} ${PG_OFF} ${EFER_OUT}`, false);
    expect(d.exitCode).toBe(0x100);
    // Paging off and on again: the guest's CR3 (0x2000) is kept and read back; the shadow follows.
    // mov eax, cr3; out 0xf4, eax
    expect(runTiny(`${TABLES} ${PAE} ${LME} ${PG_ON} ${PG_OFF} 0f20d8 e7f4`, false).exitCode).toBe(0x2000);
    expect(runTiny(`${TABLES} ${PAE} ${LME} ${PG_ON} ${PG_OFF} ${PG_ON} ${EFER_OUT}`, false).exitCode).toBe(0x500);
    expect(runTiny(`${TABLES} ${LME} ${PG_ON} ${EFER_OUT}`, false).crashReason).toBe("triple fault"); // no PAE: #GP
    // PAE paging without LME: TABLES' first entry read as a PDPTE has R/W, a reserved bit: #GP.
    expect(runTiny(`${TABLES} ${PAE} ${PG_ON} ${EFER_OUT}`, false).crashReason).toBe("triple fault");
    // With a valid PDPT the guest runs in PAE paging (EFER reads 0), shadowed with PAE tables.
    const pae = "c705 00200000 01300000 c705 00300000 83000000 b800200000 0f22d8";
    const d2 = runTiny(`${pae} ${PAE} ${PG_ON} ${EFER_OUT}`, false);
    expect({ code: d2.exitCode, crash: d2.crashReason }).toEqual({ code: 0, crash: undefined });
    expect(d2.vcpus[0]!.vmcs.read32(F.VM_ENTRY_CONTROLS) & ENTRY_IA32E_MODE).toBe(0); // PAE paging underneath
  });

  it("on shadow, CR4 is virtualized: the guest's PAE reads back, PAE cannot be cleared in IA-32e mode, VMXE is #GP", () => {
    // mov eax, cr4; or eax, 0x20; mov cr4, eax; mov eax, cr4; out 0xf4, eax
    expect(runTiny("0f20e0 83c820 0f22e0 0f20e0 e7f4", false).exitCode).toBe(0x20);
    // IA-32e on, then mov eax, cr4; and eax, ~0x20; mov cr4, eax: #GP (triple fault without an IDT)
    expect(runTiny(`${TABLES} ${PAE} ${LME} ${PG_ON} 0f20e0 83e0df 0f22e0 ${EFER_OUT}`, false).crashReason).toBe("triple fault");
    // mov eax, cr4; or eax, 0x2000 (VMXE); mov cr4, eax
    expect(runTiny("0f20e0 0d00200000 0f22e0 e7f4", false).crashReason).toBe("triple fault");
  });
});

describe("several domains in one host", () => {
  it("two run at once; one triple-faults, the other finishes with the right output", async () => {
    const hv = new Hypervisor({ memoryMiB: 256, sliceInstructions: 200_000 });
    const good = hv.createDomain({ name: "good", memoryMiB: 64, kernel: image("sort") });
    const bad = hv.createDomain({ name: "bad", memoryMiB: 16, kernel: tinyKernel(`${"90".repeat(64)}${TRIPLE_FAULT}`) });
    await runYielding(hv, { maxInstructions: 1_000_000_000 });
    expect(bad.state).toBe("crashed");
    expect(bad.crashReason).toBe("triple fault");
    expect(good.state).toBe("shutdown");
    expect(good.exitCode).toBe(0);
    expect(good.console).toBe(expected("sort"));
  });

  it("a REP INSB with ECX = 2^32-1 is done in batches: the other domain keeps running, the hostile one crashes at the end of its RAM", async () => {
    const hv = new Hypervisor({ memoryMiB: 256, sliceInstructions: 200_000 });
    const good = hv.createDomain({ name: "good", memoryMiB: 64, kernel: image("setjmp") });
    // mov edi, 0x200000; mov ecx, 0xffffffff; mov dx, 0xe9; rep insb
    const bad = hv.createDomain({ name: "bad", memoryMiB: 8, kernel: tinyKernel("bf00002000 b9ffffffff 66bae900 f36c") });
    // Each element is charged (CostModel.deviceModelAccess): 6 MiB of them cost about 1.3e9 instruction-times.
    await runYielding(hv, { maxInstructions: 2_000_000_000 });
    expect(good.exitCode).toBe(0);
    expect(good.console).toBe(expected("setjmp"));
    expect(bad.state).toBe("crashed");
    expect(bad.crashReason).toMatch(/touches GPA 0x800000: not RAM/);
    // 6 MiB of bytes before the end of RAM, at most 4096 per exit (fewer when the slice has less time left for them).
    expect(bad.stats().ioExits).toBeGreaterThan((6 * 1024 * 1024) / MAX_STRING_IO_PER_EXIT);
    expect(bad.exitStats.ioAccesses).toBe(6 * 1024 * 1024);
    expect(bad.vcpus[0]!.cpu.lo[1]! >>> 0).toBe(0xffff_ffff - 6 * 1024 * 1024); // ECX counts what is left
  });

  it("slices follow the weights; pause stops a domain and unpause resumes it", () => {
    const hv = new Hypervisor({ memoryMiB: 128, sliceInstructions: 10_000 });
    const heavy = hv.createDomain({ name: "heavy", memoryMiB: 8, kernel: tinyKernel(SPIN), weight: 512 });
    const light = hv.createDomain({ name: "light", memoryMiB: 8, kernel: tinyKernel(SPIN), weight: 256 });
    const slices: [string, number][] = [];
    let last = [0, 0];
    hv.run({
      maxInstructions: 3_000_000,
      onSlice: () => {
        const now = [heavy.instructions, light.instructions];
        slices.push(now[0]! > last[0]! ? ["heavy", now[0]! - last[0]!] : ["light", now[1]! - last[1]!]);
        last = now;
      },
    });
    expect(heavy.instructions / light.instructions).toBeCloseTo(2, 1);
    // Each slice ends on a VMX-preemption-timer exit after exactly its weighted length (a spinning
    // guest has no other exits): 20,000 instructions at weight 512, 10,000 at 256.
    expect(slices.slice(2, 10)).toEqual([["heavy", 20_000], ["light", 10_000], ["heavy", 20_000], ["light", 10_000], ["heavy", 20_000], ["light", 10_000], ["heavy", 20_000], ["light", 10_000]]);
    expect(heavy.stats().exitsByReason.PreemptionTimer).toBe(Math.ceil(heavy.instructions / 20_000)); // the last slice is cut short by the run budget
    expect(light.stats().exitsByReason.PreemptionTimer).toBe(Math.ceil(light.instructions / 10_000));
    heavy.pause();
    const before = heavy.instructions;
    hv.run({ maxInstructions: 100_000 });
    expect(heavy.instructions).toBe(before);
    heavy.unpause();
    hv.run({ maxInstructions: 100_000 });
    expect(heavy.instructions).toBeGreaterThan(before);
  });

  it("domains get disjoint machine frames; destroy gives every frame back", () => {
    const hv = new Hypervisor({ memoryMiB: 128 });
    const free0 = hv.frames.freeFrames;
    const a = hv.createDomain({ name: "a", memoryMiB: 16, kernel: tinyKernel(SPIN) });
    const b = hv.createDomain({ name: "b", memoryMiB: 16, kernel: tinyKernel(SPIN) });
    hv.run({ maxInstructions: 100_000 });
    const aLo = a.machineAddress(0)!, aHi = a.machineAddress(16 * 1024 * 1024 - 1)!;
    const bLo = b.machineAddress(0)!, bHi = b.machineAddress(16 * 1024 * 1024 - 1)!;
    expect(aHi < bLo || bHi < aLo).toBe(true);
    expect(a.machineAddress(16 * 1024 * 1024)).toBeUndefined();
    expect(free0 - hv.frames.freeFrames).toBe(a.framesHeld + b.framesHeld + 1); // + the shared MSR bitmap
    hv.destroyDomain("a");
    hv.destroyDomain("b");
    expect(hv.frames.freeFrames).toBe(free0 - 1);
    expect(hv.domains).toHaveLength(0);
    // A new domain gets zeroed frames: nothing of the old guests is visible.
    const c = hv.createDomain({ name: "c", memoryMiB: 16, kernel: tinyKernel(SPIN) });
    expect(hv.memory.read32(c.machineAddress(0x7000 + 8)!)).toBe(0xffff); // the builder's GDT, freshly written
    expect(hv.memory.read32(c.machineAddress(0x200_000)!)).toBe(0);
  });
});

describe("bad configurations and images are refused with the reason", () => {
  const hv = new Hypervisor({ memoryMiB: 64 });
  const ok = { name: "x", memoryMiB: 8, kernel: tinyKernel(SPIN) };
  const cases: [string, Parameters<Hypervisor["createDomain"]>[0], RegExp][] = [
    ["a bad name", { ...ok, name: "no spaces" }, /name/],
    ["too little memory", { ...ok, memoryMiB: 1 }, /memory: 1 MiB/],
    ["more memory than the host has", { ...ok, memoryMiB: 2048 }, /more than the host has free/],
    ["zero vCPUs", { ...ok, vcpus: 0 }, /vcpus: 0/],
    ["more memory than a domain may have", { ...ok, memoryMiB: 1048577 }, /memory: 1048577 MiB is out of range; give an integer number of MiB, 2\.\.1048576/],
    ["a file that is not ELF", { ...ok, kernel: new Uint8Array(100) }, /kernel: e_ident\[EI_MAG\]/],
    ["an ELF with neither a PVH note nor a Multiboot header, not linked at its load address", { ...ok, kernel: direct64Kernel(SPIN, 0x20_0000) }, /boots directly in 64-bit mode on an identity map; but a PT_LOAD segment has p_vaddr 0x200000 != p_paddr 0x100000/],
    ["a command line too long", { ...ok, cmdline: "x".repeat(5000) }, /cmdline: 5000 bytes/],
    ["a command line with a NUL or a non-ASCII character", { ...ok, cmdline: "a=1\u0000b" }, /cmdline: character 3 \(code 0\)/],
  ];
  for (const [what, options, message] of cases) {
    it(what, () => {
      const before = hv.frames.freeFrames;
      expect(() => hv.createDomain(options)).toThrow(DomainError);
      expect(() => hv.createDomain(options)).toThrow(message);
      expect(hv.frames.freeFrames).toBe(before); // nothing leaked
    });
  }
  it("a duplicate name", () => {
    hv.createDomain(ok);
    expect(() => hv.createDomain(ok)).toThrow(/a domain with this name exists/);
  });
});

describe("the local APIC of each vCPU", () => {
  it("a one-shot x2APIC timer wakes a halted vCPU at its deadline and the vector is injected", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    // IA32_APIC_BASE = 0xfee00000 | EN | EXTD (the vCPU's APIC starts in xAPIC mode, as after
    // reset; x2APIC is entered from there); SVR = 0x1ff (enabled); LVT timer = vector 0x40,
    // one-shot; divide by 1; initial count 100000; sti; hlt
    const code = [
      "b91b000000 b8000ce0fe 31d2 0f30",
      "b90f080000 b8ff010000 31d2 0f30",
      "b932080000 b840000000 0f30",
      "b93e080000 b80b000000 0f30",
      "b938080000 b8a0860100 0f30",
      "fb f4",
    ].join("");
    const d = hv.createDomain({ name: "apic", memoryMiB: 8, kernel: tinyKernel(code) });
    hv.run({ maxInstructions: 1_000_000 });
    const v = d.vcpus[0]!;
    expect(v.apic!.stats.timerFires).toBe(1);
    expect(v.wakeups).toBe(1);
    expect(v.interruptsInjected).toBe(1);
    // The clock jumped to the deadline while the vCPU was halted: 100,000 ticks of 1 ns.
    expect(hv.clock.nanoseconds).toBeGreaterThanOrEqual(100_000);
    // No IDT here: vector 0x40 cannot be delivered, so the domain triple-faults, and only it.
    expect(d.crashReason).toBe("triple fault");
    expect(d.stats().exitsByReason).toMatchObject({ MsrWrite: 5, Hlt: 1, TripleFault: 1 });
  });
});
