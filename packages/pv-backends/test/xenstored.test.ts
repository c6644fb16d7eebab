// xenstored's tree and permissions: dom0's in-process API, and what a guest sees over its ring.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { XS_DIRECTORY, XS_ERROR, XS_GET_PERMS, XS_MKDIR, XS_READ, XS_RM, XS_SET_PERMS, XS_WRITE, XS_GET_DOMAIN_PATH } from "@vtlab/xen-public";
import { XenStore } from "../src/index.js";
import { FakeHost, GuestXs, str, strs } from "./xenstored-harness.js";

describe("XenStore: dom0's API", () => {
  it("writes create missing parents, reads and directories see them, rm removes a subtree", () => {
    const xs = new XenStore();
    expect(xs.write("/local/domain/1/device/vbd/768/state", "1")).toBe(0);
    expect(xs.read("/local/domain/1/device/vbd/768/state")).toBe("1");
    expect(xs.read("/local/domain/1/device")).toBe("");
    expect(xs.directory("/local/domain/1/device")).toEqual(["vbd"]);
    expect(xs.directory("/")).toEqual(["local"]);
    xs.write("/local/domain/1/name", "guest");
    expect(xs.directory("/local/domain/1")).toEqual(["device", "name"]);
    expect(xs.rm("/local/domain/1/device")).toBe(0);
    expect(xs.read("/local/domain/1/device/vbd/768/state")).toBeUndefined();
    expect(xs.directory("/local/domain/1")).toEqual(["name"]);
    // rm of an absent node whose parent exists is fine; of one whose parent is absent: ENOENT.
    expect(xs.rm("/local/domain/1/nothing")).toBe(0);
    expect(xs.rm("/local/domain/9/a/b")).toBe(2);
  });

  it("relative paths are under /local/domain/0; invalid paths are EINVAL and read as undefined", () => {
    const xs = new XenStore();
    xs.write("backend/vbd", "x");
    expect(xs.read("/local/domain/0/backend/vbd")).toBe("x");
    expect(xs.write("/a//b", "x")).toBe(22);
    expect(xs.write("/a/", "x")).toBe(22);
    expect(xs.write("/a b", "x")).toBe(22);
    expect(xs.write("/a\0b", "x")).toBe(22);
    expect(xs.read("/a//b")).toBeUndefined();
    expect(xs.rm("/")).toBe(22);
  });

  it("new nodes inherit the parent's permissions; setPerms/getPerms round-trip", () => {
    const xs = new XenStore();
    xs.mkdir("/local/domain/3");
    expect(xs.setPerms("/local/domain/3", [{ domid: 3, perm: "n" }, { domid: 5, perm: "r" }])).toBe(0);
    xs.write("/local/domain/3/x", "1");
    expect(xs.getPerms("/local/domain/3/x")).toEqual([{ domid: 3, perm: "n" }, { domid: 5, perm: "r" }]);
    expect(xs.getPerms("/")).toEqual([{ domid: 0, perm: "n" }]);
  });

  it("watches fire once at registration, then on changes at or below the path, after the change", () => {
    const xs = new XenStore();
    const seen: string[] = [];
    const un = xs.watch("/local/domain/1", "tok", (p, t) => seen.push(`${p}|${t}|${xs.read(p) ?? "-"}`));
    expect(seen).toEqual(["/local/domain/1|tok|-"]);
    xs.write("/local/domain/1/a", "v");
    xs.write("/local/domain/10/a", "w"); // not below /local/domain/1
    xs.rm("/local/domain/1");
    un();
    xs.write("/local/domain/1/b", "z");
    // rm fires the removed subtree's root for watches above it; nodes below it fire only watches set exactly on them.
    expect(seen).toEqual(["/local/domain/1|tok|-", "/local/domain/1/a|tok|v", "/local/domain/1|tok|-"]);
  });

  it("a watch on an invalid path registers nothing and never fires", () => {
    const logs: string[] = [];
    const xs = new XenStore({ log: (l) => logs.push(l) });
    let fired = 0;
    const un = xs.watch("/a//b", "t", () => fired++);
    xs.write("/a/b", "1");
    un();
    expect(fired).toBe(0);
    expect(logs).toHaveLength(1);
  });

  it("a callback may change the store; its events follow in order", () => {
    const xs = new XenStore();
    const seen: string[] = [];
    xs.watch("/b", "t", (p) => seen.push(p));
    xs.watch("/a", "t", (p) => {
      if (p === "/a/x") xs.write("/b/y", "1");
    });
    xs.write("/a/x", "1");
    expect(seen).toEqual(["/b", "/b/y"]);
  });

  it("fast-check: after any sequence of writes and rms the tree equals a model map", () => {
    const seg = fc.constantFrom("a", "b", "c");
    const path = fc.array(seg, { minLength: 1, maxLength: 3 }).map((s) => `/${s.join("/")}`);
    const op = fc.oneof(fc.record({ k: fc.constant("w" as const), p: path, v: fc.string({ maxLength: 4 }) }), fc.record({ k: fc.constant("rm" as const), p: path }));
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const xs = new XenStore();
        const model = new Map<string, string>();
        for (const o of ops) {
          if (o.k === "w") {
            xs.write(o.p, o.v);
            const parts = o.p.split("/").slice(1);
            for (let i = 1; i < parts.length; i++) {
              const anc = `/${parts.slice(0, i).join("/")}`;
              if (!model.has(anc)) model.set(anc, "");
            }
            model.set(o.p, o.v);
          } else {
            xs.rm(o.p);
            for (const k of [...model.keys()]) if (k === o.p || k.startsWith(`${o.p}/`)) model.delete(k);
          }
        }
        const actual = new Map<string, string>();
        const walk = (p: string): void => {
          for (const c of xs.directory(p) ?? []) {
            const cp = p === "/" ? `/${c}` : `${p}/${c}`;
            actual.set(cp, xs.read(cp) ?? "?");
            walk(cp);
          }
        };
        walk("/");
        expect(new Map([...actual].sort())).toEqual(new Map([...model].sort()));
      }),
    );
  });
});

describe("XenStore: what a guest may see and change", () => {
  function setup(): { xs: XenStore; host: FakeHost; g1: GuestXs; g2: GuestXs } {
    const xs = new XenStore();
    const host = new FakeHost();
    for (const d of [1, 2]) {
      xs.mkdir(`/local/domain/${d}`);
      xs.setPerms(`/local/domain/${d}`, [{ domid: 0, perm: "n" }, { domid: d, perm: "r" }]);
      xs.write(`/local/domain/${d}/name`, `guest${d}`);
      xs.mkdir(`/local/domain/${d}/data`);
      xs.setPerms(`/local/domain/${d}/data`, [{ domid: d, perm: "n" }]);
    }
    return { xs, host, g1: new GuestXs(host, xs, 1), g2: new GuestXs(host, xs, 2) };
  }

  it("reads its own readable entries, relative to its domain path", () => {
    const { g1 } = setup();
    expect(str(g1.request(XS_READ, "/local/domain/1/name\0").payload)).toBe("guest1");
    expect(str(g1.request(XS_READ, "name\0").payload)).toBe("guest1");
    expect(strs(g1.request(XS_DIRECTORY, "/local/domain/1\0").payload)).toEqual(["name", "data"]);
    expect(str(g1.request(XS_GET_DOMAIN_PATH, "1\0").payload)).toBe("/local/domain/1\0");
  });

  it("another domain's entries are EACCES, absent ones under them too (no information leaks)", () => {
    const { g1 } = setup();
    const r = g1.request(XS_READ, "/local/domain/2/name\0");
    expect(r.type).toBe(XS_ERROR);
    expect(str(r.payload)).toBe("EACCES\0");
    expect(str(g1.request(XS_READ, "/local/domain/2/nope\0").payload)).toBe("EACCES\0");
    // An absent node under a readable parent: ENOENT.
    expect(str(g1.request(XS_READ, "/local/domain/1/nope\0").payload)).toBe("ENOENT\0");
    // The root belongs to dom0 (n0): not even its directory.
    expect(str(g1.request(XS_DIRECTORY, "/\0").payload)).toBe("EACCES\0");
  });

  it("writes only where it has w: its data dir yes (owning what it creates), its domain dir (r) no", () => {
    const { xs, g1, g2 } = setup();
    expect(str(g1.request(XS_WRITE, "data/x\0hello").payload)).toBe("OK\0");
    expect(xs.read("/local/domain/1/data/x")).toBe("hello");
    expect(xs.getPerms("/local/domain/1/data/x")).toEqual([{ domid: 1, perm: "n" }]);
    expect(str(g1.request(XS_WRITE, "name\0evil").payload)).toBe("EACCES\0");
    expect(str(g1.request(XS_MKDIR, "/local/domain/1/new\0").payload)).toBe("EACCES\0");
    expect(str(g2.request(XS_WRITE, "/local/domain/1/data/y\0x").payload)).toBe("EACCES\0");
    expect(str(g2.request(XS_RM, "/local/domain/1/data/x\0").payload)).toBe("EACCES\0");
    expect(xs.read("/local/domain/1/name")).toBe("guest1");
  });

  it("SET_PERMS: the owner may share a node but not give it away; others get EACCES", () => {
    const { xs, g1, g2 } = setup();
    g1.request(XS_WRITE, "data/shared\0v");
    expect(str(g1.request(XS_SET_PERMS, "data/shared\0n1\0r2\0").payload)).toBe("OK\0");
    expect(strs(g1.request(XS_GET_PERMS, "data/shared\0").payload)).toEqual(["n1", "r2"]);
    expect(str(g2.request(XS_READ, "/local/domain/1/data/shared\0").payload)).toBe("v");
    expect(str(g2.request(XS_WRITE, "/local/domain/1/data/shared\0x").payload)).toBe("EACCES\0");
    expect(str(g1.request(XS_SET_PERMS, "data/shared\0n2\0").payload)).toBe("EPERM\0");
    expect(str(g2.request(XS_SET_PERMS, "/local/domain/1/data/shared\0b2\0").payload)).toBe("EACCES\0");
    expect(str(g1.request(XS_SET_PERMS, "data/shared\0x1\0").payload)).toBe("EINVAL\0");
    expect(str(g1.request(XS_SET_PERMS, "data/shared\0").payload)).toBe("EINVAL\0");
    expect(xs.getPerms("/local/domain/1/data/shared")).toEqual([{ domid: 1, perm: "n" }, { domid: 2, perm: "r" }]);
  });
});
