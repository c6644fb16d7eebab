/**
 * `vtlab serve`: a temp directory with an index.html and a .js served on a free port (port 0),
 * both fetched with their content types, traversal attempts refused, the server stopped.
 */
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "@vtlab/demo";
import { contentType, requestFile, startServer, type StaticServer } from "../src/serve.js";

/** A GET with the path sent exactly as given (fetch would normalise "..").  */
function rawGet(port: number, path: string): Promise<{ status: number; type: string | undefined; body: string }> {
  return new Promise((ok, fail) => {
    const req = request({ host: "127.0.0.1", port, path, method: "GET" }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => ok({ status: res.statusCode ?? 0, type: res.headers["content-type"], body }));
    });
    req.on("error", fail);
    req.end();
  });
}

describe("vtlab serve", () => {
  let root: string;
  let secretDir: string;
  let server: StaticServer;

  beforeAll(async () => {
    const base = mkdtempSync(join(tmpdir(), "vtlab-serve-"));
    root = join(base, "www");
    secretDir = join(base, "secret");
    mkdirSync(join(root, "assets"), { recursive: true });
    mkdirSync(secretDir);
    writeFileSync(join(root, "index.html"), "<!doctype html><title>vtlab</title>");
    writeFileSync(join(root, "assets", "main.js"), "export const x = 1;");
    writeFileSync(join(root, "kernel.elf"), new Uint8Array([0x7f, 0x45, 0x4c, 0x46]));
    writeFileSync(join(secretDir, "key.txt"), "SECRET");
    symlinkSync(secretDir, join(root, "link"));
    server = await startServer({ port: 0, dir: root });
  });

  afterAll(async () => {
    await server.close();
  });

  it("serves index.html and a .js with their content types", async () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const index = await fetch(server.url);
    expect(index.status).toBe(200);
    expect(index.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(await index.text()).toContain("<title>vtlab</title>");
    const js = await fetch(new URL("assets/main.js?v=1", server.url));
    expect(js.status).toBe(200);
    expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(await js.text()).toBe("export const x = 1;");
    const elf = await fetch(new URL("kernel.elf", server.url));
    expect(elf.headers.get("content-type")).toBe("application/octet-stream");
    expect(new Uint8Array(await elf.arrayBuffer())).toEqual(new Uint8Array([0x7f, 0x45, 0x4c, 0x46]));
    expect((await fetch(new URL("missing.js", server.url))).status).toBe(404);
    expect((await fetch(server.url, { method: "POST" })).status).toBe(405);
  });

  it("refuses traversal and absolute paths (400/404), never the file outside", async () => {
    for (const path of ["/../secret/key.txt", "/assets/../../secret/key.txt", "/%2e%2e/secret/key.txt", "/..%2fsecret%2fkey.txt", "//etc/passwd", "/%2Fetc%2Fpasswd", "/..\\secret\\key.txt", "/a%00b", "/%zz", "/link/key.txt", "etc/passwd"]) {
      const r = await rawGet(server.port, path);
      expect([400, 404], path).toContain(r.status);
      expect(r.body, path).not.toContain("SECRET");
    }
  });

  it("requestFile: plain paths map inside the root, hostile ones are 400", () => {
    expect(requestFile("/srv", "/")).toBe("/srv/index.html");
    expect(requestFile("/srv", "/a/b.js?x=../..")).toBe("/srv/a/b.js");
    expect(requestFile("/srv", "/a/")).toBe("/srv/a/index.html");
    for (const bad of ["/../x", "/a/./b", "/a//b", "/C:/x", "http://h/x", "/%E0%A4%A"]) expect(requestFile("/srv", bad), bad).toBe(400);
  });

  it("content types", () => {
    expect([".html", ".js", ".css", ".wasm", ".png", ".svg", ".json", ".elf", ".bin"].map((e) => contentType(`f${e}`))).toEqual([
      "text/html; charset=utf-8",
      "text/javascript; charset=utf-8",
      "text/css; charset=utf-8",
      "application/wasm",
      "image/png",
      "image/svg+xml",
      "application/json",
      "application/octet-stream",
      "application/octet-stream",
    ]);
  });

  it("the command: usage errors, a missing directory named with the build command, then serve and stop", async () => {
    let out = "";
    let err = "";
    const io = { out: (t: string) => (out += t), err: (t: string) => (err += t) };
    expect(main(["serve", "--port", "70000"], io)).toBe(2);
    expect(err).toContain('"70000" is not a port number');
    err = "";
    const missing = join(root, "no-such-dir");
    expect(main(["serve", "--dir", missing], io)).toBe(2);
    expect(err).toContain(missing);
    expect(err).toContain("pnpm --filter @vtlab/web build");
    expect(main(["help"], io)).toBe(0);
    expect(out).toContain("serve [--port N] [--dir DIR]");
    out = "";
    let stop!: () => void;
    const status = main(["serve", "--port", "0", "--dir", root], { ...io, stop: new Promise<void>((ok) => (stop = ok)) });
    expect(status).toBeInstanceOf(Promise);
    for (let i = 0; i < 200 && !out.includes("http://"); i++) await new Promise((ok) => setTimeout(ok, 10));
    const url = /http:\/\/127\.0\.0\.1:\d+\//.exec(out)?.[0];
    expect(url).toBeDefined();
    expect((await fetch(url!)).status).toBe(200);
    stop();
    expect(await status).toBe(0);
    expect(out).toContain("vtlab serve: stopped");
  });
});
