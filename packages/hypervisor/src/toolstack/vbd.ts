/**
 * The host's PV disks as the toolstack sets them up (libxl's disk device add/remove): for each
 * `disk = [...]` entry of a domain a vbd (@vtlab/pv-backends' `VbdBackend`: its backend and
 * frontend directories in xenstore, blkback waiting in InitWait for the frontend), with the
 * devid of its `vdev` (xvda = 51712, hda = 768). Written at domain build, removed at destroy.
 *
 * As on Xen HVM, the same image is also the emulated primary-master ATA disk: an unmodified OS
 * uses that; one with PV drivers unplugs it through the platform device (ports 0x10, mask 1) and
 * talks to the vbd instead. Both paths serve the one `BlockBackend` the loader opened (xl's
 * image file or a memory disk), adapted to blkback's `BlkStorage` here.
 *
 * Simpler than libxl: no hotplug script, no `backendtype` (always blkback, type "phy"), one disk
 * per domain (the primary master, as the config allows), and the backend's requests are served
 * between scheduler slices by `poll()` (after dom0's event dispatch), a bounded batch per vbd
 * per poll so that one busy guest cannot starve the others.
 */
import { VbdBackend, type BlkStorage, type VbdStore } from "@vtlab/pv-backends";
import type { BlockBackend } from "../devices/ata.js";
import type { Hypervisor } from "../hypervisor.js";
import type { DiskConfig } from "./config.js";

/** A `BlockBackend` (the ATA disk's memory or file image) as blkback's storage: 512-byte sectors. */
export class BlockBackendStorage implements BlkStorage {
  readonly sectorSize = 512;
  /** Failed reads, writes and flushes (an I/O error of the image: answered BLKIF_RSP_ERROR). */
  ioErrors = 0;
  constructor(
    readonly backend: BlockBackend,
    readonly readonly: boolean,
  ) {}
  get sectors(): number {
    return this.backend.sectors;
  }
  private inRange(sector: number, count: number): boolean {
    return Number.isInteger(sector) && Number.isInteger(count) && sector >= 0 && count >= 0 && sector + count <= this.backend.sectors;
  }
  read(sector: number, count: number, into: Uint8Array): boolean {
    if (!this.inRange(sector, count) || into.length < count * 512) return false;
    return this.io(() => this.backend.read(sector, into.length === count * 512 ? into : into.subarray(0, count * 512)));
  }
  write(sector: number, from: Uint8Array): boolean {
    if (this.readonly || from.length % 512 !== 0 || !this.inRange(sector, from.length / 512)) return false;
    return this.io(() => this.backend.write(sector, from));
  }
  flush(): boolean {
    return this.io(() => this.backend.flush?.());
  }
  /** A file backend throws on an I/O error (the host's, not a vtlab bug): that is an error value here. */
  private io(f: () => void): boolean {
    try {
      f();
      return true;
    } catch {
      this.ioErrors++;
      return false;
    }
  }
}

/** One vbd of a domain, as the toolstack keeps it. */
export interface VbdDevice {
  readonly domid: number;
  readonly devid: number;
  readonly vdev: string;
  readonly vbd: VbdBackend;
  readonly storage: BlockBackendStorage;
}

export class HostDisks {
  private readonly byDomain = new Map<number, VbdDevice[]>();
  /** blkback's and xenbus' log lines (bogus rings, fatal frontends), bounded. */
  readonly log: string[] = [];
  private static readonly LOG_MAX = 256;

  constructor(
    private readonly hv: Hypervisor,
    private readonly store: VbdStore,
  ) {}

  /** The vbds of domain `domid`. */
  vbds(domid: number): readonly VbdDevice[] {
    return this.byDomain.get(domid) ?? [];
  }

  private addLog(line: string): void {
    if (this.log.length >= HostDisks.LOG_MAX) this.log.shift();
    this.log.push(line);
  }

  /**
   * Add a domain's vbds: `disks` are its config's, `backend` the image the loader opened for the
   * first (the primary master; without one no vbd is made). Call once per domain build.
   */
  add(domid: number, disks: readonly DiskConfig[], backend: BlockBackend | undefined): readonly VbdDevice[] {
    if (this.byDomain.has(domid)) this.remove(domid);
    const first = disks[0];
    if (first === undefined || backend === undefined) return [];
    const storage = new BlockBackendStorage(backend, first.access === "ro");
    const vbd = new VbdBackend(this.store, this.hv.dom0, { frontendDomid: domid, vdev: first.vdev, params: first.target, storage }, { log: (l) => this.addLog(l) });
    const list: VbdDevice[] = [{ domid, devid: vbd.devid, vdev: first.vdev, vbd, storage }];
    this.byDomain.set(domid, list);
    return list;
  }

  /** Remove a domain's vbds (at destroy): unmap, unbind, remove the xenstore directories. */
  remove(domid: number): void {
    const list = this.byDomain.get(domid);
    if (list === undefined) return;
    for (const v of list) v.vbd.remove();
    this.byDomain.delete(domid);
    this.store.rm(`/local/domain/0/backend/vbd/${domid}`);
  }

  /** Between scheduler slices (after dom0's event dispatch): one bounded batch per vbd with work left. */
  poll(): void {
    for (const list of this.byDomain.values()) for (const v of list) if (v.vbd.blkback.hasWork) v.vbd.blkback.process();
  }
}
