/**
 * Issue 16's acceptance run: Debian 12's own kernel (linux-image-cloud-amd64, unmodified) booted
 * as a PVH domU the way xl boots one, by the toolstack from an xl.cfg, beside a second domain on
 * the bridge, on EPT and on shadow, with `vcpus = 2`: Linux starts its second CPU the native way
 * (INIT-SIPI-SIPI into its real-mode trampoline, run as an unrestricted guest on EPT; on shadow,
 * without unrestricted guest, the hypervisor emulates that trampoline, src/realmode.ts, as Xen's
 * vmx_realmode does). Linux prints its banner on hvc0 (the PV console ring), mounts
 * the busybox initramfs, and its /init (packages/guests/scripts/linux.mjs) runs uname -a,
 * cat /proc/cpuinfo, nproc and ls /sys/bus/xen/devices, loads xen-blkfront and reads and writes the
 * disk through vtlab's blkback (md5sum before and after a dd, against checksums computed here),
 * loads xen-netfront and pings the reference kernel's net pong (10.0.0.2) three times, then
 * poweroff -f: the kernel halts every vCPU with interrupts off and the domain shuts down with
 * exit code 0 (Xen's hvm_vcpu_down -> SHUTDOWN_poweroff).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { referenceKernelUrl } from "@vtlab/guests";
import { Hypervisor, MemoryBlockBackend, Toolstack, parseDomainConfig } from "@vtlab/hypervisor";
import { linuxCache, type LinuxCache } from "./linux-cache.js";
import { runYielding } from "./run-yielding.js";

const CMDLINE = "console=hvc0 earlyprintk=xen rdinit=/init vtlab.ip=10.0.0.1/24 vtlab.peer=10.0.0.2";
/** A cap only: the run ends by itself ("idle", both domains shut down) after about 1.5 G instructions (EPT 166 s, shadow 118 s of wall time here, measured with this test on a loaded 2-core machine). */
const BUDGET = 8_000_000_000;
const DISK_SECTORS = 2048;
/** What /init writes into sector 1 (dd bs=512 conv=sync pads the line with NULs). */
const WRITTEN = "vtlab-init written by Linux\n";

const md5 = (b: Uint8Array) => createHash("md5").update(b).digest("hex");

function diskImage(): MemoryBlockBackend {
  const disk = new MemoryBlockBackend(DISK_SECTORS);
  for (let i = 0; i < disk.data.length; i++) disk.data[i] = (i * 7 + (i >> 9)) & 0xff;
  return disk;
}

let cache: LinuxCache;
let pongKernel: Uint8Array;

beforeAll(() => {
  cache = linuxCache();
  pongKernel = new Uint8Array(readFileSync(referenceKernelUrl()));
}, 900_000);

describe("Debian's Linux boots as a PVH domU to its /init, with its own Xen PV drivers", () => {
  for (const hap of [true, false]) {
    const paging = hap ? "EPT" : "shadow";
    const vcpus = 2;
    it(`on ${paging}: banner on hvc0, uname, cpuinfo, xenbus devices, blkfront read and write, netfront ping, poweroff`, async () => {
      const disk = diskImage();
      const before = md5(disk.data);
      const expected = disk.data.slice();
      expected.fill(0, 512, 1024);
      expected.set(new TextEncoder().encode(WRITTEN), 512);
      const after = md5(expected);

      const hv = new Hypervisor({ memoryMiB: 1024 });
      const ts = new Toolstack(hv, { resources: (c) => (c.name === "linux" ? { kernel: cache.vmlinuz, ramdisk: cache.initramfs, disk } : { kernel: pongKernel }) });
      const linux = ts.create(
        parseDomainConfig(
          [`name = "linux"`, "memory = 512", `vcpus = ${vcpus}`, `hap = ${hap ? 1 : 0}`, `kernel = "vmlinuz"`, `ramdisk = "initramfs.cpio"`, `cmdline = "${CMDLINE}"`, `disk = [ "disk.img,raw,xvda,rw" ]`, `vif = [ "mac=00:16:3e:00:00:01, bridge=xenbr0" ]`, ""].join("\n"),
          "linux.cfg",
        ),
      ).domain;
      const pong = ts.create(
        parseDomainConfig([`name = "pong"`, "memory = 64", `hap = ${hap ? 1 : 0}`, `kernel = "kernel.elf"`, `cmdline = "workload=net role=pong count=3"`, `vif = [ "mac=00:16:3e:00:00:02, bridge=xenbr0" ]`, ""].join("\n"), "pong.cfg"),
      ).domain;

      const run = await runYielding(ts, { maxInstructions: BUDGET });
      const out = linux.console;
      const lines = out.split("\n");
      expect(run.reason, out.slice(-3000)).toBe("idle");
      expect(linux.crashReason, out.slice(-3000)).toBeUndefined();
      expect(linux.state, out.slice(-3000)).toBe("shutdown");
      expect(linux.exitCode).toBe(0);

      // The banner and command line (earlyprintk=xen), then hvc0 over the PV console ring.
      const release = cache.manifest.release.replace(/\./g, "\\.");
      expect(lines[0]).toMatch(new RegExp(`^\\[ +0\\.000000\\] Linux version ${release} \\(debian-kernel@lists\\.debian\\.org\\)`));
      expect(lines[1]).toBe(`[    0.000000] Command line: ${CMDLINE}`);
      for (const line of [
        "Hypervisor detected: Xen HVM",
        "ACPI: RSDP 0x00000000FC002000 000024 (v02 Xen   )",
        "ACPI: Using ACPI for processor (LAPIC) configuration information",
        "Booting kernel on Xen PVH",
        "xen:events: Using FIFO-based ABI",
        "xen:events: Xen HVM callback vector for event delivery is enabled",
        "printk: console [hvc0] enabled",
        "clocksource: Switched to clocksource xen",
        "xen:grant_table: Grant tables using version 1 layout",
        "Run /init as init process",
      ]) {
        expect(out, line).toContain(line);
      }
      // Nothing refused, nothing undefined, no oops.
      expect(out).not.toMatch(/unchecked MSR access|Illegal instruction|invalid opcode|general protection|Kernel panic|BUG:|Oops|unable to open an initial console|FPU found/);

      // Two CPUs: the AP started the native way (INIT-SIPI-SIPI into Linux's real-mode
      // trampoline) and brought online; nproc in /init counts both.
      expect(out).toContain("smpboot: Allowing 2 CPUs, 0 hotplug CPUs");
      expect(out).toContain("smp: Brought up 1 node, 2 CPUs");
      expect(out).toContain("smpboot: Total of 2 processors activated");
      expect(out).toMatch(/^processor\t+: 0$/m);
      expect(out).toMatch(/^processor\t+: 1$/m);
      expect(out).toContain(`vtlab-init: nproc ${vcpus}`);
      // The trampoline: run by the CPU as an unrestricted guest on EPT; emulated by the hypervisor on shadow.
      if (hap) expect(linux.exitStats.realModeInstructions).toBe(0);
      else expect(linux.exitStats.realModeInstructions).toBeGreaterThan(10);

      // /init: uname -a, /proc/cpuinfo (exactly what CPUID reports), the xenbus devices.
      expect(out).toContain("vtlab-init: start");
      expect(out).toMatch(new RegExp(`^Linux \\(none\\) ${release} #1 SMP PREEMPT_DYNAMIC Debian .* x86_64 GNU/Linux$`, "m"));
      const flags = (/^flags\t+: (.*)$/m.exec(out)?.[1] ?? "").split(" ");
      for (const f of ["fpu", "tsc", "msr", "pae", "cx8", "apic", "cmov", "pat", "clflush", "fxsr", "sse", "sse2", "syscall", "nx", "lm", "cx16", "popcnt", "x2apic", "hypervisor"]) expect(flags, f).toContain(f);
      for (const f of ["mmx", "pni", "ssse3", "sse4_1", "sse4_2", "xsave", "avx", "aes"]) expect(flags, f).not.toContain(f);
      expect(out).toContain("vbd-51712  vif-0");

      // xen-blkfront: the disk through blkback, read whole, written, read again; the host's image changed the same way.
      expect(out).toMatch(/blkfront: xvda: /);
      expect(out).toContain(`vtlab-init: md5sum /dev/xvda before: ${before}  -`);
      expect(out).toContain(`vtlab-init: md5sum /dev/xvda after: ${after}  -`);
      expect(md5(disk.data)).toBe(after);

      // xen-netfront: three echo replies from the other domain across the bridge.
      expect(out).toContain("xen_netfront: Initialising Xen virtual ethernet driver");
      expect(out).toContain("PING 10.0.0.2 (10.0.0.2): 56 data bytes");
      for (const seq of [0, 1, 2]) expect(out).toMatch(new RegExp(`^64 bytes from 10\\.0\\.0\\.2: seq=${seq} ttl=64 `, "m"));
      expect(out).toContain("3 packets transmitted, 3 packets received, 0% packet loss");
      expect(pong.console).toContain("net: answered 3 echo requests");
      expect(pong.state).toBe("shutdown");
      expect(pong.exitCode).toBe(0);

      // poweroff -f.
      expect(out).toContain("vtlab-init: poweroff");
      expect(out).toMatch(/reboot: System halted/);

      // What the statistics show of it: the Xen interfaces Linux used (no sched_op: poweroff -f halts the CPUs, Xen's hvm_vcpu_down ends the domain).
      const s = linux.stats();
      for (const name of ["xen_version", "hvm_op", "memory_op", "vcpu_op", "vm_assist", "event_channel_op", "grant_table_op", "console_io"]) expect(s.xen.hypercalls[name] ?? 0, name).toBeGreaterThan(0);
      expect(s.xen.unknownHypercalls).toEqual({});
      expect(s.xen.eventsDelivered).toBeGreaterThan(100);
      expect(s.exitsByReason.Vmcall).toBeGreaterThan(1000);
      if (!hap) expect(s.exitsByReason.ExceptionOrNmi ?? 0).toBeGreaterThan(0); // shadow #PF exits
      expect(s.exitsByReason.Pause ?? 0).toBeGreaterThan(0); // PAUSE-loop exits: one CPU waiting on the other yields
    }, 3_600_000);
  }
});
