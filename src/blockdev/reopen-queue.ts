import { CHILD_COW } from './child.js';
import type { BlockNode } from './node.js';
import { boolOption, extractSub, inheritOptions, type Options } from './options.js';
import type { StagedReopen } from './reopen-driver.js';

/**
 * One node of a reopen (QEMU's BlockReopenQueueEntry with its
 * BDRVReopenState): the options it will have and the open flags they
 * make, and what preparing it staged.
 */
export interface ReopenEntry {
  readonly node: BlockNode;
  /** The new options, children's left out (state.options). */
  options: Options;
  /** Those given for the node itself, before inheritance (state.explicit_options). */
  explicit: Options;
  readOnly: boolean;
  autoReadOnly: boolean;
  cacheDirect: boolean;
  cacheNoFlush: boolean;
  /** BDRV_O_UNMAP: the node's own, or its parent's, until a discard option says otherwise. */
  unmap: boolean;
  /** Neither `backing` nor `backing.driver` was given where options are not kept (a node with a backing file must say). */
  backingMissing: boolean;
  /** Set once prepared: what the driver staged, the new detect-zeroes, the children the reopen replaced. */
  staged?: StagedReopen;
  detectZeroes?: 'off' | 'on' | 'unmap';
  oldBacking?: BlockNode;
  oldFile?: BlockNode;
}

/** The nodes of one atomic reopen, in the order they were queued (BlockReopenQueue). */
export class ReopenQueue {
  readonly entries: ReopenEntry[] = [];

  get(node: BlockNode): ReopenEntry | undefined {
    return this.entries.find((e) => e.node === node);
  }

  /** Read-only state after the reopen of every queued node (what the permission checks ask). */
  get plan(): Map<BlockNode, { readOnly: boolean }> {
    return new Map(this.entries.map((e) => [e.node, { readOnly: e.readOnly }]));
  }

  /**
   * bdrv_reopen_queue: queues `node` with `options` (flat). Without
   * `keepOld` (blockdev-reopen) an option left out goes back to its
   * default; with it (a snapshot making its old top read-only) the node
   * keeps what it has but what is given.
   */
  add(node: BlockNode, options: Options, keepOld: boolean): void {
    this.addChild(node, options, keepOld, undefined);
  }

  /**
   * bdrv_reopen_queue_child. Options of a node already queued are merged
   * with what it was queued with. The children the node opened itself
   * (inherits_from) come along, taking the options under their name
   * ("file.*") and inheriting the rest from the node — unless the options
   * name another node for that child, or the same node by name (then it
   * keeps its own options).
   */
  private addChild(node: BlockNode, given: Options, keepOld: boolean, parent: { entry: ReopenEntry; cow: boolean } | undefined): void {
    const options = { ...given };
    let entry = this.get(node);
    if (entry || keepOld) node.joinReopenOptions(options, { ...(entry ? entry.explicit : node.explicitOptions) });
    const explicit = { ...options };
    if (parent) inheritOptions(parent.cow, options, parent.entry.options);
    if (keepOld) node.joinReopenOptions(options, { ...node.options });
    const flags = {
      readOnly: boolOption(options, 'read-only'),
      autoReadOnly: boolOption(options, 'auto-read-only'),
      cacheDirect: boolOption(options, 'cache.direct'),
      cacheNoFlush: boolOption(options, 'cache.no-flush'),
      unmap: parent ? parent.entry.unmap : node.settings.discard === 'unmap',
    };
    if (!entry) {
      entry = { node, options, explicit, ...flags, backingMissing: false };
      this.entries.push(entry);
    } else {
      Object.assign(entry, { options, explicit, ...flags });
    }
    if (!keepOld) entry.backingMissing = !('backing' in options) && !('backing.driver' in options);
    for (const c of node.childList()) {
      if (c.node.inheritsFrom !== node) continue;
      let childOptions: Options = {};
      let childKeepOld = keepOld;
      if (c.name in options) {
        // null, or another node: this child is being replaced, not reopened.
        if (options[c.name] !== c.node.nodeName) continue;
        childKeepOld = true;
      } else {
        extractSub(entry.explicit, `${c.name}.`);
        childOptions = extractSub(options, `${c.name}.`);
      }
      this.addChild(c.node, childOptions, childKeepOld, { entry, cow: (c.role & CHILD_COW) !== 0 });
    }
  }
}
