// @vtlab/p2m: the generic physical-to-machine map of a domain (Xen's p2m.c): p2m types, lookup,
// runs, the change hook, and the frame allocator interface. Shadow paging, EPT and the IOMMU all
// read it. Depends on @vtlab/arch only.
export { P2mType, RangeP2m, SimpleFrameAllocator, p2mHasFrame, p2mIsGrant } from "./p2m.js";
export type { P2mEntry, P2mRun, DomainP2m, FrameAllocator, FrameRange, P2mChangeListener } from "./p2m.js";
