/**
 * Dom0's side for the PV I/O tests: xenstored, a blkback per vbd and a netback per vif on one
 * bridge, introduced and wired the way the toolstack (libxl) and the backends' xenbus drivers
 * do it: the domain's store page (grant GNTTAB_RESERVED_XENSTORE) and port introduced to
 * xenstored, the frontend and backend directories with their permissions, then a watch on the
 * frontend's state that connects the backend when it reaches Initialised (blkback) or
 * Connected (netback) and answers with Connected.
 */
import { GNTTAB_RESERVED_XENSTORE, XenbusStateConnected, XenbusStateInitialised, XenbusStateInitWait, XenbusStateInitialising } from "@vtlab/xen-public";
import { Blkback, Bridge, MemoryBlkStorage, NetbackVif, XenStore } from "@vtlab/pv-backends";
import type { Domain, Hypervisor } from "../src/index.js";

export const XVDA = 51712; // (202 << 8) | 0

export class PvRig {
  readonly store = new XenStore();
  readonly bridge: Bridge;
  readonly vbds: Blkback[] = [];
  readonly vifs: NetbackVif[] = [];
  readonly logs: string[] = [];

  constructor(readonly hv: Hypervisor) {
    this.bridge = new Bridge("xenbr0", { now: () => Math.floor(hv.clock.nanoseconds) });
  }

  /** hv.run's onSlice: dom0's events (xenstored, blkback, netback) between scheduler slices. */
  readonly onSlice = (): void => {
    for (let i = 0; i < 64 && this.hv.dom0.evtchn.dispatch() > 0; i++) {
      for (const b of this.vbds) while (b.hasWork && b.process() > 0);
    }
    for (const v of this.vifs) v.poll();
    this.store.poll();
  };

  introduce(d: Domain): void {
    const m = d.magicPages;
    if (m === undefined) throw new Error("the domain has no special pages (magicPages: true)");
    const ring = this.hv.dom0.grants.map(d.id, GNTTAB_RESERVED_XENSTORE);
    if (typeof ring === "number") throw new Error(`xenstore page: GNTST ${ring}`);
    const port = this.hv.dom0.evtchn.bindInterdomain(d.id, m.storeEvtchn);
    if (port < 0) throw new Error(`xenstore port: ${port}`);
    const dom = `/local/domain/${d.id}`;
    this.store.write(`${dom}/name`, d.name);
    this.store.write(`${dom}/domid`, String(d.id));
    this.store.mkdir(`${dom}/device`);
    this.store.setPerms(dom, [{ domid: 0, perm: "n" }, { domid: d.id, perm: "r" }]);
    this.store.setPerms(`${dom}/device`, [{ domid: d.id, perm: "n" }]);
    this.store.introduceDomain(d.id, ring, port, this.hv.dom0);
  }

  private deviceDirs(d: Domain, kind: "vbd" | "vif", devid: number): { fe: string; be: string } {
    const fe = `/local/domain/${d.id}/device/${kind}/${devid}`;
    const be = `/local/domain/0/backend/${kind}/${d.id}/${devid}`;
    const w = (p: string, v: string): void => void this.store.write(p, v);
    w(`${fe}/backend`, be);
    w(`${fe}/backend-id`, "0");
    w(`${fe}/state`, String(XenbusStateInitialising));
    this.store.setPerms(fe, [{ domid: d.id, perm: "n" }, { domid: 0, perm: "r" }]);
    w(`${be}/frontend`, fe);
    w(`${be}/frontend-id`, String(d.id));
    this.store.setPerms(be, [{ domid: 0, perm: "n" }, { domid: d.id, perm: "r" }]);
    return { fe, be };
  }

  addVbd(d: Domain, sectors: number, devid = XVDA): Blkback {
    const storage = new MemoryBlkStorage(sectors);
    const b = new Blkback(this.hv.dom0, storage, { log: (l) => this.logs.push(l) });
    this.vbds.push(b);
    const { fe, be } = this.deviceDirs(d, "vbd", devid);
    const w = (p: string, v: string): void => void this.store.write(`${be}/${p}`, v);
    w("sectors", String(b.sectors));
    w("sector-size", "512");
    w("info", "0");
    w("feature-flush-cache", "1");
    w("state", String(XenbusStateInitWait));
    this.store.watch(`${fe}/state`, "blkback", () => {
      if (b.connected || this.store.read(`${fe}/state`) !== String(XenbusStateInitialised)) return;
      const err = b.connect({
        frontendDomid: d.id,
        ringRefs: [Number(this.store.read(`${fe}/ring-ref`))],
        eventChannel: Number(this.store.read(`${fe}/event-channel`)),
        protocol: this.store.read(`${fe}/protocol`),
      });
      if (err !== undefined) this.logs.push(`blkback connect: ${JSON.stringify(err)}`);
      else w("state", String(XenbusStateConnected));
    });
    return b;
  }

  addVif(d: Domain, mac: string, devid = 0): NetbackVif {
    const port = { p: undefined as ReturnType<Bridge["attach"]> | undefined };
    const v = new NetbackVif({ host: this.hv.dom0, domid: d.id, handle: devid, now: () => Math.floor(this.hv.clock.nanoseconds), onFrame: (f) => port.p?.input(f), log: (l) => this.logs.push(l) });
    port.p = this.bridge.attach(v.name, (f) => v.receive(f));
    this.vifs.push(v);
    const { fe, be } = this.deviceDirs(d, "vif", devid);
    this.store.write(`${fe}/mac`, mac);
    const w = (p: string, val: string): void => void this.store.write(`${be}/${p}`, val);
    w("mac", mac);
    w("feature-rx-copy", "1");
    w("state", String(XenbusStateInitWait));
    let connected = false;
    this.store.watch(`${fe}/state`, "netback", () => {
      if (connected || this.store.read(`${fe}/state`) !== String(XenbusStateConnected)) return;
      const err = v.connect({
        txRingRef: Number(this.store.read(`${fe}/tx-ring-ref`)),
        rxRingRef: Number(this.store.read(`${fe}/rx-ring-ref`)),
        txEvtchn: Number(this.store.read(`${fe}/event-channel`)),
      });
      if (err !== undefined) this.logs.push(`netback connect: ${JSON.stringify(err)}`);
      else {
        connected = true;
        w("state", String(XenbusStateConnected));
      }
    });
    return v;
  }
}
