/**
 * Loading kernels the way Xen's toolstack loads Linux for a PVH domU: an ELF64 with higher-half
 * virtual addresses loaded by p_paddr and entered at XEN_ELFNOTE_PHYS32_ENTRY, the ramdisk as
 * module 0 of hvm_start_info, and a bzImage whose LZ4 payload is that ELF.
 */
import { describe, expect, it } from "vitest";
import { gzipSync } from "node:zlib";
import { VmcsField as F } from "@vtlab/cpu-vmx";
import {
  BootLayout,
  buildPvh,
  extractBzImage,
  guestMemoryMap,
  Hypervisor,
  parseElf,
  XEN_HVM_MEMMAP_TYPE_RAM,
  XEN_HVM_START_MAGIC_VALUE,
  type Domain,
} from "@vtlab/hypervisor";
import {
  bzImage,
  LINUX_DATA_FILESZ,
  LINUX_DATA_MEMSZ,
  LINUX_DATA_PADDR,
  LINUX_DATA_VADDR,
  LINUX_ENTRY_OFFSET,
  LINUX_PERCPU_PADDR,
  LINUX_TEXT_PADDR,
  LINUX_TEXT_VADDR,
  linuxLikeElf,
  lz4LegacyWithSize,
} from "./linux-images.js";

const MiB = 1024 * 1024;
const ENTRY = LINUX_TEXT_PADDR + LINUX_ENTRY_OFFSET;

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, "").match(/../g)!.map((h) => parseInt(h, 16)));
/** mov eax, [ebx + 12] (nr_modules); out 0xf4, eax. */
const NR_MODULES = hex("8b430c e7f4 f4");
/**
 * mov esi, [ebx + 16] (modlist_paddr); mov ecx, [esi + 8] (modlist[0].size); mov esi, [esi]
 * (modlist[0].paddr); xor eax, eax; L: movzx edx, byte [esi]; add eax, edx; inc esi; dec ecx;
 * jnz L; out 0xf4, eax: the sum of the module's bytes, found through hvm_start_info.
 */
const MODULE_SUM = hex("8b7310 8b4e08 8b36 31c0 0fb616 01d0 46 49 75f7 e7f4 f4");

function readGuest(d: Domain, hv: Hypervisor, gpa: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const b = hv.memory.read8(d.machineAddress(gpa + i)!);
    if (typeof b !== "number") throw new Error(`GPA 0x${(gpa + i).toString(16)}: not readable`);
    out[i] = b;
  }
  return out;
}

function ramdisk(n: number): Uint8Array {
  const r = new Uint8Array(n);
  for (let i = 0; i < n; i++) r[i] = (i * 7 + 3) & 0xff;
  return r;
}

describe("an ELF64 with higher-half virtual addresses (Linux's vmlinux shape)", () => {
  it("parses exactly: p_vaddr and e_entry beyond 2^53 as bigints, segments at p_paddr, the 8-byte PHYS32 note", () => {
    const elf = parseElf(linuxLikeElf(NR_MODULES), 64 * MiB);
    if ("kind" in elf) throw new Error(elf.message);
    expect(elf.entry).toBe(LINUX_TEXT_VADDR);
    expect(elf.pvhEntry).toBe(ENTRY);
    expect(elf.segments.map((s) => [s.vaddr, s.paddr, s.memSize])).toEqual([
      [LINUX_TEXT_VADDR, LINUX_TEXT_PADDR, 0x1000],
      [LINUX_DATA_VADDR, LINUX_DATA_PADDR, LINUX_DATA_MEMSZ],
      [0n, LINUX_PERCPU_PADDR, 0x1000],
    ]);
  });

  for (const hap of [true, false]) {
    it(`loads each PT_LOAD at p_paddr and enters at the PHYS32 entry in 32-bit mode (${hap ? "EPT" : "shadow"})`, () => {
      const hv = new Hypervisor({ memoryMiB: 96 });
      const d = hv.createDomain({ name: "lx", memoryMiB: 64, hap, kernel: linuxLikeElf(NR_MODULES) });
      const v = d.vcpus[0]!;
      expect(v.vmcs.readNatural(F.GUEST_RIP)).toBe(ENTRY);
            expect([...readGuest(d, hv, ENTRY, NR_MODULES.length)]).toEqual([...NR_MODULES]);
      const data = readGuest(d, hv, LINUX_DATA_PADDR, LINUX_DATA_MEMSZ);
      expect(data[1]).toBe(4);
      expect(data.subarray(LINUX_DATA_FILESZ).every((b) => b === 0)).toBe(true); // .bss zeroed
      expect(readGuest(d, hv, LINUX_PERCPU_PADDR, 0x40).every((b) => b === 0x5a)).toBe(true);
      hv.run({ maxInstructions: 100_000 });
      expect(d.exitCode).toBe(0); // no ramdisk: nr_modules 0
    });
  }

  it("a p_paddr beyond 2^53 is still refused (physical addresses stay numbers)", () => {
    const img = linuxLikeElf(NR_MODULES);
    new DataView(img.buffer).setBigUint64(64 + 24, 0xffff_ffff_8100_0000n, true);
    expect(parseElf(img, 64 * MiB)).toMatchObject({ kind: "elf-error", field: "program header 0: p_paddr" });
  });
});

describe("the ramdisk as a PVH module (hvm_start_info.modlist)", () => {
  for (const hap of [true, false]) {
    it(`a guest finds module 0 through hvm_start_info and reads its bytes (${hap ? "EPT" : "shadow"})`, () => {
      const rd = ramdisk(5000);
      const sum = rd.reduce((s, b) => s + b, 0);
      const hv = new Hypervisor({ memoryMiB: 96 });
      const d = hv.createDomain({ name: "lx", memoryMiB: 64, hap, kernel: linuxLikeElf(MODULE_SUM), ramdisk: rd, cmdline: "console=hvc0 rdinit=/init" });
      hv.run({ maxInstructions: 1_000_000 });
      expect(d.exitCode).toBe(sum);
      const one = new Hypervisor({ memoryMiB: 96 });
      const d1 = one.createDomain({ name: "lx", memoryMiB: 64, hap, kernel: linuxLikeElf(NR_MODULES), ramdisk: rd });
      one.run({ maxInstructions: 100_000 });
      expect(d1.exitCode).toBe(1);
    });
  }

  it("hvm_start_info: magic, one module right after the kernel (page-aligned), the command line, the module inside a RAM range of the memory map", () => {
    const hv = new Hypervisor({ memoryMiB: 96 });
    const rd = ramdisk(5000);
    const d = hv.createDomain({ name: "lx", memoryMiB: 64, kernel: linuxLikeElf(NR_MODULES), ramdisk: rd, cmdline: "console=hvc0 rdinit=/init" });
    const si = new DataView(readGuest(d, hv, BootLayout.startInfo, 56).buffer);
    expect(si.getUint32(0, true)).toBe(XEN_HVM_START_MAGIC_VALUE);
    expect(si.getUint32(12, true)).toBe(1); // nr_modules
    const modlist = Number(si.getBigUint64(16, true));
    const m = new DataView(readGuest(d, hv, modlist, 32).buffer);
    const paddr = Number(m.getBigUint64(0, true));
    const kernelEnd = LINUX_PERCPU_PADDR + 0x1000; // the highest segment's end
    expect({ paddr, size: Number(m.getBigUint64(8, true)), cmdline: m.getBigUint64(16, true) }).toEqual({ paddr: kernelEnd, size: 5000, cmdline: 0n });
    expect([...readGuest(d, hv, paddr, 5000)]).toEqual([...rd]);
    const cmd = readGuest(d, hv, Number(si.getBigUint64(24, true)), 26);
    expect(new TextDecoder().decode(cmd)).toBe("console=hvc0 rdinit=/init\0");
    const memmap = Number(si.getBigUint64(40, true));
    const entries = si.getUint32(48, true);
    const mm = new DataView(readGuest(d, hv, memmap, entries * 24).buffer);
    const ram = Array.from({ length: entries }, (_, i) => ({ addr: Number(mm.getBigUint64(i * 24, true)), size: Number(mm.getBigUint64(i * 24 + 8, true)), type: mm.getUint32(i * 24 + 16, true) })).filter((e) => e.type === XEN_HVM_MEMMAP_TYPE_RAM);
    expect(ram.some((e) => e.addr <= paddr && paddr + 5000 <= e.addr + e.size)).toBe(true);
    // The same map XENMEM_memory_map answers with (xen/memory.ts reads the boot's map): guestMemoryMap's, and the ACPI tables (ACPI NVS).
    const all = Array.from({ length: entries }, (_, i) => ({ addr: Number(mm.getBigUint64(i * 24, true)), size: Number(mm.getBigUint64(i * 24 + 8, true)), type: mm.getUint32(i * 24 + 16, true) }));
    expect(all).toEqual(d.boot!.memoryMap);
    expect(all.filter((e) => e.type !== 4)).toEqual(guestMemoryMap(64 * MiB));
    expect(all.filter((e) => e.type === 4)).toEqual([{ addr: 0xfc00_1000, size: d.boot!.acpi!.bytes.length, type: 4 }]);
    expect(d.boot?.modules).toEqual([{ name: "ramdisk", paddr: kernelEnd, size: 5000 }]);
  });

  it("a ramdisk that does not fit after the kernel is refused, naming it; so is one for a kernel that is not PVH", () => {
    const hv = new Hypervisor({ memoryMiB: 96 });
    expect(() => hv.createDomain({ name: "big", memoryMiB: 32, kernel: linuxLikeElf(NR_MODULES), ramdisk: new Uint8Array(14 * MiB) })).toThrow(/^[^]*ramdisk: 14680064 bytes at 0x1205000 \(the first page after the kernel\) do not fit in the guest's low RAM of 0x2000000 bytes/);
    const mem = { write: () => {}, zero: () => {} };
    const noNote = linuxLikeElf(NR_MODULES);
    new DataView(noNote.buffer).setUint16(56, 3, true); // drop the PT_NOTE: direct 64-bit boot
    expect(buildPvh(noNote, "", 64 * MiB, mem, { ramdisk: ramdisk(10) })).toMatchObject({ kind: "boot-error" });
  });
});

describe("a bzImage whose payload is an LZ4-compressed vmlinux (Debian's format)", () => {
  it("finds the payload through setup_sects and payload_offset, decompresses it with lz4js, and loads the ELF the PVH way", () => {
    const elf = linuxLikeElf(MODULE_SUM);
    const bz = bzImage(lz4LegacyWithSize(elf));
    const r = extractBzImage(bz);
    if ("kind" in r) throw new Error(r.message);
    expect({ version: r.version, setupSects: r.setupSects, payloadStart: r.payloadStart, format: r.format }).toEqual({ version: 0x020f, setupSects: 1, payloadStart: 0x410, format: "LZ4 (legacy)" });
    expect([...r.vmlinux]).toEqual([...elf]);
    for (const hap of [true, false]) {
      const hv = new Hypervisor({ memoryMiB: 96 });
      const rd = ramdisk(777);
      const d = hv.createDomain({ name: "bz", memoryMiB: 64, hap, kernel: bz, ramdisk: rd });
      expect(d.vcpus[0]!.vmcs.readNatural(F.GUEST_RIP)).toBe(ENTRY);
      expect(d.boot?.bzImage).toMatchObject({ version: 0x020f, format: "LZ4 (legacy)" });
      hv.run({ maxInstructions: 100_000 });
      expect(d.exitCode).toBe(rd.reduce((s, b) => s + b, 0));
    }
  });

  it("decodes a payload of several 8 MiB blocks", () => {
    const elf = linuxLikeElf(NR_MODULES, 9 * MiB);
    for (let i = 0x3000; i < elf.length; i += 4096) elf[i] = i & 0xff;
    const payload = lz4LegacyWithSize(elf);
    const r = extractBzImage(bzImage(payload));
    if ("kind" in r) throw new Error(r.message);
    expect(r.vmlinux.length).toBe(elf.length);
    expect(r.vmlinux.every((b, i) => b === elf[i])).toBe(true);
  });

  const bad: [string, () => Uint8Array, RegExp][] = [
    ["an old boot protocol (2.07)", () => bzImage(lz4LegacyWithSize(linuxLikeElf(NR_MODULES)), 0x0207), /^bzImage version: boot protocol 2\.07 is older than 2\.08/],
    ["a payload past the end of the file", () => bzImage(lz4LegacyWithSize(linuxLikeElf(NR_MODULES))).subarray(0, 0x500), /^bzImage payload_offset: the payload at 0x410 .* runs past the end of the 1280-byte file/],
    ["a gzip payload", () => bzImage(gzipSync(linuxLikeElf(NR_MODULES))), /^bzImage payload: compressed with gzip; vtlab decompresses only LZ4/],
    ["an unknown payload", () => bzImage(new Uint8Array(64).fill(0x41)), /^bzImage payload: unknown compression: it starts with 41 41 41 41 41 41/],
    [
      "a wrong appended size",
      () => {
        const p = lz4LegacyWithSize(linuxLikeElf(NR_MODULES));
        new DataView(p.buffer).setUint32(p.length - 4, 0x2fff, true);
        return bzImage(p);
      },
      /^bzImage payload: LZ4 block 0: decodes to \d+ bytes, more than the 12287 left/,
    ],
    [
      "a block size that runs past the payload",
      () => {
        const p = lz4LegacyWithSize(linuxLikeElf(NR_MODULES));
        new DataView(p.buffer).setUint32(4, p.length, true);
        return bzImage(p);
      },
      /^bzImage payload: LZ4 block 0: compressed size \d+ at payload offset 0x4 is 0 or runs past the payload/,
    ],
    [
      "an absurd appended size",
      () => {
        const p = lz4LegacyWithSize(linuxLikeElf(NR_MODULES));
        new DataView(p.buffer).setUint32(p.length - 4, 0xffff_ffff, true);
        return bzImage(p);
      },
      /^bzImage payload: appended size: the decompressed size 4294967295 .* above vtlab's 256 MiB limit/,
    ],
  ];
  for (const [what, make, message] of bad) {
    it(`refuses ${what}, naming the field`, () => {
      const r = extractBzImage(make());
      expect(r).toMatchObject({ kind: "bzimage-error" });
      expect("message" in r ? r.message : "").toMatch(message);
      const hv = new Hypervisor({ memoryMiB: 96 });
      expect(() => hv.createDomain({ name: "bz", memoryMiB: 64, kernel: make() })).toThrow(message.source.startsWith("^") ? new RegExp(`kernel: ${message.source.slice(1)}`) : message);
    });
  }
});
