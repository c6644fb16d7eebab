/**
 * A console sink that fails (the loader's `onConsole` throws, as a file on a full disk would) is
 * a counted drop, never the end of the host: the domain and its neighbour run to their ends.
 * And a toolstack DomainError names the config file (and the kernel path for a refused image).
 */
import { describe, expect, it } from "vitest";
import { DomainError, Hypervisor, Toolstack, parseDomainConfig, type DomainResources } from "@vtlab/hypervisor";
import { tinyKernel } from "./tiny-kernel.js";

/** mov al, 'B'; out 0xe9, al; mov al, 10; out 0xe9, al; xor eax, eax; out 0xf4, eax (exit 0); hlt. */
const PRINT_B_THEN_EXIT = "b042e6e9 b00ae6e9 31c0 e7f4 f4";

describe("the toolstack's console sinks", () => {
  it("a sink that throws loses its text, counted, reported once; both domains finish", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const good: string[] = [];
    const errors: string[] = [];
    const ts = new Toolstack(hv, {
      resources: (config): DomainResources => ({
        kernel: tinyKernel(PRINT_B_THEN_EXIT),
        onConsole:
          config.name === "broken"
            ? () => {
                throw new Error("ENOSPC: no space left on device, write");
              }
            : (t) => good.push(t),
      }),
      onConsoleError: (name, message) => errors.push(`${name}: ${message}`),
    });
    const broken = ts.create(parseDomainConfig('name = "broken"\nmemory = 8\nkernel = "k.elf"\n', "broken.cfg"), "broken.cfg");
    const fine = ts.create(parseDomainConfig('name = "fine"\nmemory = 8\nkernel = "k.elf"\n', "fine.cfg"), "fine.cfg");
    ts.run({ maxInstructions: 100_000 });
    expect([broken.domain.state, broken.domain.exitCode, fine.domain.state, fine.domain.exitCode]).toEqual(["shutdown", 0, "shutdown", 0]);
    expect(good.join("")).toBe("B\n");
    expect(ts.consoleDropped).toBe(2);
    expect(errors).toEqual(["broken: broken.cfg: domain broken: the console sink failed (ENOSPC: no space left on device, write); its console text is dropped and counted"]);
    ts.destroyAll();
  });

  it("a DomainError from building names the config file, and the kernel path when the image is refused", () => {
    const hv = new Hypervisor({ memoryMiB: 64 });
    const ts = new Toolstack(hv, { resources: () => ({ kernel: new TextEncoder().encode("#!/bin/sh\necho not an ELF image\n") }) });
    let e: unknown;
    try {
      ts.create(parseDomainConfig('name = "x"\nmemory = 8\nkernel = "boot/k.elf"\n', "machines/x.cfg"), "machines/x.cfg");
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(DomainError);
    expect((e as DomainError).message).toBe('machines/x.cfg: domain x: kernel "boot/k.elf": e_ident[EI_MAG]: not an ELF file (bad magic)');
    expect((e as DomainError).source).toBe("machines/x.cfg");
  });
});
