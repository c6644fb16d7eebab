/**
 * The hypervisor: one host (machine memory, a frame allocator, a simulated clock), domains each
 * with their own p2m, memory virtualizer, vCPUs and device model, a weighted time-slice
 * scheduler, and the VM-exit dispatch that ties the cpu-vmx vCPU to all of it.
 *
 * A domain's guest does anything it likes inside its own memory: a bad exit (triple fault, an
 * MMIO access to nothing, leaving long mode) crashes that domain only; the host and the other
 * domains keep running. Modelled more simply than Xen: no dom0 (the device model runs in the
 * hypervisor, as QEMU would in a stub domain), one host CPU time-sliced between vCPUs, and the
 * credit scheduler reduced to weighted round-robin slices (no credit accounting or BOOST).
 */
import { DEFAULT_COST_MODEL, MachineMemory, Vector, PAGE_SIZE, PciBus, PciHostBridge, PortIoBus, SimClock, gfn, modelledCycles, type CostModel, type Mfn } from "@vtlab/arch";
import {
  CPU_ACTIVATE_SECONDARY,
  CPU_HLT_EXITING,
  CR0_ET,
  CR0_NE,
  CR0_PE,
  CR0_WP,
  CR4_PAE,
  CR4_VMXE,
  ENTRY_IA32E_MODE,
  SECONDARY_PAUSE_LOOP_EXITING,
  SECONDARY_UNRESTRICTED_GUEST,
  EFER_LMA,
  EFER_LME,
  RFLAGS_FIXED,
  RFLAGS_IF,
  CPU_INTR_WINDOW_EXITING,
  EXIT_ACK_INTR_ON_EXIT,
  PIN_EXTINT_EXITING,
  PIN_PREEMPTION_TIMER,
  ExitReason,
  CPU_UNCOND_IO_EXITING,
  CPU_USE_MSR_BITMAPS,
  Cpu,
  ENTRY_LOAD_DEBUG_CONTROLS,
  ENTRY_LOAD_IA32_EFER,
  ENTRY_LOAD_IA32_PAT,
  EXIT_LOAD_IA32_PAT,
  EXIT_SAVE_DEBUG_CONTROLS,
  EXIT_SAVE_IA32_EFER,
  EXIT_SAVE_IA32_PAT,
  INTR_INFO_ERROR_CODE_VALID,
  INTR_INFO_VALID,
  IntrType,
  VmcsField as F,
  exitReasonName,
  Vmcs,
  setupFlat64Guest,
  vmEntry,
  type ExitOutcome,
  type VmExit,
} from "@vtlab/cpu-vmx";
import { NestedPaging, type NestedPagingStats } from "@vtlab/mmu-ept";
import { P2mType, RangeP2m, p2mIsGrant, type FrameAllocator } from "@vtlab/p2m";
import { MIN_SHADOW_POOL_PAGES, ShadowPaging, type ShadowStats } from "@vtlab/mmu-shadow";
import { SHUTDOWN_crash, SHUTDOWN_poweroff, XEN_ESRCH } from "@vtlab/xen-public";
import { AtaDisk, ATA_PRIMARY_CONTROL_PORT, ATA_PRIMARY_PORT, type BlockBackend } from "./devices/ata.js";
import { COM1_PORT, Uart16550, type Uart16550Stats } from "./devices/uart16550.js";
import { CONSOLE_CAPTURE_DEFAULT, ConsoleCapture, type ConsoleCaptureStats } from "./console-capture.js";
import { DEBUG_EXIT_PORT, DEBUGCON_PORT, DebugConsole, DebugExit } from "./devices/debug-port.js";
import { BOOT_CS32, BOOT_CS64, BOOT_DS, BOOT_TSS, buildPvh, type BootState } from "./builder/pvh.js";
import { HostFrames, type Extent } from "./host/frames.js";
import { GUEST_MEMORY_MAX_MIB, GUEST_MEMORY_MIN_MIB, IDENT_PT_FRAMES, guestLayout, type GuestLayout } from "./builder/layout.js";
import { APIC_BASE_DEFAULT, ApicDeliveryMode, ApicShorthand, LocalApic, X2APIC_BROADCAST, XAPIC_MMIO_SIZE } from "./devices/lapic.js";
import { DomainMmio } from "./mmio.js";
import { IOAPIC_BASE_DEFAULT, IOAPIC_MMIO_SIZE, IoApic, IoApicDeliveryMode, IoApicSource } from "./devices/ioapic.js";
import { PlatformWiring, platformDevice } from "./devices/platform.js";
import type { XenPlatformDevice } from "@vtlab/xen-platform-pci";
import { CR0_HOST_OWNED, ExitStats, handleExit, type ExitContext } from "./exits.js";
import { vmEntryFailure } from "./outcomes.js";
import { P2mPhysical, realModeEnter } from "./realmode.js";
import type { VcpuBringUp } from "./xen/vcpu.js";
import { allocMagicPagesHvm, populateFixedFrames, type MagicPages } from "./builder/special-pages.js";
import { XenDomain, type XenStatsSnapshot } from "./xen/domain.js";
import { ControlDomain } from "./xen/dom0.js";
import { SHUTDOWN_NAMES, VcpuRunstate, switchIn, switchOut } from "./xen/sched.js";
import { DEFAULT_BOOT_EPOCH, DomainTime, VcpuTimeArea, checkBootEpoch, publishVcpuTime, pvclockScale, syncGuestTsc, type BootEpoch, type TimeScale } from "./xen/time.js";
import { DomainTimers, VcpuTimers, evtchnCheckPollers, fireTimers, nextTimerDeadlineNs } from "./xen/timer.js";
import { DomainPages, frameRefs, releaseDomainHolds } from "./xen/p2m.js";
import { PciPassthrough, parsePciBdf, type AssignableListing } from "./passthrough/pci.js";
import { HostIommu, type DomainIommuStats, type IommuOption } from "./passthrough/vtd.js";
import type { AssignableDevice } from "./passthrough/device.js";
import { NativeVcpu, nativeAfterExit, nativeBootImage, runNativeSlice, type NativeKernel, type NativeSliceHost } from "./native.js";

export type { ExitContext };

const MiB = 1024 * 1024;
/** xg_dom_x86.c SUPERPAGE_1GB_NR_PFNS: the builder takes RAM in 1 GiB-aligned pieces where it can. */
const SUPERPAGE_1GB_NR_PFNS = 1 << 18;
/**
 * The host vector that only forces a running vCPU out of non-root operation so that the
 * hypervisor can inject a guest interrupt (the role of Xen's EVENT_CHECK_VECTOR IPI).
 */
export const HOST_KICK_VECTOR = 0xfc;

/** ISA IRQs are GSIs 0-15 (IRQ 0 aside, which is GSI 2): COM1's IRQ 4 and the primary ATA channel's IRQ 14. */
const UART_GSI = 4;
const ATA_GSI = 14;
/** An IO-APIC physical destination of 0xFF addresses every local APIC (xAPIC broadcast). */
const IOAPIC_PHYSICAL_BROADCAST = 0xff;

/**
 * The shadow pool libxl gives a domain by default (libxl_get_required_shadow_memory): 256 pages
 * (1 MiB) per vCPU, plus 2 pages (8 KiB) per MiB of RAM (one for the p2m, one for shadows), in KiB.
 * Modelled more simply: the p2m is not kept in the pool here, so all of it holds shadows.
 */
export function requiredShadowMemoryKiB(memoryMiB: number, vcpus: number): number {
  return 4 * (256 * vcpus + 2 * memoryMiB);
}

export type DomainState = "running" | "paused" | "shutdown" | "crashed" | "destroyed";

export interface DomainOptions {
  readonly name: string;
  readonly memoryMiB: number;
  readonly vcpus?: number;
  /** `true` (default): EPT, hap=1 (@vtlab/mmu-ept). `false`: shadow paging, hap=0 (@vtlab/mmu-shadow). */
  readonly hap?: boolean;
  /**
   * The shadow pool of a shadow domain in KiB (xl.cfg `shadow_memory` x 1024; libxl's
   * shadow_memkb): the most memory its shadow page tables hold at once; when full, shadows are
   * recycled. Default `requiredShadowMemoryKiB(memoryMiB, vcpus)`. Unused with EPT.
   */
  readonly shadowMemoryKiB?: number;
  /** The kernel image (ELF64, PVH entry note). Omitted for a native kernel (`native`), which boots from nativeBootImage(). */
  readonly kernel?: Uint8Array;
  /** A native (TypeScript) kernel for vCPU 0, run over GuestOps (native.ts). */
  readonly native?: NativeKernel;
  readonly cmdline?: string;
  /** xl.cfg `ramdisk`: the initial ramdisk, handed to a PVH kernel as module 0 of hvm_start_info (builder/modules.ts). */
  readonly ramdisk?: Uint8Array;
  /**
   * xl.cfg `acpi`: ACPI tables for a PVH kernel (RSDP in hvm_start_info, MADT with the vCPUs'
   * local APICs; builder/acpi.ts), as libxl builds them. Default true, as libxl's; ignored for
   * the Multiboot and direct 64-bit boots.
   */
  readonly acpi?: boolean;
  /** The primary-master ATA disk. */
  readonly disk?: BlockBackend;
  /** Console bytes (UART and debug console), as text chunks. */
  readonly onConsole?: (text: string) => void;
  /**
   * Console bytes kept in `Domain.console` (the last ones; console-capture.ts): default
   * CONSOLE_CAPTURE_DEFAULT (1 MiB); 0 keeps nothing (xl.cfg `serial = "none"`), only counts.
   * What is not kept is counted in `stats().console.dropped`.
   */
  readonly consoleCapture?: number;
  /** Credit-scheduler weight (default 256, Xen's default). */
  readonly weight?: number;
  /**
   * Set up what xl's toolstack gives every HVM guest besides its RAM: the special pages with
   * HVM_PARAM_STORE_PFN/CONSOLE_PFN and unbound store and console ports offered to dom0
   * (builder/special-pages.ts). The Toolstack always asks for them; a bare createDomain (Xen's
   * domctl plus the builder) does not by default.
   */
  readonly magicPages?: boolean;
  /** The Xen platform PCI device at 00:03.0 (default true; xl.cfg `xen_platform_pci = 0` removes it). */
  readonly xenPlatformPci?: boolean;
  /** Lines the guest's PV drivers write to the platform device's log port (0x12). */
  readonly onPlatformLog?: (line: string) => void;
  /**
   * Host PCI devices to assign (xl.cfg `pci`, passthrough/pci.ts): BDFs "BB:DD.F" or
   * "DDDD:BB:DD.F" of devices registered on the Hypervisor (`pciDevices`, `addPciDevice`).
   */
  readonly pci?: readonly string[];
}

export interface DomainStats {
  instructions: number;
  vmExits: number;
  exitsByReason: Record<string, number>;
  ioExits: number;
  /** MMIO exits (EPT violations or shadow #PFs emulated as device accesses), and the device accesses they made. */
  mmioExits: number;
  mmioAccesses: number;
  /** Loads from unassigned guest-physical space below 4 GiB (read all ones) and stores there (dropped). */
  unassignedReads: number;
  unassignedWrites: number;
  /** Emulated disks removed by the platform device's unplug protocol. */
  disksUnplugged: number;
  pageWalks: number;
  walkReferences: number;
  eptReferences: number;
  tlbHits: number;
  tlbMisses: number;
  /** Modelled core cycles: instructions, walk references and exits priced by the cost model. */
  modelledCycles: number;
  /** The shadow-paging counters (hap=0): faults by kind, emulated page-table writes, resyncs, CR3 loads... */
  shadow?: ShadowStats;
  /** The EPT counters (hap=1): violations, misconfigurations, INVEPTs. */
  ept?: NestedPagingStats;
  /** The host IOMMU's view of this domain (passthrough/vtd.ts): present when it has had an assigned device. */
  iommu?: DomainIommuStats;
  /** The Xen interface: hypercalls by name (unknown ones by number), events, upcalls, grant operations. */
  xen: XenStatsSnapshot;
  /** Console output: bytes written, and bytes not kept because of the capture bound (console-capture.ts). */
  console: ConsoleCaptureStats;
  /** COM1: bytes transmitted, received bytes lost to overruns (LSR.OE), host input dropped. */
  uart: Uart16550Stats;
}

/** Xen's ple_gap and ple_window (xen/arch/x86/hvm/vmx/vmcs.c defaults): PAUSE-loop exiting's PLE_GAP and PLE_WINDOW. */
const PLE_GAP = 128;
const PLE_WINDOW = 4096;

export class DomainError extends Error {
  /** The message without the `[source: ]domain NAME: ` prefix ("memory: ...", "kernel: e_phoff: ..."). */
  readonly detail: string;
  constructor(
    readonly domain: string,
    message: string,
    /** Where the domain's description came from (a config file), when the caller knows: named first. */
    readonly source?: string,
  ) {
    super(`${source === undefined ? "" : `${source}: `}domain ${domain}: ${message}`);
    this.name = "DomainError";
    this.detail = message;
  }
}

/**
 * The PVH entry state (xen/include/public/arch-x86/hvm/start_info.h) on an EPT domain, with the
 * "unrestricted guest" control (SDM 25.6.2): flat 32-bit protected mode with paging off (CR0 = PE
 * | ET plus the VMX-fixed NE; CR4 = 0 apart from the host-owned VMXE; EFER = 0), CS a 32-bit
 * execute/read segment, TR a busy 32-bit TSS. Guest-physical = linear until the guest turns
 * paging on itself; the CR0 write that does so exits (PG is host-owned) and `exits.ts` enters
 * IA-32e mode the way Xen's hvm_set_cr0 does.
 */
function enterPagingOff(vmcs: Vmcs): void {
  vmcs.setField(F.SECONDARY_VM_EXEC_CONTROL, (vmcs.read32(F.SECONDARY_VM_EXEC_CONTROL) | SECONDARY_UNRESTRICTED_GUEST) >>> 0);
  vmcs.setField(F.VM_ENTRY_CONTROLS, (vmcs.read32(F.VM_ENTRY_CONTROLS) & ~ENTRY_IA32E_MODE) >>> 0);
  vmcs.setNatural(F.GUEST_CR0, (CR0_PE | CR0_ET | CR0_NE) >>> 0);
  vmcs.setNatural(F.CR0_READ_SHADOW, CR0_PE); // the guest reads PE | ET: NE is host-owned and hidden
  vmcs.setNatural(F.GUEST_CR4, CR4_VMXE);
  vmcs.setNatural(F.CR4_READ_SHADOW, 0);
  vmcs.setNatural(F.GUEST_CR3, 0);
  vmcs.setField(F.GUEST_IA32_EFER, 0);
  vmcs.setField(F.GUEST_TR_AR_BYTES, 0x8b); // present, busy 32-bit TSS (type 11)
}

/**
 * A start-up IPI's AP state on an EPT domain (Xen's hvm_vcpu_reset_state(v, vector << 8, 0), SDM
 * Vol. 3A 9.4.4 and Table 10-1): real-address mode as an unrestricted guest, CS selector =
 * vector << 8 with base vector << 12 and limit FFFFH (a 16-bit execute/read accessed segment), IP
 * 0, the data segments selector 0, base 0, limit FFFFH (read/write accessed data), TR a busy TSS
 * and LDTR an LDT with limit FFFFH, GDTR and IDTR base 0 limit FFFFH, CR0 = ET (plus the VMX-fixed
 * NE, host-owned and hidden), CR3 = CR4 = 0 (VMXE host-owned), EFER 0, RFLAGS 2, the other
 * registers 0, no event pending. The local APIC (and its ID) is kept. The vCPU then runs as
 * VCPUOP_up would make it. Modelled more simply: the x87/SSE state is not reset.
 *
 * On a shadow domain (no unrestricted guest, which needs EPT) the same state is emulated until
 * the guest sets CR0.PE (realmode.ts, Xen's vmx_realmode); its shadow is that of the identity
 * table with guest CR3 0, ready for protected mode with paging off.
 */
function startRealModeAp(v: Vcpu, vector: number): void {
  const vmcs = v.vmcs;
  const seg = (sel: F, base: F, limit: F, ar: F, selector: number, ar8: number) => {
    vmcs.setField(sel, selector);
    vmcs.setNatural(base, selector * 16);
    vmcs.setField(limit, 0xffff);
    vmcs.setField(ar, ar8);
  };
  seg(F.GUEST_CS_SELECTOR, F.GUEST_CS_BASE, F.GUEST_CS_LIMIT, F.GUEST_CS_AR_BYTES, (vector & 0xff) << 8, 0x9b);
  seg(F.GUEST_DS_SELECTOR, F.GUEST_DS_BASE, F.GUEST_DS_LIMIT, F.GUEST_DS_AR_BYTES, 0, 0x93);
  seg(F.GUEST_ES_SELECTOR, F.GUEST_ES_BASE, F.GUEST_ES_LIMIT, F.GUEST_ES_AR_BYTES, 0, 0x93);
  seg(F.GUEST_SS_SELECTOR, F.GUEST_SS_BASE, F.GUEST_SS_LIMIT, F.GUEST_SS_AR_BYTES, 0, 0x93);
  seg(F.GUEST_FS_SELECTOR, F.GUEST_FS_BASE, F.GUEST_FS_LIMIT, F.GUEST_FS_AR_BYTES, 0, 0x93);
  seg(F.GUEST_GS_SELECTOR, F.GUEST_GS_BASE, F.GUEST_GS_LIMIT, F.GUEST_GS_AR_BYTES, 0, 0x93);
  seg(F.GUEST_TR_SELECTOR, F.GUEST_TR_BASE, F.GUEST_TR_LIMIT, F.GUEST_TR_AR_BYTES, 0, 0x8b);
  seg(F.GUEST_LDTR_SELECTOR, F.GUEST_LDTR_BASE, F.GUEST_LDTR_LIMIT, F.GUEST_LDTR_AR_BYTES, 0, 0x82);
  vmcs.setNatural(F.GUEST_GDTR_BASE, 0);
  vmcs.setField(F.GUEST_GDTR_LIMIT, 0xffff);
  vmcs.setNatural(F.GUEST_IDTR_BASE, 0);
  vmcs.setField(F.GUEST_IDTR_LIMIT, 0xffff);
  const d = v.domain;
  if (d.paging instanceof ShadowPaging) {
    const err = d.paging.enterUnpaged(v.cpu, vmcs, d.identityPageTable!, 0);
    if (err !== undefined) throw new Error(`vtlab bug: ${err}`);
    v.realModeEmulated = true;
    v.guestEfer = 0;
  } else {
    vmcs.setField(F.SECONDARY_VM_EXEC_CONTROL, (vmcs.read32(F.SECONDARY_VM_EXEC_CONTROL) | SECONDARY_UNRESTRICTED_GUEST) >>> 0);
    vmcs.setNatural(F.GUEST_CR3, 0);
  }
  vmcs.setField(F.VM_ENTRY_CONTROLS, (vmcs.read32(F.VM_ENTRY_CONTROLS) & ~ENTRY_IA32E_MODE) >>> 0);
  vmcs.setNatural(F.GUEST_CR0, (CR0_ET | CR0_NE) >>> 0);
  vmcs.setNatural(F.CR0_READ_SHADOW, 0); // PE, PG, NE, NW, CD (and on shadow WP) as the guest sees them: all 0
  vmcs.setNatural(F.GUEST_CR4, CR4_VMXE);
  vmcs.setNatural(F.CR4_READ_SHADOW, 0);
  vmcs.setField(F.GUEST_IA32_EFER, 0);
  vmcs.setNatural(F.GUEST_RIP, 0);
  vmcs.setNatural(F.GUEST_RSP, 0);
  vmcs.setField(F.GUEST_RFLAGS, RFLAGS_FIXED);
  vmcs.setField(F.GUEST_INTERRUPTIBILITY_INFO, 0);
  vmcs.setField(F.GUEST_ACTIVITY_STATE, 0);
  vmcs.setField(F.VM_ENTRY_INTR_INFO_FIELD, 0);
  v.cpu.lo.fill(0);
  v.cpu.hi.fill(0);
  v.cpu.cr2 = 0;
  v.bringUp.initialised = true;
  v.bringUp.up = true;
  v.down = false;
  v.blocked = false;
}

/**
 * The same PVH entry state on a shadow domain, which has no unrestricted guest (it needs EPT):
 * the guest sees paging off (CR0 reads PE | ET, plus WP, which mmu-shadow requires; CR3 0; CR4 0;
 * EFER 0) while the vCPU runs its 32-bit code in IA-32e compatibility mode on the shadow of the
 * domain's identity page table, as Xen's shadow code runs a paging-off guest on its unpaged
 * identity table. PG, PAE, LME and LMA are virtualized: CR0.PG and CR4.PAE are host-owned (their
 * writes exit), EFER is trapped, and `exits.ts` switches to the guest's own CR3 when it turns
 * paging on. Modelled more simply: the 32-bit code runs in compatibility mode, so IDT delivery
 * uses the 64-bit gate format (the interpreter has no 32-bit IDT delivery either way).
 */
function enterUnpagedShadow(paging: ShadowPaging, v: Vcpu, identityPageTable: number): void {
  const vmcs = v.vmcs;
  const err = paging.enterUnpaged(v.cpu, vmcs, identityPageTable, 0);
  if (err !== undefined) throw new Error(`vtlab bug: ${err}`);
  vmcs.setNatural(F.CR0_READ_SHADOW, (CR0_PE | CR0_WP) >>> 0);
  vmcs.setNatural(F.CR4_READ_SHADOW, 0);
}

/** Exception classes for double faults (SDM Vol. 3A Table 6-4): contributory, page fault, the rest benign. */
function exceptionClass(vector: number): "benign" | "contributory" | "page-fault" | "double-fault" {
  if (vector === Vector.DE || (vector >= Vector.TS && vector <= Vector.GP)) return "contributory";
  if (vector === Vector.PF) return "page-fault";
  return vector === Vector.DF ? "double-fault" : "benign";
}

/**
 * A second exception raised while delivering a first (SDM Vol. 3A Table 6-5): #DF for
 * contributory-then-contributory and page-fault-then-(contributory or page fault); a triple fault
 * for either of those during #DF delivery; otherwise the second is delivered (the first is handled
 * serially). Returns the vector to deliver or "triple-fault".
 */
export function combineExceptions(first: number, second: number): number | "triple-fault" {
  const a = exceptionClass(first);
  const b = exceptionClass(second);
  const serious = b === "contributory" || b === "page-fault";
  if (a === "double-fault" && serious) return "triple-fault";
  if ((a === "contributory" && b === "contributory") || (a === "page-fault" && serious)) return Vector.DF;
  return second;
}

/** One virtual CPU: the interpreter in VMX non-root operation and its VMCS. */
export class Vcpu {
  readonly cpu: Cpu;
  readonly vmcs = new Vmcs();
  launched = false;
  /** In VMX non-root operation (entered, and not exited since). */
  inGuest = false;
  /**
   * Blocked: in HLT until an interrupt can wake it, in SCHEDOP_block until an event is pending,
   * in SCHEDOP_poll, or waiting for VCPUOP_up. A change moves the runstate (xen/sched.ts).
   */
  get blocked(): boolean {
    return this.isBlocked;
  }
  set blocked(b: boolean) {
    if (b === this.isBlocked) return;
    this.isBlocked = b;
    this.runstate.sync(this);
  }
  private isBlocked = false;
  /** Halted with interrupts disabled (Xen's hvm_vcpu_down), or VCPUOP_down: it does not run until VCPUOP_up. */
  get down(): boolean {
    return this.isDown;
  }
  set down(b: boolean) {
    if (b === this.isDown) return;
    this.isDown = b;
    this.runstate.sync(this);
  }
  private isDown = false;
  /** Xen's per-vCPU timers and poll state (xen/timer.ts). */
  readonly xenTimers = new VcpuTimers();
  /** Xen's vcpu_runstate_info for this vCPU (xen/sched.ts). */
  readonly runstate: VcpuRunstate;
  /** VCPUOP_register_vcpu_time_memory_area: the second copy of this vCPU's PV clock (xen/time.ts). */
  readonly timeArea = new VcpuTimeArea();
  /** The local APIC the hypervisor emulates for this vCPU (x2APIC MSR interface). */
  apic: LocalApic | undefined = undefined;
  /**
   * IA32_EFER as the guest sees it, on shadow domains: the real one keeps LME and LMA (a paging-off
   * guest runs in compatibility mode on the identity table). EPT domains use the VMCS's.
   */
  guestEfer = 0;
  /** PVH bring-up (hypercalls.ts): vCPU 0 starts initialised and up; the others wait for VCPUOP_initialise and VCPUOP_up. */
  readonly bringUp: VcpuBringUp;
  /** Up: brought up (vCPU 0 from the start, others by VCPUOP_up) and not down since (VCPUOP_down, or HLT with interrupts off). */
  get isUp(): boolean {
    return this.bringUp.up && !this.down;
  }
  /** The native kernel this vCPU runs instead of machine code (native.ts), if any. */
  native: NativeVcpu | undefined = undefined;
  /** Guest interrupts injected, and vCPU wake-ups from HLT. */
  interruptsInjected = 0;
  wakeups = 0;
  /**
   * Elements the next string-I/O exit may move (exits.ts): what is left of the slice at
   * CostModel.deviceModelAccess each, at least 1, so a REP INS/OUTS exit ends the slice on time;
   * the guest re-executes the instruction for the rest.
   */
  stringIoLimit = Number.POSITIVE_INFINITY;
  /**
   * In real mode on a shadow-paging domain: the hypervisor emulates the vCPU instead of entering
   * it (Xen's vmx_emulate; realmode.ts), from a start-up IPI to the MOV CR0 that sets PE.
   */
  realModeEmulated = false;
  /** The emulator's guest-physical memory (the p2m, RAM only). */
  readonly realModePhysical: P2mPhysical;
  constructor(
    readonly domain: Domain,
    readonly id: number,
    memory: MachineMemory,
    clock: SimClock,
  ) {
    this.cpu = new Cpu({ memory });
    this.realModePhysical = new P2mPhysical(domain);
    this.bringUp = { initialised: id === 0, up: id === 0 };
    this.runstate = new VcpuRunstate(clock);
  }
}

export class Domain {
  state: DomainState = "running";
  readonly vcpus: Vcpu[] = [];
  readonly ports = new PortIoBus();
  readonly pci: PciBus;
  readonly uart: Uart16550;
  /** The emulated primary-master ATA disk (still here after an unplug, for PV use; off the ports then). */
  readonly disk: AtaDisk | undefined;
  /** The IO-APIC at 0xFEC00000 (devices/ioapic.ts): GSI inputs with `setLevel(gsi, asserted)`. */
  readonly ioapic: IoApic;
  /** The Xen platform PCI device at 00:03.0 (undefined with xen_platform_pci = 0); `setIntx(asserted)` drives its INTx. */
  readonly platform: XenPlatformDevice | undefined;
  /** The platform device's wiring: log lines, unplugs (devices/platform.ts). */
  readonly platformWiring: PlatformWiring;
  readonly p2m = new RangeP2m();
  /** Emulated MMIO: the bus and its p2m ranges (mmio.ts). */
  readonly mmio = new DomainMmio(this.p2m);
  /** The memory virtualizer (Xen's paging_mode): EPT or shadow page tables. */
  readonly paging: NestedPaging | ShadowPaging;
  readonly exitStats = new ExitStats();
  /**
   * The domain's memory (xen/p2m.ts): the machine frames it owns against its maximum
   * reservation. Built from host extents (as many as the host needed); ballooning and XENMAPSPACE_gmfn
   * moves change which frames back which guest frames, so go through the p2m (`ramHpa`).
   */
  readonly pages: DomainPages;
  /** The configured memory, in frames (the builder's memory map; Xen's max_pages). */
  readonly ramFrames: number;
  /** Where the RAM is in guest-physical space: low RAM from 0, the rest from 4 GiB (builder/layout.ts). */
  readonly layout: GuestLayout;
  private readonly ownFrames: Mfn[] = [];
  /**
   * Hypervisor frames held for this domain (EPT or shadow tables, the grant table, shared_info):
   * counted in `framesHeld`, given back at destroy.
   */
  readonly frameAllocator: FrameAllocator;
  private readonly consoleCapture: ConsoleCapture;
  exitCode: number | undefined;
  /** Why the domain shut down without an exit code (power off). */
  shutdownReason: string | undefined;
  /**
   * Xen's d->shutdown_code: the SHUTDOWN_* reason (sched.h) the domain shut down with through
   * SCHEDOP_shutdown or its watchdog, or, before that, the one SCHEDOP_shutdown_code recorded for
   * its next shutdown; undefined for neither (SHUTDOWN_CODE_INVALID). The toolstack reads it: a
   * domain in state "shutdown" with SHUTDOWN_reboot asks to be rebooted.
   */
  shutdownCode: number | undefined = undefined;
  /** The PV clock and wallclock state (xen/time.ts) and the watchdogs (xen/timer.ts). */
  readonly xenTime = new DomainTime();
  readonly xenTimers = new DomainTimers();
  /** IPIs not acted on: NMI, SMI and ExtINT (not modelled), an INIT to a running vCPU, a SIPI to a vCPU that is up or was set up by VCPUOP_initialise without an INIT since. */
  ipisIgnored = 0;
  /** The xenstore and console rings and ports the toolstack set up (HVM_PARAM_STORE_PFN/EVTCHN, CONSOLE_PFN/EVTCHN). */
  magicPages: MagicPages | undefined;
  /** VMCALLs made. */
  hypercalls = 0;
  /** The hypervisor's messages about this domain (Xen's console lines for it: warnings such as iommu=0 assignment). */
  readonly messages: string[] = [];
  /** The Xen interface: HVM params, event channels, grant table, shared_info, statistics (xen/). */
  readonly xen: XenDomain = new XenDomain(this);
  crashReason: string | undefined;
  /** What the domain builder loaded: the protocol, the entry, the ELF's segments, the modules, the bzImage header (builder/pvh.ts). */
  boot: BootState | undefined;
  readonly weight: number;
  readonly hap: boolean;
  /** Instructions retired, summed over vCPUs (kept across destroy). */
  private retired = 0;

  constructor(
    readonly id: number,
    readonly name: string,
    readonly host: Hypervisor,
    options: DomainOptions,
  ) {
    this.weight = options.weight ?? 256;
    this.hap = options.hap ?? true;
    const pages = options.memoryMiB * (MiB / PAGE_SIZE);
    // RAM as Xen's HVM builder lays it out (builder/layout.ts): low RAM below the MMIO hole, the
    // rest from 4 GiB. Each range takes its frames from anywhere in the host, in as many extents
    // as it needs, aligned to 1 GiB where the host allows (so the EPT maps whole 1 GiB pages).
    this.layout = guestLayout(pages);
    const extents: Extent[] = [];
    const mapped: { gfn: number; extent: Extent }[] = [];
    for (const range of this.layout.ranges) {
      const got = host.frames.allocateExtents(range.count, SUPERPAGE_1GB_NR_PFNS);
      if (got === undefined) {
        for (const e of extents) host.frames.freeExtent(e.first, e.count);
        throw new DomainError(name, `memory: ${options.memoryMiB} MiB is more than the host has free (${Math.floor((host.frames.freeFrames * PAGE_SIZE) / MiB)} MiB)`);
      }
      let g = range.gfn;
      for (const e of got) {
        extents.push(e);
        mapped.push({ gfn: g, extent: e });
        g += e.count;
      }
    }
    this.pages = new DomainPages(host.frames, extents);
    this.ramFrames = pages;
    for (const { gfn: g, extent } of mapped) this.p2m.setRange(gfn(g), extent.count, P2mType.Ram, extent.first);
    // The local APIC page (xAPIC MMIO), before the EPT/shadow is built from the p2m: one GPA for
    // every vCPU, each access answered by the accessing vCPU's APIC.
    // A vCPU whose APIC moved elsewhere (IA32_APIC_BASE) sees what the p2m has here: no device
    // (mmio.ts routes its new base to its APIC).
    const apicRange = this.mmio.registerPerVcpu(APIC_BASE_DEFAULT, XAPIC_MMIO_SIZE, "local APIC", (v) => (v.apic?.xapicBase === APIC_BASE_DEFAULT ? v.apic : undefined));
    if (apicRange !== undefined) throw new Error(`vtlab bug: ${apicRange.message}`);
    // The IO-APIC: its interrupts go to the vCPUs' local APICs (physical or logical destination).
    this.ioapic = new IoApic({ deliver: (dest, logical, vector, mode, level) => this.ioapicDeliver(dest, logical, vector, mode, level) });
    const ioapicRange = this.mmio.register(IOAPIC_BASE_DEFAULT, IOAPIC_MMIO_SIZE, this.ioapic, "IO-APIC");
    if (ioapicRange !== undefined) throw new Error(`vtlab bug: ${ioapicRange.message}`);
    const frames = {
      allocate: () => {
        const f = host.frames.allocate();
        if (f !== undefined) this.ownFrames.push(f);
        return f;
      },
      free: (f: Mfn) => {
        const i = this.ownFrames.indexOf(f);
        if (i >= 0) this.ownFrames.splice(i, 1);
        frameRefs(host).free(f);
      },
    };
    this.frameAllocator = frames;
    // shared_info and the event-channel table (xen/domain.ts): one of the domain's hypervisor frames.
    if (!this.xen.setUp(host, frames.allocate)) {
      this.releaseFrames();
      throw new DomainError(name, "no host frame for shared_info");
    }
    if (this.hap) {
      const np = NestedPaging.create({ memory: host.memory, p2m: this.p2m, frames, populate: () => undefined, largePages: true });
      if (!(np instanceof NestedPaging)) {
        this.releaseFrames();
        throw new DomainError(name, `EPT: ${np.message}`);
      }
      this.paging = np;
    } else {
      this.identityPageTable = this.buildIdentityPageTable(frames.allocate);
      if (this.identityPageTable === undefined) {
        this.releaseFrames();
        throw new DomainError(name, "no host frames for the paging-off identity page table");
      }
      // Out-of-sync leaf tables on, as Xen's shadow code does for HVM guests by default.
      const poolKiB = options.shadowMemoryKiB ?? requiredShadowMemoryKiB(options.memoryMiB, options.vcpus ?? 1);
      this.paging = new ShadowPaging({ memory: host.memory, p2m: this.p2m, frames, outOfSync: true, poolPages: Math.floor(poolKiB / 4) });
    }
    const capture = new ConsoleCapture(options.consoleCapture ?? CONSOLE_CAPTURE_DEFAULT, options.onConsole);
    this.consoleCapture = capture;
    const sink = (b: number) => capture.byte(b);
    this.consoleSink = sink;
    this.uart = new Uart16550({ sink, irq: (level) => this.ioapic.setLevel(UART_GSI, level, IoApicSource.Uart) });
    this.ports.register(COM1_PORT, 8, this.uart, "COM1 16550A UART");
    this.ports.register(DEBUGCON_PORT, 1, new DebugConsole(sink), "debug console");
    this.ports.register(DEBUG_EXIT_PORT, 4, new DebugExit((code) => this.shutdown(code)), "isa-debug-exit");
    this.pci = new PciBus(this.ports);
    const bridge = PciHostBridge.install(this.ports, this.pci);
    if (!(bridge instanceof PciHostBridge)) throw new DomainError(name, `PCI host bridge: ${bridge.message}`);
    if (options.disk !== undefined) {
      this.disk = new AtaDisk({ backend: options.disk, model: `vtlab disk ${name}`, irq: (level) => this.ioapic.setLevel(ATA_GSI, level, IoApicSource.Ata) });
      this.ports.register(ATA_PRIMARY_PORT, 8, this.disk.taskFile, "ATA primary");
      this.ports.register(ATA_PRIMARY_CONTROL_PORT, 1, this.disk.controlBlock, "ATA primary control");
    }
    // The Xen platform device (devices/platform.ts), then the floating bus: everything below
    // 4 GiB still unmapped reads all ones (mmio.ts).
    this.platformWiring = new PlatformWiring(this, options.onPlatformLog);
    this.platform = options.xenPlatformPci === false ? undefined : platformDevice(this, this.platformWiring);
    this.mmio.markUnassignedBelow4G();
  }

  /** IO-APIC delivery (Xen's vioapic_deliver): fixed to every vCPU addressed, lowest priority to the first. */
  private ioapicDeliver(dest: number, logical: boolean, vector: number, mode: number, level: boolean): void {
    for (const v of this.vcpus) {
      const apic = v.apic;
      if (apic === undefined) continue;
      if (!(logical ? apic.matchesLogical(dest) : dest === IOAPIC_PHYSICAL_BROADCAST || dest === apic.apicId)) continue;
      apic.acceptInterrupt(vector, level);
      if (mode === IoApicDeliveryMode.LowestPriority) return;
    }
  }

  /**
   * Shadow domains only: the machine address of the identity page table a vCPU runs on while
   * the guest has paging off (the shadow code's unpaged_pagetable, mmu-shadow's unpaged.ts). Six
   * hypervisor frames that no p2m entry maps (the guest cannot read or write them, and they
   * take no guest-physical address): a PML4, a PDPT and four page directories of 2 MiB pages
   * mapping the first 4 GiB one to one. The tables link by machine address.
   */
  readonly identityPageTable: number | undefined;

  private buildIdentityPageTable(allocate: () => Mfn | undefined): number | undefined {
    const mfns: Mfn[] = [];
    for (let k = 0; k < IDENT_PT_FRAMES; k++) {
      const f = allocate();
      if (f === undefined) return undefined;
      mfns.push(f);
    }
    const mem = this.host.memory;
    const P = 0x1, RW = 0x2, PS = 0x80; // present, writable, page size (SDM Table 4-17)
    const hpaOf = (k: number) => mfns[k]! * PAGE_SIZE;
    mem.write64(hpaOf(0), (hpaOf(1) % 2 ** 32 | P | RW) >>> 0, Math.floor(hpaOf(1) / 2 ** 32)); // PML4[0] -> PDPT
    for (let t = 0; t < 4; t++) {
      mem.write64(hpaOf(1) + t * 8, (hpaOf(2 + t) % 2 ** 32 | P | RW) >>> 0, Math.floor(hpaOf(2 + t) / 2 ** 32)); // PDPT[t] -> PD t
      for (let i = 0; i < 512; i++) {
        const page = (t * 512 + i) * 0x20_0000;
        mem.write64(mfns[2 + t]! * PAGE_SIZE + i * 8, (page | P | RW | PS) >>> 0, Math.floor(page / 2 ** 32));
      }
    }
    return hpaOf(0);
  }

  /**
   * Machine address of a guest-physical address whose p2m entry has a frame the domain may access
   * as memory: RAM, or a grant mapping of another domain's
   * frame (a read-only one only when `write` is false). Undefined otherwise (MMIO, nothing).
   */
  ramHpa(gpa: number, write = false): number | undefined {
    if (!(gpa >= 0) || gpa >= 2 ** 52) return undefined;
    const e = this.p2m.lookup(gfn(Math.floor(gpa / PAGE_SIZE)));
    const ok = e.type === P2mType.Ram || (p2mIsGrant(e.type) && (!write || e.type === P2mType.GrantMapRw));
    return ok ? (e.mfn as number) * PAGE_SIZE + (gpa % PAGE_SIZE) : undefined;
  }

  /** Machine address of a guest-physical RAM address (through the p2m: RAM only), or undefined. */
  machineAddress(gpa: number): number | undefined {
    if (!(gpa >= 0) || gpa >= 2 ** 52) return undefined;
    const e = this.p2m.lookup(gfn(Math.floor(gpa / PAGE_SIZE)));
    return e.type === P2mType.Ram ? (e.mfn as number) * PAGE_SIZE + (gpa % PAGE_SIZE) : undefined;
  }

  /** Write into guest-physical RAM, page by page through the p2m (the builder; device DMA would too). */
  writeGuest(gpa: number, bytes: Uint8Array): void {
    for (let done = 0; done < bytes.length; ) {
      const at = gpa + done;
      const hpa = this.machineAddress(at);
      if (hpa === undefined) throw new DomainError(this.name, `write of ${bytes.length} bytes at GPA 0x${gpa.toString(16)} is outside its memory`);
      const n = Math.min(bytes.length - done, PAGE_SIZE - (at % PAGE_SIZE));
      this.host.memory.writeBytes(hpa, bytes.subarray(done, done + n));
      done += n;
    }
  }

  /** The console so far: its last `consoleCapture` bytes (1 MiB by default; stats().console counts the rest). */
  get console(): string {
    return this.consoleCapture.text;
  }

  /** One byte of console output from a source other than the UART (HYPERVISOR_console_io). */
  readonly consoleSink: (b: number) => void;

  /** Add a hypervisor message about this domain (`messages`). */
  log(line: string): void {
    this.messages.push(line);
  }

  /** The guest wrote to isa-debug-exit. */
  shutdown(code: number): void {
    if (this.state !== "running") return;
    this.exitCode = code;
    this.state = "shutdown";
    for (const v of this.vcpus) v.cpu.requestStop("debug-exit", code);
    this.syncRunstates();
  }

  /**
   * Every vCPU is down: the domain powers off (Xen's hvm_vcpu_down: domain_shutdown(d,
   * SHUTDOWN_poweroff)), with exit code 0 as SCHEDOP_shutdown(SHUTDOWN_poweroff) has; a code
   * SCHEDOP_shutdown_code recorded earlier wins, as in shutdownWith. (Linux's `poweroff -f` on
   * a PVH domain ends so: no ACPI S5 in its DSDT, so the kernel halts every CPU.)
   */
  powerOff(reason: string): void {
    if (this.state !== "running") return;
    if (this.shutdownCode === undefined) this.shutdownCode = SHUTDOWN_poweroff;
    if (this.shutdownCode === SHUTDOWN_poweroff) this.exitCode = 0;
    this.shutdownReason = reason;
    this.state = "shutdown";
    this.syncRunstates();
  }

  /**
   * Xen's domain_shutdown(d, reason) for SCHEDOP_shutdown and the watchdog (`origin` names
   * which): a code SCHEDOP_shutdown_code recorded earlier wins over `reason`. SHUTDOWN_crash
   * crashes the domain (`crashReason` "<origin>(SHUTDOWN_crash)", so the toolstack's on_crash
   * applies); SHUTDOWN_poweroff shuts it down with exit code 0; every other reason (reboot,
   * suspend, watchdog, soft_reset, or any other byte) shuts it down with `shutdownCode` set and no
   * exit code, for the toolstack to act on. A domain already shutting down is left as it is.
   */
  shutdownWith(reason: number, origin: string): void {
    if (this.shutdownCode === undefined) this.shutdownCode = reason & 0xff;
    const code = this.shutdownCode;
    if (this.state !== "running" && this.state !== "paused") return;
    const what = `${origin}(${SHUTDOWN_NAMES[code] ?? `reason ${code}`})`;
    if (code === SHUTDOWN_crash) {
      this.crash(what);
      return;
    }
    this.shutdownReason = what;
    if (code === SHUTDOWN_poweroff) this.exitCode = 0;
    this.state = "shutdown";
    this.syncRunstates();
  }

  /** The guest did something its domain cannot survive. */
  crash(reason: string): void {
    if (this.state === "destroyed") return;
    this.crashReason = reason;
    this.state = "crashed";
    this.syncRunstates();
  }

  pause(): void {
    if (this.state === "running") this.state = "paused";
    this.syncRunstates();
  }

  unpause(): void {
    if (this.state === "paused") this.state = "running";
    this.syncRunstates();
  }

  /** The domain's state changed: its vCPUs' runstates follow (runnable <-> offline). */
  private syncRunstates(): void {
    for (const v of this.vcpus) v.runstate.sync(v);
  }

  /** Give every frame back to the host; the domain can no longer run. */
  destroy(): void {
    if (this.state === "destroyed") return;
    this.retired = this.instructions;
    this.state = "destroyed";
    // Assigned devices first (passthrough/pci.ts deassign_device): reset, context entry cleared,
    // context cache and IOTLB invalidated, so no DMA reaches the frames about to be freed.
    this.host.passthrough.deassignAll(this);
    // Grants first (xen/grant_table.ts): this domain's mappings of others' frames are released,
    // and others' mappings of its frames keep those frames out of the allocator until unmapped.
    this.xen.grants.release();
    this.xen.destroy(); // its event channels close; interdomain peers become unbound
    for (const v of this.vcpus) v.cpu.detach(); // out of the host's cross-modifying-code record
    this.releaseFrames();
  }

  private releaseFrames(): void {
    const refs = frameRefs(this.host);
    this.pages.releaseAll(refs);
    for (const f of this.ownFrames) refs.free(f);
    releaseDomainHolds(this); // frames it gave the hypervisor (a registered vcpu_info): back now
    this.ownFrames.length = 0;
  }

  /** Frames this domain holds (its memory plus the hypervisor frames kept for it: EPT tables, grant table...). */
  get framesHeld(): number {
    return this.state === "destroyed" ? 0 : this.pages.totPages + this.ownFrames.length;
  }

  get instructions(): number {
    if (this.state === "destroyed") return this.retired;
    let n = 0;
    for (const v of this.vcpus) n += v.cpu.counters.instructions;
    return n;
  }

  private iommuStats(cost: CostModel): { iommu?: DomainIommuStats } {
    const iommu = this.host.passthrough.iommu;
    const s = iommu.stateOf(this);
    return s === undefined ? {} : { iommu: s.snapshot(iommu.remapping, cost.iotlbMiss, cost.iotlbInvalidation) };
  }

  stats(cost: CostModel = DEFAULT_COST_MODEL): DomainStats {
    let pageWalks = 0, walkReferences = 0, eptReferences = 0, tlbHits = 0, tlbMisses = 0;
    for (const v of this.vcpus) {
      const c = v.cpu.counters;
      pageWalks += c.pageWalks;
      walkReferences += c.walkReferences;
      eptReferences += c.eptReferences;
      tlbHits += c.tlbHits;
      tlbMisses += c.tlbMisses;
    }
    const instructions = this.instructions;
    const e = this.exitStats;
    return {
      instructions,
      vmExits: e.total,
      exitsByReason: e.byReasonNames(),
      ioExits: e.io,
      mmioExits: e.mmio,
      mmioAccesses: e.mmioAccesses,
      unassignedReads: this.mmio.unassignedReads,
      unassignedWrites: this.mmio.unassignedWrites,
      disksUnplugged: this.platformWiring.disksUnplugged,
      pageWalks,
      walkReferences,
      eptReferences,
      tlbHits,
      tlbMisses,
      modelledCycles: modelledCycles({ instructions, memoryReferences: walkReferences + eptReferences, vmExits: e.total, emulatedDeviceRoundTrips: e.io + e.mmio }, cost),
      xen: this.xen.stats.snapshot(),
      console: this.consoleCapture.stats(),
      uart: this.uart.stats(),
      ...this.iommuStats(cost),
      ...(this.paging instanceof ShadowPaging ? { shadow: { ...this.paging.stats, faults: { ...this.paging.stats.faults }, exits: { ...this.paging.stats.exits } } } : { ept: { ...this.paging.stats } }),
    };
  }
}

/**
 * A host memory size for hosts that run large domains (`vtlab run`, `vtlab shell`): 4 TiB of
 * machine memory. Machine memory is sparse (@vtlab/arch MachineMemory): a frame takes host
 * memory only once something writes it, so the host is sized by what its domains touch, and
 * eight domains of `memory = 4078`, or a 64 GiB domain beside sixteen of 4 GiB, fit in one process.
 */
export const SPARSE_HOST_MEMORY_MIB = 4 * 1024 * 1024;

export interface HypervisorOptions {
  /**
   * Host memory for domains and hypervisor tables (default 4096 MiB), up to 2^42 bytes. Sparse:
   * only frames written cost host memory (SPARSE_HOST_MEMORY_MIB for hosts of large domains).
   */
  readonly memoryMiB?: number;
  /** Instructions per scheduler slice at weight 256 (default 2,000,000: 1 ms at 2 GHz, CPI 1). */
  readonly sliceInstructions?: number;
  readonly costModel?: CostModel;
  /**
   * The wall time at host boot (system time 0), which every domain's shared_info wallclock
   * reports (default 2024-01-01T00:00:00Z, DEFAULT_BOOT_EPOCH): the simulation reads no real clock.
   */
  readonly bootEpoch?: BootEpoch;
  /**
   * The host IOMMU (passthrough/vtd.ts): `false` is Xen's `iommu=0` (no DMA remapping: assigned
   * devices reach machine memory directly); otherwise the IOTLB flush policy (default strict).
   */
  readonly iommu?: IommuOption;
  /** Host PCI devices that can be assigned to domains (Xen's pci_add_device; `addPciDevice` adds more). */
  readonly pciDevices?: readonly AssignableDevice[];
  /**
   * Called for every VM exit of a VMX vCPU BEFORE it is handled, with the exit (reason,
   * qualification, instruction length, guest-linear/physical address where the SDM gives one)
   * and the guest state the exit saved in the VMCS (VmExitGuestState). Return true to pause the
   * domain once the exit is handled (a debugger's step to the next VM exit; `Domain.unpause`
   * continues). Unset, it costs one field test per exit and allocates nothing. Native-kernel
   * slices (Domain `native`) make no VMX exits and report none.
   */
  readonly onVmExit?: (domain: Domain, vcpu: Vcpu, exit: VmExit, state: VmExitGuestState) => boolean | void;
}

/**
 * The guest state at a VM exit, from the VMCS guest-state area (SDM 27.3): GUEST_RIP, GUEST_RSP,
 * GUEST_RFLAGS, GUEST_CR0, GUEST_CR3, GUEST_CR4, as the VMCS holds them: under shadow paging
 * GUEST_CR3 is the shadow root the hypervisor loaded (mmu-shadow keeps the guest's own CR3),
 * under EPT the guest's. `reasonName` is exitReasonName's (the SDM Appendix C name vtlab uses in
 * exitsByReason).
 */
export interface VmExitGuestState {
  readonly reasonName: string;
  readonly rip: number;
  readonly rsp: number;
  readonly rflags: number;
  readonly cr0: number;
  readonly cr3: number;
  readonly cr4: number;
}

export interface RunOptions {
  /** Stop after this much guest time, in instructions (a VM exit counts as its modelled cost; default: unlimited). */
  readonly maxInstructions?: number;
  /** Called between slices; return true to stop. */
  readonly until?: () => boolean;
  /** Called between slices with the host's progress. */
  readonly onSlice?: (hv: Hypervisor) => void;
}

export interface RunResult {
  /** "idle": no domain can run any more; "budget": maxInstructions reached; "stopped": `until` said so. */
  readonly reason: "idle" | "budget" | "stopped";
  readonly instructions: number;
  /**
   * With "idle": the ids of the domains still running but blocked for good: every vCPU halted or
   * blocked with no deliverable event pending and no timer that could deliver one (an APIC timer
   * that is masked, or whose vector TPR holds off). Xen leaves such a vCPU blocked; so does vtlab,
   * and the run ends. Empty when every domain has ended.
   */
  readonly blockedDomains?: readonly number[];
}

export class Hypervisor {
  readonly memory: MachineMemory;
  readonly frames: HostFrames;
  readonly clock = new SimClock();
  readonly cost: CostModel;
  private readonly domainList: Domain[] = [];
  private nextId = 1;
  private rr = 0;
  readonly sliceInstructions: number;
  /** Domain 0 as the backends see it: the typed event-channel and grant API (xen/dom0.ts). */
  readonly dom0: ControlDomain = new ControlDomain(this);
  /** Dom0's work between scheduler slices (xenstored, the console and other backends): see serviceDom0. */
  private readonly dom0Services = new Set<() => void>();

  /** Run `service` whenever dom0 runs (after every slice and before the host goes idle); returns its removal. */
  addDom0Service(service: () => void): () => void {
    this.dom0Services.add(service);
    return () => this.dom0Services.delete(service);
  }

  /**
   * Dom0's turn, between scheduler slices: its queued events are dispatched to their handlers
   * (`dom0.evtchn.dispatch()`), then each registered service polls its rings. Events these send
   * to guests wake them for the next slice.
   */
  serviceDom0(): void {
    this.dom0.evtchn.dispatch();
    for (const s of this.dom0Services) s();
  }
  /** The wallclock's epoch (xen/time.ts). */
  readonly bootEpoch: BootEpoch;
  /** tsc_to_system_mul / tsc_shift of the TSC (the host clock's frequency), as the PV clock and CPUID leaf 0x40000003 report them. */
  readonly tscScale: TimeScale;
  /** Scheduler slices run so far (a vCPU switched in and out). */
  get slicesRun(): number {
    return this.sliceCount;
  }
  private sliceCount = 0;

  /**
   * HypervisorOptions.onVmExit; may be set and cleared between runs (a debugger sets it only
   * while it steps). Undefined: no report, no cost.
   */
  onVmExit: HypervisorOptions["onVmExit"];

  constructor(options: HypervisorOptions = {}) {
    this.onVmExit = options.onVmExit;
    const mib = options.memoryMiB ?? 4096;
    // Up to 2^42 bytes: frame numbers stay below 2^32 (MachineMemory indexes its frame directory with 32-bit shifts).
    if (!Number.isInteger(mib) || mib < 16 || mib > SPARSE_HOST_MEMORY_MIB) throw new RangeError(`host memoryMiB must be an integer 16..${SPARSE_HOST_MEMORY_MIB}; got ${mib}`);
    this.memory = new MachineMemory(mib * MiB);
    // Frame 0..255 (the first MiB) stay the hypervisor's own, never handed to a domain.
    this.frames = new HostFrames(this.memory, 256 as Mfn, (mib * MiB) / PAGE_SIZE - 256);
    this.sliceInstructions = options.sliceInstructions ?? 2_000_000;
    this.cost = options.costModel ?? DEFAULT_COST_MODEL;
    this.nativeHost = { instructionCost: this.cost.instruction, exitCost: this.cost.vmExitEntry, advanceClock: (c) => this.clock.advance(c), pollApics: () => this.pollApics() };
    this.bootEpoch = checkBootEpoch(options.bootEpoch ?? DEFAULT_BOOT_EPOCH);
    this.tscScale = pvclockScale(this.clock.frequencyHz);
    this.passthrough = new PciPassthrough(this, new HostIommu(this, options.iommu));
    for (const dev of options.pciDevices ?? []) this.passthrough.add(dev);
  }

  /** The host IOMMU and device assignment (passthrough/). */
  readonly passthrough: PciPassthrough;

  /** Make a host PCI device assignable (Xen's pci_add_device). */
  addPciDevice(dev: AssignableDevice): void {
    this.passthrough.add(dev);
  }

  /** `xl pci-assignable-list`: every assignable device, its name and owner ("free" if none). */
  pciAssignableList(): AssignableListing[] {
    return this.passthrough.list();
  }

  /** `xl pci-attach`: assign the device at `bdf` to a domain; throws DomainError naming the problem. */
  assignPci(idOrName: number | string, bdf: string): void {
    const d = this.domain(idOrName);
    if (d === undefined) throw new DomainError(String(idOrName), "no such domain");
    const err = this.passthrough.assign(d, bdf);
    if (err !== undefined) throw new DomainError(d.name, err);
  }

  /** `xl pci-detach`: quiesce the device and free it; false if the domain does not own it. */
  deassignPci(idOrName: number | string, bdf: string): boolean {
    const d = this.domain(idOrName);
    const id = parsePciBdf(bdf);
    if (d === undefined || typeof id === "string") return false;
    return this.passthrough.deassign(d, id);
  }

  /**
   * XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY (Xen's paging_log_dirty_enable): refused with -EINVAL
   * while the domain has assigned devices ("Refuse to turn on global log-dirty mode if the domain
   * is sharing the P2M with the IOMMU": DMA writes would not be logged); returns 0 or -XEN_EINVAL.
   */
  enableLogDirty(idOrName: number | string): number {
    const d = this.domain(idOrName);
    if (d === undefined) return -XEN_ESRCH;
    return this.passthrough.enableLogDirty(d);
  }

  get domains(): readonly Domain[] {
    return this.domainList.filter((d) => d.state !== "destroyed");
  }

  domain(idOrName: number | string): Domain | undefined {
    return this.domains.find((d) => d.id === idOrName || d.name === idOrName);
  }

  /** Build a domain: memory, p2m and EPT, devices, the kernel loaded, vCPU 0 at its entry. */
  createDomain(options: DomainOptions): Domain {
    const name = options.name;
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new DomainError(name, "name: use letters, digits, '_', '.', '-'");
    if (this.domains.some((d) => d.name === name)) throw new DomainError(name, "name: a domain with this name exists");
    // The same range the xl.cfg parser allows (builder/layout.ts): RAM below the MMIO hole, the rest from 4 GiB.
    if (!Number.isInteger(options.memoryMiB) || options.memoryMiB < GUEST_MEMORY_MIN_MIB || options.memoryMiB > GUEST_MEMORY_MAX_MIB) {
      throw new DomainError(name, `memory: ${options.memoryMiB} MiB is out of range; give an integer number of MiB, ${GUEST_MEMORY_MIN_MIB}..${GUEST_MEMORY_MAX_MIB}`);
    }
    const vcpus = options.vcpus ?? 1;
    if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > 64) throw new DomainError(name, `vcpus: ${vcpus}; give 1..64`);
    const shadowKiB = options.shadowMemoryKiB;
    if (shadowKiB !== undefined && (!Number.isInteger(shadowKiB) || shadowKiB < MIN_SHADOW_POOL_PAGES * 4)) throw new DomainError(name, `shadow_memory: ${shadowKiB} KiB; give an integer >= ${MIN_SHADOW_POOL_PAGES * 4}`);
    // pci: every entry names a free assignable device, none twice (checked before anything is built).
    const pciSeen = new Set<number>();
    for (const text of options.pci ?? []) {
      const id = this.passthrough.check(text);
      if (typeof id === "string") throw new DomainError(name, id);
      if (pciSeen.has(id)) throw new DomainError(name, `pci: "${text}" is listed twice`);
      pciSeen.add(id);
    }
    const d = new Domain(this.nextId, name, this, options);
    const image = options.native !== undefined ? nativeBootImage() : options.kernel;
    if (image === undefined) {
      d.destroy();
      throw new DomainError(name, "kernel: give a kernel image or a native kernel");
    }
    const boot = buildPvh(image, options.cmdline ?? "", d.ramFrames * PAGE_SIZE, {
      write: (gpa, bytes) => d.writeGuest(gpa, bytes),
      zero: (gpa, length) => d.writeGuest(gpa, new Uint8Array(length)),
    }, {
      ...(options.ramdisk !== undefined ? { ramdisk: options.ramdisk } : {}),
      // The MADT's local APIC IDs: vtlab's local APIC of vCPU i has ID i (below).
      ...(options.acpi !== false ? { acpi: { apicIds: Array.from({ length: vcpus }, (_, i) => i) } } : {}),
    });
    if ("kind" in boot) {
      d.destroy();
      // One field name in front: the builder's own ("memory", "cmdline", "kernel", "ramdisk"), or
      // "kernel" and the ELF field for an image the loader refused.
      throw new DomainError(name, boot.kind === "boot-error" ? `${boot.field}: ${boot.message}` : `kernel: ${boot.message}`);
    }
    d.boot = boot;
    if (boot.acpi !== undefined) {
      // The ACPI pages are the domain's own memory outside its RAM (libxl populates them beyond
      // the configured memory, and types them ACPI NVS in the memory map).
      const err = populateFixedFrames(d, boot.acpi.gpa / PAGE_SIZE, boot.acpi.bytes.length / PAGE_SIZE, "ACPI tables");
      if (err !== undefined) {
        d.destroy();
        throw new DomainError(name, `acpi: ${err}`);
      }
      d.writeGuest(boot.acpi.gpa, boot.acpi.bytes);
    }
    for (let i = 0; i < vcpus; i++) {
      const v = new Vcpu(d, i, this.memory, this.clock);
      // An event delivery uses up its modelled time of the slice (the run budget and the preemption timer).
      v.cpu.eventWeight = this.cost.eventDelivery / this.cost.instruction;
      const err = setupFlat64Guest(v.vmcs, {
        pin: PIN_EXTINT_EXITING | PIN_PREEMPTION_TIMER,
        proc: CPU_HLT_EXITING | CPU_UNCOND_IO_EXITING | CPU_USE_MSR_BITMAPS | CPU_ACTIVATE_SECONDARY,
        // PAT and the debug controls (DR7, IA32_DEBUGCTL) are guest state the VMCS loads and saves (as Xen does).
        exit: EXIT_SAVE_IA32_EFER | EXIT_ACK_INTR_ON_EXIT | EXIT_SAVE_IA32_PAT | EXIT_LOAD_IA32_PAT | EXIT_SAVE_DEBUG_CONTROLS,
        entry: ENTRY_LOAD_IA32_EFER | ENTRY_LOAD_IA32_PAT | ENTRY_LOAD_DEBUG_CONTROLS,
        cr3: boot.cr3,
        rip: boot.entry,
        rsp: 0,
        gdtBase: boot.gdtBase,
        gdtLimit: boot.gdtLimit,
        idtBase: 0,
        idtLimit: 0,
        tssBase: boot.tssBase,
        codeSelector: boot.protocol === "direct64" ? BOOT_CS64 : BOOT_CS32,
        dataSelector: BOOT_DS,
        tssSelector: BOOT_TSS,
      });
      if (err !== undefined) throw new Error(`vtlab bug: ${err.message}`);
      // The PVH / Multiboot entry: a flat 32-bit code segment (CS.L = 0, D = 1); direct 64-bit
      // boot keeps setupFlat64Guest's 64-bit code segment. See builder/pvh.ts.
      const direct64 = boot.protocol === "direct64";
      if (!direct64) v.vmcs.setField(F.GUEST_CS_AR_BYTES, 0xc09b);
      v.vmcs.setField(F.GUEST_IA32_EFER, EFER_LME | EFER_LMA);
      v.guestEfer = direct64 ? EFER_LME | EFER_LMA : 0;
      this.setupVcpuControls(d, v);
      // A shadow vCPU with paging off runs on the identity table: shadow it, not GFN 0.
      if (d.paging instanceof ShadowPaging) d.paging.setupVcpu(v.cpu, v.vmcs, direct64 ? undefined : d.identityPageTable!);
      else d.paging.setupVcpu(v.cpu, v.vmcs);
      if (!direct64) {
        if (d.paging instanceof ShadowPaging) enterUnpagedShadow(d.paging, v, d.identityPageTable!);
        else enterPagingOff(v.vmcs);
      }
      if (direct64) v.cpu.setReg32(7, boot.startInfo); // RDI = hvm_start_info (the SysV first argument)
      if (d.paging instanceof NestedPaging) v.cpu.secondLevel = d.paging.walkerFor(v.cpu);
      v.cpu.setReg32(3, boot.startInfo); // EBX = struct hvm_start_info, or multiboot_info
      v.cpu.setReg32(0, boot.eax); // EAX = 0x2BADB002 for Multiboot
      v.apic = new LocalApic({
        apicId: i,
        mode: "xapic", // the power-up state (SDM 11.4.3); a guest switches to x2APIC itself
        now: () => this.clock.nanoseconds,
        sendIpi: (dest, vector, shorthand, mode, logical) => this.routeIpi(d, v, dest, vector, shorthand, mode, logical),
        onLevelEoi: (vector) => d.ioapic.eoi(vector), // a level-triggered IO-APIC interrupt's EOI
        onSoftwareEnable: () => d.xen.reassertUpcallVector(i), // vlapic_reg_write APIC_SPIV
      });
      if (i > 0) v.blocked = true; // APs wait for VCPUOP_up (hypercalls.ts)
      if (i === 0 && options.native !== undefined) {
        const ctx: ExitContext = { domain: d, vcpu: v, hv: this };
        v.native = new NativeVcpu(v.cpu, options.native, (exit) => {
          v.inGuest = false;
          this.dispatch(ctx, exit);
          nativeAfterExit(v);
          v.inGuest = true; // NativeGuestOps resumes the vCPU right after
        });
      }
      d.vcpus.push(v);
    }
    for (const v of d.vcpus) v.runstate.sync(v); // vCPU 0 runnable, the others offline
    // The PV clock follows a moved vcpu_info (Xen's force_update_vcpu_system_time); a port set
    // pending wakes the vCPUs polling on it (evtchn_check_pollers).
    d.xen.sharedInfo.onVcpuInfoMoved = (id) => {
      const v = d.vcpus[id];
      if (v !== undefined) publishVcpuTime(this, v, true);
    };
    d.xen.evtchn.checkPollers = (port) => evtchnCheckPollers(d, port);
    this.domainList.push(d);
    this.nextId++;
    if (options.magicPages === true) {
      // The toolstack's special pages and the xenstore/console ports (builder/special-pages.ts).
      const magic = allocMagicPagesHvm(this, d);
      if (typeof magic === "string") {
        d.destroy();
        throw new DomainError(name, `special pages: ${magic}`);
      }
      d.magicPages = magic;
    }
    for (const text of options.pci ?? []) {
      const err = this.passthrough.assign(d, text);
      if (err !== undefined) {
        d.destroy();
        throw new DomainError(name, err);
      }
    }
    return d;
  }

  private msrBitmap: Mfn | undefined;

  /** CR0/CR4 ownership and the MSR bitmap (EFER, APIC base and the x2APIC range trap; the syscall MSRs pass through). */
  private setupVcpuControls(d: Domain, v: Vcpu): void {
    const vmcs = v.vmcs;
    // PAUSE-loop exiting with Xen's defaults (vmcs.c ple_gap = 128, ple_window = 4096): a vCPU
    // spinning on a lock or a flag another vCPU must set yields its slice (exits.ts) instead of
    // spinning it out.
    vmcs.setField(F.SECONDARY_VM_EXEC_CONTROL, (vmcs.read32(F.SECONDARY_VM_EXEC_CONTROL) | SECONDARY_PAUSE_LOOP_EXITING) >>> 0);
    vmcs.setField(F.PLE_GAP, PLE_GAP);
    vmcs.setField(F.PLE_WINDOW, PLE_WINDOW);
    vmcs.setNatural(F.CR0_GUEST_HOST_MASK, CR0_HOST_OWNED);
    vmcs.setNatural(F.CR0_READ_SHADOW, (vmcs.readNatural(F.GUEST_CR0) & CR0_HOST_OWNED) >>> 0);
    // CR4: the host owns VMXE (the guest sees 0), and on shadow domains PAE, which stays on
    // underneath while a guest has paging off (see enterUnpagedShadow).
    vmcs.setNatural(F.CR4_GUEST_HOST_MASK, d.hap ? CR4_VMXE : CR4_VMXE | CR4_PAE);
    vmcs.setNatural(F.CR4_READ_SHADOW, vmcs.readNatural(F.GUEST_CR4) & ~CR4_VMXE);
    if (this.msrBitmap === undefined) {
      const f = this.frames.allocate();
      if (f === undefined) throw new DomainError(d.name, "no host frame for the MSR bitmap");
      this.msrBitmap = f;
      const base = f * PAGE_SIZE;
      // Set = exit. Low MSRs 0..1FFF: read bitmap at 0, write at 2048; high C0000000..: read at 1024, write at 3072.
      this.memory.fill(base, PAGE_SIZE, 0xff);
      const pass = (msr: number) => {
        const high = msr >= 0xc000_0000;
        const bit = high ? msr - 0xc000_0000 : msr;
        for (const off of high ? [1024, 3072] : [0, 2048]) {
          const a = base + off + (bit >>> 3);
          this.memory.write8(a, (this.memory.read8(a) as number) & ~(1 << (bit & 7)));
        }
      };
      // STAR, LSTAR, CSTAR, FMASK, FS_BASE, GS_BASE, KERNEL_GS_BASE, TSC_AUX: context-switched, not trapped (as Xen).
      for (const m of [0xc000_0081, 0xc000_0082, 0xc000_0083, 0xc000_0084, 0xc000_0100, 0xc000_0101, 0xc000_0102, 0xc000_0103]) pass(m);
      // IA32_PAT: loaded and saved by the VMCS PAT controls, so not trapped (Xen's vmx_clear_msr_intercept(MSR_IA32_CR_PAT)).
      pass(0x277);
    }
    vmcs.setField(F.MSR_BITMAP, this.msrBitmap * PAGE_SIZE);
  }

  /** Destroy a domain: its frames go back to the host. */
  destroyDomain(idOrName: number | string): boolean {
    const d = this.domain(idOrName);
    if (d === undefined) return false;
    d.destroy();
    return true;
  }

  /**
   * Run the domains: weighted round-robin slices of `sliceInstructions * weight / 256` over the
   * runnable vCPUs, until nothing can run, the budget is spent or `until` says stop.
   */
  run(options: RunOptions = {}): RunResult {
    let total = 0;
    let charged = 0;
    const max = options.maxInstructions ?? Number.POSITIVE_INFINITY;
    for (;;) {
      if (options.until?.() === true) return { reason: "stopped", instructions: total };
      if (charged >= max) return { reason: "budget", instructions: total };
      const runnable: Vcpu[] = [];
      for (const d of this.domainList) if (d.state === "running") for (const v of d.vcpus) if (!v.blocked) runnable.push(v);
      if (runnable.length === 0) {
        // Dom0 first: a guest blocked on a backend's answer is woken by it.
        this.serviceDom0();
        if (this.anyRunnable()) continue;
        // Everyone is blocked. An event or interrupt sent since the last poll, or a timer already
        // due, may wake someone now; otherwise jump the clock to the next APIC or Xen timer
        // deadline (rounded up to a whole cycle, so the deadline is reached) and wake whoever it
        // is for.
        this.pollApics();
        if (this.anyRunnable()) continue;
        // Only deadlines that can wake someone count: an APIC timer that is masked or held off by
        // TPR fires forever without making its halted vCPU runnable.
        const next = this.nextDeadlineNs(true);
        if (next === Number.POSITIVE_INFINITY) {
          const blockedDomains = this.domainList.filter((d) => d.state === "running").map((d) => d.id);
          return { reason: "idle", instructions: total, blockedDomains };
        }
        // At least one cycle: a deadline that pollApics did not fire at this clock value (a
        // rounding step between nanoseconds and cycles) is reached by moving on, never by spinning
        // here with the clock standing still.
        const cycles = Math.max(1, Math.ceil((next * this.clock.frequencyHz) / 1e9) - this.clock.cycles);
        this.clock.advance(cycles);
        this.pollApics();
        // A jump that woke nobody (a Xen timer whose event the guest has masked, say) is charged
        // to the run's budget, so a host whose guests only ever wait ends at maxInstructions
        // instead of advancing the clock forever without charging anything.
        if (!this.anyRunnable()) charged += Math.max(1, cycles / this.cost.instruction);
        continue;
      }
      const v = runnable[this.rr++ % runnable.length]!;
      const slice = Math.max(1000, Math.floor((this.sliceInstructions * v.domain.weight) / 256));
      const n = this.runSlice(v, Math.min(slice, max - charged));
      total += n.retired;
      charged += n.charged;
      // A flush point (deferred IOTLB policy): the end of every scheduler slice.
      this.passthrough.iommu.flushPoint();
      this.serviceDom0();
      options.onSlice?.(this);
    }
  }

  /**
   * Run one vCPU for up to `budget` instruction-times, handling its exits; returns the
   * instructions retired and the slice time charged (instructions plus exits at their cost).
   */
  private runSlice(v: Vcpu, budget: number): { retired: number; charged: number } {
    const d = v.domain;
    let retired = 0;
    const ctx: ExitContext = { domain: d, vcpu: v, hv: this };
    let charged = 0;
    // Switch the vCPU in (Xen's context_switch): runstate, periodic timer, PV clock (xen/sched.ts, time.ts).
    this.sliceCount++;
    switchIn(this, v);
    publishVcpuTime(this, v);
    if (v.native !== undefined) {
      syncGuestTsc(this, v);
      const n = runNativeSlice(this.nativeHost, v, v.native, budget);
      switchOut(this, v);
      return n;
    }
    while (d.state === "running" && !v.blocked) {
      const left = budget - retired - charged;
      // Exit costs can use up the slice between two entries.
      if (left <= 0 && !v.inGuest) break;
      // Still in non-root operation (the interpreter stopped at an APIC timer deadline): a pending
      // guest interrupt needs an exit to be injected, which the host kick IPI forces.
      if (v.inGuest && v.apic !== undefined && v.apic.pendingVector() >= 0) v.cpu.raiseInterrupt(HOST_KICK_VECTOR);
      if (!v.inGuest) {
        this.deliverInterrupt(v);
        // The slice ends with a VMX-preemption-timer exit (reason 52), the role the host timer
        // interrupt plays in Xen: the timer counts the slice's instructions from this entry.
        v.vmcs.setField(F.VMX_PREEMPTION_TIMER_VALUE, Math.min(Math.ceil(left), 0xffff_ffff));
        syncGuestTsc(this, v); // the guest's TSC reads the host clock
        if (v.realModeEmulated) {
          // Real mode on shadow: the hypervisor emulates the vCPU instead of entering it (realmode.ts).
          realModeEnter(v);
        } else {
          const fail = vmEntry(v.cpu, v.vmcs, !v.launched);
          if (fail !== undefined) {
            d.crash(vmEntryFailure(fail));
            break;
          }
          v.launched = true;
        }
        v.inGuest = true;
      }
      // Run at most up to the next APIC or Xen timer deadline (CPI 1 on the host clock), so that
      // the timer interrupt or event arrives at the instruction it would on hardware, give or take
      // an exit, and never past what is left of the slice (the preemption timer ends it too; the
      // bound keeps the slice finite whatever the guest spends it on).
      let chunk = Math.max(1, Math.ceil(left));
      const deadline = this.nextDeadlineNs();
      if (deadline !== Number.POSITIVE_INFINITY) {
        const until = Math.ceil((this.clock.cyclesFromNanoseconds(deadline) - this.clock.cycles) / this.cost.instruction);
        chunk = Math.min(chunk, Math.max(1, until));
      }
      const events = v.cpu.eventsDelivered;
      const r = v.cpu.run(chunk);
      retired += r.retired;
      if (v.realModeEmulated) d.exitStats.realModeInstructions += r.retired;
      // Event deliveries (an exception loop retires nothing) cost slice time and clock time too.
      const eventTime = ((v.cpu.eventsDelivered - events) * this.cost.eventDelivery) / this.cost.instruction;
      charged += eventTime;
      this.clock.advance((r.retired + eventTime) * this.cost.instruction);
      this.pollApics();
      if (r.kind === "vmexit") {
        v.inGuest = false;
        const pauseAfter = this.onVmExit !== undefined && this.reportExit(v, r.exit);
        const accesses = d.exitStats.ioAccesses + d.exitStats.mmioAccesses;
        const slackCycles = (budget - retired - charged - this.cost.vmExitEntry / this.cost.instruction) * this.cost.instruction;
        v.stringIoLimit = Math.max(1, Math.floor(slackCycles / Math.max(1, this.cost.deviceModelAccess)));
        this.dispatch(ctx, r.exit);
        // An exit costs slice time too (its modelled cycles, and the device-model accesses it
        // made: each element of a string-I/O exit), so a guest that exits in a loop without
        // retiring instructions (a re-executed REP INS, a fault reflected again and again) still
        // yields its slice. Modelled more simply than time on hardware: exit time is charged to
        // the slice but does not move the simulated clock (instructions and event deliveries do).
        const exitCycles = this.cost.vmExitEntry + (d.exitStats.ioAccesses + d.exitStats.mmioAccesses - accesses) * this.cost.deviceModelAccess;
        charged += exitCycles / this.cost.instruction;
        if (pauseAfter && d.state === "running") {
          d.pause();
          break;
        }
        if ((r.exit.reason & 0xffff) === ExitReason.PreemptionTimer) break;
        if (v.xenTimers.yieldRequested) break; // SCHEDOP_yield ends the slice
        continue;
      }
      if (r.kind === "budget") continue; // an APIC timer deadline: the loop head injects the interrupt
      if (r.kind === "stop") break;
      d.crash(`vCPU ${v.id} stopped: ${r.kind}`);
      break;
    }
    switchOut(this, v);
    return { retired, charged: retired + charged };
  }

  /** What a native kernel's slice needs of the host (made once, not per slice). */
  private readonly nativeHost: NativeSliceHost;

  /**
   * Machine frame `frame` was written from outside the vCPUs (a hypercall's copy_to_guest,
   * shared_info, the hypercall page, FIFO control blocks): every vCPU forgets the instructions it
   * decoded from it (cpu-vmx codeWritten), whichever domain maps it (grants share frames).
   */
  machineFrameWritten(frame: number): void {
    for (const d of this.domainList) if (d.state !== "destroyed") for (const v of d.vcpus) v.cpu.codeWritten(frame);
  }

  /** A vCPU of a running domain can run. */
  private anyRunnable(): boolean {
    for (const d of this.domainList) if (d.state === "running") for (const v of d.vcpus) if (!v.blocked) return true;
    return false;
  }

  /**
   * The earliest APIC timer or Xen timer deadline (xen/timer.ts) of any running domain's vCPUs
   * (ns), or +Infinity. `idle`: for the idle host's clock jump (see nextTimerDeadlineNs); then
   * only APIC timers that can wake their vCPU count (Lapic.timerCanWake).
   */
  private nextDeadlineNs(idle = false): number {
    let next = Number.POSITIVE_INFINITY;
    for (const d of this.domainList) {
      if (d.state !== "running") continue;
      for (const v of d.vcpus) {
        const apic = v.apic;
        if (apic === undefined) continue;
        // The idle host waits only for a timer that can wake its (halted) vCPU.
        if (idle && (v.down || !apic.timerCanWake())) continue;
        const t = apic.nextTimerDeadline();
        if (t < next) next = t;
      }
      const x = nextTimerDeadlineNs(this, d, idle);
      if (x < next) next = x;
    }
    return next;
  }

  /**
   * Fire the Xen timers that are due (VIRQ_TIMER, poll timeouts, watchdogs: xen/timer.ts); bring
   * every APIC's timer up to now; wake halted vCPUs that have an interrupt to take.
   */
  private pollApics(): void {
    const now = this.clock.nanoseconds;
    for (const d of this.domainList) {
      if (d.state !== "running") continue;
      fireTimers(this, d);
      if (d.state !== "running") continue;
      for (const v of d.vcpus) {
        const apic = v.apic;
        if (apic === undefined) continue;
        if (apic.nextTimerDeadline() <= now) apic.update();
        // Only a vCPU that is up: one waiting for its INIT-SIPI or VCPUOP_up stays blocked (an
        // AP in emulated real mode on shadow is up without ever having been VM-entered).
        if (v.blocked && v.isUp && apic.pendingVector() >= 0) {
          v.blocked = false;
          v.wakeups++;
        }
      }
    }
  }

  /**
   * Before VM entry: inject the APIC's highest pending vector when the guest can take it
   * (RFLAGS.IF = 1, no STI/MOV SS shadow, no event already being injected), else ask for an
   * interrupt-window exit (SDM 26.6, 25.3; Xen's vmx_intr_assist).
   */
  private deliverInterrupt(v: Vcpu): void {
    const apic = v.apic;
    if (apic === undefined) return;
    const vmcs = v.vmcs;
    const proc = vmcs.read32(F.CPU_BASED_VM_EXEC_CONTROL);
    // The event-channel callback vector comes first, outside the APIC (Xen's hvm_intack_vector; xen/hvm_op.ts).
    const upcall = v.domain.xen.intrAssist(v);
    const vector = upcall >= 0 ? upcall : apic.pendingVector();
    if (vector < 0) {
      if ((proc & CPU_INTR_WINDOW_EXITING) !== 0) vmcs.setField(F.CPU_BASED_VM_EXEC_CONTROL, (proc & ~CPU_INTR_WINDOW_EXITING) >>> 0);
      return;
    }
    const busy = (vmcs.read32(F.VM_ENTRY_INTR_INFO_FIELD) & INTR_INFO_VALID) !== 0;
    const open = (vmcs.read32(F.GUEST_RFLAGS) & RFLAGS_IF) !== 0 && (vmcs.read32(F.GUEST_INTERRUPTIBILITY_INFO) & 3) === 0;
    if (!busy && open) {
      if (upcall >= 0) v.domain.xen.stats.upcallsInjected++;
      else apic.acknowledge(vector);
      vmcs.setField(F.VM_ENTRY_INTR_INFO_FIELD, (INTR_INFO_VALID | (IntrType.External << 8) | vector) >>> 0);
      v.interruptsInjected++;
      if ((proc & CPU_INTR_WINDOW_EXITING) !== 0) vmcs.setField(F.CPU_BASED_VM_EXEC_CONTROL, (proc & ~CPU_INTR_WINDOW_EXITING) >>> 0);
    } else if ((proc & CPU_INTR_WINDOW_EXITING) === 0) {
      vmcs.setField(F.CPU_BASED_VM_EXEC_CONTROL, (proc | CPU_INTR_WINDOW_EXITING) >>> 0);
    }
  }

  /**
   * ICR writes, to the domain's own vCPUs. Fixed IPIs are delivered (lowest priority goes to the
   * first vCPU addressed: modelled more simply than arbitration). INIT and start-up IPIs bring an
   * AP up the native way, as Xen's vlapic_accept_irq does (APIC_DM_INIT, APIC_DM_STARTUP): an
   * INIT to a vCPU that is not up resets it to wait for a start-up IPI (a vCPU never brought up
   * waits from the start, as after reset); the first SIPI then starts it in real mode at
   * vector << 12 (`startRealModeAp`, Xen's hvm_vcpu_reset_state(v, vector << 8, 0)). A SIPI to a
   * vCPU that is up, or that VCPUOP_initialise set up without an INIT since, is ignored as on
   * hardware and in Xen, and so is an INIT to a running vCPU (a warm reset is not modelled). On
   * a shadow-paging domain, where VT-x cannot run real mode (it needs unrestricted guest, which
   * needs EPT), the hypervisor emulates the AP until it sets CR0.PE, as Xen's vmx_realmode does
   * (realmode.ts). NMI, SMI and ExtINT IPIs are not modelled. What is ignored is counted
   * (`Domain.ipisIgnored`).
   */
  private routeIpi(d: Domain, from: Vcpu, dest: number, vector: number, shorthand: number, mode: number, logical: boolean): void {
    for (const t of d.vcpus) {
      const self = t === from;
      const hit =
        shorthand === ApicShorthand.Self ? self
        : shorthand === ApicShorthand.AllIncludingSelf ? true
        : shorthand === ApicShorthand.AllExcludingSelf ? !self
        : logical ? t.apic?.matchesLogical(dest) === true
        : dest === X2APIC_BROADCAST || dest === t.id;
      if (!hit) continue;
      if (mode === ApicDeliveryMode.Fixed || mode === ApicDeliveryMode.LowestPriority) {
        t.apic?.acceptInterrupt(vector);
        if (mode === ApicDeliveryMode.LowestPriority) return;
      } else if (mode === ApicDeliveryMode.Init && !t.isUp) {
        // Xen's vlapic_init_sipi_action for INIT: the vCPU is reset (hvm_vcpu_down) and waits for a SIPI.
        t.bringUp.initialised = false;
        t.bringUp.up = false;
        t.blocked = true;
      } else if (mode === ApicDeliveryMode.StartUp && !t.bringUp.up && !t.bringUp.initialised) {
        startRealModeAp(t, vector);
      } else {
        d.ipisIgnored++;
      }
    }
  }

  /** HypervisorOptions.onVmExit's call: the guest state read from the VMCS before the exit is handled. */
  private reportExit(v: Vcpu, exit: VmExit): boolean {
    const vmcs = v.vmcs;
    const state: VmExitGuestState = {
      reasonName: exitReasonName(exit.reason & 0xffff),
      rip: vmcs.readNatural(F.GUEST_RIP),
      rsp: vmcs.readNatural(F.GUEST_RSP),
      rflags: vmcs.readNatural(F.GUEST_RFLAGS),
      cr0: vmcs.readNatural(F.GUEST_CR0),
      cr3: vmcs.readNatural(F.GUEST_CR3),
      cr4: vmcs.readNatural(F.GUEST_CR4),
    };
    return this.onVmExit?.(v.domain, v, exit, state) === true;
  }

  private dispatch(ctx: ExitContext, exit: VmExit): void {
    const out = handleExit(ctx, exit);
    // A flush point (deferred IOTLB policy): the exit's handler, a hypercall included, returned.
    this.passthrough.iommu.flushPoint();
    const d = ctx.domain;
    if (out.kind === "crash") {
      d.crash(out.reason);
      return;
    }
    let event: ExitOutcome | undefined = out.kind === "inject" ? out : undefined;
    // A task switch through a gate consumes the event it was delivering: it is not delivered
    // again (Xen's vmx_vmexit_handler skips vmx_idtv_reinject for EXIT_REASON_TASK_SWITCH).
    const iv = (exit.reason & 0xffff) === ExitReason.TaskSwitch ? undefined : exit.idtVectoring;
    if (iv !== undefined && d.state === "running") {
      if (event === undefined) {
        // The exit interrupted the delivery of an event and was handled without an event of its
        // own: deliver that event again (Xen's vmx_idtv_reinject).
        event = { kind: "inject", vector: iv.vector, type: iv.type, ...(iv.errorCode !== undefined ? { errorCode: iv.errorCode } : {}), instructionLength: exit.instructionLength };
        d.exitStats.reinjected++;
      } else if (event.kind === "inject" && iv.type === IntrType.HardwareException && (event.type ?? IntrType.HardwareException) === IntrType.HardwareException) {
        // A new exception while delivering one: the SDM's double-fault rules (Xen's hvm_combine_hw_exceptions).
        const combined = combineExceptions(iv.vector, event.vector);
        if (combined === "triple-fault") {
          d.crash(`triple fault (exception ${event.vector} while delivering a double fault)`);
          return;
        }
        if (combined === Vector.DF) event = { kind: "inject", vector: Vector.DF, errorCode: 0 };
      }
    }
    if (event?.kind === "inject") {
      // A reflected #PF carries the faulting address: CR2 is not VMCS state, the vCPU holds it.
      if (event.cr2 !== undefined) ctx.vcpu.cpu.cr2 = event.cr2;
      const type = event.type ?? IntrType.HardwareException;
      const ec = event.errorCode !== undefined;
      const software = type === IntrType.SoftwareInterrupt || type === IntrType.SoftwareException || type === IntrType.PrivilegedSoftwareException;
      ctx.vcpu.vmcs.setField(F.VM_ENTRY_INTR_INFO_FIELD, (INTR_INFO_VALID | (ec ? INTR_INFO_ERROR_CODE_VALID : 0) | (type << 8) | event.vector) >>> 0);
      if (ec) ctx.vcpu.vmcs.setField(F.VM_ENTRY_EXCEPTION_ERROR_CODE, event.errorCode!);
      ctx.vcpu.vmcs.setField(F.VM_ENTRY_INSTRUCTION_LEN, software ? (event.instructionLength ?? 0) : 0);
    }
  }
}
