/**
 * The C kernel's netfront and a TypeScript native kernel's netfront on one bridge, through the same
 * netback vifs and xenstored (EPT and shadow): the C `net` workload pings 10.0.0.2 (ARP, then ICMP
 * echo requests with checksummed payloads), and a native kernel answers as 10.0.0.2 in TypeScript
 * (ARP replies and ICMP echo replies built here, independently of the C code). The C side's console
 * must be exactly its expected output, which only holds if every reply is right.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { referenceKernelPvExpectedOutputUrl, referenceKernelUrl } from "@vtlab/guests";
import { Netfront, bootFrontends, isFrontendError } from "@vtlab/pv-frontends";
import { HostNetwork, Hypervisor, PvServices, type NativeKernel } from "@vtlab/hypervisor";

const kernel = new Uint8Array(readFileSync(referenceKernelUrl()));
const ETH_ARP = 0x0806;
const ETH_IP = 0x0800;
const PONG_IP = [10, 0, 0, 2];
/** The C kernel's default count of echo requests (kernel-net-ping.expected). */
const COUNT = 10;

const be16 = (b: Uint8Array, at: number) => (b[at]! << 8) | b[at + 1]!;
function put16(b: Uint8Array, at: number, v: number): void {
  b[at] = (v >>> 8) & 0xff;
  b[at + 1] = v & 0xff;
}
/** RFC 1071 Internet checksum of b[from, from + n). */
function inetChecksum(b: Uint8Array, from: number, n: number): number {
  let s = 0;
  for (let i = 0; i + 1 < n; i += 2) s += be16(b, from + i);
  if (n % 2 === 1) s += b[from + n - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}
const isOurIp = (b: Uint8Array, at: number) => PONG_IP.every((x, i) => b[at + i] === x);

/** An ARP request for 10.0.0.2 answered: a reply frame, or undefined. */
function arpReply(f: Uint8Array, mac: Uint8Array): Uint8Array | undefined {
  if (f.length < 42 || be16(f, 12) !== ETH_ARP || be16(f, 14 + 6) !== 1 || !isOurIp(f, 14 + 24)) return undefined;
  const r = new Uint8Array(60);
  r.set(f.subarray(6, 12), 0); // to the asker
  r.set(mac, 6);
  put16(r, 12, ETH_ARP);
  put16(r, 14, 1); // htype Ethernet
  put16(r, 16, ETH_IP);
  r[18] = 6;
  r[19] = 4;
  put16(r, 20, 2); // reply
  r.set(mac, 22); // sha
  r.set(PONG_IP, 28); // spa
  r.set(f.subarray(14 + 8, 14 + 14), 32); // tha = the asker's sha
  r.set(f.subarray(14 + 14, 14 + 18), 38); // tpa = the asker's spa
  return r;
}

/** An ICMP echo request to 10.0.0.2 answered: the reply and its sequence number, or undefined. */
function echoReply(f: Uint8Array, mac: Uint8Array): { frame: Uint8Array; seq: number } | undefined {
  if (f.length < 14 + 20 + 8 || be16(f, 12) !== ETH_IP) return undefined;
  const ip = 14;
  const total = be16(f, ip + 2);
  if (f[ip] !== 0x45 || f[ip + 9] !== 1 || !isOurIp(f, ip + 16) || inetChecksum(f, ip, 20) !== 0 || 14 + total > f.length) return undefined;
  const ic = ip + 20;
  if (f[ic] !== 8 || inetChecksum(f, ic, total - 20) !== 0) return undefined;
  const r = f.slice(0, 14 + total);
  r.set(f.subarray(6, 12), 0);
  r.set(mac, 6);
  r.set(f.subarray(ip + 16, ip + 20), ip + 12); // source: us
  r.set(f.subarray(ip + 12, ip + 16), ip + 16); // destination: the asker
  put16(r, ip + 10, 0);
  put16(r, ip + 10, inetChecksum(r, ip, 20));
  r[ic] = 0; // echo reply
  put16(r, ic + 2, 0);
  put16(r, ic + 2, inetChecksum(r, ic, total - 20));
  return { frame: r, seq: be16(f, ic + 6) };
}

for (const hap of [true, false]) {
  describe(`the C netfront and a TypeScript netfront interoperate (${hap ? "EPT" : "shadow"})`, () => {
    it("C pings, TypeScript answers ARP and ICMP echo: the C console is exactly its expected output", { timeout: 120_000 }, () => {
      const hv = new Hypervisor({ memoryMiB: 512, sliceInstructions: 50_000 });
      const pv = new PvServices(hv);
      const net = new HostNetwork(hv, pv.store);
      hv.addDom0Service(() => net.poll());
      const answered = new Set<number>();
      const log: string[] = [];
      const pong: NativeKernel = function* (ops) {
        const f = bootFrontends(ops);
        if (isFrontendError(f)) return void log.push(f.message);
        const n = yield* Netfront.connect(f);
        if (isFrontendError(n)) return void log.push(`netfront: ${n.message}`);
        const mac = n.macBytes();
        while (answered.size < COUNT) {
          for (const g of yield* n.waitReceive()) {
            const arp = arpReply(g, mac);
            if (arp !== undefined) {
              yield* n.send(arp);
              continue;
            }
            const echo = echoReply(g, mac);
            if (echo !== undefined) {
              answered.add(echo.seq);
              yield* n.send(echo.frame);
            }
          }
        }
        // Stay up a little so the last reply is consumed before the vif goes away.
        for (let i = 0; i < 20; i++) yield;
        log.push(`closed ${yield* n.close()}`);
      };
      const c = hv.createDomain({ name: "c-ping", memoryMiB: 64, hap, kernel, cmdline: "workload=net role=ping", magicPages: true });
      const ts = hv.createDomain({ name: "ts-pong", memoryMiB: 16, hap, magicPages: true, native: pong });
      for (const [d, mac] of [[c, "00:16:3e:00:00:01"], [ts, "00:16:3e:00:00:02"]] as const) {
        const r = pv.attach(d);
        if (typeof r === "string") throw new Error(r);
        net.add(d.id, [{ mac, bridge: "xenbr0" }]);
      }
      hv.run({ maxInstructions: 400_000_000, until: () => c.state !== "running" && ts.state !== "running" });
      expect(log).toEqual(["closed true"]); // Netfront.close: true when the backend reached Closed
      expect(c.console).toBe(readFileSync(referenceKernelPvExpectedOutputUrl("net-ping"), "utf8"));
      expect(c.exitCode).toBe(0);
      expect([...answered].sort((a, b) => a - b)).toEqual(Array.from({ length: COUNT }, (_, i) => i));
      expect(net.log).toEqual([]);
    });
  });
}
