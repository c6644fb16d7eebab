/**
 * 32-bit guests that stay out of long mode (packages/guests/c/x86-32, gcc -m32, PVH entry): one
 * in 32-bit paging with 4 MiB PSE pages, one in PAE paging with NX, each taking #PF, #GP and #UD
 * through 32-bit interrupt gates at CPL 0 and from CPL 3 (a ring change through the TSS), on EPT
 * and on shadow paging (PAE shadows, the vCPU in PAE paging underneath), beside a well-behaved
 * 64-bit domain. Every frame the CPU pushed is printed, and both MMUs print the same bytes.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { guestImageUrl, x86_32GuestUrl } from "@vtlab/guests";
import { PagingFormat } from "@vtlab/arch";
import { Hypervisor } from "@vtlab/hypervisor";

const image = (name: string) => new Uint8Array(readFileSync(x86_32GuestUrl(name)));

/** What each guest must print: the same on every correct CPU and MMU. */
const COMMON = (name: string, banner: string, extra: string[]) => [
  `x86-32 ${name}: ${banner}`,
  "paging on: A and D set",
  "#PF vector 0xe error 0x0 eip EIP cs 0x8 cr2 0xa00000",
  "#PF vector 0xe error 0x3 eip EIP cs 0x8 cr2 0x401000",
  "#GP vector 0xd error 0x1234 eip EIP cs 0x8", // selector 0x1234 has TI = 1: the LDT, of limit 0
  "#UD vector 0x6 error 0x0 eip EIP cs 0x8",
  ...extra,
  "#UD vector 0x6 error 0x0 eip EIP cs 0x1b from CPL 3: ss 0x23 esp ESP",
  "#PF vector 0xe error 0x5 eip EIP cs 0x1b cr2 0x402000 from CPL 3: ss 0x23 esp ESP",
  "#GP vector 0xd error 0x182 eip EIP cs 0x1b from CPL 3: ss 0x23 esp ESP",
  "int 0x80 from CPL 0x3: done",
  `x86-32 ${name}: PASS`,
];
const EXPECTED: Record<string, string[]> = {
  pse: COMMON("pse", "32-bit paging, 4 MiB pages", ["rewritten PTE and PDE: seen"]),
  pae: COMMON("pae", "PAE paging, 2 MiB pages, NX", ["#PF vector 0xe error 0x11 eip 0x403000 cs 0x8 cr2 0x403000", "#GP vector 0xd error 0x0 eip EIP cs 0x8", "rewritten PTE: seen"]),
};

/** The console with the image-dependent EIP and ESP values replaced, and the raw one. */
function run(name: string, hap: boolean) {
  const hv = new Hypervisor({ memoryMiB: 96 });
  const d = hv.createDomain({ name: `x86-32-${name}`, memoryMiB: 16, hap, kernel: image(name) });
  const good = hv.createDomain({ name: "good", memoryMiB: 16, hap, kernel: new Uint8Array(readFileSync(guestImageUrl("setjmp"))) });
  hv.run({ maxInstructions: 200_000_000 });
  const lines = d.console.trimEnd().split("\n");
  const shape = lines.map((l) => l.replace(/eip 0x1[0-9a-f]{5}/, "eip EIP").replace(/esp 0x1[0-9a-f]{5}/, "esp ESP"));
  const cpu = d.vcpus[0]!.cpu;
  // The mode the vCPU ran in at the end: the guest's own on EPT; PAE paging under shadow.
  const underneath = { format: cpu.paging.format, longMode: (cpu.efer & 0x400) !== 0 };
  return { state: d.state, code: d.exitCode, crash: d.crashReason, shape, console: d.console, underneath, good: { state: good.state, code: good.exitCode } };
}

describe.each(["pse", "pae"])("x86-32/%s", (name) => {
  const results = new Map<boolean, ReturnType<typeof run>>();
  it.each([
    ["EPT", true],
    ["shadow paging", false],
  ])("runs to PASS on %s, every exception frame as the SDM says, beside a 64-bit domain", (_mmu, hap) => {
    const r = run(name, hap);
    results.set(hap, r);
    expect({ state: r.state, code: r.code, crash: r.crash }).toEqual({ state: "shutdown", code: 0, crash: undefined });
    expect(r.shape).toEqual(EXPECTED[name]);
    expect(r.good).toEqual({ state: "shutdown", code: 0 });
    expect(r.underneath).toEqual({ format: hap && name === "pse" ? PagingFormat.Bits32 : PagingFormat.Pae, longMode: false });
  });

  it("prints the same bytes on EPT and on shadow", () => {
    const ept = results.get(true) ?? run(name, true);
    const shadow = results.get(false) ?? run(name, false);
    expect(shadow.console).toBe(ept.console);
  });
});
