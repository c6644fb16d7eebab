/**
 * The dom0 side of the xentest self-test guest (@vtlab/guests `images/xentest.elf`): what a
 * backend in dom0 does with a frontend's grant and event channel, reduced to one exchange.
 *
 * The handshake is the self-test's own, not a Xen ABI. On Xen a frontend publishes its grant
 * reference and event-channel port in xenstore (`ring-ref`, `event-channel`) and the backend
 * reads them there; vtlab has no xenstored yet, so the guest prints one console line instead:
 *
 *     xen-selftest: grant <ref> evtchn <port>
 *
 * A `SelfTestPeer` is attached to a domain by the toolstack when the machine's config asks for
 * it (`vtlab_xen_selftest = 1`, a vtlab key that xl does not have). Between scheduler slices
 * (`poll()`, never inside the guest's hypercall) it reads the console lines that are complete,
 * and on the first handshake line it:
 *
 *   1. binds an interdomain channel to the guest's port (EVTCHNOP_bind_interdomain as dom0),
 *   2. maps the grant read-write (GNTTABOP_map_grant_ref, GNTMAP_host_map, as dom0),
 *   3. writes the pattern (`selftestPatternWord`) into the mapped frame,
 *   4. unmaps it (GNTTABOP_unmap_grant_ref),
 *   5. notifies the guest (EVTCHNOP_send) and closes its end (EVTCHNOP_close).
 *
 * The line is guest output and so hostile: anything but two decimal numbers below 2^32 is
 * reported (`status().error`) and nothing is done; the numbers themselves are checked by the
 * event-channel and grant-table code, whose errors are reported too. Nothing here throws for
 * what a guest prints, and only the first handshake line is acted on.
 */
import type { Domain, Hypervisor } from "../hypervisor.js";
import type { Dom0Grants } from "./dom0.js";

/** The handshake line (the whole line, without its newline). */
export const SELFTEST_HANDSHAKE_PREFIX = "xen-selftest: ";
const HANDSHAKE = /^xen-selftest: grant (\S*) evtchn (\S*)$/;
/** Longest console line the peer looks at (longer ones cannot be the handshake). */
const MAX_LINE = 128;

/**
 * Word i (32-bit, little-endian) of the page the peer writes: (i * 2654435761) ^ 0x5eed0000 ^ ref,
 * mod 2^32. The guest (c/xentest/xentest.c) checks every word; @vtlab/guests exports the same
 * function as `xentestPatternWord`.
 */
export function selftestPatternWord(i: number, ref: number): number {
  return (Math.imul(i, 2654435761) ^ 0x5eed0000 ^ ref) >>> 0;
}

/** The 4096-byte page of the pattern for grant `ref`. */
export function selftestPattern(ref: number): Uint8Array {
  const page = new Uint8Array(4096);
  const dv = new DataView(page.buffer);
  for (let i = 0; i < 1024; i++) dv.setUint32(i * 4, selftestPatternWord(i, ref), true);
  return page;
}

/** What the peer needs of dom0's grant-table API (`hv.dom0.grants`, xen/dom0.ts); tests pass a fake. */
export type SelfTestGrantAccess = Pick<Dom0Grants, "map" | "unmap">;

export type SelfTestPeerPhase = "waiting" | "done" | "failed";

export interface SelfTestPeerStatus {
  readonly phase: SelfTestPeerPhase;
  /** The domain the peer serves. */
  readonly domid: number;
  /** From the handshake line, once parsed. */
  readonly grantRef?: number;
  readonly guestPort?: number;
  /** Dom0's end of the interdomain channel. */
  readonly dom0Port?: number;
  /** What was done, step by step. */
  readonly steps: readonly string[];
  /** Why the peer gave up (phase "failed"). */
  readonly error?: string;
}

/** A decimal number below 2^32 with no sign, spaces or leading zeros; undefined otherwise. */
function parseU32(text: string): number | undefined {
  if (!/^(0|[1-9][0-9]{0,9})$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 0xffff_ffff ? n : undefined;
}

export class SelfTestPeer {
  private scanned = 0;
  private phase: SelfTestPeerPhase = "waiting";
  private readonly steps: string[] = [];
  private error: string | undefined;
  private grantRef: number | undefined;
  private guestPort: number | undefined;
  private dom0Port: number | undefined;

  constructor(
    readonly hv: Hypervisor,
    readonly domain: Domain,
    private readonly grants: SelfTestGrantAccess = hv.dom0.grants,
  ) {}

  status(): SelfTestPeerStatus {
    return {
      phase: this.phase,
      domid: this.domain.id,
      ...(this.grantRef !== undefined ? { grantRef: this.grantRef } : {}),
      ...(this.guestPort !== undefined ? { guestPort: this.guestPort } : {}),
      ...(this.dom0Port !== undefined ? { dom0Port: this.dom0Port } : {}),
      steps: [...this.steps],
      ...(this.error !== undefined ? { error: this.error } : {}),
    };
  }

  /**
   * Look at the console lines completed since the last call and act on the first handshake
   * line. Call it between scheduler slices. Returns true when it acted (done or failed).
   */
  poll(): boolean {
    if (this.phase !== "waiting" || this.domain.state === "destroyed") return false;
    const text = this.domain.console;
    const end = text.lastIndexOf("\n");
    if (end < this.scanned) return false;
    const lines = text.slice(this.scanned, end).split("\n");
    this.scanned = end + 1;
    for (const line of lines) {
      if (!line.startsWith(SELFTEST_HANDSHAKE_PREFIX)) continue;
      this.act(line);
      return true;
    }
    return false;
  }

  private fail(error: string): void {
    this.phase = "failed";
    this.error = error;
  }

  private act(line: string): void {
    const shown = line.length > MAX_LINE ? `${line.slice(0, MAX_LINE)}...` : line;
    const m = line.length <= MAX_LINE ? HANDSHAKE.exec(line) : null;
    if (m === null) return this.fail(`handshake line ${JSON.stringify(shown)} is not "xen-selftest: grant <ref> evtchn <port>"`);
    const ref = parseU32(m[1] ?? "");
    const port = parseU32(m[2] ?? "");
    if (ref === undefined) return this.fail(`handshake: grant reference ${JSON.stringify(m[1])} is not a decimal number below 2^32`);
    if (port === undefined) return this.fail(`handshake: event-channel port ${JSON.stringify(m[2])} is not a decimal number below 2^32`);
    this.grantRef = ref;
    this.guestPort = port;
    const domid = this.domain.id;
    const evtchn = this.hv.dom0.evtchn;

    const local = evtchn.bindInterdomain(domid, port);
    if (local < 0) return this.fail(`EVTCHNOP_bind_interdomain(dom ${domid}, port ${port}) = ${local}`);
    this.dom0Port = local;
    this.steps.push(`bound dom0 port ${local} to dom${domid} port ${port}`);

    const mapped = this.grants.map(domid, ref);
    if (typeof mapped === "number") {
      evtchn.close(local);
      return this.fail(`GNTTABOP_map_grant_ref(dom ${domid}, ref ${ref}, host_map) = ${mapped}`);
    }
    this.steps.push(`mapped grant ${ref} of dom${domid} (handle ${mapped.handle})`);
    const wrote = mapped.write(0, selftestPattern(ref));
    const unmapped = this.grants.unmap(mapped);
    if (!wrote) {
      evtchn.close(local);
      return this.fail(`writing the pattern through grant handle ${mapped.handle} failed (read-only or no longer mapped)`);
    }
    this.steps.push(`wrote the pattern (4096 bytes)`);
    if (unmapped !== 0) {
      evtchn.close(local);
      return this.fail(`GNTTABOP_unmap_grant_ref(handle ${mapped.handle}) = ${unmapped}`);
    }
    this.steps.push(`unmapped handle ${mapped.handle}`);

    const sent = evtchn.send(local);
    if (sent !== 0) {
      evtchn.close(local);
      return this.fail(`EVTCHNOP_send(dom0 port ${local}) = ${sent}`);
    }
    this.steps.push(`notified dom${domid} port ${port}`);
    const closed = evtchn.close(local);
    if (closed !== 0) return this.fail(`EVTCHNOP_close(dom0 port ${local}) = ${closed}`);
    this.steps.push(`closed dom0 port ${local}`);
    this.phase = "done";
  }
}

