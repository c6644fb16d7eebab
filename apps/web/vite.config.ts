import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vite";

/**
 * The page builds from the workspace packages' TypeScript sources (the `@vtlab/source` export
 * condition, as the tests do), so `pnpm --filter @vtlab/web build` needs no build of them. The
 * reference kernel image is imported by URL (`vtlab-kernel.elf?url` in src/main.ts): Vite copies
 * it into dist/assets with a hashed name, and the worker fetches it.
 */
const conditions = ["@vtlab/source", "browser", "import", "module", "default"];

/**
 * @vtlab/cpu-vmx's entry installs the instruction decoder as a side effect (`Cpu.decoder =
 * decode`) while its package.json says `"sideEffects": false`, so Rollup drops the assignment
 * and the worker fails with "no decoder installed". Until that package says otherwise, the
 * page's build keeps that one module's side effects.
 */
function keepCpuVmxEntry(): Plugin {
  return {
    name: "vtlab-keep-cpu-vmx-entry",
    transform(code, id) {
      if (/[\\/]cpu-vmx[\\/](src[\\/]index\.ts|dist[\\/]index\.js)$/.test(id)) return { code, map: null, moduleSideEffects: true };
      return undefined;
    },
  };
}

export default defineConfig({
  plugins: [keepCpuVmxEntry()],
  base: "./",
  resolve: {
    conditions,
    alias: [{ find: /^vtlab-kernel\.elf(?=\?|$)/, replacement: fileURLToPath(new URL("../../packages/guests/images/kernel.elf", import.meta.url)) }],
  },
  worker: { format: "es", plugins: () => [keepCpuVmxEntry()] },
  build: { target: "es2022", outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 4096 },
  server: { host: "127.0.0.1" },
  preview: { host: "127.0.0.1" },
});
