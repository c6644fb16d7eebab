import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { hostileGuestUrl } from "@vtlab/guests";
import { EM_X86_64, ET_EXEC, parseElf64 } from "./elf.js";

const execFileAsync = promisify(execFile);

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const sources = readdirSync(join(pkg, "c/hostile")).filter((f) => f.endsWith(".c")).map((f) => f.slice(0, -2)).sort();

describe("hostile guests (c/hostile/*.c, images/hostile/*.elf)", () => {
  it("has one committed image per C source", () => {
    const images = readdirSync(join(pkg, "images/hostile")).filter((f) => f.endsWith(".elf")).map((f) => f.slice(0, -4)).sort();
    expect(images).toEqual(sources);
    expect(sources.length).toBeGreaterThan(0);
  });

  it("names each image by URL and refuses names that are not names", () => {
    for (const name of sources) expect(fileURLToPath(hostileGuestUrl(name))).toBe(join(pkg, "images/hostile", `${name}.elf`));
    expect(() => hostileGuestUrl("../kernel")).toThrow(/not a guest name/);
  });

  it.each(sources)("images/hostile/%s.elf is an ELF64 x86-64 executable", (name) => {
    const elf = parseElf64(new Uint8Array(readFileSync(hostileGuestUrl(name))));
    if (typeof elf === "string") throw new Error(elf);
    expect(elf.type).toBe(ET_EXEC);
    expect(elf.machine).toBe(EM_X86_64);
  });

  const out = mkdtempSync(join(tmpdir(), "vtlab-hostile-"));
  afterAll(() => rmSync(out, { recursive: true, force: true }));
  it("scripts/build.sh hostile reproduces every committed image byte for byte", async () => {
    // Asynchronous, so that the worker stays free while gcc runs (see images.test.ts).
    await execFileAsync("sh", [join(pkg, "scripts/build.sh"), out, "hostile"], { maxBuffer: 64 * 1024 * 1024 });
    for (const name of sources) {
      const rebuilt = readFileSync(join(out, "hostile", `${name}.elf`));
      expect(rebuilt.equals(readFileSync(hostileGuestUrl(name))), `hostile/${name}.elf differs from a rebuild`).toBe(true);
    }
  });
});
