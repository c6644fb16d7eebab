/**
 * Exit outcomes shared by the exit handlers. Handlers return these frozen values instead of
 * allocating a fresh object on every exit (the outcome is read once by the dispatcher and never
 * kept or changed).
 */
import type { ExitOutcome } from "@vtlab/cpu-vmx";

/** Handled: resume the guest. */
export const RESUME: ExitOutcome = Object.freeze({ kind: "resume" });
