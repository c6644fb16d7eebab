/**
 * Debian's kernel and the busybox initramfs, from @vtlab/guests' git-ignored cache: fetched with
 * the package's own fetch-linux script (apt-get download) where the cache is empty, so the Linux
 * tests never skip; where Debian's packages cannot be reached the script's message is the failure.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { linuxCacheUrl, linuxFetchScriptUrl } from "@vtlab/guests";

export interface LinuxManifest {
  readonly kernelPackage: string;
  readonly kernelVersion: string;
  readonly release: string;
  readonly modules: readonly string[];
  readonly files: Record<"vmlinuz" | "initramfs.cpio", { readonly size: number; readonly sha256: string }>;
}

export interface LinuxCache {
  readonly manifest: LinuxManifest;
  readonly vmlinuz: Uint8Array;
  readonly initramfs: Uint8Array;
}

/**
 * The cache, brought up to date first by the fetch-linux script: it fetches where the cache is
 * empty, rebuilds the initramfs without apt where only its /init changed, and returns at once
 * where the cache is current.
 */
export function linuxCache(): LinuxCache {
  const files = ["vmlinuz", "initramfs.cpio", "manifest.json"] as const;
  const r = spawnSync(process.execPath, [fileURLToPath(linuxFetchScriptUrl()), "--cache", dirname(fileURLToPath(linuxCacheUrl("manifest.json")))], { encoding: "utf8", timeout: 900_000 });
  if (r.status !== 0) throw new Error(`the fetch-linux script failed (exit ${r.status}${r.signal !== null ? `, ${r.signal}` : ""}):\n${r.stderr}${r.error !== undefined ? String(r.error) : ""}`);
  const missing = files.filter((f) => !existsSync(linuxCacheUrl(f)));
  if (missing.length > 0) throw new Error(`the fetch-linux script succeeded but left no ${missing.join(", ")} in the cache`);
  return {
    manifest: JSON.parse(readFileSync(linuxCacheUrl("manifest.json"), "utf8")) as LinuxManifest,
    vmlinuz: new Uint8Array(readFileSync(linuxCacheUrl("vmlinuz"))),
    initramfs: new Uint8Array(readFileSync(linuxCacheUrl("initramfs.cpio"))),
  };
}
