/**
 * `vtlab run` through the toolstack: each config's on_crash (destroy, preserve, restart) applied
 * beside a machine that finishes, every machine in the report, restarts and the on_crash outcome
 * in the table and the JSON, and the exit status of a run with a crash.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { guestExpectedOutputUrl, guestImageUrl } from "@vtlab/guests";
import { main, type RunReport } from "@vtlab/demo";
import { crashingKernel } from "./crashing-kernel.js";

const ACTIONS = ["destroy", "preserve", "restart"] as const;

/** A good machine (the sort guest) and one crashing machine per on_crash action; the config files, in that order. */
function machines(): string[] {
  const dir = mkdtempSync(join(tmpdir(), "vtlab-run-crash-"));
  const crash = crashingKernel(dir);
  const ok = join(dir, "ok.cfg");
  writeFileSync(ok, `name = "ok"\nmemory = 64\nkernel = "${fileURLToPath(guestImageUrl("sort"))}"\n`);
  return [
    ok,
    ...ACTIONS.map((action) => {
      const cfg = join(dir, `${action}.cfg`);
      writeFileSync(cfg, `name = "c-${action}"\nmemory = 16\nkernel = "${crash}"\non_crash = "${action}"\n`);
      return cfg;
    }),
  ];
}

function vtlab(...argv: string[]) {
  let out = "";
  let err = "";
  const status = main(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  // Progress lines ("[vtlab] 1.0 s: ...") come about once a second of wall time: left out.
  err = err.split("\n").filter((l) => !l.startsWith("[vtlab] ")).join("\n");
  return { status, out, err };
}

const sortOutput = () => readFileSync(guestExpectedOutputUrl("sort"), "utf8").trimEnd().split("\n");

// Domain ids: ok 1, c-destroy 2, c-preserve 3, c-restart 4, then its restarts 5, 6, 7.
const DESTROYED = 'c-destroy (id 2) crashed: triple fault; on_crash "destroy": destroyed';
const PRESERVED = 'c-preserve (id 3) crashed: triple fault; on_crash "preserve": preserved (listed as crashed, holding its memory)';
const RESTARTED = [4, 5, 6].map((id, i) => `c-restart (id ${id}) crashed: triple fault; on_crash "restart": restarted as id ${id + 1} (restart ${i + 1})`);
const REFUSED =
  'c-restart (id 7) crashed: triple fault; on_crash "restart": not restarted (restarting too fast: 4 crashes in a row within 60 modelled s of (re)start (MINIMUM_RESTART_TIME); refusing to restart to avoid loops); destroyed';

describe("vtlab run applies on_crash", () => {
  it("destroy, preserve and restart beside a machine that finishes: consoles, crash lines, the table, exit status 1", () => {
    const r = vtlab("run", ...machines());
    expect(r.err).toBe("");
    expect(r.status).toBe(1);
    // The good machine ran to the end, its console streamed whole.
    for (const line of sortOutput()) expect(r.out).toContain(`ok| ${line}\n`);
    // Each crash reported as it is acted on (after the guest's last words), and again under the table.
    for (const line of [DESTROYED, PRESERVED, ...RESTARTED, REFUSED]) expect(r.out.split(`${line}\n`)).toHaveLength(3);
    expect(r.out).toContain(`c-destroy| X\n${DESTROYED}\n`);
    // restart: built 1 + 3 times, each boot's console streamed.
    expect(r.out.match(/^c-restart\| X$/gm)).toHaveLength(4);
    expect(r.out.match(/^c-(destroy|preserve)\| X$/gm)).toHaveLength(2);
    // One row per file, destroyed machines included: result, instructions ... and last the restarts and on_crash outcome.
    const table = r.out.slice(r.out.indexOf("\nmachine "));
    expect(table).toMatch(/^machine\s+mmu\s+result\s+instructions\s+VM exits.*\s+MIPS\s+restarts\s+on_crash$/m);
    expect(table).toMatch(/^ok\s+ept\s+exit 0\s+[1-9][\d,]*\s.*\s0\s+-$/m);
    expect(table).toMatch(/^c-destroy\s+ept\s+CRASHED\s+[1-9][\d,]*\s.*\s0\s+destroyed$/m);
    expect(table).toMatch(/^c-preserve\s+ept\s+CRASHED\s+[1-9][\d,]*\s.*\s0\s+preserved$/m);
    expect(table).toMatch(/^c-restart\s+ept\s+CRASHED\s+[1-9][\d,]*\s.*\s3\s+restart-refused$/m);
    expect(table).toContain("VM exits by reason");
    expect(table).toMatch(/^reason\s+ok \(ept\)\s+c-destroy \(ept\)\s+c-preserve \(ept\)\s+c-restart \(ept\)$/m);
  }, 60_000);

  it("--json: every machine with domid, restarts, the on_crash outcome and its crashes; crash lines and consoles on stderr", () => {
    const r = vtlab("run", "--json", ...machines());
    expect(r.status).toBe(1);
    // In the order the scheduler met the crashes (c-restart's own in order). The consoles stream
    // to stderr too with --json ("name| text"): they are the console records' text.
    const lines = r.err.split("\n").filter((l) => l !== "");
    const crashLines = lines.filter((l) => !/^[\w-]+\| /.test(l));
    expect(lines).toContain("ok| PASS sort 9c9cbd4bb11763e1");
    expect([...crashLines].sort()).toEqual([DESTROYED, PRESERVED, ...RESTARTED, REFUSED].sort());
    expect(crashLines.filter((l) => l.startsWith("c-restart "))).toEqual([...RESTARTED, REFUSED]);
    const reports = JSON.parse(r.out) as RunReport[];
    expect(reports.map((x) => [x.name, x.state, x.exitCode, x.crashReason, x.domid, x.restarts, x.onCrash, x.crashes.map((c) => c.outcome)])).toEqual([
      ["ok", "shutdown", 0, null, 1, 0, null, []],
      ["c-destroy", "crashed", null, "triple fault", 2, 0, "destroyed", ["destroyed"]],
      ["c-preserve", "crashed", null, "triple fault", 3, 0, "preserved", ["preserved"]],
      ["c-restart", "crashed", null, "triple fault", 7, 3, "restart-refused", ["restarted", "restarted", "restarted", "restart-refused"]],
    ]);
    const [ok, destroyed, preserved, restarted] = reports as [RunReport, RunReport, RunReport, RunReport];
    // The statistics the domain had, also once it was destroyed.
    expect(ok.instructions).toBeGreaterThan(100_000);
    for (const c of [destroyed, preserved, restarted]) {
      expect(c.instructions).toBeGreaterThan(0);
      expect(c.instructions).toBe(destroyed.instructions); // the same few instructions each time
      expect(c.vmExits).toBeGreaterThan(0);
    }
    expect(restarted.crashes[0]).toMatchObject({ name: "c-restart", domid: 4, reason: "triple fault", action: "restart", outcome: "restarted", newDomid: 5, restarts: 1 });
    expect(restarted.crashes.map((c) => c.domid)).toEqual([4, 5, 6, 7]);
  }, 60_000);

  it("with on_crash the exit status is still 0 when nothing crashed", () => {
    const [ok] = machines();
    const r = vtlab("run", "--json", ok!);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject([{ name: "ok", state: "shutdown", exitCode: 0, restarts: 0, onCrash: null, crashes: [] }]);
  }, 60_000);
});
