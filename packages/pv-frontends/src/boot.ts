/**
 * Bringing up a native kernel's PV plumbing, in the order an HVM guest's drivers do: the
 * hypercall page, the platform device's MMIO space for shared_info and the grant frames, the
 * event channels, the grant table, then the xenstore ring and the console ring from their HVM
 * params. The page allocator takes the RAM above the kernel from the hvm_start_info memory map.
 */
import type { NativeGuestOps } from "@vtlab/cpu-vmx";
import { HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN } from "@vtlab/xen-public";
import { PvConsole } from "./console.js";
import { EventChannels } from "./evtchn.js";
import { GrantTable } from "./grant.js";
import { Xen, frontendError, isFrontendError, type FrontendError } from "./hypercall.js";
import { GuestMemory, PAGE_SIZE, PageAllocator } from "./mem.js";
import { findPlatformMmio } from "./platform.js";
import { XenbusClient } from "./xenbus.js";

export interface BootFrontendsOptions {
  /** The hvm_start_info address the builder passed in RDI (default: read RDI now). */
  readonly startInfo?: number;
  /** First RAM byte the allocator may hand out (default 2 MiB: above the boot image). */
  readonly heapStart?: number;
  /** Grant frames to map (default 1: 504 usable refs). */
  readonly grantFrames?: number;
}

export interface Frontends {
  readonly xen: Xen;
  readonly mem: GuestMemory;
  readonly pages: PageAllocator;
  readonly evtchn: EventChannels;
  readonly grants: GrantTable;
  readonly xenbus: XenbusClient | undefined;
  readonly console: PvConsole | undefined;
  /** RAM's end (guest-physical), from the memory map. */
  readonly ramEnd: number;
}

const RDI = 7;
const XEN_HVM_START_MAGIC_VALUE = 0x336ec578;

/** The end of the RAM range that starts at 1 MiB in hvm_start_info's memory map. */
function ramEndFromStartInfo(mem: GuestMemory, startInfo: number): number | undefined {
  if (mem.read32(startInfo) !== XEN_HVM_START_MAGIC_VALUE) return undefined;
  const memmap = mem.read64(startInfo + 40);
  const entries = Math.min(mem.read32(startInfo + 48), 128);
  let end: number | undefined;
  for (let i = 0; i < entries; i++) {
    const e = memmap + i * 24;
    const addr = mem.read64(e);
    const size = mem.read64(e + 8);
    if (mem.read32(e + 16) === 1 && addr <= 0x10_0000 && addr + size > 0x10_0000) end = addr + size;
  }
  return end;
}

export function bootFrontends(ops: NativeGuestOps, options: BootFrontendsOptions = {}): Frontends | FrontendError {
  const mem = new GuestMemory(ops);
  const startInfo = options.startInfo ?? ops.cpu.regAddr(RDI);
  const ramEnd = ramEndFromStartInfo(mem, startInfo);
  if (ramEnd === undefined) return frontendError("no hvm_start_info memory map");
  const pages = new PageAllocator(options.heapStart ?? 0x20_0000, ramEnd);
  const hcPage = pages.alloc();
  const argPage = pages.alloc();
  if (hcPage === undefined || argPage === undefined) return frontendError("out of memory");
  const xen = Xen.setup(ops, hcPage, argPage);
  if (isFrontendError(xen)) return xen;
  const mmio = findPlatformMmio(ops);
  if (mmio === undefined) return frontendError("no Xen platform PCI device (xen_platform_pci = 0?)");
  const mmioGfn = mmio / PAGE_SIZE;
  const evtchn = EventChannels.setup(xen, mmioGfn);
  if (isFrontendError(evtchn)) return evtchn;
  const nGrant = Math.max(1, Math.min(options.grantFrames ?? 1, 32));
  const grants = GrantTable.setup(
    xen,
    Array.from({ length: nGrant }, (_, i) => mmioGfn + 1 + i),
  );
  if (isFrontendError(grants)) return grants;
  const storePfn = xen.getParam(HVM_PARAM_STORE_PFN);
  const storePort = xen.getParam(HVM_PARAM_STORE_EVTCHN);
  const xenbus = storePfn > 0 && storePort > 0 ? new XenbusClient(mem, evtchn, storePfn * PAGE_SIZE, storePort) : undefined;
  const consPfn = xen.getParam(HVM_PARAM_CONSOLE_PFN);
  const consPort = xen.getParam(HVM_PARAM_CONSOLE_EVTCHN);
  const console = consPfn > 0 && consPort > 0 ? new PvConsole(mem, evtchn, consPfn * PAGE_SIZE, consPort) : undefined;
  return { xen, mem, pages, evtchn, grants, xenbus, console, ramEnd };
}
