/**
 * `vtlab shell`: an xl-like session over one host. The command is one process, so the domains
 * live as long as the session: commands come one per line from a script file or from stdin
 * (`#` starts a comment), and act on a `Toolstack` that applies each domain's `on_crash`.
 *
 * Errors name the script, the line, the command and the argument; they never end the session.
 * The session's exit status is 0 when every command succeeded and 1 otherwise.
 */
import { resolve } from "node:path";
import { ConfigError, DomainError, Hypervisor, SPARSE_HOST_MEMORY_MIB, Toolstack, type Domain, type ManagedDomain } from "@vtlab/hypervisor";
import { ConsoleStream } from "./console-stream.js";
import { MachineError, hostPciDevices, machineResources, readMachineConfig, truncateSerialFile } from "./machines.js";
import { blockedNames, describeCrash, formatReports, progress, report, runEndLine } from "./run.js";
import { fmt, formatTable } from "./table.js";

export const SHELL_HELP = `commands (one per line; # starts a comment; a domain is a name or a domain id):
  create <file.cfg>          build the domain an xl.cfg-style file describes (a relative path is
                             taken from the script's directory, or the current one for stdin)
  list                       the domains: Name, ID, Mem (MiB), VCPUs, State, Time(s) (modelled)
  pause <domain>             stop scheduling a running domain
  unpause <domain>           schedule a paused domain again
  destroy <domain>           destroy a domain: its memory goes back to the host
  run [<N> | until-idle]     run the host for N instructions, or until no domain can run
                             (the default); consoles stream as "name| text"
  stats <domain> [--json]    statistics of a domain (also of a destroyed one, by name)
  console <domain>           the domain's console so far
  console-input <domain> <text>
                             type text into the domain's PV console (its in ring; escapes as xenstore-write)
  xenstore-ls [<path>]       the xenstore tree below path (default /), as xenstore-ls
  xenstore-read <path>...    the value of each path, one per line
  xenstore-write <path> <value> [<path> <value>]...
                             write values (\\t \\n \\r \\\\ \\xNN escapes), creating missing parents
  pci-assignable-list        the host's assignable PCI devices and who owns them (xl pci-assignable-list)
  pci-list <domain>          the PCI devices assigned to a domain
  pci-attach <domain> <BDF>  assign a free host device ("00:04.0") to a running domain
  pci-detach <domain> <BDF>  take it back: the device is reset and its context entry cleared
  help                       this text
  quit                       end the session (every domain is destroyed)
State letters as xl list: r running, b blocked (halted), p paused, s shut down, c crashed.`;

/** Where a session writes. */
export interface ShellIo {
  out(text: string): void;
  err(text: string): void;
  /** Bytes waiting in the output streams (console lines beyond CONSOLE_BACKLOG_MAX are dropped and counted, console-stream.ts). */
  backlog?: () => number;
}

export interface ShellOptions {
  /** The script's name in error messages ("<stdin>" for standard input). */
  readonly source: string;
  /** The directory relative `create` paths are taken from. */
  readonly baseDir: string;
  /** Host memory (default SPARSE_HOST_MEMORY_MIB, 4 TiB of sparse machine memory, as `vtlab run`). */
  readonly hostMemoryMiB?: number;
}

/** xl list's shutdown_reason_letters: poweroff '-', reboot 'r', suspend 's', crash 'c', watchdog 'w', soft_reset 'S'. */
const SHUTDOWN_REASON_POWEROFF = "-";
const SHUTDOWN_REASON_CRASH = "c";

class UsageError extends Error {}

/** Guest console text for a terminal: CR LF as LF, other control characters (C0 but tab and LF, DEL, C1) shown as \xNN. */
export function printableConsole(text: string): string {
  const t = text.replace(/\r\n/g, "\n");
  let out = "";
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    const control = (c < 0x20 && c !== 0x09 && c !== 0x0a) || (c >= 0x7f && c <= 0x9f);
    out += control ? `\\x${c.toString(16).padStart(2, "0")}` : t[i];
  }
  return out;
}

/** Split a command line into words; "double" or 'single' quotes keep spaces in a word. */
function words(line: string): string[] | string {
  const out: string[] = [];
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    if (c === " " || c === "\t") {
      i++;
      continue;
    }
    if (c === "#") break;
    let word = "";
    while (i < line.length && line[i] !== " " && line[i] !== "\t") {
      const q = line[i]!;
      if (q === '"' || q === "'") {
        const end = line.indexOf(q, i + 1);
        if (end < 0) return `unterminated ${q === '"' ? "double" : "single"} quote`;
        word += line.slice(i + 1, end);
        i = end + 1;
      } else {
        word += q;
        i++;
      }
    }
    out.push(word);
  }
  return out;
}

export class Shell {
  readonly hv: Hypervisor;
  readonly toolstack: Toolstack;
  /** Commands that failed. */
  errors = 0;
  private wallSeconds = 0;
  private line = 0;
  private closed = false;

  constructor(
    private readonly io: ShellIo,
    private readonly options: ShellOptions,
  ) {
    this.hv = new Hypervisor({ memoryMiB: options.hostMemoryMiB ?? SPARSE_HOST_MEMORY_MIB, pciDevices: hostPciDevices() });
    this.toolstack = new Toolstack(this.hv, {
      resources: (config, file) => machineResources(file, config, (name, text) => this.console(name, text), (m) => this.io.err(`vtlab shell: warning: ${m}\n`)),
      onCrash: (r) => this.io.out(`${describeCrash(r)}\n`),
    });
  }

  private consoleStream: ConsoleStream | undefined;

  private console(name: string, text: string): void {
    const t = printableConsole(text);
    this.consoleStream ??= new ConsoleStream((line) => this.io.out(line), this.io.backlog);
    const before = this.consoleStream.dropped;
    this.consoleStream.line(`${name}| ${t}${t.endsWith("\n") ? "" : "\n"}`);
    if (before === 0 && this.consoleStream.dropped > 0) this.io.err("vtlab shell: console output is not read fast enough: lines are dropped (and counted) until it is\n");
  }

  /** Run one line (numbered from 1); returns false after `quit`. */
  execute(text: string, line: number): boolean {
    this.line = line;
    const argv = words(text);
    if (typeof argv === "string") {
      this.fail(undefined, argv);
      return true;
    }
    const [command, ...args] = argv;
    if (command === undefined) return true;
    try {
      return this.dispatch(command, args);
    } catch (e) {
      if (e instanceof UsageError || e instanceof ConfigError || e instanceof DomainError || e instanceof MachineError) {
        this.fail(command, e.message);
        return true;
      }
      throw e;
    }
  }

  private fail(command: string | undefined, message: string): void {
    this.errors++;
    this.io.err(`vtlab shell: ${this.options.source}:${this.line}: ${command === undefined ? "" : `${command}: `}${message}\n`);
  }

  private dispatch(command: string, args: string[]): boolean {
    switch (command) {
      case "create": {
        const file = oneArg(args, "<file.cfg>");
        const path = resolve(this.options.baseDir, file);
        const config = readMachineConfig(path);
        if (this.toolstack.find(config.name) !== undefined) throw new UsageError(`${path}: a domain named "${config.name}" exists`);
        truncateSerialFile(path, config);
        const m = this.toolstack.create(config, path);
        this.io.out(`created ${m.config.name} (id ${m.domain.id}): ${m.config.memory} MiB, ${m.config.vcpus} vCPU(s), ${m.domain.hap ? "EPT" : "shadow paging"}, on_crash "${m.config.onCrash}"\n`);
        return true;
      }
      case "list":
        expectArgs(args, []);
        this.io.out(`${this.list()}\n`);
        return true;
      case "pause":
      case "unpause":
      case "destroy": {
        const dom = oneArg(args, "<domain>");
        const r = this.toolstack[command](dom);
        if (typeof r === "string") throw new UsageError(r);
        this.io.out(`${command === "destroy" ? "destroyed" : `${command}d`} ${r.config.name} (id ${r.domain.id})\n`);
        return true;
      }
      case "run":
        this.run(args);
        return true;
      case "stats": {
        const json = args.includes("--json");
        const rest = args.filter((a) => a !== "--json");
        const bad = rest.find((a) => a.startsWith("--"));
        if (bad !== undefined) throw new UsageError(`unknown option ${bad}`);
        const dom = oneArg(rest, "<domain>");
        const m = this.toolstack.find(dom) ?? this.departed(dom);
        if (m === undefined) throw new UsageError(`no domain "${dom}"`);
        this.io.out(`${this.stats(m, json)}\n`);
        return true;
      }
      case "console": {
        const dom = oneArg(args, "<domain>");
        const m = this.toolstack.find(dom);
        if (m === undefined) throw new UsageError(`no domain "${dom}"`);
        const t = printableConsole(m.domain.console);
        this.io.out(t === "" || t.endsWith("\n") ? t : `${t}\n`);
        return true;
      }
      case "console-input": {
        expectArgs(args, ["<domain>", "<text>"]);
        const m = this.toolstack.find(args[0]!);
        if (m === undefined) throw new UsageError(`no domain "${args[0]!}"`);
        const con = this.toolstack.pv.domain(m.domain.id)?.console;
        if (con === undefined) throw new UsageError(`${m.config.name} has no PV console`);
        const bytes = unsanitiseValue(args[1]!);
        const n = con.write(bytes);
        this.io.out(`sent ${n} of ${bytes.length} bytes to ${m.config.name}'s console\n`);
        return true;
      }
      case "xenstore-ls": {
        if (args.length > 1) throw new UsageError(`unexpected argument "${args[1]}"`);
        this.io.out(this.xenstoreLs(args[0] ?? "/"));
        return true;
      }
      case "xenstore-read": {
        if (args.length === 0) throw new UsageError("missing <path>");
        const xs = this.toolstack.xenstore;
        for (const p of args) {
          const v = xs.readBytes(p);
          if (v === undefined) throw new UsageError(`couldn't read path ${p}`);
          this.io.out(`${sanitiseValue(v)}\n`);
        }
        return true;
      }
      case "xenstore-write": {
        if (args.length === 0 || args.length % 2 !== 0) throw new UsageError("expected <path> <value> pairs");
        const xs = this.toolstack.xenstore;
        for (let i = 0; i < args.length; i += 2) {
          const p = args[i]!;
          if (xs.write(p, unsanitiseValue(args[i + 1]!)) !== 0) throw new UsageError(`could not write path ${p}`);
        }
        return true;
      }
      case "pci-assignable-list": {
        expectArgs(args, []);
        const rows = this.hv.pciAssignableList();
        this.io.out(rows.length === 0 ? "no assignable PCI devices\n" : `${formatTable(["BDF", "device", "owner"], rows.map((r) => [`0000:${r.bdf}`, r.name, r.owner]))}\n`);
        return true;
      }
      case "pci-list": {
        const dom = oneArg(args, "<domain>");
        const m = this.toolstack.find(dom);
        if (m === undefined) throw new UsageError(`no domain "${dom}"`);
        const rows = this.hv.pciAssignableList().filter((r) => r.owner === m.domain.name);
        this.io.out(rows.length === 0 ? `${m.config.name} has no assigned PCI devices\n` : `${formatTable(["BDF", "device"], rows.map((r) => [`0000:${r.bdf}`, r.name]))}\n`);
        return true;
      }
      case "pci-attach":
      case "pci-detach": {
        expectArgs(args, ["<domain>", "<BDF>"]);
        const m = this.toolstack.find(args[0]!);
        if (m === undefined) throw new UsageError(`no domain "${args[0]!}"`);
        const bdf = args[1]!;
        if (command === "pci-attach") {
          this.hv.assignPci(m.domain.id, bdf);
          this.io.out(`assigned ${bdf} to ${m.config.name}\n`);
        } else {
          if (!this.hv.deassignPci(m.domain.id, bdf)) throw new UsageError(`${m.config.name} does not own PCI device "${bdf}"`);
          this.io.out(`detached ${bdf} from ${m.config.name}: reset, context entry cleared, free again\n`);
        }
        return true;
      }
      case "help":
        expectArgs(args, []);
        this.io.out(`${SHELL_HELP}\n`);
        return true;
      case "quit":
      case "exit":
        expectArgs(args, []);
        return false;
      default:
        throw new UsageError(`unknown command (try "help")`);
    }
  }

  /** xenstore-ls's do_ls: each node below `path`, indented one space per level, `name = "value"`. */
  private xenstoreLs(path: string): string {
    const xs = this.toolstack.xenstore;
    if (xs.directory(path) === undefined) throw new UsageError(`could not list path ${path}`);
    let out = "";
    const walk = (p: string, depth: number): void => {
      for (const name of xs.directory(p) ?? []) {
        const child = `${p}${p.endsWith("/") ? "" : "/"}${name}`;
        const v = xs.readBytes(child);
        out += `${" ".repeat(depth)}${name}${v === undefined ? ":" : ` = "${sanitiseValue(v)}"`}\n`;
        walk(child, depth + 1);
      }
    };
    walk(path, 0);
    return out;
  }

  /** The latest destroyed machine with this name (or domid), for `stats` after on_crash = "destroy". */
  private departed(dom: string): ManagedDomain | undefined {
    const id = /^\d+$/.test(dom) ? Number(dom) : undefined;
    return [...this.toolstack.history].reverse().find((m) => !m.listed && (m.config.name === dom || m.domain.id === id || m.crashes.some((c) => c.domid === id)));
  }

  private run(args: string[]): void {
    if (args.length > 1) throw new UsageError(`unexpected argument "${args[1]}"`);
    const a = args[0];
    let max: number | undefined;
    if (a !== undefined && a !== "until-idle") {
      const n = /^[0-9][0-9_]*$/.test(a) ? Number(a.replace(/_/g, "")) : Number.NaN;
      if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`"${a}" is not a positive number of instructions or "until-idle"`);
      max = n;
    }
    const t0 = performance.now();
    const r = this.toolstack.run({ ...(max !== undefined ? { maxInstructions: max } : {}), onSlice: progress(this.hv, t0, (l) => this.io.err(`${l}\n`)) });
    this.wallSeconds += (performance.now() - t0) / 1000;
    const why = runEndLine(r, blockedNames(this.toolstack, r));
    this.io.out(`ran ${fmt(r.instructions)} instructions (${why}); host time ${(this.hv.clock.nanoseconds / 1e9).toFixed(6)} modelled s\n`);
  }

  /** xl list: "%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f", Time(s) with six decimals (modelled runs are short). */
  list(): string {
    const lines = ["Name                                        ID   Mem VCPUs\tState\tTime(s)"];
    for (const m of this.toolstack.domains) {
      const d = m.domain;
      const mem = Math.floor((d.ramFrames * 4096) / (1024 * 1024));
      const online = d.vcpus.filter((v) => v.isUp).length; // xl counts the vCPUs that are up
      const seconds = d.stats(this.hv.cost).modelledCycles / this.hv.clock.frequencyHz;
      lines.push(`${d.name.padEnd(40)} ${String(d.id).padStart(5)} ${String(mem).padStart(5)} ${String(online).padStart(5)}     ${stateLetters(d)}  ${seconds.toFixed(6).padStart(10)}`);
    }
    return lines.join("\n");
  }

  private stats(m: ManagedDomain, json: boolean): string {
    const r = report(this.hv, m.domain, this.wallSeconds);
    if (json) return JSON.stringify({ ...r, domid: m.domain.id, restarts: m.restarts, crashes: m.crashes }, null, 2);
    const extra = [`domid ${m.domain.id}, state ${m.domain.state}, restarts ${m.restarts}`, ...m.crashes.map(describeCrash)];
    return `${formatReports([r])}\n${extra.join("\n")}`;
  }

  /** Destroy every domain (closing their disks); the exit status of the session. */
  close(): number {
    if (!this.closed) this.toolstack.destroyAll();
    this.closed = true;
    return this.errors === 0 ? 0 : 1;
  }
}

/** The six state columns of xl list: r b p s, the shutdown reason, d (dying: never seen here). */
export function stateLetters(d: Domain): string {
  const running = d.state === "running" && d.vcpus.some((v) => !v.blocked);
  const blocked = d.state === "running" && !running;
  const shutdown = d.state === "shutdown" || d.state === "crashed";
  const reason = d.state === "crashed" ? SHUTDOWN_REASON_CRASH : SHUTDOWN_REASON_POWEROFF;
  return `${running ? "r" : "-"}${blocked ? "b" : "-"}${d.state === "paused" ? "p" : "-"}${shutdown ? "s" : "-"}${shutdown ? reason : "-"}${d.state === "destroyed" ? "d" : "-"}`;
}

/**
 * xs_lib.c's sanitise_value: printable ASCII as is, \t \n \r \\ escaped, bytes below 010 as
 * three octal digits, the rest as \xNN.
 */
export function sanitiseValue(v: Uint8Array): string {
  let out = "";
  for (const c of v) {
    if (c >= 0x20 && c <= 0x7e && c !== 0x5c) out += String.fromCharCode(c);
    else if (c === 0x09) out += "\\t";
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x5c) out += "\\\\";
    else if (c < 0o10) out += `\\${c.toString(8).padStart(3, "0")}`;
    else out += `\\x${c.toString(16).padStart(2, "0")}`;
  }
  return out;
}

/** unsanitise_value: the escapes of sanitiseValue back to bytes (characters above 0xff as UTF-8). */
export function unsanitiseValue(s: string): Uint8Array {
  const out: number[] = [];
  const enc = new TextEncoder();
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch !== "\\" || i + 1 >= s.length) {
      out.push(...enc.encode(ch));
      continue;
    }
    const e = s[++i]!;
    if (e === "t") out.push(0x09);
    else if (e === "n") out.push(0x0a);
    else if (e === "r") out.push(0x0d);
    else if (e === "\\") out.push(0x5c);
    else if (e === "x" && /^[0-9a-fA-F]{2}/.test(s.slice(i + 1, i + 3))) {
      out.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (/^[0-7]{3}/.test(s.slice(i, i + 3))) {
      out.push(parseInt(s.slice(i, i + 3), 8) & 0xff);
      i += 2;
    } else out.push(...enc.encode(e));
  }
  return Uint8Array.from(out);
}

function expectArgs(args: readonly string[], names: readonly string[]): void {
  if (args.length < names.length) throw new UsageError(`missing ${names[args.length] ?? "argument"}`);
  if (args.length > names.length) throw new UsageError(`unexpected argument "${args[names.length] ?? ""}"`);
}

function oneArg(args: readonly string[], name: string): string {
  expectArgs(args, [name]);
  return args[0]!;
}

/** Run a whole script; returns the exit status. */
export function runShellScript(text: string, io: ShellIo, options: ShellOptions): number {
  const shell = new Shell(io, options);
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (!shell.execute(lines[i]!.replace(/\r$/, ""), i + 1)) break;
  }
  return shell.close();
}

/** Run commands as they arrive (stdin), writing `prompt` before each when given; returns the exit status. */
export async function runShellLines(lines: AsyncIterable<string>, io: ShellIo, options: ShellOptions, prompt?: string): Promise<number> {
  const shell = new Shell(io, options);
  let n = 0;
  if (prompt !== undefined) io.out(prompt);
  for await (const line of lines) {
    if (!shell.execute(line.replace(/\r$/, ""), ++n)) break;
    if (prompt !== undefined) io.out(prompt);
  }
  return shell.close();
}
