/**
 * The interpreter side of the SSE differential test: a 64-bit machine set up as the host runs
 * its processes (CR4.OSFXSR and OSXMMEXCPT), and a runner returning the harness's result shape
 * (with MXCSR and the XMM registers at a fault).
 */
import { MachineMemory, PortIoBus } from "@vtlab/arch";
import { CR0_PE, CR0_PG, CR0_WP, CR4_OSFXSR, CR4_OSXMMEXCPT, CR4_PAE, Cpu, EFER_LMA, EFER_LME, EFER_NXE, Seg } from "@vtlab/cpu-vmx";
import { COMPARED_FLAGS, SCRATCH_BASE, SCRATCH_SIZE, type TestCase } from "./generate";
import type { ExecResult, Outcome } from "./run-native";

const CODE = 0x20_0000;
const HANDLERS = 0x30_0000;
const IDT = 0x5000;
const TSS = 0x7000;
const IST_STACK = 0x9_0000;
const SCRATCH = Number(SCRATCH_BASE);

/** A 64-bit machine as the host runs its processes: identity paging, CR4.OSFXSR and OSXMMEXCPT, every IDT gate on a HLT. */
export function sseMachine(): { cpu: Cpu; memory: MachineMemory } {
  const memory = new MachineMemory(64 * 1024 * 1024);
  const cpu = new Cpu({ memory, ports: new PortIoBus() });
  memory.write64(0x1000, 0, 0);
  memory.write64(0x1008, 0x0000ffff, 0x00af9a00);
  memory.write64(0x1010, 0x0000ffff, 0x00cf9200);
  memory.write64(0x2000, 0x3000 | 3, 0);
  memory.write64(0x3000, 0x4000 | 3, 0);
  for (let k = 0; k < 512; k++) memory.write64(0x4000 + k * 8, (k * 0x20_0000) | 0x83, 0);
  for (let v = 0; v < 32; v++) {
    const target = HANDLERS + v * 16;
    memory.write32(IDT + v * 16, (0x08 << 16) | (target & 0xffff));
    memory.write32(IDT + v * 16 + 4, (target & 0xffff0000) | 0x8e00 | 1);
    memory.write32(IDT + v * 16 + 8, 0);
    memory.write8(target, 0xf4);
  }
  memory.write64(TSS + 0x24, IST_STACK, 0);
  cpu.gdtrBase = 0x1000;
  cpu.gdtrLimit = 0x17;
  cpu.idtrBase = IDT;
  cpu.idtrLimit = 32 * 16 - 1;
  cpu.tr.base = TSS;
  cpu.tr.limit = 0x67;
  cpu.cr0 = CR0_PE | CR0_PG | CR0_WP | 0x10 | 0x20; // NE
  cpu.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
  cpu.cr3 = 0x2000;
  cpu.efer = EFER_LME | EFER_LMA | EFER_NXE;
  cpu.seg[Seg.CS]!.selector = 0x08;
  cpu.seg[Seg.CS]!.attr = 0xa09b;
  for (const s of [Seg.SS, Seg.DS, Seg.ES]) {
    cpu.seg[s]!.selector = 0x10;
    cpu.seg[s]!.attr = 0xc093;
  }
  cpu.updateMode();
  return { cpu, memory };
}

/** The host reports #XM as SIGFPE, which the harness records as "#DE". */
const OUTCOMES: Record<number, Outcome> = { 0: "#DE", 6: "#UD", 19: "#DE" };

export function runInterpreter(m: { cpu: Cpu; memory: MachineMemory }, c: TestCase): ExecResult {
  const { cpu, memory } = m;
  const code = new Uint8Array(c.code.length + 1);
  code.set(c.code);
  code[c.code.length] = 0xf4;
  memory.writeBytes(CODE, code);
  memory.writeBytes(SCRATCH, c.init.memory);
  cpu.flushDecoded();
  for (let r = 0; r < 16; r++) {
    const v = c.init.gprs[r]!;
    cpu.lo[r] = Number(v & 0xffff_ffffn) | 0;
    cpu.hi[r] = Number(v >> 32n) | 0;
  }
  cpu.flagsOther = 0x2;
  cpu.setFlags(c.init.rflags | 2, COMPARED_FLAGS);
  cpu.cpl = 0;
  cpu.halted = false;
  cpu.rip = CODE;
  const r = cpu.run(100_000);
  let outcome: Outcome = "ok";
  let faultOffset: number | undefined;
  let flags = cpu.getFlags();
  if (r.kind !== "hlt") outcome = "fault";
  else if (cpu.rip !== CODE + c.code.length + 1) {
    const vector = (cpu.rip - 1 - HANDLERS) / 16;
    outcome = OUTCOMES[vector] ?? "fault";
    // The frame on the IST stack: [error code,] RIP, CS, RFLAGS, RSP, SS.
    let sp = cpu.regAddr(4);
    if (vector === 13 || vector === 14) sp += 8;
    faultOffset = (memory.read32(sp) as number) - CODE;
    flags = memory.read32(sp + 16) as number;
    cpu.lo[4] = memory.read32(sp + 24) as number;
    cpu.hi[4] = memory.read32(sp + 28) as number;
  }
  const gprs: bigint[] = [];
  for (let k = 0; k < 16; k++) gprs.push((BigInt(cpu.hi[k]! >>> 0) << 32n) | BigInt(cpu.lo[k]! >>> 0));
  const mem = new Uint8Array(SCRATCH_SIZE);
  memory.readBytes(SCRATCH, mem);
  const result: ExecResult = { outcome, gprs, rflags: flags, memory: mem, ...(faultOffset !== undefined ? { faultOffset } : {}) };
  if (outcome !== "ok") {
    result.faultMxcsr = cpu.fpu.mxcsr;
    result.faultXmm = cpu.fpu.xmm.slice();
  }
  return result;
}

