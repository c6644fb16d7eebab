/**
 * Xen's guest MSR policy for the model-specific MSRs an HVM/PVH guest reads while booting
 * (xen/arch/x86/msr.c, guest_rdmsr / guest_wrmsr), for the MSRs the CPU model itself does not
 * hold. Each answer is Xen's, against a modelled host value (this model has no real host MSRs).
 */

/** MSR_IA32_MISC_ENABLE (SDM Vol. 4, Table 2-2; Xen's msr-index.h). */
export const MSR_IA32_MISC_ENABLE = 0x1a0;
/** Bit 0: fast-strings enable (REP MOVS/STOS fast strings). */
export const MSR_IA32_MISC_ENABLE_FAST_STRING = 1 << 0;
/** Bit 7: performance monitoring available. */
export const MSR_IA32_MISC_ENABLE_PERF_AVAIL = 1 << 7;
/** Bit 11: branch trace storage unavailable. */
export const MSR_IA32_MISC_ENABLE_BTS_UNAVAIL = 1 << 11;
/** Bit 12: processor event-based sampling unavailable. */
export const MSR_IA32_MISC_ENABLE_PEBS_UNAVAIL = 1 << 12;
/** Bit 18: MONITOR/MWAIT enable. */
export const MSR_IA32_MISC_ENABLE_MONITOR_ENABLE = 1 << 18;
/** Bit 23: xTPR message disable. */
export const MSR_IA32_MISC_ENABLE_XTPR_DISABLE = 1 << 23;
/** Bit 34 (bit 2 of the high half): XD bit disable (execute-disable hidden from CPUID when set). */
export const MSR_IA32_MISC_ENABLE_XD_DISABLE_HI = 1 << 2;

/** MSR_IA32_UCODE_REV (IA32_BIOS_SIGN_ID, SDM Vol. 4 Table 2-2): the microcode revision in bits 63:32. */
export const MSR_IA32_UCODE_REV = 0x8b;

/**
 * The host's microcode revision as this model assumes it (modelled: no host is read): 0xf0, a
 * released revision for the CPUID signature the vCPU reports (family 6, model 0x5e, stepping 3).
 */
export const HOST_UCODE_REVISION = 0xf0;

/**
 * The host's IA32_MISC_ENABLE as this model assumes it (modelled more simply: no host MSR is
 * read): fast strings on, performance monitoring available, XD not disabled.
 */
const HOST_MISC_ENABLE_LO = MSR_IA32_MISC_ENABLE_FAST_STRING | MSR_IA32_MISC_ENABLE_PERF_AVAIL;
const HOST_MISC_ENABLE_HI = 0;

/**
 * Xen's guest_misc_enable(): the host value without PERF_AVAIL and MONITOR_ENABLE (no PMU, no
 * MWAIT for guests), with BTS_UNAVAIL, PEBS_UNAVAIL and XTPR_DISABLE set.
 */
export const GUEST_MISC_ENABLE_LO =
  ((HOST_MISC_ENABLE_LO & ~(MSR_IA32_MISC_ENABLE_PERF_AVAIL | MSR_IA32_MISC_ENABLE_MONITOR_ENABLE)) |
    MSR_IA32_MISC_ENABLE_BTS_UNAVAIL |
    MSR_IA32_MISC_ENABLE_PEBS_UNAVAIL |
    MSR_IA32_MISC_ENABLE_XTPR_DISABLE) >>>
  0;
export const GUEST_MISC_ENABLE_HI = HOST_MISC_ENABLE_HI;

/** True for an MSR this policy answers (the vendor is Intel: CPUID says GenuineIntel). */
export function isPolicyMsr(msr: number): boolean {
  const m = msr >>> 0;
  return m === MSR_IA32_MISC_ENABLE || m === MSR_IA32_UCODE_REV;
}

/** RDMSR under Xen's policy: [lo, hi], or undefined for #GP. */
export function rdmsrPolicy(msr: number): readonly [number, number] | undefined {
  const m = msr >>> 0;
  if (m === MSR_IA32_MISC_ENABLE) return [GUEST_MISC_ENABLE_LO, GUEST_MISC_ENABLE_HI];
  // guest_rdmsr: the host CPU's microcode revision, in the high half (no "write 0, CPUID 1"
  // sequence is needed to read it).
  if (m === MSR_IA32_UCODE_REV) return [0, HOST_UCODE_REVISION];
  return undefined;
}

/**
 * WRMSR under Xen's policy: true if accepted. IA32_MISC_ENABLE is model specific; Xen accepts a
 * write only when it leaves the value as the guest reads it (guest_wrmsr: "ignore writes which
 * don't change the value"), and anything else is #GP.
 */
export function wrmsrPolicy(msr: number, lo: number, hi: number): boolean {
  const m = msr >>> 0;
  if (m === MSR_IA32_MISC_ENABLE) return lo >>> 0 === GUEST_MISC_ENABLE_LO && hi >>> 0 === GUEST_MISC_ENABLE_HI;
  // guest_wrmsr: read-only, except that Intel documents writing 0 before CPUID 1 and the read;
  // Xen accepts exactly that write (and does nothing), and any other value is #GP.
  if (m === MSR_IA32_UCODE_REV) return lo === 0 && hi === 0;
  return false;
}
