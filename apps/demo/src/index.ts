// @vtlab/demo: the `vtlab` command's machinery, usable from a program too.
export { runMachines, runDemo, report, formatReports } from "./run.js";
export type { MachineReport, RunOptions, DemoOptions, DemoResult } from "./run.js";
export { loadMachine, FileBlockBackend, MachineError } from "./machines.js";
export type { LoadedMachine } from "./machines.js";
export { formatTable } from "./table.js";
export { main, USAGE } from "./cli.js";
