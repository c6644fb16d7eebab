/**
 * The 2D page walk view: the references of one cold walk (src/walk.ts) in the grid of Bhargava's
 * figure: a row per guest level (and one for the final guest-physical address), a column per EPT
 * level and one for the guest entry; each cell holds the reference's number in walk order and
 * shows the machine address it read.
 */
import { WALK_LEVELS, parseGva, traceColdWalk, walkMachine, type WalkTrace } from "./walk.js";

const GUEST_ENTRY = ["", "PTE", "PDE", "PDPTE", "PML4E"];
const EPT_ENTRY = ["", "EPT PTE", "EPT PDE", "EPT PDPTE", "EPT PML4E"];

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function cell(tag: "td" | "th", text: string, title?: string, cls?: string): HTMLTableCellElement {
  const c = document.createElement(tag);
  c.textContent = text;
  if (title !== undefined) c.title = title;
  if (cls !== undefined) c.className = cls;
  return c;
}

/** Draw `trace` into `table` and its outcome into `result`. */
export function drawWalk(trace: WalkTrace, table: HTMLTableElement, result: HTMLElement): void {
  const head = document.createElement("tr");
  head.append(cell("th", "guest level \\ EPT level"));
  for (let e = WALK_LEVELS; e >= 1; e--) head.append(cell("th", `nL${e}`, EPT_ENTRY[e]));
  head.append(cell("th", "guest entry"));
  const rows: HTMLTableRowElement[] = [head];
  for (let g = WALK_LEVELS; g >= 0; g--) {
    const tr = document.createElement("tr");
    tr.append(cell("th", g === 0 ? "gPA (the data)" : `gL${g} (${GUEST_ENTRY[g] ?? ""})`));
    for (let e = WALK_LEVELS; e >= 0; e--) {
      const r = trace.references.find((x) => x.guestLevel === g && x.eptLevel === e);
      if (r !== undefined) tr.append(cell("td", String(r.n), `reference ${r.n}: ${r.dimension === "guest" ? `guest ${GUEST_ENTRY[g]}` : EPT_ENTRY[e]} read at machine address ${hex(r.hpa)}`, r.dimension === "guest" ? "ref guest" : "ref ept"));
      else if (g === 0 && e === 0) tr.append(cell("td", trace.kind === "translation" ? "data" : "-", trace.kind === "translation" ? `the access itself at machine address ${hex(trace.hpa)}` : undefined, "data"));
      else tr.append(cell("td", "-", "not reached", "none"));
    }
    rows.push(tr);
  }
  table.replaceChildren(...rows);
  table.dataset.references = String(trace.references.length);
  result.textContent =
    trace.kind === "translation"
      ? `${hex(trace.gva)} -> guest-physical ${hex(trace.gpa)} -> machine ${hex(trace.hpa)}: ${trace.references.length} memory references (${trace.references.filter((r) => r.dimension === "guest").length} guest, ${trace.references.filter((r) => r.dimension === "ept").length} EPT)`
      : `${hex(trace.gva)}: ${trace.detail}; ${trace.references.length} references before it`;
}

/** Wire the view: the address field, its button, the grid and the outcome line. */
export function setupWalkView(input: HTMLInputElement, button: HTMLButtonElement, table: HTMLTableElement, result: HTMLElement): void {
  let built = false;
  const go = () => {
    if (!built) {
      const m = walkMachine();
      built = true;
      if (input.value === "") input.value = hex(m.base + 0x234);
    }
    const gva = parseGva(input.value);
    if (typeof gva === "string") {
      result.textContent = gva;
      return;
    }
    drawWalk(traceColdWalk(gva), table, result);
  };
  button.addEventListener("click", go);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") go();
  });
}
