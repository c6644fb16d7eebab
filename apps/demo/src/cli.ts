/**
 * `vtlab`: boot machines from xl.cfg-style files, or run the shadow-vs-EPT demonstration.
 * `main` takes the arguments and the output streams, so tests drive it without a process.
 */
import { REFERENCE_KERNEL_WORKLOADS, type ReferenceKernelWorkload } from "@vtlab/guests";
import { ConfigError, DomainError } from "@vtlab/hypervisor";
import { MachineError } from "./machines.js";
import { formatReports, runDemo, runMachines } from "./run.js";

export const USAGE = `usage: vtlab <command> [options]

commands:
  run [--json] [--max-instructions N] <file.cfg>...
        boot the machines the xl.cfg-style files describe, in one host, and stream their
        consoles; a statistics table at the end (--json: the statistics as JSON)
  demo [--json] [--workloads compute,ptemod,forkwait,disk] [--max-instructions N]
        boot the reference kernel's workloads on a shadow-paging machine and an EPT machine
        and compare them: instructions, exits by reason, walks and references, TLB hit
        rates, I/O exits, modelled time, wall time and guest MIPS
  help  this text

config keys: name, memory, vcpus, builder ("hvm"), hap (1 EPT, 0 shadow), kernel, cmdline,
disk (["format=raw, vdev=hda, access=rw, target=disk.img"]), serial ("pty", "none",
"file:PATH"), on_crash, weight. Paths are relative to the config file.`;

export interface Io {
  out(text: string): void;
  err(text: string): void;
}

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
    if (key === "json") flags.set(key, true);
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

/** Run the command; returns the process exit status (0 ok, 1 a machine failed, 2 bad usage or input). */
export function main(argv: readonly string[], io: Io): number {
  const [command, ...args] = argv;
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    (command === undefined ? io.err : io.out)(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  if (command !== "run" && command !== "demo") {
    io.err(`vtlab: unknown command "${command}"\n\n${USAGE}\n`);
    return 2;
  }
  const parsed = parseFlags(args, command === "run" ? ["json", "max-instructions"] : ["json", "workloads", "max-instructions"]);
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
  const consoleOut = (name: string, text: string) => {
    if (!json) io.out(`${name}| ${text}${text.endsWith("\n") ? "" : "\n"}`);
  };
  const progress = (line: string) => io.err(`${line}\n`);
  try {
    if (command === "run") {
      if (parsed.rest.length === 0) {
        io.err(`vtlab run: give at least one config file\n\n${USAGE}\n`);
        return 2;
      }
      const reports = runMachines(parsed.rest, { ...(max !== undefined ? { maxInstructions: max } : {}), onConsole: consoleOut, onProgress: progress });
      io.out(json ? `${JSON.stringify(reports, null, 2)}\n` : `\n${formatReports(reports)}\n`);
      return reports.every((r) => r.state === "shutdown" && r.exitCode === 0) ? 0 : 1;
    }
    if (parsed.rest.length > 0) {
      io.err(`vtlab demo: unexpected argument "${parsed.rest[0]}"\n`);
      return 2;
    }
    const w = parsed.flags.get("workloads");
    let workloads: ReferenceKernelWorkload[] | undefined;
    if (typeof w === "string") {
      workloads = [];
      for (const name of w.split(",")) {
        if (!(REFERENCE_KERNEL_WORKLOADS as readonly string[]).includes(name)) {
          io.err(`vtlab demo: --workloads: unknown workload "${name}" (known: ${REFERENCE_KERNEL_WORKLOADS.join(", ")})\n`);
          return 2;
        }
        workloads.push(name as ReferenceKernelWorkload);
      }
    }
    const result = runDemo({ ...(workloads !== undefined ? { workloads } : {}), ...(max !== undefined ? { maxInstructions: max } : {}), onConsole: consoleOut, onProgress: progress });
    if (json) io.out(`${JSON.stringify(result, null, 2)}\n`);
    else {
      io.out(`\n${formatReports(result.reports)}\n`);
      for (const u of result.unavailable) io.out(`\n${u.mmu} machines not run: ${u.reason}\n`);
    }
    return result.reports.every((r) => r.state === "shutdown" && r.exitCode === 0) ? 0 : 1;
  } catch (e) {
    if (e instanceof ConfigError || e instanceof DomainError || e instanceof MachineError) {
      io.err(`vtlab ${command}: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}
