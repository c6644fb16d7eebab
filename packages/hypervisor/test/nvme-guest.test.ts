/**
 * The reference kernel's NVMe driver (@vtlab/guests c/kernel/nvme.c, written against NVMe 1.4
 * and checked under QEMU's `-device nvme`) on vtlab's NVMe controller model, assigned to the
 * domain with xl.cfg `pci = ["00:04.0"]` through the host VT-d IOMMU (passthrough/).
 *
 * - `workload=nvme` prints images/kernel-nvme.expected (the output QEMU gave: the `disk`
 *   checksum through NVM Write/Read with PRP lists) on EPT and on shadow paging.
 * - Isolation: a paused victim domain and an attacker owning the controller (`workload=dmaattack`)
 *   that aims NVM Read/Write DMA at the victim's machine address, beyond its own RAM and into
 *   the MMIO hole. With the IOMMU every attempt ends in Data Transfer Error, the faults are
 *   recorded with BDF 00:04.0 and the IOVA, and the victim's RAM is byte-identical; with
 *   `iommu = 0` the victim's frame at the guessed address holds the attacker's pattern.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { bdf } from "@vtlab/arch";
import { referenceKernelUrl } from "@vtlab/guests";
import { Hypervisor, MemoryBlockBackend, NvmeController, Toolstack, parseDomainConfig, type Domain } from "@vtlab/hypervisor";
import { runYielding } from "./run-yielding.js";

const kernel = new Uint8Array(readFileSync(referenceKernelUrl()));
/** images/kernel-nvme.expected (produced under QEMU by the guests' scripts/kernel-expected.sh). */
const expectedNvme = readFileSync(new URL("kernel-nvme.expected", referenceKernelUrl()), "utf8");
const BUDGET = 1_000_000_000;
const PAGE = 4096;
const MiB = 1 << 20;
/** The namespace QEMU's run had: an 8 MiB raw disk (16384 LBAs of 512 bytes). */
const NVME_SECTORS = 16384;
const ATTACKER_MIB = 32;
const VICTIM_MIB = 64;
/** "PWNED!!\n", the pattern dmaattack writes to LBAs 0-7 and then reads into its targets. */
const PATTERN = new TextEncoder().encode("PWNED!!\n");

function ok(d: Domain): void {
  expect({ name: d.name, state: d.state, code: d.exitCode, crash: d.crashReason }).toEqual({ name: d.name, state: "shutdown", code: 0, crash: undefined });
}

/** A host with one assignable NVMe controller at 00:04.0 and a toolstack reading xl.cfg text. */
function host(iommu: boolean) {
  const backend = new MemoryBlockBackend(NVME_SECTORS);
  const nvme = new NvmeController({ requester: bdf(0, 4, 0), backend, serial: "vtlab" });
  const hv = new Hypervisor({ memoryMiB: 256, pciDevices: [nvme], ...(iommu ? {} : { iommu: false as const }) });
  const toolstack = new Toolstack(hv, { resources: () => ({ kernel }) });
  const create = (text: string) => toolstack.create(parseDomainConfig(`kernel = "kernel.elf"\n${text}`, "<nvme-guest>"), "<nvme-guest>").domain;
  return { hv, nvme, backend, create };
}

/** Every frame of d's RAM, read through its p2m from host memory. */
function ramImage(hv: Hypervisor, d: Domain, mib: number): Uint8Array {
  const out = new Uint8Array(mib * MiB);
  for (let gpa = 0; gpa < mib * MiB; gpa += PAGE) {
    const hpa = d.machineAddress(gpa);
    if (hpa === undefined) throw new Error(`victim GPA 0x${gpa.toString(16)} is not RAM`);
    hv.memory.readBytes(hpa, out.subarray(gpa, gpa + PAGE));
  }
  return out;
}

function holdsPattern(page: Uint8Array): boolean {
  for (let i = 0; i < page.length; i++) if (page[i] !== PATTERN[i % PATTERN.length]) return false;
  return true;
}

describe("workload=nvme: the reference kernel's NVMe driver on the assigned controller", () => {
  for (const hap of [true, false]) {
    it(`prints images/kernel-nvme.expected (${hap ? "EPT" : "shadow"})`, { timeout: 120_000 }, async () => {
      const { hv, create, backend, nvme } = host(true);
      const d = create(`name = "nvme"\nmemory = 64\nhap = ${hap ? 1 : 0}\ncmdline = "workload=nvme"\npci = [ "00:04.0" ]`);
      const r = await runYielding(hv, { maxInstructions: BUDGET });
      expect(r.reason).toBe("idle");
      ok(d);
      expect(d.console).toBe(expectedNvme);
      // The data went through the controller to its namespace (2 MiB from LBA 0) by DMA through the IOMMU.
      expect(backend.data.subarray(0, 2 * MiB).some((b) => b !== 0)).toBe(true);
      expect(backend.data.subarray(2 * MiB).every((b) => b === 0)).toBe(true);
      const io = d.stats().iommu!;
      expect(io.remapping).toBe("on");
      expect(io.faults).toBe(0);
      expect(io.dmaBytes).toBeGreaterThanOrEqual(4 * MiB);
      expect(nvme.stats).toBeDefined();
    });
  }
});

describe("workload=nvme: what the output says", () => {
  it("has the disk workload's checksum (the same data folded the same way)", () => {
    const disk = readFileSync(new URL("kernel-disk.expected", referenceKernelUrl()), "utf8");
    const sum = (text: string) => /\nPASS \w+ ([0-9a-f]{16})\n$/.exec(text)?.[1];
    expect(sum(expectedNvme)).toBeDefined();
    expect(sum(expectedNvme)).toBe(sum(disk));
  });

  it("without an assigned controller the guest fails cleanly (exit code 1), the host is unharmed", { timeout: 60_000 }, async () => {
    const { hv, create, nvme } = host(true);
    const d = create(`name = "nodev"\nmemory = 32\ncmdline = "workload=nvme"`);
    const other = create(`name = "other"\nmemory = 32\ncmdline = "workload=nvme"\npci = [ "00:04.0" ]`);
    expect((await runYielding(hv, { maxInstructions: BUDGET })).reason).toBe("idle");
    expect({ state: d.state, code: d.exitCode }).toEqual({ state: "shutdown", code: 1 });
    expect(d.console).toContain("nvme: no PCI function of class 01:08:02 on bus 0\n");
    expect(d.console).toContain("FAIL nvme: no usable NVMe controller");
    ok(other);
    expect(other.console).toBe(expectedNvme);
    expect(nvme.stats).toBeDefined();
  });
});

/**
 * The victim (workload=compute, paused before it runs: its RAM holds the loaded kernel) is
 * created first; the guessed address is the machine address of one of its frames that lies
 * outside the attacker's guest-physical RAM (so that, with the IOMMU, the address is not one of
 * the attacker's own pages either).
 */
function attack(iommu: boolean, hap: boolean) {
  const { hv, create } = host(iommu);
  const victim = create(`name = "victim"\nmemory = ${VICTIM_MIB}\nhap = ${hap ? 1 : 0}\ncmdline = "workload=compute"`);
  victim.pause();
  let victimGpa = -1, victimHpa = -1;
  for (let gpa = 0x10_0000; gpa < VICTIM_MIB * MiB; gpa += PAGE) {
    const hpa = victim.machineAddress(gpa);
    if (hpa !== undefined && hpa >= ATTACKER_MIB * MiB + 0x10_0000) {
      victimGpa = gpa;
      victimHpa = hpa;
      break;
    }
  }
  expect(victimHpa).toBeGreaterThan(0);
  const before = ramImage(hv, victim, VICTIM_MIB);
  // With iommu = 0 the device's bus addresses are machine addresses: the attacker's driver
  // works only if it knows its machine base (dmabase=). A domain's RAM is one machine-contiguous
  // run and the allocator is deterministic, so a probe domain built and destroyed first shows
  // where the attacker's RAM will be.
  let dmabase = "";
  if (!iommu) {
    const probe = create(`name = "probe"\nmemory = ${ATTACKER_MIB}\ncmdline = "workload=compute"`);
    const base = probe.machineAddress(0)!;
    hv.destroyDomain(probe.id);
    dmabase = ` dmabase=0x${base.toString(16)}`;
  }
  const attacker = create(`name = "attacker"\nmemory = ${ATTACKER_MIB}\nhap = ${hap ? 1 : 0}\ncmdline = "workload=dmaattack victim=0x${victimHpa.toString(16)}${dmabase}"\npci = [ "00:04.0" ]`);
  if (!iommu) {
    const base = Number.parseInt(dmabase.slice(" dmabase=0x".length), 16);
    for (let gpa = 0; gpa < ATTACKER_MIB * MiB; gpa += PAGE) expect(attacker.machineAddress(gpa)).toBe(base + gpa);
  }
  hv.run({ maxInstructions: BUDGET });
  expect(victim.state).toBe("paused");
  const after = ramImage(hv, victim, VICTIM_MIB);
  return { hv, victim, attacker, victimGpa, victimHpa, before, after };
}

/** The attempt lines of the attacker's console: "dmaattack: Read (device writes) at 0x...". */
function attempts(console: string): string[] {
  return console.split("\n").filter((l) => /^dmaattack: (Read|Write) \(/.test(l));
}

describe("workload=dmaattack: an assigned device cannot DMA outside its domain", () => {
  for (const hap of [true, false]) {
    it(`with the IOMMU every attempt is blocked and the victim is untouched (${hap ? "EPT" : "shadow"})`, { timeout: 120_000 }, () => {
      const { attacker, victimHpa, before, after } = attack(true, hap);
      ok(attacker);
      const lines = attempts(attacker.console);
      expect(lines).toHaveLength(8); // victim, beyond RAM, IO-APIC page, 0xF0000000; Read and Write each
      for (const l of lines) expect(l).toMatch(/: SCT 0h SC 04h \(Data Transfer Error\)/);
      expect(attacker.console).toContain(`at 0x${victimHpa.toString(16)} victim`);
      expect(attacker.console).toContain("dmaattack: 8 attempts, 8 failed\n");
      // The host IOMMU recorded the faults, with the device's BDF and the IOVAs it was given.
      const io = attacker.stats().iommu!;
      expect(io.remapping).toBe("on");
      expect(io.faults).toBeGreaterThanOrEqual(8);
      // The targets as the attacker printed them (its "beyond RAM" one is 4 GiB + its RAM top).
      const targets = [...new Set(lines.map((l) => Number.parseInt(/ at 0x([0-9a-f]+) /.exec(l)![1]!, 16)))];
      expect(targets).toHaveLength(4);
      expect(targets.slice(2)).toEqual([0xfec0_0000, 0xf000_0000]);
      expect(targets[1]).toBeGreaterThan(4 * 2 ** 30);
      expect(targets[1]).toBeLessThanOrEqual(4 * 2 ** 30 + ATTACKER_MIB * MiB);
      for (const t of targets) {
        for (const access of ["read", "write"] as const) {
          // A Read command makes the device write memory; a Write command makes it read.
          expect(io.faultLog.some((f) => f.bdf === "00:04.0" && f.iova === t && f.access === access), `fault ${access} at 0x${t.toString(16)}`).toBe(true);
        }
      }
      // Not one byte of the victim's RAM changed.
      expect(Buffer.compare(Buffer.from(before), Buffer.from(after))).toBe(0);
    });
  }

  for (const hap of [true, false]) it(`with iommu = 0 the victim's frame at the guessed machine address holds the pattern (${hap ? "EPT" : "shadow"})`, { timeout: 120_000 }, () => {
    const { attacker, victimGpa, victimHpa, before, after } = attack(false, hap);
    ok(attacker);
    expect(attacker.messages.some((m) => m.includes("iommu=0") && m.includes("00:04.0"))).toBe(true);
    const lines = attempts(attacker.console);
    const atVictim = lines.filter((l) => l.includes(`at 0x${victimHpa.toString(16)} victim`));
    expect(atVictim).toHaveLength(2);
    for (const l of atVictim) expect(l).toMatch(/: completed$/);
    expect(attacker.stats().iommu?.remapping ?? "off").toBe("off");
    const page = after.subarray(victimGpa, victimGpa + PAGE);
    expect(holdsPattern(page)).toBe(true);
    expect(holdsPattern(before.subarray(victimGpa, victimGpa + PAGE))).toBe(false);
    // Only that page changed.
    for (let gpa = 0; gpa < VICTIM_MIB * MiB; gpa += PAGE) {
      if (gpa === victimGpa) continue;
      expect(Buffer.compare(Buffer.from(before.subarray(gpa, gpa + PAGE)), Buffer.from(after.subarray(gpa, gpa + PAGE))), `victim page 0x${gpa.toString(16)}`).toBe(0);
    }
  });
});
