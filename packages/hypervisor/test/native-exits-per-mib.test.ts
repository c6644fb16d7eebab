/**
 * The relation, measured with native kernels on the same image: reading a disk through
 * blkfront takes at least 50x fewer VM exits per MiB than through the emulated ATA disk's PIO
 * data port (every 16-bit IN is an I/O exit and a device-model round trip), and less modelled
 * time. Counts, not wall time; EPT and shadow.
 */
import { describe, expect, it } from "vitest";
import { Blkfront, bootFrontends, isBlkError, isFrontendError } from "@vtlab/pv-frontends";
import { HostDisks, Hypervisor, MemoryBlockBackend, PvServices, type NativeKernel } from "../src/index.js";
import { runYielding } from "./run-yielding.js";

const KIB = 256;
const SECTORS = (KIB * 1024) / 512;

function image(): MemoryBlockBackend {
  const m = new MemoryBlockBackend(2048);
  for (let i = 0; i < SECTORS * 512; i++) m.data[i] = (i * 31 + (i >>> 9)) & 0xff;
  return m;
}

/** ATA PIO READ SECTORS (0x20), LBA28, 256 sectors per command, polling the status register. */
const ataKernel =
  (out: Uint8Array[]): NativeKernel =>
  function* (ops) {
    const buf = new Uint8Array(SECTORS * 512);
    for (let lba = 0; lba < SECTORS; lba += 256) {
      const n = Math.min(256, SECTORS - lba);
      ops.portOut(0x1f6, 1, 0xe0 | ((lba >>> 24) & 0xf));
      ops.portOut(0x1f2, 1, n & 0xff);
      ops.portOut(0x1f3, 1, lba & 0xff);
      ops.portOut(0x1f4, 1, (lba >>> 8) & 0xff);
      ops.portOut(0x1f5, 1, (lba >>> 16) & 0xff);
      ops.portOut(0x1f7, 1, 0x20);
      for (let s = 0; s < n; s++) {
        for (let spin = 0; spin < 1000; spin++) {
          const st = ops.portIn(0x1f7, 1) as number;
          if ((st & 0x80) === 0 && (st & 0x08) !== 0) break;
        }
        for (let w = 0; w < 256; w++) {
          const v = ops.portIn(0x1f0, 2) as number;
          const at = (lba + s) * 512 + w * 2;
          buf[at] = v & 0xff;
          buf[at + 1] = v >>> 8;
        }
        yield;
      }
    }
    out.push(buf);
  };

const blkKernel =
  (out: Uint8Array[]): NativeKernel =>
  function* (ops) {
    const f = bootFrontends(ops);
    if (isFrontendError(f)) return;
    const b = yield* Blkfront.connect(f);
    if (isFrontendError(b)) return;
    const r = yield* b.read(0, SECTORS);
    if (!isBlkError(r)) out.push(r);
  };

for (const hap of [true, false]) {
  describe(`exits per MiB: blkfront vs emulated ATA PIO (${hap ? "EPT" : "shadow"})`, () => {
    it(`reading ${KIB} KiB: the same bytes, >= 50x fewer exits and less modelled time through blkfront`, async () => {
      const measure = async (pvPath: boolean) => {
        const hv = new Hypervisor({ memoryMiB: 128, sliceInstructions: 50_000 });
        const out: Uint8Array[] = [];
        const img = image();
        const kernel = pvPath ? blkKernel(out) : ataKernel(out);
        if (!pvPath) {
          const d = hv.createDomain({ name: "ata", memoryMiB: 16, hap, disk: img, native: kernel });
          await runYielding(hv, { maxInstructions: 500_000_000, until: () => d.state !== "running" });
          return { d, out, img };
        }
        const pv = new PvServices(hv);
        const disks = new HostDisks(hv, pv.store);
        hv.addDom0Service(() => disks.poll());
        const d = hv.createDomain({ name: "pv", memoryMiB: 16, hap, magicPages: true, native: kernel });
        pv.attach(d);
        disks.add(d.id, [{ target: "mem", format: "raw", vdev: "xvda", access: "rw" }], img);
        await runYielding(hv, { maxInstructions: 500_000_000, until: () => d.state !== "running" });
        return { d, out, img };
      };
      const ata = await measure(false);
      const pv = await measure(true);
      const want = ata.img.data.subarray(0, SECTORS * 512);
      expect(ata.out.length).toBe(1);
      expect(pv.out.length).toBe(1);
      expect(ata.out[0]!.every((x, i) => x === want[i])).toBe(true);
      expect(pv.out[0]!.every((x, i) => x === want[i])).toBe(true);
      const a = ata.d.stats();
      const p = pv.d.stats();
      // Everything the PV kernel did counts, boot and xenbus connection included.
      expect(a.vmExits).toBeGreaterThanOrEqual(50 * p.vmExits);
      expect(a.modelledCycles).toBeGreaterThan(p.modelledCycles);
      expect(a.ioExits).toBeGreaterThanOrEqual(SECTORS * 256);
    });
  });
}
