/**
 * The exit loop the cpu-vmx exit benchmarks share (bench/run.ts, bench/exits-cpu.ts): a guest
 * entered on a test machine, and a minimal hypervisor loop that takes each exit, skips the exiting
 * instruction (GUEST_RIP += VM_EXIT_INSTRUCTION_LEN) and resumes.
 */
import { CPU_ACTIVATE_SECONDARY, SECONDARY_ENABLE_VPID, VmcsField as F, vmEntry, type Vmcs } from "@vtlab/cpu-vmx";
import { machine64, type TestMachine } from "../test/machine.js";
import { guestVmcs } from "../test/vmx-fixture.js";

export interface ExitLoopGuest {
  readonly m: TestMachine;
  readonly v: Vmcs;
}

/** Enter `code` as a guest with primary controls `proc`; `vpid`: VIRTUAL_PROCESSOR_ID 1 (SECONDARY_ENABLE_VPID). */
export function exitLoopGuest(code: string, proc: number, vpid = false): ExitLoopGuest {
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

/** Take `exits` exits of basic reason `reason` (ExitReason), each time skipping the instruction and resuming. */
export function runExits({ m, v }: ExitLoopGuest, reason: number, exits: number): void {
  for (let k = 0; k < exits; k++) {
    const r = m.cpu.run(1_000_000);
    if (r.kind !== "vmexit" || r.exit.reason !== reason) throw new Error(`unexpected ${r.kind}`);
    v.setNatural(F.GUEST_RIP, v.readNatural(F.GUEST_RIP) + r.exit.instructionLength);
    const e = vmEntry(m.cpu, v, false);
    if (e !== undefined) throw new Error("resume failed");
  }
}
