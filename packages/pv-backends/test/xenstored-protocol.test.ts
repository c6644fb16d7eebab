// The xenstore wire protocol over a domain's ring, and a hostile guest against it: every XSA
// class of issue 13 that concerns xenstored (oversized payloads, bad paths, embedded NULs,
// watches whose events are never read (XSA-326), more transactions than the quota, bogus ring
// indices) gets a test, and afterwards the store and the other domains carry on.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  XENSTORE_ERROR_PROTO,
  XENSTORE_ERROR_RINGIDX,
  XS_DIRECTORY,
  XS_DIRECTORY_PART,
  XS_ERROR,
  XS_GET_PERMS,
  XS_INTRODUCE,
  XS_MKDIR,
  XS_READ,
  XS_RM,
  XS_SET_PERMS,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_UNWATCH,
  XS_WATCH,
  XS_WATCH_EVENT,
  XS_WRITE,
  xenstore_domain_interface as XSI,
} from "@vtlab/xen-public";
import { XenStore, XENSTORED_DEFAULT_QUOTAS } from "../src/index.js";
import { FakeHost, GuestXs, str, strs } from "./xenstored-harness.js";

function setup(quotas = {}): { xs: XenStore; host: FakeHost; g1: GuestXs; g2: GuestXs; logs: string[] } {
  const logs: string[] = [];
  const xs = new XenStore({ quotas, log: (l) => logs.push(l) });
  const host = new FakeHost();
  for (const d of [1, 2]) {
    xs.mkdir(`/local/domain/${d}`);
    xs.setPerms(`/local/domain/${d}`, [{ domid: d, perm: "n" }]);
  }
  return { xs, host, g1: new GuestXs(host, xs, 1), g2: new GuestXs(host, xs, 2), logs };
}

const ok = (m: { type: number; payload: Uint8Array }): string => (m.type === XS_ERROR ? `error ${str(m.payload)}` : str(m.payload));

describe("xenstore wire protocol", () => {
  it("echoes req_id and tx_id, answers OK, notifies the guest's port after writing", () => {
    const { g1, host } = setup();
    host.sent.length = 0;
    g1.sendRaw(g1.encode(XS_WRITE, "a\0v", 0, 0xdeadbeef));
    const [m] = g1.receive();
    expect(m).toMatchObject({ type: XS_WRITE, reqId: 0xdeadbeef, txId: 0 });
    expect(str(m?.payload ?? new Uint8Array())).toBe("OK\0");
    expect(host.sent).toContain(g1.port);
  });

  it("a message split over many notifies and across the ring's wrap is read whole", () => {
    const { g1, xs } = setup();
    for (let i = 0; i < 5; i++) {
      const value = "x".repeat(300 + i);
      const msg = g1.encode(XS_WRITE, `k${i}\0${value}`);
      for (let o = 0; o < msg.length; o += 7) g1.sendRaw(msg.subarray(o, Math.min(msg.length, o + 7)));
      expect(g1.pump().map((m) => str(m.payload))).toEqual(["OK\0"]);
      expect(xs.read(`/local/domain/1/k${i}`)).toBe(value);
    }
  });

  it("DIRECTORY and DIRECTORY_PART; an answer over 4096 bytes is E2BIG", () => {
    const { g1, xs } = setup();
    for (let i = 0; i < 3; i++) g1.request(XS_MKDIR, `d/c${i}\0`);
    expect(strs(g1.request(XS_DIRECTORY, "d\0").payload)).toEqual(["c0", "c1", "c2"]);
    const part = strs(g1.request(XS_DIRECTORY_PART, "d\0" + "0\0").payload);
    // "<generation>\0", the names, and an empty string: the end of the list.
    expect(part.slice(1)).toEqual(["c0", "c1", "c2", ""]);
    for (let i = 0; i < 100; i++) xs.mkdir(`/local/domain/1/big/${"n".repeat(60)}${i}`);
    expect(ok(g1.request(XS_DIRECTORY, "big\0"))).toBe("error E2BIG\0");
    // DIRECTORY_PART pages through it.
    const names: string[] = [];
    for (let off = 0, guard = 0; guard < 10; guard++) {
      const p = strs(g1.request(XS_DIRECTORY_PART, `big\0${off}\0`).payload).slice(1);
      const last = p[p.length - 1];
      const chunk = last === "" ? p.slice(0, -1) : p;
      names.push(...chunk);
      off += chunk.reduce((a, c) => a + c.length + 1, 0);
      if (last === "" || chunk.length === 0) break;
    }
    expect(names).toEqual(xs.directory("/local/domain/1/big"));
  });

  it("WATCH: ack then the initial event; relative paths stay relative; EEXIST; UNWATCH; events only where the watcher may read", () => {
    const { xs, g1, g2 } = setup();
    expect(ok(g1.request(XS_WATCH, "device\0tok\0"))).toBe("OK\0");
    g1.pump();
    expect(g1.events).toEqual([{ path: "device", token: "tok" }]);
    expect(ok(g1.request(XS_WATCH, "device\0tok\0"))).toBe("error EEXIST\0");
    xs.write("/local/domain/1/device/vif/0/state", "1");
    g1.pump();
    expect(g1.events.at(-1)).toEqual({ path: "device/vif/0/state", token: "tok" });
    // Domain 2 watches domain 1's subtree: it never hears about it.
    expect(ok(g2.request(XS_WATCH, "/local/domain/1\0spy\0"))).toBe("OK\0");
    g2.pump();
    const before = g2.events.length;
    xs.write("/local/domain/1/device/vif/0/state", "2");
    g2.pump();
    expect(g2.events.length).toBe(before);
    expect(ok(g1.request(XS_UNWATCH, "device\0tok\0"))).toBe("OK\0");
    expect(ok(g1.request(XS_UNWATCH, "device\0tok\0"))).toBe("error ENOENT\0");
    const n = g1.events.length;
    xs.write("/local/domain/1/device/vif/0/state", "3");
    g1.pump();
    expect(g1.events.length).toBe(n);
  });

  it("watch quota: 128 (+1, as cxenstored's `>` check) then E2BIG", () => {
    const { g1 } = setup();
    let accepted = 0;
    for (let i = 0; i < 140; i++) {
      const r = g1.request(XS_WATCH, `w${i}\0t\0`);
      g1.pump();
      if (r.type === XS_ERROR) {
        expect(str(r.payload)).toBe("E2BIG\0");
        break;
      }
      accepted++;
    }
    expect(accepted).toBe(XENSTORED_DEFAULT_QUOTAS.watchesPerDomain + 1);
  });

  it("transactions: isolation, commit, abort, conflicts answered EAGAIN, unknown ids ENOENT, nesting EBUSY", () => {
    const { xs, g1 } = setup();
    const start = (): number => Number(str(g1.request(XS_TRANSACTION_START, "\0").payload).replace("\0", ""));
    const t = start();
    expect(t).toBeGreaterThan(0);
    expect(ok(g1.request(XS_WRITE, "a\0in-tx", t))).toBe("OK\0");
    expect(xs.read("/local/domain/1/a")).toBeUndefined();
    expect(str(g1.request(XS_READ, "a\0", t).payload)).toBe("in-tx");
    expect(ok(g1.request(XS_READ, "a\0"))).toBe("error ENOENT\0");
    expect(ok(g1.request(XS_TRANSACTION_START, "\0", t))).toBe("error EBUSY\0");
    expect(ok(g1.request(XS_TRANSACTION_END, "T\0", t))).toBe("OK\0");
    expect(xs.read("/local/domain/1/a")).toBe("in-tx");
    // Conflict: someone changes a node the transaction read.
    const t2 = start();
    expect(str(g1.request(XS_READ, "a\0", t2).payload)).toBe("in-tx");
    g1.request(XS_WRITE, "b\0x", t2);
    xs.write("/local/domain/1/a", "outside");
    expect(ok(g1.request(XS_TRANSACTION_END, "T\0", t2))).toBe("error EAGAIN\0");
    expect(xs.read("/local/domain/1/b")).toBeUndefined();
    // Abort.
    const t3 = start();
    g1.request(XS_WRITE, "c\0x", t3);
    expect(ok(g1.request(XS_TRANSACTION_END, "F\0", t3))).toBe("OK\0");
    expect(xs.read("/local/domain/1/c")).toBeUndefined();
    expect(ok(g1.request(XS_READ, "a\0", t3))).toBe("error ENOENT\0");
    expect(ok(g1.request(XS_TRANSACTION_END, "T\0", 999))).toBe("error ENOENT\0");
    const t4 = start();
    expect(ok(g1.request(XS_TRANSACTION_END, "X\0", t4))).toBe("error EINVAL\0");
  });

  it("watch events of a transaction fire at its commit, not before", () => {
    const { xs, g1 } = setup();
    const seen: string[] = [];
    xs.watch("/local/domain/1/t", "w", (p) => seen.push(p));
    const t = Number(str(g1.request(XS_TRANSACTION_START, "\0").payload).replace("\0", ""));
    g1.request(XS_WRITE, "t/x\0v", t);
    expect(seen).toEqual(["/local/domain/1/t"]);
    g1.request(XS_TRANSACTION_END, "T\0", t);
    expect(seen).toEqual(["/local/domain/1/t", "/local/domain/1/t/x"]);
  });

  it("hostile: more transactions than the quota are ENOSPC (10, +1 as cxenstored's `>` check); other domains carry on", () => {
    const { g1, g2 } = setup();
    const answers: string[] = [];
    for (let i = 0; i < 15; i++) answers.push(ok(g1.request(XS_TRANSACTION_START, "\0")));
    const accepted = answers.filter((a) => !a.startsWith("error")).length;
    expect(accepted).toBe(XENSTORED_DEFAULT_QUOTAS.transactionsPerDomain + 1);
    expect(answers.slice(accepted).every((a) => a === "error ENOSPC\0")).toBe(true);
    expect(ok(g2.request(XS_TRANSACTION_START, "\0"))).toMatch(/^\d+\0$/);
  });

  it("quotas: entries per domain, node size, permissions per node", () => {
    const { g1, xs } = setup({ entriesPerDomain: 20 });
    let created = 0;
    for (let i = 0; i < 30; i++) if (ok(g1.request(XS_WRITE, `n${i}\0v`)) === "OK\0") created++;
    // The domain already owns /local/domain/1 itself.
    expect(created).toBe(19);
    expect(ok(g1.request(XS_WRITE, "more\0v"))).toBe("error ENOSPC\0");
    // Changing an existing node is still fine; dom0 is not limited.
    expect(ok(g1.request(XS_WRITE, "n0\0w"))).toBe("OK\0");
    expect(xs.write("/tool/dom0-made", "v")).toBe(0);
    g1.request(XS_RM, "n1\0");
    expect(ok(g1.request(XS_WRITE, "n1\0" + "x".repeat(2047)))).toBe("error ENOSPC\0");
    expect(ok(g1.request(XS_WRITE, "n1\0" + "x".repeat(1000)))).toBe("OK\0");
    expect(ok(g1.request(XS_SET_PERMS, "n1\0n1\0r2\0r3\0r4\0r5\0r6\0"))).toBe("error ENOSPC\0");
    expect(ok(g1.request(XS_SET_PERMS, "n1\0n1\0r2\0r3\0r4\0r5\0"))).toBe("OK\0");
    expect(strs(g1.request(XS_GET_PERMS, "n1\0").payload)).toEqual(["n1", "r2", "r3", "r4", "r5"]);
  });

  it("hostile: bad paths, embedded NULs, overlong paths, unknown and privileged types", () => {
    const { g1, xs } = setup();
    for (const p of ["/a//b", "/a/", "a b", "a\u00ff", "", "/local/domain/1/" + "x".repeat(2049)]) {
      expect(ok(g1.request(XS_WRITE, `${p}\0v`))).toBe("error EINVAL\0");
    }
    // 2048 characters below /local/domain/1/ are fine (in short components: a parent's record
    // holds its children's names, and must stay below quota_max_entry_size too).
    const deep = `${"x".repeat(100)}/`.repeat(20) + "y".repeat(28);
    expect(deep.length).toBe(2048);
    expect(ok(g1.request(XS_WRITE, `/local/domain/1/${deep}\0v`))).toBe("OK\0");
    expect(ok(g1.request(XS_WRITE, `/local/domain/1/${deep}y\0v`))).toBe("error EINVAL\0");
    expect(ok(g1.request(XS_WRITE, `${"z".repeat(2047)}\0v`))).toBe("error ENOSPC\0");
    // READ takes exactly one NUL, at the end.
    expect(ok(g1.request(XS_READ, "a\0b\0"))).toBe("error EINVAL\0");
    expect(ok(g1.request(XS_READ, "nonul"))).toBe("error EINVAL\0");
    expect(ok(g1.request(XS_READ, ""))).toBe("error EINVAL\0");
    // WRITE's value may hold NULs (binary data).
    expect(ok(g1.request(XS_WRITE, "bin\0a\0b"))).toBe("OK\0");
    expect(xs.readBytes("/local/domain/1/bin")).toEqual(new Uint8Array([0x61, 0, 0x62]));
    expect(ok(g1.request(XS_WATCH, "onlypath\0"))).toBe("error EINVAL\0");
    expect(ok(g1.request(999, "x\0"))).toBe("error ENOSYS\0");
    expect(ok(g1.request(XS_WATCH_EVENT, "x\0t\0"))).toBe("error ENOSYS\0");
    expect(ok(g1.request(XS_ERROR, "x\0"))).toBe("error ENOSYS\0");
    expect(ok(g1.request(XS_INTRODUCE, "3\0" + "1\0" + "2\0"))).toBe("error EACCES\0");
    expect(ok(g1.request(XS_RM, "/\0"))).toBe("error EACCES\0");
    expect(xs.rm("/")).toBe(22);
  });

  it("hostile: a header announcing more than 4096 bytes marks the connection bad (XENSTORE_ERROR_PROTO); others unaffected", () => {
    const { g1, g2, xs, logs } = setup();
    const h = g1.encode(XS_WRITE, "");
    new DataView(h.buffer).setUint32(12, 4097, true);
    g1.sendRaw(h);
    const conn = xs.connection(1);
    expect(conn?.ignored).toBe(true);
    expect(g1.page.view.getUint32(XSI.error, true)).toBe(XENSTORE_ERROR_PROTO);
    expect(logs.some((l) => l.includes("4097"))).toBe(true);
    // Nothing more is read from it.
    g1.sendRaw(g1.encode(XS_WRITE, "a\0v"));
    expect(xs.read("/local/domain/1/a")).toBeUndefined();
    expect(ok(g2.request(XS_WRITE, "a\0v"))).toBe("OK\0");
    // Release and re-introduce gives a fresh connection.
    xs.releaseDomain(1);
    const again = new GuestXs(g1.host, xs, 1);
    expect(ok(again.request(XS_WRITE, "a\0v"))).toBe("OK\0");
  });

  it("hostile: req_prod more than XENSTORE_RING_SIZE past req_cons marks the connection bad (XENSTORE_ERROR_RINGIDX)", () => {
    const { g1, g2, xs } = setup();
    g1.page.view.setUint32(XSI.req_prod, 2000, true);
    g1.host.kick(g1.port);
    expect(xs.connection(1)?.ignored).toBe(true);
    expect(g1.page.view.getUint32(XSI.error, true)).toBe(XENSTORE_ERROR_RINGIDX);
    expect(ok(g2.request(XS_WRITE, "a\0v"))).toBe("OK\0");
  });

  it("hostile: bogus response indices (rsp_prod - rsp_cons > 1024) mark it bad too", () => {
    const { g1, xs } = setup();
    g1.page.view.setUint32(XSI.rsp_cons, 5000, true);
    g1.sendRaw(g1.encode(XS_WRITE, "a\0v"));
    expect(xs.connection(1)?.ignored).toBe(true);
    expect(g1.page.view.getUint32(XSI.error, true)).toBe(XENSTORE_ERROR_RINGIDX);
  });

  it("hostile (XSA-326): a guest that watches everything it may and never reads: xenstored's memory stays bounded", () => {
    const { g1, xs } = setup({ memoryPerDomain: 64 * 1024 });
    g1.request(XS_WATCH, "/local/domain/1\0all\0");
    // The guest stops reading; dom0 keeps changing its subtree.
    for (let i = 0; i < 5000; i++) xs.write(`/local/domain/1/flood/${i}`, "v");
    const conn = xs.connection(1);
    expect(conn?.ignored).toBe(false);
    expect(conn?.queued.bytes ?? Infinity).toBeLessThanOrEqual(64 * 1024);
    expect(conn?.stats.droppedEvents ?? 0).toBeGreaterThan(0);
    // Identical events while one is queued are dropped, not queued again.
    const dropped = conn?.stats.droppedEvents ?? 0;
    for (let i = 0; i < 100; i++) xs.write("/local/domain/1/flood/0", "w");
    expect((conn?.stats.droppedEvents ?? 0) - dropped).toBe(100);
    // When it reads again it gets events and answers.
    expect(ok(g1.request(XS_READ, "flood/0\0"))).toBe("w");
    expect(g1.events.length).toBeGreaterThan(0);
  });

  it("hostile: a guest that sends requests and never reads replies stops being read after quota_req_outstanding replies", () => {
    const { g1, g2, xs } = setup();
    const one = g1.encode(XS_WRITE, "k\0v");
    let sent = 0;
    for (let i = 0; i < 400; i++) {
      const n = g1.sendRaw(g1.encode(XS_WRITE, `k${i}\0v`));
      if (n < one.length) break;
      sent++;
    }
    const conn = xs.connection(1);
    expect(conn?.queued.outstanding).toBe(XENSTORED_DEFAULT_QUOTAS.outstandingRequests);
    expect(sent).toBeLessThan(400);
    expect(ok(g2.request(XS_WRITE, "a\0v"))).toBe("OK\0");
    // Reading the replies lets it continue.
    for (let i = 0; i < 50; i++) g1.pump();
    expect(conn?.queued.outstanding).toBe(0);
  });

  it("fast-check: arbitrary bytes on the ring never throw; the store and other domains carry on", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 3 }), (chunks, idx) => {
        const { g1, g2, xs } = setup();
        for (const c of chunks) g1.sendRaw(c);
        if (idx[0] !== undefined) g1.page.view.setUint32(XSI.req_prod, idx[0], true);
        if (idx[1] !== undefined) g1.page.view.setUint32(XSI.rsp_cons, idx[1], true);
        g1.host.kick(g1.port);
        g1.pump();
        expect(ok(g2.request(XS_WRITE, "alive\0yes"))).toBe("OK\0");
        expect(xs.read("/local/domain/2/alive")).toBe("yes");
        expect(xs.connection(1)?.queued.bytes ?? 0).toBeLessThanOrEqual(XENSTORED_DEFAULT_QUOTAS.memoryPerDomain);
      }),
      { numRuns: 150 },
    );
  });

  it("fast-check: the same requests give the same replies however the guest splits them", () => {
    const req = fc.record({ k: fc.constantFrom("a", "b", "c/d"), v: fc.string({ maxLength: 20 }), op: fc.constantFrom(XS_WRITE, XS_READ, XS_RM, XS_DIRECTORY) });
    fc.assert(
      fc.property(fc.array(req, { minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 50 }), (reqs, chunk) => {
        const run = (split: number): string[] => {
          const { g1 } = setup();
          const out: string[] = [];
          for (const r of reqs) {
            const msg = g1.encode(r.op, r.op === XS_WRITE ? `${r.k}\0${r.v}` : `${r.k}\0`);
            for (let o = 0; o < msg.length; o += split) g1.sendRaw(msg.subarray(o, Math.min(msg.length, o + split)));
            for (const m of g1.pump()) out.push(`${m.type}:${str(m.payload)}`);
          }
          return out;
        };
        expect(run(chunk)).toEqual(run(4096));
      }),
      { numRuns: 60 },
    );
  });
});
