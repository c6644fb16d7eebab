import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  CONFIG_MEMORY_MAX_MIB,
  CONFIG_MEMORY_MIN_MIB,
  ConfigError,
  domainOptions,
  formatDomainConfig,
  parseDiskSpec,
  parseDomainConfig,
  type DomainConfig,
} from "@vtlab/hypervisor";

const FILE = "machines/a.cfg";

const MINIMAL = `name = "a"\nmemory = 128\nkernel = "guest.elf"\n`;

function parseError(text: string): ConfigError {
  try {
    parseDomainConfig(text, FILE);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error("expected a ConfigError");
}

function expectError(text: string, line: number, key: string | undefined, detail: RegExp): ConfigError {
  const e = parseError(text);
  expect(e.file).toBe(FILE);
  expect(e.line).toBe(line);
  expect(e.key).toBe(key);
  expect(e.detail).toMatch(detail);
  expect(e.message.startsWith(`${FILE}:${line}: `)).toBe(true);
  return e;
}

describe("parseDomainConfig: valid files", () => {
  it("fills the defaults for a minimal file", () => {
    expect(parseDomainConfig(MINIMAL, FILE)).toEqual({
      name: "a",
      memory: 128,
      vcpus: 1,
      builder: "hvm",
      hap: true,
      acpi: true,
      kernel: "guest.elf",
      cmdline: "",
      disk: [],
      serial: { kind: "pty" },
      onCrash: "destroy",
      weight: 256,
    });
  });

  it("reads every key, comments, semicolons, hex, single quotes and a multi-line list", () => {
    const text = [
      "# a full machine",
      "name = 'web-1.test_a'   # trailing comment",
      "builder = \"hvm\";",
      "memory = 0x100",
      "vcpus = 4;",
      "hap = 0",
      "acpi = 0",
      "kernel = 'kernels/guest.elf'",
      'cmdline = "console=ttyS0 msg=\\"hi\\""',
      "disk = [",
      "  'format=raw, vdev=hda, access=ro, target=images/disk,1.img',  # comma in target",
      "]",
      'serial = "file:logs/console.txt"',
      "on_crash = 'preserve'",
      "weight = 512",
    ].join("\n");
    expect(parseDomainConfig(text, FILE)).toEqual({
      name: "web-1.test_a",
      memory: 256,
      vcpus: 4,
      builder: "hvm",
      hap: false,
      acpi: false,
      kernel: "kernels/guest.elf",
      cmdline: 'console=ttyS0 msg="hi"',
      disk: [{ target: "images/disk,1.img", format: "raw", vdev: "hda", access: "ro" }],
      serial: { kind: "file", path: "logs/console.txt" },
      onCrash: "preserve",
      weight: 512,
    });
  });

  it("reads positional disk specs with empty (default) fields and a trailing comma", () => {
    const cfg = parseDomainConfig(`${MINIMAL}disk = [ "disk.img,,hda", ]\nserial = "none"\n`, FILE);
    expect(cfg.disk).toEqual([{ target: "disk.img", format: "raw", vdev: "hda", access: "rw" }]);
    expect(cfg.serial).toEqual({ kind: "none" });
    expect(parseDiskSpec("disk.img,raw,hda,rw")).toEqual(parseDiskSpec("format=raw, vdev=hda, access=rw, target=disk.img"));
    expect(parseDiskSpec("disk.img, raw, hda, r")).toEqual({ target: "disk.img", format: "raw", vdev: "hda", access: "ro" });
    expect(parseDiskSpec("vdev=hda, disk.img")).toEqual({ target: "disk.img", format: "raw", vdev: "hda", access: "rw" });
  });

  it("accepts an empty file body with only comments between settings", () => {
    const text = `\n# c\n\n${MINIMAL}\n# end`;
    expect(parseDomainConfig(text, FILE).name).toBe("a");
  });
});

describe("parseDomainConfig: errors name file, line and key", () => {
  it("syntax error: no '='", () => {
    expectError(`name = "a"\nmemory 128\n`, 2, "memory", /expected "="/);
  });

  it("syntax error: a line that is not a setting", () => {
    expectError(`name = "a"\n= 3\n`, 2, undefined, /syntax error/);
  });

  it("syntax error: junk after the value", () => {
    expectError(`name = "a" "b"\n`, 1, "name", /unexpected/);
  });

  it("unterminated string (reported at its opening line)", () => {
    expectError(`name = "a"\nkernel = "guest.elf\nmemory = 2\n`, 2, "kernel", /unterminated string/);
  });

  it("unterminated list (reported at its '[')", () => {
    expectError(`name = "a"\ndisk = [ "disk.img,,hda",\n\n`, 2, "disk", /unterminated list/);
  });

  it("unknown key", () => {
    expectError(`${MINIMAL}maxmem = 512\n`, 4, "maxmem", /unknown key/);
  });

  it("duplicate key", () => {
    expectError(`${MINIMAL}memory = 256\n`, 4, "memory", /duplicate key \(first set on line 2\)/);
  });

  it("wrong type: a string where MiB are expected", () => {
    const e = expectError(`name = "a"\nkernel = "k"\nmemory = "lots"\n`, 3, "memory", /expected an integer number of MiB/);
    expect(e.message).toBe(`machines/a.cfg:3: key "memory": expected an integer number of MiB, got "lots"`);
  });

  it("wrong type: an integer where a string is expected, and a list item", () => {
    expectError(`name = 5\nmemory = 2\nkernel = "k"\n`, 1, "name", /expected a quoted string/);
    expectError(`${MINIMAL}disk = [\n  "disk.img,,hda",\n  7\n]\n`, 6, "disk", /expected a quoted disk spec/);
    expectError(`${MINIMAL}disk = "disk.img,,hda"\n`, 4, "disk", /expected a list/);
  });

  it("out of range: memory, vcpus, hap, acpi, weight", () => {
    expectError(`name = "a"\nmemory = 1048577\nkernel = "k"\n`, 2, "memory", /out of range 2\.\.1048576/);
    expectError(`name = "a"\nmemory = 1\nkernel = "k"\n`, 2, "memory", /out of range 2\.\.1048576/);
    expectError(`${MINIMAL}vcpus = 0\n`, 4, "vcpus", /out of range 1\.\.64/);
    expectError(`${MINIMAL}vcpus = -1\n`, 4, "vcpus", /out of range/);
    expectError(`${MINIMAL}hap = 2\n`, 4, "hap", /out of range 0\.\.1/);
    expectError(`${MINIMAL}acpi = 2\n`, 4, "acpi", /out of range 0\.\.1/);
    expectError(`${MINIMAL}weight = 0x10000\n`, 4, "weight", /out of range 1\.\.65535/);
  });

  it("missing required keys (line 0: the file as a whole)", () => {
    expectError(`name = "a"\nkernel = "k"\n`, 0, "memory", /missing required key/);
    expectError(`memory = 2\nkernel = "k"\n`, 0, "name", /missing required key/);
    expectError(`name = "a"\nmemory = 2\n`, 0, "kernel", /missing required key/);
  });

  it("bad name", () => {
    expectError(`name = "my vm"\nmemory = 2\nkernel = "k"\n`, 1, "name", /bad domain name "my vm"/);
    expectError(`name = ""\nmemory = 2\nkernel = "k"\n`, 1, "name", /bad domain name/);
  });

  it("bad disk specs: format, vdev, access, unknown parameter, missing target, twice hda", () => {
    const bad: [string, RegExp][] = [
      ["disk.img,qcow2,hda", /unsupported format "qcow2"/],
      ["disk.img,raw,hdb", /unsupported vdev "hdb"/],
      ["disk.img,raw,hda,rx", /bad access "rx"/],
      ["disk.img,,hda,,cdrom", /unexpected parameter "cdrom"/],
      ["devtype=cdrom, target=x.iso", /unsupported parameter "devtype"/],
      ["vdev=hda", /no target/],
      ["disk.img", /no vdev/],
    ];
    for (const [spec, re] of bad) {
      expectError(`${MINIMAL}disk = [ "${spec}" ]\n`, 4, "disk", re);
    }
    expectError(`${MINIMAL}disk = [\n "a.img,,hda",\n "b.img,,hda" ]\n`, 6, "disk", /used twice/);
  });

  it("unsupported builder and bad enumerations", () => {
    expectError(`${MINIMAL}builder = "pv"\n`, 4, "builder", /unsupported builder "pv"/);
    expectError(`${MINIMAL}on_crash = "reboot"\n`, 4, "on_crash", /expected one of "destroy", "preserve", "restart"/);
    expectError(`${MINIMAL}serial = "tcp:1234"\n`, 4, "serial", /expected "pty", "none" or "file:PATH"/);
  });

  it("bare words and bad escapes are syntax errors", () => {
    expectError(`${MINIMAL}serial = pty\n`, 4, "serial", /not a quoted string, an integer or a list/);
    expectError(`${MINIMAL}cmdline = "a\\qb"\n`, 4, "cmdline", /unknown escape/);
  });
});

describe("ramdisk (xl.cfg(5): the initial ramdisk for a PVH kernel)", () => {
  it("is absent by default, read as a path, written back by formatDomainConfig, and passed to the domain", () => {
    expect("ramdisk" in parseDomainConfig(MINIMAL, FILE)).toBe(false);
    const cfg = parseDomainConfig(`${MINIMAL}ramdisk = "linux-cache/initramfs.cpio"\n`, FILE);
    expect(cfg.ramdisk).toBe("linux-cache/initramfs.cpio");
    expect(parseDomainConfig(formatDomainConfig(cfg), FILE)).toEqual(cfg);
    const rd = Uint8Array.of(1, 2, 3);
    expect(domainOptions(cfg, { kernel: new Uint8Array(1), ramdisk: rd }).ramdisk).toBe(rd);
    expect("ramdisk" in domainOptions(cfg, { kernel: new Uint8Array(1) })).toBe(false);
    expect(domainOptions(parseDomainConfig(`${MINIMAL}acpi = 0\n`, FILE), { kernel: new Uint8Array(1) }).acpi).toBe(false);
    expect(domainOptions(cfg, { kernel: new Uint8Array(1) }).acpi).toBe(true);
  });
  it("must be a quoted path", () => {
    expectError(`${MINIMAL}ramdisk = 5\n`, 4, "ramdisk", /expected a quoted path/);
  });
});

describe("formatDomainConfig", () => {
  const pathChars = fc.constantFrom(..."abcXYZ019_./-, \"'\\#[]=;\t".split(""));
  const path = fc.string({ unit: pathChars, minLength: 1, maxLength: 20 });
  const nameChars = fc.constantFrom(..."abcXYZ019_.-".split(""));
  const config: fc.Arbitrary<DomainConfig> = fc.record({
    name: fc.string({ unit: nameChars, minLength: 1, maxLength: 16 }),
    memory: fc.integer({ min: CONFIG_MEMORY_MIN_MIB, max: CONFIG_MEMORY_MAX_MIB }),
    vcpus: fc.integer({ min: 1, max: 64 }),
    builder: fc.constant("hvm" as const),
    hap: fc.boolean(),
    acpi: fc.boolean(),
    kernel: fc.string({ unit: pathChars, minLength: 1, maxLength: 20 }),
    cmdline: fc.string({ maxLength: 30 }).filter((s) => !s.includes("\r")),
    disk: fc.option(
      fc.record({
        target: path,
        format: fc.constant("raw" as const),
        vdev: fc.constant("hda" as const),
        access: fc.constantFrom("rw" as const, "ro" as const),
      }),
      { nil: undefined },
    ).map((d) => (d === undefined ? [] : [d])),
    serial: fc.oneof(
      fc.constant({ kind: "pty" as const }),
      fc.constant({ kind: "none" as const }),
      path.map((p) => ({ kind: "file" as const, path: p })),
    ),
    onCrash: fc.constantFrom("destroy" as const, "preserve" as const, "restart" as const),
    weight: fc.integer({ min: 1, max: 65535 }),
  });

  it("parse(format(cfg)) equals cfg for generated valid configs", () => {
    fc.assert(
      fc.property(config, (cfg) => {
        expect(parseDomainConfig(formatDomainConfig(cfg), FILE)).toEqual(cfg);
      }),
      { numRuns: 500 },
    );
  });

  it("parsing never throws anything but ConfigError on arbitrary text", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        try {
          parseDomainConfig(text, FILE);
        } catch (e) {
          expect(e).toBeInstanceOf(ConfigError);
        }
      }),
    );
  });
});
