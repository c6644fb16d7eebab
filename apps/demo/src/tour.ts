/**
 * The tour on the Node side (`vtlab demo`): tour-core.ts (`@vtlab/demo/tour`, node-free) with the
 * reference kernel read from its file when the caller does not pass its bytes.
 */
import { readReferenceKernel } from "./run.js";
import { runTour as runTourOn, type TourOptions as TourCoreOptions, type TourResult } from "./tour-core.js";

export * from "./tour-core.js";

/** tour-core.ts's `TourOptions`, `kernel` optional (default: the reference kernel's file). */
export type TourOptions = Omit<TourCoreOptions, "kernel"> & { readonly kernel?: Uint8Array };

/** tour-core.ts's `runTour`, with the reference kernel read from its file unless given. */
export function runTour(options: TourOptions = {}): TourResult {
  return runTourOn({ ...options, kernel: options.kernel ?? readReferenceKernel() });
}
