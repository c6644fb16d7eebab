import { describe, expect, it } from "vitest";
import { ECHO_MAX_CHARS, echoInput, formatHex, formatHex64 } from "../src/index.js";

describe("formatHex", () => {
  it("prints non-negative integers in lowercase hex, padded on request", () => {
    expect(formatHex(0)).toBe("0x0");
    expect(formatHex(0xfee0_0000)).toBe("0xfee00000");
    expect(formatHex(0x1f, 4)).toBe("0x001f");
    expect(formatHex(2 ** 52)).toBe("0x10000000000000");
  });

  it("refuses negative numbers, NaN, infinities and fractions (no 0x-1000, no 0xNaN)", () => {
    for (const bad of [-1, -0x1000, Number.NaN, Infinity, -Infinity, 1.5]) {
      expect(() => formatHex(bad)).toThrow(RangeError);
    }
  });

  it("prints a 64-bit value from its halves exactly", () => {
    expect(formatHex64(0xffff_ffff, 0x8100_0000)).toBe("0xffffffff81000000");
    expect(formatHex64(0, 0x1000)).toBe("0x1000");
    expect(formatHex64(1, 0)).toBe("0x100000000");
    expect(() => formatHex64(-1, 0)).toThrow(RangeError);
    expect(() => formatHex64(0, 2 ** 32)).toThrow(RangeError);
  });
});

describe("echoInput", () => {
  it("escapes control characters, DEL, C1, separators and backslashes", () => {
    expect(echoInput("a\u0000b\u001b[2Jc\u007f\u0085\u2028\\")).toBe("a\\x00b\\x1b[2Jc\\x7f\\x85\\u2028\\\\");
    expect(echoInput("tab\there\nline")).toBe("tab\\x09here\\x0aline");
  });

  it("keeps printable text, paired surrogates included, and escapes a lone surrogate", () => {
    expect(echoInput("kernel.elf \u00e9 \ud83d\ude00")).toBe("kernel.elf \u00e9 \ud83d\ude00");
    expect(echoInput("x\ud800y")).toBe("x\\ud800y");
  });

  it("truncates multi-megabyte input to a bounded one-line echo", () => {
    const big = "A".repeat(4 * 1024 * 1024);
    const e = echoInput(big);
    expect(e.length).toBeLessThan(ECHO_MAX_CHARS + 60);
    expect(e).toContain(`(${big.length - ECHO_MAX_CHARS} more characters)`);
    expect(echoInput("abcdef", 3)).toBe("abc... (3 more characters)");
  });
});
