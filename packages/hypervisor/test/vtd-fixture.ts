/**
 * A VT-d unit by itself (no Hypervisor), for device tests: the unit's registers on `mmio` at
 * DRHD, programmed through the register-level driver; domains A (DID 1) and B (DID 2) with
 * linear p2ms of `frames` frames from aBase and bBase; `source` attached to A; root table set,
 * context cache and IOTLB invalidated globally, translation enabled.
 */
import { gfn, mfn, type Bdf, type MachineMemory, type MmioBus, type Mfn } from "@vtlab/arch";
import {
  BumpFrameAllocator,
  ContextInvalidation,
  IommuDomain,
  IotlbInvalidation,
  MapP2m,
  RootTable,
  VTD_REG_PAGE_SIZE,
  VtdDriver,
  VtdUnit,
  type RemappingEventMessage,
} from "@vtlab/iommu";

export const DRHD = 0xfed9_0000;

export interface TwoDomainVtdOptions {
  readonly memory: MachineMemory;
  readonly mmio: MmioBus;
  readonly source: Bdf;
  readonly frames: number;
  readonly aBase: number;
  readonly bBase: number;
  /** The fault event's MSI (FEADDR/FEDATA), if the test wants fault events. */
  readonly faultEvent?: { readonly address: number; readonly data: number };
  readonly onFaultEvent?: (m: RemappingEventMessage) => void;
}

export function twoDomainVtd(o: TwoDomainVtdOptions) {
  const { memory, mmio } = o;
  const unit = new VtdUnit({ memory, onFaultEvent: o.onFaultEvent ?? (() => undefined) });
  mmio.register(DRHD, VTD_REG_PAGE_SIZE, unit.registers, "dmar0");
  const driver = new VtdDriver(mmio, DRHD);
  if (o.faultEvent !== undefined) driver.setFaultEvent(o.faultEvent);
  const tableFrames = new BumpFrameAllocator(memory, 0x1000 as Mfn, 0x1000);
  const root = RootTable.create(memory, tableFrames);
  if (!(root instanceof RootTable)) throw new Error(root.message);
  const p2ms = [new MapP2m(), new MapP2m()] as const;
  for (let i = 0; i < o.frames; i++) {
    p2ms[0].set(gfn(i), mfn(o.aBase + i));
    p2ms[1].set(gfn(i), mfn(o.bBase + i));
  }
  const a = IommuDomain.fromP2m(memory, tableFrames, { domainId: 1, levels: 4, p2m: p2ms[0] });
  if (!(a instanceof IommuDomain)) throw new Error(a.message);
  const b = IommuDomain.fromP2m(memory, tableFrames, { domainId: 2, levels: 4, p2m: p2ms[1] });
  if (!(b instanceof IommuDomain)) throw new Error(b.message);
  const attached = a.attach(root, o.source);
  if (!Array.isArray(attached)) throw new Error(attached.message);
  driver.setRootTable(root.address);
  driver.invalidate({ kind: "context", granularity: ContextInvalidation.Global, domainId: 0, sourceId: 0, functionMask: 0 });
  driver.invalidate({ kind: "iotlb", granularity: IotlbInvalidation.Global, domainId: 0, address: 0, addressMask: 0, leafOnly: false });
  driver.enableTranslation();
  return { unit, driver, root, p2ms, a, b };
}
