/**
 * `disk = [...]` with `vdev=xvda` (or hda) and the toolstack's vbds: the xenstore directories
 * made at build (devid 51712 for xvda, 768 for hda) and removed at destroy, and blkback serving
 * a real domain whose blkfront is played by the test in the guest's memory (the ring and a data
 * page granted to dom0 with seeded grant entries, events on a real interdomain channel), on the
 * same image the emulated ATA disk uses.
 */
import { describe, expect, it } from "vitest";
import { PAGE_SIZE } from "@vtlab/arch";
import {
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_RSP_ERROR,
  BLKIF_RSP_OKAY,
  DOMID_SELF,
  XenbusStateConnected,
  XenbusStateInitialised,
  XenbusStateInitWait,
} from "@vtlab/xen-public";
import { Hypervisor, MemoryBlockBackend, Toolstack, formatDomainConfig, parseDiskSpec, parseDomainConfig, type Domain } from "@vtlab/hypervisor";
import { BlockBackendStorage } from "../src/toolstack/vbd.js";
import { SPIN, tinyKernel } from "./tiny-kernel.js";

const cfg = (name: string, disk: string) => parseDomainConfig(`name = "${name}"\nmemory = 8\nkernel = "k.elf"\ndisk = [ "${disk}" ]\n`, `${name}.cfg`);

describe("disk = [...] with vdev=xvda", () => {
  it("parses xvda, and refuses a second primary master", () => {
    expect(parseDiskSpec("disk.img,raw,xvda,rw")).toEqual({ target: "disk.img", format: "raw", vdev: "xvda", access: "rw" });
    expect(parseDiskSpec("disk.img,raw,xvdb")).toMatch(/unsupported vdev "xvdb"/);
    const c = cfg("a", "format=raw, vdev=xvda, access=ro, target=pv.img");
    expect(parseDomainConfig(formatDomainConfig(c), "b.cfg")).toEqual(c);
    expect(() => parseDomainConfig(`name = "a"\nmemory = 8\nkernel = "k"\ndisk = [ "a.img,,hda", "b.img,,xvda" ]\n`, "a.cfg")).toThrow(/primary master again/);
  });
});

/** The test's blkfront in a domain's memory: ring at gfn 0x600 (ref 10), data at 0x610 (ref 20). */
class GuestBlkfront {
  static readonly RING_REF = 10;
  static readonly DATA_REF = 20;
  readonly ringGfn = 0x600;
  readonly dataGfn = 0x610;
  readonly port: number;
  private prod = 0;
  private cons = 0;
  constructor(
    readonly hv: Hypervisor,
    readonly d: Domain,
  ) {
    expect(d.xen.grants.seedEntry(GuestBlkfront.RING_REF, 0, this.ringGfn)).toBe(0);
    expect(d.xen.grants.seedEntry(GuestBlkfront.DATA_REF, 0, this.dataGfn)).toBe(0);
    const hdr = new Uint8Array(64);
    new DataView(hdr.buffer).setUint32(4, 1, true); // req_event
    new DataView(hdr.buffer).setUint32(12, 1, true); // rsp_event
    d.writeGuest(this.ringGfn * PAGE_SIZE, hdr);
    this.port = d.xen.evtchn.allocUnbound(DOMID_SELF, 0);
    expect(this.port).toBeGreaterThan(0);
  }
  read(gpa: number, n: number): Uint8Array {
    const out = new Uint8Array(n);
    this.hv.memory.readBytes(this.d.machineAddress(gpa) as number, out);
    return out;
  }
  /** What xen-blkfront's talk_to_blkback writes, then Initialised. */
  connect(ts: Toolstack, devid: number): void {
    const F = `/local/domain/${this.d.id}/device/vbd/${devid}`;
    ts.xenstore.write(`${F}/ring-ref`, String(GuestBlkfront.RING_REF));
    ts.xenstore.write(`${F}/event-channel`, String(this.port));
    ts.xenstore.write(`${F}/protocol`, "x86_64-abi");
    ts.xenstore.write(`${F}/feature-persistent`, "1");
    ts.xenstore.write(`${F}/state`, String(XenbusStateInitialised));
  }
  /** One one-page request on the data page, pushed and notified. */
  request(op: number, id: number, sector: number): void {
    const b = new Uint8Array(112);
    const v = new DataView(b.buffer);
    v.setUint8(0, op);
    v.setUint8(1, 1);
    v.setUint32(8, id, true);
    v.setUint32(16, sector, true);
    v.setUint32(24, GuestBlkfront.DATA_REF, true);
    v.setUint8(28, 0);
    v.setUint8(29, 7);
    this.d.writeGuest(this.ringGfn * PAGE_SIZE + 64 + (this.prod % 32) * 112, b);
    this.prod++;
    const p = new Uint8Array(4);
    new DataView(p.buffer).setUint32(0, this.prod, true);
    this.d.writeGuest(this.ringGfn * PAGE_SIZE, p);
    this.d.xen.evtchn.send(this.port);
  }
  responses(): { id: number; status: number }[] {
    const out: { id: number; status: number }[] = [];
    const rp = new DataView(this.read(this.ringGfn * PAGE_SIZE + 8, 4).buffer).getUint32(0, true);
    for (; this.cons !== rp; this.cons++) {
      const r = new DataView(this.read(this.ringGfn * PAGE_SIZE + 64 + (this.cons % 32) * 112, 16).buffer);
      out.push({ id: r.getUint32(0, true), status: r.getInt16(10, true) });
    }
    return out;
  }
}

describe("the toolstack's vbds", () => {
  function host(disk: MemoryBlockBackend) {
    const hv = new Hypervisor({ memoryMiB: 128 });
    const ts = new Toolstack(hv, { resources: () => ({ kernel: tinyKernel(SPIN), disk }) });
    return { hv, ts };
  }

  it("writes the vbd's directories at build (xvda = 51712, InitWait) and removes them at destroy", () => {
    const { ts } = host(new MemoryBlockBackend(2048));
    const a = ts.create(cfg("a", "format=raw, vdev=xvda, access=rw, target=disk.img"));
    const b = ts.create(cfg("b", "disk.img,,hda,ro"));
    const A = a.domain.id;
    const B = b.domain.id;
    const s = ts.xenstore;
    const be = `/local/domain/0/backend/vbd/${A}/51712`;
    expect(s.read(`${be}/state`)).toBe(String(XenbusStateInitWait));
    expect(s.read(`${be}/params`)).toBe("disk.img");
    expect(s.read(`${be}/mode`)).toBe("w");
    expect(s.read(`${be}/dev`)).toBe("xvda");
    expect(s.read(`/local/domain/${A}/device/vbd/51712/backend`)).toBe(be);
    expect(s.read(`/local/domain/${A}/device/vbd/51712/virtual-device`)).toBe("51712");
    expect(s.read(`/local/domain/0/backend/vbd/${B}/768/mode`)).toBe("r");
    expect(ts.disks.vbds(A)[0]?.devid).toBe(51712);
    // The emulated ATA disk is still there (until the guest unplugs it).
    expect(a.domain.disk).toBeDefined();
    ts.destroy("a");
    expect(s.read(`${be}/state`)).toBeUndefined();
    expect(s.read(`/local/domain/${A}/device/vbd/51712/backend`)).toBeUndefined();
    expect(s.directory(`/local/domain/0/backend/vbd`)).toEqual([String(B)]);
    expect(ts.disks.vbds(A)).toHaveLength(0);
  });

  it("a guest's blkfront writes and reads the image through blkback; the emulated disk sees the same data", () => {
    const image = new MemoryBlockBackend(2048);
    const { hv, ts } = host(image);
    const m = ts.create(cfg("a", "disk.img,raw,xvda"));
    const f = new GuestBlkfront(hv, m.domain);
    f.connect(ts, 51712);
    const vbd = ts.disks.vbds(m.domain.id)[0]?.vbd;
    expect(vbd?.state).toBe(XenbusStateConnected);
    expect(ts.xenstore.read(`/local/domain/0/backend/vbd/${m.domain.id}/51712/sectors`)).toBe("2048");
    const data = new Uint8Array(PAGE_SIZE).map((_, i) => (i * 13) & 0xff);
    m.domain.writeGuest(f.dataGfn * PAGE_SIZE, data);
    f.request(BLKIF_OP_WRITE, 1, 40);
    hv.dom0.evtchn.dispatch();
    expect(f.responses()).toEqual([{ id: 1, status: BLKIF_RSP_OKAY }]);
    expect(image.data.subarray(40 * 512, 48 * 512)).toEqual(data);
    m.domain.writeGuest(f.dataGfn * PAGE_SIZE, new Uint8Array(PAGE_SIZE));
    f.request(BLKIF_OP_READ, 2, 40);
    hv.dom0.evtchn.dispatch();
    expect(f.responses()).toEqual([{ id: 2, status: BLKIF_RSP_OKAY }]);
    expect(f.read(f.dataGfn * PAGE_SIZE, PAGE_SIZE)).toEqual(data);
    f.request(BLKIF_OP_READ, 3, 2047); // past the disk's end
    hv.dom0.evtchn.dispatch();
    expect(f.responses()).toEqual([{ id: 3, status: BLKIF_RSP_ERROR }]);
    expect(vbd?.blkback.counters).toMatchObject({ read: 2, write: 1, sectorsRead: 8, sectorsWritten: 8, errBadRange: 1 });
    // Destroy unmaps the ring and the persistent data grant before the domain goes.
    ts.destroyAll();
    expect(vbd?.blkback.connected).toBe(false);
    expect(vbd?.blkback.persistentGrantCount).toBe(0);
  });

  it("a data grant the guest revokes while blkback holds it persistently: the mapping keeps the frame (as Xen), destroy releases it", () => {
    const image = new MemoryBlockBackend(2048);
    const { hv, ts } = host(image);
    const m = ts.create(cfg("a", "disk.img,raw,xvda"));
    const f = new GuestBlkfront(hv, m.domain);
    f.connect(ts, 51712);
    const vbd = ts.disks.vbds(m.domain.id)[0]?.vbd;
    m.domain.writeGuest(f.dataGfn * PAGE_SIZE, new Uint8Array(PAGE_SIZE).fill(0x5c));
    f.request(BLKIF_OP_WRITE, 1, 0);
    hv.dom0.evtchn.dispatch();
    expect(f.responses()).toEqual([{ id: 1, status: BLKIF_RSP_OKAY }]);
    expect(vbd?.blkback.persistentGrantCount).toBe(1);
    // The guest clears its grant entry (gnttab_end_foreign_access without checking it is unused).
    const entry = m.domain.xen.grants.sharedFrameMfn(0)! * PAGE_SIZE + GuestBlkfront.DATA_REF * 8;
    hv.memory.write32(entry, 0);
    f.request(BLKIF_OP_WRITE, 2, 8);
    hv.dom0.evtchn.dispatch();
    expect(f.responses()).toEqual([{ id: 2, status: BLKIF_RSP_OKAY }]);
    expect(image.data[8 * 512]).toBe(0x5c);
    const unmaps = hv.dom0.grants.unmaps;
    ts.destroyAll();
    // The ring and the persistent data grant (and the xenstore and console pages) are unmapped.
    expect(hv.dom0.grants.unmaps).toBe(unmaps + 4);
    expect(vbd?.blkback.counters.grantUnmaps).toBe(1);
    expect(vbd?.blkback.connected).toBe(false);
  });

  it("BlockBackendStorage: a backend that throws is an I/O error value, read-only refuses writes", () => {
    const failing = { sectors: 8, read: () => { throw new Error("EIO"); }, write: () => {} };
    const s = new BlockBackendStorage(failing, false);
    expect(s.read(0, 1, new Uint8Array(512))).toBe(false);
    expect(s.ioErrors).toBe(1);
    expect(s.read(8, 1, new Uint8Array(512))).toBe(false);
    const ro = new BlockBackendStorage(new MemoryBlockBackend(8), true);
    expect(ro.write(0, new Uint8Array(512))).toBe(false);
    expect(ro.flush()).toBe(true);
  });
});
