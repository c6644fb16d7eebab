import { describe, expect, expectTypeOf, it } from "vitest";
import { gpa, gva, hpa, mfn, mfnOf, hpaOf, type Gpa, type Gva, type Hpa, type Mfn } from "@vtlab/arch";

// Type-level tests: these lines are checked by `tsc` (the typecheck task), and a brand that
// could be mixed would make an @ts-expect-error line unused, which tsc reports as an error.
function takesHpa(a: Hpa): number {
  return a;
}

describe("address-space brands", () => {
  it("cost nothing at run time and cannot be mixed at compile time", () => {
    const g: Gpa = gpa(0x1000);
    const h: Hpa = hpa(0x2000);
    const v: Gva = gva(0x3000);
    expect(takesHpa(h)).toBe(0x2000);
    // @ts-expect-error a guest-physical address is not a machine address
    takesHpa(g);
    // @ts-expect-error nor is a guest-virtual one
    takesHpa(v);
    // @ts-expect-error nor a plain number
    takesHpa(0x1000);
    expectTypeOf(mfnOf(h)).toEqualTypeOf<Mfn>();
    expectTypeOf(hpaOf(mfn(2))).toEqualTypeOf<Hpa>();
    expect(mfnOf(hpa(0x12_3456_7000))).toBe(0x12_3456_7);
    expect(hpaOf(mfn(0x10), 0x10)).toBe(0x10010);
    expectTypeOf<Gpa>().not.toEqualTypeOf<Hpa>();
  });
});
