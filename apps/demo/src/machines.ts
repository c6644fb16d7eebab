/**
 * Machines from `xl.cfg`-style files: read the file, parse it with the toolstack's parser,
 * resolve the kernel and disk paths against the file's directory, and build the domain. Every
 * problem is an error that names the file (and, from the parser, the line and key).
 *
 * Files a user names are opened without blocking and checked before they are read: the config
 * file and the kernel must be regular files of bounded size (a FIFO, /dev/zero or /dev/urandom is
 * refused by name instead of hanging the host), disks regular files. The serial file
 * (`serial = "file:PATH"`) is opened at create time, non-blocking: a missing directory, a
 * directory, a FIFO nobody reads or a file that cannot be written is a MachineError then; a write
 * that fails later (a full disk, an I/O error, a FIFO whose reader stopped reading) drops that
 * console text, counted and reported once per kind of error, and never ends the host.
 */
import { closeSync, constants, fstatSync, openSync, readSync, writeSync, type Stats } from "node:fs";
import { dirname, resolve } from "node:path";
import { HOST_NVME_SECTORS, HOST_PCI_DEVICES, hostPciDevices } from "./host.js";
import {
  SECTOR_SIZE,
  domainOptions,
  echoInput,
  parseDomainConfig,
  type BlockBackend,
  type Domain,
  type DomainConfig,
  type DomainResources,
  type Hypervisor,
  type IommuOption,
} from "@vtlab/hypervisor";

export { HOST_NVME_SECTORS, HOST_PCI_DEVICES, hostPciDevices };

export class MachineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MachineError";
  }
}

/** The largest config file read (bytes): xl.cfg files are a few hundred bytes. */
export const CONFIG_FILE_MAX_BYTES = 1024 * 1024;
/** The largest kernel image read (bytes). */
export const KERNEL_FILE_MAX_BYTES = 512 * 1024 * 1024;

/** What kind of file `st` describes, for messages ("a directory", "a FIFO", ...). */
export function fileKind(st: Stats): string {
  if (st.isFile()) return "a regular file";
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a FIFO";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSocket()) return "a socket";
  return "not a regular file";
}

/** The reason of a failed file operation: the errno code and Node's text ("ENOENT: no such file or directory, open '...'"). */
function reason(e: unknown): string {
  if (e instanceof Error) return echoInput(e.message, 300);
  return echoInput(String(e), 300);
}

/**
 * Read the regular file `path`, at most `max` bytes, without blocking on a FIFO or reading an
 * endless device. Returns the bytes, or why not ("/dev/zero is a character device, not a
 * regular file", "ENOENT: no such file or directory, open '...'") for the caller to prefix.
 */
export function readBoundedFile(path: string, max: number): Uint8Array | string {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    return reason(e);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return `${echoInput(path)} is ${fileKind(st)}, not a regular file`;
    if (st.size > max) return `${echoInput(path)} is ${st.size} bytes, more than the ${max}-byte limit`;
    const out = new Uint8Array(st.size);
    let n = 0;
    while (n < out.length) {
      const got = readSync(fd, out, n, out.length - n, n);
      if (got === 0) break;
      n += got;
    }
    return n === out.length ? out : out.subarray(0, n);
  } catch (e) {
    return reason(e);
  } finally {
    closeSync(fd);
  }
}

/** A raw disk image file, read and written in place (ro: writes are refused by the device's caller). */
export class FileBlockBackend implements BlockBackend {
  readonly sectors: number;
  private readonly fd: number;
  constructor(
    readonly path: string,
    readonly writable: boolean,
  ) {
    // O_NONBLOCK: a FIFO opened read-only would wait for a writer; it is refused below anyway.
    this.fd = openSync(path, (writable ? constants.O_RDWR : constants.O_RDONLY) | constants.O_NONBLOCK);
    const st = fstatSync(this.fd);
    if (!st.isFile()) {
      closeSync(this.fd);
      throw new MachineError(`disk ${echoInput(path)}: it is ${fileKind(st)}, not a regular file (raw images only)`);
    }
    const size = st.size;
    if (size < SECTOR_SIZE || size % SECTOR_SIZE !== 0) {
      closeSync(this.fd);
      throw new MachineError(`disk ${echoInput(path)}: ${size} bytes is not a whole number of 512-byte sectors`);
    }
    this.sectors = size / SECTOR_SIZE;
  }
  read(sector: number, into: Uint8Array): void {
    readSync(this.fd, into, 0, into.length, sector * SECTOR_SIZE);
  }
  write(sector: number, from: Uint8Array): void {
    // Modelled more simply than a read-only drive: writes to an ro image are dropped, not aborted.
    if (this.writable) writeSync(this.fd, from, 0, from.length, sector * SECTOR_SIZE);
  }
  close(): void {
    closeSync(this.fd);
  }
}

/**
 * A `serial = "file:PATH"` console: the file opened once, write-only, appending, non-blocking (a
 * FIFO with no reader is refused at open with ENXIO; one whose reader stops reading fills and
 * then drops). A write that fails or is short drops the rest of that text: `droppedBytes` counts
 * it, and `onError` hears of each kind of error (errno code) once, with the count so far.
 */
export class SerialFileSink {
  /** Bytes of console text that could not be written. */
  droppedBytes = 0;
  /** Failed or short writes. */
  failedWrites = 0;
  private fd: number | undefined;
  private readonly reported = new Set<string>();
  private readonly encoder = new TextEncoder();

  /** Opens `path` (truncated when `truncate`); throws MachineError naming `what` and the path. */
  constructor(
    readonly path: string,
    readonly what: string,
    truncate: boolean,
    private readonly onError: (message: string) => void = () => {},
  ) {
    let fd: number;
    try {
      fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_NONBLOCK | (truncate ? constants.O_TRUNC : 0), 0o666);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      const hint = code === "ENXIO" ? " (a FIFO that nobody reads: start its reader first)" : code === "ENOENT" ? " (is the directory there?)" : "";
      throw new MachineError(`${what}: cannot open ${echoInput(path)} for writing (${reason(e)})${hint}`);
    }
    const st = fstatSync(fd);
    if (!st.isFile() && !st.isFIFO() && !st.isCharacterDevice()) {
      closeSync(fd);
      throw new MachineError(`${what}: ${echoInput(path)} is ${fileKind(st)}; give a regular file, a FIFO or a character device`);
    }
    this.fd = fd;
  }

  /** Append `text` (UTF-8); never throws. */
  write(text: string): void {
    const bytes = this.encoder.encode(text);
    if (this.fd === undefined) {
      this.drop(bytes.length, "EBADF", "the file is closed");
      return;
    }
    let n = 0;
    try {
      while (n < bytes.length) {
        const wrote = writeSync(this.fd, bytes, n, bytes.length - n);
        if (wrote <= 0) break;
        n += wrote;
      }
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      this.drop(bytes.length - n, typeof code === "string" ? code : "error", reason(e));
      return;
    }
    if (n < bytes.length) this.drop(bytes.length - n, "short", "a short write");
  }

  private drop(bytes: number, code: string, why: string): void {
    this.droppedBytes += bytes;
    this.failedWrites++;
    if (this.reported.has(code)) return;
    this.reported.add(code);
    this.onError(`${this.what}: writing ${echoInput(this.path)} failed (${why}); console output is dropped while it fails (${this.droppedBytes} bytes so far)`);
  }

  /** Close the file; a summary of what was dropped goes to `onError` when anything was. */
  close(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      // Closing can report a deferred write error (EIO); the text is already counted or gone.
    }
    this.fd = undefined;
    if (this.droppedBytes > 0) this.onError(`${this.what}: ${this.droppedBytes} bytes of console output to ${echoInput(this.path)} were dropped (${this.failedWrites} failed writes)`);
  }
}

export interface LoadedMachine {
  readonly file: string;
  readonly config: DomainConfig;
  readonly domain: Domain;
  readonly disks: FileBlockBackend[];
}

/** Read and parse the config file `file` (errors name the file; the parser's name the line and key too). */
export function readMachineConfig(file: string): DomainConfig {
  const bytes = readBoundedFile(file, CONFIG_FILE_MAX_BYTES);
  if (typeof bytes === "string") throw new MachineError(`${echoInput(file)}: cannot read the config file (${bytes})`);
  return parseDomainConfig(new TextDecoder().decode(bytes), file);
}

/** Where a `serial = "file:PATH"` console goes (resolved against the config's directory), or undefined. */
export function serialFilePath(file: string, config: DomainConfig): string | undefined {
  return config.serial.kind === "file" ? resolve(dirname(file), config.serial.path) : undefined;
}

/** `serial "file:PATH"` as messages name it, with the config file. */
function serialWhat(file: string, config: DomainConfig): string {
  return `${echoInput(file)}: serial "file:${config.serial.kind === "file" ? echoInput(config.serial.path) : ""}"`;
}

/**
 * Start a `serial = "file:PATH"` console empty (a new machine's console; each incarnation then
 * appends to it). Throws MachineError when the file cannot be opened for writing.
 */
export function truncateSerialFile(file: string, config: DomainConfig): void {
  const serialFile = serialFilePath(file, config);
  if (serialFile !== undefined) new SerialFileSink(serialFile, serialWhat(file, config), true).close();
}

/**
 * What a domain built from `config` (read from `file`) needs: the kernel read, the disks opened,
 * the console routed. It is the toolstack's `DomainResources` (`disk` is the first of `disks`).
 */
export interface MachineResources extends DomainResources {
  readonly kernel: Uint8Array;
  /** The primary-master disk: the first of `disks`. */
  readonly disk?: FileBlockBackend;
  readonly disks: FileBlockBackend[];
  /** The serial file's sink, for serial = "file:PATH" (its drop counters). */
  readonly serialSink?: SerialFileSink;
  /** Console text of the domain: to `onConsole` for serial = "pty", appended to the file for "file:PATH", dropped for "none". */
  readonly onConsole: (text: string) => void;
  /** Close the disk images and the serial file. */
  readonly release: () => void;
}

/**
 * Read the kernel and open the disks and the serial file `config` names, paths resolved against
 * the directory of `file`. The serial file is appended to (start it empty with
 * `truncateSerialFile`); its write failures go to `onWarning`. Throws MachineError.
 */
export function machineResources(file: string, config: DomainConfig, onConsole: (name: string, text: string) => void, onWarning: (message: string) => void = () => {}): MachineResources {
  const dir = dirname(file);
  const kernelPath = resolve(dir, config.kernel);
  const kernel = readBoundedFile(kernelPath, KERNEL_FILE_MAX_BYTES);
  if (typeof kernel === "string") throw new MachineError(`${echoInput(file)}: kernel "${echoInput(config.kernel)}": cannot read ${echoInput(kernelPath)} (${kernel})`);
  let ramdisk: Uint8Array | undefined;
  if (config.ramdisk !== undefined) {
    const ramdiskPath = resolve(dir, config.ramdisk);
    const r = readBoundedFile(ramdiskPath, KERNEL_FILE_MAX_BYTES);
    if (typeof r === "string") throw new MachineError(`${echoInput(file)}: ramdisk "${echoInput(config.ramdisk)}": cannot read ${echoInput(ramdiskPath)} (${r})`);
    ramdisk = r;
  }
  const disks: FileBlockBackend[] = [];
  let sink: SerialFileSink | undefined;
  const release = () => {
    for (const d of disks.splice(0)) d.close();
    sink?.close();
    sink = undefined;
  };
  for (const d of config.disk) {
    const p = resolve(dir, d.target);
    try {
      disks.push(new FileBlockBackend(p, d.access === "rw"));
    } catch (e) {
      release();
      if (e instanceof MachineError) throw new MachineError(`${echoInput(file)}: ${e.message}`);
      throw new MachineError(`${echoInput(file)}: disk "${echoInput(d.target)}": cannot open ${echoInput(p)} (${reason(e)}); create it with: truncate -s 8M ${echoInput(p)}`);
    }
  }
  const serial = config.serial;
  const serialFile = serialFilePath(file, config);
  if (serialFile !== undefined) {
    try {
      sink = new SerialFileSink(serialFile, serialWhat(file, config), false, onWarning);
    } catch (e) {
      release();
      throw e;
    }
  }
  const serialSink = sink;
  return {
    kernel,
    ...(ramdisk !== undefined ? { ramdisk } : {}),
    ...(disks[0] !== undefined ? { disk: disks[0] } : {}),
    disks,
    ...(serialSink !== undefined ? { serialSink } : {}),
    onConsole: (t) => {
      if (serial.kind === "pty") onConsole(config.name, t);
      else serialSink?.write(t);
    },
    release,
  };
}

/**
 * Parse `file` and create its domain in `hv` (the options from the toolstack's `domainOptions`);
 * console lines go to `onConsole`. A bare domain: nothing acts on its `on_crash` (a `Toolstack`
 * does, as `vtlab run` and `vtlab shell` use). Close `disks` when done with it.
 */
export function loadMachine(hv: Hypervisor, file: string, onConsole: (name: string, text: string) => void): LoadedMachine {
  const config = readMachineConfig(file);
  truncateSerialFile(file, config);
  const r = machineResources(file, config, onConsole);
  let domain: Domain;
  try {
    domain = hv.createDomain(domainOptions(config, r));
  } catch (e) {
    r.release();
    throw e;
  }
  return { file, config, domain, disks: r.disks };
}

/** Host options of `vtlab run` and `vtlab shell` from the command line: `--no-iommu`, `--iommu-flush`. */
export function iommuOption(noIommu: boolean, flush: string | undefined): IommuOption | string {
  if (flush !== undefined && flush !== "strict" && flush !== "deferred") return `--iommu-flush: "${flush}" is not strict or deferred`;
  if (noIommu) return flush === undefined ? false : "--iommu-flush makes no sense with --no-iommu";
  return { flush: flush ?? "strict" };
}
