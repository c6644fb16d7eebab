/**
 * The host's assignable PCI devices, shared by `vtlab run`, `vtlab demo`, `vtlab shell` and the
 * browser tour (`@vtlab/demo/tour`): no file access, no Node built-ins.
 */
import { MemoryBlockBackend, NvmeController, parsePciBdf, type AssignableDevice } from "@vtlab/hypervisor";

/** The host's assignable PCI devices in `vtlab run`, `vtlab demo` and `vtlab shell`. */
export const HOST_PCI_DEVICES = ["00:04.0", "00:05.0"] as const;
/** Each host NVMe controller's namespace: 8 MiB (16,384 LBAs of 512 bytes), held in memory, zeroed at host boot. */
export const HOST_NVME_SECTORS = 16384;

/**
 * The host's PCI devices that `pci = [...]` can assign: NVMe controllers at 00:04.0 and 00:05.0
 * (@vtlab/hypervisor's NvmeController, NVMe 1.4), each with an 8 MiB in-memory namespace.
 */
export function hostPciDevices(): AssignableDevice[] {
  return HOST_PCI_DEVICES.map((text, i) => {
    const id = parsePciBdf(text);
    if (typeof id === "string") throw new Error(`vtlab bug: ${id}`);
    return new NvmeController({ requester: id, backend: new MemoryBlockBackend(HOST_NVME_SECTORS), name: `nvme${i}`, serial: `vtlab${i}` });
  });
}

