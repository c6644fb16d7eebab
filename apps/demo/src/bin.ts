#!/usr/bin/env node
// The `vtlab` executable.
import { availableParallelism } from "node:os";
import { createInterface, type Interface } from "node:readline";
import { main } from "./cli.js";

let lines: Interface | undefined;
const status = main(process.argv.slice(2), {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  backlog: () => process.stdout.writableLength + process.stderr.writableLength,
  // Only `vtlab shell` reads it: the interface is made on first use, so other commands never touch stdin.
  get stdin() {
    lines ??= createInterface({ input: process.stdin, terminal: false });
    return lines;
  },
  interactive: process.stdin.isTTY === true,
  // `vtlab demo` runs the tour's machines on worker threads, one per core (--jobs overrides).
  workers: availableParallelism(),
});
if (typeof status === "number") process.exitCode = status;
else void status.then((s) => (process.exitCode = s));
