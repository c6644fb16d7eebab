/**
 * Inputs a user controls (issue 18): mutated xl.cfg files and ELF kernel images, each taken as
 * far as it goes (parse the config, build the domain through the toolstack). Every case either
 * builds a domain or ends in an error that names the config file and the field at fault, never
 * a stack trace: one line, bounded in length, no raw control characters. fast-check, seeded, a few
 * hundred cases per class; each case yields to the event loop so the worker never blocks for long.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { ConfigError, DomainError, Hypervisor, MemoryBlockBackend, Toolstack, parseDomainConfig, type DomainResources } from "@vtlab/hypervisor";
import { direct64Kernel, tinyKernel } from "./tiny-kernel.js";

const FILE = "fuzz/m.cfg";
const KERNEL = "k.elf";
/** The longest message a case may produce. */
const MESSAGE_MAX = 1000;
const RUNS = 300;

const BASE_CONFIG = [
  'name = "fuzz"',
  "memory = 16",
  "vcpus = 1",
  "hap = 1",
  `kernel = "${KERNEL}"`,
  'cmdline = "console=ttyS0 quiet"',
  'serial = "none"',
  'on_crash = "destroy"',
  "weight = 256",
  'disk = [ "format=raw, vdev=hda, access=rw, target=disk.img" ]',
  'vif = [ "mac=00:16:3e:00:00:01, bridge=xenbr0" ]',
  "",
].join("\n");

/** What a message must name: a config key, or the kernel and an ELF or boot field. */
const CONFIG_FIELD = /key "[^"]+"|^fuzz\/m\.cfg:\d+: syntax error/;
const DOMAIN_FIELD = /domain [^:]+: (name|memory|vcpus|cmdline|pci|disk|vif|serial|weight|hap)\b|domain [^:]+: kernel "k\.elf": (ELF header|e_ident\[EI_[A-Z]+\]|e_type|e_machine|e_entry|e_phoff|e_phnum|e_phentsize|program header|program headers|XEN_ELFNOTE_PHYS32_ENTRY|a Xen PV kernel|an ELF32 image|Multiboot header|no PVH note|PT_LOAD|PVH entry|e_entry)/;

/** `e` is a ConfigError or DomainError of the right shape; `input` is the config text (what the message may echo). */
function checkMessage(e: unknown, input: string): void {
  if (!(e instanceof ConfigError) && !(e instanceof DomainError)) throw new Error(`not a ConfigError or DomainError: ${String(e)}${e instanceof Error ? `\n${e.stack ?? ""}` : ""}`);
  const m = e.message;
  expect(m.length).toBeLessThanOrEqual(MESSAGE_MAX);
  expect(m).not.toMatch(/\n {4}at /);
  // One line, no raw control characters (C0, DEL, C1).
  // eslint-disable-next-line no-control-regex -- the characters a message must not carry
  expect(m).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
  // Numbers vtlab prints are never negative hex, NaN or infinite (unless the input said so).
  for (const bad of ["0x-", "0xNaN", "NaN", "Infinity", "kernel: kernel:", "VM entry failed: VM entry failed:"]) {
    if (!input.includes(bad)) expect(m).not.toContain(bad);
  }
  expect(m.startsWith(`${FILE}:`)).toBe(true);
  expect(m).toMatch(e instanceof ConfigError ? CONFIG_FIELD : DOMAIN_FIELD);
}

function host(kernel: () => Uint8Array): { hv: Hypervisor; ts: Toolstack } {
  const hv = new Hypervisor({ memoryMiB: 96 });
  const ts = new Toolstack(hv, {
    resources: (config): DomainResources => ({
      kernel: kernel(),
      ...(config.disk.length > 0 ? { disk: new MemoryBlockBackend(64) } : {}),
    }),
  });
  return { hv, ts };
}

/**
 * Parse `text` and build its domain; the domain is destroyed again. Returns the error, if any.
 * Building is the slow part: with `memo`, a config already built (many mutations parse to the
 * same config) answers from it.
 */
function attempt(ts: Toolstack, text: string, memo?: Map<string, unknown>): unknown {
  let key = "";
  try {
    const config = parseDomainConfig(text, FILE);
    key = JSON.stringify(config);
    if (memo?.has(key)) return memo.get(key);
    const m = ts.create(config, FILE);
    ts.destroy(m.domain.id);
    memo?.set(key, undefined);
    return undefined;
  } catch (e) {
    if (key !== "") memo?.set(key, e);
    return e;
  }
}

const yieldNow = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("mutated xl.cfg files end in an error naming the file and the field", () => {
  const good = direct64Kernel("f4");
  const { ts } = host(() => good);
  const memo = new Map<string, unknown>();

  it("the unmutated config builds", () => {
    expect(attempt(ts, BASE_CONFIG)).toBeUndefined();
  });

  const cases: [string, fc.Arbitrary<string>][] = [
    ["truncated files", fc.integer({ min: 0, max: BASE_CONFIG.length }).map((n) => BASE_CONFIG.slice(0, n))],
    [
      "flipped characters (any code unit, control characters included)",
      fc.tuple(fc.integer({ min: 0, max: BASE_CONFIG.length - 1 }), fc.integer({ min: 0, max: 0xff }), fc.integer({ min: 0, max: BASE_CONFIG.length - 1 }), fc.integer({ min: 0, max: 0xffff })).map(([i, c, j, d]) => {
        const a = BASE_CONFIG.slice(0, i) + String.fromCharCode(c) + BASE_CONFIG.slice(i + 1);
        return a.slice(0, j) + String.fromCharCode(d) + a.slice(j + 1);
      }),
    ],
    [
      "values replaced (huge, negative, non-numeric, empty, control characters, megabytes)",
      fc.tuple(
        fc.constantFrom("name", "memory", "vcpus", "hap", "kernel", "cmdline", "serial", "on_crash", "weight", "disk", "vif", "pci", "builder", "xen_platform_pci"),
        fc.oneof(
          { weight: 6, arbitrary: fc.constantFrom("0", "-1", "1", "2", "4078", "4079", "65536", "65537", "0x-1000", "-0x1", "0xffffffffffffffff", "9007199254740993", "1e9", "NaN", "[]", "[ 1, 2 ]", '""', '"file:"', '"file:/nonexistent/dir/x"', '"\\0"', "'\u0000\u001b[2J'", '"\\n"', "[ [ 1 ] ]", '"pty"', '"destroy"') },
          { weight: 3, arbitrary: fc.integer({ min: -(2 ** 53), max: 2 ** 53 }).map(String) },
          { weight: 3, arbitrary: fc.string({ maxLength: 40 }).map((s) => JSON.stringify(s)) },
          // Megabytes, echoed back at most a line's worth.
          { weight: 1, arbitrary: fc.integer({ min: 1, max: 2 }).map((n) => `"${"A".repeat(n * 1024 * 1024)}\u0001"`) },
          { weight: 1, arbitrary: fc.constantFrom("9".repeat(1_000_000), `[ ${'"x", '.repeat(100_000)} ]`) },
        ),
      ).map(([key, value]) => BASE_CONFIG.replace(new RegExp(`^${key} = .*$`, "m"), `${key} = ${value}`) + (BASE_CONFIG.includes(`\n${key} =`) || BASE_CONFIG.startsWith(`${key} =`) ? "" : `${key} = ${value}\n`)),
    ],
    [
      "lines added, removed or repeated",
      fc.tuple(fc.array(fc.nat(BASE_CONFIG.split("\n").length - 1), { maxLength: 6 }), fc.array(fc.string({ maxLength: 30 }), { maxLength: 3 })).map(([picks, extra]) => {
        const lines = BASE_CONFIG.split("\n");
        const out = picks.map((i) => lines[i] ?? "");
        return [...out, ...extra, ...lines.slice(picks.length)].join("\n");
      }),
    ],
  ];
  for (const [what, arb] of cases) {
    it(`${what}: ${RUNS} cases`, { timeout: 300_000 }, async () => {
      await fc.assert(
        fc.asyncProperty(arb, async (text) => {
          await yieldNow();
          const e = attempt(ts, text, memo);
          if (e !== undefined) checkMessage(e, text);
        }),
        { numRuns: RUNS, seed: 18 },
      );
      expect(ts.domains).toEqual([]);
    });
  }
});

/** The valid image every ELF case mutates: a PVH kernel (PT_LOAD at 1 MiB, a PT_NOTE with the entry). */
const BASE_IMAGE = tinyKernel("f4");

function u64(dv: DataView, at: number, lo: number, hi: number): void {
  dv.setUint32(at, lo >>> 0, true);
  dv.setUint32(at + 4, hi >>> 0, true);
}

describe("mutated ELF kernels end in an error naming the config file, the kernel and the field", () => {
  let image = BASE_IMAGE;
  const { hv, ts } = host(() => image);
  // The smallest machine (2 MiB, no devices): building it is most of each case's time.
  const config = 'name = "fuzz"\nmemory = 2\nkernel = "k.elf"\n';
  const mutate = (edit: (b: Uint8Array, dv: DataView) => void): Uint8Array => {
    const b = BASE_IMAGE.slice();
    edit(b, new DataView(b.buffer));
    return b;
  };
  const phdr = (k: number) => 64 + 56 * k;

  it("the unmutated image builds", () => {
    expect(attempt(ts, config)).toBeUndefined();
  });

  const word = fc.oneof(fc.constantFrom(0, 1, 0xfff, 0x1000, 0x10_0000, 0xe000, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff), fc.nat({ max: 0xffff_ffff }));
  const cases: [string, fc.Arbitrary<Uint8Array>][] = [
    ["truncations", fc.nat(BASE_IMAGE.length - 1).map((n) => BASE_IMAGE.slice(0, n))],
    [
      "flipped header bytes (ELF header and program headers)",
      fc.array(fc.tuple(fc.nat(64 + 2 * 56 - 1), fc.nat(0xff)), { minLength: 1, maxLength: 4 }).map((flips) => mutate((b) => flips.forEach(([i, v]) => (b[i] = v)))),
    ],
    [
      "huge sizes and offsets (64-bit p_offset, p_filesz, p_memsz, e_phoff, e_phnum)",
      fc.tuple(fc.constantFrom(8, 32, 40), fc.nat(1), word, word, fc.nat(0xffff)).map(([field, k, lo, hi, phnum]) =>
        mutate((_b, dv) => {
          u64(dv, phdr(k) + field, lo, hi);
          if (phnum % 7 === 0) u64(dv, 32, lo, hi); // e_phoff too
          if (phnum % 11 === 0) dv.setUint16(56, phnum, true);
        }),
      ),
    ],
    [
      "overlapping segments",
      fc.tuple(fc.integer({ min: 0x10_0000 - 0x2000, max: 0x10_2000 }), fc.integer({ min: 0, max: 0x3000 })).map(([paddr, memsz]) =>
        mutate((_b, dv) => {
          // The note's program header becomes a second PT_LOAD (readable) near the first.
          dv.setUint32(phdr(1), 1, true);
          dv.setUint32(phdr(1) + 4, 4, true);
          u64(dv, phdr(1) + 16, paddr, 0);
          u64(dv, phdr(1) + 24, paddr, 0);
          u64(dv, phdr(1) + 32, 0, 0);
          u64(dv, phdr(1) + 40, memsz, 0);
        }),
      ),
    ],
    [
      "entries outside the segments (e_entry and the PVH note)",
      fc.tuple(word, word, fc.boolean()).map(([lo, hi, note]) =>
        mutate((_b, dv) => {
          if (note) dv.setUint32(0x190, lo, true);
          else {
            u64(dv, 24, lo, hi);
            new Uint8Array(dv.buffer).fill(0, 0x180, 0x194); // no PVH note: the e_entry is used
          }
        }),
      ),
    ],
    [
      "addresses past RAM (p_paddr, p_vaddr)",
      fc.tuple(fc.constantFrom(16, 24), word, fc.oneof(fc.constant(0), word)).map(([field, lo, hi]) => mutate((_b, dv) => u64(dv, phdr(0) + field, lo, hi))),
    ],
  ];
  for (const [what, arb] of cases) {
    it(`${what}: ${RUNS} cases`, { timeout: 300_000 }, async () => {
      await fc.assert(
        fc.asyncProperty(arb, async (img) => {
          await yieldNow();
          image = img;
          const e = attempt(ts, config);
          if (e !== undefined) checkMessage(e, config);
        }),
        { numRuns: RUNS, seed: 18 },
      );
      expect(ts.domains).toEqual([]);
      expect(hv.domains.every((d) => d.state === "destroyed")).toBe(true);
    });
  }
});
