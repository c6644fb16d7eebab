/**
 * Event-channel benchmark (JSON lines, wall time around the simulation): EVTCHNOP_send round
 * trips per second between two domains, on EPT and on shadow. Domain A's guest sends on an
 * interdomain port bound to domain B in a loop (VMCALL exit, event_channel_op dispatch, B's
 * pending bit, entry); B has halted, so after the first event its port stays pending and each
 * send is the bit test Xen's evtchn_2l_set_pending does.
 */
import { report } from "@vtlab/bench-harness";
import { Hypervisor } from "@vtlab/hypervisor";
import { DOMID_SELF, EVTCHNOP_send, HYPERVISOR_event_channel_op, evtchn_send } from "@vtlab/xen-public";
import { tinyKernel } from "../test/tiny-kernel.js";

const le32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff].map((b) => b.toString(16).padStart(2, "0")).join("");
const SENDS = 200_000;
const ARG = 0x10_2000;

function sendLoop(hap: boolean): number {
  const hv = new Hypervisor({ memoryMiB: 64 });
  const b = hv.createDomain({ name: "b", memoryMiB: 4, hap, kernel: tinyKernel("faf4") }); // cli; hlt
  // The channel, as the two guests would set it up: B offers a port to A, A binds it.
  const pb = b.xen.evtchn.allocUnbound(DOMID_SELF, b.id + 1);
  // mov dword [ARG + port], pa; mov esi, SENDS; L: mov eax, event_channel_op; mov ebx, EVTCHNOP_send;
  // mov ecx, ARG; vmcall; dec esi; jnz L; xor eax, eax; out 0xf4, eax
  const code = (pa: number) => `c705${le32(ARG + evtchn_send.port)}${le32(pa)}be${le32(SENDS)}b8${le32(HYPERVISOR_event_channel_op)}bb${le32(EVTCHNOP_send)}b9${le32(ARG)}0f01c14e75eb31c0e7f4`;
  const a = hv.createDomain({ name: "a", memoryMiB: 4, hap, kernel: tinyKernel(code(1)) });
  const pa = a.xen.evtchn.bindInterdomain(b.id, pb);
  if (pa !== 1) throw new Error(`bind_interdomain: ${pa}`);
  const t0 = performance.now();
  hv.run();
  const ms = performance.now() - t0;
  const sent = a.xen.stats.eventsSent;
  if (a.exitCode !== 0 || sent !== SENDS || !b.xen.evtchn.isPending(pb)) throw new Error(`send loop on ${hap ? "ept" : "shadow"}: exit ${String(a.exitCode)}, ${sent} sends, ${a.crashReason ?? ""}`);
  return sent / (ms / 1000);
}

for (const hap of [true, false]) {
  const mode = hap ? "ept" : "shadow";
  sendLoop(hap); // warm-up (JIT)
  report({ name: `hypervisor.evtchn-sends-per-second.interdomain.${mode}`, value: Math.round(sendLoop(hap)), unit: "sends/s" });
}
