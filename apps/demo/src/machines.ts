/**
 * Machines from `xl.cfg`-style files: read the file, parse it with the toolstack's parser,
 * resolve the kernel and disk paths against the file's directory, and build the domain. Every
 * problem is an error that names the file (and, from the parser, the line and key).
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync, writeSync, appendFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { SECTOR_SIZE, parseDomainConfig, type BlockBackend, type Domain, type DomainConfig, type Hypervisor } from "@vtlab/hypervisor";

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

/** Parse `file` and create its domain in `hv`; console lines go to `onConsole`. */
export function loadMachine(hv: Hypervisor, file: string, onConsole: (name: string, text: string) => void): LoadedMachine {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new MachineError(`${file}: cannot read the config file (${(e as Error).message})`);
  }
  const config = parseDomainConfig(text, file);
  const dir = dirname(file);
  const kernelPath = resolve(dir, config.kernel);
  let kernel: Uint8Array;
  try {
    kernel = new Uint8Array(readFileSync(kernelPath));
  } catch (e) {
    throw new MachineError(`${file}: kernel "${config.kernel}": cannot read ${kernelPath} (${(e as Error).message})`);
  }
  const disks: FileBlockBackend[] = [];
  for (const d of config.disk) {
    const p = resolve(dir, d.target);
    try {
      disks.push(new FileBlockBackend(p, d.access === "rw"));
    } catch (e) {
      if (e instanceof MachineError) throw new MachineError(`${file}: ${e.message}`);
      throw new MachineError(`${file}: disk "${d.target}": cannot open ${p} (${(e as Error).message}); create it with: truncate -s 8M ${p}`);
    }
  }
  const serial = config.serial;
  const serialFile = serial.kind === "file" ? resolve(dir, serial.path) : undefined;
  if (serialFile !== undefined) writeFileSync(serialFile, "");
  const domain = hv.createDomain({
    name: config.name,
    memoryMiB: config.memory,
    vcpus: config.vcpus,
    hap: config.hap,
    kernel,
    cmdline: config.cmdline,
    ...(disks[0] !== undefined ? { disk: disks[0] } : {}),
    weight: config.weight,
    onConsole: (t) => {
      if (serial.kind === "pty") onConsole(config.name, t);
      else if (serialFile !== undefined) appendFileSync(serialFile, t);
    },
  });
  return { file, config, domain, disks };
}

