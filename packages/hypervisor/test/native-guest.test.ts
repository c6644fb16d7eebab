/**
 * End to end: @vtlab/guests' native pvdemo kernel (TypeScript over GuestOps, with
 * @vtlab/pv-frontends) on EPT and shadow, against the host's xenstored, console backend, blkback
 * and netback with a bridge: it reads and writes xenstore, writes and reads back blocks through
 * blkfront, and two such domains exchange frames through netfront. The same backends serve the
 * C kernels: the frontends here are the second implementation of the protocol.
 */
import { describe, expect, it } from "vitest";
import { fnv1a, pvdemoKernel, pvdemoPattern } from "@vtlab/guests";
import { HostDisks, HostNetwork, Hypervisor, MemoryBlockBackend, PvServices } from "../src/index.js";

function host() {
  const hv = new Hypervisor({ memoryMiB: 256, sliceInstructions: 50_000 });
  const pv = new PvServices(hv);
  const disks = new HostDisks(hv, pv.store);
  const net = new HostNetwork(hv, pv.store);
  hv.addDom0Service(() => {
    net.poll();
    disks.poll();
  });
  return { hv, pv, disks, net };
}

for (const hap of [true, false]) {
  describe(`pvdemo, a native guest with PV drivers (${hap ? "EPT" : "shadow"})`, () => {
    it("xenstore, 64 KiB through blkfront with the expected checksum, and 4 pings to a second native domain", () => {
      const { hv, pv, disks, net } = host();
      const lines: Record<string, string[]> = { ping: [], pong: [] };
      const consoles: Record<string, string> = { ping: "", pong: "" };
      const image = new MemoryBlockBackend(2048);
      const doms = (["ping", "pong"] as const).map((name) => {
        const d = hv.createDomain({
          name,
          memoryMiB: 16,
          hap,
          magicPages: true,
          cmdline: name === "ping" ? "disk=64 net=ping count=4" : "net=pong count=4",
          native: pvdemoKernel({ onLine: (l) => lines[name]!.push(l) }),
        });
        const a = pv.attach(d, { onConsole: (t) => (consoles[name] += t) });
        if (typeof a === "string") throw new Error(a);
        net.add(d.id, [{ bridge: "xenbr0" }]);
        if (name === "ping") disks.add(d.id, [{ target: "mem", format: "raw", vdev: "xvda", access: "rw" }], image);
        return d;
      });
      const [a, b] = doms as [(typeof doms)[0], (typeof doms)[0]];
      hv.run({ maxInstructions: 200_000_000, until: () => a.state !== "running" && b.state !== "running" });
      const sum = fnv1a(pvdemoPattern(64 * 1024));
      expect(lines.ping).toEqual([
        `native: xenstore name=ping domid=${a.id}`,
        `native: disk 2048 sectors, wrote 64 KiB, read back ok, fnv1a ${sum}, flushed`,
        "native: pong for ping 0",
        "native: pong for ping 1",
        "native: pong for ping 2",
        "native: pong for ping 3",
        "native: done",
      ]);
      expect(lines.pong).toEqual([`native: xenstore name=pong domid=${b.id}`, "native: answered 4 frames", "native: done"]);
      // The PV console carried the same lines to the console backend.
      expect(consoles.ping).toBe(lines.ping!.map((l) => `${l}\n`).join(""));
      expect(consoles.pong).toBe(lines.pong!.map((l) => `${l}\n`).join(""));
      // The disk image holds what the guest wrote; xenstore what it left.
      expect(fnv1a(image.data.subarray(0, 64 * 1024))).toBe(sum);
      expect(pv.store.read(`/local/domain/${a.id}/data/pvdemo`)).toBe("done");
      expect(a.state).toBe("shutdown");
      expect(b.state).toBe("shutdown");
    });

    it("is deterministic: the same run gives the same exits and instructions", () => {
      const run = () => {
        const { hv, pv, disks } = host();
        const d = hv.createDomain({ name: "d", memoryMiB: 16, hap, magicPages: true, cmdline: "disk=16", native: pvdemoKernel() });
        pv.attach(d);
        disks.add(d.id, [{ target: "mem", format: "raw", vdev: "xvda", access: "rw" }], new MemoryBlockBackend(256));
        hv.run({ maxInstructions: 100_000_000, until: () => d.state !== "running" });
        const s = d.stats();
        return { state: d.state, exits: s.vmExits, instructions: s.instructions, hypercalls: s.xen.hypercalls };
      };
      const first = run();
      expect(first.state).toBe("shutdown");
      expect(run()).toEqual(first);
    });
  });
}
