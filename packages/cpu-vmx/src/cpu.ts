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
 *
 * Source layout: this file holds the `Cpu` class (the register file and the rest of the state,
 * the mode, fault recording) and the types of its API; each concept's code lives in src/cpu/ as
 * functions taking the `Cpu` (flags.ts, int64.ts, tlb.ts, memory.ts, code-cache.ts,
 * segments.ts, events.ts, vmexit.ts, run.ts), and the class's methods delegate to them. Those
 * modules import only types from this file, so imports point one way (no runtime cycle).
 */
import {
  PagingFormat,
  type MachineMemory,
  type MmioBus,
  PhysicalPagingStructures,
  type PagingMode,
  type PagingStructureAccess,
  PortIoBus,
  Vector,
  WalkResult,
  pagingMode,
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
  RFLAGS_CF,
  RFLAGS_FIXED,
  DR6_INIT,
  DR7_INIT,
  SEG_ATTR_DB,
  SEG_ATTR_L,
  Seg,
} from "./regs.js";
import type { Insn } from "./decode/insn.js";
import { FpuState } from "./exec/fpu.js";
import type { EptMisconfig, EptViolation, SecondLevelTranslator, VmExit } from "./vmx/interfaces.js";
import type { Vmcs } from "./vmx/vmcs.js";
import { BLOCK_THRESHOLD } from "./blocks.js";
import { jitDefault } from "./jit/compile.js";
import { cond, getFlags, setArithFlags, setFlags } from "./cpu/flags.js";
import { TWO_32, TWO_47, TWO_56 } from "./cpu/int64.js";
import {
  eptPagingStructures,
  flushTlb,
  invalidatePage,
  invept,
  invvpid,
  linear,
  loadPdptes,
  physRead,
  physWrite,
  pop16,
  pop32,
  pop64,
  push16,
  push32,
  push64,
  read16,
  read32,
  read64,
  read8,
  readAccess,
  selectTlb,
  translate,
  write16,
  write32,
  write64,
  write8,
  writeView,
} from "./cpu/memory.js";
import { TLB_SIZE, type TlbSet } from "./cpu/tlb.js";
import { ABORT, deliverEvent, deliverPending, injectEvent, taskReturn } from "./cpu/events.js";
import { codeDescriptor, loadCodeSegment, loadDataSegment, loadDescriptor } from "./cpu/segments.js";
import { deferExit, enterNonRoot, exceptionExits, vmExit } from "./cpu/vmexit.js";
import { executeOp, run } from "./cpu/run.js";
import { codeCacheStats, codeSharing, decoderSlot, codeWritten, detachCode, fetchByte, fetchDecoded, flushDecoded, type CodeCacheStats, type CodeSharing } from "./cpu/code-cache.js";

export { PARITY_EVEN } from "./cpu/flags.js";
export { toSigned64, wrap64 } from "./cpu/int64.js";
export { TLB_MAX_SETS } from "./cpu/tlb.js";
export { COMPILED_MAX_BLOCKS, DECODED_MAX_INSNS, DECODED_MAX_PAGES } from "./cpu/code-cache.js";
export type { CodeCacheStats } from "./cpu/code-cache.js";
export { ABORT, TASK_SWITCH_SOURCE_IDT, TASK_SWITCH_SOURCE_IRET } from "./cpu/events.js";
export { DR6_BS } from "./cpu/run.js";

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
  readonly pdpteScratch: U64 = { lo: 0, hi: 0 };

  // ---- Execution state ----
  haltedState = false;
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
  shadowState = false;
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
  readonly pendingIrqs: number[] = [];
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
  delivering = -1;

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
  readonly walkOut = new WalkResult<unknown>();

  // TLB: direct-mapped, 4 KiB entries. Internal state (cpu/memory.ts and the compiled code read
  // these fields), as are the decoded-code cache's below (cpu/code-cache.ts): not API.
  // The active TLB set (one per VPID; see selectTlb). Fields, not a set object, so the memory
  // fast path reads them directly.
  tlbTag: Float64Array = new Float64Array(TLB_SIZE).fill(Number.NaN);
  tlbPhys: Float64Array = new Float64Array(TLB_SIZE);
  tlbOk: Int32Array = new Int32Array(TLB_SIZE);
  tlbRights: Int32Array = new Int32Array(TLB_SIZE);
  tlbFlags: Int32Array = new Int32Array(TLB_SIZE); // bit0 global, bit1 dirty, bit2 large
  tlbView: (DataView | undefined)[] = new Array<DataView | undefined>(TLB_SIZE).fill(undefined);
  /** Large-page sizes with pieces in the TLB since the last flush: bit (shift - 12) per page shift (21, 22, 30). */
  tlbLargeShifts = 0;
  /** Indices filled since the last flush (each listed once: TLB_LISTED in tlbFlags). */
  tlbFilled: Int32Array = new Int32Array(TLB_SIZE);
  tlbFilledCount = 0;
  /** The VPID the active TLB set is tagged with (0: VMX root operation, or VPID off). */
  vpid = 0;
  /** Saved TLB sets by VPID, least recently selected first (Map insertion order; see TLB_MAX_SETS). */
  readonly tlbSets = new Map<number, TlbSet>();
  /** The record the active set was taken from (not in `tlbSets` while active); see selectTlb. */
  tlbActiveRecord: TlbSet | undefined = undefined;
  /** The inactive set left last, and its VPID (not in `tlbSets`); see selectTlb. */
  tlbParked: TlbSet | undefined = undefined;
  tlbParkedVpid = 0;
  tlbSetEvictions = 0;
  /** Bumped on every TLB flush; lets the fetch path keep its current page. */
  tlbGeneration = 0;

  // Decoded-instruction cache, by machine frame.
  readonly decoded = new Map<number, (Insn | undefined)[]>();
  /** The CPUs over the same machine memory and the frames they hold decoded code from (cross-modifying code; code-cache.ts). */
  readonly codeSharing: CodeSharing;
  /** Instructions decoded and blocks compiled since the last whole-cache flush (see DECODED_MAX_INSNS). */
  decodedLive = 0;
  blocksLive = 0;
  capacityFlushes = 0;
  /** Linear base of the page the decoded-instruction fast path is on (NaN: none). */
  fetchBase = Number.NaN;
  fetchGen = -1;
  fetchPage: (Insn | undefined)[] | undefined = undefined;
  fetchPhysPage = 0;
  fetchCpl = 0;
  /** CS.base when the fetch fast path's page was looked up (see updateMode). */
  private fetchCsBase = 0;
  /** Decoder entry point (set by the package index to avoid an import cycle; held by cpu/code-cache.ts). */
  static get decoder(): ((cpu: Cpu, rip: number) => Insn) | undefined {
    return decoderSlot.decode;
  }
  static set decoder(decode: ((cpu: Cpu, rip: number) => Insn) | undefined) {
    decoderSlot.decode = decode;
  }

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
    this.codeSharing = codeSharing(this.memory);
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
  // Flags (the lazy representation and its functions: cpu/flags.ts)
  // =====================================================================================

  get cf(): boolean {
    return (this.fA & RFLAGS_CF) !== 0;
  }

  /** RFLAGS as the guest sees it (low 32 bits; the upper half is reserved zero). */
  getFlags(): number {
    return getFlags(this);
  }

  /** Set the six arithmetic flags from RFLAGS-positioned bits. */
  setArithFlags(bits: number): void {
    setArithFlags(this, bits);
  }

  /** Write RFLAGS: the bits in `mask` come from `value`. */
  setFlags(value: number, mask: number): void {
    setFlags(this, value, mask);
  }

  /** Evaluate condition code `cc` (SDM Vol. 1, Appendix B: tttn encoding). */
  cond(cc: number): boolean {
    return cond(this, cc);
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
    loadPdptes(this, cr3);
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
  // TLB and translation (cpu/memory.ts; the TLB's layout: cpu/tlb.ts)
  // =====================================================================================

  /** Flush the TLB; `keepGlobal` keeps global entries (a CR3 load with CR4.PGE = 1). */
  flushTlb(keepGlobal: boolean): void {
    flushTlb(this, keepGlobal);
  }

  /**
   * Make the TLB tagged `vpid` active (SDM 29.1: translations are tagged with the VPID, so they
   * survive VM entries and exits when VPIDs are on). Sets are created on first use.
   */
  selectTlb(vpid: number): void {
    selectTlb(this, vpid);
  }

  /**
   * INVVPID (SDM Vol. 3C 30.3 "INVVPID"): type 0 individual address, 1 single context, 2 all
   * contexts, 3 single context retaining globals. Returns VMfailValid(28) for an invalid operand
   * (VPID 0 with types 0, 1, 3; a non-canonical address with type 0; an unknown type).
   */
  invvpid(type: number, vpid: number, address = 0): { kind: "vmfail-valid"; error: 28; message: string } | undefined {
    return invvpid(this, type, vpid, address);
  }

  /**
   * INVEPT (SDM "INVEPT"): type 1 single context, 2 all contexts. Combined (GVA -> HPA) mappings
   * are cached here without the EPTP tag, so both types drop every VPID's set (more than
   * single-context needs, which the SDM allows).
   */
  invept(type: number): { kind: "vmfail-valid"; error: 28; message: string } | undefined {
    return invept(this, type);
  }

  /** INVLPG: drop the translation of one linear address (every entry, after a large-page fill). */
  invalidatePage(lin: number): void {
    invalidatePage(this, lin);
  }

  /**
   * Translate a linear address to a machine address for an access of `access` (`Access` bits;
   * `Access.User` is added for CPL 3 unless `Access.Implicit` is set). Raises #GP for a
   * non-canonical address (#SS for a stack access) and #PF for a paging fault.
   */
  translate(lin: number, access: number, stack = false): number {
    return translate(this, lin, access, stack);
  }

  // =====================================================================================
  // Memory access by linear address (cpu/memory.ts)
  // =====================================================================================

  /** Linear address of `offset` in segment `s` (only FS and GS have bases in 64-bit mode). */
  linear(s: number, offset: number): number {
    return linear(this, s, offset);
  }

  read8(lin: number): number {
    return read8(this, lin);
  }

  read16(lin: number): number {
    return read16(this, lin);
  }

  /** 32-bit read, returned as a signed int32. */
  read32(lin: number): number {
    return read32(this, lin);
  }

  /** 64-bit read: returns the low half (int32); the high half is left in `tmpHi`. */
  read64(lin: number): number {
    return read64(this, lin);
  }

  write8(lin: number, v: number): void {
    write8(this, lin, v);
  }

  write16(lin: number, v: number): void {
    write16(this, lin, v);
  }

  write32(lin: number, v: number): void {
    write32(this, lin, v);
  }

  write64(lin: number, lo: number, hi: number): void {
    write64(this, lin, lo, hi);
  }

  /** The frame a store at `lin` may write straight into, if the TLB already allows it (memory.ts writeView). */
  writeView(lin: number): DataView | undefined {
    return writeView(this, lin);
  }

  /** Read with an explicit access kind (implicit supervisor accesses to descriptor tables, fetches). */
  readAccess(lin: number, size: 1 | 2 | 4, access: number): number {
    return readAccess(this, lin, size, access);
  }

  /** Read machine memory or a device behind it. */
  physRead(phys: number, size: number): number {
    return physRead(this, phys, size);
  }

  /** Write machine memory or a device; writes to decoded code invalidate it (self-modifying code). */
  physWrite(phys: number, size: number, v: number): void {
    physWrite(this, phys, size, v);
  }

  // =====================================================================================
  // Decoded-instruction cache and self-modifying code (cpu/code-cache.ts)
  // =====================================================================================

  /** The decoded instruction at RIP (decoding it on first use). */
  fetchDecoded(): Insn {
    return fetchDecoded(this);
  }

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
  /**
   * PAUSE-loop exiting (SDM 26.1.3, exec/system.ts pause): the retired count at the last PAUSE at
   * CPL 0, and at the first PAUSE of the current loop (time in retired instructions, as for the
   * preemption timer).
   */
  plePrevious = Number.NEGATIVE_INFINITY;
  pleLoopStart = 0;
  /** VMX-preemption timer value at entry; it counts down once per retired instruction (the TSC rate, with IA32_VMX_MISC[4:0] = 0). */
  vmxTimer = 0;
  /** The retired count at which the preemption timer expires (+Infinity when it is not active). */
  vmxTimerEnd = Number.POSITIVE_INFINITY;
  /** Some control needs a look at every instruction boundary: the slow path stays on and blocks stay off. */
  vmxWatch = false;
  /** The VMCS of the last VM exit (what a VMRESUME would resume). */
  vmcsForResume: Vmcs | undefined = undefined;
  /** The event being delivered is a software exception (INT3, INTO): IDT-vectoring type 6. */
  deliveringSoftwareException = false;
  /** The event being delivered is a privileged software exception (ICEBP): IDT-vectoring type 5. */
  deliveringPrivileged = false;
  /** A VM exit recorded by a handler or by event delivery, returned by `run`. */
  pendingExit: VmExit | undefined = undefined;
  /** `attention` as it was when `deferExit` raised it, restored when the exit is taken. */
  deferredAttention = 0;
  /** Linear address of the last #PF, written to CR2 only if the #PF is delivered. */
  faultLinear = 0;

  /** A single-step #DB is due after the instruction being executed. */
  stepPending = false;

  /** Compile hot blocks into JavaScript functions (see blocks.ts). */
  compileBlocks = true;
  /** Hot blocks compile to specialised code (src/jit/) rather than handler calls (CpuOptions.jit). */
  jit: boolean;
  /** Interpreted executions of a block-start instruction before its block is compiled. */
  blockThreshold = BLOCK_THRESHOLD;

  /**
   * Machine frame `frame` was written from outside this vCPU (the hypervisor copying into guest
   * memory, a device's DMA, another vCPU): forget what was decoded from it, as a store by this
   * vCPU would (self-modifying code).
   */
  codeWritten(frame: number): void {
    codeWritten(this, frame);
  }

  /** Forget all decoded instructions (mode changes). */
  flushDecoded(): void {
    flushDecoded(this);
  }

  /** The CPU leaves its host for good (its domain is destroyed): its decoded code goes, and other CPUs' stores no longer look at it. */
  detach(): void {
    detachCode(this);
  }

  /** The sizes of the caches guest code grows, against their bounds (DECODED_MAX_PAGES, TLB_MAX_SETS...). */
  codeCacheStats(): CodeCacheStats {
    return codeCacheStats(this);
  }

  /** Fetch one instruction byte for the decoder. */
  fetchByte(lin: number): number {
    return fetchByte(this, lin);
  }

  // =====================================================================================
  // Stack (cpu/memory.ts)
  // =====================================================================================

  /** Push a 64-bit value (64-bit mode) from halves. */
  push64(lo: number, hi: number): void {
    push64(this, lo, hi);
  }

  pop64(): number {
    return pop64(this);
  }

  // Outside 64-bit mode a stack with SS.B = 0 uses SP: the address wraps at 64 KiB (SDM Vol. 1 6.2.3).
  push32(v: number): void {
    push32(this, v);
  }

  pop32(): number {
    return pop32(this);
  }

  push16(v: number): void {
    push16(this, v);
  }

  pop16(): number {
    return pop16(this);
  }

  // =====================================================================================
  // Interrupts and exceptions (delivery: cpu/events.ts)
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
    return deliverPending(this);
  }

  // =====================================================================================
  // VMX non-root operation (cpu/vmexit.ts; vmx/nonroot.ts for entry checks and state transfer)
  // =====================================================================================

  /** Enter VMX non-root operation with `vmcs` current (called by vmEntry after its checks). */
  enterNonRoot(vmcs: Vmcs, pin: number, proc: number, proc2: number): void {
    enterNonRoot(this, vmcs, pin, proc, proc2);
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
    return vmExit(this, reason, qualification, instructionLength, extra);
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
    deferExit(this, reason, qualification, instructionLength);
  }

  /**
   * Whether exception `vector` (error code `errorCode`) causes a VM exit in non-root operation:
   * the exception bitmap, and for #PF the error-code mask/match rule (SDM 25.2).
   */
  exceptionExits(vector: number, errorCode: number): boolean {
    return exceptionExits(this, vector, errorCode);
  }

  // =====================================================================================
  // Event delivery (cpu/events.ts)
  // =====================================================================================

  /** Inject an event at VM entry (SDM 27.6): delivered through the guest IDT as if it occurred now. */
  injectEvent(vector: number, errorCode: number, softwareInterrupt: boolean, external: boolean, softwareException: 0 | 5 | 6 = 0, instructionLength = 0): void {
    injectEvent(this, vector, errorCode, softwareInterrupt, external, softwareException, instructionLength);
  }

  /**
   * Deliver an event through the IDT (SDM Vol. 3A, 6.14 for IA-32e mode). A fault while
   * delivering becomes #DF per SDM Table 6-5; a fault while delivering #DF is a triple fault.
   */
  deliverEvent(vector: number, errorCode: number, software: boolean, external: boolean): boolean {
    return deliverEvent(this, vector, errorCode, software, external);
  }

  /**
   * IRET with RFLAGS.NT = 1 outside IA-32e mode returns to the task in the current TSS's
   * back-link (SDM "IRET", 7.3): in VMX non-root operation that is a task-switch VM exit with
   * source 1 (IRET); outside VMX it is not modelled and raises #GP(0).
   */
  taskReturn(instructionLength: number): never {
    return taskReturn(this, instructionLength);
  }

  // =====================================================================================
  // Segments (cpu/segments.ts)
  // =====================================================================================

  /** Read a segment descriptor from the GDT (or LDT) for `selector`; #GP(selector) when out of limits. */
  loadDescriptor(selector: number, vector: number = Vector.GP): SegmentCache {
    return loadDescriptor(this, selector, vector);
  }

  /** Load a data segment register (MOV Sreg, POP Sreg) with the protected-mode checks that matter. */
  loadDataSegment(s: number, selector: number): void {
    loadDataSegment(this, s, selector);
  }

  /**
   * Load CS for a far JMP or CALL straight to a code segment (SDM "JMP", "CALL", protected and
   * IA-32e mode): a nonconforming segment needs RPL <= CPL and DPL = CPL, a conforming one
   * DPL <= CPL, else #GP(selector); CPL does not change and CS.RPL becomes CPL. Call gates, task
   * gates and TSS selectors are not modelled: they are system descriptors, #GP(selector) here.
   */
  loadCodeSegment(selector: number): void {
    loadCodeSegment(this, selector);
  }

  /**
   * The code-segment descriptor for `selector`, checked for a transfer to privilege level `pl`
   * (-1: refused, #GP(selector)): a code segment, DPL = pl when nonconforming or DPL <= pl when
   * conforming, present (#NP), and not L = 1 with D = 1 in IA-32e mode.
   */
  codeDescriptor(selector: number, pl: number): SegmentCache {
    return codeDescriptor(this, selector, pl);
  }

  /** Enter or leave IA-32e mode as CR0.PG / EFER.LME dictate (SDM Vol. 3A, 10.8.5). */
  updateLongMode(): void {
    const lma = (this.cr0 & CR0_PG) !== 0 && (this.efer & EFER_LME) !== 0;
    if (lma && (this.cr4 & CR4_PAE) === 0) this.gp(0);
    this.efer = lma ? this.efer | EFER_LMA : this.efer & ~EFER_LMA;
    this.updateMode();
  }

  // =====================================================================================
  // The run loop (cpu/run.ts)
  // =====================================================================================

  /**
   * Execute up to `budget` steps: a retired instruction or a delivered event is one step each,
   * so a guest stuck in an exception loop (a handler that faults on its first fetch) still
   * returns.
   */
  run(budget: number): RunResult {
    return run(this, budget);
  }

  /**
   * Direct execution for native guests (see guest-ops.ts): run `op` as one instruction of
   * `length` bytes at RIP, with the same fault and VM-exit handling as the run loop. A fault
   * that does not exit is returned as a value (native guests have no IDT); RIP stays at the
   * "instruction" unless an exit handler moved it.
   */
  executeOp<T>(length: number, op: () => T): OpResult<T> {
    return executeOp(this, length, op);
  }

  /**
   * The second-level translator (EPT) the hypervisor attached for this vCPU. It is used only in
   * VMX non-root operation with "enable EPT" on; every guest-physical reference goes through it.
   */
  secondLevel: SecondLevelTranslator | undefined = undefined;
  /** EPT is on for the running guest (set at VM entry). */
  eptActive = false;
  /** Paging-structure reads for the walk under EPT: each a guest-physical reference EPT translates. */
  readonly eptTables: PagingStructureAccess<EptViolation | EptMisconfig> = eptPagingStructures(this);

  /** The preemption timer reached zero (its saved value is then 0). */
  vmxTimerExpired = false;

  /** Ask the run loop to stop after the current instruction (a device's "exit" port). */
  requestStop(reason: string, code: number): void {
    this.stopRequest = { reason, code };
    this.attention = 1;
  }
}

export type { PagingLevel };
