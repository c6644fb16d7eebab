#!/usr/bin/env node
// The `vtlab` executable.
import { main } from "./cli.js";

process.exitCode = main(process.argv.slice(2), { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) });
