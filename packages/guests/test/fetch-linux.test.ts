/**
 * The fetch-linux script (scripts/linux.mjs) without the network: its /init script, the reuse of
 * a complete cache without apt, the rebuild of the initramfs alone (again without apt) where only
 * /init changed, and the message it fails with where apt-get is missing. The script's real run
 * (apt-get download from Debian's mirror) is the hypervisor's Linux test.
 */
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { linuxFetchScriptUrl } from "@vtlab/guests";
import { fetchLinux, initDigest, initScript, INITRAMFS_MODULES, KERNEL_PACKAGE_PATTERN, MANIFEST_VERSION } from "../scripts/linux.mjs";

const script = fileURLToPath(linuxFetchScriptUrl());

describe("fetch-linux", () => {
  it("/init runs issue 16's acceptance commands and loads the two frontends of the same release", () => {
    const init = initScript("6.1.0-99-cloud-amd64");
    expect(init.startsWith("#!/bin/sh\n")).toBe(true);
    for (const line of ["uname -a", "cat /proc/cpuinfo", 'echo "vtlab-init: nproc $(nproc)"', "ls /sys/bus/xen/devices", "md5sum < /dev/xvda", "ping -c 3", "poweroff -f"]) expect(init).toContain(line);
    for (const m of INITRAMFS_MODULES) expect(init).toContain(`insmod /lib/modules/6.1.0-99-cloud-amd64/kernel/${m}.ko`);
    expect(KERNEL_PACKAGE_PATTERN.test("linux-image-6.1.0-57-cloud-amd64")).toBe(true);
    expect(KERNEL_PACKAGE_PATTERN.test("linux-image-cloud-amd64")).toBe(false);
  });

  it("reuses a complete cache without calling apt", () => {
    const cache = mkdtempSync(join(tmpdir(), "vtlab-linux-"));
    try {
      writeFileSync(join(cache, "vmlinuz"), new Uint8Array(10));
      writeFileSync(join(cache, "initramfs.cpio"), new Uint8Array(20));
      const manifest = { version: MANIFEST_VERSION, kernelPackage: "linux-image-6.1.0-1-cloud-amd64", kernelVersion: "6.1.1-1", busyboxVersion: "1:1.35.0-4", release: "6.1.0-1-cloud-amd64", modules: [], init: initDigest("6.1.0-1-cloud-amd64"), files: { vmlinuz: { size: 10, sha256: "" }, "initramfs.cpio": { size: 20, sha256: "" } } };
      writeFileSync(join(cache, "manifest.json"), JSON.stringify(manifest));
      const lines: string[] = [];
      expect(fetchLinux({ cache, log: (l) => lines.push(l) })).toEqual(manifest);
      expect(lines.join("\n")).toMatch(/up to date \(linux-image-6\.1\.0-1-cloud-amd64 6\.1\.1-1/);
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
  });

  it("rebuilds only the initramfs, without apt, where the cache was built with another /init", () => {
    const cache = mkdtempSync(join(tmpdir(), "vtlab-linux-"));
    const release = "6.1.0-2-cloud-amd64";
    try {
      for (const m of INITRAMFS_MODULES) {
        const file = join(cache, "kernel", "lib", "modules", release, "kernel", `${m}.ko`);
        mkdirSync(join(file, ".."), { recursive: true });
        writeFileSync(file, `module ${m}`);
      }
      mkdirSync(join(cache, "busybox", "bin"), { recursive: true });
      writeFileSync(join(cache, "busybox", "bin", "busybox"), "busybox");
      writeFileSync(join(cache, "vmlinuz"), new Uint8Array(10));
      writeFileSync(join(cache, "initramfs.cpio"), new Uint8Array(20));
      // A manifest of version 1 (no "init"): built before /init printed nproc.
      const old = { version: 1, kernelPackage: "linux-image-6.1.0-2-cloud-amd64", kernelVersion: "6.1.2-1", busyboxVersion: "1:1.35.0-4", release, modules: [], files: { vmlinuz: { size: 10, sha256: "" }, "initramfs.cpio": { size: 20, sha256: "" } } };
      writeFileSync(join(cache, "manifest.json"), JSON.stringify(old));
      const lines: string[] = [];
      const m = fetchLinux({ cache, log: (l) => lines.push(l) });
      expect(lines.join("\n")).toMatch(/initramfs\.cpio: \/init changed since the cache was built; rebuilt from the extracted packages/);
      expect(m.version).toBe(MANIFEST_VERSION);
      expect(m.init).toBe(initDigest(release));
      expect(m.kernelVersion).toBe("6.1.2-1");
      expect(m.modules).toEqual(INITRAMFS_MODULES.map((x) => `lib/modules/${release}/kernel/${x}.ko`));
      const cpio = readFileSync(join(cache, "initramfs.cpio"));
      expect(m.files["initramfs.cpio"].size).toBe(cpio.length);
      expect(cpio.includes(Buffer.from(initScript(release)))).toBe(true);
      expect(JSON.parse(readFileSync(join(cache, "manifest.json"), "utf8"))).toEqual(m);
      // Current now: the next run reuses it.
      lines.length = 0;
      expect(fetchLinux({ cache, log: (l) => lines.push(l) })).toEqual(m);
      expect(lines.join("\n")).toMatch(/up to date/);
      // A manifest of this version whose /init digest differs is rebuilt the same way.
      writeFileSync(join(cache, "manifest.json"), JSON.stringify({ ...m, init: "0".repeat(64) }));
      lines.length = 0;
      expect(fetchLinux({ cache, log: (l) => lines.push(l) }).init).toBe(initDigest(release));
      expect(lines.join("\n")).toMatch(/rebuilt from the extracted packages/);
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
  });

  it("without apt-get it fails with exit 1 and a message naming what is missing", () => {
    const cache = mkdtempSync(join(tmpdir(), "vtlab-linux-"));
    try {
      const r = spawnSync(process.execPath, [script, "--cache", cache], { encoding: "utf8", env: { PATH: "/nonexistent" } });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^fetch-linux: apt-get not found: this script fetches Debian's packages with apt-get download and dpkg-deb/);
      const usage = spawnSync(process.execPath, [script, "--bogus"], { encoding: "utf8" });
      expect(usage.status).toBe(2);
      expect(usage.stderr).toMatch(/usage: fetch-linux \[--cache DIR\] \[--refresh\]/);
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
  });
});
