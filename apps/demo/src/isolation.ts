/**
 * `vtlab demo`'s IOMMU scenario (the seed's figure 7-9, "Direct device access using an IOMMU"):
 * a hostile guest that owns an assigned NVMe controller programs it to DMA into another domain's
 * memory (a machine address it guessed), beyond its own RAM and into the MMIO hole. Run twice,
 * in a fresh host each: with the host VT-d IOMMU (every DMA blocked, each fault recorded with the
 * device's BDF and the address) and with `iommu = 0` (bus addresses are machine addresses: the
 * victim's frame is overwritten).
 *
 * The victim (the reference kernel's compute workload, 64 MiB) is created first and paused, so
 * its RAM can be compared byte for byte before and after the attack; then it is unpaused and
 * runs to its end, to show what the attack did to it. The guess is the machine address of one
 * of the victim's pages that is not also inside the attacker's guest-physical RAM.
 *
 * With iommu = 0 the attacker's own driver needs machine addresses too: `dmabase=` tells it
 * where its RAM lies, learnt from a probe domain built and destroyed first (the host allocator
 * is deterministic and gives a domain one contiguous machine run). A real HVM guest could not
 * know this, which is one reason Xen requires an IOMMU for HVM passthrough.
 */
import { Hypervisor, Toolstack, parseDomainConfig, type Domain } from "@vtlab/hypervisor";
import { hostPciDevices } from "./host.js";
import { report, type MachineReport } from "./run-core.js";
import type * as NodeCryptoModule from "node:crypto";
import { Sha256 } from "./sha256.js";

type NodeCrypto = typeof NodeCryptoModule;

const MiB = 1024 * 1024;
const PAGE = 4096;
const VICTIM_MIB = 64;
const ATTACKER_MIB = 32;
const BUDGET = 2_000_000_000;

export interface IsolationReport {
  /** "on": the host VT-d IOMMU with strict invalidation; "off": iommu = 0. */
  readonly iommu: "on" | "off";
  readonly victimAddress: number;
  /** The attacker's DMA attempts (its console lines "dmaattack: ..."), and how many failed. */
  readonly attempts: readonly string[];
  readonly blocked: number;
  /** Victim RAM pages whose bytes changed during the attack, of all its pages. */
  readonly victimPagesChanged: number;
  readonly victimPages: number;
  /** SHA-256 of the victim's RAM before and after the attack. */
  readonly victimHashBefore: string;
  readonly victimHashAfter: string;
  readonly attacker: MachineReport;
  /** The victim after it was unpaused and ran to its end. */
  readonly victim: MachineReport;
}

function ramPages(hv: Hypervisor, d: Domain): Uint8Array[] {
  const pages: Uint8Array[] = [];
  for (let gpa = 0; gpa < VICTIM_MIB * MiB; gpa += PAGE) {
    const hpa = d.machineAddress(gpa);
    const page = new Uint8Array(PAGE);
    if (hpa !== undefined) hv.memory.readBytes(hpa, page);
    pages.push(page);
  }
  return pages;
}

/** Node's crypto module when this runs in Node (synchronous: process.getBuiltinModule), else undefined. */
const nodeCrypto = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule?.("node:crypto") as NodeCrypto | undefined;

function hash(pages: readonly Uint8Array[]): string {
  // The same standard digest either way: node:crypto's where there is one (many times faster),
  // the plain TypeScript SHA-256 (sha256.ts) in a browser, where Web Crypto is asynchronous.
  if (nodeCrypto !== undefined) {
    const h = nodeCrypto.createHash("sha256");
    for (const p of pages) h.update(p);
    return h.digest("hex");
  }
  const h = new Sha256();
  for (const p of pages) h.update(p);
  return h.digestHex();
}

function samePage(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function runIsolation(iommu: boolean, kernel: Uint8Array, onConsole?: (name: string, text: string) => void): IsolationReport {
  const hv = new Hypervisor({ memoryMiB: 512, pciDevices: hostPciDevices(), ...(iommu ? {} : { iommu: false as const }) });
  const toolstack = new Toolstack(hv, { resources: (config) => ({ kernel, onConsole: (t) => onConsole?.(config.name, t) }) });
  const create = (text: string) => toolstack.create(parseDomainConfig(`kernel = "kernel.elf"\n${text}\n`, "<vtlab demo: iommu>"), "<vtlab demo: iommu>").domain;
  const tag = iommu ? "iommu" : "no-iommu";
  try {
    const victim = create(`name = "victim-${tag}"\nmemory = ${VICTIM_MIB}\ncmdline = "workload=compute"`);
    victim.pause();
    let victimAddress = -1;
    for (let gpa = 0x10_0000; gpa < VICTIM_MIB * MiB && victimAddress < 0; gpa += PAGE) {
      const hpa = victim.machineAddress(gpa);
      if (hpa !== undefined && hpa >= ATTACKER_MIB * MiB + 0x10_0000) victimAddress = hpa;
    }
    if (victimAddress < 0) throw new Error("vtlab bug: no victim page outside the attacker's guest-physical range");
    let dmabase = "";
    if (!iommu) {
      const probe = create(`name = "probe"\nmemory = ${ATTACKER_MIB}\ncmdline = "workload=compute"`);
      const base = probe.machineAddress(0);
      toolstack.destroy(probe.id);
      if (base === undefined) throw new Error("vtlab bug: probe domain without RAM at GPA 0");
      dmabase = ` dmabase=0x${base.toString(16)}`;
    }
    const before = ramPages(hv, victim);
    const t0 = performance.now();
    const attacker = create(`name = "attacker-${tag}"\nmemory = ${ATTACKER_MIB}\ncmdline = "workload=dmaattack victim=0x${victimAddress.toString(16)}${dmabase}"\npci = [ "00:04.0" ]`);
    toolstack.run({ maxInstructions: BUDGET });
    const attackerReport = report(hv, attacker, (performance.now() - t0) / 1000);
    const after = ramPages(hv, victim);
    let changed = 0;
    for (let i = 0; i < before.length; i++) if (!samePage(before[i]!, after[i]!)) changed++;
    const attempts = attacker.console.split("\n").filter((l) => /^dmaattack: (Read|Write) \(/.test(l));
    const t1 = performance.now();
    victim.unpause();
    toolstack.run({ maxInstructions: BUDGET });
    const victimReport = report(hv, victim, (performance.now() - t1) / 1000);
    return {
      iommu: iommu ? "on" : "off",
      victimAddress,
      attempts,
      blocked: attempts.filter((l) => !l.endsWith(": completed")).length,
      victimPagesChanged: changed,
      victimPages: before.length,
      victimHashBefore: hash(before),
      victimHashAfter: hash(after),
      attacker: attackerReport,
      victim: victimReport,
    };
  } finally {
    toolstack.destroyAll();
  }
}
