/**
 * MMIO emulation (mmio.ts) and the local APIC's xAPIC MMIO page: hand-assembled guests (sources
 * in test/mmio-guests/*.S, assembled into mmio-guests.ts) run on EPT and on shadow paging with
 * the same results; every emulated MOV form against a recording device; hostile instructions
 * crash only their own domain while another finishes.
 */
import { describe, expect, it } from "vitest";
import { gfn, type AccessSize, type BusDevice } from "@vtlab/arch";
import { CR0_PG, VmcsField, decodeBytes } from "@vtlab/cpu-vmx";
import { P2mType } from "@vtlab/p2m";
import {
  APIC_BASE_DEFAULT,
  APIC_BASE_EN,
  APIC_BASE_EXTD,
  APIC_ESR_ILLEGAL_REGISTER,
  APIC_VERSION_VALUE,
  Hypervisor,
  LocalApic,
  copyFromGuest,
  MSR_IA32_APIC_BASE,
  MSR_X2APIC_TPR,
  XAPIC_ESR,
  XAPIC_ICR_HI,
  XAPIC_ICR_LO,
  XAPIC_ID,
  XAPIC_INIT_COUNT,
  XAPIC_SVR,
  XAPIC_TPR,
  XAPIC_VERSION,
  type Domain,
  type Vcpu,
} from "@vtlab/hypervisor";
import { MMIO_GUESTS } from "./mmio-guests.js";
import { tinyKernel } from "./tiny-kernel.js";

type Guest = keyof typeof MMIO_GUESTS;
const MODES = [
  ["EPT", true],
  ["shadow", false],
] as const;

/** Guest-physical scratch data the guests write (prologue.S). */
const SCRATCH = 0x130000;

function boot(hv: Hypervisor, name: string, guest: Guest, hap: boolean): Domain {
  return hv.createDomain({ name, memoryMiB: 8, hap, kernel: tinyKernel(MMIO_GUESTS[guest]) });
}

function read32(hv: Hypervisor, d: Domain, gpa: number): number {
  return hv.memory.read32(d.machineAddress(gpa)!) as number;
}

function reg(v: Vcpu, r: number): bigint {
  return (BigInt(v.cpu.hi[r]! >>> 0) << 32n) | BigInt(v.cpu.lo[r]! >>> 0);
}

/** A device that behaves as 4 KiB of little-endian registers and logs every access. */
class Recorder implements BusDevice {
  readonly bytes = new Uint8Array(0x1000);
  readonly log: string[] = [];
  read(offset: number, size: AccessSize): number {
    let v = 0;
    for (let k = size - 1; k >= 0; k--) v = v * 256 + this.bytes[offset + k]!;
    this.log.push(`r${size}@${offset.toString(16)}=${v.toString(16)}`);
    return v;
  }
  write(offset: number, size: AccessSize, value: number): undefined {
    for (let k = 0; k < size; k++) this.bytes[offset + k] = (value >>> (8 * k)) & 0xff;
    this.log.push(`w${size}@${offset.toString(16)}=${(value >>> 0).toString(16)}`);
    return undefined;
  }
}

describe("the APIC timer through xAPIC MMIO", () => {
  const results = MODES.map(([mode, hap]) => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = boot(hv, `timer-${mode}`, "timer", hap);
    hv.run({ maxInstructions: 5_000_000 });
    const v = d.vcpus[0]!;
    const s = d.stats();
    return {
      mode,
      d,
      s,
      observed: {
        state: d.state,
        crash: d.crashReason,
        ticks: read32(hv, d, SCRATCH),
        apicId: read32(hv, d, SCRATCH + 0x10),
        version: read32(hv, d, SCRATCH + 0x14),
        currentCountAfter: read32(hv, d, SCRATCH + 0x18),
        timerFires: v.apic!.stats.timerFires,
        eoi: v.apic!.stats.eoi,
        interruptsInjected: v.interruptsInjected,
        apicMode: v.apic!.mode,
        mmioExits: s.mmioExits,
        mmioAccesses: s.mmioAccesses,
        registers: Array.from({ length: 16 }, (_, r) => (r === 4 ? 0n : reg(v, r))),
      },
    };
  });

  for (const { mode, d, s, observed } of results) {
    it(`${mode}: programs the timer, takes vector 0x40, EOIs through MMIO, and reads ID and version`, () => {
      expect(observed).toMatchObject({
        state: "shutdown",
        crash: undefined,
        ticks: 1,
        apicId: 0, // xAPIC ID register: the ID (0) in bits 31:24
        version: APIC_VERSION_VALUE,
        currentCountAfter: 0,
        timerFires: 1,
        eoi: 1,
        interruptsInjected: 1,
        apicMode: "xapic",
        // ID, version, SVR, divide, LVT timer, initial count, EOI, current count
        mmioExits: 8,
        mmioAccesses: 8,
      });
      expect(d.shutdownReason).toMatch(/halted with interrupts disabled/);
      if (mode === "EPT") {
        expect(s.exitsByReason.EptViolation).toBe(8);
        expect(s.ept!.mmio).toBe(8);
      } else {
        expect(s.shadow!.faults.mmio).toBe(8);
      }
    });
  }

  it("EPT and shadow end in the same state", () => {
    expect(results[0]!.observed).toEqual(results[1]!.observed);
  });
});

describe("every emulated MOV form", () => {
  const runs = MODES.map(([mode, hap]) => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = boot(hv, `movforms-${mode}`, "movforms", hap);
    const dev = new Recorder();
    expect(d.mmio.register(0xfed00000, 0x1000, dev, "recorder")).toBeUndefined();
    hv.run({ maxInstructions: 5_000_000 });
    return { mode, hv, d, dev };
  });

  for (const { mode, hv, d, dev } of runs) {
    it(`${mode}: stores and loads of 8, 16, 32 and 64 bits, immediates, moffs, AH..BH, REX byte registers, RSP, SIB`, () => {
      expect({ state: d.state, crash: d.crashReason }).toEqual({ state: "shutdown", crash: undefined });
      expect(dev.log.filter((l) => l.startsWith("w"))).toEqual([
        "w1@10=88", // mov %al
        "w1@11=77", // mov %ah
        "w2@12=7788", // mov %ax
        "w4@14=55667788", // mov %eax
        "w4@18=55667788", // mov %rax: low half first
        "w4@1c=11223344",
        "w1@20=5a", // mov %sil (REX)
        "w1@21=a5", // movb $imm8
        "w2@22=1234", // movw $imm16
        "w4@24=89abcdef", // movl $imm32
        "w4@28=fffffffe", // movq $-2 (imm32 sign-extended)
        "w4@2c=ffffffff",
        "w4@48=55667788", // SIB: 0x40(%rbx,%rcx,4), rcx = 2
        "w4@30=180000", // mov %rsp (from the VMCS)
        "w4@34=0",
        "w1@50=88", // A2 moffs
        "w4@58=55667788", // 48 A3 moffs
        "w4@5c=11223344",
      ]);
      const v = d.vcpus[0]!;
      expect(reg(v, 9)).toBe(0x1122334455667788n); // mov 0x18(%rbx), %r9
      expect(reg(v, 1)).toBe(0x5566a588n); // mov 0x14, %ecx (63:32 cleared), then mov 0x21, %ch
      expect(reg(v, 2)).toBe(0xffffffffffff7788n); // mov 0x12, %dx keeps 63:16
      expect(reg(v, 10)).toBe(0xffffffffffffff5an); // mov 0x20, %r10b
      expect(reg(v, 6)).toBe(0xefn); // movzbl
      expect(reg(v, 7)).toBe(0xcdefn); // movzwl
      expect(reg(v, 11)).toBe(0xffffffffffffffefn); // movsbq
      expect(reg(v, 12)).toBe(0xffff89abn); // movswl into r12d: 63:32 cleared
      expect(reg(v, 13)).toBe(0xffffffff89abcdefn); // movslq
      expect(reg(v, 15)).toBe(0x180000n); // mov 0x30(%rbx), %rsp, copied to r15
      expect(reg(v, 5)).toBe(0x556677efn); // A0 into %al, then mov %eax, %ebp
      expect(reg(v, 0)).toBe(0x89abcdefn); // A1 (32-bit)
      expect(read32(hv, d, SCRATCH + 0x20)).toBe(0x55667788); // 48 A1 (64-bit) stored to RAM
      expect(read32(hv, d, SCRATCH + 0x24)).toBe(0x11223344);
      const s = d.stats();
      expect(s.mmioExits).toBe(28); // 14 stores, 14 loads
      expect(s.mmioAccesses).toBe(35); // seven 64-bit accesses count twice
    });
  }

  it("EPT and shadow make the same device accesses and leave the same registers", () => {
    const [a, b] = runs;
    expect(a!.dev.log).toEqual(b!.dev.log);
    const regs = (d: Domain) => Array.from({ length: 16 }, (_, r) => (r === 4 ? 0n : reg(d.vcpus[0]!, r)));
    expect(regs(a!.d)).toEqual(regs(b!.d));
  });
});

describe("exact 64-bit arithmetic: effective addresses and RSP beyond 2^53", () => {
  const runs = MODES.map(([mode, hap]) => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = boot(hv, `bigregs-${mode}`, "bigregs", hap);
    const dev = new Recorder();
    expect(d.mmio.register(0xfed00000, 0x1000, dev, "recorder")).toBeUndefined();
    hv.run({ maxInstructions: 5_000_000 });
    return { mode, d, dev };
  });

  for (const { mode, d, dev } of runs) {
    it(`${mode}: base + index * scale + disp modulo 2^64, RSP as base, FS base, EIP-relative`, () => {
      expect({ state: d.state, crash: d.crashReason }).toEqual({ state: "shutdown", crash: undefined });
      expect(dev.log.filter((l) => l.startsWith("w"))).toEqual([
        "w4@44=11223344", // (%rdx,%rcx,4): 0xfed00044 + 2^62 * 4
        "w4@48=11223344", // (%rdx,%rcx,1): 0x80000000fed00048 + 2^63
        "w4@4c=11223344", // 0x7fffffff(%rdx,%rcx,1): 0x800000007ed0004d + 2^63 + 0x7fffffff
        "w4@60=123458", // mov %rax, 0x60(%rbx)
        "w4@64=ffff8000",
        "w2@68=beef", // movw $0xbeef
        "w4@70=12beef", // mov %rsp, 0x70(%rbx): the higher-half RSP from the VMCS
        "w4@74=ffff8000",
        "w4@88=123458", // mov %eax, 8(%rsp), RSP = 0xfed00080
        "w4@98=55667788", // mov %eax, %fs:(%rdx): FS base 0xffffffff80000000 + 0x17ed00098
        "w4@a0=55667788", // addr32 mov %eax, disp32(%eip): wraps modulo 2^32
      ]);
      expect(d.stats().mmioExits).toBe(12);
    });

    it(`${mode}: a higher-half RSP loaded from MMIO keeps every bit (GUEST_RSP written as exact halves)`, () => {
      const v = d.vcpus[0]!;
      expect(reg(v, 8)).toBe(0xffff800000123458n); // mov 0x60(%rbx), %rsp
      expect(reg(v, 9)).toBe(0xffff80000012beefn); // mov 0x68(%rbx), %sp: bits 63:16 kept
      expect(reg(v, 10)).toBe(0xbeefn); // mov 0x68(%rbx), %esp: bits 63:32 cleared
    });
  }
});

describe("MMIO with guest paging off (CR0.PG = 0)", () => {
  for (const [mode, hap] of MODES) {
    it(`${mode}: fetch and operand translation through gvaToGpa with paging off`, () => {
      const hv = new Hypervisor({ memoryMiB: 64 });
      const d = boot(hv, `unpaged-${mode}`, "unpaged", hap);
      const dev = new Recorder();
      expect(d.mmio.register(0xfed00000, 0x1000, dev, "recorder")).toBeUndefined();
      hv.run({ maxInstructions: 1_000_000 });
      expect({ state: d.state, crash: d.crashReason }).toEqual({ state: "shutdown", crash: undefined });
      expect((d.vcpus[0]!.vmcs.read32(VmcsField.GUEST_CR0) & CR0_PG) !== 0).toBe(!hap); // shadow: PG on underneath, on the identity table
      expect(dev.log).toEqual(["w4@10=12345678", "r4@10=12345678", "w2@14=abcd", "r2@14=abcd", "w1@18=5a"]);
      expect(read32(hv, d, SCRATCH)).toBe(0x12345678);
      expect(read32(hv, d, SCRATCH + 4)).toBe(0xabcd);
      expect(d.stats().mmioExits).toBe(5);
    });
  }
});

describe("copyFromGuest (guest-memory.ts)", () => {
  for (const [mode, hap] of MODES) {
    it(`${mode}: copies across pages, stops at an unmapped page and at a page the p2m marks MMIO`, () => {
      const hv = new Hypervisor({ memoryMiB: 64 });
      const d = boot(hv, `copy-${mode}`, "movforms", hap);
      d.mmio.register(0xfed00000, 0x1000, new Recorder(), "recorder");
      hv.run({ maxInstructions: 5_000_000 });
      expect(d.state).toBe("shutdown");
      const ctx = { hv, domain: d, vcpu: d.vcpus[0]! };
      const pattern = Uint8Array.from({ length: 32 }, (_, k) => k + 1);
      d.writeGuest(0x140ff0, pattern);
      const out = new Uint8Array(40).fill(0xee);
      expect(copyFromGuest(ctx, 0x140ff0, out, 32)).toBe(32); // 16 bytes on each side of 0x141000
      expect(Array.from(out.subarray(0, 32))).toEqual(Array.from(pattern));
      expect(out[32]).toBe(0xee);
      expect(copyFromGuest(ctx, 0x1ffff8, out, 16)).toBe(8); // the guest's tables map 0-2 MiB only
      // A RAM page the p2m now calls MMIO is never read as memory (the bytes are still in RAM).
      d.writeGuest(0x150000, pattern);
      expect(d.mmio.register(0x150000, 0x1000, new Recorder(), "over-ram")).toBeUndefined();
      expect(copyFromGuest(ctx, 0x14fffc, out, 16)).toBe(4);
      expect(copyFromGuest(ctx, 0x150000, out, 16)).toBe(0);
      expect(copyFromGuest(ctx, 0x140ff0, out, 100)).toBe(40); // no more than `out` holds
    });
  }
});

describe("hostile MMIO accesses crash only their own domain", () => {
  const cases: [Guest, RegExp][] = [
    ["unsupported", /^unhandleable MMIO read of GPA 0xfee00080 at RIP 0x[0-9a-f]+ \(bytes: 83 83 80 00 00 00 01\): unsupported instruction add/],
    ["split", /^unhandleable MMIO write to GPA 0xfee00ffe at RIP 0x[0-9a-f]+ \(bytes: 89 83 fe 0f 00 00\): a 4-byte access at GPA 0xfee00ffe is split across the end of local APIC$/],
    ["unmapped-rip", /^unhandleable MMIO write to GPA 0xfee00080 at RIP 0x[0-9a-f]+ \(bytes: none\): the instruction cannot be fetched/],
    // (The "hole" guest's GPA 0xFEC00000 is the IO-APIC now, and unassigned space below 4 GiB reads
    // all ones instead of crashing: platform-pci.test.ts tests both, and the crash above 4 GiB.)
  ];
  for (const [mode, hap] of MODES) {
    for (const [guest, reason] of cases) {
      it(`${mode}: ${guest}`, () => {
        const hv = new Hypervisor({ memoryMiB: 64 });
        const bad = boot(hv, "bad", guest, hap);
        const good = boot(hv, "good", "timer", hap);
        hv.run({ maxInstructions: 10_000_000 });
        expect(bad.state).toBe("crashed");
        expect(bad.crashReason).toMatch(reason);
        expect(bad.stats().mmioExits).toBe(1);
        expect({ state: good.state, crash: good.crashReason, ticks: read32(hv, good, SCRATCH) }).toEqual({ state: "shutdown", crash: undefined, ticks: 1 });
      });
    }
  }
});

describe("the per-vCPU APIC page", () => {
  it("one GPA, each vCPU's own APIC: the access goes to the APIC of the vCPU that made it", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "smp", memoryMiB: 8, vcpus: 3, kernel: tinyKernel(MMIO_GUESTS.timer) });
    const ids = d.vcpus.map((v) => {
      d.mmio.accessor = v;
      return d.mmio.bus.read(APIC_BASE_DEFAULT + XAPIC_ID, 4);
    });
    d.mmio.accessor = d.vcpus[2];
    d.mmio.bus.write(APIC_BASE_DEFAULT + XAPIC_TPR, 4, 0x20);
    d.mmio.accessor = undefined;
    expect(ids).toEqual([0, 1 << 24, 2 << 24]);
    expect(d.vcpus.map((v) => v.apic!.read(XAPIC_TPR, 4))).toEqual([0, 0, 0x20]);
    expect(d.mmio.bus.read(APIC_BASE_DEFAULT + XAPIC_ID, 4)).toBe(0xffffffff); // no accessing vCPU
    expect(d.p2m.lookup(gfn(APIC_BASE_DEFAULT / 4096)).type).toBe(P2mType.Mmio);
  });

  for (const [mode, hap] of MODES) {
    it(`${mode}: IA32_APIC_BASE moves the page: the APIC answers at its new base, the old one reads what the p2m has (nothing: all ones)`, () => {
      const hv = new Hypervisor({ memoryMiB: 64 });
      const d = boot(hv, "relocate", "relocate", hap);
      hv.run({ maxInstructions: 1_000_000 });
      expect({ state: d.state, crash: d.crashReason }).toEqual({ state: "shutdown", crash: undefined });
      expect([read32(hv, d, SCRATCH), read32(hv, d, SCRATCH + 4), read32(hv, d, SCRATCH + 8)]).toEqual([APIC_VERSION_VALUE, 0xffff_ffff, 0x20]);
      expect(d.vcpus[0]!.apic!.xapicBase).toBe(APIC_BASE_DEFAULT);
    });
  }

  it("a second device over the APIC page is refused (arch's MmioBus overlap check)", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = boot(hv, "overlap", "timer", true);
    const err = d.mmio.register(APIC_BASE_DEFAULT, 0x1000, new Recorder(), "other");
    expect(err?.reason).toBe("overlap");
    expect(d.mmio.register(0xfed00800, 0x1000, new Recorder(), "unaligned")?.reason).toBe("bad-range");
  });
});

describe("LocalApic xAPIC mode", () => {
  const xapic = () => new LocalApic({ apicId: 5, now: () => 0, mode: "xapic" });

  it("starts in xAPIC mode (EN set, EXTD clear); the x2APIC MSRs #GP; the page answers", () => {
    const apic = xapic();
    const base = apic.readMsr(MSR_IA32_APIC_BASE);
    expect(base.ok && base.lo & (APIC_BASE_EN | APIC_BASE_EXTD)).toBe(APIC_BASE_EN);
    expect(apic.readMsr(MSR_X2APIC_TPR).ok).toBe(false);
    expect(apic.writeMsr(MSR_X2APIC_TPR, 0x10, 0)).toBe(false);
    expect(apic.read(XAPIC_ID, 4)).toBe(5 << 24);
    expect(apic.read(XAPIC_VERSION, 4)).toBe(APIC_VERSION_VALUE);
    expect(apic.read(XAPIC_VERSION, 1)).toBe(0x14);
    expect(apic.read(XAPIC_VERSION + 2, 2)).toBe(5);
    expect(apic.read(XAPIC_VERSION + 4, 4)).toBe(0); // reserved bytes of the 16-byte slot
  });

  it("reserved bits are dropped, not #GP; narrow writes merge; reserved registers set ESR bit 7", () => {
    const apic = xapic();
    expect(apic.write(XAPIC_SVR, 4, 0xffff_ffff)).toBeUndefined();
    expect(apic.read(XAPIC_SVR, 4)).toBe(0x1ff);
    apic.write(XAPIC_INIT_COUNT, 4, 0x1234_5678);
    apic.write(XAPIC_INIT_COUNT + 1, 1, 0xab);
    expect(apic.read(XAPIC_INIT_COUNT, 4)).toBe(0x1234_ab78);
    apic.write(0x3f0, 4, 1); // SELF IPI exists only in x2APIC mode
    apic.write(XAPIC_ESR, 4, 0xdead); // any value latches
    expect(apic.read(XAPIC_ESR, 4)).toBe(APIC_ESR_ILLEGAL_REGISTER);
    expect(apic.write(XAPIC_TPR + 1, 2, 0)?.message).toMatch(/unaligned/);
  });

  it("ICR: destination in bits 63:56, 0xFF is broadcast", () => {
    const sent: number[][] = [];
    const apic = new LocalApic({ apicId: 0, now: () => 0, mode: "xapic", sendIpi: (dest, vector, shorthand, mode) => sent.push([dest, vector, shorthand, mode]) });
    apic.write(XAPIC_SVR, 4, 0x1ff);
    apic.write(XAPIC_ICR_HI, 4, 0x0300_00ff);
    apic.write(XAPIC_ICR_LO, 4, 0x41);
    apic.write(XAPIC_ICR_HI, 4, 0xff00_0000);
    apic.write(XAPIC_ICR_LO, 4, 0x42);
    expect(sent).toEqual([
      [3, 0x41, 0, 0],
      [0xffff_ffff, 0x42, 0, 0],
    ]);
    expect(apic.read(XAPIC_ICR_HI, 4)).toBe(0xff00_0000);
  });

  it("x2APIC mode (entered from xAPIC) and the disabled state do not decode the page", () => {
    const apic = xapic();
    apic.write(XAPIC_TPR, 4, 0x30);
    expect(apic.writeMsr(MSR_IA32_APIC_BASE, APIC_BASE_DEFAULT | APIC_BASE_EN | APIC_BASE_EXTD, 0)).toBe(true);
    expect(apic.mode).toBe("x2apic");
    expect(apic.read(XAPIC_TPR, 4)).toBe(0xffff_ffff);
    expect(apic.write(XAPIC_TPR, 4, 0x40)).toBeUndefined();
    const tpr = apic.readMsr(MSR_X2APIC_TPR);
    expect(tpr.ok && tpr.lo).toBe(0x30); // state kept across xAPIC -> x2APIC
    expect(apic.writeMsr(MSR_IA32_APIC_BASE, APIC_BASE_DEFAULT, 0)).toBe(true);
    expect(apic.mode).toBe("disabled");
    expect(apic.read(XAPIC_ID, 4)).toBe(0xffff_ffff);
  });
});

describe("decodeBytes (cpu-vmx) on a hostile copy", () => {
  it("an instruction that needs more bytes than were copied is undecodable, not a fault", () => {
    const bytes = Uint8Array.from([0x48, 0xc7, 0x43, 0x28, 0xfe, 0xff, 0xff, 0xff]);
    expect(decodeBytes(bytes, 8, true, false)?.len).toBe(8);
    expect(decodeBytes(bytes, 7, true, false)).toBeUndefined();
    expect(decodeBytes(new Uint8Array(15).fill(0x66), 15, true, false)).toBeUndefined(); // > 15 bytes
  });
});
