import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import * as archFromSource from "@vtlab/arch";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../../..");
const archDir = join(root, "packages/arch");
const integrationDir = resolve(here, "..");
const bin = (name: string) => join(root, "node_modules/.bin", name);

describe("@vtlab/arch as published", () => {
  it("builds with its own build script to ESM and .d.ts", () => {
    execFileSync(bin("tsup"), [], { cwd: archDir, stdio: "pipe" });
    expect(existsSync(join(archDir, "dist/index.js"))).toBe(true);
    expect(existsSync(join(archDir, "dist/index.d.ts"))).toBe(true);
    const js = readFileSync(join(archDir, "dist/index.js"), "utf8");
    expect(js).toMatch(/^export \{/m);
  });

  it("imports by name from another workspace package and loads the built entry, with the same exports as the source", () => {
    const script = [
      "const url = import.meta.resolve('@vtlab/arch');",
      "const a = await import('@vtlab/arch');",
      "const mem = new a.MachineMemory(1 << 20);",
      "mem.write64(0x1000, 0x2003, 0); mem.write64(0x2000, 0x3003, 0); mem.write64(0x3000, 0x4003, 0); mem.write64(0x4008, 0x5003, 0);",
      "const r = a.walk(0x1000, 0x1234, a.Access.Write, a.pagingMode(), new a.PhysicalPagingStructures(mem));",
      "console.log(JSON.stringify({ url, keys: Object.keys(a).sort(), kind: r.kind, pa: r.physicalAddress, refs: r.references }));",
    ].join("\n");
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { cwd: integrationDir, encoding: "utf8" });
    const got = JSON.parse(out) as { url: string; keys: string[]; kind: string; pa: number; refs: number };
    expect(got.url).toMatch(/packages\/arch\/dist\/index\.js$/);
    expect(got.keys).toEqual(Object.keys(archFromSource).sort());
    expect(got).toMatchObject({ kind: "translation", pa: 0x5234, refs: 4 });
  });

  it("type-checks a consumer against the published declarations (no source condition)", () => {
    const tsc = bin("tsc");
    expect(() => execFileSync(tsc, ["-p", join(integrationDir, "fixtures/consumer/tsconfig.json")], { cwd: integrationDir, stdio: "pipe" })).not.toThrow();
  });

  it("publishes the built entry, its types and the README, and nothing of src/ or test/", () => {
    const out = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: archDir, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    const [pack] = JSON.parse(out) as [{ name: string; files: { path: string }[] }];
    const files = pack.files.map((f) => f.path);
    expect(pack.name).toBe("@vtlab/arch");
    expect(files).toEqual(expect.arrayContaining(["dist/index.js", "dist/index.d.ts", "README.md", "package.json"]));
    expect(files.filter((f) => f.startsWith("src/") || f.startsWith("test/") || f.startsWith("bench/"))).toEqual([]);
    const manifest = JSON.parse(readFileSync(join(archDir, "package.json"), "utf8")) as Record<string, unknown>;
    expect(manifest).toMatchObject({ sideEffects: false, types: "./dist/index.d.ts", type: "module" });
  });
});

describe("@vtlab/hypervisor as built", () => {
  it("has every hypercall family in the table of its dist/ (the built entry, not the sources)", () => {
    const script = [
      "const url = import.meta.resolve('@vtlab/hypervisor');",
      "const h = await import('@vtlab/hypervisor');",
      "const names = [12, 15, 17, 18, 20, 24, 29, 32, 34].map((n) => h.hypercallName(n) ?? null);",
      "console.log(JSON.stringify({ url, names }));",
    ].join("\n");
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { cwd: integrationDir, encoding: "utf8" });
    const got = JSON.parse(out) as { url: string; names: (string | null)[] };
    expect(got.url).toMatch(/packages\/hypervisor\/dist\/index\.js$/);
    // memory_op, set_timer_op, xen_version, console_io, grant_table_op, vcpu_op, sched_op, event_channel_op, hvm_op (xen.h numbers)
    expect(got.names).toEqual(["memory_op", "set_timer_op", "xen_version", "console_io", "grant_table_op", "vcpu_op", "sched_op", "event_channel_op", "hvm_op"]);
  });
});
