/**
 * @vtlab/cpu-vmx benchmarks: VM exits per second for a guest loop of CPUID (each exit handled by
 * a minimal hypervisor loop: emulate, advance RIP, resume) and of I/O port writes with
 * unconditional I/O exiting. Prints one JSON object per figure.
 */
import { measureRates, report } from "@vtlab/bench-harness";
import { CPU_UNCOND_IO_EXITING, ExitReason } from "@vtlab/cpu-vmx";
import { exitLoopGuest, runExits } from "./exit-loop.js";

const EXITS = 2000;

// cpuid; jmp back (eb fc)
const cpuid = exitLoopGuest("0fa2ebfc", 0);
// out 0x80, al; jmp back
const io = exitLoopGuest("e680ebfc", CPU_UNCOND_IO_EXITING);

await measureRates([
  { name: "cpu-vmx.vmexits.cpuid-loop", unit: "exits/s", opsPerCall: EXITS, run: () => runExits(cpuid, ExitReason.Cpuid, EXITS) },
  { name: "cpu-vmx.vmexits.io-write-loop", unit: "exits/s", opsPerCall: EXITS, run: () => runExits(io, ExitReason.IoInstruction, EXITS) },
]);
report({ name: "cpu-vmx.vmexits.cpuid-loop.instructions-per-exit", value: 1, unit: "guest instructions between exits (JMP + CPUID, the CPUID exiting)" });
