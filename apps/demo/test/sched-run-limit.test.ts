/**
 * The run limit holds whatever a guest does (issue 18): `sti; hlt` with an APIC timer that can
 * never be taken ends the run as blocked for good, in `vtlab shell`'s `run N` and in `vtlab run`;
 * a #UD loop (no instruction ever retires) and a REP MOVSB with a huge count end at
 * `--max-instructions`. The hostile guests are packages/guests/c/hostile/sched-*.c.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { hostileGuestUrl } from "@vtlab/guests";
import { main } from "@vtlab/demo";

/** A config for hostile guest `name` in a fresh directory; returns its path. */
function config(name: string, cmdline = "", serial = "none"): string {
  const dir = mkdtempSync(join(tmpdir(), "vtlab-sched-"));
  const file = join(dir, `${name}.cfg`);
  writeFileSync(
    file,
    [`name = "${name}"`, "memory = 32", "vcpus = 1", 'builder = "hvm"', "hap = 1", `kernel = "${fileURLToPath(hostileGuestUrl(name))}"`, `cmdline = "${cmdline}"`, `serial = "${serial}"`, 'on_crash = "destroy"', ""].join("\n"),
  );
  return file;
}

function cli(args: string[]) {
  let out = "";
  let err = "";
  const status = main(args, { out: (t) => (out += t), err: (t) => (err += t) });
  if (typeof status !== "number") throw new Error("vtlab run is synchronous");
  return { status, out, err: err.split("\n").filter((l) => !l.startsWith("[vtlab] ")).join("\n") };
}

describe("the run limit", () => {
  for (const mode of ["mode=masked", "mode=tpr"]) {
    it(`vtlab shell: run 100000 with sti; hlt and an APIC timer that can never be taken (${mode}) returns, blocked for good`, () => {
      const dir = mkdtempSync(join(tmpdir(), "vtlab-sched-shell-"));
      const script = join(dir, "session.vtl");
      writeFileSync(script, [`create "${config("sched-hlt", mode)}"`, "run 100000", "run 100000", "list", ""].join("\n"));
      const r = cli(["shell", script]);
      expect(r.err).toBe("");
      const ran = [...r.out.matchAll(/^ran [\d,]+ instructions \((.*)\); host time/gm)].map((m) => m[1]);
      expect(ran).toEqual(["every domain left is blocked with no deliverable event (sched-hlt)", "every domain left is blocked with no deliverable event (sched-hlt)"]);
      expect(r.out).toMatch(/^sched-hlt +\d+ +32 +1 +-b/m);
    });
  }

  it("vtlab run: the blocked-for-good machine ends the run by itself (no --max-instructions needed)", () => {
    const r = cli(["run", config("sched-hlt", "mode=masked")]);
    expect(r.err).toMatch(/^run ended: every domain left is blocked with no deliverable event \(sched-hlt\)$/m);
  });

  for (const [name, cmdline] of [["sched-ud", ""], ["sched-ud", "timer=1"], ["sched-rep", ""]] as const) {
    it(`vtlab run --max-instructions 3000000: ${name} ${cmdline || "(default)"} ends at the limit`, () => {
      const r = cli(["run", "--json", "--max-instructions", "3000000", config(name, cmdline)]);
      expect(r.err).toMatch(/^run ended: instruction budget spent$/m);
      const [report] = JSON.parse(r.out) as { state: string; instructions: number }[];
      expect(report!.state).toBe("running");
      // Iterations count as instructions (a REP); a #UD loop retires almost nothing.
      expect(report!.instructions).toBeLessThanOrEqual(3_000_000);
    });
  }
});
