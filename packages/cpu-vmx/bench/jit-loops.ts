/**
 * The block compiler on small loops on the bare CPU (no hypervisor): guest MIPS of a loop with an
 * if inside (two blocks and a self-looping tail: a region) with regions on and off
 * (jitHooks.noRegions), and of a single self-looping block. Wall time is measured, never asserted;
 * on a loaded machine compare figures from the same run only.
 */
import { report } from "@vtlab/bench-harness";
import { jitHooks } from "@vtlab/cpu-vmx";
import { machine64 } from "../test/machine.js";

const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
const N = 5_000_000;
// mov ecx, N; 1: add rax, rcx; test eax, 1; jz 2f; add rdx, 1; 2: dec ecx; jnz 1b; hlt
const ifLoop = [0xb9, ...le32(N), 0x48, 0x01, 0xc8, 0xa9, 1, 0, 0, 0, 0x74, 0x04, 0x48, 0x83, 0xc2, 0x01, 0xff, 0xc9, 0x75, 0xee, 0xf4];
// mov ecx, N; 1: add rax, rcx; xor rdx, rax; dec ecx; jnz 1b; hlt
const selfLoop = [0xb9, ...le32(N), 0x48, 0x01, 0xc8, 0x48, 0x31, 0xc2, 0xff, 0xc9, 0x75, 0xf6, 0xf4];

function mips(code: number[], regions: boolean): number {
  jitHooks.noRegions = !regions;
  try {
    const m = machine64(Uint8Array.from(code));
    const t0 = performance.now();
    let retired = 0;
    for (;;) {
      const r = m.cpu.run(1_000_000);
      retired += r.retired;
      if (r.kind !== "budget") break;
    }
    return retired / (performance.now() - t0) / 1000;
  } finally {
    jitHooks.noRegions = undefined;
  }
}

const round = (v: number) => Math.round(v * 10) / 10;
for (const [name, code, regions] of [
  ["if-loop.blocks", ifLoop, false],
  ["if-loop.region", ifLoop, true],
  ["self-loop", selfLoop, true],
] as const) {
  mips(code, regions); // warm-up (the host's JIT)
  report({ name: `cpu-vmx.jit.${name}`, value: round(Math.max(mips(code, regions), mips(code, regions))), unit: "MIPS" });
}
