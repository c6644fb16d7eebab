/**
 * The toolstack's xenstore and console composition (toolstack/xenstore.ts) on EPT and shadow:
 * libxl's entries at build with their permissions, xenstored serving a domain's real store page
 * (grant ref 1, the store port) and the console backend its console page (grant ref 0, the
 * console port), the guest side played by the test in the guest's own memory and with the
 * guest's own event-channel sends, dom0 serviced between the scheduler slices of `run`, and
 * everything released at destroy.
 */
import { describe, expect, it } from "vitest";
import { PAGE_SIZE } from "@vtlab/arch";
import {
  XENSTORE_ERROR_RINGIDX,
  XS_ERROR,
  XS_READ,
  XS_WATCH,
  XS_WATCH_EVENT,
  XS_WRITE,
  xencons_interface as XCI,
  xenstore_domain_interface as XSI,
} from "@vtlab/xen-public";
import { Hypervisor, Toolstack, parseDomainConfig, type Domain } from "@vtlab/hypervisor";
import { SPIN, tinyKernel } from "./tiny-kernel.js";

const cfg = (name: string, hap: boolean) => parseDomainConfig(`name = "${name}"\nmemory = 8\nkernel = "k.elf"\nhap = ${hap ? 1 : 0}\n`, `${name}.cfg`);

/** The guest's xenbus, in its own memory: requests into the store page, replies out of it. */
class GuestStore {
  readonly base: number;
  private reqId = 1;
  private inbox: number[] = [];
  readonly events: string[] = [];
  constructor(
    readonly hv: Hypervisor,
    readonly d: Domain,
  ) {
    this.base = (d.magicPages?.storePfn ?? 0) * PAGE_SIZE;
  }
  read(off: number, n: number): Uint8Array {
    const out = new Uint8Array(n);
    this.hv.memory.readBytes(this.d.machineAddress(this.base + off) as number, out);
    return out;
  }
  u32(off: number): number {
    return new DataView(this.read(off, 4).buffer).getUint32(0, true);
  }
  setU32(off: number, v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    this.d.writeGuest(this.base + off, b);
  }
  send(type: number, payload: string): number {
    const id = this.reqId++;
    const p = Uint8Array.from(payload, (c) => c.charCodeAt(0));
    const m = new Uint8Array(16 + p.length);
    const v = new DataView(m.buffer);
    v.setUint32(0, type, true);
    v.setUint32(4, id, true);
    v.setUint32(12, p.length, true);
    m.set(p, 16);
    let prod = this.u32(XSI.req_prod);
    for (const b of m) this.d.writeGuest(this.base + XSI.req + (prod++ & 1023), Uint8Array.of(b));
    this.setU32(XSI.req_prod, prod);
    this.d.xen.evtchn.send(this.d.magicPages?.storeEvtchn ?? -1);
    return id;
  }
  /** Complete messages from the rsp ring. */
  receive(): { type: number; reqId: number; payload: string }[] {
    let cons = this.u32(XSI.rsp_cons);
    const prod = this.u32(XSI.rsp_prod);
    for (; cons !== prod; cons = (cons + 1) >>> 0) this.inbox.push(this.read(XSI.rsp + (cons & 1023), 1)[0] ?? 0);
    this.setU32(XSI.rsp_cons, cons);
    const out: { type: number; reqId: number; payload: string }[] = [];
    while (this.inbox.length >= 16) {
      const h = new DataView(Uint8Array.from(this.inbox.slice(0, 16)).buffer);
      const len = h.getUint32(12, true);
      if (this.inbox.length < 16 + len) break;
      const payload = String.fromCharCode(...this.inbox.slice(16, 16 + len));
      const msg = { type: h.getUint32(0, true), reqId: h.getUint32(4, true), payload };
      this.inbox = this.inbox.slice(16 + len);
      if (msg.type === XS_WATCH_EVENT) this.events.push(payload);
      else out.push(msg);
    }
    return out;
  }
}

function host() {
  const hv = new Hypervisor({ memoryMiB: 128 });
  const ts = new Toolstack(hv, { resources: () => ({ kernel: tinyKernel(SPIN) }) });
  return { hv, ts };
}

describe.each([
  ["EPT", true],
  ["shadow", false],
])("toolstack xenstore and console (%s)", (_mode, hap) => {
  it("writes libxl's entries with their permissions at build and removes them at destroy", () => {
    const { ts } = host();
    const m = ts.create(cfg("alpha", hap));
    const N = m.domain.id;
    const xs = ts.xenstore;
    const dom = `/local/domain/${N}`;
    expect(xs.read(`${dom}/name`)).toBe("alpha");
    expect(xs.read(`${dom}/domid`)).toBe(String(N));
    expect(xs.read(`${dom}/store/port`)).toBe(String(m.domain.magicPages?.storeEvtchn));
    expect(xs.read(`${dom}/store/ring-ref`)).toBe(String(m.domain.magicPages?.storePfn));
    expect(xs.read(`${dom}/console/ring-ref`)).toBe(String(m.domain.magicPages?.consolePfn));
    expect(xs.read(`${dom}/memory/static-max`)).toBe(String(8 * 1024));
    expect(xs.read(`${dom}/cpu/0/availability`)).toBe("online");
    expect(xs.read(`${dom}/control/platform-feature-xs_reset_watches`)).toBe("1");
    expect(xs.getPerms(dom)).toEqual([{ domid: 0, perm: "n" }, { domid: N, perm: "r" }]);
    expect(xs.getPerms(`${dom}/device`)).toEqual([{ domid: 0, perm: "n" }, { domid: N, perm: "r" }]);
    expect(xs.getPerms(`${dom}/control/shutdown`)).toEqual([{ domid: N, perm: "n" }]);
    expect(xs.getPerms(`${dom}/data`)).toEqual([{ domid: N, perm: "n" }]);
    const vm = xs.read(`${dom}/vm`) ?? "";
    expect(xs.read(`${vm}/name`)).toBe("alpha");
    expect(xs.read(`/local/domain/0/name`)).toBe("Domain-0");
    expect(ts.pv.domain(N)?.introduced).toBe(true);
    expect(ts.pv.problems).toEqual([]);
    ts.destroy(N);
    expect(xs.directory(dom)).toBeUndefined();
    expect(xs.directory(vm)).toBeUndefined();
    expect(xs.directory(`/libxl/${N}`)).toBeUndefined();
    expect(xs.isDomainIntroduced(N)).toBe(false);
  });

  it("the guest talks to xenstored over its store page: requests answered between slices of run, its permissions applied", () => {
    const { hv, ts } = host();
    const m = ts.create(cfg("beta", hap));
    const other = ts.create(cfg("gamma", hap));
    const g = new GuestStore(hv, m.domain);
    const r1 = g.send(XS_READ, "name\0");
    const r2 = g.send(XS_WRITE, "data/hello\0world");
    const r3 = g.send(XS_WRITE, "name\0evil");
    const r4 = g.send(XS_READ, `/local/domain/${other.domain.id}/name\0`);
    g.send(XS_WATCH, "data\0tok\0");
    const before = m.domain.xen.evtchn.isPending(m.domain.magicPages?.storeEvtchn ?? -1);
    expect(before).toBe(false);
    ts.run({ maxInstructions: 20_000 });
    const replies = g.receive();
    expect(replies.find((r) => r.reqId === r1)?.payload).toBe("beta");
    expect(replies.find((r) => r.reqId === r2)?.payload).toBe("OK\0");
    expect(replies.find((r) => r.reqId === r3)).toMatchObject({ type: XS_ERROR, payload: "EACCES\0" });
    expect(replies.find((r) => r.reqId === r4)).toMatchObject({ type: XS_ERROR, payload: "EACCES\0" });
    expect(ts.xenstore.read(`/local/domain/${m.domain.id}/data/hello`)).toBe("world");
    expect(g.events).toEqual(["data\0tok\0"]);
    // xenstored notified the guest's store port.
    expect(m.domain.xen.evtchn.isPending(m.domain.magicPages?.storeEvtchn ?? -1)).toBe(true);
    // A backend's change reaches the guest's watch.
    ts.xenstore.write(`/local/domain/${m.domain.id}/data/x`, "1");
    ts.run({ maxInstructions: 20_000 });
    g.receive();
    expect(g.events).toContain("data/x\0tok\0");
  });

  it("the console backend shows what the guest writes to its console ring in the domain's console", () => {
    const { hv, ts } = host();
    const seen: string[] = [];
    const ts2 = new Toolstack(hv, { resources: () => ({ kernel: tinyKernel(SPIN), onConsole: (t) => seen.push(t) }) });
    void ts;
    const m = ts2.create(cfg("delta", hap));
    const d = m.domain;
    const base = (d.magicPages?.consolePfn ?? 0) * PAGE_SIZE;
    const text = "hello from the PV console\n";
    d.writeGuest(base + XCI.out, Uint8Array.from(text, (c) => c.charCodeAt(0)));
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, text.length, true);
    d.writeGuest(base + XCI.out_prod, b);
    d.xen.evtchn.send(d.magicPages?.consoleEvtchn ?? -1);
    ts2.run({ maxInstructions: 20_000 });
    expect(d.console).toContain(text);
    expect(seen.join("")).toContain(text);
    expect(ts2.pv.domain(d.id)?.console?.stats.bytesOut).toBe(text.length);
  });

  it("hostile: bogus store indices mark that connection bad; the other domain and the host carry on; destroy releases the grants", () => {
    const { hv, ts } = host();
    const bad = ts.create(cfg("bad", hap));
    const good = ts.create(cfg("good", hap));
    const gb = new GuestStore(hv, bad.domain);
    gb.setU32(XSI.req_prod, 5000);
    bad.domain.xen.evtchn.send(bad.domain.magicPages?.storeEvtchn ?? -1);
    const gg = new GuestStore(hv, good.domain);
    const id = gg.send(XS_READ, "name\0");
    ts.run({ maxInstructions: 20_000 });
    expect(ts.xenstore.connection(bad.domain.id)?.ignored).toBe(true);
    expect(gb.u32(XSI.error)).toBe(XENSTORE_ERROR_RINGIDX);
    expect(gg.receive().find((r) => r.reqId === id)?.payload).toBe("good");
    const unmapsBefore = hv.dom0.grants.unmaps;
    ts.destroy("bad");
    // The store page and the console page are unmapped.
    expect(hv.dom0.grants.unmaps - unmapsBefore).toBe(2);
    ts.run({ maxInstructions: 20_000 });
    expect(good.domain.state).toBe("running");
  });

  it("a domain destroyed behind the toolstack's back is detached at the next service", () => {
    const { hv, ts } = host();
    const m = ts.create(cfg("eps", hap));
    const N = m.domain.id;
    hv.destroyDomain(N);
    hv.serviceDom0();
    expect(ts.pv.domain(N)).toBeUndefined();
    expect(ts.xenstore.directory(`/local/domain/${N}`)).toBeUndefined();
  });
});
