/**
 * The `vtlab` command in a child process (`node --import tsx src/bin.ts`, sources through the
 * `@vtlab/source` condition, no build needed), awaited without blocking: for tests that boot and
 * run whole machines for tens of seconds. Run in the test's own worker (`main(...)`), such a
 * command holds the worker's event loop for its whole length, and on a loaded machine vitest then
 * fails the run (`[vitest-worker]: Timeout calling "onTaskUpdate"` after 60 s without an answer).
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";

const demoDir = fileURLToPath(new URL("..", import.meta.url));
const bin = fileURLToPath(new URL("../src/bin.ts", import.meta.url));

export interface ProcessResult {
  readonly status: number;
  readonly out: string;
  readonly err: string;
}

export function vtlabProcess(...argv: string[]): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ["--conditions=@vtlab/source", "--import", "tsx", bin, ...argv], { cwd: demoDir, maxBuffer: 512 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error !== null && typeof error.code !== "number") {
        reject(error);
        return;
      }
      resolve({ status: error === null ? 0 : (error.code as number), out: stdout, err: stderr });
    });
  });
}

/** `runTour(options)` in a child process (test/tour-child.ts): its result, as JSON comes back. */
export function tourProcess<T>(options: object): Promise<T> {
  const child = fileURLToPath(new URL("./tour-child.ts", import.meta.url));
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ["--conditions=@vtlab/source", "--import", "tsx", child, JSON.stringify(options)], { cwd: demoDir, maxBuffer: 512 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`tour child failed (${error.message}): ${stderr.slice(0, 2000)}`));
      else resolve(JSON.parse(stdout) as T);
    });
  });
}
