// The EPT side of the ptemod comparison: @vtlab/mmu-ept's NestedPaging, passed in (mmu-shadow does not depend on it).
import { NestedPaging } from "@vtlab/mmu-ept";
import type { EptFactory } from "../src/index.js";

export const nestedPagingFactory: EptFactory = (d, cpu, vmcs) => {
  const np = NestedPaging.create({ memory: d.memory, p2m: d.p2m, frames: d.frames, largePages: false, populate: () => undefined });
  if (!(np instanceof NestedPaging)) throw new Error(np.message);
  np.setupVcpu(cpu, vmcs);
  cpu.secondLevel = np.walkerFor(cpu);
  return np;
};
