import { describe, expect, it } from "vitest";
import { MachineMemory } from "@vtlab/arch";
import { PT_LOAD, loadSegments, parseElf } from "@vtlab/hypervisor";
import { pvhElf } from "./tiny-kernel.js";

const MiB = 1024 * 1024;

/** A small valid ELF64 x86-64 executable: one PT_LOAD at 1 MiB (0x40 bytes of file, 0x1000 in memory), a PT_NOTE with the PVH entry. */
function image(): Uint8Array {
  return pvhElf(new Uint8Array(0x40).fill(0x90), { offset: 0x100, memSize: 0x1000, flags: 5 });
}

function spoil(edit: (b: Uint8Array, dv: DataView) => void): Uint8Array {
  const b = image();
  edit(b, new DataView(b.buffer));
  return b;
}

describe("ELF64 images for the domain builder", () => {
  it("parses a valid image and loads it (zero-filling p_memsz beyond p_filesz)", () => {
    const elf = parseElf(image(), 32 * MiB);
    if ("kind" in elf) throw new Error(elf.message);
    expect(elf).toMatchObject({ entry: 0x10_0000n, pvhEntry: 0x10_0000, segments: [{ paddr: 0x10_0000, fileSize: 0x40, memSize: 0x1000, flags: 5 }] });
    const mem = new MachineMemory(32 * MiB);
    mem.fill(0x10_0000, 0x2000, 0xee);
    loadSegments(image(), elf, (gpa, bytes) => mem.writeBytes(gpa, bytes), (gpa, n) => mem.fill(gpa, n, 0));
    expect([mem.read8(0x10_0000), mem.read8(0x10_003f), mem.read8(0x10_0040), mem.read8(0x10_0fff), mem.read8(0x10_1000)]).toEqual([0x90, 0x90, 0, 0, 0xee]);
  });

  const bad: [string, Uint8Array, string][] = [
    ["a truncated file", image().subarray(0, 40), "ELF header"],
    ["a bad magic", spoil((b) => (b[1] = 0x46)), "e_ident[EI_MAG]"],
    ["an unknown class (neither ELFCLASS32 nor ELFCLASS64)", spoil((b) => (b[4] = 3)), "e_ident[EI_CLASS]"],
    ["big-endian data", spoil((b) => (b[5] = 2)), "e_ident[EI_DATA]"],
    ["a bad version", spoil((b) => (b[6] = 0)), "e_ident[EI_VERSION]"],
    ["a relocatable object", spoil((_b, dv) => dv.setUint16(16, 1, true)), "e_type"],
    ["an ARM image", spoil((_b, dv) => dv.setUint16(18, 183, true)), "e_machine"],
    ["no program headers", spoil((_b, dv) => dv.setUint16(56, 0, true)), "e_phnum"],
    ["a wrong program-header size", spoil((_b, dv) => dv.setUint16(54, 32, true)), "e_phentsize"],
    ["program headers past the end", spoil((_b, dv) => dv.setUint32(32, 0x1f0, true)), "e_phoff"],
    ["a segment past the end of the file", spoil((_b, dv) => dv.setUint32(64 + 32, 0x400, true)), "program header 0: p_offset + p_filesz"],
    ["p_memsz below p_filesz", spoil((_b, dv) => dv.setUint32(64 + 40, 0x10, true)), "program header 0: p_memsz"],
    ["a segment beyond guest memory", spoil((_b, dv) => dv.setUint32(64 + 24, 0x300_0000, true)), "program header 0: p_paddr"],
    ["a note whose sizes run past it", spoil((_b, dv) => dv.setUint32(0x184, 400, true)), "program header 1: note at 0"],
    ["a PVH entry outside the segments", spoil((_b, dv) => dv.setUint32(0x190, 0x20_0000, true)), "XEN_ELFNOTE_PHYS32_ENTRY"],
    ["a huge 64-bit offset", spoil((_b, dv) => dv.setUint32(64 + 12, 0xffff_ffff, true)), "program header 0: p_offset"],
  ];
  for (const [what, img, field] of bad) {
    it(`refuses ${what}, naming ${field}`, () => {
      const r = parseElf(img, 32 * MiB);
      expect(r).toMatchObject({ kind: "elf-error", field });
      if (!("kind" in r)) return;
      expect(r.message.startsWith(field)).toBe(true);
    });
  }

  it("refuses overlapping segments and an entry outside them (no PVH note)", () => {
    const overlap = image();
    const dv = new DataView(overlap.buffer);
    dv.setUint32(64 + 56, PT_LOAD, true); // turn the note header into a second PT_LOAD...
    dv.setUint32(64 + 56 + 4, 4, true); // ...readable (libelf loads only segments with an access flag)...
    dv.setUint32(64 + 56 + 24, 0x10_0800, true); // ...overlapping the first
    dv.setUint32(64 + 56 + 40, 0x100, true);
    dv.setUint32(64 + 56 + 32, 0x10, true);
    expect(parseElf(overlap, 32 * MiB)).toMatchObject({ field: "program header 1: p_paddr" });
    const noNote = spoil((_b, v) => {
      v.setUint16(56, 1, true); // only the PT_LOAD
      v.setUint32(24, 0x50_0000, true); // e_entry elsewhere
    });
    expect(parseElf(noNote, 32 * MiB)).toMatchObject({ field: "e_entry" });
  });
});
