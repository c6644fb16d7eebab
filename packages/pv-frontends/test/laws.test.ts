/**
 * Laws of the frontends' building blocks over a flat GuestOps (no hypervisor): GuestMemory's
 * byte copies at any alignment, the UTF-8 codec, the front ring's notify rule and its refusal of
 * a response index past the requests made, and findPlatformMmio with no PCI device. The clients
 * against the real hypervisor and backends are tested in @vtlab/hypervisor's test/native-*.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { FrontRing, GuestMemory, GuestMemoryFault, PageAllocator, findPlatformMmio } from "@vtlab/pv-frontends";
import { utf8Decode, utf8Encode } from "@vtlab/xen-public";
import { FlatOps } from "./fake-ops.js";

describe("GuestMemory", () => {
  it("writeBytes then readBytes is the identity at any address and length", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 8000 }), fc.uint8Array({ maxLength: 300 }), (at, data) => {
        const ops = new FlatOps(8192 + 300);
        const mem = new GuestMemory(ops);
        mem.writeBytes(at, data);
        expect(Array.from(mem.readBytes(at, data.length))).toEqual(Array.from(data));
        expect(Array.from(ops.bytes.subarray(at, at + data.length))).toEqual(Array.from(data));
      }),
    );
  });

  it("64-bit fields below 2^53 round-trip through two 32-bit halves", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (v) => {
        const mem = new GuestMemory(new FlatOps(64));
        mem.write64(8, v);
        expect(mem.read64(8)).toBe(v);
      }),
    );
  });

  it("a fault on the kernel's own memory is thrown as GuestMemoryFault (a kernel oops)", () => {
    const mem = new GuestMemory(new FlatOps(16));
    expect(() => mem.read32(100)).toThrow(GuestMemoryFault);
  });

  it("the page allocator hands out whole pages inside its range, then undefined", () => {
    const p = new PageAllocator(0x1001, 0x5000);
    expect([p.alloc(), p.alloc(), p.alloc(), p.alloc()]).toEqual([0x2000, 0x3000, 0x4000, undefined]);
  });
});

describe("UTF-8", () => {
  it("decode(encode(s)) = s for any string of whole code points", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), (s) => {
        expect(utf8Decode(utf8Encode(s))).toBe(s);
      }),
    );
  });
  it("invalid bytes decode to U+FFFD without throwing", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        expect(typeof utf8Decode(b)).toBe("string");
      }),
    );
  });
});

describe("FrontRing", () => {
  it("notifies exactly when the new requests cross req_event (io/ring.h's rule)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), fc.integer({ min: 1, max: 32 }), fc.integer({ min: 0, max: 0xffff_ffff }), (old, n, event) => {
        const ops = new FlatOps(4096);
        const mem = new GuestMemory(ops);
        const r = new FrontRing(mem, 0, 112);
        mem.write32(0, old);
        mem.write32(4, event);
        r.reqProdPvt = (old + n) >>> 0;
        const next = (old + n) >>> 0;
        expect(r.pushRequests()).toBe(((next - event) >>> 0) < ((next - old) >>> 0));
        expect(mem.read32(0)).toBe(next);
      }),
    );
  });

  it("never follows a rsp_prod past the requests made", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 32 }), fc.integer({ min: 0, max: 0xffff_ffff }), (made, prod) => {
        const mem = new GuestMemory(new FlatOps(4096));
        const r = new FrontRing(mem, 0, 112);
        r.init();
        r.reqProdPvt = made;
        mem.write32(8, prod);
        const u = r.unconsumed();
        if (prod <= made) expect(u).toEqual([0, prod]);
        else {
          expect(u).toBeUndefined();
          expect(r.broken).toBeDefined();
        }
      }),
    );
  });

  it("sizes: blkif 32 slots, netif TX and RX 256", () => {
    const mem = new GuestMemory(new FlatOps(4096));
    expect([112, 12, 8].map((e) => new FrontRing(mem, 0, e).size)).toEqual([32, 256, 256]);
  });
});

describe("platform device discovery", () => {
  it("no device on bus 0 (all-ones config reads): undefined", () => {
    expect(findPlatformMmio(new FlatOps(16))).toBeUndefined();
  });
});
