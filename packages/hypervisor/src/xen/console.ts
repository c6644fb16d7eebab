/**
 * HYPERVISOR_console_io (xen/drivers/char/console.c do_console_io). CONSOLEIO_write copies the
 * guest's buffer in chunks of 127 bytes (Xen's kbuf[128]) and, as Xen does for a domain that is
 * not the hardware domain, strips non-printable characters except tab, ends a chunk at a newline,
 * and line-buffers it; vtlab sends the line to the domain's console (the stream `vtlab run`
 * shows for that domain) instead of the hypervisor's own console with a "(d1) " prefix.
 *
 * Permission, as XSM's default policy (xsm/dummy.h xsm_console_io): a domU may write only on a
 * CONFIG_VERBOSE_DEBUG build; vtlab behaves like one (the write is what a guest's early
 * console uses). CONSOLEIO_read needs privilege: -EPERM for a domU. Other commands -ENOSYS.
 *
 * A long write is preempted like Xen's (hypercall_create_continuation): after
 * CONSOLE_IO_CHUNKS_PER_CALL chunks the VMCALL is re-executed with the count and buffer advanced,
 * so a guest writing megabytes still lets the scheduler run others between exits.
 */
import { CONSOLEIO_read, CONSOLEIO_write, XEN_EFAULT, XEN_ENOSYS, XEN_EPERM } from "@vtlab/xen-public";
import type { ExitContext } from "../exits.js";
import { copyFromGuest } from "../guest-memory.js";
import type { HypercallArgs } from "./table.js";

/** Bytes Xen copies per chunk (sizeof(kbuf) - 1). */
export const CONSOLE_IO_CHUNK = 127;
/** Chunks one VMCALL handles before it is continued (vtlab's hypercall_preempt_check). */
export const CONSOLE_IO_CHUNKS_PER_CALL = 32;

const kbuf = new Uint8Array(CONSOLE_IO_CHUNK);

/** isprint() in the C locale, or tab. */
const printable = (c: number) => (c >= 0x20 && c < 0x7f) || c === 0x09;

/** HYPERVISOR_console_io(unsigned int cmd, unsigned int count, XEN_GUEST_HANDLE_PARAM(char) buffer). */
export function do_console_io(ctx: ExitContext, a: HypercallArgs): number {
  const cmd = a.uint(0);
  let count = a.uint(1);
  let buffer = a.ptr(2);
  if (cmd === CONSOLEIO_read) return -XEN_EPERM;
  if (cmd !== CONSOLEIO_write) return -XEN_ENOSYS;
  const sink = ctx.domain.consoleSink;
  let chunks = 0;
  while (count > 0) {
    if (chunks === CONSOLE_IO_CHUNKS_PER_CALL) {
      a.setArg(1, count);
      a.setArg(2, buffer);
      a.preempted = true;
      return 0;
    }
    const want = Math.min(count, CONSOLE_IO_CHUNK);
    if (copyFromGuest(ctx, buffer, kbuf, want) !== want) return -XEN_EFAULT;
    // Strip non-printables; a newline ends the chunk (and the line).
    let used = 0;
    while (used < want) {
      const c = kbuf[used++]!;
      if (c === 0x0a) {
        sink(0x0a);
        break;
      }
      if (printable(c)) sink(c);
    }
    count -= used;
    buffer += used;
    chunks++;
  }
  return 0;
}

