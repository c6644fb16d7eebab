/**
 * Debian's Linux booted as in test/linux-boot.test.ts (the kernel and initramfs from @vtlab/guests'
 * cache, fetched where missing; a disk and a vif; the reference kernel's net pong beside it), on
 * EPT and on shadow (JSON lines): guest instructions and wall time from power-on to /init (the
 * first line /init prints) and to poweroff, and the VM exits of each kind per million guest
 * instructions up to /init.
 */
import { readFileSync } from "node:fs";
import { report } from "@vtlab/bench-harness";
import { referenceKernelUrl } from "@vtlab/guests";
import { Hypervisor, MemoryBlockBackend, Toolstack, parseDomainConfig } from "@vtlab/hypervisor";
import { linuxCache } from "../test/linux-cache.js";

const INIT_LINE = "vtlab-init: start";
const cache = linuxCache();
const pongKernel = new Uint8Array(readFileSync(referenceKernelUrl()));

for (const hap of [true, false]) {
  const mode = hap ? "ept" : "shadow";
  const hv = new Hypervisor({ memoryMiB: 1024 });
  const disk = new MemoryBlockBackend(2048);
  const ts = new Toolstack(hv, { resources: (c) => (c.name === "linux" ? { kernel: cache.vmlinuz, ramdisk: cache.initramfs, disk } : { kernel: pongKernel }) });
  const cfg = (lines: string[], file: string) => parseDomainConfig([...lines, `hap = ${hap ? 1 : 0}`, ""].join("\n"), file);
  const t0 = performance.now();
  const linux = ts.create(
    cfg([`name = "linux"`, "memory = 512", `kernel = "vmlinuz"`, `ramdisk = "initramfs.cpio"`, `cmdline = "console=hvc0 earlyprintk=xen rdinit=/init vtlab.ip=10.0.0.1/24 vtlab.peer=10.0.0.2"`, `disk = [ "disk.img,raw,xvda,rw" ]`, `vif = [ "mac=00:16:3e:00:00:01, bridge=xenbr0" ]`], "linux.cfg"),
  ).domain;
  ts.create(cfg([`name = "pong"`, "memory = 64", `kernel = "kernel.elf"`, `cmdline = "workload=net role=pong count=3"`, `vif = [ "mac=00:16:3e:00:00:02, bridge=xenbr0" ]`], "pong.cfg"));
  let seen = 0;
  let atInit: { instructions: number; ms: number; exits: Record<string, number> } | undefined;
  ts.run({
    maxInstructions: 8_000_000_000,
    onSlice: () => {
      if (atInit !== undefined) return;
      const out = linux.console;
      if (out.length === seen) return;
      // Only the new text (and the line's length before it) is searched: the console grows to tens of KiB.
      const from = Math.max(0, seen - INIT_LINE.length);
      seen = out.length;
      if (out.indexOf(INIT_LINE, from) >= 0) atInit = { instructions: linux.instructions, ms: performance.now() - t0, exits: { ...linux.stats().exitsByReason } };
    },
  });
  const ms = performance.now() - t0;
  if (linux.state !== "shutdown" || linux.exitCode !== 0 || atInit === undefined) throw new Error(`Linux on ${mode} did not reach /init and power off (state ${linux.state}, exit ${String(linux.exitCode)}, ${linux.crashReason ?? ""})`);
  report({ name: `hypervisor.linux.instructions-to-init.${mode}`, value: atInit.instructions, unit: "instructions" });
  report({ name: `hypervisor.linux.wall-to-init.${mode}`, value: Math.round(atInit.ms), unit: "ms" });
  report({ name: `hypervisor.linux.instructions-to-poweroff.${mode}`, value: linux.instructions, unit: "instructions" });
  report({ name: `hypervisor.linux.wall-to-poweroff.${mode}`, value: Math.round(ms), unit: "ms" });
  for (const [reason, n] of Object.entries(atInit.exits)) {
    report({ name: `hypervisor.linux.exits-per-million-to-init.${mode}.${reason}`, value: Math.round((n / atInit.instructions) * 1e6 * 100) / 100, unit: "exits/M instructions" });
  }
}
