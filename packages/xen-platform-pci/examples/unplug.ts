// The Xen platform device on a PCI bus, driven the way Linux's PV-on-HVM drivers drive it:
// find 5853:0001, check the magic, say who we are, log a line, unplug the emulated disks and
// NICs; then the CPUID leaves and the hypercall page a Xen guest asks for next.
// Run: pnpm --filter @vtlab/xen-platform-pci example
import { PCI_BASE_ADDRESS_0, PCI_COMMAND, PCI_COMMAND_IO, PCI_COMMAND_MEMORY, PciBus, PortIoBus, bdf } from "@vtlab/arch";
import {
  PVDRIVERS_PRODUCT,
  UNPLUG_ALL_IDE_DISKS,
  UNPLUG_ALL_NICS,
  XEN_IOPORT_DRVVER,
  XEN_IOPORT_MAGIC,
  XEN_IOPORT_PRODNUM,
  XEN_IOPORT_PROTOVER,
  XEN_IOPORT_SYSLOG,
  XEN_IOPORT_UNPLUG,
  XenPlatformDevice,
  hvmloaderIntxIrq,
  writeHypercallPage,
  xenCpuidLeaf,
} from "@vtlab/xen-platform-pci";

const ports = new PortIoBus();
const pci = new PciBus(ports);
const dev = new XenPlatformDevice({
  setIrq: (level) => console.log(`INTA# -> IRQ ${dev.interruptLine}: ${level ? "asserted" : "deasserted"}`),
  unplug: {
    ideDisks: (auxOnly) => console.log(`unplug IDE disks${auxOnly ? " (all but the primary master)" : ""}`),
    nics: () => console.log("unplug NICs"),
  },
  onLog: (line) => console.log(`guest log: ${line}`),
  interruptLine: hvmloaderIntxIrq(3, 1), // IRQ 5, as hvmloader routes 00:03.0 INTA
});
pci.attach(bdf(0, 3, 0), dev);
dev.installFixedPorts(ports);
// Firmware: BAR1 at the bottom of the MMIO hole, BAR0 at 0xc000, decoding on.
dev.config.write(PCI_BASE_ADDRESS_0 + 4, 4, 0xf000_0000);
dev.config.write(PCI_BASE_ADDRESS_0, 4, 0xc000);
dev.config.write(PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);

console.log(pci.list().map((f) => `${f.name} ${f.vendorId.toString(16)}:${f.deviceId.toString(16).padStart(4, "0")}`));
console.log(`magic 0x${ports.read(XEN_IOPORT_MAGIC, 2).toString(16)}, protocol ${ports.read(XEN_IOPORT_PROTOVER, 1)}`); // 0x49d2, 1
ports.write(XEN_IOPORT_PRODNUM, 2, PVDRIVERS_PRODUCT.linux);
ports.write(XEN_IOPORT_DRVVER, 4, 1);
for (const c of "xen-platform-pci: hello\n") ports.write(XEN_IOPORT_SYSLOG, 1, c.charCodeAt(0));
ports.write(XEN_IOPORT_UNPLUG, 2, UNPLUG_ALL_IDE_DISKS | UNPLUG_ALL_NICS);
console.log(`BAR1 (grant table, shared_info) at 0x${dev.mmioBarAddress.toString(16)}, BAR0 at 0x${dev.ioBarAddress.toString(16)}`);
dev.setIntx(true); // an event-channel upcall through HVM_PARAM_CALLBACK_TYPE_PCI_INTX
dev.setIntx(false);

const regs = new Int32Array(4);
xenCpuidLeaf(0x4000_0000, 0, { vcpuId: 0, domid: 1, tscHz: 2e9 }, regs);
const sig = Array.from(regs.subarray(1), (r) => String.fromCharCode(r & 0xff, (r >>> 8) & 0xff, (r >>> 16) & 0xff, r >>> 24)).join("");
console.log(`CPUID 0x40000000: max leaf 0x${(regs[0]! >>> 0).toString(16)}, "${sig}"`);
const page = new Uint8Array(4096);
writeHypercallPage(page);
console.log(`hypercall 17 (xen_version) stub: ${Array.from(page.subarray(17 * 32, 17 * 32 + 9), (b) => b.toString(16).padStart(2, "0")).join(" ")}`);
console.log(JSON.stringify(dev.stats));
