import { describe, expect, it } from "vitest";
import { XenbusStateClosed, XenbusStateClosing, XenbusStateConnected, XenbusStateInitialising, XenbusStateInitWait } from "@vtlab/xen-public";
import { XenStore } from "../src/xenstored/index.js";
import { NetbackDevice, NetbackVif } from "../src/netback/index.js";
import { FakeHost, MAC_A, MAC_B, TestNetfront, ethFrame } from "./netback-fixture.js";

function setup() {
  const host = new FakeHost();
  const store = new XenStore();
  const fe = new TestNetfront(host, 5);
  const vif = new NetbackVif({ host, domid: 5, handle: 0, now: () => 0 });
  const states: number[] = [];
  const dev = new NetbackDevice({ store, vif, mac: "00:16:3e:00:00:05", bridge: "xenbr0", onState: (s) => states.push(s) });
  const F = "/local/domain/5/device/vif/0";
  const B = "/local/domain/0/backend/vif/5/0";
  /** What xen-netfront's talk_to_netback writes, then its state. */
  const frontendConnects = (state = XenbusStateConnected, extra: Record<string, string> = {}) => {
    const keys = { "tx-ring-ref": String(fe.txRef), "rx-ring-ref": String(fe.rxRef), "event-channel": String(fe.port), "request-rx-copy": "1", "feature-rx-notify": "1", "feature-sg": "1", ...extra };
    for (const [k, v] of Object.entries(keys)) store.write(`${F}/${k}`, v);
    store.write(`${F}/state`, String(state));
  };
  return { host, store, fe, vif, dev, states, F, B, frontendConnects };
}

describe("netback xenbus", () => {
  it("writes the backend and frontend directories as libxl and netback_probe do, and waits in InitWait", () => {
    const { store, B, F, dev } = setup();
    expect(store.read(`${B}/frontend`)).toBe(F);
    expect(store.read(`${B}/frontend-id`)).toBe("5");
    expect(store.read(`${B}/online`)).toBe("1");
    expect(store.read(`${B}/mac`)).toBe("00:16:3e:00:00:05");
    expect(store.read(`${B}/bridge`)).toBe("xenbr0");
    expect(store.read(`${B}/handle`)).toBe("0");
    expect(store.read(`${B}/feature-sg`)).toBe("1");
    expect(store.read(`${B}/feature-rx-copy`)).toBe("1");
    expect(store.read(`${B}/feature-rx-flip`)).toBe("0");
    expect(store.read(`${B}/feature-no-csum-offload`)).toBe("1");
    expect(store.read(`${B}/state`)).toBe(String(XenbusStateInitWait));
    expect(store.read(`${F}/backend`)).toBe(B);
    expect(store.read(`${F}/backend-id`)).toBe("0");
    expect(store.read(`${F}/state`)).toBe(String(XenbusStateInitialising));
    expect(store.read(`${F}/mac`)).toBe("00:16:3e:00:00:05");
    expect(store.getPerms(F)).toEqual([
      { domid: 5, perm: "n" },
      { domid: 0, perm: "r" },
    ]);
    expect(store.getPerms(`${F}/state`)?.[0]).toEqual({ domid: 5, perm: "n" });
    expect(store.getPerms(`${B}/feature-sg`)).toEqual([
      { domid: 0, perm: "n" },
      { domid: 5, perm: "r" },
    ]);
    expect(dev.state).toBe(XenbusStateInitWait);
  });

  it("Initialising -> InitWait -> Connected when the frontend connects; frames flow; Closing and Closed follow the frontend", () => {
    const { host, store, fe, vif, dev, states, B, F, frontendConnects } = setup();
    frontendConnects();
    expect(dev.state).toBe(XenbusStateConnected);
    expect(store.read(`${B}/state`)).toBe(String(XenbusStateConnected));
    expect(vif.connected).toBe(true);
    const out: Uint8Array[] = [];
    vif.onFrame = (f) => out.push(f);
    fe.send(ethFrame(MAC_B, MAC_A));
    host.dispatch();
    expect(out).toHaveLength(1);
    store.write(`${F}/state`, String(XenbusStateClosing));
    expect(dev.state).toBe(XenbusStateClosing);
    expect(vif.connected).toBe(false);
    store.write(`${F}/state`, String(XenbusStateClosed));
    expect(dev.state).toBe(XenbusStateClosed);
    expect(states).toEqual([XenbusStateInitWait, XenbusStateConnected, XenbusStateClosing, XenbusStateClosed]);
    // A frontend starting over (netfront resume) is offered the device again.
    store.write(`${F}/state`, String(XenbusStateInitialising));
    expect(dev.state).toBe(XenbusStateInitWait);
    frontendConnects();
    expect(dev.state).toBe(XenbusStateConnected);
  });

  it("split event channels (event-channel-tx/rx) are bound separately", () => {
    const { host, store, F, dev, frontendConnects, fe, vif } = setup();
    store.write(`${F}/event-channel-tx`, String(fe.port));
    store.write(`${F}/event-channel-rx`, "8");
    frontendConnects(XenbusStateConnected, {});
    // event-channel was written too: one channel wins as netback prefers it when present.
    expect(dev.state).toBe(XenbusStateConnected);
    expect(host.bound.size).toBe(1);
    vif.disconnect();
    store.rm(`${F}/event-channel`);
    store.write(`${F}/state`, String(XenbusStateClosed));
    store.write(`${F}/state`, String(XenbusStateInitialising));
    store.write(`${F}/state`, String(XenbusStateConnected));
    expect(dev.state).toBe(XenbusStateConnected);
    expect(host.bound.size).toBe(2);
  });

  it("hostile or missing frontend keys: an error node and Closing, never a throw", () => {
    for (const [extra, re] of [
      [{ "tx-ring-ref": "banana" }, /tx-ring-ref/],
      [{ "rx-ring-ref": "99999999999" }, /rx-ring-ref/],
      [{ "request-rx-copy": "0" }, /rx-copy/],
      [{ "feature-rx-notify": "0" }, /feature-rx-notify is mandatory/],
      [{ "event-channel": "-1" }, /event-channel/],
      [{ "tx-ring-ref": "4242" }, /mapping tx ring/],
      [{ "multi-queue-num-queues": "8" }, /queues/],
    ] as const) {
      const { store, B, dev, vif, frontendConnects } = setup();
      frontendConnects(XenbusStateConnected, extra);
      expect(dev.state).toBe(XenbusStateClosing);
      expect(store.read(`${B}/error`)).toMatch(re);
      expect(vif.connected).toBe(false);
    }
    // An unreadable state is XenbusStateUnknown (xenbus_read_driver_state): Closed.
    const a = setup();
    a.store.write(`${a.F}/state`, "\u0000garbage");
    expect(a.dev.state).toBe(XenbusStateClosed);
    // A number that is no state: fatal.
    const b = setup();
    b.store.write(`${b.F}/state`, "17");
    expect(b.dev.state).toBe(XenbusStateClosing);
    expect(b.store.read(`${b.B}/error`)).toMatch(/not a xenbus state/);
  });

  it("the frontend's state node removed counts as Closed; destroy removes both directories", () => {
    const { store, dev, F, B, frontendConnects, host } = setup();
    frontendConnects();
    store.rm(`${F}/state`);
    expect(dev.state).toBe(XenbusStateClosed);
    dev.destroy();
    expect(store.read(`${B}/state`)).toBeUndefined();
    expect(store.read(`${F}/backend`)).toBeUndefined();
    expect(host.bound.size).toBe(0);
    // Writes after destroy are not acted on.
    store.write(`${F}/state`, String(XenbusStateConnected));
    expect(dev.state).toBe(XenbusStateClosed);
  });

  it("two devices exchange frames once both frontends connect", () => {
    const host = new FakeHost();
    const store = new XenStore();
    const got: Uint8Array[] = [];
    const fa = new TestNetfront(host, 1);
    const va = new NetbackVif({ host, domid: 1, handle: 0, now: () => 0 });
    const vb = new NetbackVif({ host, domid: 2, handle: 0, now: () => 0 });
    const fb = new TestNetfront(host, 2);
    va.onFrame = (f) => vb.receive(f);
    vb.onFrame = (f) => got.push(f);
    for (const [v, f] of [
      [va, fa],
      [vb, fb],
    ] as const) {
      new NetbackDevice({ store, vif: v, mac: "00:16:3e:00:00:01", bridge: "xenbr0" });
      const F = `/local/domain/${v.domid}/device/vif/0`;
      store.write(`${F}/tx-ring-ref`, String(f.txRef));
      store.write(`${F}/rx-ring-ref`, String(f.rxRef));
      store.write(`${F}/event-channel`, String(f.port));
      store.write(`${F}/request-rx-copy`, "1");
      store.write(`${F}/feature-rx-notify`, "1");
      store.write(`${F}/state`, String(XenbusStateConnected));
    }
    fb.postRx(2);
    const frame = ethFrame(MAC_B, MAC_A, 200);
    fa.send(frame);
    host.dispatch();
    fb.poll();
    expect(fb.received).toEqual([frame]);
    expect(got).toHaveLength(0);
  });
});
