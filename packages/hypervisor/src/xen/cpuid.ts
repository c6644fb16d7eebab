/**
 * The Xen CPUID leaves of an HVM domain (Xen's cpuid_hypervisor_leaves, via guest_cpuid's
 * 0x40000000-0x400001ff range): @vtlab/xen-platform-pci's `xenCpuidLeaf`, given what this vCPU
 * and domain are. Leaves 0x40000200-0x4FFFFFFF (the rest of the range Intel reserves for
 * hypervisors) read all zeros, as Xen's guest_cpuid answers any leaf outside its policy.
 *
 * What vtlab advertises in the HVM leaf (0x40000004), only what it implements:
 * XEN_HVM_CPUID_VCPU_ID_PRESENT (EBX = vCPU id), XEN_HVM_CPUID_DOMID_PRESENT (ECX = domid) and
 * XEN_HVM_CPUID_UPCALL_VECTOR (HVMOP_set_evtchn_upcall_vector: per-vCPU upcall vectors). Not
 * XEN_HVM_CPUID_APIC_ACCESS_VIRT or XEN_HVM_CPUID_X2APIC_VIRT (every APIC access exits here: no
 * APIC virtualization), nor XEN_HVM_CPUID_IOMMU_MAPPINGS (grant maps get no IOMMU entries), nor
 * XEN_HVM_CPUID_EXT_DEST_ID (the IO-APIC takes 8-bit destinations only).
 *
 * The TSC leaf (0x40000003): the guest TSC is the host clock (xen/time.ts makes RDTSC read
 * `hv.clock.cycles`), so its frequency is `hv.clock.frequencyHz`, not emulated (RDTSC does not
 * exit), host TSC reliable (the simulated clock is invariant), offset 0, tsc_mode default, and the
 * same tsc_to_system_mul / tsc_shift as the PV clock publishes (one function, `xenTimeScale`).
 * RDTSCP is reported available when the vCPU's "enable RDTSCP" control is on.
 */
import { SECONDARY_ENABLE_RDTSCP, VmcsField as F } from "@vtlab/cpu-vmx";
import { TscMode, xenCpuidLeaf, type XenCpuidInfo } from "@vtlab/xen-platform-pci";
import { XEN_HVM_CPUID_UPCALL_VECTOR } from "@vtlab/xen-public";
import type { ExitContext } from "../exits.js";

/** The first leaf of Intel's hypervisor range and the last (CPUID leaves 0x40000000-0x4FFFFFFF). */
const HYPERVISOR_LEAVES_FIRST = 0x4000_0000;
const HYPERVISOR_LEAVES_LAST = 0x4fff_ffff;

/** The XEN_HVM_CPUID_* features vtlab implements (besides the vCPU id and domid, always present). */
export const VTLAB_HVM_CPUID_FEATURES = XEN_HVM_CPUID_UPCALL_VECTOR;

/** Whether `leaf` is in the hypervisor range that `xenCpuid` answers. */
export function isHypervisorLeaf(leaf: number): boolean {
  const l = leaf >>> 0;
  return l >= HYPERVISOR_LEAVES_FIRST && l <= HYPERVISOR_LEAVES_LAST;
}

/** What the Xen leaves say about this vCPU and domain. */
export function xenCpuidInfo(ctx: ExitContext): XenCpuidInfo {
  const { hv, domain: d, vcpu: v } = ctx;
  return {
    vcpuId: v.id,
    domid: d.id,
    tscHz: hv.clock.frequencyHz,
    hvmFeatures: VTLAB_HVM_CPUID_FEATURES,
    emulatedTsc: false,
    hostTscReliable: true,
    rdtscp: (v.vmcs.read32(F.SECONDARY_VM_EXEC_CONTROL) & SECONDARY_ENABLE_RDTSCP) !== 0,
    tscMode: TscMode.Default,
    tscOffset: 0,
    incarnation: 0,
  };
}

/**
 * Fill `out` (EAX, EBX, ECX, EDX) for a CPUID of `leaf`/`subleaf` in the hypervisor range
 * (`isHypervisorLeaf`): Xen's leaves, zero elsewhere in the range. Returns false for a leaf
 * outside the range (`out` untouched).
 */
export function xenCpuid(ctx: ExitContext, leaf: number, subleaf: number, out: Int32Array): boolean {
  if (!isHypervisorLeaf(leaf)) return false;
  if (!xenCpuidLeaf(leaf, subleaf, xenCpuidInfo(ctx), out)) out.fill(0);
  return true;
}
