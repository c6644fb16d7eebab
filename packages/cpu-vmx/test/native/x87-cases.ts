/**
 * x87 cases for the host-CPU differential test: each case sets FCW (random masks, PC and RC),
 * loads 0-8 random 80-bit values (normals at every exponent, denormals, pseudo-denormals,
 * unnormals, pseudo-NaNs and pseudo-infinities, NaNs, infinities, zeros, integers and halves),
 * runs one x87 instruction (or a short sequence) on them and a memory operand, then stores the
 * whole FPU state with FNSAVE into the scratch buffer: FCW, FSW (flags, C0-C3, TOP, ES/B), the
 * full tag word, FOP, FDP, the last instruction's offset (FIP made relative to the code start),
 * and ST0-7. FCS and FDS (selectors that differ between the host process and the test machine)
 * are cleared. Some cases end with FWAIT instead, to see #MF (SIGFPE on the host) taken.
 */
import { SCRATCH_SIZE, makeCase, type TestCase } from "./generate";

type Asm = [string, number[]];

/** Scratch layout (offsets from RBX). */
export const X87_FCW = 0x00;
export const X87_REGS = 0x10; // 8 x 10 bytes
export const X87_MEM = 0x60; // the memory operand (up to 28 bytes: FNSTENV)
export const X87_SAVE = 0x80; // the FNSAVE image, 108 bytes

const le = (v: number, n: number) => Array.from({ length: n }, (_, k) => (v >>> (8 * k)) & 0xff);

/** xorshift32 */
export function rng(seed: number): () => number {
  let x = (seed * 0x9e37_79b9) | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

/** A random 80-bit value as 10 little-endian bytes, drawn from the interesting classes. */
export function randomF80(next: () => number): number[] {
  const r = next() % 100;
  const sign = next() & 1;
  let exp: number;
  let hi = next() >>> 0;
  let lo = next() >>> 0;
  if (r < 30) {
    exp = 0x3fff - 40 + (next() % 80); // ordinary magnitudes
    hi |= 0x8000_0000;
  } else if (r < 40) {
    exp = 1 + (next() % 0x7ffe); // anywhere
    hi |= 0x8000_0000;
  } else if (r < 48) {
    // short significands: exact in single/double, integers, halves
    exp = 0x3fff + (next() % 70) - 4;
    hi = (hi | 0x8000_0000) & (next() & 1 ? 0xff00_0000 : 0xffff_f800);
    lo = 0;
  } else if (r < 54) {
    exp = next() & 1 ? 1 + (next() % 70) : 0x7ffe - (next() % 70); // edges of the range
    hi |= 0x8000_0000;
  } else if (r < 60) {
    exp = 0; // denormal
    hi &= 0x7fff_ffff;
    if (next() & 1) hi >>>= next() % 32;
  } else if (r < 62) {
    exp = 0; // pseudo-denormal
    hi |= 0x8000_0000;
  } else if (r < 65) {
    exp = 1 + (next() % 0x7ffe); // unnormal
    hi &= 0x7fff_ffff;
  } else if (r < 70) {
    exp = 0;
    hi = 0;
    lo = 0; // zero
  } else if (r < 75) {
    exp = 0x7fff;
    hi = 0x8000_0000;
    lo = 0; // infinity
  } else if (r < 80) {
    exp = 0x7fff;
    hi = (hi | 0xc000_0000) >>> 0; // QNaN
  } else if (r < 84) {
    exp = 0x7fff;
    hi = ((hi & 0xbfff_ffff) | 0x8000_0000) >>> 0; // SNaN
    if ((hi & 0x3fff_ffff) === 0 && lo === 0) lo = 1;
  } else if (r < 86) {
    exp = 0x7fff;
    hi &= 0x7fff_ffff; // pseudo-NaN / pseudo-infinity
  } else if (r < 93) {
    // small integers (and their neighbours)
    const v = (next() % 2000) + 1;
    exp = 0x3fff + 31 - Math.clz32(v);
    hi = (v << Math.clz32(v)) >>> 0;
    lo = 0;
  } else {
    exp = 0x3fff + (next() % 3) - 1; // near 1
    hi = (0x8000_0000 | (next() & 0xff)) >>> 0;
    lo = next() & 1 ? 0 : lo;
  }
  return [...le(lo, 4), ...le(hi, 4), ...le((sign << 15) | exp, 2)];
}

/** A random FCW: masks mostly all set, PC 24/53/64 (and the reserved 01 now and then), any RC. */
function randomFcw(next: () => number): number {
  const masks = next() % 4 === 0 ? next() & 0x3f : 0x3f;
  const pcs = [0, 2, 3, 3, 3, 1];
  const pc = pcs[next() % pcs.length]!;
  const rcv = next() & 3;
  return masks | 0x40 | (pc << 8) | (rcv << 10);
}

/** One instruction under test: its bytes (memory operands at [rbx+0x60]) and how many values it wants loaded. */
interface Form {
  name: string;
  bytes: (next: () => number) => number[];
  /** Kind of memory operand bytes to put at X87_MEM. */
  mem?: "f32" | "f64" | "f80" | "i16" | "i32" | "i64" | "bcd" | "env";
  /** Bytes of the memory operand area cleared afterwards: [offset, size] (an environment's FIP, FCS and FDS). */
  clear?: [number, number][];
  /** FIP comes from memory (FLDENV): not made relative to the code start. */
  rawFip?: boolean;
}

const MEM = (opcode: number, reg: number): number[] => [opcode, 0x43 | (reg << 3), X87_MEM];
const sti = (next: () => number) => next() & 7;

function forms(): Form[] {
  const out: Form[] = [];
  const arith = ["fadd", "fmul", "fcom", "fcomp", "fsub", "fsubr", "fdiv", "fdivr"];
  arith.forEach((n, k) => {
    out.push({ name: `${n} st,st(i)`, bytes: (x) => [0xd8, 0xc0 + 8 * k + sti(x)] });
    out.push({ name: `${n} m32fp`, bytes: () => MEM(0xd8, k), mem: "f32" });
    out.push({ name: `${n} m64fp`, bytes: () => MEM(0xdc, k), mem: "f64" });
    out.push({ name: `fi${n.slice(1)} m32int`, bytes: () => MEM(0xda, k), mem: "i32" });
    out.push({ name: `fi${n.slice(1)} m16int`, bytes: () => MEM(0xde, k), mem: "i16" });
    if (k !== 2 && k !== 3) {
      out.push({ name: `dc ${k} st(i),st`, bytes: (x) => [0xdc, 0xc0 + 8 * k + sti(x)] });
      out.push({ name: `de ${k} st(i),st / pop`, bytes: (x) => [0xde, 0xc0 + 8 * k + sti(x)] });
    }
  });
  out.push({ name: "fcompp", bytes: () => [0xde, 0xd9] });
  out.push({ name: "fucompp", bytes: () => [0xda, 0xe9] });
  out.push({ name: "fucom st(i)", bytes: (x) => [0xdd, 0xe0 + sti(x)] });
  out.push({ name: "fucomp st(i)", bytes: (x) => [0xdd, 0xe8 + sti(x)] });
  for (const [n, b] of [["fcomi", [0xdb, 0xf0]], ["fucomi", [0xdb, 0xe8]], ["fcomip", [0xdf, 0xf0]], ["fucomip", [0xdf, 0xe8]]] as const) {
    out.push({ name: `${n} st,st(i)`, bytes: (x) => [b[0], b[1] + sti(x)] });
  }
  for (let k = 0; k < 8; k++) out.push({ name: `fcmov ${k}`, bytes: (x) => [k < 4 ? 0xda : 0xdb, 0xc0 + 8 * (k & 3) + sti(x)] });
  out.push({ name: "fld m32fp", bytes: () => MEM(0xd9, 0), mem: "f32" });
  out.push({ name: "fld m64fp", bytes: () => MEM(0xdd, 0), mem: "f64" });
  out.push({ name: "fld m80fp", bytes: () => MEM(0xdb, 5), mem: "f80" });
  out.push({ name: "fild m16", bytes: () => MEM(0xdf, 0), mem: "i16" });
  out.push({ name: "fild m32", bytes: () => MEM(0xdb, 0), mem: "i32" });
  out.push({ name: "fild m64", bytes: () => MEM(0xdf, 5), mem: "i64" });
  out.push({ name: "fst m32", bytes: () => MEM(0xd9, 2) });
  out.push({ name: "fstp m32", bytes: () => MEM(0xd9, 3) });
  out.push({ name: "fst m64", bytes: () => MEM(0xdd, 2) });
  out.push({ name: "fstp m64", bytes: () => MEM(0xdd, 3) });
  out.push({ name: "fstp m80", bytes: () => MEM(0xdb, 7) });
  out.push({ name: "fist m16", bytes: () => MEM(0xdf, 2) });
  out.push({ name: "fistp m16", bytes: () => MEM(0xdf, 3) });
  out.push({ name: "fist m32", bytes: () => MEM(0xdb, 2) });
  out.push({ name: "fistp m32", bytes: () => MEM(0xdb, 3) });
  out.push({ name: "fistp m64", bytes: () => MEM(0xdf, 7) });
  out.push({ name: "fisttp m16", bytes: () => MEM(0xdf, 1) });
  out.push({ name: "fisttp m32", bytes: () => MEM(0xdb, 1) });
  out.push({ name: "fisttp m64", bytes: () => MEM(0xdd, 1) });
  out.push({ name: "fbld", bytes: () => MEM(0xdf, 4), mem: "bcd" });
  out.push({ name: "fbstp", bytes: () => MEM(0xdf, 6) });
  out.push({ name: "fld st(i)", bytes: (x) => [0xd9, 0xc0 + sti(x)] });
  out.push({ name: "fxch st(i)", bytes: (x) => [0xd9, 0xc8 + sti(x)] });
  out.push({ name: "fst st(i)", bytes: (x) => [0xdd, 0xd0 + sti(x)] });
  out.push({ name: "fstp st(i)", bytes: (x) => [0xdd, 0xd8 + sti(x)] });
  out.push({ name: "ffree st(i)", bytes: (x) => [0xdd, 0xc0 + sti(x)] });
  const one: [string, number][] = [
    ["fnop", 0xd0], ["fchs", 0xe0], ["fabs", 0xe1], ["ftst", 0xe4], ["fxam", 0xe5],
    ["fld1", 0xe8], ["fldl2t", 0xe9], ["fldl2e", 0xea], ["fldpi", 0xeb], ["fldlg2", 0xec], ["fldln2", 0xed], ["fldz", 0xee],
    ["fxtract", 0xf4], ["fprem1", 0xf5], ["fdecstp", 0xf6], ["fincstp", 0xf7], ["fprem", 0xf8], ["fsqrt", 0xfa], ["frndint", 0xfc], ["fscale", 0xfd],
  ];
  for (const [n, b] of one) out.push({ name: n, bytes: () => [0xd9, b] });
  out.push({ name: "fnstsw ax", bytes: () => [0xdf, 0xe0] });
  const env32: [number, number][] = [[12, 4], [16, 2], [24, 2]];
  // FNSTENV, its FIP, FCS and FDS cleared, FLDENV of it
  out.push({ name: "fnstenv/fldenv", bytes: () => [0xd9, 0x73, X87_MEM, 0xc7, 0x43, X87_MEM + 12, 0, 0, 0, 0, 0x66, 0xc7, 0x43, X87_MEM + 16, 0, 0, 0x66, 0xc7, 0x43, X87_MEM + 24, 0, 0, 0xd9, 0x63, X87_MEM], rawFip: true });
  out.push({ name: "fnstenv (16-bit)", bytes: () => [0x66, 0xd9, 0x73, X87_MEM], clear: [[6, 2], [8, 2], [12, 2]] });
  out.push({ name: "fnstenv", bytes: () => [0xd9, 0x73, X87_MEM], clear: env32 });
  out.push({ name: "fldenv", bytes: () => [0xd9, 0x63, X87_MEM], mem: "env", rawFip: true });
  // FNSAVE, then a new FCW, FSW (no ES/B as stored), tag word, FIP and FOP written into the
  // image, FRSTOR of it (the state then seen by the FNSAVE at the end)
  const movw = (off: number, v: number) => [0x66, 0xc7, 0x83, ...le(X87_SAVE + off, 4), ...le(v, 2)];
  out.push({
    name: "fnsave/frstor",
    bytes: (x) => [
      0xdd, 0xb3, ...le(X87_SAVE, 4),
      ...movw(0, randomFcw(x)),
      ...movw(4, x() & 0x7f7f),
      ...movw(8, x() & 0xffff),
      0xc7, 0x83, ...le(X87_SAVE + 12, 4), ...le(x(), 4),
      ...movw(18, x() & 0x07ff),
      0xdd, 0xa3, ...le(X87_SAVE, 4),
      ...movw(16, 0), // the image's FCS and FDS (the host's selectors) cleared for the FWAIT cases
      ...movw(24, 0),
    ],
    rawFip: true,
  });
  // the 16-bit layout (94 bytes: 14-byte environment) saved and restored
  // (its FIP, the host's code address, cleared before the FRSTOR; FCS and FDS after it)
  out.push({ name: "fnsave/frstor (16-bit)", bytes: () => [0x66, 0xdd, 0xb3, ...le(X87_SAVE, 4), ...movw(6, 0), 0x66, 0xdd, 0xa3, ...le(X87_SAVE, 4), ...movw(8, 0), ...movw(12, 0)], rawFip: true });
  return out;
}

export const X87_FORMS = forms();

/** The transcendental instructions, compared with a tolerance (x87-differential test). */
export const X87_TRANSCENDENTAL: [string, number][] = [
  ["fsin", 0xfe], ["fcos", 0xff], ["fsincos", 0xfb], ["fptan", 0xf2], ["fpatan", 0xf3], ["f2xm1", 0xf0], ["fyl2x", 0xf1], ["fyl2xp1", 0xf9],
];

function memBytes(kind: Form["mem"], next: () => number): number[] {
  switch (kind) {
    case "f32": {
      const r = next() % 10;
      if (r < 2) return le([0x7f80_0000, 0x7fc0_0001, 0x7f80_0001, 0x0000_0001, 0x0040_0000, 0x8000_0000][next() % 6]! | (next() & 1 ? 0x8000_0000 : 0), 4);
      if (r < 4) return le((next() & 0x807f_ffff) >>> 0, 4); // denormal
      return le(next(), 4);
    }
    case "f64": {
      const r = next() % 10;
      if (r < 2) return [...le(next() & 1 ? 0 : 1, 4), ...le([0x7ff0_0000, 0x7ff8_0000, 0x7ff4_0000, 0x0000_0000][next() % 4]! | (next() & 1 ? 0x8000_0000 : 0), 4)];
      if (r < 4) return [...le(next(), 4), ...le(next() & 0x800f_ffff, 4)];
      return [...le(next(), 4), ...le((next() & 0x8000_0000) | ((0x3ff + (next() % 200) - 100) << 20) | (next() & 0xf_ffff), 4)];
    }
    case "f80":
      return randomF80(next);
    case "i16":
      return le(next() % 3 === 0 ? next() % 100 : next(), 2);
    case "i32":
      return le(next() % 3 === 0 ? next() % 1000 : next(), 4);
    case "i64":
      return [...le(next(), 4), ...le(next() % 3 === 0 ? 0 : next(), 4)];
    case "bcd": {
      const b: number[] = [];
      for (let k = 0; k < 9; k++) b.push(((next() % 10) << 4) | next() % 10);
      b.push(next() & 0x80);
      return b;
    }
    case "env": {
      // a plausible environment: FCW, FSW, FTW with reserved halves, FIP/FOP/FDP
      const fcw = randomFcw(next);
      const fsw = next() & 0x7f7f; // no B/ES as stored, any flags, TOP
      const ftw = next() & 0xffff;
      return [...le(fcw, 2), 0xff, 0xff, ...le(fsw, 2), 0xff, 0xff, ...le(ftw, 2), 0xff, 0xff, ...le(next(), 4), ...le(next() & 0x07ff_0000, 4), ...le(next(), 4), 0, 0, 0xff, 0xff];
    }
    default:
      return [];
  }
}

/** The FNSAVE tail: the image, FIP made relative to the code start, FCS and FDS cleared. */
function saveTail(code: Asm[], at: () => number, rawFip: boolean): void {
  code.push(["fnsave [rbx+0x80]", [0xdd, 0xb3, ...le(X87_SAVE, 4)]]);
  if (rawFip) {
    code.push(["mov word [rbx+0x90], 0", [0x66, 0xc7, 0x83, ...le(X87_SAVE + 16, 4), 0, 0]]);
    code.push(["mov word [rbx+0x98], 0", [0x66, 0xc7, 0x83, ...le(X87_SAVE + 24, 4), 0, 0]]);
    return;
  }
  // FIP - code start, without touching RFLAGS (FCOMI's result stays comparable): NOT and LEA.
  const leaEnd = at() + 7;
  code.push(["lea r11, [rip+start]", [0x4c, 0x8d, 0x1d, ...le(-leaEnd, 4)]]);
  code.push(["mov r10d, [rbx+0x8c]", [0x44, 0x8b, 0x93, ...le(X87_SAVE + 12, 4)]]);
  code.push(["not r11d", [0x41, 0xf7, 0xd3]]);
  code.push(["lea r10d, [r10+r11+1]", [0x47, 0x8d, 0x54, 0x1a, 0x01]]);
  code.push(["mov [rbx+0x8c], r10d", [0x44, 0x89, 0x93, ...le(X87_SAVE + 12, 4)]]);
  code.push(["mov word [rbx+0x90], 0", [0x66, 0xc7, 0x83, ...le(X87_SAVE + 16, 4), 0, 0]]);
  code.push(["mov word [rbx+0x98], 0", [0x66, 0xc7, 0x83, ...le(X87_SAVE + 24, 4), 0, 0]]);
  code.push(["mov r10d, 0", [0x41, 0xba, 0, 0, 0, 0]]);
  code.push(["mov r11d, 0", [0x41, 0xbb, 0, 0, 0, 0]]);
}

/**
 * Build one case: `form` (or a random one) on `depth` loaded values; `mf` ends the case with a
 * FWAIT after the instruction (then FNINIT), so a pending unmasked exception is taken as #MF.
 */
export function x87Case(seed: number, index: number, opts: { form?: Form; mf?: boolean; transcendental?: number; values?: number[][] } = {}): TestCase {
  const next = rng(seed * 1_000_003 + index);
  const memory = new Uint8Array(SCRATCH_SIZE);
  const fcw = opts.transcendental !== undefined ? (next() & 0xc00) | 0x37f : randomFcw(next);
  memory.set(le(fcw, 2), X87_FCW);
  const forms = X87_FORMS;
  const form = opts.form ?? forms[next() % forms.length]!;
  let depth = next() % 4 === 0 ? next() % 9 : 2 + (next() % 3);
  // FNINIT leaves the host's FIP as it was (AMD): a control instruction alone would show it
  if (depth === 0 && (form.name.startsWith("fnst") || form.name.startsWith("fldenv"))) depth = 1;
  for (let k = 0; k < 8; k++) memory.set(randomF80(next), X87_REGS + 10 * k);
  if (opts.values !== undefined) {
    // given operands: loaded in order, the last one ends in ST0
    opts.values.forEach((v, k) => memory.set(v, X87_REGS + 10 * k));
    depth = opts.values.length;
  }
  memory.set(memBytes(form.mem, next), X87_MEM);
  const code: Asm[] = [];
  const at = () => code.reduce((n, [, b]) => n + b.length, 0);
  // Empty registers keep their contents; the host's may be zeroed by the kernel's XRSTOR of
  // the init state at any time: start from zeros in all eight (FLDZ x 8, FNINIT).
  code.push(["fninit", [0xdb, 0xe3]]);
  for (let k = 0; k < 8; k++) code.push(["fldz", [0xd9, 0xee]]);
  code.push(["fninit", [0xdb, 0xe3]]);
  code.push(["fldcw [rbx]", [0xd9, 0x2b]]);
  for (let k = 0; k < depth; k++) code.push([`fld tbyte [rbx+${X87_REGS + 10 * k}]`, [0xdb, 0x6b, X87_REGS + 10 * k]]);
  if (next() % 8 === 0 && opts.values === undefined) code.push(["ffree st(1)", [0xdd, 0xc1]]);
  if (opts.transcendental !== undefined) code.push([X87_TRANSCENDENTAL[opts.transcendental]![0], [0xd9, X87_TRANSCENDENTAL[opts.transcendental]![1]]]);
  else code.push([form.name, form.bytes(next)]);
  for (const [off, size] of form.clear ?? []) {
    const d = X87_MEM + off;
    code.push([`mov ${size === 4 ? "dword" : "word"} [rbx+${d}], 0`, size === 4 ? [0xc7, 0x43, d, 0, 0, 0, 0] : [0x66, 0xc7, 0x43, d, 0, 0]]);
  }
  if (opts.mf) {
    code.push(["fwait", [0x9b]]);
    code.push(["fninit", [0xdb, 0xe3]]);
  } else saveTail(code, at, form.rawFip === true && opts.transcendental === undefined);
  return { ...makeCase({ instructions: code, memory, rflags: next() & 0x8d5 }), seed, index };
}
