// The console backend over a domain's console page, the guest side played from the test with
// xen-public's xencons_ring_write/read.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { xencons_interface as XCI, xencons_ring_read, xencons_ring_write } from "@vtlab/xen-public";
import { ConsoleBackend } from "../src/index.js";
import { FakeHost, FakePage } from "./xenstored-harness.js";

function setup(options = {}): { host: FakeHost; page: FakePage; con: ConsoleBackend; out: string[] } {
  const host = new FakeHost();
  const page = new FakePage(5, 0);
  host.pages.set("5:0", page);
  const out: string[] = [];
  const con = ConsoleBackend.connect(host, 5, 2, { sink: (t: string) => out.push(t), ...options });
  if (typeof con === "string") throw new Error(con);
  return { host, page, con, out };
}
const bytes = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));

describe("console backend", () => {
  it("maps grant ref 0, binds the port, reads the out ring on each event and notifies", () => {
    const { host, page, con, out } = setup();
    expect(xencons_ring_write(page.view, 0, "out", bytes("hello, world\n"))).toBe(13);
    host.kick(con.port);
    expect(out.join("")).toBe("hello, world\n");
    expect(page.view.getUint32(XCI.out_cons, true)).toBe(13);
    expect(host.sent).toContain(con.port);
    expect(con.output).toBe("hello, world\n");
  });

  it("a map failure is reported, nothing bound", () => {
    const host = new FakeHost();
    expect(ConsoleBackend.connect(host, 9, 2)).toMatch(/map of grant 0 of domain 9 failed/);
    expect(host.handlers.size).toBe(0);
  });

  it("reads across the ring's wrap, bounded per pass; polling without an event also reads", () => {
    const { page, con, out } = setup({ maxPerPass: 100 });
    page.view.setUint32(XCI.out_cons, 2000, true);
    page.view.setUint32(XCI.out_prod, 2000, true);
    const text = "abcdefghij".repeat(30);
    expect(xencons_ring_write(page.view, 0, "out", bytes(text))).toBe(300);
    expect(con.poll()).toBe(100);
    expect(con.poll()).toBe(100);
    expect(con.poll()).toBe(100);
    expect(con.poll()).toBe(0);
    expect(out.join("")).toBe(text);
  });

  it("hostile: out_prod more than the ring ahead of out_cons is ignored (nothing consumed), and the guest can recover", () => {
    const { page, con, out, host } = setup();
    page.view.setUint32(XCI.out_prod, 5000, true);
    host.kick(con.port);
    expect(out).toEqual([]);
    expect(con.stats.bogusIndices).toBe(1);
    expect(page.view.getUint32(XCI.out_cons, true)).toBe(0);
    page.view.setUint32(XCI.out_prod, 0, true);
    xencons_ring_write(page.view, 0, "out", bytes("ok\n"));
    host.kick(con.port);
    expect(out.join("")).toBe("ok\n");
  });

  it("input goes into the in ring as it has room; pending input is bounded", () => {
    const { page, con } = setup({ maxPendingInput: 1500 });
    expect(con.write("ls\n")).toBe(3);
    const got = xencons_ring_read(page.view, 0, "in", 100);
    expect(got).toEqual(bytes("ls\n"));
    expect(con.write("x".repeat(2000))).toBe(1500);
    // The in ring holds 1024; the rest waits for the guest to read.
    const first = xencons_ring_read(page.view, 0, "in", 4096);
    expect(typeof first === "number" ? -1 : first.length).toBe(1024);
    con.poll();
    const second = xencons_ring_read(page.view, 0, "in", 4096);
    expect(typeof second === "number" ? -1 : second.length).toBe(476);
  });

  it("close unmaps the page and closes the port; later events do nothing", () => {
    const { page, con, host, out } = setup();
    con.close();
    expect(page.mapped).toBe(false);
    expect(host.closed).toContain(con.port);
    xencons_ring_write(page.view, 0, "out", bytes("late"));
    expect(con.poll()).toBe(0);
    expect(out).toEqual([]);
  });

  it("fast-check: whatever the guest puts in the page, the history stays bounded and nothing throws", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(), fc.nat(), fc.uint8Array({ maxLength: 64 })), { maxLength: 20 }), (steps) => {
        const { page, con } = setup({ historyBytes: 512 });
        for (const [cons, prod, data] of steps) {
          page.view.setUint32(XCI.out_cons, cons, true);
          page.view.setUint32(XCI.out_prod, prod, true);
          page.bytes.set(data, XCI.out);
          con.poll();
        }
        expect(con.output.length).toBeLessThanOrEqual(512);
        // What is not kept was counted: kept + dropped = everything read.
        expect(con.output.length + con.stats.historyDropped).toBe(con.stats.bytesOut);
      }),
    );
  });
});
