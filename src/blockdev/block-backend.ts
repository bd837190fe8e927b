import { BlockError } from '../image/errors.js';
import { PERM_ALL } from '../image/perm.js';
import { CHILD_FILTERED_PRIMARY, type ChildOwner, type NodeChild, type PermPair } from './child.js';
import { attachChild, detachChild, type LinkFollower, replaceChildNode } from './graph-edit.js';
import { GraphTransaction } from './graph-transaction.js';
import type { BlockNode, WriteFlags, ZeroFlags } from './node.js';
import { refreshPerms } from './permissions.js';
import { ThrottleGroupMember } from './throttle/group.js';

/**
 * A user of a node from outside the graph (QEMU's BlockBackend): an
 * export, a command's temporary access (qemu-io, blockdev-create). It
 * takes the permissions it asks for on its root node like any parent,
 * and follows its node when a filter or an overlay takes the node's place.
 */
export class BlockBackend implements ChildOwner, LinkFollower {
  readonly isBackend = true;
  private link: NodeChild | undefined;
  /** The id (or else the QOM path) of the device it is attached to, which names an unnamed BlockBackend in messages. */
  devicePath: string | undefined;
  /**
   * blk->disable_perm: the permissions asked for are remembered, not taken
   * (its device was attached for an incoming migration, or its node was
   * inactivated); activate() takes them.
   */
  private permsDisabled = false;
  /** Its place in a throttle group once I/O limits are enabled (blk->public.throttle_group_member); see io-limits.ts. */
  readonly throttle = new ThrottleGroupMember();

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
   * blk_replace_bs: the root link moves to another node, refused with
   * QEMU's words (and left where it was) if the new node cannot allow it.
   */
  async replace(node: BlockNode): Promise<void> {
    const link = this.link;
    if (!link) throw new BlockError('INVALID_ARGUMENT', 'No medium to replace');
    const old = link.node;
    await GraphTransaction.run(async (tran) => {
      await replaceChildNode(tran, link, node);
      await refreshPerms([node, old], tran);
    });
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
    if (!link || this.permsDisabled) return;
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

  get disabled(): boolean {
    return this.permsDisabled;
  }

  /** Permissions asked for from now on are only remembered (blk_attach_dev during an incoming migration). */
  disablePerms(): void {
    this.permsDisabled = true;
  }

  /** blk_root_inactivate: the link takes nothing and shares everything; what was asked for is kept for activate(). */
  async inactivate(): Promise<void> {
    if (this.permsDisabled) return;
    const wanted = this.wanted;
    await this.setPerm({ perm: 0, shared: PERM_ALL });
    this.wanted = wanted;
    this.permsDisabled = true;
  }

  /**
   * blk_root_activate: the permissions asked for are taken now; refused
   * (and the link left disabled) if the node cannot allow them. While the
   * machine still waits for its migration (`shareAll`), everything is
   * shared until the switch-over, when a later activate() narrows it.
   */
  async activate(shareAll = false): Promise<void> {
    if (!this.permsDisabled && !this.sharingAll) return;
    const wanted = this.wanted;
    const wasDisabled = this.permsDisabled;
    this.permsDisabled = false;
    try {
      await this.setPerm(shareAll ? { perm: wanted.perm, shared: PERM_ALL } : wanted);
    } catch (err) {
      this.permsDisabled = wasDisabled;
      throw err;
    }
    this.wanted = wanted;
    this.sharingAll = shareAll;
  }
  /** Activated during an incoming migration: sharing everything until it completes. */
  private sharingAll = false;

  /**
   * blk_co_preadv and friends: a request through the BlockBackend waits for
   * its throttle group first (throttle_group_co_io_limits_intercept), then
   * goes to whichever node is the root when it runs. Discards and flushes
   * are not throttled, as in QEMU.
   */
  async read(offset: number, length: number): Promise<Uint8Array> {
    await this.throttle.intercept(length, false);
    return this.root().read(offset, length);
  }
  async write(offset: number, data: Uint8Array, flags?: WriteFlags): Promise<void> {
    await this.throttle.intercept(data.length, true);
    return this.root().write(offset, data, flags);
  }
  async writeZeroes(offset: number, length: number, flags?: ZeroFlags): Promise<void> {
    await this.throttle.intercept(length, true);
    return this.root().writeZeroes(offset, length, flags);
  }
  discard(offset: number, length: number): Promise<void> {
    return this.root().discard(offset, length);
  }
  flush(): Promise<void> {
    return this.root().flush();
  }
  private root(): BlockNode {
    const n = this.link?.node;
    if (!n) throw new BlockError('IO', 'No medium found', { errno: 'ENOMEDIUM' });
    return n;
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
