/**
 * `vtlab run` with a guest that floods its console (hostile/bounds-uartloop with console=N):
 * the report keeps a bounded console and counts what it dropped; `serial = "none"` keeps nothing;
 * the streaming sink drops (and counts) lines while its stream's backlog is over
 * CONSOLE_BACKLOG_MAX, instead of letting them wait in memory; a well-behaved machine beside it
 * finishes with its full output.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { guestImageUrl, hostileGuestUrl } from "@vtlab/guests";
import { CONSOLE_CAPTURE_DEFAULT } from "@vtlab/hypervisor";
import { CONSOLE_BACKLOG_MAX, ConsoleStream, main } from "@vtlab/demo";

const dir = mkdtempSync(join(tmpdir(), "vtlab-console-bounds-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cfg(name: string, kernel: string, serial: string, extra = ""): string {
  const file = join(dir, `${name}.cfg`);
  writeFileSync(file, `name = "${name}"\nmemory = 32\nhap = 1\nkernel = "${kernel}"\nserial = "${serial}"\n${extra}`);
  return file;
}
const flood = fileURLToPath(hostileGuestUrl("bounds-uartloop"));
const format = fileURLToPath(guestImageUrl("format"));

interface Report { name: string; state: string; exitCode: number | null; console: string; consoleBytes: number; consoleDropped: number }

describe("console floods under vtlab run", () => {
  it("a 2.25 MiB flood: the report keeps the last 1 MiB and counts the rest; the neighbour's console is whole", { timeout: 300_000 }, () => {
    let out = "";
    const files = [cfg("flood", flood, "pty", 'cmdline = "rounds=1 kib=768 console=3"\n'), cfg("good", format, "pty")];
    const status = main(["run", "--json", ...files], { out: (t) => (out += t), err: () => undefined });
    expect(status).toBe(0);
    const [bad, good] = JSON.parse(out) as Report[];
    expect(bad!.consoleBytes).toBeGreaterThan(3 * 768 * 1024);
    expect(bad!.console.length).toBeLessThanOrEqual(CONSOLE_CAPTURE_DEFAULT + 256);
    expect(bad!.console.length + bad!.consoleDropped).toBe(bad!.consoleBytes);
    expect(good!.consoleDropped).toBe(0);
    expect(good!.console).toMatch(/PASS format/);
  });

  it('serial = "none": nothing kept, everything counted', { timeout: 300_000 }, () => {
    let out = "";
    const status = main(["run", "--json", cfg("quiet", flood, "none", 'cmdline = "rounds=1 kib=256 console=2"\n')], { out: (t) => (out += t), err: () => undefined });
    expect(status).toBe(0);
    const [r] = JSON.parse(out) as Report[];
    expect(r!.console).toBe("");
    expect(r!.consoleDropped).toBe(r!.consoleBytes);
    expect(r!.consoleBytes).toBeGreaterThan(2 * 256 * 1024);
  });

  it("a stream that backs up: console lines beyond CONSOLE_BACKLOG_MAX are dropped and counted, and stderr says so", { timeout: 300_000 }, () => {
    let console = 0;
    let err = "";
    let waiting = 0; // a reader that never reads: everything written waits
    const status = main(["run", cfg("backed", flood, "pty", 'cmdline = "rounds=1 kib=256 console=8"\n')], {
      out: (t) => {
        if (t.startsWith("backed| ")) console += t.length;
        waiting += t.length;
      },
      err: (t) => (err += t),
      backlog: () => waiting,
    });
    expect(status).toBe(0);
    expect(console).toBeLessThanOrEqual(CONSOLE_BACKLOG_MAX + 512);
    expect(err).toMatch(/vtlab: \d+ console bytes dropped: the output stream was not read fast enough/);
  });

  it("ConsoleStream without a backlog never drops", () => {
    const lines: string[] = [];
    const s = new ConsoleStream((t) => lines.push(t), undefined, 4);
    for (let k = 0; k < 10; k++) s.line("0123456789");
    expect(lines).toHaveLength(10);
    expect(s.summary()).toBeUndefined();
  });
});
