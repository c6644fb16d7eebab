import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import * as archFromSource from "@vtlab/arch";
import { GUEST_IMAGES } from "@vtlab/guests";
import { importedPackages, installLine, pool, run, runnableExamples } from "./packed.js";

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

// Every public package packed with pnpm (which applies publishConfig and rewrites workspace:
// ranges), installed from the tarballs alone into a scratch project outside the workspace, and
// every README example run there as written. Needs `pnpm build` first (`pnpm test` builds).
const packagesDir = join(root, "packages");
const pnpm = ["-y", "pnpm@9.15.9"];
interface Manifest {
  name: string;
  private?: boolean;
  exports?: Record<string, unknown>;
  main?: string;
  types?: string;
  license?: string;
  engines?: Record<string, string>;
  repository?: unknown;
  homepage?: string;
  bugs?: unknown;
  dependencies?: Record<string, string>;
}
interface Packed {
  dir: string;
  name: string;
  tarball: string;
  files: string[];
  manifest: Manifest;
}
const publicDirs = readdirSync(packagesDir)
  .filter((d) => existsSync(join(packagesDir, d, "package.json")))
  .filter((d) => !(JSON.parse(readFileSync(join(packagesDir, d, "package.json"), "utf8")) as Manifest).private)
  .sort();

function exportTargets(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (value && typeof value === "object") return Object.values(value).flatMap(exportTargets);
  return [];
}

describe("every public package, packed and installed outside the workspace", () => {
  let scratch = "";
  const packed: Packed[] = [];
  let install: { code: number | null; stderr: string } = { code: null, stderr: "" };

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), "vtlab-packed-"));
    const tarballs = join(scratch, "tarballs");
    mkdirSync(tarballs);
    for (const d of publicDirs) {
      expect(existsSync(join(packagesDir, d, "dist/index.js")), `packages/${d}/dist: run pnpm build first`).toBe(true);
    }
    // pnpm pack runs one at a time per package (two in flight: the machine has two cores).
    await pool(publicDirs, 2, async (d) => {
      const r = await run("npx", [...pnpm, "pack", "--pack-destination", tarballs], join(packagesDir, d));
      expect(r.code, r.stderr).toBe(0);
    });
    for (const d of publicDirs) {
      const name = (JSON.parse(readFileSync(join(packagesDir, d, "package.json"), "utf8")) as Manifest).name;
      const tarball = join(tarballs, `${name.replace("@", "").replace("/", "-")}-0.0.0.tgz`);
      const list = await run("tar", ["tzf", tarball], scratch);
      const files = list.stdout.split("\n").filter((f) => f !== "").map((f) => f.replace(/^package\//, ""));
      const manifestText = (await run("tar", ["xzf", tarball, "-O", "package/package.json"], scratch)).stdout;
      packed.push({ dir: d, name, tarball, files, manifest: JSON.parse(manifestText) as Manifest });
    }
    writeFileSync(join(scratch, "package.json"), JSON.stringify({ name: "vtlab-scratch", private: true, type: "module" }, null, 2));
    const r = await run("npm", ["install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error", ...packed.map((p) => p.tarball)], scratch);
    install = { code: r.code, stderr: r.stderr };
  }, 170_000);

  afterAll(() => {
    if (scratch !== "") rmSync(scratch, { recursive: true, force: true });
  });

  it("is all twelve packages, none of them empty, in a scratch project outside the workspace", () => {
    expect(publicDirs).toHaveLength(12);
    expect(relative(root, scratch).startsWith("..")).toBe(true);
    for (const p of packed) {
      const keys = Object.keys(JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", `console.log(JSON.stringify(Object.keys(await import(${JSON.stringify(join(packagesDir, p.dir, "dist/index.js"))}))))`], { encoding: "utf8" })) as string[]);
      expect(keys.length, p.name).toBeGreaterThan(0);
    }
  });

  it("publishes manifests with metadata, caret ranges and exports that point only into the tarball, without @vtlab/source", () => {
    for (const p of packed) {
      const text = JSON.stringify(p.manifest);
      expect(text, p.name).not.toContain("@vtlab/source");
      expect(text, p.name).not.toContain("workspace:");
      expect(p.manifest, p.name).toMatchObject({ license: "MIT", engines: { node: ">=20" } });
      expect(p.manifest.repository, p.name).toBeDefined();
      expect(p.manifest.homepage, p.name).toBeDefined();
      expect(p.manifest.bugs, p.name).toBeDefined();
      for (const range of Object.values(p.manifest.dependencies ?? {})) expect(range, p.name).toMatch(/^\^/);
      expect(p.files, p.name).toEqual(expect.arrayContaining(["LICENSE", "README.md", "package.json", "dist/index.js", "dist/index.d.ts"]));
      expect(p.files.filter((f) => f.startsWith("src/") || f.startsWith("test/")), p.name).toEqual([]);
      const targets = [...exportTargets(p.manifest.exports), p.manifest.main, p.manifest.types].filter((t): t is string => t !== undefined);
      for (const t of targets) {
        const file = t.replace(/^\.\//, "");
        if (file.endsWith("*")) expect(p.files.some((f) => f.startsWith(file.slice(0, -1))), `${p.name}: ${t}`).toBe(true);
        else expect(p.files, `${p.name}: ${t}`).toContain(file);
      }
    }
  });

  it("installs from the tarballs alone (no registry)", () => {
    expect(install.code, install.stderr).toBe(0);
    for (const p of packed) expect(existsSync(join(scratch, "node_modules", p.name, "package.json")), p.name).toBe(true);
  });

  it("embeds every guest image and expected output in @vtlab/guests/embedded, byte for byte, and resolves ./images/* in Node", async () => {
    expect(install.code, install.stderr).toBe(0);
    const script = [
      "import { readFileSync } from 'node:fs';",
      "import { guestImageUrl } from '@vtlab/guests';",
      "import * as e from '@vtlab/guests/embedded';",
      "const url = import.meta.resolve('@vtlab/guests/images/sha256.elf');",
      "const same = e.EMBEDDED_FILES.filter((f) => Buffer.compare(Buffer.from(e.embeddedFile(f)), readFileSync(new URL(f, url))) === 0);",
      "const a = e.guestImageBytes('sort'); a[0] = 0;",
      "console.log(JSON.stringify({ files: e.EMBEDDED_FILES, same: same.length, url: url === guestImageUrl('sha256').href,",
      "  fresh: e.guestImageBytes('sort')[0], hostile: ['__proto__', 'constructor', 'toString', '../package.json', ''].map((f) => e.embeddedFile(f) ?? null) }));",
    ].join("\n");
    const r = await run(process.execPath, ["--input-type=module", "-e", script], scratch);
    expect(r.code, r.stderr).toBe(0);
    const got = JSON.parse(r.stdout) as { files: string[]; same: number; url: boolean; fresh: number; hostile: unknown[] };
    const onDisk = readdirSync(join(packagesDir, "guests/images")).filter((f) => f.endsWith(".elf") || f.endsWith(".expected")).sort();
    expect(got.files).toEqual(onDisk);
    expect(got).toMatchObject({ same: onDisk.length, url: true, fresh: 0x7f, hostile: [null, null, null, null, null] });
  });

  it("bundles @vtlab/guests/embedded with esbuild into one file that runs with no node_modules and no images beside it", async () => {
    expect(install.code, install.stderr).toBe(0);
    // esbuild as tsup (a root devDependency) has it: the bundler the issue names, not a new dependency.
    const require = createRequire(import.meta.url);
    const esbuild = (await import(createRequire(realpathSync(require.resolve("tsup"))).resolve("esbuild"))) as {
      build(options: { entryPoints: string[]; bundle: boolean; format: "esm"; platform: "browser"; outfile: string; absWorkingDir: string; logLevel: "silent" }): Promise<unknown>;
    };
    const entry = join(scratch, "bundle-entry.js");
    writeFileSync(entry, [
      "import { guestImageBytes, xentestExpectedOutput } from '@vtlab/guests/embedded';",
      "import { GUEST_IMAGES } from '@vtlab/guests';",
      "console.log(JSON.stringify({ sizes: GUEST_IMAGES.map((n) => guestImageBytes(n).length), xentest: xentestExpectedOutput().length > 0 }));",
    ].join("\n"));
    // Outside the scratch project, so nothing could resolve from its node_modules.
    const lonely = mkdtempSync(join(tmpdir(), "vtlab-bundle-"));
    onTestFinished(() => rmSync(lonely, { recursive: true, force: true }));
    await esbuild.build({ entryPoints: [entry], bundle: true, format: "esm", platform: "browser", outfile: join(lonely, "app.js"), absWorkingDir: scratch, logLevel: "silent" });
    const r = await run(process.execPath, [join(lonely, "app.js")], lonely);
    expect(r.code, r.stderr).toBe(0);
    const got = JSON.parse(r.stdout) as { sizes: number[]; xentest: boolean };
    const images = join(packagesDir, "guests/images");
    expect(got.sizes).toEqual(GUEST_IMAGES.map((name) => readFileSync(join(images, `${name}.elf`)).length));
    expect(got.xentest).toBe(true);
  });

  it("has an install line and ESM only in every README, and runnable examples that import only what it installs", () => {
    for (const d of publicDirs) {
      const readme = readFileSync(join(packagesDir, d, "README.md"), "utf8");
      const name = packed.find((p) => p.dir === d)!.name;
      const line = installLine(readme);
      expect(line, `${d}/README.md install line`).toBeDefined();
      expect(line, d).toContain(name);
      expect(readme, d).toMatch(/ESM only/);
      const examples = runnableExamples(readme);
      expect(examples.length, `${d}/README.md runnable examples`).toBeGreaterThan(0);
      for (const b of examples) for (const imported of importedPackages(b.code)) expect(line, `${d}/README.md:${b.line} imports ${imported}`).toContain(imported);
    }
  });

  it("runs and type-checks every README example as written from the installed packages", async () => {
    expect(install.code, install.stderr).toBe(0);
    const examplesDir = join(scratch, "examples");
    mkdirSync(examplesDir);
    const examples: { file: string; where: string }[] = [];
    for (const d of publicDirs) {
      for (const b of runnableExamples(readFileSync(join(packagesDir, d, "README.md"), "utf8"))) {
        const file = join(examplesDir, `${d}-${b.line}.ts`);
        writeFileSync(file, b.code);
        examples.push({ file, where: `packages/${d}/README.md:${b.line}` });
      }
    }
    writeFileSync(join(scratch, "tsconfig.json"), JSON.stringify({
      compilerOptions: {
        strict: true, noEmit: true, target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", lib: ["ES2022", "DOM"],
        // A consumer's usual strict settings; @types/node from the workspace (the scratch project installs only the tarballs).
        types: ["node"], typeRoots: [join(root, "node_modules/@types")], skipLibCheck: true,
      },
      include: ["examples"],
    }));
    const tsc = run(bin("tsc"), ["-p", join(scratch, "tsconfig.json")], scratch, 120_000);
    const results = await pool(examples, 2, (e) => run(bin("tsx"), [e.file], scratch, 60_000));
    const failed = examples.flatMap((e, i) => (results[i]!.code === 0 ? [] : [`${e.where} (exit ${results[i]!.code}):\n${results[i]!.stderr}`]));
    expect(failed).toEqual([]);
    const typecheck = await tsc;
    expect(typecheck.code, typecheck.stdout).toBe(0);
  }, 170_000);
});
