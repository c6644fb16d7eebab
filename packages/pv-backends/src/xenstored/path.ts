// Node names as xenstored checks them (is_valid_nodename, canonicalize, is_child, get_parent).

/** The characters a node name may hold (valid_chars). */
const VALID = /^[A-Za-z0-9\-/_@]*$/;

/**
 * is_valid_nodename: absolute, no trailing or double slash, only valid characters, and at most
 * `maxPathLen` characters after a leading /local/domain/<id>/ (sscanf's %5u: up to 5 digits).
 */
export function isValidNodename(node: string, maxPathLen: number): boolean {
  if (!node.startsWith("/")) return false;
  if (node.endsWith("/") && node !== "/") return false;
  if (node.includes("//")) return false;
  const m = /^\/local\/domain\/[0-9]{1,5}\//.exec(node);
  const localOff = m ? m[0].length : 0;
  if (node.length > localOff + maxPathLen) return false;
  return VALID.test(node);
}

/** canonicalize: a relative name is under the connection's domain path; "@..." and "/..." stay. */
export function canonicalize(node: string, implicitPath: string): string {
  if (node.startsWith("/") || node.startsWith("@")) return node;
  return `${implicitPath}/${node}`;
}

/** get_parent: "/" for a top-level node. */
export function parentOf(node: string): string {
  const i = node.lastIndexOf("/");
  return i <= 0 ? "/" : node.slice(0, i);
}

export function basename(node: string): string {
  return node.slice(node.lastIndexOf("/") + 1);
}

/** is_child: `child` is `parent` or below it ("/" is everyone's parent). */
export function isChild(child: string, parent: string): boolean {
  if (parent === "/") return true;
  if (!child.startsWith(parent)) return false;
  const next = child[parent.length];
  return next === undefined || next === "/";
}

export function childPath(parent: string, name: string): string {
  return parent === "/" ? `/${name}` : `${parent}/${name}`;
}

/** get_watch_path: a watch set with a relative path gets event paths relative to the domain path. */
export function watchEventPath(name: string, relativeTo: string | undefined): string {
  if (relativeTo === undefined || !name.startsWith(relativeTo)) return name;
  let p = name.slice(relativeTo.length);
  if (p.startsWith("/")) p = p.slice(1);
  return p;
}
