/**
 * Modelled cost, in core cycles, of the events vtlab counts. Counts (instructions, references,
 * exits, misses) are exact; the time derived from them through this model is modelled, and says
 * so wherever it is shown. Every default names where its figure comes from; where no measured
 * figure could be cited the default is marked as a modelling assumption, with the reasoning.
 */
export interface CostModel {
  /** One retired guest instruction. */
  readonly instruction: number;
  /** One memory reference made by a page walk (guest, shadow, EPT or IOMMU tables). */
  readonly memoryReference: number;
  /** One VM exit plus the VM entry that resumes the guest (hardware transition only). */
  readonly vmExitEntry: number;
  /** One trapped I/O access forwarded to the device model and answered (on top of the exit). */
  readonly emulatedDeviceRoundTrip: number;
  /** One event-channel notification: the sender's hypercall and the upcall into the receiver. */
  readonly eventChannelNotification: number;
  /** One IOTLB miss: the remapping unit walks its context and second-level tables. */
  readonly iotlbMiss: number;
  /** One IOTLB (or context-cache) invalidation the hypervisor issues and waits for: descriptor, wait descriptor, completion. */
  readonly iotlbInvalidation: number;
  /** One exception, NMI or interrupt delivered through the guest IDT (gate read, stack switch, frame pushed). */
  readonly eventDelivery: number;
  /** One port or MMIO access the device model performs for an exit (each element of a REP INS/OUTS counts), on top of the exit. */
  readonly deviceModelAccess: number;
}

export const DEFAULT_COST_MODEL: CostModel = Object.freeze({
  // Simple integer instructions (ADD, MOV r,r) have a latency of 1 cycle on Intel cores from
  // Core 2 to Skylake (Agner Fog, "Instruction tables", Technical University of Denmark). A CPI
  // of 1 is the model's baseline for every instruction.
  instruction: 1,
  // Paging-structure entries are cacheable and a walk's references usually hit in the cache
  // hierarchy: an L2 hit on Skylake costs 12 cycles (7-cpu.com, "Intel Skylake": L1 4, L2 12,
  // L3 42 cycles, RAM 42 cycles + 51 ns).
  memoryReference: 12,
  // Modelling assumption. Intel describes a VM exit and entry as costing "hundreds or thousands
  // of cycles for a single transition" (Intel Developer Zone, "Virtualization and Performance:
  // Understanding VM Exits", 2009), and round-trip latency fell with each generation from
  // Prescott to Sandy Bridge (Agesen et al., "Software Techniques for Avoiding Hardware
  // Virtualization Exits", USENIX ATC 2012). 1,000 cycles sits inside that range.
  vmExitEntry: 1000,
  // Modelling assumption. In Xen HVM a trapped port or MMIO access becomes an ioreq to QEMU in
  // dom0: an event-channel notification, a dom0 vCPU and QEMU thread wake-up, the emulation,
  // and a notification back. We model it as 20,000 cycles (10 us at 2 GHz), an order of
  // magnitude above an exit, which is the relation that makes PV drivers worth having.
  emulatedDeviceRoundTrip: 20_000,
  // Modelling assumption: one hypercall exit on the sender's side (vmExitEntry) plus the
  // injection of the upcall vector on the receiver's next entry, about two transitions.
  eventChannelNotification: 2000,
  // Derived: a miss makes the remapping unit read the context entry and up to four levels of
  // second-level table from memory that the CPU caches do not hold. Four DRAM references at
  // 7-cpu.com's Skylake latency (42 cycles + 51 ns, about 144 cycles at 2 GHz) is about 600.
  iotlbMiss: 600,
  // Modelling assumption (no per-invalidation cycle count could be cited from Amit et al., WIOSCA
  // 2010 / USENIX ATC 2011, or Malka et al., ASPLOS 2015, which report the cost of strict
  // invalidation as throughput loss). An invalidation is an uncached register or queue write, a
  // wait descriptor the unit completes after draining in-flight translations, and the CPU polling
  // a status word: a few uncached MMIO round trips (~0.5 us each at 2 GHz) plus the drain. We
  // model it as 2,000 cycles (1 us), above an IOTLB miss, so strict (per unmap) and deferred (per
  // batch) flushing differ in modelled time.
  iotlbInvalidation: 2000,
  // Modelling assumption. Delivering an event reads the IDT gate and the GDT descriptor of its
  // code segment, may switch stacks (TSS RSP0 or IST) and pushes a five- or six-word frame:
  // several dependent memory references and a serializing control transfer. We model it as 200
  // cycles, between a simple instruction and a VM exit. The figure matters for scheduling: a
  // guest stuck in an exception loop retires nothing and spends its slice on these.
  eventDelivery: 200,
  // Modelling assumption. Xen hands a REP INS/OUTS to its device model as one ioreq with a count
  // (data_is_ptr), and the emulator then does one device register access per element. We model
  // each access at 200 cycles (the emulator's loop, the device's register logic, the copy to or
  // from guest memory), on top of the one exit, so a 4096-element string-I/O exit costs the
  // slice what 4096 accesses cost, not what one exit costs.
  deviceModelAccess: 200,
});

/** A cost model with some figures replaced (for experiments); unknown keys are rejected. */
export function costModel(overrides: Partial<CostModel> = {}): CostModel {
  for (const [k, v] of Object.entries(overrides)) {
    if (!(k in DEFAULT_COST_MODEL)) throw new RangeError(`unknown cost-model figure "${k}"`);
    if (typeof v !== "number" || !(v >= 0)) throw new RangeError(`cost-model figure "${k}" must be a number >= 0; got ${String(v)}`);
  }
  return Object.freeze({ ...DEFAULT_COST_MODEL, ...overrides });
}

/** Counts of the events a cost model prices. */
export interface EventCounts {
  instructions?: number;
  memoryReferences?: number;
  vmExits?: number;
  emulatedDeviceRoundTrips?: number;
  eventChannelNotifications?: number;
  iotlbMisses?: number;
  eventDeliveries?: number;
  deviceModelAccesses?: number;
}

/** Modelled cycles for a set of counts. */
export function modelledCycles(counts: EventCounts, model: CostModel = DEFAULT_COST_MODEL): number {
  return (
    (counts.instructions ?? 0) * model.instruction +
    (counts.memoryReferences ?? 0) * model.memoryReference +
    (counts.vmExits ?? 0) * model.vmExitEntry +
    (counts.emulatedDeviceRoundTrips ?? 0) * model.emulatedDeviceRoundTrip +
    (counts.eventChannelNotifications ?? 0) * model.eventChannelNotification +
    (counts.iotlbMisses ?? 0) * model.iotlbMiss +
    (counts.eventDeliveries ?? 0) * model.eventDelivery +
    (counts.deviceModelAccesses ?? 0) * model.deviceModelAccess
  );
}
