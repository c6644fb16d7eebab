/**
 * ELF32 kernels (elf32-i386 and elf32-x86-64, the "x32" container) with a PVH note or a
 * Multiboot header: parsed, loaded by p_paddr and booted as Xen's libelf and xl load them for an
 * HVM (PVH) container, on EPT and on shadow. The fixtures in test/elf32/ are prebuilt by
 * test/elf32/build.sh (GNU as/ld/objcopy, provenance in test/elf32/PROVENANCE.md); the rebuild
 * test below checks that the committed bytes are what the script makes. Hostile images: every
 * truncation of a header, offsets past the file, overlapping segments, bad notes.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import {
  DomainError,
  ELF32_EHDR_SIZE,
  ELF32_PHDR_SIZE,
  ELFCLASS32,
  EM_386,
  EM_X86_64,
  Hypervisor,
  PT_LOAD,
  buildPvh,
  parseElf,
  type ElfImage,
} from "@vtlab/hypervisor";

const here = join(dirname(fileURLToPath(import.meta.url)), "elf32");
const FIXTURES = ["pvh-i386", "pvh-x32", "multiboot-i386", "multiboot-x32"] as const;
type Fixture = (typeof FIXTURES)[number];
const fixture = (name: Fixture) => new Uint8Array(readFileSync(join(here, `${name}.elf`)));
const MiB = 1024 * 1024;

function parsed(name: Fixture): ElfImage {
  const elf = parseElf(fixture(name), 32 * MiB);
  if ("kind" in elf) throw new Error(elf.message);
  return elf;
}

describe("ELF32 containers: parsed as libelf parses them", () => {
  it("elf32-i386 with a PVH note: EM_386, segments at p_paddr (1 MiB) though linked at 0xC0100000", () => {
    const elf = parsed("pvh-i386");
    expect({ elfClass: elf.elfClass, machine: elf.machine, entry: elf.entry, pvhEntry: elf.pvhEntry }).toEqual({ elfClass: ELFCLASS32, machine: EM_386, entry: 0xc010_0000n, pvhEntry: 0x10_0000 });
    expect(elf.segments.map((s) => [s.vaddr, s.paddr])).toEqual([
      [0xc010_0000n, 0x10_0000],
      [0xc010_1000n, 0x10_1000],
    ]);
    expect(elf.segments[1]!.memSize).toBeGreaterThan(elf.segments[1]!.fileSize); // .bss
  });

  it("elf32-x86-64 with an 8-byte PVH note descriptor, identity linked", () => {
    const elf = parsed("pvh-x32");
    expect({ elfClass: elf.elfClass, machine: elf.machine, pvhEntry: elf.pvhEntry }).toEqual({ elfClass: ELFCLASS32, machine: EM_X86_64, pvhEntry: 0x10_0000 });
  });

  it("Multiboot images have no PVH entry", () => {
    expect(parsed("multiboot-i386")).toMatchObject({ elfClass: ELFCLASS32, machine: EM_386, pvhEntry: undefined, entry: 0xc020_000cn });
    expect(parsed("multiboot-x32")).toMatchObject({ elfClass: ELFCLASS32, machine: EM_X86_64, pvhEntry: undefined, entry: 0x30_000cn });
  });

  it("the builder enters PVH at the note and Multiboot at e_entry's p_paddr (GRUB's translation)", () => {
    const sink = { write: () => {}, zero: () => {} };
    const boot = (name: Fixture) => buildPvh(fixture(name), "", 32 * MiB, sink);
    expect(boot("pvh-i386")).toMatchObject({ protocol: "pvh", entry: 0x10_0000 });
    expect(boot("pvh-x32")).toMatchObject({ protocol: "pvh", entry: 0x10_0000 });
    expect(boot("multiboot-i386")).toMatchObject({ protocol: "multiboot", entry: 0x20_000c, eax: 0x2badb002 });
    expect(boot("multiboot-x32")).toMatchObject({ protocol: "multiboot", entry: 0x30_000c });
  });
});

describe.each([true, false])("ELF32 kernels boot (hap %s)", (hap) => {
  const expected: Record<Fixture, string> = {
    "pvh-i386": "elf32-i386 PVH: loaded at p_paddr, entered at the note, .bss zero; cmdline: ",
    "pvh-x32": "elf32-x86-64 PVH: 32-bit entry at the note, now in 64-bit mode; cmdline: ",
    "multiboot-i386": "elf32-i386 Multiboot: EAX magic, e_entry at its p_paddr; cmdline: ",
    "multiboot-x32": "elf32-x86-64 Multiboot (objcopy of an ELF64 link): 64-bit mode; cmdline: ",
  };
  it.each([...FIXTURES])("%s prints its line and the command line, exits 0", (name) => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name, memoryMiB: 16, hap, kernel: fixture(name), cmdline: `fixture=${name}` });
    hv.run({ maxInstructions: 200_000 });
    expect({ state: d.state, code: d.exitCode, crash: d.crashReason }).toEqual({ state: "shutdown", code: 0, crash: undefined });
    expect(d.console).toBe(`${expected[name]}fixture=${name}\n`);
  });
});

/** A copy of `name` with `edit` applied. */
function spoil(name: Fixture, edit: (b: Uint8Array, dv: DataView) => void): Uint8Array {
  const b = fixture(name).slice();
  edit(b, new DataView(b.buffer));
  return b;
}

/** e_phoff of a fixture (ELF32: u32 at 28). */
const phoff = (name: Fixture) => new DataView(fixture(name).buffer).getUint32(28, true);

describe("hostile ELF32 images: each refused with the field named", () => {
  const ph = phoff("pvh-i386");
  const note = (b: Uint8Array) => {
    // the PT_NOTE program header (type 4) and the note it points at
    const dv = new DataView(b.buffer);
    for (let k = 0; k < dv.getUint16(44, true); k++) {
      const at = ph + k * ELF32_PHDR_SIZE;
      if (dv.getUint32(at, true) === 4) return { header: at, k, body: dv.getUint32(at + 4, true) };
    }
    throw new Error("no PT_NOTE");
  };
  const bad: [string, () => Uint8Array, string][] = [
    ["a file shorter than an ELF32 header", () => fixture("pvh-i386").subarray(0, ELF32_EHDR_SIZE - 1), "ELF header"],
    ["a bad class", () => spoil("pvh-i386", (b) => (b[4] = 3)), "e_ident[EI_CLASS]"],
    ["an ARM machine in ELF32", () => spoil("pvh-i386", (_b, dv) => dv.setUint16(18, 40, true)), "e_machine"],
    ["EM_386 in an ELF64 header", () => spoil("pvh-i386", (b, dv) => ((b[4] = 2), dv.setUint16(18, EM_386, true))), "e_machine"],
    ["a 64-bit program-header size", () => spoil("pvh-i386", (_b, dv) => dv.setUint16(42, 56, true)), "e_phentsize"],
    ["no program headers", () => spoil("pvh-i386", (_b, dv) => dv.setUint16(44, 0, true)), "e_phnum"],
    ["program headers past the end", () => spoil("pvh-i386", (b, dv) => dv.setUint32(28, b.length - 40, true)), "e_phoff"],
    ["a huge e_phoff", () => spoil("pvh-i386", (_b, dv) => dv.setUint32(28, 0xffff_fff0, true)), "e_phoff"],
    ["p_offset past the file", () => spoil("pvh-i386", (b, dv) => dv.setUint32(ph + 4, b.length, true)), "program header 0: p_offset + p_filesz"],
    ["p_filesz past the file", () => spoil("pvh-i386", (_b, dv) => dv.setUint32(ph + 16, 0xffff_0000, true)), "program header 0: p_offset + p_filesz"],
    ["p_memsz below p_filesz", () => spoil("pvh-i386", (_b, dv) => dv.setUint32(ph + 20, 4, true)), "program header 0: p_memsz"],
    ["a segment beyond guest memory (p_paddr + p_memsz wraps 32 bits)", () => spoil("pvh-i386", (_b, dv) => dv.setUint32(ph + 12, 0xffff_f000, true)), "program header 0: p_paddr"],
    ["overlapping segments", () => spoil("pvh-i386", (_b, dv) => dv.setUint32(ph + ELF32_PHDR_SIZE + 12, 0x10_0080, true)), "program header 1: p_paddr"],
    ["a note whose descriptor runs past it", () => spoil("pvh-i386", (b, dv) => dv.setUint32(note(b).body + 4, 400, true)), "program header 2: note at 0"],
    ["a 2-byte PVH descriptor", () => spoil("pvh-i386", (b, dv) => dv.setUint32(note(b).body + 4, 2, true)), "program header 2: XEN_ELFNOTE_PHYS32_ENTRY"],
    ["an 8-byte PVH entry beyond 4 GiB", () => spoil("pvh-x32", (b, dv) => dv.setUint32(note(b).body + 16 + 4, 1, true)), "program header 2: XEN_ELFNOTE_PHYS32_ENTRY"],
    ["a PVH entry outside the segments", () => spoil("pvh-i386", (b, dv) => dv.setUint32(note(b).body + 16, 0x80_0000, true)), "XEN_ELFNOTE_PHYS32_ENTRY"],
    ["no loadable segment (p_flags without R, W or X)", () => spoil("multiboot-i386", (_b, dv) => dv.setUint32(phoff("multiboot-i386") + 24, 0, true)), "program headers"],
    ["a Multiboot e_entry outside every segment", () => spoil("multiboot-i386", (_b, dv) => dv.setUint32(24, 0x40_0000, true)), "e_entry"],
  ];
  it.each(bad)("refuses %s, naming %s", (_what, make, field) => {
    const r = parseElf(make(), 32 * MiB);
    expect(r).toMatchObject({ kind: "elf-error", field });
    if ("kind" in r) expect(r.message.startsWith(field)).toBe(true);
  });

  it("an ELF32 kernel with neither a PVH note nor a Multiboot header is refused (no 64-bit entry to boot directly)", () => {
    const noHeader = spoil("multiboot-i386", (_b, dv) => dv.setUint32(0x1000, 0, true)); // the Multiboot magic, first word of .text
    expect(parseElf(noHeader, 32 * MiB)).toMatchObject({ elfClass: ELFCLASS32 });
    const hv = new Hypervisor({ memoryMiB: 64 });
    expect(() => hv.createDomain({ name: "noboot", memoryMiB: 16, kernel: noHeader })).toThrow(DomainError);
    expect(() => hv.createDomain({ name: "noboot", memoryMiB: 16, kernel: noHeader })).toThrow(/ELF32 image \(elf32-i386\) needs a XEN_ELFNOTE_PHYS32_ENTRY note or a Multiboot header/);
  });

  it("every truncation of every fixture is an error value or a valid parse, never a throw", () => {
    for (const name of FIXTURES) {
      const img = fixture(name);
      for (let n = 0; n <= img.length; n += n < 256 ? 1 : 61) {
        const r = parseElf(img.subarray(0, n), 32 * MiB);
        if (n < ELF32_EHDR_SIZE) expect(r).toMatchObject({ kind: "elf-error" });
        if (!("kind" in r)) for (const s of r.segments) expect(s.offset + s.fileSize).toBeLessThanOrEqual(n);
      }
    }
  });

  it("random bytes over the headers: parseElf and the builder return values, and any parse stays inside the file and guest memory", () => {
    const sizes = FIXTURES.map((n) => fixture(n).length);
    fc.assert(
      fc.property(
        fc.constantFrom(...FIXTURES),
        fc.array(fc.tuple(fc.nat(0x1200), fc.nat(255)), { minLength: 1, maxLength: 12 }),
        (name, edits) => {
          const b = fixture(name).slice();
          for (const [at, v] of edits) if (at < b.length) b[at] = v;
          const r = parseElf(b, 16 * MiB);
          if ("kind" in r) {
            expect(r.kind).toBe("elf-error");
            return;
          }
          for (const s of r.segments) {
            expect(s.offset + s.fileSize).toBeLessThanOrEqual(b.length);
            expect(s.paddr + s.memSize).toBeLessThanOrEqual(16 * MiB);
            expect(r.segments.filter((t) => t !== s && t.paddr < s.paddr + s.memSize && s.paddr < t.paddr + t.memSize)).toEqual([]);
          }
          const boot = buildPvh(b, "", 16 * MiB, { write: () => {}, zero: () => {} });
          expect(["pvh", "multiboot", "direct64", "boot-error", "elf-error"]).toContain("kind" in boot ? boot.kind : boot.protocol);
        },
      ),
      { numRuns: 400, seed: 12 },
    );
    expect(sizes.every((s) => s < 16 * 1024)).toBe(true);
  });

  it("only PT_LOAD segments with an access flag are loaded (libelf's elf_phdr_is_loadable)", () => {
    const b = spoil("pvh-i386", (_b, dv) => dv.setUint32(ph + ELF32_PHDR_SIZE + 24, 0, true)); // .data/.bss: p_flags 0
    const r = parseElf(b, 32 * MiB);
    if ("kind" in r) throw new Error(r.message);
    expect(r.segments).toHaveLength(1);
    expect(new DataView(b.buffer).getUint32(ph + ELF32_PHDR_SIZE, true)).toBe(PT_LOAD);
  });
});

describe("test/elf32 fixtures: rebuilt by build.sh with the recorded binutils", () => {
  const provenance = readFileSync(join(here, "PROVENANCE.md"), "utf8");
  const recorded = /^- ld: `([^`]+)`/m.exec(provenance)?.[1];
  const ld = spawnSync("ld", ["--version"], { encoding: "utf8" }).stdout?.split("\n")[0]?.split(" ").pop();
  const out = mkdtempSync(join(tmpdir(), "vtlab-elf32-"));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it(`build.sh reproduces every fixture byte for byte (binutils ${recorded ?? "?"})`, () => {
    expect(ld, "the binutils recorded in test/elf32/PROVENANCE.md are needed to reproduce the fixtures").toBe(recorded);
    execFileSync("sh", [join(here, "build.sh"), out], { stdio: "pipe" });
    for (const name of FIXTURES) {
      const rebuilt = readFileSync(join(out, `${name}.elf`));
      expect(rebuilt.equals(readFileSync(join(here, `${name}.elf`))), `${name}.elf differs from a rebuild`).toBe(true);
    }
  });

  it("PROVENANCE.md lists each fixture's SHA-256", async () => {
    const { createHash } = await import("node:crypto");
    for (const name of FIXTURES) expect(provenance).toContain(`${createHash("sha256").update(fixture(name)).digest("hex")}  ${name}.elf`);
  });
});
