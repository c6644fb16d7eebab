/**
 * Xenstore paths and values as bytes (io/xs_wire.h carries them as byte strings; Linux's xenbus and
 * xenstored treat values as UTF-8 text in practice). The library packages target plain ES2022
 * without the DOM or Node libraries, so there is no TextEncoder/TextDecoder: these are the two
 * conversions, allocation-light.
 */

/** `s` as UTF-8 bytes (lone surrogates become U+FFFD's three bytes). */
export function utf8Encode(s: string): Uint8Array {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.codePointAt(i)!;
    if (c > 0xffff) i++;
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (let i = 0; i < s.length; i++) {
    let c = s.codePointAt(i)!;
    if (c > 0xffff) i++;
    else if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    if (c < 0x80) out[o++] = c;
    else if (c < 0x800) {
      out[o++] = 0xc0 | (c >>> 6);
      out[o++] = 0x80 | (c & 0x3f);
    } else if (c < 0x10000) {
      out[o++] = 0xe0 | (c >>> 12);
      out[o++] = 0x80 | ((c >>> 6) & 0x3f);
      out[o++] = 0x80 | (c & 0x3f);
    } else {
      out[o++] = 0xf0 | (c >>> 18);
      out[o++] = 0x80 | ((c >>> 12) & 0x3f);
      out[o++] = 0x80 | ((c >>> 6) & 0x3f);
      out[o++] = 0x80 | (c & 0x3f);
    }
  }
  return out;
}

/**
 * UTF-8 bytes as a string, decoded as the WHATWG Encoding standard's UTF-8 decoder does (what
 * TextDecoder gives): each maximal ill-formed subsequence (overlong, surrogate, past U+10FFFF,
 * truncated) becomes one U+FFFD.
 */
export function utf8Decode(b: Uint8Array): string {
  const parts: string[] = [];
  let chunk: number[] = [];
  let cp = 0, seen = 0, needed = 0, lower = 0x80, upper = 0xbf;
  for (let i = 0; i < b.length; i++) {
    const x = b[i]!;
    if (needed === 0) {
      if (x <= 0x7f) chunk.push(x);
      else if (x >= 0xc2 && x <= 0xdf) {
        needed = 1;
        cp = x & 0x1f;
      } else if (x >= 0xe0 && x <= 0xef) {
        if (x === 0xe0) lower = 0xa0;
        if (x === 0xed) upper = 0x9f;
        needed = 2;
        cp = x & 0x0f;
      } else if (x >= 0xf0 && x <= 0xf4) {
        if (x === 0xf0) lower = 0x90;
        if (x === 0xf4) upper = 0x8f;
        needed = 3;
        cp = x & 0x07;
      } else chunk.push(0xfffd);
    } else if (x < lower || x > upper) {
      cp = seen = needed = 0;
      lower = 0x80;
      upper = 0xbf;
      chunk.push(0xfffd);
      i--; // the byte starts over
    } else {
      lower = 0x80;
      upper = 0xbf;
      cp = (cp << 6) | (x & 0x3f);
      if (++seen === needed) {
        chunk.push(cp);
        cp = seen = needed = 0;
      }
    }
    if (chunk.length >= 4096) {
      parts.push(String.fromCodePoint(...chunk));
      chunk = [];
    }
  }
  if (needed !== 0) chunk.push(0xfffd);
  if (chunk.length > 0) parts.push(String.fromCodePoint(...chunk));
  return parts.join("");
}

/** Bytes as a string, one character per byte (Latin-1), for byte-exact paths. */
export function latin1Decode(b: Uint8Array): string {
  const parts: string[] = [];
  for (let i = 0; i < b.length; i += 4096) parts.push(String.fromCharCode(...b.subarray(i, Math.min(b.length, i + 4096))));
  return parts.join("");
}
