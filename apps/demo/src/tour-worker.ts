/**
 * A worker thread of `runTourParallel` (tour-parallel.ts): it runs the tour jobs it is sent, one
 * at a time, with the reference kernel it was started with, and posts each job's progress lines
 * and result (or the error that ended it) back.
 */
import { parentPort, workerData, type MessagePort } from "node:worker_threads";
import { runTourJob, type TourJob } from "./tour-core.js";
import type { TourWorkerReply, TourWorkerRequest } from "./tour-parallel.js";

const data = workerData as { kernel: Uint8Array; maxInstructions?: number };
const port = parentPort;
if (port === null) throw new Error("vtlab: tour-worker.js runs as a worker thread of vtlab demo");
// Each job runs in a microtask of its message, not in the message callback itself: a throw in a
// callback Node makes from C++ (a message, a timer) builds an exception message each time (about
// 3-6 us here), one in a microtask does not (0.3-0.5 us), and the interpreter unwinds a faulting
// instruction with a throw (a shadow-paging #PF exit is one).
port.on("message", (m: TourWorkerRequest) => queueMicrotask(() => runJob(port, m)));

function runJob(port: MessagePort, m: TourWorkerRequest): void {
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
}
