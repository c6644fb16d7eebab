import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

/**
 * Shared vitest settings: workspace packages resolve to their TypeScript sources through the
 * `@vtlab/source` export condition, so tests never need a build of their dependencies. Each
 * run also writes test-results.json, which scripts/test-summary.mjs adds up for the closing line.
 */
export default defineConfig({
  resolve: { conditions: ["@vtlab/source", "import", "module", "default"] },
  ssr: { resolve: { conditions: ["@vtlab/source", "import", "module", "default"] } },
  test: {
    include: ["test/**/*.test.ts"],
    // Turns the event loop around every test (see the file): no onTaskUpdate RPC timeout when a
    // file of long synchronous tests runs on a loaded machine.
    setupFiles: [fileURLToPath(new URL("./vitest.setup.ts", import.meta.url))],
    // Child processes (vitest's default pool), stated here because the CI-under-load behaviour
    // above was checked with it: a worker that blocks cannot stall another file's worker.
    pool: "forks",
    // Generous: on a loaded 2-core machine a test that boots a kernel takes several times its
    // unloaded wall time (a 30 s test was seen at 102 s). A hang still ends the run.
    testTimeout: 300_000,
    reporters: ["default", ["json", { outputFile: "test-results.json" }]],
  },
});
