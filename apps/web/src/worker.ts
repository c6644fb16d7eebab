/**
 * The machine worker: boots one WebMachine and runs it in slices of about SLICE_MS wall time,
 * posting console text as it comes and a statistics sample after every slice; between slices it
 * takes the page's commands (xl's pause, unpause, destroy and restart, and keyboard input).
 */
import { DomainError } from "@vtlab/hypervisor";
import { WebMachine } from "./machine.js";
import type { FromWorker, MachineChoice, ToWorker } from "./protocol.js";

/** Wall milliseconds of simulation between two looks at the message queue. */
const SLICE_MS = 50;
/** How often an idle (every vCPU blocked, no timer) or paused machine is looked at again. */
const IDLE_MS = 100;

/** The worker's global scope, as much of it as this file uses (the DOM lib has no worker scope type). */
const scope = self as unknown as {
  postMessage(message: FromWorker): void;
  onmessage: ((ev: MessageEvent<ToWorker>) => void) | null;
};

let machine: WebMachine | undefined;
let kernel: Uint8Array | undefined;
let choice: MachineChoice | undefined;
let timer: ReturnType<typeof setTimeout> | undefined;

function post(m: FromWorker): void {
  scope.postMessage(m);
}

/** Slices between two xenstore trees posted (about half a second). */
const XS_EVERY = 10;
let slices = 0;

function postXenstore(m: WebMachine): void {
  const t = m.xenstoreTree();
  if (t !== null) post({ type: "xenstore", ...t });
}

function schedule(ms: number): void {
  if (timer !== undefined) clearTimeout(timer);
  timer = setTimeout(tick, ms);
}

function tick(): void {
  timer = undefined;
  const m = machine;
  if (m === undefined) return;
  const busy = m.runFor(SLICE_MS);
  post({ type: "stats", sample: m.sample() });
  post({ type: "state", state: m.domain.state, detail: m.describe() });
  // The xenstore tree every XS_EVERY slices (and the last one).
  if (++slices % XS_EVERY === 1 || !m.alive) postXenstore(m);
  if (m.alive) schedule(busy ? 0 : IDLE_MS);
}

function boot(): void {
  if (kernel === undefined || choice === undefined) return;
  machine?.destroy();
  machine = undefined;
  slices = 0;
  try {
    machine = new WebMachine(choice, kernel, (text) => post({ type: "console", text }), () => performance.now());
  } catch (e) {
    if (!(e instanceof DomainError)) throw e;
    post({ type: "error", message: e.message });
    return;
  }
  post({ type: "state", state: machine.domain.state, detail: machine.describe() });
  schedule(0);
}

scope.onmessage = async (ev: MessageEvent<ToWorker>) => {
  const msg = ev.data;
  switch (msg.type) {
    case "boot": {
      choice = msg.machine;
      try {
        const res = await fetch(msg.kernelUrl);
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        kernel = new Uint8Array(await res.arrayBuffer());
      } catch (e) {
        post({ type: "error", message: `kernel image ${msg.kernelUrl}: ${e instanceof Error ? e.message : String(e)}` });
        return;
      }
      boot();
      return;
    }
    case "restart":
      boot();
      return;
    case "pause":
      machine?.pause();
      break;
    case "unpause":
      machine?.unpause();
      if (machine?.alive === true) schedule(0);
      break;
    case "step": {
      if (machine === undefined) break;
      const wasPaused = machine.domain.state === "paused";
      const exit = machine.step();
      const note = !wasPaused ? "pause the machine first" : exit !== null ? "" : `no VM exit: the domain is ${machine.describe()}`;
      post({ type: "step", exit, note });
      post({ type: "stats", sample: machine.sample() });
      break;
    }
    case "destroy":
      machine?.destroy();
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      break;
    case "input":
      machine?.input(msg.bytes);
      if (machine?.alive === true) schedule(0);
      break;
  }
  if (machine !== undefined) post({ type: "state", state: machine.domain.state, detail: machine.describe() });
};
