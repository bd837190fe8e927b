import { hasProtocolPrefix } from '../../image/path-protocol.js';

/**
 * Backing file names as qemu-img forms them: it shows a backing file by
 * "path_combine(parent, name)" — the name stored in the image, relative to
 * the directory part of the parent's name *as the user typed it* (so
 * "sub/c.qcow2" with backing "b.qcow2" shows "sub/b.qcow2", and "c.qcow2"
 * shows plain "b.qcow2"). The image layer opens backing files by absolute
 * path, so the CLI recomputes the names it prints.
 */
export function pathCombine(base: string, name: string): string {
  if (name.startsWith('/')) return name;
  // path_combine: the directory of `base`, a protocol prefix ("file:") kept when it has no directory.
  const afterProtocol = hasProtocolPrefix(base) ? base.indexOf(':') + 1 : 0;
  return base.slice(0, Math.max(afterProtocol, base.lastIndexOf('/') + 1)) + name;
}

/** bdrv_get_full_backing_filename_from_filename: the name a backing file is opened by, relative to the image it backs. */
export function fullBackingName(backed: string, backing: string): { name: string } | { error: string } {
  if (hasProtocolPrefix(backing) || backing.startsWith('/')) return { name: backing };
  if (backed === '' || backed.startsWith('json:')) return { error: `Cannot use relative backing file names for '${backed}'` };
  return { name: pathCombine(backed, backing) };
}

