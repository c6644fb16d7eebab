// The page in a real browser: Debian's chromium (installed with apt-get when missing, as root in
// CI; never skipped), driven by puppeteer-core over the DevTools protocol. The page is built with
// Vite into a temporary directory and served by `vite preview`; the test boots compute on EPT,
// reads the guest's PASS line from the xterm.js terminal, checks the charts got points, takes a
// screenshot, and fails on any console error or uncaught error of the page or its worker.
// Every child process is spawned asynchronously, so the vitest worker is never blocked.
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { preview, type PreviewServer } from "vite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitStats } from "@vtlab/hypervisor";

/** The SDM exit-reason names vtlab uses (exitReasonName's, as ExitStats writes exitsByReason's keys). */
function sdmExitNames(): Set<string> {
  const s = new ExitStats();
  s.byReason.fill(1);
  return new Set(Object.keys(s.byReasonNames()).filter((n) => !n.startsWith("reason ")));
}

const run = promisify(execFile);
const root = fileURLToPath(new URL("..", import.meta.url));
const CHROMIUM = "/usr/bin/chromium";
/** PNG's signature (PNG spec 5.2). */
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

async function ensureChromium(): Promise<void> {
  if (existsSync(CHROMIUM)) return;
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  await run("apt-get", ["update"], { env, timeout: 300_000 });
  await run("apt-get", ["install", "-y", "chromium"], { env, timeout: 600_000, maxBuffer: 64 * 1024 * 1024 });
}

/** `vite build --outDir dir` in a child process; rejects with its output if it fails. */
function build(outDir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const vite = fileURLToPath(new URL("../node_modules/vite/bin/vite.js", import.meta.url));
    const child = spawn(process.execPath, [vite, "build", "--outDir", outDir, "--emptyOutDir", "--logLevel", "warn"], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr.on("data", (b: Buffer) => (out += b.toString()));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`vite build exited ${code}:\n${out}`))));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

describe("the web page in chromium", () => {
  let dir: string;
  let server: PreviewServer | undefined;
  let browser: Browser | undefined;
  let url: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "vtlab-web-"));
    await Promise.all([ensureChromium(), build(join(dir, "dist"))]);
    const port = await freePort();
    server = await preview({ root, configFile: join(root, "vite.config.ts"), logLevel: "warn", build: { outDir: join(dir, "dist") }, preview: { port, strictPort: true, host: "127.0.0.1" } });
    url = `http://127.0.0.1:${port}/`;
    browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  }, 600_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh page that records every console error, page error and failed request. */
  async function open(): Promise<{ page: Page; errors: string[] }> {
    const page = await browser!.newPage();
    const errors: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => errors.push(`pageerror: ${e instanceof Error ? e.message : String(e)}`));
    page.on("requestfailed", (r) => errors.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ""}`));
    page.on("workercreated", (w) => {
      w.on("console", (m) => {
        if (m.type() === "error") errors.push(`worker console: ${m.text()}`);
      });
    });
    await page.setViewport({ width: 1280, height: 1100 });
    await page.goto(url, { waitUntil: "load" });
    return { page, errors };
  }

  it("boots compute on EPT, shows PASS in the terminal, charts it and takes a screenshot", async () => {
    const { page, errors } = await open();
    await page.click('input[value="compute-ept"]');
    await page.click("#boot");
    await page.waitForFunction(() => /PASS compute [0-9a-f]{16}/.test(window.vtlab.consoleText()), { timeout: 60_000 });
    const text = await page.evaluate(() => window.vtlab.consoleText());
    expect(text).toContain("vtlab reference kernel: workload=compute");
    // The terminal's own rendering (xterm.js DOM rows) shows it too.
    const rows = await page.$eval(".xterm-rows", (el) => el.textContent ?? "");
    expect(rows).toContain("PASS compute");
    await page.waitForFunction(() => document.querySelector("#status")?.getAttribute("data-state") === "shutdown", { timeout: 30_000 });
    expect(await page.$eval("#status", (el) => el.textContent ?? "")).toContain("exit code 0");
    for (const id of ["chart-exits", "chart-mips", "chart-modelled", "chart-mmu"]) {
      const points = Number(await page.$eval(`#${id}`, (el) => el.getAttribute("data-points")));
      expect(points, id).toBeGreaterThan(0);
      expect(await page.$eval(`#${id}`, (el) => el.querySelector("canvas") !== null), id).toBe(true);
    }
    const shot = join(dir, "compute-ept.png");
    await page.screenshot({ path: shot, fullPage: true });
    const png = readFileSync(shot);
    expect(png.length).toBeGreaterThan(1000);
    expect([...png.subarray(0, 8)]).toEqual(PNG_SIGNATURE);
    await page.close();
    expect(errors).toEqual([]);
  }, 90_000);

  it("runs the quick tour as the first screen: every scenario with its claim, figures and checks", async () => {
    const { page, errors } = await open();
    await page.click("#tour-run");
    await page.waitForFunction(() => document.querySelector("#tour-list")?.getAttribute("data-done") === "true", { timeout: 55_000 });
    const scenarios = await page.$$eval("#tour-list .scenario", (els) => els.map((e) => ({ name: e.getAttribute("data-name"), available: e.getAttribute("data-available"), checks: e.querySelectorAll("li").length, figures: e.querySelectorAll("table").length })));
    expect(scenarios.map((s) => s.name)).toEqual(["shadow-ept", "disk-pv", "netfront", "iommu", "linux-boot"]);
    for (const s of scenarios.filter((x) => x.available === "true")) {
      expect(s.figures, s.name!).toBeGreaterThan(0);
      expect(s.checks, s.name!).toBeGreaterThan(0);
    }
    // Computed from the quick runs, every claim holds (as in `vtlab demo` with the same sizes).
    expect(await page.$eval("#tour-status", (el) => el.textContent ?? "")).toBe("done: every check holds");
    expect(await page.$eval("#tour-list", (el) => el.getAttribute("data-ok"))).toBe("true");
    await page.close();
    expect(errors).toEqual([]);
  }, 90_000);

  it("pauses, unpauses, destroys and restarts a machine as xl does", async () => {
    const { page, errors } = await open();
    await page.click('input[value="compute-shadow"]');
    await page.click("#boot");
    await page.waitForFunction(() => document.querySelector("#status")?.getAttribute("data-state") === "running", { timeout: 30_000 });
    await page.click("#pause");
    await page.waitForFunction(() => document.querySelector("#status")?.getAttribute("data-state") === "paused", { timeout: 10_000 });
    await page.click("#unpause");
    await page.waitForFunction(() => document.querySelector("#status")?.getAttribute("data-state") === "running", { timeout: 10_000 });
    await page.click("#destroy");
    await page.waitForFunction(() => document.querySelector("#status")?.getAttribute("data-state") === "destroyed", { timeout: 10_000 });
    await page.click("#restart");
    await page.waitForFunction(() => /PASS compute [0-9a-f]{16}/.test(window.vtlab.consoleText()), { timeout: 60_000 });
    await page.close();
    expect(errors).toEqual([]);
  }, 90_000);

  it("steps a paused compute machine to its next VM exit, twice, and shows the reason and the guest state", async () => {
    const { page, errors } = await open();
    await page.click('input[value="compute-ept"]');
    await page.click("#boot");
    await page.waitForFunction(() => document.querySelector("#status")?.getAttribute("data-state") === "running", { timeout: 30_000 });
    await page.click("#pause");
    await page.waitForFunction(() => document.querySelector("#status")?.getAttribute("data-state") === "paused", { timeout: 10_000 });
    await page.waitForFunction(() => !(document.querySelector("#step") as HTMLButtonElement).disabled, { timeout: 10_000 });
    const names = sdmExitNames();
    const seen: string[] = [];
    for (let i = 1; i <= 2; i++) {
      await page.click("#step");
      await page.waitForFunction((n) => document.querySelector("#step-view")?.getAttribute("data-steps") === String(n), { timeout: 10_000 }, i);
      const reason = await page.$eval("#step-view", (el) => el.getAttribute("data-reason") ?? "");
      expect(names.has(reason), reason).toBe(true);
      const rows = await page.$$eval("#step-view tr", (trs) => trs.map((tr) => [tr.querySelector("th")?.textContent ?? "", tr.querySelector("td")?.textContent ?? ""]));
      const table = new Map(rows.map(([k, v]) => [k!, v!]));
      expect(table.get("exit reason")).toMatch(new RegExp(`^\\d+ ${reason}$`));
      expect(table.get("RIP")).toMatch(/^0x[0-9a-f]+$/);
      expect(table.get("qualification")).toMatch(/^0x[0-9a-f]+/);
      expect(table.get("instruction length")).toMatch(/^\d+$/);
      expect(await page.$eval("#step-note", (el) => el.textContent ?? "")).toMatch(/^step \d+: VM exit [\d,]+ of the domain, vCPU \d+$/);
      seen.push(reason);
    }
    // Still paused after the steps; unpausing runs it to its end.
    expect(await page.$eval("#status", (el) => el.getAttribute("data-state"))).toBe("paused");
    await page.click("#unpause");
    await page.waitForFunction(() => /PASS compute [0-9a-f]{16}/.test(window.vtlab.consoleText()), { timeout: 60_000 });
    await page.close();
    expect(errors).toEqual([]);
  }, 90_000);

  it("draws the 24 references of a cold 2D walk for an address the user types, and refuses a bad one", async () => {
    const { page, errors } = await open();
    await page.type("#walk-gva", "0x7f8000012345");
    await page.click("#walk-go");
    await page.waitForFunction(() => document.querySelector("#walk-grid")?.getAttribute("data-references") === "24", { timeout: 30_000 });
    expect(await page.$$eval("#walk-grid td.ref.ept", (c) => c.length)).toBe(20);
    const guest = await page.$$eval("#walk-grid td.ref.guest", (c) => c.map((x) => Number(x.textContent)));
    expect(guest).toEqual([5, 10, 15, 20]);
    expect(await page.$eval("#walk-result", (el) => el.textContent ?? "")).toMatch(/^0x7f8000012345 -> guest-physical 0x[0-9a-f]+345 -> machine 0x[0-9a-f]+345: 24 memory references \(4 guest, 20 EPT\)$/);
    await page.$eval("#walk-gva", (el) => ((el as HTMLInputElement).value = ""));
    await page.type("#walk-gva", "<img src=x>");
    await page.click("#walk-go");
    expect(await page.$eval("#walk-result", (el) => el.textContent ?? "")).toContain("is not a hexadecimal address");
    expect(await page.$("#walk-result img")).toBeNull();
    await page.close();
    expect(errors).toEqual([]);
  }, 90_000);

  it("runs pvdisk to PASS through the toolstack, counts its ring, grants and events, and shows the xenstore tree", async () => {
    const { page, errors } = await open();
    await page.click('input[value="pvdisk-ept"]');
    await page.click("#boot");
    await page.waitForFunction(() => /PASS pvdisk/.test(window.vtlab.consoleText()), { timeout: 60_000 });
    await page.waitForFunction(() => document.querySelector("#status")?.getAttribute("data-state") === "shutdown", { timeout: 30_000 });
    await page.waitForFunction(() => document.querySelector('#xenstore-tree [data-path="/local/domain/1/device/vbd"]') !== null, { timeout: 10_000 });
    // Collapsible: the vbd directory is a <details> with its device (devid 51712, xvda) inside.
    expect(await page.$eval('#xenstore-tree [data-path="/local/domain/1/device/vbd"]', (el) => el.tagName)).toBe("DETAILS");
    expect(await page.$('#xenstore-tree [data-path="/local/domain/1/device/vbd/51712"]')).not.toBeNull();
    const rows = await page.$$eval("#pv-table tbody tr", (trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent ?? "")));
    const table = new Map(rows.map((r) => [r[0]!, r[1]!]));
    expect(await page.$eval("#pv-table thead", (el) => el.textContent ?? "")).toContain("pvdisk-ept");
    for (const row of ["blkif ring requests (blkback)", "grant copies (GNTTABOP_copy)", "events sent by the guest (EVTCHNOP_send)", "events delivered to the guest"]) {
      expect(Number(table.get(row)?.replace(/,/g, "")), row).toBeGreaterThan(0);
    }
    await page.waitForFunction(() => Number(document.querySelector("#chart-io")?.getAttribute("data-points")) > 0, { timeout: 10_000 });
    await page.close();
    expect(errors).toEqual([]);
  }, 90_000);

  it("shows the IOMMU fault log of dmaattack", async () => {
    const { page, errors } = await open();
    await page.click('input[value="dmaattack-ept"]');
    await page.click("#boot");
    await page.waitForFunction(() => Number(document.querySelector("#iommu-log")?.getAttribute("data-faults")) > 0, { timeout: 60_000 });
    const log = await page.$eval("#iommu-log", (el) => el.textContent ?? "");
    expect(log).toMatch(/\[DMA (Read|Write)\] Request device \[0000:00:05\.0\] fault addr 0x[0-9a-f]+ \[fault reason 0x[0-9a-f]{2}\]/);
    expect(await page.$eval("#iommu-summary", (el) => el.textContent ?? "")).toContain("remapping on");
    await page.waitForFunction(() => Number(document.querySelector("#chart-iotlb")?.getAttribute("data-points")) > 0, { timeout: 30_000 });
    await page.close();
    expect(errors).toEqual([]);
  }, 90_000);
});
