import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { main } from "@vtlab/demo";

const kernel = fileURLToPath(new URL("../../../packages/guests/images/kernel.elf", import.meta.url));

function vtlab(...argv: string[]) {
  let out = "";
  let err = "";
  const status = main(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  return { status, out, err };
}

describe("vtlab run: the ramdisk key", () => {
  it("a ramdisk that cannot be read is named, with the path it was looked for at", () => {
    const dir = mkdtempSync(join(tmpdir(), "vtlab-ramdisk-"));
    const cfg = join(dir, "rd.cfg");
    writeFileSync(cfg, `name = "x"\nmemory = 16\nkernel = "${kernel}"\nramdisk = "missing.cpio"\n`);
    const r = vtlab("run", cfg);
    expect(r.status).not.toBe(0);
    expect(r.err).toContain(`${cfg}: ramdisk "missing.cpio": cannot read ${join(dir, "missing.cpio")}`);
  });
});
