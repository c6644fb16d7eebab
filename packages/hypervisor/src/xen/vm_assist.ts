/**
 * HYPERVISOR_vm_assist(unsigned int cmd, unsigned int type) (xen/common/domain.c vm_assist,
 * xen/arch/x86/include/asm/config.h HVM_VM_ASSIST_MASK): a domain turns optional hypervisor
 * behaviours on and off. An HVM domain may use only VMASST_TYPE_runstate_update_flag (Linux asks
 * for it in xen_setup_runstate_info): any other type, or one at or above BITS_PER_LONG, is
 * -EINVAL; a command other than VMASST_CMD_enable/disable is -ENOSYS.
 *
 * runstate_update_flag makes Xen set XEN_RUNSTATE_UPDATE in the runstate area's state_entry_time
 * while it writes the area and clear it after (xen/sched.ts updateRunstateArea). vtlab writes the
 * area in one step no guest instruction can observe midway, so the flag is never seen set and
 * the area's final bytes are what Xen leaves: the setting is kept (`XenDomain.vmAssist`) and
 * reported, and changes nothing else.
 */
import { VMASST_CMD_disable, VMASST_CMD_enable, VMASST_TYPE_runstate_update_flag, XEN_EINVAL, XEN_ENOSYS } from "@vtlab/xen-public";
import type { ExitContext } from "../exits.js";
import type { HypercallArgs } from "./table.js";

/** HVM_VM_ASSIST_MASK: the VM assists an HVM domain may enable. */
export const HVM_VM_ASSIST_MASK = 1 << VMASST_TYPE_runstate_update_flag;
/** Xen's BITS_PER_LONG on x86-64 (the bound vm_assist checks the type against). */
const BITS_PER_LONG = 64;

export function do_vm_assist(ctx: ExitContext, a: HypercallArgs): number {
  const cmd = a.uint(0);
  const type = a.uint(1);
  // Xen's test: type >= BITS_PER_LONG, or its bit clear in the mask. The mask has bits below 32
  // only, so types 32..BITS_PER_LONG-1 fail the bit test too (checked first: a JS shift is mod 32).
  if (type >= BITS_PER_LONG || type >= 32 || ((HVM_VM_ASSIST_MASK >>> type) & 1) === 0) return -XEN_EINVAL;
  const x = ctx.domain.xen;
  switch (cmd) {
    case VMASST_CMD_enable:
      x.vmAssist = (x.vmAssist | (1 << type)) >>> 0;
      return 0;
    case VMASST_CMD_disable:
      x.vmAssist = (x.vmAssist & ~(1 << type)) >>> 0;
      return 0;
    default:
      return -XEN_ENOSYS;
  }
}
