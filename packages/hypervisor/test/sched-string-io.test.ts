/**
 * String I/O and hypercall buffers with exact 64-bit addresses (issue 18, "Fidelity"): the
 * hostile guest sched-highhalf maps two pages at the top of the address space
 * (0xFFFFFFFFFFFFE000 and 0xFFFFFFFFFFFFF000) and checks REP OUTSB/INSB there, an INSD and an
 * OUTSD split across the two pages, #GP(0) for a non-canonical RSI or RDI (registers untouched)
 * and #SS(0) through SS, and HYPERVISOR_console_io with a higher-half buffer (printed) and a
 * non-canonical one (-EFAULT). It ends with a REP OUTSD of four zero dwords to the debug-exit
 * port: the first write ends the domain with code 0 and the rest must not turn that into a crash.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { hostileGuestUrl } from "@vtlab/guests";
import { Hypervisor } from "@vtlab/hypervisor";

const kernel = new Uint8Array(readFileSync(hostileGuestUrl("sched-highhalf")));

const EXPECTED = [
  "HIGH-HALF-OK!",
  "ok rep outsb from 0xfffffffffffff100: RSI advanced 14",
  "ok rep insb into 0xfffffffffffff200: 8 bytes, RDI advanced 8",
  "ok insd split across 0xffffffffffffeffe: E9 00 | 00 00, RDI advanced 4",
  // The debug console prints the low byte of each dword: 'S' (0x...EFFE) and '\n' (0x...F002).
  "outsd split: S",
  "ok outsd split across 0xffffffffffffeffe: RSI advanced 8",
  "ok rep outsb with RSI 0x8000000000000001: #GP(0), RSI untouched",
  "ok rep insb with RDI 0x0000800000000000: #GP(0), RDI untouched",
  "ok rep outsb through SS with RSI 0x8000000000000001: #SS(0)",
  "console_io from the top page",
  "ok console_io with a buffer at 0xfffffffffffff300: printed",
  "ok console_io with a buffer at 0x8000000000000300: -EFAULT",
  "PASS sched-highhalf",
  "",
].join("\n");

describe("string I/O at the top of the 64-bit address space", () => {
  for (const hap of [true, false]) {
    it(`every check passes and the REP OUTSD to the debug-exit port is a clean exit (${hap ? "EPT" : "shadow"})`, () => {
      const hv = new Hypervisor({ memoryMiB: 256 });
      const good = hv.createDomain({ name: "neighbour", memoryMiB: 32, hap, kernel });
      const d = hv.createDomain({ name: "highhalf", memoryMiB: 32, hap, kernel });
      const r = hv.run({ maxInstructions: 50_000_000 });
      expect(r).toMatchObject({ reason: "idle", blockedDomains: [] });
      for (const x of [d, good]) {
        expect({ state: x.state, code: x.exitCode, crash: x.crashReason }).toEqual({ state: "shutdown", code: 0, crash: undefined });
        expect(x.console).toBe(EXPECTED);
      }
      // The REP OUTSD stopped after the first dword: RSI advanced 4, RCX says 3 were left.
      const cpu = d.vcpus[0]!.cpu;
      expect(cpu.lo[1]! >>> 0).toBe(3);
      expect(d.stats().ioExits).toBeGreaterThan(0);
    });
  }
});
