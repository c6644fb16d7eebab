/**
 * Xen's time interface for an HVM guest (xen/arch/x86/time.c, xen/common/time.c): the PV clock
 * in each vCPU's `vcpu_info.time` (struct vcpu_time_info) and the wallclock in shared_info.
 *
 * System time is Xen's NOW(): nanoseconds since the host booted, i.e. the simulated host clock
 * (`hv.clock`), shared by every domain. The TSC a guest reads (RDTSC, RDMSR IA32_TSC) is the host
 * clock's cycle count: `syncGuestTsc` sets the VMCS TSC offset at every VM entry so that the
 * interpreter's per-vCPU RDTSC (retired instructions plus offset) reads `hv.clock.cycles`.
 * Modelled more simply: the interpreter's TSC advances one per retired instruction inside a run,
 * so with a cost model whose `instruction` is not 1 cycle the TSC is exact only at VM entries.
 *
 * The guest computes the time the way vcpu_time_info's comment says:
 *   system_time + ((((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul) >> 32)
 * with tsc_to_system_mul / tsc_shift computed as Xen's set_time_scale does for the TSC frequency
 * (`pvclockScale`; CPUID leaf 0x40000003 reports the same pair, from the same function).
 *
 * When vcpu_time_info is written (Xen: update_vcpu_system_time at every context switch to the
 * vCPU, and at a forced update when the vCPU's vcpu_info moves): vtlab publishes it when a vCPU is
 * scheduled (the start of each of its slices, after it was descheduled; `publishVcpuTime`), and
 * E1's register_vcpu_info calls `publishVcpuTime(hv, v, true)` for the new location. Each update
 * follows the version protocol: version made odd, the fields written, version made even (Xen's
 * version_update_begin/end). Modelled more simply: Xen's tsc_timestamp/system_time pair comes from
 * the per-CPU calibration stamp (refreshed about once a second); vtlab stamps "now" at each
 * update, so the guest's extrapolation never runs further than one slice.
 *
 * VCPUOP_register_vcpu_time_memory_area (Xen's arch_do_vcpu_op, write_time_guest_area): a second
 * copy of the vCPU's vcpu_time_info at a guest-linear address the guest chose (Linux maps it into
 * its vDSO for VDSO_CLOCKMODE_XEN, and keeps it only while XEN_PVCLOCK_TSC_STABLE_BIT is set).
 * Each publication copies the 32 bytes through the vCPU's own paging after vcpu_info is written;
 * an address that does not translate then is skipped and counted, as Xen's copy_to_guest fails
 * silently. Modelled more simply: the copy is one step no guest instruction can observe midway,
 * so the odd version Xen writes first is never seen; the final bytes are Xen's.
 *
 * The wallclock (shared_info.wc_*) is the wall time at system time 0: a fixed, configurable host
 * boot epoch (`HypervisorOptions.bootEpoch`; no real wall clock enters the simulation). Xen
 * rewrites it only on settime, so the guest's wall time = wc + system_time moves with the
 * simulated clock alone. It is written (version odd, fields, version even) the first time a
 * vCPU of the domain is scheduled after the shared_info frame exists, as Xen writes it when the
 * domain is built.
 */
import { PAGE_SIZE, type SimClock } from "@vtlab/arch";
import { CPU_USE_TSC_OFFSETTING, VmcsField as F } from "@vtlab/cpu-vmx";
import { xenTimeScale } from "@vtlab/xen-platform-pci";
import { XEN_PVCLOCK_TSC_STABLE_BIT, shared_info, vcpu_info, vcpu_time_info } from "@vtlab/xen-public";
import type { Domain, Hypervisor, Vcpu } from "../hypervisor.js";
import { copyToGuest } from "../guest-memory.js";

/** A vCPU's VCPUOP_register_vcpu_time_memory_area: the guest-linear address (undefined: none) and what the copies did. */
export class VcpuTimeArea {
  addr: number | undefined = undefined;
  /** Copies written whole, and copies skipped because the address did not translate. */
  writes = 0;
  faults = 0;
}

const timeAreaBytes = new Uint8Array(vcpu_time_info.SIZEOF);

/** Copy vCPU `v`'s published vcpu_time_info (at machine address `base`) to its registered time area, if any. */
function writeTimeGuestArea(hv: Hypervisor, v: Vcpu, base: number): void {
  const area = v.timeArea;
  if (area.addr === undefined) return;
  hv.memory.readBytes(base, timeAreaBytes);
  const n = copyToGuest({ hv, domain: v.domain, vcpu: v }, area.addr, timeAreaBytes, timeAreaBytes.length);
  if (n === timeAreaBytes.length) area.writes++;
  else area.faults++;
}

/** Xen's struct time_scale as the PV clock publishes it: tsc_to_system_mul (mul_frac) and tsc_shift. */
export interface TimeScale {
  /** A 0.32 fixed-point fraction (u32). */
  readonly mulFrac: number;
  /** A left shift applied to the TSC delta before the multiply (negative: a right shift), int8. */
  readonly shift: number;
}

const NS_PER_SEC = 1_000_000_000;
const TWO_32 = 2 ** 32;

/**
 * tsc_to_system_mul and tsc_shift for a TSC of `tscHz` (Xen's set_time_scale). One function
 * computes them for the PV clock and for CPUID leaf 0x40000003 sub-leaf 1, so the two always
 * agree: @vtlab/xen-platform-pci's `xenTimeScale`, which the CPUID leaves use.
 */
export function pvclockScale(tscHz: number): TimeScale {
  return xenTimeScale(tscHz);
}

/**
 * The guest's side (Linux's pvclock_scale_delta, Xen's scale_delta): nanoseconds for `delta` TSC
 * ticks, ((delta << shift) * mul) >> 32 with the 96-bit product kept exact. `delta` must be a
 * non-negative integer below 2^53 (after the shift).
 */
export function pvclockDeltaNs(delta: number, scale: TimeScale): number {
  let d = delta;
  if (scale.shift < 0) d = Math.floor(d / 2 ** -scale.shift);
  else d = d * 2 ** scale.shift;
  const dh = Math.floor(d / TWO_32);
  const dl = d - dh * TWO_32;
  const mh = Math.floor(scale.mulFrac / 65536);
  const ml = scale.mulFrac - mh * 65536;
  // floor(dl * mul / 2^32) = floor((dl * mh + floor(dl * ml / 2^16)) / 2^16), every product < 2^48.
  const low = Math.floor((dl * mh + Math.floor((dl * ml) / 65536)) / 65536);
  return dh * scale.mulFrac + low;
}

/** The host boot epoch used when `HypervisorOptions.bootEpoch` is not given: 2024-01-01T00:00:00Z. */
export const DEFAULT_BOOT_EPOCH = { sec: 1_704_067_200, nsec: 0 } as const;

/** Wall time at host system time 0 (seconds since the Unix epoch, plus nanoseconds). */
export interface BootEpoch {
  readonly sec: number;
  readonly nsec: number;
}

/** Check a configured epoch: whole seconds in [0, 2^53), nanoseconds in [0, 10^9). */
export function checkBootEpoch(e: BootEpoch): BootEpoch {
  if (!Number.isSafeInteger(e.sec) || e.sec < 0 || !Number.isInteger(e.nsec) || e.nsec < 0 || e.nsec >= NS_PER_SEC) {
    throw new RangeError(`bootEpoch: sec must be an integer >= 0 and nsec an integer in [0, 1e9); got ${e.sec}, ${e.nsec}`);
  }
  return e;
}

/** The system time (ns since host boot, an integer) of the simulated clock. */
export function systemTimeNs(clock: SimClock): number {
  return Math.floor(clock.nanoseconds);
}

/** The TSC value the guest reads now: the host clock's cycles, as an integer. */
export function guestTsc(clock: SimClock): number {
  return Math.floor(clock.cycles);
}

/**
 * Before VM entry: make the guest's RDTSC read the host clock (TSC offsetting, SDM 25.3). The
 * interpreter's RDTSC is its retired count plus its own offset plus the VMCS TSC_OFFSET.
 */
export function syncGuestTsc(hv: Hypervisor, v: Vcpu): void {
  const vmcs = v.vmcs;
  const proc = vmcs.read32(F.CPU_BASED_VM_EXEC_CONTROL);
  if ((proc & CPU_USE_TSC_OFFSETTING) === 0) vmcs.setField(F.CPU_BASED_VM_EXEC_CONTROL, (proc | CPU_USE_TSC_OFFSETTING) >>> 0);
  vmcs.setNatural(F.TSC_OFFSET, guestTsc(hv.clock) - v.cpu.retired - v.cpu.tscOffset);
}

/** Per-domain time state: which shared_info frame got the wallclock, and the epoch. */
export class DomainTime {
  /** The shared_info MFN the wallclock was last written to (undefined: not yet). */
  wallclockMfn: number | undefined = undefined;
  /** PV clock updates published (each one a version odd/even pair), for statistics and tests. */
  updates = 0;
}

/** The shared_info frame of the domain, if it has one (E1's shared_info). */
function sharedInfoMfn(d: Domain): number | undefined {
  return d.xen.sharedInfo.mfn;
}

/**
 * Write the wallclock into the domain's shared_info (Xen's update_domain_wallclock_time):
 * wc_version made odd, wc_sec / wc_nsec / wc_sec_hi written, wc_version made even. Does nothing
 * without a shared_info frame. `force`: write even if this frame already has it.
 */
export function publishWallclock(hv: Hypervisor, d: Domain, force = false): void {
  const mfn = sharedInfoMfn(d);
  if (mfn === undefined) return;
  if (!force && d.xenTime.wallclockMfn === mfn) return;
  const base = mfn * PAGE_SIZE;
  const mem = hv.memory;
  const epoch = hv.bootEpoch;
  const ver = mem.read32(base + shared_info.wc_version);
  const begin = versionUpdateBegin(typeof ver === "number" ? ver : 0);
  mem.write32(base + shared_info.wc_version, begin);
  mem.write32(base + shared_info.wc_sec, epoch.sec >>> 0);
  mem.write32(base + shared_info.wc_nsec, epoch.nsec);
  mem.write32(base + shared_info.wc_sec_hi, Math.floor(epoch.sec / TWO_32) >>> 0);
  mem.write32(base + shared_info.wc_version, versionUpdateEnd(begin));
  d.xenTime.wallclockMfn = mfn;
}

/** Xen's version_update_begin: (v + 1) | 1 (odd: an update is in progress). */
function versionUpdateBegin(v: number): number {
  return ((v + 1) | 1) >>> 0;
}
/** Xen's version_update_end: v + 1 (even again). */
function versionUpdateEnd(v: number): number {
  return (v + 1) >>> 0;
}

/**
 * Publish the PV clock in vCPU `v`'s vcpu_info (Xen's __update_vcpu_system_time): version odd,
 * tsc_timestamp = the TSC now, system_time = ns now, tsc_to_system_mul / tsc_shift of the host
 * TSC, flags = XEN_PVCLOCK_TSC_STABLE_BIT (one host clock, the same on every vCPU), version even.
 * Without a vcpu_info (no shared_info yet) nothing is written. As in Xen, an update identical to
 * what is there is skipped unless `force`. Also writes the wallclock the first time the domain's
 * shared_info frame is seen.
 */
export function publishVcpuTime(hv: Hypervisor, v: Vcpu, force = false): void {
  const d = v.domain;
  const hpa = d.xen.sharedInfo.vcpuInfoHpa(v.id);
  if (hpa === undefined) return;
  publishWallclock(hv, d);
  const base = hpa + vcpu_info.time;
  const mem = hv.memory;
  const tsc = guestTsc(hv.clock);
  const ns = systemTimeNs(hv.clock);
  const scale = hv.tscScale;
  const tsLo = tsc >>> 0;
  const tsHi = Math.floor(tsc / TWO_32) >>> 0;
  const nsLo = ns >>> 0;
  const nsHi = Math.floor(ns / TWO_32) >>> 0;
  const shift = scale.shift & 0xff;
  const flags = XEN_PVCLOCK_TSC_STABLE_BIT;
  const r32 = (off: number) => {
    const x = mem.read32(base + off);
    return typeof x === "number" ? x >>> 0 : -1;
  };
  const r8 = (off: number) => {
    const x = mem.read8(base + off);
    return typeof x === "number" ? x : -1;
  };
  if (
    !force &&
    r32(vcpu_time_info.tsc_timestamp) === tsLo &&
    r32(vcpu_time_info.tsc_timestamp + 4) === tsHi &&
    r32(vcpu_time_info.system_time) === nsLo &&
    r32(vcpu_time_info.system_time + 4) === nsHi &&
    r32(vcpu_time_info.tsc_to_system_mul) === scale.mulFrac >>> 0 &&
    r8(vcpu_time_info.tsc_shift) === shift &&
    r8(vcpu_time_info.flags) === flags
  ) {
    return; // the time area already holds the same copy
  }
  const ver = r32(vcpu_time_info.version);
  const begin = versionUpdateBegin(ver < 0 ? 0 : ver);
  mem.write32(base + vcpu_time_info.version, begin);
  mem.write32(base + vcpu_time_info.tsc_timestamp, tsLo);
  mem.write32(base + vcpu_time_info.tsc_timestamp + 4, tsHi);
  mem.write32(base + vcpu_time_info.system_time, nsLo);
  mem.write32(base + vcpu_time_info.system_time + 4, nsHi);
  mem.write32(base + vcpu_time_info.tsc_to_system_mul, scale.mulFrac >>> 0);
  mem.write8(base + vcpu_time_info.tsc_shift, shift);
  mem.write8(base + vcpu_time_info.flags, flags);
  mem.write32(base + vcpu_time_info.version, versionUpdateEnd(begin));
  d.xenTime.updates++;
  writeTimeGuestArea(hv, v, base);
}
