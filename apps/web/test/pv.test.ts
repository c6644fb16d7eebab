// The PV machine under Node: pvdisk through the toolstack (xenstored, blkback) reaches PASS; its
// ring, grant and event counters move; the xenstore view lists the vbd the toolstack wrote.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { WebMachine, XS_MAX_NODES, XS_MAX_VALUE } from "../src/machine.js";
import type { XsNode } from "../src/protocol.js";

const kernel = new Uint8Array(readFileSync(fileURLToPath(new URL("../../../packages/guests/images/kernel.elf", import.meta.url))));

function paths(n: XsNode, out: string[] = []): string[] {
  out.push(n.path);
  for (const c of n.children) paths(c, out);
  return out;
}

describe("WebMachine pvdisk", () => {
  it("runs pvdisk to PASS through blkback, counting ring requests, grant operations and events", async () => {
    let text = "";
    const m = new WebMachine({ workload: "pvdisk", hap: true }, kernel, (t) => (text += t), () => performance.now());
    expect(m.toolstack).toBeDefined();
    let seenVbd = false;
    for (let i = 0; i < 10_000 && m.alive; i++) {
      m.runFor(20);
      const t = m.xenstoreTree();
      if (t !== null && paths(t.root).includes(`/local/domain/${m.domain.id}/device/vbd`)) seenVbd = true;
      await new Promise((r) => setTimeout(r, 0));
    }
    expect(text).toMatch(/^PASS pvdisk/m);
    expect(seenVbd).toBe(true);
    const pv = m.sample().pv!;
    expect(pv.ringRequests).toBeGreaterThan(0);
    expect(pv.responses).toBe(pv.ringRequests);
    expect(pv.grantCopies + pv.grantMaps).toBeGreaterThan(0);
    expect(pv.eventsSent).toBeGreaterThan(0);
    expect(pv.eventsDelivered).toBeGreaterThan(0);
    const t = m.xenstoreTree()!;
    // After the guest's poweroff the device directory is still there (xl removes it on destroy).
    expect(paths(t.root)).toContain(`/local/domain/${m.domain.id}/device/vbd`);
    expect(t.nodes).toBeLessThanOrEqual(XS_MAX_NODES);
    m.destroy();
  }, 60_000);

  it("cuts the xenstore view to its bounds whatever is written there (long values, many nodes, deep paths)", () => {
    const m = new WebMachine({ workload: "pvdisk", hap: false }, kernel, () => {}, () => performance.now());
    const xs = m.toolstack!.xenstore;
    xs.write("/hostile/long", "<b>".repeat(1000));
    for (let i = 0; i < 600; i++) xs.write(`/hostile/many/n${i}`, String(i));
    xs.write("/hostile/deep/a/b/c/d/e/f/g/h/i/j/k/l", "x");
    const t = m.xenstoreTree()!;
    expect(t.truncated).toBe(true);
    expect(t.nodes).toBeLessThanOrEqual(XS_MAX_NODES);
    const all: XsNode[] = [];
    const walk = (n: XsNode): void => {
      all.push(n);
      n.children.forEach(walk);
    };
    walk(t.root);
    expect(all.length).toBe(t.nodes);
    for (const n of all) expect((n.value ?? "").length).toBeLessThanOrEqual(XS_MAX_VALUE + 3);
    m.destroy();
  });

  it("the emulated machines have no PV sample and no xenstore tree", () => {
    const m = new WebMachine({ workload: "disk", hap: true }, kernel, () => {}, () => performance.now());
    expect(m.sample().pv).toBeNull();
    expect(m.xenstoreTree()).toBeNull();
    m.destroy();
  });
});
