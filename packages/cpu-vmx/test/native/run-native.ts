/// <reference types="node" />
/**
 * Builds and runs the native harness (harness.c) on the host CPU. Node-only test code.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { MAX_CODE, SCRATCH_SIZE, type TestCase } from "./generate";

export type Outcome = "ok" | "#DE" | "#UD" | "fault";

/**
 * The state after a case ran: natively (runNative) or in the interpreter (same shape). For an
 * outcome other than "ok" the registers, flags and memory are those at the fault, i.e. before
 * the faulting instruction (or between two iterations of a REP string instruction).
 */
export interface ExecResult {
  outcome: Outcome;
  /** The 16 GPRs in encoding order, as u64. */
  gprs: bigint[];
  rflags: number;
  /** The scratch buffer (SCRATCH_SIZE bytes). */
  memory: Uint8Array;
  /** Code offset of the faulting instruction, when outcome is not "ok" (if known). */
  faultOffset?: number;
  /** MXCSR and XMM0-15 at the fault (natively: from the signal frame), when outcome is not "ok". */
  faultMxcsr?: number;
  faultXmm?: Uint8Array;
}

export interface NativeHarness {
  /** Path of the compiled harness executable. */
  path: string;
}

export type HarnessBuild = { harness: NativeHarness; reason?: undefined } | { harness: undefined; reason: string };

let cached: HarnessBuild | undefined;

/** True where the native oracle can exist at all: Linux on x86-64. */
export function isNativeHost(): boolean {
  return process.platform === "linux" && process.arch === "x64";
}

/**
 * Compiles harness.c with gcc into a temporary directory (once per process). Returns
 * `{ harness: undefined, reason }` when the host is not Linux x86-64, gcc is missing or the
 * compilation fails.
 */
export function buildHarness(): HarnessBuild {
  if (cached) return cached;
  cached = build();
  return cached;
}

function build(): HarnessBuild {
  if (!isNativeHost()) return { harness: undefined, reason: `host is ${process.platform}/${process.arch}, not linux/x64` };
  const version = spawnSync("gcc", ["--version"], { encoding: "utf8" });
  if (version.error || version.status !== 0) {
    return { harness: undefined, reason: `gcc not found (${version.error?.message ?? `exit ${version.status}`})` };
  }
  const dir = mkdtempSync(join(tmpdir(), "vtlab-native-"));
  const source = fileURLToPath(new URL("./harness.c", import.meta.url));
  const exe = join(dir, "harness");
  const cc = spawnSync("gcc", ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-o", exe, source], { encoding: "utf8" });
  if (cc.error || cc.status !== 0) {
    return { harness: undefined, reason: `gcc failed: ${cc.error?.message ?? ""}${cc.stderr}` };
  }
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  return { harness: { path: exe } };
}

const MAGIC = 0x434e5456;
const OUT_RECORD = 8 + 8 + 128 + SCRATCH_SIZE + 8 + 256;
const OUTCOMES: Outcome[] = ["ok", "#DE", "#UD", "fault"];

function serialize(cases: readonly TestCase[]): Buffer {
  let total = 24;
  for (const c of cases) total += 16 + 128 + SCRATCH_SIZE + c.code.length;
  const buf = Buffer.alloc(total);
  buf.writeUInt32LE(MAGIC, 0);
  buf.writeUInt32LE(1, 4);
  buf.writeUInt32LE(cases.length, 8);
  const base = cases[0]?.scratchBase;
  buf.writeBigUInt64LE(base ?? 0n, 16);
  let p = 24;
  for (const c of cases) {
    if (c.scratchBase !== base) throw new Error("runNative: all cases of one run must share the scratch base");
    if (c.code.length > MAX_CODE) throw new Error(`case ${c.seed}/${c.index}: code longer than ${MAX_CODE}`);
    buf.writeUInt32LE(c.code.length, p);
    buf.writeBigUInt64LE(BigInt(c.init.rflags), p + 8);
    for (let i = 0; i < 16; i++) buf.writeBigUInt64LE(BigInt.asUintN(64, c.init.gprs[i] ?? 0n), p + 16 + 8 * i);
    buf.set(c.init.memory.subarray(0, SCRATCH_SIZE), p + 144);
    buf.set(c.code, p + 144 + SCRATCH_SIZE);
    p += 144 + SCRATCH_SIZE + c.code.length;
  }
  return buf;
}

function parse(buf: Buffer, count: number): ExecResult[] {
  if (buf.length !== count * OUT_RECORD) throw new Error(`harness wrote ${buf.length} bytes, expected ${count * OUT_RECORD}`);
  const out: ExecResult[] = [];
  for (let n = 0; n < count; n++) {
    const p = n * OUT_RECORD;
    const outcome = OUTCOMES[buf.readUInt32LE(p)];
    if (outcome === undefined) throw new Error(`harness: bad outcome ${buf.readUInt32LE(p)}`);
    const fault = buf.readUInt32LE(p + 4);
    const gprs: bigint[] = [];
    for (let i = 0; i < 16; i++) gprs.push(buf.readBigUInt64LE(p + 16 + 8 * i));
    const result: ExecResult = {
      outcome,
      gprs,
      rflags: Number(buf.readBigUInt64LE(p + 8)),
      memory: new Uint8Array(buf.subarray(p + 144, p + 144 + SCRATCH_SIZE)),
    };
    if (fault !== 0xffffffff) result.faultOffset = fault;
    if (outcome !== "ok") {
      result.faultMxcsr = buf.readUInt32LE(p + 144 + SCRATCH_SIZE);
      result.faultXmm = new Uint8Array(buf.subarray(p + 152 + SCRATCH_SIZE, p + 152 + SCRATCH_SIZE + 256));
    }
    out.push(result);
  }
  return out;
}

export interface RunNativeOptions {
  harness?: NativeHarness;
  /** Kill the harness after this many milliseconds (default 120 s). */
  timeoutMs?: number;
}

/** Runs the cases on the host CPU. Throws if the harness cannot be built or fails. */
export function runNative(cases: readonly TestCase[], options: RunNativeOptions = {}): ExecResult[] {
  if (cases.length === 0) return [];
  let harness = options.harness;
  if (!harness) {
    const built = buildHarness();
    if (!built.harness) throw new Error(`native harness unavailable: ${built.reason}`);
    harness = built.harness;
  }
  const dir = mkdtempSync(join(tmpdir(), "vtlab-native-run-"));
  try {
    const input = join(dir, "cases.bin");
    const output = join(dir, "results.bin");
    writeFileSync(input, serialize(cases));
    const run = spawnSync(harness.path, [input, output], { encoding: "utf8", timeout: options.timeoutMs ?? 120_000 });
    if (run.error || run.status !== 0) {
      throw new Error(`native harness failed (${run.error?.message ?? `status ${run.status}, signal ${run.signal}`}): ${run.stderr}`);
    }
    return parse(readFileSync(output), cases.length);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
