/**
 * The seams between the CPU and the memory virtualizers (DESIGN.md "The seams between
 * packages"): what the CPU calls to translate a guest-physical reference when EPT is on
 * (`SecondLevelTranslator`, implemented by @vtlab/mmu-ept), and what the hypervisor calls on
 * memory-related VM exits (`MemoryVirtualizer`, implemented by @vtlab/mmu-shadow and
 * @vtlab/mmu-ept, like Xen's `paging_mode`). VM exits are values (`VmExit`), and so is every
 * outcome of handling one.
 */
import type { PageFault } from "@vtlab/arch";
import type { Cpu } from "../cpu.js";
import type { Vmcs } from "./vmcs.js";

/** Access kinds for a second-level translation, in EPT-violation qualification bit order (SDM 28.2.1, Table 28-7). */
export const EptAccess = {
  /** Bit 0: a data read. */
  Read: 1,
  /** Bit 1: a data write. */
  Write: 2,
  /** Bit 2: an instruction fetch. */
  Fetch: 4,
} as const;

/** Whether a guest-physical reference is a guest paging-structure access or the final access. */
export const GuestReference = {
  /** An access to a guest paging-structure entry during the guest's page walk. */
  PagingStructure: 0,
  /** The access to the final guest-physical address of the translation. */
  Final: 1,
} as const;
export type GuestReference = (typeof GuestReference)[keyof typeof GuestReference];

/** An EPT violation (exit reason 48): the GPA, and the exit qualification as the SDM defines it. */
export interface EptViolation {
  readonly kind: "ept-violation";
  readonly gpa: number;
  /**
   * SDM Table 28-7 bits the translator knows: 2:0 the access, 5:3 what the EPT entry permitted
   * (and 6 execute-for-user when mode-based execution control is on). The CPU adds bit 7
   * (guest-linear address valid) and bit 8 (the access was to the final translation, not a walk
   * step), which only it knows.
   */
  readonly qualification: number;
}

/** Exit-qualification bit 7 for EPT violations: GUEST_LINEAR_ADDRESS is valid. */
export const EPT_QUAL_LINEAR_VALID = 1 << 7;
/** Exit-qualification bit 8: the access was the final translation (1), not a paging-structure entry (0). */
export const EPT_QUAL_FINAL = 1 << 8;

/** An EPT misconfiguration (exit reason 49): the GPA whose EPT entry is misconfigured. */
export interface EptMisconfig {
  readonly kind: "ept-misconfig";
  readonly gpa: number;
}

/**
 * What the CPU calls, when EPT is on, for every guest-physical reference: each guest
 * paging-structure entry of a walk and the final address. Success returns the host-physical
 * address as a number (no allocation); failure returns the violation or misconfiguration.
 */
export interface SecondLevelTranslator {
  translate(gpa: number, access: number, reference: GuestReference): number | EptViolation | EptMisconfig;
  /** EPT paging-structure entries read by the last `translate` (for reference accounting). */
  readonly lastReferences: number;
}

/** IDT-vectoring information: the event whose delivery the exit interrupted (SDM 28.2.4). */
export interface EventInfo {
  readonly vector: number;
  /** Interruption type (SDM Table 25-17): 0 external, 2 NMI, 3 hardware exception, 4 software interrupt, 6 software exception. */
  readonly type: number;
  readonly errorCode?: number;
}

/** A VM exit with the information the SDM gives for its reason (SDM 28.2). */
export interface VmExit {
  /** Basic exit reason (ExitReason), with bit 31 set for a VM-entry failure. */
  readonly reason: number;
  readonly qualification: number;
  readonly instructionLength: number;
  readonly instructionInfo?: number;
  readonly guestLinear?: number;
  readonly guestPhysical?: number;
  /** For exception and interrupt exits: the event that caused the exit. */
  readonly interruption?: EventInfo;
  readonly idtVectoring?: EventInfo;
}

/** What handling an exit decided. */
export type ExitOutcome =
  /** Handled: resume the guest (RIP advanced where the exit was an instruction). */
  | { readonly kind: "resume" }
  /**
   * Inject an event at the next VM entry: a reflected true guest #PF (with its error code and
   * CR2), or an event whose delivery the exit interrupted (IDT-vectoring information), with its
   * interruption type (SDM Table 25-17; default 3, hardware exception) and, for software
   * interrupts and exceptions, the instruction length.
   */
  | { readonly kind: "inject"; readonly vector: number; readonly errorCode?: number; readonly cr2?: number; readonly type?: number; readonly instructionLength?: number }
  /** A guest-physical access the device model must emulate (MMIO). */
  | { readonly kind: "mmio"; readonly gpa: number; readonly write: boolean }
  /** The guest did something its domain cannot survive: crash the domain, not the host. */
  | { readonly kind: "crash"; readonly reason: string };

/**
 * The hypervisor's memory-virtualization strategy for a domain (Xen's paging_mode: page_fault,
 * invlpg, gva_to_gfn, update_cr3): shadow paging or EPT.
 */
export interface MemoryVirtualizer {
  readonly mode: "shadow" | "ept";
  /** Configure a vCPU and its VMCS for this mode (exiting controls, EPTP or shadow root). */
  setupVcpu(cpu: Cpu, vmcs: Vmcs): void;
  /** CR3 access, INVLPG, #PF exception exits, EPT violations and misconfigurations. */
  handleExit(cpu: Cpu, vmcs: Vmcs, exit: VmExit): ExitOutcome;
  /** The guest-physical address a guest-virtual address maps to, or the guest #PF. */
  gvaToGpa(cpu: Cpu, gva: number, access: number): number | PageFault;
  /** Start and stop tracking the frames the guest writes (for live migration). */
  enableLogDirty(): void;
  disableLogDirty(): void;
}
