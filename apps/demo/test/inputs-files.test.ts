/**
 * Files a user names in a config (issue 18, "Inputs a user controls"): the kernel, the config file
 * itself and the serial file. Special files are refused by name instead of hanging the host
 * (a FIFO nobody writes, /dev/zero, /dev/urandom, a FIFO nobody reads); a serial file that cannot
 * be opened is a clear error at create time (`vtlab run` and `vtlab shell`, whose session goes on
 * with every other domain intact); one whose writes fail (ENOSPC on /dev/full) drops the console
 * text, counted and reported, and the machine runs to its end.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { guestExpectedOutputUrl, guestImageUrl } from "@vtlab/guests";
import { MachineError, SerialFileSink, main } from "@vtlab/demo";

const sort = guestImageUrl("sort").pathname;

function vtlab(...argv: string[]) {
  let out = "";
  let err = "";
  const status = main(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  if (typeof status !== "number") throw new Error("synchronous command expected");
  err = err.split("\n").filter((l) => !l.startsWith("[vtlab] ")).join("\n");
  return { status, out, err };
}

/** One line, no stack trace, no raw control characters. */
function clean(text: string): void {
  expect(text).not.toMatch(/\n {4}at /);
  // eslint-disable-next-line no-control-regex -- the characters a message must not carry
  expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f]/);
}

function dir(): string {
  return mkdtempSync(join(tmpdir(), "vtlab-inputs-"));
}

function cfg(d: string, name: string, lines: string): string {
  const p = join(d, `${name}.cfg`);
  writeFileSync(p, `name = "${name}"\nmemory = 16\n${lines}\n`);
  return p;
}

describe("the kernel and the config file are read with a bound, never from a special file", () => {
  it("refuses a FIFO nobody writes, /dev/zero and /dev/urandom as the kernel, naming the file and the key", () => {
    const d = dir();
    execFileSync("mkfifo", [join(d, "fifo.elf")]);
    for (const [kernel, kind] of [["fifo.elf", "a FIFO"], ["/dev/zero", "a character device"], ["/dev/urandom", "a character device"], [d, "a directory"]] as const) {
      const file = cfg(d, "k", `kernel = "${kernel}"`);
      const r = vtlab("run", file);
      expect(r.status).toBe(2);
      expect(r.err).toContain(`vtlab run: ${file}: kernel "${kernel}": cannot read`);
      expect(r.err).toContain(`is ${kind}, not a regular file`);
      clean(r.err);
    }
  });

  it("refuses a FIFO or a device as the config file", () => {
    const d = dir();
    execFileSync("mkfifo", [join(d, "fifo.cfg")]);
    for (const [file, kind] of [[join(d, "fifo.cfg"), "a FIFO"], ["/dev/zero", "a character device"]] as const) {
      const r = vtlab("run", file);
      expect(r.status).toBe(2);
      expect(r.err).toContain(`${file}: cannot read the config file (${file} is ${kind}, not a regular file)`);
    }
  });

  it("a kernel that is not an ELF image is named by the config file and its path", () => {
    const d = dir();
    writeFileSync(join(d, "text.elf"), "not an elf file at all, just text long enough to be looked at......................");
    const file = cfg(d, "x", 'kernel = "text.elf"');
    const r = vtlab("run", file);
    expect(r.err).toContain(`vtlab run: ${file}: domain x: kernel "text.elf": e_ident[EI_MAG]: not an ELF file (bad magic)`);
    expect(r.err).not.toContain("kernel: kernel:");
  });
});

describe('serial = "file:PATH"', () => {
  it("a missing directory, a directory and a FIFO nobody reads are errors at create time, naming the file and the key", () => {
    const d = dir();
    mkdirSync(join(d, "adir"));
    execFileSync("mkfifo", [join(d, "unread.fifo")]);
    for (const [serial, why] of [["nodir/console.txt", "ENOENT"], ["adir", "EISDIR"], ["unread.fifo", "ENXIO"]] as const) {
      const file = cfg(d, "s", `kernel = "${sort}"\nserial = "file:${serial}"`);
      const r = vtlab("run", file);
      expect(r.status).toBe(2);
      expect(r.err).toContain(`vtlab run: ${file}: serial "file:${serial}": cannot open ${join(d, serial)} for writing (${why}`);
      clean(r.err);
    }
  });

  it("a full disk (ENOSPC, /dev/full) drops the console text, counted and reported once; the machine runs to its end", () => {
    const d = dir();
    const file = cfg(d, "full", `kernel = "${sort}"\nserial = "file:/dev/full"`);
    const r = vtlab("run", file);
    expect(r.status).toBe(0);
    const warnings = r.err.split("\n").filter((l) => l.startsWith("vtlab run: warning: "));
    expect(warnings[0]).toMatch(/^vtlab run: warning: .*full\.cfg: serial "file:\/dev\/full": writing \/dev\/full failed \(ENOSPC: .*\); console output is dropped while it fails \(\d+ bytes so far\)$/);
    const expected = readFileSync(guestExpectedOutputUrl("sort"), "utf8");
    expect(warnings.at(-1)).toContain(`${new TextEncoder().encode(expected).length} bytes of console output to /dev/full were dropped`);
    expect(warnings).toHaveLength(2); // the first failure, and the count at the end
  });

  it("SerialFileSink counts a failed write and never throws", () => {
    const errors: string[] = [];
    const sink = new SerialFileSink("/dev/full", "t.cfg: serial", false, (m) => errors.push(m));
    sink.write("hello\n");
    sink.write("again\n");
    expect([sink.droppedBytes, sink.failedWrites]).toEqual([12, 2]);
    sink.close();
    sink.write("after close\n");
    expect(sink.droppedBytes).toBe(24);
    expect(errors[0]).toMatch(/ENOSPC/);
    expect(() => new SerialFileSink(join(dir(), "no", "such"), "t.cfg: serial", true)).toThrow(MachineError);
  });

  it("vtlab shell: create with a serial file that cannot be opened prints the error and the session goes on, the other domain intact", () => {
    const d = dir();
    const good = cfg(d, "good", `kernel = "${sort}"\nserial = "file:good.txt"`);
    cfg(d, "bad", `kernel = "${sort}"\nserial = "file:nodir/bad.txt"`);
    writeFileSync(join(d, "session.vtl"), ["create good.cfg", "create bad.cfg", "list", "run", "list", "console good", ""].join("\n"));
    const r = vtlab("shell", join(d, "session.vtl"));
    expect(r.status).toBe(1); // one command failed
    expect(r.err).toContain(`vtlab shell: ${join(d, "session.vtl")}:2: create: ${join(d, "bad.cfg")}: serial "file:nodir/bad.txt": cannot open ${join(d, "nodir", "bad.txt")} for writing (ENOENT`);
    clean(r.err);
    expect(r.out).toContain("created good (id 1)");
    expect(r.out).not.toMatch(/^bad\s+\d/m); // never listed
    const expected = readFileSync(guestExpectedOutputUrl("sort"), "utf8");
    expect(readFileSync(join(d, "good.txt"), "utf8")).toBe(expected);
    expect(r.out).toMatch(/\ngood\s+1\s+16\s+1\s+---s--/); // shut down after the run
    void good;
  });
});
