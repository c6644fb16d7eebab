/**
 * Shadow paging (Xen's arch/x86/mm/shadow): `ShadowPaging implements MemoryVirtualizer`.
 *
 * The CPU runs on shadow tables in machine memory that map guest-virtual straight to machine
 * addresses. Each guest page-table page has at most one shadow per level (a shadow mirrors the
 * flags of one guest table, so shadows are shared wherever the guest shares tables, and a CR3
 * switch to a known root reuses its whole tree). Shadows fill lazily on #PF exits; the guest's
 * page-table pages are write-protected and stores into them are emulated; large guest pages are
 * splintered into 4 KiB shadow "FL1" tables. Leaf tables may go out of sync (writable, resynced
 * on CR3 load, INVLPG, or a fault through them). Log-dirty mode keeps shadow leaves read-only
 * until the first write to each frame.
 *
 * Guests in 32-bit or PAE paging (outside long mode) are shadowed as Xen's multi.c does for 2- and
 * 3-level guests, with PAE shadow tables: the vCPU runs in PAE paging underneath, on a shadow root
 * of four PDPTEs (below 4 GiB, loaded by VM entry from GUEST_CR3). A PAE guest's page directories
 * and tables have the 4-level format's lower levels, so they share its L2/L1 shadows; its PDPTEs
 * are read when it loads CR3 (a reserved bit is #GP, SDM 4.4.1) and copied into a root of its own.
 * A 32-bit guest's page directory (1024 4-byte PDEs over 4 GiB) is shadowed by four PAE page
 * directories of 512 entries (each guest PDE covers two), and each of its page tables (1024 PTEs
 * over 4 MiB) by two PAE page tables; a 4 MiB page is splintered into two FL1 tables.
 */
import {
  ABORT,
  CPU_ACTIVATE_SECONDARY,
  CPU_CR3_LOAD_EXITING,
  CPU_CR3_STORE_EXITING,
  CPU_INVLPG_EXITING,
  CR0_WP,
  CR4_PSE,
  CrAccessType,
  RFLAGS_DF,
  Seg,
  ExitReason,
  SECONDARY_ENABLE_EPT,
  SECONDARY_ENABLE_VPID,
  VmcsField as F,
  decode,
  exitReasonName,
  type Cpu,
  type ExitOutcome,
  type Insn,
  type MemoryVirtualizer,
  type VmExit,
  type Vmcs,
  INVVPID_INDIVIDUAL_ADDRESS,
  INVVPID_SINGLE_CONTEXT,
} from "@vtlab/cpu-vmx";
import {
  Access,
  PAGE_SIZE,
  PFEC_ID,
  PFEC_P,
  PFEC_US,
  PFEC_WR,
  PTE_A,
  PTE_D,
  PTE_G,
  PTE_HI_XD,
  PTE_P,
  PTE_PAT_4K,
  PTE_PAT_LARGE,
  PTE_PCD,
  PTE_PS,
  PTE_PWT,
  PTE_RW,
  PTE_US,
  PageRights,
  PagingFormat,
  PdpteLoadStatus,
  Vector,
  WalkResult,
  WalkStatus,
  entryAddress,
  loadPaePdptes,
  gfn as asGfn,
  pagingMode,
  reservedHighMask,
  reservedLowAddressMask,
  walkLinear,
  type MachineMemory,
  type Mfn,
  type PageFault,
  type PagingMode,
  type U64,
} from "@vtlab/arch";
import { P2mType, p2mHasFrame, type DomainP2m, type FrameAllocator } from "@vtlab/p2m";
import { P2mPagingStructures, guestPagingMode, ramMfn, type GuestTableFault } from "./guest-walk.js";
import { emulatePteStore } from "./write-emulation.js";
import { MachinePagingStructures } from "./unpaged.js";
import { ReverseMap } from "./rmap.js";

/** Out-of-sync snapshots kept for reuse. */
const SNAPSHOT_POOL = 64;

/** Shadow page types (Xen's SH_type_l1_64_shadow ... SH_type_l4_64_shadow, fl1 for splintered large pages). */
export const ShadowType = {
  L1: 1,
  L2: 2,
  L3: 3,
  L4: 4,
  /** A splintered 2 MiB guest page: 512 shadow PTEs (Xen's SH_type_fl1_64_shadow). */
  Fl1: 5,
  /** A splintered 1 GiB guest page: 512 shadow PDEs pointing to FL1s. */
  Fl2: 6,
  /** Half of a 32-bit guest page table (512 of its 1024 PTEs; Xen's SH_type_l1_32_shadow spans both halves). */
  L1_32: 7,
  /** A quarter of a 32-bit guest page directory (256 PDEs, 512 shadow PDEs; Xen's SH_type_l2_32_shadow). */
  L2_32: 8,
  /** The PAE shadow root of a 32-bit guest: four PDPTEs, one per quarter of its page directory. */
  Root32: 9,
  /** The PAE shadow root of a PAE guest: its four PDPTEs, pointing at the shadows of its page directories. */
  RootPae: 10,
} as const;
export type ShadowType = (typeof ShadowType)[keyof typeof ShadowType];

/** #PF, bit 14 of the exception bitmap (SDM 25.6.3). */
export const EXCEPTION_BITMAP_PF = 1 << Vector.PF;

/** One shadow page: a machine frame holding shadow entries for one guest table (or splintered page). */
export interface ShadowPage {
  readonly key: string;
  readonly smfn: number;
  readonly type: ShadowType;
  /** Guest machine frame of the shadowed table (or guest frame number of a splintered page's base). */
  readonly gmfn: number;
  /** Shadow entries (machine addresses) pointing at this page. */
  readonly parents: Set<number>;
  /** Emulated writes to the guest table since a fault last walked through it (unshadow heuristic). */
  writesSinceUse: number;
}

/** Kinds of shadow fault, counted separately (Xen's perfc counters for sh_page_fault). */
export interface ShadowFaultCounts {
  /** The shadow lacked the translation; it was filled from the guest tables. */
  fill: number;
  /** A true guest fault reflected into the guest. */
  guest: number;
  /** The first write to a clean page (guest D set, shadow made writable). */
  dirtyBit: number;
  /** A write to a write-protected guest page table (emulated or unsynced). */
  ptWrite: number;
  /** A first write to a frame in log-dirty mode. */
  logDirty: number;
  /** An access to emulated MMIO. */
  mmio: number;
  /**
   * A supervisor write to a page the guest maps read-only while its CR0.WP = 0 (the write is
   * allowed; the vCPU runs with WP = 1, so it faults): emulated (Xen's sh_page_fault, emulate_readonly).
   */
  wpClear: number;
}

export interface ShadowStats {
  readonly faults: ShadowFaultCounts;
  /** VM exits handled, by exit-reason name. */
  readonly exits: Record<string, number>;
  emulatedWrites: number;
  resyncs: number;
  unsyncs: number;
  unshadows: number;
  cr3Loads: number;
  /** CR3 loads whose root was already shadowed (no rebuild). */
  cr3CacheHits: number;
  invlpgs: number;
  /** All shadows thrown away for lack of frames (Xen's shadow_blow_tables). */
  blows: number;
  /** Shadow pages freed to make room in a full pool (Xen's _shadow_prealloc; `poolPages`). */
  recycled: number;
  /** Most shadow pages in use at once. */
  peakShadowPages: number;
  /** STOS and MOVS elements (with or without REP) stored into write-protected guest tables by emulation. */
  emulatedStringElements: number;
  crashes: number;
  /**
   * Flushes of the vCPUs' TLBs (their VPIDs' translations, INVVPID single-context): after a
   * shadow entry was removed or restricted, or a vCPU moved to another shadow root. Zero
   * without VPIDs (every VM exit and entry flushes then).
   */
  tlbFlushes: number;
}

export interface ShadowPagingOptions {
  readonly memory: MachineMemory;
  readonly p2m: DomainP2m;
  /** Frames for shadow pages. */
  readonly frames: FrameAllocator;
  /** Leave leaf page tables writable and resync them later (default false). */
  readonly outOfSync?: boolean;
  /** Most leaf tables out of sync at once (default 8; Xen's SHADOW_OOS_PAGES is 3 per vCPU). */
  readonly maxOutOfSync?: number;
  /** Emulated writes to a guest table without a walk through it before it is unshadowed (default 16). */
  readonly unshadowAfterWrites?: number;
  /** MAXPHYADDR of the guest (default 46). */
  readonly maxPhyAddr?: number;
  /**
   * The shadow pool: most shadow pages held at once (Xen's per-domain shadow pool, sized by the
   * toolstack from xl.cfg's `shadow_memory`). When it is full the oldest shadows that no vCPU
   * runs on are freed (`recycled`). Default: unbounded (only the `FrameAllocator` limits it).
   * At least `MIN_SHADOW_POOL_PAGES`.
   */
  readonly poolPages?: number;
  /**
   * Give each vCPU a VPID (default true), as Xen does for every HVM guest: the vCPU's
   * translations then survive VM exits and entries (SDM 29.1), and the shadow code flushes them
   * where it must (see `tlbFlushes`). False: no VPID, so every VM exit and entry flushes the
   * TLB (SDM 29.4.3.1).
   */
  readonly vpid?: boolean;
  /** VPID of the first vCPU set up (default 1; VPID 0 belongs to the host). */
  readonly firstVpid?: number;
}

/**
 * The smallest shadow pool: a root and one path below it per vCPU, with room to spare (Xen's
 * shadow_min_acceptable_pages keeps 128 pages per vCPU; this model needs far fewer per fill).
 */
export const MIN_SHADOW_POOL_PAGES = 16;

interface VcpuState {
  /** The guest's CR3 as the guest sees it (MOV from CR3 reads it). */
  guestCr3: number;
  /** The vCPU's VPID, 0 without one (options.vpid false). */
  vpid: number;
  root: ShadowPage | undefined;
  /**
   * Guest paging off (`enterUnpaged`): the machine address of the identity page table the
   * shadow is built from instead of `guestCr3` (Xen's unpaged_pagetable; unpaged.ts).
   */
  unpagedRoot: number | undefined;
  /** The guest's paging format while its paging is on (`setGuestPaging`); long mode unless told. */
  format: PagingFormat;
  /** A PAE guest's PDPTE registers, read from its PDPT when it loaded CR3 (SDM 4.4.1). */
  readonly pdpte: Uint32Array;
  /** The vCPU's VMCS: its CR0 read shadow holds the guest's CR0.WP (the vCPU runs with WP = 1). */
  readonly vmcs: Vmcs;
}

interface OutOfSync {
  readonly snapshot: Uint32Array;
}

const ENTRIES = 512;
/** New shadow pages one fill may need below a root: L3, L2 (or FL2) and L1 (or FL1). */
const FILL_PAGES = 3;
/** Flags a shadow non-leaf entry copies from the guest entry. */
const NONLEAF_COPY = PTE_RW | PTE_US | PTE_PWT | PTE_PCD;
/** Flags a shadow leaf copies from a guest 4 KiB PTE (R/W is decided separately). */
const LEAF_COPY = PTE_US | PTE_PWT | PTE_PCD | PTE_PAT_4K | PTE_G;

/** The one "resume" outcome (no allocation per exit). */
const RESUME: ExitOutcome = Object.freeze({ kind: "resume" });


/**
 * Whether replacing the present shadow entry `oldLo:oldHi` by `lo:hi` can leave a TLB holding a
 * translation the new entry does not give: anything but adding R/W, U/S, A or D (a TLB entry
 * with fewer rights is walked again when an access needs more, SDM 4.10.4.3).
 */
function restricts(oldLo: number, oldHi: number, lo: number, hi: number): boolean {
  const grows = PTE_RW | PTE_US | PTE_A | PTE_D;
  return (lo & PTE_P) === 0 || hi !== oldHi || ((lo ^ oldLo) & ~grows) !== 0 || (oldLo & ~lo & (PTE_RW | PTE_US | PTE_D)) !== 0;
}

function tableIndex(level: number, vaHi: number, vaLo: number): number {
  switch (level) {
    case 4:
      return (vaHi >>> 7) & 0x1ff;
    case 3:
      return ((vaHi & 0x7f) << 2) | (vaLo >>> 30);
    case 2:
      return (vaLo >>> 21) & 0x1ff;
    default:
      return (vaLo >>> 12) & 0x1ff;
  }
}

/** Bits 31:0 and 63:32 of a frame's address, for building entries without BigInt. */
const addrLo = (frame: number): number => (frame % 0x10_0000) * PAGE_SIZE;
const addrHi = (frame: number): number => Math.floor(frame / 0x10_0000);

/** Add a small signed `delta` to register `r` at address size `a` (8: 64-bit halves; 4: 32-bit, zero-extended). */
function addToReg(cpu: Cpu, r: number, a: number, delta: number): void {
  const lo = cpu.lo[r]! >>> 0;
  if (a !== 8) {
    cpu.lo[r] = (lo + delta) | 0;
    cpu.hi[r] = 0;
    return;
  }
  const sum = lo + delta;
  const carry = Math.floor(sum / 2 ** 32); // -1, 0 or 1 for |delta| < 2^32
  cpu.lo[r] = sum | 0;
  cpu.hi[r] = (cpu.hi[r]! + carry) | 0;
}

const levelOf = (t: ShadowType): number =>
  t === ShadowType.Fl1 || t === ShadowType.L1_32 ? 1 : t === ShadowType.Fl2 || t === ShadowType.L2_32 ? 2 : t === ShadowType.Root32 || t === ShadowType.RootPae ? 3 : t;

/** A shadow of a guest page-table page (write-protected, in byGmfn): not an FL table or a PAE root. */
const shadowsGuestTable = (t: ShadowType): boolean => t <= ShadowType.L4 || t === ShadowType.L1_32 || t === ShadowType.L2_32;

/** Shadow roots of the PAE format (four PDPTEs): the walk of the shadow starts at level 3. */
const paeRoot = (t: ShadowType): boolean => t === ShadowType.Root32 || t === ShadowType.RootPae;

export class ShadowPaging implements MemoryVirtualizer {
  readonly mode = "shadow" as const;
  readonly memory: MachineMemory;
  readonly p2m: DomainP2m;
  readonly stats: ShadowStats = {
    faults: { fill: 0, guest: 0, dirtyBit: 0, ptWrite: 0, logDirty: 0, mmio: 0, wpClear: 0 },
    exits: {},
    emulatedWrites: 0,
    resyncs: 0,
    unsyncs: 0,
    unshadows: 0,
    cr3Loads: 0,
    cr3CacheHits: 0,
    invlpgs: 0,
    blows: 0,
    recycled: 0,
    peakShadowPages: 0,
    emulatedStringElements: 0,
    crashes: 0,
    tlbFlushes: 0,
  };
  /** Why the domain was crashed, last first. */
  readonly crashReasons: string[] = [];
  outOfSync: boolean;
  private readonly frames: FrameAllocator;
  private readonly maxOos: number;
  private readonly unshadowAfter: number;
  private readonly pages = new Map<string, ShadowPage>();
  private readonly bySmfn = new Map<number, ShadowPage>();
  /** Guest frame -> its table shadows (types L1-L4). A frame here is write-protected unless out of sync. */
  private readonly byGmfn = new Map<number, ShadowPage[]>();
  /** Reverse map: machine frame -> shadow leaf entries (machine addresses) mapping it (rmap.ts). */
  private readonly rmap = new ReverseMap();
  private readonly oos = new Map<number, OutOfSync>();
  /** Snapshots of resynced tables, for the next unsync to reuse (at most SNAPSHOT_POOL). */
  private readonly snapshotPool: Uint32Array[] = [];
  /** resync's copy of the table it compares with its snapshot. */
  private readonly resyncScratch = new Uint32Array(1024);
  private readonly resyncBytes = new Uint8Array(this.resyncScratch.buffer);
  private readonly vcpus = new Map<Cpu, VcpuState>();
  private readonly guestTables: P2mPagingStructures;
  private readonly unpagedTables: MachinePagingStructures;
  private readonly walkOut = new WalkResult<GuestTableFault>();
  private readonly gmode: PagingMode;
  private readonly scratch: U64 = { lo: 0, hi: 0 };
  private logDirtyOn = false;
  private readonly dirty = new Set<number>();
  private readonly poolPages: number;
  private readonly useVpid: boolean;
  private nextVpid: number;
  /**
   * A shadow entry was removed or restricted (or a vCPU changed roots) since the vCPUs' TLBs
   * were last flushed: the public entry points flush them before returning (`settle`), so a TLB
   * only ever holds translations the current shadows give (with VPIDs they survive exits).
   */
  private tlbStale = false;
  /** The last write the emulator refused and answered by unshadowing: RIP, frame, instructions retired then. */
  private lastRefused = { rip: -1, gmfn: -1, retired: -1 };

  constructor(options: ShadowPagingOptions) {
    this.memory = options.memory;
    this.p2m = options.p2m;
    this.frames = options.frames;
    this.outOfSync = options.outOfSync ?? false;
    this.maxOos = options.maxOutOfSync ?? 8;
    this.unshadowAfter = options.unshadowAfterWrites ?? 16;
    this.guestTables = new P2mPagingStructures(this.memory, this.p2m);
    this.unpagedTables = new MachinePagingStructures(this.memory);
    this.gmode = pagingMode({ maxPhyAddr: options.maxPhyAddr ?? 46 });
    const pool = options.poolPages ?? Number.POSITIVE_INFINITY;
    if (!(pool >= MIN_SHADOW_POOL_PAGES)) throw new Error(`ShadowPaging: poolPages ${pool} is below the minimum of ${MIN_SHADOW_POOL_PAGES}`);
    this.poolPages = pool;
    this.useVpid = options.vpid ?? true;
    this.nextVpid = options.firstVpid ?? 1;
  }

  /** The pool's size in shadow pages (Infinity when unbounded). */
  get poolSize(): number {
    return this.poolPages;
  }

  /** Shadow pages in use. */
  get shadowPagesInUse(): number {
    return this.pages.size;
  }

  /** Leaf tables currently out of sync. */
  get outOfSyncPages(): number {
    return this.oos.size;
  }

  /** The guest's CR3 as the guest believes it is. */
  guestCr3(cpu: Cpu): number | undefined {
    return this.vcpus.get(cpu)?.guestCr3;
  }

  /** The shadow root the CPU runs on for this vCPU (machine address). */
  shadowRoot(cpu: Cpu): number | undefined {
    const r = this.vcpus.get(cpu)?.root;
    return r === undefined ? undefined : r.smfn * PAGE_SIZE;
  }

  /** Shadows of a guest table frame, by type. */
  shadowsOf(gmfn: number): readonly ShadowType[] {
    return (this.byGmfn.get(gmfn) ?? []).map((p) => p.type);
  }

  // ---- MemoryVirtualizer ----

  /**
   * Shadow mode for a vCPU: CR3-load, CR3-store and INVLPG exiting; #PF in the exception bitmap
   * (every page fault exits: mask = match = 0); no CR3-target values; EPT off; CR0.WP owned by
   * the hypervisor: the vCPU always runs with WP = 1 (so that write-protected guest tables fault
   * for supervisor writes too), the guest's own WP is the read shadow's, and a guest running
   * with WP = 0 has its supervisor writes to read-only pages emulated (`pageFault`). GUEST_CR3 holds the guest's CR3
   * on entry to this call and the shadow root after it. With `unpagedRoot` (the machine address
   * of an identity table, see `enterUnpaged`) the vCPU starts with guest paging off.
   */
  setupVcpu(cpu: Cpu, vmcs: Vmcs, unpagedRoot?: number): void {
    const proc = vmcs.read32(F.CPU_BASED_VM_EXEC_CONTROL) | (this.useVpid ? CPU_ACTIVATE_SECONDARY : 0);
    vmcs.setField(F.CPU_BASED_VM_EXEC_CONTROL, (proc | CPU_CR3_LOAD_EXITING | CPU_CR3_STORE_EXITING | CPU_INVLPG_EXITING) >>> 0);
    const vpid = this.useVpid ? (this.vcpus.get(cpu)?.vpid ?? this.nextVpid++) : 0;
    if ((proc & CPU_ACTIVATE_SECONDARY) !== 0) {
      const secondary = vmcs.read32(F.SECONDARY_VM_EXEC_CONTROL) & ~SECONDARY_ENABLE_EPT;
      vmcs.setField(F.SECONDARY_VM_EXEC_CONTROL, (this.useVpid ? secondary | SECONDARY_ENABLE_VPID : secondary) >>> 0);
    }
    if (this.useVpid) vmcs.setField(F.VIRTUAL_PROCESSOR_ID, vpid);
    vmcs.setField(F.EXCEPTION_BITMAP, (vmcs.read32(F.EXCEPTION_BITMAP) | EXCEPTION_BITMAP_PF) >>> 0);
    vmcs.setField(F.PAGE_FAULT_ERROR_CODE_MASK, 0);
    vmcs.setField(F.PAGE_FAULT_ERROR_CODE_MATCH, 0);
    vmcs.setField(F.CR3_TARGET_COUNT, 0);
    vmcs.setField(F.CR0_GUEST_HOST_MASK, (vmcs.read32(F.CR0_GUEST_HOST_MASK) | CR0_WP) >>> 0);
    vmcs.setField(F.CR0_READ_SHADOW, (vmcs.read32(F.CR0_READ_SHADOW) | CR0_WP) >>> 0);
    vmcs.setField(F.GUEST_CR0, (vmcs.read32(F.GUEST_CR0) | CR0_WP) >>> 0);
    const state: VcpuState = { guestCr3: vmcs.readNatural(F.GUEST_CR3), vpid, root: undefined, unpagedRoot: undefined, format: PagingFormat.Long, pdpte: new Uint32Array(8), vmcs };
    this.vcpus.set(cpu, state);
    if (unpagedRoot !== undefined) state.unpagedRoot = unpagedRoot;
    const root = unpagedRoot !== undefined ? this.rootFor(unpagedRoot, true) : this.rootFor(state.guestCr3);
    if (typeof root === "string") throw new Error(`setupVcpu: ${root}`);
    state.root = root;
    vmcs.setNatural(F.GUEST_CR3, this.cr3Value(root, unpagedRoot ?? state.guestCr3));
    this.tlbStale = true; // a new root for this vCPU
    this.settle();
  }

  /**
   * The guest turned paging off (or starts with it off): the vCPU keeps running on real paging,
   * on the shadow of `identityRoot`, the machine address of a 4-level table that maps
   * guest-linear to the same guest-physical address: its tables link by machine address, its
   * leaves hold GPAs (Xen runs a shadow guest with CR0.PG = 0 the same way, on its "unpaged"
   * identity table, which no p2m entry maps: the guest cannot reach it). The guest's own CR3
   * stays what the guest sees and is used when it turns paging on (`leaveUnpaged`); `guestCr3`
   * sets it. Returns an error message if the table cannot be shadowed.
   */
  enterUnpaged(cpu: Cpu, vmcs: Vmcs, identityRoot: number, guestCr3?: number): string | undefined {
    const state = this.vcpus.get(cpu);
    if (state === undefined) return "enterUnpaged on a vCPU that setupVcpu never saw";
    if (guestCr3 !== undefined) state.guestCr3 = guestCr3;
    this.resyncAll();
    const root = this.rootFor(identityRoot, true);
    if (typeof root === "string") return root;
    state.unpagedRoot = identityRoot;
    state.format = PagingFormat.Long; // the identity table is a long-mode table
    state.root = root;
    vmcs.setNatural(F.GUEST_CR3, this.cr3Value(root, identityRoot));
    this.tlbStale = true;
    this.settle();
    return undefined;
  }

  /**
   * The guest turned paging on: shadow its own CR3 from now on, in `format` (long mode unless
   * told: `PagingFormat.Bits32` or `PagingFormat.Pae` for a guest outside long mode, whose vCPU
   * then runs in PAE paging underneath on a PAE shadow root). Returns an error message if that
   * CR3 is not RAM; "#GP" if a PAE guest's PDPT has a present entry with a reserved bit (the
   * caller injects #GP(0), SDM 4.4.1, and nothing changed).
   */
  leaveUnpaged(cpu: Cpu, vmcs: Vmcs, format: PagingFormat = PagingFormat.Long): string | undefined {
    const state = this.vcpus.get(cpu);
    if (state === undefined) return "leaveUnpaged on a vCPU that setupVcpu never saw";
    if (format === PagingFormat.Pae) {
      const pdpte = new Uint32Array(8);
      const r = loadPaePdptes(this.guestTables, state.guestCr3, this.gmode.maxPhyAddr, pdpte);
      if (r.status === PdpteLoadStatus.Reserved) return "#GP";
      if (r.status !== PdpteLoadStatus.Ok) return `guest CR3 0x${state.guestCr3.toString(16)}: the PDPT is not RAM`;
      state.pdpte.set(pdpte);
    }
    this.resyncAll();
    const root = this.rootForFormat(state.guestCr3, format, state);
    if (typeof root === "string") return root;
    state.format = format;
    state.unpagedRoot = undefined;
    state.root = root;
    vmcs.setNatural(F.GUEST_CR3, this.cr3Value(root, state.guestCr3));
    this.tlbStale = true;
    this.settle();
    return undefined;
  }

  /** The guest paging format a vCPU is shadowed in (long mode while its paging is off). */
  guestFormat(cpu: Cpu): PagingFormat {
    const state = this.vcpus.get(cpu);
    return state === undefined || state.unpagedRoot !== undefined ? PagingFormat.Long : state.format;
  }

  /** The vCPU runs on the identity table (guest paging off). */
  unpaged(cpu: Cpu): boolean {
    return this.vcpus.get(cpu)?.unpagedRoot !== undefined;
  }

  handleExit(cpu: Cpu, vmcs: Vmcs, exit: VmExit): ExitOutcome {
    const out = this.exit(cpu, vmcs, exit);
    this.settle();
    return out;
  }

  private exit(cpu: Cpu, vmcs: Vmcs, exit: VmExit): ExitOutcome {
    const name = exitReasonName(exit.reason);
    this.stats.exits[name] = (this.stats.exits[name] ?? 0) + 1;
    const state = this.vcpus.get(cpu);
    if (state === undefined) return this.crash("handleExit on a vCPU that setupVcpu never saw");
    switch (exit.reason) {
      case ExitReason.ExceptionOrNmi:
        if (exit.interruption?.vector !== Vector.PF) return this.crash(`exception exit for vector ${exit.interruption?.vector ?? "?"} is not a shadow-paging exit`);
        return this.pageFault(cpu, vmcs, state, exit.qualification, exit.interruption.errorCode ?? 0, exit);
      case ExitReason.CrAccess:
        return this.crAccess(cpu, vmcs, state, exit);
      case ExitReason.Invlpg:
        return this.invlpg(cpu, vmcs, state, exit);
      default:
        return this.crash(`${name} is not a shadow-paging exit`);
    }
  }

  gvaToGpa(cpu: Cpu, gva: number, access: number): number | PageFault {
    const state = this.vcpus.get(cpu);
    const mode = this.modeOf(cpu, state);
    const cr3 = state === undefined ? cpu.cr3 : state.unpagedRoot ?? state.guestCr3;
    const out = this.walkOut;
    const vaLo = gva >>> 0;
    const vaHi = Math.floor(gva / 0x1_0000_0000) >>> 0;
    const tables = state?.unpagedRoot !== undefined ? this.unpagedTables : this.guestTables;
    const status = walkLinear(out, mode, this.guestRootAddress(cr3, mode), vaHi, vaLo, access, tables);
    if (status === WalkStatus.Ok) return out.physicalAddress;
    const errorCode = status === WalkStatus.PageFault ? out.errorCode : PFEC_P | (access & (PFEC_WR | PFEC_US | PFEC_ID));
    return { kind: "page-fault", errorCode, addressHi: vaHi, addressLo: vaLo, level: out.faultLevel, references: out.references, steps: [] };
  }

  /** Log-dirty: every shadow leaf becomes read-only; the first write to each frame is recorded. */
  enableLogDirty(): void {
    this.logDirtyOn = true;
    this.dirty.clear();
    this.rmap.forEachEntry((a) => this.clearRw(a));
    this.settle();
  }

  disableLogDirty(): void {
    this.logDirtyOn = false;
    this.dirty.clear();
  }

  get logDirty(): boolean {
    return this.logDirtyOn;
  }

  /** Guest frames written since log-dirty was enabled or last cleaned; `clean` write-protects them again. */
  dirtyFrames(clean = false): number[] {
    const gfns = [...this.dirty].sort((a, b) => a - b);
    if (clean) {
      this.dirty.clear();
      for (const g of gfns) {
        const m = ramMfn(this.p2m, g);
        if (m >= 0) this.rmap.forEach(m, (a) => this.clearRw(a));
      }
      this.settle();
    }
    return gfns;
  }

  // ---- exits ----

  private advance(vmcs: Vmcs, exit: VmExit): void {
    vmcs.setNatural(F.GUEST_RIP, vmcs.readNatural(F.GUEST_RIP) + exit.instructionLength);
  }

  private crAccess(cpu: Cpu, vmcs: Vmcs, state: VcpuState, exit: VmExit): ExitOutcome {
    const q = exit.qualification;
    const cr = q & 15;
    const type = (q >>> 4) & 3;
    const gpr = (q >>> 8) & 15;
    if (cr === 0 && type === CrAccessType.MovToCr) {
      // The guest's WP goes to the read shadow only; the vCPU keeps WP = 1 (Xen's
      // hvm_update_guest_cr for shadow mode).
      vmcs.setField(F.GUEST_CR0, (cpu.regAddr(gpr) | CR0_WP) >>> 0);
      vmcs.setField(F.CR0_READ_SHADOW, cpu.regAddr(gpr) >>> 0);
      this.advance(vmcs, exit);
      return RESUME;
    }
    if (cr !== 3) return this.crash(`CR${cr} access exit is not a shadow-paging exit`);
    if (type === CrAccessType.MovFromCr) {
      cpu.setRegFromNumber(gpr, state.guestCr3);
      // RSP is guest state in the VMCS, reloaded from GUEST_RSP at the next VM entry (SDM 27.3.1.3):
      // a MOV from CR3 into RSP (Linux's PTI syscall entry does it) must land there.
      if (gpr === 4) vmcs.setNatural(F.GUEST_RSP, state.guestCr3);
      this.advance(vmcs, exit);
      return RESUME;
    }
    if (type !== CrAccessType.MovToCr) return this.crash(`CR3 access type ${type}`);
    // MOV to CR3 exits before the CPU checks the value (SDM 26.1.1: only #UD, privilege and
    // I/O-permission faults take priority over the exit), so the reserved-bit check is ours, as
    // the CPU does it under EPT: bits 63:MAXPHYADDR must be 0, else #GP(0) (SDM Vol. 3A 4.5,
    // Table 4-12; MOV CR: "write a 1 to any reserved bit in CR3"). With CR4.PCIDE = 0 (this
    // CPU has no PCIDs) bits 2:0 and 11:5 are ignored, not reserved; outside 64-bit mode the
    // operand is 32 bits.
    const wide = cpu.mode64;
    const vLo = cpu.lo[gpr]! >>> 0;
    const vHi = wide ? cpu.hi[gpr]! >>> 0 : 0;
    const maxPhy = cpu.paging.maxPhyAddr;
    if (maxPhy < 64 && vHi >>> (maxPhy - 32) !== 0) return { kind: "inject", vector: Vector.GP, errorCode: 0 };
    const value = vHi * 2 ** 32 + vLo;
    const out = this.updateCr3(cpu, vmcs, value);
    if (out.kind === "resume") this.advance(vmcs, exit);
    return out;
  }

  /**
   * A guest CR3 load (Xen's paging_update_cr3 / sh_update_cr3): the MOV to CR3 exit's path, and
   * the one the hypervisor's task-switch emulation takes for the new task's CR3. `value` has
   * passed the reserved-bit check already. In PAE paging the PDPTEs are loaded (#GP(0) and
   * nothing loaded on a reserved bit, SDM 4.4.1); the shadows are resynced and the vCPU moves to
   * the shadow root for `value`. With the guest's paging off the value waits for CR0.PG.
   * Returns resume (RIP untouched), the #GP to inject, or a crash.
   */
  updateCr3(cpu: Cpu, vmcs: Vmcs, value: number): ExitOutcome {
    const state = this.vcpus.get(cpu);
    if (state === undefined) return this.crash("updateCr3 on a vCPU that setupVcpu never saw");
    this.stats.cr3Loads++;
    if (state.unpagedRoot !== undefined) {
      // Paging is off for the guest: the value waits for CR0.PG (SDM: CR3 is only used with paging on).
      state.guestCr3 = value;
      return RESUME;
    }
    if (state.format === PagingFormat.Pae) {
      // MOV CR3 in PAE paging loads the PDPTEs: a present one with a reserved bit is #GP(0),
      // and nothing is loaded (SDM 4.4.1).
      const pdpte = new Uint32Array(8);
      const r = loadPaePdptes(this.guestTables, value, this.gmode.maxPhyAddr, pdpte);
      if (r.status === PdpteLoadStatus.Reserved) return { kind: "inject", vector: Vector.GP, errorCode: 0 };
      if (r.status !== PdpteLoadStatus.Ok) return this.crash(`guest CR3 0x${value.toString(16)}: the PDPT is not RAM`);
      state.pdpte.set(pdpte);
    }
    this.resyncAll();
    const root = this.rootForFormat(value, state.format, state);
    if (typeof root === "string") return this.crash(root);
    state.guestCr3 = value;
    state.root = root;
    vmcs.setNatural(F.GUEST_CR3, this.cr3Value(root, value));
    // The guest's MOV to CR3 flushes its TLB (SDM 4.10.4.1; the exit kept the CPU from doing it).
    this.tlbStale = true;
    this.settle();
    return RESUME;
  }

  private invlpg(_cpu: Cpu, vmcs: Vmcs, state: VcpuState, exit: VmExit): ExitOutcome {
    this.stats.invlpgs++;
    this.resyncAll();
    const stale = this.tlbStale;
    const gva = exit.qualification;
    const root = state.root;
    if (root !== undefined) {
      const vaLo = gva >>> 0;
      const vaHi = Math.floor(gva / 0x1_0000_0000) >>> 0;
      let table = root.smfn * PAGE_SIZE;
      for (let level = paeRoot(root.type) ? 3 : 4; level >= 1; level--) {
        const at = table + tableIndex(level, vaHi, vaLo) * 8;
        this.memory.read64(at, this.scratch);
        const lo = this.scratch.lo;
        if ((lo & PTE_P) === 0) break;
        if (level === 1) {
          this.setLeaf(at, 0, 0, -1);
          break;
        }
        table = entryAddress(lo, this.scratch.hi);
      }
    }
    // The guest's INVLPG did not run (it exited): invalidate the address in every vCPU's TLB
    // (the shadow leaf just dropped is shared), unless a resync already asks for a whole flush.
    this.tlbStale = stale;
    if (this.useVpid && !stale) for (const [cpu, s] of this.vcpus) cpu.invvpid(INVVPID_INDIVIDUAL_ADDRESS, s.vpid, gva);
    this.advance(vmcs, exit);
    return RESUME;
  }

  private pageFault(cpu: Cpu, vmcs: Vmcs, state: VcpuState, gva: number, ec: number, exit: VmExit): ExitOutcome {
    const mode = this.modeOf(cpu, state);
    if (mode.la57) return this.crash("5-level guest paging is not shadowed here");
    const access = ec & (PFEC_WR | PFEC_US | PFEC_ID) & (Access.Write | Access.User | Access.Fetch);
    const write = (ec & PFEC_WR) !== 0;
    const out = this.walkOut;
    const vaLo = gva >>> 0;
    const vaHi = Math.floor(gva / 0x1_0000_0000) >>> 0;
    const rootGpa = this.guestRootAddress(state.unpagedRoot ?? state.guestCr3, mode);
    const status = walkLinear(out, mode, rootGpa, vaHi, vaLo, access, state.unpagedRoot !== undefined ? this.unpagedTables : this.guestTables);
    if (status === WalkStatus.AccessFault) {
      const f = out.accessFault as GuestTableFault;
      return this.crash(`guest paging structure at GPA 0x${f.gpa.toString(16)} is ${f.type}, not RAM`);
    }
    if (status === WalkStatus.PageFault) {
      this.stats.faults.guest++;
      return this.reflect(out.errorCode, gva, exit);
    }
    const gfn = Math.floor(out.physicalAddress / PAGE_SIZE);
    const target = this.p2m.lookup(asGfn(gfn));
    // A supervisor write the guest's tables refuse but its CR0.WP = 0 allows (SDM 4.6.1): the
    // shadow keeps the guest's R/W = 0 (user-mode writes must still fault) and the vCPU runs with
    // WP = 1, so the store is emulated, as Xen's sh_page_fault does ("emulate_readonly").
    const wpClear = write && (ec & PFEC_US) === 0 && !mode.wp && (out.rights & PageRights.Writable) === 0;
    if (target.type === P2mType.Mmio) {
      this.stats.faults.mmio++;
      return { kind: "mmio", gpa: out.physicalAddress, write };
    }
    if (target.type === P2mType.GrantMapRo && write) {
      // A write to a read-only grant mapping: as Xen does for its write-discard types, the
      // emulator takes the access and drops the write (the shadow leaf stays read-only).
      this.stats.faults.mmio++;
      return { kind: "mmio", gpa: out.physicalAddress, write };
    }
    if (!p2mHasFrame(target.type)) return this.crash(`the guest maps GVA 0x${gva.toString(16)} to GPA 0x${out.physicalAddress.toString(16)}, which is ${target.type}`);
    const mfn = target.mfn as number;
    if (wpClear) {
      this.stats.faults.wpClear++;
      if (this.logDirtyOn) this.dirty.add(gfn);
      const what = this.isWriteProtected(mfn) ? "a guest page table" : "a page the guest maps read-only (with CR0.WP = 0)";
      return this.emulateWrite(cpu, vmcs, state, gva, mfn, (out.physicalAddress % PAGE_SIZE) >>> 0, exit, what);
    }
    if (write && this.isWriteProtected(mfn)) {
      this.stats.faults.ptWrite++;
      if (this.outOfSync && this.canUnsync(mfn)) {
        this.unsync(mfn);
      } else {
        return this.emulateWrite(cpu, vmcs, state, gva, mfn, (out.physicalAddress % PAGE_SIZE) >>> 0, exit);
      }
    } else if (write && (ec & PFEC_P) !== 0) {
      if (this.logDirtyOn && !this.dirty.has(gfn)) this.stats.faults.logDirty++;
      else this.stats.faults.dirtyBit++;
    } else {
      this.stats.faults.fill++;
    }
    if (this.logDirtyOn && write) this.dirty.add(gfn);
    this.reserve(FILL_PAGES);
    const r = this.fill(state, vaHi, vaLo);
    if (r !== undefined) return this.crash(r);
    // A fault through an out-of-sync leaf table: the fill took the guest's current entry, so the
    // snapshot takes it too (the other entries wait for the resync).
    const last = out.steps - 1;
    if (this.oos.size > 0 && last >= 0 && out.stepLevel[last] === 1) this.snapshotEntry(out.stepAddress[last] as number);
    // A fault that interrupted an event delivery is resumed like any other: the VMX exit handler
    // delivers the event again from the IDT-vectoring information (Xen's vmx_idtv_reinject).
    return RESUME;
  }

  private reflect(errorCode: number, gva: number, _exit: VmExit): ExitOutcome {
    return { kind: "inject", vector: Vector.PF, errorCode, cr2: gva };
  }

  // ---- the shadow cache ----

  private rootAddress(cr3: number): number {
    return Math.floor(cr3 / PAGE_SIZE) * PAGE_SIZE % 2 ** 52;
  }

  /** Where the guest's walk starts: CR3 bits 51:12, or bits 31:5 (the PDPT) in PAE paging. */
  private guestRootAddress(cr3: number, mode: PagingMode): number {
    return mode.format === PagingFormat.Pae ? ((cr3 >>> 0) & 0xffff_ffe0) >>> 0 : this.rootAddress(cr3);
  }

  /** The guest's paging mode: its control-register flags, and the format and PDPTEs kept here. */
  private modeOf(cpu: Cpu, state: VcpuState | undefined): PagingMode {
    const mode = guestPagingMode(cpu, this.gmode);
    // The vCPU runs with CR0.WP = 1; the guest's WP is the CR0 read shadow's (WP is host-owned).
    if (state !== undefined) mode.wp = (state.vmcs.read32(F.CR0_READ_SHADOW) & CR0_WP) !== 0;
    const format = state === undefined || state.unpagedRoot !== undefined ? PagingFormat.Long : state.format;
    mode.format = format;
    mode.pse = (cpu.cr4 & CR4_PSE) !== 0;
    if (format === PagingFormat.Bits32) mode.nxe = false; // 32-bit paging has no XD bit
    if (state !== undefined) mode.pdpte = state.pdpte;
    return mode;
  }

  /** The shadow root for a guest CR3 in `format`. */
  private rootForFormat(cr3: number, format: PagingFormat, state: VcpuState): ShadowPage | string {
    if (format === PagingFormat.Long) return this.rootFor(cr3);
    const root = format === PagingFormat.Bits32 ? this.rootFor32(cr3) : this.rootForPae(cr3, state.pdpte);
    if (typeof root === "string") return root;
    // The vCPU runs in PAE paging underneath, where CR3 holds 32 bits (SDM 4.4).
    if (root.smfn * PAGE_SIZE >= 0x1_0000_0000) return `the PAE shadow root for guest CR3 0x${cr3.toString(16)} is above 4 GiB (machine frame 0x${root.smfn.toString(16)})`;
    return root;
  }

  /**
   * A 32-bit guest's root: four PDPTEs pointing at the four quarters of the shadow of its page
   * directory (each quarter is a PAE page directory for 1 GiB).
   */
  private rootFor32(cr3: number): ShadowPage | string {
    const gmfn = ramMfn(this.p2m, Math.floor((cr3 >>> 0) / PAGE_SIZE));
    if (gmfn < 0) return `guest CR3 0x${cr3.toString(16)} is not a RAM frame`;
    const cached = this.pages.get(`${ShadowType.Root32}:${gmfn}`);
    if (cached !== undefined) this.stats.cr3CacheHits++;
    const root = cached ?? this.getOrCreate(ShadowType.Root32, gmfn, 0);
    if (root === undefined) return "out of shadow memory";
    for (let i = 0; i < 4; i++) {
      const at = root.smfn * PAGE_SIZE + i * 8;
      if (((this.memory.read32(at) as number) & PTE_P) !== 0) continue;
      const part = this.getOrCreate(ShadowType.L2_32, gmfn, i + 1);
      if (part === undefined) return "out of shadow memory";
      this.setLink(at, addrLo(part.smfn) + PTE_P, addrHi(part.smfn), part);
    }
    return root;
  }

  /**
   * A PAE guest's root: its four PDPTEs (as loaded at the CR3 load), each present one pointing at
   * the shadow of the page directory it names. Refilled at every CR3 load, as the PDPTE registers are.
   */
  private rootForPae(cr3: number, pdpte: Uint32Array): ShadowPage | string {
    const gpa = ((cr3 >>> 0) & 0xffff_ffe0) >>> 0;
    const gmfn = ramMfn(this.p2m, Math.floor(gpa / PAGE_SIZE));
    if (gmfn < 0) return `guest CR3 0x${cr3.toString(16)} is not a RAM frame`;
    const sig = 1 + ((gpa & 0xfe0) >>> 5); // one root per 32-byte PDPT in the frame
    if (this.pages.has(`${ShadowType.RootPae}:${gmfn}:${sig}`)) this.stats.cr3CacheHits++;
    const root = this.getOrCreate(ShadowType.RootPae, gmfn, sig);
    if (root === undefined) return "out of shadow memory";
    for (let i = 0; i < 4; i++) {
      const at = root.smfn * PAGE_SIZE + i * 8;
      const lo = pdpte[2 * i] as number;
      const hi = pdpte[2 * i + 1] as number;
      const pdGmfn = (lo & PTE_P) !== 0 ? ramMfn(this.p2m, entryAddress(lo, hi) / PAGE_SIZE) : -1;
      if (pdGmfn < 0) {
        // Not present (or not RAM: the guest's walk through it then fails and is reported).
        this.setLink(at, 0, 0, undefined);
        continue;
      }
      const child = this.getOrCreate(ShadowType.L2, pdGmfn, 0);
      if (child === undefined) return "out of shadow memory";
      this.setLink(at, addrLo(child.smfn) + (PTE_P | (lo & (PTE_PWT | PTE_PCD))), addrHi(child.smfn), child);
    }
    return root;
  }

  private cr3Value(root: ShadowPage, guestCr3: number): number {
    return root.smfn * PAGE_SIZE + (guestCr3 & (PTE_PWT | PTE_PCD));
  }

  /** The L4 shadow for a guest CR3 (or, `machine`, the identity table's): cached if the guest has run on this root before. */
  private rootFor(cr3: number, machine = false): ShadowPage | string {
    const gmfn = machine ? Math.floor(this.rootAddress(cr3) / PAGE_SIZE) : ramMfn(this.p2m, Math.floor(this.rootAddress(cr3) / PAGE_SIZE));
    if (gmfn < 0) return `guest CR3 0x${cr3.toString(16)} is not a RAM frame`;
    const key = `${ShadowType.L4}:${gmfn}`;
    const cached = this.pages.get(key);
    if (cached !== undefined) {
      this.stats.cr3CacheHits++;
      return cached;
    }
    this.reserve(1);
    const p = this.getOrCreate(ShadowType.L4, gmfn, 0);
    return p ?? "out of shadow memory";
  }

  private getOrCreate(type: ShadowType, gmfn: number, sig: number): ShadowPage | undefined {
    const key = sig === 0 ? `${type}:${gmfn}` : `${type}:${gmfn}:${sig}`;
    const found = this.pages.get(key);
    if (found !== undefined) return found;
    let smfn = this.frames.allocate();
    if (smfn === undefined) {
      this.blow();
      smfn = this.frames.allocate();
      if (smfn === undefined) return undefined;
    }
    const page: ShadowPage = { key, smfn, type, gmfn, parents: new Set(), writesSinceUse: 0 };
    this.pages.set(key, page);
    this.bySmfn.set(smfn, page);
    this.rmap.addPage(smfn);
    if (this.pages.size > this.stats.peakShadowPages) this.stats.peakShadowPages = this.pages.size;
    if (shadowsGuestTable(type)) {
      if (this.oos.has(gmfn) && type !== ShadowType.L1) this.resync(gmfn);
      const list = this.byGmfn.get(gmfn);
      if (list === undefined) {
        this.byGmfn.set(gmfn, [page]);
        // The frame becomes a page table: write-protect every mapping of it.
        this.rmap.forEach(gmfn, (a) => this.clearRw(a));
      } else list.push(page);
    }
    return page;
  }

  /** Write-protected: a guest table with shadows that is not out of sync. */
  private isWriteProtected(mfn: number): boolean {
    return this.byGmfn.has(mfn) && !this.oos.has(mfn);
  }

  private clearRw(entryAddr: number): void {
    const lo = this.memory.read32(entryAddr) as number;
    if ((lo & PTE_RW) !== 0) {
      this.memory.write32(entryAddr, (lo & ~(PTE_RW | PTE_D)) >>> 0);
      this.tlbStale = true;
    }
  }

  /** Write a shadow leaf entry (machine frame `mfn`, or -1 to clear), keeping the reverse map. */
  private setLeaf(at: number, lo: number, hi: number, mfn: number): void {
    this.memory.read64(at, this.scratch);
    if (this.scratch.lo === lo >>> 0 && this.scratch.hi === hi >>> 0) return; // unchanged (a refill): nothing to do
    if ((this.scratch.lo & PTE_P) !== 0) {
      this.rmap.remove(at, entryAddress(this.scratch.lo, this.scratch.hi) / PAGE_SIZE);
      if (restricts(this.scratch.lo, this.scratch.hi, lo, hi)) this.tlbStale = true;
    }
    this.memory.write64(at, lo, hi);
    if (mfn >= 0) this.rmap.add(at, mfn);
  }

  /** Write a shadow non-leaf entry pointing at `child` (or clear it), keeping the parent links. */
  private setLink(at: number, lo: number, hi: number, child: ShadowPage | undefined): void {
    this.memory.read64(at, this.scratch);
    // Unchanged (a fill through a path already linked): the link and its parent record stand.
    if (this.scratch.lo === lo >>> 0 && this.scratch.hi === hi >>> 0 && (child === undefined || child.parents.has(at))) return;
    if ((this.scratch.lo & PTE_P) !== 0) {
      const old = this.bySmfn.get(entryAddress(this.scratch.lo, this.scratch.hi) / PAGE_SIZE);
      old?.parents.delete(at);
      if (restricts(this.scratch.lo, this.scratch.hi, lo, hi)) this.tlbStale = true;
    }
    this.memory.write64(at, lo, hi);
    child?.parents.add(at);
  }

  /** Destroy a shadow page: unlink it from its parents, drop its entries, free its frame. */
  private destroy(page: ShadowPage): void {
    if (page.parents.size > 0) this.tlbStale = true;
    for (const at of page.parents) this.memory.write64(at, 0, 0);
    page.parents.clear();
    const base = page.smfn * PAGE_SIZE;
    const leaf = levelOf(page.type) === 1;
    for (let i = 0; i < ENTRIES; i++) {
      const at = base + i * 8;
      const lo = this.memory.read32(at) as number;
      if ((lo & PTE_P) === 0) continue;
      if (leaf) this.setLeaf(at, 0, 0, -1);
      else this.setLink(at, 0, 0, undefined);
    }
    this.pages.delete(page.key);
    this.bySmfn.delete(page.smfn);
    this.rmap.removePage(page.smfn);
    if (shadowsGuestTable(page.type)) {
      const list = this.byGmfn.get(page.gmfn);
      if (list !== undefined) {
        const k = list.indexOf(page);
        if (k >= 0) list.splice(k, 1);
        if (list.length === 0) {
          this.byGmfn.delete(page.gmfn);
          this.oos.delete(page.gmfn);
        }
      }
    }
    this.frames.free(page.smfn as Mfn);
  }

  private isRoot(page: ShadowPage): boolean {
    for (const s of this.vcpus.values()) if (s.root === page) return true;
    return false;
  }

  /** Remove every shadow of a guest frame (it is no longer a page table). Current roots stay. */
  unshadow(gmfn: number): boolean {
    const list = this.byGmfn.get(gmfn);
    if (list === undefined) return false;
    let removed = false;
    for (const p of [...list]) {
      if (this.isRoot(p)) continue;
      this.destroy(p);
      removed = true;
    }
    if (removed) this.stats.unshadows++;
    this.settle();
    return removed;
  }

  /**
   * The p2m entry of a frame changed under the running guest (ballooned out, moved, a grant
   * mapping made or removed): drop every shadow leaf that maps machine frame `mfn` (Xen's
   * sh_remove_all_mappings), and, if the frame was a shadowed guest page table, its shadows
   * (sh_remove_shadows; current roots stay, emptied of nothing: the guest reloading CR3 finds the
   * p2m as it is now). The next access refaults and refills from the p2m. The vCPUs' TLBs are
   * the caller's to flush. Returns the shadow entries dropped.
   */
  removeAllMappings(mfn: number): number {
    let dropped = 0;
    for (let at = this.rmap.first(mfn); at >= 0; at = this.rmap.first(mfn)) {
      this.setLeaf(at, 0, 0, -1);
      dropped++;
    }
    if (this.byGmfn.has(mfn)) {
      this.resync(mfn);
      this.unshadow(mfn);
    }
    this.settle();
    return dropped;
  }

  /**
   * Make room for `need` new shadow pages in a bounded pool (Xen's shadow_prealloc, called
   * before a fault builds shadows): free the oldest shadows no vCPU runs on, an eighth of the
   * pool beyond what is needed, so the cost is spread over many fills. A freed shadow's parent
   * entries are cleared; its guest frame stops being write-protected if it has no other shadow,
   * and the next fault through it shadows it again.
   */
  private reserve(need: number): void {
    if (this.pages.size + need <= this.poolPages) return;
    const target = Math.max(0, this.poolPages - need - Math.floor(this.poolPages / 8));
    for (const p of this.pages.values()) {
      if (this.pages.size <= target) break;
      if (this.isRoot(p)) continue;
      this.destroy(p);
      this.stats.recycled++;
    }
  }

  /** Out of frames: throw every shadow away except the current roots, which are emptied (Xen's shadow_blow_tables). */
  private blow(): void {
    this.stats.blows++;
    this.resyncAll();
    for (const p of [...this.pages.values()]) if (!this.isRoot(p)) this.destroy(p);
    for (const s of this.vcpus.values()) {
      const r = s.root;
      if (r === undefined) continue;
      for (let i = 0; i < ENTRIES; i++) {
        const at = r.smfn * PAGE_SIZE + i * 8;
        if (((this.memory.read32(at) as number) & PTE_P) !== 0) this.setLink(at, 0, 0, undefined);
      }
    }
  }

  // ---- filling ----

  /** Build the shadow path for the translation in `walkOut` (a successful guest walk). */
  private fill(state: VcpuState, vaHi: number, vaLo: number): string | undefined {
    const out = this.walkOut;
    let page = state.root;
    if (page === undefined) return "no shadow root";
    if (page.type === ShadowType.Root32) return this.fill32(page, vaLo);
    for (let i = 0; i < out.steps; i++) {
      const level = out.stepLevel[i] as number;
      const lo = out.stepLo[i] as number;
      const hi = out.stepHi[i] as number;
      const at = page.smfn * PAGE_SIZE + tableIndex(level, vaHi, vaLo) * 8;
      page.writesSinceUse = 0;
      if (level === 1) {
        const gfn = entryAddress(lo, hi) / PAGE_SIZE;
        return this.fillLeaf(at, lo, hi, gfn);
      }
      const xd = hi & PTE_HI_XD;
      if ((lo & PTE_PS) !== 0) {
        // A large guest page: splinter into FL tables keyed by the page's base gfn and attributes.
        const baseGfn = entryAddress(lo, hi, level === 2 ? 0xffe0_0000 : 0xc000_0000) / PAGE_SIZE;
        const sig = 1 | (lo & (PTE_D | PTE_G | PTE_PWT | PTE_PCD | PTE_PAT_LARGE));
        const fl = this.getOrCreate(level === 2 ? ShadowType.Fl1 : ShadowType.Fl2, baseGfn, sig);
        if (fl === undefined) return "out of shadow memory";
        this.setLink(at, addrLo(fl.smfn) + ((lo & NONLEAF_COPY) | PTE_P | PTE_A), addrHi(fl.smfn) | xd, fl);
        // The large page's 4 KiB piece: rights live in the link above, attributes here.
        const offsetPages = (vaLo >>> 12) & (level === 2 ? 0x1ff : 0x3ffff);
        const pteLo = PTE_P | PTE_RW | PTE_US | PTE_A | (lo & (PTE_G | PTE_PWT | PTE_PCD)) | ((lo & PTE_PAT_LARGE) !== 0 ? PTE_PAT_4K : 0);
        let flPage = fl;
        if (level === 3) {
          const fl1 = this.getOrCreate(ShadowType.Fl1, baseGfn + (offsetPages & ~511), sig);
          if (fl1 === undefined) return "out of shadow memory";
          const at2 = fl.smfn * PAGE_SIZE + tableIndex(2, vaHi, vaLo) * 8;
          this.setLink(at2, addrLo(fl1.smfn) + (PTE_P | PTE_RW | PTE_US | PTE_A), addrHi(fl1.smfn), fl1);
          flPage = fl1;
        }
        const at1 = flPage.smfn * PAGE_SIZE + tableIndex(1, vaHi, vaLo) * 8;
        return this.fillLeaf(at1, pteLo, 0, baseGfn + offsetPages, (lo & PTE_D) !== 0);
      }
      // The identity table links by machine address (unpaged.ts); guest tables by GPA.
      const childGmfn = state.unpagedRoot !== undefined ? entryAddress(lo, hi) / PAGE_SIZE : ramMfn(this.p2m, entryAddress(lo, hi) / PAGE_SIZE);
      if (childGmfn < 0) return `guest table at GPA 0x${entryAddress(lo, hi).toString(16)} is not RAM`;
      // The shadow entry already links the child's shadow (a fill below a path built before):
      // the same page getOrCreate would find, without building its key.
      let child: ShadowPage | undefined;
      this.memory.read64(at, this.scratch);
      if ((this.scratch.lo & PTE_P) !== 0) {
        const linked = this.bySmfn.get(entryAddress(this.scratch.lo, this.scratch.hi) / PAGE_SIZE);
        if (linked !== undefined && linked.gmfn === childGmfn && linked.type === level - 1) child = linked;
      }
      child ??= this.getOrCreate((level - 1) as ShadowType, childGmfn, 0);
      if (child === undefined) return "out of shadow memory";
      // A PAE root holds PDPTEs: P, PWT and PCD only (their R/W, U/S and A are reserved, SDM Table 4-8).
      const flags = page.type === ShadowType.RootPae ? PTE_P | (lo & (PTE_PWT | PTE_PCD)) : (lo & NONLEAF_COPY) | PTE_P | PTE_A;
      this.setLink(at, addrLo(child.smfn) + flags, addrHi(child.smfn) | (page.type === ShadowType.RootPae ? 0 : xd), child);
      page = child;
    }
    return "guest walk ended without a leaf";
  }

  /**
   * Build the PAE shadow path for a 32-bit guest's translation in `walkOut` (steps: its PDE, then
   * its PTE unless the PDE maps a 4 MiB page). The root's PDPTE i (bits 31:30) points at quarter i
   * of the page directory's shadow, whose entry j (bits 29:21) is half of guest PDE 256i + j/2;
   * that entry points at half (bit 21) of the guest page table's shadow, or at an FL1 of half the
   * 4 MiB page.
   */
  private fill32(root: ShadowPage, vaLo: number): string | undefined {
    const out = this.walkOut;
    const quarter = vaLo >>> 30;
    const half = (vaLo >>> 21) & 1;
    const pdGmfn = root.gmfn;
    const l2 = this.getOrCreate(ShadowType.L2_32, pdGmfn, quarter + 1);
    if (l2 === undefined) return "out of shadow memory";
    this.setLink(root.smfn * PAGE_SIZE + quarter * 8, addrLo(l2.smfn) + PTE_P, addrHi(l2.smfn), l2);
    l2.writesSinceUse = 0;
    const pde = out.stepLo[0] as number;
    const at2 = l2.smfn * PAGE_SIZE + ((vaLo >>> 21) & 0x1ff) * 8;
    if (out.steps === 1) {
      // A 4 MiB page (PSE): its 4 MiB base gfn, with PSE-36 bits, from the walk's address.
      const baseGfn = Math.floor(out.physicalAddress / PAGE_SIZE) - ((vaLo >>> 12) & 0x3ff) + half * 512;
      const sig = 1 | (pde & (PTE_D | PTE_G | PTE_PWT | PTE_PCD | PTE_PAT_LARGE));
      const fl = this.getOrCreate(ShadowType.Fl1, baseGfn, sig);
      if (fl === undefined) return "out of shadow memory";
      this.setLink(at2, addrLo(fl.smfn) + ((pde & NONLEAF_COPY) | PTE_P | PTE_A), addrHi(fl.smfn), fl);
      const pteLo = PTE_P | PTE_RW | PTE_US | PTE_A | (pde & (PTE_G | PTE_PWT | PTE_PCD)) | ((pde & PTE_PAT_LARGE) !== 0 ? PTE_PAT_4K : 0);
      return this.fillLeaf(fl.smfn * PAGE_SIZE + ((vaLo >>> 12) & 0x1ff) * 8, pteLo, 0, baseGfn + ((vaLo >>> 12) & 0x1ff), (pde & PTE_D) !== 0);
    }
    const ptGmfn = ramMfn(this.p2m, (pde & 0xffff_f000) >>> 12);
    if (ptGmfn < 0) return `guest table at GPA 0x${((pde & 0xffff_f000) >>> 0).toString(16)} is not RAM`;
    const l1 = this.getOrCreate(ShadowType.L1_32, ptGmfn, half + 1);
    if (l1 === undefined) return "out of shadow memory";
    this.setLink(at2, addrLo(l1.smfn) + ((pde & NONLEAF_COPY) | PTE_P | PTE_A), addrHi(l1.smfn), l1);
    l1.writesSinceUse = 0;
    const pte = out.stepLo[1] as number;
    return this.fillLeaf(l1.smfn * PAGE_SIZE + ((vaLo >>> 12) & 0x1ff) * 8, pte, 0, (pte & 0xffff_f000) >>> 12);
  }

  /**
   * A shadow leaf for the guest PTE `lo:hi` mapping `gfn`. Writable only when the guest allows
   * writes and its D is already set (so the first write faults and sets D), the frame is not a
   * write-protected page table, and log-dirty has seen the frame written.
   */
  private fillLeaf(at: number, lo: number, hi: number, gfn: number, dirty = (lo & PTE_D) !== 0): string | undefined {
    const entry = this.p2m.lookup(asGfn(gfn));
    if (!p2mHasFrame(entry.type)) {
      if (entry.type === P2mType.Mmio) {
        this.setLeaf(at, 0, 0, -1);
        return undefined;
      }
      return `GFN 0x${gfn.toString(16)} is ${entry.type}`;
    }
    const mfn = entry.mfn as number;
    // A grant mapping: read-only ones never get W (a write faults and is discarded); writable
    // ones are another domain's frame, so neither this domain's page-table write protection nor
    // its log-dirty tracking applies (Xen's p2m_grant_map_rw / _ro in _sh_propagate).
    const ram = entry.type === P2mType.Ram;
    const writable =
      (lo & PTE_RW) !== 0 && dirty && entry.type !== P2mType.GrantMapRo && (!ram || (!this.isWriteProtected(mfn) && (!this.logDirtyOn || this.dirty.has(gfn))));
    this.setLeaf(at, addrLo(mfn) + ((lo & LEAF_COPY) | PTE_P | PTE_A | (writable ? PTE_RW | PTE_D : 0)), addrHi(mfn) | (hi & PTE_HI_XD), mfn);
    return undefined;
  }

  // ---- emulated writes to guest page tables ----

  private emulateWrite(cpu: Cpu, vmcs: Vmcs, state: VcpuState, gva: number, gmfn: number, offset: number, exit: VmExit, what = "a guest page table"): ExitOutcome {
    const rip = vmcs.readNatural(F.GUEST_RIP);
    // The instruction bytes are read through the shadow: make sure it maps the code.
    const code = this.gvaToGpa(cpu, rip, Access.Fetch);
    if (typeof code !== "number") return this.crash(`cannot fetch the instruction at 0x${rip.toString(16)} that wrote ${what}`);
    {
      const vaLo = rip >>> 0;
      const vaHi = Math.floor(rip / 0x1_0000_0000) >>> 0;
      this.reserve(FILL_PAGES);
      const r = this.fill(state, vaHi, vaLo);
      if (r !== undefined) return this.crash(r);
    }
    let insn: Insn;
    try {
      insn = decode(cpu, rip);
    } catch (e) {
      if (e !== ABORT) throw e;
      cpu.pendingVector = -1;
      return this.crash(`decoding the instruction at 0x${rip.toString(16)} faulted`);
    }
    // STOS / REP STOS (AA, AB) and MOVS / REP MOVS (A4, A5): memset and memcpy of a table, the
    // forms that livelocked when answered by unshadowing (the frame is re-shadowed by the very
    // fault that retries it when the table maps itself). Emulated as Xen's x86_emulate does
    // string stores into shadowed tables, but every element in this frame at once: one exit per
    // 4 KiB of the destination.
    const op = insn.opcode;
    if (op === 0xa4 || op === 0xa5 || op === 0xaa || op === 0xab) {
      const r = this.emulateString(cpu, vmcs, state, insn, gmfn, offset, rip);
      if (r !== undefined) return r;
    }
    const size = insn.opSize;
    if ((offset & (size - 1)) !== 0) return this.crash(`misaligned ${size}-byte store to ${what} at GVA 0x${gva.toString(16)}`);
    const at = gmfn * PAGE_SIZE + offset;
    const oldLo = this.memory.read32(at) as number;
    const oldHi = size === 8 ? (this.memory.read32(at + 4) as number) : 0;
    const s = emulatePteStore(insn, oldLo, oldHi, cpu.lo, cpu.hi, vmcs.readNatural(F.GUEST_RFLAGS));
    if (typeof s === "string") {
      // An instruction the PTE-write emulator does not take (REP MOVS copying into a recycled
      // table frame, say): as Xen's sh_page_fault does when emulation fails, stop shadowing the
      // frame and let the guest retry the instruction natively on a now writable mapping. If the
      // same instruction faults on the same frame again before anything retired, the retry
      // re-shadowed it (the table maps itself): that would never end, so the domain is crashed.
      const retired = cpu.counters.instructions;
      const again = this.lastRefused.rip === rip && this.lastRefused.gmfn === gmfn && this.lastRefused.retired === retired;
      this.lastRefused = { rip, gmfn, retired };
      if (!again && this.unshadow(gmfn)) return RESUME;
      return this.crash(
        `unsupported write to ${what} at GVA 0x${gva.toString(16)}, RIP 0x${rip.toString(16)}: ${s}${again ? " (unshadowing it did not help: the retry shadowed it again)" : ""}`,
      );
    }
    if (s.write) {
      this.memory.write32(at, s.lo);
      if (size === 8) this.memory.write32(at + 4, s.hi);
    }
    if (s.reg >= 0) {
      cpu.lo[s.reg] = s.regLo | 0;
      cpu.hi[s.reg] = s.regHi | 0;
    }
    if (s.flagsMask !== 0) {
      const f = vmcs.readNatural(F.GUEST_RFLAGS);
      vmcs.setNatural(F.GUEST_RFLAGS, ((f & ~s.flagsMask) | s.flags) >>> 0);
    }
    this.stats.emulatedWrites++;
    vmcs.setNatural(F.GUEST_RIP, rip + insn.len);
    if (s.write) this.propagateWrite(gmfn, offset);
    const pages = this.byGmfn.get(gmfn);
    if (pages !== undefined) {
      let n = 0;
      for (const p of pages) n = Math.max(n, ++p.writesSinceUse);
      if (n >= this.unshadowAfter) this.unshadow(gmfn);
    }
    void exit;
    return RESUME;
  }

  /**
   * STOS / REP STOS, or MOVS / REP MOVS, whose store faulted on the write-protected table `gmfn`
   * at `offset`: store every element that falls in this frame (RCX of them at most, downward with
   * RFLAGS.DF), keep the shadows in step with each changed entry, and update RDI, RSI and RCX as
   * the CPU does per iteration (SDM Vol. 2 "STOS", "MOVS", "REP"). RIP moves on only when the
   * count is done; otherwise the guest resumes the instruction with the rest, which stores on
   * into the next frame. MOVS reads its source through the guest's tables and the p2m, element
   * by element after the stores before it (overlap as the CPU does it); a source it cannot read
   * ends the batch, and the CPU takes that element (and its fault) itself. Returns undefined for
   * a form it does not take (MOVS outside 64-bit mode or with an FS/GS source, an element across
   * the frame's end, a first MOVS source it cannot read).
   */
  private emulateString(cpu: Cpu, vmcs: Vmcs, state: VcpuState, insn: Insn, gmfn: number, offset: number, rip: number): ExitOutcome | undefined {
    const movs = insn.opcode === 0xa4 || insn.opcode === 0xa5;
    const size = insn.opcode === 0xaa || insn.opcode === 0xa4 ? 1 : insn.opSize;
    const srcSeg = insn.segOverride ? insn.seg : Seg.DS;
    if (movs && (!cpu.mode64 || srcSeg === Seg.FS || srcSeg === Seg.GS)) return undefined;
    const a = insn.addrSize;
    const down = (vmcs.readNatural(F.GUEST_RFLAGS) & RFLAGS_DF) !== 0;
    // An element straddling the frame's end: not a PTE write; the caller unshadows and retries.
    if (offset + size > PAGE_SIZE) return undefined;
    const rcxLo = cpu.lo[1]! >>> 0;
    const rcxHi = a === 8 ? cpu.hi[1]! >>> 0 : 0;
    const rep = insn.rep !== 0;
    if (rep && rcxLo === 0 && rcxHi === 0) {
      // REP with RCX = 0 stores nothing (it cannot have faulted; another vCPU's doing at most).
      vmcs.setNatural(F.GUEST_RIP, rip + insn.len);
      return RESUME;
    }
    const room = down ? Math.floor(offset / size) + 1 : Math.floor((PAGE_SIZE - offset) / size);
    const want = !rep ? 1 : rcxHi !== 0 ? room : Math.min(room, rcxLo);
    const base = gmfn * PAGE_SIZE;
    const step = down ? -size : size;
    let n = 0;
    let lowest = offset;
    let highest = offset;
    for (; n < want; n++) {
      const o = offset + n * step;
      let vLo = cpu.lo[0]! >>> 0;
      let vHi = cpu.hi[0]! >>> 0;
      if (movs) {
        const got = this.readSource(cpu, state, a, n * step, size);
        if (got === undefined) break;
        vLo = this.scratch.lo;
        vHi = this.scratch.hi;
      }
      const at = base + o;
      if (size === 8) {
        this.memory.write32(at, vLo);
        this.memory.write32(at + 4, vHi);
      } else if (size === 4) this.memory.write32(at, vLo);
      else if (size === 2) this.memory.write16(at, vLo & 0xffff);
      else this.memory.write8(at, vLo & 0xff);
      lowest = Math.min(lowest, o);
      highest = Math.max(highest, o);
    }
    if (n === 0) return undefined;
    // Every 4-byte entry written (a 32-bit guest's table has 4-byte entries; 8-byte ones are propagated per half, harmlessly twice).
    for (let o = lowest - (lowest & 3); o <= highest + size - 1; o += 4) this.propagateWrite(gmfn, o);
    this.stats.emulatedWrites++;
    this.stats.emulatedStringElements += n;
    // RDI (and RSI) += or -= n * size; RCX -= n, at the address size (32-bit registers zero-extend).
    addToReg(cpu, 7, a, n * step);
    if (movs) addToReg(cpu, 6, a, n * step);
    if (rep) addToReg(cpu, 1, a, -n);
    const done = !rep || (rcxHi === 0 && rcxLo === n);
    if (done) vmcs.setNatural(F.GUEST_RIP, rip + insn.len);
    const pages = this.byGmfn.get(gmfn);
    if (pages !== undefined) {
      let w = 0;
      for (const p of pages) w = Math.max(w, ++p.writesSinceUse);
      if (w >= this.unshadowAfter) this.unshadow(gmfn);
    }
    return RESUME;
  }

  /**
   * The `size`-byte MOVS source element at RSI + `delta` (64-bit mode, segment base 0), read
   * through the guest's tables and the p2m into `scratch`; undefined if the guest walk faults or
   * a byte is not RAM. Exact 64-bit address arithmetic on halves.
   */
  private readSource(cpu: Cpu, state: VcpuState, a: number, delta: number, size: number): true | undefined {
    let lo = 0;
    let hi = 0;
    const mode = guestPagingMode(cpu, this.gmode);
    const tables = state.unpagedRoot !== undefined ? this.unpagedTables : this.guestTables;
    for (let b = 0; b < size; b++) {
      let vaLo = (cpu.lo[6]! >>> 0) + delta + b;
      let vaHi = a === 8 ? cpu.hi[6]! >>> 0 : 0;
      const carry = Math.floor(vaLo / 2 ** 32);
      vaLo = vaLo >>> 0;
      if (a === 8) vaHi = (vaHi + carry) >>> 0;
      const status = walkLinear(this.walkOut, mode, this.rootAddress(state.unpagedRoot ?? state.guestCr3), vaHi, vaLo, Access.Read, tables);
      if (status !== WalkStatus.Ok) return undefined;
      const gpa = this.walkOut.physicalAddress;
      const e = this.p2m.lookup(asGfn(Math.floor(gpa / PAGE_SIZE)));
      if (!p2mHasFrame(e.type)) return undefined;
      const v = this.memory.read8(e.mfn * PAGE_SIZE + (gpa % PAGE_SIZE));
      if (typeof v !== "number") return undefined;
      if (b < 4) lo = (lo | (v << (8 * b))) >>> 0;
      else hi = (hi | (v << (8 * (b - 4)))) >>> 0;
    }
    this.scratch.lo = lo;
    this.scratch.hi = hi;
    return true;
  }

  /**
   * A guest entry changed: fix the dependent shadow entries. A leaf is re-derived when the new
   * guest PTE is valid and already accessed (else dropped, so the next access sets A); links
   * to lower tables are dropped and refilled by the next fault.
   */
  private propagate(gmfn: number, index: number): void {
    const pages = this.byGmfn.get(gmfn);
    if (pages === undefined) return;
    const gLo = this.memory.read32(gmfn * PAGE_SIZE + index * 8) as number;
    const gHi = this.memory.read32(gmfn * PAGE_SIZE + index * 8 + 4) as number;
    for (const p of pages) {
      if (p.type === ShadowType.L1_32 || p.type === ShadowType.L2_32) continue; // propagateWrite's
      const at = p.smfn * PAGE_SIZE + index * 8;
      if (p.type === ShadowType.L1) {
        if ((gLo & (PTE_P | PTE_A)) === (PTE_P | PTE_A) && !this.reservedLeaf(gLo, gHi)) {
          const r = this.fillLeaf(at, gLo, gHi, entryAddress(gLo, gHi) / PAGE_SIZE);
          if (r !== undefined) this.setLeaf(at, 0, 0, -1);
        } else this.setLeaf(at, 0, 0, -1);
      } else {
        this.setLink(at, 0, 0, undefined);
      }
    }
  }

  /**
   * An emulated store at byte `offset` of guest table frame `gmfn`: fix the shadows of the entry
   * it wrote. 8-byte entries (long-mode and PAE tables) go through `propagate`; a 32-bit guest's
   * 4-byte entry maps to one leaf of a half page table or two links of a quarter page directory.
   */
  private propagateWrite(gmfn: number, offset: number): void {
    const pages = this.byGmfn.get(gmfn);
    if (pages === undefined) return;
    let wide = false;
    const e = offset >>> 2; // the 4-byte entry
    for (const p of pages) {
      if (p.type === ShadowType.L1_32) {
        const part = p.key.endsWith(":1") ? 0 : 1;
        if (e >>> 9 !== part) continue;
        const gLo = this.memory.read32(gmfn * PAGE_SIZE + e * 4) as number;
        const at = p.smfn * PAGE_SIZE + (e & 0x1ff) * 8;
        if ((gLo & (PTE_P | PTE_A)) === (PTE_P | PTE_A)) {
          if (this.fillLeaf(at, gLo, 0, (gLo & 0xffff_f000) >>> 12) !== undefined) this.setLeaf(at, 0, 0, -1);
        } else this.setLeaf(at, 0, 0, -1);
      } else if (p.type === ShadowType.L2_32) {
        const quarter = Number(p.key.slice(p.key.lastIndexOf(":") + 1)) - 1;
        if (e >>> 8 !== quarter) continue;
        const at = p.smfn * PAGE_SIZE + (e & 0xff) * 16;
        this.setLink(at, 0, 0, undefined);
        this.setLink(at + 8, 0, 0, undefined);
      } else wide = true;
    }
    if (wide) this.propagate(gmfn, offset >>> 3);
  }

  private reservedLeaf(lo: number, hi: number): boolean {
    return (hi & reservedHighMask(this.gmode.maxPhyAddr, this.gmode.nxe)) !== 0 || (lo & reservedLowAddressMask(this.gmode.maxPhyAddr)) !== 0;
  }

  // ---- out-of-sync leaf tables (Xen's shadow/oos) ----

  private canUnsync(gmfn: number): boolean {
    const list = this.byGmfn.get(gmfn);
    return list !== undefined && list.length === 1 && list[0]!.type === ShadowType.L1 && this.oos.size < this.maxOos;
  }

  /** Let the guest write a leaf table directly: snapshot it and drop the read-only mappings of it. */
  private unsync(gmfn: number): void {
    // The table's bytes, copied whole (a snapshot from the pool resync returns them to).
    const snapshot = this.snapshotPool.pop() ?? new Uint32Array(1024);
    if (this.memory.readBytes(gmfn * PAGE_SIZE, new Uint8Array(snapshot.buffer)) !== undefined) snapshot.fill(0);
    this.oos.set(gmfn, { snapshot });
    this.stats.unsyncs++;
    for (let a = this.rmap.first(gmfn); a >= 0; a = this.rmap.first(gmfn)) this.setLeaf(a, 0, 0, -1);
  }

  /** Bring an out-of-sync table's shadow up to date with the guest's, and write-protect it again. */
  private resync(gmfn: number): void {
    const o = this.oos.get(gmfn);
    if (o === undefined) return;
    this.oos.delete(gmfn);
    this.stats.resyncs++;
    // The table as it is now, in the snapshot's representation (both copied as bytes; an entry
    // snapshotEntry refreshed holds read32's values, which on a big-endian host only differ and
    // propagate once more, which is harmless): every entry that differs is propagated.
    const now = this.resyncScratch;
    if (this.memory.readBytes(gmfn * PAGE_SIZE, this.resyncBytes) !== undefined) now.fill(0);
    const snap = o.snapshot;
    for (let i = 0; i < ENTRIES; i++) {
      if (now[2 * i] !== snap[2 * i] || now[2 * i + 1] !== snap[2 * i + 1]) this.propagate(gmfn, i);
    }
    if (this.snapshotPool.length < SNAPSHOT_POOL) this.snapshotPool.push(snap);
    this.rmap.forEach(gmfn, (a) => this.clearRw(a));
  }

  private snapshotEntry(gpa: number): void {
    const gmfn = ramMfn(this.p2m, Math.floor(gpa / PAGE_SIZE));
    const o = this.oos.get(gmfn);
    if (o === undefined) return;
    const i = (gpa % PAGE_SIZE) >>> 3;
    o.snapshot[2 * i] = this.memory.read32(gmfn * PAGE_SIZE + i * 8) as number;
    o.snapshot[2 * i + 1] = this.memory.read32(gmfn * PAGE_SIZE + i * 8 + 4) as number;
  }

  private resyncAll(): void {
    if (this.oos.size === 0) return;
    for (const g of [...this.oos.keys()]) this.resync(g);
  }

  /**
   * Flush every vCPU's TLB if a shadow entry was removed or restricted since the last flush (Xen
   * flushes the guest's TLBs, a new ASID/VPID generation, where its shadow code removes or
   * write-protects entries). Without VPIDs the next VM entry flushes anyway.
   */
  private settle(): void {
    if (!this.tlbStale) return;
    this.tlbStale = false;
    if (!this.useVpid) return;
    for (const [cpu, state] of this.vcpus) cpu.invvpid(INVVPID_SINGLE_CONTEXT, state.vpid);
    this.stats.tlbFlushes++;
  }

  private crash(reason: string): ExitOutcome {
    this.stats.crashes++;
    this.crashReasons.unshift(reason);
    return { kind: "crash", reason };
  }
}
