/**
 * A hostile guest cannot starve its neighbour (issue 18, "The other domain is starved"): each
 * hostile guest of packages/guests/c/hostile/sched-*.c runs beside a well-behaved domain (the
 * `format` guest, 54 lines), which must finish with its full output within a bound on the run's
 * instructions, on EPT and on shadow paging. Every way a guest spends host time is charged to
 * its slice: the iterations of a REP, exception deliveries, the elements of a string-I/O exit.
 * A vCPU blocked for good (`sti; hlt` with a timer that can never be taken) ends the run as
 * idle, with the domain reported blocked; time the idle host jumps through without waking anyone
 * is charged to the budget.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { guestExpectedOutputUrl, guestImageUrl, hostileGuestUrl } from "@vtlab/guests";
import { HYPERVISOR_vcpu_op, VCPUOP_set_periodic_timer, vcpu_set_periodic_timer } from "@vtlab/xen-public";
import { Hypervisor, type Domain, type RunResult } from "@vtlab/hypervisor";
import { Asm, DATA, image, page, struct } from "./sched-guest.js";

const good = new Uint8Array(readFileSync(guestImageUrl("format")));
const goodOutput = readFileSync(guestExpectedOutputUrl("format"), "utf8");
const hostile = (name: string) => new Uint8Array(readFileSync(hostileGuestUrl(name)));

/** Slice length for these runs: short, so the good domain needs many slices beside the hostile one. */
const SLICE = 100_000;
/**
 * The good domain alone needs about 0.86 M instructions and 4,000 console exits (about 4.9 M
 * instruction-times): beside a neighbour that uses every slice it is given, it finishes within
 * twice that plus a slice or two. The bound leaves room for neither starvation nor overshoot.
 */
const BOUND = 12_000_000;

interface Pair {
  readonly hv: Hypervisor;
  readonly good: Domain;
  readonly bad: Domain;
  readonly r: RunResult;
}

/** Runs of this many instruction-times, with a yield to the event loop between them (no test blocks its worker for long). */
const CHUNK = 500_000;

/**
 * The hostile domain first (it gets the first slice), then the good one; run until the good one
 * is done (or, with untilGoodDone false, until the run ends by itself), at most BOUND
 * instruction-times in all: BOUND / CHUNK runs of CHUNK each (a run ends once it has charged
 * its budget, so the total is the bound give or take the last slice).
 */
async function pair(name: string, cmdline: string, hap: boolean, options: { untilGoodDone?: boolean; console?: boolean } = {}): Promise<Pair> {
  const hv = new Hypervisor({ memoryMiB: 256, sliceInstructions: SLICE });
  const bad = hv.createDomain({ name, memoryMiB: 32, hap, kernel: hostile(name), cmdline, ...(options.console === false ? {} : { onConsole: () => {} }) });
  const g = hv.createDomain({ name: "format", memoryMiB: 32, hap, kernel: good });
  let r: RunResult = { reason: "budget", instructions: 0 };
  for (let k = 0; k < BOUND / CHUNK && r.reason === "budget"; k++) {
    r = hv.run({ maxInstructions: CHUNK, ...(options.untilGoodDone === false ? {} : { until: () => g.state !== "running" }) });
    await new Promise((resolve) => setImmediate(resolve));
  }
  return { hv, good: g, bad, r };
}

function expectGoodFinished(p: Pair): void {
  expect({ state: p.good.state, code: p.good.exitCode, crash: p.good.crashReason }).toEqual({ state: "shutdown", code: 0, crash: undefined });
  expect(p.good.console).toBe(goodOutput);
}

const CASES: readonly { readonly name: string; readonly cmdline: string; readonly what: string }[] = [
  { name: "sched-rep", cmdline: "", what: "REP MOVSB with a count of 15 MiB, again and again" },
  { name: "sched-rep", cmdline: "op=stos", what: "REP STOSQ over all of its RAM, again and again" },
  { name: "sched-ud", cmdline: "", what: "UD2 in a #UD handler on an IST stack, forever" },
  { name: "sched-ud", cmdline: "timer=1", what: "the same with a periodic APIC timer armed" },
  { name: "sched-pfist", cmdline: "", what: "a #PF handler whose IST stack is unmapped" },
  { name: "sched-pfist", cmdline: "df=ist", what: "#PF and #DF on an unmapped IST stack" },
  { name: "sched-uart", cmdline: "", what: "a console flood through the UART with REP OUTSB" },
  { name: "sched-uart", cmdline: "mode=outb", what: "a console flood through the UART, one OUT a byte" },
  { name: "sched-strio", cmdline: "", what: "4096-element REP OUTSB exits, forever" },
  { name: "sched-strio", cmdline: "dir=in", what: "4096-element REP INSB exits, forever" },
];

describe("a hostile guest beside a well-behaved domain: the good one finishes with its full output within the bound", () => {
  for (const c of CASES) {
    for (const hap of [true, false]) {
      it(`${c.name} ${c.cmdline || "(default)"}: ${c.what} (${hap ? "EPT" : "shadow"})`, { timeout: 120_000 }, async () => {
        const p = await pair(c.name, c.cmdline, hap);
        expect(p.r.reason).toBe("stopped"); // the good domain was done before the bound
        expectGoodFinished(p);
        // The hostile domain ran too (it was not simply left out), and never took the host down.
        expect(p.bad.console.split("\n")[0]).toMatch(/^sched-/);
        expect(p.hv.slicesRun).toBeGreaterThan(10);
      });
    }
  }

  it("a console flood with no console sink (serial = \"none\"): charged and scheduled the same way", { timeout: 120_000 }, async () => {
    const p = await pair("sched-uart", "", true, { console: false });
    expect(p.r.reason).toBe("stopped");
    expectGoodFinished(p);
  });
});

describe("charging what the guest spends", () => {
  it("a REP MOVSB slice is as long as any other: the iterations are the slice's instructions", () => {
    const hv = new Hypervisor({ memoryMiB: 256, sliceInstructions: SLICE });
    const bad = hv.createDomain({ name: "rep", memoryMiB: 32, kernel: hostile("sched-rep") });
    const r = hv.run({ maxInstructions: 10 * SLICE });
    expect(r.reason).toBe("budget");
    // Ten slices of exactly SLICE instruction-times (iterations included; a few exits at boot).
    expect(bad.instructions).toBeGreaterThan(9 * SLICE);
    expect(bad.instructions).toBeLessThanOrEqual(10 * SLICE);
    expect(hv.slicesRun).toBeGreaterThanOrEqual(10);
  });

  it("an exception loop advances the simulated clock and ends its slices (the deliveries are charged)", () => {
    const hv = new Hypervisor({ memoryMiB: 256, sliceInstructions: SLICE });
    const bad = hv.createDomain({ name: "ud", memoryMiB: 32, kernel: hostile("sched-ud") });
    const cycles0 = hv.clock.cycles;
    const r = hv.run({ maxInstructions: 10 * SLICE });
    expect(r.reason).toBe("budget");
    const events = bad.vcpus[0]!.cpu.eventsDelivered;
    // Each delivery costs CostModel.eventDelivery: the budget is spent on them, and the clock moved as much.
    expect(events).toBeGreaterThan((9 * SLICE) / hv.cost.eventDelivery - bad.instructions);
    expect(events).toBeLessThanOrEqual((10 * SLICE) / hv.cost.eventDelivery + 1);
    expect(hv.clock.cycles - cycles0).toBeGreaterThanOrEqual(events * hv.cost.eventDelivery);
  });

  it("a 4096-element string-I/O exit is charged per element: its slices hold a few exits, not thousands", () => {
    const hv = new Hypervisor({ memoryMiB: 256, sliceInstructions: 2_000_000 });
    const bad = hv.createDomain({ name: "strio", memoryMiB: 32, kernel: hostile("sched-strio") });
    hv.run({ maxInstructions: 20_000_000 });
    const s = bad.stats();
    const perExit = hv.cost.vmExitEntry + 4096 * hv.cost.deviceModelAccess;
    // 20 M instruction-times of 4096-element exits at (exit + 4096 accesses) each.
    expect(bad.exitStats.ioAccesses).toBeGreaterThan(4096 * Math.floor(18_000_000 / perExit));
    expect(s.ioExits).toBeLessThan(Math.ceil(20_000_000 / perExit) + 200);
  });
});

describe("a vCPU blocked for good: sti; hlt with an APIC timer that can never be taken", () => {
  for (const cmdline of ["mode=masked", "mode=tpr"]) {
    for (const hap of [true, false]) {
      it(`${cmdline} (${hap ? "EPT" : "shadow"}): the good domain finishes; the run ends as idle with the domain reported blocked`, { timeout: 60_000 }, async () => {
        const p = await pair("sched-hlt", cmdline, hap, { untilGoodDone: false });
        expectGoodFinished(p);
        expect(p.r.reason).toBe("idle");
        expect(p.r.blockedDomains).toEqual([p.bad.id]);
        expect(p.bad.state).toBe("running");
        expect(p.bad.vcpus[0]!.blocked).toBe(true);
        // The APIC timer is armed and periodic, but the host did not wait for it.
        expect(p.bad.vcpus[0]!.apic!.nextTimerDeadline()).toBeLessThan(Number.POSITIVE_INFINITY);
      });
    }
  }

  it("with nothing at all to run: the run ends at once, idle and blocked; maxInstructions is not needed", () => {
    const hv = new Hypervisor({ memoryMiB: 256 });
    const bad = hv.createDomain({ name: "hlt", memoryMiB: 32, kernel: hostile("sched-hlt") });
    const r = hv.run();
    expect(r).toMatchObject({ reason: "idle", blockedDomains: [bad.id] });
    const again = hv.run({ maxInstructions: 1_000_000 });
    expect(again).toEqual({ reason: "idle", instructions: 0, blockedDomains: [bad.id] });
  });

  it("a periodic Xen timer whose VIRQ_TIMER nobody bound wakes nobody: the idle host's jumps are charged, and the run ends at the limit", () => {
    const PERIOD = DATA;
    const data = page([[0, struct(vcpu_set_periodic_timer.SIZEOF, [[vcpu_set_periodic_timer.period_ns, 8, 1_000_000]])]]);
    // set_periodic_timer(1 ms); l: sti; hlt; jmp l
    const code = new Asm().hc(HYPERVISOR_vcpu_op, VCPUOP_set_periodic_timer, 0, PERIOD);
    const loop = code.code.length;
    code.sti().hlt().jmp(loop);
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "periodic", memoryMiB: 8, kernel: image(code, data) });
    const r = hv.run({ maxInstructions: 50_000_000 });
    // Either the host sees that nothing can wake it (idle), or the jumps used the budget up: never a hang.
    expect(r.reason === "idle" || r.reason === "budget").toBe(true);
    if (r.reason === "idle") expect(r.blockedDomains).toEqual([d.id]);
    else expect(hv.clock.nanoseconds).toBeLessThan(60_000_000); // about the budget's worth of jumps (25 ms at 2 GHz), not more
  });
});
