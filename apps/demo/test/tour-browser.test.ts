/**
 * `@vtlab/demo/tour` in a browser: bundled with esbuild for `platform: "browser"` (the esbuild
 * the workspace has through tsup), the bundle must hold no `node:` import and no Node built-in.
 * Also the pure-TS SHA-256 the isolation scenario uses, against node:crypto (this test runs in
 * Node; the tour itself does not import node:crypto).
 */
import { createHash } from "node:crypto";
import { builtinModules, createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TOUR_SCENARIOS, formatTour, hostPciDevices, runTour } from "@vtlab/demo/tour";
import { Sha256, sha256Hex } from "../src/sha256.js";

const demoDir = fileURLToPath(new URL("..", import.meta.url));

interface EsbuildLike {
  build(options: Record<string, unknown>): Promise<{ outputFiles: { text: string }[]; metafile: { inputs: Record<string, unknown> } }>;
}

async function loadEsbuild(): Promise<EsbuildLike> {
  const require = createRequire(import.meta.url);
  const fromTsup = createRequire(require.resolve("tsup"));
  return (await import(pathToFileURL(fromTsup.resolve("esbuild")).href)) as EsbuildLike;
}

const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

describe("@vtlab/demo/tour is browser-safe", () => {
  it("bundles for the browser with no node: import and no Node built-in", async () => {
    const esbuild = await loadEsbuild();
    const nodeImports: string[] = [];
    const result = await esbuild.build({
      stdin: { contents: 'export * from "@vtlab/demo/tour";', resolveDir: demoDir, loader: "ts" },
      absWorkingDir: demoDir,
      bundle: true,
      write: false,
      metafile: true,
      format: "esm",
      platform: "browser",
      conditions: ["@vtlab/source"],
      logLevel: "silent",
      plugins: [
        {
          name: "record-node-builtins",
          setup(build: { onResolve(o: { filter: RegExp }, cb: (a: { path: string; importer: string }) => { path: string; external: boolean } | undefined): void }) {
            build.onResolve({ filter: /.*/ }, (a) => {
              if (a.path.startsWith("node:") || builtins.has(a.path)) {
                nodeImports.push(`${a.path} (from ${a.importer})`);
                return { path: a.path, external: true };
              }
              return undefined;
            });
          },
        },
      ],
    });
    expect(nodeImports).toEqual([]);
    const inputs = Object.keys(result.metafile.inputs);
    // Paths relative to absWorkingDir: this package's own modules are "src/<name>.ts".
    expect(inputs).toContain("src/tour-core.ts");
    expect(inputs.filter((f) => /^src\/(tour|run|machines|cli|html|shell|bin|index)\.ts$/.test(f))).toEqual([]);
    const text = result.outputFiles[0]!.text;
    expect(text).not.toMatch(/from\s*["']node:|require\(\s*["']node:|import\(\s*["']node:/);
  });

  it("exports the tour and the host's devices", () => {
    expect(TOUR_SCENARIOS).toContain("iommu");
    expect(typeof formatTour).toBe("function");
    expect(hostPciDevices()).toHaveLength(2);
  });

  it("runTour refuses a missing kernel (a caller's mistake)", () => {
    expect(() => runTour({ kernel: undefined as unknown as Uint8Array, scenarios: ["linux-boot"] })).toThrow(/options\.kernel/);
  });
});

describe("sha256.ts", () => {
  it("FIPS 180-4 examples: \"abc\" and the empty message", () => {
    expect(sha256Hex(new TextEncoder().encode("abc"))).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(sha256Hex()).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  });

  it("equals node:crypto's sha256 for any split of any message", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 6 }), (parts) => {
        const want = createHash("sha256");
        const got = new Sha256();
        for (const p of parts) {
          want.update(p);
          got.update(p);
        }
        expect(got.digestHex()).toBe(want.digest("hex"));
      }),
    );
  });
});
