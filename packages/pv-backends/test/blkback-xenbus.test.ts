// The vbd's xenstore directories and xenbus state machine, against the package's xenstored.
import { describe, expect, it } from "vitest";
import {
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_RSP_OKAY,
  XenbusStateClosed,
  XenbusStateClosing,
  XenbusStateConnected,
  XenbusStateInitialised,
  XenbusStateInitialising,
  XenbusStateInitWait,
} from "@vtlab/xen-public";
import { XenStore } from "../src/xenstored/index.js";
import { MemoryBlkStorage } from "../src/blkback/storage.js";
import { VbdBackend, vbdDevid, VDISK_READONLY } from "../src/blkback/xenbus.js";
import { FakeBlkfront, FakeHost } from "./blkback-harness.js";

const DOMID = 3;
const BE = `/local/domain/0/backend/vbd/${DOMID}/51712`;
const FE = `/local/domain/${DOMID}/device/vbd/51712`;

function setup(opts: { readonly?: boolean; pages?: number } = {}) {
  const store = new XenStore();
  const host = new FakeHost(DOMID);
  const storage = new MemoryBlkStorage(4096, { readonly: opts.readonly === true });
  const vbd = new VbdBackend(store, host, { frontendDomid: DOMID, vdev: "xvda", params: "disk.img", storage });
  const fe = new FakeBlkfront(host, 100, opts.pages ?? 1);
  /** What blkfront's talk_to_blkback writes, then Initialised. */
  const initialise = (extra: Record<string, string> = {}) => {
    if ((opts.pages ?? 1) === 1) store.write(`${FE}/ring-ref`, "100");
    else {
      store.write(`${FE}/ring-page-order`, String(Math.log2(opts.pages ?? 1)));
      for (let i = 0; i < (opts.pages ?? 1); i++) store.write(`${FE}/ring-ref${i}`, String(100 + i));
    }
    store.write(`${FE}/event-channel`, "7");
    store.write(`${FE}/protocol`, "x86_64-abi");
    store.write(`${FE}/feature-persistent`, "1");
    for (const [k, v] of Object.entries(extra)) store.write(`${FE}/${k}`, v);
    store.write(`${FE}/state`, String(XenbusStateInitialised));
  };
  const beState = () => Number(store.read(`${BE}/state`));
  return { store, host, storage, vbd, fe, initialise, beState };
}

describe("vbd on xenbus", () => {
  it("devid: xvda is 202 << 8 = 51712 (libxl's xvd, hd and sd schemes)", () => {
    expect(vbdDevid("xvda")).toBe(51712);
    expect(vbdDevid("xvdb")).toBe(51728);
    expect(vbdDevid("xvdp")).toBe(51952);
    expect(vbdDevid("xvdq")).toBe((1 << 28) | (16 << 8));
    expect(vbdDevid("hda")).toBe(768);
    expect(vbdDevid("hdc")).toBe(5632);
    expect(vbdDevid("sda")).toBe(2048);
    expect(vbdDevid("vda")).toBeUndefined();
    expect(vbdDevid("xvd")).toBeUndefined();
  });

  it("writes both directories as libxl does, with libxl's permissions, and probes to InitWait", () => {
    const { store, beState } = setup();
    expect(store.getPerms(BE)).toEqual([{ domid: 0, perm: "n" }, { domid: DOMID, perm: "r" }]);
    expect(store.getPerms(FE)).toEqual([{ domid: DOMID, perm: "n" }, { domid: 0, perm: "r" }]);
    for (const [k, v] of Object.entries({ frontend: FE, "frontend-id": "3", online: "1", params: "disk.img", mode: "w", type: "phy", "feature-max-indirect-segments": "256", "max-ring-page-order": "4" })) {
      expect(store.read(`${BE}/${k}`), k).toBe(v);
    }
    for (const [k, v] of Object.entries({ backend: BE, "backend-id": "0", state: "1", "virtual-device": "51712" })) expect(store.read(`${FE}/${k}`), k).toBe(v);
    expect(beState()).toBe(XenbusStateInitWait);
  });

  it("Initialised -> the backend maps the ring, publishes the disk and goes Connected; I/O flows; Closing -> Closed on both ends", () => {
    const { store, host, vbd, fe, initialise, beState, storage } = setup();
    initialise();
    expect(beState()).toBe(XenbusStateConnected);
    for (const [k, v] of Object.entries({ "feature-flush-cache": "1", "feature-barrier": "1", "feature-persistent": "1", "feature-discard": "1", sectors: "4096", info: "0", "sector-size": "512", "physical-sector-size": "512" })) {
      expect(store.read(`${BE}/${k}`), k).toBe(v);
    }
    store.write(`${FE}/state`, String(XenbusStateConnected));
    expect(beState()).toBe(XenbusStateConnected);
    host.grant(8).fill(0x42);
    fe.rw(BLKIF_OP_WRITE, 1, 0, [{ gref: 8, first_sect: 0, last_sect: 7 }]);
    fe.push();
    host.notify(vbd.blkback.localPort!);
    host.dispatch();
    expect(fe.responses()).toEqual([{ id_lo: 1, id_hi: 0, operation: BLKIF_OP_WRITE, status: BLKIF_RSP_OKAY }]);
    expect(storage.data[100]).toBe(0x42);
    expect(vbd.blkback.counters.persistentHits).toBe(1);
    store.write(`${FE}/state`, String(XenbusStateClosing));
    expect(beState()).toBe(XenbusStateClosing);
    expect(vbd.blkback.connected).toBe(false);
    expect(host.liveMappings()).toBe(0);
    store.write(`${FE}/state`, String(XenbusStateClosed));
    expect(beState()).toBe(XenbusStateClosed);
    // Initialised again straight from Closed (no Initialising): reconnects, as Linux.
    initialise();
    expect(beState()).toBe(XenbusStateConnected);
    store.write(`${FE}/state`, String(XenbusStateClosed));
    expect(beState()).toBe(XenbusStateClosed);
    // A frontend starting over: InitWait, then Connected again.
    store.write(`${FE}/state`, String(XenbusStateInitialising));
    expect(beState()).toBe(XenbusStateInitWait);
    initialise();
    expect(beState()).toBe(XenbusStateConnected);
    expect(vbd.blkback.connected).toBe(true);
  });

  it("a multi-page ring from ring-page-order and ring-ref<N>", () => {
    const { host, vbd, fe, initialise, beState } = setup({ pages: 2 });
    initialise();
    expect(beState()).toBe(XenbusStateConnected);
    host.grant(8);
    for (let i = 0; i < 40; i++) fe.rw(BLKIF_OP_READ, i, i, [{ gref: 8, first_sect: 0, last_sect: 0 }]);
    fe.push();
    host.notify(vbd.blkback.localPort!);
    host.dispatch();
    expect(fe.responses().length).toBe(40);
  });

  it("a read-only disk says so in info and mode, and offers no discard", () => {
    const { store, initialise } = setup({ readonly: true });
    initialise();
    expect(store.read(`${BE}/mode`)).toBe("r");
    expect(store.read(`${BE}/info`)).toBe(String(VDISK_READONLY));
    expect(store.read(`${BE}/feature-discard`)).toBeUndefined();
  });

  it("the toolstack closes the device: online 0, Closing, then Closed when the frontend answers; remove() clears the tree", () => {
    const { store, vbd, initialise, beState, host } = setup();
    initialise();
    vbd.close();
    expect(store.read(`${BE}/online`)).toBe("0");
    expect(beState()).toBe(XenbusStateClosing);
    store.write(`${FE}/state`, String(XenbusStateClosed));
    expect(beState()).toBe(XenbusStateClosed);
    vbd.remove();
    expect(store.read(BE)).toBeUndefined();
    expect(store.read(FE)).toBeUndefined();
    expect(host.liveMappings()).toBe(0);
    expect(host.bound.size).toBe(0);
    store.write(`${FE}/state`, String(XenbusStateInitialised)); // nobody listens any more
    expect(store.read(`${BE}/state`)).toBeUndefined();
  });

  describe("hostile frontend entries fail the device as xenbus_dev_fatal does; nothing stays mapped", () => {
    const cases: [string, (s: XenStore) => void, RegExp][] = [
      ["garbage ring-ref", (s) => s.write(`${FE}/ring-ref`, "12abc"), /ring-ref/],
      ["a ring-ref of no grant", (s) => s.write(`${FE}/ring-ref`, "999"), /mapping ring-ref 999/],
      ["a ring-ref past 32 bits", (s) => s.write(`${FE}/ring-ref`, "99999999999"), /ring-ref/],
      ["ring-page-order beyond the maximum", (s) => s.write(`${FE}/ring-page-order`, "5"), /exceeds the maximum 4/],
      ["a missing ring-ref<N>", (s) => { s.write(`${FE}/ring-page-order`, "1"); s.write(`${FE}/ring-ref0`, "100"); }, /ring-ref1/],
      ["an unknown protocol", (s) => s.write(`${FE}/protocol`, "x86_32-abi"), /unknown fe protocol/],
      ["an event channel that cannot be bound", (s) => s.write(`${FE}/event-channel`, "0"), /binding port 0/],
      ["an event channel that is not a number", (s) => s.write(`${FE}/event-channel`, "-1"), /event-channel/],
    ];
    for (const [name, spoil, msg] of cases) {
      it(name, () => {
        const { store, host, vbd, beState } = setup();
        store.write(`${FE}/ring-ref`, "100");
        store.write(`${FE}/event-channel`, "7");
        spoil(store);
        // Initialised with the spoiled entry in place.
        if (store.read(`${FE}/protocol`) === undefined) store.write(`${FE}/protocol`, "x86_64-abi");
        store.write(`${FE}/state`, String(XenbusStateInitialised));
        expect(beState()).toBe(XenbusStateClosing);
        expect(store.read(`${vbd.errorPath}/error`)).toMatch(msg);
        expect(vbd.blkback.connected).toBe(false);
        expect(host.liveMappings()).toBe(0);
        expect(host.bound.size).toBe(0);
      });
    }

    it("a frontend state that makes no sense (Reconfiguring, garbage) is fatal or Unknown, never a throw", () => {
      const { store, vbd, beState } = setup();
      store.write(`${FE}/state`, "7");
      expect(beState()).toBe(XenbusStateClosing);
      expect(vbd.errors[0]).toMatch(/saw state 7/);
      for (let i = 0; i < 100; i++) store.write(`${FE}/state`, i % 2 === 0 ? "8" : "7");
      expect(vbd.errors.length).toBe(VbdBackend.MAX_ERRORS);
      const b = setup();
      b.initialise();
      b.store.write(`${FE}/state`, "connected!");
      expect(b.beState()).toBe(XenbusStateClosed);
      expect(b.vbd.blkback.connected).toBe(false);
    });
  });
});
