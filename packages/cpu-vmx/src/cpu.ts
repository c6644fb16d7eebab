/**
 * The virtual CPU: architectural state in typed arrays, flags kept as four cheap fields, every
 * memory access through a TLB over the `@vtlab/arch` page walker, exception and interrupt
 * delivery through the 64-bit IDT, and the run loop over decoded-instruction pages.
 *
 * How a guest fault travels: a handler that hits a fault records it (`pending*` fields, a plain
 * value) and unwinds the instruction with the preallocated `ABORT` token; the run loop catches
 * only that token, restores RIP to the instruction's start for faults, and delivers the
 * exception. Nothing is allocated and nothing thrown escapes `run`: callers see values.
 *
 * Modelled more simply than hardware (said here and in the README):
 * - Modes: 64-bit mode, compatibility mode and 32-bit protected mode (CR0.PE = 1) with paging
 *   off, 32-bit paging (CR4.PSE 4 MiB pages), PAE paging (PDPTE registers loaded on MOV CR3,
 *   SDM 4.4.1) or long-mode paging, with 16-bit or 32-bit code segments. Outside IA-32e mode
 *   events go through the 32-bit IDT (16- and 32-bit interrupt and trap gates, privilege changes
 *   through the TSS's SS0:ESP0).
 * - Real-address mode (CR0.PE = 0, SDM Vol. 3A ch. 20, Vol. 1 3.3): CPL 0; a segment load sets
 *   the selector and base = selector << 4 and keeps the cached limit and attributes (so "unreal
 *   mode" works as on hardware); the code segment's cached D bit gives the default operand and
 *   address size (16 after reset, 66/67 override); far JMP/CALL/RET and IRET move CS the same
 *   way; events go through the interrupt vector table (4-byte IP:CS vectors at IDTR.base,
 *   FLAGS, CS, IP pushed, no error code, IF/TF/AC cleared; `deliverReal`). Virtual-8086 mode is
 *   not modelled: IRET to VM = 1 is #GP(0) and EFLAGS.VM is never set.
 * - Segment limits are not checked outside 64-bit mode (flat segments assumed); bases are used.
 *   In real mode the same holds: offsets above the cached limit are not #GP/#SS (IRET and the
 *   real-mode far return check the new IP against CS.limit).
 * - x87/SSE: only the state-management instructions (exec/fpu.ts: FNINIT, FNCLEX, FLDCW, FNSTCW,
 *   FNSTSW, FWAIT, FXSAVE/FXRSTOR, LDMXCSR/STMXCSR, with CR0.EM/TS/MP and CR4.OSFXSR); the x87
 *   and SSE arithmetic and AVX raise #UD, and CPUID reports no FPU, FXSR or SSE.
 * - The TLB caches 4 KiB translations (a large page is cached as its 4 KiB pieces); INVLPG
 *   after any large-page fill flushes everything, which over-invalidates, as the SDM allows.
 */
import {
  Access,
  PagingFormat,
  PdpteLoadStatus,
  loadPaePdptes,
  type MachineMemory,
  type MmioBus,
  PhysicalPagingStructures,
  type PagingMode,
  type PagingStructureAccess,
  PortIoBus,
  Vector,
  WalkResult,
  WalkStatus,
  checkAccessRights,
  isDoubleFault,
  pagingMode,
  walkLinear,
  type PagingLevel,
  type U64,
} from "@vtlab/arch";
import {
  CR0_PE,
  CR0_PG,
  CR0_WP,
  CR4_LA57,
  CR4_PAE,
  CR4_PGE,
  CR4_PSE,
  CR4_SMAP,
  CR4_SMEP,
  EFER_LMA,
  EFER_LME,
  EFER_NXE,
  RFLAGS_AC,
  RFLAGS_AF,
  RFLAGS_CF,
  RFLAGS_FIXED,
  RFLAGS_IF,
  RFLAGS_OF,
  RFLAGS_PF,
  RFLAGS_SF,
  RFLAGS_TF,
  RFLAGS_ZF,
  DR6_INIT,
  DR7_INIT,
  SEG_ATTR_DB,
  SEG_ATTR_L,
  Seg,
} from "./regs.js";
import type { Insn } from "./decode/insn.js";
import { FpuState } from "./exec/fpu.js";
import { EPT_QUAL_FINAL, EPT_QUAL_LINEAR_VALID, EptAccess, GuestReference, type EptMisconfig, type EptViolation, type SecondLevelTranslator, type VmExit } from "./vmx/interfaces.js";
import type { Vmcs } from "./vmx/vmcs.js";
import { VmcsField } from "./vmx/vmcs-fields.js";
import { ExitReason } from "./vmx/exit-reasons.js";
import { saveOnExit } from "./vmx/nonroot.js";
import {
  CPU_INTR_WINDOW_EXITING,
  CPU_MONITOR_TRAP_FLAG,
  EXIT_ACK_INTR_ON_EXIT,
  EXIT_SAVE_PREEMPTION_TIMER,
  CPU_NMI_WINDOW_EXITING,
  PIN_EXTINT_EXITING,
  PIN_NMI_EXITING,
  PIN_PREEMPTION_TIMER,
  SECONDARY_ENABLE_EPT,
  SECONDARY_ENABLE_VPID,
} from "./vmx/controls.js";
import { BLOCK_THRESHOLD, MAX_BLOCK, compileBlock, endsBlock, type BlockFn } from "./blocks.js";
import { jitCompileHot, jitDefault, type RegionBlock } from "./jit/compile.js";

/** Task-switch exit qualification, bits 31:30 (SDM Table 28-2): the switch came from IRET. */
export const TASK_SWITCH_SOURCE_IRET = 1;
/** Task-switch exit qualification, bits 31:30: the switch came through a task gate in the IDT. */
export const TASK_SWITCH_SOURCE_IDT = 3;

/** DR6.BS (bit 14): the #DB was a single step. */
export const DR6_BS = 1 << 14;

/** The token that unwinds an instruction after a fault was recorded. Never escapes `run`. */
export const ABORT: { readonly abort: true } = Object.freeze({ abort: true });

/** 8-bit parity: PF = 1 when the low byte of the result has an even number of set bits. */
export const PARITY_EVEN = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let b = i;
  b ^= b >> 4;
  b ^= b >> 2;
  b ^= b >> 1;
  PARITY_EVEN[i] = (b & 1) === 0 ? 1 : 0;
}

const TLB_BITS = 12;
const TLB_SIZE = 1 << TLB_BITS;

/**
 * Bounds on what guest code can make this CPU cache (issue 18: a guest running down a slide of
 * NOPs decodes a new instruction at every step). Each is a count limit whose eviction rule is a
 * flush of the whole cache when the limit is reached, as QEMU's TCG flushes its code buffer when
 * it is full (tb_flush): the cache refills with what the guest runs next, and a well-behaved
 * guest's working set stays far below the limit.
 *
 * DECODED_MAX_PAGES: machine frames with a decoded-instruction page (a 4096-slot array each,
 * 32 KiB of slots). DECODED_MAX_INSNS: decoded instructions kept (counted from the last flush:
 * an upper bound on the live ones, since a store into code drops a page without counting).
 * COMPILED_MAX_BLOCKS: compiled blocks (each a generated JavaScript function) kept, counted the
 * same way.
 */
export const DECODED_MAX_PAGES = 512;
export const DECODED_MAX_INSNS = 131_072;
export const COMPILED_MAX_BLOCKS = 4096;
/**
 * TLB sets kept for VPIDs other than the active one (a guest hypervisor can use every one of the
 * 65535 VPIDs; each set is about 40 KiB). Eviction: the least recently selected set is dropped,
 * which is a flush of that VPID's translations, something the SDM lets a processor do at any
 * time (Vol. 3A 4.10.4.4 "Delayed Invalidation" and 28.3.3.1: software must not rely on a
 * translation staying cached).
 */
export const TLB_MAX_SETS = 64;

/** The sizes of the caches guest code grows (see the bounds above): for statistics and tests. */
export interface CodeCacheStats {
  /** Decoded-instruction pages held. */
  readonly decodedPages: number;
  /** Instructions decoded since the last whole-cache flush (an upper bound on those held). */
  readonly decodedInstructions: number;
  /** Blocks compiled since the last whole-cache flush (an upper bound on those held). */
  readonly compiledBlocks: number;
  /** Whole-cache flushes because a bound was reached. */
  readonly capacityFlushes: number;
  /** TLB sets held for VPIDs other than the active one. */
  readonly tlbSets: number;
  /** TLB sets dropped because TLB_MAX_SETS was reached. */
  readonly tlbSetEvictions: number;
}
const TLB_MASK = TLB_SIZE - 1;
/** tlbFlags bit 3: the index is in the filled list. */
const TLB_LISTED = 1 << 3;

/** TLB permission bits, one per access kind, precomputed when an entry is filled. */
const OK_SUP_READ = 1;
const OK_SUP_WRITE = 2;
const OK_USER_READ = 4;
const OK_USER_WRITE = 8;
const OK_SUP_FETCH = 16;
const OK_USER_FETCH = 32;

const TWO_47 = 2 ** 47;
const TWO_56 = 2 ** 56;
const TWO_32 = 0x1_0000_0000;

/** How a native guest's operation ended (`Cpu.executeOp`). */
export type OpResult<T> =
  | { readonly kind: "done"; readonly value: T }
  | { readonly kind: "vmexit"; readonly retired: number; readonly exit: VmExit }
  | { readonly kind: "exception"; readonly vector: number; readonly errorCode: number; readonly cr2: number };

/** How `run` ended. */
export type RunResult =
  | { readonly kind: "budget"; readonly retired: number }
  | { readonly kind: "hlt"; readonly retired: number }
  | { readonly kind: "stop"; readonly retired: number; readonly reason: string; readonly code: number }
  | { readonly kind: "triple-fault"; readonly retired: number; readonly vector: number; readonly rip: number }
  | { readonly kind: "vmexit"; readonly retired: number; readonly exit: VmExit };

/** A segment register's visible selector and hidden descriptor cache. */
export interface SegmentCache {
  selector: number;
  base: number;
  limit: number;
  /** Descriptor bits 55:40 shifted down by 40 (type, S, DPL, P, AVL, L, D/B, G). */
  attr: number;
}

/** What the CPU calls for instructions that reach outside it. */
export interface CpuHooks {
  /** CPUID: fill `out` = [eax, ebx, ecx, edx]. */
  cpuid?(leaf: number, subleaf: number, out: Int32Array): void;
}

export interface CpuOptions {
  memory: MachineMemory;
  ports?: PortIoBus;
  mmio?: MmioBus;
  /** MAXPHYADDR reported by CPUID and used for reserved-bit checks (default 46). */
  maxPhyAddr?: number;
  hooks?: CpuHooks;
  /**
   * Compile hot blocks to specialised JavaScript (src/jit/); false: blocks call the interpreter's
   * handlers (blocks.ts). Default: on, unless the environment sets VTLAB_JIT=0.
   */
  jit?: boolean;
}

/** Counters a user can read: exact, not modelled. */
export class CpuCounters {
  constructor(private readonly cpu: { retired: number }) {}
  /** Instructions retired (exact). */
  get instructions(): number {
    return this.cpu.retired;
  }
  tlbHits = 0;
  tlbMisses = 0;
  pageWalks = 0;
  walkReferences = 0;
  exceptions = 0;
  interrupts = 0;
  decodedInstructions = 0;
  /** Memory references made by second-level (EPT) translations. */
  eptReferences = 0;
  /** VM exits taken in non-root operation. */
  vmExits = 0;
  /** Hot blocks compiled to JavaScript functions. */
  compiledBlocks = 0;
  smcInvalidations = 0;
  /** #UD raised for opcodes this CPU does not implement, by opcode text ("0f 38 00"). */
  readonly unsupported = new Map<string, number>();
}

export class Cpu {
  // ---- General-purpose registers: low and high 32-bit halves ----
  readonly lo = new Int32Array(16);
  readonly hi = new Int32Array(16);
  /** RIP as a signed number (exact for canonical 48-bit addresses). */
  rip = 0;

  // ---- Flags: arithmetic flags as four fields, the rest as plain bits ----
  /** Zero test: ZF = (fZ === 0). */
  fZ = 1;
  /** Sign carrier: SF = (fS < 0). */
  fS = 0;
  /** Parity byte: PF = PARITY_EVEN[fP & 0xff]. */
  fP = 1;
  /** CF, AF and OF in their RFLAGS positions. */
  fA = 0;
  /** Every other RFLAGS bit (bit 1 always set). */
  flagsOther = RFLAGS_FIXED;

  // ---- Segments and system registers ----
  readonly seg: SegmentCache[] = Array.from({ length: 6 }, () => ({ selector: 0, base: 0, limit: 0xffff_ffff, attr: 0x93 }));
  gdtrBase = 0;
  gdtrLimit = 0xffff;
  idtrBase = 0;
  idtrLimit = 0xffff;
  tr: SegmentCache = { selector: 0, base: 0, limit: 0x67, attr: 0x8b };
  ldtr: SegmentCache = { selector: 0, base: 0, limit: 0, attr: 0x82 };
  cr0 = CR0_PE | 0x10;
  cr2 = 0;
  cr3 = 0;
  cr4 = 0;
  cr8 = 0;
  efer = 0;
  readonly dr = new Float64Array(8);
  cpl = 0;
  /** Model-specific registers without dedicated fields. */
  readonly msrs = new Map<number, U64>();
  /** x87 and SSE registers (exec/fpu.ts: only the state-management instructions exist). */
  readonly fpu = new FpuState();
  kernelGsBase = 0;
  star: U64 = { lo: 0, hi: 0 };
  lstar = 0;
  cstar = 0;
  fmask = 0;
  tscOffset = 0;

  // ---- Derived mode ----
  /** 64-bit mode (EFER.LMA = 1 and CS.L = 1). */
  mode64 = false;
  /** Real-address mode (CR0.PE = 0, SDM Vol. 3A 20.1): segment loads are selector << 4, events go through the IVT. */
  realMode = false;
  /** Default operand size 32 (CS.D = 1) outside 64-bit mode. */
  csD = true;
  /** Stack address size is 32 bits (SS.B) outside 64-bit mode. */
  ssB = true;
  readonly paging: PagingMode;
  /**
   * The PAE PDPTE registers (SDM 4.4.1) as (bits 31:0, bits 63:32) pairs: loaded from CR3 by
   * MOV CR3 (and the MOV CR0/CR4 that enters PAE paging) and by VM entry; the walk reads these.
   */
  readonly pdpte = new Uint32Array(8);
  private readonly pdpteScratch: U64 = { lo: 0, hi: 0 };

  // ---- Execution state ----
  private haltedState = false;
  /** The vCPU executed HLT and waits for an interrupt. */
  get halted(): boolean {
    return this.haltedState;
  }
  set halted(v: boolean) {
    this.haltedState = v;
    if (v) this.attention = 1;
  }
  /** Instruction-start RIP of the instruction being executed (faults restart there). */
  insnStart = 0;
  private shadowState = false;
  /** Interrupts are inhibited for one instruction after STI / MOV SS / POP SS. */
  get interruptShadow(): boolean {
    return this.shadowState;
  }
  set interruptShadow(v: boolean) {
    this.shadowState = v;
    if (v) this.attention = 1;
    else this.movSsBlocking = false;
  }
  /**
   * The shadow comes from MOV SS or POP SS ("blocking by MOV SS", interruptibility bit 1): it
   * also holds debug exceptions, so a single-step trap of the MOV SS is taken after the next
   * instruction (SDM Vol. 3A 6.8.3). Set with `interruptShadow` by `blockByMovSs`.
   */
  movSsBlocking = false;
  /**
   * The blocking the instruction being executed runs under (0 none, 1 by STI, 2 by MOV SS): the
   * shadow ends when that instruction completes, so a VM exit it causes still reports it in the
   * interruptibility state (SDM Table 25-3).
   */
  shadowInsn = 0;

  /** MOV SS / POP SS: interrupts and debug exceptions are held for one instruction. */
  blockByMovSs(): void {
    this.interruptShadow = true;
    this.movSsBlocking = true;
  }

  /** `v` is canonical for the current linear-address width (48 bits, or 57 with CR4.LA57). */
  canonical(v: number): boolean {
    const limit = this.paging.la57 ? TWO_56 : TWO_47;
    return v >= -limit && v < limit;
  }
  /** Pending external interrupt vectors (an 8259/APIC stand-in): highest is not prioritised, FIFO. */
  private readonly pendingIrqs: number[] = [];
  /** A request from a device or hook to stop the run loop after this instruction. */
  stopRequest: { reason: string; code: number } | undefined = undefined;

  // ---- A recorded fault (the value the run loop delivers) ----
  pendingVector = -1;
  pendingErrorCode = -1;
  /** The recorded event is a trap or software interrupt (RIP already past the instruction). */
  pendingIsTrap = false;
  pendingIsSoftware = false;
  /** The recorded event is a privileged software exception (ICEBP: event type 5). */
  pendingIsPrivileged = false;
  /** A vector being delivered, for double-fault detection (-1 when none). */
  private delivering = -1;

  // ---- Memory ----
  readonly memory: MachineMemory;
  readonly ports: PortIoBus;
  readonly mmio: MmioBus | undefined;
  readonly hooks: CpuHooks;
  readonly counters = new CpuCounters(this);
  /** Instructions retired (each iteration of a REP string instruction counts as one, SDM Vol. 2B REP). */
  retired = 0;
  /**
   * Event deliveries (exceptions, NMIs, external interrupts, single-step traps) the run loop made
   * through the IDT. Each counts as one step of the run budget and one tick of the VMX-preemption
   * timer, so a guest stuck in an exception loop (a #UD handler that executes UD2 again) retires
   * nothing but still uses up its slice; the host charges them to the slice and the clock.
   */
  eventsDelivered = 0;
  /**
   * What one event delivery counts for, in instruction-times, against the run budget and the
   * VMX-preemption timer (default 1). The host sets it from its cost model (an event costs what
   * CostModel.eventDelivery says), so a slice spent on events ends when its time is used up.
   */
  eventWeight = 1;
  /**
   * The retired count at which the current `run` must stop (its budget or the preemption timer's
   * end): a REP string instruction stops between iterations there, with RIP still at the
   * instruction and RCX/RSI/RDI updated (SDM Vol. 2B REP: a repeated string operation can be
   * interrupted between iterations and resumes where it left off). +Infinity outside `run`.
   */
  repStop = Number.POSITIVE_INFINITY;
  /**
   * Nonzero when the run loop must look at something besides the next instruction: a pending
   * interrupt, HLT, a stop request, an interrupt shadow. Keeps the per-instruction path to one test.
   */
  attention = 0;
  /** How paging structures are read: machine memory here; EPT replaces it. */
  tables: PagingStructureAccess<unknown>;
  private readonly walkOut = new WalkResult<unknown>();

  // TLB: direct-mapped, 4 KiB entries.
  // The active TLB set (one per VPID; see selectTlb). Fields, not a set object, so the memory
  // fast path reads them directly.
  private tlbTag: Float64Array = new Float64Array(TLB_SIZE).fill(Number.NaN);
  private tlbPhys: Float64Array = new Float64Array(TLB_SIZE);
  private tlbOk: Int32Array = new Int32Array(TLB_SIZE);
  private tlbRights: Int32Array = new Int32Array(TLB_SIZE);
  private tlbFlags: Int32Array = new Int32Array(TLB_SIZE); // bit0 global, bit1 dirty, bit2 large
  private tlbView: (DataView | undefined)[] = new Array<DataView | undefined>(TLB_SIZE).fill(undefined);
  private tlbHasLarge = false;
  /** Indices filled since the last flush (each listed once: TLB_LISTED in tlbFlags). */
  private tlbFilled: Int32Array = new Int32Array(TLB_SIZE);
  private tlbFilledCount = 0;
  /** The VPID the active TLB set is tagged with (0: VMX root operation, or VPID off). */
  vpid = 0;
  /** Saved TLB sets by VPID, least recently selected first (Map insertion order; see TLB_MAX_SETS). */
  private readonly tlbSets = new Map<number, TlbSet>();
  /** The record the active set was taken from (not in `tlbSets` while active); see selectTlb. */
  private tlbActiveRecord: TlbSet | undefined = undefined;
  private tlbSetEvictions = 0;
  /** Bumped on every TLB flush; lets the fetch path keep its current page. */
  tlbGeneration = 0;

  // Decoded-instruction cache, by machine frame.
  private readonly decoded = new Map<number, (Insn | undefined)[]>();
  /** Instructions decoded and blocks compiled since the last whole-cache flush (see DECODED_MAX_INSNS). */
  private decodedLive = 0;
  private blocksLive = 0;
  private capacityFlushes = 0;
  /** Linear base of the page the decoded-instruction fast path is on (NaN: none). */
  private fetchBase = Number.NaN;
  private fetchGen = -1;
  private fetchPage: (Insn | undefined)[] | undefined = undefined;
  private fetchPhysPage = 0;
  /** Decoder entry point (set by the package index to avoid an import cycle). */
  static decoder: ((cpu: Cpu, rip: number) => Insn) | undefined;

  /** Scratch for 64-bit results. */
  tmpHi = 0;
  /** Linear address of the last memory operand read (for read-modify-write). */
  lastEa = 0;
  /** Exact 64-bit effective-address halves (see offset64). */
  offLo = 0;
  offHi = 0;
  readonly cpuidOut = new Int32Array(4);

  constructor(options: CpuOptions) {
    this.memory = options.memory;
    this.ports = options.ports ?? new PortIoBus();
    this.mmio = options.mmio;
    this.hooks = options.hooks ?? {};
    this.jit = options.jit ?? jitDefault();
    this.paging = pagingMode({ wp: false, nxe: false, pge: false, maxPhyAddr: options.maxPhyAddr ?? 46, pdpte: this.pdpte });
    this.tables = new PhysicalPagingStructures(this.memory);
    this.resetToFlat32();
  }

  /** Flat 32-bit protected mode, paging off, interrupts off: the PVH entry state. */
  resetToFlat32(): void {
    this.lo.fill(0);
    this.hi.fill(0);
    this.cr0 = CR0_PE | 0x10;
    this.cr3 = 0;
    this.cr4 = 0;
    this.efer = 0;
    this.flagsOther = RFLAGS_FIXED;
    this.setArithFlags(0);
    for (let s = 0; s < 6; s++) {
      const c = this.seg[s] as SegmentCache;
      c.base = 0;
      c.limit = 0xffff_ffff;
      c.attr = s === Seg.CS ? 0xc09b : 0xc093; // G, D/B, P, S, code exec/read or data read/write
      c.selector = s === Seg.CS ? 0x08 : 0x10;
    }
    this.dr.fill(0);
    this.dr[6] = DR6_INIT;
    this.dr[7] = DR7_INIT;
    this.cpl = 0;
    this.halted = false;
    this.updateMode();
  }

  // =====================================================================================
  // Flags
  // =====================================================================================

  get cf(): boolean {
    return (this.fA & RFLAGS_CF) !== 0;
  }

  /** RFLAGS as the guest sees it (low 32 bits; the upper half is reserved zero). */
  getFlags(): number {
    let f = this.flagsOther | (this.fA & (RFLAGS_CF | RFLAGS_AF | RFLAGS_OF));
    if (this.fZ === 0) f |= RFLAGS_ZF;
    if (this.fS < 0) f |= RFLAGS_SF;
    if (PARITY_EVEN[this.fP & 0xff] === 1) f |= RFLAGS_PF;
    return f >>> 0;
  }

  /** Set the six arithmetic flags from RFLAGS-positioned bits. */
  setArithFlags(bits: number): void {
    this.fA = bits & (RFLAGS_CF | RFLAGS_AF | RFLAGS_OF);
    this.fZ = (bits & RFLAGS_ZF) !== 0 ? 0 : 1;
    this.fS = (bits & RFLAGS_SF) !== 0 ? -1 : 0;
    this.fP = (bits & RFLAGS_PF) !== 0 ? 0 : 1;
  }

  /** Write RFLAGS: the bits in `mask` come from `value`. */
  setFlags(value: number, mask: number): void {
    const cur = this.getFlags();
    const next = ((cur & ~mask) | (value & mask) | RFLAGS_FIXED) >>> 0;
    this.setArithFlags(next);
    this.flagsOther = next & ~(RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF);
    const ac = (next & RFLAGS_AC) !== 0;
    this.paging.ac = ac;
    if ((next & RFLAGS_TF) !== 0) this.attention = 1;
  }

  /** Evaluate condition code `cc` (SDM Vol. 1, Appendix B: tttn encoding). */
  cond(cc: number): boolean {
    let r: boolean;
    switch (cc >> 1) {
      case 0:
        r = (this.fA & RFLAGS_OF) !== 0;
        break; // O
      case 1:
        r = (this.fA & RFLAGS_CF) !== 0;
        break; // B
      case 2:
        r = this.fZ === 0;
        break; // Z
      case 3:
        r = (this.fA & RFLAGS_CF) !== 0 || this.fZ === 0;
        break; // BE
      case 4:
        r = this.fS < 0;
        break; // S
      case 5:
        r = PARITY_EVEN[this.fP & 0xff] === 1;
        break; // P
      case 6:
        r = this.fS < 0 !== ((this.fA & RFLAGS_OF) !== 0);
        break; // L
      default:
        r = this.fZ === 0 || this.fS < 0 !== ((this.fA & RFLAGS_OF) !== 0); // LE
    }
    return (cc & 1) !== 0 ? !r : r;
  }

  // =====================================================================================
  // Registers by width (`rex` matters for byte registers 4-7: AH..BH without REX)
  // =====================================================================================

  getReg8(r: number, rex: boolean): number {
    if (!rex && r >= 4 && r < 8) return (this.lo[r - 4]! >>> 8) & 0xff;
    return this.lo[r]! & 0xff;
  }

  setReg8(r: number, rex: boolean, v: number): void {
    if (!rex && r >= 4 && r < 8) this.lo[r - 4] = (this.lo[r - 4]! & ~0xff00) | ((v & 0xff) << 8);
    else this.lo[r] = (this.lo[r]! & ~0xff) | (v & 0xff);
  }

  setReg16(r: number, v: number): void {
    this.lo[r] = (this.lo[r]! & ~0xffff) | (v & 0xffff);
  }

  /** A 32-bit register write zero-extends into bits 63:32 (SDM Vol. 1, 3.4.1.1). */
  setReg32(r: number, v: number): void {
    this.lo[r] = v;
    this.hi[r] = 0;
  }

  /** Register value as a signed number (exact when it fits in 53 bits; used for addresses). */
  regAddr(r: number): number {
    return this.hi[r]! * TWO_32 + (this.lo[r]! >>> 0);
  }

  /** Set a 64-bit register from a signed number below 2^53 in magnitude. */
  setRegFromNumber(r: number, v: number): void {
    this.lo[r] = v | 0;
    this.hi[r] = Math.floor(v / TWO_32) | 0;
  }

  // =====================================================================================
  // Mode
  // =====================================================================================

  /** Recompute the derived mode after CR0, CR4, EFER or CS change. */
  updateMode(): void {
    const lma = (this.efer & EFER_LMA) !== 0;
    const cs = this.seg[Seg.CS] as SegmentCache;
    const was64 = this.mode64;
    const wasD = this.csD;
    this.mode64 = lma && (cs.attr & SEG_ATTR_L) !== 0;
    this.realMode = (this.cr0 & CR0_PE) === 0;
    // The decoded-instruction fast path is keyed by RIP: a new CS base (a real-mode far transfer
    // or any descriptor with a nonzero base) must make it look the page up again.
    if (cs.base !== this.fetchCsBase) {
      this.fetchCsBase = cs.base;
      this.fetchBase = Number.NaN;
    }
    if (this.realMode) this.cpl = 0; // real-address mode runs at privilege level 0 (SDM 20.1)
    this.csD = (cs.attr & SEG_ATTR_DB) !== 0;
    this.ssB = ((this.seg[Seg.SS] as SegmentCache).attr & SEG_ATTR_DB) !== 0;
    const p = this.paging;
    const pae = (this.cr4 & CR4_PAE) !== 0;
    p.la57 = (this.cr4 & CR4_LA57) !== 0;
    p.wp = (this.cr0 & CR0_WP) !== 0;
    // The walk's format: IA-32e mode is 4/5-level paging, else CR4.PAE chooses PAE or 32-bit paging (SDM Table 4-1).
    p.format = lma ? PagingFormat.Long : pae ? PagingFormat.Pae : PagingFormat.Bits32;
    p.pse = (this.cr4 & CR4_PSE) !== 0;
    // Execute-disable exists only with PAE entries (32-bit paging has no XD bit, SDM 4.3).
    p.nxe = (this.efer & EFER_NXE) !== 0 && (lma || pae);
    p.smep = (this.cr4 & CR4_SMEP) !== 0;
    p.smap = (this.cr4 & CR4_SMAP) !== 0;
    p.pge = (this.cr4 & CR4_PGE) !== 0;
    p.ac = (this.flagsOther & RFLAGS_AC) !== 0;
    if (was64 !== this.mode64 || wasD !== this.csD) this.flushDecoded();
  }

  get pagingEnabled(): boolean {
    return (this.cr0 & CR0_PG) !== 0;
  }

  /** PAE paging is in use, or would be with `cr0`/`cr4`/`efer` (CR0.PG = 1, CR4.PAE = 1, IA32_EFER.LME = 0). */
  paePaging(cr0 = this.cr0, cr4 = this.cr4, efer = this.efer): boolean {
    return (cr0 & CR0_PG) !== 0 && (cr4 & CR4_PAE) !== 0 && (efer & EFER_LME) === 0;
  }

  /**
   * Load the PDPTE registers from the PDPT at `cr3` (SDM 4.4.1), for MOV to CR3 in PAE paging and
   * the MOV to CR0 or CR4 that enters or changes it. A present PDPTE with a reserved bit is #GP(0)
   * and loads nothing. Under EPT each read is a guest-physical reference EPT translates; an EPT
   * violation there exits without a valid guest-linear address (SDM 28.2.1).
   */
  loadPdptes(cr3: number): void {
    const ept = this.eptActive;
    const r = loadPaePdptes(ept ? this.eptTables : this.tables, cr3, this.paging.maxPhyAddr, this.pdpte, this.pdpteScratch);
    if (r.status === PdpteLoadStatus.Ok) {
      this.flushTlb(false);
      return;
    }
    if (r.status === PdpteLoadStatus.AccessFault && ept) {
      const f = r.accessFault as EptViolation | EptMisconfig;
      if (f.kind === "ept-misconfig") this.vmExit(ExitReason.EptMisconfig, 0, 0, { guestPhysical: f.gpa });
      this.vmExit(ExitReason.EptViolation, f.qualification, 0, { guestPhysical: f.gpa });
    }
    // Reserved bits, or a PDPT outside machine memory (reads as all ones: reserved bits set).
    this.gp(0);
  }

  // =====================================================================================
  // Faults
  // =====================================================================================

  /** Record a fault-class exception and unwind the instruction. */
  fault(vector: number, errorCode = -1): never {
    this.pendingVector = vector;
    this.pendingErrorCode = errorCode;
    this.pendingIsTrap = false;
    this.pendingIsSoftware = false;
    this.pendingIsPrivileged = false;
    throw ABORT;
  }

  /** #GP(0), the commonest fault. */
  gp(errorCode = 0): never {
    return this.fault(Vector.GP, errorCode);
  }

  /** #UD, counted by opcode text so a user can see what a guest needed. */
  undefinedOpcode(opcodeText: string): never {
    const m = this.counters.unsupported;
    m.set(opcodeText, (m.get(opcodeText) ?? 0) + 1);
    return this.fault(Vector.UD);
  }

  /** A software interrupt or trap (INT n, INT3, INTO): RIP already points past the instruction. */
  softwareInterrupt(vector: number, isException: boolean): never {
    this.pendingVector = vector;
    this.pendingErrorCode = -1;
    this.pendingIsTrap = true;
    this.pendingIsSoftware = !isException;
    this.pendingIsPrivileged = false;
    throw ABORT;
  }

  /**
   * ICEBP / INT1 (F1): a #DB trap whose event type is "privileged software exception" (type 5,
   * SDM Vol. 3C 24.8.3, 27.2.4): RIP already past the instruction; no gate-DPL check and no DR6
   * bits (it is not a debug-register condition).
   */
  privilegedSoftwareException(): never {
    this.pendingVector = Vector.DB;
    this.pendingErrorCode = -1;
    this.pendingIsTrap = true;
    this.pendingIsSoftware = false;
    this.pendingIsPrivileged = true;
    throw ABORT;
  }

  // =====================================================================================
  // TLB and translation
  // =====================================================================================

  /** Flush the TLB; `keepGlobal` keeps global entries (a CR3 load with CR4.PGE = 1). */
  flushTlb(keepGlobal: boolean): void {
    // Only entries filled since the last flush can be valid: invalidate those (a VM entry or exit
    // without VPID flushes, so this must cost what the guest used, not the TLB's size).
    const list = this.tlbFilled;
    let kept = 0;
    for (let k = 0; k < this.tlbFilledCount; k++) {
      const i = list[k]!;
      if (keepGlobal && (this.tlbFlags[i]! & 1) !== 0 && this.tlbTag[i] === this.tlbTag[i]) {
        list[kept++] = i; // a global entry survives (NaN !== NaN filters dead ones)
      } else {
        this.tlbTag[i] = Number.NaN;
        this.tlbFlags[i] = 0;
      }
    }
    this.tlbFilledCount = kept;
    if (!keepGlobal) this.tlbHasLarge = false;
    this.tlbGeneration++;
  }

  /**
   * Make the TLB tagged `vpid` active (SDM 29.1: translations are tagged with the VPID, so they
   * survive VM entries and exits when VPIDs are on). Sets are created on first use.
   */
  selectTlb(vpid: number): void {
    if (vpid === this.vpid) return;
    this.tlbSets.delete(this.vpid); // re-inserted last: the most recently used
    // The record of the set being left is the one it was entered with (reused: a VPID switch on
    // every VM exit and entry allocates nothing).
    const left = this.tlbActiveRecord;
    if (left === undefined) {
      this.tlbSets.set(this.vpid, {
        tag: this.tlbTag,
        phys: this.tlbPhys,
        ok: this.tlbOk,
        rights: this.tlbRights,
        flags: this.tlbFlags,
        view: this.tlbView,
        hasLarge: this.tlbHasLarge,
        filled: this.tlbFilled,
        filledCount: this.tlbFilledCount,
      });
    } else {
      left.tag = this.tlbTag;
      left.phys = this.tlbPhys;
      left.ok = this.tlbOk;
      left.rights = this.tlbRights;
      left.flags = this.tlbFlags;
      left.view = this.tlbView;
      left.hasLarge = this.tlbHasLarge;
      left.filled = this.tlbFilled;
      left.filledCount = this.tlbFilledCount;
      this.tlbSets.set(this.vpid, left);
    }
    // The map holds the inactive sets only: the one entered leaves it while it is active.
    const next = this.tlbSets.get(vpid) ?? newTlbSet();
    this.tlbSets.delete(vpid);
    this.tlbActiveRecord = next;
    // Over the bound: drop the least recently selected sets (the one just left is the most recent).
    if (this.tlbSets.size > TLB_MAX_SETS) {
      for (const old of this.tlbSets.keys()) {
        if (this.tlbSets.size <= TLB_MAX_SETS) break;
        this.tlbSets.delete(old);
        this.tlbSetEvictions++;
      }
    }
    this.tlbFilled = next.filled;
    this.tlbFilledCount = next.filledCount;
    this.tlbTag = next.tag;
    this.tlbPhys = next.phys;
    this.tlbOk = next.ok;
    this.tlbRights = next.rights;
    this.tlbFlags = next.flags;
    this.tlbView = next.view;
    this.tlbHasLarge = next.hasLarge;
    this.vpid = vpid;
    this.tlbGeneration++;
  }

  /**
   * INVVPID (SDM Vol. 3C 30.3 "INVVPID"): type 0 individual address, 1 single context, 2 all
   * contexts, 3 single context retaining globals. Returns VMfailValid(28) for an invalid operand
   * (VPID 0 with types 0, 1, 3; a non-canonical address with type 0; an unknown type).
   */
  invvpid(type: number, vpid: number, address = 0): { kind: "vmfail-valid"; error: 28; message: string } | undefined {
    const bad = (message: string) => ({ kind: "vmfail-valid" as const, error: 28 as const, message: `Invalid operand to INVVPID: ${message}` });
    if (type < 0 || type > 3) return bad(`type ${type}`);
    if (type !== 2 && (vpid & 0xffff) === 0) return bad("VPID 0");
    if (type === 0 && !(address >= -TWO_47 && address < TWO_47)) return bad("non-canonical address");
    const vp = vpid & 0xffff;
    if (type === 2) {
      for (const set of this.tlbSets.values()) clearTlbSet(set);
      if (this.vpid !== 0) this.flushTlb(false);
      this.tlbGeneration++;
      return undefined;
    }
    const current = this.vpid;
    this.selectTlb(vp);
    if (type === 0) this.invalidatePage(address);
    else this.flushTlb(type === 3);
    this.selectTlb(current);
    return undefined;
  }

  /**
   * INVEPT (SDM "INVEPT"): type 1 single context, 2 all contexts. Combined (GVA -> HPA) mappings
   * are cached here without the EPTP tag, so both types drop every VPID's set (more than
   * single-context needs, which the SDM allows).
   */
  invept(type: number): { kind: "vmfail-valid"; error: 28; message: string } | undefined {
    if (type !== 1 && type !== 2) return { kind: "vmfail-valid", error: 28, message: `Invalid operand to INVEPT: type ${type}` };
    for (const set of this.tlbSets.values()) clearTlbSet(set);
    this.flushTlb(false);
    return undefined;
  }

  /** INVLPG: drop the translation of one linear address (every entry, after a large-page fill). */
  invalidatePage(lin: number): void {
    if (this.tlbHasLarge) {
      this.flushTlb(false);
      return;
    }
    const vpn = (lin - (lin & 0xfff)) / 4096;
    const i = vpn & TLB_MASK;
    if (this.tlbTag[i] === vpn) this.tlbTag[i] = Number.NaN;
    this.tlbGeneration++;
  }

  /**
   * Translate a linear address to a machine address for an access of `access` (`Access` bits;
   * `Access.User` is added for CPL 3 unless `Access.Implicit` is set). Raises #GP for a
   * non-canonical address (#SS for a stack access) and #PF for a paging fault.
   */
  translate(lin: number, access: number, stack = false): number {
    if (this.mode64) {
      const limit = this.paging.la57 ? TWO_56 : TWO_47;
      if (lin < -limit || lin >= limit) this.fault(stack ? Vector.SS : Vector.GP, 0);
    }
    if ((this.cr0 & CR0_PG) === 0) {
      const pa = lin >= 0 ? lin : lin + 2 ** 64; // paging off: 32-bit flat, linear = (guest-)physical
      if (!this.eptActive) return pa;
      // Unrestricted guest with paging off: the linear address is the guest-physical address
      // and EPT translates it (SDM 29.3.1). Not cached in the TLB: guests run this way only to boot.
      const kind = (access & Access.Fetch) !== 0 ? EptAccess.Fetch : (access & Access.Write) !== 0 ? EptAccess.Write : EptAccess.Read;
      const hpa = this.secondLevel!.translate(pa, kind, GuestReference.Final);
      this.counters.eptReferences += this.secondLevel!.lastReferences;
      if (typeof hpa !== "number") this.eptExit(hpa, lin, true);
      return hpa;
    }
    if (this.cpl === 3 && (access & Access.Implicit) === 0) access |= Access.User;
    const vpn = (lin - (lin & 0xfff)) / 4096;
    const i = vpn & TLB_MASK;
    if (this.tlbTag[i] === vpn) {
      const write = (access & Access.Write) !== 0;
      const rc = checkAccessRights(this.tlbRights[i]!, access, this.paging);
      if (rc === 0 && (!write || (this.tlbFlags[i]! & 2) !== 0)) {
        this.counters.tlbHits++;
        return this.tlbPhys[i]! + (lin & 0xfff);
      }
    }
    return this.walkAndFill(lin, vpn, access);
  }

  private walkAndFill(lin: number, vpn: number, access: number): number {
    this.counters.tlbMisses++;
    this.counters.pageWalks++;
    const out = this.walkOut;
    // Exact halves of a signed linear address (|lin| < 2^53): no 2^64 offset, which would round.
    const hi = Math.floor(lin / TWO_32) >>> 0;
    const lo = lin >>> 0;
    const root = (Math.floor(this.cr3 / 4096) % 2 ** 40) * 4096; // CR3 bits 51:12
    const ept = this.eptActive;
    const status = walkLinear(out, this.paging, root, hi, lo, access, ept ? this.eptTables : this.tables);
    this.counters.walkReferences += out.references;
    if (status === WalkStatus.PageFault) {
      this.faultLinear = lin;
      this.fault(Vector.PF, out.errorCode);
    }
    if (status === WalkStatus.AccessFault && ept) this.eptExit(out.accessFault as EptViolation | EptMisconfig, lin, false);
    if (status === WalkStatus.AccessFault) {
      // Paging structures outside machine memory: the walk cannot complete; a real platform
      // would read all-ones (a reserved-bit fault). Report #PF with RSVD as the closest outcome.
      this.faultLinear = lin;
      this.fault(Vector.PF, 0x9 | (access & 0x16));
    }
    let physicalAddress = out.physicalAddress;
    if (ept) {
      // The final guest-physical address through EPT: the TLB then caches GVA -> HPA.
      const kind = (access & Access.Fetch) !== 0 ? EptAccess.Fetch : (access & Access.Write) !== 0 ? EptAccess.Write : EptAccess.Read;
      const hpa = this.secondLevel!.translate(out.physicalAddress, kind, GuestReference.Final);
      this.counters.eptReferences += this.secondLevel!.lastReferences;
      if (typeof hpa !== "number") this.eptExit(hpa, lin, true);
      physicalAddress = hpa;
    }
    const phys = physicalAddress - (physicalAddress % 4096);
    const i = vpn & TLB_MASK;
    if ((this.tlbFlags[i]! & TLB_LISTED) === 0) this.tlbFilled[this.tlbFilledCount++] = i;
    this.tlbTag[i] = vpn;
    this.tlbPhys[i] = phys;
    this.tlbRights[i] = out.rights;
    this.tlbFlags[i] = (out.global ? 1 : 0) | (out.dirty ? 2 : 0) | (out.pageShift > 12 ? 4 : 0) | TLB_LISTED;
    if (out.pageShift > 12) this.tlbHasLarge = true;
    const ram = phys + 4096 <= this.memory.size && (this.mmio === undefined || !this.mmio.claims(phys));
    let ok = 0;
    if (ram) {
      const code = this.decoded.has(phys / 4096);
      const p = this.paging;
      if (checkAccessRights(out.rights, Access.Read, p) === 0) ok |= OK_SUP_READ;
      if (checkAccessRights(out.rights, Access.Write, p) === 0 && out.dirty && !code) ok |= OK_SUP_WRITE;
      if (checkAccessRights(out.rights, Access.Read | Access.User, p) === 0) ok |= OK_USER_READ;
      if (checkAccessRights(out.rights, Access.Write | Access.User, p) === 0 && out.dirty && !code) ok |= OK_USER_WRITE;
      if (checkAccessRights(out.rights, Access.Fetch, p) === 0) ok |= OK_SUP_FETCH;
      if (checkAccessRights(out.rights, Access.Fetch | Access.User, p) === 0) ok |= OK_USER_FETCH;
      const view = this.memory.frameDataView((phys / 4096) as never);
      this.tlbView[i] = view instanceof DataView ? view : undefined;
    } else {
      this.tlbView[i] = undefined;
    }
    this.tlbOk[i] = ok;
    return physicalAddress;
  }

  // =====================================================================================
  // Memory access by linear address
  // =====================================================================================

  /** Linear address of `offset` in segment `s` (only FS and GS have bases in 64-bit mode). */
  linear(s: number, offset: number): number {
    if (this.mode64) return s >= Seg.FS ? wrap64(offset + (this.seg[s] as SegmentCache).base) : offset;
    return (offset + (this.seg[s] as SegmentCache).base) >>> 0;
  }

  read8(lin: number): number {
    if ((this.cr0 & CR0_PG) !== 0) {
      const vpn = (lin - (lin & 0xfff)) / 4096;
      const i = vpn & TLB_MASK;
      if (this.tlbTag[i] === vpn && (this.tlbOk[i]! & (this.cpl === 3 ? OK_USER_READ : OK_SUP_READ)) !== 0) {
        return this.tlbView[i]!.getUint8(lin & 0xfff);
      }
    }
    return this.physRead(this.translate(lin, Access.Read), 1);
  }

  read16(lin: number): number {
    const off = lin & 0xfff;
    if ((this.cr0 & CR0_PG) !== 0 && off <= 0xffe) {
      const vpn = (lin - off) / 4096;
      const i = vpn & TLB_MASK;
      if (this.tlbTag[i] === vpn && (this.tlbOk[i]! & (this.cpl === 3 ? OK_USER_READ : OK_SUP_READ)) !== 0) {
        return this.tlbView[i]!.getUint16(off, true);
      }
    }
    return this.readSlow(lin, 2, Access.Read);
  }

  /** 32-bit read, returned as a signed int32. */
  read32(lin: number): number {
    const off = lin & 0xfff;
    if ((this.cr0 & CR0_PG) !== 0 && off <= 0xffc) {
      const vpn = (lin - off) / 4096;
      const i = vpn & TLB_MASK;
      if (this.tlbTag[i] === vpn && (this.tlbOk[i]! & (this.cpl === 3 ? OK_USER_READ : OK_SUP_READ)) !== 0) {
        return this.tlbView[i]!.getInt32(off, true);
      }
    }
    return this.readSlow(lin, 4, Access.Read) | 0;
  }

  /** 64-bit read: returns the low half (int32); the high half is left in `tmpHi`. */
  read64(lin: number): number {
    const off = lin & 0xfff;
    if ((this.cr0 & CR0_PG) !== 0 && off <= 0xff8) {
      const vpn = (lin - off) / 4096;
      const i = vpn & TLB_MASK;
      if (this.tlbTag[i] === vpn && (this.tlbOk[i]! & (this.cpl === 3 ? OK_USER_READ : OK_SUP_READ)) !== 0) {
        const v = this.tlbView[i]!;
        this.tmpHi = v.getInt32(off + 4, true);
        return v.getInt32(off, true);
      }
    }
    const lo = this.readSlow(lin, 4, Access.Read) | 0;
    this.tmpHi = this.readSlow(wrapAdd(lin, 4, this.mode64), 4, Access.Read) | 0;
    return lo;
  }

  write8(lin: number, v: number): void {
    if ((this.cr0 & CR0_PG) !== 0) {
      const vpn = (lin - (lin & 0xfff)) / 4096;
      const i = vpn & TLB_MASK;
      if (this.tlbTag[i] === vpn && (this.tlbOk[i]! & (this.cpl === 3 ? OK_USER_WRITE : OK_SUP_WRITE)) !== 0) {
        this.tlbView[i]!.setUint8(lin & 0xfff, v);
        return;
      }
    }
    this.writeSlow(lin, 1, v);
  }

  write16(lin: number, v: number): void {
    const off = lin & 0xfff;
    if ((this.cr0 & CR0_PG) !== 0 && off <= 0xffe) {
      const vpn = (lin - off) / 4096;
      const i = vpn & TLB_MASK;
      if (this.tlbTag[i] === vpn && (this.tlbOk[i]! & (this.cpl === 3 ? OK_USER_WRITE : OK_SUP_WRITE)) !== 0) {
        this.tlbView[i]!.setUint16(off, v, true);
        return;
      }
    }
    this.writeSlow(lin, 2, v);
  }

  write32(lin: number, v: number): void {
    const off = lin & 0xfff;
    if ((this.cr0 & CR0_PG) !== 0 && off <= 0xffc) {
      const vpn = (lin - off) / 4096;
      const i = vpn & TLB_MASK;
      if (this.tlbTag[i] === vpn && (this.tlbOk[i]! & (this.cpl === 3 ? OK_USER_WRITE : OK_SUP_WRITE)) !== 0) {
        this.tlbView[i]!.setInt32(off, v, true);
        return;
      }
    }
    this.writeSlow(lin, 4, v);
  }

  write64(lin: number, lo: number, hi: number): void {
    const off = lin & 0xfff;
    if ((this.cr0 & CR0_PG) !== 0 && off <= 0xff8) {
      const vpn = (lin - off) / 4096;
      const i = vpn & TLB_MASK;
      if (this.tlbTag[i] === vpn && (this.tlbOk[i]! & (this.cpl === 3 ? OK_USER_WRITE : OK_SUP_WRITE)) !== 0) {
        const view = this.tlbView[i]!;
        view.setInt32(off, lo, true);
        view.setInt32(off + 4, hi, true);
        return;
      }
    }
    if (off <= 0xff8 || (this.cr0 & CR0_PG) === 0) {
      const phys = this.translate(lin, Access.Write);
      this.physWrite(phys, 4, lo);
      this.physWrite(phys + 4, 4, hi);
      return;
    }
    // A page split: both pages are translated (first page first, so CR2 names the first
    // faulting byte) before either is written.
    this.translate(lin, Access.Write);
    this.translate(wrapAdd(lin, 4096 - off, this.mode64), Access.Write);
    this.writeSlow(lin, 4, lo);
    this.writeSlow(wrapAdd(lin, 4, this.mode64), 4, hi);
  }

  /** Read with an explicit access kind (implicit supervisor accesses to descriptor tables, fetches). */
  readAccess(lin: number, size: 1 | 2 | 4, access: number): number {
    return this.readSlow(lin, size, access);
  }

  private readSlow(lin: number, size: number, access: number): number {
    const off = lin & 0xfff;
    if (off + size <= 4096 || (this.cr0 & CR0_PG) === 0) {
      return this.physRead(this.translate(lin, access), size);
    }
    // Crossing a page: translate the first page, then the second at its first byte (so CR2
    // names the first faulting byte), then read little-endian.
    const p0 = this.translate(lin, access);
    const p1 = this.translate(wrapAdd(lin, 4096 - off, this.mode64), access);
    const first = 4096 - off;
    let v = 0;
    for (let b = size - 1; b >= 0; b--) v = v * 256 + this.physRead(b < first ? p0 + b : p1 + (b - first), 1);
    return v;
  }

  private writeSlow(lin: number, size: number, v: number): void {
    const off = lin & 0xfff;
    if (off + size <= 4096 || (this.cr0 & CR0_PG) === 0) {
      this.physWrite(this.translate(lin, Access.Write), size, v);
      return;
    }
    const first = 4096 - off;
    const p0 = this.translate(lin, Access.Write);
    const p1 = this.translate(wrapAdd(lin, first, this.mode64), Access.Write);
    for (let b = 0; b < size; b++) {
      const phys = b < first ? p0 + b : p1 + (b - first);
      this.physWrite(phys, 1, (v >>> (8 * b)) & 0xff);
    }
  }

  /** Read machine memory or a device behind it. */
  physRead(phys: number, size: number): number {
    if (this.mmio?.claims(phys) === true) return this.mmio.read(phys, size as 1 | 2 | 4);
    const m = this.memory;
    const r = size === 1 ? m.read8(phys) : size === 2 ? m.read16(phys) : m.read32(phys);
    return typeof r === "number" ? r : size === 1 ? 0xff : size === 2 ? 0xffff : 0xffff_ffff;
  }

  /** Write machine memory or a device; writes to decoded code invalidate it (self-modifying code). */
  physWrite(phys: number, size: number, v: number): void {
    if (this.mmio?.claims(phys) === true) {
      this.mmio.write(phys, size as 1 | 2 | 4, v);
      return;
    }
    const frame = (phys - (phys % 4096)) / 4096;
    if (this.decoded.has(frame)) this.invalidateCode(frame);
    const m = this.memory;
    if (size === 1) m.write8(phys, v);
    else if (size === 2) m.write16(phys, v);
    else m.write32(phys, v);
  }

  // =====================================================================================
  // Decoded-instruction cache
  // =====================================================================================

  /** The decoded instruction at RIP (decoding it on first use). */
  fetchDecoded(): Insn {
    const rip = this.rip;
    const off = rip & 0xfff;
    if (rip - off === this.fetchBase && this.fetchGen === this.tlbGeneration && this.cpl === this.fetchCpl) {
      const cached = this.fetchPage![off];
      if (cached !== undefined) return cached;
    } else {
      const phys = this.translate(this.linear(Seg.CS, rip), Access.Fetch);
      const frame = (phys - off) / 4096;
      let page = this.decoded.get(frame);
      if (page === undefined) {
        if (this.decoded.size >= DECODED_MAX_PAGES) this.capacityFlush();
        page = new Array<Insn | undefined>(4096);
        this.decoded.set(frame, page);
        this.revokeWrite(frame);
      }
      this.fetchPage = page;
      this.fetchBase = rip - off;
      this.fetchGen = this.tlbGeneration;
      this.fetchCpl = this.cpl;
      this.fetchPhysPage = frame;
      const cached = page[off];
      if (cached !== undefined) return cached;
    }
    if (Cpu.decoder === undefined) throw new Error("cpu-vmx: no decoder installed (import the package entry)");
    const insn = Cpu.decoder(this, rip);
    this.counters.decodedInstructions++;
    // Decoding may have flushed the cache (a page-crossing instruction); re-resolve the page.
    const page = this.decoded.get(this.fetchPhysPage);
    if (page !== undefined && off + insn.len <= 4096) {
      if (this.decodedLive >= DECODED_MAX_INSNS) this.capacityFlush(); // the next fetch starts a new page
      else {
        page[off] = insn;
        this.decodedLive++;
      }
    }
    return insn;
  }

  private fetchCpl = 0;
  /** CS.base when the fetch fast path's page was looked up (see updateMode). */
  private fetchCsBase = 0;

  // ---- VMX non-root operation ----
  /** The current VMCS while the CPU runs a guest in VMX non-root operation. */
  vmcs: Vmcs | undefined = undefined;
  vmxPin = 0;
  vmxProc = 0;
  vmxProc2 = 0;
  vmxExceptionBitmap = 0;
  vmxPfecMask = 0;
  vmxPfecMatch = 0;
  vmxCr0Mask = 0;
  vmxCr0Shadow = 0;
  vmxCr4Mask = 0;
  vmxCr4Shadow = 0;
  vmxExit = 0;
  /** Retired count at the last VM entry (the monitor trap flag and the preemption timer count from it). */
  vmxEntryRetired = 0;
  /** VMX-preemption timer value at entry; it counts down once per retired instruction (the TSC rate, with IA32_VMX_MISC[4:0] = 0). */
  vmxTimer = 0;
  /** The retired count at which the preemption timer expires (+Infinity when it is not active). */
  vmxTimerEnd = Number.POSITIVE_INFINITY;
  /** Some control needs a look at every instruction boundary: the slow path stays on and blocks stay off. */
  vmxWatch = false;
  /** The VMCS of the last VM exit (what a VMRESUME would resume). */
  vmcsForResume: Vmcs | undefined = undefined;
  /** The event being delivered is a software exception (INT3, INTO): IDT-vectoring type 6. */
  private deliveringSoftwareException = false;
  /** The event being delivered is a privileged software exception (ICEBP): IDT-vectoring type 5. */
  private deliveringPrivileged = false;
  /** A VM exit recorded by a handler or by event delivery, returned by `run`. */
  pendingExit: VmExit | undefined = undefined;
  /** `attention` as it was when `deferExit` raised it, restored when the exit is taken. */
  private deferredAttention = 0;
  /** Linear address of the last #PF, written to CR2 only if the #PF is delivered. */
  faultLinear = 0;

  /** A single-step #DB is due after the instruction being executed. */
  private stepPending = false;

  /** Compile hot blocks into JavaScript functions (see blocks.ts). */
  compileBlocks = true;
  /** Hot blocks compile to specialised code (src/jit/) rather than handler calls (CpuOptions.jit). */
  jit: boolean;
  /** Interpreted executions of a block-start instruction before its block is compiled. */
  blockThreshold = BLOCK_THRESHOLD;

  /**
   * Decode forward from the hot instruction at `rip` (within its page) up to the first
   * instruction that is not straight-line, and compile the run into a block.
   */
  private buildBlock(first: Insn, rip: number): void {
    const page = this.fetchPage;
    if (page === undefined) return;
    if (this.blocksLive >= COMPILED_MAX_BLOCKS) {
      this.capacityFlush(); // this instruction is decoded again, and its block compiled when hot again
      return;
    }
    const pageBase = rip - (rip & 0xfff);
    const run = this.decodeRun(page, pageBase, rip & 0xfff, first) as RegionBlock;
    let fn: BlockFn | undefined;
    let len = run.insns.length;
    if (this.jit) {
      const hot = jitCompileHot(run, (off) => this.decodeRun(page, pageBase, off, undefined));
      fn = hot?.fn;
      if (hot !== undefined) len = hot.len;
    }
    fn ??= compileBlock(run.insns, run.offsets);
    if (fn !== undefined) {
      first.block = fn;
      first.blockLen = len;
      this.blocksLive++;
      this.counters.compiledBlocks++;
    }
  }

  /**
   * The straight-line run of instructions from page offset `off` of a decoded page (`first`: its
   * instruction when already decoded), decoding ahead as needed, up to the first instruction that
   * is not straight-line, MAX_BLOCK instructions or the page's end; undefined when nothing at
   * `off` decodes.
   */
  private decodeRun(page: (Insn | undefined)[], pageBase: number, off: number, first: Insn | undefined): RegionBlock | undefined {
    const insns: Insn[] = [];
    const offsets: number[] = [];
    let at = 0;
    let insn: Insn | undefined = first ?? page[off];
    while (insns.length < MAX_BLOCK) {
      if (insn === undefined) {
        const cr2 = this.cr2;
        try {
          insn = Cpu.decoder!(this, pageBase + off + at);
        } catch {
          // A fault while looking ahead (an unmapped next page): end the block here, leaving no
          // trace (the guest must not see a CR2, or an EPT exit, for an instruction it has not reached).
          this.pendingVector = -1;
          this.pendingExit = undefined;
          this.cr2 = cr2;
          break;
        }
        if (off + at + insn.len > 4096 || this.decodedLive >= DECODED_MAX_INSNS) break;
        page[off + at] = insn;
        this.decodedLive++;
        this.counters.decodedInstructions++;
      }
      insns.push(insn);
      offsets.push(at);
      if (endsBlock(insn)) break;
      at += insn.len;
      if (off + at >= 4096) break;
      insn = page[off + at];
    }
    return insns.length === 0 ? undefined : { off, insns, offsets };
  }

  /** Mark a frame as holding decoded code: remove write permission from TLB entries mapping it. */
  private revokeWrite(frame: number): void {
    const phys = frame * 4096;
    for (let i = 0; i < TLB_SIZE; i++) {
      if (this.tlbPhys[i] === phys) this.tlbOk[i] = this.tlbOk[i]! & ~(OK_SUP_WRITE | OK_USER_WRITE);
    }
  }

  private invalidateCode(frame: number): void {
    this.decoded.delete(frame);
    this.attention = 1; // a compiled block running from this page must stop after this store
    this.counters.smcInvalidations++;
    if (frame === this.fetchPhysPage) this.fetchBase = Number.NaN;
  }

  /**
   * Machine frame `frame` was written from outside this vCPU (the hypervisor copying into guest
   * memory, a device's DMA, another vCPU): forget what was decoded from it, as a store by this
   * vCPU would (self-modifying code).
   */
  codeWritten(frame: number): void {
    if (this.decoded.has(frame)) this.invalidateCode(frame);
  }

  /** Forget all decoded instructions (mode changes). */
  flushDecoded(): void {
    this.decoded.clear();
    this.decodedLive = 0;
    this.blocksLive = 0;
    this.fetchBase = Number.NaN;
  }

  /** A bound on the code caches was reached: flush them whole (DECODED_MAX_PAGES and friends). */
  private capacityFlush(): void {
    this.capacityFlushes++;
    this.flushDecoded();
  }

  /** The sizes of the caches guest code grows, against their bounds (DECODED_MAX_PAGES, TLB_MAX_SETS...). */
  codeCacheStats(): CodeCacheStats {
    return {
      decodedPages: this.decoded.size,
      decodedInstructions: this.decodedLive,
      compiledBlocks: this.blocksLive,
      capacityFlushes: this.capacityFlushes,
      tlbSets: this.tlbSets.size,
      tlbSetEvictions: this.tlbSetEvictions,
    };
  }

  /** Fetch one instruction byte for the decoder. */
  fetchByte(lin: number): number {
    return this.physRead(this.translate(this.linear(Seg.CS, lin), Access.Fetch), 1);
  }

  // =====================================================================================
  // Stack
  // =====================================================================================

  /** Push a 64-bit value (64-bit mode) from halves. */
  push64(lo: number, hi: number): void {
    const rsp = wrap64(this.regAddr(4) - 8);
    this.write64Stack(rsp, lo, hi);
    this.setRegFromNumber(4, rsp);
  }

  pop64(): number {
    const rsp = this.regAddr(4);
    const lo = this.read64Stack(rsp);
    const hi = this.tmpHi;
    this.setRegFromNumber(4, wrap64(rsp + 8));
    this.tmpHi = hi;
    return lo;
  }

  // Outside 64-bit mode a stack with SS.B = 0 uses SP: the address wraps at 64 KiB (SDM Vol. 1 6.2.3).
  push32(v: number): void {
    const esp = this.ssB ? (this.lo[4]! - 4) >>> 0 : (this.lo[4]! - 4) & 0xffff;
    this.write32(this.linear(Seg.SS, esp), v);
    this.setStackPointer32(esp);
  }

  pop32(): number {
    const esp = this.ssB ? this.lo[4]! >>> 0 : this.lo[4]! & 0xffff;
    const v = this.read32(this.linear(Seg.SS, esp));
    this.setStackPointer32((esp + 4) >>> 0);
    return v;
  }

  push16(v: number): void {
    if (this.mode64) {
      const rsp = wrap64(this.regAddr(4) - 2);
      if (rsp < -TWO_47 || rsp >= TWO_47) this.fault(Vector.SS, 0);
      this.write16(rsp, v);
      this.setRegFromNumber(4, rsp);
    } else {
      const esp = this.ssB ? (this.lo[4]! - 2) >>> 0 : (this.lo[4]! - 2) & 0xffff;
      this.write16(this.linear(Seg.SS, esp), v);
      this.setStackPointer32(esp);
    }
  }

  pop16(): number {
    if (this.mode64) {
      const rsp = this.regAddr(4);
      if (rsp < -TWO_47 || rsp >= TWO_47) this.fault(Vector.SS, 0);
      const v = this.read16(rsp);
      this.setRegFromNumber(4, wrap64(rsp + 2));
      return v;
    }
    const esp = this.ssB ? this.lo[4]! >>> 0 : this.lo[4]! & 0xffff;
    const v = this.read16(this.linear(Seg.SS, esp));
    this.setStackPointer32((esp + 2) >>> 0);
    return v;
  }

  private setStackPointer32(esp: number): void {
    if (this.ssB) this.setReg32(4, esp);
    else this.setReg16(4, esp);
  }

  private write64Stack(lin: number, lo: number, hi: number): void {
    if (lin < -TWO_47 || lin >= TWO_47) this.fault(Vector.SS, 0);
    this.write64(lin, lo, hi);
  }

  private read64Stack(lin: number): number {
    if (lin < -TWO_47 || lin >= TWO_47) this.fault(Vector.SS, 0);
    return this.read64(lin);
  }

  // =====================================================================================
  // Interrupts and exceptions
  // =====================================================================================

  /** Queue an external interrupt (delivered when RFLAGS.IF = 1, outside an interrupt shadow). */
  raiseInterrupt(vector: number): void {
    this.pendingIrqs.push(vector & 0xff);
    this.attention = 1;
  }

  /** Raise an NMI (SDM 6.7.1): delivered as vector 2 when NMIs are not blocked, then blocked until IRET. */
  raiseNmi(): void {
    this.nmiPending = true;
    this.attention = 1;
  }

  /** An NMI is waiting for delivery. */
  nmiPending = false;
  /** NMIs are blocked (from NMI delivery until the next IRET, SDM 6.7.1). */
  nmiBlocked = false;

  get interruptPending(): boolean {
    return this.pendingIrqs.length > 0;
  }

  /** Deliver the recorded exception; returns false on a triple fault. */
  deliverPending(): boolean {
    const vector = this.pendingVector;
    const errorCode = this.pendingErrorCode;
    const software = this.pendingIsSoftware;
    const privileged = this.pendingIsPrivileged;
    this.pendingVector = -1;
    this.pendingIsPrivileged = false;
    if (!this.pendingIsTrap) this.rip = this.insnStart;
    this.counters.exceptions++;
    if (vector === Vector.PF) this.cr2 = this.faultLinear; // CR2 is written only when the #PF is delivered
    this.deliveringSoftwareException = this.pendingIsTrap && !software && !privileged; // INT3, INTO
    this.deliveringPrivileged = privileged; // ICEBP
    const ok = this.deliverEvent(vector, errorCode, software, false);
    this.deliveringSoftwareException = false;
    this.deliveringPrivileged = false;
    return ok;
  }

  // =====================================================================================
  // VMX non-root operation (see vmx/nonroot.ts for entry checks and state transfer)
  // =====================================================================================

  /** Enter VMX non-root operation with `vmcs` current (called by vmEntry after its checks). */
  enterNonRoot(vmcs: Vmcs, pin: number, proc: number, proc2: number): void {
    this.vmcs = vmcs;
    this.vmxPin = pin;
    this.vmxProc = proc;
    this.vmxProc2 = proc2;
    this.vmxExceptionBitmap = vmcs.read32(VmcsField.EXCEPTION_BITMAP);
    this.vmxPfecMask = vmcs.read32(VmcsField.PAGE_FAULT_ERROR_CODE_MASK);
    this.vmxPfecMatch = vmcs.read32(VmcsField.PAGE_FAULT_ERROR_CODE_MATCH);
    this.vmxCr0Mask = vmcs.read32(VmcsField.CR0_GUEST_HOST_MASK);
    this.vmxCr0Shadow = vmcs.read32(VmcsField.CR0_READ_SHADOW);
    this.vmxCr4Mask = vmcs.read32(VmcsField.CR4_GUEST_HOST_MASK);
    this.vmxCr4Shadow = vmcs.read32(VmcsField.CR4_READ_SHADOW);
    this.vmxExit = vmcs.read32(VmcsField.VM_EXIT_CONTROLS);
    this.eptActive = (proc2 & SECONDARY_ENABLE_EPT) !== 0;
    // With VPIDs on, the guest's translations live in their own tagged set and survive exits;
    // without them, VM entry and exit flush (SDM 29.4.3.1).
    if ((proc2 & SECONDARY_ENABLE_VPID) !== 0) this.selectTlb(vmcs.read32(VmcsField.VIRTUAL_PROCESSOR_ID));
    else this.flushTlb(false);
    if (this.eptActive && this.secondLevel === undefined) {
      throw new Error("vtlab bug: VM entry with enable EPT but no SecondLevelTranslator attached to the vCPU");
    }
    this.vmxEntryRetired = this.retired;
    this.vmxTimer = vmcs.read32(VmcsField.VMX_PREEMPTION_TIMER_VALUE);
    // The preemption timer counts retired instructions from here; the run loop stops at its end
    // like at the end of a budget (no per-instruction check), and exits there.
    this.vmxTimerEnd = (pin & PIN_PREEMPTION_TIMER) !== 0 ? this.retired + this.vmxTimer : Number.POSITIVE_INFINITY;
    // Boundary events the run loop must look at before every instruction (SDM 26.2, 26.5).
    // External-interrupt exiting is not among them: it only matters while an interrupt is
    // pending, and raising one already makes the loop attentive (see the check in run()).
    this.vmxWatch = (proc & (CPU_INTR_WINDOW_EXITING | CPU_NMI_WINDOW_EXITING | CPU_MONITOR_TRAP_FLAG)) !== 0;
    if (this.vmxWatch || this.pendingIrqs.length > 0) this.attention = 1;
    // Compiled blocks stay on: they hold only straight-line handlers, which no exiting control
    // affects, and exceptions leave a block through the same path that applies the bitmap.
  }

  /** Leave non-root operation (after saving the guest state for a VM exit). */
  leaveNonRoot(): void {
    this.vmcs = undefined;
  }

  /**
   * An instruction causes a VM exit: record it and unwind. RIP stays at the instruction (the
   * run loop restores it), and the exit carries the instruction's length.
   */
  vmExit(reason: number, qualification: number, instructionLength: number, extra?: Partial<VmExit>): never {
    // Without extra fields, a literal of fixed shape (the spread of `undefined` is a slow path).
    this.pendingExit = extra === undefined ? { reason, qualification, instructionLength } : { reason, qualification, instructionLength, ...extra };
    throw ABORT;
  }

  /**
   * An instruction causes a VM exit, without unwinding (the exit path's fast form of `vmExit`,
   * for a handler whose exit check comes before any effect of the instruction, as CPUID's does):
   * the exit is recorded, the handler returns at once, and the retirement its caller counts after
   * it (the run loop, a compiled block's last instruction, executeOp) is undone here. The run
   * loop takes the exit at the next boundary, before anything else (it raises `attention`), so
   * the exit, RIP, the registers and the retired count are those `vmExit` gives, without a throw.
   */
  deferExit(reason: number, qualification: number, instructionLength: number): void {
    this.pendingExit = { reason, qualification, instructionLength };
    this.retired--;
    this.deferredAttention = this.attention;
    this.attention = 1;
  }

  /**
   * Whether exception `vector` (error code `errorCode`) causes a VM exit in non-root operation:
   * the exception bitmap, and for #PF the error-code mask/match rule (SDM 25.2).
   */
  exceptionExits(vector: number, errorCode: number): boolean {
    const bit = (this.vmxExceptionBitmap >>> vector) & 1;
    if (vector !== Vector.PF) return bit !== 0;
    // Bit 14 set: exit when PFEC & MASK == MATCH; clear: exit when they differ.
    const matches = ((errorCode & this.vmxPfecMask) >>> 0) === this.vmxPfecMatch >>> 0;
    return bit !== 0 ? matches : !matches;
  }

  /** Inject an event at VM entry (SDM 27.6): delivered through the guest IDT as if it occurred now. */
  injectEvent(vector: number, errorCode: number, softwareInterrupt: boolean, external: boolean, softwareException: 0 | 5 | 6 = 0, instructionLength = 0): void {
    // RIP is already past a software event's instruction (VM-entry instruction length); an exit
    // during its delivery reports that length and saves RIP at the instruction (SDM 28.2.4).
    this.insnStart = this.rip - instructionLength;
    this.deliveringPrivileged = softwareException === 5;
    this.deliveringSoftwareException = softwareException === 6;
    const ok = this.deliverEvent(vector, errorCode, softwareInterrupt, external);
    this.deliveringPrivileged = false;
    this.deliveringSoftwareException = false;
    if (!ok) this.pendingExit = { reason: ExitReason.TripleFault, qualification: 0, instructionLength: 0 };
  }

  /**
   * Deliver an event through the IDT (SDM Vol. 3A, 6.14 for IA-32e mode). A fault while
   * delivering becomes #DF per SDM Table 6-5; a fault while delivering #DF is a triple fault.
   */
  deliverEvent(vector: number, errorCode: number, software: boolean, external: boolean): boolean {
    const outer = this.delivering;
    if (outer === Vector.DF) return false; // fault while delivering #DF: triple fault
    let v = vector;
    let ec = errorCode;
    if (outer >= 0 && isDoubleFault(outer, vector)) {
      v = Vector.DF;
      ec = 0;
    }
    if (this.realMode) ec = -1; // real-address mode pushes no error codes (SDM 20.1.4)
    this.delivering = v;
    try {
      this.deliverThroughIdt(v, ec, software, external);
      this.delivering = -1;
      this.halted = false;
      return true;
    } catch (e) {
      if (e !== ABORT) throw e;
      const nested = this.pendingVector;
      const nestedEc = this.pendingErrorCode;
      this.pendingVector = -1;
      // In VMX non-root operation, a VM exit that interrupts this delivery (an EPT violation on
      // the IDT or the stack, or a nested exception in the exception bitmap) reports the event
      // being delivered as IDT-vectoring information, and wins over #DF (SDM 28.2.3, 26.2).
      if (this.vmcs !== undefined && (this.pendingExit !== undefined || (nested >= 0 && this.exceptionExits(nested, nestedEc)))) {
        const type = external ? 0 : software ? 4 : this.deliveringPrivileged ? 5 : this.deliveringSoftwareException ? 6 : v === Vector.NMI ? 2 : 3;
        const idtVectoring = { vector: v, type, ...(ec >= 0 ? { errorCode: ec } : {}) };
        // For a software interrupt or (privileged) software exception the exit records the instruction's length.
        const instructionLength = type >= 4 ? this.rip - this.insnStart : 0;
        this.pendingExit =
          this.pendingExit !== undefined
            ? { ...this.pendingExit, idtVectoring, instructionLength }
            : {
                reason: ExitReason.ExceptionOrNmi,
                qualification: nested === Vector.PF ? this.faultLinear : 0,
                instructionLength,
                interruption: { vector: nested, type: 3, ...(nestedEc >= 0 && !this.realMode ? { errorCode: nestedEc } : {}) },
                idtVectoring,
              };
        this.delivering = -1;
        return true;
      }
      if (v === Vector.DF) {
        this.delivering = -1;
        return false;
      }
      // A fault while delivering INT n, INT3 or INTO is a fault of that instruction: its frame's
      // return address is the instruction itself, not the next one (SDM Vol. 3A 6.12.1.1 and the
      // INT n pseudo-code; insnStart is RIP for events between instructions, so this changes
      // nothing for them).
      this.rip = this.insnStart;
      this.deliveringSoftwareException = false;
      this.deliveringPrivileged = false;
      if (nested === Vector.PF) this.cr2 = this.faultLinear; // a #PF delivered from here writes CR2 too
      // Contributory-after-contributory or #PF-after-#PF become #DF; benign pairs deliver the second.
      const ok = this.deliverEvent(nested, nestedEc, false, false);
      this.delivering = -1;
      return ok;
    }
  }

  private deliverThroughIdt(vector: number, errorCode: number, software: boolean, external: boolean): void {
    if (this.realMode) {
      this.deliverReal(vector, external);
      return;
    }
    if ((this.efer & EFER_LMA) === 0) {
      this.deliverThroughIdt32(vector, errorCode, software, external);
      return;
    }
    const extBit = external ? 1 : 0;
    const gateOffset = vector * 16;
    if (gateOffset + 15 > this.idtrLimit) this.fault(Vector.GP, vector * 8 + 2 + extBit);
    const gate = this.idtrBase + gateOffset;
    const w0 = this.readAccess(gate, 4, Access.Read | Access.Implicit) >>> 0;
    const w1 = this.readAccess(gate + 4, 4, Access.Read | Access.Implicit) >>> 0;
    const w2 = this.readAccess(gate + 8, 4, Access.Read | Access.Implicit) >>> 0;
    const type = (w1 >>> 8) & 0x1f;
    const dpl = (w1 >>> 13) & 3;
    const present = (w1 & 0x8000) !== 0;
    // 64-bit interrupt gate 0xE or trap gate 0xF (SDM Table 3-2); anything else is #GP.
    if (type !== 0x0e && type !== 0x0f) this.fault(Vector.GP, vector * 8 + 2 + extBit);
    // The gate-DPL check applies to software interrupts and software exceptions alike (INT n,
    // INT3, INTO; not INT1 or hardware events): SDM Vol. 3A 6.12.1.1.
    if ((software || this.deliveringSoftwareException) && dpl < this.cpl) this.fault(Vector.GP, vector * 8 + 2);
    if (!present) this.fault(Vector.NP, vector * 8 + 2 + extBit);
    const selector = w0 >>> 16;
    const target = toSigned64((w1 & 0xffff0000) | (w0 & 0xffff), w2); // offset 15:0, 31:16, 63:32
    const ist = w1 & 7;
    const cs = this.loadDescriptor(selector, Vector.GP);
    const newCpl = (cs.attr >>> 5) & 3;
    if ((cs.attr & SEG_ATTR_L) === 0 || (cs.attr & 0x18) !== 0x18) this.fault(Vector.GP, (selector & 0xfffc) + extBit);
    if ((cs.attr & 0x80) === 0) this.fault(Vector.NP, (selector & 0xfffc) + extBit);

    const oldSs = (this.seg[Seg.SS] as SegmentCache).selector;
    const oldRsp = this.regAddr(4);
    const oldFlags = this.getFlags();
    const oldCs = (this.seg[Seg.CS] as SegmentCache).selector;
    const oldRip = this.rip;
    let rsp: number;
    if (ist !== 0) rsp = this.readTss64(0x24 + (ist - 1) * 8);
    else if (newCpl < this.cpl) rsp = this.readTss64(4 + newCpl * 8);
    else rsp = oldRsp;
    rsp = wrap64(rsp - (rsp % 16 + 16) % 16); // align to 16 (SDM 6.14.2)
    const prevCpl = this.cpl;
    // Push SS, RSP, RFLAGS, CS, RIP (and the error code) on the new stack; the frame is written
    // with supervisor privilege.
    this.cpl = newCpl;
    try {
      const frame = [oldSs, oldRsp, oldFlags, oldCs, oldRip];
      if (errorCode >= 0) frame.push(errorCode);
      let sp = rsp;
      for (const value of frame) {
        sp = wrap64(sp - 8);
        if (sp < -TWO_47 || sp >= TWO_47) this.fault(Vector.SS, 0);
        this.write64(sp, value >>> 0, Math.floor(value / TWO_32) | 0);
      }
      rsp = sp;
    } catch (e) {
      this.cpl = prevCpl;
      throw e;
    }
    if (newCpl < prevCpl) {
      const ss = this.seg[Seg.SS] as SegmentCache;
      ss.selector = newCpl; // a null SS with RPL = new CPL (SDM 6.14.3)
      ss.attr = 0;
      ss.base = 0;
    }
    const csCache = this.seg[Seg.CS] as SegmentCache;
    csCache.selector = (selector & 0xfffc) | newCpl;
    csCache.base = 0;
    csCache.attr = cs.attr;
    csCache.limit = 0xffff_ffff;
    this.setRegFromNumber(4, rsp);
    this.rip = target;
    // Interrupt gates clear IF; both clear TF, NT, RF (and VM).
    const clear = (type === 0x0e ? 0x200 : 0) | 0x100 | 0x4000 | 0x10000 | 0x20000;
    this.flagsOther &= ~clear;
    this.interruptShadow = false;
    this.updateMode();
    this.counters.interrupts += external ? 1 : 0;
  }

  /**
   * Protected-mode delivery outside IA-32e mode (SDM Vol. 3A 6.10-6.12 and the INT n pseudo-code):
   * 8-byte gates; 16-bit and 32-bit interrupt and trap gates (types 6, 7, 14, 15) and task gates
   * (type 5, `taskGate`). A handler in a more privileged non-conforming code segment runs on the
   * stack the TSS names for its ring (SS0:ESP0 and so on of a 32-bit TSS, SS0:SP0 of a 16-bit one),
   * with SS:ESP of the interrupted code pushed first. The frame's slots are 4 bytes through a
   * 32-bit gate and 2 through a 16-bit one. Modelled more simply: segment limits are not checked
   * (flat segments, as everywhere outside 64-bit mode) and virtual-8086 mode does not exist.
   */
  private deliverThroughIdt32(vector: number, errorCode: number, software: boolean, external: boolean): void {
    const ext = external ? 1 : 0;
    const idtError = vector * 8 + 2 + ext; // IDT bit (1) and EXT (0) of the error code (SDM 6.13)
    if (vector * 8 + 7 > this.idtrLimit) this.fault(Vector.GP, idtError);
    const gate = (this.idtrBase + vector * 8) >>> 0;
    const w0 = this.readAccess(gate, 4, Access.Read | Access.Implicit) >>> 0;
    const w1 = this.readAccess((gate + 4) >>> 0, 4, Access.Read | Access.Implicit) >>> 0;
    const type = (w1 >>> 8) & 0x1f; // S (bit 12) must be 0: a system descriptor
    const dpl = (w1 >>> 13) & 3;
    // SDM Table 3-2: 5 task gate, 6/7 16-bit interrupt/trap gate, 14/15 32-bit interrupt/trap gate.
    if (type !== 0x05 && type !== 0x06 && type !== 0x07 && type !== 0x0e && type !== 0x0f) this.fault(Vector.GP, idtError);
    if ((software || this.deliveringSoftwareException) && dpl < this.cpl) this.fault(Vector.GP, vector * 8 + 2);
    if ((w1 & 0x8000) === 0) this.fault(Vector.NP, idtError);
    const selector = w0 >>> 16;
    if (type === 0x05) {
      this.taskGate(selector, errorCode, ext);
      return;
    }
    const gate32 = (type & 0x08) !== 0;
    const offset = gate32 ? ((w1 & 0xffff0000) | (w0 & 0xffff)) >>> 0 : w0 & 0xffff;
    if ((selector & 0xfffc) === 0) this.fault(Vector.GP, ext);
    const cs = this.loadDescriptorExt(selector, Vector.GP, ext);
    const csDpl = (cs.attr >>> 5) & 3;
    if ((cs.attr & 0x18) !== 0x18 || csDpl > this.cpl) this.fault(Vector.GP, (selector & 0xfffc) + ext);
    if ((cs.attr & 0x80) === 0) this.fault(Vector.NP, (selector & 0xfffc) + ext);
    const conforming = (cs.attr & 0x04) !== 0;
    const inner = !conforming && csDpl < this.cpl;
    const newCpl = inner ? csDpl : this.cpl;

    const oldSs = this.seg[Seg.SS] as SegmentCache;
    const oldSsSel = oldSs.selector;
    const oldEsp = this.lo[4]! >>> 0;
    const oldFlags = this.getFlags();
    const oldCs = (this.seg[Seg.CS] as SegmentCache).selector;
    const oldEip = this.rip >>> 0;
    // The stack the frame goes on: the TSS's for the new ring (checked as the SDM's #TS rules
    // say), or the current one.
    let ssSel = oldSsSel;
    let ssBase = oldSs.base;
    let ssB = this.ssB;
    let sp = oldEsp;
    let newSs: SegmentCache | undefined;
    if (inner) {
      const tss32 = (this.tr.attr & 0x08) !== 0; // TSS type 9/11 (32-bit) or 1/3 (16-bit)
      const at = tss32 ? 4 + newCpl * 8 : 2 + newCpl * 4;
      if (at + (tss32 ? 5 : 3) > this.tr.limit) this.fault(Vector.TS, (this.tr.selector & 0xfffc) + ext);
      if (tss32) {
        sp = this.readAccess((this.tr.base + at) >>> 0, 4, Access.Read | Access.Implicit) >>> 0;
        ssSel = this.readAccess((this.tr.base + at + 4) >>> 0, 2, Access.Read | Access.Implicit) & 0xffff;
      } else {
        sp = this.readAccess((this.tr.base + at) >>> 0, 2, Access.Read | Access.Implicit) & 0xffff;
        ssSel = this.readAccess((this.tr.base + at + 2) >>> 0, 2, Access.Read | Access.Implicit) & 0xffff;
      }
      // SS from the TSS: not null, RPL and DPL = the new CPL, a writable data segment, present.
      if ((ssSel & 0xfffc) === 0) this.fault(Vector.TS, ext);
      const d = this.loadDescriptorExt(ssSel, Vector.TS, ext);
      if ((ssSel & 3) !== newCpl || ((d.attr >>> 5) & 3) !== newCpl || (d.attr & 0x1a) !== 0x12) this.fault(Vector.TS, (ssSel & 0xfffc) + ext);
      if ((d.attr & 0x80) === 0) this.fault(Vector.SS, (ssSel & 0xfffc) + ext);
      newSs = d;
      ssBase = d.base;
      ssB = (d.attr & SEG_ATTR_DB) !== 0;
    }
    const slot = gate32 ? 4 : 2;
    const prevCpl = this.cpl;
    this.cpl = newCpl; // the frame is written with the handler's privilege
    try {
      const push = (value: number) => {
        sp = ssB ? (sp - slot) >>> 0 : (sp - slot) & 0xffff;
        const lin = (ssBase + sp) >>> 0;
        if (slot === 4) this.write32(lin, value | 0);
        else this.write16(lin, value & 0xffff);
      };
      if (inner) {
        push(oldSsSel);
        push(oldEsp);
      }
      push(oldFlags);
      push(oldCs);
      push(oldEip);
      if (errorCode >= 0) push(errorCode);
    } catch (e) {
      this.cpl = prevCpl;
      throw e;
    }
    // Commit: CS (RPL = the new CPL), SS:ESP when the ring changed, EIP, and the flags.
    if (newSs !== undefined) {
      const ss = this.seg[Seg.SS] as SegmentCache;
      ss.selector = ssSel;
      ss.base = newSs.base;
      ss.limit = newSs.limit;
      ss.attr = newSs.attr;
    }
    if (ssB) this.setReg32(4, sp);
    else this.setReg16(4, sp);
    const csCache = this.seg[Seg.CS] as SegmentCache;
    csCache.selector = (selector & 0xfffc) | newCpl;
    csCache.base = cs.base;
    csCache.limit = cs.limit;
    csCache.attr = cs.attr;
    this.rip = offset;
    // Interrupt gates clear IF; both clear TF, NT, RF and VM (SDM 6.12.1.3).
    const clear = ((type & 1) === 0 ? 0x200 : 0) | 0x100 | 0x4000 | 0x10000 | 0x20000;
    this.flagsOther &= ~clear;
    this.interruptShadow = false;
    this.updateMode();
    this.counters.interrupts += external ? 1 : 0;
  }

  /**
   * Real-address-mode delivery (SDM Vol. 3A 20.1.4 and the INT n pseudo-code, REAL-ADDRESS-MODE):
   * the vector's 4-byte entry (IP in bytes 1:0, CS in bytes 3:2) at IDTR.base + 4 * vector must
   * lie within IDTR.limit (else #GP); FLAGS, CS and IP are pushed as 16-bit values on SS:SP (or
   * SS:ESP with a big SS), no error code; IF, TF and AC are cleared; CS = the vector's segment,
   * base = segment << 4, the cached limit and attributes kept. A push that faults commits nothing.
   */
  private deliverReal(vector: number, external: boolean): void {
    const at = vector * 4;
    if (at + 3 > this.idtrLimit) this.fault(Vector.GP, 0);
    const entry = this.readAccess((this.idtrBase + at) >>> 0, 4, Access.Read | Access.Implicit) >>> 0;
    const ss = this.seg[Seg.SS] as SegmentCache;
    const cs = this.seg[Seg.CS] as SegmentCache;
    const big = this.ssB;
    let sp = this.lo[4]! >>> 0;
    const flags = this.getFlags() & 0xffff;
    const frame0 = flags;
    const frame1 = cs.selector;
    const frame2 = this.rip & 0xffff;
    for (let k = 0; k < 3; k++) {
      sp = big ? (sp - 2) >>> 0 : (sp - 2) & 0xffff;
      this.write16((ss.base + sp) >>> 0, k === 0 ? frame0 : k === 1 ? frame1 : frame2);
    }
    if (big) this.setReg32(4, sp);
    else this.setReg16(4, sp);
    const selector = entry >>> 16;
    cs.selector = selector;
    cs.base = selector * 16;
    this.rip = entry & 0xffff;
    this.flagsOther &= ~(RFLAGS_IF | RFLAGS_TF | RFLAGS_AC);
    this.paging.ac = false;
    this.interruptShadow = false;
    this.updateMode();
    this.counters.interrupts += external ? 1 : 0;
  }

  /** `loadDescriptor` with the EXT bit of the error code for faults raised while delivering an event. */
  private loadDescriptorExt(selector: number, vector: number, ext: number): SegmentCache {
    const index = selector & 0xfff8;
    const ldt = (selector & 4) !== 0;
    const limit = ldt ? this.ldtr.limit : this.gdtrLimit;
    if (index + 7 > limit) this.fault(vector, (selector & 0xfffc) + ext);
    return this.loadDescriptor(selector, vector);
  }

  /**
   * An event through a task gate (SDM Vol. 3A 6.11.2, 7.3). In VMX non-root operation every task
   * switch is a VM exit (SDM 26.1.2, exit reason 9): the qualification holds the new TSS selector
   * (bits 15:0) and the source, 3 = a task gate in the IDT (bits 31:30, SDM Table 28-2), and the
   * event is reported as IDT-vectoring information; the hypervisor emulates the switch (Xen's
   * hvm_task_switch). Outside VMX the task switch itself is not modelled: the event ends as
   * #GP(selector + EXT), said in the README.
   */
  private taskGate(selector: number, _errorCode: number, ext: number): void {
    if (this.vmcs !== undefined) this.vmExit(ExitReason.TaskSwitch, ((selector & 0xffff) | (TASK_SWITCH_SOURCE_IDT << 30)) >>> 0, 0);
    this.fault(Vector.GP, (selector & 0xfffc) + ext);
  }

  /**
   * IRET with RFLAGS.NT = 1 outside IA-32e mode returns to the task in the current TSS's
   * back-link (SDM "IRET", 7.3): in VMX non-root operation that is a task-switch VM exit with
   * source 1 (IRET); outside VMX it is not modelled and raises #GP(0).
   */
  taskReturn(instructionLength: number): never {
    if (this.vmcs !== undefined) {
      const link = this.readAccess(this.tr.base >>> 0, 2, Access.Read | Access.Implicit) & 0xffff;
      this.vmExit(ExitReason.TaskSwitch, (link | (TASK_SWITCH_SOURCE_IRET << 30)) >>> 0, instructionLength);
    }
    return this.gp(0);
  }

  /** Read a 64-bit field of the 64-bit TSS (RSPn at 4 + 8n, ISTn at 0x24 + 8(n-1)). */
  private readTss64(offset: number): number {
    if (offset + 7 > this.tr.limit) this.fault(Vector.TS, this.tr.selector & 0xfffc);
    const lo = this.readAccess(this.tr.base + offset, 4, Access.Read | Access.Implicit) >>> 0;
    const hi = this.readAccess(this.tr.base + offset + 4, 4, Access.Read | Access.Implicit) | 0;
    return hi * TWO_32 + lo;
  }

  /** Read a segment descriptor from the GDT (or LDT) for `selector`; #GP(selector) when out of limits. */
  loadDescriptor(selector: number, vector: number = Vector.GP): SegmentCache {
    const index = selector & 0xfff8;
    const table = (selector & 4) !== 0 ? this.ldtr : undefined;
    const base = table !== undefined ? table.base : this.gdtrBase;
    const limit = table !== undefined ? table.limit : this.gdtrLimit;
    if (index === 0 && table === undefined) this.fault(vector, 0);
    if (index + 7 > limit) this.fault(vector, selector & 0xfffc);
    const lo = this.readAccess(base + index, 4, Access.Read | Access.Implicit) >>> 0;
    const hi = this.readAccess(base + index + 4, 4, Access.Read | Access.Implicit) >>> 0;
    const attr = (hi >>> 8) & 0xf0ff;
    let segLimit = (lo & 0xffff) | (hi & 0xf0000);
    if ((attr & 0x8000) !== 0) segLimit = segLimit * 4096 + 0xfff;
    const segBase = (lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000);
    return { selector, base: segBase >>> 0, limit: segLimit >>> 0, attr };
  }

  /** Load a data segment register (MOV Sreg, POP Sreg) with the protected-mode checks that matter. */
  loadDataSegment(s: number, selector: number): void {
    const cache = this.seg[s] as SegmentCache;
    if (this.realMode) {
      // Real-address mode: selector and base only; the cached limit and attributes stay (SDM 20.1.1).
      cache.selector = selector;
      cache.base = selector * 16;
      return;
    }
    if ((selector & 0xfffc) === 0) {
      if (s === Seg.SS && (!this.mode64 || this.cpl === 3)) this.gp(0);
      cache.selector = selector;
      cache.attr = 0;
      if (!this.mode64 || s < Seg.FS) cache.base = 0;
      return;
    }
    const d = this.loadDescriptor(selector);
    if ((d.attr & 0x10) === 0) this.gp(selector & 0xfffc);
    if (s === Seg.SS) {
      if ((d.attr & 0x0a) !== 0x02 || (selector & 3) !== this.cpl || ((d.attr >>> 5) & 3) !== this.cpl) this.gp(selector & 0xfffc);
      if ((d.attr & 0x80) === 0) this.fault(Vector.SS, selector & 0xfffc);
    } else {
      if ((d.attr & 0x0a) === 0x08) this.gp(selector & 0xfffc); // execute-only code
      if ((d.attr & 0x80) === 0) this.fault(Vector.NP, selector & 0xfffc);
    }
    cache.selector = selector;
    cache.attr = d.attr;
    cache.limit = d.limit;
    if (!this.mode64 || s < Seg.FS) cache.base = d.base;
    else if (s >= Seg.FS) cache.base = d.base; // a selector load sets FS/GS base from the descriptor's 32-bit base
    if (s === Seg.SS) this.updateMode();
  }

  /**
   * Load CS for a far JMP or CALL straight to a code segment (SDM "JMP", "CALL", protected and
   * IA-32e mode): a nonconforming segment needs RPL <= CPL and DPL = CPL, a conforming one
   * DPL <= CPL, else #GP(selector); CPL does not change and CS.RPL becomes CPL. Call gates, task
   * gates and TSS selectors are not modelled: they are system descriptors, #GP(selector) here.
   */
  loadCodeSegment(selector: number): void {
    if (this.realMode) {
      const c = this.seg[Seg.CS] as SegmentCache;
      c.selector = selector;
      c.base = selector * 16;
      this.updateMode();
      return;
    }
    const d = this.codeDescriptor(selector, (selector & 3) > this.cpl ? -1 : this.cpl);
    const cs = this.seg[Seg.CS] as SegmentCache;
    cs.selector = (selector & 0xfffc) | this.cpl;
    cs.base = d.base;
    cs.limit = d.limit;
    cs.attr = d.attr;
    this.updateMode();
  }

  /**
   * The code-segment descriptor for `selector`, checked for a transfer to privilege level `pl`
   * (-1: refused, #GP(selector)): a code segment, DPL = pl when nonconforming or DPL <= pl when
   * conforming, present (#NP), and not L = 1 with D = 1 in IA-32e mode.
   */
  codeDescriptor(selector: number, pl: number): SegmentCache {
    const sel = selector & 0xfffc;
    const d = this.loadDescriptor(selector);
    if ((d.attr & 0x18) !== 0x18 || pl < 0) this.gp(sel);
    const dpl = (d.attr >>> 5) & 3;
    if ((d.attr & 0x04) !== 0 ? dpl > pl : dpl !== pl) this.gp(sel);
    if ((d.attr & 0x80) === 0) this.fault(Vector.NP, sel);
    if ((this.efer & EFER_LMA) !== 0 && (d.attr & SEG_ATTR_L) !== 0 && (d.attr & SEG_ATTR_DB) !== 0) this.gp(sel);
    return d;
  }

  /** Enter or leave IA-32e mode as CR0.PG / EFER.LME dictate (SDM Vol. 3A, 10.8.5). */
  updateLongMode(): void {
    const lma = (this.cr0 & CR0_PG) !== 0 && (this.efer & EFER_LME) !== 0;
    if (lma && (this.cr4 & CR4_PAE) === 0) this.gp(0);
    this.efer = lma ? this.efer | EFER_LMA : this.efer & ~EFER_LMA;
    this.updateMode();
  }

  // =====================================================================================
  // The run loop
  // =====================================================================================

  /**
   * Execute up to `budget` steps: a retired instruction or a delivered event is one step each,
   * so a guest stuck in an exception loop (a handler that faults on its first fetch) still
   * returns.
   */
  run(budget: number): RunResult {
    const start = this.retired;
    if (this.pendingExit !== undefined) return this.takeExit(start); // an exit during VM entry (event injection)
    let events = 0;
    for (;;) {
      try {
        // One bound for the loop: the budget (less the events delivered, which count against it)
        // or the VMX-preemption timer's end, whichever comes first; recomputed when events change.
        let stop = Math.min(start + budget - events, this.vmxTimerEnd);
        this.repStop = stop;
        while (this.retired < stop) {
          let stepping = false;
          if (this.attention !== 0) {
            // The rare cases, in priority order: an exit the last instruction deferred (deferExit),
            // a stop request, an interrupt, HLT, a shadow.
            if (this.pendingExit !== undefined) {
              this.attention = this.deferredAttention;
              return this.takeExit(start);
            }
            this.shadowInsn = 0;
            if (this.stopRequest !== undefined) {
              const s = this.stopRequest;
              this.stopRequest = undefined;
              this.attention = 1;
              return { kind: "stop", retired: this.retired - start, reason: s.reason, code: s.code };
            }
            const shadow = this.shadowState;
            if ((this.vmxWatch || (this.pendingIrqs.length > 0 && (this.vmxPin & PIN_EXTINT_EXITING) !== 0)) && this.vmcs !== undefined && this.boundaryExit(shadow)) {
              this.insnStart = this.rip;
              return this.takeExit(start);
            }
            if (this.nmiPending && !this.nmiBlocked) {
              this.nmiPending = false;
              this.haltedState = false;
              this.insnStart = this.rip;
              events += this.eventWeight;
              this.eventStep();
              stop = Math.min(start + budget - events, this.vmxTimerEnd);
              this.repStop = stop;
              if (this.vmcs !== undefined && (this.vmxPin & PIN_NMI_EXITING) !== 0) {
                // NMI exiting: the NMI becomes an exit (reason 0, type 2) and is not delivered (SDM 26.2).
                this.pendingExit = { reason: ExitReason.ExceptionOrNmi, qualification: 0, instructionLength: 0, interruption: { vector: Vector.NMI, type: 2 } };
                return this.takeExit(start);
              }
              this.nmiBlocked = true;
              if (!this.deliverEvent(Vector.NMI, -1, false, false)) return this.tripleFault(Vector.NMI, start);
              if (this.pendingExit !== undefined) return this.takeExit(start);
              continue;
            }
            if (this.pendingIrqs.length > 0 && (this.flagsOther & 0x200) !== 0 && !shadow) {
              const v = this.pendingIrqs.shift() as number;
              this.haltedState = false;
              this.insnStart = this.rip;
              events += this.eventWeight;
              this.eventStep();
              stop = Math.min(start + budget - events, this.vmxTimerEnd);
              this.repStop = stop;
              if (!this.deliverEvent(v, -1, false, true)) return this.tripleFault(v, start);
              if (this.pendingExit !== undefined) return this.takeExit(start);
              continue;
            }
            if (this.haltedState) return { kind: "hlt", retired: this.retired - start };
            // Blocking by MOV SS holds the single-step trap of the MOV SS / POP SS over the next
            // instruction (SDM Vol. 3A 6.8.3): it is taken after that one, whatever its TF.
            const heldStep = this.stepPending && this.movSsBlocking && shadow;
            if (this.stepPending && !heldStep) {
              // Single-step trap after an instruction that began with RFLAGS.TF = 1 (SDM Vol. 3B
              // 17.3.1.4): #DB with DR6.BS, RIP already at the next instruction.
              this.stepPending = false;
              this.dr[6] = this.dr[6]! | DR6_BS;
              this.insnStart = this.rip;
              events += this.eventWeight;
              this.eventStep();
              stop = Math.min(start + budget - events, this.vmxTimerEnd);
              this.repStop = stop;
              if (!this.deliverEvent(Vector.DB, -1, false, false)) return this.tripleFault(Vector.DB, start);
              if (this.pendingExit !== undefined) return this.takeExit(start);
              continue;
            }
            this.shadowInsn = shadow ? (this.movSsBlocking ? 2 : 1) : 0;
            this.shadowState = false;
            this.movSsBlocking = false;
            stepping = (this.flagsOther & RFLAGS_TF) !== 0 || heldStep;
            this.stepPending = stepping;
            // Stay attentive for one more instruction after a shadow (the interrupt it held off)
            // or a single step.
            this.attention = shadow || stepping || this.vmxWatch || this.nmiPending || this.pendingIrqs.length > 0 ? 1 : 0;
          }
          const rip = this.rip;
          this.insnStart = rip; // a fault while fetching restarts here
          const off = rip & 0xfff;
          let insn: Insn | undefined;
          if (rip - off === this.fetchBase && this.fetchGen === this.tlbGeneration && this.cpl === this.fetchCpl) {
            insn = this.fetchPage![off];
          }
          if (insn === undefined) insn = this.fetchDecoded();
          let block = insn.block;
          if (block === undefined && ++insn.hits === this.blockThreshold && this.mode64 && this.compileBlocks) {
            this.buildBlock(insn, rip);
            block = insn.block;
          }
          if (block !== undefined && !stepping && !this.vmxWatch && stop - this.retired >= insn.blockLen) {
            // A compiled block may hand over to its successor (src/jit/: same page, nothing pending).
            let next = block(this, rip);
            while (next !== undefined) next = next(this, this.rip);
            continue;
          }
          this.rip = this.mode64 ? rip + insn.len : (rip + insn.len) >>> 0;
          insn.exec(this, insn);
          this.retired++;
        }
        // The bound reached: the preemption timer's (an exit, SDM 26.5.1) or the budget's.
        if (this.retired >= this.vmxTimerEnd && this.vmcs !== undefined && this.timerExit()) return this.takeExit(start);
        return { kind: "budget", retired: this.retired - start };
      } catch (e) {
        if (e !== ABORT) throw e;
        if (this.pendingExit !== undefined) return this.takeExit(start);
        const vector = this.pendingVector;
        if (!this.pendingIsTrap) this.stepPending = false; // a faulting instruction does not single-step
        if (this.vmcs !== undefined && vector >= 0 && vector < 32 && this.exceptionExits(vector, this.pendingErrorCode)) {
          return this.exceptionExit(start);
        }
        if (this.pendingIsTrap) this.retired++; // INT n / INT3 retire
        else {
          events += this.eventWeight;
          this.eventStep();
        }
        if (!this.deliverPending()) return this.tripleFault(vector, start);
        if (this.pendingExit !== undefined) return this.takeExit(start);
      }
    }
  }

  /**
   * Direct execution for native guests (see guest-ops.ts): run `op` as one instruction of
   * `length` bytes at RIP, with the same fault and VM-exit handling as the run loop. A fault
   * that does not exit is returned as a value (native guests have no IDT); RIP stays at the
   * "instruction" unless an exit handler moved it.
   */
  executeOp<T>(length: number, op: () => T): OpResult<T> {
    const rip = this.rip;
    this.insnStart = rip;
    this.rip = rip + length;
    try {
      const value = op();
      this.retired++;
      this.rip = rip;
      if (this.pendingExit !== undefined) {
        // The op's instruction exited through deferExit (its retirement already undone).
        this.attention = this.deferredAttention;
        return this.takeExit(this.retired) as OpResult<T>;
      }
      return { kind: "done", value };
    } catch (e) {
      if (e !== ABORT) throw e;
      const start = this.retired;
      if (this.pendingExit !== undefined) return this.takeExit(start) as OpResult<T>;
      const vector = this.pendingVector;
      const errorCode = this.pendingErrorCode;
      if (this.vmcs !== undefined && vector >= 0 && vector < 32 && this.exceptionExits(vector, errorCode)) {
        return this.exceptionExit(start) as OpResult<T>;
      }
      this.pendingVector = -1;
      this.rip = rip;
      this.counters.exceptions++;
      if (vector === Vector.PF) this.cr2 = this.faultLinear;
      return { kind: "exception", vector, errorCode, cr2: this.cr2 };
    }
  }

  /** Finish a VM exit: RIP back at the exiting instruction, guest state saved, exit returned. */
  private takeExit(start: number): RunResult {
    const exit = this.pendingExit as VmExit;
    this.pendingExit = undefined;
    this.pendingVector = -1;
    this.rip = this.insnStart;
    this.counters.vmExits++;
    // The processor saves guest state and the exit information into the VMCS and leaves
    // non-root operation (SDM 28.3); general-purpose registers stay here, as on hardware.
    if (this.vmcs !== undefined) {
      this.vmcsForResume = this.vmcs;
      saveOnExit(this, this.vmcs, exit);
      this.shadowInsn = 0; // reported; the next entry's interruptibility state decides afresh
      if ((this.vmxExit & EXIT_SAVE_PREEMPTION_TIMER) !== 0) {
        const left = this.vmxTimerExpired ? 0 : Math.max(0, Math.floor(Math.min(this.vmxTimer, this.vmxTimerEnd - this.retired)));
        this.vmcs.setField(VmcsField.VMX_PREEMPTION_TIMER_VALUE, left);
      }
      this.vmxTimerExpired = false;
    }
    this.vmxWatch = false;
    this.vmxTimerEnd = Number.POSITIVE_INFINITY;
    this.eptActive = false;
    if (this.vpid !== 0) this.selectTlb(0);
    else this.flushTlb(false); // without VPID, VM exits flush linear and combined mappings (SDM 29.4.3.1)
    this.vmcs = undefined;
    return { kind: "vmexit", retired: this.retired - start, exit };
  }

  /**
   * VM exits that happen between instructions, in the SDM's priority order (6.9, 26.2, 26.5):
   * the monitor trap flag after an instruction, the VMX-preemption timer, an external interrupt
   * (with external-interrupt exiting), the interrupt window. Records the exit and returns true.
   */
  private boundaryExit(shadow: boolean): boolean {
    const pin = this.vmxPin;
    const proc = this.vmxProc;
    const executed = this.retired - this.vmxEntryRetired;
    if ((proc & CPU_MONITOR_TRAP_FLAG) !== 0 && executed > 0) {
      this.pendingExit = { reason: ExitReason.MonitorTrapFlag, qualification: 0, instructionLength: 0 };
      return true;
    }
    if ((pin & PIN_PREEMPTION_TIMER) !== 0 && this.retired >= this.vmxTimerEnd) return this.timerExit();
    if ((pin & PIN_EXTINT_EXITING) !== 0 && this.pendingIrqs.length > 0) {
      // With "acknowledge interrupt on exit" the vector is taken from the controller and
      // reported; without it, the interrupt stays pending (SDM 28.2.2).
      const ack = (this.vmxExit & EXIT_ACK_INTR_ON_EXIT) !== 0;
      const vector = ack ? (this.pendingIrqs.shift() as number) : -1;
      this.pendingExit = { reason: ExitReason.ExternalInterrupt, qualification: 0, instructionLength: 0, ...(ack ? { interruption: { vector, type: 0 } } : {}) };
      this.haltedState = false;
      return true;
    }
    if ((proc & CPU_NMI_WINDOW_EXITING) !== 0 && !this.nmiBlocked) {
      this.pendingExit = { reason: ExitReason.NmiWindow, qualification: 0, instructionLength: 0 };
      return true;
    }
    if ((proc & CPU_INTR_WINDOW_EXITING) !== 0 && (this.flagsOther & 0x200) !== 0 && !shadow) {
      this.pendingExit = { reason: ExitReason.InterruptWindow, qualification: 0, instructionLength: 0 };
      return true;
    }
    return false;
  }

  /**
   * The second-level translator (EPT) the hypervisor attached for this vCPU. It is used only in
   * VMX non-root operation with "enable EPT" on; every guest-physical reference goes through it.
   */
  secondLevel: SecondLevelTranslator | undefined = undefined;
  /** EPT is on for the running guest (set at VM entry). */
  eptActive = false;
  private readonly eptTables: PagingStructureAccess<EptViolation | EptMisconfig> = {
    readEntry: (gpa: number, _level: PagingLevel, out: U64) => {
      const hpa = this.secondLevel!.translate(gpa, EptAccess.Read, GuestReference.PagingStructure);
      this.counters.eptReferences += this.secondLevel!.lastReferences;
      if (typeof hpa !== "number") return hpa;
      const e = this.memory.read64(hpa, out);
      return e === undefined ? undefined : { kind: "ept-misconfig", gpa };
    },
    setEntryBits: (gpa: number, _level: PagingLevel, bits: number) => {
      const hpa = this.secondLevel!.translate(gpa, EptAccess.Write, GuestReference.PagingStructure);
      this.counters.eptReferences += this.secondLevel!.lastReferences;
      if (typeof hpa !== "number") return hpa;
      const lo = this.memory.read32(hpa);
      if (typeof lo !== "number") return { kind: "ept-misconfig", gpa };
      this.memory.write32(hpa, (lo | bits) >>> 0);
      return undefined;
    },
  };

  /** An EPT violation or misconfiguration becomes a VM exit (reasons 48, 49; SDM 28.2.1, 28.2.4). */
  private eptExit(fault: EptViolation | EptMisconfig, lin: number, final: boolean): never {
    if (fault.kind === "ept-misconfig") {
      return this.vmExit(ExitReason.EptMisconfig, 0, 0, { guestPhysical: fault.gpa });
    }
    const qualification = fault.qualification | EPT_QUAL_LINEAR_VALID | (final ? EPT_QUAL_FINAL : 0);
    return this.vmExit(ExitReason.EptViolation, qualification, 0, { guestPhysical: fault.gpa, guestLinear: lin });
  }

  /** The preemption timer reached zero (its saved value is then 0). */
  vmxTimerExpired = false;

  /**
   * One event delivered by the run loop: it counts as a step for the host (eventsDelivered) and
   * as one tick of the VMX-preemption timer. Modelled more simply than hardware, where the timer
   * counts TSC time whatever the processor spends it on (SDM Vol. 3C 26.5.1): here it counts
   * retired instructions (one tick each) and event deliveries (eventWeight ticks each).
   */
  private eventStep(): void {
    this.eventsDelivered++;
    if (this.vmxTimerEnd !== Number.POSITIVE_INFINITY) this.vmxTimerEnd -= this.eventWeight;
  }

  /**
   * The VMX-preemption timer expired (reason 52, SDM 26.5.1): an exit between instructions,
   * below the monitor trap flag in priority and above external interrupts and the interrupt
   * window. Returns false if a monitor-trap-flag exit comes first (boundaryExit takes it).
   */
  private timerExit(): boolean {
    this.insnStart = this.rip;
    if ((this.vmxProc & CPU_MONITOR_TRAP_FLAG) !== 0 && this.retired > this.vmxEntryRetired) return this.boundaryExit(this.shadowState);
    this.pendingExit = { reason: ExitReason.PreemptionTimer, qualification: 0, instructionLength: 0 };
    this.vmxTimerExpired = true;
    return true;
  }

  /** An exception that the exception bitmap turns into a VM exit (reason 0, SDM 28.2.2). */
  private exceptionExit(start: number): RunResult {
    const vector = this.pendingVector;
    const errorCode = this.pendingErrorCode;
    const trap = this.pendingIsTrap;
    const privileged = this.pendingIsPrivileged;
    this.pendingIsPrivileged = false;
    // In real-address mode no exception pushes an error code, so none is reported (SDM 28.2.2).
    const hasError = errorCode >= 0 && !this.realMode;
    // A software exception (INT3, INTO) or ICEBP exits with RIP at the instruction and its length.
    const length = trap ? this.rip - this.insnStart : 0;
    // A #DB exit's qualification holds the DR6 conditions (B3-B0, BD, BS: SDM Table 28-1); ICEBP has none.
    const dbQualification = privileged ? 0 : this.dr[6]! & 0x600f;
    this.pendingExit = {
      reason: ExitReason.ExceptionOrNmi,
      qualification: vector === Vector.PF ? this.faultLinear : vector === Vector.DB ? dbQualification : 0,
      instructionLength: length,
      interruption: { vector, type: trap ? (privileged ? 5 : 6) : 3, ...(hasError ? { errorCode } : {}) },
    };
    return this.takeExit(start);
  }

  private tripleFault(vector: number, start: number): RunResult {
    if (this.vmcs !== undefined) {
      // In VMX non-root operation a triple fault is a VM exit (reason 2), not a shutdown.
      this.pendingExit = { reason: ExitReason.TripleFault, qualification: 0, instructionLength: 0 };
      return this.takeExit(start);
    }
    this.halted = true;
    return { kind: "triple-fault", retired: this.retired - start, vector, rip: this.rip };
  }

  /** Ask the run loop to stop after the current instruction (a device's "exit" port). */
  requestStop(reason: string, code: number): void {
    this.stopRequest = { reason, code };
    this.attention = 1;
  }
}

interface TlbSet {
  tag: Float64Array;
  phys: Float64Array;
  ok: Int32Array;
  rights: Int32Array;
  flags: Int32Array;
  view: (DataView | undefined)[];
  hasLarge: boolean;
  filled: Int32Array;
  filledCount: number;
}

function clearTlbSet(set: TlbSet): void {
  set.tag.fill(Number.NaN);
  set.flags.fill(0);
  set.filledCount = 0;
  set.hasLarge = false;
}

function newTlbSet(): TlbSet {
  return {
    tag: new Float64Array(TLB_SIZE).fill(Number.NaN),
    phys: new Float64Array(TLB_SIZE),
    ok: new Int32Array(TLB_SIZE),
    rights: new Int32Array(TLB_SIZE),
    flags: new Int32Array(TLB_SIZE),
    view: new Array<DataView | undefined>(TLB_SIZE).fill(undefined),
    hasLarge: false,
    filled: new Int32Array(TLB_SIZE),
    filledCount: 0,
  };
}

/** Reduce a signed number to the signed 64-bit range (exact below 2^53 in magnitude). */
export function wrap64(v: number): number {
  if (v >= -(2 ** 63) && v < 2 ** 63) return v;
  const m = 2 ** 64;
  let r = v % m;
  if (r >= 2 ** 63) r -= m;
  if (r < -(2 ** 63)) r += m;
  return r;
}

function wrapAdd(lin: number, n: number, mode64: boolean): number {
  return mode64 ? wrap64(lin + n) : (lin + n) >>> 0;
}

/** A 64-bit value from halves as a signed number (exact for canonical addresses). */
export function toSigned64(lo: number, hi: number): number {
  return (hi | 0) * TWO_32 + (lo >>> 0);
}

export type { PagingLevel };
