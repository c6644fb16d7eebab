/**
 * `vtlab shell`'s xenstore commands (xenstore-ls, xenstore-read, xenstore-write) over the
 * toolstack's xenstored: the entries written at domain build, values escaped as xenstore-ls
 * does, errors naming the line.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { main } from "@vtlab/demo";
import { sanitiseValue, unsanitiseValue } from "../src/shell.js";

const machines = fileURLToPath(new URL("../machines/", import.meta.url));
const kernel = fileURLToPath(new URL("../../../packages/guests/images/kernel.elf", import.meta.url));

function session(lines: string[]) {
  const dir = mkdtempSync(join(tmpdir(), "vtlab-shell-xs-"));
  writeFileSync(join(dir, "compute.cfg"), readFileSync(join(machines, "compute.cfg"), "utf8").replace(/^kernel = .*$/m, `kernel = "${kernel}"`));
  const script = join(dir, "session.vtl");
  writeFileSync(script, `${lines.join("\n")}\n`);
  let out = "";
  let err = "";
  const status = main(["shell", script], { out: (t) => (out += t), err: (t) => (err += t) });
  if (typeof status !== "number") throw new Error("a script session is synchronous");
  err = err.split("\n").filter((l) => !l.startsWith("[vtlab] ")).join("\n");
  return { status, out, err, script };
}

describe("vtlab shell: xenstore commands", () => {
  it("xenstore-read, xenstore-write and xenstore-ls show the domain's entries", () => {
    const r = session([
      "create compute.cfg",
      "xenstore-read /local/domain/1/name /local/domain/1/domid",
      `xenstore-write /local/domain/1/data/greeting "hello\\tworld" /local/domain/1/data/n 42`,
      "xenstore-read /local/domain/1/data/greeting",
      "xenstore-ls /local/domain/1/data",
      "xenstore-ls /local/domain/1",
    ]);
    expect(r.err).toBe("");
    expect(r.status).toBe(0);
    expect(r.out).toContain("compute\n1\n");
    expect(r.out).toContain("hello\\tworld\n");
    expect(r.out).toContain(`greeting = "hello\\tworld"\nn = "42"\n`);
    // Nested entries indented one space per level, as xenstore-ls.
    expect(r.out).toMatch(/^store = ""\n port = "\d+"\n ring-ref = "\d+"$/m);
    expect(r.out).toMatch(/^control = ""\n shutdown = ""$/m);
  });

  it("the whole tree from / starts with local and dom0's entries", () => {
    const r = session(["xenstore-ls"]);
    expect(r.status).toBe(0);
    expect(r.out).toBe(`local = ""\n domain = ""\n  0 = ""\n   name = "Domain-0"\n   domid = "0"\n`);
  });

  it("errors name the line and the path; the session goes on", () => {
    const r = session(["xenstore-read /nothing/here", "xenstore-write /a", "xenstore-ls /missing", "xenstore-write /bad//path x", "xenstore-read", "xenstore-read /local/domain/0/name"]);
    expect(r.status).toBe(1);
    expect(r.err).toContain(":1: xenstore-read: couldn't read path /nothing/here");
    expect(r.err).toContain(":2: xenstore-write: expected <path> <value> pairs");
    expect(r.err).toContain(":3: xenstore-ls: could not list path /missing");
    expect(r.err).toContain(":4: xenstore-write: could not write path /bad//path");
    expect(r.err).toContain(":5: xenstore-read: missing <path>");
    expect(r.out).toContain("Domain-0\n");
  });

  it("console-input types into the domain's PV console ring", () => {
    const r = session(["create compute.cfg", `console-input compute "ls\\n"`, "console-input nobody x", "console-input compute"]);
    expect(r.out).toContain("sent 3 of 3 bytes to compute's console\n");
    expect(r.err).toContain(':3: console-input: no domain "nobody"');
    expect(r.err).toContain(":4: console-input: missing <text>");
  });

  it("sanitise_value and unsanitise_value round-trip every byte", () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(unsanitiseValue(sanitiseValue(all))).toEqual(all);
    expect(sanitiseValue(Uint8Array.of(0x41, 0x5c, 0x0a, 0x01, 0x1b, 0xff))).toBe("A\\\\\\n\\001\\x1b\\xff");
  });
});
