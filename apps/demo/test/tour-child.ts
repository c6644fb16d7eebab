/**
 * Run by tour.test.ts in a child process (`tourProcess` in vtlab-process.ts): `runTour` with the
 * options given as JSON in argv[2], the result printed as JSON on stdout (as `vtlab demo --json`
 * prints it), so that the test's worker waits without blocking while the machines run. With
 * `workers: N` the tour runs on N worker threads (`runTourParallel`); `brokenKernel: true` gives
 * it a kernel image that cannot be loaded, and the error that ended it is printed instead.
 */
import { readReferenceKernel } from "../src/run.js";
import { runTour, type TourOptions } from "../src/tour.js";
import { runTourParallel } from "../src/tour-parallel.js";

const options = JSON.parse(process.argv[2] ?? "{}") as TourOptions & { workers?: number; brokenKernel?: boolean };
const kernel = options.brokenKernel === true ? new Uint8Array(64) : readReferenceKernel();
const progress: string[] = [];
if (options.workers === undefined) process.stdout.write(JSON.stringify(runTour(options)));
else {
  const order: number[] = [];
  runTourParallel({ ...options, kernel, onScenario: (_s, i) => order.push(i), onProgress: (l) => progress.push(l) }).then(
    (r) => process.stdout.write(JSON.stringify({ ...r, order, progress })),
    (e: unknown) => process.stdout.write(JSON.stringify({ error: e instanceof Error ? { name: e.name, message: e.message } : String(e), progress })),
  );
}
