/// <reference types="node" />
/**
 * Seeded generator of random x86-64 instruction sequences for the host-CPU differential test.
 *
 * Every case is a short straight-line sequence (no branches, no stack use) plus an initial
 * machine state: the 16 GPRs, the arithmetic RFLAGS bits and DF, and a 256-byte scratch buffer.
 * Conventions shared with the native harness and the interpreter-side test:
 *  - RBX holds the scratch buffer's address (SCRATCH_BASE) and is never written;
 *  - RSP is never an operand (not read, not written, no PUSH/POP/PUSHF);
 *  - every memory access lies inside [RBX, RBX + 256): [rbx + disp], or [rbx + rsi*scale + disp]
 *    right after a `mov esi, k` with a small k; string instructions get RSI/RDI/RCX from
 *    `lea`/`mov` set-up instructions emitted just before them;
 *  - LEA may use any base/index register (it does not access memory), never RSP or RIP.
 *
 * Case i of seed s is generated from its own PRNG stream (s, i), so `generateCase(s, i)`
 * reproduces a failing case without generating the ones before it.
 *
 * BigInt appears here only because this is a test oracle; the interpreter does not use it.
 */
import { readFileSync } from "node:fs";

// ---------------------------------------------------------------------------------------------
// RFLAGS bits
// ---------------------------------------------------------------------------------------------

export const CF = 0x001;
export const PF = 0x004;
export const AF = 0x010;
export const ZF = 0x040;
export const SF = 0x080;
export const DF = 0x400;
export const OF = 0x800;
/** The six arithmetic status flags. */
export const ARITH_FLAGS = CF | PF | AF | ZF | SF | OF;
/** Every RFLAGS bit the differential test compares (when defined). */
export const COMPARED_FLAGS = ARITH_FLAGS | DF;

export const FLAG_NAMES: ReadonlyArray<readonly [number, string]> = [
  [CF, "CF"],
  [PF, "PF"],
  [AF, "AF"],
  [ZF, "ZF"],
  [SF, "SF"],
  [DF, "DF"],
  [OF, "OF"],
];

export function flagsText(value: number, mask: number = COMPARED_FLAGS): string {
  return FLAG_NAMES.filter(([bit]) => mask & bit)
    .map(([bit, name]) => (value & bit ? name : name.toLowerCase()))
    .join(" ");
}

// ---------------------------------------------------------------------------------------------
// Constants shared with the harness and the interpreter-side test
// ---------------------------------------------------------------------------------------------

export const SCRATCH_SIZE = 256;
/**
 * Linear address of the scratch buffer in both worlds. It ends on a page boundary (the native
 * harness puts a guard page after it) and lies below 4 GiB.
 */
export const SCRATCH_BASE = 0x10_0f00n;
/** RSP's value in every case (never used by the code; the harness reports init + any change). */
export const INIT_RSP = 0x7ffc_0000_1000n;

export const GPR_NAMES = [
  "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
  "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
] as const;

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

export interface CaseInit {
  /** The 16 GPRs in encoding order (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15), as u64. */
  gprs: bigint[];
  /** Initial RFLAGS: only CF PF AF ZF SF OF and DF are meaningful (bit 1 and IF are implied). */
  rflags: number;
  /** The scratch buffer's initial contents (SCRATCH_SIZE bytes). */
  memory: Uint8Array;
}

export interface TestCase {
  seed: number;
  index: number;
  scratchBase: bigint;
  /** The instruction bytes. */
  code: Uint8Array;
  /** One readable line per instruction (iced-x86-compatible canonical text). */
  asm: string[];
  /** Start offset of each instruction within `code`. */
  offsets: number[];
  /** RFLAGS bits (of COMPARED_FLAGS) defined after each instruction. */
  flagsDefinedAfter: number[];
  /** RFLAGS bits (of COMPARED_FLAGS) defined after the whole sequence. */
  flagsDefined: number;
  init: CaseInit;
}

export interface HostFeatures {
  /** TZCNT (CPUID BMI1); without it F3 0F BC executes as BSF. */
  bmi1: boolean;
  /** LZCNT (CPUID ABM/LZCNT); without it F3 0F BD executes as BSR. */
  lzcnt: boolean;
  popcnt: boolean;
  /** LAHF/SAHF in 64-bit mode (CPUID LAHF-SAHF, /proc/cpuinfo lahf_lm). */
  lahf: boolean;
}

export interface GenerateOptions {
  features?: HostFeatures;
  scratchBase?: bigint;
}

let cachedHostFeatures: HostFeatures | undefined;

/** Reads the host's feature flags from /proc/cpuinfo (all false where it cannot be read). */
export function hostFeatures(): HostFeatures {
  if (cachedHostFeatures) return cachedHostFeatures;
  let flags = new Set<string>();
  try {
    const text = readFileSync("/proc/cpuinfo", "utf8");
    const line = text.split("\n").find((l) => l.startsWith("flags"));
    if (line) flags = new Set(line.slice(line.indexOf(":") + 1).trim().split(/\s+/));
  } catch {
    // not Linux: no optional instructions
  }
  cachedHostFeatures = {
    bmi1: flags.has("bmi1"),
    lzcnt: flags.has("abm") || flags.has("lzcnt"),
    popcnt: flags.has("popcnt"),
    lahf: flags.has("lahf_lm"),
  };
  return cachedHostFeatures;
}

// ---------------------------------------------------------------------------------------------
// PRNG: xoshiro128** seeded through splitmix32 from (seed, index)
// ---------------------------------------------------------------------------------------------

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number, index: number) {
    let state = (seed ^ Math.imul(index, 0x632be5ab) ^ (Math.imul(index >>> 16, 0x85ebca77) << 1)) | 0;
    const next = (): number => {
      state = (state + 0x9e3779b9) | 0;
      let z = state;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    // fold the index in a second time so that nearby (seed, index) pairs decorrelate
    state = (state ^ next() ^ index) | 0;
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next() | 1;
  }

  u32(): number {
    const result = Math.imul(rotl32(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl32(this.s3, 11);
    return result;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 4294967296) * n);
  }

  /** Uniform integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.u32() < p * 4294967296;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }

  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
}

function rotl32(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

// ---------------------------------------------------------------------------------------------
// Registers and operand text
// ---------------------------------------------------------------------------------------------

type Width = 8 | 16 | 32 | 64;
type Mode8 = "legacy" | "rex" | undefined;

/**
 * Register codes: 0..15 are the GPRs in encoding order. For byte operands 0..15 are the low
 * bytes (4..7 = SPL BPL SIL DIL, which need a REX prefix) and 16..19 are AH CH DH BH (encoded
 * as 4..7 with no REX prefix allowed).
 */
const R8 = [
  "al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil",
  "r8b", "r9b", "r10b", "r11b", "r12b", "r13b", "r14b", "r15b",
  "ah", "ch", "dh", "bh",
];
const R16 = [
  "ax", "cx", "dx", "bx", "sp", "bp", "si", "di",
  "r8w", "r9w", "r10w", "r11w", "r12w", "r13w", "r14w", "r15w",
];
const R32 = [
  "eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi",
  "r8d", "r9d", "r10d", "r11d", "r12d", "r13d", "r14d", "r15d",
];

export function regName(code: number, width: Width): string {
  const table = width === 8 ? R8 : width === 16 ? R16 : width === 32 ? R32 : GPR_NAMES;
  const name = table[code];
  if (name === undefined) throw new Error(`no ${width}-bit register ${code}`);
  return name;
}

const SIZE_NAME: Record<number, string> = { 1: "byte", 2: "word", 4: "dword", 8: "qword" };

export interface Mem {
  base: number;
  index?: number;
  scale?: 1 | 2 | 4 | 8;
  disp: number;
  /** Encode the displacement as disp32 even when it would fit a disp8. */
  disp32?: boolean;
}

export type RM = { reg: number } | { mem: Mem };

/** Canonical memory operand text; `size` in bytes, 0 for none (LEA). */
export function memText(m: Mem, size: number): string {
  let s = GPR_NAMES[m.base] as string;
  if (m.index !== undefined) s += `+${GPR_NAMES[m.index]}*${m.scale ?? 1}`;
  if (m.disp > 0) s += `+0x${m.disp.toString(16)}`;
  else if (m.disp < 0) s += `-0x${(-m.disp).toString(16)}`;
  return size ? `${SIZE_NAME[size]} [${s}]` : `[${s}]`;
}

/** Canonical immediate text: the value truncated to `bits`, in hex. */
export function immText(value: bigint, bits: number): string {
  return `0x${BigInt.asUintN(bits, value).toString(16)}`;
}

function rmText(rm: RM, w: Width): string {
  return "reg" in rm ? regName(rm.reg, w) : memText(rm.mem, w / 8);
}

// ---------------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------------

interface Enc {
  /** Legacy prefixes, emitted in this order (0x66, 0xF2, 0xF3). */
  prefixes?: number[];
  /** REX.W. */
  w?: boolean;
  opcode: number[];
  /** ModRM.reg: a register code, or an opcode extension 0..7. */
  reg?: number;
  regIs8?: boolean;
  rm?: RM;
  rmIs8?: boolean;
  /** Register folded into the low three bits of the last opcode byte. */
  plus?: number;
  plusIs8?: boolean;
  imm?: { value: bigint; size: 1 | 2 | 4 | 8 };
  /** Add a redundant REX (0x40) if no REX is needed and none is forbidden. */
  rex?: boolean;
}

/** Encodes one instruction. Throws on impossible operand combinations (a generator bug). */
export function encode(e: Enc): number[] {
  let rexR = 0;
  let rexX = 0;
  let rexB = 0;
  let need = !!e.w;
  let forbid = false;
  const low3 = (code: number, is8: boolean | undefined): number => {
    if (is8 && code >= 16) {
      forbid = true;
      return code - 12;
    }
    if (is8 && code >= 4 && code <= 7) need = true;
    return code & 7;
  };
  const out: number[] = [...(e.prefixes ?? [])];
  const opcode = [...e.opcode];
  const tail: number[] = [];
  if (e.plus !== undefined) {
    const r = low3(e.plus, e.plusIs8);
    if (e.plus >= 8 && e.plus < 16) rexB = 1;
    opcode[opcode.length - 1] = (opcode[opcode.length - 1] as number) | r;
  }
  if (e.rm !== undefined) {
    const regField = e.reg ?? 0;
    const reg3 = low3(regField, e.regIs8);
    if (regField >= 8 && regField < 16) rexR = 1;
    if ("reg" in e.rm) {
      const r = e.rm.reg;
      const rm3 = low3(r, e.rmIs8);
      if (r >= 8 && r < 16) rexB = 1;
      tail.push(0xc0 | (reg3 << 3) | rm3);
    } else {
      const m = e.rm.mem;
      if (m.index === 4) throw new Error("rsp cannot be an index");
      const needSib = m.index !== undefined || (m.base & 7) === 4;
      let mod: number;
      if (m.disp === 0 && !m.disp32 && (m.base & 7) !== 5) mod = 0;
      else if (m.disp >= -128 && m.disp <= 127 && !m.disp32) mod = 1;
      else mod = 2;
      if (needSib) {
        const scaleBits = { 1: 0, 2: 1, 4: 2, 8: 3 }[m.scale ?? 1];
        const idx3 = m.index === undefined ? 4 : m.index & 7;
        tail.push((mod << 6) | (reg3 << 3) | 4, (scaleBits << 6) | (idx3 << 3) | (m.base & 7));
      } else {
        tail.push((mod << 6) | (reg3 << 3) | (m.base & 7));
      }
      if (m.index !== undefined && m.index >= 8) rexX = 1;
      if (m.base >= 8) rexB = 1;
      if (mod === 1) tail.push(m.disp & 0xff);
      if (mod === 2) for (let i = 0; i < 4; i++) tail.push((m.disp >>> (8 * i)) & 0xff);
    }
  }
  if (rexR || rexX || rexB) need = true;
  if (need && forbid) throw new Error("AH/CH/DH/BH cannot be encoded with a REX prefix");
  if (need || (e.rex && !forbid)) out.push(0x40 | (e.w ? 8 : 0) | (rexR << 2) | (rexX << 1) | rexB);
  out.push(...opcode, ...tail);
  if (e.imm) {
    const v = BigInt.asUintN(64, e.imm.value);
    for (let i = 0; i < e.imm.size; i++) out.push(Number((v >> BigInt(8 * i)) & 0xffn));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Flag rules (Intel SDM Vol. 2, "Flags Affected" of each instruction; Appendix A of Vol. 1)
// ---------------------------------------------------------------------------------------------

/** Effect on flag definedness: `def` bits become defined, `undef` bits undefined, others keep. */
interface Fx {
  def?: number;
  undef?: number;
}

/** ADD ADC SUB SBB CMP NEG XADD CMPXCHG CMPS SCAS: "OF, SF, ZF, AF, CF and PF are set
 *  according to the result" (SDM ADD, SUB, CMP, NEG, XADD, CMPXCHG, CMPS, SCAS). */
const FX_ARITH: Fx = { def: ARITH_FLAGS };
/** AND OR XOR TEST: "OF and CF are cleared; SF, ZF and PF are set according to the result.
 *  The state of the AF flag is undefined." (SDM AND, OR, XOR, TEST). */
const FX_LOGIC: Fx = { def: CF | OF | SF | ZF | PF, undef: AF };
/** INC DEC: "The CF flag is not affected. The OF, SF, ZF, AF and PF flags are set according
 *  to the result." (SDM INC, DEC). */
const FX_INCDEC: Fx = { def: OF | SF | ZF | AF | PF };
/** MUL and every IMUL form: CF and OF defined; "The SF, ZF, AF and PF flags are undefined."
 *  (SDM MUL, IMUL). */
const FX_MUL: Fx = { def: CF | OF, undef: SF | ZF | AF | PF };
/** DIV IDIV: "The CF, OF, SF, ZF, AF and PF flags are undefined." (SDM DIV, IDIV). */
const FX_DIV: Fx = { undef: ARITH_FLAGS };
/** BT BTS BTR BTC: "The CF flag contains the value of the selected bit. The ZF flag is
 *  unaffected. The OF, SF, AF and PF flags are undefined." (SDM BT, BTS, BTR, BTC). */
const FX_BT: Fx = { def: CF, undef: OF | SF | AF | PF };
/** BSF BSR: "The ZF flag is set to 1 if the source operand is 0; otherwise, the ZF flag is
 *  cleared. The CF, OF, SF, AF and PF flags are undefined." (SDM BSF, BSR). */
const FX_BSF: Fx = { def: ZF, undef: CF | OF | SF | AF | PF };
/** TZCNT LZCNT: "ZF is set to 1 in case of zero output ..., CF is set to 1 if the input was
 *  zero and cleared otherwise. OF, SF, PF and AF flags are undefined." (SDM TZCNT, LZCNT). */
const FX_TZCNT: Fx = { def: CF | ZF, undef: OF | SF | PF | AF };
/** POPCNT: "OF, SF, ZF, AF, CF, PF are all cleared. ZF is set if SRC = 0." (SDM POPCNT). */
const FX_POPCNT: Fx = { def: ARITH_FLAGS };
/** SAHF: "The SF, ZF, AF, PF and CF flags are loaded with values from the AH register"
 *  (SDM SAHF); OF unchanged. */
const FX_SAHF: Fx = { def: SF | ZF | AF | PF | CF };
/** NOT, MOV*, LEA, XCHG, CMOVcc, SETcc, BSWAP, CBW..CQO, LAHF, MOVS, STOS, LODS: no flags. */
const FX_NONE: Fx = {};

/**
 * Shifts and rotates (SDM SAL/SAR/SHL/SHR and RCL/RCR/ROL/ROR). `kind` is the group-2 opcode
 * extension: 0 ROL, 1 ROR, 2 RCL, 3 RCR, 4 SHL, 5 SHR, 7 SAR. `count` is the count operand
 * (masked here to 5 bits, 6 with REX.W), or undefined when CL is not statically known.
 *  - Masked count 0: "the flags are not affected" (both pages; for rotates the prose says so,
 *    the pseudocode's "ELSE OF is undefined" is read as applying to counts > 1 only).
 *  - Shifts, count != 0: SF ZF PF set from the result; CF = last bit shifted out, but "it is
 *    undefined for SHL and SHR instructions where the count is greater than or equal to the
 *    size (in bits) of the destination operand" (SAR's CF stays defined: its pseudocode
 *    defines it for every count); "The OF flag is affected only on 1-bit shifts" (undefined
 *    otherwise); "For a non-zero count, the AF flag is undefined."
 *  - Rotates, count != 0: CF defined (for RCL/RCR with 8/16-bit operands the count is taken
 *    mod 9/17, a zero rotation leaves CF as it was, still defined); OF defined only for a
 *    masked count of 1, "undefined in all other cases"; SF ZF AF PF "always unaffected".
 *  - Unknown count (may be 0): a flag stays defined only if it was defined before and every
 *    non-zero count defines it; OF and (shifts) AF become undefined, and CF for 8/16-bit
 *    SHL/SHR (the count may reach the operand size).
 */
export function shiftFx(kind: number, w: Width, count: number | undefined): Fx {
  const rotate = kind <= 3;
  const shlShr = kind === 4 || kind === 5;
  if (count === undefined) {
    if (rotate) return { undef: OF };
    return { undef: OF | AF | (shlShr && w <= 16 ? CF : 0) };
  }
  const m = count & (w === 64 ? 63 : 31);
  if (m === 0) return {};
  if (rotate) return m === 1 ? { def: CF | OF } : { def: CF, undef: OF };
  let def = SF | ZF | PF | CF;
  let undef = AF;
  if (shlShr && m >= w) {
    def &= ~CF;
    undef |= CF;
  }
  if (m === 1) def |= OF;
  else undef |= OF;
  return { def, undef };
}

/**
 * SHLD/SHRD (SDM SHLD, SHRD): count masked to 5 bits (6 with REX.W). "If the count operand is
 * 0, the flags are not affected." Otherwise CF = last bit shifted out, SF ZF PF from the
 * result; OF defined for a 1-bit shift, undefined for more; "If a shift occurs, the AF flag is
 * undefined." "If the count is greater than the operand size, the result is undefined" and so
 * are the flags: the generator never produces that (16-bit counts are kept <= 16).
 */
export function shldFx(w: Width, count: number | undefined): Fx {
  if (count === undefined) return { undef: OF | AF };
  const m = count & (w === 64 ? 63 : 31);
  if (m === 0) return {};
  if (m > w) return { undef: ARITH_FLAGS };
  return m === 1 ? { def: CF | SF | ZF | PF | OF, undef: AF } : { def: CF | SF | ZF | PF, undef: AF | OF };
}

/** Flags read by condition code cc (SDM Vol. 1 Appendix B, EFLAGS condition codes). */
const CC_FLAGS = [
  OF, OF, CF, CF, ZF, ZF, CF | ZF, CF | ZF,
  SF, SF, PF, PF, SF | OF, SF | OF, ZF | SF | OF, ZF | SF | OF,
];
const CC_NAMES = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"];

// ---------------------------------------------------------------------------------------------
// Sequence builder
// ---------------------------------------------------------------------------------------------

/** Registers an instruction may write: not RBX (scratch pointer), not RSP. */
const W_ALL = [0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const R_ALL = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const W_LEGACY = [0, 1, 2, 5, 6, 7];
const R_LEGACY = [0, 1, 2, 3, 5, 6, 7];
/** Byte registers without REX: AL CL DL BL AH CH DH BH (BL and BH are RBX: read-only). */
const W_LEGACY8 = [0, 1, 2, 16, 17, 18];
const R_LEGACY8 = [0, 1, 2, 3, 16, 17, 18, 19];
/** Byte registers with REX: AL..R15B incl. BPL SIL DIL (SPL is RSP: never; BL read-only). */
const W_REX8 = W_ALL;
const R_REX8 = R_ALL;

class Seq {
  readonly bytes: number[] = [];
  readonly asm: string[] = [];
  readonly offsets: number[] = [];
  readonly after: number[] = [];
  defined = COMPARED_FLAGS;

  constructor(
    readonly rng: Rng,
    readonly features: HostFeatures,
    public df: number,
  ) {}

  emit(e: Enc, text: string, fx: Fx): void {
    this.offsets.push(this.bytes.length);
    for (const b of encode(e)) this.bytes.push(b);
    this.asm.push(text);
    this.defined = (this.defined | (fx.def ?? 0)) & ~(fx.undef ?? 0);
    this.after.push(this.defined);
  }

  /** A random redundant-REX choice for `Enc.rex`. */
  optRex(): boolean {
    return this.rng.chance(0.15);
  }

  width(choices: readonly Width[] = [8, 16, 32, 64]): Width {
    return this.rng.pick(choices);
  }

  /** For byte-operand instructions: AH..BH encodings (no REX) or SPL..R15B encodings. */
  mode8(w: Width): Mode8 {
    if (w !== 8) return undefined;
    return this.rng.chance(0.5) ? "legacy" : "rex";
  }

  reg(w: Width, write: boolean, m8: Mode8): number {
    let pool: number[];
    if (w === 8) pool = m8 === "legacy" ? (write ? W_LEGACY8 : R_LEGACY8) : write ? W_REX8 : R_REX8;
    else pool = m8 === "legacy" ? (write ? W_LEGACY : R_LEGACY) : write ? W_ALL : R_ALL;
    return this.rng.pick(pool);
  }

  /** A register or scratch-memory operand (may emit a `mov esi, k` set-up first). */
  rm(w: Width, write: boolean, m8: Mode8, allowSib = true): RM {
    if (this.rng.chance(0.6)) return { reg: this.reg(w, write, m8) };
    return { mem: this.bufMem(w / 8, allowSib) };
  }

  /** A memory operand addressing `size` bytes inside the scratch buffer. */
  bufMem(size: number, allowSib = true): Mem {
    const rng = this.rng;
    if (allowSib && rng.chance(0.25)) {
      const k = rng.int(16);
      const scale = rng.pick([1, 2, 4, 8] as const);
      const disp = rng.int(SCRATCH_SIZE - size - k * scale + 1);
      this.emit({ opcode: [0xb8], plus: 6, imm: { value: BigInt(k), size: 4 } }, `mov esi, ${immText(BigInt(k), 32)}`, FX_NONE);
      return { base: 3, index: 6, scale, disp, disp32: rng.chance(0.1) };
    }
    const disp = rng.int(SCRATCH_SIZE - size + 1);
    return { base: 3, disp, disp32: rng.chance(0.1) };
  }

  /**
   * Makes sure the flags in `mask` are defined before an instruction that reads them (ADC SBB
   * RCL RCR CMOVcc SETcc LAHF), so that undefined flags never flow into registers or memory.
   * Emits CMP (defines all six) or CLC/STC; neither writes a register, so set-ups already
   * emitted stay valid.
   */
  ensure(mask: number): void {
    if ((this.defined & mask) === mask) return;
    const rng = this.rng;
    if (mask === CF && rng.chance(0.5)) {
      const stc = rng.chance(0.5);
      this.emit({ opcode: [stc ? 0xf9 : 0xf8] }, stc ? "stc" : "clc", { def: CF });
      return;
    }
    const w = this.width([32, 64]);
    const a = this.reg(w, false, undefined);
    if (rng.chance(0.5)) {
      const b = this.reg(w, false, undefined);
      this.emit({ w: w === 64, opcode: [0x39], reg: b, rm: { reg: a } }, `cmp ${regName(a, w)}, ${regName(b, w)}`, FX_ARITH);
    } else {
      const v = BigInt(randInt8(rng));
      this.emit({ w: w === 64, opcode: [0x83], reg: 7, rm: { reg: a }, imm: { value: v, size: 1 } }, `cmp ${regName(a, w)}, ${immText(v, w)}`, FX_ARITH);
    }
  }
}

function opsz(w: Width): number[] {
  return w === 16 ? [0x66] : [];
}

function randInt8(rng: Rng): number {
  return rng.chance(0.5) ? rng.range(-128, 127) : rng.pick([0, 1, -1, 127, -128, 2, 0x40]);
}

/** An immediate of `bits` bits (returned as a signed-or-unsigned bigint to be truncated). */
function randImm(rng: Rng, bits: number): bigint {
  switch (rng.int(4)) {
    case 0:
      return BigInt(rng.range(-4, 4));
    case 1:
      return rng.pick([0x7fn, 0x80n, 0xffn, 0x7fffn, 0x8000n, 0xffffn, 0x7fffffffn, 0x80000000n, -1n]);
    default:
      return BigInt.asUintN(bits, rng.u64());
  }
}

const SPECIAL64 = [
  0n, 1n, 2n, 0x7fn, 0x80n, 0xffn, 0x100n, 0x7fffn, 0x8000n, 0xffffn, 0x10000n,
  0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 0x7fffffffffffffffn,
  0x8000000000000000n, 0xffffffffffffffffn, 0xfffffffffffffffen, 0x8000000000000001n,
  0xffffffff80000000n, 0xffffffff7fffffffn, 0x00000000ffff0000n,
];

/** A register value with plenty of edge cases (0, sign boundaries, small, one-bit, ...). */
function randValue(rng: Rng): bigint {
  switch (rng.int(9)) {
    case 0:
    case 1:
      return rng.u64();
    case 2:
      return BigInt(rng.int(256));
    case 3:
      return rng.pick(SPECIAL64);
    case 4:
      return BigInt(rng.u32());
    case 5:
      return BigInt.asUintN(64, -BigInt(rng.range(1, 256)));
    case 6: {
      const bit = 1n << BigInt(rng.int(64));
      return BigInt.asUintN(64, bit + BigInt(rng.range(-1, 1)));
    }
    case 7:
      return BigInt(rng.int(65536));
    default:
      return BigInt(rng.range(1, 64));
  }
}

function shiftCount(rng: Rng, w: Width): number {
  return rng.pick([0, 1, 1, 2, 3, w - 1, w, w + 1, 31, 32, 33, 63, 64, 65, 255, rng.int(256), rng.range(1, w - 1)]);
}

// ---------------------------------------------------------------------------------------------
// Instruction generators
// ---------------------------------------------------------------------------------------------

const ALU = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"];

/** ADD OR ADC SBB AND SUB XOR CMP in the r/m,r  r,r/m  r/m,imm8/imm  acc,imm forms. */
function genAlu(s: Seq): void {
  const rng = s.rng;
  const a = rng.int(8);
  const name = ALU[a] as string;
  const fx = a === 1 || a === 4 || a === 6 ? FX_LOGIC : FX_ARITH;
  if (a === 2 || a === 3) s.ensure(CF);
  const w = s.width();
  const m8 = s.mode8(w);
  const write = a !== 7;
  const base: Enc = { prefixes: opsz(w), w: w === 64, opcode: [], rex: s.optRex() };
  const is8 = w === 8;
  switch (rng.int(4)) {
    case 0: {
      const src = s.reg(w, false, m8);
      const dst = s.rm(w, write, m8);
      s.emit({ ...base, opcode: [a * 8 + (is8 ? 0 : 1)], reg: src, regIs8: is8, rm: dst, rmIs8: is8 }, `${name} ${rmText(dst, w)}, ${regName(src, w)}`, fx);
      return;
    }
    case 1: {
      const dst = s.reg(w, write, m8);
      const src = s.rm(w, false, m8);
      s.emit({ ...base, opcode: [a * 8 + (is8 ? 2 : 3)], reg: dst, regIs8: is8, rm: src, rmIs8: is8 }, `${name} ${regName(dst, w)}, ${rmText(src, w)}`, fx);
      return;
    }
    case 2: {
      const dst = s.rm(w, write, m8);
      if (is8) {
        const v = randImm(rng, 8);
        s.emit({ ...base, opcode: [0x80], reg: a, rm: dst, rmIs8: true, imm: { value: v, size: 1 } }, `${name} ${rmText(dst, w)}, ${immText(v, 8)}`, fx);
      } else if (rng.chance(0.5)) {
        const v = BigInt(randInt8(rng));
        s.emit({ ...base, opcode: [0x83], reg: a, rm: dst, imm: { value: v, size: 1 } }, `${name} ${rmText(dst, w)}, ${immText(v, w)}`, fx);
      } else {
        const size = w === 16 ? 2 : 4;
        const v = BigInt.asIntN(size * 8, randImm(rng, size * 8));
        s.emit({ ...base, opcode: [0x81], reg: a, rm: dst, imm: { value: v, size } }, `${name} ${rmText(dst, w)}, ${immText(v, w)}`, fx);
      }
      return;
    }
    default: {
      const size = is8 ? 1 : w === 16 ? 2 : 4;
      const v = BigInt.asIntN(size * 8, randImm(rng, size * 8));
      s.emit({ ...base, opcode: [a * 8 + (is8 ? 4 : 5)], imm: { value: v, size } }, `${name} ${regName(0, w)}, ${immText(v, w)}`, fx);
    }
  }
}

/** TEST r/m,r  r/m,imm  acc,imm. */
function genTest(s: Seq): void {
  const rng = s.rng;
  const w = s.width();
  const m8 = s.mode8(w);
  const is8 = w === 8;
  const base: Enc = { prefixes: opsz(w), w: w === 64, opcode: [], rex: s.optRex() };
  const size = is8 ? 1 : w === 16 ? 2 : 4;
  const v = BigInt.asIntN(size * 8, randImm(rng, size * 8));
  switch (rng.int(3)) {
    case 0: {
      const src = s.reg(w, false, m8);
      const dst = s.rm(w, false, m8);
      s.emit({ ...base, opcode: [is8 ? 0x84 : 0x85], reg: src, regIs8: is8, rm: dst, rmIs8: is8 }, `test ${rmText(dst, w)}, ${regName(src, w)}`, FX_LOGIC);
      return;
    }
    case 1: {
      const dst = s.rm(w, false, m8);
      s.emit({ ...base, opcode: [is8 ? 0xf6 : 0xf7], reg: 0, rm: dst, rmIs8: is8, imm: { value: v, size } }, `test ${rmText(dst, w)}, ${immText(v, w)}`, FX_LOGIC);
      return;
    }
    default:
      s.emit({ ...base, opcode: [is8 ? 0xa8 : 0xa9], imm: { value: v, size } }, `test ${regName(0, w)}, ${immText(v, w)}`, FX_LOGIC);
  }
}

/** INC DEC NOT NEG (FE/FF /0 /1, F6/F7 /2 /3). */
function genUnary(s: Seq): void {
  const rng = s.rng;
  const k = rng.int(4);
  const w = s.width();
  const m8 = s.mode8(w);
  const is8 = w === 8;
  const dst = s.rm(w, true, m8);
  const [opcode, ext, name, fx] = [
    [is8 ? 0xfe : 0xff, 0, "inc", FX_INCDEC],
    [is8 ? 0xfe : 0xff, 1, "dec", FX_INCDEC],
    [is8 ? 0xf6 : 0xf7, 2, "not", FX_NONE],
    [is8 ? 0xf6 : 0xf7, 3, "neg", FX_ARITH],
  ][k] as [number, number, string, Fx];
  s.emit({ prefixes: opsz(w), w: w === 64, opcode: [opcode], reg: ext, rm: dst, rmIs8: is8, rex: s.optRex() }, `${name} ${rmText(dst, w)}`, fx);
}

const SHIFT_NAMES = ["rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"];

/** Set-up: CL := count (`mov cl, imm8`). */
function setCl(s: Seq, count: number): void {
  s.emit({ opcode: [0xb0], plus: 1, plusIs8: true, imm: { value: BigInt(count), size: 1 } }, `mov cl, ${immText(BigInt(count), 8)}`, FX_NONE);
}

/** ROL ROR RCL RCR SHL SHR SAR by 1 (D0/D1), by imm8 (C0/C1), by CL (D2/D3). */
function genShift(s: Seq): void {
  const rng = s.rng;
  const kind = rng.pick([0, 1, 2, 3, 4, 5, 7]);
  if (kind === 2 || kind === 3) s.ensure(CF);
  const w = s.width();
  const m8 = s.mode8(w);
  const is8 = w === 8;
  const form = rng.int(3);
  let count: number | undefined;
  if (form === 2 && rng.chance(0.75)) {
    count = shiftCount(rng, w);
    setCl(s, count);
  }
  const dst = s.rm(w, true, m8);
  const base: Enc = { prefixes: opsz(w), w: w === 64, opcode: [], reg: kind, rm: dst, rmIs8: is8, rex: s.optRex() };
  const name = SHIFT_NAMES[kind] as string;
  if (form === 0) {
    s.emit({ ...base, opcode: [is8 ? 0xd0 : 0xd1] }, `${name} ${rmText(dst, w)}, 0x1`, shiftFx(kind, w, 1));
  } else if (form === 1) {
    const c = shiftCount(rng, w);
    s.emit({ ...base, opcode: [is8 ? 0xc0 : 0xc1], imm: { value: BigInt(c), size: 1 } }, `${name} ${rmText(dst, w)}, ${immText(BigInt(c), 8)}`, shiftFx(kind, w, c));
  } else {
    s.emit({ ...base, opcode: [is8 ? 0xd2 : 0xd3] }, `${name} ${rmText(dst, w)}, cl`, shiftFx(kind, w, count));
  }
}

/** SHLD/SHRD r/m, r, imm8 | CL (0F A4/A5, 0F AC/AD); 16-bit counts kept <= 16. */
function genShld(s: Seq): void {
  const rng = s.rng;
  const right = rng.chance(0.5);
  const w = s.width([16, 32, 64]);
  const pickCount = (): number => {
    let c = shiftCount(rng, w);
    if (w === 16 && (c & 31) > 16) c = rng.int(17) + (rng.chance(0.3) ? 32 : 0);
    return c;
  };
  const byCl = rng.chance(0.5);
  let count: number | undefined;
  if (byCl && (w === 16 || rng.chance(0.75))) {
    count = pickCount();
    setCl(s, count);
  }
  const src = s.reg(w, false, undefined);
  const dst = s.rm(w, true, undefined);
  const name = right ? "shrd" : "shld";
  const base: Enc = { prefixes: opsz(w), w: w === 64, opcode: [], reg: src, rm: dst, rex: s.optRex() };
  if (byCl) {
    s.emit({ ...base, opcode: [0x0f, right ? 0xad : 0xa5] }, `${name} ${rmText(dst, w)}, ${regName(src, w)}, cl`, shldFx(w, count));
  } else {
    const c = pickCount();
    s.emit({ ...base, opcode: [0x0f, right ? 0xac : 0xa4], imm: { value: BigInt(c), size: 1 } }, `${name} ${rmText(dst, w)}, ${regName(src, w)}, ${immText(BigInt(c), 8)}`, shldFx(w, c));
  }
}

/**
 * MUL IMUL DIV IDIV r/m (F6/F7 /4../7). Divisions are often preceded by a set-up that makes
 * the dividend's high half a plain extension (xor edx, edx / movzx eax, al for DIV; CWD CDQ CQO
 * CBW for IDIV), so most of them complete; the rest may raise #DE, which the harness reports.
 */
function genMulDiv(s: Seq): void {
  const rng = s.rng;
  const k = rng.range(4, 7);
  const w = s.width();
  const m8 = s.mode8(w);
  const is8 = w === 8;
  if (k >= 6 && rng.chance(0.7)) {
    if (k === 6) {
      if (is8) s.emit({ opcode: [0x0f, 0xb6], reg: 0, rm: { reg: 0 }, rmIs8: true }, "movzx eax, al", FX_NONE);
      else s.emit({ opcode: [0x31], reg: 2, rm: { reg: 2 } }, "xor edx, edx", FX_LOGIC);
    } else {
      const [pfx, wbit, name] = ([[[0x66], false, "cbw"], [[0x66], false, "cwd"], [[], false, "cdq"], [[], true, "cqo"]] as const)[
        is8 ? 0 : w === 16 ? 1 : w === 32 ? 2 : 3
      ];
      s.emit({ prefixes: [...pfx], w: wbit, opcode: [is8 ? 0x98 : 0x99] }, name, FX_NONE);
    }
  }
  const src = s.rm(w, false, m8);
  const name = ["mul", "imul", "div", "idiv"][k - 4] as string;
  s.emit({ prefixes: opsz(w), w: w === 64, opcode: [is8 ? 0xf6 : 0xf7], reg: k, rm: src, rmIs8: is8, rex: s.optRex() }, `${name} ${rmText(src, w)}`, k >= 6 ? FX_DIV : FX_MUL);
}

/** IMUL r, r/m (0F AF) and IMUL r, r/m, imm8/imm (6B/69). */
function genImul(s: Seq): void {
  const rng = s.rng;
  const w = s.width([16, 32, 64]);
  const dst = s.reg(w, true, undefined);
  const src = s.rm(w, false, undefined);
  const base: Enc = { prefixes: opsz(w), w: w === 64, opcode: [], reg: dst, rm: src, rex: s.optRex() };
  const form = rng.int(3);
  if (form === 0) {
    s.emit({ ...base, opcode: [0x0f, 0xaf] }, `imul ${regName(dst, w)}, ${rmText(src, w)}`, FX_MUL);
  } else if (form === 1) {
    const v = BigInt(randInt8(rng));
    s.emit({ ...base, opcode: [0x6b], imm: { value: v, size: 1 } }, `imul ${regName(dst, w)}, ${rmText(src, w)}, ${immText(v, w)}`, FX_MUL);
  } else {
    const size = w === 16 ? 2 : 4;
    const v = BigInt.asIntN(size * 8, randImm(rng, size * 8));
    s.emit({ ...base, opcode: [0x69], imm: { value: v, size } }, `imul ${regName(dst, w)}, ${rmText(src, w)}, ${immText(v, w)}`, FX_MUL);
  }
}

/** Set-up: a 32-bit `mov r32, imm32` (B8+r), or REX.W C7 /0 for a sign-extended value. */
function setReg(s: Seq, reg: number, value: number, signExtend64: boolean): void {
  const v = BigInt(value);
  if (signExtend64) {
    s.emit({ w: true, opcode: [0xc7], reg: 0, rm: { reg }, imm: { value: v, size: 4 } }, `mov ${regName(reg, 64)}, ${immText(v, 64)}`, FX_NONE);
  } else {
    s.emit({ opcode: [0xb8], plus: reg, imm: { value: v, size: 4 } }, `mov ${regName(reg, 32)}, ${immText(v, 32)}`, FX_NONE);
  }
}

/**
 * BT BTS BTR BTC with a register (0F A3/AB/B3/BB) or imm8 (0F BA /4../7) bit offset, on a
 * register or memory operand. A register bit offset on a memory operand addresses a bit
 * string and can reach far away: it is set just before (possibly negative) so that every byte
 * the access may touch (the operand-size unit containing the bit, or 4 bytes, SDM BT) lies in
 * the buffer.
 */
function genBt(s: Seq): void {
  const rng = s.rng;
  const k = rng.int(4);
  const name = ["bt", "bts", "btr", "btc"][k] as string;
  const write = k !== 0;
  const w = s.width([16, 32, 64]);
  const base: Enc = { prefixes: opsz(w), w: w === 64, opcode: [], rex: s.optRex() };
  if (rng.chance(0.5)) {
    const dst = s.rm(w, write, undefined);
    const v = BigInt(rng.chance(0.5) ? rng.int(w) : rng.int(256));
    s.emit({ ...base, opcode: [0x0f, 0xba], reg: 4 + k, rm: dst, imm: { value: v, size: 1 } }, `${name} ${rmText(dst, w)}, ${immText(v, 8)}`, FX_BT);
    return;
  }
  let dst: RM;
  let off: number;
  if (rng.chance(0.5)) {
    off = s.reg(w, false, undefined);
    dst = { reg: s.reg(w, write, undefined) };
  } else {
    off = s.reg(w, true, undefined);
    const disp = rng.int(249);
    const byteAddr = rng.range(8, 247);
    const bitOffset = (byteAddr - disp) * 8 + rng.int(8);
    setReg(s, off, bitOffset, w === 64 && bitOffset < 0);
    dst = { mem: { base: 3, disp, disp32: rng.chance(0.1) } };
  }
  s.emit({ ...base, opcode: [0x0f, [0xa3, 0xab, 0xb3, 0xbb][k] as number], reg: off, rm: dst }, `${name} ${rmText(dst, w)}, ${regName(off, w)}`, FX_BT);
}

/**
 * BSF BSR (0F BC/BD), TZCNT LZCNT POPCNT (F3 0F BC/BD/B8, only where the host has them).
 * BSF/BSR with a zero source leave the destination "undefined" (SDM); AMD documents it as
 * unchanged, and Intel parts keep it too, but some clear the upper half of a 32-bit destination
 * (Linux arch/x86/include/asm/bitops.h quotes an Intel architect; the Xeon this was written on
 * keeps all 64 bits). So a 32-bit BSF/BSR destination is first written with `mov r32, imm32`
 * (upper half zero), which makes every behaviour agree: the interpreter must leave the
 * destination unchanged. Zero sources are produced on purpose
 * now and then (`xor r32, r32` on the source).
 */
function genBitScan(s: Seq): void {
  const rng = s.rng;
  const kinds: number[] = [0, 1];
  if (s.features.bmi1) kinds.push(2);
  if (s.features.lzcnt) kinds.push(3);
  if (s.features.popcnt) kinds.push(4);
  const kind = rng.pick(kinds);
  const [name, prefix, op, fx] = [
    ["bsf", [], 0xbc, FX_BSF],
    ["bsr", [], 0xbd, FX_BSF],
    ["tzcnt", [0xf3], 0xbc, FX_TZCNT],
    ["lzcnt", [0xf3], 0xbd, FX_TZCNT],
    ["popcnt", [0xf3], 0xb8, FX_POPCNT],
  ][kind] as [string, number[], number, Fx];
  const w = s.width([16, 32, 64]);
  const dst = s.reg(w, true, undefined);
  let src: RM | undefined;
  if (rng.chance(0.15)) {
    let z = s.reg(32, true, undefined);
    while (z === dst) z = s.reg(32, true, undefined);
    s.emit({ opcode: [0x31], reg: z, rm: { reg: z } }, `xor ${regName(z, 32)}, ${regName(z, 32)}`, FX_LOGIC);
    src = { reg: z };
  }
  if (kind <= 1 && w === 32) {
    const v = BigInt(rng.u32());
    s.emit({ opcode: [0xb8], plus: dst, imm: { value: v, size: 4 } }, `mov ${regName(dst, 32)}, ${immText(v, 32)}`, FX_NONE);
  }
  src ??= s.rm(w, false, undefined);
  s.emit({ prefixes: [...opsz(w), ...prefix], w: w === 64, opcode: [0x0f, op], reg: dst, rm: src, rex: s.optRex() }, `${name} ${regName(dst, w)}, ${rmText(src, w)}`, fx);
}

/** CMOVcc r, r/m (0F 40+cc); the condition's flags are made defined first. */
function genCmov(s: Seq): void {
  const rng = s.rng;
  const cc = rng.int(16);
  s.ensure(CC_FLAGS[cc] as number);
  const w = s.width([16, 32, 64]);
  const dst = s.reg(w, true, undefined);
  const src = s.rm(w, false, undefined);
  s.emit({ prefixes: opsz(w), w: w === 64, opcode: [0x0f, 0x40 + cc], reg: dst, rm: src, rex: s.optRex() }, `cmov${CC_NAMES[cc]} ${regName(dst, w)}, ${rmText(src, w)}`, FX_NONE);
}

/** SETcc r/m8 (0F 90+cc /0). */
function genSetcc(s: Seq): void {
  const rng = s.rng;
  const cc = rng.int(16);
  s.ensure(CC_FLAGS[cc] as number);
  const m8 = s.mode8(8);
  const dst = s.rm(8, true, m8);
  s.emit({ opcode: [0x0f, 0x90 + cc], reg: 0, rm: dst, rmIs8: true, rex: s.optRex() }, `set${CC_NAMES[cc]} ${rmText(dst, 8)}`, FX_NONE);
}

/** LEA r16/32/64 with any base/index (not RSP), scale and disp8/disp32. */
function genLea(s: Seq): void {
  const rng = s.rng;
  const w = s.width([16, 32, 64]);
  const dst = s.reg(w, true, undefined);
  const mem: Mem = { base: s.reg(64, false, undefined), disp: 0 };
  if (rng.chance(0.6)) {
    mem.index = s.reg(64, false, undefined);
    mem.scale = rng.pick([1, 2, 4, 8] as const);
  }
  const d = rng.int(4);
  mem.disp = d === 0 ? 0 : d === 1 ? randInt8(rng) : (rng.u32() | 0);
  mem.disp32 = rng.chance(0.1);
  s.emit({ prefixes: opsz(w), w: w === 64, opcode: [0x8d], reg: dst, rm: { mem }, rex: s.optRex() }, `lea ${regName(dst, w)}, ${memText(mem, 0)}`, FX_NONE);
}

/** XCHG r/m, r (86/87) and XCHG r, rAX (90+r). */
function genXchg(s: Seq): void {
  const rng = s.rng;
  const w = s.width();
  if (w !== 8 && rng.chance(0.3)) {
    const r = rng.pick(W_ALL.filter((x) => x !== 0));
    s.emit({ prefixes: opsz(w), w: w === 64, opcode: [0x90], plus: r, rex: s.optRex() }, `xchg ${regName(r, w)}, ${regName(0, w)}`, FX_NONE);
    return;
  }
  const m8 = s.mode8(w);
  const is8 = w === 8;
  const src = s.reg(w, true, m8);
  const dst = s.rm(w, true, m8);
  s.emit({ prefixes: opsz(w), w: w === 64, opcode: [is8 ? 0x86 : 0x87], reg: src, regIs8: is8, rm: dst, rmIs8: is8, rex: s.optRex() }, `xchg ${rmText(dst, w)}, ${regName(src, w)}`, FX_NONE);
}

/** XADD r/m, r (0F C0/C1) and CMPXCHG r/m, r (0F B0/B1). */
function genXaddCmpxchg(s: Seq): void {
  const rng = s.rng;
  const xadd = rng.chance(0.4);
  const w = s.width();
  const m8 = s.mode8(w);
  const is8 = w === 8;
  const src = s.reg(w, xadd, m8);
  const dst = s.rm(w, true, m8);
  const op = xadd ? (is8 ? 0xc0 : 0xc1) : is8 ? 0xb0 : 0xb1;
  s.emit({ prefixes: opsz(w), w: w === 64, opcode: [0x0f, op], reg: src, regIs8: is8, rm: dst, rmIs8: is8, rex: s.optRex() }, `${xadd ? "xadd" : "cmpxchg"} ${rmText(dst, w)}, ${regName(src, w)}`, FX_ARITH);
}

/** MOV r/m,r  r,r/m  r,imm (B0+r/B8+r, incl. 64-bit imm64)  r/m,imm (C6/C7). */
function genMov(s: Seq): void {
  const rng = s.rng;
  const w = s.width();
  const m8 = s.mode8(w);
  const is8 = w === 8;
  const base: Enc = { prefixes: opsz(w), w: w === 64, opcode: [], rex: s.optRex() };
  switch (rng.int(4)) {
    case 0: {
      const src = s.reg(w, false, m8);
      const dst = s.rm(w, true, m8);
      s.emit({ ...base, opcode: [is8 ? 0x88 : 0x89], reg: src, regIs8: is8, rm: dst, rmIs8: is8 }, `mov ${rmText(dst, w)}, ${regName(src, w)}`, FX_NONE);
      return;
    }
    case 1: {
      const dst = s.reg(w, true, m8);
      const src = s.rm(w, false, m8);
      s.emit({ ...base, opcode: [is8 ? 0x8a : 0x8b], reg: dst, regIs8: is8, rm: src, rmIs8: is8 }, `mov ${regName(dst, w)}, ${rmText(src, w)}`, FX_NONE);
      return;
    }
    case 2: {
      const dst = s.reg(w, true, m8);
      const size = w === 64 ? 8 : w / 8;
      const v = w === 64 ? randValue(rng) : randImm(rng, w);
      s.emit({ ...base, opcode: [is8 ? 0xb0 : 0xb8], plus: dst, plusIs8: is8, imm: { value: v, size: size as 1 | 2 | 4 | 8 } }, `mov ${regName(dst, w)}, ${immText(v, w)}`, FX_NONE);
      return;
    }
    default: {
      const dst = s.rm(w, true, m8);
      const size = is8 ? 1 : w === 16 ? 2 : 4;
      const v = BigInt.asIntN(size * 8, randImm(rng, size * 8));
      s.emit({ ...base, opcode: [is8 ? 0xc6 : 0xc7], reg: 0, rm: dst, rmIs8: is8, imm: { value: v, size } }, `mov ${rmText(dst, w)}, ${immText(v, w)}`, FX_NONE);
    }
  }
}

/** MOVZX/MOVSX r, r/m8 (0F B6/BE), r32/64, r/m16 (0F B7/BF), MOVSXD r64, r/m32 (REX.W 63). */
function genMovx(s: Seq): void {
  const rng = s.rng;
  const form = rng.int(5);
  if (form === 4) {
    const dst = s.reg(64, true, undefined);
    const src = s.rm(32, false, undefined);
    s.emit({ w: true, opcode: [0x63], reg: dst, rm: src }, `movsxd ${regName(dst, 64)}, ${rmText(src, 32)}`, FX_NONE);
    return;
  }
  const signed = (form & 1) === 1;
  const name = signed ? "movsx" : "movzx";
  if (form < 2) {
    const w = s.width([16, 32, 64]);
    const m8: Mode8 = w === 64 ? "rex" : s.mode8(8);
    const dst = s.reg(w, true, m8);
    const src = s.rm(8, false, m8);
    s.emit({ prefixes: opsz(w), w: w === 64, opcode: [0x0f, signed ? 0xbe : 0xb6], reg: dst, rm: src, rmIs8: true, rex: s.optRex() }, `${name} ${regName(dst, w)}, ${rmText(src, 8)}`, FX_NONE);
  } else {
    const w = s.width([32, 64]);
    const dst = s.reg(w, true, undefined);
    const src = s.rm(16, false, undefined);
    s.emit({ w: w === 64, opcode: [0x0f, signed ? 0xbf : 0xb7], reg: dst, rm: src, rex: s.optRex() }, `${name} ${regName(dst, w)}, ${rmText(src, 16)}`, FX_NONE);
  }
}

/** CBW CWDE CDQE (98) and CWD CDQ CQO (99). */
function genConvert(s: Seq): void {
  const rng = s.rng;
  const w = s.width([16, 32, 64]);
  const second = rng.chance(0.5);
  const names = second ? { 16: "cwd", 32: "cdq", 64: "cqo" } : { 16: "cbw", 32: "cwde", 64: "cdqe" };
  s.emit({ prefixes: opsz(w), w: w === 64, opcode: [second ? 0x99 : 0x98] }, names[w as 16 | 32 | 64], FX_NONE);
}

/** BSWAP r32/r64 (0F C8+r); the 16-bit form is undefined and not generated. */
function genBswap(s: Seq): void {
  const w = s.width([32, 64]);
  const r = s.reg(w, true, undefined);
  s.emit({ w: w === 64, opcode: [0x0f, 0xc8], plus: r, rex: s.optRex() }, `bswap ${regName(r, w)}`, FX_NONE);
}

/** LAR LSL and VERR VERW: "ZF is cleared ... the destination operand is not modified" (SDM LAR, LSL, VERR/VERW). */
const FX_SEGCHECK: Fx = { def: ZF };
/**
 * Selectors no descriptor table holds on either side: null (0-3), past any GDT limit (index
 * 8191; Linux's GDT has 16 entries, the interpreter's 3), or in an LDT, which neither side has
 * loaded (Linux gives a process none). The host's descriptors differ from the interpreter's, so
 * only these answers (ZF = 0, nothing written) can be compared; fidelity.test.ts checks the rest.
 */
const ABSENT_SELECTORS = [0x0000, 0x0001, 0x0003, 0x0004, 0x0007, 0x000c, 0xfff8, 0xfffb, 0xfffc, 0xffff];

/** LAR r, r/m16 (0F 02), LSL r, r/m16 (0F 03), VERR r/m16 (0F 00 /4), VERW r/m16 (0F 00 /5). */
function genSegCheck(s: Seq): void {
  const rng = s.rng;
  const sel = rng.pick(ABSENT_SELECTORS);
  const src = s.reg(32, true, undefined);
  setReg(s, src, sel, false);
  const kind = rng.int(4);
  if (kind >= 2) {
    const name = kind === 2 ? "verr" : "verw";
    s.emit({ opcode: [0x0f, 0x00], reg: kind === 2 ? 4 : 5, rm: { reg: src }, rex: s.optRex() }, `${name} ${regName(src, 32)}`, FX_SEGCHECK);
    return;
  }
  const w = s.width([16, 32, 64]);
  let dst = s.reg(w, true, undefined);
  while (dst === src) dst = s.reg(w, true, undefined);
  const name = kind === 0 ? "lar" : "lsl";
  s.emit({ prefixes: opsz(w), w: w === 64, opcode: [0x0f, kind === 0 ? 0x02 : 0x03], reg: dst, rm: { reg: src }, rex: s.optRex() }, `${name} ${regName(dst, w)}, ${regName(src, w)}`, FX_SEGCHECK);
}

/** CLC STC CMC CLD STD, LAHF SAHF. */
function genFlagOp(s: Seq): void {
  const rng = s.rng;
  const k = rng.int(s.features.lahf ? 7 : 5);
  switch (k) {
    case 0:
      s.emit({ opcode: [0xf8] }, "clc", { def: CF });
      return;
    case 1:
      s.emit({ opcode: [0xf9] }, "stc", { def: CF });
      return;
    case 2:
      // CMC: CF = !CF; defined exactly when it was (SDM CMC).
      s.emit({ opcode: [0xf5] }, "cmc", FX_NONE);
      return;
    case 3:
    case 4: {
      const std = k === 4;
      s.df = std ? 1 : 0;
      s.emit({ opcode: [std ? 0xfd : 0xfc] }, std ? "std" : "cld", FX_NONE);
      return;
    }
    case 5:
      // LAHF: AH := SF:ZF:0:AF:0:PF:1:CF (SDM LAHF), so those five must be defined.
      s.ensure(SF | ZF | AF | PF | CF);
      s.emit({ opcode: [0x9f] }, "lahf", FX_NONE);
      return;
    default:
      s.emit({ opcode: [0x9e] }, "sahf", FX_SAHF);
  }
}

const STRING_OPS = [
  // name, opcode (byte form), uses RSI, uses RDI, compares
  ["movs", 0xa4, true, true, false],
  ["stos", 0xaa, false, true, false],
  ["lods", 0xac, true, false, false],
  ["cmps", 0xa6, true, true, true],
  ["scas", 0xae, false, true, true],
] as const;

/**
 * MOVS STOS LODS CMPS SCAS in B/W/D/Q sizes, without prefix or with REP (MOVS STOS LODS) or
 * REPE/REPNE (CMPS SCAS). Set-up just before: optional CLD/STD, `lea rsi/rdi, [rbx + off]`
 * with offsets chosen so that all RCX iterations stay in the buffer in the current direction,
 * `mov ecx, n` with n in 0..8. CMPS/SCAS define all six flags when at least one iteration runs
 * (with REP and RCX = 0 nothing happens and no flag changes).
 */
function genString(s: Seq): void {
  const rng = s.rng;
  const [op, opcode, usesSi, usesDi, compares] = rng.pick(STRING_OPS);
  const size = rng.pick([1, 2, 4, 8] as const);
  const rep = rng.int(3); // 0 none, 1 REP/REPE, 2 REPNE (compares) or REP
  const prefix = rep === 0 ? [] : rep === 2 && compares ? [0xf2] : [0xf3];
  const n = rep === 0 ? 1 : rng.int(9);
  if (rng.chance(0.4)) {
    const std = rng.chance(0.5);
    s.df = std ? 1 : 0;
    s.emit({ opcode: [std ? 0xfd : 0xfc] }, std ? "std" : "cld", FX_NONE);
  }
  const start = (): number => {
    if (n === 0) return rng.int(SCRATCH_SIZE - size + 1);
    return s.df === 0 ? rng.int(SCRATCH_SIZE - n * size + 1) : rng.range((n - 1) * size, SCRATCH_SIZE - size);
  };
  const lea = (reg: number): void => {
    const mem: Mem = { base: 3, disp: start(), disp32: rng.chance(0.1) };
    s.emit({ w: true, opcode: [0x8d], reg, rm: { mem } }, `lea ${regName(reg, 64)}, ${memText(mem, 0)}`, FX_NONE);
  };
  if (usesSi) lea(6);
  if (usesDi) lea(7);
  if (rep !== 0) setReg(s, 1, n, false);
  const suffix = { 1: "b", 2: "w", 4: "d", 8: "q" }[size];
  const prefixText = rep === 0 ? "" : prefix[0] === 0xf2 ? "repne " : compares ? "repe " : "rep ";
  const fx = compares && n > 0 ? FX_ARITH : FX_NONE;
  s.emit({ prefixes: [...prefix, ...opsz((size * 8) as Width)], w: size === 8, opcode: [size === 1 ? opcode : opcode + 1], rex: s.optRex() }, `${prefixText}${op}${suffix}`, fx);
}

const GENERATORS: ReadonlyArray<readonly [number, (s: Seq) => void]> = [
  [14, genAlu],
  [3, genTest],
  [5, genUnary],
  [10, genShift],
  [4, genShld],
  [7, genMulDiv],
  [4, genImul],
  [6, genBt],
  [5, genBitScan],
  [4, genCmov],
  [3, genSetcc],
  [3, genLea],
  [3, genXchg],
  [4, genXaddCmpxchg],
  [4, genMov],
  [3, genMovx],
  [2, genConvert],
  [2, genBswap],
  [4, genFlagOp],
  [8, genString],
  [2, genSegCheck],
];
const TOTAL_WEIGHT = GENERATORS.reduce((a, [w]) => a + w, 0);

function pickGenerator(rng: Rng): (s: Seq) => void {
  let r = rng.int(TOTAL_WEIGHT);
  for (const [w, g] of GENERATORS) {
    if (r < w) return g;
    r -= w;
  }
  throw new Error("unreachable");
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

/** The longest code a case may have (the harness's code page leaves room for its exit jump). */
export const MAX_CODE = 1024;

/**
 * Generates case `index` of `seed`: 1..8 operations, each one instruction plus the set-up
 * instructions it needs (so a case has 1..8 "tested" instructions and up to ~30 in all).
 */
export function generateCase(seed: number, index: number, options: GenerateOptions = {}): TestCase {
  const rng = new Rng(seed, index);
  const features = options.features ?? hostFeatures();
  const scratchBase = options.scratchBase ?? SCRATCH_BASE;
  const gprs: bigint[] = [];
  for (let i = 0; i < 16; i++) gprs.push(i === 3 ? scratchBase : i === 4 ? INIT_RSP : randValue(rng));
  let rflags = 0;
  for (const [bit] of FLAG_NAMES) if (bit !== DF && rng.chance(0.5)) rflags |= bit;
  if (rng.chance(0.3)) rflags |= DF;
  const memory = new Uint8Array(SCRATCH_SIZE);
  for (let i = 0; i < SCRATCH_SIZE; i += 4) {
    const v = rng.u32();
    memory[i] = v & 0xff;
    memory[i + 1] = (v >>> 8) & 0xff;
    memory[i + 2] = (v >>> 16) & 0xff;
    memory[i + 3] = v >>> 24;
  }
  if (rng.chance(0.3)) memory.fill(0, rng.int(SCRATCH_SIZE), rng.int(SCRATCH_SIZE + 1));
  if (rng.chance(0.3)) {
    // equal runs, so that REPE CMPS goes on for a while
    const len = rng.range(8, 64);
    const from = rng.int(SCRATCH_SIZE - len);
    memory.copyWithin(rng.int(SCRATCH_SIZE - len), from, from + len);
  }

  const s = new Seq(rng, features, rflags & DF ? 1 : 0);
  const ops = rng.range(1, 8);
  for (let i = 0; i < ops; i++) pickGenerator(rng)(s);
  if (s.bytes.length > MAX_CODE) throw new Error(`case ${seed}/${index}: code too long`);
  return {
    seed,
    index,
    scratchBase,
    code: Uint8Array.from(s.bytes),
    asm: s.asm,
    offsets: s.offsets,
    flagsDefinedAfter: s.after,
    flagsDefined: s.defined,
    init: { gprs, rflags, memory },
  };
}

/** Cases 0..count-1 of `seed`. */
export function generateCases(seed: number, count: number, options: GenerateOptions = {}): TestCase[] {
  const out: TestCase[] = [];
  for (let i = 0; i < count; i++) out.push(generateCase(seed, i, options));
  return out;
}

/** RFLAGS bits defined just before the instruction at code offset `offset` (for faults). */
export function flagsDefinedBefore(c: TestCase, offset: number): number {
  const k = c.offsets.indexOf(offset);
  if (k < 0) return c.flagsDefined;
  return k === 0 ? COMPARED_FLAGS : (c.flagsDefinedAfter[k - 1] as number);
}

export function hex64(v: bigint): string {
  return `0x${BigInt.asUintN(64, v).toString(16).padStart(16, "0")}`;
}

/** A readable listing of a case: seed/index, instructions with offsets and bytes, initial state. */
export function describeCase(c: TestCase): string {
  const lines = [`case seed=${c.seed} index=${c.index} (reproduce: generateCase(${c.seed}, ${c.index}))`];
  c.asm.forEach((text, i) => {
    const start = c.offsets[i] as number;
    const end = (c.offsets[i + 1] ?? c.code.length) as number;
    const bytes = Array.from(c.code.subarray(start, end), (b) => b.toString(16).padStart(2, "0")).join(" ");
    lines.push(`  ${start.toString().padStart(4)}: ${text.padEnd(40)} ; ${bytes}`);
  });
  const regs = c.init.gprs.map((v, i) => `${(GPR_NAMES[i] as string).padStart(3)}=${hex64(v)}`);
  for (let i = 0; i < 16; i += 4) lines.push(`  ${regs.slice(i, i + 4).join(" ")}`);
  const defined = FLAG_NAMES.filter(([bit]) => c.flagsDefined & bit).map(([, name]) => name);
  lines.push(`  initial flags: ${flagsText(c.init.rflags)}; defined at the end: ${defined.join(" ") || "none"}`);
  return lines.join("\n");
}

export type GprName = (typeof GPR_NAMES)[number];

export interface ManualCase {
  /** [readable text, bytes] per instruction. */
  instructions: ReadonlyArray<readonly [string, readonly number[]]>;
  /** GPR values (default 0; RBX defaults to the scratch base and RSP to INIT_RSP). */
  gprs?: Partial<Record<GprName, bigint>>;
  rflags?: number;
  memory?: Uint8Array;
  /** RFLAGS bits defined after each instruction (default: all compared bits). */
  flagsDefinedAfter?: number[];
  scratchBase?: bigint;
}

/** A hand-written case (for tests of the oracle itself and for reproducing bugs by hand). */
export function makeCase(m: ManualCase): TestCase {
  const scratchBase = m.scratchBase ?? SCRATCH_BASE;
  const gprs = GPR_NAMES.map((name, i) => BigInt.asUintN(64, m.gprs?.[name] ?? (i === 3 ? scratchBase : i === 4 ? INIT_RSP : 0n)));
  const bytes: number[] = [];
  const offsets: number[] = [];
  for (const [, b] of m.instructions) {
    offsets.push(bytes.length);
    bytes.push(...b);
  }
  const after = m.flagsDefinedAfter ?? m.instructions.map(() => COMPARED_FLAGS);
  return {
    seed: -1,
    index: -1,
    scratchBase,
    code: Uint8Array.from(bytes),
    asm: m.instructions.map(([text]) => text),
    offsets,
    flagsDefinedAfter: after,
    flagsDefined: after[after.length - 1] ?? COMPARED_FLAGS,
    init: { gprs, rflags: m.rflags ?? 0, memory: m.memory ?? new Uint8Array(SCRATCH_SIZE) },
  };
}
