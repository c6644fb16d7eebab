/**
 * The initramfs writer (scripts/cpio.mjs): archives it writes are unpacked by GNU cpio (installed
 * with apt-get where it is missing, as root in CI, as the other tests install gcc) to the same
 * files, directories, symlinks and device nodes, and follow the newc layout rules the kernel's
 * init/initramfs.c reads: 110-byte ASCII headers, 4-byte alignment, the TRAILER!!! entry.
 */
import { describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CPIO_HEADER_SIZE, CPIO_TRAILER, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG, writeCpioNewc, type CpioEntry } from "../scripts/cpio.mjs";

function ensureCpio(): void {
  if (spawnSync("sh", ["-c", "command -v cpio"]).status === 0) return;
  spawnSync("sh", ["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cpio"], { stdio: "ignore", timeout: 600_000 });
}

const data = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * seed + 11) & 0xff);

const ENTRIES: CpioEntry[] = [
  { path: "bin", type: "dir" },
  { path: "dev", type: "dir", mode: 0o700 },
  { path: "bin/busybox", type: "file", mode: 0o755, data: data(5001, 13) },
  { path: "bin/sh", type: "symlink", target: "busybox" },
  { path: "dev/console", type: "char", major: 5, minor: 1 },
  { path: "empty", type: "file", data: new Uint8Array(0) },
  { path: "init", type: "file", mode: 0o755, data: new TextEncoder().encode("#!/bin/sh\necho hi\n") },
];

/** Walk the archive by the format's rules: each header's fields, alignment, and the trailer. */
function walk(a: Uint8Array): { name: string; mode: number; size: number; ino: number; rdev: [number, number] }[] {
  const text = new TextDecoder();
  const out = [];
  let at = 0;
  for (;;) {
    const h = text.decode(a.subarray(at, at + CPIO_HEADER_SIZE));
    expect(h.slice(0, 6)).toBe("070701");
    const f = (k: number) => parseInt(h.slice(6 + 8 * k, 14 + 8 * k), 16);
    const namesize = f(11);
    const name = text.decode(a.subarray(at + CPIO_HEADER_SIZE, at + CPIO_HEADER_SIZE + namesize - 1));
    expect(a[at + CPIO_HEADER_SIZE + namesize - 1]).toBe(0);
    const dataAt = Math.ceil((at + CPIO_HEADER_SIZE + namesize) / 4) * 4;
    out.push({ name, mode: f(1), size: f(6), ino: f(0), rdev: [f(9), f(10)] as [number, number] });
    at = Math.ceil((dataAt + f(6)) / 4) * 4;
    if (name === CPIO_TRAILER) break;
  }
  expect(at).toBe(a.length);
  return out;
}

describe("the cpio newc writer", () => {
  it("lays out headers, names and data as newc: 4-byte alignment, unique inodes, the trailer last", () => {
    const a = writeCpioNewc(ENTRIES);
    expect(a.length % 4).toBe(0);
    const w = walk(a);
    expect(w.map((e) => e.name)).toEqual([...ENTRIES.map((e) => e.path), CPIO_TRAILER]);
    expect(w.map((e) => e.mode)).toEqual([S_IFDIR | 0o755, S_IFDIR | 0o700, S_IFREG | 0o755, S_IFLNK | 0o777, S_IFCHR | 0o600, S_IFREG | 0o644, S_IFREG | 0o755, 0]);
    expect(new Set(w.slice(0, -1).map((e) => e.ino)).size).toBe(ENTRIES.length);
    expect(w[4]!.rdev).toEqual([5, 1]);
    expect(w[3]!.size).toBe("busybox".length);
    expect(writeCpioNewc(ENTRIES)).toEqual(a); // deterministic
  });

  it("GNU cpio unpacks it to the same tree (files, modes, symlink, character device)", () => {
    ensureCpio();
    const dir = mkdtempSync(join(tmpdir(), "vtlab-cpio-"));
    try {
      execFileSync("cpio", ["-idm", "--quiet"], { cwd: dir, input: writeCpioNewc(ENTRIES) });
      expect(new Uint8Array(readFileSync(join(dir, "bin/busybox")))).toEqual(data(5001, 13));
      expect(lstatSync(join(dir, "bin/busybox")).mode & 0o7777).toBe(0o755);
      expect(readlinkSync(join(dir, "bin/sh"))).toBe("busybox");
      expect(readFileSync(join(dir, "init"), "utf8")).toBe("#!/bin/sh\necho hi\n");
      expect(readFileSync(join(dir, "empty")).length).toBe(0);
      expect(lstatSync(join(dir, "dev")).isDirectory()).toBe(true);
      const listing = execFileSync("cpio", ["-itv", "--quiet"], { input: writeCpioNewc(ENTRIES), encoding: "utf8" });
      expect(listing).toMatch(/^crw------- .* 5,\s+1 .* dev\/console$/m);
      expect(listing).toMatch(/^lrwxrwxrwx .* bin\/sh -> busybox$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses bad entries, naming them", () => {
    expect(() => writeCpioNewc([{ path: "/abs", type: "dir" }])).toThrow(/path "\/abs": give a relative path/);
    expect(() => writeCpioNewc([{ path: "a/../b", type: "dir" }])).toThrow(/path "a\/..\/b"/);
    expect(() => writeCpioNewc([{ path: "a", type: "dir" }, { path: "a", type: "dir" }])).toThrow(/path "a" is listed twice/);
    expect(() => writeCpioNewc([{ path: "x", type: "file", data: new Uint8Array(1), mode: 0o17777 }])).toThrow(/entry "x": mode 0o17777/);
    expect(() => writeCpioNewc([{ path: "l", type: "symlink", target: "" }])).toThrow(/entry "l": a symlink needs a target/);
    expect(() => writeCpioNewc([{ path: "c", type: "char", major: -1, minor: 0 }])).toThrow(/entry "c": c_rdevmajor -1/);
  });
});
