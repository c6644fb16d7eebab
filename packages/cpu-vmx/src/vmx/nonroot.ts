/**
 * VMX non-root operation: VM entry (SDM Vol. 3C ch. 27: checks on controls, host state and guest
 * state, then loading guest state and injecting an event), the exit decisions the instruction
 * handlers consult (ch. 26), and saving guest state and exit information on a VM exit (ch. 28).
 *
 * The hypervisor is TypeScript, so "host state" is never loaded into a processor: it is checked
 * at entry as the SDM requires and kept in the VMCS. The `Cpu` object is the guest's vCPU while
 * it runs; general-purpose registers stay in it across exits, as on hardware.
 *
 * Unrestricted guest covers 32-bit protected mode with paging off (CR0.PE = 1, PG = 0: the PVH
 * and Multiboot entry state) and real-address mode (PE = 0, PG = 0: an AP after INIT-SIPI-SIPI),
 * with the real-mode segment checks of SDM 27.3.1.2 (SS.DPL = 0; CS may be a read/write accessed
 * data segment, type 3, with DPL 0). Without the control PE = 0 or PG = 0 fails the CR0 check of
 * 27.3.1.1 (IA32_VMX_CR0_FIXED0) with reason 33. The wait-for-SIPI activity state is not
 * modelled (the hypervisor keeps an AP that waits for a SIPI out of VM entry, as Xen keeps a
 * reset vCPU down): entry refuses it. Guests in 32-bit or PAE paging enter
 * as on hardware: with PAE paging the PDPTEs come from GUEST_PDPTE0-3 under EPT (checked, SDM
 * 27.3.1.6) and from the table at GUEST_CR3 without it (27.3.2.4), and an exit saves them under
 * EPT (28.3.4).
 * No VM-exit MSR-store/load areas (their counts must be 0), no SMM or dual-monitor treatment, no
 * APIC virtualization. Everything left out is refused at entry with the SDM's failure, not ignored.
 */
import { PAE_PDPTE_RSVD_LO, PdpteLoadStatus, Vector, loadPaePdptes, reservedHighMask, reservedLowAddressMask } from "@vtlab/arch";
import type { Cpu, SegmentCache } from "../cpu.js";
import {
  CR0_NE,
  CR0_PE,
  CR0_PG,
  CR4_PAE,
  CR4_VMXE,
  EFER_LMA,
  EFER_LME,
  RFLAGS_FIXED,
  RFLAGS_IF,
  DEBUGCTL_WRITABLE,
  MSR,
  RFLAGS_RESERVED_ZERO,
  Seg,
  patValid,
  PAT_POWER_UP,
} from "../regs.js";
import {
  CPU_ACTIVATE_SECONDARY,
  CPU_USE_IO_BITMAPS,
  CPU_USE_MSR_BITMAPS,
  ENTRY_CAPS,
  ENTRY_IA32E_MODE,
  ENTRY_LOAD_DEBUG_CONTROLS,
  ENTRY_LOAD_IA32_EFER,
  ENTRY_LOAD_IA32_PAT,
  EXIT_CAPS,
  EXIT_LOAD_IA32_PAT,
  EXIT_SAVE_DEBUG_CONTROLS,
  EXIT_SAVE_IA32_PAT,
  EXIT_HOST_ADDR_SPACE_SIZE,
  PIN_CAPS,
  PROC2_CAPS,
  PROC_CAPS,
  SECONDARY_ENABLE_EPT,
  SECONDARY_ENABLE_VPID,
  SECONDARY_UNRESTRICTED_GUEST,
  controlViolations,
  type ControlCapability,
} from "./controls.js";
import { EXIT_REASON_FAILED_VMENTRY, ExitReason } from "./exit-reasons.js";
import type { VmExit } from "./interfaces.js";
import type { Vmcs } from "./vmcs.js";
import { vmcsEagerSlot, vmcsSlot, VMCS_GROUPS_ALL, VMCS_GROUP_CONTROL, VMCS_GROUP_GUEST, VMCS_GROUP_HOST, VmInstructionError, type VmFailValid } from "./vmcs.js";
import { VmcsField as F } from "./vmcs-fields.js";
import { writeMsr } from "../exec/system.js";

/** IA32_VMX_CR0_FIXED0: CR0 bits that must be 1 in VMX operation (PE, NE, PG; with unrestricted guest, PE and PG are exempt for the guest, SDM 27.3.1.1). */
export const VMX_CR0_FIXED0 = CR0_PE | CR0_NE | CR0_PG;
/** IA32_VMX_CR4_FIXED0: CR4 bits that must be 1 in VMX operation (VMXE). */
export const VMX_CR4_FIXED0 = CR4_VMXE;

/** Guest activity states (SDM 25.4.2). */
export const ActivityState = { Active: 0, Hlt: 1, Shutdown: 2, WaitForSipi: 3 } as const;

/** Interruption-information field (SDM Table 25-17): vector 7:0, type 10:8, error code valid 11, valid 31. */
export const INTR_INFO_VALID = 0x8000_0000;
export const INTR_INFO_ERROR_CODE_VALID = 1 << 11;
export const IntrType = { External: 0, Nmi: 2, HardwareException: 3, SoftwareInterrupt: 4, PrivilegedSoftwareException: 5, SoftwareException: 6, Other: 7 } as const;

/** A VM-entry failure that is an exit with bit 31 set (invalid guest state, MSR loading). */
export interface EntryFailureExit {
  readonly kind: "entry-failure";
  readonly exit: VmExit;
  readonly message: string;
}

const TWO_47 = 2 ** 47;
const canonical = (v: number) => v >= -TWO_47 && v < TWO_47;

function fail(error: VmInstructionError, message: string): VmFailValid {
  return { kind: "vmfail-valid", error, message };
}

function invalid(m: string): VmFailValid {
  return fail(VmInstructionError.EntryInvalidControls, `VM entry with invalid control field(s): ${m}`);
}

function host(m: string): VmFailValid {
  return fail(VmInstructionError.EntryInvalidHostState, `VM entry with invalid host-state field(s): ${m}`);
}

/** A bitmap address that is not 4-KiB aligned or lies beyond the physical-address width. */
function badAddress(vmcs: Vmcs, field: F, maxPhys: number): boolean {
  const a = vmcs.readNatural(field);
  return a % 4096 !== 0 || a < 0 || a >= 2 ** maxPhys;
}

/** The host-state address fields that must be canonical (SDM 27.2.3). */
const HOST_CANONICAL = [F.HOST_RIP, F.HOST_FS_BASE, F.HOST_GS_BASE, F.HOST_TR_BASE, F.HOST_GDTR_BASE, F.HOST_IDTR_BASE] as const;

/** Scratch for the PDPTEs a VM entry checks before loading them (copied into cpu.pdpte). */
const ENTRY_PDPTES = new Uint32Array(8);

function guestStateFailure(message: string): EntryFailureExit {
  return {
    kind: "entry-failure",
    exit: { reason: (ExitReason.InvalidGuestState | EXIT_REASON_FAILED_VMENTRY) >>> 0, qualification: 0, instructionLength: 0 },
    message: `VM entry failed: invalid guest state: ${message}`,
  };
}

function checkCaps(caps: ControlCapability, value: number): string | undefined {
  const v = controlViolations(caps, value);
  if (v.missing !== 0) return `${caps.name}: required bits ${bitList(v.missing)} are clear`;
  if (v.reserved !== 0) return `${caps.name}: bits ${bitList(v.reserved)} are not supported`;
  return undefined;
}

function bitList(mask: number): string {
  const bits: number[] = [];
  for (let b = 0; b < 32; b++) if ((mask >>> b) & 1) bits.push(b);
  return bits.join(", ");
}

/** The guest segment registers and their VMCS fields (SDM 25.4.1), for loading on entry and saving on exit. */
const GUEST_SEGMENTS = [
  [Seg.ES, F.GUEST_ES_SELECTOR, F.GUEST_ES_BASE, F.GUEST_ES_LIMIT, F.GUEST_ES_AR_BYTES],
  [Seg.CS, F.GUEST_CS_SELECTOR, F.GUEST_CS_BASE, F.GUEST_CS_LIMIT, F.GUEST_CS_AR_BYTES],
  [Seg.SS, F.GUEST_SS_SELECTOR, F.GUEST_SS_BASE, F.GUEST_SS_LIMIT, F.GUEST_SS_AR_BYTES],
  [Seg.DS, F.GUEST_DS_SELECTOR, F.GUEST_DS_BASE, F.GUEST_DS_LIMIT, F.GUEST_DS_AR_BYTES],
  [Seg.FS, F.GUEST_FS_SELECTOR, F.GUEST_FS_BASE, F.GUEST_FS_LIMIT, F.GUEST_FS_AR_BYTES],
  [Seg.GS, F.GUEST_GS_SELECTOR, F.GUEST_GS_BASE, F.GUEST_GS_LIMIT, F.GUEST_GS_AR_BYTES],
] as const;

/** The VMCS slots (vmcsSlot) of GUEST_SEGMENTS' fields, then TR's and LDTR's: selector, base, limit, access rights. */
const SEGMENT_SLOTS = Int16Array.from(
  [
    ...GUEST_SEGMENTS.map((g) => [g[1], g[2], g[3], g[4]]),
    [F.GUEST_TR_SELECTOR, F.GUEST_TR_BASE, F.GUEST_TR_LIMIT, F.GUEST_TR_AR_BYTES],
    [F.GUEST_LDTR_SELECTOR, F.GUEST_LDTR_BASE, F.GUEST_LDTR_LIMIT, F.GUEST_LDTR_AR_BYTES],
  ]
    .flat()
    .map((f) => vmcsSlot(f)),
);
const TR_SLOTS = GUEST_SEGMENTS.length * 4;
const LDTR_SLOTS = TR_SLOTS + 4;

// The slots (vmcsSlot) of the fields VM entry reads, looked up once.
const S_CPU_BASED_VM_EXEC_CONTROL = vmcsEagerSlot(F.CPU_BASED_VM_EXEC_CONTROL);
const S_CR3_TARGET_COUNT = vmcsEagerSlot(F.CR3_TARGET_COUNT);
const S_GUEST_CS_AR_BYTES = vmcsSlot(F.GUEST_CS_AR_BYTES);
const S_GUEST_DR7 = vmcsEagerSlot(F.GUEST_DR7);
const S_GUEST_SS_AR_BYTES = vmcsSlot(F.GUEST_SS_AR_BYTES);
const S_GUEST_TR_AR_BYTES = vmcsSlot(F.GUEST_TR_AR_BYTES);
const S_HOST_CR0 = vmcsEagerSlot(F.HOST_CR0);
const S_HOST_CR4 = vmcsEagerSlot(F.HOST_CR4);
const S_HOST_CS_SELECTOR = vmcsEagerSlot(F.HOST_CS_SELECTOR);
const S_HOST_TR_SELECTOR = vmcsEagerSlot(F.HOST_TR_SELECTOR);
const S_PIN_BASED_VM_EXEC_CONTROL = vmcsEagerSlot(F.PIN_BASED_VM_EXEC_CONTROL);
const S_SECONDARY_VM_EXEC_CONTROL = vmcsEagerSlot(F.SECONDARY_VM_EXEC_CONTROL);
const S_VIRTUAL_PROCESSOR_ID = vmcsEagerSlot(F.VIRTUAL_PROCESSOR_ID);
const S_VM_ENTRY_CONTROLS = vmcsEagerSlot(F.VM_ENTRY_CONTROLS);
const S_VM_ENTRY_EXCEPTION_ERROR_CODE = vmcsEagerSlot(F.VM_ENTRY_EXCEPTION_ERROR_CODE);
const S_VM_ENTRY_INSTRUCTION_LEN = vmcsEagerSlot(F.VM_ENTRY_INSTRUCTION_LEN);
const S_VM_ENTRY_INTR_INFO_FIELD = vmcsEagerSlot(F.VM_ENTRY_INTR_INFO_FIELD);
const S_VM_ENTRY_MSR_LOAD_ADDR = vmcsEagerSlot(F.VM_ENTRY_MSR_LOAD_ADDR);
const S_VM_ENTRY_MSR_LOAD_COUNT = vmcsEagerSlot(F.VM_ENTRY_MSR_LOAD_COUNT);
const S_VM_EXIT_CONTROLS = vmcsEagerSlot(F.VM_EXIT_CONTROLS);
const S_VM_EXIT_MSR_LOAD_COUNT = vmcsEagerSlot(F.VM_EXIT_MSR_LOAD_COUNT);
const S_VM_EXIT_MSR_STORE_COUNT = vmcsEagerSlot(F.VM_EXIT_MSR_STORE_COUNT);
const S_GUEST_IA32_DEBUGCTL = vmcsEagerSlot(F.GUEST_IA32_DEBUGCTL);
const S_GUEST_IA32_PAT = vmcsEagerSlot(F.GUEST_IA32_PAT);

/**
 * VMLAUNCH / VMRESUME: the checks of SDM 27.1-27.3 in order (VMfailValid for the launch state,
 * controls and host state; an exit with reason 33 for guest state), then load the guest state
 * (27.3.2) and inject the event in VM_ENTRY_INTR_INFO_FIELD (27.6). On success the CPU is in VMX
 * non-root operation with `vmcs` current.
 */
export function vmEntry(cpu: Cpu, vmcs: Vmcs, launch: boolean): VmFailValid | EntryFailureExit | undefined {
  if (launch && vmcs.launchState !== "clear") return fail(VmInstructionError.VmlaunchNonClear, "VMLAUNCH with non-clear VMCS");
  if (!launch && vmcs.launchState !== "launched") return fail(VmInstructionError.VmresumeNonLaunched, "VMRESUME with non-launched VMCS");

  // ---- 27.2.1 VM-execution, exit and entry control fields ----
  const pin = vmcs.eagerLow(S_PIN_BASED_VM_EXEC_CONTROL);
  const proc = vmcs.eagerLow(S_CPU_BASED_VM_EXEC_CONTROL);
  const proc2 = (proc & CPU_ACTIVATE_SECONDARY) !== 0 ? vmcs.eagerLow(S_SECONDARY_VM_EXEC_CONTROL) : 0;
  const exitCtl = vmcs.eagerLow(S_VM_EXIT_CONTROLS);
  const entryCtl = vmcs.eagerLow(S_VM_ENTRY_CONTROLS);
  // (No closures or arrays here: VM entry runs once per exit, and allocates nothing when it succeeds.)
  // The checks of a group whose fields kept their values since the last entry that passed them
  // on this vCPU are not made again: they would pass again (Vmcs.changed). The guest-state
  // checks read control fields too, so a changed control makes them again.
  const changed = vmcs.checkedBy === cpu ? vmcs.changed : VMCS_GROUPS_ALL;
  const checkControls = (changed & VMCS_GROUP_CONTROL) !== 0;
  const checkGuest = (changed & (VMCS_GROUP_GUEST | VMCS_GROUP_CONTROL)) !== 0;
  const unrestricted = (proc2 & SECONDARY_UNRESTRICTED_GUEST) !== 0;
  const msrLoadCount = vmcs.eagerLow(S_VM_ENTRY_MSR_LOAD_COUNT);
  const intr = vmcs.eagerLow(S_VM_ENTRY_INTR_INFO_FIELD);
  if (checkControls) {
    const caps = checkCaps(PIN_CAPS, pin) ?? checkCaps(PROC_CAPS, proc) ?? checkCaps(PROC2_CAPS, proc2) ?? checkCaps(EXIT_CAPS, exitCtl) ?? checkCaps(ENTRY_CAPS, entryCtl);
    if (caps !== undefined) return invalid(caps);
    if (vmcs.eagerLow(S_CR3_TARGET_COUNT) > 4) return invalid("CR3-target count above 4");
    const maxPhys = cpu.paging.maxPhyAddr;
    if ((proc & CPU_USE_IO_BITMAPS) !== 0 && (badAddress(vmcs, F.IO_BITMAP_A, maxPhys) || badAddress(vmcs, F.IO_BITMAP_B, maxPhys))) return invalid("I/O bitmap address not 4-KiB aligned or beyond the physical-address width");
    if ((proc & CPU_USE_MSR_BITMAPS) !== 0 && badAddress(vmcs, F.MSR_BITMAP, maxPhys)) return invalid("MSR bitmap address not 4-KiB aligned or beyond the physical-address width");
    if ((proc2 & SECONDARY_ENABLE_VPID) !== 0 && vmcs.eagerLow(S_VIRTUAL_PROCESSOR_ID) === 0) return invalid("VPID is 0 with enable VPID");
    // SDM 27.2.1.1: "If the 'unrestricted guest' VM-execution control is 1, the 'enable EPT' VM-execution control must also be 1."
    if (unrestricted && (proc2 & SECONDARY_ENABLE_EPT) === 0) return invalid("unrestricted guest without enable EPT");
    if ((proc2 & SECONDARY_ENABLE_EPT) !== 0) {
      const { lo, hi } = vmcs.readHalves(F.EPT_POINTER);
      const memType = lo & 7;
      const walkLength = (lo >>> 3) & 7;
      if ((memType !== 0 && memType !== 6) || walkLength !== 3 || (lo & 0xf80) !== 0 || hi >>> (maxPhys - 32) !== 0) {
        return invalid("EPT pointer: memory type not UC/WB, page-walk length not 4, or reserved bits set");
      }
    }
    if (vmcs.eagerLow(S_VM_EXIT_MSR_STORE_COUNT) !== 0 || vmcs.eagerLow(S_VM_EXIT_MSR_LOAD_COUNT) !== 0) return invalid("VM-exit MSR-store/load areas are not supported (counts must be 0)");
    // IA32_VMX_MISC[27:25] = 0: at most 512 entries (SDM A.6); the area is 16-byte aligned.
    if (msrLoadCount > 512) return invalid("VM-entry MSR-load count above 512");
    if (msrLoadCount > 0 && (vmcs.eagerNatural(S_VM_ENTRY_MSR_LOAD_ADDR) % 16 !== 0 || vmcs.eagerNatural(S_VM_ENTRY_MSR_LOAD_ADDR) >= 2 ** maxPhys)) {
      return invalid("VM-entry MSR-load address not 16-byte aligned or beyond the physical-address width");
    }
  }
  if ((intr & INTR_INFO_VALID) !== 0) {
    const type = (intr >>> 8) & 7;
    const vector = intr & 0xff;
    if (type === 1 || (intr & 0x7fff_f000) !== 0) return invalid("VM-entry interruption-information field: reserved type or bits");
    if (type === IntrType.Nmi && vector !== Vector.NMI) return invalid("VM-entry interruption-information field: NMI with a vector other than 2");
    if (type === IntrType.HardwareException && vector > 31) return invalid("VM-entry interruption-information field: hardware exception vector above 31");
    // SDM 27.2.1.3: types 4, 5 and 6 need an instruction length of 1 to 15.
    const len = vmcs.eagerLow(S_VM_ENTRY_INSTRUCTION_LEN);
    if ((type === IntrType.SoftwareInterrupt || type === IntrType.PrivilegedSoftwareException || type === IntrType.SoftwareException) && (len === 0 || len > 15)) {
      return invalid("VM-entry instruction length not 1-15 for a software interrupt or exception");
    }
  }

  // ---- 27.2.2-27.2.4 host state ----
  if ((changed & (VMCS_GROUP_HOST | VMCS_GROUP_CONTROL)) !== 0) {
    const hostCr0 = vmcs.eagerLow(S_HOST_CR0);
    const hostCr4 = vmcs.eagerLow(S_HOST_CR4);
    if ((hostCr0 & VMX_CR0_FIXED0) !== VMX_CR0_FIXED0) return host("HOST_CR0 lacks a bit IA32_VMX_CR0_FIXED0 requires (PE, NE, PG)");
    if ((hostCr4 & VMX_CR4_FIXED0) !== VMX_CR4_FIXED0) return host("HOST_CR4.VMXE is 0");
    if (vmcs.eagerLow(S_HOST_CS_SELECTOR) === 0 || (vmcs.eagerLow(S_HOST_CS_SELECTOR) & 7) !== 0) return host("HOST_CS_SELECTOR is null or has RPL/TI bits");
    if (vmcs.eagerLow(S_HOST_TR_SELECTOR) === 0 || (vmcs.eagerLow(S_HOST_TR_SELECTOR) & 7) !== 0) return host("HOST_TR_SELECTOR is null or has RPL/TI bits");
    if ((exitCtl & EXIT_HOST_ADDR_SPACE_SIZE) === 0) return host("this processor's host runs in IA-32e mode: the host address-space size exit control must be 1");
    if ((hostCr4 & CR4_PAE) === 0) return host("HOST_CR4.PAE is 0 with a 64-bit host");
    const hostPat = vmcs.readHalves(F.HOST_IA32_PAT);
    if ((exitCtl & EXIT_LOAD_IA32_PAT) !== 0 && !patValid(hostPat.lo, hostPat.hi)) return host("HOST_IA32_PAT holds a reserved memory type (2, 3 or above 7)");
    for (let k = 0; k < HOST_CANONICAL.length; k++) {
      const f = HOST_CANONICAL[k]!;
      if (!canonical(vmcs.readNatural(f))) return host(`${fieldLabel(f)} is not canonical`);
    }
  }

  // ---- 27.3.1 guest state ----
  const ia32e = (entryCtl & ENTRY_IA32E_MODE) !== 0;
  const gCr0 = vmcs.eagerLow(S_GUEST_CR0);
  const gCr4 = vmcs.eagerLow(S_GUEST_CR4);
  const cr0Fixed = unrestricted ? VMX_CR0_FIXED0 & ~(CR0_PE | CR0_PG) : VMX_CR0_FIXED0;
  if (checkGuest && (gCr0 & cr0Fixed) !== cr0Fixed) {
    return guestStateFailure(
      unrestricted
        ? "GUEST_CR0.NE is 0 (SDM 27.3.1.1: CR0 must have the bits IA32_VMX_CR0_FIXED0 requires)"
        : "GUEST_CR0 lacks PE, NE or PG (SDM 27.3.1.1: CR0 must have the bits IA32_VMX_CR0_FIXED0 requires; PE and PG may be 0 only with the unrestricted guest control)",
    );
  }
  if (checkGuest && (gCr0 & CR0_PG) !== 0 && (gCr0 & CR0_PE) === 0) return guestStateFailure("GUEST_CR0.PG = 1 with PE = 0");
  if (checkGuest && (gCr4 & VMX_CR4_FIXED0) !== VMX_CR4_FIXED0) return guestStateFailure("GUEST_CR4.VMXE is 0");
  if (checkGuest && ia32e && ((gCr0 & CR0_PG) === 0 || (gCr4 & CR4_PAE) === 0)) return guestStateFailure("IA-32e mode guest with GUEST_CR0.PG = 0 or GUEST_CR4.PAE = 0");
  // PAE paging (CR0.PG = 1, CR4.PAE = 1, not IA-32e mode): the PDPTEs VM entry will use.
  const paeGuest = !ia32e && (gCr0 & CR0_PG) !== 0 && (gCr4 & CR4_PAE) !== 0;
  const pdptes = ENTRY_PDPTES;
  if (paeGuest) {
    const failure = entryPdptes(cpu, vmcs, (proc2 & SECONDARY_ENABLE_EPT) !== 0, pdptes);
    if (failure !== undefined) return failure;
  }
  if (checkGuest) {
    const link = vmcs.readHalves(F.VMCS_LINK_POINTER);
    if (link.lo !== 0xffff_ffff || link.hi !== 0xffff_ffff) return guestStateFailure("VMCS link pointer is not FFFFFFFF_FFFFFFFFH");
  }
  if (checkGuest && (entryCtl & ENTRY_LOAD_IA32_EFER) !== 0) {
    const efer = vmcs.eagerLow(S_GUEST_IA32_EFER);
    // SDM 27.3.1.1: LMA equals the IA-32e mode guest control, and LME does too when CR0.PG = 1.
    if (((efer & EFER_LMA) !== 0) !== ia32e || ((gCr0 & CR0_PG) !== 0 && ((efer & EFER_LME) !== 0) !== ia32e)) return guestStateFailure("GUEST_IA32_EFER.LMA/LME differ from the IA-32e mode guest control");
  }
  // SDM 27.3.1.1: with "load debug controls", DR7[63:32] and IA32_DEBUGCTL's reserved bits are 0;
  // with "load IA32_PAT", every PAT entry is a memory type WRMSR would accept.
  const loadDebug = (entryCtl & ENTRY_LOAD_DEBUG_CONTROLS) !== 0;
  // (readHalves returns one reused object: copy the halves out.)
  const debugctlLo = vmcs.eagerLow(S_GUEST_IA32_DEBUGCTL);
  const debugctlHi = vmcs.eagerHigh(S_GUEST_IA32_DEBUGCTL);
  if (checkGuest && loadDebug && (debugctlHi !== 0 || (debugctlLo & ~DEBUGCTL_WRITABLE) !== 0)) return guestStateFailure("GUEST_IA32_DEBUGCTL has reserved bits set");
  if (checkGuest && loadDebug && vmcs.readHalves(F.GUEST_DR7).hi !== 0) return guestStateFailure("GUEST_DR7 bits 63:32 are not 0");
  const patLo = vmcs.eagerLow(S_GUEST_IA32_PAT);
  const patHi = vmcs.eagerHigh(S_GUEST_IA32_PAT);
  if (checkGuest && (entryCtl & ENTRY_LOAD_IA32_PAT) !== 0 && !patValid(patLo, patHi)) return guestStateFailure("GUEST_IA32_PAT holds a reserved memory type (2, 3 or above 7)");
  const rflags = vmcs.eagerLow(S_GUEST_RFLAGS);
  if ((rflags & RFLAGS_FIXED) === 0 || (rflags & RFLAGS_RESERVED_ZERO) !== 0) return guestStateFailure("GUEST_RFLAGS reserved bits (bit 1 must be 1; 3, 5, 15, 22-31 must be 0)");
  // The guest segment fields a VM exit of this vCPU has not saved yet (Vmcs.deferSave) are its
  // segment registers: their checks read them there (the value the save would give), and run on
  // every such entry (the guest may have loaded segments since the checks last passed).
  const segLive = vmcs.savePendingWith(cpu);
  const checkSegments = checkGuest || segLive;
  const csAr = segLive ? arBytes(cpu.seg[Seg.CS] as SegmentCache) : vmcs.slotLow(S_GUEST_CS_AR_BYTES);
  // SDM 27.3.1.2: CS is an accessed code segment (types 9, 11, 13, 15), or with unrestricted guest
  // a read/write accessed data segment (type 3) whose DPL must then be 0.
  const csData = unrestricted && (csAr & 0x1f) === 0x13;
  if (checkSegments) {
    if (((csAr & 0x18) !== 0x18 && !csData) || (csAr & 0x80) === 0) return guestStateFailure("GUEST_CS_AR_BYTES: not a present code segment (or, with unrestricted guest, a type-3 data segment)");
    if (csData && (csAr & 0x60) !== 0) return guestStateFailure("GUEST_CS_AR_BYTES: type 3 with a DPL other than 0 (SDM 27.3.1.2)");
    if ((gCr0 & CR0_PE) === 0) {
      // Real-address mode under unrestricted guest (SDM 27.3.1.2): SS.DPL must be 0.
      const ssAr = segLive ? arBytes(cpu.seg[Seg.SS] as SegmentCache) : vmcs.slotLow(S_GUEST_SS_AR_BYTES);
      if ((ssAr & 0x1_0000) === 0 && (ssAr & 0x60) !== 0) return guestStateFailure("GUEST_SS_AR_BYTES: DPL is not 0 with GUEST_CR0.PE = 0 (SDM 27.3.1.2)");
    }
    if (ia32e && (csAr & 0x2000) !== 0 && (csAr & 0x4000) !== 0) return guestStateFailure("GUEST_CS_AR_BYTES: L and D/B both set");
    const trAr = segLive ? arBytes(cpu.tr) : vmcs.slotLow(S_GUEST_TR_AR_BYTES);
    // TR: a usable, present busy TSS; type 11 in IA-32e mode, 3 (16-bit) or 11 (32-bit) otherwise.
    const trType = trAr & 0xf;
    if ((trAr & 0x1_0000) !== 0 || (trAr & 0x80) === 0 || (trType !== 11 && (ia32e || trType !== 3))) return guestStateFailure("GUEST_TR_AR_BYTES: TR must be a usable, present, busy TSS (64-bit in IA-32e mode)");
  }
  const activity = vmcs.eagerLow(S_GUEST_ACTIVITY_STATE);
  if (activity !== ActivityState.Active && activity !== ActivityState.Hlt) return guestStateFailure(`GUEST_ACTIVITY_STATE ${activity} is not supported (active or HLT; shutdown and wait-for-SIPI are not modelled)`);
  const rip = vmcs.eagerNatural(S_GUEST_RIP);
  if (ia32e && (csAr & 0x2000) !== 0 && !canonical(rip)) return guestStateFailure("GUEST_RIP is not canonical");
  if ((!ia32e || (csAr & 0x2000) === 0) && (rip < 0 || rip >= 2 ** 32)) return guestStateFailure("GUEST_RIP bits 63:32 are not 0 outside 64-bit mode");
  const interruptibility = vmcs.eagerLow(S_GUEST_INTERRUPTIBILITY_INFO);
  if ((interruptibility & 3) === 3) return guestStateFailure("GUEST_INTERRUPTIBILITY_INFO: blocking by STI and by MOV SS both set");
  if ((intr & INTR_INFO_VALID) !== 0 && ((intr >>> 8) & 7) === IntrType.External && ((rflags & RFLAGS_IF) === 0 || (interruptibility & 3) !== 0)) {
    return guestStateFailure("external interrupt injection with RFLAGS.IF = 0 or interrupts blocked");
  }

  // Every check passed: until a field of a group changes value, its checks need not be made again.
  vmcs.changed = 0;
  vmcs.checkedBy = cpu;

  // ---- 27.3.2 load guest state ----
  cpu.cr0 = gCr0;
  cpu.cr4 = gCr4;
  cpu.cr3 = vmcs.eagerNatural(S_GUEST_CR3);
  if (loadDebug) {
    cpu.dr[7] = vmcs.eagerLow(S_GUEST_DR7) >>> 0;
    setPlainMsr(cpu, MSR.DEBUGCTL, debugctlLo, 0);
  }
  if ((entryCtl & ENTRY_LOAD_IA32_PAT) !== 0) setPlainMsr(cpu, MSR.PAT, patLo, patHi);
  cpu.efer = (entryCtl & ENTRY_LOAD_IA32_EFER) !== 0 ? vmcs.eagerLow(S_GUEST_IA32_EFER) : ia32e ? cpu.efer | EFER_LMA | EFER_LME : cpu.efer & ~(EFER_LMA | EFER_LME);
  loadGuestSegments(cpu, vmcs);
  cpu.gdtrBase = vmcs.eagerNatural(S_GUEST_GDTR_BASE);
  cpu.gdtrLimit = vmcs.eagerLow(S_GUEST_GDTR_LIMIT);
  cpu.idtrBase = vmcs.eagerNatural(S_GUEST_IDTR_BASE);
  cpu.idtrLimit = vmcs.eagerLow(S_GUEST_IDTR_LIMIT);
  cpu.cpl = (csAr >>> 5) & 3;
  cpu.setRegFromNumber(4, vmcs.eagerNatural(S_GUEST_RSP));
  cpu.rip = rip;
  cpu.flagsOther = RFLAGS_FIXED;
  cpu.setFlags(rflags, 0x003f_7fd7);
  if (paeGuest) cpu.pdpte.set(pdptes);
  cpu.updateMode(); // flushes decoded instructions only if the code-segment mode changed
  cpu.halted = activity === ActivityState.Hlt;
  cpu.interruptShadow = (interruptibility & 3) !== 0;
  if ((interruptibility & 2) !== 0) cpu.movSsBlocking = true; // bit 1: blocking by MOV SS
  cpu.nmiBlocked = (interruptibility & 8) !== 0; // bit 3: blocking by NMI
  // ---- 27.4 loading MSRs: a failure is a VM-entry failure exit (reason 34), qualification = the entry's 1-based index ----
  const msrFailure = loadMsrArea(cpu, vmcs.eagerNatural(S_VM_ENTRY_MSR_LOAD_ADDR), msrLoadCount);
  if (msrFailure !== undefined) return msrFailure;
  cpu.enterNonRoot(vmcs, pin, proc, proc2);
  if (launch) vmcs.launchState = "launched";

  injectEntryEvent(cpu, vmcs, rip);
  return undefined;
}

/**
 * Load the guest segment registers (ES-GS, TR, LDTR) from the VMCS, as VM entry does (SDM
 * 27.3.2.2). With the exit's save still pending for this vCPU (Vmcs.deferSave), the registers
 * hold what it would save: loading that back only gives them the fields' form (normalise).
 * Also for a hypervisor that emulates a vCPU where a VM entry would be (Xen's vmx_realmode).
 */
export function loadGuestSegments(cpu: Cpu, vmcs: Vmcs): void {
  if (vmcs.savePendingWith(cpu)) {
    for (let k = 0; k < GUEST_SEGMENTS.length; k++) normaliseSegment(cpu.seg[GUEST_SEGMENTS[k]![0]] as SegmentCache);
    normaliseSegment(cpu.tr);
    normaliseSegment(cpu.ldtr);
    return;
  }
  for (let k = 0; k < GUEST_SEGMENTS.length; k++) loadSegment(cpu.seg[GUEST_SEGMENTS[k]![0]] as SegmentCache, vmcs, k * 4);
  loadSegment(cpu.tr, vmcs, TR_SLOTS);
  loadSegment(cpu.ldtr, vmcs, LDTR_SLOTS);
}

/**
 * VM entry's event injection (SDM 27.6): the event in VM_ENTRY_INTR_INFO_FIELD, if valid, is
 * delivered as if it occurred now (the valid bit cleared; RIP past a software event's
 * instruction; an NMI blocks NMIs). `rip`: the guest RIP the entry loaded.
 */
export function injectEntryEvent(cpu: Cpu, vmcs: Vmcs, rip: number): void {
  const intr = vmcs.eagerLow(S_VM_ENTRY_INTR_INFO_FIELD);
  if ((intr & INTR_INFO_VALID) === 0) return;
  vmcs.setField(F.VM_ENTRY_INTR_INFO_FIELD, intr & ~INTR_INFO_VALID); // the valid bit is cleared on entry
  const type = (intr >>> 8) & 7;
  const errorCode = (intr & INTR_INFO_ERROR_CODE_VALID) !== 0 ? vmcs.eagerLow(S_VM_ENTRY_EXCEPTION_ERROR_CODE) : -1;
  const software = type === IntrType.SoftwareInterrupt || type === IntrType.SoftwareException || type === IntrType.PrivilegedSoftwareException;
  const length = software ? vmcs.eagerLow(S_VM_ENTRY_INSTRUCTION_LEN) : 0;
  if (type === IntrType.Nmi) cpu.nmiBlocked = true; // an injected NMI blocks NMIs as a real one does
  if (software) cpu.rip = rip + length;
  const exceptionType = type === IntrType.PrivilegedSoftwareException ? 5 : type === IntrType.SoftwareException ? 6 : 0;
  cpu.injectEvent(intr & 0xff, errorCode, type === IntrType.SoftwareInterrupt, type === IntrType.External, exceptionType, length);
}

/** GUEST_PDPTE0-3, in order. */
const GUEST_PDPTES = [F.GUEST_PDPTE0, F.GUEST_PDPTE1, F.GUEST_PDPTE2, F.GUEST_PDPTE3] as const;

/**
 * The PDPTEs a VM entry into PAE paging loads: with "enable EPT" the VMCS fields GUEST_PDPTE0-3,
 * whose present entries must have no reserved bit set (SDM 27.3.1.6); without it, the four
 * entries of the table at GUEST_CR3 in machine memory, under the same rule (27.3.2.4). Either
 * failure is a VM-entry failure for invalid guest state.
 */
function entryPdptes(cpu: Cpu, vmcs: Vmcs, ept: boolean, out: Uint32Array): EntryFailureExit | undefined {
  if (ept) {
    const rsvdLo = PAE_PDPTE_RSVD_LO | reservedLowAddressMask(cpu.paging.maxPhyAddr);
    const rsvdHi = reservedHighMask(cpu.paging.maxPhyAddr, false);
    for (let i = 0; i < 4; i++) {
      const f = GUEST_PDPTES[i]!;
      const e = vmcs.readHalves(f);
      if ((e.lo & 1) !== 0 && ((e.lo & rsvdLo) !== 0 || (e.hi & rsvdHi) !== 0)) return guestStateFailure(`${fieldLabel(f)} 0x${e.hi.toString(16)}${e.lo.toString(16).padStart(8, "0")} is present with reserved bits set`);
      out[2 * i] = e.lo;
      out[2 * i + 1] = e.hi;
    }
    return undefined;
  }
  const cr3 = vmcs.readNatural(F.GUEST_CR3);
  const r = loadPaePdptes(cpu.tables, cr3, cpu.paging.maxPhyAddr, out);
  if (r.status !== PdpteLoadStatus.Ok) return guestStateFailure(`the PDPTEs at GUEST_CR3 0x${cr3.toString(16)} are present with reserved bits set (or outside memory)`);
  return undefined;
}

/** Save the PDPTE registers into GUEST_PDPTE0-3 on an exit from PAE paging under EPT (SDM 28.3.4). */
function savePdptes(cpu: Cpu, vmcs: Vmcs): void {
  for (let i = 0; i < 4; i++) vmcs.setField(GUEST_PDPTES[i]!, cpu.pdpte[2 * i]!, cpu.pdpte[2 * i + 1]!);
}

/**
 * Load the VM-entry MSR-load area (SDM 27.4): 16-byte entries {u32 index, u32 reserved, u64 data}.
 * An entry fails for a reserved field set, an MSR the area may not load (IA32_FS_BASE and
 * IA32_GS_BASE are allowed; SMBASE, x2APIC MSRs and IA32_SMM_MONITOR_CTL are not), or a write
 * WRMSR would refuse with #GP.
 */
function loadMsrArea(cpu: Cpu, address: number, count: number): EntryFailureExit | undefined {
  for (let k = 0; k < count; k++) {
    const e = address + k * 16;
    const index = cpu.physRead(e, 4) >>> 0;
    const reserved = cpu.physRead(e + 4, 4) >>> 0;
    const lo = cpu.physRead(e + 8, 4) >>> 0;
    const hi = cpu.physRead(e + 12, 4) >>> 0;
    const forbidden = index === 0x9e || (index >>> 8) === 0x8 || index === 0x9b; // IA32_SMBASE, x2APIC range, IA32_SMM_MONITOR_CTL
    if (reserved !== 0 || forbidden || !writeMsr(cpu, index, lo, hi)) {
      return {
        kind: "entry-failure",
        exit: { reason: (ExitReason.MsrLoading | EXIT_REASON_FAILED_VMENTRY) >>> 0, qualification: k + 1, instructionLength: 0 },
        message: `VM entry failed: MSR loading: entry ${k + 1} (MSR 0x${index.toString(16)}) could not be loaded`,
      };
    }
  }
  return undefined;
}

/** An MSR kept in cpu.msrs, written in place (VM entry loads some on every entry: no allocation). */
function setPlainMsr(cpu: Cpu, index: number, lo: number, hi: number): void {
  const v = cpu.msrs.get(index);
  if (v === undefined) cpu.msrs.set(index, { lo, hi });
  else {
    v.lo = lo;
    v.hi = hi;
  }
}

function fieldLabel(f: number): string {
  return Object.entries(F).find(([, v]) => v === f)?.[0] ?? f.toString(16);
}

/** Load a segment register from its four fields, at SEGMENT_SLOTS[at..at+3]. */
function loadSegment(c: SegmentCache, vmcs: Vmcs, at: number): void {
  c.selector = vmcs.slotLow(SEGMENT_SLOTS[at]!);
  c.base = vmcs.slotNatural(SEGMENT_SLOTS[at + 1]!);
  c.limit = vmcs.slotLow(SEGMENT_SLOTS[at + 2]!);
  const a = vmcs.slotLow(SEGMENT_SLOTS[at + 3]!);
  c.attr = (a & 0x1_0000) !== 0 ? 0 : a & 0xf0ff; // an unusable segment keeps no attributes
}

/** The VM exit's save of the guest segment registers (SDM 28.3.2), made when Vmcs.deferSave says. */
function saveSegments(cpu: Cpu, vmcs: Vmcs): void {
  for (let k = 0; k < GUEST_SEGMENTS.length; k++) saveSegment(cpu.seg[GUEST_SEGMENTS[k]![0]] as SegmentCache, vmcs, k * 4);
  saveSegment(cpu.tr, vmcs, TR_SLOTS);
  saveSegment(cpu.ldtr, vmcs, LDTR_SLOTS);
}

/** The access-rights field saveSegment writes for a segment register. */
function arBytes(c: SegmentCache): number {
  return c.attr === 0 ? 0x1_0000 : c.attr & 0xf0ff;
}

/** A segment register as loadSegment(saveSegment(it)) leaves it: the fields' widths and the access-rights bits they keep. */
function normaliseSegment(c: SegmentCache): void {
  // Written only where the value changes (nearly never): a limit of 0xFFFFFFFF is a double, and
  // storing it again on every VM entry cost more than the rest of the load.
  const selector = c.selector & 0xffff;
  if (selector !== c.selector) c.selector = selector;
  const limit = c.limit >>> 0;
  if (limit !== c.limit) c.limit = limit;
  const attr = c.attr & 0xf0ff;
  if (attr !== c.attr) c.attr = attr;
}

/** Save a segment register into its four fields, at SEGMENT_SLOTS[at..at+3]. */
function saveSegment(c: SegmentCache, vmcs: Vmcs, at: number): void {
  const base = c.base;
  vmcs.putSlot(SEGMENT_SLOTS[at]!, c.selector, 0);
  vmcs.putSlot(SEGMENT_SLOTS[at + 1]!, base | 0, base >= 0 && base < 0x1_0000_0000 ? 0 : Math.floor(base / 0x1_0000_0000) | 0);
  vmcs.putSlot(SEGMENT_SLOTS[at + 2]!, c.limit, 0);
  vmcs.putSlot(SEGMENT_SLOTS[at + 3]!, arBytes(c), 0);
}

// The slots (vmcsSlot) of the fields every VM exit writes, looked up once.
const S_EXIT_REASON = vmcsEagerSlot(F.VM_EXIT_REASON);
const S_EXIT_QUALIFICATION = vmcsEagerSlot(F.EXIT_QUALIFICATION);
const S_EXIT_INSTRUCTION_LEN = vmcsEagerSlot(F.VM_EXIT_INSTRUCTION_LEN);
const S_INSTRUCTION_INFO = vmcsEagerSlot(F.VMX_INSTRUCTION_INFO);
const S_GUEST_LINEAR_ADDRESS = vmcsEagerSlot(F.GUEST_LINEAR_ADDRESS);
const S_GUEST_PHYSICAL_ADDRESS = vmcsEagerSlot(F.GUEST_PHYSICAL_ADDRESS);
const S_EXIT_INTR_INFO = vmcsEagerSlot(F.VM_EXIT_INTR_INFO);
const S_EXIT_INTR_ERROR_CODE = vmcsEagerSlot(F.VM_EXIT_INTR_ERROR_CODE);
const S_IDT_VECTORING_INFO = vmcsEagerSlot(F.IDT_VECTORING_INFO_FIELD);
const S_IDT_VECTORING_ERROR_CODE = vmcsEagerSlot(F.IDT_VECTORING_ERROR_CODE);
const S_GUEST_CR0 = vmcsEagerSlot(F.GUEST_CR0);
const S_GUEST_CR3 = vmcsEagerSlot(F.GUEST_CR3);
const S_GUEST_CR4 = vmcsEagerSlot(F.GUEST_CR4);
const S_EXIT_CONTROLS = vmcsEagerSlot(F.VM_EXIT_CONTROLS);
const S_ENTRY_CONTROLS = vmcsEagerSlot(F.VM_ENTRY_CONTROLS);
const S_GUEST_RSP = vmcsEagerSlot(F.GUEST_RSP);
const S_GUEST_RIP = vmcsEagerSlot(F.GUEST_RIP);
const S_GUEST_RFLAGS = vmcsEagerSlot(F.GUEST_RFLAGS);
const S_GUEST_IA32_EFER = vmcsEagerSlot(F.GUEST_IA32_EFER);
const S_GUEST_GDTR_BASE = vmcsEagerSlot(F.GUEST_GDTR_BASE);
const S_GUEST_GDTR_LIMIT = vmcsEagerSlot(F.GUEST_GDTR_LIMIT);
const S_GUEST_IDTR_BASE = vmcsEagerSlot(F.GUEST_IDTR_BASE);
const S_GUEST_IDTR_LIMIT = vmcsEagerSlot(F.GUEST_IDTR_LIMIT);
const S_GUEST_ACTIVITY_STATE = vmcsEagerSlot(F.GUEST_ACTIVITY_STATE);
const S_GUEST_INTERRUPTIBILITY_INFO = vmcsEagerSlot(F.GUEST_INTERRUPTIBILITY_INFO);

/** Save guest state and exit information into the VMCS (SDM 28.2-28.3). */
export function saveOnExit(cpu: Cpu, vmcs: Vmcs, exit: VmExit): void {
  vmcs.eagerPut(S_EXIT_REASON, exit.reason, 0);
  vmcs.eagerPutNatural(S_EXIT_QUALIFICATION, exit.qualification);
  vmcs.eagerPut(S_EXIT_INSTRUCTION_LEN, exit.instructionLength, 0);
  vmcs.eagerPut(S_INSTRUCTION_INFO, exit.instructionInfo ?? 0, 0);
  vmcs.eagerPutNatural(S_GUEST_LINEAR_ADDRESS, exit.guestLinear ?? 0);
  vmcs.eagerPutNatural(S_GUEST_PHYSICAL_ADDRESS, exit.guestPhysical ?? 0);
  const ev = exit.interruption;
  vmcs.eagerPut(S_EXIT_INTR_INFO, ev === undefined ? 0 : (INTR_INFO_VALID | (ev.errorCode !== undefined ? INTR_INFO_ERROR_CODE_VALID : 0) | (ev.type << 8) | ev.vector) >>> 0, 0);
  vmcs.eagerPut(S_EXIT_INTR_ERROR_CODE, ev?.errorCode ?? 0, 0);
  const iv = exit.idtVectoring;
  vmcs.eagerPut(S_IDT_VECTORING_INFO, iv === undefined ? 0 : (INTR_INFO_VALID | (iv.errorCode !== undefined ? INTR_INFO_ERROR_CODE_VALID : 0) | (iv.type << 8) | iv.vector) >>> 0, 0);
  vmcs.eagerPut(S_IDT_VECTORING_ERROR_CODE, iv?.errorCode ?? 0, 0);

  vmcs.eagerPut(S_GUEST_CR0, cpu.cr0, 0);
  vmcs.eagerPutNatural(S_GUEST_CR3, cpu.cr3);
  vmcs.eagerPut(S_GUEST_CR4, cpu.cr4, 0);
  const exitCtl = vmcs.eagerLow(S_EXIT_CONTROLS);
  if ((exitCtl & EXIT_SAVE_DEBUG_CONTROLS) !== 0) {
    vmcs.eagerPutNatural(S_GUEST_DR7, cpu.dr[7]!);
    vmcs.eagerPut(S_GUEST_IA32_DEBUGCTL, cpu.msrs.get(MSR.DEBUGCTL)?.lo ?? 0, 0);
  }
  if ((exitCtl & EXIT_SAVE_IA32_PAT) !== 0) {
    // The value RDMSR gives (readMsr): the power-up PAT until one is written.
    const p = cpu.msrs.get(MSR.PAT) ?? PAT_POWER_UP;
    vmcs.eagerPut(S_GUEST_IA32_PAT, p.lo, p.hi);
  }
  vmcs.eagerPutNatural(S_GUEST_RSP, cpu.regAddr(4));
  vmcs.eagerPutNatural(S_GUEST_RIP, cpu.rip);
  vmcs.eagerPut(S_GUEST_RFLAGS, cpu.getFlags(), 0);
  vmcs.eagerPut(S_GUEST_IA32_EFER, cpu.efer, 0);
  if (cpu.eptActive && cpu.paePaging()) savePdptes(cpu, vmcs);
  // SDM Vol. 3C ch. 28 (VM exits update the VM-entry controls): the "IA-32e mode guest" control
  // receives IA32_EFER.LMA, so a guest that switched modes is re-entered in its new mode.
  const entryCtl = vmcs.eagerLow(S_ENTRY_CONTROLS);
  const lma = (cpu.efer & EFER_LMA) !== 0;
  if (((entryCtl & ENTRY_IA32E_MODE) !== 0) !== lma) vmcs.eagerPut(S_ENTRY_CONTROLS, (lma ? entryCtl | ENTRY_IA32E_MODE : entryCtl & ~ENTRY_IA32E_MODE) >>> 0, 0);
  // The segment registers are saved on the first access to one of their fields (Vmcs.deferSave):
  // an exit whose handler reads none of them, and the entry after it, move none of them.
  vmcs.deferSave(cpu, saveSegments);
  vmcs.eagerPutNatural(S_GUEST_GDTR_BASE, cpu.gdtrBase);
  vmcs.eagerPut(S_GUEST_GDTR_LIMIT, cpu.gdtrLimit, 0);
  vmcs.eagerPutNatural(S_GUEST_IDTR_BASE, cpu.idtrBase);
  vmcs.eagerPut(S_GUEST_IDTR_LIMIT, cpu.idtrLimit, 0);
  vmcs.eagerPut(S_GUEST_ACTIVITY_STATE, cpu.halted ? ActivityState.Hlt : ActivityState.Active, 0);
  // Bit 0 blocking by STI, bit 1 blocking by MOV SS (SDM Table 25-3), bit 3 blocking by NMI.
  // An instruction that exits in the shadow still runs under it (cpu.shadowInsn).
  const blocking = cpu.interruptShadow ? (cpu.movSsBlocking ? 2 : 1) : cpu.shadowInsn;
  vmcs.eagerPut(S_GUEST_INTERRUPTIBILITY_INFO, blocking | (cpu.nmiBlocked ? 8 : 0), 0);
}
