/**
 * The toolstack: domains built from `DomainConfig`s, and xl.cfg(5) `on_crash` (destroy,
 * preserve, restart with the rapid-restart cap) applied between scheduler slices, with a
 * well-behaved domain beside the crashing one.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { guestExpectedOutputUrl, guestImageUrl } from "@vtlab/guests";
import {
  Hypervisor,
  MINIMUM_RESTART_TIME_S,
  RAPID_RESTART_LIMIT,
  Toolstack,
  parseDomainConfig,
  type DomainConfig,
  type DomainResources,
  type OnCrashAction,
  type ToolstackOptions,
} from "@vtlab/hypervisor";
import { SPIN, TRIPLE_FAULT, tinyKernel } from "./tiny-kernel.js";
import { runYielding } from "./run-yielding.js";

/** mov al, 'B'; out 0xe9, al; int3 (no IDT: triple fault). One "B" on the console per boot. */
const BOOT_THEN_CRASH = `b042 e6e9 ${TRIPLE_FAULT}`;
/** mov ecx, 100000; loop: dec ecx; jnz loop; int3. About 200,000 instructions, then a triple fault. */
const SPIN_THEN_CRASH = `b9a0860100 49 75fd ${TRIPLE_FAULT}`;

const cfg = (name: string, onCrash: OnCrashAction, memory = 8): DomainConfig =>
  parseDomainConfig(`name = "${name}"\nmemory = ${memory}\nkernel = "${name}.elf"\non_crash = "${onCrash}"\n`, `${name}.cfg`);

interface Harness {
  hv: Hypervisor;
  ts: Toolstack;
  consoles: Map<string, string>;
  loads: Map<string, number>;
  releases: Map<string, number>;
}

/** A toolstack whose loader hands out the kernel registered for each config name, counting loads and releases. */
function harness(kernels: Record<string, Uint8Array>, options: Partial<ToolstackOptions> = {}): Harness {
  const hv = new Hypervisor({ memoryMiB: 256, sliceInstructions: 50_000 });
  const consoles = new Map<string, string>();
  const loads = new Map<string, number>();
  const releases = new Map<string, number>();
  const ts = new Toolstack(hv, {
    resources: (config): DomainResources => {
      const kernel = kernels[config.name];
      if (kernel === undefined) throw new Error(`no kernel for ${config.name}`);
      loads.set(config.name, (loads.get(config.name) ?? 0) + 1);
      return {
        kernel,
        onConsole: (t) => consoles.set(config.name, (consoles.get(config.name) ?? "") + t),
        release: () => releases.set(config.name, (releases.get(config.name) ?? 0) + 1),
      };
    },
    ...options,
  });
  return { hv, ts, consoles, loads, releases };
}

const sort = () => new Uint8Array(readFileSync(guestImageUrl("sort")));
const sortOutput = () => readFileSync(guestExpectedOutputUrl("sort"), "utf8");

describe("Toolstack: create, find, pause, unpause, destroy", () => {
  it("builds the domain the config describes and finds it by name or domid", () => {
    const { hv, ts } = harness({ a: tinyKernel(SPIN), b: tinyKernel(SPIN) });
    const a = ts.create(parseDomainConfig(`name = "a"\nmemory = 16\nvcpus = 2\nhap = 0\nweight = 512\nkernel = "k"\n`, "a.cfg"), "a.cfg");
    const b = ts.create(cfg("b", "destroy"));
    expect(a.domain).toBe(hv.domain("a"));
    expect({ frames: a.domain.ramFrames, vcpus: a.domain.vcpus.length, hap: a.domain.hap, weight: a.domain.weight }).toEqual({ frames: 4096, vcpus: 2, hap: false, weight: 512 });
    expect(ts.find("b")).toBe(b);
    expect(ts.find(b.domain.id)).toBe(b);
    expect(ts.find(String(a.domain.id))).toBe(a);
    expect(ts.find("c")).toBeUndefined();
    expect(ts.domains.map((m) => m.config.name)).toEqual(["a", "b"]);
  });

  it("a failed build releases what the loader opened and lists nothing", () => {
    const { ts, releases } = harness({ a: tinyKernel(SPIN), big: tinyKernel(SPIN) });
    ts.create(cfg("a", "destroy"));
    expect(() => ts.create(cfg("a", "destroy"))).toThrow(/domain a: name: a domain with this name exists/);
    expect(() => ts.create(cfg("big", "destroy", 4000))).toThrow(/domain big: memory: 4000 MiB is more than the host has free/);
    expect(() => ts.create(cfg("nokernel", "destroy"))).toThrow(/no kernel for nokernel/);
    expect(releases.get("a")).toBe(1);
    expect(releases.get("big")).toBe(1);
    expect(ts.domains.map((m) => m.config.name)).toEqual(["a"]);
  });

  it("pause stops a domain (no instruction retired) and unpause resumes it; destroy gives the frames back", () => {
    const { hv, ts, releases } = harness({ a: tinyKernel(SPIN), b: tinyKernel(SPIN) });
    const free0 = hv.frames.freeFrames;
    const a = ts.create(cfg("a", "destroy"));
    const b = ts.create(cfg("b", "destroy"));
    ts.run({ maxInstructions: 200_000 });
    expect(ts.pause("a")).toBe(a);
    expect(ts.pause("a")).toMatch(/domain a \(id 1\) is already paused/);
    const before = a.domain.instructions;
    const bBefore = b.domain.instructions;
    ts.run({ maxInstructions: 200_000 });
    expect(a.domain.instructions).toBe(before);
    expect(b.domain.instructions).toBeGreaterThanOrEqual(bBefore + 150_000);
    expect(ts.unpause("b")).toMatch(/domain b \(id 2\) is running, not paused/);
    expect(ts.unpause(a.domain.id)).toBe(a);
    ts.run({ maxInstructions: 200_000 });
    expect(a.domain.instructions).toBeGreaterThan(before);
    expect(ts.destroy("a")).toBe(a);
    expect(ts.destroy("b")).toBe(b);
    expect(ts.destroy("a")).toBe('no domain "a"');
    expect(ts.pause("zz")).toBe('no domain "zz"');
    expect(hv.domains).toEqual([]);
    expect(ts.domains).toEqual([]);
    expect(ts.history.map((m) => m.listed)).toEqual([false, false]);
    // Everything but the hypervisor's one shared MSR-bitmap frame is back.
    expect(hv.frames.freeFrames).toBe(free0 - 1);
    expect([releases.get("a"), releases.get("b")]).toEqual([1, 1]);
  });
});

describe("on_crash", () => {
  it('"destroy" (the default): the crashed domain is destroyed and unlisted, its frames returned, the reason kept; the other domain finishes', async () => {
    const { hv, ts, releases } = harness({ good: sort(), bad: tinyKernel(`${"90".repeat(64)}${TRIPLE_FAULT}`) });
    const good = ts.create(cfg("good", "destroy", 64));
    const goodHeld = good.domain.framesHeld;
    const free = hv.frames.freeFrames;
    const bad = ts.create(parseDomainConfig(`name = "bad"\nmemory = 16\nkernel = "bad.elf"\n`, "bad.cfg"));
    expect(bad.config.onCrash).toBe("destroy");
    const badDomain = bad.domain;
    const r = await runYielding(ts, { maxInstructions: 1_000_000_000 });
    expect(r.reason).toBe("idle");
    expect(ts.crashes).toEqual([{ name: "bad", domid: badDomain.id, reason: "triple fault", action: "destroy", outcome: "destroyed", restarts: 0, uptimeNs: expect.any(Number) }]);
    expect(bad.listed).toBe(false);
    expect(badDomain.state).toBe("destroyed");
    expect(badDomain.framesHeld).toBe(0);
    expect(badDomain.crashReason).toBe("triple fault");
    expect(badDomain.stats().exitsByReason.TripleFault).toBe(1); // stats survive the destroy
    expect(ts.domains).toEqual([good]);
    expect(hv.domains).toEqual([good.domain]);
    expect(hv.frames.freeFrames).toBe(free - (good.domain.framesHeld - goodHeld));
    expect(releases.get("bad")).toBe(1);
    expect(good.domain.state).toBe("shutdown");
    expect(good.domain.exitCode).toBe(0);
    expect(good.domain.console).toBe(sortOutput());
  });

  it('"preserve": the domain stays listed, crashed, holding its memory, and is acted on once; destroy frees it', () => {
    const { hv, ts, releases } = harness({ bad: tinyKernel(BOOT_THEN_CRASH), spin: tinyKernel(SPIN) });
    const spin = ts.create(cfg("spin", "destroy"));
    const free = hv.frames.freeFrames;
    const bad = ts.create(cfg("bad", "preserve"));
    const held = bad.domain.framesHeld;
    expect(held).toBeGreaterThanOrEqual(2048);
    const seen: string[] = [];
    ts.run({ maxInstructions: 500_000, onSlice: () => seen.push(bad.domain.state) });
    expect(seen).toContain("crashed");
    expect(ts.crashes.map((c) => [c.name, c.reason, c.outcome])).toEqual([["bad", "triple fault", "preserved"]]);
    expect(bad.listed).toBe(true);
    expect(bad.domain.state).toBe("crashed");
    expect(bad.domain.framesHeld).toBe(held);
    expect(ts.domains).toEqual([spin, bad]);
    expect(ts.handleCrashes()).toEqual([]);
    ts.run({ maxInstructions: 100_000 });
    expect(ts.crashes).toHaveLength(1);
    expect(spin.domain.state).toBe("running");
    expect(spin.domain.instructions).toBeGreaterThanOrEqual(550_000);
    expect(releases.get("bad")).toBeUndefined();
    expect(ts.destroy("bad")).toBe(bad);
    expect(releases.get("bad")).toBe(1);
    expect(hv.frames.freeFrames).toBe(free);
  });

  it('"restart": destroyed and rebuilt from the same config under the same name with a new domid, counted', () => {
    // A crash after ~0.1 ms of modelled time is not "rapid" when the minimum is 10 us.
    const { hv, ts, consoles, loads, releases } = harness({ bad: tinyKernel(`b042 e6e9 ${SPIN_THEN_CRASH}`), spin: tinyKernel(SPIN) }, { minimumRestartSeconds: 10e-6 });
    const spin = ts.create(cfg("spin", "destroy"));
    const bad = ts.create(cfg("bad", "restart"));
    const firstId = bad.domain.id;
    const free = hv.frames.freeFrames;
    ts.run({ maxInstructions: 4_000_000 });
    const restarts = bad.restarts;
    expect(restarts).toBeGreaterThan(RAPID_RESTART_LIMIT + 1); // never rapid: no cap
    expect(ts.crashes).toHaveLength(restarts);
    ts.crashes.forEach((c, i) => {
      expect(c).toMatchObject({ name: "bad", reason: "triple fault", action: "restart", outcome: "restarted", restarts: i + 1, newDomid: c.domid + 1 });
      expect(c.uptimeNs).toBeGreaterThanOrEqual(10_000);
    });
    expect(ts.crashes[0]!.domid).toBe(firstId);
    expect(bad.rapidRestarts).toBe(0);
    expect(bad.listed).toBe(true);
    expect(bad.domain.name).toBe("bad");
    expect(bad.domain.id).toBe(ts.crashes.at(-1)!.newDomid);
    expect(hv.domain("bad")).toBe(bad.domain);
    expect(hv.domains.filter((d) => d.name === "bad")).toHaveLength(1);
    // Each incarnation booted (one "B" each) from a fresh load; the old ones were released. The
    // "B" has no newline: the toolstack hands it on when it destroys the incarnation.
    expect(consoles.get("bad")).toBe("B".repeat(restarts));
    expect(["", "B"]).toContain(bad.domain.console);
    expect(loads.get("bad")).toBe(restarts + 1);
    expect(releases.get("bad")).toBe(restarts);
    // The frames of the crashed incarnations came back (the current one holds what the first did).
    expect(hv.frames.freeFrames).toBe(free);
    expect(spin.domain.state).toBe("running");
    expect(spin.domain.instructions).toBeGreaterThan(1_000_000);
  });

  it(`"restart" of a guest that crashes at once: ${RAPID_RESTART_LIMIT} rapid restarts, then refused and destroyed; the other domain finishes`, async () => {
    expect(MINIMUM_RESTART_TIME_S).toBe(60);
    const { hv, ts, consoles } = harness({ good: sort(), bad: tinyKernel(BOOT_THEN_CRASH) });
    const good = ts.create(cfg("good", "destroy", 64));
    const bad = ts.create(cfg("bad", "restart"));
    const r = await runYielding(ts, { maxInstructions: 1_000_000_000 });
    expect(r.reason).toBe("idle");
    expect(ts.crashes.map((c) => c.outcome)).toEqual([...Array<string>(RAPID_RESTART_LIMIT).fill("restarted"), "restart-refused"]);
    expect(ts.crashes.at(-1)!.detail).toMatch(/restarting too fast: 4 crashes in a row within 60 modelled s of \(re\)start/);
    expect(bad.restarts).toBe(RAPID_RESTART_LIMIT);
    expect(bad.rapidRestarts).toBe(RAPID_RESTART_LIMIT);
    expect(bad.listed).toBe(false);
    expect(bad.domain.state).toBe("destroyed");
    expect(consoles.get("bad")).toBe("B".repeat(RAPID_RESTART_LIMIT + 1));
    expect(hv.domains).toEqual([good.domain]);
    expect(good.domain.exitCode).toBe(0);
    expect(good.domain.console).toBe(sortOutput());
  });

  it("rapidRestartLimit 0 is xend's rule: the first rapid crash is not restarted", () => {
    const { ts } = harness({ bad: tinyKernel(BOOT_THEN_CRASH) }, { rapidRestartLimit: 0 });
    ts.create(cfg("bad", "restart"));
    ts.run({ maxInstructions: 1_000_000 });
    expect(ts.crashes.map((c) => [c.outcome, c.restarts])).toEqual([["restart-refused", 0]]);
    expect(ts.domains).toEqual([]);
  });

  it("a restart whose build fails leaves the machine destroyed, with the reason", () => {
    const kernels: Record<string, Uint8Array> = { bad: tinyKernel(BOOT_THEN_CRASH) };
    const { ts, releases } = harness(kernels);
    const bad = ts.create(cfg("bad", "restart"));
    delete kernels.bad;
    ts.run({ maxInstructions: 1_000_000 });
    expect(ts.crashes.map((c) => [c.outcome, c.detail])).toEqual([["restart-failed", "no kernel for bad"]]);
    expect(bad.listed).toBe(false);
    expect(bad.domain.state).toBe("destroyed");
    expect(releases.get("bad")).toBe(1);
    expect(ts.domains).toEqual([]);
  });

  it("crashes are handled after a plain Hypervisor.run too, and option values are checked", () => {
    const { hv, ts } = harness({ bad: tinyKernel(TRIPLE_FAULT) });
    ts.create(cfg("bad", "destroy"));
    hv.run({ maxInstructions: 100_000 });
    expect(ts.domains).toHaveLength(1);
    expect(ts.handleCrashes().map((c) => c.outcome)).toEqual(["destroyed"]);
    expect(ts.domains).toHaveLength(0);
    expect(() => new Toolstack(hv, { resources: () => ({ kernel: new Uint8Array() }), rapidRestartLimit: -1 })).toThrow(/rapidRestartLimit/);
    expect(() => new Toolstack(hv, { resources: () => ({ kernel: new Uint8Array() }), minimumRestartSeconds: Number.NaN })).toThrow(/minimumRestartSeconds/);
  });
});
