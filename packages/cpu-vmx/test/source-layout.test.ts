/**
 * The source layout's one rule (README "Source layout"): dependencies point one way. No module
 * of src/ takes part in a runtime import cycle, and every module other than the package index
 * imports only types from src/cpu.ts (the Cpu class imports the concept modules under src/cpu/,
 * the handlers and the block compilers; they must not import it back). Type-only imports vanish
 * at run time and are allowed everywhere.
 */
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const SRC = fileURLToPath(new URL("../src/", import.meta.url));

/** The relative modules a TypeScript file imports or re-exports at run time (type-only ones left out). */
export function runtimeImports(file: string, text: string): string[] {
  const deps: string[] = [];
  // `import X from "./m.js"`, `import { a, type B } from`, `export { a } from`, `export * from`;
  // a clause is the text between the keyword and `from` (no semicolons inside).
  for (const m of text.matchAll(/^(import|export)\s+(type\s+)?([^;]*?)\s+from\s+"(\.[^"]+)";/gm)) {
    if (m[2] !== undefined) continue; // import type / export type
    const clause = m[3]!;
    const braces = /^\{([\s\S]*)\}$/.exec(clause.trim());
    if (braces !== null) {
      const names = braces[1]!.split(",").map((s) => s.trim()).filter((s) => s !== "");
      if (names.length > 0 && names.every((s) => s.startsWith("type "))) continue; // only `type` names
    }
    deps.push(resolve(dirname(file), m[4]!.replace(/\.js$/, ".ts")));
  }
  for (const m of text.matchAll(/^import\s+"(\.[^"]+)";/gm)) deps.push(resolve(dirname(file), m[1]!.replace(/\.js$/, ".ts")));
  return deps;
}

/** The runtime import cycles of a module graph, each as a path of files relative to `root` (one per back edge found). */
export function importCycles(graph: ReadonlyMap<string, readonly string[]>, root: string): string[] {
  const cycles: string[] = [];
  const state = new Map<string, 1 | 2>(); // 1 on the stack, 2 done
  const stack: string[] = [];
  const visit = (n: string): void => {
    state.set(n, 1);
    stack.push(n);
    for (const d of graph.get(n) ?? []) {
      if (!graph.has(d)) continue;
      if (state.get(d) === 1) cycles.push([...stack.slice(stack.indexOf(d)), d].map((p) => relative(root, p)).join(" -> "));
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(n, 2);
  };
  for (const n of graph.keys()) if (!state.has(n)) visit(n);
  return cycles;
}

function sourceGraph(root: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (path.endsWith(".ts")) graph.set(path, runtimeImports(path, readFileSync(path, "utf8")));
    }
  };
  walk(root);
  return graph;
}

describe("source layout: dependencies point one way", () => {
  const graph = sourceGraph(SRC);

  it("src/ has no runtime import cycle", () => {
    expect(graph.size).toBeGreaterThan(40); // the walk found the sources
    expect(importCycles(graph, SRC)).toEqual([]);
  });

  it("only the package index imports values from src/cpu.ts", () => {
    const cpu = join(SRC, "cpu.ts");
    const importers = [...graph].filter(([, deps]) => deps.includes(cpu)).map(([file]) => relative(SRC, file));
    expect(importers).toEqual(["index.ts"]);
  });

  it("the checks see what they must: value imports, type-only imports, and a cycle", () => {
    const a = join(SRC, "a.ts");
    expect(runtimeImports(a, 'import { type Cpu, wrap64 } from "./cpu.js";\nimport type { X } from "./x.js";\nimport { type Y } from "./y.js";\nexport { z } from "./z.js";\n')).toEqual([
      join(SRC, "cpu.ts"),
      join(SRC, "z.ts"),
    ]);
    const g = new Map([
      [a, [join(SRC, "b.ts")]],
      [join(SRC, "b.ts"), [a]],
    ]);
    expect(importCycles(g, SRC)).toEqual(["a.ts -> b.ts -> a.ts"]);
  });
});
