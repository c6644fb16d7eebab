/**
 * The PV-on-HVM self-test guest (@vtlab/guests images/xentest.elf, a gcc-built C kernel that
 * uses the Xen interface the way an unmodified OS's PV drivers do) on EPT and on shadow paging,
 * with its dom0 peer (src/xen/selftest_peer.ts) attached: the console equals
 * images/xentest.expected (computed on the host by scripts/xentest-expected.py) and the guest
 * powers off with SCHEDOP_shutdown(SHUTDOWN_poweroff), exit code 0. Then the peer alone, fed
 * hostile handshake lines by tiny guests: every bad line is reported, none throws.
 */
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { XENTEST_INFO, xentestExpectedOutputUrl, xentestPatternWord, xentestUrl } from "@vtlab/guests";
import {
  Hypervisor,
  SelfTestPeer,
  Toolstack,
  parseDomainConfig,
  selftestPattern,
  selftestPatternWord,
  type Domain,
  type SelfTestGrantAccess,
} from "@vtlab/hypervisor";
import { tinyKernel } from "./tiny-kernel.js";

const image = () => new Uint8Array(readFileSync(xentestUrl()));
const expected = readFileSync(xentestExpectedOutputUrl(), "utf8");
/** The self-test takes about 250,000 budget units (instructions plus modelled exit costs); this bounds a run that went wrong. */
const BUDGET = 20_000_000;

function boot(hap: boolean, peer = true): { hv: Hypervisor; d: Domain; peer: SelfTestPeer | undefined } {
  const hv = new Hypervisor({ memoryMiB: 256 });
  // As the toolstack builds it (the store and console ports come first, so the guest's ports start at 3).
  const d = hv.createDomain({ name: "xentest", memoryMiB: 64, hap, kernel: image(), magicPages: true });
  const p = peer ? new SelfTestPeer(hv, d) : undefined;
  hv.run({ maxInstructions: BUDGET, onSlice: () => p?.poll() });
  return { hv, d, peer: p };
}

describe.each([
  ["EPT", true],
  ["shadow", false],
])("xentest on %s", (_mode, hap) => {
  it("prints images/xentest.expected and powers off (exit code 0) with the dom0 peer attached", () => {
    const { d, peer } = boot(hap);
    expect(d.console).toBe(expected);
    expect({ state: d.state, code: d.exitCode, crash: d.crashReason }).toEqual({ state: "shutdown", code: 0, crash: undefined });
    const st = peer!.status();
    expect(st).toMatchObject({ phase: "done", domid: d.id, grantRef: XENTEST_INFO.grantRef, guestPort: 7 });
    expect(st.error).toBeUndefined();
    const xen = d.xen.stats.snapshot();
    // every line went through console_io (those before the hypercall page in one call)
    expect(xen.hypercalls.console_io).toBeGreaterThan(10);
    for (const family of ["xen_version", "memory_op", "hvm_op", "event_channel_op", "grant_table_op", "sched_op", "vcpu_op"]) {
      expect(xen.hypercalls[family], family).toBeGreaterThan(0);
    }
    expect(xen.unknownHypercalls).toEqual({});
    expect(xen.upcallsInjected).toBeGreaterThan(0);
  });

  it("without a dom0 peer the guest gives up after its timeout and crashes itself (SHUTDOWN_crash)", () => {
    const { d } = boot(hap, false);
    expect(d.console).toContain("xen-selftest: grant 8 evtchn 7\n");
    expect(d.console).toContain("FAIL dom0 never signalled port 7 (no dom0 peer attached?)\n");
    expect(d.state).toBe("crashed");
  });
});

describe("the same output on EPT and shadow, different exits", () => {
  it("console equal, exit counts differ", () => {
    const ept = boot(true).d;
    const shadow = boot(false).d;
    expect(shadow.console).toBe(ept.console);
    expect(ept.stats().exitsByReason).not.toEqual(shadow.stats().exitsByReason);
  });
});

describe("the toolstack attaches the peer when the config says vtlab_xen_selftest = 1", () => {
  const config = (extra: string) => parseDomainConfig(`name = "xentest"\nmemory = 64\nkernel = "xentest.elf"\n${extra}`, "xentest.cfg");
  const run = (extra: string) => {
    const hv = new Hypervisor({ memoryMiB: 256 });
    const ts = new Toolstack(hv, { resources: () => ({ kernel: image() }) });
    const m = ts.create(config(extra));
    ts.run({ maxInstructions: BUDGET });
    return m;
  };
  it("with the key: the self-test passes", () => {
    const m = run("vtlab_xen_selftest = 1\n");
    expect(m.config.xenSelftest).toBe(true);
    expect({ state: m.domain.state, code: m.domain.exitCode }).toEqual({ state: "shutdown", code: 0 });
    expect(m.domain.console).toBe(expected);
  });
  it("without it: no peer, the guest crashes itself", () => {
    const m = run("");
    expect(m.config.xenSelftest).toBeUndefined();
    expect(m.domain.console).toContain("FAIL dom0 never signalled port 7");
  });
  it("the key takes 0 or 1 only", () => {
    expect(() => config("vtlab_xen_selftest = 2\n")).toThrow(/vtlab_xen_selftest/);
    expect(config("vtlab_xen_selftest = 0\n").xenSelftest).toBe(false);
  });
});

describe("the pattern", () => {
  it("is the same function in @vtlab/guests and the peer, and fills one page", () => {
    for (const i of [0, 1, 2, 511, 1023]) for (const ref of [0, 8, 0xffff_ffff]) expect(selftestPatternWord(i, ref)).toBe(xentestPatternWord(i, ref));
    const page = selftestPattern(8);
    expect(page.length).toBe(4096);
    expect(new DataView(page.buffer).getUint32(4 * 3, true)).toBe(((3 * 2654435761) % 2 ** 32 ^ 0x5eed0000 ^ 8) >>> 0);
  });
});

/** A PVH guest that prints `text` to the debug port (one MOV AL + OUT per byte) and halts. */
function printer(text: string): Uint8Array {
  let hex = "";
  for (const c of Buffer.from(text, "latin1")) hex += `b0${c.toString(16).padStart(2, "0")}e6e9`;
  return tinyKernel(`${hex}faf4`);
}

/** Grant access that records calls (the hostile lines must never get that far, or fail there). */
function recordingGrants(calls: string[]): SelfTestGrantAccess {
  return {
    map: (domid, ref) => (calls.push(`map ${domid} ${ref}`), -3),
    unmap: () => (calls.push("unmap"), 0),
  };
}

describe("the peer treats the handshake line as hostile", () => {
  const cases: [string, RegExp][] = [
    ["xen-selftest: grant x evtchn 5\n", /grant reference "x" is not a decimal number/],
    ["xen-selftest: grant -1 evtchn 5\n", /grant reference "-1"/],
    ["xen-selftest: grant 08 evtchn 5\n", /grant reference "08"/],
    ["xen-selftest: grant 4294967296 evtchn 5\n", /grant reference "4294967296"/],
    ["xen-selftest: grant 8 evtchn 0x5\n", /event-channel port "0x5"/],
    ["xen-selftest: grant 8 evtchn 99999999999\n", /event-channel port "99999999999"/],
    ["xen-selftest: grant 8 evtchn 5 and more\n", /is not "xen-selftest: grant <ref> evtchn <port>"/],
    ["xen-selftest: grant  evtchn \n", /grant reference ""/],
    [`xen-selftest: ${"9".repeat(300)}\n`, /\.\.\." is not/],
    ["xen-selftest: grant 8 evtchn 4294967295\n", /EVTCHNOP_bind_interdomain\(dom \d+, port 4294967295\) = -\d+/],
    ["xen-selftest: grant 8 evtchn 1\n", /EVTCHNOP_bind_interdomain\(dom \d+, port 1\) = -\d+/],
  ];
  it.each(cases)("%j is reported, not thrown", (line, error) => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "liar", memoryMiB: 8, kernel: printer(`hello\n${line}xen-selftest: grant 8 evtchn 5\n`) });
    const calls: string[] = [];
    const peer = new SelfTestPeer(hv, d, recordingGrants(calls));
    hv.run({ maxInstructions: 20_000_000, onSlice: () => peer.poll() });
    peer.poll();
    const st = peer.status();
    expect(st.phase).toBe("failed");
    expect(st.error).toMatch(error);
    expect(calls).toEqual([]); // it never reached the grant, and acted on the first line only
    expect(peer.poll()).toBe(false);
  });

  it("any console text: poll never throws, acts at most once, and reaches the grant only past a bound channel", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const line = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.tuple(fc.string({ maxLength: 12 }), fc.string({ maxLength: 12 })).map(([a, b]) => `xen-selftest: grant ${a} evtchn ${b}`),
      fc.tuple(fc.nat(), fc.nat()).map(([a, b]) => `xen-selftest: grant ${a} evtchn ${b}`),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 6 }), fc.boolean(), (lines, trailingNewline) => {
        // A stand-in for a domain that is not there (domid 77): every bind is refused with an errno.
        const fake = { id: 77, state: "running", console: lines.join("\n") + (trailingNewline ? "\n" : "") } as unknown as Domain;
        const calls: string[] = [];
        const peer = new SelfTestPeer(hv, fake, recordingGrants(calls));
        const acted = peer.poll();
        const st = peer.status();
        expect(peer.poll()).toBe(false);
        expect(calls).toEqual([]);
        const complete = trailingNewline ? lines : lines.slice(0, -1);
        const first = complete.flatMap((l) => l.split("\n")).find((l) => l.startsWith("xen-selftest: "));
        expect(acted).toBe(first !== undefined);
        expect(st.phase).toBe(first === undefined ? "waiting" : "failed");
        if (first !== undefined) expect(st.error).toMatch(/^(handshake|EVTCHNOP_bind_interdomain\(dom 77)/);
      }),
      { numRuns: 300, seed: 7 },
    );
  });

  it("a line without its newline is not acted on yet", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const d = hv.createDomain({ name: "partial", memoryMiB: 8, kernel: printer("xen-selftest: grant 8 evtchn 5") });
    const calls: string[] = [];
    const peer = new SelfTestPeer(hv, d, recordingGrants(calls));
    hv.run({ maxInstructions: 20_000_000, onSlice: () => peer.poll() });
    expect(peer.poll()).toBe(false);
    expect(peer.status().phase).toBe("waiting");
  });
});
