// @vtlab/demo: the `vtlab` command's machinery, usable from a program too.
export { runMachines, runDemo, report, runReport, formatReports, formatRunReports, formatIsolation, faultLines, describeCrash, DEMO_WORKLOADS, DEMO_SCENARIOS } from "./run.js";
export type { MachineReport, RunReport, RunOptions, RunMachinesOptions, DemoOptions, DemoResult, DemoWorkload, DemoScenario } from "./run.js";
export { runIsolation } from "./isolation.js";
export type { IsolationReport } from "./isolation.js";
export { loadMachine, readMachineConfig, machineResources, serialFilePath, FileBlockBackend, SerialFileSink, readBoundedFile, CONFIG_FILE_MAX_BYTES, KERNEL_FILE_MAX_BYTES, MachineError, hostPciDevices, iommuOption, HOST_PCI_DEVICES, HOST_NVME_SECTORS } from "./machines.js";
export type { LoadedMachine, MachineResources } from "./machines.js";
export { Shell, SHELL_HELP, runShellScript, runShellLines, stateLetters, printableConsole } from "./shell.js";
export type { ShellIo, ShellOptions } from "./shell.js";
export { formatTable } from "./table.js";
export { main, USAGE, SHELL_PROMPT } from "./cli.js";
export type { Io } from "./cli.js";
export { runTour, formatTour, formatScenario, formatTourSummary, formatCheck, parseScenarios, pagingExits, TOUR_SCENARIOS, SHADOW_EPT_WORKLOADS, PAGING_EXIT_REASONS, COMPUTE_NEAR_EQUAL } from "./tour.js";
export type { ShadowEptWorkload, TourOptions, TourSizes, TourResult, TourScenarioResult, TourScenarioName, TourFigure, TourBar, TourCheck } from "./tour.js";
export { renderTourHtml, writeTourHtml, checkHtmlTarget, figureSvg, escapeHtml, HtmlReportError } from "./html.js";
export { startServer, requestFile, contentType, defaultWebDir, checkServeDir, ServeError, CONTENT_TYPES, DEFAULT_PORT } from "./serve.js";
export type { ServeOptions, StaticServer } from "./serve.js";
export { readReferenceKernel, runDemoOn } from "./run.js";
export { formatValue } from "./tour.js";
