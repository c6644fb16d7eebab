/**
 * The Xen platform PCI device (5853:0001) as a frontend finds it: PCI configuration mechanism #1
 * (ports 0xCF8/0xCFC) on bus 0, and its BAR1, the memory space where Linux's platform-pci driver
 * maps grant-table frames (and shared_info) with XENMEM_add_to_physmap.
 */
import type { GuestOps } from "@vtlab/cpu-vmx";

const PCI_CONFIG_ADDRESS = 0xcf8;
const PCI_CONFIG_DATA = 0xcfc;
const XEN_PLATFORM_VENDOR = 0x5853;
const XEN_PLATFORM_DEVICE = 0x0001;
const PCI_BAR1 = 0x14;

function configRead(ops: GuestOps, dev: number, reg: number): number | undefined {
  if (ops.portOut(PCI_CONFIG_ADDRESS, 4, (0x8000_0000 | (dev << 11) | reg) >>> 0) !== undefined) return undefined;
  const v = ops.portIn(PCI_CONFIG_DATA, 4);
  return typeof v === "number" ? v >>> 0 : undefined;
}

/** The platform device's BAR1 base (guest-physical) on bus 0, or undefined when there is none. */
export function findPlatformMmio(ops: GuestOps): number | undefined {
  for (let dev = 0; dev < 32; dev++) {
    const id = configRead(ops, dev, 0);
    if (id === undefined) return undefined;
    if ((id & 0xffff) !== XEN_PLATFORM_VENDOR || id >>> 16 !== XEN_PLATFORM_DEVICE) continue;
    const bar = configRead(ops, dev, PCI_BAR1);
    if (bar === undefined || (bar & 1) !== 0) return undefined;
    const base = (bar & ~0xf) >>> 0;
    return base === 0 ? undefined : base;
  }
  return undefined;
}
