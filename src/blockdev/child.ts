import { PERM_ALL, PERM_CONSISTENT_READ, PERM_RESIZE, PERM_WRITE, PERM_WRITE_UNCHANGED } from '../image/perm.js';
import type { BlockNode } from './node.js';
import type { OpBlocker } from './op-blockers.js';

/** What a child is to its parent (BdrvChildRole): its permissions follow from it. */
export const CHILD_DATA = 1 << 0;
export const CHILD_METADATA = 1 << 1;
export const CHILD_FILTERED = 1 << 2;
export const CHILD_COW = 1 << 3;
export const CHILD_PRIMARY = 1 << 4;
/** A format node's `file`: its data and metadata live there. */
export const CHILD_IMAGE = CHILD_DATA | CHILD_METADATA | CHILD_PRIMARY;
/** A filter's only child (blkdebug's `image`, copy-before-write's `file`). */
export const CHILD_FILTERED_PRIMARY = CHILD_FILTERED | CHILD_PRIMARY;

export interface PermPair {
  perm: number;
  shared: number;
}

/**
 * The parent side of a child link: another node, or a user outside the
 * graph (a BlockBackend of an export or of a command, a job).
 */
export interface ChildOwner {
  /** How QEMU names it in a permission conflict: "node 'x'", "an unnamed block device", "backup job 'j'". */
  describe(): string;
  /** A job's links stay where they are when another node takes the child's place (stay_at_node). */
  readonly staysAtNode?: boolean;
  /** Set when the owner is a node (or one being opened). */
  readonly nodeName?: string;
}

/**
 * One parent–child link (QEMU's BdrvChild): its name ('file', 'backing',
 * 'root', …), its role, and the permissions the parent takes on the child
 * and shares with the child's other parents. Permissions are set by the
 * graph's refresh, never by hand.
 */
export class NodeChild {
  perm = 0;
  shared = PERM_ALL;
  /** For a backing link opened from the image's own header: the name it was opened by (its auto_backing_file). */
  implicitName: string | undefined;
  /** What this link blocks on its child while it exists (an overlay's backing link: QEMU's backing_blocker). */
  blocker: OpBlocker | undefined;
  /** Part of a frozen backing chain (freeze.ts): a job will rewrite it, nothing else may re-point it (BdrvChild.frozen). */
  frozen = false;

  constructor(
    public owner: ChildOwner,
    readonly name: string,
    readonly role: number,
    public node: BlockNode,
  ) {}

  describe(): string {
    return this.owner.describe();
  }
}

/** bdrv_filter_default_perms: everything passes through to the filtered child. */
function filterPerms(perm: number, shared: number): PermPair {
  return { perm: perm & PERM_ALL, shared: shared & PERM_ALL };
}

/**
 * bdrv_default_perms: what a parent needs of a child given its own
 * cumulative permissions and the child's role. `parentWritable` is whether
 * the parent is (or, during a reopen, will be) writable: a writable format
 * node writes metadata even when nobody writes to it.
 */
export function defaultChildPerms(role: number, parentWritable: boolean, perm: number, shared: number): PermPair {
  if (role & CHILD_FILTERED) return filterPerms(perm, shared);
  if (role & CHILD_COW) {
    // Backing files are only read, consistently if the parent must be; they may change only if the parent tolerates that.
    const p = perm & PERM_CONSISTENT_READ;
    const s = (shared & PERM_WRITE ? PERM_WRITE | PERM_RESIZE : 0) | PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED;
    return { perm: p, shared: s };
  }
  let { perm: p, shared: s } = filterPerms(perm, shared);
  if (role & CHILD_METADATA) {
    if (parentWritable) p |= PERM_WRITE | PERM_RESIZE;
    // The metadata must stay consistent: nobody else writes or resizes the file.
    p |= PERM_CONSISTENT_READ;
    s &= ~(PERM_WRITE | PERM_RESIZE);
  }
  if (role & CHILD_DATA) {
    s &= ~PERM_RESIZE;
    if (p & PERM_WRITE_UNCHANGED) p |= PERM_WRITE;
    if (p & PERM_WRITE) p |= PERM_RESIZE;
  }
  return { perm: p, shared: s };
}
