/**
 * The block compiler's first code-generating tier: a hot block (the same straight-line run that
 * blocks.ts compiles, ending at its first control-flow or system instruction) becomes JavaScript
 * source specialised per instruction, turned into a function with `new Function`.
 *
 * What the generated code does, per instruction it knows (see `emitInsn`):
 * - register halves in locals (`L3`/`H3` for RBX: loaded once from `c.lo`/`c.hi`, stored back
 *   before every slow path, handler call and return; see cacheRegisters), immediates and
 *   displacements as literals, the effective address computed inline;
 * - lazy flags with liveness inside the block: a flag-setting instruction leaves its operands in
 *   locals and a description of how to derive the flags (`Pending`); a later condition (Jcc,
 *   SETcc, CMOVcc) is evaluated from the operands directly (a cmp/jcc pair costs one compare), an
 *   instruction that overwrites every flag drops the pending one, and the flags are materialised
 *   into `c.fZ/fS/fP/fA` only where they are live: before a slow path or a handler call (which may
 *   fault or read them) and at the block's exit;
 * - memory through an inline TLB fast path (the entry's tag, permission bits and frame DataView
 *   read from the CPU's typed arrays); the slow path (TLB miss, MMIO, a page split, a store into
 *   decoded code, a fault) is a call of the interpreter's own `read32`/`write64`/`push64`...
 *   after the state a fault must see is stored: RIP and the instruction start, the retired count
 *   and the flags;
 * - a block whose last instruction branches back to its own start loops inside the function,
 *   with the run loop's bound (`c.repStop`: budget and preemption timer) and `c.attention` checked
 *   on that back edge only, exactly as the run loop would check them before entering it again,
 *   and with its registers, retired count and last flag-setting operation kept in locals over it;
 * - a block that ends on a direct branch, a fall-through or a RET into the page it runs in hands
 *   its successor's function to the run loop's trampoline (`chain`) when the run loop would enter
 *   that block next without doing anything else.
 *
 * Every other instruction calls its interpreter handler, as blocks.ts does. Exactness: a fault
 * leaves RIP, registers, flags and the retired count as the interpreter would (everything is
 * stored back before the call that may fault, and each instruction writes its results only after
 * its last possible fault).
 */
import { Vector } from "@vtlab/arch";
import type { Cpu } from "../cpu.js";
import { PARITY_EVEN } from "../cpu/flags.js";
import { wrap64 } from "../cpu/int64.js";
import type { Insn } from "../decode/insn.js";
import { cbw, cwd, nop } from "../exec/move.js";
import { imul64Overflows, mulLowHi64 } from "../exec/muldiv.js";
import { offsetOf } from "../exec/operands.js";
import { Seg } from "../regs.js";
import { isPureInsn, type BlockFn } from "../blocks.js";

const TWO_63 = 2 ** 63;

/** The exact offset of a memory operand when a register's high half is too large for the inline sum. */
function slowOffset(c: Cpu, i: Insn): number {
  let a = offsetOf(c, i);
  if (a >= TWO_63 || a < -TWO_63) a = wrap64(a);
  return a;
}

/** ALU sub-operations (x86 group-1 order, `Insn.cc`). */
const ADD = 0;
const OR = 1;
const AND = 4;
const SUB = 5;
// 6 = XOR: the default case of emitAlu
const CMP = 7;

/** How the flags of the last flag-setting instruction are derived from its locals. */
interface Pending {
  kind: "add" | "sub" | "logic" | "inc" | "dec" | "shift" | "shiftcl" | "mul" | "rot" | "sub8" | "logic8";
  wide: boolean;
  /** Names of the locals (or literals): operands and result, low halves; high halves when wide. */
  a: string;
  b: string;
  r: string;
  ah: string;
  bh: string;
  rh: string;
  /** "shift", "shiftcl", "rot": the local holding CF | OF << 11. */
  f: string;
  /** "shiftcl": the local holding the masked count (0: the shift changed no flag, they are in the fields). */
  x?: string;
  /**
   * "rot" (ROL/ROR, which write only CF and OF): the operation the other flags come from, or
   * undefined when they are in the CPU's fields. Never guarded, never itself a "rot".
   */
  prev?: Pending;
  /** The instruction (index in the block) whose locals these are. */
  owner: number;
  /**
   * Set for the flags a self-looping block carries over its back edge in the locals of its last
   * flag-setting instruction: valid only when the local `lp` is 1 (not on the first iteration,
   * where the flags are in the CPU's fields).
   */
  guard?: boolean;
}

class Gen {
  body = "";
  /** Locals declared at the top of the function. */
  readonly locals = new Set<string>(["a", "o", "x", "e", "v", "vh", "w", "t", "u", "sl", "m"]);
  /** The last emitRead was a read-modify-write's read (`m`: its fast path may write too). */
  rmw = false;
  readonly params: string[] = [];
  readonly args: unknown[] = [];
  pending: Pending | undefined = undefined;
  /** The pending flags at the self-loop's back edge (first pass), carried over it in the second. */
  backPending: Pending | undefined = undefined;
  carry = false;

  local(name: string): string {
    this.locals.add(name);
    return name;
  }

  /** Set while generating a block of a region (jitCompileRegion). */
  region: RegionGen | undefined = undefined;

  /** The flags carried into the loop's first instruction (second pass only). */
  initial: Pending | undefined = undefined;

  /** Code writing the pending flags into the CPU's flag fields (empty when none are pending). */
  flushCode(): string {
    return this.flushCodeOf(this.pending);
  }

  /**
   * `cfOfDead`: the next instruction overwrites CF and OF (a rotate), so only ZF, SF, PF and AF
   * need their true values (CF and OF may be left anything).
   */
  flushCodeOf(p: Pending | undefined, cfOfDead = false): string {
    if (p === undefined) return "";
    if (p.kind === "rot") {
      const s = `${this.flushCodeOf(p.prev, true)}c.fA=(c.fA&-2050)|${p.f};`;
      return p.guard === true ? `if(lp!==0){${s}}` : s;
    }
    if (p.kind === "sub8" || p.kind === "logic8") {
      // A byte CMP / TEST: operands 0..255, the result's low byte is the byte result (setZSP size 1).
      let b = `c.fZ=${p.r}&255;c.fS=${p.r}<<24;c.fP=${p.r};`;
      if (p.kind === "logic8") b += "c.fA=0;";
      else if (cfOfDead) b += `c.fA=(${p.a}^${p.b}^${p.r})&16;`;
      else b += `c.fA=((${p.a}^${p.b}^${p.r})&16)|(${p.r}>>>31)|(((((${p.a}^${p.b})&(${p.a}^${p.r}))>>>7)&1)<<11);`;
      return p.guard === true ? `if(lp!==0){${b}}` : b;
    }
    let s = p.wide ? `c.fZ=${p.r}|${p.rh};c.fS=${p.rh};c.fP=${p.r};` : `c.fZ=${p.r};c.fS=${p.r};c.fP=${p.r};`;
    if (p.kind === "shiftcl") {
      s = `if(${p.x}!==0){${s}c.fA=${cfOfDead ? "0" : p.f};}`;
      return p.guard === true ? `if(lp!==0){${s}}` : s;
    }
    const x = p.wide ? p.ah : p.a;
    const y = p.wide ? p.bh : p.b;
    const z = p.wide ? p.rh : p.r;
    const af = `((${p.a}^${p.b}^${p.r})&16)`;
    if (cfOfDead) {
      s += p.kind === "logic" || p.kind === "shift" || p.kind === "mul" ? "c.fA=0;" : `c.fA=${af};`;
      return p.guard === true ? `if(lp!==0){${s}}` : s;
    }
    switch (p.kind) {
      case "logic":
        s += "c.fA=0;";
        break;
      case "add":
        s += `c.fA=${af}|((((${x})&(${y}))|(((${x})|(${y}))&~${z}))>>>31)|(((((${x})^${z})&((${y})^${z}))>>>31)<<11);`;
        break;
      case "sub":
        s += `c.fA=${af}|(((~(${x})&(${y}))|(~((${x})^(${y}))&${z}))>>>31)|(((((${x})^(${y}))&((${x})^${z}))>>>31)<<11);`;
        break;
      case "inc":
        s += `c.fA=(c.fA&1)|${af}|(((((${x})^${z})&((${y})^${z}))>>>31)<<11);`;
        break;
      case "dec":
        s += `c.fA=(c.fA&1)|${af}|(((((${x})^(${y}))&((${x})^${z}))>>>31)<<11);`;
        break;
      case "shift":
        s += `c.fA=${p.f};`;
        break;
      case "mul":
        // IMUL: CF = OF = the signed product does not fit the destination (AF cleared, as imulGE).
        s += p.wide ? `c.fA=MO(${p.a},${p.ah},${p.b},${p.bh})?2049:0;` : `c.fA=(${p.a}*${p.b})!==${p.r}?2049:0;`;
        break;
    }
    return p.guard === true ? `if(lp!==0){${s}}` : s;
  }

  /** Materialise the pending flags now (before a handler call or at an exit). */
  flush(): void {
    this.body += this.flushCode();
    this.pending = undefined;
  }

  /** A handler or object the generated code calls, passed in as a parameter. */
  bind(name: string, value: unknown): string {
    if (!this.params.includes(name)) {
      this.params.push(name);
      this.args.push(value);
    }
    return name;
  }
}

/** The region a block is generated in: its blocks (page offsets), the block being generated, its edges. */
interface RegionGen {
  blocks: ReadonlySet<number>;
  /** The blocks whose flags are dead at entry (flagsDeadAtEntry; none while the entry hook is bound: it compares them). */
  dead: ReadonlySet<number>;
  start: number;
  /** Page offsets of the region's blocks this block jumps forward to. */
  forward: number[];
}

/**
 * Leave the block for page offset `target` (`page` + `target` in a block, whose offsets count
 * from its start; a region's count from the page) after its `n` instructions, with RIP the value
 * of `rip`; `flush` materialises the flags pending there. Inside a region, an edge to one of its
 * blocks stays in the function: a forward one directly (the entry's bound covered the longest
 * forward path, see jitCompileRegion), a back edge after the run loop's checks for the block it
 * enters (`@D<off>@`: that block's longest forward path, filled in when all are known); the flags
 * are left pending (not materialised) on such an edge when the block entered overwrites them all
 * before anything can see them (RegionGen.dead), and materialised on the way out. Elsewhere: chain.
 */
function edge(g: Gen, page: number, target: number, rip: string, n: number, flush: string): string {
  const reg = g.region;
  if (reg !== undefined && reg.blocks.has(target)) {
    const stay = reg.dead.has(target) ? "" : flush;
    if (target > reg.start) {
      reg.forward.push(target);
      return `if(${ATTN}){${stay}R0+=${n};pc=${target};continue;}${flush}c.rip=r+${target};c.retired=R0+${n};return;`;
    }
    return `R0+=${n};if(${ATTN}&&R0+@D${target}@<=RS){${stay}pc=${target};continue;}${flush}c.retired=R0;c.rip=r+${target};return;`;
  }
  return `${flush}c.rip=${rip};c.retired=R0+${n};${chain(page + target)}`;
}

/**
 * The block's flags are dead at its entry: its first instructions neither read flags nor can
 * fault, exit or call anything (register moves, immediates, LEA, extensions, NOPs) up to one that
 * overwrites all six status flags from registers (ADD, OR, AND, SUB, XOR, CMP, TEST without a
 * memory operand), so flags left behind by the block before are never seen.
 */
export function flagsDeadAtEntry(insns: readonly Insn[]): boolean {
  for (const i of insns) {
    if (!supported(i) || i.isMem) return false;
    const op = i.opcode;
    if (op < 0x40 && (op & 7) < 6) {
      const sub = op >> 3;
      return sub !== 2 && sub !== 3; // not ADC/SBB
    }
    if (op === 0x81 || op === 0x83) return i.cc !== 2 && i.cc !== 3;
    if (op === 0x85 || op === 0xa9 || op === 0x38 || op === 0x3a || op === 0x3c || op === 0x84 || op === 0xa8) return true;
    if ((op === 0xf7 && i.mnemonic === "test") || (op === 0xf6 && i.mnemonic === "test") || (op === 0x80 && i.cc === 7)) return true;
    const pure =
      op === 0x89 || op === 0x8b || op === 0xc7 || (op >= 0xb8 && op <= 0xbf) || op === 0x8d ||
      op === 0x1b6 || op === 0x1b7 || op === 0x1be || op === 0x1bf || op === 0x63 || i.exec === nop || i.exec === cbw || i.exec === cwd;
    if (!pure) return false;
  }
  return false;
}

/** Condition `cc` (SDM Vol. 1 Appendix B) read from the CPU's flag fields. */
function condFromFields(cc: number): string {
  let e: string;
  switch (cc >> 1) {
    case 0:
      e = "(c.fA&2048)!==0";
      break;
    case 1:
      e = "(c.fA&1)!==0";
      break;
    case 2:
      e = "c.fZ===0";
      break;
    case 3:
      e = "((c.fA&1)!==0||c.fZ===0)";
      break;
    case 4:
      e = "c.fS<0";
      break;
    case 5:
      e = "PE[c.fP&255]===1";
      break;
    case 6:
      e = "(c.fS<0)!==((c.fA&2048)!==0)";
      break;
    default:
      e = "(c.fZ===0||(c.fS<0)!==((c.fA&2048)!==0))";
  }
  return (cc & 1) !== 0 ? `!(${e})` : `(${e})`;
}

/** Condition `cc` evaluated from the pending operation's operands, or undefined to use the flag fields. */
function condFromPending(p: Pending, cc: number): string | undefined {
  const k = cc >> 1;
  let e: string | undefined;
  if (p.kind === "sub8" || p.kind === "logic8") {
    const zero = `(${p.r}&255)===0`;
    const neg = `(${p.r}&128)!==0`;
    if (k === 2) e = zero;
    else if (k === 4) e = neg;
    else if (k === 5) e = `PE[${p.r}&255]===1`;
    else if (p.kind === "logic8") {
      if (k === 0 || k === 1) e = "false";
      else if (k === 3) e = zero;
      else if (k === 6) e = neg;
      else e = `(${zero}||${neg})`;
    } else if (k === 1) e = `${p.a}<${p.b}`;
    else if (k === 3) e = `${p.a}<=${p.b}`;
    else if (k === 6) e = `((${p.a}<<24)>>24)<((${p.b}<<24)>>24)`;
    else if (k === 7) e = `((${p.a}<<24)>>24)<=((${p.b}<<24)>>24)`;
    if (e === undefined) return undefined;
    return (cc & 1) !== 0 ? `!(${e})` : `(${e})`;
  }
  if (p.kind === "shiftcl") {
    // A count of 0 left every flag as it was, in the fields.
    if (k === 0 || k === 1 || k === 2 || k === 4 || k === 5) {
      const own = condFromPending({ ...p, kind: "shift" }, cc) as string;
      return `(${p.x}!==0?${own}:${condFromFields(cc)})`;
    }
    return undefined;
  }
  if (p.kind === "shift" && (k === 0 || k === 1)) {
    e = k === 0 ? `(${p.f}&2048)!==0` : `(${p.f}&1)!==0`;
    return (cc & 1) !== 0 ? `!(${e})` : `(${e})`;
  }
  if (p.kind === "rot") {
    // OF and CF from the rotate; ZF, SF, PF from the operation before it (or the fields).
    if (k === 0) e = `(${p.f}&2048)!==0`;
    else if (k === 1) e = `(${p.f}&1)!==0`;
    else if (k === 2 || k === 4 || k === 5) return p.prev === undefined ? condFromFields(cc) : condFromPending(p.prev, cc);
    if (e === undefined) return undefined;
    return (cc & 1) !== 0 ? `!(${e})` : `(${e})`;
  }
  const zero = p.wide ? `(${p.r}|${p.rh})===0` : `${p.r}===0`;
  const neg = p.wide ? `${p.rh}<0` : `${p.r}<0`;
  if (k === 2) e = zero;
  else if (k === 4) e = neg;
  else if (k === 5) e = `PE[${p.r}&255]===1`;
  else if (p.kind === "logic") {
    if (k === 0 || k === 1) e = "false";
    else if (k === 3) e = zero;
    else if (k === 6) e = neg;
    else if (k === 7) e = `(${zero}||${neg})`;
  } else if (p.kind === "sub") {
    if (!p.wide) {
      if (k === 1) e = `(${p.a}>>>0)<(${p.b}>>>0)`;
      else if (k === 3) e = `(${p.a}>>>0)<=(${p.b}>>>0)`;
      else if (k === 6) e = `(${p.a}|0)<(${p.b}|0)`;
      else if (k === 7) e = `(${p.a}|0)<=(${p.b}|0)`;
    } else {
      const lowLt = `(${p.a}>>>0)<(${p.b}>>>0)`;
      const lowLe = `(${p.a}>>>0)<=(${p.b}>>>0)`;
      if (k === 1) e = `((${p.ah}>>>0)<(${p.bh}>>>0)||(${p.ah}===${p.bh}&&${lowLt}))`;
      else if (k === 3) e = `((${p.ah}>>>0)<(${p.bh}>>>0)||(${p.ah}===${p.bh}&&${lowLe}))`;
      else if (k === 6) e = `((${p.ah}|0)<(${p.bh}|0)||(${p.ah}===${p.bh}&&${lowLt}))`;
      else if (k === 7) e = `((${p.ah}|0)<(${p.bh}|0)||(${p.ah}===${p.bh}&&${lowLe}))`;
    }
  }
  if (e === undefined) return undefined;
  return (cc & 1) !== 0 ? `!(${e})` : `(${e})`;
}

/** The condition's expression, from the pending operation when it can be, else from the fields. */
function cond(g: Gen, cc: number): string {
  const p = g.pending;
  if (p !== undefined) {
    const e = p.guard === true ? undefined : condFromPending(p, cc);
    if (e !== undefined) return e;
    g.flush();
  }
  return condFromFields(cc);
}

/** Per-block context for emitting one instruction. */
interface At {
  /** Index in the block (its retired count is R0 + k). */
  k: number;
  /** Unique in the function (a region holds several blocks): names its locals and parameters. */
  id: number;
  /** Offsets of the instruction's start and end from `r` (the block start; a region's page base). */
  start: number;
  end: number;
  i: Insn;
}

/**
 * The state a slow path or a fault must see, stored before the call: pending flags, the
 * instruction start and next RIP, the retired count, and `sl` (a slow path ran: check attention).
 */
function slowPrologue(g: Gen, at: At): string {
  return `${WB}${g.flushCode()}c.insnStart=r+${at.start};c.rip=r+${at.end};c.retired=R0+${at.k};sl=1;${FORGET}`;
}

/**
 * The linear address of the memory operand into `a` (64-bit address size, segment without a base
 * in 64-bit mode). Exact: the inline sum is used when the registers' high halves keep every
 * partial sum below 2^53; otherwise the interpreter's exact halves arithmetic.
 */
function emitEa(g: Gen, at: At): void {
  const i = at.i;
  if (i.ripRel) {
    g.body += `a=r+${at.end + i.disp};`;
    return;
  }
  const parts: string[] = [];
  const guards: string[] = [];
  if (i.base >= 0) {
    g.body += `x=hi[${i.base}];`;
    parts.push(`x*4294967296+(lo[${i.base}]>>>0)`);
    guards.push("((x+1048576)>>>21)!==0");
  }
  if (i.index >= 0) {
    g.body += `e=hi[${i.index}];`;
    parts.push(`(e*4294967296+(lo[${i.index}]>>>0))*${i.scale}`);
    guards.push("((e+131072)>>>18)!==0");
  }
  if (i.disp !== 0 || parts.length === 0) parts.push(String(i.disp));
  const sum = parts.join("+");
  if (guards.length === 0) g.body += `a=${sum};`;
  else g.body += `if(${guards.join("||")}){${WB}a=EA(c,i${at.id});}else a=${sum};`;
}

/**
 * The TLB fast-path test for an access of `size` bytes at `a` (`mask`: RM or WM); on success the
 * frame's view is in VR (reads) or VW (writes). The page last found readable (PR, VR) and the one
 * last found writable (PW, VW) are remembered in locals, so a run of accesses to one page skips the
 * TLB probe: valid while nothing but this code runs (every slow path and handler call resets them,
 * see FORGET, as the TLB and its permissions change only in those calls or outside the function).
 */
function tlbHit(size: number, mask: string, stack = false): string {
  const room = 4096 - size;
  // (a - o) is a multiple of 4096, so multiplying by 2^-12 is exact (and cheaper than a division).
  // The stack pushes and pops check a 48-bit canonical address first (Cpu.push64/pop64: #SS(0)).
  const canon = stack ? "a>=-140737488355328&&a<140737488355328&&" : "";
  const [P, W] = mask === "RM" ? ["PR", "VR"] : ["PW", "VW"];
  return `(o=a&4095,x=(a-o)*0.000244140625,${canon}(x===${P}||(e=x&4095,T[e]===x&&(K[e]&${mask})!==0&&(${P}=x,${W}=V[e],true)))${size > 1 ? `&&o<=${room}` : ""})`;
}

/**
 * Forget the remembered pages (tlbHit) after a call that may change the TLB, and what the run
 * loop's checks last read (ATTN).
 */
const FORGET = "PR=PW=NaN;AT=-1;";

/**
 * The run loop's attention check on an edge that stays in the function (a self-loop's or a
 * region's): `c.attention` and the bound `c.repStop` are read into the locals AT and RS at entry
 * and again only after a call the block made (FORGET sets AT to -1, "read again"): exact, as both
 * fields change only in those calls (a slow path, a handler) or outside the function, and the
 * loads stay out of the loop (the bench guest on EPT faster in five of six alternations, 7-25 %).
 */
const ATTN = "(AT===0||(AT=c.attention,RS=c.repStop,AT===0))";

/**
 * Read `size` bytes at `a` into `v` (and `vh` for 8), fast path inline, slow path the interpreter's.
 * `rmw`: a write of the same size to `a` follows (a read-modify-write): `m` = 1 when the fast path
 * hit with write permission too, so that write goes straight to `w` at `o` (emitWrite).
 */
function emitRead(g: Gen, at: At, size: number, rmw = false): void {
  const ss = at.i.seg === Seg.SS ? `if(!c.canonical(a))c.fault(${Vector.SS},0);` : "";
  let fast: string;
  let slow: string;
  switch (size) {
    case 1:
      fast = "v=VR.getUint8(o);";
      slow = "v=c.read8(a);";
      break;
    case 2:
      fast = "v=VR.getUint16(o,true);";
      slow = "v=c.read16(a);";
      break;
    case 4:
      fast = "v=VR.getInt32(o,true);";
      slow = "v=c.read32(a);";
      break;
    default:
      fast = "w=VR;v=w.getInt32(o,true);vh=w.getInt32(o+4,true);";
      slow = "v=c.read64(a);vh=c.tmpHi;";
  }
  if (rmw) {
    if (size !== 8) fast = `w=VR;${fast.replace("VR", "w")}`;
    fast += "m=x===PW||(e=x&4095,T[e]===x&&(K[e]&WM)!==0&&(PW=x,VW=V[e],true))?1:0;";
    slow += "m=0;";
    g.rmw = true;
  }
  g.body += `if${tlbHit(size, "RM")}{${fast}}else{${slowPrologue(g, at)}${ss}${slow}}`;
}

/** Write `size` bytes (`lo`, and `hi` for 8) at `a` (after emitRead with `rmw`: to `w` at `o` when `m` is 1). */
function emitWrite(g: Gen, at: At, size: number, lo: string, hi: string): void {
  const ss = at.i.seg === Seg.SS ? `if(!c.canonical(a))c.fault(${Vector.SS},0);` : "";
  let fast: string;
  let slow: string;
  switch (size) {
    case 1:
      fast = `VW.setUint8(o,${lo});`;
      slow = `c.write8(a,${lo});`;
      break;
    case 2:
      fast = `VW.setUint16(o,${lo},true);`;
      slow = `c.write16(a,${lo});`;
      break;
    case 4:
      fast = `VW.setInt32(o,${lo},true);`;
      slow = `c.write32(a,${lo});`;
      break;
    default:
      fast = `w=VW;w.setInt32(o,${lo},true);w.setInt32(o+4,${hi},true);`;
      slow = `c.write64(a,${lo},${hi});`;
  }
  if (g.rmw) {
    g.rmw = false;
    g.body += `if(m!==0){${fast.replace(/^w=VW;/, "").replace(/^VW/, "w")}}else `;
  }
  g.body += `if${tlbHit(size, "WM")}{${fast}}else{${slowPrologue(g, at)}${ss}${slow}}`;
}

/** A #GP(0) for a non-canonical branch target `t` (as the interpreter's branchTo). */
function emitTargetCheck(g: Gen, at: At): void {
  g.body += `if(t<-140737488355328||t>=140737488355328){${slowPrologue(g, at)}c.gp(0);}`;
}

/**
 * Return from the block with RIP and the retired count already stored: hand over to the compiled
 * block at page offset `off` when the run loop would enter it next without doing anything else
 * (nothing needs attention, it is compiled, the bound leaves room for all of it). The successor
 * is looked up in the current decoded page each time, so a page dropped and decoded again (SMC,
 * a flush) is never run stale; `off` < 0: the target is elsewhere, go back to the run loop.
 */
function chain(off: number | string): string {
  if (typeof off === "number" && (off < 0 || off >= 4096)) return "return;";
  return `if(c.attention===0){s=c.fetchPage[${off}];if(s!==undefined&&s.block!==undefined&&c.retired+s.blockLen<=c.repStop)return s.block;}return;`;
}

/** The instruction's kind when the generator knows it (64-bit mode, the widths it handles). */
function supported(i: Insn): boolean {
  const op = i.opcode;
  const w = i.opSize === 4 || i.opSize === 8;
  if (i.exec === nop) return true; // 90 and the hint NOPs (0F 18-1F): nothing to do, their memory operand is not accessed
  if (i.isMem && (i.addrSize !== 8 || i.seg >= Seg.FS)) return false;
  if (i.exec === cbw || i.exec === cwd) return w;
  // Byte CMP and TEST (flags only).
  if (op === 0x38 || op === 0x3a || op === 0x3c || op === 0x84 || op === 0xa8) return true;
  if (op === 0x80) return i.cc === 7;
  if (op === 0xf6) return i.mnemonic === "test";
  if (op < 0x40 && (op & 7) !== 6 && (op & 7) !== 7) {
    const form = op & 7;
    const sub = op >> 3;
    if (sub === 2 || sub === 3) return false; // ADC, SBB
    if (form === 1 || form === 3 || form === 5) return w;
    return false;
  }
  if (op === 0x81 || op === 0x83) return w && i.cc !== 2 && i.cc !== 3;
  if (op === 0x85 || op === 0xa9) return w;
  if (op === 0xf7) return w && (i.mnemonic === "test" || i.mnemonic === "not");
  if (op === 0x89 || op === 0x8b || op === 0xc7) return w;
  if (op === 0x88) return i.isMem; // a byte store
  if (op >= 0xb8 && op <= 0xbf) return w;
  if (op === 0x8d) return w && i.addrSize === 8;
  if (op === 0xff) return w && (i.mnemonic === "inc" || i.mnemonic === "dec");
  if (op >= 0x50 && op <= 0x5f) return i.opSize === 8;
  if (op === 0x68 || op === 0x6a) return i.opSize === 8;
  if (op === 0xe8 || op === 0xe9 || op === 0xeb) return i.opSize === 8;
  if (op === 0xc3) return i.opSize === 8;
  if ((op >= 0x70 && op <= 0x7f) || (op >= 0x180 && op <= 0x18f)) return i.opSize === 8;
  if (op === 0x1b6 || op === 0x1b7 || op === 0x1be || op === 0x1bf || op === 0x63) return w;
  if (op === 0xc1 || op === 0xd1) return w && !i.isMem && i.cc !== 2 && i.cc !== 3;
  if (op === 0xd3) return w && !i.isMem && i.cc >= 4;
  if (op === 0x1af || op === 0x69 || op === 0x6b) return w;
  if (op >= 0x190 && op <= 0x19f) return true;
  if (op >= 0x140 && op <= 0x14f) return w;
  return false;
}

/** A register operand of `size` (4 or 8) as [low, high] expressions. */
function regHalves(r: number): [string, string] {
  return [`lo[${r}]`, `hi[${r}]`];
}

/** Store a result into a register at width 4 (zero-extending) or 8. */
function setReg(r: number, wide: boolean, l: string, h: string): string {
  return wide ? `lo[${r}]=${l};hi[${r}]=${h};` : `lo[${r}]=${l};hi[${r}]=0;`;
}

/** A byte register read (AH..BH without REX for 4-7). */
function reg8(r: number, rex: boolean): string {
  return !rex && r >= 4 && r < 8 ? `((lo[${r - 4}]>>>8)&255)` : `(lo[${r}]&255)`;
}

/** A byte register write. */
function setReg8(r: number, rex: boolean, v: string): string {
  return !rex && r >= 4 && r < 8 ? `lo[${r - 4}]=(lo[${r - 4}]&-65281)|((${v}&255)<<8);` : `lo[${r}]=(lo[${r}]&-256)|(${v}&255);`;
}

/** One ALU operation (ADD/OR/AND/SUB/XOR/CMP) on operand expressions; leaves the result in locals and the flags pending. */
function emitAlu(g: Gen, at: At, op: number, wide: boolean, al: string, ah: string, bl: string, bh: string): { rl: string; rh: string; flags: Pending } {
  const k = at.id;
  const A = g.local(`a${k}`);
  const B = g.local(`b${k}`);
  const R = g.local(`r${k}`);
  const AH = wide ? g.local(`ah${k}`) : "0";
  const BH = wide ? g.local(`bh${k}`) : "0";
  const RH = wide ? g.local(`rh${k}`) : "0";
  g.body += `${A}=${al};${B}=${bl};`;
  if (wide) g.body += `${AH}=${ah};${BH}=${bh};`;
  let kind: Pending["kind"];
  if (!wide) {
    switch (op) {
      case ADD:
        g.body += `${R}=(${A}+${B})|0;`;
        kind = "add";
        break;
      case SUB:
      case CMP:
        g.body += `${R}=(${A}-${B})|0;`;
        kind = "sub";
        break;
      case AND:
        g.body += `${R}=${A}&${B};`;
        kind = "logic";
        break;
      case OR:
        g.body += `${R}=${A}|${B};`;
        kind = "logic";
        break;
      default:
        g.body += `${R}=${A}^${B};`;
        kind = "logic";
    }
  } else {
    switch (op) {
      case ADD:
        g.body += `t=(${A}>>>0)+(${B}>>>0);${R}=t|0;${RH}=(${AH}+${BH}+(t>4294967295?1:0))|0;`;
        kind = "add";
        break;
      case SUB:
      case CMP:
        g.body += `t=(${A}>>>0)-(${B}>>>0);${R}=t|0;${RH}=(${AH}-${BH}-(t<0?1:0))|0;`;
        kind = "sub";
        break;
      case AND:
        g.body += `${R}=${A}&${B};${RH}=${AH}&${BH};`;
        kind = "logic";
        break;
      case OR:
        g.body += `${R}=${A}|${B};${RH}=${AH}|${BH};`;
        kind = "logic";
        break;
      default:
        g.body += `${R}=${A}^${B};${RH}=${AH}^${BH};`;
        kind = "logic";
    }
  }
  // The flags become pending only after the write-back (a faulting store leaves the old flags);
  // they overwrite every flag, so the previous pending operation is then dead.
  return { rl: R, rh: RH, flags: { kind, wide, a: A, b: B, r: R, ah: AH, bh: BH, rh: RH, f: "", owner: at.id } };
}

/**
 * SHL/SAL, SHR, SAR of register `r` by CL, as fast.ts's shift32R/shift64R: a masked count of 0
 * changes no flag (and a 32-bit one still zero-extends). Only that case materialises the previous
 * flags; otherwise the shift's own become pending ("shiftcl", derived only where the count was not 0).
 */
/**
 * The common start of a shift or rotate of a register by an immediate or 1 (C1, D1): the masked
 * count and the locals of the result and of CF | OF << 11. A count of 0 changes nothing but a
 * 32-bit destination's high half, which that code clears; then undefined (nothing more to emit).
 * (Runs at compile time, once per instruction compiled.)
 */
function shiftByImm(g: Gen, i: Insn, k: number, wide: boolean): { n: number; r: number; R: string; RH: string; F: string } | undefined {
  const n = (i.opcode === 0xd1 ? 1 : i.imm & 0xff) & (wide ? 63 : 31);
  const r = i.rm;
  if (n === 0) {
    if (!wide) g.body += `hi[${r}]=0;`;
    return undefined;
  }
  return { n, r, R: g.local(`r${k}`), RH: wide ? g.local(`rh${k}`) : "0", F: g.local(`f${k}`) };
}

function emitShiftCl(g: Gen, at: At, r: number, cc: number, wide: boolean): void {
  const keep = g.flushCode();
  const id = at.id;
  const X = g.local(`x${id}`);
  const R = g.local(`r${id}`);
  const RH = wide ? g.local(`rh${id}`) : "0";
  const F = g.local(`f${id}`);
  g.pending = { kind: "shiftcl", wide, a: "0", b: "0", r: R, ah: "0", bh: "0", rh: RH, f: F, x: X, owner: id };
  const shl = cc === 4 || cc === 6;
  const sar = cc === 7;
  if (!wide) {
    g.body += `x=lo[1]&31;${X}=x;if(x===0){${keep}hi[${r}]=0;}else{v=lo[${r}];`;
    if (shl) g.body += `t=v<<x;e=(v>>>(32-x))&1;o=(t>>>31)^e;`;
    else if (sar) g.body += `t=v>>x;e=(v>>(x-1))&1;o=0;`;
    else g.body += `t=(v>>>x)|0;e=(v>>>(x-1))&1;o=v>>>31;`;
    g.body += `lo[${r}]=t;hi[${r}]=0;${R}=t;${F}=e|(o<<11);}`;
    return;
  }
  g.body += `x=lo[1]&63;${X}=x;if(x===0){${keep}}else{v=lo[${r}];vh=hi[${r}];`;
  if (shl) {
    g.body += "if(x<32){e=(vh>>>(32-x))&1;u=(vh<<x)|(v>>>(32-x));t=v<<x;}else{e=x===32?vh&1:(v>>>(64-x))&1;u=x===32?v:v<<(x-32);t=0;}o=(u>>>31)^e;";
  } else if (!sar) {
    g.body += "if(x<32){e=(v>>>(x-1))&1;t=(v>>>x)|(vh<<(32-x));u=vh>>>x;}else{e=x===32?v>>>31:(vh>>>(x-33))&1;t=x===32?vh:vh>>>(x-32);u=0;}o=vh>>>31;";
  } else {
    g.body += "if(x<32){e=(v>>>(x-1))&1;t=(v>>>x)|(vh<<(32-x));u=vh>>x;}else{e=x===32?v>>>31:(vh>>(x-33))&1;t=x===32?vh:vh>>(x-32);u=vh>>31;}o=0;";
  }
  g.body += `t|=0;u|=0;lo[${r}]=t;hi[${r}]=u;${R}=t;${RH}=u;${F}=e|(o<<11);}`;
}

/** Emit the instruction inline. Returns "branch" when it ended the block itself (set RIP, returned). */
function emitInsn(g: Gen, at: At, n: number, loops: boolean, page: number): boolean {
  const i = at.i;
  const op = i.opcode;
  const wide = i.opSize === 8;
  const k = at.id;
  g.rmw = false;
  // The flags carried over the back edge live in this instruction's locals: materialise them before it overwrites them.
  if (g.pending?.guard === true && g.pending.owner === k) g.flush();
  // ---- Byte CMP / TEST (38, 3A, 3C, 80 /7, 84, A8, F6 /0): flags only, pending ----
  if (op === 0x38 || op === 0x3a || op === 0x3c || op === 0x80 || op === 0x84 || op === 0xa8 || op === 0xf6) {
    let ev: string;
    if (op === 0x3c || op === 0xa8) ev = "(lo[0]&255)";
    else if (i.isMem) {
      emitEa(g, at);
      emitRead(g, at, 1);
      ev = "v";
    } else ev = reg8(i.rm, i.rex);
    const other = op === 0x38 || op === 0x3a || op === 0x84 ? reg8(i.reg, i.rex) : String(i.imm & 255);
    const [x, y] = op === 0x3a ? [other, ev] : [ev, other]; // 3A: CMP Gb, Eb
    const A = g.local(`a${k}`);
    const B = g.local(`b${k}`);
    const R = g.local(`r${k}`);
    const cmp = op === 0x38 || op === 0x3a || op === 0x3c || op === 0x80;
    g.body += `${A}=${x};${B}=${y};${R}=${cmp ? `(${A}-${B})|0` : `${A}&${B}`};`;
    g.pending = { kind: cmp ? "sub8" : "logic8", wide: false, a: A, b: B, r: R, ah: "0", bh: "0", rh: "0", f: "", owner: k };
    return false;
  }
  // ---- ALU ----
  if ((op < 0x40 && (op & 7) < 6) || op === 0x81 || op === 0x83) {
    const sub = op < 0x40 ? op >> 3 : i.cc;
    const form = op < 0x40 ? op & 7 : -1;
    if (form === 5) {
      // rAX, imm
      const [l, h] = regHalves(0);
      const res = emitAlu(g, at, sub, wide, l, h, String(i.imm), String(i.immHi));
      if (sub !== CMP) g.body += setReg(0, wide, res.rl, res.rh);
      g.pending = res.flags;
    } else if (form === 3) {
      // G op= E
      let bl: string, bh: string;
      if (i.isMem) {
        emitEa(g, at);
        emitRead(g, at, i.opSize);
        bl = "v";
        bh = "vh";
      } else [bl, bh] = regHalves(i.rm);
      const [l, h] = regHalves(i.reg);
      const res = emitAlu(g, at, sub, wide, l, h, bl, bh);
      if (sub !== CMP) g.body += setReg(i.reg, wide, res.rl, res.rh);
      g.pending = res.flags;
    } else {
      // E op= G (form 1) or E op= imm (81, 83)
      const [bl, bh] = form === 1 ? regHalves(i.reg) : [String(i.imm), String(i.immHi)];
      if (i.isMem) {
        emitEa(g, at);
        emitRead(g, at, i.opSize, sub !== CMP);
        const res = emitAlu(g, at, sub, wide, "v", "vh", bl, bh);
        if (sub !== CMP) emitWrite(g, at, i.opSize, res.rl, res.rh);
        g.pending = res.flags;
      } else {
        const [l, h] = regHalves(i.rm);
        const res = emitAlu(g, at, sub, wide, l, h, bl, bh);
        if (sub !== CMP) g.body += setReg(i.rm, wide, res.rl, res.rh);
        g.pending = res.flags;
      }
    }
    return false;
  }
  // ---- NOT (no flags) ----
  if (op === 0xf7 && i.mnemonic === "not") {
    if (i.isMem) {
      emitEa(g, at);
      emitRead(g, at, i.opSize, true);
      g.body += "v=~v;vh=~vh;";
      emitWrite(g, at, i.opSize, "v", "vh");
    } else g.body += setReg(i.rm, wide, `~lo[${i.rm}]`, `~hi[${i.rm}]`);
    return false;
  }
  // ---- Shifts of a register by CL: the count is known only at run time ----
  if (op === 0xd3) {
    emitShiftCl(g, at, i.rm, i.cc, wide);
    return false;
  }
  // ---- TEST ----
  if (op === 0x85 || op === 0xa9 || op === 0xf7) {
    const [bl, bh] = op === 0x85 ? regHalves(i.reg) : [String(i.imm), String(i.immHi)];
    let al: string, ah: string;
    if (op === 0xa9) [al, ah] = regHalves(0);
    else if (i.isMem) {
      emitEa(g, at);
      emitRead(g, at, i.opSize);
      al = "v";
      ah = "vh";
    } else [al, ah] = regHalves(i.rm);
    g.pending = emitAlu(g, at, AND, wide, al, ah, bl, bh).flags;
    return false;
  }
  // ---- MOV ----
  if (op === 0x89 || op === 0x8b || op === 0xc7 || op === 0x88) {
    if (op === 0x88) {
      emitEa(g, at);
      g.body += `t=${reg8(i.reg, i.rex)};`;
      emitWrite(g, at, 1, "t", "0");
      return false;
    }
    if (op === 0x8b) {
      if (i.isMem) {
        emitEa(g, at);
        emitRead(g, at, i.opSize);
        g.body += setReg(i.reg, wide, "v", "vh");
      } else g.body += setReg(i.reg, wide, `lo[${i.rm}]`, `hi[${i.rm}]`);
      return false;
    }
    const [l, h] = op === 0x89 ? regHalves(i.reg) : [String(i.imm), String(i.immHi)];
    if (i.isMem) {
      emitEa(g, at);
      if (op === 0x89) g.body += wide ? `v=${l};vh=${h};` : `v=${l};`;
      emitWrite(g, at, i.opSize, op === 0x89 ? "v" : l, op === 0x89 ? "vh" : h);
    } else g.body += setReg(i.rm, wide, l, h);
    return false;
  }
  if (op >= 0xb8 && op <= 0xbf) {
    g.body += setReg(i.rm, wide, String(i.imm), String(i.immHi));
    return false;
  }
  // ---- LEA ----
  if (op === 0x8d) {
    if (!wide) {
      let s = String(i.disp);
      if (i.base >= 0) s += `+lo[${i.base}]`;
      if (i.index >= 0) s += `+lo[${i.index}]*${i.scale}`;
      if (i.ripRel) s += `+(r+${at.end})%4294967296`;
      g.body += `lo[${i.reg}]=(${s})|0;hi[${i.reg}]=0;`;
      return false;
    }
    if (i.ripRel) {
      g.body += `t=r+${at.end + i.disp};lo[${i.reg}]=t|0;hi[${i.reg}]=Math.floor(t/4294967296)|0;`;
      return false;
    }
    g.body += `v=${i.disp | 0};vh=${i.disp < 0 ? -1 : 0};`;
    if (i.base >= 0) g.body += `t=(v>>>0)+(lo[${i.base}]>>>0);vh=(vh+hi[${i.base}]+(t>4294967295?1:0))|0;v=t|0;`;
    if (i.index >= 0) {
      const sh = i.scale === 1 ? 0 : i.scale === 2 ? 1 : i.scale === 4 ? 2 : 3;
      const il = sh === 0 ? `(lo[${i.index}]>>>0)` : `((lo[${i.index}]<<${sh})>>>0)`;
      const ih = sh === 0 ? `hi[${i.index}]` : `((hi[${i.index}]<<${sh})|(lo[${i.index}]>>>${32 - sh}))`;
      g.body += `t=(v>>>0)+${il};vh=(vh+${ih}+(t>4294967295?1:0))|0;v=t|0;`;
    }
    g.body += `lo[${i.reg}]=v;hi[${i.reg}]=vh;`;
    return false;
  }
  // ---- INC / DEC ----
  if (op === 0xff) {
    const inc = i.mnemonic === "inc";
    const A = g.local(`a${k}`);
    const R = g.local(`r${k}`);
    const AH = wide ? g.local(`ah${k}`) : "0";
    const RH = wide ? g.local(`rh${k}`) : "0";
    if (i.isMem) {
      emitEa(g, at);
      emitRead(g, at, i.opSize, true);
      g.body += `${A}=v;`;
      if (wide) g.body += `${AH}=vh;`;
    } else {
      g.body += `${A}=lo[${i.rm}];`;
      if (wide) g.body += `${AH}=hi[${i.rm}];`;
    }
    if (!wide) g.body += `${R}=(${A}${inc ? "+" : "-"}1)|0;`;
    else if (inc) g.body += `${R}=(${A}+1)|0;${RH}=(${AH}+(${R}===0?1:0))|0;`;
    else g.body += `${R}=(${A}-1)|0;${RH}=(${AH}-(${A}===0?1:0))|0;`;
    // CF is kept: the previous operation's CF must be in c.fA before this one becomes pending.
    g.flush();
    if (i.isMem) emitWrite(g, at, i.opSize, R, RH);
    else g.body += setReg(i.rm, wide, R, RH);
    g.pending = { kind: inc ? "inc" : "dec", wide, a: A, b: "1", r: R, ah: AH, bh: "0", rh: RH, f: "", owner: k };
    return false;
  }
  // ---- PUSH / POP ----
  if ((op >= 0x50 && op <= 0x57) || op === 0x68 || op === 0x6a) {
    const [l, h] = op <= 0x57 ? regHalves(i.rm) : [String(i.imm), String(i.immHi)];
    g.body += `v=${l};vh=${h};a=hi[4]*4294967296+(lo[4]>>>0)-8;`;
    g.body += `if${tlbHit(8, "WM", true)}{w=VW;w.setInt32(o,v,true);w.setInt32(o+4,vh,true);lo[4]=a|0;hi[4]=Math.floor(a/4294967296)|0;}`;
    g.body += `else{${slowPrologue(g, at)}c.push64(v,vh);${RL}}`;
    return false;
  }
  if (op >= 0x58 && op <= 0x5f) {
    g.body += "a=hi[4]*4294967296+(lo[4]>>>0);";
    g.body += `if${tlbHit(8, "RM", true)}{w=VR;v=w.getInt32(o,true);vh=w.getInt32(o+4,true);a+=8;lo[4]=a|0;hi[4]=Math.floor(a/4294967296)|0;}`;
    g.body += `else{${slowPrologue(g, at)}v=c.pop64();vh=c.tmpHi;${RL}}`;
    g.body += setReg(i.rm, true, "v", "vh");
    return false;
  }
  // ---- MOVZX / MOVSX / MOVSXD ----
  if (op === 0x1b6 || op === 0x1b7 || op === 0x1be || op === 0x1bf || op === 0x63) {
    const src = i.cc; // source size
    let v: string;
    if (i.isMem) {
      emitEa(g, at);
      emitRead(g, at, src);
      v = "v";
    } else v = src === 1 ? reg8(i.rm, i.rex) : src === 2 ? `(lo[${i.rm}]&65535)` : `lo[${i.rm}]`;
    if (op === 0x1b6 || op === 0x1b7) g.body += `lo[${i.reg}]=${v}&${src === 1 ? 255 : 65535};hi[${i.reg}]=0;`;
    else {
      g.body += `t=${src === 1 ? `(${v}<<24)>>24` : src === 2 ? `(${v}<<16)>>16` : `${v}|0`};`;
      g.body += setReg(i.reg, wide, "t", "(t>>31)");
    }
    return false;
  }
  // ---- NOP; CDQE / CWDE, CDQ / CQO (98, 99: no flags) ----
  if (i.exec === nop) return false;
  if (i.exec === cbw) {
    g.body += wide ? "hi[0]=lo[0]>>31;" : "lo[0]=(lo[0]<<16)>>16;hi[0]=0;";
    return false;
  }
  if (i.exec === cwd) {
    g.body += wide ? "t=hi[0]>>31;lo[2]=t;hi[2]=t;" : "lo[2]=lo[0]>>31;hi[2]=0;";
    return false;
  }
  // ---- IMUL G, E (0F AF) and IMUL G, E, imm (69, 6B): the truncated product, CF/OF lazy ----
  if (op === 0x1af || op === 0x69 || op === 0x6b) {
    let el: string, eh: string;
    if (i.isMem) {
      emitEa(g, at);
      emitRead(g, at, i.opSize);
      el = "v";
      eh = "vh";
    } else [el, eh] = regHalves(i.rm);
    const [bl, bh] = op === 0x1af ? regHalves(i.reg) : [String(i.imm | 0), String(i.immHi | 0)];
    const A = g.local(`a${k}`);
    const B = g.local(`b${k}`);
    const R = g.local(`r${k}`);
    const AH = wide ? g.local(`ah${k}`) : "0";
    const BH = wide ? g.local(`bh${k}`) : "0";
    const RH = wide ? g.local(`rh${k}`) : "0";
    g.body += `${A}=${el};${B}=${bl};`;
    if (wide) g.body += `${AH}=${eh};${BH}=${bh};${RH}=ML(${A},${AH},${B},${BH});`;
    g.body += `${R}=Math.imul(${A},${B});`;
    g.body += setReg(i.reg, wide, R, RH);
    // Every flag is written (ZF, SF, PF from the result as imulGE does), so the previous pending one is dead.
    g.pending = { kind: "mul", wide, a: A, b: B, r: R, ah: AH, bh: BH, rh: RH, f: "", owner: k };
    return false;
  }
  // ---- ROL / ROR of a register by an immediate or 1: only CF and OF change ----
  if ((op === 0xc1 || op === 0xd1) && i.cc <= 1) {
    const sh = shiftByImm(g, i, k, wide);
    if (sh === undefined) return false;
    const { n, r, R, RH, F } = sh;
    const rol = i.cc === 0;
    if (!wide) {
      g.body += `v=lo[${r}];${R}=${rol ? `(v<<${n})|(v>>>${32 - n})` : `(v>>>${n})|(v<<${32 - n})`};`;
      g.body += rol ? `${F}=(${R}&1)|((((${R}>>>31)^${R})&1)<<11);` : `${F}=(${R}>>>31)|((((${R}>>>31)^(${R}>>>30))&1)<<11);`;
      g.body += `lo[${r}]=${R};hi[${r}]=0;`;
    } else {
      const q = rol ? n : 64 - n; // ROR by n is ROL by 64 - n
      g.body += `v=lo[${r}];vh=hi[${r}];`;
      if (q === 32) g.body += `${R}=vh;${RH}=v;`;
      else if (q < 32) g.body += `${R}=(v<<${q})|(vh>>>${32 - q});${RH}=(vh<<${q})|(v>>>${32 - q});`;
      else g.body += `${R}=(vh<<${q - 32})|(v>>>${64 - q});${RH}=(v<<${q - 32})|(vh>>>${64 - q});`;
      g.body += rol ? `${F}=(${R}&1)|((((${RH}>>>31)^${R})&1)<<11);` : `${F}=(${RH}>>>31)|((((${RH}>>>31)^(${RH}>>>30))&1)<<11);`;
      g.body += `lo[${r}]=${R};hi[${r}]=${RH};`;
    }
    let prev = g.pending;
    if (prev?.guard === true) {
      g.flush();
      prev = undefined;
    } else if (prev?.kind === "rot") prev = prev.prev; // its CF and OF are overwritten here
    g.pending = { kind: "rot", wide, a: "0", b: "0", r: R, ah: "0", bh: "0", rh: RH, f: F, owner: k, ...(prev !== undefined ? { prev } : {}) };
    return false;
  }
  // ---- Shifts of a register by an immediate or 1 (SHL/SAL, SHR, SAR) ----
  if (op === 0xc1 || op === 0xd1) {
    const sh = shiftByImm(g, i, k, wide);
    if (sh === undefined) return false;
    const { n, r, R, RH, F } = sh;
    const sar = i.cc === 7;
    const shl = i.cc === 4 || i.cc === 6;
    if (!wide) {
      g.body += `v=lo[${r}];`;
      if (shl) g.body += `${R}=v<<${n};t=(v>>>${32 - n})&1;${F}=t|((((${R}>>>31)^t))<<11);`;
      else if (sar) g.body += `${R}=v>>${n};${F}=(v>>${n - 1})&1;`;
      else g.body += `${R}=(v>>>${n})|0;${F}=((v>>>${n - 1})&1)|((v>>>31)<<11);`;
      g.body += `lo[${r}]=${R};hi[${r}]=0;`;
    } else {
      g.body += `v=lo[${r}];vh=hi[${r}];`;
      if (shl) {
        if (n < 32) g.body += `t=(vh>>>${32 - n})&1;${RH}=(vh<<${n})|(v>>>${32 - n});${R}=v<<${n};`;
        else g.body += `t=${n === 32 ? "vh&1" : `(v>>>${64 - n})&1`};${RH}=${n === 32 ? "v" : `v<<${n - 32}`};${R}=0;`;
        g.body += `${F}=t|(((${RH}>>>31)^t)<<11);`;
      } else if (!sar) {
        if (n < 32) g.body += `t=(v>>>${n - 1})&1;${R}=(v>>>${n})|(vh<<${32 - n});${RH}=vh>>>${n};`;
        else g.body += `t=${n === 32 ? "v>>>31" : `(vh>>>${n - 33})&1`};${R}=${n === 32 ? "vh" : `vh>>>${n - 32}`};${RH}=0;`;
        g.body += `${F}=t|((vh>>>31)<<11);`;
      } else {
        if (n < 32) g.body += `t=(v>>>${n - 1})&1;${R}=(v>>>${n})|(vh<<${32 - n});${RH}=vh>>${n};`;
        else g.body += `t=${n === 32 ? "v>>>31" : `(vh>>${n - 33})&1`};${R}=${n === 32 ? "vh" : `vh>>${n - 32}`};${RH}=vh>>31;`;
        g.body += `${F}=t;`;
      }
      g.body += `${R}|=0;${RH}|=0;lo[${r}]=${R};hi[${r}]=${RH};`;
    }
    g.pending = { kind: "shift", wide, a: "0", b: "0", r: R, ah: "0", bh: "0", rh: RH, f: F, owner: k };
    return false;
  }
  // ---- SETcc ----
  if (op >= 0x190 && op <= 0x19f) {
    const c = cond(g, op & 15);
    if (i.isMem) {
      emitEa(g, at);
      g.body += `t=${c}?1:0;`;
      emitWrite(g, at, 1, "t", "0");
    } else g.body += setReg8(i.rm, i.rex, `(${c}?1:0)`);
    return false;
  }
  // ---- CMOVcc ----
  if (op >= 0x140 && op <= 0x14f) {
    if (i.isMem) {
      emitEa(g, at);
      emitRead(g, at, i.opSize);
    } else g.body += wide ? `v=lo[${i.rm}];vh=hi[${i.rm}];` : `v=lo[${i.rm}];`;
    const c = cond(g, op & 15);
    if (wide) g.body += `if(${c}){lo[${i.reg}]=v;hi[${i.reg}]=vh;}`;
    else g.body += `if(${c})lo[${i.reg}]=v;hi[${i.reg}]=0;`;
    return false;
  }
  // ---- Control flow: the block's last instruction ----
  if ((op >= 0x70 && op <= 0x7f) || (op >= 0x180 && op <= 0x18f) || op === 0xe9 || op === 0xeb) {
    const jcc = op !== 0xe9 && op !== 0xeb;
    const c = jcc ? cond(g, op & 15) : "true";
    const back = loops && at.end + i.imm === 0; // the taken branch goes back to the block's start
    g.body += `if(${c}){`;
    if (back) {
      g.backPending = g.pending;
      if (g.carry && g.pending !== undefined && g.pending.guard !== true) {
        // The flags stay in this iteration's locals over the back edge (lp = 1): the next
        // iteration materialises them only where they are live before it overwrites them.
        g.body += `R0+=${n};if(${ATTN}&&R0+${n}<=RS){lp=1;continue;}c.retired=R0;${g.flushCode()}c.rip=r;return;}`;
      } else {
        g.body += g.flushCode();
        g.body += `R0+=${n};if(${ATTN}&&R0+${n}<=RS)continue;c.retired=R0;c.rip=r;return;}`;
      }
    } else {
      g.body += `t=r+${at.end + i.imm};`;
      emitTargetCheck(g, at);
      g.body += `${edge(g, page, at.end + i.imm, "t", n, g.flushCode())}}`;
    }
    const fl = g.flushCode();
    g.pending = undefined;
    g.body += edge(g, page, at.end, `r+${at.end}`, n, fl);
    return true;
  }
  if (op === 0xe8) {
    // CALL rel32: push the return address, then the target's canonical check (as callRel).
    g.body += `t=r+${at.end};v=t|0;vh=Math.floor(t/4294967296)|0;a=hi[4]*4294967296+(lo[4]>>>0)-8;`;
    g.body += `if${tlbHit(8, "WM", true)}{w=VW;w.setInt32(o,v,true);w.setInt32(o+4,vh,true);lo[4]=a|0;hi[4]=Math.floor(a/4294967296)|0;}`;
    g.body += `else{${slowPrologue(g, at)}c.push64(v,vh);${RL}}`;
    g.body += `t=r+${at.end + i.imm};`;
    emitTargetCheck(g, at);
    const fl = g.flushCode();
    g.pending = undefined;
    g.body += edge(g, page, at.end + i.imm, "t", n, fl);
    return true;
  }
  if (op === 0xc3) {
    g.body += "a=hi[4]*4294967296+(lo[4]>>>0);";
    g.body += `if${tlbHit(8, "RM", true)}{w=VR;v=w.getInt32(o,true);vh=w.getInt32(o+4,true);a+=8;lo[4]=a|0;hi[4]=Math.floor(a/4294967296)|0;}`;
    g.body += `else{${slowPrologue(g, at)}v=c.pop64();vh=c.tmpHi;${RL}}`;
    g.body += "t=vh*4294967296+(v>>>0);";
    emitTargetCheck(g, at);
    g.flush();
    // A return into the page this chain runs in (c.fetchBase: the run loop fetched the chain's first block there).
    g.body += `c.rip=t;c.retired=R0+${n};if(t-(t&4095)===c.fetchBase){${chain("t&4095")}}return;`;
    return true;
  }
  throw new Error(`jit: no generator for ${i.mnemonic}`);
}

/** Instructions in straight-line code that only read memory or registers (slow paths set `sl`). */
function touchesMemory(i: Insn): boolean {
  const op = i.opcode;
  return i.isMem || (op >= 0x50 && op <= 0x5f) || op === 0x68 || op === 0x6a || op === 0xe8 || op === 0xc3;
}

let compilerWorks = true;

/**
 * Test hooks: when `onBlockEntry` is set at compile time, each block compiled then calls it at
 * every entry (and every iteration of a self-loop) with the CPU in the state the block starts
 * from, which lets the differential test compare that state with the interpreter's;
 * `onCompile` is told how many blocks each compiled function holds (1: a block, more: a region);
 * `noRegions` compiles every hot block alone (for benchmarks comparing the two).
 */
export const jitHooks: {
  onBlockEntry?: (c: Cpu, rip: number) => void;
  onCompile?: (blocks: number) => void;
  noRegions?: boolean;
  /**
   * Leave the flags pending on region edges into blocks that overwrite them first even while
   * `onBlockEntry` is bound (the hook then sees stale flag fields at those entries): for tests
   * that compare only what the guest can see.
   */
  deadFlagsWithHook?: boolean;
  /** Told the generated source of each function compiled (debugging: dump what a hot loop became). */
  onSource?: (src: string) => void;
} = {};

/** Generated source of the last compiled block (for tests and debugging). */
export let lastSource = "";

/**
 * Compile `insns` (consecutive within one page, `offsets` from the block start) into a block
 * function. Returns undefined when code generation is unavailable (a strict CSP).
 */
export function jitCompileBlock(insns: readonly Insn[], offsets: readonly number[], page: number): BlockFn | undefined {
  if (!compilerWorks) return undefined;
  const gen = generateBlock(insns, offsets, page);
  return instantiate(gen.params, gen.src, gen.args);
}

/** The source of a function, its parameters and the values they are bound to. */
interface Generated {
  params: readonly string[];
  args: readonly unknown[];
  src: string;
  /** What the run loop's bound must leave room for before entering it. */
  len: number;
}

/** Make the function from generated source (undefined when code generation is unavailable). */
function instantiate(params: readonly string[], src: string, args: readonly unknown[], known?: KnownSource): BlockFn | undefined {
  try {
    // A generated source kept in `generated` keeps its factory too: no key of the whole source to
    // build and hash again for the factories' map.
    if (known?.factory !== undefined) {
      jitStats.factoriesReused++;
      return known.factory(...args);
    }
    if (known !== undefined) return (known.factory = factoryFor(params, src))(...args);
    return factoryFor(params, src)(...args);
  } catch (err) {
    if (err instanceof SyntaxError) throw new Error(`jit: generated code does not parse (${err.message}): ${src}`);
    compilerWorks = false;
    return undefined;
  }
}

function generateBlock(insns: readonly Insn[], offsets: readonly number[], page: number): Generated {
  let g = generate(insns, offsets, page, undefined);
  // A self-loop whose back edge has flags pending: generate again, carrying them over it.
  if (g.backPending !== undefined && g.backPending.prev === undefined) g = generate(insns, offsets, page, { ...g.backPending, guard: true });
  let prologue = "";
  if (jitHooks.onBlockEntry !== undefined) {
    // The hook sees the flags in the CPU's fields, as the interpreter keeps them.
    prologue = `${g.initial !== undefined ? g.flushCodeOf(g.initial) : ""}${WB}c.retired=R0;${g.bind("TR", jitHooks.onBlockEntry)}(c,r);`;
  }
  const decl = [...g.locals].map((v) => `${v}=0`).join(",");
  const cached = cacheRegisters(prologue + g.body);
  const src =
    `"use strict";return function jitBlock_${page.toString(16)}(c,r){const lo=c.lo,hi=c.hi,T=c.tlbTag,K=c.tlbOk,V=c.tlbView;` +
    `const RM=c.cpl===3?4:1,WM=c.cpl===3?8:2;let R0=c.retired,AT=c.attention,RS=c.repStop,s,lp=0,PR=NaN,PW=NaN,VR=V[0],VW=VR,${decl}${cached.decl};` +
    `for(;;){${cached.body}}};`;
  lastSource = src;
  jitHooks.onSource?.(src);
  return { params: g.params, args: g.args, src, len: insns.length };
}

/**
 * Generated functions by their parameters and source, shared by every CPU in the process: the
 * same guest code compiled again (another vCPU, another domain booting the same kernel, a page
 * decoded again after SMC or a flush) reuses the factory, and every function it makes shares one
 * host compilation: V8 keeps the bytecode, type feedback and optimised code of closures made from
 * one function literal together, so a block another CPU already made hot starts optimised. The
 * generated code reads all its state from its arguments (the CPU, RIP, the instructions and
 * handlers bound as parameters), never from the factory, so sharing it is exact. Bounded by
 * FACTORY_CACHE_MAX entries and FACTORY_CACHE_CHARS characters of source (with the generated
 * sources below: guest code is hostile, and a guest generating new code without end must not
 * grow the process), both caches flushed whole when either bound is reached (as the code caches
 * are, see code-cache.ts).
 */
const factories = new Map<string, (...a: unknown[]) => BlockFn>();
export const FACTORY_CACHE_MAX = 4096;
export const FACTORY_CACHE_CHARS = 32 * 1024 * 1024;
/** The bounds in force (tests lower them). */
export const jitCacheBounds = { maxEntries: FACTORY_CACHE_MAX, maxChars: FACTORY_CACHE_CHARS };
/** Characters of source held by the two caches (factories' keys and generated sources). */
let cachedChars = 0;

/** Make room for `chars` more characters of cached source: flush both caches whole when a bound would be passed. */
function reserveCache(chars: number): void {
  const b = jitCacheBounds;
  if (factories.size >= b.maxEntries || generated.size >= b.maxEntries || cachedChars + chars > b.maxChars) {
    factories.clear();
    generated.clear();
    cachedChars = 0;
    jitStats.cacheFlushes++;
  }
  cachedChars += chars;
}

/** Process-wide counts of the shared factories (for tests and statistics). */
export const jitStats = {
  factoriesCreated: 0,
  factoriesReused: 0,
  generatedReused: 0,
  cacheFlushes: 0,
  /** Entries and characters of source the caches hold now. */
  get cached(): { entries: number; chars: number } {
    return { entries: factories.size + generated.size, chars: cachedChars };
  },
};

function factoryFor(params: readonly string[], src: string): (...a: unknown[]) => BlockFn {
  const key = `${params.join(",")}\n${src}`;
  let f = factories.get(key);
  if (f === undefined) {
    f = new Function(...params, src) as (...a: unknown[]) => BlockFn;
    // One throwaway closure first: V8 specialises the optimised code of a function literal to the
    // values bound in its closure while the literal has made only one closure, and compiles it
    // again, unspecialised, when a second appears (the same code in another domain or vCPU). With
    // the throwaway, every closure is one of many from the start and the engine's optimised code
    // is compiled once and shared (the bench guest's second domain in a process: 58-77 -> 122-295
    // MIPS per CPU second; later ones unchanged).
    f();
    reserveCache(key.length);
    factories.set(key, f);
    jitStats.factoriesCreated++;
  } else jitStats.factoriesReused++;
  return f;
}

/** Markers in the generated body: write the cached registers back to cpu.lo/hi; reload them from there. */
const WB = "@WB@";
const RL = "@RL@";

/**
 * Registers live in locals inside a block (`L3`/`H3` for the halves of RBX): each register the
 * block names is loaded once at entry, and the ones it writes are stored back wherever the CPU's
 * arrays must hold the truth: before every slow path and handler call (which may fault, read
 * registers or, for handlers, change them: those reload afterwards) and before every return.
 * A self-loop keeps them in the locals over its back edge.
 */
function cacheRegisters(body: string): { decl: string; body: string } {
  const used = new Set<string>();
  const written = new Set<string>();
  for (const m of body.matchAll(/\b(lo|hi)\[(\d+)\](=(?!=))?/g)) {
    const name = `${m[1] === "lo" ? "L" : "H"}${m[2]}`;
    used.add(name);
    if (m[3] !== undefined) written.add(name);
  }
  const arr = (name: string) => `${name[0] === "L" ? "lo" : "hi"}[${name.slice(1)}]`;
  const wb = [...written].map((n) => `${arr(n)}=${n};`).join("");
  const rl = [...used].map((n) => `${n}=${arr(n)};`).join("") + FORGET;
  const out = body
    .replace(/\b(lo|hi)\[(\d+)\]/g, (_m, half: string, r: string) => `${half === "lo" ? "L" : "H"}${r}`)
    .replace(/return( [^;]*)?;/g, (_m, v: string | undefined) => `{${WB}return${v ?? ""};}`)
    .replaceAll(WB, wb)
    .replaceAll(RL, rl);
  const decl = [...used].map((n) => `,${n}=${arr(n)}`).join("");
  return { decl, body: out };
}

/** A fresh generator with the helpers every block may call. */
function newGen(): Gen {
  const g = new Gen();
  g.bind("PE", PARITY_EVEN);
  g.bind("EA", slowOffset);
  g.bind("ML", mulLowHi64);
  g.bind("MO", imul64Overflows);
  return g;
}

/** The block's last instruction is a direct JMP or Jcc back to the block's start. */
function selfLoops(insns: readonly Insn[], offsets: readonly number[]): boolean {
  const n = insns.length;
  const last = insns[n - 1] as Insn;
  const lastOp = last.opcode;
  return (
    supported(last) &&
    ((lastOp >= 0x70 && lastOp <= 0x7f) || (lastOp >= 0x180 && lastOp <= 0x18f) || lastOp === 0xe9 || lastOp === 0xeb) &&
    (offsets[n - 1] as number) + last.len + last.imm === 0
  );
}

/** One generation pass over the block; `initial`: the flags carried over a self-loop's back edge. */
function generate(insns: readonly Insn[], offsets: readonly number[], page: number, initial: Pending | undefined): Gen {
  const g = newGen();
  g.initial = initial;
  g.pending = initial;
  g.carry = initial !== undefined;
  // A block whose last instruction jumps back to its start loops inside the function.
  generateInto(g, insns, offsets, page, 0, 0, selfLoops(insns, offsets));
  return g;
}

/**
 * Append the block's code to `g.body`: its instructions at `base` + `offsets` from `r`, their
 * locals and parameters numbered from `id0`; `page`: the page offset of `r` (0 in a region).
 */
function generateInto(g: Gen, insns: readonly Insn[], offsets: readonly number[], page: number, base: number, id0: number, loops: boolean): void {
  const n = insns.length;
  const last = insns[n - 1] as Insn;
  let ended = false;
  for (let k = 0; k < n; k++) {
    const i = insns[k] as Insn;
    const id = id0 + k;
    const start = base + (offsets[k] as number);
    const at: At = { k, id, start, end: start + i.len, i };
    g.params.push(`i${id}`);
    g.args.push(i);
    if (supported(i)) {
      ended = emitInsn(g, at, n, loops, page);
      if (!ended && touchesMemory(i) && k < n - 1) {
        // A slow path ran (an MMIO device's request, a store into decoded code): stop after this instruction.
        g.body += `if(sl!==0){sl=0;if(c.attention!==0){${g.flushCode()}c.rip=r+${at.end};c.retired=R0+${k + 1};return;}}`;
      }
      continue;
    }
    const h = g.bind(`h${id}`, i.exec);
    g.flush();
    if (isPureInsn(i)) {
      g.body += `${WB}${h}(c,i${id});${RL}`;
      continue;
    }
    g.body += `c.insnStart=r+${start};c.rip=r+${at.end};c.retired=R0+${k};${WB}${h}(c,i${id});${RL}`;
    if (k === n - 1) {
      // The last instruction may have branched (RIP is its own) or, a REP string instruction, retired iterations itself.
      g.body += "c.retired++;return;";
      ended = true;
    } else g.body += `if(c.attention!==0){c.retired=R0+${k + 1};return;}`;
  }
  if (!ended) {
    const fl = g.flushCode();
    g.pending = undefined;
    const end = base + (offsets[n - 1] as number) + last.len;
    g.body += edge(g, page, end, `r+${end}`, n, fl);
  }
}

/** A block of a region: its page offset, instructions and their offsets from its start. */
export interface RegionBlock {
  off: number;
  insns: readonly Insn[];
  offsets: readonly number[];
}

/**
 * Compile a region (blocks of one page reachable from `entry` by direct branches and
 * fall-throughs, `blocks[0]` the entry's) into one function: `for(;;){switch(pc){...}}` with one
 * case per block, registers and the retired count in locals across its internal edges, the flags
 * materialised at each edge (each block starts with them in the CPU's fields) unless the block
 * entered overwrites them first (flagsDeadAtEntry; they are materialised when the edge leaves
 * the function instead). The run loop (and
 * a chaining block) enters it only when the bound leaves room for `len` instructions, the longest
 * path of forward edges from the entry, so forward edges need no bound check; a back edge checks
 * attention and the bound for the longest forward path of the block it enters, exactly as the run
 * loop would before entering that block (on a failed check the region returns with RIP there, and
 * the run loop goes on one instruction or block at a time). Edges out of the region chain as a
 * block's do.
 */
export function jitCompileRegion(blocks: readonly RegionBlock[]): { fn: BlockFn; len: number } | undefined {
  if (!compilerWorks) return undefined;
  const gen = generateRegion(blocks);
  const fn = instantiate(gen.params, gen.src, gen.args);
  return fn === undefined ? undefined : { fn, len: gen.len };
}

function generateRegion(blocks: readonly RegionBlock[]): Generated {
  const g = newGen();
  const entry = (blocks[0] as RegionBlock).off;
  const dead = new Set(jitHooks.onBlockEntry === undefined || jitHooks.deadFlagsWithHook === true ? blocks.filter((b) => flagsDeadAtEntry(b.insns)).map((b) => b.off) : []);
  const region: RegionGen = { blocks: new Set(blocks.map((b) => b.off)), dead, start: 0, forward: [] };
  g.region = region;
  const forward = new Map<number, number[]>();
  let cases = "";
  let id0 = 0;
  for (const b of blocks) {
    region.start = b.off;
    region.forward = [];
    g.pending = undefined;
    g.body = "";
    generateInto(g, b.insns, b.offsets, 0, b.off, id0, false);
    // The hook sees each block's entry with the state there in the CPU (flags are in the fields).
    const hook = jitHooks.onBlockEntry !== undefined ? `${WB}c.retired=R0;${g.bind("TR", jitHooks.onBlockEntry)}(c,r+${b.off});` : "";
    cases += `case ${b.off}:{${hook}${g.body}}`;
    forward.set(b.off, region.forward);
    id0 += b.insns.length;
  }
  // Longest forward paths, from the highest block down (forward edges go to higher offsets).
  const depth = new Map<number, number>();
  for (const b of [...blocks].sort((x, y) => y.off - x.off)) {
    let longest = 0;
    for (const t of forward.get(b.off) as number[]) longest = Math.max(longest, depth.get(t) as number);
    depth.set(b.off, b.insns.length + longest);
  }
  cases = cases.replace(/@D(\d+)@/g, (_m, t: string) => String(depth.get(Number(t))));
  const decl = [...g.locals].map((v) => `${v}=0`).join(",");
  const cached = cacheRegisters(`switch(pc){${cases}default:return;}`);
  const src =
    `"use strict";return function jitRegion_${entry.toString(16)}(c,q){const r=q-${entry},lo=c.lo,hi=c.hi,T=c.tlbTag,K=c.tlbOk,V=c.tlbView;` +
    `const RM=c.cpl===3?4:1,WM=c.cpl===3?8:2;let R0=c.retired,AT=c.attention,RS=c.repStop,s,pc=${entry},PR=NaN,PW=NaN,VR=V[0],VW=VR,${decl}${cached.decl};` +
    `for(;;){${cached.body}}};`;
  lastSource = src;
  jitHooks.onSource?.(src);
  return { params: g.params, args: g.args, src, len: depth.get(entry) as number };
}

/**
 * The page offsets a block may go to next without leaving a region: the targets of its last
 * instruction (a direct JMP, Jcc or CALL into the page) and its fall-through (after a Jcc, or a
 * block cut short before a control-flow instruction). A block ending on another instruction
 * (RET, a handler) goes back to the run loop or chains by lookup.
 */
export function regionSuccessors(b: RegionBlock): number[] {
  const n = b.insns.length;
  const last = b.insns[n - 1] as Insn;
  const end = b.off + (b.offsets[n - 1] as number) + last.len;
  const op = last.opcode;
  const out: number[] = [];
  if (supported(last)) {
    if ((op >= 0x70 && op <= 0x7f) || (op >= 0x180 && op <= 0x18f)) out.push(end + last.imm, end);
    else if (op === 0xe9 || op === 0xeb || op === 0xe8) out.push(end + last.imm);
    else if (op !== 0xc3) out.push(end);
  } else if (isPureInsn(last)) out.push(end);
  return out.filter((t) => t >= 0 && t < 4096);
}

/** Most blocks in a region, and most instructions in all of them. */
const REGION_MAX_BLOCKS = 16;
const REGION_MAX_INSNS = 160;

/**
 * Compile the hot block `first` (page offset `first.off`): alone when it loops on itself (its
 * flags then stay lazy over its back edge) or heads no loop, else as a region: the blocks
 * reachable from it by direct branches and fall-throughs inside the page (breadth first, up to
 * REGION_MAX_BLOCKS blocks and REGION_MAX_INSNS instructions; `decodeRun` gives the
 * straight-line run at a page offset) from which it is reached again, i.e. the body of a loop it
 * heads, with the ifs inside it. Self-looping blocks stay out (their own functions keep their
 * flags lazy over their back edges). `len`: what the run loop's bound must leave
 * room for before entering it.
 */
export function jitCompileHot(first: RegionBlock, decodeRun: (off: number) => RegionBlock | undefined): { fn: BlockFn; len: number } | undefined {
  const blocks: RegionBlock[] = [first];
  if (!selfLoops(first.insns, first.offsets) && jitHooks.noRegions !== true) {
    const seen = new Set<number>([first.off]);
    let total = first.insns.length;
    for (let q = 0; q < blocks.length && blocks.length < REGION_MAX_BLOCKS; q++) {
      for (const t of regionSuccessors(blocks[q] as RegionBlock)) {
        if (seen.has(t) || blocks.length >= REGION_MAX_BLOCKS) continue;
        seen.add(t);
        const b = decodeRun(t);
        // A block that loops on itself stays its own function (entered by chaining), where its flags
        // stay lazy over its back edge. (Taken into regions, the bench guest's partition loop with its
        // inner loops became one function, but a domain on shadow paging run after one on EPT in the
        // same process then ran the bench guest at 60-85 % of the speed it has this way.)
        if (b === undefined || total + b.insns.length > REGION_MAX_INSNS || selfLoops(b.insns, b.offsets)) continue;
        blocks.push(b);
        total += b.insns.length;
      }
    }
  }
  // Keep the loop: the blocks from which the entry is reached again inside the region (the rest are
  // left through edges that chain, compiled on their own when hot: no code duplicated for them).
  const succ = new Map(blocks.map((b) => [b.off, regionSuccessors(b)] as const));
  const loop = new Set<number>([first.off]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const b of blocks) {
      if (!loop.has(b.off) && (succ.get(b.off) as number[]).some((t) => loop.has(t))) {
        loop.add(b.off);
        grew = true;
      }
    }
  }
  const body = blocks.filter((b) => loop.has(b.off));
  const back = (succ.get(first.off) as number[]).some((t) => loop.has(t));
  jitHooks.onCompile?.(back ? body.length : 1);
  if (!compilerWorks) return undefined;
  const region = back && body.length > 1;
  const parts = region ? body : [first];
  // The same instructions at the same page offsets generate the same source: reuse it (and bind
  // this CPU's instructions and handlers to its parameters, by their names).
  const key = generationKey(region, parts);
  const known = generated.get(key);
  if (known !== undefined) {
    jitStats.generatedReused++;
    const all = parts.flatMap((b) => b.insns);
    const args = known.params.map((name) => paramValue(name, all));
    const fn = instantiate(known.params, known.src, args, known);
    return fn === undefined ? undefined : { fn, len: known.len };
  }
  const gen = region ? generateRegion(body) : generateBlock(first.insns, first.offsets, first.off);
  const all = parts.flatMap((b) => b.insns);
  // Kept only when the parameters' values follow from their names (what a reuse binds).
  let entry: KnownSource | undefined;
  if (gen.params.every((name, k) => paramValue(name, all) === gen.args[k])) {
    reserveCache(key.length + gen.src.length);
    entry = { params: gen.params.slice(), src: gen.src, len: gen.len, factory: undefined };
    generated.set(key, entry);
  }
  const fn = instantiate(gen.params, gen.src, gen.args, entry);
  return fn === undefined ? undefined : { fn, len: gen.len };
}

/**
 * Generated source by what it is generated from (generationKey), shared by every CPU in the
 * process, so compiling code another CPU compiled skips the generator: the kind (block or
 * region), whether the entry hook is bound, and each block's page offset, instruction offsets and
 * instructions (every field the decoder sets, and the handler). Bounded as the factories are.
 */
const generated = new Map<string, KnownSource>();

/** A generated source kept for reuse: its parameters, the run loop's bound, and its factory once made. */
interface KnownSource {
  params: readonly string[];
  src: string;
  len: number;
  factory: ((...a: unknown[]) => BlockFn) | undefined;
}
const handlerIds = new WeakMap<object, number>();
let nextHandlerId = 0;

/** The key of what `parts` generate. */
function generationKey(region: boolean, parts: readonly RegionBlock[]): string {
  let key = `${region ? "R" : "B"}${jitHooks.onBlockEntry !== undefined ? "h" : ""}${jitHooks.deadFlagsWithHook === true ? "d" : ""}`;
  for (const b of parts) {
    key += `|${b.off}:${b.offsets.join(",")}`;
    for (const i of b.insns) {
      let id = handlerIds.get(i.exec);
      if (id === undefined) {
        id = nextHandlerId++;
        handlerIds.set(i.exec, id);
      }
      key += `;${id},${insnFields(i)}`;
    }
  }
  return key;
}

/**
 * Every field the decoder sets, in one string (for generationKey): all of `Insn`'s fields but the
 * handler (keyed by its id) and the run loop's bookkeeping (`hits`, `block`, `blockLen`).
 * INSN_KEYED_FIELDS names them; a test checks that it covers every field of `Insn`.
 */
function insnFields(i: Insn): string {
  return `${i.len},${i.opcode},${i.opSize},${i.addrSize},${i.rex ? 1 : 0},${i.modrm},${i.reg},${i.rm},${i.isMem ? 1 : 0},${i.base},${i.index},${i.scale},${i.disp},${i.ripRel ? 1 : 0},${i.seg},${i.segOverride ? 1 : 0},${i.imm},${i.immHi},${i.imm2},${i.rep},${i.lock ? 1 : 0},${i.cc},${i.mnemonic}`;
}

/** The fields insnFields keys, and the ones it leaves out (see there). */
export const INSN_KEYED_FIELDS = ["len", "opcode", "opSize", "addrSize", "rex", "modrm", "reg", "rm", "isMem", "base", "index", "scale", "disp", "ripRel", "seg", "segOverride", "imm", "immHi", "imm2", "rep", "lock", "cc", "mnemonic"] as const;
export const INSN_UNKEYED_FIELDS = ["exec", "hits", "block", "blockLen"] as const;

/** The value a generated function's parameter is bound to (see Gen.bind and generateInto). */
function paramValue(name: string, insns: readonly Insn[]): unknown {
  switch (name) {
    case "PE":
      return PARITY_EVEN;
    case "EA":
      return slowOffset;
    case "ML":
      return mulLowHi64;
    case "MO":
      return imul64Overflows;
    case "TR":
      return jitHooks.onBlockEntry;
  }
  const i = insns[Number(name.slice(1))] as Insn;
  return name[0] === "h" ? i.exec : i;
}

/** The default of `CpuOptions.jit`: on, unless the environment variable VTLAB_JIT is "0". */
export function jitDefault(): boolean {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  return env?.VTLAB_JIT !== "0";
}
