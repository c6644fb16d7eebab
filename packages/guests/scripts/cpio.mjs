/* global TextEncoder */
// A writer for the cpio "newc" format (the SVR4 portable format without checksums, magic 070701)
// that the Linux kernel unpacks as its initramfs (Documentation/driver-api/early-userspace/
// buffer-format.rst, init/initramfs.c). Each entry is a 110-byte ASCII header (the magic and 13
// eight-digit hexadecimal fields), the NUL-terminated name padded so that header + name is a
// multiple of 4, then the data padded to a multiple of 4; the archive ends with the entry
// "TRAILER!!!". Names have no leading "/" and directories come before what they hold.
// Deterministic: inode numbers count from 1 in entry order, uid/gid 0, and mtime is the entry's
// (default 0), so the same entries give the same bytes.

/** Mode bits of the file type (stat.h). */
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
/** The newc magic and the trailer's name. */
export const CPIO_NEWC_MAGIC = "070701";
export const CPIO_TRAILER = "TRAILER!!!";
export const CPIO_HEADER_SIZE = 110;

const MAX_U32 = 0xffff_ffff;

function hex8(value, what) {
  if (!Number.isInteger(value) || value < 0 || value > MAX_U32) throw new RangeError(`cpio: ${what} ${value} does not fit an 8-digit hexadecimal field`);
  return value.toString(16).padStart(8, "0");
}

function checkPath(path) {
  if (typeof path !== "string" || path.length === 0) throw new TypeError("cpio: an entry has an empty path");
  if (path.startsWith("/") || path.split("/").some((p) => p === "" || p === "." || p === "..")) {
    throw new TypeError(`cpio: path "${path}": give a relative path without empty, "." or ".." components`);
  }
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) throw new TypeError(`cpio: path "${path}": character ${i} (code ${c}) is not printable ASCII`);
  }
}

const encoder = new TextEncoder();

function record(ino, mode, nlink, mtime, data, rdevMajor, rdevMinor, name, what) {
  const nameBytes = encoder.encode(name);
  const namesize = nameBytes.length + 1;
  const header =
    CPIO_NEWC_MAGIC +
    hex8(ino, `${what}: c_ino`) +
    hex8(mode, `${what}: c_mode`) +
    hex8(0, "c_uid") +
    hex8(0, "c_gid") +
    hex8(nlink, `${what}: c_nlink`) +
    hex8(mtime, `${what}: c_mtime`) +
    hex8(data.length, `${what}: c_filesize`) +
    hex8(0, "c_devmajor") +
    hex8(0, "c_devminor") +
    hex8(rdevMajor, `${what}: c_rdevmajor`) +
    hex8(rdevMinor, `${what}: c_rdevminor`) +
    hex8(namesize, `${what}: c_namesize`) +
    hex8(0, "c_check");
  const headLen = Math.ceil((CPIO_HEADER_SIZE + namesize) / 4) * 4;
  const out = new Uint8Array(headLen + Math.ceil(data.length / 4) * 4);
  out.set(encoder.encode(header), 0);
  out.set(nameBytes, CPIO_HEADER_SIZE);
  out.set(data, headLen);
  return out;
}

/**
 * The archive of `entries`, in their order. An entry is
 * `{ path, type: "dir" | "file" | "symlink" | "char", mode?, data?, target?, major?, minor?, mtime? }`:
 * `mode` is the permission bits (default 0o755 for directories and 0o644 for files; symlinks are
 * 0o777), `data` a file's bytes, `target` a symlink's target, `major`/`minor` a character
 * device's numbers. Throws a TypeError or RangeError naming the entry at fault.
 */
export function writeCpioNewc(entries) {
  const parts = [];
  const seen = new Set();
  let ino = 1;
  for (const e of entries) {
    checkPath(e.path);
    if (seen.has(e.path)) throw new TypeError(`cpio: path "${e.path}" is listed twice`);
    seen.add(e.path);
    const what = `entry "${e.path}"`;
    const mtime = e.mtime ?? 0;
    const perm = (fallback) => {
      const m = e.mode ?? fallback;
      if (!Number.isInteger(m) || m < 0 || m > 0o7777) throw new RangeError(`cpio: ${what}: mode 0o${Number(m).toString(8)} is not permission bits (0..0o7777)`);
      return m;
    };
    switch (e.type) {
      case "dir":
        parts.push(record(ino++, S_IFDIR | perm(0o755), 2, mtime, new Uint8Array(0), 0, 0, e.path, what));
        break;
      case "file":
        if (!(e.data instanceof Uint8Array)) throw new TypeError(`cpio: ${what}: a file needs its data as a Uint8Array`);
        parts.push(record(ino++, S_IFREG | perm(0o644), 1, mtime, e.data, 0, 0, e.path, what));
        break;
      case "symlink":
        if (typeof e.target !== "string" || e.target.length === 0) throw new TypeError(`cpio: ${what}: a symlink needs a target`);
        parts.push(record(ino++, S_IFLNK | 0o777, 1, mtime, encoder.encode(e.target), 0, 0, e.path, what));
        break;
      case "char":
        parts.push(record(ino++, S_IFCHR | perm(0o600), 1, mtime, new Uint8Array(0), e.major ?? -1, e.minor ?? -1, e.path, what));
        break;
      default:
        throw new TypeError(`cpio: ${what}: type "${e.type}" is none of dir, file, symlink, char`);
    }
  }
  parts.push(record(0, 0, 1, 0, new Uint8Array(0), 0, 0, CPIO_TRAILER, "the trailer"));
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
