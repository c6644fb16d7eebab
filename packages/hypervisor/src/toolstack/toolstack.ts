/**
 * The toolstack (the role of xl over libxl): create domains from parsed `DomainConfig`s, keep
 * each config for the domain's lifetime, list, pause, unpause and destroy them, and act on a
 * crash as xl.cfg(5) `on_crash` says.
 *
 * As in Xen, the hypervisor only marks a domain crashed (`Domain.crash`: it stops running and
 * keeps its memory); acting on it is the toolstack's job. xl does it in `handle_domain_death`
 * when libxl reports the domain's death; here `Toolstack.run` looks between scheduler slices
 * (`Hypervisor.run`'s `onSlice`) and `handleCrashes()` can be called after any other run.
 *
 * `on_crash` actions (xl.cfg(5), libxl_action_on_shutdown):
 * - `destroy` (LIBXL_ACTION_ON_SHUTDOWN_DESTROY, the default): the domain is destroyed, its
 *   frames go back to the host and it leaves the list; the crash (reason, domid) is kept in
 *   `crashes` and the `Domain` object still answers `stats()`.
 * - `preserve` (LIBXL_ACTION_ON_SHUTDOWN_PRESERVE): the domain stays, crashed, holding its
 *   memory, and is listed until someone destroys it.
 * - `restart` (LIBXL_ACTION_ON_SHUTDOWN_RESTART): the domain is destroyed and a new one (a new
 *   domid) is built from the same config under the same name; its kernel and disk are asked
 *   of the `DomainResources` loader again, as xl re-reads them.
 *
 * Restart loops: xl itself restarts forever; xend refused a restart when the domain had run for
 * less than MINIMUM_RESTART_TIME (60 s, xend's XendConstants.py) and destroyed it instead.
 * vtlab keeps that rule on modelled time but allows a few rapid restarts first, because modelled
 * runs are short: a crash less than `minimumRestartSeconds` (default 60, modelled seconds of
 * host time since the domain was (re)built) after the last (re)start is rapid; after
 * `rapidRestartLimit` (default 3) rapid restarts in a row, the next rapid crash is refused and
 * the domain is destroyed. A crash after a longer run resets the count. `rapidRestartLimit: 0`
 * is xend's behaviour. So a guest that crashes at once is built at most 1 + 3 times.
 *
 * A config with `vtlab_xen_selftest = 1` (vtlab's key) gets the xentest self-test's dom0 peer
 * (xen/selftest_peer.ts) for each incarnation; `run` polls it between slices, beside on_crash.
 *
 * Not modelled: `rename-restart` (needs the crashed domain renamed, which `Domain` does not
 * allow), `coredump-destroy`/`coredump-restart` (no core dump writer), `soft-reset`, and
 * `on_poweroff`/`on_reboot`/`on_watchdog` (not parsed): a domain that shuts down stays listed,
 * in state "shutdown", so that its exit code can be read, until it is destroyed.
 */
import type { BlockBackend } from "../devices/ata.js";
import { DomainError, type Domain, type DomainOptions, type Hypervisor, type RunOptions, type RunResult } from "../hypervisor.js";
import type { DomainConfig, OnCrashAction } from "./config.js";
import { echoInput } from "@vtlab/arch";
import { SelfTestPeer } from "../xen/selftest_peer.js";
import { PvServices } from "./xenstore.js";
import { XenStore } from "@vtlab/pv-backends";
import { HostNetwork } from "./network.js";
import { HostDisks } from "./vbd.js";

/**
 * Minimum modelled run time (seconds since the domain was (re)built) for a crash not to count as
 * a rapid restart. xend: MINIMUM_RESTART_TIME (XendConstants.py).
 */
export const MINIMUM_RESTART_TIME_S = 60;
/** Rapid restarts in a row allowed before a restart is refused (vtlab's own; xend allowed none, xl has no limit). */
export const RAPID_RESTART_LIMIT = 3;

/** What building a domain needs beyond its config: the toolstack asks for it at each (re)creation. */
export interface DomainResources {
  /** The kernel image (the config's `kernel`, read by the caller). */
  readonly kernel: Uint8Array;
  /** The initial ramdisk (the config's `ramdisk`, read by the caller), if any. */
  readonly ramdisk?: Uint8Array;
  /** The primary-master disk (the config's first `disk`), if any. */
  readonly disk?: BlockBackend;
  /** Console text of this incarnation. */
  readonly onConsole?: (text: string) => void;
  /** Called once when this incarnation is destroyed (or its creation failed): close files here. */
  readonly release?: () => void;
}

/**
 * The `Hypervisor.createDomain` options that `config` and the loader's `resources` describe (what
 * libxl builds a domain from once xl has parsed the file): the one mapping from config keys to
 * domain options. `serial` and `on_crash` are not domain options: the loader routes the console,
 * the toolstack acts on a crash (`serial = "none"` only sets consoleCapture to 0: nothing kept). Only the first disk is attached (the primary master).
 */
export function domainOptions(config: DomainConfig, resources: DomainResources): DomainOptions {
  return {
    name: config.name,
    memoryMiB: config.memory,
    vcpus: config.vcpus,
    hap: config.hap,
    acpi: config.acpi,
    ...(config.shadowMemory !== undefined ? { shadowMemoryKiB: config.shadowMemory * 1024 } : {}),
    kernel: resources.kernel,
    cmdline: config.cmdline,
    ...(resources.ramdisk !== undefined ? { ramdisk: resources.ramdisk } : {}),
    weight: config.weight,
    magicPages: true,
    ...(config.xenPlatformPci !== undefined ? { xenPlatformPci: config.xenPlatformPci } : {}),
    ...(config.pci !== undefined && config.pci.length > 0 ? { pci: config.pci } : {}),
    ...(resources.disk !== undefined ? { disk: resources.disk } : {}),
    ...(resources.onConsole !== undefined ? { onConsole: resources.onConsole } : {}),
    // serial = "none": the console goes nowhere, so it is not kept either (only counted).
    ...(config.serial.kind === "none" ? { consoleCapture: 0 } : {}),
  };
}

/** Turns a config (and where it came from) into the resources of a new incarnation; may throw. */
export type DomainResourceLoader = (config: DomainConfig, source: string) => DomainResources;

/** What the toolstack did about one crash. */
export type CrashOutcome = "destroyed" | "preserved" | "restarted" | "restart-refused" | "restart-failed";

/** One crash and the action taken (kept after the domain is gone, for reporting). */
export interface CrashRecord {
  readonly name: string;
  /** The domid that crashed. */
  readonly domid: number;
  /** `Domain.crashReason`, as the hypervisor gave it. */
  readonly reason: string;
  /** The configured `on_crash`. */
  readonly action: OnCrashAction;
  readonly outcome: CrashOutcome;
  /** The new domid after a restart. */
  readonly newDomid?: number;
  /** Restarts of this machine so far, this one included. */
  readonly restarts: number;
  /** Modelled host time from the domain's (re)build to the toolstack seeing the crash (ns). */
  readonly uptimeNs: number;
  /** Why a restart was refused or failed. */
  readonly detail?: string;
}

/** A machine the toolstack manages: its config, and the current incarnation. */
export interface ManagedDomain {
  readonly config: DomainConfig;
  /** Where the config came from (a file name), for messages. */
  readonly source: string;
  /** The current incarnation (a new `Domain` after each restart; destroyed once the machine is gone). */
  readonly domain: Domain;
  /** Restarts after crashes (on_crash = "restart"). */
  readonly restarts: number;
  /** Rapid restarts in a row (see MINIMUM_RESTART_TIME_S). */
  readonly rapidRestarts: number;
  /** Modelled host time (ns) when the current incarnation was built. */
  readonly startedNs: number;
  /** Every crash of this machine, oldest first. */
  readonly crashes: readonly CrashRecord[];
  /** False once destroyed (by on_crash or by `destroy`). */
  readonly listed: boolean;
  /**
   * The xentest self-test's dom0 peer of the current incarnation, when the config says
   * `vtlab_xen_selftest = 1` (polled between scheduler slices by `run`).
   */
  readonly selftestPeer: SelfTestPeer | undefined;
}

export interface ToolstackOptions {
  /** Reads the kernel, opens the disk, routes the console: called at create and at each restart. */
  readonly resources: DomainResourceLoader;
  /** Modelled seconds a domain must run for its crash not to be a rapid restart (default MINIMUM_RESTART_TIME_S). */
  readonly minimumRestartSeconds?: number;
  /** Rapid restarts in a row before the next is refused (default RAPID_RESTART_LIMIT). */
  readonly rapidRestartLimit?: number;
  /** Each crash, when it has been acted on. */
  readonly onCrash?: (record: CrashRecord) => void;
  /** The host's xenstored (default: a new one); vif directories are written there. */
  readonly xenstore?: XenStore;
  /** A domain's console sink (the loader's `onConsole`) threw: its text is dropped and counted. Once per incarnation. */
  readonly onConsoleError?: (name: string, message: string) => void;
}

class Machine implements ManagedDomain {
  restarts = 0;
  rapidRestarts = 0;
  readonly crashes: CrashRecord[] = [];
  listed = true;
  /** on_crash has been applied to the current incarnation's crash and left it listed (preserve). */
  handled = false;
  selftestPeer: SelfTestPeer | undefined;
  constructor(
    readonly config: DomainConfig,
    readonly source: string,
    public domain: Domain,
    public startedNs: number,
    public release: (() => void) | undefined,
    /** Console characters of the current incarnation already handed to the loader's `onConsole`. */
    public console: ConsoleTap,
  ) {}
}

/**
 * The domain hands its console on in whole lines; at destroy the toolstack hands on the rest
 * (a last line with no newline, such as a guest's dying words), as xenconsoled would have logged it.
 */
interface ConsoleTap {
  delivered: number;
  /** Characters the loader's sink refused (it threw): dropped and counted, never the end of the host. */
  dropped: number;
  readonly onConsole: ((text: string) => void) | undefined;
}

/**
 * `e` again, naming the config file first, and the kernel's path where the builder refused the
 * image (`kernel "k.elf": e_phoff: ...`), so that the message says which file to fix.
 */
function withSource(e: DomainError, source: string, config: DomainConfig): DomainError {
  const detail = e.detail.startsWith("kernel: ") ? `kernel "${echoInput(config.kernel)}": ${e.detail.slice("kernel: ".length)}` : e.detail;
  return new DomainError(e.domain, detail, echoInput(source));
}

export class Toolstack {
  private readonly machines: Machine[] = [];
  private readonly crashLog: CrashRecord[] = [];
  private droppedConsole = 0;
  private readonly minimumRestartNs: number;
  private readonly rapidRestartLimit: number;
  /** The host's xenstored. */
  readonly xenstore: XenStore;
  /** The host's bridges and each domain's vifs (network.ts): added at build, removed at destroy. */
  readonly network: HostNetwork;
  /** Each domain's vbds (vbd.ts: the disk's PV path beside the emulated ATA disk): added at build, removed at destroy. */
  readonly disks: HostDisks;
  /** Each domain's xenstore entries, xenstored connection and console backend (xenstore.ts): attached at build, detached at destroy. */
  readonly pv: PvServices;

  constructor(
    readonly hv: Hypervisor,
    private readonly options: ToolstackOptions,
  ) {
    const seconds = options.minimumRestartSeconds ?? MINIMUM_RESTART_TIME_S;
    if (!(seconds >= 0) || !Number.isFinite(seconds)) throw new RangeError(`minimumRestartSeconds must be a finite number >= 0; got ${seconds}`);
    const limit = options.rapidRestartLimit ?? RAPID_RESTART_LIMIT;
    if (!Number.isInteger(limit) || limit < 0) throw new RangeError(`rapidRestartLimit must be an integer >= 0; got ${limit}`);
    this.minimumRestartNs = seconds * 1e9;
    this.rapidRestartLimit = limit;
    this.xenstore = options.xenstore ?? new XenStore();
    this.network = new HostNetwork(hv, this.xenstore);
    this.disks = new HostDisks(hv, this.xenstore);
    this.pv = new PvServices(hv, this.xenstore);
  }

  /** The machines still listed (running, paused, shut down, or crashed and preserved), in creation order. */
  get domains(): readonly ManagedDomain[] {
    return this.machines.filter((m) => m.listed);
  }

  /** Every machine ever created here, destroyed ones included (for their crash records and stats). */
  get history(): readonly ManagedDomain[] {
    return this.machines;
  }

  /** Every crash so far, in the order they were handled. */
  get crashes(): readonly CrashRecord[] {
    return this.crashLog;
  }

  /**
   * A listed machine by domid (a number, or a string of decimal digits, as xl takes it) or name.
   * Names win over ids only when no domain has that id.
   */
  find(idOrName: number | string): ManagedDomain | undefined {
    return this.findMachine(idOrName);
  }

  private findMachine(idOrName: number | string): Machine | undefined {
    const listed = this.machines.filter((m) => m.listed);
    const id = typeof idOrName === "number" ? idOrName : /^\d+$/.test(idOrName) ? Number(idOrName) : undefined;
    if (id !== undefined) {
      const byId = listed.find((m) => m.domain.id === id);
      if (byId !== undefined) return byId;
    }
    return typeof idOrName === "string" ? listed.find((m) => m.config.name === idOrName) : undefined;
  }

  /** Build a domain from `config` (`source` names the file in messages). Throws `DomainError`, or what the loader throws. */
  create(config: DomainConfig, source = "<config>"): ManagedDomain {
    const { domain, release, console, disk } = this.build(config, source);
    this.network.add(domain.id, config.vif ?? []);
    this.disks.add(domain.id, config.disk, disk);
    const m = new Machine(config, source, domain, this.hv.clock.nanoseconds, release, console);
    this.attachPeer(m);
    this.machines.push(m);
    return m;
  }

  private build(config: DomainConfig, source: string): { domain: Domain; release: (() => void) | undefined; console: ConsoleTap; disk: BlockBackend | undefined } {
    const r = this.options.resources(config, source);
    const console: ConsoleTap = { delivered: 0, dropped: 0, onConsole: r.onConsole };
    return { domain: this.instantiate(config, source, r, console), release: r.release, console, disk: r.disk };
  }

  /** `Hypervisor.createDomain` from the config and the loader's resources (released if it throws). */
  private instantiate(config: DomainConfig, source: string, r: DomainResources, console: ConsoleTap): Domain {
    const onConsole = r.onConsole;
    const counted: DomainResources =
      onConsole === undefined
        ? r
        : {
            ...r,
            onConsole: (text: string) => {
              console.delivered += text.length;
              this.deliver(config.name, source, console, onConsole, text);
            },
          };
    let d: Domain;
    try {
      d = this.hv.createDomain(domainOptions(config, counted));
    } catch (e) {
      r.release?.();
      throw e instanceof DomainError && e.source === undefined ? withSource(e, source, config) : e;
    }
    // Its xenstore entries, xenstored's connection and the console backend (toolstack/xenstore.ts).
    if (d.magicPages !== undefined) this.pv.attach(d, { name: config.name });
    return d;
  }

  /** The self-test peer, for a config that asks for it (`vtlab_xen_selftest = 1`): one per incarnation. */
  private attachPeer(m: Machine): void {
    m.selftestPeer = m.config.xenSelftest === true ? new SelfTestPeer(this.hv, m.domain) : undefined;
  }

  /** Pause a running domain (xl pause). Returns a reason string when it cannot be. */
  pause(idOrName: number | string): ManagedDomain | string {
    const m = this.findMachine(idOrName);
    if (m === undefined) return `no domain "${idOrName}"`;
    const state = m.domain.state;
    if (state === "paused") return `domain ${m.config.name} (id ${m.domain.id}) is already paused`;
    if (state !== "running") return `domain ${m.config.name} (id ${m.domain.id}) is ${state}; only a running domain can be paused`;
    m.domain.pause();
    return m;
  }

  /** Unpause a paused domain (xl unpause). Returns a reason string when it cannot be. */
  unpause(idOrName: number | string): ManagedDomain | string {
    const m = this.findMachine(idOrName);
    if (m === undefined) return `no domain "${idOrName}"`;
    if (m.domain.state !== "paused") return `domain ${m.config.name} (id ${m.domain.id}) is ${m.domain.state}, not paused`;
    m.domain.unpause();
    return m;
  }

  /** Destroy a domain (xl destroy): its frames go back to the host and it leaves the list. */
  destroy(idOrName: number | string): ManagedDomain | string {
    const m = this.findMachine(idOrName);
    if (m === undefined) return `no domain "${idOrName}"`;
    this.retire(m);
    return m;
  }

  /** Destroy every listed domain (the end of a session). */
  destroyAll(): void {
    for (const m of this.machines) if (m.listed) this.retire(m);
  }

  private retire(m: Machine): void {
    this.pv.detach(m.domain.id);
    this.flushConsole(m);
    this.network.remove(m.domain.id);
    this.disks.remove(m.domain.id);
    m.domain.destroy();
    m.listed = false;
    this.releaseOf(m);
  }

  private flushConsole(m: Machine): void {
    const tap = m.console;
    if (tap.onConsole === undefined || m.domain.state === "destroyed") return;
    const rest = m.domain.console.slice(tap.delivered);
    tap.delivered += rest.length;
    if (rest.length > 0) this.deliver(m.config.name, m.source, tap, tap.onConsole, rest);
  }

  /**
   * Hand console text to the loader's sink. A sink that throws (a file that cannot be written)
   * loses that text, counted in `consoleDropped`; `onConsoleError` hears of the first failure of
   * each incarnation. The host and every domain go on.
   */
  private deliver(name: string, source: string, tap: ConsoleTap, sink: (text: string) => void, text: string): void {
    try {
      sink(text);
    } catch (e) {
      const first = tap.dropped === 0;
      tap.dropped += text.length;
      this.droppedConsole += text.length;
      if (first) this.options.onConsoleError?.(name, `${echoInput(source)}: domain ${name}: the console sink failed (${echoInput(e instanceof Error ? e.message : String(e), 300)}); its console text is dropped and counted`);
    }
  }

  /** Console characters that loaders' sinks refused, over every domain (see `deliver`). */
  get consoleDropped(): number {
    return this.droppedConsole;
  }

  private releaseOf(m: Machine): void {
    const release = m.release;
    m.release = undefined;
    release?.();
  }

  /**
   * Run the host (`Hypervisor.run`) and act on crashes between slices, so that a restarted
   * domain runs again within the same call. `onSlice` and `until` are passed through.
   */
  run(options: RunOptions = {}): RunResult {
    const onSlice = options.onSlice;
    const result = this.hv.run({
      ...options,
      onSlice: (hv) => {
        for (const m of this.machines) if (m.listed) m.selftestPeer?.poll();
        this.hv.dom0.evtchn.dispatch(); // netback's events (a no-op when none are pending)
        this.network.poll();
        this.disks.poll();
        this.handleCrashes();
        onSlice?.(hv);
      },
    });
    // A crash in the last slice before the budget ran out was handled by onSlice; this catches
    // domains crashed by any other path (VM entry failures before the first slice, callers).
    this.handleCrashes();
    return result;
  }

  /** Apply `on_crash` to every listed domain that has crashed and not been acted on; returns what was done. */
  handleCrashes(): CrashRecord[] {
    const done: CrashRecord[] = [];
    for (const m of this.machines) {
      if (!m.listed || m.handled || m.domain.state !== "crashed") continue;
      const record = this.applyOnCrash(m);
      m.crashes.push(record);
      this.crashLog.push(record);
      done.push(record);
      this.options.onCrash?.(record);
    }
    return done;
  }

  private applyOnCrash(m: Machine): CrashRecord {
    const d = m.domain;
    const nowNs = this.hv.clock.nanoseconds;
    const uptimeNs = nowNs - m.startedNs;
    const base = { name: m.config.name, domid: d.id, reason: d.crashReason ?? "unknown", action: m.config.onCrash, uptimeNs };
    switch (m.config.onCrash) {
      case "preserve":
        m.handled = true;
        return { ...base, outcome: "preserved", restarts: m.restarts };
      case "destroy":
        this.retire(m);
        return { ...base, outcome: "destroyed", restarts: m.restarts };
      case "restart": {
        const rapid = uptimeNs < this.minimumRestartNs;
        if (rapid && m.rapidRestarts >= this.rapidRestartLimit) {
          this.retire(m);
          const detail = `restarting too fast: ${m.rapidRestarts + 1} crashes in a row within ${this.minimumRestartNs / 1e9} modelled s of (re)start (MINIMUM_RESTART_TIME); refusing to restart to avoid loops`;
          return { ...base, outcome: "restart-refused", restarts: m.restarts, detail };
        }
        // Destroy first: the new domain takes the same name (and frames of the old one).
        this.pv.detach(d.id);
        this.flushConsole(m);
        this.network.remove(d.id);
        this.disks.remove(d.id);
        d.destroy();
        this.releaseOf(m);
        // The loader may fail for any reason (a kernel file gone); the builder with a DomainError
        // (no memory left in one piece). Anything else is a vtlab bug and is thrown.
        let r: DomainResources;
        try {
          r = this.options.resources(m.config, m.source);
        } catch (e) {
          m.listed = false;
          if (e instanceof Error) return { ...base, outcome: "restart-failed", restarts: m.restarts, detail: e.message };
          throw e;
        }
        const console: ConsoleTap = { delivered: 0, dropped: 0, onConsole: r.onConsole };
        let domain: Domain;
        try {
          domain = this.instantiate(m.config, m.source, r, console);
        } catch (e) {
          m.listed = false;
          if (e instanceof DomainError) return { ...base, outcome: "restart-failed", restarts: m.restarts, detail: e.message };
          throw e;
        }
        m.domain = domain;
        this.network.add(domain.id, m.config.vif ?? []);
        this.disks.add(domain.id, m.config.disk, r.disk);
        this.attachPeer(m);
        m.release = r.release;
        m.console = console;
        m.startedNs = nowNs;
        m.restarts++;
        m.rapidRestarts = rapid ? m.rapidRestarts + 1 : 0;
        return { ...base, outcome: "restarted", newDomid: domain.id, restarts: m.restarts };
      }
    }
  }
}

