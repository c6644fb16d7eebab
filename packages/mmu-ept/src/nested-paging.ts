/**
 * The hypervisor side of EPT (Xen's arch/x86/mm/hap/ and mm/p2m-ept.c): `NestedPaging implements
 * MemoryVirtualizer`. It builds a domain's EPT from its p2m, configures each vCPU's VMCS for EPT,
 * handles EPT violations (MMIO to the device model, populate-on-demand frames allocated, log-dirty
 * write faults, real violations reported as a domain crash) and misconfigurations, walks the
 * guest's tables through EPT for the emulator (`gvaToGpa`), and keeps log-dirty mode by
 * write-protection or by EPT dirty flags for live migration.
 *
 * With EPT the guest owns CR3, INVLPG and its page faults: none of them exits, and there are no
 * shadow tables to keep in sync.
 */
import {
  PAGE_SIZE,
  accessErrorCode,
  gfn as asGfn,
  pagingMode,
  PagingFormat,
  type Gfn,
  type MachineMemory,
  type Mfn,
  type PageFault,
  type PagingMode,
  type U64,
} from "@vtlab/arch";
import {
  CR0_PG,
  CR0_WP,
  CR4_LA57,
  CR4_PAE,
  CR4_PSE,
  CR4_PGE,
  CR4_SMAP,
  CR4_SMEP,
  EFER_LMA,
  EFER_NXE,
  ExitReason,
  RFLAGS_AC,
  VmcsField,
  exitReasonName,
  type Cpu,
  type ExitOutcome,
  type MemoryVirtualizer,
  type VmExit,
  type Vmcs,
} from "@vtlab/cpu-vmx";
import { ALL_CACHES, type CacheSwitches, type NestedCacheSizes } from "./caches.js";
import { P2mType, p2mHasFrame, type DomainP2m, type FrameAllocator } from "@vtlab/p2m";
import {
  DEFAULT_EPT_CAPABILITIES,
  EPT_D,
  EPT_EFFECTIVE_READ,
  EPT_EFFECTIVE_WRITE,
  EPT_GLA_FAULT,
  EPT_GLA_VALID,
  EPT_LEVEL_NAMES,
  EPT_MISCONFIG_REASON_NAMES,
  EPT_R,
  EPT_RWX,
  EPT_W,
  EPT_WRITE_VIOLATION,
  EPT_X,
  describeEptEntry,
  describeQualification,
  eptMisconfigReason,
  eptReservedHighMask,
  type EptCapabilities,
} from "./ept.js";
import { EptP2m, isP2mError, type P2mError, type P2mUpdate } from "./p2m.js";
import { InveptType } from "./translator.js";
import { NestedStatus, NestedWalker } from "./walker.js";

// ---- VM-execution controls this mode sets (SDM 25.6.2, Tables 25-6 and 25-7) ----
/** SDM: "INVLPG exiting", primary processor-based control bit 9 (cleared: EPT needs no INVLPG exits). */
export const CPU_BASED_INVLPG_EXITING = 1 << 9;
/** SDM: "CR3-load exiting", bit 15 (cleared). */
export const CPU_BASED_CR3_LOAD_EXITING = 1 << 15;
/** SDM: "CR3-store exiting", bit 16 (cleared). */
export const CPU_BASED_CR3_STORE_EXITING = 1 << 16;
/** SDM: "activate secondary controls", bit 31. */
export const CPU_BASED_ACTIVATE_SECONDARY_CONTROLS = 1 << 31;
/** SDM: "enable EPT", secondary processor-based control bit 1. */
export const SECONDARY_EXEC_ENABLE_EPT = 1 << 1;
/** SDM: "enable VPID", secondary processor-based control bit 5. */
export const SECONDARY_EXEC_ENABLE_VPID = 1 << 5;
/** #PF (vector 14) in the exception bitmap: cleared, the guest handles its own page faults. */
const EXCEPTION_BITMAP_PF = 1 << 14;

export type LogDirtyMethod = "write-protect" | "dirty-bits";

export interface NestedPagingOptions {
  /** Host machine memory (EPT tables and the domain's frames live here). */
  readonly memory: MachineMemory;
  /** The domain's p2m. */
  readonly p2m: DomainP2m;
  /** Frames for EPT paging structures. */
  readonly frames: FrameAllocator;
  /** A machine frame for a populate-on-demand gfn (zeroed here), or undefined when the domain has none left. */
  readonly populate: (gfn: Gfn) => Mfn | undefined;
  readonly caps?: EptCapabilities;
  /** EPT page-walk length (default 4). */
  readonly levels?: 4 | 5;
  /** EPTP bit 6 (default: when the capabilities have it). */
  readonly accessedDirty?: boolean;
  /** Use 2 MiB and 1 GiB EPT pages where the p2m allows (default true). */
  readonly largePages?: boolean;
  /** How log-dirty mode finds written frames (default: "dirty-bits" with EPT A/D, else "write-protect"). */
  readonly logDirtyMethod?: LogDirtyMethod;
  /** Cache sizes and switches of each vCPU's walker. */
  readonly cacheSizes?: Partial<NestedCacheSizes>;
  readonly cacheSwitches?: CacheSwitches;
  /** VPID of the first vCPU set up (default 1; VPID 0 belongs to the host). */
  readonly firstVpid?: number;
}

/** A violation the hypervisor could not resolve (the domain is crashed). */
export interface EptReport {
  readonly gpa: number;
  /** The guest-linear address, when qualification bit 7 says it is valid. */
  readonly guestLinear: number | undefined;
  readonly qualification: number;
  readonly p2mType: P2mType;
  readonly message: string;
}

export interface NestedPagingStats {
  eptViolations: number;
  eptMisconfigs: number;
  mmio: number;
  populated: number;
  logDirtyFaults: number;
  crashes: number;
  invepts: number;
}

type Resolution = ExitOutcome | { readonly kind: "unresolved"; readonly type: P2mType; readonly message: string };

export class NestedPaging implements MemoryVirtualizer {
  readonly mode = "ept" as const;
  readonly memory: MachineMemory;
  readonly p2m: DomainP2m;
  readonly ept: EptP2m;
  readonly caps: EptCapabilities;
  readonly accessedDirty: boolean;
  readonly logDirtyMethod: LogDirtyMethod;
  readonly stats: NestedPagingStats = { eptViolations: 0, eptMisconfigs: 0, mmio: 0, populated: 0, logDirtyFaults: 0, crashes: 0, invepts: 0 };
  readonly reports: EptReport[] = [];
  private readonly options: NestedPagingOptions;
  private readonly walkers = new Map<Cpu, NestedWalker>();
  private readonly vpids = new Map<Cpu, number>();
  private readonly software: NestedWalker;
  private nextVpid: number;
  private logDirtyOn = false;
  private readonly dirty = new Set<number>();

  private constructor(options: NestedPagingOptions, ept: EptP2m, accessedDirty: boolean, method: LogDirtyMethod) {
    this.options = options;
    this.memory = options.memory;
    this.p2m = options.p2m;
    this.ept = ept;
    this.caps = ept.caps;
    this.accessedDirty = accessedDirty;
    this.logDirtyMethod = method;
    this.nextVpid = options.firstVpid ?? 1;
    // The hypervisor's own walker (gvaToGpa) keeps no caches: a software walk.
    this.software = new NestedWalker(this.memory, { caps: this.caps, switches: { tlb: false, nestedTlb: false, guestPsc: false, eptPsc: false } });
    const eptp = this.eptp;
    const bad = this.software.setEptp(eptp.lo, eptp.hi);
    if (bad !== undefined) throw new Error(`vtlab bug: NestedPaging built an invalid EPTP: ${bad.message}`);
  }

  /**
   * Build the domain's EPT from its p2m: RAM runs mapped R/W/X write-back, grant mappings R/W
   * (p2m_grant_map_rw) or R (p2m_grant_map_ro) without X as Xen's ept_p2m_type_to_flags does,
   * everything else not present.
   */
  static create(options: NestedPagingOptions): NestedPaging | P2mError {
    const caps = options.caps ?? DEFAULT_EPT_CAPABILITIES;
    const accessedDirty = options.accessedDirty ?? caps.accessedDirty;
    if (accessedDirty && !caps.accessedDirty) return { kind: "p2m-error", reason: "unsupported", message: "EPT accessed and dirty flags are not supported" };
    const method = options.logDirtyMethod ?? (accessedDirty ? "dirty-bits" : "write-protect");
    if (method === "dirty-bits" && !accessedDirty) return { kind: "p2m-error", reason: "unsupported", message: "log-dirty by dirty flags needs EPT accessed and dirty flags" };
    const ept = EptP2m.create({ memory: options.memory, frames: options.frames, levels: options.levels ?? 4, caps });
    if (isP2mError(ept)) return ept;
    const maxPageShift = options.largePages === false ? 12 : 30;
    for (const run of options.p2m.runs()) {
      if (!p2mHasFrame(run.type)) continue;
      const r = ept.map(run.gfn * PAGE_SIZE, run.mfn * PAGE_SIZE, run.count * PAGE_SIZE, { perms: eptPermsOf(run.type, false), maxPageShift });
      if (isP2mError(r)) return r;
    }
    return new NestedPaging(options, ept, accessedDirty, method);
  }

  /** The domain's EPTP (write-back paging structures; bit 6 as configured). */
  get eptp(): U64 {
    return this.ept.eptp(this.accessedDirty);
  }

  get logDirty(): boolean {
    return this.logDirtyOn;
  }

  /**
   * Configure a vCPU for EPT: EPT_POINTER; the secondary controls "enable EPT" and "enable VPID"
   * with a VPID of its own; "activate secondary controls"; no INVLPG, CR3-load or CR3-store
   * exiting and no #PF in the exception bitmap (the guest owns its paging). Also gives the vCPU
   * its `NestedWalker` (its TLB and paging-structure caches).
   */
  setupVcpu(cpu: Cpu, vmcs: Vmcs): void {
    const eptp = this.eptp;
    must(vmcs.vmwrite(VmcsField.EPT_POINTER, eptp.lo, eptp.hi));
    const primary = (vmcs.read32(VmcsField.CPU_BASED_VM_EXEC_CONTROL) | CPU_BASED_ACTIVATE_SECONDARY_CONTROLS) & ~(CPU_BASED_INVLPG_EXITING | CPU_BASED_CR3_LOAD_EXITING | CPU_BASED_CR3_STORE_EXITING);
    must(vmcs.vmwrite(VmcsField.CPU_BASED_VM_EXEC_CONTROL, primary >>> 0));
    const secondary = vmcs.read32(VmcsField.SECONDARY_VM_EXEC_CONTROL) | SECONDARY_EXEC_ENABLE_EPT | SECONDARY_EXEC_ENABLE_VPID;
    must(vmcs.vmwrite(VmcsField.SECONDARY_VM_EXEC_CONTROL, secondary >>> 0));
    let vpid = this.vpids.get(cpu);
    if (vpid === undefined) {
      vpid = this.nextVpid++;
      this.vpids.set(cpu, vpid);
    }
    must(vmcs.vmwrite(VmcsField.VIRTUAL_PROCESSOR_ID, vpid));
    must(vmcs.vmwrite(VmcsField.EXCEPTION_BITMAP, (vmcs.read32(VmcsField.EXCEPTION_BITMAP) & ~EXCEPTION_BITMAP_PF) >>> 0));
    let walker = this.walkers.get(cpu);
    if (walker === undefined) {
      walker = new NestedWalker(this.memory, { caps: this.caps, sizes: this.options.cacheSizes, switches: this.options.cacheSwitches ?? ALL_CACHES });
      this.walkers.set(cpu, walker);
    }
    const bad = walker.setEptp(eptp.lo, eptp.hi);
    if (bad !== undefined) throw new Error(`vtlab bug: NestedPaging built an invalid EPTP: ${bad.message}`);
    this.syncGuestContext(cpu);
  }

  /** The vCPU's walker (after `setupVcpu`): the SecondLevelTranslator the CPU calls. */
  walkerFor(cpu: Cpu): NestedWalker | undefined {
    return this.walkers.get(cpu);
  }

  /** Tell the vCPU's walker the guest's current CR3 and paging mode (after CR0/CR3/CR4/EFER changes). */
  syncGuestContext(cpu: Cpu): void {
    this.walkers.get(cpu)?.setGuestContext(guestRoot(cpu), guestMode(cpu), (cpu.cr0 & CR0_PG) !== 0);
  }

  /** EPT violations (48), misconfigurations (49), and #PF exception exits should the bitmap still ask for them. */
  handleExit(_cpu: Cpu, vmcs: Vmcs, exit: VmExit): ExitOutcome {
    const basic = exit.reason & 0xffff;
    if (basic === ExitReason.EptViolation) {
      this.stats.eptViolations++;
      const gpa = exit.guestPhysical ?? vmcs.readNatural(VmcsField.GUEST_PHYSICAL_ADDRESS);
      const q = exit.qualification;
      const gla = (q & EPT_GLA_VALID) !== 0 ? (exit.guestLinear ?? vmcs.readNatural(VmcsField.GUEST_LINEAR_ADDRESS)) : undefined;
      const r = this.resolve(gpa, q);
      if (r.kind !== "unresolved") return r;
      const message = `EPT violation at gpa 0x${gpa.toString(16)}${gla !== undefined ? ` (linear 0x${gla.toString(16)})` : ""}: ${describeQualification(q)}; ${r.message}`;
      this.reports.push({ gpa, guestLinear: gla, qualification: q, p2mType: r.type, message });
      this.stats.crashes++;
      return { kind: "crash", reason: message };
    }
    if (basic === ExitReason.EptMisconfig) {
      this.stats.eptMisconfigs++;
      this.stats.crashes++;
      const gpa = exit.guestPhysical ?? vmcs.readNatural(VmcsField.GUEST_PHYSICAL_ADDRESS);
      return { kind: "crash", reason: `EPT misconfiguration at gpa 0x${gpa.toString(16)}: ${this.diagnose(gpa)}` };
    }
    if (basic === ExitReason.ExceptionOrNmi && exit.interruption?.vector === 14) {
      // A guest #PF that reached us anyway: it is the guest's; give it back (CR2 in the qualification, SDM 28.2.1).
      return { kind: "inject", vector: 14, errorCode: exit.interruption.errorCode ?? 0, cr2: exit.qualification };
    }
    throw new Error(`vtlab bug: NestedPaging was handed exit ${exitReasonName(exit.reason)}, which EPT mode never asks for`);
  }

  /**
   * The guest-physical address `gva` maps to in the guest's tables (walked through EPT, as the
   * hardware would, A/D flags included), or the guest #PF. Guest tables in populate-on-demand or
   * write-protected (log-dirty) frames are resolved and the walk retried; a guest table in a frame
   * with no RAM reads as not present.
   */
  gvaToGpa(cpu: Cpu, gva: number, access: number): number | PageFault {
    if ((cpu.cr0 & CR0_PG) === 0) return gva;
    const w = this.software;
    const mode = guestMode(cpu);
    w.setGuestContext(guestRoot(cpu), mode);
    const hi = Math.floor(gva / 0x1_0000_0000) >>> 0;
    const lo = gva >>> 0;
    let references = 0;
    for (let attempt = 0; attempt < 16; attempt++) {
      const st = w.walkGuest(hi, lo, access);
      references += w.references;
      if (st === NestedStatus.Ok) return w.gpa;
      if (st === NestedStatus.PageFault) {
        return { kind: "page-fault", errorCode: w.errorCode, addressHi: hi, addressLo: lo, level: w.faultLevel, references, steps: [] };
      }
      const f = w.fault;
      if (f?.kind !== "ept-violation" || this.resolve(f.gpa, f.qualification).kind !== "resume") break;
    }
    return { kind: "page-fault", errorCode: accessErrorCode(access, mode), addressHi: hi, addressLo: lo, level: w.faultLevel, references, steps: [] };
  }

  /**
   * Change the p2m for [gfn, gfn + count) and the EPT with it (INVEPT on the walkers when
   * mappings shrank). The vCPUs' own TLBs (combined GVA-to-HPA mappings) are the caller's to
   * flush, with an INVEPT on each vCPU (Xen's ept_sync_domain).
   */
  setGfns(gfn: Gfn, count: number, type: P2mType, mfn?: Mfn): P2mError | undefined {
    this.p2m.setRange(gfn, count, type, mfn);
    const gpa = gfn * PAGE_SIZE;
    const size = count * PAGE_SIZE;
    let r: P2mUpdate | P2mError;
    if (p2mHasFrame(type)) {
      const perms = eptPermsOf(type, this.logDirtyOn && this.logDirtyMethod === "write-protect");
      r = this.ept.map(gpa, (mfn ?? 0) * PAGE_SIZE, size, { perms, maxPageShift: this.logDirtyOn || this.options.largePages === false ? 12 : 30 });
    } else {
      r = this.ept.unmap(gpa, size);
    }
    if (isP2mError(r)) return r;
    if (r.invalidate) this.flush();
    return undefined;
  }

  /** INVEPT single-context for the domain's EPTP on every vCPU (Xen's ept_sync_domain). */
  flush(): void {
    const eptp = this.eptp;
    this.stats.invepts++;
    for (const w of [...this.walkers.values(), this.software]) must(w.invept(InveptType.SingleContext, eptp.lo, eptp.hi));
  }

  /**
   * Start tracking written frames. Large pages are split to 4 KiB first; then either every RAM
   * page loses W (a write faults once, is recorded and gets W back) or every dirty flag is cleared
   * (the processor sets it on the first write). Either way an INVEPT follows. Fails (and stays
   * off) only when there are no frames to split large pages with.
   */
  enableLogDirty(): P2mError | undefined {
    if (this.logDirtyOn) return undefined;
    // Split first: the only step that needs frames, and harmless if it stops half way.
    for (const run of this.ramRuns()) {
      const r = this.ept.splitRange(run.gpa, run.size, 1);
      if (isP2mError(r)) {
        this.flush();
        return r;
      }
    }
    this.logDirtyOn = true;
    this.dirty.clear();
    for (const run of this.ramRuns()) {
      if (this.logDirtyMethod === "write-protect") mustUpdate(this.ept.protect(run.gpa, run.size, EPT_R | EPT_X));
      else mustUpdate(this.ept.clearDirty(run.gpa, run.size, () => undefined));
    }
    this.flush();
    return undefined;
  }

  /** Stop tracking: write permission back everywhere (pages stay 4 KiB). */
  disableLogDirty(): void {
    if (!this.logDirtyOn) return;
    this.logDirtyOn = false;
    if (this.logDirtyMethod === "write-protect") {
      for (const run of this.ramRuns()) mustUpdate(this.ept.protect(run.gpa, run.size, EPT_RWX));
    }
    this.dirty.clear();
    this.flush();
  }

  /** Frames written since log-dirty mode started or was last cleaned, ascending. */
  peekDirty(): Gfn[] {
    const set = new Set(this.dirty);
    if (this.logDirtyOn && this.logDirtyMethod === "dirty-bits") {
      for (const run of this.ramRuns()) {
        this.ept.forEachLeaf(run.gpa, run.size, (gpa, level, lo) => {
          if ((lo & EPT_D) === 0) return;
          const first = gpa / PAGE_SIZE;
          for (let i = 0; i < 512 ** (level - 1); i++) set.add(first + i);
        });
      }
    }
    return [...set].sort((a, b) => a - b).map((g) => asGfn(g));
  }

  /** Return the dirty frames and start a new round (re-protect or clear the dirty flags, then INVEPT). */
  cleanDirty(): Gfn[] {
    const result = this.peekDirty();
    if (!this.logDirtyOn) return result;
    if (this.logDirtyMethod === "write-protect") {
      for (const g of this.dirty) {
        if (this.p2m.lookup(asGfn(g)).type === P2mType.Ram) mustUpdate(this.ept.protect(g * PAGE_SIZE, PAGE_SIZE, EPT_R | EPT_X));
      }
    } else {
      for (const run of this.ramRuns()) mustUpdate(this.ept.clearDirty(run.gpa, run.size, () => undefined));
    }
    this.dirty.clear();
    this.flush();
    return result;
  }

  // ---- internals ----

  /** What to do about a violation at `gpa`: resume (handled), MMIO emulation, or unresolved. */
  private resolve(gpa: number, q: number): Resolution {
    const gfn = asGfn(Math.floor(gpa / PAGE_SIZE));
    const entry = this.p2m.lookup(gfn);
    const final = (q & EPT_GLA_VALID) === 0 || (q & EPT_GLA_FAULT) !== 0;
    const write = (q & EPT_WRITE_VIOLATION) !== 0;
    switch (entry.type) {
      case P2mType.Mmio:
        if (!final) return { kind: "unresolved", type: entry.type, message: "a guest paging structure in emulated MMIO" };
        this.stats.mmio++;
        return { kind: "mmio", gpa, write };
      case P2mType.PopulateOnDemand:
        return this.populate(gfn, write);
      case P2mType.Ram:
        if (this.logDirtyOn && this.logDirtyMethod === "write-protect" && write && (q & EPT_EFFECTIVE_READ) !== 0 && (q & EPT_EFFECTIVE_WRITE) === 0) {
          this.stats.logDirtyFaults++;
          this.dirty.add(gfn);
          mustUpdate(this.ept.protect(gfn * PAGE_SIZE, PAGE_SIZE, EPT_RWX)); // W back: no INVEPT needed (0 -> 1)
          return { kind: "resume" };
        }
        return { kind: "unresolved", type: entry.type, message: "the access is not permitted to this RAM frame" };
      case P2mType.GrantMapRo:
        // A write to a read-only grant mapping: Xen hands the access to its emulator, which
        // discards the write (P2M_DISCARD_WRITE_TYPES); a paging-structure update there cannot be.
        if (write && final) return { kind: "mmio", gpa, write };
        return { kind: "unresolved", type: entry.type, message: "the access is not permitted to this read-only grant mapping" };
      case P2mType.GrantMapRw:
        return { kind: "unresolved", type: entry.type, message: "the access is not permitted to this grant mapping (no execute)" };
      default:
        return { kind: "unresolved", type: entry.type, message: "nothing is mapped at this guest frame" };
    }
  }

  private populate(gfn: Gfn, write: boolean): Resolution {
    const mfn = this.options.populate(gfn);
    if (mfn === undefined) return { kind: "unresolved", type: P2mType.PopulateOnDemand, message: "populate-on-demand: no frame left for this domain" };
    this.memory.fill(mfn * PAGE_SIZE, PAGE_SIZE, 0);
    this.p2m.setRange(gfn, 1, P2mType.Ram, mfn);
    const protect = this.logDirtyOn && this.logDirtyMethod === "write-protect" && !write;
    const r = this.ept.map(gfn * PAGE_SIZE, mfn * PAGE_SIZE, PAGE_SIZE, { perms: protect ? EPT_R | EPT_X : EPT_RWX, maxPageShift: 12 });
    if (isP2mError(r)) return { kind: "unresolved", type: P2mType.PopulateOnDemand, message: `populate-on-demand: ${r.message}` };
    if (this.logDirtyOn) this.dirty.add(gfn);
    this.stats.populated++;
    return { kind: "resume" };
  }

  /** The entry a walk for `gpa` stops at, and why it is misconfigured. */
  private diagnose(gpa: number): string {
    const steps = this.ept.inspect(gpa);
    const rsvdHi = eptReservedHighMask(this.caps.maxPhyAddr);
    for (const s of steps) {
      if ((s.lo & EPT_RWX) === 0) continue;
      const reason = eptMisconfigReason(s.lo, s.hi, s.level, this.caps, rsvdHi);
      if (reason !== 0) {
        return `${EPT_LEVEL_NAMES[s.level]} at 0x${s.address.toString(16)} = 0x${s.hi.toString(16)}_${s.lo.toString(16).padStart(8, "0")} (${describeEptEntry(s.lo, s.level === 1 || (s.level <= 3 && (s.lo & 0x80) !== 0))}): ${EPT_MISCONFIG_REASON_NAMES[reason]}`;
      }
    }
    return "no misconfigured entry found on the walk (changed since the exit?)";
  }

  private *ramRuns(): Iterable<{ gpa: number; size: number }> {
    for (const run of this.p2m.runs()) {
      if (run.type === P2mType.Ram) yield { gpa: run.gfn * PAGE_SIZE, size: run.count * PAGE_SIZE };
    }
  }
}

/** EPT leaf rights for a p2m type with a frame (Xen's ept_p2m_type_to_flags): RAM R/W/X (R/X while log-dirty write-protects), grant mappings R/W or R, never X. */
function eptPermsOf(type: P2mType, writeProtect: boolean): number {
  if (type === P2mType.GrantMapRw) return EPT_R | EPT_W;
  if (type === P2mType.GrantMapRo) return EPT_R;
  return writeProtect ? EPT_R | EPT_X : EPT_RWX;
}

/** CR3 bits 51:12: the guest-physical address of the guest's top-level table (bits 31:5, the PDPT, in PAE paging). */
function guestRoot(cpu: Cpu): number {
  if ((cpu.efer & EFER_LMA) === 0 && (cpu.cr4 & CR4_PAE) !== 0) return ((cpu.cr3 >>> 0) & 0xffff_ffe0) >>> 0;
  return (Math.floor(cpu.cr3 / 4096) % 2 ** 40) * 4096;
}

/** The guest's paging mode from its control registers. */
function guestMode(cpu: Cpu): PagingMode {
  // 32-bit or PAE paging outside IA-32e mode (SDM Table 4-1); PAE walks read the vCPU's PDPTE
  // registers (loaded on MOV CR3, or from GUEST_PDPTE0-3 at VM entry under EPT).
  const format = (cpu.efer & EFER_LMA) !== 0 ? PagingFormat.Long : (cpu.cr4 & CR4_PAE) !== 0 ? PagingFormat.Pae : PagingFormat.Bits32;
  return pagingMode({
    la57: (cpu.cr4 & CR4_LA57) !== 0,
    wp: (cpu.cr0 & CR0_WP) !== 0,
    nxe: (cpu.efer & EFER_NXE) !== 0 && format !== PagingFormat.Bits32, // no XD in 32-bit paging
    smep: (cpu.cr4 & CR4_SMEP) !== 0,
    smap: (cpu.cr4 & CR4_SMAP) !== 0,
    pge: (cpu.cr4 & CR4_PGE) !== 0,
    ac: (cpu.flagsOther & RFLAGS_AC) !== 0,
    maxPhyAddr: cpu.paging.maxPhyAddr,
    format,
    pse: (cpu.cr4 & CR4_PSE) !== 0,
    pdpte: cpu.pdpte,
  });
}

function must(r: { readonly message: string } | undefined): void {
  if (r !== undefined) throw new Error(`vtlab bug: ${r.message}`);
}

function mustUpdate(r: P2mUpdate | P2mError): void {
  if (isP2mError(r)) throw new Error(`vtlab bug: EPT update failed: ${r.message}`);
}
