/**
 * The decoded-code cache: decoded instructions by machine frame, the fetch fast path over the
 * current page, hot blocks handed to the block compilers (src/blocks.ts and src/jit/), and
 * self-modifying code (a store into a frame holding decoded code drops it: memory.ts revokes
 * write permission in the TLB for such frames and reports stores through `Cpu.codeWritten`).
 * The caches are bounded (DECODED_MAX_PAGES and friends). From cpu.ts this module imports only
 * types, and so do the compilers it calls.
 */
import { Access } from "@vtlab/arch";
import type { Cpu } from "../cpu.js";
import type { Insn } from "../decode/insn.js";
import { MAX_BLOCK, compileBlock, endsBlock, type BlockFn } from "../blocks.js";
import { jitCompileHot, type RegionBlock } from "../jit/compile.js";
import { Seg } from "../regs.js";
import { OK_SUP_WRITE, OK_USER_WRITE, TLB_SIZE, type TlbSet } from "./tlb.js";


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

/**
 * Cross-modifying code (SDM Vol. 3A 9.1.3 "Handling Cross-Modifying Code"): the CPUs of a host
 * share its machine memory, so a store by one CPU into a frame from which another CPU decoded
 * instructions must drop them there too, or that CPU goes on running the old bytes for as long
 * as they stay cached (Linux's text_poke_bp on one vCPU, writing an INT3 and then the new
 * instruction, while another runs the code being patched). The SDM has software make the
 * executing processor serialize after the modification; vtlab drops the other CPUs' decoded code
 * at the store itself, which is what a processor's snooping of stores into code does and which
 * satisfies that protocol. One record per machine memory: the CPUs that have decoded code from it
 * and, per frame, how many of them hold decoded code from it (a frame with holders is mapped
 * without write permission in every one of those CPUs' TLB sets, so stores into it take the slow
 * path, physWrite, which drops the decoded code everywhere).
 */
export interface CodeSharing {
  readonly cpus: Set<Cpu>;
  /** Machine frame -> the number of CPUs holding decoded code from it. */
  readonly holders: Map<number, number>;
}

const sharingByMemory = new WeakMap<object, CodeSharing>();

/** The cross-modifying-code record of the CPUs over `memory` (made on first use). */
export function codeSharing(memory: object): CodeSharing {
  let s = sharingByMemory.get(memory);
  if (s === undefined) {
    s = { cpus: new Set(), holders: new Map() };
    sharingByMemory.set(memory, s);
  }
  return s;
}

/** `cpu` now holds decoded code from `frame`: no CPU over the same memory may store into it through its TLB. */
function holdCode(cpu: Cpu, frame: number): void {
  const s = cpu.codeSharing;
  if (!s.cpus.has(cpu)) {
    // Joining: this CPU's TLB may map frames others already hold with write permission.
    s.cpus.add(cpu);
    for (const held of s.holders.keys()) revokeWrite(cpu, held);
  }
  // The first holder revokes for every CPU; with holders already, no TLB set maps the frame
  // writable (fills leave it out, and a CPU that joined revoked every held frame above).
  const n = s.holders.get(frame) ?? 0;
  s.holders.set(frame, n + 1);
  if (n === 0) for (const c of s.cpus) revokeWrite(c, frame);
}

/** `cpu` dropped its decoded code from `frame`. */
function releaseCode(cpu: Cpu, frame: number): void {
  const h = cpu.codeSharing.holders;
  const n = h.get(frame) ?? 0;
  if (n <= 1) h.delete(frame);
  else h.set(frame, n - 1);
}

/**
 * A store into machine frame `frame`, which some CPU over the same memory holds decoded code
 * from (codeSharing: `holders.has(frame)`): every CPU that does forgets it, this one included.
 */
export function codeStored(cpu: Cpu, frame: number): void {
  for (const c of cpu.codeSharing.cpus) if (c.decoded.has(frame)) invalidateCode(c, frame);
}

/**
 * The CPU leaves the host (its domain is destroyed): its decoded code is dropped and it no longer
 * takes part in the cross-modifying-code record of the memory.
 */
export function detachCode(cpu: Cpu): void {
  flushDecoded(cpu);
  cpu.codeSharing.cpus.delete(cpu);
}

/** The decoder entry point `Cpu.decoder` sets (the package index installs it, avoiding an import cycle). */
export const decoderSlot: { decode: ((cpu: Cpu, rip: number) => Insn) | undefined } = { decode: undefined };

/** The decoded instruction at RIP (decoding it on first use). */
export function fetchDecoded(cpu: Cpu): Insn {
  const rip = cpu.rip;
  const off = rip & 0xfff;
  if (rip - off === cpu.fetchBase && cpu.fetchGen === cpu.tlbGeneration && cpu.cpl === cpu.fetchCpl) {
    const cached = cpu.fetchPage![off];
    if (cached !== undefined) return cached;
  } else {
    const phys = cpu.translate(cpu.linear(Seg.CS, rip), Access.Fetch);
    const frame = (phys - off) / 4096;
    let page = cpu.decoded.get(frame);
    if (page === undefined) {
      if (cpu.decoded.size >= DECODED_MAX_PAGES) capacityFlush(cpu);
      page = new Array<Insn | undefined>(4096);
      cpu.decoded.set(frame, page);
      holdCode(cpu, frame);
    }
    cpu.fetchPage = page;
    cpu.fetchBase = rip - off;
    cpu.fetchGen = cpu.tlbGeneration;
    cpu.fetchCpl = cpu.cpl;
    cpu.fetchPhysPage = frame;
    const cached = page[off];
    if (cached !== undefined) return cached;
  }
  if (decoderSlot.decode === undefined) throw new Error("cpu-vmx: no decoder installed (import the package entry)");
  const insn = decoderSlot.decode(cpu, rip);
  cpu.counters.decodedInstructions++;
  // Decoding may have flushed the cache (a page-crossing instruction); re-resolve the page.
  const page = cpu.decoded.get(cpu.fetchPhysPage);
  if (page !== undefined && off + insn.len <= 4096) {
    if (cpu.decodedLive >= DECODED_MAX_INSNS) capacityFlush(cpu); // the next fetch starts a new page
    else {
      page[off] = insn;
      cpu.decodedLive++;
    }
  }
  return insn;
}

/**
 * Decode forward from the hot instruction at `rip` (within its page) up to the first
 * instruction that is not straight-line, and compile the run into a block.
 */
export function buildBlock(cpu: Cpu, first: Insn, rip: number): void {
  const page = cpu.fetchPage;
  if (page === undefined) return;
  if (cpu.blocksLive >= COMPILED_MAX_BLOCKS) {
    capacityFlush(cpu); // this instruction is decoded again, and its block compiled when hot again
    return;
  }
  const pageBase = rip - (rip & 0xfff);
  const run = decodeRun(cpu, page, pageBase, rip & 0xfff, first) as RegionBlock;
  let fn: BlockFn | undefined;
  let len = run.insns.length;
  if (cpu.jit) {
    const hot = jitCompileHot(run, (off) => decodeRun(cpu, page, pageBase, off, undefined));
    fn = hot?.fn;
    if (hot !== undefined) len = hot.len;
  }
  fn ??= compileBlock(run.insns, run.offsets);
  if (fn !== undefined) {
    first.block = fn;
    first.blockLen = len;
    cpu.blocksLive++;
    cpu.counters.compiledBlocks++;
  }
}

/**
 * The straight-line run of instructions from page offset `off` of a decoded page (`first`: its
 * instruction when already decoded), decoding ahead as needed, up to the first instruction that
 * is not straight-line, MAX_BLOCK instructions or the page's end; undefined when nothing at
 * `off` decodes.
 */
function decodeRun(cpu: Cpu, page: (Insn | undefined)[], pageBase: number, off: number, first: Insn | undefined): RegionBlock | undefined {
  const insns: Insn[] = [];
  const offsets: number[] = [];
  let at = 0;
  let insn: Insn | undefined = first ?? page[off];
  while (insns.length < MAX_BLOCK) {
    if (insn === undefined) {
      const cr2 = cpu.cr2;
      try {
        insn = decoderSlot.decode!(cpu, pageBase + off + at);
      } catch {
        // A fault while looking ahead (an unmapped next page): end the block here, leaving no
        // trace (the guest must not see a CR2, or an EPT exit, for an instruction it has not reached).
        cpu.pendingVector = -1;
        cpu.pendingExit = undefined;
        cpu.cr2 = cr2;
        break;
      }
      if (off + at + insn.len > 4096 || cpu.decodedLive >= DECODED_MAX_INSNS) break;
      page[off + at] = insn;
      cpu.decodedLive++;
      cpu.counters.decodedInstructions++;
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

/**
 * Mark a frame as holding decoded code: remove write permission from the TLB entries mapping it,
 * in the active set and in the sets kept for other VPIDs (selected again without a flush).
 */
function revokeWrite(cpu: Cpu, frame: number): void {
  const phys = frame * 4096;
  for (let i = 0; i < TLB_SIZE; i++) {
    if (cpu.tlbPhys[i] === phys) cpu.tlbOk[i] = cpu.tlbOk[i]! & ~(OK_SUP_WRITE | OK_USER_WRITE);
  }
  if (cpu.tlbParked !== undefined) revokeWriteIn(cpu.tlbParked, phys);
  for (const set of cpu.tlbSets.values()) revokeWriteIn(set, phys);
}

function revokeWriteIn(set: TlbSet, phys: number): void {
  for (let k = 0; k < set.filledCount; k++) {
    const i = set.filled[k]!;
    if (set.phys[i] === phys) set.ok[i] = set.ok[i]! & ~(OK_SUP_WRITE | OK_USER_WRITE);
  }
}

export function invalidateCode(cpu: Cpu, frame: number): void {
  if (cpu.decoded.delete(frame)) releaseCode(cpu, frame);
  cpu.attention = 1; // a compiled block running from this page must stop after this store
  cpu.counters.smcInvalidations++;
  if (frame === cpu.fetchPhysPage) cpu.fetchBase = Number.NaN;
}

/**
 * Machine frame `frame` was written from outside this vCPU (the hypervisor copying into guest
 * memory, a device's DMA, another vCPU): forget what was decoded from it, as a store by this
 * vCPU would (self-modifying code).
 */
export function codeWritten(cpu: Cpu, frame: number): void {
  if (cpu.decoded.has(frame)) invalidateCode(cpu, frame);
}

/** Forget all decoded instructions (mode changes). */
export function flushDecoded(cpu: Cpu): void {
  for (const frame of cpu.decoded.keys()) releaseCode(cpu, frame);
  cpu.decoded.clear();
  cpu.decodedLive = 0;
  cpu.blocksLive = 0;
  cpu.fetchBase = Number.NaN;
}

/** A bound on the code caches was reached: flush them whole (DECODED_MAX_PAGES and friends). */
function capacityFlush(cpu: Cpu): void {
  cpu.capacityFlushes++;
  cpu.flushDecoded();
}

/** The sizes of the caches guest code grows, against their bounds (DECODED_MAX_PAGES, TLB_MAX_SETS...). */
export function codeCacheStats(cpu: Cpu): CodeCacheStats {
  return {
    decodedPages: cpu.decoded.size,
    decodedInstructions: cpu.decodedLive,
    compiledBlocks: cpu.blocksLive,
    capacityFlushes: cpu.capacityFlushes,
    tlbSets: cpu.tlbSets.size + (cpu.tlbParked !== undefined ? 1 : 0),
    tlbSetEvictions: cpu.tlbSetEvictions,
  };
}

/** Fetch one instruction byte for the decoder. */
export function fetchByte(cpu: Cpu, lin: number): number {
  return cpu.physRead(cpu.translate(cpu.linear(Seg.CS, lin), Access.Fetch), 1);
}
