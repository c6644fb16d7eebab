import { execFile, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import {
  BENCH_DEFAULT_ITERATIONS,
  GUEST_IMAGES,
  GUEST_IMAGE_INFO,
  GUEST_LOAD_ADDRESS,
  GUEST_MIN_MEMORY,
  REFERENCE_KERNEL,
  REFERENCE_KERNEL_INFO,
  REFERENCE_KERNEL_WORKLOADS,
  XENTEST,
  XENTEST_INFO,
  XEN_ELFNOTE_PHYS32_ENTRY,
  guestExpectedOutputUrl,
  guestImageUrl,
  isGuestImageName,
  referenceKernelExpectedOutputUrl,
  referenceKernelPvExpectedOutputUrl,
  REFERENCE_KERNEL_PV_WORKLOADS,
  referenceKernelUrl,
  xentestExpectedOutputUrl,
  xentestUrl,
} from "@vtlab/guests";
import { EM_X86_64, ET_EXEC, PF_W, PF_X, PT_LOAD, PT_NOTE, parseElf64 } from "./elf.js";

const execFileAsync = promisify(execFile);

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const imagesDir = join(pkg, "images");
const provenance = readFileSync(join(imagesDir, "PROVENANCE.md"), "utf8");

/** The line `- key: value` of PROVENANCE.md's "Toolchain" list. */
function recorded(key: string): string {
  const m = new RegExp(`^- ${key}: \`([^\`]+)\``, "m").exec(provenance);
  if (!m?.[1]) throw new Error(`PROVENANCE.md records no ${key}`);
  return m[1];
}

function tool(cmd: string, args: string[]): string | undefined {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

const gccVersion = tool("gcc", ["-dumpfullversion"]);

/**
 * xentest includes the Xen public headers (Debian's libxen-dev, /usr/include/xen). Where they
 * are missing and this runs as root, install them (as the xen-public layout test does); the
 * rebuild below then fails, naming them, only where that is impossible.
 */
function ensureXenHeaders(): boolean {
  const header = "/usr/include/xen/xen.h";
  if (existsSync(header)) return true;
  if (process.getuid?.() === 0) {
    spawnSync("sh", ["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libxen-dev"], { stdio: "ignore", timeout: 600_000 });
  }
  return existsSync(header);
}
const ldVersion = tool("ld", ["--version"])?.split("\n")[0]?.split(" ").pop();

describe("package API", () => {
  it("names exactly the images committed in images/", () => {
    const elves = readdirSync(imagesDir).filter((f) => f.endsWith(".elf")).map((f) => f.slice(0, -4)).sort();
    expect([...GUEST_IMAGES, REFERENCE_KERNEL, XENTEST].sort()).toEqual(elves);
    for (const name of GUEST_IMAGES) {
      expect(GUEST_IMAGE_INFO[name].name).toBe(name);
      expect(isGuestImageName(name)).toBe(true);
    }
    expect(isGuestImageName("nope")).toBe(false);
  });

  it("resolves image URLs to the files beside the package", () => {
    expect(fileURLToPath(guestImageUrl("sha256"))).toBe(join(imagesDir, "sha256.elf"));
    expect(fileURLToPath(guestExpectedOutputUrl("bench"))).toBe(join(imagesDir, "bench.expected"));
    expect(fileURLToPath(referenceKernelUrl())).toBe(join(imagesDir, "kernel.elf"));
    expect(fileURLToPath(referenceKernelExpectedOutputUrl("disk"))).toBe(join(imagesDir, "kernel-disk.expected"));
  });

  it("lists the same programs and optimisation levels as scripts/build.sh, using -O0, -Os and -O2", () => {
    const script = readFileSync(join(pkg, "scripts/build.sh"), "utf8");
    const table = /PROGRAMS='\n([\s\S]*?)'/.exec(script)?.[1] ?? "";
    const rows = table.trim().split("\n").map((l) => l.trim().split(/\s+/));
    expect(rows.map((r) => r[0])).toEqual([...GUEST_IMAGES, REFERENCE_KERNEL, XENTEST]);
    for (const [name, opt] of rows) {
      const info = name === REFERENCE_KERNEL ? REFERENCE_KERNEL_INFO : name === XENTEST ? XENTEST_INFO : GUEST_IMAGE_INFO[name as (typeof GUEST_IMAGES)[number]];
      expect(info.optimisation).toBe(opt);
    }
    expect(new Set(rows.map((r) => r[1]))).toEqual(new Set(["-O0", "-Os", "-O2"]));
  });
});

describe.each([...GUEST_IMAGES])("images/%s.elf", (name) => {
  const image = new Uint8Array(readFileSync(fileURLToPath(guestImageUrl(name))));
  const elf = parseElf64(image);

  it("is an ELF64 x86-64 executable", () => {
    if (typeof elf === "string") throw new Error(elf);
    expect(elf.type).toBe(ET_EXEC);
    expect(elf.machine).toBe(EM_X86_64);
  });

  it("carries XEN_ELFNOTE_PHYS32_ENTRY with a 32-bit entry inside an executable PT_LOAD", () => {
    if (typeof elf === "string") throw new Error(elf);
    const notes = elf.notes.filter((n) => n.name === "Xen" && n.type === XEN_ELFNOTE_PHYS32_ENTRY);
    expect(notes).toHaveLength(1);
    const desc = notes[0]!.desc;
    expect(desc.length).toBe(4);
    const entry = new DataView(desc.buffer, desc.byteOffset, 4).getUint32(0, true);
    expect(entry).toBe(elf.entry);
    const text = elf.phdrs.find((p) => p.type === PT_LOAD && p.paddr <= entry && entry < p.paddr + p.filesz);
    expect(text, "entry point inside a loaded segment").toBeDefined();
    expect(text!.flags & PF_X).toBe(PF_X);
    expect(elf.phdrs.filter((p) => p.type === PT_NOTE)).toHaveLength(1);
  });

  it("loads every PT_LOAD at or above 1 MiB, without overlaps, within the minimum guest memory", () => {
    if (typeof elf === "string") throw new Error(elf);
    const loads = elf.phdrs.filter((p) => p.type === PT_LOAD).sort((a, b) => a.paddr - b.paddr);
    expect(loads.length).toBeGreaterThanOrEqual(2);
    expect(loads[0]!.paddr).toBe(GUEST_LOAD_ADDRESS);
    let end = 0;
    for (const p of loads) {
      expect(p.paddr).toBeGreaterThanOrEqual(Math.max(GUEST_LOAD_ADDRESS, end));
      expect(p.filesz).toBeLessThanOrEqual(p.memsz);
      expect(p.paddr % 4096).toBe(0);
      end = p.paddr + p.memsz;
    }
    expect(end).toBeLessThanOrEqual(GUEST_MIN_MEMORY);
    // identity mapped, except usermode's user segment (virtual 1 GiB, writable and executable)
    for (const p of loads) {
      if (p.vaddr !== p.paddr) {
        expect(name).toBe("usermode");
        expect(p.vaddr).toBe(0x4000_0000);
      } else {
        expect(p.flags & (PF_W | PF_X)).not.toBe(PF_W | PF_X);
      }
    }
  });

  it("has an expected output ending in its PASS line", () => {
    const expected = readFileSync(fileURLToPath(guestExpectedOutputUrl(name)), "utf8");
    expect(expected).toMatch(/^[\x20-\x7e\n]*$/);
    expect(expected).toMatch(new RegExp(`\\nPASS ${name} [0-9a-f]{16}\\n$`));
    expect(expected).not.toMatch(/FAIL|EXCEPTION|WRONG|MISMATCH/);
  });

  it("is listed in PROVENANCE.md with its SHA-256", async () => {
    const { createHash } = await import("node:crypto");
    const digest = createHash("sha256").update(image).digest("hex");
    expect(provenance).toContain(`${digest}  ${name}.elf`);
  });
});

describe("bench", () => {
  it("prints one line per default iteration", () => {
    const expected = readFileSync(fileURLToPath(guestExpectedOutputUrl("bench")), "utf8");
    expect(expected).toContain(`iterations ${BENCH_DEFAULT_ITERATIONS}\n`);
    expect(expected.match(/^iteration \d+:/gm)).toHaveLength(BENCH_DEFAULT_ITERATIONS);
  });
});

describe("rebuild with the recorded toolchain", () => {
  const out = mkdtempSync(join(tmpdir(), "vtlab-guests-"));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  // Byte-identical output needs the exact gcc and binutils recorded in PROVENANCE.md. Every
  // machine of the project's kind has them (Debian 12: gcc 12.2.0, binutils 2.40); anywhere else
  // this test fails and says which toolchain it found.
  it(
    `scripts/build.sh reproduces every committed image byte for byte (gcc ${recorded("gcc")}, ld ${recorded("ld")})`,
    async () => {
      expect({ gcc: gccVersion, ld: ldVersion }, "the toolchain recorded in images/PROVENANCE.md is needed to reproduce the images").toEqual({
        gcc: recorded("gcc"),
        ld: recorded("ld"),
      });
      expect(ensureXenHeaders(), "xentest needs the Xen public headers: apt-get install libxen-dev").toBe(true);
      // Asynchronous: gcc runs for a while, and the worker must stay free meanwhile (a blocked
      // worker fails the run on a loaded machine: vitest's onTaskUpdate RPC times out).
      await execFileAsync("sh", [join(pkg, "scripts/build.sh"), out], { maxBuffer: 64 * 1024 * 1024 });
      for (const name of [...GUEST_IMAGES, REFERENCE_KERNEL, XENTEST]) {
        const rebuilt = readFileSync(join(out, `${name}.elf`));
        const committed = readFileSync(join(imagesDir, `${name}.elf`));
        expect(rebuilt.equals(committed), `${name}.elf differs from a rebuild`).toBe(true);
      }
    },
  );
});

describe("expected outputs", () => {
  // The .expected files were produced by QEMU (scripts/qemu.sh; `pnpm --filter @vtlab/guests
  // qemu-check` reruns them where QEMU is installed). This check needs only python3, which every
  // machine of the project's kind has: it recomputes the outputs on the host.
  it("agree with host-side computations (scripts/crosscheck.py)", () => {
    const r = spawnSync("python3", [join(pkg, "scripts/crosscheck.py"), imagesDir], { encoding: "utf8" });
    expect(r.error, "python3 is needed for the cross-check").toBeUndefined();
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });
});

describe("images/kernel.elf (the reference kernel)", () => {
  const image = new Uint8Array(readFileSync(fileURLToPath(referenceKernelUrl())));
  const elf = parseElf64(image);

  it("is an ELF64 x86-64 executable with the PVH entry note inside its text", () => {
    if (typeof elf === "string") throw new Error(elf);
    expect(elf.type).toBe(ET_EXEC);
    expect(elf.machine).toBe(EM_X86_64);
    const notes = elf.notes.filter((n) => n.name === "Xen" && n.type === XEN_ELFNOTE_PHYS32_ENTRY);
    expect(notes).toHaveLength(1);
    const desc = notes[0]!.desc;
    expect(new DataView(desc.buffer, desc.byteOffset, 4).getUint32(0, true)).toBe(elf.entry);
    const text = elf.phdrs.find((p) => p.type === PT_LOAD && p.paddr <= elf.entry && elf.entry < p.paddr + p.filesz);
    expect(text!.flags & PF_X).toBe(PF_X);
  });

  it("loads at 1 MiB, identity mapped except the read-only user segment at virtual 1 GiB, below 32 MiB", () => {
    if (typeof elf === "string") throw new Error(elf);
    const loads = elf.phdrs.filter((p) => p.type === PT_LOAD).sort((a, b) => a.paddr - b.paddr);
    expect(loads).toHaveLength(3);
    expect(loads[0]!.paddr).toBe(GUEST_LOAD_ADDRESS);
    let end = 0;
    for (const p of loads) {
      expect(p.paddr).toBeGreaterThanOrEqual(end);
      expect(p.paddr % 4096).toBe(0);
      expect(p.flags & (PF_W | PF_X)).not.toBe(PF_W | PF_X);
      end = p.paddr + p.memsz;
    }
    expect(end).toBeLessThanOrEqual(GUEST_MIN_MEMORY);
    const user = loads.filter((p) => p.vaddr !== p.paddr);
    expect(user).toHaveLength(1);
    expect(user[0]!.vaddr).toBe(0x4000_0000);
    expect(user[0]!.flags & PF_W).toBe(0);
  });

  it("is listed in PROVENANCE.md with its SHA-256", async () => {
    const { createHash } = await import("node:crypto");
    expect(provenance).toContain(`${createHash("sha256").update(image).digest("hex")}  kernel.elf`);
  });

  it.each([...REFERENCE_KERNEL_WORKLOADS])("has an expected output for workload=%s: boot line first, PASS line last", (w) => {
    const expected = readFileSync(fileURLToPath(referenceKernelExpectedOutputUrl(w)), "utf8");
    expect(expected).toMatch(/^[\x20-\x7e\n]*$/);
    expect(expected.startsWith(`vtlab reference kernel: workload=${w}\n`)).toBe(true);
    expect(expected).toMatch(new RegExp(`\\nPASS ${w} [0-9a-f]{16}\\n$`));
    expect(expected).not.toMatch(/FAIL|EXCEPTION|MISMATCH/);
    expect(REFERENCE_KERNEL_INFO.workloads[w].name).toBe(w);
  });

  it.each(["pvdisk", "net-ping", "net-pong"] as const)("has a host-computed expected output for the PV workload %s: boot line first, PASS line last", (w) => {
    const expected = readFileSync(fileURLToPath(referenceKernelPvExpectedOutputUrl(w)), "utf8");
    const workload = w === "pvdisk" ? "pvdisk" : "net";
    expect((REFERENCE_KERNEL_PV_WORKLOADS as readonly string[]).includes(workload)).toBe(true);
    expect(expected).toMatch(/^[\x20-\x7e\n]*$/);
    expect(expected.startsWith(`vtlab reference kernel: workload=${workload}\n`)).toBe(true);
    expect(expected).toMatch(new RegExp(`\\nPASS ${workload} [0-9a-f]{16}\\n$`));
    expect(expected).not.toMatch(/FAIL|EXCEPTION|MISMATCH/);
  });

  it("pvdisk's checksum is the disk checksum (the same data, folded the same way)", () => {
    const last = (f: string) => f.trimEnd().split("\n").at(-1)!.split(" ")[2];
    expect(last(readFileSync(fileURLToPath(referenceKernelPvExpectedOutputUrl("pvdisk")), "utf8"))).toBe(last(readFileSync(fileURLToPath(referenceKernelExpectedOutputUrl("disk")), "utf8")));
  });

  it("expected outputs agree with host-side computations (scripts/crosscheck-kernel.py)", () => {
    const r = spawnSync("python3", [join(pkg, "scripts/crosscheck-kernel.py"), imagesDir], { encoding: "utf8" });
    expect(r.error, "python3 is needed for the cross-check").toBeUndefined();
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  }, 60_000);
});

describe("images/xentest.elf (the PV-on-HVM self-test)", () => {
  const image = new Uint8Array(readFileSync(fileURLToPath(xentestUrl())));
  const elf = parseElf64(image);

  it("is an ELF64 x86-64 PVH executable loaded at 1 MiB, identity mapped, below 32 MiB", () => {
    if (typeof elf === "string") throw new Error(elf);
    expect(elf.type).toBe(ET_EXEC);
    expect(elf.machine).toBe(EM_X86_64);
    expect(elf.notes.filter((n) => n.name === "Xen" && n.type === XEN_ELFNOTE_PHYS32_ENTRY)).toHaveLength(1);
    const loads = elf.phdrs.filter((p) => p.type === PT_LOAD).sort((a, b) => a.paddr - b.paddr);
    expect(loads[0]!.paddr).toBe(GUEST_LOAD_ADDRESS);
    for (const p of loads) {
      expect(p.vaddr).toBe(p.paddr);
      expect(p.flags & (PF_W | PF_X)).not.toBe(PF_W | PF_X);
      expect(p.paddr + p.memsz).toBeLessThanOrEqual(GUEST_MIN_MEMORY);
    }
  });

  it("is listed in PROVENANCE.md with its SHA-256", async () => {
    const { createHash } = await import("node:crypto");
    expect(provenance).toContain(`${createHash("sha256").update(image).digest("hex")}  xentest.elf`);
  });

  it("has an expected output that scripts/xentest-expected.py recomputes on the host, with the handshake line and a PASS line", () => {
    const expected = readFileSync(fileURLToPath(xentestExpectedOutputUrl()), "utf8");
    expect(expected).toMatch(/^[\x20-\x7e\n]*$/);
    expect(expected.startsWith("xentest: PV-on-HVM self-test\n")).toBe(true);
    expect(expected).toContain(`\nxen-selftest: grant ${XENTEST_INFO.grantRef} evtchn `);
    expect(expected).toMatch(/\nPASS xentest [0-9a-f]{16}\n$/);
    expect(expected).not.toMatch(/FAIL|EXCEPTION|SOME|LESS THAN|DIFFERENT|NOT PENDING|SET\b/);
    const r = spawnSync("python3", [join(pkg, "scripts/xentest-expected.py"), "--check", imagesDir], { encoding: "utf8" });
    expect(r.error, "python3 is needed for the host computation").toBeUndefined();
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  });
});
