/**
 * Dom0's PV services in the host: xenstored (`XenStore` of @vtlab/pv-backends: one per
 * `Toolstack`, its `xenstore`, which the netback vifs of network.ts write into too) and a console
 * backend (xenconsoled) per domain. The toolstack makes one `PvServices` at construction, calls
 * `attach` for each domain it builds with magic pages and `detach` when it destroys one; the services run between scheduler slices (`Hypervisor.addDom0Service`) after
 * dom0's event dispatch, and a domain destroyed some other way (`hv.destroyDomain`) is
 * detached there.
 *
 * `attach` does what libxl does for a new domain (libxl__domain_make, libxl__build_post, the
 * console device) and then xs_introduce_domain:
 *   /local/domain/N             n0 rN   (the guest reads its own tree, writes only below)
 *     vm, name, domid, cpu/*, memory/{static-max,target,videoram}, store/{port,ring-ref},
 *     console/{port,ring-ref,type,limit}, hvmloader/, control/ (n0 rN) with
 *     control/{shutdown,feature-*,sysrq} (nN: the guest writes them),
 *     control/platform-feature-{multiprocessor-suspend,xs_reset_watches} = 1,
 *     device/ (n0 rN) with device/suspend/event-channel (nN),
 *     data/, drivers/, feature/, attr/, error/ (nN)
 *   /vm/<uuid>/{uuid,name}       n0 rN
 *   /libxl/N/{device/,type}      n0
 * then maps the store page (grant ref 1) and binds the store port, and maps the console page
 * (grant ref 0) and binds the console port. `detach` releases both and removes those trees
 * (libxl__destroy_domid).
 *
 * Modelled more simply than libxl: no transaction around the writes (dom0's writes here are
 * atomic already: nothing else runs meanwhile), a uuid derived from the domid (libxl takes the
 * config's or a random one), no device-model or vNUMA entries, and the console's frontend keys
 * without its backend directory (xenconsoled here is told about the domain directly).
 */
import { ConsoleBackend, XenStore, type XsPerm } from "@vtlab/pv-backends";
import type { Domain, Hypervisor } from "../hypervisor.js";

/** What a domain got from `attach`. */
export interface PvDomain {
  readonly domid: number;
  readonly uuid: string;
  readonly console: ConsoleBackend | undefined;
  /** Whether the xenstore connection is up. */
  readonly introduced: boolean;
}

export interface AttachOptions {
  /** The domain's name (/local/domain/N/name); default the domain's. */
  readonly name?: string;
  /** Console text from the PV console ring (default: into the domain's console, as the UART's). */
  readonly onConsole?: (text: string) => void;
}

export class PvServices {
  readonly store: XenStore;
  /** What went wrong attaching domains (a failed map or bind), for reports. */
  readonly problems: string[] = [];
  /** xenstored's log lines (bad clients, dropped events), bounded. */
  readonly log: string[] = [];
  private readonly domains = new Map<number, { d: Domain; pv: PvDomain }>();

  constructor(
    readonly hv: Hypervisor,
    store?: XenStore,
  ) {
    this.store =
      store ??
      new XenStore({
        log: (line) => {
          if (this.log.length < 1000) this.log.push(line);
        },
      });
    // Dom0's own entries.
    this.store.write("/local/domain/0/name", hv.dom0.name);
    this.store.write("/local/domain/0/domid", "0");
    hv.addDom0Service(() => this.poll());
  }

  /** The domain's PV state, if attached. */
  domain(domid: number): PvDomain | undefined {
    return this.domains.get(domid)?.pv;
  }

  /** Write the domain's xenstore entries, introduce it, attach its console. Needs `d.magicPages`. */
  attach(d: Domain, options: AttachOptions = {}): PvDomain | string {
    const mp = d.magicPages;
    if (mp === undefined) return `domain ${d.id}: no xenstore and console pages (magicPages)`;
    if (this.domains.has(d.id)) return `domain ${d.id} is already attached`;
    const xs = this.store;
    const N = d.id;
    const dom = xs.getDomainPath(N);
    const uuid = uuidOf(N);
    const vm = `/vm/${uuid}`;
    const libxl = `/libxl/${N}`;
    const noperm: XsPerm[] = [{ domid: 0, perm: "n" }];
    const roperm: XsPerm[] = [{ domid: 0, perm: "n" }, { domid: N, perm: "r" }];
    const rwperm: XsPerm[] = [{ domid: N, perm: "n" }];
    const mknod = (path: string, perms: XsPerm[]): void => {
      xs.write(path, "");
      xs.setPerms(path, perms);
    };
    // libxl__domain_make
    for (const p of [dom, vm, libxl]) xs.rm(p);
    mknod(dom, roperm);
    mknod(vm, roperm);
    mknod(libxl, noperm);
    mknod(`${libxl}/device`, noperm);
    xs.write(`${dom}/vm`, vm);
    xs.write(`${dom}/name`, options.name ?? d.name);
    mknod(`${dom}/cpu`, roperm);
    mknod(`${dom}/memory`, roperm);
    mknod(`${dom}/device`, roperm);
    mknod(`${dom}/device/suspend/event-channel`, rwperm);
    mknod(`${dom}/control`, roperm);
    mknod(`${dom}/hvmloader`, roperm);
    for (const k of ["shutdown", "feature-poweroff", "feature-reboot", "feature-suspend", "feature-s3", "feature-s4", "sysrq"]) mknod(`${dom}/control/${k}`, rwperm);
    for (const k of ["data", "drivers", "feature", "attr", "error"]) mknod(`${dom}/${k}`, rwperm);
    xs.write(`${vm}/uuid`, uuid);
    xs.write(`${vm}/name`, options.name ?? d.name);
    xs.write(`${dom}/control/platform-feature-multiprocessor-suspend`, "1");
    xs.write(`${dom}/control/platform-feature-xs_reset_watches`, "1");
    xs.write(`${libxl}/type`, "hvm");
    // libxl__build_post
    const kib = d.ramFrames * 4;
    xs.write(`${dom}/memory/static-max`, String(kib));
    xs.write(`${dom}/memory/target`, String(kib));
    xs.write(`${dom}/memory/videoram`, "0");
    xs.write(`${dom}/domid`, String(N));
    xs.write(`${dom}/store/port`, String(mp.storeEvtchn));
    xs.write(`${dom}/store/ring-ref`, String(mp.storePfn));
    for (let i = 0; i < d.vcpus.length; i++) xs.write(`${dom}/cpu/${i}/availability`, "online");
    // The console (libxl__device_console_add's frontend keys).
    xs.write(`${dom}/console/port`, String(mp.consoleEvtchn));
    xs.write(`${dom}/console/ring-ref`, String(mp.consolePfn));
    xs.write(`${dom}/console/type`, "xenconsoled");
    xs.write(`${dom}/console/limit`, String(1024 * 1024));
    // xs_introduce_domain
    const host = this.hv.dom0;
    const introduced = xs.connectDomain(host, N, mp.storeEvtchn);
    if (introduced !== true) this.problems.push(introduced);
    const sink = options.onConsole ?? ((text: string) => {
      for (let i = 0; i < text.length; i++) d.consoleSink(text.charCodeAt(i));
    });
    const console = ConsoleBackend.connect(host, N, mp.consoleEvtchn, { sink });
    if (typeof console === "string") this.problems.push(console);
    const pv: PvDomain = { domid: N, uuid, console: typeof console === "string" ? undefined : console, introduced: introduced === true };
    this.domains.set(N, { d, pv });
    return pv;
  }

  /** Release the domain from xenstored and the console backend and remove its entries. */
  detach(domid: number): boolean {
    const e = this.domains.get(domid);
    if (e === undefined) return false;
    // What the guest wrote last is still shown (xenconsoled reads the ring once more).
    e.pv.console?.poll();
    e.pv.console?.close();
    this.store.releaseDomain(domid);
    this.store.rm(this.store.getDomainPath(domid));
    this.store.rm(`/vm/${e.pv.uuid}`);
    this.store.rm(`/libxl/${domid}`);
    this.domains.delete(domid);
    return true;
  }

  /** Between slices: domains destroyed meanwhile are detached; the rings and consoles are serviced. */
  poll(): void {
    for (const [domid, e] of this.domains) if (e.d.state === "destroyed") this.detach(domid);
    this.store.poll();
    for (const e of this.domains.values()) e.pv.console?.poll();
  }
}

/** A uuid per domid (libxl's is the config's or random; vtlab runs are deterministic). */
function uuidOf(domid: number): string {
  const hex = domid.toString(16).padStart(12, "0");
  return `00000000-0000-4000-8000-${hex}`;
}
