/**
 * SSE/SSE2 against the host CPU: every form of the SSE decode table (test/native/sse-gen.ts)
 * with random operands, MXCSR values, register and memory forms (some misaligned: #GP on both
 * sides), run natively by the harness and in the interpreter (plain, compiled blocks, JIT). The
 * XMM registers and MXCSR are compared through the scratch buffer they are stored to.
 * VTLAB_SSE_CASES overrides the cases per form (default 60).
 */
import { describe, expect, it } from "vitest";
import { MachineMemory, PortIoBus } from "@vtlab/arch";
import { CR0_PE, CR0_PG, CR0_WP, CR4_OSFXSR, CR4_OSXMMEXCPT, CR4_PAE, Cpu, EFER_LMA, EFER_LME, EFER_NXE, Seg } from "@vtlab/cpu-vmx";
import { COMPARED_FLAGS, SCRATCH_BASE, SCRATCH_SIZE, buildHarness, compareResults, isNativeHost, makeCase, runNative, type ExecResult, type Outcome, type TestCase } from "./native/index.js";
import { rng, sseCase, sseForms } from "./native/sse-gen.js";

const PER_FORM = Number(process.env.VTLAB_SSE_CASES ?? 60);
const CODE = 0x20_0000;
const HANDLERS = 0x30_0000;
const IDT = 0x5000;
const TSS = 0x7000;
const IST_STACK = 0x9_0000;
const SCRATCH = Number(SCRATCH_BASE);

/** A 64-bit machine as the host runs its processes: identity paging, CR4.OSFXSR and OSXMMEXCPT, every IDT gate on a HLT. */
function sseMachine(): { cpu: Cpu; memory: MachineMemory } {
  const memory = new MachineMemory(64 * 1024 * 1024);
  const cpu = new Cpu({ memory, ports: new PortIoBus() });
  memory.write64(0x1000, 0, 0);
  memory.write64(0x1008, 0x0000ffff, 0x00af9a00);
  memory.write64(0x1010, 0x0000ffff, 0x00cf9200);
  memory.write64(0x2000, 0x3000 | 3, 0);
  memory.write64(0x3000, 0x4000 | 3, 0);
  for (let k = 0; k < 512; k++) memory.write64(0x4000 + k * 8, (k * 0x20_0000) | 0x83, 0);
  for (let v = 0; v < 32; v++) {
    const target = HANDLERS + v * 16;
    memory.write32(IDT + v * 16, (0x08 << 16) | (target & 0xffff));
    memory.write32(IDT + v * 16 + 4, (target & 0xffff0000) | 0x8e00 | 1);
    memory.write32(IDT + v * 16 + 8, 0);
    memory.write8(target, 0xf4);
  }
  memory.write64(TSS + 0x24, IST_STACK, 0);
  cpu.gdtrBase = 0x1000;
  cpu.gdtrLimit = 0x17;
  cpu.idtrBase = IDT;
  cpu.idtrLimit = 32 * 16 - 1;
  cpu.tr.base = TSS;
  cpu.tr.limit = 0x67;
  cpu.cr0 = CR0_PE | CR0_PG | CR0_WP | 0x10 | 0x20; // NE
  cpu.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
  cpu.cr3 = 0x2000;
  cpu.efer = EFER_LME | EFER_LMA | EFER_NXE;
  cpu.seg[Seg.CS]!.selector = 0x08;
  cpu.seg[Seg.CS]!.attr = 0xa09b;
  for (const s of [Seg.SS, Seg.DS, Seg.ES]) {
    cpu.seg[s]!.selector = 0x10;
    cpu.seg[s]!.attr = 0xc093;
  }
  cpu.updateMode();
  return { cpu, memory };
}

/** The host reports #XM as SIGFPE, which the harness records as "#DE". */
const OUTCOMES: Record<number, Outcome> = { 0: "#DE", 6: "#UD", 19: "#DE" };

function runInterpreter(m: { cpu: Cpu; memory: MachineMemory }, c: TestCase): ExecResult {
  const { cpu, memory } = m;
  const code = new Uint8Array(c.code.length + 1);
  code.set(c.code);
  code[c.code.length] = 0xf4;
  memory.writeBytes(CODE, code);
  memory.writeBytes(SCRATCH, c.init.memory);
  cpu.flushDecoded();
  for (let r = 0; r < 16; r++) {
    const v = c.init.gprs[r]!;
    cpu.lo[r] = Number(v & 0xffff_ffffn) | 0;
    cpu.hi[r] = Number(v >> 32n) | 0;
  }
  cpu.flagsOther = 0x2;
  cpu.setFlags(c.init.rflags | 2, COMPARED_FLAGS);
  cpu.cpl = 0;
  cpu.halted = false;
  cpu.rip = CODE;
  const r = cpu.run(100_000);
  let outcome: Outcome = "ok";
  let faultOffset: number | undefined;
  let flags = cpu.getFlags();
  if (r.kind !== "hlt") outcome = "fault";
  else if (cpu.rip !== CODE + c.code.length + 1) {
    const vector = (cpu.rip - 1 - HANDLERS) / 16;
    outcome = OUTCOMES[vector] ?? "fault";
    // The frame on the IST stack: [error code,] RIP, CS, RFLAGS, RSP, SS.
    let sp = cpu.regAddr(4);
    if (vector === 13 || vector === 14) sp += 8;
    faultOffset = (memory.read32(sp) as number) - CODE;
    flags = memory.read32(sp + 16) as number;
    cpu.lo[4] = memory.read32(sp + 24) as number;
    cpu.hi[4] = memory.read32(sp + 28) as number;
  }
  const gprs: bigint[] = [];
  for (let k = 0; k < 16; k++) gprs.push((BigInt(cpu.hi[k]! >>> 0) << 32n) | BigInt(cpu.lo[k]! >>> 0));
  const mem = new Uint8Array(SCRATCH_SIZE);
  memory.readBytes(SCRATCH, mem);
  return { outcome, gprs, rflags: flags, memory: mem, ...(faultOffset !== undefined ? { faultOffset } : {}) };
}

/** Native outcomes seen, by kind (so a test can show its faulting cases ran). */
const seen = new Map<string, number>();

function check(cases: TestCase[], modes: { compile: boolean; jit: boolean }[]): string[] {
  const build = buildHarness();
  expect(build.harness, `native harness could not be built: ${build.reason ?? ""}`).toBeDefined();
  const native = runNative(cases, { harness: build.harness! });
  for (const r of native) seen.set(r.outcome, (seen.get(r.outcome) ?? 0) + 1);
  const failures: string[] = [];
  for (const mode of modes) {
    const m = sseMachine();
    m.cpu.compileBlocks = mode.compile;
    m.cpu.jit = mode.jit;
    m.cpu.blockThreshold = 1;
    cases.forEach((c, k) => {
      if (failures.length >= 12) return;
      const diff = compareResults(runInterpreter(m, c), native[k]!, c);
      if (diff !== undefined) failures.push(`[compile ${mode.compile} jit ${mode.jit}] ${diff}`);
    });
  }
  return failures;
}

const MODES = [
  { compile: false, jit: false },
  { compile: true, jit: false },
  { compile: true, jit: true },
];

describe("SSE/SSE2 against the host CPU (every form of the SSE decode table)", () => {
  const forms = sseForms();
  it(`data movement and integer forms agree with the host (${PER_FORM} cases per form)`, { timeout: 300_000 }, async () => {
    expect(isNativeHost(), "the differential test needs an x86-64 Linux host to run the native side").toBe(true);
    const cases: TestCase[] = [];
    for (const f of forms) for (let n = 0; n < PER_FORM; n++) cases.push(sseCase(f, n));
    const failures: string[] = [];
    for (let start = 0; start < cases.length && failures.length < 12; start += 2000) {
      await new Promise((r) => setImmediate(r));
      failures.push(...check(cases.slice(start, start + 2000), MODES));
    }
    expect(failures.slice(0, 12), failures.slice(0, 12).join("\n\n")).toEqual([]);
    expect(forms.length).toBeGreaterThan(90);
    // Misaligned m128 operands ran: #GP on the host (SIGSEGV) and here.
    expect(seen.get("fault") ?? 0).toBeGreaterThan(20);
  });
});

const le = (v: number, n: number) => Array.from({ length: n }, (_, k) => (v >>> (8 * k)) & 0xff);

/**
 * CMPXCHG8B/16B (equal and unequal, aligned and not), CLFLUSH (in the buffer, at a
 * non-canonical address), the fences, PAUSE and PREFETCHh/PREFETCHW (at any address: never a fault).
 */
function miscCase(n: number): TestCase {
  const next = rng(0xc16b + n * 977);
  const memory = new Uint8Array(SCRATCH_SIZE);
  for (let k = 0; k < SCRATCH_SIZE; k++) memory[k] = next() & 0xff;
  const q = (k: number) => BigInt(memory[k]!) | (BigInt(memory[k + 1]!) << 8n) | (BigInt(memory[k + 2]!) << 16n) | (BigInt(memory[k + 3]!) << 24n);
  const q64 = (k: number) => q(k) | (q(k + 4) << 32n);
  const rand64 = () => (BigInt(next()) << 32n) | BigInt(next());
  const equal = next() % 2 === 0;
  const wide = next() % 2 === 0;
  const disp = 64 + (next() % 8 === 0 ? 8 : 0);
  const gprs = {
    rax: equal ? (wide ? q64(disp) : q64(disp) | (rand64() & 0xffffffff00000000n)) : rand64(),
    rdx: equal ? (wide ? q64(disp + 8) : (q64(disp) >> 32n) | (rand64() & 0xffffffff00000000n)) : rand64(),
    rcx: rand64(),
    rsi: [0n, 0x8000_0000_0000_0000n, 0xdead_0000_0000n, rand64()][next() % 4]!,
    rdi: next() % 2 === 0 ? 0x0123_4567_89ab_cdefn : SCRATCH_BASE + BigInt(next() % 256),
  };
  const code: [string, number[]][] = [
    [`${wide ? "cmpxchg16b" : "cmpxchg8b"} [rbx+${disp}]`, [...(next() % 2 === 0 ? [0xf0] : []), ...(wide ? [0x48] : []), 0x0f, 0xc7, 0x8b, ...le(disp, 4)]],
    ["lfence", [0x0f, 0xae, 0xe8]],
    ["mfence", [0x0f, 0xae, 0xf0]],
    ["sfence", [0x0f, 0xae, 0xf8]],
    ["pause", [0xf3, 0x90]],
    ["prefetchnta [rsi]", [0x0f, 0x18, 0x06]],
    ["prefetcht0 [rsi+rdi]", [0x0f, 0x18, 0x0c, 0x3e]],
    ["prefetcht1 [rdi]", [0x0f, 0x18, 0x17]],
    ["prefetcht2 [rsi]", [0x0f, 0x18, 0x1e]],
    ["prefetchw [rdi]", [0x0f, 0x0d, 0x0f]],
    ["clflush [rbx+7]", [0x0f, 0xae, 0x7b, 0x07]],
    [`clflush [rdi]`, [0x0f, 0xae, 0x3f]],
  ];
  return makeCase({ instructions: code, gprs, memory, rflags: next() & 0x8d5 });
}

describe("CMPXCHG8B/16B, CLFLUSH, fences, PAUSE, PREFETCH against the host CPU", () => {
  it("agree with the host (faults included: CMPXCHG16B misaligned, CLFLUSH non-canonical)", () => {
    expect(isNativeHost()).toBe(true);
    const cases = Array.from({ length: 400 }, (_, n) => miscCase(n));
    seen.clear();
    const failures = check(cases, MODES);
    expect(seen.get("fault") ?? 0).toBeGreaterThan(50);
    expect(seen.get("ok") ?? 0).toBeGreaterThan(50);
    expect(failures.slice(0, 12), failures.slice(0, 12).join("\n\n")).toEqual([]);
  });
});
