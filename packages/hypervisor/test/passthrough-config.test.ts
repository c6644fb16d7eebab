import { describe, expect, it } from "vitest";
import { ConfigError, Toolstack, domainOptions, parseDomainConfig } from "@vtlab/hypervisor";
import { SPIN, tinyKernel } from "./tiny-kernel.js";
import { host } from "./passthrough-harness.js";

const FILE = "guest.cfg";
const BASE = `name = "a"\nmemory = 8\nkernel = "guest.elf"\n`;

function error(text: string): ConfigError {
  try {
    parseDomainConfig(text, FILE);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error("parsed");
}

describe("xl.cfg `pci`", () => {
  it("takes a list of BDFs in both xl spellings and hands them to createDomain", () => {
    const c = parseDomainConfig(`${BASE}pci = [ "00:05.0", "0000:00:06.1" ]\n`, FILE);
    expect(c.pci).toEqual(["00:05.0", "0000:00:06.1"]);
    expect(domainOptions(c, { kernel: new Uint8Array(0) }).pci).toEqual(["00:05.0", "0000:00:06.1"]);
    expect(parseDomainConfig(BASE, FILE).pci).toBeUndefined();
    expect(domainOptions(parseDomainConfig(BASE, FILE), { kernel: new Uint8Array(0) }).pci).toBeUndefined();
  });

  it("rejects bad entries naming the file, the line and the entry", () => {
    const cases: [string, RegExp][] = [
      [`pci = [ "00:05.0,permissive=1" ]`, /"00:05\.0,permissive=1": options .* not supported/],
      [`pci = [ "00:05.0@4" ]`, /virtual slots/],
      [`pci = [ "5" ]`, /"5" is not a PCI address/],
      [`pci = [ "00:20.0" ]`, /"00:20\.0": device number 0x20 is above 0x1f/],
      [`pci = [ "0002:00:05.0" ]`, /segment 0002/],
      [`pci = [ "00:05.0", "0000:00:05.0" ]`, /00:05\.0 listed twice/],
      [`pci = "00:05.0"`, /expected a list of quoted PCI addresses/],
      [`pci = [ 5 ]`, /expected a quoted PCI address/],
    ];
    for (const [line, message] of cases) {
      const e = error(`${BASE}${line}\n`);
      expect(e.line).toBe(4);
      expect(e.key).toBe("pci");
      expect(e.message).toContain(FILE);
      expect(e.message).toMatch(message);
    }
  });
});

describe("the Toolstack passes `pci` to createDomain", () => {
  it("assigns the device from the config, refuses a second domain naming the owner, frees it on destroy", () => {
    const { hv, engine } = host();
    const ts = new Toolstack(hv, { resources: () => ({ kernel: tinyKernel(SPIN) }) });
    const cfg = (name: string) => parseDomainConfig(`name = "${name}"\nmemory = 8\nkernel = "k"\npci = [ "00:05.0" ]\n`, `${name}.cfg`);
    ts.create(cfg("a"));
    expect(hv.pciAssignableList()[0]!.owner).toBe("a");
    expect(() => ts.create(cfg("b"))).toThrow(/00:05\.0 \(dma-engine\) is already assigned to domain a/);
    expect(ts.destroy("a")).not.toBeTypeOf("string");
    expect(hv.pciAssignableList()[0]!.owner).toBe("free");
    expect(engine.resets).toBe(2);
    ts.create(cfg("b"));
    expect(hv.pciAssignableList()[0]!.owner).toBe("b");
  });
});
