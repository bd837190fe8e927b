import { PERM_ALL } from '../image/perm.js';
import { CHILD_FILTERED_PRIMARY, type ChildOwner, type NodeChild, type PermPair } from './child.js';
import { attachChild, detachChild, type LinkFollower } from './graph-edit.js';
import { GraphTransaction } from './graph-transaction.js';
import type { BlockNode } from './node.js';
import { refreshPerms } from './permissions.js';

/**
 * A user of a node from outside the graph (QEMU's BlockBackend): an
 * export, a command's temporary access (qemu-io, blockdev-create). It
 * takes the permissions it asks for on its root node like any parent,
 * and follows its node when a filter or an overlay takes the node's place.
 */
export class BlockBackend implements ChildOwner, LinkFollower {
  readonly isBackend = true;
  private link: NodeChild | undefined;
  /** The QOM path of the device it is attached to, which names an unnamed BlockBackend in messages. */
  devicePath: string | undefined;

  constructor(
    private wanted: PermPair,
    /** The name a device gives it; unnamed in the storage daemon. */
    readonly name?: string,
    /** Told when the graph moves the root link to another node. */
    private readonly onMoved?: (node: BlockNode) => void,
  ) {}

  describe(): string {
    if (this.name !== undefined) return `block device '${this.name}'`;
    return this.devicePath !== undefined ? `block device '${this.devicePath}'` : 'an unnamed block device';
  }

  get node(): BlockNode | undefined {
    return this.link?.node;
  }

  get perm(): PermPair {
    return { ...this.wanted };
  }

  childReplaced(_c: NodeChild, node: BlockNode): void {
    this.onMoved?.(node);
  }

  /** blk_insert_bs: the root link, refused with QEMU's words if the node cannot allow it. Caller holds the graph lock. */
  async insert(node: BlockNode, tran?: GraphTransaction): Promise<void> {
    if (tran) this.link = await attachChild(tran, this, 'root', CHILD_FILTERED_PRIMARY, node, this.wanted);
    else this.link = await GraphTransaction.run((t) => attachChild(t, this, 'root', CHILD_FILTERED_PRIMARY, node, this.wanted));
  }

  /**
   * blk_set_perm (bdrv_child_try_set_perm): other permissions on the same
   * node. On refusal the old ones stay, and the error is thrown only if the
   * change asked for more: one that only gives up permissions never fails.
   */
  async setPerm(p: PermPair): Promise<void> {
    const link = this.link;
    const old = this.wanted;
    this.wanted = { ...p };
    if (!link) return;
    const before = { perm: link.perm, shared: link.shared };
    try {
      await GraphTransaction.run(async (tran) => {
        link.perm = p.perm;
        link.shared = link.node.forceShare ? PERM_ALL : p.shared;
        tran.addUndo(() => {
          link.perm = before.perm;
          link.shared = before.shared;
          this.wanted = old;
        });
        await refreshPerms([link.node], tran);
      });
    } catch (err) {
      if (p.perm & ~before.perm || before.shared & ~p.shared) throw err;
    }
  }

  /** blk_add_remove_bs_notifier: told when the node is about to go (an eject), before it does. */
  readonly removeNotifiers = new Set<() => void>();

  /** blk_remove_bs / blk_unref: the link goes; the node's permissions loosen. */
  async remove(): Promise<void> {
    const link = this.link;
    if (link) for (const n of [...this.removeNotifiers]) n();
    this.link = undefined;
    if (link) await detachChild(link);
  }
}
