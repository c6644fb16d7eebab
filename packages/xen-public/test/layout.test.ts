// The package against the real Xen headers: a C program, generated here from the package's own
// exports (so a new layout, field or constant is checked without touching this file), is
// compiled with gcc against /usr/include/xen and prints sizeof/offsetof of every layout field
// and the value of every constant; each must equal the package's. gcc and libxen-dev are
// installed when missing (apt-get, as root in CI); the test never skips. One compile per run.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as pkg from "@vtlab/xen-public";
import * as constants from "../src/constants.js";

const here = dirname(fileURLToPath(import.meta.url));
const pkgDir = join(here, "..");
const HEADERS = [
  "xen.h", "errno.h", "version.h", "features.h", "sched.h", "event_channel.h", "grant_table.h",
  "memory.h", "vcpu.h", "hvm/hvm_op.h", "hvm/params.h", "hvm/hvm_vcpu.h", "arch-x86/cpuid.h",
  "arch-x86/xen.h", "io/ring.h", "io/console.h", "io/xs_wire.h", "io/xenbus.h", "io/blkif.h", "io/netif.h",
];
// As Xen itself is built (the generator uses the same): latest interface, hypervisor-only ops.
const CFLAGS = ["-D__XEN__", "-D__XEN_TOOLS__", "-I/usr/include", "-w"];
/** Layouts whose C type is not `struct <name>`. */
const CTYPE: Record<string, string> = {
  grant_entry_v2: "union grant_entry_v2",
  blkif_sring_entry: "union blkif_sring_entry",
  netif_tx_sring_entry: "union netif_tx_sring_entry",
  netif_rx_sring_entry: "union netif_rx_sring_entry",
  xen_extraversion: "xen_extraversion_t",
  xen_capabilities_info: "xen_capabilities_info_t",
  xen_changeset_info: "xen_changeset_info_t",
  xen_commandline: "xen_commandline_t",
};
const SRINGS = ["blkif", "netif_tx", "netif_rx"] as const;

function have(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: "ignore", timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

/** gcc, the Xen headers and python3 (for the regeneration check), installed if missing. */
function ensureToolchain(): void {
  const missing: string[] = [];
  if (!have("gcc", ["--version"])) missing.push("gcc");
  if (!existsSync("/usr/include/xen/xen.h")) missing.push("libxen-dev");
  if (!have("python3", ["--version"])) missing.push("python3");
  if (missing.length === 0) return;
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  execFileSync("apt-get", ["update"], { stdio: "inherit", timeout: 300_000, env });
  execFileSync("apt-get", ["install", "-y", "--no-install-recommends", ...missing], { stdio: "inherit", timeout: 300_000, env });
}

type Layout = Record<string, number>;
function isLayout(v: unknown): v is Layout {
  return typeof v === "object" && v !== null && !Array.isArray(v) && typeof (v as Layout).SIZEOF === "number" &&
    Object.values(v).every((x) => typeof x === "number");
}
const allLayouts = Object.entries(pkg as Record<string, unknown>).filter((e): e is [string, Layout] => isLayout(e[1]));
/** x86_64 layouts, checked by running a 64-bit program. */
const layouts = allLayouts.filter(([n]) => !n.startsWith("compat_"));
/**
 * compat_<name>: the 32-bit layouts Xen translates (xen/include/compat), i.e. the native struct
 * as an i386 build of the public headers lays it out. No 32-bit libc is needed: the program is
 * compiled with -m32 -ffreestanding, and each value is a _Static_assert.
 */
const compatLayouts = allLayouts.filter(([n]) => n.startsWith("compat_"));
const CFLAGS32 = ["-m32", "-ffreestanding", "-D__XEN_INTERFACE_VERSION__=__XEN_LATEST_INTERFACE_VERSION__", "-I/usr/include", "-w", "-c"];
const constantEntries = Object.entries(constants as Record<string, unknown>).filter(
  (e): e is [string, number | bigint] => typeof e[1] === "number" || typeof e[1] === "bigint",
);
/** The C spelling of a constant's TS name (the generator's mapping, reversed). */
function cName(ts: string): string {
  if (ts.startsWith("HYPERVISOR_")) return "__" + ts;
  if (ts.startsWith("BIT_")) return ts.slice(3);
  return ts;
}

function cProgram(): string {
  const out = ["#include <errno.h>", "#include <stdint.h>", "#include <stddef.h>", "#include <stdio.h>"];
  for (const h of HEADERS) out.push(`#include <xen/${h}>`);
  out.push("#define VAL(n, x) printf(\"C %s %d %lld %llu\\n\", n, (x) < 0, (long long)(x), (unsigned long long)(x))");
  out.push("int main(void) {");
  for (const [name, layout] of layouts) {
    const ct = CTYPE[name] ?? `struct ${name}`;
    out.push(`  printf("L ${name} SIZEOF %zu\\n", sizeof(${ct}));`);
    for (const field of Object.keys(layout)) {
      if (field !== "SIZEOF") out.push(`  printf("L ${name} ${field} %zu\\n", offsetof(${ct}, ${field}));`);
    }
  }
  for (const [ts] of constantEntries) out.push(`  VAL("${ts}", ${cName(ts)});`);
  out.push("  for (unsigned i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++)");
  out.push("    printf(\"X %d %s\\n\", xsd_errors[i].errnum, xsd_errors[i].errstring);");
  out.push("  { static const char *m[] = GNTTABOP_error_msgs;");
  out.push("    for (unsigned i = 0; i < sizeof(m) / sizeof(m[0]); i++) printf(\"G %s\\n\", m[i]); }");
  for (const s of SRINGS) {
    for (const size of [4096, 8192, 16384, 65536]) {
      out.push(`  printf("R ${s} ${size} %lu\\n", (unsigned long)__CONST_RING_SIZE(${s}, ${size}));`);
    }
  }
  out.push('  printf("S in %zu\\n", sizeof(((struct xencons_interface *)0)->in));');
  out.push('  printf("S out %zu\\n", sizeof(((struct xencons_interface *)0)->out));');
  out.push("  return 0;\n}");
  return out.join("\n") + "\n";
}

function cProgram32(): string {
  const out = ["#include <stdint.h>", "#include <stddef.h>"];
  for (const h of HEADERS) out.push(`#include <xen/${h}>`);
  const native = new Set(layouts.map(([n]) => n));
  for (const [name, layout] of compatLayouts) {
    // Xen's compat naming: xen_<x> becomes compat_<x>, any other <x> becomes compat_<x>.
    const rest = name.slice("compat_".length);
    const c = native.has(`xen_${rest}`) ? `xen_${rest}` : rest;
    const ct = CTYPE[c] ?? `struct ${c}`;
    for (const [field, value] of Object.entries(layout)) {
      const expr = field === "SIZEOF" ? `sizeof(${ct})` : `offsetof(${ct}, ${field})`;
      out.push(`_Static_assert(${expr} == ${value}, "${name}.${field} is not ${value}");`);
    }
  }
  return out.join("\n") + "\n";
}

let tmp = "";
let compat32 = "";
let output: string[] = [];
beforeAll(() => {
  ensureToolchain();
  tmp = mkdtempSync(join(tmpdir(), "xen-public-layout-"));
  writeFileSync(join(tmp, "layout.c"), cProgram());
  execFileSync("gcc", [...CFLAGS, join(tmp, "layout.c"), "-o", join(tmp, "layout")], { timeout: 120_000 });
  output = execFileSync(join(tmp, "layout"), { timeout: 30_000 }).toString().trim().split("\n");
  writeFileSync(join(tmp, "compat.c"), cProgram32());
  try {
    execFileSync("gcc", [...CFLAGS32, join(tmp, "compat.c"), "-o", join(tmp, "compat.o")], { timeout: 120_000, stdio: "pipe" });
    compat32 = "ok";
  } catch (e) {
    const stderr = String((e as { stderr?: Buffer }).stderr ?? e);
    compat32 = [...stderr.matchAll(/"(compat_[^"]*)"/g)].map((m) => m[1]).join("\n") || stderr.slice(0, 4000);
  }
}, 600_000);
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

function lines(tag: string): string[][] {
  return output.filter((l) => l.startsWith(tag + " ")).map((l) => l.split(" ").slice(1));
}

describe("layouts (x86_64) equal gcc's sizeof/offsetof against /usr/include/xen", () => {
  it("covers the structs the package encodes", () => {
    expect(layouts.length).toBeGreaterThan(80);
    for (const name of ["shared_info", "vcpu_info", "gnttab_copy_ptr", "blkif_request", "netif_extra_info", "xsd_sockmsg"]) {
      expect(layouts.map(([n]) => n)).toContain(name);
    }
  });
  it("every SIZEOF and field offset", () => {
    const c = new Map(lines("L").map(([n, f, v]) => [`${n}.${f}`, Number(v)]));
    const mismatches: string[] = [];
    let checked = 0;
    for (const [name, layout] of layouts) {
      for (const [field, value] of Object.entries(layout)) {
        checked++;
        if (c.get(`${name}.${field}`) !== value) mismatches.push(`${name}.${field}: package ${value}, gcc ${c.get(`${name}.${field}`)}`);
      }
    }
    expect(mismatches).toEqual([]);
    expect(checked).toBe(c.size);
  });
  it("every compat_ (32-bit) SIZEOF and field offset, gcc -m32", () => {
    expect(compatLayouts.length).toBeGreaterThan(0);
    expect(compat32).toBe("ok");
  });
  it("the well-known numbers", () => {
    expect(pkg.shared_info.SIZEOF).toBe(3136);
    expect(pkg.shared_info.evtchn_pending).toBe(2048);
    expect(pkg.shared_info.evtchn_mask).toBe(2560);
    expect(pkg.vcpu_info.SIZEOF).toBe(64);
    expect(pkg.blkif_request.SIZEOF).toBe(112);
    expect(pkg.xenstore_domain_interface.SIZEOF).toBe(2076);
  });
  it("every DEFINE_RING_TYPES ring has the same 64-byte header", () => {
    for (const s of SRINGS) {
      const l = (pkg as unknown as Record<string, Layout>)[`${s}_sring`];
      if (!l) throw new Error(`${s}_sring missing`);
      for (const f of ["req_prod", "req_event", "rsp_prod", "rsp_event", "pvt", "__pad", "ring"]) {
        expect(l[f], `${s}_sring.${f}`).toBe(pkg.blkif_sring[f as keyof typeof pkg.blkif_sring]);
      }
    }
  });
  it("CONST_RING_SIZE equals __CONST_RING_SIZE", () => {
    const c = lines("R");
    expect(c.length).toBe(SRINGS.length * 4);
    for (const [s, size, n] of c) {
      const sring = (pkg as unknown as Record<string, Layout>)[`${s}_sring`];
      const entry = (pkg as unknown as Record<string, Layout>)[`${s}_sring_entry`];
      if (!sring || !entry) throw new Error(`${s} layouts missing`);
      expect(pkg.CONST_RING_SIZE({ ring: sring.ring ?? 0 }, { SIZEOF: entry.SIZEOF ?? 0 }, Number(size)), `${s} ${size}`).toBe(Number(n));
    }
    expect(pkg.CONST_RING_SIZE(pkg.blkif_sring, pkg.blkif_sring_entry, 4096)).toBe(32);
    expect(pkg.CONST_RING_SIZE(pkg.netif_tx_sring, pkg.netif_tx_sring_entry, 4096)).toBe(256);
    expect(pkg.CONST_RING_SIZE(pkg.netif_rx_sring, pkg.netif_rx_sring_entry, 4096)).toBe(256);
  });
  it("the console ring sizes", () => {
    const c = Object.fromEntries(lines("S").map(([n, v]) => [n, Number(v)]));
    expect(pkg.XENCONS_IN_SIZE).toBe(c.in);
    expect(pkg.XENCONS_OUT_SIZE).toBe(c.out);
  });
});

describe("constants equal the headers' values (gcc, x86_64)", () => {
  it("every exported number of constants.ts", () => {
    const c = new Map(lines("C").map(([n, neg, s, u]) => [n, neg === "1" ? BigInt(s ?? "") : BigInt(u ?? "")]));
    const mismatches: string[] = [];
    for (const [name, value] of constantEntries) {
      const want = c.get(name);
      if (want === undefined || BigInt(value) !== want) mismatches.push(`${name}: package ${value}, gcc ${want}`);
      // numbers only where they are exact; bigint literals only where a number is not
      if (typeof value === "number") expect(Number.isSafeInteger(value), name).toBe(true);
      else expect(value > BigInt(Number.MAX_SAFE_INTEGER) || value < -BigInt(Number.MAX_SAFE_INTEGER), name).toBe(true);
    }
    expect(mismatches).toEqual([]);
    expect(constantEntries.length).toBeGreaterThan(500);
  });
  it("the ABI numbers the rest of vtlab relies on", () => {
    expect(pkg.EVTCHN_2L_NR_CHANNELS).toBe(4096);
    expect(pkg.XEN_LEGACY_MAX_VCPUS).toBe(32);
    expect(pkg.DOMID_SELF).toBe(0x7ff0);
    expect(pkg.XS_READ).toBe(2);
    expect(pkg.XS_ERROR).toBe(16);
    expect(pkg.GNTST_bad_gntref).toBe(-3);
    expect(pkg.HVM_PARAM_CALLBACK_IRQ_TYPE_MASK).toBe(0xff00000000000000n);
  });
  it("xsd_errors", () => {
    expect(pkg.xsd_errors.map((e) => `${e.errnum} ${e.errstring}`)).toEqual(lines("X").map((l) => l.join(" ")));
    expect(pkg.xsd_errors[0]).toEqual({ errnum: 22, errstring: "EINVAL" });
  });
  it("GNTTABOP_error_msgs", () => {
    expect([...pkg.GNTTABOP_error_msgs]).toEqual(lines("G").map((l) => l.join(" ")));
    expect(pkg.GNTTABOP_error_msgs[-pkg.GNTST_bad_gntref]).toBe("invalid grant reference");
  });
  it("src/constants.ts is what scripts/gen-constants.py writes (regeneration changes nothing)", () => {
    const generated = execFileSync("python3", [join(pkgDir, "scripts/gen-constants.py"), "/usr/include/xen"], { timeout: 120_000 }).toString();
    expect(generated).toBe(readFileSync(join(pkgDir, "src/constants.ts"), "utf8"));
  }, 180_000);
});
