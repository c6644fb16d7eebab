/**
 * `vtlab`: boot machines from xl.cfg-style files, or run the shadow-vs-EPT demonstration.
 * `main` takes the arguments and the output streams, so tests drive it without a process.
 */
import { ConfigError, DomainError } from "@vtlab/hypervisor";
import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import { HOST_PCI_DEVICES, MachineError, iommuOption } from "./machines.js";
import { DEMO_SCENARIOS, describeCrash, formatIsolation, formatReports, formatRunReports, readReferenceKernel, runDemo, runEndLine, runMachines, type DemoScenario } from "./run.js";
import { HtmlReportError, checkHtmlTarget, writeTourHtml } from "./html.js";
import { DEFAULT_PORT, ServeError, checkServeDir, startServer } from "./serve.js";
import { ConsoleStream } from "./console-stream.js";
import { SHELL_HELP, runShellLines, runShellScript } from "./shell.js";
import { TOUR_SCENARIOS, formatScenario, formatTourSummary, parseScenarios, runTour, type TourResult, type TourScenarioName } from "./tour.js";
import { TourJobError, runTourParallel } from "./tour-parallel.js";

export const USAGE = `usage: vtlab <command> [options]

commands:
  run [--json] [--max-instructions N] [--no-iommu | --iommu-flush strict|deferred] <file.cfg>...
        boot the machines the xl.cfg-style files describe, in one host, and stream their
        consoles; each machine's on_crash (destroy, preserve, restart) is applied as in the
        shell and every crash reported. A statistics table at the end, one row per file with
        its restarts and on_crash outcome (--json: the same as JSON on stdout, each machine's
        console in its record, and the consoles streamed to stderr). Exit status 0 when every
        machine shut down with code 0 and none ever crashed (a crash counts even if the
        machine was restarted and then finished), 1 otherwise. The host has NVMe controllers
        at ${HOST_PCI_DEVICES.join(" and ")} (8 MiB namespaces in memory) for \`pci = [...]\`; its VT-d
        IOMMU remaps their DMA (strict invalidation by default, --iommu-flush deferred batches
        it; --no-iommu is Xen's iommu=0: bus addresses are machine addresses, no isolation)
  demo [--json] [--scenario NAME[,NAME]] [--html FILE] [--jobs N] [--max-instructions N]
        the tour of the seeds: each scenario prints the claim it shows, its figures
        (computed from the runs) and whether the run bears the claim out, each check
        "statement: yes (figures)" or "NO"; then the statistics tables of every machine.
        Scenarios, in order: ${TOUR_SCENARIOS.join(", ")}.
        shadow-ept: ptemod, forkwait and compute on shadow paging and EPT (paging exits
        per PT write and per fork, modelled time); disk-pv: ATA PIO vs blkfront (exits per
        disk MiB, MiB/s); netfront: the net-ping/net-pong pair on a bridge (events, grant
        operations and exits per frame; vtlab has no emulated NIC to compare with);
        iommu: nvme through the assigned controller, and a guest aiming its DMA at another
        domain with the IOMMU and with iommu = 0; linux-boot: not in the tour yet (Linux boots with vtlab run machines/linux.cfg, in minutes).
        --scenario picks scenarios; --json prints every figure and check (and each
        machine's statistics) as JSON; --html FILE also writes the report as one
        self-contained HTML file with inline SVG charts (opens offline). The tour's
        machines run on N worker threads (--jobs, default one per core; --jobs 1 runs
        them one after another in the process); the output keeps the tour's order.
        Exit status 1 when a check fails or a machine's run failed (named on stderr)
  demo [--json] --workloads compute,ptemod,forkwait,disk,pvdisk,nvme,iommu [--max-instructions N]
        the comparison tables alone: boot the reference kernel's workloads on a shadow-paging
        machine and an EPT machine and compare them: instructions, exits by reason, walks and
        references, TLB hit rates, I/O exits, modelled time, wall time and guest MIPS; pvdisk
        is the disk workload through blkfront (Xen PV) beside disk's ATA PIO: exits per disk
        MiB, disk MiB/s of modelled time, ring requests, grant operations and events; nvme is
        the disk workload through the kernel's NVMe driver on a controller assigned with
        pci (DMA through the host IOMMU: IOTLB hit rate, walks, faults); iommu is the
        isolation scenario: a guest aims its assigned controller's DMA at another domain,
        with the IOMMU (blocked, faults logged, victim byte-identical) and with iommu = 0;
        the consoles stream as they run
  shell [<script> | -]
        an xl-like session in one host: commands (create, list, pause, unpause, destroy,
        run, stats, console, help, quit) one per line from the script, or from stdin ("-" or
        no script); each domain's on_crash (destroy, preserve, restart) is applied. Exit
        status 1 when a command failed (the session goes on past it)
  serve [--port N] [--dir DIR]
        serve the built web page (default apps/web/dist, made by
        pnpm --filter @vtlab/web build) as static files on http://127.0.0.1:N/ (default
        port ${DEFAULT_PORT}; 0 picks a free one) and print its URL; Ctrl-C (SIGINT) stops it.
        Paths with ".." or absolute paths are refused
  help  this text

config keys: name, memory, vcpus, builder ("hvm"), hap (1 EPT, 0 shadow), kernel, cmdline,
disk (["format=raw, vdev=hda, access=rw, target=disk.img"]), pci (["00:04.0"]: assign a
host device), serial ("pty", "none",
"file:PATH"), on_crash ("destroy", "preserve", "restart"), weight. Paths are relative to the
config file.

shell ${SHELL_HELP}`;

export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** Standard input as lines (for `vtlab shell` without a script). */
  stdin?: AsyncIterable<string>;
  /** Standard input is a terminal: `vtlab shell` prompts. */
  interactive?: boolean;
  /** Bytes waiting in stdout's and stderr's buffers (console lines beyond CONSOLE_BACKLOG_MAX are dropped, console-stream.ts). */
  backlog?: () => number;
  /** `vtlab serve` stops when this settles (tests); SIGINT otherwise. */
  stop?: Promise<unknown>;
  /**
   * Worker threads `vtlab demo` (the tour) may run its machines on when --jobs is not given
   * (bin.ts: one per core). Without it the tour runs in the calling thread, as with --jobs 1.
   */
  workers?: number;
}

/** The shell's prompt on a terminal. */
export const SHELL_PROMPT = "vtlab> ";

function parseFlags(args: string[], allowed: readonly string[]): { flags: Map<string, string | true>; rest: string[] } | string {
  const flags = new Map<string, string | true>();
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith("--")) {
      rest.push(a);
      continue;
    }
    const [key, inline] = a.slice(2).split("=", 2) as [string, string | undefined];
    if (!allowed.includes(key)) return `unknown option --${key}`;
    if (key === "json" || key === "no-iommu") flags.set(key, true);
    else {
      const v = inline ?? args[++i];
      if (v === undefined) return `--${key} needs a value`;
      flags.set(key, v);
    }
  }
  return { flags, rest };
}

function maxInstructions(v: string | true | undefined): number | undefined | string {
  if (v === undefined) return undefined;
  const n = Number(v);
  return typeof v === "string" && /^\d+$/.test(v) && n > 0 ? n : `--max-instructions: "${String(v)}" is not a positive integer`;
}

/** `vtlab serve`: the static server until SIGINT (or `io.stop`, for tests), then exit status 0. */
function serve(args: string[], io: Io): number | Promise<number> {
  const parsed = parseFlags(args, ["port", "dir"]);
  if (typeof parsed === "string" || parsed.rest.length > 0) {
    io.err(`vtlab serve: ${typeof parsed === "string" ? parsed : `unexpected argument "${parsed.rest[0]}"`}\n`);
    return 2;
  }
  const p = parsed.flags.get("port");
  const port = p === undefined ? DEFAULT_PORT : typeof p === "string" && /^\d{1,5}$/.test(p) && Number(p) <= 65535 ? Number(p) : -1;
  if (port < 0) {
    io.err(`vtlab serve: --port: "${String(p)}" is not a port number from 0 to 65535\n`);
    return 2;
  }
  const d = parsed.flags.get("dir");
  const dir = typeof d === "string" ? d : undefined;
  try {
    checkServeDir(dir);
  } catch (e) {
    if (!(e instanceof ServeError)) throw e;
    io.err(`vtlab serve: ${e.message}\n`);
    return 2;
  }
  return startServer({ port, ...(dir !== undefined ? { dir } : {}) }).then(
    async (server) => {
      io.out(`vtlab serve: serving ${server.dir} at ${server.url} (Ctrl-C stops)\n`);
      await new Promise<void>((ok) => {
        if (io.stop !== undefined) void io.stop.then(() => ok(), () => ok());
        else process.once("SIGINT", () => ok());
      });
      await server.close();
      io.out("vtlab serve: stopped\n");
      return 0;
    },
    (e: unknown) => {
      io.err(`vtlab serve: ${e instanceof Error ? e.message : String(e)}\n`);
      return 1;
    },
  );
}

/**
 * Run the command; returns the process exit status (0 ok, 1 a machine or a shell command failed,
 * 2 bad usage or input). `vtlab shell` reading stdin and `vtlab serve` return a promise of it.
 */
export function main(argv: readonly string[], io: Io): number | Promise<number> {
  const [command, ...args] = argv;
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    (command === undefined ? io.err : io.out)(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  if (command === "shell") return shell(args, io);
  if (command === "serve") return serve(args, io);
  if (command !== "run" && command !== "demo") {
    io.err(`vtlab: unknown command "${command}"\n\n${USAGE}\n`);
    return 2;
  }
  const parsed = parseFlags(args, command === "run" ? ["json", "max-instructions", "no-iommu", "iommu-flush"] : ["json", "workloads", "max-instructions", "scenario", "html", "jobs"]);
  if (typeof parsed === "string") {
    io.err(`vtlab ${command}: ${parsed}\n`);
    return 2;
  }
  const json = parsed.flags.has("json");
  const max = maxInstructions(parsed.flags.get("max-instructions"));
  if (typeof max === "string") {
    io.err(`vtlab ${command}: ${max}\n`);
    return 2;
  }
  // With --json, stdout is one JSON document (each machine's console is in its record) and the
  // consoles stream to stderr instead.
  const stream = new ConsoleStream((t) => (json ? io.err : io.out)(t), io.backlog);
  const consoleOut = (name: string, text: string) => stream.line(`${name}| ${text}${text.endsWith("\n") ? "" : "\n"}`);
  const progress = (line: string) => io.err(`${line}\n`);
  try {
    if (command === "run") {
      if (parsed.rest.length === 0) {
        io.err(`vtlab run: give at least one config file\n\n${USAGE}\n`);
        return 2;
      }
      const flush = parsed.flags.get("iommu-flush");
      const iommu = iommuOption(parsed.flags.has("no-iommu"), typeof flush === "string" ? flush : undefined);
      if (typeof iommu === "string") {
        io.err(`vtlab run: ${iommu}\n`);
        return 2;
      }
      const reports = runMachines(parsed.rest, {
        iommu,
        ...(max !== undefined ? { maxInstructions: max } : {}),
        onConsole: consoleOut,
        onProgress: progress,
        // Beside the consoles; on stderr with --json, so that stdout stays one JSON document.
        onCrash: (r) => (json ? io.err : io.out)(`${describeCrash(r)}\n`),
        // Why the run ended, beside the progress lines, when it is not that every domain finished:
        // the budget, or domains left blocked for good.
        onEnd: (r, blocked) => {
          if (r.reason !== "idle" || blocked.length > 0) io.err(`run ended: ${runEndLine(r, blocked)}\n`);
        },
        onWarning: (m) => io.err(`vtlab run: warning: ${m}\n`),
      });
      io.out(json ? `${JSON.stringify(reports, null, 2)}\n` : `\n${formatRunReports(reports)}\n`);
      // A crash fails the run even when on_crash restarted the machine and it then finished.
      return reports.every((r) => r.state === "shutdown" && r.exitCode === 0 && r.crashes.length === 0) ? 0 : 1;
    }
    if (parsed.rest.length > 0) {
      io.err(`vtlab demo: unexpected argument "${parsed.rest[0]}"\n`);
      return 2;
    }
    const w = parsed.flags.get("workloads");
    if (typeof w !== "string") return tour(parsed.flags, json, max, io);
    if (parsed.flags.has("scenario") || parsed.flags.has("html") || parsed.flags.has("jobs")) {
      io.err("vtlab demo: --scenario, --html and --jobs are the tour's; --workloads prints the comparison tables alone\n");
      return 2;
    }
    let workloads: DemoScenario[] | undefined;
    if (typeof w === "string") {
      workloads = [];
      for (const name of w.split(",")) {
        if (!(DEMO_SCENARIOS as readonly string[]).includes(name)) {
          io.err(`vtlab demo: --workloads: unknown workload "${name}" (known: ${DEMO_SCENARIOS.join(", ")})\n`);
          return 2;
        }
        workloads.push(name as DemoScenario);
      }
    }
    const result = runDemo({ ...(workloads !== undefined ? { workloads } : {}), ...(max !== undefined ? { maxInstructions: max } : {}), onConsole: consoleOut, onProgress: progress });
    if (json) io.out(`${JSON.stringify(result, null, 2)}\n`);
    else {
      if (result.reports.length > 0) io.out(`\n${formatReports(result.reports)}\n`);
      if (result.isolation.length > 0) io.out(`\n${formatIsolation(result.isolation)}\n`);
      for (const u of result.unavailable) io.out(`\n${u.mmu} machines not run: ${u.reason}\n`);
    }
    // The isolation scenario succeeds when the IOMMU blocked everything and left the victim intact.
    const isolated = result.isolation.every((r) => r.iommu === "off" || (r.blocked === r.attempts.length && r.victimPagesChanged === 0));
    return isolated && result.reports.every((r) => r.state === "shutdown" && r.exitCode === 0) ? 0 : 1;
  } catch (e) {
    if (e instanceof ConfigError || e instanceof DomainError || e instanceof MachineError || e instanceof HtmlReportError) {
      io.err(`vtlab ${command}: ${e.message}\n`);
      return 2;
    }
    throw e;
  } finally {
    const dropped = stream.summary();
    if (dropped !== undefined) io.err(dropped);
  }
}

/** `vtlab demo` without --workloads: the tour, each scenario printed as it finishes (on worker threads: a promise of the status). */
function tour(flags: ReadonlyMap<string, string | true>, json: boolean, max: number | undefined, io: Io): number | Promise<number> {
  const picked = flags.get("scenario");
  let scenarios: TourScenarioName[] | undefined;
  if (typeof picked === "string") {
    const names = parseScenarios(picked);
    if (typeof names === "string") {
      io.err(`vtlab demo: --scenario: ${names}\n`);
      return 2;
    }
    scenarios = names;
  }
  const html = flags.get("html");
  // Before the runs, which take a while: a report that could not be written would lose them.
  if (typeof html === "string") checkHtmlTarget(html);
  const j = flags.get("jobs");
  const jobs = j === undefined ? (io.workers ?? 1) : typeof j === "string" && /^\d+$/.test(j) && Number(j) >= 1 ? Number(j) : -1;
  if (jobs < 1) {
    io.err(`vtlab demo: --jobs: "${String(j)}" is not a positive integer\n`);
    return 2;
  }
  const options = {
    ...(scenarios !== undefined ? { scenarios } : {}),
    ...(max !== undefined ? { maxInstructions: max } : {}),
    onProgress: (line: string) => io.err(`${line}\n`),
    // The consoles are in each machine's record (--json, the HTML tables), not streamed.
    ...(json ? {} : { onScenario: (s: Parameters<typeof formatScenario>[0], i: number) => io.out(`${i > 0 ? "\n" : ""}${formatScenario(s, i)}\n`) }),
  };
  if (jobs === 1) return tourEnd(runTour(options), json, html, io);
  return runTourParallel({ ...options, kernel: readReferenceKernel(), workers: jobs })
    .then((result) => tourEnd(result, json, html, io))
    .catch((e: unknown) => {
      if (e instanceof TourJobError) {
        io.err(`vtlab demo: ${e.message}\n`);
        return 1;
      }
      if (e instanceof HtmlReportError) {
        io.err(`vtlab demo: ${e.message}\n`);
        return 2;
      }
      throw e;
    });
}

/** The tour's end: the JSON document or the tables and the summary, the HTML file; the exit status. */
function tourEnd(result: TourResult, json: boolean, html: string | true | undefined, io: Io): number {
  if (json) io.out(`${JSON.stringify(result, null, 2)}\n`);
  else {
    const reports = result.scenarios.flatMap((s) => s.reports);
    const isolation = result.scenarios.flatMap((s) => s.isolation);
    if (reports.length > 0) io.out(`\nStatistics of every machine the tour ran\n${formatReports(reports)}\n`);
    if (isolation.length > 0) io.out(`\n${formatIsolation(isolation)}\n`);
    io.out(`\n${formatTourSummary(result)}\n`);
  }
  if (typeof html === "string") {
    writeTourHtml(html, result);
    io.err(`vtlab demo: wrote the HTML report to ${html}\n`);
  }
  return result.ok ? 0 : 1;
}

function shell(args: readonly string[], io: Io): number | Promise<number> {
  const option = args.find((a) => a.startsWith("-") && a !== "-");
  if (option !== undefined) {
    io.err(`vtlab shell: unknown option ${option}\n`);
    return 2;
  }
  if (args.length > 1) {
    io.err(`vtlab shell: give one script (or none to read stdin); unexpected argument "${args[1]}"\n`);
    return 2;
  }
  const file = args[0];
  if (file === undefined || file === "-") {
    if (io.stdin === undefined) {
      io.err("vtlab shell: no standard input to read commands from\n");
      return 2;
    }
    return runShellLines(io.stdin, io, { source: "<stdin>", baseDir: process.cwd() }, io.interactive === true ? SHELL_PROMPT : undefined);
  }
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    io.err(`vtlab shell: ${file}: cannot read the script (${(e as Error).message})\n`);
    return 2;
  }
  return runShellScript(text, io, { source: file, baseDir: dirname(file) });
}
