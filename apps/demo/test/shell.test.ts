/**
 * `vtlab shell`: xl-like sessions (create, list, pause, unpause, destroy, run, stats, console)
 * from a script file or from stdin, errors that name the line and go on, and on_crash applied.
 */
import { mkdtempSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { guestImageUrl, referenceKernelExpectedOutputUrl } from "@vtlab/guests";
import { main, type Io } from "@vtlab/demo";
import { crashingKernel } from "./crashing-kernel.js";

const machines = fileURLToPath(new URL("../machines/", import.meta.url));
const kernel = fileURLToPath(new URL("../../../packages/guests/images/kernel.elf", import.meta.url));

/** Run `vtlab shell <script>` with the script's lines; the script is written to a fresh directory. */
function session(lines: string[], dir = mkdtempSync(join(tmpdir(), "vtlab-shell-"))) {
  const script = join(dir, "session.vtl");
  writeFileSync(script, `${lines.join("\n")}\n`);
  let out = "";
  let err = "";
  const status = main(["shell", script], { out: (t) => (out += t), err: (t) => (err += t) });
  if (typeof status !== "number") throw new Error("a script session is synchronous");
  // Progress lines ("[vtlab] 1.0 s: ...") come about once a second of wall time: left out.
  err = err.split("\n").filter((l) => !l.startsWith("[vtlab] ")).join("\n");
  return { status, out, err, script };
}

/** The "instructions" of each `stats <dom> --json` in the output, in order. */
const instructionCounts = (out: string) => [...out.matchAll(/^ {2}"instructions": (\d+),$/gm)].map((m) => Number(m[1]));

describe("vtlab shell", () => {
  it("creates two machines, lists them, pauses one (it retires nothing while paused), unpauses, destroys", () => {
    const dir = mkdtempSync(join(tmpdir(), "vtlab-shell-"));
    // A config beside the script, with a relative path: taken from the script's directory.
    writeFileSync(join(dir, "compute.cfg"), readFileSync(join(machines, "compute.cfg"), "utf8").replace(/^kernel = .*$/m, `kernel = "${kernel}"`));
    const r = session(
      [
        "# two machines in one host",
        "create compute.cfg",
        `create "${join(machines, "ptemod.cfg")}"   # a comment after a command`,
        "",
        "list",
        "run 400_000",
        "pause compute",
        "list",
        "stats compute --json",
        "run 300000",
        "stats compute --json",
        "stats 2 --json",
        "unpause 1",
        "run 300000",
        "stats compute --json",
        "destroy ptemod",
        "list",
        "console compute",
        "quit",
        "create this-line-is-never-read.cfg",
      ],
      dir,
    );
    expect(r.err).toBe("");
    expect(r.status).toBe(0);
    expect(r.out).toContain(`created compute (id 1): 128 MiB, 1 vCPU(s), EPT, on_crash "destroy"\n`);
    expect(r.out).toContain(`created ptemod (id 2): 128 MiB, 1 vCPU(s), EPT, on_crash "destroy"\n`);
    // xl list's header and columns; State in xl's letters.
    const lists = r.out.split("Name                                        ID   Mem VCPUs\tState\tTime(s)\n").slice(1);
    expect(lists).toHaveLength(3);
    expect(lists[0]).toMatch(/^compute {38}1 {3}128 {5}1 {5}r----- {4}0\.000000\nptemod {39}2 {3}128 {5}1 {5}r----- {4}0\.000000\n/);
    expect(lists[1]).toMatch(/^compute\s+1\s+128\s+1\s+--p---\s+0\.\d{6}\nptemod\s+2\s+128\s+1\s+r-----\s+0\.\d{6}\n/);
    expect(lists[2]).toMatch(/^compute\s+1\s+128\s+1\s+r-----\s+0\.\d{6}\n(?!ptemod)/);
    // Both consoles streamed, prefixed with the name.
    expect(r.out).toContain("compute| vtlab reference kernel: workload=compute\n");
    expect(r.out).toContain("ptemod| vtlab reference kernel: workload=ptemod\n");
    const [paused, stillPaused, ptemod, resumed] = instructionCounts(r.out) as [number, number, number, number];
    expect(paused).toBeGreaterThan(0);
    expect(stillPaused).toBe(paused); // no instruction retired while paused
    expect(ptemod).toBeGreaterThan(150_000); // the other one ran (its exits and device accesses are charged to its slices too)
    expect(resumed).toBeGreaterThan(paused);
    expect(r.out).toContain("paused compute (id 1)\n");
    expect(r.out).toContain("unpaused compute (id 1)\n");
    expect(r.out).toContain("destroyed ptemod (id 2)\n");
    expect(r.out).toMatch(/ran [\d,]+ instructions \(instruction budget spent\); host time 0\.\d{6} modelled s\n/);
    // `console` prints the console so far, without the prefix.
    expect(r.out).toMatch(/\nvtlab reference kernel: workload=compute\n/);
    expect(r.out).not.toContain("this-line-is-never-read");
  }, 60_000);

  it("errors name the script line, the command and the argument; the session goes on and exits 1", () => {
    const dir = mkdtempSync(join(tmpdir(), "vtlab-shell-"));
    writeFileSync(join(dir, "bad.cfg"), `name = "x"\nmemory = "lots"\nkernel = "k.elf"\n`);
    writeFileSync(join(dir, "nokernel.cfg"), `name = "x"\nmemory = 16\nkernel = "missing.elf"\n`);
    writeFileSync(join(dir, "ok.cfg"), `name = "ok"\nmemory = 16\nkernel = "${kernel}"\n`);
    const r = session(
      [
        "bogus 1 2",
        "create",
        "create bad.cfg",
        "create nokernel.cfg",
        "create none.cfg",
        "pause nobody",
        "create ok.cfg",
        "create ok.cfg",
        "unpause ok",
        "run 12x",
        "run 10 20",
        "list extra",
        "stats",
        "stats ok --yaml",
        "console 99",
        "destroy 7",
        'create "unterminated',
        "list",
      ],
      dir,
    );
    const e = r.err.split("\n").filter((l) => l !== "");
    const at = (line: number, command: string) => `vtlab shell: ${r.script}:${line}: ${command}: `;
    expect(e).toEqual([
      `${at(1, "bogus")}unknown command (try "help")`,
      `${at(2, "create")}missing <file.cfg>`,
      `${at(3, "create")}${join(dir, "bad.cfg")}:2: key "memory": expected an integer number of MiB, got "lots"`,
      expect.stringMatching(new RegExp(`^${escape(at(4, "create"))}.*nokernel\\.cfg: kernel "missing\\.elf": cannot read`)),
      expect.stringMatching(new RegExp(`^${escape(at(5, "create"))}.*none\\.cfg: cannot read the config file`)),
      `${at(6, "pause")}no domain "nobody"`,
      `${at(8, "create")}${join(dir, "ok.cfg")}: a domain named "ok" exists`,
      `${at(9, "unpause")}domain ok (id 1) is running, not paused`,
      `${at(10, "run")}"12x" is not a positive number of instructions or "until-idle"`,
      `${at(11, "run")}unexpected argument "20"`,
      `${at(12, "list")}unexpected argument "extra"`,
      `${at(13, "stats")}missing <domain>`,
      `${at(14, "stats")}unknown option --yaml`,
      `${at(15, "console")}no domain "99"`,
      `${at(16, "destroy")}no domain "7"`,
      `vtlab shell: ${r.script}:17: unterminated double quote`,
    ]);
    expect(r.status).toBe(1);
    // The good lines still ran: ok was created once and listed at the end.
    expect(r.out.match(/created ok/g)).toHaveLength(1);
    expect(r.out).toMatch(/ID {3}Mem VCPUs\tState\tTime\(s\)\nok\s+1\s+16\s+1\s+r-----/);
  });

  it('on_crash in a session: "preserve" lists it crashed, "restart" restarts until refused, "destroy" unlists it; stats still answer', () => {
    const dir = mkdtempSync(join(tmpdir(), "vtlab-shell-"));
    const crash = crashingKernel(dir);
    for (const action of ["preserve", "restart", "destroy"]) {
      writeFileSync(join(dir, `${action}.cfg`), `name = "c-${action}"\nmemory = 16\nkernel = "${crash}"\non_crash = "${action}"\n`);
    }
    writeFileSync(join(dir, "ok.cfg"), `name = "ok"\nmemory = 64\nkernel = "${fileURLToPath(guestImageUrl("sort"))}"\n`);
    const r = session(["create ok.cfg", "create preserve.cfg", "create restart.cfg", "create destroy.cfg", "run until-idle", "list", "stats c-destroy --json", "stats c-restart", "console c-preserve", "destroy c-preserve", "list"], dir);
    expect(r.err).toBe("");
    expect(r.status).toBe(0);
    expect(r.out).toContain('c-preserve (id 2) crashed: triple fault; on_crash "preserve": preserved (listed as crashed, holding its memory)\n');
    expect(r.out).toContain('c-destroy (id 4) crashed: triple fault; on_crash "destroy": destroyed\n');
    expect(r.out).toContain('c-restart (id 3) crashed: triple fault; on_crash "restart": restarted as id 5 (restart 1)\n');
    expect(r.out).toMatch(/c-restart \(id \d+\) crashed: triple fault; on_crash "restart": restarted as id \d+ \(restart 3\)\n/);
    expect(r.out).toMatch(/c-restart \(id \d+\) crashed: triple fault; on_crash "restart": not restarted \(restarting too fast: 4 crashes in a row within 60 modelled s of \(re\)start \(MINIMUM_RESTART_TIME\); refusing to restart to avoid loops\); destroyed\n/);
    expect(r.out.match(/^c-restart\| X$/gm)).toHaveLength(4); // four boots
    const lists = r.out.split("Name                                        ID   Mem VCPUs\tState\tTime(s)\n").slice(1);
    expect(lists[0]).toMatch(/^ok\s+1\s+64\s+1\s+---s--\s+\d\.\d{6}\nc-preserve\s+2\s+16\s+1\s+---sc-\s+\d\.\d{6}\n(?!c-)/);
    expect(lists[1]).toMatch(/^ok\s+1\s+64\s+1\s+---s--\s+\d\.\d{6}\n$/);
    expect(r.out).toMatch(/"state": "destroyed",\n {2}"exitCode": null,\n {2}"crashReason": "triple fault"/);
    expect(r.out).toMatch(/domid \d+, state destroyed, restarts 3\n/);
    expect(r.out).toContain("\nX\ndestroyed c-preserve (id 2)\n");
  }, 60_000);

  it("reads stdin when no script is given: a prompt on a terminal, errors do not stop it, quit ends it", async () => {
    async function* lines() {
      yield "help";
      yield "frobnicate";
      yield "list";
      yield "quit";
      yield "list";
    }
    let out = "";
    let err = "";
    const io: Io = { out: (t) => (out += t), err: (t) => (err += t), stdin: lines(), interactive: true };
    const status = main(["shell"], io);
    expect(typeof status).not.toBe("number");
    expect(await status).toBe(1);
    expect(err).toBe('vtlab shell: <stdin>:2: frobnicate: unknown command (try "help")\n');
    expect(out).toContain("create <file.cfg>");
    expect(out.match(/State\tTime\(s\)/g)).toHaveLength(1);
    expect(out.match(/vtlab> /g)).toHaveLength(4);
  });

  it("the sample session in machines/ runs and exits 0", () => {
    let out = "";
    let err = "";
    const status = main(["shell", join(machines, "lifecycle.vtl")], { out: (t) => (out += t), err: (t) => (err += t) });
    expect(err.split("\n").filter((l) => l !== "" && !l.startsWith("[vtlab] "))).toEqual([]);
    expect(status).toBe(0);
    expect(out).toMatch(/^compute\s+1\s+128\s+1\s+--p---/m);
    expect(out).toContain("destroyed compute (id 1)\n");
    expect(out).toMatch(/\nptemod\s+2\s+128\s+1\s+r-----\s+0\.\d{6}\nvtlab reference kernel: workload=ptemod\n/);
  }, 60_000);

  it("a domain gets the disk its config names (a file-backed image, written in place)", () => {
    const dir = mkdtempSync(join(tmpdir(), "vtlab-shell-"));
    const img = join(dir, "disk.img");
    writeFileSync(img, "");
    truncateSync(img, 8 * 1024 * 1024);
    writeFileSync(join(dir, "disk.cfg"), `name = "disk"\nmemory = 64\nkernel = "${kernel}"\ncmdline = "workload=disk"\ndisk = ["format=raw, vdev=hda, access=rw, target=disk.img"]\n`);
    const r = session(["create disk.cfg", "run", "stats disk --json"], dir);
    expect(r.err).toBe("");
    expect(r.status).toBe(0);
    for (const line of readFileSync(referenceKernelExpectedOutputUrl("disk"), "utf8").trimEnd().split("\n")) expect(r.out).toContain(`disk| ${line}\n`);
    expect(r.out).toMatch(/"exitCode": 0,/);
    expect(readFileSync(img).subarray(0, 2 * 1024 * 1024).some((b) => b !== 0)).toBe(true);
  }, 60_000);

  it("usage errors: one script at most, a script that cannot be read, no stdin", () => {
    const run = (...argv: string[]) => {
      let err = "";
      const status = main(argv, { out: () => undefined, err: (t) => (err += t) });
      return { status, err };
    };
    expect(run("shell", "a.vtl", "b.vtl")).toEqual({ status: 2, err: expect.stringContaining('unexpected argument "b.vtl"') });
    expect(run("shell", "--fast")).toEqual({ status: 2, err: expect.stringContaining("unknown option --fast") });
    expect(run("shell", "/nonexistent/session.vtl")).toEqual({ status: 2, err: expect.stringContaining("/nonexistent/session.vtl: cannot read the script") });
    expect(run("shell")).toEqual({ status: 2, err: "vtlab shell: no standard input to read commands from\n" });
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
