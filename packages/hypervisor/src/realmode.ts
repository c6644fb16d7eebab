/**
 * Real mode on a shadow-paging domain (the role of Xen's arch/x86/hvm/vmx/realmode.c,
 * vmx_realmode). VT-x runs real-address mode (CR0.PE = 0) in VMX non-root operation only as an
 * unrestricted guest, and "unrestricted guest" requires "enable EPT" (SDM Vol. 3C 27.2.1.1); Xen
 * turns both off for a shadow domain (construct_vmcs), and while such a vCPU has CR0.PE = 0 it
 * does not enter the guest: it emulates it (vmx_emulate), instruction by instruction with
 * x86_emulate over the guest state the VMCS holds, whose hooks are the handlers the VM exits would
 * reach (hvmemul_cpuid -> guest_cpuid, hvmemul_read_io -> the I/O handlers, hvmemul_write_cr ->
 * hvm_set_cr0, hvmemul_read_msr -> hvm_msr_read_intercept), with memory read and written by
 * guest-physical address through the p2m (hvm_copy). Once the guest has set CR0.PE the vCPU enters
 * VMX non-root operation again, as any shadow vCPU in protected mode with paging off: on the
 * shadow of the identity table (hypervisor.ts, enterUnpagedShadow).
 *
 * vtlab's emulator is cpu-vmx's own interpreter, which runs real mode (SDM Vol. 3A ch. 20): the
 * hypervisor loads the guest state from the VMCS into the vCPU as VM entry would (SDM 27.3.2) and
 * runs it under the VMCS's controls (`Cpu.enterNonRoot`) without VM entry, whose checks (CR0.PE =
 * 0 needs unrestricted guest) apply to the processor, not to an emulator. So every instruction
 * x86_emulate would hand to a hook ends in the VmExit and the handler (exits.ts) an unrestricted
 * guest's would, and the exit saves the state back into the VMCS, where the handlers find it.
 * Guest-physical addresses go through the domain's p2m (`P2mPhysical`: RAM only).
 *
 * Modelled more simply than Xen:
 * - Xen runs a real-mode vCPU in virtual-8086 mode where its segments allow it (with the
 *   toolstack's VM86 TSS, HVM_PARAM_VM86_TSS_SIZED) and emulates only the rest; vtlab always
 *   emulates.
 * - Interrupts are delivered into emulated real mode at the next emulation stretch, as at a VM
 *   entry (through the IVT: Xen's realmode_deliver_exception), not every 16 instructions.
 * - An access to guest-physical memory that is not RAM (MMIO, unassigned space) from emulated
 *   real mode crashes the domain with the address; Xen's emulator would reach its MMIO handlers.
 * - Xen keeps emulating after CR0.PE = 1 while CS or SS has a nonzero RPL (its
 *   vmx_realmode loop); here a MOV CR0 that sets PE with either RPL nonzero crashes the domain.
 * - The exits the emulated instructions take count in the domain's exit statistics under their
 *   reasons, as those of a VM would; the instructions emulated are counted apart
 *   (`ExitStats.realModeInstructions`).
 */
import {
  CR0_PE,
  CR4_PAE,
  EFER_LMA,
  EptAccess,
  RFLAGS_FIXED,
  injectEntryEvent,
  loadGuestSegments,
  VmcsField as F,
  type EptMisconfig,
  type EptViolation,
  type SecondLevelTranslator,
} from "@vtlab/cpu-vmx";
import { ShadowPaging } from "@vtlab/mmu-shadow";
import type { Domain, Vcpu } from "./hypervisor.js";

/**
 * The emulator's physical memory: guest-physical to machine through the domain's p2m (RAM, and
 * grant mappings with the access they allow), nothing else. Anything else is answered as an EPT
 * violation would be, so the interpreter stops at that access with an exit the hypervisor turns
 * into a crash (`realModeNotRam`).
 */
export class P2mPhysical implements SecondLevelTranslator {
  readonly lastReferences = 0;
  constructor(private readonly domain: Domain) {}
  translate(gpa: number, access: number): number | EptViolation | EptMisconfig {
    const hpa = this.domain.ramHpa(gpa, (access & EptAccess.Write) !== 0);
    return hpa ?? { kind: "ept-violation", gpa, qualification: access & 7 };
  }
}

/**
 * One stretch of emulation, where a VM entry would be (hypervisor.ts runSlice): the guest state
 * from the VMCS into the vCPU (SDM 27.3.2's loads: control registers, EFER as the guest sees it,
 * segments, descriptor tables, RSP, RIP, RFLAGS, activity and interruptibility), the VMCS's
 * controls in force (exits, the preemption timer that ends the slice), guest-physical addresses
 * through the p2m, and the event the entry would inject (VM_ENTRY_INTR_INFO_FIELD) delivered
 * through the IVT.
 */
export function realModeEnter(v: Vcpu): void {
  const vmcs = v.vmcs;
  const cpu = v.cpu;
  cpu.cr0 = vmcs.read32(F.GUEST_CR0);
  cpu.cr4 = vmcs.read32(F.GUEST_CR4);
  cpu.cr3 = vmcs.readNatural(F.GUEST_CR3);
  cpu.efer = v.guestEfer & ~EFER_LMA; // paging is off: never IA-32e mode
  loadGuestSegments(cpu, vmcs); // as VM entry loads them (cpu-vmx)
  cpu.gdtrBase = vmcs.readNatural(F.GUEST_GDTR_BASE);
  cpu.gdtrLimit = vmcs.read32(F.GUEST_GDTR_LIMIT);
  cpu.idtrBase = vmcs.readNatural(F.GUEST_IDTR_BASE);
  cpu.idtrLimit = vmcs.read32(F.GUEST_IDTR_LIMIT);
  cpu.cpl = 0; // real-address mode runs at privilege level 0
  cpu.setRegFromNumber(4, vmcs.readNatural(F.GUEST_RSP));
  const rip = vmcs.readNatural(F.GUEST_RIP);
  cpu.rip = rip;
  cpu.flagsOther = RFLAGS_FIXED;
  cpu.setFlags(vmcs.read32(F.GUEST_RFLAGS), 0x003f_7fd7);
  cpu.updateMode();
  const interruptibility = vmcs.read32(F.GUEST_INTERRUPTIBILITY_INFO);
  cpu.halted = vmcs.read32(F.GUEST_ACTIVITY_STATE) === 1; // HLT
  cpu.interruptShadow = (interruptibility & 3) !== 0;
  if ((interruptibility & 2) !== 0) cpu.movSsBlocking = true;
  cpu.nmiBlocked = (interruptibility & 8) !== 0;
  const proc = vmcs.read32(F.CPU_BASED_VM_EXEC_CONTROL);
  cpu.enterNonRoot(vmcs, vmcs.read32(F.PIN_BASED_VM_EXEC_CONTROL), proc, vmcs.read32(F.SECONDARY_VM_EXEC_CONTROL));
  // Physical addresses through the p2m (paging is off: linear = guest-physical); the exit that
  // ends the stretch turns this off again.
  cpu.secondLevel = v.realModePhysical;
  cpu.eptActive = true;
  injectEntryEvent(cpu, vmcs, rip); // VM entry's injection (SDM 27.6), through the IVT here
}

/**
 * The MOV CR0 exit of an emulated vCPU that sets CR0.PE (exits.ts crAccess, before it writes the
 * new CR0): emulation ends, and from the next entry the vCPU runs in VMX non-root operation in
 * protected mode with paging off, as a shadow vCPU does: on the shadow of the identity table, in
 * IA-32e mode underneath with CR4.PAE (the guest's CR4 and EFER views stay in the read shadow and
 * `guestEfer`). Returns a crash reason where that is not possible.
 */
export function leaveRealMode(d: Domain, v: Vcpu, cr0: number): string | undefined {
  const vmcs = v.vmcs;
  if ((cr0 & CR0_PE) === 0 || !v.realModeEmulated) return undefined;
  const csRpl = vmcs.read32(F.GUEST_CS_SELECTOR) & 3;
  const ssRpl = vmcs.read32(F.GUEST_SS_SELECTOR) & 3;
  if (csRpl !== 0 || ssRpl !== 0) {
    return `CR0.PE set from emulated real mode with CS selector 0x${vmcs.read32(F.GUEST_CS_SELECTOR).toString(16)} and SS selector 0x${vmcs.read32(F.GUEST_SS_SELECTOR).toString(16)}: leaving real-mode emulation with a nonzero RPL is not modelled (Xen emulates on until both are 0)`;
  }
  if (!(d.paging instanceof ShadowPaging) || d.identityPageTable === undefined) return "real-mode emulation on a domain without shadow paging (vtlab bug)";
  // The shadow state is unpaged already (the start-up IPI put it there); keep whatever CR3 the guest loaded.
  const err = d.paging.enterUnpaged(v.cpu, vmcs, d.identityPageTable);
  if (err !== undefined) return `leaving real-mode emulation: ${err}`;
  vmcs.setNatural(F.GUEST_CR4, (vmcs.read32(F.GUEST_CR4) | CR4_PAE) >>> 0);
  v.realModeEmulated = false;
  return undefined;
}

/** An emulated access to guest-physical memory that is not RAM: the crash reason. */
export function realModeNotRam(v: Vcpu, gpa: number | undefined): string {
  const cs = v.vmcs.read32(F.GUEST_CS_SELECTOR);
  const ip = v.vmcs.readNatural(F.GUEST_RIP);
  return `vCPU ${v.id} in emulated real mode (shadow paging) at ${cs.toString(16).padStart(4, "0")}:${ip.toString(16).padStart(4, "0")} accessed guest-physical 0x${(gpa ?? 0).toString(16)}, which is not RAM: MMIO from emulated real mode is not modelled`;
}
