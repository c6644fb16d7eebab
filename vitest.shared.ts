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
    testTimeout: 60_000,
    reporters: ["default", ["json", { outputFile: "test-results.json" }]],
  },
});
