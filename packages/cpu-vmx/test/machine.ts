/**
 * Test fixtures: a CPU already in 64-bit mode with identity paging (2 MiB pages over the first
 * 1 GiB), a flat GDT, a debug console on port 0xE9 and an exit port at 0xF4 (QEMU's
 * isa-debug-exit convention). Used by the interpreter's own tests; real guests boot through PVH.
 */
import { MachineMemory, PortIoBus, type AccessSize, type BusDevice } from "@vtlab/arch";
import { CR0_PE, CR0_PG, CR0_WP, CR4_PAE, Cpu, EFER_LMA, EFER_LME, EFER_NXE, Seg } from "@vtlab/cpu-vmx";

export const GDT = 0x1000;
export const PML4 = 0x2000;
export const CODE = 0x10_0000;
export const STACK_TOP = 0x8_0000;

export interface TestMachine {
  cpu: Cpu;
  memory: MachineMemory;
  ports: PortIoBus;
  console: string[];
  exitCode: () => number | undefined;
}

export function debugPorts(ports: PortIoBus, cpu: () => Cpu, console: string[]): { exit: number | undefined } {
  const state: { exit: number | undefined } = { exit: undefined };
  const con: BusDevice = {
    read: () => 0xe9,
    write: (_o: number, _s: AccessSize, v: number) => {
      console.push(String.fromCharCode(v & 0xff));
      return undefined;
    },
  };
  const exit: BusDevice = {
    read: () => 0xffffffff,
    write: (_o: number, _s: AccessSize, v: number) => {
      state.exit = v >>> 0;
      cpu().requestStop("debug-exit", v >>> 0);
      return undefined;
    },
  };
  ports.register(0xe9, 1, con, "debugcon");
  ports.register(0xf4, 4, exit, "isa-debug-exit");
  return state;
}

export function machine64(code: Uint8Array | string, memorySize = 64 * 1024 * 1024, shared?: MachineMemory): TestMachine {
  // `shared`: a second CPU over another test machine's memory (its tables and code written again, unchanged).
  const memory = shared ?? new MachineMemory(memorySize);
  const ports = new PortIoBus();
  const cpu = new Cpu({ memory, ports });
  const console: string[] = [];
  const state = debugPorts(ports, () => cpu, console);
  // GDT: null, 64-bit code (0x08), data (0x10), 32-bit code (0x18), user data (0x23), user code64 (0x2b).
  const gdt = [
    [0, 0],
    [0x0000ffff, 0x00af9a00],
    [0x0000ffff, 0x00cf9200],
    [0x0000ffff, 0x00cf9a00],
    [0x0000ffff, 0x00cff200],
    [0x0000ffff, 0x00affa00],
  ];
  gdt.forEach(([lo, hi], k) => memory.write64(GDT + k * 8, lo!, hi!));
  // Identity map 1 GiB with 2 MiB pages, user-accessible and writable.
  memory.write64(PML4, 0x3000 | 7, 0);
  memory.write64(0x3000, 0x4000 | 7, 0);
  for (let k = 0; k < 512; k++) memory.write64(0x4000 + k * 8, (k * 0x20_0000) | 0x87, 0);
  const bytes = typeof code === "string" ? Uint8Array.from(code.match(/../g)!.map((h) => parseInt(h, 16))) : code;
  memory.writeBytes(CODE, bytes);
  cpu.gdtrBase = GDT;
  cpu.gdtrLimit = gdt.length * 8 - 1;
  cpu.cr0 = CR0_PE | CR0_PG | CR0_WP | 0x10;
  cpu.cr4 = CR4_PAE;
  cpu.cr3 = PML4;
  cpu.efer = EFER_LME | EFER_LMA | EFER_NXE;
  const cs = cpu.seg[Seg.CS]!;
  cs.selector = 0x08;
  cs.attr = 0xa09b;
  for (const s of [Seg.SS, Seg.DS, Seg.ES, Seg.FS, Seg.GS]) {
    cpu.seg[s]!.selector = 0x10;
    cpu.seg[s]!.attr = 0xc093;
  }
  cpu.updateMode();
  cpu.flushTlb(false);
  cpu.rip = CODE;
  cpu.setRegFromNumber(4, STACK_TOP);
  return { cpu, memory, ports, console, exitCode: () => state.exit };
}

/** Assemble-free helper: hex string of machine code to bytes. */
export function hex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, "");
  return Uint8Array.from(clean.match(/../g)!.map((h) => parseInt(h, 16)));
}
