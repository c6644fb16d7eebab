import { afterEach, beforeEach } from "vitest";

/**
 * Every package's tests run with this setup file (vitest.shared.ts). Vitest's worker reports
 * progress to the main process over RPC and fails the run with `[vitest-worker]: Timeout calling
 * "onTaskUpdate"` when no answer has been read within 60 s (birpc's default). Answers are read
 * only when the worker's event loop turns, and between two tests the runner only awaits promises
 * (microtasks), so a file of synchronous tests that each run for seconds (a machine booted and
 * run to its end) turns the loop only when the file ends: on a loaded machine their sum passes
 * 60 s. Turning the loop once before and after every test bounds each stretch by the longest
 * single test; tests that run longer than a few seconds yield inside (`await` between chunks).
 */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
beforeEach(turn);
afterEach(turn);
