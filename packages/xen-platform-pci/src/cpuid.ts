/**
 * The Xen CPUID leaves (xen/include/public/arch-x86/cpuid.h) as Xen 4.17 fills them for an HVM
 * guest without Viridian (xen/arch/x86/traps.c, cpuid_hypervisor_leaves): base 0x40000000.
 *
 * - 0x40000000: EAX the largest Xen leaf (base + XEN_CPUID_MAX_NUM_LEAVES, the default limit);
 *   EBX:ECX:EDX "XenVMMXenVMM".
 * - 0x40000001: EAX major << 16 | minor (4.17).
 * - 0x40000002: EAX 1 hypercall page; EBX the hypercall-page MSR 0x40000000; ECX, EDX no
 *   features (XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD is for PV guests only).
 * - 0x40000003, the TSC leaf: sub-leaf 0 EAX bit 0 emulated TSC, bit 1 host TSC reliable, bit 2
 *   RDTSCP available; EBX the tsc_mode; ECX the guest TSC kHz; EDX the incarnation. Sub-leaf 1:
 *   EAX:EBX the TSC offset (0 when the TSC is emulated), ECX tsc_to_system_mul, EDX
 *   tsc_shift (a signed byte, sign-extended). Sub-leaf 2: EAX the host TSC kHz.
 * - 0x40000004, the HVM leaf (sub-leaf 0 only): EAX the XEN_HVM_CPUID_* features, EBX the vCPU
 *   id, ECX the domid.
 * - 0x40000005, the PV leaf: zero for HVM guests.
 * Every other leaf from 0x40000000 to 0x400001ff is zero (Xen answers that range here).
 */
import {
  XEN_CPUID_FIRST_LEAF,
  XEN_CPUID_MAX_NUM_LEAVES,
  XEN_CPUID_SIGNATURE_EBX,
  XEN_CPUID_SIGNATURE_ECX,
  XEN_CPUID_SIGNATURE_EDX,
  XEN_HVM_CPUID_DOMID_PRESENT,
  XEN_HVM_CPUID_VCPU_ID_PRESENT,
} from "@vtlab/xen-public";

/** The last leaf of the range Xen's cpuid_hypervisor_leaves answers (0x40000000-0x400001ff). */
export const XEN_CPUID_LAST_HYPERVISOR_LEAF = 0x4000_01ff;
/** The hypercall-page MSR (leaf 0x40000002 EBX): Xen's MSR base without Viridian. */
export const XEN_HYPERCALL_PAGE_MSR = 0x4000_0000;
/** TSC_MODE_DEFAULT, TSC_MODE_ALWAYS_EMULATE, TSC_MODE_NEVER_EMULATE (xen/include/asm-x86/time.h, xl.cfg tsc_mode). */
export const TscMode = { Default: 0, AlwaysEmulate: 1, NeverEmulate: 2 } as const;
export type TscMode = (typeof TscMode)[keyof typeof TscMode];

/** What a guest's Xen CPUID leaves report about it. */
export interface XenCpuidInfo {
  /** The vCPU executing CPUID (leaf 4 EBX). */
  readonly vcpuId: number;
  /** The domain's id (leaf 4 ECX). */
  readonly domid: number;
  /** The guest TSC frequency in Hz (leaf 3: kHz, and the scale). */
  readonly tscHz: number;
  /** The host TSC frequency in Hz (leaf 3 sub-leaf 2; default tscHz). */
  readonly hostTscHz?: number;
  /** Xen version (default 4.17). */
  readonly major?: number;
  readonly minor?: number;
  /** XEN_HVM_CPUID_* bits to advertise besides VCPU_ID_PRESENT and DOMID_PRESENT (default none). */
  readonly hvmFeatures?: number;
  /** d->arch.vtsc: RDTSC is emulated by the hypervisor (default false). */
  readonly emulatedTsc?: boolean;
  /** The host TSC is invariant and synchronised (default true). */
  readonly hostTscReliable?: boolean;
  /** RDTSCP is available to the guest (default false). */
  readonly rdtscp?: boolean;
  /** tsc_mode (default TscMode.Default). */
  readonly tscMode?: TscMode;
  /** The guest TSC offset from the host TSC (default 0; reported as 0 when the TSC is emulated). */
  readonly tscOffset?: number;
  /** The migration count (default 0). */
  readonly incarnation?: number;
}

/**
 * Xen's time scale for a clock of `hz` ticks per second (xen/arch/x86/time.c, set_time_scale):
 * ns = ((ticks << shift) * mul_frac) >> 32, shifting right for a negative shift. The PV clock's
 * vcpu_time_info.tsc_to_system_mul and tsc_shift are these for the guest TSC.
 */
export function xenTimeScale(hz: number): { readonly mulFrac: number; readonly shift: number } {
  if (!(hz >= 1) || !Number.isFinite(hz)) throw new RangeError(`xenTimeScale: a clock of ${hz} Hz`);
  let tps = Math.floor(hz);
  let shift = 0;
  while (tps > 2_000_000_000) {
    tps = Math.floor(tps / 2);
    shift--;
  }
  while (tps <= 1_000_000_000) {
    tps *= 2;
    shift++;
  }
  // div_frac(1e9, tps) = floor(1e9 * 2^32 / tps), exactly: 1e9 * 2^32 does not fit a double's
  // 53 bits, so divide in two 16-bit steps (every intermediate stays below 2^53).
  const high = 1_000_000_000 * 65536;
  const q1 = Math.floor(high / tps);
  const r1 = high - q1 * tps;
  const mulFrac = q1 * 65536 + Math.floor((r1 * 65536) / tps);
  return { mulFrac: mulFrac >>> 0, shift };
}

/**
 * Fill `out` (EAX, EBX, ECX, EDX as int32) with Xen leaf `leaf`, sub-leaf `subleaf`. Returns true
 * when `leaf` is in the range Xen answers (0x40000000-0x400001ff), false (and `out` untouched)
 * otherwise. Allocates nothing but the time scale of leaf 3 sub-leaf 1.
 */
export function xenCpuidLeaf(leaf: number, subleaf: number, info: XenCpuidInfo, out: Int32Array): boolean {
  leaf >>>= 0;
  subleaf >>>= 0;
  if (leaf < XEN_CPUID_FIRST_LEAF || leaf > XEN_CPUID_LAST_HYPERVISOR_LEAF) return false;
  out[0] = 0;
  out[1] = 0;
  out[2] = 0;
  out[3] = 0;
  const idx = leaf - XEN_CPUID_FIRST_LEAF;
  switch (idx) {
    case 0:
      out[0] = XEN_CPUID_FIRST_LEAF + XEN_CPUID_MAX_NUM_LEAVES;
      out[1] = XEN_CPUID_SIGNATURE_EBX;
      out[2] = XEN_CPUID_SIGNATURE_ECX;
      out[3] = XEN_CPUID_SIGNATURE_EDX;
      break;
    case 1:
      out[0] = (((info.major ?? 4) & 0xffff) << 16) | ((info.minor ?? 17) & 0xffff);
      break;
    case 2:
      out[0] = 1;
      out[1] = XEN_HYPERCALL_PAGE_MSR;
      break;
    case 3: {
      const vtsc = info.emulatedTsc === true;
      if (subleaf === 0) {
        out[0] = (vtsc ? 1 : 0) | (info.hostTscReliable !== false ? 2 : 0) | (info.rdtscp === true ? 4 : 0);
        out[1] = info.tscMode ?? TscMode.Default;
        out[2] = Math.floor(info.tscHz / 1000);
        out[3] = info.incarnation ?? 0;
      } else if (subleaf === 1) {
        const offset = vtsc ? 0 : (info.tscOffset ?? 0);
        const lo = offset >>> 0;
        out[0] = lo;
        out[1] = Math.floor((offset - lo) / 2 ** 32);
        const scale = xenTimeScale(info.tscHz);
        out[2] = scale.mulFrac;
        out[3] = (scale.shift << 24) >> 24; // (s8) shift, sign-extended into EDX
      } else if (subleaf === 2) {
        out[0] = Math.floor((info.hostTscHz ?? info.tscHz) / 1000);
      }
      break;
    }
    case 4:
      if (subleaf !== 0) break;
      out[0] = (info.hvmFeatures ?? 0) | XEN_HVM_CPUID_VCPU_ID_PRESENT | XEN_HVM_CPUID_DOMID_PRESENT;
      out[1] = info.vcpuId;
      out[2] = info.domid;
      break;
    default:
      break; // 5 (PV parameters): zero for HVM; beyond the limit: zero
  }
  return true;
}
