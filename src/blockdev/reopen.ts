import { CHILD_COW } from './child.js';
import { GraphTransaction } from './graph-transaction.js';
import type { BlockNode } from './node.js';
import { type ReopenPlan, refreshPerms } from './permissions.js';

/**
 * The nodes a reopen of `node` to `readOnly` takes along
 * (bdrv_reopen_queue_child): the node, and each child it opened inline
 * that did not set read-only itself; a backing child keeps its own state.
 */
export function reopenQueue(node: BlockNode, readOnly: boolean, plan = new Map<BlockNode, { readOnly: boolean }>()): Map<BlockNode, { readOnly: boolean }> {
  plan.set(node, { readOnly });
  for (const c of node.childList()) {
    if (c.role & CHILD_COW || c.node.inheritsFrom !== node || c.node.readOnlyExplicit || plan.has(c.node)) continue;
    reopenQueue(c.node, readOnly, plan);
  }
  return plan;
}

/**
 * bdrv_reopen_multiple for a change of read-only state: the permissions
 * the nodes will need are checked first (a node going read-only can no
 * longer serve a writer: "Read-only block node 'x' cannot support
 * read-write users"), then each node switches (a qcow2 stores its
 * bitmaps first), then the lock bytes narrow.
 */
export async function reopenReadOnlyState(plan: ReopenPlan): Promise<void> {
  await GraphTransaction.run(async (tran) => {
    const roots = [...plan.keys()];
    await refreshPerms(roots, tran, plan);
    for (const [node, { readOnly }] of plan) {
      if (node.readOnly === readOnly) continue;
      await node.switchReadOnly(readOnly);
      tran.addUndo(() => node.switchReadOnly(!readOnly));
    }
  });
}

/** bdrv_reopen_set_read_only(node, true): a snapshot's old top below its overlay. */
export function reopenReadOnly(node: BlockNode): Promise<void> {
  return reopenReadOnlyState(reopenQueue(node, true));
}
