// Helpers of packaging.test.ts: asynchronous child processes (the vitest worker stays
// responsive) and README example extraction.
import { spawn } from "node:child_process";

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command without a shell; resolves with its exit code and output (never rejects on a non-zero exit). */
export function run(command: string, args: readonly string[], cwd: string, timeoutMs = 120_000, env: NodeJS.ProcessEnv = process.env): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

/** Runs `tasks` with at most `limit` in flight, results in input order. */
export async function pool<T, R>(items: readonly T[], limit: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await task(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

export interface ReadmeBlock {
  /** 1-based line of the opening fence. */
  readonly line: number;
  readonly info: string;
  readonly code: string;
}

/** Every fenced code block of a Markdown file, with its info string (```ts fragment -> "ts fragment"). */
export function codeBlocks(markdown: string): ReadmeBlock[] {
  const lines = markdown.split("\n");
  const blocks: ReadmeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i] !== "```"; i++) body.push(lines[i]!);
    blocks.push({ line: start + 1, info: open[1]!.trim(), code: body.join("\n") + "\n" });
  }
  return blocks;
}

/**
 * The README examples that must run as written: ```ts blocks. A block whose info string is
 * `ts fragment` is a piece of a larger program (it names variables it does not declare) and is
 * only shown, not run.
 */
export function runnableExamples(markdown: string): ReadmeBlock[] {
  return codeBlocks(markdown).filter((b) => b.info === "ts");
}

/** The packages of the README's install line (`npm install @vtlab/a @vtlab/b`). */
export function installLine(markdown: string): string[] | undefined {
  const m = /^npm install ((?:@vtlab\/[a-z0-9-]+ ?)+)$/m.exec(markdown);
  return m ? m[1]!.trim().split(/\s+/) : undefined;
}

/** The @vtlab packages a block imports. */
export function importedPackages(code: string): string[] {
  const names = new Set<string>();
  for (const m of code.matchAll(/from "(@vtlab\/[a-z0-9-]+)(?:\/[^"]*)?"/g)) names.add(m[1]!);
  return [...names].sort();
}
