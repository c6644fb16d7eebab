/**
 * The PV clock and the wallclock (Xen's vcpu_time_info and shared_info.wc_*): the time scale as
 * Xen's set_time_scale computes it (and as the CPUID TSC leaf reports it), the guest's TSC as the
 * host clock, the version protocol, a guest that computes system time from its own vcpu_info on
 * EPT and shadow, and the configurable boot epoch.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DEFAULT_BOOT_EPOCH, Hypervisor, pvclockDeltaNs, pvclockScale, type Domain } from "@vtlab/hypervisor";
import { xenCpuidLeaf } from "@vtlab/xen-platform-pci";
import { VCPUOP_register_vcpu_info, XEN_PVCLOCK_TSC_STABLE_BIT, shared_info, vcpu_info, vcpu_register_vcpu_info, vcpu_time_info } from "@vtlab/xen-public";
import { Asm, DATA, HAPS, OUT, booted, image, mmu, run, struct } from "./sched-guest.js";

/** vcpu_time_info as the host sees it in machine memory. */
function timeInfo(hv: Hypervisor, d: Domain, vcpu = 0) {
  const base = d.xen.sharedInfo.vcpuInfoHpa(vcpu)! + vcpu_info.time;
  const r32 = (off: number) => hv.memory.read32(base + off) as number;
  const r64 = (off: number) => r32(off + 4) * 2 ** 32 + r32(off);
  return {
    version: r32(vcpu_time_info.version),
    tscTimestamp: r64(vcpu_time_info.tsc_timestamp),
    systemTime: r64(vcpu_time_info.system_time),
    mul: r32(vcpu_time_info.tsc_to_system_mul),
    shift: ((hv.memory.read8(base + vcpu_time_info.tsc_shift) as number) << 24) >> 24,
    flags: hv.memory.read8(base + vcpu_time_info.flags) as number,
  };
}

describe("the time scale (Xen's set_time_scale)", () => {
  it("gives Xen's tsc_to_system_mul and tsc_shift for common TSC rates", () => {
    expect(pvclockScale(2_000_000_000)).toEqual({ mulFrac: 0x8000_0000, shift: 0 });
    expect(pvclockScale(1_000_000_000)).toEqual({ mulFrac: 0x8000_0000, shift: 1 }); // 10^9 is doubled: the loop runs while <= 10^9
    expect(pvclockScale(3_000_000_000)).toEqual({ mulFrac: 2_863_311_530, shift: -1 });
    expect(pvclockScale(2_500_000_000)).toEqual({ mulFrac: 3_435_973_836, shift: -1 });
    expect(pvclockScale(1_000_000)).toEqual({ mulFrac: 4_194_304_000, shift: 10 });
  });

  it("agrees with the CPUID TSC leaf (0x40000003 sub-leaf 1: ECX mul, EDX shift) for any rate", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1_000_000, max: 2 ** 40 }), (hz) => {
        const out = new Int32Array(4);
        xenCpuidLeaf(0x4000_0003, 1, { vcpuId: 0, domid: 1, tscHz: hz }, out);
        const s = pvclockScale(hz);
        return out[2]! >>> 0 === s.mulFrac && out[3] === s.shift;
      }),
    );
  });

  it("the guest's formula turns TSC ticks into nanoseconds to within a few parts per billion", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1_000_000, max: 2 ** 40 }), fc.integer({ min: 0, max: 2 ** 44 }), (hz, ticks) => {
        const exact = (ticks * 1e9) / hz;
        const ns = pvclockDeltaNs(ticks, pvclockScale(hz));
        return Number.isInteger(ns) && Math.abs(ns - exact) <= exact * 4e-9 + 2;
      }),
    );
  });

  it("the host's scale is its clock's (2 GHz)", () => {
    const hv = new Hypervisor({ memoryMiB: 16 });
    expect(hv.tscScale).toEqual(pvclockScale(hv.clock.frequencyHz));
  });
});

describe("the guest's TSC is the host clock", () => {
  for (const hap of HAPS) {
    it(`RDTSC and RDMSR IA32_TSC read the host's cycles (CPI 1), across another domain's slices too (${mmu(hap)})`, () => {
      const code = new Asm().spin(1000).rdtsc(OUT).mov(1, 0x10); // mov ecx, IA32_TSC
      code.code.push(0x0f, 0x32); // rdmsr
      code.storeEax(OUT + 8).spin(50_000).rdtsc(OUT + 16).exit(0x41);
      const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 10_000 });
      const d = hv.createDomain({ name: "t", memoryMiB: 8, hap, kernel: image(code) });
      hv.createDomain({ name: "other", memoryMiB: 8, hap, kernel: image(new Asm().spin(60_000).exit(1)) });
      hv.run({ maxInstructions: 1_000_000 });
      const g = booted(hv, d);
      // mov ecx + 1000 x (dec, jnz) retired before the RDTSC, from cycle 0.
      expect(g.u64(OUT)).toBe(2001);
      // RDTSC, two stores, mov ecx: the RDMSR exits with the clock 4 cycles on.
      expect(g.u32(OUT + 8)).toBe(2005);
      // The spin is 100,002 instructions of this domain; slices of the other domain (10,000
      // instructions each) ran in between, and the TSC counted them too.
      const elapsed = g.u64(OUT + 16) - g.u64(OUT);
      expect(elapsed).toBeGreaterThan(100_002 + 5 * 10_000);
      expect(elapsed).toBeLessThan(100_002 + 120_002 + 100);
      expect(d.exitCode).toBe(0x41);
    });
  }
});

describe("vcpu_time_info in vcpu_info", () => {
  it("after a run: version even, the host's scale, TSC_STABLE, and the stamp of the last switch in", () => {
    const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 10_000 });
    const d = hv.createDomain({ name: "a", memoryMiB: 8, kernel: image(new Asm().forever()) });
    hv.createDomain({ name: "b", memoryMiB: 8, kernel: image(new Asm().forever()) });
    hv.run({ maxInstructions: 100_000 });
    const t = timeInfo(hv, d);
    expect(t.version % 2).toBe(0);
    expect(t.version).toBeGreaterThanOrEqual(2 * 4); // one update per slice of this vCPU
    expect(t.version).toBe(2 * d.xenTime.updates);
    expect({ mulFrac: t.mul, shift: t.shift }).toEqual(hv.tscScale);
    expect(t.flags).toBe(XEN_PVCLOCK_TSC_STABLE_BIT);
    expect(t.systemTime).toBe(t.tscTimestamp / 2); // 2 GHz
    // The guest's extrapolation from the stamp is the host clock.
    const now = hv.clock.cycles;
    expect(t.systemTime + pvclockDeltaNs(now - t.tscTimestamp, hv.tscScale)).toBe(Math.floor(hv.clock.nanoseconds));
  });

  it("moves with the simulated clock: read before and after running", () => {
    const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 10_000 });
    const d = hv.createDomain({ name: "a", memoryMiB: 8, kernel: image(new Asm().forever()) });
    hv.run({ maxInstructions: 50_000 });
    const before = timeInfo(hv, d);
    hv.run({ maxInstructions: 500_000 });
    const after = timeInfo(hv, d);
    expect(after.version).toBeGreaterThan(before.version);
    expect(after.systemTime - before.systemTime).toBeGreaterThan(200_000); // > 400,000 cycles of guest time
    expect(after.systemTime).toBeLessThanOrEqual(hv.clock.nanoseconds);
    expect(hv.clock.nanoseconds - after.systemTime).toBeLessThanOrEqual(10_000 / 2 + 1000); // within one slice
  });

  it("a guest-written version (odd, say) is taken as the start: Xen's (v + 1) | 1, then + 1", () => {
    const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 10_000 });
    const d = hv.createDomain({ name: "a", memoryMiB: 8, kernel: image(new Asm().forever()) });
    const base = d.xen.sharedInfo.vcpuInfoHpa(0)! + vcpu_info.time;
    hv.memory.write32(base + vcpu_time_info.version, 7);
    hv.memory.write32(base + vcpu_time_info.tsc_to_system_mul, 0xdead);
    hv.run({ maxInstructions: 5_000 }); // one slice
    expect(timeInfo(hv, d).version).toBe(10);
    expect(timeInfo(hv, d).mul).toBe(0x8000_0000);
    hv.memory.write32(base + vcpu_time_info.version, 0xffff_ffff);
    hv.run({ maxInstructions: 25_000 });
    expect(timeInfo(hv, d).version % 2).toBe(0);
  });

  it("a moved vcpu_info (VCPUOP_register_vcpu_info) gets the time at once", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "a", memoryMiB: 8, kernel: image(new Asm().forever()) });
    hv.run({ maxInstructions: 5_000 });
    const to = d.machineAddress(0x30_0040)!;
    expect(d.xen.sharedInfo.registerVcpuInfo({ vcpuId: 0, isCurrent: true, isUp: true }, 0x40, () => d.machineAddress(0x30_0000), () => undefined)).toBe(0);
    expect(d.xen.sharedInfo.vcpuInfoHpa(0)).toBe(to);
    const t = timeInfo(hv, d);
    expect(t.version % 2).toBe(0);
    expect(t.version).toBeGreaterThan(0);
    expect(t.mul).toBe(0x8000_0000);
    expect(t.systemTime).toBe(Math.floor(hv.clock.nanoseconds));
  });
});

/**
 * The PV clock read the way a guest kernel reads it (Linux's pvclock_clocksource_read), in
 * 32-bit code: wait for an even version, RDTSC, ((tsc - tsc_timestamp) * mul) >> 32 (tsc_shift
 * is 0 at 2 GHz, and the delta fits 32 bits within a slice), plus system_time, and retry if the
 * version moved. Stores the time (u64) at `out` and the TSC at `out + 8`.
 */
function readPvclock(a: Asm, time: number, out: number): Asm {
  const le = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
  const start = a.code.length;
  const c = a.code;
  c.push(0x8b, 0x35, ...le(time + vcpu_time_info.version)); // mov esi, [version]
  c.push(0xf7, 0xc6, 1, 0, 0, 0); // test esi, 1
  c.push(0x75, (start - (c.length + 2)) & 0xff); // jnz start
  c.push(0x0f, 0x31); // rdtsc
  c.push(0xa3, ...le(out + 8), 0x89, 0x15, ...le(out + 12)); // the TSC, for the test
  c.push(0x2b, 0x05, ...le(time + vcpu_time_info.tsc_timestamp)); // sub eax, [tsc_timestamp]
  c.push(0xf7, 0x25, ...le(time + vcpu_time_info.tsc_to_system_mul)); // mul dword [mul]
  c.push(0x89, 0xd0, 0x31, 0xd2); // mov eax, edx; xor edx, edx
  c.push(0x03, 0x05, ...le(time + vcpu_time_info.system_time)); // add eax, [system_time]
  c.push(0x13, 0x15, ...le(time + vcpu_time_info.system_time + 4)); // adc edx, [system_time + 4]
  c.push(0x3b, 0x35, ...le(time + vcpu_time_info.version)); // cmp esi, [version]
  c.push(0x75, (start - (c.length + 2)) & 0xff); // jne start
  c.push(0xa3, ...le(out), 0x89, 0x15, ...le(out + 4));
  return a;
}

describe("a guest reads the PV clock from its own vcpu_info", () => {
  for (const hap of HAPS) {
    it(`system time from vcpu_time_info and RDTSC is the host clock at that instruction, and it moves (${mmu(hap)})`, () => {
      const INFO = 0x30_0040;
      const TIME = INFO + vcpu_info.time;
      const reg = struct(vcpu_register_vcpu_info.SIZEOF, [[vcpu_register_vcpu_info.mfn, 8, 0x300], [vcpu_register_vcpu_info.offset, 4, 0x40]]);
      const code = new Asm().vcpuOp(VCPUOP_register_vcpu_info, 0, DATA).storeEax(OUT + 0x80);
      readPvclock(code, TIME, OUT);
      code.spin(100_000);
      readPvclock(code, TIME, OUT + 0x20);
      code.exit(0x42);
      const hv = new Hypervisor({ memoryMiB: 64, sliceInstructions: 10_000 });
      const d = hv.createDomain({ name: "c", memoryMiB: 8, hap, kernel: image(code, reg) });
      hv.createDomain({ name: "other", memoryMiB: 8, hap, kernel: image(new Asm().spin(200_000).exit(1)) });
      hv.run({ maxInstructions: 2_000_000 });
      const g = booted(hv, d);
      expect(g.i32(OUT + 0x80)).toBe(0);
      expect(d.exitCode).toBe(0x42);
      for (const at of [OUT, OUT + 0x20]) {
        const ns = g.u64(at);
        const tsc = g.u64(at + 8);
        expect(ns, `at 0x${at.toString(16)}`).toBe(Math.floor(tsc / 2));
      }
      expect(g.u64(OUT + 0x20) - g.u64(OUT)).toBeGreaterThan(100_000); // 200,000 cycles of this guest plus the other's slices
    });
  }
});

describe("the wallclock in shared_info", () => {
  const wallclock = (hv: Hypervisor, d: Domain) => {
    const base = d.xen.sharedInfo.hpa;
    const r = (off: number) => hv.memory.read32(base + off) as number;
    return { version: r(shared_info.wc_version), sec: r(shared_info.wc_sec), nsec: r(shared_info.wc_nsec), secHi: r(shared_info.wc_sec_hi) };
  };

  it("is the host boot epoch (default 2024-01-01T00:00:00Z), written once with an even version; it does not tick", () => {
    const g = run(new Asm().spin(10_000).exit(0), { hap: true });
    expect(wallclock(g.hv, g.d)).toEqual({ version: 2, sec: DEFAULT_BOOT_EPOCH.sec, nsec: 0, secHi: 0 });
    expect(DEFAULT_BOOT_EPOCH.sec).toBe(Date.UTC(2024, 0, 1) / 1000);
  });

  it("a configured epoch past 2^32 seconds uses wc_sec_hi", () => {
    const g = run(new Asm().spin(10_000).exit(0), { hap: false, host: { bootEpoch: { sec: 2 ** 33 + 5, nsec: 123 } } });
    expect(wallclock(g.hv, g.d)).toEqual({ version: 2, sec: 5, nsec: 123, secHi: 2 });
  });

  it("a bad epoch is refused", () => {
    for (const e of [{ sec: -1, nsec: 0 }, { sec: 1.5, nsec: 0 }, { sec: 0, nsec: 1e9 }, { sec: 2 ** 53, nsec: 0 }]) {
      expect(() => new Hypervisor({ memoryMiB: 16, bootEpoch: e })).toThrow(RangeError);
    }
  });
});
