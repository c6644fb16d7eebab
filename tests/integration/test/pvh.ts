/**
 * Test fixture: load an ELF64 guest and start it the PVH way (xen/arch-x86/hvm/start_info.h):
 * PT_LOAD segments at p_paddr, entry from the XEN_ELFNOTE_PHYS32_ENTRY note (type 18, name
 * "Xen"), 32-bit flat protected mode, paging off, EBX = physical address of hvm_start_info.
 * The image and boot structures come from the hypervisor's domain builder (`buildPvh`).
 */
import { MachineMemory, PortIoBus } from "@vtlab/arch";
import { Cpu } from "@vtlab/cpu-vmx";
import { DEBUGCON_PORT, DEBUG_EXIT_PORT } from "@vtlab/guests";
import { DebugConsole, DebugExit, buildPvh } from "@vtlab/hypervisor";

/** The debug console (each byte written is a character) and QEMU's isa-debug-exit port. */
function debugPorts(ports: PortIoBus, cpu: () => Cpu, console: string[]): { exit: number | undefined } {
  const state: { exit: number | undefined } = { exit: undefined };
  ports.register(DEBUGCON_PORT, 1, new DebugConsole((b) => console.push(String.fromCharCode(b))), "debugcon");
  const exit = new DebugExit((code) => {
    state.exit = code;
    cpu().requestStop("debug-exit", code);
  });
  ports.register(DEBUG_EXIT_PORT, 4, exit, "isa-debug-exit");
  return state;
}

export interface PvhMachine {
  cpu: Cpu;
  memory: MachineMemory;
  console: string[];
  exitCode: () => number | undefined;
}

export function loadPvh(image: Uint8Array, cmdline = "", memorySize = 256 * 1024 * 1024): PvhMachine {
  const memory = new MachineMemory(memorySize);
  // The hypervisor's domain builder writes the image, hvm_start_info, memory map and command line;
  // here the guest then starts on the bare interpreter in 32-bit flat mode, paging off, as PVH says.
  const boot = buildPvh(image, cmdline, memorySize, { write: (gpa, bytes) => memory.writeBytes(gpa, bytes), zero: (gpa, length) => memory.fill(gpa, length, 0) });
  if ("kind" in boot) throw new Error(`bad guest image: ${boot.message}`);
  const ports = new PortIoBus();
  const cpu = new Cpu({ memory, ports });
  const console: string[] = [];
  const state = debugPorts(ports, () => cpu, console);
  cpu.resetToFlat32();
  cpu.rip = boot.entry;
  cpu.setReg32(3, boot.startInfo);
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
