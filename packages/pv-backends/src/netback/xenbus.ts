/**
 * A vif's xenbus side: the xenstore entries libxl writes when it adds a vif
 * (libxl__device_generic_add / libxl__set_xenstore_nic), and the state machine Linux's
 * xen-netback (drivers/net/xen-netback/xenbus.c) runs against xen-netfront.
 *
 * Backend directory /local/domain/0/backend/vif/<domid>/<devid> (owned by dom0, readable by the
 * guest): frontend, frontend-id, online, state, script, mac, bridge, handle, type; then what
 * netback_probe advertises: feature-sg, feature-rx-copy, feature-rx-flip (0),
 * feature-split-event-channels, feature-gso-tcpv4/6 (0), feature-ipv6-csum-offload (0),
 * feature-no-csum-offload (1: frontends compute their own checksums).
 * Frontend directory /local/domain/<domid>/device/vif/<devid> (owned by the guest, readable by
 * dom0): backend, backend-id, state, handle, mac.
 *
 * States: both directories start Initialising (1); the backend goes to InitWait (2) once it has
 * advertised its features. When the frontend reaches Initialised (3) or Connected (4) the backend
 * reads tx-ring-ref, rx-ring-ref, event-channel (or event-channel-tx and event-channel-rx) and
 * request-rx-copy (must be 1: rx-flip is not offered) and feature-rx-notify (must be 1, as Linux
 * has required since 3.19), maps and binds them, and goes Connected.
 * A bad or missing key is xenbus_dev_fatal's path: an `error` node in the backend directory and
 * the backend goes Closing. Frontend Closing -> backend disconnects, Closing; frontend Closed
 * (or its state node gone) -> backend disconnects, Closed. A frontend may reconnect from Closed
 * through Initialising again, as netfront does after a resume.
 *
 * Simpler than Linux: one queue (multi-queue-max-queues is not offered; a frontend's
 * multi-queue-num-queues above 1 is refused), no ctrl ring, no hotplug script run (the bridge is
 * attached by the caller), and `online` is written but not watched.
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
import type { XenStore } from "../xenstored/index.js";
import type { NetbackVif, NetifConnection } from "./vif.js";

/** What the xenbus side needs of xenstored (dom0's in-process API). */
export type NetbackStore = Pick<XenStore, "read" | "write" | "mkdir" | "rm" | "setPerms" | "watch">;

export interface NetbackDeviceOptions {
  readonly store: NetbackStore;
  readonly vif: NetbackVif;
  /** `mac=` as xl writes it, "00:16:3e:xx:xx:xx". */
  readonly mac: string;
  /** `bridge=` (default "xenbr0"). */
  readonly bridge: string;
  /** The hotplug script name written to `script` (not run). */
  readonly script?: string;
  /** Called when the vif connects and disconnects (to attach/detach the bridge port, or log). */
  readonly onState?: (state: number) => void;
}

const u32 = /^(0|[1-9][0-9]{0,9})$/;
function readU32(store: NetbackStore, path: string): number | undefined {
  const v = store.read(path);
  if (v === undefined || !u32.test(v)) return undefined;
  const n = Number(v);
  return n <= 0xffff_ffff ? n : undefined;
}

export class NetbackDevice {
  readonly domid: number;
  readonly devid: number;
  readonly backendPath: string;
  readonly frontendPath: string;
  readonly vif: NetbackVif;
  /** The backend's xenbus state. */
  state: number = XenbusStateInitialising;
  /** The last error written (xenbus_dev_fatal), if any. */
  error: string | undefined;
  private readonly store: NetbackStore;
  private unwatch: (() => void) | undefined;
  private readonly onState: ((state: number) => void) | undefined;

  constructor(options: NetbackDeviceOptions) {
    this.store = options.store;
    this.vif = options.vif;
    this.domid = options.vif.domid;
    this.devid = options.vif.handle;
    this.onState = options.onState;
    this.backendPath = `/local/domain/0/backend/vif/${this.domid}/${this.devid}`;
    this.frontendPath = `/local/domain/${this.domid}/device/vif/${this.devid}`;
    const s = this.store;
    const be = this.backendPath;
    const fe = this.frontendPath;
    // libxl: each directory made and given its permissions first (frontend: the guest's, dom0
    // reads; backend: dom0's, the guest reads), so the keys written below inherit them.
    const fePerms = [
      { domid: this.domid, perm: "n" },
      { domid: 0, perm: "r" },
    ] as const;
    const bePerms = [
      { domid: 0, perm: "n" },
      { domid: this.domid, perm: "r" },
    ] as const;
    s.mkdir(fe);
    s.setPerms(fe, fePerms);
    s.mkdir(be);
    s.setPerms(be, bePerms);
    s.write(`${fe}/backend`, be);
    s.write(`${fe}/backend-id`, "0");
    s.write(`${fe}/state`, String(XenbusStateInitialising));
    s.write(`${fe}/handle`, String(this.devid));
    s.write(`${fe}/mac`, options.mac);
    const backendKeys: [string, string][] = [
      ["frontend", fe],
      ["frontend-id", String(this.domid)],
      ["online", "1"],
      ["state", String(XenbusStateInitialising)],
      ["script", options.script ?? "vif-bridge"],
      ["mac", options.mac],
      ["bridge", options.bridge],
      ["handle", String(this.devid)],
      ["type", "vif"],
      // netback_probe: the features, then InitWait.
      ["feature-sg", "1"],
      ["feature-gso-tcpv4", "0"],
      ["feature-gso-tcpv6", "0"],
      ["feature-ipv6-csum-offload", "0"],
      // No checksum offload: a frontend fills in its checksums (netback here does not complete
      // a NETTXF_csum_blank packet, nor tell the receiver with NETRXF_csum_blank).
      ["feature-no-csum-offload", "1"],
      ["feature-rx-copy", "1"],
      ["feature-rx-flip", "0"],
      ["feature-split-event-channels", "1"],
    ];
    for (const [k, v] of backendKeys) s.write(`${be}/${k}`, v);
    this.switchState(XenbusStateInitWait);
    this.unwatch = s.watch(`${fe}/state`, `netback:${this.domid}:${this.devid}`, () => this.frontendChanged());
  }

  private switchState(state: number): void {
    if (this.state === state) return;
    this.state = state;
    this.store.write(`${this.backendPath}/state`, String(state));
    this.onState?.(state);
  }

  /** xenbus_dev_fatal: the reason in `error`, and the backend goes Closing. */
  private fatal(reason: string): void {
    this.error = reason;
    this.store.write(`${this.backendPath}/error`, reason);
    this.vif.disconnect();
    this.switchState(XenbusStateClosing);
  }

  /** netback's frontend_changed. */
  private frontendChanged(): void {
    if (this.unwatch === undefined && this.state === XenbusStateClosed) return;
    const v = readU32(this.store, `${this.frontendPath}/state`);
    const fs = v ?? XenbusStateUnknown;
    switch (fs) {
      case XenbusStateInitialising:
        // A frontend starting over after Closed: offer the device again.
        if (this.state === XenbusStateClosed) {
          this.error = undefined;
          this.store.rm(`${this.backendPath}/error`);
          this.switchState(XenbusStateInitWait);
        }
        break;
      case XenbusStateInitialised:
      case XenbusStateConnected:
        if (this.state === XenbusStateConnected || this.state === XenbusStateClosing) break;
        this.connect();
        break;
      case XenbusStateClosing:
        this.vif.disconnect();
        this.switchState(XenbusStateClosing);
        break;
      case XenbusStateClosed:
      case XenbusStateUnknown:
        this.vif.disconnect();
        this.switchState(XenbusStateClosed);
        break;
      default:
        this.fatal(`frontend state ${this.store.read(`${this.frontendPath}/state`) ?? "(none)"} is not a xenbus state`);
    }
  }

  /** connect_data_rings: read the frontend's keys, map, bind. */
  private connect(): void {
    const fe = this.frontendPath;
    const queues = readU32(this.store, `${fe}/multi-queue-num-queues`);
    if (queues !== undefined && queues !== 1) return this.fatal(`guest requested ${queues} queues, exceeding the maximum of 1`);
    const tx = readU32(this.store, `${fe}/tx-ring-ref`);
    const rx = readU32(this.store, `${fe}/rx-ring-ref`);
    if (tx === undefined || rx === undefined) return this.fatal(`reading ${fe}/tx-ring-ref and rx-ring-ref`);
    const one = readU32(this.store, `${fe}/event-channel`);
    const etx = readU32(this.store, `${fe}/event-channel-tx`);
    const erx = readU32(this.store, `${fe}/event-channel-rx`);
    let conn: NetifConnection;
    if (one !== undefined) conn = { txRingRef: tx, rxRingRef: rx, txEvtchn: one };
    else if (etx !== undefined && erx !== undefined) conn = { txRingRef: tx, rxRingRef: rx, txEvtchn: etx, rxEvtchn: erx };
    else return this.fatal(`reading ${fe}/event-channel(-tx/rx)`);
    if (this.store.read(`${fe}/request-rx-copy`) !== "1") return this.fatal(`${fe}/request-rx-copy is not 1: only rx-copy is supported`);
    // Mandatory since Linux 3.19 (netback relies on the frontend's RX notifications).
    if (this.store.read(`${fe}/feature-rx-notify`) !== "1") return this.fatal(`${fe}/feature-rx-notify is mandatory`);
    const err = this.vif.connect(conn);
    if (err !== undefined) {
      const detail = err.kind === "map" ? `mapping ${err.ring} ring (GNTST ${err.status})` : err.kind === "evtchn" ? `binding event channel ${err.port} (${err.error})` : err.detail;
      return this.fatal(`connecting rings: ${detail}`);
    }
    this.switchState(XenbusStateConnected);
  }

  /** The toolstack removes the device (libxl's device remove): disconnect and remove both directories. */
  destroy(): void {
    this.unwatch?.();
    this.unwatch = undefined;
    this.vif.disconnect();
    this.state = XenbusStateClosed;
    this.store.rm(this.backendPath);
    this.store.rm(this.frontendPath);
  }
}
