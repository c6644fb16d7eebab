/**
 * `pvdemo`: a native (TypeScript) guest kernel that uses @vtlab/pv-frontends the way an HVM
 * guest with PV drivers does: it finds Xen through CPUID, installs the hypercall page, maps
 * shared_info and the grant table into the platform device's BAR, then talks to dom0 through
 * xenstore, the PV console, blkfront and netfront. Every access is a GuestOps operation on its
 * vCPU (see @vtlab/hypervisor's native.ts), so it takes the same exits machine code would.
 *
 * It reads its command line from hvm_start_info (the builder's, through GuestOps):
 *   disk=<KiB>     write a pattern of that many KiB through blkfront at sector 0 (if the domain
 *                  has a vbd), read it back, print its FNV-1a checksum (default 0: no disk I/O)
 *   net=ping|pong  ping: send `count` frames to the other vif and wait for each reply; pong:
 *                  answer `count` frames (needs a vif on the same bridge)
 *   count=<N>      frames for net= (default 4)
 * Output goes to the PV console (and `onLine`), one line each, then the kernel returns (the
 * domain powers off).
 */
import type { NativeGuestOps } from "@vtlab/cpu-vmx";
import { Blkfront, Netfront, bootFrontends, isBlkError, isFrontendError, isXsError, type Frontends } from "@vtlab/pv-frontends";

export interface PvDemoOptions {
  /** Each console line as the kernel prints it (besides the PV console). */
  readonly onLine?: (line: string) => void;
}

/** The pattern pvdemo writes: byte i of the disk area is a function of i. */
export function pvdemoPattern(bytes: number): Uint8Array {
  const b = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) b[i] = (i * 7 + (i >>> 9) * 13) & 0xff;
  return b;
}

/** FNV-1a (32-bit) of `b`, as 8 hex digits. */
export function fnv1a(b: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i]!, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

const START_INFO_CMDLINE = 24;
const RDI = 7;

function readCmdline(f: Frontends, startInfo: number): Record<string, string> {
  const ptr = f.mem.read64(startInfo + START_INFO_CMDLINE);
  let s = "";
  for (let i = 0; ptr !== 0 && i < 0xe00; i++) {
    const c = f.mem.read8(ptr + i);
    if (c === 0) break;
    s += String.fromCharCode(c);
  }
  const out: Record<string, string> = {};
  for (const w of s.split(" ")) {
    const eq = w.indexOf("=");
    if (eq > 0) out[w.slice(0, eq)] = w.slice(eq + 1);
  }
  return out;
}

function ethFrame(dst: Uint8Array, src: Uint8Array, text: string): Uint8Array {
  const f = new Uint8Array(60);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = 0x88;
  f[13] = 0xb5; // IEEE 802 local experimental ethertype
  for (let i = 0; i < text.length && 14 + i < 60; i++) f[14 + i] = text.charCodeAt(i) & 0x7f;
  return f;
}

function frameText(f: Uint8Array): string {
  let s = "";
  for (let i = 14; i < f.length && f[i] !== 0; i++) s += String.fromCharCode(f[i]!);
  return s;
}

const BROADCAST = Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

/** The pvdemo kernel (a NativeKernel for `hv.createDomain({ native })`). */
export function pvdemoKernel(options: PvDemoOptions = {}): (ops: NativeGuestOps) => Generator<void, void, void> {
  return function* (ops) {
    const startInfo = ops.cpu.regAddr(RDI);
    const f = bootFrontends(ops, { startInfo });
    if (isFrontendError(f)) {
      options.onLine?.(`native: boot failed: ${f.message}`);
      return;
    }
    const print = function* (line: string): Generator<void, void, void> {
      options.onLine?.(line);
      if (f.console !== undefined) yield* f.console.write(`${line}\n`);
    };
    const args = readCmdline(f, startInfo);
    const xs = f.xenbus;
    if (xs === undefined) {
      yield* print("native: no xenstore");
      return;
    }
    const name = yield* xs.read("name");
    const domid = yield* xs.read("domid");
    yield* print(`native: xenstore name=${isXsError(name) ? name.error : name} domid=${isXsError(domid) ? domid.error : domid}`);
    const w = yield* xs.write("data/pvdemo", "running");
    if (w !== undefined) yield* print(`native: xenstore write: ${w.error}`);

    const kib = Number.parseInt(args["disk"] ?? "0", 10);
    if (kib > 0) {
      const b = yield* Blkfront.connect(f);
      if (isFrontendError(b)) yield* print(`native: blkfront: ${b.message}`);
      else {
        const data = pvdemoPattern(kib * 1024);
        const we = yield* b.write(0, data);
        const back = we === undefined ? yield* b.read(0, data.length / 512) : we;
        const fl = yield* b.flush();
        if (isBlkError(back)) yield* print(`native: disk: ${back.message}`);
        else {
          const same = back.length === data.length && back.every((x, i) => x === data[i]);
          yield* print(`native: disk ${b.sectors} sectors, wrote ${kib} KiB, read back ${same ? "ok" : "DIFFERENT"}, fnv1a ${fnv1a(back)}${fl === undefined ? ", flushed" : ""}`);
        }
      }
    }

    const role = args["net"];
    const count = Math.max(1, Math.min(Number.parseInt(args["count"] ?? "4", 10) || 4, 1000));
    if (role === "ping" || role === "pong") {
      const n = yield* Netfront.connect(f);
      if (isFrontendError(n)) yield* print(`native: netfront: ${n.message}`);
      else if (role === "ping") {
        // The first frame goes to the broadcast address (the bridge floods it); the reply's source is the peer.
        let peer = BROADCAST;
        for (let i = 0; i < count; i++) {
          yield* n.send(ethFrame(peer, n.macBytes(), `ping ${i}`));
          let got: Uint8Array[] = [];
          while (got.length === 0) got = yield* n.waitReceive();
          const r = got[0]!;
          peer = r.slice(6, 12);
          yield* print(`native: ${frameText(r)}`);
        }
      } else {
        for (let i = 0; i < count; ) {
          const got = yield* n.waitReceive();
          for (const g of got) {
            if (i >= count) break;
            i++;
            yield* n.send(ethFrame(g.slice(6, 12), n.macBytes(), `pong for ${frameText(g)}`));
          }
        }
        yield* print(`native: answered ${count} frames`);
      }
    }
    yield* xs.write("data/pvdemo", "done");
    yield* print("native: done");
  };
}
