/** Test fixture shared by the `vtlab shell` and `vtlab run` tests: a guest kernel that crashes at once. */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { guestImageUrl } from "@vtlab/guests";
import { parseElf } from "@vtlab/hypervisor";

/**
 * A kernel that crashes at once, written to `dir`/crash.elf (its path is returned): the sort guest
 * image with the first bytes at its PVH entry replaced by `mov al, 'X'; out 0xe9, al; mov al, 10;
 * out 0xe9, al; int3` (no IDT yet: #GP, #DF, triple fault). Its console is "X\n".
 */
export function crashingKernel(dir: string): string {
  const image = new Uint8Array(readFileSync(guestImageUrl("sort")));
  const elf = parseElf(image, 64 * 1024 * 1024);
  if ("kind" in elf || elf.pvhEntry === undefined) throw new Error("sort.elf: no PVH entry");
  const entry = elf.pvhEntry;
  const seg = elf.segments.find((s) => entry >= s.paddr && entry + 9 <= s.paddr + s.fileSize);
  if (seg === undefined) throw new Error("sort.elf: the PVH entry is in no segment");
  image.set([0xb0, 0x58, 0xe6, 0xe9, 0xb0, 0x0a, 0xe6, 0xe9, 0xcc], seg.offset + (entry - seg.paddr));
  const path = join(dir, "crash.elf");
  writeFileSync(path, image);
  return path;
}
