/**
 * VM-execution, VM-exit and VM-entry control bits (SDM Vol. 3C 25.6-25.8), and the settings
 * this processor allows, as the capability MSRs would report them (SDM Appendix A.3-A.5: a bit
 * set in "must be 1" is required, a bit clear in "may be 1" is reserved). The values are a
 * model's choice, listed here; the bits they allow are the ones the interpreter implements.
 */

// ---- Pin-based VM-execution controls (PIN_BASED_VM_EXEC_CONTROL) ----
/** External-interrupt exiting, bit 0. */
export const PIN_EXTINT_EXITING = 1 << 0;
/** NMI exiting, bit 3. */
export const PIN_NMI_EXITING = 1 << 3;
/** Virtual NMIs, bit 5. */
export const PIN_VIRTUAL_NMIS = 1 << 5;
/** Activate VMX-preemption timer, bit 6. */
export const PIN_PREEMPTION_TIMER = 1 << 6;

// ---- Primary processor-based VM-execution controls (CPU_BASED_VM_EXEC_CONTROL) ----
/** Interrupt-window exiting, bit 2. */
export const CPU_INTR_WINDOW_EXITING = 1 << 2;
/** Use TSC offsetting, bit 3. */
export const CPU_USE_TSC_OFFSETTING = 1 << 3;
/** HLT exiting, bit 7. */
export const CPU_HLT_EXITING = 1 << 7;
/** INVLPG exiting, bit 9. */
export const CPU_INVLPG_EXITING = 1 << 9;
/** MWAIT exiting, bit 10. */
export const CPU_MWAIT_EXITING = 1 << 10;
/** RDPMC exiting, bit 11. */
export const CPU_RDPMC_EXITING = 1 << 11;
/** RDTSC exiting, bit 12. */
export const CPU_RDTSC_EXITING = 1 << 12;
/** CR3-load exiting, bit 15. */
export const CPU_CR3_LOAD_EXITING = 1 << 15;
/** CR3-store exiting, bit 16. */
export const CPU_CR3_STORE_EXITING = 1 << 16;
/** CR8-load exiting, bit 19. */
export const CPU_CR8_LOAD_EXITING = 1 << 19;
/** CR8-store exiting, bit 20. */
export const CPU_CR8_STORE_EXITING = 1 << 20;
/** NMI-window exiting, bit 22. */
export const CPU_NMI_WINDOW_EXITING = 1 << 22;
/** MOV-DR exiting, bit 23. */
export const CPU_MOV_DR_EXITING = 1 << 23;
/** Unconditional I/O exiting, bit 24. */
export const CPU_UNCOND_IO_EXITING = 1 << 24;
/** Use I/O bitmaps, bit 25. */
export const CPU_USE_IO_BITMAPS = 1 << 25;
/** Monitor trap flag, bit 27. */
export const CPU_MONITOR_TRAP_FLAG = 1 << 27;
/** Use MSR bitmaps, bit 28. */
export const CPU_USE_MSR_BITMAPS = 1 << 28;
/** MONITOR exiting, bit 29. */
export const CPU_MONITOR_EXITING = 1 << 29;
/** PAUSE exiting, bit 30. */
export const CPU_PAUSE_EXITING = 1 << 30;
/** Activate secondary controls, bit 31. */
export const CPU_ACTIVATE_SECONDARY = 1 << 31;

// ---- Secondary processor-based VM-execution controls (SECONDARY_VM_EXEC_CONTROL) ----
/** Enable EPT, bit 1. */
export const SECONDARY_ENABLE_EPT = 1 << 1;
/** Descriptor-table exiting, bit 2. */
export const SECONDARY_DESC_TABLE_EXITING = 1 << 2;
/** Enable RDTSCP, bit 3. */
export const SECONDARY_ENABLE_RDTSCP = 1 << 3;
/** Enable VPID, bit 5. */
export const SECONDARY_ENABLE_VPID = 1 << 5;
/** WBINVD exiting, bit 6. */
export const SECONDARY_WBINVD_EXITING = 1 << 6;
/** Unrestricted guest, bit 7. */
export const SECONDARY_UNRESTRICTED_GUEST = 1 << 7;
/** PAUSE-loop exiting, bit 10 (PLE_GAP and PLE_WINDOW; SDM 26.1.3). */
export const SECONDARY_PAUSE_LOOP_EXITING = 1 << 10;

// ---- VM-exit controls (VM_EXIT_CONTROLS) ----
/** Save debug controls (DR7 and IA32_DEBUGCTL into the guest-state area), bit 2. */
export const EXIT_SAVE_DEBUG_CONTROLS = 1 << 2;
/** Host address-space size, bit 9. */
export const EXIT_HOST_ADDR_SPACE_SIZE = 1 << 9;
/** Acknowledge interrupt on exit, bit 15. */
export const EXIT_ACK_INTR_ON_EXIT = 1 << 15;
/** Save IA32_PAT (into GUEST_IA32_PAT), bit 18. */
export const EXIT_SAVE_IA32_PAT = 1 << 18;
/** Load IA32_PAT (from HOST_IA32_PAT), bit 19. */
export const EXIT_LOAD_IA32_PAT = 1 << 19;
/** Save IA32_EFER, bit 20. */
export const EXIT_SAVE_IA32_EFER = 1 << 20;
/** Load IA32_EFER, bit 21. */
export const EXIT_LOAD_IA32_EFER = 1 << 21;
/** Save VMX-preemption timer value, bit 22. */
export const EXIT_SAVE_PREEMPTION_TIMER = 1 << 22;

// ---- VM-entry controls (VM_ENTRY_CONTROLS) ----
/** Load debug controls (DR7 and IA32_DEBUGCTL from the guest-state area), bit 2. */
export const ENTRY_LOAD_DEBUG_CONTROLS = 1 << 2;
/** IA-32e mode guest, bit 9. */
export const ENTRY_IA32E_MODE = 1 << 9;
/** Load IA32_PAT (from GUEST_IA32_PAT), bit 14. */
export const ENTRY_LOAD_IA32_PAT = 1 << 14;
/** Load IA32_EFER, bit 15. */
export const ENTRY_LOAD_IA32_EFER = 1 << 15;

/** Allowed settings of one control field: bits that must be 1, and bits that may be 1. */
export interface ControlCapability {
  readonly name: string;
  readonly mustBe1: number;
  readonly mayBe1: number;
}

/**
 * The "true" capability settings (IA32_VMX_TRUE_*_CTLS, SDM A.3.1): the default-1 bits that
 * stay required (pin 1, 2, 4; primary 1, 4-6, 8, 13, 14, 26; exit 0-8, 10, 11, 13, 14, 16, 17;
 * entry 0-8, 12), and the controls implemented here as the ones that may be 1.
 */
export const PIN_CAPS: ControlCapability = {
  name: "pin-based VM-execution controls",
  mustBe1: 0x0000_0016,
  mayBe1: 0x0000_0016 | PIN_EXTINT_EXITING | PIN_NMI_EXITING | PIN_VIRTUAL_NMIS | PIN_PREEMPTION_TIMER,
};
export const PROC_CAPS: ControlCapability = {
  name: "primary processor-based VM-execution controls",
  mustBe1: 0x0400_6172,
  mayBe1:
    (0x0400_6172 |
      CPU_INTR_WINDOW_EXITING |
      CPU_USE_TSC_OFFSETTING |
      CPU_HLT_EXITING |
      CPU_INVLPG_EXITING |
      CPU_MWAIT_EXITING |
      CPU_RDPMC_EXITING |
      CPU_RDTSC_EXITING |
      CPU_CR3_LOAD_EXITING |
      CPU_CR3_STORE_EXITING |
      CPU_CR8_LOAD_EXITING |
      CPU_CR8_STORE_EXITING |
      CPU_MOV_DR_EXITING |
      CPU_NMI_WINDOW_EXITING |
      CPU_UNCOND_IO_EXITING |
      CPU_USE_IO_BITMAPS |
      CPU_MONITOR_TRAP_FLAG |
      CPU_USE_MSR_BITMAPS |
      CPU_MONITOR_EXITING |
      CPU_PAUSE_EXITING |
      CPU_ACTIVATE_SECONDARY) >>> 0,
};
export const PROC2_CAPS: ControlCapability = {
  name: "secondary processor-based VM-execution controls",
  mustBe1: 0,
  mayBe1: SECONDARY_ENABLE_EPT | SECONDARY_DESC_TABLE_EXITING | SECONDARY_ENABLE_RDTSCP | SECONDARY_ENABLE_VPID | SECONDARY_WBINVD_EXITING | SECONDARY_UNRESTRICTED_GUEST | SECONDARY_PAUSE_LOOP_EXITING,
};
export const EXIT_CAPS: ControlCapability = {
  name: "VM-exit controls",
  mustBe1: 0x0003_6dfb,
  mayBe1: (0x0003_6dfb | EXIT_SAVE_DEBUG_CONTROLS | EXIT_HOST_ADDR_SPACE_SIZE | EXIT_ACK_INTR_ON_EXIT | EXIT_SAVE_IA32_PAT | EXIT_LOAD_IA32_PAT | EXIT_SAVE_IA32_EFER | EXIT_LOAD_IA32_EFER | EXIT_SAVE_PREEMPTION_TIMER) >>> 0,
};
export const ENTRY_CAPS: ControlCapability = {
  name: "VM-entry controls",
  mustBe1: 0x0000_11fb,
  mayBe1: 0x0000_11fb | ENTRY_LOAD_DEBUG_CONTROLS | ENTRY_IA32E_MODE | ENTRY_LOAD_IA32_PAT | ENTRY_LOAD_IA32_EFER,
};

/**
 * Xen's way (vmx_init_vmcs_config / adjust_vmx_controls): the requested bits limited to what the
 * processor allows, plus the bits it requires. Returns the value, or the requested bits that the
 * processor does not allow, by number.
 */
export function adjustControls(caps: ControlCapability, requested: number): { value: number; refused: number[] } {
  const refused: number[] = [];
  for (let b = 0; b < 32; b++) if ((requested & (1 << b)) !== 0 && (caps.mayBe1 & (1 << b)) === 0) refused.push(b);
  return { value: ((requested & caps.mayBe1) | caps.mustBe1) >>> 0, refused };
}

/** The bits of `value` that violate `caps`: required bits clear, reserved bits set. */
export function controlViolations(caps: ControlCapability, value: number): { missing: number; reserved: number } {
  return { missing: (caps.mustBe1 & ~value) >>> 0, reserved: (value & ~caps.mayBe1) >>> 0 };
}

/** INVVPID types, the operand in its register (SDM Vol. 3C 30.3, "INVVPID"). */
export const INVVPID_INDIVIDUAL_ADDRESS = 0;
export const INVVPID_SINGLE_CONTEXT = 1;
export const INVVPID_ALL_CONTEXT = 2;
export const INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS = 3;
