/**
 * @vtlab/cpu-vmx benchmarks: VM exits per second for a guest loop of CPUID (each exit handled by
 * a minimal hypervisor loop: emulate, advance RIP, resume) and of I/O port writes with
 * unconditional I/O exiting. Prints one JSON object per figure.
 */
import { measureRates, report } from "@vtlab/bench-harness";
import { CPU_UNCOND_IO_EXITING, VmcsField as F, vmEntry, type Vmcs } from "@vtlab/cpu-vmx";
import { machine64, type TestMachine } from "../test/machine.js";
import { guestVmcs } from "../test/vmx-fixture.js";

function setup(code: string, proc: number): { m: TestMachine; v: Vmcs } {
  const m = machine64(code);
  const v = guestVmcs(m, { proc });
  const e = vmEntry(m.cpu, v, true);
  if (e !== undefined) throw new Error("entry failed");
  return { m, v };
}

const EXITS = 2000;

/** Run `EXITS` exits: each time, skip the exiting instruction and VMRESUME. */
function loop(m: TestMachine, v: Vmcs, expectReason: number): void {
  for (let k = 0; k < EXITS; k++) {
    const r = m.cpu.run(1_000_000);
    if (r.kind !== "vmexit" || r.exit.reason !== expectReason) throw new Error(`unexpected ${r.kind}`);
    v.setNatural(F.GUEST_RIP, v.readNatural(F.GUEST_RIP) + r.exit.instructionLength);
    const e = vmEntry(m.cpu, v, false);
    if (e !== undefined) throw new Error("resume failed");
  }
}

// cpuid; jmp back (eb fc)
const cpuid = setup("0fa2ebfc", 0);
// out 0x80, al; jmp back
const io = setup("e680ebfc", CPU_UNCOND_IO_EXITING);

await measureRates([
  { name: "cpu-vmx.vmexits.cpuid-loop", unit: "exits/s", opsPerCall: EXITS, run: () => loop(cpuid.m, cpuid.v, 10) },
  { name: "cpu-vmx.vmexits.io-write-loop", unit: "exits/s", opsPerCall: EXITS, run: () => loop(io.m, io.v, 30) },
]);
report({ name: "cpu-vmx.vmexits.cpuid-loop.instructions-per-exit", value: 1, unit: "guest instructions between exits (JMP + CPUID, the CPUID exiting)" });
