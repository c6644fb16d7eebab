/**
 * Test fixture: load an ELF64 guest and start it the PVH way (xen/arch-x86/hvm/start_info.h):
 * PT_LOAD segments at p_paddr, entry from the XEN_ELFNOTE_PHYS32_ENTRY note (type 18, name
 * "Xen"), 32-bit flat protected mode, paging off, EBX = physical address of hvm_start_info.
 * (The hypervisor's domain builder will do this for real machines; this is the test's own.)
 */
import { MachineMemory, PortIoBus, type AccessSize, type BusDevice } from "@vtlab/arch";
import { Cpu } from "@vtlab/cpu-vmx";
import { DEBUGCON_PORT, DEBUG_EXIT_PORT, XEN_HVM_START_MAGIC_VALUE } from "@vtlab/guests";
import { loadSegments, parseElf } from "@vtlab/hypervisor";

/** XEN_HVM_MEMMAP_TYPE_RAM (xen/arch-x86/hvm/start_info.h) */
export const XEN_HVM_MEMMAP_TYPE_RAM = 1;

/** The debug console (each byte written is a character) and QEMU's isa-debug-exit port. */
function debugPorts(ports: PortIoBus, cpu: () => Cpu, console: string[]): { exit: number | undefined } {
  const state: { exit: number | undefined } = { exit: undefined };
  const con: BusDevice = {
    read: () => DEBUGCON_PORT,
    write: (_o: number, _s: AccessSize, v: number) => {
      console.push(String.fromCharCode(v & 0xff));
      return undefined;
    },
  };
  const exit: BusDevice = {
    read: () => 0xffff_ffff,
    write: (_o: number, _s: AccessSize, v: number) => {
      state.exit = v >>> 0;
      cpu().requestStop("debug-exit", v >>> 0);
      return undefined;
    },
  };
  ports.register(DEBUGCON_PORT, 1, con, "debugcon");
  ports.register(DEBUG_EXIT_PORT, 4, exit, "isa-debug-exit");
  return state;
}

const START_INFO = 0x6000;
const MEMMAP = 0x6100;
const CMDLINE = 0x6200;

export interface PvhMachine {
  cpu: Cpu;
  memory: MachineMemory;
  console: string[];
  exitCode: () => number | undefined;
}

export function loadPvh(image: Uint8Array, cmdline = "", memorySize = 256 * 1024 * 1024): PvhMachine {
  const elf = parseElf(image, memorySize);
  if ("kind" in elf) throw new Error(`bad guest image: ${elf.message}`);
  if (elf.pvhEntry === undefined) throw new Error("no XEN_ELFNOTE_PHYS32_ENTRY note: not a PVH image");
  const entry = elf.pvhEntry;
  const memory = new MachineMemory(memorySize);
  loadSegments(
    image,
    elf,
    (gpa, bytes) => memory.writeBytes(gpa, bytes),
    (gpa, length) => memory.fill(gpa, length, 0),
  );
  const cmd = new TextEncoder().encode(`${cmdline}\0`);
  memory.writeBytes(CMDLINE, cmd);
  memory.write32(START_INFO, XEN_HVM_START_MAGIC_VALUE);
  memory.write32(START_INFO + 4, 1); // version 1 (has the memory map)
  memory.write64(START_INFO + 24, CMDLINE, 0);
  memory.write64(START_INFO + 40, MEMMAP, 0);
  memory.write32(START_INFO + 48, 2);
  memory.write64(MEMMAP, 0, 0);
  memory.write64(MEMMAP + 8, 0xa0000, 0);
  memory.write32(MEMMAP + 16, XEN_HVM_MEMMAP_TYPE_RAM);
  memory.write64(MEMMAP + 24, 0x10_0000, 0);
  memory.write64(MEMMAP + 32, memorySize - 0x10_0000, 0);
  memory.write32(MEMMAP + 40, XEN_HVM_MEMMAP_TYPE_RAM);
  const ports = new PortIoBus();
  const cpu = new Cpu({ memory, ports });
  const console: string[] = [];
  const state = debugPorts(ports, () => cpu, console);
  cpu.resetToFlat32();
  cpu.rip = entry;
  cpu.setReg32(3, START_INFO);
  return { cpu, memory, console, exitCode: () => state.exit };
}

/** Run until the guest exits through port 0xF4, halts with interrupts off, or triple-faults. */
export function runToExit(m: PvhMachine, maxInstructions = 2_000_000_000): { kind: string; code?: number; output: string } {
  for (;;) {
    const r = m.cpu.run(Math.min(maxInstructions, 50_000_000));
    if (r.kind === "stop") return { kind: "exit", code: r.code, output: m.console.join("") };
    if (r.kind !== "budget") return { kind: r.kind, output: m.console.join("") };
    maxInstructions -= r.retired;
    if (maxInstructions <= 0) return { kind: "budget", output: m.console.join("") };
  }
}
