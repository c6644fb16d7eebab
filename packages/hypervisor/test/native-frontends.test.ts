/**
 * Native (TypeScript) kernels on a real vCPU (native.ts) driving @vtlab/pv-frontends' clients:
 * the hypercall page, the grant table and the event channels against dom0, on EPT and shadow.
 * Every access the kernel makes is a GuestOps operation with its exits.
 */
import { describe, expect, it } from "vitest";
import type { NativeGuestOps } from "@vtlab/cpu-vmx";
import { GTF_reading, GTF_writing } from "@vtlab/xen-public";
import { bootFrontends, isFrontendError, type Frontends } from "@vtlab/pv-frontends";
import { Hypervisor, type NativeKernel } from "../src/index.js";

function host() {
  return new Hypervisor({ memoryMiB: 128, sliceInstructions: 50_000 });
}

/** A kernel that boots the frontends and runs `body`; failures become the domain's console. */
function kernel(body: (f: Frontends, ops: NativeGuestOps) => Generator<void, void, void>, log: string[]): NativeKernel {
  return function* (ops) {
    const f = bootFrontends(ops);
    if (isFrontendError(f)) {
      log.push(`boot: ${f.message}`);
      return;
    }
    yield* body(f, ops);
  };
}

for (const hap of [true, false]) {
  describe(`native kernel with pv-frontends (${hap ? "EPT" : "shadow"})`, () => {
    it("installs the hypercall page from CPUID 0x40000002's MSR and makes hypercalls through it", () => {
      const hv = host();
      const log: string[] = [];
      let calls = 0;
      let f0!: Frontends["xen"];
      const d = hv.createDomain({
        name: "n",
        memoryMiB: 16,
        hap,
        // eslint-disable-next-line require-yield -- a kernel that never blocks
        native: kernel(function* (f) {
          calls = f.xen.calls.size;
          f0 = f.xen;
          log.push(`ram ${f.ramEnd.toString(16)} base ${f.xen.cpuidBase.toString(16)}`);
        }, log),
      });
      const r = hv.run({ maxInstructions: 5_000_000 });
      expect(log).toEqual([`ram 1000000 base 40000000`]);
      expect(calls).toBeGreaterThan(0);
      expect(d.state).toBe("shutdown");
      expect(r.reason).toBe("idle");
      const s = d.stats();
      // Every hypercall was a VMCALL exit; the CPUID probes and the MSR write exited too.
      const hypercalls = Object.values(s.xen.hypercalls).reduce((a, b) => a + b, 0);
      expect(hypercalls).toBe([...f0.calls.values()].reduce((a, b) => a + b, 0));
      expect(s.vmExits).toBeGreaterThan(hypercalls);
    });

    it("grants a page to dom0 (flags last), dom0 maps it and reads the kernel's bytes; end_foreign_access waits for the unmap", () => {
      const hv = host();
      const log: string[] = [];
      const shared: { ref: number; gfn: number; step: number } = { ref: -1, gfn: -1, step: 0 };
      const d = hv.createDomain({
        name: "g",
        memoryMiB: 16,
        hap,
        native: kernel(function* (f) {
          const page = f.pages.alloc()!;
          f.mem.writeBytes(page, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
          const ref = f.grants.grantAccess(0, page / 4096)!;
          shared.ref = ref;
          shared.gfn = page / 4096;
          shared.step = 1;
          while (shared.step === 1) yield;
          const flags = f.grants.flags(ref);
          log.push(`mapped flags ${(flags & (GTF_reading | GTF_writing)) !== 0}`);
          log.push(`end while mapped ${f.grants.endAccess(ref)}`);
          shared.step = 3;
          while (shared.step === 3) yield;
          log.push(`end after unmap ${f.grants.endAccess(ref)}`);
          log.push(`end twice ${f.grants.endAccess(ref)}`);
          log.push(`bytes ${Array.from(f.mem.readBytes(page, 4)).join(",")}`);
        }, log),
      });
      let mapping: ReturnType<typeof hv.dom0.grants.map> | undefined;
      hv.run({
        maxInstructions: 20_000_000,
        onSlice: () => {
          if (shared.step === 1) {
            mapping = hv.dom0.grants.map(d.id, shared.ref);
            expect(typeof mapping).toBe("object");
            if (typeof mapping === "object") {
              expect(Array.from(mapping.read(0, 8)!)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
              expect(mapping.write(0, Uint8Array.from([9, 9]))).toBe(true);
            }
            shared.step = 2;
          } else if (shared.step === 2) {
            shared.step = 2; // the kernel runs until it asks for the unmap
          } else if (shared.step === 3 && mapping !== undefined) {
            hv.dom0.grants.unmap(mapping);
            mapping = undefined;
            shared.step = 4;
          }
        },
      });
      // step 2 -> the kernel checks (it loops while step === 1, so set step 2 above releases it)
      expect(log).toEqual(["mapped flags true", "end while mapped false", "end after unmap true", "end twice false", "bytes 9,9,3,4"]);
      expect(d.state).toBe("shutdown");
    });

    it("event channels: an unbound port dom0 binds; dom0's send wakes the polling kernel, the kernel's send reaches dom0", () => {
      const hv = host();
      const log: string[] = [];
      const shared = { port: -1, dom0Port: -1, got: 0 };
      const d = hv.createDomain({
        name: "e",
        memoryMiB: 16,
        hap,
        native: kernel(function* (f) {
          const port = f.evtchn.allocUnbound(0);
          shared.port = port;
          for (let i = 0; i < 3; i++) {
            while (!f.evtchn.take(port)) yield* f.evtchn.poll([port]);
            log.push(`event ${i}`);
            f.evtchn.send(port);
          }
          log.push(`polls ${f.evtchn.polls > 0}`);
        }, log),
      });
      let sent = 0;
      hv.run({
        maxInstructions: 50_000_000,
        onSlice: () => {
          if (shared.port > 0 && shared.dom0Port < 0) {
            shared.dom0Port = hv.dom0.evtchn.bindInterdomain(d.id, shared.port);
            expect(shared.dom0Port).toBeGreaterThan(0);
            hv.dom0.evtchn.onEvent(shared.dom0Port, () => {
              shared.got++;
            });
          }
          hv.dom0.evtchn.dispatch();
          if (shared.dom0Port > 0 && log.length === sent && sent < 3) {
            hv.dom0.evtchn.send(shared.dom0Port);
            sent++;
          }
        },
      });
      expect(log).toEqual(["event 0", "event 1", "event 2", "polls true"]);
      // Xen's bind_interdomain marks the binder's new port pending; then one per kernel send.
      expect(shared.got).toBe(4);
      expect(d.state).toBe("shutdown");
    });

    it("a kernel that throws crashes its own domain only; another native domain runs on", () => {
      const hv = host();
      const log: string[] = [];
      const bad = hv.createDomain({
        name: "bad",
        memoryMiB: 16,
        hap,
        native: function* (ops) {
          yield;
          ops.load(0x4000_0000_0000, 4); // past the identity map: a #PF value, then a deliberate bug
          throw new Error("oops");
        },
      });
      const good = hv.createDomain({ name: "good", memoryMiB: 16, hap, native: kernel(
          // eslint-disable-next-line require-yield -- a kernel that never blocks
          function* () {
            log.push("ok");
          },
          log,
        ),
      });
      hv.run({ maxInstructions: 10_000_000 });
      expect(bad.state).toBe("crashed");
      expect(good.state).toBe("shutdown");
      expect(log).toEqual(["ok"]);
    });
  });
}

describe("native kernels are bounded", () => {
  it("a kernel that never yields is stopped at NATIVE_STEP_LIMIT and crashes its own domain", () => {
    const hv = host();
    const d = hv.createDomain({
      name: "spin",
      memoryMiB: 16,
      // eslint-disable-next-line require-yield -- the point: it never yields
      native: function* (ops) {
        for (;;) ops.load(0x20_0000, 4);
      },
    });
    hv.run({ maxInstructions: 5_000_000 });
    expect(d.state).toBe("crashed");
    expect(d.crashReason).toMatch(/without yielding/);
  });
});
