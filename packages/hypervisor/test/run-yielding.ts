/**
 * Running a machine to its end without blocking the vitest worker: `runYielding` is `run` (of a
 * Hypervisor or a Toolstack) in chunks of scheduler slices, yielding to the event loop between
 * chunks, so that a test that boots a kernel and runs it for tens of seconds never holds the
 * worker for more than a fraction of a second (vitest fails a worker that does not answer its
 * RPC for 60 s: `[vitest-worker]: Timeout calling "onTaskUpdate"`, seen on a loaded machine).
 *
 * The chunks end between slices (`until`), where `run` keeps no state of its own: the slices, and
 * so the instruction counts, exits and console, are those of one uninterrupted call. The budget
 * (`maxInstructions`) is taken as instructions retired over all the chunks, a cap for tests that
 * run to "idle" rather than an exact budget.
 */
import type { RunOptions, RunResult } from "@vtlab/hypervisor";

interface Runnable {
  run(options?: RunOptions): RunResult;
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

export async function runYielding(host: Runnable, options: RunOptions = {}, slicesPerChunk = 50): Promise<RunResult> {
  let instructions = 0;
  for (;;) {
    let slices = 0;
    let userStop = false;
    const left = options.maxInstructions === undefined ? undefined : options.maxInstructions - instructions;
    const r = host.run({
      ...options,
      ...(left !== undefined ? { maxInstructions: left } : {}),
      until: () => {
        if (options.until?.() === true) return (userStop = true);
        return slices++ >= slicesPerChunk;
      },
    });
    instructions += r.instructions;
    if (r.reason !== "stopped" || userStop) return { reason: r.reason, instructions };
    await turn();
  }
}
