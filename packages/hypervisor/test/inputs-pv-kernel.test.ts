/**
 * A Xen PV kernel (Xen ELF notes such as XEN_ELFNOTE_ENTRY and XEN_ELFNOTE_HYPERCALL_PAGE, no
 * XEN_ELFNOTE_PHYS32_ENTRY) is refused by the HVM builder with an error that says so, instead of
 * being booted as a plain 64-bit kernel (which triple-faults a few instructions in). The image is
 * built here: a 64-bit kernel linked at its load address, as direct 64-bit boot would take it,
 * plus a PT_NOTE with the notes a Linux PV kernel carries.
 */
import { describe, expect, it } from "vitest";
import { DomainError, ET_EXEC, EM_X86_64, Hypervisor, PT_LOAD, PT_NOTE, XEN_ELFNOTE_ENTRY, XEN_ELFNOTE_HYPERCALL_PAGE, XEN_ELFNOTE_PHYS32_ENTRY, parseElf } from "@vtlab/hypervisor";
import { direct64Kernel } from "./tiny-kernel.js";

/** XEN_ELFNOTE_GUEST_OS (elfnote.h): "linux" in a Linux PV kernel. */
const XEN_ELFNOTE_GUEST_OS = 6;

interface Note {
  readonly type: number;
  readonly desc: Uint8Array;
}

function le64(lo: number, hi: number): Uint8Array {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, lo >>> 0, true);
  dv.setUint32(4, hi >>> 0, true);
  return b;
}

/** An ELF64 x86-64 executable: `code` loaded RWX at 1 MiB (p_vaddr = p_paddr), then a PT_NOTE of "Xen" notes. */
function xenElf(code: Uint8Array, notes: readonly Note[]): Uint8Array {
  const noteBytes: number[] = [];
  for (const n of notes) {
    const head = new Uint8Array(12);
    const hv = new DataView(head.buffer);
    hv.setUint32(0, 4, true); // namesz: "Xen\0"
    hv.setUint32(4, n.desc.length, true);
    hv.setUint32(8, n.type, true);
    noteBytes.push(...head, 0x58, 0x65, 0x6e, 0, ...n.desc, ...new Array((4 - (n.desc.length % 4)) % 4).fill(0));
  }
  const codeAt = 0x200;
  const noteAt = codeAt + code.length + ((8 - (code.length % 8)) % 8);
  const b = new Uint8Array(noteAt + noteBytes.length);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 0x7f454c46, false);
  b[4] = 2; // ELFCLASS64
  b[5] = 1; // ELFDATA2LSB
  b[6] = 1; // EV_CURRENT
  dv.setUint16(16, ET_EXEC, true);
  dv.setUint16(18, EM_X86_64, true);
  dv.setUint32(20, 1, true);
  dv.setUint32(24, 0x10_0000, true); // e_entry
  dv.setUint32(32, 64, true); // e_phoff
  dv.setUint16(52, 64, true);
  dv.setUint16(54, 56, true);
  dv.setUint16(56, 2, true);
  dv.setUint32(64, PT_LOAD, true);
  dv.setUint32(64 + 4, 7, true);
  dv.setUint32(64 + 8, codeAt, true);
  dv.setUint32(64 + 16, 0x10_0000, true);
  dv.setUint32(64 + 24, 0x10_0000, true);
  dv.setUint32(64 + 32, code.length, true);
  dv.setUint32(64 + 40, 0x1000, true);
  dv.setUint32(120, PT_NOTE, true);
  dv.setUint32(120 + 8, noteAt, true);
  dv.setUint32(120 + 32, noteBytes.length, true);
  b.set(code, codeAt);
  b.set(noteBytes, noteAt);
  return b;
}

/** mov eax, 7; out 0xf4, eax; hlt: a 64-bit kernel that exits with code 7 at once. */
const EXIT7 = Uint8Array.from([0xb8, 7, 0, 0, 0, 0xe7, 0xf4, 0xf4]);
const PV_NOTES: Note[] = [
  { type: XEN_ELFNOTE_GUEST_OS, desc: new TextEncoder().encode("linux\0") },
  { type: XEN_ELFNOTE_ENTRY, desc: le64(0x8100_0000, 0xffff_ffff) },
  { type: XEN_ELFNOTE_HYPERCALL_PAGE, desc: le64(0x8100_1000, 0xffff_ffff) },
];

describe("a Xen PV kernel is refused by the HVM builder", () => {
  it("parseElf reports the Xen notes it found", () => {
    const elf = parseElf(xenElf(EXIT7, PV_NOTES), 16 * 1024 * 1024);
    if ("kind" in elf) throw new Error(elf.message);
    expect(elf.xenNotes).toEqual([XEN_ELFNOTE_GUEST_OS, XEN_ELFNOTE_ENTRY, XEN_ELFNOTE_HYPERCALL_PAGE]);
    expect(elf.pvhEntry).toBeUndefined();
  });

  it("createDomain refuses it, naming the notes and saying PV guests are not supported; a good domain beside it runs", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    let error: unknown;
    try {
      hv.createDomain({ name: "pv", memoryMiB: 16, kernel: xenElf(EXIT7, PV_NOTES) });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DomainError);
    const message = (error as Error).message;
    expect(message).toMatch(/^domain pv: kernel: a Xen PV kernel \(ELF notes XEN_ELFNOTE_GUEST_OS, XEN_ELFNOTE_ENTRY, XEN_ELFNOTE_HYPERCALL_PAGE; no XEN_ELFNOTE_PHYS32_ENTRY\): PV guests are not supported by an HVM builder/);
    expect(message).not.toMatch(/kernel: kernel:/);
    expect(hv.domains.filter((d) => d.state !== "destroyed").map((d) => d.name)).toEqual([]);
    // The host goes on: a well-behaved 64-bit kernel boots beside the refusal.
    const good = hv.createDomain({ name: "good", memoryMiB: 16, kernel: direct64Kernel("b807000000e7f4f4") });
    hv.run({ maxInstructions: 1000 });
    expect([good.state, good.exitCode]).toEqual(["shutdown", 7]);
  });

  it("the same image without the PV notes boots directly in 64-bit mode, and with a PVH entry as PVH", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const plain = hv.createDomain({ name: "plain", memoryMiB: 16, kernel: xenElf(EXIT7, []) });
    hv.run({ maxInstructions: 1000 });
    expect([plain.state, plain.exitCode]).toEqual(["shutdown", 7]);
    // A PVH entry beside the PV notes (as a Linux kernel built for both has): not refused.
    const phys32 = new Uint8Array(4);
    new DataView(phys32.buffer).setUint32(0, 0x10_0000, true);
    const both = parseElf(xenElf(EXIT7, [...PV_NOTES, { type: XEN_ELFNOTE_PHYS32_ENTRY, desc: phys32 }]), 16 * 1024 * 1024);
    expect(both).toMatchObject({ pvhEntry: 0x10_0000 });
    expect(() => hv.createDomain({ name: "pvh", memoryMiB: 16, kernel: xenElf(EXIT7, [...PV_NOTES, { type: XEN_ELFNOTE_PHYS32_ENTRY, desc: phys32 }]) })).not.toThrow();
  });
});
