/**
 * Machines from `xl.cfg`-style files: read the file, parse it with the toolstack's parser,
 * resolve the kernel and disk paths against the file's directory, and build the domain. Every
 * problem is an error that names the file (and, from the parser, the line and key).
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync, writeSync, appendFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { HOST_NVME_SECTORS, HOST_PCI_DEVICES, hostPciDevices } from "./host.js";
import {
  SECTOR_SIZE,
  domainOptions,
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

/** A raw disk image file, read and written in place (ro: writes are refused by the device's caller). */
export class FileBlockBackend implements BlockBackend {
  readonly sectors: number;
  private readonly fd: number;
  constructor(
    readonly path: string,
    readonly writable: boolean,
  ) {
    this.fd = openSync(path, writable ? "r+" : "r");
    const size = fstatSync(this.fd).size;
    if (size < SECTOR_SIZE || size % SECTOR_SIZE !== 0) {
      closeSync(this.fd);
      throw new MachineError(`disk ${path}: ${size} bytes is not a whole number of 512-byte sectors`);
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

export interface LoadedMachine {
  readonly file: string;
  readonly config: DomainConfig;
  readonly domain: Domain;
  readonly disks: FileBlockBackend[];
}

/** Read and parse the config file `file` (errors name the file; the parser's name the line and key too). */
export function readMachineConfig(file: string): DomainConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new MachineError(`${file}: cannot read the config file (${(e as Error).message})`);
  }
  return parseDomainConfig(text, file);
}

/** Where a `serial = "file:PATH"` console goes (resolved against the config's directory), or undefined. */
export function serialFilePath(file: string, config: DomainConfig): string | undefined {
  return config.serial.kind === "file" ? resolve(dirname(file), config.serial.path) : undefined;
}

/** Start a `serial = "file:PATH"` console empty (a new machine's console; it is appended to). */
export function truncateSerialFile(file: string, config: DomainConfig): void {
  const serialFile = serialFilePath(file, config);
  if (serialFile !== undefined) writeFileSync(serialFile, "");
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
  /** Console text of the domain: to `onConsole` for serial = "pty", appended to the file for "file:PATH", dropped for "none". */
  readonly onConsole: (text: string) => void;
  /** Close the disk images. */
  readonly release: () => void;
}

/**
 * Read the kernel and open the disks `config` names, paths resolved against the directory of
 * `file`. The serial file is appended to (create it empty first with `serialFilePath`).
 */
export function machineResources(file: string, config: DomainConfig, onConsole: (name: string, text: string) => void): MachineResources {
  const dir = dirname(file);
  const kernelPath = resolve(dir, config.kernel);
  let kernel: Uint8Array;
  try {
    kernel = new Uint8Array(readFileSync(kernelPath));
  } catch (e) {
    throw new MachineError(`${file}: kernel "${config.kernel}": cannot read ${kernelPath} (${(e as Error).message})`);
  }
  let ramdisk: Uint8Array | undefined;
  if (config.ramdisk !== undefined) {
    const ramdiskPath = resolve(dir, config.ramdisk);
    try {
      ramdisk = new Uint8Array(readFileSync(ramdiskPath));
    } catch (e) {
      throw new MachineError(`${file}: ramdisk "${config.ramdisk}": cannot read ${ramdiskPath} (${(e as Error).message})`);
    }
  }
  const disks: FileBlockBackend[] = [];
  const release = () => {
    for (const d of disks.splice(0)) d.close();
  };
  for (const d of config.disk) {
    const p = resolve(dir, d.target);
    try {
      disks.push(new FileBlockBackend(p, d.access === "rw"));
    } catch (e) {
      release();
      if (e instanceof MachineError) throw new MachineError(`${file}: ${e.message}`);
      throw new MachineError(`${file}: disk "${d.target}": cannot open ${p} (${(e as Error).message}); create it with: truncate -s 8M ${p}`);
    }
  }
  const serial = config.serial;
  const serialFile = serialFilePath(file, config);
  return {
    kernel,
    ...(ramdisk !== undefined ? { ramdisk } : {}),
    ...(disks[0] !== undefined ? { disk: disks[0] } : {}),
    disks,
    onConsole: (t) => {
      if (serial.kind === "pty") onConsole(config.name, t);
      else if (serialFile !== undefined) appendFileSync(serialFile, t);
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
  const r = machineResources(file, config, onConsole);
  let domain: Domain;
  try {
    truncateSerialFile(file, config);
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
