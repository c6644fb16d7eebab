// @vtlab/demo: the `vtlab` command's machinery, usable from a program too.
export { runMachines, runDemo, report, runReport, formatReports, formatRunReports, describeCrash } from "./run.js";
export type { MachineReport, RunReport, RunOptions, RunMachinesOptions, DemoOptions, DemoResult } from "./run.js";
export { loadMachine, readMachineConfig, machineResources, serialFilePath, FileBlockBackend, MachineError } from "./machines.js";
export type { LoadedMachine, MachineResources } from "./machines.js";
export { Shell, SHELL_HELP, runShellScript, runShellLines, stateLetters, printableConsole } from "./shell.js";
export type { ShellIo, ShellOptions } from "./shell.js";
export { formatTable } from "./table.js";
export { main, USAGE, SHELL_PROMPT } from "./cli.js";
export type { Io } from "./cli.js";
