/**
 * Comparison of an interpreter result with the native one for the differential test.
 */
import {
  FLAG_NAMES,
  GPR_NAMES,
  SCRATCH_SIZE,
  describeCase,
  flagsDefinedBefore,
  hex64,
  type TestCase,
} from "./generate";
import type { ExecResult } from "./run-native";

/**
 * Compares `interp` with `native` for case `c`: the outcome (and the faulting instruction's
 * offset when both report one), all 16 GPRs, the RFLAGS bits defined at that point (after the
 * sequence, or before the faulting instruction) and the scratch buffer. Returns undefined when
 * they agree, else a readable report with the case listing.
 */
export function compareResults(interp: ExecResult, native: ExecResult, c: TestCase): string | undefined {
  const diffs: string[] = [];
  if (interp.outcome !== native.outcome) diffs.push(`outcome: interpreter ${interp.outcome}, native ${native.outcome}`);
  let mask = c.flagsDefined;
  if (native.outcome !== "ok" && native.faultOffset !== undefined) {
    mask = flagsDefinedBefore(c, native.faultOffset);
    if (interp.outcome === native.outcome && interp.faultOffset !== undefined && interp.faultOffset !== native.faultOffset) {
      diffs.push(`fault offset: interpreter ${interp.faultOffset}, native ${native.faultOffset}`);
    }
  }
  for (let i = 0; i < 16; i++) {
    const a = BigInt.asUintN(64, interp.gprs[i] ?? 0n);
    const b = BigInt.asUintN(64, native.gprs[i] ?? 0n);
    if (a !== b) diffs.push(`${GPR_NAMES[i]}: interpreter ${hex64(a)}, native ${hex64(b)}`);
  }
  const flagDiff = (interp.rflags ^ native.rflags) & mask;
  if (flagDiff) {
    const names = FLAG_NAMES.filter(([bit]) => flagDiff & bit).map(
      ([bit, name]) => `${name} interpreter ${interp.rflags & bit ? 1 : 0} native ${native.rflags & bit ? 1 : 0}`,
    );
    diffs.push(`rflags: ${names.join(", ")}`);
  }
  const bad: string[] = [];
  for (let i = 0; i < SCRATCH_SIZE; i++) {
    const a = interp.memory[i];
    const b = native.memory[i];
    if (a !== b) bad.push(`[${i}] ${fmtByte(a)}/${fmtByte(b)}`);
  }
  if (bad.length) {
    const shown = bad.slice(0, 16).join(" ");
    diffs.push(`memory (${bad.length} bytes differ, interpreter/native): ${shown}${bad.length > 16 ? " ..." : ""}`);
  }
  if (diffs.length === 0) return undefined;
  const where = native.faultOffset !== undefined ? ` at offset ${native.faultOffset}` : "";
  return `${describeCase(c)}\n  native outcome: ${native.outcome}${where}\n  differences:\n    ${diffs.join("\n    ")}`;
}

function fmtByte(b: number | undefined): string {
  return b === undefined ? "--" : b.toString(16).padStart(2, "0");
}
