import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MachineMemory, isMemoryError, mfn, type U64 } from "@vtlab/arch";

const GiB = 1024 ** 3;

describe("MachineMemory", () => {
  it("is sized to 64 GiB without allocating it, and allocates frames on first write only", () => {
    const mem = new MachineMemory(64 * GiB);
    expect(mem.frameCount).toBe(16 * 1024 * 1024);
    expect(mem.allocatedFrames).toBe(0);
    expect(mem.read32(63 * GiB)).toBe(0);
    expect(mem.allocatedFrames).toBe(0);
    expect(mem.write32(63 * GiB + 4, 0xdeadbeef)).toBeUndefined();
    expect(mem.allocatedFrames).toBe(1);
    expect(mem.read32(63 * GiB + 4)).toBe(0xdeadbeef);
    expect(mem.isAllocated(mfn((63 * GiB) / 4096))).toBe(true);
  });

  it("reads and writes 8/16/32/64-bit values little-endian", () => {
    const mem = new MachineMemory(1 << 20);
    mem.write64(0x100, 0x89abcdef, 0x01234567);
    expect(mem.read8(0x100)).toBe(0xef);
    expect(mem.read16(0x100)).toBe(0xcdef);
    expect(mem.read32(0x104)).toBe(0x01234567);
    const out: U64 = { lo: 0, hi: 0 };
    expect(mem.read64(0x100, out)).toBeUndefined();
    expect(out).toEqual({ lo: 0x89abcdef, hi: 0x01234567 });
    mem.write8(0x200, 0x1ff);
    expect(mem.read8(0x200)).toBe(0xff);
    mem.write16(0x202, 0xbeef);
    expect(mem.read32(0x200)).toBe(0xbeef00ff);
  });

  it("handles accesses that cross a frame boundary", () => {
    const mem = new MachineMemory(1 << 20);
    mem.write32(0xffe, 0x11223344);
    expect(mem.read8(0xffe)).toBe(0x44);
    expect(mem.read8(0x1001)).toBe(0x11);
    expect(mem.read32(0xffe)).toBe(0x11223344);
    expect(mem.read16(0xfff)).toBe(0x2233);
    mem.write64(0x1ffc, 0xaabbccdd, 0x55667788);
    const out: U64 = { lo: 0, hi: 0 };
    mem.read64(0x1ffc, out);
    expect(out).toEqual({ lo: 0xaabbccdd, hi: 0x55667788 });
    expect(mem.read32(0x2000)).toBe(0x55667788);
  });

  it("answers accesses beyond its size with a typed error naming the access", () => {
    const mem = new MachineMemory(0x10000);
    const e = mem.read32(0xfffe);
    expect(isMemoryError(e)).toBe(true);
    expect(e).toMatchObject({ kind: "memory-error", reason: "out-of-range", address: 0xfffe, length: 4, limit: 0x10000 });
    expect(mem.write8(0x10000, 1)).toMatchObject({ reason: "out-of-range" });
    expect(mem.read8(-1)).toMatchObject({ reason: "out-of-range" });
    expect(mem.read64(0xfffc, { lo: 0, hi: 0 })).toMatchObject({ length: 8 });
    expect(mem.writeBytes(0xfff0, new Uint8Array(32))).toMatchObject({ length: 32 });
    // all or nothing: the failed bulk write left nothing behind
    expect(mem.read8(0xfff0)).toBe(0);
    expect(mem.allocatedFrames).toBe(0);
    expect(mem.frameView(mfn(16))).toMatchObject({ reason: "out-of-range" });
  });

  it("rejects a bad size at construction", () => {
    expect(() => new MachineMemory(4095)).toThrow(/multiple of 4096/);
    expect(() => new MachineMemory(0)).toThrow(RangeError);
    expect(() => new MachineMemory(2 ** 53)).toThrow(RangeError);
  });

  it("copies bulk data in and out across frames and gives devices a live frame view", () => {
    const mem = new MachineMemory(1 << 20);
    const data = Uint8Array.from({ length: 10000 }, (_, i) => (i * 7) & 0xff);
    expect(mem.writeBytes(0x0f00, data)).toBeUndefined();
    const back = new Uint8Array(10000);
    expect(mem.readBytes(0x0f00, back)).toBeUndefined();
    expect(back).toEqual(data);
    const view = mem.frameView(mfn(1));
    if (isMemoryError(view)) throw new Error("frameView failed");
    expect(view[0]).toBe(data[0x100]);
    view[0] = 0x5a;
    expect(mem.read8(0x1000)).toBe(0x5a);
  });

  it("fill and discardFrame give frames back", () => {
    const mem = new MachineMemory(1 << 20);
    mem.fill(0x1000, 0x3000, 0xab);
    expect(mem.allocatedFrames).toBe(3);
    expect(mem.read32(0x2ffc)).toBe(0xabababab);
    mem.fill(0x1000, 0x2000, 0);
    expect(mem.allocatedFrames).toBe(1);
    expect(mem.read8(0x1000)).toBe(0);
    mem.discardFrame(mfn(3));
    expect(mem.allocatedFrames).toBe(0);
  });

  it("zero-fill over a large, mostly untouched range clears exactly the frames that were touched", () => {
    const GiB = 2 ** 30;
    const mem = new MachineMemory(64 * GiB);
    const touched = [0x10_0000, 16 * 2 ** 20 - 4096, 16 * 2 ** 20, 5 * GiB + 123 * 4096, 64 * GiB - 4096];
    for (const a of touched) mem.write32(a + 4, 0x1234_5678);
    mem.write8(64 * GiB - 4096 - 1, 0x77); // just below the last frame: outside the fill below
    mem.fill(0x1000, 64 * GiB - 0x2000 - 0x1000, 0); // [4 KiB, 64 GiB - 8 KiB): starts and ends inside directory tables
    expect(mem.read8(64 * GiB - 4096 - 1)).toBe(0x77);
    expect(mem.read32(64 * GiB - 4096 + 4)).toBe(0x1234_5678); // the last frame is past the fill
    for (const a of touched.slice(0, -1)) expect(mem.read32(a + 4)).toBe(0);
    expect(mem.allocatedFrames).toBe(1 + 1);
  });

  it("agrees with a byte-map model under random mixed-width accesses (property)", () => {
    const size = 4 * 4096;
    const op = fc.record({
      address: fc.integer({ min: -8, max: size + 8 }),
      width: fc.constantFrom(1, 2, 4, 8),
      write: fc.boolean(),
      lo: fc.integer({ min: 0, max: 0xffffffff }),
      hi: fc.integer({ min: 0, max: 0xffffffff }),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const mem = new MachineMemory(size);
        const model = new Uint8Array(size);
        const out: U64 = { lo: 0, hi: 0 };
        for (const { address, width, write, lo, hi } of ops) {
          const inRange = address >= 0 && address + width <= size;
          if (write) {
            const r =
              width === 1 ? mem.write8(address, lo) : width === 2 ? mem.write16(address, lo) : width === 4 ? mem.write32(address, lo) : mem.write64(address, lo, hi);
            expect(r === undefined).toBe(inRange);
            if (inRange) {
              for (let i = 0; i < width; i++) model[address + i] = i < 4 ? (lo >>> (8 * i)) & 0xff : (hi >>> (8 * (i - 4))) & 0xff;
            }
          } else {
            let got: number | undefined;
            let gotHi = 0;
            if (width === 8) {
              const r = mem.read64(address, out);
              expect(r === undefined).toBe(inRange);
              got = r === undefined ? out.lo : undefined;
              gotHi = out.hi;
            } else {
              const r = width === 1 ? mem.read8(address) : width === 2 ? mem.read16(address) : mem.read32(address);
              expect(typeof r === "number").toBe(inRange);
              got = typeof r === "number" ? r : undefined;
            }
            if (inRange) {
              let want = 0;
              for (let i = Math.min(width, 4) - 1; i >= 0; i--) want = want * 256 + (model[address + i] as number);
              expect(got).toBe(want);
              if (width === 8) {
                let wantHi = 0;
                for (let i = 7; i >= 4; i--) wantHi = wantHi * 256 + (model[address + i] as number);
                expect(gotHi).toBe(wantHi);
              }
            }
          }
        }
      }),
      { seed: 0x5eed, numRuns: 300 },
    );
  });

  it("frames that share a backing buffer stay separate: views of 4 KiB, a discarded frame reads as zeros when touched again", () => {
    const mem = new MachineMemory(1 << 20);
    for (let f = 0; f < 20; f++) mem.fill(f * 4096, 4096, 0x10 + f); // frames 0..19: one chunk and part of the next
    const v5 = mem.frameView(mfn(5)) as Uint8Array;
    const d5 = mem.frameDataView(mfn(5)) as DataView;
    expect([v5.length, d5.byteLength]).toEqual([4096, 4096]);
    expect(() => d5.setUint8(4096, 1)).toThrow(RangeError); // the view ends with its frame
    d5.setUint32(4092, 0xdeadbeef, true);
    expect(mem.read32(4 * 4096 + 4092)).toBe(0x14141414);
    expect(mem.read32(5 * 4096 + 4092)).toBe(0xdeadbeef);
    expect(mem.read32(6 * 4096)).toBe(0x16161616);
    expect(mem.read32(5 * 4096 + 4094)).toBe(0x1616dead); // a frame-crossing read joins the two frames
    // Discard frame 5 while its neighbours live: it reads as zeros, also when written again.
    mem.discardFrame(mfn(5));
    expect(mem.isAllocated(mfn(5))).toBe(false);
    expect(mem.read32(5 * 4096 + 4092)).toBe(0);
    expect(mem.write8(5 * 4096, 1)).toBeUndefined();
    expect([mem.read32(5 * 4096), mem.read32(5 * 4096 + 4092), mem.read32(4 * 4096), mem.read32(6 * 4096)]).toEqual([1, 0, 0x14141414, 0x16161616]);
    expect(mem.allocatedFrames).toBe(20);
    // All of a chunk's frames discarded: it is dropped, and a frame touched again starts from zeros in a new buffer.
    for (let f = 0; f < 16; f++) mem.discardFrame(mfn(f));
    expect(mem.allocatedFrames).toBe(4);
    expect(mem.read32(16 * 4096)).toBe(0x20202020);
    const again = mem.frameView(mfn(5)) as Uint8Array;
    expect(again.buffer).not.toBe(v5.buffer);
    expect(again.every((b) => b === 0)).toBe(true);
  });

  it("a frame touched through its DataView and then as bytes is one frame: the byte array made later aliases what was written", () => {
    const mem = new MachineMemory(64 * 4096);
    // Frame 3 allocated by the TLB's path (a DataView only), written through it and by write8.
    const dv = mem.frameDataView(mfn(3)) as DataView;
    dv.setUint32(8, 0xcafef00d, true);
    expect(mem.write8(3 * 4096 + 100, 0x5a)).toBeUndefined();
    expect(mem.read8(3 * 4096 + 100)).toBe(0x5a);
    // The byte paths made later see the same bytes, and their writes show through the DataView.
    const bytes = mem.frameView(mfn(3)) as Uint8Array;
    expect(bytes.buffer).toBe(dv.buffer);
    expect(bytes.byteOffset).toBe(dv.byteOffset);
    expect([bytes[8], bytes[11], bytes[100]]).toEqual([0x0d, 0xca, 0x5a]);
    expect(mem.frameView(mfn(3))).toBe(bytes); // made once
    bytes[200] = 0x77;
    expect(dv.getUint8(200)).toBe(0x77);
    const out = new Uint8Array(4);
    expect(mem.readBytes(3 * 4096 + 8, out)).toBeUndefined();
    expect([...out]).toEqual([0x0d, 0xf0, 0xfe, 0xca]);
    expect(mem.writeBytes(3 * 4096 + 4094, new Uint8Array([1, 2, 3, 4]))).toBeUndefined(); // into frame 4, never touched
    expect(mem.read32(3 * 4096 + 4094)).toBe(0x04030201);
    expect(mem.allocatedFrames).toBe(2);
    // Frame 2 (same chunk) allocated only through a DataView, then discarded: zeroed, reads as zeros when touched again.
    (mem.frameDataView(mfn(2)) as DataView).setUint32(0, 0xffffffff, true);
    mem.discardFrame(mfn(2));
    expect(mem.isAllocated(mfn(2))).toBe(false);
    expect(mem.read32(2 * 4096)).toBe(0);
    expect((mem.frameDataView(mfn(2)) as DataView).getUint32(0, true)).toBe(0);
    expect(mem.fill(3 * 4096, 4096)).toBeUndefined(); // a whole-frame zero fill discards frame 3
    expect(mem.isAllocated(mfn(3))).toBe(false);
    expect(mem.read32(3 * 4096 + 8)).toBe(0);
  });
});
