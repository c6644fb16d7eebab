/**
 * A worker thread of `runTourParallel` (tour-parallel.ts): it runs the tour jobs it is sent, one
 * at a time, with the reference kernel it was started with, and posts each job's progress lines
 * and result (or the error that ended it) back.
 */
import { parentPort, workerData } from "node:worker_threads";
import { runTourJob, type TourJob } from "./tour-core.js";
import type { TourWorkerReply, TourWorkerRequest } from "./tour-parallel.js";

const data = workerData as { kernel: Uint8Array; maxInstructions?: number };
const port = parentPort;
if (port === null) throw new Error("vtlab: tour-worker.js runs as a worker thread of vtlab demo");
port.on("message", (m: TourWorkerRequest) => {
  const job: TourJob = m.job;
  let reply: TourWorkerReply;
  try {
    const result = runTourJob(data.kernel, job, {
      ...(data.maxInstructions !== undefined ? { maxInstructions: data.maxInstructions } : {}),
      onProgress: (line) => port.postMessage({ kind: "progress", id: m.id, line } satisfies TourWorkerReply),
    });
    reply = { kind: "done", id: m.id, result };
  } catch (e) {
    reply = { kind: "error", id: m.id, message: e instanceof Error ? (e.stack ?? e.message) : String(e) };
  }
  port.postMessage(reply);
});
