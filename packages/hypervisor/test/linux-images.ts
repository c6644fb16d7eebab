/**
 * Synthetic kernels shaped like Linux's, for the loader tests: an ELF64 `vmlinux` whose program
 * headers have higher-half virtual addresses (0xffffffff81000000 and up) and physical ones from
 * 16 MiB, a per-CPU segment at virtual 0, and an 8-byte XEN_ELFNOTE_PHYS32_ENTRY (Linux's is a
 * .quad); and a bzImage around such an ELF, compressed with lz4js into the LZ4 legacy frame with
 * the appended size, as the kernel's build writes it.
 */
import { compressBlock, compressBound } from "lz4js";
import { EM_X86_64, ET_EXEC, PF_R, PF_W, PF_X, PT_LOAD, PT_NOTE, XEN_ELFNOTE_PHYS32_ENTRY } from "@vtlab/hypervisor";

export const LINUX_TEXT_VADDR = 0xffff_ffff_8100_0000n;
export const LINUX_TEXT_PADDR = 0x100_0000;
/** Where the PVH entry lies in the text segment (Linux 6.1's pvh_start_xen is at 0x1000850 in the issue's kernel). */
export const LINUX_ENTRY_OFFSET = 0x850;
export const LINUX_DATA_VADDR = 0xffff_ffff_8120_0000n;
export const LINUX_DATA_PADDR = 0x120_0000;
export const LINUX_PERCPU_PADDR = 0x120_4000;
/** The data segment: 0x100 bytes of file, 0x3000 in memory (.bss). */
export const LINUX_DATA_FILESZ = 0x100;
export const LINUX_DATA_MEMSZ = 0x3000;

/** A Linux-shaped ELF64 with 32-bit `code` at the PVH entry; `tail` extra zero bytes at the end of the file. */
export function linuxLikeElf(code: Uint8Array, tail = 0): Uint8Array {
  const b = new Uint8Array(0x3000 + tail);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 0x7f454c46, false);
  b[4] = 2; // ELFCLASS64
  b[5] = 1; // ELFDATA2LSB
  b[6] = 1; // EV_CURRENT
  dv.setUint16(16, ET_EXEC, true);
  dv.setUint16(18, EM_X86_64, true);
  dv.setUint32(20, 1, true);
  dv.setBigUint64(24, LINUX_TEXT_VADDR, true); // e_entry: virtual, beyond 2^53
  dv.setUint32(32, 64, true); // e_phoff
  dv.setUint16(52, 64, true);
  dv.setUint16(54, 56, true);
  dv.setUint16(56, 4, true);
  const phdr = (k: number, type: number, flags: number, offset: number, vaddr: bigint, paddr: number, filesz: number, memsz: number) => {
    const at = 64 + k * 56;
    dv.setUint32(at, type, true);
    dv.setUint32(at + 4, flags, true);
    dv.setBigUint64(at + 8, BigInt(offset), true);
    dv.setBigUint64(at + 16, vaddr, true);
    dv.setBigUint64(at + 24, BigInt(paddr), true);
    dv.setBigUint64(at + 32, BigInt(filesz), true);
    dv.setBigUint64(at + 40, BigInt(memsz), true);
  };
  phdr(0, PT_LOAD, PF_R | PF_X, 0x1000, LINUX_TEXT_VADDR, LINUX_TEXT_PADDR, 0x1000, 0x1000);
  phdr(1, PT_LOAD, PF_R | PF_W, 0x2000, LINUX_DATA_VADDR, LINUX_DATA_PADDR, LINUX_DATA_FILESZ, LINUX_DATA_MEMSZ);
  phdr(2, PT_LOAD, PF_R | PF_W, 0x2100, 0n, LINUX_PERCPU_PADDR, 0x40, 0x1000); // .data..percpu
  phdr(3, PT_NOTE, PF_R, 0x2200, LINUX_TEXT_VADDR + 0x1200n, LINUX_TEXT_PADDR + 0x1200, 24, 24);
  dv.setUint32(0x2200, 4, true); // namesz
  dv.setUint32(0x2204, 8, true); // descsz: a .quad
  dv.setUint32(0x2208, XEN_ELFNOTE_PHYS32_ENTRY, true);
  b.set([0x58, 0x65, 0x6e, 0], 0x220c); // "Xen"
  dv.setBigUint64(0x2210, BigInt(LINUX_TEXT_PADDR + LINUX_ENTRY_OFFSET), true);
  b.fill(0xcc, 0x1000, 0x2000); // int3 around the entry
  b.set(code, 0x1000 + LINUX_ENTRY_OFFSET);
  for (let i = 0; i < LINUX_DATA_FILESZ; i++) b[0x2000 + i] = (i * 3 + 1) & 0xff;
  b.fill(0x5a, 0x2100, 0x2140);
  return b;
}

/** The LZ4 legacy frame (magic, then size-prefixed blocks of at most 8 MiB of input) and the appended u32 size. */
export function lz4LegacyWithSize(data: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [Uint8Array.of(0x02, 0x21, 0x4c, 0x18)];
  const BLOCK = 8 * 1024 * 1024;
  for (let at = 0; at < data.length; at += BLOCK) {
    const chunk = data.subarray(at, Math.min(data.length, at + BLOCK));
    const out = new Uint8Array(compressBound(chunk.length));
    const n = compressBlock(chunk, out, 0, chunk.length, new Uint32Array(1 << 16));
    if (n === 0) throw new Error("lz4js: block did not compress (store it raw is not in the legacy format)");
    const size = new Uint8Array(4);
    new DataView(size.buffer).setUint32(0, n, true);
    parts.push(size, out.subarray(0, n));
  }
  const tail = new Uint8Array(4);
  new DataView(tail.buffer).setUint32(0, data.length, true);
  parts.push(tail);
  const total = parts.reduce((s, p) => s + p.length, 0);
  const res = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    res.set(p, o);
    o += p.length;
  }
  return res;
}

/** A bzImage (boot protocol `version`, setup_sects 1) whose payload is `payload`, 0x10 bytes into the protected-mode code. */
export function bzImage(payload: Uint8Array, version = 0x020f): Uint8Array {
  const pm = 2 * 512; // (setup_sects 1 + 1) sectors
  const b = new Uint8Array(pm + 0x10 + payload.length);
  const dv = new DataView(b.buffer);
  b[0x1f1] = 1;
  dv.setUint16(0x1fe, 0xaa55, true);
  dv.setUint32(0x202, 0x53726448, true); // "HdrS"
  dv.setUint16(0x206, version, true);
  dv.setUint32(0x248, 0x10, true); // payload_offset
  dv.setUint32(0x24c, payload.length, true); // payload_length
  b.set(payload, pm + 0x10);
  return b;
}
