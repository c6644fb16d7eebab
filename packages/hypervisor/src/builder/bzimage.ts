/**
 * A Linux bzImage as the `kernel` (the Linux/x86 boot protocol, Documentation/x86/boot.rst),
 * loaded the way Xen's toolstack loads it (tools/libs/guest/xg_dom_bzimageloader.c): the setup
 * header names where the protected-mode kernel's compressed payload lies (payload_offset and
 * payload_length, protocol 2.08 and later); the payload is the kernel's `vmlinux` ELF, compressed;
 * it is decompressed and then loaded as any ELF kernel, the PVH way (builder/pvh.ts). The setup
 * code and the kernel's own decompressor never run.
 *
 * The decompression itself is the npm package lz4js (LZ4 blocks); this file only reads the
 * framing around them. Debian 12's kernels are LZ4 (CONFIG_KERNEL_LZ4=y): the payload is the
 * "legacy" LZ4 format that the `lz4 -l` tool writes (a magic number, then blocks of at most
 * 8 MiB of output each with its compressed size before it), followed by the 4-byte uncompressed
 * size the kernel's build appends (scripts/Makefile.lib, size_append). Other payload formats
 * (gzip, xz, zstd, ...) are recognized by their magic and refused with their name: only LZ4, the
 * format Debian uses, is decompressed here.
 *
 * The image is the toolstack's input (the administrator's file), not the guest's; it is still
 * checked field by field before it is used, and each problem names the header field at fault.
 */
import { decompressBlock } from "lz4js";

/** Offsets in the real-mode kernel header (boot.rst, "THE REAL-MODE KERNEL HEADER"). */
export const BzImageHeader = {
  /** setup_sects (u8): the setup code's size in 512-byte sectors; 0 means 4. */
  setup_sects: 0x1f1,
  /** boot_flag (u16): 0xAA55. */
  boot_flag: 0x1fe,
  /** header (u32): the magic "HdrS". */
  header: 0x202,
  /** version (u16): the boot protocol version, major.minor as 0xMMmm. */
  version: 0x206,
  /** payload_offset (u32, 2.08+): from the start of the protected-mode code. */
  payload_offset: 0x248,
  /** payload_length (u32, 2.08+). */
  payload_length: 0x24c,
} as const;

/** boot_flag's value, 0xAA55. */
export const BZ_BOOT_FLAG = 0xaa55;
/** header's value: "HdrS" read as a little-endian u32. */
export const BZ_HDRS_MAGIC = 0x53726448;
/** The first protocol version with payload_offset / payload_length. */
export const BZ_MIN_PAYLOAD_VERSION = 0x0208;
/** The sector size setup_sects counts in. */
export const BZ_SECTOR_SIZE = 512;
/** The LZ4 legacy frame's magic number (lz4's lz4io.c LEGACY_MAGICNUMBER, Linux's ARCHIVE_MAGICNUMBER). */
export const LZ4_LEGACY_MAGIC = 0x184c2102;
/** Uncompressed bytes per LZ4 legacy block, at most (LEGACY_BLOCKSIZE: 8 MiB). */
export const LZ4_LEGACY_BLOCK_SIZE = 8 * 1024 * 1024;
/**
 * The largest decompressed kernel vtlab accepts (its own limit, not the boot protocol's): the
 * appended size is read from the file, and it decides how much memory is allocated.
 */
export const MAX_VMLINUX_SIZE = 256 * 1024 * 1024;

/** The compressed payload formats the kernel's build can produce, by their leading bytes. */
const PAYLOAD_FORMATS: readonly { readonly name: string; readonly magic: readonly number[] }[] = [
  { name: "LZ4 (legacy)", magic: [0x02, 0x21, 0x4c, 0x18] },
  { name: "gzip", magic: [0x1f, 0x8b] },
  { name: "xz", magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] },
  { name: "zstd", magic: [0x28, 0xb5, 0x2f, 0xfd] },
  { name: "bzip2", magic: [0x42, 0x5a, 0x68] },
  { name: "LZMA", magic: [0x5d, 0x00, 0x00] },
  { name: "LZO", magic: [0x89, 0x4c, 0x5a, 0x4f] },
];

export interface BzImageInfo {
  /** The boot protocol version (0x020f for Linux 6.1). */
  readonly version: number;
  /** setup_sects as used (4 where the field is 0). */
  readonly setupSects: number;
  /** Where the payload starts in the file, and its length. */
  readonly payloadStart: number;
  readonly payloadLength: number;
  /** The payload's compression ("LZ4 (legacy)"). */
  readonly format: string;
  /** The decompressed vmlinux ELF. */
  readonly vmlinux: Uint8Array;
}

export interface BzImageError {
  readonly kind: "bzimage-error";
  /** The header field or structure at fault ("payload_offset", "payload: LZ4 block 3"). */
  readonly field: string;
  readonly message: string;
}

function err(field: string, message: string): BzImageError {
  return { kind: "bzimage-error", field, message: `bzImage ${field}: ${message}` };
}

/** True when `image` carries the boot protocol's setup header (boot_flag 0xAA55 and "HdrS"). */
export function isBzImage(image: Uint8Array): boolean {
  if (image.length < BzImageHeader.payload_length + 4) return false;
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  return dv.getUint16(BzImageHeader.boot_flag, true) === BZ_BOOT_FLAG && dv.getUint32(BzImageHeader.header, true) === BZ_HDRS_MAGIC;
}

/** Find the compressed payload of a bzImage and decompress it into the vmlinux ELF. */
export function extractBzImage(image: Uint8Array): BzImageInfo | BzImageError {
  if (!isBzImage(image)) return err("header", "no setup header (boot_flag 0xAA55 at 0x1fe and \"HdrS\" at 0x202)");
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const version = dv.getUint16(BzImageHeader.version, true);
  if (version < BZ_MIN_PAYLOAD_VERSION) {
    return err("version", `boot protocol ${version >> 8}.${(version & 0xff).toString().padStart(2, "0")} is older than 2.08, which first gives payload_offset and payload_length`);
  }
  const setupSects = image[BzImageHeader.setup_sects] || 4;
  const payloadOffset = dv.getUint32(BzImageHeader.payload_offset, true);
  const payloadLength = dv.getUint32(BzImageHeader.payload_length, true);
  const payloadStart = (setupSects + 1) * BZ_SECTOR_SIZE + payloadOffset;
  if (payloadStart + payloadLength > image.length) {
    return err("payload_offset", `the payload at 0x${payloadStart.toString(16)} ((setup_sects ${setupSects} + 1) * 512 + payload_offset 0x${payloadOffset.toString(16)}), 0x${payloadLength.toString(16)} bytes long (payload_length), runs past the end of the ${image.length}-byte file`);
  }
  const payload = image.subarray(payloadStart, payloadStart + payloadLength);
  const format = PAYLOAD_FORMATS.find((f) => f.magic.every((b, i) => payload[i] === b));
  if (format === undefined) {
    return err("payload", `unknown compression: it starts with ${[...payload.subarray(0, 6)].map((b) => b.toString(16).padStart(2, "0")).join(" ")}, the magic of none of LZ4, gzip, xz, zstd, bzip2, LZMA, LZO`);
  }
  if (format.name !== "LZ4 (legacy)") return err("payload", `compressed with ${format.name}; vtlab decompresses only LZ4, the format Debian's kernels use (CONFIG_KERNEL_LZ4)`);
  const vmlinux = decompressLz4Legacy(payload);
  if ("kind" in vmlinux) return vmlinux;
  return { version, setupSects, payloadStart, payloadLength, format: format.name, vmlinux };
}

/**
 * The LZ4 legacy frame with the kernel's appended size: magic, then (u32 compressed size,
 * block)... up to the last 4 bytes, which give the decompressed size. A block size equal to the
 * magic starts a further concatenated frame (as Linux's unlz4 reads it). Each block is handed to
 * lz4js; a block that decodes to more than 8 MiB or past the announced size is refused.
 */
function decompressLz4Legacy(payload: Uint8Array): Uint8Array | BzImageError {
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  if (payload.length < 8) return err("payload", `${payload.length} bytes: too short for an LZ4 frame and the appended size`);
  const end = payload.length - 4;
  const size = dv.getUint32(end, true);
  if (size === 0 || size > MAX_VMLINUX_SIZE) return err("payload: appended size", `the decompressed size ${size} (the payload's last 4 bytes) is 0 or above vtlab's ${MAX_VMLINUX_SIZE / 1048576} MiB limit`);
  const out = new Uint8Array(size);
  let at = 4; // past the magic
  let done = 0;
  for (let block = 0; at < end; block++) {
    if (at + 4 > end) return err(`payload: LZ4 block ${block}`, `a truncated block size at payload offset 0x${at.toString(16)}`);
    const compressed = dv.getUint32(at, true);
    at += 4;
    if (compressed === LZ4_LEGACY_MAGIC) continue;
    if (compressed === 0 || at + compressed > end) return err(`payload: LZ4 block ${block}`, `compressed size ${compressed} at payload offset 0x${(at - 4).toString(16)} is 0 or runs past the payload`);
    const room = Math.min(LZ4_LEGACY_BLOCK_SIZE, size - done);
    // Decode into a window of the output: writes past it are dropped by the typed array, and a
    // decoded length beyond it is refused below.
    const window = out.subarray(done, done + room);
    const produced = decompressBlock(payload, window, at, compressed, 0);
    if (!Number.isInteger(produced) || produced > room) {
      return err(`payload: LZ4 block ${block}`, `decodes to ${produced} bytes, more than the ${room} left of the 8 MiB block or of the ${size}-byte image`);
    }
    done += produced;
    at += compressed;
  }
  if (done !== size) return err("payload: appended size", `the blocks decode to ${done} bytes, not the ${size} the payload's last 4 bytes announce`);
  return out;
}
