/**
 * An independent statement of the EPT permission rules, written from the SDM's prose (Vol. 3C
 * 29.3.3.1 "EPT Misconfigurations", 29.3.3.2 "EPT Violations", Table 28-7), not from the
 * implementation. Input: bits 2:0 (XWR) of each EPT entry a walk reads, top level first.
 */
export type SdmOutcome =
  | { readonly kind: "ok"; readonly permitted: number }
  | { readonly kind: "violation"; readonly permitted: number; readonly level: number }
  | { readonly kind: "misconfig"; readonly level: number };

/** Access bits as in the qualification: 1 read, 2 write, 4 fetch. */
export function sdmEptOutcome(xwrTopDown: readonly number[], levels: readonly number[], access: number, executeOnlySupported: boolean): SdmOutcome {
  let permitted = 0b111;
  for (let i = 0; i < xwrTopDown.length; i++) {
    const xwr = xwrTopDown[i] as number;
    const level = levels[i] as number;
    // "If bits 2:0 of an EPT paging-structure entry are all 0, the entry is not present":
    // translation encountering it causes an EPT violation; the AND of bits 3:5 includes it.
    if (xwr === 0b000) return { kind: "violation", permitted: 0, level };
    // "The value of bits 2:0 ... is either 010b (write-only) or 110b (write/execute)."
    if (xwr === 0b010 || xwr === 0b110) return { kind: "misconfig", level };
    // "The value of bits 2:0 is 100b (execute-only) and this value is not supported."
    if (xwr === 0b100 && !executeOnlySupported) return { kind: "misconfig", level };
    permitted &= xwr;
  }
  // "The access is a data read and bit 0 was clear in any of the EPT paging-structure entries
  // used to translate", likewise bit 1 for writes and bit 2 for fetches.
  if ((access & 1) !== 0 && (permitted & 1) === 0) return { kind: "violation", permitted, level: levels[levels.length - 1] as number };
  if ((access & 2) !== 0 && (permitted & 2) === 0) return { kind: "violation", permitted, level: levels[levels.length - 1] as number };
  if ((access & 4) !== 0 && (permitted & 4) === 0) return { kind: "violation", permitted, level: levels[levels.length - 1] as number };
  return { kind: "ok", permitted };
}
