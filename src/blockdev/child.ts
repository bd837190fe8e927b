import { PERM_ALL } from '../image/perm.js';
import type { BlockNode } from './node.js';
import type { OpBlocker } from './op-blockers.js';

// The roles and default permissions (bdrv_default_perms, raw_child_perm) are the image layer's, since the tools lock files by them too; the graph takes them from here.
export {
  CHILD_COW,
  CHILD_DATA,
  CHILD_FILTERED,
  CHILD_FILTERED_PRIMARY,
  CHILD_IMAGE,
  CHILD_METADATA,
  CHILD_PRIMARY,
  cryptoChildPerm,
  defaultChildPerms,
  type PermPair,
  rawChildPerm,
} from '../image/child-perms.js';

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
