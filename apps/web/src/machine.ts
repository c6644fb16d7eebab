/**
 * One machine of the page: a Hypervisor host with one domain booted from the reference kernel,
 * run in bounded slices so that the worker stays responsive between them. No DOM and no Node
 * built-ins: it runs in a Web Worker (and in vitest under Node, for the unit test).
 */
import { Hypervisor, MemoryBlockBackend, NvmeController, parsePciBdf, type Domain } from "@vtlab/hypervisor";
import { machineName, type MachineChoice, type StatsSample } from "./protocol.js";

/** The host NVMe controller `nvme` is assigned (xl.cfg `pci = [ "00:04.0" ]`, as apps/demo/machines/nvme.cfg). */
export const NVME_BDF = "00:04.0";
/** Its namespace and the ATA disk: 16,384 LBAs of 512 bytes (8 MiB) in memory, as `vtlab demo`'s. */
export const DISK_SECTORS = 16384;
/** Guest RAM, MiB (as `vtlab demo`'s machines). */
export const GUEST_MEMORY_MIB = 128;
/** Host RAM, MiB: the guest plus room for EPT or shadow tables. */
export const HOST_MEMORY_MIB = 512;

export class WebMachine {
  readonly hv: Hypervisor;
  readonly domain: Domain;
  private readonly t0: number;

  constructor(
    readonly choice: MachineChoice,
    kernel: Uint8Array,
    onConsole: (text: string) => void,
    now: () => number,
  ) {
    this.now = now;
    const nvme = parsePciBdf(NVME_BDF);
    if (typeof nvme === "string") throw new Error(`vtlab bug: ${nvme}`);
    this.hv = new Hypervisor({
      memoryMiB: HOST_MEMORY_MIB,
      pciDevices: [new NvmeController({ requester: nvme, backend: new MemoryBlockBackend(DISK_SECTORS), name: "nvme0", serial: "vtlab0" })],
    });
    this.t0 = now();
    // createDomain throws DomainError for a refused configuration: the worker reports it.
    this.domain = this.hv.createDomain({
      name: machineName(choice),
      memoryMiB: GUEST_MEMORY_MIB,
      hap: choice.hap,
      kernel,
      cmdline: `workload=${choice.workload}`,
      ...(choice.workload === "disk" ? { disk: new MemoryBlockBackend(DISK_SECTORS) } : {}),
      ...(choice.workload === "nvme" ? { pci: [NVME_BDF] } : {}),
      onConsole,
    });
  }

  private readonly now: () => number;

  /** Whether the domain can still run (running or paused). */
  get alive(): boolean {
    return this.domain.state === "running" || this.domain.state === "paused";
  }

  /**
   * Run for about `wallMs` of wall time, in scheduler runs of `chunk` instructions; returns
   * false when nothing could run (the domain has stopped, is paused or every vCPU waits with no
   * timer pending).
   */
  runFor(wallMs: number, chunk = 100_000): boolean {
    const until = this.now() + wallMs;
    while (this.domain.state === "running") {
      const r = this.hv.run({ maxInstructions: chunk });
      if (r.reason === "idle") return false;
      if (this.now() >= until) return true;
    }
    return false;
  }

  sample(): StatsSample {
    const s = this.domain.stats(this.hv.cost);
    return {
      wallMs: this.now() - this.t0,
      modelledMs: this.hv.clock.nanoseconds / 1e6,
      instructions: s.instructions,
      vmExits: s.vmExits,
      exitsByReason: { ...s.exitsByReason },
      shadowFaults: s.shadow === undefined ? null : Object.values(s.shadow.faults).reduce((a, b) => a + b, 0),
      emulatedPtWrites: s.shadow?.emulatedWrites ?? null,
      eptReferences: s.eptReferences,
      walkReferences: s.walkReferences,
    };
  }

  /** The domain's state in words, for the status line. */
  describe(): string {
    const d = this.domain;
    if (d.state === "shutdown") return `shut down, exit code ${d.exitCode ?? "-"}${d.shutdownReason !== undefined ? ` (${d.shutdownReason})` : ""}`;
    if (d.state === "crashed") return `crashed: ${d.crashReason ?? "?"}`;
    return d.state;
  }

  /** Bytes typed at the console: into COM1's receive queue (the 16550's RBR, with its RDA interrupt). */
  input(bytes: readonly number[]): void {
    this.domain.uart.enqueueInput(bytes);
  }

  pause(): void {
    this.domain.pause();
  }

  unpause(): void {
    this.domain.unpause();
  }

  destroy(): void {
    this.hv.destroyDomain(this.domain.id);
  }
}
