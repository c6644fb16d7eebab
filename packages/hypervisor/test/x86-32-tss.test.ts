/**
 * Hardware task switches in a 32-bit guest (packages/guests/c/x86-32/tss.c), emulated by the
 * hypervisor as Xen's hvm_task_switch does (src/task-switch.ts): a double fault through a task
 * gate onto a clean stack and back with IRET, INT 0x40 through a task gate whose handler returns
 * with IRET (NT = 1, the back link), and task gates to bad TSSes giving #NP, #TS and #GP, on EPT
 * and on shadow paging beside a well-behaved 64-bit domain; and two hostile variants (a TSS above
 * the guest's RAM, a 16-bit TSS) that end their own domain only.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { guestImageUrl, x86_32GuestUrl } from "@vtlab/guests";
import { Hypervisor } from "@vtlab/hypervisor";

const image = () => new Uint8Array(readFileSync(x86_32GuestUrl("tss")));

const EXPECTED = [
  "x86-32 tss: task switches, 32-bit paging",
  "#DF task: error code 0x0 back link 0x28 cr2 0x8000fc old esp 0x800100",
  "#DF task: on its own clean stack, error code pushed: ok",
  "#DF task: NT = 1, CR0.TS = 1, CR3 = its own page directory: ok",
  "#DF task: old TSS holds EIP of the faulting PUSH, EBX 0xb0b0, EFLAGS without NT: ok",
  "#DF task: both TSS descriptors busy: ok",
  "back from the #DF task: CR0.TS = 1, NT = 0, #DF task's TSS available again: ok",
  "task 0x38 by INT 0x40: back link 0x28, NT = 1, no error code pushed: ok",
  "task 0x38: the caller's saved EIP is after its INT, EAX 0x1111: ok",
  "back from task 0x38: eax 0x4041",
  "back from task 0x38: EBX and ESI kept, NT = 0, CR0.TS = 1, 0x38 available, 0x28 busy: ok",
  "task 0x38 by INT 0x40: back link 0x28, NT = 1, no error code pushed: ok",
  "task 0x38: the caller's saved EIP is after its INT, EAX 0x1111: ok",
  "back from task 0x38: eax 0x4042",
  "back from task 0x38: EBX and ESI kept, NT = 0, CR0.TS = 1, 0x38 available, 0x28 busy: ok",
  "#NP vector 0xb error 0x40 eip EIP cs 0x8",
  "#TS vector 0xa error 0x48 eip EIP cs 0x8",
  "#GP vector 0xd error 0x28 eip EIP cs 0x8",
  "#GP vector 0xd error 0x1000 eip EIP cs 0x8",
  "#TS vector 0xa error 0x38 eip EIP cs 0x8",
  "the faults left the running task in place: 0x28 busy, TR 0x28: ok",
  "#TS vector 0xa error 0x10 eip 0xc00000 cs 0x8", // after the commit point: the new task's EIP
  "#TS after the commit point: in task 0x60, NT = 1, on its stack: ok",
  "#DB vector 0x1 error 0x0 eip EIP cs 0x8",
  "#DB trap for T = 1: in task 0x68, DR6.BT set: ok",
  "x86-32 tss: PASS",
];

function run(hap: boolean, cmdline?: string) {
  const hv = new Hypervisor({ memoryMiB: 96 });
  const d = hv.createDomain({ name: "x86-32-tss", memoryMiB: 16, hap, kernel: image(), ...(cmdline !== undefined ? { cmdline } : {}) });
  const good = hv.createDomain({ name: "good", memoryMiB: 16, hap, kernel: new Uint8Array(readFileSync(guestImageUrl("setjmp"))) });
  hv.run({ maxInstructions: 100_000_000 });
  const shape = d.console.trimEnd().split("\n").map((l) => l.replace(/eip 0x1[0-9a-f]{5}/, "eip EIP"));
  return { state: d.state, code: d.exitCode, crash: d.crashReason, shape, console: d.console, exits: d.exitStats.byReasonNames(), good: { state: good.state, code: good.exitCode } };
}

describe("x86-32/tss: task switches emulated by the hypervisor", () => {
  const consoles = new Map<boolean, string>();
  it.each([
    ["EPT", true],
    ["shadow paging", false],
  ])("runs to PASS on %s beside a 64-bit domain", (_mmu, hap) => {
    const r = run(hap);
    consoles.set(hap, r.console);
    expect({ state: r.state, code: r.code, crash: r.crash }).toEqual({ state: "shutdown", code: 0, crash: undefined });
    expect(r.shape).toEqual(EXPECTED);
    expect(r.exits).toMatchObject({ TaskSwitch: 15 }); // #DF and its IRET, 2 x (INT 0x40, IRET), 4 bad gates, 1 bad IRET, 2 x (INT, IRET) for the new-task faults
    expect(r.good).toEqual({ state: "shutdown", code: 0 });
  });

  it("prints the same bytes on EPT and on shadow", () => {
    expect(consoles.get(false) ?? run(false).console).toBe(consoles.get(true) ?? run(true).console);
  });

  it.each([
    ["EPT", true],
    ["shadow paging", false],
  ])("a task gate to a TSS above the guest's RAM crashes that domain only, naming the TSS (%s)", (_mmu, hap) => {
    const r = run(hap, "outside");
    expect(r.state).toBe("crashed");
    expect(r.crash).toBe("task switch: the new TSS (selector 0x58) at linear 0xf000000 is at GPA 0xf000000, which is not RAM");
    expect(r.good).toEqual({ state: "shutdown", code: 0 });
  });

  it.each([
    ["EPT", true],
    ["shadow paging", false],
  ])("a task gate to a 16-bit TSS crashes that domain only: 16-bit TSSes are not modelled (%s)", (_mmu, hap) => {
    const r = run(hap, "tss16");
    expect(r.state).toBe("crashed");
    expect(r.crash).toBe("task switch to a 16-bit TSS (selector 0x50): 16-bit TSSes are not modelled");
    expect(r.good).toEqual({ state: "shutdown", code: 0 });
  });
});
