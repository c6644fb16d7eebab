/** The xenstore string conversions against the host's TextEncoder/TextDecoder (an independent oracle; tests may use them). */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { latin1Decode, utf8Decode, utf8Encode } from "@vtlab/xen-public";

describe("utf8Encode / utf8Decode", () => {
  it("encode agrees with TextEncoder on any string, and decode inverts it", () => {
    const enc = new TextEncoder();
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 200 }), (s) => {
        expect(Array.from(utf8Encode(s))).toEqual(Array.from(enc.encode(s)));
        expect(utf8Decode(utf8Encode(s))).toBe(new TextDecoder().decode(enc.encode(s)));
      }),
      { numRuns: 300 },
    );
  });

  it("decode agrees with TextDecoder on arbitrary bytes (invalid sequences become U+FFFD)", () => {
    const dec = new TextDecoder("utf-8");
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        expect(utf8Decode(b)).toBe(dec.decode(b));
      }),
      { numRuns: 500 },
    );
    for (const bad of [[0xc0, 0x80], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82]]) {
      expect(utf8Decode(Uint8Array.from(bad))).toBe(dec.decode(Uint8Array.from(bad)));
    }
  });

  it("latin1Decode maps each byte to one character, for long inputs too", () => {
    const b = Uint8Array.from({ length: 10_000 }, (_, i) => i & 0xff);
    const s = latin1Decode(b);
    expect(s.length).toBe(b.length);
    expect(s.charCodeAt(9999)).toBe(9999 & 0xff);
  });
});
