/**
 * Run ten lines of real x86-64 machine code on the vtlab CPU in 64-bit mode with paging on:
 * a loop, a multiply, a store and a load, then OUT to a port and HLT.
 * Run: `pnpm --filter @vtlab/cpu-vmx example` (after `pnpm build`).
 */
import { MachineMemory, PortIoBus, type AccessSize } from "@vtlab/arch";
import { CR0_PE, CR0_PG, CR4_PAE, Cpu, EFER_LMA, EFER_LME, Seg } from "@vtlab/cpu-vmx";

const memory = new MachineMemory(16 * 1024 * 1024);
const ports = new PortIoBus();
let out = "";
ports.register(0xe9, 1, { read: () => 0, write: (_o: number, _s: AccessSize, v: number) => void (out += String.fromCharCode(v)) }, "debugcon");

// Identity-map the first 1 GiB with 2 MiB pages: PML4 at 0x2000, PDPT 0x3000, PD 0x4000.
memory.write64(0x2000, 0x3003, 0);
memory.write64(0x3000, 0x4003, 0);
for (let k = 0; k < 512; k++) memory.write64(0x4000 + 8 * k, k * 0x20_0000 + 0x83, 0);

// mov rax,0x123456789; mov rcx,10; xor edx,edx; 1: add rdx,rax; dec rcx; jnz 1b; mov rbx,rdx;
// shl rbx,3; imul rsi,rbx,7; mov rdi,0x1000; mov [rdi],rsi; mov r8,[rdi]; lea r9,[r8+r8*2+5];
// bsr r10,r9; mov al,'X'; out 0xe9,al; hlt
const code =
  "48b8896745230100000048c7c10a00000031d24801c248ffc975f84889d348c1e303486bf30748c7c7001000004889374c8b074f8d4c40054d0fbdd1b058e6e9f4";
memory.writeBytes(0x10_0000, Uint8Array.from(code.match(/../g)!.map((h) => parseInt(h, 16))));

const cpu = new Cpu({ memory, ports });
cpu.cr0 = CR0_PE | CR0_PG | 0x10;
cpu.cr4 = CR4_PAE;
cpu.cr3 = 0x2000;
cpu.efer = EFER_LME | EFER_LMA;
cpu.seg[Seg.CS]!.attr = 0xa09b; // a 64-bit code segment
cpu.updateMode();
cpu.rip = 0x10_0000;

const result = cpu.run(1000);
console.log(`stopped: ${result.kind} after ${result.retired} instructions; console "${out}"`);
console.log(`rsi = 0x${cpu.regAddr(6).toString(16)}, r9 = 0x${cpu.regAddr(9).toString(16)}, r10 = ${cpu.regAddr(10)}`);
console.log(`TLB misses ${cpu.counters.tlbMisses}, page walks ${cpu.counters.pageWalks} (${cpu.counters.walkReferences} references), decoded ${cpu.counters.decodedInstructions}`);
