/**
 * The host's network as the toolstack sets it up (libxl's vif device add/remove and the
 * vif-bridge hotplug script): one software bridge per name per host, created when the first vif
 * names it, and for each `vif = [...]` entry of a domain a netback vif (@vtlab/pv-backends) whose
 * xenstore directories are written at domain build and removed at destroy, its port attached to
 * the bridge.
 *
 * MACs: a vif without `mac=` gets 00:16:3e (Xen's OUI, as libxl) followed by the domid (two
 * octets) and the devid, where libxl draws the last three octets at random: vtlab is
 * deterministic.
 *
 * Time: the bridge's ageing and netback's drain and stall timeouts run on the host's modelled
 * clock; `poll()` (the toolstack calls it between scheduler slices) applies them.
 *
 * Simpler than libxl: no hotplug scripts run, no `vifname`, `ip`, `rate` or `model`; the bridge
 * exists only in the host process (no dom0 kernel interface to the outside).
 */
import { Bridge, NetbackDevice, NetbackVif, type NetbackStore } from "@vtlab/pv-backends";
import type { Hypervisor } from "../hypervisor.js";
import type { VifConfig } from "./config.js";

/** One vif of a domain, as the toolstack keeps it. */
export interface VifDevice {
  readonly domid: number;
  readonly devid: number;
  readonly mac: string;
  readonly bridge: Bridge;
  readonly vif: NetbackVif;
  readonly device: NetbackDevice;
}

/** 00:16:3e:<domid hi>:<domid lo>:<devid> (the default MAC; see above). */
export function defaultMac(domid: number, devid: number): string {
  const h = (n: number) => (n & 0xff).toString(16).padStart(2, "0");
  return `00:16:3e:${h(domid >> 8)}:${h(domid)}:${h(devid)}`;
}

function macBytes(mac: string): Uint8Array {
  return Uint8Array.from(mac.split(":").map((x) => parseInt(x, 16)));
}

export class HostNetwork {
  private readonly bridgeMap = new Map<string, Bridge>();
  private readonly byDomain = new Map<number, VifDevice[]>();
  readonly log: string[] = [];
  private static readonly LOG_MAX = 256;

  constructor(
    private readonly hv: Hypervisor,
    private readonly store: NetbackStore,
  ) {}

  /** The bridges, by name. */
  get bridges(): ReadonlyMap<string, Bridge> {
    return this.bridgeMap;
  }

  /** The bridge called `name`, made on first use (one per name per host). */
  bridge(name: string): Bridge {
    let b = this.bridgeMap.get(name);
    if (b === undefined) {
      b = new Bridge(name, { now: () => this.hv.clock.nanoseconds });
      this.bridgeMap.set(name, b);
    }
    return b;
  }

  /** The vifs of domain `domid` (devid order). */
  vifs(domid: number): readonly VifDevice[] {
    return this.byDomain.get(domid) ?? [];
  }

  private addLog(line: string): void {
    if (this.log.length >= HostNetwork.LOG_MAX) this.log.shift();
    this.log.push(line);
  }

  /**
   * Add a domain's vifs (devid = index in `configs`): netback vif, xenstore directories (the
   * backend waits in InitWait for the frontend), bridge port. Call once per domain build.
   */
  add(domid: number, configs: readonly VifConfig[]): readonly VifDevice[] {
    if (this.byDomain.has(domid)) this.remove(domid);
    const list: VifDevice[] = [];
    configs.forEach((c, devid) => {
      const mac = c.mac ?? defaultMac(domid, devid);
      const bridge = this.bridge(c.bridge);
      const vif = new NetbackVif({ host: this.hv.dom0, domid, handle: devid, now: () => this.hv.clock.nanoseconds, log: (l) => this.addLog(l) });
      const port = bridge.attach(vif.name, (f) => vif.receive(f));
      vif.onFrame = (f) => port.input(f);
      const device = new NetbackDevice({ store: this.store, vif, mac, bridge: c.bridge });
      list.push({ domid, devid, mac, bridge, vif, device });
    });
    this.byDomain.set(domid, list);
    return list;
  }

  /** Remove a domain's vifs (at destroy): disconnect, leave the bridge, remove the xenstore directories. */
  remove(domid: number): void {
    const list = this.byDomain.get(domid);
    if (list === undefined) return;
    for (const v of list) {
      v.device.destroy();
      for (const p of v.bridge.ports) if (p.name === v.vif.name) p.detach();
    }
    this.byDomain.delete(domid);
    this.store.rm(`/local/domain/0/backend/vif/${domid}`);
  }

  /** Between scheduler slices: netback's RX retries and timeouts, the bridges' ageing. */
  poll(): void {
    for (const list of this.byDomain.values()) for (const v of list) v.vif.poll();
    for (const b of this.bridgeMap.values()) b.age();
  }

  /** The MAC of a vif as bytes (for tests and the demo). */
  static macBytes(mac: string): Uint8Array {
    return macBytes(mac);
  }
}
