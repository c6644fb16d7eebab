// Transactions as a law (fast-check): a guest's transaction interleaved with another guest's
// plain writes commits exactly when none of the nodes it touched changed after it first touched
// them (cxenstored's generation check), and then the store is what the other writes left with
// the transaction's writes on top; an EAGAIN leaves the other writes alone.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { XS_ERROR, XS_READ, XS_RM, XS_TRANSACTION_END, XS_TRANSACTION_START, XS_WRITE } from "@vtlab/xen-public";
import { XenStore } from "../src/index.js";
import { FakeHost, GuestXs, str } from "./xenstored-harness.js";

const KEYS = ["a", "b", "c", "d"] as const;
type Op = { who: "tx"; kind: "read" | "write"; key: (typeof KEYS)[number]; value: string } | { who: "other"; key: (typeof KEYS)[number]; value: string };

describe("xenstored transactions", () => {
  it("fast-check: commit succeeds iff no touched node changed after its first access; the result is serial", () => {
    const key = fc.constantFrom(...KEYS);
    const value = fc.stringMatching(/^[a-z0-9]{0,6}$/);
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ who: fc.constant("tx" as const), kind: fc.constantFrom("read" as const, "write" as const), key, value }),
      fc.record({ who: fc.constant("other" as const), key, value }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 16 }), (ops) => {
        const xs = new XenStore();
        const host = new FakeHost();
        const dir = "/local/domain/1/shared";
        xs.mkdir(dir);
        xs.setPerms(dir, [{ domid: 1, perm: "n" }, { domid: 2, perm: "b" }]);
        for (const k of KEYS) xs.write(`${dir}/${k}`, "init");
        const g1 = new GuestXs(host, xs, 1);
        const g2 = new GuestXs(host, xs, 2);
        const t = Number(str(g1.request(XS_TRANSACTION_START, "\0").payload).replace("\0", ""));
        const base = new Map<string, string>(KEYS.map((k) => [k, "init"]));
        const txWrites = new Map<string, string>();
        const firstAccess = new Map<string, number>();
        const lastOther = new Map<string, number>();
        ops.forEach((o, seq) => {
          if (o.who === "other") {
            expect(str(g2.request(XS_WRITE, `${dir}/${o.key}\0${o.value}`).payload)).toBe("OK\0");
            base.set(o.key, o.value);
            lastOther.set(o.key, seq);
            return;
          }
          if (!firstAccess.has(o.key)) firstAccess.set(o.key, seq);
          if (o.kind === "write") {
            expect(str(g1.request(XS_WRITE, `${dir}/${o.key}\0${o.value}`, t).payload)).toBe("OK\0");
            txWrites.set(o.key, o.value);
          } else {
            // Inside the transaction: its own writes, else the node as it was at first access.
            const r = g1.request(XS_READ, `${dir}/${o.key}\0`, t);
            expect(r.type).not.toBe(XS_ERROR);
          }
        });
        const conflict = [...firstAccess].some(([k, s]) => (lastOther.get(k) ?? -1) > s);
        const end = g1.request(XS_TRANSACTION_END, "T\0", t);
        expect(str(end.payload)).toBe(conflict ? "EAGAIN\0" : "OK\0");
        const expected = new Map(base);
        if (!conflict) for (const [k, v] of txWrites) expected.set(k, v);
        for (const k of KEYS) expect(xs.read(`${dir}/${k}`)).toBe(expected.get(k));
      }),
      { numRuns: 150 },
    );
  });

  it("a transaction touching more than quota_trans_nodes nodes gets ENOSPC, and its end ENOMEM", () => {
    const xs = new XenStore({ quotas: { nodesPerTransaction: 8 } });
    const host = new FakeHost();
    xs.mkdir("/local/domain/1");
    xs.setPerms("/local/domain/1", [{ domid: 1, perm: "n" }]);
    for (let i = 0; i < 10; i++) xs.write(`/local/domain/1/big/${i}`, "x");
    const g1 = new GuestXs(host, xs, 1);
    const t = Number(str(g1.request(XS_TRANSACTION_START, "\0").payload).replace("\0", ""));
    expect(str(g1.request(XS_RM, "big\0", t).payload)).toBe("ENOSPC\0");
    expect(str(g1.request(XS_TRANSACTION_END, "T\0", t).payload)).toBe("ENOMEM\0");
    expect(xs.directory("/local/domain/1/big")).toHaveLength(10);
  });

  it("a node a transaction read and someone changed afterwards makes the commit EAGAIN", () => {
    const xs = new XenStore();
    const host = new FakeHost();
    xs.mkdir("/local/domain/1");
    xs.setPerms("/local/domain/1", [{ domid: 1, perm: "n" }]);
    xs.write("/local/domain/1/k", "v1");
    const g1 = new GuestXs(host, xs, 1);
    const t = Number(str(g1.request(XS_TRANSACTION_START, "\0").payload).replace("\0", ""));
    expect(str(g1.request(XS_READ, "k\0", t).payload)).toBe("v1");
    xs.write("/local/domain/1/k", "v2");
    // The tree moved on; the transaction is doomed, and its end says so.
    expect(str(g1.request(XS_TRANSACTION_END, "T\0", t).payload)).toBe("EAGAIN\0");
    expect(xs.read("/local/domain/1/k")).toBe("v2");
  });
});
