/**
 * A vbd on xenbus: the two xenstore directories libxl writes for a disk (libxl_disk.c,
 * libxl__device_generic_add) and the backend driver's side of the xenbus state machine as
 * Linux's xen-blkback runs it (drivers/block/xen-blkback/xenbus.c: probe, frontend_changed,
 * connect_ring, connect), the one Linux's xen-blkfront expects on the other end.
 *
 *   backend  /local/domain/0/backend/vbd/<domid>/<devid>  owner dom0, the guest may read
 *            frontend, frontend-id, online, state, params, mode, type, device-type, removable,
 *            bootable, dev; at probe feature-max-indirect-segments, max-ring-page-order;
 *            at connect feature-flush-cache, feature-barrier, feature-persistent,
 *            feature-discard (+ discard-granularity, -alignment, -secure), sectors, info,
 *            sector-size, physical-sector-size
 *   frontend /local/domain/<domid>/device/vbd/<devid>      owner the guest, dom0 may read
 *            backend, backend-id, state, virtual-device, device-type
 *
 * States: both ends start Initialising; the backend probes and goes InitWait; the frontend reads
 * the backend's features, writes ring-ref (or ring-page-order and ring-ref<N>), event-channel,
 * protocol and feature-persistent and goes Initialised; the backend maps and binds them and goes
 * Connected; then the frontend reads the disk's size and goes Connected. Closing the device
 * (either end: the toolstack writes online = 0 and the backend state Closing) unmaps the ring;
 * the frontend answers Closed and the backend goes Closed.
 *
 * Every value the frontend wrote is hostile: numbers are parsed strictly (decimal, in range), an
 * unknown protocol, a ring order beyond the advertised maximum, an unmappable ring or an unbound
 * port make the device fail as xenbus_dev_fatal does (the message under
 * /local/domain/0/error/backend/vbd/<domid>/<devid>/error, the backend state Closing), and the
 * host runs on.
 *
 * Simpler than Linux/libxl: no hotplug script (the storage is handed over directly, so
 * physical-device is not written), connect writes its nodes without a transaction (blkfront only
 * reads them once the state says Connected, which is written last), no xenbus "online" device
 * removal beyond unwatching (the toolstack removes the directories).
 */
import {
  XenbusStateClosed,
  XenbusStateClosing,
  XenbusStateConnected,
  XenbusStateInitialised,
  XenbusStateInitialising,
  XenbusStateInitWait,
  XenbusStateUnknown,
} from "@vtlab/xen-public";
import type { BackendHost } from "../host.js";
import { Blkback, BLKIF_PROTOCOL_X86_64, type BlkbackOptions } from "./blkback.js";
import type { BlkStorage } from "./storage.js";

/** The part of xenstored's dom0 API a vbd uses (`XenStore` has it). */
export interface VbdStore {
  read(path: string): string | undefined;
  write(path: string, value: string): number;
  mkdir(path: string): number;
  rm(path: string): number;
  setPerms(path: string, perms: readonly { readonly domid: number; readonly perm: "n" | "r" | "w" | "b" }[]): number;
  watch(path: string, token: string, callback: (path: string, token: string) => void): () => void;
}

/** VDISK_* bits of the backend's `info` (io/blkif.h). */
export const VDISK_CDROM = 0x1;
export const VDISK_REMOVABLE = 0x2;
export const VDISK_READONLY = 0x4;

/** Xen's block major for xvd* (XEN_IDE... xvd = 202) and the extended scheme's marker (libxl_device.c). */
const XVD_MAJOR = 202;
const EXTENDED = 1 << 28;

/**
 * The device number of a virtual device name (libxl__device_disk_dev_number, the xvd, hd and sd
 * schemes): xvda = 202 << 8 = 51712, xvdb = 51728, ..., xvdq and beyond in the extended scheme;
 * hda = 768, hdc = 5632; sda = 2048. undefined for anything else.
 */
export function vbdDevid(vdev: string): number | undefined {
  const m = /^(xvd|hd|sd)([a-z]+)$/.exec(vdev);
  if (m === null) return undefined;
  let disk = 0;
  for (const ch of m[2] ?? "") disk = disk * 26 + (ch.charCodeAt(0) - 96);
  disk -= 1;
  switch (m[1]) {
    case "xvd":
      if (disk < 16) return (XVD_MAJOR << 8) | (disk << 4);
      return disk < 1 << 20 ? EXTENDED | (disk << 8) : undefined;
    case "hd": {
      // IDE majors 3, 22, 33, 34, ... two disks per major.
      const majors = [3, 22, 33, 34, 56, 57, 88, 89, 90, 91];
      const major = majors[disk >> 1];
      return major === undefined ? undefined : (major << 8) | ((disk & 1) << 6);
    }
    default:
      return disk < 16 ? (8 << 8) | (disk << 4) : undefined;
  }
}

export interface VbdConfig {
  readonly frontendDomid: number;
  /** The virtual device name (`vdev=xvda`). */
  readonly vdev: string;
  /** `params` (the image path as the config gave it). */
  readonly params: string;
  readonly storage: BlkStorage;
  /** The backend's type node (libxl: "phy" for blkback). */
  readonly type?: string;
}

/** One vbd: its xenstore directories and the blkback serving it. */
export class VbdBackend {
  readonly devid: number;
  readonly backendPath: string;
  readonly frontendPath: string;
  readonly errorPath: string;
  readonly blkback: Blkback;
  /** The backend's xenbus state. */
  state = XenbusStateInitialising;
  /** xenbus_dev_fatal messages, the last MAX_ERRORS (a frontend can provoke one per state write). */
  readonly errors: string[] = [];
  static readonly MAX_ERRORS = 16;
  private unwatch: (() => void) | undefined;
  private removed = false;
  private readonly log: (line: string) => void;

  constructor(
    readonly store: VbdStore,
    readonly host: BackendHost,
    readonly config: VbdConfig,
    options: BlkbackOptions = {},
  ) {
    const devid = vbdDevid(config.vdev);
    if (devid === undefined) throw new RangeError(`vbd: bad vdev "${config.vdev}"`);
    this.devid = devid;
    const domid = config.frontendDomid;
    this.backendPath = `/local/domain/0/backend/vbd/${domid}/${devid}`;
    this.frontendPath = `/local/domain/${domid}/device/vbd/${devid}`;
    this.errorPath = `/local/domain/0/error/backend/vbd/${domid}/${devid}`;
    this.log = options.log ?? (() => {});
    this.blkback = new Blkback(host, config.storage, options);
    this.addDevice();
    this.probe();
    this.unwatch = store.watch(`${this.frontendPath}/state`, `vbd-${domid}-${devid}`, () => this.frontendChanged());
  }

  /** libxl__device_generic_add and device_disk_add: both directories, their permissions and entries. */
  private addDevice(): void {
    const s = this.store;
    const be = this.backendPath;
    const fe = this.frontendPath;
    const domid = this.config.frontendDomid;
    s.rm(be);
    s.rm(fe);
    s.mkdir(be);
    s.setPerms(be, [{ domid: 0, perm: "n" }, { domid, perm: "r" }]);
    s.mkdir(fe);
    s.setPerms(fe, [{ domid, perm: "n" }, { domid: 0, perm: "r" }]);
    const ro = this.config.storage.readonly === true;
    const backend: [string, string][] = [
      ["frontend", fe],
      ["frontend-id", String(domid)],
      ["online", "1"],
      ["state", String(XenbusStateInitialising)],
      ["params", this.config.params],
      ["mode", ro ? "r" : "w"],
      ["type", this.config.type ?? "phy"],
      ["device-type", "disk"],
      ["removable", "0"],
      ["bootable", "1"],
      ["dev", this.config.vdev],
    ];
    for (const [k, v] of backend) s.write(`${be}/${k}`, v);
    const frontend: [string, string][] = [
      ["backend", be],
      ["backend-id", "0"],
      ["state", String(XenbusStateInitialising)],
      ["virtual-device", String(this.devid)],
      ["device-type", "disk"],
    ];
    for (const [k, v] of frontend) s.write(`${fe}/${k}`, v);
  }

  /** xen_blkbk_probe: what the frontend must know before it sets up its ring; then InitWait. */
  private probe(): void {
    const be = this.backendPath;
    const b = this.blkback;
    if (b.maxIndirectSegments > 0) this.store.write(`${be}/feature-max-indirect-segments`, String(b.maxIndirectSegments));
    this.store.write(`${be}/max-ring-page-order`, String(b.maxRingPageOrder));
    this.switchState(XenbusStateInitWait);
  }

  private switchState(state: number): void {
    if (this.state === state) return;
    this.state = state;
    this.store.write(`${this.backendPath}/state`, String(state));
  }

  /** xenbus_dev_fatal: the message under error/, and the device closes. */
  private fatal(message: string): void {
    if (this.errors.length >= VbdBackend.MAX_ERRORS) this.errors.shift();
    this.errors.push(message);
    this.log(`vbd ${this.config.frontendDomid}/${this.devid}: ${message}`);
    this.store.write(`${this.errorPath}/error`, message);
    this.blkback.disconnect();
    this.switchState(XenbusStateClosing);
  }

  /** The frontend's state, as xenbus_read_driver_state reads it (anything unparsable: Unknown). */
  frontendState(): number {
    const v = parseUint(this.store.read(`${this.frontendPath}/state`), 0xff);
    return v ?? XenbusStateUnknown;
  }

  /** frontend_changed: the watch on the frontend's state. */
  private frontendChanged(): void {
    if (this.removed) return;
    const fs = this.frontendState();
    switch (fs) {
      case XenbusStateInitialising:
        // A frontend starting over after a close (kexec, module reload): back to InitWait.
        if (this.state === XenbusStateClosed) {
          this.probe();
        }
        return;
      case XenbusStateInitialised:
      case XenbusStateConnected:
        // Two watches in quick succession: connect once. From Closing or Closed, as Linux: drop
        // what is left of the old ring (idempotent), back to InitWait from Closed, connect again.
        if (this.state === XenbusStateConnected) return;
        this.blkback.disconnect();
        if (this.state === XenbusStateClosed) this.probe();
        this.connectRing();
        return;
      case XenbusStateClosing:
        this.blkback.disconnect();
        this.switchState(XenbusStateClosing);
        return;
      case XenbusStateClosed:
        this.blkback.disconnect();
        this.switchState(XenbusStateClosed);
        return;
      case XenbusStateUnknown:
        // The frontend's node is gone (or garbage): Linux unregisters the device; the ring goes.
        if (this.state === XenbusStateInitialising || this.state === XenbusStateInitWait) return;
        this.blkback.disconnect();
        this.switchState(XenbusStateClosed);
        return;
      default:
        this.fatal(`saw state ${fs} at frontend`);
    }
  }

  /** connect_ring and connect: read the frontend's ring, map and bind it, publish the disk, Connected. */
  private connectRing(): void {
    const s = this.store;
    const fe = this.frontendPath;
    const maxOrder = this.blkback.maxRingPageOrder;
    const orderS = s.read(`${fe}/ring-page-order`);
    const refs: number[] = [];
    if (orderS === undefined) {
      const ref = parseUint(s.read(`${fe}/ring-ref`), 0xffff_ffff);
      if (ref === undefined) return this.fatal(`reading ${fe}/ring-ref`);
      refs.push(ref);
    } else {
      const order = parseUint(orderS, 0xff);
      if (order === undefined || order > maxOrder) return this.fatal(`${fe}/ring-page-order ${orderS} exceeds the maximum ${maxOrder}`);
      for (let i = 0; i < 1 << order; i++) {
        const ref = parseUint(s.read(`${fe}/ring-ref${i}`), 0xffff_ffff);
        if (ref === undefined) return this.fatal(`reading ${fe}/ring-ref${i}`);
        refs.push(ref);
      }
    }
    const port = parseUint(s.read(`${fe}/event-channel`), 0xffff_ffff);
    if (port === undefined) return this.fatal(`reading ${fe}/event-channel`);
    const protocol = s.read(`${fe}/protocol`) ?? BLKIF_PROTOCOL_X86_64;
    if (protocol !== BLKIF_PROTOCOL_X86_64) return this.fatal(`unknown fe protocol ${protocol.slice(0, 64)}`);
    const persistentS = s.read(`${fe}/feature-persistent`);
    const persistent = persistentS === undefined ? false : parseUint(persistentS, 1) === 1;
    const err = this.blkback.connect({ frontendDomid: this.config.frontendDomid, ringRefs: refs, eventChannel: port, protocol, persistent });
    if (err !== undefined) {
      const what = err.kind === "map-ring" ? `mapping ring-ref ${err.ref}: ${err.status}` : err.kind === "bind-evtchn" ? `binding port ${err.port}: ${err.errno}` : err.detail;
      return this.fatal(what);
    }
    this.publishDisk();
    this.switchState(XenbusStateConnected);
  }

  /** connect(): the features and the disk's geometry, before the state says Connected. */
  private publishDisk(): void {
    const s = this.store;
    const be = this.backendPath;
    const st = this.config.storage;
    const b = this.blkback;
    s.write(`${be}/feature-flush-cache`, "1");
    s.write(`${be}/feature-barrier`, "1");
    s.write(`${be}/feature-persistent`, b.offerPersistent ? "1" : "0");
    if (st.discard !== undefined && st.readonly !== true) {
      s.write(`${be}/feature-discard`, "1");
      s.write(`${be}/discard-granularity`, String(st.sectorSize));
      s.write(`${be}/discard-alignment`, "0");
      s.write(`${be}/discard-secure`, "0");
    }
    s.write(`${be}/sectors`, String(b.sectors));
    s.write(`${be}/info`, String(st.readonly === true ? VDISK_READONLY : 0));
    s.write(`${be}/sector-size`, String(st.sectorSize));
    s.write(`${be}/physical-sector-size`, String(st.sectorSize));
  }

  /**
   * The toolstack closes the device (libxl__initiate_device_generic_remove): online = 0 and the
   * backend Closing; the ring is unmapped; the frontend is expected to answer Closed.
   */
  close(): void {
    this.store.write(`${this.backendPath}/online`, "0");
    this.blkback.disconnect();
    this.switchState(XenbusStateClosing);
  }

  /** Tear down (domain destroyed, or after close): unwatch, unmap, remove both directories. */
  remove(): void {
    this.removed = true;
    this.unwatch?.();
    this.unwatch = undefined;
    this.blkback.disconnect();
    this.store.rm(this.backendPath);
    this.store.rm(this.frontendPath);
    this.store.rm(this.errorPath);
  }
}

/** A decimal number 0..max as xenbus_scanf("%u") would accept from a sane frontend; anything else undefined. */
function parseUint(s: string | undefined, max: number): number | undefined {
  if (s === undefined || !/^[0-9]{1,10}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= max ? n : undefined;
}
