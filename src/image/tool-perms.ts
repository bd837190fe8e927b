import { CHILD_COW, CHILD_FILTERED_PRIMARY, CHILD_IMAGE, cryptoChildPerm, defaultChildPerms, type PermPair, rawChildPerm } from './child-perms.js';
import { BlockError } from './errors.js';
import { PERM_ALL, PERM_CONSISTENT_READ, PERM_RESIZE, PERM_WRITE, PERM_WRITE_UNCHANGED } from './perm.js';
import type { ImageFormat } from './types.js';

/**
 * The permissions QEMU 7.2's tools (qemu-img, qemu-io) hold on each file of
 * an image chain they open, and so the lock bytes they take: a tool opens
 * with blk_new_open, whose BlockBackend takes and shares what the open
 * flags say; the format node passes that on to its file child by its
 * child_perm (qcow2: bdrv_default_perms for storage; raw: raw_child_perm as
 * a filter) and to its backing child by the rule for COW children; a
 * force-shared node's children share everything. Nothing here opens
 * anything: the opener (open.ts) applies the result to each HostFile.
 */

/** How a tool opens the top image (the BDRV_O_* flags that matter for permissions). */
export interface ToolOpenFlags {
  /** Without BDRV_O_RDWR. Backing files are always read-only. */
  readOnly: boolean;
  /** BDRV_O_NO_IO: nothing is read (qemu-img info; the backing file qemu-img create looks at). Inherited by backing files. */
  noIo?: boolean;
  /** BDRV_O_NO_SHARE: the BlockBackend lets others only read (qemu-img convert's sources). */
  noShare?: boolean;
  /** BDRV_O_RESIZE: the BlockBackend may resize. */
  resize?: boolean;
  /** force-share=on (-U): every file shares everything. Inherited by backing files. */
  forceShare?: boolean;
  /**
   * Opened without a BlockBackend (bdrv_open, as qemu-img create opens the
   * backing file): the top node has no user, so it takes nothing and shares all.
   */
  bare?: boolean;
}

/** What opening a format node asks of its file (and its backing chain). */
export interface NodeLockSpec {
  /** The node's cumulative permissions: what its users take and share on it. */
  node: PermPair;
  readOnly: boolean;
  noIo: boolean;
  forceShare: boolean;
}

/** blk_new_open: the BlockBackend's permissions on the top node. */
export function backendPerms(flags: ToolOpenFlags): PermPair {
  if (flags.bare) return { perm: 0, shared: PERM_ALL };
  let perm = 0;
  if (!flags.noIo) perm |= PERM_CONSISTENT_READ | (flags.readOnly ? 0 : PERM_WRITE);
  if (flags.resize) perm |= PERM_RESIZE;
  const shared = flags.noShare ? PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED : PERM_ALL;
  return { perm, shared };
}

/** The lock spec of the top image a tool opens with `flags`. */
export function topLockSpec(flags: ToolOpenFlags): NodeLockSpec {
  return { node: backendPerms(flags), readOnly: flags.readOnly, noIo: flags.noIo ?? false, forceShare: flags.forceShare ?? false };
}

/**
 * What a format node asks of its file (bdrv_child_perm): a qcow2 image's
 * file holds its data and metadata, a luks image's its data and a header it
 * does not change, a raw image's file is filtered through.
 */
export function filePerms(format: ImageFormat, s: NodeLockSpec): PermPair {
  const writable = !s.readOnly;
  const p =
    format === 'qcow2'
      ? defaultChildPerms(CHILD_IMAGE, writable, s.node.perm, s.node.shared, s.noIo)
      : format === 'luks'
        ? cryptoChildPerm(CHILD_IMAGE, writable, s.node.perm, s.node.shared, s.noIo)
        : rawChildPerm(CHILD_FILTERED_PRIMARY, writable, s.node.perm, s.node.shared);
  return s.forceShare ? { perm: p.perm, shared: PERM_ALL } : p;
}

/**
 * The lock spec of a qcow2 image's backing file: a read-only node whose
 * only user is the overlay's COW link. It inherits no-io and force-share
 * (bdrv_inherited_options keeps BDRV_O_NO_IO for COW children and copies
 * force-share), and is read-only whatever the overlay is.
 */
export function backingLockSpec(overlay: NodeLockSpec): NodeLockSpec {
  const cow = defaultChildPerms(CHILD_COW, !overlay.readOnly, overlay.node.perm, overlay.node.shared);
  return { node: overlay.forceShare ? { perm: cow.perm, shared: PERM_ALL } : cow, readOnly: true, noIo: overlay.noIo, forceShare: overlay.forceShare };
}

/** The file permissions of every image of a chain of `formats` (top first), as a tool opening it with `flags` holds them. */
export function chainFilePerms(formats: readonly ImageFormat[], flags: ToolOpenFlags): PermPair[] {
  const out: PermPair[] = [];
  let spec = topLockSpec(flags);
  for (const f of formats) {
    out.push(filePerms(f, spec));
    spec = backingLockSpec(spec);
  }
  return out;
}

/**
 * bdrv_open_common's refusal, made before the file is even opened:
 * sharing everything makes sense only for a user that does not write.
 */
export function checkForceShare(readOnly: boolean, forceShare: boolean | undefined): void {
  if (forceShare && !readOnly) throw new BlockError('INVALID_ARGUMENT', 'force-share=on can only be used with read-only images');
}
