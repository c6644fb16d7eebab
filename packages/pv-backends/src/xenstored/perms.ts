// Node permissions as xenstored keeps them (struct xs_permissions, xs_lib.c's string form
// "r1", "w2", "b3", "n0"): the first entry names the owner and the default for every domain
// not listed; the owner and privileged connections get everything (perm_for_conn).

/** One entry of a node's permission list; the first is the owner and the default. */
export interface XsPerm {
  readonly domid: number;
  readonly perm: "n" | "r" | "w" | "b";
}

/** XS_PERM_* bits (xenstored_core.h / xenstore_lib.h). */
export const XS_PERM_NONE = 0;
export const XS_PERM_READ = 1;
export const XS_PERM_WRITE = 2;
export const XS_PERM_OWNER = 8;

export function permBits(p: XsPerm["perm"]): number {
  switch (p) {
    case "r":
      return XS_PERM_READ;
    case "w":
      return XS_PERM_WRITE;
    case "b":
      return XS_PERM_READ | XS_PERM_WRITE;
    case "n":
      return XS_PERM_NONE;
  }
}

/** What connection `domid` (privileged or not) may do on a node with `perms` (perm_for_conn). */
export function permForDomain(domid: number, privileged: boolean, perms: readonly XsPerm[]): number {
  const all = XS_PERM_READ | XS_PERM_WRITE | XS_PERM_OWNER;
  const owner = perms[0];
  if (privileged || owner === undefined || owner.domid === domid) return all;
  for (let i = 1; i < perms.length; i++) {
    const p = perms[i];
    if (p !== undefined && p.domid === domid) return permBits(p.perm);
  }
  return permBits(owner.perm);
}

/** xs_perm_to_string. */
export function permToString(p: XsPerm): string {
  return `${p.perm}${p.domid}`;
}

/**
 * xs_strings_to_perms for one string: a letter then a domid (strtol base 0: decimal, 0x hex,
 * leading 0 octal). undefined when malformed (EINVAL).
 */
export function permFromString(s: string): XsPerm | undefined {
  const letter = s[0];
  if (letter !== "r" && letter !== "w" && letter !== "b" && letter !== "n") return undefined;
  const rest = s.slice(1);
  let domid: number;
  if (/^[0-9]+$/.test(rest)) domid = rest.length > 1 && rest[0] === "0" ? (/^[0-7]+$/.test(rest) ? parseInt(rest, 8) : NaN) : parseInt(rest, 10);
  else if (/^0[xX][0-9a-fA-F]+$/.test(rest)) domid = parseInt(rest.slice(2), 16);
  else return undefined;
  // struct xs_permissions holds the id as an unsigned int; domids are 16-bit.
  if (!Number.isSafeInteger(domid) || domid < 0 || domid > 0xffff) return undefined;
  return { domid, perm: letter };
}

export function samePerms(a: readonly XsPerm[], b: readonly XsPerm[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]?.domid !== b[i]?.domid || a[i]?.perm !== b[i]?.perm) return false;
  return true;
}
