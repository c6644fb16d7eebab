#!/usr/bin/env node
/* global TextEncoder */
// fetch-linux: Debian 12's cloud kernel and a small initramfs for it, in a git-ignored cache
// (packages/guests/linux-cache/ unless --cache DIR or VTLAB_LINUX_CACHE says otherwise).
//
//   1. Resolve linux-image-cloud-amd64 (the metapackage) to the versioned kernel package it
//      depends on, linux-image-6.1.*-cloud-amd64, with apt-cache (apt-get update first where the
//      package lists are missing).
//   2. apt-get download that package and busybox-static by name; dpkg-deb -x each.
//   3. Copy the kernel's /boot/vmlinuz-* to vmlinuz, and build initramfs.cpio (newc, written by
//      scripts/cpio.mjs): busybox with /bin/sh, /init (the commands of issue 16's acceptance list),
//      /dev/console, and the xen-blkfront / xen-netfront modules of the same kernel package.
//   4. Write manifest.json (packages, versions, file sizes, SHA-256s, and the SHA-256 of /init).
//
// Idempotent: a cache whose manifest.json names files that are all there is reused without
// touching apt (pass --refresh to resolve and fetch again). Where only /init has changed (this
// script's initScript differs from the one the cache was built with, or the manifest is of an
// older version), initramfs.cpio is rebuilt from the packages already extracted there, again
// without apt. Nothing here is committed. Fails with
// a message naming what is missing (apt-get, dpkg-deb, the package lists, the Debian mirror).
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { writeCpioNewc } from "./cpio.mjs";

export const METAPACKAGE = "linux-image-cloud-amd64";
export const BUSYBOX_PACKAGE = "busybox-static";
/** The versioned kernel package the metapackage must resolve to (Debian 12: Linux 6.1). */
export const KERNEL_PACKAGE_PATTERN = /^linux-image-6\.1\.[0-9A-Za-z.+~-]+-cloud-amd64$/;
/** The modules the initramfs carries, by their path under lib/modules/<release>/kernel/. */
export const INITRAMFS_MODULES = ["drivers/block/xen-blkfront", "drivers/net/xen-netfront"];
/** 2: the manifest records `init`, the SHA-256 of the /init script the initramfs was built with. */
export const MANIFEST_VERSION = 2;

const here = dirname(fileURLToPath(import.meta.url));
export const DEFAULT_CACHE = resolve(here, "..", "linux-cache");

/** A failure the user can act on: its message says what is missing. */
export class FetchLinuxError extends Error {}

function fail(message) {
  throw new FetchLinuxError(`fetch-linux: ${message}`);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 * 1024 * 1024, ...opts, env: { ...process.env, LC_ALL: "C", DEBIAN_FRONTEND: "noninteractive" } });
  if (r.error !== undefined) return { status: -1, stdout: "", stderr: String(r.error.message) };
  return { status: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

function lastLines(text, n = 6) {
  return text.trim().split("\n").slice(-n).join("\n  ");
}

function have(cmd) {
  return run("sh", ["-c", `command -v ${cmd}`]).status === 0;
}

function sha256(bytes) {
  return createHash("sha256").update(bytes).digest("hex");
}

/** The candidate version of `pkg` in the local package lists, or undefined when apt knows none. */
function candidate(pkg) {
  const r = run("apt-cache", ["policy", pkg]);
  const m = /^\s*Candidate:\s*(\S+)/m.exec(r.stdout);
  return m === null || m[1] === "(none)" ? undefined : m[1];
}

function ensureLists(log) {
  if (candidate(METAPACKAGE) !== undefined && candidate(BUSYBOX_PACKAGE) !== undefined) return;
  log(`the package lists do not know ${METAPACKAGE} or ${BUSYBOX_PACKAGE}: running apt-get update`);
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  const r = isRoot ? run("apt-get", ["update", "-qq"]) : run("sudo", ["-n", "apt-get", "update", "-qq"]);
  if (r.status !== 0) {
    fail(`apt-get update failed (exit ${r.status}${isRoot ? "" : "; not root, and sudo -n did not work"}); the package lists are needed to find ${METAPACKAGE}. Is the Debian mirror in /etc/apt/sources.list reachable?\n  ${lastLines(r.stderr || r.stdout)}`);
  }
  if (candidate(METAPACKAGE) === undefined) fail(`after apt-get update, apt still knows no ${METAPACKAGE}: add Debian 12 (bookworm) main to /etc/apt/sources.list`);
  if (candidate(BUSYBOX_PACKAGE) === undefined) fail(`after apt-get update, apt still knows no ${BUSYBOX_PACKAGE}: add Debian 12 (bookworm) main to /etc/apt/sources.list`);
}

/** linux-image-cloud-amd64 -> the versioned linux-image-6.1.*-cloud-amd64 it depends on. */
function resolveKernelPackage() {
  const r = run("apt-cache", ["depends", METAPACKAGE]);
  if (r.status !== 0) fail(`apt-cache depends ${METAPACKAGE} failed (exit ${r.status}):\n  ${lastLines(r.stderr)}`);
  const deps = [...r.stdout.matchAll(/^\s*Depends:\s*(\S+)/gm)].map((m) => m[1]);
  const kernel = deps.find((d) => KERNEL_PACKAGE_PATTERN.test(d));
  if (kernel === undefined) fail(`${METAPACKAGE} depends on ${deps.join(", ") || "nothing"}: none is a linux-image-6.1.*-cloud-amd64 package`);
  return kernel;
}

function download(pkg, version, debs, log) {
  const have = readdirSync(debs).find((f) => f.startsWith(`${pkg}_`) && f.endsWith(".deb") && decodeURIComponent(f).includes(`_${version}_`));
  if (have !== undefined) {
    log(`${pkg} ${version}: already downloaded (${have})`);
    return join(debs, have);
  }
  log(`apt-get download ${pkg} (${version})`);
  const r = run("apt-get", ["download", "-q", `${pkg}=${version}`], { cwd: debs });
  const got = readdirSync(debs).find((f) => f.startsWith(`${pkg}_`) && f.endsWith(".deb") && decodeURIComponent(f).includes(`_${version}_`));
  if (r.status !== 0 || got === undefined) {
    fail(`apt-get download ${pkg}=${version} failed (exit ${r.status}): is the Debian mirror in /etc/apt/sources.list reachable from here?\n  ${lastLines(r.stderr || r.stdout)}`);
  }
  return join(debs, got);
}

function extract(deb, into, log) {
  rmSync(into, { recursive: true, force: true });
  mkdirSync(into, { recursive: true });
  log(`dpkg-deb -x ${deb.split("/").pop()}`);
  const r = run("dpkg-deb", ["-x", deb, into]);
  if (r.status !== 0) fail(`dpkg-deb -x ${deb} failed (exit ${r.status}):\n  ${lastLines(r.stderr)}`);
}

/** The /init script: issue 16's acceptance list, with the disk and network steps where the devices exist. */
export function initScript(release) {
  const mod = (m) => `/lib/modules/${release}/kernel/${m}.ko`;
  return `#!/bin/sh
# vtlab's initramfs /init (written by packages/guests/scripts/linux.mjs).
# Command-line parameters: vtlab.ip=ADDR/PREFIX vtlab.peer=ADDR (ping after xen-netfront).
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "vtlab-init: start"
uname -a
cat /proc/cpuinfo
echo "vtlab-init: nproc $(nproc)"
ls /sys/bus/xen/devices
echo "vtlab-init: insmod xen-blkfront"
insmod ${mod(INITRAMFS_MODULES[0])}
sleep 1
if [ -b /dev/xvda ]; then
  echo "vtlab-init: md5sum /dev/xvda before: $(md5sum < /dev/xvda)"
  echo "vtlab-init written by Linux" | dd of=/dev/xvda bs=512 seek=1 count=1 conv=sync,notrunc 2>/dev/null
  sync
  echo "vtlab-init: md5sum /dev/xvda after: $(md5sum < /dev/xvda)"
else
  echo "vtlab-init: no /dev/xvda"
fi
echo "vtlab-init: insmod xen-netfront"
insmod ${mod(INITRAMFS_MODULES[1])}
sleep 1
ip=""; peer=""
for p in $(cat /proc/cmdline); do
  case "$p" in
    vtlab.ip=*) ip="\${p#vtlab.ip=}" ;;
    vtlab.peer=*) peer="\${p#vtlab.peer=}" ;;
  esac
done
if [ -n "$ip" ] && [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  ip addr add "$ip" dev eth0
  [ -n "$peer" ] && ping -c 3 "$peer"
else
  echo "vtlab-init: no network (vtlab.ip or eth0 missing)"
fi
echo "vtlab-init: poweroff"
poweroff -f
`;
}

/** SHA-256 of the /init script for `release`: the manifest's `init`, to tell a cache built with another /init. */
export function initDigest(release) {
  return sha256(new TextEncoder().encode(initScript(release)));
}

function buildInitramfs(kernelRoot, busyboxRoot, release) {
  const entries = [];
  const dir = (path) => entries.push({ path, type: "dir" });
  for (const d of ["bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules", `lib/modules/${release}`, `lib/modules/${release}/kernel`]) dir(d);
  entries.push({ path: "dev/console", type: "char", major: 5, minor: 1, mode: 0o600 });
  entries.push({ path: "dev/null", type: "char", major: 1, minor: 3, mode: 0o666 });
  const busybox = join(busyboxRoot, "bin", "busybox");
  if (!existsSync(busybox)) fail(`${BUSYBOX_PACKAGE} has no bin/busybox (looked in ${busybox})`);
  entries.push({ path: "bin/busybox", type: "file", mode: 0o755, data: new Uint8Array(readFileSync(busybox)) });
  entries.push({ path: "bin/sh", type: "symlink", target: "busybox" });
  const made = new Set(entries.map((e) => e.path));
  const modules = [];
  for (const m of INITRAMFS_MODULES) {
    const base = join(kernelRoot, "lib", "modules", release, "kernel", m);
    const ext = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].find((x) => existsSync(base + x));
    if (ext === undefined) fail(`the kernel package has no ${m}.ko (nor .ko.xz, .ko.zst, .ko.gz) under lib/modules/${release}/kernel/`);
    const parts = m.split("/");
    for (let i = 1; i < parts.length; i++) {
      const p = `lib/modules/${release}/kernel/${parts.slice(0, i).join("/")}`;
      if (!made.has(p)) {
        dir(p);
        made.add(p);
      }
    }
    const path = `lib/modules/${release}/kernel/${m}${ext}`;
    entries.push({ path, type: "file", mode: 0o644, data: new Uint8Array(readFileSync(base + ext)) });
    modules.push(path);
  }
  entries.push({ path: "init", type: "file", mode: 0o755, data: new TextEncoder().encode(initScript(release)) });
  return { cpio: writeCpioNewc(entries), modules };
}

/** The cache's manifest where the files it names are there with their sizes (of any manifest version), else undefined. */
function readManifest(cache) {
  const p = join(cache, "manifest.json");
  if (!existsSync(p)) return undefined;
  try {
    const m = JSON.parse(readFileSync(p, "utf8"));
    for (const f of ["vmlinuz", "initramfs.cpio"]) {
      const st = statSync(join(cache, f), { throwIfNoEntry: false });
      if (st === undefined || st.size !== m.files[f].size) return undefined;
    }
    return typeof m.release === "string" ? m : undefined;
  } catch {
    return undefined;
  }
}

function writeManifest(cache, { kernelPackage, kernelVersion, busyboxVersion, release }, modules, cpio) {
  const vmlinuz = readFileSync(join(cache, "vmlinuz"));
  const manifest = {
    version: MANIFEST_VERSION,
    kernelPackage,
    kernelVersion,
    busyboxVersion,
    release,
    modules,
    init: initDigest(release),
    files: {
      vmlinuz: { size: vmlinuz.length, sha256: sha256(vmlinuz) },
      "initramfs.cpio": { size: cpio.length, sha256: sha256(cpio) },
    },
  };
  writeFileSync(join(cache, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/**
 * Fetch and build into `cache` (see the header). Returns the manifest: { version, kernelPackage,
 * kernelVersion, busyboxVersion, release, modules, init, files: { vmlinuz, "initramfs.cpio": {
 * size, sha256 } } }. Throws FetchLinuxError with a message naming what is missing.
 */
export function fetchLinux({ cache = DEFAULT_CACHE, refresh = false, log = (line) => console.log(`fetch-linux: ${line}`) } = {}) {
  const kernelRoot = join(cache, "kernel");
  const busyboxRoot = join(cache, "busybox");
  const reuse = refresh ? undefined : readManifest(cache);
  if (reuse !== undefined && reuse.version === MANIFEST_VERSION && reuse.init === initDigest(reuse.release)) {
    log(`${cache}: up to date (${reuse.kernelPackage} ${reuse.kernelVersion}, ${BUSYBOX_PACKAGE} ${reuse.busyboxVersion}); --refresh to fetch again`);
    return reuse;
  }
  if (reuse !== undefined && existsSync(join(kernelRoot, "lib", "modules", reuse.release)) && existsSync(join(busyboxRoot, "bin", "busybox"))) {
    // Only /init (or the manifest's format) is out of date: rebuild the initramfs from the packages extracted here.
    const { cpio, modules } = buildInitramfs(kernelRoot, busyboxRoot, reuse.release);
    writeFileSync(join(cache, "initramfs.cpio"), cpio);
    log(`initramfs.cpio: /init changed since the cache was built; rebuilt from the extracted packages (${cpio.length} bytes)`);
    return writeManifest(cache, reuse, modules, cpio);
  }
  for (const tool of ["apt-get", "apt-cache", "dpkg-deb"]) {
    if (!have(tool)) fail(`${tool} not found: this script fetches Debian's packages with apt-get download and dpkg-deb (run it on Debian 12 or a Debian-based system)`);
  }
  ensureLists(log);
  const kernelPackage = resolveKernelPackage();
  const kernelVersion = candidate(kernelPackage);
  const busyboxVersion = candidate(BUSYBOX_PACKAGE);
  if (kernelVersion === undefined) fail(`apt knows no version of ${kernelPackage} (the package ${METAPACKAGE} depends on)`);
  log(`${METAPACKAGE} -> ${kernelPackage} ${kernelVersion}; ${BUSYBOX_PACKAGE} ${busyboxVersion}`);
  const debs = join(cache, "debs");
  mkdirSync(debs, { recursive: true });
  const kernelDeb = download(kernelPackage, kernelVersion, debs, log);
  const busyboxDeb = download(BUSYBOX_PACKAGE, busyboxVersion, debs, log);
  extract(kernelDeb, kernelRoot, log);
  extract(busyboxDeb, busyboxRoot, log);
  const boot = join(kernelRoot, "boot");
  const vmlinuzName = existsSync(boot) ? readdirSync(boot).find((f) => f.startsWith("vmlinuz-")) : undefined;
  if (vmlinuzName === undefined) fail(`${kernelPackage} has no boot/vmlinuz-* (looked in ${boot})`);
  const release = vmlinuzName.slice("vmlinuz-".length);
  copyFileSync(join(boot, vmlinuzName), join(cache, "vmlinuz"));
  log(`vmlinuz: ${vmlinuzName} (kernel release ${release})`);
  const { cpio, modules } = buildInitramfs(kernelRoot, busyboxRoot, release);
  writeFileSync(join(cache, "initramfs.cpio"), cpio);
  log(`initramfs.cpio: ${cpio.length} bytes (busybox, /init, ${modules.map((m) => m.split("/").pop()).join(", ")})`);
  const manifest = writeManifest(cache, { kernelPackage, kernelVersion, busyboxVersion, release }, modules, cpio);
  log(`done: ${join(cache, "vmlinuz")} and ${join(cache, "initramfs.cpio")}`);
  return manifest;
}

function main(argv) {
  let cache = process.env.VTLAB_LINUX_CACHE || DEFAULT_CACHE;
  let refresh = false;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--refresh") refresh = true;
    else if (argv[i] === "--cache" && argv[i + 1] !== undefined) cache = resolve(argv[++i]);
    else {
      console.error(`usage: fetch-linux [--cache DIR] [--refresh]   (unknown argument "${argv[i]}")`);
      return 2;
    }
  }
  try {
    fetchLinux({ cache, refresh });
    return 0;
  } catch (e) {
    if (e instanceof FetchLinuxError) {
      console.error(e.message);
      return 1;
    }
    throw e;
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) process.exitCode = main(process.argv.slice(2));
