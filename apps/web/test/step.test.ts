// Step mode under Node: the machine, paused, runs to its next VM exit and pauses again; the
// qualification decoders follow the SDM's tables (28-3, 28-5, 28-7).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { WebMachine } from "../src/machine.js";
import { decodeCrAccess, decodeEptViolation, decodeIo, decodeQualification } from "../src/step.js";

const kernel = new Uint8Array(readFileSync(fileURLToPath(new URL("../../../packages/guests/images/kernel.elf", import.meta.url))));

describe("WebMachine.step", () => {
  it("steps exit by exit from paused, each exit once, and pauses again", () => {
    for (const hap of [true, false]) {
      const m = new WebMachine({ workload: "compute", hap }, kernel, () => {}, () => performance.now());
      m.runFor(5);
      // Not paused: no step.
      expect(m.step()).toBeNull();
      m.pause();
      const names = new Set(Object.keys(m.sample().exitsByReason));
      let prev = m.sample().vmExits;
      for (let i = 0; i < 20; i++) {
        const e = m.step();
        expect(e).not.toBeNull();
        expect(m.domain.state).toBe("paused");
        expect(e!.exitsBefore).toBe(prev);
        const now = m.sample();
        expect(now.vmExits).toBe(prev + 1);
        expect(now.exitsByReason[e!.reasonName]).toBeGreaterThan(0);
        names.add(e!.reasonName);
        expect(e!.rip).toBeGreaterThan(0);
        prev = now.vmExits;
      }
      // A running machine has no step hook left behind.
      expect(m.hv.onVmExit).toBeUndefined();
      m.destroy();
    }
  });
});

describe("exit qualification decoders", () => {
  it("I/O (Table 28-5)", () => {
    // OUT DX, AL to 0x3f8: size 0 (1 byte), direction 0, port 0x3f8 in bits 31:16.
    expect(decodeIo(0x3f8 << 16)).toBe("out, 1 byte, port 0x03f8 (port in DX)");
    // REP INSW from 0x1f0: size 1, IN, string, REP.
    expect(decodeIo(((0x1f0 << 16) | 0x39) >>> 0)).toBe("in rep string, 2 bytes, port 0x01f0 (port in DX)");
    expect(decodeQualification(30, 0x3f8 << 16)).toContain("port 0x03f8");
  });
  it("EPT violation (Table 28-7)", () => {
    expect(decodeEptViolation(0x182)).toBe("access write; EPT entry permits ---; guest-linear valid, access to the translated address");
    expect(decodeEptViolation(0x81 | 0x8)).toBe("access read; EPT entry permits r--; guest-linear valid, access to a guest paging-structure entry");
    expect(decodeEptViolation(4)).toBe("access fetch; EPT entry permits ---; no guest-linear address");
  });
  it("CR access (Table 28-3)", () => {
    expect(decodeCrAccess(3 | (0 << 4) | (0 << 8))).toBe("MOV to CR3 from RAX");
    expect(decodeCrAccess(0 | (1 << 4) | (15 << 8))).toBe("MOV from CR0 to R15");
    expect(decodeCrAccess(2 << 4)).toBe("CLTS");
  });
  it("any 32-bit qualification of any reason decodes without throwing (hostile values)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), fc.integer({ min: 0, max: 0xffff_ffff }), (reason, q) => {
        expect(typeof decodeQualification(reason, q)).toBe("string");
      }),
    );
  });
});
