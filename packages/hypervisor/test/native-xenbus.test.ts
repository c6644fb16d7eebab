/**
 * A native kernel's xenbus client and PV console against the host's xenstored and console
 * backend (@vtlab/pv-backends through the toolstack's PvServices), on EPT and shadow.
 */
import { describe, expect, it } from "vitest";
import { bootFrontends, isFrontendError, isXsError, type Frontends } from "@vtlab/pv-frontends";
import { Hypervisor, PvServices, type NativeKernel } from "../src/index.js";

function show(x: unknown): string {
  return isXsError(x) ? `!${x.error}` : Array.isArray(x) ? `[${x.join(",")}]` : String(x);
}

function machine(hap: boolean, body: (f: Frontends, log: string[]) => Generator<void, void, void>) {
  const hv = new Hypervisor({ memoryMiB: 128, sliceInstructions: 50_000 });
  const pv = new PvServices(hv);
  const log: string[] = [];
  const native: NativeKernel = function* (ops) {
    const f = bootFrontends(ops);
    if (isFrontendError(f)) {
      log.push(`boot: ${f.message}`);
      return;
    }
    yield* body(f, log);
  };
  const d = hv.createDomain({ name: "native", memoryMiB: 16, hap, magicPages: true, native });
  const a = pv.attach(d);
  if (typeof a === "string") throw new Error(a);
  return { hv, pv, d, log };
}

for (const hap of [true, false]) {
  describe(`native xenbus client (${hap ? "EPT" : "shadow"})`, () => {
    it("reads its own entries, writes, lists, and gets Xen's error strings", () => {
      const { hv, d, log } = machine(hap, function* (f, log) {
        const xs = f.xenbus!;
        log.push(show(yield* xs.read("name")));
        log.push(show(yield* xs.read("domid")));
        log.push(show(yield* xs.write("data/greeting", "hello")));
        log.push(show(yield* xs.read("data/greeting")));
        log.push(show(yield* xs.directory("data")));
        log.push(show(yield* xs.read("data/missing")));
        log.push(show(yield* xs.write("/local/domain/0/name", "mine")));
        log.push(show(yield* xs.rm("data/greeting")));
        log.push(show(yield* xs.read("data/greeting")));
      });
      hv.run({ maxInstructions: 50_000_000 });
      expect(log).toEqual(["native", String(d.id), "undefined", "hello", "[greeting]", "!ENOENT", "!EACCES", "undefined", "!ENOENT"]);
      expect(d.state).toBe("shutdown");
    });

    it("watches fire with path and token; a transaction commits, and a conflicting one gets EAGAIN", () => {
      const { hv, pv, d, log } = machine(hap, function* (f, log) {
        const xs = f.xenbus!;
        log.push(show(yield* xs.watch("data/w", "tok")));
        const first = yield* xs.nextWatchEvent(); // a new watch fires once at once
        log.push(isXsError(first) ? first.error : `${first.path} ${first.token}`);
        log.push(show(yield* xs.write("data/w", "1")));
        const e = yield* xs.nextWatchEvent();
        log.push(isXsError(e) ? e.error : `${e.path} ${e.token}`);
        const tx = yield* xs.transactionStart();
        if (isXsError(tx)) return;
        log.push(show(yield* xs.write("data/t", "a", tx)));
        log.push(show(yield* xs.transactionEnd(tx, true)));
        log.push(show(yield* xs.read("data/t")));
        const tx2 = yield* xs.transactionStart();
        if (isXsError(tx2)) return;
        log.push(show(yield* xs.read("data/t", tx2)));
        shared.conflict = true;
        while (shared.conflict) yield; // dom0 changes data/t meanwhile
        log.push(show(yield* xs.write("data/t", "b", tx2)));
        log.push(show(yield* xs.transactionEnd(tx2, true)));
        log.push(show(yield* xs.read("data/t")));
      });
      const shared = { conflict: false };
      hv.run({
        maxInstructions: 50_000_000,
        onSlice: () => {
          if (shared.conflict) {
            pv.store.write(`/local/domain/${d.id}/data/t`, "dom0");
            shared.conflict = false;
          }
        },
      });
      expect(log[0]).toBe("undefined");
      expect(log[1]).toBe("data/w tok");
      expect(log.slice(2)).toEqual(["undefined", "data/w tok", "undefined", "undefined", "a", "a", "undefined", "!EAGAIN", "dom0"]);
      expect(d.state).toBe("shutdown");
    });

    it("the PV console's output reaches the console backend", () => {
      const out: string[] = [];
      const hv = new Hypervisor({ memoryMiB: 128, sliceInstructions: 50_000 });
      const pv = new PvServices(hv);
      const d = hv.createDomain({
        name: "cons",
        memoryMiB: 16,
        hap,
        magicPages: true,
        native: function* (ops) {
          const f = bootFrontends(ops);
          if (isFrontendError(f)) return;
          yield* f.console!.write("hello from a native kernel\n");
          yield;
        },
      });
      pv.attach(d, { onConsole: (t) => out.push(t) });
      hv.run({ maxInstructions: 10_000_000 });
      expect(out.join("")).toBe("hello from a native kernel\n");
    });
  });
}
