/**
 * Differential test against the host CPU: random instruction sequences (ALU, flags, shifts,
 * multiply/divide, bit scans, string operations) run natively by a C harness built here with gcc
 * and in the interpreter; all 16 GPRs, the defined RFLAGS bits and the scratch memory must agree.
 * VTLAB_DIFF_SEED and VTLAB_DIFF_COUNT override the seed (default 1) and count (default 100,000);
 * every failure message names its seed and index, and `generateCase(seed, index)` rebuilds it.
 */
import { describe, expect, it } from "vitest";
import { MachineMemory, PortIoBus } from "@vtlab/arch";
import { CR0_PE, CR0_PG, CR0_WP, CR4_PAE, Cpu, EFER_LMA, EFER_LME, EFER_NXE, Seg } from "@vtlab/cpu-vmx";
import {
  COMPARED_FLAGS,
  SCRATCH_BASE,
  SCRATCH_SIZE,
  buildHarness,
  compareResults,
  describeCase,
  generateCase,
  isNativeHost,
  runNative,
  type ExecResult,
  type Outcome,
  type TestCase,
} from "./native/index.js";

const SEED = Number(process.env.VTLAB_DIFF_SEED ?? 1);
const COUNT = Number(process.env.VTLAB_DIFF_COUNT ?? 100_000);
const CODE = 0x20_0000;
const HANDLERS = 0x30_0000;
const IDT = 0x5000;
const TSS = 0x7000;
const IST_STACK = 0x9_0000;
const SCRATCH = Number(SCRATCH_BASE);

/** One reusable 64-bit machine: identity paging over 1 GiB, an IDT whose every gate (IST 1) lands on a HLT. */
function diffMachine(): { cpu: Cpu; memory: MachineMemory } {
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
    memory.write32(IDT + v * 16 + 4, (target & 0xffff0000) | 0x8e00 | 1); // present, DPL 0, interrupt gate, IST 1
    memory.write32(IDT + v * 16 + 8, 0);
    memory.write8(target, 0xf4); // hlt
  }
  memory.write64(TSS + 0x24, IST_STACK, 0);
  cpu.gdtrBase = 0x1000;
  cpu.gdtrLimit = 0x17;
  cpu.idtrBase = IDT;
  cpu.idtrLimit = 32 * 16 - 1;
  cpu.tr.base = TSS;
  cpu.tr.limit = 0x67;
  cpu.cr0 = CR0_PE | CR0_PG | CR0_WP | 0x10;
  cpu.cr4 = CR4_PAE;
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

const OUTCOMES: Record<number, Outcome> = { 0: "#DE", 6: "#UD" };

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
    // The exception frame on the IST stack: RIP, CS, RFLAGS, RSP, SS (no error code for #DE/#UD).
    const sp = cpu.regAddr(4);
    faultOffset = (memory.read32(sp) as number) - CODE;
    flags = memory.read32(sp + 16) as number;
    const rspLo = memory.read32(sp + 24) as number;
    const rspHi = memory.read32(sp + 28) as number;
    cpu.lo[4] = rspLo;
    cpu.hi[4] = rspHi;
  }
  const gprs: bigint[] = [];
  for (let k = 0; k < 16; k++) gprs.push((BigInt(cpu.hi[k]! >>> 0) << 32n) | BigInt(cpu.lo[k]! >>> 0));
  const mem = new Uint8Array(SCRATCH_SIZE);
  memory.readBytes(SCRATCH, mem);
  return { outcome, gprs, rflags: flags, memory: mem, ...(faultOffset !== undefined ? { faultOffset } : {}) };
}

describe.each([
  { path: "interpreted", compile: false, jit: false },
  { path: "compiled blocks calling handlers (compiled on first use)", compile: true, jit: false },
  { path: "blocks compiled to specialised code (src/jit/, compiled on first use)", compile: true, jit: true },
])("differential test against the host CPU, $path", ({ compile, jit }) => {
  // Long: it yields to the event loop between batches, so the vitest worker stays responsive on a
  // loaded machine (a worker blocked for a minute fails the run with "Timeout calling onTaskUpdate").
  it(`agrees with the host on ${COUNT} random sequences (seed ${SEED})`, { timeout: 600_000 }, async () => {
    expect(isNativeHost(), "the differential test needs an x86-64 Linux host to run the native side").toBe(true);
    const build = buildHarness();
    expect(build.harness, `native harness could not be built: ${build.reason ?? ""}`).toBeDefined();
    const m = diffMachine();
    m.cpu.compileBlocks = compile;
    m.cpu.jit = jit;
    m.cpu.blockThreshold = 1;
    const failures: string[] = [];
    const batch = 5_000;
    for (let start = 0; start < COUNT && failures.length < 10; start += batch) {
      await new Promise((resolve) => setImmediate(resolve));
      const cases = Array.from({ length: Math.min(batch, COUNT - start) }, (_, k) => generateCase(SEED, start + k));
      const native = runNative(cases, { harness: build.harness! });
      for (let k = 0; k < cases.length && failures.length < 10; k++) {
        const c = cases[k]!;
        const diff = compareResults(runInterpreter(m, c), native[k]!, c);
        if (diff !== undefined) failures.push(`seed ${c.seed} index ${c.index}\n${describeCase(c)}\n${diff}`);
      }
    }
    expect(failures, failures.join("\n\n")).toEqual([]);
    // Every case ran through the path under test.
    if (compile) expect(m.cpu.counters.compiledBlocks).toBeGreaterThanOrEqual(COUNT);
    else expect(m.cpu.counters.compiledBlocks).toBe(0);
  });
});
