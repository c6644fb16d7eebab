/**
 * `GuestOps`: direct execution for native (TypeScript) guests. A native guest kernel's code is
 * not interpreted, but every memory access (through the TLB, the guest's page tables and the
 * active MMU mode), every privileged operation, port access and hypercall goes through these
 * operations on the same vCPU, and each runs the very handler or internal the interpreter uses
 * for the corresponding instruction. So the VMX controls apply the same way: a CPUID here is a
 * CPUID exit with length 2, an OUT is an I/O exit with the same qualification.
 *
 * A VM exit goes to the hypervisor's `onExit`, then the vCPU is resumed (VMRESUME): if the
 * hypervisor emulated the operation (it advanced GUEST_RIP past it, as for an instruction) the
 * operation is complete and returns what the emulation left in the registers; otherwise it is
 * retried (after a shadow fill, say). A fault that does not exit goes to the native kernel's
 * `onException` (its IDT, in effect), which may fix things and ask for a retry; otherwise the
 * operation returns the fault as a `GuestFault` value.
 */
import type { Cpu } from "./cpu.js";
import { Insn } from "./decode/insn.js";
import * as control from "./exec/control.js";
import * as sys from "./exec/system.js";
import type { VmExit } from "./vmx/interfaces.js";
import { vmEntry } from "./vmx/nonroot.js";
import { VmcsField } from "./vmx/vmcs-fields.js";

/** A fault delivered to the native guest and not retried. */
export interface GuestFault {
  readonly kind: "guest-fault";
  readonly vector: number;
  readonly errorCode: number;
  readonly cr2: number;
}

export interface GuestOps {
  load(gva: number, size: 1 | 2 | 4 | 8): number | GuestFault;
  store(gva: number, size: 1 | 2 | 4 | 8, value: number): GuestFault | undefined;
  readCr(n: number): number | GuestFault;
  writeCr(n: number, value: number): GuestFault | undefined;
  invlpg(gva: number): GuestFault | undefined;
  portIn(port: number, size: 1 | 2 | 4): number | GuestFault;
  portOut(port: number, size: 1 | 2 | 4, value: number): GuestFault | undefined;
  cpuid(leaf: number, subleaf: number): [eax: number, ebx: number, ecx: number, edx: number] | GuestFault;
  rdmsr(msr: number): number | GuestFault;
  wrmsr(msr: number, value: number): GuestFault | undefined;
  /** HLT: true when the vCPU is now halted (waiting for an interrupt). */
  hlt(): boolean | GuestFault;
  /** VMCALL: the hypercall's result (RAX after the hypervisor handled the exit). */
  vmcall(): number | GuestFault;
}

export interface NativeGuestEnvironment {
  /** The hypervisor's handling of a VM exit the operation caused (the vCPU is resumed after). */
  onExit(exit: VmExit): void;
  /** The native kernel's exception handler: "retry" after fixing the cause, "fail" to return the fault. */
  onException?(vector: number, errorCode: number, cr2: number): "retry" | "fail";
}

/** Retries of one operation before it is given up as a fault (a hypervisor or kernel that never fixes the cause). */
const MAX_RETRIES = 64;

/** Scratch register the operations use for register operands (RAX), as a real instruction would name it. */
const RAX = 0;

function synthetic(exec: Insn["exec"], len: number, fill: Partial<Insn>): Insn {
  const i = new Insn(exec);
  i.len = len;
  i.opSize = 8;
  i.addrSize = 8;
  Object.assign(i, fill);
  return i;
}

export class NativeGuestOps implements GuestOps {
  // The instructions each operation stands for, with their real encodings' lengths.
  private readonly cpuidInsn = synthetic(sys.cpuid, 2, { opcode: 0x1a2 });
  private readonly inInsn = synthetic(sys.inPort, 1, { opcode: 0xed, cc: 1 });
  private readonly outInsn = synthetic(sys.outPort, 1, { opcode: 0xef, cc: 1 });
  private readonly rdmsrInsn = synthetic(sys.msrAccess, 2, { opcode: 0x132, cc: 0 });
  private readonly wrmsrInsn = synthetic(sys.msrAccess, 2, { opcode: 0x130, cc: 1 });
  private readonly movFromCrInsn = synthetic(sys.movFromCr, 3, { opcode: 0x120, rm: RAX });
  private readonly movToCrInsn = synthetic(sys.movToCr, 3, { opcode: 0x122, rm: RAX });
  private readonly invlpgInsn = synthetic(sys.invlpg, 3, { opcode: 0x101, isMem: true, seg: 3 });
  private readonly hltInsn = synthetic(control.hlt, 1, { opcode: 0xf4 });
  private readonly vmcallInsn = synthetic(sys.vmcall, 3, { opcode: 0x101 });

  constructor(
    readonly cpu: Cpu,
    private readonly env: NativeGuestEnvironment,
  ) {}

  /** Run one operation to completion: exits go to the hypervisor, faults to the kernel. */
  private run<T>(length: number, op: () => T, emulated: () => T): T | GuestFault {
    const cpu = this.cpu;
    for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
      const r = cpu.executeOp(length, op);
      if (r.kind === "done") return r.value;
      if (r.kind === "vmexit") {
        const vmcs = cpu.vmcsForResume;
        const base = cpu.rip;
        this.env.onExit(r.exit);
        if (vmcs === undefined) throw new Error("vtlab bug: a VM exit without a VMCS to resume");
        const resumed = vmEntry(cpu, vmcs, false);
        if (resumed !== undefined) throw new Error(`VMRESUME of a native guest failed: ${resumed.kind === "vmfail-valid" ? resumed.message : resumed.message}`);
        if (vmcs.readNatural(VmcsField.GUEST_RIP) !== base) {
          // The hypervisor emulated the operation (it stepped past it): take its result.
          cpu.rip = base;
          return emulated();
        }
        continue;
      }
      const answer = this.env.onException?.(r.vector, r.errorCode, r.cr2) ?? "fail";
      if (answer === "fail") return { kind: "guest-fault", vector: r.vector, errorCode: r.errorCode, cr2: r.cr2 };
    }
    return { kind: "guest-fault", vector: -1, errorCode: -1, cr2: this.cpu.cr2 };
  }

  load(gva: number, size: 1 | 2 | 4 | 8): number | GuestFault {
    const cpu = this.cpu;
    const read = () => (size === 1 ? cpu.read8(gva) : size === 2 ? cpu.read16(gva) : size === 4 ? cpu.read32(gva) >>> 0 : joinRead64(cpu, gva));
    return this.run(4, read, read);
  }

  store(gva: number, size: 1 | 2 | 4 | 8, value: number): GuestFault | undefined {
    const cpu = this.cpu;
    const write = () => {
      if (size === 1) cpu.write8(gva, value);
      else if (size === 2) cpu.write16(gva, value);
      else if (size === 4) cpu.write32(gva, value | 0);
      else cpu.write64(gva, value | 0, Math.floor(value / 0x1_0000_0000) | 0);
      return undefined;
    };
    return this.run(4, write, () => undefined);
  }

  readCr(n: number): number | GuestFault {
    const cpu = this.cpu;
    const i = this.movFromCrInsn;
    i.reg = n;
    return this.run(i.len, () => (sys.movFromCr(cpu, i), cpu.regAddr(RAX)), () => cpu.regAddr(RAX));
  }

  writeCr(n: number, value: number): GuestFault | undefined {
    const cpu = this.cpu;
    const i = this.movToCrInsn;
    i.reg = n;
    cpu.setRegFromNumber(RAX, value);
    return this.run(i.len, () => (sys.movToCr(cpu, i), undefined), () => undefined);
  }

  invlpg(gva: number): GuestFault | undefined {
    const cpu = this.cpu;
    const i = this.invlpgInsn;
    i.disp = gva;
    return this.run(i.len, () => (sys.invlpg(cpu, i), undefined), () => undefined);
  }

  portIn(port: number, size: 1 | 2 | 4): number | GuestFault {
    const cpu = this.cpu;
    const i = this.inInsn;
    i.opSize = size;
    cpu.setReg16(2, port);
    const result = () => (size === 1 ? cpu.lo[RAX]! & 0xff : size === 2 ? cpu.lo[RAX]! & 0xffff : cpu.lo[RAX]! >>> 0);
    return this.run(i.len, () => (sys.inPort(cpu, i), result()), result);
  }

  portOut(port: number, size: 1 | 2 | 4, value: number): GuestFault | undefined {
    const cpu = this.cpu;
    const i = this.outInsn;
    i.opSize = size;
    cpu.setReg16(2, port);
    cpu.setReg32(RAX, value);
    return this.run(i.len, () => (sys.outPort(cpu, i), undefined), () => undefined);
  }

  cpuid(leaf: number, subleaf: number): [number, number, number, number] | GuestFault {
    const cpu = this.cpu;
    cpu.setReg32(0, leaf);
    cpu.setReg32(1, subleaf);
    const regs = (): [number, number, number, number] => [cpu.lo[0]! >>> 0, cpu.lo[3]! >>> 0, cpu.lo[1]! >>> 0, cpu.lo[2]! >>> 0];
    return this.run(this.cpuidInsn.len, () => (sys.cpuid(cpu, this.cpuidInsn), regs()), regs);
  }

  rdmsr(msr: number): number | GuestFault {
    const cpu = this.cpu;
    cpu.setReg32(1, msr);
    const value = () => (cpu.lo[2]! >>> 0) * 0x1_0000_0000 + (cpu.lo[0]! >>> 0);
    return this.run(2, () => (sys.msrAccess(cpu, this.rdmsrInsn), value()), value);
  }

  wrmsr(msr: number, value: number): GuestFault | undefined {
    const cpu = this.cpu;
    cpu.setReg32(1, msr);
    cpu.setReg32(0, value | 0);
    cpu.setReg32(2, Math.floor(value / 0x1_0000_0000) | 0);
    return this.run(2, () => (sys.msrAccess(cpu, this.wrmsrInsn), undefined), () => undefined);
  }

  hlt(): boolean | GuestFault {
    const cpu = this.cpu;
    return this.run(1, () => (control.hlt(cpu, this.hltInsn), cpu.halted), () => cpu.halted);
  }

  vmcall(): number | GuestFault {
    const cpu = this.cpu;
    return this.run(3, () => (sys.vmcall(cpu, this.vmcallInsn), cpu.regAddr(RAX)), () => cpu.regAddr(RAX));
  }
}

function joinRead64(cpu: Cpu, gva: number): number {
  const lo = cpu.read64(gva) >>> 0;
  return (cpu.tmpHi | 0) * 0x1_0000_0000 + lo;
}
