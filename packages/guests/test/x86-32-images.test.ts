import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { x86_32GuestUrl } from "@vtlab/guests";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const sources = readdirSync(join(pkg, "c/x86-32")).filter((f) => f.endsWith(".c")).map((f) => f.slice(0, -2)).sort();

describe("x86-32 guests (c/x86-32/*.c, images/x86-32/*.elf)", () => {
  it("has one committed image per C source", () => {
    const images = readdirSync(join(pkg, "images/x86-32")).filter((f) => f.endsWith(".elf")).map((f) => f.slice(0, -4)).sort();
    expect(images).toEqual(sources);
    expect(sources).toEqual(["pae", "pse", "tss"]);
  });

  it("names each image by URL and refuses names that are not names", () => {
    for (const name of sources) expect(fileURLToPath(x86_32GuestUrl(name))).toBe(join(pkg, "images/x86-32", `${name}.elf`));
    expect(() => x86_32GuestUrl("../kernel")).toThrow(/not a guest name/);
  });

  it.each(sources)("images/x86-32/%s.elf is an ELF32 i386 executable (EM_386) with a PVH note", (name) => {
    const b = new Uint8Array(readFileSync(x86_32GuestUrl(name)));
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    expect(Array.from(b.subarray(0, 5))).toEqual([0x7f, 0x45, 0x4c, 0x46, 1]); // ELFCLASS32
    expect(dv.getUint16(16, true)).toBe(2); // ET_EXEC
    expect(dv.getUint16(18, true)).toBe(3); // EM_386
    expect(Buffer.from(b).includes(Buffer.from("Xen\0"))).toBe(true);
  });

  const out = mkdtempSync(join(tmpdir(), "vtlab-x86-32-"));
  afterAll(() => rmSync(out, { recursive: true, force: true }));
  it("scripts/build.sh x86-32 reproduces every committed image byte for byte", () => {
    execFileSync("sh", [join(pkg, "scripts/build.sh"), out, "x86-32"], { stdio: "pipe" });
    for (const name of sources) {
      const rebuilt = readFileSync(join(out, "x86-32", `${name}.elf`));
      expect(rebuilt.equals(readFileSync(x86_32GuestUrl(name))), `x86-32/${name}.elf differs from a rebuild`).toBe(true);
    }
  });
});
