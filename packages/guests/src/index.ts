/**
 * @vtlab/guests: real guest programs for the vtlab CPU.
 *
 * Freestanding C kernels built by gcc into ELF64 x86-64 images that boot the PVH way
 * (xen/arch-x86/hvm/start_info.h): PT_LOAD segments at p_paddr, entry at the 32-bit physical
 * address in the XEN_ELFNOTE_PHYS32_ENTRY note, in flat 32-bit protected mode with paging off,
 * EBX = physical address of struct hvm_start_info. Console on port 0xE9, exit through port
 * 0xF4. The images, their expected console output and their provenance live in `images/`
 * beside this package's `dist/`; this module only names them, so it runs anywhere (no Node-only
 * APIs): read the URL with `fs` in Node. The URLs are `new URL("../images/...", import.meta.url)`,
 * which not every bundler rewrites; bundled code imports the bytes instead from
 * `@vtlab/guests/embedded` (every image and expected output embedded in one generated module,
 * dist/embedded.js, written by scripts/embed-images.mjs at build time), or resolves the files
 * through the `@vtlab/guests/images/*` export with its bundler's asset handling.
 */

/** Every guest image, in the order the README describes them. */
export const GUEST_IMAGES = [
  "sha256",
  "sort",
  "format",
  "recursion",
  "div64",
  "setjmp",
  "usermode",
  "demand",
  "bench",
] as const;

export type GuestImageName = (typeof GUEST_IMAGES)[number];

export interface GuestImageInfo {
  readonly name: GuestImageName;
  /** The gcc optimisation level the image was built with. */
  readonly optimisation: "-O0" | "-Os" | "-O2";
  /** What it exercises, in one line. */
  readonly summary: string;
}

/** What each image is, keyed by name. */
export const GUEST_IMAGE_INFO: { readonly [N in GuestImageName]: GuestImageInfo } = {
  sha256: { name: "sha256", optimisation: "-O2", summary: "SHA-256 of the NIST vectors and a 64 KiB buffer: ROR, BSWAP, 32-bit ALU chains." },
  sort: { name: "sort", optimisation: "-Os", summary: "Quicksort and merge sort of 10,000 64-bit values, signed and unsigned: CMOVcc, SETcc, REP MOVSB." },
  format: { name: "format", optimisation: "-O0", summary: "Decimal, hex and octal formatting of 8/16/32/64-bit values incl. INT64_MIN and UINT64_MAX." },
  recursion: { name: "recursion", optimisation: "-O0", summary: "Ackermann, a 100,000-deep recursive sum and other deep recursion on a 16 MiB stack." },
  div64: { name: "div64", optimisation: "-Os", summary: "DIV/IDIV of every width incl. 128-by-64, division by constants, #DE caught and skipped." },
  setjmp: { name: "setjmp", optimisation: "-O2", summary: "setjmp/longjmp in assembly: non-local exits, nested try/catch, callee-saved registers." },
  usermode: { name: "usermode", optimisation: "-O2", summary: "TSS, CPL 3 via IRETQ, SYSCALL/SYSRET and INT 0x80, U/S pages, user #PF and #GP." },
  demand: { name: "demand", optimisation: "-O2", summary: "Demand paging of 16 MiB by the #PF handler (CR2, error code, INVLPG), exact fault counts, A/D bits." },
  bench: { name: "bench", optimisation: "-O2", summary: "CRC-32, sieve, sort and bit mixing, `iterations=N` on the command line (default 20, about 355M instructions)." },
};

/** Physical address every image is linked at (1 MiB). */
export const GUEST_LOAD_ADDRESS = 0x10_0000;
/** Xen: XEN_ELFNOTE_PHYS32_ENTRY, the ELF note (name "Xen") holding the 32-bit entry point. */
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;
/** Xen: XEN_HVM_START_MAGIC_VALUE, hvm_start_info.magic. */
export const XEN_HVM_START_MAGIC_VALUE = 0x336ec578;
/** Console: each byte written to this port (Bochs/QEMU debugcon) is a console character. */
export const DEBUGCON_PORT = 0xe9;
/** Exit: a 32-bit write of the exit code to this port (QEMU isa-debug-exit, iobase 0xf4, iosize 4). */
export const DEBUG_EXIT_PORT = 0xf4;

/** Exit codes the guests write to DEBUG_EXIT_PORT. */
export const GuestExitCode = {
  /** Every check passed; the last console line is `PASS <name> <checksum>`. */
  Success: 0,
  /** A check failed; the console says which (`FAIL ...`). */
  Failure: 1,
  /** EBX did not point at an hvm_start_info with the right magic. */
  BadBoot: 2,
  /** An unexpected exception: the console has its vector, error code, RIP and CR2. */
  Exception: 3,
} as const;

/**
 * Guest memory the images need, in bytes: every image fits below 32 MiB of guest-physical
 * RAM (demand reserves a 16 MiB frame pool in its image), with RAM from 1 MiB upwards.
 */
export const GUEST_MIN_MEMORY = 32 * 1024 * 1024;

/** Default iteration count of the bench image (override with `iterations=N`). */
export const BENCH_DEFAULT_ITERATIONS = 20;

/** URL of a guest image (`images/<name>.elf`). */
export function guestImageUrl(name: GuestImageName): URL {
  return new URL(`../images/${name}.elf`, import.meta.url);
}

/** URL of a guest's expected console output under the default command line (`images/<name>.expected`). */
export function guestExpectedOutputUrl(name: GuestImageName): URL {
  return new URL(`../images/${name}.expected`, import.meta.url);
}

/** True if `name` is one of GUEST_IMAGES. */
export function isGuestImageName(name: string): name is GuestImageName {
  return (GUEST_IMAGES as readonly string[]).includes(name);
}

/**
 * The reference guest kernel (`images/kernel.elf`): a small preemptive kernel, not one of
 * GUEST_IMAGES because its console is a 16550 UART at COM1 (port 0x3F8), not port 0xE9. It
 * boots the same PVH way and exits through DEBUG_EXIT_PORT; it uses the local APIC timer
 * (x2APIC through MSRs; xAPIC MMIO at 0xFEE00000 only when CPUID lacks x2APIC), page faults,
 * CPL 3 processes with INT 0x80 system calls, and an ATA PIO disk on the primary channel.
 */
export const REFERENCE_KERNEL = "kernel" as const;

/** The reference kernel's workloads, chosen with `workload=<name>` on the command line. */
export const REFERENCE_KERNEL_WORKLOADS = ["compute", "ptemod", "forkwait", "disk"] as const;

export type ReferenceKernelWorkload = (typeof REFERENCE_KERNEL_WORKLOADS)[number];

export interface ReferenceKernelWorkloadInfo {
  readonly name: ReferenceKernelWorkload;
  /** What it exercises, in one line. */
  readonly summary: string;
  /** Command-line parameters (`key=N`) and their defaults, which the `.expected` files use. */
  readonly defaults: { readonly [key: string]: number };
  /** Needs a raw disk of at least `mib` MiB (+ `lba` sectors) as the primary ATA master. */
  readonly needsDisk: boolean;
}

/** Build and workload facts of the reference kernel. */
export const REFERENCE_KERNEL_INFO = {
  name: REFERENCE_KERNEL,
  optimisation: "-O2",
  summary: "Preemptive kernel: UART console, APIC timer, own page tables, demand paging, CPL-3 processes with COW fork, ATA PIO.",
  workloads: {
    compute: { name: "compute", summary: "`procs` user processes of integer work, preempted round robin; per-process checksums in pid order.", defaults: { procs: 4, iterations: 1_000_000, timer: 100_000 }, needsDisk: false },
    ptemod: { name: "ptemod", summary: "One process touches `pages` heap pages (demand faults) and unmaps them, `iterations` times: PTE modifications.", defaults: { iterations: 1000, pages: 64, timer: 100_000 }, needsDisk: false },
    forkwait: { name: "forkwait", summary: "A process forks `forks` children (copy-on-write) that exit at once, waiting for each.", defaults: { forks: 1000, pages: 16, timer: 100_000 }, needsDisk: false },
    disk: { name: "disk", summary: "Writes `mib` MiB with WRITE SECTORS/MULTIPLE and reads it back with READ MULTIPLE/SECTORS, verified.", defaults: { mib: 2, lba: 0, multiple: 8 }, needsDisk: true },
  } satisfies { readonly [W in ReferenceKernelWorkload]: ReferenceKernelWorkloadInfo & { name: W } },
} as const;

/** The reference kernel's console: COM1, a 16550 UART (THR at +0, LSR at +5; polls LSR.THRE). */
export const REFERENCE_KERNEL_UART_PORT = 0x3f8;
/** The reference kernel's disk: the primary ATA channel's command block (0x1F0..0x1F7) and control port. */
export const REFERENCE_KERNEL_ATA_PORTS = { command: 0x1f0, control: 0x3f6 } as const;
/** Local APIC vectors the reference kernel programs: the timer and the spurious vector; 0x80 is its system-call gate. */
export const REFERENCE_KERNEL_VECTORS = { timer: 0x20, spurious: 0xff, syscall: 0x80 } as const;

/** URL of the reference kernel image (`images/kernel.elf`). */
export function referenceKernelUrl(): URL {
  return new URL(`../images/${REFERENCE_KERNEL}.elf`, import.meta.url);
}

/**
 * The reference kernel's Xen PV workloads (not in REFERENCE_KERNEL_WORKLOADS: they need a
 * Xen-style hypervisor with xenstored and the backends, which QEMU is not). The same binary
 * runs `disk` over the emulated ATA disk and `pvdisk` over blkfront, so the two measure the same
 * work. Its C drivers (c/kernel/xen/) find the platform PCI device, install the hypercall page,
 * map shared_info and grant-table frame 0, speak xenbus over the xenstore ring (HVM_PARAM_STORE_PFN
 * and _EVTCHN), take events through the callback vector (vector 0xf3) and wait in SCHEDOP_poll
 * (`xenpoll=1`: masked ports and SCHEDOP_poll only).
 */
export const REFERENCE_KERNEL_PV_WORKLOADS = ["pvdisk", "net"] as const;

export type ReferenceKernelPvWorkload = (typeof REFERENCE_KERNEL_PV_WORKLOADS)[number];

/** What each PV workload needs and does. */
export const REFERENCE_KERNEL_PV_INFO = {
  pvdisk: {
    name: "pvdisk",
    summary: "The disk workload's data (`mib` MiB, or `kib` KiB in whole pages, from sector `lba`) written, flushed and read back through blkfront on vbd `vbd` (51712 = xvda); the checksum equals `disk`'s.",
    defaults: { mib: 2, lba: 0, vbd: 51712 },
    /** Pages per ring batch (one notification, one SCHEDOP_poll): 64 pages, 6 requests of up to 11 segments. */
    batchPages: 64,
  },
  net: {
    name: "net",
    summary: "Two domains on one bridge: role=ping (10.0.0.1) resolves 10.0.0.2 by ARP and sends `count` ICMP echo requests; role=pong (10.0.0.2) answers; both verify IP and ICMP checksums and payloads.",
    defaults: { count: 10, vif: 0 },
    /** The expected outputs of the two roles at the defaults. */
    roles: ["ping", "pong"],
  },
} as const;

/** URL of a PV workload's expected COM1 output at the defaults: `kernel-pvdisk.expected`, `kernel-net-ping.expected`, `kernel-net-pong.expected` (computed on the host by scripts/crosscheck-kernel.py). */
export function referenceKernelPvExpectedOutputUrl(which: "pvdisk" | "net-ping" | "net-pong"): URL {
  return new URL(`../images/${REFERENCE_KERNEL}-${which}.expected`, import.meta.url);
}

/** URL of the reference kernel's expected COM1 output for `workload=<name>` at the defaults (`images/kernel-<name>.expected`). */
export function referenceKernelExpectedOutputUrl(workload: ReferenceKernelWorkload): URL {
  return new URL(`../images/${REFERENCE_KERNEL}-${workload}.expected`, import.meta.url);
}

/**
 * The PV-on-HVM self-test (`images/xentest.elf`): not one of GUEST_IMAGES, because it needs a
 * Xen-style hypervisor (QEMU is no Xen): it finds the Xen platform PCI device, detects Xen by
 * CPUID, installs the hypercall page, and then uses xen_version, shared_info, the callback
 * vector, VIRQ_TIMER with VCPUOP_set_singleshot_timer, the PV clock, IPI and interdomain event
 * channels, and a grant to dom0; its console is HYPERVISOR_console_io and it ends with
 * SCHEDOP_shutdown(SHUTDOWN_poweroff) (exit code 0; a failed check is SHUTDOWN_crash). It
 * boots the PVH way like the others.
 */
export const XENTEST = "xentest" as const;

/** Build and run facts of the self-test. */
export const XENTEST_INFO = {
  name: XENTEST,
  optimisation: "-O2",
  summary: "PV-on-HVM self-test: platform PCI device, Xen CPUID, hypercall page, shared_info, callback vector, VIRQ_TIMER, PV clock, event channels, a grant to dom0.",
  /** `timers=N` on the command line (1..1000): timer upcalls it takes; the expected output uses the default. */
  defaults: { timers: 5 },
  /**
   * The self-test's handshake with its dom0 peer (vtlab's, not a Xen ABI: there is no xenstore
   * yet): the one console line `xen-selftest: grant <ref> evtchn <port>`. The peer maps grant
   * `ref`, writes the pattern below, unmaps it, and notifies `port` over an interdomain channel.
   */
  handshake: "xen-selftest: grant <ref> evtchn <port>",
  /** The grant reference it offers (GNTTAB_NR_RESERVED_ENTRIES, the first a guest may use). */
  grantRef: 8,
} as const;

/**
 * The page the dom0 peer writes into the granted page: 32-bit word i (little-endian) is
 * (i * 2654435761) ^ 0x5eed0000 ^ ref, mod 2^32. The guest checks every word.
 */
export function xentestPatternWord(i: number, ref: number): number {
  return (Math.imul(i, 2654435761) ^ 0x5eed0000 ^ ref) >>> 0;
}

/** URL of the self-test image (`images/xentest.elf`). */
export function xentestUrl(): URL {
  return new URL(`../images/${XENTEST}.elf`, import.meta.url);
}

/** URL of the self-test's expected console (`images/xentest.expected`, computed on the host by scripts/xentest-expected.py). */
export function xentestExpectedOutputUrl(): URL {
  return new URL(`../images/${XENTEST}.expected`, import.meta.url);
}

// Native (TypeScript) guest kernels (src/native/): they run on a vCPU through cpu-vmx's GuestOps.
export { pvdemoKernel, pvdemoPattern, fnv1a } from "./native/pvdemo.js";
export type { PvDemoOptions } from "./native/pvdemo.js";

/**
 * URL of a hostile guest (`images/hostile/<name>.elf`, built from `c/hostile/<name>.c` by
 * scripts/build.sh): small guests that attack the host or their neighbours (unbounded caches,
 * floods, starvation, faults in delivery), run by the hypervisor's isolation tests beside a
 * well-behaved domain. They are not listed here one by one: each C file is its own description.
 */
export function hostileGuestUrl(name: string): URL {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new Error(`hostile guest: ${JSON.stringify(name)} is not a guest name (lower-case letters, digits and '-')`);
  return new URL(`../images/hostile/${name}.elf`, import.meta.url);
}

/**
 * URL of a committed x86-32 guest image (`images/x86-32/<name>.elf`, built from
 * `c/x86-32/<name>.c` by `scripts/build.sh <outdir> x86-32`): 32-bit protected-mode kernels
 * (elf32-i386, PVH entry) that stay out of long mode, for the 32-bit and PAE paging tests.
 */
export function x86_32GuestUrl(name: string): URL {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new Error(`x86-32 guest: ${JSON.stringify(name)} is not a guest name (lower-case letters, digits and '-')`);
  return new URL(`../images/x86-32/${name}.elf`, import.meta.url);
}

/** The files `pnpm --filter @vtlab/guests fetch-linux` (scripts/linux.mjs) writes into `linux-cache/`. */
export const LINUX_CACHE_FILES = ["vmlinuz", "initramfs.cpio", "manifest.json"] as const;
export type LinuxCacheFile = (typeof LINUX_CACHE_FILES)[number];

/**
 * URL of a file of the Debian kernel cache (`linux-cache/<file>`, git-ignored, written by the
 * fetch-linux script: Debian 12's linux-image-cloud-amd64 `vmlinuz`, the busybox initramfs, and
 * the manifest with the package names, versions and SHA-256s). Nothing there is committed or
 * published; run the script first (the hypervisor's Linux test runs it when the cache is empty).
 */
export function linuxCacheUrl(file: LinuxCacheFile): URL {
  return new URL(`../linux-cache/${file}`, import.meta.url);
}

/** URL of the fetch-linux script itself (`node <path> [--cache DIR] [--refresh]`). */
export function linuxFetchScriptUrl(): URL {
  return new URL("../scripts/linux.mjs", import.meta.url);
}
