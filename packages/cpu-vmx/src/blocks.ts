/**
 * Compiled blocks: a hot run of straight-line instructions (ending at the first instruction that
 * may branch, change mode, touch a port or be privileged) becomes one JavaScript function that
 * calls each instruction's handler directly. Each call site sees one handler, so the engine can
 * inline it; the interpretive loop's per-instruction lookup disappears.
 *
 * Exactness is kept per instruction: RIP and the instruction start are set before each handler
 * (faults restart at the right instruction and RIP-relative operands see the right RIP), the
 * retired count is bumped after each, and the block returns early when something needs the run
 * loop (`attention`: an MMIO device's request, a store into decoded code) or the budget ends.
 * Blocks live on the decoded instruction that starts them, so they die with their code page, and
 * with the whole decoded cache when COMPILED_MAX_BLOCKS blocks were compiled since its last flush
 * (cpu.ts: a count limit flushed whole, as QEMU's TCG flushes a full code buffer).
 * Only 64-bit mode compiles blocks; where `Function` is unavailable (a strict CSP), the
 * interpreter simply never compiles.
 */
import type { Cpu } from "./cpu.js";
import type { Handler, Insn } from "./decode/insn.js";
import * as alu from "./exec/alu.js";
import * as bits from "./exec/bits.js";
import * as fast from "./exec/fast.js";
import * as move from "./exec/move.js";
import * as muldiv from "./exec/muldiv.js";
import * as shift from "./exec/shift.js";
import * as stack from "./exec/stack.js";
import * as str from "./exec/string.js";

/**
 * A compiled block: runs from `rip` (the address of its first instruction) and returns the block
 * to run next when it may chain to it without the run loop (nothing needs attention and the bound
 * leaves room for all of it), else undefined (src/jit/ chains; the blocks here never do).
 */
export type BlockFn = (cpu: Cpu, rip: number) => BlockFn | undefined;

/** Executions of a block-start instruction before its block is compiled. */
export const BLOCK_THRESHOLD = 64;
/** Longest compiled block, in instructions. */
export const MAX_BLOCK = 48;

/** Handlers that never change RIP, the mode, privilege or interrupt state (they may fault). */
const STRAIGHT_LINE: ReadonlySet<Handler> = new Set<Handler>([
  ...[alu, bits, move, muldiv, shift, stack, str]
    .flatMap((m) => Object.values(m))
    .filter((f): f is Handler => typeof f === "function")
    .filter((f) => f !== stack.popf && f !== str.ins && f !== str.outs && f !== str.checkIo),
  ...fast.FAST_HANDLERS,
]);

/** The string handlers a REP prefix repeats (SDM Vol. 2B REP/REPE/REPNE). */
const STRING_OPS: ReadonlySet<Handler> = new Set<Handler>([str.movs, str.stos, str.lods, str.cmps, str.scas, str.ins, str.outs]);

/**
 * The instruction is the last one of a block: not straight-line, or a REP string instruction,
 * which retires one instruction per iteration and may stop itself part-way at the run loop's
 * bound (RIP back on it), so nothing may follow it in the same block.
 */
export function endsBlock(i: Insn): boolean {
  return !STRAIGHT_LINE.has(i.exec) || (i.rep !== 0 && STRING_OPS.has(i.exec));
}

/**
 * Handlers that, with register operands only, can neither fault nor read RIP nor touch memory:
 * the generated code skips the RIP/instruction-start stores for them and folds their retirement
 * into the next instruction that can fault (or the end of the block).
 */
const PURE_WITH_REGISTERS: ReadonlySet<Handler> = new Set<Handler>(
  [...STRAIGHT_LINE].filter(
    (h) => h !== muldiv.divE && h !== muldiv.idivE && !Object.values(stack).includes(h) && !Object.values(str).includes(h),
  ),
);

/** The instruction cannot fault, does not read RIP and does not access memory. */
export function isPureInsn(i: Insn): boolean {
  if (i.exec === move.lea) return !i.ripRel;
  return !i.isMem && PURE_WITH_REGISTERS.has(i.exec);
}

export function isStraightLine(h: Handler): boolean {
  return STRAIGHT_LINE.has(h);
}

let compilerWorks = true;

/**
 * Build the block function for `insns` (consecutive, in one page, offsets from the block start
 * in `offsets`). Returns undefined when code generation is unavailable.
 */
export function compileBlock(insns: readonly Insn[], offsets: readonly number[]): BlockFn | undefined {
  if (!compilerWorks) return undefined;
  const n = insns.length;
  const params: string[] = [];
  const args: unknown[] = [];
  let body = "";
  let unretired = 0; // pure instructions done but not yet added to c.retired
  for (let k = 0; k < n; k++) {
    const i = insns[k] as Insn;
    params.push(`h${k}`, `i${k}`);
    args.push(i.exec, i);
    const start = offsets[k] as number;
    const end = start + i.len;
    if (isPureInsn(i)) {
      body += `h${k}(c,i${k});`;
      unretired++;
      if (k === n - 1) body += `c.rip=r+${end};c.retired+=${unretired};`;
      continue;
    }
    if (unretired > 0) body += `c.retired+=${unretired};`;
    unretired = 0;
    body += `c.insnStart=r+${start};c.rip=r+${end};h${k}(c,i${k});c.retired++;`;
    // The run loop enters a block only with budget for all of it; stop early on attention (a
    // device's request or a store into decoded code), which only memory accesses can raise.
    if (k < n - 1) body += `if(c.attention!==0)return;`;
  }
  try {
    const factory = new Function(...params, `"use strict";return function block(c,r){${body}};`) as (...a: unknown[]) => BlockFn;
    return factory(...args);
  } catch {
    compilerWorks = false;
    return undefined;
  }
}
