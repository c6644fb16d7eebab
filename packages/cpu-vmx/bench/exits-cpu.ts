/**
 * VM exits per CPU second of the cpu-vmx CPUID loop (bench/run.ts's, without and with VPID),
 * best of VTLAB_BENCH_REPEAT runs of 200,000 exits: for measuring steps on the exit path.
 */
import { SECONDARY_ENABLE_VPID, CPU_ACTIVATE_SECONDARY, VmcsField as F, vmEntry, type Vmcs } from "@vtlab/cpu-vmx";
import { machine64, type TestMachine } from "../test/machine.js";
import { guestVmcs } from "../test/vmx-fixture.js";

function setup(code: string, proc: number, vpid: boolean): { m: TestMachine; v: Vmcs } {
  const m = machine64(code);
  const v = guestVmcs(m, { proc: proc | (vpid ? CPU_ACTIVATE_SECONDARY : 0) });
  if (vpid) {
    v.setField(F.SECONDARY_VM_EXEC_CONTROL, SECONDARY_ENABLE_VPID);
    v.setField(F.VIRTUAL_PROCESSOR_ID, 1);
  }
  const e = vmEntry(m.cpu, v, true);
  if (e !== undefined) throw new Error("entry failed");
  return { m, v };
}
const EXITS = 200_000;
function loop(m: TestMachine, v: Vmcs, expectReason: number): void {
  for (let k = 0; k < EXITS; k++) {
    const r = m.cpu.run(1_000_000);
    if (r.kind !== "vmexit" || r.exit.reason !== expectReason) throw new Error(`unexpected ${r.kind}`);
    v.setNatural(F.GUEST_RIP, v.readNatural(F.GUEST_RIP) + r.exit.instructionLength);
    const e = vmEntry(m.cpu, v, false);
    if (e !== undefined) throw new Error("resume failed");
  }
}
const repeat = Number(process.env.VTLAB_BENCH_REPEAT ?? 5);
for (const vpid of [false, true]) {
  const s = setup("0fa2ebfc", 0, vpid);
  loop(s.m, s.v, 10);
  let best = 0;
  const all: number[] = [];
  for (let i = 0; i < repeat; i++) {
    const c0 = process.cpuUsage();
    loop(s.m, s.v, 10);
    const c = process.cpuUsage(c0);
    const r = EXITS / ((c.user + c.system) / 1e6);
    all.push(Math.round(r / 1000));
    best = Math.max(best, r);
  }
  console.log(JSON.stringify({ name: `cpu-vmx.cpuid-loop${vpid ? ".vpid" : ""}`, perCpuSecond: Math.round(best), runsK: all.join(",") }));
}
