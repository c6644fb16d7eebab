/**
 * The toolstack's domain configuration: a parser for the subset of xl.cfg(5) that vtlab's
 * machines use, and a writer that produces text the parser reads back to the same value.
 *
 * Syntax (xl.cfg(5), "Syntax"): one `KEY = VALUE` setting per line (a trailing `;` is allowed),
 * `#` starts a comment that runs to the end of the line, and a VALUE is a string in single or
 * double quotes, an integer (decimal or `0x` hexadecimal), or a list `[ VALUE, VALUE, ... ]` that
 * may span lines and may end with a trailing comma. Double-quoted strings take the escapes
 * `\\ \" \' \n \t`; single-quoted strings are literal. A string may not span lines.
 *
 * Disk entries follow xl-disk-configuration(5): comma-separated `key=value` pairs and positional
 * parameters in the order target, format, vdev, access (an empty positional takes the default);
 * `target=` must come last and takes the rest of the spec, commas included.
 *
 * Vif entries follow xl-network-configuration(5): comma-separated `key=value` pairs; only `mac`
 * and `bridge` are modelled (`parseVifSpec`).
 *
 * Relative paths (kernel, ramdisk, disk targets, serial files) are returned exactly as written: the
 * caller resolves them against the directory of the file. This module does no file access.
 *
 * Errors: configuration files are written by the operator, not by a guest, so a bad one is
 * reported by throwing a `ConfigError` naming the file, the line (1-based; 0 when the problem is
 * the file as a whole, such as a missing key) and the key involved (a line that has no key, such
 * as a syntax error, is named by its line and quoted). Whatever the message echoes back of the
 * file (a value, a path, the rest of a line) is escaped and cut short (`echoInput`): no raw
 * control characters, and a multi-megabyte line stays a one-line message. A UTF-8 byte-order
 * mark at the start of the file is skipped.
 */
import { echoInput, formatBdf } from "@vtlab/arch";
import { MAX_CMDLINE } from "../builder/pvh.js";
import { parsePciBdf } from "../passthrough/pci.js";
import { GUEST_MEMORY_MAX_MIB, GUEST_MEMORY_MIN_MIB } from "../builder/layout.js";

/**
 * A disk attached to the guest: a raw image on the primary master, named `hda` or `xvda` (as on
 * Xen HVM, the one image is both the emulated IDE disk and a PV vbd with the vdev's devid, until
 * the guest unplugs the emulated one: toolstack/vbd.ts).
 */
export interface DiskConfig {
  /** The image path as written in the file. */
  readonly target: string;
  readonly format: "raw";
  readonly vdev: "hda" | "xvda";
  readonly access: "rw" | "ro";
}

/**
 * A network interface (xl-network-configuration(5)): a vif whose backend is dom0's netback,
 * its port on the host bridge `bridge`. Only `mac` and `bridge` are modelled.
 */
export interface VifConfig {
  /** `mac=`: six hex octets separated by colons, unicast; absent: the toolstack picks one (00:16:3e:...). */
  readonly mac?: string;
  /** `bridge=` (default "xenbr0", libxl's default). */
  readonly bridge: string;
}

/** libxl's default bridge for a vif. */
export const VIF_DEFAULT_BRIDGE = "xenbr0";

/** Where the guest's serial port (COM1) goes. */
export type SerialConfig =
  | { readonly kind: "pty" }
  | { readonly kind: "none" }
  | { readonly kind: "file"; readonly path: string };

/** What to do when the domain crashes (xl.cfg(5) `on_crash`). */
export type OnCrashAction = "destroy" | "preserve" | "restart";

export interface DomainConfig {
  /** `name`: the domain name, [A-Za-z0-9_.-]+. */
  readonly name: string;
  /** `memory`: guest RAM in MiB, CONFIG_MEMORY_MIN_MIB..CONFIG_MEMORY_MAX_MIB (2..1048576). */
  readonly memory: number;
  /** `vcpus`: 1..64 (default 1). */
  readonly vcpus: number;
  /** `builder` (`type` in newer xl): only "hvm". */
  readonly builder: "hvm";
  /** `hap`: hardware-assisted paging (EPT) when true, shadow paging when false (default 1). */
  readonly hap: boolean;
  /** `acpi`: ACPI tables for a PVH kernel (builder/acpi.ts), 0 or 1 (default 1, as libxl's). */
  readonly acpi: boolean;
  /**
   * `shadow_memory`: MiB for the shadow pool of a `hap = 0` domain, 1..65536 (default: libxl's,
   * 1 MiB per vCPU plus 8 KiB per MiB of RAM; `requiredShadowMemoryKiB`).
   */
  readonly shadowMemory?: number;
  /** `kernel`: the ELF image to boot directly. */
  readonly kernel: string;
  /** `cmdline`: the kernel command line (default ""). */
  readonly cmdline: string;
  /** `ramdisk`: the initial ramdisk, handed to a PVH kernel as a module in hvm_start_info (absent: none). */
  readonly ramdisk?: string;
  /** `disk`: the disks, in file order (default none). */
  readonly disk: readonly DiskConfig[];
  /** `vif`: the network interfaces, in file order (devid 0, 1, ...); absent or empty: none. */
  readonly vif?: readonly VifConfig[];
  /**
   * `pci`: host PCI devices to assign (xl.cfg(5) `pci = [ "BB:DD.F", "DDDD:BB:DD.F" ]`), in file
   * order; absent: none. Options (",permissive=1", ...) and virtual slots ("@vslot") are not
   * supported and are rejected.
   */
  readonly pci?: readonly string[];
  /** `serial`: "pty" (default), "none" or "file:PATH". */
  readonly serial: SerialConfig;
  /** `on_crash` (default "destroy"). */
  readonly onCrash: OnCrashAction;
  /** `weight`: the credit scheduler weight, 1..65535 (default 256). */
  readonly weight: number;
  /**
   * `xen_platform_pci`: 1 puts the Xen platform PCI device (00:03.0) in the machine, 0 leaves it
   * out (xl.cfg(5); absent: the default, 1).
   */
  readonly xenPlatformPci?: boolean;
  /**
   * `vtlab_xen_selftest`: vtlab's own key, not xl's. 1 attaches the dom0 peer of the xentest
   * self-test guest (xen/selftest_peer.ts), which answers the guest's console handshake
   * `xen-selftest: grant <ref> evtchn <port>` (absent: no peer).
   */
  readonly xenSelftest?: boolean;
}

/** A configuration file that cannot be used; `line` is 0 when the whole file is at fault. */
export class ConfigError extends Error {
  readonly file: string;
  readonly line: number;
  readonly key: string | undefined;
  /** The message without the `file:line: key "k": ` prefix. */
  readonly detail: string;

  constructor(file: string, line: number, key: string | undefined, detail: string) {
    super(`${echoInput(file)}:${line}: ${key === undefined ? "" : `key "${echoInput(key, 40)}": `}${detail}`);
    this.name = "ConfigError";
    this.file = file;
    this.line = line;
    this.key = key;
    this.detail = detail;
  }
}

/**
 * Limits from xl.cfg(5) and vtlab's own (MiB of guest memory, vCPUs). `memory` is the range a
 * domain accepts (builder/layout.ts GUEST_MEMORY_MIN_MIB..GUEST_MEMORY_MAX_MIB): one pair of
 * constants for the parser and Hypervisor.createDomain.
 */
export const CONFIG_MEMORY_MIN_MIB = GUEST_MEMORY_MIN_MIB;
export const CONFIG_MEMORY_MAX_MIB = GUEST_MEMORY_MAX_MIB;
export const CONFIG_VCPUS_MAX = 64;
export const CONFIG_WEIGHT_MIN = 1;
export const CONFIG_WEIGHT_MAX = 65535;
/** Credit scheduler default weight (xl sched-credit). */
export const CONFIG_WEIGHT_DEFAULT = 256;

const NAME_RE = /^[A-Za-z0-9_.-]+$/;
const KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

// ---------------------------------------------------------------------------------------------
// Lexing and parsing into raw settings

type RawValue =
  | { readonly kind: "string"; readonly value: string; readonly line: number; readonly text: string }
  | { readonly kind: "int"; readonly value: number; readonly line: number; readonly text: string }
  | { readonly kind: "list"; readonly items: readonly RawValue[]; readonly line: number; readonly text: string };

interface RawSetting {
  readonly key: string;
  readonly line: number;
  readonly value: RawValue;
}

class Parser {
  private pos = 0;
  private line = 1;

  constructor(
    private readonly src: string,
    private readonly file: string,
  ) {
    if (src.charCodeAt(0) === 0xfeff) this.pos = 1; // a UTF-8 byte-order mark
  }

  private fail(line: number, key: string | undefined, detail: string): never {
    throw new ConfigError(this.file, line, key, detail);
  }

  /** Skips spaces, tabs, carriage returns and comments; newlines too when `newlines`. */
  private skip(newlines: boolean): void {
    const src = this.src;
    while (this.pos < src.length) {
      const c = src[this.pos];
      if (c === " " || c === "\t" || c === "\r") {
        this.pos++;
      } else if (c === "#") {
        while (this.pos < src.length && src[this.pos] !== "\n") this.pos++;
      } else if (c === "\n" && newlines) {
        this.pos++;
        this.line++;
      } else {
        return;
      }
    }
  }

  parse(): RawSetting[] {
    const out: RawSetting[] = [];
    const src = this.src;
    for (;;) {
      this.skip(true);
      if (this.pos >= src.length) return out;
      if (src[this.pos] === ";") {
        this.pos++;
        continue;
      }
      const line = this.line;
      const start = this.pos;
      while (this.pos < src.length && /[A-Za-z0-9_]/.test(src[this.pos] ?? "")) this.pos++;
      const key = src.slice(start, this.pos);
      if (key === "" || !KEY_RE.test(key)) {
        const rest = src.slice(start, src.indexOf("\n", start) < 0 ? src.length : src.indexOf("\n", start));
        this.fail(line, undefined, `syntax error: expected "key = value", got "${echoInput(rest.trim())}"`);
      }
      this.skip(false);
      if (src[this.pos] !== "=") {
        this.fail(line, key, `syntax error: expected "=" after the key`);
      }
      this.pos++;
      this.skip(false);
      const value = this.value(key);
      this.skip(false);
      if (src[this.pos] === ";") this.pos++;
      this.skip(false);
      if (this.pos < src.length && src[this.pos] !== "\n") {
        this.fail(this.line, key, `syntax error: unexpected "${echoInput(src[this.pos] ?? "")}" after the value`);
      }
      out.push({ key, line, value });
    }
  }

  private value(key: string): RawValue {
    const src = this.src;
    const c = src[this.pos];
    const line = this.line;
    const start = this.pos;
    if (c === '"' || c === "'") return this.string(key);
    if (c === "[") {
      this.pos++;
      const items: RawValue[] = [];
      for (;;) {
        this.skip(true);
        if (this.pos >= src.length) this.fail(line, key, `unterminated list (no "]")`);
        if (src[this.pos] === "]") {
          this.pos++;
          return { kind: "list", items, line, text: src.slice(start, this.pos) };
        }
        if (src[this.pos] === "[") this.fail(this.line, key, "lists cannot be nested");
        items.push(this.value(key));
        this.skip(true);
        if (this.pos >= src.length) this.fail(line, key, `unterminated list (no "]")`);
        if (src[this.pos] === ",") {
          this.pos++;
        } else if (src[this.pos] !== "]") {
          this.fail(this.line, key, `syntax error in list: expected "," or "]", got "${echoInput(src[this.pos] ?? "")}"`);
        }
      }
    }
    // A bare word: an integer, or something we report as a wrong type.
    while (this.pos < src.length && /[^\s,\];#]/.test(src[this.pos] ?? "")) this.pos++;
    const text = src.slice(start, this.pos);
    if (text === "") this.fail(line, key, "syntax error: missing value");
    const n = parseInteger(text);
    if (n === undefined) {
      this.fail(line, key, `syntax error: "${echoInput(text)}" is not a quoted string, an integer or a list`);
    }
    return { kind: "int", value: n, line, text };
  }

  private string(key: string): RawValue {
    const src = this.src;
    const quote = src[this.pos];
    const line = this.line;
    const start = this.pos;
    this.pos++;
    let value = "";
    for (;;) {
      if (this.pos >= src.length || src[this.pos] === "\n") {
        this.fail(line, key, `unterminated string (no closing ${quote ?? ""})`);
      }
      const c = src[this.pos] ?? "";
      if (c === quote) {
        this.pos++;
        return { kind: "string", value, line, text: src.slice(start, this.pos) };
      }
      if (c === "\\" && quote === '"') {
        const e = src[this.pos + 1];
        const decoded = e === "n" ? "\n" : e === "t" ? "\t" : e === "\\" || e === '"' || e === "'" ? e : undefined;
        if (decoded === undefined) {
          this.fail(line, key, `unknown escape "${echoInput(`\\${e === undefined || e === "\n" ? "" : e}`)}" in string`);
        }
        value += decoded;
        this.pos += 2;
        continue;
      }
      value += c;
      this.pos++;
    }
  }
}

function parseInteger(text: string): number | undefined {
  let neg = false;
  let t = text;
  if (t.startsWith("-")) {
    neg = true;
    t = t.slice(1);
  }
  let n: number;
  if (/^0[xX][0-9A-Fa-f]+$/.test(t)) n = parseInt(t.slice(2), 16);
  else if (/^[0-9]+$/.test(t)) n = parseInt(t, 10);
  else return undefined;
  if (!Number.isSafeInteger(n)) return undefined;
  return neg ? -n : n;
}

// ---------------------------------------------------------------------------------------------
// Typing the settings

const KNOWN_KEYS = [
  "name",
  "memory",
  "vcpus",
  "builder",
  "hap",
  "acpi",
  "shadow_memory",
  "kernel",
  "cmdline",
  "ramdisk",
  "disk",
  "serial",
  "on_crash",
  "weight",
  "xen_platform_pci",
  "vtlab_xen_selftest",
  "vif",
  "pci",
] as const;
type KnownKey = (typeof KNOWN_KEYS)[number];

function isKnownKey(key: string): key is KnownKey {
  return (KNOWN_KEYS as readonly string[]).includes(key);
}

/**
 * Parses an xl.cfg-style domain configuration. `file` is used only in error messages.
 * Throws `ConfigError` on the first problem found.
 */
export function parseDomainConfig(text: string, file: string): DomainConfig {
  const settings = new Parser(text, file).parse();
  const seen = new Map<KnownKey, RawSetting>();
  for (const s of settings) {
    if (!isKnownKey(s.key)) throw new ConfigError(file, s.line, s.key, "unknown key");
    const prev = seen.get(s.key);
    if (prev !== undefined) {
      throw new ConfigError(file, s.line, s.key, `duplicate key (first set on line ${prev.line})`);
    }
    seen.set(s.key, s);
  }

  const fail = (s: RawSetting, detail: string): never => {
    throw new ConfigError(file, s.value.line, s.key, detail);
  };
  /** A path value: not empty, no NUL (no file can have one); `what` says which part ("", "disk target "). */
  const path = (s: RawSetting, p: string, what: string, line = s.value.line): string => {
    if (p === "") throw new ConfigError(file, line, s.key, `empty ${what}path`);
    if (p.includes("\0")) throw new ConfigError(file, line, s.key, `${what}path "${echoInput(p)}" contains a NUL character`);
    return p;
  };
  const required = (key: KnownKey): RawSetting => {
    const s = seen.get(key);
    if (s === undefined) throw new ConfigError(file, 0, key, "missing required key");
    return s;
  };
  const str = (s: RawSetting, what: string): string =>
    s.value.kind === "string" ? s.value.value : fail(s, `expected ${what}, got ${quoteText(s.value)}`);
  const int = (s: RawSetting, what: string, min: number, max: number): number => {
    if (s.value.kind !== "int") return fail(s, `expected ${what}, got ${quoteText(s.value)}`);
    const n = s.value.value;
    if (n < min || n > max) return fail(s, `${n} is out of range ${min}..${max}`);
    return n;
  };
  const oneOf = <T extends string>(s: RawSetting, allowed: readonly T[]): T => {
    const v = str(s, `one of ${allowed.map((a) => `"${a}"`).join(", ")}`);
    const hit = allowed.find((a) => a === v);
    return hit ?? fail(s, `expected one of ${allowed.map((a) => `"${a}"`).join(", ")}, got "${echoInput(v)}"`);
  };

  const nameS = required("name");
  const name = str(nameS, "a quoted string");
  if (!NAME_RE.test(name)) fail(nameS, `bad domain name "${echoInput(name)}": use only A-Z a-z 0-9 _ . -`);

  const memory = int(required("memory"), "an integer number of MiB", CONFIG_MEMORY_MIN_MIB, CONFIG_MEMORY_MAX_MIB);

  const vcpusS = seen.get("vcpus");
  const vcpus = vcpusS === undefined ? 1 : int(vcpusS, "an integer number of vCPUs", 1, CONFIG_VCPUS_MAX);

  const builderS = seen.get("builder");
  if (builderS !== undefined) {
    const b = str(builderS, "a quoted string");
    if (b !== "hvm") fail(builderS, `unsupported builder "${echoInput(b)}" (only "hvm")`);
  }

  const hapS = seen.get("hap");
  const hap = hapS === undefined ? true : int(hapS, "0 or 1", 0, 1) === 1;
  const acpiS = seen.get("acpi");
  const acpi = acpiS === undefined ? true : int(acpiS, "0 or 1", 0, 1) === 1;
  const shadowS = seen.get("shadow_memory");
  const shadow = shadowS === undefined ? {} : { shadowMemory: int(shadowS, "an integer number of MiB", 1, CONFIG_MEMORY_MAX_MIB) };

  const kernelS = required("kernel");
  const kernel = path(kernelS, str(kernelS, "a quoted path"), "");

  const cmdlineS = seen.get("cmdline");
  const cmdline = cmdlineS === undefined ? "" : str(cmdlineS, "a quoted string");
  if (cmdlineS !== undefined) {
    // The builder's limits (builder/pvh.ts), checked here so that the message names the line.
    if (cmdline.length > MAX_CMDLINE) fail(cmdlineS, `${cmdline.length} characters is longer than the ${MAX_CMDLINE}-character limit`);
    for (let i = 0; i < cmdline.length; i++) {
      const c = cmdline.charCodeAt(i);
      if (c < 0x20 || c > 0x7e) fail(cmdlineS, `character ${i} (code ${c}) is not printable ASCII`);
    }
  }

  const ramdiskS = seen.get("ramdisk");
  const ramdisk = ramdiskS === undefined ? undefined : str(ramdiskS, "a quoted path");

  const diskS = seen.get("disk");
  const disk: DiskConfig[] = [];
  if (diskS !== undefined) {
    if (diskS.value.kind !== "list") fail(diskS, `expected a list of disk specs, got ${quoteText(diskS.value)}`);
    else {
      for (const item of diskS.value.items) {
        if (item.kind !== "string") {
          throw new ConfigError(file, item.line, "disk", `expected a quoted disk spec, got ${quoteText(item)}`);
        }
        const d = parseDiskSpec(item.value);
        if (typeof d === "string") throw new ConfigError(file, item.line, "disk", `bad disk spec "${echoInput(item.value)}": ${d}`);
        if (disk.some((o) => o.vdev === d.vdev)) {
          throw new ConfigError(file, item.line, "disk", `bad disk spec "${echoInput(item.value)}": vdev ${d.vdev} used twice`);
        }
        if (disk.length > 0) {
          throw new ConfigError(file, item.line, "disk", `bad disk spec "${echoInput(item.value)}": vdev ${d.vdev} is the primary master again (hda and xvda are one disk; only one is modelled)`);
        }
        path(diskS, d.target, "disk target ", item.line);
        disk.push(d);
      }
    }
  }

  const vifS = seen.get("vif");
  const vifs: VifConfig[] = [];
  if (vifS !== undefined) {
    if (vifS.value.kind !== "list") fail(vifS, `expected a list of vif specs, got ${quoteText(vifS.value)}`);
    else {
      for (const item of vifS.value.items) {
        if (item.kind !== "string") throw new ConfigError(file, item.line, "vif", `expected a quoted vif spec, got ${quoteText(item)}`);
        const v = parseVifSpec(item.value);
        if (typeof v === "string") throw new ConfigError(file, item.line, "vif", `bad vif spec "${echoInput(item.value)}": ${v}`);
        if (v.mac !== undefined && vifs.some((o) => o.mac === v.mac)) {
          throw new ConfigError(file, item.line, "vif", `bad vif spec "${echoInput(item.value)}": mac ${v.mac} used twice`);
        }
        vifs.push(v);
      }
    }
  }
  const vif = vifS === undefined ? {} : { vif: vifs };

  const pciS = seen.get("pci");
  const pcis: string[] = [];
  if (pciS !== undefined) {
    if (pciS.value.kind !== "list") fail(pciS, `expected a list of quoted PCI addresses, got ${quoteText(pciS.value)}`);
    else {
      for (const item of pciS.value.items) {
        if (item.kind !== "string") throw new ConfigError(file, item.line, "pci", `expected a quoted PCI address, got ${quoteText(item)}`);
        const id = parsePciBdf(item.value);
        if (typeof id === "string") {
          // parsePciBdf's reason quotes the entry: only when the entry is short and printable.
          const plain = item.value.length <= 40 && echoInput(item.value) === item.value;
          throw new ConfigError(file, item.line, "pci", `bad pci entry ${plain ? id : `"${echoInput(item.value)}": not a PCI address; give [DDDD:]BB:DD.F in hex, e.g. "00:04.0"`}`);
        }
        if (pcis.some((o) => parsePciBdf(o) === id)) throw new ConfigError(file, item.line, "pci", `bad pci entry "${echoInput(item.value)}": ${formatBdf(id)} listed twice`);
        pcis.push(item.value);
      }
    }
  }
  const pci = pciS === undefined ? {} : { pci: pcis };

  const serialS = seen.get("serial");
  let serial: SerialConfig = { kind: "pty" };
  if (serialS !== undefined) {
    const v = str(serialS, 'a quoted "pty", "none" or "file:PATH"');
    if (v === "pty") serial = { kind: "pty" };
    else if (v === "none") serial = { kind: "none" };
    else if (v.startsWith("file:") && v.length > 5) serial = { kind: "file", path: path(serialS, v.slice(5), "serial file ") };
    else fail(serialS, `expected "pty", "none" or "file:PATH", got "${echoInput(v)}"`);
  }

  const onCrashS = seen.get("on_crash");
  const onCrash: OnCrashAction =
    onCrashS === undefined ? "destroy" : oneOf(onCrashS, ["destroy", "preserve", "restart"] as const);

  const weightS = seen.get("weight");
  const weight =
    weightS === undefined
      ? CONFIG_WEIGHT_DEFAULT
      : int(weightS, "an integer weight", CONFIG_WEIGHT_MIN, CONFIG_WEIGHT_MAX);

  const platformS = seen.get("xen_platform_pci");
  const platform = platformS === undefined ? {} : { xenPlatformPci: int(platformS, "0 or 1", 0, 1) === 1 };

  const selftestS = seen.get("vtlab_xen_selftest");
  const selftest = selftestS === undefined ? {} : { xenSelftest: int(selftestS, "0 or 1", 0, 1) === 1 };

  return { name, memory, vcpus, builder: "hvm", hap, acpi, ...shadow, kernel, cmdline, ...(ramdisk !== undefined ? { ramdisk } : {}), disk, ...vif, ...pci, serial, onCrash, weight, ...platform, ...selftest };
}

function quoteText(v: RawValue): string {
  return v.kind === "string" ? echoInput(v.text) : `"${echoInput(v.text)}"`;
}

/**
 * Parses one xl-disk-configuration(5) spec. Returns the disk, or a reason string.
 * Flags (`cdrom`, `devtype=`, `backend=` ...) are not modelled and are rejected.
 */
export function parseDiskSpec(spec: string): DiskConfig | string {
  const params: { target?: string; format?: string; vdev?: string; access?: string } = {};
  const positional = ["target", "format", "vdev", "access"] as const;
  let nextPositional = 0;
  let rest = spec;
  for (;;) {
    const trimmedStart = rest.replace(/^\s+/, "");
    if (trimmedStart.startsWith("target=")) {
      // xl-disk-configuration(5): `target=` comes last and takes the rest, commas and all.
      if (params.target !== undefined) return "target given twice";
      params.target = trimmedStart.slice("target=".length);
      break;
    }
    const comma = rest.indexOf(",");
    const part = (comma < 0 ? rest : rest.slice(0, comma)).trim();
    rest = comma < 0 ? "" : rest.slice(comma + 1);
    const eq = part.indexOf("=");
    if (eq >= 0) {
      const k = part.slice(0, eq).trim();
      const v = part.slice(eq + 1).trim();
      if (k !== "format" && k !== "vdev" && k !== "access") return `unsupported parameter "${echoInput(k)}"`;
      if (params[k] !== undefined) return `${k} given twice`;
      params[k] = v;
    } else {
      // A positional parameter: fills the next unspecified one; empty means "default".
      while (nextPositional < positional.length && params[positional[nextPositional] ?? "access"] !== undefined) {
        nextPositional++;
      }
      const slot = positional[nextPositional];
      if (slot === undefined) return part === "" ? "too many parameters" : `unexpected parameter "${echoInput(part)}"`;
      nextPositional++;
      if (part !== "") params[slot] = part;
      else if (slot === "target") return "empty target";
    }
    if (comma < 0) break;
  }
  if (params.target === undefined || params.target === "") return "no target";
  const format = params.format ?? "raw";
  if (format !== "raw") return `unsupported format "${echoInput(format)}" (only raw)`;
  if (params.vdev === undefined) return "no vdev";
  const vdev = params.vdev;
  if (vdev !== "hda" && vdev !== "xvda") return `unsupported vdev "${echoInput(vdev)}" (only hda or xvda, the primary master)`;
  const a = params.access ?? "rw";
  let access: "rw" | "ro";
  if (a === "rw" || a === "w") access = "rw";
  else if (a === "ro" || a === "r") access = "ro";
  else return `bad access "${echoInput(a)}" (rw or ro)`;
  return { target: params.target, format: "raw", vdev, access };
}

const MAC_RE = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/;
const BRIDGE_RE = /^[A-Za-z0-9_.-]{1,15}$/;

/**
 * Parses one xl-network-configuration(5) spec: comma-separated `key=value` pairs (whitespace
 * around them ignored, an empty spec is a vif with every default). Returns the vif or a reason
 * naming the bad field. Keys other than `mac` and `bridge` (`model`, `type`, `ip`, `rate`,
 * `script` ...) are not modelled and are rejected.
 */
export function parseVifSpec(spec: string): VifConfig | string {
  const params: { mac?: string; bridge?: string } = {};
  for (const raw of spec.split(",")) {
    const part = raw.trim();
    if (part === "") continue;
    const eq = part.indexOf("=");
    if (eq < 0) return `expected key=value, got "${echoInput(part)}"`;
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (k !== "mac" && k !== "bridge") return `unsupported parameter "${echoInput(k)}" (only mac and bridge)`;
    if (params[k] !== undefined) return `${k} given twice`;
    params[k] = v;
  }
  if (params.mac !== undefined) {
    if (!MAC_RE.test(params.mac)) return `bad mac "${echoInput(params.mac)}" (six hex octets separated by colons, as 00:16:3e:00:00:01)`;
    if (parseInt(params.mac.slice(0, 2), 16) & 1) return `bad mac "${params.mac}": a multicast address`;
    if (/^00(:00){5}$/.test(params.mac)) return `bad mac "${params.mac}": the zero address`;
  }
  const bridge = params.bridge ?? VIF_DEFAULT_BRIDGE;
  if (!BRIDGE_RE.test(bridge)) return `bad bridge "${echoInput(bridge)}" (1..15 of A-Z a-z 0-9 _ . -, as a Linux interface name)`;
  return params.mac !== undefined ? { mac: params.mac.toLowerCase(), bridge } : { bridge };
}

// ---------------------------------------------------------------------------------------------
// Writing

function quote(s: string): string {
  let out = '"';
  for (const c of s) {
    if (c === "\\" || c === '"') out += `\\${c}`;
    else if (c === "\n") out += "\\n";
    else if (c === "\t") out += "\\t";
    else out += c;
  }
  return `${out}"`;
}

/** Writes `cfg` as an xl.cfg file that `parseDomainConfig` reads back to an equal value. */
export function formatDomainConfig(cfg: DomainConfig): string {
  const lines = [
    `name = ${quote(cfg.name)}`,
    `builder = ${quote(cfg.builder)}`,
    `memory = ${cfg.memory}`,
    `vcpus = ${cfg.vcpus}`,
    `hap = ${cfg.hap ? 1 : 0}`,
    `acpi = ${cfg.acpi ? 1 : 0}`,
    ...(cfg.shadowMemory !== undefined ? [`shadow_memory = ${cfg.shadowMemory}`] : []),
    `kernel = ${quote(cfg.kernel)}`,
    `cmdline = ${quote(cfg.cmdline)}`,
  ];
  if (cfg.ramdisk !== undefined) lines.push(`ramdisk = ${quote(cfg.ramdisk)}`);
  if (cfg.disk.length > 0) {
    lines.push("disk = [");
    for (const d of cfg.disk) {
      lines.push(`  ${quote(`format=${d.format}, vdev=${d.vdev}, access=${d.access}, target=${d.target}`)},`);
    }
    lines.push("]");
  }
  if (cfg.vif !== undefined) {
    lines.push("vif = [");
    for (const v of cfg.vif) lines.push(`  ${quote([...(v.mac !== undefined ? [`mac=${v.mac}`] : []), `bridge=${v.bridge}`].join(","))},`);
    lines.push("]");
  }
  const serial = cfg.serial.kind === "file" ? `file:${cfg.serial.path}` : cfg.serial.kind;
  lines.push(`serial = ${quote(serial)}`);
  lines.push(`on_crash = ${quote(cfg.onCrash)}`);
  lines.push(`weight = ${cfg.weight}`);
  if (cfg.xenPlatformPci !== undefined) lines.push(`xen_platform_pci = ${cfg.xenPlatformPci ? 1 : 0}`);
  if (cfg.xenSelftest !== undefined) lines.push(`vtlab_xen_selftest = ${cfg.xenSelftest ? 1 : 0}`);
  return `${lines.join("\n")}\n`;
}
