/**
 * `vtlab run machines/xentest.cfg`: the PV-on-HVM self-test guest with its dom0 peer, booted by
 * the toolstack from the config file, exits 0 (SCHEDOP_shutdown(SHUTDOWN_poweroff)), and its
 * console is the committed expected output.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { xentestExpectedOutputUrl } from "@vtlab/guests";
import { main } from "@vtlab/demo";

const cfg = fileURLToPath(new URL("../machines/xentest.cfg", import.meta.url));

describe("vtlab run machines/xentest.cfg", () => {
  it("exits 0 with the self-test's expected console", () => {
    let out = "";
    let err = "";
    const status = main(["run", cfg], { out: (t) => (out += t), err: (t) => (err += t) });
    // Progress lines ("[vtlab] 1.0 s: ...") come about once a second of wall time (a loaded
    // machine takes more than one): left out.
    expect(err.split("\n").filter((l) => !l.startsWith("[vtlab] ")).join("\n")).toBe("");
    expect(status).toBe(0);
    const expected = readFileSync(xentestExpectedOutputUrl(), "utf8");
    for (const line of expected.trimEnd().split("\n")) expect(out).toContain(`xentest| ${line}\n`);
    expect(out).toMatch(/xentest\s+ept\s+exit 0/);
  });

  it("--json reports the machine shut down with exit code 0", () => {
    let out = "";
    const status = main(["run", "--json", cfg], { out: (t) => (out += t), err: () => {} });
    expect(status).toBe(0);
    const reports = JSON.parse(out) as { name: string; state: string; exitCode: number | null }[];
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatchObject({ name: "xentest", state: "shutdown", exitCode: 0 });
  });
});
