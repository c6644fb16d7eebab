// Sums the vitest JSON reports that every workspace's test run leaves in test-results.json and
// prints one closing line, "tests: N passed, N failed", so CI can read the count whatever the
// runner. Exits non-zero if any test failed or if no test ran at all.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const groups = ["packages", "apps", "tests", "tools"];
let passed = 0;
let failed = 0;
let skipped = 0;
const lines = [];
for (const group of groups) {
  if (!existsSync(group)) continue;
  for (const dir of readdirSync(group)) {
    const file = join(group, dir, "test-results.json");
    if (!existsSync(file)) continue;
    const r = JSON.parse(readFileSync(file, "utf8"));
    passed += r.numPassedTests;
    failed += r.numFailedTests;
    skipped += r.numPendingTests + (r.numTodoTests ?? 0);
    lines.push(`  ${join(group, dir)}: ${r.numPassedTests} passed, ${r.numFailedTests} failed`);
  }
}
console.log(lines.join("\n"));
console.log(`tests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
