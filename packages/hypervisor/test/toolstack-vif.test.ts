/**
 * `vif = [...]` in xl.cfg and the toolstack's vifs: parsing (xl-network-configuration(5), errors
 * naming the bad field), netback vifs and their xenstore directories made at build and removed
 * at destroy, one bridge per name per host, and frames crossing a bridge between two real
 * domains whose "frontends" are played by the test in their guest memory (rings and buffers
 * granted to dom0 with seeded grant entries, events on real interdomain channels).
 */
import { describe, expect, it } from "vitest";
import { PAGE_SIZE } from "@vtlab/arch";
import { DOMID_SELF, XenbusStateConnected, XenbusStateInitWait } from "@vtlab/xen-public";
import { ConfigError, Hypervisor, Toolstack, formatDomainConfig, parseDomainConfig, parseVifSpec, type Domain } from "@vtlab/hypervisor";
import { SPIN, tinyKernel } from "./tiny-kernel.js";

const base = (name: string, vif: string) => `name = "${name}"\nmemory = 8\nkernel = "k.elf"\n${vif}\n`;

describe("vif = [...] parsing", () => {
  it("parses mac and bridge, defaults the bridge to xenbr0, and formats back", () => {
    const c = parseDomainConfig(base("a", `vif = [ "mac=00:16:3E:0a:0b:0c,bridge=xenbr1", "", "bridge=lan" ]`), "a.cfg");
    expect(c.vif).toEqual([{ mac: "00:16:3e:0a:0b:0c", bridge: "xenbr1" }, { bridge: "xenbr0" }, { bridge: "lan" }]);
    expect(parseDomainConfig(formatDomainConfig(c), "b.cfg")).toEqual(c);
    expect(parseDomainConfig(base("a", ""), "a.cfg").vif).toBeUndefined();
  });

  it.each([
    ["mac=00:16:3e:00:00", /bad mac "00:16:3e:00:00"/],
    ["mac=01:16:3e:00:00:01", /multicast/],
    ["mac=00:00:00:00:00:00", /zero address/],
    ["bridge=this-name-is-too-long", /bad bridge/],
    ["model=e1000", /unsupported parameter "model"/],
    ["mac=00:16:3e:00:00:01,mac=00:16:3e:00:00:02", /mac given twice/],
    ["xenbr0", /expected key=value/],
  ])("rejects %s naming the field", (spec, re) => {
    expect(parseVifSpec(spec)).toMatch(re);
    expect(() => parseDomainConfig(base("a", `vif = [ "${spec}" ]`), "a.cfg")).toThrow(ConfigError);
    try {
      parseDomainConfig(base("a", `\nvif = [ "${spec}" ]`), "a.cfg");
    } catch (e) {
      expect((e as ConfigError).key).toBe("vif");
      expect((e as ConfigError).line).toBe(5);
      expect((e as ConfigError).message).toMatch(re);
    }
  });

  it("rejects a non-list, a non-string item and a MAC used twice", () => {
    expect(() => parseDomainConfig(base("a", `vif = "mac=00:16:3e:00:00:01"`), "a.cfg")).toThrow(/expected a list of vif specs/);
    expect(() => parseDomainConfig(base("a", `vif = [ 3 ]`), "a.cfg")).toThrow(/expected a quoted vif spec/);
    expect(() => parseDomainConfig(base("a", `vif = [ "mac=00:16:3e:00:00:01", "mac=00:16:3E:00:00:01" ]`), "a.cfg")).toThrow(/used twice/);
  });
});

/** The test's netfront for one domain, in the domain's own memory. */
class GuestNetfront {
  static readonly TX_REF = 10;
  static readonly RX_REF = 11;
  static readonly BUF_REF = 20;
  readonly txGfn = 0x600;
  readonly rxGfn = 0x601;
  readonly bufGfn = 0x610;
  readonly port: number;
  private txProd = 0;
  private rxProd = 0;
  private rxCons = 0;
  constructor(
    readonly hv: Hypervisor,
    readonly d: Domain,
  ) {
    const g = d.xen.grants;
    expect(g.seedEntry(GuestNetfront.TX_REF, 0, this.txGfn)).toBe(0);
    expect(g.seedEntry(GuestNetfront.RX_REF, 0, this.rxGfn)).toBe(0);
    for (let i = 0; i < 8; i++) expect(g.seedEntry(GuestNetfront.BUF_REF + i, 0, this.bufGfn + i)).toBe(0);
    for (const gfn of [this.txGfn, this.rxGfn]) {
      const hdr = new Uint8Array(64);
      new DataView(hdr.buffer).setUint32(4, 1, true); // req_event
      new DataView(hdr.buffer).setUint32(12, 1, true); // rsp_event
      d.writeGuest(gfn * PAGE_SIZE, hdr);
    }
    this.port = d.xen.evtchn.allocUnbound(DOMID_SELF, 0);
    expect(this.port).toBeGreaterThan(0);
  }
  private u32(gpa: number, v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    this.d.writeGuest(gpa, b);
  }
  read(gpa: number, n: number): Uint8Array {
    const out = new Uint8Array(n);
    this.hv.memory.readBytes(this.d.machineAddress(gpa) as number, out);
    return out;
  }
  /** What xen-netfront writes to xenstore, then Connected. */
  connect(ts: Toolstack): void {
    const F = `/local/domain/${this.d.id}/device/vif/0`;
    ts.xenstore.write(`${F}/tx-ring-ref`, String(GuestNetfront.TX_REF));
    ts.xenstore.write(`${F}/rx-ring-ref`, String(GuestNetfront.RX_REF));
    ts.xenstore.write(`${F}/event-channel`, String(this.port));
    ts.xenstore.write(`${F}/request-rx-copy`, "1");
    ts.xenstore.write(`${F}/feature-rx-notify`, "1");
    ts.xenstore.write(`${F}/state`, String(XenbusStateConnected));
  }
  postRx(n: number): void {
    for (let i = 0; i < n; i++) {
      const slot = this.rxGfn * PAGE_SIZE + 64 + (this.rxProd % 256) * 8;
      const b = new Uint8Array(8);
      new DataView(b.buffer).setUint16(0, this.rxProd & 0xffff, true);
      new DataView(b.buffer).setUint32(4, GuestNetfront.BUF_REF + (this.rxProd % 8), true);
      this.d.writeGuest(slot, b);
      this.rxProd++;
    }
    this.u32(this.rxGfn * PAGE_SIZE, this.rxProd);
    this.d.xen.evtchn.send(this.port);
  }
  send(frame: Uint8Array): void {
    this.d.writeGuest((this.bufGfn + 7) * PAGE_SIZE, frame);
    const b = new Uint8Array(12);
    const v = new DataView(b.buffer);
    v.setUint32(0, GuestNetfront.BUF_REF + 7, true);
    v.setUint16(8, this.txProd & 0xffff, true);
    v.setUint16(10, frame.length, true);
    this.d.writeGuest(this.txGfn * PAGE_SIZE + 64 + (this.txProd % 256) * 12, b);
    this.txProd++;
    this.u32(this.txGfn * PAGE_SIZE, this.txProd);
    this.d.xen.evtchn.send(this.port);
  }
  /** Frames answered on the RX ring since the last call. */
  received(): Uint8Array[] {
    const out: Uint8Array[] = [];
    const prod = new DataView(this.read(this.rxGfn * PAGE_SIZE + 8, 4).buffer).getUint32(0, true);
    for (; this.rxCons !== prod; this.rxCons++) {
      const r = new DataView(this.read(this.rxGfn * PAGE_SIZE + 64 + (this.rxCons % 256) * 8, 8).buffer);
      const id = r.getUint16(0, true);
      const status = r.getInt16(6, true);
      if (status > 0) out.push(this.read((this.bufGfn + (id % 8)) * PAGE_SIZE + r.getUint16(2, true), status));
    }
    return out;
  }
}

function frame(dst: readonly number[], src: readonly number[], len: number): Uint8Array {
  const f = new Uint8Array(len);
  f.set(dst, 0);
  f.set(src, 6);
  for (let i = 12; i < len; i++) f[i] = i & 0xff;
  return f;
}

describe("the toolstack's vifs", () => {
  function host() {
    const hv = new Hypervisor({ memoryMiB: 128 });
    const ts = new Toolstack(hv, { resources: () => ({ kernel: tinyKernel(SPIN) }) });
    return { hv, ts };
  }

  it("writes each vif's xenstore directories at build, one bridge per name, and removes them at destroy", () => {
    const { hv, ts } = host();
    const a = ts.create(parseDomainConfig(base("a", `vif = ["mac=00:16:3e:00:00:0a,bridge=xenbr0", "bridge=xenbr1"]`), "a.cfg"));
    const b = ts.create(parseDomainConfig(base("b", `vif = ["bridge=xenbr0"]`), "b.cfg"));
    const A = a.domain.id;
    const B = b.domain.id;
    const s = ts.xenstore;
    expect(s.read(`/local/domain/0/backend/vif/${A}/0/mac`)).toBe("00:16:3e:00:00:0a");
    expect(s.read(`/local/domain/0/backend/vif/${A}/1/bridge`)).toBe("xenbr1");
    expect(s.read(`/local/domain/0/backend/vif/${A}/0/state`)).toBe(String(XenbusStateInitWait));
    expect(s.read(`/local/domain/${A}/device/vif/1/backend`)).toBe(`/local/domain/0/backend/vif/${A}/1`);
    expect(s.read(`/local/domain/${B}/device/vif/0/mac`)).toBe(`00:16:3e:00:${B.toString(16).padStart(2, "0")}:00`);
    expect([...ts.network.bridges.keys()].sort()).toEqual(["xenbr0", "xenbr1"]);
    expect(ts.network.bridges.get("xenbr0")?.ports).toHaveLength(2);
    ts.destroy("a");
    expect(s.read(`/local/domain/0/backend/vif/${A}/0/mac`)).toBeUndefined();
    expect(s.directory(`/local/domain/0/backend/vif`)).toEqual([String(B)]);
    expect(s.read(`/local/domain/${A}/device/vif/0/backend`)).toBeUndefined();
    expect(ts.network.bridges.get("xenbr0")?.ports).toHaveLength(1);
    expect(ts.network.vifs(A)).toHaveLength(0);
    void hv;
  });

  it("two domains on xenbr0 exchange frames through netback and the bridge; a third on xenbr1 sees none", () => {
    const { hv, ts } = host();
    const ma = ts.create(parseDomainConfig(base("a", `vif = ["mac=00:16:3e:00:00:0a"]`), "a.cfg"));
    const mb = ts.create(parseDomainConfig(base("b", `vif = ["mac=00:16:3e:00:00:0b"]`), "b.cfg"));
    const mc = ts.create(parseDomainConfig(base("c", `vif = ["bridge=xenbr1"]`), "c.cfg"));
    const [fa, fb, fc] = [ma, mb, mc].map((m) => new GuestNetfront(hv, m.domain));
    for (const [f, m] of [
      [fa, ma],
      [fb, mb],
      [fc, mc],
    ] as const) {
      f?.connect(ts);
      expect(ts.network.vifs(m.domain.id)[0]?.device.state).toBe(XenbusStateConnected);
      f?.postRx(4);
    }
    hv.dom0.evtchn.dispatch();
    const macA = [0, 0x16, 0x3e, 0, 0, 0x0a];
    const macB = [0, 0x16, 0x3e, 0, 0, 0x0b];
    const arp = frame([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], macA, 60);
    fa?.send(arp);
    hv.dom0.evtchn.dispatch();
    expect(fb?.received()).toEqual([arp]);
    expect(mb.domain.xen.evtchn.isPending(fb?.port ?? -1)).toBe(true);
    const reply = frame(macA, macB, 98);
    fb?.send(reply);
    hv.dom0.evtchn.dispatch();
    expect(fa?.received()).toEqual([reply]);
    expect(fc?.received()).toEqual([]);
    const va = ts.network.vifs(ma.domain.id)[0]?.vif;
    expect(va?.counters).toMatchObject({ txPackets: 1, rxPackets: 1, txBytes: 60, rxBytes: 98 });
    // Destroy unmaps the rings dom0 had mapped (two per vif), before the domain goes.
    const vifs = [ma, mb, mc].map((m) => ts.network.vifs(m.domain.id)[0]?.vif);
    const unmapsBefore = hv.dom0.grants.unmaps;
    ts.destroyAll();
    expect(vifs.every((v) => v !== undefined && !v.connected)).toBe(true);
    expect(hv.dom0.grants.unmaps - unmapsBefore).toBeGreaterThanOrEqual(6);
    expect(hv.dom0.grants.table.mappings).toBe(0);
  });
});
