/**
 * The SSE decode table (src/decode/sse-table.ts) against iced-x86: for every form, random
 * encodings (the mandatory prefix, stray 66/segment prefixes, REX, ModRM/SIB, displacements,
 * immediates) must decode to iced-x86's mnemonic, length and operands (XMM and general
 * registers, memory base/index/scale/displacement, immediate) in 64-bit mode; a register form of
 * a memory-only row and a memory form of a register-only row must be invalid for both.
 */
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import type * as IcedTypes from "iced-x86";
import { F_IMM8, F_MEM, F_REGONLY, decodeBytes, type Insn } from "@vtlab/cpu-vmx";
import { rng, sseForms, type SseForm } from "./native/sse-gen.js";

const iced = createRequire(import.meta.url)("iced-x86") as typeof IcedTypes;
const { Decoder, DecoderOptions, OpKind, Register, Mnemonic } = iced;

const REG64 = ["RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI", "R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15"];
const REG32 = ["EAX", "ECX", "EDX", "EBX", "ESP", "EBP", "ESI", "EDI", "R8D", "R9D", "R10D", "R11D", "R12D", "R13D", "R14D", "R15D"];
const regName = (r: number) => (Register as unknown as Record<number, string>)[r] ?? "?";
const gprIndex = (name: string) => Math.max(REG64.indexOf(name), REG32.indexOf(name));

function encode(f: SseForm, next: () => number, mod: "mem" | "reg" | "any"): number[] {
  const bytes: number[] = [];
  if (next() % 8 === 0) bytes.push([0x2e, 0x3e, 0x26, 0x64, 0x65, 0x36][next() % 6]!);
  // A 66 before F3/F2 does not change the column (F2/F3 win); only drawn where it cannot.
  if (f.prefix === 0xf3 || f.prefix === 0xf2) {
    if (next() % 4 === 0) bytes.push(0x66);
  }
  if (f.prefix !== 0) bytes.push(f.prefix);
  if (next() % 2 === 0) bytes.push(0x40 | (next() & 0xf));
  bytes.push(0x0f, f.opcode & 0xff);
  let modrm = next() & 0xff;
  if (f.groupReg !== undefined) modrm = (modrm & 0xc7) | (f.groupReg << 3);
  if (mod === "reg") modrm |= 0xc0;
  if (mod === "mem" && modrm >= 0xc0) modrm &= 0x7f;
  bytes.push(modrm);
  for (let k = 0; k < 12; k++) bytes.push(next() & 0xff);
  return bytes;
}

function compare(i: Insn, bytes: number[]): string | undefined {
  const x = new Decoder(64, Uint8Array.from(bytes), DecoderOptions.None).decode();
  if (x.isInvalid) return `iced-x86 says invalid, vtlab decoded ${i.mnemonic} (${i.len} bytes)`;
  if (x.length !== i.len) return `length: iced-x86 ${x.length}, vtlab ${i.len}`;
  const theirs = ((Mnemonic as unknown as Record<number, string>)[x.mnemonic] ?? "?").toLowerCase();
  const ours = i.mnemonic;
  const alternatives = [ours, ...(OPERANDS.get(i) ?? "").split("|").slice(1).map((s) => s.split(" ")[0]!)];
  if (!alternatives.includes(theirs)) return `mnemonic: iced-x86 ${theirs}, vtlab ${alternatives.join("/")}`;
  for (let o = 0; o < x.opCount; o++) {
    const kind = x.opKind(o);
    if (kind === OpKind.Memory) {
      if (!i.isMem) return `operand ${o}: iced-x86 memory, vtlab register`;
      const base = regName(x.memoryBase);
      if (base === "RIP") {
        if (!i.ripRel) return "iced-x86 RIP-relative, vtlab not";
        if (Number(BigInt.asIntN(64, x.memoryDisplacement)) !== i.len + i.disp) return "RIP-relative displacement differs";
      } else {
        const want = x.memoryBase === Register.None ? -1 : gprIndex(base);
        if (want !== i.base) return `base: iced-x86 ${base}, vtlab ${i.base}`;
        if (Number(BigInt.asIntN(64, x.memoryDisplacement)) !== i.disp) return `displacement: iced-x86 ${x.memoryDisplacement}, vtlab ${i.disp}`;
      }
      const index = x.memoryIndex === Register.None ? -1 : gprIndex(regName(x.memoryIndex));
      if (index !== i.index) return `index: iced-x86 ${regName(x.memoryIndex)}, vtlab ${i.index}`;
      if (index >= 0 && x.memoryIndexScale !== i.scale) return `scale: iced-x86 ${x.memoryIndexScale}, vtlab ${i.scale}`;
    } else if (kind === OpKind.Register) {
      const name = regName(x.opRegister(o));
      const m = /^XMM(\d+)$/.exec(name);
      if (m) {
        const n = Number(m[1]);
        if (o === 0 ? n !== i.reg && n !== i.rm : n !== i.rm && n !== i.reg) return `operand ${o}: iced-x86 ${name}, vtlab reg=${i.reg} rm=${i.rm}`;
      } else {
        const n = gprIndex(name);
        if (n < 0 && name !== "RDI" && name !== "EDI") return `operand ${o}: iced-x86 register ${name}`;
        if (n !== i.reg && n !== i.rm) return `operand ${o}: iced-x86 ${name}, vtlab reg=${i.reg} rm=${i.rm}`;
        // The width of a general register operand: 64 with REX.W where the row says y.
        if (REG64.includes(name) !== (i.opSize === 8) && !/^(Gd|Rd)/.test(OPERANDS.get(i) ?? "") && !/[WR]y\/Mw/.test(OPERANDS.get(i) ?? ""))
          return `operand ${o}: iced-x86 ${name}, vtlab operand size ${i.opSize}`;
      }
    } else if (kind === OpKind.Immediate8) {
      if (Number(x.immediate(o)) !== (i.imm & 0xff)) return `immediate: iced-x86 ${x.immediate(o)}, vtlab ${i.imm}`;
    } else if (kind === OpKind.MemorySegRDI) {
      // MASKMOVDQU's implicit DS:[RDI] (a segment override applies).
      const segName = regName(x.memorySegment);
      if (["ES", "CS", "SS", "DS", "FS", "GS"].indexOf(segName) !== i.seg) return `segment: iced-x86 ${segName}, vtlab ${i.seg}`;
    } else return `operand ${o}: kind ${kind} not compared`;
  }
  return undefined;
}

/** The decode-table operand text of each decoded Insn (for the alternative mnemonics of 0F 12/16, 0F C7). */
const OPERANDS = new WeakMap<Insn, string>();

describe("SSE decode table vs iced-x86", () => {
  it("every form decodes to iced-x86's mnemonic, length and operands (random encodings)", () => {
    const forms = sseForms();
    const next = rng(0x55e2);
    const failures: string[] = [];
    let compared = 0;
    for (const f of forms) {
      const memOnly = (f.spec.flags & F_MEM) !== 0;
      const regOnly = (f.spec.flags & F_REGONLY) !== 0;
      for (let n = 0; n < 120 && failures.length < 20; n++) {
        const bytes = encode(f, next, memOnly ? "mem" : regOnly ? "reg" : "any");
        const insn = decodeBytes(Uint8Array.from(bytes), bytes.length, true, false);
        const where = `${f.spec.mnemonic} ${f.spec.operands}: ${bytes.map((b) => b.toString(16).padStart(2, "0")).join(" ")}`;
        if (insn === undefined || insn.exec.name === "ud") {
          failures.push(`${where}: vtlab does not decode it (${insn?.mnemonic ?? "out of bytes"})`);
          continue;
        }
        OPERANDS.set(insn, f.spec.operands);
        const diff = compare(insn, bytes);
        compared++;
        if (diff !== undefined) failures.push(`${where}: ${diff}`);
      }
      // The forbidden operand form is invalid for both.
      if (memOnly || regOnly) {
        const bytes = encode(f, next, memOnly ? "reg" : "mem");
        const insn = decodeBytes(Uint8Array.from(bytes), bytes.length, true, false);
        const x = new Decoder(64, Uint8Array.from(bytes), DecoderOptions.None).decode();
        if (insn?.exec.name !== "ud" || !x.isInvalid) failures.push(`${f.spec.mnemonic} ${f.spec.operands} with a ${memOnly ? "register" : "memory"} operand: vtlab ${insn?.mnemonic}, iced-x86 ${x.isInvalid ? "invalid" : "valid"}`);
      }
    }
    expect(failures, failures.join("\n")).toEqual([]);
    expect(compared).toBe(forms.length * 120);
    void F_IMM8;
  });
});
