/**
 * `vtlab serve`: the built web page (apps/web/dist by default) as static files over node:http,
 * on 127.0.0.1 only. Modelled simply: GET and HEAD of files, no caching headers, no range
 * requests, no compression. Request paths are hostile input: a path with a `..` segment, a
 * backslash, a NUL, an encoded slash or a doubled slash (an absolute path inside the path) is
 * refused (400), and a file that resolves (symlinks followed) outside the directory is a 404.
 */
import { realpathSync, statSync } from "node:fs";
import { readFile, realpath, stat } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

/** Content types by file extension (IANA media types); anything else is application/octet-stream. */
export const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".json": "application/json",
  ".map": "application/json",
  ".txt": "text/plain; charset=utf-8",
  // The reference kernel image the page fetches: raw bytes.
  ".elf": "application/octet-stream",
};

export function contentType(file: string): string {
  return CONTENT_TYPES[extname(file).toLowerCase()] ?? "application/octet-stream";
}

/** The web page's build output, resolved relative to this package (apps/demo/src or apps/demo/dist -> apps/web/dist). */
export function defaultWebDir(): string {
  return fileURLToPath(new URL("../../web/dist/", import.meta.url));
}

/** The directory to serve does not exist or is not a directory. */
export class ServeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ServeError";
  }
}

export interface ServeOptions {
  /** TCP port (0: a free one). Default 8080. */
  readonly port?: number;
  /** Directory to serve. Default `defaultWebDir()`. */
  readonly dir?: string;
}

export interface StaticServer {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  close(): Promise<void>;
}

/** The default port of `vtlab serve`. */
export const DEFAULT_PORT = 8080;

/**
 * The file a request path names inside `root`, or the status to answer: 400 for a path that is
 * not a plain relative file path, 404 is left to the caller (the file may not exist).
 */
export function requestFile(root: string, url: string): string | 400 {
  if (!url.startsWith("/") || url.startsWith("//")) return 400;
  const raw = url.split(/[?#]/, 1)[0]!;
  const segments = raw.split("/").slice(1);
  const parts: string[] = [];
  for (const [i, s] of segments.entries()) {
    let d: string;
    try {
      d = decodeURIComponent(s);
    } catch {
      return 400;
    }
    if (d === "" && i < segments.length - 1) return 400;
    if (d === ".." || d === "." || d.includes("/") || d.includes("\\") || d.includes("\0") || /^[A-Za-z]:/.test(d)) return 400;
    if (d !== "") parts.push(d);
  }
  const file = resolve(root, ...parts);
  if (file !== root && !file.startsWith(root + sep)) return 400;
  return raw.endsWith("/") ? join(file, "index.html") : file;
}

function answer(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff" });
  res.end(`${text}\n`);
}

async function handle(root: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("allow", "GET, HEAD");
    answer(res, 405, "405 method not allowed");
    return;
  }
  const wanted = requestFile(root, req.url ?? "");
  if (wanted === 400) {
    answer(res, 400, "400 bad request path");
    return;
  }
  let file = wanted;
  try {
    if ((await stat(file)).isDirectory()) file = join(file, "index.html");
    const real = await realpath(file);
    if (real !== root && !real.startsWith(root + sep)) throw new Error("outside the served directory");
    const body = await readFile(real);
    res.writeHead(200, { "content-type": contentType(real), "content-length": body.length, "x-content-type-options": "nosniff" });
    res.end(req.method === "HEAD" ? undefined : body);
  } catch {
    answer(res, 404, "404 not found");
  }
}

/** The directory to serve, checked: its real path, or a ServeError naming it. */
export function checkServeDir(dir: string | undefined): string {
  const d = resolve(dir ?? defaultWebDir());
  let ok = false;
  try {
    ok = statSync(d).isDirectory();
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new ServeError(
      dir === undefined ? `${d} does not exist: build the web page first (pnpm --filter @vtlab/web build)` : `${d} is not a directory (the web page's build is made with pnpm --filter @vtlab/web build)`,
    );
  }
  return realpathSync(d);
}

/** Start serving (127.0.0.1 only); resolves once listening. Throws ServeError for a missing directory. */
export async function startServer(options: ServeOptions = {}): Promise<StaticServer> {
  const root = checkServeDir(options.dir);
  const server: Server = createServer((req, res) => {
    void handle(root, req, res).catch(() => {
      if (!res.headersSent) answer(res, 500, "500 internal error");
      else res.destroy();
    });
  });
  await new Promise<void>((ok, fail) => {
    server.once("error", fail);
    server.listen(options.port ?? DEFAULT_PORT, "127.0.0.1", () => {
      server.off("error", fail);
      ok();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    dir: root,
    close: () =>
      new Promise<void>((ok, fail) => {
        server.close((e) => (e ? fail(e) : ok()));
        server.closeAllConnections();
      }),
  };
}
