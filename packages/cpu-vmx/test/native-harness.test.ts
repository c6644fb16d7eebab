/**
 * Tests of the host-CPU oracle itself (generator, encoder, native harness, comparison), not of
 * the interpreter: the interpreter's differential test imports ./native and relies on these.
 */
import { Decoder, DecoderOptions, MemorySize, Mnemonic, OpKind, Register, type Instruction } from "iced-x86";
import { describe, expect, it } from "vitest";

import {
  AF,
  CF,
  COMPARED_FLAGS,
  DF,
  OF,
  PF,
  SCRATCH_BASE,
  SCRATCH_SIZE,
  SF,
  ZF,
  buildHarness,
  compareResults,
  generateCase,
  generateCases,
  hostFeatures,
  isNativeHost,
  makeCase,
  runNative,
  type ExecResult,
  type HostFeatures,
  type TestCase,
} from "./native";

const ALL_FEATURES: HostFeatures = { bmi1: true, lzcnt: true, popcnt: true, lahf: true };

/**
 * The native harness, or undefined (after saying so) on a host that cannot run x86-64 code.
 * On Linux x86-64 a missing gcc or a failing build is a test failure, not a skip.
 */
function harnessOrReport(): boolean {
  if (!isNativeHost()) {
    console.warn(`native oracle NOT RUN: host is ${process.platform}/${process.arch}, not linux/x64`);
    return false;
  }
  const built = buildHarness();
  expect(built.reason, `the native harness must build on Linux x86-64 (gcc is required): ${built.reason}`).toBeUndefined();
  return true;
}

describe("generator", () => {
  it("is deterministic: same seed and index, same case", () => {
    const a = generateCases(42, 300, { features: ALL_FEATURES });
    const b = generateCases(42, 300, { features: ALL_FEATURES });
    expect(b).toEqual(a);
    // a single case reproduces without the ones before it
    expect(generateCase(42, 137, { features: ALL_FEATURES })).toEqual(a[137]);
    const other = generateCases(43, 300, { features: ALL_FEATURES });
    const same = a.filter((c, i) => Buffer.from(c.code).equals(Buffer.from(other[i]?.code ?? []))).length;
    expect(same).toBeLessThan(10);
  });

  it("keeps the conventions: RBX is the buffer, RSP fixed, 1..8 operations, flags masks consistent", () => {
    for (const c of generateCases(7, 2000)) {
      expect(c.init.gprs[3]).toBe(SCRATCH_BASE);
      expect(c.init.memory.length).toBe(SCRATCH_SIZE);
      expect(c.asm.length).toBe(c.offsets.length);
      expect(c.flagsDefinedAfter.length).toBe(c.asm.length);
      expect(c.flagsDefined).toBe(c.flagsDefinedAfter[c.asm.length - 1]);
      for (const m of c.flagsDefinedAfter) expect(m & DF).toBe(DF);
      expect(c.init.rflags & ~COMPARED_FLAGS).toBe(0);
      for (const line of c.asm) expect(line).not.toMatch(/\b(rsp|esp|sp|spl)\b/);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Encoder vs iced-x86
// ---------------------------------------------------------------------------------------------

function icedReg(r: Register): string {
  const name = (Register[r] as string).toLowerCase();
  const m = /^r(\d+)l$/.exec(name);
  return m ? `r${m[1]}b` : name;
}

function icedMemSize(size: MemorySize): string {
  const name = MemorySize[size] as string;
  const m = /(\d+)$/.exec(name);
  if (!m || name === "Unknown") return "";
  return { 8: "byte ", 16: "word ", 32: "dword ", 64: "qword " }[Number(m[1])] ?? `?${name} `;
}

const IMM_BITS: Partial<Record<OpKind, number>> = {
  [OpKind.Immediate8]: 8,
  [OpKind.Immediate16]: 16,
  [OpKind.Immediate32]: 32,
  [OpKind.Immediate64]: 64,
  [OpKind.Immediate8to16]: 16,
  [OpKind.Immediate8to32]: 32,
  [OpKind.Immediate8to64]: 64,
  [OpKind.Immediate32to64]: 64,
};

/** iced's decoding in the generator's canonical text form. */
function icedText(ins: Instruction): string {
  const mnemonic = (Mnemonic[ins.mnemonic] as string).toLowerCase();
  if (ins.isStringInstruction) {
    const compares = /^(cmps|scas)/.test(mnemonic);
    const prefix = ins.hasRepnePrefix ? "repne " : ins.hasRepePrefix ? (compares ? "repe " : "rep ") : "";
    return prefix + mnemonic;
  }
  const ops: string[] = [];
  for (let i = 0; i < ins.opCount; i++) {
    const kind = ins.opKind(i);
    if (kind === OpKind.Register) {
      ops.push(icedReg(ins.opRegister(i)));
    } else if (kind === OpKind.Memory) {
      let s = icedReg(ins.memoryBase);
      if (ins.memoryIndex !== Register.None) s += `+${icedReg(ins.memoryIndex)}*${ins.memoryIndexScale}`;
      const d = ins.memoryDisplacement;
      if (d > 0n) s += `+0x${d.toString(16)}`;
      else if (d < 0n) s += `-0x${(-d).toString(16)}`;
      ops.push(`${icedMemSize(ins.memorySize)}[${s}]`);
    } else {
      const bits = IMM_BITS[kind];
      if (bits === undefined) return `${mnemonic} <operand kind ${OpKind[kind]}>`;
      ops.push(`0x${BigInt.asUintN(bits, ins.immediate(i)).toString(16)}`);
    }
  }
  return ops.length ? `${mnemonic} ${ops.join(", ")}` : mnemonic;
}

describe("encoder", () => {
  it("produces bytes that iced-x86 decodes to the intended instruction (>= 20,000 instructions)", () => {
    let checked = 0;
    const mismatches: string[] = [];
    const seen = new Set<string>();
    for (let index = 0; checked < 20_000; index++) {
      const c = generateCase(2024, index, { features: ALL_FEATURES });
      const decoder = new Decoder(64, c.code, DecoderOptions.None);
      let k = 0;
      while (decoder.canDecode) {
        const ins = decoder.decode();
        const text = icedText(ins);
        const offset = c.offsets[k];
        const end = c.offsets[k + 1] ?? c.code.length;
        const expected = c.asm[k];
        if (ins.isInvalid || text !== expected || offset === undefined || ins.length !== end - offset) {
          mismatches.push(`case ${c.index} #${k}: generated "${expected}" (${offset === undefined ? "-" : end - offset} bytes), iced "${text}" (${ins.length} bytes)`);
        }
        seen.add(text.replace(/^(rep|repe|repne) /, "").split(" ")[0] as string);
        ins.free();
        k++;
        checked++;
      }
      decoder.free();
      if (k !== c.asm.length) mismatches.push(`case ${c.index}: ${k} instructions decoded, ${c.asm.length} generated`);
      if (mismatches.length > 20) break;
    }
    expect(mismatches.slice(0, 20)).toEqual([]);
    // every instruction family of the brief shows up
    const wanted = [
      "add", "adc", "sub", "sbb", "and", "or", "xor", "cmp", "test", "inc", "dec", "neg", "not",
      "shl", "shr", "sar", "rol", "ror", "rcl", "rcr", "shld", "shrd", "mul", "imul", "div", "idiv",
      "bt", "bts", "btr", "btc", "bsf", "bsr", "tzcnt", "lzcnt", "popcnt", "cmove", "setne", "lea",
      "xchg", "xadd", "cmpxchg", "mov", "movzx", "movsx", "movsxd", "cbw", "cwde", "cdqe", "cwd",
      "cdq", "cqo", "bswap", "movsb", "movsq", "stosw", "lodsd", "cmpsb", "scasq", "clc", "stc",
      "cmc", "cld", "std", "lahf", "sahf",
    ];
    expect(wanted.filter((m) => !seen.has(m))).toEqual([]);
  });

  it("covers AH..BH, SPL-free REX byte registers, 0x66 and REX.W forms", () => {
    const text = generateCases(99, 3000, { features: ALL_FEATURES })
      .flatMap((c) => c.asm)
      .join("\n");
    for (const r of ["ah", "ch", "dh", "bh", "bpl", "sil", "dil", "r8b", "r15b", "ax", "r9w", "r10d", "r11"]) {
      expect(text, r).toMatch(new RegExp(`\\b${r}\\b`));
    }
    expect(text).toMatch(/\[rbx\+rsi\*[1248]/);
    expect(text).not.toMatch(/\bspl\b/);
  });
});

// ---------------------------------------------------------------------------------------------
// Native harness, hand-checked
// ---------------------------------------------------------------------------------------------

function seqMemory(): Uint8Array {
  return Uint8Array.from({ length: SCRATCH_SIZE }, (_, i) => i);
}

describe("native harness", () => {
  it("reports the host's optional instruction support", () => {
    const f = hostFeatures();
    console.log(`host features: bmi1(tzcnt)=${f.bmi1} abm(lzcnt)=${f.lzcnt} popcnt=${f.popcnt} lahf_lm=${f.lahf}`);
    if (isNativeHost()) expect(buildHarness().reason, "gcc must be installed on Linux x86-64").toBeUndefined();
  });

  it("gives hand-checked results", () => {
    if (!harnessOrReport()) return;
    const B = SCRATCH_BASE;
    const cases: Array<[TestCase, (r: ExecResult) => void]> = [
      [
        makeCase({ instructions: [["add eax, ecx", [0x01, 0xc8]]], gprs: { rax: 0xffffffff7fffffffn, rcx: 1n } }),
        (r) => {
          expect(r.gprs[0]).toBe(0x80000000n);
          expect(r.rflags & COMPARED_FLAGS).toBe(PF | AF | SF | OF);
        },
      ],
      [
        makeCase({ instructions: [["sub al, 0x1", [0x2c, 0x01]]], gprs: { rax: 0x12345600n }, rflags: ZF }),
        (r) => {
          expect(r.gprs[0]).toBe(0x123456ffn);
          expect(r.rflags & COMPARED_FLAGS).toBe(CF | PF | AF | SF);
        },
      ],
      [
        makeCase({ instructions: [["div ecx", [0xf7, 0xf1]]], gprs: { rax: 7n, rcx: 0n } }),
        (r) => {
          expect(r.outcome).toBe("#DE");
          expect(r.faultOffset).toBe(0);
          expect(r.gprs[0]).toBe(7n);
        },
      ],
      [
        makeCase({ instructions: [["inc eax", [0xff, 0xc0]], ["div ecx", [0xf7, 0xf1]]], gprs: { rax: 0xffff00000000000fn } }),
        (r) => {
          expect(r.outcome).toBe("#DE");
          expect(r.faultOffset).toBe(2);
          expect(r.gprs[0]).toBe(0x10n); // the INC before the fault took effect (and zero-extended)
        },
      ],
      [
        makeCase({ instructions: [["idiv ecx", [0xf7, 0xf9]]], gprs: { rax: 0x80000000n, rdx: 0xffffffffn, rcx: 0xffffffffn } }),
        (r) => expect(r.outcome).toBe("#DE"),
      ],
      [
        makeCase({ instructions: [["rep movsb", [0xf3, 0xa4]]], gprs: { rsi: B, rdi: B + 128n, rcx: 16n }, memory: seqMemory() }),
        (r) => {
          expect(r.outcome).toBe("ok");
          expect(Array.from(r.memory.subarray(128, 144))).toEqual(Array.from({ length: 16 }, (_, i) => i));
          expect(r.memory[144]).toBe(144);
          expect([r.gprs[1], r.gprs[6], r.gprs[7]]).toEqual([0n, B + 16n, B + 144n]);
        },
      ],
      [
        makeCase({ instructions: [["std", [0xfd]], ["rep stosd", [0xf3, 0xab]]], gprs: { rax: 0xdeadbeefn, rdi: B + 252n, rcx: 4n } }),
        (r) => {
          expect(Array.from(r.memory.subarray(240, 256))).toEqual(Array(4).fill([0xef, 0xbe, 0xad, 0xde]).flat());
          expect(r.memory[239]).toBe(0);
          expect([r.gprs[1], r.gprs[7]]).toEqual([0n, B + 236n]);
          expect(r.rflags & DF).toBe(DF);
        },
      ],
      [
        (() => {
          const memory = new Uint8Array(SCRATCH_SIZE);
          for (let i = 0; i < 8; i++) memory[i] = memory[64 + i] = i + 1;
          memory[64 + 5] = 0x55;
          return makeCase({ instructions: [["repe cmpsb", [0xf3, 0xa6]]], gprs: { rsi: B, rdi: B + 64n, rcx: 10n }, memory });
        })(),
        (r) => {
          expect([r.gprs[1], r.gprs[6], r.gprs[7]]).toEqual([4n, B + 6n, B + 70n]);
          expect(r.rflags & ZF).toBe(0);
        },
      ],
      [
        makeCase({ instructions: [["bsf rax, rcx", [0x48, 0x0f, 0xbc, 0xc1]]], gprs: { rax: 0x1122334455667788n, rcx: 0n } }),
        (r) => {
          expect(r.rflags & ZF).toBe(ZF);
          expect(r.gprs[0]).toBe(0x1122334455667788n); // unchanged (AMD-documented, Intel practice)
        },
      ],
      [
        makeCase({ instructions: [["bsf rax, rcx", [0x48, 0x0f, 0xbc, 0xc1]]], gprs: { rax: 99n, rcx: 0x80n }, rflags: ZF }),
        (r) => {
          expect(r.gprs[0]).toBe(7n);
          expect(r.rflags & ZF).toBe(0);
        },
      ],
      [
        makeCase({ instructions: [["mov cl, 0x0", [0xb1, 0x00]], ["shl eax, cl", [0xd3, 0xe0]]], gprs: { rax: 5n }, rflags: CF | ZF | SF | OF }),
        (r) => expect(r.rflags & COMPARED_FLAGS).toBe(CF | ZF | SF | OF), // count 0: flags unaffected
      ],
      [
        makeCase({ instructions: [["imul rax, rcx", [0x48, 0x0f, 0xaf, 0xc1]]], gprs: { rax: 1n << 62n, rcx: 4n } }),
        (r) => {
          expect(r.gprs[0]).toBe(0n);
          expect(r.rflags & (CF | OF)).toBe(CF | OF);
        },
      ],
      [
        makeCase({ instructions: [["lahf", [0x9f]]], rflags: SF | ZF | AF | PF | CF | OF }),
        (r) => expect(r.gprs[0]).toBe(0xd700n),
      ],
      [
        makeCase({ instructions: [["stc", [0xf9]], ["adc eax, 0x0", [0x83, 0xd0, 0x00]]], gprs: { rax: 0xffffffffn } }),
        (r) => {
          expect(r.gprs[0]).toBe(0n);
          expect(r.rflags & COMPARED_FLAGS).toBe(CF | ZF | AF | PF);
        },
      ],
      [makeCase({ instructions: [["ud2", [0x0f, 0x0b]]] }), (r) => expect([r.outcome, r.faultOffset]).toEqual(["#UD", 0])],
      [
        makeCase({ instructions: [["nop", [0x90]], ["mov byte [rcx], al", [0x88, 0x01]]], gprs: { rcx: 0n } }),
        (r) => expect([r.outcome, r.faultOffset]).toEqual(["fault", 1]),
      ],
    ];
    const results = runNative(cases.map(([c]) => c));
    cases.forEach(([c, check], i) => {
      const r = results[i] as ExecResult;
      // RBX and RSP are never changed by any case
      expect(r.gprs[3], c.asm.join("; ")).toBe(SCRATCH_BASE);
      check(r);
    });
  });

  it("survives bad cases: faults between good cases do not disturb them", () => {
    if (!harnessOrReport()) return;
    const good = makeCase({ instructions: [["add eax, ecx", [0x01, 0xc8]]], gprs: { rax: 2n, rcx: 3n } });
    const bad = [
      makeCase({ instructions: [["ud2", [0x0f, 0x0b]]] }),
      makeCase({ instructions: [["mov qword [rcx], rax", [0x48, 0x89, 0x01]]], gprs: { rcx: 8n } }),
      makeCase({ instructions: [["div ecx", [0xf7, 0xf1]]] }),
      makeCase({ instructions: [["std", [0xfd]], ["mov byte [rbx+0x100], al", [0x88, 0x83, 0x00, 0x01, 0x00, 0x00]]] }), // guard page
      makeCase({ instructions: [["int3", [0xcc]]] }),
    ];
    const batch = bad.flatMap((b) => [b, good]);
    const results = runNative(batch);
    expect(results.map((r) => r.outcome)).toEqual(["#UD", "ok", "fault", "ok", "#DE", "ok", "fault", "ok", "fault", "ok"]);
    for (let i = 1; i < batch.length; i += 2) {
      expect(results[i]?.gprs[0]).toBe(5n);
      expect((results[i]?.rflags ?? 0) & DF).toBe(0); // DF from a faulted case does not leak
    }
  });
});

// ---------------------------------------------------------------------------------------------
// compareResults
// ---------------------------------------------------------------------------------------------

describe("compareResults", () => {
  it("ignores undefined flags and reports registers, defined flags, memory and outcome", () => {
    if (!harnessOrReport()) return;
    const c = makeCase({
      instructions: [["mul ecx", [0xf7, 0xe1]]],
      gprs: { rax: 3n, rcx: 5n },
      flagsDefinedAfter: [CF | OF | DF],
    });
    const [native] = runNative([c]) as [ExecResult];
    const clone = (): ExecResult => ({ ...native, gprs: [...native.gprs], memory: new Uint8Array(native.memory) });
    expect(compareResults(clone(), native, c)).toBeUndefined();
    const undefFlags = clone();
    undefFlags.rflags ^= SF | ZF | AF | PF;
    expect(compareResults(undefFlags, native, c)).toBeUndefined();
    const cf = clone();
    cf.rflags ^= CF;
    expect(compareResults(cf, native, c)).toMatch(/rflags: CF interpreter 1 native 0/);
    const reg = clone();
    reg.gprs[2] = 1n;
    expect(compareResults(reg, native, c)).toMatch(/rdx: interpreter 0x0000000000000001, native 0x0000000000000000/);
    const mem = clone();
    (mem.memory as Uint8Array)[17] = 0xaa;
    expect(compareResults(mem, native, c)).toMatch(/memory \(1 bytes differ.*\[17\] aa\/00/);
    const outcome = clone();
    outcome.outcome = "#DE";
    const report = compareResults(outcome, native, c) as string;
    expect(report).toMatch(/outcome: interpreter #DE, native ok/);
    expect(report).toContain("mul ecx");
  });

  it("uses the flags defined before the faulting instruction for a #DE", () => {
    if (!harnessOrReport()) return;
    const c = makeCase({
      instructions: [["and eax, ecx", [0x21, 0xc8]], ["div edx", [0xf7, 0xf2]]],
      gprs: { rax: 1n, rcx: 1n, rdx: 0n },
      flagsDefinedAfter: [CF | PF | ZF | SF | OF | DF, DF],
    });
    const [native] = runNative([c]) as [ExecResult];
    expect([native.outcome, native.faultOffset]).toEqual(["#DE", 2]);
    // AF is undefined after AND, ZF is defined: only the latter counts
    expect(compareResults({ ...native, rflags: native.rflags ^ AF }, native, c)).toBeUndefined();
    expect(compareResults({ ...native, rflags: native.rflags ^ ZF }, native, c)).toMatch(/ZF/);
  });
});

// ---------------------------------------------------------------------------------------------
// Throughput
// ---------------------------------------------------------------------------------------------

describe("throughput", () => {
  it("runs 100,000 generated cases natively", () => {
    if (!harnessOrReport()) return;
    const count = 100_000;
    let t = performance.now();
    const cases = generateCases(0x5eed, count);
    const genMs = performance.now() - t;
    t = performance.now();
    const results = runNative(cases);
    const nativeMs = performance.now() - t;
    const outcomes: Record<string, number> = {};
    let instructions = 0;
    results.forEach((r, i) => {
      outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
      instructions += (cases[i] as TestCase).asm.length;
    });
    console.log(
      `native oracle: ${count} cases (${instructions} instructions) generated in ${genMs.toFixed(0)} ms, ` +
        `run natively in ${nativeMs.toFixed(0)} ms; outcomes ${JSON.stringify(outcomes)}`,
    );
    // the generator never leaves the buffer nor emits an invalid instruction
    expect(outcomes.fault ?? 0).toBe(0);
    expect(outcomes["#UD"] ?? 0).toBe(0);
    expect(outcomes["#DE"] ?? 0).toBeGreaterThan(0);
    expect(outcomes["#DE"] ?? 0).toBeLessThan(count / 10);
    for (const r of results) {
      if (r.gprs[3] !== SCRATCH_BASE || r.gprs[4] !== 0x7ffc_0000_1000n) throw new Error("RBX or RSP changed");
    }
  });
});
