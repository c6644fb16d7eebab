// Types of scripts/linux.mjs (the fetch-linux script).
export declare const METAPACKAGE: "linux-image-cloud-amd64";
export declare const BUSYBOX_PACKAGE: "busybox-static";
export declare const KERNEL_PACKAGE_PATTERN: RegExp;
export declare const INITRAMFS_MODULES: readonly string[];
export declare const MANIFEST_VERSION: number;
export declare const DEFAULT_CACHE: string;
export declare class FetchLinuxError extends Error {}
export interface LinuxManifest {
  readonly version: number;
  readonly kernelPackage: string;
  readonly kernelVersion: string;
  readonly busyboxVersion: string;
  readonly release: string;
  readonly modules: readonly string[];
  /** SHA-256 of the /init script the initramfs was built with (manifest version 2). */
  readonly init: string;
  readonly files: Record<"vmlinuz" | "initramfs.cpio", { readonly size: number; readonly sha256: string }>;
}
/** The /init script of the initramfs for kernel release `release`. */
export declare function initScript(release: string): string;
/** SHA-256 of initScript(release): what the manifest's `init` records. */
export declare function initDigest(release: string): string;
/** Fetch and build into `cache`; throws FetchLinuxError naming what is missing. */
export declare function fetchLinux(options?: { cache?: string; refresh?: boolean; log?: (line: string) => void }): LinuxManifest;
