import { describe, expect, it } from "vitest";
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
