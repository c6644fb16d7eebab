/**
 * `vtlab demo` on several cores: the tour's jobs (tour-core.ts's planTour: each machine, the
 * netfront pair, each isolation run, every one in a host of its own) run on a pool of worker
 * threads, at most one job per worker at a time; each scenario is assembled and handed to
 * `onScenario` as soon as its jobs and those of the scenarios before it are done, so the output
 * keeps the tour's order and is the same as runTour's (wall times and MIPS aside, which are
 * measured). Progress lines come from the workers, prefixed with the machine's name. A job that
 * throws (or a worker that dies) ends the tour with an error naming the job's machines.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { planTour, tourJobLabel, tourResult, type TourJob, type TourJobResult, type TourOptions, type TourResult, type TourScenarioResult } from "./tour-core.js";

/** A job sent to a worker. */
export interface TourWorkerRequest {
  readonly id: number;
  readonly job: TourJob;
}

/** A worker's message: a progress line of a job, its result, or the error that ended it. */
export type TourWorkerReply =
  | { readonly kind: "progress"; readonly id: number; readonly line: string }
  | { readonly kind: "done"; readonly id: number; readonly result: TourJobResult }
  | { readonly kind: "error"; readonly id: number; readonly message: string };

/** A tour job that failed: the machines it ran, and why. */
export class TourJobError extends Error {
  constructor(
    readonly scenario: string,
    readonly machines: string,
    readonly reason: string,
  ) {
    super(`${scenario}: ${machines} failed: ${reason}`);
    this.name = "TourJobError";
  }
}

/** Worker threads for a tour of `jobs` jobs: one per core the process may use, at most one per job. */
export function tourWorkers(jobs: number): number {
  return Math.max(1, Math.min(jobs, availableParallelism()));
}

/**
 * A worker thread running tour-worker beside this module: tour-worker.js in dist; from the
 * sources (tests, through tsx) tour-worker.ts, loaded after registering tsx in the worker (a
 * worker's own `--import tsx` does not reach its entry module on Node 20).
 */
function startWorker(workerData: object): Worker {
  const self = import.meta.url;
  if (!self.endsWith(".ts")) return new Worker(new URL("./tour-worker.js", self), { workerData });
  const api = import.meta.resolve("tsx/esm/api");
  const entry = new URL("./tour-worker.ts", self).href;
  return new Worker(`import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); });`, { eval: true, workerData });
}

/**
 * Run the tour on `workers` worker threads (default tourWorkers). `options.onConsole` is not
 * called (the tour does not stream consoles; every report holds its machine's console).
 */
export async function runTourParallel(options: TourOptions & { readonly workers?: number }): Promise<TourResult> {
  const plans = planTour(options);
  const queue: { plan: number; index: number; job: TourJob }[] = plans.flatMap((p, plan) => p.jobs.map((job, index) => ({ plan, index, job })));
  const results = plans.map((p) => new Array<TourJobResult | undefined>(p.jobs.length));
  const left = plans.map((p) => p.jobs.length);
  const scenarios: TourScenarioResult[] = [];
  const announced = new Set<number>();
  const announce = (plan: number) => {
    if (announced.has(plan)) return;
    announced.add(plan);
    options.onProgress?.(`[vtlab] tour ${plan + 1}/${plans.length}: ${plans[plan]!.name}`);
  };
  // Scenarios in order, each as soon as it and those before it are complete.
  const flush = () => {
    while (scenarios.length < plans.length && left[scenarios.length] === 0) {
      const k = scenarios.length;
      announce(k);
      const s = plans[k]!.assemble(results[k] as TourJobResult[]);
      scenarios.push(s);
      options.onScenario?.(s, k);
    }
  };
  flush();
  if (queue.length === 0) return tourResult(scenarios);
  const count = Math.max(1, Math.min(options.workers ?? tourWorkers(queue.length), queue.length));
  const workers: Worker[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      let next = 0;
      let running = 0;
      let failed = false;
      const fail = (e: Error) => {
        if (failed) return;
        failed = true;
        reject(e);
      };
      const start = (w: Worker, busy: { id: number }) => {
        if (failed) return;
        if (next >= queue.length) {
          busy.id = -1;
          if (running === 0) resolve();
          return;
        }
        const id = next++;
        busy.id = id;
        running++;
        announce(queue[id]!.plan);
        w.postMessage({ id, job: queue[id]!.job } satisfies TourWorkerRequest);
      };
      for (let k = 0; k < count; k++) {
        const w = startWorker({ kernel: options.kernel, ...(options.maxInstructions !== undefined ? { maxInstructions: options.maxInstructions } : {}) });
        workers.push(w);
        const busy = { id: -1 };
        const label = (id: number) => {
          const q = queue[id]!;
          return { scenario: plans[q.plan]!.name, machines: tourJobLabel(q.job) };
        };
        w.on("message", (m: TourWorkerReply) => {
          const q = queue[m.id]!;
          if (m.kind === "progress") {
            const name = q.job.kind === "machine" ? q.job.job.name : q.job.kind;
            options.onProgress?.(m.line.replace(/^\[vtlab\] /, `[vtlab] ${name}: `));
            return;
          }
          if (m.kind === "error") {
            const l = label(m.id);
            fail(new TourJobError(l.scenario, l.machines, m.message));
            return;
          }
          running--;
          results[q.plan]![q.index] = m.result;
          left[q.plan]!--;
          try {
            flush();
          } catch (e) {
            fail(e as Error);
            return;
          }
          start(w, busy);
        });
        w.on("error", (e) => {
          const l = busy.id >= 0 ? label(busy.id) : { scenario: "tour", machines: "a worker thread" };
          fail(new TourJobError(l.scenario, l.machines, e.stack ?? e.message));
        });
        w.on("exit", (code) => {
          if (busy.id >= 0) {
            const l = label(busy.id);
            fail(new TourJobError(l.scenario, l.machines, `its worker thread exited (code ${code})`));
          }
        });
        start(w, busy);
      }
    });
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  return tourResult(scenarios);
}
