import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { DEFAULT_COST_MODEL, SimClock, costModel, modelledCycles } from "@vtlab/arch";

describe("SimClock", () => {
  it("fires timers in deadline order, ties in scheduling order, and honours cancel", () => {
    const clock = new SimClock(1_000_000_000);
    const fired: string[] = [];
    clock.schedule(300, () => fired.push("c"));
    clock.schedule(100, () => fired.push("a1"));
    clock.schedule(100, () => fired.push("a2"));
    const gone = clock.after(200, () => fired.push("never"));
    clock.cancel(gone);
    expect(clock.nextDeadline()).toBe(100);
    clock.advance(150);
    expect(clock.runDue()).toBe(2);
    expect(clock.nextDeadline()).toBe(300);
    clock.advanceToNextDeadline();
    expect(clock.runDue()).toBe(1);
    expect(fired).toEqual(["a1", "a2", "c"]);
    expect(clock.cycles).toBe(300);
    expect(clock.nanoseconds).toBe(300);
    expect(() => clock.advance(-1)).toThrow(RangeError);
    expect(() => new SimClock(0)).toThrow(/frequency/);
  });

  it("a timer may schedule another, and runs are deterministic", () => {
    const run = () => {
      const clock = new SimClock();
      const seen: number[] = [];
      const tick = (now: number) => {
        seen.push(now);
        if (seen.length < 5) clock.after(1000, tick);
      };
      clock.after(1000, tick);
      for (let i = 0; i < 10; i++) {
        clock.advance(700);
        clock.runDue();
      }
      return seen;
    };
    // deadlines 1000, 2400, 3800, 5200, 6600 are seen at the next 700-cycle step
    expect(run()).toEqual([1400, 2800, 4200, 5600, 7000]);
    expect(run()).toEqual(run());
  });
});

describe("SimClock nanoseconds", () => {
  it("is exact at 2 GHz however long the run: a whole nanosecond is reached at its cycle (Debian's Linux: 9914494698 cycles once read as 4957247348.999999 ns)", () => {
    const c = new SimClock();
    c.advance(9_914_494_698);
    expect(c.nanoseconds).toBe(4_957_247_349);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (cycles) => {
        const k = new SimClock();
        k.advance(cycles);
        return k.nanoseconds === cycles / 2 && Math.floor(k.nanoseconds) * 2 <= cycles;
      }),
    );
  });

  it("is exact at 1 GHz and 4 GHz too, and within one part in 2^52 at 3 GHz", () => {
    const one = new SimClock(1e9);
    one.advance(123_456_789_012_345);
    expect(one.nanoseconds).toBe(123_456_789_012_345);
    const four = new SimClock(4e9);
    four.advance(4 * 123_456_789_012);
    expect(four.nanoseconds).toBe(123_456_789_012);
    const three = new SimClock(3e9);
    three.advance(3 * 2_000_000_000_001);
    expect(Math.abs(three.nanoseconds - 2_000_000_000_001)).toBeLessThanOrEqual(2_000_000_000_001 * 2 ** -52);
  });
});

describe("CostModel", () => {
  it("prices counts, and rejects unknown or negative figures by name", () => {
    expect(modelledCycles({ instructions: 10, vmExits: 2 })).toBe(10 * DEFAULT_COST_MODEL.instruction + 2 * DEFAULT_COST_MODEL.vmExitEntry);
    const m = costModel({ vmExitEntry: 500 });
    expect(modelledCycles({ vmExits: 3, memoryReferences: 24 }, m)).toBe(1500 + 24 * DEFAULT_COST_MODEL.memoryReference);
    expect(() => costModel({ vmExitEntry: -1 })).toThrow(/vmExitEntry/);
    expect(() => costModel({ bogus: 1 } as never)).toThrow(/unknown cost-model figure "bogus"/);
    expect(Object.isFrozen(DEFAULT_COST_MODEL)).toBe(true);
  });
});
