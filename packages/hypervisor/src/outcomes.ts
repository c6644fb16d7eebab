/**
 * Exit outcomes shared by the exit handlers. Handlers return these frozen values instead of
 * allocating a fresh object on every exit (the outcome is read once by the dispatcher and never
 * kept or changed).
 */
import type { ExitOutcome } from "@vtlab/cpu-vmx";

/** Handled: resume the guest. */
export const RESUME: ExitOutcome = Object.freeze({ kind: "resume" });

/** The crash reason for a failed VM entry: "VM entry failed: " once, whether or not cpu-vmx's message already says it. */
export function vmEntryFailure(fail: object): string {
  const text = "message" in fail && typeof fail.message === "string" ? fail.message : JSON.stringify(fail);
  return text.startsWith("VM entry failed") ? text : `VM entry failed: ${text}`;
}
