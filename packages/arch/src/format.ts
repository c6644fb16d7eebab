/**
 * Formatting numbers and user input for messages: one hex formatter for every address, size and
 * value a message prints, and one way to echo back text a user gave (a config line, a path).
 *
 * `formatHex` refuses what is not a non-negative integer (a negative number, NaN, an infinity, a
 * fraction): such a value in a message (`0x-1000`, `0xNaN`) is a vtlab bug, so it throws a
 * RangeError rather than print a number that cannot be an address. Callers validate first.
 * Values above 2^53 cannot be exact in a JS number: give them as two 32-bit halves to
 * `formatHex64`.
 */

/** `0x` and the lowercase hex digits of `n`, a non-negative integer (padded to `digits` when given). Throws RangeError otherwise. */
export function formatHex(n: number, digits = 0): string {
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0) {
    throw new RangeError(`vtlab bug: formatHex(${String(n)}): not a non-negative integer`);
  }
  return `0x${n.toString(16).padStart(digits, "0")}`;
}

/** `0x` and the hex digits of the 64-bit value `hi:lo` (each an unsigned 32-bit half), exact at any size. */
export function formatHex64(hi: number, lo: number): string {
  if (!isU32(hi) || !isU32(lo)) throw new RangeError(`vtlab bug: formatHex64(${String(hi)}, ${String(lo)}): halves must be unsigned 32-bit integers`);
  return hi === 0 ? formatHex(lo) : `0x${hi.toString(16)}${lo.toString(16).padStart(8, "0")}`;
}

function isU32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff;
}

/** The longest echo of user input a message carries by default (characters, before escaping). */
export const ECHO_MAX_CHARS = 120;

/**
 * `text` as a message may quote it: control characters (C0 but none spared, DEL, C1) and the
 * line and paragraph separators as `\xNN` / `\uNNNN`, backslashes doubled, and at most `max`
 * characters of it, the rest summarised as `... (N more characters)`. Multi-megabyte input stays
 * a one-line message.
 */
export function echoInput(text: string, max = ECHO_MAX_CHARS): string {
  const head = text.length > max ? text.slice(0, max) : text;
  let out = "";
  for (let i = 0; i < head.length; i++) {
    const c = head.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) out += `\\x${c.toString(16).padStart(2, "0")}`;
    else if (c === 0x2028 || c === 0x2029 || (c >= 0xd800 && c <= 0xdfff && !pairedSurrogate(head, i))) out += `\\u${c.toString(16).padStart(4, "0")}`;
    else if (c === 0x5c) out += "\\\\";
    else out += head[i];
  }
  return text.length > max ? `${out}... (${text.length - max} more characters)` : out;
}

/** Whether the surrogate at `i` is half of a well-formed pair (kept as is; a lone one is escaped). */
function pairedSurrogate(s: string, i: number): boolean {
  const c = s.charCodeAt(i);
  if (c <= 0xdbff) {
    const d = s.charCodeAt(i + 1);
    return d >= 0xdc00 && d <= 0xdfff;
  }
  const b = s.charCodeAt(i - 1);
  return b >= 0xd800 && b <= 0xdbff;
}
