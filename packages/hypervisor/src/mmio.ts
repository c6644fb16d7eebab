/**
 * MMIO emulation (the role of Xen's handle_mmio / hvm_emulate_one): an EPT violation (hap=1) or
 * a shadow #PF (hap=0) at a guest-physical address the p2m marks as emulated MMIO comes here.
 * The hypervisor fetches the instruction at the guest's RIP through the guest's own paging,
 * decodes it with cpu-vmx's decoder, recomputes the access from the instruction (its linear
 * address, translated again, and its size), performs it on the domain's MMIO bus, writes the
 * destination register for a load, and moves RIP past the instruction.
 *
 * Emulated forms (SDM Vol. 2 "MOV", "MOVZX", "MOVSX/MOVSXD"): MOV Eb,Gb (88), MOV Ev,Gv (89),
 * MOV Gb,Eb (8A), MOV Gv,Ev (8B), MOV Eb,Ib (C6 /0), MOV Ev,Iz (C7 /0), MOV AL/rAX <-> moffs
 * (A0-A3), MOVZX Gv,Eb/Ew (0F B6/B7), MOVSX Gv,Eb/Ew (0F BE/BF), MOVSXD Gv,Ed (63, 64-bit mode);
 * operand sizes 8, 16, 32 and 64 bits. Anything else on MMIO (a read-modify-write ALU form,
 * string instructions, LOCKed accesses), an instruction that cannot be fetched or decoded, an
 * access split across the end of a device's range, or an access to an MMIO GPA no device claims
 * crashes the domain, with RIP, the instruction bytes and the GPA in the reason (as Xen's
 * "unhandleable" emulation result does).
 *
 * Guest bytes are hostile: the instruction is copied out of guest memory once (at most 15
 * bytes, the architectural limit, with guest-memory.ts's `copyFromGuest`: p2m RAM only) and
 * decoded from the copy; RIP and RSP are taken from the VMCS, which holds them across an exit.
 * The operand's linear address is cpu-vmx's own (`ea`: exact modulo 2^64, FS/GS bases), and
 * registers are read and written with the vCPU's register accessors.
 *
 * Unassigned space: guest-physical addresses below 4 GiB where nothing is mapped (no RAM, no
 * device) are marked MMIO in the p2m too (`markUnassignedBelow4G`), so that EPT and shadow paging
 * both bring their accesses here, and answer as a PC's bus does for nothing: a load reads all
 * ones, a store is dropped; both are counted (`unassignedReads`, `unassignedWrites`). The
 * instruction is emulated as for a device (the same forms), so a guest that fetches instructions
 * from such an address still crashes (the fetch finds no RAM), as does any access above 4 GiB
 * where nothing is mapped, a guest page-table walk through unassigned space, and an access split
 * between unassigned space and RAM or a device.
 *
 * Read-only grant mappings (p2m_grant_map_ro, xen/grant_table.ts): EPT and shadow paging map them
 * without write permission and send a write here; the store is emulated and dropped, as Xen's
 * emulator does for its write-discard p2m types (the same instruction forms).
 *
 * Modelled more simply than Xen's emulator: segment limits and the alignment check (#AC) are
 * not applied to the emulated access; RFLAGS.TF single-step is not raised after an emulated
 * instruction; an instruction that touches MMIO while delivering an event (an IDT or stack in
 * MMIO) crashes the domain.
 */
import { Access, MmioBus, PAGE_SIZE, Vector, allOnes, gfn as asGfn, type AccessSize, type BusDevice, type BusRegistrationError, type DeviceError, type U64 } from "@vtlab/arch";
import {
  BLOCKING_BY_STI_OR_MOV_SS,
  MAX_INSTRUCTION_LENGTH,
  Reg,
  Seg,
  VmcsField as F,
  decodeBytes,
  ea,
  readReg,
  writeReg,
  wrap64,
  type ExitOutcome,
  type Insn,
  type VmExit,
  type Vmcs,
} from "@vtlab/cpu-vmx";
import { P2mType, type DomainP2m } from "@vtlab/p2m";
import type { ExitContext } from "./exits.js";
import { copyFromGuest } from "./guest-memory.js";
import type { Vcpu } from "./hypervisor.js";
import { RESUME } from "./outcomes.js";
import { APIC_BASE_DEFAULT, XAPIC_MMIO_SIZE, type LocalApic } from "./devices/lapic.js";

/** The architectural limit on an instruction's length (cpu-vmx's decoder owns it; re-exported under the name this package always had). */
export { MAX_INSTRUCTION_LENGTH };

/** The opcode map numbers cpu-vmx's decoder uses (one-byte 0x00-0xFF, 0F map 0x100-0x1FF). */
const Op = {
  MOV_EbGb: 0x88,
  MOV_EvGv: 0x89,
  MOV_GbEb: 0x8a,
  MOV_GvEv: 0x8b,
  MOV_ALOb: 0xa0,
  MOV_rAXOv: 0xa1,
  MOV_ObAL: 0xa2,
  MOV_OvrAX: 0xa3,
  MOV_EbIb: 0xc6,
  MOV_EvIz: 0xc7,
  MOVSXD_GvEd: 0x63,
  MOVZX_GvEb: 0x1b6,
  MOVZX_GvEw: 0x1b7,
  MOVSX_GvEb: 0x1be,
  MOVSX_GvEw: 0x1bf,
} as const;

/** How a supported instruction touches memory. */
const enum Kind {
  /** Store a register (Gb/Gv, or AL/rAX for moffs). */
  StoreReg,
  /** Store the immediate. */
  StoreImm,
  /** Load into a register, same size. */
  Load,
  /** Load and zero-extend. */
  LoadZx,
  /** Load and sign-extend. */
  LoadSx,
}

interface Form {
  kind: Kind;
  /** Bytes the instruction reads or writes in memory. */
  size: 1 | 2 | 4 | 8;
  /** The register operand (destination of a load, source of a store). */
  reg: number;
}

const formScratch: Form = { kind: Kind.Load, size: 4, reg: 0 };

/** The memory form of a supported instruction, or a reason it is not emulated. */
function formOf(i: Insn): Form | string {
  const f = formScratch;
  if (!i.isMem) return "no memory operand";
  if (i.lock) return "LOCK prefix";
  const opSize = i.opSize as 1 | 2 | 4 | 8;
  f.reg = i.reg;
  switch (i.opcode) {
    case Op.MOV_EbGb:
    case Op.MOV_EvGv:
      f.kind = Kind.StoreReg;
      f.size = opSize;
      return f;
    case Op.MOV_GbEb:
    case Op.MOV_GvEv:
      f.kind = Kind.Load;
      f.size = opSize;
      return f;
    case Op.MOV_ALOb:
    case Op.MOV_rAXOv:
      f.kind = Kind.Load;
      f.size = opSize;
      f.reg = 0;
      return f;
    case Op.MOV_ObAL:
    case Op.MOV_OvrAX:
      f.kind = Kind.StoreReg;
      f.size = opSize;
      f.reg = 0;
      return f;
    case Op.MOV_EbIb:
    case Op.MOV_EvIz:
      if ((i.reg & 7) !== 0) return "C6/C7 with ModRM.reg != 0";
      f.kind = Kind.StoreImm;
      f.size = opSize;
      return f;
    case Op.MOVZX_GvEb:
    case Op.MOVZX_GvEw:
      f.kind = Kind.LoadZx;
      f.size = i.opcode === Op.MOVZX_GvEb ? 1 : 2;
      return f;
    case Op.MOVSX_GvEb:
    case Op.MOVSX_GvEw:
    case Op.MOVSXD_GvEd:
      f.kind = Kind.LoadSx;
      f.size = i.opcode === Op.MOVSX_GvEb ? 1 : i.opcode === Op.MOVSX_GvEw ? 2 : 4;
      return f;
    default:
      return "not an emulated MMIO instruction (MOV, MOVZX, MOVSX, MOVSXD only)";
  }
}

/**
 * A domain's emulated MMIO: the bus (arch's `MmioBus`, which refuses overlapping regions) and the
 * p2m ranges it owns, marked `P2mType.Mmio` so that EPT (no mapping: violation) and shadow paging
 * (no shadow entry: #PF) both send accesses here. Per-vCPU devices (the local APIC, at one GPA
 * for every vCPU) answer for the vCPU whose access is being emulated (Xen's `current`).
 */
export class DomainMmio {
  readonly bus = new MmioBus();
  /** The vCPU whose instruction is being emulated (set around each bus access). */
  accessor: Vcpu | undefined = undefined;
  /** Emulated loads from unassigned space below 4 GiB (all ones), and stores there (dropped). */
  unassignedReads = 0;
  unassignedWrites = 0;

  constructor(private readonly p2m: DomainP2m) {}

  /**
   * Mark every guest frame below 4 GiB that the p2m leaves absent as MMIO with no device: the
   * floating bus a PC has there. Call once the domain's RAM and fixed devices are in the p2m (later
   * RAM mappings, add_to_physmap for instance, replace these entries as they replace any other).
   */
  markUnassignedBelow4G(): void {
    const gaps: [number, number][] = [];
    let next = 0;
    for (const run of this.p2m.runs()) {
      const start = run.gfn as number;
      if (start >= UNASSIGNED_LIMIT_GFN) break;
      if (start > next) gaps.push([next, start - next]);
      next = Math.max(next, start + run.count);
    }
    if (next < UNASSIGNED_LIMIT_GFN) gaps.push([next, UNASSIGNED_LIMIT_GFN - next]);
    for (const [gfn, count] of gaps) this.p2m.setRange(asGfn(gfn), count, P2mType.Mmio);
  }

  /** Whether `gpa` is unassigned space: below 4 GiB, MMIO in the p2m, and no device claims it. */
  isUnassigned(gpa: number): boolean {
    if (!(gpa >= 0 && gpa < UNASSIGNED_LIMIT_GFN * PAGE_SIZE)) return false;
    return this.p2m.lookup(asGfn(Math.floor(gpa / PAGE_SIZE))).type === P2mType.Mmio && !this.bus.claims(gpa);
  }

  /** Put `device` at [base, base + length) (page-aligned) and mark the range MMIO in the p2m. */
  register(base: number, length: number, device: BusDevice, name: string): BusRegistrationError | undefined {
    if (base % PAGE_SIZE !== 0 || length % PAGE_SIZE !== 0) {
      return { kind: "bus-registration-error", bus: "mmio", name, base, length, reason: "bad-range", message: `${name}: an emulated MMIO range must be whole pages (0x${base.toString(16)}+0x${length.toString(16)})` };
    }
    if (this.bus.list().some((r) => r.name === name)) {
      return { kind: "bus-registration-error", bus: "mmio", name, base, length, reason: "overlap", message: `${name}: a region with this name is already on the bus` };
    }
    const err = this.bus.register(base, length, device, name);
    if (err !== undefined) return err;
    this.p2m.setRange(asGfn(base / PAGE_SIZE), length / PAGE_SIZE, P2mType.Mmio);
    return undefined;
  }

  /** Register a device each vCPU has its own instance of; `select` picks the accessing vCPU's. */
  registerPerVcpu(base: number, length: number, name: string, select: (v: Vcpu) => BusDevice | undefined): BusRegistrationError | undefined {
    const proxy: BusDevice = {
      read: (offset, size) => {
        const dev = this.accessor === undefined ? undefined : select(this.accessor);
        return dev === undefined ? allOnes(size) : dev.read(offset, size);
      },
      write: (offset, size, value) => {
        const dev = this.accessor === undefined ? undefined : select(this.accessor);
        return dev?.write(offset, size, value);
      },
    };
    return this.register(base, length, proxy, name);
  }
}

/** A guest-physical address whose writes Xen's emulator discards: a read-only grant mapping (p2m_grant_map_ro). */
function isDiscardWrite(p2m: DomainP2m, gpa: number): boolean {
  return gpa >= 0 && gpa < 2 ** 52 && p2m.lookup(asGfn(Math.floor(gpa / PAGE_SIZE))).type === P2mType.GrantMapRo;
}

/** Unassigned space reads all ones below 4 GiB (frame 0x100000); above it, nothing mapped is a crash. */
const UNASSIGNED_LIMIT_GFN = 0x10_0000;

const code = new Uint8Array(MAX_INSTRUCTION_LENGTH);
const u64: U64 = { lo: 0, hi: 0 };

function hexBytes(n: number): string {
  let s = "";
  for (let k = 0; k < n; k++) s += (k > 0 ? " " : "") + code[k]!.toString(16).padStart(2, "0");
  return s;
}

const hex = (n: number): string => `0x${(n < 0 ? n + 2 ** 64 : n).toString(16)}`;

/** The domain cannot survive the access: Xen's X86EMUL_UNHANDLEABLE, with RIP, the bytes fetched (in `code`) and the GPA. */
function unhandleable(write: boolean, gpa: number, rip: number, fetched: number, why: string): ExitOutcome {
  return {
    kind: "crash",
    reason: `unhandleable MMIO ${write ? "write to" : "read of"} GPA ${hex(gpa)} at RIP ${hex(rip)} (bytes: ${fetched > 0 ? hexBytes(fetched) : "none"}): ${why}`,
  };
}

/**
 * Emulate the instruction that made an MMIO access at `gpa` (the faulting GPA from the EPT
 * violation or the shadow #PF; the access itself is recomputed from the instruction).
 *
 * Register state: the general-purpose registers are the vCPU's own (`cpu.lo`/`cpu.hi`), except
 * RSP, which the VMCS holds across an exit (GUEST_RSP: saved on exit, loaded on entry). It is
 * copied into the vCPU's register file first, so that cpu-vmx's effective-address computation
 * and register accessors see it, and written back to GUEST_RSP, as exact 32-bit halves, when the
 * instruction loads RSP.
 */
export function handleMmio(ctx: ExitContext, exit: VmExit, gpa: number, write: boolean): ExitOutcome {
  const { domain: d, vcpu: v } = ctx;
  const stats = d.exitStats;
  stats.mmio++;
  const vmcs = v.vmcs;
  const cpu = v.cpu;
  const mode64 = cpu.mode64;
  const rip = vmcs.readNatural(F.GUEST_RIP);
  if (exit.idtVectoring !== undefined) return unhandleable(write, gpa, rip, 0, `the access was made while delivering vector ${exit.idtVectoring.vector} (an IDT, GDT or stack in MMIO)`);
  if (!d.mmio.bus.claims(gpa) && !d.mmio.isUnassigned(gpa) && !(write && isDiscardWrite(d.p2m, gpa)) && !relocatedApicAt(v, gpa)) return unhandleable(write, gpa, rip, 0, "no emulated device is mapped there");
  const user = cpu.cpl === 3 ? Access.User : 0;
  let fetched = copyFromGuest(ctx, cpu.linear(Seg.CS, rip), code, MAX_INSTRUCTION_LENGTH, Access.Fetch | user);
  if (fetched === 0) return unhandleable(write, gpa, rip, 0, "the instruction cannot be fetched: RIP is on a page the guest's tables do not map to RAM");
  const insn = decodeBytes(code, fetched, mode64, cpu.csD);
  if (insn === undefined) return unhandleable(write, gpa, rip, fetched, fetched < MAX_INSTRUCTION_LENGTH ? "the instruction runs onto a page that cannot be fetched" : "the instruction is longer than 15 bytes");
  fetched = Math.min(fetched, insn.len);
  const form = formOf(insn);
  if (typeof form === "string") return unhandleable(write, gpa, rip, fetched, `unsupported instruction ${insn.mnemonic || "(undefined opcode)"}: ${form}`);
  const store = form.kind === Kind.StoreReg || form.kind === Kind.StoreImm;
  if (store !== write) return unhandleable(write, gpa, rip, fetched, `the instruction is a ${store ? "store" : "load"} but the access that exited was a ${write ? "write" : "read"}`);
  const size = form.size;

  // RSP from the VMCS into the register file, exactly (see above).
  const rsp = vmcs.readHalves(F.GUEST_RSP);
  cpu.lo[Reg.RSP] = rsp.lo;
  cpu.hi[Reg.RSP] = rsp.hi;

  // The access, recomputed from the instruction: linear address (cpu-vmx's, with RIP the next
  // instruction's for a RIP-relative operand), translated again, first and last byte, so that
  // an access split across pages or ranges is seen.
  const nextRip = mode64 ? wrap64(rip + insn.len) : (rip + insn.len) >>> 0;
  const savedRip = cpu.rip;
  cpu.rip = nextRip;
  const linear = ea(cpu, insn);
  cpu.rip = savedRip;
  const access = (write ? Access.Write : Access.Read) | user;
  const first = d.paging.gvaToGpa(cpu, linear, access);
  if (typeof first !== "number") return { kind: "inject", vector: Vector.PF, errorCode: first.errorCode, cr2: linear };
  let last = first + size - 1;
  if ((first % PAGE_SIZE) + size > PAGE_SIZE) {
    const lastLinear = mode64 ? wrap64(linear + size - 1) : (linear + size - 1) >>> 0;
    const g = d.paging.gvaToGpa(cpu, lastLinear, access);
    if (typeof g !== "number") return { kind: "inject", vector: Vector.PF, errorCode: g.errorCode, cr2: lastLinear };
    last = g;
  }
  let bus: Pick<MmioBus, "read" | "write" | "read64" | "write64"> = d.mmio.bus;
  let owner = d.mmio.bus.ownerOf(first);
  if (relocatedApicAt(v, first)) {
    // The accessing vCPU's local APIC at the base its IA32_APIC_BASE names (SDM 11.4.4).
    relocatedApic.apic = v.apic!;
    relocatedApic.base = v.apic!.xapicBase;
    bus = relocatedApic;
    owner = "local APIC";
    if (!relocatedApicAt(v, last)) return unhandleable(write, gpa, rip, fetched, `a ${size}-byte access at GPA ${hex(first)} is split across the end of ${owner}`);
  } else if (owner === undefined) {
    // A store to a read-only grant mapping (Xen's P2M_DISCARD_WRITE_TYPES): emulated and dropped.
    if (store && isDiscardWrite(d.p2m, first) && isDiscardWrite(d.p2m, last) && last === first + size - 1) return complete(vmcs, nextRip);
    if (!d.mmio.isUnassigned(first) || !d.mmio.isUnassigned(last) || last !== first + size - 1) {
      return unhandleable(write, gpa, rip, fetched, `the instruction's access at GPA ${hex(first)} is not to an emulated device`);
    }
    // Unassigned space: a load reads all ones, a store is dropped (both counted).
    if (store) d.mmio.unassignedWrites++;
    else {
      d.mmio.unassignedReads++;
      let lo = size === 1 ? 0xff : size === 2 ? 0xffff : -1;
      let hi = size === 8 ? -1 : 0;
      if (form.kind === Kind.LoadSx) {
        lo = -1;
        hi = -1;
      }
      writeReg(cpu, form.reg, insn.rex, insn.opSize, lo, hi);
      if (form.reg === Reg.RSP) vmcs.setField(F.GUEST_RSP, cpu.lo[Reg.RSP]!, cpu.hi[Reg.RSP]!);
    }
    return complete(vmcs, nextRip);
  }
  if (last !== first + size - 1 || (bus === d.mmio.bus && d.mmio.bus.ownerOf(last) !== owner)) {
    return unhandleable(write, gpa, rip, fetched, `a ${size}-byte access at GPA ${hex(first)} is split across the end of ${owner}`);
  }

  d.mmio.accessor = v;
  try {
    if (store) {
      if (form.kind === Kind.StoreImm) {
        u64.lo = insn.imm >>> 0;
        u64.hi = size === 8 ? insn.immHi >>> 0 : 0;
        if (size === 1) u64.lo &= 0xff;
        else if (size === 2) u64.lo &= 0xffff;
      } else {
        u64.lo = readReg(cpu, form.reg, insn.rex, size) >>> 0;
        u64.hi = size === 8 ? cpu.tmpHi >>> 0 : 0;
      }
      let err: DeviceError | undefined;
      if (size === 8) {
        stats.mmioAccesses += 2;
        err = bus.write64(first, u64.lo, u64.hi);
      } else {
        stats.mmioAccesses++;
        err = bus.write(first, size, u64.lo);
      }
      if (err !== undefined) return unhandleable(write, gpa, rip, fetched, `${err.device} refused the write: ${err.message}`);
    } else {
      if (size === 8) {
        stats.mmioAccesses += 2;
        bus.read64(first, u64);
      } else {
        stats.mmioAccesses++;
        u64.lo = bus.read(first, size as AccessSize) >>> 0;
        u64.hi = 0;
      }
      let lo = u64.lo;
      let hi = u64.hi;
      if (form.kind === Kind.LoadSx) {
        const s = size === 1 ? (lo << 24) >> 24 : size === 2 ? (lo << 16) >> 16 : lo | 0;
        lo = s;
        hi = s >> 31;
      }
      writeReg(cpu, form.reg, insn.rex, insn.opSize, lo, hi);
      // RSP back to the VMCS (a byte write to register 4 without REX is AH: RSP is unchanged).
      if (form.reg === Reg.RSP) vmcs.setField(F.GUEST_RSP, cpu.lo[Reg.RSP]!, cpu.hi[Reg.RSP]!);
    }
  } finally {
    d.mmio.accessor = undefined;
  }

  return complete(vmcs, nextRip);
}

/**
 * Whether `gpa` is in the xAPIC page of `v`'s local APIC after the guest moved it away from the
 * default base. Modelled more simply: the new base is emulated only where accesses reach the
 * emulator (unassigned space, above RAM); a base inside the guest's RAM stays RAM.
 */
function relocatedApicAt(v: Vcpu, gpa: number): boolean {
  const apic = v.apic;
  if (apic === undefined || apic.mode !== "xapic") return false;
  const base = apic.xapicBase;
  return base !== APIC_BASE_DEFAULT && gpa >= base && gpa < base + XAPIC_MMIO_SIZE;
}

/** The relocated APIC as a bus (one reused object: handleMmio sets `apic` and `base` before each access). */
const relocatedApic = {
  apic: undefined as unknown as LocalApic,
  base: 0,
  read(addr: number, size: AccessSize): number {
    return this.apic.read(addr - this.base, size);
  },
  write(addr: number, size: AccessSize, value: number): DeviceError | undefined {
    return this.apic.write(addr - this.base, size, value);
  },
  read64(addr: number, out: U64): void {
    out.lo = this.apic.read(addr - this.base, 4) >>> 0;
    out.hi = this.apic.read(addr - this.base + 4, 4) >>> 0;
  },
  write64(addr: number, lo: number, hi: number): DeviceError | undefined {
    return this.apic.write(addr - this.base, 4, lo) ?? this.apic.write(addr - this.base + 4, 4, hi);
  },
};

/** Completing the instruction: RIP past it, and blocking by STI / MOV SS ends (SDM 26.3.1.5). */
function complete(vmcs: Vmcs, nextRip: number): ExitOutcome {
  vmcs.setNatural(F.GUEST_RIP, nextRip);
  const intr = vmcs.read32(F.GUEST_INTERRUPTIBILITY_INFO);
  if ((intr & BLOCKING_BY_STI_OR_MOV_SS) !== 0) vmcs.setField(F.GUEST_INTERRUPTIBILITY_INFO, intr & ~BLOCKING_BY_STI_OR_MOV_SS);
  return RESUME;
}
