/**
 * A law of the native xenbus client against the host's xenstored: whatever values a kernel writes
 * under its data/ directory (any bytes 0x01..0x7f, up to a ring and a half long, so messages wrap
 * the 1 KiB rings), reading them back gives the same values, and the directory lists exactly
 * the keys written. fast-check over EPT and shadow.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { bootFrontends, isFrontendError, isXsError } from "@vtlab/pv-frontends";
import { Hypervisor, PvServices } from "../src/index.js";

const entries = fc.uniqueArray(fc.record({ key: fc.stringMatching(/^[a-z0-9_-]{1,12}$/), value: fc.string({ unit: fc.integer({ min: 1, max: 0x7f }).map((c) => String.fromCharCode(c)), maxLength: 1500 }) }), { selector: (e) => e.key, minLength: 1, maxLength: 6 });

describe("native xenbus write/read law", () => {
  for (const hap of [true, false]) {
    it(`values written read back the same, the directory lists the keys (${hap ? "EPT" : "shadow"})`, () => {
      fc.assert(
        fc.property(entries, (es) => {
          const hv = new Hypervisor({ memoryMiB: 128, sliceInstructions: 50_000 });
          const pv = new PvServices(hv);
          const got: string[] = [];
          let dir: string[] = [];
          const d = hv.createDomain({
            name: "p",
            memoryMiB: 16,
            hap,
            magicPages: true,
            native: function* (ops) {
              const f = bootFrontends(ops);
              if (isFrontendError(f)) return;
              const xs = f.xenbus!;
              for (const e of es) yield* xs.write(`data/${e.key}`, e.value);
              for (const e of es) {
                const r = yield* xs.read(`data/${e.key}`);
                got.push(isXsError(r) ? `!${r.error}` : r);
              }
              const l = yield* xs.directory("data");
              dir = isXsError(l) ? [`!${l.error}`] : l;
            },
          });
          pv.attach(d);
          hv.run({ maxInstructions: 100_000_000, until: () => d.state !== "running" });
          expect(got).toEqual(es.map((e) => e.value));
          expect([...dir].sort()).toEqual(es.map((e) => e.key).sort());
          expect(d.state).toBe("shutdown");
        }),
        { numRuns: 8, seed: 13 },
      );
    });
  }
});
