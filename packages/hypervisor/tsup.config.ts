import { defineConfig } from "tsup";

export default defineConfig({
  entry: ["src/index.ts"],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "es2022",
  // lz4js (ISC licence; the bzImage payload's LZ4 blocks, builder/bzimage.ts) is bundled into
  // dist, so the published package has no dependency outside @vtlab.
  noExternal: ["lz4js"],
});
