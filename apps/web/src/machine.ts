/**
 * One machine of the page: a Hypervisor host with one domain booted from the reference kernel,
 * run in bounded slices so that the worker stays responsive between them. No DOM and no Node
 * built-ins: it runs in a Web Worker (and in vitest under Node, for the unit test).
 */
import { Hypervisor, MemoryBlockBackend, NvmeController, Toolstack, parseDomainConfig, parsePciBdf, type Domain, type DomainIommuStats } from "@vtlab/hypervisor";
import { XS_MAX_DEPTH, XS_MAX_NODES, XS_MAX_VALUE, machineName, type IommuSample, type MachineChoice, type PvSample, type StatsSample, type StepSample, type XsNode } from "./protocol.js";
import { decodeQualification } from "./step.js";

/** The host NVMe controller `nvme` is assigned (xl.cfg `pci = [ "00:04.0" ]`, as apps/demo/machines/nvme.cfg). */
export const NVME_BDF = "00:04.0";
/** The one `dmaattack` is assigned (apps/demo/machines/dmaattack.cfg). */
export const ATTACK_BDF = "00:05.0";
/**
 * dmaattack's target: the machine address 0x2100000 (dmaattack.cfg's `victim=`), beyond the
 * 32 MiB of guest-physical RAM it has, so with the IOMMU every attempt faults. Modelled more
 * simply than `vtlab demo --workloads iommu`: no victim domain runs beside it here.
 */
export const ATTACK_CMDLINE = "workload=dmaattack victim=0x2100000";
export const ATTACK_MEMORY_MIB = 32;
/** Its namespace and the ATA disk: 16,384 LBAs of 512 bytes (8 MiB) in memory, as `vtlab demo`'s. */
export const DISK_SECTORS = 16384;
/** Guest RAM, MiB (as `vtlab demo`'s machines). */
export const GUEST_MEMORY_MIB = 128;
/** Host RAM, MiB: the guest plus room for EPT or shadow tables. */
export const HOST_MEMORY_MIB = 512;

export { XS_MAX_DEPTH, XS_MAX_NODES, XS_MAX_VALUE };

export class WebMachine {
  readonly hv: Hypervisor;
  readonly domain: Domain;
  /** The PV machine's toolstack (xenstored and blkback), else undefined. */
  readonly toolstack: Toolstack | undefined;
  private readonly t0: number;

  constructor(
    readonly choice: MachineChoice,
    kernel: Uint8Array,
    onConsole: (text: string) => void,
    now: () => number,
  ) {
    this.now = now;
    // The host's NVMe controllers (NVMe 1.4, 8 MiB namespaces in memory), as `vtlab run`'s.
    const pciDevices = [NVME_BDF, ATTACK_BDF].map((text, i) => {
      const id = parsePciBdf(text);
      if (typeof id === "string") throw new Error(`vtlab bug: ${id}`);
      return new NvmeController({ requester: id, backend: new MemoryBlockBackend(DISK_SECTORS), name: `nvme${i}`, serial: `vtlab${i}` });
    });
    this.hv = new Hypervisor({ memoryMiB: HOST_MEMORY_MIB, pciDevices });
    const attack = choice.workload === "dmaattack";
    this.t0 = now();
    if (choice.workload === "pvdisk") {
      // As `vtlab demo`'s pvdisk (apps/demo run-core.ts): through the toolstack, which composes
      // xenstored and blkback, the image a vbd (vdev=xvda, devid 51712) in memory. The config's
      // target names no file: the resource loader hands a MemoryBlockBackend whatever it says.
      this.toolstack = new Toolstack(this.hv, { resources: () => ({ kernel, disk: new MemoryBlockBackend(DISK_SECTORS), onConsole }) });
      const config = parseDomainConfig(
        `name = "${machineName(choice)}"\nmemory = ${GUEST_MEMORY_MIB}\nhap = ${choice.hap ? 1 : 0}\nkernel = "kernel.elf"\ncmdline = "workload=pvdisk"\ndisk = [ "format=raw, vdev=xvda, access=rw, target=pvdisk.img" ]\n`,
        "<vtlab web>",
      );
      // create throws DomainError for a refused configuration: the worker reports it.
      this.domain = this.toolstack.create(config, "<vtlab web>").domain;
      return;
    }
    this.toolstack = undefined;
    // createDomain throws DomainError for a refused configuration: the worker reports it.
    this.domain = this.hv.createDomain({
      name: machineName(choice),
      memoryMiB: attack ? ATTACK_MEMORY_MIB : GUEST_MEMORY_MIB,
      hap: choice.hap,
      kernel,
      cmdline: attack ? ATTACK_CMDLINE : `workload=${choice.workload}`,
      ...(choice.workload === "disk" ? { disk: new MemoryBlockBackend(DISK_SECTORS) } : {}),
      ...(choice.workload === "nvme" ? { pci: [NVME_BDF] } : {}),
      ...(attack ? { pci: [ATTACK_BDF] } : {}),
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
      const r = this.runOnce(chunk);
      if (r.reason === "idle") return false;
      if (this.now() >= until) return true;
    }
    return false;
  }

  /** One scheduler run: the toolstack's for the PV machine (its backends poll between slices). */
  private runOnce(maxInstructions: number): { reason: string } {
    return this.toolstack !== undefined ? this.toolstack.run({ maxInstructions }) : this.hv.run({ maxInstructions });
  }

  /** The PV machine's ring, grant and event counters (null for the others). */
  pvSample(): PvSample | null {
    const ts = this.toolstack;
    if (ts === undefined) return null;
    let ringRequests = 0, responses = 0, sectors = 0, grantCopies = 0, grantMaps = 0, grantUnmaps = 0, notifications = 0;
    for (const v of ts.disks.vbds(this.domain.id)) {
      const c = v.vbd.blkback.counters;
      ringRequests += c.read + c.write + c.flush + c.barrier + c.discard + c.unknown;
      responses += c.responses;
      sectors += c.sectorsRead + c.sectorsWritten;
      grantCopies += c.grantCopies;
      grantMaps += c.grantMaps;
      grantUnmaps += c.grantUnmaps;
      notifications += c.notifications;
    }
    const x = this.domain.stats(this.hv.cost).xen;
    return { ringRequests, responses, sectors, grantCopies, grantMaps, grantUnmaps, backendNotifications: notifications, eventsSent: x.eventsSent, eventsDelivered: x.eventsDelivered, upcallsInjected: x.upcallsInjected };
  }

  /**
   * The xenstore tree as dom0 reads it (`toolstack.xenstore`), breadth first from "/", at most
   * XS_MAX_NODES nodes and XS_MAX_DEPTH levels; null for a machine without a toolstack.
   */
  xenstoreTree(): { root: XsNode; nodes: number; truncated: boolean } | null {
    const xs = this.toolstack?.xenstore;
    if (xs === undefined) return null;
    const root: { name: string; path: string; value: string | null; children: XsNode[] } = { name: "/", path: "/", value: null, children: [] };
    let nodes = 1;
    let truncated = false;
    const queue: { node: typeof root; depth: number }[] = [{ node: root, depth: 0 }];
    while (queue.length > 0) {
      const { node, depth } = queue.shift()!;
      const names = xs.directory(node.path) ?? [];
      if (names.length > 0 && depth >= XS_MAX_DEPTH) {
        truncated = true;
        continue;
      }
      for (const name of [...names].sort()) {
        if (nodes >= XS_MAX_NODES) {
          truncated = true;
          break;
        }
        const path = node.path === "/" ? `/${name}` : `${node.path}/${name}`;
        const raw = xs.read(path);
        const value = raw === undefined || raw === "" ? null : raw.length > XS_MAX_VALUE ? `${raw.slice(0, XS_MAX_VALUE)}...` : raw;
        const child = { name, path, value, children: [] as XsNode[] };
        node.children.push(child);
        nodes++;
        queue.push({ node: child, depth: depth + 1 });
      }
    }
    return { root, nodes, truncated };
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
      iommu: s.iommu === undefined ? null : iommuSample(s.iommu),
      ioExits: s.ioExits,
      pv: this.pvSample(),
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

  /**
   * Step mode: from paused, run until the domain's next VM exit (any vCPU), which is handled, and
   * pause again. The hypervisor's onVmExit is set only for the step, so a running machine pays
   * nothing for it. Returns null when no exit came within about `wallMs` of wall time or the
   * domain stopped or went idle first (then it is paused again if it can be).
   */
  step(wallMs = 2000): StepSample | null {
    if (this.domain.state !== "paused") return null;
    let got: StepSample | null = null;
    const d = this.domain;
    const exitsBefore = d.stats(this.hv.cost).vmExits;
    this.hv.onVmExit = (domain, vcpu, exit, g) => {
      if (domain !== d || got !== null) return false;
      got = {
        exitsBefore,
        vcpu: vcpu.id,
        reason: exit.reason & 0xffff,
        reasonName: g.reasonName,
        qualification: exit.qualification,
        decoded: decodeQualification(exit.reason, exit.qualification),
        instructionLength: exit.instructionLength,
        guestLinear: exit.guestLinear ?? null,
        guestPhysical: exit.guestPhysical ?? null,
        rip: g.rip,
        rsp: g.rsp,
        rflags: g.rflags,
        cr0: g.cr0,
        cr3: g.cr3,
        cr4: g.cr4,
      };
      return true;
    };
    try {
      d.unpause();
      const until = this.now() + wallMs;
      while (got === null && d.state === "running" && this.now() < until) {
        if (this.runOnce(200_000).reason === "idle") break;
      }
    } finally {
      this.hv.onVmExit = undefined;
      if (d.state === "running") d.pause();
    }
    return got;
  }

  pause(): void {
    this.domain.pause();
  }

  unpause(): void {
    this.domain.unpause();
  }

  destroy(): void {
    if (this.toolstack !== undefined) this.toolstack.destroyAll();
    else this.hv.destroyDomain(this.domain.id);
  }
}

/**
 * The fault log's lines in the format of Xen's VT-d iommu_page_fault message (drivers/passthrough/
 * vtd/iommu.c), which `vtlab run` prints too (apps/demo's faultLines; that module reads files, so
 * the worker cannot import it).
 */
export function iommuSample(s: DomainIommuStats): IommuSample {
  const older = s.faults - s.faultLog.length;
  return {
    remapping: s.remapping,
    devices: [...s.devices],
    dmaRequests: s.dmaRequests,
    iotlbHits: s.iotlbHits,
    iotlbMisses: s.iotlbMisses,
    faults: s.faults,
    faultLog: [
      ...(older > 0 ? [`${older} older faults not kept`] : []),
      ...s.faultLog.map((f) => `[DMA ${f.access === "write" ? "Write" : "Read"}] Request device [0000:${f.bdf}] fault addr 0x${f.iova.toString(16)} [fault reason 0x${f.reason.toString(16).padStart(2, "0")}] ${f.reasonName}`),
    ],
  };
}
